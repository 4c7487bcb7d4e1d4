/*
 * Tests of tasks/dataset: packing of uploaded task collections and labelled pools (layout,
 * remapping, stable grouping), the validation messages a client sees, the check of arrays read
 * back from storage, and the dataset sampler (episodes from one task or from n_way distinct
 * classes, distinct points, labels 0..n_way-1 exactly k times, a varying label permutation,
 * test classes only in validation episodes, episodes a pure function of the Rng state). The suite
 * is built twice, against ms_tasks (float) and ms_tasks_f64 (double).
 *
 * Fixtures encode provenance in the data: every x row starts with its source row id and its task
 * or original label, so each episode row can be traced back and checked exactly (values pass
 * float -> real unchanged, so comparisons are exact, tolerance 0).
 *
 * The memory test packs and samples a 100,000 x 784 pool (314 MB of x) and bounds the peak RSS
 * growth; with glibc (and no AddressSanitizer) this file also counts calls to malloc, calloc and
 * realloc, so "sampling allocates nothing" and "limits are checked before allocating" are
 * measured, not assumed.
 */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "metaserve/tasks/dataset.h"

/* ---- allocation counting ---- */

#if defined(__SANITIZE_ADDRESS__)
#define TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TEST_ASAN 1
#endif
#endif

#if defined(__GLIBC__) && !defined(TEST_ASAN)
// glibc lets a program replace malloc (glibc manual, "Replacing malloc"); these forward to the
// real allocator and count calls, process-wide, library code included.
#define TEST_COUNTS_ALLOCS 1
extern void *__libc_malloc(size_t n);
extern void *__libc_calloc(size_t n, size_t size);
extern void *__libc_realloc(void *p, size_t n);
extern void __libc_free(void *p);
static volatile size_t n_allocs;
void *malloc(size_t n) {
    n_allocs++;
    return __libc_malloc(n);
}
void *calloc(size_t n, size_t size) {
    n_allocs++;
    return __libc_calloc(n, size);
}
void *realloc(void *p, size_t n) {
    n_allocs++;
    return __libc_realloc(p, n);
}
void free(void *p) {
    __libc_free(p);
}
#else
#define TEST_COUNTS_ALLOCS 0
static volatile size_t n_allocs; // stays 0: checks that need it are skipped
#endif

/* ---- fixtures ---- */

// Tasks fixture: task t has sizes[t] points; point p of task t has x = (1000 t + p, t, p) and
// y = (t + 0.5, -p).
#define T_XD 3
#define T_YD 2

static DatasetTaskIn *tasks_input(const int *sizes, int n_tasks) {
    DatasetTaskIn *in = calloc((size_t)n_tasks, sizeof *in);
    ck_assert_ptr_nonnull(in);
    for (int t = 0; t < n_tasks; t++) {
        float *x = malloc((size_t)sizes[t] * T_XD * sizeof *x);
        float *y = malloc((size_t)sizes[t] * T_YD * sizeof *y);
        ck_assert(x && y);
        for (int p = 0; p < sizes[t]; p++) {
            x[p * T_XD + 0] = (float)(1000 * t + p);
            x[p * T_XD + 1] = (float)t;
            x[p * T_XD + 2] = (float)p;
            y[p * T_YD + 0] = (float)t + 0.5f;
            y[p * T_YD + 1] = (float)-p;
        }
        in[t] = (DatasetTaskIn){.x = x, .y = y, .n_points = sizes[t], .x_dim = T_XD, .y_dim = T_YD};
    }
    return in;
}

static void tasks_input_free(DatasetTaskIn *in, int n_tasks) {
    for (int t = 0; t < n_tasks; t++) {
        free((void *)in[t].x);
        free((void *)in[t].y);
    }
    free(in);
}

static void pack_tasks_ok(DatasetPacked *p, const int *sizes, int n_tasks) {
    DatasetTaskIn *in = tasks_input(sizes, n_tasks);
    MsError err = {0};
    MsStatus st = dataset_pack_tasks(p, in, (size_t)n_tasks, NULL, &err);
    ck_assert_msg(st == MS_OK, "pack: %s", err.msg);
    tasks_input_free(in, n_tasks);
}

// Classes fixture: 600 rows, each labelled with one of LABELS drawn at random (seed 11), x row r
// = (r, label, r / 2). Sorted distinct labels: -7 3 5 9 11 42 100 1000; 42 and 1000 are test
// classes (class indices 5 and 7), the other six train.
#define C_ROWS 600
#define C_XD   3
#define C_NL   8
static const int32_t LABELS[C_NL] = {1000, -7, 42, 3, 100, 5, 9, 11};
static const int32_t SORTED[C_NL] = {-7, 3, 5, 9, 11, 42, 100, 1000};
static const int32_t TEST_LABELS[2] = {42, 1000};

typedef struct {
    float x[C_ROWS * C_XD];
    int32_t labels[C_ROWS];
} Pool;

static void pool_init(Pool *pool) {
    Rng r;
    rng_seed(&r, 11);
    for (int i = 0; i < C_ROWS; i++) {
        pool->labels[i] = LABELS[rng_below(&r, C_NL)];
        pool->x[i * C_XD + 0] = (float)i;
        pool->x[i * C_XD + 1] = (float)pool->labels[i];
        pool->x[i * C_XD + 2] = (float)i / 2;
    }
}

static DatasetClassesIn pool_input(const Pool *pool, const int32_t *test, size_t n_test) {
    return (DatasetClassesIn){.x = pool->x,
                              .labels = pool->labels,
                              .n_rows = C_ROWS,
                              .x_dim = C_XD,
                              .test_classes = test,
                              .n_test = n_test};
}

static void pack_pool_ok(DatasetPacked *p, const Pool *pool) {
    DatasetClassesIn in = pool_input(pool, TEST_LABELS, 2);
    MsError err = {0};
    MsStatus st = dataset_pack_classes(p, &in, NULL, &err);
    ck_assert_msg(st == MS_OK, "pack: %s", err.msg);
}

