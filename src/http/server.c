/*
 * The HTTP daemon: libmicrohttpd with an internal epoll thread pool. Owns the request life cycle
 * (body accumulation up to max_body_bytes, decided from Content-Length before reading when
 * present), the generic checks that run before any handler (route 404, method 405 + Allow,
 * authentication 401/403, size 413, content type 415), request ids, the access log (one JSON
 * line per request on stderr) and request metrics, the server's start and orderly stop, and the
 * reload of the API keys (SIGHUP or a changed key file).
 *
 * Keys: every request takes a reference to the key set current when its headers arrive and
 * authenticates against it, so a reload (a new immutable set swapped in under a mutex, keys.h)
 * never changes the answer for a request already taken in; the old set is freed by the last
 * request that holds it.
 *
 * Routing: the route table is matched on the path as received, still percent-encoded
 * (libmicrohttpd's URI log callback keeps a copy before anything is unescaped), so an encoded '/'
 * is part of one segment, never a separator; each parameter is decoded once after the match, a '.'
 * or '..' segment is never a parameter, and a parameter holding '/' or bytes that are not UTF-8 is
 * refused (422) before any handler. The path as received is also a problem's `instance`.
 *
 * Listening: METASERVE_LISTEN is an IPv4 or IPv6 literal or a host name (listen_resolve); the
 * socket is made here (IPV6_V6ONLY off, so "::" also takes IPv4 clients) and handed to
 * libmicrohttpd, and closed here after the daemon stops.
 *
 * Workload: thousands of small requests per second (adapt/predict bodies of a few KB) on a few
 * threads; a request allocates its context and body buffer once, replies from one buffer.
 */
#define _GNU_SOURCE
#include "metaserve/http/server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "http.h"
#include "metaserve/http/keys.h"
#include "metaserve/http/openapi.h"
#include "metaserve/http/sha256.h"

struct Server {
    struct MHD_Daemon *daemon;
    App app;
    int port;
    KeyHolder keys;                   // the current key set (app.keys points here)
    int keys_ready;                   // keys and reload_mu are initialised
    pthread_mutex_t reload_mu;        // one reload at a time; guards the fields below
    ServerKey fixed[SERVER_MAX_KEYS]; // keys not from the file, as digests: kept on reload
    int n_fixed;
    KeyFileId loaded; // the key file as last read (or tried)
    KeyFileId seen;   // the key file at the last server_keys_poll
};

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* ---- request ids ---- */

// A request id we accept from a client: 1..63 characters of [A-Za-z0-9._-].
static int id_ok(const char *s) {
    return name_chars(s, REQ_ID_MAX);
}

static void make_id(char *out) {
    unsigned char b[16];
    if (getrandom(b, sizeof b, 0) != (ssize_t)sizeof b) {
        // no entropy source: a clock-based id is still unique enough for correlation
        uint64_t t = (uint64_t)now_ns();
        memcpy(b, &t, 8);
        memcpy(b + 8, &t, 8);
    }
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; i < 16; i++) {
        out[2 * i] = hex[b[i] >> 4];
        out[2 * i + 1] = hex[b[i] & 15];
    }
    out[32] = '\0';
}

/* ---- routing ---- */

// Decodes the %HH escapes of s[0..n) into out (n + 1 bytes; out == s is allowed: decoding only
// shrinks), NUL-terminated, except %00: an encoded NUL stays the three characters "%00", so it
// can never cut a parameter or an argument short ("/v1/models/a%00b" must not name model "a");
// what is left names nothing valid (404 / 422). A '%' that starts no escape stays as it is.
// Returns the decoded length.
static size_t pct_decode(char *out, const char *s, size_t n) {
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        int hi = s[i] == '%' && i + 2 < n ? hex_digit(s[i + 1]) : -1;
        int lo = hi >= 0 ? hex_digit(s[i + 2]) : -1;
        if (lo >= 0 && (hi | lo)) {
            out[k++] = (char)(hi * 16 + lo);
            i += 2;
        } else {
            out[k++] = s[i];
        }
    }
    out[k] = '\0';
    return k;
}

// libmicrohttpd's unescape callback, used for query arguments only: routing and `instance` use
// the raw path kept by on_uri (the unescaped path libmicrohttpd passes on_request is ignored).
// Arguments are decoded once, in place, as pct_decode does ('+' is a space already).
static size_t unescape(void *cls, struct MHD_Connection *c, char *s) {
    (void)cls, (void)c;
    return pct_decode(s, s, strlen(s));
}

// 1 when s[0..n) is "." or ".." once decoded (%2e is '.').
static int dot_segment(const char *s, size_t n) {
    char d[8];
    if (n > 6) return 0; // "%2e%2e" is the longest spelling
    size_t dn = pct_decode(d, s, n);
    return (dn == 1 && d[0] == '.') || (dn == 2 && d[0] == '.' && d[1] == '.');
}

// Matches the raw path against pattern, filling r's path parameters (each decoded once); 1 on
// a match. Segments are split at a literal '/' only; a {parameter} is one non-empty segment
// that is not a dot segment (RFC 3986 §5.2.4 would remove it; here it names no route).
static int match(Req *r, const char *pattern, const char *path) {
    const char *p = pattern, *u = path;
    char *out = r->pbuf;
    size_t left = sizeof r->pbuf;
    int n = 0;
    while (*p && *u) {
        if (*p == '{') {
            const char *close = strchr(p, '}');
            size_t len = strcspn(u, "/");
            if (!close || len == 0 || len >= left || n >= REQ_MAX_PARAMS) return 0;
            if (dot_segment(u, len)) return 0;
            size_t dn = pct_decode(out, u, len);
            r->params[n++] = out;
            out += dn + 1;
            left -= dn + 1;
            p = close + 1;
            u += len;
        } else {
            if (*p != *u) return 0;
            p++, u++;
        }
    }
    if (*p || *u) return 0;
    r->n_params = n;
    return 1;
}

