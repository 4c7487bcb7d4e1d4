/*
 * The route table: every v1 route as data (method, pattern, least role, whether the body is
 * JSON, handler, metrics label). server.c matches a request against it and runs the generic
 * checks before any handler; tests/http/test_spec.c checks it against api/openapi.yaml, so a
 * route added here without its contract (or the reverse) fails the build's tests.
 */
#include "http.h"

const Route ROUTES[] = {
    {"GET", "/livez", ROLE_NONE, 0, h_livez, "/livez"},
    {"GET", "/readyz", ROLE_NONE, 0, h_readyz, "/readyz"},
    {"GET", "/metrics", ROLE_NONE, 0, h_metrics, "/metrics"},
    {"GET", "/openapi.yaml", ROLE_NONE, 0, h_openapi, "/openapi.yaml"},

    {"POST", "/v1/datasets", ROLE_ADMIN, JSON_OR_BINARY, h_dataset_create, "/v1/datasets"},
    {"GET", "/v1/datasets", ROLE_CLIENT, 0, h_dataset_list, "/v1/datasets"},
    {"GET", "/v1/datasets/{id}", ROLE_CLIENT, 0, h_dataset_get, "/v1/datasets/{id}"},
    {"DELETE", "/v1/datasets/{id}", ROLE_ADMIN, 0, h_dataset_delete, "/v1/datasets/{id}"},

    {"POST", "/v1/jobs", ROLE_ADMIN, 1, h_job_create, "/v1/jobs"},
    {"GET", "/v1/jobs", ROLE_CLIENT, 0, h_job_list, "/v1/jobs"},
    {"GET", "/v1/jobs/{id}", ROLE_CLIENT, 0, h_job_get, "/v1/jobs/{id}"},
    {"POST", "/v1/jobs/{id}/cancel", ROLE_ADMIN, 0, h_job_cancel, "/v1/jobs/{id}/cancel"},
    {"GET", "/v1/jobs/{id}/metrics", ROLE_CLIENT, 0, h_job_metrics, "/v1/jobs/{id}/metrics"},

    {"GET", "/v1/models", ROLE_CLIENT, 0, h_model_list, "/v1/models"},
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
    {"GET", "/v1/models/{ref}/weights", ROLE_CLIENT, 0, h_model_weights,
     "/v1/models/{ref}/weights"},
    {"POST", "/v1/models/{name}/versions", ROLE_ADMIN, JSON_OR_BINARY, h_model_import,
     "/v1/models/{name}/versions"},
    {"GET", "/v1/adaptations/{id}/weights", ROLE_CLIENT, 0, h_adaptation_weights,
     "/v1/adaptations/{id}/weights"},
    {"POST", "/v1/models/{ref}/adapt", ROLE_CLIENT, 1, h_model_adapt, "/v1/models/{ref}/adapt"},
    {"POST", "/v1/models/{ref}/predict", ROLE_CLIENT, 1, h_model_predict,
     "/v1/models/{ref}/predict"},

    {"GET", "/v1/adaptations/{id}", ROLE_CLIENT, 0, h_adaptation_get, "/v1/adaptations/{id}"},
    {"POST", "/v1/adaptations/{id}/predict", ROLE_CLIENT, 1, h_adaptation_predict,
     "/v1/adaptations/{id}/predict"},
    {"DELETE", "/v1/adaptations/{id}", ROLE_CLIENT, 0, h_adaptation_delete, "/v1/adaptations/{id}"},
    {0},
};

size_t routes_count(void) {
    return sizeof ROUTES / sizeof ROUTES[0] - 1;
}