static TaskSampler *make_sampler(const DatasetView *v, int n_way) {
    TaskSampler *s = NULL;
    MsError err = {0};
    MsStatus st = dataset_sampler_create(&s, v, n_way, &err);
    ck_assert_msg(st == MS_OK, "sampler: %s", err.msg);
    return s;
}

static void make_batch(TaskBatch *b, const TaskSampler *s, int ks, int kq) {
    MsError err = {0};
    MsStatus st = task_batch_init(b, s, ks, kq, &err);
    ck_assert_msg(st == MS_OK, "batch: %s", err.msg);
}

static int same_episode(const TaskBatch *a, const TaskBatch *b) {
    size_t D = (size_t)a->x_dim, C = (size_t)a->y_cols;
    return a->n_s == b->n_s && a->n_q == b->n_q &&
           memcmp(a->xs, b->xs, (size_t)a->n_s * D * sizeof(real)) == 0 &&
           memcmp(a->ys, b->ys, (size_t)a->n_s * C * sizeof(real)) == 0 &&
           memcmp(a->xq, b->xq, (size_t)a->n_q * D * sizeof(real)) == 0 &&
           memcmp(a->yq, b->yq, (size_t)a->n_q * C * sizeof(real)) == 0;
}

// x row i of the support (i < n_s) or query (i - n_s) set of b.
static const real *episode_x(const TaskBatch *b, int i) {
    return i < b->n_s ? b->xs + (size_t)i * b->x_dim : b->xq + (size_t)(i - b->n_s) * b->x_dim;
}
static const real *episode_y(const TaskBatch *b, int i) {
    return i < b->n_s ? b->ys + (size_t)i * b->y_cols : b->yq + (size_t)(i - b->n_s) * b->y_cols;
}

// 1 when the episode's row ids (x[0]) are pairwise distinct.
static int rows_distinct(const TaskBatch *b) {
    int n = b->n_s + b->n_q;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < i; j++)
            if (episode_x(b, i)[0] == episode_x(b, j)[0]) return 0;
    return 1;
}

static int is_test_label(real lbl) {
    return lbl == (real)TEST_LABELS[0] || lbl == (real)TEST_LABELS[1];
}

/* ---- tasks kind ---- */

START_TEST(tasks_pack_concatenates_rows_and_records_task_offsets) {
    const int sizes[] = {4, 7, 2, 5};
    DatasetPacked p;
    pack_tasks_ok(&p, sizes, 4);
    ck_assert_int_eq(p.kind, DATASET_TASKS);
    ck_assert_int_eq(p.x_dim, T_XD);
    ck_assert_int_eq(p.y_dim, T_YD);
    ck_assert_int_eq(p.n_rows, 18);
    ck_assert_int_eq(p.n_items, 4);
    ck_assert_int_eq(p.n_test, 0);
    ck_assert_uint_eq(p.n_x, 18 * T_XD);
    ck_assert_uint_eq(p.n_y, 18 * T_YD);
    ck_assert_uint_eq(p.n_index, 5);
    const int32_t want[] = {0, 4, 11, 13, 18};
    for (int t = 0; t < 5; t++)
        ck_assert_int_eq(p.index[t], want[t]);
    for (int t = 0; t < 4; t++)
        for (int r = p.index[t]; r < p.index[t + 1]; r++) {
            int pt = r - p.index[t];
            ck_assert_float_eq(p.x[r * T_XD + 0], (float)(1000 * t + pt));
            ck_assert_float_eq(p.x[r * T_XD + 1], (float)t);
            ck_assert_float_eq(p.y[r * T_YD + 0], (float)t + 0.5f);
            ck_assert_float_eq(p.y[r * T_YD + 1], (float)-pt);
        }
    DatasetView v = dataset_packed_view(&p);
    MsError err = {0};
    ck_assert_msg(dataset_view_check(&v, &err) == MS_OK, "%s", err.msg);
    ck_assert_int_eq(dataset_min_points(&v), 2);
    dataset_packed_free(&p);
    ck_assert_ptr_null(p.x);
    dataset_packed_free(&p); // a second free is harmless
    dataset_packed_free(NULL);
}
END_TEST

START_TEST(tasks_episodes_come_from_one_task_with_distinct_points) {
    const int sizes[] = {12, 30, 9, 20, 15};
    DatasetPacked p;
    pack_tasks_ok(&p, sizes, 5);
    DatasetView v = dataset_packed_view(&p);
    TaskSampler *s = make_sampler(&v, 0);
    ck_assert_str_eq(s->family, "dataset");
    ck_assert_int_eq(s->x_dim, T_XD);
    ck_assert_int_eq(s->y_dim, T_YD);
    ck_assert_int_eq(s->classification, 0);
    ck_assert_int_eq(s->n_way, 1);
    TaskBatch b;
    make_batch(&b, s, 4, 5);
    Rng r;
    rng_seed(&r, 3);
    int count[5] = {0};
    const int E = 5000;
    for (int e = 0; e < E; e++) {
        ck_assert_int_eq((e % 2 ? s->sample_val : s->sample)(s, &r, &b), MS_OK);
        ck_assert_int_eq(b.n_s, 4);
        ck_assert_int_eq(b.n_q, 5);
        const int t = (int)episode_x(&b, 0)[1];
        ck_assert(t >= 0 && t < 5);
        count[t]++;
        for (int i = 0; i < b.n_s + b.n_q; i++) {
            const real *x = episode_x(&b, i), *y = episode_y(&b, i);
            ck_assert_int_eq((int)x[1], t); // one task per episode
            ck_assert(x[2] >= 0 && x[2] < sizes[t]);
            ck_assert(x[0] == (real)(1000 * t) + x[2]); // the row arrived whole
            ck_assert(y[0] == (real)t + (real)0.5 && y[1] == -x[2]);
        }
        ck_assert(rows_distinct(&b));
    }
    // Tasks are picked uniformly: each count is Binomial(5000, 1/5), sd = 28.3; 6 sd = 170.
    for (int t = 0; t < 5; t++)
        ck_assert_msg(abs(count[t] - E / 5) < 170, "task %d drawn %d times", t, count[t]);
    task_batch_free(&b);
    task_sampler_destroy(s);
    dataset_packed_free(&p);
}
END_TEST

