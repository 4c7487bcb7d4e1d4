/*
 * The machinery of the tests that kill the real `metaserve serve` binary and check that what it
 * acknowledged survived: tests/crash (SIGKILL of the process) and tests/powerloss (SIGKILL of a
 * build whose SQLite VFS loses every unsynced write, i.e. a power cut). Each of them includes
 * this header once, from the one .c file of its executable, and supplies main().
 *
 * What is here: a seeded schedule (splitmix64), failure counting (failf) and giving up (fatal);
 * server processes (start, wait for /readyz, SIGTERM); the record of what was sent and what was
 * acknowledged (uploads, jobs, aliases; under g_mu); the traffic of one cycle (rate-limited
 * dataset uploads, job submits, alias moves, a poller of job states); where a kill lands (the
 * server frozen with SIGSTOP and inspected: requests in flight, running jobs, the WAL write
 * lock), kills aimed at a write; the checks after a restart (over HTTP and through the store on
 * the live file); and the checks at the end (every job's weights against an uninterrupted
 * reference run, integrity_check and foreign_key_check).
 *
 * One kill cycle (kill_cycle): start the server, maybe kill it while it starts; else wait for
 * /readyz, run the caller's checks, start the traffic (and the caller's own traffic thread), wait
 * a random delay, maybe aim at a checkpoint or a model write, freeze, look, SIGKILL, and join.
 *
 * Everything is static: the state is per executable. Deadlines only turn a hang into a failure;
 * nothing asserts on durations.
 */
#ifndef METASERVE_TESTS_KILLTEST_H
#define METASERVE_TESTS_KILLTEST_H

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "httpc.h"
#include "proc.h"
#include "metaserve/store/store.h"
#include "metaserve/tasks/dataset.h"

#define UPLOADS_PER_CYCLE 3
#define LONG_EVERY        8    // a new long job every this many cycles
#define DEADLINE_S        60.0 // for a start or a request: fail instead of hanging
#define FINISH_DEADLINE_S 600.0

// Two training configs, both MAML on sinusoids with 1-128-128-1 MLPs (P = 16,897, a ~200 kB
// checkpoint). "short" runs ~1 s and finishes within a cycle or two; "long" runs ~5 s with the
// checkpoint writes and spans several kills. The name is not an input of training: every job of
// one config must end with the reference's weights.
#define CONFIG_FMT                                                                                 \
    "{\"name\":\"%s\",\"architecture\":{\"sizes\":[1,128,128,1],\"activation\":\"relu\","          \
    "\"head\":\"regression\"},\"algorithm\":\"maml\",\"inner\":{\"lr\":0.01,\"steps\":1},"         \
    "\"outer\":{\"optimizer\":\"adam\",\"lr\":0.001},\"meta_batch\":4,\"iterations\":%d,"          \
    "\"seed\":%d,\"tasks\":{\"family\":\"sinusoid\",\"k_support\":10,\"k_query\":10}}"
#define SHORT_ITERS 600
#define LONG_ITERS  3000

/* ---- small utilities ---- */

