/*
 * jobs/ against a real SQLite file: jobs run on worker threads to a stored model version, several
 * at once; progress and a bounded loss curve are recorded; cancel stops a running job; a diverging
 * job fails with the reason; a graceful stop requeues with a checkpoint; and a process killed
 * with SIGKILL mid-training resumes after restart to weights bit-identical to an uninterrupted
 * run, with PRAGMA integrity_check "ok".
 *
 * Timing: these tests wait for state changes with generous deadlines (60 s) only to fail instead
 * of hanging; nothing asserts on durations.
 */
#define _DEFAULT_SOURCE
#include <check.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "metaserve/codec/codec.h"
#include "metaserve/jobs/jobs.h"
#include "metaserve/store/store.h"
#include "metaserve/tasks/dataset.h"

static char g_dir[64], g_db[128];

static void setup(void) {
    strcpy(g_dir, "/tmp/ms_jobs_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(g_dir));
    snprintf(g_db, sizeof g_db, "%s/test.db", g_dir);
}

static void teardown(void) {
    char cmd[160];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    ck_assert_int_eq(system(cmd), 0);
}

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static JobPoolConfig pool_config(int workers) {
    JobPoolConfig c;
    jobpool_config_defaults(&c);
    c.db_path = g_db;
    c.workers = workers;
    c.checkpoint_every = 200;
    c.checkpoint_seconds = 0;
    c.progress_seconds = 0.05;
    c.curve_points = 50;
    c.val_tasks = 5;
    return c;
}

static const char *config_json(char *buf, size_t n, const char *name, long iterations,
                               const char *algo, double inner_lr) {
    snprintf(buf, n,
             "{\"name\":\"%s\",\"architecture\":{\"sizes\":[1,20,20,1],\"activation\":\"relu\","
             "\"head\":\"regression\"},\"algorithm\":\"%s\",\"inner\":{\"lr\":%g,\"steps\":2},"
             "\"outer\":{\"optimizer\":\"adam\",\"lr\":0.001},\"meta_batch\":5,"
             "\"iterations\":%ld,\"seed\":7,\"tasks\":{\"family\":\"sinusoid\","
             "\"k_support\":10,\"k_query\":10}}",
             name, algo, inner_lr, iterations);
    return buf;
}

static void queue(Store *st, const char *cfg, long total, char id[STORE_ID_MAX]) {
    MsError err = {0};
    const char *name = strstr(cfg, "\"name\":\"") + 8;
    char nm[STORE_NAME_MAX];
    size_t k = (size_t)(strchr(name, '"') - name);
    memcpy(nm, name, k);
    nm[k] = '\0';
    ck_assert_msg(store_job_create(st, cfg, nm, total, 100, id, &err) == MS_OK, "%s", err.msg);
}

// Waits until job id reaches a final state (or the deadline) and returns it.
static JobState wait_final(Store *st, const char *id, StoreJob *out) {
    for (int i = 0; i < 6000; i++) {
        ck_assert_int_eq(store_job_get(st, id, out, NULL), MS_OK);
        if (out->state >= JOB_SUCCEEDED) return out->state;
        store_job_free(out);
        sleep_ms(10);
    }
    ck_abort_msg("job %s did not finish within 60 s", id);
    return JOB_FAILED;
}

// Waits (polling the store, 60 s deadline) until job id is running past iteration `at` (and has a
// checkpoint when need_ckpt); fails the test if it finishes first.
static void wait_running_past(Store *st, const char *id, int64_t at, int need_ckpt) {
    for (int i = 0;; i++) {
        ck_assert_int_lt(i, 12000);
        StoreJob j;
        ck_assert_int_eq(store_job_get(st, id, &j, NULL), MS_OK);
        int past = j.iteration >= at && j.iteration > 0 && (!need_ckpt || j.has_checkpoint);
        int done = j.state >= JOB_SUCCEEDED;
        store_job_free(&j);
        ck_assert_msg(!done, "job finished before iteration %lld", (long long)at);
        if (past) return;
        sleep_ms(5);
    }
}

// The same config trained in-process, uninterrupted: the reference weights.
static float *reference_params(const char *cfg_json, size_t *P) {
    TrainConfig c;
    MsError err = {0};
    ck_assert_int_eq(codec_config_parse(&c, cfg_json, strlen(cfg_json), &err), MS_OK);
    Trainer tr;
    ck_assert_int_eq(trainer_init(&tr, &c, &err), MS_OK);
    while (tr.t < c.iterations)
        ck_assert_int_eq(trainer_step(&tr, NULL, &err), MS_OK);
    *P = tr.spec.P;
    float *out = malloc(*P * sizeof(float));
    memcpy(out, tr.params, *P * sizeof(float));
    trainer_free(&tr);
    return out;
}

static void assert_model_equals_reference(Store *st, const StoreJob *job, const char *cfg) {
    StoreModel m;
    MsError err = {0};
    ck_assert_int_gt(job->result_version, 0);
    ck_assert_msg(store_model_get(st, job->result_model, job->result_version, &m, &err) == MS_OK,
                  "%s", err.msg);
    size_t P;
    float *ref = reference_params(cfg, &P);
    ck_assert_uint_eq(m.n_params, P);
    ck_assert_msg(memcmp(m.params, ref, P * sizeof(float)) == 0,
                  "stored weights differ from an uninterrupted run");
    ck_assert_str_eq(m.job_id, job->id);
    free(ref);
    store_model_free(&m);
}

START_TEST(a_job_trains_to_a_stored_version_equal_to_a_direct_run) {
    Store *st;
    ck_assert_int_eq(store_open(&st, g_db, NULL), MS_OK);
    JobPoolConfig pc = pool_config(1);
    JobPool *p;
    ck_assert_int_eq(jobpool_start(&p, &pc, NULL), MS_OK);
    char cfg[1024], id[STORE_ID_MAX];
    config_json(cfg, sizeof cfg, "sine", 600, "maml", 0.01);
    queue(st, cfg, 600, id);
    jobpool_notify(p);
    StoreJob j;
    ck_assert_int_eq(wait_final(st, id, &j), JOB_SUCCEEDED);
    ck_assert_int_eq(j.iteration, 600);
    ck_assert_str_eq(j.result_model, "sine");
    ck_assert_int_eq(j.result_version, 1);
    assert_model_equals_reference(st, &j, cfg);
    // the loss curve is recorded, bounded by the curve setting (50 points per key, +1 for the
    // final iteration), and its steps increase
    StoreMetricRow *rows;
    int n, more;
    ck_assert_int_eq(store_job_metrics(st, id, -1, 10000, &rows, &n, &more, NULL), MS_OK);
    int n_loss = 0;
    int64_t last = -1;
    for (int i = 0; i < n; i++) {
        if (strcmp(rows[i].key, "meta_loss") != 0) continue;
        n_loss++;
        ck_assert_int_gt(rows[i].step, last);
        last = rows[i].step;
    }
    ck_assert_int_ge(n_loss, 10);
    ck_assert_int_le(n_loss, 51);
    ck_assert_int_eq(last, 600);
    free(rows);
    ck_assert_ptr_nonnull(strstr(j.metrics, "\"val_mse\":"));
    store_job_free(&j);
    jobpool_stop(p);
    ck_assert_int_eq(store_integrity_check(st, NULL), MS_OK);
    store_close(st);
}
END_TEST

START_TEST(several_jobs_run_at_once_and_each_writes_its_version) {
    Store *st;
    ck_assert_int_eq(store_open(&st, g_db, NULL), MS_OK);
    JobPoolConfig pc = pool_config(2);
    JobPool *p;
    ck_assert_int_eq(jobpool_start(&p, &pc, NULL), MS_OK);
    char cfg[4][1024], id[4][STORE_ID_MAX];
    static const char *const algos[] = {"maml", "fomaml", "metasgd", "reptile"};
    for (int i = 0; i < 4; i++) {
        config_json(cfg[i], sizeof cfg[i], i % 2 ? "odd" : "even", 300, algos[i], 0.01);
        queue(st, cfg[i], 300, id[i]);
    }
    jobpool_notify(p);
    for (int i = 0; i < 4; i++) {
        StoreJob j;
        ck_assert_int_eq(wait_final(st, id[i], &j), JOB_SUCCEEDED);
        assert_model_equals_reference(st, &j, cfg[i]);
        store_job_free(&j);
    }
    // two jobs per name: versions 1 and 2 of each
    StoreModel *v;
    int n;
    ck_assert_int_eq(store_model_versions(st, "even", &v, &n, NULL), MS_OK);
    ck_assert_int_eq(n, 2);
    for (int i = 0; i < n; i++)
        store_model_free(&v[i]);
    free(v);
    jobpool_stop(p);
    store_close(st);
}
END_TEST

START_TEST(cancel_stops_a_running_job) {
    Store *st;
    ck_assert_int_eq(store_open(&st, g_db, NULL), MS_OK);
    JobPoolConfig pc = pool_config(1);
    JobPool *p;
    ck_assert_int_eq(jobpool_start(&p, &pc, NULL), MS_OK);
    char cfg[1024], id[STORE_ID_MAX];
    config_json(cfg, sizeof cfg, "long", 100000000, "maml", 0.01);
    queue(st, cfg, 100000000, id);
    jobpool_notify(p);
    StoreJob j;
    wait_running_past(st, id, 1, 0);
    JobState after;
    ck_assert_int_eq(store_job_cancel(st, id, &after, NULL), MS_OK);
    jobpool_cancel(p, id);
    ck_assert_int_eq(wait_final(st, id, &j), JOB_CANCELLED);
    ck_assert_int_eq(j.result_version, 0);
    store_job_free(&j);
    // cancelling a finished job is a conflict
    ck_assert_int_eq(store_job_cancel(st, id, &after, NULL), MS_ERR_CONFLICT);
    jobpool_stop(p);
    store_close(st);
}
END_TEST

START_TEST(a_diverging_job_fails_with_the_reason_and_no_model) {
    Store *st;
    ck_assert_int_eq(store_open(&st, g_db, NULL), MS_OK);
    JobPoolConfig pc = pool_config(1);
    JobPool *p;
    ck_assert_int_eq(jobpool_start(&p, &pc, NULL), MS_OK);
    char cfg[1024], id[STORE_ID_MAX];
    config_json(cfg, sizeof cfg, "boom", 5000, "maml", 10);
    queue(st, cfg, 5000, id);
    jobpool_notify(p);
    StoreJob j;
    ck_assert_int_eq(wait_final(st, id, &j), JOB_FAILED);
    ck_assert_ptr_nonnull(strstr(j.error, "non-finite"));
    store_job_free(&j);
    StoreModel *v;
    int n = -1;
    MsStatus s = store_model_versions(st, "boom", &v, &n, NULL);
    ck_assert(s == MS_ERR_NOT_FOUND || n == 0);
    if (s == MS_OK) free(v);
    jobpool_stop(p);
    store_close(st);
}
END_TEST

START_TEST(a_graceful_stop_requeues_and_the_restart_finishes_identically) {
    Store *st;
    ck_assert_int_eq(store_open(&st, g_db, NULL), MS_OK);
    JobPoolConfig pc = pool_config(1);
    JobPool *p;
    ck_assert_int_eq(jobpool_start(&p, &pc, NULL), MS_OK);
    char cfg[1024], id[STORE_ID_MAX];
    config_json(cfg, sizeof cfg, "stopme", 4000, "maml", 0.01);
    queue(st, cfg, 4000, id);
    jobpool_notify(p);
    StoreJob j;
    wait_running_past(st, id, 300, 0);
    jobpool_stop(p);
    ck_assert_int_eq(store_job_get(st, id, &j, NULL), MS_OK);
    ck_assert_int_eq(j.state, JOB_QUEUED);
    ck_assert_int_eq(j.has_checkpoint, 1);
    ck_assert_int_lt(j.iteration, 4000);
    store_job_free(&j);
    ck_assert_int_eq(jobpool_start(&p, &pc, NULL), MS_OK);
    ck_assert_int_eq(wait_final(st, id, &j), JOB_SUCCEEDED);
    assert_model_equals_reference(st, &j, cfg);
    store_job_free(&j);
    jobpool_stop(p);
    store_close(st);
}
END_TEST

START_TEST(a_job_on_two_threads_writes_one_threads_weights_and_resumes_on_one) {
    // Trained on two threads ("threads": 2, the pool allowing 2), stopped mid-run with a
    // checkpoint, then finished by a pool that allows one thread: the stored weights are those
    // of a one-thread run made directly, byte for byte.
    Store *st;
    ck_assert_int_eq(store_open(&st, g_db, NULL), MS_OK);
    JobPoolConfig pc = pool_config(1);
    pc.max_train_threads = 2;
    JobPool *p;
    ck_assert_int_eq(jobpool_start(&p, &pc, NULL), MS_OK);
    char base[1024], cfg[1100], id[STORE_ID_MAX];
    config_json(base, sizeof base, "twothreads", 3000, "metasgd", 0.01);
    const char *seed = strstr(base, "\"seed\":7");
    ck_assert_ptr_nonnull(seed);
    snprintf(cfg, sizeof cfg, "%.*s\"threads\":2,%s", (int)(seed - base), base, seed);
    queue(st, cfg, 3000, id);
    jobpool_notify(p);
    wait_running_past(st, id, 300, 1);
    jobpool_stop(p);
    StoreJob j;
    ck_assert_int_eq(store_job_get(st, id, &j, NULL), MS_OK);
    ck_assert_int_eq(j.state, JOB_QUEUED);
    ck_assert_int_lt(j.iteration, 3000);
    store_job_free(&j);
    pc.max_train_threads = 1;
    ck_assert_int_eq(jobpool_start(&p, &pc, NULL), MS_OK);
    ck_assert_int_eq(wait_final(st, id, &j), JOB_SUCCEEDED);
    assert_model_equals_reference(st, &j, cfg);
    store_job_free(&j);
    jobpool_stop(p);
    store_close(st);
}
END_TEST

// A classes dataset: 12 clusters in 2-D (30 points each, centres on a circle of radius 4),
// classes 1, 5 and 9 held out. Returns its id.
static void put_cluster_dataset(Store *st, char id[STORE_ID_MAX], int per_class) {
    enum { C = 12 };
    int n = C * per_class;
    float *x = malloc((size_t)n * 2 * sizeof(float));
    int32_t *labels = malloc((size_t)n * sizeof(int32_t));
    Rng r;
    rng_seed(&r, 99);
    for (int i = 0; i < n; i++) {
        int c = i % C;
        labels[i] = 100 + c; // arbitrary original labels
        x[2 * i] = (float)(4 * cos(c * 0.5236) + 0.5 * rng_normal(&r));
        x[2 * i + 1] = (float)(4 * sin(c * 0.5236) + 0.5 * rng_normal(&r));
    }
    int32_t test[] = {101, 105, 109}; // spread around the circle
    DatasetClassesIn in = {
        .x = x, .labels = labels, .n_rows = n, .x_dim = 2, .test_classes = test, .n_test = 3};
    DatasetLimits lim;
    dataset_limits_default(&lim);
    DatasetPacked pk;
    MsError err = {0};
    ck_assert_msg(dataset_pack_classes(&pk, &in, &lim, &err) == MS_OK, "%s", err.msg);
    StoreDataset d;
    memset(&d, 0, sizeof d);
    snprintf(d.name, sizeof d.name, "clusters");
    snprintf(d.kind, sizeof d.kind, "classes");
    d.n_items = pk.n_items;
    d.n_rows = pk.n_rows;
    d.x_dim = 2;
    d.y_dim = 1;
    d.meta = "{}";
    StoreDatasetData data = {pk.x, pk.n_x, pk.y, pk.n_y, pk.index, pk.n_index};
    ck_assert_msg(store_dataset_put(st, &d, &data, &err) == MS_OK, "%s", err.msg);
    memcpy(id, d.id, STORE_ID_MAX);
    dataset_packed_free(&pk);
    free(x), free(labels);
}

static const char *dataset_config(char *buf, size_t n, const char *ds, int k_support) {
    snprintf(buf, n,
             "{\"name\":\"clusters\",\"architecture\":{\"sizes\":[2,16,3],\"activation\":"
             "\"relu\",\"head\":\"classification\"},\"algorithm\":\"maml\",\"inner\":{\"lr\":"
             "0.5,\"steps\":2},\"outer\":{\"optimizer\":\"adam\",\"lr\":0.003},\"meta_batch\":5,"
             "\"iterations\":1500,\"seed\":3,\"tasks\":{\"dataset\":\"%s\",\"n_way\":3,"
             "\"k_support\":%d,\"k_query\":5}}",
             ds, k_support);
    return buf;
}

START_TEST(a_job_trains_on_an_uploaded_dataset_and_checks_shots_up_front) {
    Store *st;
    ck_assert_int_eq(store_open(&st, g_db, NULL), MS_OK);
    char ds[STORE_ID_MAX], cfg[1024], id[STORE_ID_MAX], id2[STORE_ID_MAX];
    put_cluster_dataset(st, ds, 30);
    JobPoolConfig pc = pool_config(1);
    pc.val_tasks = 40; // 40 episodes x 15 query points: the accuracy's standard error is < 0.02
    JobPool *p;
    ck_assert_int_eq(jobpool_start(&p, &pc, NULL), MS_OK);
    dataset_config(cfg, sizeof cfg, ds, 5);
    queue(st, cfg, 300, id);
    // 30 points per class cannot give 26 + 5 shots: the job fails naming the field
    char bad[1024];
    dataset_config(bad, sizeof bad, ds, 26);
    queue(st, bad, 300, id2);
    jobpool_notify(p);
    StoreJob j;
    ck_assert_int_eq(wait_final(st, id, &j), JOB_SUCCEEDED);
    // validation episodes come from the held-out classes: accuracy is far above chance (1/3)
    ck_assert_ptr_nonnull(strstr(j.metrics, "\"val_accuracy\":"));
    double acc = atof(strstr(j.metrics, "\"val_accuracy\":") + 15);
    fprintf(stderr, "dataset job: held-out accuracy %.3f\n", acc);
    ck_assert_double_gt(acc, 0.6);
    store_job_free(&j);
    ck_assert_int_eq(wait_final(st, id2, &j), JOB_FAILED);
    ck_assert_ptr_nonnull(strstr(j.error, "k_support"));
    store_job_free(&j);
    // a dataset in use by a queued job cannot be deleted; once the jobs ended it can
    ck_assert_int_eq(store_dataset_delete(st, ds, NULL), MS_OK);
    jobpool_stop(p);
    store_close(st);
}
END_TEST

// Child: runs a pool on g_db until killed.
static void child_runs_pool(void) {
    JobPoolConfig pc = pool_config(1);
    JobPool *p;
    if (jobpool_start(&p, &pc, NULL) != MS_OK) _exit(3);
    for (;;)
        sleep_ms(1000);
}

START_TEST(sigkill_mid_training_then_restart_gives_bit_identical_weights) {
    Store *st;
    ck_assert_int_eq(store_open(&st, g_db, NULL), MS_OK);
    char cfg[1024], id[STORE_ID_MAX];
    config_json(cfg, sizeof cfg, "crash", 6000, "maml", 0.01);
    queue(st, cfg, 6000, id);
    // kill the training process three times at different points past a checkpoint
    int64_t kill_at[] = {500, 2100, 4300};
    for (int k = 0; k < 3; k++) {
        // no SQLite connection may cross fork(): close ours, the child opens its own
        store_close(st);
        pid_t pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) child_runs_pool();
        ck_assert_int_eq(store_open(&st, g_db, NULL), MS_OK);
        wait_running_past(st, id, kill_at[k], 1);
        kill(pid, SIGKILL);
        int status;
        waitpid(pid, &status, 0);
        ck_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
        ck_assert_int_eq(store_integrity_check(st, NULL), MS_OK);
    }
    JobPoolConfig pc = pool_config(1);
    JobPool *p;
    ck_assert_int_eq(jobpool_start(&p, &pc, NULL), MS_OK);
    StoreJob j;
    ck_assert_int_eq(wait_final(st, id, &j), JOB_SUCCEEDED);
    assert_model_equals_reference(st, &j, cfg);
    store_job_free(&j);
    jobpool_stop(p);
    ck_assert_int_eq(store_integrity_check(st, NULL), MS_OK);
    store_close(st);
}
END_TEST

