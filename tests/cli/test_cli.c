/*
 * The metaserve binary from outside: runs `metaserve train | eval | metagrad` as a child process
 * (path in METASERVE_BIN) and checks exit codes, stderr and the JSON it prints. Links only
 * ms_core and Check, so JSON output is read with the tiny scanners below (they rely on the
 * unformatted one-line output of the commands, whose key order is fixed by the codec).
 *
 * The central check is metagrad against central finite differences of its own query loss: for a
 * direction u, (L_q(theta + h u) - L_q(theta - h u)) / 2h must equal <meta_grad, u> to 1e-6
 * relative, with h = 1e-5. In double precision with tanh (smooth everywhere) the truncation error
 * is O(h^2) = 1e-10 times a third-derivative scale, and round-off is ~1e-16 / 1e-5 = 1e-11
 * relative (losses are printed with 17 digits, so they reach us exactly); the errors observed are
 * 1e-11..3e-8, far below the tolerance, while a meta-gradient without its second-order term
 * (FOMAML) misses by ~0.5 relative at these points. Perturbed inputs are printed with "%.17g", so
 * the binary sees theta +- h u exactly as computed here.
 *
 * Training checks use tiny configs (hundreds of iterations of a 1-40-40-1 net, well under a
 * second each) so the suite stays within a few seconds.
 */
#include <check.h>
#include <dirent.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "metaserve/core/rng.h"

#define H_FD     1e-5 // finite-difference step
#define TOL_FD   1e-6 // relative tolerance of <meta_grad, u> against the central difference
#define MAX_P    256  // parameters of the test networks
#define MAX_ROWS 16   // support or query rows of the test tasks

/* ---- running the binary ---- */

static char g_dir[64]; // per-test scratch directory

typedef struct {
    int code;  // exit status, or -1 when the child did not exit normally
    char *out; // stdout, NUL-terminated (caller frees)
    char *err; // stderr, NUL-terminated (caller frees)
} Run;

static char *slurp(FILE *f) {
    size_t cap = 1 << 16, n = 0;
    char *s = malloc(cap);
    ck_assert_ptr_nonnull(s);
    size_t got;
    while ((got = fread(s + n, 1, cap - n - 1, f)) > 0) {
        n += got;
        if (n + 1 == cap) {
            cap *= 2;
            s = realloc(s, cap);
            ck_assert_ptr_nonnull(s);
        }
    }
    s[n] = '\0';
    return s;
}

static void make_dir(void) {
    strcpy(g_dir, "/tmp/metaserve_cli_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(g_dir));
}

static void remove_dir(void) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    ck_assert_int_eq(system(cmd), 0);
}

