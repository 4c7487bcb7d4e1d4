/*
 * API keys: the entry and key-file parsers, the immutable key set (digests only) with its
 * reference count, and the holder that swaps sets on reload.
 *
 * Owns what a key looks like and how a presented key is checked; not where keys come from or
 * when they are reloaded (config.c reads the settings at start, server.c reloads on SIGHUP or a
 * changed file). Error messages name the entry or line and the rule it breaks, never the key.
 *
 * Invariants: a KeySet never changes after keyset_create; it is freed by whoever drops its last
 * reference, which is the holder (on the next swap) or the last request still using it. Sizes:
 * at most SERVER_MAX_KEYS (32) entries; one digest and one comparison pass per request.
 */
#define _GNU_SOURCE
#include "metaserve/http/keys.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "metaserve/http/sha256.h"

#define ROLE_CLIENT_ 1
#define ROLE_ADMIN_  2

static void wipe(void *p, size_t n) {
    volatile unsigned char *v = p;
    for (size_t i = 0; i < n; i++)
        v[i] = 0;
}

static int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* ---- parsing ---- */

MsStatus keys_parse_entry(ServerKey *out, const char *item, size_t n, MsError *err) {
    memset(out, 0, sizeof *out);
    while (n && isspace((unsigned char)*item))
        item++, n--;
    while (n && isspace((unsigned char)item[n - 1]))
        n--;
    if (n == 0) return MS_OK;
    const char *colon = memchr(item, ':', n);
    if (!colon) return ms_fail(err, MS_ERR_INVALID, "entries are role:key or role:sha256:<hex>");
    size_t rn = (size_t)(colon - item), kn = n - rn - 1;
    const char *k = colon + 1;
    int role = rn == 5 && !strncmp(item, "admin", 5)    ? ROLE_ADMIN_
               : rn == 6 && !strncmp(item, "client", 6) ? ROLE_CLIENT_
                                                        : 0;
    if (!role) return ms_fail(err, MS_ERR_INVALID, "role must be admin or client");
    if (kn >= 7 && !strncmp(k, "sha256:", 7)) {
        // a digest: exactly 64 hex digits, as `sha256sum` prints them (either case)
        const char *h = k + 7;
        size_t hn = kn - 7;
        if (hn != 2 * SHA256_BYTES)
            return ms_fail(err, MS_ERR_INVALID,
                           "sha256: must be followed by 64 hex digits, not %zu", hn);
        for (size_t i = 0; i < SHA256_BYTES; i++) {
            int hi = hex_value(h[2 * i]), lo = hex_value(h[2 * i + 1]);
            if (hi < 0 || lo < 0) {
                wipe(out, sizeof *out);
                return ms_fail(err, MS_ERR_INVALID, "sha256: must be followed by 64 hex digits");
            }
            out->digest[i] = (unsigned char)(hi * 16 + lo);
        }
        out->hashed = 1;
        out->role = role;
        return MS_OK;
    }
    if (kn < 16 || kn > 127) return ms_fail(err, MS_ERR_INVALID, "keys must be 16..127 characters");
    for (size_t i = 0; i < kn; i++)
        if (!isgraph((unsigned char)k[i]))
            return ms_fail(err, MS_ERR_INVALID, "keys must be printable, without spaces");
    memcpy(out->key, k, kn);
    out->key[kn] = '\0';
    out->role = role;
    return MS_OK;
}

