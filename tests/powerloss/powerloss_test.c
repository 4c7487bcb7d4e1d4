/*
 * The power-loss test: the crash test's kill-at-random loop (tests/crash/killtest.h) run against
 * metaserve_powerloss, the server built with the power-loss VFS (powerloss_vfs.c), which holds
 * every write in memory until SQLite syncs it. A SIGKILL of that process therefore loses exactly
 * what a power cut would: everything not yet fsynced. Every other start uses its torn mode,
 * which also leaves torn fragments of unsynced writes on disk.
 *
 * Traffic in each cycle: rate-limited dataset uploads, job submits, an alias move, the job
 * poller (killtest.h), and adaptations (POST /v1/models/short@V/adapt with one of N_SETS fixed
 * support sets, on the newest short version seen succeeded); two workers train with a
 * checkpoint every 4 iterations. After every kill, with no server running, the file is opened
 * with the normal unix VFS (read-only, so that the next start recovers the WAL itself) and:
 *
 *   - PRAGMA integrity_check is "ok" and PRAGMA foreign_key_check returns no rows;
 *   - every acknowledged dataset (201) is present, its arrays byte-identical to the upload;
 *   - every acknowledged job (202) is present, its stored config byte-identical to the
 *     reference's job of the same kind, and not failed or cancelled;
 *   - every model version seen (a job reported succeeded) is present, belongs to that job, and its
 *     weights are bit-identical to the uninterrupted reference run's;
 *   - every acknowledged alias (200) points at its version;
 *   - every acknowledged adaptation (201) is present, for the version it named, and its
 *     parameters and losses are bit-identical to the reference's adaptation with that support
 *     set (every short version has the reference's weights, so adapting any of them gives the
 *     same result).
 *
 * Then the server restarts on the power-loss VFS and the crash test's live checks run over HTTP
 * (listings, unacknowledged uploads absent or complete, versions loadable). The first kill whose
 * offline check fails ends the loop: the guarantee is broken and the output names what was lost.
 * After the last kill the normal binary finishes every job on the same file; each job's weights
 * must be bit-identical to the reference's, and the server must stop cleanly on SIGTERM.
 *
 * The reference runs first, on its own file, with the normal binary and never killed: the short
 * and long jobs, then one adaptation per support set on short@1.
 *
 * Environment: POWERLOSS_KILLS (default 30), POWERLOSS_SEED (the schedule, the upload contents,
 * the support sets and the torn writes; printed), POWERLOSS_SYNCHRONOUS=NORMAL (run the server at
 * synchronous=NORMAL without the group-commit barrier: the test must then fail; FULL runs it
 * with one fsync per commit instead), POWERLOSS_DIR (default /tmp), POWERLOSS_KEEP=1
 * (keep the directory; kept anyway on failure). METASERVE_BIN and METASERVE_POWERLOSS_BIN are the
 * two binaries (CTest sets them). The wall time is printed as a figure, never asserted on.
 */
#define _GNU_SOURCE
#include <math.h>

#include "killtest.h"

#define N_SETS           4  // distinct support sets
#define K_SUPPORT        10 // points in a support set
#define ADAPTS_PER_CYCLE 4  // adaptation requests in a cycle
#define TTL_S            86400

/* ---- adaptations: sent, acknowledged (under g_mu) ---- */

typedef struct {
    char id[STORE_ID_MAX];
    int set;     // support set
    int version; // short@version it adapted
} AdaptRec;

static AdaptRec *g_adapt; // acknowledged adaptations
static int g_n_adapt, g_cap_adapt;
static int g_n_adapt_lost;           // requests cut by a kill
static char g_support[N_SETS][1024]; // the request bodies

// Support set i: K_SUPPORT points of y = a sin(x - p), a in [0.1, 5), p in [0, pi), x in [-5, 5)
// (the sinusoid family), drawn from rng; floats printed with %.9g.
static void support_body(char *out, size_t cap, uint64_t *rng) {
    double a = cr_range(rng, 0.1, 5.0), p = cr_range(rng, 0.0, 3.14159265358979);
    float x[K_SUPPORT], y[K_SUPPORT];
    for (int i = 0; i < K_SUPPORT; i++) {
        x[i] = (float)cr_range(rng, -5.0, 5.0);
        y[i] = (float)(a * sin((double)x[i] - p));
    }
    size_t k = (size_t)snprintf(out, cap, "{\"support\":{\"x\":[");
    for (int i = 0; i < K_SUPPORT; i++)
        k += (size_t)snprintf(out + k, cap - k, "%s[%.9g]", i ? "," : "", (double)x[i]);
    k += (size_t)snprintf(out + k, cap - k, "],\"y\":[");
    for (int i = 0; i < K_SUPPORT; i++)
        k += (size_t)snprintf(out + k, cap - k, "%s[%.9g]", i ? "," : "", (double)y[i]);
    snprintf(out + k, cap - k, "]},\"ttl_s\":%d}", TTL_S);
}

