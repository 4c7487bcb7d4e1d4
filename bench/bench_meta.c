/*
 * bench_meta: throughput of full meta-training iterations (trainer_step), single-threaded, with
 * an architectural FLOP count and a same-run OpenBLAS sgemm reference at the exact matrix shapes
 * each case multiplies. Prints one JSON object per case on stdout and nothing else there; notes
 * and errors go to stderr.
 *
 * Cases: "classic" is the sinusoid regression setup of the MAML paper (1-40-40-1 relu, 10 support
 * and 10 query points, meta-batch 25, Adam) for every algorithm at 1 and 5 inner steps;
 * "large" is 784-256-256-5 relu, 5-way 5-shot Gaussian classification, meta-batch 4, to show how
 * throughput scales once the matrix products are no longer tiny.
 *
 * FLOPs are counted from the architecture (see the counting section), never measured, and only
 * matrix products are counted: bias adds, activations, the loss, inner SGD updates and the outer
 * optimiser are O(B * width) or O(P) and are left out. So gflops is a lower bound on the work
 * done and efficiency = gflops / sgemm_gflops says how close one meta-iteration comes to doing
 * the same products back to back in bare cblas_sgemm.
 *
 * Allocates per case (a Trainer) and per sgemm shape (its operands); nothing inside a timed loop
 * beyond what trainer_step itself does. Runs in one process, so peak_rss_mb is a running maximum.
 */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "metaserve/core/rng.h"
#include "metaserve/core/status.h"
#include "metaserve/jobs/taskpool.h"
#include "metaserve/meta/meta.h"
#include "metaserve/meta/train.h"
#include "metaserve/nn/blas.h"
#include "metaserve/nn/mlp.h"
#include "metaserve/tasks/sampler.h"

#include "bench_util.h"

#define MAX_OPS       128 // distinct (pass, shape) entries in one case's tally
#define MAX_SHAPES    256 // distinct gemm shapes measured over the whole run
#define SIZES_STR_MAX 96

/* ---- options and clocks ---- */

typedef struct {
    int quick;          // 1: short timings (CI smoke run)
    int classic, large; // which case groups to run
    const char *algo;   // non-NULL: run only this algorithm
    int ref;            // 1: measure the sgemm reference (off with --no-ref, for profiling)
    long iters;         // > 0: exactly this many timed iterations per case
    double min_train_s; // timed wall time per case when iters == 0
    double min_gemm_s;  // timed wall time per sgemm shape
    int threads;        // > 1: also time each case on this many threads (trainer_set_parallel)
    int fewshot;        // the 400-128-64-64-5 character-benchmark case
} Options;

/* ---- FLOP counting ----
 *
 * One gemm C(M x N) = op(A)(M x K) op(B)(K x N) costs 2 M N K FLOPs. For linear layer l with
 * in = sizes[l], out = sizes[l+1] on B rows, write G_l = 2 B in out (every product of layer l
 * has this cost) and F = sum_l G_l. The products mlp.h's passes need, as (transA, transB, M, N, K):
 *
 *   forward       Z_l   = A_l W_l^T                          (N,T, B, out, in)    all l
 *   backward      dW_l  = dZ_l^T A_l                         (T,N, out, in, B)    l >= f
 *                 dA_l  = dZ_l W_l                           (N,N, B, in, out)    l >  f
 *   R-forward     rZ_l  = A_l V_l^T + rA_l W_l^T             (N,T, B, out, in)    rA_0 = 0
 *   R-backward    rdW_l = rdZ_l^T A_l + dZ_l^T rA_l          (T,N, out, in, B)    rA_0 = 0
 *                 rdA_l = rdZ_l W_l + dZ_l V_l               (N,N, B, in, out)    l > 0
 *
 * where f is mlp_backward's first_layer (0 for a full gradient) and A_0 = X has no gradient and
 * no tangent. Hence, exactly,
 *   fwd = F,   bwd(f) = sum_{l>=f} G_l + sum_{l>f} G_l   (full: 2F - G_0),
 *   hvp = R-forward (2F - G_0) + R-backward (4F - 3G_0) = 6F - 4G_0,
 * every term that involves rA_0 or dA_0 being identically zero and not computed. Per task, with
 * K inner steps, S support rows and Q query rows (subscripts give the batch):
 *   maml, metasgd  K (F_S + bwd_S) + (F_Q + bwd_Q) + K hvp_S   (the reverse sweep reuses the
 *                  activations and gradients stored at each theta_j, so only the R-passes run)
 *   fomaml         K (F_S + bwd_S) + (F_Q + bwd_Q)
 *   reptile        K (F_S + bwd_S) + F_Q                       (query loss reported, no gradient)
 *   anil           K (F_S + bwd_S(L-1)) + (F_Q + bwd_Q) + K (bwd_S + hvp_S)   (the inner steps
 *                  backpropagate through the head only; the reverse sweep needs the full
 *                  backward at theta_j before each HVP)
 */