START_TEST(tasks_episode_points_are_uniform_within_the_task) {
    // One task of 10 points, 2 + 1 drawn: each point appears with probability 3/10 per episode;
    // over 20000 episodes each count is ~Binomial(20000, 0.3), sd = 64.8; 6 sd = 389.
    const int sizes[] = {10};
    DatasetPacked p;
    pack_tasks_ok(&p, sizes, 1);
    DatasetView v = dataset_packed_view(&p);
    TaskSampler *s = make_sampler(&v, 0);
    TaskBatch b;
    make_batch(&b, s, 2, 1);
    Rng r;
    rng_seed(&r, 5);
    int count[10] = {0};
    for (int e = 0; e < 20000; e++) {
        ck_assert_int_eq(task_sample(s, &r, &b), MS_OK);
        for (int i = 0; i < 3; i++)
            count[(int)episode_x(&b, i)[2]]++;
    }
    for (int pt = 0; pt < 10; pt++)
        ck_assert_msg(abs(count[pt] - 6000) < 389, "point %d drawn %d times", pt, count[pt]);
    task_batch_free(&b);
    task_sampler_destroy(s);
    dataset_packed_free(&p);
}
END_TEST

// Loop test: 0 = tasks kind, 1 = classes kind. A sampler that has already drawn episodes (and
// hit a too-small task) continues exactly like a fresh sampler started from the same Rng state:
// episodes depend on the Rng state alone, not on scratch left by earlier episodes.
START_TEST(same_rng_state_gives_the_same_episodes_on_a_used_and_a_fresh_sampler) {
    const int sizes[] = {12, 30, 9, 20, 3};
    Pool *pool = malloc(sizeof *pool);
    pool_init(pool);
    DatasetPacked p;
    if (_i == 0)
        pack_tasks_ok(&p, sizes, 5);
    else
        pack_pool_ok(&p, pool);
    DatasetView v = dataset_packed_view(&p);
    TaskSampler *used = make_sampler(&v, 3), *fresh = make_sampler(&v, 3);
    TaskBatch a, b;
    make_batch(&a, used, 2, 3);
    make_batch(&b, fresh, 2, 3);
    Rng r;
    rng_seed(&r, 17);
    int failures = 0;
    for (int e = 0; e < 200; e++)
        failures += task_sample(used, &r, &a) != MS_OK;
    // Tasks kind: task 4 (3 points) cannot give 5 and is drawn ~1/5 of the time.
    if (_i == 0) ck_assert_int_gt(failures, 10);
    if (_i == 1) ck_assert_int_eq(failures, 0);
    Rng r2 = r;
    int same = 0, ok = 0;
    for (int e = 0; e < 200; e++) {
        MsStatus sa = (e % 3 ? used->sample : used->sample_val)(used, &r, &a);
        MsStatus sb = (e % 3 ? fresh->sample : fresh->sample_val)(fresh, &r2, &b);
        ck_assert_int_eq(sa, sb);
        if (sa != MS_OK) continue;
        ok++;
        same += same_episode(&a, &b);
    }
    ck_assert_int_eq(same, ok);
    ck_assert_int_gt(ok, 100);
    // And a different seed gives different episodes.
    Rng r3;
    rng_seed(&r3, 18);
    rng_seed(&r2, 17);
    int differ = 0;
    for (int e = 0; e < 20; e++) {
        MsStatus sa = task_sample(used, &r2, &a), sb = task_sample(fresh, &r3, &b);
        differ += sa == MS_OK && sb == MS_OK && !same_episode(&a, &b);
    }
    ck_assert_int_ge(differ, 10);
    task_batch_free(&a);
    task_batch_free(&b);
    task_sampler_destroy(used);
    task_sampler_destroy(fresh);
    dataset_packed_free(&p);
    free(pool);
}
END_TEST

START_TEST(too_few_points_for_the_shots_are_caught_up_front_and_at_sampling) {
    const int sizes[] = {12, 30, 4, 20};
    DatasetPacked p;
    pack_tasks_ok(&p, sizes, 4);
    DatasetView v = dataset_packed_view(&p);
    ck_assert_int_eq(dataset_min_points(&v), 4);
    MsError err = {0};
    ck_assert_int_eq(dataset_shots_check(&v, 2, 2, &err), MS_OK);
    ck_assert_int_eq(dataset_shots_check(&v, 3, 2, &err), MS_ERR_INVALID);
    ck_assert_msg(strstr(err.msg, "tasks.k_support") && strstr(err.msg, "tasks[2]") &&
                      strstr(err.msg, "only 4"),
                  "%s", err.msg);
    ck_assert_int_eq(dataset_shots_check(&v, 0, 2, &err), MS_ERR_INVALID);
    TaskSampler *s = make_sampler(&v, 0);
    TaskBatch b;
    make_batch(&b, s, 3, 2);
    Rng r;
    rng_seed(&r, 9);
    int bad = 0;
    for (int e = 0; e < 400; e++) {
        MsStatus st = task_sample(s, &r, &b);
        ck_assert(st == MS_OK || st == MS_ERR_INVALID);
        if (st != MS_OK) bad++;
    }
    // Task 2 is drawn with probability 1/4: Binomial(400, 1/4) = 100 +- 8.7; 6 sd bounds.
    ck_assert_msg(bad > 48 && bad < 152, "%d failures", bad);
    task_batch_free(&b);
    task_sampler_destroy(s);
    dataset_packed_free(&p);
}
END_TEST

/* ---- classes kind ---- */

