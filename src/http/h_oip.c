/*
 * Handlers of the Open Inference Protocol (KServe V2 / Triton REST) beside v1: health
 * (GET /v2/health/live, /v2/health/ready), server metadata (GET /v2), model metadata and
 * readiness (GET /v2/models/{name}[/versions/{version}][/ready]) and inference
 * (POST /v2/models/{name}[/versions/{version}]/infer), JSON or with the binary tensor data
 * extension. The request format is the codec's (codec/oip.h); this file maps it onto the v1
 * prediction path: the same serving cache, serving_adapt_copy for an inline support set and
 * serving_predict, so a /v2 answer equals v1's bit for bit.
 *
 * Models: {name} is a model name (its latest version, or {version}: a number or an alias), or
 * "adaptation:<id>", an adaptation made with POST /v1/models/{ref}/adapt, whose one version is
 * that of the model it was adapted from. ':' is not a name character, so the form never names a
 * model. Inputs: "x" [n, D]; "support_x" [k, D] and "support_y" [k, C] (or [k] when C is 1)
 * together adapt a private copy first (parameters "steps", "lr", as v1's predict), not for an
 * adaptation. Outputs: "y" [n, O] (regression) or "probabilities" [n, O] and "labels" [n]
 * (classification).
 *
 * Errors are the generic problem documents with the protocol's "error" member (reply.c); a
 * request the protocol's rules refuse is 400, an unknown model 404, a limit 413.
 */
#include <microhttpd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "http.h"
#include "metaserve/codec/oip.h"
#include "metaserve/nn/mlp.h"

#define OIP_SERVER_NAME    "metaserve"
#define OIP_SERVER_VERSION "1.0.0" // api/openapi.yaml's info.version
#define OIP_PLATFORM       "metaserve_mlp"
#define ADAPTATION_PREFIX  "adaptation:"
#define REF_MAX            (STORE_NAME_MAX + 16)

/* ---- errors ---- */

// Replies to a failed status as the protocol has it: an invalid request 400 (the field named),
// a missing model 404, the rest as v1.
static void oip_fail(Req *r, MsStatus s, const MsError *err) {
    const char *msg = err && err->msg[0] ? err->msg : ms_status_str(s);
    if (s == MS_ERR_INVALID)
        reply_problem(r, 400,
                      err && err->detail == MS_DETAIL_SYNTAX ? "malformed-json" : "bad-request",
                      "%s", msg);
    else
        reply_status(r, s, err);
}

/* ---- health and server metadata ---- */

void h_oip_live(Req *r) {
    JsonBuild b = {0};
    cJSON *d = cJSON_CreateObject();
    json_put(&b, d, "live", cJSON_CreateTrue());
    reply_built(r, 200, d, !b.oom);
}

void h_oip_ready(Req *r) {
    if (atomic_load(&r->app->draining)) {
        reply_problem(r, 503, "unavailable", "draining: the service is shutting down");
        return;
    }
    Store *st = req_store(r);
    if (!st) return;
    if (store_schema_version(st) != STORE_SCHEMA_VERSION) {
        reply_problem(r, 503, "unavailable", "database unavailable or of another schema");
        return;
    }
    JsonBuild b = {0};
    cJSON *d = cJSON_CreateObject();
    json_put(&b, d, "ready", cJSON_CreateTrue());
    reply_built(r, 200, d, !b.oom);
}

void h_oip_server(Req *r) {
    JsonBuild b = {0};
    cJSON *d = cJSON_CreateObject();
    json_put(&b, d, "name", cJSON_CreateString(OIP_SERVER_NAME));
    json_put(&b, d, "version", cJSON_CreateString(OIP_SERVER_VERSION));
    cJSON *ext = json_put(&b, d, "extensions", cJSON_CreateArray());
    json_put(&b, ext, NULL, cJSON_CreateString("binary_tensor_data"));
    reply_built(r, 200, d, !b.oom);
}

/* ---- models ---- */

// A model of the protocol: a stored version, or an adaptation over the version it came from.
typedef struct {
    ServingModel *m;    // the version (architecture and, for a model, the parameters)
    StoreAdaptation a;  // the adaptation (a.params) when adapted
    int adapted;        // 1: an adaptation
    const float *theta; // the parameters to predict with
    char version[16];   // the version as the protocol names it ("3")
} OipModel;