// Runs `$METASERVE_BIN <args>` (args formatted; a shell command line) and captures its output.
static Run run(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static Run run(const char *fmt, ...) {
    const char *bin = getenv("METASERVE_BIN");
    ck_assert_msg(bin != NULL, "METASERVE_BIN is not set");
    ck_assert_msg(strchr(bin, '\'') == NULL, "METASERVE_BIN contains a quote");
    char args[2048], cmd[4096], errpath[128];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    snprintf(errpath, sizeof errpath, "%s/stderr.txt", g_dir);
    snprintf(cmd, sizeof cmd, "'%s' %s 2>'%s'", bin, args, errpath);
    FILE *p = popen(cmd, "r");
    ck_assert_ptr_nonnull(p);
    Run r;
    r.out = slurp(p);
    int status = pclose(p);
    r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    FILE *e = fopen(errpath, "r");
    ck_assert_ptr_nonnull(e);
    r.err = slurp(e);
    fclose(e);
    return r;
}

static void run_free(Run *r) {
    free(r->out);
    free(r->err);
}

// Writes text to g_dir/name and returns the path (static buffer, valid until the next call).
static const char *put_file(const char *name, const char *text) {
    static char path[128];
    snprintf(path, sizeof path, "%s/%s", g_dir, name);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(fputs(text, f) >= 0, 1);
    ck_assert_int_eq(fclose(f), 0);
    return path;
}

/* ---- reading the JSON output ---- */

// Collects, in order, every number in the value of "key" (a number, or nested arrays of numbers)
// into out (at most max). Returns the count, -1 when the value is null, -2 when key is absent.
static int json_numbers(const char *json, const char *key, double *out, int max) {
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *p = strstr(json, pat);
    if (!p) return -2;
    p += strlen(pat);
    if (strncmp(p, "null", 4) == 0) return -1;
    int depth = 0, n = 0;
    do {
        if (*p == '[' || *p == '{')
            depth++, p++;
        else if (*p == ']' || *p == '}')
            depth--, p++;
        else if (*p == '-' || (*p >= '0' && *p <= '9')) {
            char *end;
            double v = strtod(p, &end);
            if (n < max) out[n] = v;
            n++;
            p = end;
        } else if (*p == '\0')
            return -3;
        else
            p++;
    } while (depth > 0);
    return n;
}

static double json_number(const char *json, const char *key) {
    double v = NAN;
    ck_assert_msg(json_numbers(json, key, &v, 1) == 1, "no number \"%s\" in %.200s", key, json);
    return v;
}

/* ---- metagrad inputs ---- */

typedef struct {
    int sizes[4], n_sizes;
    const char *act, *loss, *algo;
    int steps, ns, nq;
    double alpha;
    size_t P;
    double theta[MAX_P], lrs[MAX_P];                                       // mlp.h layout
    double xs[MAX_ROWS * 2], ys[MAX_ROWS], xq[MAX_ROWS * 2], yq[MAX_ROWS]; // D <= 2, one y col
} Case;

static void case_init(Case *c, const int *sizes, int n_sizes, const char *loss, const char *algo,
                      uint64_t seed) {
    memset(c, 0, sizeof *c);
    memcpy(c->sizes, sizes, (size_t)n_sizes * sizeof(int));
    c->n_sizes = n_sizes;
    c->act = "tanh";
    c->loss = loss;
    c->algo = algo;
    c->steps = 2;
    c->ns = 5;
    c->nq = 5;
    c->alpha = 0.1;
    Rng r;
    rng_seed(&r, seed);
    for (int l = 0; l + 1 < n_sizes; l++)
        c->P += (size_t)sizes[l] * sizes[l + 1] + sizes[l + 1];
    ck_assert_uint_le(c->P, MAX_P);
    for (size_t i = 0; i < c->P; i++) {
        c->theta[i] = rng_range(&r, -0.8, 0.8);
        c->lrs[i] = rng_range(&r, 0.05, 0.15); // positive rates: a stable inner loop
    }
    const int D = sizes[0], O = sizes[n_sizes - 1];
    for (int i = 0; i < c->ns * D; i++)
        c->xs[i] = rng_range(&r, -2, 2);
    for (int i = 0; i < c->nq * D; i++)
        c->xq[i] = rng_range(&r, -2, 2);
    int ce = strcmp(loss, "ce") == 0;
    ck_assert(ce || O == 1);
    for (int i = 0; i < c->ns; i++)
        c->ys[i] = ce ? (double)rng_below(&r, (uint64_t)O) : rng_range(&r, -1, 1);
    for (int i = 0; i < c->nq; i++)
        c->yq[i] = ce ? (double)rng_below(&r, (uint64_t)O) : rng_range(&r, -1, 1);
}

static void print_layers(FILE *f, const Case *c, const double *x) {
    size_t off = 0;
    fputc('[', f);
    for (int l = 0; l + 1 < c->n_sizes; l++) {
        int in = c->sizes[l], out = c->sizes[l + 1];
        fprintf(f, "%s{\"W\":[", l ? "," : "");
        for (int o = 0; o < out; o++) {
            fprintf(f, "%s[", o ? "," : "");
            for (int i = 0; i < in; i++)
                fprintf(f, "%s%.17g", i ? "," : "", x[off++]);
            fputc(']', f);
        }
        fprintf(f, "],\"b\":[");
        for (int o = 0; o < out; o++)
            fprintf(f, "%s%.17g", o ? "," : "", x[off++]);
        fprintf(f, "]}");
    }
    fputc(']', f);
}

static void print_rows(FILE *f, const double *x, int rows, int cols, int as_int) {
    fputc('[', f);
    for (int r = 0; r < rows; r++) {
        fprintf(f, "%s[", r ? "," : "");
        for (int j = 0; j < cols; j++) {
            if (as_int)
                fprintf(f, "%s%d", j ? "," : "", (int)x[r * cols + j]);
            else
                fprintf(f, "%s%.17g", j ? "," : "", x[r * cols + j]);
        }
        fputc(']', f);
    }
    fputc(']', f);
}

// The metagrad input for c with parameters theta and rates lrs (malloc'd string).
static char *case_json(const Case *c, const double *theta, const double *lrs) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    ck_assert_ptr_nonnull(f);
    int D = c->sizes[0], ce = strcmp(c->loss, "ce") == 0;
    fprintf(f, "{\"sizes\":[");
    for (int i = 0; i < c->n_sizes; i++)
        fprintf(f, "%s%d", i ? "," : "", c->sizes[i]);
    fprintf(f, "],\"activation\":\"%s\",\"loss\":\"%s\",\"algo\":\"%s\",\"steps\":%d,", c->act,
            c->loss, c->algo, c->steps);
    fprintf(f, "\"alpha\":%.17g,\"weights\":", c->alpha);
    print_layers(f, c, theta);
    if (strcmp(c->algo, "metasgd") == 0) {
        fprintf(f, ",\"lrs\":");
        print_layers(f, c, lrs);
    }
    fprintf(f, ",\"support_x\":");
    print_rows(f, c->xs, c->ns, D, 0);
    fprintf(f, ",\"support_y\":");
    print_rows(f, c->ys, c->ns, 1, ce);
    fprintf(f, ",\"query_x\":");
    print_rows(f, c->xq, c->nq, D, 0);
    fprintf(f, ",\"query_y\":");
    print_rows(f, c->yq, c->nq, 1, ce);
    fprintf(f, "}\n");
    ck_assert_int_eq(fclose(f), 0);
    return buf;
}

// Runs metagrad on (theta, lrs); returns the output (caller frees) after checking exit 0.
static char *metagrad(const Case *c, const double *theta, const double *lrs) {
    char *json = case_json(c, theta, lrs);
    const char *path = put_file("mg.json", json);
    free(json);
    Run r = run("metagrad '%s'", path);
    ck_assert_msg(r.code == 0, "metagrad exited %d: %s", r.code, r.err);
    free(r.err);
    return r.out;
}