static void sleep_s(double s) {
    if (s <= 0) return;
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

// splitmix64: the schedule and the upload contents, from the test's seed
static uint64_t cr_next(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}
static double cr_unit(uint64_t *s) {
    return (double)(cr_next(s) >> 11) * 0x1.0p-53;
}
static double cr_range(uint64_t *s, double lo, double hi) {
    return lo + (hi - lo) * cr_unit(s);
}

static const char *kt_prog = "killtest"; // the prefix of every line printed (set by main)
static int g_failures;
static pthread_mutex_t g_log_mu = PTHREAD_MUTEX_INITIALIZER;

// A failed check: printed, counted, and the run goes on (the summary says FAIL).
static void failf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void failf(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    pthread_mutex_lock(&g_log_mu);
    printf("%s: FAIL: ", kt_prog);
    vprintf(fmt, ap);
    printf("\n");
    fflush(stdout);
    g_failures++;
    pthread_mutex_unlock(&g_log_mu);
    va_end(ap);
}

static void fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/* ---- a server process ---- */

static Proc *g_live[4]; // processes to kill if the driver gives up

static void fatal(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: FATAL: ", kt_prog);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    for (int i = 0; i < 4; i++)
        if (g_live[i] && g_live[i]->pid > 0) kill(g_live[i]->pid, SIGKILL);
    exit(EXIT_FAILURE);
}

// Forks and execs `bin serve` on db (ephemeral loopback port) without waiting for it; extra is
// one more "NAME=value" setting, or NULL.
static void proc_start_bin(Proc *p, const char *bin, const char *db, int workers, int ckpt_every,
                           const char *extra) {
    if (!bin || !*bin) fatal("no server binary given (METASERVE_BIN is the metaserve binary)");
    char vars[PROC_MAX_VARS][640];
    int nv = 0;
    if (strlen(db) > 512) fatal("database path too long: %s", db);
    snprintf(vars[nv++], sizeof vars[0], "METASERVE_DB=%s", db);
    snprintf(vars[nv++], sizeof vars[0], "METASERVE_PORT=0");
    snprintf(vars[nv++], sizeof vars[0], "METASERVE_LISTEN=127.0.0.1");
    snprintf(vars[nv++], sizeof vars[0], "METASERVE_WORKERS=%d", workers);
    snprintf(vars[nv++], sizeof vars[0], "METASERVE_HTTP_THREADS=4");
    snprintf(vars[nv++], sizeof vars[0], "OPENBLAS_NUM_THREADS=1");
    if (ckpt_every > 0)
        snprintf(vars[nv++], sizeof vars[0], "METASERVE_CHECKPOINT_EVERY=%d", ckpt_every);
    if (extra) snprintf(vars[nv++], sizeof vars[0], "%s", extra);
    const char *v[PROC_MAX_VARS];
    for (int i = 0; i < nv; i++)
        v[i] = vars[i];
    const char *why = proc_spawn(p, bin, v, nv);
    if (why) fatal("starting %s: %s (%s)", bin, why, strerror(errno));
}

// proc_start_bin with the metaserve binary (METASERVE_BIN) and no extra setting.
static void proc_start(Proc *p, const char *db, int workers, int ckpt_every) {
    proc_start_bin(p, getenv("METASERVE_BIN"), db, workers, ckpt_every, NULL);
}

// Waits for the "listening" line, then for GET /readyz to answer 200.
static void proc_wait_ready(Proc *p) {
    double t0 = now_s();
    if (proc_wait_port(p, DEADLINE_S) <= 0)
        fatal("the server did not start listening; stderr:\n%s", p->tail);
    for (;;) {
        HcResp r;
        long s = hc_call(&p->c, &r, "GET", "/readyz", NULL);
        hc_free(&r);
        if (s == 200) return;
        if (now_s() - t0 > DEADLINE_S) fatal("/readyz never answered 200 (last %ld)", s);
        sleep_s(0.01);
    }
}

static void proc_reap(Proc *p, int *status) {
    waitpid(p->pid, status, 0);
    proc_release(p);
}

// SIGTERM, then waits (60 s at most) for the exit; returns the wait status.
static int proc_term(Proc *p) {
    kill(p->pid, SIGTERM);
    int status = 0;
    if (!proc_wait_exit(p, DEADLINE_S, &status))
        failf("no exit within %.0f s of SIGTERM; stderr:\n%s", DEADLINE_S, p->tail);
    return status;
}

/* ---- what was sent and what was acknowledged (under g_mu) ---- */

typedef enum { U_NOT_SENT, U_IN_FLIGHT, U_ACKED, U_LOST } Outcome;

typedef struct {
    char name[48]; // "up-<cycle>-<i>", unique: the dataset's identity in listings
    uint64_t seed; // of its contents
    double speed;  // upload rate limit, bytes/s
    double offset; // seconds after the cycle's activity starts
    Outcome out;
    int body_sent;         // the whole body went out (the server may be committing it)
    char id[STORE_ID_MAX]; // from the 201, or from the listing for an unacknowledged commit
    int visible;           // 1 present, 0 absent (decided at the first restart after its cycle)
    int decided;           // visible has been decided
    int content_ok;        // content compared and equal
    size_t body_bytes;
} Upload;

typedef struct {
    char id[STORE_ID_MAX];
    int is_long;
    int acked; // 202 received (0: found in a listing after an unacknowledged POST)
    int succeeded, version;
    int verified_version; // the version's weights were loaded at least once
} JobRec;

typedef struct {
    char alias[32];
    int version;
} AliasRec;

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static Upload *g_up;
static int g_n_up;
static JobRec *g_jobs;
static int g_n_jobs, g_cap_jobs;
static AliasRec *g_alias;
static int g_n_alias;
static int g_job_posts_in_flight, g_alias_in_flight;
static int g_n_job_lost, g_n_alias_lost;

static JobRec *job_find(const char *id) {
    for (int i = 0; i < g_n_jobs; i++)
        if (strcmp(g_jobs[i].id, id) == 0) return &g_jobs[i];
    return NULL;
}

static JobRec *job_add(const char *id, int is_long, int acked) {
    if (g_n_jobs == g_cap_jobs) {
        g_cap_jobs = g_cap_jobs ? 2 * g_cap_jobs : 64;
        g_jobs = realloc(g_jobs, (size_t)g_cap_jobs * sizeof *g_jobs);
        if (!g_jobs) fatal("out of memory");
    }
    JobRec *j = &g_jobs[g_n_jobs++];
    memset(j, 0, sizeof *j);
    snprintf(j->id, sizeof j->id, "%s", id);
    j->is_long = is_long;
    j->acked = acked;
    return j;
}

/* ---- upload contents ---- */

#define XD 2 // x width of every uploaded task; y is 1 wide

// The tasks of one upload, from its seed: 300..799 tasks of 20..79 points, values in [-5, 5).
typedef struct {
    DatasetTaskIn *tasks;
    size_t n_tasks;
    float *x, *y;
} Gen;

static void gen_make(Gen *g, uint64_t seed) {
    uint64_t s = seed;
    g->n_tasks = 300 + (size_t)(cr_next(&s) % 500);
    g->tasks = calloc(g->n_tasks, sizeof *g->tasks);
    int *rows = calloc(g->n_tasks, sizeof *rows);
    size_t total = 0;
    if (!g->tasks || !rows) fatal("out of memory");
    for (size_t t = 0; t < g->n_tasks; t++)
        total += (size_t)(rows[t] = 20 + (int)(cr_next(&s) % 60));
    g->x = malloc(total * XD * sizeof *g->x);
    g->y = malloc(total * sizeof *g->y);
    if (!g->x || !g->y) fatal("out of memory");
    for (size_t i = 0; i < total * XD; i++)
        g->x[i] = (float)cr_range(&s, -5, 5);
    for (size_t i = 0; i < total; i++)
        g->y[i] = (float)cr_range(&s, -5, 5);
    size_t off = 0;
    for (size_t t = 0; t < g->n_tasks; t++) {
        g->tasks[t] = (DatasetTaskIn){
            .x = g->x + off * XD, .y = g->y + off, .n_points = rows[t], .x_dim = XD, .y_dim = 1};
        off += (size_t)rows[t];
    }
    free(rows);
}

static void gen_free(Gen *g) {
    free(g->tasks);
    free(g->x);
    free(g->y);
    memset(g, 0, sizeof *g);
}

// The POST /v1/datasets body of g (float32 values as %.9g: they parse back to the same floats).
static void gen_body(const Gen *g, const char *name, HcBuf *b) {
    char num[64]; // two %.9g numbers take at most 2 x 15 characters
    hc_buf_init(b);
    hc_buf_printf(b, "{\"name\":\"%s\",\"kind\":\"tasks\",\"tasks\":[", name);
    for (size_t t = 0; t < g->n_tasks; t++) {
        const DatasetTaskIn *k = &g->tasks[t];
        hc_buf_puts(b, t ? ",{\"x\":[" : "{\"x\":[");
        for (int64_t i = 0; i < k->n_points; i++) {
            int n = snprintf(num, sizeof num, "%s[%.9g,%.9g]", i ? "," : "", (double)k->x[i * XD],
                             (double)k->x[i * XD + 1]);
            hc_buf_add(b, num, (size_t)n);
        }
        hc_buf_puts(b, "],\"y\":[");
        for (int64_t i = 0; i < k->n_points; i++) {
            int n = snprintf(num, sizeof num, "%s[%.9g]", i ? "," : "", (double)k->y[i]);
            hc_buf_add(b, num, (size_t)n);
        }
        hc_buf_puts(b, "]}");
    }
    hc_buf_puts(b, "]}");
    if (!b->s) fatal("out of memory building an upload");
}

/* ---- the activity of one cycle ---- */

typedef struct {
    HcClient c;
    volatile int stop; // set when the cycle's kill is done
    double t0;         // when the activity started
} Cycle;

static void wait_until(Cycle *cy, double offset) {
    while (!cy->stop && now_s() - cy->t0 < offset)
        sleep_s(0.005);
}

typedef struct {
    Cycle *cy;
    int index; // into g_up
} UploadArg;

typedef struct {
    size_t total;
    Upload *u;
} Progress;

static int on_progress(void *arg, curl_off_t dlt, curl_off_t dln, curl_off_t ult, curl_off_t uln) {
    (void)dlt, (void)dln, (void)ult;
    Progress *pr = arg;
    if ((size_t)uln >= pr->total) {
        pthread_mutex_lock(&g_mu);
        pr->u->body_sent = 1;
        pthread_mutex_unlock(&g_mu);
    }
    return 0;
}

static void *upload_main(void *arg) {
    UploadArg *a = arg;
    pthread_mutex_lock(&g_mu);
    Upload u = g_up[a->index];
    pthread_mutex_unlock(&g_mu);
    Gen g;
    gen_make(&g, u.seed);
    HcBuf body;
    gen_body(&g, u.name, &body);
    gen_free(&g);
    wait_until(a->cy, u.offset);
    pthread_mutex_lock(&g_mu);
    int go = !a->cy->stop;
    if (go) g_up[a->index].out = U_IN_FLIGHT;
    g_up[a->index].body_bytes = body.len;
    pthread_mutex_unlock(&g_mu);
    if (!go) {
        hc_buf_free(&body);
        return NULL;
    }
    // a request of our own (hc_do has no rate limit): the rate spreads the upload over time
    HcBuf resp;
    hc_buf_init(&resp);
    HcSrc src = {body.s, body.len, 0};
    char url[128];
    snprintf(url, sizeof url, "%s/v1/datasets", a->cy->c.base);
    Progress pr = {body.len, &g_up[a->index]};
    CURL *h = curl_easy_init();
    struct curl_slist *hl = curl_slist_append(NULL, "Content-Type: application/json");
    hl = curl_slist_append(hl, "Expect:");
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_POST, 1L);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, (long)DEADLINE_S);
    curl_easy_setopt(h, CURLOPT_READFUNCTION, hc_read_cb);
    curl_easy_setopt(h, CURLOPT_READDATA, &src);
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body.len);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hl);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, hc_write_cb);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &resp);
    curl_easy_setopt(h, CURLOPT_MAX_SEND_SPEED_LARGE, (curl_off_t)u.speed);
    curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(h, CURLOPT_XFERINFODATA, &pr);
    long status = -1;
    if (curl_easy_perform(h) == CURLE_OK) curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(hl);
    curl_easy_cleanup(h);
    hc_buf_free(&body);
    cJSON *doc = status == 201 ? cJSON_Parse(resp.s) : NULL;
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(doc, "id");
    pthread_mutex_lock(&g_mu);
    Upload *up = &g_up[a->index];
    if (status == 201 && cJSON_IsString(id)) {
        up->out = U_ACKED;
        snprintf(up->id, sizeof up->id, "%s", id->valuestring);
    } else {
        up->out = U_LOST;
        // a complete answer other than 201 is a server error, not a lost reply
        if (status > 0)
            failf("upload %s: status %ld: %.300s", up->name, status, resp.s ? resp.s : "");
    }
    pthread_mutex_unlock(&g_mu);
    cJSON_Delete(doc);
    hc_buf_free(&resp);
    return NULL;
}

