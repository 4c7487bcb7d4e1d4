/*
 * API keys: parsing "role:key" and "role:sha256:<64 hex>" entries (METASERVE_API_KEYS and the
 * lines of METASERVE_API_KEYS_FILE), the immutable, reference-counted key set every request
 * authenticates against, and the holder through which a reload swaps one set for the next.
 *
 * A key set holds only SHA-256 digests: a presented key is hashed and compared with every entry,
 * 32 bytes each, without an early exit, so the time taken reveals neither which entry nor how
 * much of one matched.
 *
 * Usage:
 *     ServerKey keys[SERVER_MAX_KEYS]; int n = 0; KeyFileId id;
 *     if (keys_read_file(keys, &n, SERVER_MAX_KEYS, path, "METASERVE_API_KEYS_FILE", &id, &err)) ..
 *     KeySet *ks = keyset_create(keys, n);       // NULL: out of memory
 *     KeyHolder h; keyholder_init(&h, ks);       // takes ks
 *     KeySet *cur = keyholder_get(&h);           // per request: a reference ...
 *     int role = keyset_role(cur, presented, strlen(presented));
 *     keyset_release(cur);                       // ... dropped when the request ends
 *     keyholder_swap(&h, keyset_create(...));    // reload; the old set goes with its last user
 */
#ifndef METASERVE_HTTP_KEYS_H
#define METASERVE_HTTP_KEYS_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "metaserve/core/status.h"
#include "metaserve/http/server.h"

#define KEYS_FILE_MAX_BYTES 65536 // a larger key file is refused (32 keys need < 4 KiB)

/**
 * Parses one entry, item[0..n) with surrounding whitespace trimmed: "admin:<key>",
 * "client:<key>" (keys of 16..127 printable characters without spaces, not starting with
 * "sha256:"), or "<role>:sha256:<64 hex digits>" (the key's SHA-256). Fills *out (from_file 0)
 * and returns MS_OK; MS_ERR_INVALID with the reason in err (never the key) when malformed. An
 * entry that is empty after trimming is not one: returns MS_OK with out->role 0.
 */
MsStatus keys_parse_entry(ServerKey *out, const char *item, size_t n, MsError *err);

/**
 * Parses a key file's text[0..len): one entry per line, blank lines and lines whose first
 * non-blank character is '#' ignored, "\r\n" line ends accepted. Appends to keys[*n..max) with
 * from_file 1. On a malformed line returns MS_ERR_INVALID with err "<who> line <N>: <reason>" and
 * leaves *n as it was; more than max keys in all is also MS_ERR_INVALID.
 */
MsStatus keys_parse_text(ServerKey *keys, int *n, int max, const char *text, size_t len,
                         const char *who, MsError *err);

/** What identifies one version of a file: a rename, a rewrite or a touch changes it. */
typedef struct {
    int exists; // 0: stat failed (the other fields are 0)
    uint64_t dev, ino, size;
    int64_t mtime_ns, ctime_ns;
} KeyFileId;

/** Stats path into *id (exists 0 when it cannot). */
void keys_file_id(const char *path, KeyFileId *id);
/** 1 when a and b name the same version of a file (or both no file). */
int keys_file_id_eq(const KeyFileId *a, const KeyFileId *b);

/**
 * Reads the key file at path (at most KEYS_FILE_MAX_BYTES) and parses it as keys_parse_text
 * does. *id receives the identity of the file as opened (fstat of the descriptor read, so it
 * matches the text parsed; exists 0 when it could not be opened), also on failure.
 * MS_ERR_INVALID "<who> line N: ..." for a malformed line, MS_ERR_IO when it cannot be read,
 * MS_ERR_TOO_LARGE past the size limit; *n is unchanged on failure.
 */
MsStatus keys_read_file(ServerKey *keys, int *n, int max, const char *path, const char *who,
                        KeyFileId *id, MsError *err);

/** An immutable set of key digests with a reference count. */
typedef struct KeySet KeySet;

/**
 * A new set (reference count 1) of keys[0..n): plaintext keys are hashed, hashed ones copied.
 * NULL when out of memory. keys is borrowed for the call.
 */
KeySet *keyset_create(const ServerKey *keys, int n);
/** Adds a reference; returns ks. */
KeySet *keyset_retain(KeySet *ks);
/** Drops a reference; the last one frees the set (wiping its digests). Accepts NULL. */
void keyset_release(KeySet *ks);
/** Keys in the set; 0 means no authentication is configured (every route open). */
int keyset_count(const KeySet *ks);
/** Keys of role (1 client, 2 admin) in the set. */
int keyset_count_role(const KeySet *ks, int role);
/**
 * The highest role (1 client, 2 admin) of an entry whose digest equals SHA-256 of
 * presented[0..n), or 0 when none does. Constant time in the set's contents: every entry is
 * compared in full, whatever matched.
 */
int keyset_role(const KeySet *ks, const char *presented, size_t n);

/** The current key set, swapped under a mutex (readers hold their own reference). */
typedef struct KeyHolder {
    pthread_mutex_t mu;
    KeySet *cur; // never NULL after keyholder_init
} KeyHolder;

/** Starts h with set ks (takes the caller's reference; ks must not be NULL). */
void keyholder_init(KeyHolder *h, KeySet *ks);
/** A new reference to the current set; the caller drops it with keyset_release. */
KeySet *keyholder_get(KeyHolder *h);
/** Makes ks current (takes the caller's reference) and drops the holder's reference to the
 *  previous set, which lives on until its last reader releases it. */
void keyholder_swap(KeyHolder *h, KeySet *ks);
/** Drops the current set and the mutex. Accepts a holder never initialised (cur NULL). */
void keyholder_free(KeyHolder *h);

#endif
