/*
 * Evaluation of a meta-trained model on fresh tasks: for each task, adapt on K support shots with
 * `steps` inner steps, then measure the query MSE (regression) or accuracy (classification).
 * Reports mean and a 95% confidence half-width 1.96 * std / sqrt(n).
 */
#ifndef METASERVE_META_EVAL_H
#define METASERVE_META_EVAL_H

#include "metaserve/core/rng.h"
#include "metaserve/meta/meta.h"
#include "metaserve/tasks/sampler.h"

typedef struct {
    int k;     // support shots (per class for classification)
    int steps; // inner steps
    int n_tasks;
    double mean;        // MSE or accuracy after adaptation
    double ci95;        // 1.96 * sample std / sqrt(n_tasks)
    double mean_before; // the same metric before adaptation (theta_0)
} EvalCell;

/**
 * Evaluates theta (and Meta-SGD rates lrs, or NULL) on n_tasks fresh tasks drawn from s with rng,
 * n_query query points per task (per class: ceil(n_query / n_way) for classification).
 */
MsStatus meta_eval(const MlpSpec *spec, MetaAlgo algo, const real *theta, const real *lrs,
                   real alpha, TaskSampler *s, Rng *rng, int n_tasks, int k, int steps, int n_query,
                   EvalCell *out, MsError *err);

/** As meta_eval, on the training split (validation = 0: what meta_eval does) or on the held-out
 *  split (validation = 1: the sampler's sample_val, held-out classes or tasks where the source
 *  has them). */
MsStatus meta_eval_split(const MlpSpec *spec, MetaAlgo algo, const real *theta, const real *lrs,
                         real alpha, TaskSampler *s, Rng *rng, int n_tasks, int k, int steps,
                         int n_query, int validation, EvalCell *out, MsError *err);

#endif
