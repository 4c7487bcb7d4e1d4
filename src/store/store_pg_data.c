/*
 * PostgreSQL backend of store.h, part 4: datasets and adaptations (contracts as in
 * store_datasets.c and store_adaptations.c).
 *
 * Dataset arrays are streamed as chunk rows of PG_CHUNK bytes (dataset_chunks), never as one
 * value: put converts and hashes one chunk at a time into one buffer and inserts it, the header
 * (with the checksum) last as chunk 0; get checks the header against the stored length and the
 * expected count before its one allocation of the payload's size, then reads the chunks in
 * single-row mode straight into it, hashing as they come, in one REPEATABLE READ snapshot. The
 * concatenated chunks are exactly the bytes of blob_encode, so a 100,000 x 784 pool is held
 * once (plus one chunk) by the service on either side.
 *
 * Adaptation expiry deletes in batches that skip rows another replica's sweep holds (FOR UPDATE
 * SKIP LOCKED), so sweeps on several replicas neither wait on nor double-count each other.
 */
#include "store_pg.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- datasets ---- */

static const struct {
    BlobType type;
    const char *name;
} ARR[3] = {{BLOB_F32, "x"}, {BLOB_F32, "y"}, {BLOB_I32, "index"}};

static const void *arr_elems(const StoreDatasetData *d, int k, size_t *n) {
    *n = k == 0 ? d->n_x : k == 1 ? d->n_y : d->n_index;
    return k == 0 ? (const void *)d->x : k == 1 ? (const void *)d->y : (const void *)d->index;
}

MsStatus pg_chunk_put(Store *s, const char *id, int k, int64_t seq, const void *p, size_t n,
                      const char *what, MsError *err) {
    PgArgs a = {0};
    pg_text(&a, id);
    pg_i64(&a, k);
    pg_i64(&a, seq);
    pg_bytes(&a, p, n);
    return pg_query(s,
                    "INSERT INTO dataset_chunks(dataset_id, arr, seq, data)"
                    " VALUES ($1, $2, $3, $4)",
                    &a, NULL, what, err);
}

// Streams one array in: payload chunks 1.., hashed as they go, then the header as chunk 0.
static MsStatus array_put(Store *s, const char *id, int k, const void *elems, size_t n,
                          unsigned char *buf, MsError *err) {
    char what[48];
    snprintf(what, sizeof what, "writing dataset %s", ARR[k].name);
    BlobType t = ARR[k].type;
    size_t sz = blob_elem_size(t), per = PG_CHUNK / sz;
    BlobHash h;
    blob_hash_init(&h, BLOB_FORMAT_VERSION, t, n);
    const unsigned char *src = elems;
    for (size_t i = 0; i < n; i += per) {
        size_t m = n - i < per ? n - i : per;
        blob_to_le(buf, src + i * sz, t, m);
        blob_hash_update(&h, buf, m * sz);
        MsStatus st = pg_chunk_put(s, id, k, (int64_t)(i / per) + 1, buf, m * sz, what, err);
        if (st != MS_OK) return st;
    }
    unsigned char hdr[BLOB_HEADER_SIZE];
    blob_header_build(hdr, t, n, blob_hash_final(&h));
    return pg_chunk_put(s, id, k, 0, hdr, sizeof hdr, what, err);
}

