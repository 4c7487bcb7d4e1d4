/*
 * The tests' side of a PostgreSQL server started by tests/pg/pgctl.sh: CTest runs the
 * PostgreSQL variants of the suites with METASERVE_TEST_PG set to that server's URI (the
 * `metaserve` database). pgtest_fresh_db creates a new, empty database on it for one test and
 * writes its URI, so tests never see each other's rows; the databases go with the server.
 */
#ifndef METASERVE_TESTS_PGTEST_H
#define METASERVE_TESTS_PGTEST_H

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

// The server's URI, or NULL when the suite runs on SQLite.
static inline const char *pgtest_uri(void) {
    const char *u = getenv("METASERVE_TEST_PG");
    return u && *u ? u : NULL;
}

// Runs sql on the database at uri; returns 0 on success, else prints the error and returns -1.
static inline int pgtest_exec(const char *uri, const char *sql) {
    PGconn *c = PQconnectdb(uri);
    int ok = PQstatus(c) == CONNECTION_OK;
    if (ok) {
        PGresult *r = PQexec(c, sql);
        ok = PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK;
        if (!ok) fprintf(stderr, "pgtest: %s: %s", sql, PQresultErrorMessage(r));
        PQclear(r);
    } else {
        fprintf(stderr, "pgtest: cannot connect to %s: %s", uri, PQerrorMessage(c));
    }
    PQfinish(c);
    return ok ? 0 : -1;
}

// The first column of the first row of sql as an integer (-1 on any error).
static inline long long pgtest_int(const char *uri, const char *sql) {
    PGconn *c = PQconnectdb(uri);
    long long v = -1;
    if (PQstatus(c) == CONNECTION_OK) {
        PGresult *r = PQexec(c, sql);
        if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) > 0 && !PQgetisnull(r, 0, 0))
            v = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
        else
            fprintf(stderr, "pgtest: %s: %s", sql, PQresultErrorMessage(r));
        PQclear(r);
    }
    PQfinish(c);
    return v;
}

// Creates an empty database and writes its URI (the server's, with the database name replaced)
// to out. Returns 0, or -1 when the server is absent or refuses.
static inline int pgtest_fresh_db(char *out, size_t cap) {
    static int counter;
    const char *base = pgtest_uri();
    const char *path = base ? strstr(base, ":///") : NULL;
    const char *q = path ? strchr(path, '?') : NULL;
    if (!q) return -1;
    char name[64], sql[128];
    snprintf(name, sizeof name, "t_%ld_%d", (long)getpid(), counter++);
    snprintf(sql, sizeof sql, "CREATE DATABASE %s", name);
    if (pgtest_exec(base, sql) != 0) return -1;
    int n = snprintf(out, cap, "%.*s:///%s%s", (int)(path - base), base, name, q);
    return n > 0 && (size_t)n < cap ? 0 : -1;
}

#endif
