/*
 * SQLite backend of store.h: blobs streamed a STORE_BLOB_CHUNK at a time with SQLite's
 * incremental blob I/O, for arrays too large to hold twice (dataset pools of ~3 x 10^8 bytes).
 * The bytes written and accepted are exactly those of blob_encode / blob_check (blob.c), so
 * streamed and whole-value rows read alike. Beyond the caller's array only one chunk buffer is
 * used on write; on read the header is checked before the one allocation of the payload's size.
 */
#include "store_internal.h"

#include <limits.h>
#include <stdlib.h>

/* ---- streamed blobs (incremental blob I/O) ---- */

// Opens a handle on table.col of row rowid (sqlite3_blob_open sets *out to NULL on failure).
static MsStatus stream_open(Store *s, const char *table, const char *col, sqlite3_int64 rowid,
                            int writable, sqlite3_blob **out, const char *what, MsError *err) {
    s->fresh = 0; // a read (store_durable_fence)
    int rc = sqlite3_blob_open(s->db, "main", table, col, rowid, writable, out);
    return rc == SQLITE_OK ? MS_OK : store_sqlite_fail(s, rc, what, err);
}

MsStatus store_blob_stream_write(Store *s, const char *table, const char *col, sqlite3_int64 rowid,
                                 BlobType t, const void *elems, size_t n, const char *what,
                                 MsError *err) {
    size_t sz = blob_elem_size(t);
    MS_ASSERT(sz > 0 && (n == 0 || elems != NULL));
    MS_ASSERT(!sqlite3_get_autocommit(s->db)); // the caller's write transaction holds the row
    size_t len;
    MsStatus st = blob_encoded_size(&len, t, n, err);
    if (st != MS_OK) return st;
    if (len > INT_MAX) // sqlite3_blob_write offsets are int; SQLite's own limit is lower still
        return ms_fail(err, MS_ERR_TOO_LARGE, "%s: %zu bytes are too large for the database", what,
                       len);
    sqlite3_blob *b = NULL;
    unsigned char *buf = NULL;
    if ((st = stream_open(s, table, col, rowid, 1, &b, what, err)) != MS_OK) return st;
    if ((size_t)sqlite3_blob_bytes(b) != len) {
        st = ms_fail(err, MS_ERR_INTERNAL, "%s: placeholder of %d bytes for a %zu-byte blob", what,
                     sqlite3_blob_bytes(b), len);
        goto done;
    }
    // The payload goes through buf so that a big-endian host converts it to little-endian a
    // chunk at a time (on little-endian hosts blob_to_le is a memcpy of one chunk).
    if (n > 0 && !(buf = malloc(STORE_BLOB_CHUNK))) {
        st = ms_fail(err, MS_ERR_NOMEM, "%s: cannot allocate a %d-byte buffer", what,
                     STORE_BLOB_CHUNK);
        goto done;
    }
    // Payload first, hashed as it goes; the header, which carries the checksum, last.
    BlobHash h;
    blob_hash_init(&h, BLOB_FORMAT_VERSION, t, n);
    const size_t per = STORE_BLOB_CHUNK / sz; // elements per chunk
    const unsigned char *src = elems;
    for (size_t i = 0; i < n; i += per) {
        size_t m = n - i < per ? n - i : per;
        blob_to_le(buf, src + i * sz, t, m);
        blob_hash_update(&h, buf, m * sz);
        int rc = sqlite3_blob_write(b, buf, (int)(m * sz), (int)(BLOB_HEADER_SIZE + i * sz));
        if (rc != SQLITE_OK) {
            st = store_sqlite_fail(s, rc, what, err);
            goto done;
        }
    }
    unsigned char hdr[BLOB_HEADER_SIZE];
    blob_header_build(hdr, t, n, blob_hash_final(&h));
    int rc = sqlite3_blob_write(b, hdr, BLOB_HEADER_SIZE, 0);
    if (rc != SQLITE_OK) st = store_sqlite_fail(s, rc, what, err);
done:
    free(buf);
    // A write handle must be closed before COMMIT; closing one cannot fail in a transaction.
    sqlite3_blob_close(b);
    return st;
}

MsStatus store_blob_stream_read(Store *s, const char *table, const char *col, sqlite3_int64 rowid,
                                BlobType t, size_t want_n, void **out, size_t *n, const char *what,
                                MsError *err) {
    *out = NULL;
    *n = 0;
    sqlite3_blob *b = NULL;
    unsigned char *dst = NULL;
    MsStatus st = stream_open(s, table, col, rowid, 0, &b, what, err);
    if (st != MS_OK) return st;
    size_t len = (size_t)sqlite3_blob_bytes(b); // >= 0: SQLite values are at most INT_MAX bytes
    unsigned char hdr[BLOB_HEADER_SIZE] = {0};
    size_t count;
    unsigned version;
    uint64_t stored;
    MsError e = {0};
    int rc = SQLITE_OK;
    if (len >= BLOB_HEADER_SIZE) rc = sqlite3_blob_read(b, hdr, BLOB_HEADER_SIZE, 0);
    if (rc != SQLITE_OK) {
        st = store_sqlite_fail(s, rc, what, err);
        goto done;
    }
    // The header is checked against the stored length (count * size == len - 24) before its
    // count sizes any allocation, so the allocation is never larger than what is on disk.
    if ((st = blob_header_parse(hdr, len, t, &count, &version, &stored, &e)) != MS_OK) {
        st = ms_fail_detail(err, st, e.detail, "%s: %s", what, e.msg);
        goto done;
    }
    if (want_n != STORE_BLOB_ANY_COUNT && count != want_n) {
        st = ms_fail_detail(err, MS_ERR_DB, MS_DETAIL_CORRUPT,
                            "%s: corrupt: %zu values where %zu were expected", what, count, want_n);
        goto done;
    }
    size_t bytes = len - BLOB_HEADER_SIZE;
    if (count > 0 && !(dst = malloc(bytes))) {
        st = ms_fail(err, MS_ERR_NOMEM, "%s: cannot allocate %zu bytes", what, bytes);
        goto done;
    }
    // Straight into the destination a chunk at a time: hashed while the chunk is in cache, then
    // converted from little-endian in place.
    BlobHash h;
    blob_hash_init(&h, version, t, count);
    size_t sz = blob_elem_size(t);
    for (size_t off = 0; off < bytes; off += STORE_BLOB_CHUNK) {
        size_t m = bytes - off < STORE_BLOB_CHUNK ? bytes - off : STORE_BLOB_CHUNK;
        rc = sqlite3_blob_read(b, dst + off, (int)m, (int)(BLOB_HEADER_SIZE + off));
        if (rc != SQLITE_OK) {
            st = store_sqlite_fail(s, rc, what, err);
            goto done;
        }
        blob_hash_update(&h, dst + off, m);
        blob_from_le(dst + off, dst + off, t, m / sz); // chunks are whole elements (64 KiB % 4)
    }
    if (blob_hash_final(&h) != stored) {
        st = ms_fail_detail(err, MS_ERR_DB, MS_DETAIL_CORRUPT,
                            "%s: corrupt blob: checksum mismatch", what);
        goto done;
    }
    *out = dst;
    *n = count;
    dst = NULL;
done:
    free(dst);
    sqlite3_blob_close(b);
    return st;
}
