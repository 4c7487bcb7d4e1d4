/*
 * POST /v1/datasets with a safetensors body (Content-Type application/octet-stream or
 * application/vnd.safetensors): the binary twin of the JSON upload in h_datasets.c, for pools too
 * large for JSON (an Omniglot-sized 32,460 x 784 pool is ~100 MB as F32, ~250 MB as JSON).
 *
 * The file holds, besides __metadata__ {"name": "...", "kind": "classes" | "tasks"}:
 *   classes  x F32 [n, d], labels I64/I32/I16/I8/U8 [n], optional test_classes (integer, [k])
 *   tasks    x F32 [n, d], y F32 [n, e], task_offsets (integer, [T + 1]): task t is rows
 *            [task_offsets[t], task_offsets[t+1]), starting at 0 and ending at n
 * (F64, F16 and BF16 are accepted for x and y and converted to F32.)
 *
 * Memory: the body is held once (the server allocates the declared Content-Length once) and the
 * data never leaves it: F32 (and F64, narrowed in place) tensors are used where they lie, the rows
 * of a pool are regrouped by class in place (dataset_pack_classes_inplace), and the store streams
 * them from there. Beyond the body: y and the index, 8 bytes per row and two rows of scratch, and
 * no cJSON tree but the header's. Validation and its messages are those of the JSON upload
 * (tasks/dataset.h), with the tensor names as the field names.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"
#include "metaserve/codec/safetensors.h"

// The float data of tensor t as an F32 array: in place when t is F32 or F64 and 4-byte aligned
// (*owned = NULL), else in a new array (*owned, the caller frees). NULL after replying.
static float *floats_of(Req *r, const StTensor *t, float **owned) {
    MsError err = {0};
    *owned = NULL;
    float *dst = (float *)(uintptr_t)t->data;
    int in_place = (t->dtype == ST_F32 || t->dtype == ST_F64) && ((uintptr_t)t->data % 4) == 0;
    if (!in_place) {
        if (!(dst = *owned = malloc(t->n ? t->n * sizeof(float) : 1))) {
            reply_problem(r, 503, "unavailable", "out of memory");
            return NULL;
        }
    }
    if (st_read_f32(t, dst, &err) != MS_OK) {
        free(*owned), *owned = NULL;
        reply_status(r, MS_ERR_INVALID, &err);
        return NULL;
    }
    return dst;
}

// An integer tensor of rank 1 into a new int32 array (caller frees). NULL after replying.
static int32_t *ints_of(Req *r, const StTensor *t, const char *name) {
    MsError err = {0};
    if (t->rank != 1) {
        reply_problem(r, 422, "validation", "tensor \"%s\": must have rank 1, not %d", name,
                      t->rank);
        return NULL;
    }
    int32_t *v = malloc((t->n + 1) * sizeof *v);
    if (!v) {
        reply_problem(r, 503, "unavailable", "out of memory");
        return NULL;
    }
    if (st_read_i32(t, v, INT32_MIN, INT32_MAX, &err) != MS_OK) {
        free(v);
        reply_status(r, MS_ERR_INVALID, &err);
        return NULL;
    }
    return v;
}

// x must be [n, d]: rank 2 and n within int32.
static int matrix_shape(Req *r, const StTensor *t, const char *name) {
    if (!t) {
        reply_problem(r, 422, "validation", "tensor \"%s\": is required", name);
        return 0;
    }
    if (t->rank != 2 || t->shape[0] > INT32_MAX || t->shape[1] > INT32_MAX) {
        reply_problem(r, 422, "validation", "tensor \"%s\": must have shape [rows, columns]", name);
        return 0;
    }
    return 1;
}

static int upload_classes_st(Req *r, const StFile *f, const DatasetLimits *lim, DatasetPacked *p,
                             float **x, float **x_owned) {
    const StTensor *tx = st_find(f, "x"), *tl = st_find(f, "labels"),
                   *tt = st_find(f, "test_classes");
    int32_t *labels = NULL, *test = NULL;
    int ok = 0;
    if (!matrix_shape(r, tx, "x")) return 0;
    if (!tl) {
        reply_problem(r, 422, "validation", "labels: is required");
        return 0;
    }
    if (!(labels = ints_of(r, tl, "labels"))) return 0;
    if (tl->shape[0] != tx->shape[0]) {
        reply_problem(r, 422, "validation", "labels: has %lld entries but x has %lld rows",
                      (long long)tl->shape[0], (long long)tx->shape[0]);
        goto done;
    }
    if (tt && !(test = ints_of(r, tt, "test_classes"))) goto done;
    if (!(*x = floats_of(r, tx, x_owned))) goto done;
    DatasetClassesIn in = {.x = *x,
                           .labels = labels,
                           .n_rows = tx->shape[0],
                           .x_dim = (int)tx->shape[1],
                           .test_classes = test,
                           .n_test = tt ? tt->n : 0};
    MsError err = {0};
    MsStatus s = dataset_pack_classes_inplace(p, *x, &in, lim, &err);
    if (s != MS_OK) {
        reply_status(r, s, &err);
        goto done;
    }
    ok = 1;
done:
    free(labels);
    free(test);
    return ok;
}

static int upload_tasks_st(Req *r, const StFile *f, const DatasetLimits *lim, DatasetPacked *p,
                           float **x, float **x_owned, float **y, float **y_owned) {
    const StTensor *tx = st_find(f, "x"), *ty = st_find(f, "y"), *to = st_find(f, "task_offsets");
    if (!matrix_shape(r, tx, "x") || !matrix_shape(r, ty, "y")) return 0;
    if (ty->shape[0] != tx->shape[0]) {
        reply_problem(r, 422, "validation", "y: has %lld rows but x has %lld",
                      (long long)ty->shape[0], (long long)tx->shape[0]);
        return 0;
    }
    if (!to) {
        reply_problem(r, 422, "validation", "task_offsets: is required");
        return 0;
    }
    int32_t *off = ints_of(r, to, "task_offsets");
    if (!off) return 0;
    int ok = 0;
    DatasetTaskIn *in = NULL;
    const int64_t n = tx->shape[0];
    const size_t T = to->n > 0 ? to->n - 1 : 0;
    if (to->n < 2 || off[0] != 0 || off[T] != n) {
        reply_problem(r, 422, "validation",
                      "task_offsets: must hold the first row of every task and then the row count "
                      "(%lld): [0, ..., %lld]",
                      (long long)n, (long long)n);
        goto done;
    }
    for (size_t t = 0; t < T; t++)
        if (off[t + 1] < off[t]) {
            reply_problem(r, 422, "validation",
                          "task_offsets[%zu]: %d is below task_offsets[%zu] (%d); offsets must not "
                          "decrease",
                          t + 1, off[t + 1], t, off[t]);
            goto done;
        }
    if (!(*x = floats_of(r, tx, x_owned)) || !(*y = floats_of(r, ty, y_owned))) goto done;
    if (!(in = calloc(T + 1, sizeof *in))) {
        reply_problem(r, 503, "unavailable", "out of memory");
        goto done;
    }
    const size_t D = (size_t)tx->shape[1], O = (size_t)ty->shape[1];
    for (size_t t = 0; t < T; t++)
        in[t] = (DatasetTaskIn){.x = *x + (size_t)off[t] * D,
                                .y = *y + (size_t)off[t] * O,
                                .n_points = off[t + 1] - off[t],
                                .x_dim = (int)D,
                                .y_dim = (int)O};
    MsError err = {0};
    MsStatus s = dataset_pack_tasks_index(p, in, T, lim, &err);
    if (s != MS_OK) {
        reply_status(r, s, &err);
        goto done;
    }
    ok = 1;
done:
    free(in);
    free(off);
    return ok;
}

int dataset_upload_st(Req *r, char *name, DatasetKind *kind, DatasetPacked *p, float **x, float **y,
                      float **owned_x, float **owned_y) {
    static const char *const CLASSES[] = {"x", "labels", "test_classes", NULL};
    static const char *const TASKS[] = {"x", "y", "task_offsets", NULL};
    StFile f;
    MsError err = {0};
    int ok = 0;
    *x = *y = *owned_x = *owned_y = NULL;
    if (st_parse(&f, r->body, r->body_len, &err) != MS_OK) {
        reply_status(r, MS_ERR_INVALID, &err);
        return 0;
    }
    const char *k = st_meta(&f, "kind"), *nm = st_meta(&f, "name");
    if (!k) {
        reply_problem(r, 422, "validation",
                      "__metadata__.kind: is required (\"classes\" or "
                      "\"tasks\")");
        goto done;
    }
    if (dataset_kind_parse(k, kind, &err) != MS_OK) {
        reply_problem(r, 422, "validation", "__metadata__.kind: must be \"tasks\" or \"classes\"");
        goto done;
    }
    if (!nm || strlen(nm) >= STORE_NAME_MAX || !name_valid(nm)) {
        reply_problem(r, 422, "validation",
                      "__metadata__.name: 1..%d characters of [A-Za-z0-9._-], not starting with "
                      "'.'",
                      STORE_NAME_MAX - 1);
        goto done;
    }
    snprintf(name, STORE_NAME_MAX, "%s", nm);
    const char *const *allowed = *kind == DATASET_CLASSES ? CLASSES : TASKS;
    for (int i = 0; i < f.n_t; i++) {
        int known = 0;
        for (int j = 0; allowed[j] && !known; j++)
            known = strcmp(f.t[i].name, allowed[j]) == 0;
        if (!known) {
            reply_problem(r, 422, "validation",
                          "tensor \"%.64s\": not part of a \"%s\" dataset (%s)", f.t[i].name, k,
                          *kind == DATASET_CLASSES ? "x, labels, test_classes"
                                                   : "x, y, task_offsets");
            goto done;
        }
    }
    DatasetLimits lim;
    dataset_limits_default(&lim);
    ok = *kind == DATASET_CLASSES ? upload_classes_st(r, &f, &lim, p, x, owned_x)
                                  : upload_tasks_st(r, &f, &lim, p, x, owned_x, y, owned_y);
done:
    st_free(&f);
    if (!ok) {
        free(*owned_x), free(*owned_y);
        *x = *y = *owned_x = *owned_y = NULL;
    }
    return ok;
}
