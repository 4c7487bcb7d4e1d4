/*
 * The route table: every v1 and /v2 route as data (method, pattern, least role, whether the body is
 * JSON, handler, metrics label, and the query parameters it reads: left out, none). server.c
 * matches a request against it and runs the generic checks before any handler;
 * tests/http/test_spec.c checks it against api/openapi.yaml, so a route added here without its
 * contract (or the reverse) fails the build's tests.
 */
#include "http.h"

// a route that reads no query parameters leaves `query` out (NULL)
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

#define PAGE_QUERY "page_size,page_token" // a list route's query parameters

const Route ROUTES[] = {
    {"GET", "/livez", ROLE_NONE, 0, h_livez, "/livez"},
    {"GET", "/readyz", ROLE_NONE, 0, h_readyz, "/readyz"},
    {"GET", "/metrics", ROLE_NONE, 0, h_metrics, "/metrics"},
    {"GET", "/openapi.yaml", ROLE_NONE, 0, h_openapi, "/openapi.yaml"},

    {"POST", "/v1/datasets", ROLE_ADMIN, JSON_OR_BINARY, h_dataset_create, "/v1/datasets"},
    {"GET", "/v1/datasets", ROLE_CLIENT, 0, h_dataset_list, "/v1/datasets", PAGE_QUERY},
    {"GET", "/v1/datasets/{id}", ROLE_CLIENT, 0, h_dataset_get, "/v1/datasets/{id}"},
    {"DELETE", "/v1/datasets/{id}", ROLE_ADMIN, 0, h_dataset_delete, "/v1/datasets/{id}"},

    {"POST", "/v1/jobs", ROLE_ADMIN, 1, h_job_create, "/v1/jobs"},
    {"GET", "/v1/jobs", ROLE_CLIENT, 0, h_job_list, "/v1/jobs", PAGE_QUERY},
    {"GET", "/v1/jobs/{id}", ROLE_CLIENT, 0, h_job_get, "/v1/jobs/{id}"},
    {"POST", "/v1/jobs/{id}/cancel", ROLE_ADMIN, 0, h_job_cancel, "/v1/jobs/{id}/cancel"},
    {"GET", "/v1/jobs/{id}/metrics", ROLE_CLIENT, 0, h_job_metrics, "/v1/jobs/{id}/metrics",
     PAGE_QUERY ",after_step,since"},
    {"GET", "/v1/jobs/{id}/events", ROLE_CLIENT, 0, h_job_events, "/v1/jobs/{id}/events",
     "interval_ms"},

    {"GET", "/v1/models", ROLE_CLIENT, 0, h_model_list, "/v1/models", PAGE_QUERY},
    {"GET", "/v1/models/{name}", ROLE_CLIENT, 0, h_model_get, "/v1/models/{name}"},
    {"DELETE", "/v1/models/{name}", ROLE_ADMIN, 0, h_model_delete, "/v1/models/{name}"},
    {"GET", "/v1/models/{name}/versions/{version}", ROLE_CLIENT, 0, h_version_get,
     "/v1/models/{name}/versions/{version}"},
    {"DELETE", "/v1/models/{name}/versions/{version}", ROLE_ADMIN, 0, h_version_delete,
     "/v1/models/{name}/versions/{version}"},
    {"PUT", "/v1/models/{name}/aliases/{alias}", ROLE_ADMIN, 1, h_alias_put,
     "/v1/models/{name}/aliases/{alias}"},
    {"DELETE", "/v1/models/{name}/aliases/{alias}", ROLE_ADMIN, 0, h_alias_delete,
     "/v1/models/{name}/aliases/{alias}"},
    {"GET", "/v1/models/{ref}/weights", ROLE_CLIENT, 0, h_model_weights, "/v1/models/{ref}/weights",
     "format"},
    {"POST", "/v1/models/{name}/versions", ROLE_ADMIN, JSON_OR_BINARY, h_model_import,
     "/v1/models/{name}/versions", "sizes,activation,head"},
    {"GET", "/v1/adaptations/{id}/weights", ROLE_CLIENT, 0, h_adaptation_weights,
     "/v1/adaptations/{id}/weights", "format"},
    {"POST", "/v1/models/{ref}/adapt", ROLE_CLIENT, 1, h_model_adapt, "/v1/models/{ref}/adapt"},
    {"POST", "/v1/models/{ref}/predict", ROLE_CLIENT, 1, h_model_predict,
     "/v1/models/{ref}/predict"},

    {"GET", "/v1/adaptations/{id}", ROLE_CLIENT, 0, h_adaptation_get, "/v1/adaptations/{id}"},
    {"POST", "/v1/adaptations/{id}/predict", ROLE_CLIENT, 1, h_adaptation_predict,
     "/v1/adaptations/{id}/predict"},
    {"DELETE", "/v1/adaptations/{id}", ROLE_CLIENT, 0, h_adaptation_delete, "/v1/adaptations/{id}"},

    // the Open Inference Protocol (KServe V2 REST); BODY_RAW: infer reads JSON or binary itself
    {"GET", "/v2/health/live", ROLE_NONE, 0, h_oip_live, "/v2/health/live"},
    {"GET", "/v2/health/ready", ROLE_NONE, 0, h_oip_ready, "/v2/health/ready"},
    {"GET", "/v2", ROLE_NONE, 0, h_oip_server, "/v2"},
    {"GET", "/v2/models/{name}", ROLE_CLIENT, 0, h_oip_model, "/v2/models/{name}"},
    {"GET", "/v2/models/{name}/versions/{version}", ROLE_CLIENT, 0, h_oip_model,
     "/v2/models/{name}/versions/{version}"},
    {"GET", "/v2/models/{name}/ready", ROLE_CLIENT, 0, h_oip_model_ready,
     "/v2/models/{name}/ready"},
    {"GET", "/v2/models/{name}/versions/{version}/ready", ROLE_CLIENT, 0, h_oip_model_ready,
     "/v2/models/{name}/versions/{version}/ready"},
    {"POST", "/v2/models/{name}/infer", ROLE_CLIENT, BODY_RAW, h_oip_infer,
     "/v2/models/{name}/infer"},
    {"POST", "/v2/models/{name}/versions/{version}/infer", ROLE_CLIENT, BODY_RAW, h_oip_infer,
     "/v2/models/{name}/versions/{version}/infer"},
    // ONNX export of a version's meta-parameters and of an adaptation (h_onnx.c)
    {"GET", "/v1/models/{ref}/onnx", ROLE_CLIENT, 0, h_model_onnx, "/v1/models/{ref}/onnx"},
    {"GET", "/v1/adaptations/{id}/onnx", ROLE_CLIENT, 0, h_adaptation_onnx,
     "/v1/adaptations/{id}/onnx"},
    // the web dashboard (h_ui.c): open, like the page's own requests for its files
    {"GET", "/", ROLE_NONE, 0, h_root, "/"},
    {"GET", "/ui", ROLE_NONE, 0, h_ui_slash, "/ui"},
    {"GET", "/ui/", ROLE_NONE, 0, h_ui_index, "/ui/"},
    {"GET", "/ui/{asset}", ROLE_NONE, 0, h_ui_asset, "/ui/{asset}"},
    {0},
};

size_t routes_count(void) {
    return sizeof ROUTES / sizeof ROUTES[0] - 1;
}
