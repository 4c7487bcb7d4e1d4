/*
 * Worker threads that run meta-training jobs from the store's durable queue (jobs/jobs.h).
 *
 * Owns: the threads, one Store connection per thread, the pool's stop flag and the in-process
 * cancel requests. A job's life on a worker: claim (atomic in the store) -> parse config -> build
 * sampler and trainer -> restore checkpoint if any -> loop { cancel? stop? step; curve points;
 * progress every progress_seconds; checkpoint every N iterations or T seconds } -> finish
 * (model version + state in one transaction). A stop request checkpoints and requeues.
 *
 * Several replicas (PostgreSQL): a claimed job is leased to this process, and the store fences
 * every progress, checkpoint, finish and requeue write with the claim's owner and epoch. When one
 * of them answers MS_ERR_CONFLICT the job is no longer this worker's (its lease passed to another
 * replica after a pause or an outage longer than the lease, or it left the running state): the
 * worker drops it at once and writes nothing more for it (RUN_ABANDONED). Fencing keeps the rows
 * right either way; abandoning stops training that nobody will keep.
 *
 * Database away (MS_ERR_DB with MS_DETAIL_UNAVAILABLE, PostgreSQL only): training goes on rather
 * than pausing. A lease cannot be renewed without the database, so pausing would save no job; going
 * on keeps the work whenever the lease survives (an outage shorter than the lease, or no other
 * replica claiming meanwhile), and when another replica did claim the job the next write is
 * refused and the worker abandons, its work since the last checkpoint redone there to the same
 * weights. Meanwhile failed progress writes drop their curve points, a checkpoint that could not
 * be written is written as soon as a progress write gets through, and the reads that start a job
 * (dataset, checkpoint) and its final write wait for the database (every DB_RETRY_S, until it
 * answers or the pool stops) instead of failing the job for an outage. SQLite reports neither
 * condition for a job its own process runs, so there the loop behaves as it always has.
 *
 * Workload: a handful of jobs of 10^3..10^7 meta-iterations of 0.1..10 ms each; store writes are
 * amortised (progress once a second, checkpoints every few seconds), so the store is never the
 * bottleneck. Nothing here allocates per iteration.
 */
#define _DEFAULT_SOURCE
#include "metaserve/jobs/jobs.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "jobs_internal.h"
#include "metaserve/codec/codec.h"
#include "metaserve/jobs/taskpool.h"
#include "metaserve/meta/eval.h"
#include "metaserve/store/store.h"

_Static_assert(sizeof(real) == sizeof(float), "jobs/ runs on the float build of the core");

#define MAX_WORKERS 64
#define CURVE_BUF   64   // metric points buffered between progress writes
#define DB_RETRY_S  0.25 // between attempts while the database is away (the store backs off too)

typedef struct Worker {
    JobPool *pool;
    pthread_t thread;
    int index;
    char job_id[STORE_ID_MAX]; // the job running now ("" when idle), under pool->mu
    int cancel;                // set by jobpool_cancel, under pool->mu
} Worker;

struct JobPool {
    JobPoolConfig cfg;
    pthread_mutex_t mu;
    pthread_cond_t wake;
    int stopping;
    int n_workers;
    Worker workers[MAX_WORKERS];
    JobPoolStats stats;
};

void jobpool_config_defaults(JobPoolConfig *c) {
    memset(c, 0, sizeof *c);
    c->workers = JOBPOOL_DEFAULT_WORKERS;
    c->checkpoint_every = JOBPOOL_DEFAULT_CHECKPOINT_EVERY;
    c->checkpoint_seconds = JOBPOOL_DEFAULT_CHECKPOINT_S;
    c->progress_seconds = 1;
    c->curve_points = 500;
    c->val_tasks = 25;
    c->train_threads = 1;
    c->max_train_threads = 1;
}

static double mono_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

