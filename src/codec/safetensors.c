/*
 * safetensors parser and writer (include/metaserve/codec/safetensors.h). Owns the byte layout
 * only: which tensors a weights file or a dataset must hold is decided by its callers (codec.c
 * for weights, http/ for datasets), which then read the tensors through st_expect / st_read_*.
 *
 * Invariants after st_parse succeeds: 8 + N <= len; every tensor has a known dtype, a rank of at
 * most ST_MAX_RANK, prod(shape) x size == end - begin without overflow, begin <= end <= data_len;
 * sorted by begin the tensors tile [0, data_len) exactly (no gap, no overlap); names are unique
 * and non-empty; metadata values are strings. Bodies reach tens or hundreds of megabytes
 * (datasets), so the data is never copied here: tensors point into the caller's buffer, and only
 * the header (at most ST_MAX_HEADER_BYTES, checked against len first) is parsed into a cJSON tree.
 */
#include "metaserve/codec/safetensors.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct {
    const char *name;
    size_t size;
} DTYPES[] = {
    [ST_F32] = {"F32", 4}, [ST_F64] = {"F64", 8},   [ST_F16] = {"F16", 2}, [ST_BF16] = {"BF16", 2},
    [ST_I64] = {"I64", 8}, [ST_I32] = {"I32", 4},   [ST_I16] = {"I16", 2}, [ST_I8] = {"I8", 1},
    [ST_U8] = {"U8", 1},   [ST_BOOL] = {"BOOL", 1},
};
#define N_DTYPES ((int)(sizeof DTYPES / sizeof DTYPES[0]))

const char *st_dtype_name(StDtype d) {
    return (int)d >= 0 && (int)d < N_DTYPES ? DTYPES[d].name : "?";
}

size_t st_dtype_size(StDtype d) {
    return (int)d >= 0 && (int)d < N_DTYPES ? DTYPES[d].size : 0;
}

static int is_float(StDtype d) {
    return d == ST_F32 || d == ST_F64 || d == ST_F16 || d == ST_BF16;
}

/* ---- little-endian loads ---- */

static uint64_t le64(const unsigned char *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static uint32_t le32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint16_t le16(const unsigned char *p) {
    return (uint16_t)(p[0] | p[1] << 8);
}

static float f32_bits(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

// IEEE 754 binary16 to float (exact: every half is a float).
static float half_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h >> 15) << 31, e = (h >> 10) & 0x1f, m = h & 0x3ff;
    if (e == 0x1f) return f32_bits(sign | 0x7f800000u | m << 13); // inf, NaN
    if (e == 0) {                                                 // zero, subnormal
        float v = (float)m * 0x1p-24f;
        return sign ? -v : v;
    }
    return f32_bits(sign | (e + 112) << 23 | m << 13);
}

/* ---- parsing ---- */

