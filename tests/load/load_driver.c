/*
 * load_driver: mixed traffic against a running `metaserve serve`, with exact per-request
 * accounting and the server's resident set sampled once a second (scripts/load-test.sh starts the
 * server and runs this program; the ctest test_load runs the script for ~20 s).
 *
 * Setup (one thread): uploads two regression task collections, meta-trains two small models
 * through POST /v1/jobs ("load-sine" on the sinusoid family, "load-lines" on a dataset) and waits
 * for them, then queues a long training job (10^8 iterations, hours at this size) that must stay
 * "running" for the whole measurement and is cancelled afterwards.
 *
 * Traffic: --clients threads, each with one libcurl easy handle (one keep-alive connection),
 * pick a request kind by weight until --seconds have passed:
 *   adapt 40      POST /v1/models/load-sine/adapt, a random sinusoid's 10-point support set, ttl_s
 *   predict 40    half on one of the thread's own adaptations that is younger than half its TTL
 *                 (so an expired id is never used), 30% on the meta-parameters, 20% inline
 *                 adapt-and-predict
 *   list 10       GET /v1/models, /v1/jobs, /v1/datasets with page_size=1, following up to 3
 *                 next_page_tokens (every page is a request)
 *   job 5         GET /v1/jobs/{long} (must say "running") or /v1/jobs/{long}/metrics
 *   health 5      GET /livez, /readyz, /metrics
 * Every reply is checked: its status (201 for adapt, 200 otherwise) and the field the kind needs
 * (an adaptation id, "y", "next_page_token", state "running"). Nothing else is expected: in this
 * workload any 4xx is a bug of the server or of this driver, so it fails the run like a 5xx.
 *
 * Report: one JSON line on stdout (case "load"), a human summary on stderr. Latencies are
 * reported, never asserted. Exit 0 when every request got its expected reply, no connection
 * failed, the long job ran throughout, an expired adaptation answered 404 (when the run outlived
 * a TTL) and RSS growth from the end of the warm-up to the end stayed within --rss-bound-mib;
 * 1 otherwise; 2 on a usage or setup problem.
 */
#define _GNU_SOURCE
#include <cJSON.h>
#include <curl/curl.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ---- options ---- */

typedef struct {
    const char *url;      // base URL, e.g. http://127.0.0.1:8080
    int pid;              // server process (RSS from /proc/<pid>/status)
    double seconds;       // traffic duration
    int clients;          // client threads = keep-alive connections
    double warmup;        // seconds of traffic before the "warm" RSS sample
    int adapt_ttl;        // ttl_s of every adaptation
    double rss_bound_mib; // largest allowed RSS growth, warm -> end; 0: not checked
    unsigned seed;        // of the request mix
} Opts;

static Opts O = {
    .seconds = 300, .clients = 16, .warmup = 10, .adapt_ttl = 60, .rss_bound_mib = 24, .seed = 1};

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + t.tv_nsec * 1e-9;
}

/* ---- HTTP over one keep-alive handle ---- */

typedef struct {
    char *s;
    size_t len, cap;
} Buf;

static int buf_reserve(Buf *b, size_t more) {
    if (b->len + more + 1 <= b->cap) return 1;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + more + 1)
        cap *= 2;
    char *s = realloc(b->s, cap);
    if (!s) return 0;
    b->s = s, b->cap = cap;
    return 1;
}

