/*
 * bench_store: what the durable store costs the service, on each backend in the same run: a
 * fresh SQLite file in a temporary directory under /tmp (removed at the end), and, when a URI is
 * given (--pg URI or METASERVE_BENCH_PG), a PostgreSQL database. Prints one JSON object per case
 * and backend on stdout and nothing else there; notes, errors and a side-by-side table of the
 * headline figures (SQLite | PostgreSQL | their ratio) go to stderr.
 *
 * Cases:
 *   model_load       serving_get of a model version on a cache miss (store_model_get, blob
 *                    decode, config parse) against a hit, for the classic net (1-40-40-1, 1761
 *                    parameters) and the large one (784-256-256-5, ~268k parameters).
 *   adapt_store      store_adaptation_put of a classic-net adaptation: what persisting an
 *                    adaptation adds to POST /v1/models/{name}/adapt (one commit), each
 *                    followed by one round of a disk-flush reference (8 KB write + fdatasync).
 *   job_claim        store_job_claim with 1000 jobs queued (refilled after every claim, so the
 *                    depth stays 1000; each claimed job is ended untimed, as a worker would), and
 *                    store_job_create.
 *   dataset_ingest   dataset_pack_classes + store_dataset_put of a pool of random floats in 100
 *                    classes (10,000 x 784; 100,000 x 784 with --full), and store_dataset_get.
 *   pool             a 100,000 x 784 pool stored and read back, each in a child process of its
 *                    own, so that ru_maxrss shows what the put and the get hold (the store test's
 *                    "one copy" measure).
 *   checkpoint_cost  trainer_save + store_job_checkpoint against trainer_step, as the fraction of
 *                    training time the job pool's default checkpoint interval costs.
 *
 * "Cold" means a registry miss, not a cold disk: the data were just written, so the page caches
 * hold them. Every write runs with the backend's own settings: SQLite WAL with group commit
 * (a commit waits for an fsync of the WAL that started after it; alone, one fsync per commit);
 * PostgreSQL with whatever the server runs (a commit waits for its WAL flush when fsync and
 * synchronous_commit are on). Single-threaded, one Store connection at a time, one OpenBLAS thread.
 *
 * The PostgreSQL database should be one the benchmark may write to: it refuses a database with
 * queued or running jobs (the queue depth would be wrong), and at the end leaves no models,
 * datasets, adaptations or open jobs of its own behind, only ended job rows.
 */
#include <cblas.h>
#include <dirent.h>
#include <malloc.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "metaserve/core/rng.h"
#include "metaserve/core/status.h"
#include "metaserve/codec/codec.h"
#include "metaserve/jobs/jobs.h"
#include "metaserve/meta/meta.h"
#include "metaserve/meta/train.h"
#include "metaserve/nn/blas.h"
#include "metaserve/nn/mlp.h"
#include "metaserve/serving/serving.h"
#include "metaserve/store/blob.h"
#include "metaserve/store/store.h"
#include "metaserve/tasks/dataset.h"

#include "bench_util.h"

#define QUEUE_DEPTH 1000 // queued jobs while claims are timed
#define N_CLASSES   100  // classes in the dataset_ingest and pool data
#define X_DIM       784  // their row width

/* ---- options, backends, figures ---- */

typedef struct {
    int quick;           // 1: short smoke run (<= 15 s per backend)
    int full;            // 1: the larger sizes (a few minutes per backend)
    const char *only;    // non-NULL: run only this case
    const char *pg;      // PostgreSQL URI, or NULL: SQLite only
    int sqlite;          // 1: run on SQLite
    int load_reps;       // model_load: timed gets per path and net
    int adapt_reps;      // adapt_store: timed puts
    int claim_reps;      // job_claim: timed claims
    int64_t ds_rows;     // dataset_ingest: rows in the pool
    int ds_reps;         // dataset_ingest: repetitions (median reported)
    int64_t pool_rows;   // pool: rows (a multiple of N_CLASSES)
    int ckpt_reps[2];    // checkpoint_cost: timed checkpoints, classic / large
    long train_iters[2]; // checkpoint_cost: timed trainer_step calls, classic / large
} Options;

// The headline figures, one table row each (NaN: not measured).
typedef enum {
    F_LOAD_CLASSIC_COLD,
    F_LOAD_CLASSIC_WARM,
    F_LOAD_LARGE_COLD,
    F_LOAD_LARGE_COLD_P99,
    F_LOAD_LARGE_STORE,
    F_CHECK_XXH3,
    F_CHECK_FNV,
    F_CHECK_RATIO,
    F_ADAPT_P50,
    F_ADAPT_P99,
    F_FLUSH_P50,
    F_ADAPT_FLUSH,
    F_CLAIM_P50,
    F_CLAIM_P99,
    F_CREATE_P50,
    F_INGEST_STORE,
    F_INGEST_E2E,
    F_INGEST_GET,
    F_POOL_STORE,
    F_POOL_GET,
    F_POOL_PUT_COPIES,
    F_POOL_GET_COPIES,
    F_CKPT_CLASSIC,
    F_CKPT_LARGE,
    F_CKPT_LARGE_FRACTION,
    N_FIGS
} Fig;

// Row labels, used as formats: "%s" takes the pool's shape, "%%" prints a percent sign.
static const struct {
    const char *label;
    int decimals;
} FIGS[N_FIGS] = {
    [F_LOAD_CLASSIC_COLD] = {"model load 1-40-40-1, cold p50 (us)", 1},
    [F_LOAD_CLASSIC_WARM] = {"model load 1-40-40-1, warm p50 (us)", 2},
    [F_LOAD_LARGE_COLD] = {"model load 784-256-256-5, cold p50 (us)", 0},
    [F_LOAD_LARGE_COLD_P99] = {"model load 784-256-256-5, cold p99 (us)", 0},
    [F_LOAD_LARGE_STORE] = {"model load 784-256-256-5, store_model_get p50 (us)", 0},
    [F_CHECK_XXH3] = {"blob check 784-256-256-5 params, XXH3 (format 2), p50 (us)", 1},
    [F_CHECK_FNV] = {"blob check 784-256-256-5 params, FNV-1a (format 1), p50 (us)", 1},
    [F_CHECK_RATIO] = {"blob check FNV-1a p50 / XXH3 p50", 1},
    [F_ADAPT_P50] = {"adaptation commit (store_adaptation_put), p50 (us)", 1},
    [F_ADAPT_P99] = {"adaptation commit (store_adaptation_put), p99 (us)", 1},
    [F_FLUSH_P50] = {"reference: 8 KB append + fdatasync under /tmp, interleaved, p50 (us)", 1},
    [F_ADAPT_FLUSH] = {"adaptation commit p50 / reference p50", 2},
    [F_CLAIM_P50] = {"job claim with 1,000 queued, p50 (us)", 1},
    [F_CLAIM_P99] = {"job claim with 1,000 queued, p99 (us)", 1},
    [F_CREATE_P50] = {"job create, p50 (us)", 1},
    [F_INGEST_STORE] = {"dataset ingest %s, store (MB/s)", 1},
    [F_INGEST_E2E] = {"dataset ingest %s, pack + store (MB/s)", 1},
    [F_INGEST_GET] = {"dataset ingest %s, read back (MB/s)", 1},
    [F_POOL_STORE] = {"pool %s, store (MB/s)", 1},
    [F_POOL_GET] = {"pool %s, read back (MB/s)", 1},
    [F_POOL_PUT_COPIES] = {"pool %s, put peak RSS (copies of the data)", 2},
    [F_POOL_GET_COPIES] = {"pool %s, get peak RSS (copies of the data)", 2},
    [F_CKPT_CLASSIC] = {"checkpoint 1-40-40-1 (21 KB), mean (us)", 0},
    [F_CKPT_LARGE] = {"checkpoint 784-256-256-5 (3.2 MB), mean (us)", 0},
    [F_CKPT_LARGE_FRACTION] = {"checkpoint 784-256-256-5, share of training time (%%)", 2},
};