static const char *param_problem(const char *name, size_t n, const char *v);

// 1 when every path parameter, decoded, is free of '/' and is UTF-8; else a 422 naming the first
// that is not is set. An encoded '/' is data, never a separator, and no name or id holds one; a
// byte sequence that is not UTF-8 names nothing either (and not every store accepts one).
static int params_ok(Req *r, const Route *rt) {
    const char *name = rt->pattern;
    for (int i = 0; i < r->n_params; i++) {
        name = strchr(name, '{') + 1;
        int nn = (int)strcspn(name, "}");
        const char *v = r->params[i];
        if (strchr(v, '/')) {
            reply_problem(r, 422, "validation",
                          "%.*s: must not contain '/' (an encoded %%2F is not a path separator)",
                          nn, name);
            return 0;
        }
        for (size_t k = 0, len = strlen(v), step; k < len; k += step)
            if (!(step = utf8_seq_len(v + k, len - k))) {
                reply_problem(r, 422, "validation", "%.*s: must be UTF-8", nn, name);
                return 0;
            }
        // /v2 names an adaptation as the model "adaptation:<id>" (docs/oip.md)
        int oip_adaptation = strncmp(rt->pattern, "/v2/", 4) == 0 && nn == 4 &&
                             strncmp(name, "name", 4) == 0 && strncmp(v, "adaptation:", 11) == 0;
        const char *why =
            oip_adaptation ? param_problem("id", 2, v + 11) : param_problem(name, (size_t)nn, v);
        if (why) {
            reply_problem(r, 422, "validation", "%.*s: %s", nn, name, why);
            return 0;
        }
    }
    return 1;
}

// The one rule for path parameters: a value that could never name anything (a malformed id,
// name, alias, version or reference) is 422 naming the parameter and its form, before any
// handler; a well-formed value that names nothing is the handler's 404. NULL when v is
// well-formed for the parameter called name[0..n).
static const char *param_problem(const char *name, size_t n, const char *v) {
#define IS(lit) (n == sizeof lit - 1 && strncmp(name, lit, n) == 0)
    if (IS("id")) {
        size_t len = strlen(v);
        if (len != 32 || strspn(v, "0123456789abcdef") != 32)
            return "must be the 32 hexadecimal characters (0-9, a-f) of an id the service "
                   "returned; a shortened or placeholder id (such as d7e8...) names nothing";
        return NULL;
    }
    if (IS("name")) {
        if (strchr(v, '@'))
            return "this route takes a model name, not a reference (name@version or "
                   "name@alias); one version is /v1/models/{name}/versions/{version}";
        if (!name_valid(v))
            return "must be 1..127 characters of A-Z a-z 0-9 . _ - not starting with '.'";
        return NULL;
    }
    if (IS("alias")) {
        if (!name_valid(v))
            return "must be 1..127 characters of A-Z a-z 0-9 . _ - not starting with '.'";
        return NULL;
    }
    if (IS("ref")) {
        const char *at = strchr(v, '@');
        char nm[NAME_MAX_BYTES];
        size_t nl = at ? (size_t)(at - v) : strlen(v);
        if (nl >= sizeof nm) nl = sizeof nm - 1;
        memcpy(nm, v, nl);
        nm[nl] = '\0';
        if (!name_valid(nm) || (at && !name_valid(at + 1)))
            return "must be name, name@version or name@alias, each name 1..127 characters of "
                   "A-Z a-z 0-9 . _ - not starting with '.'";
        return NULL;
    }
#undef IS
    return NULL; // {version}: its handler's integer check (422)
}

// Finds the route; 404 / 405 (with Allow) replies when none fits. Returns the route or NULL.
static const Route *route(Req *r) {
    int path_known = 0;
    r->allow[0] = '\0';
    // HEAD is served wherever GET is (libmicrohttpd sends the headers without the body)
    const char *m = strcmp(r->method, "HEAD") == 0 ? "GET" : r->method;
    for (const Route *rt = ROUTES; rt->method; rt++) {
        if (!match(r, rt->pattern, r->url)) continue;
        if (strcmp(rt->method, m) == 0) return rt;
        if (!strstr(r->allow, rt->method) &&
            strlen(r->allow) + strlen(rt->method) + 3 < sizeof r->allow) {
            if (path_known) strcat(r->allow, ", ");
            strcat(r->allow, rt->method);
        }
        path_known = 1;
    }
    if (path_known)
        reply_problem(r, 405, "method-not-allowed", "method %s is not allowed here; allowed: %s",
                      id_ok(r->method) ? r->method : "(unknown)", r->allow);
    else
        reply_problem(r, 404, "not-found", "no such route");
    return NULL;
}

/* ---- authentication ---- */

int addr_is_loopback(const struct sockaddr *a) {
    if (!a) return 0;
    if (a->sa_family == AF_INET) {
        const struct sockaddr_in *v4 = (const struct sockaddr_in *)(const void *)a;
        return (ntohl(v4->sin_addr.s_addr) >> 24) == 127; // 127.0.0.0/8
    }
    if (a->sa_family == AF_INET6) {
        const struct in6_addr *v6 = &((const struct sockaddr_in6 *)(const void *)a)->sin6_addr;
        if (IN6_IS_ADDR_LOOPBACK(v6)) return 1;
        return IN6_IS_ADDR_V4MAPPED(v6) && v6->s6_addr[12] == 127; // ::ffff:127.x.y.z
    }
    return 0;
}

