/*
 * The JSON codec (include/metaserve/codec/codec.h): training configs, weights, model files, the
 * input and output of `metaserve metagrad`, and the reports of the train and eval commands. It
 * knows nothing of files, sockets or printing to a stream: it turns bytes into validated structs
 * and structs into bytes, reading and building through the area's JSON layer (codec/json.h).
 *
 * Parsing: every object is checked for unknown and duplicate keys; every number for type, range
 * and finiteness (and, in the float build, for fitting a float). Errors are MS_ERR_INVALID with
 * the JSON path first: "architecture.sizes[2]: ...". Shaped arrays of reals (weights, support and
 * query sets) are read here, into `real`; everything else by the JSON layer's readers.
 *
 * Printing: weights with "%.9g" (float) or "%.17g" (double), which round-trip a real exactly;
 * other doubles with the shortest of %.15g..%.17g that reads back to the same value; non-finite
 * values as null. Callers release output strings with free().
 *
 * Sizes: configs are a few hundred bytes; model files hold P reals (1,761 for the 1-40-40-1
 * sinusoid net, ~20 bytes each); metagrad inputs are small. Everything is bounded by
 * CODEC_MAX_BODY_BYTES before the parser runs.
 */
#include "metaserve/codec/codec.h"

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "metaserve/codec/json.h"

_Static_assert(CODEC_MAX_BODY_BYTES == JSON_MAX_BODY_BYTES, "one document size limit");

#define MAX_ROWS 1000000            // rows of a metagrad support or query set
#define SEED_MAX 9007199254740991LL // 2^53 - 1: the largest integer a JSON double holds exactly

/* ---- small helpers ---- */

// 1 when v is finite and stays finite once rounded to real.
static int real_ok(double v) {
    return isfinite(v) && isfinite((double)(real)v);
}

/* ---- parsing ---- */

// An object field of obj, or NULL when absent (case-sensitive, first occurrence).
static const cJSON *field(const cJSON *obj, const char *key) {
    return cJSON_GetObjectItemCaseSensitive(obj, key);
}

// dst[0..n) from an array of exactly n finite numbers. When labels > 0 every value must be a
// class index in 0..labels-1.
static MsStatus get_reals(real *dst, int n, const cJSON *arr, const char *path, int labels,
                          MsError *err) {
    char p[JSON_PATH_LEN];
    if (!cJSON_IsArray(arr))
        return ms_fail(err, MS_ERR_INVALID, "%s: must be an array of %d numbers", path, n);
    int got = cJSON_GetArraySize(arr);
    if (got != n)
        return ms_fail(err, MS_ERR_INVALID, "%s: expected %d numbers, got %d", path, n, got);
    int i = 0;
    for (const cJSON *e = arr->child; e; e = e->next, i++) {
        double v = cJSON_IsNumber(e) ? e->valuedouble : NAN;
        if (labels > 0 && !(v == floor(v) && v >= 0 && v < labels))
            return ms_fail(err, MS_ERR_INVALID, "%s: must be a class index in 0..%d",
                           json_path_index(p, path, i), labels - 1);
        if (isfinite(v) && !real_ok(v))
            return ms_fail(err, MS_ERR_INVALID, "%s: overflows float32 (magnitude at most %.8g)",
                           json_path_index(p, path, i), (double)FLT_MAX);
        if (!real_ok(v))
            return ms_fail(err, MS_ERR_INVALID, "%s: must be a finite number",
                           json_path_index(p, path, i));
        dst[i] = (real)v;
    }
    return MS_OK;
}

// Rows x cols reals from an array of rows arrays of cols numbers each.
static MsStatus get_matrix(real *dst, int rows, int cols, const cJSON *arr, const char *path,
                           int labels, MsError *err) {
    char p[JSON_PATH_LEN];
    if (!cJSON_IsArray(arr))
        return ms_fail(err, MS_ERR_INVALID, "%s: must be an array of %d rows", path, rows);
    int got = cJSON_GetArraySize(arr);
    if (got != rows)
        return ms_fail(err, MS_ERR_INVALID, "%s: expected %d rows, got %d", path, rows, got);
    int r = 0;
    for (const cJSON *row = arr->child; row; row = row->next, r++) {
        MsStatus st = get_reals(dst + (size_t)r * (size_t)cols, cols, row,
                                json_path_index(p, path, r), labels, err);
        if (st != MS_OK) return st;
    }
    return MS_OK;
}

