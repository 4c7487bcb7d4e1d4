/*
 * Routing on the path as received, problem documents, and the listen address, against the real
 * server (in-process, loopback, SQLite under the test's temporary root).
 *
 * The route table is matched on the raw, still percent-encoded path: an encoded '/' (%2F, %2f)
 * is part of one segment's value, never a separator; a parameter is decoded once, after the
 * match (%252F is the text "%2F"); a '.' or '..' segment, plain or encoded, names no route. For
 * every route of the table (iterated, so a new route is covered without an edit) the test sends
 * its path with each parameter replaced by values that smuggle another route's tail behind an
 * encoded separator, dot segments and double encoding, and with each separator encoded or a dot
 * segment inserted. Which route answered is read from the server's own request counters
 * (GET /metrics, route label) and compared with a reference router written here (split at raw
 * '/', decode once): that route answers, and a parameter holding an encoded '/' gets the generic
 * 422 naming it before any handler; or no route answers (404, or 405 when the path has other
 * methods). The stored state (a model version, an alias, a job, a dataset, an adaptation) reads
 * back unchanged afterwards. Query arguments are decoded exactly once.
 *
 * A problem document is valid UTF-8 JSON whatever its detail echoes, and its instance is the
 * path as received with the bytes a URI may not hold percent-encoded.
 *
 * Listening: host names (localhost), IPv6 literals (::1, [::1]) and the dual-stack wildcard ::
 * answer requests; a value that is neither an address nor a host name is a configuration error
 * naming the variable (exit status 2 from `metaserve serve`); a stopped server's port can be
 * bound again at once (its listen socket is closed). The IPv6 case is skipped, with a message,
 * only when the machine has no IPv6 loopback (/proc/net/if_inet6).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../../src/http/http.h"
#define TEST_ROOT_NAME "ms_routing"
#include "proc.h"
#include "testsrv.h"

#define ADMIN_KEY  "admin-routing-0123456789abcdef"
#define WAIT_S     15.0 // longest wait for a reply or a counter before a test fails
#define DEADLINE_S 60.0 // longest wait for the training job

static char g_dir[128];
static Server *g_srv;
static HcClient g_c; // admin key
static int g_port;
static char g_job[64], g_dataset[64], g_adaptation[64];

/* ---- server and seed state ---- */

static void server_up(int workers) {
    ServerConfig c;
    testsrv_config_in_new_dir(&c, g_dir, sizeof g_dir, "routing.db");
    c.workers = workers;
    c.http_threads = 4;
    c.n_keys = 1;
    c.keys[0].role = ROLE_ADMIN;
    snprintf(c.keys[0].key, sizeof c.keys[0].key, "%s", ADMIN_KEY);
    g_port = testsrv_start(&g_srv, &g_c, &c);
    g_c.key = ADMIN_KEY;
}

static void server_down(void) {
    testsrv_stop(&g_srv, g_dir);
}

static void ok_call(HcResp *r, const char *method, const char *path, const char *body, long want) {
    long st = hc_call(&g_c, r, method, path, body);
    ck_assert_msg(st == want, "%s %s: %ld (expected %ld) %s", method, path, st, want, r->body);
}

// Model "sine" version 1 with alias "nope", a dataset, an adaptation and the finished job.
static void seed(void) {
    HcResp r;
    ok_call(&r, "POST", "/v1/jobs",
            "{\"name\":\"sine\",\"architecture\":{\"sizes\":[1,8,1],\"activation\":\"relu\","
            "\"head\":\"regression\"},\"algorithm\":\"maml\",\"inner\":{\"lr\":0.01,\"steps\":1},"
            "\"meta_batch\":2,\"iterations\":5,\"seed\":1,"
            "\"tasks\":{\"family\":\"sinusoid\",\"k_support\":5,\"k_query\":5}}",
            202);
    snprintf(g_job, sizeof g_job, "%s", hc_str(&r, "id"));
    hc_free(&r);
    char path[128];
    snprintf(path, sizeof path, "/v1/jobs/%s", g_job);
    for (double t0 = now_s();; sleep_ms(20)) {
        ok_call(&r, "GET", path, NULL, 200);
        int done = strcmp(hc_str(&r, "state"), "succeeded") == 0;
        hc_free(&r);
        if (done) break;
        ck_assert_msg(now_s() - t0 < DEADLINE_S, "the training job did not finish");
    }
    ok_call(&r, "PUT", "/v1/models/sine/aliases/nope", "{\"version\":1}", 200);
    hc_free(&r);
    ok_call(&r, "POST", "/v1/datasets",
            "{\"name\":\"pool\",\"kind\":\"tasks\",\"tasks\":[{\"x\":[[1],[2]],\"y\":[[3],[4]]}]}",
            201);
    snprintf(g_dataset, sizeof g_dataset, "%s", hc_str(&r, "id"));
    hc_free(&r);
    ok_call(&r, "POST", "/v1/models/sine/adapt",
            "{\"support\":{\"x\":[[0],[1]],\"y\":[[0],[1]]},\"steps\":1}", 201);
    snprintf(g_adaptation, sizeof g_adaptation, "%s", hc_str(&r, "id"));
    hc_free(&r);
}

