/*
 * The durable store: models (named, numbered immutable versions, movable aliases), meta-training
 * jobs (a durable queue with checkpoints and loss curves), uploaded datasets and adaptations.
 * This header is the interface, with two backends behind it in src/store/: one SQLite file
 * (WAL; the embedded default, one process) and PostgreSQL (store_pg*.c; several replicas share
 * one database, and running jobs are leased to the replica that claimed them). Each public
 * function checks its arguments once, then runs the backend's code. No other area includes
 * sqlite3.h or libpq-fe.h or writes SQL.
 *
 * Threading: a Store is one connection and belongs to one thread at a time; every thread opens
 * its own. Writes are short transactions (BEGIN IMMEDIATE with a busy timeout on SQLite).
 *
 * Arrays: parameters and data are float32 (the service's precision), stored as blobs with a
 * header (magic, format version, element type, count, checksum) verified on every read: a
 * corrupted blob is reported as MS_ERR_DB with "corrupt" in the message and is never returned.
 *
 * Ownership: strings and arrays in a returned struct are heap copies owned by the caller and
 * released with the matching *_free function. Input pointers are borrowed for the call only.
 *
 * Usage:
 *     Store *st; if (store_open(&st, "metaserve.db", &err) != MS_OK) ...;
 *     char id[STORE_ID_MAX]; store_job_create(st, config_json, 70000, 100, id, &err);
 *     ...
 *     store_close(st);
 */
#ifndef METASERVE_STORE_STORE_H
#define METASERVE_STORE_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "metaserve/core/status.h"

#define STORE_ID_MAX         40  // ids are 32 lowercase hex characters plus NUL (room to spare)
#define STORE_NAME_MAX       128 // names and aliases: [A-Za-z0-9._-], not starting with '.'
#define STORE_SCHEMA_VERSION 2

typedef struct Store Store;

/** Opens (creating if absent) and migrates the database at path: a file path is SQLite, a
 *  postgresql:// or postgres:// URI (libpq syntax) is PostgreSQL; refuses, with MS_ERR_DB and a
 *  clear message, a file whose schema is newer than STORE_SCHEMA_VERSION. Caller closes. */
MsStatus store_open(Store **out, const char *path, MsError *err);
/** How a connection is opened; a zeroed struct (or NULL) gives the defaults. */
typedef struct {
    int read_only;     // 1: open read-only (the file must exist at the current schema version);
                       // every write then fails with MS_ERR_DB "database is read-only"
    int64_t max_pages; // PRAGMA max_page_count, a cap on the file's size in pages (4 KiB each);
                       // a write past it fails with MS_ERR_DB "disk full"; 0: no cap of ours
    // PostgreSQL only (several replicas share the job queue):
    const char *replica; // lease owner name of this process; NULL or "": "<hostname>:<pid>"
    int64_t lease_ms;    // how long a claim (and each progress write) holds a job; 0: the default
} StoreOptions;

#define STORE_LEASE_MS_DEFAULT 15000 // a replica silent this long loses its running jobs

/** store_open with options (opt may be NULL). Without read_only, a file the process cannot write
 *  (permissions, read-only mount) is refused with MS_ERR_DB naming the cause, rather than opened
 *  read-only behind the caller's back. */
MsStatus store_open_opts(Store **out, const char *path, const StoreOptions *opt, MsError *err);
/** Closes the connection (checkpointing the WAL when it is the last one). Accepts NULL. */
void store_close(Store *s);
/** PRAGMA user_version of the open file (-1 when it cannot be read). */
int store_schema_version(Store *s);
/** PRAGMA integrity_check: MS_OK when "ok", else MS_ERR_DB with the first problem. */
MsStatus store_integrity_check(Store *s, MsError *err);
/** Milliseconds since the epoch (CLOCK_REALTIME): the time base of every *_at field. */
int64_t store_now_ms(void);

/* ---- models ---- */

typedef struct {
    char name[STORE_NAME_MAX];
    int version;               // 1, 2, ... per name
    int64_t created_at;        // ms since epoch
    char *config;              // training config JSON (the job's), NUL-terminated
    char algorithm[16];        // "maml", ...
    char *hyper;               // hyper-parameters JSON ("{}" when none)
    char *metrics;             // final metrics JSON ("{}" when none)
    char job_id[STORE_ID_MAX]; // "" when not from a job
    size_t n_params;           // P
    float *params;             // P floats
    float *inner_lrs;          // P floats (Meta-SGD) or NULL
} StoreModel;

void store_model_free(StoreModel *m);

