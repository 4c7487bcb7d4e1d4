/*
 * Fault injection against the real server (started in-process on an ephemeral loopback port with
 * a real SQLite file, driven over libcurl as in tests/http/test_api.c).
 *
 * Storage failures, each checked on the HTTP status, the problem document (type, title, a
 * detail naming the cause) and on what the file holds afterwards (row counts through the API
 * and through a connection of the test's own, PRAGMA integrity_check, earlier data read back
 * intact):
 *   - a read-only database (the store opened read-only: chmod does not stop root, which the
 *     tests may run as): writes are 503 naming "read-only", reads work;
 *   - a full disk (PRAGMA max_page_count through METASERVE_DB_MAX_PAGES): uploads that do not
 *     fit are 507 storage-full and leave nothing behind; a training job whose model does not
 *     fit ends failed with the reason and writes no version;
 *   - a locked database (another connection holds the write lock past the busy timeout): writes
 *     are 503 with Retry-After naming "busy", reads keep working, writes succeed after release.
 *
 * Allocation failures, "fail the Nth allocation" in a loop: the executable is linked with
 * -Wl,--wrap=malloc,calloc,realloc,strdup,strndup, so every allocation made by the service's own
 * (statically linked) code goes through the wrappers below; cJSON's hooks and SQLite's allocator
 * (SQLITE_CONFIG_MALLOC) are routed through the same countdown. Allocations made on the test's
 * own thread (libcurl callbacks, parsing replies) are exempt, and the server runs no training
 * workers, so only request handling is counted. For N = 1, 2, ... one request is sent with its
 * Nth allocation failing, until a run completes without reaching N. Every run must give a
 * well-formed reply: the normal success, or 503 "out of memory" as a problem document; the
 * service must stay ready, and the request succeeds once nothing fails. Leaks are caught by the
 * AddressSanitizer build (LeakSanitizer at exit). FAULT_TRACE=1 prints every run (allocations
 * counted per allocator, the status and the start of the reply) on stderr.
 */
#define _GNU_SOURCE
#include <check.h>
#include <math.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define TEST_ROOT_NAME "ms_fault"
#include "../http/testsrv.h"
#include "metaserve/store/store.h"
#include "store_internal.h"

#define DEADLINE_S 120.0

/* ---- allocation failure injection ---- */

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t n);
char *__real_strdup(const char *s);
char *__real_strndup(const char *s, size_t n);

enum { SRC_OURS, SRC_CJSON, SRC_SQLITE, N_SRC };

static atomic_long g_fail_at;         // ordinal of the allocation to fail; 0: injection off
static atomic_long g_seen;            // allocations counted since arming
static atomic_long g_injected[N_SRC]; // failures injected since arming, by allocator
static atomic_long g_calls[N_SRC];    // allocations counted since arming, by allocator
static atomic_int g_mask;             // allocators counted: bit (1 << SRC_*)
static atomic_int g_persist;          // 1: every allocation from the Nth on fails, not just it
static _Thread_local int t_exempt;    // set on the test's own thread

// 1 when this allocation is the one to fail.
static int inject(int src) {
    if (t_exempt || atomic_load(&g_fail_at) == 0 || !(atomic_load(&g_mask) & (1 << src))) return 0;
    long n = atomic_fetch_add(&g_seen, 1) + 1;
    atomic_fetch_add(&g_calls[src], 1);
    long at = atomic_load(&g_fail_at);
    if (n != at && !(atomic_load(&g_persist) && n > at)) return 0;
    atomic_fetch_add(&g_injected[src], 1);
    return 1;
}

void *__wrap_malloc(size_t n) {
    return inject(SRC_OURS) ? NULL : __real_malloc(n);
}
void *__wrap_calloc(size_t n, size_t size) {
    return inject(SRC_OURS) ? NULL : __real_calloc(n, size);
}
void *__wrap_realloc(void *p, size_t n) {
    return inject(SRC_OURS) ? NULL : __real_realloc(p, n);
}
char *__wrap_strdup(const char *s) {
    return inject(SRC_OURS) ? NULL : __real_strdup(s);
}
char *__wrap_strndup(const char *s, size_t n) {
    return inject(SRC_OURS) ? NULL : __real_strndup(s, n);
}

static void *cjson_malloc(size_t n) {
    return inject(SRC_CJSON) ? NULL : __real_malloc(n);
}

// SQLite's default allocator, wrapped: the countdown decides before it is asked.
static sqlite3_mem_methods g_sqlite_mem;
static void *sq_malloc(int n) {
    return inject(SRC_SQLITE) ? NULL : g_sqlite_mem.xMalloc(n);
}
static void *sq_realloc(void *p, int n) {
    return inject(SRC_SQLITE) ? NULL : g_sqlite_mem.xRealloc(p, n);
}

// Routes cJSON and SQLite through the countdown (before SQLite's first use in the process).
static void hooks_install(void) {
    cJSON_Hooks h = {.malloc_fn = cjson_malloc, .free_fn = free};
    cJSON_InitHooks(&h);
    // SQLite takes a new allocator only while uninitialised (every connection is closed here,
    // also when CK_FORK=no ran the other tests in this process first)
    ck_assert_int_eq(sqlite3_shutdown(), SQLITE_OK);
    ck_assert_int_eq(sqlite3_config(SQLITE_CONFIG_GETMALLOC, &g_sqlite_mem), SQLITE_OK);
    sqlite3_mem_methods m = g_sqlite_mem;
    m.xMalloc = sq_malloc;
    m.xRealloc = sq_realloc;
    ck_assert_int_eq(sqlite3_config(SQLITE_CONFIG_MALLOC, &m), SQLITE_OK);
}