// Waits on the pool's condition for at most seconds (or until woken). Caller holds mu.
static void timed_wait(JobPool *p, double seconds) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    double ns = (double)ts.tv_nsec + seconds * 1e9;
    ts.tv_sec += (time_t)(ns / 1e9);
    ts.tv_nsec = (long)fmod(ns, 1e9);
    pthread_cond_timedwait(&p->wake, &p->mu, &ts);
}

static int pool_stopping(JobPool *p) {
    pthread_mutex_lock(&p->mu);
    int s = p->stopping;
    pthread_mutex_unlock(&p->mu);
    return s;
}

/* ---- one job ---- */

typedef struct {
    StoreMetric pts[CURVE_BUF];
    int n;
} Curve;

static void curve_add(Curve *c, int64_t step, const char *key, double v) {
    if (c->n < CURVE_BUF && isfinite(v)) c->pts[c->n++] = (StoreMetric){step, key, v};
}

// Post-adaptation loss on held-out tasks, from a random stream of its own (seeded by the job's
// seed and the iteration) so that measuring never changes training.
static double val_loss(JobPool *p, Trainer *tr) {
    if (p->cfg.val_tasks <= 0) return NAN;
    Rng r;
    rng_seed(&r, tr->cfg.seed ^ (0x9e3779b97f4a7c15ULL * (uint64_t)(tr->t + 1)));
    EvalCell cell;
    int nq = tr->cfg.k_query * (tr->sampler->classification ? tr->sampler->n_way : 1);
    MsStatus st = meta_eval_split(&tr->spec, tr->cfg.algo, tr->params, trainer_lrs(tr),
                                  (real)tr->cfg.inner_lr, tr->sampler, &r, p->cfg.val_tasks,
                                  tr->cfg.k_support, tr->cfg.inner_steps, nq, 1, &cell, NULL);
    return st == MS_OK ? cell.mean : NAN;
}

// The validation metric's name: what it measures (accuracy of a classifier, mean squared error of
// a regressor). Rows stored before these names hold "val_loss" with "val_metric" beside it; the
// HTTP layer reads them under these names (metrics_compat).
static const char *val_key(const Trainer *tr) {
    return tr->cfg.head == MLP_HEAD_CLASSIFICATION ? "val_accuracy" : "val_mse";
}

static void metrics_json(char *buf, size_t n, const Trainer *tr, double loss, double val,
                         double tps) {
    double left = (double)(tr->cfg.iterations - tr->t);
    double eta = tps > 0 ? left * tr->cfg.meta_batch / tps : NAN;
    // JSON has no NaN: unmeasured figures are null
    char v[32] = "null", t[32] = "null", e[32] = "null", l[32] = "null";
    if (isfinite(loss)) snprintf(l, sizeof l, "%.9g", loss);
    if (isfinite(val)) snprintf(v, sizeof v, "%.9g", val);
    if (isfinite(tps)) snprintf(t, sizeof t, "%.6g", tps);
    if (isfinite(eta)) snprintf(e, sizeof e, "%.3f", eta);
    snprintf(buf, n, "{\"meta_loss\":%s,\"%s\":%s,\"tasks_per_s\":%s,\"eta_s\":%s}", l, val_key(tr),
             v, t, e);
}

static MsStatus checkpoint(Store *st, const StoreJob *job, const Trainer *tr, MsError *err) {
    size_t n = trainer_state_bytes(tr);
    void *img = malloc(n);
    if (!img) return ms_fail(err, MS_ERR_NOMEM, "cannot allocate a %zu-byte checkpoint", n);
    trainer_save(tr, img);
    MsStatus s = store_job_checkpoint(st, job->id, tr->t, img, n, err);
    free(img);
    return s;
}

typedef enum {
    RUN_DONE,     // finished (succeeded, failed or cancelled) by this worker
    RUN_REQUEUED, // handed back to the queue at a graceful stop
    RUN_ABANDONED // no longer this worker's (lease lost, or left running); nothing written
} RunEnd;

