/*
 * The BLAS behind nn/: which OpenBLAS kernel family is in use, and whether a better one exists
 * for this CPU. Debian 12's OpenBLAS (0.3.21) picks its kernels from the CPU model number and
 * falls back to generic SSE3 ("Prescott") kernels on processors newer than it knows, although
 * they run AVX2 or AVX-512 code: three times slower on the products this service does. The binary
 * can then restart itself with OPENBLAS_CORETYPE naming the kernel the CPU's features support
 * (src/main.c); a value already set in the environment is always left alone.
 */
#ifndef METASERVE_NN_BLAS_H
#define METASERVE_NN_BLAS_H

/** OpenBLAS's name for the kernels in use ("SkylakeX", "Haswell", "Prescott", ...). */
const char *blas_core_name(void);

/**
 * The OPENBLAS_CORETYPE to use when OpenBLAS fell back to a generic pre-AVX2 kernel on a CPU that
 * supports AVX-512 ("SkylakeX") or AVX2 with FMA ("Haswell"); NULL when the kernel in use already
 * fits, when OPENBLAS_CORETYPE is set, or when METASERVE_BLAS_AUTOCORE=0.
 */
const char *blas_better_core(void);

/**
 * Puts into the environment what OpenBLAS should have read when it loaded: OPENBLAS_CORETYPE from
 * blas_better_core(), and OPENBLAS_NUM_THREADS=1 when unset (one BLAS thread per caller; it also
 * keeps OpenBLAS from starting idle worker threads that spin on sched_yield). Never changes a
 * value already set. Returns 1 when it changed something: the caller then re-executes itself
 * (`execv("/proc/self/exe", argv)`) so that OpenBLAS loads again with it, else 0.
 */
int blas_setup_env(void);

#endif
