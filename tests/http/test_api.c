/*
 * The v1 API against the real server, started in-process on an ephemeral loopback port with a
 * temporary SQLite file and driven over libcurl: the user journey (train a sinusoid MAML model,
 * read it, adapt it to one sinusoid, predict better than the meta-parameters, adapt-and-predict
 * in one call, export weights, alias, delete the adaptation, the alias and the model), uploaded
 * datasets (upload, list with pagination, train a classifier on one, delete), every error class
 * with its status and problem type (404, 405, 413, 415, 400, 422, 409, 429, 503), request ids, and
 * adapt/predict calls from several threads while a job trains.
 *
 * Every response is checked for an X-Request-ID header (call()). Waits for jobs poll with a
 * generous deadline (60 s) only to fail instead of hanging; nothing asserts on durations.
 */
#define _GNU_SOURCE
#include <check.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define TEST_ROOT_NAME "ms_api"
#include "testsrv.h"
#include "metaserve/store/store.h"

#define DEADLINE_S 60.0

static char g_dir[128];
static Server *g_srv;
static HcClient g_c;

/* ---- server and client ---- */

static void server_up(int workers, int max_queued_jobs, size_t max_body_bytes) {
    ServerConfig c;
    testsrv_config_in_new_dir(&c, g_dir, sizeof g_dir, "api.db");
    c.workers = workers;
    c.http_threads = 4;
    c.max_queued_jobs = max_queued_jobs;
    c.max_body_bytes = max_body_bytes;
    testsrv_start(&g_srv, &g_c, &c);
}

static void server_down(void) {
    testsrv_stop(&g_srv, g_dir);
}

// 1 when s is a request id the server would accept: 1..63 of [A-Za-z0-9._-].
static int rid_ok(const char *s) {
    size_t n = strlen(s);
    return n > 0 && n < 64 &&
           strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.") == n;
}

// Every response must arrive and carry a well-formed X-Request-ID.
static void check_rid(const HcResp *r, const char *method, const char *path) {
    char rid[256];
    ck_assert_msg(r->status > 0, "%s %s: transfer failed: %s", method, path, r->err);
    ck_assert_msg(hc_header(r, "X-Request-ID", rid, sizeof rid) != NULL, "%s %s: no X-Request-ID",
                  method, path);
    ck_assert_msg(rid_ok(rid), "%s %s: malformed X-Request-ID '%s'", method, path, rid);
}

static long call(HcResp *r, const char *method, const char *path, const char *json) {
    hc_call(&g_c, r, method, path, json);
    check_rid(r, method, path);
    return r->status;
}

static long call_q(HcResp *r, const HcReq *q) {
    hc_do(&g_c, r, q);
    check_rid(r, q->method, q->path);
    return r->status;
}

/* ---- bodies ---- */

// A sinusoid MAML training config of DESIGN.md §3 (regression, one inner step).
static void sine_config(char *buf, size_t n, const char *name, int hidden, long iterations,
                        int meta_batch) {
    snprintf(buf, n,
             "{\"name\":\"%s\",\"architecture\":{\"sizes\":[1,%d,%d,1],\"activation\":\"relu\","
             "\"head\":\"regression\"},\"algorithm\":\"maml\",\"inner\":{\"lr\":0.01,\"steps\":1},"
             "\"outer\":{\"optimizer\":\"adam\",\"lr\":0.001,\"clip_norm\":null},"
             "\"meta_batch\":%d,\"iterations\":%ld,\"seed\":1,"
             "\"tasks\":{\"family\":\"sinusoid\",\"k_support\":10,\"k_query\":10}}",
             name, hidden, hidden, meta_batch, iterations);
}

// The fixed task of these tests: y = 2 sin(x - 1), in the sinusoid family's range
// (A in [0.1, 5), phase in [0, pi), x in [-5, 5)).
static double target(double x) {
    return 2.0 * sin(x - 1.0);
}

// n points evenly spaced on [lo, hi] and their targets.
static void sine_points(double *x, double *y, int n, double lo, double hi) {
    for (int i = 0; i < n; i++) {
        x[i] = lo + (hi - lo) * i / (n - 1);
        y[i] = target(x[i]);
    }
}

// Appends a one-column matrix [[v0],[v1],...].
static void put_column(HcBuf *b, const double *v, int n) {
    hc_buf_puts(b, "[");
    for (int i = 0; i < n; i++)
        hc_buf_printf(b, "%s[%.17g]", i ? "," : "", v[i]);
    hc_buf_puts(b, "]");
}

// {"support": {"x", "y"}[, "steps": k, "lr": a]} for n points of the fixed task.
static void support_body(HcBuf *b, const double *x, const double *y, int n, int steps, double lr) {
    hc_buf_init(b);
    hc_buf_puts(b, "{\"support\":{\"x\":");
    put_column(b, x, n);
    hc_buf_puts(b, ",\"y\":");
    put_column(b, y, n);
    hc_buf_puts(b, "}");
    if (steps >= 0) hc_buf_printf(b, ",\"steps\":%d,\"lr\":%.17g", steps, lr);
    hc_buf_puts(b, "}");
}

// Reads a rows x cols matrix of numbers into out (as floats: the server computes in float32
// and prints "%.9g", which round-trips). Returns 1 when the shape matches.
static int read_matrix(const cJSON *m, float *out, int rows, int cols) {
    if (!cJSON_IsArray(m) || cJSON_GetArraySize(m) != rows) return 0;
    int i = 0;
    for (const cJSON *row = m->child; row; row = row->next, i++) {
        if (!cJSON_IsArray(row) || cJSON_GetArraySize(row) != cols) return 0;
        int j = 0;
        for (const cJSON *v = row->child; v; v = v->next, j++) {
            if (!cJSON_IsNumber(v)) return 0;
            out[(size_t)i * cols + j] = (float)v->valuedouble;
        }
    }
    return 1;
}

// Seconds since the epoch of an RFC 3339 UTC time "2026-11-28T22:48:26.123Z"; NaN otherwise.
static double rfc3339_s(const char *s) {
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    const char *rest = s ? strptime(s, "%Y-%m-%dT%H:%M:%S", &tm) : NULL;
    if (!rest) return NAN;
    double frac = *rest == '.' ? strtod(rest, NULL) : 0;
    return (double)timegm(&tm) + frac;
}

static double mse(const float *pred, const double *y, int n) {
    double s = 0;
    for (int i = 0; i < n; i++)
        s += ((double)pred[i] - y[i]) * ((double)pred[i] - y[i]);
    return s / n;
}

/* ---- jobs ---- */

// POST /v1/jobs: 202, Location /v1/jobs/{id} and the job document; the id goes to id.
static void submit_job(const char *config, char id[64]) {
    HcResp r;
    ck_assert_int_eq(call(&r, "POST", "/v1/jobs", config), 202);
    const char *jid = hc_str(&r, "id");
    ck_assert_ptr_nonnull(jid);
    ck_assert_uint_eq(strlen(jid), 32);
    snprintf(id, 64, "%s", jid);
    char loc[128], want[128];
    snprintf(want, sizeof want, "/v1/jobs/%s", id);
    ck_assert_ptr_nonnull(hc_header(&r, "Location", loc, sizeof loc));
    ck_assert_str_eq(loc, want);
    // the reply reads the row back after waking the workers: a short job may already have
    // moved on
    const char *state = hc_str(&r, "state");
    ck_assert_msg(state && (!strcmp(state, "queued") || !strcmp(state, "running") ||
                            !strcmp(state, "succeeded")),
                  "state %s", state ? state : "(none)");
    ck_assert(hc_num(&r, "iteration") <= hc_num(&r, "total"));
    hc_free(&r);
}

static int terminal(const char *state) {
    return state &&
           (!strcmp(state, "succeeded") || !strcmp(state, "failed") || !strcmp(state, "cancelled"));
}

// Polls GET /v1/jobs/{id} until a terminal state; out keeps the last document. Asserts that the
// iteration never goes backwards and never passes total.
static void wait_job(const char *id, HcResp *out) {
    char path[96];
    snprintf(path, sizeof path, "/v1/jobs/%s", id);
    double last = -1, t0 = now_s();
    for (;;) {
        ck_assert_int_eq(call(out, "GET", path, NULL), 200);
        double it = hc_num(out, "iteration"), total = hc_num(out, "total");
        ck_assert_msg(it >= last && it <= total, "iteration %g after %g (total %g)", it, last,
                      total);
        last = it;
        if (terminal(hc_str(out, "state"))) return;
        ck_assert_msg(now_s() - t0 < DEADLINE_S, "job %s still %s after %.0f s", id,
                      hc_str(out, "state"), DEADLINE_S);
        hc_free(out);
        sleep_ms(20);
    }
}

// Polls until the job is in state (e.g. "running").
static void wait_state(const char *id, const char *state) {
    char path[96];
    snprintf(path, sizeof path, "/v1/jobs/%s", id);
    double t0 = now_s();
    for (;;) {
        HcResp r;
        ck_assert_int_eq(call(&r, "GET", path, NULL), 200);
        const char *s = hc_str(&r, "state");
        int done = s && strcmp(s, state) == 0;
        ck_assert_msg(done || !terminal(s), "job %s is %s, waiting for %s", id, s, state);
        hc_free(&r);
        if (done) return;
        ck_assert_msg(now_s() - t0 < DEADLINE_S, "job %s not %s after %.0f s", id, state,
                      DEADLINE_S);
        sleep_ms(20);
    }
}