// The database cannot be reached (restarting, network): worth waiting for. Never on SQLite.
static int db_away(MsStatus s, const MsError *err) {
    return s == MS_ERR_DB && err->code == s && err->detail == MS_DETAIL_UNAVAILABLE;
}

// Sleeps DB_RETRY_S before another attempt; 0 when the pool is stopping (give up instead).
static int retry_wait(JobPool *p) {
    pthread_mutex_lock(&p->mu);
    if (!p->stopping) timed_wait(p, DB_RETRY_S);
    int go = !p->stopping;
    pthread_mutex_unlock(&p->mu);
    return go;
}

// Ends the job in state (with model m when succeeded), waiting out an outage of the database.
// MS_ERR_CONFLICT means the job is another worker's now or already ended: nothing more is
// written. A model that cannot be written (e.g. disk full) fails the job with the reason; the
// job's state and the absence of a version stay consistent (one transaction). A pool stopping
// while the database is away leaves the job running under a lease that expires, after which a
// worker resumes it from its checkpoint.
static RunEnd finish_job(JobPool *p, Store *st, const char *id, JobState state, const char *error,
                         StoreModel *m) {
    char reason[256];
    for (;;) {
        MsError err = {0};
        int version = 0;
        MsStatus s = store_job_finish(st, id, state, error, m, m ? &version : NULL, &err);
        if (s == MS_OK) return RUN_DONE;
        if (s == MS_ERR_CONFLICT) return RUN_ABANDONED;
        if (db_away(s, &err)) {
            if (!retry_wait(p)) return RUN_ABANDONED;
            continue;
        }
        if (!m) return RUN_DONE; // failing or cancelling did not stick either: as before, give up
        snprintf(reason, sizeof reason, "%s", err.msg);
        state = JOB_FAILED, error = reason, m = NULL;
    }
}

// The finished model: float parameters as trained (the service build's real is float).
static RunEnd finish_succeeded(JobPool *p, Store *st, const StoreJob *job, const Trainer *tr,
                               double val, double loss, double tps) {
    StoreModel m;
    memset(&m, 0, sizeof m);
    snprintf(m.name, sizeof m.name, "%s", tr->cfg.name);
    snprintf(m.algorithm, sizeof m.algorithm, "%s", meta_algo_name(tr->cfg.algo));
    snprintf(m.job_id, sizeof m.job_id, "%s", job->id);
    char hyper[256], metrics[512];
    snprintf(hyper, sizeof hyper,
             "{\"inner_lr\":%.9g,\"inner_steps\":%d,\"outer_lr\":%.9g,\"meta_batch\":%d,"
             "\"iterations\":%ld}",
             tr->cfg.inner_lr, tr->cfg.inner_steps, tr->cfg.outer_lr, tr->cfg.meta_batch,
             tr->cfg.iterations);
    // the job's final metrics, as its last progress write recorded them
    metrics_json(metrics, sizeof metrics, tr, loss, val, tps);
    m.config = job->config;
    m.hyper = hyper;
    m.metrics = metrics;
    m.n_params = tr->spec.P;
    m.params = (float *)tr->params;
    m.inner_lrs = (float *)trainer_lrs(tr);
    return finish_job(p, st, job->id, JOB_SUCCEEDED, NULL, &m);
}

static int worker_cancelled(Worker *w) {
    pthread_mutex_lock(&w->pool->mu);
    int c = w->cancel;
    pthread_mutex_unlock(&w->pool->mu);
    return c;
}

