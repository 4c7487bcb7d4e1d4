/*
 * The codec area's JSON layer (include/metaserve/codec/json.h): strict readers returning
 * MsStatus and the tree builder, shared by every wire format of codec.c (float and double
 * builds) and by the HTTP handlers' request bodies.
 *
 * Parsing: the body is copied into a NUL-terminated buffer of our own before
 * cJSON_ParseWithLengthOpts sees it (cJSON 1.7.x may read one byte past the given length), and
 * only JSON whitespace may follow the value. Every number is checked for type, range and
 * finiteness. Output strings come from cJSON's default allocator (cJSON_InitHooks is never
 * called by the service), so callers release them with free().
 *
 * Sizes: documents up to JSON_MAX_BODY_BYTES; objects of a few to a few dozen keys (field checks
 * are O(keys x known)); matrices up to the caller's row limit, allocated only for the rows that
 * have the expected shape, so a short hostile document cannot ask for a large array.
 */
#include "metaserve/codec/json.h"

#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- paths and messages ---- */

// Ends a path that snprintf (returning n) cut at JSON_PATH_LEN with "...", so the cut is visible.
static const char *mark_cut(char *dst, int n) {
    if (n < 0 || n >= JSON_PATH_LEN) memcpy(dst + JSON_PATH_LEN - 4, "...", 4);
    return dst;
}

const char *json_path_key(char *dst, const char *parent, const char *key) {
    return mark_cut(dst, snprintf(dst, JSON_PATH_LEN, "%s%s%s", parent, *parent ? "." : "", key));
}

const char *json_path_index(char *dst, const char *parent, int i) {
    return mark_cut(dst, snprintf(dst, JSON_PATH_LEN, "%s[%d]", parent, i));
}

const char *json_echo(char *dst, const char *src) {
    size_t i = 0;
    for (; src[i] && i < JSON_ECHO_LEN; i++)
        dst[i] = (src[i] >= 0x20 && src[i] < 0x7f) ? src[i] : '?';
    if (src[i]) memcpy(dst + i, "...", 3), i += 3;
    dst[i] = '\0';
    return dst;
}

/* ---- parsing ---- */

MsStatus json_parse(cJSON **root, const char *body, size_t len, const char *what, int want_object,
                    MsError *err) {
    *root = NULL;
    if (len > JSON_MAX_BODY_BYTES)
        return ms_fail(err, MS_ERR_TOO_LARGE, "%s: %zu bytes exceeds the limit of %zu bytes", what,
                       len, JSON_MAX_BODY_BYTES);
    char *copy = malloc(len + 1);
    if (!copy) return ms_fail(err, MS_ERR_NOMEM, "%s: cannot allocate %zu bytes", what, len + 1);
    if (len) memcpy(copy, body, len);
    copy[len] = '\0';
    const char *end = NULL;
    MsStatus st = MS_OK;
    cJSON *doc = cJSON_ParseWithLengthOpts(copy, len, &end, 0);
    if (!doc) {
        size_t off = end ? (size_t)(end - copy) : 0;
        st = ms_fail_detail(err, MS_ERR_INVALID, MS_DETAIL_SYNTAX,
                            "%s: invalid JSON at byte offset %zu", what, off);
        goto done;
    }
    for (size_t off = (size_t)(end - copy); off < len; off++) {
        char ch = copy[off];
        if (ch != ' ' && ch != '\t' && ch != '\n' && ch != '\r') {
            st = ms_fail_detail(err, MS_ERR_INVALID, MS_DETAIL_SYNTAX,
                                "%s: unexpected data after the JSON value at byte offset %zu", what,
                                off);
            goto done;
        }
    }
    if (want_object && !cJSON_IsObject(doc)) {
        st = ms_fail(err, MS_ERR_INVALID, "%s: must be a JSON object", what);
        goto done;
    }
    *root = doc;
    doc = NULL;
done:
    cJSON_Delete(doc);
    free(copy);
    return st;
}

MsStatus json_need_object(const cJSON *it, const char *path, MsError *err) {
    return cJSON_IsObject(it) ? MS_OK : ms_fail(err, MS_ERR_INVALID, "%s: must be an object", path);
}