static MsStatus parse_tensor(StTensor *t, const cJSON *it, size_t data_len, MsError *err) {
    if (!cJSON_IsObject(it))
        return ms_fail(err, MS_ERR_INVALID, "tensor \"%s\": must be an object", t->name);
    int seen = 0;
    for (const cJSON *f = it->child; f; f = f->next) {
        if (strcmp(f->string, "dtype") && strcmp(f->string, "shape") &&
            strcmp(f->string, "data_offsets"))
            return ms_fail(err, MS_ERR_INVALID,
                           "tensor \"%s\": unknown field (dtype, shape, data_offsets only)",
                           t->name);
        seen++;
    }
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(it, "dtype");
    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(it, "shape");
    const cJSON *off = cJSON_GetObjectItemCaseSensitive(it, "data_offsets");
    if (seen != 3 || !dt || !sh || !off)
        return ms_fail(err, MS_ERR_INVALID,
                       "tensor \"%s\": needs exactly dtype, shape and data_offsets", t->name);
    if (!cJSON_IsString(dt))
        return ms_fail(err, MS_ERR_INVALID, "tensor \"%s\": dtype must be a string", t->name);
    int d = 0;
    while (d < N_DTYPES && strcmp(DTYPES[d].name, dt->valuestring) != 0)
        d++;
    if (d == N_DTYPES)
        return ms_fail(err, MS_ERR_INVALID,
                       "tensor \"%s\": dtype is not one this service reads (F32, F64, F16, BF16, "
                       "I64, I32, I16, I8, U8, BOOL)",
                       t->name);
    t->dtype = (StDtype)d;
    if (!cJSON_IsArray(sh) || cJSON_GetArraySize(sh) > ST_MAX_RANK)
        return ms_fail(err, MS_ERR_INVALID,
                       "tensor \"%s\": shape must be an array of at most %d integers", t->name,
                       ST_MAX_RANK);
    size_t n = 1, sz = DTYPES[d].size;
    t->rank = 0;
    for (const cJSON *e = sh->child; e; e = e->next) {
        double v = cJSON_IsNumber(e) ? e->valuedouble : -1;
        if (!(v >= 0 && v <= 9007199254740991.0 && v == floor(v)))
            return ms_fail(err, MS_ERR_INVALID,
                           "tensor \"%s\": shape[%d] must be a non-negative integer", t->name,
                           t->rank);
        t->shape[t->rank++] = (int64_t)v;
        // bounded by the buffer: a product above data_len cannot match the offsets anyway
        if (v > 0 && n > (data_len + 1) / (size_t)v)
            n = data_len + 1;
        else
            n *= (size_t)v;
        if (n > data_len + 1) n = data_len + 1;
    }
    if (!cJSON_IsArray(off) || cJSON_GetArraySize(off) != 2)
        return ms_fail(err, MS_ERR_INVALID, "tensor \"%s\": data_offsets must be [begin, end]",
                       t->name);
    double b = cJSON_IsNumber(off->child) ? off->child->valuedouble : -1;
    double e = cJSON_IsNumber(off->child->next) ? off->child->next->valuedouble : -1;
    if (!(b >= 0 && b == floor(b) && e >= b && e == floor(e)))
        return ms_fail(err, MS_ERR_INVALID,
                       "tensor \"%s\": data_offsets must be integers with 0 <= begin <= end",
                       t->name);
    if (e > (double)data_len)
        return ms_fail(err, MS_ERR_INVALID,
                       "tensor \"%s\": data_offsets [%.0f, %.0f] end outside the %zu-byte data",
                       t->name, b, e, data_len);
    t->begin = (size_t)b, t->end = (size_t)e;
    if (n > data_len || n * sz != t->end - t->begin)
        return ms_fail(err, MS_ERR_INVALID,
                       "tensor \"%s\": shape and dtype %s need %s bytes but data_offsets give %zu",
                       t->name, DTYPES[d].name, n > data_len ? "more" : "a different number of",
                       t->end - t->begin);
    t->n = n;
    return MS_OK;
}

static int by_begin(const void *a, const void *b) {
    const StTensor *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return x->end < y->end ? -1 : x->end > y->end;
}

static MsStatus parse_meta(StFile *f, const cJSON *m, MsError *err) {
    if (!cJSON_IsObject(m))
        return ms_fail(err, MS_ERR_INVALID, "__metadata__: must be an object of strings");
    int n = cJSON_GetArraySize(m);
    if (!(f->meta = calloc((size_t)n * 2 + 1, sizeof *f->meta)))
        return ms_fail(err, MS_ERR_NOMEM, "__metadata__: out of memory");
    for (const cJSON *e = m->child; e; e = e->next) {
        if (!cJSON_IsString(e))
            return ms_fail(err, MS_ERR_INVALID, "__metadata__.%.64s: must be a string", e->string);
        char *k = strdup(e->string), *v = strdup(e->valuestring);
        f->meta[2 * f->n_meta] = k, f->meta[2 * f->n_meta + 1] = v, f->n_meta++;
        if (!k || !v) return ms_fail(err, MS_ERR_NOMEM, "__metadata__: out of memory");
    }
    return MS_OK;
}