static void arm(long n) {
    atomic_store(&g_seen, 0);
    for (int i = 0; i < N_SRC; i++)
        atomic_store(&g_injected[i], 0), atomic_store(&g_calls[i], 0);
    atomic_store(&g_fail_at, n);
}

static void disarm(void) {
    atomic_store(&g_fail_at, 0);
}

static long injected_total(void) {
    long t = 0;
    for (int i = 0; i < N_SRC; i++)
        t += atomic_load(&g_injected[i]);
    return t;
}

/* ---- server, client, database ---- */

static Server *g_srv;
static HcClient g_c;

// A fresh directory under the root; the database path in it goes to db.
static void db_path(char *db, size_t n, const char *name) {
    char dir[128];
    test_root_subdir(dir, sizeof dir, name);
    snprintf(db, n, "%s/fault.db", dir);
}

static void config(ServerConfig *c, const char *db, int workers) {
    testsrv_config(c, db);
    c->workers = workers;
    c->http_threads = 2;
    c->max_queued_jobs = 1000000;
}

static void up(const ServerConfig *c) {
    testsrv_start(&g_srv, &g_c, c);
}

static void down(void) {
    testsrv_stop(&g_srv, NULL);
}

// Every response must arrive, with an X-Request-ID.
static long call(HcResp *r, const char *method, const char *path, const char *body) {
    hc_call(&g_c, r, method, path, body);
    char rid[128];
    ck_assert_msg(r->status > 0, "%s %s: transfer failed: %s", method, path, r->err);
    ck_assert_msg(hc_header(r, "X-Request-ID", rid, sizeof rid) != NULL, "%s %s: no X-Request-ID",
                  method, path);
    return r->status;
}

// Prints what a fault scenario was answered (the figures of the report; asserted separately).
static void report(const char *scenario, const HcResp *r) {
    char retry[16] = "-";
    hc_header(r, "Retry-After", retry, sizeof retry);
    printf("storage-fault: %-34s %ld %s (Retry-After %s): %s\n", scenario, r->status,
           hc_str(r, "type") ? hc_str(r, "type") : "-", retry,
           hc_str(r, "detail") ? hc_str(r, "detail") : r->body);
    fflush(stdout);
}

// One integer from a query on a connection of the test's own.
static long long db_int(const char *db, const char *sql) {
    Store *s = NULL;
    MsError err = {0};
    ck_assert_msg(store_open(&s, db, &err) == MS_OK, "store_open: %s", err.msg);
    sqlite3_stmt *q = NULL;
    ck_assert_int_eq(sqlite3_prepare_v2(store_sqlite_db(s), sql, -1, &q, NULL), SQLITE_OK);
    ck_assert_int_eq(sqlite3_step(q), SQLITE_ROW);
    long long v = sqlite3_column_int64(q, 0);
    sqlite3_finalize(q);
    store_close(s);
    return v;
}

static void integrity_ok(const char *db) {
    Store *s = NULL;
    MsError err = {0};
    ck_assert_msg(store_open(&s, db, &err) == MS_OK, "store_open: %s", err.msg);
    ck_assert_msg(store_integrity_check(s, &err) == MS_OK, "integrity_check: %s", err.msg);
    store_close(s);
}

// The number of items in a list reply (GET path with page_size=1000) under key.
static int list_count(const char *path, const char *key) {
    HcResp r;
    ck_assert_int_eq(call(&r, "GET", path, NULL), 200);
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(r.json, key);
    ck_assert_msg(cJSON_IsArray(a), "%s: no %s array: %s", path, key, r.body);
    int n = cJSON_GetArraySize(a);
    hc_free(&r);
    return n;
}

/* ---- bodies ---- */

static void sine_config(char *buf, size_t n, const char *name, int hidden, long iterations) {
    snprintf(buf, n,
             "{\"name\":\"%s\",\"architecture\":{\"sizes\":[1,%d,%d,1],\"activation\":\"tanh\","
             "\"head\":\"regression\"},\"algorithm\":\"maml\",\"inner\":{\"lr\":0.01,\"steps\":1},"
             "\"outer\":{\"optimizer\":\"adam\",\"lr\":0.001},\"meta_batch\":2,"
             "\"iterations\":%ld,\"seed\":1,"
             "\"tasks\":{\"family\":\"sinusoid\",\"k_support\":5,\"k_query\":5}}",
             name, hidden, hidden, iterations);
}

// The value of point i of a generated dataset: multiples of 1/256 in [-1, 1), exact in float32
// and printed exactly by %.9g, so what is read back can be compared bit for bit.
static double xval(long i) {
    return (double)(i % 512) / 256.0 - 1.0;
}
static double yval(long i) {
    return (double)((i * 7) % 512) / 256.0 - 1.0;
}

