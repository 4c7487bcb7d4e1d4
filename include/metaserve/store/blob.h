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
 *         16     8  checksum over header bytes 0..15, then over the payload
 *         24  n*sz  the elements (sz = 4 for f32 and i32, 1 for bytes)
 *
 * The checksum covers the header fields as well as the payload, so a changed type or count is
 * caught even where it would still be self-consistent. Its function is fixed by the format
 * version: version 2 (written since the blob format bump) is XXH3-64 (libxxhash, seed 0), one
 * streaming hash over header bytes 0..15 and then the payload; version 1 (still read, never
 * written) is FNV-1a 64, which detects every single-byte change (each step (h ^ b) * prime is a
 * bijection of h for fixed b and of b for fixed h) but runs a byte at a time (~1 GB/s), where
 * XXH3 hashes at memory speed.
 *
 * Decoding never reads outside [blob, blob + len) and never trusts the count before checking
 * count * sz == len - 24 without overflow. Every failure is MS_ERR_DB with "corrupt" in the
 * message (MS_ERR_NOMEM when an allocation fails).
 *
 * Streaming (arrays too large to encode into a second buffer, e.g. dataset pools): the pieces
 * below produce and check exactly the bytes of blob_encode / blob_check a chunk at a time. The
 * checksum covers header bytes 0..15 first, which depend only on (type, count), so a writer
 * can hash the payload as it goes and write the header last:
 *     BlobHash h; blob_hash_init(&h, BLOB_FORMAT_VERSION, t, n);
 *     for each chunk: blob_to_le(buf, elems + i, t, m); blob_hash_update(&h, buf, m * sz); write;
 *     unsigned char hdr[BLOB_HEADER_SIZE];
 *     blob_header_build(hdr, t, n, blob_hash_final(&h)); write at offset 0;
 * and a reader checks the header with blob_header_parse (which returns the blob's version)
 * before it allocates anything, then hashes each payload chunk with the hash of that version
 * before converting it with blob_from_le.
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

#define XXH_STATIC_LINKING_ONLY // XXH3_state_t by value, so a BlobHash needs no allocation
#include <xxhash.h>

#include "metaserve/core/status.h"

#define BLOB_HEADER_SIZE    24
#define BLOB_FORMAT_VERSION 2 // the version written: XXH3-64 checksums
#define BLOB_FORMAT_FNV1A   1 // the first version, still read: FNV-1a 64 checksums
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

/** A blob checksum in progress, of one format version's function. */
typedef struct {
    unsigned version; // BLOB_FORMAT_VERSION (XXH3-64) or BLOB_FORMAT_FNV1A
    uint64_t fnv;     // the FNV-1a state (version 1)
    XXH3_state_t xxh; // the XXH3 state (version 2)
} BlobHash;

/** Starts the checksum of a format-`version` blob (BLOB_FORMAT_VERSION or BLOB_FORMAT_FNV1A)
 *  of n elements of type t (a valid BlobType) and hashes its header bytes 0..15: continue it
 *  with blob_hash_update over the little-endian payload, in order, and blob_hash_final is the
 *  blob's checksum. */
void blob_hash_init(BlobHash *h, unsigned version, BlobType t, size_t n);
void blob_hash_update(BlobHash *h, const void *p, size_t n);
uint64_t blob_hash_final(const BlobHash *h);

/** Writes the 24-byte header of a blob of the current format version, n elements of type t (a
 *  valid BlobType), carrying `checksum` into hdr[0..BLOB_HEADER_SIZE). */
void blob_header_build(unsigned char *hdr, BlobType t, size_t n, uint64_t checksum);

/**
 * Checks the header hdr[0..BLOB_HEADER_SIZE) of a blob whose total length is len: magic, format
 * version (one this build reads), type == want and count * size == len - 24, all that
 * blob_check checks but the checksum, which it returns in *checksum for the caller to compare
 * once it has hashed the payload (starting from blob_hash_init(h, *version, want, *n)). *n
 * receives the element count, *version the format version. MS_ERR_DB with "corrupt" in the
 * message on any mismatch (len < 24 included).
 */
MsStatus blob_header_parse(const unsigned char *hdr, size_t len, BlobType want, size_t *n,
                           unsigned *version, uint64_t *checksum, MsError *err);

/** Copies n elements of type t from host order into their little-endian bytes at dst. dst == src
 *  converts in place; otherwise the two must not overlap. */
void blob_to_le(void *dst, const void *src, BlobType t, size_t n);
/** The inverse of blob_to_le: n little-endian elements of type t into host order at dst (in
 *  place when dst == src). */
void blob_from_le(void *dst, const void *src, BlobType t, size_t n);

/** Encoded length of n elements of type t into *len. MS_ERR_TOO_LARGE when it would overflow
 *  size_t, MS_ERR_INVALID for an unknown type. */
MsStatus blob_encoded_size(size_t *len, BlobType t, size_t n, MsError *err);

/**
 * Encodes n elements of type t (elems may be NULL when n == 0) into out[0..cap). *len receives
 * the encoded length, blob_encoded_size(t, n). MS_ERR_TOO_LARGE when cap is too small.
 */
MsStatus blob_encode(void *out, size_t cap, size_t *len, BlobType t, const void *elems, size_t n,
                     MsError *err);

/** blob_encode in a given format version (BLOB_FORMAT_VERSION or BLOB_FORMAT_FNV1A): the
 *  older version is written only by tests, to check that it is still read. */
MsStatus blob_encode_version(void *out, size_t cap, size_t *len, unsigned version, BlobType t,
                             const void *elems, size_t n, MsError *err);

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
