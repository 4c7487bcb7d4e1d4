/*
 * MLP spec, initialisation, scratch, forward pass, losses and backward pass (the gradient). The
 * R-operator Hessian-vector product lives beside it in mlp_hvp.c and shares the MlpWork layout.
 *
 * Owns: the parameter-layout arithmetic (see mlp.h) and the single allocation of an MlpWork.
 * Does not own parameters, gradients or inputs: callers pass them in.
 *
 * Workload: tiny to medium nets (1-40-40-1 up to 784-256-256-5) on batches of 5..1000 rows,
 * called millions of times per training job, so nothing here allocates after mlp_work_init and
 * every matrix product is one gemm call. Hidden layers keep only their post-activation A (the
 * pre-activation is computed into the same buffer and transformed in place): every activation
 * derivative used here is a function of the output a = act(z).
 */
#include "metaserve/nn/mlp.h"

#include <math.h>
#include <string.h>

#include "act.h"
#include "gemm.h"

/* ---- spec ---- */

MsStatus mlp_spec_init(MlpSpec *spec, const int *sizes, int n_sizes, MlpAct act, MlpHead head,
                       MsError *err) {
    memset(spec, 0, sizeof *spec);
    if (n_sizes < 2 || n_sizes > MLP_MAX_LAYERS + 1)
        return ms_fail(err, MS_ERR_INVALID, "architecture.sizes: needs 2..%d entries, got %d",
                       MLP_MAX_LAYERS + 1, n_sizes);
    for (int i = 0; i < n_sizes; i++) {
        if (sizes[i] < 1 || sizes[i] > MLP_MAX_WIDTH)
            return ms_fail(err, MS_ERR_INVALID, "architecture.sizes[%d]: must be in 1..%d, got %d",
                           i, MLP_MAX_WIDTH, sizes[i]);
    }
    if ((int)act < MLP_ACT_RELU || act > MLP_ACT_SIGMOID)
        return ms_fail(err, MS_ERR_INVALID, "architecture.activation: unknown activation");
    if (head != MLP_HEAD_REGRESSION && head != MLP_HEAD_CLASSIFICATION)
        return ms_fail(err, MS_ERR_INVALID, "architecture.head: unknown head");
    if (head == MLP_HEAD_CLASSIFICATION && sizes[n_sizes - 1] < 2)
        return ms_fail(err, MS_ERR_INVALID,
                       "architecture.sizes[%d]: a classification head needs >= 2 outputs",
                       n_sizes - 1);
    spec->L = n_sizes - 1;
    memcpy(spec->sizes, sizes, (size_t)n_sizes * sizeof(int));
    spec->act = act;
    spec->head = head;
    size_t off = 0;
    for (int l = 0; l < spec->L; l++) {
        spec->w_off[l] = off;
        off += (size_t)sizes[l + 1] * (size_t)sizes[l];
        spec->b_off[l] = off;
        off += (size_t)sizes[l + 1];
    }
    spec->P = off;
    return MS_OK;
}

static const char *const ACT_NAMES[] = {"relu", "tanh", "sigmoid"};
static const char *const HEAD_NAMES[] = {"regression", "classification"};

MsStatus mlp_act_parse(const char *s, MlpAct *out) {
    for (int i = 0; i < 3; i++) {
        if (s && strcmp(s, ACT_NAMES[i]) == 0) {
            *out = (MlpAct)i;
            return MS_OK;
        }
    }
    return MS_ERR_INVALID;
}

const char *mlp_act_name(MlpAct a) {
    return (unsigned)a < 3 ? ACT_NAMES[a] : "?";
}

MsStatus mlp_head_parse(const char *s, MlpHead *out) {
    for (int i = 0; i < 2; i++) {
        if (s && strcmp(s, HEAD_NAMES[i]) == 0) {
            *out = (MlpHead)i;
            return MS_OK;
        }
    }
    return MS_ERR_INVALID;
}

const char *mlp_head_name(MlpHead h) {
    return (unsigned)h < 2 ? HEAD_NAMES[h] : "?";
}

int mlp_target_cols(const MlpSpec *spec) {
    return spec->head == MLP_HEAD_CLASSIFICATION ? 1 : spec->sizes[spec->L];
}

void mlp_init_params(const MlpSpec *spec, real *theta, Rng *rng) {
    for (int l = 0; l < spec->L; l++) {
        int in = spec->sizes[l], out = spec->sizes[l + 1];
        double bound = 1.0 / sqrt((double)in);
        real *W = theta + spec->w_off[l], *b = theta + spec->b_off[l];
        for (size_t i = 0; i < (size_t)in * (size_t)out; i++)
            W[i] = (real)rng_range(rng, -bound, bound);
        for (int i = 0; i < out; i++)
            b[i] = (real)rng_range(rng, -bound, bound);
    }
}

