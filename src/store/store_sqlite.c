/*
 * SQLite backend of store.h, part 1: the connection. Owns opening (pragmas, refusal of newer
 * files), the statement cache, transactions, the mapping of SQLite errors to MsStatus, and
 * helpers shared by the entity files (store_models.c, store_jobs.c, store_datasets.c,
 * store_adaptations.c): name and id checks, and text and blob columns. The schema and its
 * migrations are in store_sqlite_migrate.c; blobs streamed a chunk at a time in
 * store_sqlite_stream.c. Only src/store includes sqlite3.h.
 *
 * One SQLite file in WAL mode: readers never block the single writer. Every write is a short
 * BEGIN IMMEDIATE transaction, so a writer waits for the lock at BEGIN (busy timeout) and never
 * fails half-way with SQLITE_BUSY_SNAPSHOT. Each thread opens its own connection (opened
 * NOMUTEX: a Store belongs to one thread at a time).
 *
 * Workload: a handful of writes per second per training job (progress, checkpoints), one write
 * per adaptation, reads of models on cache misses; tens of connections at most.
 */
#include "store_internal.h"
#include "store_pg.h"
#include "metaserve/core/name.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

/* ---- errors, statements, transactions ---- */

MsStatus store_sqlite_fail(Store *s, int rc, const char *what, MsError *err) {
    const char *msg = s && s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc);
    switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        return ms_fail_detail(err, MS_ERR_BUSY, MS_DETAIL_LOCKED,
                              "database busy for more than %d ms while %s", STORE_BUSY_TIMEOUT_MS,
                              what);
    case SQLITE_FULL:
        return ms_fail_detail(err, MS_ERR_DB, MS_DETAIL_FULL, "disk full while %s", what);
    case SQLITE_READONLY:
        return ms_fail_detail(err, MS_ERR_DB, MS_DETAIL_READONLY,
                              "database is read-only (%s) while %s", msg, what);
    case SQLITE_NOMEM:
        return ms_fail(err, MS_ERR_NOMEM, "out of memory while %s", what);
    case SQLITE_TOOBIG:
        return ms_fail(err, MS_ERR_TOO_LARGE, "value too large for the database while %s", what);
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
        return ms_fail_detail(err, MS_ERR_DB, MS_DETAIL_CORRUPT,
                              "database file is corrupt or not a database (%s) while %s", msg,
                              what);
    default:
        return ms_fail(err, MS_ERR_DB, "database error while %s: %s (%d)", what, msg, rc);
    }
}

MsStatus store_stmt(Store *s, const char *sql, sqlite3_stmt **out, MsError *err) {
    s->fresh = 0; // it may read a commit not yet durable
    for (int i = 0; i < s->n_stmts; i++)
        if (s->stmts[i].sql == sql) {
            *out = s->stmts[i].st;
            return MS_OK;
        }
    MS_ASSERT(s->n_stmts < STORE_STMT_CACHE);
    sqlite3_stmt *q = NULL;
    int rc = sqlite3_prepare_v3(s->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &q, NULL);
    if (rc != SQLITE_OK) {
        sqlite3_finalize(q);
        *out = NULL;
        return store_sqlite_fail(s, rc, "preparing a statement", err);
    }
    s->stmts[s->n_stmts].sql = sql;
    s->stmts[s->n_stmts].st = q;
    s->n_stmts++;
    *out = q;
    return MS_OK;
}

void store_stmt_done(sqlite3_stmt *q) {
    if (!q) return;
    sqlite3_reset(q);
    sqlite3_clear_bindings(q);
}

MsStatus store_step_done(Store *s, sqlite3_stmt *q, const char *what, MsError *err) {
    int rc = sqlite3_step(q);
    if (rc == SQLITE_DONE) return MS_OK;
    if (rc == SQLITE_ROW) return ms_fail(err, MS_ERR_INTERNAL, "unexpected row while %s", what);
    return store_sqlite_fail(s, rc, what, err);
}

