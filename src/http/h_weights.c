/*
 * Weights in and out as safetensors: the export of a model version or an adaptation
 * (GET /v1/models/{ref}/weights and GET /v1/adaptations/{id}/weights with Accept:
 * application/octet-stream or ?format=safetensors; JSON stays the default) and the import of a
 * version trained elsewhere (POST /v1/models/{name}/versions, a safetensors or JSON weights body).
 *
 * The tensor naming (a PyTorch nn.Sequential state_dict) is codec/weights_st.h's; the byte format
 * codec/safetensors.h's. An export's __metadata__ carries "format", "architecture" (the JSON of
 * codec_arch_print), "provenance" ("trained", "imported" or "adapted"), "model", "version",
 * "algorithm", "job_id" and, for an adaptation, "adaptation_id" (absent values are "").
 *
 * An import is validated whole before anything is stored: the architecture (from the query
 * parameters sizes / activation / head, else __metadata__.architecture, else the JSON body's
 * fields), every tensor's presence, shape, dtype and finiteness. The version it writes is
 * immutable like any other; its stored training config names the reserved task source
 * IMPORT_DATASET (no data: it was trained elsewhere) and its hyper JSON says
 * {"provenance": "imported", ...}. Workload: P floats, up to a few million, once per call.
 */
#include <microhttpd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"
#include "metaserve/codec/codec.h"
#include "metaserve/codec/safetensors.h"
#include "metaserve/codec/weights_st.h"

#define IMPORT_DATASET "00000000000000000000000000000000" // the task source of an imported version

/* ---- export ---- */

int weights_want_safetensors(Req *r) {
    const char *f = req_query(r, "format");
    if (f) {
        if (strcmp(f, "safetensors") == 0) return 1;
        if (strcmp(f, "json") == 0) return 0;
        reply_problem(r, 422, "validation", "format: must be \"json\" or \"safetensors\"");
        return -1;
    }
    const char *a = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Accept");
    return a && (strstr(a, "application/octet-stream") || strstr(a, "application/vnd.safetensors"));
}

// The provenance of a stored version: "imported" when its hyper JSON says so, else "trained".
static const char *provenance(const StoreModel *m) {
    return m->hyper && strstr(m->hyper, "\"provenance\":\"imported\"") ? "imported" : "trained";
}

// Replies 200 with the safetensors export of theta (and the model's rates) for model m.
static void reply_st(Req *r, const ServingModel *m, const StoreModel *sm, const float *theta,
                     const char *adaptation_id) {
    char *arch = codec_arch_print(&m->spec);
    char version[16];
    snprintf(version, sizeof version, "%d", m->version);
    const char *meta[] = {"format",        CODEC_WEIGHTS_ST_FORMAT,
                          "architecture",  arch ? arch : "",
                          "provenance",    adaptation_id ? "adapted" : provenance(sm),
                          "model",         m->name,
                          "version",       version,
                          "algorithm",     meta_algo_name(m->cfg.algo),
                          "job_id",        sm->job_id,
                          "adaptation_id", adaptation_id ? adaptation_id : ""};
    void *out = NULL;
    size_t len = 0;
    MsError err = {0};
    MsStatus s = arch ? codec_weights_st_print(&m->spec, theta, m->lrs, meta, 8, &out, &len, &err)
                      : MS_ERR_NOMEM;
    free(arch);
    if (s != MS_OK) {
        reply_nomem(r);
        return;
    }
    free(r->reply);
    r->reply = out;
    r->reply_len = len;
    r->status = 200;
    r->content_type = "application/octet-stream";
}

// The version's stored record (no arrays needed, but store_model_get loads them: P floats).
static int stored(Req *r, Store *st, const ServingModel *m, StoreModel *sm) {
    MsError err = {0};
    MsStatus s = store_model_get(st, m->name, m->version, sm, &err);
    if (s != MS_OK) reply_status(r, s, &err);
    return s == MS_OK;
}

