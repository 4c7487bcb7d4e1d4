/*
 * Task samplers: the source of support/query episodes for meta-training and evaluation. A sampler
 * is an interface (a small vtable) so that built-in families and, later, uploaded datasets look
 * the same to meta/. All randomness comes from the Rng * passed to sample(), so an episode stream
 * is reproduced exactly by restoring the Rng state. sample() never allocates. The built-in
 * samplers are immutable after creation: threads may share one, each with its own Rng and batch.
 *
 * Episode shapes: regression families fill k_support / k_query points of one function; an N-way
 * classification family fills n_way * k_support support rows and n_way * k_query query rows,
 * labels remapped to 0..n_way-1 per episode. Targets are stored as reals: y rows are y_dim wide
 * for regression and 1 wide (the class index) for classification.
 *
 * Usage:
 *     TaskSampler *s; task_sampler_create(&s, &cfg, &err);
 *     TaskBatch b; task_batch_init(&b, s, 10, 10, &err);
 *     task_sample(s, &rng, &b);   // fills b.xs, b.ys, b.xq, b.yq
 *     task_batch_free(&b); task_sampler_destroy(s);
 */
#ifndef METASERVE_TASKS_SAMPLER_H
#define METASERVE_TASKS_SAMPLER_H

#include "metaserve/core/real.h"
#include "metaserve/core/rng.h"
#include "metaserve/core/status.h"

#define TASK_FAMILY_MAX     32
#define TASK_DATASET_ID_MAX 40 // an uploaded dataset id (32 hex characters) + NUL: STORE_ID_MAX

/** What a sampler is asked for: a built-in family and its parameters. */
typedef struct {
    char family[TASK_FAMILY_MAX]; // "sinusoid" | "gaussian"
    int n_way;                    // classification families: classes per episode (2..100)
    int dim;                      // gaussian: input dimension (1..1024; 0: default 2)
    char
        dataset[TASK_DATASET_ID_MAX]; // uploaded dataset id: when set, family is unused and the
                                      // sampler comes from dataset_sampler_create (tasks/dataset.h)
} TaskConfig;

typedef struct TaskSampler TaskSampler;

/** One episode. Buffers are owned by the batch and sized at init for the given shot counts. */
typedef struct {
    int x_dim;              // D: input width
    int y_cols;             // target row width (y_dim for regression, 1 for classification)
    int n_s, n_q;           // rows in the support and query sets of the last sample
    int k_support, k_query; // shots (per class for classification) the batch was sized for
    real *xs;               // n_s x x_dim
    real *ys;               // n_s x y_cols
    real *xq;               // n_q x x_dim
    real *yq;               // n_q x y_cols
} TaskBatch;

struct TaskSampler {
    const char *family; // static name
    int x_dim;          // input width every episode has
    int y_dim;          // regression: output width; classification: n_way (model outputs)
    int classification; // 1: targets are class indices, rows per episode scale by n_way
    int n_way;          // classification: classes per episode; regression: 1
    /** Fills b (sized by task_batch_init) with one fresh episode; MS_OK or an error. */
    MsStatus (*sample)(TaskSampler *s, Rng *rng, TaskBatch *b);
    /** Fills b with a validation episode (held-out classes or tasks where the source has them,
     *  else a fresh episode drawn the same way). */
    MsStatus (*sample_val)(TaskSampler *s, Rng *rng, TaskBatch *b);
    void (*destroy)(TaskSampler *s);
    void *impl; // family-private state
};

/** Creates the sampler for cfg; MS_ERR_INVALID naming the field when the family is unknown or a
 *  parameter is out of range. Caller frees with task_sampler_destroy. */
MsStatus task_sampler_create(TaskSampler **out, const TaskConfig *cfg, MsError *err);
/** Accepts NULL. */
void task_sampler_destroy(TaskSampler *s);

/** Sizes b (need not be initialised) for k_support / k_query shots of s (per class for
 *  classification); n_s, n_q stay 0 until the first sample. MS_ERR_INVALID naming tasks.k_support
 *  or tasks.k_query unless 1 <= k <= 100000; MS_ERR_TOO_LARGE when the four buffers would exceed
 *  256 MiB; MS_ERR_NOMEM. Checked before allocating; on failure b is left zeroed. Caller frees
 *  with task_batch_free. */
MsStatus task_batch_init(TaskBatch *b, const TaskSampler *s, int k_support, int k_query,
                         MsError *err);
/** Accepts NULL and a zeroed struct; leaves b zeroed. */
void task_batch_free(TaskBatch *b);

/** Convenience: s->sample(s, rng, b). b must come from task_batch_init with s (asserted). */
MsStatus task_sample(TaskSampler *s, Rng *rng, TaskBatch *b);

#endif
