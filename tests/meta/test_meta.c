/*
 * meta/ exactness, in the double-precision build: every meta-gradient against central finite
 * differences of the whole adapt-then-query-loss function F(theta) = L_q(adapt_K(theta)), for
 * MAML (1 and 3 steps), Meta-SGD (weights and rates) and ANIL, with tanh and ReLU, MSE and
 * cross-entropy; FOMAML = MAML without the Hessian term; Meta-SGD with all rates = alpha = MAML;
 * Reptile's direction; and the non-finite guard.
 *
 * Finite differences: h = 1e-5 in double. F is smooth at the test points (ReLU points are redrawn
 * until every hidden pre-activation of every inner step is >= 1e-3 from 0), so the central
 * difference is accurate to ~1e-9 relative; the engine must agree to 1e-6 (norm-relative). To
 * show the check has teeth, the first-order (FOMAML) gradient must miss the same finite
 * differences by more than 1e-3: the second-order term is not negligible at these points.
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "../testutil.h"
#include "metaserve/meta/meta.h"

#define H_FD   1e-5
#define TOL_FD 1e-6

typedef struct {
    MlpSpec spec;
    MetaAlgo algo;
    int K, ns, nq;
    real alpha;
    real *theta, *lrs, *xs, *ys, *xq, *yq;
    MlpWork w;
    real *buf, *grad;
} Prob;

// min |z| over hidden pre-activations of rows X at theta (reference loops).
static double min_abs_preact(const MlpSpec *s, const real *theta, const real *X, int B) {
    double m = 1e300, a[64], z[64];
    for (int i = 0; i < B; i++) {
        for (int j = 0; j < s->sizes[0]; j++)
            a[j] = X[(size_t)i * s->sizes[0] + j];
        for (int l = 0; l < s->L - 1; l++) {
            int in = s->sizes[l], out = s->sizes[l + 1];
            for (int o = 0; o < out; o++) {
                double acc = theta[s->b_off[l] + o];
                for (int k = 0; k < in; k++)
                    acc += theta[s->w_off[l] + (size_t)o * in + k] * a[k];
                z[o] = acc;
                m = fmin(m, fabs(acc));
            }
            for (int o = 0; o < out; o++)
                a[o] = s->act == MLP_ACT_RELU ? fmax(z[o], 0) : tanh(z[o]);
        }
    }
    return m;
}

// F(theta, lrs) = L_q(adapt_K(theta)).
static double F(Prob *p, const real *theta, const real *lrs) {
    MsStatus st = meta_adapt(&p->w, p->buf, p->grad, p->algo, theta, lrs, p->alpha, p->K, p->xs,
                             p->ys, p->ns, NULL, NULL);
    ck_assert_int_eq(st, MS_OK);
    mlp_forward(&p->w, p->buf, p->xq, p->nq);
    return mlp_loss_only(&p->w, p->yq);
}

// Smallest distance from a ReLU kink along the whole inner trajectory, support and query.
static double kink_margin(Prob *p) {
    size_t P = p->spec.P;
    real *th = malloc(P * sizeof(real));
    memcpy(th, p->theta, P * sizeof(real));
    double m = 1e300;
    for (int j = 0; j <= p->K; j++) {
        m = fmin(m, min_abs_preact(&p->spec, th, p->xs, p->ns));
        m = fmin(m, min_abs_preact(&p->spec, th, p->xq, p->nq));
        if (j == p->K) break;
        meta_adapt(&p->w, p->buf, p->grad, p->algo, th, p->lrs, p->alpha, 1, p->xs, p->ys, p->ns,
                   NULL, NULL);
        memcpy(th, p->buf, P * sizeof(real));
    }
    free(th);
    return m;
}

static void prob_init(Prob *p, MetaAlgo algo, MlpAct act, MlpHead head, int K, uint64_t seed) {
    memset(p, 0, sizeof *p);
    static const int reg[] = {2, 8, 6, 1}, cls[] = {3, 8, 6, 3};
    const int *sizes = head == MLP_HEAD_REGRESSION ? reg : cls;
    ck_assert_int_eq(mlp_spec_init(&p->spec, sizes, 4, act, head, NULL), MS_OK);
    p->algo = algo;
    p->K = K;
    p->ns = 6;
    p->nq = 7;
    p->alpha = 0.3; // large enough that the Hessian term matters at the test points
    size_t P = p->spec.P;
    int D = sizes[0], O = sizes[3], yc = mlp_target_cols(&p->spec);
    p->theta = malloc(P * sizeof(real));
    p->lrs = malloc(P * sizeof(real));
    p->buf = malloc(P * sizeof(real));
    p->grad = malloc(P * sizeof(real));
    p->xs = malloc((size_t)p->ns * D * sizeof(real));
    p->xq = malloc((size_t)p->nq * D * sizeof(real));
    p->ys = malloc((size_t)p->ns * yc * sizeof(real));
    p->yq = malloc((size_t)p->nq * yc * sizeof(real));
    mlp_work_init(&p->w, &p->spec, p->nq > p->ns ? p->nq : p->ns, NULL);
    Rng r;
    for (uint64_t k = 0;; k++) {
        ck_assert_msg(k < 1000, "no kink-free draw found");
        rng_seed(&r, seed * 7919 + k);
        mlp_init_params(&p->spec, p->theta, &r);
        for (size_t i = 0; i < P; i++)
            p->theta[i] *= 2; // livelier than the default scale: larger curvature
        fill_uniform(p->xs, (size_t)p->ns * D, &r, -2, 2);
        fill_uniform(p->xq, (size_t)p->nq * D, &r, -2, 2);
        for (int i = 0; i < p->ns; i++)
            for (int j = 0; j < yc; j++)
                p->ys[(size_t)i * yc + j] = head == MLP_HEAD_CLASSIFICATION
                                                ? (real)rng_below(&r, (uint64_t)O)
                                                : (real)rng_range(&r, -1, 1);
        for (int i = 0; i < p->nq; i++)
            for (int j = 0; j < yc; j++)
                p->yq[(size_t)i * yc + j] = head == MLP_HEAD_CLASSIFICATION
                                                ? (real)rng_below(&r, (uint64_t)O)
                                                : (real)rng_range(&r, -1, 1);
        // Meta-SGD rates: positive, distinct per parameter around alpha
        for (size_t i = 0; i < P; i++)
            p->lrs[i] = (real)rng_range(&r, 0.5 * p->alpha, 1.5 * p->alpha);
        if (act != MLP_ACT_RELU || kink_margin(p) > 1e-3) break;
    }
}

static void prob_free(Prob *p) {
    mlp_work_free(&p->w);
    free(p->theta), free(p->lrs), free(p->buf), free(p->grad);
    free(p->xs), free(p->xq), free(p->ys), free(p->yq);
}

// Central differences of F over theta (and the rates when fd_lrs != NULL).
static void fd_grad(Prob *p, real *fd_theta, real *fd_lrs) {
    size_t P = p->spec.P;
    const real *lrs = p->algo == META_METASGD ? p->lrs : NULL;
    for (size_t i = 0; i < P; i++) {
        real t = p->theta[i];
        p->theta[i] = t + H_FD;
        double fp = F(p, p->theta, lrs);
        p->theta[i] = t - H_FD;
        double fm = F(p, p->theta, lrs);
        p->theta[i] = t;
        fd_theta[i] = (real)((fp - fm) / (2 * H_FD));
    }
    for (size_t i = 0; fd_lrs && i < P; i++) {
        real t = p->lrs[i];
        p->lrs[i] = t + H_FD;
        double fp = F(p, p->theta, p->lrs);
        p->lrs[i] = t - H_FD;
        double fm = F(p, p->theta, p->lrs);
        p->lrs[i] = t;
        fd_lrs[i] = (real)((fp - fm) / (2 * H_FD));
    }
}

// The engine's meta-gradient of one task.
static void engine_grad(Prob *p, MetaAlgo algo, real *g, real *glr, MetaTaskResult *res) {
    MetaWork m;
    size_t P = p->spec.P;
    ck_assert_int_eq(meta_work_init(&m, &p->spec, algo, p->K, p->ns, p->nq, NULL), MS_OK);
    memset(g, 0, P * sizeof(real));
    if (glr) memset(glr, 0, P * sizeof(real));
    ck_assert_int_eq(meta_task_grad(&m, g, glr, p->theta, algo == META_METASGD ? p->lrs : NULL,
                                    p->alpha, p->xs, p->ys, p->ns, p->xq, p->yq, p->nq, 1, res),
                     MS_OK);
    meta_work_free(&m);
}

typedef struct {
    MetaAlgo algo;
    MlpAct act;
    MlpHead head;
    int K;
} MCase;

static const MCase MCASES[] = {
    {META_MAML, MLP_ACT_TANH, MLP_HEAD_REGRESSION, 1},
    {META_MAML, MLP_ACT_TANH, MLP_HEAD_REGRESSION, 3},
    {META_MAML, MLP_ACT_RELU, MLP_HEAD_REGRESSION, 1},
    {META_MAML, MLP_ACT_RELU, MLP_HEAD_REGRESSION, 3},
    {META_MAML, MLP_ACT_TANH, MLP_HEAD_CLASSIFICATION, 1},
    {META_MAML, MLP_ACT_TANH, MLP_HEAD_CLASSIFICATION, 3},
    {META_MAML, MLP_ACT_RELU, MLP_HEAD_CLASSIFICATION, 3},
    {META_METASGD, MLP_ACT_TANH, MLP_HEAD_REGRESSION, 3},
    {META_METASGD, MLP_ACT_RELU, MLP_HEAD_REGRESSION, 2},
    {META_METASGD, MLP_ACT_TANH, MLP_HEAD_CLASSIFICATION, 2},
    {META_METASGD, MLP_ACT_RELU, MLP_HEAD_CLASSIFICATION, 1},
    {META_ANIL, MLP_ACT_TANH, MLP_HEAD_REGRESSION, 3},
    {META_ANIL, MLP_ACT_RELU, MLP_HEAD_REGRESSION, 1},
    {META_ANIL, MLP_ACT_TANH, MLP_HEAD_CLASSIFICATION, 3},
    {META_ANIL, MLP_ACT_RELU, MLP_HEAD_CLASSIFICATION, 2},
};
#define N_MCASES ((int)(sizeof MCASES / sizeof MCASES[0]))

START_TEST(meta_gradient_matches_finite_differences_of_adapt_then_query_loss) {
    const MCase *c = &MCASES[_i];
    Prob p;
    prob_init(&p, c->algo, c->act, c->head, c->K, (uint64_t)_i + 11);
    size_t P = p.spec.P;
    int sgd = c->algo == META_METASGD;
    real *g = malloc(P * sizeof(real)), *glr = malloc(P * sizeof(real));
    real *fd = malloc(P * sizeof(real)), *fdl = malloc(P * sizeof(real));
    MetaTaskResult res;
    engine_grad(&p, c->algo, g, sgd ? glr : NULL, &res);
    fd_grad(&p, fd, sgd ? fdl : NULL);
    double e = rel_err(g, fd, P);
    ck_assert_msg(e <= TOL_FD, "case %d (%s K=%d): meta-gradient rel err %.3g", _i,
                  meta_algo_name(c->algo), c->K, e);
    ck_assert_double_gt(norm2(fd, P), 1e-3);
    if (sgd) {
        double el = rel_err(glr, fdl, P);
        ck_assert_msg(el <= TOL_FD, "case %d: rate gradient rel err %.3g", _i, el);
        ck_assert_double_gt(norm2(fdl, P), 1e-3);
    }
    // The reported query loss is F itself.
    double f = F(&p, p.theta, sgd ? p.lrs : NULL);
    ck_assert_double_eq_tol(res.query_loss, f, 1e-12 * fabs(f));
    // Teeth: the first-order gradient (Hessian term dropped) is far from the finite differences.
    if (c->algo == META_MAML) {
        engine_grad(&p, META_FOMAML, g, NULL, &res);
        ck_assert_msg(rel_err(g, fd, P) > 1e-3, "second-order term negligible: test is vacuous");
    }
    free(g), free(glr), free(fd), free(fdl);
    prob_free(&p);
}
END_TEST

START_TEST(fomaml_is_the_query_gradient_at_the_adapted_weights) {
    Prob p;
    prob_init(&p, META_FOMAML, MLP_ACT_TANH, _i ? MLP_HEAD_CLASSIFICATION : MLP_HEAD_REGRESSION, 3,
              101 + (uint64_t)_i);
    size_t P = p.spec.P;
    real *g = malloc(P * sizeof(real)), *ref = calloc(P, sizeof(real));
    MetaTaskResult res;
    engine_grad(&p, META_FOMAML, g, NULL, &res);
    F(&p, p.theta, NULL); // leaves adapt_K(theta) in p.buf and its query forward in p.w
    mlp_forward_loss(&p.w, p.buf, p.xq, p.yq, p.nq);
    mlp_backward(&p.w, ref, p.buf, 0);
    // identical arithmetic on identical inputs: equal to 1e-13 relative
    ck_assert(rel_err(g, ref, P) < 1e-13);
    free(g), free(ref);
    prob_free(&p);
}
END_TEST

START_TEST(metasgd_with_every_rate_alpha_equals_maml) {
    Prob p;
    prob_init(&p, META_METASGD, MLP_ACT_TANH, _i ? MLP_HEAD_CLASSIFICATION : MLP_HEAD_REGRESSION, 3,
              201 + (uint64_t)_i);
    size_t P = p.spec.P;
    for (size_t i = 0; i < P; i++)
        p.lrs[i] = p.alpha;
    real *g1 = malloc(P * sizeof(real)), *g2 = malloc(P * sizeof(real));
    real *glr = malloc(P * sizeof(real));
    MetaTaskResult r1, r2;
    engine_grad(&p, META_METASGD, g1, glr, &r1);
    engine_grad(&p, META_MAML, g2, NULL, &r2);
    // the same products in the same order up to the alpha multiply placement: 1e-12 relative
    ck_assert(rel_err(g1, g2, P) < 1e-12);
    ck_assert_double_eq_tol(r1.query_loss, r2.query_loss, 1e-14);
    free(g1), free(g2), free(glr);
    prob_free(&p);
}
END_TEST

START_TEST(reptile_direction_points_from_adapted_weights_to_theta) {
    Prob p;
    prob_init(&p, META_REPTILE, MLP_ACT_TANH, MLP_HEAD_REGRESSION, 4, 301);
    size_t P = p.spec.P;
    real *g = malloc(P * sizeof(real)), *ref = malloc(P * sizeof(real));
    MetaTaskResult res;
    engine_grad(&p, META_REPTILE, g, NULL, &res);
    F(&p, p.theta, NULL);
    for (size_t i = 0; i < P; i++)
        ref[i] = p.theta[i] - p.buf[i];
    ck_assert(rel_err(g, ref, P) < 1e-14);
    ck_assert_double_gt(norm2(ref, P), 1e-3);
    free(g), free(ref);
    prob_free(&p);
}
END_TEST

START_TEST(anil_changes_only_the_head_in_the_inner_loop) {
    Prob p;
    prob_init(&p, META_ANIL, MLP_ACT_TANH, MLP_HEAD_REGRESSION, 3, 401);
    size_t P = p.spec.P, lo = p.spec.w_off[p.spec.L - 1];
    F(&p, p.theta, NULL);
    ck_assert(memcmp(p.buf, p.theta, lo * sizeof(real)) == 0);
    ck_assert(memcmp(p.buf + lo, p.theta + lo, (P - lo) * sizeof(real)) != 0);
    prob_free(&p);
}
END_TEST

START_TEST(non_finite_loss_is_reported_and_nothing_accumulated) {
    Prob p;
    prob_init(&p, META_MAML, MLP_ACT_TANH, MLP_HEAD_REGRESSION, 2, 501);
    size_t P = p.spec.P;
    p.ys[0] = (real)NAN;
    MetaWork m;
    ck_assert_int_eq(meta_work_init(&m, &p.spec, META_MAML, 2, p.ns, p.nq, NULL), MS_OK);
    real *g = calloc(P, sizeof(real));
    MetaTaskResult res;
    ck_assert_int_eq(meta_task_grad(&m, g, NULL, p.theta, NULL, p.alpha, p.xs, p.ys, p.ns, p.xq,
                                    p.yq, p.nq, 0, &res),
                     MS_ERR_NUMERIC);
    for (size_t i = 0; i < P; i++)
        ck_assert(g[i] == 0);
    // a diverging inner rate also stops cleanly
    p.ys[0] = 0;
    ck_assert_int_eq(meta_task_grad(&m, g, NULL, p.theta, NULL, (real)1e300, p.xs, p.ys, p.ns, p.xq,
                                    p.yq, p.nq, 0, &res),
                     MS_ERR_NUMERIC);
    for (size_t i = 0; i < P; i++)
        ck_assert(g[i] == 0);
    ck_assert_int_eq(meta_adapt(&p.w, p.buf, p.grad, META_MAML, p.theta, NULL, (real)1e300, 3, p.xs,
                                p.ys, p.ns, NULL, NULL),
                     MS_ERR_NUMERIC);
    free(g);
    meta_work_free(&m);
    prob_free(&p);
}
END_TEST

START_TEST(support_losses_are_reported_along_the_trajectory) {
    Prob p;
    prob_init(&p, META_MAML, MLP_ACT_TANH, MLP_HEAD_REGRESSION, 3, 601);
    size_t P = p.spec.P;
    MetaWork m;
    meta_work_init(&m, &p.spec, META_MAML, 3, p.ns, p.nq, NULL);
    real *g = calloc(P, sizeof(real));
    MetaTaskResult res;
    meta_task_grad(&m, g, NULL, p.theta, NULL, (real)0.05, p.xs, p.ys, p.ns, p.xq, p.yq, p.nq, 1,
                   &res);
    double before, after;
    meta_adapt(&p.w, p.buf, p.grad, META_MAML, p.theta, NULL, (real)0.05, 3, p.xs, p.ys, p.ns,
               &before, &after);
    ck_assert_double_eq_tol(m.support_loss[0], before, 1e-14);
    ck_assert_double_eq_tol(m.support_loss[3], after, 1e-14);
    ck_assert_double_lt(after, before); // small steps of gradient descent lower the loss
    mlp_forward(&p.w, p.theta, p.xq, p.nq);
    ck_assert_double_eq_tol(res.query_loss_initial, mlp_loss_only(&p.w, p.yq), 1e-14);
    free(g);
    meta_work_free(&m);
    prob_free(&p);
}
END_TEST

int main(void) {
    Suite *s = suite_create("meta");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, meta_gradient_matches_finite_differences_of_adapt_then_query_loss, 0,
                        N_MCASES);
    tcase_add_loop_test(tc, fomaml_is_the_query_gradient_at_the_adapted_weights, 0, 2);
    tcase_add_loop_test(tc, metasgd_with_every_rate_alpha_equals_maml, 0, 2);
    tcase_add_test(tc, reptile_direction_points_from_adapted_weights_to_theta);
    tcase_add_test(tc, anil_changes_only_the_head_in_the_inner_loop);
    tcase_add_test(tc, non_finite_loss_is_reported_and_nothing_accumulated);
    tcase_add_test(tc, support_losses_are_reported_along_the_trajectory);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
