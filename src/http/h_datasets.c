/*
 * Handlers of /v1/datasets: upload (POST), listing, description and deletion of the task
 * collections and labelled pools that jobs train on (tasks.dataset in a training config).
 *
 * An upload is parsed once into a cJSON tree, turned into float / int32 arrays with the strict
 * readers of json.c, validated and packed by tasks/dataset.h (the one authority on what a
 * dataset may hold, and on its size limits), then written by store_dataset_put. Uploads are the
 * largest bodies the service takes (up to max_body_bytes, 64 MiB by default; a parsed cJSON
 * number costs ~64 bytes), so peak memory is kept down: each task's subtree is deleted as soon as
 * it is converted, the tree is deleted before packing, and the unpacked arrays are freed before
 * the store is written.
 *
 * The wire shape of a dataset (one builder, dataset_json, used by every route):
 *   {"id", "name", "kind", "created_at" (RFC 3339 UTC, ms), "n_rows", "x_dim", "y_dim", "bytes",
 *    "n_tasks"}                                   for kind "tasks"
 *    "n_classes", "test_classes": [label, ...]}   for kind "classes" (original labels, ascending)
 * Errors name the field ("tasks[3].x[2][0]: ...", "labels[5]: ...") and never echo user text.
 */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "http.h"

/* ---- small helpers ---- */

// Reads an array of int32 values (integers only) into a new array (caller frees; non-NULL even
// when empty). Replies 422 naming "path[i]" and returns NULL on error.
static int32_t *int32_array(Req *r, const cJSON *arr, const char *path, int *n_out) {
    if (!cJSON_IsArray(arr)) {
        reply_problem(r, 422, "validation", "%s: must be an array of integers", path);
        return NULL;
    }
    int n = cJSON_GetArraySize(arr);
    int32_t *v = malloc(((size_t)n + 1) * sizeof *v);
    if (!v) {
        reply_problem(r, 503, "unavailable", "out of memory");
        return NULL;
    }
    int i = 0;
    for (const cJSON *it = arr->child; it; it = it->next, i++) {
        double d = cJSON_IsNumber(it) ? it->valuedouble : NAN;
        if (cJSON_IsArray(it)) {
            reply_problem(r, 422, "validation",
                          "%s[%d]: a class index (an integer) is expected, not an array such as a "
                          "one-hot vector",
                          path, i);
            free(v);
            return NULL;
        }
        if (!isfinite(d) || d != floor(d) || d < (double)INT32_MIN || d > (double)INT32_MAX) {
            reply_problem(r, 422, "validation", "%s[%d]: must be an integer in %ld..%ld", path, i,
                          (long)INT32_MIN, (long)INT32_MAX);
            free(v);
            return NULL;
        }
        v[i] = (int32_t)d;
    }
    *n_out = n;
    return v;
}

/* ---- the wire shape ---- */

// The Dataset object; d->meta supplies test_classes for kind "classes".
static cJSON *dataset_json(JsonBuild *b, const StoreDataset *d) {
    cJSON *o = cJSON_CreateObject();
    if (!o) {
        b->oom = 1;
        return NULL;
    }
    int classes = strcmp(d->kind, "classes") == 0;
    json_put(b, o, "id", cJSON_CreateString(d->id));
    json_put(b, o, "name", cJSON_CreateString(d->name));
    json_put(b, o, "kind", cJSON_CreateString(d->kind));
    json_put(b, o, "created_at", json_time(d->created_at));
    json_put(b, o, "n_rows", cJSON_CreateNumber((double)d->n_rows));
    json_put(b, o, "x_dim", cJSON_CreateNumber(d->x_dim));
    json_put(b, o, "y_dim", cJSON_CreateNumber(d->y_dim));
    json_put(b, o, "bytes", cJSON_CreateNumber((double)d->bytes));
    json_put(b, o, classes ? "n_classes" : "n_tasks", cJSON_CreateNumber((double)d->n_items));
    if (classes && d->meta) {
        int oom;
        cJSON *meta = json_parse_stored(d->meta, &oom);
        cJSON *tc = cJSON_DetachItemFromObjectCaseSensitive(meta, "test_classes");
        cJSON_Delete(meta);
        if (oom) {
            b->oom = 1;
            return o;
        }
        if (!cJSON_IsArray(tc)) {
            cJSON_Delete(tc);
            tc = cJSON_CreateArray();
        }
        json_put(b, o, "test_classes", tc);
    }
    return o;
}

