/*
 * Tests of tasks/: the sinusoid and gaussian families and the TaskBatch lifecycle. They check
 * what meta-training relies on: episodes have the documented shapes and ranges, the sinusoid
 * really is A sin(x - phi) with Finn et al.'s parameter ranges and one (A, phi) per episode, the
 * gaussian family has exactly k shots per class under a per-episode random labelling and is
 * learnable from its support set, episodes are a pure function of the Rng state, and bad configs
 * are rejected with a message naming the field.
 *
 * Statistical checks use fixed seeds (deterministic), with bounds set at 6 standard errors or a
 * 1 - 1e-9 chi-square quantile, so that they would also pass for almost any other seed.
 */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "metaserve/tasks/sampler.h"

#define PI 3.14159265358979323846

static TaskSampler *make_sampler(const char *family, int n_way, int dim) {
    TaskConfig cfg = {0};
    strcpy(cfg.family, family);
    cfg.n_way = n_way;
    cfg.dim = dim;
    TaskSampler *s = NULL;
    MsError err = {0};
    MsStatus st = task_sampler_create(&s, &cfg, &err);
    ck_assert_msg(st == MS_OK, "create %s: %s", family, err.msg);
    ck_assert_ptr_nonnull(s);
    return s;
}

static void make_batch(TaskBatch *b, const TaskSampler *s, int ks, int kq) {
    MsError err = {0};
    MsStatus st = task_batch_init(b, s, ks, kq, &err);
    ck_assert_msg(st == MS_OK, "batch: %s", err.msg);
}

// 1 when the two batches hold the same episode, bit for bit.
static int same_episode(const TaskBatch *a, const TaskBatch *b) {
    size_t D = (size_t)a->x_dim, C = (size_t)a->y_cols;
    return a->n_s == b->n_s && a->n_q == b->n_q &&
           memcmp(a->xs, b->xs, (size_t)a->n_s * D * sizeof(real)) == 0 &&
           memcmp(a->ys, b->ys, (size_t)a->n_s * C * sizeof(real)) == 0 &&
           memcmp(a->xq, b->xq, (size_t)a->n_q * D * sizeof(real)) == 0 &&
           memcmp(a->yq, b->yq, (size_t)a->n_q * C * sizeof(real)) == 0;
}

/* ---- sinusoid ---- */

START_TEST(sinusoid_sampler_has_the_documented_shape) {
    TaskSampler *s = make_sampler("sinusoid", 5, 3); // n_way and dim do not apply: ignored
    ck_assert_str_eq(s->family, "sinusoid");
    ck_assert_int_eq(s->x_dim, 1);
    ck_assert_int_eq(s->y_dim, 1);
    ck_assert_int_eq(s->classification, 0);
    ck_assert_int_eq(s->n_way, 1);
    ck_assert_ptr_nonnull(s->sample_val);
    TaskBatch b;
    make_batch(&b, s, 10, 15);
    ck_assert_int_eq(b.x_dim, 1);
    ck_assert_int_eq(b.y_cols, 1);
    ck_assert_int_eq(b.k_support, 10);
    ck_assert_int_eq(b.k_query, 15);
    ck_assert_int_eq(b.n_s, 0);
    ck_assert_int_eq(b.n_q, 0);
    Rng r;
    rng_seed(&r, 1);
    ck_assert_int_eq(task_sample(s, &r, &b), MS_OK);
    ck_assert_int_eq(b.n_s, 10);
    ck_assert_int_eq(b.n_q, 15);
    task_batch_free(&b);
    task_sampler_destroy(s);
}
END_TEST

