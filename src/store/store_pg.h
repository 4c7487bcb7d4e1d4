/*
 * Private to the PostgreSQL backend (src/store/store_pg*.c): the connection state hung off a
 * Store whose METASERVE_DB is a postgresql:// or postgres:// URI, the helpers every entity file
 * uses (parameters, binary result columns, transactions, the SQLSTATE -> MsStatus map), and the
 * pg_* counterparts of the store.h functions. Each public store_* function checks s->pg and
 * hands the call to its pg_* counterpart after the backend-neutral argument checks, so callers
 * never know which backend they use. Only src/store includes libpq-fe.h.
 *
 * Every query goes through pg_query with parameters (never spliced into SQL text) and asks for
 * binary results: integers are int8 (bigint), reals float8, arrays bytea holding exactly the
 * bytes of blob_encode, checked on every read as on SQLite.
 */
#ifndef METASERVE_STORE_PG_H
#define METASERVE_STORE_PG_H

#include <libpq-fe.h>
#include <stdint.h>

#include "store_internal.h"

#define PG_MAX_ARGS       16
#define PG_LEASES         16        // leases one connection remembers (a worker holds one)
#define PG_CHUNK          (1 << 20) // bytes per dataset chunk row (streamed arrays)
#define PG_BACKOFF_MS     100       // first reconnect delay; doubled up to PG_BACKOFF_MAX_MS
#define PG_BACKOFF_MAX_MS 5000
#define PG_STMT_CACHE     64   // statements prepared per connection (about 60 distinct texts)
#define PG_LOCK_TIMEOUT   "5s" // as SQLite's busy timeout (STORE_BUSY_TIMEOUT_MS)
// The database's clock in ms: leases are compared with one clock, whatever the replicas' skew.
#define PG_NOW "(extract(epoch from clock_timestamp()) * 1000)::bigint"

struct PgStore {
    PGconn *conn;
    char *conninfo;              // the URI (owned)
    char *password;              // from METASERVE_DB_PASSWORD_FILE, or NULL (owned)
    char replica[64];            // lease owner name of this process
    int64_t lease_ms;            // lease length taken by a claim and renewed by progress writes
    int64_t next_retry_ms;       // monotonic ms before which no reconnect is attempted
    int backoff_ms;              // current reconnect delay
    unsigned long connects_seen; // the process's connection count at the last failed attempt
    int in_tx;                   // 1 between pg_begin and pg_commit / pg_rollback
    char *stmts[PG_STMT_CACHE];  // SQL texts prepared on conn as statements "s0", "s1", ...
    int n_stmts;                 // (owned; forgotten with the connection they belong to)
    struct {
        char id[STORE_ID_MAX];
        int64_t epoch;
    } leases[PG_LEASES]; // jobs this connection claimed, with the epoch of the claim
    int n_leases;
};

/* ---- connection (store_pg.c) ---- */

/** 1 when path is a PostgreSQL URI (postgresql:// or postgres://). */
int pg_is_uri(const char *path);
/** Connects, migrates under an advisory lock (one transaction) and fills s->pg. */
MsStatus pg_open(Store *s, const char *uri, const StoreOptions *opt, MsError *err);
void pg_close(Store *s);

/** Query parameters: text (NULL = SQL NULL), int8, float8, bytea (binary). Borrowed pointers. */
typedef struct {
    int n;
    Oid types[PG_MAX_ARGS];
    const char *vals[PG_MAX_ARGS];
    int lens[PG_MAX_ARGS];
    int fmts[PG_MAX_ARGS];
    unsigned char num[PG_MAX_ARGS][8];
} PgArgs;
void pg_text(PgArgs *a, const char *t);
void pg_i64(PgArgs *a, int64_t v);
void pg_f64(PgArgs *a, double v);
void pg_bytes(PgArgs *a, const void *p, size_t n);

/** Runs sql with args (may be NULL); *res (caller PQclear's it; may be NULL when not wanted)
 *  holds the rows. Reconnects first when the connection is down (outside a transaction, with
 *  backoff); failures map through pg_fail. */
MsStatus pg_query(Store *s, const char *sql, const PgArgs *a, PGresult **res, const char *what,
                  MsError *err);
/** Maps a failed result (or a lost connection when res is NULL) to MsStatus: connection lost ->
 *  MS_ERR_DB/MS_DETAIL_UNAVAILABLE; serialization, deadlock, lock timeout -> MS_ERR_BUSY/LOCKED;
 *  disk full -> MS_ERR_DB/FULL; read-only -> MS_ERR_DB/READONLY; data corrupted -> CORRUPT. */
MsStatus pg_fail(Store *s, const PGresult *res, const char *what, MsError *err);
MsStatus pg_begin(Store *s, MsError *err);
MsStatus pg_commit(Store *s, MsError *err);
void pg_rollback(Store *s);
/** Rows changed by a command result. */
int64_t pg_changes(const PGresult *res);

/** The newest-first page of table (jobs or datasets: ordered by created_at, seq) after the row
 *  whose id is `after` ("" or NULL: from the start), at most limit + 1 rows of cols into *res
 *  (so the caller can tell whether there are more). MS_ERR_INVALID naming `noun` when `after`
 *  names no row. */
