/*
 * Tests of the store (src/store/store_*.c) through store.h, on both backends from this one
 * source: test_store runs it on SQLite files, test_store_pg on a real PostgreSQL server
 * (METASERVE_TEST_PG, started by CTest's pg fixture with tests/pg/pgctl.sh; each test gets a
 * database of its own). Tests of one backend's own mechanics (SQLite's WAL, busy lock, page cap,
 * query plans; PostgreSQL's migration lock, lease fencing and reconnection) are registered only
 * for that backend in main. Round trips of every entity
 * (arrays compared bit for bit with memcmp), the job state machine, pagination cursors, the
 * schema migrations from every earlier version, refusal of newer files, concurrency (threads
 * with their own connections never double-claim a job or a model version), and the mapping of
 * SQLite failures (busy, disk full, read-only, corrupt blobs) to clear errors.
 *
 * Each test gets a fresh database in its own mkdtemp directory under /tmp, removed afterwards;
 * the teardown also runs PRAGMA integrity_check, so every test ends with "integrity ok". Faults
 * are injected with raw sqlite3 calls on the same file (this test, like the store, may include
 * sqlite3.h): a second connection holding the write lock, max_page_count for a full disk,
 * query_only for a read-only database, and overwritten blob bytes for corruption.
 *
 * Memory: a 100,000 x 784 float pool (314 MB) is stored and read back while the peak resident
 * set (getrusage ru_maxrss) grows by less than 1.15 x the data, i.e. the data is held once; the
 * bound is explained above that test. The writing runs in a forked child with its own connection.
 *
 * Time bounds: created_at and friends must fall inside [before, after] of the call measured with
 * store_now_ms (exact, same clock). The busy test shortens the busy timeout to 100 ms and allows
 * 90 ms (the busy handler's sleeps are coarse) up to 3 s (far less than the 5 s default, so it
 * fails if the shortened timeout is ignored).
 */
#define _DEFAULT_SOURCE // usleep
#include <check.h>
#include <dirent.h>
#include <math.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../../src/store/store_internal.h"
#include "../../src/store/store_pg.h"
#include "../pg/pgtest.h"
#include "metaserve/core/rng.h"
#include "metaserve/store/store.h"

static char g_root[64];  // one directory for the whole suite, removed by the unchecked teardown
static char g_dir[128];  // this test's own directory inside it
static char g_path[256]; // this test's database: a file, or a PostgreSQL URI
static int g_pg;         // 1: the suite runs on PostgreSQL (METASERVE_TEST_PG)
static Store *g_st;

/* ---- fixture and helpers ---- */

// Removes path and everything under it (lstat: symbolic links are removed, not followed).
static void remove_tree(const char *path) {
    struct stat sb;
    if (lstat(path, &sb) != 0) return;
    if (S_ISDIR(sb.st_mode)) {
        DIR *d = opendir(path);
        if (d) {
            struct dirent *e;
            while ((e = readdir(d)) != NULL) {
                if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
                char sub[512];
                snprintf(sub, sizeof sub, "%s/%s", path, e->d_name);
                remove_tree(sub);
            }
            closedir(d);
        }
        rmdir(path);
    } else {
        unlink(path);
    }
}

static void remove_db_files(const char *path) {
    char p[300];
    const char *suffixes[3] = {"", "-wal", "-shm"};
    for (int i = 0; i < 3; i++) {
        snprintf(p, sizeof p, "%s%s", path, suffixes[i]);
        unlink(p);
    }
}