// theta (spec->P reals) from a list of layers {"W": [[in] x out], "b": [out]}.
static MsStatus weights_from_json(real *theta, const MlpSpec *spec, const cJSON *arr,
                                  const char *path, MsError *err) {
    static const char *const LAYER_FIELDS[] = {"W", "b", NULL};
    char pl[JSON_PATH_LEN], p[JSON_PATH_LEN];
    if (!cJSON_IsArray(arr))
        return ms_fail(err, MS_ERR_INVALID, "%s: must be an array of %d layers", path, spec->L);
    int got = cJSON_GetArraySize(arr);
    if (got != spec->L)
        return ms_fail(err, MS_ERR_INVALID, "%s: expected %d layers, got %d", path, spec->L, got);
    int l = 0;
    for (const cJSON *layer = arr->child; layer; layer = layer->next, l++) {
        MsStatus st = json_need_object(layer, json_path_index(pl, path, l), err);
        if (st == MS_OK) st = json_fields(layer, pl, LAYER_FIELDS, err);
        if (st == MS_OK && (!field(layer, "W") || !field(layer, "b")))
            st = ms_fail(err, MS_ERR_INVALID, "%s: needs both \"W\" and \"b\"", pl);
        const int in = spec->sizes[l], out = spec->sizes[l + 1];
        if (st == MS_OK)
            st = get_matrix(theta + spec->w_off[l], out, in, field(layer, "W"),
                            json_path_key(p, pl, "W"), 0, err);
        if (st == MS_OK)
            st = get_reals(theta + spec->b_off[l], out, field(layer, "b"),
                           json_path_key(p, pl, "b"), 0, err);
        if (st != MS_OK) return st;
    }
    return MS_OK;
}

/* ---- training config ---- */

static MsStatus arch_from_json(TrainConfig *c, const cJSON *obj, const char *path, MsError *err) {
    static const char *const FIELDS[] = {"sizes", "activation", "head", NULL};
    char p[JSON_PATH_LEN], q[JSON_PATH_LEN], e[JSON_ECHO_LEN + 4];
    MsStatus st = json_need_object(obj, path, err);
    if (st == MS_OK) st = json_fields(obj, path, FIELDS, err);
    if (st != MS_OK) return st;
    const cJSON *it;
    if ((it = field(obj, "sizes"))) {
        json_path_key(p, path, "sizes");
        int n = cJSON_IsArray(it) ? cJSON_GetArraySize(it) : 0;
        if (n < 2 || n > MLP_MAX_LAYERS + 1)
            return ms_fail(err, MS_ERR_INVALID, "%s: must be an array of 2..%d layer widths", p,
                           MLP_MAX_LAYERS + 1);
        int i = 0;
        for (const cJSON *s = it->child; s; s = s->next, i++)
            if ((st = json_read_small(s, json_path_index(q, p, i), 1, MLP_MAX_WIDTH, &c->sizes[i],
                                      err)) != MS_OK)
                return st;
        c->n_sizes = n;
    }
    if ((it = field(obj, "activation"))) {
        if (!cJSON_IsString(it) || mlp_act_parse(it->valuestring, &c->act) != MS_OK)
            return ms_fail(err, MS_ERR_INVALID, "%s: must be \"relu\", \"tanh\" or \"sigmoid\"%s%s",
                           json_path_key(p, path, "activation"), cJSON_IsString(it) ? ", not " : "",
                           cJSON_IsString(it) ? json_echo(e, it->valuestring) : "");
    }
    if ((it = field(obj, "head"))) {
        if (!cJSON_IsString(it) || mlp_head_parse(it->valuestring, &c->head) != MS_OK)
            return ms_fail(err, MS_ERR_INVALID, "%s: must be \"regression\" or \"classification\"",
                           json_path_key(p, path, "head"));
    }
    return MS_OK;
}

static MsStatus inner_from_json(TrainConfig *c, const cJSON *obj, const char *path, MsError *err) {
    static const char *const FIELDS[] = {"lr", "steps", NULL};
    char p[JSON_PATH_LEN];
    MsStatus st = json_need_object(obj, path, err);
    if (st == MS_OK) st = json_fields(obj, path, FIELDS, err);
    const cJSON *it;
    if (st == MS_OK && (it = field(obj, "lr")))
        st = json_read_num(it, json_path_key(p, path, "lr"), 0, 1, 10, &c->inner_lr, err);
    if (st == MS_OK && (it = field(obj, "steps")))
        st = json_read_small(it, json_path_key(p, path, "steps"), 0, META_MAX_STEPS,
                             &c->inner_steps, err);
    return st;
}

static MsStatus outer_from_json(TrainConfig *c, const cJSON *obj, const char *path, MsError *err) {
    static const char *const FIELDS[] = {"optimizer", "lr",    "clip_norm", "anneal",
                                         "beta1",     "beta2", "eps",       NULL};
    char p[JSON_PATH_LEN];
    MsStatus st = json_need_object(obj, path, err);
    if (st == MS_OK) st = json_fields(obj, path, FIELDS, err);
    if (st != MS_OK) return st;
    const cJSON *it;
    if ((it = field(obj, "optimizer"))) {
        const char *s = cJSON_IsString(it) ? it->valuestring : "";
        if (strcmp(s, "adam") == 0)
            c->opt = OPT_ADAM;
        else if (strcmp(s, "sgd") == 0)
            c->opt = OPT_SGD;
        else
            return ms_fail(err, MS_ERR_INVALID, "%s: must be \"adam\" or \"sgd\"",
                           json_path_key(p, path, "optimizer"));
    }
    if ((it = field(obj, "lr")) && (st = json_read_num(it, json_path_key(p, path, "lr"), 0, 1, 10,
                                                       &c->outer_lr, err)) != MS_OK)
        return st;
    if ((it = field(obj, "clip_norm"))) {
        if (cJSON_IsNull(it))
            c->clip_norm = 0;
        else if (!cJSON_IsNumber(it) || !isfinite(it->valuedouble) || it->valuedouble <= 0)
            return ms_fail(err, MS_ERR_INVALID, "%s: must be a number > 0, or null",
                           json_path_key(p, path, "clip_norm"));
        else
            c->clip_norm = it->valuedouble;
    }
    if ((it = field(obj, "anneal"))) {
        if (!cJSON_IsBool(it))
            return ms_fail(err, MS_ERR_INVALID, "%s: must be true or false",
                           json_path_key(p, path, "anneal"));
        c->anneal = cJSON_IsTrue(it);
    }
    if ((it = field(obj, "beta1")) && (st = json_read_num(it, json_path_key(p, path, "beta1"), 0, 0,
                                                          0.999999, &c->adam_beta1, err)) != MS_OK)
        return st;
    if ((it = field(obj, "beta2")) && (st = json_read_num(it, json_path_key(p, path, "beta2"), 0, 0,
                                                          0.999999, &c->adam_beta2, err)) != MS_OK)
        return st;
    if ((it = field(obj, "eps")) && (st = json_read_num(it, json_path_key(p, path, "eps"), 0, 1, 1,
                                                        &c->adam_eps, err)) != MS_OK)
        return st;
    return MS_OK;
}

