/*
 * The sinusoid regression family of Finn, Abbeel & Levine 2017 (MAML, section 5.1), as in their
 * reference code: each task is y = A sin(x - phi) with amplitude A ~ U[0.1, 5.0) and phase
 * phi ~ U[0, pi); inputs x ~ U[-5, 5). One episode draws (A, phi) once and then k_support support
 * points and k_query query points of that same function. x_dim = y_dim = 1.
 *
 * Draw order (fixed, so an episode is a pure function of the Rng state): A, phi, then one uniform
 * per support x in row order, then one per query x. Each y is computed in double from the x as
 * stored (already rounded to real), so a stored (x, y) pair lies on the curve to within the
 * rounding of y alone.
 *
 * The sampler has no state beyond its vtable: sample() only reads it and writes the batch, so one
 * sampler may be shared by threads that each own their Rng and TaskBatch. No allocation in
 * sample(); an episode of k points costs 2 + k uniforms and k sin() calls.
 */
#include "metaserve/tasks/sampler.h"

#include <math.h>

// Declared here and in sampler.c (not public, so not renamed by f64.h; see sampler.c).
#ifdef MS_REAL_DOUBLE
#define sinusoid_sampler_create sinusoid_sampler_create_f64
#endif
MsStatus sinusoid_sampler_create(TaskSampler **out, MsError *err);

#define SINE_AMP_LO   0.1
#define SINE_AMP_HI   5.0
#define SINE_PHASE_HI 3.14159265358979323846 // pi
#define SINE_X_LO     (-5.0)
#define SINE_X_HI     5.0

// x: n x 1, y: n x 1. Draws n inputs and evaluates A sin(x - phi) on them.
static void fill_points(real *x, real *y, int n, double amp, double phase, Rng *rng) {
    for (int i = 0; i < n; i++) {
        x[i] = (real)rng_range(rng, SINE_X_LO, SINE_X_HI);
        y[i] = (real)(amp * sin((double)x[i] - phase));
    }
}

static MsStatus sinusoid_sample(TaskSampler *s, Rng *rng, TaskBatch *b) {
    (void)s;
    MS_ASSERT(rng != NULL && b != NULL && b->xs != NULL);
    MS_ASSERT(b->x_dim == 1 && b->y_cols == 1); // the batch was sized for this sampler
    MS_ASSERT(b->k_support >= 1 && b->k_query >= 1);
    double amp = rng_range(rng, SINE_AMP_LO, SINE_AMP_HI);
    double phase = rng_range(rng, 0.0, SINE_PHASE_HI);
    fill_points(b->xs, b->ys, b->k_support, amp, phase, rng);
    fill_points(b->xq, b->yq, b->k_query, amp, phase, rng);
    b->n_s = b->k_support;
    b->n_q = b->k_query;
    return MS_OK;
}

static void sinusoid_destroy(TaskSampler *s) {
    free(s);
}

/**
 * Creates the sinusoid sampler into *out (NULL on failure). MS_ERR_NOMEM only. Caller frees with
 * task_sampler_destroy.
 */
MsStatus sinusoid_sampler_create(TaskSampler **out, MsError *err) {
    TaskSampler *s = calloc(1, sizeof *s);
    if (!s) return ms_fail(err, MS_ERR_NOMEM, "task sampler: out of memory");
    s->family = "sinusoid";
    s->x_dim = 1;
    s->y_dim = 1;
    s->classification = 0;
    s->n_way = 1;
    s->sample = sinusoid_sample;
    s->sample_val = sinusoid_sample; // a parametric family has no held-out tasks
    s->destroy = sinusoid_destroy;
    s->impl = NULL;
    *out = s;
    return MS_OK;
}
