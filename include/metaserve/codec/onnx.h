/*
 * ONNX export of a model version or an adaptation: one MLP as an ONNX ModelProto, encoded with
 * protobuf-c over the onnx.proto that Debian's libonnx-dev ships (the build generates the C
 * bindings from it; nothing here writes protobuf bytes by hand).
 *
 * The graph (opset ONNX_OPSET of the default domain, IR version ONNX_IR_VERSION):
 *     x  float [N, D]                        (N symbolic: any batch size)
 *     for each linear layer l: Gemm(A_l, W_l, b_l, transB=1), W_l [out, in] as stored
 *     hidden layers: Relu | Tanh | Sigmoid (the model's activation)
 *     regression:     y             float [N, O]  (the last Gemm)
 *     classification: probabilities float [N, O]  (Softmax, axis 1, of the last Gemm)
 *                     labels        int64 [N]     (ArgMax of probabilities, first maximum)
 * Initializers are named as a PyTorch nn.Sequential of Linear layers and activations has them in
 * its state_dict ("0.weight", "0.bias", "2.weight", ...), F32, the floats of the version or
 * adaptation bit for bit. Meta-SGD rates are training state, not part of inference: not exported.
 * metadata_props carry the provenance (model, version, algorithm, adaptation_id, architecture).
 *
 * Usage:
 *     OnnxProvenance p = {.model = "sine", .version = 3, .algorithm = "maml"};
 *     uint8_t *bytes; size_t n;
 *     onnx_export(&spec, theta, &p, &bytes, &n, &err);  ... free(bytes);
 */
#ifndef METASERVE_CODEC_ONNX_H
#define METASERVE_CODEC_ONNX_H

#include <stddef.h>
#include <stdint.h>

#include "metaserve/core/status.h"
#include "metaserve/nn/mlp.h"

#define ONNX_OPSET            17 // default-domain operator set (onnx 1.12 knows up to 17)
#define ONNX_IR_VERSION       8  // the IR version that goes with opset 17
#define ONNX_PRODUCER_NAME    "metaserve"
#define ONNX_PRODUCER_VERSION "1.0.0" // api/openapi.yaml's info.version

/** Where the exported parameters come from (strings borrowed for the call). */
typedef struct {
    const char *model;      // model name
    int version;            // model version (also the ModelProto's model_version)
    const char *algorithm;  // meta-training algorithm ("maml", ...)
    const char *adaptation; // adaptation id, or NULL for the version's meta-parameters
} OnnxProvenance;

/**
 * Encodes spec with parameters theta (spec->P floats, mlp.h's layout) as an ONNX model.
 * *out: the serialized ModelProto, *len bytes (malloc'd; caller frees). MS_ERR_NOMEM;
 * MS_ERR_INVALID when a name in prov is missing.
 */
MsStatus onnx_export(const MlpSpec *spec, const float *theta, const OnnxProvenance *prov,
                     uint8_t **out, size_t *len, MsError *err);

/** The attachment file name of an export: "<model>-v<version>.onnx" or
 *  "<model>-v<version>-<adaptation>.onnx" (model names and ids are [A-Za-z0-9._-]). */
void onnx_filename(char *buf, size_t n, const OnnxProvenance *prov);

#endif
