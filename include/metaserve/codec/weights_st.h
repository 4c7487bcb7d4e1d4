/*
 * Network weights as safetensors (codec/safetensors.h), named as PyTorch names the state_dict of
 * an nn.Sequential of Linear layers with an activation module between them:
 *
 *     nn.Sequential(Linear(D, H1), ReLU(), Linear(H1, H2), ReLU(), Linear(H2, O))
 *     -> "0.weight" [H1, D], "0.bias" [H1], "2.weight" [H2, H1], "2.bias", "4.weight", "4.bias"
 *
 * i.e. linear layer l is module 2l. W_l is stored [out, in] row-major, which is both the mlp.h
 * layout and nn.Linear's, so no transpose happens. Meta-SGD's learned inner rates go in tensors of
 * the same shapes named "lr.<module>.weight" / "lr.<module>.bias" (drop them, or load with
 * strict=False, to fill a plain nn.Sequential). Every tensor is F32.
 *
 * On import the linear layers are the tensors named "<k>.weight" taken in ascending k, so a
 * Sequential with other modules between the Linear layers (Dropout, say) imports as well; every
 * other tensor name is refused, naming it. Float-build only (no `real`).
 */
#ifndef METASERVE_CODEC_WEIGHTS_ST_H
#define METASERVE_CODEC_WEIGHTS_ST_H

#include <stddef.h>

#include "metaserve/codec/safetensors.h"
#include "metaserve/core/status.h"
#include "metaserve/nn/mlp.h"

#define CODEC_WEIGHTS_ST_FORMAT "metaserve.weights/1" // __metadata__.format of an export

/**
 * Writes theta (spec->P floats, mlp.h layout) and, when non-NULL, the Meta-SGD rates lrs (P
 * floats) as a safetensors file into *out (malloc'd; caller frees) of *len bytes, with n_meta
 * metadata pairs meta[2i] = key, meta[2i+1] = value. MS_ERR_NOMEM.
 */
MsStatus codec_weights_st_print(const MlpSpec *spec, const float *theta, const float *lrs,
                                const char *const *meta, int n_meta, void **out, size_t *len,
                                MsError *err);

/**
 * Reads the layers of a parsed file for spec into theta (P floats) and the rates, when the file
 * has them, into lrs (P floats; *has_lrs = 1). MS_ERR_INVALID naming the tensor that is missing,
 * extra, mis-shaped, of an unsupported dtype or holds a non-finite value, or the count of linear
 * layers when it differs from spec->L.
 */
MsStatus codec_weights_st_read(const StFile *f, const MlpSpec *spec, float *theta, float *lrs,
                               int *has_lrs, MsError *err);

/** The architecture as JSON text {"sizes": [...], "activation": "relu", "head": "regression"}
 *  (malloc'd; caller frees), or NULL out of memory. */
char *codec_arch_print(const MlpSpec *spec);

/**
 * Parses an architecture object's text (as codec_arch_print writes it) into spec. `what` names
 * the source in messages ("__metadata__.architecture"). MS_ERR_INVALID naming the field.
 */
MsStatus codec_arch_parse(MlpSpec *spec, const char *text, const char *what, MsError *err);

#endif