double mlp_forward_macs(const MlpSpec *spec, int B) {
    double macs = 0;
    for (int l = 0; l < spec->L; l++)
        macs += (double)B * spec->sizes[l] * spec->sizes[l + 1];
    return macs;
}

/* ---- work ---- */

// Per row: hidden layers l = 1..L-1 keep A, dZ(l-1), dA, rZ(l-1), rA, rdZ(l-1); the output keeps
// Z, dZ, rZ, rdZ and the softmax probabilities.
static size_t work_reals_per_row(const MlpSpec *spec) {
    size_t n = 0;
    for (int l = 1; l < spec->L; l++)
        n += 6 * (size_t)spec->sizes[l];
    return n + 5 * (size_t)spec->sizes[spec->L];
}

size_t mlp_work_bytes(const MlpSpec *spec, int max_B) {
    return (size_t)max_B * work_reals_per_row(spec) * sizeof(real);
}

MsStatus mlp_work_init(MlpWork *w, const MlpSpec *spec, int max_B, MsError *err) {
    memset(w, 0, sizeof *w);
    if (max_B < 1) return ms_fail(err, MS_ERR_INVALID, "batch capacity must be >= 1");
    size_t n = (size_t)max_B * work_reals_per_row(spec);
    w->mem = calloc(n, sizeof(real));
    if (!w->mem) return ms_fail(err, MS_ERR_NOMEM, "cannot allocate %zu bytes of scratch", n);
    w->spec = spec;
    w->max_B = max_B;
    real *p = w->mem;
    const int L = spec->L;
    for (int l = 1; l < L; l++) {
        size_t sz = (size_t)max_B * (size_t)spec->sizes[l];
        w->A[l] = p, p += sz;
        w->Z[l - 1] = w->A[l]; // pre-activation computed in place, then transformed
        w->dZ[l - 1] = p, p += sz;
        w->dA[l] = p, p += sz;
        w->rZ[l - 1] = p, p += sz;
        w->rA[l] = p, p += sz;
        w->rdZ[l - 1] = p, p += sz;
        w->rdA[l] = w->rdZ[l - 1]; // R{dA} is turned into R{dZ} in place
    }
    size_t so = (size_t)max_B * (size_t)spec->sizes[L];
    w->Z[L - 1] = p, p += so;
    w->dZ[L - 1] = p, p += so;
    w->rZ[L - 1] = p, p += so;
    w->rdZ[L - 1] = p, p += so;
    w->prob = p, p += so;
    MS_ASSERT((size_t)(p - w->mem) == n);
    return MS_OK;
}

void mlp_work_free(MlpWork *w) {
    if (!w) return;
    free(w->mem);
    memset(w, 0, sizeof *w);
}

/* ---- forward ---- */

// In place: z -> act(z) over n values.
static void act_forward(MlpAct act, real *z, size_t n) {
    switch (act) {
    case MLP_ACT_RELU:
        for (size_t i = 0; i < n; i++)
            z[i] = z[i] > 0 ? z[i] : 0;
        break;
    case MLP_ACT_TANH:
        for (size_t i = 0; i < n; i++)
            z[i] = tanh(z[i]);
        break;
    case MLP_ACT_SIGMOID:
        for (size_t i = 0; i < n; i++)
            z[i] = (real)(1.0 / (1.0 + exp(-(double)z[i])));
        break;
    }
}

const real *mlp_forward(MlpWork *w, const real *theta, const real *X, int B) {
    const MlpSpec *s = w->spec;
    MS_ASSERT(B >= 0 && B <= w->max_B);
    w->B = B;
    w->X = X;
    for (int l = 0; l < s->L; l++) {
        // Z_l (B x out) = A_l (B x in) W_l^T (in x out) + b_l
        int in = s->sizes[l], out = s->sizes[l + 1];
        const real *Ain = l == 0 ? X : w->A[l];
        const real *W = theta + s->w_off[l], *b = theta + s->b_off[l];
        real *Z = w->Z[l];
        for (int i = 0; i < B; i++)
            memcpy(Z + (size_t)i * out, b, (size_t)out * sizeof(real));
        gemm(w->naive, 0, 1, B, out, in, 1, Ain, in, W, in, 1, Z, out);
        if (l < s->L - 1) act_forward(s->act, Z, (size_t)B * out);
    }
    return w->Z[s->L - 1];
}

/* ---- losses ---- */

