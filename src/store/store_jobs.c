/*
 * SQLite backend of store.h, part 3: meta-training jobs as a durable queue. Owns the job rows
 * and their state machine, the atomic claim, progress and metric points (job_metrics), the
 * checkpoint blob, the final transition (which may write the result model through
 * store_model_insert, store_models.c, in the same transaction), cancellation and requeueing.
 *
 * States: queued -> running (claim) -> succeeded | failed | cancelled (finish); queued ->
 * cancelled (cancel); running -> queued (requeue, checkpoint kept). A running job asked to cancel
 * (cancel_requested = 1) that is requeued becomes cancelled instead, since its worker was told
 * to stop. Every transition reads and writes the row inside one BEGIN IMMEDIATE transaction, so
 * two connections (threads or processes) can never both claim or both finish a job.
 *
 * Queue order: oldest created_at first, ties by insertion order (rowid); a requeued job keeps
 * its created_at and so is resumed before newer work. The claim walks index jobs_state_created.
 *
 * Workload: tens of queued jobs, a progress write every N meta-iterations and a checkpoint every
 * few hundred; checkpoints are 3P floats plus RNG state (params and Adam moments).
 */
#include "store_internal.h"
#include "store_pg.h"

#include <stdlib.h>
#include <string.h>

static const char *const STATE_NAMES[5] = {"queued", "running", "succeeded", "failed", "cancelled"};

const char *store_job_state_name(JobState s) {
    if ((int)s < 0 || (int)s > JOB_CANCELLED) return "unknown";
    return STATE_NAMES[s];
}

static int state_parse(const char *t, JobState *out) {
    for (int i = 0; i < 5; i++)
        if (t && strcmp(t, STATE_NAMES[i]) == 0) {
            *out = (JobState)i;
            return 1;
        }
    return 0;
}

void store_job_free(StoreJob *j) {
    if (!j) return;
    free(j->config);
    free(j->metrics);
    memset(j, 0, sizeof *j);
}

static void job_row_free(void *j) {
    store_job_free(j);
}

/* ---- rows ---- */

// Columns 0..12 for listings; 13 and 14 (config, metrics) only for single reads.
#define JOB_COLS                                                                                   \
    "id, state, name, created_at, started_at, finished_at, iteration, total, cancel_requested,"    \
    " error, result_model, result_version, checkpoint IS NOT NULL, config, metrics"

static const char SQL_JOB_GET[] = "SELECT " JOB_COLS " FROM jobs WHERE id = ?";
static const char SQL_JOB_STATE[] = "SELECT state, cancel_requested FROM jobs WHERE id = ?";

// with_config: 1 also copies the config text (a single read); listings copy the metrics only.
static MsStatus job_row(sqlite3_stmt *q, StoreJob *j, int with_config, MsError *err) {
    store_col_copy(j->id, sizeof j->id, q, 0);
    if (!state_parse((const char *)sqlite3_column_text(q, 1), &j->state))
        return ms_fail_detail(err, MS_ERR_DB, MS_DETAIL_CORRUPT, "job %s: corrupt: unknown state",
                              j->id);
    store_col_copy(j->name, sizeof j->name, q, 2);
    j->created_at = sqlite3_column_int64(q, 3);
    j->started_at = sqlite3_column_int64(q, 4);
    j->finished_at = sqlite3_column_int64(q, 5);
    j->iteration = sqlite3_column_int64(q, 6);
    j->total = sqlite3_column_int64(q, 7);
    j->cancel_requested = sqlite3_column_int(q, 8);
    store_col_copy(j->error, sizeof j->error, q, 9);
    store_col_copy(j->result_model, sizeof j->result_model, q, 10);
    j->result_version = sqlite3_column_int(q, 11);
    j->has_checkpoint = sqlite3_column_int(q, 12);
    if (with_config && !(j->config = store_col_strdup(q, 13, "{}")))
        return ms_fail(err, MS_ERR_NOMEM, "out of memory reading job %s", j->id);
    if (!(j->metrics = store_col_strdup(q, 14, "{}")))
        return ms_fail(err, MS_ERR_NOMEM, "out of memory reading job %s", j->id);
    return MS_OK;
}

