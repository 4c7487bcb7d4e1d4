/*
 * SQLite backend of store.h, part 4: group commit, the durability barrier of one database file.
 * Owns one SyncBarrier per file the process has open (shared by every connection to it, found
 * by path) and the leader/follower wait that makes a commit durable before it is acknowledged.
 * It does not own the transactions (store_sqlite.c) or the pragmas that set the mode.
 *
 * In the store's own mode (STORE_SYNC_GROUP) connections commit at synchronous=NORMAL: COMMIT
 * writes the transaction's WAL frames into the page cache and returns without an fsync. The
 * committer then takes a ticket and waits on the barrier. One waiter, the leader, fsyncs the
 * WAL through SQLite's own handle of it (xSync, so a test VFS sees the sync), after noting the
 * highest ticket handed out before it started; when the fsync returns, every ticket up to that
 * one is durable and its waiters are released. Waiters that arrive during an fsync wait for the
 * next one, which one of them leads, so N concurrent commits share about two fsyncs instead of
 * paying N one after the other under the write lock. docs/reliability.md ("Group commit")
 * argues why this is sound (checkpoints, WAL restarts, several handles, failures).
 *
 * Invariants: seq counts tickets; every ticket <= synced was taken before an fsync that then
 * succeeded started. A failed fsync is sticky: no later wait on the file succeeds in this
 * process. Workload: one wait per write transaction (hundreds a second at most) and one cheap
 * check per HTTP request that used the store (store_durable_fence); tens of connections.
 */
#include "store_internal.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct SyncBarrier {
    char *path;        // the database file (sqlite3_db_filename: absolute)
    SyncBarrier *next; // in g_barriers
    int refs;          // connections attached (under g_mu)
    pthread_mutex_t mu;
    pthread_cond_t cv; // broadcast when an fsync ends
    uint64_t seq;      // tickets handed out (the last one)
    uint64_t synced;   // every ticket <= synced is covered by a completed, successful fsync
    int pending;       // commits between the start of their COMMIT and their ticket
    int syncing;       // a leader's fsync is in flight
    int waiting;       // waiters asleep until the fsync in flight ends (tests look)
    int failed_rc;     // non-zero: the SQLite code of a failed fsync; sticky
};

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER; // g_barriers and refs
static SyncBarrier *g_barriers;

MsStatus store_sync_attach(Store *s, MsError *err) {
    const char *path = sqlite3_db_filename(s->db, "main");
    if (!path || !*path) return MS_OK; // an in-memory or temporary database: nothing to sync
    pthread_mutex_lock(&g_mu);
    SyncBarrier *b = g_barriers;
    while (b && strcmp(b->path, path) != 0)
        b = b->next;
    if (!b) {
        b = calloc(1, sizeof *b);
        if (b && !(b->path = strdup(path))) {
            free(b);
            b = NULL;
        }
        if (b) {
            pthread_mutex_init(&b->mu, NULL);
            pthread_cond_init(&b->cv, NULL);
            b->next = g_barriers;
            g_barriers = b;
        }
    }
    if (b) b->refs++;
    pthread_mutex_unlock(&g_mu);
    if (!b) return ms_fail(err, MS_ERR_NOMEM, "cannot allocate the commit barrier");
    s->sync = b;
    return MS_OK;
}

void store_sync_detach(Store *s) {
    SyncBarrier *b = s->sync;
    if (!b) return;
    s->sync = NULL;
    pthread_mutex_lock(&g_mu);
    int gone = --b->refs == 0;
    if (gone)
        for (SyncBarrier **p = &g_barriers; *p; p = &(*p)->next)
            if (*p == b) {
                *p = b->next;
                break;
            }
    pthread_mutex_unlock(&g_mu);
    if (!gone) return;
    pthread_cond_destroy(&b->cv);
    pthread_mutex_destroy(&b->mu);
    free(b->path);
    free(b);
}

void store_sync_commit_begin(Store *s) {
    SyncBarrier *b = s->sync;
    if (!b) return;
    pthread_mutex_lock(&b->mu);
    b->pending++;
    pthread_mutex_unlock(&b->mu);
}

// The leader's fsync: the WAL through this connection's own handle of it. Without b->mu.
static int sync_wal(Store *s) {
    sqlite3_file *f = NULL;
    int rc = sqlite3_file_control(s->db, "main", SQLITE_FCNTL_JOURNAL_POINTER, &f);
    if (rc != SQLITE_OK) return rc;
    if (!f || !f->pMethods) return SQLITE_IOERR_FSYNC; // no WAL open: cannot happen after a commit
    return f->pMethods->xSync(f, SQLITE_SYNC_FULL);
}

// Waits until ticket t is durable: leads an fsync when none is in flight, else waits for the one
// in flight and looks again. Under b->mu; returns with it held.
static MsStatus wait_ticket(Store *s, SyncBarrier *b, uint64_t t, MsError *err) {
    for (;;) {
        if (b->failed_rc)
            return ms_fail(err, MS_ERR_IO,
                           "an fsync of the database's WAL failed (%s); this process "
                           "acknowledges no further writes to it: restart the service",
                           sqlite3_errstr(b->failed_rc));
        if (b->synced >= t) return MS_OK;
        if (b->syncing) {
            b->waiting++;
            pthread_cond_wait(&b->cv, &b->mu);
            b->waiting--;
            continue;
        }
        // Lead: every ticket handed out so far belongs to a commit (or a read) that finished
        // before this fsync starts, so the fsync covers it.
        uint64_t upto = b->seq;
        b->syncing = 1;
        pthread_mutex_unlock(&b->mu);
        int rc = sync_wal(s);
        pthread_mutex_lock(&b->mu);
        b->syncing = 0;
        if (rc == SQLITE_OK) {
            if (upto > b->synced) b->synced = upto;
        } else if (!b->failed_rc) {
            b->failed_rc = rc;
        }
        pthread_cond_broadcast(&b->cv);
    }
}

MsStatus store_sync_commit_end(Store *s, int committed, int wait, MsError *err) {
    SyncBarrier *b = s->sync;
    if (!b) return MS_OK;
    pthread_mutex_lock(&b->mu);
    b->pending--;
    MsStatus st = MS_OK;
    if (committed) {
        uint64_t t = ++b->seq;
        if (wait) st = wait_ticket(s, b, t, err);
    }
    pthread_mutex_unlock(&b->mu);
    return st;
}

MsStatus store_durable_fence(Store *s, MsError *err) {
    if (!s || s->pg) return MS_OK; // PostgreSQL publishes a commit only after its WAL flush
    SyncBarrier *b = s->sync;
    if (!b || s->fresh) return MS_OK; // nothing read since a durable commit or fence
    pthread_mutex_lock(&b->mu);
    MsStatus st = MS_OK;
    // Whatever a read of this connection saw was published by a COMMIT that had already
    // written its frames. Its committer is still pending, or holds a ticket <= seq. Nothing
    // pending and everything synced: the read saw only durable commits.
    if (b->failed_rc || b->pending > 0 || b->synced < b->seq) {
        uint64_t t = b->pending > 0 ? ++b->seq : b->seq;
        st = wait_ticket(s, b, t, err);
    }
    pthread_mutex_unlock(&b->mu);
    s->fresh = st == MS_OK;
    return st;
}

int store_sync_waiting(Store *s) {
    SyncBarrier *b = s->sync;
    if (!b) return 0;
    pthread_mutex_lock(&b->mu);
    int n = b->waiting;
    pthread_mutex_unlock(&b->mu);
    return n;
}
