/*
 * safetensors, the tensor file format of the PyTorch / Hugging Face world: a bounded, validating
 * parser and a writer. Built once (no `real`), beside the JSON layer.
 *
 * Layout (https://github.com/huggingface/safetensors, "Format"):
 *     8 bytes   N, little-endian uint64: the length of the header
 *     N bytes   a UTF-8 JSON object: {"<tensor name>": {"dtype": "F32", "shape": [2, 3],
 *               "data_offsets": [begin, end]}, ..., "__metadata__": {"key": "string", ...}}
 *     rest      the byte buffer; offsets are relative to its start, little-endian elements,
 *               row-major. Every byte of the buffer belongs to exactly one tensor.
 *
 * The parser trusts nothing: N must fit the file and ST_MAX_HEADER_BYTES, the header must be one
 * JSON object whose values are tensor descriptions (exactly dtype, shape, data_offsets) or the
 * `__metadata__` string map; each tensor's byte length must equal prod(shape) x dtype size; the
 * offsets must lie inside the buffer and, sorted, tile it without gap or overlap. Errors are
 * MS_ERR_INVALID with a message that names the tensor (`tensor "0.weight": ...`) or the header
 * part at fault; nothing is allocated from a size the file claims before it is checked against
 * the file's length. The data stays where it is: tensors point into the caller's buffer.
 *
 * Usage:
 *     StFile f;
 *     if (st_parse(&f, body, len, &err) != MS_OK) reply_422(err.msg);
 *     const StTensor *w = st_find(&f, "0.weight");
 *     if (st_expect(w, "0.weight", 2, (int64_t[]){40, 1}, &err) != MS_OK) ...;
 *     st_read_f32(&f, w, dst, &err); // converted from F64/F16/BF16, every value finite
 *     st_free(&f);
 */
#ifndef METASERVE_CODEC_SAFETENSORS_H
#define METASERVE_CODEC_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "metaserve/core/status.h"

#define ST_MAX_HEADER_BYTES ((size_t)100 << 20) // the reference implementation's limit
#define ST_MAX_RANK         8
#define ST_MAX_NAME         256 // bytes of a tensor name, NUL included
#define ST_MAX_TENSORS      4096

typedef enum {
    ST_F32,
    ST_F64,
    ST_F16,
    ST_BF16,
    ST_I64,
    ST_I32,
    ST_I16,
    ST_I8,
    ST_U8,
    ST_BOOL,
} StDtype;

/** One tensor of a parsed file; data points into the caller's buffer (borrowed). */
typedef struct {
    char name[ST_MAX_NAME];
    StDtype dtype;
    int rank;                   // 0..ST_MAX_RANK
    int64_t shape[ST_MAX_RANK]; // each >= 0
    size_t n;                   // elements: prod(shape)
    size_t begin, end;          // byte offsets in the data buffer
    const unsigned char *data;  // buffer + begin (end - begin bytes, unaligned in general)
} StTensor;

/** A parsed file: tensors in header order, the metadata map. Release with st_free. */
typedef struct {
    StTensor *t; // n_t entries (malloc'd)
    int n_t;
    char **meta; // 2 * n_meta strings: key, value, key, value ... (malloc'd)
    int n_meta;
    size_t data_off; // 8 + N: where the data buffer starts in the file
    size_t data_len;
} StFile;

/** Name of a dtype as the format spells it ("F32"). */
const char *st_dtype_name(StDtype d);
/** Bytes of one element. */
size_t st_dtype_size(StDtype d);

/**
 * Parses and validates buf[0..len) (see the file comment); *f receives the tensors, which point
 * into buf (borrowed until buf is freed or changed). MS_ERR_INVALID naming the tensor or the part
 * of the header at fault; MS_ERR_NOMEM. On failure *f is zeroed (st_free is still allowed).
 */
MsStatus st_parse(StFile *f, const void *buf, size_t len, MsError *err);
/** Releases what st_parse allocated; accepts NULL and a zeroed struct. */
void st_free(StFile *f);
/** The tensor called name, or NULL. */
const StTensor *st_find(const StFile *f, const char *name);
/** The metadata value of key, or NULL. */
const char *st_meta(const StFile *f, const char *key);

/**
 * Checks that t (the tensor `name`; NULL when absent) has the given rank and shape, and a float
 * dtype (F32, F64, F16 or BF16). MS_ERR_INVALID: `tensor "name": is missing`, `... has shape
 * [3, 2], expected [2, 3]`, `... dtype I64 is not supported here (F32, F64, F16, BF16)`.
 */
MsStatus st_expect(const StTensor *t, const char *name, int rank, const int64_t *shape,
                   MsError *err);

/**
 * Converts t's t->n elements (float dtype) to float into dst and checks each is finite:
 * MS_ERR_INVALID `tensor "name": element i is not a finite number` (also for an F64 value
 * outside float's range). dst may alias t->data exactly when t is F32 (in-place byte-order fix).
 */
MsStatus st_read_f32(const StTensor *t, float *dst, MsError *err);

/**
 * Reads an integer tensor (I64, I32, I16, I8, U8) of t->n elements into int32 dst, each in
 * [lo, hi]: MS_ERR_INVALID `tensor "name": element i is outside lo..hi`, or naming a non-integer
 * dtype.
 */
MsStatus st_read_i32(const StTensor *t, int32_t *dst, int32_t lo, int32_t hi, MsError *err);

/** One tensor to write: F32 data of prod(shape) floats (host order; written little-endian). */
typedef struct {
    const char *name;
    int rank;
    int64_t shape[ST_MAX_RANK];
    const float *data;
} StOut;

/**
 * Writes a safetensors file of n F32 tensors (in the given order, contiguous) and n_meta
 * metadata pairs (meta[2i] key, meta[2i+1] value) into *out (malloc'd; caller frees), *len its
 * length. The header is padded with spaces to a multiple of 8 bytes so the data is aligned.
 * MS_ERR_NOMEM, MS_ERR_INVALID for a duplicate or over-long name.
 */
MsStatus st_write(void **out, size_t *len, const StOut *t, int n, const char *const *meta,
                  int n_meta, MsError *err);

#endif