// Checks <grad, u> against central differences of the query loss along 3 random directions u,
// perturbing theta (which_lrs = 0) or the Meta-SGD rates (which_lrs = 1).
static void check_fd(const Case *c, const double *grad, int which_lrs, uint64_t seed) {
    Rng r;
    rng_seed(&r, seed);
    double gnorm = 0;
    for (size_t i = 0; i < c->P; i++)
        gnorm += grad[i] * grad[i];
    gnorm = sqrt(gnorm);
    ck_assert_msg(gnorm > 1e-6, "%s: the gradient is ~0, the check would be vacuous", c->algo);
    for (int d = 0; d < 3; d++) {
        double u[MAX_P], plus[MAX_P], minus[MAX_P], unorm = 0, gu = 0;
        const double *base = which_lrs ? c->lrs : c->theta;
        for (size_t i = 0; i < c->P; i++) {
            u[i] = rng_normal(&r);
            unorm += u[i] * u[i];
            gu += grad[i] * u[i];
            plus[i] = base[i] + H_FD * u[i];
            minus[i] = base[i] - H_FD * u[i];
        }
        unorm = sqrt(unorm);
        char *op = which_lrs ? metagrad(c, c->theta, plus) : metagrad(c, plus, c->lrs);
        char *om = which_lrs ? metagrad(c, c->theta, minus) : metagrad(c, minus, c->lrs);
        double fd = (json_number(op, "query_loss") - json_number(om, "query_loss")) / (2 * H_FD);
        free(op);
        free(om);
        // Relative to |<g,u>|, floored at 1e-3 |g||u| so that a direction nearly orthogonal to
        // g (where the relative error is meaningless) cannot fail or pass the check by itself.
        double scale = fmax(fabs(gu), 1e-3 * gnorm * unorm);
        double rel = fabs(fd - gu) / scale;
        ck_assert_msg(rel <= TOL_FD, "%s %s %s direction %d: <g,u> = %.12g, fd = %.12g, rel %.3g",
                      c->algo, c->loss, which_lrs ? "lrs" : "theta", d, gu, fd, rel);
    }
}

// Runs c, checks the output's shape, then its meta-gradient(s) against finite differences.
static void check_case(const Case *c, uint64_t seed) {
    char *out = metagrad(c, c->theta, c->lrs);
    double g[MAX_P], glr[MAX_P], sl[8];
    ck_assert_int_eq(json_numbers(out, "meta_grad", g, MAX_P), (int)c->P);
    ck_assert_int_eq(json_numbers(out, "adapted_weights", glr, MAX_P), (int)c->P);
    ck_assert_int_eq(json_numbers(out, "support_losses", sl, 8), c->steps + 1);
    int metasgd = strcmp(c->algo, "metasgd") == 0;
    ck_assert_int_eq(json_numbers(out, "meta_grad_lrs", glr, MAX_P), metasgd ? (int)c->P : -1);
    // an inner loop that learns: the support loss after K steps is below the initial one
    ck_assert_double_lt(sl[c->steps], sl[0]);
    free(out);
    check_fd(c, g, 0, seed);
    if (metasgd) check_fd(c, glr, 1, seed + 1);
}

START_TEST(metagrad_matches_finite_differences_of_its_own_query_loss) {
    make_dir();
    Case c;
    case_init(&c, (int[]){1, 8, 8, 1}, 4, "mse", "maml", 11);
    check_case(&c, 101);
    case_init(&c, (int[]){1, 8, 8, 1}, 4, "mse", "anil", 12);
    check_case(&c, 102);
    case_init(&c, (int[]){2, 8, 3}, 3, "ce", "maml", 13);
    check_case(&c, 103);
    case_init(&c, (int[]){1, 8, 8, 1}, 4, "mse", "metasgd", 14);
    check_case(&c, 104);
    remove_dir();
}
END_TEST

START_TEST(metagrad_with_zero_steps_returns_its_input_and_the_initial_losses) {
    // steps 0: theta_K = theta_0, so adapted_weights must reproduce the input bit for bit (it is
    // printed with 17 digits), and L_q(theta_K) = L_q(theta_0).
    make_dir();
    Case c;
    case_init(&c, (int[]){1, 8, 8, 1}, 4, "mse", "maml", 21);
    char *k2 = metagrad(&c, c.theta, c.lrs);
    c.steps = 0;
    char *k0 = metagrad(&c, c.theta, c.lrs);
    double w[MAX_P], sl2[4], sl0[4];
    ck_assert_int_eq(json_numbers(k0, "adapted_weights", w, MAX_P), (int)c.P);
    for (size_t i = 0; i < c.P; i++)
        ck_assert_msg(w[i] == c.theta[i], "adapted_weights[%zu] %.17g != %.17g", i, w[i],
                      c.theta[i]);
    ck_assert_double_eq(json_number(k0, "query_loss"), json_number(k0, "query_loss_initial"));
    ck_assert_double_eq(json_number(k0, "query_loss"), json_number(k2, "query_loss_initial"));
    ck_assert_int_eq(json_numbers(k2, "support_losses", sl2, 4), 3);
    ck_assert_int_eq(json_numbers(k0, "support_losses", sl0, 4), 1);
    // L_s(theta_0) from the inner loop (forward_loss) and from a plain forward: same value up to
    // summation order (1e-12 relative)
    ck_assert_double_le(fabs(sl2[0] - sl0[0]), 1e-12 * fabs(sl0[0]));
    free(k0);
    free(k2);
    remove_dir();
}
END_TEST

