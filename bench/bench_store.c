/*
 * bench_store: what the durable store costs the service, on a fresh SQLite file in a temporary
 * directory under /tmp (removed at the end). Prints one JSON object per case on stdout and
 * nothing else there; notes and errors go to stderr.
 *
 * Cases:
 *   model_load       serving_get of a model version on a cache miss (store_model_get, blob
 *                    decode, config parse) against a hit, for the classic net (1-40-40-1, 1761
 *                    parameters) and the large one (784-256-256-5, ~268k parameters).
 *   job_claim        store_job_claim with 1000 jobs queued (refilled after every claim, so the
 *                    depth stays 1000), and store_job_create.
 *   dataset_ingest   dataset_pack_classes + store_dataset_put of a 100,000 x 784 pool of random
 *                    floats in 100 classes, and store_dataset_get reading it back.
 *   checkpoint_cost  trainer_save + store_job_checkpoint against trainer_step, as the fraction of
 *                    training time the job pool's default checkpoint interval costs.
 *
 * "Cold" means a registry miss, not a cold disk: the file was just written, so SQLite's page
 * cache and the OS page cache hold it. Every write runs with the store's own pragmas (WAL,
 * synchronous=NORMAL), so a commit does not wait for fsync but a WAL checkpoint does: that shows
 * in the p99 figures. Single-threaded, one Store connection, one OpenBLAS thread.
 */
#include <cblas.h>
#include <dirent.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
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
#include "metaserve/store/store.h"
#include "metaserve/tasks/dataset.h"

#include "bench_util.h"

#define QUEUE_DEPTH 1000 // queued jobs while claims are timed
#define N_CLASSES   100  // classes in the dataset_ingest pool
#define X_DIM       784  // its row width

/* ---- options, clocks, percentiles ---- */

typedef struct {
    int quick;           // 1: short smoke run (<= 10 s)
    const char *only;    // non-NULL: run only this case
    int load_reps;       // model_load: timed gets per path and net
    int claim_reps;      // job_claim: timed claims
    int64_t ds_rows;     // dataset_ingest: rows in the pool
    int ds_reps;         // dataset_ingest: repetitions (median reported)
    int ckpt_reps[2];    // checkpoint_cost: timed checkpoints, classic / large
    long train_iters[2]; // checkpoint_cost: timed trainer_step calls, classic / large
} Options;

static void report(const char *what, const MsError *err) {
    fprintf(stderr, "bench_store: %s: %s: %s\n", what, ms_status_str(err->code), err->msg);
}

/* ---- configs and the temporary directory ---- */

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

/* ---- model_load ---- */