int protected_refuses(int open, int listen_loopback, int client_loopback, const char *route) {
    if (open || listen_loopback || client_loopback) return 0;
    // health checks come from outside the host (orchestrators, load balancers): they stay open
    return !(route && (strcmp(route, "/livez") == 0 || strcmp(route, "/readyz") == 0));
}

// 1 when the request may proceed; else a 401/403 reply is set. The keys are the set taken when
// the request's headers arrived (r->keys); keyset_role compares digests in constant time.
static int authorize(Req *r, const Route *rt) {
    if (keyset_count(r->keys) == 0) {
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
        int local = ci && addr_is_loopback(ci->client_addr);
        if (protected_refuses(r->app->cfg.open, r->app->listen_loopback, local, rt->name)) {
            reply_problem(r, 403, "forbidden",
                          "protected mode: no API keys are configured and the service listens on "
                          "a non-loopback address, so it answers loopback clients only. Configure "
                          "keys (METASERVE_API_KEYS or METASERVE_API_KEYS_FILE) and send "
                          "Authorization: Bearer <key>, or set METASERVE_OPEN=1 to answer every "
                          "client without keys");
            return 0;
        }
        r->role = ROLE_ADMIN; // open: loopback, or METASERVE_OPEN=1 (logged at start)
        return 1;
    }
    const char *h = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Authorization");
    r->role = ROLE_NONE;
    // "Bearer" 1*SP token (RFC 6750 §2.1): any run of spaces separates the scheme from the key
    const char *presented = h && strncasecmp(h, "Bearer ", 7) == 0 ? h + 7 : NULL;
    while (presented && *presented == ' ')
        presented++;
    size_t pn = presented ? strlen(presented) : 0;
    if (pn > 0 && pn < 128) r->role = (Role)keyset_role(r->keys, presented, pn);
    if (rt->role == ROLE_NONE) return 1;
    if (r->role == ROLE_NONE) {
        if (h && !presented && strncasecmp(h, "Bearer", 6) != 0)
            reply_problem(r, 401, "unauthorized",
                          "Authorization: the Bearer scheme is required (Authorization: Bearer "
                          "<key>); the %s scheme is not accepted",
                          strncasecmp(h, "Basic", 5) == 0 ? "Basic" : "given");
        else
            reply_problem(r, 401, "unauthorized",
                          h ? "the API key is not valid"
                            : "an API key is required "
                              "(Authorization: Bearer <key>)");
        return 0;
    }
    if (r->role < rt->role) {
        reply_problem(r, 403, "forbidden", "this route needs the admin role");
        return 0;
    }
    return 1;
}

// NULL when the Content-Type is application/json, else the detail of the 415. Parameters are
// allowed, but a charset only when it is utf-8: JSON exchanged between systems is UTF-8 (RFC 8259
// §8.1), so a body declared latin1 is not one we can read as sent.
static const char *json_content_type(Req *r) {
    const char *ct = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Content-Type");
    if (!ct) return "Content-Type: must be application/json";
    size_t n = strcspn(ct, ";");
    while (n > 0 && ct[n - 1] == ' ')
        n--;
    if (n != 16 || strncasecmp(ct, "application/json", 16) != 0)
        return "Content-Type: must be application/json";
    for (const char *p = strchr(ct, ';'); p; p = strchr(p + 1, ';')) {
        const char *v = p + 1;
        while (*v == ' ' || *v == '\t')
            v++;
        if (strncasecmp(v, "charset=", 8) != 0) continue;
        v += 8;
        size_t vn = *v == '"' ? strcspn(++v, "\"") : strcspn(v, "; \t");
        if (vn != 5 || strncasecmp(v, "utf-8", 5) != 0)
            return "Content-Type: charset must be utf-8 (JSON is UTF-8)";
    }
    return NULL;
}

// Framing headers seen on a request: Content-Length values (the first kept) and
// Transfer-Encoding (chunked, or a coding libmicrohttpd cannot decode).
typedef struct {
    int n_length, lengths_differ, chunked, other_coding;
    const char *length;
} Framing;

static enum MHD_Result framing_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                      const char *value) {
    (void)kind;
    Framing *f = cls;
    if (strcasecmp(key, "Content-Length") == 0) {
        if (f->n_length++ == 0)
            f->length = value ? value : "";
        else if (strcmp(f->length, value ? value : "") != 0)
            f->lengths_differ = 1;
    } else if (strcasecmp(key, "Transfer-Encoding") == 0) {
        f->chunked = 1;
        f->other_coding |= !value || strcasecmp(value, "chunked") != 0;
    }
    return MHD_YES;
}

// NULL when the body's length is unambiguous, else the detail of a 400 (*status) or, for a
// transfer coding other than chunked, of a 501 (RFC 9112 §6.1; the body could not be read).
// Two different Content-Lengths, or one beside Transfer-Encoding, are how requests are smuggled
// past a proxy that reads the other one (RFC 9112 §6.3). Either way the connection is closed
// after the reply.
static const char *framing_problem(struct MHD_Connection *conn, int *status) {
    Framing f = {0};
    MHD_get_connection_values(conn, MHD_HEADER_KIND, framing_header, &f);
    *status = 400;
    if (f.lengths_differ) return "Content-Length: given more than once with different values";
    if (f.n_length && f.chunked) return "Content-Length: not allowed with Transfer-Encoding";
    *status = 501;
    if (f.other_coding) return "Transfer-Encoding: only chunked is supported";
    return NULL;
}

