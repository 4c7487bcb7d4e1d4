/*
 * SQLite backend of store.h, part 5: adaptations, the parameters adapted to one client's support
 * set, kept until expires_at. An expired row is treated as absent by get and delete and removed
 * by store_adaptation_expire in batches (index adaptations_expires, schema version 2).
 * Adaptations belong to a model version and are deleted with it (ON DELETE CASCADE); storing
 * one for a missing version is MS_ERR_NOT_FOUND.
 *
 * Workload: many and small (one write per adapt request, one read per predict on an adaptation
 * cache miss), swept every few seconds.
 */
#include "store_internal.h"
#include "store_pg.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void store_adaptation_free(StoreAdaptation *a) {
    if (!a) return;
    free(a->params);
    memset(a, 0, sizeof *a);
}

/* ---- adaptations ---- */

static const char SQL_ADAPT_INSERT[] =
    "INSERT INTO adaptations(id, model, version, created_at, expires_at, support_loss_before,"
    " support_loss_after, params) VALUES (?, ?, ?, ?, ?, ?, ?, ?)";

MsStatus store_adaptation_put(Store *s, StoreAdaptation *a, MsError *err) {
    MsStatus st = store_name_check("model", a->model, 0, err);
    if (st != MS_OK) return st;
    if (a->version < 1) return ms_fail(err, MS_ERR_INVALID, "version: must be >= 1");
    if (a->n_params == 0 || !a->params)
        return ms_fail(err, MS_ERR_INVALID, "params: an adaptation needs at least one parameter");
    if (s->pg) return pg_adaptation_put(s, a, err);
    char id[STORE_ID_MAX];
    if ((st = store_id_new(id, err)) != MS_OK) return st;
    int64_t now = store_now_ms();
    sqlite3_stmt *q = NULL;
    if ((st = store_tx_begin(s, err)) != MS_OK) return st;
    if ((st = store_stmt(s, SQL_ADAPT_INSERT, &q, err)) != MS_OK) goto done;
    int rc = sqlite3_bind_text(q, 1, id, -1, SQLITE_STATIC);
    if (rc == SQLITE_OK) rc = sqlite3_bind_text(q, 2, a->model, -1, SQLITE_STATIC);
    if (rc == SQLITE_OK) rc = sqlite3_bind_int(q, 3, a->version);
    if (rc == SQLITE_OK) rc = sqlite3_bind_int64(q, 4, now);
    if (rc == SQLITE_OK) rc = sqlite3_bind_int64(q, 5, a->expires_at);
    if (rc == SQLITE_OK) rc = sqlite3_bind_double(q, 6, a->support_loss_before);
    if (rc == SQLITE_OK) rc = sqlite3_bind_double(q, 7, a->support_loss_after);
    if (rc != SQLITE_OK) {
        st = store_sqlite_fail(s, rc, "writing an adaptation", err);
        goto done;
    }
    st = store_bind_blob(s, q, 8, BLOB_F32, a->params, a->n_params, "writing adapted params", err);
    if (st != MS_OK) goto done;
    rc = sqlite3_step(q);
    if (rc == SQLITE_CONSTRAINT_FOREIGNKEY) {
        st = ms_fail(err, MS_ERR_NOT_FOUND, "model %s has no version %d", a->model, a->version);
        goto done;
    }
    if (rc != SQLITE_DONE) {
        st = store_sqlite_fail(s, rc, "writing an adaptation", err);
        goto done;
    }
    store_stmt_done(q);
    q = NULL;
    if ((st = store_tx_commit(s, err)) != MS_OK) goto done;
    memcpy(a->id, id, sizeof id);
    a->created_at = now;
done:
    store_stmt_done(q);
    if (st != MS_OK) store_tx_rollback(s);
    return st;
}

static const char SQL_ADAPT_GET[] =
    "SELECT id, model, version, created_at, expires_at, support_loss_before, support_loss_after,"
    " params FROM adaptations WHERE id = ?1 AND expires_at > ?2";

MsStatus store_adaptation_get(Store *s, const char *id, StoreAdaptation *out, MsError *err) {
    memset(out, 0, sizeof *out);
    MsStatus st = store_id_check("adaptation", id, err);
    if (st != MS_OK) return st;
    if (s->pg) return pg_adaptation_get(s, id, out, err);
    sqlite3_stmt *q = NULL;
    if ((st = store_stmt(s, SQL_ADAPT_GET, &q, err)) != MS_OK) return st;
    int rc = sqlite3_bind_text(q, 1, id, -1, SQLITE_STATIC);
    if (rc == SQLITE_OK) rc = sqlite3_bind_int64(q, 2, store_now_ms());
    if (rc == SQLITE_OK) rc = sqlite3_step(q);
    if (rc == SQLITE_DONE) {
        st = ms_fail(err, MS_ERR_NOT_FOUND, "adaptation %s not found or expired", id);
        goto done;
    }
    if (rc != SQLITE_ROW) {
        st = store_sqlite_fail(s, rc, "reading an adaptation", err);
        goto done;
    }
    store_col_copy(out->id, sizeof out->id, q, 0);
    store_col_copy(out->model, sizeof out->model, q, 1);
    out->version = sqlite3_column_int(q, 2);
    out->created_at = sqlite3_column_int64(q, 3);
    out->expires_at = sqlite3_column_int64(q, 4);
    out->support_loss_before = store_col_double(q, 5);
    out->support_loss_after = store_col_double(q, 6);
    char what[64];
    snprintf(what, sizeof what, "adaptation %s params", id);
    st = store_col_blob(q, 7, BLOB_F32, (void **)&out->params, &out->n_params, what, err);
    if (st == MS_OK && out->n_params == 0)
        st = ms_fail_detail(err, MS_ERR_DB, MS_DETAIL_CORRUPT, "%s: corrupt: no parameters", what);
done:
    store_stmt_done(q);
    if (st != MS_OK) store_adaptation_free(out);
    return st;
}