static void model_release(Req *r, OipModel *om) {
    serving_release(r->app->serving, om->m);
    store_adaptation_free(&om->a);
    om->m = NULL;
}

// Resolves {name} and the optional {version} into om; replies 404 (unknown model or version) or
// 503 and returns 0 otherwise. The caller releases with model_release either way.
static int model_resolve(Req *r, OipModel *om) {
    memset(om, 0, sizeof *om);
    const char *name = r->params[0], *ver = r->n_params > 1 ? r->params[1] : NULL;
    MsError err = {0};
    MsStatus s;
    char ref[REF_MAX];
    Store *st;
    if (strncmp(name, ADAPTATION_PREFIX, strlen(ADAPTATION_PREFIX)) == 0) {
        const char *id = name + strlen(ADAPTATION_PREFIX);
        if (!(st = req_store(r))) return 0;
        if (!name_chars(id, STORE_ID_MAX) ||
            (s = store_adaptation_get(st, id, &om->a, &err)) == MS_ERR_NOT_FOUND) {
            reply_problem(r, 404, "not-found", "model '%s': no such adaptation", name);
            return 0;
        }
        if (s != MS_OK) return reply_status(r, s, &err), 0;
        om->adapted = 1;
        snprintf(ref, sizeof ref, "%s@%d", om->a.model, om->a.version);
        snprintf(om->version, sizeof om->version, "%d", om->a.version);
        if (ver && strcmp(ver, om->version) != 0) {
            reply_problem(r, 404, "not-found",
                          "model '%s': version '%s' is unknown (an adaptation has the one "
                          "version %s)",
                          name, ver, om->version);
            return 0;
        }
        if ((s = serving_get(r->app->serving, st, ref, &om->m, &err)) != MS_OK)
            return reply_status(r, s, &err), 0;
        if (om->a.n_params != om->m->spec.P) {
            reply_problem(r, 503, "unavailable", "adaptation: corrupt: %zu parameters for %zu",
                          om->a.n_params, om->m->spec.P);
            return 0;
        }
        om->theta = om->a.params;
        return 1;
    }
    // a name or version no store could hold names no model
    if (!name_valid(name) || (ver && !name_chars(ver, STORE_NAME_MAX))) {
        reply_problem(r, 404, "not-found", "model '%s'%s%s: no such model or version", name,
                      ver ? " version " : "", ver ? ver : "");
        return 0;
    }
    snprintf(ref, sizeof ref, ver ? "%s@%s" : "%s", name, ver);
    st = req_store_if_up(r); // a cached version serves without the database, as on v1
    s = serving_get(r->app->serving, st, ref, &om->m, &err);
    if (s == MS_ERR_NOT_FOUND || s == MS_ERR_INVALID) {
        reply_problem(r, 404, "not-found", "model '%s'%s%s: no such model or version", name,
                      ver ? " version " : "", ver ? ver : "");
        return 0;
    }
    if (s != MS_OK) return reply_status(r, s, &err), 0;
    snprintf(om->version, sizeof om->version, "%d", om->m->version);
    om->theta = om->m->theta;
    return 1;
}

// Adds {"name", "datatype", "shape": [-1, w]} (or [-1] when w is 0) to list.
static void add_meta_tensor(JsonBuild *b, cJSON *list, const char *name, const char *dt, int w) {
    cJSON *t = json_put(b, list, NULL, cJSON_CreateObject());
    json_put(b, t, "name", cJSON_CreateString(name));
    json_put(b, t, "datatype", cJSON_CreateString(dt));
    cJSON *shape = json_put(b, t, "shape", cJSON_CreateArray());
    json_put(b, shape, NULL, json_integer(-1));
    if (w > 0) json_put(b, shape, NULL, json_integer(w));
}

