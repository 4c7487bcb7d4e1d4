/*
 * Fuzz target: the safetensors parser (src/codec/safetensors.c) and the weights reader over it
 * (src/codec/weights_st.c), as POST /v1/models/{name}/versions runs them on a body.
 *
 * Checks: st_parse either refuses with MS_ERR_INVALID (and a zeroed file) or returns tensors that
 * tile the data exactly, each inside the input, with a byte length of prod(shape) x dtype size;
 * reading any float tensor gives finite floats or MS_ERR_INVALID naming it; when the metadata
 * carries an architecture that parses (and is small), reading the weights either fails with
 * MS_ERR_INVALID or succeeds, and then what it read writes back into a file that parses and reads
 * to the very same bits.
 */
#include "fuzz_common.h"
#include "metaserve/codec/safetensors.h"
#include "metaserve/codec/weights_st.h"

#include <math.h>

static int by_begin(const void *a, const void *b) {
    const StTensor *x = *(StTensor *const *)a, *y = *(StTensor *const *)b;
    return x->begin < y->begin ? -1 : x->begin > y->begin;
}

static void check_weights(const StFile *f) {
    const char *arch = st_meta(f, "architecture");
    MlpSpec spec;
    MsError err = {0};
    if (!arch || codec_arch_parse(&spec, arch, "__metadata__.architecture", &err) != MS_OK) return;
    if (spec.P > ((size_t)1 << 20)) return; // a body of at most a few KiB cannot hold more
    float *theta = malloc(spec.P * sizeof *theta), *lrs = malloc(spec.P * sizeof *lrs);
    FUZZ_CHECK(theta && lrs);
    int has_lrs = 0;
    MsStatus s = codec_weights_st_read(f, &spec, theta, lrs, &has_lrs, &err);
    if (s != MS_OK) {
        FUZZ_CHECK(s == MS_ERR_INVALID && err.msg[0]);
    } else {
        for (size_t i = 0; i < spec.P; i++)
            FUZZ_CHECK(isfinite(theta[i]) && (!has_lrs || isfinite(lrs[i])));
        void *out = NULL;
        size_t len = 0;
        FUZZ_CHECK(codec_weights_st_print(&spec, theta, has_lrs ? lrs : NULL, NULL, 0, &out, &len,
                                          &err) == MS_OK);
        StFile g;
        FUZZ_CHECK(st_parse(&g, out, len, &err) == MS_OK);
        float *t2 = malloc(spec.P * sizeof *t2), *l2 = malloc(spec.P * sizeof *l2);
        int h2 = 0;
        FUZZ_CHECK(t2 && l2 && codec_weights_st_read(&g, &spec, t2, l2, &h2, &err) == MS_OK);
        FUZZ_CHECK(h2 == has_lrs && memcmp(t2, theta, spec.P * sizeof *t2) == 0);
        FUZZ_CHECK(!has_lrs || memcmp(l2, lrs, spec.P * sizeof *l2) == 0);
        free(t2), free(l2);
        st_free(&g);
        free(out);
    }
    free(theta), free(lrs);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    // a private copy, so that ASan catches any read past the end
    unsigned char *b = malloc(size ? size : 1);
    FUZZ_CHECK(b != NULL);
    if (size) memcpy(b, data, size);
    StFile f;
    MsError err = {0};
    MsStatus s = st_parse(&f, b, size, &err);
    if (s != MS_OK) {
        FUZZ_CHECK(s == MS_ERR_INVALID && err.msg[0] && f.n_t == 0 && f.t == NULL);
        free(b);
        return 0;
    }
    FUZZ_CHECK(f.data_off + f.data_len == size);
    StTensor **sorted = malloc(((size_t)f.n_t + 1) * sizeof *sorted);
    FUZZ_CHECK(sorted != NULL);
    for (int i = 0; i < f.n_t; i++) {
        const StTensor *t = &f.t[i];
        size_t n = 1;
        for (int k = 0; k < t->rank; k++)
            n *= (size_t)t->shape[k];
        FUZZ_CHECK(n == t->n && t->end - t->begin == n * st_dtype_size(t->dtype));
        FUZZ_CHECK(t->end <= f.data_len && t->data == b + f.data_off + t->begin);
        sorted[i] = &f.t[i];
        float *v = malloc(t->n * sizeof *v + 1);
        FUZZ_CHECK(v != NULL);
        if (st_read_f32(t, v, &err) == MS_OK)
            for (size_t j = 0; j < t->n; j++)
                FUZZ_CHECK(isfinite(v[j]));
        else
            FUZZ_CHECK(strstr(err.msg, t->name) != NULL);
        free(v);
    }
    qsort(sorted, (size_t)f.n_t, sizeof *sorted, by_begin);
    size_t at = 0;
    for (int i = 0; i < f.n_t; i++) {
        FUZZ_CHECK(sorted[i]->begin == at);
        at = sorted[i]->end;
    }
    FUZZ_CHECK(at == f.data_len);
    free(sorted);
    check_weights(&f);
    st_free(&f);
    free(b);
    return 0;
}
