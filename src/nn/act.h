/*
 * Private to nn/: the activation derivative both the backward pass (mlp.c) and the R-operator's
 * forward pass (mlp_hvp.c) multiply by. static inline, so that the float and double builds of
 * nn/ each carry their own copy without a symbol to rename.
 */
#ifndef METASERVE_NN_ACT_H
#define METASERVE_NN_ACT_H

#include <stddef.h>

#include "metaserve/nn/mlp.h"

// out = in (.) act'(z), with act' written through a = act(z): relu 1[a > 0], tanh 1 - a^2,
// sigmoid a (1 - a). Backward: dZ = dA (.) act'(z); R-forward: rA = rZ (.) act'(z).
static inline void act_deriv_mul(MlpAct act, real *out, const real *in, const real *a, size_t n) {
    switch (act) {
    case MLP_ACT_RELU:
        for (size_t i = 0; i < n; i++)
            out[i] = a[i] > 0 ? in[i] : 0;
        break;
    case MLP_ACT_TANH:
        for (size_t i = 0; i < n; i++)
            out[i] = in[i] * (1 - a[i] * a[i]);
        break;
    case MLP_ACT_SIGMOID:
        for (size_t i = 0; i < n; i++)
            out[i] = in[i] * a[i] * (1 - a[i]);
        break;
    }
}

#endif