typedef struct {
    Cycle *cy;
    double offset;
    int post_long; // also submit a long job first
    int seed;
} JobArg;

static void post_job(Cycle *cy, int is_long, int seed) {
    char cfg[1024];
    snprintf(cfg, sizeof cfg, CONFIG_FMT, is_long ? "long" : "short",
             is_long ? LONG_ITERS : SHORT_ITERS, seed);
    pthread_mutex_lock(&g_mu);
    int go = !cy->stop;
    if (go) g_job_posts_in_flight++;
    pthread_mutex_unlock(&g_mu);
    if (!go) return;
    HcResp r;
    long s = hc_call(&cy->c, &r, "POST", "/v1/jobs", cfg);
    pthread_mutex_lock(&g_mu);
    g_job_posts_in_flight--;
    const char *id = hc_str(&r, "id");
    if (s == 202 && id) {
        JobRec *j = job_find(id);
        if (!j) j = job_add(id, is_long, 1);
        j->acked = 1;
    } else {
        g_n_job_lost++;
        if (s > 0) failf("POST /v1/jobs: status %ld: %.300s", s, r.body);
    }
    pthread_mutex_unlock(&g_mu);
    hc_free(&r);
}

static int g_seed_short, g_seed_long; // the training seeds (from the test's seed)

static void *jobs_main(void *arg) {
    JobArg *a = arg;
    wait_until(a->cy, a->offset);
    if (a->post_long) post_job(a->cy, 1, g_seed_long);
    post_job(a->cy, 0, g_seed_short);
    return NULL;
}

typedef struct {
    Cycle *cy;
    double offset;
    char alias[32];
} AliasArg;

static void *alias_main(void *arg) {
    AliasArg *a = arg;
    wait_until(a->cy, a->offset);
    // points the alias at the newest short version known to have succeeded
    pthread_mutex_lock(&g_mu);
    int v = 0;
    for (int i = 0; i < g_n_jobs; i++)
        if (!g_jobs[i].is_long && g_jobs[i].succeeded && g_jobs[i].version > v)
            v = g_jobs[i].version;
    int go = v > 0 && !a->cy->stop;
    if (go) g_alias_in_flight++;
    pthread_mutex_unlock(&g_mu);
    if (!go) return NULL;
    char path[128], body[64];
    snprintf(path, sizeof path, "/v1/models/short/aliases/%s", a->alias);
    snprintf(body, sizeof body, "{\"version\":%d}", v);
    HcResp r;
    long s = hc_call(&a->cy->c, &r, "PUT", path, body);
    pthread_mutex_lock(&g_mu);
    g_alias_in_flight--;
    if (s == 200) {
        AliasRec *al = &g_alias[g_n_alias++];
        snprintf(al->alias, sizeof al->alias, "%s", a->alias);
        al->version = v;
    } else {
        g_n_alias_lost++;
        if (s > 0) failf("PUT %s: status %ld: %.300s", path, s, r.body);
    }
    pthread_mutex_unlock(&g_mu);
    hc_free(&r);
    return NULL;
}

// Records, from GET /v1/jobs, which jobs have succeeded and with which version: a succeeded job
// the server reported is an acknowledged model write.
static void poll_jobs(const HcClient *c) {
    HcResp r;
    if (hc_call(c, &r, "GET", "/v1/jobs?page_size=1000", NULL) != 200) {
        hc_free(&r);
        return;
    }
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(r.json, "jobs");
    pthread_mutex_lock(&g_mu);
    for (const cJSON *it = list ? list->child : NULL; it; it = it->next) {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(it, "id");
        const cJSON *st = cJSON_GetObjectItemCaseSensitive(it, "state");
        const cJSON *m = cJSON_GetObjectItemCaseSensitive(it, "model");
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(m, "version");
        JobRec *j = cJSON_IsString(id) ? job_find(id->valuestring) : NULL;
        if (!j || !cJSON_IsString(st) || strcmp(st->valuestring, "succeeded") != 0) continue;
        if (!cJSON_IsNumber(v)) continue;
        if (j->succeeded && j->version != (int)v->valuedouble)
            failf("job %s: version changed from %d to %d", j->id, j->version, (int)v->valuedouble);
        j->succeeded = 1;
        j->version = (int)v->valuedouble;
    }
    pthread_mutex_unlock(&g_mu);
    hc_free(&r);
}

static void *poller_main(void *arg) {
    Cycle *cy = arg;
    while (!cy->stop) {
        poll_jobs(&cy->c);
        sleep_s(0.1);
    }
    return NULL;
}

/* ---- where a kill lands ---- */

