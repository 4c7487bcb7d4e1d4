/*
 * Fuzz target: the body of POST /v1/datasets, read as h_dataset_create reads it (req_json, then
 * dataset_upload_read: kind, fields, name, the strict matrix and label readers, and
 * dataset_pack_tasks / dataset_pack_classes of src/tasks/dataset.c). Nothing is stored.
 *
 * Checks: every refusal is a 400 / 413 / 422 problem that is valid JSON, never a 5xx or a crash;
 * and what the upload path packs, the read path accepts: dataset_view_check (run on every dataset
 * read back from the store before training) passes on the packed arrays, and a sampler can be
 * built over them.
 */
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *body = fuzz_copy(data, size);
    Req r;
    fuzz_req_init(&r, body, size);
    cJSON *doc = fuzz_req_json(&r);
    if (doc) {
        char name[STORE_NAME_MAX] = {0};
        DatasetKind kind;
        DatasetPacked p = {0};
        if (!dataset_upload_read(&r, doc, name, &kind, &p)) {
            fuzz_check_rejected(&r);
        } else {
            fuzz_check_accepted(&r);
            FUZZ_CHECK(name[0] && p.kind == kind);
            DatasetView v = dataset_packed_view(&p);
            MsError err = {0};
            if (dataset_view_check(&v, &err) != MS_OK)
                fuzz_fail("packed upload fails dataset_view_check: %s", err.msg);
            TaskSampler *s = NULL;
            int n_way = kind == DATASET_CLASSES ? 2 : 1;
            FUZZ_CHECK(dataset_sampler_create(&s, &v, n_way, &err) == MS_OK);
            task_sampler_destroy(s);
        }
        dataset_packed_free(&p);
    }
    fuzz_req_free(&r);
    free(body);
    return 0;
}