// POST .../adapt of support set `set` on short@version; the id of the 201, or NULL (r freed by
// the caller).
static const char *post_adapt(const HcClient *c, HcResp *r, int version, int set, long *status) {
    char path[96];
    snprintf(path, sizeof path, "/v1/models/short@%d/adapt", version);
    *status = hc_call(c, r, "POST", path, g_support[set]);
    const char *id = hc_str(r, "id");
    return *status == 201 && id && hc_num(r, "version") == version ? id : NULL;
}

typedef struct {
    Cycle *cy;
    double offset[ADAPTS_PER_CYCLE];
    int set[ADAPTS_PER_CYCLE];
} AdaptArg;

static AdaptArg g_adapt_arg; // one cycle at a time

static void *adapt_arg(Cycle *cy, int k, uint64_t *rng) {
    (void)k;
    g_adapt_arg.cy = cy;
    for (int i = 0; i < ADAPTS_PER_CYCLE; i++) {
        g_adapt_arg.offset[i] = cr_range(rng, 0.0, 2.0);
        g_adapt_arg.set[i] = (int)(cr_next(rng) % N_SETS);
    }
    // in order of their offsets
    for (int i = 1; i < ADAPTS_PER_CYCLE; i++)
        for (int j = i; j > 0 && g_adapt_arg.offset[j] < g_adapt_arg.offset[j - 1]; j--) {
            double o = g_adapt_arg.offset[j];
            g_adapt_arg.offset[j] = g_adapt_arg.offset[j - 1], g_adapt_arg.offset[j - 1] = o;
        }
    return &g_adapt_arg;
}

// Adapts on the newest short version seen succeeded (none yet: nothing is sent).
static void *adapt_main(void *arg) {
    AdaptArg *a = arg;
    for (int i = 0; i < ADAPTS_PER_CYCLE; i++) {
        wait_until(a->cy, a->offset[i]);
        pthread_mutex_lock(&g_mu);
        int v = 0;
        for (int j = 0; j < g_n_jobs; j++)
            if (!g_jobs[j].is_long && g_jobs[j].succeeded && g_jobs[j].version > v)
                v = g_jobs[j].version;
        int go = v > 0 && !a->cy->stop;
        pthread_mutex_unlock(&g_mu);
        if (!go) continue;
        HcResp r;
        long s;
        const char *id = post_adapt(&a->cy->c, &r, v, a->set[i], &s);
        pthread_mutex_lock(&g_mu);
        if (id) {
            if (g_n_adapt == g_cap_adapt) {
                g_cap_adapt = g_cap_adapt ? 2 * g_cap_adapt : 64;
                g_adapt = realloc(g_adapt, (size_t)g_cap_adapt * sizeof *g_adapt);
                if (!g_adapt) fatal("out of memory");
            }
            AdaptRec *ar = &g_adapt[g_n_adapt++];
            snprintf(ar->id, sizeof ar->id, "%s", id);
            ar->set = a->set[i];
            ar->version = v;
        } else {
            g_n_adapt_lost++;
            if (s > 0) failf("POST adapt on short@%d: status %ld: %.300s", v, s, r.body);
        }
        pthread_mutex_unlock(&g_mu);
        hc_free(&r);
    }
    return NULL;
}

/* ---- the reference ---- */

static StoreModel g_ref_model[2];           // short@1, long@1 of the reference
static char *g_ref_config[2];               // their jobs' stored configs
static StoreAdaptation g_ref_adapt[N_SETS]; // one adaptation of short@1 per support set