/** Writes a new version of m->name (version = latest + 1, returned in *version and m->version;
 *  a number is never given again, even after its version or the whole model was deleted).
 *  created_at is set by the store. */
MsStatus store_model_put(Store *s, StoreModel *m, int *version, MsError *err);

/**
 * Resolves a reference "name", "name@3" or "name@alias" to a version (latest for a bare name).
 * MS_ERR_INVALID for a malformed reference, MS_ERR_NOT_FOUND when name, version or alias is absent.
 */
MsStatus store_model_resolve(Store *s, const char *ref, char name[STORE_NAME_MAX], int *version,
                             MsError *err);
/** 1 when other processes write to the same database (PostgreSQL, several replicas): what a
 *  process caches of the store must then be revalidated; 0 for a SQLite file (one process). */
int store_is_shared(const Store *s);
/** Reads one version with its arrays. */
MsStatus store_model_get(Store *s, const char *name, int version, StoreModel *out, MsError *err);

/** One row of a model listing (no arrays). */
typedef struct {
    char name[STORE_NAME_MAX];
    int latest_version;
    int n_versions;
    int64_t created_at; // of the latest version
    char algorithm[16]; // of the latest version
} StoreModelSummary;

/**
 * Lists models ordered by name, at most limit rows after the name `after` ("" = from the start).
 * *n is the number returned (caller frees *rows with free()); *more is 1 when rows remain.
 */
MsStatus store_model_list(Store *s, const char *after, int limit, StoreModelSummary **rows, int *n,
                          int *more, MsError *err);
/** Lists the versions of one model (ascending; arrays not loaded: params NULL). Caller frees
 *  each with store_model_free and the array with free(). */
MsStatus store_model_versions(Store *s, const char *name, StoreModel **rows, int *n, MsError *err);
/** Deletes one version (version > 0) or the whole model (version 0), with aliases pointing at
 *  what is deleted. MS_ERR_NOT_FOUND when absent. */
MsStatus store_model_delete(Store *s, const char *name, int version, MsError *err);
/** Points alias at name@version (creating or moving it). MS_ERR_NOT_FOUND for a missing
 *  version, MS_ERR_INVALID for a malformed alias (an all-digit alias is refused). */
MsStatus store_alias_set(Store *s, const char *name, const char *alias, int version, MsError *err);
/** One alias of a model. */
typedef struct {
    char alias[STORE_NAME_MAX];
    int version;
} StoreAlias;

/** Lists the aliases of name, ordered by alias (caller frees *rows with free(); *n may be 0). */
MsStatus store_alias_list(Store *s, const char *name, StoreAlias **rows, int *n, MsError *err);
/** Removes an alias. */
MsStatus store_alias_delete(Store *s, const char *name, const char *alias, MsError *err);

/* ---- jobs ---- */

typedef enum { JOB_QUEUED, JOB_RUNNING, JOB_SUCCEEDED, JOB_FAILED, JOB_CANCELLED } JobState;
const char *store_job_state_name(JobState s);

typedef struct {
    char id[STORE_ID_MAX];
    JobState state;
    char *config;                                // training config JSON
    char name[STORE_NAME_MAX];                   // the model name the job will write
    int64_t created_at, started_at, finished_at; // ms; 0 when not yet
    int64_t iteration;    // completed meta-iterations (as of the last progress write)
    int64_t total;        // iterations asked for
    int cancel_requested; // 1 once cancel was asked while running
    char error[256];      // failure reason, "" otherwise
    char result_model[STORE_NAME_MAX];
    int result_version; // 0 until succeeded
    char *metrics;      // latest metrics JSON ("{}" when none)
    int has_checkpoint; // 1 when a checkpoint is stored
} StoreJob;

void store_job_free(StoreJob *j);

/** Queues a job (state queued). MS_ERR_BUSY when max_queued jobs are already queued
 *  (max_queued <= 0: no limit). id_out receives the new id. */
MsStatus store_job_create(Store *s, const char *config_json, const char *model_name, int64_t total,
                          int max_queued, char id_out[STORE_ID_MAX], MsError *err);
MsStatus store_job_get(Store *s, const char *id, StoreJob *out, MsError *err);
/** Lists jobs newest first, after the id `after` ("" = from the start); like store_model_list.
 *  metrics is loaded, config is not (NULL); free each row with store_job_free, then free(*rows).
 *  MS_ERR_INVALID when `after` names no job. */
MsStatus store_job_list(Store *s, const char *after, int limit, StoreJob **rows, int *n, int *more,
                        MsError *err);
/** Counts jobs per state into counts[5] (indexed by JobState). */
MsStatus store_job_counts(Store *s, int64_t counts[5], MsError *err);

