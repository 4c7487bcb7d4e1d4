/*
 * The HTTP server: libmicrohttpd with its internal epoll thread pool, the v1 routes of
 * api/openapi.yaml, authentication, request ids, access logs and Prometheus metrics.
 *
 * Configuration comes from METASERVE_* environment variables with matching command-line flags
 * (server_config_load); every value is validated at start and the effective configuration can be
 * logged with secrets redacted (server_config_log).
 *
 * Usage:
 *     ServerConfig c; server_config_defaults(&c);
 *     if (server_config_load(&c, argc, argv, &err) != MS_OK) ...;
 *     Server *s; server_start(&s, &c, &err);   // also starts the job workers
 *     ... on SIGHUP: server_keys_reload(s, "SIGHUP", NULL); every second: server_keys_poll(s);
 *     ... on SIGTERM: server_drain(s); server_stop(s);
 */
#ifndef METASERVE_HTTP_SERVER_H
#define METASERVE_HTTP_SERVER_H

#include <stddef.h>
#include <stdio.h>
#include <stdint.h>

#include "metaserve/core/status.h"

#define SERVER_MAX_KEYS 32

/** One API key: its role and either the key itself or only its SHA-256 digest. */
typedef struct {
    int role;                 // 1 client, 2 admin
    char key[128];            // the key (16..127 printable characters); "" when hashed
    int hashed;               // 1: only digest is known (a "role:sha256:<hex>" entry)
    unsigned char digest[32]; // SHA-256 of the key when hashed (else computed at start)
    int from_file;            // 1: read from keys_file (replaced on reload); 0: fixed
} ServerKey;

typedef struct {
    char listen[64];           // METASERVE_LISTEN, --listen: address (default 0.0.0.0)
    int port;                  // METASERVE_PORT, --port (default 8080; 0: ephemeral)
    char db[512];              // METASERVE_DB, --db: SQLite path (default metaserve.db) or a
                               // postgresql:// URI (several replicas share that database)
    char replica[64];          // METASERVE_REPLICA: lease owner name ("": <hostname>:<pid>)
    int64_t lease_ms;          // METASERVE_LEASE_MS: job lease on PostgreSQL (default 15000)
    int db_read_only;          // METASERVE_DB_READONLY: 1 serves the file read-only (default 0)
    int64_t db_max_pages;      // METASERVE_DB_MAX_PAGES: file size cap in 4 KiB pages (0: none)
    int workers;               // METASERVE_WORKERS, --workers: training threads (default 1)
    int train_threads;         // METASERVE_TRAIN_THREADS: threads per job without "threads" (1)
    int max_train_threads;     // METASERVE_MAX_TRAIN_THREADS: cap per job (default: cores)
    int http_threads;          // METASERVE_HTTP_THREADS, --http-threads (default: cores)
    size_t max_body_bytes;     // METASERVE_MAX_BODY_BYTES, --max-body-bytes (default 64 MiB)
    size_t max_dataset_bytes;  // METASERVE_MAX_DATASET_BYTES: a safetensors dataset upload
                               // (POST /v1/datasets, application/octet-stream; default 1 GiB)
    int conn_timeout_s;        // METASERVE_CONN_TIMEOUT_S (default 30)
    int conn_limit;            // METASERVE_CONN_LIMIT (default 1024)
    int max_queued_jobs;       // METASERVE_MAX_QUEUED_JOBS (default 100)
    int cache_models;          // METASERVE_CACHE_MODELS: versions kept in memory (default 64)
    double checkpoint_seconds; // METASERVE_CHECKPOINT_S (default 10)
    int64_t checkpoint_every;  // METASERVE_CHECKPOINT_EVERY: iterations (default 1000)
    double adapt_sweep_s;      // METASERVE_ADAPT_SWEEP_S: expired-adaptation sweep (default 10)
    int open;                  // METASERVE_OPEN: 1 answers non-loopback clients without keys
    int max_streams;           // METASERVE_MAX_STREAMS: open job event streams (default 64)
    int sse_heartbeat_ms;      // METASERVE_SSE_HEARTBEAT_MS: comment heartbeat (default 15000)
    int n_keys;                // METASERVE_API_KEYS "role:key,..." and/or METASERVE_API_KEYS_FILE
    ServerKey keys[SERVER_MAX_KEYS];
    char keys_file[512]; // METASERVE_API_KEYS_FILE, --api-keys-file ("": none); re-read by
                         // server_keys_reload and server_keys_poll
} ServerConfig;

void server_config_defaults(ServerConfig *c);
/** Applies the environment, then flags (--name value or --name=value) from argv; MS_ERR_INVALID
 *  naming the variable or flag on a bad value. */
MsStatus server_config_load(ServerConfig *c, int argc, char **argv, MsError *err);
/** Writes the effective configuration as one JSON line to f, keys redacted. */
void server_config_log(const ServerConfig *c, FILE *f);
/** Writes the settings table (config.c) as `serve --help` text, or with markdown set as the
 *  README's Configuration table. */
void server_config_help(FILE *f, int markdown);

typedef struct Server Server;

/** Opens and migrates the database, starts the job workers and the HTTP daemon. */
MsStatus server_start(Server **out, const ServerConfig *c, MsError *err);
/** The bound port (useful with port 0). */
int server_port(const Server *s);
/**
 * Re-reads the key file (c->keys_file) and swaps the API key set atomically: a request whose
 * headers arrived before the swap finishes under the set it started with, later ones see the new
 * set. Keys that did not come from the file (METASERVE_API_KEYS, --api-keys) cannot be reloaded:
 * they are kept, and the log says so. A file that cannot be read or has a malformed line, or one
 * that holds no key while the current set has some (it would open every route), changes nothing.
 * Logs one JSON line on stderr with the outcome; trigger ("SIGHUP", ...) is named in it.
 * Returns MS_OK when the set was replaced or there is no file, else the failure (err says why).
 * Safe to call from any thread, concurrently with requests and with server_keys_poll.
 */
MsStatus server_keys_reload(Server *s, const char *trigger, MsError *err);
/**
 * Checks the key file's identity (device, inode, size, modification and change times) against
 * the one last read; when it differs and has not changed since the previous call, reloads as
 * server_keys_reload does (trigger "file change"). Call about once a second: a change is then
 * picked up within two calls of the last write. Returns 1 when it reloaded (or tried to).
 */
int server_keys_poll(Server *s);
/** Readiness false and new jobs refused (503); running jobs keep going until server_stop. */
void server_drain(Server *s);
/** Stops accepting, lets in-flight requests finish, checkpoints running jobs back to the queue,
 *  closes the database. Accepts NULL. */
void server_stop(Server *s);

#endif