void h_oip_model(Req *r) {
    OipModel om;
    if (!model_resolve(r, &om)) goto done;
    const MlpSpec *sp = &om.m->spec;
    const int D = sp->sizes[0], O = sp->sizes[sp->L], C = mlp_target_cols(sp);
    const int classify = sp->head == MLP_HEAD_CLASSIFICATION;
    JsonBuild b = {0};
    cJSON *d = cJSON_CreateObject();
    json_put(&b, d, "name", cJSON_CreateString(r->params[0]));
    cJSON *vs = json_put(&b, d, "versions", cJSON_CreateArray());
    StoreModel *rows = NULL;
    int n = 0;
    Store *st = NULL;
    // without {version} a model lists every stored version; an adaptation has its one
    if (!om.adapted && r->n_params == 1 && (st = req_store_if_up(r)) &&
        store_model_versions(st, om.m->name, &rows, &n, NULL) == MS_OK) {
        for (int i = 0; i < n; i++) {
            char v[16];
            snprintf(v, sizeof v, "%d", rows[i].version);
            json_put(&b, vs, NULL, cJSON_CreateString(v));
            store_model_free(&rows[i]);
        }
        free(rows);
    } else {
        json_put(&b, vs, NULL, cJSON_CreateString(om.version));
    }
    json_put(&b, d, "platform", cJSON_CreateString(OIP_PLATFORM));
    cJSON *ins = json_put(&b, d, "inputs", cJSON_CreateArray());
    add_meta_tensor(&b, ins, "x", "FP32", D);
    if (!om.adapted) { // optional: an inline support set to adapt to first
        add_meta_tensor(&b, ins, "support_x", "FP32", D);
        add_meta_tensor(&b, ins, "support_y", classify ? "INT64" : "FP32", classify ? 0 : C);
    }
    cJSON *outs = json_put(&b, d, "outputs", cJSON_CreateArray());
    if (classify) {
        add_meta_tensor(&b, outs, "probabilities", "FP32", O);
        add_meta_tensor(&b, outs, "labels", "INT64", 0);
    } else {
        add_meta_tensor(&b, outs, "y", "FP32", O);
    }
    reply_built(r, 200, d, !b.oom);
done:
    model_release(r, &om);
}

void h_oip_model_ready(Req *r) {
    OipModel om;
    if (model_resolve(r, &om)) {
        JsonBuild b = {0};
        cJSON *d = cJSON_CreateObject();
        json_put(&b, d, "name", cJSON_CreateString(r->params[0]));
        json_put(&b, d, "ready", cJSON_CreateTrue());
        reply_built(r, 200, d, !b.oom);
    }
    model_release(r, &om);
}

/* ---- inference ---- */

// The length of the JSON header from Inference-Header-Content-Length (OIP_NO_HEADER when
// absent); replies 400 and returns 0 when the value is not a decimal number.
static int header_length(Req *r, size_t *out) {
    const char *h =
        MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Inference-Header-Content-Length");
    *out = OIP_NO_HEADER;
    if (!h) return 1;
    char *end;
    unsigned long long v = strtoull(h, &end, 10);
    if (*h < '0' || *h > '9' || *end || v > r->body_len) {
        if (*h >= '0' && *h <= '9' && !*end)
            reply_problem(r, 400, "bad-request",
                          "Inference-Header-Content-Length: %llu bytes, the body has only %zu", v,
                          r->body_len);
        else
            reply_problem(r, 400, "bad-request",
                          "Inference-Header-Content-Length: must be a number of bytes");
        return 0;
    }
    *out = (size_t)v;
    return 1;
}

// 1 when the Content-Type is absent, JSON or application/octet-stream (binary tensors);
// else 415.
static int content_type_ok(Req *r) {
    const char *ct = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Content-Type");
    if (!ct) return 1;
    size_t n = strcspn(ct, "; ");
    if ((n == 16 && strncasecmp(ct, "application/json", 16) == 0) ||
        (n == 24 && strncasecmp(ct, "application/octet-stream", 24) == 0))
        return 1;
    reply_problem(r, 415, "unsupported-media-type",
                  "Content-Type: must be application/json or application/octet-stream");
    return 0;
}

// A [rows, w] input (or [rows] when w is 1 and rank1_ok) of om's width; replies 400 and
// returns 0 when its rank or width is wrong.
static int input_shape(Req *r, const OipTensor *t, int w, int rank1_ok, int *rows) {
    if (t->rank == 1 && rank1_ok) {
        *rows = (int)t->shape[0];
    } else if (t->rank != 2) {
        reply_problem(r, 400, "bad-request", "input '%s': shape has %d dimensions, must be [n, %d]",
                      t->name, t->rank, w);
        return 0;
    } else if (t->shape[1] != w) {
        reply_problem(r, 400, "bad-request",
                      "input '%s': shape is [%lld, %lld], the model takes "
                      "[n, %d]",
                      t->name, (long long)t->shape[0], (long long)t->shape[1], w);
        return 0;
    } else {
        *rows = (int)t->shape[0];
    }
    if (*rows < 1) {
        reply_problem(r, 400, "bad-request", "input '%s': has no rows", t->name);
        return 0;
    }
    return 1;
}

