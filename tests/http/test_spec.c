/*
 * Keeps api/openapi.yaml, the public contract, true to the server: the (method, path) operations
 * it declares are exactly the route table of src/http/routes.c; each operation's `security` names
 * its route's least role (`security: []` for open routes, `- bearer: [client]` or
 * `- bearer: [admin]` otherwise); a request body is declared exactly for the routes that take
 * JSON (a route that takes none may declare an optional one, `required: false`, that it ignores);
 * and the copy built into the binary (METASERVE_OPENAPI) equals the file on disk. A route
 * added to either side only, or a role changed on one side only, fails here with the pair named.
 *
 * The YAML is read line by line rather than with a YAML library, relying on the spec's layout:
 * paths are keys at 2 spaces under the top-level `paths:`, methods keys at 4, an operation's
 * `security:` and `requestBody:` keys at 6, a security requirement `- bearer: [role]` and the
 * body's `required: false` at 8.
 * Whatever this reader does not understand under `paths:` is reported, not skipped, so the layout
 * cannot drift away from it silently. The reader and the comparison are first run on small specs
 * with each kind of mismatch, so that a pass on the real spec means the checks can fail.
 */
#include <check.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/http/http.h"
#include "metaserve/http/openapi.h"
#include "metaserve/meta/train.h"

// the small route tables below leave Route.query out (NULL)
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

#define SPEC_MAX_OPS 128 // operations the reader keeps (the v1 table has 26)
#define REPORT_CAP   16384

enum { SEC_MISSING = -1, SEC_UNREADABLE = -2 }; // SpecOp.role besides the Role values

typedef struct {
    char method[8]; // upper case, as in the route table: "GET", "POST", ...
    char path[160]; // "/v1/models/{ref}/adapt"
    int role;       // a Role, SEC_MISSING (no security key) or SEC_UNREADABLE
    int n_security; // requirements read from the security list
    int has_body;   // 1 when the operation declares a requestBody, 2 an optional one
    int line;       // 1-based line of the method key
} SpecOp;

typedef struct {
    SpecOp ops[SPEC_MAX_OPS];
    int n;
} Spec;

/** Problems found, one per line. */
typedef struct {
    char text[REPORT_CAP];
    size_t len;
    int n;
} Report;

__attribute__((format(printf, 2, 3))) static void report_add(Report *rep, const char *fmt, ...) {
    rep->n++;
    if (rep->len + 2 >= sizeof rep->text) return;   // full: still counted
    size_t avail = sizeof rep->text - rep->len - 1; // one byte kept for the newline
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(rep->text + rep->len, avail, fmt, ap);
    va_end(ap);
    if (k < 0) return;
    rep->len += (size_t)k < avail ? (size_t)k : avail - 1;
    rep->text[rep->len++] = '\n';
    rep->text[rep->len] = '\0';
}

static const char *role_name(int role) {
    switch (role) {
    case ROLE_NONE:
        return "open (security: [])";
    case ROLE_CLIENT:
        return "client";
    case ROLE_ADMIN:
        return "admin";
    case SEC_MISSING:
        return "not declared";
    default:
        return "unreadable";
    }
}

/* ---- the reader ---- */

static const char *const METHODS[] = {"get",  "put",   "post",  "delete", "options",
                                      "head", "patch", "trace", NULL};

// One line of the document: [s, s + len) without the newline (and without a trailing '\r').
typedef struct {
    const char *s;
    size_t len;
    int indent; // leading spaces
    int no;     // 1-based line number
} Line;

// The text after leading spaces, with trailing spaces and a trailing " # comment" removed, into
// out (cap bytes). Quotes are not interpreted (a '#' inside quotes must follow no space).
static void line_content(const Line *l, char *out, size_t cap) {
    size_t a = (size_t)l->indent, b = l->len;
    for (size_t i = a; i + 1 < b; i++)
        if (l->s[i] == ' ' && l->s[i + 1] == '#') {
            b = i;
            break;
        }
    while (b > a && (l->s[b - 1] == ' ' || l->s[b - 1] == '\t'))
        b--;
    size_t n = b - a < cap - 1 ? b - a : cap - 1;
    memcpy(out, l->s + a, n);
    out[n] = '\0';
}

