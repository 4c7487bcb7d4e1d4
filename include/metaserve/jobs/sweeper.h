/*
 * The maintenance sweeper: one thread that, every period, deletes the adaptations whose time to
 * live has passed and truncates the SQLite write-ahead log. It has its own owner (the server
 * starts it whenever the database is writable), so a server that trains nothing
 * (METASERVE_WORKERS=0) still expires adaptations and keeps the WAL bounded. It lives in jobs/
 * because jobs/ is the area that creates threads.
 *
 * Usage:
 *     SweeperConfig c = {.db_path = "metaserve.db", .period_s = SWEEPER_DEFAULT_PERIOD_S};
 *     Sweeper *s; sweeper_start(&s, &c, &err);  ...  sweeper_stop(s);
 */
#ifndef METASERVE_JOBS_SWEEPER_H
#define METASERVE_JOBS_SWEEPER_H

#include <stdint.h>

#include "metaserve/core/status.h"
#include "metaserve/store/store.h"

#define SWEEPER_DEFAULT_PERIOD_S 10.0 // seconds between sweeps

typedef struct {
    const char *db_path;            // borrowed for the sweeper's lifetime
    const StoreOptions *store_opts; // how its connection is opened (NULL: defaults); borrowed
    double period_s;                // seconds between sweeps, > 0
} SweeperConfig;

typedef struct Sweeper Sweeper;

/** Starts the thread, which sweeps at once and then every period_s. MS_ERR_INVALID for a missing
 *  path or a period <= 0, MS_ERR_NOMEM, MS_ERR_INTERNAL when the thread cannot start. Caller
 *  stops with sweeper_stop. */
MsStatus sweeper_start(Sweeper **out, const SweeperConfig *cfg, MsError *err);
/** Wakes the thread, joins it and frees the sweeper. Accepts NULL. */
void sweeper_stop(Sweeper *s);

typedef struct {
    int64_t adaptations_expired; // deleted since start
    int64_t sweeps;              // sweeps finished since start
} SweeperStats;
/** Counters since start; zeroes for NULL. */
void sweeper_stats(Sweeper *s, SweeperStats *out);

#endif
