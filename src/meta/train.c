/*
 * The meta-training loop: config defaults and validation, trainer set-up, and one meta-update
 * (sample meta_batch tasks, average their meta-gradients, clip, Adam or SGD step).
 *
 * Owns the trainable vector (theta, then the Meta-SGD rates, so one optimiser step updates both),
 * the Adam moments, the task-stream Rng and the scratch of one task (of a wave of tasks with
 * trainer_set_parallel). Everything is allocated in trainer_init and trainer_set_parallel;
 * trainer_step allocates nothing. Tasks of a meta-batch are sampled one at a time from one
 * stream and their gradients added in task order, however many run at once, so results are
 * bit-identical for one seed on one build whatever the thread count.
 */
#include "metaserve/meta/train.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "metaserve/core/name.h"

_Static_assert(TRAIN_NAME_MAX == NAME_MAX_BYTES, "a model name follows core/name.h");

static int sizes_text(char *dst, size_t cap, const int *s, int n) {
    int k = snprintf(dst, cap, "[");
    for (int i = 0; i < n && (size_t)k < cap; i++)
        k += snprintf(dst + k, cap - (size_t)k, "%s%d", i ? ", " : "", s[i]);
    if ((size_t)k < cap) k += snprintf(dst + k, cap - (size_t)k, "]");
    return k;
}

MsStatus train_config_init_fits(const TrainConfig *cfg, const TrainConfig *init, const char *ref,
                                MsError *err) {
    int same = cfg->n_sizes == init->n_sizes;
    for (int i = 0; i < cfg->n_sizes && same; i++)
        same = cfg->sizes[i] == init->sizes[i];
    if (!same) {
        char a[200], b[200];
        sizes_text(a, sizeof a, init->sizes, init->n_sizes);
        sizes_text(b, sizeof b, cfg->sizes, cfg->n_sizes);
        return ms_fail(err, MS_ERR_INVALID,
                       "init.model: %s has architecture.sizes %s but this config %s", ref, a, b);
    }
    if (cfg->act != init->act)
        return ms_fail(err, MS_ERR_INVALID,
                       "init.model: %s has architecture.activation %s but this config %s", ref,
                       mlp_act_name(init->act), mlp_act_name(cfg->act));
    if (cfg->head != init->head)
        return ms_fail(err, MS_ERR_INVALID,
                       "init.model: %s has architecture.head %s but this config %s", ref,
                       mlp_head_name(init->head), mlp_head_name(cfg->head));
    return MS_OK;
}

void train_config_defaults(TrainConfig *c) {
    memset(c, 0, sizeof *c);
    strcpy(c->name, "model");
    c->n_sizes = 4;
    c->sizes[0] = 1, c->sizes[1] = 40, c->sizes[2] = 40, c->sizes[3] = 1;
    c->act = MLP_ACT_RELU;
    c->head = MLP_HEAD_REGRESSION;
    c->algo = META_MAML;
    c->inner_lr = 0.01;
    c->inner_steps = 1;
    c->opt = OPT_ADAM;
    c->outer_lr = 0.001;
    c->clip_norm = 0;
    c->anneal = -1;
    c->adam_beta1 = 0.9, c->adam_beta2 = 0.999, c->adam_eps = 1e-8;
    c->meta_batch = 25;
    c->iterations = 70000;
    c->seed = 1;
    strcpy(c->tasks.family, "sinusoid");
    c->k_support = 10;
    c->k_query = 10;
}

// Rows a sampler yields for k shots: k points, or k per class.
static int rows_for(const TaskSampler *s, int k) {
    return s->classification ? k * s->n_way : k;
}

MsStatus train_config_fit(const TrainConfig *c, int x_dim, int y_dim, int classification,
                          const char *what, MsError *err) {
    int D = c->sizes[0], O = c->sizes[c->n_sizes - 1];
    if (x_dim != D)
        return ms_fail(err, MS_ERR_INVALID, "architecture.sizes[0]: is %d but %s has %d inputs", D,
                       what, x_dim);
    if (classification != (c->head == MLP_HEAD_CLASSIFICATION))
        return ms_fail(err, MS_ERR_INVALID, "architecture.head: '%s' does not fit %s (%s)",
                       mlp_head_name(c->head), what,
                       classification ? "classification" : "regression");
    if (y_dim > 0 && y_dim != O)
        return ms_fail(err, MS_ERR_INVALID, "architecture.sizes[%d]: is %d but %s needs %d outputs",
                       c->n_sizes - 1, O, what, y_dim);
    return MS_OK;
}

