/*
 * SQLite backend of store.h, part 4: uploaded datasets. One row each with the description, a
 * kind-specific meta JSON and three checked blobs (x and y as f32, a kind-specific int32 index).
 * The blobs are streamed with SQLite's incremental blob I/O (store_blob_stream_*, store_stream.c),
 * so beyond the caller's arrays (put) or the returned arrays (get) only the page cache and one
 * 64 KiB buffer are used: a 100,000 x 784 float pool (314 MB) is held once, not two or three
 * times. Put inserts zeroblob placeholders and fills them in the same IMMEDIATE transaction; get
 * reads the three blobs while its SELECT on the row is still active, i.e. from one snapshot. The
 * bytes are those of blob_encode, so rows written whole (before streaming) and streamed rows read
 * alike. On read each header is checked, and the counts of x and y against n_rows x x_dim and
 * n_rows x y_dim, before anything is allocated. A dataset named (by id, anywhere in its config)
 * by a queued or running job cannot be deleted; the check and the delete share one IMMEDIATE
 * transaction.
 *
 * Workload: datasets are few and large (up to ~3 x 10^8 bytes, read once per training job).
 */
#include "store_internal.h"
#include "store_pg.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void store_dataset_free(StoreDataset *d) {
    if (!d) return;
    free(d->meta);
    memset(d, 0, sizeof *d);
}

void store_dataset_data_free(StoreDatasetData *d) {
    if (!d) return;
    free(d->x);
    free(d->y);
    free(d->index);
    memset(d, 0, sizeof *d);
}

static void dataset_row_free(void *d) {
    store_dataset_free(d);
}

/* ---- datasets ---- */

// 1 when n == rows * dim (rows >= 0, dim >= 1) without overflow.
static int count_matches(size_t n, int64_t rows, int dim) {
    if (rows < 0 || dim < 1) return 0;
    if ((uint64_t)rows > SIZE_MAX / (size_t)dim) return 0;
    return n == (size_t)rows * (size_t)dim;
}

static MsStatus dataset_check(const StoreDataset *d, const StoreDatasetData *data, MsError *err) {
    MsStatus st = store_name_check("name", d->name, 0, err);
    if (st != MS_OK) return st;
    if (strnlen(d->kind, sizeof d->kind) == sizeof d->kind ||
        (strcmp(d->kind, "tasks") != 0 && strcmp(d->kind, "classes") != 0))
        return ms_fail(err, MS_ERR_INVALID, "kind: must be \"tasks\" or \"classes\"");
    if (d->x_dim < 1 || d->y_dim < 1)
        return ms_fail(err, MS_ERR_INVALID, "x_dim, y_dim: must be >= 1");
    if (d->n_rows < 0 || d->n_items < 0)
        return ms_fail(err, MS_ERR_INVALID, "n_rows, n_items: must be >= 0");
    if (!data) return ms_fail(err, MS_ERR_INVALID, "data: missing");
    if (!count_matches(data->n_x, d->n_rows, d->x_dim) || (data->n_x > 0 && !data->x))
        return ms_fail(err, MS_ERR_INVALID, "x: %zu values for %lld rows of %d", data->n_x,
                       (long long)d->n_rows, d->x_dim);
    if (!count_matches(data->n_y, d->n_rows, d->y_dim) || (data->n_y > 0 && !data->y))
        return ms_fail(err, MS_ERR_INVALID, "y: %zu values for %lld rows of %d", data->n_y,
                       (long long)d->n_rows, d->y_dim);
    if (data->n_index > 0 && !data->index) return ms_fail(err, MS_ERR_INVALID, "index: missing");
    return MS_OK;
}

// The arrays are inserted as zeroblob placeholders of their exact encoded sizes and then
// streamed in (store_blob_stream_write) inside the same transaction. A zeroblob that ends the
// record (x, y, idx are the last columns) is not materialised by SQLite: the row is built page
// by page, so no buffer of the data's size exists beside the caller's arrays.
static const char SQL_DATASET_INSERT[] =
    "INSERT INTO datasets(id, name, kind, created_at, n_items, n_rows, x_dim, y_dim, meta, bytes,"
    " x, y, idx) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";

// The three arrays of a dataset, in column order.
typedef struct {
    const char *col;
    BlobType type;
    const char *name; // in messages
} ArraySpec;
static const ArraySpec ARRAYS[3] = {
    {"x", BLOB_F32, "x"}, {"y", BLOB_F32, "y"}, {"idx", BLOB_I32, "index"}};

static const void *array_elems(const StoreDatasetData *d, int k, size_t *n) {
    switch (k) {
    case 0:
        *n = d->n_x;
        return d->x;
    case 1:
        *n = d->n_y;
        return d->y;
    default:
        *n = d->n_index;
        return d->index;
    }
}

