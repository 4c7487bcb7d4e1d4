/*
 * The serving layer, between the HTTP handlers and meta/: an LRU cache of loaded model versions
 * shared by all request threads, adaptation of a stored version to a client's support set, and
 * prediction. The stored version is never modified: adaptation runs on a private copy, with the
 * model's learned Meta-SGD rates when it has them, and the result is stored as an adaptation with
 * a time to live (serving_adapt) or handed to the caller (serving_adapt_copy).
 *
 * Threading: one Serving per process, safe to call from any thread; each call takes the calling
 * thread's own Store connection. Cached versions are immutable and reference-counted, so a reader
 * keeps using its copy while a delete or alias move invalidates the cache.
 *
 * Usage:
 *     Serving *r; serving_create(&r, 64, &err);
 *     ServingModel *m; serving_get(r, store, "sine@prod", &m, &err);  ... serving_release(r, m);
 *     StoreAdaptation a; serving_adapt(r, store, "sine", &req, &a, &err);
 */
#ifndef METASERVE_SERVING_SERVING_H
#define METASERVE_SERVING_SERVING_H

#include <stdint.h>

#include "metaserve/core/status.h"
#include "metaserve/meta/train.h"
#include "metaserve/store/store.h"

/** A loaded model version: immutable while referenced. */
typedef struct ServingModel {
    char name[STORE_NAME_MAX];
    int version;
    TrainConfig cfg; // the training config (architecture, algorithm, inner lr and steps)
    MlpSpec spec;
    float *theta;                     // spec.P meta-parameters
    float *lrs;                       // spec.P Meta-SGD rates, or NULL
    int refs;                         // under the registry's lock
    struct ServingModel *prev, *next; // LRU list
    int cached;                       // 1 while in the cache
    int64_t checked_ms; // when the store last confirmed this version exists (shared stores)
} ServingModel;

typedef struct Serving Serving;

/** capacity: versions kept (>= 1). */
MsStatus serving_create(Serving **out, int capacity, MsError *err);
/** Frees the cache; no reference may be outstanding. Accepts NULL. */
void serving_destroy(Serving *r);

/** Resolves ref ("name", "name@N", "name@alias") and returns the version, from the cache or
 *  loaded from the store. A warm call touches no database: "name@N" is looked up directly, and
 *  "name" / "name@alias" resolutions are trusted for one second (moves made through this process
 *  with serving_invalidate take effect at once; a new version written by a job becomes the
 *  latest within that second). The caller releases with serving_release. */
MsStatus serving_get(Serving *r, Store *st, const char *ref, ServingModel **out, MsError *err);
void serving_release(Serving *r, ServingModel *m);
/** Drops every cached version of name and its resolutions (after a version or model delete). */
void serving_invalidate(Serving *r, const char *name);
/** Drops only the resolutions of name and name@alias (after an alias move): the loaded versions
 *  stay, as versions are immutable. */
void serving_forget_refs(Serving *r, const char *name);

typedef struct {
    int64_t hits, misses, loaded; // cache counters since start
    int size;                     // versions cached now
} ServingStats;
void serving_stats(Serving *r, ServingStats *out);

/** Limits checked before any allocation. */
typedef struct {
    int max_support_rows; // rows of a support set (default 10,000)
    int max_steps;        // inner steps (default 100)
    int64_t max_work;     // steps x rows x parameters (default 2e9): bounds the time of one call
    int64_t max_ttl_ms;   // longest adaptation lifetime (default 7 days)
} AdaptLimits;
void adapt_limits_default(AdaptLimits *l);

/** One adaptation request: a support set already parsed (float rows). */
typedef struct {
    const float *x; // n x D
    const float *y; // n x target columns (class indices as floats for classification)
    int n;
    int steps;      // -1: the model's inner steps
    double lr;      // <= 0: the model's inner lr (Meta-SGD: its learned rates, scaled by lr/alpha
                    // when lr is given)
    int64_t ttl_ms; // <= 0: one hour
} AdaptRequest;

/**
 * The checks serving_adapt_copy makes before adapting (support rows, steps, work, lr, ttl,
 * finite values, class indices in range), without adapting. MS_ERR_INVALID naming the field,
 * MS_ERR_TOO_LARGE for a limit.
 */
MsStatus serving_adapt_check(const ServingModel *m, const AdaptRequest *req, const AdaptLimits *lim,
                             MsError *err);

/**
 * Checks req against m (x width, label range, finite values) and the limits, adapts a private
 * copy of m->theta, and writes the adapted parameters to out_theta (m->spec.P floats).
 * MS_ERR_INVALID naming the field ("support.x[3][0]: ...", "steps: ..."), MS_ERR_TOO_LARGE for a
 * limit, MS_ERR_NUMERIC when adaptation diverges. loss_before / loss_after may be NULL.
 */
MsStatus serving_adapt_copy(const ServingModel *m, const AdaptRequest *req, const AdaptLimits *lim,
                            float *out_theta, double *loss_before, double *loss_after,
                            MsError *err);

/** serving_get + serving_adapt_copy + store_adaptation_put: out receives the stored
 *  adaptation (caller frees with store_adaptation_free). */
MsStatus serving_adapt(Serving *r, Store *st, const char *ref, const AdaptRequest *req,
                       const AdaptLimits *lim, StoreAdaptation *out, MsError *err);

#define SERVING_PREDICT_WORK_BYTES ((size_t)64 << 20) // scratch of one forward chunk

/**
 * Forward pass of rows rows of x (rows x D of spec) with theta (spec->P floats) into out
 * (rows x O): outputs for regression, softmax probabilities for classification. Runs in chunks
 * whose scratch (one MlpWork per call) stays under SERVING_PREDICT_WORK_BYTES, so memory does not
 * grow with rows beyond x and out. MS_ERR_NUMERIC naming the rows when an output is not finite,
 * MS_ERR_NOMEM.
 */
MsStatus serving_predict(const MlpSpec *spec, const float *theta, const float *x, int rows,
                         float *out, MsError *err);

#endif