/* ---- upload: tasks kind ---- */

// Converts the "tasks" array of body into packed arrays. Each task's subtree is deleted once
// converted. Returns 1, or replies and returns 0.
static int upload_tasks(Req *r, cJSON *body, const DatasetLimits *lim, DatasetPacked *out) {
    static const char *const TASK_FIELDS[] = {"x", "y", NULL};
    cJSON *arr = cJSON_GetObjectItemCaseSensitive(body, "tasks");
    if (!cJSON_IsArray(arr)) {
        reply_problem(r, 422, "validation", "tasks: must be an array of {\"x\", \"y\"} objects");
        return 0;
    }
    int n = cJSON_GetArraySize(arr);
    DatasetTaskIn *in = calloc((size_t)n + 1, sizeof *in);
    if (!in) {
        reply_problem(r, 503, "unavailable", "out of memory");
        return 0;
    }
    int max_rows = lim->max_rows < INT_MAX ? (int)lim->max_rows : INT_MAX;
    int ok = 1, i = 0, xd = 0, yd = 0;
    int64_t rows = 0;
    char px[48], py[48], pt[40];
    for (cJSON *t = arr->child, *next; t && ok; t = next, i++) {
        next = t->next;
        snprintf(pt, sizeof pt, "tasks[%d]", i);
        snprintf(px, sizeof px, "tasks[%d].x", i);
        snprintf(py, sizeof py, "tasks[%d].y", i);
        if (!(ok = body_fields(r, t, pt, TASK_FIELDS))) break;
        int rx = 0, ry = 0, wx = 0, wy = 0;
        // after tasks[0], every task must have its widths: the reader names the first bad row
        float *x =
            body_matrix(r, cJSON_GetObjectItemCaseSensitive(t, "x"), px, xd, max_rows, &rx, &wx);
        float *y =
            x ? body_matrix(r, cJSON_GetObjectItemCaseSensitive(t, "y"), py, yd, max_rows, &ry, &wy)
              : NULL;
        in[i] = (DatasetTaskIn){.x = x, .y = y, .n_points = rx, .x_dim = wx, .y_dim = wy};
        if (!x || !y) {
            ok = 0;
            break;
        }
        if (ry != rx) {
            reply_problem(r, 422, "validation", "%s: has %d rows but %s has %d", py, ry, px, rx);
            ok = 0;
            break;
        }
        xd = wx, yd = wy;
        rows += rx;
        if (rows > lim->max_rows) {
            reply_problem(r, 413, "payload-too-large", "tasks: more than %lld rows in all",
                          (long long)lim->max_rows);
            ok = 0;
            break;
        }
        cJSON_Delete(cJSON_DetachItemViaPointer(arr, t));
    }
    if (ok) {
        MsError err = {0};
        MsStatus st = dataset_pack_tasks(out, in, (size_t)n, lim, &err);
        if (st != MS_OK) reply_status(r, st, &err);
        ok = st == MS_OK;
    }
    for (int k = 0; k < n; k++) {
        free((void *)in[k].x);
        free((void *)in[k].y);
    }
    free(in);
    return ok;
}

/* ---- upload: classes kind ---- */

// Converts x, labels and test_classes of body into packed arrays. Returns 1, or replies and
// returns 0.
static int upload_classes(Req *r, cJSON *body, const DatasetLimits *lim, DatasetPacked *out) {
    int max_rows = lim->max_rows < INT_MAX ? (int)lim->max_rows : INT_MAX;
    int rows = 0, D = 0, n_labels = 0, n_test = 0, ok = 0;
    int32_t *labels = NULL, *test = NULL;
    float *x =
        body_matrix(r, cJSON_GetObjectItemCaseSensitive(body, "x"), "x", 0, max_rows, &rows, &D);
    if (!x) return 0;
    cJSON_DeleteItemFromObjectCaseSensitive(body, "x"); // the largest part of the tree
    const cJSON *jl = cJSON_GetObjectItemCaseSensitive(body, "labels");
    if (!jl) {
        reply_problem(r, 422, "validation", "labels: is required");
        goto done;
    }
    if (!(labels = int32_array(r, jl, "labels", &n_labels))) goto done;
    if (n_labels != rows) {
        reply_problem(r, 422, "validation", "labels: has %d entries but x has %d rows", n_labels,
                      rows);
        goto done;
    }
    const cJSON *jt = cJSON_GetObjectItemCaseSensitive(body, "test_classes");
    if (jt && !cJSON_IsNull(jt) && !(test = int32_array(r, jt, "test_classes", &n_test))) goto done;
    DatasetClassesIn in = {.x = x,
                           .labels = labels,
                           .n_rows = rows,
                           .x_dim = D,
                           .test_classes = test,
                           .n_test = (size_t)n_test};
    MsError err = {0};
    MsStatus st = dataset_pack_classes(out, &in, lim, &err);
    if (st != MS_OK) {
        reply_status(r, st, &err);
        goto done;
    }
    ok = 1;
done:
    free(x);
    free(labels);
    free(test);
    return ok;
}