// Stores version 1 of the net's model: its printed config and freshly initialised parameters.
static MsStatus put_model(Store *st, const TrainConfig *c, size_t *P, MsError *err) {
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
    int version;
    s = store_model_put(st, &m, &version, err);
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

// Times reps bare store_model_get calls: the SQLite read and blob decode of a cold load.
static MsStatus time_store_gets(Store *st, const char *name, int reps, double *us, MsError *err) {
    for (int i = 0; i < reps; i++) {
        StoreModel m;
        double t0 = now_us();
        MsStatus s = store_model_get(st, name, 1, &m, err);
        us[i] = now_us() - t0;
        store_model_free(&m);
        if (s != MS_OK) return s;
    }
    return MS_OK;
}

static int bench_model_load(Store *st, int large, const Options *o) {
    TrainConfig c;
    net_config(&c, large);
    MsError err = {0};
    Serving *r = NULL;
    size_t P = 0, n = (size_t)o->load_reps;
    double *cold = malloc(n * sizeof *cold), *warm = malloc(n * sizeof *warm);
    double *raw = malloc(n * sizeof *raw);
    int rc = 1;
    if (!cold || !warm || !raw) {
        fprintf(stderr, "bench_store: model_load: out of memory\n");
        goto done;
    }
    if (put_model(st, &c, &P, &err) != MS_OK || serving_create(&r, 4, &err) != MS_OK ||
        time_gets(r, st, c.name, 1, 5, cold, &err) != MS_OK) { // warm-up: statements, allocator
        report("model_load: setup", &err);
        goto done;
    }
    ServingStats before, after;
    serving_stats(r, &before);
    if (time_gets(r, st, c.name, 1, o->load_reps, cold, &err) != MS_OK ||
        time_gets(r, st, c.name, 0, o->load_reps, warm, &err) != MS_OK ||
        time_store_gets(st, c.name, o->load_reps, raw, &err) != MS_OK) {
        report("model_load", &err);
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
    double w50 = pct(warm, n, 0.5), w99 = pct(warm, n, 0.99);
    printf("{\"case\":\"model_load\",\"net\":\"%s\",\"sizes\":\"%d-%d-%d-%d\",\"params\":%zu,"
           "\"param_bytes\":%zu,\"reps\":%d",
           net_name(large), c.sizes[0], c.sizes[1], c.sizes[2], c.sizes[3], P, P * sizeof(float),
           o->load_reps);
    print_num("cold_p50_us", c50, 2);
    print_num("cold_p99_us", c99, 2);
    print_num("warm_p50_us", w50, 2);
    print_num("warm_p99_us", w99, 2);
    print_num("cold_warm_ratio", c50 / w50, 2);
    print_num("store_get_p50_us", pct(raw, n, 0.5), 2);
    print_num("store_get_p99_us", pct(raw, n, 0.99), 2);
    printf("}\n");
    fflush(stdout);
    rc = 0;
done:
    serving_destroy(r);
    free(cold);
    free(warm);
    free(raw);
    return rc;
}

/* ---- job_claim ---- */

static int bench_job_claim(Store *st, const Options *o) {
    TrainConfig c;
    classic_config(&c);
    MsError err = {0};
    char *json = NULL;
    size_t n_claim = (size_t)o->claim_reps, n_create = QUEUE_DEPTH + n_claim;
    double *claim = malloc(n_claim * sizeof *claim), *create = malloc(n_create * sizeof *create);
    int rc = 1;
    if (!claim || !create || codec_config_print(&c, &json, &err) != MS_OK) {
        fprintf(stderr, "bench_store: job_claim: setup failed\n");
        goto done;
    }
    // The service always passes a queue limit, so create runs its count of queued jobs too; this
    // one is high enough never to refuse.
    const int max_queued = 100 * QUEUE_DEPTH;
    char id[STORE_ID_MAX];
    size_t k = 0;
    for (int i = 0; i < QUEUE_DEPTH; i++, k++) {
        double t0 = now_us();
        MsStatus s = store_job_create(st, json, c.name, c.iterations, max_queued, id, &err);
        create[k] = now_us() - t0;
        if (s != MS_OK) goto failed;
    }
    for (size_t i = 0; i < n_claim; i++, k++) {
        StoreJob j;
        int claimed;
        double t0 = now_us();
        MsStatus s = store_job_claim(st, &j, &claimed, &err);
        claim[i] = now_us() - t0;
        store_job_free(&j);
        if (s != MS_OK) goto failed;
        if (!claimed) {
            fprintf(stderr, "bench_store: job_claim: the queue was empty\n");
            goto done;
        }
        // Refill, so every claim sees QUEUE_DEPTH queued jobs.
        t0 = now_us();
        s = store_job_create(st, json, c.name, c.iterations, max_queued, id, &err);
        create[k] = now_us() - t0;
        if (s != MS_OK) goto failed;
    }
    printf("{\"case\":\"job_claim\",\"queue\":%d,\"claims\":%zu,\"creates\":%zu,"
           "\"config_bytes\":%zu",
           QUEUE_DEPTH, n_claim, n_create, strlen(json));
    print_num("claim_p50_us", pct(claim, n_claim, 0.5), 2);
    print_num("claim_p99_us", pct(claim, n_claim, 0.99), 2);
    print_num("create_p50_us", pct(create, n_create, 0.5), 2);
    print_num("create_p99_us", pct(create, n_create, 0.99), 2);
    printf("}\n");
    fflush(stdout);
    rc = 0;
    goto done;
failed:
    report("job_claim", &err);
done:
    free(json);
    free(claim);
    free(create);
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
    // Keep the file at one pool: the next repetition writes into the freed pages.
    MsStatus s2 = store_dataset_delete(st, d.id, s == MS_OK ? err : NULL);
    return s != MS_OK ? s : s2;
}

static int bench_dataset_ingest(Store *st, const Options *o) {
    size_t rows = (size_t)o->ds_rows, n_x = rows * X_DIM;
    float *x = malloc(n_x * sizeof *x);
    int32_t *labels = malloc(rows * sizeof *labels);
    IngestTiming *t = calloc((size_t)o->ds_reps, sizeof *t);
    double *v = malloc((size_t)o->ds_reps * sizeof *v);
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
    for (int r = 0; r < o->ds_reps; r++) {
        if (ingest_once(st, &in, &t[r], &err) != MS_OK) {
            report("dataset_ingest", &err);
            goto done;
        }
    }
    size_t n = (size_t)o->ds_reps;
    double mb = (double)t[0].bytes / 1e6;
    double s_pack, s_store, s_e2e, s_get, s_check;
    for (size_t r = 0; r < n; r++)
        v[r] = t[r].pack;
    s_pack = pct(v, n, 0.5);
    for (size_t r = 0; r < n; r++)
        v[r] = t[r].store;
    s_store = pct(v, n, 0.5);
    for (size_t r = 0; r < n; r++)
        v[r] = t[r].pack + t[r].store;
    s_e2e = pct(v, n, 0.5);
    for (size_t r = 0; r < n; r++)
        v[r] = t[r].get;
    s_get = pct(v, n, 0.5);
    for (size_t r = 0; r < n; r++)
        v[r] = t[r].check;
    s_check = pct(v, n, 0.5);
    printf("{\"case\":\"dataset_ingest\",\"rows\":%zu,\"x_dim\":%d,\"classes\":%d,\"mb\":%.1f,"
           "\"reps\":%d",
           rows, X_DIM, N_CLASSES, mb, o->ds_reps);
    print_num("pack_s", s_pack, 4);
    print_num("store_s", s_store, 4);
    print_num("get_s", s_get, 4);
    print_num("pack_mb_s", mb / s_pack, 1);
    print_num("store_mb_s", mb / s_store, 1);
    print_num("ingest_mb_s", mb / s_e2e, 1);
    print_num("get_mb_s", mb / s_get, 1);
    print_num("check_mb_s", mb / s_check, 1);
    print_num("peak_rss_mb", peak_rss_mb(), 1);
    printf("}\n");
    fflush(stdout);
    rc = 0;
done:
    free(x);
    free(labels);
    free(t);
    free(v);
    return rc;
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

static void print_ckpt(const Trainer *tr, int large, long iters, double iter_us, double *ck,
                       double *save, double *store, size_t n) {
    JobPoolConfig pc;
    jobpool_config_defaults(&pc);
    // The pool checkpoints at whichever comes first: checkpoint_every iterations, or the first
    // iteration that ends checkpoint_seconds after the last checkpoint.
    double by_count = pc.checkpoint_every > 0 ? (double)pc.checkpoint_every : INFINITY;
    double by_time =
        pc.checkpoint_seconds > 0 ? ceil(pc.checkpoint_seconds * 1e6 / iter_us) : INFINITY;
    double interval = fmin(by_count, by_time);
    double ck_us = mean(ck, n);
    printf("{\"case\":\"checkpoint_cost\",\"net\":\"%s\",\"algo\":\"%s\",\"steps\":%d,"
           "\"meta_batch\":%d,\"params\":%zu,\"checkpoint_bytes\":%zu,\"iters\":%ld,"
           "\"checkpoints\":%zu",
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
    print_num("fraction", ck_us / (interval * iter_us), 6);
    printf("}\n");
    fflush(stdout);
}

static int bench_checkpoint(Store *st, int large, const Options *o) {
    TrainConfig c;
    net_config(&c, large);
    MsError err = {0};
    Trainer tr;
    memset(&tr, 0, sizeof tr);
    char *json = NULL, id[STORE_ID_MAX];
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
        running_job(st, json, id, &err) != MS_OK)
        goto failed;
    for (int i = 0; i < 3; i++) // warm-up: first-touch of the work blocks, statement prepare
        if (trainer_step(&tr, NULL, &err) != MS_OK ||
            checkpoint(st, id, &tr, &save[0], &store[0], &err) != MS_OK)
            goto failed;
    // Iterations back to back, as a worker runs them between checkpoints.
    double t0 = now_us();
    for (long i = 0; i < iters; i++)
        if (trainer_step(&tr, NULL, &err) != MS_OK) goto failed;
    double iter_us = (now_us() - t0) / (double)iters;
    // Each checkpoint right after an (untimed) iteration, as in the worker loop.
    for (size_t i = 0; i < n; i++) {
        if (trainer_step(&tr, NULL, &err) != MS_OK ||
            checkpoint(st, id, &tr, &save[i], &store[i], &err) != MS_OK)
            goto failed;
        ck[i] = save[i] + store[i];
    }
    print_ckpt(&tr, large, iters, iter_us, ck, save, store, n);
    rc = 0;
    goto done;
failed:
    report("checkpoint_cost", &err);
done:
    trainer_free(&tr);
    free(json);
    free(ck);
    free(save);
    free(store);
    return rc;
}

/* ---- main ---- */

static void usage(FILE *f) {
    fprintf(f,
            "usage: bench_store [--quick] [--case NAME]\n"
            "  --quick       short smoke run (< 10 s): fewer repetitions, a 10,000-row pool\n"
            "  --case NAME   run only model_load, job_claim, dataset_ingest or checkpoint_cost\n");
}

static const char *const CASES[] = {"model_load", "job_claim", "dataset_ingest", "checkpoint_cost"};

static int wanted(const Options *o, const char *name) {
    return !o->only || !strcmp(o->only, name);
}

static int parse_args(int argc, char **argv, Options *o) {
    *o = (Options){.load_reps = 1000,
                   .claim_reps = 1000,
                   .ds_rows = 100000,
                   .ds_reps = 3,
                   .ckpt_reps = {1000, 200},
                   .train_iters = {2000, 200}};
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick")) {
            o->quick = 1;
        } else if (!strcmp(argv[i], "--case") && i + 1 < argc) {
            o->only = argv[++i];
            int known = 0;
            for (size_t k = 0; k < sizeof CASES / sizeof CASES[0]; k++)
                known |= !strcmp(o->only, CASES[k]);
            if (!known) return -1;
        } else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            exit(0);
        } else {
            return -1;
        }
    }
    if (o->quick)
        *o = (Options){.quick = 1,
                       .only = o->only,
                       .load_reps = 200,
                       .claim_reps = 200,
                       .ds_rows = 10000,
                       .ds_reps = 1,
                       .ckpt_reps = {200, 20},
                       .train_iters = {200, 20}};
    return 0;
}