static MsStatus tasks_from_json(TrainConfig *c, const cJSON *obj, const char *path, MsError *err) {
    static const char *const FIELDS[] = {"family", "dataset", "k_support", "k_query",
                                         "n_way",  "dim",     NULL};
    char p[JSON_PATH_LEN];
    MsStatus st = json_need_object(obj, path, err);
    if (st == MS_OK) st = json_fields(obj, path, FIELDS, err);
    if (st != MS_OK) return st;
    const cJSON *it;
    if ((it = field(obj, "dataset"))) {
        // an uploaded dataset's id: 32 lowercase hex characters (store.h)
        const char *d = cJSON_IsString(it) ? it->valuestring : NULL;
        size_t n = d ? strlen(d) : 0;
        int ok = n == 32;
        for (size_t i = 0; ok && i < n; i++)
            ok = (d[i] >= '0' && d[i] <= '9') || (d[i] >= 'a' && d[i] <= 'f');
        if (!ok)
            return ms_fail(err, MS_ERR_INVALID, "%s: must be a dataset id (32 hex characters)",
                           json_path_key(p, path, "dataset"));
        if (field(obj, "family"))
            return ms_fail(err, MS_ERR_INVALID, "%s: give either \"family\" or \"dataset\"",
                           json_path_key(p, path, "dataset"));
        memcpy(c->tasks.dataset, d, n + 1);
        c->tasks.family[0] = '\0';
    }
    if ((it = field(obj, "family")) && (st = json_read_str(it, json_path_key(p, path, "family"),
                                                           c->tasks.family, TASK_FAMILY_MAX, err)))
        return st;
    if ((it = field(obj, "k_support")) &&
        (st = json_read_small(it, json_path_key(p, path, "k_support"), 1, 10000, &c->k_support,
                              err)))
        return st;
    if ((it = field(obj, "k_query")) &&
        (st = json_read_small(it, json_path_key(p, path, "k_query"), 1, 10000, &c->k_query, err)))
        return st;
    if ((it = field(obj, "n_way")) && (st = json_read_small(it, json_path_key(p, path, "n_way"), 2,
                                                            MLP_MAX_WIDTH, &c->tasks.n_way, err)))
        return st;
    if ((it = field(obj, "dim")) && (st = json_read_small(it, json_path_key(p, path, "dim"), 1,
                                                          MLP_MAX_WIDTH, &c->tasks.dim, err)))
        return st;
    return MS_OK;
}

