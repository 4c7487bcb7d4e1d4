/*
 * GET /v1/jobs/{id}/events (Server-Sent Events) against the real server, started in-process on
 * an ephemeral loopback port and read with libcurl as a stream: the events of a training job in
 * order (state, progress, state succeeded, done with the model version), their fields compared
 * with the job's recorded metrics, a reconnect with Last-Event-ID that repeats nothing, 204 after
 * done, the interval floor and a malformed interval (400), an unknown job (404), the stream limit
 * (503 with Retry-After), heartbeat comments on a quiet stream, a client that hangs up (the
 * metaserve_event_streams gauge is back to 0 long before the stream's next wake-up), the done event
 * of a cancelled and of a failed job, and a stop of the server that ends open streams cleanly.
 *
 * Waits poll with a generous deadline only to fail instead of hanging; nothing asserts on
 * durations. With METASERVE_TEST_PG set (test_events_pg) the database is PostgreSQL.
 */
#define _GNU_SOURCE
#include <check.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TEST_ROOT_NAME "ms_events"
#include "testsrv.h"

#define DEADLINE_S 60.0
#define MAX_EVENTS 512

static char g_dir[128];
static Server *g_srv;
static HcClient g_c;

static void server_up_hb(int workers, int max_streams, int heartbeat_ms) {
    ServerConfig c;
    testsrv_config_in_new_dir(&c, g_dir, sizeof g_dir, "events.db");
    c.workers = workers;
    c.http_threads = 2;
    c.max_streams = max_streams;
    c.sse_heartbeat_ms = heartbeat_ms;
    testsrv_start(&g_srv, &g_c, &c);
}

static void server_up(int workers, int max_streams) {
    server_up_hb(workers, max_streams, 15000);
}

static void server_down(void) {
    testsrv_stop(&g_srv, g_dir);
}

/* ---- a stream reader ---- */

typedef struct {
    long long id;
    char name[16];
    cJSON *data;
} Ev;

// One subscription: the raw bytes, the events parsed so far, and when to hang up.
typedef struct {
    char path[256];
    long long last_id;   // Last-Event-ID to send (-1: none)
    int stop_after;      // hang up after this many events (0: read to the end)
    int stop_after_hb;   // hang up after this many heartbeat comments (0: never)
    long timeout_s;      // the transfer's limit (0: 300 s)
    atomic_int quit;     // hang up now (checked while the stream is idle)
    atomic_int n_events; // events parsed so far
    Ev ev[MAX_EVENTS];
    HcBuf raw;
    size_t parsed; // bytes of raw parsed into ev
    CURLcode rc;
    long status;
    char retry_after[16];
    HcBuf head;
} Sub;

// Parses the complete events of s->raw (blocks ending in a blank line); comments are skipped.
static void sub_parse(Sub *s) {
    for (;;) {
        char *start = s->raw.s + s->parsed, *end = strstr(start, "\n\n");
        if (!end) return;
        int k = atomic_load(&s->n_events);
        Ev e = {.id = -1};
        int is_event = 0;
        for (char *line = start; line < end;) {
            char *eol = memchr(line, '\n', (size_t)(end - line));
            if (!eol) eol = end;
            *eol = '\0';
            if (!strncmp(line, "id: ", 4)) e.id = atoll(line + 4);
            if (!strncmp(line, "event: ", 7)) {
                snprintf(e.name, sizeof e.name, "%s", line + 7);
                is_event = 1;
            }
            if (!strncmp(line, "data: ", 6)) e.data = cJSON_Parse(line + 6);
            *eol = '\n';
            line = eol + 1;
        }
        s->parsed = (size_t)(end + 2 - s->raw.s);
        if (is_event && k < MAX_EVENTS) {
            s->ev[k] = e;
            atomic_store(&s->n_events, k + 1);
        } else {
            cJSON_Delete(e.data);
        }
    }
}

static size_t sub_write(char *data, size_t size, size_t n, void *p) {
    Sub *s = p;
    hc_buf_add(&s->raw, data, size * n);
    sub_parse(s);
    if (s->stop_after && atomic_load(&s->n_events) >= s->stop_after) return 0; // hang up
    int hb = 0;
    for (const char *p = s->raw.s; (p = strstr(p, "\n: hb\n\n")); p++)
        hb++;
    if (s->stop_after_hb && hb >= s->stop_after_hb) return 0;
    return size * n;
}

