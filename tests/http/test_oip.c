/*
 * The Open Inference Protocol (KServe V2 REST) routes against the real server on a loopback
 * port: every /v2 route; inference equal to v1's predict bit for bit (regression and
 * classification, a stored version, an adaptation made with v1, and adapt-and-infer on an inline
 * support set against v1's predict with the same support set); binary tensors (request and
 * response) equal to JSON ones bit for bit; malformed tensors and hostile shapes each answered
 * with the right 4xx and the protocol's {"error"}; every response validated against JSON Schemas
 * of the protocol's published REST shapes, written below, by a small validator of the keywords
 * they use.
 *
 * Models are stored straight into the database before the server starts (random parameters from
 * a fixed seed: what is compared is the two protocols' answers, not the model's quality):
 * "reg" 1-40-40-1 relu regression, "cls" 4-16-3 tanh classification.
 *
 * Bit equality: both protocols print floats with "%.9g" and a JSON client reads them back
 * through a double; binary outputs are the floats' own bytes. A "%.9g" text names exactly one
 * float, and reading it through a double lands on that float (the test would show otherwise):
 * every comparison here is of the 32-bit patterns, tolerance zero.
 */
#define _GNU_SOURCE
#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TEST_ROOT_NAME "ms_oip"
#include "metaserve/codec/codec.h"
#include "metaserve/core/rng.h"
#include "metaserve/nn/mlp.h"
#include "metaserve/store/store.h"
#include "testsrv.h"

static char g_dir[128];
static Server *g_srv;
static HcClient g_c;

/* ---- set-up: models stored directly ---- */

// Stores a model of the given architecture with parameters drawn from seed.
static void put_model(Store *st, const char *name, const int *sizes, int n, MlpAct act,
                      MlpHead head, uint64_t seed) {
    TrainConfig c;
    train_config_defaults(&c);
    snprintf(c.name, sizeof c.name, "%s", name);
    c.n_sizes = n;
    memcpy(c.sizes, sizes, (size_t)n * sizeof *sizes);
    c.act = act;
    c.head = head;
    if (head == MLP_HEAD_CLASSIFICATION) {
        snprintf(c.tasks.family, sizeof c.tasks.family, "gaussian");
        c.tasks.n_way = sizes[n - 1];
        c.tasks.dim = sizes[0];
    }
    MsError err = {0};
    char *json = NULL;
    ck_assert_msg(codec_config_print(&c, &json, &err) == MS_OK, "%s", err.msg);
    MlpSpec spec;
    ck_assert_msg(mlp_spec_init(&spec, sizes, n, act, head, &err) == MS_OK, "%s", err.msg);
    float *theta = malloc(spec.P * sizeof *theta);
    Rng rng;
    rng_seed(&rng, seed);
    mlp_init_params(&spec, theta, &rng);
    StoreModel m;
    memset(&m, 0, sizeof m);
    snprintf(m.name, sizeof m.name, "%s", name);
    snprintf(m.algorithm, sizeof m.algorithm, "maml");
    m.config = json;
    m.hyper = "{}";
    m.metrics = "{}";
    m.n_params = spec.P;
    m.params = theta;
    int version;
    ck_assert_msg(store_model_put(st, &m, &version, &err) == MS_OK, "%s", err.msg);
    free(theta);
    free(json);
}

static void server_up(void) {
    ServerConfig c;
    testsrv_config_in_new_dir(&c, g_dir, sizeof g_dir, "oip.db");
    c.workers = 0;
    c.http_threads = 2;
    Store *st;
    MsError err = {0};
    ck_assert_msg(store_open(&st, c.db, &err) == MS_OK, "%s", err.msg);
    put_model(st, "reg", (int[]){1, 40, 40, 1}, 4, MLP_ACT_RELU, MLP_HEAD_REGRESSION, 7);
    put_model(st, "reg", (int[]){1, 40, 40, 1}, 4, MLP_ACT_RELU, MLP_HEAD_REGRESSION, 8);
    put_model(st, "cls", (int[]){4, 16, 3}, 3, MLP_ACT_TANH, MLP_HEAD_CLASSIFICATION, 9);
    store_close(st);
    testsrv_start(&g_srv, &g_c, &c);
}

static void server_down(void) {
    testsrv_stop(&g_srv, g_dir);
}

/* ---- a JSON Schema validator: type, required, properties, additionalProperties (false),
 * items, enum, minItems, minimum ---- */

