/*
 * safetensors against the real server (in-process, ephemeral loopback port, a temporary SQLite
 * file or, as test_safetensors_pg, PostgreSQL), over libcurl: weights export (model and
 * adaptation) checked byte by byte against the JSON export and the published layout; import of a
 * file this test writes itself (its own tiny writer below, independent of src/codec), then adapt,
 * predict and export keeping every float bit; every class of malformed file refused with a 422
 * naming the tensor and nothing stored; safetensors dataset uploads equal to the JSON upload
 * (same description, bit-identical trained model for the same seed), with their own body limit;
 * and meta-training from an imported initialisation.
 */
#define _GNU_SOURCE
#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TEST_ROOT_NAME "ms_safetensors"
#include "testsrv.h"

#define DEADLINE_S 120.0

static char g_dir[128];
static Server *g_srv;
static HcClient g_c;

static void server_up(int workers, size_t max_body, size_t max_dataset) {
    ServerConfig c;
    testsrv_config_in_new_dir(&c, g_dir, sizeof g_dir, "st.db");
    c.workers = workers;
    c.http_threads = 2;
    c.max_body_bytes = max_body;
    c.max_dataset_bytes = max_dataset;
    testsrv_start(&g_srv, &g_c, &c);
}

static void server_down(void) {
    testsrv_stop(&g_srv, g_dir);
}

/* ---- the test's own safetensors writer (the published layout, nothing from src/) ---- */

typedef struct {
    const char *name;
    const char *dtype; // "F32", "I64", ...
    int rank;
    long shape[3];
    const void *data; // little-endian bytes (this host is little-endian: checked in main)
    size_t nbytes;
} TT;

// 8-byte little-endian header length, the JSON header padded with spaces to 8 bytes, the data.
static char *st_file(const TT *t, int n, const char *meta_json, size_t *len) {
    HcBuf h;
    hc_buf_init(&h);
    hc_buf_puts(&h, "{");
    if (meta_json) hc_buf_printf(&h, "\"__metadata__\":%s", meta_json);
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        hc_buf_printf(&h, "%s\"%s\":{\"dtype\":\"%s\",\"shape\":[", (meta_json || i) ? "," : "",
                      t[i].name, t[i].dtype);
        for (int k = 0; k < t[i].rank; k++)
            hc_buf_printf(&h, "%s%ld", k ? "," : "", t[i].shape[k]);
        hc_buf_printf(&h, "],\"data_offsets\":[%zu,%zu]}", off, off + t[i].nbytes);
        off += t[i].nbytes;
    }
    hc_buf_puts(&h, "}");
    while (h.len % 8)
        hc_buf_puts(&h, " ");
    *len = 8 + h.len + off;
    char *b = malloc(*len);
    ck_assert_ptr_nonnull(b);
    for (int i = 0; i < 8; i++)
        b[i] = (char)((uint64_t)h.len >> (8 * i));
    memcpy(b + 8, h.s, h.len);
    char *d = b + 8 + h.len;
    for (int i = 0; i < n; i++) {
        memcpy(d, t[i].data, t[i].nbytes);
        d += t[i].nbytes;
    }
    hc_buf_free(&h);
    return b;
}

// The test's own reader: the header length, the header as JSON, and tensor name's bytes.
static const unsigned char *st_tensor(const char *file, size_t len, const char *name,
                                      cJSON **hdr_out, size_t *nbytes) {
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--)
        n = n << 8 | (unsigned char)file[i];
    ck_assert_uint_le(8 + n, len);
    cJSON *h = cJSON_ParseWithLength(file + 8, n);
    ck_assert_ptr_nonnull(h);
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(h, name);
    const unsigned char *p = NULL;
    if (t) {
        const cJSON *off = cJSON_GetObjectItemCaseSensitive(t, "data_offsets");
        size_t b = (size_t)cJSON_GetArrayItem(off, 0)->valuedouble;
        size_t e = (size_t)cJSON_GetArrayItem(off, 1)->valuedouble;
        ck_assert_uint_le(8 + n + e, len);
        p = (const unsigned char *)file + 8 + n + b;
        *nbytes = e - b;
    }
    if (hdr_out)
        *hdr_out = h;
    else
        cJSON_Delete(h);
    return p;
}

/* ---- calls ---- */

static long post_bin(HcResp *r, const char *path, const char *body, size_t len) {
    HcReq q = {.method = "POST",
               .path = path,
               .body = body,
               .body_len = len,
               .content_type = "application/octet-stream"};
    return hc_do(&g_c, r, &q);
}

static long get(HcResp *r, const char *path) {
    return hc_call(&g_c, r, "GET", path, NULL);
}

// The 1-H-O network of these tests: deterministic weights in a few binades, with exact floats.
#define D 2
#define H 8
#define O 1
static void make_net(float *w0, float *b0, float *w1, float *b1) {
    for (int i = 0; i < H * D; i++)
        w0[i] = (float)sin(1.0 + i) * 0.7f;
    for (int i = 0; i < H; i++)
        b0[i] = (float)cos(2.0 + i) * 0.1f;
    for (int i = 0; i < O * H; i++)
        w1[i] = (float)sin(3.0 * i + 0.5) * 0.5f;
    b1[0] = 0.125f;
}

static const char ARCH_META[] =
    "{\"architecture\":\"{\\\"sizes\\\":[2,8,1],\\\"activation\\\":\\\"tanh\\\","
    "\\\"head\\\":\\\"regression\\\"}\"}";

static char *net_file(size_t *len, float *w0, float *b0, float *w1, float *b1) {
    make_net(w0, b0, w1, b1);
    TT t[4] = {{"0.weight", "F32", 2, {H, D}, w0, sizeof(float) * H * D},
               {"0.bias", "F32", 1, {H}, b0, sizeof(float) * H},
               {"2.weight", "F32", 2, {O, H}, w1, sizeof(float) * O * H},
               {"2.bias", "F32", 1, {O}, b1, sizeof(float) * O}};
    return st_file(t, 4, ARCH_META, len);
}