// The sampler must produce what the architecture consumes.
static MsStatus check_fit(const TrainConfig *c, const TaskSampler *s, MsError *err) {
    char what[96];
    snprintf(what, sizeof what, "tasks of family '%s'", s->family);
    return train_config_fit(c, s->x_dim, s->y_dim, s->classification, what, err);
}

MsStatus train_config_validate(const TrainConfig *c, MsError *err) {
    MlpSpec spec;
    MsStatus st;
    if (!name_valid(c->name))
        return ms_fail(err, MS_ERR_INVALID,
                       "name: 1..%d characters of [A-Za-z0-9._-], not starting with '.'",
                       TRAIN_NAME_MAX - 1);
    if ((st = mlp_spec_init(&spec, c->sizes, c->n_sizes, c->act, c->head, err)) != MS_OK) return st;
    if ((unsigned)c->algo > META_PRETRAIN)
        return ms_fail(err, MS_ERR_INVALID, "algorithm: unknown algorithm");
    if (!(isfinite(c->inner_lr) && c->inner_lr > 0 && c->inner_lr <= 10))
        return ms_fail(err, MS_ERR_INVALID, "inner.lr: must be a number in (0, 10]");
    int kmin = c->algo == META_PRETRAIN ? 0 : 1;
    if (c->inner_steps < kmin || c->inner_steps > META_MAX_STEPS)
        return ms_fail(err, MS_ERR_INVALID, "inner.steps: must be an integer in %d..%d", kmin,
                       META_MAX_STEPS);
    if (c->opt != OPT_ADAM && c->opt != OPT_SGD)
        return ms_fail(err, MS_ERR_INVALID, "outer.optimizer: must be adam or sgd");
    if (!(isfinite(c->outer_lr) && c->outer_lr > 0 && c->outer_lr <= 10))
        return ms_fail(err, MS_ERR_INVALID, "outer.lr: must be a number in (0, 10]");
    if (!(isfinite(c->clip_norm) && c->clip_norm >= 0))
        return ms_fail(err, MS_ERR_INVALID, "outer.clip_norm: must be a number > 0, or null");
    if (c->anneal < -1 || c->anneal > 1)
        return ms_fail(err, MS_ERR_INVALID, "outer.anneal: must be true or false");
    if (!(c->adam_beta1 >= 0 && c->adam_beta1 < 1))
        return ms_fail(err, MS_ERR_INVALID, "outer.beta1: must be in [0, 1)");
    if (!(c->adam_beta2 >= 0 && c->adam_beta2 < 1))
        return ms_fail(err, MS_ERR_INVALID, "outer.beta2: must be in [0, 1)");
    if (!(isfinite(c->adam_eps) && c->adam_eps > 0))
        return ms_fail(err, MS_ERR_INVALID, "outer.eps: must be a number > 0");
    if (c->meta_batch < 1 || c->meta_batch > 10000)
        return ms_fail(err, MS_ERR_INVALID, "meta_batch: must be an integer in 1..10000");
    if (c->iterations < 1 || c->iterations > 1000000000L)
        return ms_fail(err, MS_ERR_INVALID, "iterations: must be an integer in 1..1000000000");
    if (c->k_support < 1 || c->k_support > 10000)
        return ms_fail(err, MS_ERR_INVALID, "tasks.k_support: must be an integer in 1..10000");
    if (c->k_query < 1 || c->k_query > 10000)
        return ms_fail(err, MS_ERR_INVALID, "tasks.k_query: must be an integer in 1..10000");
    if (c->threads < 0 || c->threads > TRAIN_MAX_THREADS)
        return ms_fail(err, MS_ERR_INVALID, "threads: must be an integer in 1..%d",
                       TRAIN_MAX_THREADS);
    // An uploaded dataset's shapes are checked when its sampler is built
    // (trainer_init_with_sampler).
    if (c->tasks.dataset[0]) return MS_OK;
    TaskSampler *s = NULL;
    if ((st = task_sampler_create(&s, &c->tasks, err)) != MS_OK) return st;
    st = check_fit(c, s, err);
    task_sampler_destroy(s);
    return st;
}

