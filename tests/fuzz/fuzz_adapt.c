/*
 * Fuzz target: the body of POST /v1/models/{ref}/adapt, read as h_model_adapt reads it (req_json,
 * adapt_read_body, then adapt_read_support against the model) and checked as serving_adapt_copy
 * checks it before adapting (serving_adapt_check), against each shape of fuzz_shapes.h. The
 * adaptation itself is not run: a support set within the limits may still ask for ~2e9
 * multiply-adds.
 *
 * Checks: every refusal is a 400 / 413 / 422 problem that is valid JSON, never a 5xx or a crash;
 * an accepted body leaves no reply; accepted values lie within the documented ranges.
 */
#include "fuzz_shapes.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static ServingModel models[FUZZ_N_SHAPES];
    static int ready;
    if (!ready) fuzz_shapes(models), ready = 1;
    AdaptLimits lim;
    adapt_limits_default(&lim);
    char *body = fuzz_copy(data, size);
    Req r;
    fuzz_req_init(&r, body, size);
    cJSON *doc = fuzz_req_json(&r);
    if (doc) {
        int steps = -2;
        double lr = -1;
        long long ttl_s = 0;
        const cJSON *sup = NULL;
        if (!adapt_read_body(&r, doc, &lim, &steps, &lr, &ttl_s, &sup)) {
            fuzz_check_rejected(&r);
        } else {
            fuzz_check_accepted(&r);
            FUZZ_CHECK(sup != NULL && steps >= -1 && steps <= lim.max_steps);
            FUZZ_CHECK(lr == 0 || (lr > 0 && lr <= 10));
            FUZZ_CHECK(ttl_s >= 0 && ttl_s <= lim.max_ttl_ms / 1000);
            for (int i = 0; i < FUZZ_N_SHAPES; i++)
                fuzz_support(sup, &models[i], &lim, steps, lr, ttl_s);
        }
        cJSON_Delete(doc);
    }
    fuzz_req_free(&r);
    free(body);
    return 0;
}