START_TEST(metagrad_agrees_with_an_independent_reference_on_the_example) {
    // tests/cli/data/metagrad_sine.json: a 1-4-1 tanh net, 3 MAML steps of alpha 0.1 on 5 points
    // of 1.5 sin(x - 0.3). The reference values come from a separate float64 implementation
    // (hand-written backprop for the inner loop; the meta-gradient by Richardson-extrapolated
    // central differences, accurate to ~1e-11). Losses must agree to 1e-12 relative (the two
    // differ only in summation order), the meta-gradient to 1e-9 absolute (|g| ~ 1e-3..1e-1).
    static const double LOSSES[] = {0.38834806861793875, 0.06273749539082565};
    static const double SUPPORT[] = {0.3007231917512593, 0.13801836298517084, 0.08942628134067755,
                                     0.0732283333719663};
    static const double GRAD[] = {
        0.0208953443309, 0.0105582279016,  0.027201784514,   0.0288152113679, -0.0566910652981,
        -0.028642304593, -0.0380111053571, -0.0912229265242, 0.0450270653283, 0.00087881617415,
        0.0141634874239, 0.0447542437808,  0.0307192288053};
    const char *src = getenv("METASERVE_SRC");
    ck_assert_msg(src != NULL && strchr(src, '\'') == NULL, "METASERVE_SRC is not usable");
    make_dir();
    Run r = run("metagrad '%s/tests/cli/data/metagrad_sine.json'", src);
    ck_assert_msg(r.code == 0, "metagrad exited %d: %s", r.code, r.err);
    double sl[8], g[32];
    ck_assert_double_le(fabs(json_number(r.out, "query_loss_initial") - LOSSES[0]),
                        1e-12 * LOSSES[0]);
    ck_assert_double_le(fabs(json_number(r.out, "query_loss") - LOSSES[1]), 1e-12 * LOSSES[1]);
    ck_assert_int_eq(json_numbers(r.out, "support_losses", sl, 8), 4);
    for (int i = 0; i < 4; i++)
        ck_assert_double_le(fabs(sl[i] - SUPPORT[i]), 1e-12 * SUPPORT[i]);
    ck_assert_int_eq(json_numbers(r.out, "meta_grad", g, 32), 13);
    for (int i = 0; i < 13; i++)
        ck_assert_msg(fabs(g[i] - GRAD[i]) <= 1e-9, "meta_grad[%d] = %.17g, reference %.12g", i,
                      g[i], GRAD[i]);
    ck_assert_int_eq(json_numbers(r.out, "meta_grad_lrs", g, 32), -1);
    run_free(&r);
    remove_dir();
}
END_TEST

/* ---- metagrad input validation ---- */

#define MG_NET "\"sizes\":[1,2,1],\"activation\":\"tanh\",\"loss\":\"mse\""
#define MG_W   "\"weights\":[{\"W\":[[0.1],[0.2]],\"b\":[0,0]},{\"W\":[[0.3,0.4]],\"b\":[0]}]"
#define MG_DATA                                                                                    \
    "\"support_x\":[[1],[2]],\"support_y\":[[0.5],[0.1]],\"query_x\":[[1.5]],\"query_y\":[[0.2]]"
#define MG_RUN "\"alpha\":0.1,\"steps\":1,\"algo\":\"maml\""