/* ---- limits ---- */

void train_limits_default(TrainLimits *l) {
    l->max_params = 10000000;
    l->max_tape_bytes = (size_t)2 << 30;
    l->max_iterations = 100000000L;
}

MsStatus train_config_check_limits(const TrainConfig *c, const TrainLimits *l, MsError *err) {
    MlpSpec spec;
    MsStatus st = mlp_spec_init(&spec, c->sizes, c->n_sizes, c->act, c->head, err);
    if (st != MS_OK) return st;
    if (spec.P > l->max_params)
        return ms_fail(err, MS_ERR_TOO_LARGE,
                       "architecture.sizes: %zu parameters, the limit is %zu", spec.P,
                       l->max_params);
    if (c->iterations > l->max_iterations)
        return ms_fail(err, MS_ERR_INVALID, "iterations: must be at most %ld (got %ld)",
                       l->max_iterations, c->iterations);
    int way = c->head == MLP_HEAD_CLASSIFICATION
                  ? (c->tasks.n_way > 0 ? c->tasks.n_way : c->sizes[c->n_sizes - 1])
                  : 1;
    // sizes here are bounded (widths <= 4096, k <= 10000, way <= 4096, steps <= 100), so the
    // double products below cannot overflow before the comparison
    double rs = (double)c->k_support * way, rq = (double)c->k_query * way;
    if (rs > 1e8 || rq > 1e8)
        return ms_fail(err, MS_ERR_TOO_LARGE, "tasks.k_support: episodes of %.0f rows", rs);
    size_t tape = meta_work_bytes(&spec, c->algo, c->inner_steps, (int)rs, (int)rq);
    if (tape > l->max_tape_bytes)
        return ms_fail(err, MS_ERR_TOO_LARGE,
                       "inner.steps: %d steps over %.0f support rows need %zu MiB of "
                       "meta-gradient scratch, the limit is %zu MiB",
                       c->inner_steps, rs, tape >> 20, l->max_tape_bytes >> 20);
    return MS_OK;
}

/* ---- trainer ---- */

const real *trainer_lrs(const Trainer *tr) {
    return tr->cfg.algo == META_METASGD ? tr->params + tr->spec.P : NULL;
}

MsStatus trainer_init(Trainer *tr, const TrainConfig *cfg, MsError *err) {
    memset(tr, 0, sizeof *tr);
    if (cfg->tasks.dataset[0])
        return ms_fail(err, MS_ERR_INVALID,
                       "tasks.dataset: a dataset's sampler is built by the caller "
                       "(trainer_init_with_sampler)");
    TaskSampler *s = NULL;
    MsStatus st = train_config_validate(cfg, err);
    if (st == MS_OK) st = task_sampler_create(&s, &cfg->tasks, err);
    if (st != MS_OK) return st;
    return trainer_init_with_sampler(tr, cfg, s, err);
}

