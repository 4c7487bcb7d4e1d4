/*
 * PostgreSQL backend of store.h, part 2: the model registry (see store_models.c for the
 * contract). A new version number is chosen under the row lock of the name's model_names row
 * (inserted if absent, then SELECT ... FOR UPDATE), so replicas writing versions of one name at
 * once get distinct consecutive numbers, and a number is never handed out twice.
 */
#include "store_pg.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

MsStatus pg_model_insert(Store *s, StoreModel *m, const char *job_id, int *version, MsError *err) {
    PGresult *r = NULL;
    void *pb = NULL, *lb = NULL;
    PgArgs a = {0};
    pg_text(&a, m->name);
    MsStatus st = pg_query(s,
                           "INSERT INTO model_names(name, last_version) VALUES ($1, 0)"
                           " ON CONFLICT (name) DO NOTHING",
                           &a, NULL, "choosing a model version", err);
    if (st != MS_OK) return st;
    if ((st = pg_query(s,
                       "SELECT greatest(last_version, coalesce((SELECT max(version) FROM models"
                       " WHERE name = $1), 0)) + 1 FROM model_names WHERE name = $1 FOR UPDATE",
                       &a, &r, "choosing a model version", err)) != MS_OK)
        return st;
    int64_t next = PQntuples(r) == 1 ? pg_col_i64(r, 0, 0) : 1;
    PQclear(r);
    if (next > INT_MAX)
        return ms_fail(err, MS_ERR_CONFLICT, "model %s has run out of version numbers", m->name);
    int64_t now = store_now_ms();
    const char *jid = job_id ? job_id : m->job_id;
    PgArgs b = {0};
    pg_text(&b, m->name);
    pg_i64(&b, next);
    pg_i64(&b, now);
    pg_text(&b, m->config ? m->config : "{}");
    pg_text(&b, m->algorithm);
    pg_text(&b, m->hyper ? m->hyper : "{}");
    pg_text(&b, m->metrics ? m->metrics : "{}");
    pg_text(&b, jid);
    if ((st = pg_arg_blob(&b, &pb, BLOB_F32, m->params, m->n_params, err)) != MS_OK) goto done;
    if (m->inner_lrs) {
        if ((st = pg_arg_blob(&b, &lb, BLOB_F32, m->inner_lrs, m->n_params, err)) != MS_OK)
            goto done;
    } else {
        pg_text(&b, NULL);
    }
    if ((st = pg_query(s,
                       "INSERT INTO models(name, version, created_at, config, algorithm, hyper,"
                       " metrics, job_id, params, inner_lrs)"
                       " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                       &b, NULL, "writing a model", err)) != MS_OK)
        goto done;
    PgArgs c = {0};
    pg_text(&c, m->name);
    pg_i64(&c, next);
    if ((st = pg_query(s, "UPDATE model_names SET last_version = $2 WHERE name = $1", &c, NULL,
                       "recording a model version", err)) != MS_OK)
        goto done;
    memmove(m->job_id, jid, strlen(jid) + 1);
    m->version = (int)next;
    m->created_at = now;
    if (version) *version = (int)next;
done:
    free(pb);
    free(lb);
    return st;
}

MsStatus pg_model_put(Store *s, StoreModel *m, int *version, MsError *err) {
    MsStatus st = pg_begin(s, err);
    if (st != MS_OK) return st;
    if ((st = pg_model_insert(s, m, NULL, version, err)) == MS_OK) st = pg_commit(s, err);
    if (st != MS_OK) pg_rollback(s);
    return st;
}

MsStatus pg_lookup_version(Store *s, const char *name, int version, const char *alias, int *out,
                           int *found, MsError *err) {
    PgArgs a = {0};
    pg_text(&a, name);
    const char *sql;
    if (alias) {
        pg_text(&a, alias);
        sql = "SELECT version FROM model_aliases WHERE name = $1 AND alias = $2";
    } else if (version > 0) {
        pg_i64(&a, version);
        sql = "SELECT version FROM models WHERE name = $1 AND version = $2";
    } else {
        sql = "SELECT max(version) FROM models WHERE name = $1";
    }
    PGresult *r;
    *found = 0;
    MsStatus st = pg_query(s, sql, &a, &r, "resolving a model", err);
    if (st != MS_OK) return st;
    if (PQntuples(r) == 1 && !pg_col_null(r, 0, 0)) {
        *out = (int)pg_col_i64(r, 0, 0);
        *found = 1;
    }
    PQclear(r);
    return MS_OK;
}

#define MODEL_COLS "name, version, created_at, config, algorithm, hyper, metrics, job_id"

static MsStatus model_row(const PGresult *r, int i, StoreModel *m, MsError *err) {
    pg_col_copy(m->name, sizeof m->name, r, i, 0);
    m->version = (int)pg_col_i64(r, i, 1);
    m->created_at = pg_col_i64(r, i, 2);
    m->config = pg_col_strdup(r, i, 3, "{}");
    pg_col_copy(m->algorithm, sizeof m->algorithm, r, i, 4);
    m->hyper = pg_col_strdup(r, i, 5, "{}");
    m->metrics = pg_col_strdup(r, i, 6, "{}");
    pg_col_copy(m->job_id, sizeof m->job_id, r, i, 7);
    if (!m->config || !m->hyper || !m->metrics)
        return ms_fail(err, MS_ERR_NOMEM, "out of memory reading model %s", m->name);
    return MS_OK;
}

MsStatus pg_model_get(Store *s, const char *name, int version, StoreModel *out, MsError *err) {
    PgArgs a = {0};
    pg_text(&a, name);
    pg_i64(&a, version);
    PGresult *r;
    MsStatus st = pg_query(s,
                           "SELECT " MODEL_COLS ", params, inner_lrs FROM models"
                           " WHERE name = $1 AND version = $2",
                           &a, &r, "reading a model", err);
    if (st != MS_OK) return st;
    if (PQntuples(r) == 0) {
        st = ms_fail(err, MS_ERR_NOT_FOUND, "model %s has no version %d", name, version);
        goto done;
    }
    if ((st = model_row(r, 0, out, err)) != MS_OK) goto done;
    char what[STORE_NAME_MAX + 48];
    snprintf(what, sizeof what, "model %s@%d params", name, version);
    st = pg_col_blob(r, 0, 8, BLOB_F32, (void **)&out->params, &out->n_params, what, err);
    if (st != MS_OK) goto done;
    if (out->n_params == 0) {
        st = ms_fail_detail(err, MS_ERR_DB, MS_DETAIL_CORRUPT, "%s: corrupt: no parameters", what);
        goto done;
    }
    if (!pg_col_null(r, 0, 9)) {
        size_t n_lrs;
        snprintf(what, sizeof what, "model %s@%d inner_lrs", name, version);
        st = pg_col_blob(r, 0, 9, BLOB_F32, (void **)&out->inner_lrs, &n_lrs, what, err);
        if (st == MS_OK && n_lrs != out->n_params)
            st = ms_fail_detail(err, MS_ERR_DB, MS_DETAIL_CORRUPT,
                                "%s: corrupt: %zu rates for %zu parameters", what, n_lrs,
                                out->n_params);
    }
done:
    PQclear(r);
    if (st != MS_OK) store_model_free(out);
    return st;
}

static void model_row_free(void *m) {
    store_model_free(m);
}

MsStatus pg_model_versions(Store *s, const char *name, StoreModel **rows, int *n, MsError *err) {
    PgArgs a = {0};
    pg_text(&a, name);
    PGresult *r;
    MsStatus st = pg_query(s,
                           "SELECT " MODEL_COLS ", length(params)::bigint FROM models"
                           " WHERE name = $1 ORDER BY version",
                           &a, &r, "listing model versions", err);
    if (st != MS_OK) return st;
    int cnt = PQntuples(r);
    StoreModel *out = cnt ? calloc((size_t)cnt, sizeof *out) : NULL;
    if (cnt && !out) st = ms_fail(err, MS_ERR_NOMEM, "out of memory listing model versions");
    int done = 0;
    for (; st == MS_OK && done < cnt; done++) {
        st = model_row(r, done, &out[done], err);
        int64_t len = pg_col_i64(r, done, 8);
        out[done].n_params = len > BLOB_HEADER_SIZE ? (size_t)(len - BLOB_HEADER_SIZE) / 4 : 0;
    }
    PQclear(r);
    if (st == MS_OK && cnt == 0) st = ms_fail(err, MS_ERR_NOT_FOUND, "model %s not found", name);
    return store_list_end(st, out, done, sizeof *out, model_row_free, rows, n, NULL);
}

MsStatus pg_model_list(Store *s, const char *after, int limit, StoreModelSummary **rows, int *n,
                       int *more, MsError *err) {
    PgArgs a = {0};
    pg_text(&a, after ? after : "");
    pg_i64(&a, (int64_t)limit + 1);
    PGresult *r;
    MsStatus st = pg_query(s,
                           "SELECT m.name, m.version, c.n, m.created_at, m.algorithm FROM models m"
                           " JOIN (SELECT name, max(version) AS v, count(*) AS n FROM models WHERE "
                           "name > $1 COLLATE \"C\""
                           "       GROUP BY name ORDER BY name COLLATE \"C\" LIMIT $2) c"
                           " ON m.name = c.name AND m.version = c.v ORDER BY m.name COLLATE \"C\"",
                           &a, &r, "listing models", err);
    if (st != MS_OK) return st;
    int cnt = PQntuples(r);
    if (cnt > limit) *more = 1, cnt = limit;
    StoreModelSummary *out = cnt ? calloc((size_t)cnt, sizeof *out) : NULL;
    if (cnt && !out) st = ms_fail(err, MS_ERR_NOMEM, "out of memory listing models");
    for (int i = 0; st == MS_OK && i < cnt; i++) {
        pg_col_copy(out[i].name, sizeof out[i].name, r, i, 0);
        out[i].latest_version = (int)pg_col_i64(r, i, 1);
        out[i].n_versions = (int)pg_col_i64(r, i, 2);
        out[i].created_at = pg_col_i64(r, i, 3);
        pg_col_copy(out[i].algorithm, sizeof out[i].algorithm, r, i, 4);
    }
    PQclear(r);
    return store_list_end(st, out, cnt, sizeof *out, NULL, rows, n, more);
}

MsStatus pg_model_delete(Store *s, const char *name, int version, MsError *err) {
    PgArgs a = {0};
    pg_text(&a, name);
    if (version > 0) pg_i64(&a, version);
    PGresult *r;
    // Aliases and adaptations of the deleted rows go with them (ON DELETE CASCADE).
    MsStatus st = pg_query(s,
                           version > 0 ? "DELETE FROM models WHERE name = $1 AND version = $2"
                                       : "DELETE FROM models WHERE name = $1",
                           &a, &r, "deleting a model", err);
    if (st != MS_OK) return st;
    int64_t changed = pg_changes(r);
    PQclear(r);
    if (changed == 0)
        return version > 0
                   ? ms_fail(err, MS_ERR_NOT_FOUND, "model %s has no version %d", name, version)
                   : ms_fail(err, MS_ERR_NOT_FOUND, "model %s not found", name);
    return MS_OK;
}

MsStatus pg_alias_set(Store *s, const char *name, const char *alias, int version, MsError *err) {
    PgArgs a = {0};
    pg_text(&a, name);
    pg_text(&a, alias);
    pg_i64(&a, version);
    PGresult *r;
    // One statement: the version must exist at the moment of the write (no gap for a delete).
    MsStatus st = pg_query(s,
                           "INSERT INTO model_aliases(name, alias, version)"
                           " SELECT $1, $2, $3 WHERE EXISTS"
                           " (SELECT 1 FROM models WHERE name = $1 AND version = $3 FOR SHARE)"
                           " ON CONFLICT (name, alias) DO UPDATE SET version = excluded.version",
                           &a, &r, "setting an alias", err);
    if (st != MS_OK) return st;
    int64_t changed = pg_changes(r);
    PQclear(r);
    if (changed == 0)
        return ms_fail(err, MS_ERR_NOT_FOUND, "model %s has no version %d", name, version);
    return MS_OK;
}

MsStatus pg_alias_delete(Store *s, const char *name, const char *alias, MsError *err) {
    PgArgs a = {0};
    pg_text(&a, name);
    pg_text(&a, alias);
    PGresult *r;
    MsStatus st = pg_query(s, "DELETE FROM model_aliases WHERE name = $1 AND alias = $2", &a, &r,
                           "deleting an alias", err);
    if (st != MS_OK) return st;
    int64_t changed = pg_changes(r);
    PQclear(r);
    if (changed == 0)
        return ms_fail(err, MS_ERR_NOT_FOUND, "model %s has no alias %s", name, alias);
    return MS_OK;
}

MsStatus pg_alias_list(Store *s, const char *name, StoreAlias **rows, int *n, MsError *err) {
    PgArgs a = {0};
    pg_text(&a, name);
    PGresult *r;
    MsStatus st = pg_query(s,
                           "SELECT alias, version FROM model_aliases WHERE name = $1"
                           " ORDER BY alias COLLATE \"C\"",
                           &a, &r, "listing aliases", err);
    if (st != MS_OK) return st;
    int cnt = PQntuples(r);
    StoreAlias *out = cnt ? calloc((size_t)cnt, sizeof *out) : NULL;
    if (cnt && !out) st = ms_fail(err, MS_ERR_NOMEM, "out of memory listing aliases");
    for (int i = 0; st == MS_OK && i < cnt; i++) {
        pg_col_copy(out[i].alias, sizeof out[i].alias, r, i, 0);
        out[i].version = (int)pg_col_i64(r, i, 1);
    }
    PQclear(r);
    return store_list_end(st, out, cnt, sizeof *out, NULL, rows, n, NULL);
}