START_TEST(classes_pack_groups_rows_by_class_in_ascending_label_order) {
    Pool *pool = malloc(sizeof *pool);
    pool_init(pool);
    DatasetPacked p;
    pack_pool_ok(&p, pool);
    ck_assert_int_eq(p.kind, DATASET_CLASSES);
    ck_assert_int_eq(p.n_items, C_NL);
    ck_assert_int_eq(p.n_test, 2);
    ck_assert_int_eq(p.y_dim, 1);
    ck_assert_int_eq(p.n_rows, C_ROWS);
    ck_assert_uint_eq(p.n_index, 3 * C_NL + 1);
    const int32_t *off = p.index, *flags = p.index + C_NL + 1, *orig = p.index + 2 * C_NL + 1;
    ck_assert_int_eq(off[0], 0);
    ck_assert_int_eq(off[C_NL], C_ROWS);
    for (int c = 0; c < C_NL; c++) {
        ck_assert_int_eq(orig[c], SORTED[c]);
        ck_assert_int_eq(flags[c], SORTED[c] == 42 || SORTED[c] == 1000);
        int n_in = 0;
        for (int i = 0; i < C_ROWS; i++)
            n_in += pool->labels[i] == SORTED[c];
        ck_assert_int_eq(off[c + 1] - off[c], n_in);
        for (int r = off[c]; r < off[c + 1]; r++) {
            ck_assert_float_eq(p.y[r], (float)c);
            ck_assert_float_eq(p.x[r * C_XD + 1], (float)SORTED[c]);
            int src = (int)p.x[r * C_XD + 0];
            ck_assert_float_eq(p.x[r * C_XD + 2], (float)src / 2); // the row arrived whole
            if (r > off[c]) ck_assert_float_gt(p.x[r * C_XD], p.x[(r - 1) * C_XD]); // stable
        }
    }
    DatasetView v = dataset_packed_view(&p);
    MsError err = {0};
    ck_assert_msg(dataset_view_check(&v, &err) == MS_OK, "%s", err.msg);
    dataset_packed_free(&p);
    free(pool);
}
END_TEST

START_TEST(classes_episodes_have_each_label_k_times_and_one_class_per_label) {
    Pool *pool = malloc(sizeof *pool);
    pool_init(pool);
    DatasetPacked p;
    pack_pool_ok(&p, pool);
    DatasetView v = dataset_packed_view(&p);
    const int N = 4, KS = 3, KQ = 5;
    TaskSampler *s = make_sampler(&v, N);
    ck_assert_int_eq(s->classification, 1);
    ck_assert_int_eq(s->n_way, N);
    ck_assert_int_eq(s->y_dim, N);
    ck_assert_int_eq(s->x_dim, C_XD);
    TaskBatch b;
    make_batch(&b, s, KS, KQ);
    Rng r;
    rng_seed(&r, 21);
    for (int e = 0; e < 2000; e++) {
        ck_assert_int_eq(task_sample(s, &r, &b), MS_OK);
        ck_assert_int_eq(b.n_s, N * KS);
        ck_assert_int_eq(b.n_q, N * KQ);
        int support[4] = {0}, query[4] = {0};
        real cls_of[4] = {NAN, NAN, NAN, NAN}; // original label behind each episode label
        for (int i = 0; i < b.n_s + b.n_q; i++) {
            const real *x = episode_x(&b, i);
            const real y = episode_y(&b, i)[0];
            ck_assert(y >= 0 && y < N && y == (int)y);
            const int lbl = (int)y;
            (i < b.n_s ? support : query)[lbl]++;
            if (isnan(cls_of[lbl])) cls_of[lbl] = x[1];
            ck_assert(x[1] == cls_of[lbl]); // one original class per episode label
            ck_assert(!is_test_label(x[1]));
            ck_assert(x[2] == x[0] / 2); // the row arrived whole
            // The gaussian layout: row shot * N + c carries the c-th class's label.
            const int row = i < b.n_s ? i : i - b.n_s;
            ck_assert(y == episode_y(&b, row % N)[0]);
        }
        for (int c = 0; c < N; c++) {
            ck_assert_int_eq(support[c], KS);
            ck_assert_int_eq(query[c], KQ);
            for (int d = 0; d < c; d++)
                ck_assert(cls_of[c] != cls_of[d]); // distinct classes
        }
        ck_assert(rows_distinct(&b));
    }
    task_batch_free(&b);
    task_sampler_destroy(s);
    dataset_packed_free(&p);
    free(pool);
}
END_TEST

START_TEST(classes_label_permutation_varies_across_episodes) {
    Pool *pool = malloc(sizeof *pool);
    pool_init(pool);
    DatasetPacked p;
    pack_pool_ok(&p, pool);
    DatasetView v = dataset_packed_view(&p);
    TaskSampler *s = make_sampler(&v, 3);
    TaskBatch b;
    make_batch(&b, s, 1, 1);
    Rng r;
    rng_seed(&r, 23);
    // perms seen, coded as perm[0] * 9 + perm[1] * 3 + perm[2]; label given to class -7 (index
    // 0) each time it is drawn.
    int seen[27] = {0}, label_of_first[3] = {0};
    for (int e = 0; e < 300; e++) {
        ck_assert_int_eq(task_sample(s, &r, &b), MS_OK);
        const real *y = b.ys;
        seen[(int)y[0] * 9 + (int)y[1] * 3 + (int)y[2]] = 1;
        for (int c = 0; c < 3; c++)
            if (b.xs[c * C_XD + 1] == (real)-7) label_of_first[(int)y[c]]++;
    }
    // All 6 permutations appear: missing one in 300 uniform draws has probability < 6 (5/6)^300
    // ~ 1e-23. Class -7 is in ~1/2 of the episodes (3 of 6 training classes), each label ~50
    // times; a label never given to it would have probability ~3 (2/3)^150 ~ 1e-26.
    int n_seen = 0;
    for (int k = 0; k < 27; k++)
        n_seen += seen[k];
    ck_assert_int_eq(n_seen, 6);
    for (int c = 0; c < 3; c++)
        ck_assert_int_gt(label_of_first[c], 0);
    task_batch_free(&b);
    task_sampler_destroy(s);
    dataset_packed_free(&p);
    free(pool);
}
END_TEST

