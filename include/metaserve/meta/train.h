/*
 * The meta-training loop: a Trainer owns the trainable vector (theta, then the Meta-SGD rates),
 * the outer optimiser state (Adam moments or nothing for SGD), the task-stream Rng and the scratch
 * for one task. One trainer_step draws meta_batch tasks, averages their meta-gradients, clips by
 * global norm when asked, and applies one optimiser step. Tasks of a meta-batch are processed one
 * at a time, so memory does not grow with meta_batch.
 *
 * Determinism: the whole state is (params, m1, m2, t, rng); same config and seed give bit-identical
 * parameters on the same build. A non-finite loss or gradient returns MS_ERR_NUMERIC and leaves
 * the parameters as they were before the step.
 *
 * Usage:
 *     TrainConfig c; train_config_defaults(&c); ... fill ...
 *     Trainer t; if (trainer_init(&t, &c, &err) != MS_OK) ...;
 *     while (t.t < c.iterations) trainer_step(&t, &stats, &err);
 *     trainer_free(&t);
 */
#ifndef METASERVE_META_TRAIN_H
#define METASERVE_META_TRAIN_H

#include <stdint.h>

#include "metaserve/meta/meta.h"
#include "metaserve/nn/mlp.h"
#include "metaserve/tasks/sampler.h"

typedef enum { OPT_ADAM, OPT_SGD } OptKind;

#define TRAIN_NAME_MAX 128

/** A training config: the body of POST /v1/jobs and of `metaserve train --config`. */
typedef struct {
    char name[TRAIN_NAME_MAX];     // model name
    int n_sizes;                   // entries in sizes
    int sizes[MLP_MAX_LAYERS + 1]; // layer widths, input first
    MlpAct act;
    MlpHead head;
    MetaAlgo algo;
    double inner_lr;  // alpha (Meta-SGD: initial value of every rate)
    int inner_steps;  // K
    OptKind opt;      // outer optimiser
    double outer_lr;  // beta (Reptile: epsilon)
    double clip_norm; // > 0: clip the meta-gradient to this global norm; 0: off
    int anneal;       // 1: outer lr decays linearly to 0 over the run; 0: constant;
                      // -1: the algorithm's default (1 for Reptile, else 0)
    double adam_beta1, adam_beta2, adam_eps;
    int meta_batch;  // tasks per meta-update
    long iterations; // meta-updates
    uint64_t seed;
    TaskConfig tasks; // the family
    int k_support;    // shots (per class for classification)
    int k_query;
    int threads; // threads per meta-batch (1..TRAIN_MAX_THREADS); 0: the runner's default.
                 // Results do not depend on it (trainer_set_parallel)
    char init_model[TRAIN_NAME_MAX + 16]; // "init": {"model": ref}: the version whose parameters
                                          // start the run ("" none; pinned to name@version when
                                          // the job is queued)
} TrainConfig;

#define TRAIN_MAX_THREADS 64

/** Defaults of DESIGN.md §3: relu regression, maml, inner 0.01 x 1, adam 1e-3, batch 25. */
void train_config_defaults(TrainConfig *c);

/** Checks every field (and that the task family fits the architecture); MS_ERR_INVALID naming
 *  the field. */
MsStatus train_config_validate(const TrainConfig *c, MsError *err);
/** Whether data fits c's architecture: x_dim inputs, classification or regression as c's head,
 *  and (y_dim > 0) y_dim outputs. `what` names the data in the message ("tasks of family
 *  'sinusoid'", "dataset <id>"). MS_ERR_INVALID naming the architecture field otherwise. */
MsStatus train_config_fit(const TrainConfig *c, int x_dim, int y_dim, int classification,
                          const char *what, MsError *err);

/**
 * Whether a stored version (its training config `init`, named `ref` in messages) can start a run
 * of cfg: the same sizes, activation and head. MS_ERR_INVALID "init.model: <ref> has
 * architecture.sizes [1, 40, 1] but this config [1, 20, 1]" (or activation, head) otherwise.
 */
MsStatus train_config_init_fits(const TrainConfig *cfg, const TrainConfig *init, const char *ref,
                                MsError *err);

/** Resource limits on a training config, checked before anything is allocated. */
typedef struct {
    size_t max_params;     // parameters of the network (default 10,000,000)
    size_t max_tape_bytes; // meta-gradient scratch: grows with inner steps x rows x widths
                           // (meta_work_bytes; default 2 GiB)
    long max_iterations;   // meta-iterations of one job (default 100,000,000)
} TrainLimits;

