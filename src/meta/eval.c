/*
 * Few-shot evaluation: adapt on K shots of a fresh task, score the query set, over many tasks.
 * Regression scores the query MSE (the loss); classification scores accuracy (argmax = label).
 * Allocates its scratch once per call; the per-task loop allocates nothing.
 */
#include "metaserve/meta/eval.h"

#include <math.h>
#include <string.h>

// Metric of the outputs of the last forward on w against y.
static double score(MlpWork *w, const real *y) {
    const MlpSpec *s = w->spec;
    if (s->head == MLP_HEAD_REGRESSION) return mlp_loss_only(w, y);
    const int O = s->sizes[s->L];
    const real *Z = w->Z[s->L - 1];
    int hit = 0;
    for (int i = 0; i < w->B; i++) {
        int best = 0;
        for (int j = 1; j < O; j++)
            if (Z[(size_t)i * O + j] > Z[(size_t)i * O + best]) best = j;
        hit += best == (int)y[i];
    }
    return w->B ? (double)hit / w->B : 0;
}

MsStatus meta_eval(const MlpSpec *spec, MetaAlgo algo, const real *theta, const real *lrs,
                   real alpha, TaskSampler *s, Rng *rng, int n_tasks, int k, int steps, int n_query,
                   EvalCell *out, MsError *err) {
    return meta_eval_split(spec, algo, theta, lrs, alpha, s, rng, n_tasks, k, steps, n_query, 0,
                           out, err);
}

MsStatus meta_eval_split(const MlpSpec *spec, MetaAlgo algo, const real *theta, const real *lrs,
                         real alpha, TaskSampler *s, Rng *rng, int n_tasks, int k, int steps,
                         int n_query, int validation, EvalCell *out, MsError *err) {
    memset(out, 0, sizeof *out);
    if (n_tasks < 1) return ms_fail(err, MS_ERR_INVALID, "tasks: must be >= 1");
    if (steps < 0 || steps > META_MAX_STEPS)
        return ms_fail(err, MS_ERR_INVALID, "steps: must be in 0..%d", META_MAX_STEPS);
    if (n_query < 1) return ms_fail(err, MS_ERR_INVALID, "query: must be >= 1");
    int kq = s->classification ? (n_query + s->n_way - 1) / s->n_way : n_query;
    TaskBatch b = {0};
    MlpWork w = {0};
    real *buf = NULL;
    MsStatus st = task_batch_init(&b, s, k, kq, err);
    if (st != MS_OK) goto done;
    int rows = s->classification ? s->n_way * (k > kq ? k : kq) : (k > kq ? k : kq);
    if ((st = mlp_work_init(&w, spec, rows, err)) != MS_OK) goto done;
    buf = malloc(2 * spec->P * sizeof(real));
    if (!buf) {
        st = ms_fail(err, MS_ERR_NOMEM, "cannot allocate evaluation scratch");
        goto done;
    }
    double sum = 0, sumsq = 0, sum_before = 0;
    for (int t = 0; t < n_tasks; t++) {
        st = validation ? s->sample_val(s, rng, &b) : task_sample(s, rng, &b);
        if (st != MS_OK) {
            ms_fail(err, st, "sampling evaluation task %d failed", t);
            goto done;
        }
        mlp_forward(&w, theta, b.xq, b.n_q);
        sum_before += score(&w, b.yq);
        st = meta_adapt(&w, buf, buf + spec->P, algo, theta, lrs, alpha, steps, b.xs, b.ys, b.n_s,
                        NULL, NULL);
        if (st != MS_OK) {
            ms_fail(err, st, "adaptation diverged on evaluation task %d (non-finite loss)", t);
            goto done;
        }
        mlp_forward(&w, buf, b.xq, b.n_q);
        double m = score(&w, b.yq);
        sum += m;
        sumsq += m * m;
    }
    out->k = k;
    out->steps = steps;
    out->n_tasks = n_tasks;
    out->mean = sum / n_tasks;
    out->mean_before = sum_before / n_tasks;
    double var = n_tasks > 1 ? (sumsq - n_tasks * out->mean * out->mean) / (n_tasks - 1) : 0;
    out->ci95 = 1.96 * sqrt(var > 0 ? var : 0) / sqrt((double)n_tasks);
done:
    free(buf);
    mlp_work_free(&w);
    task_batch_free(&b);
    return st;
}
