/*
 * A small HTTP client for the HTTP test suites, over libcurl: one request per call on a fresh
 * easy handle (no shared state, so any thread may call it; curl_global_init must run once in
 * main before threads start), the status, the raw response headers and the body kept in memory,
 * the body parsed as JSON on demand, and a growable string for building request bodies.
 *
 * It knows nothing about Check: every function returns values and the suites assert on them.
 *
 * Usage:
 *     HcClient c = {.base = "http://127.0.0.1:8080", .key = NULL};
 *     HcResp r;
 *     hc_call(&c, &r, "POST", "/v1/jobs", "{...}");   // r.status, r.body, r.json
 *     char rid[128]; hc_header(&r, "X-Request-ID", rid, sizeof rid);
 *     hc_free(&r);
 */
#ifndef METASERVE_TESTS_HTTPC_H
#define METASERVE_TESTS_HTTPC_H

#include <arpa/inet.h>
#include <cJSON.h>
#include <curl/curl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* ---- time: deadlines and pauses of the suites (never asserted on as durations) ---- */

static inline double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static inline void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* ---- a growable string ---- */

typedef struct {
    char *s;    // NUL-terminated; NULL only after an allocation failure
    size_t len; // bytes before the NUL
    size_t cap;
} HcBuf;

// A plain TCP connection to 127.0.0.1:port, for requests libcurl would normalise or frame;
// the socket, or -1 (errno set).
static inline int hc_connect_loopback(int port) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static inline void hc_buf_init(HcBuf *b) {
    b->cap = 256;
    b->len = 0;
    b->s = malloc(b->cap);
    if (b->s) b->s[0] = '\0';
}

static inline void hc_buf_add(HcBuf *b, const char *data, size_t n) {
    if (!b->s) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *s = realloc(b->s, cap);
        if (!s) {
            free(b->s);
            b->s = NULL;
            return;
        }
        b->s = s;
        b->cap = cap;
    }
    memcpy(b->s + b->len, data, n);
    b->len += n;
    b->s[b->len] = '\0';
}

static inline void hc_buf_puts(HcBuf *b, const char *s) {
    hc_buf_add(b, s, strlen(s));
}

static inline void hc_buf_printf(HcBuf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static inline void hc_buf_printf(HcBuf *b, const char *fmt, ...) {
    char small[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n < sizeof small) {
        hc_buf_add(b, small, (size_t)n);
        return;
    }
    char *big = malloc((size_t)n + 1);
    if (!big) return;
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    hc_buf_add(b, big, (size_t)n);
    free(big);
}

static inline void hc_buf_free(HcBuf *b) {
    free(b->s);
    b->s = NULL;
    b->len = b->cap = 0;
}

/* ---- requests ---- */

/** Where to send requests and with which key (NULL: no Authorization header). */
typedef struct {
    char base[64];   // "http://127.0.0.1:PORT"
    const char *key; // bearer key, borrowed
} HcClient;

/** One request; unset fields take their zero meaning. */
typedef struct {
    const char *method;       // "GET", "POST", ...
    const char *path;         // "/v1/jobs?page_size=1"
    const char *body;         // NULL: no body
    size_t body_len;          // bytes of body (0 with body set: strlen(body))
    const char *content_type; // NULL with a body: application/json
    const char *key;          // bearer key, NULL: none
    const char *raw_auth;     // a whole Authorization header value (overrides key)
    const char *request_id;   // X-Request-ID to send, NULL: none
    const char *header;       // one more request header line ("Name: value"), NULL: none
    int chunked;              // 1: Transfer-Encoding: chunked (no Content-Length)
    int expect_continue;      // 1: send Expect: 100-continue (the server may refuse the body)
    long timeout_s;           // 0: 60 s (only to fail instead of hanging)
} HcReq;

/** A response: status -1 when the transfer failed (err holds libcurl's message). */
typedef struct {
    long status;
    char *body; // NUL-terminated, body_len bytes (never NULL after hc_do)
    size_t body_len;
    char *headers; // raw header block of the final response, NUL-terminated
    cJSON *json;   // body parsed as JSON, NULL when it is not JSON
    char err[CURL_ERROR_SIZE];
} HcResp;

typedef struct {
    const char *data;
    size_t len, off;
} HcSrc;

static inline size_t hc_read_cb(char *dst, size_t size, size_t n, void *p) {
    HcSrc *s = p;
    size_t want = size * n, left = s->len - s->off;
    // hand out at most 16 KiB at a time so that chunked bodies arrive in several chunks
    if (want > 16384) want = 16384;
    if (want > left) want = left;
    memcpy(dst, s->data + s->off, want);
    s->off += want;
    return want;
}

static inline size_t hc_write_cb(char *data, size_t size, size_t n, void *p) {
    hc_buf_add(p, data, size * n);
    return size * n;
}

static inline size_t hc_header_cb(char *data, size_t size, size_t n, void *p) {
    HcBuf *b = p;
    // a new status line (after a 100 Continue) starts the block again: keep the final one
    if (size * n >= 5 && strncmp(data, "HTTP/", 5) == 0) {
        b->len = 0;
        if (b->s) b->s[0] = '\0';
    }
    hc_buf_add(b, data, size * n);
    return size * n;
}

/** Sends q and fills out (release with hc_free). Returns out->status. */
static inline long hc_do(const HcClient *c, HcResp *out, const HcReq *q) {
    memset(out, 0, sizeof *out);
    out->status = -1;
    HcBuf body, head;
    hc_buf_init(&body);
    hc_buf_init(&head);
    char url[1024];
    snprintf(url, sizeof url, "%s%s", c->base, q->path);
    CURL *h = curl_easy_init();
    struct curl_slist *hl = NULL;
    HcSrc src = {q->body, q->body ? (q->body_len ? q->body_len : strlen(q->body)) : 0, 0};
    char line[512];
    if (!h) {
        snprintf(out->err, sizeof out->err, "curl_easy_init failed");
        goto done;
    }
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, q->method);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, q->timeout_s > 0 ? q->timeout_s : 60L);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, out->err);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, hc_write_cb);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &body);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, hc_header_cb);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, &head);
    if (strcmp(q->method, "HEAD") == 0) curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
    if (q->body) {
        curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(h, CURLOPT_READFUNCTION, hc_read_cb);
        curl_easy_setopt(h, CURLOPT_READDATA, &src);
        if (q->chunked) {
            hl = curl_slist_append(hl, "Transfer-Encoding: chunked");
        } else {
            curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE, (curl_off_t)src.len);
        }
        snprintf(line, sizeof line, "Content-Type: %s",
                 q->content_type ? q->content_type : "application/json");
        hl = curl_slist_append(hl, line);
        // libcurl adds Expect: 100-continue to large uploads on its own; say what we mean
        hl = curl_slist_append(hl, q->expect_continue ? "Expect: 100-continue" : "Expect:");
    }
    if (q->raw_auth) {
        snprintf(line, sizeof line, "Authorization: %s", q->raw_auth);
        hl = curl_slist_append(hl, line);
    } else if (q->key) {
        snprintf(line, sizeof line, "Authorization: Bearer %s", q->key);
        hl = curl_slist_append(hl, line);
    }
    if (q->request_id) {
        snprintf(line, sizeof line, "X-Request-ID: %s", q->request_id);
        hl = curl_slist_append(hl, line);
    }
    if (q->header) hl = curl_slist_append(hl, q->header);
    if (hl) curl_easy_setopt(h, CURLOPT_HTTPHEADER, hl);
    if (curl_easy_perform(h) == CURLE_OK)
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &out->status);
done:
    curl_slist_free_all(hl);
    if (h) curl_easy_cleanup(h);
    out->body = body.s ? body.s : calloc(1, 1);
    out->body_len = body.s ? body.len : 0;
    out->headers = head.s ? head.s : calloc(1, 1);
    out->json = out->body ? cJSON_ParseWithLength(out->body, out->body_len) : NULL;
    return out->status;
}

