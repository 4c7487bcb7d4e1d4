/*
 * PostgreSQL backend of store.h, part 1: the connection and the schema. Owns connecting (libpq
 * URI; a password from METASERVE_DB_PASSWORD_FILE, or libpq's own PGPASSFILE), reconnecting with
 * backoff after the server went away, the map of SQLSTATEs to MsStatus, parameters and binary
 * result columns, transactions, and the migrations.
 *
 * Several replicas share one database. Migrations run in one transaction holding an advisory
 * transaction lock, so N replicas starting at once migrate exactly once: the others wait on the
 * lock, then find the schema current. A database newer than this build is refused.
 *
 * Connection loss: a query that fails because the server is unreachable gives MS_ERR_DB with
 * MS_DETAIL_UNAVAILABLE (HTTP 503 + Retry-After); the next query outside a transaction
 * reconnects, at most once per backoff delay (100 ms doubling to 5 s), so a thread neither
 * crashes nor spins while the server is down, and is back without a restart once it returns.
 */
#include "store_pg.h"

#include <fcntl.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

// Network byte order (PostgreSQL's binary format is big-endian).
static void be_put(unsigned char *p, uint64_t v, int n) {
    for (int i = n - 1; i >= 0; i--, v >>= 8)
        p[i] = (unsigned char)v;
}

static uint64_t be_get(const unsigned char *p, int n) {
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = v << 8 | p[i];
    return v;
}

static int64_t mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int pg_is_uri(const char *path) {
    return path &&
           (strncmp(path, "postgresql://", 13) == 0 || strncmp(path, "postgres://", 11) == 0);
}

/* ---- errors ---- */

MsStatus pg_fail(Store *s, const PGresult *res, const char *what, MsError *err) {
    PgStore *p = s->pg;
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    const char *msg = res ? PQresultErrorMessage(res) : NULL;
    if (!msg || !*msg) msg = PQerrorMessage(p->conn);
    char m[160];
    snprintf(m, sizeof m, "%s", msg ? msg : "");
    m[strcspn(m, "\n")] = '\0';
    if (PQstatus(p->conn) != CONNECTION_OK || !state || strncmp(state, "08", 2) == 0 ||
        strcmp(state, "57P01") == 0 || strcmp(state, "57P02") == 0 || strcmp(state, "57P03") == 0)
        return ms_fail_detail(err, MS_ERR_DB, MS_DETAIL_UNAVAILABLE,
                              "database unavailable while %s: %s", what, m);
    if (strcmp(state, "40001") == 0 || strcmp(state, "40P01") == 0 || strcmp(state, "55P03") == 0)
        return ms_fail_detail(err, MS_ERR_BUSY, MS_DETAIL_LOCKED, "database busy while %s: %s",
                              what, m);
    if (strcmp(state, "53100") == 0)
        return ms_fail_detail(err, MS_ERR_DB, MS_DETAIL_FULL, "disk full while %s", what);
    if (strcmp(state, "25006") == 0)
        return ms_fail_detail(err, MS_ERR_DB, MS_DETAIL_READONLY,
                              "database is read-only (%s) while %s", m, what);
    if (strcmp(state, "53200") == 0)
        return ms_fail(err, MS_ERR_NOMEM, "out of memory while %s", what);
    if (strcmp(state, "54000") == 0)
        return ms_fail(err, MS_ERR_TOO_LARGE, "value too large for the database while %s", what);
    if (strncmp(state, "XX00", 4) == 0)
        return ms_fail_detail(err, MS_ERR_DB, MS_DETAIL_CORRUPT, "database corrupt while %s: %s",
                              what, m);
    return ms_fail(err, MS_ERR_DB, "database error while %s: %s (%s)", what, m, state);
}

/* ---- connection ---- */

