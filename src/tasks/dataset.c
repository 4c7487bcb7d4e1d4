/*
 * Uploaded datasets (tasks/dataset.h): validation and packing of an upload into the stored arrays,
 * the check of arrays read back, and the sampler that draws episodes from them. It owns none of
 * the data it samples: the packed arrays belong to the caller (then to the store), and a sampler
 * borrows the arrays of a DatasetView. It does not parse JSON (http/ turns the request body into
 * the arrays of DatasetTaskIn / DatasetClassesIn) and knows nothing of SQLite.
 *
 * Invariants: packing validates every shape, limit and value before it allocates an output, and
 * then allocates each output array once and writes it in one pass (for classes the rows are
 * scattered straight into their class's place, so x exists twice at most: input and output).
 * A sampler's index scratch holds the identity permutation between episodes (choose/unchoose
 * below), so an episode depends on the Rng state alone and sample() never allocates.
 *
 * Expected sizes: up to ~10^5..10^7 rows of up to a few thousand floats (an MNIST-sized pool is
 * 70,000 x 784, 220 MB); tens to thousands of tasks or classes; episodes of at most a few thousand
 * rows. Packing reads x twice (a finiteness scan before allocating, then the copy) and sorts a
 * copy of the labels in place; sampling costs O(k_support + k_query) Rng draws and row copies
 * per task or class.
 */
#include "metaserve/tasks/dataset.h"

#include <math.h>
#include <string.h>

#define DATASET_DEFAULT_MAX_ROWS  10000000
#define DATASET_DEFAULT_MAX_BYTES ((size_t)512 << 20)
// Class indices are stored as floats in y; float represents every integer up to 2^24 exactly.
#define DATASET_MAX_CLASSES (1 << 24)

/* ---- kinds and limits ---- */

const char *dataset_kind_name(DatasetKind k) {
    switch (k) {
    case DATASET_TASKS:
        return "tasks";
    case DATASET_CLASSES:
        return "classes";
    }
    return "?";
}

MsStatus dataset_kind_parse(const char *name, DatasetKind *out, MsError *err) {
    MS_ASSERT(name != NULL && out != NULL);
    if (strcmp(name, "tasks") == 0) {
        *out = DATASET_TASKS;
        return MS_OK;
    }
    if (strcmp(name, "classes") == 0) {
        *out = DATASET_CLASSES;
        return MS_OK;
    }
    return ms_fail(err, MS_ERR_INVALID, "kind: must be \"tasks\" or \"classes\"");
}

void dataset_limits_default(DatasetLimits *l) {
    MS_ASSERT(l != NULL);
    l->max_rows = DATASET_DEFAULT_MAX_ROWS;
    l->max_bytes = DATASET_DEFAULT_MAX_BYTES;
}

// The limits in force: the caller's or the defaults, with max_rows capped so offsets fit int32.
static DatasetLimits effective_limits(const DatasetLimits *limits) {
    DatasetLimits l;
    if (limits)
        l = *limits;
    else
        dataset_limits_default(&l);
    if (l.max_rows > INT32_MAX) l.max_rows = INT32_MAX;
    return l;
}

// Index of the first NaN or infinity of a[0..n), or n when all are finite.
static size_t first_nonfinite(const float *a, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(a[i])) return i;
    return n;
}

static double mib(double bytes) {
    return bytes / (1 << 20);
}

void dataset_packed_free(DatasetPacked *p) {
    if (!p) return;
    free(p->x);
    free(p->y);
    free(p->index);
    memset(p, 0, sizeof *p);
}

DatasetView dataset_packed_view(const DatasetPacked *p) {
    MS_ASSERT(p != NULL);
    DatasetView v = {.kind = p->kind,
                     .x_dim = p->x_dim,
                     .y_dim = p->y_dim,
                     .n_rows = p->n_rows,
                     .x = p->x,
                     .n_x = p->n_x,
                     .y = p->y,
                     .n_y = p->n_y,
                     .index = p->index,
                     .n_index = p->n_index,
                     .n_items = p->n_items};
    return v;
}

/* ---- tasks kind: packing ---- */

