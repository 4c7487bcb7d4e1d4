/*
 * Handlers of /v1/jobs: submission of a training config (POST), listing, one job with its
 * config, cancellation and the loss curves. The training-config codec (codec.h) is the one parser
 * of a job body; this file adds what needs the store: the uploaded dataset a config names must
 * exist and fit the architecture, and the queue bound (429 when full). The canonical config
 * (codec_config_print of the parsed one) is what the job row keeps, so a worker reads back
 * exactly what was validated here.
 *
 * The wire shape of a job (one builder, job_json, used by every route):
 *   {"id", "state", "iteration", "total", "created_at", "started_at", "finished_at" (RFC 3339
 *    UTC with ms, or null), "cancel_requested", "metrics": {...latest...},
 *    "model": {"name", "version" (null until succeeded)}, "error" (string or null)}
 * plus "config" on GET /v1/jobs/{id}. Listings are newest first; a page token is the last id of
 * the previous page (jobs) or its last step (metrics). Job rows are small (config ~1 KB), so a
 * listing reads each row's latest metrics with one primary-key lookup.
 */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "http.h"
#include "metaserve/codec/codec.h"

/* ---- small helpers ---- */

// A JSON document stored by the service (config, metrics), or fallback when absent or
// unreadable; NULL (and b->oom) when it could not be parsed for want of memory.
static cJSON *stored_json(JsonBuild *b, const char *text, cJSON *(*fallback)(void)) {
    int oom;
    cJSON *doc = json_parse_stored(text, &oom);
    if (oom) {
        b->oom = 1;
        return NULL;
    }
    return doc ? doc : fallback();
}

/* ---- the wire shape ---- */

static cJSON *job_json(JsonBuild *b, const StoreJob *j, int with_config) {
    cJSON *o = cJSON_CreateObject();
    if (!o) {
        b->oom = 1;
        return NULL;
    }
    json_put(b, o, "id", cJSON_CreateString(j->id));
    json_put(b, o, "state", cJSON_CreateString(store_job_state_name(j->state)));
    json_put(b, o, "iteration", cJSON_CreateNumber((double)j->iteration));
    json_put(b, o, "total", cJSON_CreateNumber((double)j->total));
    json_put(b, o, "created_at", json_time(j->created_at));
    json_put(b, o, "started_at", json_time(j->started_at));
    json_put(b, o, "finished_at", json_time(j->finished_at));
    json_put(b, o, "cancel_requested", cJSON_CreateBool(j->cancel_requested != 0));
    cJSON *metrics = json_put(b, o, "metrics", stored_json(b, j->metrics, cJSON_CreateObject));
    if (metrics && !metrics_compat(metrics)) b->oom = 1;
    cJSON *model = json_put(b, o, "model", cJSON_CreateObject());
    json_put(b, model, "name", cJSON_CreateString(j->name));
    json_put(b, model, "version",
             j->result_version > 0 ? cJSON_CreateNumber(j->result_version) : cJSON_CreateNull());
    json_put(b, o, "error", j->error[0] ? cJSON_CreateString(j->error) : cJSON_CreateNull());
    if (with_config) json_put(b, o, "config", stored_json(b, j->config, cJSON_CreateNull));
    return o;
}

// Replies with one job document (status 200 or 202).
static void reply_job(Req *r, int status, const StoreJob *j, int with_config) {
    JsonBuild b = {0};
    cJSON *doc = job_json(&b, j, with_config);
    if (b.oom) {
        cJSON_Delete(doc);
        reply_nomem(r);
        return;
    }
    reply_json(r, status, doc);
}

/* ---- submission ---- */

