/*
 * Handlers of the model registry routes: listing models, reading a model and one of its
 * versions, deleting either, moving and removing aliases, and exporting a version's weights.
 *
 * Owns nothing but the mapping between the store's records and their wire formats (DESIGN.md §3):
 * times as RFC 3339 UTC with milliseconds, stored JSON texts (config, hyper, metrics) embedded as
 * parsed JSON, weights in the {"W", "b"} layer layout printed by the codec ("%.9g" per float).
 * Every write that can change what a reference resolves to (delete, alias move) ends with
 * serving_invalidate, so the version cache never serves a deleted version.
 *
 * Path parameters: params[0] is the model name or reference, params[1] the version or alias.
 * Names, references and aliases are validated by the store before they appear in any message;
 * a version must be a decimal integer in 1..2^31-1 (422 otherwise).
 *
 * Workload: metadata reads of a few versions per model; the weights export prints P floats (tens
 * of thousands for typical networks) taken from the version cache, never from SQLite when warm.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "http.h"
#include "metaserve/codec/codec.h"

/* ---- helpers ---- */

// Adds a stored JSON text as parsed JSON (null when it does not parse); 0 when an allocation
// failed.
static int add_parsed(cJSON *o, const char *key, const char *text) {
    int oom;
    cJSON *v = json_parse_stored(text, &oom);
    if (oom) return 0;
    if (!v) v = cJSON_CreateNull();
    if (v && strcmp(key, "metrics") == 0 && !metrics_compat(v)) {
        cJSON_Delete(v);
        return 0;
    }
    if (!v || !cJSON_AddItemToObject(o, key, v)) {
        cJSON_Delete(v);
        return 0;
    }
    return 1;
}

// Adds a job id, or null for a version that did not come from a job.
static int add_job_id(cJSON *o, const char *job_id) {
    return (job_id[0] ? cJSON_AddStringToObject(o, "job_id", job_id)
                      : cJSON_AddNullToObject(o, "job_id")) != NULL;
}

// Reads the version path parameter: a decimal integer in 1..INT_MAX; replies 422 otherwise.
static int path_version(Req *r, const char *s, int *out) {
    size_t n = s ? strlen(s) : 0;
    long long v = 0;
    if (n >= 1 && n <= 10 && strspn(s, "0123456789") == n) v = strtoll(s, NULL, 10);
    if (v < 1 || v > INT_MAX) {
        reply_problem(r, 422, "validation", "version: must be an integer in 1..%d", INT_MAX);
        return 0;
    }
    *out = (int)v;
    return 1;
}

/* ---- models ---- */

void h_model_list(Req *r) {
    int size;
    const char *token;
    if (!req_page(r, PAGE_SIZE_DEFAULT, PAGE_SIZE_MAX, &size, &token)) return;
    // a token we issue is the name of the last model of the page ("" for the first page)
    if (*token && !name_valid(token)) {
        reply_problem(r, 422, "validation", "page_token: not a token this service issued");
        return;
    }
    Store *st = req_store(r);
    if (!st) return;
    MsError err = {0};
    StoreModelSummary *rows = NULL;
    int n = 0, more = 0;
    MsStatus s = store_model_list(st, token, size, &rows, &n, &more, &err);
    if (s != MS_OK) {
        reply_status(r, s, &err);
        return;
    }
    cJSON *doc = cJSON_CreateObject();
    cJSON *list = cJSON_AddArrayToObject(doc, "models");
    int ok = list != NULL;
    for (int i = 0; i < n && ok; i++) {
        cJSON *m = cJSON_CreateObject();
        ok = m && cJSON_AddItemToArray(list, m);
        if (!ok) {
            cJSON_Delete(m);
            break;
        }
        ok = cJSON_AddStringToObject(m, "name", rows[i].name) &&
             cJSON_AddNumberToObject(m, "latest_version", rows[i].latest_version) &&
             cJSON_AddNumberToObject(m, "versions", rows[i].n_versions) &&
             cJSON_AddStringToObject(m, "algorithm", rows[i].algorithm) &&
             json_add_time(m, "created_at", rows[i].created_at);
    }
    if (ok)
        ok = (more && n > 0 ? cJSON_AddStringToObject(doc, "next_page_token", rows[n - 1].name)
                            : cJSON_AddNullToObject(doc, "next_page_token")) != NULL;
    free(rows);
    reply_built(r, 200, doc, ok);
}