START_TEST(sample_val_draws_only_test_classes_and_sample_only_training_classes) {
    Pool *pool = malloc(sizeof *pool);
    pool_init(pool);
    DatasetPacked p;
    pack_pool_ok(&p, pool);
    DatasetView v = dataset_packed_view(&p);
    TaskSampler *s2 = make_sampler(&v, 2), *s3 = make_sampler(&v, 3);
    TaskBatch b2, b3;
    make_batch(&b2, s2, 2, 2);
    make_batch(&b3, s3, 2, 2);
    Rng r;
    rng_seed(&r, 29);
    int train_seen[C_NL] = {0}; // by class index
    for (int e = 0; e < 500; e++) {
        ck_assert_int_eq(s2->sample_val(s2, &r, &b2), MS_OK);
        for (int i = 0; i < b2.n_s + b2.n_q; i++)
            ck_assert(is_test_label(episode_x(&b2, i)[1]));
        ck_assert(episode_x(&b2, 0)[1] != episode_x(&b2, 1)[1]); // both test classes
        ck_assert_int_eq(s2->sample(s2, &r, &b2), MS_OK);
        for (int i = 0; i < b2.n_s + b2.n_q; i++)
            ck_assert(!is_test_label(episode_x(&b2, i)[1]));
        // Only 2 test classes: a 3-way validation episode falls back to the training classes.
        ck_assert_int_eq(s3->sample_val(s3, &r, &b3), MS_OK);
        for (int i = 0; i < b3.n_s + b3.n_q; i++) {
            real lbl = episode_x(&b3, i)[1];
            ck_assert(!is_test_label(lbl));
            for (int c = 0; c < C_NL; c++)
                train_seen[c] += lbl == (real)SORTED[c];
        }
    }
    for (int c = 0; c < C_NL; c++)
        ck_assert_int_eq(train_seen[c] > 0, !(SORTED[c] == 42 || SORTED[c] == 1000));
    task_batch_free(&b2);
    task_batch_free(&b3);
    task_sampler_destroy(s2);
    task_sampler_destroy(s3);
    dataset_packed_free(&p);
    free(pool);
}
END_TEST

START_TEST(n_way_beyond_the_training_classes_is_rejected) {
    Pool *pool = malloc(sizeof *pool);
    pool_init(pool);
    DatasetPacked p;
    pack_pool_ok(&p, pool);
    DatasetView v = dataset_packed_view(&p);
    TaskSampler dummy, *s = &dummy; // must be reset to NULL on failure
    MsError err = {0};
    ck_assert_int_eq(dataset_sampler_create(&s, &v, 7, &err), MS_ERR_INVALID); // 6 train
    ck_assert_ptr_null(s);
    ck_assert_msg(strstr(err.msg, "tasks.n_way") && strstr(err.msg, "6 training"), "%s", err.msg);
    ck_assert_int_eq(dataset_sampler_create(&s, &v, 1, &err), MS_ERR_INVALID);
    s = make_sampler(&v, 6);
    task_sampler_destroy(s);
    // A class smaller than k_support + k_query: named with its original label.
    ck_assert_int_eq(dataset_shots_check(&v, 5, 5, &err), MS_OK);
    int64_t m = dataset_min_points(&v);
    int smallest = 0; // the first class of the fewest rows, found here from the offsets
    for (int c = 1; c < C_NL; c++)
        if (p.index[c + 1] - p.index[c] < p.index[smallest + 1] - p.index[smallest]) smallest = c;
    ck_assert_int_eq(m, p.index[smallest + 1] - p.index[smallest]);
    ck_assert_int_eq(dataset_shots_check(&v, (int)m - 1, 1, &err), MS_OK);
    ck_assert_int_eq(dataset_shots_check(&v, (int)m, 1, &err), MS_ERR_INVALID);
    char want[64];
    snprintf(want, sizeof want, "class %d of the dataset has only %lld", (int)SORTED[smallest],
             (long long)m);
    ck_assert_msg(strstr(err.msg, "rows per class") && strstr(err.msg, want), "%s", err.msg);
    dataset_packed_free(&p);
    free(pool);
}
END_TEST

/* ---- validation ---- */

START_TEST(task_upload_errors_name_the_field_and_position) {
    const int sizes[] = {4, 5, 6};
    DatasetTaskIn *in = tasks_input(sizes, 3);
    DatasetPacked p;
    MsError err = {0};

    ((float *)in[1].x)[2 * T_XD + 1] = NAN;
    ck_assert_int_eq(dataset_pack_tasks(&p, in, 3, NULL, &err), MS_ERR_INVALID);
    ck_assert_msg(strstr(err.msg, "tasks[1].x[2][1]: not a finite number"), "%s", err.msg);
    ck_assert_ptr_null(p.x);
    ((float *)in[1].x)[2 * T_XD + 1] = 0;

    ((float *)in[2].y)[5 * T_YD + 0] = -INFINITY;
    ck_assert_int_eq(dataset_pack_tasks(&p, in, 3, NULL, &err), MS_ERR_INVALID);
    ck_assert_msg(strstr(err.msg, "tasks[2].y[5][0]: not a finite number"), "%s", err.msg);
    ((float *)in[2].y)[5 * T_YD + 0] = 0;

    in[2].x_dim = 2;
    ck_assert_int_eq(dataset_pack_tasks(&p, in, 3, NULL, &err), MS_ERR_INVALID);
    ck_assert_msg(strstr(err.msg, "tasks[2].x") && strstr(err.msg, "same x width"), "%s", err.msg);
    in[2].x_dim = T_XD;
    in[1].y_dim = 3;
    ck_assert_int_eq(dataset_pack_tasks(&p, in, 3, NULL, &err), MS_ERR_INVALID);
    ck_assert_msg(strstr(err.msg, "tasks[1].y"), "%s", err.msg);
    in[1].y_dim = T_YD;

    in[1].n_points = 1;
    ck_assert_int_eq(dataset_pack_tasks(&p, in, 3, NULL, &err), MS_ERR_INVALID);
    ck_assert_msg(strstr(err.msg, "tasks[1]: has 1 point;") && strstr(err.msg, "k_support"), "%s",
                  err.msg);
    in[1].n_points = 5;

    ck_assert_int_eq(dataset_pack_tasks(&p, in, 0, NULL, &err), MS_ERR_INVALID);
    ck_assert_msg(strstr(err.msg, "tasks: empty"), "%s", err.msg);

    for (int t = 0; t < 3; t++)
        in[t].x_dim = DATASET_MAX_X_DIM + 1;
    ck_assert_int_eq(dataset_pack_tasks(&p, in, 3, NULL, &err), MS_ERR_INVALID);
    ck_assert_msg(strstr(err.msg, "tasks[0].x") && strstr(err.msg, "4096"), "%s", err.msg);
    for (int t = 0; t < 3; t++)
        in[t].x_dim = T_XD;

    ck_assert_int_eq(dataset_pack_tasks(&p, in, 3, NULL, &err), MS_OK); // repaired: accepted
    dataset_packed_free(&p);
    tasks_input_free(in, 3);
}
END_TEST