// Runs one cached statement with no parameters and no result rows.
static MsStatus exec_cached(Store *s, const char *sql, const char *what, MsError *err) {
    sqlite3_stmt *q;
    MsStatus st = store_stmt(s, sql, &q, err);
    if (st != MS_OK) return st;
    st = store_step_done(s, q, what, err);
    store_stmt_done(q);
    return st;
}

static const char SQL_BEGIN[] = "BEGIN IMMEDIATE";
static const char SQL_COMMIT[] = "COMMIT";
static const char SQL_ROLLBACK[] = "ROLLBACK";

MsStatus store_tx_begin(Store *s, MsError *err) {
    return exec_cached(s, SQL_BEGIN, "beginning a write transaction", err);
}

// COMMIT, then (group commit) the barrier: wait set, until the commit is durable.
static MsStatus commit(Store *s, int wait, MsError *err) {
    store_sync_commit_begin(s);
    MsStatus st = exec_cached(s, SQL_COMMIT, "committing", err);
    MsStatus sy = store_sync_commit_end(s, st == MS_OK, wait, err);
    // Every read of this connection so far saw commits whose frames were written before this
    // one's, so the fsync that made this commit durable covered them too.
    s->fresh = st == MS_OK && sy == MS_OK && wait;
    return st != MS_OK ? st : sy;
}

MsStatus store_tx_commit(Store *s, MsError *err) {
    return commit(s, 1, err);
}

MsStatus store_tx_commit_lazy(Store *s, MsError *err) {
    return commit(s, 0, err);
}

void store_tx_rollback(Store *s) {
    if (sqlite3_get_autocommit(s->db)) return; // no transaction open
    MsError ignored;
    (void)exec_cached(s, SQL_ROLLBACK, "rolling back", &ignored);
}

/* ---- open, close ---- */

MsStatus store_refuse_newer(int version, MsError *err) {
    return ms_fail(err, MS_ERR_DB,
                   "database schema version %d is newer than this build knows (%d); "
                   "use a newer metaserve",
                   version, STORE_SCHEMA_VERSION);
}

MsStatus store_user_version(Store *s, int *out, MsError *err) {
    s->fresh = 0;
    sqlite3_stmt *q = NULL;
    int rc = sqlite3_prepare_v2(s->db, "PRAGMA user_version", -1, &q, NULL);
    if (rc == SQLITE_OK) rc = sqlite3_step(q);
    MsStatus st = MS_OK;
    if (rc == SQLITE_ROW)
        *out = sqlite3_column_int(q, 0);
    else
        st = store_sqlite_fail(s, rc, "reading the schema version", err);
    sqlite3_finalize(q);
    return st;
}

/* ---- durability ---- */

// Every write the API acknowledges must be on stable storage before the reply leaves. The
// store's own mode is group commit: connections commit at synchronous=NORMAL (COMMIT writes the
// WAL frames and returns without an fsync), and store_tx_commit then waits on the file's
// barrier (store_sqlite_sync.c), where one waiter fsyncs the WAL for every commit that finished
// before that fsync started. So a commit is durable when store_tx_commit returns, as at FULL,
// but concurrent commits share fsyncs instead of taking one each under the write lock. A commit
// is visible to other connections a moment before its fsync; replies built from reads wait
// for it with store_durable_fence. Progress and checkpoints of running jobs commit without
// waiting (store_tx_commit_lazy): a job resumes from an earlier checkpoint and re-derives them.
// WAL checkpoints fsync the WAL before copying it and the file after, at NORMAL as at FULL.
// docs/reliability.md ("Group commit") gives the argument and the figures.
typedef enum {
    SYNC_GROUP,  // NORMAL + the barrier (the store's own)
    SYNC_FULL,   // FULL: one fsync per commit, under the write lock (test and bench builds)
    SYNC_NORMAL, // NORMAL, no barrier: not durable (test and bench builds, to show the loss)
} SyncMode;

// Builds made to test or measure durability (tests/powerloss's server, bench_http) define this
// to run the database at path in mode "GROUP", "FULL" or "NORMAL" instead; it returns NULL for
// the store's own. The service's build does not define it: the weak reference is then NULL.
const char *store_sqlite_synchronous_override(const char *path) __attribute__((weak));

