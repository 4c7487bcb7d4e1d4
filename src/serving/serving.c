/*
 * Model-version cache and adaptation (serving/serving.h).
 *
 * Owns: the LRU list of loaded versions (capacity tens of versions; a linear scan is cheaper than
 * a hash at that size), its lock and counters. Loading happens outside the lock (a store read and
 * a JSON parse), so a slow load never blocks hits; two threads missing on the same version at
 * once both load it and the second insert is dropped.
 *
 * Adaptation allocates its scratch per call (one MlpWork and two parameter copies, bounded by the
 * limits checked first) and never touches the cached parameters; so does prediction (one
 * MlpWork of at most SERVING_PREDICT_WORK_BYTES).
 */
#include "metaserve/serving/serving.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "metaserve/codec/codec.h"
#include "metaserve/meta/meta.h"

_Static_assert(sizeof(real) == sizeof(float), "serving/ runs on the float build of the core");

// A resolved reference: "name" or "name@alias" -> version, trusted for RESOLVE_TTL_MS. Moves made
// through this process (alias set or delete, model delete) invalidate at once; a version written
// by a job becomes "latest" for bare names within the TTL. On a shared store (several replicas
// on PostgreSQL) moves and deletes made through another replica are seen within the same TTL:
// references re-resolve after it, and a cached version is confirmed to still exist once per TTL
// before it serves (one indexed lookup; versions are immutable, so only their existence can
// change).
#define RESOLVE_SLOTS  256
#define RESOLVE_TTL_MS 1000
typedef struct {
    char ref[2 * STORE_NAME_MAX + 2];
    char name[STORE_NAME_MAX];
    int version;
    int64_t at_ms;
} Resolved;

struct Serving {
    Resolved resolved[RESOLVE_SLOTS]; // direct-mapped by a hash of ref
    pthread_mutex_t mu;
    int capacity, size;
    ServingModel *head, *tail; // most recently used first
    ServingStats stats;
};

MsStatus serving_create(Serving **out, int capacity, MsError *err) {
    *out = NULL;
    if (capacity < 1) return ms_fail(err, MS_ERR_INVALID, "registry: capacity must be >= 1");
    Serving *r = calloc(1, sizeof *r);
    if (!r) return ms_fail(err, MS_ERR_NOMEM, "registry: out of memory");
    pthread_mutex_init(&r->mu, NULL);
    r->capacity = capacity;
    *out = r;
    return MS_OK;
}

static void model_free(ServingModel *m) {
    if (!m) return;
    free(m->theta);
    free(m->lrs);
    free(m);
}

static void unlink_model(Serving *r, ServingModel *m) {
    if (m->prev)
        m->prev->next = m->next;
    else
        r->head = m->next;
    if (m->next)
        m->next->prev = m->prev;
    else
        r->tail = m->prev;
    m->prev = m->next = NULL;
    m->cached = 0;
    r->size--;
}

static void push_front(Serving *r, ServingModel *m) {
    m->prev = NULL;
    m->next = r->head;
    if (r->head) r->head->prev = m;
    r->head = m;
    if (!r->tail) r->tail = m;
    m->cached = 1;
    r->size++;
}

void serving_destroy(Serving *r) {
    if (!r) return;
    while (r->head) {
        ServingModel *m = r->head;
        unlink_model(r, m);
        model_free(m);
    }
    pthread_mutex_destroy(&r->mu);
    free(r);
}