// sum_j exp(z_j - m) over one row of O logits, with m = max_j z_j (to *m): the stable softmax
// denominator, shared by the loss and mlp_softmax.
static double sum_exp(const real *z, int O, double *m) {
    double mx = z[0], sum = 0;
    for (int j = 1; j < O; j++)
        mx = z[j] > mx ? z[j] : mx;
    for (int j = 0; j < O; j++)
        sum += exp((double)z[j] - mx);
    *m = mx;
    return sum;
}

// Loss of the current output against Y; with dZ != NULL also dLoss/dZ_out (and the softmax).
static double loss_eval(MlpWork *w, const real *Y, real *dZ) {
    const MlpSpec *s = w->spec;
    const int B = w->B, O = s->sizes[s->L];
    const real *Z = w->Z[s->L - 1];
    double loss = 0;
    if (B == 0) {
        return 0;
    }
    if (s->head == MLP_HEAD_REGRESSION) {
        // L = 1/(B O) sum (z - y)^2 ; dL/dz = 2 (z - y) / (B O)
        double scale = 1.0 / ((double)B * O);
        for (size_t i = 0; i < (size_t)B * O; i++) {
            double e = (double)Z[i] - (double)Y[i];
            loss += e * e;
            if (dZ) dZ[i] = (real)(2.0 * e * scale);
        }
        return loss * scale;
    }
    // L = -1/B sum_i log softmax(z_i)[y_i] ; dL/dz_i = (p_i - onehot(y_i)) / B
    for (int i = 0; i < B; i++) {
        const real *z = Z + (size_t)i * O;
        double m, sum = sum_exp(z, O, &m);
        double logsum = log(sum) + m;
        double yv = (double)Y[i];
        int y = (int)yv;
        if (!(yv >= 0 && yv < O) || (double)y != yv) return NAN; // caller validates labels
        loss += logsum - (double)z[y];
        if (dZ) {
            real *p = w->prob + (size_t)i * O, *d = dZ + (size_t)i * O;
            for (int j = 0; j < O; j++) {
                double pj = exp((double)z[j] - logsum);
                p[j] = (real)pj;
                d[j] = (real)((pj - (j == y ? 1.0 : 0.0)) / B);
            }
        }
    }
    return loss / B;
}

double mlp_forward_loss(MlpWork *w, const real *theta, const real *X, const real *Y, int B) {
    mlp_forward(w, theta, X, B);
    w->Y = Y;
    return loss_eval(w, Y, w->dZ[w->spec->L - 1]);
}

double mlp_loss_only(MlpWork *w, const real *Y) {
    return loss_eval(w, Y, NULL);
}

const real *mlp_softmax(MlpWork *w) {
    const MlpSpec *s = w->spec;
    const int O = s->sizes[s->L];
    for (int i = 0; i < w->B; i++) {
        const real *z = w->Z[s->L - 1] + (size_t)i * O;
        real *p = w->prob + (size_t)i * O;
        double m, sum = sum_exp(z, O, &m);
        for (int j = 0; j < O; j++)
            p[j] = (real)(exp((double)z[j] - m) / sum);
    }
    return w->prob;
}

/* ---- backward ---- */

// db += column sums of dZ (B x out).
static void colsum_add(real *db, const real *dZ, int B, int out) {
    for (int i = 0; i < B; i++) {
        const real *r = dZ + (size_t)i * out;
        for (int j = 0; j < out; j++)
            db[j] += r[j];
    }
}

void mlp_backward(MlpWork *w, real *grad, const real *theta, int first_layer) {
    const MlpSpec *s = w->spec;
    const int B = w->B;
    MS_ASSERT(first_layer >= 0 && first_layer < s->L);
    for (int l = s->L - 1; l >= first_layer; l--) {
        int in = s->sizes[l], out = s->sizes[l + 1];
        const real *Ain = l == 0 ? w->X : w->A[l];
        // forward: Z_l = A_l W_l^T + b_l
        // dW_l += dZ_l^T A_l (out x in); db_l += colsum dZ_l
        gemm(w->naive, 1, 0, out, in, B, 1, w->dZ[l], out, Ain, in, 1, grad + s->w_off[l], in);
        colsum_add(grad + s->b_off[l], w->dZ[l], B, out);
        if (l > first_layer) {
            // dA_l = dZ_l W_l (B x in); dZ_{l-1} = dA_l (.) act'(Z_{l-1})
            gemm(w->naive, 0, 0, B, in, out, 1, w->dZ[l], out, theta + s->w_off[l], in, 0, w->dA[l],
                 in);
            act_deriv_mul(s->act, w->dZ[l - 1], w->dA[l], w->A[l], (size_t)B * in);
        }
    }
}