// The seeded state as one string: what no refused request may change.
static void state(char *out, size_t n) {
    const char *paths[] = {"/v1/models/sine", "/v1/models/sine/versions/1", NULL, NULL, NULL};
    char p2[128], p3[128], p4[128];
    snprintf(p2, sizeof p2, "/v1/jobs/%s", g_job);
    snprintf(p3, sizeof p3, "/v1/datasets/%s", g_dataset);
    snprintf(p4, sizeof p4, "/v1/adaptations/%s", g_adaptation);
    paths[2] = p2, paths[3] = p3, paths[4] = p4;
    size_t k = 0;
    out[0] = '\0';
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        HcResp r;
        ok_call(&r, "GET", paths[i], NULL, 200);
        k += (size_t)snprintf(out + k, n - k, "%s\n", r.body);
        ck_assert_uint_lt(k, n);
        hc_free(&r);
    }
}

/* ---- raw requests: the path goes out byte for byte (no client-side normalisation) ---- */

static void raw_request(HcResp *out, const char *method, const char *path, const char *body) {
    int fd = hc_connect_loopback(g_port);
    ck_assert_msg(fd >= 0, "connect: %s", strerror(errno));
    HcBuf q;
    hc_buf_init(&q);
    hc_buf_printf(&q, "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n", method, path);
    hc_buf_puts(&q, "Authorization: Bearer " ADMIN_KEY "\r\n");
    if (body)
        hc_buf_printf(&q, "Content-Type: application/json\r\nContent-Length: %zu\r\n",
                      strlen(body));
    hc_buf_puts(&q, "\r\n");
    if (body) hc_buf_puts(&q, body);
    ck_assert_ptr_nonnull(q.s);
    for (size_t off = 0; off < q.len;) {
        ssize_t w = send(fd, q.s + off, q.len - off, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) break; // the server may answer and close before reading everything
        off += (size_t)w;
    }
    hc_buf_free(&q);
    HcBuf in;
    hc_buf_init(&in);
    char buf[16384];
    for (double end = now_s() + WAIT_S;;) {
        int ms = (int)((end - now_s()) * 1e3);
        ck_assert_msg(ms > 0, "%s %s: no complete reply within %.0f s", method, path, WAIT_S);
        struct pollfd p = {fd, POLLIN, 0};
        int k = poll(&p, 1, ms);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) continue;
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        hc_buf_add(&in, buf, (size_t)n);
    }
    close(fd);
    memset(out, 0, sizeof *out);
    out->status = -1;
    const char *s = in.s ? in.s : "";
    if (strncmp(s, "HTTP/1.", 7) == 0 && strlen(s) > 12) out->status = strtol(s + 9, NULL, 10);
    const char *eoh = strstr(s, "\r\n\r\n");
    size_t hn = eoh ? (size_t)(eoh - s) + 4 : strlen(s);
    out->headers = strndup(s, hn);
    out->body_len = in.len > hn ? in.len - hn : 0;
    out->body = strndup(s + hn, out->body_len);
    out->json = cJSON_ParseWithLength(out->body, out->body_len);
    hc_buf_free(&in);
}

/* ---- which route answered: the request counters of GET /metrics ---- */

#define MAX_SERIES 512

typedef struct {
    char key[192]; // route="...",method="...",status="..."
    long long n;
} Series;

typedef struct {
    Series s[MAX_SERIES];
    int n;
} Counts;

static void scrape(Counts *c) {
    HcClient open = g_c;
    open.key = NULL;
    HcResp r;
    ck_assert_int_eq(hc_call(&open, &r, "GET", "/metrics", NULL), 200);
    c->n = 0;
    const char *tag = "metaserve_http_requests_total{";
    for (const char *p = strstr(r.body, tag); p; p = strstr(p + 1, tag)) {
        // the label set ends at the first '"}' (route labels hold braces: "/v1/jobs/{id}")
        const char *k = p + strlen(tag), *close = strstr(k, "\"}");
        ck_assert_ptr_nonnull(close);
        close++;
        ck_assert_int_lt(c->n, MAX_SERIES);
        Series *s = &c->s[c->n++];
        snprintf(s->key, sizeof s->key, "%.*s", (int)(close - k), k);
        s->n = atoll(close + 1);
    }
    hc_free(&r);
}

// The one series (other than the scrapes of /metrics) that grew from *before to a new scrape;
// waits for it, because the server counts a request once its reply is sent. *before becomes the
// new scrape. The series' key goes to key.
static void answered_by(Counts *before, char *key, size_t n, const char *what) {
    static Counts after;
    for (double end = now_s() + WAIT_S;; sleep_ms(2)) {
        scrape(&after);
        int grown = 0;
        for (int i = 0; i < after.n; i++) {
            if (strstr(after.s[i].key, "route=\"/metrics\"")) continue;
            long long was = 0;
            for (int j = 0; j < before->n; j++)
                if (strcmp(before->s[j].key, after.s[i].key) == 0) was = before->s[j].n;
            if (after.s[i].n == was) continue;
            ck_assert_msg(after.s[i].n == was + 1 && grown == 0,
                          "%s: more than one request counted", what);
            snprintf(key, n, "%s", after.s[i].key);
            grown++;
        }
        if (grown) break;
        ck_assert_msg(now_s() < end, "%s: the request was never counted", what);
    }
    *before = after;
}

/* ---- paths ---- */