typedef struct {
    const char *name; // "sqlite" | "postgresql": the JSON field and the table column
    const char *path; // the file or URI (the pool case's children open their own connection)
    Store *st;        // this backend's connection (closed around the pool case's children)
    double fig[N_FIGS];
} Backend;

static void report(const Backend *b, const char *what, const MsError *err) {
    fprintf(stderr, "bench_store: %s: %s: %s: %s\n", b->name, what, ms_status_str(err->code),
            err->msg);
}

// Opens a JSON line: {"case":"...","backend":"..."
static void line_begin(const char *name, const Backend *b) {
    printf("{\"case\":\"%s\",\"backend\":\"%s\"", name, b->name);
}

static void line_end(void) {
    printf("}\n");
    fflush(stdout);
}

/* ---- configs ---- */

// The classic MAML sinusoid setup: train_config_defaults (1-40-40-1 relu, meta-batch 25, 1 step).
static void classic_config(TrainConfig *c) {
    train_config_defaults(c);
    snprintf(c->name, sizeof c->name, "bench-classic");
}

// bench_meta's large case: 784-256-256-5 relu, 5-way 5-shot gaussian, meta-batch 4, maml.
static void large_config(TrainConfig *c) {
    train_config_defaults(c);
    snprintf(c->name, sizeof c->name, "bench-large");
    c->n_sizes = 4;
    c->sizes[0] = 784, c->sizes[1] = 256, c->sizes[2] = 256, c->sizes[3] = 5;
    c->head = MLP_HEAD_CLASSIFICATION;
    memset(&c->tasks, 0, sizeof c->tasks);
    snprintf(c->tasks.family, sizeof c->tasks.family, "gaussian");
    c->tasks.n_way = 5;
    c->tasks.dim = 784;
    c->k_support = 5;
    c->k_query = 5;
    c->meta_batch = 4;
}

static const char *net_name(int large) {
    return large ? "large" : "classic";
}

static void net_config(TrainConfig *c, int large) {
    if (large)
        large_config(c);
    else
        classic_config(c);
}

/* ---- the disk-flush reference ---- */

// A same-run reference for commit latencies: a durable commit waits for about one small write
// and fdatasync (PostgreSQL's WAL flush; SQLite's only at WAL checkpoints). The reference appends
// 8 KB blocks to a preallocated 8 MB file under /tmp (wrapping around), as a WAL fills its
// segment, each followed by fdatasync. The disk's flush time moves by several times from one
// second to the next on a shared VM, so rounds are interleaved with the timed calls.
#define FLUSH_BLOCK 8192
#define FLUSH_FILE  (8u << 20)

typedef struct {
    int fd;
    size_t off;
    char path[40];
} Flush;

static int flush_open(Flush *f) {
    static const char zero[FLUSH_BLOCK];
    snprintf(f->path, sizeof f->path, "/tmp/bench_store_flush_XXXXXX");
    f->off = 0;
    if ((f->fd = mkstemp(f->path)) < 0) return -1;
    for (size_t o = 0; o < FLUSH_FILE; o += FLUSH_BLOCK)
        if (pwrite(f->fd, zero, FLUSH_BLOCK, (off_t)o) != FLUSH_BLOCK) return -1;
    return fsync(f->fd);
}

// One round's microseconds, or a negative value on an I/O error.
static double flush_once(Flush *f) {
    static char block[FLUSH_BLOCK];
    memset(block, (int)(f->off / FLUSH_BLOCK) & 0xff, sizeof block);
    double t0 = now_us();
    if (pwrite(f->fd, block, FLUSH_BLOCK, (off_t)f->off) != FLUSH_BLOCK || fdatasync(f->fd) != 0)
        return -1;
    f->off = (f->off + FLUSH_BLOCK) % FLUSH_FILE;
    return now_us() - t0;
}

static void flush_close(Flush *f) {
    if (f->fd < 0) return;
    close(f->fd);
    unlink(f->path);
    f->fd = -1;
}

/* ---- model_load ---- */

// Stores a new version of the net's model: its printed config and freshly initialised
// parameters. *P and *version receive the parameter count and the version number.
static MsStatus put_model(Store *st, const TrainConfig *c, size_t *P, int *version, MsError *err) {
    MlpSpec spec;
    MsStatus s = mlp_spec_init(&spec, c->sizes, c->n_sizes, c->act, c->head, err);
    if (s != MS_OK) return s;
    char *json = NULL;
    float *theta = malloc(spec.P * sizeof *theta);
    if (!theta) return ms_fail(err, MS_ERR_NOMEM, "out of memory");
    if ((s = codec_config_print(c, &json, err)) != MS_OK) goto done;
    Rng rng;
    rng_seed(&rng, 1);
    mlp_init_params(&spec, theta, &rng);
    StoreModel m;
    memset(&m, 0, sizeof m);
    snprintf(m.name, sizeof m.name, "%s", c->name);
    snprintf(m.algorithm, sizeof m.algorithm, "%s", meta_algo_name(c->algo));
    m.config = json;
    m.hyper = "{}";
    m.metrics = "{}";
    m.n_params = spec.P;
    m.params = theta;
    s = store_model_put(st, &m, version, err);
    *P = spec.P;
done:
    free(json);
    free(theta);
    return s;
}

// Times reps serving_get calls of name; cold: the name is invalidated before each one.
static MsStatus time_gets(Serving *r, Store *st, const char *name, int cold, int reps, double *us,
                          MsError *err) {
    for (int i = 0; i < reps; i++) {
        ServingModel *m;
        if (cold) serving_invalidate(r, name);
        double t0 = now_us();
        MsStatus s = serving_get(r, st, name, &m, err);
        us[i] = now_us() - t0;
        if (s != MS_OK) return s;
        serving_release(r, m);
    }
    return MS_OK;
}

// Times reps blob_check calls of P random floats encoded in format `version` into us[].
static MsStatus time_blob_checks(unsigned version, size_t P, int reps, double *us, MsError *err) {
    float *x = malloc(P * sizeof *x);
    size_t len = 0;
    MsStatus s = blob_encoded_size(&len, BLOB_F32, P, err);
    unsigned char *b = s == MS_OK ? malloc(len) : NULL;
    if (!x || !b) {
        free(x);
        free(b);
        return s != MS_OK ? s : ms_fail(err, MS_ERR_NOMEM, "blob check: out of memory");
    }
    Rng g;
    rng_seed(&g, 11);
    for (size_t i = 0; i < P; i++)
        x[i] = (float)rng_normal(&g);
    s = blob_encode_version(b, len, &len, version, BLOB_F32, x, P, err);
    for (int i = 0; s == MS_OK && i < reps; i++) {
        double t0 = now_us();
        s = blob_check(b, len, BLOB_F32, NULL, err);
        us[i] = now_us() - t0;
    }
    free(x);
    free(b);
    return s;
}