START_TEST(sinusoid_values_stay_in_range) {
    // x ~ U[-5, 5) and |y| = A |sin| < 5; rounding to float may reach the closed bounds.
    TaskSampler *s = make_sampler("sinusoid", 0, 0);
    TaskBatch b;
    make_batch(&b, s, 10, 10);
    Rng r;
    rng_seed(&r, 2);
    long bad = 0;
    real xmin = 0, xmax = 0, ymax = 0;
    for (int e = 0; e < 5000; e++) {
        ck_assert_int_eq(task_sample(s, &r, &b), MS_OK);
        for (int pass = 0; pass < 2; pass++) {
            const real *x = pass ? b.xq : b.xs, *y = pass ? b.yq : b.ys;
            for (int i = 0; i < (pass ? b.n_q : b.n_s); i++) {
                bad += !(isfinite(x[i]) && isfinite(y[i]) && x[i] >= -5 && x[i] <= 5 &&
                         fabs(y[i]) <= 5);
                xmin = x[i] < xmin ? x[i] : xmin;
                xmax = x[i] > xmax ? x[i] : xmax;
                ymax = fabs(y[i]) > ymax ? (real)fabs(y[i]) : ymax;
            }
        }
    }
    ck_assert_int_eq(bad, 0);
    // 1e5 points fill the intervals: gaps at the ends of about 1e-4 are expected.
    ck_assert_double_lt(xmin, -4.99);
    ck_assert_double_gt(xmax, 4.99);
    ck_assert_double_gt(ymax, 4.9);
    task_batch_free(&b);
    task_sampler_destroy(s);
}
END_TEST

// Least-squares fit y = a sin x + b cos x over n points. Since A sin(x - phi) =
// A cos(phi) sin x - A sin(phi) cos x, amplitude = hypot(a, b) and phase = atan2(-b, a).
// Returns the largest absolute residual.
static double fit_sine(const real *x, const real *y, int n, double *amp, double *phase) {
    double ss = 0, sc = 0, cc = 0, sy = 0, cy = 0;
    for (int i = 0; i < n; i++) {
        double si = sin(x[i]), ci = cos(x[i]);
        ss += si * si;
        sc += si * ci;
        cc += ci * ci;
        sy += si * y[i];
        cy += ci * y[i];
    }
    double det = ss * cc - sc * sc;
    ck_assert_double_gt(det, 1e-6 * ss * cc); // well-posed: the x spread over more than pi
    double a = (sy * cc - cy * sc) / det, b = (cy * ss - sy * sc) / det;
    *amp = hypot(a, b);
    *phase = atan2(-b, a);
    // A phase at pi with a rounding-sized b of the wrong sign comes out as -pi: same angle.
    if (*phase < -PI / 2) *phase += 2 * PI;
    double worst = 0;
    for (int i = 0; i < n; i++) {
        double r = fabs(y[i] - (a * sin(x[i]) + b * cos(x[i])));
        worst = r > worst ? r : worst;
    }
    return worst;
}