// The meta JSON of a packed classes dataset: {"test_classes": [original labels, ascending]},
// read from the flags and labels parts of the index. NULL when out of memory.
static char *classes_meta(const DatasetPacked *p) {
    const size_t C = (size_t)p->n_items;
    JsonBuild b = {0};
    cJSON *meta = cJSON_CreateObject();
    cJSON *tc = json_put(&b, meta, "test_classes", cJSON_CreateArray());
    for (size_t c = 0; c < C && tc && !b.oom; c++)
        if (p->index[C + 1 + c])
            json_put(&b, tc, NULL, cJSON_CreateNumber(p->index[2 * C + 1 + c]));
    char *s = b.oom || !meta ? NULL : cJSON_PrintUnformatted(meta);
    cJSON_Delete(meta);
    return s;
}

/* ---- handlers ---- */

int dataset_upload_read(Req *r, cJSON *body, char *name, DatasetKind *kind, DatasetPacked *p) {
    static const char *const TASKS_FIELDS[] = {"name", "kind", "tasks", NULL};
    static const char *const CLASSES_FIELDS[] = {"name",   "kind",         "x",
                                                 "labels", "test_classes", NULL};
    MsError err = {0};
    int ok = 0;
    *kind = DATASET_TASKS;
    if (!cJSON_IsObject(body)) {
        reply_problem(r, 422, "validation", "body: must be a JSON object");
        goto done;
    }
    const cJSON *jk = cJSON_GetObjectItemCaseSensitive(body, "kind");
    if (!jk) {
        reply_problem(r, 422, "validation", "kind: is required");
        goto done;
    }
    if (!cJSON_IsString(jk) || dataset_kind_parse(jk->valuestring, kind, &err) != MS_OK) {
        reply_problem(r, 422, "validation", "kind: must be \"tasks\" or \"classes\"");
        goto done;
    }
    if (!body_fields(r, body, "body", *kind == DATASET_TASKS ? TASKS_FIELDS : CLASSES_FIELDS))
        goto done;
    if (!body_string(r, body, "name", STORE_NAME_MAX, 1, name)) goto done;
    _Static_assert(STORE_NAME_MAX == NAME_MAX_BYTES, "store names follow core/name.h");
    if (!name_valid(name)) {
        reply_problem(r, 422, "validation",
                      "name: 1..%d characters of [A-Za-z0-9._-], not starting with '.'",
                      STORE_NAME_MAX - 1);
        goto done;
    }
    DatasetLimits lim;
    dataset_limits_default(&lim);
    ok = *kind == DATASET_TASKS ? upload_tasks(r, body, &lim, p) : upload_classes(r, body, &lim, p);
done:
    cJSON_Delete(body);
    return ok;
}

