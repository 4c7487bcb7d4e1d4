/*
 * The hostile-input catalogue: a table of requests a careless or malicious client may send, each
 * sent over a raw loopback socket (so that headers, framing and bytes are exactly as written) to
 * the real server, started in-process with API keys on a temporary SQLite file. Every entry
 * asserts the exact status, the problem type and a substring of `detail` (the field, or the
 * cause), then that the service is still healthy: GET /readyz is 200 and a known-good prediction
 * still answers the same numbers. Every body is UTF-8 and every JSON body (every problem) strict
 * JSON, checked by a recogniser of this file, and a problem's `instance` is the path as sent with
 * the bytes a URI may not hold percent-encoded. After the catalogue, every model, version,
 * dataset, job and adaptation stored before it reads back byte for byte as before.
 *
 * Categories: malformed JSON (syntax, UTF-8, NUL bytes, nesting), wrong types and out-of-range
 * values for every field of the training config, dataset upload, adapt and predict bodies, wrong
 * shapes and limits, unknown and duplicate fields, hostile ids and names in paths (encoded
 * separators, dot segments, bytes that are not UTF-8, raw spaces and quotes), content types,
 * methods, routes, credentials, and framing (oversized, lying and ambiguous lengths).
 *
 * The bodies of the fuzz corpora (tests/fuzz/corpus, tests/fuzz/regressions) are also sent to
 * every route that reads JSON, and each reply is checked the same way.
 *
 * Two more tests hold connections open: a client that sends its body one byte at a time (it
 * completes; one that stalls longer than the connection timeout is closed) while others are
 * served, and a slowloris of many connections with partial headers.
 *
 * Deadlines (RAW_WAIT_S, the slow tests' bounds) only turn a hang into a failure; nothing asserts
 * on durations.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "../../src/http/http.h"
#define TEST_ROOT_NAME "ms_hostile"
#include "../http/testsrv.h"

#define ADMIN_KEY      "admin-hostile-0123456789abcdef"
#define CLIENT_KEY     "client-hostile-0123456789abcdef"
#define BODY_LIMIT     ((size_t)1 << 20) // max_body_bytes of the server under test
#define CONN_TIMEOUT_S 2                 // its connection (inactivity) timeout
#define RAW_WAIT_S     15.0              // longest wait for a reply before a test fails
#define DEADLINE_S     60.0              // longest wait for a training job

static char g_dir[128];
static Server *g_srv;
static HcClient g_c; // admin key
static int g_port;

/* ---- server ---- */

// Starts the server under test on c (prepared by testsrv_config*) with `workers` threads.
static void server_start_on(ServerConfig *c, int workers) {
    c->workers = workers;
    c->http_threads = 4;
    c->max_body_bytes = BODY_LIMIT;
    c->conn_timeout_s = CONN_TIMEOUT_S;
    c->n_keys = 2;
    c->keys[0].role = ROLE_ADMIN;
    snprintf(c->keys[0].key, sizeof c->keys[0].key, "%s", ADMIN_KEY);
    c->keys[1].role = ROLE_CLIENT;
    snprintf(c->keys[1].key, sizeof c->keys[1].key, "%s", CLIENT_KEY);
    g_port = testsrv_start(&g_srv, &g_c, c);
    g_c.key = ADMIN_KEY;
}

static void server_up(int workers) {
    ServerConfig c;
    testsrv_config_in_new_dir(&c, g_dir, sizeof g_dir, "hostile.db");
    server_start_on(&c, workers);
}

// Stops the server and starts it again on the same database with `workers` threads.
static void server_restart(int workers) {
    testsrv_stop(&g_srv, NULL);
    ServerConfig c;
    testsrv_config(&c, testsrv_db);
    server_start_on(&c, workers);
}

static void server_down(void) {
    testsrv_stop(&g_srv, g_dir);
}

/* ---- raw requests ---- */

static int connect_server(void) {
    int fd = hc_connect_loopback(g_port);
    ck_assert_msg(fd >= 0, "connect: %s", strerror(errno));
    return fd;
}