enum { PASS_FWD, PASS_BWD, PASS_HVP, N_PASSES };
static const char *const PASS_NAME[N_PASSES] = {"fwd", "bwd", "hvp"};

typedef struct {
    int ta, tb;  // 1: that operand is transposed
    int M, N, K; // C is M x N, the inner dimension is K
    int beta;    // 0: C is overwritten; 1: accumulated into (as nn/ calls it)
} GemmShape;

typedef struct {
    GemmShape s;
    int pass;     // PASS_*
    double count; // products of this shape per task
} GemmOp;

typedef struct {
    GemmOp op[MAX_OPS];
    int n;
} Tally;

static double shape_flops(GemmShape s) {
    return 2.0 * (double)s.M * (double)s.N * (double)s.K;
}

static int shape_eq(GemmShape a, GemmShape b) {
    return a.ta == b.ta && a.tb == b.tb && a.M == b.M && a.N == b.N && a.K == b.K &&
           a.beta == b.beta;
}

static void tally_add(Tally *t, int pass, int ta, int tb, int M, int N, int K, int beta,
                      double count) {
    GemmShape s = {ta, tb, M, N, K, beta};
    for (int i = 0; i < t->n; i++) {
        if (t->op[i].pass == pass && shape_eq(t->op[i].s, s)) {
            t->op[i].count += count;
            return;
        }
    }
    MS_ASSERT(t->n < MAX_OPS);
    t->op[t->n++] = (GemmOp){s, pass, count};
}

static double tally_flops(const Tally *t, int pass) {
    double f = 0;
    for (int i = 0; i < t->n; i++)
        if (pass < 0 || t->op[i].pass == pass) f += t->op[i].count * shape_flops(t->op[i].s);
    return f;
}

static void count_forward(Tally *t, const MlpSpec *sp, int B, double c) {
    for (int l = 0; l < sp->L; l++)
        tally_add(t, PASS_FWD, 0, 1, B, sp->sizes[l + 1], sp->sizes[l], 1, c);
}

static void count_backward(Tally *t, const MlpSpec *sp, int B, int first, double c) {
    for (int l = first; l < sp->L; l++) {
        int in = sp->sizes[l], out = sp->sizes[l + 1];
        tally_add(t, PASS_BWD, 1, 0, out, in, B, 1, c);                // dW_l
        if (l > first) tally_add(t, PASS_BWD, 0, 0, B, in, out, 0, c); // dA_l
    }
}

static void count_hvp(Tally *t, const MlpSpec *sp, int B, double c) {
    for (int l = 0; l < sp->L; l++) {
        int in = sp->sizes[l], out = sp->sizes[l + 1];
        double terms = l > 0 ? 2 : 1;                           // the rA_0 and dA_0 terms vanish
        tally_add(t, PASS_HVP, 0, 1, B, out, in, 1, terms * c); // rZ_l
        tally_add(t, PASS_HVP, 1, 0, out, in, B, 1, terms * c); // rdW_l
        if (l > 0) {
            tally_add(t, PASS_HVP, 0, 0, B, in, out, 0, c); // rdA_l = rdZ_l W_l
            tally_add(t, PASS_HVP, 0, 0, B, in, out, 1, c); //       + dZ_l V_l
        }
    }
}