// Trains config to success; returns the model version the job wrote.
static int train(const char *config, char id[64]) {
    submit_job(config, id);
    HcResp r;
    wait_job(id, &r);
    ck_assert_msg(strcmp(hc_str(&r, "state"), "succeeded") == 0, "job ended %s: %s",
                  hc_str(&r, "state"), r.body);
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(r.json, "model");
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(model, "version");
    ck_assert(cJSON_IsNumber(v));
    int version = (int)v->valuedouble;
    hc_free(&r);
    return version;
}

// The value of the first sample line of text that starts with series (name and labels).
static double metric_value(const char *text, const char *series) {
    size_t n = strlen(series);
    for (const char *p = text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
        if (strncmp(p, series, n) == 0 && p[n] == ' ') return strtod(p + n + 1, NULL);
    return -1;
}

/* ---- the journey ---- */

START_TEST(journey_trains_adapts_and_predicts_better_than_the_meta_parameters) {
    server_up(2, 100, (size_t)64 << 20);
    char cfg[1024], id[64], path[256];
    sine_config(cfg, sizeof cfg, "sine", 40, 300, 10);
    submit_job(cfg, id);

    // progress: the iteration only moves forward, and the finished job says what it made
    HcResp r;
    wait_job(id, &r);
    ck_assert_str_eq(hc_str(&r, "state"), "succeeded");
    ck_assert_double_eq(hc_num(&r, "iteration"), 300);
    ck_assert_double_eq(hc_num(&r, "total"), 300);
    const cJSON *metrics = cJSON_GetObjectItemCaseSensitive(r.json, "metrics");
    const cJSON *loss = cJSON_GetObjectItemCaseSensitive(metrics, "meta_loss");
    ck_assert_msg(cJSON_IsNumber(loss) && isfinite(loss->valuedouble) && loss->valuedouble >= 0,
                  "metrics: %s", r.body);
    // a regressor's validation metric is named by what it is: val_mse (no val_loss/val_metric)
    const cJSON *val = cJSON_GetObjectItemCaseSensitive(metrics, "val_mse");
    ck_assert_msg(cJSON_IsNumber(val) && val->valuedouble >= 0, "metrics: %s", r.body);
    ck_assert_ptr_null(cJSON_GetObjectItemCaseSensitive(metrics, "val_loss"));
    ck_assert_ptr_null(cJSON_GetObjectItemCaseSensitive(metrics, "val_metric"));
    ck_assert_double_eq(cJSON_GetObjectItemCaseSensitive(metrics, "eta_s")->valuedouble, 0);
    char *job_metrics = cJSON_PrintUnformatted(metrics);
    ck_assert_ptr_nonnull(job_metrics);
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(r.json, "model");
    ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(model, "name")->valuestring, "sine");
    ck_assert_double_eq(cJSON_GetObjectItemCaseSensitive(model, "version")->valuedouble, 1);
    ck_assert(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(r.json, "error")));
    hc_free(&r);

    // the loss curve: points in step order, all within the run
    snprintf(path, sizeof path, "/v1/jobs/%s/metrics?page_size=1000", id);
    ck_assert_int_eq(call(&r, "GET", path, NULL), 200);
    const cJSON *pts = cJSON_GetObjectItemCaseSensitive(r.json, "points");
    ck_assert_int_gt(cJSON_GetArraySize(pts), 0);
    double prev = 0;
    int n_val = 0;
    for (const cJSON *p = pts->child; p; p = p->next) {
        double step = cJSON_GetObjectItemCaseSensitive(p, "step")->valuedouble;
        ck_assert(step >= prev && step <= 300);
        prev = step;
        const char *key = cJSON_GetObjectItemCaseSensitive(p, "key")->valuestring;
        ck_assert_str_ne(key, "val_loss");
        n_val += strcmp(key, "val_mse") == 0;
    }
    ck_assert_int_gt(n_val, 0);
    hc_free(&r);

    // the version's metrics are the job's final metrics, throughput included
    ck_assert_int_eq(call(&r, "GET", "/v1/models/sine/versions/1", NULL), 200);
    char *version_metrics =
        cJSON_PrintUnformatted(cJSON_GetObjectItemCaseSensitive(r.json, "metrics"));
    ck_assert_ptr_nonnull(version_metrics);
    ck_assert_str_eq(version_metrics, job_metrics);
    ck_assert(cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(r.json, "metrics"), "tasks_per_s")));
    free(version_metrics);
    free(job_metrics);
    hc_free(&r);

    // the registry: the model, its version and the version's size (1-40-40-1: 1761 parameters)
    ck_assert_int_eq(call(&r, "GET", "/v1/models/sine", NULL), 200);
    ck_assert_str_eq(hc_str(&r, "name"), "sine");
    ck_assert_double_eq(hc_num(&r, "latest_version"), 1);
    const cJSON *versions = cJSON_GetObjectItemCaseSensitive(r.json, "versions");
    ck_assert_int_eq(cJSON_GetArraySize(versions), 1);
    ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(versions->child, "job_id")->valuestring, id);
    hc_free(&r);
    ck_assert_int_eq(call(&r, "GET", "/v1/models/sine/versions/1", NULL), 200);
    ck_assert_double_eq(hc_num(&r, "version"), 1);
    ck_assert_double_eq(hc_num(&r, "n_params"), 1761);
    ck_assert_str_eq(hc_str(&r, "algorithm"), "maml");
    hc_free(&r);

    // adapt on 10 points of the fixed sinusoid: the support loss falls
    double sx[10], sy[10], qx[50], qy[50];
    sine_points(sx, sy, 10, -4.5, 4.5);
    sine_points(qx, qy, 50, -4.9, 4.9);
    HcBuf b;
    support_body(&b, sx, sy, 10, 10, 0.01);
    ck_assert_int_eq(call(&r, "POST", "/v1/models/sine/adapt", b.s), 201);
    char aid[64], loc[128], want[128];
    const char *adapt_id = hc_str(&r, "id");
    ck_assert_ptr_nonnull(adapt_id);
    snprintf(aid, sizeof aid, "%s", adapt_id);
    ck_assert_uint_eq(strlen(aid), 32);
    snprintf(want, sizeof want, "/v1/adaptations/%s", aid);
    ck_assert_ptr_nonnull(hc_header(&r, "Location", loc, sizeof loc));
    ck_assert_str_eq(loc, want);
    ck_assert_str_eq(hc_str(&r, "model"), "sine");
    ck_assert_double_eq(hc_num(&r, "version"), 1);
    ck_assert_ptr_nonnull(hc_str(&r, "expires_at"));
    double before = hc_num(&r, "support_loss_before"), after = hc_num(&r, "support_loss_after");
    ck_assert_msg(after < before, "support loss %g -> %g", before, after);
    hc_free(&r);
    hc_buf_free(&b);

    // predict 50 query points: the adapted parameters beat the meta-parameters
    HcBuf xq;
    hc_buf_init(&xq);
    hc_buf_puts(&xq, "{\"x\":");
    put_column(&xq, qx, 50);
    hc_buf_puts(&xq, "}");
    float y_adapt[50], y_meta[50], y_once[50], y_alias[50];
    snprintf(path, sizeof path, "/v1/adaptations/%s/predict", aid);
    ck_assert_int_eq(call(&r, "POST", path, xq.s), 200);
    ck_assert(read_matrix(cJSON_GetObjectItemCaseSensitive(r.json, "y"), y_adapt, 50, 1));
    hc_free(&r);
    ck_assert_int_eq(call(&r, "POST", "/v1/models/sine/predict", xq.s), 200);
    ck_assert(read_matrix(cJSON_GetObjectItemCaseSensitive(r.json, "y"), y_meta, 50, 1));
    ck_assert(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(r.json, "adapted")));
    hc_free(&r);
    double mse_adapt = mse(y_adapt, qy, 50), mse_meta = mse(y_meta, qy, 50);
    ck_assert_msg(mse_adapt < mse_meta, "query MSE adapted %g, meta %g", mse_adapt, mse_meta);

    // adapt-and-predict in one call runs the same float computation (same support, steps, lr,
    // model version) as adapt then predict, so the predictions are equal bit for bit
    HcBuf once;
    support_body(&once, sx, sy, 10, 10, 0.01);
    once.len--; // reopen the object to add "x"
    hc_buf_puts(&once, ",\"x\":");
    put_column(&once, qx, 50);
    hc_buf_puts(&once, "}");
    ck_assert_int_eq(call(&r, "POST", "/v1/models/sine/predict", once.s), 200);
    ck_assert(read_matrix(cJSON_GetObjectItemCaseSensitive(r.json, "y"), y_once, 50, 1));
    ck_assert(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(r.json, "adapted")));
    hc_free(&r);
    hc_buf_free(&once);
    for (int i = 0; i < 50; i++)
        ck_assert_msg(y_once[i] == y_adapt[i], "row %d: one call %.9g, two calls %.9g", i,
                      (double)y_once[i], (double)y_adapt[i]);

    // the weights export: layout of 1-40-40-1, W rows = output units
    ck_assert_int_eq(call(&r, "GET", "/v1/models/sine/weights", NULL), 200);
    const cJSON *sizes = cJSON_GetObjectItemCaseSensitive(r.json, "sizes");
    const int want_sizes[4] = {1, 40, 40, 1};
    ck_assert_int_eq(cJSON_GetArraySize(sizes), 4);
    for (int i = 0; i < 4; i++)
        ck_assert_double_eq(cJSON_GetArrayItem(sizes, i)->valuedouble, want_sizes[i]);
    const cJSON *layers = cJSON_GetObjectItemCaseSensitive(r.json, "weights");
    ck_assert_int_eq(cJSON_GetArraySize(layers), 3);
    for (int l = 0; l < 3; l++) {
        const cJSON *layer = cJSON_GetArrayItem(layers, l);
        const cJSON *W = cJSON_GetObjectItemCaseSensitive(layer, "W");
        const cJSON *bias = cJSON_GetObjectItemCaseSensitive(layer, "b");
        ck_assert_int_eq(cJSON_GetArraySize(W), want_sizes[l + 1]);
        ck_assert_int_eq(cJSON_GetArraySize(W->child), want_sizes[l]);
        ck_assert_int_eq(cJSON_GetArraySize(bias), want_sizes[l + 1]);
    }
    ck_assert(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(r.json, "lrs")));
    hc_free(&r);

    // an alias: name@prod resolves to version 1 and predicts as the name does
    ck_assert_int_eq(call(&r, "PUT", "/v1/models/sine/aliases/prod", "{\"version\":1}"), 200);
    ck_assert_double_eq(hc_num(&r, "version"), 1);
    hc_free(&r);
    ck_assert_int_eq(call(&r, "POST", "/v1/models/sine@prod/predict", xq.s), 200);
    ck_assert_double_eq(hc_num(&r, "version"), 1);
    ck_assert(read_matrix(cJSON_GetObjectItemCaseSensitive(r.json, "y"), y_alias, 50, 1));
    ck_assert_int_eq(memcmp(y_alias, y_meta, sizeof y_meta), 0);
    hc_free(&r);
    ck_assert_int_eq(call(&r, "POST", "/v1/models/sine@nosuch/predict", xq.s), 404);
    ck_problem(&r, 404, "not-found");
    hc_free(&r);

    // an adaptation can be read, then deleted, then it is gone
    snprintf(path, sizeof path, "/v1/adaptations/%s", aid);
    ck_assert_int_eq(call(&r, "GET", path, NULL), 200);
    ck_assert_str_eq(hc_str(&r, "id"), aid);
    ck_assert_double_eq(hc_num(&r, "support_loss_after"), after);
    // the default time to live is one hour (to the second: the two stamps are taken apart)
    double ttl = rfc3339_s(hc_str(&r, "expires_at")) - rfc3339_s(hc_str(&r, "created_at"));
    ck_assert_msg(fabs(ttl - 3600) <= 1, "expires %g s after creation", ttl);
    hc_free(&r);
    ck_assert_int_eq(call(&r, "DELETE", path, NULL), 204);
    ck_assert_uint_eq(r.body_len, 0);
    hc_free(&r);
    ck_assert_int_eq(call(&r, "GET", path, NULL), 404);
    ck_problem(&r, 404, "not-found");
    hc_free(&r);
    snprintf(path, sizeof path, "/v1/adaptations/%s/predict", aid);
    ck_assert_int_eq(call(&r, "POST", path, xq.s), 404);
    ck_problem(&r, 404, "not-found");
    hc_free(&r);

    // removing the alias, then the model: references stop resolving at once (the version
    // cache must not serve what was deleted)
    ck_assert_int_eq(call(&r, "DELETE", "/v1/models/sine/aliases/prod", NULL), 204);
    hc_free(&r);
    ck_assert_int_eq(call(&r, "POST", "/v1/models/sine@prod/predict", xq.s), 404);
    ck_problem(&r, 404, "not-found");
    hc_free(&r);
    ck_assert_int_eq(call(&r, "DELETE", "/v1/models/sine", NULL), 204);
    hc_free(&r);
    ck_assert_int_eq(call(&r, "POST", "/v1/models/sine/predict", xq.s), 404);
    ck_problem(&r, 404, "not-found");
    hc_free(&r);
    ck_assert_int_eq(call(&r, "GET", "/v1/models/sine/weights", NULL), 404);
    ck_problem(&r, 404, "not-found");
    hc_free(&r);
    ck_assert_int_eq(call(&r, "GET", "/v1/models", NULL), 200);
    ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(r.json, "models")), 0);
    hc_free(&r);
    hc_buf_free(&xq);

    // /metrics counts the journey's routes, and the model cache served hits
    ck_assert_int_eq(call(&r, "GET", "/metrics", NULL), 200);
    const char *m = r.body;
    ck_assert_ptr_nonnull(strstr(m, "# TYPE metaserve_http_requests_total counter"));
    ck_assert_double_eq(
        metric_value(
            m, "metaserve_http_requests_total{route=\"/v1/jobs\",method=\"POST\",status=\"202\"}"),
        1);
    ck_assert_double_eq(metric_value(m, "metaserve_http_requests_total{route=\"/v1/models/{ref}/"
                                        "adapt\",method=\"POST\",status=\"201\"}"),
                        1);
    ck_assert_double_eq(metric_value(m, "metaserve_http_requests_total{route=\"/v1/adaptations/"
                                        "{id}/predict\",method=\"POST\",status=\"200\"}"),
                        1);
    ck_assert_double_eq(metric_value(m, "metaserve_http_requests_total{route=\"/v1/models/{ref}/"
                                        "predict\",method=\"POST\",status=\"200\"}"),
                        3);
    ck_assert_double_eq(metric_value(m, "metaserve_http_requests_total{route=\"/v1/adaptations/"
                                        "{id}\",method=\"DELETE\",status=\"204\"}"),
                        1);
    double hits = metric_value(m, "metaserve_model_cache_hits_total");
    ck_assert_msg(hits > 0, "cache hits %g", hits);
    hc_free(&r);

    // the contract is served by the binary
    ck_assert_int_eq(call(&r, "GET", "/openapi.yaml", NULL), 200);
    ck_assert_msg(strncmp(r.body, "openapi:", 8) == 0, "openapi.yaml starts '%.20s'", r.body);
    ck_assert_ptr_nonnull(strstr(r.body, "/v1/models/{ref}/adapt"));
    hc_free(&r);
    server_down();
}
END_TEST