static PGconn *connect_now(PgStore *p) {
    const char *keys[5], *vals[5];
    int k = 0;
    keys[k] = "dbname", vals[k++] = p->conninfo; // expanded as a URI (expand_dbname = 1)
    if (p->password) keys[k] = "password", vals[k++] = p->password;
    keys[k] = "connect_timeout", vals[k++] = "3";
    keys[k] = "application_name", vals[k++] = "metaserve";
    keys[k] = NULL, vals[k] = NULL;
    PGconn *c = PQconnectdbParams(keys, vals, 1);
    if (c && PQstatus(c) == CONNECTION_OK) {
        // A row lock held longer than SQLite's busy timeout gives MS_ERR_BUSY (503 +
        // Retry-After) rather than a request that waits for ever. A session left idle inside a
        // transaction for a lease (its process paused or cut off mid-write) is ended by the
        // server, so the row locks it holds cannot keep other replicas from taking its job
        // over once its lease has expired.
        char sql[192];
        snprintf(sql, sizeof sql,
                 "SET client_min_messages = warning; SET lock_timeout = '" PG_LOCK_TIMEOUT
                 "'; SET idle_in_transaction_session_timeout = %lld",
                 (long long)p->lease_ms);
        PQclear(PQexec(c, sql));
    }
    return c;
}

// Forgets the statements prepared on the connection (they die with it).
static void stmts_forget(PgStore *p) {
    for (int i = 0; i < p->n_stmts; i++)
        free(p->stmts[i]);
    p->n_stmts = 0;
}

// Connections this process has made, on any thread: a connection waiting out its backoff tries
// again at once when another one got through, so once the database is back every thread of the
// process is too, not only those whose delay happened to run out.
static atomic_ulong connects_made;

// Makes sure the connection is up; outside a transaction a lost one is re-established, at most
// once per backoff delay unless another connection of the process got through meanwhile.
static MsStatus ensure(Store *s, const char *what, MsError *err) {
    PgStore *p = s->pg;
    if (p->conn && PQstatus(p->conn) == CONNECTION_OK) return MS_OK;
    if (p->in_tx)
        return ms_fail_detail(err, MS_ERR_DB, MS_DETAIL_UNAVAILABLE,
                              "database connection lost while %s", what);
    int64_t now = mono_ms();
    unsigned long made = atomic_load(&connects_made);
    if (now < p->next_retry_ms && made == p->connects_seen)
        return ms_fail_detail(err, MS_ERR_DB, MS_DETAIL_UNAVAILABLE,
                              "database unavailable while %s (reconnecting)", what);
    PQfinish(p->conn);
    stmts_forget(p);
    p->conn = connect_now(p);
    if (p->conn && PQstatus(p->conn) == CONNECTION_OK) {
        atomic_fetch_add(&connects_made, 1);
        p->backoff_ms = PG_BACKOFF_MS;
        p->next_retry_ms = 0;
        return MS_OK;
    }
    p->connects_seen = made;
    p->next_retry_ms = now + p->backoff_ms;
    p->backoff_ms = p->backoff_ms * 2 > PG_BACKOFF_MAX_MS ? PG_BACKOFF_MAX_MS : p->backoff_ms * 2;
    char m[160];
    snprintf(m, sizeof m, "%s", p->conn ? PQerrorMessage(p->conn) : "out of memory");
    m[strcspn(m, "\n")] = '\0';
    return ms_fail_detail(err, MS_ERR_DB, MS_DETAIL_UNAVAILABLE,
                          "database unavailable while %s: %s", what, m);
}

/* ---- parameters and columns ---- */

void pg_text(PgArgs *a, const char *t) {
    MS_ASSERT(a->n < PG_MAX_ARGS);
    int i = a->n++;
    a->types[i] = 0; // inferred from the statement
    a->vals[i] = t;
    a->lens[i] = 0;
    a->fmts[i] = 0;
}

void pg_i64(PgArgs *a, int64_t v) {
    MS_ASSERT(a->n < PG_MAX_ARGS);
    int i = a->n++;
    be_put(a->num[i], (uint64_t)v, 8);
    a->types[i] = 20; // int8
    a->vals[i] = (const char *)a->num[i];
    a->lens[i] = 8;
    a->fmts[i] = 1;
}

void pg_f64(PgArgs *a, double v) {
    MS_ASSERT(a->n < PG_MAX_ARGS);
    int i = a->n++;
    uint64_t bits;
    memcpy(&bits, &v, 8);
    be_put(a->num[i], bits, 8);
    a->types[i] = 701; // float8
    a->vals[i] = (const char *)a->num[i];
    a->lens[i] = 8;
    a->fmts[i] = 1;
}

