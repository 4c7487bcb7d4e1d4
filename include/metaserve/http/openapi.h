/*
 * The API contract built into the binary: api/openapi.yaml, byte for byte, served at
 * GET /openapi.yaml. The array is generated at build time by cmake/embed.cmake (re-run whenever
 * the YAML changes) into the ms_openapi library; tests/http/test_spec.c checks that it equals the
 * file on disk and that its operations are exactly the route table of src/http/routes.c.
 *
 * Usage:
 *     reply_raw(r, 200, "application/yaml", METASERVE_OPENAPI, METASERVE_OPENAPI_LEN);
 */
#ifndef METASERVE_HTTP_OPENAPI_H
#define METASERVE_HTTP_OPENAPI_H

#include <stddef.h>

/** The bytes of api/openapi.yaml followed by a NUL (METASERVE_OPENAPI_LEN + 1 bytes); static,
 *  read-only, never freed. The YAML holds no NUL byte, so strlen gives the length too. */
extern const char METASERVE_OPENAPI[];

/** Bytes in METASERVE_OPENAPI, not counting the terminating NUL. */
extern const size_t METASERVE_OPENAPI_LEN;

#endif