typedef struct {
    int startup;     // killed while starting (before /readyz could answer)
    int upload;      // an upload in flight
    int upload_sent; // ... whose whole body had been sent (being parsed or committed)
    int job_post;    // POST /v1/jobs in flight
    int alias;       // PUT alias in flight
    int training;    // a job running
    int write_lock;  // the server inside a SQLite write transaction
    int checkpoint;  // ... with no request that writes in flight and no job finishing
    int model_write; // a job between its final progress write and its model version commit
} Landing;

// Whether process pid holds the WAL write lock: a POSIX lock on byte 120 of the -shm file.
static int holds_wal_write_lock(pid_t pid, const char *shm) {
    struct stat sb;
    if (stat(shm, &sb) != 0) return 0;
    FILE *f = fopen("/proc/locks", "r");
    if (!f) return 0;
    char line[256];
    int held = 0;
    while (!held && fgets(line, sizeof line, f)) {
        char kind[16], mode[16], rw[16], dev[64], end[32];
        long lpid;
        unsigned long long start;
        // "1: POSIX  ADVISORY  WRITE 1234 08:01:5678 120 120"
        const char *s = strchr(line, ':');
        if (!s || strstr(line, "->")) continue;
        if (sscanf(s + 1, "%15s %15s %15s %ld %63s %llu %31s", kind, mode, rw, &lpid, dev, &start,
                   end) != 7)
            continue;
        unsigned maj, min;
        unsigned long long ino;
        if (sscanf(dev, "%x:%x:%llu", &maj, &min, &ino) != 3) continue;
        if (lpid == pid && ino == (unsigned long long)sb.st_ino && strcmp(rw, "WRITE") == 0 &&
            start <= 120 && (strcmp(end, "EOF") == 0 || strtoull(end, NULL, 10) >= 120))
            held = 1;
    }
    fclose(f);
    return held;
}