static int sub_progress(void *p, curl_off_t a, curl_off_t b, curl_off_t c, curl_off_t d) {
    (void)a, (void)b, (void)c, (void)d;
    return atomic_load(&((Sub *)p)->quit); // non-zero aborts the transfer: the client hangs up
}

static void *sub_run(void *p) {
    Sub *s = p;
    hc_buf_init(&s->raw);
    hc_buf_init(&s->head);
    char url[512], line[64];
    snprintf(url, sizeof url, "%s%s", g_c.base, s->path);
    CURL *h = curl_easy_init();
    struct curl_slist *hl = NULL;
    if (s->last_id >= 0) {
        snprintf(line, sizeof line, "Last-Event-ID: %lld", s->last_id);
        hl = curl_slist_append(hl, line);
    }
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    // only to fail instead of hanging (sanitizer builds train several times slower)
    curl_easy_setopt(h, CURLOPT_TIMEOUT, s->timeout_s > 0 ? s->timeout_s : 300L);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, sub_write);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, s);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, hc_header_cb);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, &s->head);
    curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, sub_progress);
    curl_easy_setopt(h, CURLOPT_XFERINFODATA, s);
    if (hl) curl_easy_setopt(h, CURLOPT_HTTPHEADER, hl);
    s->rc = curl_easy_perform(h);
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &s->status);
    HcResp tmp = {.headers = s->head.s};
    if (!hc_header(&tmp, "Retry-After", s->retry_after, sizeof s->retry_after))
        s->retry_after[0] = '\0';
    curl_slist_free_all(hl);
    curl_easy_cleanup(h);
    return NULL;
}

static Sub *sub_new(const char *job, const char *query, long long last_id, int stop_after) {
    Sub *s = calloc(1, sizeof *s);
    ck_assert_ptr_nonnull(s);
    snprintf(s->path, sizeof s->path, "/v1/jobs/%s/events%s", job, query);
    s->last_id = last_id;
    s->stop_after = stop_after;
    return s;
}

static void sub_free(Sub *s) {
    for (int i = 0; i < atomic_load(&s->n_events); i++)
        cJSON_Delete(s->ev[i].data);
    hc_buf_free(&s->raw);
    hc_buf_free(&s->head);
    free(s);
}

// Waits until s has parsed at least n events (or its transfer ended); 1 when it has.
static int sub_wait(Sub *s, int n, pthread_t *t, int *joined) {
    double t0 = now_s();
    while (atomic_load(&s->n_events) < n && now_s() - t0 < DEADLINE_S) {
        if (pthread_tryjoin_np(*t, NULL) == 0) {
            *joined = 1;
            break;
        }
        sleep_ms(20);
    }
    return atomic_load(&s->n_events) >= n;
}

static const cJSON *field(const Ev *e, const char *key) {
    return cJSON_GetObjectItemCaseSensitive(e->data, key);
}
static double num(const Ev *e, const char *key) {
    const cJSON *v = field(e, key);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}
static const char *str(const Ev *e, const char *key) {
    const cJSON *v = field(e, key);
    return cJSON_IsString(v) ? v->valuestring : "";
}

/* ---- API helpers ---- */

static void submit(const char *cfg, char *id) {
    HcResp r;
    ck_assert_int_eq(hc_call(&g_c, &r, "POST", "/v1/jobs", cfg), 202);
    snprintf(id, 64, "%s", hc_str(&r, "id"));
    hc_free(&r);
}

static void sine_config(char *buf, size_t n, long iterations) {
    snprintf(buf, n,
             "{\"name\":\"sine\",\"architecture\":{\"sizes\":[1,40,40,1],\"activation\":\"relu\","
             "\"head\":\"regression\"},\"algorithm\":\"maml\",\"inner\":{\"lr\":0.01,\"steps\":1},"
             "\"outer\":{\"optimizer\":\"adam\",\"lr\":0.001},\"meta_batch\":10,"
             "\"iterations\":%ld,\"seed\":1,"
             "\"tasks\":{\"family\":\"sinusoid\",\"k_support\":10,\"k_query\":10}}",
             iterations);
}

// The metaserve_event_streams gauge of /metrics (-1 when absent).
static int open_streams(void) {
    HcResp r;
    hc_call(&g_c, &r, "GET", "/metrics", NULL);
    const char *p = strstr(r.body, "\nmetaserve_event_streams ");
    int v = p ? atoi(p + 25) : -1;
    hc_free(&r);
    return v;
}