// Loads name@version from the store into a new, unreferenced model.
static MsStatus load(Store *st, const char *name, int version, ServingModel **out, MsError *err) {
    StoreModel sm;
    MsStatus s = store_model_get(st, name, version, &sm, err);
    // other threads' replies use the cached version without reading it: durable first
    if (s == MS_OK && (s = store_durable_fence(st, err)) != MS_OK) store_model_free(&sm);
    if (s != MS_OK) return s;
    ServingModel *m = calloc(1, sizeof *m);
    if (!m) {
        store_model_free(&sm);
        return ms_fail(err, MS_ERR_NOMEM, "registry: out of memory");
    }
    snprintf(m->name, sizeof m->name, "%s", sm.name);
    m->version = sm.version;
    m->checked_ms = store_now_ms();
    s = codec_config_parse(&m->cfg, sm.config, strlen(sm.config), err);
    if (s == MS_ERR_INVALID) {
        // the config was printed by the codec when the job was queued; cJSON's failure does not
        // tell running out of memory from a damaged file, so the message names both
        char why[160];
        snprintf(why, sizeof why, "%.150s", err ? err->msg : "");
        s = ms_fail(err, MS_ERR_DB,
                    "model %s@%d: its stored config could not be read (out of memory, or the "
                    "file is damaged): %s",
                    name, version, why);
    }
    if (s == MS_OK)
        s = mlp_spec_init(&m->spec, m->cfg.sizes, m->cfg.n_sizes, m->cfg.act, m->cfg.head, err);
    if (s == MS_OK && m->spec.P != sm.n_params)
        s = ms_fail(err, MS_ERR_DB, "model %s@%d: %zu parameters stored, config needs %zu", name,
                    version, sm.n_params, m->spec.P);
    if (s == MS_OK) {
        // take the arrays over from the store's copy
        m->theta = sm.params, sm.params = NULL;
        m->lrs = sm.inner_lrs, sm.inner_lrs = NULL;
    }
    store_model_free(&sm);
    if (s != MS_OK) {
        model_free(m);
        return s == MS_ERR_INVALID ? MS_ERR_DB : s; // a stored config that no longer parses
    }
    *out = m;
    return MS_OK;
}

static size_t ref_slot(const char *ref) {
    uint64_t h = 1469598103934665603ULL; // FNV-1a
    for (const char *c = ref; *c; c++)
        h = (h ^ (unsigned char)*c) * 1099511628211ULL;
    return (size_t)(h % RESOLVE_SLOTS);
}

// name@N with N all digits: the version is explicit and needs no store to resolve.
static int explicit_version(const char *ref, char name[STORE_NAME_MAX], int *version) {
    const char *at = strchr(ref, '@');
    if (!at || at == ref || (size_t)(at - ref) >= STORE_NAME_MAX || !at[1] || strlen(at + 1) > 9)
        return 0;
    for (const char *c = at + 1; *c; c++)
        if (*c < '0' || *c > '9') return 0;
    memcpy(name, ref, (size_t)(at - ref));
    name[at - ref] = '\0';
    *version = atoi(at + 1);
    return *version > 0;
}

// Resolves ref to (name, version) from the resolution cache, or from the store (and records it).
static MsStatus resolve(Serving *r, Store *st, const char *ref, char name[STORE_NAME_MAX],
                        int *version, int *explicit_v, MsError *err) {
    *explicit_v = explicit_version(ref, name, version);
    if (*explicit_v) return MS_OK;
    size_t slot = ref_slot(ref);
    int64_t now = store_now_ms();
    pthread_mutex_lock(&r->mu);
    Resolved *e = &r->resolved[slot];
    if (strcmp(e->ref, ref) == 0 && now - e->at_ms < RESOLVE_TTL_MS) {
        memcpy(name, e->name, STORE_NAME_MAX);
        *version = e->version;
        pthread_mutex_unlock(&r->mu);
        return MS_OK;
    }
    pthread_mutex_unlock(&r->mu);
    if (!st)
        return ms_fail_detail(err, MS_ERR_DB, MS_DETAIL_UNAVAILABLE,
                              "database unavailable: %s is not resolved in this process", ref);
    MsStatus s = store_model_resolve(st, ref, name, version, err);
    // other threads' replies use the cached resolution without reading it: durable first
    if (s == MS_OK) s = store_durable_fence(st, err);
    if (s != MS_OK || strlen(ref) >= sizeof e->ref) return s;
    pthread_mutex_lock(&r->mu);
    snprintf(e->ref, sizeof e->ref, "%s", ref);
    memcpy(e->name, name, STORE_NAME_MAX);
    e->version = *version;
    e->at_ms = now;
    pthread_mutex_unlock(&r->mu);
    return MS_OK;
}

