/*
 * The ONNX export routes against the real server (in-process, ephemeral loopback port, temporary
 * SQLite file, libcurl): GET /v1/models/{ref}/onnx and GET /v1/adaptations/{id}/onnx. Two tiny
 * models are meta-trained through the jobs API (regression with ReLU, classification with
 * sigmoid) and one adaptation of each is made; every export is parsed back with protobuf-c (the
 * bindings the build generates from Debian's onnx.proto) and checked:
 *   - 200, application/octet-stream, Content-Disposition: attachment; filename="...";
 *   - IR 8, opset 17, producer, model_version, metadata_props (provenance);
 *   - the graph: input x float [N, D] with N symbolic, Gemm (transB = 1) + activation per layer,
 *     Softmax + ArgMax for classification, the outputs;
 *   - a version's initializers equal GET /v1/models/{ref}/weights's floats bit for bit (that
 *     route prints "%.9g", which round-trips a float exactly);
 *   - an adaptation's initializers differ from its version's, equal its stored parameters bit
 *     for bit (read from the SQLite file), and a naive double-precision forward pass over them
 *     equals POST /v1/adaptations/{id}/predict within 1e-5 relative + 1e-6 absolute (the server
 *     computes in float32 with OpenBLAS's summation order);
 *   - unknown models and adaptations are 404 problems, a malformed reference 422, POST 405.
 * The outside tools' view (onnx.checker, ONNX Runtime) is tests/onnx/run.mjs.
 */
#define _GNU_SOURCE
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TEST_ROOT_NAME "ms_onnx"
#include "metaserve/store/store.h"
#include "onnx.pb-c.h"
#include "testsrv.h"

#define DEADLINE_S 60.0
#define TOL_REL    1e-5 // float32 forward in another summation order (see the header)
#define TOL_ABS    1e-6

static char g_dir[128];
static Server *g_srv;
static HcClient g_c;

/* ---- server, jobs, exports ---- */

static void server_up(void) {
    ServerConfig c;
    testsrv_config_in_new_dir(&c, g_dir, sizeof g_dir, "onnx.db");
    c.workers = 2;
    c.http_threads = 2;
    testsrv_start(&g_srv, &g_c, &c);
}

static void server_down(void) {
    testsrv_stop(&g_srv, g_dir);
}

// Submits a job for the architecture and task family, waits for success; returns the version.
static int train(const char *name, const char *sizes, const char *act, const char *head,
                 const char *algo, const char *tasks) {
    char cfg[1024], path[128];
    snprintf(cfg, sizeof cfg,
             "{\"name\":\"%s\",\"architecture\":{\"sizes\":%s,\"activation\":\"%s\",\"head\":"
             "\"%s\"},\"algorithm\":\"%s\",\"inner\":{\"lr\":0.01,\"steps\":1},\"outer\":"
             "{\"optimizer\":\"adam\",\"lr\":0.001},\"meta_batch\":4,\"iterations\":100,"
             "\"seed\":3,\"tasks\":%s}",
             name, sizes, act, head, algo, tasks);
    HcResp r;
    ck_assert_int_eq(hc_call(&g_c, &r, "POST", "/v1/jobs", cfg), 202);
    snprintf(path, sizeof path, "/v1/jobs/%s", hc_str(&r, "id"));
    hc_free(&r);
    double t0 = now_s();
    for (;;) {
        ck_assert_int_eq(hc_call(&g_c, &r, "GET", path, NULL), 200);
        const char *st = hc_str(&r, "state");
        if (strcmp(st, "queued") && strcmp(st, "running")) break;
        ck_assert_msg(now_s() - t0 < DEADLINE_S, "job %s still %s", name, st);
        hc_free(&r);
        sleep_ms(20);
    }
    ck_assert_msg(strcmp(hc_str(&r, "state"), "succeeded") == 0, "job %s: %s", name, r.body);
    const cJSON *v = cJSON_GetObjectItem(cJSON_GetObjectItem(r.json, "model"), "version");
    int version = (int)v->valuedouble;
    hc_free(&r);
    return version;
}