// The val_mse curve point at the largest step <= iteration (NAN when none), from
// GET /v1/jobs/{id}/metrics read page by page with since=.
static double val_mse_at(const char *job, double iteration) {
    double best = NAN;
    long long since = -1;
    for (int pages = 0; pages < 100; pages++) {
        char path[256];
        snprintf(path, sizeof path, "/v1/jobs/%s/metrics?since=%lld&page_size=1000", job, since);
        HcResp r;
        ck_assert_int_eq(hc_call(&g_c, &r, "GET", path, NULL), 200);
        const cJSON *pts = cJSON_GetObjectItemCaseSensitive(r.json, "points"), *p;
        int n = 0;
        const long long asked = since;
        cJSON_ArrayForEach(p, pts) {
            double step = cJSON_GetObjectItemCaseSensitive(p, "step")->valuedouble;
            ck_assert_msg(step > (double)asked, "since=%lld returned step %g", asked, step);
            since = (long long)step;
            n++;
            const cJSON *key = cJSON_GetObjectItemCaseSensitive(p, "key");
            if (step <= iteration && !strcmp(key->valuestring, "val_mse"))
                best = cJSON_GetObjectItemCaseSensitive(p, "value")->valuedouble;
        }
        hc_free(&r);
        if (n == 0) break;
    }
    return best;
}

/* ---- tests ---- */

// Checks the events of one job stream (or of a stream and its resumption, concatenated): ids
// strictly increasing, progress fields and values as recorded, the end (state succeeded, done).
static void check_job_events(const char *job, Ev **ev, int n, double total, int version) {
    ck_assert_int_ge(n, 3);
    ck_assert_str_eq(ev[0]->name, "state");
    int progress = 0;
    double last_iter = 0;
    for (int i = 0; i < n; i++) {
        const Ev *e = ev[i];
        ck_assert_msg(e->data, "event %d (%s) has no JSON data", i, e->name);
        if (i)
            ck_assert_msg(e->id > ev[i - 1]->id, "ids not increasing: %lld after %lld", e->id,
                          ev[i - 1]->id);
        ck_assert_double_eq(num(e, "total"), total);
        if (!strcmp(e->name, "progress")) {
            progress++;
            double it = num(e, "iteration");
            ck_assert_msg(it > last_iter && it <= total, "progress iteration %g after %g", it,
                          last_iter);
            last_iter = it;
            ck_assert_int_eq(e->id, (long long)it * 8 + 3);
            ck_assert_ptr_null(cJSON_GetObjectItemCaseSensitive(e->data, "val_metric"));
            ck_assert(isfinite(num(e, "meta_loss")));
            ck_assert(isfinite(num(e, "tasks_per_s")) && num(e, "tasks_per_s") > 0);
            ck_assert(isfinite(num(e, "eta_s")) && num(e, "eta_s") >= 0);
            // the event carries what the job recorded: the validation loss is the curve's point
            // at the last progress write (printed with 9 significant digits: relative 1e-8)
            double v = num(e, "val_mse"), want = val_mse_at(job, it);
            ck_assert_msg(isfinite(v) && fabs(v - want) <= 1e-8 * fabs(want),
                          "progress at %g: val_mse %.17g, the job's curve has %.17g", it, v, want);
        } else {
            ck_assert_msg(!strcmp(e->name, "state") || (!strcmp(e->name, "done") && i == n - 1),
                          "unexpected event %s at %d", e->name, i);
        }
    }
    ck_assert_int_ge(progress, 1);
    const Ev *fin = ev[n - 2], *done = ev[n - 1];
    ck_assert_str_eq(fin->name, "state");
    ck_assert_str_eq(str(fin, "state"), "succeeded");
    ck_assert_str_eq(done->name, "done");
    ck_assert_int_eq(done->id, (long long)total * 8 + 5);
    ck_assert_str_eq(str(done, "state"), "succeeded");
    const cJSON *model = field(done, "model");
    ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(model, "name")->valuestring, "sine");
    ck_assert_int_eq(cJSON_GetObjectItemCaseSensitive(model, "version")->valueint, version);
    ck_assert(cJSON_IsNull(field(done, "error")));
    ck_assert_double_eq(last_iter, total);
}