// Shapes, counts and limits of the tasks, without reading a value. *rows receives the total.
static MsStatus check_task_shapes(const DatasetTaskIn *tasks, size_t n_tasks,
                                  const DatasetLimits *lim, int64_t *rows, MsError *err) {
    const int D = tasks[0].x_dim, O = tasks[0].y_dim;
    if (D < 1 || D > DATASET_MAX_X_DIM)
        return ms_fail(err, MS_ERR_INVALID, "tasks[0].x: rows have %d values; must be 1 to %d", D,
                       DATASET_MAX_X_DIM);
    if (O < 1 || O > DATASET_MAX_Y_DIM)
        return ms_fail(err, MS_ERR_INVALID, "tasks[0].y: rows have %d values; must be 1 to %d", O,
                       DATASET_MAX_Y_DIM);
    int64_t n = 0;
    for (size_t i = 0; i < n_tasks; i++) {
        const DatasetTaskIn *t = &tasks[i];
        if (t->x_dim != D)
            return ms_fail(err, MS_ERR_INVALID,
                           "tasks[%zu].x: rows have %d values but those of tasks[0] have %d "
                           "(every task needs the same x width)",
                           i, t->x_dim, D);
        if (t->y_dim != O)
            return ms_fail(err, MS_ERR_INVALID,
                           "tasks[%zu].y: rows have %d values but those of tasks[0] have %d "
                           "(every task needs the same y width)",
                           i, t->y_dim, O);
        if (t->n_points < 2)
            return ms_fail(err, MS_ERR_INVALID,
                           "tasks[%zu]: has %lld point%s; every task needs at least 2, and at "
                           "least k_support + k_query (checked at training time)",
                           i, (long long)t->n_points, t->n_points == 1 ? "" : "s");
        if (t->n_points > lim->max_rows - n)
            return ms_fail(err, MS_ERR_TOO_LARGE,
                           "tasks: more than %lld points in all (limit), reached at tasks[%zu]",
                           (long long)lim->max_rows, i);
        MS_ASSERT(t->x != NULL && t->y != NULL);
        n += t->n_points;
    }
    // n <= INT32_MAX and D + O <= 8192, so the byte count is exact in double.
    double bytes = (double)n * (D + O) * sizeof(float) + ((double)n_tasks + 1) * sizeof(int32_t);
    if (bytes > (double)lim->max_bytes)
        return ms_fail(err, MS_ERR_TOO_LARGE,
                       "tasks: %lld points of %d + %d values need %.1f MiB packed (limit %.1f MiB)",
                       (long long)n, D, O, mib(bytes), mib((double)lim->max_bytes));
    *rows = n;
    return MS_OK;
}

// Every value of every task finite; the message names the first offender by JSON position.
static MsStatus check_task_values(const DatasetTaskIn *tasks, size_t n_tasks, MsError *err) {
    for (size_t i = 0; i < n_tasks; i++) {
        const DatasetTaskIn *t = &tasks[i];
        for (int part = 0; part < 2; part++) {
            const size_t w = (size_t)(part ? t->y_dim : t->x_dim);
            const size_t n = (size_t)t->n_points * w;
            const size_t k = first_nonfinite(part ? t->y : t->x, n);
            if (k < n)
                return ms_fail(err, MS_ERR_INVALID, "tasks[%zu].%s[%zu][%zu]: not a finite number",
                               i, part ? "y" : "x", k / w, k % w);
        }
    }
    return MS_OK;
}

MsStatus dataset_pack_tasks(DatasetPacked *out, const DatasetTaskIn *tasks, size_t n_tasks,
                            const DatasetLimits *limits, MsError *err) {
    MS_ASSERT(out != NULL && (tasks != NULL || n_tasks == 0));
    memset(out, 0, sizeof *out);
    if (n_tasks == 0)
        return ms_fail(err, MS_ERR_INVALID, "tasks: empty; a dataset needs at least 1 task");
    const DatasetLimits lim = effective_limits(limits);
    int64_t rows = 0;
    MsStatus st = check_task_shapes(tasks, n_tasks, &lim, &rows, err);
    if (st == MS_OK) st = check_task_values(tasks, n_tasks, err);
    if (st != MS_OK) return st;

    const size_t D = (size_t)tasks[0].x_dim, O = (size_t)tasks[0].y_dim, R = (size_t)rows;
    float *x = malloc(R * D * sizeof *x);
    float *y = malloc(R * O * sizeof *y);
    int32_t *index = malloc((n_tasks + 1) * sizeof *index);
    if (!x || !y || !index) {
        free(x);
        free(y);
        free(index);
        return ms_fail(err, MS_ERR_NOMEM, "dataset: out of memory packing %zu rows", R);
    }
    size_t r = 0;
    for (size_t i = 0; i < n_tasks; i++) {
        const size_t n = (size_t)tasks[i].n_points;
        index[i] = (int32_t)r;
        memcpy(x + r * D, tasks[i].x, n * D * sizeof *x);
        memcpy(y + r * O, tasks[i].y, n * O * sizeof *y);
        r += n;
    }
    index[n_tasks] = (int32_t)r;

    out->kind = DATASET_TASKS;
    out->x_dim = (int)D;
    out->y_dim = (int)O;
    out->n_rows = rows;
    out->n_items = (int64_t)n_tasks;
    out->n_test = 0;
    out->x = x;
    out->n_x = R * D;
    out->y = y;
    out->n_y = R * O;
    out->index = index;
    out->n_index = n_tasks + 1;
    return MS_OK;
}