// A "tasks" dataset of n_tasks tasks of `points` points each (x and y one column wide).
static void dataset_body(HcBuf *b, const char *name, int n_tasks, int points) {
    hc_buf_init(b);
    hc_buf_printf(b, "{\"name\":\"%s\",\"kind\":\"tasks\",\"tasks\":[", name);
    long k = 0;
    for (int t = 0; t < n_tasks; t++) {
        hc_buf_puts(b, t ? ",{\"x\":[" : "{\"x\":[");
        for (int p = 0; p < points; p++)
            hc_buf_printf(b, "%s[%.9g]", p ? "," : "", xval(k + p));
        hc_buf_puts(b, "],\"y\":[");
        for (int p = 0; p < points; p++)
            hc_buf_printf(b, "%s[%.9g]", p ? "," : "", yval(k + p));
        hc_buf_puts(b, "]}");
        k += points;
    }
    hc_buf_puts(b, "]}");
    ck_assert_ptr_nonnull(b->s);
}

// Uploads a dataset, expecting status; the new id goes to id (when 201).
static void upload(HcResp *r, const char *name, int n_tasks, int points, long status) {
    HcBuf b;
    dataset_body(&b, name, n_tasks, points);
    call(r, "POST", "/v1/datasets", b.s);
    hc_buf_free(&b);
    ck_assert_msg(r->status == status, "upload %s: status %ld, expected %ld: %.400s", name,
                  r->status, status, r->body);
}

// Reads dataset id back through the store and compares every value with the generator.
static void dataset_intact(const char *db, const char *id, int n_tasks, int points) {
    Store *s = NULL;
    MsError err = {0};
    ck_assert_msg(store_open(&s, db, &err) == MS_OK, "store_open: %s", err.msg);
    StoreDataset d;
    StoreDatasetData data;
    memset(&data, 0, sizeof data);
    ck_assert_msg(store_dataset_get(s, id, &d, &data, &err) == MS_OK, "dataset %s: %s", id,
                  err.msg);
    long n = (long)n_tasks * points;
    ck_assert_int_eq((long)data.n_x, n);
    ck_assert_int_eq((long)data.n_y, n);
    for (long i = 0; i < n; i++) {
        ck_assert_msg(data.x[i] == (float)xval(i) && data.y[i] == (float)yval(i),
                      "dataset %s: value %ld changed", id, i);
    }
    store_dataset_data_free(&data);
    store_dataset_free(&d);
    store_close(s);
}

// Checks every dataset called name, as dataset_intact.
static void datasets_intact(const char *db, const char *name, int n_tasks, int points) {
    Store *s = NULL;
    MsError err = {0};
    ck_assert_msg(store_open(&s, db, &err) == MS_OK, "store_open: %s", err.msg);
    sqlite3_stmt *q = NULL;
    ck_assert_int_eq(sqlite3_prepare_v2(store_sqlite_db(s),
                                        "SELECT id FROM datasets WHERE name = ?", -1, &q, NULL),
                     SQLITE_OK);
    sqlite3_bind_text(q, 1, name, -1, SQLITE_STATIC);
    int n = 0;
    while (sqlite3_step(q) == SQLITE_ROW) {
        dataset_intact(db, (const char *)sqlite3_column_text(q, 0), n_tasks, points);
        n++;
    }
    sqlite3_finalize(q);
    store_close(s);
    ck_assert_int_gt(n, 0);
}

static int terminal(const char *s) {
    return s && (!strcmp(s, "succeeded") || !strcmp(s, "failed") || !strcmp(s, "cancelled"));
}

static void submit(const char *config, char id[64]) {
    HcResp r;
    ck_assert_msg(call(&r, "POST", "/v1/jobs", config) == 202, "submit: %ld %s", r.status, r.body);
    snprintf(id, 64, "%s", hc_str(&r, "id"));
    hc_free(&r);
}

// Polls the job until it ends; out keeps the last document.
static void wait_job(const char *id, HcResp *out) {
    char path[96];
    snprintf(path, sizeof path, "/v1/jobs/%s", id);
    double t0 = now_s();
    for (;;) {
        ck_assert_int_eq(call(out, "GET", path, NULL), 200);
        if (terminal(hc_str(out, "state"))) return;
        ck_assert_msg(now_s() - t0 < DEADLINE_S, "job %s still %s", id, hc_str(out, "state"));
        hc_free(out);
        sleep_ms(20);
    }
}

// {"support": {"x", "y"}} (plus extra members) on n points of y = sin(x).
static void support_body(HcBuf *b, int n, const char *extra) {
    hc_buf_init(b);
    hc_buf_puts(b, "{\"support\":{\"x\":[");
    for (int i = 0; i < n; i++)
        hc_buf_printf(b, "%s[%.9g]", i ? "," : "", -4.0 + 8.0 * i / (n - 1));
    hc_buf_puts(b, "],\"y\":[");
    for (int i = 0; i < n; i++)
        hc_buf_printf(b, "%s[%.9g]", i ? "," : "", sin(-4.0 + 8.0 * i / (n - 1)));
    hc_buf_printf(b, "]}%s}", extra);
}

/* ---- A1: a read-only database ---- */

