/*
 * Handlers of the ONNX export routes: GET /v1/models/{ref}/onnx (a version's meta-parameters)
 * and GET /v1/adaptations/{id}/onnx (an adaptation's parameters, with the architecture of the
 * version it was made from). Both reply 200 application/octet-stream with the serialized ONNX
 * ModelProto of codec/onnx.h and Content-Disposition: attachment;
 * filename="<name>-v<N>[-<id>].onnx".
 *
 * Owns nothing but the lookup: the version comes from the serving cache (no SQLite read when
 * warm), an adaptation from the store. Errors are those of the weights and predict routes (404
 * for an unknown reference or an expired adaptation, 422 for a malformed reference).
 *
 * Workload: one encode per request, ~4 P bytes (a 784-256-256-5 network, P = 268,037, is about
 * 1 MB); nothing is cached.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"
#include "metaserve/codec/onnx.h"

#define REF_MAX (STORE_NAME_MAX + 16) // "name@version"

// Encodes theta of m's architecture and replies with it as a download; prov names the source.
static void reply_onnx(Req *r, const ServingModel *m, const float *theta,
                       const OnnxProvenance *prov) {
    uint8_t *bytes = NULL;
    size_t len = 0;
    MsError err = {0};
    MsStatus s = onnx_export(&m->spec, theta, prov, &bytes, &len, &err);
    if (s != MS_OK) {
        reply_status(r, s, &err);
        return;
    }
    free(r->reply);
    r->reply = (char *)bytes;
    r->reply_len = len;
    r->status = 200;
    r->content_type = "application/octet-stream";
    onnx_filename(r->filename, sizeof r->filename, prov);
}

void h_model_onnx(Req *r) {
    Store *st = req_store_if_up(r);
    MsError err = {0};
    ServingModel *m = NULL;
    // without a connection, serving_get answers from the cache or with 503
    MsStatus s = serving_get(r->app->serving, st, r->params[0], &m, &err);
    if (s != MS_OK) {
        reply_status(r, s, &err);
        return;
    }
    OnnxProvenance prov = {.model = m->name,
                           .version = m->version,
                           .algorithm = meta_algo_name(m->cfg.algo),
                           .adaptation = NULL};
    reply_onnx(r, m, m->theta, &prov);
    serving_release(r->app->serving, m);
}

void h_adaptation_onnx(Req *r) {
    Serving *reg = r->app->serving;
    ServingModel *m = NULL;
    StoreAdaptation a;
    memset(&a, 0, sizeof a);
    Store *st = req_store(r);
    if (!st) return;
    if (!adaptation_load(r, st, r->params[0], &a, &m)) goto done;
    OnnxProvenance prov = {.model = a.model,
                           .version = a.version,
                           .algorithm = meta_algo_name(m->cfg.algo),
                           .adaptation = a.id};
    reply_onnx(r, m, a.params, &prov);
done:
    serving_release(reg, m);
    store_adaptation_free(&a);
}