MsStatus dataset_pack_tasks_index(DatasetPacked *out, const DatasetTaskIn *tasks, size_t n_tasks,
                                  const DatasetLimits *limits, MsError *err) {
    MS_ASSERT(out != NULL && (tasks != NULL || n_tasks == 0));
    memset(out, 0, sizeof *out);
    if (n_tasks == 0)
        return ms_fail(err, MS_ERR_INVALID, "tasks: empty; a dataset needs at least 1 task");
    const DatasetLimits lim = effective_limits(limits);
    int64_t rows = 0;
    MsStatus st = check_task_shapes(tasks, n_tasks, &lim, &rows, err);
    if (st == MS_OK) st = check_task_values(tasks, n_tasks, err);
    if (st != MS_OK) return st;
    int32_t *index = malloc((n_tasks + 1) * sizeof *index);
    if (!index)
        return ms_fail(err, MS_ERR_NOMEM, "dataset: out of memory packing %zu tasks", n_tasks);
    int64_t r = 0;
    for (size_t i = 0; i < n_tasks; i++) {
        index[i] = (int32_t)r;
        r += tasks[i].n_points;
    }
    index[n_tasks] = (int32_t)r;
    out->kind = DATASET_TASKS;
    out->x_dim = tasks[0].x_dim;
    out->y_dim = tasks[0].y_dim;
    out->n_rows = rows;
    out->n_items = (int64_t)n_tasks;
    out->n_x = (size_t)rows * (size_t)out->x_dim;
    out->n_y = (size_t)rows * (size_t)out->y_dim;
    out->index = index;
    out->n_index = n_tasks + 1;
    return MS_OK;
}

/* ---- classes kind: packing ---- */

// Restores the max-heap property below i in a[0..n).
static void sift_down(int32_t *a, size_t i, size_t n) {
    for (size_t child; (child = 2 * i + 1) < n; i = child) {
        if (child + 1 < n && a[child + 1] > a[child]) child++;
        if (a[i] >= a[child]) return;
        int32_t t = a[i];
        a[i] = a[child];
        a[child] = t;
    }
}

// Ascending heapsort in place: O(n log n) worst case and no allocation (qsort may malloc a
// buffer as large as the array, which would break the memory bound of dataset_pack_classes).
static void sort_i32(int32_t *a, size_t n) {
    for (size_t i = n / 2; i-- > 0;)
        sift_down(a, i, n);
    for (size_t end = n; end-- > 1;) {
        int32_t t = a[0];
        a[0] = a[end];
        a[end] = t;
        sift_down(a, 0, end);
    }
}

// Position of label in sorted[0..n) (strictly increasing), or -1.
static int64_t find_label(const int32_t *sorted, int64_t n, int32_t label) {
    int64_t lo = 0, hi = n;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        if (sorted[mid] < label)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < n && sorted[lo] == label ? lo : -1;
}

// Rows, width, limits and finiteness of the pool, before anything is allocated.
static MsStatus check_pool(const DatasetClassesIn *in, const DatasetLimits *lim, MsError *err) {
    const int D = in->x_dim;
    if (in->n_rows < 1)
        return ms_fail(err, MS_ERR_INVALID, "x: no rows; a dataset needs at least 2 classes");
    if (D < 1 || D > DATASET_MAX_X_DIM)
        return ms_fail(err, MS_ERR_INVALID, "x: rows have %d values; must be 1 to %d", D,
                       DATASET_MAX_X_DIM);
    if (in->n_rows > lim->max_rows)
        return ms_fail(err, MS_ERR_TOO_LARGE, "x: %lld rows exceed the limit of %lld",
                       (long long)in->n_rows, (long long)lim->max_rows);
    // The index adds 3C + 1 <= 3 n_rows + 1 more; checked exactly once C is known.
    double bytes = (double)in->n_rows * (D + 1) * sizeof(float);
    if (bytes > (double)lim->max_bytes)
        return ms_fail(err, MS_ERR_TOO_LARGE,
                       "x: %lld rows of %d values need %.1f MiB packed (limit %.1f MiB)",
                       (long long)in->n_rows, D, mib(bytes), mib((double)lim->max_bytes));
    MS_ASSERT(in->x != NULL && in->labels != NULL);
    MS_ASSERT(in->test_classes != NULL || in->n_test == 0);
    const size_t n = (size_t)in->n_rows * (size_t)D, k = first_nonfinite(in->x, n);
    if (k < n)
        return ms_fail(err, MS_ERR_INVALID, "x[%zu][%zu]: not a finite number", k / (size_t)D,
                       k % (size_t)D);
    return MS_OK;
}

// Marks the test classes in is_test[0..C) (labels: the C sorted distinct labels) and checks
// that at least 2 training classes remain.
static MsStatus mark_test_classes(const DatasetClassesIn *in, const int32_t *labels, int64_t C,
                                  uint8_t *is_test, MsError *err) {
    for (size_t j = 0; j < in->n_test; j++) {
        int32_t lbl = in->test_classes[j];
        int64_t c = find_label(labels, C, lbl);
        if (c < 0)
            return ms_fail(err, MS_ERR_INVALID,
                           "test_classes[%zu]: label %d does not occur in labels", j, (int)lbl);
        if (is_test[c])
            return ms_fail(err, MS_ERR_INVALID, "test_classes[%zu]: label %d is listed twice", j,
                           (int)lbl);
        is_test[c] = 1;
    }
    const int64_t n_train = C - (int64_t)in->n_test;
    if (C < 2)
        return ms_fail(err, MS_ERR_INVALID,
                       "labels: %lld distinct class; meta-training needs at least 2 training "
                       "classes",
                       (long long)C);
    if (n_train < 2)
        return ms_fail(err, MS_ERR_INVALID,
                       "test_classes: holding out %zu of the %lld classes leaves %lld for "
                       "meta-training; at least 2 are needed",
                       in->n_test, (long long)C, (long long)n_train);
    return MS_OK;
}

