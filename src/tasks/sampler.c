/*
 * The generic half of the task samplers: validates a TaskConfig and dispatches to the built-in
 * families (sinusoid.c, gaussian.c), and owns the lifecycle of TaskBatch buffers. It does not
 * draw anything itself: every episode is produced by a family's sample() from the caller's Rng.
 *
 * Invariants: a TaskBatch holds four separately allocated buffers sized once by task_batch_init
 * for (k_support, k_query) shots of one sampler; sample() never allocates, so a trainer can draw
 * millions of episodes into one batch. Sizes are checked against TASK_K_MAX and
 * TASK_BATCH_MAX_BYTES before anything is allocated, because k comes from a request.
 *
 * Expected sizes: regression batches are tens of rows of one real; classification batches are at
 * most n_way (<= 100) x k rows of dim (<= 1024) reals, bounded by TASK_BATCH_MAX_BYTES.
 */
#include "metaserve/tasks/sampler.h"

#include <stdint.h>
#include <string.h>

// Family constructors, defined in sinusoid.c and gaussian.c. They are not public, so f64.h does
// not rename them; the suffix keeps the float and double builds of ms_tasks linkable into one
// binary. Keep these declarations identical to the ones in the family files.
#ifdef MS_REAL_DOUBLE
#define sinusoid_sampler_create sinusoid_sampler_create_f64
#define gaussian_sampler_create gaussian_sampler_create_f64
#endif
MsStatus sinusoid_sampler_create(TaskSampler **out, MsError *err);
MsStatus gaussian_sampler_create(TaskSampler **out, int n_way, int dim, MsError *err);

// Largest shot count accepted for k_support or k_query (per class for classification).
#define TASK_K_MAX 100000
// Largest total size of the four buffers of one batch: 256 MiB. The biggest classification batch
// the per-field limits allow (100-way, 1024-dim, 1e5 shots) would be ~80 GB, so this is the bound
// that actually protects the process from a request-controlled allocation.
#define TASK_BATCH_MAX_BYTES ((size_t)256 << 20)

MsStatus task_sampler_create(TaskSampler **out, const TaskConfig *cfg, MsError *err) {
    MS_ASSERT(out != NULL && cfg != NULL);
    *out = NULL;
    // The name lives in a fixed array that may come straight from a request: insist on a
    // terminator before treating it as a string.
    if (memchr(cfg->family, '\0', sizeof cfg->family) == NULL)
        return ms_fail(err, MS_ERR_INVALID, "tasks.family: longer than %d characters",
                       TASK_FAMILY_MAX - 1);
    if (strcmp(cfg->family, "sinusoid") == 0)
        return sinusoid_sampler_create(out, err); // n_way and dim do not apply and are ignored
    if (strcmp(cfg->family, "gaussian") == 0)
        return gaussian_sampler_create(out, cfg->n_way, cfg->dim, err);
    // Echo the user's text only if it is printable, so the message stays safe to log and return.
    for (const char *p = cfg->family; *p; p++)
        if (*p < 0x20 || *p > 0x7e)
            return ms_fail(err, MS_ERR_INVALID,
                           "tasks.family: unknown family (expected sinusoid | gaussian)");
    return ms_fail(err, MS_ERR_INVALID,
                   "tasks.family: unknown family '%s' (expected sinusoid | gaussian)", cfg->family);
}

void task_sampler_destroy(TaskSampler *s) {
    if (s) s->destroy(s);
}

/* ---- batches ---- */

static MsStatus check_k(const char *field, int k, MsError *err) {
    if (k < 1 || k > TASK_K_MAX)
        return ms_fail(err, MS_ERR_INVALID, "tasks.%s: must be between 1 and %d (got %d)", field,
                       TASK_K_MAX, k);
    return MS_OK;
}

MsStatus task_batch_init(TaskBatch *b, const TaskSampler *s, int k_support, int k_query,
                         MsError *err) {
    MS_ASSERT(b != NULL && s != NULL);
    memset(b, 0, sizeof *b);
    MsStatus st = check_k("k_support", k_support, err);
    if (st == MS_OK) st = check_k("k_query", k_query, err);
    if (st != MS_OK) return st;

    // Row counts are at most 100 x 1e5, which fits any size_t; the byte total is formed in double
    // so that it cannot wrap before it is compared with the limit.
    size_t per = s->classification ? (size_t)s->n_way : 1;
    size_t D = (size_t)s->x_dim, C = s->classification ? 1 : (size_t)s->y_dim;
    size_t n_s = per * (size_t)k_support, n_q = per * (size_t)k_query;
    double bytes = ((double)n_s + (double)n_q) * (double)(D + C) * (double)sizeof(real);
    if (bytes > (double)TASK_BATCH_MAX_BYTES)
        return ms_fail(err, MS_ERR_TOO_LARGE,
                       "tasks.k_support, tasks.k_query: a batch of %zu + %zu rows of %zu reals "
                       "needs %.0f MiB (limit %zu MiB)",
                       n_s, n_q, D + C, bytes / (1 << 20), TASK_BATCH_MAX_BYTES >> 20);

    b->xs = malloc(n_s * D * sizeof(real));
    b->ys = malloc(n_s * C * sizeof(real));
    b->xq = malloc(n_q * D * sizeof(real));
    b->yq = malloc(n_q * C * sizeof(real));
    if (!b->xs || !b->ys || !b->xq || !b->yq) {
        task_batch_free(b);
        return ms_fail(err, MS_ERR_NOMEM, "task batch: out of memory (%.0f MiB)",
                       bytes / (1 << 20));
    }
    b->x_dim = (int)D;
    b->y_cols = (int)C;
    b->k_support = k_support;
    b->k_query = k_query;
    return MS_OK;
}

void task_batch_free(TaskBatch *b) {
    if (!b) return;
    free(b->xs);
    free(b->ys);
    free(b->xq);
    free(b->yq);
    memset(b, 0, sizeof *b);
}

MsStatus task_sample(TaskSampler *s, Rng *rng, TaskBatch *b) {
    MS_ASSERT(s != NULL);
    return s->sample(s, rng, b);
}