MsStatus trainer_init_with_sampler(Trainer *tr, const TrainConfig *cfg, TaskSampler *sampler,
                                   MsError *err) {
    memset(tr, 0, sizeof *tr);
    tr->sampler = sampler;
    MsStatus st = train_config_validate(cfg, err);
    if (st != MS_OK) goto fail;
    if ((st = check_fit(cfg, sampler, err))) goto fail;
    TrainLimits lim;
    train_limits_default(&lim);
    if ((st = train_config_check_limits(cfg, &lim, err))) goto fail;
    tr->cfg = *cfg;
    if (tr->cfg.anneal < 0) tr->cfg.anneal = cfg->algo == META_REPTILE;
    if ((st = mlp_spec_init(&tr->spec, cfg->sizes, cfg->n_sizes, cfg->act, cfg->head, err)))
        goto fail;
    const size_t P = tr->spec.P;
    tr->N = cfg->algo == META_METASGD ? 2 * P : P;
    int nmom = cfg->opt == OPT_ADAM ? 2 : 0;
    tr->params = calloc(tr->N * (size_t)(2 + nmom), sizeof(real));
    if (!tr->params) {
        st = ms_fail(err, MS_ERR_NOMEM, "cannot allocate the parameters");
        goto fail;
    }
    tr->grad = tr->params + tr->N;
    if (nmom) tr->m1 = tr->grad + tr->N, tr->m2 = tr->m1 + tr->N;
    // One seed, two independent streams: initialisation, then the task stream.
    Rng init;
    rng_seed(&init, cfg->seed);
    rng_split(&init, &tr->rng);
    mlp_init_params(&tr->spec, tr->params, &init);
    for (size_t i = P; i < tr->N; i++)
        tr->params[i] = (real)cfg->inner_lr;
    int ms = rows_for(tr->sampler, cfg->k_support), mq = rows_for(tr->sampler, cfg->k_query);
    if ((st = meta_work_init(&tr->mw, &tr->spec, cfg->algo, cfg->inner_steps, ms, mq, err)))
        goto fail;
    if ((st = task_batch_init(&tr->batch, tr->sampler, cfg->k_support, cfg->k_query, err)))
        goto fail;
    tr->wave = 1;
    tr->wave_status = malloc(sizeof *tr->wave_status);
    tr->wave_res = malloc(sizeof *tr->wave_res);
    if (!tr->wave_status || !tr->wave_res) {
        st = ms_fail(err, MS_ERR_NOMEM, "cannot allocate the trainer");
        goto fail;
    }
    return MS_OK;
fail:
    trainer_free(tr);
    return st;
}

// Frees slots 1..wave-1 and the per-slot arrays (zeroed pointers are fine).
static void wave_free(int wave, MetaWork *mw, TaskBatch *tb, MsStatus *status,
                      MetaTaskResult *res) {
    for (int i = 0; i < wave - 1; i++) {
        if (mw) meta_work_free(&mw[i]);
        if (tb) task_batch_free(&tb[i]);
    }
    free(mw);
    free(tb);
    free(status);
    free(res);
}

MsStatus trainer_set_parallel(Trainer *tr, int threads, int wave, TrainParallelFn par, void *ctx,
                              MsError *err) {
    const TrainConfig *c = &tr->cfg;
    if (threads < 1 || threads > TRAIN_MAX_THREADS || (threads > 1 && !par))
        return ms_fail(err, MS_ERR_INVALID, "threads: must be an integer in 1..%d",
                       TRAIN_MAX_THREADS);
    int ms = rows_for(tr->sampler, c->k_support), mq = rows_for(tr->sampler, c->k_query);
    if (wave <= 0) {
        // Whole meta-batches per wave (one hand-off per step) while the scratch stays under
        // 64 MiB; at least one task per thread.
        size_t slot = meta_work_bytes(&tr->spec, c->algo, c->inner_steps, ms, mq);
        size_t fit = slot ? ((size_t)64 << 20) / slot : (size_t)c->meta_batch;
        wave = threads == 1 ? 1 : (int)(fit < (size_t)c->meta_batch ? fit : (size_t)c->meta_batch);
        if (wave < threads) wave = threads;
    }
    if (wave > c->meta_batch) wave = c->meta_batch;
    MetaWork *mw = calloc((size_t)wave, sizeof *mw);
    TaskBatch *tb = calloc((size_t)wave, sizeof *tb);
    MsStatus *status = calloc((size_t)wave, sizeof *status);
    MetaTaskResult *res = calloc((size_t)wave, sizeof *res);
    MsStatus st = MS_OK;
    if (!mw || !tb || !status || !res)
        st = ms_fail(err, MS_ERR_NOMEM, "threads: cannot allocate a wave of %d tasks", wave);
    int made = 0;
    for (; st == MS_OK && made < wave - 1; made++) {
        if ((st = meta_work_init(&mw[made], &tr->spec, c->algo, c->inner_steps, ms, mq, err)))
            break;
        if ((st = task_batch_init(&tb[made], tr->sampler, c->k_support, c->k_query, err))) {
            meta_work_free(&mw[made]);
            break;
        }
    }
    if (st != MS_OK) {
        wave_free(made + 1, mw, tb, status, res);
        return st;
    }
    wave_free(tr->wave, tr->wave_mw, tr->wave_batch, tr->wave_status, tr->wave_res);
    tr->wave = wave;
    tr->wave_mw = mw, tr->wave_batch = tb, tr->wave_status = status, tr->wave_res = res;
    tr->par = threads > 1 ? par : NULL;
    tr->par_ctx = ctx;
    return MS_OK;
}