void train_limits_default(TrainLimits *l);

/** MS_ERR_TOO_LARGE naming the quantity and the limit when cfg exceeds l (cfg must already be
 *  valid). Episode rows are k shots, times n_way (or the output width) for classification. */
MsStatus train_config_check_limits(const TrainConfig *cfg, const TrainLimits *l, MsError *err);

typedef struct {
    double meta_loss; // mean post-adaptation query loss over the meta-batch
    double pre_loss;  // mean query loss before adaptation (NAN unless measured)
    double grad_norm; // global norm of the averaged meta-gradient, before clipping
} TrainStats;

/** Runs fn(arg, i) for every i in [0, n), on any threads in any order, and returns once every
 *  call has returned. The runner's (jobs/taskpool.h); ctx is its state. */
typedef void (*TrainParallelFn)(void *ctx, int n, void (*fn)(void *arg, int i), void *arg);

typedef struct {
    TrainConfig cfg;
    MlpSpec spec;
    TaskSampler *sampler; // owned
    size_t N;             // trainable reals: P, or 2P for Meta-SGD (theta then rates)
    real *params;         // N
    real *grad;           // N: averaged meta-gradient of the last step
    real *m1, *m2;        // N each: Adam moments (NULL for SGD)
    long t;               // completed meta-updates
    Rng rng;              // the task stream
    MetaWork mw;
    TaskBatch batch;
    // A wave of tasks computed at once (trainer_set_parallel): slot 0 is mw / batch above,
    // slots 1.. the arrays below. Gradients are added in task order whatever the wave.
    int wave;                 // tasks per wave (1 without trainer_set_parallel)
    MetaWork *wave_mw;        // wave - 1
    TaskBatch *wave_batch;    // wave - 1
    MsStatus *wave_status;    // wave
    MetaTaskResult *wave_res; // wave
    TrainParallelFn par;
    void *par_ctx;
} Trainer;

/** Validates cfg, builds the sampler and spec, initialises parameters from cfg.seed. */
MsStatus trainer_init(Trainer *tr, const TrainConfig *cfg, MsError *err);
/** As trainer_init, with a sampler built by the caller (an uploaded dataset's); takes ownership
 *  of sampler (destroyed by trainer_free, or here on failure). The sampler's shapes are checked
 *  against the architecture. */
MsStatus trainer_init_with_sampler(Trainer *tr, const TrainConfig *cfg, TaskSampler *sampler,
                                   MsError *err);

/** Bytes of a checkpoint of tr (trainer_save). */
size_t trainer_state_bytes(const Trainer *tr);
/**
 * Serialises the whole training state (iteration, task-stream Rng, parameters, optimiser
 * moments) into buf (trainer_state_bytes(tr) bytes). Restoring it into a trainer built from the
 * same config continues bit-identically to an uninterrupted run.
 */
void trainer_save(const Trainer *tr, void *buf);
/** Restores a trainer_save image; MS_ERR_INVALID when it does not fit this trainer (different
 *  shape, algorithm, optimiser or precision, or a malformed image). tr is unchanged on error. */
MsStatus trainer_restore(Trainer *tr, const void *buf, size_t n, MsError *err);

/** One meta-update. MS_ERR_NUMERIC leaves params unchanged. */
/**
 * Spreads each meta-batch over `threads` threads: tasks are sampled one after another from the
 * one task stream (as with one thread), computed in waves of up to `wave` tasks on their own
 * scratch (par runs a wave), and their gradients added to the meta-gradient in task order. So
 * parameters, losses and checkpoints are bit-identical for every thread count and wave size,
 * and a checkpoint taken with one resumes with another. wave <= 0 picks one (a multiple of
 * threads, bounded by the scratch it needs). threads == 1 with par NULL returns to one task at a
 * time. MS_ERR_NOMEM (the trainer keeps its previous set-up), MS_ERR_INVALID.
 */
MsStatus trainer_set_parallel(Trainer *tr, int threads, int wave, TrainParallelFn par, void *ctx,
                              MsError *err);

MsStatus trainer_step(Trainer *tr, TrainStats *st, MsError *err);
/** Accepts NULL and a zeroed struct. */
void trainer_free(Trainer *tr);

/** theta = tr->params; Meta-SGD rates = tr->params + P (NULL for other algorithms). */
const real *trainer_lrs(const Trainer *tr);

#endif