// The dataset cfg names (if any) must exist and fit the architecture. Returns 1, or replies and
// returns 0. k_support + k_query against the smallest task or class needs the data: the worker
// checks it (dataset_shots_check) and fails the job with the reason.
static int dataset_fits(Req *r, Store *st, const TrainConfig *cfg) {
    if (!cfg->tasks.dataset[0]) return 1;
    StoreDataset d;
    MsError err = {0};
    MsStatus s = store_dataset_get(st, cfg->tasks.dataset, &d, NULL, &err);
    if (s == MS_ERR_NOT_FOUND) {
        // the codec admitted only 32 hex characters, so the id is safe to echo
        reply_problem(r, 422, "validation", "tasks.dataset: no dataset %s", cfg->tasks.dataset);
        return 0;
    }
    if (s != MS_OK) {
        reply_status(r, s, &err);
        return 0;
    }
    const int L = cfg->n_sizes - 1, O = cfg->sizes[L];
    const int classes = strcmp(d.kind, "classes") == 0;
    char what[64];
    snprintf(what, sizeof what, "dataset %s", d.id);
    int ok = 0;
    if (train_config_fit(cfg, d.x_dim, classes ? 0 : d.y_dim, classes, what, &err) != MS_OK) {
        reply_problem(r, 422, "validation", "%s", err.msg);
    } else if (classes && cfg->tasks.n_way > 0 && cfg->tasks.n_way != O) {
        reply_problem(r, 422, "validation",
                      "tasks.n_way: is %d but the output width architecture.sizes[%d] is %d",
                      cfg->tasks.n_way, L, O);
    } else if (classes && (O < 2 || O > DATASET_MAX_WAY)) {
        reply_problem(r, 422, "validation",
                      "tasks.n_way: episodes of %d classes (the output width); a dataset "
                      "allows 2..%d",
                      O, DATASET_MAX_WAY);
    } else {
        ok = 1;
        if (classes) {
            // n_way <= training classes; test_classes are held out of meta-training
            int oom;
            cJSON *meta = json_parse_stored(d.meta ? d.meta : "{}", &oom);
            const cJSON *tc = cJSON_GetObjectItemCaseSensitive(meta, "test_classes");
            int64_t train = d.n_items - (cJSON_IsArray(tc) ? cJSON_GetArraySize(tc) : 0);
            if (oom) {
                reply_nomem(r);
                ok = 0;
            } else if (meta && train < O) {
                reply_problem(r, 422, "validation",
                              "tasks.n_way: is %d but dataset %s has %lld training classes", O,
                              d.id, (long long)train);
                ok = 0;
            }
            cJSON_Delete(meta);
        }
    }
    store_dataset_free(&d);
    return ok;
}