// The classes of a checked pool: *labels the *C sorted distinct labels, *is_test their held-out
// flags, refused when there are too many classes or the packed arrays would pass the byte
// limit. The caller frees *labels and *is_test (NULL or allocated) whatever the outcome.
static MsStatus pool_classes(const DatasetClassesIn *in, const DatasetLimits *lim, int32_t **labels,
                             size_t *C, uint8_t **is_test, MsError *err) {
    const size_t n = (size_t)in->n_rows, D = (size_t)in->x_dim;
    *is_test = NULL;
    // Temporary: 4 bytes per row.
    int32_t *l = *labels = malloc(n * sizeof *l);
    if (!l) return ms_fail(err, MS_ERR_NOMEM, "dataset: out of memory packing %zu rows", n);
    memcpy(l, in->labels, n * sizeof *l);
    sort_i32(l, n);
    size_t c = 1;
    for (size_t r = 1; r < n; r++)
        if (l[r] != l[c - 1]) l[c++] = l[r];
    *C = c;
    if (c > DATASET_MAX_CLASSES)
        return ms_fail(err, MS_ERR_INVALID, "labels: %zu distinct classes; at most %d", c,
                       DATASET_MAX_CLASSES);
    if (!(*is_test = calloc(c, 1)))
        return ms_fail(err, MS_ERR_NOMEM, "dataset: out of memory packing %zu rows", n);
    MsStatus st = mark_test_classes(in, l, (int64_t)c, *is_test, err);
    if (st != MS_OK) return st;
    double bytes = (double)n * (D + 1) * sizeof(float) + (3.0 * c + 1) * sizeof(int32_t);
    if (bytes > (double)lim->max_bytes)
        return ms_fail(err, MS_ERR_TOO_LARGE,
                       "x: %zu rows of %zu values in %zu classes need %.1f MiB packed (limit %.1f "
                       "MiB)",
                       n, D, c, mib(bytes), mib((double)lim->max_bytes));
    return MS_OK;
}

// Fills the packed classes arrays: y (n) with rows grouped by class and index (3C + 1) with
// offsets, flags and original labels; and x (n x D) with the rows in that order when x is
// non-NULL, dest (n) with each input row's place when dest is non-NULL. labels: the C sorted
// distinct labels.
static void place_rows(const DatasetClassesIn *in, const int32_t *labels, size_t C,
                       const uint8_t *is_test, float *x, int32_t *dest, float *y, int32_t *index) {
    const size_t n = (size_t)in->n_rows, D = (size_t)in->x_dim;
    // Offsets by counting; the flag part of index serves as the per-class write cursor until the
    // rows are placed, then receives the flags.
    int32_t *offsets = index, *cursor = index + C + 1;
    memset(offsets, 0, (C + 1) * sizeof *offsets);
    for (size_t r = 0; r < n; r++)
        offsets[find_label(labels, (int64_t)C, in->labels[r]) + 1]++;
    for (size_t c = 0; c < C; c++) {
        offsets[c + 1] += offsets[c];
        cursor[c] = offsets[c];
    }
    // The one copy of x: each input row straight to its place (upload order kept per class).
    for (size_t r = 0; r < n; r++) {
        int64_t c = find_label(labels, (int64_t)C, in->labels[r]);
        size_t dst = (size_t)cursor[c]++;
        if (x) memcpy(x + dst * D, in->x + r * D, D * sizeof *x);
        if (dest) dest[r] = (int32_t)dst;
        y[dst] = (float)c;
    }
    for (size_t c = 0; c < C; c++) {
        index[C + 1 + c] = is_test[c];
        index[2 * C + 1 + c] = labels[c];
    }
}

MsStatus dataset_pack_classes(DatasetPacked *out, const DatasetClassesIn *in,
                              const DatasetLimits *limits, MsError *err) {
    MS_ASSERT(out != NULL && in != NULL);
    memset(out, 0, sizeof *out);
    const DatasetLimits lim = effective_limits(limits);
    int32_t *labels = NULL, *index = NULL;
    uint8_t *is_test = NULL;
    float *x = NULL, *y = NULL;
    MsStatus st = check_pool(in, &lim, err);
    if (st != MS_OK) return st;

    // The distinct labels, ascending: class c is labels[c].
    const size_t n = (size_t)in->n_rows, D = (size_t)in->x_dim;
    size_t C = 0;
    if ((st = pool_classes(in, &lim, &labels, &C, &is_test, err)) != MS_OK) goto done;

    x = malloc(n * D * sizeof *x);
    y = malloc(n * sizeof *y);
    index = malloc((3 * C + 1) * sizeof *index);
    if (!x || !y || !index) goto nomem;
    place_rows(in, labels, C, is_test, x, NULL, y, index);

    out->kind = DATASET_CLASSES;
    out->x_dim = (int)D;
    out->y_dim = 1;
    out->n_rows = in->n_rows;
    out->n_items = (int64_t)C;
    out->n_test = (int64_t)in->n_test;
    out->x = x;
    out->n_x = n * D;
    out->y = y;
    out->n_y = n;
    out->index = index;
    out->n_index = 3 * C + 1;
    goto done;
nomem:
    st = ms_fail(err, MS_ERR_NOMEM, "dataset: out of memory packing %zu rows", n);
done:
    free(labels);
    free(is_test);
    if (st != MS_OK) {
        free(x);
        free(y);
        free(index);
    }
    return st;
}

