/*
 * ONNX export (include/metaserve/codec/onnx.h): builds the ModelProto of one MLP as protobuf-c
 * structs and packs it with the bindings the build generates from Debian's onnx.proto.
 *
 * Owns only the mapping from MlpSpec and a parameter buffer to the ONNX graph; the bytes on the
 * wire are protobuf-c's. Every message lives in one Export block on the heap (sized by
 * MLP_MAX_LAYERS, a few tens of KB) and the initializers point into theta: nothing is copied but
 * the packed result, one buffer of about 4 P bytes plus a few hundred bytes of graph.
 *
 * Invariants: a node's inputs are the previous node's output or an initializer; the graph is
 * topologically sorted (the checker requires it); tensor names are unique.
 */
#include "metaserve/codec/onnx.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "onnx.pb-c.h"

#define NAME_LEN  48
#define MAX_NODES (2 * MLP_MAX_LAYERS + 2) // Gemm + activation per layer, Softmax, ArgMax
#define MAX_META  6

typedef Onnx__TensorShapeProto__Dimension Dim;

/* ---- the value infos of the graph's inputs and outputs ---- */

typedef struct {
    Onnx__ValueInfoProto vi;
    Onnx__TypeProto type;
    Onnx__TypeProto__Tensor tensor;
    Onnx__TensorShapeProto shape;
    Dim dims[2];
    Dim *dimp[2];
} Value;

// A tensor of elem_type named name with shape [N] or [N, cols] (cols > 0), N symbolic.
static Onnx__ValueInfoProto *value_init(Value *v, const char *name, int elem_type, int cols) {
    onnx__value_info_proto__init(&v->vi);
    onnx__type_proto__init(&v->type);
    onnx__type_proto__tensor__init(&v->tensor);
    onnx__tensor_shape_proto__init(&v->shape);
    for (int i = 0; i < 2; i++) {
        onnx__tensor_shape_proto__dimension__init(&v->dims[i]);
        v->dimp[i] = &v->dims[i];
    }
    v->dims[0].value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
    v->dims[0].dim_param = (char *)"N";
    v->dims[1].value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
    v->dims[1].dim_value = cols;
    v->shape.n_dim = cols > 0 ? 2 : 1;
    v->shape.dim = v->dimp;
    v->tensor.has_elem_type = 1;
    v->tensor.elem_type = elem_type;
    v->tensor.shape = &v->shape;
    v->type.value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
    v->type.tensor_type = &v->tensor;
    v->vi.name = (char *)name;
    v->vi.type = &v->type;
    return &v->vi;
}

/* ---- nodes ---- */

typedef struct {
    Onnx__NodeProto node;
    char name[NAME_LEN];
    char out[NAME_LEN];
    char *inputs[3];
    char *outputs[1];
    Onnx__AttributeProto attr[2];
    Onnx__AttributeProto *attrp[2];
} Node;

// A node of op_type with n_in inputs and one output (copied into the node's own buffers).
static Onnx__NodeProto *node_init(Node *n, const char *op_type, const char *name, char *const *in,
                                  int n_in, const char *out) {
    onnx__node_proto__init(&n->node);
    snprintf(n->name, sizeof n->name, "%s", name);
    snprintf(n->out, sizeof n->out, "%s", out);
    for (int i = 0; i < n_in; i++)
        n->inputs[i] = in[i];
    n->outputs[0] = n->out;
    n->node.op_type = (char *)op_type;
    n->node.name = n->name;
    n->node.n_input = (size_t)n_in;
    n->node.input = n->inputs;
    n->node.n_output = 1;
    n->node.output = n->outputs;
    return &n->node;
}

// Adds the integer attribute key = v to n.
static void node_attr_int(Node *n, const char *key, int64_t v) {
    size_t k = n->node.n_attribute;
    Onnx__AttributeProto *a = &n->attr[k];
    onnx__attribute_proto__init(a);
    a->name = (char *)key;
    a->has_type = 1;
    a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT;
    a->has_i = 1;
    a->i = v;
    n->attrp[k] = a;
    n->node.n_attribute = k + 1;
    n->node.attribute = n->attrp;
}

/* ---- the model ---- */

