/*
 * The JSON codec: every wire format of DESIGN.md §3 that is parsed or printed lives here, so that
 * cJSON stays behind the codec area (only codec/ and http/ include cJSON.h). It is built twice,
 * like the numeric areas: `real` is float in the service build and double in the _f64 build used
 * by `metaserve metagrad`, and the block below renames every function of this header there.
 *
 * Parsing is length-bounded (a body need not be NUL-terminated), strict (unknown and duplicate
 * fields are rejected, every number is checked for type, range and finiteness) and reports
 * MS_ERR_INVALID with the JSON path of the offending value first in the message, e.g.
 * "inner.steps: must be an integer in 0..100", or the byte offset of a syntax error.
 *
 * Printing returns a NUL-terminated string the caller frees with free(). Weights are printed with
 * enough digits to round-trip a real ("%.9g" for float, "%.17g" for double); a non-finite metric
 * prints as null.
 *
 * Usage:
 *     TrainConfig c;
 *     if (codec_config_parse(&c, body, len, &err) != MS_OK) reply_422(err.msg);
 *     char *json; codec_model_print(&c, theta, lrs, metrics, n, &json, &err); ...; free(json);
 */
#ifndef METASERVE_CODEC_CODEC_H
#define METASERVE_CODEC_CODEC_H

#include <stddef.h>

#include "metaserve/core/real.h"
#include "metaserve/core/status.h"
#include "metaserve/meta/eval.h"
#include "metaserve/meta/meta.h"
#include "metaserve/meta/train.h"
#include "metaserve/nn/mlp.h"

#ifdef MS_REAL_DOUBLE // the _f64 build (core/f64.h): every public codec function gets the suffix
#define codec_config_parse        codec_config_parse_f64
#define codec_config_from_doc     codec_config_from_doc_f64
#define codec_config_print        codec_config_print_f64
#define codec_weights_parse       codec_weights_parse_f64
#define codec_weights_from_doc    codec_weights_from_doc_f64
#define codec_weights_print       codec_weights_print_f64
#define codec_model_print         codec_model_print_f64
#define codec_model_parse         codec_model_parse_f64
#define codec_model_free          codec_model_free_f64
#define codec_metagrad_parse      codec_metagrad_parse_f64
#define codec_metagrad_free       codec_metagrad_free_f64
#define codec_metagrad_print      codec_metagrad_print_f64
#define codec_train_summary_print codec_train_summary_print_f64
#define codec_eval_print          codec_eval_print_f64
#endif

#define CODEC_MODEL_FORMAT   "metaserve.model/1" // the "format" tag of a model file
#define CODEC_MAX_METRICS    16                  // metrics kept in a model file
#define CODEC_METRIC_KEY_MAX 32                  // bytes of a metric name, NUL included
#define CODEC_MAX_BODY_BYTES ((size_t)256 << 20) // largest document any parser here accepts

/** One named scalar of a model's "metrics" object. */
typedef struct {
    char key[CODEC_METRIC_KEY_MAX]; // [A-Za-z0-9_.-], NUL-terminated
    double value;                   // NAN prints as null
} CodecMetric;

/** A model file in memory: its training config, parameters and metrics. */
typedef struct {
    TrainConfig cfg; // the config the model was trained with (validated)
    MlpSpec spec;    // built from cfg
    real *theta;     // spec.P meta-parameters in the mlp.h layout; owned
    real *lrs;       // spec.P Meta-SGD inner rates, or NULL for other algorithms; owned
    int n_metrics;   // entries used in metrics
    CodecMetric metrics[CODEC_MAX_METRICS];
} CodecModel;

/** The input of `metaserve metagrad`: one task, a network and the adaptation to differentiate. */
typedef struct {
    MlpSpec spec;  // from "sizes", "activation" and "loss" (mse: regression, ce: classif.)
    MetaAlgo algo; // maml | fomaml | metasgd | anil
    double alpha;  // inner learning rate (unused, and optional, for metasgd)
    int steps;     // K inner steps, 0..META_MAX_STEPS
    int ns, nq;    // support and query rows
    real *theta;   // spec.P
    real *lrs;     // spec.P for metasgd, else NULL
    real *xs, *ys; // ns x D, ns x mlp_target_cols(spec)
    real *xq, *yq; // nq x D, nq x mlp_target_cols(spec)
    void *mem;     // the one allocation behind theta .. yq
} CodecMetagradInput;

/** The figures `metaserve metagrad` prints; every pointer is borrowed for the call. */
typedef struct {
    double query_loss_initial;    // L_q(theta_0)
    double query_loss;            // L_q(theta_K)
    const double *support_losses; // K+1 values: L_s(theta_0) .. L_s(theta_K)
    int n_support_losses;
    const real *adapted;       // P: theta_K
    const real *meta_grad;     // P: dL_q(theta_K)/dtheta_0
    const real *meta_grad_lrs; // P: dL_q(theta_K)/dlrs (metasgd), or NULL (prints null)
} CodecMetagradOutput;

/** What `metaserve train` reports on stdout when it finishes. */
typedef struct {
    const char *model;     // config name
    const char *algorithm; // meta_algo_name
    const char *out;       // model file path
    long iterations;       // meta-updates done
    double meta_loss;      // running mean of the last progress window
    double seconds;        // wall time of the loop
    double tasks_per_s;    // iterations * meta_batch / seconds
} CodecTrainSummary;