// Sends all of data; 0 when the server closed the connection first (it may refuse early).
static int send_all(int fd, const char *data, size_t n) {
    while (n > 0) {
        ssize_t w = send(fd, data, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return 0;
        data += w, n -= (size_t)w;
    }
    return 1;
}

// Reads until the server closes fd or wait_s passes. Returns 1 on close, 0 on the deadline.
static int read_all(int fd, HcBuf *in, double wait_s) {
    double end = now_s() + wait_s;
    char buf[65536];
    for (;;) {
        int ms = (int)((end - now_s()) * 1e3);
        if (ms <= 0) return 0;
        struct pollfd p = {fd, POLLIN, 0};
        int k = poll(&p, 1, ms);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return 0;
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return 1; // EOF, or a reset after the reply
        hc_buf_add(in, buf, (size_t)n);
    }
}

// Splits a raw response into out (as hc_do fills it). status -1 when no status line arrived.
static void parse_response(HcResp *out, const HcBuf *in) {
    memset(out, 0, sizeof *out);
    out->status = -1;
    const char *s = in->s ? in->s : "";
    const char *eoh = strstr(s, "\r\n\r\n");
    if (strncmp(s, "HTTP/1.", 7) == 0 && strlen(s) > 12) out->status = strtol(s + 9, NULL, 10);
    size_t hn = eoh ? (size_t)(eoh - s) + 4 : strlen(s);
    out->headers = strndup(s, hn);
    out->body_len = in->len > hn ? in->len - hn : 0;
    out->body = malloc(out->body_len + 1);
    memcpy(out->body, s + hn, out->body_len);
    out->body[out->body_len] = '\0';
    out->json = cJSON_ParseWithLength(out->body, out->body_len);
}

// One request on a fresh connection; returns 1 when the server closed it (0: still open at the
// deadline).
static int raw_call(HcResp *out, const char *req, size_t n, double wait_s) {
    int fd = connect_server();
    HcBuf in;
    hc_buf_init(&in);
    send_all(fd, req, n);
    int closed = read_all(fd, &in, wait_s);
    close(fd);
    parse_response(out, &in);
    hc_buf_free(&in);
    return closed;
}

/* ---- what every reply must be: strict UTF-8 JSON, and a path as the instance ---- */

// Bytes of the UTF-8 sequence at s (n bytes left), or 0 when none starts there: overlong forms,
// UTF-16 surrogates, code points beyond U+10FFFF, stray continuation bytes and sequences cut
// short are not UTF-8 (RFC 3629 §4).
static size_t utf8_len(const unsigned char *s, size_t n) {
    if (s[0] < 0x80) return 1;
    size_t len = s[0] >= 0xC2 && s[0] <= 0xDF   ? 2
                 : s[0] >= 0xE0 && s[0] <= 0xEF ? 3
                 : s[0] >= 0xF0 && s[0] <= 0xF4 ? 4
                                                : 0;
    if (len == 0 || len > n) return 0;
    for (size_t i = 1; i < len; i++)
        if ((s[i] & 0xC0) != 0x80) return 0;
    if ((s[0] == 0xE0 && s[1] < 0xA0) || (s[0] == 0xED && s[1] > 0x9F) ||
        (s[0] == 0xF0 && s[1] < 0x90) || (s[0] == 0xF4 && s[1] > 0x8F))
        return 0;
    return len;
}

static int utf8_valid(const char *s, size_t n) {
    for (size_t i = 0, k; i < n; i += k)
        if (!(k = utf8_len((const unsigned char *)s + i, n - i))) return 0;
    return 1;
}

// A strict RFC 8259 recogniser, independent of the server's: one value between optional
// whitespace, strings of UTF-8 without raw control characters, the escapes of §7 (a \u
// surrogate only as a high-low pair), numbers of the §6 grammar, nesting up to 512.
typedef struct {
    const unsigned char *s;
    size_t n, i;
    int depth;
} Jp;

static void jp_ws(Jp *p) {
    while (p->i < p->n && strchr(" \t\r\n", p->s[p->i]) && p->s[p->i])
        p->i++;
}

static int jp_lit(Jp *p, const char *w) {
    size_t k = strlen(w);
    if (p->n - p->i < k || memcmp(p->s + p->i, w, k) != 0) return 0;
    p->i += k;
    return 1;
}

static int jp_hex4(Jp *p, unsigned *u) {
    *u = 0;
    for (int k = 0; k < 4; k++, p->i++) {
        int d = p->i < p->n ? hex_digit((char)p->s[p->i]) : -1;
        if (d < 0) return 0;
        *u = *u * 16 + (unsigned)d;
    }
    return 1;
}

static int jp_string(Jp *p) {
    if (p->i >= p->n || p->s[p->i++] != '"') return 0;
    while (p->i < p->n) {
        unsigned char c = p->s[p->i];
        if (c == '"') return p->i++, 1;
        if (c < 0x20) return 0;
        if (c != '\\') {
            size_t k = utf8_len(p->s + p->i, p->n - p->i);
            if (!k) return 0;
            p->i += k;
            continue;
        }
        if (++p->i >= p->n) return 0;
        c = p->s[p->i++];
        if (c == 'u') {
            unsigned u, lo;
            if (!jp_hex4(p, &u)) return 0;
            if (u >= 0xDC00 && u <= 0xDFFF) return 0;
            if (u >= 0xD800 && u <= 0xDBFF &&
                !(jp_lit(p, "\\u") && jp_hex4(p, &lo) && lo >= 0xDC00 && lo <= 0xDFFF))
                return 0;
        } else if (!strchr("\"\\/bfnrt", c) || !c) {
            return 0;
        }
    }
    return 0;
}

static int jp_digits(Jp *p) {
    size_t i0 = p->i;
    while (p->i < p->n && p->s[p->i] >= '0' && p->s[p->i] <= '9')
        p->i++;
    return p->i > i0;
}

static int jp_number(Jp *p) {
    if (p->i < p->n && p->s[p->i] == '-') p->i++;
    if (p->i < p->n && p->s[p->i] == '0')
        p->i++;
    else if (!jp_digits(p))
        return 0;
    if (p->i < p->n && p->s[p->i] == '.' && (++p->i, !jp_digits(p))) return 0;
    if (p->i < p->n && (p->s[p->i] == 'e' || p->s[p->i] == 'E')) {
        p->i++;
        if (p->i < p->n && (p->s[p->i] == '+' || p->s[p->i] == '-')) p->i++;
        if (!jp_digits(p)) return 0;
    }
    return 1;
}

static int jp_value(Jp *p) {
    jp_ws(p);
    if (p->i >= p->n) return 0;
    unsigned char c = p->s[p->i];
    if (c == '"') return jp_string(p);
    if (c == '{' || c == '[') {
        if (++p->depth > 512) return 0;
        p->i++;
        jp_ws(p);
        unsigned char close = c == '{' ? '}' : ']';
        if (p->i < p->n && p->s[p->i] == close) return p->i++, p->depth--, 1;
        for (;;) {
            if (c == '{') {
                jp_ws(p);
                if (!jp_string(p)) return 0;
                jp_ws(p);
                if (p->i >= p->n || p->s[p->i++] != ':') return 0;
            }
            if (!jp_value(p)) return 0;
            jp_ws(p);
            if (p->i >= p->n) return 0;
            if (p->s[p->i] == close) return p->i++, p->depth--, 1;
            if (p->s[p->i++] != ',') return 0;
        }
    }
    if (c == 't') return jp_lit(p, "true");
    if (c == 'f') return jp_lit(p, "false");
    if (c == 'n') return jp_lit(p, "null");
    return jp_number(p);
}

// 1 when s[0..n) is one JSON text (RFC 8259) in valid UTF-8.
static int json_strict(const char *s, size_t n) {
    Jp p = {(const unsigned char *)s, n, 0, 0};
    if (!jp_value(&p)) return 0;
    jp_ws(&p);
    return p.i == n;
}

// The instance a problem document must carry for a request sent to path: its path part (up to
// '?') with every byte that a URI path may not hold percent-encoded (RFC 3986 §3.3: unreserved,
// sub-delims, ':', '@', '/' and %HH escapes stay as sent; a '%' that starts no escape is %25).
static void expected_instance(char *out, size_t n, const char *path) {
    size_t k = 0;
    for (const char *p = path; *p && *p != '?' && k + 4 < n; p++) {
        unsigned char c = (unsigned char)*p;
        int keep = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                   (c && strchr("-._~!$&'()*+,;=:@/", c)) ||
                   (c == '%' && hex_digit(p[1]) >= 0 && hex_digit(p[2]) >= 0);
        if (keep)
            out[k++] = (char)c;
        else
            k += (size_t)snprintf(out + k, n - k, "%%%02X", c);
    }
    out[k] = '\0';
}

// Why resp (to a request for path) is not a valid reply, or NULL: every body is UTF-8, every
// JSON body (and every problem document) is strict JSON, a problem's instance is path as sent.
static const char *reply_invalid(const HcResp *resp, const char *path, int problem) {
    static char why[512];
    char ct[128] = "", want[1024];
    hc_header(resp, "Content-Type", ct, sizeof ct);
    int is_json = strncmp(ct, "application/json", 16) == 0 ||
                  strncmp(ct, "application/problem+json", 24) == 0;
    if (!utf8_valid(resp->body, resp->body_len)) return "the body is not UTF-8";
    if ((is_json || problem) && !json_strict(resp->body, resp->body_len)) {
        snprintf(why, sizeof why, "the body is not strict JSON: %.300s", resp->body);
        return why;
    }
    if (!problem) return NULL;
    expected_instance(want, sizeof want, path);
    const char *inst = hc_str(resp, "instance");
    if (!inst || strcmp(inst, want) != 0) {
        snprintf(why, sizeof why, "instance '%.200s', expected '%.200s'", inst ? inst : "(none)",
                 want);
        return why;
    }
    return NULL;
}

/* ---- the catalogue ---- */

// Bodies too large or too repetitive to write literally.
enum {
    GEN_NONE,
    GEN_DEEP_ARRAYS,  // 100000 '['
    GEN_DEEP_OBJECTS, // 50000 '{"a":'
    GEN_SUPPORT_OVER, // an adapt body of 10001 support rows (limit 10000)
    GEN_PREDICT_OVER, // a predict body of 100001 rows (limit 100000)
    GEN_WIDE_ROW,     // x of one row of 5000 numbers for a 1-input model
    GEN_WIDE_DATASET, // a classes dataset with rows of 4097 values (limit 4096)
    GEN_MANY_FIELDS,  // an adapt body with 20000 unknown fields
    GEN_LONG_NAME,    // a job named by a 200 KB string
    GEN_OVER_LIMIT,   // headers announcing 2 MiB (over the 1 MiB limit), no body
    GEN_CHUNKED_OVER, // a 2 MiB body in 64 KiB chunks, no Content-Length
    GEN_LONG_TOKEN,   // a 6000-character bearer token
    GEN_HUGE_HEADER,  // a 100 KB header line
    GEN_LONG_URL,     // a 100 KB path
    GEN_UNICODE_KEY,  // an adapt body with an unknown key of 200 two-byte characters
};

#define AUTH_ADMIN  NULL
#define AUTH_NONE   "-"
#define AUTH_CLIENT "Bearer " CLIENT_KEY
#define NO_CT       "-" // send no Content-Type
#define NO_REPLY    -1  // expected status: the connection is closed without a reply

typedef struct {
    const char *what;
    const char *method, *path; // path as sent ("{A}": the adaptation's id, "{D}": a dataset's)
    const char *auth;          // Authorization value; AUTH_ADMIN: the admin key; AUTH_NONE: none
    const char *ct;            // Content-Type; NULL: application/json with a body; NO_CT: none
    const char *body;          // NULL: no body (and no Content-Length)
    size_t len;                // bytes of body when it holds NUL bytes (0: strlen)
    int gen;                   // GEN_*: the body (or headers) are generated
    const char *framing;       // headers that replace the Content-Length the request would carry
    long status;               // expected status
    const char *slug;          // expected problem type; NULL: not a problem document
    const char *detail;        // a substring of the problem's detail (or of the body)
} Hostile;

#define PREDICT "/v1/models/tiny/predict"
#define ADAPT   "/v1/models/tiny/adapt"
#define JOBS    "/v1/jobs"
#define DSETS   "/v1/datasets"
#define SUP1    "\"support\":{\"x\":[[1]],\"y\":[[1]]}"

// clang-format off
static const Hostile CATALOGUE[] = {
    /* ---- malformed JSON: 400 with the byte offset ---- */
    {"unterminated string", "POST", PREDICT, 0, 0, "{\"x\":[[1]],\"a\":\"abc", 0, 0, 0, 400, "malformed-json", "ends early"},
    {"trailing comma", "POST", PREDICT, 0, 0, "{\"x\":[[1]],}", 0, 0, 0, 400, "malformed-json", "byte offset 11"},
    {"bare words", "POST", PREDICT, 0, 0, "{x: [[1]]}", 0, 0, 0, 400, "malformed-json", "byte offset 1"},
    {"garbage bytes", "POST", PREDICT, 0, 0, "\x8f\x00\xff\xfe<<>>", 8, 0, 0, 400, "malformed-json", "byte offset 0"},
    {"invalid UTF-8 in a key", "POST", PREDICT, 0, 0, "{\"x\":[[1]],\"\xc3\x28\":1}", 0, 0, 0, 400, "malformed-json", "byte offset 12"},
    {"overlong UTF-8 '/'", "POST", JOBS, 0, 0, "{\"name\":\"a\xc0\xaf\"}", 0, 0, 0, 400, "malformed-json", "byte offset 10"},
    {"UTF-8 encoded surrogate", "POST", DSETS, 0, 0, "{\"name\":\"\xed\xa0\x80\"}", 0, 0, 0, 400, "malformed-json", "byte offset 9"},
    {"UTF-8 cut short at the end", "POST", PREDICT, 0, 0, "{\"x\":[[1]],\"\xe2\x82", 0, 0, 0, 400, "malformed-json", "byte offset 12"},
    {"NUL byte inside a string", "POST", PREDICT, 0, 0, "{\"x\":[[1]],\"a\0b\":1}", 19, 0, 0, 400, "malformed-json", "byte offset 13"},
    {"NUL byte after the value", "POST", PREDICT, 0, 0, "{\"x\":[[1]]}\0", 12, 0, 0, 400, "malformed-json", "byte offset 11"},
    {"\\u0000 escape in a key", "POST", PREDICT, 0, 0, "{\"x\\u0000evil\":[[1]]}", 0, 0, 0, 422, "validation", "byte offset 3"},
    {"\\u0000 escape in a name", "POST", JOBS, 0, 0, "{\"name\":\"tiny\\u0000x\"}", 0, 0, 0, 422, "validation", "\\u0000"},
    {"truncated document", "POST", PREDICT, 0, 0, "{\"x\":[[1],[2", 0, 0, 0, 400, "malformed-json", "ends early"},
    {"empty body", "POST", PREDICT, 0, 0, "", 0, 0, 0, 400, "malformed-json", "ends early at byte offset 0"},
    {"whitespace only", "POST", ADAPT, 0, 0, " \r\n\t ", 0, 0, 0, 400, "malformed-json", "ends early"},
    {"100000 nested arrays", "POST", PREDICT, 0, 0, NULL, 0, GEN_DEEP_ARRAYS, 0, 400, "malformed-json", "byte offset 1000"},
    {"50000 nested objects", "POST", JOBS, 0, 0, NULL, 0, GEN_DEEP_OBJECTS, 0, 400, "malformed-json", "byte offset 5000"},
    {"single quotes", "POST", PREDICT, 0, 0, "{'x':[[1]]}", 0, 0, 0, 400, "malformed-json", "byte offset 1"},
    {"NaN literal", "POST", PREDICT, 0, 0, "{\"x\":[[NaN]]}", 0, 0, 0, 400, "malformed-json", "byte offset 7"},
    {"Infinity literal", "POST", ADAPT, 0, 0, "{\"lr\":Infinity}", 0, 0, 0, 400, "malformed-json", "byte offset 6"},
    {"-Infinity literal", "POST", JOBS, 0, 0, "{\"outer\":{\"lr\":-Infinity}}", 0, 0, 0, 400, "malformed-json", "byte offset 16"},
    {"hexadecimal number", "POST", PREDICT, 0, 0, "{\"x\":[[0x10]]}", 0, 0, 0, 400, "malformed-json", "byte offset 8"},
    {"leading zero", "POST", PREDICT, 0, 0, "{\"x\":[[01]]}", 0, 0, 0, 400, "malformed-json", "byte offset 8"},
    {"byte-order mark", "POST", PREDICT, 0, 0, "\xef\xbb\xbf{\"x\":[[1]]}", 0, 0, 0, 400, "malformed-json", "byte offset 0"},
    {"two documents", "POST", PREDICT, 0, 0, "{\"x\":[[1]]}{\"x\":[[2]]}", 0, 0, 0, 400, "malformed-json", "byte offset 11"},
    {"a comment", "POST", PREDICT, 0, 0, "{\"x\":[[1]] /* c */}", 0, 0, 0, 400, "malformed-json", "byte offset 11"},
    {"bad escape", "POST", PREDICT, 0, 0, "{\"x\":[[1]],\"a\":\"\\q\"}", 0, 0, 0, 400, "malformed-json", "byte offset 17"},
    {"raw tab in a string", "POST", PREDICT, 0, 0, "{\"x\":[[1]],\"a\":\"a\tb\"}", 0, 0, 0, 400, "malformed-json", "byte offset 17"},
    {"dataset: garbage", "POST", DSETS, 0, 0, "name=x&kind=tasks", 0, 0, 0, 400, "malformed-json", "byte offset 1"},

    /* ---- training config: wrong types and values, each 422 naming the field ---- */
    {"name a number", "POST", JOBS, 0, 0, "{\"name\":5}", 0, 0, 0, 422, "validation", "name"},
    {"name of 200 KB", "POST", JOBS, 0, 0, NULL, 0, GEN_LONG_NAME, 0, 422, "validation", "name"},
    {"name with path separators", "POST", JOBS, 0, 0, "{\"name\":\"../../etc/passwd\"}", 0, 0, 0, 422, "validation", "name"},
    {"name with SQL", "POST", JOBS, 0, 0, "{\"name\":\"x'; DROP TABLE models; --\"}", 0, 0, 0, 422, "validation", "name"},
    {"name with control characters", "POST", JOBS, 0, 0, "{\"name\":\"a\\u0007\\u001b[2J\"}", 0, 0, 0, 422, "validation", "name"},
    {"name in unicode", "POST", JOBS, 0, 0, "{\"name\":\"mod\xc3\xa8le\"}", 0, 0, 0, 422, "validation", "name"},
    {"architecture a string", "POST", JOBS, 0, 0, "{\"architecture\":\"big\"}", 0, 0, 0, 422, "validation", "architecture"},
    {"sizes an object", "POST", JOBS, 0, 0, "{\"architecture\":{\"sizes\":{\"a\":1}}}", 0, 0, 0, 422, "validation", "architecture.sizes"},
    {"sizes holding a string", "POST", JOBS, 0, 0, "{\"architecture\":{\"sizes\":[1,\"8\",1]}}", 0, 0, 0, 422, "validation", "architecture.sizes[1]"},
    {"sizes 1e400", "POST", JOBS, 0, 0, "{\"architecture\":{\"sizes\":[1,1e400,1]}}", 0, 0, 0, 422, "validation", "architecture.sizes[1]"},
    {"sizes 2^64", "POST", JOBS, 0, 0, "{\"architecture\":{\"sizes\":[18446744073709551616,8,1]}}", 0, 0, 0, 422, "validation", "architecture.sizes[0]"},
    {"sizes negative", "POST", JOBS, 0, 0, "{\"architecture\":{\"sizes\":[1,-4,1]}}", 0, 0, 0, 422, "validation", "architecture.sizes[1]"},
    {"sizes zero", "POST", JOBS, 0, 0, "{\"architecture\":{\"sizes\":[0,8,1]}}", 0, 0, 0, 422, "validation", "architecture.sizes[0]"},
    {"sizes over the parameter limit", "POST", JOBS, 0, 0, "{\"architecture\":{\"sizes\":[1,4096,4096,4096,1]}}", 0, 0, 0, 413, "payload-too-large", "architecture.sizes"},
    {"activation a number", "POST", JOBS, 0, 0, "{\"architecture\":{\"activation\":1}}", 0, 0, 0, 422, "validation", "architecture.activation"},
    {"head an array", "POST", JOBS, 0, 0, "{\"architecture\":{\"head\":[\"regression\"]}}", 0, 0, 0, 422, "validation", "architecture.head"},
    {"algorithm an object", "POST", JOBS, 0, 0, "{\"algorithm\":{\"maml\":true}}", 0, 0, 0, 422, "validation", "algorithm"},
    {"inner an array", "POST", JOBS, 0, 0, "{\"inner\":[0.1]}", 0, 0, 0, 422, "validation", "inner"},
    {"inner.lr a string", "POST", JOBS, 0, 0, "{\"inner\":{\"lr\":\"0.1\"}}", 0, 0, 0, 422, "validation", "inner.lr"},
    {"inner.lr -1e308", "POST", JOBS, 0, 0, "{\"inner\":{\"lr\":-1e308}}", 0, 0, 0, 422, "validation", "inner.lr"},
    {"inner.steps 2^64", "POST", JOBS, 0, 0, "{\"inner\":{\"steps\":18446744073709551616}}", 0, 0, 0, 422, "validation", "inner.steps"},
    {"outer.lr 1e400", "POST", JOBS, 0, 0, "{\"outer\":{\"lr\":1e400}}", 0, 0, 0, 422, "validation", "outer.lr"},
    {"outer.lr zero", "POST", JOBS, 0, 0, "{\"outer\":{\"lr\":0}}", 0, 0, 0, 422, "validation", "outer.lr"},
    {"outer.clip_norm a string", "POST", JOBS, 0, 0, "{\"outer\":{\"clip_norm\":\"1\"}}", 0, 0, 0, 422, "validation", "outer.clip_norm"},
    {"outer.anneal a number", "POST", JOBS, 0, 0, "{\"outer\":{\"anneal\":1}}", 0, 0, 0, 422, "validation", "outer.anneal"},
    {"meta_batch 2^64", "POST", JOBS, 0, 0, "{\"meta_batch\":18446744073709551616}", 0, 0, 0, 422, "validation", "meta_batch"},
    {"meta_batch zero", "POST", JOBS, 0, 0, "{\"meta_batch\":0}", 0, 0, 0, 422, "validation", "meta_batch"},
    {"iterations -1e308", "POST", JOBS, 0, 0, "{\"iterations\":-1e308}", 0, 0, 0, 422, "validation", "iterations"},
    {"iterations fractional", "POST", JOBS, 0, 0, "{\"iterations\":1.5}", 0, 0, 0, 422, "validation", "iterations"},
    {"seed negative", "POST", JOBS, 0, 0, "{\"seed\":-1}", 0, 0, 0, 422, "validation", "seed"},
    {"seed 2^64", "POST", JOBS, 0, 0, "{\"seed\":18446744073709551616}", 0, 0, 0, 422, "validation", "seed"},
    {"tasks a string", "POST", JOBS, 0, 0, "{\"tasks\":\"sinusoid\"}", 0, 0, 0, 422, "validation", "tasks"},
    {"tasks.k_support zero", "POST", JOBS, 0, 0, "{\"tasks\":{\"k_support\":0}}", 0, 0, 0, 422, "validation", "tasks.k_support"},
    {"tasks.k_query a string", "POST", JOBS, 0, 0, "{\"tasks\":{\"k_query\":\"5\"}}", 0, 0, 0, 422, "validation", "tasks.k_query"},
    {"tasks.n_way a bool", "POST", JOBS, 0, 0, "{\"tasks\":{\"n_way\":true}}", 0, 0, 0, 422, "validation", "tasks.n_way"},
    {"tasks.family a number", "POST", JOBS, 0, 0, "{\"tasks\":{\"family\":5}}", 0, 0, 0, 422, "validation", "tasks.family"},
    {"tasks.dataset a path", "POST", JOBS, 0, 0, "{\"tasks\":{\"dataset\":\"../../etc/passwd\"}}", 0, 0, 0, 422, "validation", "tasks.dataset"},
    {"tasks.dataset with SQL", "POST", JOBS, 0, 0, "{\"tasks\":{\"dataset\":\"' OR 1=1 --\"}}", 0, 0, 0, 422, "validation", "tasks.dataset"},
    {"unknown field", "POST", JOBS, 0, 0, "{\"learning_rate\":0.1}", 0, 0, 0, 422, "validation", "learning_rate: unknown field"},
    {"unknown nested field", "POST", JOBS, 0, 0, "{\"outer\":{\"momentum\":0.9}}", 0, 0, 0, 422, "validation", "outer.momentum: unknown field"},
    {"duplicate field", "POST", JOBS, 0, 0, "{\"seed\":1,\"seed\":2}", 0, 0, 0, 422, "validation", "seed: duplicate field"},
    {"body an array", "POST", JOBS, 0, 0, "[1]", 0, 0, 0, 422, "validation", "body"},
    {"body null", "POST", JOBS, 0, 0, "null", 0, 0, 0, 422, "validation", "body"},

    /* ---- dataset upload ---- */
    {"dataset: name a number", "POST", DSETS, 0, 0, "{\"name\":5,\"kind\":\"tasks\",\"tasks\":[]}", 0, 0, 0, 422, "validation", "name"},
    {"dataset: name with ../", "POST", DSETS, 0, 0, "{\"name\":\"../x\",\"kind\":\"tasks\",\"tasks\":[]}", 0, 0, 0, 422, "validation", "name"},
    {"dataset: name with SQL", "POST", DSETS, 0, 0, "{\"name\":\"a'); DELETE FROM datasets; --\",\"kind\":\"tasks\",\"tasks\":[]}", 0, 0, 0, 422, "validation", "name"},
    {"dataset: name of 200 characters", "POST", DSETS, 0, 0, "{\"name\":\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\",\"kind\":\"tasks\",\"tasks\":[]}", 0, 0, 0, 422, "validation", "name"},
    {"dataset: kind unknown", "POST", DSETS, 0, 0, "{\"name\":\"d\",\"kind\":\"images\"}", 0, 0, 0, 422, "validation", "kind"},
    {"dataset: kind missing", "POST", DSETS, 0, 0, "{\"name\":\"d\",\"tasks\":[]}", 0, 0, 0, 422, "validation", "kind"},
    {"dataset: tasks an object", "POST", DSETS, 0, 0, "{\"name\":\"d\",\"kind\":\"tasks\",\"tasks\":{}}", 0, 0, 0, 422, "validation", "tasks"},
    {"dataset: tasks empty", "POST", DSETS, 0, 0, "{\"name\":\"d\",\"kind\":\"tasks\",\"tasks\":[]}", 0, 0, 0, 422, "validation", "tasks"},
    {"dataset: a task a string", "POST", DSETS, 0, 0, "{\"name\":\"d\",\"kind\":\"tasks\",\"tasks\":[\"t\"]}", 0, 0, 0, 422, "validation", "tasks[0]"},
    {"dataset: ragged x", "POST", DSETS, 0, 0, "{\"name\":\"d\",\"kind\":\"tasks\",\"tasks\":[{\"x\":[[1],[1,2]],\"y\":[[1],[2]]}]}", 0, 0, 0, 422, "validation", "tasks[0].x[1]"},
    {"dataset: y rows differ from x", "POST", DSETS, 0, 0, "{\"name\":\"d\",\"kind\":\"tasks\",\"tasks\":[{\"x\":[[1],[2]],\"y\":[[1]]}]}", 0, 0, 0, 422, "validation", "tasks[0].y"},
    {"dataset: second task wider", "POST", DSETS, 0, 0, "{\"name\":\"d\",\"kind\":\"tasks\",\"tasks\":[{\"x\":[[1],[2]],\"y\":[[1],[2]]},{\"x\":[[1,1],[2,2]],\"y\":[[1],[2]]}]}", 0, 0, 0, 422, "validation", "tasks[1].x[0]"},
    {"dataset: x 1e39 (beyond float32)", "POST", DSETS, 0, 0, "{\"name\":\"d\",\"kind\":\"tasks\",\"tasks\":[{\"x\":[[1],[1e39]],\"y\":[[1],[2]]}]}", 0, 0, 0, 422, "validation", "tasks[0].x[1][0]"},
    {"dataset: unknown field", "POST", DSETS, 0, 0, "{\"name\":\"d\",\"kind\":\"classes\",\"x\":[[1]],\"labels\":[0],\"labelz\":[0]}", 0, 0, 0, 422, "validation", "labelz"},
    {"dataset: labels a string", "POST", DSETS, 0, 0, "{\"name\":\"d\",\"kind\":\"classes\",\"x\":[[1],[2]],\"labels\":\"01\"}", 0, 0, 0, 422, "validation", "labels"},
    {"dataset: labels shorter than x", "POST", DSETS, 0, 0, "{\"name\":\"d\",\"kind\":\"classes\",\"x\":[[1],[2]],\"labels\":[0]}", 0, 0, 0, 422, "validation", "labels"},
    {"dataset: label fractional", "POST", DSETS, 0, 0, "{\"name\":\"d\",\"kind\":\"classes\",\"x\":[[1],[2]],\"labels\":[0.5,1]}", 0, 0, 0, 422, "validation", "labels[0]"},
    {"dataset: label 2^64", "POST", DSETS, 0, 0, "{\"name\":\"d\",\"kind\":\"classes\",\"x\":[[1],[2]],\"labels\":[0,18446744073709551616]}", 0, 0, 0, 422, "validation", "labels[1]"},
    {"dataset: test_classes an object", "POST", DSETS, 0, 0, "{\"name\":\"d\",\"kind\":\"classes\",\"x\":[[1],[2]],\"labels\":[0,1],\"test_classes\":{}}", 0, 0, 0, 422, "validation", "test_classes"},
    {"dataset: rows of 4097 values", "POST", DSETS, 0, 0, NULL, 0, GEN_WIDE_DATASET, 0, 422, "validation", "x: rows have 4097 values"},

    /* ---- adapt ---- */
    {"adapt: support a string", "POST", ADAPT, 0, 0, "{\"support\":\"xy\"}", 0, 0, 0, 422, "validation", "support"},
    {"adapt: support.x an object", "POST", ADAPT, 0, 0, "{\"support\":{\"x\":{},\"y\":[[1]]}}", 0, 0, 0, 422, "validation", "support.x"},
    {"adapt: support.x ragged", "POST", ADAPT, 0, 0, "{\"support\":{\"x\":[[1],[2,3]],\"y\":[[1],[2]]}}", 0, 0, 0, 422, "validation", "support.x[1]"},
    {"adapt: support.x too wide", "POST", ADAPT, 0, 0, "{\"support\":{\"x\":[[1,2]],\"y\":[[1]]}}", 0, 0, 0, 422, "validation", "support.x[0]"},
    {"adapt: y rows differ from x", "POST", ADAPT, 0, 0, "{\"support\":{\"x\":[[1],[2]],\"y\":[[1],[2],[3]]}}", 0, 0, 0, 422, "validation", "support.y"},
    {"adapt: empty support set", "POST", ADAPT, 0, 0, "{\"support\":{\"x\":[],\"y\":[]}}", 0, 0, 0, 422, "validation", "support.x"},
    {"adapt: support without x", "POST", ADAPT, 0, 0, "{\"support\":{}}", 0, 0, 0, 422, "validation", "support.x"},
    {"adapt: support.x 1e39", "POST", ADAPT, 0, 0, "{\"support\":{\"x\":[[1e39]],\"y\":[[1]]}}", 0, 0, 0, 422, "validation", "support.x[0][0]"},
    {"adapt: support.y -1e39", "POST", ADAPT, 0, 0, "{\"support\":{\"x\":[[1]],\"y\":[[-1e39]]}}", 0, 0, 0, 422, "validation", "support.y[0][0]"},
    {"adapt: steps a string", "POST", ADAPT, 0, 0, "{" SUP1 ",\"steps\":\"5\"}", 0, 0, 0, 422, "validation", "steps"},
    {"adapt: steps negative", "POST", ADAPT, 0, 0, "{" SUP1 ",\"steps\":-1}", 0, 0, 0, 422, "validation", "steps"},
    {"adapt: steps 1e400", "POST", ADAPT, 0, 0, "{" SUP1 ",\"steps\":1e400}", 0, 0, 0, 422, "validation", "steps"},
    {"adapt: lr -1e308", "POST", ADAPT, 0, 0, "{" SUP1 ",\"lr\":-1e308}", 0, 0, 0, 422, "validation", "lr"},
    {"adapt: lr \"NaN\"", "POST", ADAPT, 0, 0, "{" SUP1 ",\"lr\":\"NaN\"}", 0, 0, 0, 422, "validation", "lr"},
    {"adapt: ttl_s 2^64", "POST", ADAPT, 0, 0, "{" SUP1 ",\"ttl_s\":18446744073709551616}", 0, 0, 0, 422, "validation", "ttl_s"},
    {"adapt: unknown field", "POST", ADAPT, 0, 0, "{" SUP1 ",\"momentum\":0.9}", 0, 0, 0, 422, "validation", "momentum"},
    {"adapt: support given twice", "POST", ADAPT, 0, 0, "{" SUP1 "," SUP1 "}", 0, 0, 0, 422, "validation", "support: duplicate field"},
    {"adapt: an unknown key of 200 two-byte characters", "POST", ADAPT, 0, 0, NULL, 0, GEN_UNICODE_KEY, 0, 422, "validation", "????...: unknown field"},
    {"adapt: 20000 unknown fields", "POST", ADAPT, 0, 0, NULL, 0, GEN_MANY_FIELDS, 0, 422, "validation", "f0: unknown field"},
    {"adapt: 10001 support rows", "POST", ADAPT, 0, 0, NULL, 0, GEN_SUPPORT_OVER, 0, 413, "payload-too-large", "support.x: 10001 rows, the limit is 10000"},
    {"adapt: class index 3 of 3", "POST", "/v1/models/cls/adapt", 0, 0, "{\"support\":{\"x\":[[1,2]],\"y\":[[3]]}}", 0, 0, 0, 422, "validation", "support.y[0][0]"},
    {"adapt: class index -1", "POST", "/v1/models/cls/adapt", 0, 0, "{\"support\":{\"x\":[[1,2]],\"y\":[[-1]]}}", 0, 0, 0, 422, "validation", "support.y[0][0]"},
    {"adapt: class index 0.5", "POST", "/v1/models/cls/adapt", 0, 0, "{\"support\":{\"x\":[[1,2]],\"y\":[[0.5]]}}", 0, 0, 0, 422, "validation", "support.y[0][0]"},
    {"adapt: a missing version", "POST", "/v1/models/tiny@999/adapt", 0, 0, "{" SUP1 "}", 0, 0, 0, 404, "not-found", "version 999"},
    {"adapt: a missing alias", "POST", "/v1/models/tiny@prod/adapt", 0, 0, "{" SUP1 "}", 0, 0, 0, 404, "not-found", "alias prod"},
    {"adapt: ref with SQL", "POST", "/v1/models/tiny%27%3B%20DROP%20TABLE%20models%3B--/adapt", 0, 0, "{" SUP1 "}", 0, 0, 0, 422, "validation", "ref"},

    /* ---- predict ---- */
    {"predict: x a string", "POST", PREDICT, 0, 0, "{\"x\":\"1\"}", 0, 0, 0, 422, "validation", "x"},
    {"predict: x ragged", "POST", PREDICT, 0, 0, "{\"x\":[[1],[2,3]]}", 0, 0, 0, 422, "validation", "x[1]"},
    {"predict: x an empty row", "POST", PREDICT, 0, 0, "{\"x\":[[]]}", 0, 0, 0, 422, "validation", "x[0]"},
    {"predict: x null", "POST", PREDICT, 0, 0, "{\"x\":null}", 0, 0, 0, 422, "validation", "x"},
    {"predict: x 1e39 (beyond float32)", "POST", PREDICT, 0, 0, "{\"x\":[[1e39]]}", 0, 0, 0, 422, "validation", "x[0][0]"},
    {"predict: x a bool", "POST", PREDICT, 0, 0, "{\"x\":[[true]]}", 0, 0, 0, 422, "validation", "x[0][0]"},
    {"predict: a row of 5000 values", "POST", PREDICT, 0, 0, NULL, 0, GEN_WIDE_ROW, 0, 422, "validation", "x[0]"},
    {"predict: 100001 rows", "POST", PREDICT, 0, 0, NULL, 0, GEN_PREDICT_OVER, 0, 413, "payload-too-large", "x: 100001 rows, the limit is 100000"},
    {"predict: inline steps 1e400", "POST", PREDICT, 0, 0, "{\"x\":[[1]]," SUP1 ",\"steps\":1e400}", 0, 0, 0, 422, "validation", "steps"},
    {"predict: adaptation with support", "POST", "/v1/adaptations/{A}/predict", 0, 0, "{\"x\":[[1]]," SUP1 "}", 0, 0, 0, 422, "validation", "support"},
    {"predict: adaptation, x too wide", "POST", "/v1/adaptations/{A}/predict", 0, 0, "{\"x\":[[1,2]]}", 0, 0, 0, 422, "validation", "x[0]"},
    {"predict: adaptation id with ../", "POST", "/v1/adaptations/..%2F..%2Fmodels/predict", 0, 0, "{\"x\":[[1]]}", 0, 0, 0, 422, "validation", "id: must not contain '/'"},
    {"predict: adaptation id with SQL", "POST", "/v1/adaptations/%27%20OR%20%271%27%3D%271/predict", 0, 0, "{\"x\":[[1]]}", 0, 0, 0, 422, "validation", "id: must be the 32 hexadecimal"},

    /* ---- ids and names in paths ---- */
    {"name with encoded ../", "GET", "/v1/models/..%2F..%2Fetc%2Fpasswd", 0, 0, NULL, 0, 0, 0, 422, "validation", "name: must not contain '/'"},
    {"name with an encoded route tail", "GET", "/v1/models/tiny%2Fversions%2F1", 0, 0, NULL, 0, 0, 0, 422, "validation", "name: must not contain '/'"},
    {"delete with an encoded route tail", "DELETE", "/v1/models/tiny%2faliases%2fbest", 0, 0, NULL, 0, 0, 0, 422, "validation", "name: must not contain '/'"},
    {"predict behind an encoded slash", "POST", "/v1/models/tiny%2Fpredict", 0, 0, "{\"x\":[[1]]}", 0, 0, 0, 405, "method-not-allowed", "GET, DELETE"},
    {"a doubly encoded slash", "GET", "/v1/models/tiny%252Fweights", 0, 0, NULL, 0, 0, 0, 422, "validation", "name"},
    {"an encoded dot segment", "GET", "/v1/models/tiny/versions/%2E%2E", 0, 0, NULL, 0, 0, 0, 404, "not-found", "no such route"},
    {"a dot segment", "DELETE", "/v1/models/tiny/..", 0, 0, NULL, 0, 0, 0, 404, "not-found", "no such route"},
    {"name not UTF-8", "GET", "/v1/models/%FF%FE", 0, 0, NULL, 0, 0, 0, 422, "validation", "name: must be UTF-8"},
    {"job id not UTF-8", "GET", "/v1/jobs/%C3%28%FF", 0, 0, NULL, 0, 0, 0, 422, "validation", "id: must be UTF-8"},
    {"name with a space and !", "GET", "/v1/models/bad%20name!", 0, 0, NULL, 0, 0, 0, 422, "validation", "name"},
    {"raw bytes not UTF-8 in the path", "GET", "/v1/models/\xff\xfe", 0, 0, NULL, 0, 0, 0, 422, "validation", "name"},
    {"raw space, quote and backslash in the path", "GET", "/v1/models/a b\"c\\d", 0, 0, NULL, 0, 0, 0, 422, "validation", "name"},
    {"a lone % in the path", "GET", "/v1/models/100%", 0, 0, NULL, 0, 0, 0, 422, "validation", "name"},
    {"a bad escape in the path", "DELETE", "/v1/models/a%zz%4", 0, 0, NULL, 0, 0, 0, 422, "validation", "name"},
    {"path of an unknown route, not UTF-8", "GET", "/v1/\xc3\x28/%FF<x>", 0, 0, NULL, 0, 0, 0, 404, "not-found", "no such route"},
    {"name with encoded NUL", "GET", "/v1/models/tiny%00evil", 0, 0, NULL, 0, 0, 0, 422, "validation", "name"},
    {"delete with encoded NUL", "DELETE", "/v1/models/tiny%00", 0, 0, NULL, 0, 0, 0, 422, "validation", "name"},
    {"name with SQL", "GET", "/v1/models/%27%20OR%201%3D1%20--", 0, 0, NULL, 0, 0, 0, 422, "validation", "name"},
    {"delete with SQL", "DELETE", "/v1/models/tiny%3B%20DROP%20TABLE%20models", 0, 0, NULL, 0, 0, 0, 422, "validation", "name"},
    {"name with control characters", "GET", "/v1/models/%01%1b%5B2J", 0, 0, NULL, 0, 0, 0, 422, "validation", "name"},
    {"name of 300 characters", "GET", "/v1/models/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", 0, 0, NULL, 0, 0, 0, 422, "validation", "name"},
    {"name in unicode", "GET", "/v1/models/%C3%A9t%C3%A9", 0, 0, NULL, 0, 0, 0, 422, "validation", "name"},
    {"alias all digits", "PUT", "/v1/models/tiny/aliases/12", 0, 0, "{\"version\":1}", 0, 0, 0, 422, "validation", "alias"},
    {"alias with encoded ../", "PUT", "/v1/models/tiny/aliases/..%2Fx", 0, 0, "{\"version\":1}", 0, 0, 0, 422, "validation", "alias: must not contain '/'"},
    {"version 1e3", "GET", "/v1/models/tiny/versions/1e3", 0, 0, NULL, 0, 0, 0, 422, "validation", "version"},
    {"dataset id with ../", "GET", "/v1/datasets/..%2F..%2Fjobs", 0, 0, NULL, 0, 0, 0, 422, "validation", "id: must not contain '/'"},
    {"dataset id with SQL", "DELETE", "/v1/datasets/%27%20OR%20%271%27%3D%271", 0, 0, NULL, 0, 0, 0, 422, "validation", "id: must be the 32 hexadecimal"},
    {"job id an encoded NUL", "GET", "/v1/jobs/%00", 0, 0, NULL, 0, 0, 0, 422, "validation", "id: must be the 32 hexadecimal"},
    {"page_token with SQL", "GET", "/v1/models?page_token=%27%20OR%201%3D1", 0, 0, NULL, 0, 0, 0, 422, "validation", "page_token"},
    {"page_token with encoded NUL", "GET", "/v1/models?page_token=tiny%00x", 0, 0, NULL, 0, 0, 0, 422, "validation", "page_token"},
    {"page_size 1e400", "GET", "/v1/datasets?page_size=1e400", 0, 0, NULL, 0, 0, 0, 422, "validation", "page_size"},
    {"page_size negative", "GET", "/v1/jobs?page_size=-1", 0, 0, NULL, 0, 0, 0, 422, "validation", "page_size"},

    /* ---- content types, methods, routes ---- */
    {"text/plain", "POST", PREDICT, 0, "text/plain", "{\"x\":[[1]]}", 0, 0, 0, 415, "unsupported-media-type", "Content-Type"},
    {"no Content-Type", "POST", PREDICT, 0, NO_CT, "{\"x\":[[1]]}", 0, 0, 0, 415, "unsupported-media-type", "Content-Type"},
    {"multipart", "POST", DSETS, 0, "multipart/form-data; boundary=b", "--b\r\nContent-Disposition: form-data; name=\"f\"\r\n\r\n{}\r\n--b--\r\n", 0, 0, 0, 415, "unsupported-media-type", "Content-Type"},
    {"charset latin1", "POST", PREDICT, 0, "application/json; charset=latin1", "{\"x\":[[1]]}", 0, 0, 0, 415, "unsupported-media-type", "charset"},
    {"form encoded", "POST", JOBS, 0, "application/x-www-form-urlencoded", "name=x", 0, 0, 0, 415, "unsupported-media-type", "Content-Type"},
    {"application/jsonp", "POST", ADAPT, 0, "application/jsonp", "{}", 0, 0, 0, 415, "unsupported-media-type", "Content-Type"},
    {"PATCH a model", "PATCH", "/v1/models/tiny", 0, 0, "{}", 0, 0, 0, 405, "method-not-allowed", "GET, DELETE"},
    {"an invented method", "FOO", JOBS, 0, 0, NULL, 0, 0, 0, 405, "method-not-allowed", "POST, GET"},
    {"TRACE", "TRACE", "/readyz", 0, 0, NULL, 0, 0, 0, 405, "method-not-allowed", "GET"},
    {"DELETE the job list", "DELETE", JOBS, 0, 0, NULL, 0, 0, 0, 405, "method-not-allowed", "POST, GET"},
    {"unknown version prefix", "GET", "/v2/models", 0, 0, NULL, 0, 0, 0, 404, "not-found", "no such route"},
    {"a segment too many", "GET", "/v1/models/tiny/adapt/extra", 0, 0, NULL, 0, 0, 0, 404, "not-found", "no such route"},
    {"a file at the root", "GET", "/index.html", 0, 0, NULL, 0, 0, 0, 404, "not-found", "no such route"}, // / redirects to the dashboard

    /* ---- credentials ---- */
    {"no credentials", "GET", "/v1/models", AUTH_NONE, 0, NULL, 0, 0, 0, 401, "unauthorized", "API key is required"},
    {"Bearer without a key", "GET", "/v1/models", "Bearer", 0, NULL, 0, 0, 0, 401, "unauthorized", "not valid"},
    {"Basic credentials", "GET", "/v1/models", "Basic YWRtaW46eA==", 0, NULL, 0, 0, 0, 401, "unauthorized", "the Bearer scheme is required"},
    {"Bearer  two  spaces", "GET", "/v1/models", "Bearer  two  spaces", 0, NULL, 0, 0, 0, 401, "unauthorized", "not valid"},
    {"a 6000-character token", "GET", "/v1/models", 0, 0, NULL, 0, GEN_LONG_TOKEN, 0, 401, "unauthorized", "not valid"},
    {"a wrong key", "GET", "/v1/models", "Bearer wrong-0123456789abcdef", 0, NULL, 0, 0, 0, 401, "unauthorized", "not valid"},
    {"the admin key with a suffix", "GET", "/v1/models", "Bearer " ADMIN_KEY " x", 0, NULL, 0, 0, 0, 401, "unauthorized", "not valid"},
    {"client key: train", "POST", JOBS, AUTH_CLIENT, 0, "{}", 0, 0, 0, 403, "forbidden", "admin"},
    {"client key: delete a model", "DELETE", "/v1/models/tiny", AUTH_CLIENT, 0, NULL, 0, 0, 0, 403, "forbidden", "admin"},
    {"client key: upload a dataset", "POST", DSETS, AUTH_CLIENT, 0, "{}", 0, 0, 0, 403, "forbidden", "admin"},
    {"client key: delete a dataset", "DELETE", "/v1/datasets/{D}", AUTH_CLIENT, 0, NULL, 0, 0, 0, 403, "forbidden", "admin"},
    {"client key: move an alias", "PUT", "/v1/models/tiny/aliases/best", AUTH_CLIENT, 0, "{\"version\":1}", 0, 0, 0, 403, "forbidden", "admin"},

    /* ---- framing and size ---- */
    {"Content-Length over the limit", "POST", DSETS, 0, 0, NULL, 0, GEN_OVER_LIMIT, 0, 413, "payload-too-large", "limit is 1048576"},
    {"chunked body over the limit", "POST", DSETS, 0, 0, NULL, 0, GEN_CHUNKED_OVER, 0, 413, "payload-too-large", "body"},
    {"Content-Length shorter than the body", "POST", PREDICT, 0, 0, "{\"x\":[[1]]}", 0, 0, "Content-Length: 5\r\n", 400, "malformed-json", "ends early at byte offset 5"},
    {"Content-Length longer than the body", "POST", PREDICT, 0, 0, "{\"x\":[[1]]}", 0, 0, "Content-Length: 50\r\n", NO_REPLY, NULL, ""},
    {"two different Content-Lengths", "POST", PREDICT, 0, 0, "{\"x\":[[1]]}", 0, 0, "Content-Length: 11\r\nContent-Length: 3\r\n", 400, "bad-request", "Content-Length"},
    {"Content-Length and chunked", "POST", PREDICT, 0, 0, "b\r\n{\"x\":[[1]]}\r\n0\r\n\r\n", 0, 0, "Content-Length: 3\r\nTransfer-Encoding: chunked\r\n", 400, "bad-request", "Transfer-Encoding"},
    {"Transfer-Encoding gzip", "POST", PREDICT, 0, 0, "{\"x\":[[1]]}", 0, 0, "Transfer-Encoding: gzip\r\n", 501, "not-implemented", "Transfer-Encoding"},
    {"Transfer-Encoding chunked, gzip", "POST", PREDICT, 0, 0, "{\"x\":[[1]]}", 0, 0, "Transfer-Encoding: chunked, gzip\r\n", 501, "not-implemented", "Transfer-Encoding"},
    // refused by libmicrohttpd before the application sees the request: status only (the body
    // is libmicrohttpd's own fixed HTML, not JSON; it is checked to be UTF-8 only)
    {"Content-Length negative", "POST", PREDICT, 0, 0, "{\"x\":[[1]]}", 0, 0, "Content-Length: -1\r\n", 400, NULL, ""},
    {"Content-Length not a number", "POST", PREDICT, 0, 0, "{\"x\":[[1]]}", 0, 0, "Content-Length: 11abc\r\n", 400, NULL, ""},
    {"Content-Length of 23 digits", "POST", PREDICT, 0, 0, "{\"x\":[[1]]}", 0, 0, "Content-Length: 99999999999999999999999\r\n", 413, NULL, ""},
    {"a chunk size not in hex", "POST", PREDICT, 0, 0, "zz\r\n{\"x\":[[1]]}\r\n0\r\n\r\n", 0, 0, "Transfer-Encoding: chunked\r\n", 400, NULL, ""},
    {"a 100 KB header", "GET", "/readyz", 0, 0, NULL, 0, GEN_HUGE_HEADER, 0, 431, NULL, ""},
    {"a 100 KB path", "GET", "/readyz", 0, 0, NULL, 0, GEN_LONG_URL, 0, 414, NULL, ""},
};
// clang-format on

#define N_CATALOGUE (sizeof CATALOGUE / sizeof CATALOGUE[0])

// ids the paths of the catalogue refer to
static char g_adaptation[64], g_dataset[64];

// path with "{A}" and "{D}" replaced by the ids above
static void expand_path(char *out, size_t n, const char *path) {
    HcBuf b;
    hc_buf_init(&b);
    for (const char *p = path; *p; p++) {
        if (strncmp(p, "{A}", 3) == 0)
            hc_buf_puts(&b, g_adaptation), p += 2;
        else if (strncmp(p, "{D}", 3) == 0)
            hc_buf_puts(&b, g_dataset), p += 2;
        else
            hc_buf_add(&b, p, 1);
    }
    snprintf(out, n, "%s", b.s);
    hc_buf_free(&b);
}

static void repeat(HcBuf *b, const char *s, long n) {
    for (long i = 0; i < n; i++)
        hc_buf_puts(b, s);
}

// The generated body of gen into b (headers of the generated kinds go to head).
static void generate(int gen, HcBuf *b, HcBuf *head, const char **path) {
    switch (gen) {
    case GEN_DEEP_ARRAYS:
        repeat(b, "[", 100000);
        break;
    case GEN_DEEP_OBJECTS:
        repeat(b, "{\"a\":", 50000);
        break;
    case GEN_SUPPORT_OVER:
        hc_buf_puts(b, "{\"support\":{\"x\":[[0]");
        repeat(b, ",[0]", 10000);
        hc_buf_puts(b, "],\"y\":[[0]");
        repeat(b, ",[0]", 10000);
        hc_buf_puts(b, "]}}");
        break;
    case GEN_PREDICT_OVER:
        hc_buf_puts(b, "{\"x\":[[0]");
        repeat(b, ",[0]", 100000);
        hc_buf_puts(b, "]}");
        break;
    case GEN_WIDE_ROW:
        hc_buf_puts(b, "{\"x\":[[0");
        repeat(b, ",0", 4999);
        hc_buf_puts(b, "]]}");
        break;
    case GEN_WIDE_DATASET:
        hc_buf_puts(b, "{\"name\":\"wide\",\"kind\":\"classes\",\"x\":[[0");
        repeat(b, ",0", 4096);
        hc_buf_puts(b, "]],\"labels\":[0]}");
        break;
    case GEN_MANY_FIELDS:
        hc_buf_puts(b, "{");
        for (int i = 0; i < 20000; i++)
            hc_buf_printf(b, "\"f%d\":%d,", i, i);
        hc_buf_puts(b, SUP1 "}");
        break;
    case GEN_UNICODE_KEY:
        // the detail echoes the key as printable ASCII, cut short
        hc_buf_puts(b, "{\"");
        repeat(b, "\xc3\xa9", 200);
        hc_buf_puts(b, "\":1," SUP1 "}");
        break;
    case GEN_LONG_NAME:
        hc_buf_puts(b, "{\"name\":\"");
        repeat(b, "n", 200000);
        hc_buf_puts(b, "\"}");
        break;
    case GEN_OVER_LIMIT:
        hc_buf_printf(head, "Content-Length: %zu\r\n", 2 * BODY_LIMIT);
        break;
    case GEN_CHUNKED_OVER:
        hc_buf_puts(head, "Transfer-Encoding: chunked\r\n");
        for (int i = 0; i < 32; i++) {
            hc_buf_puts(b, "10000\r\n");
            repeat(b, i == 0 ? "[" : "0", 1);
            repeat(b, "0", 65535);
            hc_buf_puts(b, "\r\n");
        }
        hc_buf_puts(b, "0\r\n\r\n");
        break;
    case GEN_LONG_TOKEN:
        hc_buf_puts(head, "Authorization: Bearer ");
        repeat(head, "k", 6000);
        hc_buf_puts(head, "\r\n");
        break;
    case GEN_HUGE_HEADER:
        hc_buf_puts(head, "X-Padding: ");
        repeat(head, "p", 100000);
        hc_buf_puts(head, "\r\n");
        break;
    case GEN_LONG_URL: {
        static char url[100016];
        memcpy(url, "/v1/models/", 11);
        memset(url + 11, 'u', 100000);
        url[100011] = '\0';
        *path = url;
        break;
    }
    default:
        break;
    }
}

// The whole request of entry h (caller frees out).
static void build_request(HcBuf *out, const Hostile *h) {
    HcBuf body, head;
    hc_buf_init(&body);
    hc_buf_init(&head);
    const char *path = h->path;
    int has_body = h->body != NULL;
    if (h->body) hc_buf_add(&body, h->body, h->len ? h->len : strlen(h->body));
    if (h->gen) {
        generate(h->gen, &body, &head, &path);
        has_body |= body.len > 0 || h->gen == GEN_OVER_LIMIT;
    }
    char p[1024];
    if (strlen(path) < 1000) expand_path(p, sizeof p, path);
    hc_buf_init(out);
    hc_buf_printf(out, "%s ", h->method);
    hc_buf_puts(out, strlen(path) < 1000 ? p : path);
    hc_buf_puts(out, " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    if (h->auth == AUTH_ADMIN && h->gen != GEN_LONG_TOKEN)
        hc_buf_puts(out, "Authorization: Bearer " ADMIN_KEY "\r\n");
    else if (h->auth && strcmp(h->auth, AUTH_NONE) != 0)
        hc_buf_printf(out, "Authorization: %s\r\n", h->auth);
    if (has_body && !(h->ct && strcmp(h->ct, NO_CT) == 0))
        hc_buf_printf(out, "Content-Type: %s\r\n", h->ct ? h->ct : "application/json");
    if (h->framing)
        hc_buf_puts(out, h->framing);
    else if (h->body ||
             (h->gen && h->gen != GEN_OVER_LIMIT && h->gen != GEN_CHUNKED_OVER && body.len > 0))
        hc_buf_printf(out, "Content-Length: %zu\r\n", body.len);
    hc_buf_add(out, head.s, head.len);
    hc_buf_puts(out, "\r\n");
    hc_buf_add(out, body.s, body.len);
    hc_buf_free(&body);
    hc_buf_free(&head);
}

/* ---- the state that must survive ---- */

#define N_SNAP 10

typedef struct {
    char path[160];
    char *body; // the 200 response body
} Snap;

static void get_ok(const char *path, char **body) {
    HcResp r;
    hc_call(&g_c, &r, "GET", path, NULL);
    ck_assert_msg(r.status == 200, "GET %s: %ld %s", path, r.status, r.body);
    *body = strdup(r.body);
    hc_free(&r);
}

static int snapshot(Snap *s, const char *job_tiny, const char *job_cls) {
    const char *paths[N_SNAP] = {"/v1/models",
                                 "/v1/models/tiny",
                                 "/v1/models/cls",
                                 "/v1/models/tiny/weights",
                                 "/v1/models/cls/weights",
                                 "/v1/datasets",
                                 NULL,
                                 NULL,
                                 NULL,
                                 NULL};
    int n = 6;
    snprintf(s[n++].path, sizeof s[0].path, "/v1/datasets/%s", g_dataset);
    snprintf(s[n++].path, sizeof s[0].path, "/v1/adaptations/%s", g_adaptation);
    snprintf(s[n++].path, sizeof s[0].path, "/v1/jobs/%s", job_tiny);
    snprintf(s[n++].path, sizeof s[0].path, "/v1/jobs/%s", job_cls);
    for (int i = 0; i < 6; i++)
        snprintf(s[i].path, sizeof s[i].path, "%s", paths[i]);
    for (int i = 0; i < n; i++)
        get_ok(s[i].path, &s[i].body);
    return n;
}

/* ---- seeding ---- */

// Trains cfg to completion; the job's id into id.
static void train(const char *cfg, char *id) {
    HcResp r;
    ck_assert_msg(hc_call(&g_c, &r, "POST", "/v1/jobs", cfg) == 202, "POST /v1/jobs: %s", r.body);
    snprintf(id, 64, "%s", hc_str(&r, "id"));
    hc_free(&r);
    char path[96];
    snprintf(path, sizeof path, "/v1/jobs/%s", id);
    for (double t0 = now_s();;) {
        ck_assert_int_eq(hc_call(&g_c, &r, "GET", path, NULL), 200);
        const char *st = hc_str(&r, "state");
        int done = strcmp(st, "succeeded") == 0;
        ck_assert_msg(done || strcmp(st, "queued") == 0 || strcmp(st, "running") == 0, "job %s: %s",
                      id, r.body);
        hc_free(&r);
        if (done) break;
        ck_assert_msg(now_s() - t0 < DEADLINE_S, "job %s did not finish", id);
        sleep_ms(20);
    }
}

// The known-good request: a prediction with the client key; its body into out (or compared).
static void known_good(char *out, size_t n, const char *after) {
    HcClient c = g_c;
    c.key = CLIENT_KEY;
    HcResp r;
    hc_call(&c, &r, "POST", PREDICT, "{\"x\":[[0.5],[-2]]}");
    ck_assert_msg(r.status == 200, "after '%s': the known-good prediction got %ld %s", after,
                  r.status, r.body);
    if (out) snprintf(out, n, "%s", r.body);
    hc_free(&r);
}

static void assert_healthy(const char *baseline, const char *after) {
    HcResp r;
    HcClient open = g_c;
    open.key = NULL;
    ck_assert_msg(hc_call(&open, &r, "GET", "/readyz", NULL) == 200,
                  "after '%s': /readyz answered %ld %s", after, r.status, r.err);
    hc_free(&r);
    char now[512];
    known_good(now, sizeof now, after);
    ck_assert_msg(strcmp(now, baseline) == 0, "after '%s': the prediction changed: %s vs %s", after,
                  now, baseline);
}

// Trains the models "tiny" (1 input, regression) and "cls" (2 inputs, 3 classes), uploads a
// dataset and stores an adaptation of tiny (their ids to g_dataset and g_adaptation).
static void seed(char *job_tiny, char *job_cls) {
    train("{\"name\":\"tiny\",\"architecture\":{\"sizes\":[1,8,1],\"activation\":\"relu\","
          "\"head\":\"regression\"},\"algorithm\":\"maml\",\"inner\":{\"lr\":0.01,\"steps\":1},"
          "\"meta_batch\":2,\"iterations\":5,\"seed\":1,"
          "\"tasks\":{\"family\":\"sinusoid\",\"k_support\":5,\"k_query\":5}}",
          job_tiny);
    train("{\"name\":\"cls\",\"architecture\":{\"sizes\":[2,8,3],\"activation\":\"relu\","
          "\"head\":\"classification\"},\"algorithm\":\"maml\",\"inner\":{\"lr\":0.1,\"steps\":1},"
          "\"meta_batch\":2,\"iterations\":5,\"seed\":1,\"tasks\":{\"family\":\"gaussian\","
          "\"k_support\":2,\"k_query\":2,\"n_way\":3,\"dim\":2}}",
          job_cls);
    HcResp r;
    ck_assert_int_eq(hc_call(&g_c, &r, "POST", "/v1/datasets",
                             "{\"name\":\"pool\",\"kind\":\"tasks\",\"tasks\":[{\"x\":[[1],[2]],"
                             "\"y\":[[3],[4]]},{\"x\":[[5],[6]],\"y\":[[7],[8]]}]}"),
                     201);
    snprintf(g_dataset, sizeof g_dataset, "%s", hc_str(&r, "id"));
    hc_free(&r);
    ck_assert_int_eq(hc_call(&g_c, &r, "POST", ADAPT,
                             "{\"support\":{\"x\":[[0],[1]],\"y\":[[0],[1]]},\"steps\":2}"),
                     201);
    snprintf(g_adaptation, sizeof g_adaptation, "%s", hc_str(&r, "id"));
    hc_free(&r);
}

START_TEST(every_hostile_request_gets_the_right_4xx_and_leaves_the_service_intact) {
    server_up(1);
    char job_tiny[64], job_cls[64];
    seed(job_tiny, job_cls);

    Snap before[N_SNAP], after[N_SNAP];
    int n_snap = snapshot(before, job_tiny, job_cls);
    char baseline[512];
    known_good(baseline, sizeof baseline, "seeding");

    ck_assert_int_ge(N_CATALOGUE, 70);
    int failures = 0;
    HcBuf report;
    hc_buf_init(&report);
    for (size_t i = 0; i < N_CATALOGUE; i++) {
        const Hostile *h = &CATALOGUE[i];
        HcBuf req;
        build_request(&req, h);
        ck_assert_ptr_nonnull(req.s);
        HcResp resp;
        // a reply is due at once, except where the server must wait out the connection timeout
        int closed = raw_call(&resp, req.s, req.len, RAW_WAIT_S);
        hc_buf_free(&req);
        char why[1024] = "";
        char allow[128];
        if (h->status == NO_REPLY) {
            if (!closed || resp.status != -1)
                snprintf(why, sizeof why,
                         "expected the server to close the connection without a reply (closed "
                         "%d, status %ld)",
                         closed, resp.status);
        } else if (h->slug) {
            const char *m = hc_problem_mismatch(&resp, h->status, h->slug);
            const char *d = hc_str(&resp, "detail");
            if (m)
                snprintf(why, sizeof why, "%s", m);
            else if (!strstr(d, h->detail))
                snprintf(why, sizeof why, "detail '%s' does not contain '%s'", d, h->detail);
            else if (h->status == 405 &&
                     !(hc_header(&resp, "Allow", allow, sizeof allow) && strstr(allow, h->detail)))
                snprintf(why, sizeof why, "Allow header missing or without %s", h->detail);
        } else if (resp.status != h->status) {
            snprintf(why, sizeof why, "status %ld, expected %ld", resp.status, h->status);
        }
        // every body is valid UTF-8 and every JSON one strict JSON, the instance the path as sent
        char path[1024];
        expand_path(path, sizeof path, strlen(h->path) < 1000 ? h->path : "");
        const char *bad = why[0] ? NULL : reply_invalid(&resp, path, h->slug != NULL);
        if (bad) snprintf(why, sizeof why, "%s", bad);
        // every mismatch of the catalogue is counted, and the first 20 are listed (a Check
        // message has a size limit) before the test fails
        if (why[0] && failures++ < 20) hc_buf_printf(&report, "\n  %s: %.160s", h->what, why);
        hc_free(&resp);
        assert_healthy(baseline, h->what);
    }
    ck_assert_msg(failures == 0, "%d of %zu entries answered wrongly:%s", failures, N_CATALOGUE,
                  report.s);
    hc_buf_free(&report);

    // every model, version, dataset, job and adaptation stored before reads back the same
    int n_after = snapshot(after, job_tiny, job_cls);
    ck_assert_int_eq(n_after, n_snap);
    for (int i = 0; i < n_snap; i++) {
        ck_assert_msg(strcmp(before[i].body, after[i].body) == 0, "GET %s changed:\n%s\n%s",
                      before[i].path, before[i].body, after[i].body);
        free(before[i].body);
        free(after[i].body);
    }
    // and nothing was added: no job, dataset or model came from the catalogue
    HcResp r;
    ck_assert_int_eq(hc_call(&g_c, &r, "GET", "/v1/jobs", NULL), 200);
    ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItem(r.json, "jobs")), 2);
    hc_free(&r);
    ck_assert_int_eq(hc_call(&g_c, &r, "GET", "/v1/datasets", NULL), 200);
    ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItem(r.json, "datasets")), 1);
    hc_free(&r);
    printf("hostile catalogue: %zu entries, each answered and followed by a healthy service\n",
           N_CATALOGUE);
    server_down();
}
END_TEST