START_TEST(a_job_stream_has_its_events_in_order_and_a_reconnect_repeats_none) {
    server_up(1, 64);
    char cfg[1024], job[64], path[128];
    // ~3 s of training: a progress write every second gives several progress events
    sine_config(cfg, sizeof cfg, 4000);
    submit(cfg, job);

    // the first connection hangs up after two events past the first state
    Sub *a = sub_new(job, "?interval_ms=100", -1, 3);
    pthread_t ta;
    int joined = 0;
    pthread_create(&ta, NULL, sub_run, a);
    sub_wait(a, 3, &ta, &joined);
    if (!joined) pthread_join(ta, NULL);
    ck_assert_int_eq(a->status, 200);
    ck_assert_msg(strstr(a->raw.s, ": interval_ms=100\n"), "stream head: %.200s", a->raw.s);
    int na = atomic_load(&a->n_events);
    ck_assert_int_ge(na, 3);

    // the second resumes after the last id the first one saw, and reads to the end
    Sub *b = sub_new(job, "?interval_ms=100", a->ev[na - 1].id, 0);
    sub_run(b);
    ck_assert_int_eq(b->rc, CURLE_OK); // the stream ends cleanly after done
    ck_assert_int_eq(b->status, 200);
    int nb = atomic_load(&b->n_events);
    ck_assert_int_ge(nb, 2);

    HcResp r;
    snprintf(path, sizeof path, "/v1/jobs/%s", job);
    ck_assert_int_eq(hc_call(&g_c, &r, "GET", path, NULL), 200);
    ck_assert_str_eq(hc_str(&r, "state"), "succeeded");
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(r.json, "model");
    int version = cJSON_GetObjectItemCaseSensitive(model, "version")->valueint;
    hc_free(&r);

    Ev *all[2 * MAX_EVENTS];
    int n = 0;
    for (int i = 0; i < na; i++)
        all[n++] = &a->ev[i];
    for (int i = 0; i < nb; i++)
        all[n++] = &b->ev[i];
    check_job_events(job, all, n, 4000, version);

    // a new client of the finished job: the last progress, the final state, done
    Sub *c = sub_new(job, "", -1, 0);
    sub_run(c);
    ck_assert_int_eq(c->rc, CURLE_OK);
    ck_assert_int_eq(atomic_load(&c->n_events), 3);
    Ev *cv[3] = {&c->ev[0], &c->ev[1], &c->ev[2]};
    ck_assert_str_eq(cv[0]->name, "progress");
    ck_assert_str_eq(cv[2]->name, "done");
    ck_assert_msg(strstr(c->raw.s, ": interval_ms=500\n"), "default interval: %.200s", c->raw.s);

    // one that has seen done is told to stop reconnecting
    Sub *d = sub_new(job, "", (long long)4000 * 8 + 5, 0);
    sub_run(d);
    ck_assert_int_eq(d->status, 204);
    ck_assert_int_eq(atomic_load(&d->n_events), 0);
    ck_assert_int_eq(open_streams(), 0);
    sub_free(a), sub_free(b), sub_free(c), sub_free(d);
    server_down();
}
END_TEST

START_TEST(the_interval_has_a_floor_and_bad_requests_are_refused) {
    server_up(0, 64);
    char cfg[1024], job[64], path[192];
    sine_config(cfg, sizeof cfg, 100);
    submit(cfg, job);

    // below the floor: raised to 100 ms (said in the stream's first comment)
    Sub *s = sub_new(job, "?interval_ms=1", -1, 1);
    sub_run(s);
    ck_assert_int_eq(s->status, 200);
    ck_assert_msg(strstr(s->raw.s, ": interval_ms=100\n"), "stream head: %.200s", s->raw.s);
    ck_assert_str_eq(s->ev[0].name, "state");
    ck_assert_str_eq(str(&s->ev[0], "state"), "queued");
    ck_assert_int_eq(s->ev[0].id, 1); // iteration 0, queued
    sub_free(s);

    static const char *const bad[] = {"abc", "-5", "1.5", "", "60001", "99999999999999999999"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        HcResp r;
        snprintf(path, sizeof path, "/v1/jobs/%s/events?interval_ms=%s", job, bad[i]);
        hc_call(&g_c, &r, "GET", path, NULL);
        ck_problem(&r, 400, "bad-request");
        ck_assert_msg(strstr(hc_str(&r, "detail"), "interval_ms"), "detail: %s", r.body);
        hc_free(&r);
    }
    HcResp r;
    hc_call(&g_c, &r, "GET", "/v1/jobs/0123456789abcdef0123456789abcdef/events", NULL);
    ck_problem(&r, 404, "not-found");
    hc_free(&r);
    // since= and after_step= on the metrics route: one or the other
    snprintf(path, sizeof path, "/v1/jobs/%s/metrics?since=1&after_step=2", job);
    hc_call(&g_c, &r, "GET", path, NULL);
    ck_problem(&r, 422, "validation");
    hc_free(&r);
    snprintf(path, sizeof path, "/v1/jobs/%s/metrics?since=x", job);
    hc_call(&g_c, &r, "GET", path, NULL);
    ck_problem(&r, 422, "validation");
    ck_assert_msg(strstr(hc_str(&r, "detail"), "since"), "detail: %s", r.body);
    hc_free(&r);
    server_down();
}
END_TEST