START_TEST(class_upload_errors_name_the_field_and_position) {
    Pool *pool = malloc(sizeof *pool);
    pool_init(pool);
    DatasetPacked p;
    MsError err = {0};

    pool->x[5 * C_XD + 2] = INFINITY;
    DatasetClassesIn in = pool_input(pool, TEST_LABELS, 2);
    ck_assert_int_eq(dataset_pack_classes(&p, &in, NULL, &err), MS_ERR_INVALID);
    ck_assert_msg(strstr(err.msg, "x[5][2]: not a finite number"), "%s", err.msg);
    ck_assert_ptr_null(p.x);
    pool->x[5 * C_XD + 2] = 0;

    const int32_t unknown[] = {42, 77};
    in = pool_input(pool, unknown, 2);
    ck_assert_int_eq(dataset_pack_classes(&p, &in, NULL, &err), MS_ERR_INVALID);
    ck_assert_msg(strstr(err.msg, "test_classes[1]: label 77 does not occur"), "%s", err.msg);

    const int32_t twice[] = {42, 1000, 42};
    in = pool_input(pool, twice, 3);
    ck_assert_int_eq(dataset_pack_classes(&p, &in, NULL, &err), MS_ERR_INVALID);
    ck_assert_msg(strstr(err.msg, "test_classes[2]: label 42 is listed twice"), "%s", err.msg);

    // 7 of 8 classes held out leaves one for meta-training.
    const int32_t most[] = {-7, 3, 5, 9, 11, 42, 100};
    in = pool_input(pool, most, 7);
    ck_assert_int_eq(dataset_pack_classes(&p, &in, NULL, &err), MS_ERR_INVALID);
    ck_assert_msg(strstr(err.msg, "test_classes:") && strstr(err.msg, "at least 2"), "%s", err.msg);

    for (int i = 0; i < C_ROWS; i++)
        pool->labels[i] = 4;
    in = pool_input(pool, NULL, 0);
    ck_assert_int_eq(dataset_pack_classes(&p, &in, NULL, &err), MS_ERR_INVALID);
    ck_assert_msg(strstr(err.msg, "labels: 1 distinct class") && strstr(err.msg, "at least 2"),
                  "%s", err.msg);

    in.n_rows = 0;
    ck_assert_int_eq(dataset_pack_classes(&p, &in, NULL, &err), MS_ERR_INVALID);
    ck_assert_msg(strstr(err.msg, "x: no rows"), "%s", err.msg);
    in.n_rows = C_ROWS;
    in.x_dim = 0;
    ck_assert_int_eq(dataset_pack_classes(&p, &in, NULL, &err), MS_ERR_INVALID);
    ck_assert_msg(strstr(err.msg, "x: rows have 0 values"), "%s", err.msg);
    free(pool);
}
END_TEST

START_TEST(limits_are_enforced_before_anything_is_allocated) {
    Pool *pool = malloc(sizeof *pool);
    pool_init(pool);
    const int sizes[] = {300, 300};
    DatasetTaskIn *tin = tasks_input(sizes, 2);
    DatasetClassesIn cin = pool_input(pool, TEST_LABELS, 2);
    DatasetPacked p;
    MsError err = {0};
    DatasetLimits lim;
    dataset_limits_default(&lim);
    ck_assert_int_eq(lim.max_rows, 10000000);
    ck_assert_uint_eq(lim.max_bytes, (size_t)512 << 20);

    // Each call is bracketed by allocation counts read right before and after it (Check's
    // assertions may allocate, so none sits inside a bracket).
    lim.max_rows = 599;
    size_t a0 = n_allocs;
    MsStatus st = dataset_pack_tasks(&p, tin, 2, &lim, &err);
    size_t used = n_allocs - a0;
    ck_assert_int_eq(st, MS_ERR_TOO_LARGE);
    ck_assert_uint_eq(used, 0);
    ck_assert_msg(strstr(err.msg, "tasks:") && strstr(err.msg, "599"), "%s", err.msg);
    a0 = n_allocs;
    st = dataset_pack_classes(&p, &cin, &lim, &err);
    used = n_allocs - a0;
    ck_assert_int_eq(st, MS_ERR_TOO_LARGE);
    ck_assert_uint_eq(used, 0);
    ck_assert_msg(strstr(err.msg, "x: 600 rows exceed the limit of 599"), "%s", err.msg);

    // Packed tasks: 600 x (3 + 2) floats + 3 offsets = 12012 bytes; classes: 600 x (3 + 1)
    // floats = 9600 bytes before the index (8 x 3 + 1 ints = 100 bytes).
    dataset_limits_default(&lim);
    lim.max_bytes = 12011;
    a0 = n_allocs;
    st = dataset_pack_tasks(&p, tin, 2, &lim, &err);
    used = n_allocs - a0;
    ck_assert_int_eq(st, MS_ERR_TOO_LARGE);
    ck_assert_uint_eq(used, 0);
    ck_assert_msg(strstr(err.msg, "MiB"), "%s", err.msg);
    lim.max_bytes = 9599;
    a0 = n_allocs;
    st = dataset_pack_classes(&p, &cin, &lim, &err);
    used = n_allocs - a0;
    ck_assert_int_eq(st, MS_ERR_TOO_LARGE);
    ck_assert_uint_eq(used, 0);
    // x and y fit, the index does not: found once C is known, before the outputs exist (only the
    // label scratch and the test flags, one row-sized and one class-sized array, are allocated).
    lim.max_bytes = 9699;
    a0 = n_allocs;
    st = dataset_pack_classes(&p, &cin, &lim, &err);
    used = n_allocs - a0;
    ck_assert_int_eq(st, MS_ERR_TOO_LARGE);
    if (TEST_COUNTS_ALLOCS) ck_assert_uint_eq(used, 2);

    lim.max_bytes = 12012;
    ck_assert_int_eq(dataset_pack_tasks(&p, tin, 2, &lim, &err), MS_OK);
    dataset_packed_free(&p);
    lim.max_bytes = 9700;
    a0 = n_allocs;
    st = dataset_pack_classes(&p, &cin, &lim, &err);
    used = n_allocs - a0;
    ck_assert_int_eq(st, MS_OK);
    // Three outputs, one allocation each, plus the two scratch arrays.
    if (TEST_COUNTS_ALLOCS) ck_assert_uint_eq(used, 5);
    dataset_packed_free(&p);
    tasks_input_free(tin, 2);
    free(pool);
}
END_TEST

