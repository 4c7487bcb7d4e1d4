/*
 * The Open Inference Protocol codec (KServe V2 / Triton REST): the inference request
 * {"id", "parameters", "inputs": [{"name", "shape", "datatype", "data", "parameters"}],
 * "outputs": [{"name", "parameters"}]} read into float tensors, with the binary tensor data
 * extension (raw little-endian tensors after a JSON header of Inference-Header-Content-Length
 * bytes), and the inference response printed as JSON or as a JSON header plus binary tensors.
 *
 * The parser knows nothing of models: it checks the protocol's own rules (known fields, each
 * once; a known datatype this service reads; shape dimensions >= 0 whose product neither
 * overflows nor passes OIP_MAX_ELEMENTS; exactly product(shape) values, flat row-major or nested,
 * each of the datatype's range and finite in float; binary_data_size equal to product(shape) x the
 * element size; the binary inputs using exactly the bytes after the header). Which inputs a
 * model takes, and their widths, are the handler's to check. Every failure is MS_ERR_INVALID
 * naming the input and field first ("inputs[0].shape: ...", "input 'x': ..."); MS_ERR_NOMEM.
 *
 * Values of every numeric datatype are converted to float (FP64 rounded, integers exact up to
 * 2^24): the service computes in float. Sizes are bounded by the body: a JSON value takes at
 * least one byte, a binary one its element size, so nothing here allocates more than a small
 * multiple of the body's length.
 *
 * Usage:
 *     OipRequest q;
 *     if (oip_request_parse(&q, body, len, header_len, &err) != MS_OK) reply_400(err.msg);
 *     const OipTensor *x = oip_input(&q, "x"); ...
 *     oip_request_free(&q);
 */
#ifndef METASERVE_CODEC_OIP_H
#define METASERVE_CODEC_OIP_H

#include <stddef.h>
#include <stdint.h>

#include "metaserve/core/status.h"

#define OIP_MAX_RANK     8                  // dimensions of a tensor's shape
#define OIP_MAX_INPUTS   8                  // inputs of one request
#define OIP_MAX_OUTPUTS  8                  // requested outputs of one request
#define OIP_NAME_MAX     64                 // bytes of a tensor name, NUL included
#define OIP_ID_MAX       256                // bytes of a request id, NUL included
#define OIP_MAX_ELEMENTS ((int64_t)1 << 28) // values of one tensor (shape product)
#define OIP_NO_HEADER    ((size_t)-1)       // header_len when the whole body is JSON

/** The protocol's tensor datatypes (all of them, so that an unsupported one is named as such). */
typedef enum {
    OIP_BOOL,
    OIP_UINT8,
    OIP_UINT16,
    OIP_UINT32,
    OIP_UINT64,
    OIP_INT8,
    OIP_INT16,
    OIP_INT32,
    OIP_INT64,
    OIP_FP16,
    OIP_FP32,
    OIP_FP64,
    OIP_BYTES,
    OIP_BF16,
} OipDatatype;

/** One input tensor, its values converted to float. */
typedef struct {
    char name[OIP_NAME_MAX];
    OipDatatype datatype;
    int rank;                    // 0..OIP_MAX_RANK
    int64_t shape[OIP_MAX_RANK]; // each >= 0
    size_t count;                // product of shape
    float *data;                 // count floats, row-major; owned (NULL when count is 0)
} OipTensor;

/** One requested output. */
typedef struct {
    char name[OIP_NAME_MAX];
    int binary; // 1: binary_data true, 0: false, -1: not said (binary_data_output decides)
} OipOutputReq;

/** An inference request. */
typedef struct {
    char id[OIP_ID_MAX]; // "" when absent
    int has_id;
    int steps;         // parameters.steps: 0..1000 (the handler applies its limit); -1 absent
    double lr;         // parameters.lr: > 0; 0 when absent
    int binary_output; // parameters.binary_data_output (0 when absent)
    int n_inputs;
    OipTensor inputs[OIP_MAX_INPUTS];
    int n_outputs; // 0: every output of the model
    OipOutputReq outputs[OIP_MAX_OUTPUTS];
} OipRequest;

/** The datatype's protocol name ("FP32"). */
const char *oip_datatype_name(OipDatatype t);
/** Bytes of one element in the binary format (0 for BYTES). */
size_t oip_datatype_size(OipDatatype t);

/**
 * Parses the request body[0..len): the JSON header is body[0..header_len) (the whole body when
 * header_len is OIP_NO_HEADER, the Inference-Header-Content-Length header being absent), binary
 * tensors follow it in the order of the inputs that say binary_data_size. q is released with
 * oip_request_free, also on failure. MS_ERR_INVALID (MS_DETAIL_SYNTAX for JSON syntax) naming the
 * field, MS_ERR_NOMEM.
 */
MsStatus oip_request_parse(OipRequest *q, const char *body, size_t len, size_t header_len,
                           MsError *err);
/** Frees the tensors of q and zeroes it; accepts a zeroed struct. */
void oip_request_free(OipRequest *q);
/** The input called name, or NULL. */
const OipTensor *oip_input(const OipRequest *q, const char *name);

/** One output tensor of a response (rank 1 or 2). */
typedef struct {
    const char *name;
    OipDatatype datatype; // OIP_FP32 (f32) or OIP_INT64 (i64)
    int rank;
    int64_t shape[2];
    const float *f32;   // count values when FP32
    const int64_t *i64; // count values when INT64
    int binary;         // 1: raw bytes after the header, 0: JSON "data"
} OipOutTensor;

/**
 * Prints the response {"model_name", "model_version", "id" (when id is not NULL), "outputs":
 * [{"name", "datatype", "shape", "data" | "parameters": {"binary_data_size"}}]} into *out
 * (caller frees), *len bytes: the JSON (FP32 as "%.9g", which reads back to the same float),
 * then the raw little-endian bytes of each binary output in order. *header_len is the JSON's
 * length when any output is binary, else 0. Every FP32 value must be finite. MS_ERR_NOMEM.
 */
MsStatus oip_response_print(const char *model_name, const char *model_version, const char *id,
                            const OipOutTensor *outs, int n, char **out, size_t *len,
                            size_t *header_len, MsError *err);

#endif