// Splits "key: value" / "key:" in place: *key and *value (value "" when absent). Returns 0 when
// the content is not a mapping key. A quoted key ('/x' or "/x") is unquoted.
static int split_key(char *content, char **key, char **value) {
    char *k = content, *colon;
    if (*k == '\'' || *k == '"') {
        char *end = strchr(k + 1, *k);
        if (!end || end[1] != ':') return 0;
        *end = '\0';
        k++;
        colon = end + 1;
    } else {
        colon = strstr(k, ": ");
        if (!colon) {
            size_t n = strlen(k);
            if (n == 0 || k[n - 1] != ':') return 0;
            colon = k + n - 1;
        }
    }
    *colon = '\0';
    char *v = colon + 1;
    while (*v == ' ')
        v++;
    *key = k;
    *value = v;
    return 1;
}

// Reads "- bearer: [role]" (the item text after the indent) into a Role; -1 if it is not one.
static int read_requirement(const char *item) {
    char buf[64];
    if (sscanf(item, "- bearer: [ %63[a-z] ]", buf) != 1) return -1;
    size_t n = strlen(item);
    if (n == 0 || item[n - 1] != ']') return -1;
    if (strcmp(buf, "client") == 0) return ROLE_CLIENT;
    if (strcmp(buf, "admin") == 0) return ROLE_ADMIN;
    return -1;
}

/**
 * Reads the operations under `paths:` of the YAML text[0..len) into s. Layout problems (no
 * `paths:`, an operation written in flow style, a key the reader does not know, a security
 * requirement it cannot read, too many operations) are added to rep.
 */
