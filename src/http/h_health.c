/*
 * Health, metrics and the contract: /livez (the process answers; no database access), /readyz
 * (database open and migrated, not draining), /metrics (Prometheus text) and /openapi.yaml.
 */
#include <stdlib.h>

#include "http.h"

void h_livez(Req *r) {
    cJSON *d = cJSON_CreateObject();
    cJSON_AddStringToObject(d, "status", "ok");
    reply_json(r, 200, d);
}

void h_readyz(Req *r) {
    if (atomic_load(&r->app->draining)) {
        reply_problem(r, 503, "unavailable", "draining: the service is shutting down");
        return;
    }
    Store *st = req_store(r);
    if (!st) return;
    int v = store_schema_version(st);
    if (v < 0) {
        reply_problem(r, 503, "unavailable", "database unavailable");
        return;
    }
    if (v != STORE_SCHEMA_VERSION) {
        reply_problem(r, 503, "unavailable", "database schema is version %d, this build's is %d", v,
                      STORE_SCHEMA_VERSION);
        return;
    }
    cJSON *d = cJSON_CreateObject();
    cJSON_AddStringToObject(d, "status", "ready");
    reply_json(r, 200, d);
}

void h_metrics(Req *r) {
    size_t n = 0;
    Store *st = req_store_if_up(r); // job counts; the rest renders without the database
    char *text = metrics_render(r->app, st, &n);
    if (!text) {
        reply_problem(r, 500, "internal", "could not render metrics");
        return;
    }
    free(r->reply);
    r->reply = text;
    r->reply_len = n;
    r->status = 200;
    r->content_type = "text/plain; version=0.0.4; charset=utf-8";
}

void h_openapi(Req *r) {
    reply_raw(r, 200, "application/yaml", r->app->openapi, r->app->openapi_len);
}
