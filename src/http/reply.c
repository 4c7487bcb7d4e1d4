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
    if (!r->reply) {
        reply_problem(r, 503, "unavailable", "out of memory copying the response");
        return;
    }
    memcpy(r->reply, data, len);
    r->reply[len] = '\0';
    r->reply_len = len;
    r->status = status;
    r->content_type = content_type;
}

void reply_json(Req *r, int status, cJSON *doc) {
    char *s = doc ? cJSON_PrintUnformatted(doc) : NULL;
    cJSON_Delete(doc);
    if (!s) {
        // a NULL doc is a handler's failed cJSON_Create*, a NULL text a failed print: both OOM
        reply_problem(r, 503, "unavailable", "out of memory rendering the response");
        return;
    }
    free(r->reply);
    r->reply = s;
    r->reply_len = strlen(s);
    r->status = status;
    r->content_type = "application/json";
}

void reply_json_committed(Req *r, int status, cJSON *doc, char *reserve, size_t cap,
                          const char *fmt, ...) {
    char *s = doc ? cJSON_PrintUnformatted(doc) : NULL;
    cJSON_Delete(doc);
    if (!s && reserve) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(reserve, cap, fmt, ap);
        va_end(ap);
        if (n >= 0 && (size_t)n < cap) s = reserve, reserve = NULL;
    }
    free(reserve);
    if (!s) {
        reply_problem(r, 503, "unavailable", "out of memory rendering the response");
        return;
    }
    free(r->reply);
    r->reply = s;
    r->reply_len = strlen(s);
    r->status = status;
    r->content_type = "application/json";
}

void reply_built(Req *r, int status, cJSON *doc, int ok) {
    if (!doc || !ok) {
        cJSON_Delete(doc);
        reply_problem(r, 503, "unavailable", "out of memory while rendering the response");
        return;
    }
    reply_json(r, status, doc);
}

void reply_nomem(Req *r) {
    MsError e = {.code = MS_ERR_NOMEM, .msg = "out of memory building the response"};
    reply_status(r, MS_ERR_NOMEM, &e);
}