static void spec_read(Spec *s, const char *text, size_t len, Report *rep) {
    memset(s, 0, sizeof *s);
    int in_paths = 0, seen_paths = 0, in_security = 0, in_body = 0;
    int cur = -1;        // index of the operation being read, or -1
    char path[160] = ""; // current path key ("" inside an x- extension)
    const char *p = text, *end = text + len;
    for (int no = 1; p < end; no++) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        Line l = {p, (size_t)((nl ? nl : end) - p), 0, no};
        p = nl ? nl + 1 : end;
        if (l.len > 0 && l.s[l.len - 1] == '\r') l.len--;
        while ((size_t)l.indent < l.len && l.s[l.indent] == ' ')
            l.indent++;
        if ((size_t)l.indent == l.len || l.s[l.indent] == '#') continue; // blank or comment
        char content[512], *key, *value;
        line_content(&l, content, sizeof content);

        if (l.indent == 0) {
            in_paths = strcmp(content, "paths:") == 0;
            seen_paths |= in_paths;
            cur = -1, in_security = 0;
            continue;
        }
        if (!in_paths) continue;
        if (l.indent <= 6 && !(l.indent == 6 && in_security && content[0] == '-')) in_security = 0;
        if (l.indent <= 6) in_body = 0;

        if (l.indent == 2) {
            cur = -1;
            path[0] = '\0';
            if (!split_key(content, &key, &value) || *value != '\0') {
                report_add(rep, "line %d: expected a path key (\"  /path:\") under paths", no);
            } else if (key[0] == '/') {
                snprintf(path, sizeof path, "%s", key);
            } else if (strncmp(key, "x-", 2) != 0) {
                report_add(rep, "line %d: '%s' under paths is neither a path nor an x- key", no,
                           key);
            }
        } else if (l.indent == 4) {
            cur = -1;
            if (path[0] == '\0') continue;
            if (!split_key(content, &key, &value)) {
                report_add(rep, "line %d: expected a key of path %s", no, path);
                continue;
            }
            int is_method = 0;
            for (int m = 0; METHODS[m]; m++)
                is_method |= strcmp(key, METHODS[m]) == 0;
            if (is_method) {
                if (*value != '\0') {
                    report_add(rep, "line %d: operation %s %s must be a block mapping", no, key,
                               path);
                } else if (s->n == SPEC_MAX_OPS) {
                    report_add(rep, "line %d: more than %d operations", no, SPEC_MAX_OPS);
                } else {
                    SpecOp *op = &s->ops[cur = s->n++];
                    for (size_t i = 0; key[i] && i < sizeof op->method - 1; i++)
                        op->method[i] = (char)(key[i] - 'a' + 'A');
                    snprintf(op->path, sizeof op->path, "%s", path);
                    op->role = SEC_MISSING;
                    op->line = no;
                }
            } else if (strcmp(key, "$ref") == 0) {
                report_add(rep, "line %d: path %s is a $ref; write its operations inline", no,
                           path);
            } else if (strcmp(key, "parameters") != 0 && strcmp(key, "summary") != 0 &&
                       strcmp(key, "description") != 0 && strcmp(key, "servers") != 0 &&
                       strncmp(key, "x-", 2) != 0) {
                report_add(rep, "line %d: unknown key '%s' in path %s", no, key, path);
            }
        } else if (cur >= 0 && l.indent == 6 && !in_security) {
            SpecOp *op = &s->ops[cur];
            if (!split_key(content, &key, &value)) continue;
            if (strcmp(key, "requestBody") == 0) {
                op->has_body = 1;
                in_body = *value == '\0';
            } else if (strcmp(key, "security") == 0) {
                if (strcmp(value, "[]") == 0) {
                    op->role = ROLE_NONE;
                } else if (*value == '\0') {
                    op->role = SEC_UNREADABLE; // until one requirement is read
                    in_security = 1;
                } else {
                    op->role = SEC_UNREADABLE;
                    report_add(rep, "line %d: security of %s %s: cannot read '%s'", no, op->method,
                               op->path, value);
                }
            }
        } else if (cur >= 0 && in_body && l.indent == 8) {
            if (strcmp(content, "required: false") == 0) s->ops[cur].has_body = 2;
        } else if (cur >= 0 && in_security && (l.indent == 8 || l.indent == 6)) {
            SpecOp *op = &s->ops[cur];
            int role = read_requirement(content);
            if (role < 0) {
                op->role = SEC_UNREADABLE;
                report_add(rep,
                           "line %d: security of %s %s: expected '- bearer: [client]' or "
                           "'- bearer: [admin]', got '%s'",
                           no, op->method, op->path, content);
            } else if (++op->n_security > 1) {
                op->role = SEC_UNREADABLE;
                report_add(rep, "line %d: security of %s %s: more than one requirement", no,
                           op->method, op->path);
            } else {
                op->role = role;
            }
        }
    }
    if (!seen_paths) report_add(rep, "no top-level 'paths:' key");
}

/* ---- the comparison ---- */

enum { CHECK_PAIRS = 1, CHECK_SECURITY = 2, CHECK_BODY = 4 };

static const SpecOp *spec_find(const Spec *s, const char *method, const char *path) {
    for (int i = 0; i < s->n; i++)
        if (strcmp(s->ops[i].method, method) == 0 && strcmp(s->ops[i].path, path) == 0)
            return &s->ops[i];
    return NULL;
}

static const Route *route_find(const Route *routes, size_t n, const char *method,
                               const char *path) {
    for (size_t i = 0; i < n; i++)
        if (strcmp(routes[i].method, method) == 0 && strcmp(routes[i].pattern, path) == 0)
            return &routes[i];
    return NULL;
}

/**
 * Compares the operations of s with routes[0..n) and adds one line to rep per problem:
 * CHECK_PAIRS: a route missing from the spec, an operation without a route, duplicates;
 * CHECK_SECURITY: an operation whose security differs from its route's role;
 * CHECK_BODY: a requestBody declared for a route without a JSON body (unless optional), or
 * missing (or optional) for one with.
 */
