/*
 * Fuzz target: the body of POST /v2/models/{name}/infer as the Open Inference Protocol codec reads
 * it (oip_request_parse), JSON or with binary tensors. An input that starts "#<digits>\n" gives
 * the Inference-Header-Content-Length (the rest is the body: that many bytes of JSON, then the
 * binary tensors); any other input is a body of JSON only. An accepted request is printed back as
 * a response (every input as an FP32 output, binary when its index is odd) and that is read again.
 *
 * Checks: a refusal is MS_ERR_INVALID (or MS_ERR_NOMEM) with a message, never a crash; an
 * accepted request has 1..OIP_MAX_INPUTS inputs, each of product(shape) finite values with the
 * shape's product at most OIP_MAX_ELEMENTS; the printed response is JSON of the header length it
 * says, followed by exactly the binary bytes its outputs announce.
 */
#include <math.h>

#include "fuzz_common.h"
#include "metaserve/codec/oip.h"

// Parses "#<digits>\n" at the start of s (n bytes) into *hl and the body's offset into *off;
// 0 when s does not start so.
static int header_prefix(const char *s, size_t n, size_t *hl, size_t *off) {
    if (n < 3 || s[0] != '#') return 0;
    size_t v = 0, i = 1;
    for (; i < n && i < 12 && s[i] >= '0' && s[i] <= '9'; i++)
        v = v * 10 + (size_t)(s[i] - '0');
    if (i == 1 || i >= n || s[i] != '\n') return 0;
    *hl = v;
    *off = i + 1;
    return 1;
}

static void check_response(const OipRequest *q) {
    OipOutTensor outs[OIP_MAX_INPUTS];
    size_t want_bin = 0;
    int n = 0;
    for (int i = 0; i < q->n_inputs; i++) {
        const OipTensor *t = &q->inputs[i];
        if (t->count > 4096) continue; // printing is linear; keep each run short
        outs[n] = (OipOutTensor){.name = t->name,
                                 .datatype = OIP_FP32,
                                 .rank = 1,
                                 .shape = {(int64_t)t->count},
                                 .f32 = t->data,
                                 .binary = i & 1};
        if (i & 1) want_bin += t->count * 4;
        n++;
    }
    char *text = NULL;
    size_t len = 0, hl = 0;
    MsError err = {0};
    MsStatus s =
        oip_response_print("m", "1", q->has_id ? q->id : NULL, outs, n, &text, &len, &hl, &err);
    if (s == MS_ERR_NOMEM) return;
    FUZZ_CHECK(s == MS_OK && text != NULL);
    size_t jl = hl ? hl : len;
    FUZZ_CHECK(len == jl + want_bin);
    cJSON *doc = cJSON_ParseWithLength(text, jl);
    FUZZ_CHECK(doc != NULL);
    const cJSON *o = cJSON_GetObjectItemCaseSensitive(doc, "outputs");
    FUZZ_CHECK(cJSON_GetArraySize(o) == n);
    cJSON_Delete(doc);
    free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *body = fuzz_copy(data, size);
    size_t hl = OIP_NO_HEADER, off = 0;
    header_prefix(body, size, &hl, &off);
    OipRequest q;
    MsError err = {0};
    MsStatus s = oip_request_parse(&q, body + off, size - off, hl, &err);
    if (s != MS_OK) {
        FUZZ_CHECK(s == MS_ERR_INVALID || s == MS_ERR_NOMEM);
        FUZZ_CHECK(err.msg[0] != '\0');
    } else {
        FUZZ_CHECK(q.n_inputs >= 1 && q.n_inputs <= OIP_MAX_INPUTS);
        FUZZ_CHECK(q.n_outputs >= 0 && q.n_outputs <= OIP_MAX_OUTPUTS);
        for (int i = 0; i < q.n_inputs; i++) {
            const OipTensor *t = &q.inputs[i];
            int64_t prod = 1;
            for (int d = 0; d < t->rank; d++) {
                FUZZ_CHECK(t->shape[d] >= 0);
                prod *= t->shape[d];
                FUZZ_CHECK(prod <= OIP_MAX_ELEMENTS);
            }
            FUZZ_CHECK((size_t)prod == t->count);
            FUZZ_CHECK(t->count == 0 || t->data != NULL);
            for (size_t k = 0; k < t->count; k++)
                FUZZ_CHECK(isfinite(t->data[k]));
        }
        check_response(&q);
    }
    oip_request_free(&q);
    free(body);
    return 0;
}