// The "y" member of a predict reply as text (exact: floats are printed to round-trip); the
// text stays valid until the next call (one static buffer per alternation of two calls).
static const char *y_of(const HcResp *r) {
    static char buf[2][4096];
    static int k;
    char *s = cJSON_PrintUnformatted(cJSON_GetObjectItem(r->json, "y"));
    ck_assert_ptr_nonnull(s);
    k ^= 1;
    snprintf(buf[k], sizeof buf[k], "%s", s);
    free(s);
    return buf[k];
}

static void import_ok(const char *name, const char *file, size_t len, int version) {
    char path[128];
    snprintf(path, sizeof path, "/v1/models/%s/versions", name);
    HcResp r;
    ck_assert_msg(post_bin(&r, path, file, len) == 201, "import: %ld %s", r.status, r.body);
    ck_assert_int_eq((int)hc_num(&r, "version"), version);
    ck_assert_str_eq(hc_str(&r, "provenance"), "imported");
    char loc[128], want[128];
    snprintf(want, sizeof want, "/v1/models/%s/versions/%d", name, version);
    ck_assert_ptr_nonnull(hc_header(&r, "Location", loc, sizeof loc));
    ck_assert_str_eq(loc, want);
    hc_free(&r);
}

/* ---- export and import ---- */

START_TEST(export_is_a_sequential_state_dict_equal_to_the_json_export_and_import_keeps_bits) {
    server_up(0, 64u << 20, 64u << 20);
    float w0[H * D], b0[H], w1[O * H], b1[O];
    size_t len;
    char *file = net_file(&len, w0, b0, w1, b1);
    import_ok("imp", file, len, 1);

    // the export, by ?format= and by Accept
    HcResp e, j;
    ck_assert_int_eq(get(&e, "/v1/models/imp/weights?format=safetensors"), 200);
    char ct[64];
    ck_assert_ptr_nonnull(hc_header(&e, "Content-Type", ct, sizeof ct));
    ck_assert_str_eq(ct, "application/octet-stream");
    // (hc_do sends no Accept header: the Accept form is the Python suite's, test_torch.py)
    ck_assert_int_eq(get(&j, "/v1/models/imp/weights"), 200); // JSON stays the default
    ck_assert_ptr_nonnull(j.json);

    // layer l is module 2l; every tensor's bytes equal the imported floats bit for bit and the
    // JSON export's %.9g values
    const char *names[4] = {"0.weight", "0.bias", "2.weight", "2.bias"};
    const float *want[4] = {w0, b0, w1, b1};
    size_t sizes[4] = {H * D, H, O * H, O};
    cJSON *hdr = NULL;
    for (int k = 0; k < 4; k++) {
        size_t nb = 0;
        const unsigned char *p = st_tensor(e.body, e.body_len, names[k], k ? NULL : &hdr, &nb);
        ck_assert_msg(p != NULL, "no tensor %s", names[k]);
        ck_assert_uint_eq(nb, sizes[k] * 4);
        ck_assert_msg(memcmp(p, want[k], nb) == 0, "tensor %s differs from the import", names[k]);
        const cJSON *layer = cJSON_GetArrayItem(cJSON_GetObjectItem(j.json, "weights"), k / 2);
        const cJSON *arr = cJSON_GetObjectItem(layer, k % 2 ? "b" : "W");
        const size_t cols = k < 2 ? D : H; // the layer's input width
        for (size_t i = 0; i < sizes[k]; i++) {
            const cJSON *v = k % 2 ? cJSON_GetArrayItem(arr, (int)i)
                                   : cJSON_GetArrayItem(cJSON_GetArrayItem(arr, (int)(i / cols)),
                                                        (int)(i % cols));
            float f;
            memcpy(&f, p + 4 * i, 4);
            ck_assert_msg((float)v->valuedouble == f, "%s[%zu]: JSON %.9g, safetensors %.9g",
                          names[k], i, v->valuedouble, (double)f);
        }
    }
    // the shapes are PyTorch's [out, in] and the metadata carries architecture and provenance
    const cJSON *w = cJSON_GetObjectItem(hdr, "0.weight");
    ck_assert_str_eq(cJSON_GetObjectItem(w, "dtype")->valuestring, "F32");
    ck_assert_int_eq(cJSON_GetArrayItem(cJSON_GetObjectItem(w, "shape"), 0)->valueint, H);
    ck_assert_int_eq(cJSON_GetArrayItem(cJSON_GetObjectItem(w, "shape"), 1)->valueint, D);
    const cJSON *meta = cJSON_GetObjectItem(hdr, "__metadata__");
    ck_assert_str_eq(cJSON_GetObjectItem(meta, "provenance")->valuestring, "imported");
    ck_assert_str_eq(cJSON_GetObjectItem(meta, "model")->valuestring, "imp");
    ck_assert_str_eq(cJSON_GetObjectItem(meta, "version")->valuestring, "1");
    ck_assert_str_eq(cJSON_GetObjectItem(meta, "format")->valuestring, "metaserve.weights/1");
    cJSON *arch = cJSON_Parse(cJSON_GetObjectItem(meta, "architecture")->valuestring);
    ck_assert_str_eq(cJSON_GetObjectItem(arch, "activation")->valuestring, "tanh");
    ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItem(arch, "sizes")), 3);
    cJSON_Delete(arch);
    cJSON_Delete(hdr);

    // the export imports again as version 2, and the JSON export imports as version 3: all three
    // predict the same bytes
    import_ok("imp", e.body, e.body_len, 2);
    HcResp r;
    ck_assert_int_eq(hc_call(&g_c, &r, "POST", "/v1/models/imp/versions", j.body), 201);
    ck_assert_int_eq((int)hc_num(&r, "version"), 3);
    hc_free(&r);
    const char *x = "{\"x\":[[0.5,-1.25],[3,0.001],[-2,2]]}";
    HcResp p1, p2, p3;
    ck_assert_int_eq(hc_call(&g_c, &p1, "POST", "/v1/models/imp@1/predict", x), 200);
    ck_assert_int_eq(hc_call(&g_c, &p2, "POST", "/v1/models/imp@2/predict", x), 200);
    ck_assert_int_eq(hc_call(&g_c, &p3, "POST", "/v1/models/imp@3/predict", x), 200);
    ck_assert_str_eq(y_of(&p1), y_of(&p2));
    ck_assert_str_eq(y_of(&p1), y_of(&p3));

    // import -> adapt -> predict -> export: the adaptation's export, imported as a version,
    // predicts exactly what the adaptation predicts
    ck_assert_int_eq(hc_call(&g_c, &r, "POST", "/v1/models/imp@1/adapt",
                             "{\"support\":{\"x\":[[1,2],[0,-1],[2,0.5]],\"y\":[[0.3],[-0.2],"
                             "[1.1]]},\"steps\":3,\"lr\":0.05}"),
                     201);
    char aid[64], path[128];
    snprintf(aid, sizeof aid, "%s", hc_str(&r, "id"));
    hc_free(&r);
    snprintf(path, sizeof path, "/v1/adaptations/%s/predict", aid);
    HcResp pa, ea, ja, pb;
    ck_assert_int_eq(hc_call(&g_c, &pa, "POST", path, x), 200);
    ck_assert_str_ne(y_of(&pa), y_of(&p1)); // adapting changed the parameters
    snprintf(path, sizeof path, "/v1/adaptations/%s/weights?format=safetensors", aid);
    ck_assert_int_eq(get(&ea, path), 200);
    snprintf(path, sizeof path, "/v1/adaptations/%s/weights", aid);
    ck_assert_int_eq(get(&ja, path), 200);
    ck_assert_str_eq(hc_str(&ja, "id"), aid);
    cJSON *ah = NULL;
    size_t nb;
    ck_assert_ptr_nonnull(st_tensor(ea.body, ea.body_len, "0.weight", &ah, &nb));
    const cJSON *am = cJSON_GetObjectItem(ah, "__metadata__");
    ck_assert_str_eq(cJSON_GetObjectItem(am, "adaptation_id")->valuestring, aid);
    ck_assert_str_eq(cJSON_GetObjectItem(am, "provenance")->valuestring, "adapted");
    cJSON_Delete(ah);
    import_ok("adapted", ea.body, ea.body_len, 1);
    ck_assert_int_eq(hc_call(&g_c, &pb, "POST", "/v1/models/adapted/predict", x), 200);
    ck_assert_str_eq(y_of(&pa), y_of(&pb));
    // the re-exported adaptation is byte-identical to the adaptation's export, tensor by tensor
    HcResp eb;
    ck_assert_int_eq(get(&eb, "/v1/models/adapted/weights?format=safetensors"), 200);
    for (int k = 0; k < 4; k++) {
        size_t n1, n2;
        const unsigned char *a = st_tensor(ea.body, ea.body_len, names[k], NULL, &n1);
        const unsigned char *b = st_tensor(eb.body, eb.body_len, names[k], NULL, &n2);
        ck_assert_uint_eq(n1, n2);
        ck_assert_msg(memcmp(a, b, n1) == 0, "%s changed on the way", names[k]);
    }
    HcResp bad;
    ck_assert_int_eq(get(&bad, "/v1/models/imp/weights?format=onnxx"), 422);
    ck_problem(&bad, 422, "validation");
    hc_free(&bad);
    hc_free(&e), hc_free(&j), hc_free(&p1), hc_free(&p2), hc_free(&p3);
    hc_free(&pa), hc_free(&ea), hc_free(&ja), hc_free(&pb), hc_free(&eb);
    free(file);
    server_down();
}
END_TEST