START_TEST(sinusoid_episode_is_one_finn_sine_recoverable_from_support_and_query) {
    // Every episode must be exactly y = A sin(x - phi) with A in [0.1, 5], phi in [0, pi], the
    // same (A, phi) for support and query, and (A, phi) uniform over those ranges.
    // Tolerance 1e-3 on A and phi: the data differ from the exact curve only by float rounding
    // of y (<= 5 * 2^-24 = 3e-7; x is used as stored), which the fit turns into parameter errors
    // of order 3e-7 / A <= 3e-6. So 1e-3 has a wide margin, yet it is far below the effects it
    // guards against: a sign error (x + phi) puts the phase in [-pi, 0], a different (A, phi) for
    // the query set differs by ~1.6 in A on average, and a non-sine y leaves residuals ~1.
    TaskSampler *s = make_sampler("sinusoid", 0, 0);
    TaskBatch b;
    make_batch(&b, s, 20, 50);
    Rng r;
    rng_seed(&r, 3);
    enum { EPISODES = 2000 };
    const double tol = 1e-3;
    double amin = 10, amax = 0, pmin = 10, pmax = -10, asum = 0, psum = 0, worst = 0;
    for (int e = 0; e < EPISODES; e++) {
        ck_assert_int_eq(task_sample(s, &r, &b), MS_OK);
        double amp_s, ph_s, amp_q, ph_q;
        double res_s = fit_sine(b.xs, b.ys, b.n_s, &amp_s, &ph_s);
        double res_q = fit_sine(b.xq, b.yq, b.n_q, &amp_q, &ph_q);
        worst = fmax(worst, fmax(res_s, res_q));
        if (fabs(amp_s - amp_q) > tol || fabs(ph_s - ph_q) > tol)
            ck_abort_msg("episode %d: support (A %g, phi %g) vs query (A %g, phi %g)", e, amp_s,
                         ph_s, amp_q, ph_q);
        amin = fmin(amin, amp_q);
        amax = fmax(amax, amp_q);
        pmin = fmin(pmin, ph_q);
        pmax = fmax(pmax, ph_q);
        asum += amp_q;
        psum += ph_q;
    }
    ck_assert_double_lt(worst, 1e-5); // 30x the float rounding of y
    ck_assert_double_ge(amin, 0.1 - tol);
    ck_assert_double_le(amax, 5.0 + tol);
    ck_assert_double_ge(pmin, 0.0 - tol);
    ck_assert_double_le(pmax, PI + tol);
    // Coverage: with 2000 uniform draws the chance that none falls within 0.05 of an end is
    // (1 - 0.05 / 4.9)^2000 = 1e-9 for A and (1 - 0.05 / pi)^2000 = 1e-14 for phi.
    ck_assert_double_lt(amin, 0.15);
    ck_assert_double_gt(amax, 4.95);
    ck_assert_double_lt(pmin, 0.05);
    ck_assert_double_gt(pmax, PI - 0.05);
    // Uniformity of the means, 6 standard errors (width / sqrt(12 n)).
    ck_assert_double_eq_tol(asum / EPISODES, 2.55, 6 * 4.9 / sqrt(12.0 * EPISODES));
    ck_assert_double_eq_tol(psum / EPISODES, PI / 2, 6 * PI / sqrt(12.0 * EPISODES));
    task_batch_free(&b);
    task_sampler_destroy(s);
}
END_TEST

/* ---- reproducibility (both families) ---- */

static const char *const FAMILIES[] = {"sinusoid", "gaussian"};

START_TEST(same_seed_gives_identical_episodes_and_different_seeds_differ) {
    TaskSampler *s = make_sampler(FAMILIES[_i], 5, 3);
    TaskBatch a, b;
    make_batch(&a, s, 4, 6);
    make_batch(&b, s, 4, 6);
    Rng ra, rb;
    rng_seed(&ra, 1234);
    rng_seed(&rb, 1234);
    for (int e = 0; e < 50; e++) {
        ck_assert_int_eq(task_sample(s, &ra, &a), MS_OK);
        ck_assert_int_eq(task_sample(s, &rb, &b), MS_OK);
        ck_assert_msg(same_episode(&a, &b), "episode %d differs under the same seed", e);
    }
    rng_seed(&ra, 1234);
    rng_seed(&rb, 1235);
    for (int e = 0; e < 50; e++) {
        task_sample(s, &ra, &a);
        task_sample(s, &rb, &b);
        ck_assert_msg(!same_episode(&a, &b), "episode %d equal under different seeds", e);
    }
    task_batch_free(&a);
    task_batch_free(&b);
    task_sampler_destroy(s);
}
END_TEST