// GET path: 200, the download headers with filename file; returns the parsed model (caller
// frees with onnx__model_proto__free_unpacked).
static Onnx__ModelProto *fetch_onnx(const char *path, const char *file) {
    HcResp r;
    ck_assert_int_eq(hc_call(&g_c, &r, "GET", path, NULL), 200);
    char ct[64], cd[256], want[256];
    ck_assert_ptr_nonnull(hc_header(&r, "Content-Type", ct, sizeof ct));
    ck_assert_str_eq(ct, "application/octet-stream");
    ck_assert_ptr_nonnull(hc_header(&r, "Content-Disposition", cd, sizeof cd));
    snprintf(want, sizeof want, "attachment; filename=\"%s\"", file);
    ck_assert_str_eq(cd, want);
    Onnx__ModelProto *m = onnx__model_proto__unpack(NULL, r.body_len, (const uint8_t *)r.body);
    ck_assert_msg(m != NULL, "%s: %zu bytes that protobuf-c cannot parse as a ModelProto", path,
                  r.body_len);
    hc_free(&r);
    return m;
}

/* ---- reading a parsed model ---- */

static const char *meta_get(const Onnx__ModelProto *m, const char *key) {
    for (size_t i = 0; i < m->n_metadata_props; i++)
        if (strcmp(m->metadata_props[i]->key, key) == 0) return m->metadata_props[i]->value;
    return NULL;
}

static const Onnx__TensorProto *init_get(const Onnx__GraphProto *g, const char *name) {
    for (size_t i = 0; i < g->n_initializer; i++)
        if (strcmp(g->initializer[i]->name, name) == 0) return g->initializer[i];
    return NULL;
}

static int64_t attr_int(const Onnx__NodeProto *n, const char *key, int64_t missing) {
    for (size_t i = 0; i < n->n_attribute; i++)
        if (strcmp(n->attribute[i]->name, key) == 0) return n->attribute[i]->i;
    return missing;
}

// A value info: name, element type, and shape [N] (cols 0) or [N, cols] with N symbolic.
static void check_value(const Onnx__ValueInfoProto *v, const char *name, int elem, int cols) {
    ck_assert_str_eq(v->name, name);
    ck_assert_int_eq(v->type->value_case, ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE);
    const Onnx__TypeProto__Tensor *t = v->type->tensor_type;
    ck_assert_int_eq(t->elem_type, elem);
    ck_assert_uint_eq(t->shape->n_dim, cols ? 2 : 1);
    ck_assert_int_eq(t->shape->dim[0]->value_case,
                     ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM);
    ck_assert_str_eq(t->shape->dim[0]->dim_param, "N");
    if (cols) ck_assert_int_eq(t->shape->dim[1]->dim_value, cols);
}

