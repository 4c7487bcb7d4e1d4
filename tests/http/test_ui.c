/*
 * The web dashboard served by the binary, against the real server (in-process, loopback, SQLite
 * under the test's temporary root): GET / answers 302 and GET /ui 308 to /ui/; GET /ui/ is
 * ui/index.html; every file of ui/ on disk is served at /ui/<name>, byte for byte, with the
 * Content-Type of its extension (from a table written here, not the generator's), a strong ETag
 * equal to the first 20 hex digits of the file's SHA-256, `Cache-Control: no-cache`, a
 * Content-Security-Policy of the page's own origin only and `nosniff`; an If-None-Match naming
 * that tag (also weakly, in a list, or `*`) gets 304 without a body; an unknown file is a 404
 * problem, another method a 405; the page and every file it references (src/href in the HTML,
 * import specifiers in the scripts) are served from /ui/ itself, nothing from another origin; and
 * with API keys configured the dashboard stays open while the API asks for a key.
 */
#define _GNU_SOURCE
#include <check.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../src/http/http.h"
#include "metaserve/http/sha256.h"
#include "metaserve/http/ui_assets.h"
#define TEST_ROOT_NAME "ms_ui"
#include "testsrv.h"

#define ADMIN_KEY "admin-ui-test-0123456789abcdef"

static char g_dir[128];
static Server *g_srv;
static HcClient g_c;
static int g_port;

static void up(int with_key) {
    ServerConfig c;
    testsrv_config_in_new_dir(&c, g_dir, sizeof g_dir, "ui.db");
    c.workers = 0;
    if (with_key) {
        c.n_keys = 1;
        c.keys[0].role = ROLE_ADMIN;
        snprintf(c.keys[0].key, sizeof c.keys[0].key, "%s", ADMIN_KEY);
    }
    g_port = testsrv_start(&g_srv, &g_c, &c);
}

static void down(void) {
    testsrv_stop(&g_srv, g_dir);
}

// The file ui/<name> of the source tree (malloc'd, *n bytes; NULL when absent).
static char *read_source(const char *name, size_t *n) {
    const char *src = getenv("METASERVE_SRC");
    ck_assert_msg(src && *src, "METASERVE_SRC (the source tree) is not set; run through ctest");
    char path[4096];
    snprintf(path, sizeof path, "%s/ui/%s", src, name);
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    HcBuf b;
    hc_buf_init(&b);
    char chunk[8192];
    for (size_t k; (k = fread(chunk, 1, sizeof chunk, f)) > 0;)
        hc_buf_add(&b, chunk, k);
    fclose(f);
    *n = b.len;
    return b.s;
}

// The media type a browser needs for a file name, by extension; NULL for one the test does not
// know (the generator stops the build on those).
static const char *expected_type(const char *name) {
    static const char *const table[][2] = {
        {".html", "text/html; charset=utf-8"},
        {".css", "text/css; charset=utf-8"},
        {".js", "text/javascript; charset=utf-8"},
        {".svg", "image/svg+xml"},
        {".png", "image/png"},
        {".json", "application/json"},
    };
    const char *dot = strrchr(name, '.');
    for (size_t i = 0; dot && i < sizeof table / sizeof table[0]; i++)
        if (strcmp(dot, table[i][0]) == 0) return table[i][1];
    return NULL;
}

static void etag_of(const char *data, size_t n, char out[24]) {
    unsigned char d[SHA256_BYTES];
    sha256(d, data, n);
    out[0] = '"';
    for (int i = 0; i < 10; i++)
        snprintf(out + 1 + 2 * i, 3, "%02x", d[i]);
    out[21] = '"';
    out[22] = '\0';
}

