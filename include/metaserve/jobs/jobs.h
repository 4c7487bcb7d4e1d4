/*
 * The meta-training job runner: a pool of worker threads that claim queued jobs from the store,
 * train them (meta/train.h), record progress and loss curves, checkpoint, and write the finished
 * model version atomically with the job's final state. Besides libmicrohttpd, this is the only
 * code that creates threads.
 *
 * Crash safety: a worker checkpoints every checkpoint_every iterations or checkpoint_seconds,
 * whichever comes first. After a crash (kill -9) the next jobpool_start returns running jobs to
 * the queue and they resume from their last checkpoint; the final model is bit-identical to an
 * uninterrupted run, because the checkpoint holds the whole training state and validation
 * measurements draw from their own random stream.
 *
 * One process per database file runs a pool (several pools on one file would each requeue the
 * other's running jobs at start).
 *
 * Usage:
 *     JobPoolConfig c; jobpool_config_defaults(&c);
 *     c.db_path = "metaserve.db";
 *     JobPool *p; jobpool_start(&p, &c, &err);
 *     ... store_job_create(...); jobpool_notify(p); ...
 *     jobpool_stop(p); // running jobs checkpoint and return to the queue
 */
#ifndef METASERVE_JOBS_JOBS_H
#define METASERVE_JOBS_JOBS_H

#include <stddef.h>
#include <stdint.h>

#include "metaserve/core/status.h"
#include "metaserve/meta/train.h"
#include "metaserve/store/store.h"

typedef struct {
    const char *db_path;            // borrowed for the pool's lifetime
    const StoreOptions *store_opts; // how connections are opened (NULL: defaults); borrowed
    int workers;                    // training threads, 1..64
    int64_t checkpoint_every;       // iterations between checkpoints; 0: by time only
    double checkpoint_seconds;      // seconds between checkpoints; 0: by count only
    double progress_seconds;        // seconds between progress writes (iteration, metrics)
    int curve_points;               // loss-curve points kept per metric per job (downsampled)
    int val_tasks;                  // held-out tasks per validation measurement; 0: none
    int train_threads;              // threads per job whose config has no "threads" (default 1)
    int max_train_threads;          // threads per job at most (default 1; a config asking for
                                    // more gets this many: results do not depend on it)
} JobPoolConfig;

#define JOBPOOL_DEFAULT_WORKERS          1    // training threads
#define JOBPOOL_DEFAULT_CHECKPOINT_EVERY 1000 // iterations between checkpoints
#define JOBPOOL_DEFAULT_CHECKPOINT_S     10.0 // seconds between checkpoints

/** Defaults (the server's too): JOBPOOL_DEFAULT_WORKERS workers, checkpoints every
 *  JOBPOOL_DEFAULT_CHECKPOINT_EVERY iterations or JOBPOOL_DEFAULT_CHECKPOINT_S seconds, progress
 *  every 1 s, 500 curve points, 25 validation tasks. */
void jobpool_config_defaults(JobPoolConfig *c);

typedef struct JobPool JobPool;

/** Opens the store, returns jobs left running by a previous process to the queue, and starts
 *  the workers. Caller stops with jobpool_stop. (Expired adaptations are the sweeper's:
 *  jobs/sweeper.h.) */
MsStatus jobpool_start(JobPool **out, const JobPoolConfig *cfg, MsError *err);
/** Wakes idle workers: a job was queued. */
void jobpool_notify(JobPool *p);
/** Asks the worker running job id (if any, in this process) to stop it within one meta-iteration;
 *  the job must already be marked with store_job_cancel. Workers also poll the store. */
void jobpool_cancel(JobPool *p, const char *id);
/** Stops claiming, makes running jobs checkpoint and return to the queue, joins every thread and
 *  frees the pool. Accepts NULL. */
void jobpool_stop(JobPool *p);

/** Counters for metrics (monotonic since start, and jobs running now). */
typedef struct {
    int64_t iterations;    // meta-iterations trained
    int64_t jobs_finished; // succeeded, failed or cancelled here
    int64_t checkpoints;   // checkpoints written
    int running;           // jobs running now
} JobPoolStats;
void jobpool_stats(JobPool *p, JobPoolStats *out);

/**
 * The version a config's "init": {"model": ref} names, checked against the config: resolves ref,
 * reads the version into *m (caller frees with store_model_free) and its name@version into
 * pinned, and checks the architecture (train_config_init_fits). MS_ERR_INVALID or
 * MS_ERR_NOT_FOUND with messages starting "init.model: "; the store's errors otherwise.
 */
MsStatus jobs_init_load(Store *st, const TrainConfig *cfg, StoreModel *m,
                        char pinned[TRAIN_NAME_MAX + 16], MsError *err);

#endif