START_TEST(metagrad_rejects_malformed_input) {
    make_dir();
    static const char *const GOOD = "{" MG_NET "," MG_W "," MG_DATA "," MG_RUN "}";
    Run r = run("metagrad '%s'", put_file("good.json", GOOD));
    ck_assert_msg(r.code == 0, "the base input must be valid: %s", r.err);
    run_free(&r);
    r = run("metagrad - < '%s'", put_file("good.json", GOOD));
    ck_assert_msg(r.code == 0, "stdin input: %s", r.err);
    run_free(&r);

    static const struct {
        const char *json, *needle;
    } BAD[] = {
        {"", "byte offset 0"},
        {"{" MG_NET "," MG_W, "invalid JSON at byte offset"},
        {"{" MG_NET "," MG_W "," MG_DATA "," MG_RUN "} x", "unexpected data"},
        {"[1, 2]", "must be a JSON object"},
        {"{" MG_NET "," MG_DATA "," MG_RUN "}", "weights: required"},
        {"{" MG_NET "," MG_W "," MG_DATA "," MG_RUN ",\"bogus\":1}", "bogus: unknown field"},
        {"{" MG_NET "," MG_W "," MG_DATA "," MG_RUN ",\"steps\":2}", "steps: duplicate"},
        {"{\"sizes\":[1,0,1],\"activation\":\"tanh\",\"loss\":\"mse\"," MG_W "," MG_DATA "," MG_RUN
         "}",
         "sizes[1]"},
        {"{\"sizes\":[1,2,1],\"activation\":\"gelu\",\"loss\":\"mse\"," MG_W "," MG_DATA "," MG_RUN
         "}",
         "activation"},
        {"{\"sizes\":[1,2,1],\"activation\":\"tanh\",\"loss\":\"l1\"," MG_W "," MG_DATA "," MG_RUN
         "}",
         "loss"},
        {"{" MG_NET ",\"weights\":[{\"W\":[[0.1],[0.2]],\"b\":[0,0]}]," MG_DATA "," MG_RUN "}",
         "weights: expected 2 layers"},
        {"{" MG_NET ",\"weights\":[{\"W\":[[0.1,1],[0.2]],\"b\":[0,0]},{\"W\":[[0.3,0.4]],\"b\":"
         "[0]}]," MG_DATA "," MG_RUN "}",
         "weights[0].W[0]: expected 1 numbers"},
        {"{" MG_NET ",\"weights\":[{\"W\":[[0.1],[0.2]],\"b\":[1e999,0]},{\"W\":[[0.3,0.4]],"
         "\"b\":[0]}]," MG_DATA "," MG_RUN "}",
         "weights[0].b[0]: must be a finite number"},
        {"{" MG_NET ",\"weights\":[{\"W\":[[0.1],[0.2]],\"b\":[\"0\",0]},{\"W\":[[0.3,0.4]],"
         "\"b\":[0]}]," MG_DATA "," MG_RUN "}",
         "weights[0].b[0]"},
        {"{" MG_NET "," MG_W ",\"support_x\":[[1],[2]],\"support_y\":[[0.5]],\"query_x\":[[1]],"
         "\"query_y\":[[0.2]]," MG_RUN "}",
         "support_y: expected 2 rows"},
        {"{" MG_NET "," MG_W ",\"support_x\":[],\"support_y\":[],\"query_x\":[[1]],"
         "\"query_y\":[[0.2]]," MG_RUN "}",
         "support_x"},
        {"{" MG_NET "," MG_W "," MG_DATA ",\"alpha\":0.1,\"steps\":101,\"algo\":\"maml\"}",
         "steps: must be an integer in 0..100"},
        {"{" MG_NET "," MG_W "," MG_DATA ",\"alpha\":0.1,\"steps\":1.5,\"algo\":\"maml\"}",
         "steps"},
        {"{" MG_NET "," MG_W "," MG_DATA ",\"alpha\":-1,\"steps\":1,\"algo\":\"maml\"}", "alpha"},
        {"{" MG_NET "," MG_W "," MG_DATA ",\"steps\":1,\"algo\":\"maml\"}", "alpha"},
        {"{" MG_NET "," MG_W "," MG_DATA ",\"alpha\":0.1,\"steps\":1,\"algo\":\"reptile\"}",
         "algo"},
        {"{" MG_NET "," MG_W "," MG_DATA "," MG_RUN ",\"lrs\":[]}", "lrs: only allowed"},
        {"{" MG_NET "," MG_W "," MG_DATA ",\"alpha\":0.1,\"steps\":1,\"algo\":\"metasgd\"}",
         "lrs: required"},
        {"{\"sizes\":[1,2,2],\"activation\":\"tanh\",\"loss\":\"ce\",\"weights\":[{\"W\":[[0.1],"
         "[0.2]],\"b\":[0,0]},{\"W\":[[0.3,0.4],[0.5,0.6]],\"b\":[0,0]}],\"support_x\":[[1]],"
         "\"support_y\":[[2]],\"query_x\":[[1]],\"query_y\":[[0]]," MG_RUN "}",
         "support_y[0][0]: must be a class index in 0..1"},
    };
    for (size_t i = 0; i < sizeof BAD / sizeof BAD[0]; i++) {
        r = run("metagrad '%s'", put_file("bad.json", BAD[i].json));
        ck_assert_msg(r.code == 2, "case %zu: exit %d, want 2 (stderr: %s)", i, r.code, r.err);
        ck_assert_msg(strncmp(r.err, "metagrad: ", 10) == 0 && strstr(r.err, BAD[i].needle),
                      "case %zu: stderr lacks '%s': %s", i, BAD[i].needle, r.err);
        ck_assert_msg(r.out[0] == '\0', "case %zu: printed a result: %.100s", i, r.out);
        run_free(&r);
    }
    r = run("metagrad '%s/missing.json'", g_dir);
    ck_assert_int_eq(r.code, 2);
    ck_assert_ptr_nonnull(strstr(r.err, "missing.json"));
    run_free(&r);
    r = run("metagrad");
    ck_assert_int_eq(r.code, 2);
    run_free(&r);
    remove_dir();
}
END_TEST

/* ---- train and eval ---- */

// A sinusoid config small enough for a test: seed and iterations vary.
static const char *sine_config(const char *name, int iterations, int seed) {
    static char buf[1024];
    snprintf(buf, sizeof buf,
             "{\"name\": \"%s\",\n"
             " \"architecture\": {\"sizes\": [1, 40, 40, 1], \"activation\": \"relu\", "
             "\"head\": \"regression\"},\n"
             " \"algorithm\": \"maml\", \"inner\": {\"lr\": 0.01, \"steps\": 1},\n"
             " \"outer\": {\"optimizer\": \"adam\", \"lr\": 0.001, \"clip_norm\": null},\n"
             " \"meta_batch\": 10, \"iterations\": %d, \"seed\": %d,\n"
             " \"tasks\": {\"family\": \"sinusoid\", \"k_support\": 10, \"k_query\": 10}}\n",
             name, iterations, seed);
    return buf;
}

static char *read_all(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *s = slurp(f);
    fclose(f);
    return s;
}