// Runs the reference (normal binary, never killed) to completion on ref_db and loads it.
static void run_reference(const char *ref_db) {
    static Proc ref;
    g_live[0] = &ref;
    proc_start(&ref, ref_db, 2, 0);
    proc_wait_ready(&ref);
    char cfg[1024], ids[2][STORE_ID_MAX];
    for (int k = 0; k < 2; k++) {
        HcResp r;
        snprintf(cfg, sizeof cfg, CONFIG_FMT, k ? "long" : "short", k ? LONG_ITERS : SHORT_ITERS,
                 k ? g_seed_long : g_seed_short);
        const char *id =
            hc_call(&ref.c, &r, "POST", "/v1/jobs", cfg) == 202 ? hc_str(&r, "id") : NULL;
        if (!id) fatal("reference: %s", r.body);
        snprintf(ids[k], sizeof ids[k], "%s", id);
        hc_free(&r);
    }
    double t0 = now_s();
    for (int k = 0; k < 2; k++) {
        char path[96];
        snprintf(path, sizeof path, "/v1/jobs/%s", ids[k]);
        for (;;) {
            HcResp r;
            hc_call(&ref.c, &r, "GET", path, NULL);
            const char *st = hc_str(&r, "state");
            int done = st && !strcmp(st, "succeeded");
            if (st && (!strcmp(st, "failed") || !strcmp(st, "cancelled")))
                fatal("reference job %s: %s", ids[k], r.body);
            hc_free(&r);
            if (done) break;
            if (now_s() - t0 > FINISH_DEADLINE_S) fatal("the reference jobs did not finish");
            sleep_s(0.1);
        }
    }
    char aid[N_SETS][STORE_ID_MAX];
    for (int i = 0; i < N_SETS; i++) {
        HcResp r;
        long s;
        const char *id = post_adapt(&ref.c, &r, 1, i, &s);
        if (!id) fatal("reference adaptation %d: %ld %s", i, s, r.body);
        snprintf(aid[i], sizeof aid[i], "%s", id);
        hc_free(&r);
    }
    int rs = proc_term(&ref);
    if (!WIFEXITED(rs) || WEXITSTATUS(rs) != 0) fatal("the reference server exited 0x%x", rs);
    g_live[0] = NULL;
    Store *s = NULL;
    MsError err = {0};
    if (store_open(&s, ref_db, &err) != MS_OK) fatal("store_open %s: %s", ref_db, err.msg);
    for (int k = 0; k < 2; k++) {
        StoreJob j;
        if (store_model_get(s, k ? "long" : "short", 1, &g_ref_model[k], &err) != MS_OK ||
            store_job_get(s, ids[k], &j, &err) != MS_OK)
            fatal("reference %s: %s", k ? "long" : "short", err.msg);
        if (!(g_ref_config[k] = strdup(j.config))) fatal("out of memory");
        store_job_free(&j);
    }
    for (int i = 0; i < N_SETS; i++)
        if (store_adaptation_get(s, aid[i], &g_ref_adapt[i], &err) != MS_OK)
            fatal("reference adaptation %d: %s", i, err.msg);
    store_close(s);
    size_t nonzero = 0;
    for (size_t i = 0; i < g_ref_model[1].n_params; i++)
        nonzero += g_ref_model[1].params[i] != 0;
    if (nonzero < g_ref_model[1].n_params / 2) fatal("the reference weights are mostly zero");
    for (int i = 1; i < N_SETS; i++)
        if (!memcmp(g_ref_adapt[i].params, g_ref_adapt[0].params,
                    g_ref_adapt[0].n_params * sizeof(float)))
            fatal("reference adaptations %d and 0 are equal: the support sets do not matter", i);
    printf("%s: reference: short@1 and long@1 (%zu parameters), %d adaptations of short@1\n",
           kt_prog, g_ref_model[1].n_params, N_SETS);
}

/* ---- the check with no server running ---- */

static long g_items_checked; // acknowledged items found intact, summed over every offline check
static int g_kills_checked;

static int floats_equal(const float *a, size_t na, const float *b, size_t nb) {
    return na == nb && (na == 0 || memcmp(a, b, na * sizeof *a) == 0);
}