static void buf_printf(Buf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || !buf_reserve(b, (size_t)n)) abort(); // the driver's own bodies are small
    va_start(ap, fmt);
    vsnprintf(b->s + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

static size_t on_body(char *p, size_t sz, size_t n, void *ud) {
    Buf *b = ud;
    if (!buf_reserve(b, sz * n)) return 0;
    memcpy(b->s + b->len, p, sz * n);
    b->len += sz * n;
    b->s[b->len] = '\0';
    return sz * n;
}

typedef struct {
    CURL *h;
    struct curl_slist *hdr;
    Buf resp;
    char err[CURL_ERROR_SIZE];
    long new_conns; // connections this handle opened
} Http;

static void http_init(Http *c) {
    memset(c, 0, sizeof *c);
    c->h = curl_easy_init();
    if (!c->h) abort();
    c->hdr = curl_slist_append(NULL, "Content-Type: application/json");
    c->hdr = curl_slist_append(c->hdr, "Expect:"); // no 100-continue round trip on POST
    curl_easy_setopt(c->h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c->h, CURLOPT_WRITEDATA, &c->resp);
    curl_easy_setopt(c->h, CURLOPT_ERRORBUFFER, c->err);
    curl_easy_setopt(c->h, CURLOPT_NOSIGNAL, 1L);
    // a reply slower than this counts as a connection error (the slowest request here, an
    // adapt-and-predict of 10 points, takes milliseconds)
    curl_easy_setopt(c->h, CURLOPT_TIMEOUT, 60L);
    curl_easy_setopt(c->h, CURLOPT_CONNECTTIMEOUT, 10L);
}

static void http_free(Http *c) {
    curl_slist_free_all(c->hdr);
    curl_easy_cleanup(c->h);
    free(c->resp.s);
}

// One request; returns the HTTP status, or -1 on a transport failure (message in c->err).
// The reply body is in c->resp.s (NUL-terminated, "" when empty).
static long http_call(Http *c, const char *method, const char *path, const char *body) {
    char url[2048];
    snprintf(url, sizeof url, "%s%s", O.url, path);
    c->resp.len = 0;
    if (!buf_reserve(&c->resp, 0)) abort();
    c->resp.s[0] = '\0';
    c->err[0] = '\0';
    curl_easy_setopt(c->h, CURLOPT_URL, url);
    curl_easy_setopt(c->h, CURLOPT_CUSTOMREQUEST, method);
    if (body) {
        curl_easy_setopt(c->h, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c->h, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
        curl_easy_setopt(c->h, CURLOPT_HTTPHEADER, c->hdr);
    } else {
        curl_easy_setopt(c->h, CURLOPT_HTTPGET, 1L);
        curl_easy_setopt(c->h, CURLOPT_CUSTOMREQUEST, method);
    }
    CURLcode rc = curl_easy_perform(c->h);
    long conns = 0;
    curl_easy_getinfo(c->h, CURLINFO_NUM_CONNECTS, &conns);
    c->new_conns += conns;
    if (rc != CURLE_OK) {
        if (!c->err[0]) snprintf(c->err, sizeof c->err, "%s", curl_easy_strerror(rc));
        return -1;
    }
    long status = 0;
    curl_easy_getinfo(c->h, CURLINFO_RESPONSE_CODE, &status);
    return status;
}

/* ---- random tasks ---- */

static double rnd(unsigned *s) {
    return rand_r(s) / ((double)RAND_MAX + 1.0);
}

// A sinusoid y = A sin(x - phi) (A in [0.1, 5], phi in [0, pi]) as the body fragment
// {"x":[[..]],"y":[[..]]} of n points in [-5, 5].
static void put_sine(Buf *b, unsigned *seed, int n) {
    double a = 0.1 + 4.9 * rnd(seed), ph = M_PI * rnd(seed), x[64];
    buf_printf(b, "{\"x\":[");
    for (int i = 0; i < n; i++) {
        x[i] = -5 + 10 * rnd(seed);
        buf_printf(b, "%s[%.4f]", i ? "," : "", x[i]);
    }
    buf_printf(b, "],\"y\":[");
    for (int i = 0; i < n; i++)
        buf_printf(b, "%s[%.4f]", i ? "," : "", a * sin(x[i] - ph));
    buf_printf(b, "]}");
}

static void put_rows(Buf *b, unsigned *seed, int n) {
    buf_printf(b, "[");
    for (int i = 0; i < n; i++)
        buf_printf(b, "%s[%.4f]", i ? "," : "", -5 + 10 * rnd(seed));
    buf_printf(b, "]");
}

/* ---- accounting ---- */

enum { K_ADAPT, K_PREDICT, K_LIST, K_JOB, K_HEALTH, K_N };
static const char *const KIND_NAME[K_N] = {"adapt", "predict", "list", "job", "health"};
static const int KIND_WEIGHT[K_N] = {40, 40, 10, 5, 5};

typedef struct {
    uint32_t *us; // latency of every request, microseconds
    size_t n, cap;
    long s2xx, s4xx, s5xx, other, conn_err, bad_body;
} KindStats;

static void record(KindStats *k, double seconds) {
    if (k->n == k->cap) {
        k->cap = k->cap ? 2 * k->cap : 4096;
        k->us = realloc(k->us, k->cap * sizeof *k->us);
        if (!k->us) abort();
    }
    double us = seconds * 1e6;
    k->us[k->n++] = us > 4e9 ? 4000000000u : (uint32_t)us;
}

#define MAX_SAMPLES 10
static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static int g_samples; // failure samples printed so far

static void failure_sample(const char *what, const char *method, const char *path, long status,
                           const Http *c) {
    pthread_mutex_lock(&g_mu);
    if (g_samples++ < MAX_SAMPLES)
        fprintf(stderr, "load: %s: %s %s -> %ld %.300s\n", what, method, path, status,
                status < 0 ? c->err : c->resp.s);
    pthread_mutex_unlock(&g_mu);
}

/* ---- client threads ---- */

#define RING 64
typedef struct {
    char id[64];
    double at; // monotonic time the adapt request was sent (so age is an upper bound)
} Adapted;

typedef struct {
    int index;
    double deadline;
    const char *long_job;
    Http http;
    KindStats k[K_N];
    unsigned seed;
    Adapted ring[RING];
    int ring_n, ring_next;
    long iteration_last; // of the long job, from the last job GET
    char first_adapt[64];
    double first_adapt_at;
} Client;

// One timed request of kind; checks the status is want and check(body) holds. Returns the status.
static long timed(Client *cl, int kind, const char *method, const char *path, const char *body,
                  long want, int (*check)(Client *, const char *)) {
    double t0 = now_s();
    long st = http_call(&cl->http, method, path, body);
    double dt = now_s() - t0;
    KindStats *k = &cl->k[kind];
    record(k, dt);
    if (st < 0) {
        k->conn_err++;
        failure_sample("connection error", method, path, st, &cl->http);
    } else if (st >= 200 && st < 300) {
        k->s2xx++;
    } else if (st >= 500) {
        k->s5xx++;
    } else if (st >= 400) {
        k->s4xx++;
    } else {
        k->other++;
    }
    if (st >= 0 && st != want) failure_sample("unexpected status", method, path, st, &cl->http);
    if (st == want && check && !check(cl, cl->http.resp.s)) {
        k->bad_body++;
        failure_sample("unexpected body", method, path, st, &cl->http);
    }
    return st;
}

static int has(const char *body, const char *needle) {
    return strstr(body, needle) != NULL;
}
static int check_predict(Client *cl, const char *b) {
    (void)cl;
    return has(b, "\"y\":[[");
}
static int check_list(Client *cl, const char *b) {
    (void)cl;
    return has(b, "\"next_page_token\":");
}
static int check_health(Client *cl, const char *b) {
    (void)cl;
    return b[0] != '\0';
}
static int check_metrics(Client *cl, const char *b) {
    (void)cl;
    return has(b, "\"points\":[");
}
static int check_job(Client *cl, const char *b) {
    cJSON *j = cJSON_Parse(b);
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(j, "state");
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(j, "iteration");
    int ok = cJSON_IsString(s) && strcmp(s->valuestring, "running") == 0 && cJSON_IsNumber(it);
    if (ok) cl->iteration_last = (long)it->valuedouble;
    cJSON_Delete(j);
    return ok;
}
static int check_adapt(Client *cl, const char *b) {
    cJSON *j = cJSON_Parse(b);
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(j, "id");
    int ok = cJSON_IsString(id) && strlen(id->valuestring) < sizeof cl->ring[0].id;
    if (ok) {
        Adapted *a = &cl->ring[cl->ring_next];
        snprintf(a->id, sizeof a->id, "%s", id->valuestring);
        cl->ring_next = (cl->ring_next + 1) % RING;
        if (cl->ring_n < RING) cl->ring_n++;
        if (!cl->first_adapt[0]) snprintf(cl->first_adapt, sizeof cl->first_adapt, "%s", a->id);
    }
    cJSON_Delete(j);
    return ok;
}

static void do_adapt(Client *cl) {
    Buf b = {0};
    buf_printf(&b, "{\"support\":");
    put_sine(&b, &cl->seed, 10);
    buf_printf(&b, ",\"steps\":5,\"ttl_s\":%d}", O.adapt_ttl);
    // the slot check_adapt fills gets the send time
    double t0 = now_s();
    int slot = cl->ring_next;
    long st = timed(cl, K_ADAPT, "POST", "/v1/models/load-sine/adapt", b.s, 201, check_adapt);
    if (st == 201 && cl->ring_next != slot) {
        cl->ring[slot].at = t0;
        if (strcmp(cl->first_adapt, cl->ring[slot].id) == 0) cl->first_adapt_at = t0;
    }
    free(b.s);
}

// An adaptation of this thread sent less than half a TTL ago, or NULL.
static const char *young_adaptation(Client *cl) {
    double now = now_s();
    for (int tries = 0; tries < 4 && cl->ring_n; tries++) {
        const Adapted *a = &cl->ring[rand_r(&cl->seed) % (unsigned)cl->ring_n];
        if (now - a->at < O.adapt_ttl / 2.0) return a->id;
    }
    return NULL;
}

static void do_predict(Client *cl) {
    Buf b = {0};
    char path[256];
    double u = rnd(&cl->seed);
    const char *id = u < 0.5 ? young_adaptation(cl) : NULL;
    buf_printf(&b, "{\"x\":");
    put_rows(&b, &cl->seed, 5);
    if (id) {
        snprintf(path, sizeof path, "/v1/adaptations/%s/predict", id);
    } else {
        // lines@1 is 1-wide too: a fifth of the meta predictions go to the other model
        snprintf(path, sizeof path, "/v1/models/%s/predict",
                 rnd(&cl->seed) < 0.2 ? "load-lines" : "load-sine");
        if (u >= 0.8) {
            buf_printf(&b, ",\"support\":");
            put_sine(&b, &cl->seed, 10);
            buf_printf(&b, ",\"steps\":3");
            snprintf(path, sizeof path, "/v1/models/load-sine/predict");
        }
    }
    buf_printf(&b, "}");
    timed(cl, K_PREDICT, "POST", path, b.s, 200, check_predict);
    free(b.s);
}

static void do_list(Client *cl) {
    static const char *const what[] = {"/v1/models", "/v1/jobs", "/v1/datasets"};
    const char *base = what[rand_r(&cl->seed) % 3];
    char path[1024];
    snprintf(path, sizeof path, "%s?page_size=1", base);
    for (int page = 0; page < 4; page++) {
        if (timed(cl, K_LIST, "GET", path, NULL, 200, check_list) != 200) return;
        cJSON *j = cJSON_Parse(cl->http.resp.s);
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(j, "next_page_token");
        int more = cJSON_IsString(t);
        if (more) {
            char *esc = curl_easy_escape(cl->http.h, t->valuestring, 0);
            snprintf(path, sizeof path, "%s?page_size=1&page_token=%s", base, esc ? esc : "");
            curl_free(esc);
        }
        cJSON_Delete(j);
        if (!more) return;
    }
}

static void do_job(Client *cl) {
    char path[256];
    if (rand_r(&cl->seed) % 4) {
        snprintf(path, sizeof path, "/v1/jobs/%s", cl->long_job);
        timed(cl, K_JOB, "GET", path, NULL, 200, check_job);
    } else {
        snprintf(path, sizeof path, "/v1/jobs/%s/metrics", cl->long_job);
        timed(cl, K_JOB, "GET", path, NULL, 200, check_metrics);
    }
}

static void do_health(Client *cl) {
    static const char *const what[] = {"/livez", "/readyz", "/metrics"};
    timed(cl, K_HEALTH, "GET", what[rand_r(&cl->seed) % 3], NULL, 200, check_health);
}

static void *client_main(void *arg) {
    Client *cl = arg;
    int total = 0;
    for (int k = 0; k < K_N; k++)
        total += KIND_WEIGHT[k];
    while (now_s() < cl->deadline) {
        int pick = rand_r(&cl->seed) % total, k = 0;
        while (pick >= KIND_WEIGHT[k])
            pick -= KIND_WEIGHT[k++];
        switch (k) {
        case K_ADAPT:
            do_adapt(cl);
            break;
        case K_PREDICT:
            do_predict(cl);
            break;
        case K_LIST:
            do_list(cl);
            break;
        case K_JOB:
            do_job(cl);
            break;
        default:
            do_health(cl);
            break;
        }
    }
    return NULL;
}

/* ---- RSS sampling ---- */

#define MAX_RSS 100000
typedef struct {
    double t0;
    atomic_int stop;
    double t[MAX_RSS];
    long kb[MAX_RSS];
    int n;
    long (*progress)(void); // requests so far, for the progress line
} RssLog;

// VmRSS of pid in KiB, or -1.
static long rss_kb(int pid) {
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    long kb = -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld kB", &kb) == 1) break;
    fclose(f);
    return kb;
}

static void *rss_main(void *arg) {
    RssLog *r = arg;
    double next = r->t0;
    while (!atomic_load(&r->stop) && r->n < MAX_RSS) {
        double now = now_s();
        if (now < next) {
            usleep((useconds_t)((next - now) * 1e6));
            continue;
        }
        r->t[r->n] = now - r->t0;
        r->kb[r->n] = rss_kb(O.pid);
        if (r->n % 30 == 0)
            fprintf(stderr, "load: t=%4.0fs rss=%.1f MiB\n", r->t[r->n], r->kb[r->n] / 1024.0);
        r->n++;
        next += 1.0;
    }
    return NULL;
}

/* ---- setup ---- */

static void die_setup(const char *what, long st, const Http *c) {
    fprintf(stderr, "load: setup: %s -> %ld %.500s\n", what, st, st < 0 ? c->err : c->resp.s);
    exit(2);
}

// The string field key of the reply, copied to out, or exits.
static void reply_string(Http *c, const char *key, char *out, size_t n) {
    cJSON *j = cJSON_Parse(c->resp.s);
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    if (!cJSON_IsString(v) || strlen(v->valuestring) >= n) die_setup(key, 0, c);
    snprintf(out, n, "%s", v->valuestring);
    cJSON_Delete(j);
}

// Uploads a collection of 20 lines y = a x + b (12 points each); its id goes to id.
static void upload_dataset(Http *c, const char *name, unsigned seed, char *id, size_t n) {
    Buf b = {0};
    buf_printf(&b, "{\"name\":\"%s\",\"kind\":\"tasks\",\"tasks\":[", name);
    for (int t = 0; t < 20; t++) {
        double a = -2 + 4 * rnd(&seed), off = -1 + 2 * rnd(&seed), x[12];
        buf_printf(&b, "%s{\"x\":[", t ? "," : "");
        for (int i = 0; i < 12; i++) {
            x[i] = -3 + 6 * rnd(&seed);
            buf_printf(&b, "%s[%.4f]", i ? "," : "", x[i]);
        }
        buf_printf(&b, "],\"y\":[");
        for (int i = 0; i < 12; i++)
            buf_printf(&b, "%s[%.4f]", i ? "," : "", a * x[i] + off);
        buf_printf(&b, "]}");
    }
    buf_printf(&b, "]}");
    long st = http_call(c, "POST", "/v1/datasets", b.s);
    free(b.s);
    if (st != 201) die_setup("POST /v1/datasets", st, c);
    reply_string(c, "id", id, n);
}

static void job_body(Buf *b, const char *name, long iterations, const char *tasks) {
    buf_printf(b,
               "{\"name\":\"%s\",\"architecture\":{\"sizes\":[1,40,40,1],\"activation\":\"relu\","
               "\"head\":\"regression\"},\"algorithm\":\"maml\",\"inner\":{\"lr\":0.01,"
               "\"steps\":1},\"outer\":{\"optimizer\":\"adam\",\"lr\":0.001},\"meta_batch\":10,"
               "\"iterations\":%ld,\"seed\":1,\"tasks\":%s}",
               name, iterations, tasks);
}

static void post_job(Http *c, const char *name, long iterations, const char *tasks, char *id,
                     size_t n) {
    Buf b = {0};
    job_body(&b, name, iterations, tasks);
    long st = http_call(c, "POST", "/v1/jobs", b.s);
    free(b.s);
    if (st != 202) die_setup("POST /v1/jobs", st, c);
    reply_string(c, "id", id, n);
}

// Polls the job until it reaches state want (or a final state), for at most limit seconds.
static void wait_job(Http *c, const char *id, const char *want, double limit) {
    char path[256], state[32] = "";
    snprintf(path, sizeof path, "/v1/jobs/%s", id);
    for (double t0 = now_s(); now_s() - t0 < limit; usleep(200000)) {
        long st = http_call(c, "GET", path, NULL);
        if (st != 200) die_setup(path, st, c);
        reply_string(c, "state", state, sizeof state);
        if (strcmp(state, want) == 0) return;
        if (!strcmp(state, "succeeded") || !strcmp(state, "failed") || !strcmp(state, "cancelled"))
            break;
    }
    fprintf(stderr, "load: setup: job %s is '%s', waited for '%s'\n", id, state, want);
    exit(2);
}

/* ---- report ---- */

static int cmp_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

// Nearest-rank percentile of sorted v[0..n), in milliseconds.
static double pct_ms(const uint32_t *v, size_t n, double p) {
    if (!n) return 0;
    size_t i = (size_t)ceil(p / 100.0 * (double)n);
    return v[i ? i - 1 : 0] / 1000.0;
}

static void put_kind(Buf *j, const char *name, KindStats *k, double secs, int comma) {
    qsort(k->us, k->n, sizeof *k->us, cmp_u32);
    buf_printf(j,
               "%s\"%s\":{\"count\":%zu,\"rps\":%.1f,\"p50_ms\":%.3f,\"p99_ms\":%.3f,"
               "\"max_ms\":%.3f,\"status_2xx\":%ld,\"status_4xx\":%ld,\"status_5xx\":%ld,"
               "\"conn_errors\":%ld,\"bad_body\":%ld}",
               comma ? "," : "", name, k->n, k->n / secs, pct_ms(k->us, k->n, 50),
               pct_ms(k->us, k->n, 99), k->n ? k->us[k->n - 1] / 1000.0 : 0.0, k->s2xx, k->s4xx,
               k->s5xx, k->conn_err, k->bad_body);
    fprintf(stderr,
            "  %-8s %8zu req %8.1f/s  p50 %8.3f ms  p99 %8.3f ms  max %9.3f ms  "
            "4xx %ld 5xx %ld conn %ld body %ld\n",
            name, k->n, k->n / secs, pct_ms(k->us, k->n, 50), pct_ms(k->us, k->n, 99),
            k->n ? k->us[k->n - 1] / 1000.0 : 0.0, k->s4xx, k->s5xx, k->conn_err, k->bad_body);
}

// The value of the Prometheus sample name in text, or -1.
static double prom_value(const char *text, const char *name) {
    size_t n = strlen(name);
    for (const char *p = text; (p = strstr(p, name)); p += n)
        if ((p == text || p[-1] == '\n') && p[n] == ' ') return atof(p + n + 1);
    return -1;
}

static void usage(void) {
    fprintf(stderr,
            "usage: load_driver --url URL --pid PID [--seconds S (300)] [--clients N (16)]\n"
            "       [--warmup S (10)] [--adapt-ttl S (60)] [--rss-bound-mib M (24)] [--seed N]\n");
    exit(2);
}

static void parse_args(int argc, char **argv) {
    for (int i = 1; i < argc; i += 2) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) usage();
        if (!strcmp(a, "--url"))
            O.url = v;
        else if (!strcmp(a, "--pid"))
            O.pid = atoi(v);
        else if (!strcmp(a, "--seconds"))
            O.seconds = atof(v);
        else if (!strcmp(a, "--clients"))
            O.clients = atoi(v);
        else if (!strcmp(a, "--warmup"))
            O.warmup = atof(v);
        else if (!strcmp(a, "--adapt-ttl"))
            O.adapt_ttl = atoi(v);
        else if (!strcmp(a, "--rss-bound-mib"))
            O.rss_bound_mib = atof(v);
        else if (!strcmp(a, "--seed"))
            O.seed = (unsigned)atol(v);
        else
            usage();
    }
    if (!O.url || O.pid <= 0 || !(O.seconds > 0) || O.clients < 1 || O.clients > 1024 ||
        !(O.warmup >= 0) || O.warmup >= O.seconds || O.adapt_ttl < 2 || !(O.rss_bound_mib >= 0))
        usage();
}