void pg_bytes(PgArgs *a, const void *p, size_t n) {
    MS_ASSERT(a->n < PG_MAX_ARGS && n <= INT32_MAX);
    int i = a->n++;
    a->types[i] = 17; // bytea
    a->vals[i] = p ? (const char *)p : "";
    a->lens[i] = (int)n;
    a->fmts[i] = 1;
}

MsStatus pg_arg_blob(PgArgs *a, void **buf, BlobType t, const void *elems, size_t n, MsError *err) {
    size_t len;
    MsStatus st = blob_encode_alloc(buf, &len, t, elems, n, err);
    if (st != MS_OK) return st;
    if (len > INT32_MAX)
        return ms_fail(err, MS_ERR_TOO_LARGE, "%zu bytes are too large for one value", len);
    pg_bytes(a, *buf, len);
    return MS_OK;
}

MsStatus pg_query(Store *s, const char *sql, const PgArgs *a, PGresult **res, const char *what,
                  MsError *err) {
    if (res) *res = NULL;
    MsStatus st = ensure(s, what, err);
    if (st != MS_OK) return st;
    static const PgArgs none = {0};
    if (!a) a = &none;
    // A statement is parsed and planned once per connection, then executed by name: a point
    // lookup's round trip is then about half of what an unnamed statement costs.
    PgStore *p = s->pg;
    int k = 0;
    while (k < p->n_stmts && strcmp(p->stmts[k], sql) != 0)
        k++;
    char name[16];
    snprintf(name, sizeof name, "s%d", k);
    if (k == p->n_stmts && k < PG_STMT_CACHE) {
        char *copy = strdup(sql);
        PGresult *r = copy ? PQprepare(p->conn, name, sql, a->n, a->types) : NULL;
        if (!r || PQresultStatus(r) != PGRES_COMMAND_OK) {
            st = r ? pg_fail(s, r, what, err) : ms_fail(err, MS_ERR_NOMEM, "out of memory");
            PQclear(r);
            free(copy);
            return st;
        }
        PQclear(r);
        p->stmts[p->n_stmts++] = copy;
    }
    PGresult *r = k < p->n_stmts
                      ? PQexecPrepared(p->conn, name, a->n, a->vals, a->lens, a->fmts, 1)
                      : PQexecParams(p->conn, sql, a->n, a->types, a->vals, a->lens, a->fmts, 1);
    ExecStatusType es = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
    if (es != PGRES_TUPLES_OK && es != PGRES_COMMAND_OK) {
        st = pg_fail(s, r, what, err);
        PQclear(r);
        return st;
    }
    if (res)
        *res = r;
    else
        PQclear(r);
    return MS_OK;
}

MsStatus pg_list_newest(Store *s, const char *table, const char *cols, const char *noun,
                        const char *after, int limit, PGresult **res, MsError *err) {
    char what[48], sql[1024];
    snprintf(what, sizeof what, "listing %ss", noun);
    PgArgs a = {0};
    pg_i64(&a, (int64_t)limit + 1);
    if (after && after[0]) {
        PgArgs c = {0};
        pg_text(&c, after);
        snprintf(sql, sizeof sql, "SELECT 1 FROM %s WHERE id = $1", table);
        PGresult *r;
        MsStatus st = pg_query(s, sql, &c, &r, what, err);
        if (st != MS_OK) return st;
        int found = PQntuples(r) == 1;
        PQclear(r);
        if (!found) return ms_fail(err, MS_ERR_INVALID, "after: no %s %s (deleted?)", noun, after);
        pg_text(&a, after);
        snprintf(sql, sizeof sql,
                 "SELECT %s FROM %s WHERE (created_at, seq) < (SELECT created_at, seq FROM %s"
                 " WHERE id = $2) ORDER BY created_at DESC, seq DESC LIMIT $1",
                 cols, table, table);
    } else {
        snprintf(sql, sizeof sql, "SELECT %s FROM %s ORDER BY created_at DESC, seq DESC LIMIT $1",
                 cols, table);
    }
    return pg_query(s, sql, &a, res, what, err);
}

