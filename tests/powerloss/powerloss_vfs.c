/*
 * The power-loss VFS: linked only into metaserve_powerloss, the power-loss test's build of the
 * server (tests/powerloss/CMakeLists.txt); the service's binary does not contain it. When
 * METASERVE_TEST_VFS is set, a constructor registers it as SQLite's default VFS before main, so
 * every connection the server opens goes through it; unset, the binary behaves as `metaserve`.
 *
 * It is a shim over the default unix VFS that holds every write in memory until xSync, as an
 * operating system's page cache holds dirty pages until fsync, and writes it out only then. So
 * when the process dies by SIGKILL, exactly what a power cut would lose is lost: every write not
 * yet synced. The pending state is per file (by path) and shared by every handle the process has
 * open on it, as the page cache is: a read through any handle sees every write made through any
 * other, synced or not. Truncations are held the same way. Files without a name (temporary
 * files) pass through. The -shm file is not a file of this VFS (the unix VFS maps it itself, and
 * SQLite rebuilds it after a crash): xShmMap, xShmLock, xShmBarrier and xShmUnmap pass through.
 * The io methods are version 2, so SQLite never memory-maps a file (xFetch would bypass the
 * shim); SQLITE_FCNTL_SIZE_HINT is ignored (it would grow the real file behind the shim).
 *
 * METASERVE_TEST_VFS=hold: the above. METASERVE_TEST_VFS=torn:SEED: also, as a disk cache may,
 * writes some unsynced data out early: each held write is, with probability 1/8, copied to the
 * real file at once, but only a prefix of it, cut at a random byte (a torn sector). A SIGKILL
 * then leaves such fragments of unsynced writes on disk, in any order, beside everything synced:
 * what the unix VFS's SQLITE_IOCAP_POWERSAFE_OVERWRITE allows a power cut to leave. Reads still
 * see the whole write; the sync writes it out in full.
 *
 * POWERLOSS_SYNCHRONOUS=NORMAL (or FULL, or GROUP) runs every database in that mode instead of
 * the store's own group commit (store_sqlite_synchronous_override), to show that the test
 * catches NORMAL. Because the held state is per file, an xSync through one connection's handle
 * of the WAL writes out what every connection wrote to it, as fsync(2) on Linux flushes the
 * file's dirty pages whichever descriptor it is called on: the group commit's leader syncs the
 * WAL for the other connections' commits this way.
 *
 * Sizes: what is pending between two syncs, i.e. one write transaction's WAL frames (a few MB
 * for the test's uploads) or one checkpoint's pages; blocks of 4 KiB in a hash table.
 */
#include <pthread.h>
#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BLOCK       4096      // bytes of one pending block
#define NO_FLOOR    INT64_MAX // Shadow.floor when no truncation is pending
#define TEAR_ONE_IN 8         // torn mode: one held write in this many is written out early

/* ---- pending state of one file ---- */

typedef struct Block Block;
struct Block {
    sqlite3_int64 no; // block number: bytes [no * BLOCK, (no + 1) * BLOCK)
    Block *next;      // in its hash bucket
    unsigned char data[BLOCK];
};

// The file as the process sees it, where it differs from the real file: held blocks, a held
// size, and a floor at and above which the real file's bytes are stale (a held truncation, or
// an extension whose gap reads as zeros). Clean (dirty == 0): reads and sizes are the real file's.
typedef struct Shadow Shadow;
struct Shadow {
    char *path;
    Shadow *next; // in g_shadows
    int refs;     // open handles
    int unlisted; // removed from g_shadows by a delete: freed when its last handle closes
    pthread_mutex_t mu;
    int dirty;
    sqlite3_int64 size;  // held size (valid when dirty)
    sqlite3_int64 floor; // real bytes at offsets >= floor are stale (valid when dirty)
    Block **tab;         // hash table of held blocks
    size_t cap, n;       // buckets (a power of 2), blocks
};

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER; // g_shadows, refs, unlisted
static Shadow *g_shadows;
static sqlite3_vfs *g_base; // the unix VFS
static int g_torn;          // METASERVE_TEST_VFS=torn:SEED
static uint64_t g_rng;      // its seed, then its state (under g_mu)