/* ---- the fuzz corpora against the real server ---- */

// Reads the whole file at path into a new buffer (caller frees); its size to n.
static char *read_file(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    HcBuf b;
    hc_buf_init(&b);
    char buf[8192];
    size_t k;
    while ((k = fread(buf, 1, sizeof buf, f)) > 0)
        hc_buf_add(&b, buf, k);
    fclose(f);
    ck_assert_ptr_nonnull(b.s);
    *n = b.len;
    return b.s;
}

static int by_name(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

START_TEST(every_fuzz_corpus_body_gets_a_reply_of_valid_utf8_json) {
    const char *src = getenv("METASERVE_SRC");
    ck_assert_msg(src != NULL, "METASERVE_SRC is not set");
    server_up(1);
    char job_tiny[64], job_cls[64];
    seed(job_tiny, job_cls);
    // no workers from here: the training configs of the corpus stay queued instead of training
    server_restart(0);
    // every route that reads a JSON body, and the classifier's adapt and predict
    char targets[32][128];
    int n_targets = 0;
    for (const Route *rt = ROUTES; rt->method; rt++) {
        if (!rt->json_body) continue;
        char *t = targets[n_targets++];
        const char *v = strstr(rt->pattern, "/aliases/") ? "tiny/aliases/best" : "tiny";
        const char *brace = strchr(rt->pattern, '{');
        if (!brace)
            snprintf(t, 128, "%s %s", rt->method, rt->pattern);
        else if (strncmp(rt->pattern, "/v1/adaptations/", 16) == 0)
            snprintf(t, 128, "%s /v1/adaptations/%s%s", rt->method, g_adaptation,
                     strchr(brace, '}') + 1);
        else
            snprintf(t, 128, "%s %.*s%s%s", rt->method, (int)(brace - rt->pattern), rt->pattern, v,
                     strstr(rt->pattern, "/aliases/") ? "" : strchr(brace, '}') + 1);
    }
    snprintf(targets[n_targets++], 128, "POST /v1/models/cls/adapt");
    snprintf(targets[n_targets++], 128, "POST /v1/models/cls/predict");

    static const char *const dirs[] = {"corpus", "regressions"};
    static const char *const kinds[] = {"json", "config", "dataset", "adapt", "predict", "blob"};
    int sent = 0, files = 0, failures = 0;
    HcBuf report;
    hc_buf_init(&report);
    for (size_t d = 0; d < 2; d++) {
        for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
            char dir[512];
            snprintf(dir, sizeof dir, "%s/tests/fuzz/%s/%s", src, dirs[d], kinds[k]);
            DIR *dh = opendir(dir);
            ck_assert_msg(dh != NULL, "cannot read %s", dir);
            char *names[256];
            int n = 0;
            for (struct dirent *e; (e = readdir(dh));)
                if (e->d_name[0] != '.' && n < 256) names[n++] = strdup(e->d_name);
            closedir(dh);
            qsort(names, (size_t)n, sizeof names[0], by_name);
            for (int f = 0; f < n; f++, files++) {
                char path[800];
                snprintf(path, sizeof path, "%s/%s", dir, names[f]);
                size_t len;
                char *body = read_file(path, &len);
                for (int t = 0; t < n_targets; t++, sent++) {
                    HcBuf req;
                    hc_buf_init(&req);
                    hc_buf_printf(&req,
                                  "%s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                                  "Authorization: Bearer " ADMIN_KEY "\r\n"
                                  "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
                                  targets[t], len);
                    hc_buf_add(&req, body, len);
                    ck_assert_ptr_nonnull(req.s);
                    HcResp resp;
                    raw_call(&resp, req.s, req.len, RAW_WAIT_S);
                    hc_buf_free(&req);
                    const char *why = NULL;
                    char st[64];
                    if (resp.status < 200 || resp.status >= 500) {
                        snprintf(st, sizeof st, "status %ld", resp.status);
                        why = st;
                    } else {
                        why = reply_invalid(&resp, strchr(targets[t], ' ') + 1, resp.status >= 400);
                    }
                    if (why && failures++ < 12)
                        hc_buf_printf(&report, "\n  %s/%s/%s to %s: %.300s", dirs[d], kinds[k],
                                      names[f], targets[t], why);
                    hc_free(&resp);
                }
                free(body);
                free(names[f]);
            }
        }
    }
    ck_assert_msg(failures == 0, "%d of %d replies were not valid:%s", failures, sent, report.s);
    ck_assert_int_ge(files, 100);
    hc_buf_free(&report);
    printf("fuzz corpora: %d bodies to %d routes, every reply valid UTF-8 JSON\n", files,
           n_targets);
    server_down();
}
END_TEST

