/*
 * xoshiro256** (Blackman & Vigna) with splitmix64 seeding. Owns no memory. Deterministic across
 * platforms: only integer arithmetic and IEEE double conversions of 53-bit integers, except
 * rng_normal, which uses libm log/cos/sqrt (deterministic on one build, as required).
 */
#include "metaserve/core/rng.h"

#include <math.h>

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static inline uint64_t rotl(uint64_t x, int k) {
    return (x << k) | (x >> (64 - k));
}

void rng_seed(Rng *r, uint64_t seed) {
    uint64_t x = seed;
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64(&x);
}

uint64_t rng_u64(Rng *r) {
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double rng_uniform(Rng *r) {
    return (double)(rng_u64(r) >> 11) * 0x1.0p-53;
}

double rng_range(Rng *r, double lo, double hi) {
    return lo + (hi - lo) * rng_uniform(r);
}

double rng_normal(Rng *r) {
    // 1 - u lies in (0, 1], so the log is finite.
    double u1 = 1.0 - rng_uniform(r);
    double u2 = rng_uniform(r);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586476925 * u2);
}

void rng_normal_fill(Rng *r, double *out, size_t n) {
    size_t i = 0;
    while (i < n) {
        // (u, v) uniform in the square; accept inside the unit disc (probability pi/4)
        double u = 2.0 * rng_uniform(r) - 1.0, v = 2.0 * rng_uniform(r) - 1.0;
        double s = u * u + v * v;
        if (s >= 1.0 || s == 0.0) continue;
        double f = sqrt(-2.0 * log(s) / s);
        out[i++] = u * f;
        if (i < n) out[i++] = v * f;
    }
}

uint64_t rng_below(Rng *r, uint64_t n) {
    // Lemire-style rejection on the top of the range keeps the result unbiased.
    uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t x;
    do {
        x = rng_u64(r);
    } while (x >= limit);
    return x % n;
}

void rng_split(Rng *r, Rng *child) {
    rng_seed(child, rng_u64(r) ^ 0x5851f42d4c957f2dULL);
}
