/*
 * Replies and request helpers shared by every handler: JSON and problem documents, status
 * mapping, query parameters, pagination, the thread's store connection, and the length-bounded
 * JSON parse (a syntax check of our own that names the offending byte, then
 * cJSON_ParseWithLengthOpts on the NUL-terminated body copy).
 *
 * A problem document is valid UTF-8 JSON whatever the request held: user text echoed in `detail`
 * has every byte that is not UTF-8 replaced by U+FFFD, and `instance` is the path as received
 * with every byte a URI may not hold percent-encoded (a uri-reference, ASCII).
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

void reply_header(Req *r, const char *name, const char *value) {
    if (r->n_headers == REQ_MAX_HEADERS) return;
    r->headers[r->n_headers][0] = name;
    r->headers[r->n_headers++][1] = value;
}

size_t utf8_seq_len(const char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    if (u[0] < 0x80) return 1;
    size_t len = u[0] >= 0xC2 && u[0] <= 0xDF   ? 2
                 : u[0] >= 0xE0 && u[0] <= 0xEF ? 3
                 : u[0] >= 0xF0 && u[0] <= 0xF4 ? 4
                                                : 0;
    if (len == 0 || len > n) return 0;
    for (size_t i = 1; i < len; i++)
        if ((u[i] & 0xC0) != 0x80) return 0;
    // the second byte's range rules out overlong forms, surrogates and code points > U+10FFFF
    if ((u[0] == 0xE0 && u[1] < 0xA0) || (u[0] == 0xED && u[1] > 0x9F) ||
        (u[0] == 0xF0 && u[1] < 0x90) || (u[0] == 0xF4 && u[1] > 0x8F))
        return 0;
    return len;
}

// Appends s to out at *n as a JSON string taking at most max bytes of out (max >= 8, quotes
// included): '"' and '\\' escaped, control characters as \u00XX, UTF-8 sequences copied, and
// each byte that starts none replaced by \ufffd (U+FFFD), so that user text echoed in a problem
// never makes the document invalid. s is cut between characters when it does not fit.
static void put_json_string(char *out, size_t *n, const char *s, size_t max) {
    size_t k = *n, end = *n + max - 1; // the closing quote goes at end at the latest
    out[k++] = '"';
    for (size_t i = 0, len = strlen(s), step; i < len; i += step) {
        unsigned char c = (unsigned char)s[i];
        char unit[8]; // what s[i..i+step) becomes
        size_t un = step = utf8_seq_len(s + i, len - i);
        if (step == 0) {
            memcpy(unit, "\\ufffd", 6);
            un = 6, step = 1;
        } else if (c == '"' || c == '\\') {
            unit[0] = '\\', unit[1] = (char)c;
            un = 2;
        } else if (c < 0x20) {
            un = (size_t)snprintf(unit, sizeof unit, "\\u%04x", c);
        } else {
            memcpy(unit, s + i, un);
        }
        if (k + un > end) break;
        memcpy(out + k, unit, un);
        k += un;
    }
    out[k++] = '"';
    out[k] = '\0';
    *n = k;
}

// Appends the request path p to out at *n as a JSON string taking at most max bytes of out (max
// >= 8): a URI reference (RFC 3986 §4.1) whatever the client sent. Unreserved characters,
// sub-delims, ':', '@', '/' and well-formed %HH escapes stay as they are, every other byte
// becomes %HH (a '%' that starts no escape: %25); none of them needs a JSON escape. p is cut
// between characters and escapes when it does not fit.
static void put_uri_string(char *out, size_t *n, const char *p, size_t max) {
    static const char keep[] = "-._~!$&'()*+,;=:@/";
    size_t k = *n, end = *n + max - 1;
    out[k++] = '"';
    for (; *p; p++) {
        unsigned char c = (unsigned char)*p;
        int escape = c == '%' && hex_digit(p[1]) >= 0 && hex_digit(p[2]) >= 0;
        int as_is = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    (c != '\0' && strchr(keep, c) != NULL);
        if (k + (as_is ? 1 : 3) > end) break;
        if (escape) {
            memcpy(out + k, p, 3);
            p += 2;
        } else if (as_is) {
            out[k] = (char)c;
        } else {
            snprintf(out + k, 4, "%%%02X", c);
        }
        k += as_is ? 1 : 3;
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
    // field budgets: 96 + 96 + 24 + 1040 + 12 + 600 + 14 + 2 * REQ_ID_MAX + 1 + 10 + 520
    // (the /v2 "error" member) < sizeof problem
    _Static_assert(sizeof r->problem >= 2600, "problem buffer budget");
    char *d = r->problem;
    size_t n = (size_t)snprintf(d, 96, "{\"type\":\"https://metaserve.dev/problems/%s\",", slug);
    if (r->url && oip_path(r->url)) {
        // the Open Inference Protocol's error document is {"error": "..."}: the detail again
        memcpy(d + n, "\"error\":", 8), n += 8;
        put_json_string(d, &n, detail, 520);
        d[n++] = ',';
    }
    memcpy(d + n, "\"title\":", 8), n += 8;
    put_json_string(d, &n, problem_title(slug), 80);
    n += (size_t)snprintf(d + n, 24, ",\"status\":%d,", status);
    memcpy(d + n, "\"detail\":", 9), n += 9;
    put_json_string(d, &n, detail, 1024);
    memcpy(d + n, ",\"instance\":", 12), n += 12;
    put_uri_string(d, &n, r->url ? r->url : "", 600);
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

int oip_path(const char *path) {
    return strncmp(path, "/v2", 3) == 0 && (path[3] == '\0' || path[3] == '/');
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

// This thread's connection, opened on first use; NULL (with a 503 when reply) when it cannot be.
static Store *store_for(Req *r, int reply) {
    if (r->store) return r->store;
    pthread_once(&store_once, make_key);
    Store *s = pthread_getspecific(store_key);
    if (!s) {
        MsError err = {0};
        if (store_open_opts(&s, r->app->cfg.db, &r->app->store_opts, &err) != MS_OK) {
            if (reply) reply_problem(r, 503, "unavailable", "database unavailable: %s", err.msg);
            return NULL;
        }
        pthread_setspecific(store_key, s);
    }
    r->store = s;
    return s;
}

Store *req_store(Req *r) {
    return store_for(r, 1);
}

Store *req_store_if_up(Req *r) {
    return store_for(r, 0);
}
