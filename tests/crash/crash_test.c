/*
 * The kill-at-random crash test: the real `metaserve serve` binary (METASERVE_BIN) is killed with
 * SIGKILL at random moments while it trains, takes dataset uploads and writes models, and is
 * restarted on the same SQLite file each time, CRASH_KILLS times (default 24). What the server
 * acknowledged before a kill (a 2xx received by this driver) must survive it:
 *
 *   - every acknowledged dataset is listed, described as uploaded (GET /v1/datasets/{id}), and its
 *     stored arrays, read through the store library, are byte-identical to what
 *     dataset_pack_tasks makes of the uploaded tasks (the JSON carries float32 values printed
 *     with %.9g, which round-trip exactly);
 *   - an upload that was not acknowledged is either absent or complete and identical: a dataset
 *     this driver did not send in full, or with other content, must never be visible;
 *   - every acknowledged job is present and never failed or cancelled by a crash; a job seen
 *     succeeded stays succeeded with the same model version;
 *   - every model version is loadable (GET .../versions/{v} and .../weights, and the store reads
 *     it with its checksums), belongs to exactly one succeeded job, and every acknowledged alias
 *     points at the version it was given.
 *
 * After the last kill the jobs run to completion, and every job's final weights are compared bit
 * for bit with those of an uninterrupted reference run of the same config and seed (a second
 * server on its own file, started at the beginning). Finally, with the server stopped by
 * SIGTERM (exit status 0), PRAGMA integrity_check must say "ok" and PRAGMA foreign_key_check
 * must return no rows.
 *
 * Where kills land: just before each SIGKILL the server is stopped with SIGSTOP and inspected:
 * which requests of this driver are in flight, which jobs are running (read from the file), and
 * whether the server holds SQLite's WAL write lock (byte 120 of the -shm file, in /proc/locks),
 * i.e. is inside a write transaction. A running job whose recorded iteration equals its total is
 * between its last progress write and the transaction that writes its model version. Training
 * checkpoints every 4 iterations, so checkpoint writes take a large share of a job's time. Half
 * of the kills come at a uniformly random delay; a quarter wait (boundedly) for the write lock
 * (most often a checkpoint), and a quarter for a job's final model write, found by letting the
 * server run in 0.15 ms slices near a job's end. About one kill in eight hits the server while
 * it starts (recovering the WAL, requeueing running jobs).
 *
 * The machinery (traffic, landing, checks, one kill cycle) is in killtest.h, which the power-loss
 * test (tests/powerloss) shares; this file is the run.
 *
 * Environment: CRASH_KILLS (kills, default 24), CRASH_SEED (seed of the kill schedule and of the
 * upload contents; printed so that a failure can be replayed with the same schedule; timing
 * still varies), CRASH_DIR (where the temporary directory goes, default /tmp), CRASH_KEEP=1
 * (keep the directory; it is always kept on failure). Deadlines are generous and only turn a
 * hang into a failure; nothing asserts on durations. The wall time is printed as a figure.
 */
#define _GNU_SOURCE
#include "killtest.h"

/* ---- the run ---- */

static void start_server(Proc *p) {
    proc_start(p, g_db, 2, 4);
}

static void check_live(const HcClient *c) {
    check_all(c, g_db, 0);
}

