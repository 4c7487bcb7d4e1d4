/*
 * SQLite backend of store.h, part 2: the model registry. Owns models (immutable numbered
 * versions per name, with parameters and optional Meta-SGD rates as checked f32 blobs), the
 * version counter per name (model_names), aliases, references "name[@version|@alias]" and the
 * name-ordered listing. Job bookkeeping lives in store_jobs.c, which reuses
 * store_model_insert to write a job's result inside its own transaction.
 *
 * Invariants: a version number is max(ever assigned) + 1, chosen inside the same IMMEDIATE
 * transaction as the insert, so concurrent writers never collide, and a number is never handed
 * out again, even after its version or the whole model was deleted: a cache or client holding
 * name@N can never silently get different parameters. Aliases and
 * adaptations of a deleted version go with it (ON DELETE CASCADE). Arrays are verified on every
 * read; a corrupt one is reported, never returned.
 *
 * Workload: a few versions per model, tens to thousands of models; reads happen on adaptation
 * cache misses, so model_get is one indexed row plus the decode of P floats.
 */
#include "store_internal.h"
#include "store_pg.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

void store_model_free(StoreModel *m) {
    if (!m) return;
    free(m->config);
    free(m->hyper);
    free(m->metrics);
    free(m->params);
    free(m->inner_lrs);
    memset(m, 0, sizeof *m);
}

static void model_row_free(void *m) {
    store_model_free(m);
}

/* ---- writes ---- */

MsStatus store_model_check(const StoreModel *m, MsError *err) {
    MsStatus st = store_name_check("name", m->name, 0, err);
    if (st != MS_OK) return st;
    size_t alen = strnlen(m->algorithm, sizeof m->algorithm);
    if (alen == 0 || alen == sizeof m->algorithm)
        return ms_fail(err, MS_ERR_INVALID, "algorithm: must be 1..%zu characters",
                       sizeof m->algorithm - 1);
    if (m->n_params == 0 || !m->params)
        return ms_fail(err, MS_ERR_INVALID, "params: a model needs at least one parameter");
    if (strnlen(m->job_id, STORE_ID_MAX) == STORE_ID_MAX)
        return ms_fail(err, MS_ERR_INVALID, "job_id: longer than %d characters", STORE_ID_MAX - 1);
    return MS_OK;
}

static const char SQL_NEXT_VERSION[] =
    "SELECT max(coalesce((SELECT max(version) FROM models WHERE name = ?1), 0),"
    "           coalesce((SELECT last_version FROM model_names WHERE name = ?1), 0)) + 1";
static const char SQL_MODEL_INSERT[] =
    "INSERT INTO models(name, version, created_at, config, algorithm, hyper, metrics, job_id,"
    " params, inner_lrs) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
static const char SQL_NAME_BUMP[] =
    "INSERT INTO model_names(name, last_version) VALUES (?1, ?2)"
    " ON CONFLICT(name) DO UPDATE SET last_version = excluded.last_version";

