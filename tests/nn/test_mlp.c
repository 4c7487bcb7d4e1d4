/*
 * nn/ exactness, in the double-precision build: the forward pass against an independent naive
 * reference, the gradient against central finite differences of the loss, the R-operator
 * Hessian-vector product against central finite differences of the gradient, HVP symmetry, the
 * BLAS path against the naive loops, and the accumulate (+=) contracts.
 *
 * Finite-difference step: h = 1e-5 on double. Truncation error of a central difference is
 * O(h^2 f''') ~ 1e-10 relative and round-off ~ 1e-16 / h ~ 1e-11, so a correct gradient agrees to
 * better than 1e-8; the bound 1e-6 asked of the engine leaves margin while a wrong term (an
 * error of order 1) fails by orders of magnitude. ReLU is not differentiable at 0: for ReLU nets
 * the points are drawn until every hidden pre-activation is at least 1e-3 away from 0, a hundred
 * times farther than any perturbation h * |input| can move it.
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "../testutil.h"
#include "metaserve/nn/mlp.h"

#define H_FD   1e-5
#define TOL_FD 1e-6

typedef struct {
    MlpSpec spec;
    MlpWork w;
    int B;
    real *theta, *X, *Y, *g, *v, *u, *hv, *tmp;
} Fix;

// Independent reference: hidden pre-activations by plain loops; returns min |z| over hidden units.
static double min_abs_preact(const MlpSpec *s, const real *theta, const real *X, int B) {
    double m = 1e300;
    double *a = malloc(sizeof(double) * MLP_MAX_WIDTH), *z = malloc(sizeof(double) * MLP_MAX_WIDTH);
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
                a[o] = s->act == MLP_ACT_RELU   ? fmax(z[o], 0)
                       : s->act == MLP_ACT_TANH ? tanh(z[o])
                                                : 1 / (1 + exp(-z[o]));
        }
    }
    free(a);
    free(z);
    return m;
}

// Independent reference loss by plain loops.
static double ref_loss(const MlpSpec *s, const real *theta, const real *X, const real *Y, int B) {
    double total = 0;
    double a[64], z[64];
    for (int i = 0; i < B; i++) {
        for (int j = 0; j < s->sizes[0]; j++)
            a[j] = X[(size_t)i * s->sizes[0] + j];
        for (int l = 0; l < s->L; l++) {
            int in = s->sizes[l], out = s->sizes[l + 1];
            for (int o = 0; o < out; o++) {
                double acc = theta[s->b_off[l] + o];
                for (int k = 0; k < in; k++)
                    acc += theta[s->w_off[l] + (size_t)o * in + k] * a[k];
                z[o] = acc;
            }
            for (int o = 0; o < out; o++)
                a[o] = l == s->L - 1            ? z[o]
                       : s->act == MLP_ACT_RELU ? fmax(z[o], 0)
                       : s->act == MLP_ACT_TANH ? tanh(z[o])
                                                : 1 / (1 + exp(-z[o]));
        }
        int O = s->sizes[s->L];
        if (s->head == MLP_HEAD_REGRESSION) {
            for (int o = 0; o < O; o++)
                total += (a[o] - Y[(size_t)i * O + o]) * (a[o] - Y[(size_t)i * O + o]) / O;
        } else {
            double m = a[0], sum = 0;
            for (int o = 1; o < O; o++)
                m = fmax(m, a[o]);
            for (int o = 0; o < O; o++)
                sum += exp(a[o] - m);
            total += log(sum) + m - a[(int)Y[i]];
        }
    }
    return total / B;
}

static void fix_init(Fix *f, const int *sizes, int n, MlpAct act, MlpHead head, int B,
                     uint64_t seed) {
    MsError err = {0};
    ck_assert_int_eq(mlp_spec_init(&f->spec, sizes, n, act, head, &err), MS_OK);
    ck_assert_int_eq(mlp_work_init(&f->w, &f->spec, B, &err), MS_OK);
    f->B = B;
    size_t P = f->spec.P;
    int D = sizes[0], yc = mlp_target_cols(&f->spec);
    f->theta = malloc(P * sizeof(real));
    f->g = calloc(P, sizeof(real));
    f->v = malloc(P * sizeof(real));
    f->u = malloc(P * sizeof(real));
    f->hv = calloc(P, sizeof(real));
    f->tmp = calloc(P, sizeof(real));
    f->X = malloc((size_t)B * D * sizeof(real));
    f->Y = malloc((size_t)B * yc * sizeof(real));
    Rng r;
    // Redraw until ReLU pre-activations are clear of the kink (see the file comment).
    for (uint64_t k = 0;; k++) {
        ck_assert_msg(k < 1000, "no kink-free draw found");
        rng_seed(&r, seed * 1000 + k);
        mlp_init_params(&f->spec, f->theta, &r);
        fill_uniform(f->X, (size_t)B * D, &r, -2, 2);
        if (act != MLP_ACT_RELU || min_abs_preact(&f->spec, f->theta, f->X, B) > 1e-3) break;
    }
    for (int i = 0; i < B; i++) {
        if (head == MLP_HEAD_CLASSIFICATION)
            f->Y[i] = (real)rng_below(&r, (uint64_t)sizes[n - 1]);
        else
            for (int j = 0; j < yc; j++)
                f->Y[(size_t)i * yc + j] = (real)rng_range(&r, -1, 1);
    }
    fill_uniform(f->v, P, &r, -1, 1);
    fill_uniform(f->u, P, &r, -1, 1);
}

static void fix_free(Fix *f) {
    mlp_work_free(&f->w);
    free(f->theta), free(f->g), free(f->v), free(f->u), free(f->hv), free(f->tmp);
    free(f->X), free(f->Y);
}

static double loss_at(Fix *f, const real *theta) {
    return mlp_forward_loss(&f->w, theta, f->X, f->Y, f->B);
}

static void grad_at(Fix *f, const real *theta, real *g) {
    memset(g, 0, f->spec.P * sizeof(real));
    loss_at(f, theta);
    mlp_backward(&f->w, g, theta, 0);
}

static const int SIZES_REG[] = {3, 7, 5, 2};
static const int SIZES_CLS[] = {4, 6, 5, 3};

typedef struct {
    MlpAct act;
    MlpHead head;
} Case;
static const Case CASES[] = {
    {MLP_ACT_TANH, MLP_HEAD_REGRESSION},     {MLP_ACT_RELU, MLP_HEAD_REGRESSION},
    {MLP_ACT_SIGMOID, MLP_HEAD_REGRESSION},  {MLP_ACT_TANH, MLP_HEAD_CLASSIFICATION},
    {MLP_ACT_RELU, MLP_HEAD_CLASSIFICATION}, {MLP_ACT_SIGMOID, MLP_HEAD_CLASSIFICATION},
};
#define N_CASES 6

static void fix_case(Fix *f, int i) {
    const Case *c = &CASES[i];
    const int *s = c->head == MLP_HEAD_REGRESSION ? SIZES_REG : SIZES_CLS;
    fix_init(f, s, 4, c->act, c->head, 9, (uint64_t)i + 1);
}

/* ---- tests ---- */