START_TEST(kind_names_round_trip_and_unknown_kinds_are_rejected) {
    DatasetKind k;
    MsError err = {0};
    ck_assert_int_eq(dataset_kind_parse("tasks", &k, &err), MS_OK);
    ck_assert_int_eq(k, DATASET_TASKS);
    ck_assert_int_eq(dataset_kind_parse("classes", &k, &err), MS_OK);
    ck_assert_int_eq(k, DATASET_CLASSES);
    ck_assert_str_eq(dataset_kind_name(DATASET_TASKS), "tasks");
    ck_assert_str_eq(dataset_kind_name(DATASET_CLASSES), "classes");
    ck_assert_int_eq(dataset_kind_parse("images", &k, &err), MS_ERR_INVALID);
    ck_assert_msg(strstr(err.msg, "kind"), "%s", err.msg);
}
END_TEST

/* ---- stored data ---- */

// Expects dataset_view_check (and dataset_sampler_create) to refuse v with a message containing
// `what`.
static void expect_rejected(const DatasetView *v, const char *what) {
    MsError err = {0};
    ck_assert_int_eq(dataset_view_check(v, &err), MS_ERR_INVALID);
    ck_assert_msg(strncmp(err.msg, "dataset: ", 9) == 0 && strstr(err.msg, what), "%s / %s",
                  err.msg, what);
    TaskSampler *s = NULL;
    ck_assert_int_eq(dataset_sampler_create(&s, v, 2, &err), MS_ERR_INVALID);
    ck_assert_ptr_null(s);
}

START_TEST(view_check_rejects_corrupted_task_offsets_and_sizes) {
    const int sizes[] = {4, 7, 2, 5};
    DatasetPacked p;
    pack_tasks_ok(&p, sizes, 4);
    int32_t idx[5];
    memcpy(idx, p.index, sizeof idx);
    DatasetView v = dataset_packed_view(&p);
    v.index = idx;
    idx[2] = 3; // 4 -> 3: task 1 goes backwards
    expect_rejected(&v, "corrupt offsets");
    idx[2] = 12; // task 2 would have 1 row
    expect_rejected(&v, "task 2");
    idx[2] = 11;
    idx[4] = 19; // past n_rows
    expect_rejected(&v, "task 3");
    idx[4] = 17; // short of n_rows
    expect_rejected(&v, "end at 17");
    idx[4] = 18;
    idx[0] = 1;
    expect_rejected(&v, "start at 1");
    idx[0] = 0;
    v.n_index = 4;
    expect_rejected(&v, "index holds 4");
    v.n_index = 5;
    v.n_x--;
    expect_rejected(&v, "x holds");
    v.n_x++;
    v.n_items = 10; // more tasks than 18 rows allow
    expect_rejected(&v, "10 tasks");
    v.n_items = 4;
    p.y[7] = NAN;
    expect_rejected(&v, "y[3][1] is not a finite number");
    p.y[7] = 0;
    MsError err = {0};
    ck_assert_msg(dataset_view_check(&v, &err) == MS_OK, "%s", err.msg); // repaired
    dataset_packed_free(&p);
}
END_TEST

START_TEST(view_check_rejects_corrupted_class_index_and_labels) {
    Pool *pool = malloc(sizeof *pool);
    pool_init(pool);
    DatasetPacked p;
    pack_pool_ok(&p, pool);
    int32_t idx[3 * C_NL + 1];
    memcpy(idx, p.index, sizeof idx);
    DatasetView v = dataset_packed_view(&p);
    v.index = idx;
    int32_t keep = idx[3];
    idx[3] = idx[2]; // an empty class: offsets must increase strictly
    expect_rejected(&v, "class 2");
    idx[3] = C_ROWS + 5;
    expect_rejected(&v, "corrupt offsets");
    idx[3] = keep;
    idx[C_NL + 1 + 4] = 2; // flag of class 4
    expect_rejected(&v, "test flag 2");
    idx[C_NL + 1 + 4] = 0;
    for (int c = 0; c < C_NL; c++)
        idx[C_NL + 1 + c] = c > 0; // one training class left
    expect_rejected(&v, "1 training classes");
    memcpy(idx, p.index, sizeof idx);
    idx[2 * C_NL + 1 + 3] = idx[2 * C_NL + 1 + 2]; // original labels must increase
    expect_rejected(&v, "strictly increasing");
    memcpy(idx, p.index, sizeof idx);
    p.y[idx[4]] = 2; // first row of class 4 claims class 2
    expect_rejected(&v, "lies in class 4");
    p.y[idx[4]] = 4;
    v.y_dim = 2;
    expect_rejected(&v, "y_dim 2");
    v.y_dim = 1;
    v.kind = (DatasetKind)7;
    expect_rejected(&v, "unknown kind");
    v.kind = DATASET_CLASSES;
    MsError err = {0};
    ck_assert_msg(dataset_view_check(&v, &err) == MS_OK, "%s", err.msg); // repaired
    dataset_packed_free(&p);
    free(pool);
}
END_TEST

/* ---- memory ---- */

static double peak_rss_bytes(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_maxrss * 1024.0; // Linux reports KiB
}