static void spec_compare(const Spec *s, const Route *routes, size_t n, int what, Report *rep) {
    for (size_t i = 0; i < n; i++) {
        const Route *r = &routes[i];
        const SpecOp *op = spec_find(s, r->method, r->pattern);
        if (route_find(routes, i, r->method, r->pattern) && (what & CHECK_PAIRS))
            report_add(rep, "route table: %s %s is listed twice", r->method, r->pattern);
        if (!op) {
            if (what & CHECK_PAIRS)
                report_add(rep, "missing from api/openapi.yaml: %s %s (in the route table)",
                           r->method, r->pattern);
            continue;
        }
        if ((what & CHECK_SECURITY) && op->role != (int)r->role)
            report_add(rep, "security of %s %s (line %d): the spec says %s, the route table %s",
                       r->method, r->pattern, op->line, role_name(op->role), role_name(r->role));
        if ((what & CHECK_BODY) && (op->has_body == 1) != (r->json_body != 0))
            report_add(rep, "request body of %s %s (line %d): the spec %s one, the route %s JSON",
                       r->method, r->pattern, op->line,
                       op->has_body == 1   ? "declares"
                       : op->has_body == 2 ? "declares an optional"
                                           : "declares no",
                       r->json_body ? "takes" : "takes no");
    }
    for (int i = 0; i < s->n; i++) {
        const SpecOp *op = &s->ops[i];
        if (what & CHECK_PAIRS) {
            if (spec_find(s, op->method, op->path) != op)
                report_add(rep, "api/openapi.yaml: %s %s is declared twice (line %d)", op->method,
                           op->path, op->line);
            if (!route_find(routes, n, op->method, op->path))
                report_add(rep, "extra in api/openapi.yaml: %s %s (line %d) has no route",
                           op->method, op->path, op->line);
        }
    }
}

/* ---- the reader and the comparison on small specs ---- */

static const char MINI[] =
    "openapi: 3.1.0\n"
    "info:\n"
    "  title: mini\n"
    "  version: '1'\n"
    "# a comment at the top level\n"
    "paths:\n"
    "  /livez:\n"
    "    get:\n"
    "      operationId: livez\n"
    "      description: |\n"
    "        Prose that mentions requestBody: and security: in a block scalar.\n"
    "      security: []  # open\n"
    "      responses:\n"
    "        '200':\n"
    "          description: ok\n"
    "\n"
    "  '/v1/things':\n"
    "    parameters:\n"
    "      - $ref: '#/components/parameters/RequestId'\n"
    "    post:\n"
    "      security:\n"
    "        - bearer: [admin]\n"
    "      requestBody:\n"
    "        content:\n"
    "          application/json: {}\n"
    "      responses: {}\n"
    "    get:\n"
    "      security:\n"
    "      - bearer: [ client ]\n"
    "      responses: {}\n"
    "    delete:\n"
    "      security:\n"
    "        - bearer: [admin]\n"
    "      requestBody:\n"
    "        description: ignored\n"
    "        required: false\n"
    "      responses: {}\n"
    "  x-internal:\n"
    "    get:\n"
    "      security: []\n"
    "components:\n"
    "  schemas:\n"
    "    get:\n"
    "      requestBody: {}\n";

static const Route MINI_ROUTES[] = {
    {"GET", "/livez", ROLE_NONE, 0, NULL, "/livez"},
    {"POST", "/v1/things", ROLE_ADMIN, 1, NULL, "/v1/things"},
    {"GET", "/v1/things", ROLE_CLIENT, 0, NULL, "/v1/things"},
    {"DELETE", "/v1/things", ROLE_ADMIN, 0, NULL, "/v1/things"}, // an optional, ignored body
};
#define N_MINI (sizeof MINI_ROUTES / sizeof MINI_ROUTES[0])

static void read_mini(Spec *s) {
    Report rep = {0};
    spec_read(s, MINI, sizeof MINI - 1, &rep);
    ck_assert_msg(rep.n == 0, "%s", rep.text);
}

