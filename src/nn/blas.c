/*
 * OpenBLAS kernel inspection (see nn/blas.h for why). Reads the CPU's features through the
 * compiler's cpuid helpers on x86-64; elsewhere it never suggests a change.
 */
#include "metaserve/nn/blas.h"

#include <cblas.h>
#include <stdlib.h>
#include <string.h>

const char *blas_core_name(void) {
    const char *n = openblas_get_corename();
    return n ? n : "unknown";
}

const char *blas_better_core(void) {
    const char *env = getenv("OPENBLAS_CORETYPE");
    if (env && *env) return NULL;
    const char *opt = getenv("METASERVE_BLAS_AUTOCORE");
    if (opt && strcmp(opt, "0") == 0) return NULL;
    static const char *const generic[] = {"Prescott", "Core2", "Penryn", "Dunnington",
                                          "Nehalem",  "Atom",  "Katmai", "Northwood"};
    const char *core = blas_core_name();
    int is_generic = 0;
    for (size_t i = 0; i < sizeof generic / sizeof generic[0]; i++)
        is_generic |= strcmp(core, generic[i]) == 0;
    if (!is_generic) return NULL;
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq"))
        return "SkylakeX";
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return "Haswell";
#endif
    return NULL;
}

int blas_setup_env(void) {
    int change = 0;
    const char *core = blas_better_core();
    if (core && setenv("OPENBLAS_CORETYPE", core, 1) == 0) change = 1;
    if (!getenv("OPENBLAS_NUM_THREADS") && setenv("OPENBLAS_NUM_THREADS", "1", 1) == 0) change = 1;
    return change;
}
