/*
 * Blob codec: a typed array as a self-checking byte string. This is the on-disk form of every
 * array the store keeps (model parameters, Meta-SGD rates, dataset arrays, adapted parameters,
 * job checkpoints). Pure C with no SQLite, so it can be tested and fuzzed on its own.
 *
 * Layout (every field little-endian): a 24-byte header, then the payload.
 *
 *     offset  size  field
 *          0     4  magic "MSBL"
 *          4     2  format version (BLOB_FORMAT_VERSION)
 *          6     2  element type (BlobType)
 *          8     8  element count n
 *         16     8  checksum: FNV-1a 64 over header bytes 0..15, then over the payload
 *         24  n*sz  the elements (sz = 4 for f32 and i32, 1 for bytes)
 *
 * The checksum covers the header fields as well as the payload, so a changed type or count is
 * caught even where it would still be self-consistent. FNV-1a detects every single-byte change
 * (each step (h ^ b) * prime is a bijection of h for fixed b and of b for fixed h).
 *
 * Decoding never reads outside [blob, blob + len) and never trusts the count before checking
 * count * sz == len - 24 without overflow. Every failure is MS_ERR_DB with "corrupt" in the
 * message (MS_ERR_NOMEM when an allocation fails).
 *
 * Usage:
 *     void *b; size_t len;
 *     if (blob_encode_alloc(&b, &len, BLOB_F32, params, P, &err) != MS_OK) ...;
 *     float *back; size_t n;
 *     if (blob_decode_alloc((void **)&back, &n, b, len, BLOB_F32, &err) != MS_OK) ...;
 *     free(b); free(back);
 */
#ifndef METASERVE_STORE_BLOB_H
#define METASERVE_STORE_BLOB_H

#include <stddef.h>
#include <stdint.h>

#include "metaserve/core/status.h"

#define BLOB_HEADER_SIZE    24
#define BLOB_FORMAT_VERSION 1
#define BLOB_FNV_OFFSET     0xcbf29ce484222325ULL // FNV-1a 64 offset basis
#define BLOB_FNV_PRIME      0x100000001b3ULL      // FNV-1a 64 prime

typedef enum {
    BLOB_F32 = 1,  // IEEE-754 binary32
    BLOB_I32 = 2,  // two's-complement int32
    BLOB_BYTES = 3 // opaque bytes
} BlobType;

/** Size in bytes of one element of type t; 0 for a value that is not a BlobType. */
size_t blob_elem_size(BlobType t);

/** Continues an FNV-1a 64 hash h (start from BLOB_FNV_OFFSET) over n bytes at p. */
uint64_t blob_fnv1a64(uint64_t h, const void *p, size_t n);

/** Encoded length of n elements of type t into *len. MS_ERR_TOO_LARGE when it would overflow
 *  size_t, MS_ERR_INVALID for an unknown type. */
MsStatus blob_encoded_size(size_t *len, BlobType t, size_t n, MsError *err);

/**
 * Encodes n elements of type t (elems may be NULL when n == 0) into out[0..cap). *len receives
 * the encoded length, blob_encoded_size(t, n). MS_ERR_TOO_LARGE when cap is too small.
 */
MsStatus blob_encode(void *out, size_t cap, size_t *len, BlobType t, const void *elems, size_t n,
                     MsError *err);

/** Like blob_encode into a new buffer: *out is malloc'd (caller frees with free()). */
MsStatus blob_encode_alloc(void **out, size_t *len, BlobType t, const void *elems, size_t n,
                           MsError *err);

/**
 * Verifies blob[0..len) (magic, format version, type == want, count against length, checksum)
 * and returns its element count in *n (n may be NULL). blob may be NULL when len == 0.
 * MS_ERR_DB with "corrupt" in the message on any mismatch.
 */
MsStatus blob_check(const void *blob, size_t len, BlobType want, size_t *n, MsError *err);

/**
 * Verifies like blob_check, then copies the elements into a new host-order array: *elems is
 * malloc'd (caller frees with free()), or NULL when the count is 0. On failure *elems = NULL.
 */
MsStatus blob_decode_alloc(void **elems, size_t *n, const void *blob, size_t len, BlobType want,
                           MsError *err);

#endif
