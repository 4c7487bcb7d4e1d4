/*
 * Meta-gradients of one task for the MAML family, and inner-loop adaptation.
 *
 * For a task with support set s and query set q, inner SGD runs K steps from theta_0:
 *     theta_{j+1} = theta_j - alpha (.) grad L_s(theta_j)       (alpha scalar, or per-parameter
 *                                                                for Meta-SGD; ANIL: head only)
 * and the task's meta-gradient is d L_q(theta_K) / d theta_0 (and / d alpha for Meta-SGD), by
 * reverse accumulation with one exact Hessian-vector product per step (docs/math/maml.md):
 *     MAML     v <- v - alpha H_j v
 *     Meta-SGD v <- v - H_j (alpha (.) v),   dL/dalpha += -g_j (.) v_{j+1}
 *     ANIL     v <- v - alpha H_j (P v)      (P keeps the output-layer coordinates)
 *     FOMAML   v <- v                         (the Hessian term dropped)
 * Reptile contributes theta_0 - theta_K (so a descent step moves theta toward the adapted
 * weights); the "pretrain" baseline contributes grad L_q(theta_0) with no adaptation.
 *
 * A MetaWork holds the K+1 parameter vectors and K+1 activation blocks the reverse sweep needs:
 * memory is (K+1) * (P + mlp_work_bytes) and is allocated once by meta_work_init.
 */
#ifndef METASERVE_META_META_H
#define METASERVE_META_META_H

#include "metaserve/core/real.h"
#include "metaserve/core/status.h"
#include "metaserve/nn/mlp.h"

typedef enum {
    META_MAML,
    META_FOMAML,
    META_METASGD,
    META_ANIL,
    META_REPTILE,
    META_PRETRAIN // baseline: joint training on all tasks, no meta-learning
} MetaAlgo;

#define META_MAX_STEPS 100 // inner steps accepted anywhere

/** Parses "maml" | "fomaml" | "metasgd" | "anil" | "reptile" | "pretrain". */
MsStatus meta_algo_parse(const char *s, MetaAlgo *out);
const char *meta_algo_name(MetaAlgo a);

typedef struct {
    const MlpSpec *spec; // borrowed
    MetaAlgo algo;
    int K;                // inner steps (0 allowed: the query loss at theta_0)
    int max_s, max_q;     // row capacities of the support and query sets
    real *thetas;         // (K+1) x P: theta_1 .. theta_K in slots 1..K (theta_0 is the
                          // caller's; slot 0 holds a copy only when K = 0)
    real *g;              // P: inner gradient scratch
    real *v;              // P: adjoint
    real *tmp;            // P: Hessian-vector product scratch
    real *glr;            // P: Meta-SGD rate gradient of the current task (added on success)
    real *gs;             // K x P: inner gradients g_j (Meta-SGD only, else NULL)
    MlpWork *ws;          // K support work blocks, one per inner step (activations at theta_j)
    MlpWork wq;           // query work block
    double *support_loss; // K+1: support loss at theta_0 .. theta_K (last filled on request)
    void *mem;
} MetaWork;

/** Per-task figures from meta_task_grad. */
typedef struct {
    double query_loss;         // L_q(theta_K)
    double query_loss_initial; // L_q(theta_0) when with_initial_losses, else NAN
    double support_loss_final; // L_s(theta_K) when with_initial_losses, else NAN
} MetaTaskResult;

/** Allocates for K inner steps and up to max_s / max_q rows. MS_ERR_INVALID, MS_ERR_NOMEM. */
MsStatus meta_work_init(MetaWork *m, const MlpSpec *spec, MetaAlgo algo, int K, int max_s,
                        int max_q, MsError *err);
/** Accepts NULL and a zeroed struct. */
void meta_work_free(MetaWork *m);
/** Bytes meta_work_init would allocate. */
size_t meta_work_bytes(const MlpSpec *spec, MetaAlgo algo, int K, int max_s, int max_q);

/**
 * Accumulates one task's meta-gradient: g_theta += dL_q(theta_K)/dtheta_0 (P reals) and, for
 * Meta-SGD, g_lrs += dL_q/dalpha (P reals; NULL otherwise). With g_theta NULL nothing is
 * accumulated: the task's gradient stays in m until meta_task_accumulate adds it (so tasks can
 * run on several MetaWorks at once and still be summed in a fixed order). lrs: per-parameter inner
 * rates for Meta-SGD (P reals), NULL otherwise (alpha is used). xs: ns x D, ys: ns x target_cols,
 * xq: nq x D, yq: nq x target_cols. After the call m->thetas + K*P holds the adapted weights and
 * m->support_loss[0..K-1] the support losses before each step.
 * Returns MS_ERR_NUMERIC (nothing accumulated) when a loss or gradient is not finite.
 */
MsStatus meta_task_grad(MetaWork *m, real *g_theta, real *g_lrs, const real *theta, const real *lrs,
                        real alpha, const real *xs, const real *ys, int ns, const real *xq,
                        const real *yq, int nq, int with_initial_losses, MetaTaskResult *res);

/** Adds the gradient of the last successful meta_task_grad on m: exactly the additions
 *  meta_task_grad makes when given g_theta (and g_lrs for Meta-SGD). */
void meta_task_accumulate(const MetaWork *m, real *g_theta, real *g_lrs);

/**
 * Adapts theta0 to a support set with `steps` inner SGD steps (per-parameter lrs when non-NULL,
 * else alpha; ANIL adapts the output layer only) into theta_out (P reals; may not alias theta0).
 * w: a work block of at least ns rows; grad: P reals of scratch. Reports the support loss before
 * and after (either pointer may be NULL). MS_ERR_NUMERIC when the loss or a gradient is not
 * finite. theta0 is never written.
 */
MsStatus meta_adapt(MlpWork *w, real *theta_out, real *grad, MetaAlgo algo, const real *theta0,
                    const real *lrs, real alpha, int steps, const real *xs, const real *ys, int ns,
                    double *loss_before, double *loss_after);

/** 1 when every one of n values is finite. */
int meta_all_finite(const real *x, size_t n);

#endif