static int schema_check(const cJSON *s, const cJSON *v, const char *path, char *why, size_t n) {
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(s, "type");
    if (t) {
        const char *ty = t->valuestring;
        int ok = strcmp(ty, "object") == 0    ? cJSON_IsObject(v)
                 : strcmp(ty, "array") == 0   ? cJSON_IsArray(v)
                 : strcmp(ty, "string") == 0  ? cJSON_IsString(v)
                 : strcmp(ty, "boolean") == 0 ? cJSON_IsBool(v)
                 : strcmp(ty, "number") == 0  ? cJSON_IsNumber(v)
                 : strcmp(ty, "integer") == 0
                     ? cJSON_IsNumber(v) && v->valuedouble == floor(v->valuedouble)
                     : 0;
        if (!ok) return snprintf(why, n, "%s: is not of type %s", path, ty), 0;
    }
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(s, "enum");
    if (e) {
        int hit = 0;
        for (const cJSON *k = e->child; k && !hit; k = k->next)
            hit = cJSON_IsString(v) && strcmp(k->valuestring, v->valuestring) == 0;
        if (!hit) return snprintf(why, n, "%s: not one of the enum", path), 0;
    }
    const cJSON *mn = cJSON_GetObjectItemCaseSensitive(s, "minimum");
    if (mn && cJSON_IsNumber(v) && v->valuedouble < mn->valuedouble)
        return snprintf(why, n, "%s: below the minimum", path), 0;
    const cJSON *req = cJSON_GetObjectItemCaseSensitive(s, "required");
    for (const cJSON *k = req ? req->child : NULL; k; k = k->next)
        if (!cJSON_GetObjectItemCaseSensitive(v, k->valuestring))
            return snprintf(why, n, "%s: misses required %s", path, k->valuestring), 0;
    const cJSON *props = cJSON_GetObjectItemCaseSensitive(s, "properties");
    const cJSON *ap = cJSON_GetObjectItemCaseSensitive(s, "additionalProperties");
    if (cJSON_IsObject(v))
        for (const cJSON *m = v->child; m; m = m->next) {
            const cJSON *ps = cJSON_GetObjectItemCaseSensitive(props, m->string);
            char sub[256];
            snprintf(sub, sizeof sub, "%s.%s", path, m->string);
            if (!ps && cJSON_IsFalse(ap)) return snprintf(why, n, "%s: not allowed", sub), 0;
            if (ps && !schema_check(ps, m, sub, why, n)) return 0;
        }
    const cJSON *items = cJSON_GetObjectItemCaseSensitive(s, "items");
    const cJSON *mi = cJSON_GetObjectItemCaseSensitive(s, "minItems");
    if (cJSON_IsArray(v)) {
        if (mi && cJSON_GetArraySize(v) < mi->valueint)
            return snprintf(why, n, "%s: fewer than %d items", path, mi->valueint), 0;
        int i = 0;
        for (const cJSON *m = v->child; m && items; m = m->next, i++) {
            char sub[256];
            snprintf(sub, sizeof sub, "%s[%d]", path, i);
            if (!schema_check(items, m, sub, why, n)) return 0;
        }
    }
    return 1;
}

// The protocol's REST shapes (kserve/open-inference-protocol, "HTTP/REST"), as JSON Schema.
#define TENSOR_META                                                                                \
    "{\"type\":\"object\",\"required\":[\"name\",\"datatype\",\"shape\"],"                         \
    "\"properties\":{\"name\":{\"type\":\"string\"},\"datatype\":{\"type\":\"string\","            \
    "\"enum\":[\"BOOL\",\"UINT8\",\"UINT16\",\"UINT32\",\"UINT64\",\"INT8\",\"INT16\","            \
    "\"INT32\",\"INT64\",\"FP16\",\"FP32\",\"FP64\",\"BYTES\"]},"                                  \
    "\"shape\":{\"type\":\"array\",\"items\":{\"type\":\"integer\",\"minimum\":-1}}}}"
static const char *const SCHEMA_LIVE = "{\"type\":\"object\",\"required\":[\"live\"],"
                                       "\"properties\":{\"live\":{\"type\":\"boolean\"}}}";
static const char *const SCHEMA_READY = "{\"type\":\"object\",\"required\":[\"ready\"],"
                                        "\"properties\":{\"ready\":{\"type\":\"boolean\"}}}";
static const char *const SCHEMA_SERVER =
    "{\"type\":\"object\",\"required\":[\"name\",\"version\",\"extensions\"],"
    "\"properties\":{\"name\":{\"type\":\"string\"},\"version\":{\"type\":\"string\"},"
    "\"extensions\":{\"type\":\"array\",\"items\":{\"type\":\"string\"}}}}";
static const char *const SCHEMA_MODEL =
    "{\"type\":\"object\",\"required\":[\"name\",\"platform\",\"inputs\",\"outputs\"],"
    "\"properties\":{\"name\":{\"type\":\"string\"},\"versions\":{\"type\":\"array\","
    "\"items\":{\"type\":\"string\"}},\"platform\":{\"type\":\"string\"},"
    "\"inputs\":{\"type\":\"array\",\"items\":" TENSOR_META "},"
    "\"outputs\":{\"type\":\"array\",\"minItems\":1,\"items\":" TENSOR_META "}}}";
static const char *const SCHEMA_MODEL_READY =
    "{\"type\":\"object\",\"required\":[\"name\",\"ready\"],\"properties\":{"
    "\"name\":{\"type\":\"string\"},\"ready\":{\"type\":\"boolean\"}}}";
static const char *const SCHEMA_INFER =
    "{\"type\":\"object\",\"required\":[\"model_name\",\"outputs\"],\"properties\":{"
    "\"model_name\":{\"type\":\"string\"},\"model_version\":{\"type\":\"string\"},"
    "\"id\":{\"type\":\"string\"},\"parameters\":{\"type\":\"object\"},"
    "\"outputs\":{\"type\":\"array\",\"items\":{\"type\":\"object\",\"additionalProperties\":false,"
    "\"required\":[\"name\",\"shape\",\"datatype\"],\"properties\":{"
    "\"name\":{\"type\":\"string\"},\"shape\":{\"type\":\"array\",\"items\":{\"type\":\"integer\","
    "\"minimum\":0}},\"datatype\":{\"type\":\"string\"},\"parameters\":{\"type\":\"object\","
    "\"properties\":{\"binary_data_size\":{\"type\":\"integer\",\"minimum\":0}}},"
    "\"data\":{\"type\":\"array\"}}}}}}";
static const char *const SCHEMA_ERROR = "{\"type\":\"object\",\"required\":[\"error\"],"
                                        "\"properties\":{\"error\":{\"type\":\"string\"}}}";

