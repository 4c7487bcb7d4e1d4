/*
 * The wave pool (layout and contract in include/metaserve/jobs/taskpool.h).
 *
 * A run publishes (fn, arg, n) under the mutex with a new generation number and wakes the
 * threads; every participant, the caller included, takes indices from one atomic ticket (the
 * generation in the high 32 bits, the next index in the low 32) until they run out, and the
 * caller waits for the count of finished calls to reach n. A thread late for a run cannot take
 * an index of the next one with the last one's function: its compare-and-swap names the
 * generation it read the function with. Threads spin
 * briefly on the generation before they sleep, since waves follow each other within
 * microseconds while a job trains.
 */
#include "metaserve/jobs/taskpool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#define SPIN_ROUNDS 20000 // generation polls before a thread sleeps on the condition variable

struct TaskPool {
    int threads; // in all, the caller included
    pthread_t *tids;
    pthread_mutex_t mu;
    pthread_cond_t wake, done_cv;
    atomic_long gen;      // bumped by every run (and by destroy)
    atomic_ullong ticket; // (gen & 0xffffffff) << 32 | next index to take
    atomic_int done;      // calls finished in this run
    atomic_int stop;      // destroy asked
    int n;                // this run's size
    void (*fn)(void *, int);
    void *arg;
};

// Takes and runs indices of run `gen` until none are left (or a newer run has begun).
static void work(TaskPool *p, long gen, int n, void (*fn)(void *, int), void *arg) {
    const unsigned long long tag = ((unsigned long long)gen & 0xffffffffULL) << 32;
    unsigned long long t = atomic_load(&p->ticket);
    for (;;) {
        if ((t & ~0xffffffffULL) != tag || (int)(t & 0xffffffffULL) >= n) return;
        if (!atomic_compare_exchange_weak(&p->ticket, &t, t + 1)) continue; // t reloaded
        int i = (int)(t & 0xffffffffULL);
        fn(arg, i);
        if (atomic_fetch_add(&p->done, 1) + 1 == n) {
            pthread_mutex_lock(&p->mu);
            pthread_cond_signal(&p->done_cv);
            pthread_mutex_unlock(&p->mu);
        }
    }
}

static void *thread_main(void *arg) {
    TaskPool *p = arg;
    long seen = 0;
    for (;;) {
        long g = atomic_load(&p->gen);
        for (int k = 0; g == seen && k < SPIN_ROUNDS; k++)
            g = atomic_load(&p->gen);
        pthread_mutex_lock(&p->mu);
        while ((g = atomic_load(&p->gen)) == seen)
            pthread_cond_wait(&p->wake, &p->mu);
        int n = p->n;
        void (*fn)(void *, int) = p->fn;
        void *a = p->arg;
        pthread_mutex_unlock(&p->mu);
        seen = g;
        if (atomic_load(&p->stop)) return NULL;
        work(p, g, n, fn, a);
    }
}

MsStatus taskpool_create(TaskPool **out, int threads, MsError *err) {
    *out = NULL;
    if (threads < 1 || threads > 64)
        return ms_fail(err, MS_ERR_INVALID, "threads: must be an integer in 1..64");
    TaskPool *p = calloc(1, sizeof *p);
    if (!p || !(p->tids = calloc((size_t)threads, sizeof *p->tids))) {
        free(p);
        return ms_fail(err, MS_ERR_NOMEM, "threads: cannot allocate a pool");
    }
    p->threads = 1;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->wake, NULL);
    pthread_cond_init(&p->done_cv, NULL);
    for (int t = 1; t < threads; t++) {
        if (pthread_create(&p->tids[t], NULL, thread_main, p) != 0) {
            taskpool_destroy(p);
            return ms_fail(err, MS_ERR_NOMEM, "threads: cannot start thread %d of %d", t + 1,
                           threads);
        }
        p->threads++;
    }
    *out = p;
    return MS_OK;
}

void taskpool_run(void *pool, int n, void (*fn)(void *arg, int i), void *arg) {
    TaskPool *p = pool;
    if (n <= 0) return;
    if (p->threads == 1 || n == 1) {
        for (int i = 0; i < n; i++)
            fn(arg, i);
        return;
    }
    pthread_mutex_lock(&p->mu);
    p->n = n, p->fn = fn, p->arg = arg;
    atomic_store(&p->done, 0);
    long gen = atomic_load(&p->gen) + 1;
    atomic_store(&p->ticket, ((unsigned long long)gen & 0xffffffffULL) << 32);
    atomic_store(&p->gen, gen);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    work(p, gen, n, fn, arg);
    pthread_mutex_lock(&p->mu);
    while (atomic_load(&p->done) < n)
        pthread_cond_wait(&p->done_cv, &p->mu);
    pthread_mutex_unlock(&p->mu);
}

void taskpool_destroy(TaskPool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    atomic_store(&p->stop, 1);
    atomic_fetch_add(&p->gen, 1);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    for (int t = 1; t < p->threads; t++)
        pthread_join(p->tids[t], NULL);
    pthread_cond_destroy(&p->wake);
    pthread_cond_destroy(&p->done_cv);
    pthread_mutex_destroy(&p->mu);
    free(p->tids);
    free(p);
}

int taskpool_threads(const TaskPool *p) {
    return p ? p->threads : 1;
}
