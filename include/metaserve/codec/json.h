/*
 * The JSON reading and building layer of the codec area: one family of strict field readers that
 * return MsStatus, and one tree builder. codec.h's wire formats are written with it, and the HTTP
 * handlers read request bodies with it (http/ only turns an MsError into a problem reply). Only
 * codec/ and http/ include this header, as only they include cJSON.h.
 *
 * Readers: each takes the JSON value (NULL when absent), the value's path for messages ("outer.lr",
 * "support.x[3]") and an optional MsError. Every failure is MS_ERR_INVALID with the path first
 * ("inner.steps: must be an integer in 0..100"), except json_parse's size limit (MS_ERR_TOO_LARGE)
 * and syntax errors (MS_ERR_INVALID with MS_DETAIL_SYNTAX), a matrix over its row limit
 * (MS_ERR_TOO_LARGE) and allocation failure (MS_ERR_NOMEM). User text echoed in a message (an
 * unknown key) is reduced to printable ASCII and truncated to JSON_ECHO_LEN characters.
 *
 * Builder: a JsonBuild records any failed allocation in one flag, so a document is built without
 * a check per node and checked once (json_finish, or the caller). Numbers are raw text formatted
 * here, so the digits are ours, not cJSON's.
 *
 * This layer holds no `real`: it is built once and shared by the float and double codecs.
 */
#ifndef METASERVE_CODEC_JSON_H
#define METASERVE_CODEC_JSON_H

#include <cJSON.h>
#include <stddef.h>

#include "metaserve/core/status.h"

#define JSON_PATH_LEN       160                 // bytes of a JSON path in a message
#define JSON_ECHO_LEN       40                  // characters of user text echoed in a message
#define JSON_MAX_BODY_BYTES ((size_t)256 << 20) // largest document json_parse accepts

/* ---- paths and messages ---- */

/** Writes "parent.key" (or "key" when parent is "") into dst (JSON_PATH_LEN bytes); returns dst.
 *  A path cut at JSON_PATH_LEN ends in "...". */
const char *json_path_key(char *dst, const char *parent, const char *key);
/** Writes "parent[i]" into dst (JSON_PATH_LEN bytes); returns dst. */
const char *json_path_index(char *dst, const char *parent, int i);
/** Copies user text into dst (JSON_ECHO_LEN + 4 bytes) as printable ASCII, truncated with "...";
 *  returns dst. */
const char *json_echo(char *dst, const char *src);

/* ---- parsing and readers ---- */

/**
 * Parses body[0..len) (need not be NUL-terminated) into *root, which the caller deletes with
 * cJSON_Delete. what names the document in messages ("body"); with want_object the root must be
 * an object. Only JSON whitespace may follow the value. MS_ERR_TOO_LARGE over
 * JSON_MAX_BODY_BYTES, MS_ERR_INVALID + MS_DETAIL_SYNTAX with the byte offset, MS_ERR_NOMEM.
 */
MsStatus json_parse(cJSON **root, const char *body, size_t len, const char *what, int want_object,
                    MsError *err);
/** MS_OK when it is an object, else "path: must be an object". */
MsStatus json_need_object(const cJSON *it, const char *path, MsError *err);
/** Checks that obj is an object whose keys are all in known (NULL-terminated), each at most once
 *  (cJSON keeps duplicates and the first would silently win): "path.key: unknown field" or
 *  "path.key: duplicate field". O(keys x known). */
MsStatus json_fields(const cJSON *obj, const char *path, const char *const *known, MsError *err);
/** An integer in lo..hi into *out. */
MsStatus json_read_int(const cJSON *it, const char *path, long long lo, long long hi,
                       long long *out, MsError *err);
/** json_read_int into an int (lo and hi within int range). */
MsStatus json_read_small(const cJSON *it, const char *path, int lo, int hi, int *out, MsError *err);
/** A finite number in (lo, hi] when lo_open, else [lo, hi], into *out. */
MsStatus json_read_num(const cJSON *it, const char *path, double lo, int lo_open, double hi,
                       double *out, MsError *err);
/** A string of 1..cap-1 bytes copied into dst (cap bytes). */
MsStatus json_read_str(const cJSON *it, const char *path, char *dst, size_t cap, MsError *err);
/**
 * A matrix [[...], ...] of numbers finite in float, with exactly cols columns (cols > 0) or any
 * consistent width (cols = 0; the width goes to *cols_out when not NULL), 1..max_rows rows, into
 * a new float array *out (caller frees; NULL on failure). MS_ERR_INVALID naming "path[i][j]",
 * MS_ERR_TOO_LARGE over max_rows (checked before allocating), MS_ERR_NOMEM.
 */
MsStatus json_read_floats(float **out, const cJSON *arr, const char *path, int cols, int max_rows,
                          int *rows, int *cols_out, MsError *err);

/* ---- building ---- */

/** A document under construction: any failed allocation sets oom. */
typedef struct {
    int oom;
} JsonBuild;

/** Adds item to parent under key (appends when key is NULL) and returns it; NULL with oom set
 *  (item deleted) when item or parent is NULL or the addition fails. */
cJSON *json_put(JsonBuild *b, cJSON *parent, const char *key, cJSON *item);
/** A double with the fewest significant digits (15..17) that read back as the same value; null
 *  when not finite. */
cJSON *json_num(double v);
/** A number printed with printf format fmt ("%.9g", "%.17g"); null when not finite. */
cJSON *json_num_fmt(double v, const char *fmt);
/** v as cJSON prints a number ("%1.15g", or "%1.17g" when that does not read back within
 *  DBL_EPSILON; an int-valued v as "%d"; "null" when not finite) into out; returns out. */
const char *json_num_text(char out[32], double v);
/** An integer, as raw text. */
cJSON *json_integer(long long v);
/** An unsigned integer, as raw text. */
cJSON *json_uinteger(unsigned long long v);
/** rows x cols floats as JSON text "[[a,b],[c,d]]", each "%.9g" (round-trips a float); caller
 *  frees; NULL when out of memory. Every value must be finite. */
char *json_floats_text(const float *m, int rows, int cols);
/** The argmax of each of rows rows of cols scores as JSON text "[2,0,...]"; caller frees; NULL
 *  when out of memory. */
char *json_argmax_text(const float *p, int rows, int cols);
/** Prints root (pretty or on one line; takes ownership of root) into *out, which the caller frees
 *  with free(). MS_ERR_NOMEM when b->oom is set, root is NULL or printing fails. */
MsStatus json_finish(JsonBuild *b, cJSON *root, int pretty, char **out, MsError *err);

#endif