START_TEST(forward_loss_matches_naive_reference) {
    Fix f;
    fix_case(&f, _i);
    double a = loss_at(&f, f.theta), b = ref_loss(&f.spec, f.theta, f.X, f.Y, f.B);
    // Same arithmetic up to summation order: agreement to 1e-12 relative in double.
    ck_assert_double_eq_tol(a, b, 1e-12 * fabs(b));
    fix_free(&f);
}
END_TEST

START_TEST(gradient_matches_central_differences) {
    Fix f;
    fix_case(&f, _i);
    size_t P = f.spec.P;
    real *fd = malloc(P * sizeof(real)), *th = malloc(P * sizeof(real));
    grad_at(&f, f.theta, f.g);
    memcpy(th, f.theta, P * sizeof(real));
    for (size_t i = 0; i < P; i++) {
        th[i] = f.theta[i] + H_FD;
        double lp = loss_at(&f, th);
        th[i] = f.theta[i] - H_FD;
        double lm = loss_at(&f, th);
        th[i] = f.theta[i];
        fd[i] = (real)((lp - lm) / (2 * H_FD));
    }
    double e = rel_err(f.g, fd, P);
    ck_assert_msg(e <= TOL_FD, "case %d: gradient rel err %.3g", _i, e);
    ck_assert_double_gt(norm2(f.g, P), 1e-3); // a vanishing gradient would make the test vacuous
    free(fd), free(th);
    fix_free(&f);
}
END_TEST

