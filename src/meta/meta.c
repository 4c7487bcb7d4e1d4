/*
 * One task's meta-gradient for MAML, FOMAML, Meta-SGD, ANIL, Reptile and the pretrain baseline,
 * and inner-loop adaptation (docs/math/maml.md derives every recursion used here).
 *
 * Owns the MetaWork tape: theta_0..theta_K and, for the second-order algorithms, one MlpWork per
 * inner step, so that the reverse sweep reuses the activations and gradients of step j for the
 * Hessian-vector product at theta_j instead of recomputing them. First-order algorithms keep a
 * single support block. Nothing is allocated after meta_work_init.
 *
 * Invariant: meta_task_grad either accumulates a finite meta-gradient or returns MS_ERR_NUMERIC
 * having accumulated nothing.
 */
#include "metaserve/meta/meta.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

static const char *const ALGO_NAMES[] = {"maml", "fomaml",  "metasgd",
                                         "anil", "reptile", "pretrain"};

MsStatus meta_algo_parse(const char *s, MetaAlgo *out) {
    for (int i = 0; i < 6; i++) {
        if (s && strcmp(s, ALGO_NAMES[i]) == 0) {
            *out = (MetaAlgo)i;
            return MS_OK;
        }
    }
    return MS_ERR_INVALID;
}

const char *meta_algo_name(MetaAlgo a) {
    return (unsigned)a < 6 ? ALGO_NAMES[a] : "?";
}

// 1 when x is infinite or NaN: every exponent bit set. Testing the raw bits lets the loops that
// use it vectorise, where isfinite() with an early exit does not.
static inline int nonfinite(real x) {
#ifdef MS_REAL_DOUBLE
    uint64_t b;
    memcpy(&b, &x, sizeof b);
    return (b & 0x7ff0000000000000ULL) == 0x7ff0000000000000ULL;
#else
    uint32_t b;
    memcpy(&b, &x, sizeof b);
    return (b & 0x7f800000U) == 0x7f800000U;
#endif
}

int meta_all_finite(const real *x, size_t n) {
    int bad = 0;
    for (size_t i = 0; i < n; i++)
        bad |= nonfinite(x[i]);
    return !bad;
}

/* ---- work ---- */

static int second_order(MetaAlgo a) {
    return a == META_MAML || a == META_METASGD || a == META_ANIL;
}

static int support_blocks(MetaAlgo a, int K) {
    if (K == 0) return 1;
    return second_order(a) ? K : 1;
}

size_t meta_work_bytes(const MlpSpec *spec, MetaAlgo algo, int K, int max_s, int max_q) {
    size_t P = spec->P;
    size_t b = ((size_t)(K + 1) + 4) * P * sizeof(real);
    if (algo == META_METASGD) b += (size_t)K * P * sizeof(real);
    b += (size_t)support_blocks(algo, K) * mlp_work_bytes(spec, max_s);
    b += mlp_work_bytes(spec, max_q);
    return b + (size_t)(K + 1) * sizeof(double);
}

MsStatus meta_work_init(MetaWork *m, const MlpSpec *spec, MetaAlgo algo, int K, int max_s,
                        int max_q, MsError *err) {
    memset(m, 0, sizeof *m);
    if (K < 0 || K > META_MAX_STEPS)
        return ms_fail(err, MS_ERR_INVALID, "inner.steps: must be in 0..%d", META_MAX_STEPS);
    if (max_s < 1 || max_q < 1)
        return ms_fail(err, MS_ERR_INVALID, "support and query sets need at least one row");
    m->spec = spec;
    m->algo = algo;
    m->K = K;
    m->max_s = max_s;
    m->max_q = max_q;
    size_t P = spec->P;
    size_t nreal = ((size_t)(K + 1) + 4) * P + (algo == META_METASGD ? (size_t)K * P : 0);
    int nb = support_blocks(algo, K);
    real *r = calloc(nreal, sizeof(real));
    m->ws = calloc((size_t)nb, sizeof(MlpWork));
    m->support_loss = calloc((size_t)K + 1, sizeof(double));
    m->mem = r;
    if (!r || !m->ws || !m->support_loss) goto nomem;
    m->thetas = r, r += (size_t)(K + 1) * P;
    m->g = r, r += P;
    m->v = r, r += P;
    m->tmp = r, r += P;
    m->glr = r, r += P;
    m->gs = algo == META_METASGD ? r : NULL;
    for (int j = 0; j < nb; j++) {
        if (mlp_work_init(&m->ws[j], spec, max_s, err) != MS_OK) goto fail;
    }
    if (mlp_work_init(&m->wq, spec, max_q, err) != MS_OK) goto fail;
    return MS_OK;
nomem:
    ms_fail(err, MS_ERR_NOMEM, "cannot allocate %zu bytes for the meta-gradient tape",
            meta_work_bytes(spec, algo, K, max_s, max_q));
fail:
    meta_work_free(m);
    return err && err->code != MS_OK ? err->code : MS_ERR_NOMEM;
}