// Reads one job (inside or outside a transaction). NOT_FOUND when absent.
static MsStatus job_read(Store *s, const char *id, StoreJob *out, MsError *err) {
    memset(out, 0, sizeof *out);
    sqlite3_stmt *q = NULL;
    MsStatus st = store_stmt(s, SQL_JOB_GET, &q, err);
    if (st != MS_OK) return st;
    int rc = sqlite3_bind_text(q, 1, id, -1, SQLITE_STATIC);
    if (rc == SQLITE_OK) rc = sqlite3_step(q);
    if (rc == SQLITE_ROW)
        st = job_row(q, out, 1, err);
    else if (rc == SQLITE_DONE)
        st = ms_fail(err, MS_ERR_NOT_FOUND, "job %s not found", id);
    else
        st = store_sqlite_fail(s, rc, "reading a job", err);
    store_stmt_done(q);
    if (st != MS_OK) store_job_free(out);
    return st;
}

// The state of a job and whether cancel was asked; NOT_FOUND when absent.
static MsStatus job_state(Store *s, const char *id, JobState *state, int *cancel, MsError *err) {
    sqlite3_stmt *q = NULL;
    MsStatus st = store_stmt(s, SQL_JOB_STATE, &q, err);
    if (st != MS_OK) return st;
    int rc = sqlite3_bind_text(q, 1, id, -1, SQLITE_STATIC);
    if (rc == SQLITE_OK) rc = sqlite3_step(q);
    if (rc == SQLITE_ROW) {
        if (!state_parse((const char *)sqlite3_column_text(q, 0), state))
            st = ms_fail_detail(err, MS_ERR_DB, MS_DETAIL_CORRUPT, "job %s: corrupt: unknown state",
                                id);
        if (cancel) *cancel = sqlite3_column_int(q, 1);
    } else if (rc == SQLITE_DONE) {
        st = ms_fail(err, MS_ERR_NOT_FOUND, "job %s not found", id);
    } else {
        st = store_sqlite_fail(s, rc, "reading a job", err);
    }
    store_stmt_done(q);
    return st;
}

// After an update guarded by "state = 'running'" changed nothing: why.
static MsStatus not_running(Store *s, const char *id, MsError *err) {
    JobState js = JOB_QUEUED;
    MsStatus st = job_state(s, id, &js, NULL, err);
    if (st != MS_OK) return st;
    return ms_fail(err, MS_ERR_CONFLICT, "job %s is %s, not running", id, store_job_state_name(js));
}

/* ---- create, read, list ---- */

static const char SQL_COUNT_QUEUED[] = "SELECT count(*) FROM jobs WHERE state = 'queued'";
static const char SQL_JOB_INSERT[] =
    "INSERT INTO jobs(id, state, config, name, created_at, total) VALUES (?, 'queued', ?, ?, ?, ?)";

MsStatus store_job_create(Store *s, const char *config_json, const char *model_name, int64_t total,
                          int max_queued, char id_out[STORE_ID_MAX], MsError *err) {
    if (!config_json) return ms_fail(err, MS_ERR_INVALID, "config: missing");
    MsStatus st = store_name_check("name", model_name, 0, err);
    if (st != MS_OK) return st;
    if (total < 0) return ms_fail(err, MS_ERR_INVALID, "total: must be >= 0");
    if (s->pg) return pg_job_create(s, config_json, model_name, total, max_queued, id_out, err);
    char id[STORE_ID_MAX];
    if ((st = store_id_new(id, err)) != MS_OK) return st;
    sqlite3_stmt *q = NULL;
    int rc;
    if ((st = store_tx_begin(s, err)) != MS_OK) return st;
    if (max_queued > 0) {
        if ((st = store_stmt(s, SQL_COUNT_QUEUED, &q, err)) != MS_OK) goto done;
        if ((rc = sqlite3_step(q)) != SQLITE_ROW) {
            st = store_sqlite_fail(s, rc, "counting queued jobs", err);
            goto done;
        }
        sqlite3_int64 queued = sqlite3_column_int64(q, 0);
        if (queued >= max_queued) {
            st = ms_fail_detail(err, MS_ERR_BUSY, MS_DETAIL_QUEUE_FULL,
                                "job queue full: %lld jobs queued (limit %d)", (long long)queued,
                                max_queued);
            goto done;
        }
        store_stmt_done(q);
        q = NULL;
    }
    if ((st = store_stmt(s, SQL_JOB_INSERT, &q, err)) != MS_OK) goto done;
    rc = sqlite3_bind_text(q, 1, id, -1, SQLITE_STATIC);
    if (rc == SQLITE_OK) rc = sqlite3_bind_text(q, 2, config_json, -1, SQLITE_STATIC);
    if (rc == SQLITE_OK) rc = sqlite3_bind_text(q, 3, model_name, -1, SQLITE_STATIC);
    if (rc == SQLITE_OK) rc = sqlite3_bind_int64(q, 4, store_now_ms());
    if (rc == SQLITE_OK) rc = sqlite3_bind_int64(q, 5, total);
    if (rc != SQLITE_OK) {
        st = store_sqlite_fail(s, rc, "creating a job", err);
        goto done;
    }
    if ((st = store_step_done(s, q, "creating a job", err)) != MS_OK) goto done;
    store_stmt_done(q);
    q = NULL;
    if ((st = store_tx_commit(s, err)) != MS_OK) goto done;
    memcpy(id_out, id, sizeof id);
done:
    store_stmt_done(q);
    if (st != MS_OK) store_tx_rollback(s);
    return st;
}