// Moves the rows of x (n x D) in place so that row r lands at dest[r] (a permutation), following
// each cycle once with two row buffers; dest is consumed (entries set to -1 as rows land).
static void permute_rows(float *x, int32_t *dest, size_t n, size_t D, float *tmp, float *tmp2) {
    for (size_t r = 0; r < n; r++) {
        if (dest[r] < 0 || (size_t)dest[r] == r) continue;
        memcpy(tmp, x + r * D, D * sizeof *x);
        size_t j = r;
        while (dest[j] >= 0) {
            size_t k = (size_t)dest[j];
            dest[j] = -1;
            memcpy(tmp2, x + k * D, D * sizeof *x); // the row k held, moved on next
            memcpy(x + k * D, tmp, D * sizeof *x);
            memcpy(tmp, tmp2, D * sizeof *x);
            j = k;
        }
    }
}

MsStatus dataset_pack_classes_inplace(DatasetPacked *out, float *x, const DatasetClassesIn *in,
                                      const DatasetLimits *limits, MsError *err) {
    MS_ASSERT(out != NULL && in != NULL && in->x == x);
    memset(out, 0, sizeof *out);
    const DatasetLimits lim = effective_limits(limits);
    MsStatus st = check_pool(in, &lim, err);
    if (st != MS_OK) return st;
    const size_t n = (size_t)in->n_rows, D = (size_t)in->x_dim;
    int32_t *labels = NULL, *dest = NULL, *index = NULL;
    uint8_t *is_test = NULL;
    float *y = NULL, *tmp = NULL;
    size_t C = 0;
    if ((st = pool_classes(in, &lim, &labels, &C, &is_test, err)) != MS_OK) goto done;
    y = malloc(n * sizeof *y);
    index = malloc((3 * C + 1) * sizeof *index);
    dest = malloc(n * sizeof *dest);
    tmp = malloc(2 * D * sizeof *tmp);
    if (!y || !index || !dest || !tmp) goto nomem;
    // the places of the copying path, then the rows moved there within x
    place_rows(in, labels, C, is_test, NULL, dest, y, index);
    permute_rows(x, dest, n, D, tmp, tmp + D);
    out->kind = DATASET_CLASSES;
    out->x_dim = (int)D;
    out->y_dim = 1;
    out->n_rows = in->n_rows;
    out->n_items = (int64_t)C;
    out->n_test = (int64_t)in->n_test;
    out->n_x = n * D;
    out->y = y;
    out->n_y = n;
    out->index = index;
    out->n_index = 3 * C + 1;
    goto done;
nomem:
    st = ms_fail(err, MS_ERR_NOMEM, "dataset: out of memory packing %zu rows", n);
done:
    free(labels);
    free(is_test);
    free(dest);
    free(tmp);
    if (st != MS_OK) {
        free(y);
        free(index);
    }
    return st;
}

/* ---- checks of stored data ---- */

// Offsets index[0..n_items] start at 0, end at n_rows and grow by at least min_step each item.
static MsStatus check_offsets(const DatasetView *v, int32_t min_step, const char *item,
                              MsError *err) {
    const int32_t *off = v->index;
    if (off[0] != 0)
        return ms_fail(err, MS_ERR_INVALID, "dataset: offsets start at %d, not 0", off[0]);
    for (int64_t i = 0; i < v->n_items; i++) {
        int64_t step = (int64_t)off[i + 1] - off[i];
        if (step < min_step || off[i + 1] > v->n_rows)
            return ms_fail(err, MS_ERR_INVALID,
                           "dataset: %s %lld spans rows [%d, %d) of %lld (corrupt offsets)", item,
                           (long long)i, off[i], off[i + 1], (long long)v->n_rows);
    }
    if (off[v->n_items] != v->n_rows)
        return ms_fail(err, MS_ERR_INVALID, "dataset: offsets end at %d, not at the %lld rows",
                       off[v->n_items], (long long)v->n_rows);
    return MS_OK;
}

// The parts of the classes index past the offsets, and y against the offsets.
static MsStatus check_classes(const DatasetView *v, MsError *err) {
    const int64_t C = v->n_items;
    const int32_t *flags = v->index + C + 1, *labels = v->index + 2 * C + 1;
    int64_t n_train = 0;
    for (int64_t c = 0; c < C; c++) {
        if (flags[c] != 0 && flags[c] != 1)
            return ms_fail(err, MS_ERR_INVALID, "dataset: class %lld has test flag %d, not 0 or 1",
                           (long long)c, flags[c]);
        n_train += flags[c] == 0;
        if (c > 0 && labels[c] <= labels[c - 1])
            return ms_fail(err, MS_ERR_INVALID,
                           "dataset: original labels not strictly increasing at class %lld",
                           (long long)c);
    }
    if (n_train < 2)
        return ms_fail(err, MS_ERR_INVALID, "dataset: %lld training classes; at least 2 needed",
                       (long long)n_train);
    for (int64_t c = 0; c < C; c++)
        for (int32_t r = v->index[c]; r < v->index[c + 1]; r++)
            if (v->y[r] != (float)c)
                return ms_fail(err, MS_ERR_INVALID,
                               "dataset: row %d has label %g but lies in class %lld", (int)r,
                               (double)v->y[r], (long long)c);
    return MS_OK;
}