void weights_model_safetensors(Req *r, Store *st, const ServingModel *m) {
    StoreModel sm;
    if (!stored(r, st, m, &sm)) return;
    reply_st(r, m, &sm, m->theta, NULL);
    store_model_free(&sm);
}

void h_adaptation_weights(Req *r) {
    int want = weights_want_safetensors(r);
    if (want < 0) return;
    Store *st = req_store(r);
    if (!st) return;
    MsError err = {0};
    StoreAdaptation a;
    ServingModel *m = NULL;
    StoreModel sm;
    memset(&sm, 0, sizeof sm);
    if (!adaptation_load(r, st, r->params[0], &a, &m)) goto done;
    if (want) {
        if (stored(r, st, m, &sm)) reply_st(r, m, &sm, a.params, a.id);
        goto done;
    }
    char *w = NULL, *lrs = NULL, *arch = codec_arch_print(&m->spec);
    int ok = arch && codec_weights_print(&m->spec, a.params, &w, &err) == MS_OK &&
             (!m->lrs || codec_weights_print(&m->spec, m->lrs, &lrs, &err) == MS_OK);
    cJSON *doc = cJSON_CreateObject();
    cJSON *ar = ok ? cJSON_Parse(arch) : NULL;
    ok = ok && doc && ar && cJSON_AddStringToObject(doc, "id", a.id) &&
         cJSON_AddStringToObject(doc, "name", m->name) &&
         cJSON_AddNumberToObject(doc, "version", m->version);
    for (cJSON *it = ar ? ar->child : NULL, *next; it && ok; it = next) {
        next = it->next;
        ok = cJSON_AddItemToObject(doc, it->string, cJSON_DetachItemViaPointer(ar, it));
    }
    ok = ok && cJSON_AddRawToObject(doc, "weights", w) &&
         (lrs ? cJSON_AddRawToObject(doc, "lrs", lrs) != NULL
              : cJSON_AddNullToObject(doc, "lrs") != NULL);
    cJSON_Delete(ar);
    free(arch), free(w), free(lrs);
    reply_built(r, 200, doc, ok);
done:
    store_model_free(&sm);
    if (m) serving_release(r->app->serving, m);
    store_adaptation_free(&a);
}

/* ---- import ---- */

// The architecture from ?sizes=1,40,1&activation=relu&head=regression; 0 when absent, 1 read,
// -1 replied 422.
static int arch_from_query(Req *r, MlpSpec *spec) {
    const char *sz = req_query(r, "sizes"), *act = req_query(r, "activation"),
               *head = req_query(r, "head");
    if (!sz && !act && !head) return 0;
    if (!sz) {
        reply_problem(r, 422, "validation", "sizes: is required with activation or head");
        return -1;
    }
    char text[512];
    int n = snprintf(text, sizeof text, "{\"sizes\":[%s]", sz);
    if (strspn(sz, "0123456789,") != strlen(sz) || n >= (int)sizeof text) {
        reply_problem(r, 422, "validation", "sizes: must be layer widths separated by commas");
        return -1;
    }
    if (act && strspn(act, "abcdefghijklmnopqrstuvwxyz") == strlen(act) && strlen(act) < 32)
        n += snprintf(text + n, sizeof text - (size_t)n, ",\"activation\":\"%s\"", act);
    else if (act) {
        reply_problem(r, 422, "validation",
                      "activation: must be \"relu\", \"tanh\" or \"sigmoid\"");
        return -1;
    }
    if (head && strspn(head, "abcdefghijklmnopqrstuvwxyz") == strlen(head) && strlen(head) < 32)
        n += snprintf(text + n, sizeof text - (size_t)n, ",\"head\":\"%s\"", head);
    else if (head) {
        reply_problem(r, 422, "validation", "head: must be \"regression\" or \"classification\"");
        return -1;
    }
    snprintf(text + n, sizeof text - (size_t)n, "}");
    MsError err = {0};
    if (codec_arch_parse(spec, text, "query", &err) != MS_OK) {
        // the message names "query.sizes[1]"; the query parameter is called sizes
        const char *d = strncmp(err.msg, "query.", 6) == 0 ? err.msg + 6 : err.msg;
        reply_problem(r, 422, "validation", "%s", d);
        return -1;
    }
    return 1;
}