MsStatus store_model_insert(Store *s, StoreModel *m, const char *job_id, int *version,
                            MsError *err) {
    sqlite3_stmt *q = NULL;
    MsStatus st;
    if ((st = store_stmt(s, SQL_NEXT_VERSION, &q, err)) != MS_OK) goto done;
    int rc = sqlite3_bind_text(q, 1, m->name, -1, SQLITE_STATIC);
    if (rc == SQLITE_OK) rc = sqlite3_step(q);
    if (rc != SQLITE_ROW) {
        st = store_sqlite_fail(s, rc, "choosing a model version", err);
        goto done;
    }
    sqlite3_int64 next = sqlite3_column_int64(q, 0);
    store_stmt_done(q);
    q = NULL;
    if (next > INT_MAX) {
        st = ms_fail(err, MS_ERR_CONFLICT, "model %s has run out of version numbers", m->name);
        goto done;
    }
    int64_t now = store_now_ms();
    const char *jid = job_id ? job_id : m->job_id;
    if ((st = store_stmt(s, SQL_MODEL_INSERT, &q, err)) != MS_OK) goto done;
    rc = sqlite3_bind_text(q, 1, m->name, -1, SQLITE_STATIC);
    if (rc == SQLITE_OK) rc = sqlite3_bind_int64(q, 2, next);
    if (rc == SQLITE_OK) rc = sqlite3_bind_int64(q, 3, now);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_text(q, 4, m->config ? m->config : "{}", -1, SQLITE_STATIC);
    if (rc == SQLITE_OK) rc = sqlite3_bind_text(q, 5, m->algorithm, -1, SQLITE_STATIC);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_text(q, 6, m->hyper ? m->hyper : "{}", -1, SQLITE_STATIC);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_text(q, 7, m->metrics ? m->metrics : "{}", -1, SQLITE_STATIC);
    if (rc == SQLITE_OK) rc = sqlite3_bind_text(q, 8, jid, -1, SQLITE_STATIC);
    if (rc != SQLITE_OK) {
        st = store_sqlite_fail(s, rc, "writing a model", err);
        goto done;
    }
    st = store_bind_blob(s, q, 9, BLOB_F32, m->params, m->n_params, "writing model params", err);
    if (st == MS_OK && m->inner_lrs)
        st = store_bind_blob(s, q, 10, BLOB_F32, m->inner_lrs, m->n_params,
                             "writing model inner_lrs", err);
    if (st != MS_OK) goto done;
    if ((st = store_step_done(s, q, "writing a model", err)) != MS_OK) goto done;
    store_stmt_done(q);
    q = NULL;
    if ((st = store_stmt(s, SQL_NAME_BUMP, &q, err)) != MS_OK) goto done;
    rc = sqlite3_bind_text(q, 1, m->name, -1, SQLITE_STATIC);
    if (rc == SQLITE_OK) rc = sqlite3_bind_int64(q, 2, next);
    if (rc != SQLITE_OK) {
        st = store_sqlite_fail(s, rc, "recording a model version", err);
        goto done;
    }
    if ((st = store_step_done(s, q, "recording a model version", err)) != MS_OK) goto done;
    // jid may alias m->job_id: move it before updating the caller's struct.
    memmove(m->job_id, jid, strlen(jid) + 1);
    m->version = (int)next;
    m->created_at = now;
    if (version) *version = (int)next;
done:
    store_stmt_done(q);
    return st;
}

MsStatus store_model_put(Store *s, StoreModel *m, int *version, MsError *err) {
    MsStatus st = store_model_check(m, err);
    if (st != MS_OK) return st;
    if (s->pg) return pg_model_put(s, m, version, err);
    if ((st = store_tx_begin(s, err)) != MS_OK) return st;
    if ((st = store_model_insert(s, m, NULL, version, err)) != MS_OK) goto done;
    st = store_tx_commit(s, err);
done:
    if (st != MS_OK) store_tx_rollback(s);
    return st;
}

/* ---- references ---- */

static const char SQL_LATEST[] = "SELECT max(version) FROM models WHERE name = ?";
static const char SQL_HAS_VERSION[] = "SELECT 1 FROM models WHERE name = ? AND version = ?";
static const char SQL_ALIAS_GET[] =
    "SELECT version FROM model_aliases WHERE name = ? AND alias = ?";

// Runs q (bound already) expecting at most one integer row: *found = 0 when there is none or it
// is NULL.
static MsStatus one_int(Store *s, sqlite3_stmt *q, int64_t *v, int *found, const char *what,
                        MsError *err) {
    int rc = sqlite3_step(q);
    *found = 0;
    if (rc == SQLITE_ROW) {
        if (sqlite3_column_type(q, 0) != SQLITE_NULL) {
            *v = sqlite3_column_int64(q, 0);
            *found = 1;
        }
        return MS_OK;
    }
    if (rc == SQLITE_DONE) return MS_OK;
    return store_sqlite_fail(s, rc, what, err);
}

// Looks up name@version (version > 0), the latest version (version == 0, alias == NULL) or the
// alias; *found = 0 when absent.
static MsStatus lookup_version(Store *s, const char *name, int version, const char *alias, int *out,
                               int *found, MsError *err) {
    if (s->pg) return pg_lookup_version(s, name, version, alias, out, found, err);
    sqlite3_stmt *q = NULL;
    const char *sql = alias ? SQL_ALIAS_GET : version > 0 ? SQL_HAS_VERSION : SQL_LATEST;
    MsStatus st = store_stmt(s, sql, &q, err);
    if (st != MS_OK) return st;
    int rc = sqlite3_bind_text(q, 1, name, -1, SQLITE_STATIC);
    if (rc == SQLITE_OK && alias) rc = sqlite3_bind_text(q, 2, alias, -1, SQLITE_STATIC);
    if (rc == SQLITE_OK && !alias && version > 0) rc = sqlite3_bind_int(q, 2, version);
    int64_t v = version;
    if (rc != SQLITE_OK)
        st = store_sqlite_fail(s, rc, "resolving a model", err);
    else
        st = one_int(s, q, &v, found, "resolving a model", err);
    store_stmt_done(q);
    if (st == MS_OK && *found) *out = version > 0 && !alias ? version : (int)v;
    return st;
}