// Times reps bare store_model_get calls: the database read and blob decode of a cold load.
static MsStatus time_store_gets(Store *st, const char *name, int version, int reps, double *us,
                                MsError *err) {
    for (int i = 0; i < reps; i++) {
        StoreModel m;
        double t0 = now_us();
        MsStatus s = store_model_get(st, name, version, &m, err);
        us[i] = now_us() - t0;
        store_model_free(&m);
        if (s != MS_OK) return s;
    }
    return MS_OK;
}

static int bench_model_load(Backend *b, int large, const Options *o) {
    TrainConfig c;
    net_config(&c, large);
    MsError err = {0};
    Serving *r = NULL;
    size_t P = 0, n = (size_t)o->load_reps;
    int version = 0;
    double *cold = malloc(n * sizeof *cold), *warm = malloc(n * sizeof *warm);
    double *raw = malloc(n * sizeof *raw);
    int rc = 1;
    if (!cold || !warm || !raw) {
        fprintf(stderr, "bench_store: model_load: out of memory\n");
        goto done;
    }
    if (put_model(b->st, &c, &P, &version, &err) != MS_OK || serving_create(&r, 4, &err) != MS_OK ||
        time_gets(r, b->st, c.name, 1, 5, cold, &err) != MS_OK) { // warm-up: statements, allocator
        report(b, "model_load: setup", &err);
        goto done;
    }
    ServingStats before, after;
    serving_stats(r, &before);
    if (time_gets(r, b->st, c.name, 1, o->load_reps, cold, &err) != MS_OK ||
        time_gets(r, b->st, c.name, 0, o->load_reps, warm, &err) != MS_OK ||
        time_store_gets(b->st, c.name, version, o->load_reps, raw, &err) != MS_OK) {
        report(b, "model_load", &err);
        goto done;
    }
    serving_stats(r, &after);
    // The figures mean what they say only if every cold get missed and every warm one hit.
    if (after.misses - before.misses != o->load_reps || after.hits - before.hits != o->load_reps) {
        fprintf(stderr, "bench_store: model_load: %lld misses and %lld hits for %d gets of each\n",
                (long long)(after.misses - before.misses), (long long)(after.hits - before.hits),
                o->load_reps);
        goto done;
    }
    double c50 = pct(cold, n, 0.5), c99 = pct(cold, n, 0.99);
    double w50 = pct(warm, n, 0.5), w99 = pct(warm, n, 0.99), s50 = pct(raw, n, 0.5);
    line_begin("model_load", b);
    printf(",\"net\":\"%s\",\"sizes\":\"%d-%d-%d-%d\",\"params\":%zu,\"param_bytes\":%zu,"
           "\"reps\":%d",
           net_name(large), c.sizes[0], c.sizes[1], c.sizes[2], c.sizes[3], P, P * sizeof(float),
           o->load_reps);
    print_num("cold_p50_us", c50, 2);
    print_num("cold_p99_us", c99, 2);
    print_num("warm_p50_us", w50, 2);
    print_num("warm_p99_us", w99, 2);
    print_num("cold_warm_ratio", c50 / w50, 2);
    print_num("store_get_p50_us", s50, 2);
    print_num("store_get_p99_us", pct(raw, n, 0.99), 2);
    line_end();
    if (large) {
        b->fig[F_LOAD_LARGE_COLD] = c50;
        b->fig[F_LOAD_LARGE_COLD_P99] = c99;
        b->fig[F_LOAD_LARGE_STORE] = s50;
        // The checksum's share of a cold load, both formats in the same run: the version written
        // (XXH3) against format 1 (FNV-1a), which older rows still carry.
        if (time_blob_checks(BLOB_FORMAT_VERSION, P, o->load_reps, raw, &err) != MS_OK) {
            report(b, "model_load: blob check", &err);
            goto done;
        }
        double x50 = pct(raw, n, 0.5);
        if (time_blob_checks(BLOB_FORMAT_FNV1A, P, o->load_reps, raw, &err) != MS_OK) {
            report(b, "model_load: blob check", &err);
            goto done;
        }
        double f50 = pct(raw, n, 0.5);
        printf("{\"case\":\"blob_check\",\"backend\":\"none\",\"params\":%zu", P);
        print_num("xxh3_p50_us", x50, 2);
        print_num("fnv1a_p50_us", f50, 2);
        print_num("fnv1a_over_xxh3", f50 / x50, 2);
        line_end();
        b->fig[F_CHECK_XXH3] = x50;
        b->fig[F_CHECK_FNV] = f50;
        b->fig[F_CHECK_RATIO] = f50 / x50;
    } else {
        b->fig[F_LOAD_CLASSIC_COLD] = c50;
        b->fig[F_LOAD_CLASSIC_WARM] = w50;
    }
    rc = 0;
done:
    serving_destroy(r);
    // Leave nothing behind in a database that outlives the run.
    if (version > 0 && store_model_delete(b->st, c.name, 0, &err) != MS_OK) {
        report(b, "model_load: cleanup", &err);
        rc = 1;
    }
    free(cold);
    free(warm);
    free(raw);
    return rc;
}

/* ---- adapt_store ---- */

// Stores adaptations of a classic-net version as POST .../adapt does after adapting: one
// store_adaptation_put (blob encoding with checksum, insert, commit) per adaptation, each
// followed by one round of the disk-flush reference.
static int bench_adapt_store(Backend *b, const Options *o) {
    TrainConfig c;
    classic_config(&c);
    snprintf(c.name, sizeof c.name, "bench-adapt");
    MsError err = {0};
    size_t P = 0, n = (size_t)o->adapt_reps;
    int version = 0, rc = 1;
    double *us = malloc(n * sizeof *us), *ref = malloc(n * sizeof *ref);
    float *theta = NULL;
    Flush fl = {.fd = -1};
    if (!us || !ref) {
        fprintf(stderr, "bench_store: adapt_store: out of memory\n");
        goto done;
    }
    if (flush_open(&fl) != 0) {
        perror("bench_store: adapt_store: the flush reference file");
        goto done;
    }
    if (put_model(b->st, &c, &P, &version, &err) != MS_OK) goto failed;
    if (!(theta = malloc(P * sizeof *theta))) {
        fprintf(stderr, "bench_store: adapt_store: out of memory\n");
        goto done;
    }
    Rng rng;
    rng_seed(&rng, 2);
    for (size_t i = 0; i < P; i++)
        theta[i] = (float)rng_range(&rng, -0.5, 0.5);
    StoreAdaptation a;
    memset(&a, 0, sizeof a);
    snprintf(a.model, sizeof a.model, "%s", c.name);
    a.version = version;
    a.n_params = P;
    a.params = theta;
    a.support_loss_before = 1.5;
    a.support_loss_after = 0.1;
    for (int i = -20; i < o->adapt_reps; i++) { // 20 warm-up rounds: statements, allocator
        a.expires_at = store_now_ms() + 3600 * 1000;
        double t0 = now_us();
        MsStatus s = store_adaptation_put(b->st, &a, &err);
        double t = now_us() - t0, f = flush_once(&fl);
        if (s != MS_OK) goto failed;
        if (f < 0) {
            perror("bench_store: adapt_store: the flush reference");
            goto done;
        }
        if (i >= 0) us[i] = t, ref[i] = f;
    }
    double m = mean(us, n), p50 = pct(us, n, 0.5), p99 = pct(us, n, 0.99);
    double f50 = pct(ref, n, 0.5);
    line_begin("adapt_store", b);
    printf(",\"params\":%zu,\"reps\":%d", P, o->adapt_reps);
    print_num("put_p50_us", p50, 2);
    print_num("put_p99_us", p99, 2);
    print_num("put_mean_us", m, 2);
    print_num("flush_p50_us", f50, 2);
    print_num("flush_p99_us", pct(ref, n, 0.99), 2);
    print_num("put_flush_ratio", p50 / f50, 3);
    line_end();
    b->fig[F_ADAPT_P50] = p50;
    b->fig[F_ADAPT_P99] = p99;
    b->fig[F_FLUSH_P50] = f50;
    b->fig[F_ADAPT_FLUSH] = p50 / f50;
    rc = 0;
    goto done;
failed:
    report(b, "adapt_store", &err);
done:
    // Deleting the model deletes its adaptations too.
    if (version > 0 && store_model_delete(b->st, c.name, 0, &err) != MS_OK) {
        report(b, "adapt_store: cleanup", &err);
        rc = 1;
    }
    flush_close(&fl);
    free(us);
    free(ref);
    free(theta);
    return rc;
}

