/*
 * Tests of store/blob.c, the checked array codec under every stored array. Round trips are
 * bit-exact (memcmp, so NaN payloads, -0.0 and infinities count); the layout is pinned byte for
 * byte; and since every header byte is either checked or covered by the checksum, every
 * single-byte change of a blob, every truncation and every extension must be reported as
 * corrupt. Hostile headers (counts whose byte size overflows size_t or wraps to the real payload
 * length, with a recomputed checksum so that only the length check stands) must be refused
 * without reading past the buffer: each blob under test is malloc'd at its exact length, so a
 * sanitizer build (MS_SANITIZE) turns any over-read into a failure.
 */
#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "metaserve/core/rng.h"
#include "metaserve/store/blob.h"

// Encodes and returns an exact-size heap copy (so over-reads are visible to ASan).
static unsigned char *encode(BlobType t, const void *elems, size_t n, size_t *len) {
    void *b = NULL;
    MsError err = {0};
    ck_assert_int_eq(blob_encode_alloc(&b, len, t, elems, n, &err), MS_OK);
    return b;
}

static void assert_corrupt(const void *b, size_t len, BlobType t) {
    MsError err = {0};
    size_t n = 12345;
    MsStatus st = blob_check(b, len, t, &n, &err);
    ck_assert_int_eq(st, MS_ERR_DB);
    ck_assert_ptr_nonnull(strstr(err.msg, "corrupt"));
    ck_assert_uint_eq(n, 12345); // nothing reported on failure
    void *out = (void *)1;
    ck_assert_int_eq(blob_decode_alloc(&out, &n, b, len, t, &err), MS_ERR_DB);
    ck_assert_ptr_null(out);
}