// Fills c (already holding the defaults) from a config object; path is "" or "config".
static MsStatus config_fields(TrainConfig *c, const cJSON *obj, const char *path, MsError *err) {
    static const char *const FIELDS[] = {"name",  "architecture", "algorithm",  "inner",
                                         "outer", "meta_batch",   "iterations", "seed",
                                         "tasks", "threads",      "init",       NULL};
    char p[JSON_PATH_LEN], e[JSON_ECHO_LEN + 4];
    MsStatus st = json_need_object(obj, *path ? path : "body", err);
    if (st == MS_OK) st = json_fields(obj, path, FIELDS, err);
    if (st != MS_OK) return st;
    const cJSON *it;
    long long v;
    if ((it = field(obj, "name")) &&
        (st = json_read_str(it, json_path_key(p, path, "name"), c->name, TRAIN_NAME_MAX, err)))
        return st;
    if ((it = field(obj, "architecture")) &&
        (st = arch_from_json(c, it, json_path_key(p, path, "architecture"), err)))
        return st;
    if ((it = field(obj, "algorithm"))) {
        if (!cJSON_IsString(it) || meta_algo_parse(it->valuestring, &c->algo) != MS_OK)
            return ms_fail(err, MS_ERR_INVALID,
                           "%s: must be one of maml, fomaml, metasgd, anil, reptile, pretrain%s%s",
                           json_path_key(p, path, "algorithm"), cJSON_IsString(it) ? ", not " : "",
                           cJSON_IsString(it) ? json_echo(e, it->valuestring) : "");
    }
    if ((it = field(obj, "inner")) &&
        (st = inner_from_json(c, it, json_path_key(p, path, "inner"), err)))
        return st;
    if ((it = field(obj, "outer")) &&
        (st = outer_from_json(c, it, json_path_key(p, path, "outer"), err)))
        return st;
    if ((it = field(obj, "meta_batch")) &&
        (st = json_read_small(it, json_path_key(p, path, "meta_batch"), 1, 10000, &c->meta_batch,
                              err)))
        return st;
    if ((it = field(obj, "threads")) &&
        (st = json_read_small(it, json_path_key(p, path, "threads"), 1, TRAIN_MAX_THREADS,
                              &c->threads, err)))
        return st;
    if ((it = field(obj, "iterations"))) {
        if ((st = json_read_int(it, json_path_key(p, path, "iterations"), 1, 1000000000, &v, err)))
            return st;
        c->iterations = (long)v;
    }
    if ((it = field(obj, "seed"))) {
        if ((st = json_read_int(it, json_path_key(p, path, "seed"), 0, SEED_MAX, &v, err)))
            return st;
        c->seed = (uint64_t)v;
    }
    if ((it = field(obj, "tasks")) &&
        (st = tasks_from_json(c, it, json_path_key(p, path, "tasks"), err)))
        return st;
    if ((it = field(obj, "init")) && !cJSON_IsNull(it)) {
        // {"model": "name", "name@3" or "name@alias"}: resolved against the store when queued
        static const char *const INIT_FIELDS[] = {"model", NULL};
        const char *ip = json_path_key(p, path, "init");
        char q[JSON_PATH_LEN];
        if ((st = json_need_object(it, ip, err)) || (st = json_fields(it, ip, INIT_FIELDS, err)))
            return st;
        const cJSON *m = field(it, "model");
        if (!m)
            return ms_fail(err, MS_ERR_INVALID, "%s: is required", json_path_key(q, ip, "model"));
        if ((st = json_read_str(m, json_path_key(q, ip, "model"), c->init_model,
                                sizeof c->init_model, err)))
            return st;
    }
    return MS_OK;
}

// Defaults, the fields of obj, then train_config_validate; messages of the latter get the prefix.
static MsStatus config_from_json(TrainConfig *c, const cJSON *obj, const char *path, MsError *err) {
    train_config_defaults(c);
    MsStatus st = config_fields(c, obj, path, err);
    if (st != MS_OK) return st;
    MsError local = {0};
    st = train_config_validate(c, &local);
    if (st != MS_OK)
        return ms_fail_detail(err, st, local.detail, "%s%s%s", path, *path ? "." : "", local.msg);
    return MS_OK;
}

MsStatus codec_config_from_doc(TrainConfig *c, const cJSON *doc, MsError *err) {
    if (!cJSON_IsObject(doc)) return ms_fail(err, MS_ERR_INVALID, "body: must be a JSON object");
    return config_from_json(c, doc, "", err);
}

MsStatus codec_config_parse(TrainConfig *c, const char *body, size_t len, MsError *err) {
    cJSON *root = NULL;
    MsStatus st = json_parse(&root, body, len, "body", 1, err);
    if (st == MS_OK) st = codec_config_from_doc(c, root, err);
    cJSON_Delete(root);
    return st;
}

/* ---- building ---- */

// The format that round-trips a real.
static const char *real_fmt(void) {
    return sizeof(real) == sizeof(float) ? "%.9g" : "%.17g";
}

// n reals as a JSON array, each printed with fmt.
static cJSON *reals_json(JsonBuild *b, const real *x, int n, const char *fmt) {
    cJSON *arr = cJSON_CreateArray();
    for (int i = 0; i < n && arr; i++)
        json_put(b, arr, NULL, json_num_fmt((double)x[i], fmt));
    if (!arr) b->oom = 1;
    return arr;
}

// theta (spec->P reals) as a list of layers {"W": [[in] x out], "b": [out]}.
static cJSON *weights_json(JsonBuild *b, const MlpSpec *spec, const real *theta, const char *fmt) {
    cJSON *layers = cJSON_CreateArray();
    for (int l = 0; l < spec->L && layers; l++) {
        const int in = spec->sizes[l], out = spec->sizes[l + 1];
        cJSON *layer = json_put(b, layers, NULL, cJSON_CreateObject());
        cJSON *W = json_put(b, layer, "W", cJSON_CreateArray());
        for (int r = 0; r < out && W; r++)
            json_put(b, W, NULL,
                     reals_json(b, theta + spec->w_off[l] + (size_t)r * (size_t)in, in, fmt));
        json_put(b, layer, "b", reals_json(b, theta + spec->b_off[l], out, fmt));
    }
    if (!layers) b->oom = 1;
    return layers;
}