// Query parameters: each must be one the route reads (its query list) and have a value; the
// first that is not is refused with 400 naming it (a name that is not printable ASCII of at most
// 40 characters is described, not echoed).
typedef struct {
    const char *known; // the route's list, or NULL
    char bad[160];     // the problem's detail, when one was found
} QueryCheck;

static enum MHD_Result query_arg(void *cls, enum MHD_ValueKind kind, const char *key,
                                 const char *value) {
    (void)kind;
    QueryCheck *q = cls;
    if (q->bad[0]) return MHD_NO;
    size_t kn = strlen(key);
    int printable = kn > 0 && kn <= 40;
    for (size_t i = 0; i < kn && printable; i++)
        printable = key[i] > 0x20 && key[i] < 0x7f && key[i] != '"' && key[i] != '\\';
    int known = 0;
    for (const char *k = q->known; k && *k && !known;) {
        size_t n = strcspn(k, ",");
        known = n == kn && strncmp(k, key, n) == 0;
        k += n + (k[n] == ',');
    }
    if (!known)
        snprintf(q->bad, sizeof q->bad, "%s%.40s%s: not a query parameter of this route",
                 printable ? "" : "a query parameter", printable ? key : "",
                 printable ? "" : " (not printable ASCII)");
    else if (!value || !*value)
        snprintf(q->bad, sizeof q->bad, "%s: empty; leave the parameter out instead", key);
    return q->bad[0] ? MHD_NO : MHD_YES;
}

static int query_ok(Req *r, const Route *rt) {
    QueryCheck q = {.known = rt->query};
    if (r->conn) MHD_get_connection_values(r->conn, MHD_GET_ARGUMENT_KIND, query_arg, &q);
    if (!q.bad[0]) return 1;
    if (rt->query)
        reply_problem(r, 400, "bad-request", "%s (it takes %s)", q.bad, rt->query);
    else
        reply_problem(r, 400, "bad-request", "%s (it takes none)", q.bad);
    return 0;
}

// 1 when the request declares a safetensors body: Content-Type application/octet-stream or
// application/vnd.safetensors (parameters ignored).
int req_is_binary(Req *r) {
    const char *ct = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Content-Type");
    if (!ct) return 0;
    size_t n = strcspn(ct, ";");
    while (n > 0 && ct[n - 1] == ' ')
        n--;
    return (n == 24 && strncasecmp(ct, "application/octet-stream", 24) == 0) ||
           (n == 27 && strncasecmp(ct, "application/vnd.safetensors", 27) == 0);
}

// The body limit of a request: max_dataset_bytes for a safetensors dataset upload (POST
// /v1/datasets with a binary Content-Type), max_body_bytes for everything else.
static size_t body_limit(Req *r) {
    const ServerConfig *c = &r->app->cfg;
    if (r->method && strcmp(r->method, "POST") == 0 && r->url &&
        strcmp(r->url, "/v1/datasets") == 0 && req_is_binary(r))
        return c->max_dataset_bytes;
    return c->max_body_bytes;
}

static void dispatch(Req *r) {
    const Route *rt = route(r);
    if (!rt) return;
    r->route = rt;
    if (!authorize(r, rt)) return;
    if (!params_ok(r, rt)) return;
    if (!query_ok(r, rt)) return;
    if (r->too_large) {
        reply_problem(r, 413, "payload-too-large", "body: larger than %zu bytes", body_limit(r));
        return;
    }
    if (r->oom) {
        reply_problem(r, 503, "unavailable", "out of memory buffering the request body");
        return;
    }
    // JSON_OR_BINARY routes also take a safetensors body, which the handler reads from r->body;
    // BODY_RAW routes read whatever body they get themselves
    int json = rt->json_body == 1 || rt->json_body == JSON_OR_BINARY;
    r->binary = rt->json_body == JSON_OR_BINARY && req_is_binary(r);
    const char *why = json && !r->binary ? json_content_type(r) : NULL;
    if (why && rt->json_body == JSON_OR_BINARY)
        why = "Content-Type: must be application/json, or application/octet-stream for "
              "safetensors";
    if (why) {
        reply_problem(r, 415, "unsupported-media-type", "%s", why);
        return;
    }
    // the body is parsed once, here: handlers of json_body routes read r->json
    if (json && !r->binary && !(r->json = req_json(r))) return;
    rt->handler(r);
    if (!r->status) reply_problem(r, 500, "internal", "the handler gave no reply");
    // Group commit makes a commit visible a moment before the fsync that makes it durable: a
    // reply built from the store leaves only once what it may have read is durable too
    // (immediate unless a commit is in flight or unsynced; src/store/store_sqlite_sync.c).
    MsError ferr = {0};
    if (r->store && store_durable_fence(r->store, &ferr) != MS_OK) {
        r->location[0] = '\0';
        reply_problem(r, 503, "unavailable", "%s", ferr.msg);
    }
}

/* ---- replies and logs ---- */

