/*
 * Fuzz target: a safetensors body of POST /v1/datasets, read as h_dataset_create reads it
 * (dataset_upload_st: st_parse, the metadata, the tensors converted and regrouped in place in the
 * body, dataset_pack_*_inplace / _index). Nothing is stored.
 *
 * Checks: every refusal is a 400 / 413 / 422 problem that is valid JSON, never a 5xx or a crash;
 * what is accepted, the read path accepts too: dataset_view_check passes on the arrays as they
 * would be stored, and a sampler can be built over them.
 */
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *body = fuzz_copy(data, size);
    Req r;
    fuzz_req_init(&r, body, size);
    r.binary = 1;
    char name[STORE_NAME_MAX] = {0};
    DatasetKind kind;
    DatasetPacked p = {0};
    float *x = NULL, *y = NULL, *ox = NULL, *oy = NULL;
    if (!dataset_upload_st(&r, name, &kind, &p, &x, &y, &ox, &oy)) {
        fuzz_check_rejected(&r);
        FUZZ_CHECK(!x && !y && !ox && !oy);
    } else {
        fuzz_check_accepted(&r);
        FUZZ_CHECK(name[0] && p.kind == kind);
        DatasetView v = dataset_packed_view(&p);
        v.x = p.x ? p.x : x;
        v.y = p.y ? p.y : y;
        MsError err = {0};
        if (dataset_view_check(&v, &err) != MS_OK)
            fuzz_fail("accepted upload fails dataset_view_check: %s", err.msg);
        TaskSampler *s = NULL;
        FUZZ_CHECK(dataset_sampler_create(&s, &v, kind == DATASET_CLASSES ? 2 : 1, &err) == MS_OK);
        task_sampler_destroy(s);
    }
    free(ox), free(oy);
    dataset_packed_free(&p);
    fuzz_req_free(&r);
    free(body);
    return 0;
}