static cJSON *config_json(JsonBuild *b, const TrainConfig *c) {
    cJSON *o = cJSON_CreateObject();
    json_put(b, o, "name", cJSON_CreateString(c->name));
    cJSON *arch = json_put(b, o, "architecture", cJSON_CreateObject());
    cJSON *sizes = json_put(b, arch, "sizes", cJSON_CreateArray());
    for (int i = 0; i < c->n_sizes && sizes; i++)
        json_put(b, sizes, NULL, json_integer(c->sizes[i]));
    json_put(b, arch, "activation", cJSON_CreateString(mlp_act_name(c->act)));
    json_put(b, arch, "head", cJSON_CreateString(mlp_head_name(c->head)));
    json_put(b, o, "algorithm", cJSON_CreateString(meta_algo_name(c->algo)));
    cJSON *inner = json_put(b, o, "inner", cJSON_CreateObject());
    json_put(b, inner, "lr", json_num(c->inner_lr));
    json_put(b, inner, "steps", json_integer(c->inner_steps));
    cJSON *outer = json_put(b, o, "outer", cJSON_CreateObject());
    json_put(b, outer, "optimizer", cJSON_CreateString(c->opt == OPT_ADAM ? "adam" : "sgd"));
    json_put(b, outer, "lr", json_num(c->outer_lr));
    json_put(b, outer, "clip_norm", c->clip_norm > 0 ? json_num(c->clip_norm) : cJSON_CreateNull());
    if (c->anneal >= 0) json_put(b, outer, "anneal", cJSON_CreateBool(c->anneal));
    if (c->opt == OPT_ADAM) {
        json_put(b, outer, "beta1", json_num(c->adam_beta1));
        json_put(b, outer, "beta2", json_num(c->adam_beta2));
        json_put(b, outer, "eps", json_num(c->adam_eps));
    }
    json_put(b, o, "meta_batch", json_integer(c->meta_batch));
    json_put(b, o, "iterations", json_integer(c->iterations));
    json_put(b, o, "seed", json_uinteger(c->seed));
    if (c->threads > 0) json_put(b, o, "threads", json_integer(c->threads));
    if (c->init_model[0]) {
        cJSON *init = json_put(b, o, "init", cJSON_CreateObject());
        json_put(b, init, "model", cJSON_CreateString(c->init_model));
    }
    cJSON *tasks = json_put(b, o, "tasks", cJSON_CreateObject());
    if (c->tasks.dataset[0])
        json_put(b, tasks, "dataset", cJSON_CreateString(c->tasks.dataset));
    else
        json_put(b, tasks, "family", cJSON_CreateString(c->tasks.family));
    json_put(b, tasks, "k_support", json_integer(c->k_support));
    json_put(b, tasks, "k_query", json_integer(c->k_query));
    if (c->tasks.n_way) json_put(b, tasks, "n_way", json_integer(c->tasks.n_way));
    if (c->tasks.dim) json_put(b, tasks, "dim", json_integer(c->tasks.dim));
    if (!o) b->oom = 1;
    return o;
}

MsStatus codec_config_print(const TrainConfig *c, char **out, MsError *err) {
    JsonBuild b = {0};
    return json_finish(&b, config_json(&b, c), 1, out, err);
}

/* ---- weights ---- */

MsStatus codec_weights_from_doc(real *theta, const MlpSpec *spec, const struct cJSON *doc,
                                const char *path, MsError *err) {
    return weights_from_json(theta, spec, doc, path, err);
}

MsStatus codec_weights_parse(real *theta, const MlpSpec *spec, const char *body, size_t len,
                             MsError *err) {
    cJSON *doc = NULL;
    MsStatus st = json_parse(&doc, body, len, "weights", 0, err);
    if (st == MS_OK) st = weights_from_json(theta, spec, doc, "weights", err);
    cJSON_Delete(doc);
    return st;
}

MsStatus codec_weights_print(const MlpSpec *spec, const real *theta, char **out, MsError *err) {
    JsonBuild b = {0};
    return json_finish(&b, weights_json(&b, spec, theta, real_fmt()), 0, out, err);
}

/* ---- model files ---- */

static int metric_key_ok(const char *s) {
    size_t n = strlen(s);
    if (n == 0 || n >= CODEC_METRIC_KEY_MAX) return 0;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '_' || ch == '.' || ch == '-'))
            return 0;
    }
    return 1;
}

MsStatus codec_model_print(const TrainConfig *cfg, const real *theta, const real *lrs,
                           const CodecMetric *metrics, int n_metrics, char **out, MsError *err) {
    *out = NULL;
    MlpSpec spec;
    MsStatus st = mlp_spec_init(&spec, cfg->sizes, cfg->n_sizes, cfg->act, cfg->head, err);
    if (st != MS_OK) return st;
    if (cfg->algo == META_METASGD && !lrs)
        return ms_fail(err, MS_ERR_INVALID, "lrs: required for metasgd");
    if (n_metrics < 0 || n_metrics > CODEC_MAX_METRICS)
        return ms_fail(err, MS_ERR_INVALID, "metrics: at most %d entries", CODEC_MAX_METRICS);
    for (int i = 0; i < n_metrics; i++)
        if (!metric_key_ok(metrics[i].key))
            return ms_fail(err, MS_ERR_INVALID, "metrics[%d]: bad key", i);
    JsonBuild b = {0};
    cJSON *root = cJSON_CreateObject();
    json_put(&b, root, "format", cJSON_CreateString(CODEC_MODEL_FORMAT));
    json_put(&b, root, "config", config_json(&b, cfg));
    json_put(&b, root, "weights", weights_json(&b, &spec, theta, real_fmt()));
    if (cfg->algo == META_METASGD)
        json_put(&b, root, "lrs", weights_json(&b, &spec, lrs, real_fmt()));
    cJSON *m = json_put(&b, root, "metrics", cJSON_CreateObject());
    for (int i = 0; i < n_metrics; i++)
        json_put(&b, m, metrics[i].key, json_num(metrics[i].value));
    return json_finish(&b, root, 1, out, err);
}