// The value of the parameter named name[0..len) of a route whose pattern starts with pattern.
static const char *param_value(const char *pattern, const char *name, size_t len) {
    if (len == 2 && strncmp(name, "id", 2) == 0) {
        if (strncmp(pattern, "/v1/jobs/", 9) == 0) return g_job;
        if (strncmp(pattern, "/v1/datasets/", 13) == 0) return g_dataset;
        ck_assert_msg(strncmp(pattern, "/v1/adaptations/", 16) == 0, "no id for %s", pattern);
        return g_adaptation;
    }
    if (len == 7 && strncmp(name, "version", 7) == 0) return "1";
    if (len == 5 && strncmp(name, "alias", 5) == 0) return "nope";
    if (len == 5 && strncmp(name, "asset", 5) == 0) return "app.js"; // a file of the dashboard
    ck_assert_msg((len == 4 && strncmp(name, "name", 4) == 0) ||
                      (len == 3 && strncmp(name, "ref", 3) == 0),
                  "unknown parameter in %s", pattern);
    return "sine";
}

// The route's path with its parameters filled; parameter `which` (0-based; -1: none) gets
// value, where "V" stands for the parameter's ordinary value. The parameter's name goes to
// pname (when which names one).
static void build_path(char *out, size_t n, const Route *rt, int which, const char *value,
                       char *pname, size_t pn) {
    size_t k = 0;
    int i = 0;
    for (const char *p = rt->pattern; *p;) {
        if (*p != '{') {
            ck_assert_uint_lt(k + 1, n);
            out[k++] = *p++;
            continue;
        }
        const char *close = strchr(p, '}');
        size_t len = (size_t)(close - p - 1);
        const char *v = param_value(rt->pattern, p + 1, len);
        if (i == which) {
            snprintf(pname, pn, "%.*s", (int)len, p + 1);
            for (const char *s = value; *s; s++) {
                const char *piece = *s == 'V' ? v : NULL;
                size_t m = piece ? strlen(piece) : 1;
                ck_assert_uint_lt(k + m, n);
                memcpy(out + k, piece ? piece : s, m);
                k += m;
            }
        } else {
            ck_assert_uint_lt(k + strlen(v), n);
            memcpy(out + k, v, strlen(v));
            k += strlen(v);
        }
        i++;
        p = close + 1;
    }
    out[k] = '\0';
}

// 1 when s, percent-decoded once, holds a '/'.
static int decodes_to_slash(const char *s) {
    return strstr(s, "%2F") || strstr(s, "%2f");
}

// 1 when s[0..n), percent-decoded once, is "." or "..".
static int decodes_to_dots(const char *s, size_t n) {
    char d[4];
    size_t k = 0;
    for (size_t i = 0; i < n; k++) {
        if (k == 2) return 0;
        if (i + 3 <= n && strncasecmp(s + i, "%2e", 3) == 0)
            d[k] = '.', i += 3;
        else
            d[k] = s[i++];
    }
    d[k] = '\0';
    return strcmp(d, ".") == 0 || strcmp(d, "..") == 0;
}

// The reference router: the route for method whose pattern matches path split at its raw '/'
// only, a {parameter} being one non-empty segment that is not "." or ".." once decoded; NULL
// when there is none (*known: some route of another method matches the path). The first
// parameter whose segment decodes to hold a '/' is named in slash (else "").
static const Route *reference_route(const char *method, const char *path, int *known, char *slash,
                                    size_t sn) {
    *known = 0;
    for (const Route *rt = ROUTES; rt->method; rt++) {
        const char *p = rt->pattern, *u = path;
        char first[32] = "";
        while (*p && *u) {
            if (*p != '{') {
                if (*p != *u) break;
                p++, u++;
                continue;
            }
            const char *close = strchr(p, '}');
            size_t len = strcspn(u, "/");
            char seg[512];
            snprintf(seg, sizeof seg, "%.*s", (int)len, u);
            if (len == 0 || decodes_to_dots(u, len)) break;
            if (!first[0] && decodes_to_slash(seg))
                snprintf(first, sizeof first, "%.*s", (int)(close - p - 1), p + 1);
            p = close + 1, u += len;
        }
        if (*p || *u) continue;
        if (strcmp(rt->method, method) != 0) {
            *known = 1;
            continue;
        }
        snprintf(slash, sn, "%s", first);
        return rt;
    }
    return NULL;
}

/* ---- one hostile request ---- */

typedef struct {
    int sent, failures;
    HcBuf report;
    Counts counts;
} Run;

