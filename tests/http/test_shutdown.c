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
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "httpc.h"

extern char **environ;

#define DEADLINE_S 60.0

// 1-40-40-1 MAML on sinusoids, long enough (a few seconds) to be caught mid-run.
static const char CONFIG[] =
    "{\"name\":\"resume\",\"architecture\":{\"sizes\":[1,40,40,1],\"activation\":\"relu\","
    "\"head\":\"regression\"},\"algorithm\":\"maml\",\"inner\":{\"lr\":0.01,\"steps\":1},"
    "\"outer\":{\"optimizer\":\"adam\",\"lr\":0.001},\"meta_batch\":10,\"iterations\":20000,"
    "\"seed\":11,\"tasks\":{\"family\":\"sinusoid\",\"k_support\":10,\"k_query\":10}}";
#define TOTAL 20000

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

// Every test's files live under one directory made by the unchecked fixture (in the runner
// process), so that it is removed even when a test fails in its forked child.
static char g_root[64];

static void root_make(void) {
    strcpy(g_root, "/tmp/ms_shutdown_XXXXXX");
    if (!mkdtemp(g_root)) {
        perror("mkdtemp");
        exit(EXIT_FAILURE);
    }
}

static void root_remove(void) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_root);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_root);
}

/* ---- a server process ---- */

typedef struct {
    pid_t pid;
    int fd; // read end of the child's stderr
    pthread_t reader;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int port;        // 0 until the "listening" line
    int eof;         // stderr closed
    char line[1024]; // the line being assembled
    size_t line_len;
    char tail[4096]; // the last bytes of stderr, for failure messages
    size_t tail_len;
    HcClient c;
} Proc;

// Takes one complete stderr line: the port from the "listening" line.
static void on_line(Proc *p, const char *line) {
    if (!strstr(line, "\"msg\":\"listening\"")) return;
    const char *at = strstr(line, "\"port\":");
    if (at) p->port = atoi(at + 7);
}

static void *read_stderr(void *arg) {
    Proc *p = arg;
    char buf[4096];
    for (;;) {
        ssize_t n = read(p->fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        pthread_mutex_lock(&p->mu);
        if (n <= 0) {
            p->eof = 1;
            pthread_cond_broadcast(&p->cv);
            pthread_mutex_unlock(&p->mu);
            return NULL;
        }
        for (ssize_t i = 0; i < n; i++) {
            if (p->tail_len == sizeof p->tail - 1) {
                memmove(p->tail, p->tail + 1024, p->tail_len - 1024);
                p->tail_len -= 1024;
            }
            p->tail[p->tail_len++] = buf[i];
            p->tail[p->tail_len] = '\0';
            if (buf[i] == '\n' || p->line_len == sizeof p->line - 1) {
                p->line[p->line_len] = '\0';
                on_line(p, p->line);
                p->line_len = 0;
            } else {
                p->line[p->line_len++] = buf[i];
            }
        }
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
    }
}

// Starts `metaserve serve` on db (1 worker, ephemeral loopback port) and waits for its port.
static void proc_start(Proc *p, const char *db) {
    const char *bin = getenv("METASERVE_BIN");
    ck_assert_msg(bin && *bin, "METASERVE_BIN is not set");
    memset(p, 0, sizeof *p);
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);

    // the environment, built before fork: the parent has threads, so the child may only exec
    static char vars[6][600];
    snprintf(vars[0], sizeof vars[0], "METASERVE_DB=%s", db);
    snprintf(vars[1], sizeof vars[1], "METASERVE_PORT=0");
    snprintf(vars[2], sizeof vars[2], "METASERVE_LISTEN=127.0.0.1");
    snprintf(vars[3], sizeof vars[3], "METASERVE_WORKERS=1");
    snprintf(vars[4], sizeof vars[4], "METASERVE_HTTP_THREADS=2");
    snprintf(vars[5], sizeof vars[5], "OPENBLAS_NUM_THREADS=1");
    size_t n_env = 0;
    while (environ[n_env])
        n_env++;
    char **envp = calloc(n_env + 7, sizeof *envp);
    ck_assert_ptr_nonnull(envp);
    size_t k = 0;
    for (size_t i = 0; i < n_env; i++)
        if (strncmp(environ[i], "METASERVE_", 10) != 0 &&
            strncmp(environ[i], "OPENBLAS_NUM_THREADS=", 21) != 0)
            envp[k++] = environ[i];
    for (int i = 0; i < 6; i++)
        envp[k++] = vars[i];
    envp[k] = NULL;
    char *argv[] = {(char *)bin, "serve", NULL};

    int fds[2];
    ck_assert_int_eq(pipe2(fds, O_CLOEXEC), 0);
    pid_t parent = getpid();
    p->pid = fork();
    ck_assert_int_ge(p->pid, 0);
    if (p->pid == 0) {
        // a failed assertion ends the test process: the server must not outlive it
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) _exit(127);
        dup2(fds[1], 2); // clears close-on-exec on fd 2 only
        execve(bin, argv, envp);
        _exit(127);
    }
    close(fds[1]);
    free(envp);
    p->fd = fds[0];
    ck_assert_int_eq(pthread_create(&p->reader, NULL, read_stderr, p), 0);

    pthread_mutex_lock(&p->mu);
    double t0 = now_s();
    while (!p->port && !p->eof && now_s() - t0 < 30) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 50000000L;
        if (ts.tv_nsec >= 1000000000L) ts.tv_sec++, ts.tv_nsec -= 1000000000L;
        pthread_cond_timedwait(&p->cv, &p->mu, &ts);
    }
    int port = p->port;
    pthread_mutex_unlock(&p->mu);
    ck_assert_msg(port > 0, "no listening line from %s; stderr:\n%s", bin, p->tail);
    snprintf(p->c.base, sizeof p->c.base, "http://127.0.0.1:%d", port);
    p->c.key = NULL;
}

// Sends SIGTERM and waits (30 s at most) for the process to exit; returns its wait status.
static int proc_term(Proc *p) {
    ck_assert_int_eq(kill(p->pid, SIGTERM), 0);
    int status = 0;
    double t0 = now_s();
    pid_t w;
    while ((w = waitpid(p->pid, &status, WNOHANG)) == 0 && now_s() - t0 < 30)
        sleep_ms(20);
    if (w == 0) {
        kill(p->pid, SIGKILL); // do not leave it behind; the assertion below fails the test
        waitpid(p->pid, &status, 0);
        ck_assert_msg(0, "no exit within 30 s of SIGTERM; stderr:\n%s", p->tail);
    }
    pthread_join(p->reader, NULL);
    close(p->fd);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
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
    const char *dir = g_root;
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
    tcase_add_unchecked_fixture(tc, root_make, root_remove);
    tcase_add_test(tc, sigterm_mid_job_resumes_after_restart_to_bit_identical_weights);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    curl_global_cleanup();
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