MsStatus dataset_view_check(const DatasetView *v, MsError *err) {
    MS_ASSERT(v != NULL);
    if (v->kind != DATASET_TASKS && v->kind != DATASET_CLASSES)
        return ms_fail(err, MS_ERR_INVALID, "dataset: unknown kind %d", (int)v->kind);
    const int classes = v->kind == DATASET_CLASSES;
    if (v->x_dim < 1 || v->x_dim > DATASET_MAX_X_DIM)
        return ms_fail(err, MS_ERR_INVALID, "dataset: x_dim %d outside 1..%d", v->x_dim,
                       DATASET_MAX_X_DIM);
    if (classes ? v->y_dim != 1 : (v->y_dim < 1 || v->y_dim > DATASET_MAX_Y_DIM))
        return ms_fail(err, MS_ERR_INVALID, "dataset: y_dim %d invalid for kind %s", v->y_dim,
                       dataset_kind_name(v->kind));
    if (v->n_rows < 1 || v->n_rows > INT32_MAX)
        return ms_fail(err, MS_ERR_INVALID, "dataset: %lld rows", (long long)v->n_rows);
    const size_t R = (size_t)v->n_rows;
    if (v->n_x != R * (size_t)v->x_dim || v->n_y != R * (size_t)v->y_dim)
        return ms_fail(err, MS_ERR_INVALID,
                       "dataset: x holds %zu and y %zu values, but %zu rows need %zu and %zu",
                       v->n_x, v->n_y, R, R * (size_t)v->x_dim, R * (size_t)v->y_dim);
    // Tasks have at least 2 rows each; classes at least 1 and at most 2^24 of them.
    const int64_t max_items =
        classes ? (v->n_rows < DATASET_MAX_CLASSES ? v->n_rows : DATASET_MAX_CLASSES)
                : v->n_rows / 2;
    if (v->n_items < (classes ? 2 : 1) || v->n_items > max_items)
        return ms_fail(err, MS_ERR_INVALID, "dataset: %lld %s for %lld rows", (long long)v->n_items,
                       classes ? "classes" : "tasks", (long long)v->n_rows);
    const size_t want = classes ? 3 * (size_t)v->n_items + 1 : (size_t)v->n_items + 1;
    if (v->n_index != want)
        return ms_fail(err, MS_ERR_INVALID, "dataset: index holds %zu values, expected %zu",
                       v->n_index, want);
    if (!v->x || !v->y || !v->index)
        return ms_fail(err, MS_ERR_INVALID, "dataset: an array is missing");
    for (int part = 0; part < 2; part++) {
        const size_t w = (size_t)(part ? v->y_dim : v->x_dim), n = part ? v->n_y : v->n_x;
        const size_t k = first_nonfinite(part ? v->y : v->x, n);
        if (k < n)
            return ms_fail(err, MS_ERR_INVALID, "dataset: %s[%zu][%zu] is not a finite number",
                           part ? "y" : "x", k / w, k % w);
    }
    MsStatus st = check_offsets(v, classes ? 1 : 2, classes ? "class" : "task", err);
    if (st == MS_OK && classes) st = check_classes(v, err);
    return st;
}

// Position of the smallest task or class (the first of equals).
static int64_t smallest_item(const DatasetView *v) {
    int64_t best = 0;
    for (int64_t i = 1; i < v->n_items; i++)
        if (v->index[i + 1] - v->index[i] < v->index[best + 1] - v->index[best]) best = i;
    return best;
}

int64_t dataset_min_points(const DatasetView *v) {
    MS_ASSERT(v != NULL && v->index != NULL && v->n_items >= 1);
    int64_t i = smallest_item(v);
    return (int64_t)v->index[i + 1] - v->index[i];
}

MsStatus dataset_shots_check(const DatasetView *v, int k_support, int k_query, MsError *err) {
    MS_ASSERT(v != NULL && v->index != NULL && v->n_items >= 1);
    if (k_support < 1 || k_query < 1)
        return ms_fail(err, MS_ERR_INVALID,
                       "tasks.k_support, tasks.k_query: must be at least 1 (got %d and %d)",
                       k_support, k_query);
    const int64_t need = (int64_t)k_support + k_query, i = smallest_item(v);
    const int64_t have = (int64_t)v->index[i + 1] - v->index[i];
    if (need <= have) return MS_OK;
    if (v->kind == DATASET_TASKS)
        return ms_fail(err, MS_ERR_INVALID,
                       "tasks.k_support + tasks.k_query: an episode needs %lld points of one task "
                       "but tasks[%lld] of the dataset has only %lld",
                       (long long)need, (long long)i, (long long)have);
    return ms_fail(err, MS_ERR_INVALID,
                   "tasks.k_support + tasks.k_query: an episode needs %lld rows per class but "
                   "class %d of the dataset has only %lld",
                   (long long)need, (int)v->index[2 * v->n_items + 1 + i], (long long)have);
}