#define ck_schema(doc, schema)                                                                     \
    do {                                                                                           \
        cJSON *s_ = cJSON_Parse(schema);                                                           \
        ck_assert_msg(s_ != NULL, "schema does not parse");                                        \
        char why_[512] = "";                                                                       \
        ck_assert_msg((doc) != NULL, "no JSON document");                                          \
        int ok_ = schema_check(s_, (doc), "$", why_, sizeof why_);                                 \
        cJSON_Delete(s_);                                                                          \
        ck_assert_msg(ok_, "schema %s: %s", #schema, why_);                                        \
    } while (0)

/* ---- requests ---- */

static long get(HcResp *r, const char *path) {
    return hc_call(&g_c, r, "GET", path, NULL);
}

// POSTs body[0..len) with Inference-Header-Content-Length header_len (0: none).
static long post(HcResp *r, const char *path, const char *body, size_t len, size_t header_len) {
    char h[80];
    snprintf(h, sizeof h, "Inference-Header-Content-Length: %zu", header_len);
    HcReq q = {.method = "POST",
               .path = path,
               .body = body,
               .body_len = len ? len : strlen(body),
               .content_type = header_len ? "application/octet-stream" : "application/json",
               .header = header_len ? h : NULL};
    return hc_do(&g_c, r, &q);
}

// The JSON header of a response (its whole body unless Inference-Header-Content-Length says
// less), parsed; *hl receives that length (0: none). The caller deletes it.
static cJSON *resp_header(const HcResp *r, size_t *hl) {
    char v[32];
    *hl = hc_header(r, "Inference-Header-Content-Length", v, sizeof v) ? strtoul(v, NULL, 10) : 0;
    return cJSON_ParseWithLength(r->body, *hl ? *hl : r->body_len);
}

/* ---- values ---- */

// The bit patterns of a JSON array of numbers, flattened (nested arrays row-major), into out.
static size_t json_bits(const cJSON *a, uint64_t *out, size_t cap, int as_float) {
    size_t n = 0;
    for (const cJSON *e = a ? a->child : NULL; e; e = e->next) {
        if (cJSON_IsArray(e)) {
            n += json_bits(e, out + n, cap - n, as_float);
            continue;
        }
        ck_assert_msg(n < cap, "too many values");
        if (as_float) {
            float f = (float)e->valuedouble;
            uint32_t u;
            memcpy(&u, &f, 4);
            out[n++] = u;
        } else {
            out[n++] = (uint64_t)(int64_t)e->valuedouble;
        }
    }
    return n;
}

// The values of output `name` of an inference response r (JSON data or binary tail) as bit
// patterns (floats' 32 bits, or INT64s) into out; returns how many.
static size_t output_bits(const HcResp *r, const char *name, uint64_t *out, size_t cap) {
    size_t hl;
    cJSON *h = resp_header(r, &hl);
    ck_assert_msg(h != NULL, "response header is not JSON: %.300s", r->body);
    ck_schema(h, SCHEMA_INFER);
    size_t off = hl ? hl : r->body_len, n = 0; // where the next binary output starts
    int found = 0;
    const cJSON *outs = cJSON_GetObjectItemCaseSensitive(h, "outputs");
    for (const cJSON *o = outs->child; o; o = o->next) {
        const char *dt = cJSON_GetObjectItemCaseSensitive(o, "datatype")->valuestring;
        int f32 = strcmp(dt, "FP32") == 0;
        const cJSON *par = cJSON_GetObjectItemCaseSensitive(o, "parameters");
        const cJSON *bs = cJSON_GetObjectItemCaseSensitive(par, "binary_data_size");
        int mine = strcmp(cJSON_GetObjectItemCaseSensitive(o, "name")->valuestring, name) == 0;
        if (bs) {
            size_t bytes = (size_t)bs->valuedouble, es = f32 ? 4 : 8;
            ck_assert_msg(off + bytes <= r->body_len, "binary output passes the body");
            for (size_t k = 0; mine && k < bytes / es; k++) {
                uint64_t v = 0;
                for (size_t b = es; b-- > 0;)
                    v = v << 8 | (unsigned char)r->body[off + k * es + b];
                ck_assert(n < cap);
                out[n++] = v;
            }
            off += bytes;
        } else if (mine) {
            n = json_bits(cJSON_GetObjectItemCaseSensitive(o, "data"), out, cap, f32);
        }
        found |= mine;
    }
    ck_assert_msg(found, "no output %s in %.300s", name, r->body);
    ck_assert_msg(off == r->body_len, "binary tail of %zu bytes, outputs say %zu", r->body_len - hl,
                  off - hl);
    cJSON_Delete(h);
    return n;
}

// The bit patterns of a v1 prediction's member key into out.
static size_t v1_bits(const HcResp *r, const char *key, uint64_t *out, size_t cap) {
    ck_assert_msg(r->status == 200, "v1: %ld %.300s", r->status, r->body);
    return json_bits(cJSON_GetObjectItemCaseSensitive(r->json, key), out, cap,
                     strcmp(key, "labels") != 0);
}

static void ck_bits_eq(const uint64_t *a, size_t na, const uint64_t *b, size_t nb,
                       const char *what) {
    ck_assert_msg(na == nb && na > 0, "%s: %zu values vs %zu", what, na, nb);
    for (size_t i = 0; i < na; i++)
        ck_assert_msg(a[i] == b[i], "%s: value %zu differs: %#llx vs %#llx", what, i,
                      (unsigned long long)a[i], (unsigned long long)b[i]);
}

// Rows of x as JSON: nested [[..],..] (v1) and flat [..] (OIP), n x d values from seed.
static void make_x(HcBuf *nested, HcBuf *flat, float *vals, int n, int d, uint64_t seed) {
    Rng rng;
    rng_seed(&rng, seed);
    hc_buf_init(nested);
    hc_buf_init(flat);
    hc_buf_puts(nested, "[");
    hc_buf_puts(flat, "[");
    for (int i = 0; i < n; i++) {
        hc_buf_puts(nested, i ? ",[" : "[");
        for (int j = 0; j < d; j++) {
            float v = (float)rng_range(&rng, -5, 5);
            vals[i * d + j] = v;
            hc_buf_printf(nested, "%s%.9g", j ? "," : "", (double)v);
            hc_buf_printf(flat, "%s%.9g", i || j ? "," : "", (double)v);
        }
        hc_buf_puts(nested, "]");
    }
    hc_buf_puts(nested, "]");
    hc_buf_puts(flat, "]");
}

/* ---- tests ---- */

START_TEST(health_server_and_model_metadata_routes_answer_in_the_protocols_shapes) {
    server_up();
    HcResp r;
    ck_assert_int_eq(get(&r, "/v2/health/live"), 200);
    ck_schema(r.json, SCHEMA_LIVE);
    ck_assert(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(r.json, "live")));
    hc_free(&r);
    ck_assert_int_eq(get(&r, "/v2/health/ready"), 200);
    ck_schema(r.json, SCHEMA_READY);
    ck_assert(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(r.json, "ready")));
    hc_free(&r);
    ck_assert_int_eq(get(&r, "/v2"), 200);
    ck_schema(r.json, SCHEMA_SERVER);
    ck_assert_str_eq(hc_str(&r, "name"), "metaserve");
    ck_assert_msg(strstr(r.body, "\"binary_tensor_data\""), "%s", r.body);
    hc_free(&r);

    // a regression model: both versions listed, x [-1, 1] in, y [-1, 1] out
    ck_assert_int_eq(get(&r, "/v2/models/reg"), 200);
    ck_schema(r.json, SCHEMA_MODEL);
    const cJSON *vs = cJSON_GetObjectItemCaseSensitive(r.json, "versions");
    ck_assert_int_eq(cJSON_GetArraySize(vs), 2);
    ck_assert_str_eq(cJSON_GetArrayItem(vs, 1)->valuestring, "2");
    ck_assert_str_eq(hc_str(&r, "platform"), "metaserve_mlp");
    const cJSON *in0 = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(r.json, "inputs"), 0);
    ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(in0, "name")->valuestring, "x");
    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(in0, "shape");
    ck_assert_int_eq(cJSON_GetArrayItem(sh, 0)->valueint, -1);
    ck_assert_int_eq(cJSON_GetArrayItem(sh, 1)->valueint, 1);
    const cJSON *o0 = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(r.json, "outputs"), 0);
    ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(o0, "name")->valuestring, "y");
    hc_free(&r);
    ck_assert_int_eq(get(&r, "/v2/models/reg/versions/1"), 200);
    ck_schema(r.json, SCHEMA_MODEL);
    vs = cJSON_GetObjectItemCaseSensitive(r.json, "versions");
    ck_assert_int_eq(cJSON_GetArraySize(vs), 1);
    ck_assert_str_eq(cJSON_GetArrayItem(vs, 0)->valuestring, "1");
    hc_free(&r);
    // a classifier: probabilities [-1, 3] and labels INT64 [-1]
    ck_assert_int_eq(get(&r, "/v2/models/cls"), 200);
    ck_schema(r.json, SCHEMA_MODEL);
    const cJSON *outs = cJSON_GetObjectItemCaseSensitive(r.json, "outputs");
    ck_assert_int_eq(cJSON_GetArraySize(outs), 2);
    const cJSON *lab = cJSON_GetArrayItem(outs, 1);
    ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(lab, "datatype")->valuestring, "INT64");
    hc_free(&r);

    static const char *const ready[] = {"/v2/models/reg/ready", "/v2/models/reg/versions/2/ready",
                                        "/v2/models/cls/ready"};
    for (size_t i = 0; i < 3; i++) {
        ck_assert_int_eq(get(&r, ready[i]), 200);
        ck_schema(r.json, SCHEMA_MODEL_READY);
        ck_assert(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(r.json, "ready")));
        hc_free(&r);
    }
    // unknown models and versions: 404 with the protocol's error (and the problem document)
    static const char *const unknown[] = {
        "/v2/models/nope", "/v2/models/nope/ready", "/v2/models/reg/versions/9",
        "/v2/models/reg/versions/9/ready",
        "/v2/models/adaptation:00ff00ff00ff00ff00ff00ff00ff00ff/ready"};
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
        get(&r, unknown[i]);
        ck_problem(&r, 404, "not-found");
        ck_schema(r.json, SCHEMA_ERROR);
        hc_free(&r);
    }
    // names that could never name a model (the path-parameter rule): 422, with the error too
    static const char *const malformed[] = {"/v2/models/adaptation:00ff/ready",
                                            "/v2/models/..x/ready"};
    for (size_t i = 0; i < sizeof malformed / sizeof malformed[0]; i++) {
        get(&r, malformed[i]);
        ck_problem(&r, 422, "validation");
        ck_schema(r.json, SCHEMA_ERROR);
        hc_free(&r);
    }
    // the request id is echoed as on v1
    HcReq q = {.method = "GET", .path = "/v2/models/reg", .request_id = "oip-rid-1"};
    hc_do(&g_c, &r, &q);
    char rid[64];
    ck_assert_str_eq(hc_header(&r, "X-Request-ID", rid, sizeof rid), "oip-rid-1");
    hc_free(&r);
    server_down();
}
END_TEST