START_TEST(copied_rng_state_mid_stream_reproduces_the_remaining_episodes) {
    enum { LATER = 10 };
    TaskSampler *s = make_sampler(FAMILIES[_i], 3, 2);
    TaskBatch a, b;
    make_batch(&a, s, 5, 5);
    make_batch(&b, s, 5, 5);
    Rng r;
    rng_seed(&r, 99);
    for (int e = 0; e < 7; e++)
        task_sample(s, &r, &a);
    Rng copy = r; // what a checkpoint saves
    // Record the next episodes from r, then replay them from the copy.
    real *xs_log = malloc(sizeof(real) * LATER * (size_t)a.n_s * (size_t)a.x_dim);
    real *yq_log = malloc(sizeof(real) * LATER * (size_t)a.n_q);
    ck_assert_ptr_nonnull(xs_log);
    ck_assert_ptr_nonnull(yq_log);
    for (int e = 0; e < LATER; e++) {
        task_sample(s, &r, &a);
        memcpy(xs_log + (size_t)e * a.n_s * a.x_dim, a.xs, sizeof(real) * a.n_s * a.x_dim);
        memcpy(yq_log + (size_t)e * a.n_q, a.yq, sizeof(real) * a.n_q);
    }
    for (int e = 0; e < LATER; e++) {
        task_sample(s, &copy, &b);
        ck_assert(memcmp(xs_log + (size_t)e * b.n_s * b.x_dim, b.xs,
                         sizeof(real) * b.n_s * b.x_dim) == 0);
        ck_assert(memcmp(yq_log + (size_t)e * b.n_q, b.yq, sizeof(real) * b.n_q) == 0);
    }
    // Both streams end in the same state.
    ck_assert(memcmp(r.s, copy.s, sizeof r.s) == 0);
    free(xs_log);
    free(yq_log);
    task_batch_free(&a);
    task_batch_free(&b);
    task_sampler_destroy(s);
}
END_TEST

START_TEST(sample_val_draws_episodes_the_same_way_as_sample) {
    // Built-in families have no held-out split, so sample_val is sample.
    TaskSampler *s = make_sampler(FAMILIES[_i], 4, 2);
    TaskBatch a, b;
    make_batch(&a, s, 3, 3);
    make_batch(&b, s, 3, 3);
    Rng ra, rb;
    rng_seed(&ra, 5);
    rng_seed(&rb, 5);
    ck_assert_int_eq(s->sample(s, &ra, &a), MS_OK);
    ck_assert_int_eq(s->sample_val(s, &rb, &b), MS_OK);
    ck_assert(same_episode(&a, &b));
    task_batch_free(&a);
    task_batch_free(&b);
    task_sampler_destroy(s);
}
END_TEST

/* ---- gaussian ---- */

START_TEST(gaussian_sampler_has_the_documented_shape) {
    TaskSampler *s = make_sampler("gaussian", 5, 0); // dim 0: the default, 2
    ck_assert_str_eq(s->family, "gaussian");
    ck_assert_int_eq(s->x_dim, 2);
    ck_assert_int_eq(s->y_dim, 5);
    ck_assert_int_eq(s->classification, 1);
    ck_assert_int_eq(s->n_way, 5);
    TaskBatch b;
    make_batch(&b, s, 3, 4);
    ck_assert_int_eq(b.x_dim, 2);
    ck_assert_int_eq(b.y_cols, 1);
    Rng r;
    rng_seed(&r, 1);
    ck_assert_int_eq(task_sample(s, &r, &b), MS_OK);
    ck_assert_int_eq(b.n_s, 15); // n_way * k_support
    ck_assert_int_eq(b.n_q, 20);
    task_batch_free(&b);
    task_sampler_destroy(s);
    s = make_sampler("gaussian", 2, 17);
    ck_assert_int_eq(s->x_dim, 17);
    ck_assert_int_eq(s->y_dim, 2);
    task_sampler_destroy(s);
}
END_TEST

// Checks labels of one set: integers in [0, N), each exactly k times, every block of N rows a
// permutation (the documented interleaved layout).
static void check_labels(const real *y, int rows, int N, int k) {
    ck_assert_int_eq(rows, N * k);
    int count[100] = {0};
    for (int blk = 0; blk < k; blk++) {
        int seen[100] = {0};
        for (int c = 0; c < N; c++) {
            real v = y[blk * N + c];
            int l = (int)v;
            ck_assert_msg((real)l == v && l >= 0 && l < N, "label %g not in [0, %d)", v, N);
            ck_assert_msg(!seen[l], "label %d twice in row block %d", l, blk);
            seen[l] = 1;
            count[l]++;
        }
    }
    for (int l = 0; l < N; l++)
        ck_assert_int_eq(count[l], k);
}