// Sends method + path (with a JSON body when the route takes one) and checks who answered
// against the reference router: that route (a parameter holding an encoded '/' refused by the
// generic check, 422 naming it, before any handler), or no route (404, or 405 when the path has
// other methods). pname/value: the parameter of rt that was replaced and its value (NULL when
// a separator was encoded or a dot segment inserted instead).
static void probe(Run *run, const Route *rt, const char *path, const char *pname,
                  const char *value) {
    HcResp r;
    raw_request(&r, rt->method, path, rt->json_body ? "{}" : NULL);
    char key[192], want[256], slash[32], why[1024] = "";
    answered_by(&run->counts, key, sizeof key, path);
    run->sent++;
    int known;
    const Route *ref = reference_route(rt->method, path, &known, slash, sizeof slash);
    if (ref) snprintf(want, sizeof want, "route=\"%s\",method=\"%s\",", ref->name, ref->method);
    const char *detail = hc_str(&r, "detail");
    if (r.status < 400 || r.status > 499) {
        snprintf(why, sizeof why, "status %ld: %.300s", r.status, r.body);
    } else if (!ref) {
        long st = known ? 405 : 404;
        if (strncmp(key, "route=\"unmatched\"", 17) != 0 || r.status != st)
            snprintf(why, sizeof why, "expected %ld from no route: %s, %ld %.300s", st, key,
                     r.status, r.body);
    } else if (strncmp(key, want, strlen(want)) != 0) {
        snprintf(why, sizeof why, "expected %s %s to answer: %s, %ld %.300s", ref->method,
                 ref->name, key, r.status, r.body);
    } else if (slash[0]) {
        char field[64];
        snprintf(field, sizeof field, "%s: must not contain '/'", slash);
        if (r.status != 422 || !detail || strncmp(detail, field, strlen(field)) != 0)
            snprintf(why, sizeof why, "expected 422 '%s...': %ld %.300s", field, r.status, r.body);
    }
    // what the parameter probes must give in particular
    if (!why[0] && pname && decodes_to_dots(value, strlen(value)) &&
        !(r.status == 404 && detail && strstr(detail, "no such route")))
        snprintf(why, sizeof why, "a dot segment must name no route: %ld %.300s", r.status, r.body);
    if (!why[0] && pname && decodes_to_slash(value) && strcmp(slash, pname) != 0)
        snprintf(why, sizeof why, "expected 422 naming %s: %ld %.300s", pname, r.status, r.body);
    // the first failures are listed (Check's message has a size limit), all are counted
    if (why[0] && run->failures++ < 12)
        hc_buf_printf(&run->report, "\n  %s %s: %.200s", rt->method, path, why);
    hc_free(&r);
}

// Values that replace one parameter ("V": its ordinary value): another route's tail behind an
// encoded separator, dot segments, double encoding.
static const char *const MANGLED[] = {
    "V%2Fversions%2F1",
    "V%2fversions%2f1",
    "V%2Fpredict",
    "V%2fadapt",
    "V%2Fweights",
    "V%2Faliases%2Fnope",
    "V%2Fcancel",
    "V%2Fmetrics",
    "..%2FV",
    "V%2F..%2F..%2Fjobs",
    "%2E%2E%2Fv1%2Fjobs",
    "V%252Fpredict",
    "V%252Fversions%252F1",
    "V%252fmetrics",
    ".",
    "..",
    "%2E",
    "%2e%2E",
    "%2E.",
};
#define N_MANGLED (sizeof MANGLED / sizeof MANGLED[0])

// Each separator of path (but the first) encoded, or a dot segment inserted at it.
static void probe_separators(Run *run, const Route *rt, const char *path) {
    static const char *const enc[] = {"%2F", "%2f", "%252F"};
    static const char *const dots[] = {"/.", "/..", "/%2e", "/%2E%2E"};
    char p[512];
    for (const char *s = strchr(path + 1, '/'); s; s = strchr(s + 1, '/')) {
        int at = (int)(s - path);
        for (size_t e = 0; e < sizeof enc / sizeof enc[0]; e++) {
            snprintf(p, sizeof p, "%.*s%s%s", at, path, enc[e], s + 1);
            probe(run, rt, p, NULL, NULL);
        }
        for (size_t d = 0; d < sizeof dots / sizeof dots[0]; d++) {
            snprintf(p, sizeof p, "%.*s%s%s", at, path, dots[d], s);
            probe(run, rt, p, NULL, NULL);
        }
    }
    for (size_t d = 0; d < sizeof dots / sizeof dots[0]; d++) {
        snprintf(p, sizeof p, "%s%s", path, dots[d]);
        probe(run, rt, p, NULL, NULL);
    }
}

// Every route of the table with method `only` (NULL: every method but DELETE).
static void probe_routes(Run *run, const char *only) {
    for (const Route *rt = ROUTES; rt->method; rt++) {
        int is_delete = strcmp(rt->method, "DELETE") == 0;
        if (only ? strcmp(rt->method, only) != 0 : is_delete) continue;
        char path[512], pname[32];
        build_path(path, sizeof path, rt, -1, "", pname, sizeof pname);
        probe_separators(run, rt, path);
        int n_params = 0;
        for (const char *p = strchr(rt->pattern, '{'); p; p = strchr(p + 1, '{'))
            n_params++;
        for (int i = 0; i < n_params; i++)
            for (size_t m = 0; m < N_MANGLED; m++) {
                build_path(path, sizeof path, rt, i, MANGLED[m], pname, sizeof pname);
                probe(run, rt, path, pname, MANGLED[m]);
            }
    }
}

START_TEST(no_encoded_separator_dot_segment_or_double_encoding_reaches_another_route) {
    server_up(1);
    seed();
    char before[16384], after[16384];
    state(before, sizeof before);
    Run run = {0};
    hc_buf_init(&run.report);
    scrape(&run.counts);
    // reads and writes first, deletes last: a delete that got through would hide other failures
    probe_routes(&run, NULL);
    probe_routes(&run, "DELETE");
    ck_assert_msg(run.failures == 0, "%d of %d requests answered wrongly:%s", run.failures,
                  run.sent, run.report.s);
    ck_assert_int_ge(run.sent, 500);
    hc_buf_free(&run.report);
    state(after, sizeof after);
    ck_assert_msg(strcmp(before, after) == 0, "the stored state changed:\n%s\n%s", before, after);
    printf("routing: %d hostile paths over %zu routes, none reached another route's handler\n",
           run.sent, routes_count());
    server_down();
}
END_TEST