// POSTs body to the import route and expects a 422 whose detail contains every needle.
static void refused(const char *what, const char *body, size_t len, const char *n1,
                    const char *n2) {
    HcResp r;
    post_bin(&r, "/v1/models/bad/versions", body, len);
    ck_assert_msg(r.status == 422, "%s: status %ld (%s)", what, r.status, r.body);
    ck_problem(&r, 422, "validation");
    const char *d = hc_str(&r, "detail");
    ck_assert_msg(strstr(d, n1) && (!n2 || strstr(d, n2)), "%s: detail '%s' lacks '%s' / '%s'",
                  what, d, n1, n2 ? n2 : "");
    hc_free(&r);
}

START_TEST(malformed_files_are_422_naming_the_tensor_and_nothing_is_stored) {
    server_up(0, 64u << 20, 64u << 20);
    float w0[H * D], b0[H], w1[O * H], b1[O];
    size_t len;
    char *good = net_file(&len, w0, b0, w1, b1);
    char *b = malloc(len + 64);
    ck_assert_ptr_nonnull(b);

    refused("shorter than 8 bytes", good, 5, "8-byte header length", NULL);
    memcpy(b, good, len);
    b[0] = (char)0xff, b[1] = (char)0xff; // N far beyond the file
    refused("header length beyond the file", b, len, "header: length", "beyond");
    memcpy(b, good, len);
    refused("data cut short", b, len - 4, "2.bias", "data_offsets");

    // header edits that keep the length: replace a substring by one of equal length
    struct {
        const char *what, *from, *to, *n1, *n2;
    } edits[] = {
        {"offsets overlapping",
         "\"0.bias\":{\"dtype\":\"F32\",\"shape\":[8],\"data_offsets\":[64,96]}",
         "\"0.bias\":{\"dtype\":\"F32\",\"shape\":[8],\"data_offsets\":[32,64]}", "overlap", NULL},
        {"unknown dtype", "\"2.bias\":{\"dtype\":\"F32\"", "\"2.bias\":{\"dtype\":\"Q32\"",
         "2.bias", "dtype"},
        {"unsupported integer dtype", "\"2.bias\":{\"dtype\":\"F32\"",
         "\"2.bias\":{\"dtype\":\"I32\"", "2.bias", "I32"},
        {"wrong shape", "\"0.weight\":{\"dtype\":\"F32\",\"shape\":[8,2]",
         "\"0.weight\":{\"dtype\":\"F32\",\"shape\":[2,8]", "0.weight", "shape [2, 8]"},
        {"unknown tensor", "\"2.bias\"", "\"2.bxas\"", "2.bxas", NULL},
        {"missing layer", "\"2.weight\"", "\"9.weight\"", "9.bias", "is missing"},
    };
    for (size_t i = 0; i < sizeof edits / sizeof edits[0]; i++) {
        memcpy(b, good, len);
        char *at = memmem(b, len, edits[i].from, strlen(edits[i].from));
        ck_assert_msg(at != NULL, "%s: pattern not in the file", edits[i].what);
        ck_assert_uint_eq(strlen(edits[i].from), strlen(edits[i].to));
        memcpy(at, edits[i].to, strlen(edits[i].to));
        refused(edits[i].what, b, len, edits[i].n1, edits[i].n2);
    }
    // offsets outside the data: the end of the last tensor moved past it (and the size grown
    // to match, so only the bounds are wrong)
    memcpy(b, good, len);
    const char *from = "\"F32\",\"shape\":[1],\"data_offsets\":[128,132]";
    char *at = memmem(b, len, from, strlen(from));
    ck_assert_ptr_nonnull(at);
    // one F64 (8 bytes) where the data has 4 left: the offsets run past the end
    memcpy(at, "\"F64\",\"shape\":[1],\"data_offsets\":[128,136]", strlen(from));
    refused("offsets outside the data", b, len, "2.bias", "outside");

    // a NaN and an infinity, named by tensor and element
    float nan_b1[O] = {NAN}, inf_w0[H * D];
    memcpy(inf_w0, w0, sizeof inf_w0);
    inf_w0[5] = INFINITY;
    TT t[4] = {{"0.weight", "F32", 2, {H, D}, w0, sizeof w0},
               {"0.bias", "F32", 1, {H}, b0, sizeof b0},
               {"2.weight", "F32", 2, {O, H}, w1, sizeof w1},
               {"2.bias", "F32", 1, {O}, nan_b1, sizeof nan_b1}};
    size_t n2;
    char *f2 = st_file(t, 4, ARCH_META, &n2);
    refused("NaN", f2, n2, "2.bias", "element 0 is not a finite");
    free(f2);
    t[3].data = b1, t[0].data = inf_w0;
    f2 = st_file(t, 4, ARCH_META, &n2);
    refused("infinity", f2, n2, "0.weight", "element 5");
    free(f2);
    // no architecture anywhere; an architecture that does not match the tensors
    t[0].data = w0;
    f2 = st_file(t, 4, NULL, &n2);
    refused("no architecture", f2, n2, "architecture", NULL);
    HcResp r;
    post_bin(&r, "/v1/models/bad/versions?sizes=2,8,8,1&activation=tanh", f2, n2);
    ck_problem(&r, 422, "validation");
    ck_assert_msg(strstr(hc_str(&r, "detail"), "3 linear layers") != NULL, "%s", r.body);
    hc_free(&r);
    // an architecture the body cannot hold is refused before anything is allocated for it
    post_bin(&r, "/v1/models/bad/versions?sizes=4096,4096,4096,1&activation=tanh", f2, n2);
    ck_problem(&r, 422, "validation");
    ck_assert_msg(strstr(hc_str(&r, "detail"), "cannot fit") != NULL, "%s", r.body);
    hc_free(&r);
    // ... and with the query's architecture the same file imports
    post_bin(&r, "/v1/models/bad2/versions?sizes=2,8,1&activation=tanh", f2, n2);
    ck_assert_int_eq(r.status, 201);
    hc_free(&r);
    free(f2);

    // nothing of the refused imports was stored; JSON bodies are refused with field names too
    ck_assert_int_eq(get(&r, "/v1/models/bad"), 404);
    hc_free(&r);
    hc_call(&g_c, &r, "POST", "/v1/models/bad/versions",
            "{\"sizes\":[2,8,1],\"activation\":\"tanh\",\"weights\":[{\"W\":[[1,2]],\"b\":[0]}]}");
    ck_problem(&r, 422, "validation");
    ck_assert_msg(strncmp(hc_str(&r, "detail"), "weights", 7) == 0, "%s", r.body);
    hc_free(&r);
    HcReq q = {.method = "POST",
               .path = "/v1/models/bad/versions",
               .body = good,
               .body_len = len,
               .content_type = "text/plain"};
    hc_do(&g_c, &r, &q);
    ck_problem(&r, 415, "unsupported-media-type");
    hc_free(&r);
    free(b);
    free(good);
    server_down();
}
END_TEST

