/*
 * bench_http: what adaptation and prediction cost over HTTP, against the real server started
 * in-process on an ephemeral loopback port (workers 0, 2 HTTP threads, no API keys) with a
 * temporary SQLite file under /tmp (removed at the end). The model is the classic sinusoid MAML
 * net (1-40-40-1 relu, train_config_defaults), trained here for 2000 meta-iterations and stored
 * as "sine" version 1. Prints one JSON object per case on stdout and nothing else there; notes
 * and errors go to stderr.
 *
 * Cases:
 *   adapt_compute       the server-side compute of one adaptation (K = 10 support points, 10
 *                       steps): serving_get (warm) + serving_adapt_copy, the same without
 *                       serving_get, and store_adaptation_put (what persisting it adds).
 *   adapt_roundtrip     sequential POST /v1/models/sine/adapt, POST .../predict (10 rows) and
 *                       GET /livez over loopback, in turn on one reused libcurl handle (one
 *                       keep-alive connection, one server thread), so that noise and thread
 *                       wake-ups hit all three alike.
 *   predict_throughput  32 keep-alive connections driven by one libcurl multi handle, each
 *                       re-issuing as soon as its reply arrives, against POST .../predict and
 *                       GET /livez (a constant reply: the ceiling) in alternating segments.
 *   oip_throughput      predict throughput at 32 keep-alive connections for v1 JSON, Open
 *                       Inference Protocol JSON and OIP binary tensors, each beside /livez, on
 *                       the sine net (10 rows) and on a 784-256-256-5 classifier (8 rows of 784),
 *                       as ratios to the same-run /livez rate.
 *   durability          what durable commits cost the adapt path and job submit: three more
 *                       servers in the process (DUR_HTTP_THREADS threads each), on normal.db at
 *                       synchronous=NORMAL with no barrier (not durable: the setting before
 *                       every commit was made durable), on full.db at synchronous=FULL (one
 *                       fsync per commit under the write lock) and on group.db with the store's
 *                       own group commit, each holding the model. First one client,
 *                       sequential: POST .../adapt and POST /v1/jobs on each server in turn,
 *                       with an 8 KB write + fdatasync in the same directory as a reference;
 *                       then 4 and 16 clients at once, in segments cycling through (server,
 *                       kind).
 *
 * Every file is a real file on the disk under /tmp, so a commit at FULL pays a real fsync. Client
 * and server share the process and the machine's cores, so absolute rates and latencies
 * include the client's own cost; the ratios to /livez, measured in the same run on the same
 * connections, compare like with like. The server's access log (one line per request on fd 2) goes
 * to /dev/null, or to --server-log PATH; notes keep the original stderr.
 */
#define _GNU_SOURCE
#include <cblas.h>
#include <curl/curl.h>
#include <dirent.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "metaserve/core/rng.h"
#include "metaserve/core/status.h"
#include "metaserve/codec/codec.h"
#include "metaserve/http/server.h"
#include "metaserve/meta/meta.h"
#include "metaserve/meta/train.h"
#include "metaserve/nn/blas.h"
#include "metaserve/serving/serving.h"
#include "metaserve/store/store.h"

#include "bench_util.h"

#define MODEL        "sine" // the stored model's name
#define K_SUPPORT    10     // support points of one adaptation
#define STEPS        10     // inner steps of one adaptation
#define X_ROWS       10     // rows of one prediction
#define TRAIN_ITERS  2000   // meta-iterations of the stored model
#define CONNS        32     // keep-alive connections of predict_throughput
#define HTTP_THREADS 2      // the server's libmicrohttpd thread pool

/* ---- options, clocks, percentiles, notes ---- */

typedef struct {
    int quick;              // 1: short smoke run
    const char *only;       // non-NULL: run only this case
    int compute_reps;       // adapt_compute: timed calls of each kind
    int rt_reps;            // adapt_roundtrip: timed requests of each kind
    double seconds;         // predict_throughput: counted seconds per endpoint
    double segment_s;       // predict_throughput: length of one alternating segment
    const char *server_log; // where the server's fd 2 goes (default /dev/null)
    int dur_reps;           // durability: sequential rounds (each: adapt and submit per server)
    int dur_rounds;         // durability: concurrent rounds (each: one segment per mode and kind)
    double dur_segment_s;   // durability: seconds of one concurrent segment
} Options;

static FILE *g_note; // the original stderr (fd 2 carries the server's access log)

static void report(const char *what, const MsError *err) {
    fprintf(g_note, "bench_http: %s: %s: %s\n", what, ms_status_str(err->code), err->msg);
}

/* ---- the temporary directory and the model ---- */

// Trains the classic sinusoid MAML net for TRAIN_ITERS meta-iterations and stores it as MODEL.
static MsStatus put_trained(Store *st, MsError *err) {
    TrainConfig c;
    train_config_defaults(&c);
    snprintf(c.name, sizeof c.name, "%s", MODEL);
    c.iterations = TRAIN_ITERS;
    Trainer tr;
    char *json = NULL;
    MsStatus s = trainer_init(&tr, &c, err);
    if (s != MS_OK) return s;
    double t0 = now_s(CLOCK_MONOTONIC), loss = NAN;
    while (s == MS_OK && tr.t < c.iterations) {
        TrainStats ts;
        s = trainer_step(&tr, &ts, err);
        loss = ts.meta_loss;
    }
    if (s == MS_OK) s = codec_config_print(&c, &json, err);
    if (s == MS_OK) {
        StoreModel m;
        memset(&m, 0, sizeof m);
        snprintf(m.name, sizeof m.name, "%s", c.name);
        snprintf(m.algorithm, sizeof m.algorithm, "%s", meta_algo_name(c.algo));
        m.config = json;
        m.hyper = "{}";
        m.metrics = "{}";
        m.n_params = tr.spec.P;
        m.params = tr.params;
        m.inner_lrs = (float *)trainer_lrs(&tr);
        int version;
        s = store_model_put(st, &m, &version, err);
        fprintf(g_note,
                "bench_http: trained %s@%d: %ld maml iterations in %.1f s, meta_loss %.3f\n", MODEL,
                version, tr.t, now_s(CLOCK_MONOTONIC) - t0, loss);
    }
    free(json);
    trainer_free(&tr);
    return s;
}

// The support set of every adaptation: K_SUPPORT points of y = 2 sin(x - 1) (a task of the
// sinusoid family: amplitude in [0.1, 5), phase in [0, pi), x in [-5, 5)), drawn with seed 7.
static void support_points(float *x, float *y) {
    Rng rng;
    rng_seed(&rng, 7);
    for (int i = 0; i < K_SUPPORT; i++) {
        x[i] = (float)rng_range(&rng, -5.0, 5.0);
        y[i] = 2.0f * sinf(x[i] - 1.0f);
    }
}

/* ---- adapt_compute ---- */