START_TEST(a_read_only_database_refuses_writes_with_503_and_serves_reads) {
    char db[192], cfg[1024], jid[64], did[64], aid[64], path[256];
    db_path(db, sizeof db, "ro");
    ServerConfig c;

    // a starting state written by a normal server: a dataset, a model, an adaptation
    config(&c, db, 1);
    up(&c);
    HcResp r;
    upload(&r, "pool", 4, 20, 201);
    snprintf(did, sizeof did, "%s", hc_str(&r, "id"));
    hc_free(&r);
    sine_config(cfg, sizeof cfg, "sine", 8, 20);
    submit(cfg, jid);
    wait_job(jid, &r);
    ck_assert_str_eq(hc_str(&r, "state"), "succeeded");
    hc_free(&r);
    HcBuf sup;
    support_body(&sup, 5, "");
    ck_assert_int_eq(call(&r, "POST", "/v1/models/sine/adapt", sup.s), 201);
    snprintf(aid, sizeof aid, "%s", hc_str(&r, "id"));
    hc_free(&r);
    down();
    long long datasets = db_int(db, "SELECT count(*) FROM datasets");
    long long jobs = db_int(db, "SELECT count(*) FROM jobs");
    long long models = db_int(db, "SELECT count(*) FROM models");
    long long adaptations = db_int(db, "SELECT count(*) FROM adaptations");
    ck_assert(datasets == 1 && jobs == 1 && models == 1 && adaptations == 1);

    // served read-only (METASERVE_DB_READONLY=1): no training workers start
    config(&c, db, 1);
    c.db_read_only = 1;
    up(&c);
    ck_assert_int_eq(call(&r, "GET", "/readyz", NULL), 200);
    hc_free(&r);

    // every write is 503 naming the cause, and changes nothing
    HcBuf b;
    dataset_body(&b, "more", 2, 10);
    ck_assert_int_eq(call(&r, "POST", "/v1/datasets", b.s), 503);
    report("read-only: POST /v1/datasets", &r);
    ck_problem(&r, 503, "unavailable");
    ck_detail_has(&r, "read-only");
    hc_free(&r);
    hc_buf_free(&b);
    ck_assert_int_eq(call(&r, "POST", "/v1/jobs", cfg), 503);
    report("read-only: POST /v1/jobs", &r);
    ck_problem(&r, 503, "unavailable");
    ck_detail_has(&r, "read-only");
    hc_free(&r);
    ck_assert_int_eq(call(&r, "POST", "/v1/models/sine/adapt", sup.s), 503);
    report("read-only: POST /v1/models/sine/adapt", &r);
    ck_problem(&r, 503, "unavailable");
    ck_detail_has(&r, "read-only");
    hc_free(&r);
    snprintf(path, sizeof path, "/v1/datasets/%s", did);
    ck_assert_int_eq(call(&r, "DELETE", path, NULL), 503);
    ck_problem(&r, 503, "unavailable");
    ck_detail_has(&r, "read-only");
    hc_free(&r);
    ck_assert_int_eq(call(&r, "DELETE", "/v1/models/sine", NULL), 503);
    ck_detail_has(&r, "read-only");
    hc_free(&r);

    // reads work: lists, descriptions, predictions (which write nothing)
    ck_assert_int_eq(list_count("/v1/datasets?page_size=1000", "datasets"), 1);
    ck_assert_int_eq(list_count("/v1/jobs?page_size=1000", "jobs"), 1);
    ck_assert_int_eq(list_count("/v1/models?page_size=1000", "models"), 1);
    ck_assert_int_eq(call(&r, "GET", path, NULL), 200);
    hc_free(&r);
    ck_assert_int_eq(call(&r, "GET", "/v1/models/sine/versions/1", NULL), 200);
    hc_free(&r);
    ck_assert_int_eq(call(&r, "POST", "/v1/models/sine/predict", "{\"x\":[[0.5]]}"), 200);
    ck_assert_ptr_nonnull(cJSON_GetObjectItemCaseSensitive(r.json, "y"));
    hc_free(&r);
    HcBuf inline_sup;
    support_body(&inline_sup, 5, ",\"x\":[[0.5]],\"steps\":2");
    ck_assert_int_eq(call(&r, "POST", "/v1/models/sine/predict", inline_sup.s), 200);
    hc_free(&r);
    hc_buf_free(&inline_sup);
    snprintf(path, sizeof path, "/v1/adaptations/%s/predict", aid);
    ck_assert_int_eq(call(&r, "POST", path, "{\"x\":[[0.5]]}"), 200);
    hc_free(&r);
    down();
    hc_buf_free(&sup);

    ck_assert_int_eq(db_int(db, "SELECT count(*) FROM datasets"), datasets);
    ck_assert_int_eq(db_int(db, "SELECT count(*) FROM jobs"), jobs);
    ck_assert_int_eq(db_int(db, "SELECT count(*) FROM models"), models);
    ck_assert_int_eq(db_int(db, "SELECT count(*) FROM adaptations"), adaptations);
    dataset_intact(db, did, 4, 20);
    integrity_ok(db);

    // at open time: a read-only start needs an existing, migrated file
    char missing[208];
    snprintf(missing, sizeof missing, "%s.absent", db);
    config(&c, missing, 0);
    c.db_read_only = 1;
    MsError err = {0};
    Server *s = NULL;
    ck_assert_int_ne(server_start(&s, &c, &err), MS_OK);
    ck_assert_ptr_null(s);
    ck_assert_msg(strstr(err.msg, "read-only") && strstr(err.msg, missing), "%s", err.msg);
    ck_assert_int_ne(access(missing, F_OK), 0); // and creates nothing

    // a file this process may not write is refused at start, not opened read-only silently;
    // root writes through any mode bits, so this part needs an unprivileged user
    if (geteuid() != 0) {
        char dir[192];
        snprintf(dir, sizeof dir, "%s", db);
        *strrchr(dir, '/') = '\0';
        ck_assert_int_eq(chmod(db, 0444), 0);
        config(&c, db, 0);
        err.msg[0] = '\0';
        ck_assert_int_ne(server_start(&s, &c, &err), MS_OK);
        ck_assert_msg(strstr(err.msg, db) != NULL, "%s", err.msg);
        ck_assert_int_eq(chmod(db, 0644), 0);
    } else {
        fprintf(stderr, "note: running as root: the file-permission part of the read-only test "
                        "is skipped (root writes regardless of mode bits)\n");
    }
}
END_TEST