START_TEST(meta_sgd_rates_and_half_precision_tensors_import_and_export) {
    server_up(0, 64u << 20, 64u << 20);
    float w0[H * D], b0[H], w1[O * H], b1[O], r0[H * D], rb0[H], r1[O * H], rb1[O];
    make_net(w0, b0, w1, b1);
    for (int i = 0; i < H * D; i++)
        r0[i] = 0.01f + 0.001f * (float)i;
    for (int i = 0; i < H; i++)
        rb0[i] = 0.02f, r1[i] = 0.03f;
    rb1[0] = 0.04f;
    // 0.bias as BF16 (the top halves of b0's floats) and 2.bias as F16 0.125 (0x3000)
    uint16_t bf[H], half = 0x3000;
    float b0_bf[H];
    for (int i = 0; i < H; i++) {
        uint32_t u;
        memcpy(&u, &b0[i], 4);
        bf[i] = (uint16_t)(u >> 16);
        u = (uint32_t)bf[i] << 16;
        memcpy(&b0_bf[i], &u, 4);
    }
    TT t[8] = {{"0.weight", "F32", 2, {H, D}, w0, sizeof w0},
               {"0.bias", "BF16", 1, {H}, bf, sizeof bf},
               {"2.weight", "F32", 2, {O, H}, w1, sizeof w1},
               {"2.bias", "F16", 1, {O}, &half, 2},
               {"lr.0.weight", "F32", 2, {H, D}, r0, sizeof r0},
               {"lr.0.bias", "F32", 1, {H}, rb0, sizeof rb0},
               {"lr.2.weight", "F32", 2, {O, H}, r1, sizeof r1},
               {"lr.2.bias", "F32", 1, {O}, rb1, sizeof rb1}};
    size_t len;
    char *file = st_file(t, 8, ARCH_META, &len);
    HcResp r;
    ck_assert_int_eq(post_bin(&r, "/v1/models/msgd/versions", file, len), 201);
    ck_assert_str_eq(hc_str(&r, "algorithm"), "metasgd");
    hc_free(&r);
    ck_assert_int_eq(get(&r, "/v1/models/msgd/weights?format=safetensors"), 200);
    const char *names[5] = {"0.bias", "2.bias", "lr.0.weight", "lr.2.weight", "lr.2.bias"};
    const float *want[5] = {b0_bf, b1, r0, r1, rb1};
    for (int k = 0; k < 5; k++) {
        size_t nb;
        const unsigned char *p = st_tensor(r.body, r.body_len, names[k], NULL, &nb);
        ck_assert_msg(p && memcmp(p, want[k], nb) == 0, "%s differs", names[k]);
    }
    hc_free(&r);
    // Meta-SGD without its rates is refused
    free(file);
    file = st_file(t, 4,
                   "{\"algorithm\":\"metasgd\",\"architecture\":\"{\\\"sizes\\\":[2,8,1],"
                   "\\\"activation\\\":\\\"tanh\\\"}\"}",
                   &len);
    post_bin(&r, "/v1/models/msgd/versions", file, len);
    ck_problem(&r, 422, "validation");
    ck_assert_msg(strstr(hc_str(&r, "detail"), "metasgd") != NULL, "%s", r.body);
    hc_free(&r);
    free(file);
    server_down();
}
END_TEST