static enum MHD_Result send_reply(Req *r) {
    struct MHD_Response *resp;
    if (r->response) {
        // made by the handler (an event stream), with its own headers
        resp = r->response;
        r->response = NULL;
    } else if (r->reply && r->reply_len) {
        resp = MHD_create_response_from_buffer(r->reply_len, r->reply, MHD_RESPMEM_MUST_FREE);
        r->reply = NULL; // now the response's
    } else if (r->reply_len) {
        // a problem document, in the request's own buffer (reply_problem)
        resp = MHD_create_response_from_buffer(r->reply_len, r->problem, MHD_RESPMEM_MUST_COPY);
    } else {
        resp = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
    }
    if (!resp) return MHD_NO;
    if (r->content_type) MHD_add_response_header(resp, "Content-Type", r->content_type);
    MHD_add_response_header(resp, "X-Request-ID", r->id);
    if (r->location[0]) MHD_add_response_header(resp, "Location", r->location);
    if (r->allow[0] && r->status == 405) MHD_add_response_header(resp, "Allow", r->allow);
    if (r->retry_after[0]) MHD_add_response_header(resp, "Retry-After", r->retry_after);
    if (r->infer_header_len[0])
        MHD_add_response_header(resp, "Inference-Header-Content-Length", r->infer_header_len);
    if (r->filename[0] && r->status == 200) {
        char cd[sizeof r->filename + 32]; // "attachment; filename=\"...\""
        snprintf(cd, sizeof cd, "attachment; filename=\"%s\"", r->filename);
        MHD_add_response_header(resp, "Content-Disposition", cd);
    }
    if (r->status == 401) MHD_add_response_header(resp, "WWW-Authenticate", "Bearer");
    for (int i = 0; i < r->n_headers; i++)
        MHD_add_response_header(resp, r->headers[i][0], r->headers[i][1]);
    // after a 413, or a 400 / 501 before routing (framing), the rest of what the client sends
    // cannot be trusted to start a new request
    if (r->status == 413 || ((r->status == 400 || r->status == 501) && !r->route))
        MHD_add_response_header(resp, "Connection", "close");
    enum MHD_Result ok = MHD_queue_response(r->conn, (unsigned)r->status, resp);
    MHD_destroy_response(resp);
    return ok;
}

// The reply when not even the request's context can be allocated: a problem document built on
// the stack (libmicrohttpd copies it), answered before the body is read.
static enum MHD_Result reply_nomem_early(struct MHD_Connection *conn) {
    char id[REQ_ID_MAX], doc[320];
    make_id(id);
    int n = snprintf(doc, sizeof doc,
                     "{\"type\":\"https://metaserve.dev/problems/unavailable\","
                     "\"title\":\"%s\",\"status\":503,\"detail\":\"out of memory accepting "
                     "the request\",\"instance\":\"\",\"request_id\":\"%s\"}",
                     problem_title("unavailable"), id);
    struct MHD_Response *resp =
        MHD_create_response_from_buffer((size_t)n, doc, MHD_RESPMEM_MUST_COPY);
    if (!resp) return MHD_NO;
    MHD_add_response_header(resp, "Content-Type", "application/problem+json");
    MHD_add_response_header(resp, "X-Request-ID", id);
    MHD_add_response_header(resp, "Retry-After", "1");
    enum MHD_Result ok = MHD_queue_response(conn, 503, resp);
    MHD_destroy_response(resp);
    return ok;
}

