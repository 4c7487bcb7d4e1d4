/*
 * Private to the SQLite backend (src/store/store_*.c) and its tests: the Store struct, the
 * prepared-statement cache, transactions, SQLite error mapping, validation of names and ids,
 * and column/blob helpers. Nothing outside src/store and tests/store includes this file.
 *
 * Statements are prepared once per connection and cached by the address of their SQL text
 * (each file keeps its SQL in `static const char` arrays next to the code that runs it). A
 * function takes a statement with store_stmt, binds, steps, and always hands it back with
 * store_stmt_done (reset + clear bindings) on its single exit path.
 */
#ifndef METASERVE_STORE_INTERNAL_H
#define METASERVE_STORE_INTERNAL_H

#include <sqlite3.h>
#include <stdint.h>

#include "metaserve/store/blob.h"
#include "metaserve/store/store.h"

#define STORE_BUSY_TIMEOUT_MS 5000 // how long a writer waits for the write lock before MS_ERR_BUSY
// PRAGMA journal_size_limit: a WAL restarted from its start is cut back to this size (64 MiB)
#define STORE_WAL_LIMIT_BYTES "67108864"
#define STORE_STMT_CACHE      96 // distinct SQL texts in the backend (about 50; asserted)

typedef struct PgStore PgStore;         // the PostgreSQL backend's state (store_pg.h)
typedef struct SyncBarrier SyncBarrier; // group commit of one file (store_sqlite_sync.c)

struct Store {
    PgStore *pg; // non-NULL: this Store is a PostgreSQL connection and db is unused
    sqlite3 *db;
    SyncBarrier *sync; // non-NULL: commits wait on the file's barrier (group commit)
    int fresh;         // 1: no statement has run since this connection's last durable commit
                       // or fence, so whatever it read is durable (store_durable_fence)
    struct {
        const char *sql;  // the static SQL text (the cache key is its address)
        sqlite3_stmt *st; // prepared on first use, finalized by store_close
    } stmts[STORE_STMT_CACHE];
    int n_stmts;
};

/* ---- connection (store_sqlite.c) ---- */

/** store_open, but migrates only up to schema version target (0..STORE_SCHEMA_VERSION): the
 *  test harness uses it to build databases at every earlier version. */
MsStatus store_open_at(Store **out, const char *path, int target, MsError *err);
/** PRAGMA user_version of the open file. */
MsStatus store_user_version(Store *s, int *out, MsError *err);
/** MS_ERR_DB naming both versions: the database is at `version`, newer than this build. */
MsStatus store_refuse_newer(int version, MsError *err);
/** Applies the migrations (store_sqlite_migrate.c) until the file is at schema version target. */
MsStatus store_sqlite_migrate(Store *s, int target, MsError *err);
/** The underlying connection (borrowed; for tests and fault injection). */
sqlite3 *store_sqlite_db(Store *s);

/** The cached prepared statement for sql (a static string), preparing it on first use. */
MsStatus store_stmt(Store *s, const char *sql, sqlite3_stmt **out, MsError *err);
/** Resets q and clears its bindings so the cache can hand it out again. Accepts NULL. */
void store_stmt_done(sqlite3_stmt *q);
/** Steps q expecting SQLITE_DONE; maps anything else through store_sqlite_fail. */
MsStatus store_step_done(Store *s, sqlite3_stmt *q, const char *what, MsError *err);

/**
 * Maps an SQLite result code to MsStatus with a message naming `what` (e.g. "claiming a job"):
 * busy beyond the timeout -> MS_ERR_BUSY; SQLITE_FULL -> MS_ERR_DB "disk full"; read-only ->
 * MS_ERR_DB "read-only"; SQLITE_NOMEM -> MS_ERR_NOMEM; SQLITE_TOOBIG -> MS_ERR_TOO_LARGE;
 * corruption -> MS_ERR_DB "corrupt"; anything else MS_ERR_DB with SQLite's message.
 */
MsStatus store_sqlite_fail(Store *s, int rc, const char *what, MsError *err);

/** BEGIN IMMEDIATE: takes the write lock now (waiting up to the busy timeout). */
MsStatus store_tx_begin(Store *s, MsError *err);
/** COMMIT, returning once the transaction is durable (group commit: after the barrier). An
 *  error after the commit itself (the barrier's fsync failed) is MS_ERR_IO: the write may be
 *  visible but is not acknowledged. */
MsStatus store_tx_commit(Store *s, MsError *err);
/** COMMIT without waiting for durability: for a running job's progress and checkpoints only,
 *  which a job re-derives when it resumes from an earlier checkpoint. The next durable commit
 *  or fence on the file covers it. */
MsStatus store_tx_commit_lazy(Store *s, MsError *err);
/** Rolls back the open transaction, if any (safe to call on every failure path). */
void store_tx_rollback(Store *s);

/* ---- group commit (store_sqlite_sync.c) ---- */

/** Attaches s to its file's barrier (created on first use); MS_ERR_NOMEM when it cannot be. */
MsStatus store_sync_attach(Store *s, MsError *err);
/** Drops s's reference (freeing the barrier with the last one). Accepts a detached s. */
void store_sync_detach(Store *s);
/** Before COMMIT: marks a commit in flight, so fences wait for it. */
void store_sync_commit_begin(Store *s);
/** After COMMIT (committed: it succeeded): takes a ticket, and when wait is set returns once an
 *  fsync of the WAL that started after the ticket succeeded; MS_ERR_IO when one failed. */
MsStatus store_sync_commit_end(Store *s, int committed, int wait, MsError *err);
/** Waiters on s's barrier asleep until the fsync in flight ends (for tests). */
int store_sync_waiting(Store *s);