static int bench_adapt_compute(Store *st, const Options *o) {
    MsError err = {0};
    Serving *r = NULL;
    ServingModel *held = NULL;
    float x[K_SUPPORT], y[K_SUPPORT], *theta = NULL;
    size_t n = (size_t)o->compute_reps;
    double *get_adapt = malloc(n * sizeof *get_adapt), *adapt = malloc(n * sizeof *adapt);
    double *put = malloc(n * sizeof *put), before = NAN, after = NAN;
    int rc = 1;
    support_points(x, y);
    AdaptLimits lim;
    adapt_limits_default(&lim);
    AdaptRequest q = {.x = x, .y = y, .n = K_SUPPORT, .steps = STEPS, .lr = 0, .ttl_ms = 0};
    if (!get_adapt || !adapt || !put) {
        fprintf(g_note, "bench_http: adapt_compute: out of memory\n");
        goto done;
    }
    // The first get misses and loads the version; every timed one hits, as on a warm server.
    if (serving_create(&r, 4, &err) != MS_OK || serving_get(r, st, MODEL, &held, &err) != MS_OK) {
        report("adapt_compute: setup", &err);
        goto done;
    }
    const size_t P = held->spec.P;
    if (!(theta = malloc(P * sizeof *theta))) {
        fprintf(g_note, "bench_http: adapt_compute: out of memory\n");
        goto done;
    }
    StoreAdaptation a;
    memset(&a, 0, sizeof a);
    snprintf(a.model, sizeof a.model, "%s", held->name);
    a.version = held->version;
    a.n_params = P;
    a.params = theta;
    // Warm-up: allocator, caches, the store's prepared statements.
    for (int i = 0; i < 50; i++) {
        if (serving_adapt_copy(held, &q, &lim, theta, &before, &after, &err) != MS_OK ||
            store_adaptation_put(st, &a, &err) != MS_OK) {
            report("adapt_compute: warm-up", &err);
            goto done;
        }
    }
    // The three measurements are interleaved, so a noisy moment hits all of them alike.
    for (size_t i = 0; i < n; i++) {
        ServingModel *m;
        double t0 = now_us();
        MsStatus s = serving_get(r, st, MODEL, &m, &err);
        if (s == MS_OK) {
            s = serving_adapt_copy(m, &q, &lim, theta, NULL, NULL, &err);
            serving_release(r, m);
        }
        double t1 = now_us();
        if (s == MS_OK) s = serving_adapt_copy(held, &q, &lim, theta, NULL, NULL, &err);
        double t2 = now_us();
        a.support_loss_before = before, a.support_loss_after = after;
        a.expires_at = store_now_ms() + 3600LL * 1000;
        if (s == MS_OK) s = store_adaptation_put(st, &a, &err);
        double t3 = now_us();
        if (s != MS_OK) {
            report("adapt_compute", &err);
            goto done;
        }
        get_adapt[i] = t1 - t0, adapt[i] = t2 - t1, put[i] = t3 - t2;
    }
    printf("{\"case\":\"adapt_compute\",\"model\":\"%s\",\"sizes\":\"1-40-40-1\",\"params\":%zu,"
           "\"algo\":\"maml\",\"k\":%d,\"steps\":%d,\"reps\":%zu",
           MODEL, P, K_SUPPORT, STEPS, n);
    print_num("get_adapt_p50_us", pct(get_adapt, n, 0.5), 2);
    print_num("get_adapt_p99_us", pct(get_adapt, n, 0.99), 2);
    print_num("adapt_p50_us", pct(adapt, n, 0.5), 2);
    print_num("adapt_p99_us", pct(adapt, n, 0.99), 2);
    print_num("adapt_store_p50_us", pct(put, n, 0.5), 2);
    print_num("adapt_store_p99_us", pct(put, n, 0.99), 2);
    print_num("loss_before", before, 4);
    print_num("loss_after", after, 4);
    printf(",\"blas_core\":\"%s\"}\n", blas_core_name());
    fflush(stdout);
    rc = 0;
done:
    if (held) serving_release(r, held);
    serving_destroy(r);
    free(theta);
    free(get_adapt);
    free(adapt);
    free(put);
    return rc;
}

/* ---- the HTTP client: one libcurl easy handle per connection ---- */

typedef struct {
    CURL *h;
    struct curl_slist *headers;
    char *body; // the last reply (truncated to cap - 1 bytes)
    size_t len, cap;
    long expect; // the HTTP status a success replies with
} Conn;

static size_t on_body(char *p, size_t size, size_t nmemb, void *ud) {
    Conn *c = ud;
    size_t n = size * nmemb, room = c->cap - 1 - c->len, k = n < room ? n : room;
    memcpy(c->body + c->len, p, k);
    c->len += k;
    c->body[c->len] = '\0';
    return n;
}

// Points c at url: GET when post is NULL, else POST of post (application/json, borrowed until
// the next call). A handle keeps its connection open across calls (keep-alive is libcurl's
// default) as long as the host and port stay the same.
static void conn_aim(Conn *c, const char *url, const char *post, long expect) {
    c->expect = expect;
    curl_easy_setopt(c->h, CURLOPT_URL, url);
    if (post) {
        curl_easy_setopt(c->h, CURLOPT_HTTPHEADER, c->headers);
        curl_easy_setopt(c->h, CURLOPT_POSTFIELDS, post);
        curl_easy_setopt(c->h, CURLOPT_POSTFIELDSIZE, (long)strlen(post));
    } else {
        curl_easy_setopt(c->h, CURLOPT_HTTPHEADER, NULL);
        curl_easy_setopt(c->h, CURLOPT_HTTPGET, 1L);
    }
}

