/*
 * Meta-training end to end, in the float build the service runs: MAML learns the sinusoid
 * benchmark (post-adaptation query MSE far below the un-adapted MSE and below the classic
 * "pretrained" baseline trained jointly on the same number of tasks), MAML learns few-shot
 * Gaussian classification, reruns are bit-identical, and divergence stops with MS_ERR_NUMERIC
 * without touching the parameters.
 *
 * Statistical margins: evaluations use 300 fresh tasks per cell, the same tasks for every model
 * (same evaluation seed), and compare means with their 95% confidence half-widths, so a pass is
 * not a lucky draw; the numbers the MAML paper reports at K=10 (about 0.4 after 10 steps) are
 * reached only after 70,000 iterations, so the bounds here are relative, not absolute.
 */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "metaserve/jobs/taskpool.h"
#include "metaserve/meta/eval.h"
#include "metaserve/meta/train.h"

static void train(Trainer *t, const TrainConfig *c) {
    MsError err = {0};
    ck_assert_msg(trainer_init(t, c, &err) == MS_OK, "%s", err.msg);
    TrainStats st;
    while (t->t < c->iterations)
        ck_assert_msg(trainer_step(t, &st, &err) == MS_OK, "%s", err.msg);
}

static EvalCell evaluate(Trainer *t, int k, int steps) {
    Rng r;
    rng_seed(&r, 4242);
    EvalCell cell;
    MsError err = {0};
    ck_assert_msg(meta_eval(&t->spec, t->cfg.algo, t->params, trainer_lrs(t), (real)t->cfg.inner_lr,
                            t->sampler, &r, 300, k, steps, 100, &cell, &err) == MS_OK,
                  "%s", err.msg);
    return cell;
}

START_TEST(maml_beats_unadapted_and_pretrained_baseline_on_sinusoid) {
    TrainConfig c;
    train_config_defaults(&c);
    c.iterations = 1500; // 37,500 tasks: a few seconds
    Trainer maml, pre;
    train(&maml, &c);
    c.algo = META_PRETRAIN;
    train(&pre, &c);
    for (int steps = 1; steps <= 10; steps += 9) {
        EvalCell m = evaluate(&maml, 10, steps), p = evaluate(&pre, 10, steps);
        fprintf(stderr, "K=10 steps=%d: maml %.3f±%.3f (unadapted %.3f), pretrained %.3f±%.3f\n",
                steps, m.mean, m.ci95, m.mean_before, p.mean, p.ci95);
        // adaptation more than halves the error of the meta-parameters themselves
        ck_assert_double_lt(m.mean, 0.5 * m.mean_before);
        // and the meta-learned start beats joint training with non-overlapping 95% intervals
        ck_assert_double_lt(m.mean + m.ci95, p.mean - p.ci95);
    }
    trainer_free(&maml);
    trainer_free(&pre);
}
END_TEST

START_TEST(maml_learns_few_shot_gaussian_classification) {
    TrainConfig c;
    train_config_defaults(&c);
    c.sizes[0] = 2, c.sizes[1] = 32, c.sizes[2] = 32, c.sizes[3] = 5;
    c.head = MLP_HEAD_CLASSIFICATION;
    strcpy(c.tasks.family, "gaussian");
    c.tasks.n_way = 5;
    c.tasks.dim = 2;
    c.k_support = 5;
    c.k_query = 5;
    c.inner_lr = 0.5;
    c.inner_steps = 3;
    c.outer_lr = 0.003;
    c.meta_batch = 10;
    c.iterations = 400;
    Trainer t;
    train(&t, &c);
    EvalCell e = evaluate(&t, 5, 3);
    fprintf(stderr, "gaussian 5-way 5-shot: accuracy %.3f±%.3f (before %.3f)\n", e.mean, e.ci95,
            e.mean_before);
    // labels are permuted per task, so without adaptation accuracy is chance (0.2)
    ck_assert_double_lt(e.mean_before, 0.3);
    ck_assert_double_gt(e.mean - e.ci95, 0.6);
    trainer_free(&t);
}
END_TEST