/* ---- datasets ---- */

#define NR 60 // rows of the pool
#define XD 3  // x width
#define NC 6  // classes

static void make_pool(float *x, int64_t *labels) {
    for (int i = 0; i < NR * XD; i++)
        x[i] = (float)sin(0.37 * i) * 2.0f;
    for (int i = 0; i < NR; i++)
        labels[i] = (int64_t)((i * 7) % NC) * 10; // labels 0, 10, ... 50, interleaved
}

static void pool_json(HcBuf *b, const char *name, const float *x, const int64_t *labels) {
    hc_buf_init(b);
    hc_buf_printf(b, "{\"name\":\"%s\",\"kind\":\"classes\",\"x\":[", name);
    for (int r = 0; r < NR; r++) {
        hc_buf_puts(b, r ? ",[" : "[");
        for (int c = 0; c < XD; c++)
            hc_buf_printf(b, "%s%.9g", c ? "," : "", (double)x[r * XD + c]);
        hc_buf_puts(b, "]");
    }
    hc_buf_puts(b, "],\"labels\":[");
    for (int r = 0; r < NR; r++)
        hc_buf_printf(b, "%s%lld", r ? "," : "", (long long)labels[r]);
    hc_buf_puts(b, "],\"test_classes\":[50]}");
}

static void upload(HcResp *r, int binary, const char *body, size_t len, char id[64]) {
    long st = binary ? post_bin(r, "/v1/datasets", body, len)
                     : hc_call(&g_c, r, "POST", "/v1/datasets", body);
    ck_assert_msg(st == 201, "upload: %ld %s", st, r->body);
    snprintf(id, 64, "%s", hc_str(r, "id"));
}

static void train_on(const char *dataset, const char *model, HcResp *weights) {
    char cfg[1024], path[128];
    snprintf(cfg, sizeof cfg,
             "{\"name\":\"%s\",\"architecture\":{\"sizes\":[%d,16,3],\"activation\":\"relu\","
             "\"head\":\"classification\"},\"algorithm\":\"maml\",\"meta_batch\":4,"
             "\"iterations\":30,\"seed\":7,\"tasks\":{\"dataset\":\"%s\",\"k_support\":2,"
             "\"k_query\":3,\"n_way\":3}}",
             model, XD, dataset);
    HcResp r;
    ck_assert_int_eq(hc_call(&g_c, &r, "POST", "/v1/jobs", cfg), 202);
    snprintf(path, sizeof path, "/v1/jobs/%s", hc_str(&r, "id"));
    hc_free(&r);
    double t0 = now_s();
    for (;;) {
        ck_assert_int_eq(get(&r, path), 200);
        const char *s = hc_str(&r, "state");
        if (!strcmp(s, "succeeded")) break;
        ck_assert_msg(strcmp(s, "failed") && strcmp(s, "cancelled"), "job %s: %s", s, r.body);
        ck_assert_msg(now_s() - t0 < DEADLINE_S, "job still %s", s);
        hc_free(&r);
        sleep_ms(20);
    }
    hc_free(&r);
    snprintf(path, sizeof path, "/v1/models/%s/weights", model);
    ck_assert_int_eq(get(weights, path), 200);
}