/* ---- slow clients ---- */

static long readyz(void) {
    HcResp r;
    HcClient open = g_c;
    open.key = NULL;
    long st = hc_call(&open, &r, "GET", "/readyz", NULL);
    hc_free(&r);
    return st;
}

START_TEST(a_body_sent_byte_by_byte_completes_while_others_are_served) {
    server_up(0);
    const char *body = "{\"name\":\"slow\",\"kind\":\"tasks\",\"tasks\":[{\"x\":[[1],[2]],"
                       "\"y\":[[3],[4]]}]}";
    size_t n = strlen(body);
    char head[512];
    int hn = snprintf(head, sizeof head,
                      "POST /v1/datasets HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                      "Authorization: Bearer %s\r\nContent-Type: application/json\r\n"
                      "Content-Length: %zu\r\n\r\n",
                      ADMIN_KEY, n);
    int fd = connect_server();
    ck_assert(send_all(fd, head, (size_t)hn));
    // 1 byte every 50..200 ms, each pause shorter than the connection timeout (2 s), so the
    // upload must complete; every 8 bytes another client must be served meanwhile
    unsigned seed = 7;
    int served = 0;
    for (size_t i = 0; i < n; i++) {
        ck_assert_msg(send_all(fd, body + i, 1), "the server closed a live upload at byte %zu", i);
        sleep_ms(50 + (int)(rand_r(&seed) % 151));
        if (i % 8 == 0) {
            ck_assert_int_eq(readyz(), 200);
            served++;
        }
    }
    HcBuf in;
    hc_buf_init(&in);
    ck_assert(read_all(fd, &in, RAW_WAIT_S));
    close(fd);
    HcResp r;
    parse_response(&r, &in);
    hc_buf_free(&in);
    ck_assert_msg(r.status == 201, "slow upload: %ld %s", r.status, r.body);
    ck_assert_str_eq(hc_str(&r, "name"), "slow");
    ck_assert_int_eq((int)hc_num(&r, "n_rows"), 2);
    hc_free(&r);
    ck_assert_int_ge(served, (int)(n / 8));

    // a client that stalls past the connection timeout mid-body is closed, and nothing is stored
    fd = connect_server();
    ck_assert(send_all(fd, head, (size_t)hn));
    ck_assert(send_all(fd, body, 10));
    hc_buf_init(&in);
    // the bound is the timeout plus generous slack for a loaded machine: only to fail, not hang
    ck_assert_msg(read_all(fd, &in, CONN_TIMEOUT_S + RAW_WAIT_S),
                  "a stalled upload was not closed by the server");
    ck_assert_uint_eq(in.len, 0); // closed without a reply: there is nothing to answer yet
    hc_buf_free(&in);
    close(fd);
    HcResp l;
    ck_assert_int_eq(hc_call(&g_c, &l, "GET", "/v1/datasets", NULL), 200);
    ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItem(l.json, "datasets")), 1);
    hc_free(&l);
    server_down();
}
END_TEST