/**
 * Atomically moves the oldest queued job to running and returns it in out (*claimed = 1), or
 * sets *claimed = 0 when none is queued. Two connections never claim the same job.
 */
MsStatus store_job_claim(Store *s, StoreJob *out, int *claimed, MsError *err);

/** One point of a loss curve. */
typedef struct {
    int64_t step;
    const char *key; // "meta_loss", "val_mse" or "val_accuracy", "tasks_per_s", ...
    double value;
} StoreMetric;

/** Records progress of a running job: iteration, the latest metrics JSON (NULL keeps the last),
 *  and n metric points (a point for an existing step and key replaces it), in one transaction.
 *  MS_ERR_CONFLICT when the job is not running. */
MsStatus store_job_progress(Store *s, const char *id, int64_t iteration, const char *metrics_json,
                            const StoreMetric *pts, int n, MsError *err);
/** Replaces the job's checkpoint with n opaque bytes taken at `iteration` (also recorded as the
 *  job's iteration), atomically. MS_ERR_CONFLICT when the job is not running. On SQLite this and
 *  store_job_progress return without waiting for the fsync (a power cut may lose the newest
 *  ones; a resumed job re-derives them); every other write returns once durable. */
MsStatus store_job_checkpoint(Store *s, const char *id, int64_t iteration, const void *data,
                              size_t n, MsError *err);
/** Reads the checkpoint (caller frees *data, non-NULL even when *n == 0); MS_ERR_NOT_FOUND when
 *  none. */
MsStatus store_job_checkpoint_get(Store *s, const char *id, void **data, size_t *n, MsError *err);

/**
 * Ends a job in one transaction: state succeeded (with model != NULL: a new version of
 * model->name is written, its version returned in *version and recorded on the job), failed
 * (error set), or cancelled. The checkpoint is dropped. The job must be queued or running
 * (MS_ERR_CONFLICT otherwise); if writing the model fails, nothing changes.
 */
MsStatus store_job_finish(Store *s, const char *id, JobState state, const char *error,
                          StoreModel *model, int *version, MsError *err);
/** Cancels: a queued job becomes cancelled at once; a running one gets cancel_requested = 1
 *  (the worker stops within one meta-iteration). MS_ERR_CONFLICT when already finished. */
MsStatus store_job_cancel(Store *s, const char *id, JobState *state_after, MsError *err);
/** Returns running jobs to the queue (at start-up after a crash, or when draining); their
 *  checkpoints stay, so a worker resumes them. *n receives how many. A running job whose cancel
 *  was requested becomes cancelled instead (and is not counted). */
MsStatus store_job_requeue_running(Store *s, int *n, MsError *err);
/** Returns one running job to the queue (graceful stop of its worker), or makes it cancelled
 *  when its cancel was requested. MS_ERR_CONFLICT when it is not running. */
MsStatus store_job_requeue(Store *s, const char *id, MsError *err);

/** Metric points of a job, ordered by step then key, at most limit after step `after_step`
 *  (-1 = from the start); keys copied into the rows' key buffers. Since the cursor is a step, a
 *  page holds whole steps only (it may end early with *more = 1); a single step with more than
 *  limit keys is returned whole (*n > limit). Caller frees *rows with free(). */
typedef struct {
    int64_t step;
    char key[32];
    double value;
    int64_t ts; // ms
} StoreMetricRow;
MsStatus store_job_metrics(Store *s, const char *id, int64_t after_step, int limit,
                           StoreMetricRow **rows, int *n, int *more, MsError *err);

/* ---- datasets ---- */

typedef struct {
    char id[STORE_ID_MAX];
    char name[STORE_NAME_MAX];
    char kind[16]; // "tasks" | "classes"
    int64_t created_at;
    int64_t n_items;  // tasks, or classes
    int64_t n_rows;   // examples in all
    int x_dim, y_dim; // y_dim: regression outputs; 1 for classes
    char *meta;       // JSON text of kind-specific details (e.g. test_classes), "{}" if none
    size_t bytes;     // total stored array bytes
} StoreDataset;

void store_dataset_free(StoreDataset *d);

/** The arrays of a dataset: x (n_rows x x_dim floats), y (n_rows x y_dim floats; class labels as
 *  floats for "classes"), index (kind-specific int32 array, e.g. task row offsets; may be empty).
 */
typedef struct {
    float *x;
    size_t n_x;
    float *y;
    size_t n_y;
    int32_t *index;
    size_t n_index;
} StoreDatasetData;

void store_dataset_data_free(StoreDatasetData *d);