START_TEST(gaussian_labels_are_class_indices_with_exactly_k_shots_per_class) {
    const int ways[] = {2, 5, 20, 100};
    for (size_t w = 0; w < sizeof ways / sizeof ways[0]; w++) {
        int N = ways[w];
        TaskSampler *s = make_sampler("gaussian", N, 3);
        TaskBatch b;
        make_batch(&b, s, 4, 7);
        Rng r;
        rng_seed(&r, 10 + w);
        for (int e = 0; e < 100; e++) {
            ck_assert_int_eq(task_sample(s, &r, &b), MS_OK);
            check_labels(b.ys, b.n_s, N, 4);
            check_labels(b.yq, b.n_q, N, 7);
            // Support and query share the labelling: row r (r < N) is the same drawn class.
            for (int c = 0; c < N; c++)
                ck_assert(b.ys[c] == b.yq[c]);
            for (int i = 0; i < b.n_s * b.x_dim; i++)
                ck_assert(isfinite(b.xs[i]));
        }
        task_batch_free(&b);
        task_sampler_destroy(s);
    }
}
END_TEST

START_TEST(gaussian_label_permutation_varies_across_episodes) {
    // The first N support rows are the drawn classes in order, so their labels are the
    // episode's permutation. 5-way has 120 permutations; 600 uniform draws show ~119 distinct
    // ones (a fixed labelling shows 1, so the bound of 100 is loose on purpose). The label of
    // drawn class 0 should be uniform on 5 values: chi-square, 4 degrees of freedom, 1 - 1e-9
    // quantile 48.
    enum { N = 5, EPISODES = 600 };
    TaskSampler *s = make_sampler("gaussian", N, 2);
    TaskBatch b;
    make_batch(&b, s, 1, 1);
    Rng r;
    rng_seed(&r, 4242);
    int seen[3125] = {0}; // base-5 code of a permutation
    int first[N] = {0}, distinct = 0;
    for (int e = 0; e < EPISODES; e++) {
        task_sample(s, &r, &b);
        int code = 0;
        for (int c = 0; c < N; c++)
            code = code * N + (int)b.ys[c];
        distinct += !seen[code];
        seen[code] = 1;
        first[(int)b.ys[0]]++;
    }
    ck_assert_int_ge(distinct, 100);
    double chi2 = 0, expect = (double)EPISODES / N;
    for (int l = 0; l < N; l++)
        chi2 += (first[l] - expect) * (first[l] - expect) / expect;
    ck_assert_double_lt(chi2, 48.0);
    task_batch_free(&b);
    task_sampler_destroy(s);
}
END_TEST

// Mean of the rows of x (rows x D) whose label in y equals l, into m (D).
static void class_mean(double *m, const real *x, const real *y, int rows, int D, int l) {
    int n = 0;
    for (int d = 0; d < D; d++)
        m[d] = 0;
    for (int i = 0; i < rows; i++) {
        if ((int)y[i] != l) continue;
        for (int d = 0; d < D; d++)
            m[d] += x[(size_t)i * D + d];
        n++;
    }
    ck_assert_int_gt(n, 0);
    for (int d = 0; d < D; d++)
        m[d] /= n;
}