// The parameters of a 1-20-20-1 relu trainer seeded `seed`, stored as version 1 of "pre" (the
// initialisation of the init test); returned (P floats, caller frees).
static float *put_init_version(Store *st, uint64_t seed, size_t *P) {
    char cfg[1024];
    config_json(cfg, sizeof cfg, "pre", 10, "maml", 0.01);
    TrainConfig c;
    MsError err = {0};
    ck_assert_int_eq(codec_config_parse(&c, cfg, strlen(cfg), &err), MS_OK);
    c.seed = seed;
    Trainer tr;
    ck_assert_int_eq(trainer_init(&tr, &c, &err), MS_OK);
    *P = tr.spec.P;
    float *theta = malloc(*P * sizeof(float));
    memcpy(theta, tr.params, *P * sizeof(float));
    StoreModel m;
    memset(&m, 0, sizeof m);
    snprintf(m.name, sizeof m.name, "pre");
    snprintf(m.algorithm, sizeof m.algorithm, "maml");
    ck_assert_int_eq(codec_config_print(&c, &m.config, &err), MS_OK);
    m.hyper = "{\"provenance\":\"imported\"}";
    m.metrics = "{}";
    m.n_params = *P;
    m.params = theta;
    int version = 0;
    ck_assert_int_eq(store_model_put(st, &m, &version, &err), MS_OK);
    ck_assert_int_eq(version, 1);
    free(m.config);
    trainer_free(&tr);
    return theta;
}

