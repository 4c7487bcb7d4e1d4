/*
 * store_copy (store.h): a whole SQLite store copied into an empty PostgreSQL one, for
 * `metaserve migrate`. Owns the copy only: the schemas are those of store_sqlite_migrate.c and
 * store_pg.c, and both sides hold every array as the bytes of blob_encode, so arrays are checked
 * (header, count, checksum) and passed through, never decoded to floats and encoded again.
 *
 * Consistency: the source is read inside one read transaction (one WAL snapshot); the target is
 * written in one transaction that first locks its tables against writers (EXCLUSIVE: plain reads
 * go on) and checks that they are empty. Any failure, a corrupt source array included, rolls the
 * target back, so it is either untouched or holds the whole copy.
 *
 * Order follows the foreign keys: models, version counters, aliases, jobs, curves, datasets,
 * adaptations. Jobs and datasets go in the source's rowid order, so the target's seq (the
 * tie-break of their newest-first listings) orders them as the source did. A running job (left
 * by a crash) becomes queued with its checkpoint, or cancelled when its cancel was requested, as
 * store_job_requeue_running does at start-up; its lease columns start empty.
 *
 * Memory: a model, checkpoint or adaptation row is held by SQLite and once more in libpq's output
 * buffer (tens of MB at most). A dataset array (up to ~3 x 10^8 bytes) is read with incremental
 * blob I/O a PG_CHUNK at a time, hashed, and written as one dataset_chunks row per chunk, the
 * header last, as pg_dataset_put lays them out: one chunk buffer in all. Curve points (thousands
 * per job) go through COPY FROM STDIN through the same buffer.
 */
#include "store_pg.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    Store *from, *to;
    StoreCopyReport *r;
    unsigned char *buf; // PG_CHUNK bytes: a dataset chunk, or a batch of COPY lines
    size_t fill;        // bytes of COPY lines in buf
    int64_t now;        // ms: adaptations expiring by then are not copied
} Copy;

/* ---- source rows ---- */

// A text column, dflt for NULL (pointer valid until the next step of q).
static const char *col_text(sqlite3_stmt *q, int col, const char *dflt) {
    const char *t = (const char *)sqlite3_column_text(q, col);
    return t ? t : dflt;
}

// Runs sql on the source and fn on each row; `what` names the table in errors.
static MsStatus each_row(Copy *c, const char *sql, const char *what,
                         MsStatus (*fn)(Copy *, sqlite3_stmt *, MsError *), MsError *err) {
    sqlite3_stmt *q = NULL;
    int rc = sqlite3_prepare_v2(c->from->db, sql, -1, &q, NULL);
    MsStatus st = MS_OK;
    if (rc != SQLITE_OK) st = store_sqlite_fail(c->from, rc, what, err);
    while (st == MS_OK && (rc = sqlite3_step(q)) == SQLITE_ROW)
        st = fn(c, q, err);
    if (st == MS_OK && rc != SQLITE_DONE) st = store_sqlite_fail(c->from, rc, what, err);
    sqlite3_finalize(q);
    return st;
}

// Checks the blob of type t in column col (its bytes in *p, *len; element count in *n).
static MsStatus src_blob(sqlite3_stmt *q, int col, BlobType t, const void **p, size_t *len,
                         size_t *n, const char *what, MsError *err) {
    *p = NULL;
    *len = *n = 0;
    if (sqlite3_column_type(q, col) != SQLITE_BLOB)
        return ms_fail_detail(err, MS_ERR_DB, MS_DETAIL_CORRUPT, "%s: corrupt: not a blob", what);
    const void *b = sqlite3_column_blob(q, col);
    int l = sqlite3_column_bytes(q, col);
    if (!b && l > 0) return ms_fail(err, MS_ERR_NOMEM, "%s: out of memory reading", what);
    MsError e = {0};
    MsStatus st = blob_check(b, (size_t)l, t, n, &e);
    if (st != MS_OK) return ms_fail_detail(err, st, e.detail, "%s: %s", what, e.msg);
    *p = b;
    *len = (size_t)l;
    return MS_OK;
}