MsStatus store_model_resolve(Store *s, const char *ref, char name[STORE_NAME_MAX], int *version,
                             MsError *err) {
    if (!ref) return ms_fail(err, MS_ERR_INVALID, "ref: missing");
    const char *at = strchr(ref, '@');
    size_t nlen = at ? (size_t)(at - ref) : strlen(ref);
    if (nlen >= STORE_NAME_MAX)
        return ms_fail(err, MS_ERR_INVALID, "ref: model name longer than %d characters",
                       STORE_NAME_MAX - 1);
    char nm[STORE_NAME_MAX];
    memcpy(nm, ref, nlen);
    nm[nlen] = '\0';
    MsStatus st = store_name_check("ref", nm, 0, err);
    if (st != MS_OK) return st;

    int want = 0;             // an explicit version, or 0
    const char *alias = NULL; // an alias, or NULL
    if (at) {
        const char *suf = at + 1;
        size_t slen = strlen(suf);
        size_t ndig = strspn(suf, "0123456789");
        if (slen == 0) return ms_fail(err, MS_ERR_INVALID, "ref: nothing after '@'");
        if (ndig == slen) {
            long long v = ndig <= 10 ? strtoll(suf, NULL, 10) : 0;
            if (v < 1 || v > INT_MAX)
                return ms_fail(err, MS_ERR_INVALID, "ref: version must be 1..%d", INT_MAX);
            want = (int)v;
        } else {
            if ((st = store_name_check("ref", suf, 1, err)) != MS_OK) return st;
            alias = suf;
        }
    }
    int v = 0, found = 0;
    if ((st = lookup_version(s, nm, want, alias, &v, &found, err)) != MS_OK) return st;
    if (!found) {
        if (alias) return ms_fail(err, MS_ERR_NOT_FOUND, "model %s has no alias %s", nm, alias);
        if (want) return ms_fail(err, MS_ERR_NOT_FOUND, "model %s has no version %d", nm, want);
        return ms_fail(err, MS_ERR_NOT_FOUND, "model %s not found", nm);
    }
    memcpy(name, nm, strlen(nm) + 1);
    *version = v;
    return MS_OK;
}

/* ---- reads ---- */

// Columns 0..7 are shared by SQL_MODEL_GET and SQL_MODEL_VERSIONS; column 8 and 9 differ.
static const char SQL_MODEL_GET[] =
    "SELECT name, version, created_at, config, algorithm, hyper, metrics, job_id,"
    " params, inner_lrs FROM models WHERE name = ? AND version = ?";
static const char SQL_MODEL_VERSIONS[] =
    "SELECT name, version, created_at, config, algorithm, hyper, metrics, job_id,"
    " length(params) FROM models WHERE name = ? ORDER BY version";

static MsStatus model_row(sqlite3_stmt *q, StoreModel *m, MsError *err) {
    store_col_copy(m->name, sizeof m->name, q, 0);
    m->version = sqlite3_column_int(q, 1);
    m->created_at = sqlite3_column_int64(q, 2);
    m->config = store_col_strdup(q, 3, "{}");
    store_col_copy(m->algorithm, sizeof m->algorithm, q, 4);
    m->hyper = store_col_strdup(q, 5, "{}");
    m->metrics = store_col_strdup(q, 6, "{}");
    store_col_copy(m->job_id, sizeof m->job_id, q, 7);
    if (!m->config || !m->hyper || !m->metrics)
        return ms_fail(err, MS_ERR_NOMEM, "out of memory reading model %s", m->name);
    return MS_OK;
}