static void count_task(Tally *t, const MlpSpec *sp, MetaAlgo algo, int K, int S, int Q) {
    t->n = 0;
    int inner_first = algo == META_ANIL ? sp->L - 1 : 0;
    count_forward(t, sp, S, K);
    count_backward(t, sp, S, inner_first, K);
    count_forward(t, sp, Q, 1);
    if (algo != META_REPTILE) count_backward(t, sp, Q, 0, 1);
    if (algo == META_ANIL) count_backward(t, sp, S, 0, K);
    if (algo == META_MAML || algo == META_METASGD || algo == META_ANIL) count_hvp(t, sp, S, K);
}

/* ---- sgemm reference ---- */

typedef struct {
    GemmShape s;
    double gflops;
} ShapeRate;

static ShapeRate g_rates[MAX_SHAPES]; // measured once per distinct shape, shared by all cases
static int g_n_rates;

static void fill_uniform(float *x, size_t n, Rng *r) {
    for (size_t i = 0; i < n; i++)
        x[i] = (float)rng_range(r, -1.0, 1.0);
}

#define GEMM_ROUNDS 3 // the reference is the best of this many equal segments

/* GFLOP/s of cblas_sgemm(RowMajor, ta, tb, M, N, K, 1, A, B, beta, C) on operands allocated once
 * and reused, as the training loop reuses its work blocks: the best of GEMM_ROUNDS segments of
 * >= min_s / GEMM_ROUNDS wall time each, so that a burst of interference on a shared machine
 * lowers one segment rather than the reference. With beta = 1, C grows by at most K per call: it
 * stays finite for any run length here. */
static double measure_sgemm(GemmShape s, double min_s) {
    size_t na = (size_t)s.M * (size_t)s.K, nb = (size_t)s.K * (size_t)s.N;
    size_t nc = (size_t)s.M * (size_t)s.N;
    float *a = malloc(na * sizeof *a), *b = malloc(nb * sizeof *b), *c = malloc(nc * sizeof *c);
    MS_ASSERT(a && b && c);
    Rng r;
    rng_seed(&r, 7);
    fill_uniform(a, na, &r);
    fill_uniform(b, nb, &r);
    int lda = s.ta ? s.M : s.K, ldb = s.tb ? s.K : s.N;
    enum CBLAS_TRANSPOSE ta = s.ta ? CblasTrans : CblasNoTrans;
    enum CBLAS_TRANSPOSE tb = s.tb ? CblasTrans : CblasNoTrans;
    float beta = (float)s.beta;
    memset(c, 0, nc * sizeof *c);

    // Calibrate a batch that takes ~1 ms so the clock is read rarely.
    long reps = 1;
    double t0, dt;
    for (;;) {
        t0 = now_s(CLOCK_MONOTONIC);
        for (long i = 0; i < reps; i++)
            cblas_sgemm(CblasRowMajor, ta, tb, s.M, s.N, s.K, 1.0f, a, lda, b, ldb, beta, c, s.N);
        dt = now_s(CLOCK_MONOTONIC) - t0;
        if (dt > 1e-3) break;
        reps *= 2;
    }
    double best = 0;
    for (int round = 0; round < GEMM_ROUNDS; round++) {
        long total = 0;
        t0 = now_s(CLOCK_MONOTONIC);
        do {
            for (long i = 0; i < reps; i++)
                cblas_sgemm(CblasRowMajor, ta, tb, s.M, s.N, s.K, 1.0f, a, lda, b, ldb, beta, c,
                            s.N);
            total += reps;
            dt = now_s(CLOCK_MONOTONIC) - t0;
        } while (dt < min_s / GEMM_ROUNDS);
        double rate = shape_flops(s) * (double)total / dt / 1e9;
        best = rate > best ? rate : best;
    }
    free(a);
    free(b);
    free(c);
    return best;
}

static double sgemm_rate(GemmShape s, double min_s) {
    for (int i = 0; i < g_n_rates; i++)
        if (shape_eq(g_rates[i].s, s)) return g_rates[i].gflops;
    MS_ASSERT(g_n_rates < MAX_SHAPES);
    double r = measure_sgemm(s, min_s);
    g_rates[g_n_rates++] = (ShapeRate){s, r};
    return r;
}

/* FLOP-weighted harmonic mean of the sgemm rates over the tally: the rate at which bare sgemm
 * would do exactly this task's products, total FLOPs / sum_i (FLOPs_i / rate_i). */
