/*
 * The command-line front of the metaserve binary: one entry point per command, called by main.c
 * through cli_main with argv[0] = the command name, returning the process exit status, and a few
 * helpers the commands share (cli.c). Nothing here depends on `real`, so the float commands
 * (train, eval) and the double one (metagrad, built with f64.h) share this header.
 *
 * Exit status convention: 0 success, 1 the work failed (numeric divergence, I/O), 2 bad usage or
 * invalid input. Commands print results on stdout and diagnostics on stderr; only main() exits.
 */
#ifndef METASERVE_CLI_CLI_H
#define METASERVE_CLI_CLI_H

#include <stddef.h>

#include "metaserve/core/status.h"

#define CLI_EXIT_OK         0
#define CLI_EXIT_FAIL       1
#define CLI_EXIT_USAGE      2
#define CLI_MAX_INPUT_BYTES ((size_t)256 << 20) // largest config, model or metagrad input read

/** `metaserve <command> ...`: usage with no command or --help, else runs the command named by
 *  argv[1] with argv + 1; returns the exit status. */
int cli_main(int argc, char **argv);
/** `metaserve train --config FILE --out MODEL [--quiet]`; returns the exit status. */
int cli_train(int argc, char **argv);
/** `metaserve eval --model MODEL [--tasks N] [--k LIST] [--steps LIST] [--seed S] [--query N]`. */
int cli_eval(int argc, char **argv);
/** `metaserve metagrad FILE|-` (double precision); returns the exit status. */
int cli_metagrad(int argc, char **argv);
/** `metaserve serve`: the HTTP service until SIGTERM. */
int cli_serve(int argc, char **argv);
/** `metaserve health`: exit 0 when the local service answers GET /livez with 200. */
int cli_health(int argc, char **argv);
/** `metaserve migrate --from FILE --to URI`: copies a SQLite database into an empty PostgreSQL
 *  database (cli_migrate.c). */
int cli_migrate(int argc, char **argv);

/**
 * Reads the whole file at path ("-": standard input) into *buf (NUL-terminated for convenience;
 * *len excludes the NUL; caller frees with free()). MS_ERR_IO naming the path, MS_ERR_TOO_LARGE
 * beyond max bytes, MS_ERR_NOMEM.
 */
MsStatus cli_read_file(const char *path, size_t max, char **buf, size_t *len, MsError *err);

/**
 * Replaces the file at path with data[0..len) atomically: writes and fsyncs a temporary file in
 * the same directory, then renames it over path; on failure the temporary is removed and path is
 * untouched. MS_ERR_IO naming the path.
 */
MsStatus cli_write_file_atomic(const char *path, const char *data, size_t len, MsError *err);

/** The directory part of path into dir (cap bytes): "." without a slash, "/" for "/x". */
void cli_parent_dir(const char *path, char *dir, size_t cap);

/**
 * Matches argv[*i] against option `name` ("--name VALUE" or "--name=VALUE"). Returns 1 and sets
 * *value (advancing *i past a separate value) on a match, 0 when argv[*i] is another argument,
 * -1 when the value is missing.
 */
int cli_option(int argc, char **argv, int *i, const char *name, const char **value);

/**
 * Parses a decimal integer in lo..hi (the whole string). Returns 0 on success, -1 otherwise.
 */
int cli_parse_int(const char *s, long long lo, long long hi, long long *out);

#endif