/* ---- A2: a full disk ---- */

// The page cap: 128 pages of 4 KiB (512 KiB). Dataset sizes are chosen against it: A (16,000
// points, ~32 pages) fits; C (44,000 points, ~86 pages) does not fit beside A but fits once A
// is deleted; B (200,000 points, ~390 pages) never fits. Preconditions are asserted from
// page counts so that a change of schema size shows up as such, not as a mystery.
#define FULL_PAGES 128

START_TEST(a_full_disk_is_507_leaves_nothing_behind_and_recovers_after_a_delete) {
    char db[192], a_id[64], path[256];
    db_path(db, sizeof db, "full");
    ServerConfig c;
    config(&c, db, 0);
    c.db_max_pages = FULL_PAGES;
    up(&c);
    HcResp r;
    upload(&r, "a", 160, 100, 201);
    snprintf(a_id, sizeof a_id, "%s", hc_str(&r, "id"));
    hc_free(&r);
    long long used = db_int(db, "PRAGMA page_count") - db_int(db, "PRAGMA freelist_count");
    long long page = db_int(db, "PRAGMA page_size");
    // C's payload alone: 44,000 points x 8 bytes
    long long c_pages = (44000LL * 8 + page - 1) / page;
    ck_assert_msg(used + c_pages > FULL_PAGES, "C would fit beside A (%lld pages used)", used);

    // B never fits; C not beside A: 507, and no row, no change in what is listed
    upload(&r, "b", 2000, 100, 507);
    report("disk full: POST /v1/datasets", &r);
    ck_problem(&r, 507, "storage-full");
    ck_assert_str_eq(hc_str(&r, "title"), "Storage full");
    ck_detail_has(&r, "disk full");
    hc_free(&r);
    upload(&r, "c", 440, 100, 507);
    ck_problem(&r, 507, "storage-full");
    ck_detail_has(&r, "disk full");
    hc_free(&r);
    ck_assert_int_eq(list_count("/v1/datasets?page_size=1000", "datasets"), 1);
    ck_assert_int_eq(db_int(db, "SELECT count(*) FROM datasets"), 1);
    long long used_after = db_int(db, "PRAGMA page_count") - db_int(db, "PRAGMA freelist_count");
    ck_assert_int_eq(used_after, used); // the failed uploads left no pages in use
    integrity_ok(db);
    dataset_intact(db, a_id, 160, 100);
    snprintf(path, sizeof path, "/v1/datasets/%s", a_id);
    ck_assert_int_eq(call(&r, "GET", path, NULL), 200);
    ck_assert_double_eq(hc_num(&r, "n_rows"), 16000);
    hc_free(&r);
    ck_assert_int_eq(call(&r, "GET", "/readyz", NULL), 200);
    hc_free(&r);

    // deleting A makes room: C fits now
    ck_assert_int_eq(call(&r, "DELETE", path, NULL), 204);
    hc_free(&r);
    upload(&r, "c", 440, 100, 201);
    char c_id[64];
    snprintf(c_id, sizeof c_id, "%s", hc_str(&r, "id"));
    hc_free(&r);
    ck_assert_int_eq(list_count("/v1/datasets?page_size=1000", "datasets"), 1);
    down();
    integrity_ok(db);
    dataset_intact(db, c_id, 440, 100);
    ck_assert_int_le(db_int(db, "PRAGMA page_count"), FULL_PAGES);
}
END_TEST