int main(int argc, char **argv) {
    blas_autocore(argv);
    Options o;
    if (parse_args(argc, argv, &o) != 0) {
        usage(stderr);
        return 2;
    }
    openblas_set_num_threads(1);
    char dir[] = "/tmp/bench_store_XXXXXX", db[64];
    if (!mkdtemp(dir)) {
        perror("bench_store: mkdtemp");
        return 1;
    }
    snprintf(db, sizeof db, "%s/bench.db", dir);
    fprintf(stderr, "bench_store: database %s, OpenBLAS core %s, 1 thread\n", db, blas_core_name());
    MsError err = {0};
    Store *st = NULL;
    int failed = 0;
    if (store_open(&st, db, &err) != MS_OK) {
        report("store_open", &err);
        failed = 1;
        goto done;
    }
    if (wanted(&o, "model_load")) {
        failed += bench_model_load(st, 0, &o);
        failed += bench_model_load(st, 1, &o);
    }
    if (wanted(&o, "job_claim")) failed += bench_job_claim(st, &o);
    if (wanted(&o, "dataset_ingest")) failed += bench_dataset_ingest(st, &o);
    if (wanted(&o, "checkpoint_cost")) {
        failed += bench_checkpoint(st, 0, &o);
        failed += bench_checkpoint(st, 1, &o);
    }
done:
    store_close(st);
    remove_dir(dir, stderr);
    if (failed) fprintf(stderr, "bench_store: %d case(s) failed\n", failed);
    return failed ? 1 : 0;
}