MsStatus store_dataset_put(Store *s, StoreDataset *d, const StoreDatasetData *data, MsError *err) {
    MsStatus st = dataset_check(d, data, err);
    if (st != MS_OK) return st;
    if (s->pg) return pg_dataset_put(s, d, data, err);
    size_t lens[3];
    for (int k = 0; k < 3; k++) {
        size_t n;
        (void)array_elems(data, k, &n);
        if ((st = blob_encoded_size(&lens[k], ARRAYS[k].type, n, err)) != MS_OK) return st;
    }
    char id[STORE_ID_MAX];
    if ((st = store_id_new(id, err)) != MS_OK) return st;
    int64_t now = store_now_ms();
    size_t bytes = 4 * (data->n_x + data->n_y + data->n_index); // arrays already fit in memory
    sqlite3_stmt *q = NULL;
    if ((st = store_tx_begin(s, err)) != MS_OK) return st;
    if ((st = store_stmt(s, SQL_DATASET_INSERT, &q, err)) != MS_OK) goto done;
    int rc = sqlite3_bind_text(q, 1, id, -1, SQLITE_STATIC);
    if (rc == SQLITE_OK) rc = sqlite3_bind_text(q, 2, d->name, -1, SQLITE_STATIC);
    if (rc == SQLITE_OK) rc = sqlite3_bind_text(q, 3, d->kind, -1, SQLITE_STATIC);
    if (rc == SQLITE_OK) rc = sqlite3_bind_int64(q, 4, now);
    if (rc == SQLITE_OK) rc = sqlite3_bind_int64(q, 5, d->n_items);
    if (rc == SQLITE_OK) rc = sqlite3_bind_int64(q, 6, d->n_rows);
    if (rc == SQLITE_OK) rc = sqlite3_bind_int(q, 7, d->x_dim);
    if (rc == SQLITE_OK) rc = sqlite3_bind_int(q, 8, d->y_dim);
    if (rc == SQLITE_OK) rc = sqlite3_bind_text(q, 9, d->meta ? d->meta : "{}", -1, SQLITE_STATIC);
    if (rc == SQLITE_OK) rc = sqlite3_bind_int64(q, 10, (sqlite3_int64)bytes);
    // SQLITE_TOOBIG here (or at the step, for the row as a whole) maps to MS_ERR_TOO_LARGE.
    for (int k = 0; k < 3 && rc == SQLITE_OK; k++)
        rc = sqlite3_bind_zeroblob64(q, 11 + k, (sqlite3_uint64)lens[k]);
    if (rc != SQLITE_OK) {
        st = store_sqlite_fail(s, rc, "writing a dataset", err);
        goto done;
    }
    if ((st = store_step_done(s, q, "writing a dataset", err)) != MS_OK) goto done;
    sqlite3_int64 rowid = sqlite3_last_insert_rowid(s->db); // datasets is a rowid table
    store_stmt_done(q);
    q = NULL;
    for (int k = 0; k < 3; k++) {
        char what[48];
        snprintf(what, sizeof what, "writing dataset %s", ARRAYS[k].name);
        size_t n;
        const void *elems = array_elems(data, k, &n);
        st = store_blob_stream_write(s, "datasets", ARRAYS[k].col, rowid, ARRAYS[k].type, elems, n,
                                     what, err);
        if (st != MS_OK) goto done;
    }
    if ((st = store_tx_commit(s, err)) != MS_OK) goto done;
    memcpy(d->id, id, sizeof id);
    d->created_at = now;
    d->bytes = bytes;
done:
    store_stmt_done(q);
    if (st != MS_OK) store_tx_rollback(s);
    return st;
}

#define DATASET_COLS "id, name, kind, created_at, n_items, n_rows, x_dim, y_dim, bytes"

static const char SQL_DATASET_GET[] = "SELECT " DATASET_COLS ", meta FROM datasets WHERE id = ?";
// typeof() of a blob column reads only the record header, not the blob's overflow pages.
static const char SQL_DATASET_GET_DATA[] =
    "SELECT " DATASET_COLS ", meta, rowid, typeof(x), typeof(y), typeof(idx) FROM datasets"
    " WHERE id = ?";

static void dataset_row(sqlite3_stmt *q, StoreDataset *d) {
    store_col_copy(d->id, sizeof d->id, q, 0);
    store_col_copy(d->name, sizeof d->name, q, 1);
    store_col_copy(d->kind, sizeof d->kind, q, 2);
    d->created_at = sqlite3_column_int64(q, 3);
    d->n_items = sqlite3_column_int64(q, 4);
    d->n_rows = sqlite3_column_int64(q, 5);
    d->x_dim = sqlite3_column_int(q, 6);
    d->y_dim = sqlite3_column_int(q, 7);
    d->bytes = (size_t)sqlite3_column_int64(q, 8);
}