/* ---- datasets ---- */

// A labelled pool: 5 classes (labels 10..50) of 8 two-dimensional points around the corners of
// a pentagon; class 50 is held out.
static void classes_body(HcBuf *b) {
    hc_buf_init(b);
    hc_buf_puts(b, "{\"name\":\"pentagon\",\"kind\":\"classes\",\"x\":[");
    for (int c = 0; c < 5; c++)
        for (int k = 0; k < 8; k++) {
            double a = 2 * M_PI * c / 5, r = 3 + 0.1 * k, d = 0.05 * (k % 3);
            hc_buf_printf(b, "%s[%.6f,%.6f]", c + k ? "," : "", r * cos(a) + d, r * sin(a) - d);
        }
    hc_buf_puts(b, "],\"labels\":[");
    for (int c = 0; c < 5; c++)
        for (int k = 0; k < 8; k++)
            hc_buf_printf(b, "%s%d", c + k ? "," : "", 10 * (c + 1));
    hc_buf_puts(b, "],\"test_classes\":[50]}");
}

// A regression task collection: 3 lines y = (t + 1) x of 6 points each.
static void tasks_body(HcBuf *b) {
    hc_buf_init(b);
    hc_buf_puts(b, "{\"name\":\"lines\",\"kind\":\"tasks\",\"tasks\":[");
    for (int t = 0; t < 3; t++) {
        double x[6], y[6];
        for (int i = 0; i < 6; i++)
            x[i] = -1 + 0.4 * i, y[i] = (t + 1) * x[i];
        hc_buf_printf(b, "%s{\"x\":", t ? "," : "");
        put_column(b, x, 6);
        hc_buf_puts(b, ",\"y\":");
        put_column(b, y, 6);
        hc_buf_puts(b, "}");
    }
    hc_buf_puts(b, "]}");
}

// POST /v1/datasets: 201 with Location; the id goes to id.
static void upload(const char *body, char id[64], HcResp *r) {
    ck_assert_int_eq(call(r, "POST", "/v1/datasets", body), 201);
    const char *did = hc_str(r, "id");
    ck_assert_ptr_nonnull(did);
    snprintf(id, 64, "%s", did);
    char loc[128], want[128];
    snprintf(want, sizeof want, "/v1/datasets/%s", id);
    ck_assert_ptr_nonnull(hc_header(r, "Location", loc, sizeof loc));
    ck_assert_str_eq(loc, want);
}