// What an import reads from its body: architecture, parameters, rates, algorithm.
typedef struct {
    MlpSpec spec;
    float *theta, *lrs; // P each (lrs NULL without rates)
    char algorithm[16]; // "" when the body does not say
} Imported;

static int import_alloc(Req *r, Imported *im) {
    // sized against the body before allocating: every parameter takes at least 2 bytes of it
    // (an F16 element, or a one-digit JSON number and its comma)
    if (im->spec.P > r->body_len / 2) {
        reply_problem(r, 422, "validation",
                      "architecture: %zu parameters cannot fit in a %zu-byte body", im->spec.P,
                      r->body_len);
        return 0;
    }
    im->theta = malloc(im->spec.P * sizeof(float));
    im->lrs = malloc(im->spec.P * sizeof(float));
    if (!im->theta || !im->lrs) {
        reply_problem(r, 503, "unavailable", "out of memory");
        return 0;
    }
    return 1;
}

static int import_safetensors(Req *r, Imported *im) {
    StFile f;
    MsError err = {0};
    int ok = 0, has_lrs = 0;
    if (st_parse(&f, r->body, r->body_len, &err) != MS_OK) {
        reply_status(r, MS_ERR_INVALID, &err);
        return 0;
    }
    int q = arch_from_query(r, &im->spec);
    if (q < 0) goto done;
    const char *arch = st_meta(&f, "architecture"), *algo = st_meta(&f, "algorithm");
    if (!q && !arch) {
        reply_problem(r, 422, "validation",
                      "architecture: give __metadata__.architecture ({\"sizes\", \"activation\", "
                      "\"head\"}) or the query parameters sizes, activation and head");
        goto done;
    }
    if (!q && codec_arch_parse(&im->spec, arch, "__metadata__.architecture", &err) != MS_OK) {
        reply_status(r, MS_ERR_INVALID, &err);
        goto done;
    }
    if (algo) snprintf(im->algorithm, sizeof im->algorithm, "%.15s", algo);
    if (!import_alloc(r, im)) goto done;
    if (codec_weights_st_read(&f, &im->spec, im->theta, im->lrs, &has_lrs, &err) != MS_OK) {
        reply_status(r, MS_ERR_INVALID, &err);
        goto done;
    }
    if (!has_lrs) free(im->lrs), im->lrs = NULL;
    ok = 1;
done:
    st_free(&f);
    return ok;
}

static int import_json(Req *r, Imported *im) {
    static const char *const FIELDS[] = {"name", "version", "id",  "sizes",     "activation",
                                         "head", "weights", "lrs", "algorithm", NULL};
    const cJSON *b = r->json;
    if (!body_fields(r, b, "body", FIELDS)) return 0;
    MsError err = {0};
    int q = arch_from_query(r, &im->spec);
    if (q < 0) return 0;
    if (!q) {
        cJSON *a = cJSON_CreateObject();
        const char *keys[] = {"sizes", "activation", "head"};
        for (int i = 0; i < 3 && a; i++) {
            const cJSON *v = cJSON_GetObjectItemCaseSensitive(b, keys[i]);
            if (v) cJSON_AddItemToObject(a, keys[i], cJSON_Duplicate(v, 1));
        }
        char *text = a ? cJSON_PrintUnformatted(a) : NULL;
        cJSON_Delete(a);
        if (!text) {
            reply_nomem(r);
            return 0;
        }
        MsStatus s = codec_arch_parse(&im->spec, text, "", &err);
        free(text);
        if (s != MS_OK) {
            reply_status(r, s, &err);
            return 0;
        }
    }
    if (!body_string(r, b, "algorithm", sizeof im->algorithm, 0, im->algorithm)) return 0;
    if (!import_alloc(r, im)) return 0;
    const char *keys[] = {"weights", "lrs"};
    for (int k = 0; k < 2; k++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(b, keys[k]);
        if (k == 1 && (!v || cJSON_IsNull(v))) {
            free(im->lrs), im->lrs = NULL;
            break;
        }
        if (!v) {
            reply_problem(r, 422, "validation", "weights: is required");
            return 0;
        }
        MsStatus s = codec_weights_from_doc(k ? im->lrs : im->theta, &im->spec, v, keys[k], &err);
        if (s != MS_OK) {
            reply_status(r, s, &err);
            return 0;
        }
    }
    return 1;
}

