/*
 * Server configuration: defaults, METASERVE_* environment variables, then command-line flags
 * (--name value or --name=value, the variable's name lower-cased without the prefix, '_' -> '-'),
 * each validated with an error naming the variable or flag. API keys come from
 * METASERVE_API_KEYS ("role:key,...") and/or a file named by METASERVE_API_KEYS_FILE (one
 * "role:key" or "role:sha256:<hex>" per line, '#' comments; keys.c parses both); the file's keys
 * are marked from_file, which server.c replaces on reload. The effective configuration is logged
 * with keys redacted.
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
}

typedef enum { T_INT, T_SIZE, T_DOUBLE, T_STR, T_ADDR, T_KEYS, T_KEYFILE } Type;

typedef struct {
    const char *env;  // METASERVE_...
    const char *flag; // --...
    Type type;
    size_t off;
    double lo, hi; // numeric range; T_STR: buffer size in hi
} Opt;

#define OFF(f) offsetof(ServerConfig, f)
static const Opt OPTS[] = {
    {"METASERVE_LISTEN", "--listen", T_ADDR, OFF(listen), 0, 64},
    {"METASERVE_PORT", "--port", T_INT, OFF(port), 0, 65535},
    {"METASERVE_DB", "--db", T_STR, OFF(db), 0, 512},
    {"METASERVE_REPLICA", "--replica", T_STR, OFF(replica), 0, 64},
    {"METASERVE_LEASE_MS", "--lease-ms", T_SIZE, OFF(lease_ms), 1000, 3600000},
    {"METASERVE_DB_READONLY", "--db-readonly", T_INT, OFF(db_read_only), 0, 1},
    {"METASERVE_DB_MAX_PAGES", "--db-max-pages", T_SIZE, OFF(db_max_pages), 0, 4294967294.0},
    {"METASERVE_WORKERS", "--workers", T_INT, OFF(workers), 0, 64},
    {"METASERVE_HTTP_THREADS", "--http-threads", T_INT, OFF(http_threads), 1, 256},
    {"METASERVE_MAX_BODY_BYTES", "--max-body-bytes", T_SIZE, OFF(max_body_bytes), 1024,
     4294967296.0},
    {"METASERVE_MAX_DATASET_BYTES", "--max-dataset-bytes", T_SIZE, OFF(max_dataset_bytes), 1024,
     17179869184.0},
    {"METASERVE_CONN_TIMEOUT_S", "--conn-timeout-s", T_INT, OFF(conn_timeout_s), 1, 3600},
    {"METASERVE_CONN_LIMIT", "--conn-limit", T_INT, OFF(conn_limit), 1, 100000},
    {"METASERVE_MAX_QUEUED_JOBS", "--max-queued-jobs", T_INT, OFF(max_queued_jobs), 1, 1000000},
    {"METASERVE_CACHE_MODELS", "--cache-models", T_INT, OFF(cache_models), 1, 100000},
    {"METASERVE_CHECKPOINT_S", "--checkpoint-s", T_DOUBLE, OFF(checkpoint_seconds), 0, 86400},
    {"METASERVE_CHECKPOINT_EVERY", "--checkpoint-every", T_SIZE, OFF(checkpoint_every), 0, 1e9},
    {"METASERVE_ADAPT_SWEEP_S", "--adapt-sweep-s", T_DOUBLE, OFF(adapt_sweep_s), 0.1, 86400},
    {"METASERVE_API_KEYS", "--api-keys", T_KEYS, 0, 0, 0},
    {"METASERVE_API_KEYS_FILE", "--api-keys-file", T_KEYFILE, 0, 0, 0},
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
        else if (o->off == OFF(checkpoint_every) || o->off == OFF(db_max_pages))
            *(int64_t *)p = (int64_t)d;
        else
            *(size_t *)p = (size_t)d;
        return MS_OK;
    }
    case T_STR:
    case T_ADDR:
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
        strcpy((char *)p, v);
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
            size_t n = strlen(OPTS[i].flag);
            if (strncmp(arg, OPTS[i].flag, n) == 0 && (arg[n] == '\0' || arg[n] == '=')) {
                o = &OPTS[i];
                v = arg[n] == '=' ? arg + n + 1 : (a + 1 < argc ? argv[++a] : NULL);
            }
        }
        if (!o) return ms_fail(err, MS_ERR_INVALID, "unknown option '%.40s'", arg);
        if (!v) return ms_fail(err, MS_ERR_INVALID, "%s: needs a value", o->flag);
        MsStatus st = set(c, o, v, o->flag, err);
        if (st != MS_OK) return st;
    }
    return MS_OK;
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
    char db[sizeof c->db + 4];
    db_redacted(db, sizeof db, c->db);
    int admins = 0, clients = 0;
    for (int i = 0; i < c->n_keys; i++)
        c->keys[i].role == ROLE_ADMIN ? admins++ : clients++;
    fprintf(f,
            "{\"level\":\"info\",\"msg\":\"config\",\"listen\":\"%s\",\"port\":%d,\"db\":\"%s\","
            "\"db_readonly\":%d,\"db_max_pages\":%lld,\"workers\":%d,\"http_threads\":%d,"
            "\"max_body_bytes\":%zu,\"max_dataset_bytes\":%zu,\"conn_timeout_s\":%d,"
            "\"conn_limit\":%d,\"max_queued_jobs\":%d,\"cache_models\":%d,"
            "\"checkpoint_s\":%g,\"checkpoint_every\":%lld,\"adapt_sweep_s\":%g,"
            "\"api_keys\":\"%d admin, %d client "
            "(redacted)\"}\n",
            c->listen, c->port, db, c->db_read_only, (long long)c->db_max_pages, c->workers,
            c->http_threads, c->max_body_bytes, c->max_dataset_bytes, c->conn_timeout_s,
            c->conn_limit, c->max_queued_jobs, c->cache_models, c->checkpoint_seconds,
            (long long)c->checkpoint_every, c->adapt_sweep_s, admins, clients);
    if (c->n_keys == 0)
        fprintf(f, "{\"level\":\"warn\",\"msg\":\"no API keys configured: every "
                   "route is open to anyone who can reach the port\"}\n");
    fflush(f);
}