MsStatus store_job_get(Store *s, const char *id, StoreJob *out, MsError *err) {
    memset(out, 0, sizeof *out);
    MsStatus st = store_id_check("job", id, err);
    if (st != MS_OK) return st;
    if (s->pg) return pg_job_get(s, id, out, err);
    return job_read(s, id, out, err);
}

static const char SQL_JOB_CURSOR[] = "SELECT created_at, rowid FROM jobs WHERE id = ?";
static const char SQL_JOB_LIST_FIRST[] =
    "SELECT " JOB_COLS " FROM jobs ORDER BY created_at DESC, rowid DESC LIMIT ?1";
static const char SQL_JOB_LIST_AFTER[] =
    "SELECT " JOB_COLS " FROM jobs WHERE created_at < ?2 OR (created_at = ?2 AND rowid < ?3)"
    " ORDER BY created_at DESC, rowid DESC LIMIT ?1";

MsStatus store_job_list(Store *s, const char *after, int limit, StoreJob **rows, int *n, int *more,
                        MsError *err) {
    *rows = NULL;
    *n = 0;
    *more = 0;
    if (limit < 1) return ms_fail(err, MS_ERR_INVALID, "limit: must be at least 1");
    int from_start = !after || !after[0];
    if (!from_start && !store_id_valid(after))
        return ms_fail(err, MS_ERR_INVALID, "after: not a job id");
    if (s->pg) return pg_job_list(s, after, limit, rows, n, more, err);
    sqlite3_stmt *q = NULL;
    StoreJob *r = NULL;
    int cnt = 0, cap = 0, rc;
    MsStatus st = MS_OK;
    sqlite3_int64 c_at = 0, c_row = 0;
    if (!from_start) {
        if ((st = store_stmt(s, SQL_JOB_CURSOR, &q, err)) != MS_OK) goto done;
        rc = sqlite3_bind_text(q, 1, after, -1, SQLITE_STATIC);
        if (rc == SQLITE_OK) rc = sqlite3_step(q);
        if (rc == SQLITE_DONE) {
            st = ms_fail(err, MS_ERR_INVALID, "after: no job %s", after);
            goto done;
        }
        if (rc != SQLITE_ROW) {
            st = store_sqlite_fail(s, rc, "listing jobs", err);
            goto done;
        }
        c_at = sqlite3_column_int64(q, 0);
        c_row = sqlite3_column_int64(q, 1);
        store_stmt_done(q);
        q = NULL;
    }
    if ((st = store_stmt(s, from_start ? SQL_JOB_LIST_FIRST : SQL_JOB_LIST_AFTER, &q, err)) !=
        MS_OK)
        goto done;
    rc = sqlite3_bind_int64(q, 1, (sqlite3_int64)limit + 1);
    if (rc == SQLITE_OK && !from_start) rc = sqlite3_bind_int64(q, 2, c_at);
    if (rc == SQLITE_OK && !from_start) rc = sqlite3_bind_int64(q, 3, c_row);
    if (rc != SQLITE_OK) {
        st = store_sqlite_fail(s, rc, "listing jobs", err);
        goto done;
    }
    while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        if (cnt == limit) {
            *more = 1;
            break;
        }
        if ((st = store_grow((void **)&r, &cap, cnt, sizeof *r, 16, "listing jobs", err)) != MS_OK)
            goto done;
        memset(&r[cnt], 0, sizeof r[cnt]);
        if ((st = job_row(q, &r[cnt++], 0, err)) != MS_OK) goto done;
    }
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) st = store_sqlite_fail(s, rc, "listing jobs", err);
done:
    store_stmt_done(q);
    return store_list_end(st, r, cnt, sizeof *r, job_row_free, rows, n, more);
}