MsStatus pg_dataset_put(Store *s, StoreDataset *d, const StoreDatasetData *data, MsError *err) {
    char id[STORE_ID_MAX];
    MsStatus st = store_id_new(id, err);
    if (st != MS_OK) return st;
    int64_t now = store_now_ms();
    size_t bytes = 4 * (data->n_x + data->n_y + data->n_index);
    unsigned char *buf = malloc(PG_CHUNK);
    if (!buf) return ms_fail(err, MS_ERR_NOMEM, "cannot allocate a %d-byte buffer", PG_CHUNK);
    if ((st = pg_begin(s, err)) != MS_OK) goto done;
    PgArgs a = {0};
    pg_text(&a, id);
    pg_text(&a, d->name);
    pg_text(&a, d->kind);
    pg_i64(&a, now);
    pg_i64(&a, d->n_items);
    pg_i64(&a, d->n_rows);
    pg_i64(&a, d->x_dim);
    pg_i64(&a, d->y_dim);
    pg_text(&a, d->meta ? d->meta : "{}");
    pg_i64(&a, (int64_t)bytes);
    if ((st = pg_query(s,
                       "INSERT INTO datasets(id, name, kind, created_at, n_items, n_rows, x_dim,"
                       " y_dim, meta, bytes) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                       &a, NULL, "writing a dataset", err)) != MS_OK)
        goto done;
    for (int k = 0; k < 3 && st == MS_OK; k++) {
        size_t n;
        const void *elems = arr_elems(data, k, &n);
        st = array_put(s, id, k, elems, n, buf, err);
    }
    if (st == MS_OK) st = pg_commit(s, err);
    if (st == MS_OK) {
        memcpy(d->id, id, sizeof id);
        d->created_at = now;
        d->bytes = bytes;
    }
done:
    free(buf);
    if (st != MS_OK) pg_rollback(s);
    return st;
}

#define DATASET_COLS "id, name, kind, created_at, n_items, n_rows, x_dim, y_dim, bytes, meta"

static MsStatus dataset_row(const PGresult *r, int i, StoreDataset *d, MsError *err) {
    pg_col_copy(d->id, sizeof d->id, r, i, 0);
    pg_col_copy(d->name, sizeof d->name, r, i, 1);
    pg_col_copy(d->kind, sizeof d->kind, r, i, 2);
    d->created_at = pg_col_i64(r, i, 3);
    d->n_items = pg_col_i64(r, i, 4);
    d->n_rows = pg_col_i64(r, i, 5);
    d->x_dim = (int)pg_col_i64(r, i, 6);
    d->y_dim = (int)pg_col_i64(r, i, 7);
    d->bytes = (size_t)pg_col_i64(r, i, 8);
    if (!(d->meta = pg_col_strdup(r, i, 9, "{}")))
        return ms_fail(err, MS_ERR_NOMEM, "out of memory reading dataset %s", d->id);
    return MS_OK;
}

// Reads the payload chunks of one array in single-row mode into dst (bytes long), hashing.
static MsStatus chunks_read(Store *s, const char *id, int k, unsigned char *dst, size_t bytes,
                            BlobHash *h, const char *what, MsError *err) {
    PGconn *c = s->pg->conn;
    PgArgs a = {0};
    pg_text(&a, id);
    pg_i64(&a, k);
    if (!PQsendQueryParams(c,
                           "SELECT data FROM dataset_chunks WHERE dataset_id = $1 AND arr = $2"
                           " AND seq > 0 ORDER BY seq",
                           a.n, a.types, a.vals, a.lens, a.fmts, 1))
        return pg_fail(s, NULL, what, err);
    PQsetSingleRowMode(c);
    MsStatus st = MS_OK;
    size_t off = 0, sz = blob_elem_size(ARR[k].type);
    PGresult *r;
    while ((r = PQgetResult(c))) {
        ExecStatusType es = PQresultStatus(r);
        if (st == MS_OK && es == PGRES_SINGLE_TUPLE) {
            size_t m = (size_t)PQgetlength(r, 0, 0);
            if (m > bytes - off || m % sz != 0) {
                st = ms_fail_detail(err, MS_ERR_DB, MS_DETAIL_CORRUPT,
                                    "%s: corrupt: chunks do not add up to the header", what);
            } else {
                memcpy(dst + off, PQgetvalue(r, 0, 0), m);
                blob_hash_update(h, dst + off, m);
                blob_from_le(dst + off, dst + off, ARR[k].type, m / sz);
                off += m;
            }
        } else if (st == MS_OK && es != PGRES_TUPLES_OK && es != PGRES_SINGLE_TUPLE) {
            st = pg_fail(s, r, what, err);
        }
        PQclear(r);
    }
    if (st == MS_OK && off != bytes)
        st = ms_fail_detail(err, MS_ERR_DB, MS_DETAIL_CORRUPT, "%s: corrupt: %zu of %zu bytes",
                            what, off, bytes);
    return st;
}

static MsStatus array_get(Store *s, const StoreDataset *d, int k, void **out, size_t *count,
                          MsError *err) {
    char what[80];
    snprintf(what, sizeof what, "dataset %s %s", d->id, ARR[k].name);
    PgArgs a = {0};
    pg_text(&a, d->id);
    pg_i64(&a, k);
    PGresult *r;
    MsStatus st = pg_query(s,
                           "SELECT (SELECT data FROM dataset_chunks WHERE dataset_id = $1"
                           "  AND arr = $2 AND seq = 0),"
                           " (SELECT coalesce(sum(length(data)), 0)::bigint FROM dataset_chunks"
                           "  WHERE dataset_id = $1 AND arr = $2)",
                           &a, &r, what, err);
    if (st != MS_OK) return st;
    unsigned char hdr[BLOB_HEADER_SIZE] = {0};
    int have_hdr = !pg_col_null(r, 0, 0) && PQgetlength(r, 0, 0) == BLOB_HEADER_SIZE;
    if (have_hdr) memcpy(hdr, PQgetvalue(r, 0, 0), BLOB_HEADER_SIZE);
    size_t len = (size_t)pg_col_i64(r, 0, 1);
    PQclear(r);
    if (!have_hdr)
        return ms_fail_detail(err, MS_ERR_DB, MS_DETAIL_CORRUPT, "%s: corrupt: not a blob", what);
    unsigned version;
    uint64_t stored;
    MsError e = {0};
    if ((st = blob_header_parse(hdr, len, ARR[k].type, count, &version, &stored, &e)) != MS_OK)
        return ms_fail_detail(err, st, e.detail, "%s: %s", what, e.msg);
    if (k < 2) {
        int64_t dim = k == 0 ? d->x_dim : d->y_dim;
        if (d->n_rows < 0 || dim < 1 || (uint64_t)*count != (uint64_t)d->n_rows * (uint64_t)dim)
            return ms_fail_detail(err, MS_ERR_DB, MS_DETAIL_CORRUPT,
                                  "%s: corrupt: %zu values where %lld were expected", what, *count,
                                  (long long)(d->n_rows * dim));
    }
    size_t bytes = len - BLOB_HEADER_SIZE;
    unsigned char *dst = NULL;
    if (bytes > 0 && !(dst = malloc(bytes)))
        return ms_fail(err, MS_ERR_NOMEM, "%s: cannot allocate %zu bytes", what, bytes);
    BlobHash h;
    blob_hash_init(&h, version, ARR[k].type, *count);
    st = chunks_read(s, d->id, k, dst, bytes, &h, what, err);
    if (st == MS_OK && blob_hash_final(&h) != stored)
        st = ms_fail_detail(err, MS_ERR_DB, MS_DETAIL_CORRUPT,
                            "%s: corrupt blob: checksum mismatch", what);
    if (st != MS_OK) {
        free(dst);
        *count = 0;
        return st;
    }
    *out = dst;
    return MS_OK;
}

MsStatus pg_dataset_get(Store *s, const char *id, StoreDataset *out, StoreDatasetData *data,
                        MsError *err) {
    MsStatus st = pg_query(s, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", NULL, NULL,
                           "reading a dataset", err);
    if (st != MS_OK) return st;
    s->pg->in_tx = 1;
    PgArgs a = {0};
    pg_text(&a, id);
    PGresult *r;
    if ((st = pg_query(s, "SELECT " DATASET_COLS " FROM datasets WHERE id = $1", &a, &r,
                       "reading a dataset", err)) != MS_OK)
        goto done;
    if (PQntuples(r) == 0)
        st = ms_fail(err, MS_ERR_NOT_FOUND, "dataset %s not found", id);
    else
        st = dataset_row(r, 0, out, err);
    PQclear(r);
    if (st == MS_OK && data) {
        void **outs[3] = {(void **)&data->x, (void **)&data->y, (void **)&data->index};
        size_t *counts[3] = {&data->n_x, &data->n_y, &data->n_index};
        for (int k = 0; k < 3 && st == MS_OK; k++)
            st = array_get(s, out, k, outs[k], counts[k], err);
    }
    if (st == MS_OK) st = pg_commit(s, err);
done:
    if (st != MS_OK) {
        pg_rollback(s);
        store_dataset_free(out);
        store_dataset_data_free(data);
    }
    return st;
}

static void dataset_row_free(void *d) {
    store_dataset_free(d);
}

MsStatus pg_dataset_list(Store *s, const char *after, int limit, StoreDataset **rows, int *n,
                         int *more, MsError *err) {
    PGresult *r;
    MsStatus st = pg_list_newest(s, "datasets", DATASET_COLS, "dataset", after, limit, &r, err);
    if (st != MS_OK) return st;
    int cnt = PQntuples(r), done = 0;
    if (cnt > limit) *more = 1, cnt = limit;
    StoreDataset *out = cnt ? calloc((size_t)cnt, sizeof *out) : NULL;
    if (cnt && !out) st = ms_fail(err, MS_ERR_NOMEM, "out of memory listing datasets");
    while (st == MS_OK && done < cnt) {
        st = dataset_row(r, done, &out[done], err);
        done++;
    }
    PQclear(r);
    return store_list_end(st, out, done, sizeof *out, dataset_row_free, rows, n, more);
}

MsStatus pg_dataset_delete(Store *s, const char *id, MsError *err) {
    PgArgs a = {0};
    pg_text(&a, id);
    PGresult *r = NULL;
    MsStatus st = pg_begin(s, err);
    if (st != MS_OK) return st;
    if ((st = pg_query(s, "SELECT 1 FROM datasets WHERE id = $1 FOR UPDATE", &a, &r,
                       "deleting a dataset", err)) != MS_OK)
        goto done;
    int found = PQntuples(r) == 1;
    PQclear(r);
    if (!found) {
        st = ms_fail(err, MS_ERR_NOT_FOUND, "dataset %s not found", id);
        goto done;
    }
    // Ids are 128-bit random hex, so a substring match on the config cannot hit anything else.
    if ((st = pg_query(s,
                       "SELECT id, state FROM jobs WHERE state IN ('queued', 'running')"
                       " AND strpos(config, $1) > 0 LIMIT 1",
                       &a, &r, "deleting a dataset", err)) != MS_OK)
        goto done;
    if (PQntuples(r) == 1) {
        st = ms_fail(err, MS_ERR_CONFLICT, "dataset %s is used by %s job %s", id,
                     PQgetvalue(r, 0, 1), PQgetvalue(r, 0, 0));
        PQclear(r);
        goto done;
    }
    PQclear(r);
    if ((st = pg_query(s, "DELETE FROM datasets WHERE id = $1", &a, NULL, "deleting a dataset",
                       err)) != MS_OK)
        goto done;
    st = pg_commit(s, err);
done:
    if (st != MS_OK) pg_rollback(s);
    return st;
}

/* ---- adaptations ---- */

MsStatus pg_adaptation_put(Store *s, StoreAdaptation *a, MsError *err) {
    char id[STORE_ID_MAX];
    MsStatus st = store_id_new(id, err);
    if (st != MS_OK) return st;
    int64_t now = store_now_ms();
    PgArgs p = {0};
    void *buf = NULL;
    pg_text(&p, id);
    pg_text(&p, a->model);
    pg_i64(&p, a->version);
    pg_i64(&p, now);
    pg_i64(&p, a->expires_at);
    pg_f64(&p, a->support_loss_before);
    pg_f64(&p, a->support_loss_after);
    if ((st = pg_arg_blob(&p, &buf, BLOB_F32, a->params, a->n_params, err)) != MS_OK) return st;
    // The version must exist at the moment of the insert (FOR SHARE holds off its delete).
    PGresult *r = NULL;
    st = pg_query(s,
                  "INSERT INTO adaptations(id, model, version, created_at, expires_at,"
                  " support_loss_before, support_loss_after, params)"
                  " SELECT $1, $2, $3, $4, $5, $6, $7, $8 WHERE EXISTS"
                  " (SELECT 1 FROM models WHERE name = $2 AND version = $3 FOR SHARE)",
                  &p, &r, "writing an adaptation", err);
    free(buf);
    if (st != MS_OK) return st;
    int64_t changed = pg_changes(r);
    PQclear(r);
    if (changed == 0)
        return ms_fail(err, MS_ERR_NOT_FOUND, "model %s has no version %d", a->model, a->version);
    memcpy(a->id, id, sizeof id);
    a->created_at = now;
    return MS_OK;
}

MsStatus pg_adaptation_get(Store *s, const char *id, StoreAdaptation *out, MsError *err) {
    PgArgs a = {0};
    pg_text(&a, id);
    pg_i64(&a, store_now_ms());
    PGresult *r;
    MsStatus st = pg_query(s,
                           "SELECT id, model, version, created_at, expires_at,"
                           " support_loss_before, support_loss_after, params FROM adaptations"
                           " WHERE id = $1 AND expires_at > $2",
                           &a, &r, "reading an adaptation", err);
    if (st != MS_OK) return st;
    if (PQntuples(r) == 0) {
        st = ms_fail(err, MS_ERR_NOT_FOUND, "adaptation %s not found or expired", id);
    } else {
        pg_col_copy(out->id, sizeof out->id, r, 0, 0);
        pg_col_copy(out->model, sizeof out->model, r, 0, 1);
        out->version = (int)pg_col_i64(r, 0, 2);
        out->created_at = pg_col_i64(r, 0, 3);
        out->expires_at = pg_col_i64(r, 0, 4);
        out->support_loss_before = pg_col_f64(r, 0, 5);
        out->support_loss_after = pg_col_f64(r, 0, 6);
        char what[64];
        snprintf(what, sizeof what, "adaptation %s params", id);
        st = pg_col_blob(r, 0, 7, BLOB_F32, (void **)&out->params, &out->n_params, what, err);
        if (st == MS_OK && out->n_params == 0)
            st = ms_fail_detail(err, MS_ERR_DB, MS_DETAIL_CORRUPT, "%s: corrupt: no parameters",
                                what);
    }
    PQclear(r);
    if (st != MS_OK) store_adaptation_free(out);
    return st;
}

MsStatus pg_adaptation_delete(Store *s, const char *id, MsError *err) {
    PgArgs a = {0};
    pg_text(&a, id);
    PGresult *r;
    MsStatus st = pg_query(s, "DELETE FROM adaptations WHERE id = $1 RETURNING expires_at", &a, &r,
                           "deleting an adaptation", err);
    if (st != MS_OK) return st;
    int found = PQntuples(r) == 1;
    int64_t expires_at = found ? pg_col_i64(r, 0, 0) : 0;
    PQclear(r);
    if (!found) return ms_fail(err, MS_ERR_NOT_FOUND, "adaptation %s not found", id);
    // An expired row is gone now, but to the caller it had already ceased to exist.
    if (expires_at <= store_now_ms())
        return ms_fail(err, MS_ERR_NOT_FOUND, "adaptation %s not found or expired", id);
    return MS_OK;
}

#define PG_EXPIRE_BATCH 256 // rows per sweep statement, as on SQLite

MsStatus pg_adaptation_expire(Store *s, int64_t now_ms, int *n, MsError *err) {
    if (n) *n = 0;
    for (;;) {
        PgArgs a = {0};
        pg_i64(&a, now_ms);
        pg_i64(&a, PG_EXPIRE_BATCH);
        PGresult *r;
        MsStatus st = pg_query(s,
                               "DELETE FROM adaptations WHERE id IN (SELECT id FROM adaptations"
                               " WHERE expires_at <= $1 LIMIT $2 FOR UPDATE SKIP LOCKED)",
                               &a, &r, "expiring adaptations", err);
        if (st != MS_OK) return st;
        int64_t changed = pg_changes(r);
        PQclear(r);
        if (n) *n += (int)changed;
        if (changed < PG_EXPIRE_BATCH) return MS_OK;
    }
}
