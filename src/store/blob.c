/*
 * The blob codec (layout in include/metaserve/store/blob.h): typed arrays to and from the
 * checked little-endian byte strings the store writes into BLOB columns.
 *
 * Owns: the header layout, the checksums (XXH3-64 written, FNV-1a 64 of format 1 still read)
 * and the host <-> little-endian conversion,
 * whole (blob_encode, blob_check) or in pieces for streaming (blob_hash_init, blob_header_build,
 * blob_header_parse, blob_to_le, blob_from_le; the whole-blob functions are built from them, so
 * both produce and accept the same bytes). Does not own: where blobs live (store_*.c) or what
 * the arrays mean.
 *
 * Invariants: decoding reads only inside [blob, blob + len), checks count * size against the
 * payload length without overflow before touching the payload, and returns no data unless every
 * check passes. Element copies are memcpy on little-endian hosts and a byte loop elsewhere.
 *
 * Workload: one encode per write and one decode per read of a model (P up to ~10^6 floats),
 * a dataset (up to ~10^8 bytes) or a checkpoint. The XXH3 checksum runs at memory speed, so a
 * cold model load costs the database read and one copy; format-1 blobs pay FNV-1a's byte-serial
 * multiply chain (~1 GB/s), as they did when they were written.
 */
#include "metaserve/store/blob.h"

#include <stdlib.h>
#include <string.h>

static const unsigned char MAGIC[4] = {'M', 'S', 'B', 'L'};

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define HOST_IS_LE 1
#else
#define HOST_IS_LE 0
#endif

static void put_u16(unsigned char *p, uint16_t v) {
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
}