// Asks a shared store whether the cached version m still exists; a version deleted through
// another replica leaves the cache (with its name's resolutions) and gives MS_ERR_NOT_FOUND.
static MsStatus confirm(Serving *r, Store *st, ServingModel *m, int64_t now, MsError *err) {
    char ref[2 * STORE_NAME_MAX + 2], name[STORE_NAME_MAX];
    int v = 0;
    snprintf(ref, sizeof ref, "%s@%d", m->name, m->version);
    MsError e = {0};
    MsStatus s = store_model_resolve(st, ref, name, &v, &e);
    if (s == MS_ERR_NOT_FOUND) {
        serving_invalidate(r, m->name);
        return ms_fail(err, s, "%s", e.msg);
    }
    // The database unreachable (or busy) says nothing about the version: serve it, and ask again
    // on the next call.
    if (s != MS_OK) return MS_OK;
    pthread_mutex_lock(&r->mu);
    m->checked_ms = now;
    pthread_mutex_unlock(&r->mu);
    return MS_OK;
}

MsStatus serving_get(Serving *r, Store *st, const char *ref, ServingModel **out, MsError *err) {
    *out = NULL;
    char name[STORE_NAME_MAX];
    int version = 0, explicit_v = 0;
    MsStatus s = resolve(r, st, ref, name, &version, &explicit_v, err);
    if (s != MS_OK) return s;
    int64_t now = store_now_ms();
    int shared = store_is_shared(st);
    pthread_mutex_lock(&r->mu);
    for (ServingModel *m = r->head; m; m = m->next) {
        if (m->version == version && strcmp(m->name, name) == 0) {
            unlink_model(r, m);
            push_front(r, m);
            m->refs++;
            r->stats.hits++;
            int stale = shared && now - m->checked_ms >= RESOLVE_TTL_MS;
            pthread_mutex_unlock(&r->mu);
            // the reference held keeps m alive while the store is asked outside the lock
            if (stale && (s = confirm(r, st, m, now, err)) != MS_OK) {
                serving_release(r, m);
                return s;
            }
            *out = m;
            return MS_OK;
        }
    }
    r->stats.misses++;
    pthread_mutex_unlock(&r->mu);
    ServingModel *m = NULL;
    if (!st)
        return ms_fail_detail(err, MS_ERR_DB, MS_DETAIL_UNAVAILABLE,
                              "database unavailable: %s@%d is not loaded in this process", name,
                              version);
    if ((s = load(st, name, version, &m, err)) != MS_OK) return s;
    pthread_mutex_lock(&r->mu);
    r->stats.loaded++;
    m->refs = 1;
    int dup = 0;
    for (ServingModel *c = r->head; c; c = c->next)
        dup |= c->version == version && strcmp(c->name, name) == 0;
    if (!dup) {
        push_front(r, m);
        // evict from the cold end; referenced versions leave the list and die on release
        while (r->size > r->capacity) {
            ServingModel *t = r->tail;
            unlink_model(r, t);
            if (t->refs == 0) model_free(t);
        }
    }
    r->stats.size = r->size;
    pthread_mutex_unlock(&r->mu);
    *out = m;
    return MS_OK;
}

void serving_release(Serving *r, ServingModel *m) {
    if (!m) return;
    pthread_mutex_lock(&r->mu);
    int dead = --m->refs == 0 && !m->cached;
    pthread_mutex_unlock(&r->mu);
    if (dead) model_free(m);
}

void serving_forget_refs(Serving *r, const char *name) {
    pthread_mutex_lock(&r->mu);
    for (size_t i = 0; i < RESOLVE_SLOTS; i++)
        if (strcmp(r->resolved[i].name, name) == 0) r->resolved[i].ref[0] = '\0';
    pthread_mutex_unlock(&r->mu);
}