static void access_log(const Req *r, double seconds) {
    char line[768], ts[32];
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    struct tm tm;
    gmtime_r(&now.tv_sec, &tm);
    strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
    int n =
        snprintf(line, sizeof line,
                 "{\"ts\":\"%s.%03ldZ\",\"level\":\"info\",\"msg\":\"request\","
                 "\"request_id\":\"%s\",\"method\":\"%s\",\"route\":\"%s\",\"status\":%d,"
                 "\"duration_ms\":%.3f,\"bytes_in\":%zu}\n",
                 ts, now.tv_nsec / 1000000, r->id, id_ok(r->method) ? r->method : "?",
                 r->route ? r->route->name : "unmatched", r->status, seconds * 1e3, r->body_len);
    // one write per line: lines from concurrent requests never interleave
    if (n > 0) {
        ssize_t w = write(2, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
        (void)w;
    }
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
    (void)conn, (void)toe;
    App *app = cls;
    Req *r = *con_cls;
    if (!r) return;
    double s = (double)(now_ns() - r->t0_ns) * 1e-9;
    if (r->status) {
        access_log(r, s);
        metrics_observe(app->metrics, r->route ? r->route->name : "unmatched", r->method, r->status,
                        s);
    }
    keyset_release(r->keys);
    if (r->response) MHD_destroy_response(r->response); // made but never queued
    cJSON_Delete(r->json);
    free(r->body);
    free(r->reply);
    free(r);
    *con_cls = NULL;
}

// libmicrohttpd's URI log callback: called with the request target exactly as received, before
// the query is split off and anything is unescaped. The request's context is made here, with a
// copy of the raw path in the same allocation (r->url), which routing and `instance` use.
static void *on_uri(void *cls, const char *uri, struct MHD_Connection *conn) {
    size_t n = uri ? strcspn(uri, "?") : 0;
    Req *r = calloc(1, sizeof *r + n + 1);
    if (!r) return NULL; // on_request answers 503
    char *path = (char *)(r + 1);
    if (n) memcpy(path, uri, n);
    path[n] = '\0';
    r->app = cls;
    r->conn = conn;
    r->url = path;
    return r;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload,
                                  size_t *upload_size, void **con_cls) {
    (void)version, (void)url; // url is unescaped: r->url is the path as received
    App *app = cls;
    Req *r = *con_cls;
    if (!r) return reply_nomem_early(conn); // on_uri could not allocate the context
    if (!r->method) {
        r->method = method;
        r->t0_ns = now_ns();
        r->keys = keyholder_get(app->keys); // this request's keys, whatever a reload does next
        const char *rid = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-Request-ID");
        if (id_ok(rid))
            snprintf(r->id, sizeof r->id, "%s", rid);
        else
            make_id(r->id);
        *con_cls = r;
        int bad_status;
        const char *bad = framing_problem(conn, &bad_status);
        if (bad) {
            reply_problem(r, bad_status, bad_status == 400 ? "bad-request" : "not-implemented",
                          "%s", bad);
            return send_reply(r);
        }
        const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
        if (cl) {
            char *end;
            unsigned long long v = strtoull(cl, &end, 10);
            if (*end == '\0' && v > body_limit(r)) {
                // decided before reading a byte of the body
                r->too_large = 1;
                reply_problem(r, 413, "payload-too-large", "body: %llu bytes, the limit is %zu", v,
                              body_limit(r));
                return send_reply(r);
            }
            // a declared length is allocated once (no doubling: a large upload is held once)
            if (*end == '\0') r->body_expect = (size_t)v;
        }
        return MHD_YES;
    }
    if (*upload_size) {
        size_t n = *upload_size;
        *upload_size = 0;
        if (r->too_large || r->oom || r->status) return MHD_YES; // refused early: discard
        size_t limit = body_limit(r);
        if (r->body_len + n > limit) {
            r->too_large = 1; // chunked or lying Content-Length: keep reading, then 413
            free(r->body);
            r->body = NULL;
            r->body_len = r->body_cap = 0;
            return MHD_YES;
        }
        if (r->body_len + n + 1 > r->body_cap) {
            size_t cap = r->body_cap ? r->body_cap : 4096;
            while (cap < r->body_len + n + 1)
                cap *= 2;
            if (!r->body_cap && r->body_expect >= r->body_len + n) cap = r->body_expect + 1;
            if (cap > limit + 1) cap = limit + 1;
            char *b = realloc(r->body, cap);
            if (!b) {
                // keep reading (and dropping) the body, then answer 503 (dispatch)
                r->oom = 1;
                free(r->body);
                r->body = NULL;
                r->body_len = r->body_cap = 0;
                return MHD_YES;
            }
            r->body = b;
            r->body_cap = cap;
        }
        memcpy(r->body + r->body_len, upload, n);
        r->body_len += n;
        r->body[r->body_len] = '\0';
        return MHD_YES;
    }
    if (r->status) return MHD_YES; // an early reply was queued already
    dispatch(r);
    return send_reply(r);
}

/* ---- API keys: start and reload ---- */

static void wipe(void *p, size_t n) {
    volatile unsigned char *v = p;
    for (size_t i = 0; i < n; i++)
        v[i] = 0;
}

// s as the inside of a JSON string (quotes, backslashes and control bytes escaped), truncated to
// fit cap.
static void json_text(char *out, size_t cap, const char *s) {
    size_t k = 0;
    for (; *s && k + 7 < cap; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            k += (size_t)snprintf(out + k, cap - k, "\\%c", ch);
        else if (ch < 0x20)
            k += (size_t)snprintf(out + k, cap - k, "\\u%04x", ch);
        else
            out[k++] = (char)ch;
    }
    out[k] = '\0';
}

// One JSON log line on stderr, in one write (never interleaved with the access log).
static void log_line(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void log_line(const char *fmt, ...) {
    char line[2048];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line - 1, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n > sizeof line - 2) n = (int)sizeof line - 2;
    line[n++] = '\n';
    ssize_t w = write(2, line, (size_t)n);
    (void)w;
}

// The first key set: the configured keys that are not the file's (made digests, kept for every
// reload) and the key file read again here, so that the identity recorded for server_keys_poll
// is that of the text in force. The configuration's copy of the keys is wiped.
static MsStatus keys_start(Server *s, MsError *err) {
    ServerConfig *c = &s->app.cfg;
    pthread_mutex_init(&s->reload_mu, NULL);
    ServerKey all[SERVER_MAX_KEYS];
    int n = 0;
    for (int i = 0; i < c->n_keys && i < SERVER_MAX_KEYS; i++) {
        if (c->keys_file[0] && c->keys[i].from_file) continue;
        ServerKey *f = &s->fixed[s->n_fixed++];
        *f = c->keys[i];
        if (!f->hashed) sha256(f->digest, f->key, strlen(f->key));
        f->hashed = 1;
        f->from_file = 0;
        wipe(f->key, sizeof f->key);
    }
    memcpy(all, s->fixed, (size_t)s->n_fixed * sizeof all[0]);
    n = s->n_fixed;
    wipe(c->keys, sizeof c->keys);
    c->n_keys = 0; // the key set is the truth from here on
    MsStatus st = MS_OK;
    if (c->keys_file[0])
        st = keys_read_file(all, &n, SERVER_MAX_KEYS, c->keys_file, "METASERVE_API_KEYS_FILE",
                            &s->loaded, err);
    s->seen = s->loaded;
    KeySet *ks = st == MS_OK ? keyset_create(all, n) : NULL;
    wipe(all, sizeof all);
    if (st == MS_OK && !ks) st = ms_fail(err, MS_ERR_NOMEM, "out of memory");
    if (st != MS_OK) {
        pthread_mutex_destroy(&s->reload_mu);
        return st;
    }
    keyholder_init(&s->keys, ks);
    s->app.keys = &s->keys;
    s->keys_ready = 1;
    return MS_OK;
}

// server_keys_reload; asked: an operator asked for it (SIGHUP), so what cannot be reloaded is
// said too.
static MsStatus keys_reload(Server *s, const char *trigger, int asked, MsError *err) {
    MsError local = {0};
    if (!err) err = &local;
    const char *path = s->app.cfg.keys_file;
    char trig[64], file[1024];
    json_text(trig, sizeof trig, trigger ? trigger : "");
    json_text(file, sizeof file, path);
    pthread_mutex_lock(&s->reload_mu);
    if (asked && s->n_fixed)
        log_line("{\"level\":\"warn\",\"msg\":\"api keys from METASERVE_API_KEYS or --api-keys "
                 "cannot be reloaded: kept\",\"trigger\":\"%s\",\"kept\":%d}",
                 trig, s->n_fixed);
    if (!path[0]) {
        if (asked && !s->n_fixed)
            log_line("{\"level\":\"info\",\"msg\":\"no API key file configured: nothing to "
                     "reload\",\"trigger\":\"%s\"}",
                     trig);
        pthread_mutex_unlock(&s->reload_mu);
        return MS_OK;
    }
    ServerKey all[SERVER_MAX_KEYS];
    memcpy(all, s->fixed, (size_t)s->n_fixed * sizeof all[0]);
    int n = s->n_fixed;
    KeyFileId id;
    MsStatus st =
        keys_read_file(all, &n, SERVER_MAX_KEYS, path, "METASERVE_API_KEYS_FILE", &id, err);
    // what was tried is not tried again until it changes: a bad file is reported once
    s->loaded = s->seen = id;
    KeySet *cur = s->keys.cur; // only a reload changes it, and this one holds reload_mu
    if (st == MS_OK && n == 0 && keyset_count(cur) > 0)
        st = ms_fail(err, MS_ERR_INVALID,
                     "METASERVE_API_KEYS_FILE: no keys in the file (it would open every route)");
    KeySet *ks = NULL;
    if (st == MS_OK && !(ks = keyset_create(all, n)))
        st = ms_fail(err, MS_ERR_NOMEM, "out of memory");
    wipe(all, sizeof all);
    if (st != MS_OK) {
        char detail[512];
        json_text(detail, sizeof detail, err->msg);
        log_line("{\"level\":\"error\",\"msg\":\"api keys not reloaded: the previous keys stay "
                 "in force\",\"trigger\":\"%s\",\"file\":\"%s\",\"detail\":\"%s\"}",
                 trig, file, detail);
    } else {
        int admins = keyset_count_role(ks, ROLE_ADMIN),
            clients = keyset_count_role(ks, ROLE_CLIENT);
        keyholder_swap(&s->keys, ks);
        log_line("{\"level\":\"info\",\"msg\":\"api keys reloaded\",\"trigger\":\"%s\","
                 "\"file\":\"%s\",\"api_keys\":\"%d admin, %d client (redacted)\"}",
                 trig, file, admins, clients);
    }
    pthread_mutex_unlock(&s->reload_mu);
    return st;
}

MsStatus server_keys_reload(Server *s, const char *trigger, MsError *err) {
    return keys_reload(s, trigger, 1, err);
}

int server_keys_poll(Server *s) {
    const char *path = s->app.cfg.keys_file;
    if (!path[0]) return 0;
    KeyFileId now;
    keys_file_id(path, &now);
    pthread_mutex_lock(&s->reload_mu);
    // reload only a version seen unchanged one call apart: a file written in place is not read
    // while the writer is still at it
    int changed = !keys_file_id_eq(&now, &s->loaded), settled = keys_file_id_eq(&now, &s->seen);
    s->seen = now;
    pthread_mutex_unlock(&s->reload_mu);
    if (!changed || !settled) return 0;
    keys_reload(s, "file change", 0, NULL);
    return 1;
}

/* ---- the listen socket ---- */

// Opens the listen socket for c->listen and c->port: the addresses listen_resolve gives, IPv4
// ones first (a host name such as localhost then serves the clients of 127.0.0.1, including
// `metaserve health`), the first that binds. SO_REUSEADDR, and for IPv6 IPV6_V6ONLY off where
// the system allows it, so that "::" takes IPv4 clients too (dual stack). The descriptor (the
// caller's to close) to *fd, its address family to *family.
static MsStatus listen_socket(const ServerConfig *c, int *fd, int *family, MsError *err) {
    struct addrinfo *res;
    MsStatus st = listen_resolve(c->listen, c->port, &res, "METASERVE_LISTEN", err);
    if (st != MS_OK) return st;
    int e = EADDRNOTAVAIL;
    *fd = -1;
    for (int pass = 0; pass < 2 && *fd < 0; pass++) {
        for (const struct addrinfo *a = res; a && *fd < 0; a = a->ai_next) {
            if (a->ai_family != (pass == 0 ? AF_INET : AF_INET6)) continue;
            int s = socket(a->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0), on = 1, off = 0;
            if (s < 0) {
                e = errno;
                continue;
            }
            setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
            if (a->ai_family == AF_INET6) // best effort: some systems keep v6-only sockets
                setsockopt(s, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof off);
            if (bind(s, a->ai_addr, a->ai_addrlen) == 0 && listen(s, SOMAXCONN) == 0) {
                *fd = s;
                *family = a->ai_family;
            } else {
                e = errno;
                close(s);
            }
        }
    }
    freeaddrinfo(res);
    if (*fd < 0)
        return ms_fail(err, MS_ERR_IO, "cannot listen on %s:%d: %s", c->listen, c->port,
                       strerror(e));
    return MS_OK;
}

/* ---- life cycle ---- */

MsStatus server_start(Server **out, const ServerConfig *c, MsError *err) {
    *out = NULL;
    Server *s = calloc(1, sizeof *s);
    if (!s) return ms_fail(err, MS_ERR_NOMEM, "out of memory");
    s->app.cfg = *c;
    s->app.store_opts.read_only = c->db_read_only;
    s->app.store_opts.max_pages = c->db_max_pages;
    s->app.store_opts.replica = s->app.cfg.replica;
    s->app.store_opts.lease_ms = c->lease_ms;
    s->app.openapi = METASERVE_OPENAPI;
    s->app.openapi_len = METASERVE_OPENAPI_LEN;
    s->app.started_ms = store_now_ms();
    atomic_init(&s->app.draining, 0);
    MsStatus st = MS_OK;
    if ((st = keys_start(s, err)) != MS_OK) goto fail;
    // open and migrate the database once before anything else touches it
    Store *db = NULL;
    if ((st = store_open_opts(&db, c->db, &s->app.store_opts, err)) != MS_OK) goto fail;
    store_close(db);
    if (!(s->app.metrics = metrics_create())) {
        st = ms_fail(err, MS_ERR_NOMEM, "out of memory");
        goto fail;
    }
    if ((st = serving_create(&s->app.serving, c->cache_models, err))) goto fail;
    JobPoolConfig jc;
    jobpool_config_defaults(&jc);
    jc.db_path = s->app.cfg.db;
    jc.store_opts = &s->app.store_opts;
    jc.workers = c->workers;
    jc.train_threads = c->train_threads;
    jc.max_train_threads = c->max_train_threads;
    jc.checkpoint_every = c->checkpoint_every;
    jc.checkpoint_seconds = c->checkpoint_seconds;
    // a read-only database can queue nothing and finish nothing: no workers (jobs are 503)
    if (c->workers > 0 && !c->db_read_only && (st = jobpool_start(&s->app.jobs, &jc, err)))
        goto fail;
    // the sweeper does not depend on training: it runs with zero workers too
    SweeperConfig sc = {
        .db_path = s->app.cfg.db, .store_opts = &s->app.store_opts, .period_s = c->adapt_sweep_s};
    if (!c->db_read_only && (st = sweeper_start(&s->app.sweeper, &sc, err))) goto fail;
    int lfd, family = AF_INET;
    if ((st = listen_socket(c, &lfd, &family, err)) != MS_OK) goto fail;
    struct sockaddr_storage bound;
    socklen_t blen = sizeof bound;
    s->app.listen_loopback = getsockname(lfd, (struct sockaddr *)&bound, &blen) == 0 &&
                             addr_is_loopback((struct sockaddr *)&bound);
    struct stat ls = {0};
    fstat(lfd, &ls);
    if ((st = sse_hub_create(&s->app.sse, err)) != MS_OK) goto fail;
    // event streams wait suspended (h_events.c): suspend/resume must be allowed
    unsigned flags =
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ITC | MHD_ALLOW_SUSPEND_RESUME;
    if (family == AF_INET6) flags |= MHD_USE_IPv6;
    // port 0: libmicrohttpd reads the bound port from the socket
    s->daemon = MHD_start_daemon(
        flags, 0, NULL, NULL, on_request, &s->app, MHD_OPTION_LISTEN_SOCKET, (MHD_socket)lfd,
        MHD_OPTION_THREAD_POOL_SIZE, (unsigned)c->http_threads, MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned)c->conn_timeout_s, MHD_OPTION_CONNECTION_LIMIT, (unsigned)c->conn_limit,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, &s->app, MHD_OPTION_URI_LOG_CALLBACK, on_uri,
        &s->app, MHD_OPTION_UNESCAPE_CALLBACK, unescape, NULL, MHD_OPTION_END);
    if (!s->daemon) {
        // libmicrohttpd closes the socket on most of its failure paths, not on all: close it
        // only while the descriptor still is that socket
        struct stat now;
        if (fstat(lfd, &now) == 0 && now.st_dev == ls.st_dev && now.st_ino == ls.st_ino) close(lfd);
        st = ms_fail(err, MS_ERR_IO, "cannot serve on %s:%d (libmicrohttpd did not start)",
                     c->listen, c->port);
        goto fail;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(s->daemon, MHD_DAEMON_INFO_BIND_PORT);
    s->port = info ? info->port : c->port;
    *out = s;
    return MS_OK;
fail:
    server_stop(s);
    return st;
}

int server_port(const Server *s) {
    return s->port;
}

void server_drain(Server *s) {
    if (!s) return;
    atomic_store(&s->app.draining, 1);
    // event streams end now (their clients reconnect to a replica that is not draining)
    sse_hub_close(s->app.sse);
}

void server_stop(Server *s) {
    if (!s) return;
    atomic_store(&s->app.draining, 1);
    // every event stream is woken and ends: none is left suspended when the daemon stops
    sse_hub_close(s->app.sse);
    if (s->daemon) {
        // stop accepting, give in-flight requests up to 10 s to finish, then close
        MHD_socket lfd = MHD_quiesce_daemon(s->daemon);
        for (int i = 0; i < 1000; i++) {
            const union MHD_DaemonInfo *info =
                MHD_get_daemon_info(s->daemon, MHD_DAEMON_INFO_CURRENT_CONNECTIONS);
            if (!info || info->num_connections == 0) break;
            usleep(10000);
        }
        MHD_stop_daemon(s->daemon);
        // a quiesced daemon leaves its listen socket to the caller: closed here, or the port
        // would stay bound until the process ends
        if (lfd != MHD_INVALID_SOCKET) close(lfd);
    }
    sse_hub_destroy(s->app.sse);
    jobpool_stop(s->app.jobs); // running jobs checkpoint and return to the queue
    sweeper_stop(s->app.sweeper);
    serving_destroy(s->app.serving);
    metrics_destroy(s->app.metrics);
    if (s->keys_ready) {
        keyholder_free(&s->keys);
        pthread_mutex_destroy(&s->reload_mu);
    }
    wipe(s->fixed, sizeof s->fixed);
    free(s);
}