START_TEST(train_then_eval_beats_unadapted_on_sinusoid) {
    make_dir();
    const char *cfg = put_file("sine.json", sine_config("sine-test", 300, 3));
    Run r = run("train --quiet --config '%s' --out '%s/model.json'", cfg, g_dir);
    ck_assert_msg(r.code == 0, "train exited %d: %s", r.code, r.err);
    ck_assert_msg(r.err[0] == '\0', "--quiet printed progress: %s", r.err);
    ck_assert_double_eq(json_number(r.out, "iterations"), 300);
    ck_assert(isfinite(json_number(r.out, "meta_loss")));
    run_free(&r);

    r = run("eval --model '%s/model.json' --tasks 200 --k 10 --steps 1,10 --seed 7", g_dir);
    ck_assert_msg(r.code == 0, "eval exited %d: %s", r.code, r.err);
    ck_assert_ptr_nonnull(strstr(r.out, "\"model\":\"sine-test\""));
    ck_assert_ptr_nonnull(strstr(r.out, "\"metric\":\"mse\""));
    int n = 0;
    for (const char *p = strstr(r.out, "{\"k\":"); p; p = strstr(p + 1, "{\"k\":"), n++) {
        int k, steps;
        double mean, ci95, before;
        ck_assert_int_eq(sscanf(p,
                                "{\"k\":%d,\"steps\":%d,\"mean\":%lf,\"ci95\":%lf,"
                                "\"mean_before\":%lf}",
                                &k, &steps, &mean, &ci95, &before),
                         5);
        ck_assert_int_eq(k, 10);
        ck_assert_int_eq(steps, n == 0 ? 1 : 10);
        // Both cells score the same 200 tasks (same seed), so the comparison is paired; the
        // unadapted MSE of a sinusoid of amplitude U[0.1, 5) is ~3, adaptation must lower it.
        ck_assert_msg(mean < before, "steps %d: mean %g is not below mean_before %g", steps, mean,
                      before);
        ck_assert(ci95 > 0 && ci95 < before);
    }
    ck_assert_int_eq(n, 2);
    run_free(&r);
    remove_dir();
}
END_TEST

START_TEST(train_progress_is_a_line_every_twentieth_off_a_terminal) {
    make_dir();
    const char *cfg = put_file("sine.json", sine_config("sine-lines", 200, 3));
    Run r = run("train --config '%s' --out '%s/model.json'", cfg, g_dir); // stderr: a file
    ck_assert_msg(r.code == 0, "train exited %d: %s", r.code, r.err);
    ck_assert_msg(!strchr(r.err, '\r') && !strchr(r.err, '\033'), "terminal codes: %s", r.err);
    // exactly the 20 lines "train: iteration <10k>/200 meta_loss <finite> tasks/s <integer>"
    int lines = 0;
    for (char *line = strtok(r.err, "\n"); line; line = strtok(NULL, "\n"), lines++) {
        long it = -1, total = -1, tps = -1;
        double loss = NAN;
        int used = 0;
        int got = sscanf(line, "train: iteration %ld/%ld meta_loss %lf tasks/s %ld%n", &it, &total,
                         &loss, &tps, &used);
        ck_assert_msg(got == 4 && line[used] == '\0', "line %d: '%s'", lines, line);
        ck_assert_int_eq(it, 10L * (lines + 1));
        ck_assert_int_eq(total, 200);
        ck_assert(isfinite(loss) && tps >= 0);
    }
    ck_assert_int_eq(lines, 20);
    run_free(&r);
    remove_dir();
}
END_TEST

START_TEST(train_draws_a_progress_bar_on_a_terminal) {
    // script(1) (util-linux) runs the command on a pseudo-terminal and copies what it prints
    make_dir();
    const char *cfg = put_file("sine.json", sine_config("sine-bar", 200, 3));
    const char *bin = getenv("METASERVE_BIN");
    char cmd[1024], out[128];
    snprintf(out, sizeof out, "%s/tty.txt", g_dir);
    snprintf(cmd, sizeof cmd,
             "script -qfec \"'%s' train --config '%s' --out '%s/model.json'\" /dev/null >'%s'", bin,
             cfg, g_dir, out);
    ck_assert_int_eq(system(cmd), 0);
    char *tty = read_all(out);
    ck_assert_ptr_nonnull(tty);
    // the line redrawn in place, ending at 100% with a newline; no per-interval lines
    ck_assert_msg(strstr(tty, "\rtrain [") != NULL, "no bar: %.300s", tty);
    const char *last = strstr(tty, "\rtrain [########################] 100% 200/200 meta_loss ");
    ck_assert_msg(last != NULL, "no final bar: %.600s", tty);
    ck_assert_msg(strstr(last, " eta 0s\033[K\r\n") != NULL, "final bar: %.200s", last);
    ck_assert_msg(strstr(tty, "train: iteration") == NULL, "interval lines on a terminal");
    free(tty);
    remove_dir();
}
END_TEST