// Datasets: every acknowledged one present and byte-identical; nothing else but complete uploads.
static void offline_datasets(Store *st, int k) {
    for (int i = 0; i < g_n_up; i++) {
        Upload *u = &g_up[i];
        if (u->out != U_ACKED) continue;
        StoreDataset d;
        MsError err = {0};
        if (store_dataset_get(st, u->id, &d, NULL, &err) == MS_ERR_NOT_FOUND) {
            failf("kill %d: acknowledged dataset %s (%s, %zu bytes sent) is missing", k + 1, u->id,
                  u->name, u->body_bytes);
            continue;
        }
        store_dataset_free(&d);
        g_items_checked += dataset_content_equal(st, u, u->id);
    }
    StoreDataset *rows = NULL;
    int n = 0, more = 0;
    MsError err = {0};
    if (store_dataset_list(st, "", 100000, &rows, &n, &more, &err) != MS_OK)
        failf("kill %d: store_dataset_list: %s", k + 1, err.msg);
    for (int i = 0; i < n; i++) {
        Upload *u = upload_by_name(rows[i].name);
        if (!u || !u->body_sent)
            failf("kill %d: dataset %s (%s) was never sent in full", k + 1, rows[i].id,
                  rows[i].name);
        else if (u->out != U_ACKED)
            dataset_content_equal(st, u, rows[i].id); // committed, reply lost: must be whole
        store_dataset_free(&rows[i]);
    }
    free(rows);
}

// Jobs and their model versions.
static void offline_jobs(Store *st, int k) {
    for (int i = 0; i < g_n_jobs; i++) {
        JobRec *jr = &g_jobs[i];
        StoreJob j;
        MsError err = {0};
        MsStatus s = store_job_get(st, jr->id, &j, &err);
        if (s != MS_OK) {
            failf("kill %d: %s job %s is missing: %s", k + 1, jr->acked ? "acknowledged" : "listed",
                  jr->id, err.msg);
            continue;
        }
        int ok = 1;
        if (strcmp(j.config, g_ref_config[jr->is_long]) != 0)
            ok = 0, failf("kill %d: job %s: stored config differs from the submitted one: %.200s",
                          k + 1, jr->id, j.config);
        if (j.state == JOB_FAILED || j.state == JOB_CANCELLED)
            ok = 0, failf("kill %d: job %s is %s: %s", k + 1, jr->id, store_job_state_name(j.state),
                          j.error);
        if (jr->succeeded && (j.state != JOB_SUCCEEDED || j.result_version != jr->version))
            ok = 0,
            failf("kill %d: job %s was seen succeeded with version %d and is now %s "
                  "(version %d)",
                  k + 1, jr->id, jr->version, store_job_state_name(j.state), j.result_version);
        store_job_free(&j);
        g_items_checked += ok;
        if (!jr->succeeded) continue;
        const StoreModel *ref = &g_ref_model[jr->is_long];
        StoreModel m;
        if (store_model_get(st, ref->name, jr->version, &m, &err) != MS_OK) {
            failf("kill %d: model version %s@%d (job %s) is missing: %s", k + 1, ref->name,
                  jr->version, jr->id, err.msg);
            continue;
        }
        if (strcmp(m.job_id, jr->id) != 0)
            failf("kill %d: %s@%d belongs to job %s, not %s", k + 1, ref->name, jr->version,
                  m.job_id, jr->id);
        else if (!floats_equal(m.params, m.n_params, ref->params, ref->n_params))
            failf("kill %d: %s@%d: weights differ from the uninterrupted run", k + 1, ref->name,
                  jr->version);
        else
            g_items_checked++;
        store_model_free(&m);
    }
}

// Every stored version was written in one transaction with its job's success.
static void offline_versions(Store *st, int k) {
    const char *names[2] = {"short", "long"};
    for (int n = 0; n < 2; n++) {
        StoreModel *rows = NULL;
        int nv = 0;
        MsError err = {0};
        MsStatus s = store_model_versions(st, names[n], &rows, &nv, &err);
        if (s != MS_OK && s != MS_ERR_NOT_FOUND)
            failf("kill %d: store_model_versions: %s", k + 1, err.msg);
        for (int i = 0; i < nv; i++) {
            StoreJob j;
            if (store_job_get(st, rows[i].job_id, &j, &err) != MS_OK) {
                failf("kill %d: %s@%d: its job %s is missing", k + 1, names[n], rows[i].version,
                      rows[i].job_id);
            } else {
                if (j.state != JOB_SUCCEEDED || j.result_version != rows[i].version)
                    failf("kill %d: %s@%d: its job %s is %s with version %d", k + 1, names[n],
                          rows[i].version, rows[i].job_id, store_job_state_name(j.state),
                          j.result_version);
                store_job_free(&j);
            }
            store_model_free(&rows[i]);
        }
        free(rows);
    }
}