START_TEST(a_job_whose_model_does_not_fit_fails_with_the_reason_and_writes_no_version) {
    char db[192], cfg[1024], jid[64];
    db_path(db, sizeof db, "fulljob");
    ServerConfig c;
    config(&c, db, 1);
    // 64 pages (256 KiB); no checkpoints, so the first large write is the model itself
    c.db_max_pages = 64;
    c.checkpoint_every = 0;
    c.checkpoint_seconds = 0;
    up(&c);
    // 1-300-300-1: 91,201 parameters, 365 KB as float32: more than the whole file may hold
    sine_config(cfg, sizeof cfg, "big", 300, 3);
    submit(cfg, jid);
    HcResp r;
    wait_job(jid, &r);
    ck_assert_msg(strcmp(hc_str(&r, "state"), "failed") == 0, "job ended %s: %s",
                  hc_str(&r, "state"), r.body);
    printf("storage-fault: %-34s job %s: %s\n", "disk full: model write of a job",
           hc_str(&r, "state"), hc_str(&r, "error") ? hc_str(&r, "error") : "-");
    ck_assert_msg(hc_str(&r, "error") && strstr(hc_str(&r, "error"), "disk full"), "error: %s",
                  r.body);
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(r.json, "model");
    ck_assert_msg(!m || cJSON_IsNull(m) || !cJSON_GetObjectItemCaseSensitive(m, "version") ||
                      cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(m, "version")),
                  "a failed job names a model version: %s", r.body);
    hc_free(&r);
    ck_assert_int_eq(call(&r, "GET", "/v1/models/big", NULL), 404);
    hc_free(&r);
    ck_assert_int_eq(list_count("/v1/models?page_size=1000", "models"), 0);
    ck_assert_int_eq(db_int(db, "SELECT count(*) FROM models"), 0);
    ck_assert_int_eq(db_int(db, "SELECT count(*) FROM model_names"), 0);

    // the service goes on: a model that fits is written, as version 1 (no number was used up)
    sine_config(cfg, sizeof cfg, "big", 8, 3);
    submit(cfg, jid);
    wait_job(jid, &r);
    ck_assert_msg(strcmp(hc_str(&r, "state"), "succeeded") == 0, "small job: %s", r.body);
    hc_free(&r);
    ck_assert_int_eq(call(&r, "GET", "/v1/models/big", NULL), 200);
    ck_assert_double_eq(hc_num(&r, "latest_version"), 1);
    hc_free(&r);
    down();
    integrity_ok(db);
}
END_TEST

/* ---- A3: a locked database ---- */

START_TEST(a_locked_database_is_503_with_retry_after_and_reads_still_work) {
    char db[192], cfg[1024], did[64], path[256];
    db_path(db, sizeof db, "lock");
    ServerConfig c;
    config(&c, db, 0);
    up(&c);
    HcResp r;
    upload(&r, "before", 2, 10, 201);
    snprintf(did, sizeof did, "%s", hc_str(&r, "id"));
    hc_free(&r);

    // another connection takes the write lock and holds it past the busy timeout
    Store *locker = NULL;
    MsError err = {0};
    ck_assert_msg(store_open(&locker, db, &err) == MS_OK, "%s", err.msg);
    ck_assert_int_eq(sqlite3_exec(store_sqlite_db(locker),
                                  "BEGIN EXCLUSIVE; UPDATE datasets SET name = name;", NULL, NULL,
                                  NULL),
                     SQLITE_OK);

    HcBuf b;
    dataset_body(&b, "during", 2, 10);
    char retry[16];
    ck_assert_int_eq(call(&r, "POST", "/v1/datasets", b.s), 503);
    report("locked: POST /v1/datasets", &r);
    ck_problem(&r, 503, "unavailable");
    ck_detail_has(&r, "database busy");
    ck_assert_ptr_nonnull(hc_header(&r, "Retry-After", retry, sizeof retry));
    ck_assert_int_ge(atoi(retry), 1);
    hc_free(&r);
    sine_config(cfg, sizeof cfg, "sine", 8, 5);
    ck_assert_int_eq(call(&r, "POST", "/v1/jobs", cfg), 503); // not 429: the queue is not full
    report("locked: POST /v1/jobs", &r);
    ck_problem(&r, 503, "unavailable");
    ck_detail_has(&r, "database busy");
    ck_assert_ptr_nonnull(hc_header(&r, "Retry-After", retry, sizeof retry));
    hc_free(&r);
    snprintf(path, sizeof path, "/v1/datasets/%s", did);
    ck_assert_int_eq(call(&r, "DELETE", path, NULL), 503);
    ck_detail_has(&r, "database busy");
    hc_free(&r);

    // reads go on beside the writer (WAL)
    ck_assert_int_eq(call(&r, "GET", "/readyz", NULL), 200);
    hc_free(&r);
    ck_assert_int_eq(list_count("/v1/datasets?page_size=1000", "datasets"), 1);
    ck_assert_int_eq(list_count("/v1/jobs?page_size=1000", "jobs"), 0);
    ck_assert_int_eq(call(&r, "GET", path, NULL), 200);
    hc_free(&r);

    // released: the same writes succeed
    ck_assert_int_eq(sqlite3_exec(store_sqlite_db(locker), "ROLLBACK", NULL, NULL, NULL),
                     SQLITE_OK);
    store_close(locker);
    ck_assert_int_eq(call(&r, "POST", "/v1/datasets", b.s), 201);
    hc_free(&r);
    hc_buf_free(&b);
    ck_assert_int_eq(call(&r, "POST", "/v1/jobs", cfg), 202);
    hc_free(&r);
    ck_assert_int_eq(list_count("/v1/datasets?page_size=1000", "datasets"), 2);
    ck_assert_int_eq(list_count("/v1/jobs?page_size=1000", "jobs"), 1);
    down();
    dataset_intact(db, did, 2, 10);
    integrity_ok(db);
}
END_TEST

/* ---- B: allocation failures ---- */

typedef struct {
    const char *kind; // for the report
    const char *method;
    const char *path;
    const char *body;
    long ok_status;     // the status without injection
    const char *ok_key; // a member the success document has
    const char *evict;  // NULL, or a model predict to call (uninjected) before each run
    const char *table;  // the table a success adds one row to (NULL: none)
    long successes;     // success replies so far (all passes, reference calls included)
    cJSON *ref;         // the success document without injection, volatile members removed
} FaultReq;