// Checks the names of q's inputs and outputs against om; replies 400 and returns 0.
static int names_ok(Req *r, const OipRequest *q, const OipModel *om) {
    const int classify = om->m->spec.head == MLP_HEAD_CLASSIFICATION;
    for (int i = 0; i < q->n_inputs; i++) {
        const char *n = q->inputs[i].name;
        int sup = strcmp(n, "support_x") == 0 || strcmp(n, "support_y") == 0;
        if (strcmp(n, "x") != 0 && !(sup && !om->adapted)) {
            reply_problem(r, 400, "bad-request", "input '%s': %s", n,
                          sup ? "an adaptation is adapted already (no support set)"
                              : "unknown input (the model takes x, support_x, support_y)");
            return 0;
        }
    }
    if (!oip_input(q, "x")) {
        reply_problem(r, 400, "bad-request", "input 'x': is required");
        return 0;
    }
    if (!oip_input(q, "support_x") != !oip_input(q, "support_y")) {
        reply_problem(r, 400, "bad-request", "input '%s': support_x and support_y go together",
                      oip_input(q, "support_x") ? "support_y" : "support_x");
        return 0;
    }
    for (int i = 0; i < q->n_outputs; i++) {
        const char *n = q->outputs[i].name;
        int ok = classify ? strcmp(n, "probabilities") == 0 || strcmp(n, "labels") == 0
                          : strcmp(n, "y") == 0;
        if (!ok) {
            reply_problem(r, 400, "bad-request", "output '%s': unknown (the model gives %s)", n,
                          classify ? "probabilities, labels" : "y");
            return 0;
        }
    }
    return 1;
}

// Adapts a private copy of om's parameters to q's support set into theta; replies and returns
// 0 on failure.
static int adapt_inline(Req *r, const OipRequest *q, const OipModel *om, float *theta) {
    const MlpSpec *sp = &om->m->spec;
    const OipTensor *sx = oip_input(q, "support_x"), *sy = oip_input(q, "support_y");
    int nx, ny;
    if (!input_shape(r, sx, sp->sizes[0], 0, &nx) ||
        !input_shape(r, sy, mlp_target_cols(sp), mlp_target_cols(sp) == 1, &ny))
        return 0;
    if (nx != ny) {
        reply_problem(r, 400, "bad-request", "input 'support_y': has %d rows, support_x has %d", ny,
                      nx);
        return 0;
    }
    AdaptLimits lim;
    adapt_limits_default(&lim);
    AdaptRequest a = {.x = sx->data, .y = sy->data, .n = nx, .steps = q->steps, .lr = q->lr};
    MsError err = {0};
    MsStatus s = serving_adapt_copy(om->m, &a, &lim, theta, NULL, NULL, &err);
    if (s != MS_OK) return oip_fail(r, s, &err), 0;
    return 1;
}

// Whether output name is sent binary.
static int out_binary(const OipRequest *q, const char *name) {
    for (int i = 0; i < q->n_outputs; i++)
        if (strcmp(q->outputs[i].name, name) == 0)
            return q->outputs[i].binary >= 0 ? q->outputs[i].binary : q->binary_output;
    return q->binary_output;
}

// Whether output name is in the reply (every output when none is requested).
static int out_wanted(const OipRequest *q, const char *name) {
    if (q->n_outputs == 0) return 1;
    for (int i = 0; i < q->n_outputs; i++)
        if (strcmp(q->outputs[i].name, name) == 0) return 1;
    return 0;
}

