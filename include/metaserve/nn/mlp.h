/*
 * Multi-layer perceptrons: spec, parameter layout, batched forward, loss, backward (gradient) and
 * the exact Hessian-vector product by Pearlmutter's R-operator.
 *
 * Parameter layout (one contiguous buffer of spec.P reals; gradients, Meta-SGD rates, Adam moments
 * and HVP directions share it): for each linear layer l = 0 .. L-1 in order, first W_l as
 * sizes[l+1] x sizes[l] row-major (row = output unit, as PyTorch's nn.Linear), then b_l as
 * sizes[l+1] values. spec.w_off[l] and spec.b_off[l] give the offsets.
 *
 * Network: A_0 = X (B x D); for l < L-1: Z_l = A_l W_l^T + b_l, A_{l+1} = act(Z_l);
 * the output is Z_{L-1} (B x O). Regression loss is MSE, the mean over B*O squared errors;
 * classification loss is softmax cross-entropy, the mean over B rows, with integer labels.
 *
 * Usage:
 *     MlpSpec s;
 *     mlp_spec_init(&s, (int[]){1, 40, 40, 1}, 4, MLP_ACT_RELU, MLP_HEAD_REGRESSION, &e);
 *     MlpWork w;
 *     mlp_work_init(&w, &s, 64, &e);
 *     double loss = mlp_forward_loss(&w, theta, X, Y, B); // forward, loss, dLoss/dOutput
 *     mlp_backward(&w, grad, theta, 0);                   // grad += dLoss/dtheta (from layer 0)
 *     mlp_hvp(&w, hv, theta, v);                          // hv += H v (after the two above)
 *     mlp_work_free(&w);
 *
 * No function here allocates except mlp_work_init. Nothing here prints.
 */
#ifndef METASERVE_NN_MLP_H
#define METASERVE_NN_MLP_H

#include <stddef.h>

#include "metaserve/core/real.h"
#include "metaserve/core/rng.h"
#include "metaserve/core/status.h"

#define MLP_MAX_LAYERS 16   // linear layers
#define MLP_MAX_WIDTH  4096 // units in any layer

typedef enum { MLP_ACT_RELU, MLP_ACT_TANH, MLP_ACT_SIGMOID } MlpAct;
typedef enum { MLP_HEAD_REGRESSION, MLP_HEAD_CLASSIFICATION } MlpHead;

typedef struct {
    int L;                         // number of linear layers (len(sizes) - 1), 1..MLP_MAX_LAYERS
    int sizes[MLP_MAX_LAYERS + 1]; // sizes[0] = D input width ... sizes[L] = O output width
    MlpAct act;                    // hidden activation (the output layer is linear)
    MlpHead head;                  // loss on the output
    size_t P;                      // total parameter count
    size_t w_off[MLP_MAX_LAYERS];  // offset of W_l in the parameter buffer
    size_t b_off[MLP_MAX_LAYERS];  // offset of b_l in the parameter buffer
} MlpSpec;

/**
 * Fills spec from n_sizes layer widths (n_sizes >= 2). Fails with MS_ERR_INVALID naming the bad
 * entry when a width is < 1 or > MLP_MAX_WIDTH, when there are too many layers, or when a
 * classification head has fewer than 2 outputs.
 */
MsStatus mlp_spec_init(MlpSpec *spec, const int *sizes, int n_sizes, MlpAct act, MlpHead head,
                       MsError *err);

/** Parses "relu" | "tanh" | "sigmoid"; returns MS_ERR_INVALID for anything else. */
MsStatus mlp_act_parse(const char *s, MlpAct *out);
const char *mlp_act_name(MlpAct a);
/** Parses "regression" | "classification". */
MsStatus mlp_head_parse(const char *s, MlpHead *out);
const char *mlp_head_name(MlpHead h);

/** Width of one target row: O for regression, 1 (the class index) for classification. */
int mlp_target_cols(const MlpSpec *spec);