static const char SQL_JOB_COUNTS[] = "SELECT state, count(*) FROM jobs GROUP BY state";

MsStatus store_job_counts(Store *s, int64_t counts[5], MsError *err) {
    for (int i = 0; i < 5; i++)
        counts[i] = 0;
    if (s->pg) return pg_job_counts(s, counts, err);
    sqlite3_stmt *q = NULL;
    MsStatus st = store_stmt(s, SQL_JOB_COUNTS, &q, err);
    if (st != MS_OK) return st;
    int rc;
    while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        JobState js = JOB_QUEUED;
        if (state_parse((const char *)sqlite3_column_text(q, 0), &js))
            counts[js] = sqlite3_column_int64(q, 1);
    }
    if (rc != SQLITE_DONE) st = store_sqlite_fail(s, rc, "counting jobs", err);
    store_stmt_done(q);
    return st;
}

/* ---- the worker's side: claim, progress, checkpoint ---- */

static const char SQL_OLDEST_QUEUED[] =
    "SELECT id FROM jobs WHERE state = 'queued' ORDER BY created_at, rowid LIMIT 1";
static const char SQL_START[] =
    "UPDATE jobs SET state = 'running',"
    " started_at = CASE WHEN started_at = 0 THEN ?1 ELSE started_at END WHERE id = ?2";

MsStatus store_job_claim(Store *s, StoreJob *out, int *claimed, MsError *err) {
    memset(out, 0, sizeof *out);
    *claimed = 0;
    if (s->pg) return pg_job_claim(s, out, claimed, err);
    sqlite3_stmt *q = NULL;
    char id[STORE_ID_MAX];
    int rc;
    // The write lock is taken before the select, so no other connection can pick the same row
    // between our read and our update.
    MsStatus st = store_tx_begin(s, err);
    if (st != MS_OK) return st;
    if ((st = store_stmt(s, SQL_OLDEST_QUEUED, &q, err)) != MS_OK) goto done;
    rc = sqlite3_step(q);
    if (rc == SQLITE_DONE) {
        store_stmt_done(q);
        q = NULL;
        st = store_tx_commit(s, err);
        goto done;
    }
    if (rc != SQLITE_ROW) {
        st = store_sqlite_fail(s, rc, "claiming a job", err);
        goto done;
    }
    store_col_copy(id, sizeof id, q, 0);
    store_stmt_done(q);
    q = NULL;
    if ((st = store_stmt(s, SQL_START, &q, err)) != MS_OK) goto done;
    rc = sqlite3_bind_int64(q, 1, store_now_ms());
    if (rc == SQLITE_OK) rc = sqlite3_bind_text(q, 2, id, -1, SQLITE_STATIC);
    if (rc != SQLITE_OK) {
        st = store_sqlite_fail(s, rc, "claiming a job", err);
        goto done;
    }
    if ((st = store_step_done(s, q, "claiming a job", err)) != MS_OK) goto done;
    store_stmt_done(q);
    q = NULL;
    if ((st = job_read(s, id, out, err)) != MS_OK) goto done;
    if ((st = store_tx_commit(s, err)) != MS_OK) goto done;
    *claimed = 1;
done:
    store_stmt_done(q);
    if (st != MS_OK) {
        store_tx_rollback(s);
        store_job_free(out);
    }
    return st;
}

static const char SQL_PROGRESS[] = "UPDATE jobs SET iteration = ?1, metrics = coalesce(?2, metrics)"
                                   " WHERE id = ?3 AND state = 'running'";
static const char SQL_METRIC_PUT[] =
    "INSERT OR REPLACE INTO job_metrics(job_id, step, key, value, ts) VALUES (?, ?, ?, ?, ?)";