typedef struct {
    Onnx__ModelProto model;
    Onnx__OperatorSetIdProto opset;
    Onnx__OperatorSetIdProto *opsetp[1];
    Onnx__GraphProto graph;
    Value x, out[2];
    Onnx__ValueInfoProto *inputs[1], *outputs[2];
    Node nodes[MAX_NODES];
    Onnx__NodeProto *nodep[MAX_NODES];
    Onnx__TensorProto init[2 * MLP_MAX_LAYERS];
    Onnx__TensorProto *initp[2 * MLP_MAX_LAYERS];
    char init_name[2 * MLP_MAX_LAYERS][NAME_LEN];
    int64_t init_dims[2 * MLP_MAX_LAYERS][2];
    Onnx__StringStringEntryProto meta[MAX_META];
    Onnx__StringStringEntryProto *metap[MAX_META];
    char version[24], doc[512], arch[512];
} Export;

// Initializer k: a float tensor of dims (n_dims 1 or 2) over n floats of data (borrowed).
static void initializer(Export *e, int k, const char *name, const float *data, int n_dims,
                        int64_t d0, int64_t d1) {
    Onnx__TensorProto *t = &e->init[k];
    onnx__tensor_proto__init(t);
    snprintf(e->init_name[k], NAME_LEN, "%s", name);
    e->init_dims[k][0] = d0;
    e->init_dims[k][1] = d1;
    t->name = e->init_name[k];
    t->n_dims = (size_t)n_dims;
    t->dims = e->init_dims[k];
    t->has_data_type = 1;
    t->data_type = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
    // float_data is packed little-endian by protobuf-c on any host; the floats are theta's own
    t->n_float_data = (size_t)(n_dims == 2 ? d0 * d1 : d0);
    t->float_data = (float *)data;
    e->initp[k] = t;
}

static void metadata(Export *e, const char *key, const char *value) {
    size_t k = e->model.n_metadata_props;
    onnx__string_string_entry_proto__init(&e->meta[k]);
    e->meta[k].key = (char *)key;
    e->meta[k].value = (char *)value;
    e->metap[k] = &e->meta[k];
    e->model.n_metadata_props = k + 1;
    e->model.metadata_props = e->metap;
}

static const char *act_op(MlpAct a) {
    switch (a) {
    case MLP_ACT_TANH:
        return "Tanh";
    case MLP_ACT_SIGMOID:
        return "Sigmoid";
    case MLP_ACT_RELU:
        break;
    }
    return "Relu";
}

// The graph's nodes and initializers: Gemm (+ activation) per layer, then the head.
static void build_graph(Export *e, const MlpSpec *spec, const float *theta) {
    Onnx__GraphProto *g = &e->graph;
    const int L = spec->L, classify = spec->head == MLP_HEAD_CLASSIFICATION;
    int nn = 0;
    char *prev = (char *)"x";
    for (int l = 0; l < L; l++) {
        const int in = spec->sizes[l], out = spec->sizes[l + 1];
        char w[NAME_LEN], b[NAME_LEN], name[NAME_LEN], z[NAME_LEN];
        // nn.Sequential(Linear, act, Linear, act, ..., Linear): linear layer l is module 2l
        snprintf(w, sizeof w, "%d.weight", 2 * l);
        snprintf(b, sizeof b, "%d.bias", 2 * l);
        initializer(e, 2 * l, w, theta + spec->w_off[l], 2, out, in);
        initializer(e, 2 * l + 1, b, theta + spec->b_off[l], 1, out, 0);
        snprintf(name, sizeof name, "gemm_%d", l);
        if (l < L - 1)
            snprintf(z, sizeof z, "z_%d", l);
        else
            snprintf(z, sizeof z, "%s", classify ? "logits" : "y");
        char *gin[3] = {prev, e->init_name[2 * l], e->init_name[2 * l + 1]};
        e->nodep[nn] = node_init(&e->nodes[nn], "Gemm", name, gin, 3, z);
        node_attr_int(&e->nodes[nn], "transB", 1); // A W^T: W is [out, in] as stored
        prev = e->nodes[nn++].out;
        if (l == L - 1) break;
        char a[NAME_LEN];
        snprintf(a, sizeof a, "a_%d", l + 1);
        snprintf(name, sizeof name, "%s_%d", act_op(spec->act), l);
        e->nodep[nn] = node_init(&e->nodes[nn], act_op(spec->act), name, &prev, 1, a);
        prev = e->nodes[nn++].out;
    }
    const int O = spec->sizes[L];
    if (classify) {
        e->nodep[nn] = node_init(&e->nodes[nn], "Softmax", "softmax", &prev, 1, "probabilities");
        node_attr_int(&e->nodes[nn], "axis", 1);
        prev = e->nodes[nn++].out;
        e->nodep[nn] = node_init(&e->nodes[nn], "ArgMax", "argmax", &prev, 1, "labels");
        node_attr_int(&e->nodes[nn], "axis", 1);
        node_attr_int(&e->nodes[nn], "keepdims", 0); // select_last_index 0: the first maximum
        nn++;
        e->outputs[0] =
            value_init(&e->out[0], "probabilities", ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, O);
        e->outputs[1] = value_init(&e->out[1], "labels", ONNX__TENSOR_PROTO__DATA_TYPE__INT64, 0);
        g->n_output = 2;
    } else {
        e->outputs[0] = value_init(&e->out[0], "y", ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, O);
        g->n_output = 1;
    }
    g->output = e->outputs;
    e->inputs[0] = value_init(&e->x, "x", ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, spec->sizes[0]);
    g->n_input = 1;
    g->input = e->inputs;
    g->n_node = (size_t)nn;
    g->node = e->nodep;
    g->n_initializer = (size_t)(2 * L);
    g->initializer = e->initp;
}