/* ---- job_claim ---- */

// Cancels the jobs in ids that are still queued (a claimed one answers MS_ERR_CONFLICT).
static MsStatus cancel_queued(Store *st, char (*ids)[STORE_ID_MAX], size_t n, MsError *err) {
    for (size_t i = 0; i < n; i++) {
        MsError e = {0};
        MsStatus s = store_job_cancel(st, ids[i], NULL, &e);
        if (s != MS_OK && s != MS_ERR_CONFLICT) {
            *err = e;
            return s;
        }
    }
    return MS_OK;
}

static int bench_job_claim(Backend *b, const Options *o) {
    TrainConfig c;
    classic_config(&c);
    MsError err = {0};
    char *json = NULL;
    size_t n_claim = (size_t)o->claim_reps, n_create = QUEUE_DEPTH + n_claim, k = 0;
    double *claim = malloc(n_claim * sizeof *claim), *create = malloc(n_create * sizeof *create);
    char(*ids)[STORE_ID_MAX] = malloc(n_create * sizeof *ids);
    int rc = 1;
    if (!claim || !create || !ids || codec_config_print(&c, &json, &err) != MS_OK) {
        fprintf(stderr, "bench_store: job_claim: setup failed\n");
        goto done;
    }
    // The service always passes a queue limit, so create runs its count of queued jobs too; this
    // one is high enough never to refuse.
    const int max_queued = 100 * QUEUE_DEPTH;
    for (int i = 0; i < QUEUE_DEPTH; i++, k++) {
        double t0 = now_us();
        MsStatus s = store_job_create(b->st, json, c.name, c.iterations, max_queued, ids[k], &err);
        create[k] = now_us() - t0;
        if (s != MS_OK) goto failed;
    }
    for (size_t i = 0; i < n_claim; i++, k++) {
        StoreJob j;
        int claimed = 0;
        double t0 = now_us();
        MsStatus s = store_job_claim(b->st, &j, &claimed, &err);
        claim[i] = now_us() - t0;
        if (s == MS_OK && !claimed) {
            fprintf(stderr, "bench_store: %s: job_claim: the queue was empty\n", b->name);
            goto done;
        }
        // Untimed: the job ends, as a worker's would, so running jobs do not pile up (a service
        // has at most one per worker).
        if (s == MS_OK)
            s = store_job_finish(b->st, j.id, JOB_FAILED, "benchmark", NULL, NULL, &err);
        store_job_free(&j);
        if (s != MS_OK) goto failed;
        // Refill, so every claim sees QUEUE_DEPTH queued jobs.
        t0 = now_us();
        s = store_job_create(b->st, json, c.name, c.iterations, max_queued, ids[k], &err);
        create[k] = now_us() - t0;
        if (s != MS_OK) goto failed;
    }
    double c50 = pct(claim, n_claim, 0.5), c99 = pct(claim, n_claim, 0.99);
    double m50 = pct(create, n_create, 0.5);
    line_begin("job_claim", b);
    printf(",\"queue\":%d,\"claims\":%zu,\"creates\":%zu,\"config_bytes\":%zu", QUEUE_DEPTH,
           n_claim, n_create, strlen(json));
    print_num("claim_p50_us", c50, 2);
    print_num("claim_p99_us", c99, 2);
    print_num("create_p50_us", m50, 2);
    print_num("create_p99_us", pct(create, n_create, 0.99), 2);
    line_end();
    b->fig[F_CLAIM_P50] = c50;
    b->fig[F_CLAIM_P99] = c99;
    b->fig[F_CREATE_P50] = m50;
    rc = 0;
    goto done;
failed:
    report(b, "job_claim", &err);
done:
    // Claims take the oldest first, so the jobs still queued are the last QUEUE_DEPTH created.
    if (k > 0 && cancel_queued(b->st, ids + (k > QUEUE_DEPTH ? k - QUEUE_DEPTH : 0),
                               k > QUEUE_DEPTH ? QUEUE_DEPTH : k, &err) != MS_OK) {
        report(b, "job_claim: cleanup", &err);
        rc = 1;
    }
    free(json);
    free(claim);
    free(create);
    free(ids);
    return rc;
}

/* ---- dataset_ingest ---- */

// One repetition: pack, store, read back, check, delete. Times in seconds.
typedef struct {
    double pack, store, get, check;
    size_t bytes; // packed x + y + index
} IngestTiming;

static MsStatus ingest_once(Store *st, const DatasetClassesIn *in, IngestTiming *t, MsError *err) {
    DatasetPacked p;
    StoreDataset d, back;
    StoreDatasetData data = {0}, got = {0};
    memset(&d, 0, sizeof d);
    memset(&back, 0, sizeof back);
    double t0 = now_us();
    MsStatus s = dataset_pack_classes(&p, in, NULL, err);
    t->pack = (now_us() - t0) * 1e-6;
    if (s != MS_OK) return s;
    snprintf(d.name, sizeof d.name, "bench-pool");
    snprintf(d.kind, sizeof d.kind, "%s", dataset_kind_name(p.kind));
    d.n_items = p.n_items;
    d.n_rows = p.n_rows;
    d.x_dim = p.x_dim;
    d.y_dim = p.y_dim;
    d.meta = "{}";
    data = (StoreDatasetData){
        .x = p.x, .n_x = p.n_x, .y = p.y, .n_y = p.n_y, .index = p.index, .n_index = p.n_index};
    t0 = now_us();
    s = store_dataset_put(st, &d, &data, err);
    t->store = (now_us() - t0) * 1e-6;
    t->bytes = sizeof(float) * (p.n_x + p.n_y) + sizeof(int32_t) * p.n_index;
    dataset_packed_free(&p);
    if (s != MS_OK) return s;

    t0 = now_us();
    s = store_dataset_get(st, d.id, &back, &got, err);
    t->get = (now_us() - t0) * 1e-6;
    if (s == MS_OK) {
        // What a job does before it trusts the arrays it read.
        DatasetView v = {.kind = DATASET_CLASSES,
                         .x_dim = back.x_dim,
                         .y_dim = back.y_dim,
                         .n_rows = back.n_rows,
                         .x = got.x,
                         .n_x = got.n_x,
                         .y = got.y,
                         .n_y = got.n_y,
                         .index = got.index,
                         .n_index = got.n_index,
                         .n_items = back.n_items};
        t0 = now_us();
        s = dataset_view_check(&v, err);
        t->check = (now_us() - t0) * 1e-6;
    }
    store_dataset_data_free(&got);
    store_dataset_free(&back);
    // Keep the database at one pool: the next repetition writes into the freed pages.
    MsStatus s2 = store_dataset_delete(st, d.id, s == MS_OK ? err : NULL);
    return s != MS_OK ? s : s2;
}