static double tally_sgemm_gflops(const Tally *t, double min_s) {
    double flops = 0, secs = 0;
    for (int i = 0; i < t->n; i++) {
        double f = t->op[i].count * shape_flops(t->op[i].s);
        flops += f;
        secs += f / (sgemm_rate(t->op[i].s, min_s) * 1e9);
    }
    return secs > 0 ? flops / secs / 1e9 : 0;
}

/* ---- cases ---- */

typedef struct {
    const char *name; // "classic" | "large"
    MetaAlgo algo;
    int steps; // K inner steps
    int sizes[MLP_MAX_LAYERS + 1];
    int n_sizes;
    MlpHead head;
    const char *family;
    int n_way, dim; // classification family parameters (0 for regression)
    int k_support, k_query;
    int meta_batch;
} Case;

static void sizes_str(char *out, size_t cap, const int *sizes, int n) {
    size_t len = 0;
    out[0] = '\0';
    for (int i = 0; i < n && len < cap; i++)
        len += (size_t)snprintf(out + len, cap - len, "%s%d", i ? "-" : "", sizes[i]);
}

static void case_config(TrainConfig *c, const Case *k) {
    train_config_defaults(c);
    snprintf(c->name, sizeof c->name, "bench-%s-%s-%d", k->name, meta_algo_name(k->algo), k->steps);
    c->n_sizes = k->n_sizes;
    memcpy(c->sizes, k->sizes, sizeof c->sizes);
    c->act = MLP_ACT_RELU;
    c->head = k->head;
    c->algo = k->algo;
    c->inner_steps = k->steps;
    c->opt = OPT_ADAM;
    c->anneal = 0;
    c->meta_batch = k->meta_batch;
    c->iterations = 1000000; // an upper bound only: the benchmark decides how many to run
    c->seed = 1;
    memset(&c->tasks, 0, sizeof c->tasks);
    snprintf(c->tasks.family, sizeof c->tasks.family, "%s", k->family);
    c->tasks.n_way = k->n_way;
    c->tasks.dim = k->dim;
    c->k_support = k->k_support;
    c->k_query = k->k_query;
}

/* What one timed case measured. */
typedef struct {
    long iters;       // timed meta-iterations
    double seconds;   // their wall time
    double cpu;       // process CPU time over the same loop
    double meta_loss; // of the last iteration
    int n_s, n_q;     // support and query rows per task
    size_t P;         // parameters
    int restarts;     // fresh starts after a diverged (non-finite) iteration
    // with --threads N: the same iterations again on N threads
    int threads;       // N (1: not measured)
    double seconds_n;  // their wall time
    int bit_identical; // parameters after both runs equal byte for byte (-1: not compared)
} CaseTiming;

