/*
 * Worker threads that run meta-training jobs from the store's durable queue (jobs/jobs.h).
 *
 * Owns: the threads, one Store connection per thread, the pool's stop flag and the in-process
 * cancel requests. A job's life on a worker: claim (atomic in the store) -> parse config -> build
 * sampler and trainer -> restore checkpoint if any -> loop { cancel? stop? step; curve points;
 * progress every progress_seconds; checkpoint every N iterations or T seconds } -> finish
 * (model version + state in one transaction). A stop request checkpoints and requeues.
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
#include "metaserve/meta/eval.h"
#include "metaserve/store/store.h"

_Static_assert(sizeof(real) == sizeof(float), "jobs/ runs on the float build of the core");

#define MAX_WORKERS 64
#define CURVE_BUF   64 // metric points buffered between progress writes

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
    snprintf(buf, n,
             "{\"meta_loss\":%s,\"val_loss\":%s,\"val_metric\":\"%s\",\"tasks_per_s\":%s,"
             "\"eta_s\":%s}",
             l, v, tr->cfg.head == MLP_HEAD_CLASSIFICATION ? "accuracy" : "mse", t, e);
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

// The finished model: float parameters as trained (the service build's real is float).
static MsStatus finish_succeeded(Store *st, const StoreJob *job, const Trainer *tr, double val,
                                 double loss, MsError *err) {
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
    metrics_json(metrics, sizeof metrics, tr, loss, val, NAN);
    m.config = job->config;
    m.hyper = hyper;
    m.metrics = metrics;
    m.n_params = tr->spec.P;
    m.params = (float *)tr->params;
    m.inner_lrs = (float *)trainer_lrs(tr);
    int version = 0;
    return store_job_finish(st, job->id, JOB_SUCCEEDED, NULL, &m, &version, err);
}

typedef enum { RUN_DONE, RUN_REQUEUED } RunEnd;

static int worker_cancelled(Worker *w) {
    pthread_mutex_lock(&w->pool->mu);
    int c = w->cancel;
    pthread_mutex_unlock(&w->pool->mu);
    return c;
}

static RunEnd run_job(Worker *w, Store *st, StoreJob *job) {
    JobPool *p = w->pool;
    MsError err = {0};
    TrainConfig cfg;
    Trainer tr;
    memset(&tr, 0, sizeof tr);
    TaskSampler *sampler = NULL;
    JobsDataset ds;
    memset(&ds, 0, sizeof ds);
    RunEnd end = RUN_DONE;
    MsStatus s = codec_config_parse(&cfg, job->config, strlen(job->config), &err);
    if (s == MS_OK) s = jobs_build_sampler(st, &cfg, &ds, &sampler, &err);
    if (s == MS_OK) s = trainer_init_with_sampler(&tr, &cfg, sampler, &err);
    if (s != MS_OK) {
        store_job_finish(st, job->id, JOB_FAILED, err.msg, NULL, NULL, NULL);
        goto done;
    }
    if (job->has_checkpoint) {
        void *img = NULL;
        size_t n = 0;
        // An unreadable checkpoint (corrupt blob) restarts the job from iteration 0, which
        // reaches the same final weights: training is deterministic from the seed.
        if (store_job_checkpoint_get(st, job->id, &img, &n, NULL) == MS_OK)
            trainer_restore(&tr, img, n, NULL);
        free(img);
    }
    const int64_t total = cfg.iterations;
    const int64_t stride = total / (p->cfg.curve_points > 0 ? p->cfg.curve_points : 1) + 1;
    Curve curve = {.n = 0};
    double t_ckpt = mono_s(), t_prog = t_ckpt, t_cancel = t_ckpt;
    int64_t it_ckpt = tr.t, it_prog = tr.t;
    double loss_sum = 0, last_loss = NAN, last_val = NAN;
    int loss_n = 0;
    while (tr.t < total) {
        double now = mono_s();
        if (pool_stopping(p)) {
            // graceful stop: keep the work done, hand the job back to the queue
            if (checkpoint(st, job, &tr, &err) == MS_OK) store_job_requeue(st, job->id, NULL);
            end = RUN_REQUEUED;
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
            store_job_finish(st, job->id, JOB_CANCELLED, NULL, NULL, NULL, NULL);
            goto done;
        }
        TrainStats ts;
        s = trainer_step(&tr, &ts, &err);
        if (s != MS_OK) {
            store_job_finish(st, job->id, JOB_FAILED, err.msg, NULL, NULL, NULL);
            goto done;
        }
        loss_sum += ts.meta_loss;
        loss_n++;
        if (tr.t % stride == 0 || tr.t == total) curve_add(&curve, tr.t, "meta_loss", ts.meta_loss);
        now = mono_s();
        if (now - t_prog >= p->cfg.progress_seconds || curve.n >= CURVE_BUF - 2 || tr.t == total) {
            last_loss = loss_sum / loss_n;
            last_val = val_loss(p, &tr);
            curve_add(&curve, tr.t, "val_loss", last_val);
            double tps = (double)(tr.t - it_prog) * cfg.meta_batch / fmax(now - t_prog, 1e-9);
            curve_add(&curve, tr.t, "tasks_per_s", tps);
            char mj[512];
            metrics_json(mj, sizeof mj, &tr, last_loss, last_val, tps);
            store_job_progress(st, job->id, tr.t, mj, curve.pts, curve.n, NULL);
            curve.n = 0;
            loss_sum = 0, loss_n = 0;
            t_prog = now, it_prog = tr.t;
        }
        int by_count = p->cfg.checkpoint_every > 0 && tr.t - it_ckpt >= p->cfg.checkpoint_every;
        int by_time = p->cfg.checkpoint_seconds > 0 && now - t_ckpt >= p->cfg.checkpoint_seconds;
        if ((by_count || by_time) && tr.t < total) {
            if (checkpoint(st, job, &tr, &err) == MS_OK) {
                pthread_mutex_lock(&p->mu);
                p->stats.checkpoints++;
                pthread_mutex_unlock(&p->mu);
            }
            t_ckpt = now, it_ckpt = tr.t;
        }
        pthread_mutex_lock(&p->mu);
        p->stats.iterations++;
        pthread_mutex_unlock(&p->mu);
    }
    if (finish_succeeded(st, job, &tr, last_val, last_loss, &err) != MS_OK) {
        // the model could not be written (e.g. disk full): the job fails with the reason, its
        // state and the absence of a version stay consistent (one transaction)
        store_job_finish(st, job->id, JOB_FAILED, err.msg, NULL, NULL, NULL);
    }
done:
    // The trainer owns the sampler from trainer_init_with_sampler on (it destroys it on failure).
    trainer_free(&tr);
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