// A new handle aimed at url (conn_aim). Expect: 100-continue is switched off for POSTs.
static int conn_init(Conn *c, const char *url, const char *post, long expect) {
    memset(c, 0, sizeof *c);
    c->cap = 8192;
    if (!(c->body = malloc(c->cap)) || !(c->h = curl_easy_init())) return 0;
    c->body[0] = '\0';
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    if (!h || !(c->headers = curl_slist_append(h, "Expect:"))) {
        curl_slist_free_all(h);
        return 0;
    }
    curl_easy_setopt(c->h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c->h, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(c->h, CURLOPT_TIMEOUT_MS, 10000L);
    curl_easy_setopt(c->h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c->h, CURLOPT_WRITEDATA, c);
    curl_easy_setopt(c->h, CURLOPT_PRIVATE, c);
    conn_aim(c, url, post, expect);
    return 1;
}

static void conn_free(Conn *c) {
    curl_easy_cleanup(c->h);
    curl_slist_free_all(c->headers);
    free(c->body);
    memset(c, 0, sizeof *c);
}

// 1 when the finished transfer succeeded with the expected status; else a note (first `quiet`
// failures only) and 0.
static int conn_ok(Conn *c, CURLcode rc, int quiet) {
    long status = 0;
    curl_easy_getinfo(c->h, CURLINFO_RESPONSE_CODE, &status);
    if (rc == CURLE_OK && status == c->expect) return 1;
    if (!quiet) {
        char *url = NULL;
        curl_easy_getinfo(c->h, CURLINFO_EFFECTIVE_URL, &url);
        fprintf(g_note, "bench_http: %s: %s, HTTP %ld (expected %ld): %.200s\n", url ? url : "?",
                curl_easy_strerror(rc), status, c->expect, c->body);
    }
    return 0;
}

// One blocking request on c; its wall time in *us. The reply stays in c->body.
static int conn_do(Conn *c, double *us) {
    c->len = 0;
    double t0 = now_us();
    CURLcode rc = curl_easy_perform(c->h);
    *us = now_us() - t0;
    return conn_ok(c, rc, 0);
}

// The request bodies: adapt {"support": {"x", "y"}, "steps"} and predict {"x"} of X_ROWS rows.
static void make_bodies(char *adapt, size_t na, char *predict, size_t np) {
    float x[K_SUPPORT], y[K_SUPPORT];
    support_points(x, y);
    size_t k = (size_t)snprintf(adapt, na, "{\"support\":{\"x\":[");
    for (int i = 0; i < K_SUPPORT; i++)
        k += (size_t)snprintf(adapt + k, na - k, "%s[%.9g]", i ? "," : "", (double)x[i]);
    k += (size_t)snprintf(adapt + k, na - k, "],\"y\":[");
    for (int i = 0; i < K_SUPPORT; i++)
        k += (size_t)snprintf(adapt + k, na - k, "%s[%.9g]", i ? "," : "", (double)y[i]);
    snprintf(adapt + k, na - k, "]},\"steps\":%d}", STEPS);
    k = (size_t)snprintf(predict, np, "{\"x\":[");
    for (int i = 0; i < X_ROWS; i++)
        k += (size_t)snprintf(predict + k, np - k, "%s[%.9g]", i ? "," : "",
                              -4.5 + 9.0 * i / (X_ROWS - 1));
    snprintf(predict + k, np - k, "]}");
}

typedef struct {
    char adapt_url[128], predict_url[128], livez_url[128];
    char adapt_body[1024], predict_body[512];
} Target;

static void target_init(Target *t, int port) {
    snprintf(t->adapt_url, sizeof t->adapt_url, "http://127.0.0.1:%d/v1/models/%s/adapt", port,
             MODEL);
    snprintf(t->predict_url, sizeof t->predict_url, "http://127.0.0.1:%d/v1/models/%s/predict",
             port, MODEL);
    snprintf(t->livez_url, sizeof t->livez_url, "http://127.0.0.1:%d/livez", port);
    make_bodies(t->adapt_body, sizeof t->adapt_body, t->predict_body, sizeof t->predict_body);
}

/* ---- adapt_roundtrip ---- */

static int bench_roundtrip(const Target *t, const Options *o) {
    enum { ADAPT, PREDICT, LIVEZ, KINDS };
    static const char *const names[KINDS] = {"adapt", "predict", "livez"};
    const char *url[KINDS] = {t->adapt_url, t->predict_url, t->livez_url};
    const char *post[KINDS] = {t->adapt_body, t->predict_body, NULL};
    const long expect[KINDS] = {201, 200, 200};
    static const char *const marker[KINDS] = {"\"support_loss_after\"", "\"y\":[[", "\"ok\""};
    Conn c;
    double *us[KINDS] = {NULL};
    size_t n = (size_t)o->rt_reps;
    long connects = 0;
    int rc = 1, ok = conn_init(&c, t->livez_url, NULL, 200);
    for (int k = 0; k < KINDS; k++)
        ok = ok && (us[k] = malloc(n * sizeof(double))) != NULL;
    if (!ok) {
        fprintf(g_note, "bench_http: adapt_roundtrip: setup failed\n");
        goto done;
    }
    // Warm-up: the connection, the server thread's store connection and registry entry. Each
    // kind's first reply is checked for its content, not only its status.
    for (int i = 0; i < 100; i++) {
        for (int k = 0; k < KINDS; k++) {
            double dummy;
            conn_aim(&c, url[k], post[k], expect[k]);
            if (!conn_do(&c, &dummy)) goto done;
            if (i == 0 && !strstr(c.body, marker[k])) {
                fprintf(g_note, "bench_http: adapt_roundtrip: unexpected %s reply: %.200s\n",
                        names[k], c.body);
                goto done;
            }
        }
    }
    // One handle, so one connection and one server thread for all three kinds, in turn: a
    // noisy moment, or a slow wake-up of the server thread, hits them alike.
    for (size_t i = 0; i < n; i++) {
        for (int k = 0; k < KINDS; k++) {
            long nc = 0;
            conn_aim(&c, url[k], post[k], expect[k]);
            if (!conn_do(&c, &us[k][i])) goto done;
            curl_easy_getinfo(c.h, CURLINFO_NUM_CONNECTS, &nc);
            connects += nc;
        }
    }
    double p50[KINDS];
    printf("{\"case\":\"adapt_roundtrip\",\"k\":%d,\"steps\":%d,\"rows\":%d,\"reps\":%zu,"
           "\"new_connections\":%ld",
           K_SUPPORT, STEPS, X_ROWS, n, connects);
    for (int k = 0; k < KINDS; k++) {
        char key[32];
        double m = mean(us[k], n) / 1e3;
        p50[k] = pct(us[k], n, 0.5) / 1e3;
        snprintf(key, sizeof key, "%s_p50_ms", names[k]);
        print_num(key, p50[k], 4);
        snprintf(key, sizeof key, "%s_p99_ms", names[k]);
        print_num(key, pct(us[k], n, 0.99) / 1e3, 4);
        snprintf(key, sizeof key, "%s_mean_ms", names[k]);
        print_num(key, m, 4);
    }
    print_num("adapt_livez_ratio", p50[ADAPT] / p50[LIVEZ], 2);
    print_num("predict_livez_ratio", p50[PREDICT] / p50[LIVEZ], 2);
    printf("}\n");
    fflush(stdout);
    rc = 0;
done:
    conn_free(&c);
    for (int k = 0; k < KINDS; k++)
        free(us[k]);
    return rc;
}

/* ---- predict_throughput ---- */

typedef struct {
    double seconds;      // counted wall time
    long done, errors;   // successful replies inside the counted window; failures at any time
    long connects;       // new connections libcurl opened (CONNS when every one was kept alive)
    double cpu_s;        // process CPU time (client and server threads)
    double client_cpu_s; // this thread's CPU time (the client)
    double wall_s;       // wall time of the whole segment (warm-up included)
} Load;

// Drives every handle of conns for warm_s + count_s seconds, each re-issued as soon as it
// finishes, and adds to *l the replies completed inside the last count_s seconds. Transfers still
// running at the end are finished but not counted. Returns 0 when libcurl itself fails.
static int run_load(CURLM *multi, Conn *conns, int n, double warm_s, double count_s, Load *l) {
    double w0 = now_s(CLOCK_MONOTONIC), c0 = now_s(CLOCK_PROCESS_CPUTIME_ID);
    double t0 = now_s(CLOCK_THREAD_CPUTIME_ID);
    double from = w0 + warm_s, until = from + count_s;
    int active = 0, still = 0;
    for (int i = 0; i < n; i++, active++) {
        conns[i].len = 0;
        if (curl_multi_add_handle(multi, conns[i].h) != CURLM_OK) return 0;
    }
    while (active > 0) {
        if (curl_multi_perform(multi, &still) != CURLM_OK) return 0;
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read(multi, &left)) != NULL) {
            if (msg->msg != CURLMSG_DONE) continue;
            CURL *h = msg->easy_handle;
            CURLcode rc = msg->data.result;
            Conn *c;
            long nc = 0;
            curl_easy_getinfo(h, CURLINFO_PRIVATE, (char **)&c);
            curl_easy_getinfo(h, CURLINFO_NUM_CONNECTS, &nc);
            l->connects += nc;
            double t = now_s(CLOCK_MONOTONIC);
            if (!conn_ok(c, rc, l->errors > 3))
                l->errors++;
            else if (t >= from && t < until)
                l->done++;
            curl_multi_remove_handle(multi, h);
            c->len = 0;
            if (t < until && curl_multi_add_handle(multi, h) == CURLM_OK) continue;
            active--;
        }
        if (active > 0 && curl_multi_poll(multi, NULL, 0, 100, NULL) != CURLM_OK) return 0;
    }
    l->seconds += count_s;
    l->wall_s += now_s(CLOCK_MONOTONIC) - w0;
    l->cpu_s += now_s(CLOCK_PROCESS_CPUTIME_ID) - c0;
    l->client_cpu_s += now_s(CLOCK_THREAD_CPUTIME_ID) - t0;
    return 1;
}

static void print_load(const char *name, const Load *l) {
    char key[48];
    snprintf(key, sizeof key, "%s_rps", name);
    print_num(key, (double)l->done / l->seconds, 0);
    printf(",\"%s_requests\":%ld,\"%s_errors\":%ld,\"%s_new_connections\":%ld", name, l->done, name,
           l->errors, name, l->connects);
    snprintf(key, sizeof key, "%s_cpu_cores", name);
    print_num(key, l->cpu_s / l->wall_s, 2);
    snprintf(key, sizeof key, "%s_client_cpu_share", name);
    print_num(key, l->client_cpu_s / l->cpu_s, 2);
}