// Writes the metric points (a resumed job re-reports steps after its checkpoint: replace them).
static MsStatus metrics_put(Store *s, const char *id, const StoreMetric *pts, int n, MsError *err) {
    sqlite3_stmt *q = NULL;
    MsStatus st = store_stmt(s, SQL_METRIC_PUT, &q, err);
    int64_t now = store_now_ms();
    for (int i = 0; st == MS_OK && i < n; i++) {
        int rc = sqlite3_bind_text(q, 1, id, -1, SQLITE_STATIC);
        if (rc == SQLITE_OK) rc = sqlite3_bind_int64(q, 2, pts[i].step);
        if (rc == SQLITE_OK) rc = sqlite3_bind_text(q, 3, pts[i].key, -1, SQLITE_STATIC);
        if (rc == SQLITE_OK) rc = sqlite3_bind_double(q, 4, pts[i].value);
        if (rc == SQLITE_OK) rc = sqlite3_bind_int64(q, 5, now);
        if (rc != SQLITE_OK)
            st = store_sqlite_fail(s, rc, "recording metrics", err);
        else
            st = store_step_done(s, q, "recording metrics", err);
        store_stmt_done(q);
    }
    return st;
}

MsStatus store_job_progress(Store *s, const char *id, int64_t iteration, const char *metrics_json,
                            const StoreMetric *pts, int n, MsError *err) {
    MsStatus st = store_id_check("job", id, err);
    if (st != MS_OK) return st;
    if (n < 0 || (n > 0 && !pts)) return ms_fail(err, MS_ERR_INVALID, "pts: %d points", n);
    const size_t key_cap = sizeof((StoreMetricRow){0}).key; // keys must fit a listing row
    for (int i = 0; i < n; i++) {
        size_t klen = pts[i].key ? strnlen(pts[i].key, key_cap) : 0;
        if (klen == 0 || klen >= key_cap)
            return ms_fail(err, MS_ERR_INVALID, "pts[%d].key: must be 1..%zu characters", i,
                           key_cap - 1);
    }
    if (s->pg) return pg_job_progress(s, id, iteration, metrics_json, pts, n, err);
    sqlite3_stmt *q = NULL;
    if ((st = store_tx_begin(s, err)) != MS_OK) return st;
    if ((st = store_stmt(s, SQL_PROGRESS, &q, err)) != MS_OK) goto done;
    int rc = sqlite3_bind_int64(q, 1, iteration);
    if (rc == SQLITE_OK && metrics_json)
        rc = sqlite3_bind_text(q, 2, metrics_json, -1, SQLITE_STATIC);
    if (rc == SQLITE_OK) rc = sqlite3_bind_text(q, 3, id, -1, SQLITE_STATIC);
    if (rc != SQLITE_OK) {
        st = store_sqlite_fail(s, rc, "recording progress", err);
        goto done;
    }
    if ((st = store_step_done(s, q, "recording progress", err)) != MS_OK) goto done;
    store_stmt_done(q);
    q = NULL;
    if (sqlite3_changes(s->db) == 0) {
        st = not_running(s, id, err);
        goto done;
    }
    if ((st = metrics_put(s, id, pts, n, err)) != MS_OK) goto done;
    st = store_tx_commit_lazy(s, err); // re-derived by a resumed job: no fsync wait
done:
    store_stmt_done(q);
    if (st != MS_OK) store_tx_rollback(s);
    return st;
}

static const char SQL_CHECKPOINT_PUT[] =
    "UPDATE jobs SET checkpoint = ?1, iteration = ?2 WHERE id = ?3 AND state = 'running'";
static const char SQL_CHECKPOINT_GET[] = "SELECT checkpoint FROM jobs WHERE id = ?";

MsStatus store_job_checkpoint(Store *s, const char *id, int64_t iteration, const void *data,
                              size_t n, MsError *err) {
    MsStatus st = store_id_check("job", id, err);
    if (st != MS_OK) return st;
    if (n > 0 && !data) return ms_fail(err, MS_ERR_INVALID, "data: missing");
    if (s->pg) return pg_job_checkpoint(s, id, iteration, data, n, err);
    sqlite3_stmt *q = NULL;
    if ((st = store_tx_begin(s, err)) != MS_OK) return st;
    if ((st = store_stmt(s, SQL_CHECKPOINT_PUT, &q, err)) != MS_OK) goto done;
    st = store_bind_blob(s, q, 1, BLOB_BYTES, data, n, "writing a checkpoint", err);
    if (st != MS_OK) goto done;
    int rc = sqlite3_bind_int64(q, 2, iteration);
    if (rc == SQLITE_OK) rc = sqlite3_bind_text(q, 3, id, -1, SQLITE_STATIC);
    if (rc != SQLITE_OK) {
        st = store_sqlite_fail(s, rc, "writing a checkpoint", err);
        goto done;
    }
    if ((st = store_step_done(s, q, "writing a checkpoint", err)) != MS_OK) goto done;
    store_stmt_done(q);
    q = NULL;
    if (sqlite3_changes(s->db) == 0) {
        st = not_running(s, id, err);
        goto done;
    }
    st = store_tx_commit_lazy(s, err); // an earlier checkpoint re-derives it: no fsync wait
done:
    store_stmt_done(q);
    if (st != MS_OK) store_tx_rollback(s);
    return st;
}