// The header, graph and provenance of an export of sizes[0..L] (act: "Relu" | "Sigmoid").
static void check_model(const Onnx__ModelProto *m, const int *sizes, int L, const char *act,
                        int classify, const char *name, int version, const char *algo,
                        const char *adaptation) {
    ck_assert_int_eq(m->ir_version, 8);
    ck_assert_uint_eq(m->n_opset_import, 1);
    ck_assert_str_eq(m->opset_import[0]->domain, "");
    ck_assert_int_eq(m->opset_import[0]->version, 17);
    ck_assert_str_eq(m->producer_name, "metaserve");
    ck_assert_int_eq(m->model_version, version);
    char v[16];
    snprintf(v, sizeof v, "%d", version);
    ck_assert_str_eq(meta_get(m, "model"), name);
    ck_assert_str_eq(meta_get(m, "version"), v);
    ck_assert_str_eq(meta_get(m, "algorithm"), algo);
    if (adaptation)
        ck_assert_str_eq(meta_get(m, "adaptation_id"), adaptation);
    else
        ck_assert_ptr_null(meta_get(m, "adaptation_id"));

    const Onnx__GraphProto *g = m->graph;
    ck_assert_uint_eq(g->n_input, 1);
    check_value(g->input[0], "x", ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, sizes[0]);
    size_t k = 0;
    const char *prev = "x";
    for (int l = 0; l < L; l++) {
        ck_assert_uint_lt(k, g->n_node);
        const Onnx__NodeProto *n = g->node[k++];
        char w[32], b[32];
        snprintf(w, sizeof w, "%d.weight", 2 * l);
        snprintf(b, sizeof b, "%d.bias", 2 * l);
        ck_assert_str_eq(n->op_type, "Gemm");
        ck_assert_uint_eq(n->n_input, 3);
        ck_assert_str_eq(n->input[0], prev);
        ck_assert_str_eq(n->input[1], w);
        ck_assert_str_eq(n->input[2], b);
        ck_assert_int_eq(attr_int(n, "transB", 0), 1);
        const Onnx__TensorProto *tw = init_get(g, w), *tb = init_get(g, b);
        ck_assert_ptr_nonnull(tw);
        ck_assert_ptr_nonnull(tb);
        ck_assert_int_eq(tw->data_type, ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT);
        ck_assert_uint_eq(tw->n_dims, 2);
        ck_assert_int_eq(tw->dims[0], sizes[l + 1]);
        ck_assert_int_eq(tw->dims[1], sizes[l]);
        ck_assert_uint_eq(tw->n_float_data, (size_t)sizes[l + 1] * sizes[l]);
        ck_assert_uint_eq(tb->n_dims, 1);
        ck_assert_int_eq(tb->dims[0], sizes[l + 1]);
        ck_assert_uint_eq(tb->n_float_data, (size_t)sizes[l + 1]);
        prev = n->output[0];
        if (l == L - 1) break;
        ck_assert_uint_lt(k, g->n_node);
        n = g->node[k++];
        ck_assert_str_eq(n->op_type, act);
        ck_assert_str_eq(n->input[0], prev);
        prev = n->output[0];
    }
    ck_assert_uint_eq(g->n_initializer, (size_t)(2 * L));
    if (classify) {
        ck_assert_uint_eq(g->n_node, k + 2);
        ck_assert_str_eq(g->node[k]->op_type, "Softmax");
        ck_assert_int_eq(attr_int(g->node[k], "axis", -1), 1);
        ck_assert_str_eq(g->node[k]->input[0], prev);
        ck_assert_str_eq(g->node[k]->output[0], "probabilities");
        ck_assert_str_eq(g->node[k + 1]->op_type, "ArgMax");
        ck_assert_int_eq(attr_int(g->node[k + 1], "keepdims", 1), 0);
        ck_assert_str_eq(g->node[k + 1]->input[0], "probabilities");
        ck_assert_str_eq(g->node[k + 1]->output[0], "labels");
        ck_assert_uint_eq(g->n_output, 2);
        check_value(g->output[0], "probabilities", ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, sizes[L]);
        check_value(g->output[1], "labels", ONNX__TENSOR_PROTO__DATA_TYPE__INT64, 0);
    } else {
        ck_assert_uint_eq(g->n_node, k);
        ck_assert_str_eq(prev, "y");
        ck_assert_uint_eq(g->n_output, 1);
        check_value(g->output[0], "y", ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, sizes[L]);
    }
}

// Every initializer equals the weights route's floats of ref, bit for bit.
static void check_weights_bitwise(const Onnx__ModelProto *m, const char *ref, int L) {
    char path[160];
    snprintf(path, sizeof path, "/v1/models/%s/weights", ref);
    HcResp r;
    ck_assert_int_eq(hc_call(&g_c, &r, "GET", path, NULL), 200);
    const cJSON *layers = cJSON_GetObjectItem(r.json, "weights");
    ck_assert_int_eq(cJSON_GetArraySize(layers), L);
    size_t compared = 0;
    for (int l = 0; l < L; l++) {
        const cJSON *layer = cJSON_GetArrayItem(layers, l);
        char w[32], b[32];
        snprintf(w, sizeof w, "%d.weight", 2 * l);
        snprintf(b, sizeof b, "%d.bias", 2 * l);
        const Onnx__TensorProto *tw = init_get(m->graph, w), *tb = init_get(m->graph, b);
        size_t i = 0;
        const cJSON *row, *v;
        cJSON_ArrayForEach(row, cJSON_GetObjectItem(layer, "W")) cJSON_ArrayForEach(v, row) {
            float f = (float)v->valuedouble;
            ck_assert_uint_lt(i, tw->n_float_data);
            ck_assert_msg(memcmp(&f, &tw->float_data[i], sizeof f) == 0,
                          "%s[%zu]: onnx %.9g, weights route %.9g", w, i, tw->float_data[i], f);
            i++;
        }
        ck_assert_uint_eq(i, tw->n_float_data);
        compared += i;
        i = 0;
        cJSON_ArrayForEach(v, cJSON_GetObjectItem(layer, "b")) {
            float f = (float)v->valuedouble;
            ck_assert_uint_lt(i, tb->n_float_data);
            ck_assert_msg(memcmp(&f, &tb->float_data[i], sizeof f) == 0,
                          "%s[%zu]: onnx %.9g, weights route %.9g", b, i, tb->float_data[i], f);
            i++;
        }
        ck_assert_uint_eq(i, tb->n_float_data);
        compared += i;
    }
    ck_assert_uint_gt(compared, 0);
    hc_free(&r);
}

