/*
 * Prometheus metrics: request counts by route, method and status; latency histograms by route;
 * named counters kept by handlers; and, at scrape time, jobs by state (from the store), training
 * iterations and checkpoints (from the job pool) and model-cache hits and misses (from the
 * registry). One mutex guards the tables; an observation is a few adds under it.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <pthread.h>

#include "http.h"

#define MAX_SERIES   512
#define MAX_ROUTES   64
#define MAX_COUNTERS 32
static const double BUCKETS[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                 0.05,   0.1,     0.25,   0.5,   1,      2.5,   10};
#define N_BUCKETS (sizeof BUCKETS / sizeof BUCKETS[0])

typedef struct {
    const char *route, *method; // static strings (route names, MHD method strings copied)
    char method_buf[8];
    int status;
    int64_t count;
} Series;

typedef struct {
    const char *route;
    int64_t buckets[N_BUCKETS + 1]; // last: +Inf
    double sum;
    int64_t count;
} Hist;

typedef struct {
    char name[64];
    int64_t value;
} Counter;

struct Metrics {
    pthread_mutex_t mu;
    Series series[MAX_SERIES];
    int n_series;
    Hist hist[MAX_ROUTES];
    int n_hist;
    Counter counters[MAX_COUNTERS];
    int n_counters;
};

struct Metrics *metrics_create(void) {
    struct Metrics *m = calloc(1, sizeof *m);
    if (m) pthread_mutex_init(&m->mu, NULL);
    return m;
}

void metrics_destroy(struct Metrics *m) {
    if (!m) return;
    pthread_mutex_destroy(&m->mu);
    free(m);
}

void metrics_observe(struct Metrics *m, const char *route, const char *method, int status,
                     double seconds) {
    if (!m) return;
    // unknown methods are folded into one label value: label values stay bounded
    static const char *const known[] = {"GET", "POST", "PUT", "DELETE", "HEAD", "PATCH", NULL};
    const char *meth = "OTHER";
    for (int i = 0; known[i]; i++)
        if (strcmp(method, known[i]) == 0) meth = known[i];
    pthread_mutex_lock(&m->mu);
    Series *s = NULL;
    for (int i = 0; i < m->n_series && !s; i++)
        if (m->series[i].route == route && m->series[i].method == meth &&
            m->series[i].status == status)
            s = &m->series[i];
    if (!s && m->n_series < MAX_SERIES) {
        s = &m->series[m->n_series++];
        s->route = route, s->method = meth, s->status = status;
    }
    if (s) s->count++;
    Hist *h = NULL;
    for (int i = 0; i < m->n_hist && !h; i++)
        if (m->hist[i].route == route) h = &m->hist[i];
    if (!h && m->n_hist < MAX_ROUTES) {
        h = &m->hist[m->n_hist++];
        h->route = route;
    }
    if (h) {
        size_t b = 0;
        while (b < N_BUCKETS && seconds > BUCKETS[b])
            b++;
        h->buckets[b]++;
        h->sum += seconds;
        h->count++;
    }
    pthread_mutex_unlock(&m->mu);
}

void metrics_count(struct Metrics *m, const char *name, int64_t delta) {
    if (!m) return;
    pthread_mutex_lock(&m->mu);
    Counter *c = NULL;
    for (int i = 0; i < m->n_counters && !c; i++)
        if (strcmp(m->counters[i].name, name) == 0) c = &m->counters[i];
    if (!c && m->n_counters < MAX_COUNTERS) {
        c = &m->counters[m->n_counters++];
        snprintf(c->name, sizeof c->name, "%s", name);
    }
    if (c) c->value += delta;
    pthread_mutex_unlock(&m->mu);
}

/* ---- rendering ---- */

typedef struct {
    char *buf;
    size_t len, cap;
} Out;

static void put(Out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(Out *o, const char *fmt, ...) {
    if (!o->buf) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(o->buf + o->len, o->cap - o->len, fmt, ap);
        va_end(ap);
        if (n < 0) return;
        if (o->len + (size_t)n < o->cap) {
            o->len += (size_t)n;
            return;
        }
        char *b = realloc(o->buf, o->cap * 2 + (size_t)n);
        if (!b) {
            free(o->buf);
            o->buf = NULL;
            return;
        }
        o->buf = b;
        o->cap = o->cap * 2 + (size_t)n;
    }
}

