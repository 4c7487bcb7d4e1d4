/*
 * PostgreSQL backend of store.h, part 3: jobs as a queue shared by several replicas, with
 * leases and fencing (the state machine is that of store_jobs.c).
 *
 * Claim: one statement takes the oldest job that is queued, or running with an expired lease,
 * with SELECT ... FOR UPDATE SKIP LOCKED (claimers never wait on each other nor take the same
 * row), and records the lease: owner = this replica, epoch = epoch + 1, lease_until = the
 * database's now + lease_ms. The connection remembers (job, epoch).
 *
 * Fencing: progress and checkpoint writes carry "owner = me AND epoch = my epoch" in the WHERE
 * of their UPDATE, and renew the lease in the same statement; finish and requeue lock the row
 * and check owner and epoch in their transaction. A replica that lost its lease (paused past
 * it, cut off) therefore changes nothing once another replica claimed the job: its writes fail
 * with MS_ERR_CONFLICT "lease lost". Lease times use the database's clock only.
 *
 * Requeue at start-up (store_job_requeue_running) takes back only this replica's own running
 * jobs and those whose lease expired, never a live replica's.
 */
#include "store_pg.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const STATES[5] = {"queued", "running", "succeeded", "failed", "cancelled"};

static int state_parse(const char *t, JobState *out) {
    for (int i = 0; i < 5; i++)
        if (t && strcmp(t, STATES[i]) == 0) {
            *out = (JobState)i;
            return 1;
        }
    return 0;
}

/* ---- leases ---- */

int64_t pg_lease_epoch(Store *s, const char *id) {
    PgStore *p = s->pg;
    for (int i = 0; i < p->n_leases; i++)
        if (strcmp(p->leases[i].id, id) == 0) return p->leases[i].epoch;
    return 0;
}

void pg_lease_drop(Store *s, const char *id) {
    PgStore *p = s->pg;
    for (int i = 0; i < p->n_leases; i++)
        if (strcmp(p->leases[i].id, id) == 0) {
            p->leases[i] = p->leases[--p->n_leases];
            return;
        }
}

static void lease_keep(Store *s, const char *id, int64_t epoch) {
    PgStore *p = s->pg;
    pg_lease_drop(s, id);
    if (p->n_leases == PG_LEASES) { // the oldest goes: a worker holds one job at a time
        memmove(&p->leases[0], &p->leases[1], sizeof p->leases[0] * (PG_LEASES - 1));
        p->n_leases--;
    }
    snprintf(p->leases[p->n_leases].id, STORE_ID_MAX, "%s", id);
    p->leases[p->n_leases++].epoch = epoch;
}

/* ---- rows ---- */

#define JOB_COLS                                                                                   \
    "id, state, name, created_at, started_at, finished_at, iteration, total, cancel_requested,"    \
    " error, result_model, result_version, checkpoint IS NOT NULL, config, metrics, epoch"

static MsStatus job_row(const PGresult *r, int i, StoreJob *j, int with_config, MsError *err) {
    pg_col_copy(j->id, sizeof j->id, r, i, 0);
    if (!state_parse(PQgetvalue(r, i, 1), &j->state))
        return ms_fail_detail(err, MS_ERR_DB, MS_DETAIL_CORRUPT, "job %s: corrupt: unknown state",
                              j->id);
    pg_col_copy(j->name, sizeof j->name, r, i, 2);
    j->created_at = pg_col_i64(r, i, 3);
    j->started_at = pg_col_i64(r, i, 4);
    j->finished_at = pg_col_i64(r, i, 5);
    j->iteration = pg_col_i64(r, i, 6);
    j->total = pg_col_i64(r, i, 7);
    j->cancel_requested = (int)pg_col_i64(r, i, 8);
    pg_col_copy(j->error, sizeof j->error, r, i, 9);
    pg_col_copy(j->result_model, sizeof j->result_model, r, i, 10);
    j->result_version = (int)pg_col_i64(r, i, 11);
    j->has_checkpoint = (int)pg_col_i64(r, i, 12);
    if (with_config && !(j->config = pg_col_strdup(r, i, 13, "{}")))
        return ms_fail(err, MS_ERR_NOMEM, "out of memory reading job %s", j->id);
    if (!(j->metrics = pg_col_strdup(r, i, 14, "{}")))
        return ms_fail(err, MS_ERR_NOMEM, "out of memory reading job %s", j->id);
    return MS_OK;
}