// Every initializer of an adaptation's export equals its stored parameters bit for bit (read
// from the server's SQLite file over a second connection; mlp.h's layout: W_l then b_l).
static void check_adaptation_bitwise(const Onnx__ModelProto *m, const char *id, const int *sizes,
                                     int L) {
    Store *st = NULL;
    MsError err = {0};
    ck_assert_msg(store_open(&st, testsrv_db, &err) == MS_OK, "store_open: %s", err.msg);
    StoreAdaptation a;
    ck_assert_msg(store_adaptation_get(st, id, &a, &err) == MS_OK, "adaptation: %s", err.msg);
    size_t off = 0;
    for (int l = 0; l < L; l++) {
        char w[32], b[32];
        snprintf(w, sizeof w, "%d.weight", 2 * l);
        snprintf(b, sizeof b, "%d.bias", 2 * l);
        const Onnx__TensorProto *tw = init_get(m->graph, w), *tb = init_get(m->graph, b);
        ck_assert_uint_le(off + tw->n_float_data + tb->n_float_data, a.n_params);
        ck_assert_msg(memcmp(tw->float_data, a.params + off, tw->n_float_data * sizeof(float)) == 0,
                      "%s differs from the stored adaptation", w);
        off += tw->n_float_data;
        ck_assert_msg(memcmp(tb->float_data, a.params + off, tb->n_float_data * sizeof(float)) == 0,
                      "%s differs from the stored adaptation", b);
        off += tb->n_float_data;
        ck_assert_uint_eq(tw->n_float_data, (size_t)sizes[l + 1] * sizes[l]);
    }
    ck_assert_uint_eq(off, a.n_params);
    store_adaptation_free(&a);
    store_close(st);
}

// The graph's outputs for one row x, in double: Gemm, act, ..., then softmax when classify.
static void forward(const Onnx__ModelProto *m, const int *sizes, int L, int act_sigmoid,
                    int classify, const double *x, double *out) {
    double a[64], z[64];
    memcpy(a, x, sizeof(double) * (size_t)sizes[0]);
    for (int l = 0; l < L; l++) {
        char w[32], b[32];
        snprintf(w, sizeof w, "%d.weight", 2 * l);
        snprintf(b, sizeof b, "%d.bias", 2 * l);
        const float *W = init_get(m->graph, w)->float_data, *B = init_get(m->graph, b)->float_data;
        for (int o = 0; o < sizes[l + 1]; o++) {
            double s = B[o];
            for (int i = 0; i < sizes[l]; i++)
                s += (double)W[(size_t)o * sizes[l] + i] * a[i];
            z[o] = l == L - 1 ? s : act_sigmoid ? 1 / (1 + exp(-s)) : fmax(s, 0);
        }
        memcpy(a, z, sizeof(double) * (size_t)sizes[l + 1]);
    }
    int O = sizes[L];
    double mx = a[0], sum = 0;
    for (int o = 0; o < O; o++)
        mx = fmax(mx, a[o]);
    for (int o = 0; o < O; o++)
        sum += exp(a[o] - mx);
    for (int o = 0; o < O; o++)
        out[o] = classify ? exp(a[o] - mx) / sum : a[o];
}