// Predicts x with theta and replies with the requested outputs, in the order the model gives
// them.
static void reply_infer(Req *r, const OipRequest *q, const OipModel *om, const float *theta,
                        const float *x, int rows) {
    const MlpSpec *sp = &om->m->spec;
    const int O = sp->sizes[sp->L], classify = sp->head == MLP_HEAD_CLASSIFICATION;
    MsError err = {0};
    char *text = NULL;
    float *out = malloc((size_t)rows * O * sizeof *out);
    int64_t *labels = classify ? malloc((size_t)rows * sizeof *labels) : NULL;
    if (!out || (classify && !labels)) {
        reply_problem(r, 503, "unavailable", "out of memory");
        goto done;
    }
    MsStatus s = serving_predict(sp, theta, x, rows, out, &err);
    if (s != MS_OK) {
        reply_status(r, s, &err);
        goto done;
    }
    OipOutTensor t[2];
    int n = 0;
    const char *first = classify ? "probabilities" : "y";
    if (out_wanted(q, first))
        t[n++] = (OipOutTensor){.name = first,
                                .datatype = OIP_FP32,
                                .rank = 2,
                                .shape = {rows, O},
                                .f32 = out,
                                .binary = out_binary(q, first)};
    if (classify && out_wanted(q, "labels")) {
        for (int i = 0; i < rows; i++) { // the argmax of v1's "labels" (json_argmax_text)
            const float *row = out + (size_t)i * O;
            int best = 0;
            for (int j = 1; j < O; j++)
                if (row[j] > row[best]) best = j;
            labels[i] = best;
        }
        t[n++] = (OipOutTensor){.name = "labels",
                                .datatype = OIP_INT64,
                                .rank = 1,
                                .shape = {rows},
                                .i64 = labels,
                                .binary = out_binary(q, "labels")};
    }
    size_t len, hl;
    const char *model_name = r->params[0]; // checked by model_resolve (a name or adaptation:id)
    s = oip_response_print(model_name, om->version, q->has_id ? q->id : NULL, t, n, &text, &len,
                           &hl, &err);
    if (s != MS_OK) {
        reply_status(r, s, &err);
        goto done;
    }
    metrics_count(r->app->metrics, "predicted_rows", rows);
    free(r->reply);
    r->reply = text;
    r->reply_len = len;
    r->status = 200;
    r->content_type = hl ? "application/octet-stream" : "application/json";
    if (hl) snprintf(r->infer_header_len, sizeof r->infer_header_len, "%zu", hl);
    text = NULL;
done:
    free(text);
    free(out);
    free(labels);
}

void h_oip_infer(Req *r) {
    OipRequest q;
    OipModel om;
    memset(&q, 0, sizeof q);
    memset(&om, 0, sizeof om);
    float *theta = NULL;
    size_t hl, off;
    if (!content_type_ok(r) || !header_length(r, &hl)) goto done;
    // the JSON's syntax is checked before cJSON sees it (as req_json does): a 400 naming the byte
    size_t jl = hl == OIP_NO_HEADER ? r->body_len : hl;
    const char *b = r->body ? r->body : "";
    if (!json_syntax(b, jl, &off)) {
        reply_problem(r, 400, "malformed-json", "body: %s at byte offset %zu",
                      off >= jl ? "JSON ends early" : "malformed JSON", off);
        goto done;
    }
    if ((off = json_nul_escape(b, jl)) != jl) {
        reply_problem(r, 400, "bad-request", "body: the string at byte offset %zu holds \\u0000",
                      off);
        goto done;
    }
    MsError err = {0};
    MsStatus s = oip_request_parse(&q, b, r->body_len, hl, &err);
    if (s != MS_OK) {
        oip_fail(r, s, &err);
        goto done;
    }
    if (!model_resolve(r, &om) || !names_ok(r, &q, &om)) goto done;
    const MlpSpec *sp = &om.m->spec;
    const OipTensor *x = oip_input(&q, "x");
    int rows;
    if (!input_shape(r, x, sp->sizes[0], 0, &rows) || !predict_limits_ok(r, sp, rows, "x"))
        goto done;
    if (oip_input(&q, "support_x")) {
        if (!(theta = malloc(sp->P * sizeof *theta))) {
            reply_problem(r, 503, "unavailable", "out of memory");
            goto done;
        }
        if (!adapt_inline(r, &q, &om, theta)) goto done;
    }
    reply_infer(r, &q, &om, theta ? theta : om.theta, x->data, rows);
done:
    model_release(r, &om);
    oip_request_free(&q);
    free(theta);
}