// Removes the members that differ between two successful calls (new ids, times).
static void strip_volatile(cJSON *doc) {
    static const char *const VOLATILE[] = {"id", "created_at", "expires_at", NULL};
    for (const char *const *k = VOLATILE; *k; k++)
        cJSON_DeleteItemFromObjectCaseSensitive(doc, *k);
}

// Sends q once with the nth counted allocation (of the allocators in g_mask) failing; checks the
// reply is the success or a clean 503 "out of memory", and that the service is ready afterwards.
// Returns the number of failures injected (0: the request made fewer than n allocations). by_src
// accumulates them.
static long one_run(FaultReq *q, long n, long by_src[N_SRC], int *failed_runs) {
    HcResp r;
    if (q->evict) {
        ck_assert_int_eq(call(&r, "POST", q->evict, "{\"x\":[[0.5]]}"), 200);
        hc_free(&r);
    }
    arm(n);
    hc_call(&g_c, &r, q->method, q->path, q->body);
    disarm();
    long inj = injected_total();
    if (getenv("FAULT_TRACE"))
        fprintf(stderr, "trace %s n=%ld calls=%ld/%ld/%ld src=%d%d%d status=%ld %.120s\n", q->kind,
                n, atomic_load(&g_calls[0]), atomic_load(&g_calls[1]), atomic_load(&g_calls[2]),
                (int)atomic_load(&g_injected[0]), (int)atomic_load(&g_injected[1]),
                (int)atomic_load(&g_injected[2]), r.status, r.body);
    char rid[128];
    ck_assert_msg(r.status > 0, "%s, allocation %ld failing: no reply (%s)", q->kind, n, r.err);
    ck_assert_msg(hc_header(&r, "X-Request-ID", rid, sizeof rid) != NULL,
                  "%s, allocation %ld failing: no X-Request-ID", q->kind, n);
    if (r.status == q->ok_status) {
        // a success must be the whole success: the same document as without injection
        ck_assert_msg(cJSON_GetObjectItemCaseSensitive(r.json, q->ok_key) != NULL,
                      "%s, allocation %ld failing: %ld without %s: %.300s", q->kind, n, r.status,
                      q->ok_key, r.body);
        strip_volatile(r.json);
        ck_assert_msg(cJSON_Compare(r.json, q->ref, 1),
                      "%s, allocation %ld failing: %ld with a different document: %.600s", q->kind,
                      n, r.status, r.body);
        q->successes++;
    } else {
        ck_assert_msg(inj > 0, "%s: %ld without injection: %.300s", q->kind, r.status, r.body);
        const char *why = hc_problem_mismatch(&r, 503, "unavailable");
        ck_assert_msg(why == NULL, "%s, allocation %ld failing: %s", q->kind, n, why);
        const char *d = hc_str(&r, "detail");
        ck_assert_msg(strstr(d, "out of memory") || strstr(d, "cannot allocate"),
                      "%s, allocation %ld failing: detail '%s' does not say out of memory", q->kind,
                      n, d);
        (*failed_runs)++;
    }
    hc_free(&r);
    for (int i = 0; i < N_SRC; i++)
        by_src[i] += atomic_load(&g_injected[i]);
    ck_assert_msg(call(&r, "GET", "/readyz", NULL) == 200, "%s, after allocation %ld: readyz %ld",
                  q->kind, n, r.status);
    hc_free(&r);
    return inj;
}

// The loop: N = 1, 2, ... until a run makes fewer than N allocations of the allocators in mask.
// Two passes per request: the service's code with cJSON, then SQLite alone. SQLite answers an
// allocation failure by discarding the connection's parsed schema, which the next statement
// parses again (a hundred allocations), so in a mixed count every run after the first SQLite
// failure would fail inside that re-parse and the allocations after it would never be reached.
static void fault_loop(FaultReq *q, int mask, int persist) {
    atomic_store(&g_mask, mask);
    atomic_store(&g_persist, persist);
    HcResp r;
    ck_assert_int_eq(call(&r, q->method, q->path, q->body), q->ok_status);
    q->successes++;
    cJSON_Delete(q->ref);
    q->ref = r.json;
    r.json = NULL;
    ck_assert_ptr_nonnull(q->ref);
    strip_volatile(q->ref);
    hc_free(&r);
    // a bound only to fail instead of looping forever; requests make a few hundred at most
    const long MAX_N = 20000;
    long by_src[N_SRC] = {0};
    int failed_runs = 0;
    long n = 1;
    for (; n <= MAX_N; n++)
        if (one_run(q, n, by_src, &failed_runs) == 0) break;
    ck_assert_msg(n <= MAX_N, "%s: still allocating after %ld", q->kind, MAX_N);
    // every request allocates in our code (its context, at least); a warm predict may well not
    // touch SQLite at all
    if (mask & (1 << SRC_OURS))
        ck_assert_msg(n > 1, "%s: no allocation was counted: the wrappers are not in effect",
                      q->kind);
    printf("fault-injection: %-21s %-20s %4ld injection points (ours %ld, cJSON %ld, "
           "SQLite %ld): %d answered 503 out of memory, %ld still %ld\n",
           q->kind,
           persist                    ? "[all, from N on]"
           : mask & (1 << SRC_SQLITE) ? "[SQLite, Nth]"
                                      : "[ours+cJSON, Nth]",
           n - 1, by_src[SRC_OURS], by_src[SRC_CJSON], by_src[SRC_SQLITE], failed_runs,
           n - 1 - failed_runs, q->ok_status);
    fflush(stdout);
}