START_TEST(gaussian_points_have_unit_noise_around_centres_of_the_documented_spread) {
    // Documented model: centre coordinates ~ N(0, sigma^2) with sigma^2 = 9 * 2 / dim, points =
    // centre + N(0, 1), support and query from the same centres. Over M = E * N * D
    // class-coordinates with k shots each:
    //  - within-class sample variance averages 1; each has variance 2 / (k - 1), so the
    //    standard error of the average is sqrt(2 / ((k - 1) M));
    //  - a support class mean m ~ N(0, sigma^2 + 1/k): E m^2 = sigma^2 + 1/k with standard
    //    error (sigma^2 + 1/k) sqrt(2 / M);
    //  - support minus query mean of one class ~ N(0, 1/ks + 1/kq) (it would be ~2 sigma^2 if
    //    the query had its own centres), standard error (1/ks + 1/kq) sqrt(2 / M).
    // All bounds at 6 standard errors.
    enum { N = 5, KS = 50, KQ = 25, E = 2000 };
    const int dims[] = {2, 8};
    for (int t = 0; t < 2; t++) {
        const int D = dims[t];
        const double sigma2 = 9.0 * 2 / D, M = (double)E * N * D;
        TaskSampler *s = make_sampler("gaussian", N, D);
        TaskBatch b;
        make_batch(&b, s, KS, KQ);
        Rng r;
        rng_seed(&r, 600 + t);
        double within = 0, centre2 = 0, shift2 = 0, ms[8], mq[8];
        for (int e = 0; e < E; e++) {
            task_sample(s, &r, &b);
            for (int l = 0; l < N; l++) {
                class_mean(ms, b.xs, b.ys, b.n_s, D, l);
                class_mean(mq, b.xq, b.yq, b.n_q, D, l);
                for (int d = 0; d < D; d++) {
                    centre2 += ms[d] * ms[d];
                    shift2 += (ms[d] - mq[d]) * (ms[d] - mq[d]);
                }
                for (int i = 0; i < b.n_s; i++) {
                    if ((int)b.ys[i] != l) continue;
                    for (int d = 0; d < D; d++) {
                        double dx = b.xs[(size_t)i * D + d] - ms[d];
                        within += dx * dx / (KS - 1);
                    }
                }
            }
        }
        ck_assert_double_eq_tol(within / M, 1.0, 6 * sqrt(2.0 / ((KS - 1) * M)));
        ck_assert_double_eq_tol(centre2 / M, sigma2 + 1.0 / KS,
                                6 * (sigma2 + 1.0 / KS) * sqrt(2 / M));
        const double v = 1.0 / KS + 1.0 / KQ;
        ck_assert_double_eq_tol(shift2 / M, v, 6 * v * sqrt(2 / M));
        task_batch_free(&b);
        task_sampler_destroy(s);
    }
}
END_TEST

// Query accuracy of the nearest-centroid classifier built from the support set, averaged over
// `episodes` episodes of N-way, k-shot, D-dim tasks (10 query shots per class).
static double nearest_centroid_accuracy(int N, int k, int D, int episodes, uint64_t seed) {
    TaskSampler *s = make_sampler("gaussian", N, D);
    TaskBatch b;
    make_batch(&b, s, k, 10);
    double *cent = malloc(sizeof(double) * (size_t)N * D);
    ck_assert_ptr_nonnull(cent);
    Rng r;
    rng_seed(&r, seed);
    long right = 0, total = 0;
    for (int e = 0; e < episodes; e++) {
        task_sample(s, &r, &b);
        for (int l = 0; l < N; l++)
            class_mean(cent + (size_t)l * D, b.xs, b.ys, b.n_s, D, l);
        for (int i = 0; i < b.n_q; i++) {
            int best = -1;
            double best_d = INFINITY;
            for (int l = 0; l < N; l++) {
                double dist = 0;
                for (int d = 0; d < D; d++) {
                    double t = b.xq[(size_t)i * D + d] - cent[(size_t)l * D + d];
                    dist += t * t;
                }
                if (dist < best_d) {
                    best_d = dist;
                    best = l;
                }
            }
            right += best == (int)b.yq[i];
            total++;
        }
    }
    free(cent);
    task_batch_free(&b);
    task_sampler_destroy(s);
    return (double)right / total;
}