void h_model_import(Req *r) {
    const char *name = r->params[0];
    if (!name_valid(name)) {
        reply_problem(r, 422, "validation",
                      "name: 1..%d characters of [A-Za-z0-9._-], not starting with '.'",
                      STORE_NAME_MAX - 1);
        return;
    }
    Imported im;
    memset(&im, 0, sizeof im);
    char *config = NULL, *hyper = NULL;
    MsError err = {0};
    if (!(r->binary ? import_safetensors(r, &im) : import_json(r, &im))) goto done;
    // the algorithm: Meta-SGD exactly when rates came with the weights; else as said, or maml
    MetaAlgo algo = META_MAML;
    if (im.algorithm[0] && meta_algo_parse(im.algorithm, &algo) != MS_OK) {
        reply_problem(r, 422, "validation",
                      "algorithm: must be maml, fomaml, metasgd, anil or "
                      "reptile");
        goto done;
    }
    if (im.lrs) algo = META_METASGD;
    if (!im.lrs && algo == META_METASGD) {
        reply_problem(r, 422, "validation",
                      "algorithm: metasgd needs its inner rates (lr.<i>.weight, lr.<i>.bias "
                      "tensors, or \"lrs\")");
        goto done;
    }
    TrainConfig c;
    train_config_defaults(&c);
    snprintf(c.name, sizeof c.name, "%s", name);
    c.n_sizes = im.spec.L + 1;
    memcpy(c.sizes, im.spec.sizes, sizeof c.sizes);
    c.act = im.spec.act;
    c.head = im.spec.head;
    c.algo = algo;
    snprintf(c.tasks.dataset, sizeof c.tasks.dataset, "%s", IMPORT_DATASET);
    if (c.head == MLP_HEAD_CLASSIFICATION) c.tasks.n_way = im.spec.sizes[im.spec.L];
    MsStatus s = train_config_validate(&c, &err);
    if (s == MS_OK) s = codec_config_print(&c, &config, &err);
    if (s != MS_OK) {
        reply_status(r, s, &err);
        goto done;
    }
    if (!(hyper = strdup("{\"provenance\":\"imported\"}"))) {
        reply_nomem(r);
        goto done;
    }
    Store *st = req_store(r);
    if (!st) goto done;
    StoreModel m;
    memset(&m, 0, sizeof m);
    snprintf(m.name, sizeof m.name, "%s", name);
    snprintf(m.algorithm, sizeof m.algorithm, "%s", meta_algo_name(algo));
    m.config = config;
    m.hyper = hyper;
    m.metrics = "{}";
    m.n_params = im.spec.P;
    m.params = im.theta;
    m.inner_lrs = im.lrs;
    int version = 0;
    if ((s = store_model_put(st, &m, &version, &err)) != MS_OK) {
        reply_status(r, s, &err);
        goto done;
    }
    serving_forget_refs(r->app->serving, name); // "name" now resolves to the new version
    snprintf(r->location, sizeof r->location, "/v1/models/%s/versions/%d", name, version);
    cJSON *doc = cJSON_CreateObject();
    int ok = doc && cJSON_AddStringToObject(doc, "name", name) &&
             cJSON_AddNumberToObject(doc, "version", version) &&
             cJSON_AddStringToObject(doc, "algorithm", m.algorithm) &&
             cJSON_AddStringToObject(doc, "provenance", "imported") &&
             cJSON_AddNumberToObject(doc, "n_params", (double)im.spec.P);
    reply_built(r, 201, doc, ok);
done:
    free(config);
    free(hyper);
    free(im.theta);
    free(im.lrs);
}