static uint64_t rng_next(void) {
    pthread_mutex_lock(&g_mu);
    uint64_t z = (g_rng += 0x9e3779b97f4a7c15ULL);
    pthread_mutex_unlock(&g_mu);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static Block **bucket(Shadow *sh, sqlite3_int64 no) {
    return &sh->tab[(size_t)((uint64_t)no * 0x9e3779b97f4a7c15ULL >> 20) & (sh->cap - 1)];
}

static Block *block_find(Shadow *sh, sqlite3_int64 no) {
    if (!sh->cap) return NULL;
    for (Block *b = *bucket(sh, no); b; b = b->next)
        if (b->no == no) return b;
    return NULL;
}

static int table_grow(Shadow *sh) {
    size_t cap = sh->cap ? 2 * sh->cap : 256;
    Block **old = sh->tab;
    size_t old_cap = sh->cap;
    if (!(sh->tab = calloc(cap, sizeof *sh->tab))) {
        sh->tab = old;
        return 0;
    }
    sh->cap = cap;
    for (size_t i = 0; i < old_cap; i++)
        for (Block *b = old[i], *nx; b; b = nx) {
            nx = b->next;
            Block **h = bucket(sh, b->no);
            b->next = *h;
            *h = b;
        }
    free(old);
    return 1;
}

static void blocks_free(Shadow *sh) {
    for (size_t i = 0; i < sh->cap; i++)
        for (Block *b = sh->tab[i], *nx; b; b = nx) {
            nx = b->next;
            free(b);
        }
    free(sh->tab);
    sh->tab = NULL;
    sh->cap = sh->n = 0;
}

// Drops the held blocks at or above offset `from` and zeroes the tail of the one it cuts.
static void blocks_cut(Shadow *sh, sqlite3_int64 from) {
    for (size_t i = 0; i < sh->cap; i++)
        for (Block **pb = &sh->tab[i]; *pb;) {
            Block *b = *pb;
            sqlite3_int64 start = b->no * BLOCK;
            if (start >= from) {
                *pb = b->next;
                free(b);
                sh->n--;
                continue;
            }
            if (start + BLOCK > from)
                memset(b->data + (from - start), 0, (size_t)(start + BLOCK - from));
            pb = &b->next;
        }
}

static void shadow_free(Shadow *sh) {
    blocks_free(sh);
    pthread_mutex_destroy(&sh->mu);
    free(sh->path);
    free(sh);
}

/* ---- the file ---- */

typedef struct {
    sqlite3_file base;
    sqlite3_file *real; // the unix VFS's file, allocated right after this struct
    Shadow *sh;         // NULL: a temporary file, passed through
} PlFile;

static sqlite3_int64 real_size(PlFile *f) {
    sqlite3_int64 n = 0;
    if (f->real->pMethods->xFileSize(f->real, &n) != SQLITE_OK) return -1;
    return n;
}

// Makes sh dirty: the held size starts at the real one. Under sh->mu.
static int make_dirty(PlFile *f) {
    Shadow *sh = f->sh;
    if (sh->dirty) return SQLITE_OK;
    sqlite3_int64 n = real_size(f);
    if (n < 0) return SQLITE_IOERR_FSTAT;
    sh->size = n;
    sh->floor = NO_FLOOR;
    sh->dirty = 1;
    return SQLITE_OK;
}

// Reads [off, off + n) of the real file as the process sees it below the held blocks: zeros past
// its end and at or above the floor. Under sh->mu, dirty.
static int read_under(PlFile *f, unsigned char *dst, int n, sqlite3_int64 off) {
    int rc = f->real->pMethods->xRead(f->real, dst, n, off);
    if (rc == SQLITE_IOERR_SHORT_READ) rc = SQLITE_OK; // zero-filled by the unix VFS
    if (rc != SQLITE_OK) return rc;
    sqlite3_int64 fl = f->sh->floor;
    if (fl < off + n) {
        sqlite3_int64 from = fl > off ? fl : off;
        memset(dst + (from - off), 0, (size_t)(off + n - from));
    }
    return SQLITE_OK;
}

// The held block no, created from what the process sees there now. Under sh->mu, dirty.
static int block_get(PlFile *f, sqlite3_int64 no, Block **out) {
    Shadow *sh = f->sh;
    Block *b = block_find(sh, no);
    if (!b) {
        if (sh->n >= sh->cap && !table_grow(sh)) return SQLITE_IOERR_NOMEM;
        if (!(b = malloc(sizeof *b))) return SQLITE_IOERR_NOMEM;
        b->no = no;
        memset(b->data, 0, BLOCK);
        sqlite3_int64 start = no * BLOCK;
        if (start < sh->size) {
            sqlite3_int64 len = sh->size - start < BLOCK ? sh->size - start : BLOCK;
            int rc = read_under(f, b->data, (int)len, start);
            if (rc != SQLITE_OK) {
                free(b);
                return rc;
            }
        }
        Block **h = bucket(sh, no);
        b->next = *h;
        *h = b;
        sh->n++;
    }
    *out = b;
    return SQLITE_OK;
}

static int pl_close(sqlite3_file *file) {
    PlFile *f = (PlFile *)file;
    int rc = f->real->pMethods ? f->real->pMethods->xClose(f->real) : SQLITE_OK;
    Shadow *sh = f->sh;
    if (sh) {
        // the held writes stay when the last handle closes, as dirty pages stay in the page
        // cache: a later open sees them, a later sync writes them
        pthread_mutex_lock(&g_mu);
        int gone = --sh->refs == 0 && sh->unlisted;
        pthread_mutex_unlock(&g_mu);
        if (gone) shadow_free(sh);
    }
    return rc;
}

static int pl_read(sqlite3_file *file, void *dst, int n, sqlite3_int64 off) {
    PlFile *f = (PlFile *)file;
    Shadow *sh = f->sh;
    if (!sh) return f->real->pMethods->xRead(f->real, dst, n, off);
    pthread_mutex_lock(&sh->mu);
    int rc;
    if (!sh->dirty) {
        rc = f->real->pMethods->xRead(f->real, dst, n, off);
        goto done;
    }
    unsigned char *d = dst;
    int have = off >= sh->size ? 0 : (sh->size - off < n ? (int)(sh->size - off) : n);
    memset(d + have, 0, (size_t)(n - have));
    rc = have > 0 ? read_under(f, d, have, off) : SQLITE_OK;
    for (sqlite3_int64 p = off; rc == SQLITE_OK && p < off + have;) {
        sqlite3_int64 no = p / BLOCK, in = p - no * BLOCK;
        sqlite3_int64 len = BLOCK - in < off + have - p ? BLOCK - in : off + have - p;
        Block *b = block_find(sh, no);
        if (b) memcpy(d + (p - off), b->data + in, (size_t)len);
        p += len;
    }
    if (rc == SQLITE_OK && have < n) rc = SQLITE_IOERR_SHORT_READ;
done:
    pthread_mutex_unlock(&sh->mu);
    return rc;
}

// Torn mode: writes a random prefix of src (cut at a random byte) to the real file now.
static void tear(PlFile *f, const void *src, int n, sqlite3_int64 off) {
    if (rng_next() % TEAR_ONE_IN != 0) return;
    int cut = (int)(rng_next() % (uint64_t)n);
    if (cut > 0) (void)f->real->pMethods->xWrite(f->real, src, cut, off);
}

static int pl_write(sqlite3_file *file, const void *src, int n, sqlite3_int64 off) {
    PlFile *f = (PlFile *)file;
    Shadow *sh = f->sh;
    if (!sh) return f->real->pMethods->xWrite(f->real, src, n, off);
    pthread_mutex_lock(&sh->mu);
    int rc = make_dirty(f);
    // bytes between the old end and off read as zeros, not as stale bytes of the real file
    if (rc == SQLITE_OK && off > sh->size && sh->size < sh->floor) sh->floor = sh->size;
    const unsigned char *s = src;
    for (sqlite3_int64 p = off; rc == SQLITE_OK && p < off + n;) {
        sqlite3_int64 no = p / BLOCK, in = p - no * BLOCK;
        sqlite3_int64 len = BLOCK - in < off + n - p ? BLOCK - in : off + n - p;
        Block *b;
        rc = block_get(f, no, &b);
        if (rc == SQLITE_OK) memcpy(b->data + in, s + (p - off), (size_t)len);
        p += len;
    }
    if (rc == SQLITE_OK && off + n > sh->size) sh->size = off + n;
    if (rc == SQLITE_OK && g_torn) tear(f, src, n, off);
    pthread_mutex_unlock(&sh->mu);
    return rc == SQLITE_IOERR_NOMEM ? SQLITE_IOERR_WRITE : rc;
}

static int pl_truncate(sqlite3_file *file, sqlite3_int64 size) {
    PlFile *f = (PlFile *)file;
    Shadow *sh = f->sh;
    if (!sh) return f->real->pMethods->xTruncate(f->real, size);
    pthread_mutex_lock(&sh->mu);
    int rc = make_dirty(f);
    if (rc == SQLITE_OK) {
        if (size < sh->size) blocks_cut(sh, size);
        sqlite3_int64 low = size < sh->size ? size : sh->size;
        if (low < sh->floor) sh->floor = low;
        sh->size = size;
    }
    pthread_mutex_unlock(&sh->mu);
    return rc;
}

// Writes everything held out to the real file, then syncs it. Under sh->mu. A kill during the
// write-out leaves a part of it in the real file: a power cut during an fsync may too.
static int flush(PlFile *f, int flags) {
    Shadow *sh = f->sh;
    const sqlite3_io_methods *m = f->real->pMethods;
    int rc = SQLITE_OK;
    if (sh->dirty) {
        sqlite3_int64 n = real_size(f);
        if (n < 0) return SQLITE_IOERR_FSTAT;
        if (sh->floor < n) rc = m->xTruncate(f->real, sh->floor);
        for (size_t i = 0; rc == SQLITE_OK && i < sh->cap; i++)
            for (Block *b = sh->tab[i]; rc == SQLITE_OK && b; b = b->next) {
                sqlite3_int64 start = b->no * BLOCK;
                if (start >= sh->size) continue;
                int len = sh->size - start < BLOCK ? (int)(sh->size - start) : BLOCK;
                rc = m->xWrite(f->real, b->data, len, start);
            }
        if (rc == SQLITE_OK && (n = real_size(f)) != sh->size)
            rc = n < 0 ? SQLITE_IOERR_FSTAT : m->xTruncate(f->real, sh->size);
        if (rc != SQLITE_OK) return rc;
        blocks_free(sh);
        sh->dirty = 0;
    }
    return m->xSync(f->real, flags);
}

static int pl_sync(sqlite3_file *file, int flags) {
    PlFile *f = (PlFile *)file;
    Shadow *sh = f->sh;
    if (!sh) return f->real->pMethods->xSync(f->real, flags);
    pthread_mutex_lock(&sh->mu);
    int rc = flush(f, flags);
    pthread_mutex_unlock(&sh->mu);
    return rc;
}

static int pl_file_size(sqlite3_file *file, sqlite3_int64 *size) {
    PlFile *f = (PlFile *)file;
    Shadow *sh = f->sh;
    if (!sh) return f->real->pMethods->xFileSize(f->real, size);
    pthread_mutex_lock(&sh->mu);
    int rc = SQLITE_OK;
    if (sh->dirty)
        *size = sh->size;
    else
        rc = f->real->pMethods->xFileSize(f->real, size);
    pthread_mutex_unlock(&sh->mu);
    return rc;
}

static int pl_lock(sqlite3_file *file, int level) {
    PlFile *f = (PlFile *)file;
    return f->real->pMethods->xLock(f->real, level);
}

static int pl_unlock(sqlite3_file *file, int level) {
    PlFile *f = (PlFile *)file;
    return f->real->pMethods->xUnlock(f->real, level);
}

static int pl_check_reserved(sqlite3_file *file, int *out) {
    PlFile *f = (PlFile *)file;
    return f->real->pMethods->xCheckReservedLock(f->real, out);
}

static int pl_file_control(sqlite3_file *file, int op, void *arg) {
    PlFile *f = (PlFile *)file;
    if (op == SQLITE_FCNTL_SIZE_HINT && f->sh) return SQLITE_OK; // a hint: held writes grow it
    if (op == SQLITE_FCNTL_VFSNAME) {
        *(char **)arg = sqlite3_mprintf("powerloss");
        return SQLITE_OK;
    }
    return f->real->pMethods->xFileControl(f->real, op, arg);
}

static int pl_sector_size(sqlite3_file *file) {
    PlFile *f = (PlFile *)file;
    return f->real->pMethods->xSectorSize(f->real);
}

static int pl_device_characteristics(sqlite3_file *file) {
    PlFile *f = (PlFile *)file;
    return f->real->pMethods->xDeviceCharacteristics(f->real);
}

static int pl_shm_map(sqlite3_file *file, int region, int size, int extend, void volatile **out) {
    PlFile *f = (PlFile *)file;
    return f->real->pMethods->xShmMap(f->real, region, size, extend, out);
}

static int pl_shm_lock(sqlite3_file *file, int offset, int n, int flags) {
    PlFile *f = (PlFile *)file;
    return f->real->pMethods->xShmLock(f->real, offset, n, flags);
}

static void pl_shm_barrier(sqlite3_file *file) {
    PlFile *f = (PlFile *)file;
    f->real->pMethods->xShmBarrier(f->real);
}

static int pl_shm_unmap(sqlite3_file *file, int delete_flag) {
    PlFile *f = (PlFile *)file;
    return f->real->pMethods->xShmUnmap(f->real, delete_flag);
}

static const sqlite3_io_methods PL_METHODS = {
    2, // no xFetch / xUnfetch: SQLite never memory-maps these files
    pl_close,
    pl_read,
    pl_write,
    pl_truncate,
    pl_sync,
    pl_file_size,
    pl_lock,
    pl_unlock,
    pl_check_reserved,
    pl_file_control,
    pl_sector_size,
    pl_device_characteristics,
    pl_shm_map,
    pl_shm_lock,
    pl_shm_barrier,
    pl_shm_unmap,
    NULL,
    NULL,
};

/* ---- the VFS ---- */

// The shadow of path, created when absent; one more reference. Under g_mu.
static Shadow *shadow_ref(const char *path) {
    for (Shadow *sh = g_shadows; sh; sh = sh->next)
        if (strcmp(sh->path, path) == 0) {
            sh->refs++;
            return sh;
        }
    Shadow *sh = calloc(1, sizeof *sh);
    if (!sh || !(sh->path = strdup(path))) {
        free(sh);
        return NULL;
    }
    pthread_mutex_init(&sh->mu, NULL);
    sh->refs = 1;
    sh->next = g_shadows;
    g_shadows = sh;
    return sh;
}

static int pl_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *file, int flags, int *out) {
    (void)vfs;
    PlFile *f = (PlFile *)file;
    memset(f, 0, sizeof *f);
    f->real = (sqlite3_file *)(f + 1);
    if (name && !(flags & SQLITE_OPEN_DELETEONCLOSE)) {
        pthread_mutex_lock(&g_mu);
        f->sh = shadow_ref(name);
        pthread_mutex_unlock(&g_mu);
        if (!f->sh) return SQLITE_NOMEM;
    }
    int rc = g_base->xOpen(g_base, name, f->real, flags, out);
    if (rc != SQLITE_OK) {
        if (f->sh) {
            pthread_mutex_lock(&g_mu);
            int gone = --f->sh->refs == 0 && f->sh->unlisted;
            pthread_mutex_unlock(&g_mu);
            if (gone) shadow_free(f->sh);
        }
        return rc; // base.pMethods stays NULL: SQLite will not call xClose
    }
    f->base.pMethods = &PL_METHODS;
    return SQLITE_OK;
}

