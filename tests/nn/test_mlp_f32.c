/*
 * nn/ in the float build the service runs: the BLAS path (sgemm) against the naive reference
 * loops (double accumulation) at the service's real shapes, for the forward output, the gradient
 * and the Hessian-vector product.
 *
 * It runs on the kernels the service runs on: like src/main.c it restarts itself with the
 * OpenBLAS kernel set this CPU supports when OpenBLAS fell back to generic ones (nn/blas.h);
 * CTest also runs it with METASERVE_BLAS_AUTOCORE=0, on whatever OpenBLAS picked by itself.
 *
 * Tolerance: float has 24-bit mantissas (6e-8 unit round-off); sums over up to 784 terms and
 * three layers grow the error to ~1e-5 relative in the worst case, so 1e-4 (norm-relative) accepts
 * every correct summation order while a wrong index or transposition fails by far more.
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "../testutil.h"
#include "metaserve/nn/blas.h"
#include "metaserve/nn/mlp.h"

#include <unistd.h>

static void compare(const int *sizes, int n, MlpAct act, MlpHead head, int B) {
    MlpSpec s;
    MlpWork w;
    ck_assert_int_eq(mlp_spec_init(&s, sizes, n, act, head, NULL), MS_OK);
    ck_assert_int_eq(mlp_work_init(&w, &s, B, NULL), MS_OK);
    size_t P = s.P;
    int D = sizes[0], O = sizes[n - 1], yc = mlp_target_cols(&s);
    real *th = malloc(P * sizeof(real)), *v = malloc(P * sizeof(real));
    real *g1 = calloc(P, sizeof(real)), *g2 = calloc(P, sizeof(real));
    real *h1 = calloc(P, sizeof(real)), *h2 = calloc(P, sizeof(real));
    real *X = malloc((size_t)B * D * sizeof(real)), *Y = malloc((size_t)B * yc * sizeof(real));
    real *out = malloc((size_t)B * O * sizeof(real));
    Rng r;
    rng_seed(&r, 99);
    mlp_init_params(&s, th, &r);
    fill_uniform(v, P, &r, -1, 1);
    fill_uniform(X, (size_t)B * D, &r, -1, 1);
    for (int i = 0; i < B * yc; i++)
        Y[i] = head == MLP_HEAD_CLASSIFICATION ? (real)(i % O) : (real)rng_range(&r, -1, 1);
    double l1 = mlp_forward_loss(&w, th, X, Y, B);
    memcpy(out, w.Z[s.L - 1], (size_t)B * O * sizeof(real));
    mlp_backward(&w, g1, th, 0);
    mlp_hvp(&w, h1, th, v);
    w.naive = 1;
    double l2 = mlp_forward_loss(&w, th, X, Y, B);
    mlp_backward(&w, g2, th, 0);
    mlp_hvp(&w, h2, th, v);
    ck_assert_double_eq_tol(l1, l2, 1e-4 * fabs(l2));
    ck_assert_msg(rel_err(out, w.Z[s.L - 1], (size_t)B * O) < 1e-4, "output");
    ck_assert_msg(rel_err(g1, g2, P) < 1e-4, "gradient rel err %.3g", rel_err(g1, g2, P));
    ck_assert_msg(rel_err(h1, h2, P) < 1e-4, "hvp rel err %.3g", rel_err(h1, h2, P));
    ck_assert_double_gt(norm2(h2, P), 0);
    free(th), free(v), free(g1), free(g2), free(h1), free(h2), free(X), free(Y), free(out);
    mlp_work_free(&w);
}

START_TEST(sgemm_path_matches_naive_on_the_classic_sinusoid_net) {
    compare((int[]){1, 40, 40, 1}, 4, MLP_ACT_RELU, MLP_HEAD_REGRESSION, 10);
    compare((int[]){1, 40, 40, 1}, 4, MLP_ACT_TANH, MLP_HEAD_REGRESSION, 10);
}
END_TEST

START_TEST(sgemm_path_matches_naive_on_a_wide_classifier) {
    compare((int[]){784, 256, 256, 5}, 4, MLP_ACT_RELU, MLP_HEAD_CLASSIFICATION, 25);
    compare((int[]){64, 32, 5}, 3, MLP_ACT_SIGMOID, MLP_HEAD_CLASSIFICATION, 7);
}
END_TEST

int main(int argc, char **argv) {
    (void)argc;
    if (blas_setup_env()) execv("/proc/self/exe", argv);
    fprintf(stderr, "test_mlp_f32: OpenBLAS kernels %s\n", blas_core_name());
    Suite *s = suite_create("mlp_f32");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, sgemm_path_matches_naive_on_the_classic_sinusoid_net);
    tcase_add_test(tc, sgemm_path_matches_naive_on_a_wide_classifier);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
