/*
 * The Open Inference Protocol codec (include/metaserve/codec/oip.h): the inference request read
 * into float tensors, JSON or binary, and the inference response printed. It knows the
 * protocol's rules, not the models: which inputs and widths a model takes is the handler's.
 *
 * Reading order: the JSON header is parsed and walked once, inputs in order; a JSON tensor's
 * values are counted (no allocation) and the count compared with the shape's product before its
 * float array is allocated; a binary tensor takes its binary_data_size bytes from the tail in
 * input order, and the tail must be used exactly. The shape's product is computed with overflow
 * checks and bounded by OIP_MAX_ELEMENTS before any comparison.
 *
 * Sizes: a predict request of the 1-40-40-1 net is a few hundred bytes; a 784-wide image batch
 * is tens to hundreds of KB (JSON) or 3 KB per row (binary). Responses are printed into one
 * buffer: JSON header, then the binary outputs.
 */
#include "metaserve/codec/oip.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metaserve/codec/json.h"

#define MAX_NEST (OIP_MAX_RANK + 1) // nesting of a "data" array

static const struct {
    const char *name;
    OipDatatype type;
    size_t size;
} TYPES[] = {
    {"BOOL", OIP_BOOL, 1},     {"UINT8", OIP_UINT8, 1},   {"UINT16", OIP_UINT16, 2},
    {"UINT32", OIP_UINT32, 4}, {"UINT64", OIP_UINT64, 8}, {"INT8", OIP_INT8, 1},
    {"INT16", OIP_INT16, 2},   {"INT32", OIP_INT32, 4},   {"INT64", OIP_INT64, 8},
    {"FP16", OIP_FP16, 2},     {"FP32", OIP_FP32, 4},     {"FP64", OIP_FP64, 8},
    {"BYTES", OIP_BYTES, 0},   {"BF16", OIP_BF16, 2},
};
#define N_TYPES (sizeof TYPES / sizeof TYPES[0])

const char *oip_datatype_name(OipDatatype t) {
    for (size_t i = 0; i < N_TYPES; i++)
        if (TYPES[i].type == t) return TYPES[i].name;
    return "?";
}

size_t oip_datatype_size(OipDatatype t) {
    for (size_t i = 0; i < N_TYPES; i++)
        if (TYPES[i].type == t) return TYPES[i].size;
    return 0;
}

// 1 for the datatypes this service reads: every real and integer type (converted to float).
static int readable(OipDatatype t) {
    return t != OIP_BOOL && t != OIP_BYTES && t != OIP_FP16 && t != OIP_BF16;
}

// The range of an integer datatype's values.
static void int_range(OipDatatype t, double *lo, double *hi) {
    switch (t) {
    case OIP_UINT8:
        *lo = 0, *hi = 255;
        break;
    case OIP_UINT16:
        *lo = 0, *hi = 65535;
        break;
    case OIP_UINT32:
        *lo = 0, *hi = 4294967295.0;
        break;
    case OIP_UINT64:
        *lo = 0, *hi = 18446744073709551615.0;
        break;
    case OIP_INT8:
        *lo = -128, *hi = 127;
        break;
    case OIP_INT16:
        *lo = -32768, *hi = 32767;
        break;
    case OIP_INT32:
        *lo = -2147483648.0, *hi = 2147483647.0;
        break;
    default:
        *lo = -9223372036854775808.0, *hi = 9223372036854775807.0;
        break;
    }
}

// v, a value of type t, as a float: MS_OK, or the reason it is not one ("not an integer").
static const char *convert(OipDatatype t, double v, float *out) {
    if (!isfinite(v)) return "must be finite";
    if (t == OIP_FP32 || t == OIP_FP64) {
        float f = (float)v;
        if (!isfinite(f)) return "is out of float range";
        *out = f;
        return NULL;
    }
    double lo, hi;
    int_range(t, &lo, &hi);
    if (v != floor(v)) return "must be an integer";
    if (v < lo || v > hi) return "is out of the datatype's range";
    *out = (float)v;
    return NULL;
}