static void job_row_free(void *j) {
    store_job_free(j);
}

// The locked row's state, owner and epoch (inside a transaction). NOT_FOUND when absent.
static MsStatus job_lock(Store *s, const char *id, JobState *state, char owner[64], int64_t *epoch,
                         MsError *err) {
    PgArgs a = {0};
    pg_text(&a, id);
    PGresult *r;
    MsStatus st = pg_query(s, "SELECT state, owner, epoch FROM jobs WHERE id = $1 FOR UPDATE", &a,
                           &r, "reading a job", err);
    if (st != MS_OK) return st;
    if (PQntuples(r) == 0)
        st = ms_fail(err, MS_ERR_NOT_FOUND, "job %s not found", id);
    else if (!state_parse(PQgetvalue(r, 0, 0), state))
        st =
            ms_fail_detail(err, MS_ERR_DB, MS_DETAIL_CORRUPT, "job %s: corrupt: unknown state", id);
    if (st == MS_OK) {
        if (owner) pg_col_copy(owner, 64, r, 0, 1);
        if (epoch) *epoch = pg_col_i64(r, 0, 2);
    }
    PQclear(r);
    return st;
}

// Why a fenced write changed nothing: not running, or the lease is another's now.
static MsStatus fenced_out(Store *s, const char *id, MsError *err) {
    PgArgs a = {0};
    pg_text(&a, id);
    PGresult *r;
    MsStatus st = pg_query(s, "SELECT state, owner, epoch FROM jobs WHERE id = $1", &a, &r,
                           "reading a job", err);
    if (st != MS_OK) return st;
    JobState js = JOB_QUEUED;
    if (PQntuples(r) == 0) {
        st = ms_fail(err, MS_ERR_NOT_FOUND, "job %s not found", id);
    } else if (!state_parse(PQgetvalue(r, 0, 0), &js) || js != JOB_RUNNING) {
        st = ms_fail(err, MS_ERR_CONFLICT, "job %s is %s, not running", id,
                     store_job_state_name(js));
    } else {
        st = ms_fail(err, MS_ERR_CONFLICT,
                     "lease lost: job %s is held by %s (epoch %lld), not by this connection "
                     "(%s, epoch %lld)",
                     id, PQgetvalue(r, 0, 1), (long long)pg_col_i64(r, 0, 2), s->pg->replica,
                     (long long)pg_lease_epoch(s, id));
    }
    PQclear(r);
    pg_lease_drop(s, id);
    return st;
}

/* ---- create, read, list ---- */

#define PG_QUEUE_LOCK "7412600002" // serialises the queue-limit check with the insert

MsStatus pg_job_create(Store *s, const char *config_json, const char *model_name, int64_t total,
                       int max_queued, char id_out[STORE_ID_MAX], MsError *err) {
    char id[STORE_ID_MAX];
    MsStatus st = store_id_new(id, err);
    if (st != MS_OK) return st;
    PGresult *r = NULL;
    if ((st = pg_begin(s, err)) != MS_OK) return st;
    if (max_queued > 0) {
        if ((st = pg_query(s, "SELECT pg_advisory_xact_lock(" PG_QUEUE_LOCK ")", NULL, NULL,
                           "creating a job", err)) != MS_OK)
            goto done;
        if ((st = pg_query(s, "SELECT count(*) FROM jobs WHERE state = 'queued'", NULL, &r,
                           "counting queued jobs", err)) != MS_OK)
            goto done;
        int64_t queued = pg_col_i64(r, 0, 0);
        PQclear(r);
        if (queued >= max_queued) {
            st = ms_fail_detail(err, MS_ERR_BUSY, MS_DETAIL_QUEUE_FULL,
                                "job queue full: %lld jobs queued (limit %d)", (long long)queued,
                                max_queued);
            goto done;
        }
    }
    PgArgs a = {0};
    pg_text(&a, id);
    pg_text(&a, config_json);
    pg_text(&a, model_name);
    pg_i64(&a, store_now_ms());
    pg_i64(&a, total);
    if ((st = pg_query(s,
                       "INSERT INTO jobs(id, state, config, name, created_at, total)"
                       " VALUES ($1, 'queued', $2, $3, $4, $5)",
                       &a, NULL, "creating a job", err)) != MS_OK)
        goto done;
    if ((st = pg_commit(s, err)) != MS_OK) goto done;
    memcpy(id_out, id, sizeof id);
done:
    if (st != MS_OK) pg_rollback(s);
    return st;
}

