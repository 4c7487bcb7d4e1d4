/*
 * SHA-256 (FIPS 180-4), for the API keys: a key file may hold a key's digest instead of the key,
 * and every presented key is hashed and compared digest to digest. Not a general crypto library:
 * no HMAC, no other lengths. Checked against the FIPS 180-2 test vectors (tests/http/test_keys.c).
 *
 * Usage:
 *     unsigned char d[SHA256_BYTES];
 *     sha256(d, key, strlen(key));                  // one shot
 *     Sha256 c; sha256_init(&c); sha256_update(&c, part, n); ...; sha256_final(&c, d);
 */
#ifndef METASERVE_HTTP_SHA256_H
#define METASERVE_HTTP_SHA256_H

#include <stddef.h>
#include <stdint.h>

#define SHA256_BYTES 32

typedef struct {
    uint32_t h[8];         // the chaining state H0..H7
    uint64_t bits;         // message length so far, in bits
    unsigned char buf[64]; // a partial block
    size_t n;              // bytes in buf (0..63)
} Sha256;

/** Starts a digest (the initial hash value of FIPS 180-4 §5.3.3). */
void sha256_init(Sha256 *c);
/** Adds n bytes of data (borrowed for the call; NULL only with n 0). */
void sha256_update(Sha256 *c, const void *data, size_t n);
/** Pads, writes the 32-byte digest to out and wipes the state. */
void sha256_final(Sha256 *c, unsigned char out[SHA256_BYTES]);
/** The digest of data[0..n) in one call. */
void sha256(unsigned char out[SHA256_BYTES], const void *data, size_t n);

#endif