START_TEST(reader_finds_each_operation_with_its_security_and_body) {
    static Spec s;
    read_mini(&s);
    ck_assert_int_eq(s.n, 4); // x-internal and components are not paths
    ck_assert_str_eq(s.ops[0].method, "GET");
    ck_assert_str_eq(s.ops[0].path, "/livez");
    ck_assert_int_eq(s.ops[0].role, ROLE_NONE);
    ck_assert_int_eq(s.ops[0].has_body, 0);
    ck_assert_int_eq(s.ops[0].line, 8);
    ck_assert_str_eq(s.ops[1].method, "POST");
    ck_assert_str_eq(s.ops[1].path, "/v1/things"); // quotes removed
    ck_assert_int_eq(s.ops[1].role, ROLE_ADMIN);
    ck_assert_int_eq(s.ops[1].has_body, 1);
    ck_assert_str_eq(s.ops[2].method, "GET");
    ck_assert_int_eq(s.ops[2].role, ROLE_CLIENT); // list at the key's indent, spaces in []
    ck_assert_int_eq(s.ops[2].has_body, 0);
    ck_assert_int_eq(s.ops[3].has_body, 2); // required: false
}
END_TEST

START_TEST(a_spec_equal_to_its_route_table_has_no_problems) {
    static Spec s;
    read_mini(&s);
    Report rep = {0};
    spec_compare(&s, MINI_ROUTES, N_MINI, CHECK_PAIRS | CHECK_SECURITY | CHECK_BODY, &rep);
    ck_assert_msg(rep.n == 0, "%s", rep.text);
}
END_TEST

START_TEST(a_route_only_in_the_table_is_reported) {
    static Spec s;
    read_mini(&s);
    const Route routes[] = {
        MINI_ROUTES[0],
        MINI_ROUTES[1],
        MINI_ROUTES[2],
        MINI_ROUTES[3],
        {"DELETE", "/v1/things/{id}", ROLE_ADMIN, 0, NULL, "/v1/things/{id}"},
    };
    Report rep = {0};
    spec_compare(&s, routes, 5, CHECK_PAIRS | CHECK_SECURITY | CHECK_BODY, &rep);
    ck_assert_int_eq(rep.n, 1);
    ck_assert_ptr_nonnull(
        strstr(rep.text, "missing from api/openapi.yaml: DELETE /v1/things/{id}"));
}
END_TEST

START_TEST(an_operation_only_in_the_spec_is_reported) {
    static Spec s;
    read_mini(&s);
    Report rep = {0};
    spec_compare(&s, MINI_ROUTES, 2, CHECK_PAIRS | CHECK_SECURITY | CHECK_BODY, &rep);
    ck_assert_int_eq(rep.n, 2);
    ck_assert_ptr_nonnull(
        strstr(rep.text, "extra in api/openapi.yaml: DELETE /v1/things (line 31)"));
    ck_assert_ptr_nonnull(strstr(rep.text, "extra in api/openapi.yaml: GET /v1/things (line 27)"));
}
END_TEST

START_TEST(a_role_or_a_body_that_differs_is_reported) {
    static Spec s;
    read_mini(&s);
    Route routes[N_MINI];
    memcpy(routes, MINI_ROUTES, sizeof routes);
    routes[0].role = ROLE_CLIENT; // the spec says open
    routes[1].json_body = 0;      // the spec declares a body
    routes[2].role = ROLE_ADMIN;  // the spec says client
    routes[3].json_body = 1;      // the spec declares an optional body only
    Report rep = {0};
    spec_compare(&s, routes, N_MINI, CHECK_PAIRS, &rep);
    ck_assert_int_eq(rep.n, 0); // pairs alone still agree
    spec_compare(&s, routes, N_MINI, CHECK_SECURITY | CHECK_BODY, &rep);
    ck_assert_int_eq(rep.n, 4);
    ck_assert_ptr_nonnull(strstr(rep.text, "request body of DELETE /v1/things (line 31): the spec "
                                           "declares an optional one, the route takes JSON"));
    ck_assert_ptr_nonnull(strstr(rep.text, "security of GET /livez (line 8): the spec says open"));
    ck_assert_ptr_nonnull(strstr(rep.text, "request body of POST /v1/things"));
    ck_assert_ptr_nonnull(strstr(rep.text, "the spec says client, the route table admin"));
}
END_TEST