START_TEST(hvp_matches_finite_differences_of_the_gradient) {
    Fix f;
    fix_case(&f, _i);
    size_t P = f.spec.P;
    real *gp = malloc(P * sizeof(real)), *gm = malloc(P * sizeof(real));
    real *th = malloc(P * sizeof(real)), *fd = malloc(P * sizeof(real));
    for (size_t i = 0; i < P; i++)
        th[i] = f.theta[i] + H_FD * f.v[i];
    grad_at(&f, th, gp);
    for (size_t i = 0; i < P; i++)
        th[i] = f.theta[i] - H_FD * f.v[i];
    grad_at(&f, th, gm);
    for (size_t i = 0; i < P; i++)
        fd[i] = (real)(((double)gp[i] - gm[i]) / (2 * H_FD));
    grad_at(&f, f.theta, f.g);
    mlp_hvp(&f.w, f.hv, f.theta, f.v);
    double e = rel_err(f.hv, fd, P);
    ck_assert_msg(e <= TOL_FD, "case %d: HVP rel err %.3g", _i, e);
    ck_assert_double_gt(norm2(f.hv, P), 1e-3);
    free(gp), free(gm), free(th), free(fd);
    fix_free(&f);
}
END_TEST

START_TEST(hvp_is_symmetric) {
    // v^T (H u) = u^T (H v) for the symmetric Hessian; both sides are exact products, so they agree
    // to round-off (1e-10 relative in double).
    Fix f;
    fix_case(&f, _i);
    size_t P = f.spec.P;
    grad_at(&f, f.theta, f.g);
    mlp_hvp(&f.w, f.hv, f.theta, f.u);
    mlp_hvp(&f.w, f.tmp, f.theta, f.v);
    double a = dot(f.v, f.hv, P), b = dot(f.u, f.tmp, P);
    ck_assert_double_eq_tol(a, b, 1e-10 * fmax(fabs(a), 1e-3));
    fix_free(&f);
}
END_TEST

START_TEST(blas_path_matches_naive_loops) {
    // BLAS and the naive loops sum in different orders: in double they agree to 1e-12 relative.
    Fix f;
    fix_case(&f, _i);
    size_t P = f.spec.P;
    int O = f.spec.sizes[f.spec.L];
    real *g2 = calloc(P, sizeof(real)), *h2 = calloc(P, sizeof(real));
    real *out = malloc((size_t)f.B * O * sizeof(real));
    double l1 = loss_at(&f, f.theta);
    memcpy(out, f.w.Z[f.spec.L - 1], (size_t)f.B * O * sizeof(real));
    mlp_backward(&f.w, f.g, f.theta, 0);
    mlp_hvp(&f.w, f.hv, f.theta, f.v);
    f.w.naive = 1;
    double l2 = loss_at(&f, f.theta);
    ck_assert(rel_err(out, f.w.Z[f.spec.L - 1], (size_t)f.B * O) < 1e-12);
    mlp_backward(&f.w, g2, f.theta, 0);
    mlp_hvp(&f.w, h2, f.theta, f.v);
    ck_assert_double_eq_tol(l1, l2, 1e-12 * fabs(l1));
    ck_assert(rel_err(f.g, g2, P) < 1e-12);
    ck_assert(rel_err(f.hv, h2, P) < 1e-12);
    free(g2), free(h2), free(out);
    fix_free(&f);
}
END_TEST

START_TEST(backward_and_hvp_accumulate) {
    Fix f;
    fix_case(&f, _i);
    size_t P = f.spec.P;
    real *g1 = calloc(P, sizeof(real)), *h1 = calloc(P, sizeof(real));
    grad_at(&f, f.theta, g1);
    mlp_hvp(&f.w, h1, f.theta, f.v);
    // a second call on the same state adds the same vector again; BLAS may fold the existing
    // value into its sums in another order, so "twice" holds to round-off (1e-12 relative)
    memcpy(f.g, g1, P * sizeof(real));
    memcpy(f.hv, h1, P * sizeof(real));
    mlp_backward(&f.w, f.g, f.theta, 0);
    mlp_hvp(&f.w, f.hv, f.theta, f.v);
    for (size_t i = 0; i < P; i++) {
        ck_assert(fabs(f.g[i] - 2 * g1[i]) <= 1e-12 * (fabs(g1[i]) + 1e-9));
        ck_assert(fabs(f.hv[i] - 2 * h1[i]) <= 1e-12 * (fabs(h1[i]) + 1e-9));
    }
    free(g1), free(h1);
    fix_free(&f);
}
END_TEST