/* ---- JSON data ---- */

static const char TOO_MANY[] = "holds more values than the shape";

// Counts the numbers of a (nested) data array into *n, up to limit; -1 when an element is not a
// number or an array, or nesting passes MAX_NEST (*bad says which), or the count passes limit.
static int count_values(const cJSON *a, int depth, size_t limit, size_t *n, const char **bad) {
    if (depth > MAX_NEST) return *bad = "is nested too deeply", -1;
    for (const cJSON *e = a->child; e; e = e->next) {
        if (cJSON_IsNumber(e)) {
            if (++*n > limit) return *bad = TOO_MANY, -1;
        } else if (cJSON_IsArray(e)) {
            if (count_values(e, depth + 1, limit, n, bad) < 0) return -1;
        } else {
            return *bad = "must hold only numbers (flat or nested arrays)", -1;
        }
    }
    return 0;
}

// Converts the numbers of a (nested) data array, row-major, into out at *k.
static MsStatus fill_values(const cJSON *a, OipDatatype t, float *out, size_t *k, const char *who,
                            MsError *err) {
    for (const cJSON *e = a->child; e; e = e->next) {
        if (cJSON_IsArray(e)) {
            MsStatus s = fill_values(e, t, out, k, who, err);
            if (s != MS_OK) return s;
            continue;
        }
        const char *why = convert(t, e->valuedouble, &out[*k]);
        if (why) return ms_fail(err, MS_ERR_INVALID, "%s.data[%zu]: %s", who, *k, why);
        ++*k;
    }
    return MS_OK;
}

/* ---- binary data ---- */

static uint64_t le_u(const unsigned char *p, size_t n) {
    uint64_t v = 0;
    for (size_t i = n; i-- > 0;)
        v = v << 8 | p[i];
    return v;
}

// Converts count little-endian values of type t at p into out.
static MsStatus binary_values(const unsigned char *p, size_t count, OipDatatype t, float *out,
                              const char *who, MsError *err) {
    size_t es = oip_datatype_size(t);
    for (size_t i = 0; i < count; i++, p += es) {
        uint64_t u = le_u(p, es);
        double v;
        switch (t) {
        case OIP_FP32: {
            uint32_t b = (uint32_t)u;
            float f;
            memcpy(&f, &b, 4);
            v = f;
            break;
        }
        case OIP_FP64:
            memcpy(&v, &u, 8);
            break;
        case OIP_INT8:
            v = (int8_t)u;
            break;
        case OIP_INT16:
            v = (int16_t)u;
            break;
        case OIP_INT32:
            v = (int32_t)u;
            break;
        case OIP_INT64:
            v = (double)(int64_t)u;
            break;
        default:
            v = (double)u;
            break; // unsigned
        }
        const char *why = convert(t, v, &out[i]);
        if (why) return ms_fail(err, MS_ERR_INVALID, "%s: binary value [%zu] %s", who, i, why);
    }
    return MS_OK;
}

/* ---- request ---- */