/* ---- models, version counters, aliases ---- */

static MsStatus model_row(Copy *c, sqlite3_stmt *q, MsError *err) {
    const char *name = col_text(q, 0, "");
    int64_t version = sqlite3_column_int64(q, 1);
    char what[STORE_NAME_MAX + 64];
    snprintf(what, sizeof what, "source model %s@%" PRId64 " params", name, version);
    const void *p, *l = NULL;
    size_t plen, llen = 0, n, n_lrs;
    MsStatus st = src_blob(q, 8, BLOB_F32, &p, &plen, &n, what, err);
    if (st != MS_OK) return st;
    if (n == 0)
        return ms_fail_detail(err, MS_ERR_DB, MS_DETAIL_CORRUPT, "%s: corrupt: no parameters",
                              what);
    if (sqlite3_column_type(q, 9) != SQLITE_NULL) {
        snprintf(what, sizeof what, "source model %s@%" PRId64 " inner_lrs", name, version);
        if ((st = src_blob(q, 9, BLOB_F32, &l, &llen, &n_lrs, what, err)) != MS_OK) return st;
        if (n_lrs != n)
            return ms_fail_detail(err, MS_ERR_DB, MS_DETAIL_CORRUPT,
                                  "%s: corrupt: %zu rates for %zu parameters", what, n_lrs, n);
    }
    PgArgs a = {0};
    pg_text(&a, name);
    pg_i64(&a, version);
    pg_i64(&a, sqlite3_column_int64(q, 2));
    pg_text(&a, col_text(q, 3, "{}"));
    pg_text(&a, col_text(q, 4, ""));
    pg_text(&a, col_text(q, 5, "{}"));
    pg_text(&a, col_text(q, 6, "{}"));
    pg_text(&a, col_text(q, 7, ""));
    pg_bytes(&a, p, plen);
    if (l)
        pg_bytes(&a, l, llen);
    else
        pg_text(&a, NULL);
    snprintf(what, sizeof what, "copying model %s@%" PRId64, name, version);
    st = pg_query(c->to,
                  "INSERT INTO models(name, version, created_at, config, algorithm, hyper,"
                  " metrics, job_id, params, inner_lrs)"
                  " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                  &a, NULL, what, err);
    if (st != MS_OK) return st;
    c->r->models++;
    c->r->blob_bytes += (int64_t)(plen + llen);
    return MS_OK;
}

static MsStatus name_row(Copy *c, sqlite3_stmt *q, MsError *err) {
    PgArgs a = {0};
    pg_text(&a, col_text(q, 0, ""));
    pg_i64(&a, sqlite3_column_int64(q, 1));
    MsStatus st = pg_query(c->to, "INSERT INTO model_names(name, last_version) VALUES ($1, $2)", &a,
                           NULL, "copying model version counters", err);
    if (st == MS_OK) c->r->model_names++;
    return st;
}

static MsStatus alias_row(Copy *c, sqlite3_stmt *q, MsError *err) {
    PgArgs a = {0};
    pg_text(&a, col_text(q, 0, ""));
    pg_text(&a, col_text(q, 1, ""));
    pg_i64(&a, sqlite3_column_int64(q, 2));
    MsStatus st =
        pg_query(c->to, "INSERT INTO model_aliases(name, alias, version) VALUES ($1, $2, $3)", &a,
                 NULL, "copying aliases", err);
    if (st == MS_OK) c->r->aliases++;
    return st;
}

/* ---- jobs and their curves ---- */

// Columns of the source query in copy_all; the target's INSERT takes them in this order.
static MsStatus job_row(Copy *c, sqlite3_stmt *q, MsError *err) {
    const char *id = col_text(q, 0, "");
    const char *state = col_text(q, 1, "");
    int64_t finished_at = sqlite3_column_int64(q, 6);
    int requeue = strcmp(state, "running") == 0, keep_checkpoint = 1;
    if (requeue && sqlite3_column_int64(q, 9)) {
        // asked to cancel while running: its worker was told to stop (store_job_requeue_running)
        state = "cancelled";
        finished_at = c->now;
        keep_checkpoint = 0;
        c->r->jobs_cancelled++;
    } else if (requeue) {
        state = "queued";
        c->r->jobs_requeued++;
    }
    const void *ck = NULL;
    size_t cklen = 0, n;
    if (keep_checkpoint && sqlite3_column_type(q, 14) != SQLITE_NULL) {
        char what[STORE_ID_MAX + 48];
        snprintf(what, sizeof what, "source job %s checkpoint", id);
        MsStatus st = src_blob(q, 14, BLOB_BYTES, &ck, &cklen, &n, what, err);
        if (st != MS_OK) return st;
    }
    PgArgs a = {0};
    pg_text(&a, id);
    pg_text(&a, state);
    pg_text(&a, col_text(q, 2, "{}"));
    pg_text(&a, col_text(q, 3, ""));
    pg_i64(&a, sqlite3_column_int64(q, 4));
    pg_i64(&a, sqlite3_column_int64(q, 5));
    pg_i64(&a, finished_at);
    pg_i64(&a, sqlite3_column_int64(q, 7));
    pg_i64(&a, sqlite3_column_int64(q, 8));
    pg_i64(&a, sqlite3_column_int64(q, 9));
    pg_text(&a, col_text(q, 10, ""));
    pg_text(&a, col_text(q, 11, ""));
    pg_i64(&a, sqlite3_column_int64(q, 12));
    pg_text(&a, col_text(q, 13, "{}"));
    if (ck)
        pg_bytes(&a, ck, cklen);
    else
        pg_text(&a, NULL);
    char what[STORE_ID_MAX + 16];
    snprintf(what, sizeof what, "copying job %s", id);
    MsStatus st = pg_query(c->to,
                           "INSERT INTO jobs(id, state, config, name, created_at, started_at,"
                           " finished_at, iteration, total, cancel_requested, error, result_model,"
                           " result_version, metrics, checkpoint) VALUES ($1, $2, $3, $4, $5, $6,"
                           " $7, $8, $9, $10, $11, $12, $13, $14, $15)",
                           &a, NULL, what, err);
    if (st != MS_OK) return st;
    c->r->jobs++;
    c->r->blob_bytes += (int64_t)cklen;
    return MS_OK;
}

static MsStatus copy_flush(Copy *c, MsError *err) {
    if (c->fill == 0) return MS_OK;
    if (PQputCopyData(c->to->pg->conn, (const char *)c->buf, (int)c->fill) != 1)
        return pg_fail(c->to, NULL, "copying job metrics", err);
    c->fill = 0;
    return MS_OK;
}

// Appends t to COPY's text format at dst (backslash, tab, newline, return escaped); returns the
// bytes written (at most 2 * strlen(t)).
static size_t copy_escape(char *dst, const char *t) {
    size_t k = 0;
    for (; *t; t++) {
        char e = *t == '\\' ? '\\' : *t == '\t' ? 't' : *t == '\n' ? 'n' : *t == '\r' ? 'r' : 0;
        if (e)
            dst[k++] = '\\', dst[k++] = e;
        else
            dst[k++] = *t;
    }
    return k;
}

// One COPY line: job_id, step, key, value (\N for NULL: SQLite keeps NaN as NULL), ts.
static MsStatus metric_row(Copy *c, sqlite3_stmt *q, MsError *err) {
    const char *id = col_text(q, 0, ""), *key = col_text(q, 2, "");
    size_t need = 2 * (strlen(id) + strlen(key)) + 128; // two int64, one %.17g, separators
    if (need > PG_CHUNK)
        return ms_fail(err, MS_ERR_TOO_LARGE, "source job %.40s: metric key of %zu bytes", id,
                       strlen(key));
    MsStatus st = MS_OK;
    if (PG_CHUNK - c->fill < need && (st = copy_flush(c, err)) != MS_OK) return st;
    char *p = (char *)c->buf + c->fill, v[40] = "\\N";
    if (sqlite3_column_type(q, 3) != SQLITE_NULL) {
        double d = sqlite3_column_double(q, 3);
        if (isnan(d))
            snprintf(v, sizeof v, "NaN");
        else if (isinf(d))
            snprintf(v, sizeof v, "%s", d > 0 ? "Infinity" : "-Infinity");
        else
            snprintf(v, sizeof v, "%.17g", d); // 17 significant digits: the same double back
    }
    size_t k = copy_escape(p, id);
    k += (size_t)sprintf(p + k, "\t%" PRId64 "\t", (int64_t)sqlite3_column_int64(q, 1));
    k += copy_escape(p + k, key);
    k += (size_t)sprintf(p + k, "\t%s\t%" PRId64 "\n", v, (int64_t)sqlite3_column_int64(q, 4));
    c->fill += k;
    c->r->job_metrics++;
    return MS_OK;
}

static MsStatus copy_metrics(Copy *c, MsError *err) {
    PGconn *conn = c->to->pg->conn;
    PGresult *res = PQexec(conn, "COPY job_metrics(job_id, step, key, value, ts) FROM STDIN");
    MsStatus st = MS_OK;
    if (PQresultStatus(res) != PGRES_COPY_IN) {
        st = pg_fail(c->to, res, "copying job metrics", err);
        PQclear(res);
        return st;
    }
    PQclear(res);
    c->fill = 0;
    st = each_row(c,
                  "SELECT job_id, step, key, value, ts FROM job_metrics ORDER BY job_id, step, key",
                  "reading job metrics", metric_row, err);
    if (st == MS_OK) st = copy_flush(c, err);
    // Ending with an error message makes the server abort the COPY (and so the transaction).
    if (PQputCopyEnd(conn, st == MS_OK ? NULL : "source read failed") != 1 && st == MS_OK)
        st = pg_fail(c->to, NULL, "copying job metrics", err);
    while ((res = PQgetResult(conn))) {
        if (st == MS_OK && PQresultStatus(res) != PGRES_COMMAND_OK)
            st = pg_fail(c->to, res, "copying job metrics", err);
        PQclear(res);
    }
    return st;
}

/* ---- datasets ---- */

static const struct {
    const char *col; // source column
    BlobType type;
    const char *name; // in messages
} ARR[3] = {{"x", BLOB_F32, "x"}, {"y", BLOB_F32, "y"}, {"idx", BLOB_I32, "index"}};

// Streams array k of the source row rowid into chunk rows of dataset id: payload chunks 1..,
// hashed as they pass, then the header as chunk 0 once the checksum has matched. want: the
// element count the description implies (STORE_BLOB_ANY_COUNT for the index).
static MsStatus array_copy(Copy *c, sqlite3_int64 rowid, const char *id, int k, size_t want,
                           MsError *err) {
    char what[STORE_ID_MAX + 48];
    snprintf(what, sizeof what, "source dataset %s %s", id, ARR[k].name);
    sqlite3_blob *b = NULL;
    int rc = sqlite3_blob_open(c->from->db, "main", "datasets", ARR[k].col, rowid, 0, &b);
    if (rc != SQLITE_OK) {
        MsStatus st = store_sqlite_fail(c->from, rc, what, err);
        sqlite3_blob_close(b);
        return st;
    }
    size_t len = (size_t)sqlite3_blob_bytes(b), count;
    unsigned char hdr[BLOB_HEADER_SIZE] = {0};
    unsigned version;
    uint64_t stored;
    BlobHash h;
    MsError e = {0};
    MsStatus st = MS_OK;
    if (len >= BLOB_HEADER_SIZE &&
        (rc = sqlite3_blob_read(b, hdr, BLOB_HEADER_SIZE, 0)) != SQLITE_OK) {
        st = store_sqlite_fail(c->from, rc, what, err);
        goto done;
    }
    if ((st = blob_header_parse(hdr, len, ARR[k].type, &count, &version, &stored, &e)) != MS_OK) {
        st = ms_fail_detail(err, st, e.detail, "%s: %s", what, e.msg);
        goto done;
    }
    if (want != STORE_BLOB_ANY_COUNT && count != want) {
        st = ms_fail_detail(err, MS_ERR_DB, MS_DETAIL_CORRUPT,
                            "%s: corrupt: %zu values where %zu were expected", what, count, want);
        goto done;
    }
    char pwhat[STORE_ID_MAX + 48];
    snprintf(pwhat, sizeof pwhat, "copying dataset %s %s", id, ARR[k].name);
    blob_hash_init(&h, version, ARR[k].type, count);
    size_t bytes = len - BLOB_HEADER_SIZE;
    // PG_CHUNK is a multiple of every element size, so chunks hold whole elements, as on read.
    for (size_t off = 0; off < bytes; off += PG_CHUNK) {
        size_t m = bytes - off < PG_CHUNK ? bytes - off : PG_CHUNK;
        if ((rc = sqlite3_blob_read(b, c->buf, (int)m, (int)(BLOB_HEADER_SIZE + off))) !=
            SQLITE_OK) {
            st = store_sqlite_fail(c->from, rc, what, err);
            goto done;
        }
        blob_hash_update(&h, c->buf, m);
        if ((st = pg_chunk_put(c->to, id, k, (int64_t)(off / PG_CHUNK) + 1, c->buf, m, pwhat,
                               err)) != MS_OK)
            goto done;
    }
    if (blob_hash_final(&h) != stored) {
        st = ms_fail_detail(err, MS_ERR_DB, MS_DETAIL_CORRUPT,
                            "%s: corrupt blob: checksum mismatch", what);
        goto done;
    }
    if ((st = pg_chunk_put(c->to, id, k, 0, hdr, sizeof hdr, pwhat, err)) != MS_OK) goto done;
    c->r->blob_bytes += (int64_t)len;
    c->r->dataset_bytes += (int64_t)len;
done:
    sqlite3_blob_close(b);
    return st;
}

// Columns: rowid, id, name, kind, created_at, n_items, n_rows, x_dim, y_dim, meta, bytes,
// typeof(x), typeof(y), typeof(idx).
static MsStatus dataset_row(Copy *c, sqlite3_stmt *q, MsError *err) {
    sqlite3_int64 rowid = sqlite3_column_int64(q, 0);
    char id[STORE_ID_MAX];
    store_col_copy(id, sizeof id, q, 1);
    int64_t n_rows = sqlite3_column_int64(q, 6),
            dims[2] = {sqlite3_column_int64(q, 7), sqlite3_column_int64(q, 8)};
    PgArgs a = {0};
    pg_text(&a, id);
    pg_text(&a, col_text(q, 2, ""));
    pg_text(&a, col_text(q, 3, ""));
    pg_i64(&a, sqlite3_column_int64(q, 4));
    pg_i64(&a, sqlite3_column_int64(q, 5));
    pg_i64(&a, n_rows);
    pg_i64(&a, dims[0]);
    pg_i64(&a, dims[1]);
    pg_text(&a, col_text(q, 9, "{}"));
    pg_i64(&a, sqlite3_column_int64(q, 10));
    char what[STORE_ID_MAX + 24];
    snprintf(what, sizeof what, "copying dataset %s", id);
    MsStatus st = pg_query(c->to,
                           "INSERT INTO datasets(id, name, kind, created_at, n_items, n_rows,"
                           " x_dim, y_dim, meta, bytes)"
                           " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                           &a, NULL, what, err);
    for (int k = 0; k < 3 && st == MS_OK; k++) {
        const char *type = col_text(q, 11 + k, "");
        if (strcmp(type, "blob") != 0)
            return ms_fail_detail(err, MS_ERR_DB, MS_DETAIL_CORRUPT,
                                  "source dataset %s %s: corrupt: not a blob", id, ARR[k].name);
        size_t want = STORE_BLOB_ANY_COUNT; // the index's length is kind-specific
        if (k < 2) {
            if (n_rows < 0 || dims[k] < 1 || (uint64_t)n_rows > SIZE_MAX / (uint64_t)dims[k])
                return ms_fail_detail(err, MS_ERR_DB, MS_DETAIL_CORRUPT,
                                      "source dataset %s %s: corrupt: %" PRId64 " rows of %" PRId64,
                                      id, ARR[k].name, n_rows, dims[k]);
            want = (size_t)n_rows * (size_t)dims[k];
        }
        st = array_copy(c, rowid, id, k, want, err);
    }
    if (st == MS_OK) c->r->datasets++;
    return st;
}

/* ---- adaptations ---- */

static MsStatus adaptation_row(Copy *c, sqlite3_stmt *q, MsError *err) {
    if (sqlite3_column_int64(q, 4) <= c->now) { // expired: a reader treats it as absent already
        c->r->adaptations_expired++;
        return MS_OK;
    }
    const char *id = col_text(q, 0, "");
    char what[STORE_ID_MAX + 48];
    snprintf(what, sizeof what, "source adaptation %s params", id);
    const void *p;
    size_t len, n;
    MsStatus st = src_blob(q, 7, BLOB_F32, &p, &len, &n, what, err);
    if (st != MS_OK) return st;
    if (n == 0)
        return ms_fail_detail(err, MS_ERR_DB, MS_DETAIL_CORRUPT, "%s: corrupt: no parameters",
                              what);
    PgArgs a = {0};
    pg_text(&a, id);
    pg_text(&a, col_text(q, 1, ""));
    pg_i64(&a, sqlite3_column_int64(q, 2));
    pg_i64(&a, sqlite3_column_int64(q, 3));
    pg_i64(&a, sqlite3_column_int64(q, 4));
    for (int k = 5; k <= 6; k++) // losses: NULL stays NULL (SQLite's NaN)
        if (sqlite3_column_type(q, k) == SQLITE_NULL)
            pg_text(&a, NULL);
        else
            pg_f64(&a, sqlite3_column_double(q, k));
    pg_bytes(&a, p, len);
    snprintf(what, sizeof what, "copying adaptation %s", id);
    st = pg_query(c->to,
                  "INSERT INTO adaptations(id, model, version, created_at, expires_at,"
                  " support_loss_before, support_loss_after, params)"
                  " VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                  &a, NULL, what, err);
    if (st != MS_OK) return st;
    c->r->adaptations++;
    c->r->blob_bytes += (int64_t)len;
    return MS_OK;
}

/* ---- the copy ---- */

// Locks the target's tables against writers until the commit and refuses any that hold rows.
static MsStatus target_claim(Store *to, MsError *err) {
    MsStatus st = pg_query(to,
                           "LOCK TABLE models, model_names, model_aliases, jobs, job_metrics,"
                           " datasets, dataset_chunks, adaptations IN EXCLUSIVE MODE",
                           NULL, NULL, "locking the target's tables", err);
    if (st != MS_OK) return st;
    PGresult *r;
    // model_aliases, job_metrics and dataset_chunks cannot hold rows without their parents.
    if ((st = pg_query(to,
                       "SELECT (SELECT count(*) FROM models), (SELECT count(*) FROM model_names),"
                       " (SELECT count(*) FROM jobs), (SELECT count(*) FROM datasets),"
                       " (SELECT count(*) FROM adaptations)",
                       NULL, &r, "checking that the target is empty", err)) != MS_OK)
        return st;
    int64_t n[5];
    for (int k = 0; k < 5; k++)
        n[k] = pg_col_i64(r, 0, k);
    PQclear(r);
    if (n[0] || n[1] || n[2] || n[3] || n[4])
        return ms_fail(err, MS_ERR_CONFLICT,
                       "the target database is not empty (%" PRId64 " model versions, %" PRId64
                       " model names, %" PRId64 " jobs, %" PRId64 " datasets, %" PRId64
                       " adaptations); migrate copies into an empty database only",
                       n[0], n[1], n[2], n[3], n[4]);
    return MS_OK;
}

static MsStatus copy_all(Copy *c, MsError *err) {
    MsStatus st = target_claim(c->to, err);
    if (st == MS_OK)
        st = each_row(c,
                      "SELECT name, version, created_at, config, algorithm, hyper, metrics,"
                      " job_id, params, inner_lrs FROM models ORDER BY name, version",
                      "reading models", model_row, err);
    if (st == MS_OK)
        st = each_row(c, "SELECT name, last_version FROM model_names ORDER BY name",
                      "reading model version counters", name_row, err);
    if (st == MS_OK)
        st = each_row(c, "SELECT name, alias, version FROM model_aliases ORDER BY name, alias",
                      "reading aliases", alias_row, err);
    if (st == MS_OK)
        st = each_row(c,
                      "SELECT id, state, config, name, created_at, started_at, finished_at,"
                      " iteration, total, cancel_requested, error, result_model, result_version,"
                      " metrics, checkpoint FROM jobs ORDER BY rowid",
                      "reading jobs", job_row, err);
    if (st == MS_OK) st = copy_metrics(c, err);
    if (st == MS_OK)
        st = each_row(c,
                      "SELECT rowid, id, name, kind, created_at, n_items, n_rows, x_dim, y_dim,"
                      " meta, bytes, typeof(x), typeof(y), typeof(idx) FROM datasets"
                      " ORDER BY rowid",
                      "reading datasets", dataset_row, err);
    if (st == MS_OK)
        st = each_row(c,
                      "SELECT id, model, version, created_at, expires_at, support_loss_before,"
                      " support_loss_after, params FROM adaptations ORDER BY rowid",
                      "reading adaptations", adaptation_row, err);
    return st;
}

MsStatus store_copy(Store *from, Store *to, StoreCopyReport *report, MsError *err) {
    MS_ASSERT(from && to);
    StoreCopyReport ignored;
    if (!report) report = &ignored;
    memset(report, 0, sizeof *report);
    if (from->pg || !to->pg)
        return ms_fail(err, MS_ERR_INVALID,
                       "store_copy copies a SQLite database into PostgreSQL only");
    Copy c = {.from = from, .to = to, .r = report, .now = store_now_ms()};
    if (!(c.buf = malloc(PG_CHUNK)))
        return ms_fail(err, MS_ERR_NOMEM, "cannot allocate a %d-byte buffer", PG_CHUNK);
    // A deferred BEGIN: the snapshot is taken by the first read and held to the end (a
    // read-only connection cannot BEGIN IMMEDIATE).
    int rc = sqlite3_exec(from->db, "BEGIN", NULL, NULL, NULL);
    MsStatus st = rc == SQLITE_OK ? MS_OK : store_sqlite_fail(from, rc, "reading the source", err);
    if (st == MS_OK) st = pg_begin(to, err);
    if (st == MS_OK) st = copy_all(&c, err);
    if (st == MS_OK) st = pg_commit(to, err);
    if (st != MS_OK) pg_rollback(to);
    store_tx_rollback(from); // the read transaction changed nothing
    free(c.buf);
    return st;
}