// A deleted file's held writes go with it; a handle still open keeps its shadow, unlisted, so a
// new file of the same name starts clean.
static int pl_delete(sqlite3_vfs *vfs, const char *name, int dir_sync) {
    (void)vfs;
    pthread_mutex_lock(&g_mu);
    for (Shadow **p = &g_shadows; *p; p = &(*p)->next) {
        Shadow *sh = *p;
        if (strcmp(sh->path, name) != 0) continue;
        *p = sh->next;
        sh->unlisted = 1;
        if (sh->refs == 0) shadow_free(sh);
        break;
    }
    pthread_mutex_unlock(&g_mu);
    return g_base->xDelete(g_base, name, dir_sync);
}

static sqlite3_vfs g_vfs;

__attribute__((constructor)) static void powerloss_vfs_register(void) {
    const char *mode = getenv("METASERVE_TEST_VFS");
    if (!mode || !*mode) return;
    if (strncmp(mode, "torn:", 5) == 0) {
        g_torn = 1;
        g_rng = strtoull(mode + 5, NULL, 0);
    } else if (strcmp(mode, "hold") != 0) {
        fprintf(stderr, "powerloss_vfs: METASERVE_TEST_VFS must be hold or torn:SEED, not %s\n",
                mode);
        exit(2);
    }
    g_base = sqlite3_vfs_find(NULL);
    if (!g_base) {
        fprintf(stderr, "powerloss_vfs: no default VFS to wrap\n");
        exit(2);
    }
    g_vfs = *g_base;
    g_vfs.zName = "powerloss";
    g_vfs.szOsFile = (int)sizeof(PlFile) + g_base->szOsFile;
    g_vfs.pNext = NULL;
    g_vfs.pAppData = NULL;
    g_vfs.xOpen = pl_open;
    g_vfs.xDelete = pl_delete;
    if (sqlite3_vfs_register(&g_vfs, 1) != SQLITE_OK) {
        fprintf(stderr, "powerloss_vfs: cannot register the VFS\n");
        exit(2);
    }
}

/* ---- the synchronous level (store_sqlite.c) ---- */

// Declared weak in src/store/store_sqlite.c; defined here, it makes every database of this build
// run in the mode POWERLOSS_SYNCHRONOUS (NORMAL, FULL or GROUP) when that is set.
const char *store_sqlite_synchronous_override(const char *path);
const char *store_sqlite_synchronous_override(const char *path) {
    (void)path;
    const char *level = getenv("POWERLOSS_SYNCHRONOUS");
    return level && *level ? level : NULL;
}