START_TEST(datasets_upload_list_train_a_classifier_and_delete) {
    server_up(1, 100, (size_t)64 << 20);
    char cid[64], tid[64], jid[64], path[256], cfg[1024];
    HcResp r;
    HcBuf b;
    classes_body(&b);
    upload(b.s, cid, &r);
    ck_assert_str_eq(hc_str(&r, "kind"), "classes");
    ck_assert_double_eq(hc_num(&r, "n_rows"), 40);
    ck_assert_double_eq(hc_num(&r, "n_classes"), 5);
    ck_assert_double_eq(hc_num(&r, "x_dim"), 2);
    const cJSON *tc = cJSON_GetObjectItemCaseSensitive(r.json, "test_classes");
    ck_assert_int_eq(cJSON_GetArraySize(tc), 1);
    ck_assert_double_eq(tc->child->valuedouble, 50);
    hc_free(&r);
    hc_buf_free(&b);
    tasks_body(&b);
    upload(b.s, tid, &r);
    ck_assert_str_eq(hc_str(&r, "kind"), "tasks");
    ck_assert_double_eq(hc_num(&r, "n_tasks"), 3);
    ck_assert_double_eq(hc_num(&r, "n_rows"), 18);
    ck_assert_double_eq(hc_num(&r, "x_dim"), 1);
    ck_assert_double_eq(hc_num(&r, "y_dim"), 1);
    hc_free(&r);
    hc_buf_free(&b);

    snprintf(path, sizeof path, "/v1/datasets/%s", tid);
    ck_assert_int_eq(call(&r, "GET", path, NULL), 200);
    ck_assert_str_eq(hc_str(&r, "id"), tid);
    ck_assert_str_eq(hc_str(&r, "name"), "lines");
    ck_assert_double_eq(hc_num(&r, "n_tasks"), 3);
    hc_free(&r);

    // pages of one: the tokens walk both datasets exactly once, then end with null
    int seen_c = 0, seen_t = 0, pages = 0;
    char token[128] = "";
    do {
        snprintf(path, sizeof path, "/v1/datasets?page_size=1%s%s", token[0] ? "&page_token=" : "",
                 token);
        ck_assert_int_eq(call(&r, "GET", path, NULL), 200);
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(r.json, "datasets");
        ck_assert_int_eq(cJSON_GetArraySize(list), 1);
        const char *id = cJSON_GetObjectItemCaseSensitive(list->child, "id")->valuestring;
        seen_c += strcmp(id, cid) == 0;
        seen_t += strcmp(id, tid) == 0;
        const cJSON *next = cJSON_GetObjectItemCaseSensitive(r.json, "next_page_token");
        ck_assert(cJSON_IsString(next) || cJSON_IsNull(next));
        snprintf(token, sizeof token, "%s", cJSON_IsString(next) ? next->valuestring : "");
        hc_free(&r);
        ck_assert_int_le(++pages, 2);
    } while (token[0]);
    ck_assert_int_eq(pages, 2);
    ck_assert_int_eq(seen_c, 1);
    ck_assert_int_eq(seen_t, 1);
    ck_assert_int_eq(call(&r, "GET", "/v1/datasets?page_size=0", NULL), 422);
    ck_problem(&r, 422, "validation");
    ck_detail_has(&r, "page_size");
    hc_free(&r);

    // an architecture that does not fit the dataset is refused before queueing
    snprintf(cfg, sizeof cfg,
             "{\"name\":\"bad\",\"architecture\":{\"sizes\":[2,8,1],\"head\":\"regression\"},"
             "\"iterations\":5,\"tasks\":{\"dataset\":\"%s\",\"k_support\":2,\"k_query\":2}}",
             tid);
    ck_assert_int_eq(call(&r, "POST", "/v1/jobs", cfg), 422);
    ck_problem(&r, 422, "validation");
    ck_detail_has(&r, "architecture.sizes[0]");
    hc_free(&r);

    // a 3-way classifier meta-trained on the 4 training classes of the pool
    snprintf(cfg, sizeof cfg,
             "{\"name\":\"pentagon\",\"architecture\":{\"sizes\":[2,16,3],\"activation\":\"relu\","
             "\"head\":\"classification\"},\"algorithm\":\"maml\",\"inner\":{\"lr\":0.1,"
             "\"steps\":1},\"outer\":{\"optimizer\":\"adam\",\"lr\":0.003},\"meta_batch\":4,"
             "\"iterations\":40,\"seed\":3,\"tasks\":{\"dataset\":\"%s\",\"n_way\":3,"
             "\"k_support\":2,\"k_query\":3}}",
             cid);
    ck_assert_int_eq(train(cfg, jid), 1);
    snprintf(path, sizeof path, "/v1/jobs/%s", jid);
    ck_assert_int_eq(call(&r, "GET", path, NULL), 200);
    const cJSON *jm = cJSON_GetObjectItemCaseSensitive(r.json, "metrics");
    ck_assert_ptr_null(cJSON_GetObjectItemCaseSensitive(jm, "val_metric"));
    ck_assert_ptr_null(cJSON_GetObjectItemCaseSensitive(jm, "val_mse"));
    const cJSON *acc = cJSON_GetObjectItemCaseSensitive(jm, "val_accuracy");
    ck_assert_msg(cJSON_IsNumber(acc) && acc->valuedouble >= 0 && acc->valuedouble <= 1,
                  "metrics: %s", r.body);
    const cJSON *src = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(r.json, "config"),
                                         "tasks"),
        "dataset");
    ck_assert_str_eq(src->valuestring, cid);
    hc_free(&r);

    // predictions of a classifier: probabilities that sum to 1 and their argmax as labels
    ck_assert_int_eq(call(&r, "POST", "/v1/models/pentagon/predict",
                          "{\"x\":[[3,0],[0.9,2.9],[-2.4,1.8],[0,0]]}"),
                     200);
    float p[12];
    ck_assert(read_matrix(cJSON_GetObjectItemCaseSensitive(r.json, "probabilities"), p, 4, 3));
    const cJSON *labels = cJSON_GetObjectItemCaseSensitive(r.json, "labels");
    ck_assert_int_eq(cJSON_GetArraySize(labels), 4);
    for (int i = 0; i < 4; i++) {
        double s = 0;
        int best = 0;
        for (int j = 0; j < 3; j++) {
            ck_assert(p[i * 3 + j] >= 0 && p[i * 3 + j] <= 1);
            s += p[i * 3 + j];
            if (p[i * 3 + j] > p[i * 3 + best]) best = j;
        }
        // three float32 probabilities printed with 9 digits: the sum is 1 to ~1e-7
        ck_assert_msg(fabs(s - 1) < 1e-5, "row %d sums to %.9g", i, s);
        ck_assert_double_eq(cJSON_GetArrayItem(labels, i)->valuedouble, best);
    }
    hc_free(&r);

    // adaptation of a classifier takes class indices 0..n_way-1 as y
    const char *sup = "{\"support\":{\"x\":[[3,0],[0.9,2.9],[-2.4,1.8]],\"y\":[[0],[1],[2]]},"
                      "\"steps\":3}";
    ck_assert_int_eq(call(&r, "POST", "/v1/models/pentagon/adapt", sup), 201);
    ck_assert(hc_num(&r, "support_loss_after") < hc_num(&r, "support_loss_before"));
    hc_free(&r);
    const char *bad_labels[] = {"3", "-1", "1.5"};
    for (int i = 0; i < 3; i++) {
        char body[256];
        snprintf(body, sizeof body,
                 "{\"support\":{\"x\":[[3,0],[0.9,2.9]],\"y\":[[0],[%s]]},\"steps\":1}",
                 bad_labels[i]);
        ck_assert_int_eq(call(&r, "POST", "/v1/models/pentagon/adapt", body), 422);
        ck_problem(&r, 422, "validation");
        ck_detail_has(&r, "support.y");
        hc_free(&r);
    }
    // one-hot labels are told that a class index is expected
    ck_assert_int_eq(call(&r, "POST", "/v1/models/pentagon/adapt",
                          "{\"support\":{\"x\":[[3,0],[0.9,2.9]],\"y\":[[1,0,0],[0,1,0]]}}"),
                     422);
    ck_problem(&r, 422, "validation");
    ck_detail_has(&r, "support.y[0]: a class index is expected");
    hc_free(&r);
    ck_assert_int_eq(call(&r, "POST", "/v1/datasets",
                          "{\"name\":\"onehot\",\"kind\":\"classes\",\"x\":[[1],[2]],"
                          "\"labels\":[[0,1],[1,0]]}"),
                     422);
    ck_problem(&r, 422, "validation");
    ck_detail_has(&r, "labels[0]: a class index (an integer) is expected");
    hc_free(&r);

    // deletion: 204, then 404 for reads and a second delete
    const char *ids[2] = {cid, tid};
    for (int i = 0; i < 2; i++) {
        snprintf(path, sizeof path, "/v1/datasets/%s", ids[i]);
        ck_assert_int_eq(call(&r, "DELETE", path, NULL), 204);
        hc_free(&r);
        ck_assert_int_eq(call(&r, "GET", path, NULL), 404);
        ck_problem(&r, 404, "not-found");
        hc_free(&r);
        ck_assert_int_eq(call(&r, "DELETE", path, NULL), 404);
        ck_problem(&r, 404, "not-found");
        hc_free(&r);
    }
    ck_assert_int_eq(call(&r, "GET", "/v1/datasets", NULL), 200);
    ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(r.json, "datasets")), 0);
    hc_free(&r);
    server_down();
}
END_TEST