char *metrics_render(App *app, Store *st, size_t *len) {
    struct Metrics *m = app->metrics;
    Out o = {malloc(16384), 0, 16384};
    put(&o, "# HELP metaserve_http_requests_total HTTP requests by route, method and status.\n"
            "# TYPE metaserve_http_requests_total counter\n");
    pthread_mutex_lock(&m->mu);
    for (int i = 0; i < m->n_series; i++)
        put(&o, "metaserve_http_requests_total{route=\"%s\",method=\"%s\",status=\"%d\"} %lld\n",
            m->series[i].route, m->series[i].method, m->series[i].status,
            (long long)m->series[i].count);
    put(&o, "# HELP metaserve_http_request_duration_seconds Request latency by route.\n"
            "# TYPE metaserve_http_request_duration_seconds histogram\n");
    for (int i = 0; i < m->n_hist; i++) {
        const Hist *h = &m->hist[i];
        int64_t cum = 0;
        for (size_t b = 0; b < N_BUCKETS; b++) {
            cum += h->buckets[b];
            put(&o, "metaserve_http_request_duration_seconds_bucket{route=\"%s\",le=\"%g\"} %lld\n",
                h->route, BUCKETS[b], (long long)cum);
        }
        cum += h->buckets[N_BUCKETS];
        put(&o,
            "metaserve_http_request_duration_seconds_bucket{route=\"%s\",le=\"+Inf\"} %lld\n"
            "metaserve_http_request_duration_seconds_sum{route=\"%s\"} %.9g\n"
            "metaserve_http_request_duration_seconds_count{route=\"%s\"} %lld\n",
            h->route, (long long)cum, h->route, h->sum, h->route, (long long)h->count);
    }
    for (int i = 0; i < m->n_counters; i++)
        put(&o, "# TYPE metaserve_%s_total counter\nmetaserve_%s_total %lld\n", m->counters[i].name,
            m->counters[i].name, (long long)m->counters[i].value);
    pthread_mutex_unlock(&m->mu);
    ServingStats rs;
    serving_stats(app->serving, &rs);
    put(&o,
        "# TYPE metaserve_model_cache_hits_total counter\nmetaserve_model_cache_hits_total %lld\n"
        "# TYPE metaserve_model_cache_misses_total counter\n"
        "metaserve_model_cache_misses_total %lld\n"
        "# TYPE metaserve_model_cache_size gauge\nmetaserve_model_cache_size %d\n",
        (long long)rs.hits, (long long)rs.misses, rs.size);
    JobPoolStats js = {0};
    if (app->jobs) {
        jobpool_stats(app->jobs, &js);
        put(&o,
            "# TYPE metaserve_training_iterations_total counter\n"
            "metaserve_training_iterations_total %lld\n"
            "# TYPE metaserve_checkpoints_total counter\nmetaserve_checkpoints_total %lld\n",
            (long long)js.iterations, (long long)js.checkpoints);
    }
    if (app->sweeper) {
        SweeperStats ss;
        sweeper_stats(app->sweeper, &ss);
        put(&o,
            "# TYPE metaserve_adaptations_expired_total counter\n"
            "metaserve_adaptations_expired_total %lld\n",
            (long long)ss.adaptations_expired);
    }
    if (app->jobs)
        put(&o, "# TYPE metaserve_jobs_running gauge\nmetaserve_jobs_running %d\n", js.running);
    int64_t counts[5];
    if (st && store_job_counts(st, counts, NULL) == MS_OK) {
        put(&o, "# HELP metaserve_jobs Jobs by state.\n# TYPE metaserve_jobs gauge\n");
        for (int s = 0; s < 5; s++)
            put(&o, "metaserve_jobs{state=\"%s\"} %lld\n", store_job_state_name((JobState)s),
                (long long)counts[s]);
    }
    put(&o, "# TYPE metaserve_ready gauge\nmetaserve_ready %d\n", !atomic_load(&app->draining));
    put(&o,
        "# HELP metaserve_event_streams Job event streams (GET /v1/jobs/{id}/events) open now.\n"
        "# TYPE metaserve_event_streams gauge\nmetaserve_event_streams %d\n",
        sse_hub_active(app->sse));
    *len = o.buf ? o.len : 0;
    return o.buf;
}