/* ---- sampler ---- */

typedef struct {
    TaskSampler base; // what callers hold; base.impl points back here
    DatasetView v;    // borrowed arrays
    int32_t *rows;    // scratch, max rows of a task or class: identity between episodes
    int32_t *pick;    // classes: scratch, max(n_train, n_test): identity between episodes
    int32_t *train;   // classes: ids of the training classes, n_train
    int32_t *test;    // classes: ids of the test classes, n_test
    int32_t *perm;    // classes: n_way, the episode's label permutation
    int64_t n_train, n_test;
} DatasetSampler;

// Partial Fisher-Yates: on return p[0..m) holds m distinct values of 0..n-1, a uniform draw
// without replacement, in draw order. p must hold the identity on [0, n); unchoose restores it.
static void choose(int32_t *p, int32_t n, int32_t m, Rng *rng) {
    for (int32_t i = 0; i < m; i++) {
        int32_t j = i + (int32_t)rng_below(rng, (uint64_t)(n - i));
        int32_t t = p[i];
        p[i] = p[j];
        p[j] = t;
    }
}

// Undoes choose(p, n, m) in O(m). Step i swaps i with some j >= i, and slot i is final after
// step i; the first swap that touches a position q >= m moves the value q (still in place) into
// slot i. So every position >= m that was touched holds its own index among p[0..m), and
// resetting those positions and [0, m) restores the identity.
static void unchoose(int32_t *p, int32_t m) {
    for (int32_t i = 0; i < m; i++)
        if (p[i] >= m) p[p[i]] = p[i];
    for (int32_t i = 0; i < m; i++)
        p[i] = i;
}

static void copy_row(real *dst, const float *src, size_t n) {
    for (size_t d = 0; d < n; d++)
        dst[d] = (real)src[d];
}

static void check_batch(const TaskSampler *s, const TaskBatch *b) {
    MS_ASSERT(b != NULL && b->xs != NULL); // sized by task_batch_init for this sampler
    MS_ASSERT(b->x_dim == s->x_dim && b->y_cols == (s->classification ? 1 : s->y_dim));
    MS_ASSERT(b->k_support >= 1 && b->k_query >= 1);
}

static MsStatus tasks_sample(TaskSampler *s, Rng *rng, TaskBatch *b) {
    DatasetSampler *ds = s->impl;
    const DatasetView *v = &ds->v;
    MS_ASSERT(rng != NULL);
    check_batch(s, b);
    const int32_t ks = b->k_support, kq = b->k_query, m = ks + kq;
    const size_t D = (size_t)v->x_dim, O = (size_t)v->y_dim;
    const int64_t t = (int64_t)rng_below(rng, (uint64_t)v->n_items);
    const int32_t lo = v->index[t], n = v->index[t + 1] - lo;
    if (m > n) return MS_ERR_INVALID;
    choose(ds->rows, n, m, rng);
    for (int32_t i = 0; i < m; i++) {
        const size_t src = (size_t)lo + (size_t)ds->rows[i];
        const size_t row = (size_t)(i < ks ? i : i - ks);
        copy_row((i < ks ? b->xs : b->xq) + row * D, v->x + src * D, D);
        copy_row((i < ks ? b->ys : b->yq) + row * O, v->y + src * O, O);
    }
    unchoose(ds->rows, m);
    b->n_s = ks;
    b->n_q = kq;
    return MS_OK;
}