static void put_u64(unsigned char *p, uint64_t v) {
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

// Rewrites the checksum of b to match its (possibly edited) header and payload, computed here
// from the published functions directly: XXH3-64 of header bytes 0..15 followed by the payload
// for format 2, FNV-1a 64 over the same bytes for format 1.
static void reseal(unsigned char *b, size_t len) {
    uint64_t h;
    if (b[4] == BLOB_FORMAT_FNV1A) {
        h = blob_fnv1a64(BLOB_FNV_OFFSET, b, 16);
        h = blob_fnv1a64(h, b + BLOB_HEADER_SIZE, len - BLOB_HEADER_SIZE);
    } else {
        unsigned char *flat = malloc(len - 8);
        memcpy(flat, b, 16);
        memcpy(flat + 16, b + BLOB_HEADER_SIZE, len - BLOB_HEADER_SIZE);
        h = XXH3_64bits(flat, len - 8);
        free(flat);
    }
    put_u64(b + 16, h);
}

// Encodes in the given format version into an exact-size heap copy.
static unsigned char *encode_v(unsigned version, BlobType t, const void *elems, size_t n,
                               size_t *len) {
    MsError err = {0};
    ck_assert_int_eq(blob_encoded_size(len, t, n, &err), MS_OK);
    unsigned char *b = malloc(*len ? *len : 1);
    ck_assert_int_eq(blob_encode_version(b, *len, len, version, t, elems, n, &err), MS_OK);
    return b;
}

/* ---- checksum and layout ---- */

START_TEST(fnv1a64_matches_published_test_vectors) {
    // Reference values of the FNV-1a 64 specification (Fowler/Noll/Vo test suite).
    ck_assert_uint_eq(blob_fnv1a64(BLOB_FNV_OFFSET, "", 0), 0xcbf29ce484222325ULL);
    ck_assert_uint_eq(blob_fnv1a64(BLOB_FNV_OFFSET, "a", 1), 0xaf63dc4c8601ec8cULL);
    ck_assert_uint_eq(blob_fnv1a64(BLOB_FNV_OFFSET, "foobar", 6), 0x85944171f73967e8ULL);
    // Hashing in two pieces equals hashing at once (the codec hashes header, then payload).
    uint64_t h = blob_fnv1a64(blob_fnv1a64(BLOB_FNV_OFFSET, "foo", 3), "bar", 3);
    ck_assert_uint_eq(h, 0x85944171f73967e8ULL);
}
END_TEST

START_TEST(xxh3_matches_published_test_vectors) {
    // XXH3-64 with seed 0 of the empty input (the published value), so the library linked is
    // the function the format names.
    ck_assert_uint_eq(XXH3_64bits("", 0), 0x2D06800538D394C2ULL);
    // Streaming in pieces (how the store hashes chunk by chunk) equals hashing at once.
    BlobHash a, b;
    blob_hash_init(&a, BLOB_FORMAT_VERSION, BLOB_BYTES, 3);
    blob_hash_init(&b, BLOB_FORMAT_VERSION, BLOB_BYTES, 3);
    blob_hash_update(&a, "foobar", 6);
    blob_hash_update(&b, "foo", 3);
    blob_hash_update(&b, "bar", 3);
    ck_assert_uint_eq(blob_hash_final(&a), blob_hash_final(&b));
}
END_TEST

START_TEST(encoding_is_little_endian_with_the_documented_header) {
    const float x[2] = {1.0f, -2.0f}; // 0x3f800000, 0xc0000000
    size_t len;
    unsigned char *b = encode(BLOB_F32, x, 2, &len);
    ck_assert_uint_eq(len, 24 + 8);
    const unsigned char head[16] = {'M', 'S', 'B', 'L', 2, 0, 1, 0, 2, 0, 0, 0, 0, 0, 0, 0};
    ck_assert_mem_eq(b, head, 16);
    const unsigned char payload[8] = {0x00, 0x00, 0x80, 0x3f, 0x00, 0x00, 0x00, 0xc0};
    ck_assert_mem_eq(b + 24, payload, 8);
    unsigned char flat[24]; // header bytes 0..15, then the payload: what XXH3 covers
    memcpy(flat, head, 16);
    memcpy(flat + 16, payload, 8);
    unsigned char sum[8];
    put_u64(sum, XXH3_64bits(flat, sizeof flat));
    ck_assert_mem_eq(b + 16, sum, 8);
    free(b);

    // Format 1, still read: the same layout with version 1 and an FNV-1a 64 checksum.
    b = encode_v(BLOB_FORMAT_FNV1A, BLOB_F32, x, 2, &len);
    const unsigned char head1[16] = {'M', 'S', 'B', 'L', 1, 0, 1, 0, 2, 0, 0, 0, 0, 0, 0, 0};
    ck_assert_mem_eq(b, head1, 16);
    ck_assert_mem_eq(b + 24, payload, 8);
    put_u64(sum, blob_fnv1a64(blob_fnv1a64(BLOB_FNV_OFFSET, head1, 16), payload, 8));
    ck_assert_mem_eq(b + 16, sum, 8);
    MsError err = {0};
    float *back = NULL;
    size_t n = 0;
    ck_assert_int_eq(blob_decode_alloc((void **)&back, &n, b, len, BLOB_F32, &err), MS_OK);
    ck_assert_uint_eq(n, 2);
    ck_assert_mem_eq(back, x, sizeof x);
    free(back);
    free(b);
    // Versions other than 1 and 2 are refused, naming what this build reads.
    b = encode(BLOB_F32, x, 2, &len);
    b[4] = 3;
    reseal(b, len);
    ck_assert_int_eq(blob_check(b, len, BLOB_F32, NULL, &err), MS_ERR_DB);
    ck_assert_ptr_nonnull(strstr(err.msg, "format version 3"));
    free(b);

    const int32_t k[1] = {-2}; // 0xfffffffe
    b = encode(BLOB_I32, k, 1, &len);
    ck_assert_uint_eq(b[6], 2);
    const unsigned char kp[4] = {0xfe, 0xff, 0xff, 0xff};
    ck_assert_mem_eq(b + 24, kp, 4);
    free(b);
}
END_TEST

/* ---- round trips ---- */

static void round_trip(BlobType t, size_t n, Rng *r) {
    size_t sz = blob_elem_size(t);
    unsigned char *src = malloc(n * sz + 1);
    for (size_t i = 0; i < n * sz; i++)
        src[i] = (unsigned char)rng_u64(r); // arbitrary bit patterns, NaNs included
    if (t == BLOB_F32 && n >= 4) {
        const float special[4] = {-0.0f, INFINITY, -INFINITY, NAN};
        memcpy(src, special, sizeof special);
    }
    size_t len, count = 0;
    unsigned char *b = encode(t, n ? src : NULL, n, &len);
    ck_assert_uint_eq(len, BLOB_HEADER_SIZE + n * sz);
    MsError err = {0};
    ck_assert_int_eq(blob_check(b, len, t, &count, &err), MS_OK);
    ck_assert_uint_eq(count, n);
    void *back = NULL;
    ck_assert_int_eq(blob_decode_alloc(&back, &count, b, len, t, &err), MS_OK);
    ck_assert_uint_eq(count, n);
    if (n == 0)
        ck_assert_ptr_null(back);
    else
        ck_assert_mem_eq(back, src, n * sz);
    free(back);
    free(b);
    free(src);
}

START_TEST(every_type_round_trips_bit_exactly_at_sizes_0_1_and_1000) {
    Rng r;
    rng_seed(&r, 7);
    const BlobType types[3] = {BLOB_F32, BLOB_I32, BLOB_BYTES};
    const size_t sizes[3] = {0, 1, 1000};
    for (int t = 0; t < 3; t++)
        for (int k = 0; k < 3; k++)
            round_trip(types[t], sizes[k], &r);
}
END_TEST

START_TEST(encoding_into_a_short_buffer_fails_without_writing_past_it) {
    const float x[3] = {1, 2, 3};
    unsigned char buf[64];
    memset(buf, 0xAB, sizeof buf);
    size_t len = 0;
    MsError err = {0};
    // 35 bytes of room for a 36-byte blob.
    ck_assert_int_eq(blob_encode(buf, 35, &len, BLOB_F32, x, 3, &err), MS_ERR_TOO_LARGE);
    for (size_t i = 0; i < sizeof buf; i++)
        ck_assert_uint_eq(buf[i], 0xAB);
    ck_assert_int_eq(blob_encode(buf, 36, &len, BLOB_F32, x, 3, &err), MS_OK);
    ck_assert_uint_eq(len, 36);
    ck_assert_uint_eq(buf[36], 0xAB);
}
END_TEST

START_TEST(encoded_size_that_overflows_size_t_is_too_large) {
    size_t len = 0;
    MsError err = {0};
    ck_assert_int_eq(blob_encoded_size(&len, BLOB_F32, SIZE_MAX / 4, &err), MS_ERR_TOO_LARGE);
    ck_assert_int_eq(blob_encoded_size(&len, BLOB_BYTES, SIZE_MAX - 23, &err), MS_ERR_TOO_LARGE);
    ck_assert_int_eq(blob_encoded_size(&len, BLOB_BYTES, SIZE_MAX - 24, &err), MS_OK);
    ck_assert_uint_eq(len, SIZE_MAX);
    ck_assert_int_eq(blob_encoded_size(&len, (BlobType)9, 1, &err), MS_ERR_INVALID);
}
END_TEST

/* ---- corruption ---- */

START_TEST(every_single_byte_change_of_a_small_blob_is_detected) {
    const float xf[3] = {0.5f, -1.25f, 3.0f};
    const int32_t xi[3] = {7, -1, 1 << 30};
    const unsigned char xb[5] = {1, 2, 3, 4, 5};
    const struct {
        BlobType t;
        const void *x;
        size_t n;
    } cases[3] = {{BLOB_F32, xf, 3}, {BLOB_I32, xi, 3}, {BLOB_BYTES, xb, 5}};
    // Both formats: the current one (XXH3) and format 1 (FNV-1a), which is still read.
    for (int c = 0; c < 6; c++) {
        size_t len;
        unsigned version = c < 3 ? BLOB_FORMAT_VERSION : BLOB_FORMAT_FNV1A;
        unsigned char *b = encode_v(version, cases[c % 3].t, cases[c % 3].x, cases[c % 3].n, &len);
        // Every position, every one of the 255 non-zero XOR masks: all must be caught.
        for (size_t i = 0; i < len; i++)
            for (int m = 1; m < 256; m++) {
                b[i] ^= (unsigned char)m;
                assert_corrupt(b, len, cases[c % 3].t);
                b[i] ^= (unsigned char)m;
            }
        MsError err = {0};
        ck_assert_int_eq(blob_check(b, len, cases[c % 3].t, NULL, &err), MS_OK);
        free(b);
    }
}
END_TEST

START_TEST(every_truncation_and_extension_is_detected) {
    const float x[4] = {1, 2, 3, 4};
    size_t len;
    unsigned char *b = encode(BLOB_F32, x, 4, &len);
    for (size_t cut = 0; cut < len; cut++) {
        unsigned char *p = malloc(cut ? cut : 1);
        memcpy(p, b, cut);
        assert_corrupt(p, cut, BLOB_F32);
        free(p);
    }
    assert_corrupt(NULL, 0, BLOB_F32);
    // One to four extra bytes (one more float with a stale count and checksum) are caught too.
    for (size_t extra = 1; extra <= 4; extra++) {
        unsigned char *p = calloc(len + extra, 1);
        memcpy(p, b, len);
        assert_corrupt(p, len + extra, BLOB_F32);
        free(p);
    }
    free(b);
}
END_TEST

START_TEST(a_blob_of_another_type_is_refused) {
    const int32_t k[2] = {1, 2};
    size_t len;
    unsigned char *b = encode(BLOB_I32, k, 2, &len);
    assert_corrupt(b, len, BLOB_F32); // same element size, still refused
    assert_corrupt(b, len, BLOB_BYTES);
    free(b);
}
END_TEST

START_TEST(huge_counts_in_a_resealed_header_are_refused_without_overread) {
    const float x[3] = {1, 2, 3}; // payload 12 bytes
    size_t len;
    unsigned char *b = encode(BLOB_F32, x, 3, &len);
    // 2^62 + 3: times 4 wraps modulo 2^64 to exactly the real 12-byte payload.
    const uint64_t counts[] = {
        UINT64_MAX, (1ULL << 62) + 3, 1ULL << 62, (uint64_t)SIZE_MAX / 4 + 1, 4, 2, 0};
    for (size_t i = 0; i < sizeof counts / sizeof counts[0]; i++) {
        put_u64(b + 8, counts[i]);
        reseal(b, len); // the checksum agrees: only the length check can refuse it
        assert_corrupt(b, len, BLOB_F32);
    }
    // A huge count over a header-only blob.
    unsigned char *h = encode(BLOB_BYTES, NULL, 0, &len);
    put_u64(h + 8, UINT64_MAX);
    reseal(h, len);
    assert_corrupt(h, len, BLOB_BYTES);
    free(h);
    free(b);
}
END_TEST

START_TEST(random_bytes_and_random_damage_never_decode_to_wrong_data) {
    // 20000 random strings (lengths 0..99, magic and version forced half the time so the deeper
    // checks run) and 20000 valid blobs with 1..8 random byte changes: none may decode. The
    // chance that random damage yields a valid checksum is 2^-64 per trial.
    Rng r;
    rng_seed(&r, 2024);
    for (int trial = 0; trial < 20000; trial++) {
        size_t len = (size_t)rng_below(&r, 100);
        unsigned char *p = malloc(len ? len : 1);
        for (size_t i = 0; i < len; i++)
            p[i] = (unsigned char)rng_u64(&r);
        if (len >= 8 && (trial & 1))
            memcpy(p, (trial & 2) ? "MSBL\x01\x00\x01\x00" : "MSBL\x02\x00\x01\x00", 8);
        assert_corrupt(p, len, BLOB_F32);
        free(p);
    }
    float x[16];
    for (int i = 0; i < 16; i++)
        x[i] = (float)i;
    for (int trial = 0; trial < 20000; trial++) {
        size_t len;
        unsigned char *b = encode(BLOB_F32, x, 16, &len);
        unsigned char *ref = encode(BLOB_F32, x, 16, &len);
        int k = 1 + (int)rng_below(&r, 8);
        for (int j = 0; j < k; j++)
            b[rng_below(&r, len)] = (unsigned char)rng_u64(&r);
        if (memcmp(ref, b, len) != 0) assert_corrupt(b, len, BLOB_F32); // else nothing changed
        free(ref);
        free(b);
    }
}
END_TEST

static Suite *blob_suite(void) {
    Suite *s = suite_create("blob");
    TCase *tc = tcase_create("codec");
    tcase_add_test(tc, fnv1a64_matches_published_test_vectors);
    tcase_add_test(tc, xxh3_matches_published_test_vectors);
    tcase_add_test(tc, encoding_is_little_endian_with_the_documented_header);
    tcase_add_test(tc, every_type_round_trips_bit_exactly_at_sizes_0_1_and_1000);
    tcase_add_test(tc, encoding_into_a_short_buffer_fails_without_writing_past_it);
    tcase_add_test(tc, encoded_size_that_overflows_size_t_is_too_large);
    tcase_add_test(tc, every_single_byte_change_of_a_small_blob_is_detected);
    tcase_add_test(tc, every_truncation_and_extension_is_detected);
    tcase_add_test(tc, a_blob_of_another_type_is_refused);
    tcase_add_test(tc, huge_counts_in_a_resealed_header_are_refused_without_overread);
    tcase_add_test(tc, random_bytes_and_random_damage_never_decode_to_wrong_data);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) {
    SRunner *sr = srunner_create(blob_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