// Writes doc with the member at path ("a" or "a.b") set to the raw JSON text value (added when
// absent). The value is spliced in as text, so it may be something cJSON would not print (1e999).
static void with_field(char *out, size_t n, const char *doc, const char *path, const char *value) {
    cJSON *root = cJSON_Parse(doc), *parent = root;
    ck_assert_ptr_nonnull(root);
    char key[64];
    snprintf(key, sizeof key, "%s", path);
    char *dot = strchr(key, '.');
    if (dot) {
        *dot = '\0';
        parent = cJSON_GetObjectItemCaseSensitive(root, key);
        ck_assert(cJSON_IsObject(parent));
        memmove(key, dot + 1, strlen(dot + 1) + 1);
    }
    cJSON_DeleteItemFromObjectCaseSensitive(parent, key);
    cJSON_AddStringToObject(parent, key, "@VALUE@");
    char *text = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    char *at = strstr(text, "\"@VALUE@\"");
    ck_assert_ptr_nonnull(at);
    snprintf(out, n, "%.*s%s%s", (int)(at - text), text, value, at + 9);
    free(text);
}

/* ---- error classes ---- */

// Rows written before the validation metric was named by what it measures hold "val_loss" with
// "val_metric" beside it (jobs, versions) or a "val_loss" curve key: they read as the current
// names, so a service upgraded over an old database answers in one vocabulary.
START_TEST(rows_stored_under_the_old_metric_names_read_under_the_new) {
    server_up(0, 100, (size_t)64 << 20);
    Store *st;
    MsError e = {0};
    ck_assert_msg(store_open(&st, testsrv_db, &e) == MS_OK, "%s", e.msg);
    char id[STORE_ID_MAX];
    ck_assert_msg(store_job_create(st, "{\"name\":\"old\"}", "old", 10, 100, id, &e) == MS_OK, "%s",
                  e.msg);
    StoreJob j;
    int claimed = 0;
    ck_assert_msg(store_job_claim(st, &j, &claimed, &e) == MS_OK && claimed, "%s", e.msg);
    store_job_free(&j);
    StoreMetric pts[2] = {{5, "meta_loss", 0.5}, {5, "val_loss", 0.75}};
    ck_assert_msg(store_job_progress(st, id, 5,
                                     "{\"meta_loss\":0.5,\"val_loss\":0.75,\"val_metric\":"
                                     "\"accuracy\",\"tasks_per_s\":10,\"eta_s\":1}",
                                     pts, 2, &e) == MS_OK,
                  "%s", e.msg);
    float params[3] = {1, 2, 3};
    char cfg[] = "{}", hyper[] = "{}",
         metrics[] = "{\"meta_loss\":0.3,\"val_loss\":0.4,\"val_metric\":\"mse\","
                     "\"tasks_per_s\":20,\"eta_s\":0}";
    StoreModel m = {.name = "old",
                    .config = cfg,
                    .algorithm = "maml",
                    .hyper = hyper,
                    .metrics = metrics,
                    .n_params = 3,
                    .params = params};
    int v = 0;
    ck_assert_msg(store_model_put(st, &m, &v, &e) == MS_OK, "%s", e.msg);
    store_close(st);

    HcResp r;
    char path[96];
    snprintf(path, sizeof path, "/v1/jobs/%s", id);
    ck_assert_int_eq(call(&r, "GET", path, NULL), 200);
    const cJSON *jm = cJSON_GetObjectItemCaseSensitive(r.json, "metrics");
    ck_assert_msg(cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(jm, "val_accuracy")), "%s",
                  r.body);
    ck_assert_double_eq(cJSON_GetObjectItemCaseSensitive(jm, "val_accuracy")->valuedouble, 0.75);
    ck_assert_ptr_null(cJSON_GetObjectItemCaseSensitive(jm, "val_loss"));
    ck_assert_ptr_null(cJSON_GetObjectItemCaseSensitive(jm, "val_metric"));
    hc_free(&r);
    snprintf(path, sizeof path, "/v1/jobs/%s/metrics", id);
    ck_assert_int_eq(call(&r, "GET", path, NULL), 200);
    ck_assert_msg(strstr(r.body, "\"key\":\"val_accuracy\"") && !strstr(r.body, "val_loss"), "%s",
                  r.body);
    hc_free(&r);
    snprintf(path, sizeof path, "/v1/models/old/versions/%d", v);
    ck_assert_int_eq(call(&r, "GET", path, NULL), 200);
    const cJSON *vm = cJSON_GetObjectItemCaseSensitive(r.json, "metrics");
    ck_assert_msg(cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(vm, "val_mse")), "%s", r.body);
    ck_assert_double_eq(cJSON_GetObjectItemCaseSensitive(vm, "val_mse")->valuedouble, 0.4);
    ck_assert_ptr_null(cJSON_GetObjectItemCaseSensitive(vm, "val_loss"));
    ck_assert_ptr_null(cJSON_GetObjectItemCaseSensitive(vm, "val_metric"));
    hc_free(&r);
    ck_assert_int_eq(call(&r, "GET", "/v1/models/old", NULL), 200);
    ck_assert_msg(strstr(r.body, "\"val_mse\":0.4") && !strstr(r.body, "val_loss"), "%s", r.body);
    hc_free(&r);
    server_down();
}
END_TEST

START_TEST(unknown_routes_and_ids_are_404_and_wrong_methods_405_with_allow) {
    server_up(0, 100, (size_t)64 << 20);
    static const char *const missing[][2] = {
        {"GET", "/v2/models"},
        {"GET", "/v1/models/sine/weights/extra"},
        {"GET", "/v1/jobs/0123456789abcdef0123456789abcdef"},
        {"GET", "/v1/jobs/0123456789abcdef0123456789abcdef/metrics"},
        {"POST", "/v1/jobs/0123456789abcdef0123456789abcdef/cancel"},
        {"GET", "/v1/datasets/0123456789abcdef0123456789abcdef"},
        {"DELETE", "/v1/datasets/0123456789abcdef0123456789abcdef"},
        {"GET", "/v1/adaptations/0123456789abcdef0123456789abcdef"},
        {"DELETE", "/v1/adaptations/0123456789abcdef0123456789abcdef"},
        {"GET", "/v1/models/nosuch"},
        {"GET", "/v1/models/nosuch/versions/1"},
        {"GET", "/v1/models/nosuch/weights"},
        {"DELETE", "/v1/models/nosuch"},
    };
    HcResp r;
    for (size_t i = 0; i < sizeof missing / sizeof missing[0]; i++) {
        call(&r, missing[i][0], missing[i][1], NULL);
        const char *why = hc_problem_mismatch(&r, 404, "not-found");
        ck_assert_msg(!why, "%s %s: %s", missing[i][0], missing[i][1], why);
        ck_assert_str_eq(hc_str(&r, "instance"), missing[i][1]);
        hc_free(&r);
    }
    ck_assert_int_eq(call(&r, "POST", "/v1/models/nosuch/predict", "{\"x\":[[1]]}"), 404);
    ck_problem(&r, 404, "not-found");
    hc_free(&r);
    ck_assert_int_eq(call(&r, "POST", "/v1/adaptations/0123456789abcdef0123456789abcdef/predict",
                          "{\"x\":[[1]]}"),
                     404);
    ck_problem(&r, 404, "not-found");
    hc_free(&r);

    // 405 lists exactly the methods the path has
    static const struct {
        const char *method, *path, *allow[3];
    } wrong[] = {
        {"DELETE", "/v1/jobs", {"GET", "POST", NULL}},
        {"PUT", "/livez", {"GET", NULL, NULL}},
        {"POST", "/v1/models/sine", {"GET", "DELETE", NULL}},
        {"GET", "/v1/models/sine/adapt", {"POST", NULL, NULL}},
        {"PATCH", "/v1/datasets/0123456789abcdef0123456789abcdef", {"GET", "DELETE", NULL}},
    };
    for (size_t i = 0; i < sizeof wrong / sizeof wrong[0]; i++) {
        call(&r, wrong[i].method, wrong[i].path, NULL);
        const char *why = hc_problem_mismatch(&r, 405, "method-not-allowed");
        ck_assert_msg(!why, "%s %s: %s", wrong[i].method, wrong[i].path, why);
        char allow[128];
        ck_assert_ptr_nonnull(hc_header(&r, "Allow", allow, sizeof allow));
        int n = 0;
        for (char *save = NULL, *t = strtok_r(allow, ", ", &save); t;
             t = strtok_r(NULL, ", ", &save), n++) {
            int listed = 0;
            for (int k = 0; k < 3 && wrong[i].allow[k]; k++)
                listed |= strcmp(t, wrong[i].allow[k]) == 0;
            ck_assert_msg(listed, "%s %s: Allow has %s", wrong[i].method, wrong[i].path, t);
        }
        int want = 0;
        while (want < 3 && wrong[i].allow[want])
            want++;
        ck_assert_int_eq(n, want);
        hc_free(&r);
    }
    server_down();
}
END_TEST