#define N_LORIS 200

START_TEST(a_slowloris_of_partial_headers_does_not_starve_other_clients) {
    server_up(0);
    static int fds[N_LORIS];
    for (int i = 0; i < N_LORIS; i++) {
        fds[i] = connect_server();
        const char *part = "GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: a";
        ck_assert(send_all(fds[i], part, strlen(part)));
    }
    // while all of them hold their partial headers (and trickle a byte now and then), other
    // clients are served
    for (int round = 0; round < 3; round++) {
        for (int k = 0; k < 5; k++) {
            ck_assert_int_eq(readyz(), 200);
            HcResp r;
            ck_assert_int_eq(hc_call(&g_c, &r, "GET", "/v1/models", NULL), 200);
            hc_free(&r);
        }
        for (int i = 0; i < N_LORIS; i++)
            send_all(fds[i], "a", 1);
        sleep_ms(300);
    }
    // once they stop, the server closes every one after its connection timeout
    int closed = 0;
    for (int i = 0; i < N_LORIS; i++) {
        HcBuf in;
        hc_buf_init(&in);
        closed += read_all(fds[i], &in, CONN_TIMEOUT_S + RAW_WAIT_S);
        hc_buf_free(&in);
        close(fds[i]);
    }
    ck_assert_int_eq(closed, N_LORIS);
    ck_assert_int_eq(readyz(), 200);
    server_down();
}
END_TEST

int main(void) {
    curl_global_init(CURL_GLOBAL_ALL);
    double t0 = now_s();
    Suite *s = suite_create("hostile");
    TCase *tc = tcase_create("hostile");
    tcase_set_timeout(tc, 120);
    tcase_add_unchecked_fixture(tc, test_root_make, test_root_remove);
    tcase_add_test(tc, every_hostile_request_gets_the_right_4xx_and_leaves_the_service_intact);
    tcase_add_test(tc, every_fuzz_corpus_body_gets_a_reply_of_valid_utf8_json);
    tcase_add_test(tc, a_body_sent_byte_by_byte_completes_while_others_are_served);
    tcase_add_test(tc, a_slowloris_of_partial_headers_does_not_starve_other_clients);
    suite_add_tcase(s, tc);
    int failed = test_suite_run(s);
    curl_global_cleanup();
    printf("hostile suite: %.1f s wall\n", now_s() - t0);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