void h_dataset_create(Req *r) {
    Store *st = req_store(r);
    if (!st) return;
    // parsed by dispatch; dataset_upload_read frees the tree as soon as it has packed it
    cJSON *body = r->json;
    r->json = NULL;
    DatasetPacked p = {0};
    StoreDataset d = {0};
    DatasetKind kind;
    MsError err = {0};
    char *reserve = NULL;
    // a safetensors body (h_datasets_st.c): x (and y of a task collection) stay in r->body
    float *bx = NULL, *by = NULL, *own_x = NULL, *own_y = NULL;
    if (r->binary ? !dataset_upload_st(r, d.name, &kind, &p, &bx, &by, &own_x, &own_y)
                  : !dataset_upload_read(r, body, d.name, &kind, &p))
        goto done;

    snprintf(d.kind, sizeof d.kind, "%s", dataset_kind_name(kind));
    d.n_items = p.n_items;
    d.n_rows = p.n_rows;
    d.x_dim = p.x_dim;
    d.y_dim = p.y_dim;
    if (!(d.meta = kind == DATASET_CLASSES ? classes_meta(&p) : strdup("{}"))) {
        reply_problem(r, 503, "unavailable", "out of memory");
        goto done;
    }
    // once stored, the upload must be answered 201 even out of memory: the fallback reply's
    // buffer (the description; test_classes from meta) is reserved before the write
    size_t cap = 640 + strlen(d.meta);
    if (!(reserve = malloc(cap))) {
        reply_problem(r, 503, "unavailable", "out of memory");
        goto done;
    }
    StoreDatasetData data = {.x = p.x ? p.x : bx,
                             .n_x = p.n_x,
                             .y = p.y ? p.y : by,
                             .n_y = p.n_y,
                             .index = p.index,
                             .n_index = p.n_index};
    MsStatus s = store_dataset_put(st, &d, &data, &err);
    dataset_packed_free(&p); // the store has its copy; the reply needs only the description
    if (s != MS_OK) {
        reply_status(r, s, &err);
        goto done;
    }
    JsonBuild b = {0};
    cJSON *doc = dataset_json(&b, &d);
    if (b.oom) cJSON_Delete(doc), doc = NULL;
    snprintf(r->location, sizeof r->location, "/v1/datasets/%s", d.id);
    int classes = kind == DATASET_CLASSES;
    const char *tc = classes ? strchr(d.meta, '[') : NULL, *tc_end = tc ? strrchr(tc, ']') : NULL;
    char t[32] = "";
    json_time_text(t, d.created_at);
    int tc_len = !classes ? 0 : tc_end ? (int)(tc_end - tc + 1) : 2;
    reply_json_committed(
        r, 201, doc, reserve, cap,
        "{\"id\":\"%s\",\"name\":\"%s\",\"kind\":\"%s\",\"created_at\":\"%s\","
        "\"n_rows\":%lld,\"x_dim\":%d,\"y_dim\":%d,\"bytes\":%zu,\"%s\":%lld%s%.*s}",
        d.id, d.name, d.kind, t, (long long)d.n_rows, d.x_dim, d.y_dim, d.bytes,
        classes ? "n_classes" : "n_tasks", (long long)d.n_items,
        classes ? ",\"test_classes\":" : "", tc_len, tc_end ? tc : "[]");
    reserve = NULL; // the reply's now
done:
    free(reserve);
    free(own_x);
    free(own_y);
    dataset_packed_free(&p);
    store_dataset_free(&d);
}

static MsStatus list_rows(Store *st, const char *token, int size, void **rows, int *n, int *more,
                          MsError *err) {
    StoreDataset *v = NULL;
    MsStatus s = store_dataset_list(st, token, size, &v, n, more, err);
    *rows = v;
    return s;
}
static cJSON *list_render(JsonBuild *b, const void *row) {
    return dataset_json(b, row);
}
static const char *list_id(const void *row) {
    return ((const StoreDataset *)row)->id;
}
static void list_free(void *row) {
    store_dataset_free(row);
}

void h_dataset_list(Req *r) {
    static const ListKind KIND = {
        "datasets",
        "page_token: not a token this service issued, or its dataset was deleted",
        sizeof(StoreDataset),
        list_rows,
        list_render,
        list_id,
        list_free};
    reply_list(r, &KIND);
}

void h_dataset_get(Req *r) {
    Store *st = req_store(r);
    if (!st) return;
    StoreDataset d;
    MsError err = {0};
    MsStatus s = store_dataset_get(st, r->params[0], &d, NULL, &err);
    if (s != MS_OK) {
        reply_status(r, s, &err);
        return;
    }
    JsonBuild b = {0};
    cJSON *doc = dataset_json(&b, &d);
    store_dataset_free(&d);
    if (b.oom) {
        cJSON_Delete(doc);
        reply_nomem(r);
        return;
    }
    reply_json(r, 200, doc);
}

void h_dataset_delete(Req *r) {
    Store *st = req_store(r);
    if (!st) return;
    MsError err = {0};
    MsStatus s = store_dataset_delete(st, r->params[0], &err);
    if (s != MS_OK) {
        reply_status(r, s, &err);
        return;
    }
    reply_empty(r, 204);
}