static int bench_throughput(const Target *t, const Options *o) {
    enum { PREDICT, LIVEZ, KINDS };
    Conn c[KINDS][CONNS];
    CURLM *multi[KINDS] = {NULL};
    Load l[KINDS];
    memset(c, 0, sizeof c);
    memset(l, 0, sizeof l);
    int rc = 1, ok = 1;
    for (int k = 0; k < KINDS; k++) {
        ok = ok && (multi[k] = curl_multi_init()) != NULL;
        for (int i = 0; i < CONNS; i++)
            ok = ok && (k == PREDICT ? conn_init(&c[k][i], t->predict_url, t->predict_body, 200)
                                     : conn_init(&c[k][i], t->livez_url, NULL, 200));
        // at most CONNS connections per endpoint, all kept in the multi handle's cache
        if (ok) curl_multi_setopt(multi[k], CURLMOPT_MAXCONNECTS, (long)CONNS);
    }
    if (!ok) {
        fprintf(g_note, "bench_http: predict_throughput: setup failed\n");
        goto done;
    }
    fprintf(g_note,
            "bench_http: predict_throughput: %d connections, %.1f s per endpoint in %.1f s "
            "segments; the client (one thread) and the server (%d threads) share the machine's "
            "%ld cores, so both rates are lower than with the client elsewhere, but the ratio "
            "compares like with like\n",
            CONNS, o->seconds, o->segment_s, HTTP_THREADS, sysconf(_SC_NPROCESSORS_ONLN));
    // Alternating segments: drift in the machine's load hits both endpoints alike. Each segment
    // starts with 0.2 s uncounted, to get back to a steady state.
    int segments = (int)ceil(o->seconds / o->segment_s - 1e-9);
    for (int s = 0; s < segments; s++) {
        for (int k = 0; k < KINDS; k++) {
            if (!run_load(multi[k], c[k], CONNS, 0.2, o->seconds / segments, &l[k])) {
                fprintf(g_note, "bench_http: predict_throughput: libcurl multi failed\n");
                goto done;
            }
        }
    }
    printf("{\"case\":\"predict_throughput\",\"connections\":%d,\"http_threads\":%d,\"rows\":%d",
           CONNS, HTTP_THREADS, X_ROWS);
    print_num("seconds", l[PREDICT].seconds, 1);
    print_load("predict", &l[PREDICT]);
    print_load("livez", &l[LIVEZ]);
    print_num("ratio", (double)l[PREDICT].done / (double)l[LIVEZ].done, 3);
    printf("}\n");
    fflush(stdout);
    rc = l[PREDICT].errors + l[LIVEZ].errors > 0;
    if (rc)
        fprintf(g_note, "bench_http: predict_throughput: %ld failed requests\n",
                l[PREDICT].errors + l[LIVEZ].errors);
done:
    // a failed segment can leave handles in a multi handle: take them out before freeing
    for (int k = 0; k < KINDS; k++) {
        for (int i = 0; i < CONNS; i++) {
            if (multi[k] && c[k][i].h) curl_multi_remove_handle(multi[k], c[k][i].h);
            conn_free(&c[k][i]);
        }
        curl_multi_cleanup(multi[k]);
    }
    return rc;
}

/* ---- oip_throughput ---- */

// The Open Inference Protocol beside v1: predict throughput at CONNS keep-alive connections for
// v1 JSON (POST /v1/models/{m}/predict), OIP JSON and OIP binary tensors in and out (POST
// /v2/models/{m}/infer), each beside GET /livez, in alternating segments; on the 1-40-40-1 sine
// net (X_ROWS rows of 1 feature) and on a 784-256-256-5 classifier (OIP_WIDE_ROWS rows of 784:
// what the request's text costs dominates).
#define OIP_WIDE         "wide" // the 784-256-256-5 model (random parameters: only speed counts)
#define OIP_WIDE_ROWS    8
#define OIP_WIDE_D       784
#define OIP_WIDE_CLASSES 5

// Stores OIP_WIDE: a 784-256-256-5 relu classifier with parameters drawn from seed 5.
static MsStatus put_wide(Store *st, MsError *err) {
    TrainConfig c;
    train_config_defaults(&c);
    snprintf(c.name, sizeof c.name, "%s", OIP_WIDE);
    c.n_sizes = 4;
    memcpy(c.sizes, (int[]){OIP_WIDE_D, 256, 256, OIP_WIDE_CLASSES}, 4 * sizeof(int));
    c.head = MLP_HEAD_CLASSIFICATION;
    snprintf(c.tasks.family, sizeof c.tasks.family, "gaussian");
    c.tasks.n_way = OIP_WIDE_CLASSES;
    c.tasks.dim = OIP_WIDE_D;
    MlpSpec spec;
    char *json = NULL;
    float *theta = NULL;
    MsStatus s = mlp_spec_init(&spec, c.sizes, c.n_sizes, c.act, c.head, err);
    if (s == MS_OK) s = codec_config_print(&c, &json, err);
    if (s == MS_OK && !(theta = malloc(spec.P * sizeof *theta)))
        s = ms_fail(err, MS_ERR_NOMEM, "out of memory");
    if (s == MS_OK) {
        Rng rng;
        rng_seed(&rng, 5);
        mlp_init_params(&spec, theta, &rng);
        StoreModel m;
        memset(&m, 0, sizeof m);
        snprintf(m.name, sizeof m.name, "%s", OIP_WIDE);
        snprintf(m.algorithm, sizeof m.algorithm, "maml");
        m.config = json;
        m.hyper = "{}";
        m.metrics = "{}";
        m.n_params = spec.P;
        m.params = theta;
        int version;
        s = store_model_put(st, &m, &version, err);
    }
    free(json);
    free(theta);
    return s;
}

typedef struct {
    char *v1, *json, *bin; // bodies: v1 {"x": nested}, OIP JSON, OIP header + raw FP32 rows
    size_t bin_len, bin_header;
} OipBodies;

// The three bodies of rows x d values from seed 3 in [-4.5, 4.5), printed "%.9g".
static int oip_bodies(OipBodies *b, int rows, int d) {
    size_t n = (size_t)rows * d, cap = n * 18 + 512;
    b->v1 = malloc(cap), b->json = malloc(cap), b->bin = malloc(n * 4 + 512);
    if (!b->v1 || !b->json || !b->bin) return 0;
    Rng rng;
    rng_seed(&rng, 3);
    size_t kv = (size_t)snprintf(b->v1, cap, "{\"x\":[");
    size_t kj = (size_t)snprintf(b->json, cap,
                                 "{\"inputs\":[{\"name\":\"x\",\"shape\":[%d,%d],\"datatype\":"
                                 "\"FP32\",\"data\":[",
                                 rows, d);
    int hl = snprintf(b->bin, 512,
                      "{\"parameters\":{\"binary_data_output\":true},\"inputs\":[{\"name\":\"x\","
                      "\"shape\":[%d,%d],\"datatype\":\"FP32\",\"parameters\":"
                      "{\"binary_data_size\":%zu}}]}",
                      rows, d, n * 4);
    b->bin_header = (size_t)hl;
    unsigned char *p = (unsigned char *)b->bin + hl;
    for (int i = 0; i < rows; i++) {
        kv += (size_t)snprintf(b->v1 + kv, cap - kv, i ? ",[" : "[");
        for (int j = 0; j < d; j++) {
            float v = (float)rng_range(&rng, -4.5, 4.5);
            kv += (size_t)snprintf(b->v1 + kv, cap - kv, "%s%.9g", j ? "," : "", (double)v);
            kj += (size_t)snprintf(b->json + kj, cap - kj, "%s%.9g", i || j ? "," : "", (double)v);
            uint32_t u;
            memcpy(&u, &v, 4);
            for (int k = 0; k < 4; k++)
                *p++ = (unsigned char)(u >> (8 * k)); // little-endian
        }
        kv += (size_t)snprintf(b->v1 + kv, cap - kv, "]");
    }
    snprintf(b->v1 + kv, cap - kv, "]}");
    snprintf(b->json + kj, cap - kj, "]}]}");
    b->bin_len = (size_t)(p - (unsigned char *)b->bin);
    return 1;
}

static void oip_bodies_free(OipBodies *b) {
    free(b->v1), free(b->json), free(b->bin);
}