int64_t pg_changes(const PGresult *res) {
    const char *t = PQcmdTuples((PGresult *)res);
    return t && *t ? strtoll(t, NULL, 10) : 0;
}

int pg_col_null(const PGresult *r, int row, int col) {
    return PQgetisnull(r, row, col);
}

int64_t pg_col_i64(const PGresult *r, int row, int col) {
    if (PQgetisnull(r, row, col)) return 0;
    const unsigned char *v = (const unsigned char *)PQgetvalue(r, row, col);
    switch (PQgetlength(r, row, col)) {
    case 8:
        return (int64_t)be_get(v, 8);
    case 4:
        return (int32_t)(uint32_t)be_get(v, 4);
    case 2:
        return (int16_t)(uint16_t)be_get(v, 2);
    case 1: // bool
        return v[0] != 0;
    default:
        return 0;
    }
}

double pg_col_f64(const PGresult *r, int row, int col) {
    if (PQgetisnull(r, row, col) || PQgetlength(r, row, col) != 8) return (double)NAN;
    uint64_t x = be_get((const unsigned char *)PQgetvalue(r, row, col), 8);
    double d;
    memcpy(&d, &x, 8);
    return d;
}

void pg_col_copy(char *dst, size_t cap, const PGresult *r, int row, int col) {
    store_text_copy(dst, cap, PQgetisnull(r, row, col) ? "" : PQgetvalue(r, row, col));
}

char *pg_col_strdup(const PGresult *r, int row, int col, const char *dflt) {
    const char *t = PQgetisnull(r, row, col) ? dflt : PQgetvalue(r, row, col);
    size_t n = strlen(t);
    char *c = malloc(n + 1);
    if (c) memcpy(c, t, n + 1);
    return c;
}

MsStatus pg_col_blob(const PGresult *r, int row, int col, BlobType t, void **out, size_t *n,
                     const char *what, MsError *err) {
    *out = NULL;
    *n = 0;
    if (PQgetisnull(r, row, col))
        return ms_fail_detail(err, MS_ERR_DB, MS_DETAIL_CORRUPT, "%s: corrupt: not a blob", what);
    MsError e = {0};
    MsStatus st =
        blob_decode_alloc(out, n, PQgetvalue(r, row, col), (size_t)PQgetlength(r, row, col), t, &e);
    if (st != MS_OK) return ms_fail_detail(err, st, e.detail, "%s: %s", what, e.msg);
    return MS_OK;
}

/* ---- transactions ---- */

MsStatus pg_begin(Store *s, MsError *err) {
    MsStatus st = pg_query(s, "BEGIN", NULL, NULL, "beginning a transaction", err);
    if (st == MS_OK) s->pg->in_tx = 1;
    return st;
}

MsStatus pg_commit(Store *s, MsError *err) {
    MsStatus st = pg_query(s, "COMMIT", NULL, NULL, "committing", err);
    s->pg->in_tx = 0;
    return st;
}

void pg_rollback(Store *s) {
    if (!s->pg->in_tx) return;
    s->pg->in_tx = 0;
    if (PQstatus(s->pg->conn) != CONNECTION_OK) return;
    PQclear(PQexec(s->pg->conn, "ROLLBACK"));
}

/* ---- schema ---- */