// One request of the issue's kind: status, problem type, a detail prefix and the instance.
static void expect(const char *method, const char *path, const char *body, long status,
                   const char *slug, const char *detail_prefix) {
    HcResp r;
    raw_request(&r, method, path, body);
    const char *why = hc_problem_mismatch(&r, status, slug);
    ck_assert_msg(!why, "%s %s: %s", method, path, why);
    const char *d = hc_str(&r, "detail");
    ck_assert_msg(strncmp(d, detail_prefix, strlen(detail_prefix)) == 0,
                  "%s %s: detail '%s' does not start with '%s'", method, path, d, detail_prefix);
    // the instance is the path as it was sent
    ck_assert_str_eq(hc_str(&r, "instance"), path);
    hc_free(&r);
}

START_TEST(the_reported_paths_are_invalid_names_and_change_nothing) {
    server_up(1);
    seed();
    char before[16384], after[16384];
    state(before, sizeof before);
    char p[256];
    expect("GET", "/v1/models/sine%2Fversions%2F1", NULL, 422, "validation", "name: ");
    expect("GET", "/v1/models/sine%2fversions%2f1", NULL, 422, "validation", "name: ");
    expect("POST", "/v1/models/sine%2Fpredict", "{\"x\":[[0.5]]}", 405, "method-not-allowed",
           "method POST");
    expect("POST", "/v1/models/sine%2Fadapt", "{\"support\":{\"x\":[[0]],\"y\":[[0]]}}", 405,
           "method-not-allowed", "method POST");
    expect("DELETE", "/v1/models/sine%2Faliases%2Fnope", NULL, 422, "validation", "name: ");
    expect("DELETE", "/v1/models/sine%2Fversions%2F1", NULL, 422, "validation", "name: ");
    expect("PUT", "/v1/models/sine/aliases/x%2F..%2Fnope", "{\"version\":1}", 422, "validation",
           "alias: ");
    // decoded once: "sine%2Fversions%2F1" is not a name (and not a version lookup)
    expect("GET", "/v1/models/sine%252Fversions%252F1", NULL, 422, "validation", "name");
    snprintf(p, sizeof p, "/v1/jobs/%s%%2Fmetrics", g_job);
    expect("GET", p, NULL, 422, "validation", "id: ");
    snprintf(p, sizeof p, "/v1/jobs/%s%%2Fcancel", g_job);
    expect("POST", p, NULL, 405, "method-not-allowed", "method POST");
    snprintf(p, sizeof p, "/v1/datasets/%s%%2F..", g_dataset);
    expect("DELETE", p, NULL, 422, "validation", "id: ");
    expect("GET", "/v1/models/%2E%2E", NULL, 404, "not-found", "no such route");
    expect("GET", "/v1/models/sine/versions/%2e", NULL, 404, "not-found", "no such route");
    expect("GET", "/v1/models/sine/..", NULL, 404, "not-found", "no such route");
    expect("DELETE", "/v1/models/./sine", NULL, 404, "not-found", "no such route");
    state(after, sizeof after);
    ck_assert_msg(strcmp(before, after) == 0, "the stored state changed:\n%s\n%s", before, after);
    // and the alias the DELETE above named is still there
    HcResp r;
    ok_call(&r, "GET", "/v1/models/sine", NULL, 200);
    ck_assert_msg(strstr(r.body, "\"nope\"") != NULL, "alias nope is gone: %s", r.body);
    hc_free(&r);
    server_down();
}
END_TEST