START_TEST(a_layout_the_reader_does_not_know_is_reported) {
    static Spec s;
    Report rep = {0};
    const char *no_paths = "openapi: 3.1.0\ninfo: {}\n";
    spec_read(&s, no_paths, strlen(no_paths), &rep);
    ck_assert_int_eq(rep.n, 1);
    ck_assert_ptr_nonnull(strstr(rep.text, "no top-level 'paths:'"));

    const char *odd = "paths:\n"
                      "  /a:\n"
                      "    get: {responses: {}}\n" // flow style
                      "    post:\n"
                      "      security:\n"
                      "        - apiKey: []\n" // another scheme
                      "    put:\n"
                      "      security:\n"
                      "        - bearer: [client]\n"
                      "        - bearer: [admin]\n" // alternatives
                      "    delete:\n"
                      "      responses: {}\n" // no security at all
                      "    sumary: typo\n"    // unknown key
                      "  notapath:\n";
    memset(&rep, 0, sizeof rep);
    spec_read(&s, odd, strlen(odd), &rep);
    ck_assert_msg(rep.n == 5, "%d problems:\n%s", rep.n, rep.text);
    ck_assert_ptr_nonnull(strstr(rep.text, "line 3: operation get /a must be a block mapping"));
    ck_assert_ptr_nonnull(strstr(rep.text, "line 6: security of POST /a: expected"));
    ck_assert_ptr_nonnull(strstr(rep.text, "line 10: security of PUT /a: more than one"));
    ck_assert_ptr_nonnull(strstr(rep.text, "line 13: unknown key 'sumary'"));
    ck_assert_ptr_nonnull(strstr(rep.text, "line 14: 'notapath' under paths"));
    ck_assert_int_eq(s.n, 3);
    ck_assert_int_eq(s.ops[0].role, SEC_UNREADABLE);
    ck_assert_int_eq(s.ops[1].role, SEC_UNREADABLE);
    ck_assert_int_eq(s.ops[2].role, SEC_MISSING); // reported by the comparison
    const Route routes[] = {{"DELETE", "/a", ROLE_ADMIN, 0, NULL, "/a"}};
    memset(&rep, 0, sizeof rep);
    spec_compare(&s, routes, 1, CHECK_SECURITY, &rep);
    ck_assert_int_eq(rep.n, 1);
    ck_assert_ptr_nonnull(strstr(rep.text, "the spec says not declared, the route table admin"));
}
END_TEST

/* ---- the real contract and the real route table ---- */

// Reads the embedded spec; layout problems fail the test.
static void read_contract(Spec *s) {
    Report rep = {0};
    spec_read(s, METASERVE_OPENAPI, METASERVE_OPENAPI_LEN, &rep);
    if (rep.n) fprintf(stderr, "%s", rep.text);
    ck_assert_msg(rep.n == 0, "api/openapi.yaml: %d layout problem(s):\n%s", rep.n, rep.text);
    ck_assert_int_gt(s->n, 0);
}

static void check_contract(int what) {
    static Spec s;
    read_contract(&s);
    Report rep = {0};
    spec_compare(&s, ROUTES, routes_count(), what, &rep);
    if (rep.n) fprintf(stderr, "%s", rep.text);
    ck_assert_msg(rep.n == 0, "%d problem(s):\n%s", rep.n, rep.text);
}

START_TEST(the_contract_declares_exactly_the_routes_of_the_table) {
    ck_assert_uint_gt(routes_count(), 0);
    ck_assert_ptr_null(ROUTES[routes_count()].method); // the table ends where routes_count says
    check_contract(CHECK_PAIRS);
}
END_TEST

START_TEST(each_operation_declares_the_least_role_of_its_route) {
    check_contract(CHECK_SECURITY);
}
END_TEST

START_TEST(a_request_body_is_declared_exactly_for_the_routes_that_take_json) {
    check_contract(CHECK_BODY);
}
END_TEST