START_TEST(a_job_with_init_stops_and_resumes_to_the_weights_of_an_uninterrupted_run) {
    Store *st;
    ck_assert_int_eq(store_open(&st, g_db, NULL), MS_OK);
    size_t P;
    float *init = put_init_version(st, 1234, &P);
    char cfg[1100], id[STORE_ID_MAX];
    config_json(cfg, sizeof cfg, "warm", 4000, "maml", 0.01);
    // "init" pinned, as POST /v1/jobs stores it
    char *tail = strrchr(cfg, '}');
    snprintf(tail, sizeof cfg - (size_t)(tail - cfg), ",\"init\":{\"model\":\"pre@1\"}}");
    JobPoolConfig pc = pool_config(1);
    JobPool *p;
    ck_assert_int_eq(jobpool_start(&p, &pc, NULL), MS_OK);
    queue(st, cfg, 4000, id);
    jobpool_notify(p);
    wait_running_past(st, id, 300, 1);
    jobpool_stop(p);
    StoreJob j;
    ck_assert_int_eq(store_job_get(st, id, &j, NULL), MS_OK);
    ck_assert_int_eq(j.state, JOB_QUEUED);
    ck_assert_int_eq(j.has_checkpoint, 1);
    store_job_free(&j);
    ck_assert_int_eq(jobpool_start(&p, &pc, NULL), MS_OK);
    ck_assert_int_eq(wait_final(st, id, &j), JOB_SUCCEEDED);
    // the reference: the same config trained in-process from the same initial parameters
    TrainConfig c;
    MsError err = {0};
    ck_assert_int_eq(codec_config_parse(&c, cfg, strlen(cfg), &err), MS_OK);
    ck_assert_str_eq(c.init_model, "pre@1");
    Trainer tr;
    ck_assert_int_eq(trainer_init(&tr, &c, &err), MS_OK);
    ck_assert_uint_eq(tr.spec.P, P);
    memcpy(tr.params, init, P * sizeof(float));
    while (tr.t < c.iterations)
        ck_assert_int_eq(trainer_step(&tr, NULL, &err), MS_OK);
    StoreModel m;
    ck_assert_int_eq(store_model_get(st, j.result_model, j.result_version, &m, &err), MS_OK);
    ck_assert_msg(memcmp(m.params, tr.params, P * sizeof(float)) == 0,
                  "resumed init run differs from an uninterrupted one");
    // ... and the initialisation mattered: the seeded start trains to other weights
    size_t P2;
    float *cold = reference_params(cfg, &P2);
    ck_assert(memcmp(cold, m.params, P * sizeof(float)) != 0);
    free(cold);
    store_model_free(&m);
    store_job_free(&j);
    trainer_free(&tr);
    free(init);
    jobpool_stop(p);
    store_close(st);
}
END_TEST

int main(void) {
    Suite *s = suite_create("jobs");
    TCase *tc = tcase_create("pool");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, a_job_trains_to_a_stored_version_equal_to_a_direct_run);
    tcase_add_test(tc, several_jobs_run_at_once_and_each_writes_its_version);
    tcase_add_test(tc, cancel_stops_a_running_job);
    tcase_add_test(tc, a_diverging_job_fails_with_the_reason_and_no_model);
    tcase_add_test(tc, a_graceful_stop_requeues_and_the_restart_finishes_identically);
    tcase_add_test(tc, a_job_on_two_threads_writes_one_threads_weights_and_resumes_on_one);
    tcase_add_test(tc, a_job_trains_on_an_uploaded_dataset_and_checks_shots_up_front);
    tcase_add_test(tc, sigkill_mid_training_then_restart_gives_bit_identical_weights);
    tcase_add_test(tc, a_job_with_init_stops_and_resumes_to_the_weights_of_an_uninterrupted_run);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
