/*
 * Handlers of adaptation and prediction: POST /v1/models/{ref}/adapt (support set -> stored
 * adaptation), POST /v1/models/{ref}/predict (meta-parameters, or adapt-then-predict on an
 * inline support set with nothing stored), and GET, DELETE and POST .../predict on
 * /v1/adaptations/{id}.
 *
 * Owns the request formats and limits of these routes; adaptation and the forward pass are the
 * serving layer's (serving_adapt, serving_adapt_copy, serving_predict), and every model version
 * comes from its cache, so a warm request never reads meta-parameters from SQLite. The stored
 * version is never modified: an inline adaptation runs on a private copy freed with the request.
 *
 * Limits, checked before anything proportional to them is allocated: support sets by
 * AdaptLimits (rows, steps, work), prediction inputs by PREDICT_MAX_ROWS, PREDICT_MAX_MACS (one
 * forward pass) and PREDICT_MAX_OUTPUTS (values in one reply), all 413. serving_predict bounds
 * its own scratch, so memory does not grow with the number of rows beyond input and output.
 *
 * Replies print floats with "%.9g" (round-trips a float); a non-finite output is never printed:
 * it is a 422 "numeric" problem instead.
 */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "http.h"
#include "metaserve/nn/mlp.h"

#define PREDICT_MAX_ROWS    100000                // rows of x in one prediction
#define PREDICT_MAX_MACS    2e9                   // multiply-adds of one forward pass
#define PREDICT_MAX_OUTPUTS 1000000               // rows x output width in one reply
#define REF_MAX             (STORE_NAME_MAX + 16) // "name@version"

/* ---- replies ---- */

// A finite number, or null (a loss stored before a divergence was caught never prints as NaN).
static int add_real(cJSON *o, const char *key, double v) {
    return (isfinite(v) ? cJSON_AddNumberToObject(o, key, v) : cJSON_AddNullToObject(o, key)) !=
           NULL;
}

