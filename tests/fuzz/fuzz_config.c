/*
 * Fuzz target: the training config of POST /v1/jobs, as h_job_create reads it: codec_config_parse
 * (src/codec/codec.c: cJSON, strict fields, train_config_validate), then train_config_check_limits.
 * Nothing is trained: a valid config is only printed and re-read.
 *
 * The codec is fed every input, also those json_syntax refuses (the handler answers those 400
 * before the codec runs, but `metaserve train --config` reads files with the codec alone): cJSON
 * is more lenient than json_syntax (it skips any control byte as whitespace), so the codec may
 * accept what the syntax check refuses, and that is not checked here.
 *
 * Checks: a failure is MS_ERR_INVALID or MS_ERR_TOO_LARGE with a message; a config the codec
 * accepts passes or fails train_config_check_limits with a message, and round-trips:
 * codec_config_print, parsed again, gives a config that prints to the same text (codec.h
 * promises "reads back to the same values").
 */
#include "fuzz_common.h"
#include "metaserve/codec/codec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    TrainConfig c, c2;
    MsError err = {0};
    MsStatus st = codec_config_parse(&c, (const char *)data, size, &err);
    if (st != MS_OK) {
        FUZZ_CHECK(st == MS_ERR_INVALID || st == MS_ERR_TOO_LARGE);
        FUZZ_CHECK(err.msg[0] != '\0' && memchr(err.msg, '\0', sizeof err.msg) != NULL);
        return 0;
    }
    TrainLimits lim;
    train_limits_default(&lim);
    MsError lerr = {0};
    st = train_config_check_limits(&c, &lim, &lerr);
    FUZZ_CHECK(st == MS_OK || (st == MS_ERR_TOO_LARGE && lerr.msg[0]));

    char *text = NULL, *text2 = NULL;
    FUZZ_CHECK(codec_config_print(&c, &text, &err) == MS_OK);
    st = codec_config_parse(&c2, text, strlen(text), &err);
    if (st != MS_OK) fuzz_fail("printed config does not parse back: %s\n%s", err.msg, text);
    FUZZ_CHECK(codec_config_print(&c2, &text2, &err) == MS_OK);
    if (strcmp(text, text2) != 0)
        fuzz_fail("config changed in a round trip:\n%s\n---\n%s", text, text2);
    free(text);
    free(text2);
    return 0;
}