int main(int argc, char **argv) {
    parse_args(argc, argv);
    curl_global_init(CURL_GLOBAL_ALL);
    Http setup;
    http_init(&setup);

    /* setup: datasets, two short jobs, the long job */
    char ds1[64], ds2[64], j1[64], j2[64], jl[64], tasks[256];
    upload_dataset(&setup, "load-lines-a", 11, ds1, sizeof ds1);
    upload_dataset(&setup, "load-lines-b", 12, ds2, sizeof ds2);
    post_job(&setup, "load-sine", 1000, "{\"family\":\"sinusoid\",\"k_support\":10,\"k_query\":10}",
             j1, sizeof j1);
    snprintf(tasks, sizeof tasks, "{\"dataset\":\"%s\",\"k_support\":5,\"k_query\":5}", ds1);
    post_job(&setup, "load-lines", 300, tasks, j2, sizeof j2);
    wait_job(&setup, j1, "succeeded", 600);
    wait_job(&setup, j2, "succeeded", 600);
    snprintf(tasks, sizeof tasks, "{\"dataset\":\"%s\",\"k_support\":5,\"k_query\":5}", ds2);
    post_job(&setup, "load-long", 100000000L, tasks, jl, sizeof jl);
    wait_job(&setup, jl, "running", 120);
    fprintf(stderr, "load: setup done (models load-sine, load-lines; long job %s running)\n", jl);

    /* traffic */
    static RssLog rss;
    long rss_setup = rss_kb(O.pid);
    Client *cl = calloc((size_t)O.clients, sizeof *cl);
    pthread_t *th = calloc((size_t)O.clients, sizeof *th), rth;
    if (!cl || !th) return 2;
    double t0 = now_s();
    rss.t0 = t0;
    pthread_create(&rth, NULL, rss_main, &rss);
    for (int i = 0; i < O.clients; i++) {
        cl[i].index = i;
        cl[i].deadline = t0 + O.seconds;
        cl[i].long_job = jl;
        cl[i].seed = O.seed * 7919u + (unsigned)i * 104729u + 1;
        cl[i].iteration_last = -1;
        http_init(&cl[i].http);
        pthread_create(&th[i], NULL, client_main, &cl[i]);
    }
    for (int i = 0; i < O.clients; i++)
        pthread_join(th[i], NULL);
    double secs = now_s() - t0;
    atomic_store(&rss.stop, 1);
    pthread_join(rth, NULL);
    long rss_end = rss_kb(O.pid);

    /* after the traffic: the long job, the expiry of the oldest adaptation, the server's count */
    long iter_end = -1;
    char state[32] = "?", path[256];
    snprintf(path, sizeof path, "/v1/jobs/%s", jl);
    if (http_call(&setup, "GET", path, NULL) == 200) {
        reply_string(&setup, "state", state, sizeof state);
        cJSON *j = cJSON_Parse(setup.resp.s);
        const cJSON *it = cJSON_GetObjectItemCaseSensitive(j, "iteration");
        if (cJSON_IsNumber(it)) iter_end = (long)it->valuedouble;
        cJSON_Delete(j);
    }
    int job_ok = strcmp(state, "running") == 0;
    snprintf(path, sizeof path, "/v1/jobs/%s/cancel", jl);
    long cancel_st = http_call(&setup, "POST", path, NULL);
    const char *expiry = "skipped";
    const Client *first = NULL;
    for (int i = 0; i < O.clients; i++)
        if (cl[i].first_adapt[0] && (!first || cl[i].first_adapt_at < first->first_adapt_at))
            first = &cl[i];
    // one second of slack for the server's clock against ours
    if (first && now_s() > first->first_adapt_at + O.adapt_ttl + 1) {
        snprintf(path, sizeof path, "/v1/adaptations/%s", first->first_adapt);
        long st = http_call(&setup, "GET", path, NULL);
        expiry = st == 404 ? "passed" : "failed";
        if (st != 404) fprintf(stderr, "load: expired adaptation: GET %s -> %ld\n", path, st);
    }
    double expired = -1;
    if (http_call(&setup, "GET", "/metrics", NULL) == 200)
        expired = prom_value(setup.resp.s, "metaserve_adaptations_expired_total");

    /* merge */
    KindStats all[K_N] = {{0}}, tot = {0};
    long new_conns = 0;
    for (int i = 0; i < O.clients; i++) {
        new_conns += cl[i].http.new_conns;
        for (int k = 0; k < K_N; k++) {
            KindStats *a = &all[k], *c = &cl[i].k[k];
            for (size_t q = 0; q < c->n; q++) {
                record(a, 0);
                a->us[a->n - 1] = c->us[q];
                record(&tot, 0);
                tot.us[tot.n - 1] = c->us[q];
            }
            a->s2xx += c->s2xx, a->s4xx += c->s4xx, a->s5xx += c->s5xx, a->other += c->other;
            a->conn_err += c->conn_err, a->bad_body += c->bad_body;
        }
    }
    for (int k = 0; k < K_N; k++) {
        tot.s2xx += all[k].s2xx, tot.s4xx += all[k].s4xx, tot.s5xx += all[k].s5xx;
        tot.other += all[k].other, tot.conn_err += all[k].conn_err;
        tot.bad_body += all[k].bad_body;
    }

    /* RSS: warm = first sample at or after the warm-up */
    long warm = -1, max = -1;
    for (int i = 0; i < rss.n; i++) {
        if (warm < 0 && rss.t[i] >= O.warmup) warm = rss.kb[i];
        if (rss.kb[i] > max) max = rss.kb[i];
    }
    if (rss_end > max) max = rss_end;
    double growth_mib = warm > 0 && rss_end > 0 ? (rss_end - warm) / 1024.0 : NAN;
    double growth_pct = warm > 0 && rss_end > 0 ? 100.0 * (rss_end - warm) / warm : NAN;
    // a bound of 0 is "not checked" (sanitizer builds, whose allocators hold freed memory)
    int rss_ok = O.rss_bound_mib == 0 || (isfinite(growth_mib) && growth_mib <= O.rss_bound_mib);
    long non2xx = tot.s4xx + tot.s5xx + tot.other;
    int pass = tot.s5xx == 0 && tot.conn_err == 0 && non2xx == 0 && tot.bad_body == 0 && rss_ok &&
               job_ok && strcmp(expiry, "failed") != 0;

    fprintf(stderr, "load: %.1f s, %d clients, %zu requests (%.1f/s), %ld new connections\n", secs,
            O.clients, tot.n, tot.n / secs, new_conns);
    Buf j = {0};
    buf_printf(&j,
               "{\"case\":\"load\",\"seconds\":%.1f,\"clients\":%d,\"requests\":%zu,"
               "\"rps\":%.1f,\"new_connections\":%ld,\"kinds\":{",
               secs, O.clients, tot.n, tot.n / secs, new_conns);
    for (int k = 0; k < K_N; k++)
        put_kind(&j, KIND_NAME[k], &all[k], secs, k > 0);
    buf_printf(&j, "},");
    put_kind(&j, "overall", &tot, secs, 0);
    buf_printf(&j, ",\"non_2xx\":%ld,\"status_5xx\":%ld,\"conn_errors\":%ld,\"bad_body\":%ld,",
               non2xx, tot.s5xx, tot.conn_err, tot.bad_body);
    buf_printf(&j,
               "\"rss_mib\":{\"setup\":%.1f,\"warm\":%.1f,\"end\":%.1f,\"max\":%.1f,"
               "\"growth\":%.2f,\"growth_pct\":%.2f,\"bound\":%.1f,\"warmup_s\":%.0f,"
               "\"samples\":%d},",
               rss_setup / 1024.0, warm / 1024.0, rss_end / 1024.0, max / 1024.0, growth_mib,
               growth_pct, O.rss_bound_mib, O.warmup, rss.n);
    buf_printf(&j,
               "\"train_job\":{\"state_at_end\":\"%s\",\"iteration_at_end\":%ld,"
               "\"cancel_status\":%ld},\"adapt_ttl_s\":%d,\"expired_adaptation_404\":\"%s\","
               "\"adaptations_expired_total\":%.0f,\"pass\":%s}",
               state, iter_end, cancel_st, O.adapt_ttl, expiry, expired, pass ? "true" : "false");
    printf("%s\n", j.s);
    fprintf(stderr,
            "load: RSS setup %.1f MiB, warm (t=%.0fs) %.1f MiB, end %.1f MiB, max %.1f MiB, growth "
            "%+.2f MiB (%+.2f%%), bound %.1f MiB\n",
            rss_setup / 1024.0, O.warmup, warm / 1024.0, rss_end / 1024.0, max / 1024.0, growth_mib,
            growth_pct, O.rss_bound_mib);
    fprintf(stderr,
            "load: long job %s at the end (iteration %ld); expired adaptation -> 404: %s; server "
            "expired %.0f adaptations\n",
            state, iter_end, expiry, expired);
    fprintf(stderr, "load: %s (non-2xx %ld, 5xx %ld, connection errors %ld, bad bodies %ld)\n",
            pass ? "PASS" : "FAIL", non2xx, tot.s5xx, tot.conn_err, tot.bad_body);

    free(j.s);
    for (int i = 0; i < O.clients; i++) {
        http_free(&cl[i].http);
        for (int k = 0; k < K_N; k++)
            free(cl[i].k[k].us);
    }
    for (int k = 0; k < K_N; k++)
        free(all[k].us);
    free(tot.us);
    free(cl);
    free(th);
    http_free(&setup);
    curl_global_cleanup();
    return pass ? 0 : 1;
}