MsStatus jobs_init_load(Store *st, const TrainConfig *cfg, StoreModel *m,
                        char pinned[TRAIN_NAME_MAX + 16], MsError *err) {
    char name[STORE_NAME_MAX];
    int version = 0;
    MsError e = {0};
    memset(m, 0, sizeof *m);
    MsStatus s = store_model_resolve(st, cfg->init_model, name, &version, &e);
    if (s == MS_OK) s = store_model_get(st, name, version, m, &e);
    if (s == MS_ERR_INVALID || s == MS_ERR_NOT_FOUND)
        return ms_fail(err, s, "init.model: %s", e.msg);
    if (s != MS_OK) {
        *err = e;
        return s;
    }
    snprintf(pinned, TRAIN_NAME_MAX + 16, "%s@%d", name, version);
    TrainConfig ic;
    if ((s = codec_config_parse(&ic, m->config, strlen(m->config), &e)) != MS_OK)
        s = ms_fail(err, MS_ERR_DB, "init.model: %s: its stored config cannot be read: %s", pinned,
                    e.msg);
    else if ((s = train_config_init_fits(cfg, &ic, pinned, err)) == MS_OK && !m->params)
        s = ms_fail(err, MS_ERR_DB, "init.model: %s: no parameters stored", pinned);
    if (s != MS_OK) store_model_free(m);
    return s;
}

// The initial parameters of a config with "init" (before any checkpoint is restored): theta
// from the version, and its Meta-SGD rates when both are Meta-SGD. Deterministic: the version
// was pinned when the job was queued.
static MsStatus init_params(Store *st, const TrainConfig *cfg, Trainer *tr, MsError *err) {
    StoreModel m;
    char pinned[TRAIN_NAME_MAX + 16];
    MsStatus s = jobs_init_load(st, cfg, &m, pinned, err);
    if (s != MS_OK) return s;
    if (m.n_params != tr->spec.P) {
        store_model_free(&m);
        return ms_fail(err, MS_ERR_DB, "init.model: %s holds %zu parameters, not %zu", pinned,
                       m.n_params, tr->spec.P);
    }
    for (size_t i = 0; i < tr->spec.P; i++)
        tr->params[i] = (real)m.params[i];
    if (tr->N == 2 * tr->spec.P && m.inner_lrs)
        for (size_t i = 0; i < tr->spec.P; i++)
            tr->params[tr->spec.P + i] = (real)m.inner_lrs[i];
    store_model_free(&m);
    return MS_OK;
}

// Config, sampler and trainer of the job, restored from its checkpoint if it has one. MS_OK, or
// RUN_* in *end when the job ended here: failed (a bad config or dataset), or abandoned (the
// pool stopped while the database was away).
static MsStatus prepare(JobPool *p, Store *st, const StoreJob *job, TrainConfig *cfg, Trainer *tr,
                        JobsDataset *ds, RunEnd *end) {
    MsError err = {0};
    TaskSampler *sampler = NULL;
    MsStatus s = codec_config_parse(cfg, job->config, strlen(job->config), &err);
    // a dataset is read from the store: an outage delays the job, it does not fail it
    while (s == MS_OK && (s = jobs_build_sampler(st, cfg, ds, &sampler, &err)) != MS_OK &&
           db_away(s, &err)) {
        jobs_dataset_free(ds);
        if (!retry_wait(p)) {
            *end = RUN_ABANDONED;
            return s;
        }
        s = MS_OK;
    }
    if (s == MS_OK) s = trainer_init_with_sampler(tr, cfg, sampler, &err);
    // "init": the version's parameters replace the seeded ones (a checkpoint then overrides both)
    while (s == MS_OK && cfg->init_model[0] && (s = init_params(st, cfg, tr, &err)) != MS_OK &&
           db_away(s, &err)) {
        if (!retry_wait(p)) {
            *end = RUN_ABANDONED;
            return s;
        }
        s = MS_OK;
    }
    if (s != MS_OK) {
        *end = finish_job(p, st, job->id, JOB_FAILED, err.msg, NULL);
        return s;
    }
    if (!job->has_checkpoint) return MS_OK;
    void *img = NULL;
    size_t n = 0;
    while ((s = store_job_checkpoint_get(st, job->id, &img, &n, &err)) != MS_OK &&
           db_away(s, &err)) {
        if (!retry_wait(p)) {
            *end = RUN_ABANDONED;
            return s;
        }
    }
    // An unreadable checkpoint (corrupt blob) restarts the job from iteration 0, which reaches
    // the same final weights: training is deterministic from the seed.
    if (s == MS_OK) trainer_restore(tr, img, n, NULL);
    free(img);
    return MS_OK;
}