/** Stores a dataset; id generated into d->id. created_at and bytes set by the store. */
MsStatus store_dataset_put(Store *s, StoreDataset *d, const StoreDatasetData *data, MsError *err);
/** Reads the description, and the arrays when data != NULL. */
MsStatus store_dataset_get(Store *s, const char *id, StoreDataset *out, StoreDatasetData *data,
                           MsError *err);
/** Newest first, like store_job_list, meta included (free each row with store_dataset_free, then
 *  free(*rows)).
 *  MS_ERR_INVALID when `after` names no dataset (e.g. it was deleted meanwhile). */
MsStatus store_dataset_list(Store *s, const char *after, int limit, StoreDataset **rows, int *n,
                            int *more, MsError *err);
/** MS_ERR_CONFLICT when a queued or running job uses it (its config names the id). */
MsStatus store_dataset_delete(Store *s, const char *id, MsError *err);

/* ---- adaptations ---- */

typedef struct {
    char id[STORE_ID_MAX];
    char model[STORE_NAME_MAX];
    int version;
    int64_t created_at, expires_at; // ms
    size_t n_params;
    float *params; // P floats (NULL in listings)
    double support_loss_before, support_loss_after;
} StoreAdaptation;

void store_adaptation_free(StoreAdaptation *a);
/** Stores an adaptation; id generated into a->id; created_at set; expires_at taken from a.
 *  MS_ERR_NOT_FOUND when model@version does not exist; deleting that version deletes it. */
MsStatus store_adaptation_put(Store *s, StoreAdaptation *a, MsError *err);
/** Reads one; MS_ERR_NOT_FOUND when absent or expired (expires_at <= now). */
MsStatus store_adaptation_get(Store *s, const char *id, StoreAdaptation *out, MsError *err);
/** Deletes one; MS_ERR_NOT_FOUND when absent or already expired (the row is removed anyway). */
MsStatus store_adaptation_delete(Store *s, const char *id, MsError *err);
/** Deletes every adaptation with expires_at <= now_ms; *n receives how many. */
MsStatus store_adaptation_expire(Store *s, int64_t now_ms, int *n, MsError *err);
/** Checkpoints the WAL into the file and empties it, waiting at most wait_ms for readers of the
 *  old WAL to finish (writers wait meanwhile); MS_ERR_BUSY when they did not. The adaptation
 *  sweeper calls it, so the WAL stays bounded under steady traffic. */
MsStatus store_wal_truncate(Store *s, int wait_ms, MsError *err);

/**
 * Returns once everything a read on s may have seen is on stable storage: with group commit
 * (SQLite), a commit is visible to other connections a moment before the fsync that makes it
 * durable, so a reply built from reads calls this before it leaves. Immediate when no commit
 * of the process is in flight or unsynced (the common case), and always on PostgreSQL. MS_ERR_IO
 * when an fsync of the file has failed in this process.
 */
MsStatus store_durable_fence(Store *s, MsError *err);

/* ---- copying a whole store (metaserve migrate) ---- */

/** What store_copy copied. */
typedef struct {
    int64_t models;              // model versions (numbers kept)
    int64_t model_names;         // version counters (highest number ever given, per name)
    int64_t aliases;             //
    int64_t jobs;                // jobs of every state
    int64_t jobs_requeued;       // of those, running in the source and queued in the target
    int64_t jobs_cancelled;      // of those, running with a cancel requested: cancelled
    int64_t job_metrics;         // loss-curve points
    int64_t datasets;            //
    int64_t adaptations;         // live adaptations (expires_at > now)
    int64_t adaptations_expired; // expired ones, not copied
    int64_t blob_bytes;          // encoded bytes of every array and checkpoint copied
    int64_t dataset_bytes;       // of those, dataset arrays
} StoreCopyReport;

/**
 * Copies every row of the SQLite store `from` (best opened read-only) into the PostgreSQL store
 * `to`, which must be empty: models with their version numbers and version counters, aliases,
 * jobs (a running one becomes queued, keeping its checkpoint; one asked to cancel becomes
 * cancelled), loss curves, datasets (streamed a chunk at a time, never a whole array in memory)
 * and live adaptations. Every stored array is checked (header, count, checksum) before it is
 * written. The copy is one PostgreSQL transaction over one snapshot of the source: on any
 * failure nothing is committed. report (may be NULL) receives the counts.
 * MS_ERR_INVALID unless from is SQLite and to is PostgreSQL; MS_ERR_CONFLICT when the target
 * already holds rows; MS_ERR_DB "corrupt" naming the row when a source array fails its checks.
 */
MsStatus store_copy(Store *from, Store *to, StoreCopyReport *report, MsError *err);

#endif