static const char SQL_ADAPT_EXPIRES[] = "SELECT expires_at FROM adaptations WHERE id = ?";
static const char SQL_ADAPT_DELETE[] = "DELETE FROM adaptations WHERE id = ?";
// Rows per sweep transaction. One DELETE of every expired row held the write lock for as long
// as it took to free them all (seconds for 10^5 rows of a few KiB under a steady adapt load), so
// adapt requests waiting at BEGIN IMMEDIATE timed out with 503, and every request served by the
// same HTTP thread waited behind them. 256 rows of the 7 KiB parameters of a 1-40-40-1 net are
// ~2 MB of pages: milliseconds.
#define ADAPT_EXPIRE_BATCH 256
static const char SQL_ADAPT_EXPIRE[] =
    "DELETE FROM adaptations WHERE rowid IN"
    " (SELECT rowid FROM adaptations WHERE expires_at <= ?1 LIMIT ?2)";

MsStatus store_adaptation_delete(Store *s, const char *id, MsError *err) {
    MsStatus st = store_id_check("adaptation", id, err);
    if (st != MS_OK) return st;
    if (s->pg) return pg_adaptation_delete(s, id, err);
    sqlite3_stmt *q = NULL;
    int64_t expires_at = 0;
    if ((st = store_tx_begin(s, err)) != MS_OK) return st;
    if ((st = store_stmt(s, SQL_ADAPT_EXPIRES, &q, err)) != MS_OK) goto done;
    int rc = sqlite3_bind_text(q, 1, id, -1, SQLITE_STATIC);
    if (rc == SQLITE_OK) rc = sqlite3_step(q);
    if (rc == SQLITE_DONE) {
        st = ms_fail(err, MS_ERR_NOT_FOUND, "adaptation %s not found", id);
        goto done;
    }
    if (rc != SQLITE_ROW) {
        st = store_sqlite_fail(s, rc, "deleting an adaptation", err);
        goto done;
    }
    expires_at = sqlite3_column_int64(q, 0);
    store_stmt_done(q);
    q = NULL;
    if ((st = store_stmt(s, SQL_ADAPT_DELETE, &q, err)) != MS_OK) goto done;
    if ((rc = sqlite3_bind_text(q, 1, id, -1, SQLITE_STATIC)) != SQLITE_OK) {
        st = store_sqlite_fail(s, rc, "deleting an adaptation", err);
        goto done;
    }
    if ((st = store_step_done(s, q, "deleting an adaptation", err)) != MS_OK) goto done;
    store_stmt_done(q);
    q = NULL;
    if ((st = store_tx_commit(s, err)) != MS_OK) goto done;
    // An expired row is gone now, but to the caller it had already ceased to exist.
    if (expires_at <= store_now_ms())
        st = ms_fail(err, MS_ERR_NOT_FOUND, "adaptation %s not found or expired", id);
done:
    store_stmt_done(q);
    if (st != MS_OK) store_tx_rollback(s);
    return st;
}

// Deletes up to ADAPT_EXPIRE_BATCH expired rows in one transaction; *changed receives how many.
static MsStatus expire_batch(Store *s, int64_t now_ms, int *changed, MsError *err) {
    *changed = 0;
    sqlite3_stmt *q = NULL;
    MsStatus st = store_tx_begin(s, err);
    if (st != MS_OK) return st;
    if ((st = store_stmt(s, SQL_ADAPT_EXPIRE, &q, err)) != MS_OK) goto done;
    int rc = sqlite3_bind_int64(q, 1, now_ms);
    if (rc == SQLITE_OK) rc = sqlite3_bind_int(q, 2, ADAPT_EXPIRE_BATCH);
    if (rc != SQLITE_OK) {
        st = store_sqlite_fail(s, rc, "expiring adaptations", err);
        goto done;
    }
    if ((st = store_step_done(s, q, "expiring adaptations", err)) != MS_OK) goto done;
    int deleted = sqlite3_changes(s->db);
    store_stmt_done(q);
    q = NULL;
    if ((st = store_tx_commit(s, err)) != MS_OK) goto done;
    *changed = deleted;
done:
    store_stmt_done(q);
    if (st != MS_OK) store_tx_rollback(s);
    return st;
}

MsStatus store_adaptation_expire(Store *s, int64_t now_ms, int *n, MsError *err) {
    if (s->pg) return pg_adaptation_expire(s, now_ms, n, err);
    if (n) *n = 0;
    // batch after batch, each its own short transaction, so writers get the lock in between
    for (;;) {
        int changed = 0;
        MsStatus st = expire_batch(s, now_ms, &changed, err);
        if (st != MS_OK) return st;
        if (n) *n += changed;
        if (changed < ADAPT_EXPIRE_BATCH) return MS_OK;
    }
}
