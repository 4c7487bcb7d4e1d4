/*
 * The command line of the metaserve binary (cli.h): the command table, the top-level usage text,
 * dispatch to a command, and the helpers the commands share (whole-file reads, atomic file
 * replacement, option matching). main.c does the process set-up and calls cli_main.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

typedef struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} Command;

static const Command COMMANDS[] = {
    {"serve", cli_serve, "run the HTTP service (METASERVE_* variables or flags)"},
    {"health", cli_health, "exit 0 when the local service answers GET /livez"},
    {"train", cli_train, "meta-train a model from a JSON config and write a model file"},
    {"eval", cli_eval, "evaluate a model file on fresh few-shot tasks"},
    {"metagrad", cli_metagrad, "one task's meta-gradient in double precision (JSON in, JSON out)"},
    {"migrate", cli_migrate, "copy a SQLite database into an empty PostgreSQL database"},
};
#define N_COMMANDS (sizeof COMMANDS / sizeof COMMANDS[0])

static void usage(FILE *f) {
    fprintf(f, "usage: metaserve <command> [options]\n\ncommands:\n");
    for (size_t i = 0; i < N_COMMANDS; i++)
        fprintf(f, "  %-10s %s\n", COMMANDS[i].name, COMMANDS[i].summary);
    fprintf(f, "\nRun `metaserve <command> --help` for the options of a command.\n");
}

int cli_main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return CLI_EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
        usage(stdout);
        return CLI_EXIT_OK;
    }
    for (size_t i = 0; i < N_COMMANDS; i++)
        if (strcmp(cmd, COMMANDS[i].name) == 0) return COMMANDS[i].run(argc - 1, argv + 1);
    fprintf(stderr, "metaserve: unknown command '%.40s'\n\n", cmd);
    usage(stderr);
    return CLI_EXIT_USAGE;
}

/* ---- helpers shared by the commands (cli.h) ---- */

MsStatus cli_read_file(const char *path, size_t max, char **buf, size_t *len, MsError *err) {
    *buf = NULL;
    *len = 0;
    int is_stdin = strcmp(path, "-") == 0;
    FILE *f = is_stdin ? stdin : fopen(path, "rb");
    if (!f) return ms_fail(err, MS_ERR_IO, "%s: %s", path, strerror(errno));
    MsStatus st = MS_OK;
    size_t cap = 0, n = 0;
    char *data = NULL;
    for (;;) {
        if (n + 1 >= cap) {
            // grow geometrically, one byte beyond max so that an oversize input is detected
            size_t want = cap ? 2 * cap : 64 * 1024;
            if (want > max + 2) want = max + 2;
            if (want <= n + 1) {
                st = ms_fail(err, MS_ERR_TOO_LARGE, "%s: larger than %zu bytes", path, max);
                goto done;
            }
            char *grown = realloc(data, want);
            if (!grown) {
                st = ms_fail(err, MS_ERR_NOMEM, "%s: out of memory reading the file", path);
                goto done;
            }
            data = grown;
            cap = want;
        }
        size_t got = fread(data + n, 1, cap - 1 - n, f);
        n += got;
        if (n > max) {
            st = ms_fail(err, MS_ERR_TOO_LARGE, "%s: larger than %zu bytes", path, max);
            goto done;
        }
        if (got == 0) break;
    }
    if (ferror(f)) {
        st = ms_fail(err, MS_ERR_IO, "%s: read error", path);
        goto done;
    }
    data[n] = '\0';
    *buf = data;
    *len = n;
    data = NULL;
done:
    free(data);
    if (!is_stdin) fclose(f);
    return st;
}

// Writes all of data to fd, retrying short writes and EINTR. 0 on success, -1 with errno.
static int write_all(int fd, const char *data, size_t len) {
    while (len > 0) {
        ssize_t w = write(fd, data, len);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        data += w;
        len -= (size_t)w;
    }
    return 0;
}

MsStatus cli_write_file_atomic(const char *path, const char *data, size_t len, MsError *err) {
    char tmp[4096];
    int n = snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    if (n < 0 || (size_t)n >= sizeof tmp) return ms_fail(err, MS_ERR_IO, "%s: path too long", path);
    unlink(tmp); // a leftover of a crashed run with the same pid
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL, 0644);
    if (fd < 0) return ms_fail(err, MS_ERR_IO, "%s: %s", tmp, strerror(errno));
    if (write_all(fd, data, len) != 0 || fsync(fd) != 0) {
        int e = errno;
        close(fd);
        unlink(tmp);
        return ms_fail(err, MS_ERR_IO, "%s: %s", tmp, strerror(e));
    }
    if (close(fd) != 0 || rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return ms_fail(err, MS_ERR_IO, "%s: %s", path, strerror(e));
    }
    // Make the rename itself durable: fsync the directory (best effort; some filesystems refuse).
    char dir[4096];
    cli_parent_dir(path, dir, sizeof dir);
    int dfd = open(dir, O_RDONLY);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    return MS_OK;
}

void cli_parent_dir(const char *path, char *dir, size_t cap) {
    const char *slash = strrchr(path, '/');
    if (!slash)
        snprintf(dir, cap, ".");
    else // up to the last slash, keeping the root "/" itself
        snprintf(dir, cap, "%.*s", (int)(slash - path + (slash == path)), path);
}

int cli_option(int argc, char **argv, int *i, const char *name, const char **value) {
    const char *a = argv[*i];
    size_t n = strlen(name);
    if (strncmp(a, "--", 2) != 0 || strncmp(a + 2, name, n) != 0) return 0;
    if (a[2 + n] == '=') {
        *value = a + 3 + n;
        return 1;
    }
    if (a[2 + n] != '\0') return 0;
    if (*i + 1 >= argc) return -1;
    *value = argv[++*i];
    return 1;
}

int cli_parse_int(const char *s, long long lo, long long hi, long long *out) {
    if (!s || !*s) return -1;
    char *end = NULL;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end != '\0' || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}
