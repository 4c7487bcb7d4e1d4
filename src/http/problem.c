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

// The one map from a status and its detail to the HTTP status and problem type. A (status,
// detail) row wins over the status's MS_DETAIL_NONE row, which serves every other detail; a
// status with no row is a bug (500). reply_problem adds Retry-After to every 503 and 429.
typedef struct {
    MsStatus status;
    MsDetail detail;
    int http;
    const char *slug;
} StatusRow;

static const StatusRow STATUS_MAP[] = {
    {MS_ERR_INVALID, MS_DETAIL_NONE, 422, "validation"},
    {MS_ERR_INVALID, MS_DETAIL_SYNTAX, 400, "malformed-json"},
    {MS_ERR_NOT_FOUND, MS_DETAIL_NONE, 404, "not-found"},
    {MS_ERR_CONFLICT, MS_DETAIL_NONE, 409, "conflict"},
    {MS_ERR_TOO_LARGE, MS_DETAIL_NONE, 413, "payload-too-large"},
    {MS_ERR_BUSY, MS_DETAIL_NONE, 503, "unavailable"},
    {MS_ERR_BUSY, MS_DETAIL_QUEUE_FULL, 429, "queue-full"},
    {MS_ERR_BUSY, MS_DETAIL_LOCKED, 503, "unavailable"},
    {MS_ERR_NOMEM, MS_DETAIL_NONE, 503, "unavailable"},
    {MS_ERR_NUMERIC, MS_DETAIL_NONE, 422, "numeric"},
    {MS_ERR_DB, MS_DETAIL_NONE, 503, "unavailable"},
    {MS_ERR_DB, MS_DETAIL_FULL, 507, "storage-full"},
    {MS_ERR_DB, MS_DETAIL_READONLY, 503, "unavailable"},
    {MS_ERR_DB, MS_DETAIL_CORRUPT, 503, "unavailable"},
    {MS_ERR_DB, MS_DETAIL_UNAVAILABLE, 503, "unavailable"},
    {MS_ERR_IO, MS_DETAIL_NONE, 503, "unavailable"},
    {MS_ERR_INTERNAL, MS_DETAIL_NONE, 500, "internal"},
};

void problem_for_status(MsStatus st, MsDetail detail, int *http_status, const char **slug,
                        const char **title) {
    const StatusRow *hit = NULL;
    for (size_t i = 0; i < sizeof STATUS_MAP / sizeof STATUS_MAP[0]; i++) {
        const StatusRow *row = &STATUS_MAP[i];
        if (row->status != st) continue;
        if (row->detail == detail) {
            hit = row;
            break;
        }
        if (row->detail == MS_DETAIL_NONE) hit = row;
    }
    *http_status = hit ? hit->http : 500;
    *slug = hit ? hit->slug : "internal";
    if (title) *title = problem_title(*slug);
}
