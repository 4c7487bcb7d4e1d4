/*
 * Private to nn/: the one matrix-product entry point of the numeric core. Row-major
 * C (M x N) = alpha * op(A) (M x K) * op(B) (K x N) + beta * C, through OpenBLAS (sgemm or dgemm
 * by the build's `real`), or through a naive triple loop with double accumulation when `naive`
 * is set: the reference the BLAS path is tested against.
 */
#ifndef METASERVE_NN_GEMM_H
#define METASERVE_NN_GEMM_H

#include <cblas.h>

#include "metaserve/core/real.h"

static inline void gemm_naive(int ta, int tb, int M, int N, int K, real alpha, const real *A,
                              int lda, const real *B, int ldb, real beta, real *C, int ldc) {
    for (int i = 0; i < M; i++) {
        for (int j = 0; j < N; j++) {
            double acc = 0.0;
            for (int k = 0; k < K; k++) {
                double a = ta ? A[(size_t)k * lda + i] : A[(size_t)i * lda + k];
                double b = tb ? B[(size_t)j * ldb + k] : B[(size_t)k * ldb + j];
                acc += a * b;
            }
            real *c = &C[(size_t)i * ldc + j];
            *c = (real)(alpha * acc + (beta == 0 ? 0.0 : (double)beta * *c));
        }
    }
}

/** ta / tb: 1 = transpose that operand. */
static inline void gemm(int naive, int ta, int tb, int M, int N, int K, real alpha, const real *A,
                        int lda, const real *B, int ldb, real beta, real *C, int ldc) {
    if (M == 0 || N == 0) return;
    if (naive) {
        gemm_naive(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
#ifdef MS_REAL_DOUBLE
    cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, N,
                K, alpha, A, lda, B, ldb, beta, C, ldc);
#else
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, N,
                K, alpha, A, lda, B, ldb, beta, C, ldc);
#endif
}

#endif
