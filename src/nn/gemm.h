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

// C = beta C + alpha a b^T for an inner dimension of 1: M x N multiply-adds, where a BLAS call
// would cost more in packing and dispatch than the arithmetic.
static inline void gemm_rank1(int ta, int tb, int M, int N, real alpha, const real *A, int lda,
                              const real *B, int ldb, real beta, real *C, int ldc) {
    for (int i = 0; i < M; i++) {
        real a = alpha * (ta ? A[i] : A[(size_t)i * lda]);
        real *c = C + (size_t)i * ldc;
        if (beta == 0) {
            for (int j = 0; j < N; j++)
                c[j] = a * (tb ? B[(size_t)j * ldb] : B[j]);
        } else {
            for (int j = 0; j < N; j++)
                c[j] = beta * c[j] + a * (tb ? B[(size_t)j * ldb] : B[j]);
        }
    }
}

#ifdef MS_REAL_DOUBLE
#define CBLAS_GEMM cblas_dgemm
#define CBLAS_GEMV cblas_dgemv
#else
#define CBLAS_GEMM cblas_sgemm
#define CBLAS_GEMV cblas_sgemv
#endif

/**
 * ta / tb: 1 = transpose that operand. Products with a unit dimension take the cheaper level-2
 * BLAS call (N = 1 or M = 1: a matrix-vector product) or the rank-1 loop (K = 1); everything
 * else is one gemm.
 */
static inline void gemm(int naive, int ta, int tb, int M, int N, int K, real alpha, const real *A,
                        int lda, const real *B, int ldb, real beta, real *C, int ldc) {
    if (M == 0 || N == 0) return;
    if (naive) {
        gemm_naive(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    if (K == 1) {
        gemm_rank1(ta, tb, M, N, alpha, A, lda, B, ldb, beta, C, ldc);
    } else if (N == 1) {
        // c (M) = alpha op(A) (M x K) b (K) + beta c; the column b is strided by ldb unless op(B)
        // is B^T, whose one column is a contiguous row of B.
        CBLAS_GEMV(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, ta ? K : M, ta ? M : K, alpha, A,
                   lda, B, tb ? 1 : ldb, beta, C, ldc);
    } else if (M == 1) {
        // c^T (1 x N) = alpha a^T op(B) + beta c^T  <=>  c = alpha op(B)^T a + beta c
        CBLAS_GEMV(CblasRowMajor, tb ? CblasNoTrans : CblasTrans, tb ? N : K, tb ? K : N, alpha, B,
                   ldb, A, ta ? lda : 1, beta, C, 1);
    } else {
        CBLAS_GEMM(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M,
                   N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    }
}

#endif