MsStatus pg_list_newest(Store *s, const char *table, const char *cols, const char *noun,
                        const char *after, int limit, PGresult **res, MsError *err);

/** Binary result columns. */
int64_t pg_col_i64(const PGresult *r, int row, int col); // 0 for NULL
double pg_col_f64(const PGresult *r, int row, int col);  // NaN for NULL
int pg_col_null(const PGresult *r, int row, int col);
void pg_col_copy(char *dst, size_t cap, const PGresult *r, int row, int col);
char *pg_col_strdup(const PGresult *r, int row, int col, const char *dflt);
/** Decodes a bytea column holding a blob of type t (see store_col_blob). */
MsStatus pg_col_blob(const PGresult *r, int row, int col, BlobType t, void **out, size_t *n,
                     const char *what, MsError *err);
/** Encodes elems as a blob into a malloc'd buffer (*buf) and adds it as a bytea argument. */
MsStatus pg_arg_blob(PgArgs *a, void **buf, BlobType t, const void *elems, size_t n, MsError *err);

/* ---- datasets (store_pg_data.c) ---- */

/** Writes one dataset_chunks row: array k (0 x, 1 y, 2 index) of dataset id, piece seq (0: the
 *  24-byte blob header; 1..: the payload in PG_CHUNK pieces), n bytes at p. */
MsStatus pg_chunk_put(Store *s, const char *id, int k, int64_t seq, const void *p, size_t n,
                      const char *what, MsError *err);

/* ---- leases (store_pg_jobs.c) ---- */

/** The epoch of this connection's lease on job id, or 0 when it holds none. */
int64_t pg_lease_epoch(Store *s, const char *id);
void pg_lease_drop(Store *s, const char *id);

/* ---- the store.h counterparts ---- */

int pg_schema_version(Store *s);
MsStatus pg_integrity_check(Store *s, MsError *err);

MsStatus pg_model_insert(Store *s, StoreModel *m, const char *job_id, int *version, MsError *err);
MsStatus pg_model_put(Store *s, StoreModel *m, int *version, MsError *err);
MsStatus pg_lookup_version(Store *s, const char *name, int version, const char *alias, int *out,
                           int *found, MsError *err);
MsStatus pg_model_get(Store *s, const char *name, int version, StoreModel *out, MsError *err);
MsStatus pg_model_list(Store *s, const char *after, int limit, StoreModelSummary **rows, int *n,
                       int *more, MsError *err);
MsStatus pg_model_versions(Store *s, const char *name, StoreModel **rows, int *n, MsError *err);
MsStatus pg_model_delete(Store *s, const char *name, int version, MsError *err);
MsStatus pg_alias_set(Store *s, const char *name, const char *alias, int version, MsError *err);
MsStatus pg_alias_list(Store *s, const char *name, StoreAlias **rows, int *n, MsError *err);
MsStatus pg_alias_delete(Store *s, const char *name, const char *alias, MsError *err);

MsStatus pg_job_create(Store *s, const char *config_json, const char *model_name, int64_t total,
                       int max_queued, char id_out[STORE_ID_MAX], MsError *err);
MsStatus pg_job_get(Store *s, const char *id, StoreJob *out, MsError *err);
MsStatus pg_job_list(Store *s, const char *after, int limit, StoreJob **rows, int *n, int *more,
                     MsError *err);
MsStatus pg_job_counts(Store *s, int64_t counts[5], MsError *err);
MsStatus pg_job_claim(Store *s, StoreJob *out, int *claimed, MsError *err);
MsStatus pg_job_progress(Store *s, const char *id, int64_t iteration, const char *metrics_json,
                         const StoreMetric *pts, int n, MsError *err);
MsStatus pg_job_checkpoint(Store *s, const char *id, int64_t iteration, const void *data, size_t n,
                           MsError *err);
MsStatus pg_job_checkpoint_get(Store *s, const char *id, void **data, size_t *n, MsError *err);
MsStatus pg_job_finish(Store *s, const char *id, JobState state, const char *error,
                       StoreModel *model, int *version, MsError *err);
MsStatus pg_job_cancel(Store *s, const char *id, JobState *state_after, MsError *err);
MsStatus pg_job_requeue_running(Store *s, int *n, MsError *err);
MsStatus pg_job_requeue(Store *s, const char *id, MsError *err);
MsStatus pg_job_metrics(Store *s, const char *id, int64_t after_step, int limit,
                        StoreMetricRow **rows, int *n, int *more, MsError *err);

MsStatus pg_dataset_put(Store *s, StoreDataset *d, const StoreDatasetData *data, MsError *err);
MsStatus pg_dataset_get(Store *s, const char *id, StoreDataset *out, StoreDatasetData *data,
                        MsError *err);
MsStatus pg_dataset_list(Store *s, const char *after, int limit, StoreDataset **rows, int *n,
                         int *more, MsError *err);
MsStatus pg_dataset_delete(Store *s, const char *id, MsError *err);

MsStatus pg_adaptation_put(Store *s, StoreAdaptation *a, MsError *err);
MsStatus pg_adaptation_get(Store *s, const char *id, StoreAdaptation *out, MsError *err);
MsStatus pg_adaptation_delete(Store *s, const char *id, MsError *err);
MsStatus pg_adaptation_expire(Store *s, int64_t now_ms, int *n, MsError *err);

#endif