// Version 1: the entities of the SQLite schema, integers as bigint, arrays as bytea holding the
// bytes of blob_encode. jobs carries the lease (owner, epoch, lease_until in the database's
// ms); seq orders rows created in the same millisecond. Dataset arrays are chunk rows
// (dataset_chunks: arr 0 = x, 1 = y, 2 = index; seq 0 the 24-byte header, 1.. the payload in
// PG_CHUNK pieces), so neither side ever holds a whole array in one message. Arrays are stored
// uncompressed (STORAGE EXTERNAL): float data does not compress, and trying costs a 3.2 MB
// checkpoint write about three times as long.
static const char PG_MIGRATION_1[] =
    "CREATE TABLE models("
    " name text COLLATE \"C\" NOT NULL, version bigint NOT NULL CHECK (version > 0),"
    " created_at bigint NOT NULL, config text NOT NULL, algorithm text NOT NULL,"
    " hyper text NOT NULL, metrics text NOT NULL, job_id text NOT NULL DEFAULT '',"
    " params bytea NOT NULL, inner_lrs bytea, PRIMARY KEY (name, version));"
    "CREATE TABLE model_names(name text COLLATE \"C\" PRIMARY KEY, last_version bigint NOT NULL);"
    "CREATE TABLE model_aliases("
    " name text COLLATE \"C\" NOT NULL, alias text COLLATE \"C\" NOT NULL, version bigint NOT NULL,"
    " PRIMARY KEY (name, alias),"
    " FOREIGN KEY (name, version) REFERENCES models(name, version) ON DELETE CASCADE);"
    "CREATE INDEX model_aliases_target ON model_aliases(name, version);"
    "CREATE TABLE jobs("
    " seq bigserial NOT NULL UNIQUE, id text PRIMARY KEY,"
    " state text NOT NULL"
    "  CHECK (state IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),"
    " config text NOT NULL, name text NOT NULL, created_at bigint NOT NULL,"
    " started_at bigint NOT NULL DEFAULT 0, finished_at bigint NOT NULL DEFAULT 0,"
    " iteration bigint NOT NULL DEFAULT 0, total bigint NOT NULL,"
    " cancel_requested bigint NOT NULL DEFAULT 0, error text NOT NULL DEFAULT '',"
    " result_model text NOT NULL DEFAULT '', result_version bigint NOT NULL DEFAULT 0,"
    " metrics text NOT NULL DEFAULT '{}', owner text NOT NULL DEFAULT '',"
    " epoch bigint NOT NULL DEFAULT 0, lease_until bigint NOT NULL DEFAULT 0, checkpoint bytea);"
    "CREATE INDEX jobs_claim ON jobs(created_at, seq) WHERE state IN ('queued', 'running');"
    "CREATE INDEX jobs_created ON jobs(created_at, seq);"
    "CREATE TABLE job_metrics("
    " job_id text NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,"
    " step bigint NOT NULL, key text NOT NULL, value float8, ts bigint NOT NULL,"
    " PRIMARY KEY (job_id, step, key));"
    "CREATE TABLE datasets("
    " seq bigserial NOT NULL UNIQUE, id text PRIMARY KEY, name text NOT NULL,"
    " kind text NOT NULL CHECK (kind IN ('tasks', 'classes')),"
    " created_at bigint NOT NULL, n_items bigint NOT NULL, n_rows bigint NOT NULL,"
    " x_dim bigint NOT NULL, y_dim bigint NOT NULL, meta text NOT NULL, bytes bigint NOT NULL);"
    "CREATE INDEX datasets_created ON datasets(created_at, seq);"
    "CREATE TABLE dataset_chunks("
    " dataset_id text NOT NULL REFERENCES datasets(id) ON DELETE CASCADE,"
    " arr smallint NOT NULL, seq bigint NOT NULL, data bytea NOT NULL,"
    " PRIMARY KEY (dataset_id, arr, seq));"
    "ALTER TABLE dataset_chunks ALTER COLUMN data SET STORAGE EXTERNAL;"
    "ALTER TABLE models ALTER COLUMN params SET STORAGE EXTERNAL,"
    " ALTER COLUMN inner_lrs SET STORAGE EXTERNAL;"
    "ALTER TABLE jobs ALTER COLUMN checkpoint SET STORAGE EXTERNAL;"
    "CREATE TABLE adaptations("
    " id text PRIMARY KEY, model text NOT NULL, version bigint NOT NULL,"
    " created_at bigint NOT NULL, expires_at bigint NOT NULL,"
    " support_loss_before float8, support_loss_after float8, params bytea NOT NULL,"
    " FOREIGN KEY (model, version) REFERENCES models(name, version) ON DELETE CASCADE);"
    "CREATE INDEX adaptations_model ON adaptations(model, version);"
    "CREATE INDEX adaptations_expires ON adaptations(expires_at);"
    "ALTER TABLE adaptations ALTER COLUMN params SET STORAGE EXTERNAL;";

