/*
 * The one table that maps store/engine status codes to HTTP statuses and RFC 9457 problem types.
 * Problem type URIs are stable: https://metaserve.dev/problems/<slug>; clients match on them.
 */
#include <string.h>

#include "http.h"

typedef struct {
    const char *slug;
    const char *title;
} ProblemType;

static const ProblemType TYPES[] = {
    {"malformed-json", "Malformed JSON"},
    {"bad-request", "Bad request"},
    {"unauthorized", "Missing or invalid credentials"},
    {"forbidden", "Insufficient role"},
    {"not-found", "Not found"},
    {"method-not-allowed", "Method not allowed"},
    {"conflict", "Conflict"},
    {"payload-too-large", "Payload too large"},
    {"unsupported-media-type", "Unsupported media type"},
    {"validation", "Validation failed"},
    {"queue-full", "Job queue full"},
    {"unavailable", "Service unavailable"},
    {"storage-full", "Storage full"},
    {"numeric", "Numeric failure"},
    {"internal", "Internal error"},
    {"not-implemented", "Not implemented"},
};

const char *problem_title(const char *slug) {
    for (size_t i = 0; i < sizeof TYPES / sizeof TYPES[0]; i++)
        if (strcmp(TYPES[i].slug, slug) == 0) return TYPES[i].title;
    return "Error";
}

void problem_for_status(MsStatus st, int *http_status, const char **slug, const char **title) {
    int h;
    const char *s;
    switch (st) {
    case MS_OK:
        h = 200, s = "internal";
        break;
    case MS_ERR_INVALID:
        h = 422, s = "validation";
        break;
    case MS_ERR_NOT_FOUND:
        h = 404, s = "not-found";
        break;
    case MS_ERR_CONFLICT:
        h = 409, s = "conflict";
        break;
    case MS_ERR_TOO_LARGE:
        h = 413, s = "payload-too-large";
        break;
    case MS_ERR_BUSY:
        h = 503, s = "unavailable";
        break;
    case MS_ERR_NOMEM:
        h = 503, s = "unavailable";
        break;
    case MS_ERR_NUMERIC:
        h = 422, s = "numeric";
        break;
    case MS_ERR_DB:
        h = 503, s = "unavailable";
        break;
    case MS_ERR_IO:
        h = 503, s = "unavailable";
        break;
    default:
        h = 500, s = "internal";
        break;
    }
    *http_status = h;
    *slug = s;
    if (title) *title = problem_title(s);
}