static void offline_aliases(Store *st, int k) {
    if (g_n_alias == 0) return;
    StoreAlias *rows = NULL;
    int n = 0;
    MsError err = {0};
    if (store_alias_list(st, "short", &rows, &n, &err) != MS_OK) {
        failf("kill %d: aliases of short: %s", k + 1, err.msg);
        return;
    }
    for (int i = 0; i < g_n_alias; i++) {
        int found = -1;
        for (int j = 0; j < n; j++)
            if (!strcmp(rows[j].alias, g_alias[i].alias)) found = rows[j].version;
        if (found != g_alias[i].version)
            failf("kill %d: acknowledged alias short@%s -> %d is %s%d", k + 1, g_alias[i].alias,
                  g_alias[i].version, found < 0 ? "missing" : "at ", found < 0 ? 0 : found);
        else
            g_items_checked++;
    }
    free(rows);
}

static void offline_adaptations(Store *st, int k) {
    for (int i = 0; i < g_n_adapt; i++) {
        const AdaptRec *ar = &g_adapt[i];
        const StoreAdaptation *ref = &g_ref_adapt[ar->set];
        StoreAdaptation a;
        MsError err = {0};
        if (store_adaptation_get(st, ar->id, &a, &err) != MS_OK) {
            failf("kill %d: acknowledged adaptation %s (short@%d, support set %d) is missing: %s",
                  k + 1, ar->id, ar->version, ar->set, err.msg);
            continue;
        }
        if (strcmp(a.model, "short") != 0 || a.version != ar->version)
            failf("kill %d: adaptation %s is of %s@%d, acknowledged for short@%d", k + 1, ar->id,
                  a.model, a.version, ar->version);
        else if (!floats_equal(a.params, a.n_params, ref->params, ref->n_params) ||
                 memcmp(&a.support_loss_before, &ref->support_loss_before, sizeof(double)) ||
                 memcmp(&a.support_loss_after, &ref->support_loss_after, sizeof(double)))
            failf("kill %d: adaptation %s differs from the reference's with support set %d", k + 1,
                  ar->id, ar->set);
        else
            g_items_checked++;
        store_adaptation_free(&a);
    }
}

// With no server running: the file through the normal VFS, read-only (the next start must
// recover the WAL by itself, and a read-only connection neither checkpoints nor removes it).
static void check_offline(const char *db, int k) {
    check_integrity(db);
    Store *st = NULL;
    MsError err = {0};
    if (store_open_opts(&st, db, &(StoreOptions){.read_only = 1}, &err) != MS_OK) {
        failf("kill %d: opening %s read-only: %s", k + 1, db, err.msg);
        return;
    }
    pthread_mutex_lock(&g_mu);
    offline_datasets(st, k);
    offline_jobs(st, k);
    offline_versions(st, k);
    offline_aliases(st, k);
    offline_adaptations(st, k);
    pthread_mutex_unlock(&g_mu);
    store_close(st);
    g_kills_checked++;
}

/* ---- the live check (server up) ---- */

// Over HTTP only: the driver's own connection to the file would not see the server's unsynced
// writes (they are in the server's memory) and would read a torn state.
static void check_live(const HcClient *c) {
    check_http(c, 0);
    pthread_mutex_lock(&g_mu);
    for (int i = 0; i < g_n_adapt; i++) {
        char path[96];
        snprintf(path, sizeof path, "/v1/adaptations/%s", g_adapt[i].id);
        HcResp r;
        if (hc_call(c, &r, "GET", path, NULL) != 200 || hc_num(&r, "version") != g_adapt[i].version)
            failf("GET %s: %ld %.200s", path, r.status, r.body);
        hc_free(&r);
    }
    pthread_mutex_unlock(&g_mu);
}

/* ---- the run ---- */

static uint64_t g_start_seed; // a new torn-write seed per start
static int g_starts;

static void start_powerloss(Proc *p) {
    char vfs[64];
    // every other start leaves torn fragments of unsynced writes on disk too
    if (g_starts++ % 2)
        snprintf(vfs, sizeof vfs, "METASERVE_TEST_VFS=torn:%" PRIu64, cr_next(&g_start_seed));
    else
        snprintf(vfs, sizeof vfs, "METASERVE_TEST_VFS=hold");
    proc_start_bin(p, getenv("METASERVE_POWERLOSS_BIN"), g_db, 2, 4, vfs);
}

