/*
 * Strict JSON field readers for request bodies: each checks type and range, rejects non-finite
 * numbers, and on failure replies 422 (or 413 for a size limit) with the field's path, so
 * handlers read a body in a few lines and never see a bad value. User text echoed in messages is
 * never included (only paths and limits), so a hostile key cannot shape the reply.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "http.h"

int json_only_fields(Req *r, const cJSON *obj, const char *path, const char *const *allowed) {
    if (!cJSON_IsObject(obj)) {
        reply_problem(r, 422, "validation", "%s: must be an object", path);
        return 0;
    }
    for (const cJSON *it = obj->child; it; it = it->next) {
        int ok = 0;
        for (const char *const *a = allowed; *a && !ok; a++)
            ok = it->string && strcmp(it->string, *a) == 0;
        if (!ok) {
            // name the field only when it is short printable ASCII
            int printable = it->string && strlen(it->string) < 64;
            for (const char *c = it->string; printable && *c; c++)
                printable = *c >= 0x20 && *c < 0x7f && *c != '"' && *c != '\\';
            if (printable)
                reply_problem(r, 422, "validation", "%s.%s: unknown field", path, it->string);
            else
                reply_problem(r, 422, "validation", "%s: unknown field", path);
            return 0;
        }
    }
    return 1;
}

int json_number(Req *r, const cJSON *obj, const char *key, double lo, double hi, int required,
                double *out) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!it || cJSON_IsNull(it)) {
        if (required) reply_problem(r, 422, "validation", "%s: is required", key);
        return !required;
    }
    if (!cJSON_IsNumber(it) || !isfinite(it->valuedouble) || it->valuedouble < lo ||
        it->valuedouble > hi) {
        reply_problem(r, 422, "validation", "%s: must be a number in [%g, %g]", key, lo, hi);
        return 0;
    }
    *out = it->valuedouble;
    return 1;
}

int json_int(Req *r, const cJSON *obj, const char *key, long long lo, long long hi, int required,
             long long *out) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!it || cJSON_IsNull(it)) {
        if (required) reply_problem(r, 422, "validation", "%s: is required", key);
        return !required;
    }
    double v = cJSON_IsNumber(it) ? it->valuedouble : NAN;
    if (!isfinite(v) || v != floor(v) || v < (double)lo || v > (double)hi) {
        reply_problem(r, 422, "validation", "%s: must be an integer in %lld..%lld", key, lo, hi);
        return 0;
    }
    *out = (long long)v;
    return 1;
}

int json_string(Req *r, const cJSON *obj, const char *key, size_t max, int required, char *out) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!it || cJSON_IsNull(it)) {
        if (required) reply_problem(r, 422, "validation", "%s: is required", key);
        return !required;
    }
    size_t n = cJSON_IsString(it) ? strlen(it->valuestring) : 0;
    if (!cJSON_IsString(it) || n == 0 || n >= max) {
        reply_problem(r, 422, "validation", "%s: must be a string of 1..%zu characters", key,
                      max - 1);
        return 0;
    }
    memcpy(out, it->valuestring, n + 1);
    return 1;
}

float *json_matrix(Req *r, const cJSON *arr, const char *path, int cols, int max_rows, int *rows,
                   int *cols_out) {
    if (!cJSON_IsArray(arr)) {
        reply_problem(r, 422, "validation", "%s: must be an array of rows", path);
        return NULL;
    }
    int n = cJSON_GetArraySize(arr);
    if (n < 1) {
        reply_problem(r, 422, "validation", "%s: needs at least one row", path);
        return NULL;
    }
    if (n > max_rows) {
        reply_problem(r, 413, "payload-too-large", "%s: %d rows, the limit is %d", path, n,
                      max_rows);
        return NULL;
    }
    const cJSON *first = arr->child;
    int w = cols > 0 ? cols : cJSON_GetArraySize(first);
    if (!cJSON_IsArray(first) || w < 1) {
        reply_problem(r, 422, "validation", "%s[0]: must be a non-empty array of numbers", path);
        return NULL;
    }
    // The loop below stops at the first row of another shape, so only the rows before it need
    // room: sizing by n x w instead would let a first row of w numbers followed by n empty rows
    // (a few bytes each) ask for n x w floats.
    int fit = 0;
    for (const cJSON *row = first; row && cJSON_IsArray(row) && cJSON_GetArraySize(row) == w;
         row = row->next)
        fit++;
    float *m = malloc((size_t)(fit > 0 ? fit : 1) * (size_t)w * sizeof(float));
    if (!m) {
        reply_problem(r, 503, "unavailable", "out of memory");
        return NULL;
    }
    int i = 0;
    for (const cJSON *row = arr->child; row; row = row->next, i++) {
        if (!cJSON_IsArray(row) || cJSON_GetArraySize(row) != w) {
            reply_problem(r, 422, "validation", "%s[%d]: must be an array of %d numbers", path, i,
                          w);
            free(m);
            return NULL;
        }
        int j = 0;
        for (const cJSON *v = row->child; v; v = v->next, j++) {
            // finite in double and in float: 1e39 would become infinity in the model
            if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || fabs(v->valuedouble) > 3e38) {
                reply_problem(r, 422, "validation", "%s[%d][%d]: must be a finite number", path, i,
                              j);
                free(m);
                return NULL;
            }
            m[(size_t)i * w + j] = (float)v->valuedouble;
        }
    }
    *rows = n;
    if (cols_out) *cols_out = w;
    return m;
}

/* ---- syntax-error position ---- */