static void put_u64(unsigned char *p, uint64_t v) {
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static uint16_t get_u16(const unsigned char *p) {
    return (uint16_t)(p[0] | (p[1] << 8));
}

static uint64_t get_u64(const unsigned char *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static const char *type_name(BlobType t) {
    switch (t) {
    case BLOB_F32:
        return "f32";
    case BLOB_I32:
        return "i32";
    case BLOB_BYTES:
        return "bytes";
    }
    return "unknown";
}

size_t blob_elem_size(BlobType t) {
    switch (t) {
    case BLOB_F32:
    case BLOB_I32:
        return 4;
    case BLOB_BYTES:
        return 1;
    }
    return 0;
}

uint64_t blob_fnv1a64(uint64_t h, const void *p, size_t n) {
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= BLOB_FNV_PRIME;
    }
    return h;
}

MsStatus blob_encoded_size(size_t *len, BlobType t, size_t n, MsError *err) {
    size_t sz = blob_elem_size(t);
    if (sz == 0) return ms_fail(err, MS_ERR_INVALID, "blob: unknown element type %d", (int)t);
    if (n > (SIZE_MAX - BLOB_HEADER_SIZE) / sz)
        return ms_fail(err, MS_ERR_TOO_LARGE, "blob: %zu elements of %zu bytes overflow", n, sz);
    *len = BLOB_HEADER_SIZE + n * sz;
    return MS_OK;
}

// Host order to little-endian for n 4-byte words. In place (dst == src) is safe: each word is
// read whole before its bytes are written.
static void words_to_le(unsigned char *dst, const unsigned char *src, size_t n) {
    if (HOST_IS_LE) {
        if (dst != src) memcpy(dst, src, n * 4);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        uint32_t w;
        memcpy(&w, src + 4 * i, 4);
        for (int k = 0; k < 4; k++)
            dst[4 * i + k] = (unsigned char)(w >> (8 * k));
    }
}

static void words_from_le(unsigned char *dst, const unsigned char *src, size_t n) {
    if (HOST_IS_LE) {
        if (dst != src) memcpy(dst, src, n * 4);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        const unsigned char *p = src + 4 * i;
        uint32_t w = (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
                     ((uint32_t)p[3] << 24);
        memcpy(dst + 4 * i, &w, 4);
    }
}

void blob_to_le(void *dst, const void *src, BlobType t, size_t n) {
    size_t sz = blob_elem_size(t);
    MS_ASSERT(sz > 0);
    if (n == 0) return;
    if (sz == 4)
        words_to_le(dst, src, n);
    else if (dst != src)
        memcpy(dst, src, n);
}

void blob_from_le(void *dst, const void *src, BlobType t, size_t n) {
    size_t sz = blob_elem_size(t);
    MS_ASSERT(sz > 0);
    if (n == 0) return;
    if (sz == 4)
        words_from_le(dst, src, n);
    else if (dst != src)
        memcpy(dst, src, n);
}

/* ---- header ---- */

static void header_build(unsigned char *hdr, unsigned version, BlobType t, size_t n,
                         uint64_t checksum) {
    MS_ASSERT(blob_elem_size(t) > 0);
    memcpy(hdr, MAGIC, 4);
    put_u16(hdr + 4, (uint16_t)version);
    put_u16(hdr + 6, (uint16_t)t);
    put_u64(hdr + 8, (uint64_t)n);
    put_u64(hdr + 16, checksum);
}

void blob_header_build(unsigned char *hdr, BlobType t, size_t n, uint64_t checksum) {
    header_build(hdr, BLOB_FORMAT_VERSION, t, n, checksum);
}

void blob_hash_init(BlobHash *h, unsigned version, BlobType t, size_t n) {
    MS_ASSERT(version == BLOB_FORMAT_VERSION || version == BLOB_FORMAT_FNV1A);
    unsigned char hdr[BLOB_HEADER_SIZE];
    header_build(hdr, version, t, n, 0); // bytes 16..23 (the checksum) are not hashed
    h->version = version;
    h->fnv = BLOB_FNV_OFFSET;
    if (version == BLOB_FORMAT_VERSION) XXH3_64bits_reset(&h->xxh); // cannot fail on a state
    blob_hash_update(h, hdr, 16);
}

void blob_hash_update(BlobHash *h, const void *p, size_t n) {
    if (n == 0) return;
    if (h->version == BLOB_FORMAT_VERSION)
        XXH3_64bits_update(&h->xxh, p, n); // fails only on a NULL state
    else
        h->fnv = blob_fnv1a64(h->fnv, p, n);
}

uint64_t blob_hash_final(const BlobHash *h) {
    return h->version == BLOB_FORMAT_VERSION ? (uint64_t)XXH3_64bits_digest(&h->xxh) : h->fnv;
}

MsStatus blob_header_parse(const unsigned char *hdr, size_t len, BlobType want, size_t *n,
                           unsigned *version_out, uint64_t *checksum, MsError *err) {
    const unsigned char *b = hdr;
    if (len < BLOB_HEADER_SIZE || b == NULL)
        return ms_fail_detail(err, MS_ERR_DB, MS_DETAIL_CORRUPT,
                              "corrupt blob: %zu bytes, shorter than the %d-byte header", len,
                              BLOB_HEADER_SIZE);
    if (memcmp(b, MAGIC, 4) != 0)
        return ms_fail_detail(err, MS_ERR_DB, MS_DETAIL_CORRUPT, "corrupt blob: bad magic");
    uint16_t version = get_u16(b + 4);
    if (version != BLOB_FORMAT_VERSION && version != BLOB_FORMAT_FNV1A)
        return ms_fail_detail(err, MS_ERR_DB, MS_DETAIL_CORRUPT,
                              "corrupt blob: format version %u (this build reads %d and %d)",
                              (unsigned)version, BLOB_FORMAT_FNV1A, BLOB_FORMAT_VERSION);
    uint16_t type = get_u16(b + 6);
    if (type != (uint16_t)want)
        return ms_fail_detail(err, MS_ERR_DB, MS_DETAIL_CORRUPT,
                              "corrupt blob: element type %u, expected %s (%d)", (unsigned)type,
                              type_name(want), (int)want);
    size_t sz = blob_elem_size(want);
    MS_ASSERT(sz > 0);
    uint64_t count = get_u64(b + 8);
    size_t payload = len - BLOB_HEADER_SIZE;
    // count * sz == payload, tested by division so that a huge count cannot overflow.
    if (payload % sz != 0 || count != (uint64_t)(payload / sz))
        return ms_fail_detail(
            err, MS_ERR_DB, MS_DETAIL_CORRUPT,
            "corrupt blob: %zu payload bytes do not hold %llu elements of %zu bytes", payload,
            (unsigned long long)count, sz);
    *n = payload / sz;
    *version_out = version;
    *checksum = get_u64(b + 16);
    return MS_OK;
}

/* ---- whole blobs ---- */

MsStatus blob_encode_version(void *out, size_t cap, size_t *len, unsigned version, BlobType t,
                             const void *elems, size_t n, MsError *err) {
    if (version != BLOB_FORMAT_VERSION && version != BLOB_FORMAT_FNV1A)
        return ms_fail(err, MS_ERR_INVALID, "blob: unknown format version %u", version);
    size_t need = 0;
    MsStatus st = blob_encoded_size(&need, t, n, err);
    if (st != MS_OK) return st;
    if (cap < need)
        return ms_fail(err, MS_ERR_TOO_LARGE, "blob: %zu-byte buffer, %zu bytes needed", cap, need);
    MS_ASSERT(n == 0 || elems != NULL);
    unsigned char *b = out;
    unsigned char *payload = b + BLOB_HEADER_SIZE;
    blob_to_le(payload, elems, t, n);
    BlobHash h;
    blob_hash_init(&h, version, t, n);
    blob_hash_update(&h, payload, need - BLOB_HEADER_SIZE);
    header_build(b, version, t, n, blob_hash_final(&h));
    *len = need;
    return MS_OK;
}

MsStatus blob_encode(void *out, size_t cap, size_t *len, BlobType t, const void *elems, size_t n,
                     MsError *err) {
    return blob_encode_version(out, cap, len, BLOB_FORMAT_VERSION, t, elems, n, err);
}

MsStatus blob_encode_alloc(void **out, size_t *len, BlobType t, const void *elems, size_t n,
                           MsError *err) {
    *out = NULL;
    size_t need = 0;
    MsStatus st = blob_encoded_size(&need, t, n, err);
    if (st != MS_OK) return st;
    void *b = malloc(need);
    if (!b) return ms_fail(err, MS_ERR_NOMEM, "blob: cannot allocate %zu bytes", need);
    st = blob_encode(b, need, len, t, elems, n, err);
    if (st != MS_OK) {
        free(b);
        return st;
    }
    *out = b;
    return MS_OK;
}

MsStatus blob_check(const void *blob, size_t len, BlobType want, size_t *n, MsError *err) {
    const unsigned char *b = blob;
    size_t count = 0;
    unsigned version = 0;
    uint64_t stored = 0;
    MsStatus st = blob_header_parse(b, len, want, &count, &version, &stored, err);
    if (st != MS_OK) return st;
    BlobHash h;
    blob_hash_init(&h, version, want, count);
    blob_hash_update(&h, b + BLOB_HEADER_SIZE, len - BLOB_HEADER_SIZE);
    if (blob_hash_final(&h) != stored)
        return ms_fail_detail(err, MS_ERR_DB, MS_DETAIL_CORRUPT, "corrupt blob: checksum mismatch");
    if (n) *n = count;
    return MS_OK;
}

MsStatus blob_decode_alloc(void **elems, size_t *n, const void *blob, size_t len, BlobType want,
                           MsError *err) {
    *elems = NULL;
    size_t count;
    MsStatus st = blob_check(blob, len, want, &count, err);
    if (st != MS_OK) return st;
    if (count > 0) {
        size_t bytes = len - BLOB_HEADER_SIZE;
        unsigned char *out = malloc(bytes);
        if (!out) return ms_fail(err, MS_ERR_NOMEM, "blob: cannot allocate %zu bytes", bytes);
        blob_from_le(out, (const unsigned char *)blob + BLOB_HEADER_SIZE, want, count);
        *elems = out;
    }
    *n = count;
    return MS_OK;
}