// The mode of this connection's file: SYNC_GROUP unless a test build overrides it.
static MsStatus sync_mode(Store *s, SyncMode *mode, MsError *err) {
    *mode = SYNC_GROUP;
    if (!store_sqlite_synchronous_override) return MS_OK;
    const char *o = store_sqlite_synchronous_override(sqlite3_db_filename(s->db, "main"));
    if (!o || !strcmp(o, "GROUP")) return MS_OK;
    if (!strcmp(o, "FULL"))
        *mode = SYNC_FULL;
    else if (!strcmp(o, "NORMAL"))
        *mode = SYNC_NORMAL;
    else
        return ms_fail(err, MS_ERR_INTERNAL,
                       "synchronous override '%.16s' is not GROUP, FULL or NORMAL", o);
    return MS_OK;
}

// Sets the connection's pragmas: WAL, the synchronous level of the mode above (attaching the
// connection to its file's barrier in group commit), foreign keys, and the cache and WAL size
// limits below.
static MsStatus set_pragmas(Store *s, MsError *err) {
    sqlite3_stmt *q = NULL;
    MsStatus st = MS_OK;
    int rc = sqlite3_prepare_v2(s->db, "PRAGMA journal_mode = WAL", -1, &q, NULL);
    if (rc == SQLITE_OK) rc = sqlite3_step(q);
    if (rc != SQLITE_ROW) {
        st = store_sqlite_fail(s, rc, "enabling WAL", err);
        goto done;
    }
    const char *mode = (const char *)sqlite3_column_text(q, 0);
    if (!mode || strcmp(mode, "wal") != 0) {
        st = ms_fail(err, MS_ERR_DB, "cannot enable WAL: journal_mode is %s",
                     mode ? mode : "unknown");
        goto done;
    }
    // The page cache and mmap are pinned rather than left to how the library was built: blobs
    // are streamed through the page cache (datasets of ~3 * 10^8 bytes, store_datasets.c), so a
    // cache sized to a large fraction of one, or a memory map of the file counted in the
    // process's resident set, would undo the promise that such a dataset is held once in memory.
    // 2000 KiB is SQLite's stock default (this library's build too); the hot B-tree pages of
    // jobs and models fit in it many times over.
    SyncMode m;
    if ((st = sync_mode(s, &m, err)) != MS_OK) goto done;
    if (m == SYNC_GROUP && (st = store_sync_attach(s, err)) != MS_OK) goto done;
    const char *level = m == SYNC_FULL ? "FULL" : "NORMAL";
    char sql[256];
    snprintf(sql, sizeof sql,
             "PRAGMA synchronous = %s; PRAGMA foreign_keys = ON;"
             " PRAGMA cache_size = -2000; PRAGMA mmap_size = 0;"
             " PRAGMA journal_size_limit = " STORE_WAL_LIMIT_BYTES ";",
             level);
    rc = sqlite3_exec(s->db, sql, NULL, NULL, NULL);
    if (rc != SQLITE_OK) st = store_sqlite_fail(s, rc, "setting pragmas", err);
done:
    sqlite3_finalize(q);
    return st;
}