// The adaptation's graph evaluated in double equals its v1 predictions on 16 rows.
static void check_against_predict(const Onnx__ModelProto *m, const char *id, const int *sizes,
                                  int L, int act_sigmoid, int classify) {
    const int D = sizes[0], O = sizes[L], N = 16;
    double x[16][2];
    HcBuf body;
    hc_buf_init(&body);
    hc_buf_puts(&body, "{\"x\":[");
    for (int i = 0; i < N; i++) {
        hc_buf_puts(&body, i ? ",[" : "[");
        for (int j = 0; j < D; j++) {
            x[i][j] = (double)(float)(-4.0 + 0.5 * i + 0.25 * j); // exact in float32
            hc_buf_printf(&body, "%s%.9g", j ? "," : "", x[i][j]);
        }
        hc_buf_puts(&body, "]");
    }
    hc_buf_puts(&body, "]}");
    char path[160];
    snprintf(path, sizeof path, "/v1/adaptations/%s/predict", id);
    HcResp r;
    ck_assert_int_eq(hc_call(&g_c, &r, "POST", path, body.s), 200);
    const cJSON *rows = cJSON_GetObjectItem(r.json, classify ? "probabilities" : "y");
    ck_assert_int_eq(cJSON_GetArraySize(rows), N);
    for (int i = 0; i < N; i++) {
        double out[8];
        forward(m, sizes, L, act_sigmoid, classify, x[i], out);
        const cJSON *row = cJSON_GetArrayItem(rows, i);
        for (int o = 0; o < O; o++) {
            double want = cJSON_GetArrayItem(row, o)->valuedouble;
            ck_assert_msg(fabs(out[o] - want) <= TOL_ABS + TOL_REL * fabs(want),
                          "row %d output %d: onnx graph %.9g, v1 predict %.9g", i, o, out[o], want);
        }
    }
    hc_free(&r);
    hc_buf_free(&body);
}

// Adapts ref to support (a JSON object text); returns the adaptation id in id.
static void adapt(const char *ref, const char *support, char id[64]) {
    char path[160], body[2048];
    snprintf(path, sizeof path, "/v1/models/%s/adapt", ref);
    snprintf(body, sizeof body, "{\"support\":%s,\"steps\":5,\"lr\":0.05}", support);
    HcResp r;
    ck_assert_int_eq(hc_call(&g_c, &r, "POST", path, body), 201);
    snprintf(id, 64, "%s", hc_str(&r, "id"));
    hc_free(&r);
}

// 1 when some initializer float differs between a and b.
static int params_differ(const Onnx__ModelProto *a, const Onnx__ModelProto *b) {
    for (size_t i = 0; i < a->graph->n_initializer; i++) {
        const Onnx__TensorProto *ta = a->graph->initializer[i], *tb = b->graph->initializer[i];
        if (memcmp(ta->float_data, tb->float_data, ta->n_float_data * sizeof(float))) return 1;
    }
    return 0;
}

/* ---- tests ---- */

START_TEST(regression_exports_hold_the_weights_and_the_adapted_graph_predicts_as_v1) {
    server_up();
    const int sizes[] = {1, 12, 12, 1};
    int v = train("wave", "[1,12,12,1]", "relu", "regression", "maml",
                  "{\"family\":\"sinusoid\",\"k_support\":10,\"k_query\":10}");
    char ref[64], path[160], file[160], id[64];
    snprintf(ref, sizeof ref, "wave@%d", v);
    snprintf(path, sizeof path, "/v1/models/%s/onnx", ref);
    snprintf(file, sizeof file, "wave-v%d.onnx", v);
    Onnx__ModelProto *m = fetch_onnx(path, file);
    check_model(m, sizes, 3, "Relu", 0, "wave", v, "maml", NULL);
    check_weights_bitwise(m, ref, 3);

    // the plain name resolves to the latest version: the same bytes' meaning
    Onnx__ModelProto *latest = fetch_onnx("/v1/models/wave/onnx", file);
    ck_assert(!params_differ(m, latest));
    onnx__model_proto__free_unpacked(latest, NULL);

    adapt(ref,
          "{\"x\":[[-4],[-3],[-2],[-1],[0],[1],[2],[3],[4]],"
          "\"y\":[[1.2],[0.1],[-1.1],[-1.9],[-1.6],[-0.4],[0.9],[1.8],[1.7]]}",
          id);
    snprintf(path, sizeof path, "/v1/adaptations/%s/onnx", id);
    snprintf(file, sizeof file, "wave-v%d-%s.onnx", v, id);
    Onnx__ModelProto *a = fetch_onnx(path, file);
    check_model(a, sizes, 3, "Relu", 0, "wave", v, "maml", id);
    check_adaptation_bitwise(a, id, sizes, 3);
    ck_assert_msg(params_differ(m, a), "the adaptation exports the meta-parameters");
    check_against_predict(a, id, sizes, 3, 0, 0);
    onnx__model_proto__free_unpacked(a, NULL);
    onnx__model_proto__free_unpacked(m, NULL);
    server_down();
}
END_TEST