MsStatus keys_parse_text(ServerKey *keys, int *n, int max, const char *text, size_t len,
                         const char *who, MsError *err) {
    int k = *n, line = 0;
    MsStatus st = MS_OK;
    for (size_t at = 0; at < len && st == MS_OK;) {
        line++;
        const char *eol = memchr(text + at, '\n', len - at);
        size_t ln = eol ? (size_t)(eol - (text + at)) : len - at;
        const char *s = text + at;
        at += ln + (eol != NULL);
        if (memchr(s, '\0', ln)) {
            st = ms_fail(err, MS_ERR_INVALID, "%s line %d: contains a NUL byte", who, line);
            break;
        }
        size_t lead = 0;
        while (lead < ln && isspace((unsigned char)s[lead]))
            lead++;
        if (lead == ln || s[lead] == '#') continue;
        ServerKey e;
        MsError why = {0};
        if (keys_parse_entry(&e, s, ln, &why) != MS_OK) {
            st = ms_fail(err, MS_ERR_INVALID, "%s line %d: %s", who, line, why.msg);
            break;
        }
        if (k >= max) {
            wipe(&e, sizeof e);
            st = ms_fail(err, MS_ERR_INVALID, "%s line %d: more than %d keys in all", who, line,
                         max);
            break;
        }
        e.from_file = 1;
        keys[k++] = e;
        wipe(&e, sizeof e);
    }
    if (st != MS_OK) {
        wipe(keys + *n, (size_t)(k - *n) * sizeof *keys);
        return st;
    }
    *n = k;
    return MS_OK;
}

/* ---- the key file ---- */

static void id_from_stat(KeyFileId *id, const struct stat *sb) {
    id->exists = 1;
    id->dev = (uint64_t)sb->st_dev;
    id->ino = (uint64_t)sb->st_ino;
    id->size = (uint64_t)sb->st_size;
    id->mtime_ns = (int64_t)sb->st_mtim.tv_sec * 1000000000LL + sb->st_mtim.tv_nsec;
    id->ctime_ns = (int64_t)sb->st_ctim.tv_sec * 1000000000LL + sb->st_ctim.tv_nsec;
}

void keys_file_id(const char *path, KeyFileId *id) {
    struct stat sb;
    memset(id, 0, sizeof *id);
    if (stat(path, &sb) == 0) id_from_stat(id, &sb);
}

int keys_file_id_eq(const KeyFileId *a, const KeyFileId *b) {
    return a->exists == b->exists && a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
           a->mtime_ns == b->mtime_ns && a->ctime_ns == b->ctime_ns;
}

MsStatus keys_read_file(ServerKey *keys, int *n, int max, const char *path, const char *who,
                        KeyFileId *id, MsError *err) {
    memset(id, 0, sizeof *id);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        keys_file_id(path, id); // a file that exists but cannot be opened is still a version
        return ms_fail(err, MS_ERR_IO, "%s: cannot open %s (%s)", who, path, strerror(e));
    }
    struct stat sb;
    char *text = NULL;
    size_t len = 0;
    MsStatus st = MS_OK;
    if (fstat(fd, &sb) != 0) {
        st = ms_fail(err, MS_ERR_IO, "%s: cannot stat %s (%s)", who, path, strerror(errno));
        goto done;
    }
    id_from_stat(id, &sb);
    if (!S_ISREG(sb.st_mode)) {
        st = ms_fail(err, MS_ERR_IO, "%s: %s is not a regular file", who, path);
        goto done;
    }
    if (sb.st_size > KEYS_FILE_MAX_BYTES) {
        st = ms_fail(err, MS_ERR_TOO_LARGE, "%s: %s is larger than %d bytes", who, path,
                     KEYS_FILE_MAX_BYTES);
        goto done;
    }
    // one byte more than the limit: a file that grew after fstat is caught, not cut short
    if (!(text = malloc(KEYS_FILE_MAX_BYTES + 1))) {
        st = ms_fail(err, MS_ERR_NOMEM, "out of memory");
        goto done;
    }
    for (;;) {
        ssize_t r = read(fd, text + len, KEYS_FILE_MAX_BYTES + 1 - len);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            st = ms_fail(err, MS_ERR_IO, "%s: cannot read %s (%s)", who, path, strerror(errno));
            goto done;
        }
        if (r == 0) break;
        len += (size_t)r;
        if (len > KEYS_FILE_MAX_BYTES) {
            st = ms_fail(err, MS_ERR_TOO_LARGE, "%s: %s is larger than %d bytes", who, path,
                         KEYS_FILE_MAX_BYTES);
            goto done;
        }
    }
    st = keys_parse_text(keys, n, max, text, len, who, err);
