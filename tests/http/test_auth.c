/*
 * The authentication matrix against the real server (in-process, ephemeral loopback port): for
 * every route of the table in src/http/routes.c (iterated, so a route added there is covered
 * here without an edit) and each credential (none, a wrong key, the client key, the admin key),
 * the outcome follows the route's least role:
 *   open routes    never 401 or 403, whatever is presented;
 *   client routes  401 without a key or with a wrong one; neither 401 nor 403 for client or admin;
 *   admin routes   401 without a key or with a wrong one; 403 for the client key; neither 401
 *                  nor 403 for admin.
 * Only the authentication outcome is asserted: an authorised request may still end in 404 or 422
 * (bodies are `{}`, path parameters are plausible but name nothing). A 401 carries
 * WWW-Authenticate: Bearer, and both refusals are problem documents of their type. The matrix
 * runs twice: with both keys configured as plaintext, and with the admin key configured only as
 * its SHA-256 digest (a "role:sha256:<hex>" entry), which must admit exactly the same.
 *
 * The server runs no job workers (a `{}` job that passes validation stays queued).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <check.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/http/http.h"
#include "metaserve/http/sha256.h"
#define TEST_ROOT_NAME "ms_auth"
#include "testsrv.h"

#define ADMIN_KEY  "admin-0123456789abcdef-key"
#define CLIENT_KEY "client-0123456789abcdef-key"
#define WRONG_KEY  "wrong-0123456789abcdef-key"

static char g_dir[128];
static Server *g_srv;
static HcClient g_c;

enum { NO_KEYS, PLAIN_KEYS, ADMIN_AS_DIGEST };

static void server_up(int keys) {
    ServerConfig c;
    testsrv_config_in_new_dir(&c, g_dir, sizeof g_dir, "auth.db");
    c.workers = 0;
    c.http_threads = 2;
    if (keys != NO_KEYS) {
        c.n_keys = 2;
        c.keys[0].role = ROLE_ADMIN;
        if (keys == ADMIN_AS_DIGEST) {
            c.keys[0].hashed = 1; // only the digest is configured, never the key
            sha256(c.keys[0].digest, ADMIN_KEY, strlen(ADMIN_KEY));
        } else {
            snprintf(c.keys[0].key, sizeof c.keys[0].key, "%s", ADMIN_KEY);
        }
        c.keys[1].role = ROLE_CLIENT;
        snprintf(c.keys[1].key, sizeof c.keys[1].key, "%s", CLIENT_KEY);
    }
    testsrv_start(&g_srv, &g_c, &c);
}

static void server_down(void) {
    testsrv_stop(&g_srv, g_dir);
}

// The route's pattern with each {param} replaced by a plausible value.
static void concrete_path(char *out, size_t n, const char *pattern) {
    size_t k = 0;
    for (const char *p = pattern; *p && k + 1 < n;) {
        if (*p != '{') {
            out[k++] = *p++;
            continue;
        }
        const char *close = strchr(p, '}');
        ck_assert_ptr_nonnull(close);
        size_t pn = (size_t)(close - p - 1);
        const char *v = "0123456789abcdef0123456789abcdef"; // {id}: a well-formed unknown id
        if (pn == 4 && strncmp(p + 1, "name", 4) == 0)
            v = "authmodel";
        else if (pn == 3 && strncmp(p + 1, "ref", 3) == 0)
            v = "authmodel@1";
        else if (pn == 7 && strncmp(p + 1, "version", 7) == 0)
            v = "1";
        else if (pn == 5 && strncmp(p + 1, "alias", 5) == 0)
            v = "prod";
        else if (pn == 5 && strncmp(p + 1, "asset", 5) == 0)
            v = "app.js"; // a file of the dashboard
        else
            ck_assert_msg(pn == 2 && strncmp(p + 1, "id", 2) == 0, "unknown parameter in %s",
                          pattern);
        k += (size_t)snprintf(out + k, n - k, "%s", v);
        p = close + 1;
    }
    out[k < n ? k : n - 1] = '\0';
}

static const char *role_name(Role r) {
    return r == ROLE_NONE ? "open" : r == ROLE_CLIENT ? "client" : "admin";
}

// Sends the route's request with the given Authorization (NULL: none) and returns the response.
static long send_route(const Route *rt, const char *auth, HcResp *r) {
    char path[256];
    concrete_path(path, sizeof path, rt->pattern);
    HcReq q = {.method = rt->method, .path = path, .raw_auth = auth};
    if (rt->json_body) q.body = "{}";
    hc_do(&g_c, r, &q);
    ck_assert_msg(r->status > 0, "%s %s: transfer failed: %s", rt->method, path, r->err);
    char rid[128];
    ck_assert_msg(hc_header(r, "X-Request-ID", rid, sizeof rid) != NULL, "%s %s: no X-Request-ID",
                  rt->method, path);
    return r->status;
}

// The whole matrix against the running server.
static void check_matrix(void) {
    static const struct {
        const char *what, *auth;
        Role role; // the role this credential proves (ROLE_NONE: none)
    } creds[] = {
        {"no key", NULL, ROLE_NONE},
        {"a wrong key", "Bearer " WRONG_KEY, ROLE_NONE},
        {"the client key", "Bearer " CLIENT_KEY, ROLE_CLIENT},
        {"the admin key", "Bearer " ADMIN_KEY, ROLE_ADMIN},
    };
    int per_role[3] = {0, 0, 0};
    size_t n_routes = 0;
    for (const Route *rt = ROUTES; rt->method; rt++, n_routes++) {
        per_role[rt->role]++;
        for (size_t c = 0; c < sizeof creds / sizeof creds[0]; c++) {
            HcResp r;
            long st = send_route(rt, creds[c].auth, &r);
            const char *why = NULL;
            if (rt->role == ROLE_NONE || creds[c].role >= rt->role) {
                ck_assert_msg(st != 401 && st != 403, "%s %s (%s route) with %s: %ld %s",
                              rt->method, rt->pattern, role_name(rt->role), creds[c].what, st,
                              r.body);
            } else if (creds[c].role == ROLE_NONE) {
                why = hc_problem_mismatch(&r, 401, "unauthorized");
                char h[64];
                if (!why && (!hc_header(&r, "WWW-Authenticate", h, sizeof h) ||
                             strncmp(h, "Bearer", 6) != 0))
                    why = "no WWW-Authenticate: Bearer";
            } else {
                why = hc_problem_mismatch(&r, 403, "forbidden");
            }
            ck_assert_msg(!why, "%s %s (%s route) with %s: %s", rt->method, rt->pattern,
                          role_name(rt->role), creds[c].what, why);
            hc_free(&r);
        }
    }
    // the table was walked whole, and it has routes of every kind
    ck_assert_uint_eq(n_routes, routes_count());
    ck_assert_int_ge(per_role[ROLE_NONE], 4);
    ck_assert_int_ge(per_role[ROLE_CLIENT], 10);
    ck_assert_int_ge(per_role[ROLE_ADMIN], 6);
}

START_TEST(every_route_admits_exactly_the_roles_it_should) {
    server_up(PLAIN_KEYS);
    check_matrix();
    server_down();
}
END_TEST

START_TEST(a_key_configured_as_its_digest_admits_the_same_and_the_digest_is_no_key) {
    server_up(ADMIN_AS_DIGEST);
    check_matrix();
    // the digest itself, presented as a key, is refused
    unsigned char d[SHA256_BYTES];
    sha256(d, ADMIN_KEY, strlen(ADMIN_KEY));
    char auth[80] = "Bearer ";
    for (int i = 0; i < SHA256_BYTES; i++)
        snprintf(auth + 7 + 2 * i, 3, "%02x", d[i]);
    HcReq q = {.method = "GET", .path = "/v1/models", .raw_auth = auth};
    HcResp r;
    hc_do(&g_c, &r, &q);
    const char *why = hc_problem_mismatch(&r, 401, "unauthorized");
    ck_assert_msg(!why, "the admin key's digest as a key: %s", why);
    hc_free(&r);
    server_down();
}
END_TEST

START_TEST(malformed_credentials_are_401_on_protected_routes) {
    server_up(PLAIN_KEYS);
    char long_key[200];
    memset(long_key, 'k', sizeof long_key - 1);
    long_key[sizeof long_key - 1] = '\0';
    char long_auth[220];
    snprintf(long_auth, sizeof long_auth, "Bearer %s", long_key);
    const char *bad[] = {
        "Basic YWRtaW46c2VjcmV0",    // another scheme
        ADMIN_KEY,                   // no scheme
        "Bearer",                    // no key
        "Bearer ",                   // empty key
        "Bearer " ADMIN_KEY "x",     // a key with one character more
        "Bearer admin-0123456789ab", // a prefix of the admin key
        long_auth,                   // longer than any key
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        HcReq q = {.method = "GET", .path = "/v1/models", .raw_auth = bad[i]};
        HcResp r;
        hc_do(&g_c, &r, &q);
        const char *why = hc_problem_mismatch(&r, 401, "unauthorized");
        ck_assert_msg(!why, "Authorization '%.40s': %s", bad[i], why);
        hc_free(&r);
    }
    // another scheme is told that Bearer is the one expected
    HcReq basic = {.method = "GET", .path = "/v1/models", .raw_auth = "Basic YWRtaW46c2VjcmV0"};
    HcResp br;
    ck_assert_int_eq(hc_do(&g_c, &br, &basic), 401);
    ck_detail_has(&br, "Bearer");
    ck_detail_has(&br, "Basic");
    hc_free(&br);
    // the scheme is case-insensitive (RFC 9110 §11.1)
    HcReq q = {.method = "GET", .path = "/v1/models", .raw_auth = "bearer " CLIENT_KEY};
    HcResp r;
    ck_assert_int_eq(hc_do(&g_c, &r, &q), 200);
    hc_free(&r);
    server_down();
}
END_TEST

START_TEST(without_keys_the_service_is_open) {
    server_up(NO_KEYS);
    for (const Route *rt = ROUTES; rt->method; rt++) {
        HcResp r;
        long st = send_route(rt, NULL, &r);
        ck_assert_msg(st != 401 && st != 403, "%s %s without keys configured: %ld", rt->method,
                      rt->pattern, st);
        hc_free(&r);
    }
    server_down();
}
END_TEST

// A non-loopback IPv4 address of this machine (getifaddrs), or 0 when it has none.
static int outside_address(char *out, size_t n) {
    struct ifaddrs *ifs, *i;
    int found = 0;
    if (getifaddrs(&ifs) != 0) return 0;
    for (i = ifs; i && !found; i = i->ifa_next) {
        if (!i->ifa_addr || i->ifa_addr->sa_family != AF_INET) continue;
        if (addr_is_loopback(i->ifa_addr)) continue;
        found = inet_ntop(AF_INET, &((struct sockaddr_in *)(void *)i->ifa_addr)->sin_addr, out,
                          (socklen_t)n) != NULL;
    }
    freeifaddrs(ifs);
    return found;
}

// Starts the server on 0.0.0.0 without keys (open: METASERVE_OPEN) and points g_c at loopback.
static int server_up_wildcard(int open) {
    ServerConfig c;
    testsrv_config_in_new_dir(&c, g_dir, sizeof g_dir, "auth.db");
    strcpy(c.listen, "0.0.0.0");
    c.workers = 0;
    c.http_threads = 2;
    c.open = open;
    return testsrv_start(&g_srv, &g_c, &c);
}

// Protected mode: no keys and a non-loopback listen address answer loopback clients only; a
// client from another address gets a 403 saying how to configure keys or opt out, except on
// /livez and /readyz; METASERVE_OPEN=1 opens it. The client side binds nothing: connecting to
// the machine's own non-loopback address makes that address the source.
START_TEST(protected_mode_answers_only_loopback_clients_without_keys) {
    // the decision itself, for machines without a non-loopback address
    ck_assert(protected_refuses(0, 0, 0, "/v1/models"));
    ck_assert(protected_refuses(0, 0, 0, "/metrics"));
    ck_assert(!protected_refuses(0, 0, 0, "/livez"));
    ck_assert(!protected_refuses(0, 0, 0, "/readyz"));
    ck_assert(!protected_refuses(1, 0, 0, "/v1/models"));
    ck_assert(!protected_refuses(0, 1, 0, "/v1/models"));
    ck_assert(!protected_refuses(0, 0, 1, "/v1/models"));
    struct sockaddr_in a4 = {.sin_family = AF_INET};
    inet_pton(AF_INET, "127.0.0.2", &a4.sin_addr);
    ck_assert(addr_is_loopback((struct sockaddr *)&a4));
    inet_pton(AF_INET, "128.0.0.1", &a4.sin_addr);
    ck_assert(!addr_is_loopback((struct sockaddr *)&a4));
    struct sockaddr_in6 a6 = {.sin6_family = AF_INET6};
    inet_pton(AF_INET6, "::ffff:127.0.0.1", &a6.sin6_addr);
    ck_assert(addr_is_loopback((struct sockaddr *)&a6));
    inet_pton(AF_INET6, "::1", &a6.sin6_addr);
    ck_assert(addr_is_loopback((struct sockaddr *)&a6));
    inet_pton(AF_INET6, "::ffff:10.0.0.1", &a6.sin6_addr);
    ck_assert(!addr_is_loopback((struct sockaddr *)&a6));

    char ip[INET_ADDRSTRLEN];
    int have_outside = outside_address(ip, sizeof ip);
    for (int open = 0; open <= 1; open++) {
        int port = server_up_wildcard(open);
        HcResp r;
        ck_assert_int_eq(hc_call(&g_c, &r, "GET", "/v1/models", NULL), 200); // loopback
        hc_free(&r);
        if (have_outside) {
            HcClient out = {.key = NULL};
            snprintf(out.base, sizeof out.base, "http://%s:%d", ip, port);
            static const char *const refused[] = {"/v1/models", "/v1/jobs", "/metrics",
                                                  "/openapi.yaml"};
            for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
                long st = hc_call(&out, &r, "GET", refused[i], NULL);
                if (open) {
                    ck_assert_msg(st == 200, "%s from %s with METASERVE_OPEN=1: %ld", refused[i],
                                  ip, st);
                } else {
                    ck_problem(&r, 403, "forbidden");
                    ck_detail_has(&r, "METASERVE_API_KEYS");
                    ck_detail_has(&r, "METASERVE_OPEN=1");
                }
                hc_free(&r);
            }
            ck_assert_int_eq(hc_call(&out, &r, "GET", "/livez", NULL), 200);
            hc_free(&r);
            ck_assert_int_eq(hc_call(&out, &r, "GET", "/readyz", NULL), 200);
            hc_free(&r);
        } else {
            fprintf(stderr, "protected mode: no non-loopback address here; the decision and "
                            "loopback acceptance were checked\n");
        }
        server_down();
    }
}
END_TEST

int main(void) {
    curl_global_init(CURL_GLOBAL_DEFAULT);
    Suite *s = suite_create("auth");
    TCase *tc = tcase_create("auth");
    tcase_set_timeout(tc, 60);
    tcase_add_unchecked_fixture(tc, test_root_make, test_root_remove);
    tcase_add_test(tc, every_route_admits_exactly_the_roles_it_should);
    tcase_add_test(tc, a_key_configured_as_its_digest_admits_the_same_and_the_digest_is_no_key);
    tcase_add_test(tc, malformed_credentials_are_401_on_protected_routes);
    tcase_add_test(tc, without_keys_the_service_is_open);
    tcase_add_test(tc, protected_mode_answers_only_loopback_clients_without_keys);
    suite_add_tcase(s, tc);
    int failed = test_suite_run(s);
    curl_global_cleanup();
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
