/*
 * Exact Hessian-vector products H v of an MLP's loss by Pearlmutter's R-operator
 * (forward-over-reverse): R{f} = d/dr f(theta + r v) at r = 0, pushed through the forward pass,
 * the loss gradient and the backward pass (docs/math/mlp.md gives every rule used here).
 *
 * Reuses the activations and gradients that mlp_forward_loss and mlp_backward left in the
 * MlpWork (so an inner-loop step's work block serves its own HVP in the MAML reverse sweep), and
 * writes only the r* buffers. Cost: about two extra forward+backward sweeps; no allocation.
 */
#include <string.h>

#include "act.h"
#include "gemm.h"
#include "metaserve/nn/mlp.h"

// rdZ = rdA (.) act'(z) + dA (.) act''(z) (.) rZ, in place over rdZ (which holds rdA on entry).
// act'': relu 0 (away from the kink), tanh -2a(1 - a^2), sigmoid a(1 - a)(1 - 2a).
static void act_rback(MlpAct act, real *rdZ, const real *dA, const real *rZ, const real *a,
                      size_t n) {
    switch (act) {
    case MLP_ACT_RELU:
        for (size_t i = 0; i < n; i++)
            rdZ[i] = a[i] > 0 ? rdZ[i] : 0;
        break;
    case MLP_ACT_TANH:
        for (size_t i = 0; i < n; i++) {
            real d1 = 1 - a[i] * a[i];
            rdZ[i] = rdZ[i] * d1 - 2 * a[i] * d1 * dA[i] * rZ[i];
        }
        break;
    case MLP_ACT_SIGMOID:
        for (size_t i = 0; i < n; i++) {
            real d1 = a[i] * (1 - a[i]);
            rdZ[i] = rdZ[i] * d1 + d1 * (1 - 2 * a[i]) * dA[i] * rZ[i];
        }
        break;
    }
}

void mlp_hvp(MlpWork *w, real *hv, const real *theta, const real *v) {
    const MlpSpec *s = w->spec;
    const int B = w->B, L = s->L, O = s->sizes[L];

    /* R-forward: rA_0 = 0; rZ_l = rA_l W_l^T + A_l V_l^T + vb_l; rA_{l+1} = act'(Z_l) (.) rZ_l */
    for (int l = 0; l < L; l++) {
        int in = s->sizes[l], out = s->sizes[l + 1];
        const real *Ain = l == 0 ? w->X : w->A[l];
        const real *V = v + s->w_off[l], *vb = v + s->b_off[l];
        real *rZ = w->rZ[l];
        for (int i = 0; i < B; i++)
            memcpy(rZ + (size_t)i * out, vb, (size_t)out * sizeof(real));
        gemm(w->naive, 0, 1, B, out, in, 1, Ain, in, V, in, 1, rZ, out);
        if (l > 0)
            gemm(w->naive, 0, 1, B, out, in, 1, w->rA[l], in, theta + s->w_off[l], in, 1, rZ, out);
        if (l < L - 1) act_deriv_mul(s->act, w->rA[l + 1], rZ, w->A[l + 1], (size_t)B * out);
    }

    /* R of the loss gradient at the output */
    const real *rZo = w->rZ[L - 1];
    real *rdZo = w->rdZ[L - 1];
    if (s->head == MLP_HEAD_REGRESSION) {
        // dZ = 2 (Z - Y) / (B O)  =>  R{dZ} = 2 rZ / (B O)
        real scale = (real)(2.0 / ((double)B * O));
        for (size_t i = 0; i < (size_t)B * O; i++)
            rdZo[i] = rZo[i] * scale;
    } else {
        // dZ = (p - onehot) / B, p = softmax(Z)  =>  R{dZ} = p (.) (rZ - <p, rZ>) / B per row
        for (int i = 0; i < B; i++) {
            const real *p = w->prob + (size_t)i * O, *r = rZo + (size_t)i * O;
            real *d = rdZo + (size_t)i * O;
            double dot = 0;
            for (int j = 0; j < O; j++)
                dot += (double)p[j] * r[j];
            for (int j = 0; j < O; j++)
                d[j] = (real)((double)p[j] * ((double)r[j] - dot) / B);
        }
    }

    /* R-backward */
    for (int l = L - 1; l >= 0; l--) {
        int in = s->sizes[l], out = s->sizes[l + 1];
        const real *Ain = l == 0 ? w->X : w->A[l];
        real *hW = hv + s->w_off[l];
        // dW_l = dZ_l^T A_l  =>  R{dW_l} = rdZ_l^T A_l + dZ_l^T rA_l   (rA_0 = 0)
        gemm(w->naive, 1, 0, out, in, B, 1, w->rdZ[l], out, Ain, in, 1, hW, in);
        if (l > 0) gemm(w->naive, 1, 0, out, in, B, 1, w->dZ[l], out, w->rA[l], in, 1, hW, in);
        // db_l = colsum dZ_l  =>  R{db_l} = colsum rdZ_l
        real *hb = hv + s->b_off[l];
        for (int i = 0; i < B; i++)
            for (int j = 0; j < out; j++)
                hb[j] += w->rdZ[l][(size_t)i * out + j];
        if (l > 0) {
            // dA_l = dZ_l W_l  =>  R{dA_l} = rdZ_l W_l + dZ_l V_l
            real *rdA = w->rdA[l];
            gemm(w->naive, 0, 0, B, in, out, 1, w->rdZ[l], out, theta + s->w_off[l], in, 0, rdA,
                 in);
            gemm(w->naive, 0, 0, B, in, out, 1, w->dZ[l], out, v + s->w_off[l], in, 1, rdA, in);
            // dZ_{l-1} = dA_l (.) act'(Z_{l-1})
            //   =>  R{dZ_{l-1}} = R{dA_l} (.) act' + dA_l (.) act'' (.) rZ_{l-1}
            act_rback(s->act, w->rdZ[l - 1], w->dA[l], w->rZ[l - 1], w->A[l], (size_t)B * in);
        }
    }
}