void trainer_free(Trainer *tr) {
    if (!tr) return;
    wave_free(tr->wave, tr->wave_mw, tr->wave_batch, tr->wave_status, tr->wave_res);
    task_batch_free(&tr->batch);
    meta_work_free(&tr->mw);
    task_sampler_destroy(tr->sampler);
    free(tr->params);
    memset(tr, 0, sizeof *tr);
}

/* ---- checkpoints ---- */

// Image: header, then params (N reals) and, for Adam, m1 and m2 (N reals each). Native byte
// order: an image is read back by the same build (the store's blob adds the checksum).
typedef struct {
    char magic[4];      // "MSTR"
    uint32_t version;   // 1
    uint32_t real_size; // sizeof(real) of the writer
    uint32_t algo, opt;
    uint32_t pad;
    uint64_t N; // trainable reals
    int64_t t;  // completed meta-updates
    uint64_t rng[4];
} TrainerImage;

static size_t image_arrays(const Trainer *tr) {
    return tr->cfg.opt == OPT_ADAM ? 3 : 1;
}

size_t trainer_state_bytes(const Trainer *tr) {
    return sizeof(TrainerImage) + image_arrays(tr) * tr->N * sizeof(real);
}

void trainer_save(const Trainer *tr, void *buf) {
    TrainerImage h;
    memset(&h, 0, sizeof h);
    memcpy(h.magic, "MSTR", 4);
    h.version = 1;
    h.real_size = sizeof(real);
    h.algo = (uint32_t)tr->cfg.algo;
    h.opt = (uint32_t)tr->cfg.opt;
    h.N = tr->N;
    h.t = tr->t;
    memcpy(h.rng, tr->rng.s, sizeof h.rng);
    char *p = buf;
    memcpy(p, &h, sizeof h);
    p += sizeof h;
    memcpy(p, tr->params, tr->N * sizeof(real));
    if (tr->cfg.opt == OPT_ADAM) {
        memcpy(p + tr->N * sizeof(real), tr->m1, tr->N * sizeof(real));
        memcpy(p + 2 * tr->N * sizeof(real), tr->m2, tr->N * sizeof(real));
    }
}

MsStatus trainer_restore(Trainer *tr, const void *buf, size_t n, MsError *err) {
    TrainerImage h;
    if (n < sizeof h) return ms_fail(err, MS_ERR_INVALID, "checkpoint: truncated header");
    memcpy(&h, buf, sizeof h);
    if (memcmp(h.magic, "MSTR", 4) != 0 || h.version != 1)
        return ms_fail(err, MS_ERR_INVALID, "checkpoint: not a trainer image");
    if (h.real_size != sizeof(real) || h.algo != (uint32_t)tr->cfg.algo ||
        h.opt != (uint32_t)tr->cfg.opt || h.N != tr->N)
        return ms_fail(err, MS_ERR_INVALID, "checkpoint: taken from a different configuration");
    if (n != trainer_state_bytes(tr))
        return ms_fail(err, MS_ERR_INVALID, "checkpoint: %zu bytes, expected %zu", n,
                       trainer_state_bytes(tr));
    if (h.t < 0 || h.t > tr->cfg.iterations)
        return ms_fail(err, MS_ERR_INVALID, "checkpoint: iteration %lld out of range",
                       (long long)h.t);
    const char *p = (const char *)buf + sizeof h;
    size_t bytes = tr->N * sizeof(real);
    if (!meta_all_finite((const real *)(const void *)p, tr->N))
        return ms_fail(err, MS_ERR_INVALID, "checkpoint: non-finite parameters");
    memcpy(tr->params, p, bytes);
    if (tr->cfg.opt == OPT_ADAM) {
        memcpy(tr->m1, p + bytes, bytes);
        memcpy(tr->m2, p + 2 * bytes, bytes);
    }
    tr->t = h.t;
    memcpy(tr->rng.s, h.rng, sizeof h.rng);
    return MS_OK;
}

static MetaWork *slot_mw(Trainer *tr, int i) {
    return i == 0 ? &tr->mw : &tr->wave_mw[i - 1];
}

static TaskBatch *slot_batch(Trainer *tr, int i) {
    return i == 0 ? &tr->batch : &tr->wave_batch[i - 1];
}