// v1's predict and /v2 infer on the same rows, JSON and binary, compared bit for bit.
START_TEST(inference_equals_v1_predict_bit_for_bit_json_and_binary) {
    server_up();
    enum { N = 17, D = 4 };
    float vals[N * D];
    uint64_t a[256], b[256];
    HcBuf nested, flat, body;
    HcResp r1, r2;

    // regression, version 1 and the latest (2)
    make_x(&nested, &flat, vals, N, 1, 11);
    static const char *const v1p[] = {"/v1/models/reg@1/predict", "/v1/models/reg/predict"};
    static const char *const v2p[] = {"/v2/models/reg/versions/1/infer", "/v2/models/reg/infer"};
    for (int k = 0; k < 2; k++) {
        hc_buf_init(&body);
        hc_buf_printf(&body, "{\"x\":%s}", nested.s);
        hc_call(&g_c, &r1, "POST", v1p[k], body.s);
        size_t na = v1_bits(&r1, "y", a, 256);
        hc_buf_free(&body);
        hc_buf_init(&body);
        hc_buf_printf(&body,
                      "{\"id\":\"q-%d\",\"inputs\":[{\"name\":\"x\",\"shape\":[%d,1],"
                      "\"datatype\":\"FP32\",\"data\":%s}]}",
                      k, N, flat.s);
        ck_assert_int_eq(post(&r2, v2p[k], body.s, 0, 0), 200);
        ck_assert_str_eq(hc_str(&r2, "model_name"), "reg");
        ck_assert_str_eq(hc_str(&r2, "model_version"), k ? "2" : "1");
        char id[8];
        snprintf(id, sizeof id, "q-%d", k);
        ck_assert_str_eq(hc_str(&r2, "id"), id);
        size_t nb = output_bits(&r2, "y", b, 256);
        ck_bits_eq(a, na, b, nb, "regression JSON");
        hc_free(&r2);
        hc_buf_free(&body);
        // the same rows as binary FP32 in, binary y out
        HcBuf bin;
        hc_buf_init(&bin);
        hc_buf_printf(&bin,
                      "{\"inputs\":[{\"name\":\"x\",\"shape\":[%d,1],\"datatype\":\"FP32\","
                      "\"parameters\":{\"binary_data_size\":%d}}],\"outputs\":[{\"name\":\"y\","
                      "\"parameters\":{\"binary_data\":true}}]}",
                      N, N * 4);
        size_t hl = bin.len;
        for (int i = 0; i < N; i++) { // little-endian bytes
            uint32_t u;
            memcpy(&u, &vals[i], 4);
            char le[4] = {(char)u, (char)(u >> 8), (char)(u >> 16), (char)(u >> 24)};
            hc_buf_add(&bin, le, 4);
        }
        ck_assert_int_eq(post(&r2, v2p[k], bin.s, bin.len, hl), 200);
        char ct[64];
        ck_assert_str_eq(hc_header(&r2, "Content-Type", ct, sizeof ct), "application/octet-stream");
        nb = output_bits(&r2, "y", b, 256);
        ck_bits_eq(a, na, b, nb, "regression binary");
        hc_free(&r2);
        hc_buf_free(&bin);
        hc_free(&r1);
    }
    hc_buf_free(&nested);
    hc_buf_free(&flat);

    // classification: probabilities and labels; x nested in the request, FP64 converted
    make_x(&nested, &flat, vals, N, D, 12);
    hc_buf_init(&body);
    hc_buf_printf(&body, "{\"x\":%s}", nested.s);
    hc_call(&g_c, &r1, "POST", "/v1/models/cls/predict", body.s);
    hc_buf_free(&body);
    uint64_t l1[64], l2[64];
    size_t na = v1_bits(&r1, "probabilities", a, 256), nl1 = v1_bits(&r1, "labels", l1, 64);
    static const char *const variants[] = {
        // nested data, FP32
        "{\"inputs\":[{\"name\":\"x\",\"shape\":[%d,%d],\"datatype\":\"FP32\",\"data\":%s}]}",
        // FP64 (the "%.9g" texts of floats: converting back gives the same floats)
        "{\"inputs\":[{\"name\":\"x\",\"shape\":[%d,%d],\"datatype\":\"FP64\",\"data\":%s}],"
        "\"outputs\":[{\"name\":\"probabilities\"},{\"name\":\"labels\"}]}",
        // every output binary through binary_data_output
        "{\"parameters\":{\"binary_data_output\":true},\"inputs\":[{\"name\":\"x\",\"shape\":"
        "[%d,%d],\"datatype\":\"FP32\",\"data\":%s}]}",
    };
    for (size_t v = 0; v < 3; v++) {
        hc_buf_init(&body);
        hc_buf_printf(&body, variants[v], N, D, v == 0 ? nested.s : flat.s);
        ck_assert_int_eq(post(&r2, "/v2/models/cls/infer", body.s, 0, 0), 200);
        ck_bits_eq(a, na, b, output_bits(&r2, "probabilities", b, 256), "probabilities");
        ck_bits_eq(l1, nl1, l2, output_bits(&r2, "labels", l2, 64), "labels");
        hc_free(&r2);
        hc_buf_free(&body);
    }
    // only the labels, asked for binary
    hc_buf_init(&body);
    hc_buf_printf(&body,
                  "{\"inputs\":[{\"name\":\"x\",\"shape\":[%d,%d],\"datatype\":\"FP32\",\"data\":"
                  "%s}],\"outputs\":[{\"name\":\"labels\",\"parameters\":{\"binary_data\":true}}]}",
                  N, D, flat.s);
    ck_assert_int_eq(post(&r2, "/v2/models/cls/infer", body.s, 0, 0), 200);
    ck_bits_eq(l1, nl1, l2, output_bits(&r2, "labels", l2, 64), "labels binary");
    ck_assert_msg(!strstr(r2.body, "probabilities"), "an output not asked for was sent");
    hc_free(&r2);
    hc_buf_free(&body);
    hc_free(&r1);
    hc_buf_free(&nested);
    hc_buf_free(&flat);
    server_down();
}
END_TEST