void serving_invalidate(Serving *r, const char *name) {
    pthread_mutex_lock(&r->mu);
    for (size_t i = 0; i < RESOLVE_SLOTS; i++)
        if (strcmp(r->resolved[i].name, name) == 0) r->resolved[i].ref[0] = '\0';
    ServingModel *m = r->head;
    while (m) {
        ServingModel *next = m->next;
        if (strcmp(m->name, name) == 0) {
            unlink_model(r, m);
            if (m->refs == 0) model_free(m);
        }
        m = next;
    }
    r->stats.size = r->size;
    pthread_mutex_unlock(&r->mu);
}

void serving_stats(Serving *r, ServingStats *out) {
    pthread_mutex_lock(&r->mu);
    *out = r->stats;
    out->size = r->size;
    pthread_mutex_unlock(&r->mu);
}

/* ---- adaptation ---- */

void adapt_limits_default(AdaptLimits *l) {
    l->max_support_rows = 10000;
    l->max_steps = META_MAX_STEPS;
    l->max_work = 2000000000LL;
    l->max_ttl_ms = 7LL * 24 * 3600 * 1000;
}

static MsStatus check_request(const ServingModel *m, const AdaptRequest *q, const AdaptLimits *l,
                              int steps, MsError *err) {
    const MlpSpec *s = &m->spec;
    const int D = s->sizes[0], O = s->sizes[s->L], yc = mlp_target_cols(s);
    if (q->n < 1) return ms_fail(err, MS_ERR_INVALID, "support: needs at least one example");
    if (q->n > l->max_support_rows)
        return ms_fail(err, MS_ERR_TOO_LARGE, "support: %d examples, the limit is %d", q->n,
                       l->max_support_rows);
    // one rule for a support set: it is adapted to in at least one step. Zero steps would answer
    // with the meta-parameters unchanged while saying they were adapted.
    if (steps == 0 && q->steps < 0)
        return ms_fail(err, MS_ERR_INVALID,
                       "steps: this model's own inner steps are 0 (a pretrain baseline); give "
                       "steps in 1..%d to adapt it",
                       l->max_steps);
    if (steps == 0)
        return ms_fail(err, MS_ERR_INVALID,
                       "steps: must be at least 1 with a support set (0 steps would leave the "
                       "model unchanged); leave the support set out to predict with the "
                       "meta-parameters");
    if (steps < 0 || steps > l->max_steps)
        return ms_fail(err, MS_ERR_INVALID, "steps: must be in 1..%d", l->max_steps);
    if ((double)steps * q->n * (double)s->P > (double)l->max_work)
        return ms_fail(err, MS_ERR_TOO_LARGE,
                       "steps: %d steps x %d examples x %zu parameters exceeds the work limit %lld",
                       steps, q->n, s->P, (long long)l->max_work);
    if (!(q->lr <= 0 || (isfinite(q->lr) && q->lr <= 10)))
        return ms_fail(err, MS_ERR_INVALID, "lr: must be a number in (0, 10]");
    if (q->ttl_ms > l->max_ttl_ms)
        return ms_fail(err, MS_ERR_INVALID, "ttl_s: at most %lld",
                       (long long)(l->max_ttl_ms / 1000));
    for (int i = 0; i < q->n; i++) {
        for (int j = 0; j < D; j++)
            if (!isfinite(q->x[(size_t)i * D + j]))
                return ms_fail(err, MS_ERR_INVALID, "support.x[%d][%d]: not a finite number", i, j);
        for (int j = 0; j < yc; j++) {
            float y = q->y[(size_t)i * yc + j];
            if (!isfinite(y))
                return ms_fail(err, MS_ERR_INVALID, "support.y[%d][%d]: not a finite number", i, j);
            if (s->head == MLP_HEAD_CLASSIFICATION && (y < 0 || y >= O || y != floorf(y)))
                return ms_fail(err, MS_ERR_INVALID,
                               "support.y[%d][0]: a class index in 0..%d is required", i, O - 1);
        }
    }
    return MS_OK;
}

MsStatus serving_adapt_check(const ServingModel *m, const AdaptRequest *q, const AdaptLimits *lim,
                             MsError *err) {
    return check_request(m, q, lim, q->steps < 0 ? m->cfg.inner_steps : q->steps, err);
}