void h_model_get(Req *r) {
    Store *st = req_store(r);
    if (!st) return;
    MsError err = {0};
    StoreModel *rows = NULL;
    int n = 0;
    MsStatus s = store_model_versions(st, r->params[0], &rows, &n, &err);
    if (s != MS_OK) {
        reply_status(r, s, &err);
        return;
    }
    cJSON *doc = cJSON_CreateObject();
    int ok = cJSON_AddStringToObject(doc, "name", rows[0].name) &&
             cJSON_AddNumberToObject(doc, "latest_version", rows[n - 1].version);
    cJSON *list = ok ? cJSON_AddArrayToObject(doc, "versions") : NULL;
    ok = list != NULL;
    for (int i = 0; i < n && ok; i++) {
        cJSON *v = cJSON_CreateObject();
        ok = v && cJSON_AddItemToArray(list, v);
        if (!ok) {
            cJSON_Delete(v);
            break;
        }
        ok = cJSON_AddNumberToObject(v, "version", rows[i].version) &&
             json_add_time(v, "created_at", rows[i].created_at) &&
             cJSON_AddStringToObject(v, "algorithm", rows[i].algorithm) &&
             add_job_id(v, rows[i].job_id) && add_parsed(v, "metrics", rows[i].metrics);
    }
    cJSON *aliases = ok ? cJSON_AddObjectToObject(doc, "aliases") : NULL;
    ok = aliases != NULL;
    StoreAlias *al = NULL;
    int na = 0;
    if (ok && (s = store_alias_list(st, r->params[0], &al, &na, &err)) != MS_OK) {
        for (int i = 0; i < n; i++)
            store_model_free(&rows[i]);
        free(rows);
        cJSON_Delete(doc);
        reply_status(r, s, &err);
        return;
    }
    for (int i = 0; i < na && ok; i++)
        ok = cJSON_AddNumberToObject(aliases, al[i].alias, al[i].version) != NULL;
    free(al);
    for (int i = 0; i < n; i++)
        store_model_free(&rows[i]);
    free(rows);
    reply_built(r, 200, doc, ok);
}

void h_model_delete(Req *r) {
    Store *st = req_store(r);
    if (!st) return;
    MsError err = {0};
    MsStatus s = store_model_delete(st, r->params[0], 0, &err);
    if (s != MS_OK) {
        reply_status(r, s, &err);
        return;
    }
    serving_invalidate(r->app->serving, r->params[0]);
    reply_empty(r, 204);
}

/* ---- versions ---- */

void h_version_get(Req *r) {
    int version;
    if (!path_version(r, r->params[1], &version)) return;
    Store *st = req_store(r);
    if (!st) return;
    MsError err = {0};
    StoreModel m;
    MsStatus s = store_model_get(st, r->params[0], version, &m, &err);
    if (s != MS_OK) {
        reply_status(r, s, &err);
        return;
    }
    cJSON *doc = cJSON_CreateObject();
    int ok = cJSON_AddStringToObject(doc, "name", m.name) &&
             cJSON_AddNumberToObject(doc, "version", m.version) &&
             json_add_time(doc, "created_at", m.created_at) &&
             cJSON_AddStringToObject(doc, "algorithm", m.algorithm) && add_job_id(doc, m.job_id) &&
             add_parsed(doc, "config", m.config) && add_parsed(doc, "hyper", m.hyper) &&
             add_parsed(doc, "metrics", m.metrics) &&
             cJSON_AddNumberToObject(doc, "n_params", (double)m.n_params);
    store_model_free(&m);
    reply_built(r, 200, doc, ok);
}