/** hc_do with the client's key and a JSON body (NULL: none). */
static inline long hc_call(const HcClient *c, HcResp *out, const char *method, const char *path,
                           const char *json_body) {
    HcReq q = {.method = method, .path = path, .body = json_body, .key = c->key};
    return hc_do(c, out, &q);
}

static inline void hc_free(HcResp *r) {
    free(r->body);
    free(r->headers);
    cJSON_Delete(r->json);
    memset(r, 0, sizeof *r);
}

/** Copies the value of header name (case-insensitive) into out; returns out, or NULL when the
 *  response has no such header. */
static inline char *hc_header(const HcResp *r, const char *name, char *out, size_t n) {
    size_t k = strlen(name);
    for (const char *p = r->headers; p && *p;) {
        const char *eol = strstr(p, "\r\n");
        size_t len = eol ? (size_t)(eol - p) : strlen(p);
        if (len > k && strncasecmp(p, name, k) == 0 && p[k] == ':') {
            const char *v = p + k + 1;
            while (*v == ' ' || *v == '\t')
                v++;
            size_t vn = (size_t)(p + len - v);
            if (vn >= n) vn = n - 1;
            memcpy(out, v, vn);
            out[vn] = '\0';
            return out;
        }
        p = eol ? eol + 2 : p + len;
    }
    return NULL;
}

/** The string member key of the response's JSON object, or NULL. */
static inline const char *hc_str(const HcResp *r, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(r->json, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/** The number member key of the response's JSON object, or NaN. */
static inline double hc_num(const HcResp *r, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(r->json, key);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

/**
 * Checks that r is an RFC 9457 problem document of the given status whose type ends in
 * "/problems/<slug>", with title, detail, instance, and a request_id equal to the X-Request-ID
 * header. Returns NULL when it is, else a static description of the first mismatch (for the
 * assertion message; not thread-safe, like the suites that print it).
 */
static inline const char *hc_problem_mismatch(const HcResp *r, long status, const char *slug) {
    static char why[1024];
    char ct[128], rid[128];
    const char *type = hc_str(r, "type");
    size_t tn = type ? strlen(type) : 0, sn = strlen(slug);
    if (r->status != status)
        snprintf(why, sizeof why, "status %ld, expected %ld; body %.600s", r->status, status,
                 r->body);
    else if (!hc_header(r, "Content-Type", ct, sizeof ct) ||
             strcmp(ct, "application/problem+json") != 0)
        snprintf(why, sizeof why, "Content-Type is not application/problem+json");
    else if (!type || tn < sn + 10 || strcmp(type + tn - sn, slug) != 0 ||
             strncmp(type + tn - sn - 10, "/problems/", 10) != 0)
        snprintf(why, sizeof why, "type %s, expected .../problems/%s", type ? type : "(none)",
                 slug);
    else if (hc_num(r, "status") != (double)status)
        snprintf(why, sizeof why, "the document's status is not %ld", status);
    else if (!hc_str(r, "title") || !hc_str(r, "detail") || !hc_str(r, "instance"))
        snprintf(why, sizeof why, "title, detail or instance missing: %.600s", r->body);
    else if (!hc_header(r, "X-Request-ID", rid, sizeof rid) || !hc_str(r, "request_id") ||
             strcmp(rid, hc_str(r, "request_id")) != 0)
        snprintf(why, sizeof why, "request_id does not match X-Request-ID");
    else
        return NULL;
    return why;
}

#endif