void h_job_create(Req *r) {
    if (atomic_load(&r->app->draining)) {
        reply_problem(r, 503, "unavailable", "the server is draining: no new jobs are accepted");
        return;
    }
    TrainConfig cfg;
    MsError err = {0};
    // the body was parsed by dispatch (400 with the offset on a syntax error)
    MsStatus s = codec_config_from_doc(&cfg, r->json, &err);
    if (s != MS_OK) {
        reply_status(r, s, &err);
        return;
    }
    TrainLimits lim;
    train_limits_default(&lim);
    if ((s = train_config_check_limits(&cfg, &lim, &err)) != MS_OK) {
        reply_status(r, s, &err);
        return;
    }
    Store *st = req_store(r);
    if (!st || !dataset_fits(r, st, &cfg)) return;
    if (cfg.init_model[0]) { // checked now (422) and pinned to name@version: resumes see the same
        StoreModel im;
        char pinned[sizeof cfg.init_model];
        if ((s = jobs_init_load(st, &cfg, &im, pinned, &err)) != MS_OK) {
            reply_status(r, s == MS_ERR_NOT_FOUND ? MS_ERR_INVALID : s, &err);
            return;
        }
        store_model_free(&im);
        memcpy(cfg.init_model, pinned, sizeof pinned);
    }

    char *json = NULL;
    if ((s = codec_config_print(&cfg, &json, &err)) != MS_OK) {
        reply_status(r, s, &err);
        return;
    }
    // once queued, the job must be answered 202 even out of memory (a 503 would invite a
    // duplicate submission): the fallback reply's buffer is reserved before the write
    const size_t cap = 512 + STORE_NAME_MAX;
    char *reserve = malloc(cap);
    if (!reserve) {
        free(json);
        reply_problem(r, 503, "unavailable", "out of memory");
        return;
    }
    char id[STORE_ID_MAX];
    s = store_job_create(st, json, cfg.name, cfg.iterations, r->app->cfg.max_queued_jobs, id, &err);
    free(json);
    if (s != MS_OK) free(reserve);
    // MS_ERR_BUSY is the queue limit (429) or the database's write lock (503): problem.c's table
    if (s != MS_OK) {
        reply_status(r, s, &err);
        return;
    }
    snprintf(r->location, sizeof r->location, "/v1/jobs/%s", id);

    // Read back before a worker is woken, so the 202 shows the job as accepted (queued), not
    // as claimed a moment later.
    StoreJob j;
    MsStatus got = store_job_get(st, id, &j, &err);
    jobpool_notify(r->app->jobs);
    if (got != MS_OK) {
        // the job is queued: answer 202 from what is known rather than invite a duplicate retry
        memset(&j, 0, sizeof j);
        memcpy(j.id, id, sizeof j.id);
        snprintf(j.name, sizeof j.name, "%s", cfg.name);
        j.state = JOB_QUEUED;
        j.total = cfg.iterations;
        j.created_at = store_now_ms();
    }
    JsonBuild b = {0};
    cJSON *doc = job_json(&b, &j, 0);
    if (b.oom) cJSON_Delete(doc), doc = NULL;
    // the fallback is the job as accepted (what a GET returns until a worker claims it)
    char t[32] = "";
    json_time_text(t, j.created_at);
    reply_json_committed(r, 202, doc, reserve, cap,
                         "{\"id\":\"%s\",\"state\":\"queued\",\"iteration\":0,\"total\":%lld,"
                         "\"created_at\":\"%s\",\"started_at\":null,\"finished_at\":null,"
                         "\"cancel_requested\":false,\"metrics\":{},\"model\":{\"name\":\"%s\","
                         "\"version\":null},\"error\":null}",
                         id, (long long)j.total, t, j.name);
    store_job_free(&j);
}

/* ---- reads ---- */

static MsStatus list_rows(Store *st, const char *token, int size, void **rows, int *n, int *more,
                          MsError *err) {
    StoreJob *v = NULL;
    MsStatus s = store_job_list(st, token, size, &v, n, more, err);
    *rows = v;
    return s;
}
static cJSON *list_render(JsonBuild *b, const void *row) {
    return job_json(b, row, 0);
}
static const char *list_id(const void *row) {
    return ((const StoreJob *)row)->id;
}
static void list_free(void *row) {
    store_job_free(row);
}

void h_job_list(Req *r) {
    static const ListKind KIND = {"jobs",           "page_token: not a token this service issued",
                                  sizeof(StoreJob), list_rows,
                                  list_render,      list_id,
                                  list_free};
    reply_list(r, &KIND);
}

void h_job_get(Req *r) {
    Store *st = req_store(r);
    if (!st) return;
    StoreJob j;
    MsError err = {0};
    MsStatus s = store_job_get(st, r->params[0], &j, &err);
    if (s != MS_OK) {
        reply_status(r, s, &err);
        return;
    }
    reply_job(r, 200, &j, 1);
    store_job_free(&j);
}

/* ---- cancel ---- */

void h_job_cancel(Req *r) {
    // any body is ignored: the route takes none
    Store *st = req_store(r);
    if (!st) return;
    MsError err = {0};
    JobState after = JOB_QUEUED;
    MsStatus s = store_job_cancel(st, r->params[0], &after, &err);
    if (s != MS_OK) {
        reply_status(r, s, &err); // 404 unknown, 409 already finished
        return;
    }
    // the id is well-formed now (the store accepted it); wake the worker running it, if here
    if (after == JOB_RUNNING) jobpool_cancel(r->app->jobs, r->params[0]);
    StoreJob j;
    if ((s = store_job_get(st, r->params[0], &j, &err)) != MS_OK) {
        reply_status(r, s, &err);
        return;
    }
    reply_job(r, 200, &j, 0);
    store_job_free(&j);
}