// The architecture as the training config writes it: {"sizes":[...],"activation","head"}.
static void arch_json(char *buf, size_t n, const MlpSpec *spec) {
    size_t k = (size_t)snprintf(buf, n, "{\"sizes\":[");
    for (int i = 0; i <= spec->L && k < n; i++)
        k += (size_t)snprintf(buf + k, n - k, i ? ",%d" : "%d", spec->sizes[i]);
    if (k < n)
        snprintf(buf + k, n - k, "],\"activation\":\"%s\",\"head\":\"%s\"}",
                 mlp_act_name(spec->act), mlp_head_name(spec->head));
}

MsStatus onnx_export(const MlpSpec *spec, const float *theta, const OnnxProvenance *prov,
                     uint8_t **out, size_t *len, MsError *err) {
    *out = NULL;
    *len = 0;
    if (!prov || !prov->model || !prov->algorithm)
        return ms_fail(err, MS_ERR_INVALID, "onnx: provenance needs a model and an algorithm");
    Export *e = calloc(1, sizeof *e);
    if (!e) return ms_fail(err, MS_ERR_NOMEM, "onnx: out of memory");

    Onnx__ModelProto *m = &e->model;
    onnx__model_proto__init(m);
    m->has_ir_version = 1;
    m->ir_version = ONNX_IR_VERSION;
    onnx__operator_set_id_proto__init(&e->opset);
    e->opset.domain = (char *)""; // the default (ai.onnx) domain
    e->opset.has_version = 1;
    e->opset.version = ONNX_OPSET;
    e->opsetp[0] = &e->opset;
    m->n_opset_import = 1;
    m->opset_import = e->opsetp;
    m->producer_name = (char *)ONNX_PRODUCER_NAME;
    m->producer_version = (char *)ONNX_PRODUCER_VERSION;
    m->has_model_version = 1;
    m->model_version = prov->version;
    if (prov->adaptation)
        snprintf(e->doc, sizeof e->doc, "%s version %d (%s) adapted as %s", prov->model,
                 prov->version, prov->algorithm, prov->adaptation);
    else
        snprintf(e->doc, sizeof e->doc, "%s version %d (%s) meta-parameters", prov->model,
                 prov->version, prov->algorithm);
    m->doc_string = e->doc;

    onnx__graph_proto__init(&e->graph);
    e->graph.name = (char *)prov->model;
    build_graph(e, spec, theta);
    m->graph = &e->graph;

    snprintf(e->version, sizeof e->version, "%d", prov->version);
    arch_json(e->arch, sizeof e->arch, spec);
    metadata(e, "model", prov->model);
    metadata(e, "version", e->version);
    metadata(e, "algorithm", prov->algorithm);
    if (prov->adaptation) metadata(e, "adaptation_id", prov->adaptation);
    metadata(e, "architecture", e->arch);

    size_t n = onnx__model_proto__get_packed_size(m);
    uint8_t *buf = malloc(n ? n : 1);
    MsStatus s = MS_OK;
    if (!buf) {
        s = ms_fail(err, MS_ERR_NOMEM, "onnx: out of memory for %zu bytes", n);
    } else {
        size_t wrote = onnx__model_proto__pack(m, buf);
        MS_ASSERT(wrote == n);
        *out = buf;
        *len = n;
    }
    free(e);
    return s;
}

void onnx_filename(char *buf, size_t n, const OnnxProvenance *prov) {
    if (prov->adaptation)
        snprintf(buf, n, "%s-v%d-%s.onnx", prov->model, prov->version, prov->adaptation);
    else
        snprintf(buf, n, "%s-v%d.onnx", prov->model, prov->version);
}