/* ---- training config ---- */

/**
 * Parses a training config (DESIGN.md §3) from body[0..len) into c: starts from
 * train_config_defaults, overrides every field present, then runs train_config_validate.
 * Absent fields keep their defaults. MS_ERR_INVALID names the field ("outer.lr: ...") or gives
 * the byte offset of a syntax error; MS_ERR_TOO_LARGE when len > CODEC_MAX_BODY_BYTES;
 * MS_ERR_NOMEM. On failure *c is unspecified.
 */
MsStatus codec_config_parse(TrainConfig *c, const char *body, size_t len, MsError *err);

struct cJSON; // (codec/json.h; this header does not include cJSON.h)
/** codec_config_parse of a document already parsed (an HTTP body): "body: must be a JSON object"
 *  when doc is not an object; the same messages otherwise. doc is borrowed. */
MsStatus codec_config_from_doc(TrainConfig *c, const struct cJSON *doc, MsError *err);

/**
 * Prints c as a training config that codec_config_parse reads back to the same values, into *out
 * (NUL-terminated, pretty-printed; caller frees with free()). MS_ERR_NOMEM.
 */
MsStatus codec_config_print(const TrainConfig *c, char **out, MsError *err);

/* ---- weights ---- */

/**
 * Parses a list of layers [{"W": [[... sizes[l] ...] x sizes[l+1]], "b": [... sizes[l+1] ...]}]
 * (the weights format of DESIGN.md §3) into theta (spec->P reals, mlp.h layout). MS_ERR_INVALID
 * naming the layer, row or entry whose shape or value is wrong.
 */
MsStatus codec_weights_parse(real *theta, const MlpSpec *spec, const char *body, size_t len,
                             MsError *err);

/** codec_weights_parse of a list already parsed (a field of an HTTP body; borrowed); path names
 *  it in messages ("weights[1].W[2][0]: ..."). */
MsStatus codec_weights_from_doc(real *theta, const MlpSpec *spec, const struct cJSON *doc,
                                const char *path, MsError *err);

/** Prints theta (spec->P reals) as a list of layers into *out; caller frees with free(). */
MsStatus codec_weights_print(const MlpSpec *spec, const real *theta, char **out, MsError *err);

/* ---- model files ---- */

/**
 * Prints a model file {"format", "config", "weights", "lrs" (Meta-SGD only), "metrics"} into
 * *out (caller frees with free()). theta and lrs: P reals each for the spec of cfg; lrs is
 * required for Meta-SGD and ignored otherwise. metrics: n_metrics entries (<= CODEC_MAX_METRICS).
 * The output is a pure function of the arguments (no time stamps), so equal models give equal
 * bytes. MS_ERR_INVALID (bad cfg or metrics), MS_ERR_NOMEM.
 */
MsStatus codec_model_print(const TrainConfig *cfg, const real *theta, const real *lrs,
                           const CodecMetric *metrics, int n_metrics, char **out, MsError *err);

/**
 * Parses a model file into m (which the caller then releases with codec_model_free, also on
 * failure). Checks the format tag, validates the config and the shape of every layer against
 * its sizes; "lrs" must be present exactly for Meta-SGD. MS_ERR_INVALID naming the field,
 * MS_ERR_TOO_LARGE, MS_ERR_NOMEM.
 */
MsStatus codec_model_parse(CodecModel *m, const char *body, size_t len, MsError *err);

/** Releases the buffers of m and zeroes it; accepts NULL and a zeroed struct. */
void codec_model_free(CodecModel *m);

/* ---- metagrad ---- */

/**
 * Parses the input of `metaserve metagrad` (see src/cli/cli_metagrad.c for the format) into in
 * (release with codec_metagrad_free, also on failure). MS_ERR_INVALID naming the field
 * ("support_x[3]: expected 1 numbers, got 2"), MS_ERR_TOO_LARGE, MS_ERR_NOMEM.
 */
MsStatus codec_metagrad_parse(CodecMetagradInput *in, const char *body, size_t len, MsError *err);

/** Accepts NULL and a zeroed struct. */
void codec_metagrad_free(CodecMetagradInput *in);

/**
 * Prints the result of `metaserve metagrad` on one line, every number with 17 significant digits:
 * {"query_loss_initial", "query_loss", "support_losses", "adapted_weights", "meta_grad",
 * "meta_grad_lrs"} into *out (caller frees with free()). MS_ERR_NOMEM.
 */
MsStatus codec_metagrad_print(const MlpSpec *spec, const CodecMetagradOutput *o, char **out,
                              MsError *err);

/* ---- command reports ---- */

/** Prints the one-line summary of `metaserve train` into *out (caller frees). MS_ERR_NOMEM. */
MsStatus codec_train_summary_print(const CodecTrainSummary *s, char **out, MsError *err);

/**
 * Prints the one-line report of `metaserve eval`: {"model", "algorithm", "metric" ("mse" for
 * regression, "accuracy" for classification), "tasks", "query", "seed", "cells": [{"k", "steps",
 * "mean", "ci95", "mean_before"}]} into *out (caller frees). MS_ERR_NOMEM.
 */
MsStatus codec_eval_print(const TrainConfig *cfg, int n_tasks, int n_query, unsigned long long seed,
                          const EvalCell *cells, int n_cells, char **out, MsError *err);

#endif