START_TEST(a_100k_by_784_pool_packs_and_samples_within_one_copy_of_the_data) {
    // 200 classes of 500 rows, the last 40 held out. Row r: x = (r, label, (r + d) mod 251 ...).
    const size_t n = 100000, D = 784, C = 200;
    const double data = (double)n * D * sizeof(float) + (double)n * sizeof(int32_t);
    const double peak0 = peak_rss_bytes();
    float *x = malloc(n * D * sizeof *x);
    int32_t *labels = malloc(n * sizeof *labels);
    int32_t test[40];
    ck_assert(x && labels);
    for (size_t r = 0; r < n; r++) {
        labels[r] = (int32_t)(7 * (r % C)) - 300; // classes interleaved, labels not 0..C-1
        float *l_x = x + r * D;
        l_x[0] = (float)r;
        l_x[1] = (float)labels[r];
        for (size_t d = 2; d < D; d++)
            l_x[d] = (float)((r + d) % 251);
    }
    for (int j = 0; j < 40; j++)
        test[j] = (int32_t)(7 * (160 + j)) - 300;
    const double peak1 = peak_rss_bytes();

    DatasetLimits lim;
    dataset_limits_default(&lim);
    // 314 MB of x fits the default 512 MiB limit
    DatasetClassesIn in = {.x = x,
                           .labels = labels,
                           .n_rows = (int64_t)n,
                           .x_dim = (int)D,
                           .test_classes = test,
                           .n_test = 40};
    DatasetPacked p;
    MsError err = {0};
    size_t a0 = n_allocs;
    MsStatus st = dataset_pack_classes(&p, &in, &lim, &err);
    const size_t pack_allocs = n_allocs - a0;
    ck_assert_msg(st == MS_OK, "%s", err.msg);
    ck_assert_int_eq(p.n_items, (int64_t)C);
    ck_assert_int_eq(p.index[1], 500);

    DatasetView v = dataset_packed_view(&p);
    TaskSampler *s = make_sampler(&v, 5);
    TaskBatch b;
    make_batch(&b, s, 5, 15);
    Rng r;
    rng_seed(&r, 31);
    // No ck_assert inside the counted window: Check's assertions may allocate.
    a0 = n_allocs;
    long bad = 0;
    for (int e = 0; e < 2000; e++) {
        st = (e % 2 ? s->sample_val : s->sample)(s, &r, &b);
        bad += st != MS_OK;
        for (int i = 0; i < b.n_s; i++) {
            const real *l_x = b.xs + (size_t)i * D;
            const size_t src = (size_t)l_x[0];
            const int test_row = l_x[1] >= (real)(7 * 160 - 300);
            bad += l_x[1] != (real)labels[src] || l_x[D - 1] != (real)((src + D - 1) % 251) ||
                   test_row != (e % 2);
        }
    }
    const size_t sample_allocs = n_allocs - a0;
    const double peak2 = peak_rss_bytes();
    ck_assert_int_eq(bad, 0);
    if (TEST_COUNTS_ALLOCS) {
        ck_assert_uint_eq(sample_allocs, 0);
        ck_assert_uint_le(pack_allocs, 5); // x, y, index, label scratch, test flags
    }
    printf("memory: data %.1f MB; peak RSS growth: input %.1f MB, packing + 2000 episodes "
           "%.1f MB (%.3f x data), total %.3f x data; allocations: packing %zu, sampling %zu%s\n",
           data / 1e6, (peak1 - peak0) / 1e6, (peak2 - peak1) / 1e6, (peak2 - peak1) / data,
           (peak2 - peak0) / data, pack_allocs, sample_allocs,
           TEST_COUNTS_ALLOCS ? "" : " (not counted in this build)");
#ifndef TEST_ASAN
    // Input + packed output is 2 x data; 2.2 leaves 10% for the batch, scratch and allocator
    // slack. A second copy of x anywhere would make it 3 x. (Not meaningful under ASan, whose
    // shadow memory and quarantine inflate the RSS.)
    ck_assert_double_lt(peak2 - peak0, 2.2 * data);
    ck_assert_double_lt(peak2 - peak1, 1.1 * data);
#endif
    task_batch_free(&b);
    task_sampler_destroy(s);
    dataset_packed_free(&p);
    free(x);
    free(labels);
}
END_TEST

static Suite *dataset_suite(void) {
    Suite *s = suite_create("dataset_" REAL_NAME);
    TCase *tc = tcase_create("dataset");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, tasks_pack_concatenates_rows_and_records_task_offsets);
    tcase_add_test(tc, tasks_episodes_come_from_one_task_with_distinct_points);
    tcase_add_test(tc, tasks_episode_points_are_uniform_within_the_task);
    tcase_add_loop_test(tc, same_rng_state_gives_the_same_episodes_on_a_used_and_a_fresh_sampler, 0,
                        2);
    tcase_add_test(tc, too_few_points_for_the_shots_are_caught_up_front_and_at_sampling);
    tcase_add_test(tc, classes_pack_groups_rows_by_class_in_ascending_label_order);
    tcase_add_test(tc, classes_episodes_have_each_label_k_times_and_one_class_per_label);
    tcase_add_test(tc, classes_label_permutation_varies_across_episodes);
    tcase_add_test(tc, sample_val_draws_only_test_classes_and_sample_only_training_classes);
    tcase_add_test(tc, n_way_beyond_the_training_classes_is_rejected);
    tcase_add_test(tc, task_upload_errors_name_the_field_and_position);
    tcase_add_test(tc, class_upload_errors_name_the_field_and_position);
    tcase_add_test(tc, limits_are_enforced_before_anything_is_allocated);
    tcase_add_test(tc, kind_names_round_trip_and_unknown_kinds_are_rejected);
    tcase_add_test(tc, view_check_rejects_corrupted_task_offsets_and_sizes);
    tcase_add_test(tc, view_check_rejects_corrupted_class_index_and_labels);
    tcase_add_test(tc, a_100k_by_784_pool_packs_and_samples_within_one_copy_of_the_data);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) {
    SRunner *sr = srunner_create(dataset_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
