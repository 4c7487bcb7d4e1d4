/*
 * Status codes shared by every area. A function that can fail returns MsStatus and, when the
 * caller passes one, fills an MsError with a human-readable message. Nothing in core/ prints.
 * Where callers must tell two causes of one status apart (a full job queue from a locked
 * database, both MS_ERR_BUSY), the code that detects the condition also records an MsDetail, in
 * the manner of SQLite's extended result codes; callers branch on code and detail, never on msg.
 *
 * Usage:
 *     MsError err = {0};
 *     if (mlp_spec_init(&spec, sizes, n, MLP_ACT_RELU, MLP_HEAD_REGRESSION, &err) != MS_OK)
 *         fprintf(stderr, "%s: %s\n", ms_status_str(err.code), err.msg);
 */
#ifndef METASERVE_CORE_STATUS_H
#define METASERVE_CORE_STATUS_H

#include <stdio.h>
#include <stdlib.h>

typedef enum {
    MS_OK = 0,
    MS_ERR_INVALID,   // a caller-supplied value is out of range or malformed
    MS_ERR_NOT_FOUND, // the named thing does not exist
    MS_ERR_CONFLICT,  // the thing exists already or is in the wrong state
    MS_ERR_TOO_LARGE, // a size exceeds a configured limit
    MS_ERR_BUSY,      // try again later
    MS_ERR_NOMEM,     // an allocation failed
    MS_ERR_NUMERIC,   // a loss or gradient became NaN or infinite
    MS_ERR_DB,        // the store failed
    MS_ERR_IO,        // a file or socket failed
    MS_ERR_INTERNAL   // a bug
} MsStatus;

/** Refines an MsStatus; MS_DETAIL_NONE when the status says all a caller needs. */
typedef enum {
    MS_DETAIL_NONE = 0,
    MS_DETAIL_SYNTAX,      // MS_ERR_INVALID: the text is not well-formed (e.g. not JSON)
    MS_DETAIL_QUEUE_FULL,  // MS_ERR_BUSY: the job queue is at its configured limit
    MS_DETAIL_LOCKED,      // MS_ERR_BUSY: the database's lock was not granted within the timeout
    MS_DETAIL_FULL,        // MS_ERR_DB: the disk or the database's size limit is full
    MS_DETAIL_READONLY,    // MS_ERR_DB: the database cannot be written
    MS_DETAIL_CORRUPT,     // MS_ERR_DB: stored bytes failed their checks
    MS_DETAIL_UNAVAILABLE, // MS_ERR_DB: the database cannot be reached (yet)
} MsDetail;

typedef struct {
    MsStatus code;
    char msg[256];
    MsDetail detail;
} MsError;

/** Stable lower-case name of a status ("ok", "invalid", ...). Never NULL. */
const char *ms_status_str(MsStatus s);

/**
 * Records code and a printf-style message in err (which may be NULL) and returns code, so that
 * callers can write `return ms_fail(err, MS_ERR_INVALID, "sizes[%d] must be > 0", i);`.
 */
MsStatus ms_fail(MsError *err, MsStatus code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/** ms_fail that also records the detail: `return ms_fail_detail(err, MS_ERR_BUSY,
 *  MS_DETAIL_QUEUE_FULL, "job queue full: ...");`. ms_fail records MS_DETAIL_NONE. */
MsStatus ms_fail_detail(MsError *err, MsStatus code, MsDetail detail, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/** Assertion for programmer errors only; on in every build. Never for request-controlled data. */
#define MS_ASSERT(x)                                                                               \
    do {                                                                                           \
        if (!(x)) {                                                                                \
            fprintf(stderr, "%s:%d: assertion failed: %s\n", __FILE__, __LINE__, #x);              \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

#endif
