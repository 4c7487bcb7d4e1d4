/*
 * Network weights as safetensors (include/metaserve/codec/weights_st.h): the tensor naming of a
 * PyTorch nn.Sequential state_dict over the mlp.h parameter layout, and the architecture object
 * carried in __metadata__. The byte format itself is safetensors.c's. Sizes: P floats, up to a few
 * million (the 784-256-256-5 net has 267,525), written in one pass into one buffer.
 */
#include "metaserve/codec/weights_st.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metaserve/codec/json.h"

#define NAME_LEN 48

// The state_dict names of linear layer l: module index 2l (activations in between).
static void layer_names(char w[NAME_LEN], char b[NAME_LEN], const char *prefix, int module) {
    snprintf(w, NAME_LEN, "%s%d.weight", prefix, module);
    snprintf(b, NAME_LEN, "%s%d.bias", prefix, module);
}

MsStatus codec_weights_st_print(const MlpSpec *spec, const float *theta, const float *lrs,
                                const char *const *meta, int n_meta, void **out, size_t *len,
                                MsError *err) {
    const int L = spec->L;
    StOut t[4 * MLP_MAX_LAYERS];
    char names[4 * MLP_MAX_LAYERS][NAME_LEN];
    int n = 0;
    for (int set = 0; set < (lrs ? 2 : 1); set++) {
        const float *v = set ? lrs : theta;
        for (int l = 0; l < L; l++) {
            layer_names(names[n], names[n + 1], set ? "lr." : "", 2 * l);
            t[n] = (StOut){names[n], 2, {spec->sizes[l + 1], spec->sizes[l]}, v + spec->w_off[l]};
            t[n + 1] = (StOut){names[n + 1], 1, {spec->sizes[l + 1]}, v + spec->b_off[l]};
            n += 2;
        }
    }
    return st_write(out, len, t, n, meta, n_meta, err);
}

// k when name is "<prefix><k>.weight" with k a decimal integer (no sign, no leading zero),
// else -1.
static long module_index(const char *name, const char *prefix, const char *suffix) {
    size_t pl = strlen(prefix), sl = strlen(suffix), n = strlen(name);
    if (n <= pl + sl || strncmp(name, prefix, pl) || strcmp(name + n - sl, suffix)) return -1;
    size_t d = n - pl - sl;
    if (d > 6 || strspn(name + pl, "0123456789") != d || (d > 1 && name[pl] == '0')) return -1;
    return strtol(name + pl, NULL, 10);
}

static int cmp_long(const void *a, const void *b) {
    long x = *(const long *)a, y = *(const long *)b;
    return (x > y) - (x < y);
}

// Reads one set ("" weights, "lr." rates) of L layers at modules[0..L) into v.
static MsStatus read_set(const StFile *f, const MlpSpec *spec, const long *modules,
                         const char *prefix, float *v, MsError *err) {
    for (int l = 0; l < spec->L; l++) {
        char w[NAME_LEN], b[NAME_LEN];
        layer_names(w, b, prefix, (int)modules[l]);
        const StTensor *tw = st_find(f, w), *tb = st_find(f, b);
        int64_t ws[2] = {spec->sizes[l + 1], spec->sizes[l]}, bs[1] = {spec->sizes[l + 1]};
        MsStatus s = st_expect(tw, w, 2, ws, err);
        if (s == MS_OK) s = st_expect(tb, b, 1, bs, err);
        if (s == MS_OK) s = st_read_f32(tw, v + spec->w_off[l], err);
        if (s == MS_OK) s = st_read_f32(tb, v + spec->b_off[l], err);
        if (s != MS_OK) return s;
    }
    return MS_OK;
}