/**
 * PyTorch nn.Linear initialisation: every W_l and b_l entry uniform in [-1/sqrt(in), 1/sqrt(in)]
 * with in = sizes[l]. theta: spec->P reals, overwritten.
 */
void mlp_init_params(const MlpSpec *spec, real *theta, Rng *rng);

/**
 * Scratch for one batch of up to max_B rows: activations, their gradients and their
 * R-tangents. Sized once, reused for every call; one per thread (not shareable).
 */
typedef struct {
    const MlpSpec *spec; // borrowed; must outlive the work block
    int max_B;           // capacity in rows
    int B;               // rows of the last mlp_forward
    int naive;           // 1: use the naive reference loops instead of BLAS (tests)
    const real *X;       // borrowed input of the last forward (B x D), valid until the next call
    const real *Y;       // borrowed targets of the last forward_loss (B x target_cols)
    real *Z[MLP_MAX_LAYERS];   // pre-activations, B x sizes[l+1]; Z[L-1] is the output
    real *A[MLP_MAX_LAYERS];   // A[0] unused (X); A[l] = act(Z[l-1]), B x sizes[l], l >= 1
    real *dZ[MLP_MAX_LAYERS];  // dLoss/dZ[l]
    real *dA[MLP_MAX_LAYERS];  // dLoss/dA[l], l >= 1
    real *rZ[MLP_MAX_LAYERS];  // R{Z[l]} along the HVP direction
    real *rA[MLP_MAX_LAYERS];  // R{A[l]}, l >= 1
    real *rdZ[MLP_MAX_LAYERS]; // R{dZ[l]}
    real *rdA[MLP_MAX_LAYERS]; // R{dA[l]}, l >= 1
    real *prob;                // softmax probabilities (classification), B x O
    real *mem;                 // the one allocation behind every pointer above
} MlpWork;

/** Allocates scratch for batches of up to max_B rows. MS_ERR_NOMEM or MS_ERR_INVALID. */
MsStatus mlp_work_init(MlpWork *w, const MlpSpec *spec, int max_B, MsError *err);
/** Releases the scratch; accepts NULL and a zeroed struct. */
void mlp_work_free(MlpWork *w);
/** Bytes mlp_work_init would allocate for max_B rows. */
size_t mlp_work_bytes(const MlpSpec *spec, int max_B);

/**
 * Forward pass of B rows (B <= max_B). X: B x D, borrowed until the next call on w.
 * Returns a pointer into w to the B x O output (regression values or logits).
 */
const real *mlp_forward(MlpWork *w, const real *theta, const real *X, int B);

/**
 * Forward pass plus loss, and dLoss/dOutput kept in w for mlp_backward / mlp_hvp.
 * Y: B x mlp_target_cols(spec); for classification each entry is a class index in [0, O).
 * Returns the loss (computed in double).
 */
double mlp_forward_loss(MlpWork *w, const real *theta, const real *X, const real *Y, int B);

/** Loss of the outputs of the last mlp_forward against Y, without touching gradients. */
double mlp_loss_only(MlpWork *w, const real *Y);

/**
 * grad += dLoss/dtheta for the batch of the last mlp_forward_loss on w (accumulates; the caller
 * zeroes). Layers below first_layer get no gradient and are skipped (0 = full gradient); ANIL's
 * inner loop passes L-1.
 */
void mlp_backward(MlpWork *w, real *grad, const real *theta, int first_layer);

/**
 * hv += H v, the exact Hessian of the last batch's loss at theta times direction v (P reals),
 * by forward-over-reverse (R-operator). Requires mlp_forward_loss and mlp_backward(first_layer=0)
 * on w at the same theta first; does not disturb their results. Accumulates.
 */
void mlp_hvp(MlpWork *w, real *hv, const real *theta, const real *v);

/** Softmax of the last classification output into w->prob (B x O) and returns it. */
const real *mlp_softmax(MlpWork *w);

/** Multiply-add count of one forward pass on B rows: sum over layers of B * in * out. */
double mlp_forward_macs(const MlpSpec *spec, int B);

#endif