// What a run records between progress writes: curve points and the losses since the last write.
typedef struct {
    Curve curve;
    int64_t stride;        // iterations between meta_loss curve points
    double t_prog;         // mono_s() of the last progress write
    int64_t it_prog;       // iteration of the last progress write
    double loss_sum;       // meta-losses since the last progress write
    int loss_n;            // ... and how many
    double last_loss, val; // reported at the last progress write (NAN before)
    double tps;            // tasks per second at the last progress write (NAN before)
} Progress;

// Accounts one step at `now`; once due (every progress_seconds, when the curve buffer is nearly
// full, at the last iteration) records progress: iteration, metrics, the buffered curve points.
// MS_OK with *wrote = 0 when not due, else the store's answer (*wrote = 1 when it took it). The
// points of a refused write are dropped.
static MsStatus progress_step(JobPool *p, Store *st, const StoreJob *job, Trainer *tr, Progress *g,
                              double loss, double now, int *wrote, MsError *err) {
    const int64_t total = tr->cfg.iterations;
    g->loss_sum += loss;
    g->loss_n++;
    if (tr->t % g->stride == 0 || tr->t == total) curve_add(&g->curve, tr->t, "meta_loss", loss);
    *wrote = 0;
    if (now - g->t_prog < p->cfg.progress_seconds && g->curve.n < CURVE_BUF - 2 && tr->t < total)
        return MS_OK;
    g->last_loss = g->loss_sum / g->loss_n;
    g->val = val_loss(p, tr);
    curve_add(&g->curve, tr->t, val_key(tr), g->val);
    double tps = (double)(tr->t - g->it_prog) * tr->cfg.meta_batch / fmax(now - g->t_prog, 1e-9);
    g->tps = tps;
    curve_add(&g->curve, tr->t, "tasks_per_s", tps);
    char mj[512];
    metrics_json(mj, sizeof mj, tr, g->last_loss, g->val, tps);
    MsStatus s = store_job_progress(st, job->id, tr->t, mj, g->curve.pts, g->curve.n, err);
    *wrote = s == MS_OK;
    g->curve.n = 0;
    g->loss_sum = 0, g->loss_n = 0;
    g->t_prog = now, g->it_prog = tr->t;
    return s;
}