MsStatus json_fields(const cJSON *obj, const char *path, const char *const *known, MsError *err) {
    char p[JSON_PATH_LEN], e[JSON_ECHO_LEN + 4];
    MsStatus st = json_need_object(obj, *path ? path : "body", err);
    if (st != MS_OK) return st;
    for (const cJSON *it = obj->child; it; it = it->next) {
        int ok = 0;
        for (const char *const *k = known; *k && !ok; k++)
            ok = strcmp(*k, it->string) == 0;
        if (!ok)
            return ms_fail(err, MS_ERR_INVALID, "%s: unknown field",
                           json_path_key(p, path, json_echo(e, it->string)));
        // every earlier key is a known one, so this scan is at most |known| long
        for (const cJSON *prev = obj->child; prev != it; prev = prev->next)
            if (strcmp(prev->string, it->string) == 0)
                return ms_fail(err, MS_ERR_INVALID, "%s: duplicate field",
                               json_path_key(p, path, it->string));
    }
    return MS_OK;
}

MsStatus json_read_int(const cJSON *it, const char *path, long long lo, long long hi,
                       long long *out, MsError *err) {
    double v = cJSON_IsNumber(it) ? it->valuedouble : NAN;
    if (!(isfinite(v) && v == floor(v) && v >= (double)lo && v <= (double)hi))
        return ms_fail(err, MS_ERR_INVALID, "%s: must be an integer in %lld..%lld", path, lo, hi);
    *out = (long long)v;
    return MS_OK;
}

MsStatus json_read_small(const cJSON *it, const char *path, int lo, int hi, int *out,
                         MsError *err) {
    long long v = 0;
    MsStatus st = json_read_int(it, path, lo, hi, &v, err);
    if (st == MS_OK) *out = (int)v;
    return st;
}

MsStatus json_read_num(const cJSON *it, const char *path, double lo, int lo_open, double hi,
                       double *out, MsError *err) {
    double v = cJSON_IsNumber(it) ? it->valuedouble : NAN;
    if (!(isfinite(v) && (lo_open ? v > lo : v >= lo) && v <= hi))
        return ms_fail(err, MS_ERR_INVALID, "%s: must be a number in %c%g, %g]", path,
                       lo_open ? '(' : '[', lo, hi);
    *out = v;
    return MS_OK;
}

MsStatus json_read_str(const cJSON *it, const char *path, char *dst, size_t cap, MsError *err) {
    size_t n = cJSON_IsString(it) && it->valuestring ? strlen(it->valuestring) : 0;
    if (n == 0 || n >= cap)
        return ms_fail(err, MS_ERR_INVALID, "%s: must be a string of 1..%zu characters", path,
                       cap - 1);
    memcpy(dst, it->valuestring, n + 1);
    return MS_OK;
}

MsStatus json_read_floats(float **out, const cJSON *arr, const char *path, int cols, int max_rows,
                          int *rows, int *cols_out, MsError *err) {
    *out = NULL;
    if (!cJSON_IsArray(arr))
        return ms_fail(err, MS_ERR_INVALID, "%s: must be an array of rows", path);
    int n = cJSON_GetArraySize(arr);
    if (n < 1) return ms_fail(err, MS_ERR_INVALID, "%s: needs at least one row", path);
    if (n > max_rows)
        return ms_fail(err, MS_ERR_TOO_LARGE, "%s: %d rows, the limit is %d", path, n, max_rows);
    const cJSON *first = arr->child;
    int w = cols > 0 ? cols : cJSON_GetArraySize(first);
    if (!cJSON_IsArray(first) || w < 1)
        return ms_fail(err, MS_ERR_INVALID, "%s[0]: must be a non-empty array of numbers", path);
    // The loop below stops at the first row of another shape, so only the rows before it need
    // room: sizing by n x w instead would let a first row of w numbers followed by n empty rows
    // (a few bytes each) ask for n x w floats.
    int fit = 0;
    for (const cJSON *row = first; row && cJSON_IsArray(row) && cJSON_GetArraySize(row) == w;
         row = row->next)
        fit++;
    float *m = malloc((size_t)(fit > 0 ? fit : 1) * (size_t)w * sizeof(float));
    if (!m) return ms_fail(err, MS_ERR_NOMEM, "out of memory");
    int i = 0;
    for (const cJSON *row = arr->child; row; row = row->next, i++) {
        if (!cJSON_IsArray(row) || cJSON_GetArraySize(row) != w) {
            free(m);
            return ms_fail(err, MS_ERR_INVALID, "%s[%d]: must be an array of %d numbers", path, i,
                           w);
        }
        int j = 0;
        for (const cJSON *v = row->child; v; v = v->next, j++) {
            // finite in double and in float: 1e39 would become infinity in the model
            if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble)) {
                free(m);
                return ms_fail(err, MS_ERR_INVALID, "%s[%d][%d]: must be a finite number", path, i,
                               j);
            }
            if (fabs(v->valuedouble) > FLT_MAX) {
                free(m);
                return ms_fail(err, MS_ERR_INVALID,
                               "%s[%d][%d]: overflows float32, the precision the service computes "
                               "in (magnitude at most %.8g)",
                               path, i, j, (double)FLT_MAX);
            }
            m[(size_t)i * w + j] = (float)v->valuedouble;
        }
    }
    *rows = n;
    if (cols_out) *cols_out = w;
    *out = m;
    return MS_OK;
}

