/*
 * Helpers shared by the benchmark programs: clocks, peak RSS, percentiles, JSON number output,
 * temporary-directory removal, and the OpenBLAS start-up restart the service also does
 * (nn/blas.h), so that benchmarks measure the kernels the service runs on.
 */
#ifndef METASERVE_BENCH_UTIL_H
#define METASERVE_BENCH_UTIL_H

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "metaserve/core/status.h"
#include "metaserve/nn/blas.h"

static inline double now_s(clockid_t id) {
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static inline double now_us(void) {
    return 1e6 * now_s(CLOCK_MONOTONIC);
}

static inline double peak_rss_mb(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_maxrss / 1024.0; // ru_maxrss is in KiB on Linux
}

static inline int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

// Nearest-rank percentile (p in (0, 1]) of v[0..n); sorts v in place.
static inline double pct(double *v, size_t n, double p) {
    MS_ASSERT(n > 0);
    qsort(v, n, sizeof *v, cmp_double);
    size_t k = (size_t)ceil(p * (double)n);
    return v[k > 0 ? k - 1 : 0];
}

static inline double mean(const double *v, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += v[i];
    return n ? s / (double)n : NAN;
}

// ,"key":x as a JSON number, or null when x is not finite.
static inline void print_num(const char *key, double x, int decimals) {
    if (isfinite(x))
        printf(",\"%s\":%.*f", key, decimals, x);
    else
        printf(",\"%s\":null", key);
}

// Removes every entry of dir (a database, its -wal and -shm files), then dir itself; notes
// failures on f.
static inline void remove_dir(const char *dir, FILE *f) {
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *e;
        char path[512];
        while ((e = readdir(d)) != NULL) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
            if (unlink(path) != 0) fprintf(f, "cannot remove %s\n", path);
        }
        closedir(d);
    }
    if (rmdir(dir) != 0) fprintf(f, "cannot remove %s\n", dir);
}

// Like src/main.c: when OpenBLAS fell back to generic kernels (or OPENBLAS_NUM_THREADS is unset),
// restart once with the environment OpenBLAS should have read; METASERVE_BLAS_AUTOCORE=0 measures
// the fallback instead.
static inline void blas_autocore(char **argv) {
    if (blas_setup_env()) execv("/proc/self/exe", argv);
}

#endif