// One task of a wave on its own slot: the gradient stays in the slot's MetaWork.
static void wave_task(void *arg, int i) {
    Trainer *tr = arg;
    const TaskBatch *tb = slot_batch(tr, i);
    tr->wave_status[i] = meta_task_grad(slot_mw(tr, i), NULL, NULL, tr->params, trainer_lrs(tr),
                                        (real)tr->cfg.inner_lr, tb->xs, tb->ys, tb->n_s, tb->xq,
                                        tb->yq, tb->n_q, 0, &tr->wave_res[i]);
}

MsStatus trainer_step(Trainer *tr, TrainStats *st, MsError *err) {
    const TrainConfig *c = &tr->cfg;
    const size_t P = tr->spec.P, N = tr->N;
    const real *lrs = trainer_lrs(tr);
    real *g = tr->grad;
    memset(g, 0, N * sizeof(real));
    double loss = 0;
    for (int b0 = 0; b0 < c->meta_batch; b0 += tr->wave) {
        int n = c->meta_batch - b0 < tr->wave ? c->meta_batch - b0 : tr->wave;
        // sampling stays sequential: the task stream does not depend on the wave
        for (int i = 0; i < n; i++) {
            MsStatus s = task_sample(tr->sampler, &tr->rng, slot_batch(tr, i));
            if (s != MS_OK) return ms_fail(err, s, "task sampling failed");
        }
        if (tr->par && n > 1)
            tr->par(tr->par_ctx, n, wave_task, tr);
        else
            for (int i = 0; i < n; i++)
                wave_task(tr, i);
        // summed in task order: the same additions, in the same order, as one task at a time
        for (int i = 0; i < n; i++) {
            MsStatus s = tr->wave_status[i];
            if (s == MS_ERR_NUMERIC)
                return ms_fail(err, s,
                               "non-finite loss or gradient at iteration %ld (task %d of the "
                               "meta-batch); lower inner.lr or outer.lr, or set outer.clip_norm",
                               tr->t + 1, b0 + i);
            if (s != MS_OK) return ms_fail(err, s, "meta-gradient failed");
            meta_task_accumulate(slot_mw(tr, i), g, lrs ? g + P : NULL);
            loss += tr->wave_res[i].query_loss;
        }
    }
    // average over the meta-batch; global norm in double
    real inv = (real)(1.0 / c->meta_batch);
    double sq = 0;
    for (size_t i = 0; i < N; i++) {
        g[i] *= inv;
        sq += (double)g[i] * g[i];
    }
    double norm = sqrt(sq);
    if (!isfinite(norm))
        return ms_fail(err, MS_ERR_NUMERIC, "non-finite meta-gradient at iteration %ld", tr->t + 1);
    if (c->clip_norm > 0 && norm > c->clip_norm) {
        real k = (real)(c->clip_norm / norm);
        for (size_t i = 0; i < N; i++)
            g[i] *= k;
    }
    double lr = c->outer_lr;
    if (c->anneal) lr *= 1.0 - (double)tr->t / (double)c->iterations;
    tr->t++;
    if (c->opt == OPT_ADAM) {
        // Adam with bias correction: m_hat = m / (1 - b1^t), v_hat = v / (1 - b2^t)
        double b1 = c->adam_beta1, b2 = c->adam_beta2;
        double c1 = 1.0 - pow(b1, (double)tr->t), c2 = 1.0 - pow(b2, (double)tr->t);
        real step = (real)(lr / c1), eps = (real)c->adam_eps, rc2 = (real)(1.0 / sqrt(c2));
        for (size_t i = 0; i < N; i++) {
            tr->m1[i] = (real)b1 * tr->m1[i] + (real)(1 - b1) * g[i];
            tr->m2[i] = (real)b2 * tr->m2[i] + (real)(1 - b2) * g[i] * g[i];
            tr->params[i] -= step * tr->m1[i] / ((real)sqrt(tr->m2[i]) * rc2 + eps);
        }
    } else {
        for (size_t i = 0; i < N; i++)
            tr->params[i] -= (real)lr * g[i];
    }
    if (st) {
        st->meta_loss = loss / c->meta_batch;
        st->pre_loss = NAN;
        st->grad_norm = norm;
    }
    return MS_OK;
}
