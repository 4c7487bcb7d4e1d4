/*
 * The "gaussian" family: synthetic N-way K-shot classification. Each episode draws n_way class
 * centres mu_c ~ N(0, sigma^2 I) in `dim` dimensions, sigma = 3 sqrt(2 / dim) (3 in the default
 * 2-D; GAUSS_SPREAD says why it scales), and points x = mu_c + N(0, I). The classes get the labels
 * 0..n_way-1 in a fresh random order, so which label sits where must be learned from the support
 * set of each task. Support and query points come from the same centres and the same labelling.
 *
 * Row layout (interleaved, documented because tests and consumers may rely on it): row
 * r = shot * n_way + c holds shot `shot` of the c-th drawn class, whose label is perm[c]. So every
 * block of n_way consecutive rows holds each class exactly once (class-balanced prefixes and
 * mini-batches), the labels of the first block are the episode's permutation, and support row r
 * and query row r (r < n_way) carry the same label. Row order leaks nothing about the labelling
 * because perm is uniform.
 *
 * Draw order (an episode is a pure function of the Rng state): n_way - 1 rng_below calls for the
 * permutation (Fisher-Yates from the top), then per class c in order: dim normals for mu_c,
 * k_support * dim normals for its support points, k_query * dim for its query points.
 *
 * The sampler is immutable after creation (sample() keeps its scratch on the stack: one centre,
 * at most GAUSS_MAX_DIM doubles = 8 KiB, and the permutation), so threads may share it. No
 * allocation in sample(); an episode costs n_way * (1 + k_support + k_query) * dim normals.
 */
#include "metaserve/tasks/sampler.h"

#include <math.h>

// Declared here and in sampler.c (not public, so not renamed by f64.h; see sampler.c).
#ifdef MS_REAL_DOUBLE
#define gaussian_sampler_create gaussian_sampler_create_f64
#endif
MsStatus gaussian_sampler_create(TaskSampler **out, int n_way, int dim, MsError *err);

#define GAUSS_MIN_WAY     2
#define GAUSS_MAX_WAY     100
#define GAUSS_DEFAULT_DIM 2
#define GAUSS_MAX_DIM     1024
// Spread of the class centres. Centres are drawn with per-coordinate standard deviation
// GAUSS_SPREAD * sqrt(GAUSS_DEFAULT_DIM / dim): exactly N(0, 3^2 I) in the default 2 dimensions,
// and in general E|mu_a - mu_b|^2 = 2 * 9 * 2 = 36 whatever dim is, i.e. two centres sit a
// typical 6 noise standard deviations apart, so the Bayes error of telling two known centres apart
// does not depend on dim. A fixed 3 would make separation grow like sqrt(dim) and every task
// trivial from 8 dimensions on (nearest-centroid 5-way 1-shot accuracy 0.99). Measured
// nearest-centroid query accuracy from the support set (5-way, chance 0.20), 2000 episodes:
//     dim      2     8    32   128  1024
//     1-shot 0.73  0.84  0.77  0.55  0.32
//     5-shot 0.81  0.95  0.96  0.89  0.54
// In 2-D close pairs of centres are frequent, which caps accuracy; in high dimensions the
// centroid of k shots is itself noisy (|error|^2 ~ dim / k), so very wide, very-few-shot tasks are
// genuinely hard: more shots fix that (1024-D 20-shot: 0.82). Learnable, never trivial.
#define GAUSS_SPREAD 3.0

// x: rows x D, y: rows x 1, rows = k * N. Writes the k shots of drawn class c (label `label`)
// into rows c, N + c, 2N + c, ...
static void fill_class(real *x, real *y, int k, int N, int c, int label, const double *centre,
                       int D, Rng *rng) {
    double noise[GAUSS_MAX_DIM];
    for (int shot = 0; shot < k; shot++) {
        size_t row = (size_t)shot * (size_t)N + (size_t)c;
        real *l_x = x + row * (size_t)D;
        rng_normal_fill(rng, noise, (size_t)D);
        for (int d = 0; d < D; d++)
            l_x[d] = (real)(centre[d] + noise[d]);
        y[row] = (real)label;
    }
}

