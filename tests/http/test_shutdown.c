/*
 * SIGTERM with a running job, against the real `metaserve serve` binary (METASERVE_BIN, set by
 * CTest): the process exits 0; a new process on the same database resumes the job from its
 * checkpoint (the iteration continues from where it was, not from 0) and finishes it; and the
 * final weights are bit-identical to those of an uninterrupted run of the same config on a
 * second, fresh database (DESIGN.md §2: resume is bit-identical).
 *
 * Each server listens on an ephemeral loopback port (METASERVE_PORT=0) and logs
 * {"msg":"listening",...,"port":N} on stderr, which a reader thread per process consumes (so the
 * access log can never fill the pipe) and parses for the port.
 *
 * Waits have generous deadlines (30-60 s) only to fail instead of hanging; nothing asserts on
 * durations. The config trains in a few seconds.
 */
#define _GNU_SOURCE
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "httpc.h"
#include "proc.h"
#define TEST_ROOT_NAME "ms_shutdown"
#include "testroot.h"

// Longest wait for a job to finish or make progress, scaled like Check's own timeouts by
// CK_TIMEOUT_MULTIPLIER (scripts/tsan.sh sets it: training is several times slower under TSan).
#define DEADLINE_S (60.0 * deadline_scale())

static double deadline_scale(void) {
    const char *m = getenv("CK_TIMEOUT_MULTIPLIER");
    double v = m ? atof(m) : 1.0;
    return v >= 1.0 ? v : 1.0;
}

// 1-40-40-1 MAML on sinusoids, long enough (a few seconds) to be caught mid-run.
static const char CONFIG[] =
    "{\"name\":\"resume\",\"architecture\":{\"sizes\":[1,40,40,1],\"activation\":\"relu\","
    "\"head\":\"regression\"},\"algorithm\":\"maml\",\"inner\":{\"lr\":0.01,\"steps\":1},"
    "\"outer\":{\"optimizer\":\"adam\",\"lr\":0.001},\"meta_batch\":10,\"iterations\":20000,"
    "\"seed\":11,\"tasks\":{\"family\":\"sinusoid\",\"k_support\":10,\"k_query\":10}}";
#define TOTAL 20000

/* ---- a server process ---- */

// Starts `metaserve serve` on db (1 worker, ephemeral loopback port) and waits for its port.
static void proc_start(Proc *p, const char *db) {
    const char *bin = getenv("METASERVE_BIN");
    ck_assert_msg(bin && *bin, "METASERVE_BIN is not set");
    char db_var[600];
    snprintf(db_var, sizeof db_var, "METASERVE_DB=%s", db);
    const char *vars[] = {db_var,
                          "METASERVE_PORT=0",
                          "METASERVE_LISTEN=127.0.0.1",
                          "METASERVE_WORKERS=1",
                          "METASERVE_HTTP_THREADS=2",
                          "OPENBLAS_NUM_THREADS=1"};
    const char *why = proc_spawn(p, bin, vars, 6);
    ck_assert_msg(why == NULL, "starting %s: %s", bin, why);
    ck_assert_msg(proc_wait_port(p, 30) > 0, "no listening line from %s; stderr:\n%s", bin,
                  p->tail);
}

// Sends SIGTERM and waits (30 s at most) for the process to exit; returns its wait status.
static int proc_term(Proc *p) {
    ck_assert_int_eq(kill(p->pid, SIGTERM), 0);
    int status = 0;
    // killed if still there: the assertion fails the test without leaving the process behind
    ck_assert_msg(proc_wait_exit(p, 30, &status), "no exit within 30 s of SIGTERM; stderr:\n%s",
                  p->tail);
    return status;
}

/* ---- requests ---- */

static void job_get(Proc *p, const char *id, HcResp *r) {
    char path[96];
    snprintf(path, sizeof path, "/v1/jobs/%s", id);
    ck_assert_msg(hc_call(&p->c, r, "GET", path, NULL) == 200, "GET %s: %ld %s", path, r->status,
                  r->body);
}

static void submit(Proc *p, char id[64]) {
    HcResp r;
    ck_assert_msg(hc_call(&p->c, &r, "POST", "/v1/jobs", CONFIG) == 202, "POST /v1/jobs: %ld %s",
                  r.status, r.body);
    const char *jid = hc_str(&r, "id");
    ck_assert_ptr_nonnull(jid);
    snprintf(id, 64, "%s", jid);
    ck_assert_uint_eq(strlen(id), 32);
    hc_free(&r);
}

// Polls until the job succeeds, asserting its iteration never falls below floor; returns the
// final iteration.
static double wait_succeeded(Proc *p, const char *id, double floor) {
    double t0 = now_s();
    for (;;) {
        HcResp r;
        job_get(p, id, &r);
        const char *state = hc_str(&r, "state");
        double it = hc_num(&r, "iteration");
        ck_assert_msg(it >= floor, "iteration %g fell below %g", it, floor);
        floor = it;
        ck_assert_msg(strcmp(state, "failed") && strcmp(state, "cancelled"), "job %s: %s", state,
                      r.body);
        int done = strcmp(state, "succeeded") == 0;
        hc_free(&r);
        if (done) return it;
        ck_assert_msg(now_s() - t0 < DEADLINE_S, "job %s not done after %.0f s", id, DEADLINE_S);
        sleep_ms(50);
    }
}

