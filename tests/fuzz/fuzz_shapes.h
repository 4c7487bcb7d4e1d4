/*
 * The model shapes the adapt and predict targets read bodies against: every body is read against
 * each of them, so one corpus serves all and a body that fits one shape is refused by the others
 * (width mismatches, class indices out of range) in the same run.
 */
#ifndef METASERVE_TESTS_FUZZ_SHAPES_H
#define METASERVE_TESTS_FUZZ_SHAPES_H

#include "fuzz_common.h"

#define FUZZ_N_SHAPES 3

// 0: the README's 1-40-40-1 sinusoid regressor; 1: a 2-16-5 classifier (5-way); 2: a 3-8-2
// tanh regressor with Meta-SGD-like defaults (inner steps 3).
static inline void fuzz_shapes(ServingModel m[FUZZ_N_SHAPES]) {
    static const int s0[] = {1, 40, 40, 1}, s1[] = {2, 16, 5}, s2[] = {3, 8, 2};
    MsError err = {0};
    memset(m, 0, FUZZ_N_SHAPES * sizeof *m);
    for (int i = 0; i < FUZZ_N_SHAPES; i++) {
        train_config_defaults(&m[i].cfg);
        snprintf(m[i].name, sizeof m[i].name, "shape%d", i);
        m[i].version = 1;
    }
    m[2].cfg.inner_steps = 3;
    FUZZ_CHECK(mlp_spec_init(&m[0].spec, s0, 4, MLP_ACT_RELU, MLP_HEAD_REGRESSION, &err) == MS_OK);
    FUZZ_CHECK(mlp_spec_init(&m[1].spec, s1, 3, MLP_ACT_RELU, MLP_HEAD_CLASSIFICATION, &err) ==
               MS_OK);
    FUZZ_CHECK(mlp_spec_init(&m[2].spec, s2, 3, MLP_ACT_TANH, MLP_HEAD_REGRESSION, &err) == MS_OK);
}

// Reads a support set against m as the handlers do (adapt_read_support), then makes the checks
// serving_adapt_copy makes before adapting (serving_adapt_check), without adapting.
static inline void fuzz_support(const cJSON *sup, const ServingModel *m, const AdaptLimits *lim,
                                int steps, double lr, long long ttl_s) {
    Req r;
    fuzz_req_init(&r, "", 0);
    float *x = NULL, *y = NULL;
    int n = 0;
    if (!adapt_read_support(&r, sup, &m->spec, lim, &x, &y, &n)) {
        fuzz_check_rejected(&r);
    } else {
        fuzz_check_accepted(&r);
        FUZZ_CHECK(n >= 1 && n <= lim->max_support_rows && x && y);
        AdaptRequest q = {.x = x, .y = y, .n = n, .steps = steps, .lr = lr, .ttl_ms = ttl_s * 1000};
        MsError err = {0};
        MsStatus st = serving_adapt_check(m, &q, lim, &err);
        FUZZ_CHECK(st == MS_OK || ((st == MS_ERR_INVALID || st == MS_ERR_TOO_LARGE) && err.msg[0]));
    }
    free(x);
    free(y);
    fuzz_req_free(&r);
}

#endif