START_TEST(bodies_over_the_limit_are_413_with_content_length_and_chunked) {
    server_up(0, 100, 64 << 10);
    // valid JSON of 100 KiB, over the 64 KiB limit of this server
    size_t n = 100 << 10;
    char *big = malloc(n + 1);
    ck_assert_ptr_nonnull(big);
    memset(big, 'a', n);
    memcpy(big, "{\"name\":\"", 9);
    memcpy(big + n - 2, "\"}", 2);
    big[n] = '\0';
    // Content-Length: decided before the body is read (with Expect: 100-continue the client
    // never sends it)
    HcReq q = {.method = "POST", .path = "/v1/jobs", .body = big, .expect_continue = 1};
    HcResp r;
    ck_assert_int_eq(call_q(&r, &q), 413);
    ck_problem(&r, 413, "payload-too-large");
    ck_detail_has(&r, "body");
    hc_free(&r);
    // the same body chunked: no length up front, the server counts as it reads
    q.expect_continue = 0;
    q.chunked = 1;
    ck_assert_int_eq(call_q(&r, &q), 413);
    ck_problem(&r, 413, "payload-too-large");
    hc_free(&r);
    q.path = "/v1/datasets";
    ck_assert_int_eq(call_q(&r, &q), 413);
    ck_problem(&r, 413, "payload-too-large");
    hc_free(&r);
    // just under the limit is read and judged on its content (a missing model: 404)
    size_t m = (64 << 10) - 64;
    memset(big, ' ', m);
    memcpy(big, "{\"x\":[[1]]}", 11);
    q.body = big;
    q.body_len = m;
    q.path = "/v1/models/nosuch/predict";
    ck_assert_int_eq(call_q(&r, &q), 404);
    ck_problem(&r, 404, "not-found");
    hc_free(&r);
    free(big);
    // the server still answers after refusing bodies
    ck_assert_int_eq(call(&r, "GET", "/livez", NULL), 200);
    hc_free(&r);
    server_down();
}
END_TEST

START_TEST(wrong_content_type_is_415_and_malformed_json_400_with_the_byte_offset) {
    server_up(0, 100, (size_t)64 << 20);
    HcResp r;
    HcReq q = {
        .method = "POST", .path = "/v1/jobs", .body = "name=sine", .content_type = "text/plain"};
    ck_assert_int_eq(call_q(&r, &q), 415);
    ck_problem(&r, 415, "unsupported-media-type");
    ck_detail_has(&r, "Content-Type");
    hc_free(&r);
    q.body = "{\"x\":[[1]]}";
    q.path = "/v1/models/nosuch/predict";
    q.content_type = "application/x-www-form-urlencoded";
    ck_assert_int_eq(call_q(&r, &q), 415);
    ck_problem(&r, 415, "unsupported-media-type");
    hc_free(&r);
    // parameters after the media type are fine: the request reaches the handler (404)
    q.content_type = "application/json; charset=utf-8";
    ck_assert_int_eq(call_q(&r, &q), 404);
    ck_problem(&r, 404, "not-found");
    hc_free(&r);

    // syntax errors: 400 with the byte offset where parsing stopped. A document cut short
    // stops at its end, which may be reported as the end (16) or as its last byte (15).
    static const struct {
        const char *method, *path, *body;
        int offset, alt; // alt: a second acceptable offset, -1 when there is one answer
    } bad[] = {
        {"POST", "/v1/jobs", "{\"name\": \"sine\", \"iterations\": }", 31, -1},
        {"POST", "/v1/jobs", "{\"name\": \"sine\",", 16, 15},
        {"POST", "/v1/jobs", "{\"outer\": {\"lr\": NaN}}", 17, -1},
        {"POST", "/v1/jobs", "{\"outer\": {\"lr\": Infinity}}", 17, -1},
        {"POST", "/v1/models/nosuch/predict", "{\"x\": [[1]]} trailing", 13, -1},
        {"POST", "/v1/datasets", "", 0, -1},
        {"PUT", "/v1/models/sine/aliases/prod", "{'version': 1}", 1, -1},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        call(&r, bad[i].method, bad[i].path, bad[i].body);
        const char *why = hc_problem_mismatch(&r, 400, "malformed-json");
        ck_assert_msg(!why, "%s: %s", bad[i].body, why);
        const char *d = hc_str(&r, "detail"), *at = strstr(d, "byte offset ");
        ck_assert_msg(at, "%s: detail '%s' gives no byte offset", bad[i].body, d);
        int off = atoi(at + 12);
        ck_assert_msg(off == bad[i].offset || off == bad[i].alt,
                      "%s: detail '%s', expected byte offset %d", bad[i].body, d, bad[i].offset);
        hc_free(&r);
    }
    server_down();
}
END_TEST

START_TEST(invalid_values_are_422_naming_the_field) {
    server_up(1, 100, (size_t)64 << 20);
    char cfg[1024], id[64];
    HcResp r;
    // a valid base config; each case sets one field (path "a.b") to a raw JSON value text
    const char *base = "{\"name\":\"tiny\",\"architecture\":{\"sizes\":[1,8,1],"
                       "\"activation\":\"relu\",\"head\":\"regression\"},\"algorithm\":\"maml\","
                       "\"inner\":{\"lr\":0.01,\"steps\":1},\"outer\":{\"optimizer\":\"adam\","
                       "\"lr\":0.001},\"meta_batch\":2,\"iterations\":5,\"seed\":1,"
                       "\"tasks\":{\"family\":\"sinusoid\",\"k_support\":5,\"k_query\":5}}";
    static const struct {
        const char *what, *path, *value, *field;
    } cases[] = {
        {"wrong type", "meta_batch", "\"ten\"", "meta_batch"},
        {"out of range", "meta_batch", "0", "meta_batch"},
        {"negative iterations", "iterations", "-3", "iterations"},
        {"fractional seed", "seed", "1.5", "seed"},
        {"inner steps 101", "inner.steps", "101", "inner.steps"},
        {"a number beyond double range", "outer.lr", "1e999", "outer.lr"},
        {"unknown field", "bogus", "1", "bogus"},
        {"unknown nested field", "inner.momentum", "0.9", "inner.momentum"},
        {"unknown algorithm", "algorithm", "\"sgdr\"", "algorithm"},
        {"name not a string", "name", "5", "name"},
        {"hidden width zero", "architecture.sizes", "[1,0,1]", "architecture.sizes"},
        // the service's limit on iterations is a 422 naming it (the spec's maximum), not a 413
        {"iterations past the limit", "iterations", "1000000000",
         "iterations: must be at most 100000000"},
        // a classification family without its number of classes: required, not "got 0"
        {"gaussian without n_way", "tasks",
         "{\"family\":\"gaussian\",\"k_support\":1,\"k_query\":1}", "tasks.n_way: is required"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        with_field(cfg, sizeof cfg, base, cases[i].path, cases[i].value);
        call(&r, "POST", "/v1/jobs", cfg);
        const char *why = hc_problem_mismatch(&r, 422, "validation");
        ck_assert_msg(!why, "%s (%s): %s", cases[i].what, cfg, why);
        ck_detail_has(&r, cases[i].field);
        hc_free(&r);
    }

    // a model to send bad adapt and predict requests to
    snprintf(cfg, sizeof cfg, "%s", base);
    ck_assert_int_eq(train(cfg, id), 1);
    static const struct {
        const char *what, *path, *body, *field;
    } bad[] = {
        {"x two wide for a 1-input model", "/v1/models/tiny/predict", "{\"x\":[[1,2]]}", "x[0]"},
        {"x ragged", "/v1/models/tiny/predict", "{\"x\":[[1],[2,3]]}", "x[1]"},
        {"x a string", "/v1/models/tiny/predict", "{\"x\":[[\"1\"]]}", "x[0][0]"},
        {"x empty", "/v1/models/tiny/predict", "{\"x\":[]}", "x"},
        {"x missing", "/v1/models/tiny/predict", "{}", "x"},
        {"x beyond float range", "/v1/models/tiny/predict", "{\"x\":[[1e39]]}",
         "x[0][0]: overflows float32"},
        {"support x beyond float range", "/v1/models/tiny/adapt",
         "{\"support\":{\"x\":[[-1e39]],\"y\":[[1]]}}", "support.x[0][0]: overflows float32"},
        {"x 1e999", "/v1/models/tiny/predict", "{\"x\":[[1e999]]}", "x[0][0]"},
        {"unknown field", "/v1/models/tiny/predict", "{\"x\":[[1]],\"temperature\":1}",
         "temperature"},
        {"support x two wide", "/v1/models/tiny/adapt", "{\"support\":{\"x\":[[1,2]],\"y\":[[1]]}}",
         "support.x[0]"},
        {"support rows differ", "/v1/models/tiny/adapt",
         "{\"support\":{\"x\":[[1],[2]],\"y\":[[1]]}}", "support.y"},
        {"support missing", "/v1/models/tiny/adapt", "{\"steps\":1}", "support"},
        {"steps 101", "/v1/models/tiny/adapt",
         "{\"support\":{\"x\":[[1]],\"y\":[[1]]},\"steps\":101}", "steps"},
        {"steps fractional", "/v1/models/tiny/adapt",
         "{\"support\":{\"x\":[[1]],\"y\":[[1]]},\"steps\":1.5}", "steps"},
        {"lr zero", "/v1/models/tiny/adapt", "{\"support\":{\"x\":[[1]],\"y\":[[1]]},\"lr\":0}",
         "lr"},
        {"ttl zero", "/v1/models/tiny/adapt", "{\"support\":{\"x\":[[1]],\"y\":[[1]]},\"ttl_s\":0}",
         "ttl_s"},
        // one rule for zero steps with a support set: refused, for adapt and inline predict
        {"steps 0 adapt", "/v1/models/tiny/adapt",
         "{\"support\":{\"x\":[[1]],\"y\":[[1]]},\"steps\":0}", "steps: must be at least 1"},
        {"steps 0 inline", "/v1/models/tiny/predict",
         "{\"x\":[[1]],\"support\":{\"x\":[[1]],\"y\":[[1]]},\"steps\":0}",
         "steps: must be at least 1"},
        {"steps 101 inline", "/v1/models/tiny/predict",
         "{\"x\":[[1]],\"support\":{\"x\":[[1]],\"y\":[[1]]},\"steps\":101}", "steps"},
        {"alias version 0", "/v1/models/tiny/aliases/prod", "{\"version\":0}", "version"},
        {"alias version a string", "/v1/models/tiny/aliases/prod", "{\"version\":\"1\"}",
         "version"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        call(&r, strstr(bad[i].path, "aliases") ? "PUT" : "POST", bad[i].path, bad[i].body);
        const char *why = hc_problem_mismatch(&r, 422, "validation");
        ck_assert_msg(!why, "%s (%s): %s", bad[i].what, bad[i].body, why);
        ck_detail_has(&r, bad[i].field);
        hc_free(&r);
    }
    ck_assert_int_eq(call(&r, "GET", "/v1/models/tiny/versions/zero", NULL), 422);
    ck_problem(&r, 422, "validation");
    ck_detail_has(&r, "version");
    hc_free(&r);
    ck_assert_int_eq(call(&r, "PUT", "/v1/models/tiny/aliases/prod", "{\"version\":7}"), 404);
    ck_problem(&r, 404, "not-found");
    hc_free(&r);

    // a finished job cannot be cancelled
    char path[96];
    snprintf(path, sizeof path, "/v1/jobs/%s/cancel", id);
    ck_assert_int_eq(call(&r, "POST", path, NULL), 409);
    ck_problem(&r, 409, "conflict");
    hc_free(&r);
    server_down();
}
END_TEST

START_TEST(a_full_queue_is_429_and_conflicts_are_409) {
    // no workers: queued jobs stay queued
    server_up(0, 2, (size_t)64 << 20);
    char did[64], j1[64], j2[64], cfg[1024], path[128];
    HcResp r;
    HcBuf b;
    tasks_body(&b);
    upload(b.s, did, &r);
    hc_free(&r);
    hc_buf_free(&b);
    snprintf(cfg, sizeof cfg,
             "{\"name\":\"lines\",\"architecture\":{\"sizes\":[1,8,1],\"head\":\"regression\"},"
             "\"iterations\":5,\"tasks\":{\"dataset\":\"%s\",\"k_support\":2,\"k_query\":2}}",
             did);
    submit_job(cfg, j1);

    // a dataset a queued job trains on cannot be deleted
    snprintf(path, sizeof path, "/v1/datasets/%s", did);
    ck_assert_int_eq(call(&r, "DELETE", path, NULL), 409);
    ck_problem(&r, 409, "conflict");
    hc_free(&r);

    sine_config(cfg, sizeof cfg, "sine", 8, 5, 2);
    submit_job(cfg, j2);
    ck_assert_int_eq(call(&r, "POST", "/v1/jobs", cfg), 429);
    ck_problem(&r, 429, "queue-full");
    char ra[16];
    ck_assert_ptr_nonnull(hc_header(&r, "Retry-After", ra, sizeof ra));
    ck_assert_int_gt(atoi(ra), 0);
    hc_free(&r);
    ck_assert_int_eq(call(&r, "GET", "/v1/jobs", NULL), 200);
    ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(r.json, "jobs")), 2);
    hc_free(&r);

    // cancelling a queued job ends it at once; a second cancel is a conflict
    snprintf(path, sizeof path, "/v1/jobs/%s/cancel", j1);
    ck_assert_int_eq(call(&r, "POST", path, NULL), 200);
    ck_assert_str_eq(hc_str(&r, "state"), "cancelled");
    hc_free(&r);
    ck_assert_int_eq(call(&r, "POST", path, NULL), 409);
    ck_problem(&r, 409, "conflict");
    hc_free(&r);
    // room in the queue again, and the dataset is free to go
    submit_job(cfg, j1);
    snprintf(path, sizeof path, "/v1/datasets/%s", did);
    ck_assert_int_eq(call(&r, "DELETE", path, NULL), 204);
    hc_free(&r);
    server_down();
}
END_TEST

