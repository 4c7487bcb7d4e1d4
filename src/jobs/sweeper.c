/*
 * The maintenance sweeper (jobs/sweeper.h): one thread with its own Store connection, woken every
 * period or by sweeper_stop. A sweep is one DELETE of expired adaptations and one WAL truncation
 * attempt (a busy attempt is retried next sweep); both are cheap, so a period of seconds costs
 * nothing measurable. Owns the thread, its lock and condition, and the counters.
 */
#include "metaserve/jobs/sweeper.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

struct Sweeper {
    SweeperConfig cfg;
    pthread_mutex_t mu;
    pthread_cond_t wake;
    int stopping; // under mu
    pthread_t thread;
    SweeperStats stats; // under mu
};

static void *sweeper_main(void *arg) {
    Sweeper *s = arg;
    Store *st = NULL;
    if (store_open_opts(&st, s->cfg.db_path, s->cfg.store_opts, NULL) != MS_OK) return NULL;
    pthread_mutex_lock(&s->mu);
    while (!s->stopping) {
        pthread_mutex_unlock(&s->mu);
        int n = 0;
        if (store_adaptation_expire(st, store_now_ms(), &n, NULL) != MS_OK) n = 0;
        // keeps the WAL bounded under steady traffic; a busy attempt is retried next sweep
        store_wal_truncate(st, 200, NULL);
        pthread_mutex_lock(&s->mu);
        s->stats.adaptations_expired += n;
        s->stats.sweeps++;
        if (s->stopping) break;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        double ns = (double)ts.tv_nsec + s->cfg.period_s * 1e9;
        ts.tv_sec += (time_t)(ns / 1e9);
        ts.tv_nsec = (long)fmod(ns, 1e9);
        pthread_cond_timedwait(&s->wake, &s->mu, &ts);
    }
    pthread_mutex_unlock(&s->mu);
    store_close(st);
    return NULL;
}

MsStatus sweeper_start(Sweeper **out, const SweeperConfig *cfg, MsError *err) {
    *out = NULL;
    if (!cfg->db_path || !(cfg->period_s > 0))
        return ms_fail(err, MS_ERR_INVALID, "sweeper: a database path and a period > 0 are needed");
    Sweeper *s = calloc(1, sizeof *s);
    if (!s) return ms_fail(err, MS_ERR_NOMEM, "sweeper: out of memory");
    s->cfg = *cfg;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->wake, NULL);
    if (pthread_create(&s->thread, NULL, sweeper_main, s) != 0) {
        pthread_cond_destroy(&s->wake);
        pthread_mutex_destroy(&s->mu);
        free(s);
        return ms_fail(err, MS_ERR_INTERNAL, "sweeper: cannot start its thread");
    }
    *out = s;
    return MS_OK;
}

void sweeper_stop(Sweeper *s) {
    if (!s) return;
    pthread_mutex_lock(&s->mu);
    s->stopping = 1;
    pthread_cond_broadcast(&s->wake);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->thread, NULL);
    pthread_cond_destroy(&s->wake);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

void sweeper_stats(Sweeper *s, SweeperStats *out) {
    if (!s) {
        *out = (SweeperStats){0};
        return;
    }
    pthread_mutex_lock(&s->mu);
    *out = s->stats;
    pthread_mutex_unlock(&s->mu);
}