static MsStatus metrics_from_json(CodecModel *m, const cJSON *obj, MsError *err) {
    char p[JSON_PATH_LEN], e[JSON_ECHO_LEN + 4];
    MsStatus st = json_need_object(obj, "metrics", err);
    if (st != MS_OK) return st;
    for (const cJSON *it = obj->child; it; it = it->next) {
        if (!metric_key_ok(it->string))
            return ms_fail(
                err, MS_ERR_INVALID, "%s: metric names are 1..%d characters of [A-Za-z0-9_.-]",
                json_path_key(p, "metrics", json_echo(e, it->string)), CODEC_METRIC_KEY_MAX - 1);
        if (m->n_metrics == CODEC_MAX_METRICS)
            return ms_fail(err, MS_ERR_INVALID, "metrics: at most %d entries", CODEC_MAX_METRICS);
        for (int i = 0; i < m->n_metrics; i++)
            if (strcmp(m->metrics[i].key, it->string) == 0)
                return ms_fail(err, MS_ERR_INVALID, "%s: duplicate field",
                               json_path_key(p, "metrics", it->string));
        if (!cJSON_IsNull(it) && !(cJSON_IsNumber(it) && isfinite(it->valuedouble)))
            return ms_fail(err, MS_ERR_INVALID, "%s: must be a finite number or null",
                           json_path_key(p, "metrics", it->string));
        CodecMetric *cm = &m->metrics[m->n_metrics++];
        memcpy(cm->key, it->string, strlen(it->string) + 1);
        cm->value = cJSON_IsNull(it) ? NAN : it->valuedouble;
    }
    return MS_OK;
}

MsStatus codec_model_parse(CodecModel *m, const char *body, size_t len, MsError *err) {
    static const char *const FIELDS[] = {"format", "config", "weights", "lrs", "metrics", NULL};
    memset(m, 0, sizeof *m);
    cJSON *root = NULL;
    MsStatus st = json_parse(&root, body, len, "body", 1, err);
    if (st == MS_OK) st = json_fields(root, "", FIELDS, err);
    if (st != MS_OK) goto done;
    const cJSON *fmt = field(root, "format");
    if (!cJSON_IsString(fmt) || strcmp(fmt->valuestring, CODEC_MODEL_FORMAT) != 0) {
        st = ms_fail(err, MS_ERR_INVALID, "format: must be \"%s\"", CODEC_MODEL_FORMAT);
        goto done;
    }
    if (!field(root, "config") || !field(root, "weights")) {
        st = ms_fail(err, MS_ERR_INVALID, "%s: required field missing",
                     field(root, "config") ? "weights" : "config");
        goto done;
    }
    if ((st = config_from_json(&m->cfg, field(root, "config"), "config", err))) goto done;
    const TrainConfig *c = &m->cfg;
    if ((st = mlp_spec_init(&m->spec, c->sizes, c->n_sizes, c->act, c->head, err))) goto done;
    int metasgd = c->algo == META_METASGD;
    if (metasgd != (field(root, "lrs") != NULL)) {
        st = ms_fail(err, MS_ERR_INVALID, "lrs: %s",
                     metasgd ? "required for metasgd models" : "only allowed for metasgd models");
        goto done;
    }
    m->theta = malloc(m->spec.P * sizeof(real));
    if (metasgd) m->lrs = malloc(m->spec.P * sizeof(real));
    if (!m->theta || (metasgd && !m->lrs)) {
        st = ms_fail(err, MS_ERR_NOMEM, "cannot allocate %zu parameters", m->spec.P);
        goto done;
    }
    if ((st = weights_from_json(m->theta, &m->spec, field(root, "weights"), "weights", err)))
        goto done;
    if (metasgd && (st = weights_from_json(m->lrs, &m->spec, field(root, "lrs"), "lrs", err)))
        goto done;
    if (field(root, "metrics")) st = metrics_from_json(m, field(root, "metrics"), err);
done:
    cJSON_Delete(root);
    return st;
}

void codec_model_free(CodecModel *m) {
    if (!m) return;
    free(m->theta);
    free(m->lrs);
    memset(m, 0, sizeof *m);
}

/* ---- metagrad ---- */

// Counts the rows of a required array field, 1..MAX_ROWS.
static MsStatus count_rows(const cJSON *obj, const char *key, int *rows, MsError *err) {
    const cJSON *it = field(obj, key);
    int n = cJSON_IsArray(it) ? cJSON_GetArraySize(it) : 0;
    if (n < 1 || n > MAX_ROWS)
        return ms_fail(err, MS_ERR_INVALID, "%s: must be an array of 1..%d rows", key, MAX_ROWS);
    *rows = n;
    return MS_OK;
}