START_TEST(a_safetensors_pool_uploads_and_trains_bit_identically_to_the_json_upload) {
    // the JSON limit (2 KiB) is below the JSON pool's size, the dataset limit above the file's
    server_up(1, 2048, 1u << 20);
    float x[NR * XD];
    int64_t labels[NR], test[1] = {50};
    make_pool(x, labels);
    HcBuf js;
    pool_json(&js, "pool", x, labels);
    TT t[3] = {{"x", "F32", 2, {NR, XD}, x, sizeof x},
               {"labels", "I64", 1, {NR}, labels, sizeof labels},
               {"test_classes", "I64", 1, {1}, test, sizeof test}};
    size_t len;
    char *file = st_file(t, 3, "{\"name\":\"pool\",\"kind\":\"classes\"}", &len);
    HcResp r1, r2;
    ck_assert_uint_gt(js.len, 2048);
    ck_assert_uint_lt(len, 2048); // ... while the safetensors file is within it anyway
    hc_call(&g_c, &r1, "POST", "/v1/datasets", js.s);
    ck_problem(&r1, 413, "payload-too-large"); // the JSON limit holds for JSON
    hc_free(&r1);
    server_down();
    server_up(1, 64u << 20, 1u << 20);
    char id1[64], id2[64];
    upload(&r1, 0, js.s, 0, id1);
    upload(&r2, 1, file, len, id2);
    // the same description but for id and time
    const char *keys[] = {"name", "kind"};
    for (int k = 0; k < 2; k++)
        ck_assert_str_eq(hc_str(&r1, keys[k]), hc_str(&r2, keys[k]));
    const char *nums[] = {"n_rows", "x_dim", "y_dim", "bytes", "n_classes"};
    for (int k = 0; k < 5; k++)
        ck_assert_msg(hc_num(&r1, nums[k]) == hc_num(&r2, nums[k]), "%s differs", nums[k]);
    char *tc1 = cJSON_PrintUnformatted(cJSON_GetObjectItem(r1.json, "test_classes"));
    char *tc2 = cJSON_PrintUnformatted(cJSON_GetObjectItem(r2.json, "test_classes"));
    ck_assert_str_eq(tc1, tc2);
    free(tc1), free(tc2);
    hc_free(&r1), hc_free(&r2);
    // same seed, same data: bit-identical models (weights printed with %.9g round-trip floats)
    HcResp w1, w2;
    train_on(id1, "from-json", &w1);
    train_on(id2, "from-st", &w2);
    cJSON *a = cJSON_GetObjectItem(w1.json, "weights"),
          *b = cJSON_GetObjectItem(w2.json, "weights");
    char *sa = cJSON_PrintUnformatted(a), *sb = cJSON_PrintUnformatted(b);
    ck_assert_str_eq(sa, sb);
    free(sa), free(sb);
    hc_free(&w1), hc_free(&w2);

    // the same validation as JSON, named by tensor: a NaN, a label count, an unknown test class
    float bad_x[NR * XD];
    memcpy(bad_x, x, sizeof x);
    bad_x[4 * XD + 2] = NAN;
    t[0].data = bad_x;
    free(file);
    file = st_file(t, 3, "{\"name\":\"pool\",\"kind\":\"classes\"}", &len);
    post_bin(&r1, "/v1/datasets", file, len);
    ck_problem(&r1, 422, "validation");
    ck_assert_msg(strstr(hc_str(&r1, "detail"), "\"x\"") != NULL, "%s", r1.body);
    hc_free(&r1);
    free(file);
    t[0].data = x;
    t[1].shape[0] = NR - 1, t[1].nbytes -= 8;
    file = st_file(t, 3, "{\"name\":\"pool\",\"kind\":\"classes\"}", &len);
    post_bin(&r1, "/v1/datasets", file, len);
    ck_problem(&r1, 422, "validation");
    ck_assert_str_eq(hc_str(&r1, "detail"), "labels: has 59 entries but x has 60 rows");
    hc_free(&r1);
    free(file);
    t[1].shape[0] = NR, t[1].nbytes += 8;
    test[0] = 7;
    file = st_file(t, 3, "{\"name\":\"pool\",\"kind\":\"classes\"}", &len);
    post_bin(&r1, "/v1/datasets", file, len);
    ck_problem(&r1, 422, "validation");
    ck_assert_str_eq(hc_str(&r1, "detail"), "test_classes[0]: label 7 does not occur in labels");
    hc_free(&r1);
    free(file);
    file = st_file(t, 2, "{\"kind\":\"classes\"}", &len);
    post_bin(&r1, "/v1/datasets", file, len);
    ck_problem(&r1, 422, "validation");
    ck_assert_msg(strncmp(hc_str(&r1, "detail"), "__metadata__.name", 17) == 0, "%s", r1.body);
    hc_free(&r1);
    free(file);
    // over the dataset limit: 413 before the body is read
    char *big = calloc(1, (1u << 20) + 16);
    post_bin(&r1, "/v1/datasets", big, (1u << 20) + 16);
    ck_problem(&r1, 413, "payload-too-large");
    hc_free(&r1);
    free(big);
    hc_buf_free(&js);
    server_down();
}
END_TEST