// conn_init for a binary POST: the body (len bytes, borrowed) with its header length.
static int conn_init_binary(Conn *c, const char *url, const char *body, size_t len, size_t hl) {
    if (!conn_init(c, url, NULL, 200)) return 0;
    char h[80];
    snprintf(h, sizeof h, "Inference-Header-Content-Length: %zu", hl);
    struct curl_slist *l = curl_slist_append(NULL, "Content-Type: application/octet-stream");
    struct curl_slist *l2 = l ? curl_slist_append(l, "Expect:") : NULL;
    struct curl_slist *l3 = l2 ? curl_slist_append(l2, h) : NULL;
    if (!l3) {
        curl_slist_free_all(l);
        return 0;
    }
    curl_slist_free_all(c->headers);
    c->headers = l3;
    curl_easy_setopt(c->h, CURLOPT_HTTPHEADER, c->headers);
    curl_easy_setopt(c->h, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c->h, CURLOPT_POSTFIELDSIZE, (long)len);
    return 1;
}

// One model's four loads; prints one line.
static int oip_model(int port, const char *model, const char *arch, int rows, int d,
                     const Options *o) {
    enum { V1, OIP_JSON, OIP_BIN, LIVEZ, KINDS };
    static const char *const NAMES[KINDS] = {"v1_json", "oip_json", "oip_binary", "livez"};
    Conn c[KINDS][CONNS];
    CURLM *multi[KINDS] = {NULL};
    Load l[KINDS];
    OipBodies b = {0};
    memset(c, 0, sizeof c);
    memset(l, 0, sizeof l);
    char url[KINDS][160];
    snprintf(url[V1], sizeof url[V1], "http://127.0.0.1:%d/v1/models/%s/predict", port, model);
    snprintf(url[OIP_JSON], sizeof url[OIP_JSON], "http://127.0.0.1:%d/v2/models/%s/infer", port,
             model);
    snprintf(url[OIP_BIN], sizeof url[OIP_BIN], "%s", url[OIP_JSON]);
    snprintf(url[LIVEZ], sizeof url[LIVEZ], "http://127.0.0.1:%d/livez", port);
    int rc = 1, ok = oip_bodies(&b, rows, d);
    for (int k = 0; k < KINDS && ok; k++) {
        ok = (multi[k] = curl_multi_init()) != NULL;
        for (int i = 0; i < CONNS && ok; i++)
            ok = k == V1         ? conn_init(&c[k][i], url[k], b.v1, 200)
                 : k == OIP_JSON ? conn_init(&c[k][i], url[k], b.json, 200)
                 : k == OIP_BIN ? conn_init_binary(&c[k][i], url[k], b.bin, b.bin_len, b.bin_header)
                                : conn_init(&c[k][i], url[k], NULL, 200);
        if (ok) curl_multi_setopt(multi[k], CURLMOPT_MAXCONNECTS, (long)CONNS);
    }
    if (!ok) {
        fprintf(g_note, "bench_http: oip_throughput: setup failed\n");
        goto done;
    }
    int segments = (int)ceil(o->seconds / o->segment_s - 1e-9);
    for (int s = 0; s < segments; s++)
        for (int k = 0; k < KINDS; k++)
            if (!run_load(multi[k], c[k], CONNS, 0.2, o->seconds / segments, &l[k])) {
                fprintf(g_note, "bench_http: oip_throughput: libcurl multi failed\n");
                goto done;
            }
    printf("{\"case\":\"oip_throughput\",\"model\":\"%s\",\"connections\":%d,\"http_threads\":%d,"
           "\"rows\":%d,\"features\":%d,\"json_body_bytes\":%zu,\"binary_body_bytes\":%zu",
           arch, CONNS, HTTP_THREADS, rows, d, strlen(b.json), b.bin_len);
    print_num("seconds", l[V1].seconds, 1);
    long errors = 0;
    for (int k = 0; k < KINDS; k++) {
        char key[48];
        snprintf(key, sizeof key, "%s_rps", NAMES[k]);
        print_num(key, (double)l[k].done / l[k].seconds, 0);
        errors += l[k].errors;
    }
    for (int k = 0; k < LIVEZ; k++) {
        char key[48];
        snprintf(key, sizeof key, "%s_ratio", NAMES[k]);
        print_num(key, (double)l[k].done / (double)l[LIVEZ].done, 3);
    }
    printf(",\"errors\":%ld}\n", errors);
    fflush(stdout);
    rc = errors > 0;
    if (rc) fprintf(g_note, "bench_http: oip_throughput: %ld failed requests\n", errors);
done:
    for (int k = 0; k < KINDS; k++) {
        for (int i = 0; i < CONNS; i++) {
            if (multi[k] && c[k][i].h) curl_multi_remove_handle(multi[k], c[k][i].h);
            conn_free(&c[k][i]);
        }
        curl_multi_cleanup(multi[k]);
    }
    oip_bodies_free(&b);
    return rc;
}

static int bench_oip(int port, const Options *o) {
    fprintf(g_note,
            "bench_http: oip_throughput: v1 JSON, OIP JSON and OIP binary beside /livez, %d "
            "connections, %.1f s per endpoint\n",
            CONNS, o->seconds);
    return oip_model(port, MODEL, "1-40-40-1", X_ROWS, 1, o) +
           oip_model(port, OIP_WIDE, "784-256-256-5", OIP_WIDE_ROWS, OIP_WIDE_D, o);
}

/* ---- durability ---- */

// Every database of bench_http runs in the store's own mode (group commit), except files named
// normal.db and full.db, which the durability case runs at synchronous=NORMAL without the
// barrier (the setting before every commit was made durable) and at synchronous=FULL (one fsync
// per commit). The store asks this function (a weak reference in src/store/store_sqlite.c,
// defined only by builds that test or measure durability) for every file it opens.
const char *store_sqlite_synchronous_override(const char *path);
const char *store_sqlite_synchronous_override(const char *path) {
    size_t n = strlen(path);
    if (n >= 10 && !strcmp(path + n - 10, "/normal.db")) return "NORMAL";
    if (n >= 8 && !strcmp(path + n - 8, "/full.db")) return "FULL";
    return NULL;
}

#define DUR_HTTP_THREADS 16 // the durability servers' threads: 16 clients are served at once
#define DUR_NC           2  // client counts of the concurrent part
static const int DUR_CLIENTS[DUR_NC] = {4, 16};

enum { M_NORMAL, M_FULL, M_GROUP, MODES };
enum { K_ADAPT, K_SUBMIT, DUR_KINDS };
static const char *const MODE_NAMES[MODES] = {"normal", "full", "group"};
static const char *const DUR_KIND_NAMES[DUR_KINDS] = {"adapt", "submit"};

// One server of the durability case: its file, the model, its URLs.
typedef struct {
    Store *st;
    Server *srv;
    char url[DUR_KINDS][128];
} DurServer;

// Starts a server on dir/file holding a copy of model m (DUR_HTTP_THREADS HTTP threads, no job
// workers, a queue limit never reached).
static int dur_server_start(DurServer *d, const char *dir, const char *file, const StoreModel *m) {
    char db[128];
    snprintf(db, sizeof db, "%s/%s", dir, file);
    MsError err = {0};
    StoreModel copy = *m;
    int version;
    if (store_open(&d->st, db, &err) != MS_OK ||
        store_model_put(d->st, &copy, &version, &err) != MS_OK) {
        report("durability: setup", &err);
        return 0;
    }
    ServerConfig c;
    server_config_defaults(&c);
    snprintf(c.listen, sizeof c.listen, "127.0.0.1");
    snprintf(c.db, sizeof c.db, "%s", db);
    c.port = 0;
    c.workers = 0;
    c.http_threads = DUR_HTTP_THREADS;
    c.n_keys = 0;
    c.max_queued_jobs = 1000000;
    if (server_start(&d->srv, &c, &err) != MS_OK) {
        report("durability: server_start", &err);
        return 0;
    }
    snprintf(d->url[K_ADAPT], sizeof d->url[K_ADAPT], "http://127.0.0.1:%d/v1/models/%s@%d/adapt",
             server_port(d->srv), MODEL, version);
    snprintf(d->url[K_SUBMIT], sizeof d->url[K_SUBMIT], "http://127.0.0.1:%d/v1/jobs",
             server_port(d->srv));
    return 1;
}