MsStatus pg_job_get(Store *s, const char *id, StoreJob *out, MsError *err) {
    PgArgs a = {0};
    pg_text(&a, id);
    PGresult *r;
    MsStatus st =
        pg_query(s, "SELECT " JOB_COLS " FROM jobs WHERE id = $1", &a, &r, "reading a job", err);
    if (st != MS_OK) return st;
    if (PQntuples(r) == 0)
        st = ms_fail(err, MS_ERR_NOT_FOUND, "job %s not found", id);
    else
        st = job_row(r, 0, out, 1, err);
    PQclear(r);
    if (st != MS_OK) store_job_free(out);
    return st;
}

MsStatus pg_job_list(Store *s, const char *after, int limit, StoreJob **rows, int *n, int *more,
                     MsError *err) {
    PGresult *r;
    MsStatus st = pg_list_newest(s, "jobs", JOB_COLS, "job", after, limit, &r, err);
    if (st != MS_OK) return st;
    int cnt = PQntuples(r), done = 0;
    if (cnt > limit) *more = 1, cnt = limit;
    StoreJob *out = cnt ? calloc((size_t)cnt, sizeof *out) : NULL;
    if (cnt && !out) st = ms_fail(err, MS_ERR_NOMEM, "out of memory listing jobs");
    while (st == MS_OK && done < cnt) {
        st = job_row(r, done, &out[done], 0, err);
        done++;
    }
    PQclear(r);
    return store_list_end(st, out, done, sizeof *out, job_row_free, rows, n, more);
}

MsStatus pg_job_counts(Store *s, int64_t counts[5], MsError *err) {
    PGresult *r;
    MsStatus st = pg_query(s, "SELECT state, count(*) FROM jobs GROUP BY state", NULL, &r,
                           "counting jobs", err);
    if (st != MS_OK) return st;
    for (int i = 0; i < PQntuples(r); i++) {
        JobState js;
        if (state_parse(PQgetvalue(r, i, 0), &js)) counts[js] = pg_col_i64(r, i, 1);
    }
    PQclear(r);
    return MS_OK;
}

/* ---- the worker's side ---- */

MsStatus pg_job_claim(Store *s, StoreJob *out, int *claimed, MsError *err) {
    PgArgs a = {0};
    pg_i64(&a, store_now_ms());
    pg_text(&a, s->pg->replica);
    pg_i64(&a, s->pg->lease_ms);
    PGresult *r;
    MsStatus st =
        pg_query(s,
                 "WITH c AS (SELECT id AS claimed_id FROM jobs WHERE state = 'queued'"
                 "   OR (state = 'running' AND lease_until < " PG_NOW ")"
                 "   ORDER BY created_at, seq LIMIT 1 FOR UPDATE SKIP LOCKED)"
                 " UPDATE jobs j SET state = 'running',"
                 "  started_at = CASE WHEN j.started_at = 0 THEN $1 ELSE j.started_at END,"
                 "  owner = $2, epoch = j.epoch + 1, lease_until = " PG_NOW " + $3"
                 " FROM c WHERE j.id = c.claimed_id RETURNING " JOB_COLS,
                 &a, &r, "claiming a job", err);
    if (st != MS_OK) return st;
    if (PQntuples(r) == 1) {
        st = job_row(r, 0, out, 1, err);
        if (st == MS_OK) {
            lease_keep(s, out->id, pg_col_i64(r, 0, 15));
            *claimed = 1;
        } else {
            store_job_free(out);
        }
    }
    PQclear(r);
    return st;
}