START_TEST(nearest_centroid_from_the_support_set_classifies_the_query_set_well_above_chance) {
    // 5-way tasks: chance is 0.20. Measured accuracies (documented in gaussian.c) are 0.73
    // (2-D 1-shot), 0.81 (2-D 5-shot), 0.77 (32-D 1-shot). Over 1000 episodes x 50 queries the
    // standard error of an average is ~0.003 (less, per-episode effects aside), so the floor of
    // 0.6 = 3x chance is ~40 standard errors below the measured values yet could never be reached
    // by a family whose query labels were unrelated to the support set (0.20 +- 0.01). The
    // ceiling of 0.95 for 1-shot pins "not trivial": with a fixed centre spread of 3, 32-D tasks
    // score 1.00.
    double acc_2d_1 = nearest_centroid_accuracy(5, 1, 2, 1000, 71);
    double acc_2d_5 = nearest_centroid_accuracy(5, 5, 2, 1000, 72);
    double acc_32d_1 = nearest_centroid_accuracy(5, 1, 32, 1000, 73);
    ck_assert_double_gt(acc_2d_1, 0.6);
    ck_assert_double_gt(acc_2d_5, 0.6);
    ck_assert_double_gt(acc_32d_1, 0.6);
    ck_assert_double_lt(acc_2d_1, 0.95);
    ck_assert_double_lt(acc_32d_1, 0.95);
    // More shots give better centroids.
    ck_assert_double_gt(acc_2d_5, acc_2d_1);
}
END_TEST

/* ---- validation ---- */

// Expects task_sampler_create to fail with MS_ERR_INVALID, *out NULL and a message holding
// `field` (and `also`, when non-NULL).
static void expect_bad_config(const TaskConfig *cfg, const char *field, const char *also) {
    TaskSampler *s = (TaskSampler *)&s; // any non-NULL value: must be reset
    MsError err = {0};
    ck_assert_int_eq(task_sampler_create(&s, cfg, &err), MS_ERR_INVALID);
    ck_assert_ptr_null(s);
    ck_assert_int_eq(err.code, MS_ERR_INVALID);
    ck_assert_msg(strstr(err.msg, field) != NULL, "'%s' does not name %s", err.msg, field);
    if (also) ck_assert_msg(strstr(err.msg, also) != NULL, "'%s' lacks '%s'", err.msg, also);
}

START_TEST(invalid_configs_are_rejected_naming_the_field) {
    TaskConfig c = {0};
    strcpy(c.family, "foo");
    expect_bad_config(&c, "tasks.family", "'foo'");
    strcpy(c.family, "");
    expect_bad_config(&c, "tasks.family", NULL);
    strcpy(c.family, "Sinusoid"); // names are exact
    expect_bad_config(&c, "tasks.family", NULL);
    strcpy(c.family, "bad\x01name"); // not echoed: it would end up in a log and a response
    expect_bad_config(&c, "tasks.family", NULL);
    {
        MsError err = {0};
        TaskSampler *s = NULL;
        task_sampler_create(&s, &c, &err);
        ck_assert_ptr_null(strchr(err.msg, '\x01'));
    }
    memset(c.family, 'x', sizeof c.family); // no terminator
    expect_bad_config(&c, "tasks.family", NULL);

    const int bad_ways[] = {-1, 0, 1, 101, 1000000};
    for (size_t i = 0; i < sizeof bad_ways / sizeof bad_ways[0]; i++) {
        TaskConfig g = {.n_way = bad_ways[i], .dim = 2};
        strcpy(g.family, "gaussian");
        expect_bad_config(&g, "tasks.n_way", NULL);
    }
    const int bad_dims[] = {-1, 1025, 1 << 30};
    for (size_t i = 0; i < sizeof bad_dims / sizeof bad_dims[0]; i++) {
        TaskConfig g = {.n_way = 5, .dim = bad_dims[i]};
        strcpy(g.family, "gaussian");
        expect_bad_config(&g, "tasks.dim", NULL);
    }
    // The boundaries themselves are accepted.
    task_sampler_destroy(make_sampler("gaussian", 2, 1));
    task_sampler_destroy(make_sampler("gaussian", 100, 1024));
}
END_TEST