// Latencies of one (mode, kind): microseconds, appended by the clients.
typedef struct {
    double *us;
    size_t n, cap;
    double seconds; // counted wall time (concurrent part)
    pthread_mutex_t mu;
} Lat;

static int lat_add(Lat *l, const double *v, size_t n) {
    pthread_mutex_lock(&l->mu);
    if (l->n + n > l->cap) {
        size_t cap = l->cap ? l->cap : 1024;
        while (cap < l->n + n)
            cap *= 2;
        double *us = realloc(l->us, cap * sizeof *us);
        if (!us) {
            pthread_mutex_unlock(&l->mu);
            return 0;
        }
        l->us = us, l->cap = cap;
    }
    memcpy(l->us + l->n, v, n * sizeof *v);
    l->n += n;
    pthread_mutex_unlock(&l->mu);
    return 1;
}

// One concurrent client: requests on its own keep-alive connection until `until`.
typedef struct {
    const char *url, *body;
    long expect;
    double until;
    Lat *lat;
    int ok;
} DurClient;

static void *dur_client(void *arg) {
    DurClient *a = arg;
    Conn c;
    size_t cap = 1 << 16, n = 0;
    double *us = malloc(cap * sizeof *us);
    a->ok = us && conn_init(&c, a->url, a->body, a->expect);
    while (a->ok && now_s(CLOCK_MONOTONIC) < a->until && n < cap)
        a->ok = conn_do(&c, &us[n++]);
    if (a->ok) a->ok = lat_add(a->lat, us, n);
    if (us) conn_free(&c);
    free(us);
    return NULL;
}

static void print_lat(const char *prefix, Lat *l, int rate) {
    char key[64];
    snprintf(key, sizeof key, "%s_p50_ms", prefix);
    print_num(key, l->n ? pct(l->us, l->n, 0.5) / 1e3 : NAN, 3);
    snprintf(key, sizeof key, "%s_p99_ms", prefix);
    print_num(key, l->n ? pct(l->us, l->n, 0.99) / 1e3 : NAN, 3);
    if (rate) {
        snprintf(key, sizeof key, "%s_rps", prefix);
        print_num(key, (double)l->n / l->seconds, 0);
    }
}

// Store-level commits: n threads, each with its own connection to one file, create jobs (one
// write transaction each) until `until`; no HTTP and no adaptation compute, only the commit path.
#define STORE_NC 3
static const int STORE_CLIENTS[STORE_NC] = {1, 4, 16};

typedef struct {
    const char *db;
    double until;
    long commits;
    int ok;
} StoreWriter;

static void *store_writer(void *arg) {
    StoreWriter *w = arg;
    MsError err = {0};
    Store *st = NULL;
    char id[STORE_ID_MAX];
    w->ok = store_open(&st, w->db, &err) == MS_OK;
    while (w->ok && now_s(CLOCK_MONOTONIC) < w->until) {
        w->ok = store_job_create(st, "{}", "bench-commit", 1, 0, id, &err) == MS_OK;
        w->commits += w->ok;
    }
    if (!w->ok) report("durability: store commits", &err);
    store_close(st);
    return NULL;
}

// Commits per second of each (clients, mode), in segments cycling through them for `rounds`.
static int dur_store_commits(const char *dir, int rounds, double seg_s,
                             double cps[STORE_NC][MODES]) {
    static const char *const FILES[MODES] = {"normal.db", "full.db", "group.db"};
    double secs[STORE_NC][MODES] = {{0}};
    long n[STORE_NC][MODES] = {{0}};
    int ok = 1;
    for (int round = 0; ok && round < rounds; round++)
        for (int c = 0; ok && c < STORE_NC; c++)
            for (int j = 0; ok && j < MODES; j++) {
                int mo = (round & 1) ? MODES - 1 - j : j, nc = STORE_CLIENTS[c];
                char db[128];
                snprintf(db, sizeof db, "%s/%s", dir, FILES[mo]);
                pthread_t th[16];
                StoreWriter w[16];
                double t0 = now_s(CLOCK_MONOTONIC);
                for (int i = 0; i < nc; i++) {
                    w[i] = (StoreWriter){db, t0 + seg_s, 0, 0};
                    pthread_create(&th[i], NULL, store_writer, &w[i]);
                }
                for (int i = 0; i < nc; i++) {
                    pthread_join(th[i], NULL);
                    ok = ok && w[i].ok;
                    n[c][mo] += w[i].commits;
                }
                secs[c][mo] += now_s(CLOCK_MONOTONIC) - t0;
            }
    for (int c = 0; c < STORE_NC; c++)
        for (int mo = 0; mo < MODES; mo++)
            cps[c][mo] = (double)n[c][mo] / secs[c][mo];
    return ok;
}

enum { W_PROGRESS, W_CHECKPOINT, JOB_WRITES };
static const char *const JOB_WRITE_NAMES[JOB_WRITES] = {"progress", "checkpoint"};

// Times reps progress and checkpoint writes of a classic-net job on each server's file (a job
// claimed there), the files in turn; *iters_s receives the classic net's training rate and
// *img_bytes its checkpoint size.
static int dur_job_writes(const DurServer *d, size_t reps, Lat jw[MODES][JOB_WRITES],
                          double *iters_s, size_t *img_bytes) {
    MsError err = {0};
    TrainConfig c;
    train_config_defaults(&c);
    Trainer tr;
    StoreJob job[MODES];
    int claimed[MODES] = {0}, ok = 0;
    void *img = NULL;
    if (trainer_init(&tr, &c, &err) != MS_OK) {
        report("durability: trainer_init", &err);
        return 0;
    }
    double t0 = now_us();
    for (int i = 0; i < 200; i++) {
        TrainStats ts;
        if (trainer_step(&tr, &ts, &err) != MS_OK) {
            report("durability: trainer_step", &err);
            goto done;
        }
    }
    *iters_s = 200 / ((now_us() - t0) / 1e6);
    *img_bytes = trainer_state_bytes(&tr);
    if (!(img = malloc(*img_bytes))) goto done;
    trainer_save(&tr, img);
    for (int mo = 0; mo < MODES; mo++)
        if (store_job_claim(d[mo].st, &job[mo], &claimed[mo], &err) != MS_OK || !claimed[mo]) {
            report("durability: store_job_claim", &err);
            goto done;
        }
    StoreMetric pts[2] = {{0, "meta_loss", 1.0}, {0, "tasks_per_s", 1e4}};
    for (int i = -5; i < (int)reps; i++) {
        // a new training state each round, untimed: SQLite skips writing pages whose bytes do
        // not change, so rewriting the same image would commit nothing
        TrainStats ts;
        if (trainer_step(&tr, &ts, &err) != MS_OK) {
            report("durability: trainer_step", &err);
            goto done;
        }
        trainer_save(&tr, img);
        for (int j = 0; j < MODES; j++) {
            int mo = (i & 1) ? MODES - 1 - j : j;
            double t[JOB_WRITES + 1];
            pts[0].step = pts[1].step = 1000 + i;
            t[0] = now_us();
            MsStatus s = store_job_progress(d[mo].st, job[mo].id, 1000 + i, "{\"meta_loss\":1}",
                                            pts, 2, &err);
            t[1] = now_us();
            if (s == MS_OK)
                s = store_job_checkpoint(d[mo].st, job[mo].id, 1000 + i, img, *img_bytes, &err);
            t[2] = now_us();
            if (s != MS_OK) {
                report("durability: a job write", &err);
                goto done;
            }
            for (int k = 0; k < JOB_WRITES && i >= 0; k++) {
                double us = t[k + 1] - t[k];
                if (!lat_add(&jw[mo][k], &us, 1)) goto done;
            }
        }
    }
    ok = 1;
done:
    for (int mo = 0; mo < MODES; mo++)
        if (claimed[mo]) store_job_free(&job[mo]);
    free(img);
    trainer_free(&tr);
    return ok;
}