static MsStatus open_with(Store **out, const char *path, int target, const StoreOptions *opt,
                          MsError *err) {
    MS_ASSERT(out && path);
    MS_ASSERT(target >= 0 && target <= STORE_SCHEMA_VERSION);
    const StoreOptions none = {0};
    if (!opt) opt = &none;
    MS_ASSERT(opt->max_pages >= 0);
    *out = NULL;
    MsStatus st = MS_OK;
    Store *s = calloc(1, sizeof *s);
    if (!s) return ms_fail(err, MS_ERR_NOMEM, "cannot allocate a store");
    if (pg_is_uri(path)) {
        MS_ASSERT(target == STORE_SCHEMA_VERSION); // earlier versions are SQLite test fixtures
        st = pg_open(s, path, opt, err);
        goto done;
    }
    int flags = opt->read_only ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE;
    int rc = sqlite3_open_v2(path, &s->db, flags | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        st = ms_fail(err, MS_ERR_DB, "cannot open database %s%s: %s", path,
                     opt->read_only ? " read-only" : "",
                     s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc));
        goto done;
    }
    // SQLite silently falls back to read-only when the file cannot be written; every write
    // would then fail later. Say so now, naming the cause.
    if (!opt->read_only && sqlite3_db_readonly(s->db, "main") == 1) {
        st = ms_fail(err, MS_ERR_DB,
                     "database %s is read-only to this process (file or directory permissions, "
                     "or a read-only mount); open it read-only to serve it without writes",
                     path);
        goto done;
    }
    sqlite3_extended_result_codes(s->db, 1);
    sqlite3_busy_timeout(s->db, STORE_BUSY_TIMEOUT_MS);
    // Refuse a file from a newer build before changing anything in it (even its journal mode).
    int v = 0;
    if ((st = store_user_version(s, &v, err)) != MS_OK) goto done;
    if (v > STORE_SCHEMA_VERSION) {
        st = store_refuse_newer(v, err);
        goto done;
    }
    if (opt->read_only && v != target) {
        st = ms_fail(err, MS_ERR_DB,
                     "database %s is at schema version %d, not %d: a read-only database must "
                     "be migrated by a writable start first",
                     path, v, target);
        goto done;
    }
    if ((st = set_pragmas(s, err)) != MS_OK) goto done;
    if (opt->max_pages > 0) {
        char sql[64];
        snprintf(sql, sizeof sql, "PRAGMA max_page_count = %lld", (long long)opt->max_pages);
        rc = sqlite3_exec(s->db, sql, NULL, NULL, NULL);
        if (rc != SQLITE_OK) {
            st = store_sqlite_fail(s, rc, "setting max_page_count", err);
            goto done;
        }
    }
    st = store_sqlite_migrate(s, target, err);
done:
    if (st != MS_OK) {
        store_close(s);
        return st;
    }
    *out = s;
    return MS_OK;
}

MsStatus store_open_at(Store **out, const char *path, int target, MsError *err) {
    return open_with(out, path, target, NULL, err);
}

MsStatus store_open_opts(Store **out, const char *path, const StoreOptions *opt, MsError *err) {
    return open_with(out, path, STORE_SCHEMA_VERSION, opt, err);
}

MsStatus store_open(Store **out, const char *path, MsError *err) {
    return open_with(out, path, STORE_SCHEMA_VERSION, NULL, err);
}

// No explicit wal_checkpoint(TRUNCATE) here: SQLite already checkpoints and removes the WAL when
// the last connection to the file closes, and a TRUNCATE checkpoint run while other connections
// are still reading would wait on them for the whole busy timeout (see store_wal_truncate).
void store_close(Store *s) {
    if (!s) return;
    pg_close(s);
    for (int i = 0; i < s->n_stmts; i++)
        sqlite3_finalize(s->stmts[i].st);
    sqlite3_close_v2(s->db);
    store_sync_detach(s);
    free(s);
}

