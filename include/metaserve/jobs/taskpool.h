/*
 * A pool of threads that runs the tasks of one meta-batch wave at once (meta/train.h's
 * TrainParallelFn): taskpool_run(pool, n, fn, arg) calls fn(arg, i) for every i in [0, n) on the
 * caller and the pool's threads, and returns when all have returned. One pool per running job,
 * owned by the job's worker thread (jobs.c), by `metaserve train` and by bench_meta.
 *
 * Which thread runs which i is not fixed; callers make results independent of it (the trainer
 * gives every task its own scratch and adds the gradients in task order).
 *
 * Usage:
 *     TaskPool *p;
 *     if (taskpool_create(&p, threads, &err) != MS_OK) ...;
 *     trainer_set_parallel(&tr, threads, 0, taskpool_run, p, &err);
 *     ... trainer_step ...
 *     trainer_free(&tr); taskpool_destroy(p);
 */
#ifndef METASERVE_JOBS_TASKPOOL_H
#define METASERVE_JOBS_TASKPOOL_H

#include "metaserve/core/status.h"

typedef struct TaskPool TaskPool;

/** A pool for `threads` threads in all, the caller included (threads - 1 are started).
 *  MS_ERR_INVALID outside 1..64, MS_ERR_NOMEM when a thread cannot be started. */
MsStatus taskpool_create(TaskPool **out, int threads, MsError *err);
/** Runs fn(arg, i) for i in [0, n) and returns once every call has returned. Not reentrant: one
 *  caller at a time. */
void taskpool_run(void *pool, int n, void (*fn)(void *arg, int i), void *arg);
/** Stops and joins the threads. Accepts NULL. */
void taskpool_destroy(TaskPool *p);
/** Threads in all (the caller included). */
int taskpool_threads(const TaskPool *p);

#endif
