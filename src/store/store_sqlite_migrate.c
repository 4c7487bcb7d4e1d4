/*
 * SQLite backend of store.h: the schema and its migrations, keyed by PRAGMA user_version.
 * migrations[k] takes the file from version k to k + 1 in one transaction that also sets
 * user_version, so a crash leaves the file at one version or the next, never between, and
 * processes opening the same file at once migrate it exactly once. Blob columns come last in
 * each table, so reading the other columns of a row does not walk the blob's overflow pages.
 */
#include "store_internal.h"

#include <stdio.h>

/* ---- schema ---- */

// Version 1: the tables of DESIGN §4. model_names remembers the highest version ever given to
// a name, so no number is ever reused, even after its version or the whole model is deleted.
static const char MIGRATION_1[] =
    "CREATE TABLE models("
    " name TEXT NOT NULL, version INTEGER NOT NULL CHECK (version > 0),"
    " created_at INTEGER NOT NULL, config TEXT NOT NULL, algorithm TEXT NOT NULL,"
    " hyper TEXT NOT NULL, metrics TEXT NOT NULL, job_id TEXT NOT NULL DEFAULT '',"
    " params BLOB NOT NULL, inner_lrs BLOB,"
    " PRIMARY KEY (name, version));"
    "CREATE TABLE model_names(name TEXT PRIMARY KEY NOT NULL, last_version INTEGER NOT NULL);"
    "CREATE TABLE model_aliases("
    " name TEXT NOT NULL, alias TEXT NOT NULL, version INTEGER NOT NULL,"
    " PRIMARY KEY (name, alias),"
    " FOREIGN KEY (name, version) REFERENCES models(name, version) ON DELETE CASCADE);"
    "CREATE INDEX model_aliases_target ON model_aliases(name, version);"
    "CREATE TABLE jobs("
    " id TEXT PRIMARY KEY NOT NULL,"
    " state TEXT NOT NULL"
    "  CHECK (state IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),"
    " config TEXT NOT NULL, name TEXT NOT NULL, created_at INTEGER NOT NULL,"
    " started_at INTEGER NOT NULL DEFAULT 0, finished_at INTEGER NOT NULL DEFAULT 0,"
    " iteration INTEGER NOT NULL DEFAULT 0, total INTEGER NOT NULL,"
    " cancel_requested INTEGER NOT NULL DEFAULT 0, error TEXT NOT NULL DEFAULT '',"
    " result_model TEXT NOT NULL DEFAULT '', result_version INTEGER NOT NULL DEFAULT 0,"
    " metrics TEXT NOT NULL DEFAULT '{}', checkpoint BLOB);"
    "CREATE INDEX jobs_state_created ON jobs(state, created_at);"
    "CREATE INDEX jobs_created ON jobs(created_at);"
    "CREATE TABLE job_metrics("
    " job_id TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,"
    " step INTEGER NOT NULL, key TEXT NOT NULL, value REAL, ts INTEGER NOT NULL,"
    " PRIMARY KEY (job_id, step, key)) WITHOUT ROWID;"
    "CREATE TABLE datasets("
    " id TEXT PRIMARY KEY NOT NULL, name TEXT NOT NULL,"
    " kind TEXT NOT NULL CHECK (kind IN ('tasks', 'classes')),"
    " created_at INTEGER NOT NULL, n_items INTEGER NOT NULL, n_rows INTEGER NOT NULL,"
    " x_dim INTEGER NOT NULL, y_dim INTEGER NOT NULL, meta TEXT NOT NULL,"
    " bytes INTEGER NOT NULL, x BLOB NOT NULL, y BLOB NOT NULL, idx BLOB NOT NULL);"
    "CREATE INDEX datasets_created ON datasets(created_at);"
    "CREATE TABLE adaptations("
    " id TEXT PRIMARY KEY NOT NULL, model TEXT NOT NULL, version INTEGER NOT NULL,"
    " created_at INTEGER NOT NULL, expires_at INTEGER NOT NULL,"
    " support_loss_before REAL, support_loss_after REAL, params BLOB NOT NULL,"
    " FOREIGN KEY (model, version) REFERENCES models(name, version) ON DELETE CASCADE);"
    "CREATE INDEX adaptations_model ON adaptations(model, version);";

// Version 2: store_adaptation_expire deletes by expires_at; without this index it scans.
static const char MIGRATION_2[] = "CREATE INDEX adaptations_expires ON adaptations(expires_at);";

// migrations[k] takes a file from user_version k to k + 1.
static const char *const migrations[] = {MIGRATION_1, MIGRATION_2};
_Static_assert(sizeof migrations / sizeof migrations[0] == STORE_SCHEMA_VERSION,
               "one migration per schema version");

// Applies migrations until the file is at `target`. Each step re-reads user_version inside its
// IMMEDIATE transaction, so processes opening the same file at once migrate it exactly once.
MsStatus store_sqlite_migrate(Store *s, int target, MsError *err) {
    int v;
    MsStatus st = store_user_version(s, &v, err);
    if (st != MS_OK) return st;
    // An up-to-date file (the usual case) takes no write lock at all.
    for (int k = v; k < target; k++) {
        if ((st = store_tx_begin(s, err)) != MS_OK) goto done;
        if ((st = store_user_version(s, &v, err)) != MS_OK) goto done;
        if (v > STORE_SCHEMA_VERSION) {
            st = store_refuse_newer(v, err);
            goto done;
        }
        if (v <= k) {
            MS_ASSERT(v == k); // steps run in order, so an older file cannot appear here
            char bump[48];
            snprintf(bump, sizeof bump, "PRAGMA user_version = %d", k + 1);
            int rc = sqlite3_exec(s->db, migrations[k], NULL, NULL, NULL);
            if (rc == SQLITE_OK) rc = sqlite3_exec(s->db, bump, NULL, NULL, NULL);
            if (rc != SQLITE_OK) {
                char what[64];
                snprintf(what, sizeof what, "migrating the schema to version %d", k + 1);
                st = store_sqlite_fail(s, rc, what, err);
                goto done;
            }
        }
        if ((st = store_tx_commit(s, err)) != MS_OK) goto done;
    }
done:
    if (st != MS_OK) store_tx_rollback(s);
    return st;
}