START_TEST(training_is_bit_identical_across_runs) {
    static const MetaAlgo algos[] = {META_MAML, META_FOMAML, META_METASGD, META_ANIL, META_REPTILE};
    TrainConfig c;
    train_config_defaults(&c);
    c.algo = algos[_i];
    c.iterations = 40;
    c.inner_steps = 2;
    Trainer a, b;
    train(&a, &c);
    train(&b, &c);
    ck_assert_uint_eq(a.N, b.N);
    ck_assert(memcmp(a.params, b.params, a.N * sizeof(real)) == 0);
    ck_assert(memcmp(a.m1, b.m1, a.N * sizeof(real)) == 0);
    // and training moved the parameters: a different seed ends elsewhere
    c.seed = 2;
    Trainer d;
    train(&d, &c);
    ck_assert(memcmp(a.params, d.params, a.N * sizeof(real)) != 0);
    trainer_free(&a), trainer_free(&b), trainer_free(&d);
}
END_TEST

START_TEST(restoring_a_checkpoint_continues_bit_identically) {
    static const MetaAlgo algos[] = {META_MAML, META_METASGD, META_REPTILE};
    TrainConfig c;
    train_config_defaults(&c);
    c.algo = algos[_i];
    c.iterations = 60;
    c.inner_steps = 2;
    if (c.algo == META_REPTILE) c.opt = OPT_SGD; // covers the image without Adam moments
    Trainer a, b, r;
    MsError err = {0};
    train(&a, &c);
    // b runs 25 iterations, is saved and dropped; r is built afresh and restored
    ck_assert_int_eq(trainer_init(&b, &c, &err), MS_OK);
    while (b.t < 25)
        ck_assert_int_eq(trainer_step(&b, NULL, &err), MS_OK);
    size_t n = trainer_state_bytes(&b);
    char *img = malloc(n);
    trainer_save(&b, img);
    trainer_free(&b);
    ck_assert_int_eq(trainer_init(&r, &c, &err), MS_OK);
    ck_assert_int_eq(trainer_restore(&r, img, n, &err), MS_OK);
    ck_assert_int_eq(r.t, 25);
    while (r.t < c.iterations)
        ck_assert_int_eq(trainer_step(&r, NULL, &err), MS_OK);
    ck_assert(memcmp(a.params, r.params, a.N * sizeof(real)) == 0);
    // an image does not restore into another configuration, nor when truncated
    Trainer o;
    c.inner_steps = 3;
    c.sizes[1] = 20;
    ck_assert_int_eq(trainer_init(&o, &c, &err), MS_OK);
    ck_assert_int_eq(trainer_restore(&o, img, n, &err), MS_ERR_INVALID);
    ck_assert_int_eq(trainer_restore(&r, img, n - 1, &err), MS_ERR_INVALID);
    free(img);
    trainer_free(&a), trainer_free(&r), trainer_free(&o);
}
END_TEST

// A pool of `threads` threads (or none for 1), set on t with the given wave (0: automatic).
static TaskPool *go_parallel(Trainer *t, int threads, int wave) {
    MsError err = {0};
    TaskPool *p = NULL;
    if (threads > 1) ck_assert_int_eq(taskpool_create(&p, threads, &err), MS_OK);
    ck_assert_msg(
        trainer_set_parallel(t, threads, wave, threads > 1 ? taskpool_run : NULL, p, &err) == MS_OK,
        "%s", err.msg);
    return p;
}

