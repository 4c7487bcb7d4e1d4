/*
 * `metaserve migrate --from FILE --to URI`: moves a single-process deployment onto PostgreSQL.
 * Opens the SQLite file read-only (it must be at this build's schema version: start the service
 * on it once to migrate an older file), connects to the PostgreSQL database and brings its schema
 * up to date, then copies every row in one transaction (store_copy, store.h): models with their
 * version numbers and counters, aliases, jobs (a running one is queued again, keeping its
 * checkpoint), loss curves, datasets and live adaptations, each array checked on the way.
 *
 * Success prints one JSON line of counts on stdout. A target that already holds rows is refused,
 * as is a source array that fails its checks; either way no row is written, the reason goes to
 * stderr and the exit status is 1 (2 for bad usage). The URI is never printed: it may hold a
 * password (METASERVE_DB_PASSWORD_FILE is read as by `serve`).
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "metaserve/store/store.h"

static void usage(FILE *f) {
    fprintf(f, "usage: metaserve migrate --from FILE --to postgresql://...\n"
               "\n"
               "Copies a SQLite database of the service into an empty PostgreSQL database, in one\n"
               "transaction: models (with their version numbers), aliases, jobs (running ones are\n"
               "queued again and resume from their checkpoints), loss curves, datasets and live\n"
               "adaptations. Every stored array is checked; a corrupt one stops the copy.\n"
               "  --from FILE   the SQLite file (opened read-only; stop the service first)\n"
               "  --to URI      postgresql:// or postgres:// URI (libpq syntax); the password may\n"
               "                come from METASERVE_DB_PASSWORD_FILE or PGPASSFILE\n"
               "Prints one JSON line of counts on stdout. Exit status: 0 copied, 1 refused or\n"
               "failed (nothing written), 2 bad usage.\n");
}

static int is_pg_uri(const char *s) {
    return strncmp(s, "postgresql://", 13) == 0 || strncmp(s, "postgres://", 11) == 0;
}

// Returns -1 when the arguments are good, else the exit status to return.
static int parse_args(const char **from, const char **to, int argc, char **argv) {
    *from = *to = NULL;
    for (int i = 1; i < argc; i++) {
        const char *v = NULL;
        int r;
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return CLI_EXIT_OK;
        } else if ((r = cli_option(argc, argv, &i, "from", &v)) != 0) {
            *from = v;
        } else if ((r = cli_option(argc, argv, &i, "to", &v)) != 0) {
            *to = v;
        } else {
            fprintf(stderr, "migrate: unknown argument '%.40s'\n", argv[i]);
            usage(stderr);
            return CLI_EXIT_USAGE;
        }
        if (r < 0) {
            fprintf(stderr, "migrate: %s needs a value\n", argv[i]);
            return CLI_EXIT_USAGE;
        }
    }
    if (!*from || !*to || !**from) {
        fprintf(stderr, "migrate: --from and --to are required\n");
        usage(stderr);
        return CLI_EXIT_USAGE;
    }
    if (is_pg_uri(*from)) {
        fprintf(stderr, "migrate: --from must be a SQLite file (copies from PostgreSQL are not "
                        "supported)\n");
        return CLI_EXIT_USAGE;
    }
    // Checked before opening: store_open would create a SQLite file at any other path.
    if (!is_pg_uri(*to)) {
        fprintf(stderr, "migrate: --to must be a postgresql:// or postgres:// URI\n");
        return CLI_EXIT_USAGE;
    }
    return -1;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int cli_migrate(int argc, char **argv) {
    const char *from_path, *to_uri;
    int rc = parse_args(&from_path, &to_uri, argc, argv);
    if (rc >= 0) return rc;
    MsError err = {0};
    Store *from = NULL, *to = NULL;
    StoreCopyReport r;
    rc = CLI_EXIT_FAIL;
    const StoreOptions ro = {.read_only = 1};
    if (store_open_opts(&from, from_path, &ro, &err) != MS_OK) {
        fprintf(stderr, "migrate: source: %s\n", err.msg);
        goto done;
    }
    if (store_open(&to, to_uri, &err) != MS_OK) {
        fprintf(stderr, "migrate: target: %s\n", err.msg);
        goto done;
    }
    double t0 = now_s();
    if (store_copy(from, to, &r, &err) != MS_OK) {
        fprintf(stderr, "migrate: %s; nothing was written to the target\n", err.msg);
        goto done;
    }
    double secs = now_s() - t0;
    printf("{\"models\":%" PRId64 ",\"model_names\":%" PRId64 ",\"aliases\":%" PRId64
           ",\"jobs\":%" PRId64 ",\"jobs_requeued\":%" PRId64 ",\"jobs_cancelled\":%" PRId64
           ",\"job_metrics\":%" PRId64 ",\"datasets\":%" PRId64 ",\"adaptations\":%" PRId64
           ",\"adaptations_expired\":%" PRId64 ",\"blob_bytes\":%" PRId64
           ",\"dataset_bytes\":%" PRId64 ",\"seconds\":%.3f}\n",
           r.models, r.model_names, r.aliases, r.jobs, r.jobs_requeued, r.jobs_cancelled,
           r.job_metrics, r.datasets, r.adaptations, r.adaptations_expired, r.blob_bytes,
           r.dataset_bytes, secs);
    rc = CLI_EXIT_OK;
done:
    store_close(to);
    store_close(from);
    return rc;
}