MsStatus pg_job_progress(Store *s, const char *id, int64_t iteration, const char *metrics_json,
                         const StoreMetric *pts, int n, MsError *err) {
    PgArgs a = {0};
    pg_i64(&a, iteration);
    pg_text(&a, metrics_json);
    pg_text(&a, id);
    pg_text(&a, s->pg->replica);
    pg_i64(&a, pg_lease_epoch(s, id));
    pg_i64(&a, s->pg->lease_ms);
    PGresult *r;
    MsStatus st = pg_begin(s, err);
    if (st != MS_OK) return st;
    if ((st = pg_query(s,
                       "UPDATE jobs SET iteration = $1, metrics = coalesce($2, metrics),"
                       " lease_until = " PG_NOW " + $6"
                       " WHERE id = $3 AND state = 'running' AND owner = $4 AND epoch = $5",
                       &a, &r, "recording progress", err)) != MS_OK)
        goto done;
    int64_t changed = pg_changes(r);
    PQclear(r);
    if (changed == 0) {
        st = fenced_out(s, id, err);
        goto done;
    }
    int64_t now = store_now_ms();
    for (int i = 0; i < n && st == MS_OK; i++) {
        PgArgs m = {0};
        pg_text(&m, id);
        pg_i64(&m, pts[i].step);
        pg_text(&m, pts[i].key);
        pg_f64(&m, pts[i].value);
        pg_i64(&m, now);
        st = pg_query(s,
                      "INSERT INTO job_metrics(job_id, step, key, value, ts)"
                      " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (job_id, step, key)"
                      " DO UPDATE SET value = excluded.value, ts = excluded.ts",
                      &m, NULL, "recording metrics", err);
    }
    if (st == MS_OK) st = pg_commit(s, err);
done:
    if (st != MS_OK) pg_rollback(s);
    return st;
}

MsStatus pg_job_checkpoint(Store *s, const char *id, int64_t iteration, const void *data, size_t n,
                           MsError *err) {
    PgArgs a = {0};
    void *buf = NULL;
    MsStatus st = pg_arg_blob(&a, &buf, BLOB_BYTES, data, n, err);
    if (st != MS_OK) return st;
    pg_i64(&a, iteration);
    pg_text(&a, id);
    pg_text(&a, s->pg->replica);
    pg_i64(&a, pg_lease_epoch(s, id));
    pg_i64(&a, s->pg->lease_ms);
    PGresult *r;
    st = pg_query(s,
                  "UPDATE jobs SET checkpoint = $1, iteration = $2, lease_until = " PG_NOW " + $6"
                  " WHERE id = $3 AND state = 'running' AND owner = $4 AND epoch = $5",
                  &a, &r, "writing a checkpoint", err);
    free(buf);
    if (st != MS_OK) return st;
    int64_t changed = pg_changes(r);
    PQclear(r);
    return changed ? MS_OK : fenced_out(s, id, err);
}

MsStatus pg_job_checkpoint_get(Store *s, const char *id, void **data, size_t *n, MsError *err) {
    PgArgs a = {0};
    pg_text(&a, id);
    PGresult *r;
    MsStatus st = pg_query(s, "SELECT checkpoint FROM jobs WHERE id = $1", &a, &r,
                           "reading a checkpoint", err);
    if (st != MS_OK) return st;
    if (PQntuples(r) == 0) {
        st = ms_fail(err, MS_ERR_NOT_FOUND, "job %s not found", id);
    } else if (pg_col_null(r, 0, 0)) {
        st = ms_fail(err, MS_ERR_NOT_FOUND, "job %s has no checkpoint", id);
    } else {
        char what[64];
        snprintf(what, sizeof what, "job %s checkpoint", id);
        st = pg_col_blob(r, 0, 0, BLOB_BYTES, data, n, what, err);
        if (st == MS_OK && !*data && !(*data = malloc(1)))
            st = ms_fail(err, MS_ERR_NOMEM, "out of memory reading a checkpoint");
    }
    PQclear(r);
    if (st != MS_OK) {
        free(*data);
        *data = NULL;
        *n = 0;
    }
    return st;
}

// Inside a transaction: the row is locked. A running job must be this connection's lease; and a
// connection that claimed the job (it holds a lease epoch for it) may end it only while that
// claim is the row's latest, so an old owner cannot finish a job that another replica claimed
// and handed back to the queue meanwhile.
static MsStatus lock_mine(Store *s, const char *id, JobState *cur, MsError *err) {
    char owner[64];
    int64_t epoch, mine = pg_lease_epoch(s, id);
    MsStatus st = job_lock(s, id, cur, owner, &epoch, err);
    if (st != MS_OK) return st;
    int stale = mine != 0 && (epoch != mine || *cur != JOB_RUNNING);
    if (stale || (*cur == JOB_RUNNING && (strcmp(owner, s->pg->replica) != 0 || epoch != mine)))
        return fenced_out(s, id, err);
    return MS_OK;
}