static int bench_durability(Store *st, const char *dir, const Options *o) {
    MsError err = {0};
    StoreModel m;
    DurServer d[MODES];
    Lat seq[MODES][DUR_KINDS], conc[DUR_NC][MODES][DUR_KINDS], jw[MODES][JOB_WRITES];
    double *flush = NULL;
    char *job = NULL;
    int rc = 1, have_model = 0, fd = -1;
    memset(d, 0, sizeof d);
    memset(seq, 0, sizeof seq);
    memset(conc, 0, sizeof conc);
    memset(jw, 0, sizeof jw);
    for (int mo = 0; mo < MODES; mo++) {
        for (int k = 0; k < DUR_KINDS; k++) {
            pthread_mutex_init(&seq[mo][k].mu, NULL);
            for (int c = 0; c < DUR_NC; c++)
                pthread_mutex_init(&conc[c][mo][k].mu, NULL);
        }
        for (int k = 0; k < JOB_WRITES; k++)
            pthread_mutex_init(&jw[mo][k].mu, NULL);
    }
    TrainConfig c;
    train_config_defaults(&c);
    snprintf(c.name, sizeof c.name, "bench-job");
    if (store_model_get(st, MODEL, 1, &m, &err) != MS_OK ||
        codec_config_print(&c, &job, &err) != MS_OK) {
        report("durability: setup", &err);
        goto done;
    }
    have_model = 1;
    if (!dur_server_start(&d[M_NORMAL], dir, "normal.db", &m) ||
        !dur_server_start(&d[M_FULL], dir, "full.db", &m) ||
        !dur_server_start(&d[M_GROUP], dir, "group.db", &m))
        goto done;
    Target t;
    target_init(&t, server_port(d[M_FULL].srv));
    const char *body[DUR_KINDS] = {t.adapt_body, job};
    const long expect[DUR_KINDS] = {201, 202};
    // The flush reference: an 8 KB write and fdatasync of a file in the same directory, what a
    // durable commit of one adaptation adds at least.
    char path[128];
    snprintf(path, sizeof path, "%s/flush", dir);
    size_t n = (size_t)o->dur_reps;
    static char block[8192];
    if ((fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600)) < 0 ||
        !(flush = malloc(n * sizeof *flush))) {
        fprintf(g_note, "bench_http: durability: the flush reference file\n");
        goto done;
    }
    // Sequential: one client, one keep-alive connection per server; adapt then submit on each
    // server in turn, the order of the servers swapped every round, and one flush reference.
    Conn conn[MODES];
    memset(conn, 0, sizeof conn);
    int ok = 1;
    for (int mo = 0; mo < MODES; mo++)
        ok = ok && conn_init(&conn[mo], d[mo].url[K_ADAPT], body[K_ADAPT], 201);
    for (int i = -20; ok && i < (int)n; i++) { // 20 warm-up rounds
        for (int j = 0; ok && j < MODES; j++) {
            int mo = (i & 1) ? MODES - 1 - j : j;
            for (int k = 0; ok && k < DUR_KINDS; k++) {
                double us;
                conn_aim(&conn[mo], d[mo].url[k], body[k], expect[k]);
                ok = conn_do(&conn[mo], &us) && (i < 0 || lat_add(&seq[mo][k], &us, 1));
            }
        }
        double t0 = now_us();
        ok = ok && pwrite(fd, block, sizeof block, (off_t)((i & 255) * sizeof block)) > 0 &&
             fdatasync(fd) == 0;
        if (i >= 0) flush[i] = now_us() - t0;
    }
    for (int mo = 0; mo < MODES; mo++)
        conn_free(&conn[mo]);
    if (!ok) {
        fprintf(g_note, "bench_http: durability: the sequential part failed\n");
        goto done;
    }
    // Concurrent: n clients at once against one server and one kind for a segment; the
    // segments cycle through the (clients, mode, kind) triples, so drift hits them alike.
    for (int round = 0; round < o->dur_rounds; round++)
        for (int c = 0; c < DUR_NC; c++)
            for (int k = 0; k < DUR_KINDS; k++)
                for (int j = 0; j < MODES; j++) {
                    int mo = (round & 1) ? MODES - 1 - j : j, nc = DUR_CLIENTS[c];
                    pthread_t th[16];
                    DurClient a[16];
                    Lat *l = &conc[c][mo][k];
                    double t0 = now_s(CLOCK_MONOTONIC), until = t0 + o->dur_segment_s;
                    for (int i = 0; i < nc; i++) {
                        a[i] = (DurClient){d[mo].url[k], body[k], expect[k], until, l, 0};
                        pthread_create(&th[i], NULL, dur_client, &a[i]);
                    }
                    for (int i = 0; i < nc; i++) {
                        pthread_join(th[i], NULL);
                        ok = ok && a[i].ok;
                    }
                    l->seconds += now_s(CLOCK_MONOTONIC) - t0;
                }
    if (!ok) {
        fprintf(g_note, "bench_http: durability: the concurrent part failed\n");
        goto done;
    }
    // A training job's own writes, through the store on each file: progress (once a second in
    // the service) and checkpoints of the classic net (every 1000 iterations or 10 s), on a job
    // claimed from the queue the submits filled, alternating between the files.
    double iters_s = 0;
    size_t img_bytes = 0;
    if (!dur_job_writes(d, n, jw, &iters_s, &img_bytes)) goto done;
    double cps[STORE_NC][MODES];
    if (!dur_store_commits(dir, o->dur_rounds, o->dur_segment_s, cps)) goto done;
    printf("{\"case\":\"durability\",\"reps\":%zu,\"http_threads\":%d", n, DUR_HTTP_THREADS);
    print_num("segment_s", o->dur_segment_s, 2);
    printf(",\"rounds\":%d", o->dur_rounds);
    double p50[MODES][DUR_KINDS];
    for (int mo = 0; mo < MODES; mo++)
        for (int k = 0; k < DUR_KINDS; k++) {
            char prefix[48];
            p50[mo][k] = pct(seq[mo][k].us, seq[mo][k].n, 0.5);
            snprintf(prefix, sizeof prefix, "%s_%s", MODE_NAMES[mo], DUR_KIND_NAMES[k]);
            print_lat(prefix, &seq[mo][k], 0);
        }
    print_num("flush_p50_ms", pct(flush, n, 0.5) / 1e3, 3);
    print_num("flush_p99_ms", pct(flush, n, 0.99) / 1e3, 3);
    print_num("adapt_full_normal_ratio", p50[M_FULL][K_ADAPT] / p50[M_NORMAL][K_ADAPT], 2);
    print_num("submit_full_normal_ratio", p50[M_FULL][K_SUBMIT] / p50[M_NORMAL][K_SUBMIT], 2);
    print_num("adapt_group_full_ratio", p50[M_GROUP][K_ADAPT] / p50[M_FULL][K_ADAPT], 2);
    print_num("submit_group_full_ratio", p50[M_GROUP][K_SUBMIT] / p50[M_FULL][K_SUBMIT], 2);
    for (int c = 0; c < DUR_NC; c++)
        for (int mo = 0; mo < MODES; mo++)
            for (int k = 0; k < DUR_KINDS; k++) {
                char prefix[48];
                snprintf(prefix, sizeof prefix, "conc%d_%s_%s", DUR_CLIENTS[c], MODE_NAMES[mo],
                         DUR_KIND_NAMES[k]);
                print_lat(prefix, &conc[c][mo][k], 1);
            }
    for (int c = 0; c < STORE_NC; c++)
        for (int mo = 0; mo < MODES; mo++) {
            char key[48];
            snprintf(key, sizeof key, "store%d_%s_commits_per_s", STORE_CLIENTS[c], MODE_NAMES[mo]);
            print_num(key, cps[c][mo], 0);
        }
    // The share of a job's training time its own writes take at the service's defaults: one
    // progress write a second, and a checkpoint every 1000 iterations or 10 s, whichever first.
    double ckpt_per_s = iters_s / 1000 > 0.1 ? iters_s / 1000 : 0.1;
    printf(",\"checkpoint_bytes\":%zu", img_bytes);
    print_num("iterations_per_s", iters_s, 0);
    for (int mo = 0; mo < MODES; mo++) {
        double w50[JOB_WRITES];
        for (int k = 0; k < JOB_WRITES; k++) {
            char prefix[48];
            w50[k] = pct(jw[mo][k].us, jw[mo][k].n, 0.5);
            snprintf(prefix, sizeof prefix, "%s_%s", MODE_NAMES[mo], JOB_WRITE_NAMES[k]);
            print_lat(prefix, &jw[mo][k], 0);
        }
        char key[48];
        snprintf(key, sizeof key, "%s_training_share_pct", MODE_NAMES[mo]);
        print_num(key, 100 * (w50[W_PROGRESS] + ckpt_per_s * w50[W_CHECKPOINT]) / 1e6, 3);
    }
    printf("}\n");
    fflush(stdout);
    rc = 0;