// GET path answers 200 with the bytes of ui/<file>, its type, its ETag and the UI's headers.
static void check_served(const char *path, const char *file) {
    size_t n = 0;
    char *want = read_source(file, &n);
    ck_assert_msg(want != NULL, "ui/%s is not in the source tree", file);
    HcResp r;
    hc_call(&g_c, &r, "GET", path, NULL);
    ck_assert_msg(r.status == 200, "GET %s: %ld", path, r.status);
    ck_assert_msg(r.body_len == n && memcmp(r.body, want, n) == 0,
                  "GET %s: %zu bytes, not the %zu bytes of ui/%s", path, r.body_len, n, file);
    char h[512], etag[24];
    const char *type = expected_type(file);
    ck_assert_msg(type != NULL, "ui/%s: an extension this test has no media type for", file);
    ck_assert_ptr_nonnull(hc_header(&r, "Content-Type", h, sizeof h));
    ck_assert_msg(strcmp(h, type) == 0, "%s: Content-Type %s, expected %s", path, h, type);
    etag_of(want, n, etag);
    ck_assert_ptr_nonnull(hc_header(&r, "ETag", h, sizeof h));
    ck_assert_msg(strcmp(h, etag) == 0, "%s: ETag %s, expected %s", path, h, etag);
    ck_assert_ptr_nonnull(hc_header(&r, "Cache-Control", h, sizeof h));
    ck_assert_str_eq(h, "no-cache");
    ck_assert_ptr_nonnull(hc_header(&r, "X-Content-Type-Options", h, sizeof h));
    ck_assert_str_eq(h, "nosniff");
    ck_assert_ptr_nonnull(hc_header(&r, "Content-Security-Policy", h, sizeof h));
    // own origin only: nothing by default, scripts, styles and requests from 'self', no inline
    // code, no framing
    ck_assert_msg(strstr(h, "default-src 'none'") && strstr(h, "script-src 'self';") &&
                      strstr(h, "style-src 'self';") && strstr(h, "connect-src 'self';") &&
                      strstr(h, "frame-ancestors 'none'") && !strstr(h, "unsafe") &&
                      !strstr(h, "http"),
                  "%s: Content-Security-Policy %s", path, h);
    hc_free(&r);
    free(want);
}

START_TEST(root_and_ui_redirect_to_the_dashboard) {
    up(0);
    const char *paths[] = {"/", "/ui"};
    const long status[] = {302, 308};
    for (int i = 0; i < 2; i++) {
        HcResp r;
        char loc[64];
        hc_call(&g_c, &r, "GET", paths[i], NULL);
        ck_assert_msg(r.status == status[i], "GET %s: %ld", paths[i], r.status);
        ck_assert_ptr_nonnull(hc_header(&r, "Location", loc, sizeof loc));
        ck_assert_str_eq(loc, "/ui/");
        hc_free(&r);
    }
    down();
}
END_TEST

START_TEST(ui_slash_is_the_page_and_every_file_of_ui_is_served_with_its_type) {
    up(0);
    check_served("/ui/", "index.html");
    // every file on disk is embedded and served (the table holds exactly these)
    const char *src = getenv("METASERVE_SRC");
    ck_assert_ptr_nonnull(src);
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/ui", src);
    DIR *d = opendir(dir);
    ck_assert_msg(d != NULL, "cannot open %s", dir);
    size_t n_files = 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.') continue;
        char path[512];
        snprintf(path, sizeof path, "/ui/%s", e->d_name);
        check_served(path, e->d_name);
        n_files++;
    }
    closedir(d);
    ck_assert_uint_eq(n_files, UI_ASSETS_COUNT);
    ck_assert_uint_ge(n_files, 4); // the page, its style, its scripts
    down();
}
END_TEST

// Sends GET path with an If-None-Match header over a raw connection; returns the status and
// leaves the response (headers and body) in out.
static int get_if_none_match(const char *path, const char *inm, char *out, size_t cap) {
    int fd = hc_connect_loopback(g_port);
    ck_assert_int_ge(fd, 0);
    char req[512];
    int n = snprintf(req, sizeof req,
                     "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nIf-None-Match: %s\r\n"
                     "Connection: close\r\n\r\n",
                     path, inm);
    ck_assert_int_eq(write(fd, req, (size_t)n), n);
    size_t got = 0;
    for (ssize_t k; got + 1 < cap && (k = read(fd, out + got, cap - 1 - got)) > 0;)
        got += (size_t)k;
    out[got] = '\0';
    close(fd);
    int status = 0;
    ck_assert_int_eq(sscanf(out, "HTTP/1.1 %d", &status), 1);
    return status;
}

START_TEST(a_matching_if_none_match_gets_304_without_a_body) {
    up(0);
    size_t n = 0;
    char *js = read_source("app.js", &n);
    ck_assert_ptr_nonnull(js);
    char etag[24], list[128], weak[32], resp[65536];
    etag_of(js, n, etag);
    free(js);
    snprintf(list, sizeof list, "\"0000\", %s", etag);
    snprintf(weak, sizeof weak, "W/%s", etag);
    const char *match[] = {etag, list, weak, "*"};
    for (int i = 0; i < 4; i++) {
        ck_assert_msg(get_if_none_match("/ui/app.js", match[i], resp, sizeof resp) == 304,
                      "If-None-Match: %s: %.200s", match[i], resp);
        const char *body = strstr(resp, "\r\n\r\n");
        ck_assert_msg(body && body[4] == '\0', "a 304 with a body: %s", resp);
        ck_assert_msg(strcasestr(resp, "\r\nETag: ") != NULL, "a 304 without its ETag: %s", resp);
    }
    // another tag, or the tag of another file: the file
    ck_assert_int_eq(get_if_none_match("/ui/app.js", "\"0123456789abcdef0123\"", resp, sizeof resp),
                     200);
    ck_assert_int_eq(get_if_none_match("/ui/app.css", etag, resp, sizeof resp), 200);
    down();
}
END_TEST