// One N-way episode from the classes pool[0..n_pool) (n_pool >= N). Row shot * N + c holds shot
// `shot` of the c-th drawn class, labelled perm[c] (the gaussian family's layout).
static MsStatus classes_draw(DatasetSampler *ds, const int32_t *pool, int64_t n_pool, Rng *rng,
                             TaskBatch *b) {
    const DatasetView *v = &ds->v;
    const int32_t N = ds->base.n_way, ks = b->k_support, kq = b->k_query, m = ks + kq;
    const size_t D = (size_t)v->x_dim;
    MS_ASSERT(n_pool >= N);
    choose(ds->pick, (int32_t)n_pool, N, rng);
    int32_t *perm = ds->perm;
    for (int32_t c = 0; c < N; c++)
        perm[c] = c;
    for (int32_t i = N - 1; i > 0; i--) {
        int32_t j = (int32_t)rng_below(rng, (uint64_t)i + 1), t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    MsStatus st = MS_OK;
    for (int32_t c = 0; c < N; c++) {
        const int32_t cls = pool[ds->pick[c]];
        const int32_t lo = v->index[cls], n = v->index[cls + 1] - lo;
        if (m > n) {
            st = MS_ERR_INVALID;
            break;
        }
        choose(ds->rows, n, m, rng);
        for (int32_t i = 0; i < m; i++) {
            const size_t src = (size_t)lo + (size_t)ds->rows[i];
            const size_t row = (size_t)(i < ks ? i : i - ks) * (size_t)N + (size_t)c;
            copy_row((i < ks ? b->xs : b->xq) + row * D, v->x + src * D, D);
            (i < ks ? b->ys : b->yq)[row] = (real)perm[c];
        }
        unchoose(ds->rows, m);
    }
    unchoose(ds->pick, N);
    if (st != MS_OK) return st;
    b->n_s = N * ks;
    b->n_q = N * kq;
    return MS_OK;
}

static MsStatus classes_sample(TaskSampler *s, Rng *rng, TaskBatch *b) {
    DatasetSampler *ds = s->impl;
    MS_ASSERT(rng != NULL);
    check_batch(s, b);
    return classes_draw(ds, ds->train, ds->n_train, rng, b);
}

static MsStatus classes_sample_val(TaskSampler *s, Rng *rng, TaskBatch *b) {
    DatasetSampler *ds = s->impl;
    MS_ASSERT(rng != NULL);
    check_batch(s, b);
    if (ds->n_test >= s->n_way) return classes_draw(ds, ds->test, ds->n_test, rng, b);
    return classes_draw(ds, ds->train, ds->n_train, rng, b);
}

static void dataset_destroy(TaskSampler *s) {
    DatasetSampler *ds = s->impl;
    free(ds->rows);
    free(ds->pick);
    free(ds->train);
    free(ds->test);
    free(ds->perm);
    free(ds);
}

// An identity permutation of 0..n-1 (at least one element, so that malloc never sees 0).
static int32_t *identity_alloc(int64_t n) {
    int32_t *p = malloc((size_t)(n > 0 ? n : 1) * sizeof *p);
    if (p)
        for (int64_t i = 0; i < n; i++)
            p[i] = (int32_t)i;
    return p;
}

// The classes kind's lists of training and test class ids, and its pick and perm scratch.
static int classes_alloc(DatasetSampler *ds, int n_way) {
    const DatasetView *v = &ds->v;
    const int32_t *flags = v->index + v->n_items + 1;
    ds->train = malloc((size_t)v->n_items * sizeof *ds->train);
    ds->test = malloc((size_t)v->n_items * sizeof *ds->test);
    ds->perm = malloc((size_t)n_way * sizeof *ds->perm);
    if (!ds->train || !ds->test || !ds->perm) return 0;
    for (int64_t c = 0; c < v->n_items; c++) {
        if (flags[c])
            ds->test[ds->n_test++] = (int32_t)c;
        else
            ds->train[ds->n_train++] = (int32_t)c;
    }
    ds->pick = identity_alloc(ds->n_train > ds->n_test ? ds->n_train : ds->n_test);
    return ds->pick != NULL;
}

MsStatus dataset_sampler_create(TaskSampler **out, const DatasetView *v, int n_way, MsError *err) {
    MS_ASSERT(out != NULL && v != NULL);
    *out = NULL;
    MsStatus st = dataset_view_check(v, err);
    if (st != MS_OK) return st;
    const int classes = v->kind == DATASET_CLASSES;
    if (classes) {
        int64_t n_train = 0;
        for (int64_t c = 0; c < v->n_items; c++)
            n_train += v->index[v->n_items + 1 + c] == 0;
        if (n_way == 0) // absent from the config
            return ms_fail(err, MS_ERR_INVALID,
                           "tasks.n_way: is required for a classes dataset (the number of classes "
                           "of each task, 2..%d and at most the dataset's %lld training classes)",
                           DATASET_MAX_WAY, (long long)n_train);
        if (n_way < 2 || n_way > DATASET_MAX_WAY || n_way > n_train)
            return ms_fail(err, MS_ERR_INVALID,
                           "tasks.n_way: must be between 2 and %d and at most the dataset's %lld "
                           "training classes (got %d)",
                           DATASET_MAX_WAY, (long long)n_train, n_way);
    }
    DatasetSampler *ds = calloc(1, sizeof *ds);
    if (!ds) return ms_fail(err, MS_ERR_NOMEM, "task sampler: out of memory");
    ds->base.impl = ds;
    ds->v = *v;
    int64_t largest = 0;
    for (int64_t i = 0; i < v->n_items; i++)
        if (v->index[i + 1] - v->index[i] > largest) largest = v->index[i + 1] - v->index[i];
    if (!(ds->rows = identity_alloc(largest)) || (classes && !classes_alloc(ds, n_way))) {
        dataset_destroy(&ds->base);
        return ms_fail(err, MS_ERR_NOMEM, "task sampler: out of memory");
    }
    TaskSampler *s = &ds->base;
    s->family = "dataset";
    s->x_dim = v->x_dim;
    s->y_dim = classes ? n_way : v->y_dim;
    s->classification = classes;
    s->n_way = classes ? n_way : 1;
    s->sample = classes ? classes_sample : tasks_sample;
    s->sample_val = classes ? classes_sample_val : tasks_sample; // tasks: no held-out split
    s->destroy = dataset_destroy;
    *out = s;
    return MS_OK;
}
