/*
 * Uploaded datasets as task sources: validation and packing of what a client uploads (POST
 * /v1/datasets) into the three arrays the store keeps, a check of those arrays when they are read
 * back, and a TaskSampler that draws episodes from them. tasks/ depends only on core/, so this
 * header has its own view of a dataset (DatasetView) instead of the store's structs; the fields
 * map one to one onto StoreDataset / StoreDatasetData.
 *
 * Two kinds:
 *   DATASET_TASKS   regression task collections: a list of tasks, each n_i >= 2 points (x, y).
 *                   An episode is one task, its support and query points drawn from it.
 *   DATASET_CLASSES a labelled pool sampled as N-way K-shot classification; classes listed in
 *                   test_classes are held out of meta-training and used by sample_val.
 *
 * Packed layout (the stored blobs; float32 as stored, converted to `real` only when an episode is
 * copied into a TaskBatch, so the double build needs no second copy):
 *
 *   tasks    x      n_rows x x_dim, the tasks' points concatenated in upload order
 *            y      n_rows x y_dim
 *            index  n_tasks + 1 int32: task t is rows [index[t], index[t+1]); index[0] = 0,
 *                   index[n_tasks] = n_rows, each task at least 2 rows
 *   classes  x      n_rows x x_dim, rows grouped by class (stable: upload order within a class),
 *                   classes in ascending order of their original label
 *            y      n_rows x 1: the row's class index c in 0..C-1, as a float
 *            index  3C + 1 int32, three consecutive parts:
 *                     [0, C]       class row offsets: class c is rows [index[c], index[c+1]),
 *                                  index[0] = 0, strictly increasing, index[C] = n_rows
 *                     [C+1, 2C]    flags: index[C+1+c] = 1 when class c is a test class, else 0
 *                     [2C+1, 3C]   original labels: index[2C+1+c] is class c's uploaded label,
 *                                  strictly increasing
 *
 * Usage (upload):
 *     DatasetClassesIn in = {.x = x, .labels = labels, .n_rows = n, .x_dim = 784};
 *     DatasetPacked p;
 *     if (dataset_pack_classes(&p, &in, NULL, &err) != MS_OK) ...;   // 422 / 413
 *     ... store p.x, p.y, p.index ...; dataset_packed_free(&p);
 * Usage (training):
 *     DatasetView v = {...arrays read from the store...};
 *     dataset_view_check(&v, &err); dataset_shots_check(&v, ks, kq, &err);
 *     TaskSampler *s; dataset_sampler_create(&s, &v, n_way, &err);
 *     ... task_batch_init(&b, s, ks, kq, &err); task_sample(s, &rng, &b); ...
 *     task_sampler_destroy(s);   // then free the arrays v points into
 */
#ifndef METASERVE_TASKS_DATASET_H
#define METASERVE_TASKS_DATASET_H

#include <stddef.h>
#include <stdint.h>

#include "metaserve/core/status.h"
#include "metaserve/tasks/sampler.h"

#define DATASET_MAX_X_DIM 4096 // widest x row accepted
#define DATASET_MAX_Y_DIM 4096 // widest y row accepted (tasks kind)
#define DATASET_MAX_WAY   100  // most classes per episode, as for the built-in families

typedef enum { DATASET_TASKS = 0, DATASET_CLASSES = 1 } DatasetKind;

/** Stable name of a kind: "tasks" or "classes" (the store's `kind` column); "?" otherwise. */
const char *dataset_kind_name(DatasetKind k);
/** Parses "tasks" | "classes" into *out; MS_ERR_INVALID naming `kind` otherwise. */
MsStatus dataset_kind_parse(const char *name, DatasetKind *out, MsError *err);

/** Size limits of an upload, checked before anything is allocated. */
typedef struct {
    int64_t max_rows; // examples in all (default 10,000,000; never above INT32_MAX, since offsets
                      // are int32)
    size_t max_bytes; // bytes of the packed x + y + index (default 512 MiB: a 100,000 x 784 float
                      // pool, 314 MB, fits)
} DatasetLimits;

/** Fills l with the defaults above. */
void dataset_limits_default(DatasetLimits *l);