// Median over the repetitions of the field at byte offset off of IngestTiming (v: scratch).
static double median_of(const IngestTiming *t, size_t n, size_t off, double *v) {
    for (size_t r = 0; r < n; r++)
        v[r] = *(const double *)((const char *)&t[r] + off);
    return pct(v, n, 0.5);
}

static int bench_dataset_ingest(Backend *b, const Options *o) {
    size_t rows = (size_t)o->ds_rows, n_x = rows * X_DIM, n = (size_t)o->ds_reps;
    float *x = malloc(n_x * sizeof *x);
    int32_t *labels = malloc(rows * sizeof *labels);
    IngestTiming *t = calloc(n, sizeof *t);
    double *v = malloc(n * sizeof *v);
    int rc = 1;
    if (!x || !labels || !t || !v) {
        fprintf(stderr, "bench_store: dataset_ingest: out of memory for %zu rows\n", rows);
        goto done;
    }
    Rng rng;
    rng_seed(&rng, 3);
    for (size_t i = 0; i < n_x; i++)
        x[i] = (float)rng_range(&rng, -1.0, 1.0);
    for (size_t i = 0; i < rows; i++) // random labels: packing regroups rows for real
        labels[i] = (int32_t)rng_below(&rng, N_CLASSES);
    DatasetClassesIn in = {.x = x, .labels = labels, .n_rows = o->ds_rows, .x_dim = X_DIM};
    MsError err = {0};
    for (size_t r = 0; r < n; r++) {
        if (ingest_once(b->st, &in, &t[r], &err) != MS_OK) {
            report(b, "dataset_ingest", &err);
            goto done;
        }
    }
    double mb = (double)t[0].bytes / 1e6;
    double s_pack = median_of(t, n, offsetof(IngestTiming, pack), v);
    double s_store = median_of(t, n, offsetof(IngestTiming, store), v);
    double s_get = median_of(t, n, offsetof(IngestTiming, get), v);
    double s_check = median_of(t, n, offsetof(IngestTiming, check), v);
    for (size_t r = 0; r < n; r++)
        v[r] = t[r].pack + t[r].store;
    double s_e2e = pct(v, n, 0.5);
    line_begin("dataset_ingest", b);
    printf(",\"rows\":%zu,\"x_dim\":%d,\"classes\":%d,\"mb\":%.1f,\"reps\":%d", rows, X_DIM,
           N_CLASSES, mb, o->ds_reps);
    print_num("pack_s", s_pack, 4);
    print_num("store_s", s_store, 4);
    print_num("get_s", s_get, 4);
    print_num("pack_mb_s", mb / s_pack, 1);
    print_num("store_mb_s", mb / s_store, 1);
    print_num("ingest_mb_s", mb / s_e2e, 1);
    print_num("get_mb_s", mb / s_get, 1);
    print_num("check_mb_s", mb / s_check, 1);
    print_num("peak_rss_mb", peak_rss_mb(), 1);
    line_end();
    b->fig[F_INGEST_STORE] = mb / s_store;
    b->fig[F_INGEST_E2E] = mb / s_e2e;
    b->fig[F_INGEST_GET] = mb / s_get;
    rc = 0;
done:
    free(x);
    free(labels);
    free(t);
    free(v);
    return rc;
}

/* ---- pool ---- */

// What a child process reports through its pipe.
typedef struct {
    long before, inputs, after; // ru_maxrss (KiB): store open, arrays ready, after the call
    double seconds;             // the store_dataset_put or store_dataset_get call
    size_t bytes;               // the dataset's array bytes
    char id[STORE_ID_MAX];      // the stored dataset (put)
    char error[256];            // "" on success
} PoolReport;

static long maxrss_kib(void) {
    struct rusage u;
    getrusage(RUSAGE_SELF, &u);
    return u.ru_maxrss; // KiB on Linux
}

// Makes a forked child's peak RSS measure what it allocates from here on. The child starts with
// its parent's high-water mark, which earlier cases raised: writing 5 to clear_refs (Linux >= 4.0)
// lowers it to the child's current resident set. And the parent's heap holds freed, still
// resident pages that glibc would hand out again (after large frees it serves blocks of up to
// 32 MB from the heap), so that a 10,000-row pool would not show: large blocks come from fresh
// mappings instead. Returns 0 on success.
static int maxrss_reset(void) {
    malloc_trim(0);
    mallopt(M_MMAP_THRESHOLD, 1 << 20);
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (!f) return -1;
    int ok = fputs("5", f) >= 0;
    return fclose(f) == 0 && ok ? 0 : -1;
}

// The pool's packed arrays, as dataset_pack_classes lays them out for rows sorted by class:
// x uniform in [-1, 1) from seed 5; y the class of each row; index = row offsets (C + 1), test
// flags (C, all 0), original labels (C).
static float pool_x(Rng *r) {
    return (float)rng_range(r, -1.0, 1.0);
}

static int32_t pool_index(size_t k, int64_t rows) {
    const size_t C = N_CLASSES;
    if (k <= C) return (int32_t)(k * (size_t)(rows / N_CLASSES));
    if (k <= 2 * C) return 0;
    return (int32_t)(k - (2 * C + 1));
}

// Child: opens its own connection, builds the pool, stores it and reports.
static void pool_put(const char *path, int64_t rows, PoolReport *r) {
    MsError e = {0};
    Store *s = NULL;
    StoreDatasetData dd = {
        .n_x = (size_t)rows * X_DIM, .n_y = (size_t)rows, .n_index = 3 * N_CLASSES + 1};
    StoreDataset d;
    memset(&d, 0, sizeof d);
    if (maxrss_reset() != 0) {
        ms_fail(&e, MS_ERR_IO, "cannot reset the peak RSS through /proc/self/clear_refs");
        goto done;
    }
    if (store_open(&s, path, &e) != MS_OK) goto done;
    r->before = maxrss_kib();
    dd.x = malloc(dd.n_x * sizeof *dd.x);
    dd.y = malloc(dd.n_y * sizeof *dd.y);
    dd.index = malloc(dd.n_index * sizeof *dd.index);
    if (!dd.x || !dd.y || !dd.index) {
        ms_fail(&e, MS_ERR_NOMEM, "cannot allocate the pool");
        goto done;
    }
    Rng rng;
    rng_seed(&rng, 5);
    for (size_t i = 0; i < dd.n_x; i++)
        dd.x[i] = pool_x(&rng);
    for (size_t i = 0; i < dd.n_y; i++)
        dd.y[i] = (float)(i / (size_t)(rows / N_CLASSES));
    for (size_t k = 0; k < dd.n_index; k++)
        dd.index[k] = pool_index(k, rows);
    snprintf(d.name, sizeof d.name, "bench-pool");
    snprintf(d.kind, sizeof d.kind, "classes");
    d.n_items = N_CLASSES;
    d.n_rows = rows;
    d.x_dim = X_DIM;
    d.y_dim = 1;
    d.meta = "{}";
    r->inputs = maxrss_kib();
    double t0 = now_us();
    if (store_dataset_put(s, &d, &dd, &e) != MS_OK) goto done;
    r->seconds = (now_us() - t0) * 1e-6;
    r->after = maxrss_kib();
    r->bytes = d.bytes;
    memcpy(r->id, d.id, sizeof r->id);
done:
    if (!r->id[0]) snprintf(r->error, sizeof r->error, "put: %.200s", e.msg[0] ? e.msg : "failed");
    store_close(s);
    free(dd.x);
    free(dd.y);
    free(dd.index);
}