START_TEST(the_stream_limit_is_503_and_a_client_that_leaves_is_cleaned_up) {
    // no workers: the job stays queued and its streams wait (a poll a minute, heartbeats every
    // 15 s), so only the hang-up can end them soon
    server_up(0, 2);
    char cfg[1024], job[64];
    sine_config(cfg, sizeof cfg, 100);
    submit(cfg, job);
    Sub *s[2];
    pthread_t t[2];
    int joined[2] = {0, 0};
    for (int i = 0; i < 2; i++) {
        s[i] = sub_new(job, "?interval_ms=60000", -1, 0);
        pthread_create(&t[i], NULL, sub_run, s[i]);
        ck_assert(sub_wait(s[i], 1, &t[i], &joined[i]));
    }
    ck_assert_int_eq(open_streams(), 2);
    Sub *third = sub_new(job, "", -1, 0);
    sub_run(third);
    ck_assert_int_eq(third->status, 503);
    ck_assert_str_eq(third->retry_after, "5");
    ck_assert_msg(strstr(third->raw.s, "METASERVE_MAX_STREAMS"), "body: %s", third->raw.s);
    sub_free(third);

    // both clients hang up: the server notices while their streams are suspended
    for (int i = 0; i < 2; i++) {
        atomic_store(&s[i]->quit, 1);
        if (!joined[i]) pthread_join(t[i], NULL);
        ck_assert_int_eq(s[i]->rc, CURLE_ABORTED_BY_CALLBACK);
    }
    // 10 s: far below the 15 s heartbeat and the 60 s poll that would otherwise find them gone
    double t0 = now_s();
    int open = -1;
    while ((open = open_streams()) != 0 && now_s() - t0 < 10)
        sleep_ms(20);
    ck_assert_int_eq(open, 0);
    for (int i = 0; i < 2; i++)
        sub_free(s[i]);
    server_down();
}
END_TEST

START_TEST(a_cancelled_and_a_failed_job_end_with_done_and_the_problem) {
    server_up(1, 64);
    char job[64], path[128], body[2048];
    // a queued job behind a long one is cancelled
    char cfg[1024], busy[64];
    sine_config(cfg, sizeof cfg, 1000000);
    submit(cfg, busy);
    sine_config(cfg, sizeof cfg, 100);
    submit(cfg, job);
    Sub *s = sub_new(job, "?interval_ms=100", -1, 0);
    pthread_t t;
    int joined = 0;
    pthread_create(&t, NULL, sub_run, s);
    ck_assert(sub_wait(s, 1, &t, &joined));
    HcResp r;
    snprintf(path, sizeof path, "/v1/jobs/%s/cancel", job);
    ck_assert_int_eq(hc_call(&g_c, &r, "POST", path, NULL), 200);
    hc_free(&r);
    if (!joined) pthread_join(t, NULL);
    ck_assert_int_eq(s->rc, CURLE_OK);
    int n = atomic_load(&s->n_events);
    ck_assert_int_eq(n, 3); // queued, cancelled, done
    ck_assert_str_eq(str(&s->ev[1], "state"), "cancelled");
    ck_assert_str_eq(s->ev[2].name, "done");
    ck_assert(cJSON_IsNull(field(&s->ev[2], "model")));
    const cJSON *err = field(&s->ev[2], "error");
    ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(err, "type")->valuestring,
                     "https://metaserve.dev/problems/job-cancelled");
    sub_free(s);
    snprintf(path, sizeof path, "/v1/jobs/%s/cancel", busy);
    ck_assert_int_eq(hc_call(&g_c, &r, "POST", path, NULL), 200);
    hc_free(&r);

    // a job whose tasks are smaller than k_support + k_query fails on the worker
    snprintf(
        body, sizeof body,
        "{\"name\":\"tiny\",\"kind\":\"tasks\",\"tasks\":["
        "{\"x\":[[0],[1],[2]],\"y\":[[0],[1],[2]]},{\"x\":[[0],[1],[2]],\"y\":[[1],[2],[3]]}]}");
    ck_assert_int_eq(hc_call(&g_c, &r, "POST", "/v1/datasets", body), 201);
    char did[64];
    snprintf(did, sizeof did, "%s", hc_str(&r, "id"));
    hc_free(&r);
    snprintf(cfg, sizeof cfg,
             "{\"name\":\"lines\",\"architecture\":{\"sizes\":[1,8,1],\"head\":\"regression\"},"
             "\"iterations\":5,\"tasks\":{\"dataset\":\"%s\",\"k_support\":2,\"k_query\":2}}",
             did);
    submit(cfg, job);
    s = sub_new(job, "?interval_ms=100", -1, 0);
    sub_run(s);
    ck_assert_int_eq(s->rc, CURLE_OK);
    n = atomic_load(&s->n_events);
    ck_assert_int_ge(n, 2);
    const Ev *done = &s->ev[n - 1];
    ck_assert_str_eq(done->name, "done");
    ck_assert_str_eq(str(done, "state"), "failed");
    err = field(done, "error");
    ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(err, "type")->valuestring,
                     "https://metaserve.dev/problems/job-failed");
    snprintf(path, sizeof path, "/v1/jobs/%s", job);
    ck_assert_int_eq(hc_call(&g_c, &r, "GET", path, NULL), 200);
    ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(err, "detail")->valuestring,
                     hc_str(&r, "error"));
    hc_free(&r);
    sub_free(s);
    server_down();
}
END_TEST