void reply_text(Req *r, int status, char *text, size_t len) {
    if (!len) {
        free(text);
        reply_problem(r, 503, "unavailable", "out of memory rendering the response");
        return;
    }
    free(r->reply);
    r->reply = text;
    r->reply_len = len;
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

// Appends s to out at *n as a JSON string, escaped as cJSON escapes, taking at most max bytes
// of out (max >= 8) and cutting s at a UTF-8 character boundary when it does not fit.
static void put_json_string(char *out, size_t *n, const char *s, size_t max) {
    size_t k = *n, end = *n + max - 1; // the closing quote goes at end at the latest
    out[k++] = '"';
    for (size_t i = 0; s[i]; i++) {
        unsigned char c = (unsigned char)s[i];
        if (k + 6 >= end) {
            // no room: drop a partial UTF-8 sequence (bytes >= 0x80 are copied one for one)
            while (i > 0 && ((unsigned char)s[i] & 0xC0) == 0x80 && (unsigned char)s[i - 1] >= 0x80)
                i--, k--;
            break;
        }
        if (c == '"' || c == '\\') {
            out[k++] = '\\';
            out[k++] = (char)c;
        } else if (c < 0x20) {
            k += (size_t)sprintf(out + k, "\\u%04x", c);
        } else {
            out[k++] = (char)c;
        }
    }
    out[k++] = '"';
    out[k] = '\0';
    *n = k;
}

// Problem documents are rendered into the request's own buffer, without allocating, so that
// an out-of-memory error can always be reported.
void reply_problem(Req *r, int status, const char *slug, const char *fmt, ...) {
    char detail[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    // field budgets: 96 + 96 + 24 + 1040 + 12 + 600 + 14 + 2 * REQ_ID_MAX + 1 < sizeof problem
    _Static_assert(sizeof r->problem >= 2048, "problem buffer budget");
    char *d = r->problem;
    size_t n = (size_t)snprintf(d, 96, "{\"type\":\"https://metaserve.dev/problems/%s\",", slug);
    memcpy(d + n, "\"title\":", 8), n += 8;
    put_json_string(d, &n, problem_title(slug), 80);
    n += (size_t)snprintf(d + n, 24, ",\"status\":%d,", status);
    memcpy(d + n, "\"detail\":", 9), n += 9;
    put_json_string(d, &n, detail, 1024);
    memcpy(d + n, ",\"instance\":", 12), n += 12;
    put_json_string(d, &n, r->url ? r->url : "", 600);
    memcpy(d + n, ",\"request_id\":", 14), n += 14;
    put_json_string(d, &n, r->id, 2 * REQ_ID_MAX);
    d[n++] = '}';
    d[n] = '\0';
    free(r->reply);
    r->reply = NULL;
    r->reply_len = n;
    r->status = status;
    r->content_type = "application/problem+json";
    if ((status == 503 || status == 429) && !r->retry_after[0])
        snprintf(r->retry_after, sizeof r->retry_after, "%d", status == 429 ? 5 : 1);
}

void reply_status(Req *r, MsStatus st, const MsError *err) {
    int h;
    const char *slug;
    // the detail counts only when err describes st (a caller may pass a status of its own)
    MsDetail detail = err && err->code == st ? err->detail : MS_DETAIL_NONE;
    problem_for_status(st, detail, &h, &slug, NULL);
    const char *msg = err && err->msg[0] ? err->msg : ms_status_str(st);
    reply_problem(r, h, slug, "%s", msg);
}

int req_json_syntax_ok(Req *r) {
    const char *b = r->body ? r->body : "";
    size_t off;
    if (json_syntax(b, r->body_len, &off)) {
        // valid JSON, but cJSON would cut the string short at the NUL ("x\u0000y" read as "x"):
        // no field takes a NUL, so refuse it rather than act on a different text
        if ((off = json_nul_escape(b, r->body_len)) == r->body_len) return 1;
        reply_problem(r, 422, "validation",
                      "body: the string at byte offset %zu holds \\u0000 (NUL), which no field "
                      "accepts",
                      off);
        return 0;
    }
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
    // json_syntax enforces cJSON's nesting limit (1000), so a valid text fails only for memory
    if (!doc) reply_problem(r, 503, "unavailable", "out of memory parsing the body");
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

void reply_list(Req *r, const ListKind *k) {
    int size;
    const char *token;
    if (!req_page(r, PAGE_SIZE_DEFAULT, PAGE_SIZE_MAX, &size, &token)) return;
    Store *st = req_store(r);
    if (!st) return;
    void *rows = NULL;
    int n = 0, more = 0;
    MsError err = {0};
    MsStatus s = k->list(st, token, size, &rows, &n, &more, &err);
    if (s == MS_ERR_INVALID) {
        reply_problem(r, 422, "validation", "%s", k->bad_token);
        return;
    }
    if (s != MS_OK) {
        reply_status(r, s, &err);
        return;
    }
    char *row = rows;
    JsonBuild b = {0};
    cJSON *doc = cJSON_CreateObject();
    cJSON *list = json_put(&b, doc, k->key, cJSON_CreateArray());
    for (int i = 0; i < n && !b.oom; i++)
        json_put(&b, list, NULL, k->render(&b, row + (size_t)i * k->row_size));
    json_put(&b, doc, "next_page_token",
             more && n > 0 ? cJSON_CreateString(k->id(row + (size_t)(n - 1) * k->row_size))
                           : cJSON_CreateNull());
    for (int i = 0; i < n; i++)
        k->free_row(row + (size_t)i * k->row_size);
    free(rows);
    if (b.oom) {
        cJSON_Delete(doc);
        reply_nomem(r);
        return;
    }
    reply_json(r, 200, doc);
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
        if (store_open_opts(&s, r->app->cfg.db, &r->app->store_opts, &err) != MS_OK) {
            reply_problem(r, 503, "unavailable", "database unavailable: %s", err.msg);
            return NULL;
        }
        pthread_setspecific(store_key, s);
    }
    r->store = s;
    return s;
}