MsStatus store_model_get(Store *s, const char *name, int version, StoreModel *out, MsError *err) {
    memset(out, 0, sizeof *out);
    MsStatus st = store_name_check("name", name, 0, err);
    if (st != MS_OK) return st;
    if (s->pg) return pg_model_get(s, name, version, out, err);
    sqlite3_stmt *q = NULL;
    if ((st = store_stmt(s, SQL_MODEL_GET, &q, err)) != MS_OK) goto done;
    int rc = sqlite3_bind_text(q, 1, name, -1, SQLITE_STATIC);
    if (rc == SQLITE_OK) rc = sqlite3_bind_int(q, 2, version);
    if (rc == SQLITE_OK) rc = sqlite3_step(q);
    if (rc == SQLITE_DONE) {
        st = ms_fail(err, MS_ERR_NOT_FOUND, "model %s has no version %d", name, version);
        goto done;
    }
    if (rc != SQLITE_ROW) {
        st = store_sqlite_fail(s, rc, "reading a model", err);
        goto done;
    }
    if ((st = model_row(q, out, err)) != MS_OK) goto done;
    char what[STORE_NAME_MAX + 48];
    snprintf(what, sizeof what, "model %s@%d params", name, version);
    st = store_col_blob(q, 8, BLOB_F32, (void **)&out->params, &out->n_params, what, err);
    if (st != MS_OK) goto done;
    if (out->n_params == 0) {
        st = ms_fail_detail(err, MS_ERR_DB, MS_DETAIL_CORRUPT, "%s: corrupt: no parameters", what);
        goto done;
    }
    if (sqlite3_column_type(q, 9) != SQLITE_NULL) {
        size_t n_lrs;
        snprintf(what, sizeof what, "model %s@%d inner_lrs", name, version);
        st = store_col_blob(q, 9, BLOB_F32, (void **)&out->inner_lrs, &n_lrs, what, err);
        if (st == MS_OK && n_lrs != out->n_params)
            st = ms_fail_detail(err, MS_ERR_DB, MS_DETAIL_CORRUPT,
                                "%s: corrupt: %zu rates for %zu parameters", what, n_lrs,
                                out->n_params);
    }
done:
    store_stmt_done(q);
    if (st != MS_OK) store_model_free(out);
    return st;
}

MsStatus store_model_versions(Store *s, const char *name, StoreModel **rows, int *n, MsError *err) {
    *rows = NULL;
    *n = 0;
    MsStatus st = store_name_check("name", name, 0, err);
    if (st != MS_OK) return st;
    if (s->pg) return pg_model_versions(s, name, rows, n, err);
    sqlite3_stmt *q = NULL;
    StoreModel *r = NULL;
    int cnt = 0, cap = 0, rc;
    if ((st = store_stmt(s, SQL_MODEL_VERSIONS, &q, err)) != MS_OK) goto done;
    if ((rc = sqlite3_bind_text(q, 1, name, -1, SQLITE_STATIC)) != SQLITE_OK) {
        st = store_sqlite_fail(s, rc, "listing model versions", err);
        goto done;
    }
    while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        if ((st = store_grow((void **)&r, &cap, cnt, sizeof *r, 8, "listing model versions",
                             err)) != MS_OK)
            goto done;
        memset(&r[cnt], 0, sizeof r[cnt]);
        cnt++;
        if ((st = model_row(q, &r[cnt - 1], err)) != MS_OK) goto done;
        sqlite3_int64 len = sqlite3_column_int64(q, 8);
        r[cnt - 1].n_params = len > BLOB_HEADER_SIZE ? (size_t)(len - BLOB_HEADER_SIZE) / 4 : 0;
    }
    if (rc != SQLITE_DONE) {
        st = store_sqlite_fail(s, rc, "listing model versions", err);
        goto done;
    }
    if (cnt == 0) st = ms_fail(err, MS_ERR_NOT_FOUND, "model %s not found", name);
done:
    store_stmt_done(q);
    return store_list_end(st, r, cnt, sizeof *r, model_row_free, rows, n, NULL);
}

// One row per name with its latest version and the number of versions, names after ?1 in order.
static const char SQL_MODEL_LIST[] =
    "SELECT m.name, m.version, c.n, m.created_at, m.algorithm FROM models m"
    " JOIN (SELECT name, max(version) AS v, count(*) AS n FROM models WHERE name > ?1"
    "       GROUP BY name ORDER BY name LIMIT ?2) c ON m.name = c.name AND m.version = c.v"
    " ORDER BY m.name";