// sizes, activation and loss into in->spec.
static MsStatus metagrad_spec(CodecMetagradInput *in, const cJSON *root, MsError *err) {
    char p[JSON_PATH_LEN];
    int sizes[MLP_MAX_LAYERS + 1];
    const cJSON *it = field(root, "sizes");
    int n = cJSON_IsArray(it) ? cJSON_GetArraySize(it) : 0;
    if (n < 2 || n > MLP_MAX_LAYERS + 1)
        return ms_fail(err, MS_ERR_INVALID, "sizes: must be an array of 2..%d layer widths",
                       MLP_MAX_LAYERS + 1);
    int i = 0;
    MsStatus st = MS_OK;
    for (const cJSON *s = it->child; s && st == MS_OK; s = s->next, i++)
        st = json_read_small(s, json_path_index(p, "sizes", i), 1, MLP_MAX_WIDTH, &sizes[i], err);
    if (st != MS_OK) return st;
    MlpAct act;
    it = field(root, "activation");
    if (!cJSON_IsString(it) || mlp_act_parse(it->valuestring, &act) != MS_OK)
        return ms_fail(err, MS_ERR_INVALID,
                       "activation: must be \"relu\", \"tanh\" or \"sigmoid\"");
    MlpHead head;
    it = field(root, "loss");
    const char *loss = cJSON_IsString(it) ? it->valuestring : "";
    if (strcmp(loss, "mse") == 0)
        head = MLP_HEAD_REGRESSION;
    else if (strcmp(loss, "ce") == 0)
        head = MLP_HEAD_CLASSIFICATION;
    else
        return ms_fail(err, MS_ERR_INVALID, "loss: must be \"mse\" or \"ce\"");
    MsError local = {0};
    if (mlp_spec_init(&in->spec, sizes, n, act, head, &local) != MS_OK)
        return ms_fail(err, MS_ERR_INVALID, "sizes: %s", local.msg);
    return MS_OK;
}

// algo, steps, alpha.
static MsStatus metagrad_scalars(CodecMetagradInput *in, const cJSON *root, MsError *err) {
    const cJSON *it = field(root, "algo");
    if (!cJSON_IsString(it) || meta_algo_parse(it->valuestring, &in->algo) != MS_OK ||
        !(in->algo == META_MAML || in->algo == META_FOMAML || in->algo == META_METASGD ||
          in->algo == META_ANIL))
        return ms_fail(err, MS_ERR_INVALID,
                       "algo: must be \"maml\", \"fomaml\", \"metasgd\" or "
                       "\"anil\"");
    MsStatus st =
        json_read_small(field(root, "steps"), "steps", 0, META_MAX_STEPS, &in->steps, err);
    if (st != MS_OK) return st;
    in->alpha = 0;
    it = field(root, "alpha");
    if (in->algo == META_METASGD && !it) return MS_OK; // the rates come from "lrs"
    double a = cJSON_IsNumber(it) ? it->valuedouble : NAN;
    if (!(real_ok(a) && a >= 0))
        return ms_fail(err, MS_ERR_INVALID, "alpha: must be a finite number >= 0");
    in->alpha = a;
    return MS_OK;
}

MsStatus codec_metagrad_parse(CodecMetagradInput *in, const char *body, size_t len, MsError *err) {
    static const char *const FIELDS[] = {
        "sizes",   "activation", "loss",  "weights", "support_x", "support_y", "query_x",
        "query_y", "alpha",      "steps", "algo",    "lrs",       NULL};
    static const char *const REQUIRED[] = {"sizes",     "activation", "loss",    "weights",
                                           "support_x", "support_y",  "query_x", "query_y",
                                           "steps",     "algo",       NULL};
    memset(in, 0, sizeof *in);
    cJSON *root = NULL;
    MsStatus st = json_parse(&root, body, len, "body", 1, err);
    if (st == MS_OK) st = json_fields(root, "", FIELDS, err);
    for (const char *const *k = REQUIRED; st == MS_OK && *k; k++)
        if (!field(root, *k)) st = ms_fail(err, MS_ERR_INVALID, "%s: required field missing", *k);
    if (st == MS_OK) st = metagrad_spec(in, root, err);
    if (st == MS_OK) st = metagrad_scalars(in, root, err);
    if (st == MS_OK) st = count_rows(root, "support_x", &in->ns, err);
    if (st == MS_OK) st = count_rows(root, "query_x", &in->nq, err);
    if (st != MS_OK) goto done;
    const MlpSpec *s = &in->spec;
    const size_t P = s->P, D = (size_t)s->sizes[0], C = (size_t)mlp_target_cols(s);
    const int labels = s->head == MLP_HEAD_CLASSIFICATION ? s->sizes[s->L] : 0;
    int metasgd = in->algo == META_METASGD;
    if (metasgd != (field(root, "lrs") != NULL)) {
        st = ms_fail(err, MS_ERR_INVALID, "lrs: %s",
                     metasgd ? "required for metasgd" : "only allowed with \"algo\": \"metasgd\"");
        goto done;
    }
    in->theta = malloc(P * sizeof(real));
    in->lrs = metasgd ? malloc(P * sizeof(real)) : NULL;
    in->xs = malloc((size_t)in->ns * D * sizeof(real));
    in->ys = malloc((size_t)in->ns * C * sizeof(real));
    in->xq = malloc((size_t)in->nq * D * sizeof(real));
    in->yq = malloc((size_t)in->nq * C * sizeof(real));
    if (!in->theta || (metasgd && !in->lrs) || !in->xs || !in->ys || !in->xq || !in->yq) {
        st = ms_fail(err, MS_ERR_NOMEM, "cannot allocate the input arrays");
        goto done;
    }
    if ((st = weights_from_json(in->theta, s, field(root, "weights"), "weights", err))) goto done;
    if (metasgd && (st = weights_from_json(in->lrs, s, field(root, "lrs"), "lrs", err))) goto done;
    if ((st = get_matrix(in->xs, in->ns, (int)D, field(root, "support_x"), "support_x", 0, err)))
        goto done;
    if ((st = get_matrix(in->ys, in->ns, (int)C, field(root, "support_y"), "support_y", labels,
                         err)))
        goto done;
    if ((st = get_matrix(in->xq, in->nq, (int)D, field(root, "query_x"), "query_x", 0, err)))
        goto done;
    st = get_matrix(in->yq, in->nq, (int)C, field(root, "query_y"), "query_y", labels, err);
done:
    cJSON_Delete(root);
    return st;
}