/** One uploaded task (tasks kind). Arrays are borrowed for the call. */
typedef struct {
    const float *x; // n_points x x_dim, row-major
    const float *y; // n_points x y_dim, row-major
    int64_t n_points;
    int x_dim, y_dim; // this task's row widths; every task must have the same
} DatasetTaskIn;

/** An uploaded labelled pool (classes kind). Arrays are borrowed for the call. */
typedef struct {
    const float *x;        // n_rows x x_dim, row-major
    const int32_t *labels; // n_rows class labels, any int32 values
    int64_t n_rows;
    int x_dim;
    const int32_t *test_classes; // n_test original labels held out of meta-training (may be NULL
    size_t n_test;               // when n_test is 0); each must occur in labels, no repeats
} DatasetClassesIn;

/** The packed arrays of one dataset (layout in the file comment). Owned by the caller: free with
 *  dataset_packed_free, or take the three arrays (e.g. into a StoreDatasetData) and free() them. */
typedef struct {
    DatasetKind kind;
    int x_dim;       // D
    int y_dim;       // tasks: regression outputs; classes: 1 (the class index)
    int64_t n_rows;  // examples in all
    int64_t n_items; // tasks, or classes (training and test)
    int64_t n_test;  // classes kind: test classes; tasks kind: 0
    float *x;        // n_x = n_rows * x_dim
    size_t n_x;
    float *y; // n_y = n_rows * y_dim
    size_t n_y;
    int32_t *index; // n_index = n_tasks + 1, or 3C + 1
    size_t n_index;
} DatasetPacked;

/**
 * Validates n_tasks uploaded tasks and packs them. MS_ERR_INVALID with a message naming the
 * position ("tasks[3].x[2][0]: not a finite number", "tasks[5]: has 1 point; ...") when there are
 * no tasks, a task has fewer than 2 points, x_dim or y_dim is outside 1..4096 or differs from
 * tasks[0]'s, or a value is NaN or infinite; MS_ERR_TOO_LARGE when the rows or packed bytes exceed
 * limits (NULL: defaults); MS_ERR_NOMEM. Everything is checked before anything is allocated; each
 * output array is then one malloc, filled in one pass. On failure *out is zeroed.
 */
MsStatus dataset_pack_tasks(DatasetPacked *out, const DatasetTaskIn *tasks, size_t n_tasks,
                            const DatasetLimits *limits, MsError *err);

/**
 * Validates a labelled pool and packs it (rows grouped by class, labels remapped to 0..C-1 in
 * ascending order of the original label). MS_ERR_INVALID naming the field when there are no rows,
 * x_dim is outside 1..4096, a value is not finite ("x[12][3]: not a finite number"), a test class
 * does not occur in labels or is listed twice, or fewer than 2 training classes remain;
 * MS_ERR_TOO_LARGE over limits (NULL: defaults); MS_ERR_NOMEM. Sizes are checked before any
 * allocation; x is copied exactly once, straight into its grouped place (temporary memory: 4 bytes
 * per row plus 1 per class). On failure *out is zeroed.
 */
MsStatus dataset_pack_classes(DatasetPacked *out, const DatasetClassesIn *in,
                              const DatasetLimits *limits, MsError *err);

/**
 * dataset_pack_tasks without copying the data, for tasks that are consecutive slices of one x
 * array and one y array already in packed order (a safetensors upload): the same checks and
 * messages, then only index is allocated; out->x and out->y stay NULL (n_x, n_y set) and the
 * caller stores its own arrays.
 */
MsStatus dataset_pack_tasks_index(DatasetPacked *out, const DatasetTaskIn *tasks, size_t n_tasks,
                                  const DatasetLimits *limits, MsError *err);

/**
 * dataset_pack_classes without a second copy of x: x (== in->x, the caller's writable n_rows x
 * x_dim array) is regrouped in place by following the permutation's cycles; out->x stays NULL
 * (n_x set) and the caller stores x itself. Same checks, messages, order and y / index as
 * dataset_pack_classes. Temporary memory: 8 bytes per row, 1 per class and two rows.
 */
MsStatus dataset_pack_classes_inplace(DatasetPacked *out, float *x, const DatasetClassesIn *in,
                                      const DatasetLimits *limits, MsError *err);