// The 201 body of a stored adaptation {"id", "model", "version", "support_loss_before",
// "support_loss_after", "expires_at"} printed into buf (cap bytes, reserved before the write, so
// a committed adaptation is answered without allocating); its length, or 0 when it does not fit.
// Numbers as cJSON prints them; id and model are characters the store admitted (no escaping).
static size_t adaptation_created_text(char *buf, size_t cap, const StoreAdaptation *a) {
    char before[32], after[32], t[32], expires[40] = "null";
    if (a->expires_at > 0 && json_time_text(t, a->expires_at))
        snprintf(expires, sizeof expires, "\"%s\"", t);
    int n = snprintf(buf, cap,
                     "{\"id\":\"%s\",\"model\":\"%s\",\"version\":%d,\"support_loss_before\":%s,"
                     "\"support_loss_after\":%s,\"expires_at\":%s}",
                     a->id, a->model, a->version, json_num_text(before, a->support_loss_before),
                     json_num_text(after, a->support_loss_after), expires);
    return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

/* ---- request fields ---- */

// Reads the optional "steps" (0..max_steps; -1 when absent: the model's own) and "lr" ((0, 10];
// 0 when absent: the model's own). Replies 422 and returns 0 on a bad value.
static int read_adapt_overrides(Req *r, const cJSON *body, const AdaptLimits *lim, int *steps,
                                double *lr) {
    long long k = -1;
    if (!body_int(r, body, "steps", 0, lim->max_steps, 0, &k)) return 0;
    *steps = (int)k;
    *lr = 0;
    return body_number(r, body, "lr", 0, 1, 10, 0, lr);
}

// Reads a support set {"x": n x D, "y": n x target columns} for spec into new arrays (the caller
// frees *x and *y, also on failure). Replies 422 / 413 and returns 0 on error.
int adapt_read_support(Req *r, const cJSON *sup, const MlpSpec *spec, const AdaptLimits *lim,
                       float **x, float **y, int *n) {
    static const char *const fields[] = {"x", "y", NULL};
    if (!body_fields(r, sup, "support", fields)) return 0;
    const cJSON *jx = cJSON_GetObjectItemCaseSensitive(sup, "x");
    const cJSON *jy = cJSON_GetObjectItemCaseSensitive(sup, "y");
    if (!jx || !jy) {
        reply_problem(r, 422, "validation", "support.%s: is required", jx ? "y" : "x");
        return 0;
    }
    int nx = 0, ny = 0;
    *x = body_matrix(r, jx, "support.x", spec->sizes[0], lim->max_support_rows, &nx, NULL);
    if (!*x) return 0;
    if (spec->head == MLP_HEAD_CLASSIFICATION && cJSON_IsArray(jy)) {
        int i = 0;
        for (const cJSON *row = jy->child; row; row = row->next, i++)
            if (cJSON_IsArray(row) && cJSON_GetArraySize(row) > 1) {
                reply_problem(r, 422, "validation",
                              "support.y[%d]: a class index is expected (a row [k] for class k), "
                              "not a one-hot vector or probabilities: this model classifies",
                              i);
                return 0;
            }
    }
    *y = body_matrix(r, jy, "support.y", mlp_target_cols(spec), lim->max_support_rows, &ny, NULL);
    if (!*y) return 0;
    if (ny != nx) {
        reply_problem(r, 422, "validation", "support.y: has %d rows, support.x has %d", ny, nx);
        return 0;
    }
    *n = nx;
    return 1;
}

// Reads the rows to predict ("x": rows x D) and checks the prediction limits. Caller frees the
// result; NULL after replying 422 / 413.
float *predict_read_x(Req *r, const cJSON *body, const MlpSpec *spec, int *rows) {
    const cJSON *jx = cJSON_GetObjectItemCaseSensitive(body, "x");
    if (!jx) {
        reply_problem(r, 422, "validation", "x: is required");
        return NULL;
    }
    float *x = body_matrix(r, jx, "x", spec->sizes[0], PREDICT_MAX_ROWS, rows, NULL);
    if (!x) return NULL;
    if (predict_limits_ok(r, spec, *rows, "x")) return x;
    free(x);
    return NULL;
}

int predict_limits_ok(Req *r, const MlpSpec *spec, int rows, const char *what) {
    const int O = spec->sizes[spec->L];
    if (rows > PREDICT_MAX_ROWS) {
        reply_problem(r, 413, "payload-too-large", "%s: %d rows exceed the limit of %d", what, rows,
                      PREDICT_MAX_ROWS);
    } else if (mlp_forward_macs(spec, rows) > PREDICT_MAX_MACS) {
        reply_problem(r, 413, "payload-too-large",
                      "%s: %d rows exceed the work limit of %.0f multiply-adds for this model",
                      what, rows, PREDICT_MAX_MACS);
    } else if ((double)rows * O > PREDICT_MAX_OUTPUTS) {
        reply_problem(r, 413, "payload-too-large",
                      "%s: %d rows x %d outputs exceed the limit of %d values in one reply", what,
                      rows, O, PREDICT_MAX_OUTPUTS);
    } else {
        return 1;
    }
    return 0;
}

/* ---- prediction ---- */

// Predicts x with theta (of spec) and replies 200 {"model", "version", "adapted", "head":
// "regression", "y"} or {..., "head": "classification", "probabilities", "labels"}; "head" tells
// the two shapes apart (the contract's discriminator). model is a name the store returned (safe
// to echo).
static void reply_prediction(Req *r, const char *model, int version, int adapted,
                             const MlpSpec *spec, const float *theta, const float *x, int rows) {
    const int O = spec->sizes[spec->L];
    const int classify = spec->head == MLP_HEAD_CLASSIFICATION;
    MsError err = {0};
    char *values = NULL, *labels = NULL;
    float *out = malloc((size_t)rows * O * sizeof *out);
    if (!out) {
        reply_problem(r, 503, "unavailable", "out of memory");
        return;
    }
    MsStatus s = serving_predict(spec, theta, x, rows, out, &err);
    if (s != MS_OK) {
        reply_status(r, s, &err);
        goto done;
    }
    values = json_floats_text(out, rows, O);
    if (classify) labels = json_argmax_text(out, rows, O);
    cJSON *doc = cJSON_CreateObject();
    int ok = values && (!classify || labels) && cJSON_AddStringToObject(doc, "model", model) &&
             cJSON_AddNumberToObject(doc, "version", version) &&
             cJSON_AddBoolToObject(doc, "adapted", adapted) &&
             cJSON_AddStringToObject(doc, "head", classify ? "classification" : "regression") &&
             cJSON_AddRawToObject(doc, classify ? "probabilities" : "y", values) &&
             (!classify || cJSON_AddRawToObject(doc, "labels", labels));
    if (ok) metrics_count(r->app->metrics, "predicted_rows", rows);
    reply_built(r, 200, doc, ok);
done:
    free(out);
    free(values);
    free(labels);
}

/* ---- models: adapt and predict ---- */

int adapt_read_body(Req *r, const cJSON *body, const AdaptLimits *lim, int *steps, double *lr,
                    long long *ttl_s, const cJSON **sup) {
    static const char *const fields[] = {"support", "steps", "lr", "ttl_s", NULL};
    if (!body_fields(r, body, "body", fields) || !read_adapt_overrides(r, body, lim, steps, lr) ||
        !body_int(r, body, "ttl_s", 1, lim->max_ttl_ms / 1000, 0, ttl_s))
        return 0;
    *sup = cJSON_GetObjectItemCaseSensitive(body, "support");
    if (!*sup || cJSON_IsNull(*sup)) {
        reply_problem(r, 422, "validation", "support: is required");
        return 0;
    }
    return 1;
}

void h_model_adapt(Req *r) {
    Serving *reg = r->app->serving;
    AdaptLimits lim;
    adapt_limits_default(&lim);
    ServingModel *m = NULL;
    float *x = NULL, *y = NULL;
    MsError err = {0};
    MsStatus s;
    int steps, n = 0;
    double lr;
    long long ttl_s = 0;
    const cJSON *sup = NULL;
    const cJSON *body = r->json; // parsed by dispatch
    if (!adapt_read_body(r, body, &lim, &steps, &lr, &ttl_s, &sup)) goto done;
    Store *st = req_store(r);
    if (!st) goto done;
    if ((s = serving_get(reg, st, r->params[0], &m, &err)) != MS_OK) {
        reply_status(r, s, &err);
        goto done;
    }
    if (!adapt_read_support(r, sup, &m->spec, &lim, &x, &y, &n)) goto done;

    // pin the version resolved above, so an alias moving meanwhile cannot change the width
    char ref[REF_MAX];
    snprintf(ref, sizeof ref, "%s@%d", m->name, m->version);
    AdaptRequest q = {.x = x, .y = y, .n = n, .steps = steps, .lr = lr, .ttl_ms = ttl_s * 1000};
    // once stored, the adaptation must be answered 201 even out of memory: the fallback reply's
    // buffer is reserved before serving_adapt writes it
    const size_t cap = 256 + STORE_NAME_MAX;
    char *reserve = malloc(cap);
    if (!reserve) {
        reply_problem(r, 503, "unavailable", "out of memory");
        goto done;
    }
    StoreAdaptation a;
    if ((s = serving_adapt(reg, st, ref, &q, &lim, &a, &err)) != MS_OK) {
        free(reserve);
        reply_status(r, s, &err);
        goto done;
    }
    metrics_count(r->app->metrics, "adaptations", 1);
    snprintf(r->location, sizeof r->location, "/v1/adaptations/%s", a.id);
    reply_text(r, 201, reserve, adaptation_created_text(reserve, cap, &a));
    store_adaptation_free(&a);
done:
    serving_release(reg, m);
    free(x);
    free(y);
}

int predict_read_body(Req *r, const cJSON *body, const AdaptLimits *lim, int *steps, double *lr,
                      const cJSON **sup) {
    static const char *const fields[] = {"x", "support", "steps", "lr", NULL};
    // steps and lr are checked even without a support set, where they have no effect
    if (!body_fields(r, body, "body", fields) || !read_adapt_overrides(r, body, lim, steps, lr))
        return 0;
    *sup = cJSON_GetObjectItemCaseSensitive(body, "support");
    if (cJSON_IsNull(*sup)) *sup = NULL;
    return 1;
}

void h_model_predict(Req *r) {
    Serving *reg = r->app->serving;
    AdaptLimits lim;
    adapt_limits_default(&lim);
    ServingModel *m = NULL;
    float *x = NULL, *sx = NULL, *sy = NULL, *theta = NULL;
    MsError err = {0};
    MsStatus s;
    int steps, rows = 0, n = 0;
    double lr;
    const cJSON *sup = NULL;
    const cJSON *body = r->json; // parsed by dispatch
    if (!predict_read_body(r, body, &lim, &steps, &lr, &sup)) goto done;
    // Prediction writes nothing: a version this process has cached serves without a database
    // connection (serving_get answers 503 for anything it would have to read).
    Store *st = req_store_if_up(r);
    if ((s = serving_get(reg, st, r->params[0], &m, &err)) != MS_OK) {
        reply_status(r, s, &err);
        goto done;
    }
    if (!(x = predict_read_x(r, body, &m->spec, &rows))) goto done;
    if (sup) {
        if (!adapt_read_support(r, sup, &m->spec, &lim, &sx, &sy, &n)) goto done;
        if (!(theta = malloc(m->spec.P * sizeof *theta))) {
            reply_problem(r, 503, "unavailable", "out of memory");
            goto done;
        }
        AdaptRequest q = {.x = sx, .y = sy, .n = n, .steps = steps, .lr = lr};
        if ((s = serving_adapt_copy(m, &q, &lim, theta, NULL, NULL, &err)) != MS_OK) {
            reply_status(r, s, &err);
            goto done;
        }
    }
    reply_prediction(r, m->name, m->version, theta != NULL, &m->spec, theta ? theta : m->theta, x,
                     rows);
done:
    serving_release(reg, m);
    free(theta);
    free(sx);
    free(sy);
    free(x);
}

/* ---- adaptations ---- */

void h_adaptation_get(Req *r) {
    Store *st = req_store(r);
    if (!st) return;
    MsError err = {0};
    StoreAdaptation a;
    MsStatus s = store_adaptation_get(st, r->params[0], &a, &err);
    if (s != MS_OK) {
        reply_status(r, s, &err);
        return;
    }
    cJSON *doc = cJSON_CreateObject();
    int ok = cJSON_AddStringToObject(doc, "id", a.id) &&
             cJSON_AddStringToObject(doc, "model", a.model) &&
             cJSON_AddNumberToObject(doc, "version", a.version) &&
             json_add_time(doc, "created_at", a.created_at) &&
             json_add_time(doc, "expires_at", a.expires_at) &&
             add_real(doc, "support_loss_before", a.support_loss_before) &&
             add_real(doc, "support_loss_after", a.support_loss_after);
    store_adaptation_free(&a);
    reply_built(r, 200, doc, ok);
}

void h_adaptation_delete(Req *r) {
    Store *st = req_store(r);
    if (!st) return;
    MsError err = {0};
    MsStatus s = store_adaptation_delete(st, r->params[0], &err);
    if (s != MS_OK) {
        reply_status(r, s, &err);
        return;
    }
    reply_empty(r, 204);
}

int adaptation_load(Req *r, Store *st, const char *id, StoreAdaptation *a, ServingModel **m) {
    MsError err = {0};
    MsStatus s;
    memset(a, 0, sizeof *a);
    *m = NULL;
    if ((s = store_adaptation_get(st, id, a, &err)) != MS_OK) return reply_status(r, s, &err), 0;
    // the architecture is that of the version the adaptation was made from
    char ref[REF_MAX];
    snprintf(ref, sizeof ref, "%s@%d", a->model, a->version);
    if ((s = serving_get(r->app->serving, st, ref, m, &err)) != MS_OK)
        return reply_status(r, s, &err), 0;
    if (a->n_params != (*m)->spec.P) {
        s = ms_fail_detail(&err, MS_ERR_DB, MS_DETAIL_CORRUPT,
                           "adaptation: corrupt: %zu parameters for a model of %zu", a->n_params,
                           (*m)->spec.P);
        return reply_status(r, s, &err), 0;
    }
    return 1;
}

void h_adaptation_predict(Req *r) {
    static const char *const fields[] = {"x", NULL};
    Serving *reg = r->app->serving;
    ServingModel *m = NULL;
    StoreAdaptation a;
    memset(&a, 0, sizeof a);
    float *x = NULL;
    int rows = 0;
    const cJSON *body = r->json; // parsed by dispatch
    if (!body_fields(r, body, "body", fields)) goto done;
    Store *st = req_store(r);
    if (!st || !adaptation_load(r, st, r->params[0], &a, &m)) goto done;
    if (!(x = predict_read_x(r, body, &m->spec, &rows))) goto done;
    reply_prediction(r, a.model, a.version, 1, &m->spec, a.params, x, rows);
done:
    serving_release(reg, m);
    store_adaptation_free(&a);
    free(x);
}
