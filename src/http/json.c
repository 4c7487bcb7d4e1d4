/*
 * Request-body readers for the handlers: thin wrappers over the codec area's strict readers
 * (codec/json.h) that turn a codec error into the problem reply (422 naming the field, 413 for a
 * limit, 503 out of memory) and return 0, so handlers read a body in a few lines and never see a
 * bad value. Also the JSON syntax recogniser that names the first offending byte of a body, and
 * the time stamps of replies.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "http.h"

// 1 when st is MS_OK; else replies with err's problem and returns 0.
static int ok_or_reply(Req *r, MsStatus st, const MsError *err) {
    if (st == MS_OK) return 1;
    reply_status(r, st, err);
    return 0;
}

int body_fields(Req *r, const cJSON *obj, const char *path, const char *const *allowed) {
    MsError err = {0};
    return ok_or_reply(r, json_fields(obj, path, allowed, &err), &err);
}

// The value of key in obj; NULL (after replying 422 when required) when absent or null.
static const cJSON *member(Req *r, const cJSON *obj, const char *key, int required) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (it && !cJSON_IsNull(it)) return it;
    if (required) reply_problem(r, 422, "validation", "%s: is required", key);
    return NULL;
}

int body_number(Req *r, const cJSON *obj, const char *key, double lo, int lo_open, double hi,
                int required, double *out) {
    MsError err = {0};
    const cJSON *it = member(r, obj, key, required);
    if (!it) return !required;
    return ok_or_reply(r, json_read_num(it, key, lo, lo_open, hi, out, &err), &err);
}

int body_int(Req *r, const cJSON *obj, const char *key, long long lo, long long hi, int required,
             long long *out) {
    MsError err = {0};
    const cJSON *it = member(r, obj, key, required);
    if (!it) return !required;
    return ok_or_reply(r, json_read_int(it, key, lo, hi, out, &err), &err);
}

int body_string(Req *r, const cJSON *obj, const char *key, size_t max, int required, char *out) {
    MsError err = {0};
    const cJSON *it = member(r, obj, key, required);
    if (!it) return !required;
    return ok_or_reply(r, json_read_str(it, key, out, max, &err), &err);
}

float *body_matrix(Req *r, const cJSON *arr, const char *path, int cols, int max_rows, int *rows,
                   int *cols_out) {
    MsError err = {0};
    float *m = NULL;
    ok_or_reply(r, json_read_floats(&m, arr, path, cols, max_rows, rows, cols_out, &err), &err);
    return m;
}

/* ---- syntax-error position ---- */

// A strict JSON (RFC 8259) recogniser that req_json runs on every body before cJSON sees it, to
// name the first offending byte exactly (cJSON's parse end can lie one byte past it) and so that
// cJSON's failure path (not thread-safe) is never taken. Returns 1 on success with *p past the
// value, 0 with *p at the first bad byte.
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

/* ---- time stamps ---- */

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

const char *metrics_val_key(const char *val_metric) {
    return val_metric && strcmp(val_metric, "accuracy") == 0 ? "val_accuracy" : "val_mse";
}

int metrics_compat(cJSON *m) {
    if (!cJSON_IsObject(m)) return 1;
    cJSON *old = cJSON_GetObjectItemCaseSensitive(m, "val_loss");
    if (!old) return 1;
    const cJSON *kind = cJSON_GetObjectItemCaseSensitive(m, "val_metric");
    const char *key = metrics_val_key(cJSON_IsString(kind) ? kind->valuestring : NULL);
    if (!cJSON_GetObjectItemCaseSensitive(m, key)) {
        cJSON *v = cJSON_Duplicate(old, 0);
        if (!v || !cJSON_AddItemToObject(m, key, v)) {
            cJSON_Delete(v);
            return 0;
        }
    }
    cJSON_DeleteItemFromObjectCaseSensitive(m, "val_loss");
    cJSON_DeleteItemFromObjectCaseSensitive(m, "val_metric");
    return 1;
}