// Streams the three arrays of the current row of SQL_DATASET_GET_DATA (rowid in column 10, the
// blobs' types in 11..13) and checks x and y against n_rows x x_dim and n_rows x y_dim before
// allocating them. q stays active meanwhile, so all three come from the row's snapshot.
static MsStatus dataset_arrays(Store *s, sqlite3_stmt *q, const StoreDataset *d,
                               StoreDatasetData *data, MsError *err) {
    sqlite3_int64 rowid = sqlite3_column_int64(q, 10);
    const int dims[2] = {d->x_dim, d->y_dim};
    void **outs[3] = {(void **)&data->x, (void **)&data->y, (void **)&data->index};
    size_t *counts[3] = {&data->n_x, &data->n_y, &data->n_index};
    for (int k = 0; k < 3; k++) {
        char what[80];
        snprintf(what, sizeof what, "dataset %s %s", d->id, ARRAYS[k].name);
        const char *type = (const char *)sqlite3_column_text(q, 11 + k);
        if (!type || strcmp(type, "blob") != 0)
            return ms_fail_detail(err, MS_ERR_DB, MS_DETAIL_CORRUPT, "%s: corrupt: not a blob",
                                  what);
        size_t want = STORE_BLOB_ANY_COUNT; // the index's length is kind-specific
        if (k < 2) {
            if (d->n_rows < 0 || dims[k] < 1 || (uint64_t)d->n_rows > SIZE_MAX / (size_t)dims[k])
                return ms_fail_detail(err, MS_ERR_DB, MS_DETAIL_CORRUPT,
                                      "%s: corrupt: %lld rows of %d", what, (long long)d->n_rows,
                                      dims[k]);
            want = (size_t)d->n_rows * (size_t)dims[k];
        }
        MsStatus st = store_blob_stream_read(s, "datasets", ARRAYS[k].col, rowid, ARRAYS[k].type,
                                             want, outs[k], counts[k], what, err);
        if (st != MS_OK) return st;
    }
    return MS_OK;
}

MsStatus store_dataset_get(Store *s, const char *id, StoreDataset *out, StoreDatasetData *data,
                           MsError *err) {
    memset(out, 0, sizeof *out);
    if (data) memset(data, 0, sizeof *data);
    MsStatus st = store_id_check("dataset", id, err);
    if (st != MS_OK) return st;
    if (s->pg) return pg_dataset_get(s, id, out, data, err);
    sqlite3_stmt *q = NULL;
    if ((st = store_stmt(s, data ? SQL_DATASET_GET_DATA : SQL_DATASET_GET, &q, err)) != MS_OK)
        return st;
    int rc = sqlite3_bind_text(q, 1, id, -1, SQLITE_STATIC);
    if (rc == SQLITE_OK) rc = sqlite3_step(q);
    if (rc == SQLITE_DONE) {
        st = ms_fail(err, MS_ERR_NOT_FOUND, "dataset %s not found", id);
        goto done;
    }
    if (rc != SQLITE_ROW) {
        st = store_sqlite_fail(s, rc, "reading a dataset", err);
        goto done;
    }
    dataset_row(q, out);
    if (!(out->meta = store_col_strdup(q, 9, "{}"))) {
        st = ms_fail(err, MS_ERR_NOMEM, "out of memory reading dataset %s", id);
        goto done;
    }
    if (data) st = dataset_arrays(s, q, out, data, err);
done:
    store_stmt_done(q);
    if (st != MS_OK) {
        store_dataset_free(out);
        store_dataset_data_free(data);
    }
    return st;
}

static const char SQL_DATASET_CURSOR[] = "SELECT created_at, rowid FROM datasets WHERE id = ?";
static const char SQL_DATASET_LIST_FIRST[] =
    "SELECT " DATASET_COLS ", meta FROM datasets ORDER BY created_at DESC, rowid DESC LIMIT ?1";
static const char SQL_DATASET_LIST_AFTER[] =
    "SELECT " DATASET_COLS ", meta FROM datasets"
    " WHERE created_at < ?2 OR (created_at = ?2 AND rowid < ?3)"
    " ORDER BY created_at DESC, rowid DESC LIMIT ?1";