static void print_result(const Case *k, const CaseTiming *ct, const Tally *t, const Options *o) {
    char sz[SIZES_STR_MAX];
    sizes_str(sz, sizeof sz, k->sizes, k->n_sizes);
    double flops = tally_flops(t, -1);
    double tps = (double)ct->iters * (double)k->meta_batch / ct->seconds;
    double gflops = flops * tps / 1e9;
    double ref = o->ref ? tally_sgemm_gflops(t, o->min_gemm_s) : NAN;

    printf("{\"case\":\"%s\",\"algo\":\"%s\",\"steps\":%d,\"sizes\":\"%s\",\"head\":\"%s\","
           "\"family\":\"%s\",\"k\":%d,\"n_support\":%d,\"n_query\":%d,\"meta_batch\":%d,"
           "\"params\":%zu,\"iters\":%ld",
           k->name, meta_algo_name(k->algo), k->steps, sz, mlp_head_name(k->head), k->family,
           k->k_support, ct->n_s, ct->n_q, k->meta_batch, ct->P, ct->iters);
    print_num("seconds", ct->seconds, 4);
    print_num("tasks_per_s", tps, 2);
    print_num("us_per_task", 1e6 / tps, 3);
    print_num("flops_per_task", flops, 0);
    printf(",\"flops_share\":{");
    for (int p = 0; p < N_PASSES; p++)
        printf("%s\"%s\":%.3f", p ? "," : "", PASS_NAME[p], tally_flops(t, p) / flops);
    printf("}");
    print_num("gflops", gflops, 3);
    print_num("sgemm_gflops", ref, 3);
    print_num("efficiency", gflops / ref, 4);
    // One entry per distinct shape: its sgemm rate and its share of the task's FLOPs.
    printf(",\"sgemm_shapes\":[");
    int first = 1;
    for (int i = 0; i < t->n; i++) {
        GemmShape s = t->op[i].s;
        int seen = 0;
        for (int j = 0; j < i; j++)
            seen |= shape_eq(t->op[j].s, s);
        if (seen) continue;
        double f = 0;
        for (int j = i; j < t->n; j++)
            if (shape_eq(t->op[j].s, s)) f += t->op[j].count * shape_flops(s);
        printf("%s{\"op\":\"%c%c\",\"m\":%d,\"n\":%d,\"k\":%d,\"beta\":%d", first ? "" : ",",
               s.ta ? 'T' : 'N', s.tb ? 'T' : 'N', s.M, s.N, s.K, s.beta);
        print_num("gflops", o->ref ? sgemm_rate(s, o->min_gemm_s) : NAN, 3);
        print_num("share", f / flops, 3);
        printf("}");
        first = 0;
    }
    printf("]");
    if (ct->threads > 1) {
        double tps_n = (double)ct->iters * (double)k->meta_batch / ct->seconds_n;
        printf(",\"threads\":%d", ct->threads);
        print_num("tasks_per_s_threads", tps_n, 2);
        print_num("speedup", tps_n / tps, 3);
        printf(",\"bit_identical\":%s", ct->bit_identical < 0 ? "null"
                                        : ct->bit_identical   ? "true"
                                                              : "false");
    }
    print_num("cpu_per_wall", ct->cpu / ct->seconds, 3);
    printf(",\"restarts\":%d", ct->restarts);
    printf(",\"meta_loss\":");
    if (ct->meta_loss == ct->meta_loss && ct->meta_loss - ct->meta_loss == 0)
        printf("%.6g", ct->meta_loss);
    else
        printf("null");
    printf(",\"real\":\"%s\",\"blas_core\":\"%s\"", REAL_NAME, blas_core_name());
    print_num("peak_rss_mb", peak_rss_mb(), 1);
    printf("}\n");
    fflush(stdout);
}