// One rule for path parameters: a value that could name nothing (an id that is not 32 lowercase
// hex characters, a name or reference of characters no name holds, a reference where a name is
// expected) is 422 naming the parameter, on every route that has it; a well-formed value that
// names nothing is 404. Query parameters: each route takes only those it declares (Route.query),
// and a declared one needs a value; anything else is 400 naming the parameter.
START_TEST(malformed_path_parameters_are_422_and_unknown_query_parameters_400) {
    server_up(1);
    seed();
    char p[512], pname[32], q[600];
    for (const Route *rt = ROUTES; rt->method; rt++) {
        int n_params = 0;
        for (const char *c = strchr(rt->pattern, '{'); c; c = strchr(c + 1, '{'))
            n_params++;
        for (int i = 0; i < n_params; i++) {
            build_path(p, sizeof p, rt, i, "V", pname, sizeof pname);
            static const struct {
                const char *param, *value, *detail;
            } BAD[] = {
                {"id", "d7e8%E2%80%A6", "id: must be the 32 hexadecimal characters"},
                {"id", "0123456789ABCDEF0123456789ABCDEF", "id: must be the 32 hexadecimal"},
                {"id", "0123456789abcdef", "id: must be the 32 hexadecimal"},
                {"name", "V@1", "name: this route takes a model name, not a reference"},
                {"name", "bad%20name!", "name: must be 1..127 characters"},
                {"alias", "bad%20alias!", "alias: must be 1..127 characters"},
                {"ref", "bad%20name!", "ref: must be name, name@version or name@alias"},
                {"ref", "V@", "ref: must be name, name@version or name@alias"},
            };
            for (size_t b = 0; b < sizeof BAD / sizeof BAD[0]; b++) {
                if (strcmp(BAD[b].param, pname) != 0) continue;
                build_path(p, sizeof p, rt, i, BAD[b].value, pname, sizeof pname);
                expect(rt->method, p, NULL, 422, "validation", BAD[b].detail);
            }
            if (strcmp(rt->method, "GET") != 0 && strcmp(rt->method, "DELETE") != 0) continue;
            // well-formed, naming nothing
            const char *none = strcmp(pname, "id") == 0        ? "0123456789abcdef0123456789abcdef"
                               : strcmp(pname, "version") == 0 ? "999"
                                                               : "no-such-thing";
            build_path(p, sizeof p, rt, i, none, pname, sizeof pname);
            HcResp r;
            raw_request(&r, rt->method, p, NULL);
            const char *why = hc_problem_mismatch(&r, 404, "not-found");
            ck_assert_msg(!why, "%s %s: %s", rt->method, p, why);
            hc_free(&r);
        }
        build_path(p, sizeof p, rt, -1, "", pname, sizeof pname);
        HcResp r;
        snprintf(q, sizeof q, "%s?page_size=1&colour=blue", p);
        raw_request(&r, rt->method, q, NULL);
        ck_assert_msg(!hc_problem_mismatch(&r, 400, "bad-request"), "%s %s: %ld %s", rt->method, q,
                      r.status, r.body);
        // the first parameter the route does not take is named
        ck_detail_has(&r, rt->query && strstr(rt->query, "page_size")
                              ? "colour: not a query parameter of this route"
                              : "page_size: not a query parameter of this route");
        ck_assert_str_eq(hc_str(&r, "instance"), p);
        hc_free(&r);
        for (const char *k = rt->query; k && *k;) {
            size_t n = strcspn(k, ",");
            snprintf(q, sizeof q, "%s?%.*s=", p, (int)n, k);
            raw_request(&r, rt->method, q, NULL);
            ck_assert_msg(!hc_problem_mismatch(&r, 400, "bad-request"), "%s %s: %ld %s", rt->method,
                          q, r.status, r.body);
            char want[64];
            snprintf(want, sizeof want, "%.*s: empty", (int)n, k);
            ck_detail_has(&r, want);
            hc_free(&r);
            k += n + (k[n] == ',');
        }
    }
    // the declared parameters still work
    HcResp r;
    ok_call(&r, "GET", "/v1/models?page_size=1", NULL, 200);
    hc_free(&r);
    snprintf(p, sizeof p, "/v1/jobs/%s/metrics?after_step=0&page_size=2", g_job);
    ok_call(&r, "GET", p, NULL, 200);
    hc_free(&r);
    server_down();
}
END_TEST

START_TEST(query_arguments_are_decoded_once) {
    server_up(0);
    HcResp r;
    char first[64], second[64], p[256];
    for (int i = 0; i < 2; i++) {
        char body[160];
        snprintf(
            body, sizeof body,
            "{\"name\":\"d%d\",\"kind\":\"tasks\",\"tasks\":[{\"x\":[[1],[2]],\"y\":[[3],[4]]}]}",
            i);
        ok_call(&r, "POST", "/v1/datasets", body, 201);
        hc_free(&r);
    }
    // page_size=%31 is page_size=1
    ok_call(&r, "GET", "/v1/datasets?page_size=%31", NULL, 200);
    ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItem(r.json, "datasets")), 1);
    snprintf(first, sizeof first, "%s", hc_str(&r, "next_page_token"));
    hc_free(&r);
    // a token sent with every character percent-encoded is the same token
    int k = snprintf(p, sizeof p, "/v1/datasets?page_size=1&page_token=");
    for (const char *s = first; *s; s++)
        k += snprintf(p + k, sizeof p - (size_t)k, "%%%02X", (unsigned char)*s);
    ok_call(&r, "GET", p, NULL, 200);
    const cJSON *list = cJSON_GetObjectItem(r.json, "datasets");
    ck_assert_int_eq(cJSON_GetArraySize(list), 1);
    snprintf(second, sizeof second, "%s",
             cJSON_GetObjectItem(cJSON_GetArrayItem(list, 0), "id")->valuestring);
    ck_assert_str_ne(first, second);
    hc_free(&r);
    // decoded once: %2531 is the text "%31", not a number; an encoded NUL cuts nothing short
    ok_call(&r, "GET", "/v1/datasets?page_size=%2531", NULL, 422);
    ck_problem(&r, 422, "validation");
    ck_detail_has(&r, "page_size");
    hc_free(&r);
    ok_call(&r, "GET", "/v1/datasets?page_size=1%00", NULL, 422);
    ck_detail_has(&r, "page_size");
    hc_free(&r);
    server_down();
}
END_TEST

/* ---- problem documents ---- */