// A strict JSON (RFC 8259) recogniser used only after cJSON refused a body, to name the first
// offending byte exactly (cJSON's parse end can lie one byte past it). Returns 1 on success with
// *p past the value, 0 with *p at the first bad byte.
typedef struct {
    const char *s, *end;
    const char *p;
    int depth;
} Scan;

static void ws(Scan *c) {
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r'))
        c->p++;
}

static int lit(Scan *c, const char *w) {
    size_t n = strlen(w);
    for (size_t i = 0; i < n; i++, c->p++)
        if (c->p >= c->end || *c->p != w[i]) return 0;
    return 1;
}

static int digits(Scan *c) {
    const char *q = c->p;
    while (c->p < c->end && *c->p >= '0' && *c->p <= '9')
        c->p++;
    return c->p > q;
}

static int number(Scan *c) {
    if (c->p < c->end && *c->p == '-') c->p++;
    if (c->p < c->end && *c->p == '0')
        c->p++;
    else if (!digits(c))
        return 0;
    if (c->p < c->end && *c->p == '.') {
        c->p++;
        if (!digits(c)) return 0;
    }
    if (c->p < c->end && (*c->p == 'e' || *c->p == 'E')) {
        c->p++;
        if (c->p < c->end && (*c->p == '+' || *c->p == '-')) c->p++;
        if (!digits(c)) return 0;
    }
    return 1;
}

// Length of the well-formed UTF-8 sequence at p (RFC 3629: no overlong forms, no surrogates,
// nothing above U+10FFFF), or 0 when it is not one.
static size_t utf8_len(const unsigned char *p, const unsigned char *end) {
    size_t n;
    unsigned lo = 0x80, hi = 0xBF; // range of the second byte
    if (p[0] >= 0xC2 && p[0] <= 0xDF)
        n = 2;
    else if (p[0] >= 0xE0 && p[0] <= 0xEF)
        n = 3, lo = p[0] == 0xE0 ? 0xA0 : 0x80, hi = p[0] == 0xED ? 0x9F : 0xBF;
    else if (p[0] >= 0xF0 && p[0] <= 0xF4)
        n = 4, lo = p[0] == 0xF0 ? 0x90 : 0x80, hi = p[0] == 0xF4 ? 0x8F : 0xBF;
    else
        return 0;
    if ((size_t)(end - p) < n || p[1] < lo || p[1] > hi) return 0;
    for (size_t i = 2; i < n; i++)
        if (p[i] < 0x80 || p[i] > 0xBF) return 0;
    return n;
}

int hex_digit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

// The value of the 4 hex digits after *c->p (the 'u'), leaving c->p on the last; 0 with c->p at
// the first byte that is not one.
static int hex4(Scan *c, unsigned *code) {
    *code = 0;
    for (int i = 0; i < 4; i++) {
        c->p++;
        int v = c->p < c->end ? hex_digit(*c->p) : -1;
        if (v < 0) return 0;
        *code = *code * 16 + (unsigned)v;
    }
    return 1;
}

