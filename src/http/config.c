/*
 * Server configuration: defaults, METASERVE_* environment variables, then command-line flags
 * (--name value or --name=value, the variable's name lower-cased without the prefix, '_' -> '-'),
 * each validated with an error naming the variable or flag. API keys come from
 * METASERVE_API_KEYS ("role:key,...") and/or a file named by METASERVE_API_KEYS_FILE (one
 * "role:key" or "role:sha256:<hex>" per line, '#' comments; keys.c parses both); the file's keys
 * are marked from_file, which server.c replaces on reload. The effective configuration is logged
 * with keys redacted. Every setting is one row of OPTS below, from which the flags, `serve
 * --help`, the log line and the README's table (`serve --help-markdown`) are all made.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "http.h"
#include "metaserve/http/keys.h"

void server_config_defaults(ServerConfig *c) {
    memset(c, 0, sizeof *c);
    strcpy(c->listen, "0.0.0.0");
    c->port = 8080;
    strcpy(c->db, "metaserve.db");
    c->workers = JOBPOOL_DEFAULT_WORKERS;
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    c->http_threads = n > 0 ? (int)n : 2;
    c->train_threads = 1;
    c->max_train_threads = n > 0 ? (n < TRAIN_MAX_THREADS ? (int)n : TRAIN_MAX_THREADS) : 1;
    c->max_body_bytes = (size_t)64 << 20;
    c->max_dataset_bytes = (size_t)1 << 30;
    c->conn_timeout_s = 30;
    c->conn_limit = 1024;
    c->max_queued_jobs = 100;
    c->cache_models = 64;
    c->checkpoint_seconds = JOBPOOL_DEFAULT_CHECKPOINT_S;
    c->checkpoint_every = JOBPOOL_DEFAULT_CHECKPOINT_EVERY;
    c->adapt_sweep_s = SWEEPER_DEFAULT_PERIOD_S;
    c->lease_ms = STORE_LEASE_MS_DEFAULT;
    c->max_streams = 64;
    c->sse_heartbeat_ms = 15000;
}

typedef enum {
    T_INT,
    T_SIZE,
    T_I64,
    T_DOUBLE,
    T_STR,
    T_ADDR,
    T_KEYS,
    T_KEYFILE,
    T_ENV,
    T_ENV_BOOL
} Type;

// The one table of settings: `serve`'s flags, the METASERVE_* variables, `serve --help`, the
// effective-configuration log line and the README's table (`serve --help-markdown`, which
// tests/cli/test_cli.c holds equal to README.md) are all made from it. A NULL flag is a setting
// read from the environment only (by the part of the process that needs it before the flags are
// parsed); T_ENV settings are validated here and read by their owner (off unused).
typedef struct {
    const char *env;  // METASERVE_...
    const char *flag; // --... (NULL: environment only)
    const char *arg;  // the flag's argument in --help
    Type type;
    size_t off;
    double lo, hi;    // numeric range; T_STR / T_ADDR: buffer size in hi
    const char *dflt; // the default as documented
    const char *help; // the README's "meaning" (Markdown)
} Opt;

#define OFF(f) offsetof(ServerConfig, f)
static const Opt OPTS[] = {
    {"METASERVE_LISTEN", "--listen", "ADDR", T_ADDR, OFF(listen), 0, 64, "`0.0.0.0`",
     "address to listen on: IPv4 (`0.0.0.0`, `127.0.0.1`), IPv6 (`::1`, `[::1]`; `::` also takes "
     "IPv4 clients where the system allows it) or a host name resolved at start (`localhost`; its "
     "IPv4 address first); anything else is a configuration error (exit 2). `metaserve health` "
     "asks 127.0.0.1, so an IPv6-only address leaves it without an answer"},
    {"METASERVE_PORT", "--port", "N", T_INT, OFF(port), 0, 65535, "`8080`",
     "port (0: any free port, logged at start)"},
    {"METASERVE_DB", "--db", "PATH|URI", T_STR, OFF(db), 0, 512, "`metaserve.db`",
     "SQLite file (created and migrated at start), or a `postgresql://…` / `postgres://…` URI "
     "(libpq syntax): several replicas share that database"},
    {"METASERVE_DB_PASSWORD_FILE", NULL, "PATH", T_ENV, 0, 0, 512, "none",
     "PostgreSQL: file whose first line is the password (libpq's `PGPASSFILE` works too); never "
     "put it in the URI of a shared config"},
    {"METASERVE_REPLICA", "--replica", "NAME", T_STR, OFF(replica), 0, 64, "`<hostname>:<pid>`",
     "PostgreSQL: this replica's name, recorded as the owner of the jobs it trains"},
    {"METASERVE_LEASE_MS", "--lease-ms", "MS", T_I64, OFF(lease_ms), 1000, 3600000, "`15000`",
     "PostgreSQL: a claimed job's lease, renewed by each progress write (about once a second); a "
     "replica silent this long (killed, cut off) loses its jobs to the others"},
    {"METASERVE_DB_READONLY", "--db-readonly", "0|1", T_INT, OFF(db_read_only), 0, 1, "`0`",
     "SQLite: `1` serves an existing, migrated file read-only: reads and predictions work, writes "
     "(uploads, jobs, adaptations, deletes) get 503, no training workers start"},
    {"METASERVE_DB_MAX_PAGES", "--db-max-pages", "N", T_I64, OFF(db_max_pages), 0, 4294967294.0,
     "`0`",
     "SQLite: cap on the file's size in 4 KiB pages (0: none); a write past it gets 507, as on a "
     "full disk"},
    {"METASERVE_WORKERS", "--workers", "N", T_INT, OFF(workers), 0, 64, "`1`",
     "training threads (0: accept jobs but train none)"},
    {"METASERVE_TRAIN_THREADS", "--train-threads", "N", T_INT, OFF(train_threads), 1, 64, "`1`",
     "threads per job whose config has no `threads`: its meta-batch's tasks computed at once, "
     "with the same weights for every count"},
    {"METASERVE_MAX_TRAIN_THREADS", "--max-train-threads", "N", T_INT, OFF(max_train_threads), 1,
     64, "cores",
     "threads per job at most (a config asking for more gets this many); workers "
     "times this is logged at start, with a warning when it exceeds the cores"},
    {"METASERVE_HTTP_THREADS", "--http-threads", "N", T_INT, OFF(http_threads), 1, 256, "cores",
     "HTTP thread pool"},
    {"METASERVE_MAX_BODY_BYTES", "--max-body-bytes", "N", T_SIZE, OFF(max_body_bytes), 1024,
     4294967296.0, "`67108864`", "largest request body (413 beyond)"},
    {"METASERVE_MAX_DATASET_BYTES", "--max-dataset-bytes", "N", T_SIZE, OFF(max_dataset_bytes),
     1024, 17179869184.0, "`1073741824`",
     "largest safetensors dataset upload (`POST /v1/datasets` with a binary body; 413 beyond)"},
    {"METASERVE_CONN_TIMEOUT_S", "--conn-timeout-s", "S", T_INT, OFF(conn_timeout_s), 1, 3600,
     "`30`", "idle connection timeout"},
    {"METASERVE_CONN_LIMIT", "--conn-limit", "N", T_INT, OFF(conn_limit), 1, 100000, "`1024`",
     "concurrent connections"},
    {"METASERVE_MAX_QUEUED_JOBS", "--max-queued-jobs", "N", T_INT, OFF(max_queued_jobs), 1, 1000000,
     "`100`", "queued jobs before 429"},
    {"METASERVE_MAX_STREAMS", "--max-streams", "N", T_INT, OFF(max_streams), 1, 100000, "`64`",
     "job event streams open at once (503 with `Retry-After: 5` beyond)"},
    {"METASERVE_SSE_HEARTBEAT_MS", "--sse-heartbeat-ms", "MS", T_INT, OFF(sse_heartbeat_ms), 100,
     600000, "`15000`", "a `: hb` comment on an event stream quiet this long"},
    {"METASERVE_CACHE_MODELS", "--cache-models", "N", T_INT, OFF(cache_models), 1, 100000, "`64`",
     "model versions kept in memory (LRU)"},
    {"METASERVE_CHECKPOINT_S", "--checkpoint-s", "S", T_DOUBLE, OFF(checkpoint_seconds), 0, 86400,
     "`10`", "seconds between training checkpoints"},
    {"METASERVE_CHECKPOINT_EVERY", "--checkpoint-every", "N", T_I64, OFF(checkpoint_every), 0, 1e9,
     "`1000`", "iterations between training checkpoints"},
    {"METASERVE_ADAPT_SWEEP_S", "--adapt-sweep-s", "S", T_DOUBLE, OFF(adapt_sweep_s), 0.1, 86400,
     "`10`", "seconds between sweeps that delete expired adaptations and empty the WAL"},
    {"METASERVE_API_KEYS", "--api-keys", "ROLE:KEY,...", T_KEYS, 0, 0, 0, "none",
     "`role:key,…` with role `admin` or `client`, keys 16..127 characters; fixed for the life of "
     "the process (a SIGHUP keeps them and logs so)"},
    {"METASERVE_API_KEYS_FILE", "--api-keys-file", "PATH", T_KEYFILE, 0, 0, 0, "none",
     "file of `role:key` or `role:sha256:<64 hex>` lines (`#` comments), the second holding the "
     "key's SHA-256 digest (`printf %s \"$KEY\" \\| sha256sum`); reloaded without a restart on "
     "SIGHUP and within about 2 s of a change; a file that does not parse keeps the keys in force "
     "(docs/operations.md, Security)"},
    {"METASERVE_OPEN", "--open", "0|1", T_INT, OFF(open), 0, 1, "`0`",
     "with no API keys and a listen address that is not loopback, the service answers loopback "
     "clients only (protected mode: others get 403, except `/livez` and `/readyz`); `1` opens "
     "every route to anyone who can reach the port"},
    {"METASERVE_BLAS_AUTOCORE", NULL, "0|1", T_ENV_BOOL, 0, 0, 1, "`1`",
     "`0` keeps OpenBLAS's own kernel choice (see Performance); read before the flags, so it has "
     "no flag"},
};
#define N_OPTS (sizeof OPTS / sizeof OPTS[0])

// Appends the entries of a "role:key,..." list; an error names the entry (1-based).
static MsStatus add_keys(ServerConfig *c, const char *v, const char *who, MsError *err) {
    int entry = 0;
    for (const char *s = v; *s;) {
        size_t n = strcspn(s, ",");
        ServerKey k;
        MsError why = {0};
        entry++;
        if (keys_parse_entry(&k, s, n, &why) != MS_OK)
            return ms_fail(err, MS_ERR_INVALID, "%s entry %d: %s", who, entry, why.msg);
        s += n + (s[n] == ',');
        if (!k.role) continue; // empty entry
        if (c->n_keys >= SERVER_MAX_KEYS)
            return ms_fail(err, MS_ERR_INVALID, "%s: at most %d keys", who, SERVER_MAX_KEYS);
        c->keys[c->n_keys++] = k;
    }
    return MS_OK;
}

// Reads the key file in place of any read before (the flag overrides the variable, as for every
// other setting); keys from METASERVE_API_KEYS / --api-keys stay.
static MsStatus set_key_file(ServerConfig *c, const char *path, const char *who, MsError *err) {
    if (strlen(path) == 0 || strlen(path) >= sizeof c->keys_file)
        return ms_fail(err, MS_ERR_INVALID, "%s: must be 1..%zu characters", who,
                       sizeof c->keys_file - 1);
    int k = 0;
    for (int i = 0; i < c->n_keys; i++)
        if (!c->keys[i].from_file) c->keys[k++] = c->keys[i];
    memset(c->keys + k, 0, (size_t)(c->n_keys - k) * sizeof c->keys[0]);
    c->n_keys = k;
    KeyFileId id;
    MsStatus st = keys_read_file(c->keys, &c->n_keys, SERVER_MAX_KEYS, path, who, &id, err);
    if (st != MS_OK) return st;
    strcpy(c->keys_file, path);
    return MS_OK;
}

MsStatus listen_resolve(const char *listen, int port, struct addrinfo **res, const char *who,
                        MsError *err) {
    *res = NULL;
    char host[64], svc[8];
    size_t n = strlen(listen);
    int bracketed = n >= 2 && listen[0] == '[' && listen[n - 1] == ']';
    if (bracketed) listen++, n -= 2;
    if (n == 0 || n >= sizeof host)
        return ms_fail(err, MS_ERR_INVALID, "%s: must be an address or a host name of 1..%zu bytes",
                       who, sizeof host - 1);
    memcpy(host, listen, n);
    host[n] = '\0';
    // a ':' makes an IPv6 literal (with its "%zone", if any), which is never looked up; a host
    // name is letters, digits, '.' and '-' (RFC 1123): anything else never reaches the resolver
    int v6 = strchr(host, ':') != NULL;
    for (const char *p = host; *p; p++) {
        char c = *p;
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                 c == '.' || c == '-' || (v6 && (c == ':' || c == '%' || c == '_'));
        if (!ok || (bracketed && !v6))
            return ms_fail(err, MS_ERR_INVALID, "%s: not an IPv4 or IPv6 address, nor a host name",
                           who);
    }
    snprintf(svc, sizeof svc, "%d", port);
    struct addrinfo hints = {.ai_family = v6 ? AF_INET6 : AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_NUMERICSERV | (v6 ? AI_NUMERICHOST : 0)};
    int rc = getaddrinfo(host, svc, &hints, res);
    if (rc != 0) {
        *res = NULL;
        return ms_fail(err, MS_ERR_INVALID,
                       "%s: not an IPv4 or IPv6 address, nor a host name that resolves (%s)", who,
                       rc == EAI_SYSTEM ? strerror(errno) : gai_strerror(rc));
    }
    return MS_OK;
}

static MsStatus set(ServerConfig *c, const Opt *o, const char *v, const char *who, MsError *err) {
    char *end;
    void *p = (char *)c + o->off;
    switch (o->type) {
    case T_INT:
    case T_SIZE:
    case T_I64:
    case T_DOUBLE: {
        errno = 0;
        double d = strtod(v, &end);
        if (*v == '\0' || *end != '\0' || errno || d < o->lo || d > o->hi ||
            (o->type != T_DOUBLE && d != (double)(long long)d))
            return ms_fail(err, MS_ERR_INVALID, "%s: must be a%s in %g..%g", who,
                           o->type == T_DOUBLE ? " number" : "n integer", o->lo, o->hi);
        if (o->type == T_INT)
            *(int *)p = (int)d;
        else if (o->type == T_DOUBLE)
            *(double *)p = d;
        else if (o->type == T_I64)
            *(int64_t *)p = (int64_t)d;
        else
            *(size_t *)p = (size_t)d;
        return MS_OK;
    }
    case T_STR:
    case T_ADDR:
    case T_ENV:
        if (strlen(v) == 0 || strlen(v) >= (size_t)o->hi)
            return ms_fail(err, MS_ERR_INVALID, "%s: must be 1..%d characters", who,
                           (int)o->hi - 1);
        if (o->type == T_ADDR) {
            // resolved now, so that an address the server could never listen on is a
            // configuration error; server_start resolves it again when it opens the socket
            struct addrinfo *res;
            MsStatus st = listen_resolve(v, 0, &res, who, err);
            if (st != MS_OK) return st;
            freeaddrinfo(res);
        }
        if (o->type != T_ENV) strcpy((char *)p, v);
        return MS_OK;
    case T_ENV_BOOL:
        if (strcmp(v, "0") != 0 && strcmp(v, "1") != 0)
            return ms_fail(err, MS_ERR_INVALID, "%s: must be 0 or 1", who);
        return MS_OK;
    case T_KEYS:
        return add_keys(c, v, who, err);
    case T_KEYFILE:
        return set_key_file(c, v, who, err);
    }
    return MS_OK;
}

MsStatus server_config_load(ServerConfig *c, int argc, char **argv, MsError *err) {
    for (size_t i = 0; i < N_OPTS; i++) {
        const char *v = getenv(OPTS[i].env);
        if (v) {
            MsStatus st = set(c, &OPTS[i], v, OPTS[i].env, err);
            if (st != MS_OK) return st;
        }
    }
    for (int a = 0; a < argc; a++) {
        const char *arg = argv[a];
        const Opt *o = NULL;
        const char *v = NULL;
        for (size_t i = 0; i < N_OPTS && !o; i++) {
            if (!OPTS[i].flag) continue;
            size_t n = strlen(OPTS[i].flag);
            if (strncmp(arg, OPTS[i].flag, n) == 0 && (arg[n] == '\0' || arg[n] == '=')) {
                o = &OPTS[i];
                v = arg[n] == '=' ? arg + n + 1 : (a + 1 < argc ? argv[++a] : NULL);
            }
        }
        if (!o) {
            // a variable read before the flags has no flag: say so rather than "unknown"
            for (size_t i = 0; i < N_OPTS; i++) {
                char want[64];
                snprintf(want, sizeof want, "--%s", OPTS[i].env + 10);
                for (char *q = want; *q; q++)
                    *q = *q == '_' ? '-' : (char)(*q >= 'A' && *q <= 'Z' ? *q + 32 : *q);
                size_t n = strlen(want);
                if (!OPTS[i].flag && strncmp(arg, want, n) == 0 &&
                    (arg[n] == '\0' || arg[n] == '='))
                    return ms_fail(err, MS_ERR_INVALID,
                                   "%s: has no flag; set the environment variable %s", want,
                                   OPTS[i].env);
            }
            return ms_fail(err, MS_ERR_INVALID, "unknown option '%.40s' (serve --help lists them)",
                           arg);
        }
        if (!v) return ms_fail(err, MS_ERR_INVALID, "%s: needs a value", o->flag);
        MsStatus st = set(c, o, v, o->flag, err);
        if (st != MS_OK) return st;
    }
    return MS_OK;
}

// The variable's name without METASERVE_, lower-cased: the key of the configuration log line.
static void log_key(char *out, size_t cap, const char *env) {
    snprintf(out, cap, "%s", env + 10);
    for (char *q = out; *q; q++)
        if (*q >= 'A' && *q <= 'Z') *q = (char)(*q + 32);
}

// Writes s as a JSON string's content (quotes and backslashes escaped, control bytes dropped).
static void json_chars(FILE *f, const char *s) {
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') fputc('\\', f);
        if ((unsigned char)*s >= 0x20) fputc(*s, f);
    }
}

// The Markdown of a help text as plain text: backticks dropped, "\|" is "|".
static void plain(FILE *f, const char *s) {
    for (; *s; s++) {
        if (*s == '`') continue;
        if (*s == '\\' && s[1] == '|') continue;
        fputc(*s, f);
    }
}

void server_config_help(FILE *f, int markdown) {
    if (markdown) {
        fprintf(f, "| variable | flag | default | meaning |\n|---|---|---|---|\n");
        for (size_t i = 0; i < N_OPTS; i++) {
            const Opt *o = &OPTS[i];
            fprintf(f, "| `%s` | ", o->env);
            if (o->flag)
                fprintf(f, "`%s %s`", o->flag, o->arg);
            else
                fprintf(f, "none");
            fprintf(f, " | %s | %s |\n", o->dflt, o->help);
        }
        return;
    }
    fprintf(f, "usage: metaserve serve [FLAG VALUE | FLAG=VALUE]...\n"
               "Each setting is a METASERVE_* environment variable and, unless marked, a flag;\n"
               "a flag overrides its variable. SIGHUP reloads the API key file; SIGTERM or\n"
               "SIGINT stops the service.\n\n");
    for (size_t i = 0; i < N_OPTS; i++) {
        const Opt *o = &OPTS[i];
        char left[64];
        if (o->flag)
            snprintf(left, sizeof left, "%s %s", o->flag, o->arg);
        else
            snprintf(left, sizeof left, "(variable only)");
        fprintf(f, "  %-28s %s, default ", left, o->env);
        plain(f, o->dflt);
        fprintf(f, "\n      ");
        plain(f, o->help);
        fprintf(f, "\n");
    }
}

// The database as logged: a URI's password (postgresql://user:secret@host/db) becomes "***".
static void db_redacted(char *out, size_t cap, const char *db) {
    const char *scheme = strstr(db, "://");
    const char *at = scheme ? strchr(scheme + 3, '@') : NULL;
    const char *colon = at ? memchr(scheme + 3, ':', (size_t)(at - scheme - 3)) : NULL;
    if (!colon) {
        snprintf(out, cap, "%s", db);
        return;
    }
    snprintf(out, cap, "%.*s***%s", (int)(colon + 1 - db), db, at);
}

void server_config_log(const ServerConfig *c, FILE *f) {
    fprintf(f, "{\"level\":\"info\",\"msg\":\"config\"");
    for (size_t i = 0; i < N_OPTS; i++) {
        const Opt *o = &OPTS[i];
        const void *p = (const char *)c + o->off;
        char key[64];
        log_key(key, sizeof key, o->env);
        fprintf(f, ",\"%s\":", key);
        switch (o->type) {
        case T_INT:
            fprintf(f, "%d", *(const int *)p);
            break;
        case T_SIZE:
            fprintf(f, "%zu", *(const size_t *)p);
            break;
        case T_I64:
            fprintf(f, "%lld", (long long)*(const int64_t *)p);
            break;
        case T_DOUBLE:
            fprintf(f, "%g", *(const double *)p);
            break;
        case T_STR:
        case T_ADDR: {
            char db[sizeof c->db + 4];
            if (o->off == OFF(db)) {
                db_redacted(db, sizeof db, c->db);
                p = db;
            }
            fputc('"', f);
            json_chars(f, p);
            fputc('"', f);
            break;
        }
        case T_ENV:
        case T_ENV_BOOL: {
            const char *v = getenv(o->env);
            if (v) {
                fputc('"', f);
                json_chars(f, v);
                fputc('"', f);
            } else {
                fprintf(f, "null");
            }
            break;
        }
        case T_KEYS: {
            int admins = 0, clients = 0;
            for (int k = 0; k < c->n_keys; k++)
                c->keys[k].role == ROLE_ADMIN ? admins++ : clients++;
            fprintf(f, "\"%d admin, %d client (redacted)\"", admins, clients);
            break;
        }
        case T_KEYFILE:
            if (c->keys_file[0]) {
                fputc('"', f);
                json_chars(f, c->keys_file);
                fputc('"', f);
            } else {
                fprintf(f, "null");
            }
            break;
        }
    }
    fprintf(f, "}\n");
    // The training budget: every worker may run a job on up to max_train_threads threads.
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    int dflt = c->workers *
               (c->train_threads > c->max_train_threads ? c->max_train_threads : c->train_threads);
    int most = c->workers * c->max_train_threads;
    fprintf(f,
            "{\"level\":\"%s\",\"msg\":\"training threads: %d by default and at most %d, "
            "for %d workers on %ld cores%s\",\"train_threads_default\":%d,"
            "\"train_threads_max\":%d,\"cores\":%ld}\n",
            most > cores ? "warn" : "info", dflt, most, c->workers, cores,
            most > cores ? ": jobs asking for more threads than the cores share them" : "", dflt,
            most, cores);
    if (c->n_keys == 0 && c->open)
        fprintf(f, "{\"level\":\"warn\",\"msg\":\"no API keys configured and METASERVE_OPEN=1: "
                   "every route is open to anyone who can reach the port\"}\n");
    else if (c->n_keys == 0)
        fprintf(f, "{\"level\":\"warn\",\"msg\":\"no API keys configured: unless the listen "
                   "address is loopback, only loopback clients are answered (protected mode; "
                   "set METASERVE_API_KEYS or METASERVE_API_KEYS_FILE, or METASERVE_OPEN=1)\"}\n");
    fflush(f);
}