START_TEST(the_embedded_contract_is_a_nul_terminated_openapi_3_1_document) {
    ck_assert_uint_gt(METASERVE_OPENAPI_LEN, 0);
    ck_assert_int_eq(METASERVE_OPENAPI[METASERVE_OPENAPI_LEN], '\0');
    ck_assert_uint_eq(strlen(METASERVE_OPENAPI), METASERVE_OPENAPI_LEN); // no NUL inside
    ck_assert_int_eq(strncmp(METASERVE_OPENAPI, "openapi: 3.1.", 13), 0);
}
END_TEST

START_TEST(the_embedded_contract_equals_api_openapi_yaml_on_disk) {
    const char *src = getenv("METASERVE_SRC");
    ck_assert_msg(src && *src, "METASERVE_SRC (the source tree) is not set; run through ctest");
    char path[4096];
    snprintf(path, sizeof path, "%s/api/openapi.yaml", src);
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    size_t cap = METASERVE_OPENAPI_LEN + 2, n = 0; // one spare byte shows a longer file
    char *disk = malloc(cap);
    ck_assert_ptr_nonnull(disk);
    for (size_t k; n < cap && (k = fread(disk + n, 1, cap - n, f)) > 0;)
        n += k;
    fclose(f);
    size_t at = 0, line = 1;
    while (at < n && at < METASERVE_OPENAPI_LEN && disk[at] == METASERVE_OPENAPI[at])
        line += disk[at++] == '\n';
    int same = n == METASERVE_OPENAPI_LEN && at == n;
    free(disk);
    ck_assert_msg(same,
                  "%s differs from the embedded copy at byte %zu (line %zu; %zu%s bytes on disk, "
                  "%zu embedded): rebuild so that the spec is embedded again",
                  path, at, line, n, n == cap ? "+" : "", METASERVE_OPENAPI_LEN);
}
END_TEST

// The job body's `iterations` maximum is the server's own limit (train_limits_default): a value
// the contract allows is never refused for size, and one past it is the 422 the contract names.
START_TEST(the_iterations_maximum_is_the_servers_limit) {
    // the request body TrainingConfig (components/requestBodies), whose properties sit 14 deep
    const char *at =
        strstr(METASERVE_OPENAPI, "\n              iterations:\n                type: integer\n");
    ck_assert_msg(at != NULL, "no iterations property in the job config request body");
    const char *max = strstr(at, "\n                maximum: ");
    const char *next = strstr(at + 1, "\n              "); // the next property at the same depth
    while (next && next[15] == ' ')
        next = strstr(next + 1, "\n              ");
    ck_assert_msg(max && (!next || max < next), "iterations declares no maximum");
    TrainLimits lim;
    train_limits_default(&lim);
    ck_assert_int_eq(atol(max + 26), lim.max_iterations);
}
END_TEST

static Suite *spec_suite(void) {
    Suite *s = suite_create("spec");
    TCase *tc = tcase_create("reader");
    tcase_add_test(tc, reader_finds_each_operation_with_its_security_and_body);
    tcase_add_test(tc, a_spec_equal_to_its_route_table_has_no_problems);
    tcase_add_test(tc, a_route_only_in_the_table_is_reported);
    tcase_add_test(tc, an_operation_only_in_the_spec_is_reported);
    tcase_add_test(tc, a_role_or_a_body_that_differs_is_reported);
    tcase_add_test(tc, a_layout_the_reader_does_not_know_is_reported);
    suite_add_tcase(s, tc);
    tc = tcase_create("contract");
    tcase_add_test(tc, the_contract_declares_exactly_the_routes_of_the_table);
    tcase_add_test(tc, each_operation_declares_the_least_role_of_its_route);
    tcase_add_test(tc, a_request_body_is_declared_exactly_for_the_routes_that_take_json);
    tcase_add_test(tc, the_embedded_contract_is_a_nul_terminated_openapi_3_1_document);
    tcase_add_test(tc, the_embedded_contract_equals_api_openapi_yaml_on_disk);
    tcase_add_test(tc, the_iterations_maximum_is_the_servers_limit);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) {
    SRunner *sr = srunner_create(spec_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