// SQLite's automatic checkpoints copy the WAL back into the file but restart the WAL from its
// start only at a moment when no reader is using it. Under steady traffic some reader always is,
// so the WAL grows without bound (0.75 GB after five minutes of the load test). A TRUNCATE
// checkpoint waits for the readers of the old WAL to finish (new readers read the file), then
// empties it. It holds the write lock while it waits, so it waits at most wait_ms, not the 5 s
// busy timeout: a request holding a long read (a large dataset streamed out) makes it give up
// (MS_ERR_BUSY) and the next call tries again. It also holds the write lock while it copies
// frames and syncs the file, so a PASSIVE checkpoint (which takes no write lock) first copies
// and syncs what it can, leaving the TRUNCATE only the frames written in between.
MsStatus store_wal_truncate(Store *s, int wait_ms, MsError *err) {
    if (s->pg) return MS_OK; // PostgreSQL recycles its own WAL
    sqlite3_wal_checkpoint_v2(s->db, "main", SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
    sqlite3_busy_timeout(s->db, wait_ms);
    int rc = sqlite3_wal_checkpoint_v2(s->db, "main", SQLITE_CHECKPOINT_TRUNCATE, NULL, NULL);
    sqlite3_busy_timeout(s->db, STORE_BUSY_TIMEOUT_MS);
    if (rc == SQLITE_OK) return MS_OK;
    if ((rc & 0xff) == SQLITE_BUSY || (rc & 0xff) == SQLITE_LOCKED)
        return ms_fail(err, MS_ERR_BUSY, "WAL checkpoint: readers still active after %d ms",
                       wait_ms);
    return store_sqlite_fail(s, rc, "checkpointing the WAL", err);
}

sqlite3 *store_sqlite_db(Store *s) {
    return s->db;
}

int store_is_shared(const Store *s) {
    return s && s->pg != NULL;
}

int store_schema_version(Store *s) {
    if (s->pg) return pg_schema_version(s);
    int v = -1;
    MsError ignored;
    if (store_user_version(s, &v, &ignored) != MS_OK) return -1;
    return v;
}

MsStatus store_integrity_check(Store *s, MsError *err) {
    if (s->pg) return pg_integrity_check(s, err);
    s->fresh = 0;
    sqlite3_stmt *q = NULL;
    MsStatus st = MS_OK;
    int rc = sqlite3_prepare_v2(s->db, "PRAGMA integrity_check", -1, &q, NULL);
    if (rc == SQLITE_OK) rc = sqlite3_step(q);
    if (rc != SQLITE_ROW) {
        st = store_sqlite_fail(s, rc, "checking integrity", err);
        goto done;
    }
    const char *res = (const char *)sqlite3_column_text(q, 0);
    if (!res || strcmp(res, "ok") != 0)
        st = ms_fail(err, MS_ERR_DB, "integrity check failed: %s", res ? res : "(no result)");
done:
    sqlite3_finalize(q);
    return st;
}

int64_t store_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- names and ids ---- */

MsStatus store_name_check(const char *field, const char *name, int is_alias, MsError *err) {
    const char *rule = "must be 1..127 characters of [A-Za-z0-9._-], not starting with '.'";
    if (!name) return ms_fail(err, MS_ERR_INVALID, "%s: missing; %s", field, rule);
    size_t len = strnlen(name, STORE_NAME_MAX);
    if (len == 0 || len >= STORE_NAME_MAX || name[0] == '.')
        return ms_fail(err, MS_ERR_INVALID, "%s: %s", field, rule);
    int digits = 1;
    for (size_t i = 0; i < len; i++) {
        if (!name_char(name[i])) return ms_fail(err, MS_ERR_INVALID, "%s: %s", field, rule);
        if (name[i] < '0' || name[i] > '9') digits = 0;
    }
    if (is_alias && digits)
        return ms_fail(err, MS_ERR_INVALID,
                       "%s: an alias cannot be all digits (it would read as a version)", field);
    return MS_OK;
}

int store_id_valid(const char *id) {
    if (!id) return 0;
    for (int i = 0; i < 32; i++)
        if (!((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'f'))) return 0;
    return id[32] == '\0';
}

MsStatus store_id_check(const char *what, const char *id, MsError *err) {
    if (!store_id_valid(id))
        return ms_fail(err, MS_ERR_NOT_FOUND, "%s not found (malformed id)", what);
    return MS_OK;
}

static int random_bytes(unsigned char *buf, size_t n) {
    size_t got = 0;
    while (got < n) {
        ssize_t r = getrandom(buf + got, n - got, 0);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        got += (size_t)r;
    }
    if (got == n) return 0;
    // getrandom unavailable (old kernel, seccomp): fall back to the device.
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    got = 0;
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        got += (size_t)r;
    }
    close(fd);
    return got == n ? 0 : -1;
}