// Reads inputs[i]'s name, datatype and shape (and binary_data_size) into t.
static MsStatus read_head(OipTensor *t, const cJSON *in, const char *path, long long *bin_size,
                          MsError *err) {
    static const char *const fields[] = {"name", "shape", "datatype", "data", "parameters", NULL};
    static const char *const pfields[] = {"binary_data_size", NULL};
    char p[JSON_PATH_LEN];
    MsStatus s = json_fields(in, path, fields, err);
    if (s != MS_OK) return s;
    s = json_read_str(cJSON_GetObjectItemCaseSensitive(in, "name"), json_path_key(p, path, "name"),
                      t->name, sizeof t->name, err);
    if (s != MS_OK) return s;
    char dt[16];
    const cJSON *jdt = cJSON_GetObjectItemCaseSensitive(in, "datatype");
    if ((s = json_read_str(jdt, json_path_key(p, path, "datatype"), dt, sizeof dt, err)) != MS_OK)
        return s;
    size_t ti = 0;
    while (ti < N_TYPES && strcmp(TYPES[ti].name, dt) != 0)
        ti++;
    char echo[JSON_ECHO_LEN + 4];
    if (ti == N_TYPES)
        return ms_fail(err, MS_ERR_INVALID,
                       "%s.datatype: unknown datatype '%s' (the protocol's are BOOL, UINT8..64, "
                       "INT8..64, FP16, FP32, FP64, BF16, BYTES)",
                       path, json_echo(echo, dt));
    t->datatype = TYPES[ti].type;
    if (!readable(t->datatype))
        return ms_fail(err, MS_ERR_INVALID,
                       "%s.datatype: %s is not supported (use FP32, FP64 or an integer type)", path,
                       dt);
    const cJSON *js = cJSON_GetObjectItemCaseSensitive(in, "shape");
    json_path_key(p, path, "shape");
    if (!cJSON_IsArray(js)) return ms_fail(err, MS_ERR_INVALID, "%s: must be an array", p);
    int64_t prod = 1;
    t->rank = 0;
    for (const cJSON *d = js->child; d; d = d->next) {
        if (t->rank == OIP_MAX_RANK)
            return ms_fail(err, MS_ERR_INVALID, "%s: more than %d dimensions", p, OIP_MAX_RANK);
        long long v;
        char pi[JSON_PATH_LEN];
        s = json_read_int(d, json_path_index(pi, p, t->rank), 0, OIP_MAX_ELEMENTS, &v, err);
        if (s != MS_OK) return s;
        t->shape[t->rank++] = v;
        // each factor is <= 2^28 and prod stays <= 2^28 after each step: no overflow
        prod = prod * v;
        if (prod > OIP_MAX_ELEMENTS)
            return ms_fail(err, MS_ERR_INVALID, "%s: more than %lld elements in all", p,
                           (long long)OIP_MAX_ELEMENTS);
    }
    t->count = (size_t)prod;
    *bin_size = -1;
    const cJSON *par = cJSON_GetObjectItemCaseSensitive(in, "parameters");
    if (par && !cJSON_IsNull(par)) {
        json_path_key(p, path, "parameters");
        if ((s = json_fields(par, p, pfields, err)) != MS_OK) return s;
        const cJSON *bs = cJSON_GetObjectItemCaseSensitive(par, "binary_data_size");
        char pb[JSON_PATH_LEN];
        if (bs && (s = json_read_int(bs, json_path_key(pb, p, "binary_data_size"), 0,
                                     (long long)OIP_MAX_ELEMENTS * 8, bin_size, err)) != MS_OK)
            return s;
    }
    return MS_OK;
}