/* ---- loss curves ---- */

// Parses a step cursor: a decimal integer in lo..INT64_MAX. Returns 1 on success.
static int parse_step(const char *s, long long lo, int64_t *out) {
    if (!s || !*s || strlen(s) > 20) return 0;
    for (const char *c = s + (*s == '-'); *c; c++)
        if (*c < '0' || *c > '9') return 0;
    char *end;
    long long v = strtoll(s, &end, 10);
    if (*end || v < lo || v == LLONG_MAX) return 0;
    *out = v;
    return 1;
}

void h_job_metrics(Req *r) {
    int size;
    const char *token;
    if (!req_page(r, PAGE_SIZE_DEFAULT, PAGE_SIZE_MAX, &size, &token)) return;
    int64_t after = -1;
    // since=STEP is after_step's short name (a page polling for new points); one or the other
    const char *as = req_query(r, "after_step"), *since = req_query(r, "since");
    if (as && since) {
        reply_problem(r, 422, "validation", "since: give since or after_step, not both");
        return;
    }
    const char *as_name = since ? "since" : "after_step";
    if (since) as = since;
    // a page token (the last step of the previous page) supersedes after_step, so a client
    // that keeps its first query's parameters and adds the token still pages forward
    if (token[0]) {
        if (!parse_step(token, 0, &after)) {
            reply_problem(r, 422, "validation", "page_token: not a token this service issued");
            return;
        }
    } else if (as && !parse_step(as, -1, &after)) {
        reply_problem(r, 422, "validation", "%s: must be an integer >= -1", as_name);
        return;
    }
    Store *st = req_store(r);
    if (!st) return;
    StoreMetricRow *rows = NULL;
    int n = 0, more = 0;
    MsError err = {0};
    MsStatus s = store_job_metrics(st, r->params[0], after, size, &rows, &n, &more, &err);
    if (s != MS_OK) {
        reply_status(r, s, &err);
        return;
    }
    // points stored before the validation metric was named by what it measures are "val_loss":
    // the job's metrics say which it was
    const char *old_val_key = NULL;
    for (int i = 0; i < n && !old_val_key; i++)
        if (strcmp(rows[i].key, "val_loss") == 0) {
            StoreJob j;
            MsError jerr = {0};
            int is_accuracy = 0;
            if (store_job_get(st, r->params[0], &j, &jerr) == MS_OK) {
                is_accuracy = j.metrics && strstr(j.metrics, "\"val_metric\":\"accuracy\"");
                store_job_free(&j);
            }
            old_val_key = metrics_val_key(is_accuracy ? "accuracy" : "mse");
        }
    JsonBuild b = {0};
    cJSON *doc = cJSON_CreateObject();
    json_put(&b, doc, "job_id", cJSON_CreateString(r->params[0]));
    cJSON *pts = json_put(&b, doc, "points", cJSON_CreateArray());
    char ts[32];
    for (int i = 0; i < n && !b.oom; i++) {
        cJSON *p = json_put(&b, pts, NULL, cJSON_CreateObject());
        json_put(&b, p, "step", cJSON_CreateNumber((double)rows[i].step));
        json_put(&b, p, "key",
                 cJSON_CreateString(old_val_key && strcmp(rows[i].key, "val_loss") == 0
                                        ? old_val_key
                                        : rows[i].key));
        json_put(&b, p, "value",
                 isfinite(rows[i].value) ? cJSON_CreateNumber(rows[i].value) : cJSON_CreateNull());
        json_put(&b, p, "ts",
                 json_time_text(ts, rows[i].ts) ? cJSON_CreateString(ts) : cJSON_CreateNull());
    }
    char next[24];
    snprintf(next, sizeof next, "%lld", n > 0 ? (long long)rows[n - 1].step : 0LL);
    json_put(&b, doc, "next_page_token",
             more && n > 0 ? cJSON_CreateString(next) : cJSON_CreateNull());
    free(rows);
    if (b.oom) {
        cJSON_Delete(doc);
        reply_nomem(r);
        return;
    }
    reply_json(r, 200, doc);
}