MsStatus pg_job_finish(Store *s, const char *id, JobState state, const char *error,
                       StoreModel *model, int *version, MsError *err) {
    JobState cur;
    int v = 0;
    MsStatus st = pg_begin(s, err);
    if (st != MS_OK) return st;
    if ((st = lock_mine(s, id, &cur, err)) != MS_OK) goto done;
    if (cur != JOB_QUEUED && cur != JOB_RUNNING) {
        st = ms_fail(err, MS_ERR_CONFLICT, "job %s is already %s", id, store_job_state_name(cur));
        goto done;
    }
    if (model && (st = pg_model_insert(s, model, id, &v, err)) != MS_OK) goto done;
    PgArgs a = {0};
    pg_text(&a, STATES[state]);
    pg_i64(&a, store_now_ms());
    pg_text(&a, error ? error : "");
    pg_text(&a, model ? model->name : "");
    pg_i64(&a, v);
    pg_text(&a, id);
    if ((st = pg_query(s,
                       "UPDATE jobs SET state = $1, finished_at = $2, error = $3,"
                       " result_model = $4, result_version = $5, checkpoint = NULL,"
                       " lease_until = 0 WHERE id = $6",
                       &a, NULL, "finishing a job", err)) != MS_OK)
        goto done;
    if ((st = pg_commit(s, err)) != MS_OK) goto done;
    pg_lease_drop(s, id);
    if (version) *version = v;
done:
    if (st != MS_OK) pg_rollback(s);
    return st;
}

MsStatus pg_job_cancel(Store *s, const char *id, JobState *state_after, MsError *err) {
    JobState cur;
    MsStatus st = pg_begin(s, err);
    if (st != MS_OK) return st;
    if ((st = job_lock(s, id, &cur, NULL, NULL, err)) != MS_OK) goto done;
    if (cur != JOB_QUEUED && cur != JOB_RUNNING) {
        st = ms_fail(err, MS_ERR_CONFLICT, "job %s is already %s", id, store_job_state_name(cur));
        goto done;
    }
    int queued = cur == JOB_QUEUED;
    PgArgs a = {0};
    pg_text(&a, id);
    if (queued) pg_i64(&a, store_now_ms());
    if ((st =
             pg_query(s,
                      queued ? "UPDATE jobs SET state = 'cancelled', finished_at = $2 WHERE id = $1"
                             : "UPDATE jobs SET cancel_requested = 1 WHERE id = $1",
                      &a, NULL, "cancelling a job", err)) != MS_OK)
        goto done;
    if ((st = pg_commit(s, err)) != MS_OK) goto done;
    if (state_after) *state_after = queued ? JOB_CANCELLED : JOB_RUNNING;
done:
    if (st != MS_OK) pg_rollback(s);
    return st;
}

// $1 = now, $2 = one job id or NULL, $3 = this replica: running jobs that are ours (or whose
// lease expired) go back to the queue; those asked to cancel become cancelled.
static MsStatus requeue(Store *s, const char *id, int *n, MsError *err) {
    static const char *const sqls[2] = {
        "UPDATE jobs SET state = 'cancelled', finished_at = $1, checkpoint = NULL, lease_until = 0"
        " WHERE state = 'running' AND cancel_requested = 1 AND ($2::text IS NULL OR id = $2)"
        " AND (owner = $3 OR lease_until < " PG_NOW ")",
        "UPDATE jobs SET state = 'queued', lease_until = 0"
        " WHERE state = 'running' AND ($2::text IS NULL OR id = $2) AND $1 >= 0"
        " AND (owner = $3 OR lease_until < " PG_NOW ")"};
    PgArgs a = {0};
    pg_i64(&a, store_now_ms());
    pg_text(&a, id);
    pg_text(&a, s->pg->replica);
    if (n) *n = 0;
    for (int k = 0; k < 2; k++) {
        PGresult *r;
        MsStatus st = pg_query(s, sqls[k], &a, &r, "requeueing jobs", err);
        if (st != MS_OK) return st;
        if (k == 1 && n) *n = (int)pg_changes(r);
        PQclear(r);
    }
    return MS_OK;
}