void meta_work_free(MetaWork *m) {
    if (!m) return;
    if (m->ws) {
        int nb = support_blocks(m->algo, m->K);
        for (int j = 0; j < nb; j++)
            mlp_work_free(&m->ws[j]);
    }
    mlp_work_free(&m->wq);
    free(m->ws);
    free(m->support_loss);
    free(m->mem);
    memset(m, 0, sizeof *m);
}

/* ---- inner loop ---- */

// theta_next = theta - rate (.) g over [lo, P), copying [0, lo) unchanged (next may equal theta).
// rate is lrs or alpha. Returns 1 when every updated value is finite.
static int sgd_step(real *next, const real *theta, const real *g, const real *lrs, real alpha,
                    size_t lo, size_t P) {
    int bad = 0;
    if (next != theta) memcpy(next, theta, lo * sizeof(real));
    if (lrs) {
        for (size_t i = lo; i < P; i++) {
            next[i] = theta[i] - lrs[i] * g[i];
            bad |= nonfinite(next[i]);
        }
    } else {
        for (size_t i = lo; i < P; i++) {
            next[i] = theta[i] - alpha * g[i];
            bad |= nonfinite(next[i]);
        }
    }
    return !bad;
}

MsStatus meta_adapt(MlpWork *w, real *theta_out, real *grad, MetaAlgo algo, const real *theta0,
                    const real *lrs, real alpha, int steps, const real *xs, const real *ys, int ns,
                    double *loss_before, double *loss_after) {
    const MlpSpec *s = w->spec;
    const size_t P = s->P;
    const int head_layer = algo == META_ANIL ? s->L - 1 : 0;
    const size_t head_off = algo == META_ANIL ? s->w_off[s->L - 1] : 0;
    memcpy(theta_out, theta0, P * sizeof(real));
    double loss = 0;
    for (int j = 0; j < steps; j++) {
        loss = mlp_forward_loss(w, theta_out, xs, ys, ns);
        if (!isfinite(loss)) return MS_ERR_NUMERIC;
        if (j == 0 && loss_before) *loss_before = loss;
        memset(grad + head_off, 0, (P - head_off) * sizeof(real));
        mlp_backward(w, grad, theta_out, head_layer);
        if (!sgd_step(theta_out, theta_out, grad, lrs, alpha, head_off, P)) return MS_ERR_NUMERIC;
    }
    if (loss_after || (steps == 0 && loss_before)) {
        mlp_forward(w, theta_out, xs, ns);
        loss = mlp_loss_only(w, ys);
        if (!isfinite(loss)) return MS_ERR_NUMERIC;
        if (loss_after) *loss_after = loss;
        if (steps == 0 && loss_before) *loss_before = loss;
    }
    return MS_OK;
}

/* ---- meta-gradient ---- */

// y += a x; returns 1 when every updated y is finite.
static int axpy(real *y, real a, const real *x, size_t n) {
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        y[i] += a * x[i];
        bad |= nonfinite(y[i]);
    }
    return !bad;
}

