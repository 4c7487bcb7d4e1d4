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
#include <check.h>
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
    suite_add_tcase(s, tc);
    int failed = test_suite_run(s);
    curl_global_cleanup();
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