/** Frees the three arrays and zeroes p. Accepts NULL and a zeroed struct. */
void dataset_packed_free(DatasetPacked *p);

/** A dataset as read back: borrowed arrays, float32 as stored (layout in the file comment). */
typedef struct {
    DatasetKind kind;
    int x_dim, y_dim; // y_dim is 1 for classes
    int64_t n_rows;
    const float *x; // n_x elements, expected n_rows * x_dim
    size_t n_x;
    const float *y; // n_y elements, expected n_rows * y_dim
    size_t n_y;
    const int32_t *index; // n_index elements
    size_t n_index;
    int64_t n_items; // tasks, or classes
} DatasetView;

/** A view of p's arrays, borrowed from p (valid until p is freed). */
DatasetView dataset_packed_view(const DatasetPacked *p);

/**
 * Checks a view read back from storage before anything trusts it: kind and dimensions in range,
 * n_x, n_y and n_index consistent with n_rows and n_items, offsets starting at 0, monotone
 * (strictly increasing for classes, steps of at least 2 rows for tasks) and ending at n_rows,
 * every value finite, and for classes: flags 0 or 1, at least 2 training classes, original
 * labels strictly increasing, and each row's y equal to the class its offsets place it in.
 * MS_ERR_INVALID with a message beginning "dataset: " and naming the first problem. O(n_x + n_y).
 */
MsStatus dataset_view_check(const DatasetView *v, MsError *err);

/** Points in the smallest task (tasks kind) or rows in the smallest class, training or test
 *  (classes kind): k_support + k_query must not exceed it. v must have passed dataset_view_check.
 */
int64_t dataset_min_points(const DatasetView *v);

/**
 * Checks before training that every episode can be drawn: MS_ERR_INVALID naming
 * tasks.k_support and tasks.k_query and the smallest task or class (by position and, for
 * classes, original label) when k_support + k_query exceeds dataset_min_points(v), or either k is
 * below 1. v must have passed dataset_view_check.
 */
MsStatus dataset_shots_check(const DatasetView *v, int k_support, int k_query, MsError *err);

/**
 * Creates a sampler over v into *out (NULL on failure); runs dataset_view_check first.
 * The sampler borrows v's arrays without copying them: they must stay valid and unchanged until
 * task_sampler_destroy (the view struct itself is copied and need not outlive the call).
 *
 * tasks kind: family "dataset", x_dim and y_dim of the data, regression, n_way 1 (the
 * n_way argument is ignored). An episode picks one task uniformly and draws k_support + k_query
 * distinct points of it without replacement (support first, then query). sample_val draws the
 * same way from every task: a task collection has no held-out split, so its validation loss
 * measures fit to the uploaded tasks; upload a second dataset to measure generalisation.
 *
 * classes kind: family "dataset", y_dim = n_way (the model's outputs), classification.
 * n_way must be in 2..100 and at most the number of training classes (MS_ERR_INVALID naming
 * tasks.n_way). An episode picks n_way distinct training classes, a uniformly random label
 * permutation, and k_support + k_query distinct rows of each class (first k_support to the
 * support set); the row layout is the gaussian family's: row shot * n_way + c holds shot `shot`
 * of the c-th drawn class, labelled perm[c]. sample_val draws from the test classes when there
 * are at least n_way of them, else from the training classes.
 *
 * Draw order (an episode is a pure function of the Rng state): tasks: 1 rng_below for the task,
 * then k_support + k_query for the points. classes: n_way rng_below for the classes, n_way - 1
 * for the permutation (Fisher-Yates from the top), then k_support + k_query per class in order.
 *
 * sample() and sample_val() never allocate: the index scratch is allocated here, sized to the
 * largest task or class, and returned to its initial state after every episode. Because of that
 * scratch a dataset sampler must not be shared by threads: create one per thread (cheap: the
 * data is borrowed). They return MS_ERR_INVALID when a drawn task or class has fewer than
 * k_support + k_query points (catch it up front with dataset_shots_check); the batch is then
 * left with unspecified contents but the sampler stays usable.
 *
 * MS_ERR_INVALID as above; MS_ERR_NOMEM. Caller frees with task_sampler_destroy.
 */
MsStatus dataset_sampler_create(TaskSampler **out, const DatasetView *v, int n_way, MsError *err);

#endif