START_TEST(adaptations_and_inline_support_sets_equal_v1_bit_for_bit) {
    server_up();
    enum { N = 9, K = 6 };
    float vals[N], sv[K];
    uint64_t a[64], b[64];
    HcBuf nested, flat, snested, sflat, body;
    HcResp r1, r2;
    make_x(&nested, &flat, vals, N, 1, 21);
    make_x(&snested, &sflat, sv, K, 1, 22);
    // support y: sin of the support x, printed as floats
    HcBuf sy_nested, sy_flat;
    hc_buf_init(&sy_nested);
    hc_buf_init(&sy_flat);
    hc_buf_puts(&sy_nested, "[");
    hc_buf_puts(&sy_flat, "[");
    for (int i = 0; i < K; i++) {
        float y = (float)sin(sv[i]);
        hc_buf_printf(&sy_nested, "%s[%.9g]", i ? "," : "", (double)y);
        hc_buf_printf(&sy_flat, "%s%.9g", i ? "," : "", (double)y);
    }
    hc_buf_puts(&sy_nested, "]");
    hc_buf_puts(&sy_flat, "]");

    // inline support: v1 predict with a support set vs /v2 infer with support_x, support_y
    hc_buf_init(&body);
    hc_buf_printf(&body, "{\"x\":%s,\"support\":{\"x\":%s,\"y\":%s},\"steps\":5,\"lr\":0.05}",
                  nested.s, snested.s, sy_nested.s);
    hc_call(&g_c, &r1, "POST", "/v1/models/reg/predict", body.s);
    size_t na = v1_bits(&r1, "y", a, 64);
    hc_free(&r1);
    hc_buf_free(&body);
    hc_buf_init(&body);
    hc_buf_printf(&body,
                  "{\"parameters\":{\"steps\":5,\"lr\":0.05},\"inputs\":["
                  "{\"name\":\"x\",\"shape\":[%d,1],\"datatype\":\"FP32\",\"data\":%s},"
                  "{\"name\":\"support_x\",\"shape\":[%d,1],\"datatype\":\"FP32\",\"data\":%s},"
                  "{\"name\":\"support_y\",\"shape\":[%d],\"datatype\":\"FP32\",\"data\":%s}]}",
                  N, flat.s, K, sflat.s, K, sy_flat.s);
    ck_assert_int_eq(post(&r2, "/v2/models/reg/infer", body.s, 0, 0), 200);
    ck_bits_eq(a, na, b, output_bits(&r2, "y", b, 64), "inline support");
    hc_free(&r2);
    hc_buf_free(&body);
    // and the meta-parameters' answer differs (the support set was used)
    hc_buf_init(&body);
    hc_buf_printf(&body,
                  "{\"inputs\":[{\"name\":\"x\",\"shape\":[%d,1],\"datatype\":\"FP32\","
                  "\"data\":%s}]}",
                  N, flat.s);
    ck_assert_int_eq(post(&r2, "/v2/models/reg/infer", body.s, 0, 0), 200);
    size_t nb = output_bits(&r2, "y", b, 64);
    ck_assert_msg(nb == na && memcmp(a, b, na * sizeof a[0]) != 0, "adaptation changed nothing");
    hc_free(&r2);

    // an adaptation made with v1, addressed as the model "adaptation:<id>"
    HcBuf ab;
    hc_buf_init(&ab);
    hc_buf_printf(&ab, "{\"support\":{\"x\":%s,\"y\":%s},\"steps\":5}", snested.s, sy_nested.s);
    ck_assert_int_eq(hc_call(&g_c, &r1, "POST", "/v1/models/reg@1/adapt", ab.s), 201);
    char id[64], path[160];
    snprintf(id, sizeof id, "%s", hc_str(&r1, "id"));
    hc_free(&r1);
    hc_buf_free(&ab);
    snprintf(path, sizeof path, "/v1/adaptations/%s/predict", id);
    hc_buf_init(&ab);
    hc_buf_printf(&ab, "{\"x\":%s}", nested.s);
    hc_call(&g_c, &r1, "POST", path, ab.s);
    na = v1_bits(&r1, "y", a, 64);
    hc_free(&r1);
    hc_buf_free(&ab);
    static const char *const forms[] = {"/v2/models/adaptation:%s/infer",
                                        "/v2/models/adaptation%%3A%s/versions/1/infer"};
    for (int f = 0; f < 2; f++) {
        snprintf(path, sizeof path, forms[f], id);
        ck_assert_int_eq(post(&r2, path, body.s, 0, 0), 200);
        ck_assert_str_eq(hc_str(&r2, "model_version"), "1");
        ck_bits_eq(a, na, b, output_bits(&r2, "y", b, 64), "adaptation");
        hc_free(&r2);
    }
    snprintf(path, sizeof path, "/v2/models/adaptation:%s", id);
    ck_assert_int_eq(get(&r2, path), 200);
    ck_schema(r2.json, SCHEMA_MODEL);
    ck_assert_str_eq(
        cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(r2.json, "versions"), 0)->valuestring,
        "1");
    hc_free(&r2);
    // its one version is its model's; no support set on an adaptation
    snprintf(path, sizeof path, "/v2/models/adaptation:%s/versions/2/infer", id);
    post(&r2, path, body.s, 0, 0);
    ck_problem(&r2, 404, "not-found");
    hc_free(&r2);
    hc_buf_free(&body);
    hc_buf_init(&body);
    hc_buf_printf(
        &body, "{\"inputs\":[{\"name\":\"x\",\"shape\":[1,1],\"datatype\":\"FP32\",\"data\":"
               "[1]},{\"name\":\"support_x\",\"shape\":[1,1],\"datatype\":\"FP32\",\"data\":[1]},"
               "{\"name\":\"support_y\",\"shape\":[1,1],\"datatype\":\"FP32\",\"data\":[1]}]}");
    snprintf(path, sizeof path, "/v2/models/adaptation:%s/infer", id);
    post(&r2, path, body.s, 0, 0);
    ck_problem(&r2, 400, "bad-request");
    ck_assert_msg(strstr(hc_str(&r2, "error"), "support_x"), "%s", r2.body);
    hc_free(&r2);
    hc_buf_free(&body);
    hc_buf_free(&nested), hc_buf_free(&flat), hc_buf_free(&snested), hc_buf_free(&sflat);
    hc_buf_free(&sy_nested), hc_buf_free(&sy_flat);
    server_down();
}
END_TEST