// Version 2 on SQLite added adaptations_expires, which version 1 here already has: the two
// backends share STORE_SCHEMA_VERSION, so this step only records the number.
static const char PG_MIGRATION_2[] = "SELECT 1";

static const char *const pg_migrations[] = {PG_MIGRATION_1, PG_MIGRATION_2};
_Static_assert(sizeof pg_migrations / sizeof pg_migrations[0] == STORE_SCHEMA_VERSION,
               "one PostgreSQL migration per schema version");

// Any int: the advisory lock that serialises migrations of one database.
#define PG_MIGRATE_LOCK "7412600001"

static MsStatus read_version(Store *s, int *v, MsError *err) {
    PGresult *r;
    *v = 0;
    // A plain query of pg_class, not to_regclass: the catalog cache may not yet have seen a
    // table that another replica's migration committed while this one waited for the lock,
    // whereas each statement's snapshot does.
    MsStatus st = pg_query(s,
                           "SELECT EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n"
                           " ON n.oid = c.relnamespace WHERE c.relname = 'metaserve_schema'"
                           " AND n.nspname = current_schema())",
                           NULL, &r, "reading the schema version", err);
    if (st != MS_OK) return st;
    int exists = PQntuples(r) == 1 && pg_col_i64(r, 0, 0);
    PQclear(r);
    if (!exists) return MS_OK;
    if ((st = pg_query(s, "SELECT coalesce(max(version), 0) FROM metaserve_schema", NULL, &r,
                       "reading the schema version", err)) != MS_OK)
        return st;
    *v = PQntuples(r) == 1 ? (int)pg_col_i64(r, 0, 0) : 0;
    PQclear(r);
    return MS_OK;
}

static MsStatus pg_migrate(Store *s, MsError *err) {
    int v;
    MsStatus st = read_version(s, &v, err);
    if (st != MS_OK) return st;
    if (v > STORE_SCHEMA_VERSION) return store_refuse_newer(v, err);
    if (v == STORE_SCHEMA_VERSION) return MS_OK; // the usual case takes no lock
    if ((st = pg_begin(s, err)) != MS_OK) return st;
    if ((st = pg_query(s, "SELECT pg_advisory_xact_lock(" PG_MIGRATE_LOCK ")", NULL, NULL,
                       "locking the schema for migration", err)) != MS_OK)
        goto done;
    // Another replica may have migrated while we waited for the lock.
    if ((st = read_version(s, &v, err)) != MS_OK) goto done;
    if (v > STORE_SCHEMA_VERSION) {
        st = store_refuse_newer(v, err);
        goto done;
    }
    if (v == 0 && (st = pg_query(s, "CREATE TABLE metaserve_schema(version bigint NOT NULL)", NULL,
                                 NULL, "creating the schema table", err)) != MS_OK)
        goto done;
    for (int k = v; k < STORE_SCHEMA_VERSION; k++) {
        char what[64];
        snprintf(what, sizeof what, "migrating the schema to version %d", k + 1);
        PGresult *r = PQexec(s->pg->conn, pg_migrations[k]); // several statements: simple query
        ExecStatusType es = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
        if (es != PGRES_COMMAND_OK && es != PGRES_TUPLES_OK) st = pg_fail(s, r, what, err);
        PQclear(r);
        if (st != MS_OK) goto done;
    }
    PgArgs a = {0};
    pg_i64(&a, STORE_SCHEMA_VERSION);
    if ((st = pg_query(s, "DELETE FROM metaserve_schema", NULL, NULL, "recording the schema",
                       err)) != MS_OK ||
        (st = pg_query(s, "INSERT INTO metaserve_schema(version) VALUES ($1)", &a, NULL,
                       "recording the schema", err)) != MS_OK)
        goto done;
    st = pg_commit(s, err);
done:
    if (st != MS_OK) pg_rollback(s);
    return st;
}