void codec_metagrad_free(CodecMetagradInput *in) {
    if (!in) return;
    free(in->theta);
    free(in->lrs);
    free(in->xs);
    free(in->ys);
    free(in->xq);
    free(in->yq);
    memset(in, 0, sizeof *in);
}

MsStatus codec_metagrad_print(const MlpSpec *spec, const CodecMetagradOutput *o, char **out,
                              MsError *err) {
    static const char F17[] = "%.17g";
    JsonBuild b = {0};
    cJSON *root = cJSON_CreateObject();
    json_put(&b, root, "query_loss_initial", json_num_fmt(o->query_loss_initial, F17));
    json_put(&b, root, "query_loss", json_num_fmt(o->query_loss, F17));
    cJSON *sl = json_put(&b, root, "support_losses", cJSON_CreateArray());
    for (int i = 0; i < o->n_support_losses && sl; i++)
        json_put(&b, sl, NULL, json_num_fmt(o->support_losses[i], F17));
    json_put(&b, root, "adapted_weights", weights_json(&b, spec, o->adapted, F17));
    json_put(&b, root, "meta_grad", weights_json(&b, spec, o->meta_grad, F17));
    json_put(&b, root, "meta_grad_lrs",
             o->meta_grad_lrs ? weights_json(&b, spec, o->meta_grad_lrs, F17) : cJSON_CreateNull());
    return json_finish(&b, root, 0, out, err);
}

/* ---- command reports ---- */

MsStatus codec_train_summary_print(const CodecTrainSummary *s, char **out, MsError *err) {
    JsonBuild b = {0};
    cJSON *root = cJSON_CreateObject();
    json_put(&b, root, "model", cJSON_CreateString(s->model));
    json_put(&b, root, "algorithm", cJSON_CreateString(s->algorithm));
    json_put(&b, root, "out", cJSON_CreateString(s->out));
    json_put(&b, root, "iterations", json_integer(s->iterations));
    json_put(&b, root, "meta_loss", json_num(s->meta_loss));
    json_put(&b, root, "seconds", json_num(s->seconds));
    json_put(&b, root, "tasks_per_s", json_num(s->tasks_per_s));
    return json_finish(&b, root, 0, out, err);
}

MsStatus codec_eval_print(const TrainConfig *cfg, int n_tasks, int n_query, unsigned long long seed,
                          const EvalCell *cells, int n_cells, char **out, MsError *err) {
    JsonBuild b = {0};
    cJSON *root = cJSON_CreateObject();
    json_put(&b, root, "model", cJSON_CreateString(cfg->name));
    json_put(&b, root, "algorithm", cJSON_CreateString(meta_algo_name(cfg->algo)));
    json_put(&b, root, "metric",
             cJSON_CreateString(cfg->head == MLP_HEAD_CLASSIFICATION ? "accuracy" : "mse"));
    json_put(&b, root, "tasks", json_integer(n_tasks));
    json_put(&b, root, "query", json_integer(n_query));
    json_put(&b, root, "seed", json_uinteger(seed));
    cJSON *arr = json_put(&b, root, "cells", cJSON_CreateArray());
    for (int i = 0; i < n_cells && arr; i++) {
        cJSON *c = json_put(&b, arr, NULL, cJSON_CreateObject());
        json_put(&b, c, "k", json_integer(cells[i].k));
        json_put(&b, c, "steps", json_integer(cells[i].steps));
        json_put(&b, c, "mean", json_num(cells[i].mean));
        json_put(&b, c, "ci95", json_num(cells[i].ci95));
        json_put(&b, c, "mean_before", json_num(cells[i].mean_before));
    }
    return json_finish(&b, root, 0, out, err);
}