static MsStatus parse_header(StFile *f, const cJSON *root, const unsigned char *data,
                             size_t data_len, MsError *err) {
    int n = cJSON_GetArraySize(root);
    if (n > ST_MAX_TENSORS + 1)
        return ms_fail(err, MS_ERR_INVALID, "header: more than %d tensors", ST_MAX_TENSORS);
    if (!(f->t = calloc((size_t)n + 1, sizeof *f->t)))
        return ms_fail(err, MS_ERR_NOMEM, "header: out of memory");
    int has_meta = 0;
    for (const cJSON *it = root->child; it; it = it->next) {
        if (strcmp(it->string, "__metadata__") == 0) {
            if (has_meta++) return ms_fail(err, MS_ERR_INVALID, "__metadata__: given twice");
            MsStatus s = parse_meta(f, it, err);
            if (s != MS_OK) return s;
            continue;
        }
        StTensor *t = &f->t[f->n_t];
        size_t nl = strlen(it->string);
        if (nl == 0 || nl >= ST_MAX_NAME)
            return ms_fail(err, MS_ERR_INVALID, "header: a tensor name must be 1..%d bytes",
                           ST_MAX_NAME - 1);
        memcpy(t->name, it->string, nl + 1);
        for (int j = 0; j < f->n_t; j++)
            if (strcmp(f->t[j].name, t->name) == 0)
                return ms_fail(err, MS_ERR_INVALID, "tensor \"%s\": given twice", t->name);
        MsStatus s = parse_tensor(t, it, data_len, err);
        if (s != MS_OK) return s;
        t->data = data + t->begin;
        f->n_t++;
    }
    // the buffer must be tiled exactly: sort a copy by offset and walk it
    StTensor *s = malloc(((size_t)f->n_t + 1) * sizeof *s);
    if (!s) return ms_fail(err, MS_ERR_NOMEM, "header: out of memory");
    memcpy(s, f->t, (size_t)f->n_t * sizeof *s);
    qsort(s, (size_t)f->n_t, sizeof *s, by_begin);
    size_t at = 0;
    MsStatus st = MS_OK;
    for (int i = 0; i < f->n_t && st == MS_OK; i++) {
        if (s[i].begin < at)
            st = ms_fail(err, MS_ERR_INVALID, "tensor \"%s\": data_offsets overlap tensor \"%s\"",
                         s[i].name, s[i - 1].name);
        else if (s[i].begin > at)
            st = ms_fail(err, MS_ERR_INVALID,
                         "tensor \"%s\": data_offsets leave bytes %zu..%zu unused before it",
                         s[i].name, at, s[i].begin);
        at = s[i].end > at ? s[i].end : at;
    }
    if (st == MS_OK && at != data_len)
        st = ms_fail(err, MS_ERR_INVALID,
                     "header: tensors cover %zu of the %zu data bytes (the rest is unused)", at,
                     data_len);
    free(s);
    return st;
}

MsStatus st_parse(StFile *f, const void *buf, size_t len, MsError *err) {
    memset(f, 0, sizeof *f);
    const unsigned char *p = buf;
    if (len < 8)
        return ms_fail(err, MS_ERR_INVALID,
                       "header: a safetensors file starts with an 8-byte header length; got %zu "
                       "bytes",
                       len);
    uint64_t N = le64(p);
    if (N > len - 8 || N > ST_MAX_HEADER_BYTES)
        return ms_fail(err, MS_ERR_INVALID,
                       "header: length %llu goes beyond the %zu-byte file (or over %zu)",
                       (unsigned long long)N, len, ST_MAX_HEADER_BYTES);
    if (N < 2 || p[8] != '{')
        return ms_fail(err, MS_ERR_INVALID, "header: must be a JSON object starting with '{'");
    const char *hdr = (const char *)p + 8, *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(hdr, (size_t)N, &end, 0);
    // after the object, the header may hold only the padding spaces writers add
    for (const char *q = root ? end : hdr + N; q && q < hdr + N && root; q++)
        if (*q != ' ' && *q != '\t' && *q != '\n' && *q != '\r') cJSON_Delete(root), root = NULL;
    if (!root || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return ms_fail(err, MS_ERR_INVALID, "header: not a JSON object within its %llu bytes",
                       (unsigned long long)N);
    }
    f->data_off = 8 + (size_t)N;
    f->data_len = len - f->data_off;
    MsStatus s = parse_header(f, root, p + f->data_off, f->data_len, err);
    cJSON_Delete(root);
    if (s != MS_OK) st_free(f);
    return s;
}