START_TEST(weights_are_bit_identical_whatever_the_thread_count_and_wave) {
    static const MetaAlgo algos[] = {META_MAML, META_FOMAML,  META_METASGD,
                                     META_ANIL, META_REPTILE, META_PRETRAIN};
    TrainConfig c;
    train_config_defaults(&c);
    c.algo = algos[_i];
    c.iterations = 30;
    c.inner_steps = c.algo == META_PRETRAIN ? 0 : 2;
    c.meta_batch = 11; // waves of 2, 3, 4 and 11 leave remainders
    Trainer ref;
    train(&ref, &c); // one task at a time, no pool
    const struct { int threads, wave; } runs[] = {{1, 4}, {2, 0}, {2, 2}, {3, 4}, {4, 11}};
    for (size_t k = 0; k < sizeof runs / sizeof runs[0]; k++) {
        Trainer t;
        MsError err = {0};
        ck_assert_int_eq(trainer_init(&t, &c, &err), MS_OK);
        TaskPool *p = go_parallel(&t, runs[k].threads, runs[k].wave);
        double loss = NAN;
        TrainStats st;
        while (t.t < c.iterations) {
            ck_assert_msg(trainer_step(&t, &st, &err) == MS_OK, "%s", err.msg);
            loss = st.meta_loss;
        }
        ck_assert_msg(memcmp(ref.params, t.params, ref.N * sizeof(real)) == 0,
                      "%s: %d threads, wave %d: weights differ from one thread",
                      meta_algo_name(c.algo), runs[k].threads, runs[k].wave);
        ck_assert(memcmp(ref.m1, t.m1, ref.N * sizeof(real)) == 0);
        ck_assert(memcmp(ref.m2, t.m2, ref.N * sizeof(real)) == 0);
        ck_assert(isfinite(loss));
        trainer_free(&t);
        taskpool_destroy(p);
    }
    trainer_free(&ref);
}
END_TEST

START_TEST(a_checkpoint_taken_on_three_threads_resumes_on_one_bit_identically) {
    TrainConfig c;
    train_config_defaults(&c);
    c.algo = META_MAML;
    c.iterations = 50;
    c.inner_steps = 2;
    Trainer a, b, r;
    MsError err = {0};
    train(&a, &c);
    ck_assert_int_eq(trainer_init(&b, &c, &err), MS_OK);
    TaskPool *p = go_parallel(&b, 3, 0);
    while (b.t < 20)
        ck_assert_int_eq(trainer_step(&b, NULL, &err), MS_OK);
    size_t n = trainer_state_bytes(&b);
    char *img = malloc(n);
    trainer_save(&b, img);
    trainer_free(&b);
    taskpool_destroy(p);
    ck_assert_int_eq(trainer_init(&r, &c, &err), MS_OK);
    ck_assert_int_eq(trainer_restore(&r, img, n, &err), MS_OK);
    while (r.t < c.iterations)
        ck_assert_int_eq(trainer_step(&r, NULL, &err), MS_OK);
    ck_assert(memcmp(a.params, r.params, a.N * sizeof(real)) == 0);
    free(img);
    trainer_free(&a), trainer_free(&r);
}
END_TEST

START_TEST(divergence_stops_with_numeric_error_and_keeps_parameters) {
    TrainConfig c;
    train_config_defaults(&c);
    c.inner_lr = 10; // far past stability for sinusoid amplitudes up to 5
    c.inner_steps = 5;
    c.iterations = 1000;
    Trainer t;
    MsError err = {0};
    ck_assert_int_eq(trainer_init(&t, &c, &err), MS_OK);
    real *before = malloc(t.N * sizeof(real));
    MsStatus st = MS_OK;
    while (st == MS_OK && t.t < c.iterations) {
        memcpy(before, t.params, t.N * sizeof(real));
        st = trainer_step(&t, NULL, &err);
    }
    ck_assert_int_eq(st, MS_ERR_NUMERIC);
    ck_assert_ptr_nonnull(strstr(err.msg, "non-finite"));
    ck_assert(memcmp(before, t.params, t.N * sizeof(real)) == 0);
    ck_assert(meta_all_finite(t.params, t.N));
    free(before);
    trainer_free(&t);
}
END_TEST