static MsStatus gaussian_sample(TaskSampler *s, Rng *rng, TaskBatch *b) {
    const int N = s->n_way, D = s->x_dim;
    MS_ASSERT(rng != NULL && b != NULL && b->xs != NULL);
    MS_ASSERT(b->x_dim == D && b->y_cols == 1); // the batch was sized for this sampler
    MS_ASSERT(b->k_support >= 1 && b->k_query >= 1);
    MS_ASSERT(N >= GAUSS_MIN_WAY && N <= GAUSS_MAX_WAY && D >= 1 && D <= GAUSS_MAX_DIM);

    // perm[c]: the label given to the c-th drawn class; uniform over permutations.
    int perm[GAUSS_MAX_WAY];
    for (int c = 0; c < N; c++)
        perm[c] = c;
    for (int i = N - 1; i > 0; i--) {
        int j = (int)rng_below(rng, (uint64_t)i + 1);
        int t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }

    const double sigma = GAUSS_SPREAD * sqrt((double)GAUSS_DEFAULT_DIM / D);
    double centre[GAUSS_MAX_DIM];
    for (int c = 0; c < N; c++) {
        rng_normal_fill(rng, centre, (size_t)D);
        for (int d = 0; d < D; d++)
            centre[d] *= sigma;
        fill_class(b->xs, b->ys, b->k_support, N, c, perm[c], centre, D, rng);
        fill_class(b->xq, b->yq, b->k_query, N, c, perm[c], centre, D, rng);
    }
    b->n_s = N * b->k_support;
    b->n_q = N * b->k_query;
    return MS_OK;
}

static void gaussian_destroy(TaskSampler *s) {
    free(s);
}

/**
 * Creates the gaussian sampler for n_way classes in dim dimensions (0: GAUSS_DEFAULT_DIM) into
 * *out (NULL on failure). MS_ERR_INVALID naming tasks.n_way or tasks.dim when out of range;
 * MS_ERR_NOMEM. Caller frees with task_sampler_destroy.
 */
MsStatus gaussian_sampler_create(TaskSampler **out, int n_way, int dim, MsError *err) {
    *out = NULL;
    if (n_way == 0) // absent from the config: there is no default number of classes
        return ms_fail(err, MS_ERR_INVALID,
                       "tasks.n_way: is required for the gaussian family (the number of classes "
                       "of each task, %d..%d)",
                       GAUSS_MIN_WAY, GAUSS_MAX_WAY);
    if (n_way < GAUSS_MIN_WAY || n_way > GAUSS_MAX_WAY)
        return ms_fail(err, MS_ERR_INVALID, "tasks.n_way: must be between %d and %d (got %d)",
                       GAUSS_MIN_WAY, GAUSS_MAX_WAY, n_way);
    if (dim == 0) dim = GAUSS_DEFAULT_DIM;
    if (dim < 1 || dim > GAUSS_MAX_DIM)
        return ms_fail(err, MS_ERR_INVALID,
                       "tasks.dim: must be between 1 and %d, or 0 for the default %d (got %d)",
                       GAUSS_MAX_DIM, GAUSS_DEFAULT_DIM, dim);
    TaskSampler *s = calloc(1, sizeof *s);
    if (!s) return ms_fail(err, MS_ERR_NOMEM, "task sampler: out of memory");
    s->family = "gaussian";
    s->x_dim = dim;
    s->y_dim = n_way; // the model's output width: one logit per class
    s->classification = 1;
    s->n_way = n_way;
    s->sample = gaussian_sample;
    s->sample_val = gaussian_sample; // a synthetic family has no held-out classes
    s->destroy = gaussian_destroy;
    s->impl = NULL;
    *out = s;
    return MS_OK;
}