MsStatus store_job_checkpoint_get(Store *s, const char *id, void **data, size_t *n, MsError *err) {
    *data = NULL;
    *n = 0;
    MsStatus st = store_id_check("job", id, err);
    if (st != MS_OK) return st;
    if (s->pg) return pg_job_checkpoint_get(s, id, data, n, err);
    sqlite3_stmt *q = NULL;
    if ((st = store_stmt(s, SQL_CHECKPOINT_GET, &q, err)) != MS_OK) return st;
    int rc = sqlite3_bind_text(q, 1, id, -1, SQLITE_STATIC);
    if (rc == SQLITE_OK) rc = sqlite3_step(q);
    if (rc == SQLITE_DONE) {
        st = ms_fail(err, MS_ERR_NOT_FOUND, "job %s not found", id);
    } else if (rc != SQLITE_ROW) {
        st = store_sqlite_fail(s, rc, "reading a checkpoint", err);
    } else if (sqlite3_column_type(q, 0) == SQLITE_NULL) {
        st = ms_fail(err, MS_ERR_NOT_FOUND, "job %s has no checkpoint", id);
    } else {
        char what[64];
        snprintf(what, sizeof what, "job %s checkpoint", id);
        st = store_col_blob(q, 0, BLOB_BYTES, data, n, what, err);
        // An empty checkpoint still comes back as a non-NULL pointer the caller can free.
        if (st == MS_OK && !*data && !(*data = malloc(1)))
            st = ms_fail(err, MS_ERR_NOMEM, "out of memory reading a checkpoint");
    }
    store_stmt_done(q);
    if (st != MS_OK) {
        free(*data);
        *data = NULL;
        *n = 0;
    }
    return st;
}

/* ---- transitions ---- */

static const char SQL_FINISH[] =
    "UPDATE jobs SET state = ?1, finished_at = ?2, error = ?3, result_model = ?4,"
    " result_version = ?5, checkpoint = NULL WHERE id = ?6";

MsStatus store_job_finish(Store *s, const char *id, JobState state, const char *error,
                          StoreModel *model, int *version, MsError *err) {
    MsStatus st = store_id_check("job", id, err);
    if (st != MS_OK) return st;
    if (state != JOB_SUCCEEDED && state != JOB_FAILED && state != JOB_CANCELLED)
        return ms_fail(err, MS_ERR_INVALID, "state: %s is not a final state",
                       store_job_state_name(state));
    if (model && state != JOB_SUCCEEDED)
        return ms_fail(err, MS_ERR_INVALID, "model: only a succeeded job writes a model");
    if (model && (st = store_model_check(model, err)) != MS_OK) return st;
    if (s->pg) return pg_job_finish(s, id, state, error, model, version, err);
    sqlite3_stmt *q = NULL;
    JobState cur = JOB_QUEUED;
    int v = 0;
    if ((st = store_tx_begin(s, err)) != MS_OK) return st;
    if ((st = job_state(s, id, &cur, NULL, err)) != MS_OK) goto done;
    if (cur != JOB_QUEUED && cur != JOB_RUNNING) {
        st = ms_fail(err, MS_ERR_CONFLICT, "job %s is already %s", id, store_job_state_name(cur));
        goto done;
    }
    if (model && (st = store_model_insert(s, model, id, &v, err)) != MS_OK) goto done;
    if ((st = store_stmt(s, SQL_FINISH, &q, err)) != MS_OK) goto done;
    int rc = sqlite3_bind_text(q, 1, STATE_NAMES[state], -1, SQLITE_STATIC);
    if (rc == SQLITE_OK) rc = sqlite3_bind_int64(q, 2, store_now_ms());
    if (rc == SQLITE_OK) rc = sqlite3_bind_text(q, 3, error ? error : "", -1, SQLITE_STATIC);
    if (rc == SQLITE_OK) rc = sqlite3_bind_text(q, 4, model ? model->name : "", -1, SQLITE_STATIC);
    if (rc == SQLITE_OK) rc = sqlite3_bind_int(q, 5, v);
    if (rc == SQLITE_OK) rc = sqlite3_bind_text(q, 6, id, -1, SQLITE_STATIC);
    if (rc != SQLITE_OK) {
        st = store_sqlite_fail(s, rc, "finishing a job", err);
        goto done;
    }
    if ((st = store_step_done(s, q, "finishing a job", err)) != MS_OK) goto done;
    store_stmt_done(q);
    q = NULL;
    if ((st = store_tx_commit(s, err)) != MS_OK) goto done;
    if (version) *version = v;
done:
    store_stmt_done(q);
    if (st != MS_OK) store_tx_rollback(s);
    return st;
}