START_TEST(draining_refuses_new_jobs_and_readiness_but_stays_live) {
    server_up(1, 100, (size_t)64 << 20);
    char cfg[1024];
    HcResp r;
    ck_assert_int_eq(call(&r, "GET", "/readyz", NULL), 200);
    ck_assert_str_eq(hc_str(&r, "status"), "ready");
    hc_free(&r);
    server_drain(g_srv);
    sine_config(cfg, sizeof cfg, "sine", 8, 5, 2);
    ck_assert_int_eq(call(&r, "POST", "/v1/jobs", cfg), 503);
    ck_problem(&r, 503, "unavailable");
    char ra[16];
    ck_assert_ptr_nonnull(hc_header(&r, "Retry-After", ra, sizeof ra));
    hc_free(&r);
    ck_assert_int_eq(call(&r, "GET", "/readyz", NULL), 503);
    ck_problem(&r, 503, "unavailable");
    hc_free(&r);
    ck_assert_int_eq(call(&r, "GET", "/livez", NULL), 200);
    ck_assert_str_eq(hc_str(&r, "status"), "ok");
    hc_free(&r);
    ck_assert_int_eq(call(&r, "GET", "/metrics", NULL), 200);
    ck_assert_double_eq(metric_value(r.body, "metaserve_ready"), 0);
    hc_free(&r);
    ck_assert_int_eq(call(&r, "GET", "/v1/jobs", NULL), 200);
    ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(r.json, "jobs")), 0);
    hc_free(&r);
    server_down();
}
END_TEST

START_TEST(a_model_description_lists_its_aliases) {
    server_up(1, 100, (size_t)64 << 20);
    char cfg[1024], id[64];
    sine_config(cfg, sizeof cfg, "aliased", 8, 5, 2);
    ck_assert_int_eq(train(cfg, id), 1);
    sine_config(cfg, sizeof cfg, "aliased", 8, 6, 2);
    ck_assert_int_eq(train(cfg, id), 2);
    HcResp r;
    ck_assert_int_eq(call(&r, "PUT", "/v1/models/aliased/aliases/prod", "{\"version\":1}"), 200);
    hc_free(&r);
    ck_assert_int_eq(call(&r, "PUT", "/v1/models/aliased/aliases/canary", "{\"version\":2}"), 200);
    hc_free(&r);
    // GET /v1/models/{name}: {"name", "latest_version", "versions", "aliases": {alias: version}}
    ck_assert_int_eq(call(&r, "GET", "/v1/models/aliased", NULL), 200);
    ck_assert_double_eq(hc_num(&r, "latest_version"), 2);
    ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(r.json, "versions")), 2);
    const cJSON *aliases = cJSON_GetObjectItemCaseSensitive(r.json, "aliases");
    ck_assert_msg(cJSON_IsObject(aliases) && cJSON_GetArraySize(aliases) == 2, "aliases: %s",
                  r.body);
    ck_assert_double_eq(cJSON_GetObjectItemCaseSensitive(aliases, "prod")->valuedouble, 1);
    ck_assert_double_eq(cJSON_GetObjectItemCaseSensitive(aliases, "canary")->valuedouble, 2);
    hc_free(&r);
    server_down();
}
END_TEST

START_TEST(request_ids_are_echoed_when_well_formed_and_replaced_otherwise) {
    server_up(0, 100, (size_t)64 << 20);
    char rid[256], long_id[201];
    memset(long_id, 'a', 200);
    long_id[200] = '\0';
    HcResp r;
    HcReq q = {.method = "GET", .path = "/livez"};
    // none sent: one is made (32 hex characters)
    call_q(&r, &q);
    ck_assert_ptr_nonnull(hc_header(&r, "X-Request-ID", rid, sizeof rid));
    ck_assert_uint_eq(strlen(rid), 32);
    ck_assert_uint_eq(strspn(rid, "0123456789abcdef"), 32);
    hc_free(&r);
    // well-formed: echoed, in the header and in a problem's request_id
    q.request_id = "trace-42.abc_DEF";
    call_q(&r, &q);
    ck_assert_str_eq(hc_header(&r, "X-Request-ID", rid, sizeof rid), "trace-42.abc_DEF");
    hc_free(&r);
    q.path = "/v1/nope";
    ck_assert_int_eq(call_q(&r, &q), 404);
    ck_assert_str_eq(hc_header(&r, "X-Request-ID", rid, sizeof rid), "trace-42.abc_DEF");
    ck_assert_str_eq(hc_str(&r, "request_id"), "trace-42.abc_DEF");
    hc_free(&r);
    // malformed: spaces, quotes, 200 characters -> replaced by a fresh one
    const char *bad[] = {"has spaces in it", "quote\"d", "semi;colon", long_id};
    char seen[4][64];
    for (int i = 0; i < 4; i++) {
        q.request_id = bad[i];
        call_q(&r, &q);
        ck_assert_ptr_nonnull(hc_header(&r, "X-Request-ID", rid, sizeof rid));
        ck_assert_str_ne(rid, bad[i]);
        ck_assert_uint_eq(strlen(rid), 32);
        ck_assert_str_eq(hc_str(&r, "request_id"), rid);
        snprintf(seen[i], sizeof seen[i], "%s", rid);
        for (int k = 0; k < i; k++)
            ck_assert_str_ne(seen[k], rid);
        hc_free(&r);
    }
    server_down();
}
END_TEST