START_TEST(every_failed_allocation_in_request_handling_gives_a_clean_error) {
    t_exempt = 1;
    hooks_install();
    char db[192], cfg[1024], jid[64], aid[64], adapt_predict[128], job_path[96];
    db_path(db, sizeof db, "oom");
    ServerConfig c;

    // a model, a finished job and an adaptation, made with a training worker
    config(&c, db, 1);
    up(&c);
    HcResp r;
    sine_config(cfg, sizeof cfg, "other", 8, 5);
    submit(cfg, jid);
    wait_job(jid, &r);
    ck_assert_str_eq(hc_str(&r, "state"), "succeeded");
    hc_free(&r);
    sine_config(cfg, sizeof cfg, "sine", 8, 20);
    submit(cfg, jid);
    wait_job(jid, &r);
    ck_assert_str_eq(hc_str(&r, "state"), "succeeded");
    hc_free(&r);
    HcBuf sup;
    support_body(&sup, 5, ",\"steps\":3");
    ck_assert_int_eq(call(&r, "POST", "/v1/models/sine/adapt", sup.s), 201);
    snprintf(aid, sizeof aid, "%s", hc_str(&r, "id"));
    hc_free(&r);
    down();

    // no workers: only request handling allocates; one HTTP thread keeps the order fixed
    config(&c, db, 0);
    c.http_threads = 1;
    c.cache_models = 1;
    up(&c);
    HcBuf ds, inline_sup;
    dataset_body(&ds, "small", 2, 5);
    support_body(&inline_sup, 5, ",\"x\":[[0.5],[1.5]],\"steps\":2");
    snprintf(adapt_predict, sizeof adapt_predict, "/v1/adaptations/%s/predict", aid);
    snprintf(job_path, sizeof job_path, "/v1/jobs/%s", jid);
    FaultReq reqs[] = {
        {"dataset upload", "POST", "/v1/datasets", ds.s, 201, "id", NULL, "datasets", 0, NULL},
        {"job submit", "POST", "/v1/jobs", cfg, 202, "id", NULL, "jobs", 0, NULL},
        {"adapt", "POST", "/v1/models/sine/adapt", sup.s, 201, "id", NULL, "adaptations", 0, NULL},
        // the model evicted from the cache (capacity 1) before every run: loaded each time
        {"adapt (cold cache)", "POST", "/v1/models/sine/adapt", sup.s, 201, "id",
         "/v1/models/other/predict", "adaptations", 0, NULL},
        {"adapt-and-predict", "POST", "/v1/models/sine/predict", inline_sup.s, 200, "y", NULL, NULL,
         0, NULL},
        {"predict (adaptation)", "POST", adapt_predict, "{\"x\":[[0.5],[1.5]]}", 200, "y", NULL,
         NULL, 0, NULL},
        {"list models", "GET", "/v1/models", NULL, 200, "models", NULL, NULL, 0, NULL},
        {"get job", "GET", job_path, NULL, 200, "state", NULL, NULL, 0, NULL},
    };
    for (size_t i = 0; i < sizeof reqs / sizeof reqs[0]; i++) {
        char sql[96];
        long long rows0 = 0;
        if (reqs[i].table) {
            snprintf(sql, sizeof sql, "SELECT count(*) FROM %s", reqs[i].table);
            rows0 = db_int(db, sql);
        }
        fault_loop(&reqs[i], 1 << SRC_OURS | 1 << SRC_CJSON, 0);
        fault_loop(&reqs[i], 1 << SRC_SQLITE, 0);
        // and every allocation from the Nth on failing: the error path itself cannot allocate
        fault_loop(&reqs[i], 1 << SRC_OURS | 1 << SRC_CJSON | 1 << SRC_SQLITE, 1);
        cJSON_Delete(reqs[i].ref);
        // a row for every success the client was told of, and for nothing else
        if (reqs[i].table)
            ck_assert_msg(db_int(db, sql) - rows0 == reqs[i].successes,
                          "%s: %lld rows added for %ld successes", reqs[i].kind,
                          db_int(db, sql) - rows0, reqs[i].successes);
    }
    // what was stored is whole
    datasets_intact(db, "small", 2, 5);
    down();
    integrity_ok(db);
    hc_buf_free(&ds);
    hc_buf_free(&inline_sup);
    hc_buf_free(&sup);
}
END_TEST

int main(void) {
    curl_global_init(CURL_GLOBAL_DEFAULT);
    Suite *s = suite_create("fault");
    TCase *tc = tcase_create("fault");
    tcase_set_timeout(tc, 600);
    tcase_add_unchecked_fixture(tc, test_root_make, test_root_remove);
    tcase_add_test(tc, a_read_only_database_refuses_writes_with_503_and_serves_reads);
    tcase_add_test(tc, a_full_disk_is_507_leaves_nothing_behind_and_recovers_after_a_delete);
    tcase_add_test(tc, a_job_whose_model_does_not_fit_fails_with_the_reason_and_writes_no_version);
    tcase_add_test(tc, a_locked_database_is_503_with_retry_after_and_reads_still_work);
    tcase_add_test(tc, every_failed_allocation_in_request_handling_gives_a_clean_error);
    suite_add_tcase(s, tc);
    int failed = test_suite_run(s);
    curl_global_cleanup();
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