MsStatus store_id_new(char id[STORE_ID_MAX], MsError *err) {
    static const char hex[] = "0123456789abcdef";
    unsigned char b[16];
    if (random_bytes(b, sizeof b) != 0)
        return ms_fail(err, MS_ERR_IO, "cannot read random bytes for an id");
    for (int i = 0; i < 16; i++) {
        id[2 * i] = hex[b[i] >> 4];
        id[2 * i + 1] = hex[b[i] & 15];
    }
    id[32] = '\0';
    return MS_OK;
}

/* ---- columns and blobs ---- */

char *store_col_strdup(sqlite3_stmt *q, int col, const char *dflt) {
    const char *t = (const char *)sqlite3_column_text(q, col);
    if (!t) t = dflt;
    size_t n = strlen(t);
    char *c = malloc(n + 1);
    if (c) memcpy(c, t, n + 1);
    return c;
}

void store_col_copy(char *dst, size_t cap, sqlite3_stmt *q, int col) {
    const char *t = (const char *)sqlite3_column_text(q, col);
    store_text_copy(dst, cap, t ? t : "");
}

void store_text_copy(char *dst, size_t cap, const char *t) {
    size_t n = strlen(t);
    if (n >= cap) {
        n = cap - 1;
        // Do not cut a UTF-8 sequence: back up over continuation bytes (10xxxxxx) to a lead.
        while (n > 0 && ((unsigned char)t[n] & 0xC0) == 0x80)
            n--;
    }
    memcpy(dst, t, n);
    dst[n] = '\0';
}

double store_col_double(sqlite3_stmt *q, int col) {
    if (sqlite3_column_type(q, col) == SQLITE_NULL) return (double)NAN;
    return sqlite3_column_double(q, col);
}

MsStatus store_bind_blob(Store *s, sqlite3_stmt *q, int idx, BlobType t, const void *elems,
                         size_t n, const char *what, MsError *err) {
    void *b;
    size_t len;
    MsStatus st = blob_encode_alloc(&b, &len, t, elems, n, err);
    if (st != MS_OK) return st;
    // SQLite owns b from here and frees it, even when the bind fails.
    int rc = sqlite3_bind_blob64(q, idx, b, (sqlite3_uint64)len, free);
    if (rc != SQLITE_OK) return store_sqlite_fail(s, rc, what, err);
    return MS_OK;
}

MsStatus store_col_blob(sqlite3_stmt *q, int col, BlobType t, void **out, size_t *n,
                        const char *what, MsError *err) {
    *out = NULL;
    *n = 0;
    if (sqlite3_column_type(q, col) != SQLITE_BLOB)
        return ms_fail_detail(err, MS_ERR_DB, MS_DETAIL_CORRUPT, "%s: corrupt: not a blob", what);
    const void *b = sqlite3_column_blob(q, col);
    int len = sqlite3_column_bytes(q, col);
    if (!b && len > 0) return ms_fail(err, MS_ERR_NOMEM, "%s: out of memory reading", what);
    MsError e = {0};
    MsStatus st = blob_decode_alloc(out, n, b, (size_t)len, t, &e);
    if (st != MS_OK) return ms_fail_detail(err, st, e.detail, "%s: %s", what, e.msg);
    return MS_OK;
}

MsStatus store_grow(void **arr, int *cap, int cnt, size_t elem, int first, const char *what,
                    MsError *err) {
    if (cnt < *cap) return MS_OK;
    int nc = *cap ? 2 * *cap : first;
    void *g = realloc(*arr, (size_t)nc * elem);
    if (!g) return ms_fail(err, MS_ERR_NOMEM, "out of memory %s", what);
    *arr = g;
    *cap = nc;
    return MS_OK;
}

MsStatus store_list_end(MsStatus st, void *arr, int cnt, size_t elem, void (*row_free)(void *),
                        void *rows, int *n, int *more) {
    if (st != MS_OK) {
        for (int i = 0; row_free && i < cnt; i++)
            row_free((char *)arr + (size_t)i * elem);
        free(arr);
        if (more) *more = 0;
        return st;
    }
    *(void **)rows = arr;
    *n = cnt;
    return MS_OK;
}