/* ---- validation and ids (store_sqlite.c) ---- */

/**
 * Checks a model name, dataset name or alias: 1..STORE_NAME_MAX-1 characters of
 * [A-Za-z0-9._-], not starting with '.'; an alias (is_alias) must also not be all digits.
 * MS_ERR_INVALID naming `field` otherwise. Reads at most STORE_NAME_MAX bytes of name.
 */
MsStatus store_name_check(const char *field, const char *name, int is_alias, MsError *err);
/** 1 when id is 32 lowercase hex characters (the only ids the store makes), else 0. */
int store_id_valid(const char *id);
/** MS_OK for a well-formed id, else MS_ERR_NOT_FOUND "<what> not found (malformed id)": only
 *  well-formed ids are echoed, and anything else cannot name a row. */
MsStatus store_id_check(const char *what, const char *id, MsError *err);
/** A new random id (128 bits from getrandom, or /dev/urandom) as 32 lowercase hex + NUL. */
MsStatus store_id_new(char id[STORE_ID_MAX], MsError *err);

/* ---- columns and blobs (store_sqlite.c; streamed: store_sqlite_stream.c) ---- */

/** Heap copy of a text column (dflt when NULL); NULL only when allocation fails. */
char *store_col_strdup(sqlite3_stmt *q, int col, const char *dflt);
/** Copies a text column into dst[0..cap), truncating at a UTF-8 character boundary. */
void store_col_copy(char *dst, size_t cap, sqlite3_stmt *q, int col);
/** Copies t into dst[0..cap) the same way (both backends' text columns). */
void store_text_copy(char *dst, size_t cap, const char *t);
/** A double column, NaN for NULL (SQLite stores NaN as NULL). */
double store_col_double(sqlite3_stmt *q, int col);

/** Encodes n elements of type t and binds the blob to parameter idx (SQLite frees it). */
MsStatus store_bind_blob(Store *s, sqlite3_stmt *q, int idx, BlobType t, const void *elems,
                         size_t n, const char *what, MsError *err);
/**
 * Decodes a blob column of type t into a malloc'd array (*out, *n; NULL when empty). A NULL
 * column or a blob that fails its checks is MS_ERR_DB "<what>: corrupt ..." and nothing is
 * returned.
 */
MsStatus store_col_blob(sqlite3_stmt *q, int col, BlobType t, void **out, size_t *n,
                        const char *what, MsError *err);

/*
 * Streamed blobs, for arrays too large to hold twice (dataset pools): incremental blob I/O a
 * chunk of STORE_BLOB_CHUNK bytes at a time, producing and accepting exactly the bytes of
 * blob_encode / blob_check, so streamed and whole-value rows read alike either way.
 */
#define STORE_BLOB_CHUNK     65536    // bytes per sqlite3_blob_read / sqlite3_blob_write call
#define STORE_BLOB_ANY_COUNT SIZE_MAX // store_blob_stream_read: no expected element count

/**
 * Writes n elements of type t (elems may be NULL when n == 0) as a blob into table.col of row
 * rowid, which must hold a zeroblob of exactly blob_encoded_size(t, n) bytes inserted in the
 * caller's open write transaction. The payload goes first, chunk by chunk through one
 * STORE_BLOB_CHUNK buffer (little-endian conversion) while the checksum is computed; the header
 * last. Uses no memory proportional to n. On failure the row holds partial data: the caller
 * rolls back.
 */
MsStatus store_blob_stream_write(Store *s, const char *table, const char *col, sqlite3_int64 rowid,
                                 BlobType t, const void *elems, size_t n, const char *what,
                                 MsError *err);
/**
 * Reads the blob of type t in table.col of row rowid into a malloc'd host-order array (*out,
 * *n; *out NULL when the count is 0; caller frees with free()). The header is checked (and the
 * count against want_n unless it is STORE_BLOB_ANY_COUNT) before the one allocation, of exactly
 * the payload's size; the payload is read into it in chunks, hashed, and converted in place.
 * Any mismatch is MS_ERR_DB "<what>: corrupt ..." and nothing is returned. To read several
 * blobs of one row from one snapshot, keep a statement on the row active (or a transaction
 * open) across the calls.
 */
MsStatus store_blob_stream_read(Store *s, const char *table, const char *col, sqlite3_int64 rowid,
                                BlobType t, size_t want_n, void **out, size_t *n, const char *what,
                                MsError *err);

/* ---- shared by models and jobs (store_models.c) ---- */

/** Checks the caller-provided fields of a model before a write. */
MsStatus store_model_check(const StoreModel *m, MsError *err);
/** Inserts m as version latest + 1 inside the caller's write transaction; sets m->version,
 *  m->created_at, m->job_id (from job_id, "" when NULL) and *version. */
MsStatus store_model_insert(Store *s, StoreModel *m, const char *job_id, int *version,
                            MsError *err);

/* ---- listings (store_sqlite.c) ---- */

/** Makes room for element cnt of the array *arr (capacity *cap elements of elem bytes),
 *  doubling from `first`; MS_ERR_NOMEM naming `what` ("listing jobs") on failure, *arr kept. */
MsStatus store_grow(void **arr, int *cap, int cnt, size_t elem, int first, const char *what,
                    MsError *err);
/**
 * The common end of every listing. st == MS_OK: hands the array arr of cnt rows to the caller
 * (*rows, *n). Otherwise frees each of the cnt rows with row_free (when non-NULL; rows of elem
 * bytes), then arr, and clears *more (when non-NULL). Returns st.
 */
MsStatus store_list_end(MsStatus st, void *arr, int cnt, size_t elem, void (*row_free)(void *),
                        void *rows, int *n, int *more);

#endif