done:
    if (text) {
        wipe(text, len);
        free(text);
    }
    close(fd);
    return st;
}

/* ---- key sets ---- */

struct KeySet {
    atomic_int refs;
    int n;                                               // entries
    int role[SERVER_MAX_KEYS];                           // 1 client, 2 admin
    unsigned char digest[SERVER_MAX_KEYS][SHA256_BYTES]; // SHA-256 of each key
};

KeySet *keyset_create(const ServerKey *keys, int n) {
    if (n < 0 || n > SERVER_MAX_KEYS) return NULL;
    KeySet *ks = calloc(1, sizeof *ks);
    if (!ks) return NULL;
    atomic_init(&ks->refs, 1);
    ks->n = n;
    for (int i = 0; i < n; i++) {
        ks->role[i] = keys[i].role;
        if (keys[i].hashed)
            memcpy(ks->digest[i], keys[i].digest, SHA256_BYTES);
        else
            sha256(ks->digest[i], keys[i].key, strlen(keys[i].key));
    }
    return ks;
}

KeySet *keyset_retain(KeySet *ks) {
    atomic_fetch_add_explicit(&ks->refs, 1, memory_order_relaxed);
    return ks;
}

void keyset_release(KeySet *ks) {
    if (!ks) return;
    // acq_rel: every reader's last use of the set happens before the free
    if (atomic_fetch_sub_explicit(&ks->refs, 1, memory_order_acq_rel) != 1) return;
    wipe(ks->digest, sizeof ks->digest);
    free(ks);
}

int keyset_count(const KeySet *ks) {
    return ks->n;
}

int keyset_count_role(const KeySet *ks, int role) {
    int c = 0;
    for (int i = 0; i < ks->n; i++)
        c += ks->role[i] == role;
    return c;
}

int keyset_role(const KeySet *ks, const char *presented, size_t n) {
    unsigned char d[SHA256_BYTES];
    sha256(d, presented, n);
    unsigned best = 0;
    for (int i = 0; i < ks->n; i++) {
        unsigned diff = 0;
        for (int j = 0; j < SHA256_BYTES; j++)
            diff |= (unsigned)(d[j] ^ ks->digest[i][j]);
        // diff is 0..255: (diff - 1) >> 8 is all ones only for 0; the role is taken through a
        // mask, so a match changes no branch
        unsigned eq = ((diff - 1u) >> 8) & 1u;
        unsigned role = (unsigned)ks->role[i];
        unsigned higher = (best - role) >> (sizeof(unsigned) * 8 - 1); // 1 when role > best
        unsigned mask = 0u - (eq & higher);
        best ^= (best ^ role) & mask;
    }
    wipe(d, sizeof d);
    return (int)best;
}

/* ---- the holder ---- */

void keyholder_init(KeyHolder *h, KeySet *ks) {
    pthread_mutex_init(&h->mu, NULL);
    h->cur = ks;
}

KeySet *keyholder_get(KeyHolder *h) {
    pthread_mutex_lock(&h->mu);
    KeySet *ks = keyset_retain(h->cur);
    pthread_mutex_unlock(&h->mu);
    return ks;
}

void keyholder_swap(KeyHolder *h, KeySet *ks) {
    pthread_mutex_lock(&h->mu);
    KeySet *old = h->cur;
    h->cur = ks;
    pthread_mutex_unlock(&h->mu);
    keyset_release(old); // freed here unless a request still holds it
}

void keyholder_free(KeyHolder *h) {
    if (!h->cur) return;
    keyset_release(h->cur);
    h->cur = NULL;
    pthread_mutex_destroy(&h->mu);
}