START_TEST(train_rejects_bad_config_naming_the_field) {
    make_dir();
    static const struct {
        const char *json, *needle;
    } BAD[] = {
        {"{\"iterations\": 5, \"inner\": {\"steps\": 101}}", "inner.steps"},
        {"{\"iterations\": 5, \"inner\": {\"lr\": \"0.1\"}}", "inner.lr"},
        {"{\"iterations\": 5, \"architecture\": {\"sizes\": [1, 0, 1]}}", "architecture.sizes[1]"},
        {"{\"iterations\": 5, \"architecture\": {\"sizes\": [2, 40, 1]}}", "architecture.sizes[0]"},
        {"{\"iterations\": 5, \"architecture\": {\"activation\": \"gelu\"}}",
         "architecture.activation"},
        {"{\"iterations\": 5, \"bogus\": 1}", "bogus: unknown field"},
        {"{\"iterations\": 5, \"tasks\": {\"k_shot\": 1}}", "tasks.k_shot: unknown field"},
        {"{\"iterations\": 5, \"seed\": 1, \"seed\": 2}", "seed: duplicate field"},
        {"{\"iterations\": 5, \"outer\": {\"optimizer\": \"rmsprop\"}}", "outer.optimizer"},
        {"{\"iterations\": 5, \"outer\": {\"lr\": 1e999}}", "outer.lr"},
        {"{\"iterations\": 5, \"outer\": {\"clip_norm\": -1}}", "outer.clip_norm"},
        {"{\"iterations\": 5, \"tasks\": {\"k_support\": 0}}", "tasks.k_support"},
        {"{\"iterations\": 5, \"tasks\": {\"family\": \"omniglot\"}}", "tasks.family"},
        {"{\"iterations\": 5, \"algorithm\": \"magic\"}", "algorithm"},
        {"{\"iterations\": 5, \"seed\": -1}", "seed"},
        {"{\"iterations\": 2.5}", "iterations"},
        {"{\"iterations\": 5, \"meta_batch\": 0}", "meta_batch"},
        {"{\"iterations\": 5, \"name\": \"a/b\"}", "name"},
        {"{\"iterations\": 5, \"name\": \"x\",}", "byte offset 30"},
        {"[]", "must be a JSON object"},
    };
    for (size_t i = 0; i < sizeof BAD / sizeof BAD[0]; i++) {
        const char *cfg = put_file("bad.json", BAD[i].json);
        Run r = run("train --quiet --config '%s' --out '%s/model.json'", cfg, g_dir);
        ck_assert_msg(r.code == 2, "case %zu: exit %d, want 2 (stderr: %s)", i, r.code, r.err);
        ck_assert_msg(strstr(r.err, BAD[i].needle) != NULL, "case %zu: stderr lacks '%s': %s", i,
                      BAD[i].needle, r.err);
        run_free(&r);
        char path[128];
        snprintf(path, sizeof path, "%s/model.json", g_dir);
        ck_assert_msg(access(path, F_OK) != 0, "case %zu wrote a model", i);
    }
    Run r = run("train --config '%s/none.json' --out '%s/model.json'", g_dir, g_dir);
    ck_assert_int_eq(r.code, 2);
    run_free(&r);
    r = run("train --config");
    ck_assert_int_eq(r.code, 2);
    run_free(&r);
    r = run("frobnicate");
    ck_assert_int_eq(r.code, 2);
    ck_assert_ptr_nonnull(strstr(r.err, "usage"));
    run_free(&r);
    remove_dir();
}
END_TEST

START_TEST(train_is_bit_identical_across_runs) {
    make_dir();
    const char *cfg = put_file("a.json", sine_config("same", 40, 5));
    for (int i = 0; i < 2; i++) {
        Run r = run("train --quiet --config '%s' --out '%s/m%d.json'", cfg, g_dir, i);
        ck_assert_msg(r.code == 0, "run %d: %s", i, r.err);
        run_free(&r);
    }
    cfg = put_file("b.json", sine_config("same", 40, 6));
    Run r = run("train --quiet --config '%s' --out '%s/m2.json'", cfg, g_dir);
    ck_assert_msg(r.code == 0, "%s", r.err);
    run_free(&r);
    char path[3][128];
    char *m[3];
    for (int i = 0; i < 3; i++) {
        snprintf(path[i], sizeof path[i], "%s/m%d.json", g_dir, i);
        m[i] = read_all(path[i]);
        ck_assert_ptr_nonnull(m[i]);
    }
    ck_assert_msg(strcmp(m[0], m[1]) == 0, "same config and seed gave different model files");
    // and the comparison can fail: another seed gives other weights
    ck_assert_msg(strcmp(m[0], m[2]) != 0, "a different seed gave the same model file");
    ck_assert_ptr_nonnull(strstr(m[0], "\"format\":\t\"metaserve.model/1\""));
    for (int i = 0; i < 3; i++)
        free(m[i]);
    remove_dir();
}
END_TEST

START_TEST(train_stops_on_divergence_without_writing_a_model) {
    // inner.lr 10 over 5 steps diverges on the first task: MS_ERR_NUMERIC must end the run with
    // exit 1, a message, and neither the model nor a temporary file left behind.
    make_dir();
    const char *cfg = put_file("div.json", "{\"iterations\": 50, \"meta_batch\": 2, \"inner\": "
                                           "{\"lr\": 10, \"steps\": 5}}");
    Run r = run("train --quiet --config '%s' --out '%s/model.json'", cfg, g_dir);
    ck_assert_msg(r.code == 1, "exit %d, want 1 (stderr: %s)", r.code, r.err);
    ck_assert_ptr_nonnull(strstr(r.err, "no model written"));
    ck_assert_ptr_nonnull(strstr(r.err, "non-finite"));
    ck_assert_str_eq(r.out, "");
    run_free(&r);
    DIR *d = opendir(g_dir);
    ck_assert_ptr_nonnull(d);
    for (struct dirent *e = readdir(d); e; e = readdir(d))
        ck_assert_msg(strncmp(e->d_name, "model.json", 10) != 0, "left behind: %s", e->d_name);
    closedir(d);
    remove_dir();
}
END_TEST