static const char SQL_CANCEL_QUEUED[] =
    "UPDATE jobs SET state = 'cancelled', finished_at = ?1 WHERE id = ?2";
static const char SQL_CANCEL_RUNNING[] = "UPDATE jobs SET cancel_requested = 1 WHERE id = ?2";

MsStatus store_job_cancel(Store *s, const char *id, JobState *state_after, MsError *err) {
    MsStatus st = store_id_check("job", id, err);
    if (st != MS_OK) return st;
    if (s->pg) return pg_job_cancel(s, id, state_after, err);
    sqlite3_stmt *q = NULL;
    JobState cur = JOB_QUEUED;
    if ((st = store_tx_begin(s, err)) != MS_OK) return st;
    if ((st = job_state(s, id, &cur, NULL, err)) != MS_OK) goto done;
    if (cur != JOB_QUEUED && cur != JOB_RUNNING) {
        st = ms_fail(err, MS_ERR_CONFLICT, "job %s is already %s", id, store_job_state_name(cur));
        goto done;
    }
    int queued = cur == JOB_QUEUED;
    if ((st = store_stmt(s, queued ? SQL_CANCEL_QUEUED : SQL_CANCEL_RUNNING, &q, err)) != MS_OK)
        goto done;
    int rc = queued ? sqlite3_bind_int64(q, 1, store_now_ms()) : SQLITE_OK;
    if (rc == SQLITE_OK) rc = sqlite3_bind_text(q, 2, id, -1, SQLITE_STATIC);
    if (rc != SQLITE_OK) {
        st = store_sqlite_fail(s, rc, "cancelling a job", err);
        goto done;
    }
    if ((st = store_step_done(s, q, "cancelling a job", err)) != MS_OK) goto done;
    store_stmt_done(q);
    q = NULL;
    if ((st = store_tx_commit(s, err)) != MS_OK) goto done;
    if (state_after) *state_after = queued ? JOB_CANCELLED : JOB_RUNNING;
done:
    store_stmt_done(q);
    if (st != MS_OK) store_tx_rollback(s);
    return st;
}

// ?1 = now, ?2 = one job id or NULL for every running job.
static const char SQL_REQUEUE_CANCELLED[] =
    "UPDATE jobs SET state = 'cancelled', finished_at = ?1, checkpoint = NULL"
    " WHERE state = 'running' AND cancel_requested = 1 AND (?2 IS NULL OR id = ?2)";
static const char SQL_REQUEUE[] =
    "UPDATE jobs SET state = 'queued' WHERE state = 'running' AND (?2 IS NULL OR id = ?2)";

// Requeues running jobs (one when id != NULL); those asked to cancel become cancelled.
static MsStatus requeue(Store *s, const char *id, int *n, MsError *err) {
    const char *const sqls[2] = {SQL_REQUEUE_CANCELLED, SQL_REQUEUE};
    sqlite3_stmt *q = NULL;
    MsStatus st = MS_OK;
    int64_t now = store_now_ms();
    if (n) *n = 0;
    for (int k = 0; k < 2 && st == MS_OK; k++) {
        if ((st = store_stmt(s, sqls[k], &q, err)) != MS_OK) break;
        int rc = k == 0 ? sqlite3_bind_int64(q, 1, now) : SQLITE_OK;
        if (rc == SQLITE_OK && id) rc = sqlite3_bind_text(q, 2, id, -1, SQLITE_STATIC);
        if (rc != SQLITE_OK)
            st = store_sqlite_fail(s, rc, "requeueing jobs", err);
        else
            st = store_step_done(s, q, "requeueing jobs", err);
        if (st == MS_OK && k == 1 && n) *n = sqlite3_changes(s->db);
        store_stmt_done(q);
    }
    return st;
}