int main(void) {
    kt_prog = "crash_test";
    double t_start = now_s();
    setvbuf(stdout, NULL, _IOLBF, 0); // progress lines and failures in order, as they happen
    int kills = 24;
    const char *ks = getenv("CRASH_KILLS");
    if (ks && *ks) kills = atoi(ks);
    if (kills < 1 || kills > 10000) fatal("CRASH_KILLS must be in 1..10000");
    uint64_t seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
    const char *ss = getenv("CRASH_SEED");
    if (ss && *ss) seed = strtoull(ss, NULL, 0);
    printf("crash_test: CRASH_SEED=%" PRIu64 " CRASH_KILLS=%d\n", seed, kills);
    fflush(stdout);
    uint64_t rng = seed;
    g_seed_short = 1 + (int)(cr_next(&rng) % 1000);
    g_seed_long = 1 + (int)(cr_next(&rng) % 1000);

    char dir[512], db[600], shm[620], ref_db[600];
    kt_files_make(dir, db, shm, ref_db, "CRASH_DIR", "crash", kills);

    // the uninterrupted reference: one worker, default checkpoint settings, never killed
    static Proc ref, srv;
    g_live[0] = &ref;
    g_live[1] = &srv;
    proc_start(&ref, ref_db, 1, 0);
    proc_wait_ready(&ref);
    {
        char cfg[1024];
        HcResp r;
        snprintf(cfg, sizeof cfg, CONFIG_FMT, "short", SHORT_ITERS, g_seed_short);
        if (hc_call(&ref.c, &r, "POST", "/v1/jobs", cfg) != 202) fatal("reference: %s", r.body);
        hc_free(&r);
        snprintf(cfg, sizeof cfg, CONFIG_FMT, "long", LONG_ITERS, g_seed_long);
        if (hc_call(&ref.c, &r, "POST", "/v1/jobs", cfg) != 202) fatal("reference: %s", r.body);
        hc_free(&r);
    }

    Landing land = {0};
    int n_write_lock = 0;
    const KillTest kt = {
        .db = db, .shm = shm, .srv = &srv, .start = start_server, .after_ready = check_live};
    for (int k = 0; k < kills; k++)
        kill_cycle(&kt, k, &rng, &land, &n_write_lock);

    // after the last kill: restart, check, let every job finish, check everything again
    proc_start(&srv, db, 2, 4);
    proc_wait_ready(&srv);
    check_all(&srv.c, db, 0);
    double t_fin = now_s();
    wait_jobs_done(&srv.c, FINISH_DEADLINE_S);
    g_verified_versions = 0; // counted afresh by the full check
    check_all(&srv.c, db, 1);
    printf("crash_test: all %d jobs finished %.1f s after the last restart\n", g_n_jobs,
           now_s() - t_fin);
    int st = proc_term(&srv);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        failf("metaserve serve exited with status 0x%x after SIGTERM; stderr:\n%s", st, srv.tail);

    // the reference
    {
        double t0 = now_s();
        for (;;) {
            HcResp r;
            hc_call(&ref.c, &r, "GET", "/v1/jobs?page_size=10", NULL);
            int done = 0;
            const cJSON *list = cJSON_GetObjectItemCaseSensitive(r.json, "jobs");
            for (const cJSON *it = list ? list->child : NULL; it; it = it->next)
                done += !strcmp(cJSON_GetObjectItemCaseSensitive(it, "state")->valuestring,
                                "succeeded");
            hc_free(&r);
            if (done == 2) break;
            if (now_s() - t0 > FINISH_DEADLINE_S) fatal("the reference jobs did not finish");
            sleep_s(0.1);
        }
        int rs = proc_term(&ref);
        if (!WIFEXITED(rs) || WEXITSTATUS(rs) != 0) failf("the reference server exited 0x%x", rs);
    }
    g_live[0] = g_live[1] = NULL;

    int same = compare_reference(db, ref_db);
    check_integrity(db);
    // the datasets once more, through the store alone, with no server running
    {
        Store *s = NULL;
        MsError err = {0};
        if (store_open(&s, db, &err) != MS_OK) fatal("store_open: %s", err.msg);
        int full = 0;
        for (int i = 0; i < g_n_up; i++)
            if (g_up[i].visible) full += dataset_content_equal(s, &g_up[i], g_up[i].id);
        store_close(s);
        g_verified_datasets = full;
    }

    int acked_up = 0, lost = 0, lost_absent = 0, not_sent = 0, acked_jobs = 0;
    for (int i = 0; i < g_n_up; i++) {
        acked_up += g_up[i].out == U_ACKED;
        lost += g_up[i].out == U_LOST;
        lost_absent += g_up[i].out == U_LOST && !g_up[i].visible;
        not_sent += g_up[i].out == U_NOT_SENT;
    }
    for (int i = 0; i < g_n_jobs; i++)
        acked_jobs += g_jobs[i].acked;
    printf("crash_test: kills %d: startup %d, upload in flight %d (body fully sent %d), "
           "job submit %d, training %d, checkpoint write %d, model write %d (alias PUT %d); "
           "SQLite write lock held at %d\n",
           kills, land.startup, land.upload, land.upload_sent, land.job_post, land.training,
           land.checkpoint, land.model_write, land.alias, n_write_lock);
    printf("crash_test: uploads: %d acknowledged, %d cut by a kill (%d absent, %d complete), "
           "%d never started; %d datasets byte-identical to what was sent\n",
           acked_up, lost, lost_absent, g_verified_unacked, not_sent, g_verified_datasets);
    printf("crash_test: jobs: %d acknowledged, %d committed without a reply (%d POSTs cut); "
           "%d model versions loadable; %d aliases as acknowledged (%d PUTs cut)\n",
           acked_jobs, g_n_jobs - acked_jobs, g_n_job_lost, g_verified_versions, g_n_alias,
           g_n_alias_lost);
    printf(
        "crash_test: final weights: %d of %d jobs bit-identical to the uninterrupted reference\n",
        same, g_n_jobs);
    (void)g_verified_aliases;
    printf("crash_test: wall %.1f s\n", now_s() - t_start);
    return kt_finish(dir, "CRASH_KEEP");
}