static char *read_password_file(const char *path, MsError *err) {
    FILE *f = fopen(path, "r");
    if (!f) {
        ms_fail(err, MS_ERR_DB, "METASERVE_DB_PASSWORD_FILE %s cannot be read", path);
        return NULL;
    }
    char buf[1024];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    buf[strcspn(buf, "\r\n")] = '\0';
    char *p = strdup(buf);
    if (!p) ms_fail(err, MS_ERR_NOMEM, "out of memory");
    return p;
}

MsStatus pg_open(Store *s, const char *uri, const StoreOptions *opt, MsError *err) {
    PgStore *p = calloc(1, sizeof *p);
    if (!p) return ms_fail(err, MS_ERR_NOMEM, "cannot allocate a store");
    s->pg = p;
    p->backoff_ms = PG_BACKOFF_MS;
    p->lease_ms = opt && opt->lease_ms > 0 ? opt->lease_ms : STORE_LEASE_MS_DEFAULT;
    if (opt && opt->replica && opt->replica[0]) {
        snprintf(p->replica, sizeof p->replica, "%s", opt->replica);
    } else {
        char host[40] = "host";
        gethostname(host, sizeof host);
        host[sizeof host - 1] = '\0';
        snprintf(p->replica, sizeof p->replica, "%s:%ld", host, (long)getpid());
    }
    if (opt && opt->read_only)
        return ms_fail(err, MS_ERR_INVALID,
                       "METASERVE_DB_READONLY applies to SQLite files; on PostgreSQL use a role "
                       "with read-only grants");
    if (!(p->conninfo = strdup(uri))) return ms_fail(err, MS_ERR_NOMEM, "out of memory");
    const char *pwf = getenv("METASERVE_DB_PASSWORD_FILE");
    if (pwf && *pwf && !(p->password = read_password_file(pwf, err)))
        return err ? err->code : MS_ERR_DB;
    p->conn = connect_now(p);
    if (!p->conn || PQstatus(p->conn) != CONNECTION_OK) {
        char m[200];
        snprintf(m, sizeof m, "%s", p->conn ? PQerrorMessage(p->conn) : "out of memory");
        m[strcspn(m, "\n")] = '\0';
        return ms_fail_detail(err, MS_ERR_DB, MS_DETAIL_UNAVAILABLE,
                              "cannot connect to PostgreSQL: %s", m);
    }
    atomic_fetch_add(&connects_made, 1);
    return pg_migrate(s, err);
}

void pg_close(Store *s) {
    PgStore *p = s->pg;
    if (!p) return;
    PQfinish(p->conn);
    stmts_forget(p);
    free(p->conninfo);
    if (p->password) {
        memset(p->password, 0, strlen(p->password));
        free(p->password);
    }
    free(p);
    s->pg = NULL;
}

int pg_schema_version(Store *s) {
    int v = -1;
    MsError ignored;
    if (read_version(s, &v, &ignored) != MS_OK) return -1;
    return v;
}

// PostgreSQL checks its own pages (data checksums, amcheck); what this build can check is that
// every stored array still passes its header and checksum.
MsStatus pg_integrity_check(Store *s, MsError *err) {
    static const struct {
        const char *sql;
        BlobType t;
    } q[] = {{"SELECT params FROM models", BLOB_F32},
             {"SELECT inner_lrs FROM models WHERE inner_lrs IS NOT NULL", BLOB_F32},
             {"SELECT params FROM adaptations", BLOB_F32},
             {"SELECT checkpoint FROM jobs WHERE checkpoint IS NOT NULL", BLOB_BYTES}};
    for (size_t k = 0; k < sizeof q / sizeof q[0]; k++) {
        PGresult *r;
        MsStatus st = pg_query(s, q[k].sql, NULL, &r, "checking integrity", err);
        if (st != MS_OK) return st;
        for (int i = 0; i < PQntuples(r); i++) {
            size_t n;
            MsError e = {0};
            if (blob_check(PQgetvalue(r, i, 0), (size_t)PQgetlength(r, i, 0), q[k].t, &n, &e) !=
                MS_OK) {
                PQclear(r);
                return ms_fail(err, MS_ERR_DB, "integrity check failed: %s: %s", q[k].sql, e.msg);
            }
        }
        PQclear(r);
    }
    return MS_OK;
}