START_TEST(malformed_tensors_and_hostile_shapes_get_the_right_4xx) {
    server_up();
    static const struct {
        const char *what, *body;
        long status;
        const char *says; // text the error must contain
    } cases[] = {
        {"shape x datatype != data length",
         "{\"inputs\":[{\"name\":\"x\",\"shape\":[3,1],\"datatype\":\"FP32\",\"data\":[1,2]}]}",
         400, "data holds 2 values, the shape says 3"},
        {"more data than the shape",
         "{\"inputs\":[{\"name\":\"x\",\"shape\":[1,1],\"datatype\":\"FP32\",\"data\":[1,2]}]}",
         400, "the shape says 1"},
        {"unknown datatype",
         "{\"inputs\":[{\"name\":\"x\",\"shape\":[1,1],\"datatype\":\"FLOAT\",\"data\":[1]}]}", 400,
         "unknown datatype 'FLOAT'"},
        {"a datatype not supported",
         "{\"inputs\":[{\"name\":\"x\",\"shape\":[1,1],\"datatype\":\"BYTES\",\"data\":[1]}]}", 400,
         "BYTES is not supported"},
        {"missing input x",
         "{\"inputs\":[{\"name\":\"support_x\",\"shape\":[1,1],\"datatype\":\"FP32\",\"data\":"
         "[1]},{\"name\":\"support_y\",\"shape\":[1,1],\"datatype\":\"FP32\",\"data\":[1]}]}",
         400, "input 'x': is required"},
        {"unknown input",
         "{\"inputs\":[{\"name\":\"z\",\"shape\":[1,1],\"datatype\":\"FP32\","
         "\"data\":[1]}]}",
         400, "input 'z'"},
        {"wrong rank",
         "{\"inputs\":[{\"name\":\"x\",\"shape\":[1],\"datatype\":\"FP32\",\"data\":"
         "[1]}]}",
         400, "1 dimensions"},
        {"wrong width",
         "{\"inputs\":[{\"name\":\"x\",\"shape\":[1,2],\"datatype\":\"FP32\","
         "\"data\":[1,2]}]}",
         400, "[1, 2]"},
        {"negative dimension",
         "{\"inputs\":[{\"name\":\"x\",\"shape\":[-1,1],\"datatype\":\"FP32\",\"data\":[1]}]}", 400,
         "inputs[0].shape[0]"},
        {"a huge dimension",
         "{\"inputs\":[{\"name\":\"x\",\"shape\":[1e30,1],\"datatype\":"
         "\"FP32\",\"data\":[1]}]}",
         400, "inputs[0].shape[0]"},
        {"n x d overflowing",
         "{\"inputs\":[{\"name\":\"x\",\"shape\":[268435456,268435456],"
         "\"datatype\":\"FP32\",\"data\":[1]}]}",
         400, "elements in all"},
        {"eight dims overflowing 64 bits",
         "{\"inputs\":[{\"name\":\"x\",\"shape\":[65536,65536,65536,65536,65536,65536,65536,"
         "65536],\"datatype\":\"FP32\",\"data\":[1]}]}",
         400, "elements in all"},
        {"a binary input whose bytes are not there",
         "{\"inputs\":[{\"name\":\"x\",\"shape\":[200000,1],\"datatype\":\"UINT8\","
         "\"parameters\":{\"binary_data_size\":200000}}]}",
         400, "binary_data_size"},
        {"an INT32 value that is no integer",
         "{\"inputs\":[{\"name\":\"x\",\"shape\":[1,1],\"datatype\":\"INT32\",\"data\":[1.5]}]}",
         400, "data[0]: must be an integer"},
        {"an FP32 value beyond float range",
         "{\"inputs\":[{\"name\":\"x\",\"shape\":[1,1],\"datatype\":\"FP32\",\"data\":[1e39]}]}",
         400, "out of float range"},
        {"a string in data",
         "{\"inputs\":[{\"name\":\"x\",\"shape\":[1,1],\"datatype\":\"FP32\",\"data\":[\"1\"]}]}",
         400, "only numbers"},
        {"x without rows",
         "{\"inputs\":[{\"name\":\"x\",\"shape\":[0,1],\"datatype\":\"FP32\","
         "\"data\":[]}]}",
         400, "has no rows"},
        {"no inputs", "{\"inputs\":[]}", 400, "inputs"},
        {"unknown field",
         "{\"inputs\":[{\"name\":\"x\",\"shape\":[1,1],\"datatype\":\"FP32\","
         "\"data\":[1]}],\"temperature\":1}",
         400, "temperature"},
        {"unknown output",
         "{\"inputs\":[{\"name\":\"x\",\"shape\":[1,1],\"datatype\":\"FP32\","
         "\"data\":[1]}],\"outputs\":[{\"name\":\"labels\"}]}",
         400, "output 'labels'"},
        {"support_x without support_y",
         "{\"inputs\":[{\"name\":\"x\",\"shape\":[1,1],\"datatype\":\"FP32\",\"data\":[1]},"
         "{\"name\":\"support_x\",\"shape\":[1,1],\"datatype\":\"FP32\",\"data\":[1]}]}",
         400, "support_y"},
        {"steps beyond the limit",
         "{\"parameters\":{\"steps\":500},\"inputs\":[{\"name\":\"x\",\"shape\":[1,1],"
         "\"datatype\":\"FP32\",\"data\":[1]},{\"name\":\"support_x\",\"shape\":[1,1],"
         "\"datatype\":\"FP32\",\"data\":[1]},{\"name\":\"support_y\",\"shape\":[1,1],"
         "\"datatype\":\"FP32\",\"data\":[1]}]}",
         400, "steps"},
        {"malformed JSON", "{\"inputs\":[", 400, "byte offset"},
        {"binary size mismatch",
         "{\"inputs\":[{\"name\":\"x\",\"shape\":[2,1],\"datatype\":\"FP32\","
         "\"parameters\":{\"binary_data_size\":4}}]}",
         400, "binary_data_size is 4 bytes, the shape and FP32 take 8"},
        {"binary_data_size past the body",
         "{\"inputs\":[{\"name\":\"x\",\"shape\":[2,1],\"datatype\":\"FP32\","
         "\"parameters\":{\"binary_data_size\":8}}]}",
         400, "passes the end of the binary data"},
    };
    HcResp r;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *b = cases[i].body;
        size_t hl = strstr(b, "binary_data_size") ? strlen(b) : 0;
        post(&r, "/v2/models/reg/infer", b, 0, hl);
        ck_assert_msg(r.status == cases[i].status, "%s: status %ld: %.300s", cases[i].what,
                      r.status, r.body);
        ck_schema(r.json, SCHEMA_ERROR);
        ck_assert_msg(strstr(hc_str(&r, "error"), cases[i].says), "%s: error '%s' does not say %s",
                      cases[i].what, hc_str(&r, "error"), cases[i].says);
        hc_free(&r);
    }
    // binary framing: the header length beyond the body, not a number, and a tail left over
    static const char hdr[] = "{\"inputs\":[{\"name\":\"x\",\"shape\":[1,1],\"datatype\":\"FP32\","
                              "\"parameters\":{\"binary_data_size\":4}}]}";
    char buf[512];
    size_t hn = strlen(hdr);
    memcpy(buf, hdr, hn);
    memset(buf + hn, 0, 12);
    post(&r, "/v2/models/reg/infer", buf, hn + 4, hn + 5);
    ck_problem(&r, 400, "bad-request");
    ck_assert_msg(strstr(hc_str(&r, "error"), "Inference-Header-Content-Length"), "%s", r.body);
    hc_free(&r);
    post(&r, "/v2/models/reg/infer", buf, hn + 12, hn);
    ck_problem(&r, 400, "bad-request");
    ck_assert_msg(strstr(hc_str(&r, "error"), "12 bytes follow the JSON header"), "%s", r.body);
    hc_free(&r);
    HcReq q = {.method = "POST",
               .path = "/v2/models/reg/infer",
               .body = buf,
               .body_len = hn + 4,
               .content_type = "application/octet-stream",
               .header = "Inference-Header-Content-Length: 12abc"};
    hc_do(&g_c, &r, &q);
    ck_problem(&r, 400, "bad-request");
    hc_free(&r);
    // a binary NaN is refused like a JSON one would be
    uint32_t nan_bits = 0x7fc00000u;
    memcpy(buf + hn, &nan_bits, 4);
    post(&r, "/v2/models/reg/infer", buf, hn + 4, hn);
    ck_problem(&r, 400, "bad-request");
    ck_assert_msg(strstr(hc_str(&r, "error"), "finite"), "%s", r.body);
    hc_free(&r);
    // more rows than one prediction takes (binary UINT8, so the body stays small): 413
    enum { ROWS = 100001 };
    HcBuf big;
    hc_buf_init(&big);
    hc_buf_printf(&big,
                  "{\"inputs\":[{\"name\":\"x\",\"shape\":[%d,1],\"datatype\":\"UINT8\","
                  "\"parameters\":{\"binary_data_size\":%d}}]}",
                  ROWS, ROWS);
    size_t bhl = big.len;
    char *zeros = calloc(ROWS, 1);
    hc_buf_add(&big, zeros, ROWS);
    free(zeros);
    post(&r, "/v2/models/reg/infer", big.s, big.len, bhl);
    ck_problem(&r, 413, "payload-too-large");
    ck_assert_msg(strstr(hc_str(&r, "error"), "100001 rows"), "%s", r.body);
    hc_free(&r);
    hc_buf_free(&big);
    // unknown model; a content type that is neither JSON nor octets
    post(&r, "/v2/models/nope/infer",
         "{\"inputs\":[{\"name\":\"x\",\"shape\":[1,1],\"datatype\":\"FP32\",\"data\":[1]}]}", 0,
         0);
    ck_problem(&r, 404, "not-found");
    hc_free(&r);
    HcReq t = {.method = "POST",
               .path = "/v2/models/reg/infer",
               .body = "{}",
               .content_type = "text/plain"};
    hc_do(&g_c, &r, &t);
    ck_problem(&r, 415, "unsupported-media-type");
    hc_free(&r);
    // a valid request still works afterwards (nothing was left half done)
    post(&r, "/v2/models/reg/infer",
         "{\"inputs\":[{\"name\":\"x\",\"shape\":[1,1],\"datatype\":\"INT64\",\"data\":[[2]]}]}", 0,
         0);
    ck_assert_int_eq(r.status, 200);
    hc_free(&r);
    server_down();
}
END_TEST

