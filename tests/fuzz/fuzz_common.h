/*
 * Shared by the fuzz targets of tests/fuzz: a request context without a server (the body readers
 * of http/ take a Req only to reply through it), a NUL-terminated copy of the input (what the
 * server hands a handler, and what cJSON needs), and the checks every target makes on a reply.
 *
 * A failed check calls abort() with a message on stderr, so libFuzzer and the replay driver
 * both report it as a crash with the input that caused it.
 */
#ifndef METASERVE_TESTS_FUZZ_COMMON_H
#define METASERVE_TESTS_FUZZ_COMMON_H

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"

// Every failed check prints one line starting "fuzz check failed:" (scripts/fuzz.sh reports it).
#define FUZZ_CHECK(cond)                                                                           \
    do {                                                                                           \
        if (!(cond)) fuzz_fail("%s:%d: %s", __FILE__, __LINE__, #cond);                            \
    } while (0)

__attribute__((format(printf, 1, 2), noreturn)) static inline void fuzz_fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("fuzz check failed: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    abort();
}

// A malloc'd NUL-terminated copy of data[0..size) (the server's body buffer is the same).
static inline char *fuzz_copy(const uint8_t *data, size_t size) {
    char *s = malloc(size + 1);
    FUZZ_CHECK(s != NULL);
    if (size) memcpy(s, data, size);
    s[size] = '\0';
    return s;
}

// A request carrying body[0..len) and nothing else: no connection, no app, no store.
static inline void fuzz_req_init(Req *r, char *body, size_t len) {
    memset(r, 0, sizeof *r);
    r->method = "POST";
    r->url = "/fuzz";
    snprintf(r->id, sizeof r->id, "fuzz");
    r->body = body;
    r->body_len = len;
    r->body_cap = len + 1;
}

// The body of the last reply (a problem document, or a JSON reply).
static inline const char *fuzz_reply_text(const Req *r) {
    return r->reply ? r->reply : r->problem;
}

// After a reader returned 0: it replied with a client error (400, 413 or 422, never a 5xx: the
// input is all the fuzzer controls and memory is not short here), and the reply is one valid
// JSON document.
static inline void fuzz_check_rejected(const Req *r) {
    if (r->status != 400 && r->status != 413 && r->status != 422)
        fuzz_fail("refused with status %d: %s", r->status, fuzz_reply_text(r));
    const char *doc = fuzz_reply_text(r);
    size_t off;
    FUZZ_CHECK(json_syntax(doc, strlen(doc), &off));
}

// After a reader returned 1: it has not replied.
static inline void fuzz_check_accepted(const Req *r) {
    if (r->status != 0) fuzz_fail("accepted but replied %d: %s", r->status, fuzz_reply_text(r));
}

// req_json as the handlers call it; NULL (and a checked refusal: 400 for bad syntax, 422 for a
// string it will not take) when the body is not usable JSON.
static inline cJSON *fuzz_req_json(Req *r) {
    cJSON *doc = req_json(r);
    if (!doc) fuzz_check_rejected(r);
    return doc;
}

static inline void fuzz_req_free(Req *r) {
    free(r->reply);
    r->reply = NULL;
}

#endif