void h_version_delete(Req *r) {
    int version;
    if (!path_version(r, r->params[1], &version)) return;
    Store *st = req_store(r);
    if (!st) return;
    MsError err = {0};
    MsStatus s = store_model_delete(st, r->params[0], version, &err);
    if (s != MS_OK) {
        reply_status(r, s, &err);
        return;
    }
    serving_invalidate(r->app->serving, r->params[0]);
    reply_empty(r, 204);
}

/* ---- aliases ---- */

void h_alias_put(Req *r) {
    static const char *const fields[] = {"version", NULL};
    const cJSON *body = r->json; // parsed by dispatch
    long long version = 0;
    if (!body_fields(r, body, "body", fields) ||
        !body_int(r, body, "version", 1, INT_MAX, 1, &version))
        return;
    Store *st = req_store(r);
    if (!st) return;
    MsError err = {0};
    MsStatus s = store_alias_set(st, r->params[0], r->params[1], (int)version, &err);
    if (s != MS_OK) {
        reply_status(r, s, &err);
        return;
    }
    serving_forget_refs(r->app->serving, r->params[0]);
    // both names passed the store's validation: safe to echo
    cJSON *doc = cJSON_CreateObject();
    int ok = cJSON_AddStringToObject(doc, "name", r->params[0]) &&
             cJSON_AddStringToObject(doc, "alias", r->params[1]) &&
             cJSON_AddNumberToObject(doc, "version", (double)version);
    reply_built(r, 200, doc, ok);
}

void h_alias_delete(Req *r) {
    Store *st = req_store(r);
    if (!st) return;
    MsError err = {0};
    MsStatus s = store_alias_delete(st, r->params[0], r->params[1], &err);
    if (s != MS_OK) {
        reply_status(r, s, &err);
        return;
    }
    serving_forget_refs(r->app->serving, r->params[0]);
    reply_empty(r, 204);
}

/* ---- weights ---- */

// Adds P reals in the layer layout under key, as the codec prints them; 0 on failure.
static int add_weights(cJSON *o, const char *key, const MlpSpec *spec, const float *theta) {
    char *text = NULL;
    MsError err = {0};
    if (codec_weights_print(spec, theta, &text, &err) != MS_OK) return 0;
    int ok = cJSON_AddRawToObject(o, key, text) != NULL;
    free(text);
    return ok;
}

void h_model_weights(Req *r) {
    int want_st = weights_want_safetensors(r);
    if (want_st < 0) return;
    Store *st = req_store(r);
    if (!st) return;
    MsError err = {0};
    ServingModel *m = NULL;
    MsStatus s = serving_get(r->app->serving, st, r->params[0], &m, &err);
    if (s != MS_OK) {
        reply_status(r, s, &err);
        return;
    }
    if (want_st) { // h_weights.c
        weights_model_safetensors(r, st, m);
        serving_release(r->app->serving, m);
        return;
    }
    const MlpSpec *spec = &m->spec;
    cJSON *doc = cJSON_CreateObject();
    int ok = cJSON_AddStringToObject(doc, "name", m->name) &&
             cJSON_AddNumberToObject(doc, "version", m->version);
    cJSON *sizes = ok ? cJSON_AddArrayToObject(doc, "sizes") : NULL;
    ok = sizes != NULL;
    for (int i = 0; i <= spec->L && ok; i++) {
        cJSON *v = cJSON_CreateNumber(spec->sizes[i]);
        ok = v && cJSON_AddItemToArray(sizes, v);
        if (!ok) cJSON_Delete(v);
    }
    ok = ok && cJSON_AddStringToObject(doc, "activation", mlp_act_name(spec->act)) &&
         cJSON_AddStringToObject(doc, "head", mlp_head_name(spec->head)) &&
         add_weights(doc, "weights", spec, m->theta) &&
         (m->lrs ? add_weights(doc, "lrs", spec, m->lrs)
                 : cJSON_AddNullToObject(doc, "lrs") != NULL);
    serving_release(r->app->serving, m);
    reply_built(r, 200, doc, ok);
}