/* ---- concurrency ---- */

#define N_THREADS 4
#define N_CALLS   50

typedef struct {
    int index;
    int failures;     // calls that did not give the expected status and body
    char first[1024]; // the first failure
    char ids[N_CALLS][40];
} Worker;

static void *hammer(void *arg) {
    Worker *w = arg;
    double sx[10], sy[10];
    sine_points(sx, sy, 10, -4.5 + 0.1 * w->index, 4.5);
    HcBuf sup;
    support_body(&sup, sx, sy, 10, 5, 0.01);
    const char *xq = "{\"x\":[[-3],[-1.5],[0],[1.5],[3]]}";
    for (int i = 0; i < N_CALLS; i++) {
        HcResp r;
        char path[96];
        hc_call(&g_c, &r, "POST", "/v1/models/conc/adapt", sup.s);
        const char *id = hc_str(&r, "id");
        if (r.status != 201 || !id || strlen(id) != 32) {
            if (!w->failures++)
                snprintf(w->first, sizeof w->first, "adapt %d: %ld %.300s %.200s", i, r.status,
                         r.body, r.err);
            hc_free(&r);
            continue;
        }
        snprintf(w->ids[i], sizeof w->ids[i], "%s", id);
        hc_free(&r);
        snprintf(path, sizeof path, "/v1/adaptations/%s/predict", w->ids[i]);
        hc_call(&g_c, &r, "POST", path, xq);
        float y[5];
        int ok =
            r.status == 200 && read_matrix(cJSON_GetObjectItemCaseSensitive(r.json, "y"), y, 5, 1);
        for (int k = 0; ok && k < 5; k++)
            ok = isfinite(y[k]);
        if (!ok && !w->failures++)
            snprintf(w->first, sizeof w->first, "predict %d: %ld %.300s %.200s", i, r.status,
                     r.body, r.err);
        hc_free(&r);
    }
    hc_buf_free(&sup);
    return NULL;
}

START_TEST(adapt_and_predict_from_four_threads_while_a_job_trains) {
    server_up(1, 100, (size_t)64 << 20);
    char cfg[1024], small[64], big[64], path[128];
    sine_config(cfg, sizeof cfg, "conc", 40, 30, 5);
    ck_assert_int_eq(train(cfg, small), 1);
    // a job far too long to finish during the test
    sine_config(cfg, sizeof cfg, "long", 40, 10000000, 25);
    submit_job(cfg, big);
    wait_state(big, "running");

    static Worker w[N_THREADS];
    pthread_t t[N_THREADS];
    memset(w, 0, sizeof w);
    for (int i = 0; i < N_THREADS; i++) {
        w[i].index = i;
        ck_assert_int_eq(pthread_create(&t[i], NULL, hammer, &w[i]), 0);
    }
    for (int i = 0; i < N_THREADS; i++)
        ck_assert_int_eq(pthread_join(t[i], NULL), 0);
    for (int i = 0; i < N_THREADS; i++)
        ck_assert_msg(w[i].failures == 0, "thread %d: %d failures; first: %s", i, w[i].failures,
                      w[i].first);
    // every adaptation got its own id
    for (int i = 0; i < N_THREADS * N_CALLS; i++)
        for (int k = 0; k < i; k++)
            ck_assert_str_ne(w[i / N_CALLS].ids[i % N_CALLS], w[k / N_CALLS].ids[k % N_CALLS]);

    // the training job was not disturbed; cancel it and it ends cleanly
    HcResp r;
    snprintf(path, sizeof path, "/v1/jobs/%s", big);
    ck_assert_int_eq(call(&r, "GET", path, NULL), 200);
    ck_assert_str_eq(hc_str(&r, "state"), "running");
    hc_free(&r);
    snprintf(path, sizeof path, "/v1/jobs/%s/cancel", big);
    ck_assert_int_eq(call(&r, "POST", path, NULL), 200);
    hc_free(&r);
    wait_job(big, &r);
    ck_assert_str_eq(hc_str(&r, "state"), "cancelled");
    ck_assert(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(r.json, "error")));
    ck_assert(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(r.json, "model"), "version")));
    hc_free(&r);
    ck_assert_int_eq(call(&r, "GET", "/v1/models/long", NULL), 404);
    hc_free(&r);
    // no request of the test ended in a 5xx
    ck_assert_int_eq(call(&r, "GET", "/metrics", NULL), 200);
    ck_assert_ptr_null(strstr(r.body, "status=\"5"));
    ck_assert_double_eq(metric_value(r.body, "metaserve_http_requests_total{route=\"/v1/models/"
                                             "{ref}/adapt\",method=\"POST\",status=\"201\"}"),
                        N_THREADS * N_CALLS);
    hc_free(&r);
    server_down();
}
END_TEST

/* ---- maintenance without training ---- */

// METASERVE_WORKERS=0 ("accept jobs but train none") still runs the sweeper: an adaptation past
// its TTL is deleted (the counter counts rows the sweep removed, not reads that hid them).
START_TEST(expired_adaptations_are_deleted_with_zero_workers) {
    char cfg[1024], id[64], path[256], db[sizeof testsrv_db];
    HcResp r;
    // a model, trained by a server that has a worker
    server_up(1, 100, (size_t)64 << 20);
    snprintf(db, sizeof db, "%s", testsrv_db);
    sine_config(cfg, sizeof cfg, "tiny", 8, 5, 2);
    ck_assert_int_eq(train(cfg, id), 1);
    testsrv_stop(&g_srv, NULL);

    // the same database served with no workers and a short sweep period
    ServerConfig c;
    testsrv_config(&c, db);
    setenv("METASERVE_WORKERS", "0", 1);
    setenv("METASERVE_ADAPT_SWEEP_S", "0.2", 1);
    MsError err = {0};
    MsStatus st = server_config_load(&c, 0, NULL, &err);
    unsetenv("METASERVE_WORKERS");
    unsetenv("METASERVE_ADAPT_SWEEP_S");
    ck_assert_msg(st == MS_OK, "server_config_load: %s", err.msg);
    ck_assert_int_eq(c.workers, 0);
    testsrv_start(&g_srv, &g_c, &c);

    ck_assert_int_eq(call(&r, "POST", "/v1/models/tiny/adapt",
                          "{\"support\":{\"x\":[[1]],\"y\":[[1]]},\"ttl_s\":1}"),
                     201);
    snprintf(path, sizeof path, "/v1/adaptations/%s", hc_str(&r, "id"));
    hc_free(&r);
    ck_assert_int_eq(call(&r, "GET", path, NULL), 200);
    hc_free(&r);

    // TTL 1 s and a sweep every 0.2 s: deleted after about 1.2 s; the deadline only bounds a
    // broken server's wait
    double expired = -1, t0 = now_s();
    while (now_s() - t0 < DEADLINE_S) {
        ck_assert_int_eq(call(&r, "GET", "/metrics", NULL), 200);
        expired = metric_value(r.body, "metaserve_adaptations_expired_total");
        hc_free(&r);
        if (expired >= 1) break;
        sleep_ms(100);
    }
    ck_assert_msg(expired == 1, "adaptations expired by the sweeper: %g", expired);
    ck_assert_int_eq(call(&r, "GET", path, NULL), 404);
    hc_free(&r);
    server_down();
}
END_TEST

int main(void) {
    curl_global_init(CURL_GLOBAL_DEFAULT);
    Suite *s = suite_create("api");
    TCase *tc = tcase_create("api");
    tcase_set_timeout(tc, 120);
    tcase_add_unchecked_fixture(tc, test_root_make, test_root_remove);
    tcase_add_test(tc, journey_trains_adapts_and_predicts_better_than_the_meta_parameters);
    tcase_add_test(tc, datasets_upload_list_train_a_classifier_and_delete);
    tcase_add_test(tc, rows_stored_under_the_old_metric_names_read_under_the_new);
    tcase_add_test(tc, unknown_routes_and_ids_are_404_and_wrong_methods_405_with_allow);
    tcase_add_test(tc, bodies_over_the_limit_are_413_with_content_length_and_chunked);
    tcase_add_test(tc, wrong_content_type_is_415_and_malformed_json_400_with_the_byte_offset);
    tcase_add_test(tc, invalid_values_are_422_naming_the_field);
    tcase_add_test(tc, a_full_queue_is_429_and_conflicts_are_409);
    tcase_add_test(tc, draining_refuses_new_jobs_and_readiness_but_stays_live);
    tcase_add_test(tc, a_model_description_lists_its_aliases);
    tcase_add_test(tc, request_ids_are_echoed_when_well_formed_and_replaced_otherwise);
    tcase_add_test(tc, adapt_and_predict_from_four_threads_while_a_job_trains);
    tcase_add_test(tc, expired_adaptations_are_deleted_with_zero_workers);
    suite_add_tcase(s, tc);
    int failed = test_suite_run(s);
    curl_global_cleanup();
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