// 1 when s[0..n) is UTF-8 (RFC 3629: no overlong forms, surrogates or code points past
// U+10FFFF, nothing cut short).
static int utf8_ok(const unsigned char *s, size_t n) {
    for (size_t i = 0; i < n;) {
        size_t len = s[i] < 0x80                    ? 1
                     : s[i] >= 0xC2 && s[i] <= 0xDF ? 2
                     : s[i] >= 0xE0 && s[i] <= 0xEF ? 3
                     : s[i] >= 0xF0 && s[i] <= 0xF4 ? 4
                                                    : 0;
        if (len == 0 || len > n - i) return 0;
        for (size_t k = 1; k < len; k++)
            if ((s[i + k] & 0xC0) != 0x80) return 0;
        if ((s[i] == 0xE0 && s[i + 1] < 0xA0) || (s[i] == 0xED && s[i + 1] > 0x9F) ||
            (s[i] == 0xF0 && s[i + 1] < 0x90) || (s[i] == 0xF4 && s[i + 1] > 0x8F))
            return 0;
        i += len;
    }
    return 1;
}

#define FFFD "\xef\xbf\xbd" // U+FFFD REPLACEMENT CHARACTER in UTF-8

START_TEST(a_problem_document_is_utf8_json_whatever_its_detail_and_path_hold) {
    // reply_problem on its own: a request context with a path as a client may send it
    static Req r;
    memset(&r, 0, sizeof r);
    r.url = "/v1/models/\xff a\"b\\%zz%41%C3%A9\x01";
    snprintf(r.id, sizeof r.id, "rid-1");
    reply_problem(&r, 422, "validation", "name: '%s' or '%s'", "\xff\xfe",
                  "\xc3\xa9t\xc3\xa9\xe2\x82");
    ck_assert_msg(utf8_ok((const unsigned char *)r.problem, r.reply_len), "not UTF-8: %s",
                  r.problem);
    cJSON *doc = cJSON_ParseWithLength(r.problem, r.reply_len);
    ck_assert_msg(doc != NULL, "not JSON: %s", r.problem);
    // each byte that starts no UTF-8 sequence is U+FFFD; valid characters are kept
    ck_assert_str_eq(cJSON_GetObjectItem(doc, "detail")->valuestring,
                     "name: '" FFFD FFFD "' or '\xc3\xa9t\xc3\xa9" FFFD FFFD "'");
    // the path as received, every byte a URI may not hold percent-encoded, escapes kept
    ck_assert_str_eq(cJSON_GetObjectItem(doc, "instance")->valuestring,
                     "/v1/models/%FF%20a%22b%5C%25zz%41%C3%A9%01");
    ck_assert_str_eq(cJSON_GetObjectItem(doc, "request_id")->valuestring, "rid-1");
    cJSON_Delete(doc);

    // a detail cut to its buffer in the middle of a character: the partial one is U+FFFD
    char long_text[1500] = "", want[1500] = "";
    for (int i = 0; i < 700; i++)
        strcat(long_text, "\xc3\xa9");
    for (int i = 0; i < 255; i++) // 511 bytes of the detail buffer: 255 characters and a half
        strcat(want, "\xc3\xa9");
    strcat(want, FFFD);
    reply_problem(&r, 422, "validation", "%s", long_text);
    ck_assert(utf8_ok((const unsigned char *)r.problem, r.reply_len));
    doc = cJSON_ParseWithLength(r.problem, r.reply_len);
    ck_assert_ptr_nonnull(doc);
    ck_assert_str_eq(cJSON_GetObjectItem(doc, "detail")->valuestring, want);
    cJSON_Delete(doc);
}
END_TEST

/* ---- listening ---- */

// 1 when the machine has an IPv6 loopback address (::1 on some interface).
static int have_ipv6_loopback(void) {
    FILE *f = fopen("/proc/net/if_inet6", "r");
    if (!f) return 0;
    char line[256];
    int found = 0;
    while (!found && fgets(line, sizeof line, f))
        found = strncmp(line, "00000000000000000000000000000001 ", 33) == 0;
    fclose(f);
    return found;
}

// Starts a server listening on `listen` (port 0) and asks GET /livez at each base URL format
// (a printf format taking the port), expecting 200 from each.
static void serve_and_ask(const char *listen, const char *const *bases, int n_bases) {
    ServerConfig c;
    testsrv_config_in_new_dir(&c, g_dir, sizeof g_dir, "listen.db");
    c.workers = 0;
    c.http_threads = 2;
    snprintf(c.listen, sizeof c.listen, "%s", listen);
    MsError err = {0};
    ck_assert_msg(server_start(&g_srv, &c, &err) == MS_OK, "listen %s: %s", listen, err.msg);
    int port = server_port(g_srv);
    ck_assert_int_gt(port, 0);
    for (int i = 0; i < n_bases; i++) {
        HcClient cl = {.key = NULL};
        snprintf(cl.base, sizeof cl.base, bases[i], port);
        HcResp r;
        long st = hc_call(&cl, &r, "GET", "/livez", NULL);
        ck_assert_msg(st == 200, "listen %s: GET %s/livez: %ld %s", listen, cl.base, st, r.err);
        hc_free(&r);
    }
    server_down();
}

START_TEST(serves_on_a_host_name) {
    const char *any[] = {"http://localhost:%d"};
    serve_and_ask("localhost", any, 1);
}
END_TEST