START_TEST(a_safetensors_task_collection_equals_the_json_one_and_checks_its_offsets) {
    server_up(1, 64u << 20, 64u << 20);
    enum { T = 4, PER = 6, N = T * PER };
    float x[N], y[N];
    int64_t off[T + 1];
    HcBuf js;
    hc_buf_init(&js);
    hc_buf_puts(&js, "{\"name\":\"sines\",\"kind\":\"tasks\",\"tasks\":[");
    for (int t = 0; t < T; t++) {
        off[t] = t * PER;
        hc_buf_puts(&js, t ? ",{\"x\":[" : "{\"x\":[");
        for (int i = 0; i < PER; i++) {
            x[t * PER + i] = (float)(i - 2.5) * 0.8f;
            y[t * PER + i] = (float)sin(x[t * PER + i] + t) * (1.0f + (float)t);
            hc_buf_printf(&js, "%s[%.9g]", i ? "," : "", (double)x[t * PER + i]);
        }
        hc_buf_puts(&js, "],\"y\":[");
        for (int i = 0; i < PER; i++)
            hc_buf_printf(&js, "%s[%.9g]", i ? "," : "", (double)y[t * PER + i]);
        hc_buf_puts(&js, "]}");
    }
    off[T] = N;
    hc_buf_puts(&js, "]}");
    TT t3[3] = {{"x", "F32", 2, {N, 1}, x, sizeof x},
                {"y", "F32", 2, {N, 1}, y, sizeof y},
                {"task_offsets", "I64", 1, {T + 1}, off, sizeof off}};
    size_t len;
    char *file = st_file(t3, 3, "{\"name\":\"sines\",\"kind\":\"tasks\"}", &len);
    HcResp r1, r2;
    char id1[64], id2[64];
    upload(&r1, 0, js.s, 0, id1);
    upload(&r2, 1, file, len, id2);
    ck_assert(hc_num(&r1, "bytes") == hc_num(&r2, "bytes"));
    ck_assert(hc_num(&r1, "n_tasks") == hc_num(&r2, "n_tasks"));
    hc_free(&r1), hc_free(&r2);
    char cfg[768];
    HcResp w[2];
    for (int k = 0; k < 2; k++) {
        snprintf(cfg, sizeof cfg,
                 "{\"name\":\"sine-%d\",\"architecture\":{\"sizes\":[1,12,1]},\"meta_batch\":3,"
                 "\"iterations\":25,\"seed\":3,\"tasks\":{\"dataset\":\"%s\",\"k_support\":2,"
                 "\"k_query\":3}}",
                 k, k ? id2 : id1);
        HcResp r;
        char path[128];
        ck_assert_int_eq(hc_call(&g_c, &r, "POST", "/v1/jobs", cfg), 202);
        snprintf(path, sizeof path, "/v1/jobs/%s", hc_str(&r, "id"));
        hc_free(&r);
        double t0 = now_s();
        for (;;) {
            ck_assert_int_eq(get(&r, path), 200);
            int done = !strcmp(hc_str(&r, "state"), "succeeded");
            ck_assert_msg(done || !strcmp(hc_str(&r, "state"), "queued") ||
                              !strcmp(hc_str(&r, "state"), "running"),
                          "%s", r.body);
            hc_free(&r);
            if (done) break;
            ck_assert(now_s() - t0 < DEADLINE_S);
            sleep_ms(20);
        }
        snprintf(path, sizeof path, "/v1/models/sine-%d/weights", k);
        ck_assert_int_eq(get(&w[k], path), 200);
    }
    char *a = cJSON_PrintUnformatted(cJSON_GetObjectItem(w[0].json, "weights"));
    char *b = cJSON_PrintUnformatted(cJSON_GetObjectItem(w[1].json, "weights"));
    ck_assert_str_eq(a, b);
    free(a), free(b);
    hc_free(&w[0]), hc_free(&w[1]);
    // a task of one point, and decreasing offsets
    free(file);
    off[1] = 1;
    file = st_file(t3, 3, "{\"name\":\"sines\",\"kind\":\"tasks\"}", &len);
    post_bin(&r1, "/v1/datasets", file, len);
    ck_problem(&r1, 422, "validation");
    ck_assert_msg(strncmp(hc_str(&r1, "detail"), "tasks[0]: has 1 point", 21) == 0, "%s", r1.body);
    hc_free(&r1);
    free(file);
    off[1] = 20;
    file = st_file(t3, 3, "{\"name\":\"sines\",\"kind\":\"tasks\"}", &len);
    post_bin(&r1, "/v1/datasets", file, len);
    ck_problem(&r1, 422, "validation");
    ck_assert_msg(strncmp(hc_str(&r1, "detail"), "task_offsets[2]", 15) == 0, "%s", r1.body);
    hc_free(&r1);
    free(file);
    hc_buf_free(&js);
    server_down();
}
END_TEST

/* ---- meta-training from an imported initialisation ---- */

// A 2-8-2 tanh classifier: the gaussian family (dim 2, n_way 2) fits it.
static char *classifier_file(size_t *len, float *w0, float *b0, float *w1, float *b1) {
    for (int i = 0; i < 8 * 2; i++)
        w0[i] = (float)sin(0.3 + i) * 0.6f, w1[i] = (float)cos(1.7 * i) * 0.4f;
    for (int i = 0; i < 8; i++)
        b0[i] = (float)sin(5.0 + i) * 0.05f;
    b1[0] = 0.25f, b1[1] = -0.5f;
    TT t[4] = {{"0.weight", "F32", 2, {8, 2}, w0, 64},
               {"0.bias", "F32", 1, {8}, b0, 32},
               {"2.weight", "F32", 2, {2, 8}, w1, 64},
               {"2.bias", "F32", 1, {2}, b1, 8}};
    return st_file(t, 4,
                   "{\"architecture\":\"{\\\"sizes\\\":[2,8,2],\\\"activation\\\":\\\"tanh\\\","
                   "\\\"head\\\":\\\"classification\\\"}\"}",
                   len);
}

// Runs a job to success; its model's safetensors export into out.
static void run_job(const char *cfg, const char *model, HcResp *out) {
    HcResp r;
    char path[128];
    ck_assert_msg(hc_call(&g_c, &r, "POST", "/v1/jobs", cfg) == 202, "%s", r.body);
    snprintf(path, sizeof path, "/v1/jobs/%s", hc_str(&r, "id"));
    hc_free(&r);
    double t0 = now_s();
    for (;;) {
        ck_assert_int_eq(get(&r, path), 200);
        const char *s = hc_str(&r, "state");
        int done = !strcmp(s, "succeeded");
        ck_assert_msg(done || !strcmp(s, "queued") || !strcmp(s, "running"), "%s", r.body);
        hc_free(&r);
        if (done) break;
        ck_assert(now_s() - t0 < DEADLINE_S);
        sleep_ms(20);
    }
    snprintf(path, sizeof path, "/v1/models/%s/weights?format=safetensors", model);
    ck_assert_int_eq(get(out, path), 200);
}