MsStatus meta_task_grad(MetaWork *m, real *g_theta, real *g_lrs, const real *theta, const real *lrs,
                        real alpha, const real *xs, const real *ys, int ns, const real *xq,
                        const real *yq, int nq, int with_initial_losses, MetaTaskResult *res) {
    const MlpSpec *s = m->spec;
    const size_t P = s->P;
    const MetaAlgo algo = m->algo;
    const int K = algo == META_PRETRAIN ? 0 : m->K;
    const int head_layer = algo == META_ANIL ? s->L - 1 : 0;
    const size_t head_off = algo == META_ANIL ? s->w_off[s->L - 1] : 0;
    const real *rates = algo == META_METASGD ? lrs : NULL;
    MS_ASSERT(ns <= m->max_s && nq <= m->max_q);
    MS_ASSERT(algo != META_METASGD || (lrs && (g_lrs || !g_theta)));

    /* inner loop: theta_{j+1} = theta_j - alpha (.) grad L_s(theta_j) */
    // theta_0 is the caller's theta (slot 0 of the tape stays unused: one copy fewer per task)
    real *th = m->thetas;
    for (int j = 0; j < K; j++) {
        MlpWork *w = &m->ws[second_order(algo) ? j : 0];
        const real *tj = j == 0 ? theta : th + (size_t)j * P;
        real *tn = th + (size_t)(j + 1) * P;
        double ls = mlp_forward_loss(w, tj, xs, ys, ns);
        if (!isfinite(ls)) return MS_ERR_NUMERIC;
        m->support_loss[j] = ls;
        real *g = algo == META_METASGD ? m->gs + (size_t)j * P : m->g;
        memset(g, 0, P * sizeof(real));
        mlp_backward(w, g, tj, head_layer);
        if (!sgd_step(tn, tj, g, rates, alpha, head_off, P)) return MS_ERR_NUMERIC;
    }
    if (K == 0) memcpy(th, theta, P * sizeof(real)); // keep "thetas + K*P = adapted" true
    const real *tK = th + (size_t)K * P;

    /* outer objective L_q(theta_K) and v = grad L_q(theta_K) */
    double lq = mlp_forward_loss(&m->wq, tK, xq, yq, nq);
    if (!isfinite(lq)) return MS_ERR_NUMERIC;
    real *v = m->v;
    memset(v, 0, P * sizeof(real));
    if (algo == META_REPTILE) {
        // Reptile's direction theta_0 - theta_K: a descent step moves toward the adapted weights.
        for (size_t i = 0; i < P; i++)
            v[i] = theta[i] - tK[i];
    } else {
        mlp_backward(&m->wq, v, tK, 0);
    }

    /* reverse sweep through the inner steps (second-order algorithms only) */
    int finite_v = 0;
    if (algo == META_METASGD) memset(m->glr, 0, P * sizeof(real));
    for (int j = K - 1; j >= 0 && second_order(algo); j--) {
        MlpWork *w = &m->ws[j];
        const real *tj = j == 0 ? theta : th + (size_t)j * P;
        real *dir = m->g, *hv = m->tmp;
        memset(hv, 0, P * sizeof(real));
        if (algo == META_MAML) {
            // v <- v - alpha H_j v
            mlp_hvp(w, hv, tj, v);
            finite_v = axpy(v, -alpha, hv, P);
        } else if (algo == META_METASGD) {
            // dL/dalpha += -g_j (.) v_{j+1};  v <- v - H_j (alpha (.) v)
            const real *gj = m->gs + (size_t)j * P;
            for (size_t i = 0; i < P; i++) {
                m->glr[i] -= gj[i] * v[i];
                dir[i] = lrs[i] * v[i];
            }
            mlp_hvp(w, hv, tj, dir);
            finite_v = axpy(v, -1, hv, P);
        } else {
            // ANIL: v <- v - alpha H_j (P v). The inner step back-propagated through the head
            // only; the HVP needs every layer's gradient state, so complete it first.
            memset(dir, 0, P * sizeof(real));
            mlp_backward(w, dir, tj, 0);
            memset(dir, 0, head_off * sizeof(real));
            memcpy(dir + head_off, v + head_off, (P - head_off) * sizeof(real));
            mlp_hvp(w, hv, tj, dir);
            finite_v = axpy(v, -alpha, hv, P);
        }
    }
    // the last axpy of a reverse sweep already checked v; first-order directions are checked here
    if (!finite_v && !meta_all_finite(v, P)) return MS_ERR_NUMERIC;
    if (algo == META_METASGD && !meta_all_finite(m->glr, P)) return MS_ERR_NUMERIC;

    if (res) {
        res->query_loss = lq;
        res->query_loss_initial = NAN;
        res->support_loss_final = NAN;
        if (with_initial_losses) {
            // The tape is no longer needed: reuse the first support block and the query block.
            mlp_forward(&m->ws[0], tK, xs, ns);
            res->support_loss_final = mlp_loss_only(&m->ws[0], ys);
            m->support_loss[K] = res->support_loss_final;
            mlp_forward(&m->wq, theta, xq, nq);
            res->query_loss_initial = mlp_loss_only(&m->wq, yq);
        }
    }
    if (g_theta) meta_task_accumulate(m, g_theta, g_lrs);
    return MS_OK;
}

void meta_task_accumulate(const MetaWork *m, real *g_theta, real *g_lrs) {
    axpy(g_theta, 1, m->v, m->spec->P);
    if (m->algo == META_METASGD) axpy(g_lrs, 1, m->glr, m->spec->P);
}
