/*
 * Fuzz target: the blob decoder (src/store/blob.c), which checks every float32 / int32 / byte
 * array read back from SQLite (parameters, checkpoints, datasets, adaptations).
 *
 * Each input is decoded as each of the three types twice: as given, and with its checksum field
 * recomputed (so that the count, length and payload paths are reached without the fuzzer having
 * to forge a checksum: XXH3-64 for format 2, FNV-1a 64 for format 1). Checks: blob_check and
 * blob_decode_alloc agree; a failure is MS_ERR_DB with "corrupt" in the message and leaves *elems
 * NULL; the streaming reader (blob_header_parse plus the payload hash) accepts exactly what
 * blob_check accepts; a decoded blob encodes back to the very same bytes in its own format version.
 */
#include "fuzz_common.h"
#include "metaserve/store/blob.h"

static void decode_as(const unsigned char *b, size_t len, BlobType t) {
    MsError err = {0}, err2 = {0};
    size_t n = (size_t)-1, n2 = (size_t)-1;
    MsStatus st = blob_check(b, len, t, &n, &err);
    void *elems = (void *)1;
    MsStatus st2 = blob_decode_alloc(&elems, &n2, b, len, t, &err2);
    FUZZ_CHECK(st == st2);
    if (st != MS_OK) {
        FUZZ_CHECK(st == MS_ERR_DB && strstr(err.msg, "corrupt") && strstr(err2.msg, "corrupt"));
        FUZZ_CHECK(elems == NULL);
    } else {
        FUZZ_CHECK(n == n2 && (n == 0) == (elems == NULL));
        FUZZ_CHECK(len == BLOB_HEADER_SIZE + n * blob_elem_size(t));
        void *back = NULL;
        size_t back_len = 0;
        FUZZ_CHECK(blob_encoded_size(&back_len, t, n, &err) == MS_OK);
        back = malloc(back_len);
        FUZZ_CHECK(back != NULL);
        FUZZ_CHECK(blob_encode_version(back, back_len, &back_len, b[4], t, elems, n, &err) ==
                   MS_OK);
        FUZZ_CHECK(back_len == len && memcmp(back, b, len) == 0);
        free(back);
    }
    free(elems);

    // the streaming reader: header first, then the payload hash
    size_t hn = 0;
    unsigned version = 0;
    uint64_t sum = 0;
    int stream_ok = 0;
    if (len >= BLOB_HEADER_SIZE &&
        blob_header_parse(b, len, t, &hn, &version, &sum, &err) == MS_OK) {
        FUZZ_CHECK(hn * blob_elem_size(t) == len - BLOB_HEADER_SIZE);
        FUZZ_CHECK(version == b[4]);
        BlobHash h;
        blob_hash_init(&h, version, t, hn);
        blob_hash_update(&h, b + BLOB_HEADER_SIZE, len - BLOB_HEADER_SIZE);
        stream_ok = blob_hash_final(&h) == sum;
    }
    FUZZ_CHECK(stream_ok == (st == MS_OK));
}

// Writes the checksum the header and payload of b call for (b[0..len), len >= 24).
static void fix_checksum(unsigned char *b, size_t len) {
    uint64_t h;
    if (b[4] == BLOB_FORMAT_FNV1A && b[5] == 0) {
        h = blob_fnv1a64(BLOB_FNV_OFFSET, b, 16);
        h = blob_fnv1a64(h, b + BLOB_HEADER_SIZE, len - BLOB_HEADER_SIZE);
    } else {
        XXH3_state_t s;
        XXH3_64bits_reset(&s);
        XXH3_64bits_update(&s, b, 16);
        XXH3_64bits_update(&s, b + BLOB_HEADER_SIZE, len - BLOB_HEADER_SIZE);
        h = XXH3_64bits_digest(&s);
    }
    for (int i = 0; i < 8; i++)
        b[16 + i] = (unsigned char)(h >> (8 * i));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    // a private copy, so that ASan catches any read past the end
    unsigned char *b = calloc(size ? size : 1, 1);
    FUZZ_CHECK(b != NULL);
    if (size) memcpy(b, data, size);
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 1) {
            if (size < BLOB_HEADER_SIZE) break;
            fix_checksum(b, size);
        }
        decode_as(b, size, BLOB_F32);
        decode_as(b, size, BLOB_I32);
        decode_as(b, size, BLOB_BYTES);
    }
    free(b);
    return 0;
}