MsStatus pg_job_requeue_running(Store *s, int *n, MsError *err) {
    MsStatus st = pg_begin(s, err);
    if (st != MS_OK) return st;
    if ((st = requeue(s, NULL, n, err)) == MS_OK) st = pg_commit(s, err);
    if (st != MS_OK) pg_rollback(s);
    if (st == MS_OK) s->pg->n_leases = 0; // whatever this connection had claimed is queued now
    return st;
}

MsStatus pg_job_requeue(Store *s, const char *id, MsError *err) {
    JobState cur;
    MsStatus st = pg_begin(s, err);
    if (st != MS_OK) return st;
    if ((st = lock_mine(s, id, &cur, err)) != MS_OK) goto done;
    if (cur != JOB_RUNNING) {
        st = ms_fail(err, MS_ERR_CONFLICT, "job %s is %s, not running", id,
                     store_job_state_name(cur));
        goto done;
    }
    if ((st = requeue(s, id, NULL, err)) != MS_OK) goto done;
    if ((st = pg_commit(s, err)) == MS_OK) pg_lease_drop(s, id);
done:
    if (st != MS_OK) pg_rollback(s);
    return st;
}

MsStatus pg_job_metrics(Store *s, const char *id, int64_t after_step, int limit,
                        StoreMetricRow **rows, int *n, int *more, MsError *err) {
    PgArgs a = {0};
    pg_text(&a, id);
    PGresult *r;
    MsStatus st = pg_query(s, "SELECT 1 FROM jobs WHERE id = $1", &a, &r, "listing metrics", err);
    if (st != MS_OK) return st;
    int found = PQntuples(r) == 1;
    PQclear(r);
    if (!found) return ms_fail(err, MS_ERR_NOT_FOUND, "job %s not found", id);
    pg_i64(&a, after_step);
    // At most limit rows plus the whole of the step the page ends in.
    pg_i64(&a, limit);
    st = pg_query(s,
                  "SELECT step, key, value, ts FROM job_metrics WHERE job_id = $1 AND step > $2"
                  " AND step <= coalesce((SELECT max(step) FROM (SELECT step FROM job_metrics"
                  "  WHERE job_id = $1 AND step > $2 ORDER BY step LIMIT $3 + 1) t), $2)"
                  " ORDER BY step, key COLLATE \"C\"",
                  &a, &r, "listing metrics", err);
    if (st != MS_OK) return st;
    int total = PQntuples(r), cnt = total;
    StoreMetricRow *out = total ? calloc((size_t)total, sizeof *out) : NULL;
    if (total && !out) st = ms_fail(err, MS_ERR_NOMEM, "out of memory listing metrics");
    for (int i = 0; st == MS_OK && i < total; i++) {
        out[i].step = pg_col_i64(r, i, 0);
        pg_col_copy(out[i].key, sizeof out[i].key, r, i, 1);
        out[i].value = pg_col_f64(r, i, 2);
        out[i].ts = pg_col_i64(r, i, 3);
    }
    PQclear(r);
    if (st == MS_OK && total > limit) {
        // Same paging as SQLite: end the page before a step that does not fit whole, unless
        // the page holds that one step only.
        *more = 1;
        int64_t last = out[limit].step;
        cnt = limit;
        if (out[limit - 1].step == last) {
            while (cnt > 0 && out[cnt - 1].step == last)
                cnt--;
            if (cnt == 0) { // one step bigger than limit: returned whole
                cnt = total;
                PgArgs b = {0};
                pg_text(&b, id);
                pg_i64(&b, last);
                st =
                    pg_query(s, "SELECT 1 FROM job_metrics WHERE job_id = $1 AND step > $2 LIMIT 1",
                             &b, &r, "listing metrics", err);
                if (st == MS_OK) *more = PQntuples(r) > 0;
                if (st == MS_OK) PQclear(r);
            }
        }
    }
    return store_list_end(st, out, cnt, sizeof *out, NULL, rows, n, more);
}
