/*
 * The HTTP daemon: libmicrohttpd with an internal epoll thread pool. Owns the request life cycle
 * (body accumulation up to max_body_bytes, decided from Content-Length before reading when
 * present), the generic checks that run before any handler (route 404, method 405 + Allow,
 * authentication 401/403, size 413, content type 415), request ids, the access log (one JSON
 * line per request on stderr) and request metrics, and the server's start and orderly stop.
 *
 * Workload: thousands of small requests per second (adapt/predict bodies of a few KB) on a few
 * threads; a request allocates its context and body buffer once, replies from one buffer.
 */
#define _GNU_SOURCE
#include "metaserve/http/server.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "http.h"
#include "metaserve/http/openapi.h"

struct Server {
    struct MHD_Daemon *daemon;
    App app;
    int port;
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

// Decodes the %HH escapes of the path and of query arguments in place, except %00: an encoded
// NUL stays the three characters "%00", so it can never cut a path or a parameter short
// ("/v1/models/a%00b" must not name model "a"); what is left names nothing valid (404 / 422).
static size_t unescape(void *cls, struct MHD_Connection *c, char *s) {
    (void)cls, (void)c;
    char *w = s;
    for (const char *p = s; *p; p++) {
        int hi = *p == '%' ? hex_digit(p[1]) : -1, lo = hi >= 0 ? hex_digit(p[2]) : -1;
        if (lo >= 0 && (hi | lo)) {
            *w++ = (char)(hi * 16 + lo);
            p += 2;
        } else {
            *w++ = *p;
        }
    }
    *w = '\0';
    return (size_t)(w - s);
}

// Matches url against pattern, filling r's path parameters; 1 on a match.
static int match(Req *r, const char *pattern, const char *url) {
    const char *p = pattern, *u = url;
    char *out = r->pbuf;
    size_t left = sizeof r->pbuf;
    int n = 0;
    while (*p && *u) {
        if (*p == '{') {
            const char *close = strchr(p, '}');
            size_t len = strcspn(u, "/");
            if (!close || len == 0 || len >= left || n >= REQ_MAX_PARAMS) return 0;
            memcpy(out, u, len);
            out[len] = '\0';
            r->params[n++] = out;
            out += len + 1;
            left -= len + 1;
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

// Constant-time comparison of a presented key with every configured key; returns the best role
// matched (ROLE_NONE when none). Every key is compared in full, so timing reveals nothing.
static Role authenticate(const ServerConfig *c, const char *presented) {
    Role best = ROLE_NONE;
    size_t pn = strlen(presented);
    for (int i = 0; i < c->n_keys; i++) {
        const char *k = c->keys[i].key;
        size_t kn = strlen(k);
        unsigned diff = (unsigned)(pn ^ kn);
        for (size_t j = 0; j < sizeof c->keys[i].key; j++) {
            unsigned char a = j < pn ? (unsigned char)presented[j] : 0;
            unsigned char b = (unsigned char)k[j];
            diff |= a ^ b;
        }
        if (diff == 0 && c->keys[i].role > (int)best) best = (Role)c->keys[i].role;
    }
    return best;
}

// 1 when the request may proceed; else a 401/403 reply is set.
static int authorize(Req *r, const Route *rt) {
    const ServerConfig *c = &r->app->cfg;
    if (c->n_keys == 0) {
        r->role = ROLE_ADMIN; // open mode (warned about at start)
        return 1;
    }
    const char *h = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Authorization");
    r->role = ROLE_NONE;
    // "Bearer" 1*SP token (RFC 6750 §2.1): any run of spaces separates the scheme from the key
    const char *presented = h && strncasecmp(h, "Bearer ", 7) == 0 ? h + 7 : NULL;
    while (presented && *presented == ' ')
        presented++;
    if (presented && strlen(presented) < 128) r->role = authenticate(c, presented);
    if (rt->role == ROLE_NONE) return 1;
    if (r->role == ROLE_NONE) {
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

static void dispatch(Req *r) {
    const Route *rt = route(r);
    if (!rt) return;
    r->route = rt;
    if (!authorize(r, rt)) return;
    if (r->too_large) {
        reply_problem(r, 413, "payload-too-large", "body: larger than %zu bytes",
                      r->app->cfg.max_body_bytes);
        return;
    }
    if (r->oom) {
        reply_problem(r, 503, "unavailable", "out of memory buffering the request body");
        return;
    }
    const char *why = rt->json_body ? json_content_type(r) : NULL;
    if (why) {
        reply_problem(r, 415, "unsupported-media-type", "%s", why);
        return;
    }
    // the body is parsed once, here: handlers of json_body routes read r->json
    if (rt->json_body && !(r->json = req_json(r))) return;
    rt->handler(r);
    if (!r->status) reply_problem(r, 500, "internal", "the handler gave no reply");
}

/* ---- replies and logs ---- */

static enum MHD_Result send_reply(Req *r) {
    struct MHD_Response *resp;
    if (r->reply && r->reply_len) {
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
    if (r->status == 401) MHD_add_response_header(resp, "WWW-Authenticate", "Bearer");
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
    cJSON_Delete(r->json);
    free(r->body);
    free(r->reply);
    free(r);
    *con_cls = NULL;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload,
                                  size_t *upload_size, void **con_cls) {
    (void)version;
    App *app = cls;
    Req *r = *con_cls;
    if (!r) {
        r = calloc(1, sizeof *r);
        if (!r) return reply_nomem_early(conn);
        r->app = app;
        r->conn = conn;
        r->method = method;
        r->url = url;
        r->t0_ns = now_ns();
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
            if (*end == '\0' && v > app->cfg.max_body_bytes) {
                // decided before reading a byte of the body
                r->too_large = 1;
                reply_problem(r, 413, "payload-too-large", "body: %llu bytes, the limit is %zu", v,
                              app->cfg.max_body_bytes);
                return send_reply(r);
            }
        }
        return MHD_YES;
    }
    if (*upload_size) {
        size_t n = *upload_size;
        *upload_size = 0;
        if (r->too_large || r->oom || r->status) return MHD_YES; // refused early: discard
        if (r->body_len + n > app->cfg.max_body_bytes) {
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
            if (cap > app->cfg.max_body_bytes + 1) cap = app->cfg.max_body_bytes + 1;
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
    jc.checkpoint_every = c->checkpoint_every;
    jc.checkpoint_seconds = c->checkpoint_seconds;
    // a read-only database can queue nothing and finish nothing: no workers (jobs are 503)
    if (c->workers > 0 && !c->db_read_only && (st = jobpool_start(&s->app.jobs, &jc, err)))
        goto fail;
    // the sweeper does not depend on training: it runs with zero workers too
    SweeperConfig sc = {
        .db_path = s->app.cfg.db, .store_opts = &s->app.store_opts, .period_s = c->adapt_sweep_s};
    if (!c->db_read_only && (st = sweeper_start(&s->app.sweeper, &sc, err))) goto fail;
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)c->port);
    if (inet_pton(AF_INET, c->listen, &addr.sin_addr) != 1) {
        st = ms_fail(err, MS_ERR_INVALID, "METASERVE_LISTEN: not an IPv4 address");
        goto fail;
    }
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ITC;
    s->daemon = MHD_start_daemon(
        flags, (uint16_t)c->port, NULL, NULL, on_request, &s->app, MHD_OPTION_SOCK_ADDR,
        (struct sockaddr *)&addr, MHD_OPTION_THREAD_POOL_SIZE, (unsigned)c->http_threads,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)c->conn_timeout_s, MHD_OPTION_CONNECTION_LIMIT,
        (unsigned)c->conn_limit, MHD_OPTION_NOTIFY_COMPLETED, on_completed, &s->app,
        MHD_OPTION_UNESCAPE_CALLBACK, unescape, NULL, MHD_OPTION_END);
    if (!s->daemon) {
        st = ms_fail(err, MS_ERR_IO, "cannot listen on %s:%d (in use, or not permitted)", c->listen,
                     c->port);
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
    if (s) atomic_store(&s->app.draining, 1);
}

void server_stop(Server *s) {
    if (!s) return;
    atomic_store(&s->app.draining, 1);
    if (s->daemon) {
        // stop accepting, give in-flight requests up to 10 s to finish, then close
        MHD_quiesce_daemon(s->daemon);
        for (int i = 0; i < 1000; i++) {
            const union MHD_DaemonInfo *info =
                MHD_get_daemon_info(s->daemon, MHD_DAEMON_INFO_CURRENT_CONNECTIONS);
            if (!info || info->num_connections == 0) break;
            usleep(10000);
        }
        MHD_stop_daemon(s->daemon);
    }
    jobpool_stop(s->app.jobs); // running jobs checkpoint and return to the queue
    sweeper_stop(s->app.sweeper);
    serving_destroy(s->app.serving);
    metrics_destroy(s->app.metrics);
    free(s);
}