/* ---- building ---- */

cJSON *json_put(JsonBuild *b, cJSON *parent, const char *key, cJSON *item) {
    if (!item || !parent) {
        cJSON_Delete(item);
        b->oom = 1;
        return NULL;
    }
    cJSON_bool ok =
        key ? cJSON_AddItemToObject(parent, key, item) : cJSON_AddItemToArray(parent, item);
    if (!ok) {
        cJSON_Delete(item);
        b->oom = 1;
        return NULL;
    }
    return item;
}

cJSON *json_num_fmt(double v, const char *fmt) {
    if (!isfinite(v)) return cJSON_CreateNull();
    char buf[40];
    snprintf(buf, sizeof buf, fmt, v);
    return cJSON_CreateRaw(buf);
}

cJSON *json_num(double v) {
    if (!isfinite(v)) return cJSON_CreateNull();
    char buf[40];
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, v);
        if (strtod(buf, NULL) == v) break;
    }
    return cJSON_CreateRaw(buf);
}

const char *json_num_text(char out[32], double v) {
    if (!isfinite(v)) {
        memcpy(out, "null", 5);
        return out;
    }
    // cJSON 1.7 print_number: its valueint saturates to the int range
    int iv = v >= INT_MAX ? INT_MAX : v <= (double)INT_MIN ? INT_MIN : (int)v;
    if (v == (double)iv) {
        snprintf(out, 32, "%d", iv);
        return out;
    }
    snprintf(out, 32, "%1.15g", v);
    double back = strtod(out, NULL);
    double scale = fabs(back) > fabs(v) ? fabs(back) : fabs(v);
    if (!(fabs(back - v) <= scale * DBL_EPSILON)) snprintf(out, 32, "%1.17g", v);
    return out;
}

cJSON *json_integer(long long v) {
    char buf[24];
    snprintf(buf, sizeof buf, "%lld", v);
    return cJSON_CreateRaw(buf);
}

cJSON *json_uinteger(unsigned long long v) {
    char buf[24];
    snprintf(buf, sizeof buf, "%llu", v);
    return cJSON_CreateRaw(buf);
}

// A "%.9g" float takes at most 15 characters ("-1.23456789e-38"), so 16 per value plus a comma
// is enough.
char *json_floats_text(const float *m, int rows, int cols) {
    size_t cap = (size_t)rows * ((size_t)cols * 17 + 3) + 3, k = 0;
    char *s = malloc(cap);
    if (!s) return NULL;
    s[k++] = '[';
    for (int i = 0; i < rows; i++) {
        if (i) s[k++] = ',';
        s[k++] = '[';
        for (int j = 0; j < cols; j++) {
            if (j) s[k++] = ',';
            int n = snprintf(s + k, cap - k, "%.9g", (double)m[(size_t)i * cols + j]);
            if (n < 0 || (size_t)n >= cap - k) {
                free(s);
                return NULL;
            }
            k += (size_t)n;
        }
        s[k++] = ']';
    }
    s[k++] = ']';
    s[k] = '\0';
    return s;
}

char *json_argmax_text(const float *p, int rows, int cols) {
    size_t cap = (size_t)rows * 12 + 3, k = 0;
    char *s = malloc(cap);
    if (!s) return NULL;
    s[k++] = '[';
    for (int i = 0; i < rows; i++) {
        const float *row = p + (size_t)i * cols;
        int best = 0;
        for (int j = 1; j < cols; j++)
            if (row[j] > row[best]) best = j;
        k += (size_t)snprintf(s + k, cap - k, i ? ",%d" : "%d", best);
    }
    s[k++] = ']';
    s[k] = '\0';
    return s;
}

MsStatus json_finish(JsonBuild *b, cJSON *root, int pretty, char **out, MsError *err) {
    *out = NULL;
    if (!root) b->oom = 1;
    if (!b->oom) *out = pretty ? cJSON_Print(root) : cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    if (!*out) return ms_fail(err, MS_ERR_NOMEM, "out of memory while printing JSON");
    return MS_OK;
}