START_TEST(classification_exports_end_in_softmax_and_argmax) {
    server_up();
    const int sizes[] = {2, 10, 3};
    int v = train("blobs", "[2,10,3]", "sigmoid", "classification", "fomaml",
                  "{\"family\":\"gaussian\",\"n_way\":3,\"dim\":2,\"k_support\":4,\"k_query\":4}");
    char ref[64], path[160], file[160], id[64];
    snprintf(ref, sizeof ref, "blobs@%d", v);
    snprintf(path, sizeof path, "/v1/models/%s/onnx", ref);
    snprintf(file, sizeof file, "blobs-v%d.onnx", v);
    Onnx__ModelProto *m = fetch_onnx(path, file);
    check_model(m, sizes, 2, "Sigmoid", 1, "blobs", v, "fomaml", NULL);
    check_weights_bitwise(m, ref, 2);

    adapt(ref,
          "{\"x\":[[3,0],[-2,2.5],[-2,-2.5],[3.3,0.4],[-1.6,2.2],[-2.4,-2.1]],"
          "\"y\":[[0],[1],[2],[0],[1],[2]]}",
          id);
    snprintf(path, sizeof path, "/v1/adaptations/%s/onnx", id);
    snprintf(file, sizeof file, "blobs-v%d-%s.onnx", v, id);
    Onnx__ModelProto *a = fetch_onnx(path, file);
    check_model(a, sizes, 2, "Sigmoid", 1, "blobs", v, "fomaml", id);
    ck_assert(params_differ(m, a));
    check_adaptation_bitwise(a, id, sizes, 2);
    check_against_predict(a, id, sizes, 2, 1, 1);
    onnx__model_proto__free_unpacked(a, NULL);
    onnx__model_proto__free_unpacked(m, NULL);
    server_down();
}
END_TEST

START_TEST(unknown_models_and_adaptations_are_404_and_bad_references_422) {
    server_up();
    HcResp r;
    ck_assert_int_eq(hc_call(&g_c, &r, "GET", "/v1/models/nosuch/onnx", NULL), 404);
    ck_problem(&r, 404, "not-found");
    hc_free(&r);
    ck_assert_int_eq(hc_call(&g_c, &r, "GET", "/v1/models/nosuch@3/onnx", NULL), 404);
    ck_problem(&r, 404, "not-found");
    hc_free(&r);
    ck_assert_int_eq(
        hc_call(&g_c, &r, "GET", "/v1/adaptations/0123456789abcdef0123456789abcdef/onnx", NULL),
        404);
    ck_problem(&r, 404, "not-found");
    hc_free(&r);
    ck_assert_int_eq(hc_call(&g_c, &r, "GET", "/v1/models/.hidden/onnx", NULL), 422);
    ck_problem(&r, 422, "validation");
    hc_free(&r);
    ck_assert_int_eq(hc_call(&g_c, &r, "POST", "/v1/models/nosuch/onnx", "{}"), 405);
    char allow[32];
    ck_assert_ptr_nonnull(hc_header(&r, "Allow", allow, sizeof allow));
    ck_assert_ptr_nonnull(strstr(allow, "GET"));
    ck_assert_ptr_null(hc_header(&r, "Content-Disposition", allow, sizeof allow));
    hc_free(&r);
    server_down();
}
END_TEST

int main(void) {
    curl_global_init(CURL_GLOBAL_DEFAULT);
    Suite *s = suite_create("onnx");
    TCase *tc = tcase_create("onnx");
    tcase_set_timeout(tc, 120);
    tcase_add_unchecked_fixture(tc, test_root_make, test_root_remove);
    tcase_add_test(tc, regression_exports_hold_the_weights_and_the_adapted_graph_predicts_as_v1);
    tcase_add_test(tc, classification_exports_end_in_softmax_and_argmax);
    tcase_add_test(tc, unknown_models_and_adaptations_are_404_and_bad_references_422);
    suite_add_tcase(s, tc);
    int failed = test_suite_run(s);
    curl_global_cleanup();
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