done:
    for (int mo = 0; mo < MODES; mo++) {
        server_stop(d[mo].srv);
        store_close(d[mo].st);
        for (int k = 0; k < DUR_KINDS; k++) {
            free(seq[mo][k].us);
            pthread_mutex_destroy(&seq[mo][k].mu);
            for (int c = 0; c < DUR_NC; c++) {
                free(conc[c][mo][k].us);
                pthread_mutex_destroy(&conc[c][mo][k].mu);
            }
        }
        for (int k = 0; k < JOB_WRITES; k++) {
            free(jw[mo][k].us);
            pthread_mutex_destroy(&jw[mo][k].mu);
        }
    }
    if (have_model) store_model_free(&m);
    if (fd >= 0) close(fd);
    free(flush);
    free(job);
    return rc;
}

/* ---- main ---- */

static void usage(FILE *f) {
    fprintf(f, "usage: bench_http [--quick] [--case NAME] [--seconds S] [--server-log PATH]\n"
               "  --quick            short smoke run (~10 s with training)\n"
               "  --case NAME        run only adapt_compute, adapt_roundtrip, predict_throughput,\n"
               "                     durability or oip_throughput\n"
               "  --seconds S        predict_throughput: counted seconds per endpoint (default 5)\n"
               "  --server-log PATH  write the server's access log there (default /dev/null)\n");
}

static const char *const CASES[] = {"adapt_compute", "adapt_roundtrip", "predict_throughput",
                                    "durability", "oip_throughput"};

static int wanted(const Options *o, const char *name) {
    return !o->only || !strcmp(o->only, name);
}

static int parse_args(int argc, char **argv, Options *o) {
    *o = (Options){.compute_reps = 2000,
                   .rt_reps = 1000,
                   .seconds = 5,
                   .segment_s = 1,
                   .dur_reps = 300,
                   .dur_rounds = 3,
                   .dur_segment_s = 1};
    double seconds = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick")) {
            o->quick = 1;
        } else if (!strcmp(argv[i], "--case") && i + 1 < argc) {
            o->only = argv[++i];
            int known = 0;
            for (size_t k = 0; k < sizeof CASES / sizeof CASES[0]; k++)
                known |= !strcmp(o->only, CASES[k]);
            if (!known) return -1;
        } else if (!strcmp(argv[i], "--seconds") && i + 1 < argc) {
            char *end;
            seconds = strtod(argv[++i], &end);
            if (*end || !(seconds >= 0.1 && seconds <= 3600)) return -1;
        } else if (!strcmp(argv[i], "--server-log") && i + 1 < argc) {
            o->server_log = argv[++i];
        } else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            exit(0);
        } else {
            return -1;
        }
    }
    if (o->quick) {
        o->compute_reps = 300, o->rt_reps = 200, o->seconds = 1, o->segment_s = 0.5;
        o->dur_reps = 50, o->dur_rounds = 1, o->dur_segment_s = 0.5;
    }
    if (seconds > 0) o->seconds = seconds;
    return 0;
}

// Notes keep the original stderr; fd 2, where the server writes its access log, goes to path.
static int split_stderr(const char *path) {
    int keep = dup(2);
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (keep < 0 || fd < 0 || !(g_note = fdopen(keep, "w")) || dup2(fd, 2) < 0) {
        fprintf(stderr, "bench_http: cannot redirect the server's log to %s\n", path);
        return 0;
    }
    close(fd);
    setvbuf(g_note, NULL, _IOLBF, 0);
    return 1;
}

int main(int argc, char **argv) {
    blas_autocore(argv);
    g_note = stderr;
    Options o;
    if (parse_args(argc, argv, &o) != 0) {
        usage(stderr);
        return 2;
    }
    openblas_set_num_threads(1);
    signal(SIGPIPE, SIG_IGN);
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) return 1;
    char dir[] = "/tmp/bench_http_XXXXXX", db[64];
    if (!mkdtemp(dir)) {
        perror("bench_http: mkdtemp");
        return 1;
    }
    snprintf(db, sizeof db, "%s/bench.db", dir);
    fprintf(stderr, "bench_http: database %s, OpenBLAS core %s, 1 BLAS thread, libcurl %s\n", db,
            blas_core_name(), curl_version_info(CURLVERSION_NOW)->version);
    MsError err = {0};
    Store *st = NULL;
    Server *srv = NULL;
    int failed = 0;
    if (store_open(&st, db, &err) != MS_OK || put_trained(st, &err) != MS_OK ||
        put_wide(st, &err) != MS_OK) {
        report("setup", &err);
        failed = 1;
        goto done;
    }
    if (wanted(&o, "adapt_compute")) failed += bench_adapt_compute(st, &o);
    if (!wanted(&o, "adapt_roundtrip") && !wanted(&o, "predict_throughput") &&
        !wanted(&o, "durability") && !wanted(&o, "oip_throughput"))
        goto done;
    if (!split_stderr(o.server_log ? o.server_log : "/dev/null")) {
        failed++;
        goto done;
    }
    ServerConfig c;
    server_config_defaults(&c);
    snprintf(c.listen, sizeof c.listen, "127.0.0.1");
    snprintf(c.db, sizeof c.db, "%s", db);
    c.port = 0;
    c.workers = 0;
    c.http_threads = HTTP_THREADS;
    c.n_keys = 0;
    if (server_start(&srv, &c, &err) != MS_OK) {
        report("server_start", &err);
        failed++;
        goto done;
    }
    Target t;
    target_init(&t, server_port(srv));
    fprintf(g_note, "bench_http: server on 127.0.0.1:%d, %d HTTP threads, no job workers\n",
            server_port(srv), HTTP_THREADS);
    if (wanted(&o, "adapt_roundtrip")) failed += bench_roundtrip(&t, &o);
    if (wanted(&o, "predict_throughput")) failed += bench_throughput(&t, &o);
    if (wanted(&o, "durability")) failed += bench_durability(st, dir, &o);
    if (wanted(&o, "oip_throughput")) failed += bench_oip(server_port(srv), &o);
done:
    server_stop(srv);
    store_close(st);
    remove_dir(dir, g_note);
    curl_global_cleanup();
    if (failed) fprintf(g_note, "bench_http: %d case(s) failed\n", failed);
    return failed ? 1 : 0;
}
