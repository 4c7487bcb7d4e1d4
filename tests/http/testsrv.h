/*
 * The real server started in-process for the HTTP-level suites (test_api, test_auth,
 * test_hostile, test_fault): on 127.0.0.1 with an ephemeral port and a SQLite file under the
 * test's temporary root (testroot.h; define TEST_ROOT_NAME before including), driven with the
 * libcurl client of httpc.h. With METASERVE_TEST_PG set (the suites' *_pg variants), the
 * database is instead a new, empty PostgreSQL database on that server (tests/pg/pgtest.h). The
 * caller fills what its suite needs into the ServerConfig that testsrv_config prepares, then starts
 * it with testsrv_start.
 */
#ifndef METASERVE_TESTS_TESTSRV_H
#define METASERVE_TESTS_TESTSRV_H

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../pg/pgtest.h"
#include "httpc.h"
#include "metaserve/http/server.h"
#include "testroot.h"

// Fills c: the defaults, listening on 127.0.0.1, port 0 (ephemeral), the database file db.
static inline void testsrv_config(ServerConfig *c, const char *db) {
    server_config_defaults(c);
    strcpy(c->listen, "127.0.0.1");
    c->port = 0;
    snprintf(c->db, sizeof c->db, "%s", db);
}

static char testsrv_db[512]; // the database of the last testsrv_config_in_new_dir

// Makes a fresh directory <root>/t_XXXXXX (its path to dir, n bytes) and fills c as
// testsrv_config does, with the database file dir/db_name (or a new PostgreSQL database); its
// path or URI is also left in testsrv_db.
static inline void testsrv_config_in_new_dir(ServerConfig *c, char *dir, size_t n,
                                             const char *db_name) {
    test_root_subdir(dir, n, "t");
    if (pgtest_uri()) {
        ck_assert_msg(pgtest_fresh_db(testsrv_db, sizeof testsrv_db) == 0,
                      "no fresh PostgreSQL database");
    } else {
        int len = snprintf(testsrv_db, sizeof testsrv_db, "%s/%s", dir, db_name);
        ck_assert_msg(len > 0 && (size_t)len < sizeof c->db, "database path too long");
    }
    testsrv_config(c, testsrv_db);
}

/**
 * Starts *srv with c and points client at it (no key). The test fails when the server does not
 * start or has no port. Returns the port.
 */
static inline int testsrv_start(Server **srv, HcClient *client, const ServerConfig *c) {
    MsError err = {0};
    ck_assert_msg(server_start(srv, c, &err) == MS_OK, "server_start: %s", err.msg);
    int port = server_port(*srv);
    ck_assert_int_gt(port, 0);
    snprintf(client->base, sizeof client->base, "http://127.0.0.1:%d", port);
    client->key = NULL;
    return port;
}

// Stops *srv (NULL afterwards); with dir non-NULL, then removes that directory (the test fails
// when it cannot).
static inline void testsrv_stop(Server **srv, const char *dir) {
    server_stop(*srv);
    *srv = NULL;
    if (!dir) return;
    char cmd[192];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
}

// The reply r is a problem document of status st and type slug (hc_problem_mismatch).
#define ck_problem(r, st, slug)                                                                    \
    do {                                                                                           \
        const char *why_ = hc_problem_mismatch((r), (st), (slug));                                 \
        ck_assert_msg(why_ == NULL, "%s", why_);                                                   \
    } while (0)

// The problem's detail contains text (the field it names, or the cause it gives).
#define ck_detail_has(r, text)                                                                     \
    do {                                                                                           \
        const char *d_ = hc_str((r), "detail");                                                    \
        ck_assert_msg(d_ != NULL && strstr(d_, (text)) != NULL, "detail '%s' does not say %s",     \
                      d_ ? d_ : "(none)", (text));                                                 \
    } while (0)

#endif