static RunEnd run_job(Worker *w, Store *st, StoreJob *job) {
    JobPool *p = w->pool;
    MsError err = {0};
    TrainConfig cfg;
    Trainer tr;
    memset(&tr, 0, sizeof tr);
    JobsDataset ds;
    memset(&ds, 0, sizeof ds);
    RunEnd end = RUN_DONE;
    TaskPool *threads = NULL;
    if (prepare(p, st, job, &cfg, &tr, &ds, &end) != MS_OK) goto done;
    // Threads per meta-batch: the config's, else the server's default, within the server's cap.
    // The weights do not depend on the count, so a smaller one (or one thread, when the pool or
    // its scratch cannot be had) only trains slower.
    int want = cfg.threads > 0 ? cfg.threads : p->cfg.train_threads;
    if (want > p->cfg.max_train_threads) want = p->cfg.max_train_threads;
    if (want > 1) {
        MsError te = {0};
        if (taskpool_create(&threads, want, &te) != MS_OK ||
            trainer_set_parallel(&tr, want, 0, taskpool_run, threads, &te) != MS_OK) {
            fprintf(stderr, "{\"level\":\"warn\",\"msg\":\"job %s trains on one thread: %s\"}\n",
                    job->id, te.msg);
            taskpool_destroy(threads);
            threads = NULL;
        }
    }
    const int64_t total = cfg.iterations;
    double t_ckpt = mono_s(), t_cancel = t_ckpt;
    int64_t it_ckpt = tr.t;
    Progress g = {.curve = {.n = 0},
                  .stride = total / (p->cfg.curve_points > 0 ? p->cfg.curve_points : 1) + 1,
                  .t_prog = t_ckpt,
                  .it_prog = tr.t,
                  .last_loss = NAN,
                  .val = NAN,
                  .tps = NAN};
    int ckpt_owed = 0; // a checkpoint failed while the database was away: write one once it is back
    while (tr.t < total) {
        double now = mono_s();
        MsStatus s;
        if (pool_stopping(p)) {
            // graceful stop: keep the work done, hand the job back to the queue
            if ((s = checkpoint(st, job, &tr, &err)) == MS_OK)
                s = store_job_requeue(st, job->id, &err);
            end = s == MS_ERR_CONFLICT ? RUN_ABANDONED : RUN_REQUEUED;
            goto done;
        }
        int cancel = worker_cancelled(w);
        if (!cancel && now - t_cancel > 0.25) {
            // cancellation from another process (or a missed notification): poll the store
            StoreJob cur;
            if (store_job_get(st, job->id, &cur, NULL) == MS_OK) {
                cancel = cur.cancel_requested || cur.state == JOB_CANCELLED;
                store_job_free(&cur);
            }
            t_cancel = now;
        }
        if (cancel) {
            end = finish_job(p, st, job->id, JOB_CANCELLED, NULL, NULL);
            goto done;
        }
        TrainStats ts;
        if ((s = trainer_step(&tr, &ts, &err)) != MS_OK) {
            end = finish_job(p, st, job->id, JOB_FAILED, err.msg, NULL);
            goto done;
        }
        now = mono_s();
        int wrote_progress;
        s = progress_step(p, st, job, &tr, &g, ts.meta_loss, now, &wrote_progress, &err);
        if (s == MS_ERR_CONFLICT) { // the job is no longer ours: not one more write
            end = RUN_ABANDONED;
            goto done;
        }
        int by_count = p->cfg.checkpoint_every > 0 && tr.t - it_ckpt >= p->cfg.checkpoint_every;
        int by_time = p->cfg.checkpoint_seconds > 0 && now - t_ckpt >= p->cfg.checkpoint_seconds;
        if ((by_count || by_time || (ckpt_owed && wrote_progress)) && tr.t < total) {
            s = checkpoint(st, job, &tr, &err);
            if (s == MS_ERR_CONFLICT) {
                end = RUN_ABANDONED;
                goto done;
            }
            if (s == MS_OK) {
                pthread_mutex_lock(&p->mu);
                p->stats.checkpoints++;
                pthread_mutex_unlock(&p->mu);
            }
            ckpt_owed = db_away(s, &err);
            t_ckpt = now, it_ckpt = tr.t;
        }
        pthread_mutex_lock(&p->mu);
        p->stats.iterations++;
        pthread_mutex_unlock(&p->mu);
    }
    end = finish_succeeded(p, st, job, &tr, g.val, g.last_loss, g.tps);
done:
    // The trainer owns the sampler from trainer_init_with_sampler on (it destroys it on failure).
    trainer_free(&tr);
    taskpool_destroy(threads);
    jobs_dataset_free(&ds);
    return end;
}

/* ---- threads ---- */

