/*
 * The model registry's hot path: an LRU cache of loaded model versions shared by all request
 * threads, and adaptation of a stored version to a client's support set. The stored version is
 * never modified: adaptation runs on a private copy, with the model's learned Meta-SGD rates when
 * it has them, and the result is stored as an adaptation with a time to live.
 *
 * Threading: one Registry per process, safe to call from any thread; each call takes the calling
 * thread's own Store connection. Cached versions are immutable and reference-counted, so a reader
 * keeps using its copy while a delete or alias move invalidates the cache.
 *
 * Usage:
 *     Registry *r; registry_create(&r, 64, &err);
 *     RegistryModel *m; registry_get(r, store, "sine@prod", &m, &err);  ... registry_release(r, m);
 *     StoreAdaptation a; registry_adapt(r, store, "sine", &req, &a, &err);
 */
#ifndef METASERVE_REGISTRY_REGISTRY_H
#define METASERVE_REGISTRY_REGISTRY_H

#include <stdint.h>

#include "metaserve/core/status.h"
#include "metaserve/meta/train.h"
#include "metaserve/store/store.h"

/** A loaded model version: immutable while referenced. */
typedef struct RegistryModel {
    char name[STORE_NAME_MAX];
    int version;
    TrainConfig cfg; // the training config (architecture, algorithm, inner lr and steps)
    MlpSpec spec;
    float *theta;                      // spec.P meta-parameters
    float *lrs;                        // spec.P Meta-SGD rates, or NULL
    int refs;                          // under the registry's lock
    struct RegistryModel *prev, *next; // LRU list
    int cached;                        // 1 while in the cache
} RegistryModel;

typedef struct Registry Registry;

/** capacity: versions kept (>= 1). */
MsStatus registry_create(Registry **out, int capacity, MsError *err);
/** Frees the cache; no reference may be outstanding. Accepts NULL. */
void registry_destroy(Registry *r);

/** Resolves ref ("name", "name@N", "name@alias") and returns the version, from the cache or
 *  loaded from the store. A warm call touches no database: "name@N" is looked up directly, and
 *  "name" / "name@alias" resolutions are trusted for one second (moves made through this process
 *  with registry_invalidate take effect at once; a new version written by a job becomes the
 *  latest within that second). The caller releases with registry_release. */
MsStatus registry_get(Registry *r, Store *st, const char *ref, RegistryModel **out, MsError *err);
void registry_release(Registry *r, RegistryModel *m);
/** Drops every cached version of name (after a delete; aliases are resolved per call). */
void registry_invalidate(Registry *r, const char *name);

typedef struct {
    int64_t hits, misses, loaded; // cache counters since start
    int size;                     // versions cached now
} RegistryStats;
void registry_stats(Registry *r, RegistryStats *out);

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
 * The checks registry_adapt_params makes before adapting (support rows, steps, work, lr, ttl,
 * finite values, class indices in range), without adapting. MS_ERR_INVALID naming the field,
 * MS_ERR_TOO_LARGE for a limit.
 */
MsStatus registry_adapt_check(const RegistryModel *m, const AdaptRequest *req,
                              const AdaptLimits *lim, MsError *err);

/**
 * Checks req against m (x width, label range, finite values) and the limits, adapts a private
 * copy of m->theta, and writes the adapted parameters to out_theta (m->spec.P floats).
 * MS_ERR_INVALID naming the field ("support.x[3][0]: ...", "steps: ..."), MS_ERR_TOO_LARGE for a
 * limit, MS_ERR_NUMERIC when adaptation diverges. loss_before / loss_after may be NULL.
 */
MsStatus registry_adapt_params(const RegistryModel *m, const AdaptRequest *req,
                               const AdaptLimits *lim, float *out_theta, double *loss_before,
                               double *loss_after, MsError *err);

/** registry_get + registry_adapt_params + store_adaptation_put: out receives the stored
 *  adaptation (caller frees with store_adaptation_free). */
MsStatus registry_adapt(Registry *r, Store *st, const char *ref, const AdaptRequest *req,
                        const AdaptLimits *lim, StoreAdaptation *out, MsError *err);

#endif