MsStatus store_job_requeue_running(Store *s, int *n, MsError *err) {
    if (s->pg) return pg_job_requeue_running(s, n, err);
    MsStatus st = store_tx_begin(s, err);
    if (st != MS_OK) return st;
    if ((st = requeue(s, NULL, n, err)) == MS_OK) st = store_tx_commit(s, err);
    if (st != MS_OK) store_tx_rollback(s);
    return st;
}

MsStatus store_job_requeue(Store *s, const char *id, MsError *err) {
    MsStatus st = store_id_check("job", id, err);
    if (st != MS_OK) return st;
    if (s->pg) return pg_job_requeue(s, id, err);
    JobState cur = JOB_QUEUED;
    if ((st = store_tx_begin(s, err)) != MS_OK) return st;
    if ((st = job_state(s, id, &cur, NULL, err)) != MS_OK) goto done;
    if (cur != JOB_RUNNING) {
        st = ms_fail(err, MS_ERR_CONFLICT, "job %s is %s, not running", id,
                     store_job_state_name(cur));
        goto done;
    }
    if ((st = requeue(s, id, NULL, err)) != MS_OK) goto done;
    st = store_tx_commit(s, err);
done:
    if (st != MS_OK) store_tx_rollback(s);
    return st;
}

/* ---- loss curves ---- */

static const char SQL_METRICS[] = "SELECT step, key, value, ts FROM job_metrics"
                                  " WHERE job_id = ? AND step > ? ORDER BY step, key";

// Pages end on a step boundary because the cursor is a step: a page holds whole steps only,
// except that a single step with more than `limit` keys is returned whole (n > limit).
MsStatus store_job_metrics(Store *s, const char *id, int64_t after_step, int limit,
                           StoreMetricRow **rows, int *n, int *more, MsError *err) {
    *rows = NULL;
    *n = 0;
    *more = 0;
    MsStatus st = store_id_check("job", id, err);
    if (st != MS_OK) return st;
    if (limit < 1) return ms_fail(err, MS_ERR_INVALID, "limit: must be at least 1");
    if (s->pg) return pg_job_metrics(s, id, after_step, limit, rows, n, more, err);
    JobState js = JOB_QUEUED;
    if ((st = job_state(s, id, &js, NULL, err)) != MS_OK) return st;
    sqlite3_stmt *q = NULL;
    StoreMetricRow *r = NULL;
    int cnt = 0, cap = 0, rc;
    if ((st = store_stmt(s, SQL_METRICS, &q, err)) != MS_OK) goto done;
    rc = sqlite3_bind_text(q, 1, id, -1, SQLITE_STATIC);
    if (rc == SQLITE_OK) rc = sqlite3_bind_int64(q, 2, after_step);
    if (rc != SQLITE_OK) {
        st = store_sqlite_fail(s, rc, "listing metrics", err);
        goto done;
    }
    while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        int64_t step = sqlite3_column_int64(q, 0);
        if (cnt >= limit && step != r[cnt - 1].step) {
            *more = 1;
            break;
        }
        if (cnt == limit && r[0].step != step) {
            // The page is full in the middle of a step: end it before that step.
            while (r[cnt - 1].step == step)
                cnt--;
            *more = 1;
            break;
        }
        if ((st = store_grow((void **)&r, &cap, cnt, sizeof *r, 64, "listing metrics", err)) !=
            MS_OK)
            goto done;
        StoreMetricRow *m = &r[cnt++];
        m->step = step;
        store_col_copy(m->key, sizeof m->key, q, 1);
        m->value = store_col_double(q, 2);
        m->ts = sqlite3_column_int64(q, 3);
    }
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        st = store_sqlite_fail(s, rc, "listing metrics", err);
done:
    store_stmt_done(q);
    return store_list_end(st, r, cnt, sizeof *r, NULL, rows, n, more);
}