START_TEST(serves_on_ipv6_literals_and_the_dual_stack_wildcard) {
    if (!have_ipv6_loopback()) {
        printf("SKIPPED serves_on_ipv6_literals_and_the_dual_stack_wildcard: this machine has no "
               "IPv6 loopback (no ::1 in /proc/net/if_inet6)\n");
        return;
    }
    const char *v6[] = {"http://[::1]:%d"};
    serve_and_ask("::1", v6, 1);
    serve_and_ask("[::1]", v6, 1);
    // "::" with IPV6_V6ONLY off: IPv4 clients reach it too
    const char *both[] = {"http://[::1]:%d", "http://127.0.0.1:%d"};
    serve_and_ask("::", both, 2);
}
END_TEST

START_TEST(a_stopped_server_frees_its_port) {
    ServerConfig c;
    testsrv_config_in_new_dir(&c, g_dir, sizeof g_dir, "port.db");
    c.workers = 0;
    c.http_threads = 2;
    MsError err = {0};
    ck_assert_msg(server_start(&g_srv, &c, &err) == MS_OK, "%s", err.msg);
    int port = server_port(g_srv);
    testsrv_stop(&g_srv, NULL);
    // the same port again, at once: the first server's listen socket must be closed by now
    c.port = port;
    ck_assert_msg(server_start(&g_srv, &c, &err) == MS_OK, "port %d again: %s", port, err.msg);
    ck_assert_int_eq(server_port(g_srv), port);
    HcClient cl = {.key = NULL};
    snprintf(cl.base, sizeof cl.base, "http://127.0.0.1:%d", port);
    HcResp r;
    ck_assert_int_eq(hc_call(&cl, &r, "GET", "/livez", NULL), 200);
    hc_free(&r);
    server_down();
}
END_TEST

START_TEST(a_listen_value_that_is_no_address_is_a_configuration_error) {
    static const char *const bad[] = {"not a host!", "::1::2", "[::1", "1.2.3.4:80", "a\"b"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ServerConfig c;
        server_config_defaults(&c);
        char arg[64];
        snprintf(arg, sizeof arg, "--listen=%s", bad[i]);
        char *argv[] = {arg};
        MsError err = {0};
        ck_assert_msg(server_config_load(&c, 1, argv, &err) == MS_ERR_INVALID,
                      "--listen=%s was accepted", bad[i]);
        ck_assert_msg(strstr(err.msg, "--listen") != NULL, "'%s' does not name --listen", err.msg);
    }
    // good values load (a name is resolved when the configuration is read)
    static const char *const good[] = {"0.0.0.0", "127.0.0.1", "::", "::1", "[::1]", "localhost"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        ServerConfig c;
        server_config_defaults(&c);
        char arg[64];
        snprintf(arg, sizeof arg, "--listen=%s", good[i]);
        char *argv[] = {arg};
        MsError err = {0};
        ck_assert_msg(server_config_load(&c, 1, argv, &err) == MS_OK, "--listen=%s: %s", good[i],
                      err.msg);
    }

    // the binary: a configuration error is exit status 2, naming the variable
    const char *bin = getenv("METASERVE_BIN");
    ck_assert_msg(bin && access(bin, X_OK) == 0, "METASERVE_BIN is not an executable: %s",
                  bin ? bin : "(unset)");
    char dir[128], db[256];
    test_root_subdir(dir, sizeof dir, "bin");
    snprintf(db, sizeof db, "METASERVE_DB=%s/bin.db", dir);
    const char *vars[] = {"METASERVE_LISTEN=not a host!", "METASERVE_PORT=0", db,
                          "METASERVE_WORKERS=0"};
    Proc p;
    const char *why = proc_spawn(&p, bin, vars, 4);
    ck_assert_msg(!why, "spawn: %s", why);
    int status = 0;
    ck_assert_msg(proc_wait_exit(&p, WAIT_S, &status), "metaserve serve did not exit");
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 2,
                  "exit status %d (expected 2); stderr: %s",
                  WIFEXITED(status) ? WEXITSTATUS(status) : -1, p.tail);
    ck_assert_msg(strstr(p.first_err, "METASERVE_LISTEN") != NULL,
                  "the error does not name METASERVE_LISTEN: %s", p.first_err);
}
END_TEST

int main(void) {
    curl_global_init(CURL_GLOBAL_ALL);
    Suite *s = suite_create("routing");
    TCase *tc = tcase_create("routing");
    tcase_set_timeout(tc, 120);
    tcase_add_unchecked_fixture(tc, test_root_make, test_root_remove);
    tcase_add_test(tc, no_encoded_separator_dot_segment_or_double_encoding_reaches_another_route);
    tcase_add_test(tc, the_reported_paths_are_invalid_names_and_change_nothing);
    tcase_add_test(tc, query_arguments_are_decoded_once);
    tcase_add_test(tc, malformed_path_parameters_are_422_and_unknown_query_parameters_400);
    tcase_add_test(tc, a_problem_document_is_utf8_json_whatever_its_detail_and_path_hold);
    tcase_add_test(tc, serves_on_a_host_name);
    tcase_add_test(tc, serves_on_ipv6_literals_and_the_dual_stack_wildcard);
    tcase_add_test(tc, a_stopped_server_frees_its_port);
    tcase_add_test(tc, a_listen_value_that_is_no_address_is_a_configuration_error);
    suite_add_tcase(s, tc);
    int failed = test_suite_run(s);
    curl_global_cleanup();
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