// Reads inputs[i] into t: its values from "data" or, with binary_data_size, from the tail at
// *off (advanced).
static MsStatus read_input(OipTensor *t, const cJSON *in, const char *path, const char *tail,
                           size_t tail_len, size_t *off, MsError *err) {
    long long bin = -1;
    MsStatus s = read_head(t, in, path, &bin, err);
    if (s != MS_OK) return s;
    char who[OIP_NAME_MAX + 16];
    char echo[JSON_ECHO_LEN + 4];
    snprintf(who, sizeof who, "input '%s'", json_echo(echo, t->name));
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(in, "data");
    if (bin >= 0 && data)
        return ms_fail(err, MS_ERR_INVALID, "%s: has both data and binary_data_size", who);
    if (bin < 0 && !data)
        return ms_fail(err, MS_ERR_INVALID,
                       "%s: data is required (or parameters.binary_data_size with binary data)",
                       who);
    if (bin >= 0) {
        size_t want = t->count * oip_datatype_size(t->datatype);
        if ((size_t)bin != want)
            return ms_fail(err, MS_ERR_INVALID,
                           "%s: binary_data_size is %lld bytes, the shape and %s take %zu", who,
                           bin, oip_datatype_name(t->datatype), want);
        if ((size_t)bin > tail_len - *off)
            return ms_fail(err, MS_ERR_INVALID,
                           "%s: binary_data_size %lld bytes passes the end of the binary data "
                           "(%zu bytes left)",
                           who, bin, tail_len - *off);
    } else {
        if (!cJSON_IsArray(data))
            return ms_fail(err, MS_ERR_INVALID, "%s.data: must be an array", path);
        size_t n = 0;
        const char *bad = NULL;
        if (count_values(data, 1, t->count, &n, &bad) < 0 && bad != TOO_MANY)
            return ms_fail(err, MS_ERR_INVALID, "%s.data: %s", path, bad);
        if (bad || n != t->count)
            return ms_fail(err, MS_ERR_INVALID, "%s: data holds %s%zu values, the shape says %zu",
                           who, bad ? "more than " : "", bad ? t->count : n, t->count);
    }
    if (t->count && !(t->data = malloc(t->count * sizeof *t->data)))
        return ms_fail(err, MS_ERR_NOMEM, "%s: out of memory for %zu values", who, t->count);
    if (bin >= 0) {
        s = binary_values((const unsigned char *)tail + *off, t->count, t->datatype, t->data, who,
                          err);
        *off += (size_t)bin;
        return s;
    }
    size_t k = 0;
    return fill_values(data, t->datatype, t->data, &k, path, err);
}

static MsStatus read_parameters(OipRequest *q, const cJSON *par, MsError *err) {
    static const char *const fields[] = {"steps", "lr", "binary_data_output", NULL};
    if (!par || cJSON_IsNull(par)) return MS_OK;
    MsStatus s = json_fields(par, "parameters", fields, err);
    if (s != MS_OK) return s;
    const cJSON *v;
    if ((v = cJSON_GetObjectItemCaseSensitive(par, "steps"))) {
        long long k;
        if ((s = json_read_int(v, "parameters.steps", 0, 1000, &k, err)) != MS_OK) return s;
        q->steps = (int)k;
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(par, "lr")) &&
        (s = json_read_num(v, "parameters.lr", 0, 1, 10, &q->lr, err)) != MS_OK)
        return s;
    if ((v = cJSON_GetObjectItemCaseSensitive(par, "binary_data_output"))) {
        if (!cJSON_IsBool(v))
            return ms_fail(err, MS_ERR_INVALID, "parameters.binary_data_output: must be a boolean");
        q->binary_output = cJSON_IsTrue(v);
    }
    return MS_OK;
}

static MsStatus read_outputs(OipRequest *q, const cJSON *outs, MsError *err) {
    static const char *const fields[] = {"name", "parameters", NULL};
    static const char *const pfields[] = {"binary_data", NULL};
    if (!outs || cJSON_IsNull(outs)) return MS_OK;
    if (!cJSON_IsArray(outs)) return ms_fail(err, MS_ERR_INVALID, "outputs: must be an array");
    MsStatus s;
    char path[JSON_PATH_LEN], p[JSON_PATH_LEN];
    for (const cJSON *o = outs->child; o; o = o->next) {
        if (q->n_outputs == OIP_MAX_OUTPUTS)
            return ms_fail(err, MS_ERR_INVALID, "outputs: more than %d", OIP_MAX_OUTPUTS);
        OipOutputReq *r = &q->outputs[q->n_outputs];
        json_path_index(path, "outputs", q->n_outputs++);
        if ((s = json_fields(o, path, fields, err)) != MS_OK) return s;
        if ((s = json_read_str(cJSON_GetObjectItemCaseSensitive(o, "name"),
                               json_path_key(p, path, "name"), r->name, sizeof r->name, err)))
            return s;
        for (int i = 0; i < q->n_outputs - 1; i++)
            if (strcmp(q->outputs[i].name, r->name) == 0)
                return ms_fail(err, MS_ERR_INVALID, "%s: output requested twice", p);
        r->binary = -1;
        const cJSON *par = cJSON_GetObjectItemCaseSensitive(o, "parameters");
        if (!par || cJSON_IsNull(par)) continue;
        json_path_key(p, path, "parameters");
        if ((s = json_fields(par, p, pfields, err)) != MS_OK) return s;
        const cJSON *b = cJSON_GetObjectItemCaseSensitive(par, "binary_data");
        if (!b) continue;
        if (!cJSON_IsBool(b))
            return ms_fail(err, MS_ERR_INVALID, "%s.binary_data: must be a boolean", p);
        r->binary = cJSON_IsTrue(b);
    }
    return MS_OK;
}