START_TEST(an_unknown_file_is_a_404_and_another_method_a_405) {
    up(0);
    HcResp r;
    hc_call(&g_c, &r, "GET", "/ui/nope.js", NULL);
    ck_problem(&r, 404, "not-found");
    hc_free(&r);
    hc_call(&g_c, &r, "GET", "/ui/..%2Fopenapi.yaml", NULL);
    ck_assert_msg(r.status == 422 || r.status == 404, "GET /ui/..%%2Fopenapi.yaml: %ld", r.status);
    hc_free(&r);
    hc_call(&g_c, &r, "POST", "/ui/", "{}");
    ck_problem(&r, 405, "method-not-allowed");
    hc_free(&r);
    hc_call(&g_c, &r, "DELETE", "/ui/app.js", NULL);
    ck_problem(&r, 405, "method-not-allowed");
    hc_free(&r);
    down();
}
END_TEST

// Every value of `attr="..."` in text that is a reference (src=, href=, from '...').
static void check_refs_local(const char *text, const char *open, char close) {
    for (const char *p = strstr(text, open); p; p = strstr(p + 1, open)) {
        const char *v = p + strlen(open), *end = strchr(v, close);
        ck_assert_ptr_nonnull(end);
        char ref[256];
        snprintf(ref, sizeof ref, "%.*s", (int)(end - v), v);
        if (ref[0] == '#') continue; // a route of the page itself
        ck_assert_msg(!strchr(ref, ':') && ref[0] != '/', "a reference off /ui/: %s", ref);
        const char *name = strncmp(ref, "./", 2) == 0 ? ref + 2 : ref;
        char path[300];
        snprintf(path, sizeof path, "/ui/%s", name);
        HcResp r;
        hc_call(&g_c, &r, "GET", path, NULL);
        ck_assert_msg(r.status == 200, "%s (referenced as %s): %ld", path, ref, r.status);
        hc_free(&r);
    }
}

START_TEST(the_page_references_only_its_own_files) {
    up(0);
    HcResp r;
    hc_call(&g_c, &r, "GET", "/ui/", NULL);
    ck_assert_int_eq(r.status, 200);
    check_refs_local(r.body, "src=\"", '"');
    check_refs_local(r.body, "href=\"", '"');
    hc_free(&r);
    for (size_t i = 0; i < UI_ASSETS_COUNT; i++) {
        if (!strstr(UI_ASSETS[i].name, ".js")) continue;
        check_refs_local((const char *)UI_ASSETS[i].data, "from '", '\'');
    }
    down();
}
END_TEST

START_TEST(with_api_keys_the_dashboard_is_open_and_the_api_is_not) {
    up(1);
    check_served("/ui/", "index.html");
    check_served("/ui/app.js", "app.js");
    HcResp r;
    hc_call(&g_c, &r, "GET", "/v1/models", NULL);
    ck_problem(&r, 401, "unauthorized");
    hc_free(&r);
    down();
}
END_TEST

int main(void) {
    curl_global_init(CURL_GLOBAL_ALL);
    Suite *s = suite_create("ui");
    TCase *tc = tcase_create("ui");
    tcase_set_timeout(tc, 60);
    tcase_add_unchecked_fixture(tc, test_root_make, test_root_remove);
    tcase_add_test(tc, root_and_ui_redirect_to_the_dashboard);
    tcase_add_test(tc, ui_slash_is_the_page_and_every_file_of_ui_is_served_with_its_type);
    tcase_add_test(tc, a_matching_if_none_match_gets_304_without_a_body);
    tcase_add_test(tc, an_unknown_file_is_a_404_and_another_method_a_405);
    tcase_add_test(tc, the_page_references_only_its_own_files);
    tcase_add_test(tc, with_api_keys_the_dashboard_is_open_and_the_api_is_not);
    suite_add_tcase(s, tc);
    int failed = test_suite_run(s);
    curl_global_cleanup();
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
