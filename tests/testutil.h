/*
 * Small helpers shared by the numeric test suites: random fills from an explicit Rng, and the
 * norm-relative error ||a - b|| / max(||a||, ||b||, tiny) in double.
 */
#ifndef METASERVE_TESTUTIL_H
#define METASERVE_TESTUTIL_H

#include <math.h>
#include <stddef.h>

#include "metaserve/core/real.h"
#include "metaserve/core/rng.h"

static inline void fill_uniform(real *x, size_t n, Rng *r, double lo, double hi) {
    for (size_t i = 0; i < n; i++)
        x[i] = (real)rng_range(r, lo, hi);
}

static inline double norm2(const real *x, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += (double)x[i] * x[i];
    return sqrt(s);
}

static inline double rel_err(const real *a, const real *b, size_t n) {
    double d = 0;
    for (size_t i = 0; i < n; i++) {
        double e = (double)a[i] - (double)b[i];
        d += e * e;
    }
    double s = fmax(norm2(a, n), norm2(b, n));
    return sqrt(d) / fmax(s, 1e-300);
}

static inline double dot(const real *a, const real *b, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += (double)a[i] * b[i];
    return s;
}

#endif
