/*
 * Status names and the error-message helper. Owns nothing but static strings; thread-safe.
 */
#include "metaserve/core/status.h"

#include <stdarg.h>

const char *ms_status_str(MsStatus s) {
    switch (s) {
    case MS_OK:
        return "ok";
    case MS_ERR_INVALID:
        return "invalid";
    case MS_ERR_NOT_FOUND:
        return "not_found";
    case MS_ERR_CONFLICT:
        return "conflict";
    case MS_ERR_TOO_LARGE:
        return "too_large";
    case MS_ERR_BUSY:
        return "busy";
    case MS_ERR_NOMEM:
        return "nomem";
    case MS_ERR_NUMERIC:
        return "numeric";
    case MS_ERR_DB:
        return "db";
    case MS_ERR_IO:
        return "io";
    case MS_ERR_INTERNAL:
        return "internal";
    }
    return "unknown";
}

static MsStatus fail_v(MsError *err, MsStatus code, MsDetail detail, const char *fmt, va_list ap) {
    if (err) {
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        err->code = code;
        err->detail = detail;
    }
    return code;
}

MsStatus ms_fail(MsError *err, MsStatus code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fail_v(err, code, MS_DETAIL_NONE, fmt, ap);
    va_end(ap);
    return code;
}

MsStatus ms_fail_detail(MsError *err, MsStatus code, MsDetail detail, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fail_v(err, code, detail, fmt, ap);
    va_end(ap);
    return code;
}
