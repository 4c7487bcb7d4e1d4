/*
 * Fuzz target: the body of POST /v1/models/{ref}/predict, read as h_model_predict reads it
 * (req_json, predict_read_body, predict_read_x against the model with its work and output limits,
 * then the optional inline support set as for adapt), against each shape of fuzz_shapes.h. Neither
 * the adaptation nor the forward pass is run (x may hold 100,000 rows within the limits). "x" is
 * also the whole body of POST /v1/adaptations/{id}/predict, read by the same predict_read_x.
 *
 * Checks: every refusal is a 400 / 413 / 422 problem that is valid JSON, never a 5xx or a crash;
 * an accepted x has 1.. rows of the model's input width and finite values.
 */
#include <math.h>

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
        const cJSON *sup = (const cJSON *)1;
        if (!predict_read_body(&r, doc, &lim, &steps, &lr, &sup)) {
            fuzz_check_rejected(&r);
        } else {
            fuzz_check_accepted(&r);
            FUZZ_CHECK(steps >= -1 && steps <= lim.max_steps && (lr == 0 || (lr > 0 && lr <= 10)));
            for (int i = 0; i < FUZZ_N_SHAPES; i++) {
                const MlpSpec *s = &models[i].spec;
                Req rx;
                fuzz_req_init(&rx, "", 0);
                int rows = 0;
                float *x = predict_read_x(&rx, doc, s, &rows);
                if (!x) {
                    fuzz_check_rejected(&rx);
                } else {
                    fuzz_check_accepted(&rx);
                    FUZZ_CHECK(rows >= 1);
                    for (size_t k = 0; k < (size_t)rows * (size_t)s->sizes[0]; k++)
                        FUZZ_CHECK(isfinite(x[k]));
                    if (sup) fuzz_support(sup, &models[i], &lim, steps, lr, 0);
                }
                free(x);
                fuzz_req_free(&rx);
            }
        }
        cJSON_Delete(doc);
    }
    fuzz_req_free(&r);
    free(body);
    return 0;
}