// Child: reads the pool back, reports, then (untimed) checks every value against the put's.
static void pool_get(const char *path, const char *id, int64_t rows, PoolReport *r) {
    MsError e = {0};
    Store *s = NULL;
    StoreDataset d;
    StoreDatasetData dd = {0};
    memset(&d, 0, sizeof d);
    if (maxrss_reset() != 0) {
        ms_fail(&e, MS_ERR_IO, "cannot reset the peak RSS through /proc/self/clear_refs");
        goto done;
    }
    if (store_open(&s, path, &e) != MS_OK) goto done;
    r->before = r->inputs = maxrss_kib();
    double t0 = now_us();
    if (store_dataset_get(s, id, &d, &dd, &e) != MS_OK) goto done;
    r->seconds = (now_us() - t0) * 1e-6;
    r->after = maxrss_kib();
    r->bytes = sizeof(float) * (dd.n_x + dd.n_y) + sizeof(int32_t) * dd.n_index;
    size_t bad =
        dd.n_x != (size_t)rows * X_DIM || dd.n_y != (size_t)rows || dd.n_index != 3 * N_CLASSES + 1;
    Rng rng;
    rng_seed(&rng, 5);
    for (size_t i = 0; !bad && i < dd.n_x; i++) {
        float want = pool_x(&rng);
        bad += memcmp(&dd.x[i], &want, sizeof want) != 0;
    }
    for (size_t i = 0; !bad && i < dd.n_y; i++)
        bad += dd.y[i] != (float)(i / (size_t)(rows / N_CLASSES));
    for (size_t k = 0; !bad && k < dd.n_index; k++)
        bad += dd.index[k] != pool_index(k, rows);
    if (bad)
        ms_fail(&e, MS_ERR_INTERNAL, "the pool read back differs from the one stored");
    else
        memcpy(r->id, id, sizeof r->id);
done:
    if (!r->id[0]) snprintf(r->error, sizeof r->error, "get: %.200s", e.msg[0] ? e.msg : "failed");
    store_dataset_data_free(&dd);
    store_dataset_free(&d);
    store_close(s);
}

// Runs pool_put (id NULL) or pool_get in a child process and collects its report.
static int pool_child(const Backend *b, int64_t rows, const char *id, PoolReport *r) {
    memset(r, 0, sizeof *r);
    int fds[2];
    if (pipe(fds) != 0) {
        perror("bench_store: pipe");
        return -1;
    }
    fflush(stdout); // the child must not print the parent's buffered lines again
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        perror("bench_store: fork");
        close(fds[0]);
        close(fds[1]);
        return -1;
    }
    if (pid == 0) {
        close(fds[0]);
        if (id)
            pool_get(b->path, id, rows, r);
        else
            pool_put(b->path, rows, r);
        ssize_t w = write(fds[1], r, sizeof *r);
        _exit(w == (ssize_t)sizeof *r ? 0 : 1);
    }
    close(fds[1]);
    ssize_t got = read(fds[0], r, sizeof *r);
    close(fds[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    if (got != (ssize_t)sizeof *r || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "bench_store: %s: pool: the child process failed\n", b->name);
        return -1;
    }
    if (r->error[0]) {
        fprintf(stderr, "bench_store: %s: pool: %s\n", b->name, r->error);
        return -1;
    }
    return 0;
}

// ru_maxrss is a high-water mark, so the put and the get each run in a fresh child process; the
// parent's connection is closed meanwhile (no connection crosses a fork).
static int bench_pool(Backend *b, const Options *o) {
    MsError err = {0};
    PoolReport put, get;
    store_close(b->st);
    b->st = NULL;
    int rc = pool_child(b, o->pool_rows, NULL, &put);
    if (rc == 0) rc = pool_child(b, o->pool_rows, put.id, &get);
    if (store_open(&b->st, b->path, &err) != MS_OK) {
        report(b, "pool: reopening", &err);
        return 1;
    }
    if (put.id[0] && store_dataset_delete(b->st, put.id, &err) != MS_OK) {
        report(b, "pool: cleanup", &err);
        rc = -1;
    }
    if (rc != 0) return 1;
    double mb = (double)put.bytes / 1e6, data_kib = (double)put.bytes / 1024;
    // Copies of the data held at the peak: the put counts its inputs (one copy by themselves),
    // the get the arrays it returns (one copy).
    double put_copies = (double)(put.after - put.before) / data_kib;
    double get_copies = (double)(get.after - get.before) / data_kib;
    line_begin("pool", b);
    printf(",\"rows\":%lld,\"x_dim\":%d,\"classes\":%d,\"mb\":%.1f", (long long)o->pool_rows, X_DIM,
           N_CLASSES, mb);
    print_num("store_s", put.seconds, 4);
    print_num("get_s", get.seconds, 4);
    print_num("store_mb_s", mb / put.seconds, 1);
    print_num("get_mb_s", mb / get.seconds, 1);
    print_num("put_inputs_mb", (double)(put.inputs - put.before) * 1024 / 1e6, 1);
    print_num("put_over_inputs_mb", (double)(put.after - put.inputs) * 1024 / 1e6, 1);
    print_num("get_peak_mb", (double)(get.after - get.before) * 1024 / 1e6, 1);
    print_num("put_copies", put_copies, 3);
    print_num("get_copies", get_copies, 3);
    line_end();
    b->fig[F_POOL_STORE] = mb / put.seconds;
    b->fig[F_POOL_GET] = mb / get.seconds;
    b->fig[F_POOL_PUT_COPIES] = put_copies;
    b->fig[F_POOL_GET_COPIES] = get_copies;
    return 0;
}

/* ---- checkpoint_cost ---- */

// The job pool's checkpoint (jobs.c): allocate the image, trainer_save, store_job_checkpoint.
static MsStatus checkpoint(Store *st, const char *id, const Trainer *tr, double *save_us,
                           double *store_us, MsError *err) {
    size_t n = trainer_state_bytes(tr);
    double t0 = now_us();
    void *img = malloc(n);
    if (!img) return ms_fail(err, MS_ERR_NOMEM, "cannot allocate a %zu-byte checkpoint", n);
    trainer_save(tr, img);
    double t1 = now_us();
    MsStatus s = store_job_checkpoint(st, id, tr->t, img, n, err);
    free(img);
    *save_us = t1 - t0;
    *store_us = now_us() - t1;
    return s;
}