/* Runs one case and prints its JSON line; returns 0, or 1 on failure (reported on stderr). */
static int run_case(const Case *k, const Options *o) {
    if (o->algo && strcmp(o->algo, meta_algo_name(k->algo)) != 0) return 0;
    TrainConfig cfg;
    case_config(&cfg, k);
    MsError err = {0};
    Trainer tr;
    memset(&tr, 0, sizeof tr);
    TrainStats st = {0};
    CaseTiming ct = {0};
    int rc = 1;
    if (trainer_init(&tr, &cfg, &err) != MS_OK) {
        fprintf(stderr, "bench_meta: %s %s/%d: trainer_init: %s: %s\n", k->name,
                meta_algo_name(k->algo), k->steps, ms_status_str(err.code), err.msg);
        goto done;
    }

    int warmup = k->meta_batch >= 10 ? 3 : 2;
    for (int i = 0; i < warmup; i++) {
        if (trainer_step(&tr, &st, &err) != MS_OK) goto step_failed;
    }
    double c0 = now_s(CLOCK_PROCESS_CPUTIME_ID);
    double t0 = now_s(CLOCK_MONOTONIC);
    double done_s = 0, done_cpu = 0; // time of finished segments (before a restart)
    for (;;) {
        MsStatus s = trainer_step(&tr, &st, &err);
        if (s == MS_ERR_NUMERIC && ct.restarts < 10) {
            // A long run can leave the stable region (Meta-SGD's learned rates grow); the cost of
            // an iteration does not depend on it. Stop the clock, start again from a fresh seed,
            // and go on timing; the restart count is reported.
            done_s += now_s(CLOCK_MONOTONIC) - t0;
            done_cpu += now_s(CLOCK_PROCESS_CPUTIME_ID) - c0;
            trainer_free(&tr);
            cfg.seed++;
            ct.restarts++;
            if (trainer_init(&tr, &cfg, &err) != MS_OK) goto step_failed;
            c0 = now_s(CLOCK_PROCESS_CPUTIME_ID);
            t0 = now_s(CLOCK_MONOTONIC);
            continue;
        }
        if (s != MS_OK) goto step_failed;
        ct.iters++;
        ct.seconds = done_s + now_s(CLOCK_MONOTONIC) - t0;
        if (o->iters > 0 ? ct.iters >= o->iters : ct.seconds >= o->min_train_s) break;
    }
    ct.cpu = done_cpu + now_s(CLOCK_PROCESS_CPUTIME_ID) - c0;
    ct.meta_loss = st.meta_loss;
    ct.n_s = tr.batch.n_s;
    ct.n_q = tr.batch.n_q;
    ct.P = tr.spec.P;
    ct.threads = 1;
    ct.bit_identical = -1;
    if (o->threads > 1 && ct.restarts == 0) {
        // The same iterations from the same seed on N threads: the time, and the parameters
        // compared byte for byte with the one-thread run's.
        Trainer tn;
        TaskPool *pool = NULL;
        if (trainer_init(&tn, &cfg, &err) != MS_OK || taskpool_create(&pool, o->threads, &err) ||
            trainer_set_parallel(&tn, o->threads, 0, taskpool_run, pool, &err) != MS_OK) {
            fprintf(stderr, "bench_meta: %s: %d threads: %s\n", k->name, o->threads, err.msg);
            trainer_free(&tn);
            taskpool_destroy(pool);
            goto done;
        }
        int ok = 1;
        for (int i = 0; ok && i < warmup; i++)
            ok = trainer_step(&tn, &st, &err) == MS_OK;
        double tn0 = now_s(CLOCK_MONOTONIC);
        for (long i = 0; ok && i < ct.iters; i++)
            ok = trainer_step(&tn, &st, &err) == MS_OK;
        ct.seconds_n = now_s(CLOCK_MONOTONIC) - tn0;
        if (ok) {
            ct.threads = o->threads;
            ct.bit_identical =
                tn.N == tr.N && memcmp(tn.params, tr.params, tr.N * sizeof(real)) == 0;
        } else {
            fprintf(stderr, "bench_meta: %s: %d threads: %s\n", k->name, o->threads, err.msg);
        }
        trainer_free(&tn);
        taskpool_destroy(pool);
        if (!ok) goto done;
    }

    Tally t;
    count_task(&t, &tr.spec, k->algo, k->steps, ct.n_s, ct.n_q);
    print_result(k, &ct, &t, o);
    rc = 0;
    goto done;

step_failed:
    fprintf(stderr, "bench_meta: %s %s/%d: trainer_step at t=%ld: %s: %s\n", k->name,
            meta_algo_name(k->algo), k->steps, tr.t, ms_status_str(err.code), err.msg);
done:
    trainer_free(&tr);
    return rc;
}

/* ---- main ---- */

static void usage(FILE *f) {
    fprintf(f, "usage: bench_meta [--quick] [--case classic|large|all] [--iters N]\n"
               "                  [--algo A] [--no-ref] [--threads N]\n"
               "  --quick     ~0.2 s per case and short sgemm references (CI smoke run)\n"
               "  --case      which cases to run (default all)\n"
               "  --iters N   time exactly N meta-iterations per case instead of a wall time\n"
               "  --algo A    run only algorithm A (maml, fomaml, metasgd, anil, reptile)\n"
               "  --no-ref    skip the sgemm reference (its fields are null): for profiling\n"
               "  --threads N also run each case's timed iterations on N threads: tasks/s,\n"
               "              speed-up and whether the weights are bit-identical to 1 thread\n"
               "  --case fewshot  400-128-64-64-5, 5-way 1-shot, 15 queries per class, 5 steps\n");
}

