/*
 * serving/ against a real SQLite file: the version cache (hits, misses, LRU eviction,
 * invalidation, references outliving eviction), and adaptation: it lowers the support loss, never
 * changes the stored version, uses the learned Meta-SGD rates, validates every field of the
 * request and the limits before computing, and stores an adaptation that expires.
 *
 * test_serving_pg runs the same suite on a real PostgreSQL server (METASERVE_TEST_PG), plus what
 * only a shared store needs: a version deleted, or an alias moved, through another connection
 * (another replica) stops being served within the resolution TTL (1 s).
 */
#define _DEFAULT_SOURCE
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metaserve/codec/codec.h"
#include "metaserve/meta/meta.h"
#include "../pg/pgtest.h"
#include "metaserve/serving/serving.h"

static char g_dir[64], g_db[256];
static Store *g_st;

static void setup(void) {
    strcpy(g_dir, "/tmp/ms_reg_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(g_dir));
    if (pgtest_uri())
        ck_assert_int_eq(pgtest_fresh_db(g_db, sizeof g_db), 0);
    else
        snprintf(g_db, sizeof g_db, "%s/test.db", g_dir);
    ck_assert_int_eq(store_open(&g_st, g_db, NULL), MS_OK);
}

static void teardown(void) {
    store_close(g_st);
    char cmd[160];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    ck_assert_int_eq(system(cmd), 0);
}

// Trains `iterations` meta-updates of cfg and stores the result as a version of cfg->name.
static int put_trained(TrainConfig *c, long iterations) {
    MsError err = {0};
    Trainer tr;
    c->iterations = iterations;
    ck_assert_msg(trainer_init(&tr, c, &err) == MS_OK, "%s", err.msg);
    while (tr.t < c->iterations)
        ck_assert_int_eq(trainer_step(&tr, NULL, &err), MS_OK);
    char *json;
    ck_assert_int_eq(codec_config_print(c, &json, &err), MS_OK);
    StoreModel m;
    memset(&m, 0, sizeof m);
    snprintf(m.name, sizeof m.name, "%s", c->name);
    snprintf(m.algorithm, sizeof m.algorithm, "%s", meta_algo_name(c->algo));
    m.config = json;
    m.hyper = "{}";
    m.metrics = "{}";
    m.n_params = tr.spec.P;
    m.params = tr.params;
    m.inner_lrs = (float *)trainer_lrs(&tr);
    int version;
    ck_assert_msg(store_model_put(g_st, &m, &version, &err) == MS_OK, "%s", err.msg);
    free(json);
    trainer_free(&tr);
    return version;
}

// A sinusoid support set: y = 2 sin(x - 0.5) at n points in [-5, 5].
static void sine_support(float *x, float *y, int n) {
    for (int i = 0; i < n; i++) {
        x[i] = -5.0f + 10.0f * (float)i / (float)(n - 1);
        y[i] = 2.0f * sinf(x[i] - 0.5f);
    }
}

START_TEST(cache_hits_misses_evicts_and_invalidates) {
    Serving *r;
    ck_assert_int_eq(serving_create(&r, 2, NULL), MS_OK);
    TrainConfig c;
    train_config_defaults(&c);
    strcpy(c.name, "a");
    put_trained(&c, 5);
    put_trained(&c, 6);
    put_trained(&c, 7);
    ServingModel *m1, *m2, *m3, *again;
    ck_assert_int_eq(serving_get(r, g_st, "a@1", &m1, NULL), MS_OK);
    ck_assert_int_eq(serving_get(r, g_st, "a@2", &m2, NULL), MS_OK);
    ck_assert_int_eq(serving_get(r, g_st, "a", &m3, NULL), MS_OK); // latest: 3; evicts a@1
    ck_assert_int_eq(m3->version, 3);
    ServingStats s;
    serving_stats(r, &s);
    ck_assert_int_eq(s.misses, 3);
    ck_assert_int_eq(s.size, 2);
    // the evicted a@1 is still usable by its holder
    ck_assert_uint_eq(m1->spec.P, 1761);
    ck_assert(isfinite(m1->theta[0]));
    serving_release(r, m1);
    ck_assert_int_eq(serving_get(r, g_st, "a@2", &again, NULL), MS_OK);
    ck_assert_ptr_eq(again, m2);
    serving_stats(r, &s);
    ck_assert_int_eq(s.hits, 1);
    serving_release(r, again);
    // warm gets need no database at all: explicit versions, and names resolved within the TTL
    // (a NULL store would crash on any access)
    ck_assert_int_eq(serving_get(r, NULL, "a@2", &again, NULL), MS_OK);
    ck_assert_ptr_eq(again, m2);
    serving_release(r, again);
    ck_assert_int_eq(serving_get(r, NULL, "a", &again, NULL), MS_OK);
    ck_assert_ptr_eq(again, m3);
    serving_release(r, again);
    serving_invalidate(r, "a");
    serving_stats(r, &s);
    ck_assert_int_eq(s.size, 0);
    serving_release(r, m2);
    serving_release(r, m3);
    ck_assert_int_eq(serving_get(r, g_st, "nope", &m1, NULL), MS_ERR_NOT_FOUND);
    serving_destroy(r);
}
END_TEST

START_TEST(adaptation_lowers_support_loss_and_leaves_the_stored_version_unchanged) {
    Serving *r;
    MsError err = {0};
    ck_assert_int_eq(serving_create(&r, 4, NULL), MS_OK);
    TrainConfig c;
    train_config_defaults(&c);
    strcpy(c.name, "sine");
    put_trained(&c, 300);
    StoreModel before;
    ck_assert_int_eq(store_model_get(g_st, "sine", 1, &before, NULL), MS_OK);
    float x[10], y[10];
    sine_support(x, y, 10);
    AdaptRequest q = {.x = x, .y = y, .n = 10, .steps = 10, .lr = 0.01, .ttl_ms = 60000};
    AdaptLimits lim;
    adapt_limits_default(&lim);
    StoreAdaptation a;
    ck_assert_msg(serving_adapt(r, g_st, "sine", &q, &lim, &a, &err) == MS_OK, "%s", err.msg);
    ck_assert_double_lt(a.support_loss_after, a.support_loss_before);
    ck_assert_int_eq(a.version, 1);
    StoreModel after;
    ck_assert_int_eq(store_model_get(g_st, "sine", 1, &after, NULL), MS_OK);
    ck_assert(memcmp(before.params, after.params, before.n_params * sizeof(float)) == 0);
    ck_assert(memcmp(before.params, a.params, before.n_params * sizeof(float)) != 0);
    // stored, readable, and gone once expired
    StoreAdaptation got;
    ck_assert_int_eq(store_adaptation_get(g_st, a.id, &got, NULL), MS_OK);
    ck_assert(memcmp(got.params, a.params, a.n_params * sizeof(float)) == 0);
    store_adaptation_free(&got);
    int n;
    ck_assert_int_eq(store_adaptation_expire(g_st, a.expires_at, &n, NULL), MS_OK);
    ck_assert_int_eq(n, 1);
    ck_assert_int_eq(store_adaptation_get(g_st, a.id, &got, NULL), MS_ERR_NOT_FOUND);
    store_adaptation_free(&a);
    store_model_free(&before);
    store_model_free(&after);
    serving_destroy(r);
}
END_TEST

START_TEST(metasgd_adaptation_uses_the_learned_rates) {
    Serving *r;
    ck_assert_int_eq(serving_create(&r, 4, NULL), MS_OK);
    TrainConfig c;
    train_config_defaults(&c);
    strcpy(c.name, "msgd");
    c.algo = META_METASGD;
    put_trained(&c, 200);
    ServingModel *m;
    ck_assert_int_eq(serving_get(r, g_st, "msgd", &m, NULL), MS_OK);
    ck_assert_ptr_nonnull(m->lrs);
    float x[10], y[10];
    sine_support(x, y, 10);
    AdaptRequest q = {.x = x, .y = y, .n = 10, .steps = 3, .lr = -1, .ttl_ms = 0};
    AdaptLimits lim;
    adapt_limits_default(&lim);
    size_t P = m->spec.P;
    float *out = malloc(P * sizeof(float)), *ref = malloc(P * sizeof(float));
    float *grad = malloc(P * sizeof(float));
    ck_assert_int_eq(serving_adapt_copy(m, &q, &lim, out, NULL, NULL, NULL), MS_OK);
    MlpWork w;
    mlp_work_init(&w, &m->spec, 10, NULL);
    ck_assert_int_eq(meta_adapt(&w, ref, grad, META_METASGD, m->theta, m->lrs,
                                (float)m->cfg.inner_lr, 3, x, y, 10, NULL, NULL),
                     MS_OK);
    ck_assert(memcmp(out, ref, P * sizeof(float)) == 0);
    // the scalar-rate result differs: the learned rates are not all alpha after training
    ck_assert_int_eq(meta_adapt(&w, ref, grad, META_MAML, m->theta, NULL, (float)m->cfg.inner_lr, 3,
                                x, y, 10, NULL, NULL),
                     MS_OK);
    ck_assert(memcmp(out, ref, P * sizeof(float)) != 0);
    mlp_work_free(&w);
    free(out), free(ref), free(grad);
    serving_release(r, m);
    serving_destroy(r);
}
END_TEST

START_TEST(bad_requests_name_the_field_and_limits_apply_before_work) {
    Serving *r;
    ck_assert_int_eq(serving_create(&r, 4, NULL), MS_OK);
    TrainConfig c;
    train_config_defaults(&c);
    strcpy(c.name, "cls");
    c.sizes[0] = 2, c.sizes[3] = 3;
    c.head = MLP_HEAD_CLASSIFICATION;
    strcpy(c.tasks.family, "gaussian");
    c.tasks.n_way = 3;
    c.tasks.dim = 2;
    c.k_support = 2, c.k_query = 2;
    put_trained(&c, 3);
    ServingModel *m;
    ck_assert_int_eq(serving_get(r, g_st, "cls", &m, NULL), MS_OK);
    float x[6] = {0, 1, 1, 0, 0.5f, 0.5f}, y[3] = {0, 2, 1};
    float *out = malloc(m->spec.P * sizeof(float));
    AdaptLimits lim;
    adapt_limits_default(&lim);
    MsError err = {0};
    AdaptRequest q = {.x = x, .y = y, .n = 3, .steps = 2, .lr = 0.1};
    ck_assert_int_eq(serving_adapt_copy(m, &q, &lim, out, NULL, NULL, &err), MS_OK);
    y[1] = 3; // out of range for 3 classes
    ck_assert_int_eq(serving_adapt_copy(m, &q, &lim, out, NULL, NULL, &err), MS_ERR_INVALID);
    ck_assert_ptr_nonnull(strstr(err.msg, "support.y[1][0]"));
    y[1] = 1.5f; // not an integer
    ck_assert_int_eq(serving_adapt_copy(m, &q, &lim, out, NULL, NULL, &err), MS_ERR_INVALID);
    y[1] = 2;
    x[3] = NAN;
    ck_assert_int_eq(serving_adapt_copy(m, &q, &lim, out, NULL, NULL, &err), MS_ERR_INVALID);
    ck_assert_ptr_nonnull(strstr(err.msg, "support.x[1][1]"));
    x[3] = 0;
    q.steps = 101;
    ck_assert_int_eq(serving_adapt_copy(m, &q, &lim, out, NULL, NULL, &err), MS_ERR_INVALID);
    ck_assert_ptr_nonnull(strstr(err.msg, "steps"));
    q.steps = 50;
    lim.max_work = 1000; // 50 steps x 3 rows x P > 1000
    ck_assert_int_eq(serving_adapt_copy(m, &q, &lim, out, NULL, NULL, &err), MS_ERR_TOO_LARGE);
    adapt_limits_default(&lim);
    lim.max_support_rows = 2;
    ck_assert_int_eq(serving_adapt_copy(m, &q, &lim, out, NULL, NULL, &err), MS_ERR_TOO_LARGE);
    ck_assert_ptr_nonnull(strstr(err.msg, "support"));
    free(out);
    serving_release(r, m);
    serving_destroy(r);
}
END_TEST

// PostgreSQL: another replica (a second connection) deletes a version and moves an alias.
START_TEST(changes_made_through_another_replica_are_served_within_the_ttl) {
    Serving *r;
    ck_assert_int_eq(serving_create(&r, 4, NULL), MS_OK);
    TrainConfig c;
    train_config_defaults(&c);
    strcpy(c.name, "a");
    put_trained(&c, 5);
    put_trained(&c, 6);
    MsError e = {0};
    ck_assert_int_eq(store_alias_set(g_st, "a", "prod", 1, &e), MS_OK);
    ServingModel *m;
    ck_assert_int_eq(serving_get(r, g_st, "a@1", &m, NULL), MS_OK);
    serving_release(r, m);
    ck_assert_int_eq(serving_get(r, g_st, "a@prod", &m, NULL), MS_OK);
    ck_assert_int_eq(m->version, 1);
    serving_release(r, m);
    Store *other;
    ck_assert_int_eq(store_open(&other, g_db, NULL), MS_OK);
    ck_assert_int_eq(store_alias_set(other, "a", "prod", 2, &e), MS_OK);
    ck_assert_int_eq(store_model_delete(other, "a", 1, &e), MS_OK);
    store_close(other);
    usleep(1100 * 1000); // the 1 s TTL, and a margin for the clock's granularity
    ck_assert_int_eq(serving_get(r, g_st, "a@1", &m, &e), MS_ERR_NOT_FOUND);
    ck_assert_int_eq(serving_get(r, g_st, "a@prod", &m, NULL), MS_OK);
    ck_assert_int_eq(m->version, 2);
    serving_release(r, m);
    serving_destroy(r);
}
END_TEST

int main(void) {
    Suite *s = suite_create("registry");
    TCase *tc = tcase_create("registry");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, cache_hits_misses_evicts_and_invalidates);
    tcase_add_test(tc, adaptation_lowers_support_loss_and_leaves_the_stored_version_unchanged);
    tcase_add_test(tc, metasgd_adaptation_uses_the_learned_rates);
    tcase_add_test(tc, bad_requests_name_the_field_and_limits_apply_before_work);
    if (pgtest_uri())
        tcase_add_test(tc, changes_made_through_another_replica_are_served_within_the_ttl);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