MsStatus oip_request_parse(OipRequest *q, const char *body, size_t len, size_t header_len,
                           MsError *err) {
    static const char *const fields[] = {"id", "parameters", "inputs", "outputs", NULL};
    memset(q, 0, sizeof *q);
    q->steps = -1;
    if (header_len == OIP_NO_HEADER) header_len = len;
    if (header_len > len)
        return ms_fail(err, MS_ERR_INVALID,
                       "Inference-Header-Content-Length: %zu bytes, the body has only %zu",
                       header_len, len);
    cJSON *doc = NULL;
    MsStatus s = json_parse(&doc, body, header_len, "body", 1, err);
    if (s != MS_OK) return s;
    if ((s = json_fields(doc, "body", fields, err)) != MS_OK) goto done;
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(doc, "id");
    if (id && !cJSON_IsNull(id)) {
        if ((s = json_read_str(id, "id", q->id, sizeof q->id, err)) != MS_OK) goto done;
        q->has_id = 1;
    }
    if ((s = read_parameters(q, cJSON_GetObjectItemCaseSensitive(doc, "parameters"), err)) ||
        (s = read_outputs(q, cJSON_GetObjectItemCaseSensitive(doc, "outputs"), err)))
        goto done;
    const cJSON *ins = cJSON_GetObjectItemCaseSensitive(doc, "inputs");
    if (!cJSON_IsArray(ins) || !ins->child) {
        s = ms_fail(err, MS_ERR_INVALID, "inputs: must be a non-empty array");
        goto done;
    }
    const char *tail = body + header_len;
    size_t tail_len = len - header_len, off = 0;
    char path[JSON_PATH_LEN];
    for (const cJSON *in = ins->child; in; in = in->next) {
        if (q->n_inputs == OIP_MAX_INPUTS) {
            s = ms_fail(err, MS_ERR_INVALID, "inputs: more than %d", OIP_MAX_INPUTS);
            goto done;
        }
        OipTensor *t = &q->inputs[q->n_inputs];
        json_path_index(path, "inputs", q->n_inputs++);
        if ((s = json_need_object(in, path, err)) ||
            (s = read_input(t, in, path, tail, tail_len, &off, err)))
            goto done;
        for (int i = 0; i < q->n_inputs - 1; i++)
            if (strcmp(q->inputs[i].name, t->name) == 0) {
                s = ms_fail(err, MS_ERR_INVALID, "%s.name: input given twice", path);
                goto done;
            }
    }
    if (off != tail_len)
        s = ms_fail(err, MS_ERR_INVALID,
                    "binary data: %zu bytes follow the JSON header, the inputs' binary_data_size "
                    "add up to %zu",
                    tail_len, off);
done:
    cJSON_Delete(doc);
    return s;
}

void oip_request_free(OipRequest *q) {
    for (int i = 0; i < q->n_inputs; i++)
        free(q->inputs[i].data);
    memset(q, 0, sizeof *q);
    q->steps = -1;
}

const OipTensor *oip_input(const OipRequest *q, const char *name) {
    for (int i = 0; i < q->n_inputs; i++)
        if (strcmp(q->inputs[i].name, name) == 0) return &q->inputs[i];
    return NULL;
}

/* ---- response ---- */

static size_t out_count(const OipOutTensor *o) {
    size_t n = 1;
    for (int i = 0; i < o->rank; i++)
        n *= (size_t)o->shape[i];
    return n;
}