static int string(Scan *c) {
    c->p++; // opening quote
    while (c->p < c->end) {
        unsigned char ch = (unsigned char)*c->p;
        if (ch == '"') {
            c->p++;
            return 1;
        }
        if (ch < 0x20) return 0;
        if (ch >= 0x80) {
            // JSON text is UTF-8 (RFC 8259 §8.1): a stray or truncated byte is a syntax error
            size_t k = utf8_len((const unsigned char *)c->p, (const unsigned char *)c->end);
            if (!k) return 0;
            c->p += k;
            continue;
        }
        if (ch == '\\') {
            const char *esc = c->p++;
            if (c->p >= c->end) return 0;
            if (*c->p == 'u') {
                // a UTF-16 surrogate must be a high one followed by a low one: cJSON refuses a
                // lone one, so the escape that starts it is the offending byte
                unsigned code, low;
                if (!hex4(c, &code)) return 0;
                if (code >= 0xDC00 && code <= 0xDFFF) {
                    c->p = esc;
                    return 0;
                }
                if (code >= 0xD800 && code <= 0xDBFF) {
                    if (c->end - c->p < 3 || c->p[1] != '\\' || c->p[2] != 'u') {
                        c->p = esc;
                        return 0;
                    }
                    c->p += 2;
                    if (!hex4(c, &low)) return 0;
                    if (low < 0xDC00 || low > 0xDFFF) {
                        c->p = esc;
                        return 0;
                    }
                }
            } else if (*c->p == '\0' || !strchr("\"\\/bfnrt", *c->p)) {
                return 0; // (strchr alone would match a NUL byte: its set's terminator)
            }
        }
        c->p++;
    }
    return 0;
}

static int value(Scan *c) {
    ws(c);
    if (c->p >= c->end || ++c->depth > 1000) return 0;
    int ok;
    switch (*c->p) {
    case '{':
        c->p++, ws(c);
        if (c->p < c->end && *c->p == '}') {
            c->p++;
            ok = 1;
            break;
        }
        for (ok = 0;;) {
            ws(c);
            if (c->p >= c->end || *c->p != '"' || !string(c)) break;
            ws(c);
            if (c->p >= c->end || *c->p != ':') break;
            c->p++;
            if (!value(c)) break;
            ws(c);
            if (c->p < c->end && *c->p == ',') {
                c->p++;
                continue;
            }
            if (c->p < c->end && *c->p == '}') c->p++, ok = 1;
            break;
        }
        break;
    case '[':
        c->p++, ws(c);
        if (c->p < c->end && *c->p == ']') {
            c->p++;
            ok = 1;
            break;
        }
        for (ok = 0;;) {
            if (!value(c)) break;
            ws(c);
            if (c->p < c->end && *c->p == ',') {
                c->p++;
                continue;
            }
            if (c->p < c->end && *c->p == ']') c->p++, ok = 1;
            break;
        }
        break;
    case '"':
        ok = string(c);
        break;
    case 't':
        ok = lit(c, "true");
        break;
    case 'f':
        ok = lit(c, "false");
        break;
    case 'n':
        ok = lit(c, "null");
        break;
    default:
        ok = number(c);
        break;
    }
    c->depth--;
    return ok;
}

int json_syntax(const char *s, size_t n, size_t *off) {
    Scan c = {s, s + n, s, 0};
    if (value(&c)) {
        ws(&c);
        if (c.p == c.end) {
            *off = n;
            return 1;
        }
    }
    *off = (size_t)(c.p - s); // n when the text ends too early
    return 0;
}

size_t json_nul_escape(const char *s, size_t n) {
    int in = 0; // inside a string
    for (size_t i = 0; i < n; i++) {
        if (!in) {
            in = s[i] == '"';
        } else if (s[i] == '"') {
            in = 0;
        } else if (s[i] == '\\') {
            if (n - i >= 6 && memcmp(s + i + 1, "u0000", 5) == 0) return i;
            i++; // the escaped character (of a \uXXXX, the rest is plain text)
        }
    }
    return n;
}

cJSON *json_parse_stored(const char *text, int *oom) {
    *oom = 0;
    if (!text) return NULL;
    size_t n = strlen(text), off;
    cJSON *doc = cJSON_ParseWithLength(text, n);
    if (!doc) *oom = json_syntax(text, n, &off);
    return doc;
}

/* ---- building replies ---- */

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

int json_time_text(char out[32], int64_t ms) {
    int64_t sec = ms / 1000, rem = ms % 1000;
    if (rem < 0) sec -= 1, rem += 1000;
    time_t t = (time_t)sec;
    struct tm tm;
    if ((int64_t)t != sec || !gmtime_r(&t, &tm)) return 0;
    size_t n = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
    if (n == 0 || n > 24) return 0;
    snprintf(out + n, 32 - n, ".%03dZ", (int)rem);
    return 1;
}

cJSON *json_time(int64_t ms) {
    char buf[32];
    return ms > 0 && json_time_text(buf, ms) ? cJSON_CreateString(buf) : cJSON_CreateNull();
}

int json_add_time(cJSON *o, const char *key, int64_t ms) {
    cJSON *t = json_time(ms);
    if (t && cJSON_AddItemToObject(o, key, t)) return 1;
    cJSON_Delete(t);
    return 0;
}