// Expects task_batch_init to fail with `code`, a message naming `field`, and a zeroed batch.
static void expect_bad_batch(const TaskSampler *s, int ks, int kq, MsStatus code,
                             const char *field) {
    TaskBatch b;
    memset(&b, 0xA5, sizeof b); // garbage, as an uninitialised struct would hold
    MsError err = {0};
    ck_assert_int_eq(task_batch_init(&b, s, ks, kq, &err), code);
    ck_assert_int_eq(err.code, code);
    ck_assert_msg(strstr(err.msg, field) != NULL, "'%s' does not name %s", err.msg, field);
    ck_assert_ptr_null(b.xs);
    ck_assert_ptr_null(b.yq);
    task_batch_free(&b); // safe after a failed init
}

START_TEST(bad_shot_counts_are_rejected_before_allocating) {
    TaskSampler *sine = make_sampler("sinusoid", 0, 0);
    expect_bad_batch(sine, 0, 10, MS_ERR_INVALID, "tasks.k_support");
    expect_bad_batch(sine, -5, 10, MS_ERR_INVALID, "tasks.k_support");
    expect_bad_batch(sine, 100001, 10, MS_ERR_INVALID, "tasks.k_support");
    expect_bad_batch(sine, 10, 0, MS_ERR_INVALID, "tasks.k_query");
    expect_bad_batch(sine, 10, 100001, MS_ERR_INVALID, "tasks.k_query");
    TaskBatch b;
    make_batch(&b, sine, 100000, 100000); // the per-field maximum fits for regression
    task_batch_free(&b);
    // 100-way, 1024-D, 1000 + 1000 shots: 2e5 rows x 1025 reals = 820 MB > the 256 MiB limit.
    TaskSampler *wide = make_sampler("gaussian", 100, 1024);
    expect_bad_batch(wide, 1000, 1000, MS_ERR_TOO_LARGE, "tasks.k_support");
    make_batch(&b, wide, 5, 15); // 2000 rows: fine
    task_batch_free(&b);
    task_sampler_destroy(wide);
    task_sampler_destroy(sine);
}
END_TEST

START_TEST(free_and_destroy_accept_null_zeroed_and_freed_objects) {
    TaskBatch b;
    memset(&b, 0, sizeof b);
    task_batch_free(&b);
    task_batch_free(NULL);
    task_sampler_destroy(NULL);
    TaskSampler *s = make_sampler("gaussian", 3, 2);
    make_batch(&b, s, 2, 2);
    task_batch_free(&b);
    ck_assert_ptr_null(b.xs);
    task_batch_free(&b); // a second free is harmless
    task_sampler_destroy(s);
}
END_TEST

static Suite *sampler_suite(void) {
    Suite *s = suite_create("sampler");
    TCase *tc = tcase_create("tasks");
    tcase_add_test(tc, sinusoid_sampler_has_the_documented_shape);
    tcase_add_test(tc, sinusoid_values_stay_in_range);
    tcase_add_test(tc, sinusoid_episode_is_one_finn_sine_recoverable_from_support_and_query);
    tcase_add_loop_test(tc, same_seed_gives_identical_episodes_and_different_seeds_differ, 0, 2);
    tcase_add_loop_test(tc, copied_rng_state_mid_stream_reproduces_the_remaining_episodes, 0, 2);
    tcase_add_loop_test(tc, sample_val_draws_episodes_the_same_way_as_sample, 0, 2);
    tcase_add_test(tc, gaussian_sampler_has_the_documented_shape);
    tcase_add_test(tc, gaussian_labels_are_class_indices_with_exactly_k_shots_per_class);
    tcase_add_test(tc, gaussian_label_permutation_varies_across_episodes);
    tcase_add_test(tc, gaussian_points_have_unit_noise_around_centres_of_the_documented_spread);
    tcase_add_test(
        tc, nearest_centroid_from_the_support_set_classifies_the_query_set_well_above_chance);
    tcase_add_test(tc, invalid_configs_are_rejected_naming_the_field);
    tcase_add_test(tc, bad_shot_counts_are_rejected_before_allocating);
    tcase_add_test(tc, free_and_destroy_accept_null_zeroed_and_freed_objects);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) {
    SRunner *sr = srunner_create(sampler_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