void st_free(StFile *f) {
    if (!f) return;
    for (int i = 0; i < 2 * f->n_meta; i++)
        free(f->meta[i]);
    free(f->meta);
    free(f->t);
    memset(f, 0, sizeof *f);
}

const StTensor *st_find(const StFile *f, const char *name) {
    for (int i = 0; i < f->n_t; i++)
        if (strcmp(f->t[i].name, name) == 0) return &f->t[i];
    return NULL;
}

const char *st_meta(const StFile *f, const char *key) {
    for (int i = 0; i < f->n_meta; i++)
        if (strcmp(f->meta[2 * i], key) == 0) return f->meta[2 * i + 1];
    return NULL;
}

/* ---- reading tensors ---- */

static int shape_text(char *dst, size_t cap, int rank, const int64_t *shape) {
    int k = snprintf(dst, cap, "[");
    for (int i = 0; i < rank && (size_t)k < cap; i++)
        k += snprintf(dst + k, cap - (size_t)k, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if ((size_t)k < cap) k += snprintf(dst + k, cap - (size_t)k, "]");
    return k;
}

MsStatus st_expect(const StTensor *t, const char *name, int rank, const int64_t *shape,
                   MsError *err) {
    if (!t) return ms_fail(err, MS_ERR_INVALID, "tensor \"%s\": is missing", name);
    int same = t->rank == rank;
    for (int i = 0; i < rank && same; i++)
        same = t->shape[i] == shape[i];
    if (!same) {
        char got[160], want[160];
        shape_text(got, sizeof got, t->rank, t->shape);
        shape_text(want, sizeof want, rank, shape);
        return ms_fail(err, MS_ERR_INVALID, "tensor \"%s\": has shape %s, expected %s", name, got,
                       want);
    }
    if (!is_float(t->dtype))
        return ms_fail(err, MS_ERR_INVALID,
                       "tensor \"%s\": dtype %s is not supported here (F32, F64, F16, BF16)", name,
                       st_dtype_name(t->dtype));
    return MS_OK;
}

MsStatus st_read_f32(const StTensor *t, float *dst, MsError *err) {
    if (!is_float(t->dtype))
        return ms_fail(err, MS_ERR_INVALID,
                       "tensor \"%s\": dtype %s is not supported here (F32, F64, F16, BF16)",
                       t->name, st_dtype_name(t->dtype));
    const unsigned char *p = t->data;
    for (size_t i = 0; i < t->n; i++) {
        float v;
        switch (t->dtype) {
        case ST_F32:
            v = f32_bits(le32(p + 4 * i));
            break;
        case ST_F64: {
            uint64_t u = le64(p + 8 * i);
            double d;
            memcpy(&d, &u, 8);
            v = (float)d;
            if (isfinite(d) && !isfinite(v)) v = NAN; // outside float's range
            break;
        }
        case ST_F16:
            v = half_to_float(le16(p + 2 * i));
            break;
        default: // BF16: the top half of a float
            v = f32_bits((uint32_t)le16(p + 2 * i) << 16);
            break;
        }
        if (!isfinite(v))
            return ms_fail(err, MS_ERR_INVALID,
                           "tensor \"%s\": element %zu is not a finite float32 number", t->name, i);
        dst[i] = v;
    }
    return MS_OK;
}

MsStatus st_read_i32(const StTensor *t, int32_t *dst, int32_t lo, int32_t hi, MsError *err) {
    const unsigned char *p = t->data;
    if (is_float(t->dtype) || t->dtype == ST_BOOL)
        return ms_fail(err, MS_ERR_INVALID,
                       "tensor \"%s\": dtype %s is not supported here (I64, I32, I16, I8, U8)",
                       t->name, st_dtype_name(t->dtype));
    for (size_t i = 0; i < t->n; i++) {
        int64_t v;
        switch (t->dtype) {
        case ST_I64:
            v = (int64_t)le64(p + 8 * i);
            break;
        case ST_I32:
            v = (int32_t)le32(p + 4 * i);
            break;
        case ST_I16:
            v = (int16_t)le16(p + 2 * i);
            break;
        case ST_I8:
            v = (int8_t)p[i];
            break;
        default:
            v = p[i];
            break;
        }
        if (v < lo || v > hi)
            return ms_fail(err, MS_ERR_INVALID, "tensor \"%s\": element %zu is outside %ld..%ld",
                           t->name, i, (long)lo, (long)hi);
        dst[i] = (int32_t)v;
    }
    return MS_OK;
}

/* ---- writing ---- */

MsStatus st_write(void **out, size_t *len, const StOut *t, int n, const char *const *meta,
                  int n_meta, MsError *err) {
    *out = NULL;
    *len = 0;
    cJSON *h = cJSON_CreateObject();
    MsStatus st = MS_OK;
    size_t at = 0;
    int ok = h != NULL;
    if (ok && n_meta > 0) {
        cJSON *m = cJSON_AddObjectToObject(h, "__metadata__");
        ok = m != NULL;
        for (int i = 0; i < n_meta && ok; i++)
            ok = cJSON_AddStringToObject(m, meta[2 * i], meta[2 * i + 1]) != NULL;
    }
    for (int i = 0; i < n && ok; i++) {
        if (strlen(t[i].name) >= ST_MAX_NAME || cJSON_GetObjectItemCaseSensitive(h, t[i].name)) {
            st = ms_fail(err, MS_ERR_INVALID, "tensor \"%.64s\": duplicate or over-long name",
                         t[i].name);
            goto done;
        }
        size_t cnt = 1;
        cJSON *o = cJSON_AddObjectToObject(h, t[i].name);
        cJSON *sh = o ? cJSON_AddArrayToObject(o, "shape") : NULL;
        ok = o && cJSON_AddStringToObject(o, "dtype", "F32") && sh;
        for (int k = 0; k < t[i].rank && ok; k++) {
            cnt *= (size_t)t[i].shape[k];
            cJSON *v = cJSON_CreateNumber((double)t[i].shape[k]);
            ok = v && cJSON_AddItemToArray(sh, v);
        }
        cJSON *off = ok ? cJSON_AddArrayToObject(o, "data_offsets") : NULL;
        ok = off && cJSON_AddItemToArray(off, cJSON_CreateNumber((double)at)) &&
             cJSON_AddItemToArray(off, cJSON_CreateNumber((double)(at + 4 * cnt)));
        at += 4 * cnt;
    }
    char *text = ok ? cJSON_PrintUnformatted(h) : NULL;
    if (!text) {
        st = ms_fail(err, MS_ERR_NOMEM, "safetensors: out of memory");
        goto done;
    }
    size_t hl = strlen(text), padded = (hl + 7) / 8 * 8;
    unsigned char *b = malloc(8 + padded + at);
    if (!b) {
        free(text);
        st = ms_fail(err, MS_ERR_NOMEM, "safetensors: out of memory");
        goto done;
    }
    for (int i = 0; i < 8; i++)
        b[i] = (unsigned char)((uint64_t)padded >> (8 * i));
    memcpy(b + 8, text, hl);
    memset(b + 8 + hl, ' ', padded - hl);
    free(text);
    unsigned char *d = b + 8 + padded;
    for (int i = 0; i < n; i++) {
        size_t cnt = 1;
        for (int k = 0; k < t[i].rank; k++)
            cnt *= (size_t)t[i].shape[k];
        for (size_t j = 0; j < cnt; j++) {
            uint32_t u;
            memcpy(&u, &t[i].data[j], 4);
            for (int k = 0; k < 4; k++)
                *d++ = (unsigned char)(u >> (8 * k));
        }
    }
    *out = b;
    *len = 8 + padded + at;
done:
    cJSON_Delete(h);
    return st;
}