static int parse_args(int argc, char **argv, Options *o) {
    *o = (Options){.classic = 1,
                   .large = 1,
                   .fewshot = 1,
                   .ref = 1,
                   .min_train_s = 1.5,
                   .min_gemm_s = 0.3,
                   .threads = 1};
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick")) {
            o->quick = 1;
        } else if (!strcmp(argv[i], "--algo") && i + 1 < argc) {
            MetaAlgo a;
            o->algo = argv[++i];
            if (meta_algo_parse(o->algo, &a) != MS_OK) return -1;
        } else if (!strcmp(argv[i], "--no-ref")) {
            o->ref = 0;
        } else if (!strcmp(argv[i], "--case") && i + 1 < argc) {
            const char *c = argv[++i];
            o->classic = !strcmp(c, "classic") || !strcmp(c, "all");
            o->large = !strcmp(c, "large") || !strcmp(c, "all");
            o->fewshot = !strcmp(c, "fewshot") || !strcmp(c, "all");
            if (!o->classic && !o->large && !o->fewshot) return -1;
        } else if (!strcmp(argv[i], "--threads") && i + 1 < argc) {
            char *end;
            long n = strtol(argv[++i], &end, 10);
            if (*end || n < 1 || n > TRAIN_MAX_THREADS) return -1;
            o->threads = (int)n;
        } else if (!strcmp(argv[i], "--iters") && i + 1 < argc) {
            char *end;
            o->iters = strtol(argv[++i], &end, 10);
            if (*end || o->iters < 1) return -1;
        } else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            exit(0);
        } else {
            return -1;
        }
    }
    if (o->quick) {
        o->min_train_s = 0.2;
        o->min_gemm_s = 0.02;
    }
    return 0;
}

int main(int argc, char **argv) {
    blas_autocore(argv);
    Options o;
    if (parse_args(argc, argv, &o) != 0) {
        usage(stderr);
        return 2;
    }
    openblas_set_num_threads(1);
    fprintf(stderr, "bench_meta: OpenBLAS %s, core %s, 1 thread, real %s\n", openblas_get_config(),
            openblas_get_corename(), REAL_NAME);
    // A DYNAMIC_ARCH OpenBLAS falls back to SSE3 kernels on CPUs newer than its tables, which
    // caps every sgemm figure (nn/blas.h); say so, since the numbers below depend on it.
    const char *better = blas_better_core();
    if (better)
        fprintf(stderr,
                "bench_meta: note: OpenBLAS chose the %s kernels on a CPU that runs %s; "
                "OPENBLAS_CORETYPE=%s selects them (unset METASERVE_BLAS_AUTOCORE=0)\n",
                blas_core_name(), better, better);

    static const MetaAlgo algos[] = {META_MAML, META_FOMAML, META_METASGD, META_ANIL, META_REPTILE};
    static const int steps[] = {1, 5};
    int failed = 0;
    if (o.classic) {
        for (size_t a = 0; a < sizeof algos / sizeof algos[0]; a++) {
            for (size_t s = 0; s < sizeof steps / sizeof steps[0]; s++) {
                Case k = {.name = "classic",
                          .algo = algos[a],
                          .steps = steps[s],
                          .sizes = {1, 40, 40, 1},
                          .n_sizes = 4,
                          .head = MLP_HEAD_REGRESSION,
                          .family = "sinusoid",
                          .k_support = 10,
                          .k_query = 10,
                          .meta_batch = 25};
                failed += run_case(&k, &o);
            }
        }
    }
    if (o.large) {
        static const MetaAlgo large_algos[] = {META_MAML, META_FOMAML};
        for (size_t a = 0; a < sizeof large_algos / sizeof large_algos[0]; a++) {
            Case k = {.name = "large",
                      .algo = large_algos[a],
                      .steps = 1,
                      .sizes = {784, 256, 256, 5},
                      .n_sizes = 4,
                      .head = MLP_HEAD_CLASSIFICATION,
                      .family = "gaussian",
                      .n_way = 5,
                      .dim = 784,
                      .k_support = 5,
                      .k_query = 5,
                      .meta_batch = 4};
            failed += run_case(&k, &o);
        }
    }
    if (o.fewshot) {
        // A 20x20 character benchmark's shape: 400-128-64-64-5, 5-way 1-shot with 15 query
        // images per class, 5 inner steps, meta-batch 16.
        Case k = {.name = "fewshot",
                  .algo = META_MAML,
                  .steps = 5,
                  .sizes = {400, 128, 64, 64, 5},
                  .n_sizes = 5,
                  .head = MLP_HEAD_CLASSIFICATION,
                  .family = "gaussian",
                  .n_way = 5,
                  .dim = 400,
                  .k_support = 1,
                  .k_query = 15,
                  .meta_batch = 16};
        failed += run_case(&k, &o);
    }
    if (failed) fprintf(stderr, "bench_meta: %d case(s) failed\n", failed);
    return failed ? 1 : 0;
}