// The model's weights (GET /v1/models/resume/weights) as floats, in layer order (W then b).
static float *weights(Proc *p, size_t *n) {
    HcResp r;
    ck_assert_int_eq(hc_call(&p->c, &r, "GET", "/v1/models/resume/weights", NULL), 200);
    ck_assert_double_eq(hc_num(&r, "version"), 1);
    const cJSON *layers = cJSON_GetObjectItemCaseSensitive(r.json, "weights");
    ck_assert_int_eq(cJSON_GetArraySize(layers), 3);
    float *out = malloc(1761 * sizeof *out);
    ck_assert_ptr_nonnull(out);
    size_t k = 0;
    for (const cJSON *l = layers->child; l; l = l->next) {
        const cJSON *W = cJSON_GetObjectItemCaseSensitive(l, "W");
        for (const cJSON *row = W->child; row; row = row->next)
            for (const cJSON *v = row->child; v; v = v->next) {
                ck_assert(k < 1761 && cJSON_IsNumber(v));
                out[k++] = (float)v->valuedouble;
            }
        for (const cJSON *v = cJSON_GetObjectItemCaseSensitive(l, "b")->child; v; v = v->next) {
            ck_assert(k < 1761 && cJSON_IsNumber(v));
            out[k++] = (float)v->valuedouble;
        }
    }
    hc_free(&r);
    *n = k;
    return out;
}

START_TEST(sigterm_mid_job_resumes_after_restart_to_bit_identical_weights) {
    char db_a[128], db_b[128], id_a[64], id_b[64];
    const char *dir = test_root;
    snprintf(db_a, sizeof db_a, "%s/interrupted.db", dir);
    snprintf(db_b, sizeof db_b, "%s/reference.db", dir);
    static Proc a, b;
    proc_start(&a, db_a);
    proc_start(&b, db_b);
    submit(&a, id_a);
    submit(&b, id_b); // the uninterrupted reference, trained alongside

    // running, with progress recorded (the iteration is written with each progress report and
    // checkpoint: every second or every 1000 iterations)
    double it0 = 0, t0 = now_s();
    for (;;) {
        HcResp r;
        job_get(&a, id_a, &r);
        const char *state = hc_str(&r, "state");
        ck_assert_msg(!strcmp(state, "queued") || !strcmp(state, "running"),
                      "the job ended (%s) before it could be interrupted", state);
        it0 = hc_num(&r, "iteration");
        int running = strcmp(state, "running") == 0;
        hc_free(&r);
        if (running && it0 > 0) break;
        ck_assert_msg(now_s() - t0 < DEADLINE_S, "no progress after %.0f s", DEADLINE_S);
        sleep_ms(20);
    }
    ck_assert(it0 < TOTAL);

    int status = proc_term(&a);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                  "metaserve serve ended with status 0x%x after SIGTERM; stderr:\n%s", status,
                  a.tail);
    ck_assert_ptr_nonnull(strstr(a.tail, "\"msg\":\"stopped\""));

    // a new process on the same database: the job is back from its checkpoint, not from 0
    proc_start(&a, db_a);
    HcResp r;
    job_get(&a, id_a, &r);
    const char *state = hc_str(&r, "state");
    double it1 = hc_num(&r, "iteration");
    ck_assert_msg(!strcmp(state, "queued") || !strcmp(state, "running"), "after restart: %s",
                  r.body);
    ck_assert_msg(it1 >= it0 && it1 < TOTAL, "after restart the iteration is %g (was %g)", it1,
                  it0);
    hc_free(&r);
    ck_assert_double_eq(wait_succeeded(&a, id_a, it1), TOTAL);
    ck_assert_double_eq(wait_succeeded(&b, id_b, 0), TOTAL);

    // the interrupted run and the reference end with the same floats, bit for bit
    size_t na = 0, nb = 0;
    float *wa = weights(&a, &na), *wb = weights(&b, &nb);
    ck_assert_uint_eq(na, 1761);
    ck_assert_uint_eq(nb, 1761);
    size_t nonzero = 0;
    for (size_t i = 0; i < na; i++) {
        ck_assert_msg(memcmp(&wa[i], &wb[i], sizeof(float)) == 0,
                      "weight %zu: resumed %.9g, uninterrupted %.9g", i, (double)wa[i],
                      (double)wb[i]);
        nonzero += wa[i] != 0;
    }
    ck_assert_uint_gt(nonzero, 1000);
    free(wa);
    free(wb);

    int sa = proc_term(&a), sb = proc_term(&b);
    ck_assert(WIFEXITED(sa) && WEXITSTATUS(sa) == 0);
    ck_assert(WIFEXITED(sb) && WEXITSTATUS(sb) == 0);
}
END_TEST

int main(void) {
    curl_global_init(CURL_GLOBAL_DEFAULT);
    Suite *s = suite_create("shutdown");
    TCase *tc = tcase_create("shutdown");
    tcase_set_timeout(tc, 120);
    tcase_add_unchecked_fixture(tc, test_root_make, test_root_remove);
    tcase_add_test(tc, sigterm_mid_job_resumes_after_restart_to_bit_identical_weights);
    suite_add_tcase(s, tc);
    int failed = test_suite_run(s);
    curl_global_cleanup();
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