// Reads, from the file, whether jobs are running and whether one is finishing (iteration ==
// total). The server is stopped (SIGSTOP) while this runs; a reader never waits for a writer in
// WAL mode, and the busy timeout covers the rest.
static void jobs_at_kill(const char *db, int *running, int *finishing) {
    *running = *finishing = 0;
    sqlite3 *h = NULL;
    if (sqlite3_open_v2(db, &h, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
        sqlite3_close(h);
        return;
    }
    sqlite3_busy_timeout(h, 500);
    sqlite3_stmt *q = NULL;
    if (sqlite3_prepare_v2(h, "SELECT iteration, total FROM jobs WHERE state = 'running'", -1, &q,
                           NULL) == SQLITE_OK) {
        while (sqlite3_step(q) == SQLITE_ROW) {
            (*running)++;
            if (sqlite3_column_int64(q, 0) >= sqlite3_column_int64(q, 1)) (*finishing)++;
        }
    }
    sqlite3_finalize(q);
    sqlite3_close(h);
}

// Sends SIGSTOP and waits (10 ms at most) until the process is stopped ('T' in /proc/pid/stat).
static void stop_wait(pid_t pid) {
    kill(pid, SIGSTOP);
    char path[64], buf[256];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    double t0 = now_s();
    while (now_s() - t0 < 0.01) {
        FILE *f = fopen(path, "r");
        size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
        if (f) fclose(f);
        buf[n] = '\0';
        const char *rp = strrchr(buf, ')');
        if (!rp || (rp[1] == ' ' && (rp[2] == 'T' || rp[2] == 't'))) return;
        sleep_s(0.00005);
    }
}

// Aims a kill at a checkpoint write: waits (at most max_s) until the server holds the WAL write
// lock while a job runs, and leaves it stopped (SIGSTOP) when it still holds it once frozen.
static void aim_at_write(pid_t pid, const char *shm, double max_s) {
    double t0 = now_s();
    while (now_s() - t0 < max_s) {
        if (holds_wal_write_lock(pid, shm)) {
            kill(pid, SIGSTOP);
            if (holds_wal_write_lock(pid, shm)) return;
            kill(pid, SIGCONT);
        }
        sleep_s(0.0002);
    }
}

// Aims a kill at a model write: waits (at most max_s) until a running job is within its last
// checkpoint stride, then watches it closely: the server is stopped (SIGSTOP) when the job has
// recorded its last iteration (its next write is the transaction that stores its model version),
// preferably while it holds the write lock of that transaction. The connection is closed before
// returning: no connection of this process may be open when the server dies, or the next start
// would not have to recover the WAL on its own.
static void aim_at_finish(pid_t pid, const char *db, const char *shm, double max_s) {
    sqlite3 *h = NULL;
    if (sqlite3_open_v2(db, &h, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
        sqlite3_close(h);
        return;
    }
    sqlite3_busy_timeout(h, 100);
    sqlite3_stmt *q = NULL;
    if (sqlite3_prepare_v2(h, "SELECT max(iteration - total) FROM jobs WHERE state = 'running'", -1,
                           &q, NULL) == SQLITE_OK) {
        double t0 = now_s();
        int at_end = 0;
        while (now_s() - t0 < max_s) {
            // how far the nearest job is from its end (NULL: none running)
            int row = sqlite3_step(q) == SQLITE_ROW && sqlite3_column_type(q, 0) != SQLITE_NULL;
            int64_t gap = row ? sqlite3_column_int64(q, 0) : INT64_MIN;
            sqlite3_reset(q);
            if (gap >= 0) {
                kill(pid, SIGSTOP);
                break;
            }
            if (gap < -8) {
                sleep_s(0.001);
                continue;
            }
            // the last iterations: let the server run in slices of ~0.15 ms and look at the
            // file while it is stopped, so that no write escapes between two looks however
            // this process is scheduled
            for (;;) {
                stop_wait(pid);
                int near = sqlite3_step(q) == SQLITE_ROW &&
                           sqlite3_column_type(q, 0) != SQLITE_NULL &&
                           sqlite3_column_int64(q, 0) >= -8;
                gap = near ? sqlite3_column_int64(q, 0) : INT64_MIN;
                sqlite3_reset(q);
                // stopped after the last progress write: inside the model's transaction (the
                // write lock held), or, after a few slices without it, just before it
                if (gap >= 0 && (holds_wal_write_lock(pid, shm) || at_end++ >= 3)) goto done;
                kill(pid, SIGCONT);
                if (!near || now_s() - t0 >= max_s) break;
                sleep_s(0.00015);
            }
        }
    }
done:
    sqlite3_finalize(q);
    sqlite3_close(h);
}

/* ---- checks after a restart ---- */

static int g_verified_datasets, g_verified_unacked, g_verified_versions, g_verified_aliases;

// Compares the stored arrays of dataset id with what dataset_pack_tasks makes of u's tasks.
static int dataset_content_equal(Store *st, const Upload *u, const char *id) {
    Gen g;
    gen_make(&g, u->seed);
    DatasetPacked p;
    MsError err = {0};
    if (dataset_pack_tasks(&p, g.tasks, g.n_tasks, NULL, &err) != MS_OK)
        fatal("packing upload %s: %s", u->name, err.msg);
    gen_free(&g);
    StoreDataset d;
    StoreDatasetData data;
    int ok = 0;
    MsStatus s = store_dataset_get(st, id, &d, &data, &err);
    if (s != MS_OK) {
        failf("dataset %s (%s): the store cannot read it: %s", id, u->name, err.msg);
        dataset_packed_free(&p);
        return 0;
    }
    if (strcmp(d.name, u->name) || strcmp(d.kind, "tasks") || d.n_rows != p.n_rows ||
        d.n_items != p.n_items || d.x_dim != p.x_dim || d.y_dim != p.y_dim)
        failf("dataset %s (%s): description differs from the upload", id, u->name);
    else if (data.n_x != p.n_x || memcmp(data.x, p.x, p.n_x * sizeof *p.x))
        failf("dataset %s (%s): x differs from the upload (%zu vs %zu floats)", id, u->name,
              data.n_x, p.n_x);
    else if (data.n_y != p.n_y || memcmp(data.y, p.y, p.n_y * sizeof *p.y))
        failf("dataset %s (%s): y differs from the upload", id, u->name);
    else if (data.n_index != p.n_index || memcmp(data.index, p.index, p.n_index * 4))
        failf("dataset %s (%s): the task index differs from the upload", id, u->name);
    else
        ok = 1;
    store_dataset_free(&d);
    store_dataset_data_free(&data);
    dataset_packed_free(&p);
    return ok;
}

// GET /v1/datasets/{id} must describe what was uploaded.
static void dataset_check_get(const HcClient *c, const Upload *u, const char *id) {
    Gen g;
    gen_make(&g, u->seed);
    int64_t rows = 0;
    for (size_t t = 0; t < g.n_tasks; t++)
        rows += g.tasks[t].n_points;
    char path[96];
    snprintf(path, sizeof path, "/v1/datasets/%s", id);
    HcResp r;
    long s = hc_call(c, &r, "GET", path, NULL);
    const char *name = hc_str(&r, "name");
    if (s != 200 || !name || strcmp(name, u->name) || hc_num(&r, "n_tasks") != (double)g.n_tasks ||
        hc_num(&r, "n_rows") != (double)rows || hc_num(&r, "x_dim") != XD ||
        hc_num(&r, "y_dim") != 1 ||
        hc_num(&r, "bytes") != (double)((size_t)rows * (XD + 1) * 4 + (g.n_tasks + 1) * 4))
        failf("GET %s: %ld %.300s (upload %s: %zu tasks, %" PRId64 " rows)", path, s, r.body,
              u->name, g.n_tasks, rows);
    hc_free(&r);
    gen_free(&g);
}

static Upload *upload_by_name(const char *name) {
    for (int i = 0; i < g_n_up; i++)
        if (strcmp(g_up[i].name, name) == 0) return &g_up[i];
    return NULL;
}

// Datasets: the listing holds every acknowledged upload and nothing that was not sent in full.
// With st (the live file), the stored arrays are compared too, and the store must hold nothing
// the listing does not; st NULL: over HTTP only.
static void check_datasets(const HcClient *c, Store *st, int full) {
    // the listing, all pages
    char(*ids)[STORE_ID_MAX] = NULL;
    char(*names)[48] = NULL;
    int n = 0, cap = 0;
    char token[STORE_ID_MAX] = "";
    for (;;) {
        char path[128];
        snprintf(path, sizeof path, "/v1/datasets?page_size=100%s%s", *token ? "&page_token=" : "",
                 token);
        HcResp r;
        if (hc_call(c, &r, "GET", path, NULL) != 200) {
            failf("GET %s: %ld %.300s", path, r.status, r.body);
            hc_free(&r);
            break;
        }
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(r.json, "datasets");
        for (const cJSON *it = list ? list->child : NULL; it; it = it->next) {
            if (n == cap) {
                cap = cap ? 2 * cap : 64;
                ids = realloc(ids, (size_t)cap * sizeof *ids);
                names = realloc(names, (size_t)cap * sizeof *names);
                if (!ids || !names) fatal("out of memory");
            }
            const cJSON *id = cJSON_GetObjectItemCaseSensitive(it, "id");
            const cJSON *nm = cJSON_GetObjectItemCaseSensitive(it, "name");
            snprintf(ids[n], sizeof ids[n], "%s", cJSON_IsString(id) ? id->valuestring : "");
            snprintf(names[n], sizeof names[n], "%s", cJSON_IsString(nm) ? nm->valuestring : "");
            n++;
        }
        const char *next = hc_str(&r, "next_page_token");
        snprintf(token, sizeof token, "%s", next ? next : "");
        hc_free(&r);
        if (!*token) break;
    }
    pthread_mutex_lock(&g_mu);
    // everything listed was sent in full, once, and holds exactly what was sent
    for (int i = 0; i < n; i++) {
        Upload *u = upload_by_name(names[i]);
        if (!u) {
            failf("dataset %s has a name this test never used: '%s'", ids[i], names[i]);
            continue;
        }
        if (u->out == U_NOT_SENT) {
            failf("dataset %s (%s) is listed but was never sent", ids[i], u->name);
            continue;
        }
        if (u->out == U_LOST && !u->id[0]) snprintf(u->id, sizeof u->id, "%s", ids[i]);
        if (strcmp(u->id, ids[i]) != 0) {
            failf("upload %s is listed as %s, acknowledged as %s (stored twice?)", u->name, ids[i],
                  u->id);
            continue;
        }
        if (u->decided && !u->visible)
            failf("upload %s was absent after an earlier restart and is now listed", u->name);
        if (!u->decided && u->out == U_LOST) g_verified_unacked++;
        u->visible = 1;
        u->decided = 1;
        if (full || !u->content_ok) {
            dataset_check_get(c, u, ids[i]);
            if (st) u->content_ok = dataset_content_equal(st, u, ids[i]);
        }
    }
    // every acknowledged (or once visible) upload is listed
    for (int k = 0; k < g_n_up; k++) {
        Upload *u = &g_up[k];
        if (u->out != U_ACKED && u->out != U_LOST) continue;
        int listed = 0;
        for (int i = 0; i < n && !listed; i++)
            listed = strcmp(names[i], u->name) == 0;
        if (listed) continue;
        if (u->out == U_ACKED)
            failf("acknowledged upload %s (%s) is missing", u->name, u->id);
        else if (u->decided && u->visible)
            failf("upload %s (%s) was listed after an earlier restart and is now missing", u->name,
                  u->id);
        u->decided = 1; // a lost upload that is absent stays absent
    }
    // the store agrees with the listing: no other dataset row exists
    StoreDataset *rows = NULL;
    int nr = 0, more = 0;
    MsError err = {0};
    if (st && store_dataset_list(st, "", 100000, &rows, &nr, &more, &err) != MS_OK)
        failf("store_dataset_list: %s", err.msg);
    else if (st && nr != n)
        failf("the store holds %d datasets, the API lists %d", nr, n);
    for (int i = 0; i < nr; i++)
        store_dataset_free(&rows[i]);
    free(rows);
    pthread_mutex_unlock(&g_mu);
    free(ids);
    free(names);
}

// The model version of job j: its description, its weights over HTTP, and (st non-NULL) the
// stored arrays.
static void check_version(const HcClient *c, Store *st, JobRec *j) {
    const char *name = j->is_long ? "long" : "short";
    char path[160];
    snprintf(path, sizeof path, "/v1/models/%s/versions/%d", name, j->version);
    HcResp r;
    if (hc_call(c, &r, "GET", path, NULL) != 200)
        failf("GET %s: %ld %.200s", path, r.status, r.body);
    hc_free(&r);
    snprintf(path, sizeof path, "/v1/models/%s@%d/weights", name, j->version);
    if (hc_call(c, &r, "GET", path, NULL) != 200 || hc_num(&r, "version") != j->version)
        failf("GET %s: %ld %.200s", path, r.status, r.body);
    hc_free(&r);
    StoreModel m;
    MsError err = {0};
    if (!st) {
        j->verified_version = 1;
        g_verified_versions++;
        return;
    }
    if (store_model_get(st, name, j->version, &m, &err) != MS_OK) {
        failf("store_model_get %s@%d: %s", name, j->version, err.msg);
        return;
    }
    if (strcmp(m.job_id, j->id) != 0)
        failf("%s@%d was written by job %s, not %s", name, j->version, m.job_id, j->id);
    store_model_free(&m);
    j->verified_version = 1;
    g_verified_versions++;
}

// Jobs, versions and aliases; st NULL: over HTTP only (no check of the stored versions).
static void check_jobs_models(const HcClient *c, Store *st, int full) {
    HcResp r;
    if (hc_call(c, &r, "GET", "/v1/jobs?page_size=1000", NULL) != 200) {
        failf("GET /v1/jobs: %ld %.300s", r.status, r.body);
        hc_free(&r);
        return;
    }
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(r.json, "jobs");
    pthread_mutex_lock(&g_mu);
    int listed = 0;
    for (const cJSON *it = list ? list->child : NULL; it; it = it->next, listed++) {
        const char *id = cJSON_GetObjectItemCaseSensitive(it, "id")->valuestring;
        const char *state = cJSON_GetObjectItemCaseSensitive(it, "state")->valuestring;
        const cJSON *m = cJSON_GetObjectItemCaseSensitive(it, "model");
        const cJSON *nm = cJSON_GetObjectItemCaseSensitive(m, "name");
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(m, "version");
        JobRec *j = job_find(id);
        if (!j) {
            // committed, but the 202 was lost with the kill: adopt it
            int is_long = cJSON_IsString(nm) && strcmp(nm->valuestring, "long") == 0;
            if (!cJSON_IsString(nm) || (!is_long && strcmp(nm->valuestring, "short") != 0)) {
                failf("job %s has a model name this test never used", id);
                continue;
            }
            j = job_add(id, is_long, 0);
        }
        if (strcmp(state, "failed") == 0 || strcmp(state, "cancelled") == 0) {
            const cJSON *e = cJSON_GetObjectItemCaseSensitive(it, "error");
            failf("job %s is %s after a crash: %s", id, state,
                  cJSON_IsString(e) ? e->valuestring : "");
            continue;
        }
        int succeeded = strcmp(state, "succeeded") == 0;
        if (j->succeeded && (!succeeded || !cJSON_IsNumber(v) || (int)v->valuedouble != j->version))
            failf("job %s had succeeded with version %d and is now %s", id, j->version, state);
        if (succeeded && cJSON_IsNumber(v)) {
            j->succeeded = 1;
            j->version = (int)v->valuedouble;
        }
    }
    hc_free(&r);
    for (int i = 0; i < g_n_jobs; i++) {
        JobRec *j = &g_jobs[i];
        char path[96];
        snprintf(path, sizeof path, "/v1/jobs/%s", j->id);
        if (hc_call(c, &r, "GET", path, NULL) != 200)
            failf("%s job %s is missing: GET %ld", j->acked ? "acknowledged" : "listed", j->id,
                  r.status);
        hc_free(&r);
        if (j->succeeded && (full || !j->verified_version)) check_version(c, st, j);
    }
    // every stored version belongs to one succeeded job that names it (state and version are
    // one transaction: no version without its job's success, no success without its version)
    const char *names[2] = {"short", "long"};
    for (int k = 0; k < 2 && st; k++) {
        StoreModel *rows = NULL;
        int n = 0;
        MsError err = {0};
        MsStatus s = store_model_versions(st, names[k], &rows, &n, &err);
        if (s != MS_OK && s != MS_ERR_NOT_FOUND) failf("store_model_versions: %s", err.msg);
        for (int i = 0; i < n; i++) {
            JobRec *j = job_find(rows[i].job_id);
            if (j && !j->succeeded) {
                // the job may have finished since the listing above (workers keep running):
                // its state, read after the version, must be succeeded with that version
                char path[96];
                snprintf(path, sizeof path, "/v1/jobs/%s", j->id);
                if (hc_call(c, &r, "GET", path, NULL) == 200 && hc_str(&r, "state") &&
                    strcmp(hc_str(&r, "state"), "succeeded") == 0) {
                    const cJSON *m = cJSON_GetObjectItemCaseSensitive(r.json, "model");
                    const cJSON *v = cJSON_GetObjectItemCaseSensitive(m, "version");
                    j->succeeded = cJSON_IsNumber(v);
                    j->version = cJSON_IsNumber(v) ? (int)v->valuedouble : 0;
                }
                hc_free(&r);
            }
            if (!j || !j->succeeded || j->version != rows[i].version)
                failf("%s@%d (job %s) has no succeeded job that names it", names[k],
                      rows[i].version, rows[i].job_id);
            store_model_free(&rows[i]);
        }
        free(rows);
    }
    // aliases: each acknowledged PUT still points where it was told
    if (g_n_alias > 0) {
        if (hc_call(c, &r, "GET", "/v1/models/short", NULL) != 200)
            failf("GET /v1/models/short: %ld", r.status);
        const cJSON *al = cJSON_GetObjectItemCaseSensitive(r.json, "aliases");
        for (int i = 0; i < g_n_alias; i++) {
            const cJSON *v = cJSON_GetObjectItemCaseSensitive(al, g_alias[i].alias);
            if (!cJSON_IsNumber(v) || (int)v->valuedouble != g_alias[i].version)
                failf("alias short@%s: expected version %d, got %s", g_alias[i].alias,
                      g_alias[i].version, cJSON_IsNumber(v) ? "another" : "none");
            else if (full)
                g_verified_aliases++;
        }
        hc_free(&r);
    }
    pthread_mutex_unlock(&g_mu);
}

static void check_all(const HcClient *c, const char *db, int full) {
    Store *st = NULL;
    MsError err = {0};
    if (store_open(&st, db, &err) != MS_OK) fatal("store_open %s: %s", db, err.msg);
    check_datasets(c, st, full);
    check_jobs_models(c, st, full);
    store_close(st); // not the last connection: the server's stay open
}

// check_all over HTTP alone: for a server whose unsynced writes other processes cannot see
// (tests/powerloss), where reading its file while it runs would show a torn state.
static inline void check_http(const HcClient *c, int full) {
    check_datasets(c, NULL, full);
    check_jobs_models(c, NULL, full);
}

/* ---- the end: completion, reference weights, integrity ---- */

// Polls until every job has succeeded (or one failed).
static void wait_jobs_done(const HcClient *c, double deadline_s) {
    double t0 = now_s();
    for (;;) {
        poll_jobs(c);
        pthread_mutex_lock(&g_mu);
        int left = 0;
        for (int i = 0; i < g_n_jobs; i++)
            left += !g_jobs[i].succeeded;
        pthread_mutex_unlock(&g_mu);
        if (!left) return;
        HcResp r;
        hc_call(c, &r, "GET", "/v1/jobs?page_size=1000", NULL);
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(r.json, "jobs");
        for (const cJSON *it = list ? list->child : NULL; it; it = it->next) {
            const char *state = cJSON_GetObjectItemCaseSensitive(it, "state")->valuestring;
            if (!strcmp(state, "failed") || !strcmp(state, "cancelled")) {
                char *s = cJSON_PrintUnformatted(it);
                fatal("a job ended %s: %s", state, s);
            }
        }
        hc_free(&r);
        if (now_s() - t0 > deadline_s)
            fatal("%d jobs not done after %.0f s (%s)", left, deadline_s, c->base);
        sleep_s(0.1);
    }
}

// PRAGMA integrity_check == "ok" and PRAGMA foreign_key_check returns nothing, on the file.
static void check_integrity(const char *db) {
    sqlite3 *h = NULL;
    if (sqlite3_open_v2(db, &h, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK)
        fatal("sqlite3_open_v2 %s: %s", db, sqlite3_errmsg(h));
    sqlite3_stmt *q = NULL;
    sqlite3_prepare_v2(h, "PRAGMA integrity_check", -1, &q, NULL);
    int rc = sqlite3_step(q);
    const char *res = rc == SQLITE_ROW ? (const char *)sqlite3_column_text(q, 0) : "(no row)";
    if (strcmp(res, "ok") != 0) failf("PRAGMA integrity_check: %s", res);
    sqlite3_finalize(q);
    sqlite3_prepare_v2(h, "PRAGMA foreign_key_check", -1, &q, NULL);
    int bad = 0;
    while (sqlite3_step(q) == SQLITE_ROW)
        if (bad++ < 5)
            failf("PRAGMA foreign_key_check: table %s row %lld -> %s",
                  (const char *)sqlite3_column_text(q, 0), (long long)sqlite3_column_int64(q, 1),
                  (const char *)sqlite3_column_text(q, 2));
    sqlite3_finalize(q);
    sqlite3_close(h);
    printf("%s: PRAGMA integrity_check %s, PRAGMA foreign_key_check %d rows\n", kt_prog, res, bad);
}

// Every succeeded job's weights equal, bit for bit, the reference's for its config.
static int compare_reference(const char *db, const char *ref_db) {
    Store *a = NULL, *b = NULL;
    MsError err = {0};
    if (store_open(&a, db, &err) != MS_OK || store_open(&b, ref_db, &err) != MS_OK)
        fatal("store_open: %s", err.msg);
    StoreModel ref[2];
    const char *names[2] = {"short", "long"};
    for (int k = 0; k < 2; k++)
        if (store_model_get(b, names[k], 1, &ref[k], &err) != MS_OK)
            fatal("reference %s@1: %s", names[k], err.msg);
    int same = 0;
    for (int i = 0; i < g_n_jobs; i++) {
        JobRec *j = &g_jobs[i];
        StoreModel m;
        const StoreModel *r = &ref[j->is_long];
        if (store_model_get(a, r->name, j->version, &m, &err) != MS_OK) {
            failf("%s@%d: %s", r->name, j->version, err.msg);
            continue;
        }
        size_t diff = m.n_params;
        if (m.n_params == r->n_params)
            for (diff = 0; diff < m.n_params; diff++)
                if (memcmp(&m.params[diff], &r->params[diff], sizeof(float)) != 0) break;
        if (m.n_params != r->n_params || diff < m.n_params)
            failf("%s@%d (job %s): parameter %zu is %.9g, the uninterrupted run has %.9g", r->name,
                  j->version, j->id, diff, diff < m.n_params ? (double)m.params[diff] : 0.0,
                  diff < r->n_params ? (double)r->params[diff] : 0.0);
        else
            same++;
        store_model_free(&m);
    }
    size_t nonzero = 0;
    for (size_t i = 0; i < ref[1].n_params; i++)
        nonzero += ref[1].params[i] != 0;
    if (nonzero < ref[1].n_params / 2) failf("the reference weights are mostly zero");
    store_model_free(&ref[0]);
    store_model_free(&ref[1]);
    store_close(a);
    store_close(b);
    return same;
}

/* ---- one kill cycle ---- */

// What kill_cycle needs from its test.
typedef struct {
    const char *db, *shm; // the file the server runs on, and its -shm
    Proc *srv;            // the server's process record
    // starts the server on db without waiting (proc_start or proc_start_bin with the test's
    // settings)
    void (*start)(Proc *p);
    // runs after /readyz answered, before the traffic of a cycle after the first: the test's
    // checks of what survived the previous kill
    void (*after_ready)(const HcClient *c);
    // the test's own traffic thread, or NULL: extra_arg makes its argument (drawing from rng,
    // before the cycle starts; cy->t0 is set before the thread starts), extra_main runs it and
    // returns when cy->stop is set
    void *(*extra_arg)(Cycle *cy, int k, uint64_t *rng);
    void *(*extra_main)(void *arg);
} KillTest;

/**
 * One cycle of kill k (0-based): starts the server; about one cycle in eight (never the first)
 * kills it while it starts; else waits for /readyz, runs t->after_ready (k > 0), starts
 * UPLOADS_PER_CYCLE uploads, job submits (a long job every LONG_EVERY cycles), an alias move,
 * the poller and t's own thread, and kills the server after a random delay of 0.2 to 2.5 s, a
 * quarter of the time aimed at a checkpoint write and a quarter at a model write. Just before the
 * SIGKILL the server is frozen (SIGSTOP) and inspected; the landing is printed and added to
 * *land, and *n_write_lock counts kills that found the WAL write lock held. Returns after the
 * server is reaped and every traffic thread has ended.
 */
static void kill_cycle(const KillTest *t, int k, uint64_t *rng, Landing *land, int *n_write_lock) {
    Proc *srv = t->srv;
    t->start(srv);
    Landing l = {0};
    // about one kill in eight hits the start-up (WAL recovery, requeue of running jobs)
    int startup = k > 0 && cr_unit(rng) < 0.125;
    Cycle cy = {.stop = 0};
    pthread_t th[UPLOADS_PER_CYCLE + 4];
    int nth = 0;
    UploadArg ua[UPLOADS_PER_CYCLE];
    JobArg ja;
    AliasArg aa;
    double delay;
    const char *aimed = "random";
    if (startup) {
        delay = cr_range(rng, 0.0, 0.05);
        sleep_s(delay);
        l.startup = 1;
    } else {
        proc_wait_ready(srv);
        if (k > 0 && t->after_ready) t->after_ready(&srv->c);
        cy.c = srv->c;
        delay = cr_range(rng, 0.2, 2.5);
        // uploads start anywhere in the window and are spread over 0.05..1 s by a rate limit
        for (int i = 0; i < UPLOADS_PER_CYCLE; i++) {
            Upload *u = &g_up[g_n_up];
            snprintf(u->name, sizeof u->name, "up-%d-%d", k, i);
            u->seed = cr_next(rng);
            u->offset = cr_range(rng, 0.0, 2.0);
            u->speed = cr_range(rng, 2e6, 40e6);
            ua[i] = (UploadArg){&cy, g_n_up++};
        }
        ja = (JobArg){&cy, cr_range(rng, 0.0, 1.0), k % LONG_EVERY == 0, 0};
        aa = (AliasArg){&cy, cr_range(rng, 0.0, 2.0), ""};
        snprintf(aa.alias, sizeof aa.alias, "c%d", k);
        void *extra = t->extra_main ? t->extra_arg(&cy, k, rng) : NULL;
        cy.t0 = now_s();
        for (int i = 0; i < UPLOADS_PER_CYCLE; i++)
            pthread_create(&th[nth++], NULL, upload_main, &ua[i]);
        pthread_create(&th[nth++], NULL, jobs_main, &ja);
        pthread_create(&th[nth++], NULL, alias_main, &aa);
        pthread_create(&th[nth++], NULL, poller_main, &cy);
        if (t->extra_main) pthread_create(&th[nth++], NULL, t->extra_main, extra);
        sleep_s(delay);
        // a kill at a uniformly random moment rarely lands inside a write of a few ms: about
        // half of the kills wait for one (a bounded wait, then the kill happens anyway)
        double m = cr_unit(rng);
        if (m < 0.25) {
            aimed = "aimed at a checkpoint write";
            aim_at_write(srv->pid, t->shm, 1.0);
        } else if (m < 0.5) {
            aimed = "aimed at a model write";
            aim_at_finish(srv->pid, t->db, t->shm, 3.0);
        }
    }
    // freeze, look, kill
    kill(srv->pid, SIGSTOP);
    pthread_mutex_lock(&g_mu);
    for (int i = 0; i < g_n_up; i++)
        if (g_up[i].out == U_IN_FLIGHT) {
            l.upload = 1;
            if (g_up[i].body_sent) l.upload_sent = 1;
        }
    l.job_post = g_job_posts_in_flight > 0;
    l.alias = g_alias_in_flight > 0;
    pthread_mutex_unlock(&g_mu);
    int running = 0, finishing = 0;
    // during start-up the file still shows the state the previous kill left: not counted
    if (!startup) jobs_at_kill(t->db, &running, &finishing);
    l.training = running > 0;
    l.write_lock = holds_wal_write_lock(srv->pid, t->shm);
    l.model_write = finishing > 0 || l.alias;
    l.checkpoint =
        l.write_lock && running > 0 && !finishing && !l.upload_sent && !l.job_post && !l.alias;
    kill(srv->pid, SIGKILL);
    int status = 0;
    proc_reap(srv, &status);
    cy.stop = 1;
    for (int i = 0; i < nth; i++)
        pthread_join(th[i], NULL);
    if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGKILL)
        failf("kill %d: the server had already exited (status 0x%x); stderr:\n%s", k + 1, status,
              srv->tail);
    if (srv->errors)
        printf("%s:   server logged %d error line(s), first: %s\n", kt_prog, srv->errors,
               srv->first_err);
    printf("%s: kill %2d (%s, %5.3f s):%s%s%s%s%s%s%s%s%s\n", kt_prog, k + 1, aimed, delay,
           l.startup ? " startup" : "", l.upload ? " upload" : "",
           l.upload_sent ? "(body sent)" : "", l.job_post ? " job-submit" : "",
           l.training ? " training" : "", l.checkpoint ? " checkpoint-write" : "",
           l.model_write ? " model-write" : "", l.alias ? "(alias)" : "",
           l.write_lock ? " [write lock held]" : "");
    fflush(stdout);
    land->startup += l.startup;
    land->upload += l.upload;
    land->upload_sent += l.upload_sent;
    land->job_post += l.job_post;
    land->alias += l.alias;
    land->training += l.training;
    land->checkpoint += l.checkpoint;
    land->model_write += l.model_write;
    *n_write_lock += l.write_lock;
}

/* ---- the driver's files and its end ---- */

static const char *g_db; // the file the killed server runs on (set by kt_files_make)

// Makes the driver's working directory, <$env_dir, or /tmp>/ms_<name>_XXXXXX, holding <name>.db
// (shm: its -shm file) and reference.db; sets g_db, starts libcurl and allocates the logs of
// acknowledged uploads and alias moves for `kills` cycles.
static void kt_files_make(char dir[512], char db[600], char shm[620], char ref_db[600],
                          const char *env_dir, const char *name, int kills) {
    const char *base = getenv(env_dir);
    snprintf(dir, 512, "%s/ms_%s_XXXXXX", base && *base ? base : "/tmp", name);
    if (!mkdtemp(dir)) fatal("mkdtemp %s: %s", dir, strerror(errno));
    snprintf(db, 600, "%s/%s.db", dir, name);
    snprintf(shm, 620, "%s-shm", db);
    snprintf(ref_db, 600, "%s/reference.db", dir);
    g_db = db;
    printf("%s: working in %s\n", kt_prog, dir);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    g_up = calloc((size_t)kills * UPLOADS_PER_CYCLE, sizeof *g_up);
    g_alias = calloc((size_t)kills, sizeof *g_alias);
    if (!g_up || !g_alias) fatal("out of memory");
}

// The run's verdict: FAIL with the files kept, or PASS with dir removed (kept when $env_keep is
// 1). Returns the exit status.
static int kt_finish(const char *dir, const char *env_keep) {
    if (g_failures) {
        printf("%s: FAIL (%d failed checks; files kept in %s)\n", kt_prog, g_failures, dir);
        return EXIT_FAILURE;
    }
    const char *keep = getenv(env_keep);
    if (!(keep && *keep == '1')) {
        char cmd[600];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        if (system(cmd) != 0) fprintf(stderr, "%s: could not remove %s\n", kt_prog, dir);
    }
    printf("%s: PASS\n", kt_prog);
    curl_global_cleanup();
    return EXIT_SUCCESS;
}

#endif