MsStatus store_dataset_list(Store *s, const char *after, int limit, StoreDataset **rows, int *n,
                            int *more, MsError *err) {
    *rows = NULL;
    *n = 0;
    *more = 0;
    if (limit < 1) return ms_fail(err, MS_ERR_INVALID, "limit: must be at least 1");
    int from_start = !after || !after[0];
    if (!from_start && !store_id_valid(after))
        return ms_fail(err, MS_ERR_INVALID, "after: not a dataset id");
    if (s->pg) return pg_dataset_list(s, after, limit, rows, n, more, err);
    sqlite3_stmt *q = NULL;
    StoreDataset *r = NULL;
    int cnt = 0, cap = 0, rc;
    MsStatus st = MS_OK;
    sqlite3_int64 c_at = 0, c_row = 0;
    if (!from_start) {
        if ((st = store_stmt(s, SQL_DATASET_CURSOR, &q, err)) != MS_OK) goto done;
        rc = sqlite3_bind_text(q, 1, after, -1, SQLITE_STATIC);
        if (rc == SQLITE_OK) rc = sqlite3_step(q);
        if (rc == SQLITE_DONE) {
            st = ms_fail(err, MS_ERR_INVALID, "after: no dataset %s (deleted?)", after);
            goto done;
        }
        if (rc != SQLITE_ROW) {
            st = store_sqlite_fail(s, rc, "listing datasets", err);
            goto done;
        }
        c_at = sqlite3_column_int64(q, 0);
        c_row = sqlite3_column_int64(q, 1);
        store_stmt_done(q);
        q = NULL;
    }
    const char *sql = from_start ? SQL_DATASET_LIST_FIRST : SQL_DATASET_LIST_AFTER;
    if ((st = store_stmt(s, sql, &q, err)) != MS_OK) goto done;
    rc = sqlite3_bind_int64(q, 1, (sqlite3_int64)limit + 1);
    if (rc == SQLITE_OK && !from_start) rc = sqlite3_bind_int64(q, 2, c_at);
    if (rc == SQLITE_OK && !from_start) rc = sqlite3_bind_int64(q, 3, c_row);
    if (rc != SQLITE_OK) {
        st = store_sqlite_fail(s, rc, "listing datasets", err);
        goto done;
    }
    while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        if (cnt == limit) {
            *more = 1;
            break;
        }
        if ((st = store_grow((void **)&r, &cap, cnt, sizeof *r, 16, "listing datasets", err)) !=
            MS_OK)
            goto done;
        memset(&r[cnt], 0, sizeof r[cnt]);
        dataset_row(q, &r[cnt]);
        if (!(r[cnt++].meta = store_col_strdup(q, 9, "{}"))) {
            st = ms_fail(err, MS_ERR_NOMEM, "out of memory listing datasets");
            goto done;
        }
    }
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        st = store_sqlite_fail(s, rc, "listing datasets", err);
done:
    store_stmt_done(q);
    return store_list_end(st, r, cnt, sizeof *r, dataset_row_free, rows, n, more);
}

static const char SQL_DATASET_EXISTS[] = "SELECT 1 FROM datasets WHERE id = ?";
// Ids are 128-bit random hex, so a substring match on the config cannot hit anything else.
static const char SQL_DATASET_USER[] =
    "SELECT id, state FROM jobs WHERE state IN ('queued', 'running') AND instr(config, ?) > 0"
    " LIMIT 1";
static const char SQL_DATASET_DELETE[] = "DELETE FROM datasets WHERE id = ?";

MsStatus store_dataset_delete(Store *s, const char *id, MsError *err) {
    MsStatus st = store_id_check("dataset", id, err);
    if (st != MS_OK) return st;
    if (s->pg) return pg_dataset_delete(s, id, err);
    const char *const sqls[3] = {SQL_DATASET_EXISTS, SQL_DATASET_USER, SQL_DATASET_DELETE};
    sqlite3_stmt *q = NULL;
    if ((st = store_tx_begin(s, err)) != MS_OK) return st;
    for (int k = 0; k < 3; k++) {
        if ((st = store_stmt(s, sqls[k], &q, err)) != MS_OK) goto done;
        int rc = sqlite3_bind_text(q, 1, id, -1, SQLITE_STATIC);
        if (rc == SQLITE_OK) rc = sqlite3_step(q);
        if (k == 0 && rc == SQLITE_DONE) {
            st = ms_fail(err, MS_ERR_NOT_FOUND, "dataset %s not found", id);
            goto done;
        }
        if (k == 1 && rc == SQLITE_ROW) {
            char job[STORE_ID_MAX], state[16];
            store_col_copy(job, sizeof job, q, 0);
            store_col_copy(state, sizeof state, q, 1);
            st = ms_fail(err, MS_ERR_CONFLICT, "dataset %s is used by %s job %s", id, state, job);
            goto done;
        }
        if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
            st = store_sqlite_fail(s, rc, "deleting a dataset", err);
            goto done;
        }
        store_stmt_done(q);
        q = NULL;
    }
    st = store_tx_commit(s, err);
done:
    store_stmt_done(q);
    if (st != MS_OK) store_tx_rollback(s);
    return st;
}