MsStatus serving_adapt_copy(const ServingModel *m, const AdaptRequest *q, const AdaptLimits *lim,
                            float *out_theta, double *loss_before, double *loss_after,
                            MsError *err) {
    const MlpSpec *s = &m->spec;
    const int steps = q->steps < 0 ? m->cfg.inner_steps : q->steps;
    MsStatus st = serving_adapt_check(m, q, lim, err);
    if (st != MS_OK) return st;
    const double alpha = q->lr > 0 ? q->lr : m->cfg.inner_lr;
    MlpWork w;
    real *grad = malloc(2 * s->P * sizeof(real)), *rates = NULL;
    if (!grad) return ms_fail(err, MS_ERR_NOMEM, "adapt: out of memory");
    if ((st = mlp_work_init(&w, s, q->n, err)) != MS_OK) goto done;
    if (m->lrs) {
        // learned per-parameter rates; an explicit lr rescales them by lr / alpha_train
        rates = grad + s->P;
        double k = q->lr > 0 ? q->lr / m->cfg.inner_lr : 1.0;
        for (size_t i = 0; i < s->P; i++)
            rates[i] = (real)(m->lrs[i] * k);
    }
    st = meta_adapt(&w, out_theta, grad, m->cfg.algo, m->theta, rates, (real)alpha, steps, q->x,
                    q->y, q->n, loss_before, loss_after);
    if (st == MS_ERR_NUMERIC)
        ms_fail(err, st, "adaptation diverged (non-finite loss); lower lr or steps");
    mlp_work_free(&w);
done:
    free(grad);
    return st;
}

MsStatus serving_adapt(Serving *r, Store *st, const char *ref, const AdaptRequest *req,
                       const AdaptLimits *lim, StoreAdaptation *out, MsError *err) {
    memset(out, 0, sizeof *out);
    ServingModel *m;
    MsStatus s = serving_get(r, st, ref, &m, err);
    if (s != MS_OK) return s;
    out->params = malloc(m->spec.P * sizeof(float));
    if (!out->params) {
        s = ms_fail(err, MS_ERR_NOMEM, "adapt: out of memory");
        goto done;
    }
    s = serving_adapt_copy(m, req, lim, out->params, &out->support_loss_before,
                           &out->support_loss_after, err);
    if (s != MS_OK) goto done;
    snprintf(out->model, sizeof out->model, "%s", m->name);
    out->version = m->version;
    out->n_params = m->spec.P;
    out->expires_at = store_now_ms() + (req->ttl_ms > 0 ? req->ttl_ms : 3600LL * 1000);
    s = store_adaptation_put(st, out, err);
done:
    serving_release(r, m);
    if (s != MS_OK) store_adaptation_free(out);
    return s;
}

/* ---- prediction ---- */

MsStatus serving_predict(const MlpSpec *s, const float *theta, const float *x, int rows, float *out,
                         MsError *err) {
    const int D = s->sizes[0], O = s->sizes[s->L];
    size_t per_row = mlp_work_bytes(s, 1);
    size_t fit = per_row ? SERVING_PREDICT_WORK_BYTES / per_row : (size_t)rows;
    int chunk = fit < 1 ? 1 : fit < (size_t)rows ? (int)fit : rows;
    MlpWork w;
    MsStatus st = mlp_work_init(&w, s, chunk, err);
    if (st != MS_OK) return st;
    for (int i0 = 0; i0 < rows && st == MS_OK; i0 += chunk) {
        const int B = rows - i0 < chunk ? rows - i0 : chunk;
        const real *z = mlp_forward(&w, theta, x + (size_t)i0 * D, B);
        if (!meta_all_finite(z, (size_t)B * O)) {
            st = ms_fail(err, MS_ERR_NUMERIC,
                         "prediction: the model's output is not finite for rows %d..%d of x", i0,
                         i0 + B - 1);
            break;
        }
        if (s->head == MLP_HEAD_CLASSIFICATION) z = mlp_softmax(&w);
        memcpy(out + (size_t)i0 * O, z, (size_t)B * O * sizeof(float));
    }
    mlp_work_free(&w);
    return st;
}
