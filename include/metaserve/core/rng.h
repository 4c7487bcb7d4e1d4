/*
 * Seeded, serialisable random numbers: xoshiro256** seeded through splitmix64. All randomness in
 * metaserve flows through an explicit Rng *; the state is four 64-bit words that can be copied
 * into a checkpoint and restored bit for bit. Not thread-safe: one Rng per thread or per job.
 *
 * Usage:
 *     Rng r; rng_seed(&r, 42);
 *     double u = rng_uniform(&r);          // [0, 1)
 *     double a = rng_range(&r, 0.1, 5.0);  // [0.1, 5.0)
 */
#ifndef METASERVE_CORE_RNG_H
#define METASERVE_CORE_RNG_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint64_t s[4]; // xoshiro256** state; never all zero
} Rng;

/** Seeds from one 64-bit value (any value, including 0). */
void rng_seed(Rng *r, uint64_t seed);
/** Next raw 64-bit output. */
uint64_t rng_u64(Rng *r);
/** Uniform double in [0, 1) with 53 random bits. */
double rng_uniform(Rng *r);
/** Uniform double in [lo, hi). */
double rng_range(Rng *r, double lo, double hi);
/** Standard normal by Box-Muller (two uniforms per call, no cached spare: state stays 4 words). */
double rng_normal(Rng *r);
/**
 * Fills out[0..n) with standard normals by Marsaglia's polar method: one log and one square root
 * per two values, no trigonometry (several times cheaper than rng_normal per value). For odd n
 * the spare of the last pair is dropped, so the stream depends only on the sequence of n's.
 */
void rng_normal_fill(Rng *r, double *out, size_t n);
/** Uniform integer in [0, n), unbiased; n > 0. */
uint64_t rng_below(Rng *r, uint64_t n);
/** Derives an independent stream from r (for per-purpose generators), advancing r. */
void rng_split(Rng *r, Rng *child);

#endif