START_TEST(head_only_backward_matches_full_backward_on_the_head) {
    Fix f;
    fix_case(&f, _i);
    size_t P = f.spec.P, lo = f.spec.w_off[f.spec.L - 1];
    real *g2 = calloc(P, sizeof(real));
    grad_at(&f, f.theta, f.g);
    loss_at(&f, f.theta);
    mlp_backward(&f.w, g2, f.theta, f.spec.L - 1);
    for (size_t i = 0; i < P; i++)
        ck_assert(i < lo ? g2[i] == 0 : g2[i] == f.g[i]);
    free(g2);
    fix_free(&f);
}
END_TEST

START_TEST(spec_rejects_bad_sizes_naming_the_entry) {
    MlpSpec s;
    MsError err = {0};
    ck_assert_int_eq(
        mlp_spec_init(&s, (int[]){1, 0, 1}, 3, MLP_ACT_RELU, MLP_HEAD_REGRESSION, &err),
        MS_ERR_INVALID);
    ck_assert_ptr_nonnull(strstr(err.msg, "sizes[1]"));
    ck_assert_int_eq(mlp_spec_init(&s, (int[]){4}, 1, MLP_ACT_RELU, MLP_HEAD_REGRESSION, &err),
                     MS_ERR_INVALID);
    ck_assert_int_eq(
        mlp_spec_init(&s, (int[]){4, 8, 1}, 3, MLP_ACT_RELU, MLP_HEAD_CLASSIFICATION, &err),
        MS_ERR_INVALID);
    ck_assert_ptr_nonnull(strstr(err.msg, "sizes[2]"));
    ck_assert_int_eq(
        mlp_spec_init(&s, (int[]){1, 40, 40, 1}, 4, MLP_ACT_TANH, MLP_HEAD_REGRESSION, &err),
        MS_OK);
    ck_assert_uint_eq(s.P, 40 + 40 + 1600 + 40 + 40 + 1); // 1-40-40-1 has 1761 parameters
    ck_assert_uint_eq(s.w_off[1], 80);
    ck_assert_uint_eq(s.b_off[2], 1760);
}
END_TEST

START_TEST(init_is_pytorch_uniform_and_seeded) {
    MlpSpec s;
    mlp_spec_init(&s, (int[]){16, 64, 4}, 3, MLP_ACT_RELU, MLP_HEAD_REGRESSION, NULL);
    real *a = malloc(s.P * sizeof(real)), *b = malloc(s.P * sizeof(real));
    Rng r1, r2;
    rng_seed(&r1, 7), rng_seed(&r2, 7);
    mlp_init_params(&s, a, &r1);
    mlp_init_params(&s, b, &r2);
    ck_assert(memcmp(a, b, s.P * sizeof(real)) == 0);
    double mx0 = 0, mx1 = 0;
    for (size_t i = 0; i < s.w_off[1]; i++)
        mx0 = fmax(mx0, fabs(a[i]));
    for (size_t i = s.w_off[1]; i < s.P; i++)
        mx1 = fmax(mx1, fabs(a[i]));
    // bounds 1/sqrt(in): 0.25 for in = 16 and 0.125 for in = 64, and the draws come close to them
    ck_assert(mx0 <= 0.25 && mx0 > 0.24);
    ck_assert(mx1 <= 0.125 && mx1 > 0.12);
    free(a), free(b);
}
END_TEST

int main(void) {
    Suite *s = suite_create("mlp");
    TCase *tc = tcase_create("core");
    tcase_add_loop_test(tc, forward_loss_matches_naive_reference, 0, N_CASES);
    tcase_add_loop_test(tc, gradient_matches_central_differences, 0, N_CASES);
    tcase_add_loop_test(tc, hvp_matches_finite_differences_of_the_gradient, 0, N_CASES);
    tcase_add_loop_test(tc, hvp_is_symmetric, 0, N_CASES);
    tcase_add_loop_test(tc, blas_path_matches_naive_loops, 0, N_CASES);
    tcase_add_loop_test(tc, backward_and_hvp_accumulate, 0, N_CASES);
    tcase_add_loop_test(tc, head_only_backward_matches_full_backward_on_the_head, 0, N_CASES);
    tcase_add_test(tc, spec_rejects_bad_sizes_naming_the_entry);
    tcase_add_test(tc, init_is_pytorch_uniform_and_seeded);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