// The values of o as a JSON array text "[a,b,...]" (caller frees), FP32 as "%.9g"; NULL when
// out of memory.
static char *values_text(const OipOutTensor *o) {
    size_t n = out_count(o), cap = n * (o->datatype == OIP_FP32 ? 17 : 21) + 3, k = 0;
    char *s = malloc(cap);
    if (!s) return NULL;
    s[k++] = '[';
    for (size_t i = 0; i < n; i++) {
        if (i) s[k++] = ',';
        if (o->datatype == OIP_FP32)
            k += (size_t)snprintf(s + k, cap - k, "%.9g", (double)o->f32[i]);
        else
            k += (size_t)snprintf(s + k, cap - k, "%lld", (long long)o->i64[i]);
    }
    s[k++] = ']';
    s[k] = '\0';
    return s;
}

static void put_le(unsigned char *p, uint64_t v, size_t n) {
    for (size_t i = 0; i < n; i++, v >>= 8)
        p[i] = (unsigned char)(v & 0xff);
}

MsStatus oip_response_print(const char *model_name, const char *model_version, const char *id,
                            const OipOutTensor *outs, int n, char **out, size_t *len,
                            size_t *header_len, MsError *err) {
    *out = NULL;
    *len = *header_len = 0;
    JsonBuild b = {0};
    cJSON *doc = cJSON_CreateObject();
    json_put(&b, doc, "model_name", cJSON_CreateString(model_name));
    json_put(&b, doc, "model_version", cJSON_CreateString(model_version));
    if (id) json_put(&b, doc, "id", cJSON_CreateString(id));
    cJSON *list = json_put(&b, doc, "outputs", cJSON_CreateArray());
    size_t bin_bytes = 0;
    int any_binary = 0;
    for (int i = 0; i < n && !b.oom; i++) {
        const OipOutTensor *o = &outs[i];
        cJSON *t = json_put(&b, list, NULL, cJSON_CreateObject());
        json_put(&b, t, "name", cJSON_CreateString(o->name));
        json_put(&b, t, "datatype", cJSON_CreateString(oip_datatype_name(o->datatype)));
        cJSON *shape = json_put(&b, t, "shape", cJSON_CreateArray());
        for (int d = 0; d < o->rank; d++)
            json_put(&b, shape, NULL, json_integer(o->shape[d]));
        size_t bytes = out_count(o) * oip_datatype_size(o->datatype);
        if (o->binary) {
            any_binary = 1;
            bin_bytes += bytes;
            cJSON *par = json_put(&b, t, "parameters", cJSON_CreateObject());
            json_put(&b, par, "binary_data_size", json_uinteger(bytes));
        } else {
            char *v = values_text(o);
            json_put(&b, t, "data", v ? cJSON_CreateRaw(v) : NULL);
            free(v);
        }
    }
    char *text = NULL;
    MsStatus s = json_finish(&b, doc, 0, &text, err);
    if (s != MS_OK) return s;
    size_t tl = strlen(text);
    if (!any_binary) {
        *out = text;
        *len = tl;
        return MS_OK;
    }
    char *buf = realloc(text, tl + bin_bytes + 1);
    if (!buf) {
        free(text);
        return ms_fail(err, MS_ERR_NOMEM, "out of memory for %zu bytes of output", bin_bytes);
    }
    unsigned char *p = (unsigned char *)buf + tl;
    for (int i = 0; i < n; i++) {
        const OipOutTensor *o = &outs[i];
        if (!o->binary) continue;
        size_t c = out_count(o);
        for (size_t k = 0; k < c; k++) {
            if (o->datatype == OIP_FP32) {
                uint32_t u;
                memcpy(&u, &o->f32[k], 4);
                put_le(p, u, 4), p += 4;
            } else {
                put_le(p, (uint64_t)o->i64[k], 8), p += 8;
            }
        }
    }
    buf[tl + bin_bytes] = '\0';
    *out = buf;
    *len = tl + bin_bytes;
    *header_len = tl;
    return MS_OK;
}