/* ---- the settings table ---- */

// One table (src/http/config.c) makes the README's Configuration table, `serve --help`, the flags,
// the variables and the configuration log line: the README's table is byte-equal to
// `serve --help-markdown`, and every row's variable and flag is parsed (a bad value is refused
// naming it, not as an unknown option), listed by --help and logged.
START_TEST(settings_table_matches_readme_help_flags_and_log) {
    make_dir();
    const char *src = getenv("METASERVE_SRC");
    ck_assert_msg(src != NULL, "METASERVE_SRC is not set");
    char path[512];
    snprintf(path, sizeof path, "%s/README.md", src);
    char *readme = read_all(path);
    ck_assert_ptr_nonnull(readme);
    Run md = run("serve --help-markdown");
    ck_assert_int_eq(md.code, 0);
    char *table = strstr(readme, "| variable | flag | default | meaning |");
    ck_assert_msg(table != NULL, "README.md has no settings table");
    char *end = strstr(table, "\n\n");
    ck_assert_ptr_nonnull(end);
    end[1] = '\0';
    size_t same = 0; // the first difference, shown from the start of its line
    while (table[same] && table[same] == md.out[same])
        same++;
    while (same > 0 && table[same - 1] != '\n')
        same--;
    ck_assert_msg(strcmp(table, md.out) == 0,
                  "README.md's settings table differs from `metaserve serve --help-markdown`: "
                  "README has '%.200s', the table '%.200s'",
                  table + same, md.out + same);
    Run help = run("serve --help");
    ck_assert_int_eq(help.code, 0);
    // a valid configuration whose database cannot open: the configuration is logged, then exit 1
    Run logged = run("serve --port 0 --db '%s/no/such/dir/x.db'", g_dir);
    ck_assert_int_eq(logged.code, 1);
    char *cfg_line = strstr(logged.err, "\"msg\":\"config\"");
    ck_assert_msg(cfg_line != NULL, "no config log line: %s", logged.err);
    char *nl = strchr(cfg_line, '\n');
    if (nl) *nl = '\0';
    char bad[601];
    memset(bad, 'x', 600);
    bad[600] = '\0';
    int rows = 0;
    for (char *line = strchr(md.out, '\n') + 1; (line = strstr(line, "\n| `")) != NULL;) {
        line += 4;
        char env[64] = "", flag[64] = "";
        ck_assert_int_eq(sscanf(line, "%63[A-Z_]` | ", env), 1);
        const char *fl = strstr(line, "` | `--");
        const char *eol = strchr(line, '\n');
        if (fl && (!eol || fl < eol)) ck_assert_int_eq(sscanf(fl + 5, "%63[a-z-]", flag), 1);
        rows++;
        ck_assert_msg(strstr(help.out, env) != NULL, "serve --help lacks %s", env);
        // (run prefixes the binary: its first command is a harmless --help)
        Run e = run("serve --help >/dev/null; env %s='%s' '%s' serve", env, bad,
                    getenv("METASERVE_BIN"));
        ck_assert_msg(e.code == 2 && strstr(e.err, env) != NULL, "%s with a bad value: exit %d, %s",
                      env, e.code, e.err);
        run_free(&e);
        char key[64];
        snprintf(key, sizeof key, "\"%s\":", env + 10);
        for (char *k = key; *k; k++)
            *k = (char)(*k >= 'A' && *k <= 'Z' ? *k + 32 : *k);
        ck_assert_msg(strstr(cfg_line, key) != NULL, "the config log line lacks %s: %s", key,
                      cfg_line);
        if (!flag[0]) continue;
        ck_assert_msg(strstr(help.out, flag) != NULL, "serve --help lacks %s", flag);
        Run f = run("serve %s='%s'", flag, bad);
        ck_assert_msg(f.code == 2 && strstr(f.err, flag) != NULL && !strstr(f.err, "unknown"),
                      "%s with a bad value: exit %d, %s", flag, f.code, f.err);
        run_free(&f);
    }
    ck_assert_int_ge(rows, 20);
    run_free(&md);
    run_free(&help);
    run_free(&logged);
    free(readme);
    remove_dir();
}
END_TEST

static Suite *cli_suite(void) {
    Suite *s = suite_create("cli");
    TCase *tc = tcase_create("cli");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, metagrad_matches_finite_differences_of_its_own_query_loss);
    tcase_add_test(tc, metagrad_with_zero_steps_returns_its_input_and_the_initial_losses);
    tcase_add_test(tc, metagrad_agrees_with_an_independent_reference_on_the_example);
    tcase_add_test(tc, metagrad_rejects_malformed_input);
    tcase_add_test(tc, train_then_eval_beats_unadapted_on_sinusoid);
    tcase_add_test(tc, train_rejects_bad_config_naming_the_field);
    tcase_add_test(tc, train_progress_is_a_line_every_twentieth_off_a_terminal);
    tcase_add_test(tc, train_draws_a_progress_bar_on_a_terminal);
    tcase_add_test(tc, train_is_bit_identical_across_runs);
    tcase_add_test(tc, train_stops_on_divergence_without_writing_a_model);
    tcase_add_test(tc, settings_table_matches_readme_help_flags_and_log);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) {
    SRunner *sr = srunner_create(cli_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
