/*
 * Replies and request helpers shared by every handler: JSON and problem documents, status
 * mapping, query parameters, pagination, the thread's store connection, and the length-bounded
 * JSON parse (a syntax check of our own that names the offending byte, then
 * cJSON_ParseWithLengthOpts on the NUL-terminated body copy).
 */
#include <microhttpd.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"

void reply_raw(Req *r, int status, const char *content_type, const char *data, size_t len) {
    free(r->reply);
    r->reply = malloc(len + 1);
    if (r->reply) {
        memcpy(r->reply, data, len);
        r->reply[len] = '\0';
        r->reply_len = len;
    } else {
        r->reply_len = 0;
        status = 500;
    }
    r->status = status;
    r->content_type = content_type;
}

void reply_json(Req *r, int status, cJSON *doc) {
    char *s = doc ? cJSON_PrintUnformatted(doc) : NULL;
    cJSON_Delete(doc);
    if (!s) {
        reply_problem(r, 500, "internal", "could not render the response");
        return;
    }
    free(r->reply);
    r->reply = s;
    r->reply_len = strlen(s);
    r->status = status;
    r->content_type = "application/json";
}

void reply_empty(Req *r, int status) {
    free(r->reply);
    r->reply = NULL;
    r->reply_len = 0;
    r->status = status;
    r->content_type = NULL;
}

void reply_problem(Req *r, int status, const char *slug, const char *fmt, ...) {
    char detail[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    cJSON *d = cJSON_CreateObject();
    char type[128];
    snprintf(type, sizeof type, "https://metaserve.dev/problems/%s", slug);
    cJSON_AddStringToObject(d, "type", type);
    cJSON_AddStringToObject(d, "title", problem_title(slug));
    cJSON_AddNumberToObject(d, "status", status);
    cJSON_AddStringToObject(d, "detail", detail);
    cJSON_AddStringToObject(d, "instance", r->url ? r->url : "");
    cJSON_AddStringToObject(d, "request_id", r->id);
    char *s = cJSON_PrintUnformatted(d);
    cJSON_Delete(d);
    free(r->reply);
    r->reply = s;
    r->reply_len = s ? strlen(s) : 0;
    r->status = status;
    r->content_type = "application/problem+json";
    if ((status == 503 || status == 429) && !r->retry_after[0])
        snprintf(r->retry_after, sizeof r->retry_after, "%d", status == 429 ? 5 : 1);
}

void reply_status(Req *r, MsStatus st, const MsError *err) {
    int h;
    const char *slug;
    problem_for_status(st, &h, &slug, NULL);
    const char *msg = err && err->msg[0] ? err->msg : ms_status_str(st);
    // storage exhaustion is its own class (507), told apart by the store's message
    if (st == MS_ERR_DB && strstr(msg, "disk full")) h = 507, slug = "storage-full";
    reply_problem(r, h, slug, "%s", msg);
}

int req_json_syntax_ok(Req *r) {
    const char *b = r->body ? r->body : "";
    size_t off;
    if (json_syntax(b, r->body_len, &off)) return 1;
    if (off >= r->body_len)
        reply_problem(r, 400, "malformed-json", "body: JSON ends early at byte offset %zu", off);
    else
        reply_problem(r, 400, "malformed-json", "body: malformed JSON at byte offset %zu", off);
    return 0;
}

cJSON *req_json(Req *r) {
    // Syntax is checked by our own recogniser first: cJSON records a failed parse in a global
    // (not thread-safe), so with valid syntax its failure path is never taken.
    if (!req_json_syntax_ok(r)) return NULL;
    cJSON *doc = cJSON_ParseWithLengthOpts(r->body, r->body_len, NULL, 0);
    if (!doc) reply_problem(r, 400, "malformed-json", "body: JSON nested too deeply");
    return doc;
}

const char *req_query(Req *r, const char *name) {
    return r->conn ? MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, name) : NULL;
}

int req_page(Req *r, int def, int max, int *size, const char **token) {
    const char *ps = req_query(r, "page_size"), *pt = req_query(r, "page_token");
    *size = def;
    *token = pt ? pt : "";
    if (ps) {
        char *end;
        long v = strtol(ps, &end, 10);
        if (*ps == '\0' || *end != '\0' || v < 1 || v > max) {
            reply_problem(r, 422, "validation", "page_size: must be an integer in 1..%d", max);
            return 0;
        }
        *size = (int)v;
    }
    if (strlen(*token) >= 200) {
        reply_problem(r, 422, "validation", "page_token: not a token this service issued");
        return 0;
    }
    return 1;
}

/* ---- the thread's store connection ---- */

static pthread_key_t store_key;
static pthread_once_t store_once = PTHREAD_ONCE_INIT;

static void close_store(void *p) {
    store_close(p);
}
static void make_key(void) {
    pthread_key_create(&store_key, close_store);
}

Store *req_store(Req *r) {
    if (r->store) return r->store;
    pthread_once(&store_once, make_key);
    Store *s = pthread_getspecific(store_key);
    if (!s) {
        MsError err = {0};
        if (store_open(&s, r->app->cfg.db, &err) != MS_OK) {
            reply_problem(r, 503, "unavailable", "database unavailable: %s", err.msg);
            return NULL;
        }
        pthread_setspecific(store_key, s);
    }
    r->store = s;
    return s;
}