MsStatus store_model_list(Store *s, const char *after, int limit, StoreModelSummary **rows, int *n,
                          int *more, MsError *err) {
    *rows = NULL;
    *n = 0;
    *more = 0;
    if (limit < 1) return ms_fail(err, MS_ERR_INVALID, "limit: must be at least 1");
    if (s->pg) return pg_model_list(s, after, limit, rows, n, more, err);
    sqlite3_stmt *q = NULL;
    StoreModelSummary *r = NULL;
    int cnt = 0, cap = 0, rc;
    MsStatus st = store_stmt(s, SQL_MODEL_LIST, &q, err);
    if (st != MS_OK) goto done;
    rc = sqlite3_bind_text(q, 1, after ? after : "", -1, SQLITE_STATIC);
    if (rc == SQLITE_OK) rc = sqlite3_bind_int64(q, 2, (sqlite3_int64)limit + 1);
    if (rc != SQLITE_OK) {
        st = store_sqlite_fail(s, rc, "listing models", err);
        goto done;
    }
    while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        if (cnt == limit) {
            *more = 1;
            break;
        }
        if ((st = store_grow((void **)&r, &cap, cnt, sizeof *r, 16, "listing models", err)) !=
            MS_OK)
            goto done;
        StoreModelSummary *m = &r[cnt++];
        memset(m, 0, sizeof *m);
        store_col_copy(m->name, sizeof m->name, q, 0);
        m->latest_version = sqlite3_column_int(q, 1);
        m->n_versions = sqlite3_column_int(q, 2);
        m->created_at = sqlite3_column_int64(q, 3);
        store_col_copy(m->algorithm, sizeof m->algorithm, q, 4);
    }
    if (rc != SQLITE_DONE && rc != SQLITE_ROW) st = store_sqlite_fail(s, rc, "listing models", err);
done:
    store_stmt_done(q);
    return store_list_end(st, r, cnt, sizeof *r, NULL, rows, n, more);
}

/* ---- deletes and aliases ---- */

static const char SQL_DELETE_VERSION[] = "DELETE FROM models WHERE name = ? AND version = ?";
static const char SQL_DELETE_MODEL[] = "DELETE FROM models WHERE name = ?";

MsStatus store_model_delete(Store *s, const char *name, int version, MsError *err) {
    MsStatus st = store_name_check("name", name, 0, err);
    if (st != MS_OK) return st;
    if (version < 0) return ms_fail(err, MS_ERR_INVALID, "version: must be >= 0");
    if (s->pg) return pg_model_delete(s, name, version, err);
    sqlite3_stmt *q = NULL;
    if ((st = store_tx_begin(s, err)) != MS_OK) return st;
    if ((st = store_stmt(s, version > 0 ? SQL_DELETE_VERSION : SQL_DELETE_MODEL, &q, err)) != MS_OK)
        goto done;
    int rc = sqlite3_bind_text(q, 1, name, -1, SQLITE_STATIC);
    if (rc == SQLITE_OK && version > 0) rc = sqlite3_bind_int(q, 2, version);
    if (rc != SQLITE_OK) {
        st = store_sqlite_fail(s, rc, "deleting a model", err);
        goto done;
    }
    // Aliases and adaptations of the deleted rows go with them (ON DELETE CASCADE).
    if ((st = store_step_done(s, q, "deleting a model", err)) != MS_OK) goto done;
    if (sqlite3_changes(s->db) == 0) {
        st = version > 0
                 ? ms_fail(err, MS_ERR_NOT_FOUND, "model %s has no version %d", name, version)
                 : ms_fail(err, MS_ERR_NOT_FOUND, "model %s not found", name);
        goto done;
    }
    store_stmt_done(q);
    q = NULL;
    st = store_tx_commit(s, err);
done:
    store_stmt_done(q);
    if (st != MS_OK) store_tx_rollback(s);
    return st;
}

static const char SQL_ALIAS_SET[] =
    "INSERT INTO model_aliases(name, alias, version) VALUES (?, ?, ?)"
    " ON CONFLICT(name, alias) DO UPDATE SET version = excluded.version";
static const char SQL_ALIAS_DELETE[] = "DELETE FROM model_aliases WHERE name = ? AND alias = ?";