#define INIT_CFG(name, lr, seed)                                                                   \
    "{\"name\":\"" name "\",\"architecture\":{\"sizes\":[2,8,2],\"activation\":\"tanh\","          \
    "\"head\":\"classification\"},\"outer\":{\"optimizer\":\"sgd\",\"lr\":" lr "},"                \
    "\"meta_batch\":2,\"iterations\":4,\"seed\":" seed ",\"init\":{\"model\":\"pre\"},"            \
    "\"tasks\":{\"family\":\"gaussian\",\"dim\":2,\"n_way\":2,\"k_support\":2,\"k_query\":2}}"

START_TEST(training_starts_from_an_imported_version_and_a_mismatch_is_422) {
    server_up(1, 64u << 20, 64u << 20);
    float w0[16], b0[8], w1[16], b1[2];
    size_t len;
    char *file = classifier_file(&len, w0, b0, w1, b1);
    import_ok("pre", file, len, 1);
    HcResp r;
    // sizes, activation, a missing version: 422 naming the mismatch
    hc_call(&g_c, &r, "POST", "/v1/jobs",
            "{\"name\":\"ft\",\"architecture\":{\"sizes\":[2,4,2],\"activation\":\"tanh\","
            "\"head\":\"classification\"},\"init\":{\"model\":\"pre\"},\"iterations\":5,"
            "\"tasks\":{\"family\":\"gaussian\",\"n_way\":2}}");
    ck_problem(&r, 422, "validation");
    ck_assert_str_eq(
        hc_str(&r, "detail"),
        "init.model: pre@1 has architecture.sizes [2, 8, 2] but this config [2, 4, 2]");
    hc_free(&r);
    hc_call(&g_c, &r, "POST", "/v1/jobs",
            "{\"name\":\"ft\",\"architecture\":{\"sizes\":[2,8,2],\"activation\":\"relu\","
            "\"head\":\"classification\"},\"init\":{\"model\":\"pre\"},\"iterations\":5,"
            "\"tasks\":{\"family\":\"gaussian\",\"n_way\":2}}");
    ck_problem(&r, 422, "validation");
    ck_assert_msg(strstr(hc_str(&r, "detail"), "activation tanh") != NULL, "%s", r.body);
    hc_free(&r);
    hc_call(&g_c, &r, "POST", "/v1/jobs",
            "{\"name\":\"ft\",\"init\":{\"model\":\"absent@3\"},\"iterations\":5}");
    ck_problem(&r, 422, "validation");
    ck_assert_msg(strncmp(hc_str(&r, "detail"), "init.model: ", 12) == 0, "%s", r.body);
    hc_free(&r);

    // an outer lr of 1e-30 moves no parameter of these magnitudes: the result is the import,
    // bit for bit, so the run started from it (a seeded start would differ everywhere)
    HcResp a, b, c;
    run_job(INIT_CFG("still", "1e-30", "5"), "still", &a);
    const char *names[4] = {"0.weight", "0.bias", "2.weight", "2.bias"};
    const float *want[4] = {w0, b0, w1, b1};
    for (int k = 0; k < 4; k++) {
        size_t nb;
        const unsigned char *p = st_tensor(a.body, a.body_len, names[k], NULL, &nb);
        ck_assert_ptr_nonnull(p);
        ck_assert_msg(memcmp(p, want[k], nb) == 0, "%s is not the imported tensor", names[k]);
    }
    // with a real lr the run moves away from it, deterministically (same seed, same bytes)
    run_job(INIT_CFG("moved", "0.5", "5"), "moved", &b);
    run_job(INIT_CFG("moved2", "0.5", "5"), "moved2", &c);
    size_t n1, n2;
    const unsigned char *pb = st_tensor(b.body, b.body_len, "0.weight", NULL, &n1);
    const unsigned char *pc = st_tensor(c.body, c.body_len, "0.weight", NULL, &n2);
    ck_assert(memcmp(pb, w0, n1) != 0);
    ck_assert(n1 == n2 && memcmp(pb, pc, n1) == 0);
    // the stored config names the version it started from
    ck_assert_int_eq(get(&r, "/v1/models/moved/versions/1"), 200);
    const cJSON *init = cJSON_GetObjectItem(cJSON_GetObjectItem(r.json, "config"), "init");
    ck_assert_str_eq(cJSON_GetObjectItem(init, "model")->valuestring, "pre@1");
    hc_free(&r);
    hc_free(&a), hc_free(&b), hc_free(&c);
    free(file);
    server_down();
}
END_TEST

int main(void) {
    uint32_t one = 1;
    unsigned char lsb;
    memcpy(&lsb, &one, 1);
    if (lsb != 1) return 77; // the test's writer copies host floats as little-endian bytes
    curl_global_init(CURL_GLOBAL_DEFAULT);
    Suite *s = suite_create("safetensors");
    TCase *tc = tcase_create("safetensors");
    tcase_set_timeout(tc, 300);
    tcase_add_unchecked_fixture(tc, test_root_make, test_root_remove);
    tcase_add_test(
        tc, export_is_a_sequential_state_dict_equal_to_the_json_export_and_import_keeps_bits);
    tcase_add_test(tc, malformed_files_are_422_naming_the_tensor_and_nothing_is_stored);
    tcase_add_test(tc, meta_sgd_rates_and_half_precision_tensors_import_and_export);
    tcase_add_test(tc, a_safetensors_pool_uploads_and_trains_bit_identically_to_the_json_upload);
    tcase_add_test(tc, a_safetensors_task_collection_equals_the_json_one_and_checks_its_offsets);
    tcase_add_test(tc, training_starts_from_an_imported_version_and_a_mismatch_is_422);
    suite_add_tcase(s, tc);
    int failed = test_suite_run(s);
    curl_global_cleanup();
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