// Claims a job for the checkpoints to land on (any queued job: only its state matters).
static MsStatus running_job(Store *st, const char *config, char id[STORE_ID_MAX], MsError *err) {
    char created[STORE_ID_MAX];
    MsStatus s = store_job_create(st, config, "bench-ckpt", 1000000, 0, created, err);
    if (s != MS_OK) return s;
    StoreJob j;
    int claimed = 0;
    if ((s = store_job_claim(st, &j, &claimed, err)) != MS_OK) return s;
    if (!claimed) s = ms_fail(err, MS_ERR_INTERNAL, "no job to claim");
    memcpy(id, j.id, STORE_ID_MAX);
    store_job_free(&j);
    return s;
}

static void print_ckpt(Backend *b, const Trainer *tr, int large, long iters, double iter_us,
                       double *ck, double *save, double *store, size_t n) {
    JobPoolConfig pc;
    jobpool_config_defaults(&pc);
    // The pool checkpoints at whichever comes first: checkpoint_every iterations, or the first
    // iteration that ends checkpoint_seconds after the last checkpoint.
    double by_count = pc.checkpoint_every > 0 ? (double)pc.checkpoint_every : INFINITY;
    double by_time =
        pc.checkpoint_seconds > 0 ? ceil(pc.checkpoint_seconds * 1e6 / iter_us) : INFINITY;
    double interval = fmin(by_count, by_time);
    double ck_us = mean(ck, n), fraction = ck_us / (interval * iter_us);
    line_begin("checkpoint_cost", b);
    printf(",\"net\":\"%s\",\"algo\":\"%s\",\"steps\":%d,\"meta_batch\":%d,\"params\":%zu,"
           "\"checkpoint_bytes\":%zu,\"iters\":%ld,\"checkpoints\":%zu",
           net_name(large), meta_algo_name(tr->cfg.algo), tr->cfg.inner_steps, tr->cfg.meta_batch,
           tr->spec.P, trainer_state_bytes(tr), iters, n);
    print_num("iteration_us", iter_us, 2);
    print_num("checkpoint_us", ck_us, 2);
    print_num("save_us", mean(save, n), 2);
    print_num("store_us", mean(store, n), 2);
    print_num("checkpoint_p50_us", pct(ck, n, 0.5), 2);
    print_num("checkpoint_p99_us", pct(ck, n, 0.99), 2);
    printf(",\"checkpoint_every\":%lld", (long long)pc.checkpoint_every);
    print_num("checkpoint_seconds", pc.checkpoint_seconds, 1);
    print_num("interval_iters", interval, 0);
    print_num("fraction", fraction, 6);
    line_end();
    b->fig[large ? F_CKPT_LARGE : F_CKPT_CLASSIC] = ck_us;
    if (large) b->fig[F_CKPT_LARGE_FRACTION] = 100 * fraction;
}

static int bench_checkpoint(Backend *b, int large, const Options *o) {
    TrainConfig c;
    net_config(&c, large);
    MsError err = {0};
    Trainer tr;
    memset(&tr, 0, sizeof tr);
    char *json = NULL, id[STORE_ID_MAX] = "";
    size_t n = (size_t)o->ckpt_reps[large];
    long iters = o->train_iters[large];
    double *ck = malloc(n * sizeof *ck), *save = malloc(n * sizeof *save);
    double *store = malloc(n * sizeof *store);
    int rc = 1;
    if (!ck || !save || !store) {
        fprintf(stderr, "bench_store: checkpoint_cost: out of memory\n");
        goto done;
    }
    if (codec_config_print(&c, &json, &err) != MS_OK || trainer_init(&tr, &c, &err) != MS_OK ||
        running_job(b->st, json, id, &err) != MS_OK)
        goto failed;
    for (int i = 0; i < 3; i++) // warm-up: first-touch of the work blocks, statement prepare
        if (trainer_step(&tr, NULL, &err) != MS_OK ||
            checkpoint(b->st, id, &tr, &save[0], &store[0], &err) != MS_OK)
            goto failed;
    // Iterations back to back, as a worker runs them between checkpoints.
    double t0 = now_us();
    for (long i = 0; i < iters; i++)
        if (trainer_step(&tr, NULL, &err) != MS_OK) goto failed;
    double iter_us = (now_us() - t0) / (double)iters;
    // Each checkpoint right after an (untimed) iteration, as in the worker loop.
    for (size_t i = 0; i < n; i++) {
        if (trainer_step(&tr, NULL, &err) != MS_OK ||
            checkpoint(b->st, id, &tr, &save[i], &store[i], &err) != MS_OK)
            goto failed;
        ck[i] = save[i] + store[i];
    }
    print_ckpt(b, &tr, large, iters, iter_us, ck, save, store, n);
    rc = 0;
    goto done;
failed:
    report(b, "checkpoint_cost", &err);
done:
    if (id[0] && store_job_finish(b->st, id, JOB_FAILED, "benchmark", NULL, NULL, &err) != MS_OK) {
        report(b, "checkpoint_cost: cleanup", &err);
        rc = 1;
    }
    trainer_free(&tr);
    free(json);
    free(ck);
    free(save);
    free(store);
    return rc;
}

/* ---- the table ---- */

// "100,000 x 784 (314.0 MB)": rows, width and the packed bytes of a pool of that size.
static void shape(char *out, size_t cap, int64_t rows) {
    double mb = 4.0 * ((double)rows * (X_DIM + 1) + 3 * N_CLASSES + 1) / 1e6;
    if (rows >= 1000)
        snprintf(out, cap, "%lld,%03lld x %d (%.1f MB)", (long long)(rows / 1000),
                 (long long)(rows % 1000), X_DIM, mb);
    else
        snprintf(out, cap, "%lld x %d (%.1f MB)", (long long)rows, X_DIM, mb);
}

static void cell(const Backend *b, int ran, Fig f) {
    if (!ran)
        fprintf(stderr, " skipped |");
    else if (isfinite(b->fig[f]))
        fprintf(stderr, " %.*f |", FIGS[f].decimals, b->fig[f]);
    else
        fprintf(stderr, " - |");
}

// The headline figures side by side on stderr, as a Markdown table.
static void print_table(const Backend *sq, int sq_ran, const Backend *pg, int pg_ran,
                        const Options *o) {
    char ds[64], pool[64];
    shape(ds, sizeof ds, o->ds_rows);
    shape(pool, sizeof pool, o->pool_rows);
    fprintf(stderr,
            "\n| figure | SQLite | PostgreSQL | PostgreSQL / SQLite |\n|---|---|---|---|\n");
    for (int f = 0; f < N_FIGS; f++) {
        if (!isfinite(sq->fig[f]) && !isfinite(pg->fig[f])) continue; // case not run
        char label[160];
        const char *arg = f >= F_POOL_STORE && f <= F_POOL_GET_COPIES ? pool : ds;
        snprintf(label, sizeof label, FIGS[f].label, arg);
        fprintf(stderr, "| %s |", label);
        cell(sq, sq_ran, (Fig)f);
        cell(pg, pg_ran, (Fig)f);
        double r = pg->fig[f] / sq->fig[f];
        if (sq_ran && pg_ran && isfinite(r))
            fprintf(stderr, " %.2f |\n", r);
        else
            fprintf(stderr, " - |\n");
    }
}