MsStatus codec_weights_st_read(const StFile *f, const MlpSpec *spec, float *theta, float *lrs,
                               int *has_lrs, MsError *err) {
    long modules[MLP_MAX_LAYERS + 1];
    int L = 0, n_lr = 0;
    for (int i = 0; i < f->n_t; i++) {
        const char *nm = f->t[i].name;
        long k = module_index(nm, "", ".weight");
        if (k >= 0) {
            if (L == MLP_MAX_LAYERS)
                return ms_fail(err, MS_ERR_INVALID,
                               "tensor \"%s\": more linear layers than the architecture's %d", nm,
                               spec->L);
            modules[L++] = k;
        } else if (module_index(nm, "lr.", ".weight") >= 0) {
            n_lr++;
        } else if (module_index(nm, "", ".bias") < 0 && module_index(nm, "lr.", ".bias") < 0) {
            return ms_fail(err, MS_ERR_INVALID,
                           "tensor \"%s\": not a tensor of an nn.Sequential of Linear layers "
                           "(<i>.weight, <i>.bias, lr.<i>.weight, lr.<i>.bias)",
                           nm);
        }
    }
    if (L != spec->L)
        return ms_fail(err, MS_ERR_INVALID,
                       "architecture.sizes: %d linear layers, but the file holds %d "
                       "(<i>.weight tensors)",
                       spec->L, L);
    qsort(modules, (size_t)L, sizeof modules[0], cmp_long);
    // every other tensor must belong to one of these modules: count what the sets consume
    int expected = 2 * L + (n_lr ? 2 * L : 0);
    MsStatus s = read_set(f, spec, modules, "", theta, err);
    if (s == MS_OK && n_lr) s = read_set(f, spec, modules, "lr.", lrs, err);
    if (s != MS_OK) return s;
    if (f->n_t != expected) {
        for (int i = 0; i < f->n_t; i++) {
            const char *nm = f->t[i].name;
            long k = module_index(nm, "", ".bias");
            if (k < 0) k = module_index(nm, "lr.", ".bias");
            if (k < 0) k = module_index(nm, "lr.", ".weight");
            int known = 0;
            for (int l = 0; l < L && !known; l++)
                known = modules[l] == k && (n_lr || strncmp(nm, "lr.", 3) != 0);
            if (!known && module_index(nm, "", ".weight") < 0)
                return ms_fail(err, MS_ERR_INVALID,
                               "tensor \"%s\": belongs to no linear layer of the file", nm);
        }
    }
    *has_lrs = n_lr > 0;
    return MS_OK;
}

char *codec_arch_print(const MlpSpec *spec) {
    JsonBuild b = {0};
    cJSON *o = cJSON_CreateObject();
    cJSON *sz = json_put(&b, o, "sizes", cJSON_CreateArray());
    for (int i = 0; i <= spec->L && sz; i++)
        json_put(&b, sz, NULL, json_integer(spec->sizes[i]));
    json_put(&b, o, "activation", cJSON_CreateString(mlp_act_name(spec->act)));
    json_put(&b, o, "head", cJSON_CreateString(mlp_head_name(spec->head)));
    char *s = b.oom || !o ? NULL : cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

MsStatus codec_arch_parse(MlpSpec *spec, const char *text, const char *what, MsError *err) {
    static const char *const FIELDS[] = {"sizes", "activation", "head", NULL};
    cJSON *o = NULL;
    char p[JSON_PATH_LEN];
    MsStatus s = json_parse(&o, text, strlen(text), what, 1, err);
    if (s == MS_OK) s = json_fields(o, what, FIELDS, err);
    if (s != MS_OK) goto done;
    const cJSON *sz = cJSON_GetObjectItemCaseSensitive(o, "sizes");
    int sizes[MLP_MAX_LAYERS + 1], n = 0;
    if (!cJSON_IsArray(sz) || cJSON_GetArraySize(sz) < 2 ||
        cJSON_GetArraySize(sz) > MLP_MAX_LAYERS + 1) {
        s = ms_fail(err, MS_ERR_INVALID, "%s: must be an array of 2..%d layer widths",
                    json_path_key(p, what, "sizes"), MLP_MAX_LAYERS + 1);
        goto done;
    }
    char q[JSON_PATH_LEN];
    json_path_key(q, what, "sizes");
    for (const cJSON *e = sz->child; e && s == MS_OK; e = e->next, n++)
        s = json_read_small(e, json_path_index(p, q, n), 1, MLP_MAX_WIDTH, &sizes[n], err);
    if (s != MS_OK) goto done;
    MlpAct act = MLP_ACT_RELU;
    MlpHead head = MLP_HEAD_REGRESSION;
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(o, "activation");
    const cJSON *h = cJSON_GetObjectItemCaseSensitive(o, "head");
    if (a && (!cJSON_IsString(a) || mlp_act_parse(a->valuestring, &act) != MS_OK)) {
        s = ms_fail(err, MS_ERR_INVALID, "%s: must be \"relu\", \"tanh\" or \"sigmoid\"",
                    json_path_key(p, what, "activation"));
        goto done;
    }
    if (h && (!cJSON_IsString(h) || mlp_head_parse(h->valuestring, &head) != MS_OK)) {
        s = ms_fail(err, MS_ERR_INVALID, "%s: must be \"regression\" or \"classification\"",
                    json_path_key(p, what, "head"));
        goto done;
    }
    s = mlp_spec_init(spec, sizes, n, act, head, err);
done:
    cJSON_Delete(o);
    return s;
}