int main(void) {
    kt_prog = "powerloss_test";
    double t_start = now_s();
    setvbuf(stdout, NULL, _IOLBF, 0);
    int kills = 30;
    const char *ks = getenv("POWERLOSS_KILLS");
    if (ks && *ks) kills = atoi(ks);
    if (kills < 1 || kills > 10000) fatal("POWERLOSS_KILLS must be in 1..10000");
    uint64_t seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
    const char *ss = getenv("POWERLOSS_SEED");
    if (ss && *ss) seed = strtoull(ss, NULL, 0);
    const char *sync = getenv("POWERLOSS_SYNCHRONOUS");
    const char *bin = getenv("METASERVE_POWERLOSS_BIN");
    if (!bin || !*bin) fatal("METASERVE_POWERLOSS_BIN is not set (the metaserve_powerloss binary)");
    printf("%s: POWERLOSS_SEED=%" PRIu64 " POWERLOSS_KILLS=%d synchronous=%s\n", kt_prog, seed,
           kills, sync && *sync ? sync : "the store's own (group commit)");
    uint64_t rng = seed;
    g_seed_short = 1 + (int)(cr_next(&rng) % 1000);
    g_seed_long = 1 + (int)(cr_next(&rng) % 1000);
    g_start_seed = cr_next(&rng);
    for (int i = 0; i < N_SETS; i++)
        support_body(g_support[i], sizeof g_support[i], &rng);

    char dir[512], db[600], shm[620], ref_db[600];
    kt_files_make(dir, db, shm, ref_db, "POWERLOSS_DIR", "powerloss", kills);

    run_reference(ref_db);

    static Proc srv;
    g_live[1] = &srv;
    Landing land = {0};
    int n_write_lock = 0, k_done = 0;
    const KillTest kt = {.db = db,
                         .shm = shm,
                         .srv = &srv,
                         .start = start_powerloss,
                         .after_ready = check_live,
                         .extra_arg = adapt_arg,
                         .extra_main = adapt_main};
    for (int k = 0; k < kills && !g_failures; k++, k_done++) {
        kill_cycle(&kt, k, &rng, &land, &n_write_lock);
        check_offline(db, k);
    }

    // after the last kill, power is back: the normal binary finishes every job on the same file
    int same = 0;
    if (!g_failures) {
        proc_start(&srv, db, 2, 4);
        proc_wait_ready(&srv);
        check_all(&srv.c, db, 0);
        double t_fin = now_s();
        wait_jobs_done(&srv.c, FINISH_DEADLINE_S);
        g_verified_versions = 0; // counted afresh by the full check
        check_all(&srv.c, db, 1);
        printf("%s: all %d jobs finished %.1f s after the last restart\n", kt_prog, g_n_jobs,
               now_s() - t_fin);
        int st = proc_term(&srv);
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
            failf("metaserve serve exited with status 0x%x after SIGTERM; stderr:\n%s", st,
                  srv.tail);
        g_live[1] = NULL;
        same = compare_reference(db, ref_db);
        check_offline(db, k_done - 1);
    }

    int acked_up = 0, cut = 0, acked_jobs = 0, succeeded = 0;
    for (int i = 0; i < g_n_up; i++) {
        acked_up += g_up[i].out == U_ACKED;
        cut += g_up[i].out == U_LOST;
    }
    for (int i = 0; i < g_n_jobs; i++) {
        acked_jobs += g_jobs[i].acked;
        succeeded += g_jobs[i].succeeded;
    }
    printf("%s: kills %d: startup %d, upload in flight %d (body fully sent %d), job submit %d, "
           "training %d, checkpoint write %d, model write %d (alias PUT %d); SQLite write lock "
           "held at %d\n",
           kt_prog, k_done, land.startup, land.upload, land.upload_sent, land.job_post,
           land.training, land.checkpoint, land.model_write, land.alias, n_write_lock);
    printf("%s: acknowledged: %d datasets (%d uploads cut), %d jobs (%d more committed without a "
           "reply), %d model versions, %d aliases, %d adaptations (%d requests cut)\n",
           kt_prog, acked_up, cut, acked_jobs, g_n_jobs - acked_jobs, succeeded, g_n_alias,
           g_n_adapt, g_n_adapt_lost);
    printf("%s: %d offline checks after a kill (normal VFS, server down): %ld acknowledged items "
           "found intact in all\n",
           kt_prog, g_kills_checked, g_items_checked);
    if (same || !g_failures)
        printf("%s: final weights: %d of %d jobs bit-identical to the uninterrupted reference\n",
               kt_prog, same, g_n_jobs);
    (void)g_verified_datasets, (void)g_verified_aliases; // the crash test's end-of-run figures
    printf("%s: wall %.1f s\n", kt_prog, now_s() - t_start);
    return kt_finish(dir, "POWERLOSS_KEEP");
}