/* ---- main ---- */

static void usage(FILE *f) {
    fprintf(f, "usage: bench_store [--quick | --full] [--case NAME] [--pg URI] [--backend B]\n"
               "  --quick       smoke run (< 15 s per backend): fewer repetitions, 10,000-row "
               "pools\n"
               "  --full        larger sizes: 1000 repetitions, a 100,000-row dataset_ingest, "
               "longer\n"
               "                checkpoint runs (a few minutes per backend)\n"
               "  --case NAME   run only model_load, adapt_store, job_claim, dataset_ingest, pool\n"
               "                or checkpoint_cost\n"
               "  --pg URI      also run on the PostgreSQL database at URI (default: "
               "$METASERVE_BENCH_PG)\n"
               "  --backend B   sqlite, postgresql or both (default: both; postgresql needs a "
               "URI)\n");
}

static const char *const CASES[] = {"model_load",     "adapt_store", "job_claim",
                                    "dataset_ingest", "pool",        "checkpoint_cost"};

static int wanted(const Options *o, const char *name) {
    return !o->only || !strcmp(o->only, name);
}

static int parse_args(int argc, char **argv, Options *o) {
    const char *env = getenv("METASERVE_BENCH_PG"), *backend = "both";
    *o = (Options){.pg = env && *env ? env : NULL};
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick")) {
            o->quick = 1;
        } else if (!strcmp(argv[i], "--full")) {
            o->full = 1;
        } else if (!strcmp(argv[i], "--case") && i + 1 < argc) {
            o->only = argv[++i];
            int known = 0;
            for (size_t k = 0; k < sizeof CASES / sizeof CASES[0]; k++)
                known |= !strcmp(o->only, CASES[k]);
            if (!known) return -1;
        } else if (!strcmp(argv[i], "--pg") && i + 1 < argc) {
            o->pg = argv[++i];
        } else if (!strcmp(argv[i], "--backend") && i + 1 < argc) {
            backend = argv[++i];
        } else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            exit(0);
        } else {
            return -1;
        }
    }
    if (o->quick && o->full) return -1;
    int sq = !strcmp(backend, "sqlite") || !strcmp(backend, "both");
    int pg = !strcmp(backend, "postgresql") || !strcmp(backend, "both");
    if (!sq && !pg) return -1;
    if (!strcmp(backend, "postgresql") && !o->pg) {
        fprintf(stderr, "bench_store: --backend postgresql needs --pg URI or METASERVE_BENCH_PG\n");
        return -1;
    }
    o->sqlite = sq;
    if (!pg) o->pg = NULL;
    Options d = {.load_reps = 200,
                 .adapt_reps = 500,
                 .claim_reps = 300,
                 .ds_rows = 10000,
                 .ds_reps = 3,
                 .pool_rows = 100000,
                 .ckpt_reps = {200, 20},
                 .train_iters = {300, 30}};
    if (o->full)
        d = (Options){.load_reps = 1000,
                      .adapt_reps = 5000,
                      .claim_reps = 1000,
                      .ds_rows = 100000,
                      .ds_reps = 3,
                      .pool_rows = 100000,
                      .ckpt_reps = {1000, 200},
                      .train_iters = {2000, 200}};
    if (o->quick)
        d = (Options){.load_reps = 100,
                      .adapt_reps = 200,
                      .claim_reps = 200,
                      .ds_rows = 10000,
                      .ds_reps = 1,
                      .pool_rows = 10000,
                      .ckpt_reps = {100, 10},
                      .train_iters = {100, 10}};
    d.quick = o->quick, d.full = o->full, d.only = o->only, d.pg = o->pg, d.sqlite = o->sqlite;
    *o = d;
    return 0;
}

// Runs the chosen cases on one backend; returns the number that failed.
static int run_backend(Backend *b, const Options *o) {
    MsError err = {0};
    if (store_open(&b->st, b->path, &err) != MS_OK) {
        report(b, "store_open", &err);
        return 1;
    }
    int failed = 0;
    int64_t counts[5] = {0};
    if (store_job_counts(b->st, counts, &err) != MS_OK) {
        report(b, "store_job_counts", &err);
        failed = 1;
    } else if (counts[JOB_QUEUED] + counts[JOB_RUNNING] > 0) {
        fprintf(stderr,
                "bench_store: %s: the database holds %lld queued and %lld running jobs; give the "
                "benchmark a database of its own\n",
                b->name, (long long)counts[JOB_QUEUED], (long long)counts[JOB_RUNNING]);
        failed = 1;
    }
    if (failed) goto done;
    if (wanted(o, "model_load")) {
        failed += bench_model_load(b, 0, o);
        failed += bench_model_load(b, 1, o);
    }
    if (wanted(o, "adapt_store")) failed += bench_adapt_store(b, o);
    if (wanted(o, "job_claim")) failed += bench_job_claim(b, o);
    if (wanted(o, "dataset_ingest")) failed += bench_dataset_ingest(b, o);
    if (wanted(o, "pool") && bench_pool(b, o) != 0) {
        failed++;
        if (!b->st) goto done; // the connection could not be reopened
    }
    if (wanted(o, "checkpoint_cost")) {
        failed += bench_checkpoint(b, 0, o);
        failed += bench_checkpoint(b, 1, o);
    }
done:
    store_close(b->st);
    b->st = NULL;
    return failed;
}

int main(int argc, char **argv) {
    blas_autocore(argv);
    Options o;
    if (parse_args(argc, argv, &o) != 0) {
        usage(stderr);
        return 2;
    }
    openblas_set_num_threads(1);
    Backend sq = {.name = "sqlite"}, pg = {.name = "postgresql", .path = o.pg};
    for (int f = 0; f < N_FIGS; f++)
        sq.fig[f] = pg.fig[f] = NAN;
    char dir[] = "/tmp/bench_store_XXXXXX", db[64];
    int failed = 0;
    fprintf(stderr, "bench_store: OpenBLAS core %s, 1 thread; %s run\n", blas_core_name(),
            o.quick  ? "quick"
            : o.full ? "full"
                     : "default");
    if (o.sqlite) {
        if (!mkdtemp(dir)) {
            perror("bench_store: mkdtemp");
            return 1;
        }
        snprintf(db, sizeof db, "%s/bench.db", dir);
        sq.path = db;
        fprintf(stderr, "bench_store: sqlite: %s (WAL, group commit)\n", db);
        double t0 = now_s(CLOCK_MONOTONIC);
        failed += run_backend(&sq, &o);
        fprintf(stderr, "bench_store: sqlite: %.1f s\n", now_s(CLOCK_MONOTONIC) - t0);
        remove_dir(dir, stderr);
    }
    if (o.pg) {
        fprintf(stderr, "bench_store: postgresql: %s\n", o.pg);
        double t0 = now_s(CLOCK_MONOTONIC);
        failed += run_backend(&pg, &o);
        fprintf(stderr, "bench_store: postgresql: %.1f s\n", now_s(CLOCK_MONOTONIC) - t0);
    } else {
        fprintf(stderr, "bench_store: postgresql skipped: no --pg URI and no METASERVE_BENCH_PG\n");
    }
    print_table(&sq, o.sqlite, &pg, o.pg != NULL, &o);
    if (failed) fprintf(stderr, "bench_store: %d case(s) failed\n", failed);
    return failed ? 1 : 0;
}