START_TEST(config_validation_names_the_field) {
    TrainConfig c;
    MsError err = {0};
    train_config_defaults(&c);
    ck_assert_int_eq(train_config_validate(&c, &err), MS_OK);
    c.inner_steps = 0;
    ck_assert_int_eq(train_config_validate(&c, &err), MS_ERR_INVALID);
    ck_assert_ptr_nonnull(strstr(err.msg, "inner.steps"));
    train_config_defaults(&c);
    c.sizes[0] = 3;
    ck_assert_int_eq(train_config_validate(&c, &err), MS_ERR_INVALID);
    ck_assert_ptr_nonnull(strstr(err.msg, "architecture.sizes[0]"));
    train_config_defaults(&c);
    c.head = MLP_HEAD_CLASSIFICATION;
    c.sizes[3] = 5;
    ck_assert_int_eq(train_config_validate(&c, &err), MS_ERR_INVALID);
    ck_assert_ptr_nonnull(strstr(err.msg, "architecture.head"));
    train_config_defaults(&c);
    c.outer_lr = NAN;
    ck_assert_int_eq(train_config_validate(&c, &err), MS_ERR_INVALID);
    ck_assert_ptr_nonnull(strstr(err.msg, "outer.lr"));
    train_config_defaults(&c);
    strcpy(c.name, "../etc");
    ck_assert_int_eq(train_config_validate(&c, &err), MS_ERR_INVALID);
    ck_assert_ptr_nonnull(strstr(err.msg, "name"));
    train_config_defaults(&c);
    strcpy(c.tasks.family, "nope");
    ck_assert_int_eq(train_config_validate(&c, &err), MS_ERR_INVALID);
    ck_assert_ptr_nonnull(strstr(err.msg, "tasks.family"));
}
END_TEST

START_TEST(limits_are_checked_before_allocation_and_name_the_quantity) {
    TrainConfig c;
    TrainLimits l;
    MsError err = {0};
    train_config_defaults(&c);
    train_limits_default(&l);
    ck_assert_int_eq(train_config_check_limits(&c, &l, &err), MS_OK);
    l.max_params = 1000; // 1-40-40-1 has 1761
    ck_assert_int_eq(train_config_check_limits(&c, &l, &err), MS_ERR_TOO_LARGE);
    ck_assert_ptr_nonnull(strstr(err.msg, "1761 parameters"));
    train_limits_default(&l);
    // 2000-wide layers (4M parameters), 100 steps, 10000 support rows: ~100 GB of tape
    c.sizes[1] = 2000, c.sizes[2] = 2000;
    c.inner_steps = 100;
    c.k_support = 10000;
    ck_assert_int_eq(train_config_check_limits(&c, &l, &err), MS_ERR_TOO_LARGE);
    ck_assert_ptr_nonnull(strstr(err.msg, "inner.steps"));
    // and trainer_init refuses it without trying to allocate the tape
    Trainer t;
    ck_assert_int_eq(trainer_init(&t, &c, &err), MS_ERR_TOO_LARGE);
    train_config_defaults(&c);
    // past the service's limit: a config value out of range (422 naming the limit), not a body
    // that is too large
    c.iterations = 200000000L;
    ck_assert_int_eq(train_config_check_limits(&c, &l, &err), MS_ERR_INVALID);
    ck_assert_ptr_nonnull(strstr(err.msg, "iterations: must be at most 100000000"));
}
END_TEST

int main(void) {
    openblas_set_num_threads(1);
    Suite *s = suite_create("train");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, maml_beats_unadapted_and_pretrained_baseline_on_sinusoid);
    tcase_add_test(tc, maml_learns_few_shot_gaussian_classification);
    tcase_add_loop_test(tc, training_is_bit_identical_across_runs, 0, 5);
    tcase_add_loop_test(tc, restoring_a_checkpoint_continues_bit_identically, 0, 3);
    tcase_add_loop_test(tc, weights_are_bit_identical_whatever_the_thread_count_and_wave, 0, 6);
    tcase_add_test(tc, a_checkpoint_taken_on_three_threads_resumes_on_one_bit_identically);
    tcase_add_test(tc, divergence_stops_with_numeric_error_and_keeps_parameters);
    tcase_add_test(tc, config_validation_names_the_field);
    tcase_add_test(tc, limits_are_checked_before_allocation_and_name_the_quantity);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