START_TEST(v2_routes_take_the_v1_roles) {
    ServerConfig c;
    testsrv_config_in_new_dir(&c, g_dir, sizeof g_dir, "oip.db");
    c.workers = 0;
    c.n_keys = 1;
    c.keys[0].role = 1; // client
    snprintf(c.keys[0].key, sizeof c.keys[0].key, "client-key-0123456789");
    testsrv_start(&g_srv, &g_c, &c);
    HcResp r;
    ck_assert_int_eq(get(&r, "/v2/health/live"), 200); // open, as /livez
    hc_free(&r);
    get(&r, "/v2/models/reg");
    ck_problem(&r, 401, "unauthorized");
    ck_schema(r.json, SCHEMA_ERROR);
    hc_free(&r);
    g_c.key = "client-key-0123456789";
    get(&r, "/v2/models/reg"); // authenticated: now the model is what is missing
    ck_problem(&r, 404, "not-found");
    hc_free(&r);
    server_down();
}
END_TEST

int main(void) {
    curl_global_init(CURL_GLOBAL_DEFAULT);
    Suite *s = suite_create("oip");
    TCase *tc = tcase_create("oip");
    tcase_set_timeout(tc, 120);
    tcase_add_unchecked_fixture(tc, test_root_make, test_root_remove);
    tcase_add_test(tc, health_server_and_model_metadata_routes_answer_in_the_protocols_shapes);
    tcase_add_test(tc, inference_equals_v1_predict_bit_for_bit_json_and_binary);
    tcase_add_test(tc, adaptations_and_inline_support_sets_equal_v1_bit_for_bit);
    tcase_add_test(tc, malformed_tensors_and_hostile_shapes_get_the_right_4xx);
    tcase_add_test(tc, v2_routes_take_the_v1_roles);
    suite_add_tcase(s, tc);
    int failed = test_suite_run(s);
    curl_global_cleanup();
    return failed ? 1 : 0;
}