static void *worker_main(void *arg) {
    Worker *w = arg;
    JobPool *p = w->pool;
    Store *st = NULL;
    MsError err = {0};
    while (store_open_opts(&st, p->cfg.db_path, p->cfg.store_opts, &err) != MS_OK) {
        // the file may be briefly locked by a migration in another thread; retry until stopped
        pthread_mutex_lock(&p->mu);
        if (p->stopping) {
            pthread_mutex_unlock(&p->mu);
            return NULL;
        }
        timed_wait(p, 0.5);
        pthread_mutex_unlock(&p->mu);
    }
    for (;;) {
        if (pool_stopping(p)) break;
        StoreJob job;
        int claimed = 0;
        if (store_job_claim(st, &job, &claimed, NULL) != MS_OK || !claimed) {
            pthread_mutex_lock(&p->mu);
            if (!p->stopping) timed_wait(p, 0.5);
            pthread_mutex_unlock(&p->mu);
            continue;
        }
        pthread_mutex_lock(&p->mu);
        snprintf(w->job_id, sizeof w->job_id, "%s", job.id);
        w->cancel = 0;
        p->stats.running++;
        pthread_mutex_unlock(&p->mu);
        RunEnd end = run_job(w, st, &job);
        pthread_mutex_lock(&p->mu);
        w->job_id[0] = '\0';
        p->stats.running--;
        if (end == RUN_DONE) p->stats.jobs_finished++;
        pthread_mutex_unlock(&p->mu);
        store_job_free(&job);
    }
    store_close(st);
    return NULL;
}

MsStatus jobpool_start(JobPool **out, const JobPoolConfig *cfg, MsError *err) {
    *out = NULL;
    if (!cfg->db_path) return ms_fail(err, MS_ERR_INVALID, "jobs: db_path is required");
    if (cfg->workers < 1 || cfg->workers > MAX_WORKERS)
        return ms_fail(err, MS_ERR_INVALID, "workers: must be in 1..%d", MAX_WORKERS);
    if (cfg->checkpoint_every < 0 || !(cfg->checkpoint_seconds >= 0) ||
        !(cfg->progress_seconds >= 0) || cfg->curve_points < 1 || cfg->val_tasks < 0)
        return ms_fail(err, MS_ERR_INVALID, "jobs: a checkpoint or progress setting is negative");
    // Jobs left running by a previous process resume from their checkpoints.
    Store *st = NULL;
    MsStatus s = store_open_opts(&st, cfg->db_path, cfg->store_opts, err);
    int n = 0;
    if (s == MS_OK) s = store_job_requeue_running(st, &n, err);
    store_close(st);
    if (s != MS_OK) return s;
    JobPool *p = calloc(1, sizeof *p);
    if (!p) return ms_fail(err, MS_ERR_NOMEM, "jobs: out of memory");
    p->cfg = *cfg;
    pthread_mutex_init(&p->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_cond_init(&p->wake, &ca);
    pthread_condattr_destroy(&ca);
    for (int i = 0; i < cfg->workers; i++) {
        Worker *w = &p->workers[i];
        w->pool = p;
        w->index = i;
        if (pthread_create(&w->thread, NULL, worker_main, w) != 0) {
            jobpool_stop(p);
            return ms_fail(err, MS_ERR_INTERNAL, "jobs: cannot start worker %d", i);
        }
        p->n_workers++;
    }
    *out = p;
    return MS_OK;
}

void jobpool_notify(JobPool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
}

void jobpool_cancel(JobPool *p, const char *id) {
    if (!p || !id) return;
    pthread_mutex_lock(&p->mu);
    for (int i = 0; i < p->n_workers; i++)
        if (strcmp(p->workers[i].job_id, id) == 0) p->workers[i].cancel = 1;
    pthread_mutex_unlock(&p->mu);
}

void jobpool_stop(JobPool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    p->stopping = 1;
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->n_workers; i++)
        pthread_join(p->workers[i].thread, NULL);
    pthread_cond_destroy(&p->wake);
    pthread_mutex_destroy(&p->mu);
    free(p);
}

void jobpool_stats(JobPool *p, JobPoolStats *out) {
    pthread_mutex_lock(&p->mu);
    *out = p->stats;
    pthread_mutex_unlock(&p->mu);
}