// Unchecked (runs in the parent once): a failed test exits its forked child before the checked
// teardown, so the suite directory is what guarantees nothing is left under /tmp.
static void suite_setup(void) {
    snprintf(g_root, sizeof g_root, "/tmp/ms_store_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(g_root));
}

static void suite_teardown(void) {
    remove_tree(g_root);
}

static void setup(void) {
    snprintf(g_dir, sizeof g_dir, "%s/t_XXXXXX", g_root);
    ck_assert_ptr_nonnull(mkdtemp(g_dir));
    if (g_pg)
        ck_assert_msg(pgtest_fresh_db(g_path, sizeof g_path) == 0, "no fresh PostgreSQL database");
    else
        snprintf(g_path, sizeof g_path, "%s/test.db", g_dir);
    MsError err = {0};
    ck_assert_msg(store_open(&g_st, g_path, &err) == MS_OK, "open: %s", err.msg);
}

static void teardown(void) {
    if (g_st) {
        MsError err = {0};
        MsStatus st = store_integrity_check(g_st, &err);
        store_close(g_st);
        g_st = NULL;
        ck_assert_msg(st == MS_OK, "integrity: %s", err.msg);
    }
    remove_tree(g_dir);
}

// Asserts MS_OK; `call` passes &e_, the error declared here, so a failure shows its message.
#define OK(call)                                                                                   \
    do {                                                                                           \
        MsError e_ = {0};                                                                          \
        MsStatus s_ = (call);                                                                      \
        ck_assert_msg(s_ == MS_OK, "%s -> %s: %s", #call, ms_status_str(s_), e_.msg);              \
    } while (0)

// Expects `code` and, when sub != NULL, that the message contains sub.
static void expect(MsStatus got, const MsError *e, MsStatus code, const char *sub) {
    ck_assert_msg(got == code, "got %s (%s), want %s", ms_status_str(got), e->msg,
                  ms_status_str(code));
    ck_assert_int_eq(e->code, code);
    if (sub) ck_assert_msg(strstr(e->msg, sub) != NULL, "\"%s\" lacks \"%s\"", e->msg, sub);
}

static char *dupstr(const char *s) {
    char *c = malloc(strlen(s) + 1);
    ck_assert_ptr_nonnull(c);
    strcpy(c, s);
    return c;
}

static float *random_floats(size_t n, uint64_t seed) {
    Rng r;
    rng_seed(&r, seed);
    float *x = malloc(n * sizeof *x);
    ck_assert_ptr_nonnull(x);
    for (size_t i = 0; i < n; i++)
        x[i] = (float)rng_range(&r, -3, 3);
    return x;
}

// A model owning heap copies of everything (release with store_model_free).
static void model_make(StoreModel *m, const char *name, size_t P, int with_lrs, uint64_t seed) {
    memset(m, 0, sizeof *m);
    snprintf(m->name, sizeof m->name, "%s", name);
    snprintf(m->algorithm, sizeof m->algorithm, "%s", with_lrs ? "metasgd" : "maml");
    m->config = dupstr("{\"name\":\"x\",\"iterations\":10}");
    m->hyper = dupstr("{\"inner_lr\":0.01}");
    m->metrics = dupstr("{\"meta_loss\":0.25}");
    m->n_params = P;
    m->params = random_floats(P, seed);
    if (with_lrs) m->inner_lrs = random_floats(P, seed + 1000);
}

static int put_model(const char *name, size_t P, uint64_t seed) {
    StoreModel m;
    model_make(&m, name, P, 0, seed);
    int v = 0;
    MsError e = {0};
    ck_assert_msg(store_model_put(g_st, &m, &v, &e) == MS_OK, "%s", e.msg);
    store_model_free(&m);
    return v;
}

static void new_job(const char *config, char id[STORE_ID_MAX]) {
    MsError e = {0};
    ck_assert_msg(store_job_create(g_st, config, "sine", 100, 0, id, &e) == MS_OK, "%s", e.msg);
}

static sqlite3 *raw_open(const char *path) {
    sqlite3 *db = NULL;
    ck_assert_int_eq(sqlite3_open(path, &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    return db;
}

static void raw_exec(sqlite3 *db, const char *sql) {
    char *msg = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
    ck_assert_msg(rc == SQLITE_OK, "%s: %s", sql, msg ? msg : "");
    sqlite3_free(msg);
}

static int64_t raw_int(sqlite3 *db, const char *sql) {
    sqlite3_stmt *q;
    ck_assert_int_eq(sqlite3_prepare_v2(db, sql, -1, &q, NULL), SQLITE_OK);
    ck_assert_int_eq(sqlite3_step(q), SQLITE_ROW);
    int64_t v = sqlite3_column_int64(q, 0);
    sqlite3_finalize(q);
    return v;
}

// The text of the first column of the first row (static buffer).
static const char *raw_text(sqlite3 *db, const char *sql) {
    static char buf[512];
    sqlite3_stmt *q;
    ck_assert_int_eq(sqlite3_prepare_v2(db, sql, -1, &q, NULL), SQLITE_OK);
    ck_assert_int_eq(sqlite3_step(q), SQLITE_ROW);
    snprintf(buf, sizeof buf, "%s", (const char *)sqlite3_column_text(q, 0));
    sqlite3_finalize(q);
    return buf;
}

// The integer that sql (plain SQL both backends accept) gives on this test's database, read
// through a connection of the test's own.
static int64_t db_int(const char *sql) {
    if (g_pg) {
        long long v = pgtest_int(g_path, sql);
        ck_assert_msg(v >= 0, "%s failed", sql);
        return v;
    }
    sqlite3 *db = raw_open(g_path);
    int64_t v = raw_int(db, sql);
    sqlite3_close(db);
    return v;
}

static void db_exec(const char *sql) {
    if (g_pg) {
        ck_assert_int_eq(pgtest_exec(g_path, sql), 0);
        return;
    }
    sqlite3 *db = raw_open(g_path);
    raw_exec(db, sql);
    sqlite3_close(db);
}

// Flips one byte of a blob column in place: sql selects the blob with ?1 = key, upd writes it
// back with ?1 = blob, ?2 = key.
static void raw_flip_blob(const char *sel, const char *upd, const char *key, size_t at) {
    sqlite3 *db = raw_open(g_path);
    sqlite3_stmt *q;
    ck_assert_int_eq(sqlite3_prepare_v2(db, sel, -1, &q, NULL), SQLITE_OK);
    sqlite3_bind_text(q, 1, key, -1, SQLITE_STATIC);
    ck_assert_int_eq(sqlite3_step(q), SQLITE_ROW);
    int len = sqlite3_column_bytes(q, 0);
    ck_assert_int_gt(len, (int)at);
    unsigned char *b = malloc((size_t)len);
    memcpy(b, sqlite3_column_blob(q, 0), (size_t)len);
    sqlite3_finalize(q);
    b[at] ^= 0x10;
    ck_assert_int_eq(sqlite3_prepare_v2(db, upd, -1, &q, NULL), SQLITE_OK);
    sqlite3_bind_blob(q, 1, b, len, SQLITE_STATIC);
    sqlite3_bind_text(q, 2, key, -1, SQLITE_STATIC);
    ck_assert_int_eq(sqlite3_step(q), SQLITE_DONE);
    ck_assert_int_eq(sqlite3_changes(db), 1);
    sqlite3_finalize(q);
    free(b);
    sqlite3_close(db);
}

// Flips byte `at` of table.col in the one row where key_col = key, on either backend.
static void flip_byte(const char *table, const char *col, const char *where, const char *key,
                      size_t at) {
    char sql[512];
    if (g_pg) {
        snprintf(sql, sizeof sql,
                 "UPDATE %s SET %s = set_byte(%s, %zu, get_byte(%s, %zu) # 16) WHERE %s = '%s'",
                 table, col, col, at, col, at, where, key);
        ck_assert_int_eq(pgtest_exec(g_path, sql), 0);
        return;
    }
    char sel[256], upd[256];
    snprintf(sel, sizeof sel, "SELECT %s FROM %s WHERE %s = ?1", col, table, where);
    snprintf(upd, sizeof upd, "UPDATE %s SET %s = ?1 WHERE %s = ?2", table, col, where);
    raw_flip_blob(sel, upd, key, at);
}

/* ---- opening and schema ---- */

START_TEST(a_new_file_is_created_at_the_current_schema_in_wal_mode) {
    ck_assert_int_eq(store_schema_version(g_st), STORE_SCHEMA_VERSION);
    ck_assert_int_eq(STORE_SCHEMA_VERSION, 2);
    sqlite3 *db = raw_open(g_path);
    ck_assert_str_eq(raw_text(db, "PRAGMA journal_mode"), "wal");
    ck_assert_int_eq(raw_int(db, "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name"
                                 " IN ('models', 'model_aliases', 'model_names', 'jobs',"
                                 " 'job_metrics', 'datasets', 'adaptations')"),
                     7);
    sqlite3_close(db);
    // foreign_keys is per connection: visible only on the store's own.
    ck_assert_int_eq(raw_int(store_sqlite_db(g_st), "PRAGMA foreign_keys"), 1);
    // 1 = NORMAL: durability comes from the group-commit barrier (store_sqlite_sync.c)
    ck_assert_int_eq(raw_int(store_sqlite_db(g_st), "PRAGMA synchronous"), 1);
}
END_TEST

START_TEST(every_earlier_schema_version_migrates_to_the_current_one_keeping_data) {
    for (int v = 0; v < STORE_SCHEMA_VERSION; v++) {
        char path[200];
        snprintf(path, sizeof path, "%s/v%d.db", g_dir, v);
        Store *old;
        MsError e = {0};
        OK(store_open_at(&old, path, v, &e_));
        ck_assert_int_eq(store_schema_version(old), v);
        char job[STORE_ID_MAX] = "";
        StoreAdaptation a = {0};
        if (v >= 1) { // a version-1 file holds data of every kind
            StoreModel m;
            model_make(&m, "old", 8, 1, 3);
            OK(store_model_put(old, &m, NULL, &e_));
            store_model_free(&m);
            OK(store_job_create(old, "{}", "old", 5, 0, job, &e_));
            snprintf(a.model, sizeof a.model, "old");
            a.version = 1;
            a.expires_at = store_now_ms() + 3600000;
            a.n_params = 8;
            a.params = random_floats(8, 4);
            OK(store_adaptation_put(old, &a, &e_));
        }
        store_close(old);

        Store *s;
        ck_assert_msg(store_open(&s, path, &e) == MS_OK, "v%d: %s", v, e.msg);
        ck_assert_int_eq(store_schema_version(s), STORE_SCHEMA_VERSION);
        sqlite3 *db = store_sqlite_db(s);
        ck_assert_int_eq(raw_int(db, "SELECT count(*) FROM sqlite_master WHERE type = 'index'"
                                     " AND name = 'adaptations_expires'"),
                         1);
        if (v >= 1) {
            StoreModel got;
            OK(store_model_get(s, "old", 1, &got, &e_));
            ck_assert_uint_eq(got.n_params, 8);
            store_model_free(&got);
            StoreJob j;
            OK(store_job_get(s, job, &j, &e_));
            ck_assert_int_eq(j.state, JOB_QUEUED);
            store_job_free(&j);
            StoreAdaptation ga;
            OK(store_adaptation_get(s, a.id, &ga, &e_));
            ck_assert_mem_eq(ga.params, a.params, 8 * sizeof(float));
            store_adaptation_free(&ga);
        }
        free(a.params);
        OK(store_integrity_check(s, &e_));
        store_close(s);
    }
}
END_TEST

START_TEST(a_file_from_a_newer_build_is_refused_naming_both_versions) {
    store_close(g_st);
    g_st = NULL;
    remove_db_files(g_path);
    sqlite3 *db = raw_open(g_path);
    raw_exec(db, "CREATE TABLE future(x); PRAGMA user_version = 999;");
    sqlite3_close(db);
    Store *s = (Store *)1;
    MsError e = {0};
    expect(store_open(&s, g_path, &e), &e, MS_ERR_DB, "999");
    ck_assert_ptr_null(s);
    char known[16];
    snprintf(known, sizeof known, "(%d)", STORE_SCHEMA_VERSION);
    ck_assert_ptr_nonnull(strstr(e.msg, known));
    // Refused before anything was changed: still in its original journal mode, same version.
    db = raw_open(g_path);
    ck_assert_str_eq(raw_text(db, "PRAGMA journal_mode"), "delete");
    ck_assert_int_eq(raw_int(db, "PRAGMA user_version"), 999);
    sqlite3_close(db);
}
END_TEST

START_TEST(a_file_that_is_not_a_database_is_refused) {
    store_close(g_st);
    g_st = NULL;
    remove_db_files(g_path);
    FILE *f = fopen(g_path, "wb");
    for (int i = 0; i < 4096; i++)
        fputc('x', f);
    fclose(f);
    Store *s = NULL;
    MsError e = {0};
    expect(store_open(&s, g_path, &e), &e, MS_ERR_DB, "not a database");
    ck_assert_ptr_null(s);
    // A directory that does not exist cannot hold the file.
    expect(store_open(&s, "/nonexistent-dir/x.db", &e), &e, MS_ERR_DB, "cannot open");
}
END_TEST

START_TEST(committed_writes_survive_closing_and_reopening) {
    int v = put_model("keep", 5, 1);
    char id[STORE_ID_MAX];
    new_job("{}", id);
    store_close(g_st);
    g_st = NULL;
    MsError e = {0};
    ck_assert_int_eq(store_open(&g_st, g_path, &e), MS_OK);
    StoreModel m;
    OK(store_model_get(g_st, "keep", v, &m, &e_));
    store_model_free(&m);
    StoreJob j;
    OK(store_job_get(g_st, id, &j, &e_));
    store_job_free(&j);
}
END_TEST

/* ---- models ---- */

START_TEST(a_model_round_trips_every_field_and_both_arrays) {
    StoreModel m;
    model_make(&m, "sine", 1201, 1, 42);
    m.params[0] = -0.0f; // sign and special values are kept bit for bit
    m.params[1] = INFINITY;
    int v = 0;
    int64_t t0 = store_now_ms();
    OK(store_model_put(g_st, &m, &v, &e_));
    int64_t t1 = store_now_ms();
    ck_assert_int_eq(v, 1);
    ck_assert_int_eq(m.version, 1);
    ck_assert(m.created_at >= t0 && m.created_at <= t1);

    StoreModel g;
    OK(store_model_get(g_st, "sine", 1, &g, &e_));
    ck_assert_str_eq(g.name, "sine");
    ck_assert_int_eq(g.version, 1);
    ck_assert_int_eq(g.created_at, m.created_at);
    ck_assert_str_eq(g.config, m.config);
    ck_assert_str_eq(g.algorithm, "metasgd");
    ck_assert_str_eq(g.hyper, m.hyper);
    ck_assert_str_eq(g.metrics, m.metrics);
    ck_assert_str_eq(g.job_id, "");
    ck_assert_uint_eq(g.n_params, 1201);
    ck_assert_mem_eq(g.params, m.params, 1201 * sizeof(float));
    ck_assert_ptr_nonnull(g.inner_lrs);
    ck_assert_mem_eq(g.inner_lrs, m.inner_lrs, 1201 * sizeof(float));
    store_model_free(&g);

    // Without rates, inner_lrs comes back NULL; NULL JSON fields read back as "{}".
    free(m.inner_lrs);
    m.inner_lrs = NULL;
    free(m.hyper);
    m.hyper = NULL;
    OK(store_model_put(g_st, &m, &v, &e_));
    ck_assert_int_eq(v, 2);
    OK(store_model_get(g_st, "sine", 2, &g, &e_));
    ck_assert_ptr_null(g.inner_lrs);
    ck_assert_str_eq(g.hyper, "{}");
    store_model_free(&g);
    store_model_free(&m);

    MsError e = {0};
    expect(store_model_get(g_st, "sine", 3, &g, &e), &e, MS_ERR_NOT_FOUND, "version 3");
    expect(store_model_get(g_st, "nope", 1, &g, &e), &e, MS_ERR_NOT_FOUND, "nope");
}
END_TEST

START_TEST(versions_count_up_and_a_deleted_number_is_never_reused) {
    for (int i = 1; i <= 3; i++)
        ck_assert_int_eq(put_model("m", 4, (uint64_t)i), i);
    OK(store_model_delete(g_st, "m", 3, &e_));
    ck_assert_int_eq(put_model("m", 4, 9), 4); // not 3 again: clients may have cached m@3
    MsError e = {0};
    expect(store_model_delete(g_st, "m", 3, &e), &e, MS_ERR_NOT_FOUND, "version 3");
    // Nor after deleting the whole model: a cache keyed by name@version stays valid.
    OK(store_model_delete(g_st, "m", 0, &e_));
    expect(store_model_delete(g_st, "m", 0, &e), &e, MS_ERR_NOT_FOUND, "m not found");
    ck_assert_int_eq(put_model("m", 4, 10), 5);
    ck_assert_int_eq(put_model("other", 4, 11), 1); // numbering is per name
}
END_TEST

START_TEST(references_resolve_by_name_version_and_alias) {
    put_model("sine", 3, 1);
    put_model("sine", 3, 2);
    put_model("sine", 3, 3);
    OK(store_alias_set(g_st, "sine", "prod", 2, &e_));
    char name[STORE_NAME_MAX];
    int v = 0;
    OK(store_model_resolve(g_st, "sine", name, &v, &e_));
    ck_assert_str_eq(name, "sine");
    ck_assert_int_eq(v, 3);
    OK(store_model_resolve(g_st, "sine@1", name, &v, &e_));
    ck_assert_int_eq(v, 1);
    OK(store_model_resolve(g_st, "sine@prod", name, &v, &e_));
    ck_assert_int_eq(v, 2);

    MsError e = {0};
    expect(store_model_resolve(g_st, "sine@9", name, &v, &e), &e, MS_ERR_NOT_FOUND, "version 9");
    expect(store_model_resolve(g_st, "sine@beta", name, &v, &e), &e, MS_ERR_NOT_FOUND, "alias");
    expect(store_model_resolve(g_st, "cosine", name, &v, &e), &e, MS_ERR_NOT_FOUND, "cosine");
    const char *bad[] = {"",         "@2",    "sine@",   "sine@0",     "sine@99999999999",
                         "sine@a@b", ".sine", "si ne@1", "sine@prod!", NULL};
    for (int i = 0; bad[i]; i++) {
        e = (MsError){0};
        MsStatus st = store_model_resolve(g_st, bad[i], name, &v, &e);
        ck_assert_msg(st == MS_ERR_INVALID, "\"%s\" gave %s", bad[i], ms_status_str(st));
        ck_assert_ptr_nonnull(strstr(e.msg, "ref"));
    }
}
END_TEST

START_TEST(names_and_aliases_are_validated_naming_the_field) {
    char long_name[200];
    memset(long_name, 'a', sizeof long_name);
    long_name[127] = '\0'; // 127 characters: the longest allowed
    put_model(long_name, 2, 1);
    put_model("A-b_c.9", 2, 1);
    put_model("123", 2, 1); // names may be all digits; aliases may not
    long_name[127] = 'a';
    long_name[128] = '\0';
    const char *bad[] = {"", ".hidden", "a b", "a/b", "a@b", "caf\xc3\xa9", long_name, NULL};
    for (int i = 0; bad[i]; i++) {
        StoreModel m;
        model_make(&m, "x", 2, 0, 1);
        memset(m.name, 0, sizeof m.name);
        memcpy(m.name, bad[i], strlen(bad[i]) < sizeof m.name ? strlen(bad[i]) : sizeof m.name);
        MsError e = {0};
        expect(store_model_put(g_st, &m, NULL, &e), &e, MS_ERR_INVALID, "name");
        store_model_free(&m);
    }
    MsError e = {0};
    expect(store_alias_set(g_st, "123", "42", 1, &e), &e, MS_ERR_INVALID, "alias");
    expect(store_alias_set(g_st, "123", ".x", 1, &e), &e, MS_ERR_INVALID, "alias");
    expect(store_alias_set(g_st, "12 3", "ok", 1, &e), &e, MS_ERR_INVALID, "name");
    OK(store_alias_set(g_st, "123", "v1", 1, &e_));

    StoreDataset d = {0};
    snprintf(d.name, sizeof d.name, "bad name");
    snprintf(d.kind, sizeof d.kind, "tasks");
    d.x_dim = d.y_dim = 1;
    StoreDatasetData dd = {0};
    expect(store_dataset_put(g_st, &d, &dd, &e), &e, MS_ERR_INVALID, "name");
    char id[STORE_ID_MAX];
    expect(store_job_create(g_st, "{}", "", 1, 0, id, &e), &e, MS_ERR_INVALID, "name");
}
END_TEST

START_TEST(aliases_move_and_go_with_their_deleted_version) {
    put_model("m", 2, 1);
    put_model("m", 2, 2);
    MsError e = {0};
    expect(store_alias_set(g_st, "m", "prod", 7, &e), &e, MS_ERR_NOT_FOUND, "version 7");
    OK(store_alias_set(g_st, "m", "prod", 1, &e_));
    OK(store_alias_set(g_st, "m", "prod", 2, &e_)); // moves
    char name[STORE_NAME_MAX];
    int v;
    OK(store_model_resolve(g_st, "m@prod", name, &v, &e_));
    ck_assert_int_eq(v, 2);
    OK(store_alias_set(g_st, "m", "old", 1, &e_));
    StoreAlias *al;
    int na;
    OK(store_alias_list(g_st, "m", &al, &na, &e_));
    ck_assert_int_eq(na, 2); // ordered by alias: old -> 1, prod -> 2
    ck_assert_str_eq(al[0].alias, "old");
    ck_assert_int_eq(al[0].version, 1);
    ck_assert_str_eq(al[1].alias, "prod");
    ck_assert_int_eq(al[1].version, 2);
    free(al);
    OK(store_model_delete(g_st, "m", 2, &e_));
    OK(store_alias_list(g_st, "m", &al, &na, &e_));
    ck_assert_int_eq(na, 1); // prod went with version 2
    free(al);
    expect(store_model_resolve(g_st, "m@prod", name, &v, &e), &e, MS_ERR_NOT_FOUND, "alias");
    OK(store_model_resolve(g_st, "m@old", name, &v, &e_));
    ck_assert_int_eq(v, 1);
    OK(store_alias_delete(g_st, "m", "old", &e_));
    expect(store_alias_delete(g_st, "m", "old", &e), &e, MS_ERR_NOT_FOUND, "alias old");
    expect(store_model_resolve(g_st, "m@old", name, &v, &e), &e, MS_ERR_NOT_FOUND, "alias");
}
END_TEST

START_TEST(model_listing_pages_by_name_with_latest_version_and_count) {
    // m0..m6 with (i % 3) + 1 versions each.
    for (int i = 0; i < 7; i++)
        for (int k = 0; k <= i % 3; k++) {
            char nm[16];
            snprintf(nm, sizeof nm, "m%d", i);
            put_model(nm, 2, (uint64_t)(10 * i + k));
        }
    char after[STORE_NAME_MAX] = "";
    int seen = 0, pages = 0, more = 1;
    while (more) {
        StoreModelSummary *r;
        int n;
        OK(store_model_list(g_st, after, 3, &r, &n, &more, &e_));
        ck_assert_int_le(n, 3);
        for (int j = 0; j < n; j++, seen++) {
            char nm[16];
            snprintf(nm, sizeof nm, "m%d", seen);
            ck_assert_str_eq(r[j].name, nm);
            ck_assert_int_eq(r[j].latest_version, seen % 3 + 1);
            ck_assert_int_eq(r[j].n_versions, seen % 3 + 1);
            ck_assert_str_eq(r[j].algorithm, "maml");
            ck_assert_int_gt(r[j].created_at, 0);
        }
        if (n) snprintf(after, sizeof after, "%s", r[n - 1].name);
        free(r);
        pages++;
    }
    ck_assert_int_eq(seen, 7);
    ck_assert_int_eq(pages, 3); // 3 + 3 + 1
    // Exactly-full pages: more is 1 only when rows remain.
    StoreModelSummary *r;
    int n;
    OK(store_model_list(g_st, "", 7, &r, &n, &more, &e_));
    ck_assert_int_eq(n, 7);
    ck_assert_int_eq(more, 0);
    free(r);
    OK(store_model_list(g_st, "", 6, &r, &n, &more, &e_));
    ck_assert_int_eq(more, 1);
    free(r);
    OK(store_model_list(g_st, "m6", 6, &r, &n, &more, &e_));
    ck_assert_int_eq(n, 0);
    free(r);
    MsError e = {0};
    expect(store_model_list(g_st, "", 0, &r, &n, &more, &e), &e, MS_ERR_INVALID, "limit");
}
END_TEST

START_TEST(model_versions_list_ascending_without_arrays) {
    put_model("v", 10, 1);
    put_model("v", 20, 2);
    put_model("v", 30, 3);
    OK(store_model_delete(g_st, "v", 2, &e_));
    StoreModel *r;
    int n;
    OK(store_model_versions(g_st, "v", &r, &n, &e_));
    ck_assert_int_eq(n, 2);
    ck_assert_int_eq(r[0].version, 1);
    ck_assert_int_eq(r[1].version, 3);
    ck_assert_uint_eq(r[0].n_params, 10);
    ck_assert_uint_eq(r[1].n_params, 30);
    ck_assert_ptr_null(r[0].params);
    ck_assert_str_eq(r[1].hyper, "{\"inner_lr\":0.01}");
    for (int i = 0; i < n; i++)
        store_model_free(&r[i]);
    free(r);
    MsError e = {0};
    expect(store_model_versions(g_st, "none", &r, &n, &e), &e, MS_ERR_NOT_FOUND, "none");
}
END_TEST

START_TEST(deleting_a_whole_model_removes_versions_aliases_and_adaptations) {
    put_model("gone", 4, 1);
    put_model("gone", 4, 2);
    put_model("stay", 4, 3);
    OK(store_alias_set(g_st, "gone", "prod", 1, &e_));
    StoreAdaptation a = {0};
    snprintf(a.model, sizeof a.model, "gone");
    a.version = 2;
    a.expires_at = store_now_ms() + 60000;
    a.n_params = 4;
    a.params = random_floats(4, 5);
    OK(store_adaptation_put(g_st, &a, &e_));
    OK(store_model_delete(g_st, "gone", 0, &e_));
    ck_assert_int_eq(db_int("SELECT count(*) FROM models WHERE name = 'gone'"), 0);
    ck_assert_int_eq(db_int("SELECT count(*) FROM model_aliases"), 0);
    ck_assert_int_eq(db_int("SELECT count(*) FROM adaptations"), 0);
    ck_assert_int_eq(db_int("SELECT count(*) FROM models WHERE name = 'stay'"), 1);
    StoreAdaptation g;
    MsError e = {0};
    expect(store_adaptation_get(g_st, a.id, &g, &e), &e, MS_ERR_NOT_FOUND, NULL);
    free(a.params);
}
END_TEST

START_TEST(a_corrupted_blob_is_reported_as_corrupt_and_not_returned) {
    StoreModel m;
    model_make(&m, "c", 16, 1, 1);
    OK(store_model_put(g_st, &m, NULL, &e_));
    store_model_free(&m);
    // Byte 40 is in the payload (header is 24 bytes).
    flip_byte("models", "params", "version = 1 AND name", "c", 40);
    StoreModel g;
    MsError e = {0};
    expect(store_model_get(g_st, "c", 1, &g, &e), &e, MS_ERR_DB, "corrupt");
    ck_assert_ptr_nonnull(strstr(e.msg, "params"));
    ck_assert_ptr_null(g.params);
    ck_assert_ptr_null(g.inner_lrs);

    // A damaged header of the rates, and a damaged checkpoint, likewise.
    put_model("d", 4, 2);
    StoreModel m2;
    model_make(&m2, "d", 4, 1, 3);
    OK(store_model_put(g_st, &m2, NULL, &e_));
    store_model_free(&m2);
    flip_byte("models", "inner_lrs", "version = 2 AND name", "d", 9);
    expect(store_model_get(g_st, "d", 2, &g, &e), &e, MS_ERR_DB, "corrupt");
    OK(store_model_get(g_st, "d", 1, &g, &e_)); // the neighbour is untouched
    store_model_free(&g);

    char id[STORE_ID_MAX];
    StoreJob j;
    int claimed;
    new_job("{}", id);
    OK(store_job_claim(g_st, &j, &claimed, &e_));
    store_job_free(&j);
    OK(store_job_checkpoint(g_st, id, 5, "abcdef", 6, &e_));
    flip_byte("jobs", "checkpoint", "id", id, 26);
    void *data = (void *)1;
    size_t n = 7;
    expect(store_job_checkpoint_get(g_st, id, &data, &n, &e), &e, MS_ERR_DB, "corrupt");
    ck_assert_ptr_null(data);
    ck_assert_uint_eq(n, 0);
    // PostgreSQL's integrity check verifies every stored array, so it sees the damage; flipping
    // the bytes back repairs it (SQLite's integrity_check reads pages, not our checksums).
    if (g_pg) expect(store_integrity_check(g_st, &e), &e, MS_ERR_DB, "checksum");
    flip_byte("models", "params", "version = 1 AND name", "c", 40);
    flip_byte("models", "inner_lrs", "version = 2 AND name", "d", 9);
    flip_byte("jobs", "checkpoint", "id", id, 26);
    OK(store_integrity_check(g_st, &e_));
}
END_TEST

/* ---- jobs ---- */

START_TEST(a_job_goes_from_queue_to_a_model_version) {
    const char *cfg = "{\"name\":\"sine\",\"iterations\":100}";
    char id[STORE_ID_MAX];
    int64_t t0 = store_now_ms();
    OK(store_job_create(g_st, cfg, "sine", 100, 10, id, &e_));
    int64_t t1 = store_now_ms();
    ck_assert(store_id_valid(id));
    StoreJob j;
    OK(store_job_get(g_st, id, &j, &e_));
    ck_assert_int_eq(j.state, JOB_QUEUED);
    ck_assert_str_eq(j.config, cfg);
    ck_assert_str_eq(j.name, "sine");
    ck_assert_str_eq(j.metrics, "{}");
    ck_assert(j.created_at >= t0 && j.created_at <= t1);
    ck_assert_int_eq(j.started_at, 0);
    ck_assert_int_eq(j.total, 100);
    ck_assert_int_eq(j.has_checkpoint, 0);
    store_job_free(&j);

    int claimed = 0;
    OK(store_job_claim(g_st, &j, &claimed, &e_));
    ck_assert_int_eq(claimed, 1);
    ck_assert_str_eq(j.id, id);
    ck_assert_int_eq(j.state, JOB_RUNNING);
    ck_assert_str_eq(j.config, cfg);
    ck_assert_int_ge(j.started_at, j.created_at);
    store_job_free(&j);
    OK(store_job_claim(g_st, &j, &claimed, &e_));
    ck_assert_int_eq(claimed, 0);

    StoreMetric pts[2] = {{10, "meta_loss", 0.5}, {10, "val_loss", 0.75}};
    OK(store_job_progress(g_st, id, 10, "{\"meta_loss\":0.5}", pts, 2, &e_));
    OK(store_job_progress(g_st, id, 11, NULL, NULL, 0, &e_)); // NULL keeps the metrics
    unsigned char ck[300];
    for (int i = 0; i < 300; i++)
        ck[i] = (unsigned char)(i * 7);
    OK(store_job_checkpoint(g_st, id, 20, ck, sizeof ck, &e_));
    OK(store_job_get(g_st, id, &j, &e_));
    ck_assert_int_eq(j.iteration, 20);
    ck_assert_str_eq(j.metrics, "{\"meta_loss\":0.5}");
    ck_assert_int_eq(j.has_checkpoint, 1);
    store_job_free(&j);
    void *data;
    size_t n;
    OK(store_job_checkpoint_get(g_st, id, &data, &n, &e_));
    ck_assert_uint_eq(n, sizeof ck);
    ck_assert_mem_eq(data, ck, sizeof ck);
    free(data);

    StoreModel m;
    model_make(&m, "sine", 41, 0, 8);
    int v = 0;
    OK(store_job_finish(g_st, id, JOB_SUCCEEDED, NULL, &m, &v, &e_));
    ck_assert_int_eq(v, 1);
    store_model_free(&m);
    OK(store_job_get(g_st, id, &j, &e_));
    ck_assert_int_eq(j.state, JOB_SUCCEEDED);
    ck_assert_str_eq(j.result_model, "sine");
    ck_assert_int_eq(j.result_version, 1);
    ck_assert_int_ge(j.finished_at, j.started_at);
    ck_assert_int_eq(j.has_checkpoint, 0); // dropped at the end
    store_job_free(&j);
    StoreModel g;
    OK(store_model_get(g_st, "sine", 1, &g, &e_));
    ck_assert_str_eq(g.job_id, id);
    store_model_free(&g);
    MsError e = {0};
    expect(store_job_checkpoint_get(g_st, id, &data, &n, &e), &e, MS_ERR_NOT_FOUND, "checkpoint");
    int64_t counts[5];
    OK(store_job_counts(g_st, counts, &e_));
    ck_assert_int_eq(counts[JOB_SUCCEEDED], 1);
    ck_assert_int_eq(counts[JOB_QUEUED] + counts[JOB_RUNNING], 0);
    ck_assert_str_eq(store_job_state_name(JOB_CANCELLED), "cancelled");
}
END_TEST

START_TEST(claims_take_the_oldest_queued_job_first) {
    char ids[5][STORE_ID_MAX];
    for (int i = 0; i < 5; i++)
        new_job("{}", ids[i]); // often within one millisecond: ties go by insertion order
    for (int i = 0; i < 5; i++) {
        StoreJob j;
        int claimed;
        OK(store_job_claim(g_st, &j, &claimed, &e_));
        ck_assert_int_eq(claimed, 1);
        ck_assert_str_eq(j.id, ids[i]);
        store_job_free(&j);
    }
}
END_TEST

START_TEST(cancelling_a_queued_job_is_immediate_and_a_running_one_is_requested) {
    char a[STORE_ID_MAX], b[STORE_ID_MAX];
    new_job("{}", a);
    new_job("{}", b);
    JobState after;
    OK(store_job_cancel(g_st, a, &after, &e_));
    ck_assert_int_eq(after, JOB_CANCELLED);
    StoreJob j;
    int claimed;
    OK(store_job_claim(g_st, &j, &claimed, &e_)); // a is skipped
    ck_assert_str_eq(j.id, b);
    store_job_free(&j);
    OK(store_job_cancel(g_st, b, &after, &e_));
    ck_assert_int_eq(after, JOB_RUNNING);
    OK(store_job_get(g_st, b, &j, &e_));
    ck_assert_int_eq(j.state, JOB_RUNNING);
    ck_assert_int_eq(j.cancel_requested, 1);
    store_job_free(&j);
    OK(store_job_finish(g_st, b, JOB_CANCELLED, NULL, NULL, NULL, &e_));
    OK(store_job_get(g_st, a, &j, &e_));
    ck_assert_int_eq(j.state, JOB_CANCELLED);
    ck_assert_int_gt(j.finished_at, 0);
    store_job_free(&j);
    MsError e = {0};
    expect(store_job_cancel(g_st, a, &after, &e), &e, MS_ERR_CONFLICT, "cancelled");
    expect(store_job_cancel(g_st, b, &after, &e), &e, MS_ERR_CONFLICT, "cancelled");
    expect(store_job_cancel(g_st, "0123456789abcdef0123456789abcdef", &after, &e), &e,
           MS_ERR_NOT_FOUND, "not found");
    expect(store_job_cancel(g_st, "../../etc", &after, &e), &e, MS_ERR_NOT_FOUND, "not found");
}
END_TEST

START_TEST(requeue_returns_running_jobs_with_checkpoints_and_cancels_those_asked) {
    char a[STORE_ID_MAX], b[STORE_ID_MAX], c[STORE_ID_MAX];
    new_job("{}", a);
    new_job("{}", b);
    new_job("{}", c);
    StoreJob j;
    int claimed;
    int64_t started_a = 0;
    for (int i = 0; i < 3; i++) {
        OK(store_job_claim(g_st, &j, &claimed, &e_));
        if (i == 0) started_a = j.started_at;
        store_job_free(&j);
    }
    OK(store_job_checkpoint(g_st, a, 7, "ck", 2, &e_));
    OK(store_job_cancel(g_st, c, NULL, &e_));
    int n = -1;
    OK(store_job_requeue_running(g_st, &n, &e_));
    ck_assert_int_eq(n, 2);
    OK(store_job_get(g_st, a, &j, &e_));
    ck_assert_int_eq(j.state, JOB_QUEUED);
    ck_assert_int_eq(j.has_checkpoint, 1);
    ck_assert_int_eq(j.iteration, 7);
    store_job_free(&j);
    OK(store_job_get(g_st, c, &j, &e_));
    ck_assert_int_eq(j.state, JOB_CANCELLED);
    store_job_free(&j);
    // The requeued jobs come back oldest first, with their first start time.
    OK(store_job_claim(g_st, &j, &claimed, &e_));
    ck_assert_str_eq(j.id, a);
    ck_assert_int_eq(j.started_at, started_a);
    store_job_free(&j);
    OK(store_job_requeue(g_st, a, &e_));
    MsError e = {0};
    expect(store_job_requeue(g_st, a, &e), &e, MS_ERR_CONFLICT, "queued");
    OK(store_job_requeue_running(g_st, &n, &e_));
    ck_assert_int_eq(n, 0);
    void *data;
    size_t len;
    OK(store_job_checkpoint_get(g_st, a, &data, &len, &e_));
    ck_assert_uint_eq(len, 2);
    ck_assert_mem_eq(data, "ck", 2);
    free(data);
}
END_TEST

START_TEST(finished_jobs_refuse_further_transitions) {
    char id[STORE_ID_MAX];
    new_job("{}", id);
    MsError e = {0};
    expect(store_job_progress(g_st, id, 1, NULL, NULL, 0, &e), &e, MS_ERR_CONFLICT, "queued");
    expect(store_job_finish(g_st, id, JOB_RUNNING, NULL, NULL, NULL, &e), &e, MS_ERR_INVALID,
           "state");
    OK(store_job_finish(g_st, id, JOB_FAILED, "sampler: dataset missing", NULL, NULL, &e_));
    StoreJob j;
    OK(store_job_get(g_st, id, &j, &e_));
    ck_assert_int_eq(j.state, JOB_FAILED);
    ck_assert_str_eq(j.error, "sampler: dataset missing");
    store_job_free(&j);
    expect(store_job_finish(g_st, id, JOB_SUCCEEDED, NULL, NULL, NULL, &e), &e, MS_ERR_CONFLICT,
           "already failed");
    expect(store_job_checkpoint(g_st, id, 1, "x", 1, &e), &e, MS_ERR_CONFLICT, "failed");
    expect(store_job_progress(g_st, id, 1, NULL, NULL, 0, &e), &e, MS_ERR_CONFLICT, "failed");
    StoreMetric bad = {1, "a_key_that_is_far_too_long_for_32", 1.0};
    expect(store_job_progress(g_st, id, 1, NULL, &bad, 1, &e), &e, MS_ERR_INVALID, "key");
}
END_TEST

START_TEST(a_model_write_that_fails_leaves_the_job_running_and_unchanged) {
    char id[STORE_ID_MAX];
    new_job("{}", id);
    StoreJob j;
    int claimed;
    OK(store_job_claim(g_st, &j, &claimed, &e_));
    store_job_free(&j);
    OK(store_job_checkpoint(g_st, id, 3, "state", 5, &e_));
    // Cap the file at its current size: the model (400 KB) cannot be written.
    sqlite3 *db = store_sqlite_db(g_st);
    char sql[64];
    snprintf(sql, sizeof sql, "PRAGMA max_page_count = %lld",
             (long long)raw_int(db, "PRAGMA page_count"));
    raw_int(db, sql);
    StoreModel m;
    model_make(&m, "sine", 100000, 0, 1);
    MsError e = {0};
    int v = -1;
    expect(store_job_finish(g_st, id, JOB_SUCCEEDED, NULL, &m, &v, &e), &e, MS_ERR_DB, "disk full");
    ck_assert_int_eq(v, -1);
    OK(store_job_get(g_st, id, &j, &e_));
    ck_assert_int_eq(j.state, JOB_RUNNING);
    ck_assert_int_eq(j.has_checkpoint, 1);
    ck_assert_int_eq(j.result_version, 0);
    store_job_free(&j);
    StoreModel *rows;
    int n;
    expect(store_model_versions(g_st, "sine", &rows, &n, &e), &e, MS_ERR_NOT_FOUND, NULL);
    raw_int(db, "PRAGMA max_page_count = 1073741823");
    OK(store_job_finish(g_st, id, JOB_SUCCEEDED, NULL, &m, &v, &e_));
    ck_assert_int_eq(v, 1);
    store_model_free(&m);
}
END_TEST

START_TEST(metric_pages_hold_whole_steps_and_keep_nan) {
    char id[STORE_ID_MAX];
    new_job("{}", id);
    StoreJob j;
    int claimed;
    OK(store_job_claim(g_st, &j, &claimed, &e_));
    store_job_free(&j);
    // Steps 0..4 with keys val_loss, meta_loss (stored in key order); step 2's val_loss is NaN.
    for (int s = 0; s < 5; s++) {
        StoreMetric pts[2] = {{s, "val_loss", s == 2 ? NAN : 10.0 + s}, {s, "meta_loss", s}};
        OK(store_job_progress(g_st, id, s, NULL, pts, 2, &e_));
    }
    // Re-reporting a step (after a resume) replaces its points.
    StoreMetric again = {4, "meta_loss", 40.0};
    OK(store_job_progress(g_st, id, 4, NULL, &again, 1, &e_));

    StoreMetricRow *r;
    int n, more;
    OK(store_job_metrics(g_st, id, -1, 100, &r, &n, &more, &e_));
    ck_assert_int_eq(n, 10);
    ck_assert_int_eq(more, 0);
    ck_assert_int_eq(r[0].step, 0);
    ck_assert_str_eq(r[0].key, "meta_loss");
    ck_assert_str_eq(r[1].key, "val_loss");
    ck_assert(isnan(r[5].value) && r[5].step == 2);
    ck_assert(r[8].value == 40.0);
    ck_assert_int_gt(r[0].ts, 0);
    free(r);

    // limit 3 would split a step: pages of one whole step (2 rows) each, 5 pages.
    int64_t after = -1;
    int pages = 0, rows = 0;
    more = 1;
    while (more) {
        OK(store_job_metrics(g_st, id, after, 3, &r, &n, &more, &e_));
        ck_assert_int_eq(n, 2);
        ck_assert_int_eq(r[0].step, r[1].step);
        ck_assert_int_eq(r[0].step, after + 1);
        after = r[n - 1].step;
        rows += n;
        pages++;
        free(r);
    }
    ck_assert_int_eq(pages, 5);
    ck_assert_int_eq(rows, 10);
    // limit 4: two steps per page. limit 1: a step is never split, so a page may exceed it.
    OK(store_job_metrics(g_st, id, -1, 4, &r, &n, &more, &e_));
    ck_assert_int_eq(n, 4);
    ck_assert_int_eq(more, 1);
    free(r);
    OK(store_job_metrics(g_st, id, 3, 1, &r, &n, &more, &e_));
    ck_assert_int_eq(n, 2);
    ck_assert_int_eq(r[0].step, 4);
    ck_assert_int_eq(more, 0);
    free(r);
    MsError e = {0};
    expect(store_job_metrics(g_st, "0123456789abcdef0123456789abcdef", -1, 5, &r, &n, &more, &e),
           &e, MS_ERR_NOT_FOUND, NULL);
}
END_TEST

// Pages through all jobs 2 at a time and checks they come newest first: ids[4], ..., ids[0].
static void assert_job_pages(char ids[5][STORE_ID_MAX]) {
    char after[STORE_ID_MAX] = "";
    int seen = 0, more = 1, pages = 0;
    while (more) {
        StoreJob *r;
        int n;
        OK(store_job_list(g_st, after, 2, &r, &n, &more, &e_));
        for (int k = 0; k < n; k++, seen++) {
            ck_assert_str_eq(r[k].id, ids[4 - seen]);
            ck_assert_ptr_null(r[k].config);      // the config only comes with a get
            ck_assert_str_eq(r[k].metrics, "{}"); // metrics come with the listing
        }
        if (n) snprintf(after, sizeof after, "%s", r[n - 1].id);
        for (int k = 0; k < n; k++)
            store_job_free(&r[k]);
        free(r);
        pages++;
    }
    ck_assert_int_eq(seen, 5);
    ck_assert_int_eq(pages, 3);
}

START_TEST(job_listing_is_newest_first_in_pages) {
    char ids[5][STORE_ID_MAX];
    for (int i = 0; i < 5; i++)
        new_job("{}", ids[i]);
    assert_job_pages(ids);
    // Equal creation times (jobs created within one millisecond) are ordered by insertion, and
    // a cursor inside a run of equal times neither skips nor repeats a job.
    db_exec("UPDATE jobs SET created_at = 1000");
    assert_job_pages(ids);
    StoreJob *r;
    int n, more;
    MsError e = {0};
    expect(store_job_list(g_st, "0123456789abcdef0123456789abcdef", 2, &r, &n, &more, &e), &e,
           MS_ERR_INVALID, "after");
    int64_t counts[5];
    OK(store_job_counts(g_st, counts, &e_));
    ck_assert_int_eq(counts[JOB_QUEUED], 5);
}
END_TEST

START_TEST(the_queue_limit_gives_busy) {
    char id[STORE_ID_MAX];
    for (int i = 0; i < 3; i++)
        OK(store_job_create(g_st, "{}", "q", 1, 3, id, &e_));
    MsError e = {0};
    expect(store_job_create(g_st, "{}", "q", 1, 3, id, &e), &e, MS_ERR_BUSY, "queue full");
    // A claimed job no longer counts against the limit.
    StoreJob j;
    int claimed;
    OK(store_job_claim(g_st, &j, &claimed, &e_));
    store_job_free(&j);
    OK(store_job_create(g_st, "{}", "q", 1, 3, id, &e_));
    int64_t counts[5];
    OK(store_job_counts(g_st, counts, &e_));
    ck_assert_int_eq(counts[JOB_QUEUED], 3);
}
END_TEST

/* ---- concurrency ---- */

#define N_THREADS 4
#define N_JOBS    200

typedef struct {
    char ids[N_JOBS][STORE_ID_MAX];
    int n;
    int failed;
    char msg[256];
} Claimer;

static void *claim_all(void *arg) {
    Claimer *c = arg;
    Store *s;
    MsError e = {0};
    if (store_open(&s, g_path, &e) != MS_OK) {
        c->failed = 1;
        snprintf(c->msg, sizeof c->msg, "%s", e.msg);
        return NULL;
    }
    for (;;) {
        StoreJob j;
        int claimed = 0;
        if (store_job_claim(s, &j, &claimed, &e) != MS_OK) {
            c->failed = 1;
            snprintf(c->msg, sizeof c->msg, "%s", e.msg);
            break;
        }
        if (!claimed) break;
        if (c->n < N_JOBS) snprintf(c->ids[c->n], STORE_ID_MAX, "%s", j.id);
        c->n++;
        store_job_free(&j);
    }
    store_close(s);
    return NULL;
}

static int cmp_id(const void *a, const void *b) {
    return strcmp(a, b);
}

START_TEST(four_connections_claim_200_jobs_each_exactly_once) {
    static char created[N_JOBS][STORE_ID_MAX];
    for (int i = 0; i < N_JOBS; i++)
        new_job("{}", created[i]);
    static Claimer cl[N_THREADS];
    memset(cl, 0, sizeof cl);
    pthread_t t[N_THREADS];
    for (int i = 0; i < N_THREADS; i++)
        ck_assert_int_eq(pthread_create(&t[i], NULL, claim_all, &cl[i]), 0);
    for (int i = 0; i < N_THREADS; i++)
        pthread_join(t[i], NULL);
    static char all[N_JOBS * 2][STORE_ID_MAX];
    int total = 0;
    for (int i = 0; i < N_THREADS; i++) {
        ck_assert_msg(!cl[i].failed, "thread %d: %s", i, cl[i].msg);
        for (int k = 0; k < cl[i].n && total < 2 * N_JOBS; k++)
            memcpy(all[total++], cl[i].ids[k], STORE_ID_MAX);
    }
    ck_assert_int_eq(total, N_JOBS);
    qsort(all, (size_t)total, STORE_ID_MAX, cmp_id);
    qsort(created, N_JOBS, STORE_ID_MAX, cmp_id);
    for (int i = 0; i < N_JOBS; i++)
        ck_assert_str_eq(all[i], created[i]); // same set, hence no id claimed twice
    int64_t counts[5];
    OK(store_job_counts(g_st, counts, &e_));
    ck_assert_int_eq(counts[JOB_RUNNING], N_JOBS);
}
END_TEST

static void *put_versions(void *arg) {
    int *failed = arg;
    Store *s;
    MsError e = {0};
    if (store_open(&s, g_path, &e) != MS_OK) {
        *failed = 1;
        return NULL;
    }
    for (int i = 0; i < 25; i++) {
        StoreModel m;
        model_make(&m, "shared", 8, 0, (uint64_t)i);
        if (store_model_put(s, &m, NULL, &e) != MS_OK) *failed = 1;
        store_model_free(&m);
    }
    store_close(s);
    return NULL;
}

START_TEST(concurrent_model_writes_get_distinct_consecutive_versions) {
    pthread_t t[N_THREADS];
    int failed[N_THREADS] = {0};
    for (int i = 0; i < N_THREADS; i++)
        ck_assert_int_eq(pthread_create(&t[i], NULL, put_versions, &failed[i]), 0);
    for (int i = 0; i < N_THREADS; i++) {
        pthread_join(t[i], NULL);
        ck_assert_int_eq(failed[i], 0);
    }
    StoreModel *r;
    int n;
    OK(store_model_versions(g_st, "shared", &r, &n, &e_));
    ck_assert_int_eq(n, 4 * 25);
    for (int i = 0; i < n; i++) {
        ck_assert_int_eq(r[i].version, i + 1);
        store_model_free(&r[i]);
    }
    free(r);
}
END_TEST

/* ---- datasets ---- */

static void dataset_make(StoreDataset *d, StoreDatasetData *dd, const char *name) {
    memset(d, 0, sizeof *d);
    memset(dd, 0, sizeof *dd);
    snprintf(d->name, sizeof d->name, "%s", name);
    snprintf(d->kind, sizeof d->kind, "tasks");
    d->n_items = 2;
    d->n_rows = 5;
    d->x_dim = 2;
    d->y_dim = 1;
    d->meta = dupstr("{\"note\":\"two tasks\"}");
    dd->n_x = 10;
    dd->x = random_floats(10, 1);
    dd->n_y = 5;
    dd->y = random_floats(5, 2);
    dd->n_index = 3;
    dd->index = malloc(3 * sizeof(int32_t));
    dd->index[0] = 0;
    dd->index[1] = 2;
    dd->index[2] = 5;
}

START_TEST(a_dataset_round_trips_and_lists_newest_first) {
    StoreDataset d;
    StoreDatasetData dd;
    dataset_make(&d, &dd, "two-tasks");
    int64_t t0 = store_now_ms();
    OK(store_dataset_put(g_st, &d, &dd, &e_));
    ck_assert(store_id_valid(d.id));
    ck_assert(d.created_at >= t0);
    ck_assert_uint_eq(d.bytes, 4 * (10 + 5 + 3));
    StoreDataset g;
    StoreDatasetData gd;
    OK(store_dataset_get(g_st, d.id, &g, &gd, &e_));
    ck_assert_str_eq(g.name, "two-tasks");
    ck_assert_str_eq(g.kind, "tasks");
    ck_assert_int_eq(g.n_items, 2);
    ck_assert_int_eq(g.n_rows, 5);
    ck_assert_int_eq(g.x_dim, 2);
    ck_assert_int_eq(g.y_dim, 1);
    ck_assert_str_eq(g.meta, d.meta);
    ck_assert_uint_eq(g.bytes, d.bytes);
    ck_assert_uint_eq(gd.n_x, 10);
    ck_assert_mem_eq(gd.x, dd.x, 10 * sizeof(float));
    ck_assert_mem_eq(gd.y, dd.y, 5 * sizeof(float));
    ck_assert_uint_eq(gd.n_index, 3);
    ck_assert_mem_eq(gd.index, dd.index, 3 * sizeof(int32_t));
    store_dataset_free(&g);
    store_dataset_data_free(&gd);
    OK(store_dataset_get(g_st, d.id, &g, NULL, &e_)); // description only
    ck_assert_str_eq(g.meta, d.meta);
    store_dataset_free(&g);

    // Shapes that do not add up are refused.
    MsError e = {0};
    dd.n_x = 9;
    expect(store_dataset_put(g_st, &d, &dd, &e), &e, MS_ERR_INVALID, "x:");
    dd.n_x = 10;
    snprintf(d.kind, sizeof d.kind, "images");
    expect(store_dataset_put(g_st, &d, &dd, &e), &e, MS_ERR_INVALID, "kind");
    snprintf(d.kind, sizeof d.kind, "classes");

    char ids[3][STORE_ID_MAX];
    snprintf(ids[0], STORE_ID_MAX, "%s", d.id);
    for (int i = 1; i < 3; i++) {
        OK(store_dataset_put(g_st, &d, &dd, &e_));
        snprintf(ids[i], STORE_ID_MAX, "%s", d.id);
    }
    StoreDataset *r;
    int n, more;
    OK(store_dataset_list(g_st, "", 2, &r, &n, &more, &e_));
    ck_assert_int_eq(n, 2);
    ck_assert_int_eq(more, 1);
    ck_assert_str_eq(r[0].id, ids[2]);
    ck_assert_str_eq(r[1].id, ids[1]);
    ck_assert_ptr_nonnull(r[0].meta); // meta comes with the listing
    for (int k = 0; k < n; k++)
        store_dataset_free(&r[k]);
    free(r);
    OK(store_dataset_list(g_st, ids[1], 2, &r, &n, &more, &e_));
    ck_assert_int_eq(n, 1);
    ck_assert_int_eq(more, 0);
    ck_assert_str_eq(r[0].id, ids[0]);
    store_dataset_free(&r[0]);
    free(r);
    OK(store_dataset_delete(g_st, ids[1], &e_));
    expect(store_dataset_list(g_st, ids[1], 2, &r, &n, &more, &e), &e, MS_ERR_INVALID, "after");
    expect(store_dataset_get(g_st, ids[1], &g, NULL, &e), &e, MS_ERR_NOT_FOUND, "not found");
    expect(store_dataset_delete(g_st, ids[1], &e), &e, MS_ERR_NOT_FOUND, "not found");
    store_dataset_free(&d);
    store_dataset_data_free(&dd);
}
END_TEST

START_TEST(a_dataset_used_by_a_queued_or_running_job_cannot_be_deleted) {
    StoreDataset d;
    StoreDatasetData dd;
    dataset_make(&d, &dd, "in-use");
    OK(store_dataset_put(g_st, &d, &dd, &e_));
    char cfg[160], job[STORE_ID_MAX];
    snprintf(cfg, sizeof cfg, "{\"tasks\":{\"dataset\":\"%s\",\"k_support\":5}}", d.id);
    new_job(cfg, job);
    MsError e = {0};
    expect(store_dataset_delete(g_st, d.id, &e), &e, MS_ERR_CONFLICT, "queued job");
    StoreJob j;
    int claimed;
    OK(store_job_claim(g_st, &j, &claimed, &e_));
    store_job_free(&j);
    expect(store_dataset_delete(g_st, d.id, &e), &e, MS_ERR_CONFLICT, "running job");
    OK(store_job_finish(g_st, job, JOB_FAILED, "stopped", NULL, NULL, &e_));
    OK(store_dataset_delete(g_st, d.id, &e_));
    store_dataset_free(&d);
    store_dataset_data_free(&dd);
}
END_TEST

// A dataset whose x spans more than one STORE_BLOB_CHUNK (84,000 bytes: one full chunk and a
// partial one), with values whose bits must survive exactly (-0, infinities, a NaN payload).
static void dataset_make_chunked(StoreDataset *d, StoreDatasetData *dd, const char *name) {
    memset(d, 0, sizeof *d);
    memset(dd, 0, sizeof *dd);
    snprintf(d->name, sizeof d->name, "%s", name);
    snprintf(d->kind, sizeof d->kind, "tasks");
    d->n_items = 3;
    d->n_rows = 3000;
    d->x_dim = 7;
    d->y_dim = 2;
    d->meta = dupstr("{}");
    dd->n_x = 21000;
    dd->x = random_floats(dd->n_x, 11);
    dd->x[0] = -0.0f;
    dd->x[1] = INFINITY;
    dd->x[20999] = -INFINITY;
    uint32_t nan_bits = 0x7fc12345u;
    memcpy(&dd->x[17000], &nan_bits, 4); // in the second chunk
    dd->n_y = 6000;
    dd->y = random_floats(dd->n_y, 12);
    dd->n_index = 4;
    dd->index = malloc(4 * sizeof(int32_t));
    ck_assert_ptr_nonnull(dd->index);
    const int32_t offs[4] = {0, 1000, 2500, 3000};
    memcpy(dd->index, offs, sizeof offs);
}

static void assert_same_arrays(const StoreDatasetData *got, const StoreDatasetData *want) {
    ck_assert_uint_eq(got->n_x, want->n_x);
    ck_assert_uint_eq(got->n_y, want->n_y);
    ck_assert_uint_eq(got->n_index, want->n_index);
    if (want->n_x) ck_assert_mem_eq(got->x, want->x, want->n_x * sizeof(float));
    if (want->n_y) ck_assert_mem_eq(got->y, want->y, want->n_y * sizeof(float));
    if (want->n_index) ck_assert_mem_eq(got->index, want->index, want->n_index * sizeof(int32_t));
    if (!want->n_index) ck_assert_ptr_null(got->index); // an empty array comes back as NULL
}

// The raw bytes of the blob in column col (0..2: x, y, idx) of dataset id, read whole with
// sqlite3_column_blob on a second connection: they must be what blob_encode makes of elems and
// decode with blob_decode_alloc back to elems.
static void assert_raw_blob(const char *id, int col, BlobType t, const void *elems, size_t n) {
    sqlite3 *db = raw_open(g_path);
    sqlite3_stmt *q;
    ck_assert_int_eq(
        sqlite3_prepare_v2(db, "SELECT x, y, idx FROM datasets WHERE id = ?", -1, &q, NULL),
        SQLITE_OK);
    sqlite3_bind_text(q, 1, id, -1, SQLITE_STATIC);
    ck_assert_int_eq(sqlite3_step(q), SQLITE_ROW);
    ck_assert_int_eq(sqlite3_column_type(q, col), SQLITE_BLOB);
    const void *b = sqlite3_column_blob(q, col);
    size_t len = (size_t)sqlite3_column_bytes(q, col);
    void *want;
    size_t want_len;
    OK(blob_encode_alloc(&want, &want_len, t, elems, n, &e_));
    ck_assert_uint_eq(len, want_len);
    ck_assert_mem_eq(b, want, len);
    void *back;
    size_t m;
    OK(blob_decode_alloc(&back, &m, b, len, t, &e_));
    ck_assert_uint_eq(m, n);
    if (n) ck_assert_mem_eq(back, elems, n * blob_elem_size(t));
    free(back);
    free(want);
    sqlite3_finalize(q);
    sqlite3_close(db);
}

static void raw_flip_dataset(const char *id, const char *col, int at);
static void expect_corrupt_dataset(const char *id, const char *sub1, const char *sub2);

START_TEST(a_streamed_dataset_holds_the_bytes_blob_encode_makes_and_old_rows_still_read) {
    StoreDataset d;
    StoreDatasetData dd;
    dataset_make_chunked(&d, &dd, "chunked");
    OK(store_dataset_put(g_st, &d, &dd, &e_));
    ck_assert_uint_eq(d.bytes, 4 * (21000 + 6000 + 4));
    assert_raw_blob(d.id, 0, BLOB_F32, dd.x, dd.n_x);
    assert_raw_blob(d.id, 1, BLOB_F32, dd.y, dd.n_y);
    assert_raw_blob(d.id, 2, BLOB_I32, dd.index, dd.n_index);
    StoreDataset g;
    StoreDatasetData gd;
    OK(store_dataset_get(g_st, d.id, &g, &gd, &e_));
    ck_assert_int_eq(g.n_rows, 3000);
    assert_same_arrays(&gd, &dd);
    store_dataset_free(&g);
    store_dataset_data_free(&gd);

    // An empty index is a 24-byte blob and comes back as NULL with count 0.
    int32_t *index = dd.index;
    dd.index = NULL;
    dd.n_index = 0;
    OK(store_dataset_put(g_st, &d, &dd, &e_));
    assert_raw_blob(d.id, 2, BLOB_I32, NULL, 0);
    OK(store_dataset_get(g_st, d.id, &g, &gd, &e_));
    assert_same_arrays(&gd, &dd);
    store_dataset_free(&g);
    store_dataset_data_free(&gd);
    dd.index = index;
    dd.n_index = 4;

    // A row written whole, as the store wrote datasets before streaming, reads the same; x and
    // the index in blob format 1 (FNV-1a checksums, as builds before XXH3 wrote them), y in the
    // current format.
    const char *old_id = "0123456789abcdef0123456789abcdef";
    sqlite3 *db = raw_open(g_path);
    sqlite3_stmt *q;
    ck_assert_int_eq(sqlite3_prepare_v2(
                         db,
                         "INSERT INTO datasets(id, name, kind, created_at, n_items, n_rows,"
                         " x_dim, y_dim, meta, bytes, x, y, idx)"
                         " VALUES (?1, 'old', 'tasks', 1, 3, 3000, 7, 2, '{}', 108016, ?2, ?3, ?4)",
                         -1, &q, NULL),
                     SQLITE_OK);
    sqlite3_bind_text(q, 1, old_id, -1, SQLITE_STATIC);
    const void *elems[3] = {dd.x, dd.y, dd.index};
    const size_t counts[3] = {dd.n_x, dd.n_y, dd.n_index};
    const BlobType types[3] = {BLOB_F32, BLOB_F32, BLOB_I32};
    for (int k = 0; k < 3; k++) {
        unsigned version = k == 1 ? BLOB_FORMAT_VERSION : BLOB_FORMAT_FNV1A;
        size_t len;
        OK(blob_encoded_size(&len, types[k], counts[k], &e_));
        void *b = malloc(len);
        ck_assert_ptr_nonnull(b);
        OK(blob_encode_version(b, len, &len, version, types[k], elems[k], counts[k], &e_));
        ck_assert_int_eq(((unsigned char *)b)[4], version);
        ck_assert_int_eq(sqlite3_bind_blob64(q, 2 + k, b, len, free), SQLITE_OK);
    }
    ck_assert_int_eq(sqlite3_step(q), SQLITE_DONE);
    sqlite3_finalize(q);
    sqlite3_close(db);
    OK(store_dataset_get(g_st, old_id, &g, &gd, &e_));
    ck_assert_str_eq(g.name, "old");
    assert_same_arrays(&gd, &dd);
    store_dataset_free(&g);
    store_dataset_data_free(&gd);
    // and damage to a format-1 array is caught by its own checksum
    raw_flip_dataset(old_id, "x", 24 + 65536 + 100);
    expect_corrupt_dataset(old_id, "x", "checksum");
    raw_flip_dataset(old_id, "x", 24 + 65536 + 100);
    OK(store_dataset_get(g_st, old_id, &g, &gd, &e_));
    assert_same_arrays(&gd, &dd);
    store_dataset_free(&g);
    store_dataset_data_free(&gd);
    store_dataset_free(&d);
    store_dataset_data_free(&dd);
}
END_TEST

// XORs byte `at` of column col of the dataset id with 0x10, in place (incremental blob I/O on a
// second connection); applying it twice restores the byte.
static void raw_flip_dataset(const char *id, const char *col, int at) {
    if (g_pg) { // chunk rows: seq 0 holds the 24-byte header, 1.. the payload in PG_CHUNK pieces
        int arr = strcmp(col, "x") == 0 ? 0 : strcmp(col, "y") == 0 ? 1 : 2;
        long seq = at < 24 ? 0 : 1 + (at - 24) / PG_CHUNK;
        long off = at < 24 ? at : (at - 24) % PG_CHUNK;
        char sql[384];
        snprintf(sql, sizeof sql,
                 "UPDATE dataset_chunks SET data = set_byte(data, %ld, get_byte(data, %ld) # 16)"
                 " WHERE dataset_id = '%s' AND arr = %d AND seq = %ld",
                 off, off, id, arr, seq);
        ck_assert_int_eq(pgtest_exec(g_path, sql), 0);
        return;
    }
    sqlite3 *db = raw_open(g_path);
    sqlite3_stmt *q;
    ck_assert_int_eq(
        sqlite3_prepare_v2(db, "SELECT rowid FROM datasets WHERE id = ?", -1, &q, NULL), SQLITE_OK);
    sqlite3_bind_text(q, 1, id, -1, SQLITE_STATIC);
    ck_assert_int_eq(sqlite3_step(q), SQLITE_ROW);
    sqlite3_int64 rowid = sqlite3_column_int64(q, 0);
    sqlite3_finalize(q);
    sqlite3_blob *b;
    ck_assert_int_eq(sqlite3_blob_open(db, "main", "datasets", col, rowid, 1, &b), SQLITE_OK);
    ck_assert_int_gt(sqlite3_blob_bytes(b), at);
    unsigned char c;
    ck_assert_int_eq(sqlite3_blob_read(b, &c, 1, at), SQLITE_OK);
    c ^= 0x10;
    ck_assert_int_eq(sqlite3_blob_write(b, &c, 1, at), SQLITE_OK);
    ck_assert_int_eq(sqlite3_blob_close(b), SQLITE_OK);
    sqlite3_close(db);
}

// store_dataset_get must fail with MS_ERR_DB, a message holding sub1 and sub2, and return
// nothing.
static void expect_corrupt_dataset(const char *id, const char *sub1, const char *sub2) {
    StoreDataset g;
    StoreDatasetData gd;
    MsError e = {0};
    expect(store_dataset_get(g_st, id, &g, &gd, &e), &e, MS_ERR_DB, "corrupt");
    ck_assert_msg(strstr(e.msg, sub1) && strstr(e.msg, sub2), "\"%s\" lacks \"%s\" or \"%s\"",
                  e.msg, sub1, sub2);
    ck_assert_ptr_null(g.meta);
    ck_assert_ptr_null(gd.x);
    ck_assert_ptr_null(gd.y);
    ck_assert_ptr_null(gd.index);
    ck_assert_uint_eq(gd.n_x + gd.n_y + gd.n_index, 0);
}

START_TEST(a_damaged_dataset_array_is_reported_as_corrupt_and_nothing_is_returned) {
    StoreDataset d;
    StoreDatasetData dd;
    dataset_make_chunked(&d, &dd, "damaged");
    OK(store_dataset_put(g_st, &d, &dd, &e_));
    const struct {
        const char *col; // column
        int at;          // byte flipped
        const char *sub; // expected in the message beside "corrupt" and the array's name
        const char *name;
    } cases[] = {
        {"x", 24 + 65536 + 100, "checksum", "x"}, // a payload byte in x's second chunk
        {"x", 24, "checksum", "x"},               // x's first payload byte
        {"x", 8, "do not hold", "x"},             // x's count
        {"y", 16, "checksum", "y"},               // y's stored checksum
        {"idx", 0, "magic", "index"},             // the index's magic
        {"idx", 6, "element type", "index"},      // the index's type
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        raw_flip_dataset(d.id, cases[i].col, cases[i].at);
        expect_corrupt_dataset(d.id, cases[i].name, cases[i].sub);
        raw_flip_dataset(d.id, cases[i].col, cases[i].at); // repaired: reads again
        StoreDataset g;
        StoreDatasetData gd;
        OK(store_dataset_get(g_st, d.id, &g, &gd, &e_));
        assert_same_arrays(&gd, &dd);
        store_dataset_free(&g);
        store_dataset_data_free(&gd);
    }
    // Arrays that are intact but do not fit the row's shape, or are not blobs at all (a missing
    // header chunk, on PostgreSQL).
    char sql[320];
    snprintf(sql, sizeof sql, "UPDATE datasets SET n_rows = 2999 WHERE id = '%s'", d.id);
    db_exec(sql);
    expect_corrupt_dataset(d.id, "x", "20993 were expected");
    if (g_pg)
        snprintf(sql, sizeof sql,
                 "UPDATE datasets SET n_rows = 3000 WHERE id = '%s';"
                 " DELETE FROM dataset_chunks WHERE dataset_id = '%s' AND arr = 1 AND seq = 0",
                 d.id, d.id);
    else
        snprintf(sql, sizeof sql, "UPDATE datasets SET n_rows = 3000, y = 'text' WHERE id = '%s'",
                 d.id);
    db_exec(sql);
    expect_corrupt_dataset(d.id, "y", g_pg ? "corrupt" : "not a blob");
    store_dataset_free(&d);
    store_dataset_data_free(&dd);
}
END_TEST

START_TEST(a_dataset_write_that_fails_leaves_no_row) {
    sqlite3 *db = store_sqlite_db(g_st);
    char sql[64];
    snprintf(sql, sizeof sql, "PRAGMA max_page_count = %lld",
             (long long)raw_int(db, "PRAGMA page_count"));
    raw_int(db, sql);
    StoreDataset d;
    StoreDatasetData dd;
    dataset_make_chunked(&d, &dd, "full");
    MsError e = {0};
    expect(store_dataset_put(g_st, &d, &dd, &e), &e, MS_ERR_DB, "disk full");
    ck_assert_str_eq(d.id, "");
    ck_assert_int_eq(raw_int(db, "SELECT count(*) FROM datasets"), 0);
    raw_int(db, "PRAGMA max_page_count = 1073741823");
    OK(store_dataset_put(g_st, &d, &dd, &e_));
    ck_assert_int_eq(raw_int(db, "SELECT count(*) FROM datasets"), 1);
    store_dataset_free(&d);
    store_dataset_data_free(&dd);
}
END_TEST

/* ---- adaptations ---- */

START_TEST(adaptations_round_trip_and_expire) {
    put_model("base", 6, 1);
    int64_t now = store_now_ms();
    StoreAdaptation a = {0};
    snprintf(a.model, sizeof a.model, "base");
    a.version = 1;
    a.expires_at = now + 3600000;
    a.n_params = 6;
    a.params = random_floats(6, 2);
    a.support_loss_before = 1.5;
    a.support_loss_after = NAN;
    OK(store_adaptation_put(g_st, &a, &e_));
    ck_assert(store_id_valid(a.id));
    ck_assert_int_ge(a.created_at, now);
    StoreAdaptation g;
    OK(store_adaptation_get(g_st, a.id, &g, &e_));
    ck_assert_str_eq(g.model, "base");
    ck_assert_int_eq(g.version, 1);
    ck_assert_int_eq(g.created_at, a.created_at);
    ck_assert_int_eq(g.expires_at, a.expires_at);
    ck_assert(g.support_loss_before == 1.5);
    ck_assert(isnan(g.support_loss_after));
    ck_assert_uint_eq(g.n_params, 6);
    ck_assert_mem_eq(g.params, a.params, 6 * sizeof(float));
    store_adaptation_free(&g);

    char live[STORE_ID_MAX];
    snprintf(live, sizeof live, "%s", a.id);
    a.expires_at = now - 1; // already expired
    OK(store_adaptation_put(g_st, &a, &e_));
    MsError e = {0};
    expect(store_adaptation_get(g_st, a.id, &g, &e), &e, MS_ERR_NOT_FOUND, "expired");
    ck_assert_ptr_null(g.params);
    int n = -1;
    OK(store_adaptation_expire(g_st, store_now_ms(), &n, &e_));
    ck_assert_int_eq(n, 1);
    OK(store_adaptation_expire(g_st, store_now_ms(), &n, &e_));
    ck_assert_int_eq(n, 0);
    OK(store_adaptation_get(g_st, live, &g, &e_));
    store_adaptation_free(&g);
    OK(store_adaptation_delete(g_st, live, &e_));
    expect(store_adaptation_get(g_st, live, &g, &e), &e, MS_ERR_NOT_FOUND, NULL);
    expect(store_adaptation_delete(g_st, live, &e), &e, MS_ERR_NOT_FOUND, NULL);

    a.version = 2; // base@2 does not exist
    a.expires_at = now + 1000;
    expect(store_adaptation_put(g_st, &a, &e), &e, MS_ERR_NOT_FOUND, "base has no version 2");
    free(a.params);
}
END_TEST

// The sweep deletes in batches of 256 rows, each its own transaction: 600 expired rows take
// three batches (256 + 256 + 88), and rows that have not expired stay.
START_TEST(a_sweep_of_several_batches_removes_every_expired_row_and_no_live_one) {
    put_model("base", 6, 1);
    int64_t now = store_now_ms();
    StoreAdaptation a = {0};
    snprintf(a.model, sizeof a.model, "base");
    a.version = 1;
    a.n_params = 6;
    a.params = random_floats(6, 3);
    char live[5][STORE_ID_MAX];
    for (int i = 0; i < 605; i++) {
        a.expires_at = i < 600 ? now - 1 - i : now + 3600000;
        OK(store_adaptation_put(g_st, &a, &e_));
        if (i >= 600) snprintf(live[i - 600], sizeof live[0], "%s", a.id);
    }
    int n = -1;
    OK(store_adaptation_expire(g_st, store_now_ms(), &n, &e_));
    ck_assert_int_eq(n, 600);
    ck_assert_int_eq(db_int("SELECT count(*) FROM adaptations"), 5);
    StoreAdaptation g;
    for (int i = 0; i < 5; i++) {
        OK(store_adaptation_get(g_st, live[i], &g, &e_));
        store_adaptation_free(&g);
    }
    free(a.params);
}
END_TEST

// A reader holding a snapshot of the old WAL makes the truncating checkpoint give up after its
// wait (busy, nothing lost); once the reader is done the WAL is emptied to 0 bytes.
START_TEST(the_wal_is_truncated_once_no_reader_holds_it) {
    char wal[600];
    snprintf(wal, sizeof wal, "%s-wal", g_path);
    char id[STORE_ID_MAX];
    for (int i = 0; i < 50; i++)
        OK(store_job_create(g_st, "{}", "w", 1, 0, id, &e_));
    struct stat sb;
    ck_assert_int_eq(stat(wal, &sb), 0);
    ck_assert_int_gt(sb.st_size, 0);
    sqlite3 *reader = raw_open(g_path);
    raw_exec(reader, "BEGIN");
    ck_assert_int_eq(raw_int(reader, "SELECT count(*) FROM jobs"), 50);
    OK(store_job_create(g_st, "{}", "w", 1, 0, id, &e_)); // a frame the reader does not see
    MsError e = {0};
    expect(store_wal_truncate(g_st, 50, &e), &e, MS_ERR_BUSY, "readers");
    ck_assert_int_eq(raw_int(reader, "SELECT count(*) FROM jobs"), 50); // its snapshot holds
    raw_exec(reader, "COMMIT");
    sqlite3_close(reader);
    OK(store_wal_truncate(g_st, 50, &e_));
    ck_assert_int_eq(stat(wal, &sb), 0);
    ck_assert_int_eq(sb.st_size, 0);
    int64_t counts[5];
    OK(store_job_counts(g_st, counts, &e_));
    ck_assert_int_eq(counts[0] + counts[1] + counts[2] + counts[3] + counts[4], 51);
}
END_TEST

/* ---- failures of the database ---- */

/* ---- group commit (store_sqlite_sync.c) ---- */

// A shim over the default VFS that numbers the writes to WAL files and records, for each xSync
// of a WAL that succeeds, the number of the last write before it started: every write numbered
// at or below g_wal_synced has been fsynced. It can also fail the WAL's syncs, and hold the
// first one until a number of other commits wait on the barrier. Registered as the default VFS
// only inside the group-commit tests, for the connections they open.
static sqlite3_vfs g_cvfs, *g_cbase;
static const sqlite3_io_methods *g_wal_orig; // the base VFS's methods of a WAL file
static sqlite3_io_methods g_wal_methods;     // the same with cw_write and cw_sync
static pthread_mutex_t g_cmu = PTHREAD_MUTEX_INITIALIZER;
static uint64_t g_wal_writes, g_wal_synced; // write numbers (under g_cmu)
static int g_wal_syncs;                     // successful syncs of a WAL
static int g_fail_syncs;                    // 1: a WAL's xSync fails with SQLITE_IOERR_FSYNC
static int g_hold_first;                    // > 0: the first sync waits for this many waiters
static Store *g_hold_on;                    // ... on this store's barrier
static _Thread_local uint64_t t_last_write; // the calling thread's last WAL write

static int cw_write(sqlite3_file *f, const void *p, int n, sqlite3_int64 off) {
    int rc = g_wal_orig->xWrite(f, p, n, off);
    pthread_mutex_lock(&g_cmu);
    t_last_write = ++g_wal_writes;
    pthread_mutex_unlock(&g_cmu);
    return rc;
}

static int cw_sync(sqlite3_file *f, int flags) {
    pthread_mutex_lock(&g_cmu);
    int hold = g_hold_first;
    g_hold_first = 0;
    pthread_mutex_unlock(&g_cmu);
    // a bound on the wait, not a timing claim: if the waiters never queue, the count of
    // syncs the test asserts comes out wrong
    for (int i = 0; hold > 0 && i < 10000 && store_sync_waiting(g_hold_on) < hold; i++)
        usleep(1000);
    pthread_mutex_lock(&g_cmu);
    uint64_t upto = g_wal_writes;
    int fail = g_fail_syncs;
    pthread_mutex_unlock(&g_cmu);
    if (fail) return SQLITE_IOERR_FSYNC;
    int rc = g_wal_orig->xSync(f, flags);
    pthread_mutex_lock(&g_cmu);
    if (rc == SQLITE_OK) {
        if (upto > g_wal_synced) g_wal_synced = upto;
        g_wal_syncs++;
    }
    pthread_mutex_unlock(&g_cmu);
    return rc;
}

static int cw_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *f, int flags, int *out) {
    (void)vfs;
    int rc = g_cbase->xOpen(g_cbase, name, f, flags, out);
    if (rc != SQLITE_OK || !(flags & SQLITE_OPEN_WAL) || !f->pMethods) return rc;
    pthread_mutex_lock(&g_cmu);
    if (!g_wal_orig) {
        g_wal_orig = f->pMethods;
        g_wal_methods = *f->pMethods;
        g_wal_methods.xWrite = cw_write;
        g_wal_methods.xSync = cw_sync;
    }
    pthread_mutex_unlock(&g_cmu);
    ck_assert_ptr_eq(f->pMethods, g_wal_orig); // one method table for every WAL file
    f->pMethods = &g_wal_methods;
    return rc;
}

// Registers the shim as the default VFS with fresh counters, and names a file of its own.
static void cvfs_begin(char *path, size_t cap) {
    g_cbase = sqlite3_vfs_find(NULL);
    ck_assert_ptr_nonnull(g_cbase);
    g_cvfs = *g_cbase;
    g_cvfs.zName = "count-wal";
    g_cvfs.pNext = NULL;
    g_cvfs.xOpen = cw_open;
    ck_assert_int_eq(sqlite3_vfs_register(&g_cvfs, 1), SQLITE_OK);
    g_wal_writes = g_wal_synced = 0;
    g_wal_syncs = g_fail_syncs = g_hold_first = 0;
    snprintf(path, cap, "%s/group.db", g_dir);
}

static void cvfs_end(void) {
    sqlite3_vfs_unregister(&g_cvfs);
    sqlite3_vfs_register(g_cbase, 1);
}

START_TEST(a_commit_returns_after_an_fsync_of_its_wal_frames_and_a_lazy_one_does_not) {
    char path[300];
    cvfs_begin(path, sizeof path);
    Store *s;
    MsError e = {0};
    OK(store_open(&s, path, &e));
    char id[STORE_ID_MAX];
    for (int i = 0; i < 20; i++) {
        t_last_write = 0;
        OK(store_job_create(s, "{}", "gc", 5, 0, id, &e));
        ck_assert_uint_gt(t_last_write, 0);
        ck_assert_uint_le(t_last_write, g_wal_synced); // durable when it returns
    }
    // progress and checkpoints of a running job commit without waiting for the fsync
    StoreJob j;
    int claimed = 0;
    OK(store_job_claim(s, &j, &claimed, &e));
    ck_assert_int_eq(claimed, 1);
    ck_assert_uint_le(t_last_write, g_wal_synced);
    int syncs = g_wal_syncs;
    OK(store_job_checkpoint(s, j.id, 3, "ckpt", 4, &e));
    ck_assert_uint_gt(t_last_write, g_wal_synced);
    ck_assert_int_eq(g_wal_syncs, syncs);
    // a fence makes what a read may see durable; with nothing unsynced it syncs nothing
    OK(store_durable_fence(s, &e));
    ck_assert_uint_le(t_last_write, g_wal_synced);
    ck_assert_int_eq(g_wal_syncs, syncs + 1);
    OK(store_durable_fence(s, &e));
    ck_assert_int_eq(g_wal_syncs, syncs + 1);
    // a connection that ran nothing since its own durable commit read nothing unsynced: its
    // fence returns at once, even with another connection's commit unsynced; after a read it
    // cannot (the read may have seen that commit)
    Store *s2;
    OK(store_open(&s2, path, &e));
    OK(store_job_create(s, "{}", "gc", 5, 0, id, &e));
    OK(store_job_checkpoint(s2, j.id, 4, "ckp2", 4, &e));
    ck_assert_uint_gt(t_last_write, g_wal_synced);
    syncs = g_wal_syncs;
    OK(store_durable_fence(s, &e));
    ck_assert_int_eq(g_wal_syncs, syncs);
    StoreJob got;
    OK(store_job_get(s, j.id, &got, &e));
    ck_assert_int_eq(got.iteration, 4); // it saw the unsynced checkpoint
    store_job_free(&got);
    OK(store_durable_fence(s, &e));
    ck_assert_int_eq(g_wal_syncs, syncs + 1);
    ck_assert_uint_le(t_last_write, g_wal_synced);
    store_close(s2);
    store_job_free(&j);
    store_close(s);
    cvfs_end();
}
END_TEST

#define GC_THREADS 8

typedef struct {
    Store *s;
    MsStatus st;
    int covered; // the thread's last WAL write was fsynced when the commit returned
    char msg[256];
} GcWriter;

static void *gc_write_one(void *arg) {
    GcWriter *w = arg;
    MsError e = {0};
    char id[STORE_ID_MAX];
    t_last_write = 0;
    w->st = store_job_create(w->s, "{}", "gc", 5, 0, id, &e);
    pthread_mutex_lock(&g_cmu);
    w->covered = t_last_write > 0 && t_last_write <= g_wal_synced;
    pthread_mutex_unlock(&g_cmu);
    snprintf(w->msg, sizeof w->msg, "%s", e.msg);
    return NULL;
}

// GC_THREADS connections commit one job each at once; the first fsync is held until the other
// GC_THREADS - 1 commits wait on the barrier (fail: that fsync and every later one fail).
static void gc_run_group(GcWriter *w, int fail) {
    char path[300];
    cvfs_begin(path, sizeof path);
    MsError e = {0};
    for (int i = 0; i < GC_THREADS; i++)
        OK(store_open(&w[i].s, path, &e));
    g_wal_syncs = 0;
    g_fail_syncs = fail;
    g_hold_on = w[0].s;
    g_hold_first = GC_THREADS - 1;
    pthread_t th[GC_THREADS];
    for (int i = 0; i < GC_THREADS; i++)
        ck_assert_int_eq(pthread_create(&th[i], NULL, gc_write_one, &w[i]), 0);
    for (int i = 0; i < GC_THREADS; i++)
        pthread_join(th[i], NULL);
}

START_TEST(concurrent_commits_share_one_fsync_and_each_returns_after_one_covering_it) {
    GcWriter w[GC_THREADS];
    memset(w, 0, sizeof w);
    gc_run_group(w, 0);
    for (int i = 0; i < GC_THREADS; i++) {
        ck_assert_msg(w[i].st == MS_OK, "writer %d: %s", i, w[i].msg);
        ck_assert_msg(w[i].covered, "writer %d returned before its frames were fsynced", i);
    }
    // the leader's fsync started before the others committed; one more covers all of them
    ck_assert_int_eq(g_wal_syncs, 2);
    int64_t counts[5];
    MsError e = {0};
    OK(store_job_counts(w[0].s, counts, &e));
    ck_assert_int_eq(counts[0], GC_THREADS); // all queued
    for (int i = 0; i < GC_THREADS; i++)
        store_close(w[i].s);
    cvfs_end();
}
END_TEST

START_TEST(a_failed_fsync_fails_every_waiter_and_every_later_write_until_reopened) {
    GcWriter w[GC_THREADS];
    memset(w, 0, sizeof w);
    gc_run_group(w, 1);
    for (int i = 0; i < GC_THREADS; i++) {
        ck_assert_msg(w[i].st == MS_ERR_IO, "writer %d: %s", i, ms_status_str(w[i].st));
        ck_assert_ptr_nonnull(strstr(w[i].msg, "fsync of the database's WAL failed"));
    }
    ck_assert_int_eq(g_wal_syncs, 0);
    // sticky: later syncs would succeed, but earlier frames may be lost, so nothing more is
    // acknowledged, and a reply built from reads is refused too
    g_fail_syncs = 0;
    MsError e = {0};
    char id[STORE_ID_MAX];
    ck_assert_int_eq(store_job_create(w[1].s, "{}", "gc", 5, 0, id, &e), MS_ERR_IO);
    ck_assert_int_eq(store_durable_fence(w[2].s, &e), MS_ERR_IO);
    for (int i = 0; i < GC_THREADS; i++)
        store_close(w[i].s);
    // a new process (here: the barrier gone with its last connection) starts clean
    Store *s;
    char path[300];
    snprintf(path, sizeof path, "%s/group.db", g_dir);
    OK(store_open(&s, path, &e));
    OK(store_job_create(s, "{}", "gc", 5, 0, id, &e));
    ck_assert_uint_le(t_last_write, g_wal_synced);
    store_close(s);
    cvfs_end();
}
END_TEST

START_TEST(a_held_write_lock_gives_busy_after_the_timeout) {
    sqlite3 *other = raw_open(g_path);
    raw_exec(other, "BEGIN IMMEDIATE");
    sqlite3_busy_timeout(store_sqlite_db(g_st), 100);
    char id[STORE_ID_MAX];
    MsError e = {0};
    int64_t t0 = store_now_ms();
    expect(store_job_create(g_st, "{}", "b", 1, 0, id, &e), &e, MS_ERR_BUSY, "busy");
    int64_t dt = store_now_ms() - t0;
    ck_assert_msg(dt >= 90 && dt < 3000, "waited %lld ms", (long long)dt);
    // Reads are not blocked by a writer in WAL mode.
    int64_t counts[5];
    OK(store_job_counts(g_st, counts, &e_));
    raw_exec(other, "ROLLBACK");
    sqlite3_close(other);
    OK(store_job_create(g_st, "{}", "b", 1, 0, id, &e_));
}
END_TEST

START_TEST(disk_full_and_read_only_are_reported_as_such) {
    sqlite3 *db = store_sqlite_db(g_st);
    char sql[64];
    snprintf(sql, sizeof sql, "PRAGMA max_page_count = %lld",
             (long long)raw_int(db, "PRAGMA page_count"));
    raw_int(db, sql);
    StoreModel m;
    model_make(&m, "big", 100000, 0, 1);
    MsError e = {0};
    expect(store_model_put(g_st, &m, NULL, &e), &e, MS_ERR_DB, "disk full");
    raw_int(db, "PRAGMA max_page_count = 1073741823");
    OK(store_model_put(g_st, &m, NULL, &e_));
    store_model_free(&m);

    raw_exec(db, "PRAGMA query_only = 1");
    char id[STORE_ID_MAX];
    expect(store_job_create(g_st, "{}", "ro", 1, 0, id, &e), &e, MS_ERR_DB, "read-only");
    raw_exec(db, "PRAGMA query_only = 0");
    OK(store_job_create(g_st, "{}", "ro", 1, 0, id, &e_));
}
END_TEST

START_TEST(closing_the_last_connection_folds_the_wal_and_integrity_check_finds_damage) {
    char path[200], wal[220];
    snprintf(path, sizeof path, "%s/damaged.db", g_dir);
    snprintf(wal, sizeof wal, "%s-wal", path);
    Store *s;
    OK(store_open(&s, path, &e_));
    char cfg[1024], id[STORE_ID_MAX];
    memset(cfg, 'x', sizeof cfg - 1);
    cfg[sizeof cfg - 1] = '\0';
    for (int i = 0; i < 40; i++) // ~40 KB of rows: several pages beyond the schema
        OK(store_job_create(s, cfg, "d", 1, 0, id, &e_));
    store_close(s);
    ck_assert_int_ne(access(wal, F_OK), 0); // the last close checkpointed and removed the WAL
    // Overwrite every page but the first (the header and schema) with a constant pattern.
    FILE *f = fopen(path, "r+b");
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(fseek(f, 0, SEEK_END), 0);
    long size = ftell(f);
    ck_assert_int_gt(size, 4 * 4096);
    ck_assert_int_eq(fseek(f, 4096, SEEK_SET), 0); // default page size: 4096 bytes
    for (long i = 4096; i < size; i++)
        fputc(0xA5, f);
    fclose(f);
    MsError e = {0};
    ck_assert_msg(store_open(&s, path, &e) == MS_OK, "%s", e.msg); // page 1 is intact
    expect(store_integrity_check(s, &e), &e, MS_ERR_DB, NULL);
    store_close(s);
}
END_TEST

START_TEST(ids_are_32_lowercase_hex_and_distinct) {
    static char ids[1000][STORE_ID_MAX];
    for (int i = 0; i < 1000; i++) {
        OK(store_id_new(ids[i], &e_));
        ck_assert_uint_eq(strlen(ids[i]), 32);
        ck_assert(store_id_valid(ids[i]));
    }
    qsort(ids, 1000, STORE_ID_MAX, cmp_id);
    for (int i = 1; i < 1000; i++)
        ck_assert_str_ne(ids[i], ids[i - 1]);
    ck_assert(!store_id_valid("0123456789ABCDEF0123456789abcdef")); // upper case
    ck_assert(!store_id_valid("0123456789abcdef0123456789abcde"));  // 31 characters
    ck_assert(!store_id_valid("0123456789abcdef0123456789abcdef0"));
}
END_TEST

// Asserts that the plan of sql mentions `index` and needs no temporary sort.
static void assert_plan(sqlite3 *db, const char *sql, const char *index) {
    char q[512];
    snprintf(q, sizeof q, "EXPLAIN QUERY PLAN %s", sql);
    sqlite3_stmt *st;
    ck_assert_int_eq(sqlite3_prepare_v2(db, q, -1, &st, NULL), SQLITE_OK);
    char plan[1024] = "";
    while (sqlite3_step(st) == SQLITE_ROW) {
        strncat(plan, (const char *)sqlite3_column_text(st, 3), sizeof plan - strlen(plan) - 2);
        strcat(plan, ";");
    }
    sqlite3_finalize(st);
    ck_assert_msg(strstr(plan, index) != NULL, "%s: plan %s", sql, plan);
    ck_assert_msg(strstr(plan, "TEMP B-TREE") == NULL, "%s: plan %s", sql, plan);
}

START_TEST(the_frequent_queries_use_their_indexes) {
    sqlite3 *db = store_sqlite_db(g_st);
    assert_plan(db, "SELECT id FROM jobs WHERE state = 'queued' ORDER BY created_at, rowid LIMIT 1",
                "jobs_state_created");
    assert_plan(db, "DELETE FROM adaptations WHERE expires_at <= 5", "adaptations_expires");
    assert_plan(db,
                "SELECT step, key, value, ts FROM job_metrics WHERE job_id = 'x' AND step > 3"
                " ORDER BY step, key",
                "PRIMARY KEY");
    assert_plan(db, "SELECT id FROM jobs ORDER BY created_at DESC, rowid DESC LIMIT 3",
                "jobs_created");
    assert_plan(db,
                "SELECT id FROM jobs WHERE created_at < 5 OR (created_at = 5 AND rowid < 3)"
                " ORDER BY created_at DESC, rowid DESC LIMIT 3",
                "jobs_created");
    assert_plan(db,
                "SELECT id FROM datasets WHERE created_at < 5 OR (created_at = 5 AND rowid < 3)"
                " ORDER BY created_at DESC, rowid DESC LIMIT 3",
                "datasets_created");
}
END_TEST

/* ---- memory: a 100,000 x 784 float pool is held once ---- */

// The RSS bounds are skipped under AddressSanitizer, whose shadow memory and quarantine grow
// the resident set by amounts unrelated to the store.
#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif
#ifndef UNDER_ASAN
#define UNDER_ASAN 0
#endif

enum { BIG_ROWS = 100000, BIG_DIM = 784, BIG_CLASSES = 100, BIG_TEST = 20 };

// x[i] of the big pool: cheap to recompute, so the read-back is checked without a second copy.
static float big_x(size_t i) {
    uint32_t h = (uint32_t)i * 2654435761u;      // i < 2^27: distinct, scrambled
    return (float)(h >> 8) / 16777216.0f - 0.5f; // 24 bits: exact in a float
}

// index[k] of the classes layout (include/metaserve/tasks/dataset.h) for BIG_CLASSES classes of
// BIG_ROWS / BIG_CLASSES rows: row offsets, then test-class flags (the last BIG_TEST), then the
// original labels.
static int32_t big_index(size_t k) {
    const size_t C = BIG_CLASSES;
    if (k <= C) return (int32_t)(k * (BIG_ROWS / C));
    if (k <= 2 * C) return k - (C + 1) >= C - BIG_TEST ? 1 : 0;
    return (int32_t)(k - (2 * C + 1));
}

static long maxrss_kib(void) {
    struct rusage u;
    ck_assert_int_eq(getrusage(RUSAGE_SELF, &u), 0);
    return u.ru_maxrss; // KiB on Linux
}

// What the writing process reports through its pipe.
typedef struct {
    long before, inputs, after; // ru_maxrss (KiB): store open, arrays built, after the put
    size_t bytes;               // the dataset's array bytes
    char id[STORE_ID_MAX];
    char error[256]; // "" on success
} BigPut;

// Child process: opens its own connection, builds the pool, stores it, reports, and _exits.
static void big_put_child(int fd) {
    BigPut r;
    memset(&r, 0, sizeof r);
    MsError e = {0};
    Store *s = NULL;
    StoreDatasetData dd = {0};
    StoreDataset d = {0};
    if (store_open(&s, g_path, &e) != MS_OK) goto fail;
    r.before = maxrss_kib();
    dd.n_x = (size_t)BIG_ROWS * BIG_DIM;
    dd.n_y = BIG_ROWS;
    dd.n_index = 3 * BIG_CLASSES + 1;
    dd.x = malloc(dd.n_x * sizeof(float));
    dd.y = malloc(dd.n_y * sizeof(float));
    dd.index = malloc(dd.n_index * sizeof(int32_t));
    if (!dd.x || !dd.y || !dd.index) {
        snprintf(e.msg, sizeof e.msg, "cannot allocate the pool");
        goto fail;
    }
    for (size_t i = 0; i < dd.n_x; i++)
        dd.x[i] = big_x(i);
    for (size_t r_ = 0; r_ < dd.n_y; r_++)
        dd.y[r_] = (float)(r_ / (BIG_ROWS / BIG_CLASSES));
    for (size_t k = 0; k < dd.n_index; k++)
        dd.index[k] = big_index(k);
    snprintf(d.name, sizeof d.name, "pool");
    snprintf(d.kind, sizeof d.kind, "classes");
    d.n_items = BIG_CLASSES;
    d.n_rows = BIG_ROWS;
    d.x_dim = BIG_DIM;
    d.y_dim = 1;
    r.inputs = maxrss_kib();
    if (store_dataset_put(s, &d, &dd, &e) != MS_OK) goto fail;
    r.after = maxrss_kib();
    r.bytes = d.bytes;
    memcpy(r.id, d.id, sizeof r.id);
    store_close(s);
    s = NULL;
fail:
    if (!r.id[0]) snprintf(r.error, sizeof r.error, "%s", e.msg[0] ? e.msg : "failed");
    store_close(s);
    ssize_t w = write(fd, &r, sizeof r);
    _exit(w == (ssize_t)sizeof r ? 0 : 1);
}

// The bound 1.15 x the data: the data itself counted once (the caller's arrays during the put,
// the returned arrays during the get), plus 15% (47 MB here) for everything else: SQLite's page
// cache (pinned at 2 MB), the 64 KiB chunk buffer, the allocator and the test's own pages. An
// implementation holding a second copy, as encoding into a buffer and reading sqlite3_column_blob
// did, needs about 2x and fails. The writing runs in a child process because ru_maxrss is a
// high-water mark: the put's peak would otherwise hide the get's.
START_TEST(a_100000_by_784_pool_is_stored_and_read_holding_one_copy) {
    store_close(g_st); // no connection may cross the fork
    g_st = NULL;
    int fds[2];
    ck_assert_int_eq(pipe(fds), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        close(fds[0]);
        big_put_child(fds[1]);
    }
    close(fds[1]);
    BigPut r;
    ck_assert_int_eq(read(fds[0], &r, sizeof r), (ssize_t)sizeof r);
    close(fds[0]);
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    ck_assert_msg(r.error[0] == '\0', "put: %s", r.error);
    const size_t n_x = (size_t)BIG_ROWS * BIG_DIM, n_index = 3 * BIG_CLASSES + 1;
    ck_assert_uint_eq(r.bytes, 4 * (n_x + BIG_ROWS + n_index));
    const double data_kib = (double)r.bytes / 1024;

    OK(store_open(&g_st, g_path, &e_));
    StoreDataset g;
    StoreDatasetData gd;
    long g0 = maxrss_kib();
    OK(store_dataset_get(g_st, r.id, &g, &gd, &e_));
    long g1 = maxrss_kib();
    ck_assert_uint_eq(gd.n_x, n_x);
    ck_assert_uint_eq(gd.n_y, BIG_ROWS);
    ck_assert_uint_eq(gd.n_index, n_index);
    size_t bad = 0;
    for (size_t i = 0; i < n_x; i++) {
        float want = big_x(i);
        bad += memcmp(&gd.x[i], &want, sizeof want) != 0;
    }
    for (size_t i = 0; i < (size_t)BIG_ROWS; i++)
        bad += gd.y[i] != (float)(i / (BIG_ROWS / BIG_CLASSES));
    for (size_t k = 0; k < n_index; k++)
        bad += gd.index[k] != big_index(k);
    ck_assert_uint_eq(bad, 0);
    store_dataset_free(&g);
    store_dataset_data_free(&gd);

    fprintf(stderr,
            "pool of %.1f MB: put peak +%.1f MB over the store (inputs +%.1f MB, +%.1f MB above"
            " them); get peak +%.1f MB%s\n",
            (double)r.bytes / 1e6, (double)(r.after - r.before) * 1024 / 1e6,
            (double)(r.inputs - r.before) * 1024 / 1e6, (double)(r.after - r.inputs) * 1024 / 1e6,
            (double)(g1 - g0) * 1024 / 1e6, UNDER_ASAN ? " (bounds not checked: ASan)" : "");
    if (UNDER_ASAN) return;
    // The measure sees the data: building the inputs and reading the pool each add ~1x (so the
    // bounds below would catch a second copy rather than pass for want of measuring anything).
    ck_assert_msg(r.inputs - r.before > 0.95 * data_kib, "inputs +%ld KiB", r.inputs - r.before);
    ck_assert_msg(g1 - g0 > 0.95 * data_kib, "get +%ld KiB", g1 - g0);
    ck_assert_msg(r.after - r.before < 1.15 * data_kib,
                  "put: peak %ld KiB above the store, the inputs included (data %.0f KiB)",
                  r.after - r.before, data_kib);
    ck_assert_msg(g1 - g0 < 1.15 * data_kib, "get: peak %ld KiB above the start (data %.0f KiB)",
                  g1 - g0, data_kib);
}
END_TEST

/* ---- PostgreSQL only: migrations of replicas starting together, leases, reconnection ---- */

static char g_fresh[256]; // a second, empty database (the migration race)

static void *open_and_close(void *arg) {
    Store *s = NULL;
    MsError e = {0};
    MsStatus st = store_open(&s, g_fresh, &e);
    if (st != MS_OK) fprintf(stderr, "open: %s\n", e.msg);
    store_close(s);
    *(MsStatus *)arg = st;
    return NULL;
}

START_TEST(pg_replicas_starting_together_migrate_exactly_once) {
    ck_assert_int_eq(pgtest_fresh_db(g_fresh, sizeof g_fresh), 0);
    enum { N = 8 };
    pthread_t t[N];
    MsStatus st[N];
    for (int i = 0; i < N; i++)
        ck_assert_int_eq(pthread_create(&t[i], NULL, open_and_close, &st[i]), 0);
    for (int i = 0; i < N; i++) {
        pthread_join(t[i], NULL);
        ck_assert_msg(st[i] == MS_OK, "opener %d: %s", i, ms_status_str(st[i]));
    }
    // One row recorded, at the current version: the migration ran once, in one transaction.
    ck_assert_int_eq(pgtest_int(g_fresh, "SELECT count(*) FROM metaserve_schema"), 1);
    ck_assert_int_eq(pgtest_int(g_fresh, "SELECT version FROM metaserve_schema"),
                     STORE_SCHEMA_VERSION);
    ck_assert_int_eq(pgtest_int(g_fresh, "SELECT count(*) FROM pg_tables WHERE tablename IN"
                                         " ('models', 'jobs', 'datasets', 'adaptations')"),
                     4);
}
END_TEST

START_TEST(pg_a_database_from_a_newer_build_is_refused_naming_both_versions) {
    db_exec("UPDATE metaserve_schema SET version = 999");
    Store *s = NULL;
    MsError e = {0};
    expect(store_open(&s, g_path, &e), &e, MS_ERR_DB, "999");
    char want[16];
    snprintf(want, sizeof want, "%d", STORE_SCHEMA_VERSION);
    ck_assert_msg(strstr(e.msg, want) != NULL, "\"%s\" does not name version %s", e.msg, want);
    ck_assert_ptr_null(s);
    char sql[64];
    snprintf(sql, sizeof sql, "UPDATE metaserve_schema SET version = %d", STORE_SCHEMA_VERSION);
    db_exec(sql);
}
END_TEST

static Store *open_replica(const char *name, int64_t lease_ms) {
    StoreOptions o = {0};
    o.replica = name;
    o.lease_ms = lease_ms;
    Store *s = NULL;
    MsError e = {0};
    ck_assert_msg(store_open_opts(&s, g_path, &o, &e) == MS_OK, "open %s: %s", name, e.msg);
    return s;
}

START_TEST(pg_a_replica_that_lost_its_lease_can_write_nothing_more) {
    char id[STORE_ID_MAX], sql[160];
    new_job("{}", id);
    Store *a = open_replica("replica-a", 300), *b = open_replica("replica-b", 60000);
    StoreJob j;
    int claimed = 0;
    OK(store_job_claim(a, &j, &claimed, &e_));
    ck_assert_int_eq(claimed, 1);
    store_job_free(&j);
    OK(store_job_checkpoint(a, id, 3, "aaa", 3, &e_));
    // A live lease is not taken over, nor is a job returned to the queue by another replica.
    claimed = 0;
    OK(store_job_claim(b, &j, &claimed, &e_));
    ck_assert_int_eq(claimed, 0);
    int n = -1;
    OK(store_job_requeue_running(b, &n, &e_));
    ck_assert_int_eq(n, 0);
    usleep(450 * 1000); // past a's 300 ms lease (the database's clock decides)
    OK(store_job_claim(b, &j, &claimed, &e_));
    ck_assert_int_eq(claimed, 1);
    ck_assert_str_eq(j.id, id);
    ck_assert_int_eq(j.has_checkpoint, 1); // b resumes from a's checkpoint
    store_job_free(&j);
    snprintf(sql, sizeof sql, "SELECT epoch FROM jobs WHERE id = '%s'", id);
    ck_assert_int_eq(db_int(sql), 2);

    // Every write of the old owner is refused and changes nothing.
    MsError e = {0};
    StoreMetric pt = {5, "meta_loss", 1.0};
    expect(store_job_progress(a, id, 5, "{\"meta_loss\":1}", &pt, 1, &e), &e, MS_ERR_CONFLICT,
           "lease lost");
    expect(store_job_checkpoint(a, id, 6, "zzzz", 4, &e), &e, MS_ERR_CONFLICT, "lease lost");
    StoreModel m;
    model_make(&m, "fenced", 4, 0, 1);
    int v = 0;
    expect(store_job_finish(a, id, JOB_SUCCEEDED, NULL, &m, &v, &e), &e, MS_ERR_CONFLICT,
           "lease lost");
    expect(store_job_requeue(a, id, &e), &e, MS_ERR_CONFLICT, "lease lost");
    ck_assert_int_eq(db_int("SELECT count(*) FROM models"), 0);
    ck_assert_int_eq(db_int("SELECT count(*) FROM job_metrics"), 0);
    void *data = NULL;
    size_t len = 0;
    OK(store_job_checkpoint_get(g_st, id, &data, &len, &e_));
    ck_assert_uint_eq(len, 3);
    ck_assert_int_eq(memcmp(data, "aaa", 3), 0);
    free(data);

    // The new owner's writes go through, and its model version is the only one.
    OK(store_job_progress(b, id, 7, "{\"meta_loss\":0.5}", &pt, 1, &e_));
    OK(store_job_finish(b, id, JOB_SUCCEEDED, NULL, &m, &v, &e_));
    ck_assert_int_eq(v, 1);
    ck_assert_int_eq(db_int("SELECT count(*) FROM models"), 1);
    snprintf(sql, sizeof sql, "SELECT count(*) FROM models WHERE job_id = '%s'", id);
    ck_assert_int_eq(db_int(sql), 1);
    store_model_free(&m);
    store_close(a);
    store_close(b);
}
END_TEST

START_TEST(pg_a_replica_hands_its_running_jobs_back_at_start_and_stop) {
    char id1[STORE_ID_MAX], id2[STORE_ID_MAX];
    new_job("{}", id1);
    new_job("{}", id2);
    Store *a = open_replica("replica-a", 60000), *b = open_replica("replica-b", 60000);
    StoreJob j;
    int claimed = 0;
    OK(store_job_claim(a, &j, &claimed, &e_));
    store_job_free(&j);
    OK(store_job_claim(b, &j, &claimed, &e_));
    store_job_free(&j);
    // a stops gracefully: its job is queued at once, b's stays b's.
    OK(store_job_requeue(a, id1, &e_));
    StoreJob g;
    OK(store_job_get(g_st, id1, &g, &e_));
    ck_assert_int_eq(g.state, JOB_QUEUED);
    store_job_free(&g);
    OK(store_job_get(g_st, id2, &g, &e_));
    ck_assert_int_eq(g.state, JOB_RUNNING);
    store_job_free(&g);
    // A replica restarting under the same name takes back only its own running jobs.
    OK(store_job_claim(a, &j, &claimed, &e_));
    ck_assert_str_eq(j.id, id1);
    store_job_free(&j);
    store_close(a);
    Store *a2 = open_replica("replica-a", 60000);
    int n = 0;
    OK(store_job_requeue_running(a2, &n, &e_));
    ck_assert_int_eq(n, 1);
    OK(store_job_get(g_st, id1, &g, &e_));
    ck_assert_int_eq(g.state, JOB_QUEUED);
    store_job_free(&g);
    OK(store_job_get(g_st, id2, &g, &e_));
    ck_assert_int_eq(g.state, JOB_RUNNING);
    store_job_free(&g);
    store_close(a2);
    store_close(b);
}
END_TEST

START_TEST(pg_a_broken_connection_fails_one_call_as_unavailable_then_reconnects) {
    put_model("m", 4, 1);
    // Ends every other session on this database, the store's among them.
    ck_assert_int_eq(pgtest_int(g_path, "SELECT count(pg_terminate_backend(pid)) FROM"
                                        " pg_stat_activity WHERE datname = current_database()"
                                        " AND pid <> pg_backend_pid()"),
                     1);
    usleep(50 * 1000);
    StoreModel m;
    MsError e = {0};
    expect(store_model_get(g_st, "m", 1, &m, &e), &e, MS_ERR_DB, "unavailable");
    ck_assert_int_eq(e.detail, MS_DETAIL_UNAVAILABLE);
    // The next call reconnects by itself (the first retry is not delayed).
    OK(store_model_get(g_st, "m", 1, &m, &e_));
    ck_assert_uint_eq(m.n_params, 4);
    store_model_free(&m);
}
END_TEST

START_TEST(pg_a_held_row_lock_gives_busy_after_the_lock_timeout) {
    char id[STORE_ID_MAX];
    new_job("{}", id);
    PGconn *other = PQconnectdb(g_path);
    ck_assert_int_eq(PQstatus(other), CONNECTION_OK);
    char sql[128];
    snprintf(sql, sizeof sql, "SELECT 1 FROM jobs WHERE id = '%s' FOR UPDATE", id);
    PQclear(PQexec(other, "BEGIN"));
    PGresult *r = PQexec(other, sql);
    ck_assert_int_eq(PQresultStatus(r), PGRES_TUPLES_OK);
    PQclear(r);
    PQclear(PQexec(g_st->pg->conn, "SET lock_timeout = '100ms'"));
    int64_t t0 = store_now_ms();
    MsError e = {0};
    expect(store_job_cancel(g_st, id, NULL, &e), &e, MS_ERR_BUSY, "busy");
    ck_assert_int_eq(e.detail, MS_DETAIL_LOCKED);
    int64_t waited = store_now_ms() - t0;
    // At least the 100 ms timeout, and far below the 5 s default (so it fails if ignored).
    ck_assert_msg(waited >= 90 && waited < 3000, "waited %lld ms", (long long)waited);
    PQclear(PQexec(other, "ROLLBACK"));
    PQfinish(other);
    JobState after;
    OK(store_job_cancel(g_st, id, &after, &e_));
    ck_assert_int_eq(after, JOB_CANCELLED);
}
END_TEST

START_TEST(pg_the_default_lock_timeout_is_set_on_every_connection) {
    ck_assert_ptr_nonnull(g_st->pg);
    PGresult *r = PQexec(g_st->pg->conn, "SHOW lock_timeout");
    ck_assert_int_eq(PQresultStatus(r), PGRES_TUPLES_OK);
    ck_assert_str_eq(PQgetvalue(r, 0, 0), "5s");
    PQclear(r);
}
END_TEST

static Suite *store_suite(void) {
    Suite *s = suite_create("store");
    TCase *tc = tcase_create(g_pg ? "postgresql" : "sqlite");
    tcase_add_unchecked_fixture(tc, suite_setup, suite_teardown);
    tcase_add_checked_fixture(tc, setup, teardown);
    // Both backends.
    tcase_add_test(tc, committed_writes_survive_closing_and_reopening);
    tcase_add_test(tc, a_model_round_trips_every_field_and_both_arrays);
    tcase_add_test(tc, versions_count_up_and_a_deleted_number_is_never_reused);
    tcase_add_test(tc, references_resolve_by_name_version_and_alias);
    tcase_add_test(tc, names_and_aliases_are_validated_naming_the_field);
    tcase_add_test(tc, aliases_move_and_go_with_their_deleted_version);
    tcase_add_test(tc, model_listing_pages_by_name_with_latest_version_and_count);
    tcase_add_test(tc, model_versions_list_ascending_without_arrays);
    tcase_add_test(tc, deleting_a_whole_model_removes_versions_aliases_and_adaptations);
    tcase_add_test(tc, a_corrupted_blob_is_reported_as_corrupt_and_not_returned);
    tcase_add_test(tc, a_job_goes_from_queue_to_a_model_version);
    tcase_add_test(tc, claims_take_the_oldest_queued_job_first);
    tcase_add_test(tc, cancelling_a_queued_job_is_immediate_and_a_running_one_is_requested);
    tcase_add_test(tc, requeue_returns_running_jobs_with_checkpoints_and_cancels_those_asked);
    tcase_add_test(tc, finished_jobs_refuse_further_transitions);
    tcase_add_test(tc, metric_pages_hold_whole_steps_and_keep_nan);
    tcase_add_test(tc, job_listing_is_newest_first_in_pages);
    tcase_add_test(tc, the_queue_limit_gives_busy);
    tcase_add_test(tc, four_connections_claim_200_jobs_each_exactly_once);
    tcase_add_test(tc, concurrent_model_writes_get_distinct_consecutive_versions);
    tcase_add_test(tc, a_dataset_round_trips_and_lists_newest_first);
    tcase_add_test(tc, a_dataset_used_by_a_queued_or_running_job_cannot_be_deleted);
    tcase_add_test(tc, a_damaged_dataset_array_is_reported_as_corrupt_and_nothing_is_returned);
    tcase_add_test(tc, adaptations_round_trip_and_expire);
    tcase_add_test(tc, a_sweep_of_several_batches_removes_every_expired_row_and_no_live_one);
    tcase_add_test(tc, ids_are_32_lowercase_hex_and_distinct);
    if (g_pg) {
        tcase_add_test(tc, pg_replicas_starting_together_migrate_exactly_once);
        tcase_add_test(tc, pg_a_database_from_a_newer_build_is_refused_naming_both_versions);
        tcase_add_test(tc, pg_a_replica_that_lost_its_lease_can_write_nothing_more);
        tcase_add_test(tc, pg_a_replica_hands_its_running_jobs_back_at_start_and_stop);
        tcase_add_test(tc, pg_a_broken_connection_fails_one_call_as_unavailable_then_reconnects);
        tcase_add_test(tc, pg_a_held_row_lock_gives_busy_after_the_lock_timeout);
        tcase_add_test(tc, pg_the_default_lock_timeout_is_set_on_every_connection);
    } else {
        tcase_add_test(tc, a_new_file_is_created_at_the_current_schema_in_wal_mode);
        tcase_add_test(tc, every_earlier_schema_version_migrates_to_the_current_one_keeping_data);
        tcase_add_test(tc, a_file_from_a_newer_build_is_refused_naming_both_versions);
        tcase_add_test(tc, a_file_that_is_not_a_database_is_refused);
        // SQLite's page cap stands in for a full disk, which PostgreSQL has no per-database
        // switch for.
        tcase_add_test(tc, a_model_write_that_fails_leaves_the_job_running_and_unchanged);
        tcase_add_test(
            tc, a_streamed_dataset_holds_the_bytes_blob_encode_makes_and_old_rows_still_read);
        tcase_add_test(tc, a_dataset_write_that_fails_leaves_no_row);
        tcase_add_test(tc, the_wal_is_truncated_once_no_reader_holds_it);
        tcase_add_test(tc, a_held_write_lock_gives_busy_after_the_timeout);
        tcase_add_test(tc,
                       a_commit_returns_after_an_fsync_of_its_wal_frames_and_a_lazy_one_does_not);
        tcase_add_test(tc,
                       concurrent_commits_share_one_fsync_and_each_returns_after_one_covering_it);
        tcase_add_test(tc, a_failed_fsync_fails_every_waiter_and_every_later_write_until_reopened);
        tcase_add_test(tc, disk_full_and_read_only_are_reported_as_such);
        tcase_add_test(tc,
                       closing_the_last_connection_folds_the_wal_and_integrity_check_finds_damage);
        tcase_add_test(tc, the_frequent_queries_use_their_indexes);
    }
    suite_add_tcase(s, tc);
    // Its own case for its own time limit (the pool is 314 MB; about 3 s unsanitized).
    TCase *big = tcase_create("memory");
    tcase_set_timeout(big, 120);
    tcase_add_unchecked_fixture(big, suite_setup, suite_teardown);
    tcase_add_checked_fixture(big, setup, teardown);
    tcase_add_test(big, a_100000_by_784_pool_is_stored_and_read_holding_one_copy);
    suite_add_tcase(s, big);
    return s;
}

int main(void) {
    g_pg = pgtest_uri() != NULL;
    SRunner *sr = srunner_create(store_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