MsStatus store_alias_set(Store *s, const char *name, const char *alias, int version, MsError *err) {
    MsStatus st = store_name_check("name", name, 0, err);
    if (st == MS_OK) st = store_name_check("alias", alias, 1, err);
    if (st != MS_OK) return st;
    if (version < 1) return ms_fail(err, MS_ERR_INVALID, "version: must be >= 1");
    if (s->pg) return pg_alias_set(s, name, alias, version, err);
    sqlite3_stmt *q = NULL;
    int v, found;
    if ((st = store_tx_begin(s, err)) != MS_OK) return st;
    if ((st = lookup_version(s, name, version, NULL, &v, &found, err)) != MS_OK) goto done;
    if (!found) {
        st = ms_fail(err, MS_ERR_NOT_FOUND, "model %s has no version %d", name, version);
        goto done;
    }
    if ((st = store_stmt(s, SQL_ALIAS_SET, &q, err)) != MS_OK) goto done;
    int rc = sqlite3_bind_text(q, 1, name, -1, SQLITE_STATIC);
    if (rc == SQLITE_OK) rc = sqlite3_bind_text(q, 2, alias, -1, SQLITE_STATIC);
    if (rc == SQLITE_OK) rc = sqlite3_bind_int(q, 3, version);
    if (rc != SQLITE_OK) {
        st = store_sqlite_fail(s, rc, "setting an alias", err);
        goto done;
    }
    if ((st = store_step_done(s, q, "setting an alias", err)) != MS_OK) goto done;
    store_stmt_done(q);
    q = NULL;
    st = store_tx_commit(s, err);
done:
    store_stmt_done(q);
    if (st != MS_OK) store_tx_rollback(s);
    return st;
}

MsStatus store_alias_delete(Store *s, const char *name, const char *alias, MsError *err) {
    MsStatus st = store_name_check("name", name, 0, err);
    if (st == MS_OK) st = store_name_check("alias", alias, 1, err);
    if (st != MS_OK) return st;
    if (s->pg) return pg_alias_delete(s, name, alias, err);
    sqlite3_stmt *q = NULL;
    if ((st = store_tx_begin(s, err)) != MS_OK) return st;
    if ((st = store_stmt(s, SQL_ALIAS_DELETE, &q, err)) != MS_OK) goto done;
    int rc = sqlite3_bind_text(q, 1, name, -1, SQLITE_STATIC);
    if (rc == SQLITE_OK) rc = sqlite3_bind_text(q, 2, alias, -1, SQLITE_STATIC);
    if (rc != SQLITE_OK) {
        st = store_sqlite_fail(s, rc, "deleting an alias", err);
        goto done;
    }
    if ((st = store_step_done(s, q, "deleting an alias", err)) != MS_OK) goto done;
    if (sqlite3_changes(s->db) == 0) {
        st = ms_fail(err, MS_ERR_NOT_FOUND, "model %s has no alias %s", name, alias);
        goto done;
    }
    store_stmt_done(q);
    q = NULL;
    st = store_tx_commit(s, err);
done:
    store_stmt_done(q);
    if (st != MS_OK) store_tx_rollback(s);
    return st;
}

static const char SQL_ALIAS_LIST[] =
    "SELECT alias, version FROM model_aliases WHERE name = ? ORDER BY alias";

MsStatus store_alias_list(Store *s, const char *name, StoreAlias **rows, int *n, MsError *err) {
    *rows = NULL;
    *n = 0;
    MsStatus st = store_name_check("name", name, 0, err);
    if (st != MS_OK) return st;
    if (s->pg) return pg_alias_list(s, name, rows, n, err);
    sqlite3_stmt *q = NULL;
    StoreAlias *r = NULL;
    int cnt = 0, cap = 0, rc;
    if ((st = store_stmt(s, SQL_ALIAS_LIST, &q, err)) != MS_OK) goto done;
    if ((rc = sqlite3_bind_text(q, 1, name, -1, SQLITE_STATIC)) != SQLITE_OK) {
        st = store_sqlite_fail(s, rc, "listing aliases", err);
        goto done;
    }
    while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        if ((st = store_grow((void **)&r, &cap, cnt, sizeof *r, 8, "listing aliases", err)) !=
            MS_OK)
            goto done;
        const unsigned char *a = sqlite3_column_text(q, 0);
        snprintf(r[cnt].alias, sizeof r[cnt].alias, "%s", a ? (const char *)a : "");
        r[cnt].version = sqlite3_column_int(q, 1);
        cnt++;
    }
    if (rc != SQLITE_DONE) st = store_sqlite_fail(s, rc, "listing aliases", err);
done:
    store_stmt_done(q);
    return store_list_end(st, r, cnt, sizeof *r, NULL, rows, n, NULL);
}
