/*
 * Fuzz target: json_syntax (src/http/json.c), the strict RFC 8259 recogniser every JSON body
 * passes before cJSON sees it (req_json, req_json_syntax_ok), and the handoff to cJSON.
 *
 * Checks: the offset it reports lies within the input (== size on success); it is a pure
 * function of the bytes (the same answer twice); and whatever it accepts, cJSON parses too, as
 * req_json calls it, so an accepted body never reaches cJSON's failure path (which would answer
 * a misleading 400, and which records the error in a global that is not thread-safe).
 */
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *s = fuzz_copy(data, size);
    size_t off = (size_t)-1, off2 = (size_t)-1;
    int ok = json_syntax(s, size, &off);
    FUZZ_CHECK(off <= size);
    FUZZ_CHECK(!ok || off == size);
    FUZZ_CHECK(json_syntax(s, size, &off2) == ok && off2 == off);
    if (ok) {
        cJSON *doc = cJSON_ParseWithLengthOpts(s, size, NULL, 0);
        if (!doc) fuzz_fail("json_syntax accepted %zu bytes that cJSON refuses", size);
        cJSON_Delete(doc);
    }
    free(s);
    return 0;
}