START_TEST(a_quiet_stream_sends_heartbeat_comments) {
    // a queued job (no workers) read once a minute: only heartbeats (every 200 ms here) can
    // arrive after the first state event
    server_up_hb(0, 64, 200);
    char cfg[1024], job[64];
    sine_config(cfg, sizeof cfg, 100);
    submit(cfg, job);
    Sub *s = sub_new(job, "?interval_ms=60000", -1, 0);
    s->stop_after_hb = 3;
    s->timeout_s = 30;
    sub_run(s); // returns once three heartbeats have arrived (or after 30 s: a failure)
    ck_assert_int_eq(s->rc, CURLE_WRITE_ERROR);
    ck_assert_int_eq(atomic_load(&s->n_events), 1);
    const char *first = strstr(s->raw.s, "event: state"), *hb = strstr(s->raw.s, "\n: hb\n\n");
    ck_assert_msg(first && hb && hb > first, "stream: %s", s->raw.s);
    sub_free(s);
    server_down();
}
END_TEST

START_TEST(stopping_the_server_ends_open_streams_cleanly) {
    server_up(0, 64);
    char cfg[1024], job[64];
    sine_config(cfg, sizeof cfg, 100);
    submit(cfg, job);
    Sub *s = sub_new(job, "?interval_ms=60000", -1, 0);
    pthread_t t;
    int joined = 0;
    pthread_create(&t, NULL, sub_run, s);
    ck_assert(sub_wait(s, 1, &t, &joined));
    server_drain(g_srv);
    server_down();
    if (!joined) pthread_join(t, NULL);
    // the chunked stream was ended properly (not cut): CURLE_OK, the state event intact
    ck_assert_int_eq(s->rc, CURLE_OK);
    ck_assert_int_eq(s->status, 200);
    ck_assert_int_eq(atomic_load(&s->n_events), 1);
    ck_assert_str_eq(str(&s->ev[0], "state"), "queued");
    sub_free(s);
}
END_TEST

int main(void) {
    curl_global_init(CURL_GLOBAL_ALL);
    Suite *s = suite_create("events");
    TCase *tc = tcase_create("events");
    tcase_set_timeout(tc, 180);
    tcase_add_unchecked_fixture(tc, test_root_make, test_root_remove);
    tcase_add_test(tc, a_job_stream_has_its_events_in_order_and_a_reconnect_repeats_none);
    tcase_add_test(tc, the_interval_has_a_floor_and_bad_requests_are_refused);
    tcase_add_test(tc, the_stream_limit_is_503_and_a_client_that_leaves_is_cleaned_up);
    tcase_add_test(tc, a_cancelled_and_a_failed_job_end_with_done_and_the_problem);
    tcase_add_test(tc, a_quiet_stream_sends_heartbeat_comments);
    tcase_add_test(tc, stopping_the_server_ends_open_streams_cleanly);
    suite_add_tcase(s, tc);
    int failed = test_suite_run(s);
    curl_global_cleanup();
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
