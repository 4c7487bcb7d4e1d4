/*
 * API keys without restarts (src/http/keys.c, sha256.c, the reload in server.c and the signal
 * loop of src/cli/cli_serve.c), in three layers:
 *
 *   unit        SHA-256 against the FIPS 180-2 vectors and, at the padding boundaries, against
 *               the system's sha256sum (the command the operations guide gives); entry and
 *               key-file parsing, digests included, with malformed lines named; key sets.
 *   in-process  server_start on an ephemeral loopback port: a reload swaps keys for new requests
 *               while a request whose headers arrived before finishes under the old set; bad,
 *               empty and missing files keep the old keys; keys from the variable are kept;
 *               server_keys_poll reloads a changed file on its second sighting, not its first.
 *   binary      `metaserve serve` (METASERVE_BIN) with METASERVE_API_KEYS_FILE: keys rotated
 *               with SIGHUP under load from five client threads; a malformed file; a change
 *               without SIGHUP; SIGHUP with METASERVE_API_KEYS or no keys at all; each process
 *               still answers afterwards and exits 0 on SIGTERM.
 *
 * The rule checked under load. The server authenticates a request against the key set current
 * when the request's headers arrive; a key is "valid when sent" if it is in that set. Each client
 * sends with the key of the current phase (the old key until the controller has confirmed the
 * rotation, then the new one) and records, per request, the key, the time before sending (t0)
 * and after the reply (t1). For rotation r (key r -> key r+1), T0 is taken just before the file
 * is renamed into place and Tc after a probe with key r+1 got 200, so the swap lies in [T0, Tc]:
 *   - a request with key k that ended before T0 of rotation k was taken in before any swap: 200;
 *   - a request with key k sent after Tc of rotation k was taken in after the swap: 401;
 *   - the last key is never rotated away: every request with it is 200;
 *   - a fifth client sends an admin key that every version of the file holds: always 200 (a
 *     reload never leaves a moment with a partial set);
 *   - in between (the request raced the swap) 200 and 401 are both correct;
 *   - any other status, or a failed transfer, is a failure.
 *
 * Waits have generous deadlines only to fail instead of hanging; nothing asserts on durations.
 * A change of the file without SIGHUP is picked up within two polls (about 2 s, README); the
 * test prints the time it took and fails only past its 30 s deadline.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <check.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../../src/http/http.h"
#include "metaserve/http/keys.h"
#include "metaserve/http/sha256.h"
#define TEST_ROOT_NAME "ms_keys"
#include "proc.h"
#include "testsrv.h"

#define KEY_A     "alpha-0123456789abcdef-key"
#define KEY_B     "bravo-0123456789abcdef-key"
#define KEY_C     "charlie-0123456789abcdef-key"
#define ADMIN_KEY "admin-0123456789abcdef-key"

// Longest wait for something the server does by itself, scaled like Check's own timeouts.
#define DEADLINE_S (30.0 * deadline_scale())

static double deadline_scale(void) {
    const char *m = getenv("CK_TIMEOUT_MULTIPLIER");
    double v = m ? atof(m) : 1.0;
    return v >= 1.0 ? v : 1.0;
}

static void to_hex(char out[65], const unsigned char d[SHA256_BYTES]) {
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; i < SHA256_BYTES; i++) {
        out[2 * i] = hex[d[i] >> 4];
        out[2 * i + 1] = hex[d[i] & 15];
    }
    out[64] = '\0';
}

static void digest_hex(char out[65], const void *data, size_t n) {
    unsigned char d[SHA256_BYTES];
    sha256(d, data, n);
    to_hex(out, d);
}

// The digest as the operations guide makes it: printf %s "$KEY" | sha256sum (first field).
static void sha256sum_of(char out[65], const char *key) {
    char cmd[256], line[128] = {0};
    snprintf(cmd, sizeof cmd, "printf %%s '%s' | sha256sum", key);
    FILE *p = popen(cmd, "r");
    ck_assert_ptr_nonnull(p);
    ck_assert_ptr_nonnull(fgets(line, sizeof line, p));
    ck_assert_int_eq(pclose(p), 0);
    ck_assert_msg(strlen(line) > 64 && line[64] == ' ', "sha256sum printed '%s'", line);
    memcpy(out, line, 64);
    out[64] = '\0';
}

// Writes text to path atomically: a temporary file in the same directory, then rename.
static void write_atomic(const char *path, const char *text) {
    char tmp[600];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(fputs(text, f) >= 0, 1);
    ck_assert_int_eq(fclose(f), 0);
    ck_assert_int_eq(rename(tmp, path), 0);
}

/* ---- unit: SHA-256 ---- */

START_TEST(sha256_matches_the_fips_180_2_vectors) {
    static const struct {
        const char *msg, *hex;
    } v[] = {
        {"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
        {"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
        // the 448-bit message of FIPS 180-2 appendix B.2 (two blocks after padding)
        {"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
         "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
    };
    char hex[65];
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        digest_hex(hex, v[i].msg, strlen(v[i].msg));
        ck_assert_msg(strcmp(hex, v[i].hex) == 0, "SHA-256(\"%s\") = %s, expected %s", v[i].msg,
                      hex, v[i].hex);
    }
    // one million 'a' (appendix B.3), fed in pieces of 1000 and in one call
    static const char one_million_a[] =
        "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0";
    char *a = malloc(1000000);
    ck_assert_ptr_nonnull(a);
    memset(a, 'a', 1000000);
    Sha256 c;
    unsigned char d[SHA256_BYTES];
    sha256_init(&c);
    for (int i = 0; i < 1000; i++)
        sha256_update(&c, a, 1000);
    sha256_final(&c, d);
    to_hex(hex, d);
    ck_assert_str_eq(hex, one_million_a);
    digest_hex(hex, a, 1000000);
    ck_assert_str_eq(hex, one_million_a);
    free(a);
}
END_TEST

START_TEST(sha256_agrees_with_sha256sum_at_the_padding_boundaries_however_split) {
    // lengths around 55/56 (the length field no longer fits the block) and 64 (whole blocks)
    static const int lens[] = {1, 55, 56, 57, 63, 64, 65, 119, 120, 127, 128, 129};
    char msg[200], ref[65], hex[65];
    for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
        int n = lens[li];
        for (int i = 0; i < n; i++)
            msg[i] = (char)('A' + (i * 7 + n) % 26);
        msg[n] = '\0';
        sha256sum_of(ref, msg);
        // every split of the input into two updates gives the one-call digest
        for (int cut = 0; cut <= n; cut++) {
            Sha256 c;
            unsigned char d[SHA256_BYTES];
            sha256_init(&c);
            sha256_update(&c, msg, (size_t)cut);
            sha256_update(&c, msg + cut, (size_t)(n - cut));
            sha256_final(&c, d);
            to_hex(hex, d);
            ck_assert_msg(strcmp(hex, ref) == 0, "length %d split at %d: %s, sha256sum %s", n, cut,
                          hex, ref);
        }
    }
}
END_TEST

/* ---- unit: parsing ---- */

START_TEST(entries_parse_plain_keys_and_digests) {
    ServerKey k;
    MsError err = {0};
    const char *e = "  admin:" KEY_A "  ";
    ck_assert_int_eq(keys_parse_entry(&k, e, strlen(e), &err), MS_OK);
    ck_assert_int_eq(k.role, ROLE_ADMIN);
    ck_assert_int_eq(k.hashed, 0);
    ck_assert_str_eq(k.key, KEY_A);

    char hex[65], entry[128];
    digest_hex(hex, KEY_B, strlen(KEY_B));
    for (int i = 0; i < 64; i += 3) // either case is accepted, as sha256sum and others print it
        hex[i] = (char)(hex[i] >= 'a' ? hex[i] - 32 : hex[i]);
    snprintf(entry, sizeof entry, "client:sha256:%s", hex);
    ck_assert_int_eq(keys_parse_entry(&k, entry, strlen(entry), &err), MS_OK);
    ck_assert_int_eq(k.role, ROLE_CLIENT);
    ck_assert_int_eq(k.hashed, 1);
    ck_assert_str_eq(k.key, "");
    unsigned char d[SHA256_BYTES];
    sha256(d, KEY_B, strlen(KEY_B));
    ck_assert_mem_eq(k.digest, d, SHA256_BYTES);

    ck_assert_int_eq(keys_parse_entry(&k, "   ", 3, &err), MS_OK);
    ck_assert_int_eq(k.role, 0); // empty: not an entry
}
END_TEST

START_TEST(malformed_entries_are_refused_with_the_rule_they_break) {
    static const struct {
        const char *entry, *why;
    } bad[] = {
        {KEY_A, "entries are role:key"},
        {"root:" KEY_A, "role must be admin or client"},
        {"Admin:" KEY_A, "role must be admin or client"},
        {"client:short-key", "16..127 characters"},
        {"client:" KEY_A KEY_A KEY_A KEY_A KEY_A, "16..127 characters"}, // 130 characters
        {"client:with a space-0123456789", "printable, without spaces"},
        {"client:sha256:abc", "64 hex digits"},
        {"client:sha256:", "64 hex digits"},
        {"client:sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b85g",
         "64 hex digits"},
        {"client:sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b8550",
         "64 hex digits"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ServerKey k;
        MsError err = {0};
        MsStatus st = keys_parse_entry(&k, bad[i].entry, strlen(bad[i].entry), &err);
        ck_assert_msg(st == MS_ERR_INVALID, "'%s' was accepted", bad[i].entry);
        ck_assert_msg(strstr(err.msg, bad[i].why), "'%s': '%s' does not say '%s'", bad[i].entry,
                      err.msg, bad[i].why);
        // the message never repeats the key
        ck_assert_msg(!strstr(err.msg, "0123456789abcdef"), "'%s' echoed the key", err.msg);
    }
}
END_TEST

START_TEST(key_files_parse_with_comments_and_crlf_and_name_a_malformed_line) {
    char hex[65], text[1024];
    digest_hex(hex, KEY_B, strlen(KEY_B));
    snprintf(text, sizeof text,
             "# rotated today\r\n"
             "\n"
             "admin:%s\r\n"
             "   # indented comment\n"
             "client:sha256:%s\n"
             "  client:%s", // no final newline
             KEY_A, hex, KEY_C);
    ServerKey keys[4];
    int n = 1; // appends after what is there
    memset(keys, 0, sizeof keys);
    MsError err = {0};
    ck_assert_int_eq(keys_parse_text(keys, &n, 4, text, strlen(text), "FILE", &err), MS_OK);
    ck_assert_int_eq(n, 4);
    ck_assert_int_eq(keys[1].role, ROLE_ADMIN);
    ck_assert_str_eq(keys[1].key, KEY_A);
    ck_assert_int_eq(keys[2].role, ROLE_CLIENT);
    ck_assert_int_eq(keys[2].hashed, 1);
    ck_assert_str_eq(keys[3].key, KEY_C);
    for (int i = 1; i < 4; i++)
        ck_assert_int_eq(keys[i].from_file, 1);

    // a malformed line: named by number, and nothing is appended
    static const struct {
        const char *text, *why;
    } bad[] = {
        {"admin:" KEY_A "\n# ok\nsuperuser:" KEY_B "\n",
         "FILE line 3: role must be admin or client"},
        {"\n\nclient:tooshort\n", "FILE line 3: keys must be 16..127 characters"},
        {"client:" KEY_A "\r\nclient:sha256:1234\r\n", "FILE line 2: sha256: must be followed"},
        {"client:" KEY_A "\n" KEY_B "\n", "FILE line 2: entries are role:key"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        n = 0;
        MsError e = {0};
        ck_assert_int_eq(keys_parse_text(keys, &n, 4, bad[i].text, strlen(bad[i].text), "FILE", &e),
                         MS_ERR_INVALID);
        ck_assert_int_eq(n, 0);
        ck_assert_msg(strstr(e.msg, bad[i].why), "'%s' does not say '%s'", e.msg, bad[i].why);
    }
    // a NUL byte, and more keys than there is room for
    static const char nul[] = "client:" KEY_A "\nclient:" KEY_B "\0x\n";
    n = 0;
    ck_assert_int_eq(keys_parse_text(keys, &n, 4, nul, sizeof nul - 1, "FILE", &err),
                     MS_ERR_INVALID);
    ck_assert_msg(strstr(err.msg, "FILE line 2: contains a NUL byte"), "%s", err.msg);
    static const char three[] = "client:" KEY_A "\nclient:" KEY_B "\nclient:" KEY_C "\n";
    n = 2;
    ck_assert_int_eq(keys_parse_text(keys, &n, 4, three, strlen(three), "FILE", &err),
                     MS_ERR_INVALID);
    ck_assert_int_eq(n, 2);
    ck_assert_msg(strstr(err.msg, "FILE line 3: more than 4 keys"), "%s", err.msg);
}
END_TEST

START_TEST(the_configuration_reads_the_key_file_and_names_its_bad_line) {
    char dir[128], path[256], arg[300];
    test_root_subdir(dir, sizeof dir, "cfg");
    snprintf(path, sizeof path, "%s/keys", dir);
    char hex[65], text[256];
    digest_hex(hex, KEY_B, strlen(KEY_B));
    snprintf(text, sizeof text, "client:%s\nadmin:sha256:%s\n", KEY_A, hex);
    write_atomic(path, text);
    unsetenv("METASERVE_API_KEYS");
    unsetenv("METASERVE_API_KEYS_FILE");

    ServerConfig c;
    server_config_defaults(&c);
    snprintf(arg, sizeof arg, "--api-keys-file=%s", path);
    char *argv[] = {"--api-keys", "admin:" KEY_C, arg};
    MsError err = {0};
    ck_assert_msg(server_config_load(&c, 3, argv, &err) == MS_OK, "%s", err.msg);
    ck_assert_int_eq(c.n_keys, 3);
    ck_assert_int_eq(c.keys[0].from_file, 0); // --api-keys: fixed
    ck_assert_int_eq(c.keys[1].from_file, 1);
    ck_assert_int_eq(c.keys[2].from_file, 1);
    ck_assert_int_eq(c.keys[2].hashed, 1);
    ck_assert_str_eq(c.keys_file, path);

    write_atomic(path, "client:" KEY_A "\n\nclient " KEY_B "\n");
    server_config_defaults(&c);
    ck_assert_int_eq(server_config_load(&c, 1, argv + 2, &err), MS_ERR_INVALID);
    ck_assert_msg(strstr(err.msg, "--api-keys-file line 3: entries are role:key"), "%s", err.msg);
    server_config_defaults(&c);
    char *bad_list[] = {"--api-keys", "admin:" KEY_A ",,client:short"};
    ck_assert_int_eq(server_config_load(&c, 2, bad_list, &err), MS_ERR_INVALID);
    ck_assert_msg(strstr(err.msg, "--api-keys entry 3: keys must be 16..127"), "%s", err.msg);
}
END_TEST

START_TEST(key_sets_match_plain_and_hashed_keys_and_nothing_else) {
    ServerKey keys[3];
    memset(keys, 0, sizeof keys);
    keys[0].role = ROLE_CLIENT;
    strcpy(keys[0].key, KEY_A);
    keys[1].role = ROLE_ADMIN;
    keys[1].hashed = 1;
    sha256(keys[1].digest, KEY_B, strlen(KEY_B));
    keys[2].role = ROLE_ADMIN; // the same key twice, with two roles: the higher one wins
    strcpy(keys[2].key, KEY_A);
    KeySet *ks = keyset_create(keys, 2);
    ck_assert_ptr_nonnull(ks);
    ck_assert_int_eq(keyset_count(ks), 2);
    ck_assert_int_eq(keyset_count_role(ks, ROLE_ADMIN), 1);
    ck_assert_int_eq(keyset_role(ks, KEY_A, strlen(KEY_A)), ROLE_CLIENT);
    ck_assert_int_eq(keyset_role(ks, KEY_B, strlen(KEY_B)), ROLE_ADMIN);
    ck_assert_int_eq(keyset_role(ks, KEY_C, strlen(KEY_C)), 0);
    ck_assert_int_eq(keyset_role(ks, KEY_A, strlen(KEY_A) - 1), 0); // a prefix
    char hex[65];
    digest_hex(hex, KEY_B, strlen(KEY_B)); // the digest is not a key
    ck_assert_int_eq(keyset_role(ks, hex, 64), 0);
    keyset_release(ks);
    ks = keyset_create(keys, 3);
    ck_assert_int_eq(keyset_role(ks, KEY_A, strlen(KEY_A)), ROLE_ADMIN);
    // a holder hands out references that outlive a swap
    KeyHolder h;
    keyholder_init(&h, ks);
    KeySet *held = keyholder_get(&h);
    keyholder_swap(&h, keyset_create(keys + 1, 1));
    ck_assert_int_eq(keyset_role(held, KEY_A, strlen(KEY_A)), ROLE_ADMIN);
    KeySet *now = keyholder_get(&h);
    ck_assert_int_eq(keyset_role(now, KEY_A, strlen(KEY_A)), 0);
    keyset_release(now);
    keyset_release(held);
    keyholder_free(&h);
}
END_TEST

/* ---- requests on a kept-alive connection ---- */

static size_t discard(char *data, size_t size, size_t n, void *p) {
    (void)data, (void)p;
    return size * n;
}

// GET url with key (NULL: none) on a kept-alive handle (made by keepalive_handle); the status,
// or -1 when the transfer failed. Loops use these rather than a connection per request: the
// machine's ephemeral ports are shared with every other suite running at the time.
static int get_with(CURL *h, const char *url, const char *key) {
    char auth[128];
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", key ? key : "");
    struct curl_slist *hl = key ? curl_slist_append(NULL, auth) : NULL;
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hl);
    long code = -1;
    if (curl_easy_perform(h) != CURLE_OK || curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code))
        code = -1;
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, NULL);
    curl_slist_free_all(hl);
    return (int)code;
}

// A handle for get_with, or NULL (no Check assertion here: client threads call it too).
static CURL *keepalive_handle(void) {
    CURL *h = curl_easy_init();
    if (!h) return NULL;
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, 60L);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, discard);
    return h;
}

/* ---- in-process server ---- */

static char g_dir[128], g_file[256];
static Server *g_srv;
static HcClient g_c;

// Starts a server whose key file holds text; fixed (NULL: none) is a "role:key" entry given as
// METASERVE_API_KEYS would give it.
static void server_up(const char *text, const char *fixed) {
    ServerConfig c;
    testsrv_config_in_new_dir(&c, g_dir, sizeof g_dir, "keys.db");
    c.workers = 0;
    c.http_threads = 4;
    snprintf(g_file, sizeof g_file, "%s/api-keys", g_dir);
    write_atomic(g_file, text);
    snprintf(c.keys_file, sizeof c.keys_file, "%s", g_file);
    if (fixed) {
        MsError err = {0};
        ck_assert_int_eq(keys_parse_entry(&c.keys[0], fixed, strlen(fixed), &err), MS_OK);
        c.n_keys = 1;
    }
    testsrv_start(&g_srv, &g_c, &c);
}

static long get_models(const char *key) {
    HcReq q = {.method = "GET", .path = "/v1/models", .key = key};
    HcResp r;
    long st = hc_do(&g_c, &r, &q);
    hc_free(&r);
    return st;
}

START_TEST(a_reload_swaps_file_keys_and_keeps_the_variables_keys) {
    server_up("client:" KEY_A "\n", "admin:" ADMIN_KEY);
    ck_assert_int_eq(get_models(KEY_A), 200);
    ck_assert_int_eq(get_models(ADMIN_KEY), 200);
    ck_assert_int_eq(get_models(KEY_B), 401);
    char hex[65], text[128];
    sha256sum_of(hex, KEY_B);
    snprintf(text, sizeof text, "client:sha256:%s\n", hex);
    write_atomic(g_file, text);
    ck_assert_int_eq(get_models(KEY_A), 200); // nothing changes before the reload
    MsError err = {0};
    ck_assert_int_eq(server_keys_reload(g_srv, "test", &err), MS_OK);
    ck_assert_int_eq(get_models(KEY_A), 401);
    ck_assert_int_eq(get_models(KEY_B), 200);
    ck_assert_int_eq(get_models(ADMIN_KEY), 200);
    testsrv_stop(&g_srv, g_dir);
}
END_TEST

START_TEST(bad_empty_or_missing_files_keep_the_keys_in_force) {
    server_up("client:" KEY_A "\n", NULL);
    MsError err = {0};
    write_atomic(g_file, "client:" KEY_B "\nclient:" KEY_C "\nguest:" KEY_C "\n");
    ck_assert_int_eq(server_keys_reload(g_srv, "test", &err), MS_ERR_INVALID);
    ck_assert_msg(strstr(err.msg, "line 3: role must be admin or client"), "%s", err.msg);
    ck_assert_int_eq(get_models(KEY_A), 200);
    ck_assert_int_eq(get_models(KEY_B), 401); // no part of the bad file was taken

    write_atomic(g_file, "# every key removed\n");
    ck_assert_int_eq(server_keys_reload(g_srv, "test", &err), MS_ERR_INVALID);
    ck_assert_msg(strstr(err.msg, "no keys"), "%s", err.msg);
    ck_assert_int_eq(get_models(NULL), 401); // still protected, not opened
    ck_assert_int_eq(get_models(KEY_A), 200);

    ck_assert_int_eq(unlink(g_file), 0);
    ck_assert_int_eq(server_keys_reload(g_srv, "test", &err), MS_ERR_IO);
    ck_assert_int_eq(get_models(KEY_A), 200);

    write_atomic(g_file, "client:" KEY_B "\n");
    ck_assert_int_eq(server_keys_reload(g_srv, "test", &err), MS_OK);
    ck_assert_int_eq(get_models(KEY_A), 401);
    ck_assert_int_eq(get_models(KEY_B), 200);
    testsrv_stop(&g_srv, g_dir);
}
END_TEST

START_TEST(an_open_service_becomes_protected_when_keys_are_loaded) {
    server_up("# no keys yet\n", NULL);
    ck_assert_int_eq(get_models(NULL), 200);
    write_atomic(g_file, "client:" KEY_A "\n");
    MsError err = {0};
    ck_assert_int_eq(server_keys_reload(g_srv, "test", &err), MS_OK);
    ck_assert_int_eq(get_models(NULL), 401);
    ck_assert_int_eq(get_models(KEY_A), 200);
    testsrv_stop(&g_srv, g_dir);
}
END_TEST

START_TEST(polling_reloads_a_changed_file_on_its_second_sighting) {
    server_up("client:" KEY_A "\n", NULL);
    ck_assert_int_eq(server_keys_poll(g_srv), 0); // unchanged
    write_atomic(g_file, "client:" KEY_B "\n");
    ck_assert_int_eq(server_keys_poll(g_srv), 0); // first seen: the writer may not be done
    ck_assert_int_eq(get_models(KEY_A), 200);
    ck_assert_int_eq(server_keys_poll(g_srv), 1); // the same on the next look: reloaded
    ck_assert_int_eq(get_models(KEY_A), 401);
    ck_assert_int_eq(get_models(KEY_B), 200);
    ck_assert_int_eq(server_keys_poll(g_srv), 0);

    // a file written in place that keeps changing is not read until it stops
    FILE *f = fopen(g_file, "w");
    ck_assert_ptr_nonnull(f);
    fputs("client:", f);
    fflush(f);
    ck_assert_int_eq(server_keys_poll(g_srv), 0);
    fputs(KEY_C "\n", f);
    fclose(f);
    ck_assert_int_eq(server_keys_poll(g_srv), 0); // changed again since the last look
    ck_assert_int_eq(get_models(KEY_B), 200);
    ck_assert_int_eq(server_keys_poll(g_srv), 1);
    ck_assert_int_eq(get_models(KEY_C), 200);
    ck_assert_int_eq(get_models(KEY_B), 401);

    // a bad file is reported once, not on every poll
    write_atomic(g_file, "client:bad\n");
    ck_assert_int_eq(server_keys_poll(g_srv), 0);
    ck_assert_int_eq(server_keys_poll(g_srv), 1);
    ck_assert_int_eq(server_keys_poll(g_srv), 0);
    ck_assert_int_eq(get_models(KEY_C), 200);
    testsrv_stop(&g_srv, g_dir);
}
END_TEST

// Reads from fd until the end of a response's headers (or 30 s pass); returns the status code of
// the status line, -1 when none came.
static int read_status(int fd, char *buf, size_t cap) {
    size_t n = 0;
    buf[0] = '\0';
    while (n + 1 < cap && !strstr(buf, "\r\n\r\n")) {
        ssize_t r = read(fd, buf + n, cap - 1 - n);
        if (r <= 0) break;
        n += (size_t)r;
        buf[n] = '\0';
    }
    int code = -1;
    return sscanf(buf, "HTTP/1.1 %d", &code) == 1 ? code : -1;
}

START_TEST(a_request_taken_in_before_a_reload_finishes_under_the_old_keys) {
    server_up("client:" KEY_A "\n", NULL);
    int port = atoi(strrchr(g_c.base, ':') + 1);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_ge(fd, 0);
    struct timeval tv = {30, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    ck_assert_int_eq(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    // the headers, with Expect: 100-continue: the server answers 100 only after its first look
    // at the request, which is when the request takes its keys
    const char *body = "{\"x\":[[0.5]]}";
    char head[512], buf[2048];
    int hn = snprintf(head, sizeof head,
                      "POST /v1/models/nosuchmodel@1/predict HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                      "Authorization: Bearer %s\r\nContent-Type: application/json\r\n"
                      "Content-Length: %zu\r\nExpect: 100-continue\r\n\r\n",
                      KEY_A, strlen(body));
    ck_assert_int_eq(write(fd, head, (size_t)hn), hn);
    ck_assert_int_eq(read_status(fd, buf, sizeof buf), 100);

    // the key is rotated away while the request waits for its body
    write_atomic(g_file, "client:" KEY_B "\n");
    MsError err = {0};
    ck_assert_int_eq(server_keys_reload(g_srv, "test", &err), MS_OK);
    ck_assert_int_eq(get_models(KEY_A), 401);

    // the body arrives: the request is answered by its handler (no such model), not refused
    ck_assert_int_eq(write(fd, body, strlen(body)), (ssize_t)strlen(body));
    int st = read_status(fd, buf, sizeof buf);
    ck_assert_msg(st == 404, "the request taken in under the old keys got %d:\n%s", st, buf);
    close(fd);
    testsrv_stop(&g_srv, g_dir);
}
END_TEST

typedef struct {
    const char *key;
    atomic_int *stop;
    atomic_int done; // requests completed
    atomic_int bad;  // of those, not answered 200
    long last_bad;   // the status of the last of those
} SteadyClient;

static void *steady(void *arg) {
    SteadyClient *sc = arg;
    char url[128];
    snprintf(url, sizeof url, "%s/v1/models", g_c.base);
    CURL *h = keepalive_handle();
    while (!atomic_load(sc->stop)) {
        long st = h ? get_with(h, url, sc->key) : -1;
        if (st != 200) {
            sc->last_bad = st;
            atomic_fetch_add(&sc->bad, 1);
        }
        atomic_fetch_add(&sc->done, 1);
    }
    curl_easy_cleanup(h);
    return NULL;
}

START_TEST(a_key_in_every_set_is_never_refused_while_sets_are_swapped) {
    // KEY_A is in both files; the other key alternates, so each reload makes a new set. The
    // reloads go on until there have been 200 of them and every client has completed 200
    // requests since they began (counts, not times: the two overlap however fast either is).
    server_up("client:" KEY_A "\nclient:" KEY_B "\n", NULL);
    atomic_int stop = 0;
    static SteadyClient sc[4];
    pthread_t t[4];
    for (int i = 0; i < 4; i++) {
        memset(&sc[i], 0, sizeof sc[i]);
        sc[i].key = KEY_A;
        sc[i].stop = &stop;
        ck_assert_int_eq(pthread_create(&t[i], NULL, steady, &sc[i]), 0);
    }
    int before[4];
    for (int i = 0; i < 4; i++)
        before[i] = atomic_load(&sc[i].done);
    MsError err = {0};
    double t0 = now_s();
    for (int reloads = 0;; reloads++) {
        int lagging = 0;
        for (int i = 0; i < 4; i++)
            lagging += atomic_load(&sc[i].done) - before[i] < 200;
        if (reloads >= 200 && !lagging) break;
        ck_assert_msg(now_s() - t0 < DEADLINE_S, "%d clients still short of 200 requests", lagging);
        write_atomic(g_file, reloads % 2 ? "client:" KEY_A "\nclient:" KEY_B "\n"
                                         : "admin:" KEY_C "\nclient:" KEY_A "\n");
        ck_assert_int_eq(server_keys_reload(g_srv, "test", &err), MS_OK);
    }
    atomic_store(&stop, 1);
    int bad = 0, done = 0;
    long last_bad = 0;
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        bad += atomic_load(&sc[i].bad);
        done += atomic_load(&sc[i].done);
        last_bad = sc[i].last_bad ? sc[i].last_bad : last_bad;
    }
    ck_assert_msg(bad == 0, "%d of %d requests with a key in every set failed (last status %ld)",
                  bad, done, last_bad);
    testsrv_stop(&g_srv, g_dir);
}
END_TEST

/* ---- the real binary ---- */

// Starts `metaserve serve` on a fresh database in dir with extra "NAME=value" settings.
static void bin_start(Proc *p, const char *dir, const char *const *extra, int n_extra) {
    const char *bin = getenv("METASERVE_BIN");
    ck_assert_msg(bin && *bin, "METASERVE_BIN is not set");
    static char db_var[300];
    snprintf(db_var, sizeof db_var, "METASERVE_DB=%s/serve.db", dir);
    const char *vars[PROC_MAX_VARS] = {db_var, "METASERVE_PORT=0", "METASERVE_LISTEN=127.0.0.1",
                                       "METASERVE_WORKERS=0", "METASERVE_HTTP_THREADS=4"};
    int nv = 5;
    for (int i = 0; i < n_extra; i++)
        vars[nv++] = extra[i];
    const char *why = proc_spawn(p, bin, vars, nv);
    ck_assert_msg(why == NULL, "starting %s: %s", bin, why);
    ck_assert_msg(proc_wait_port(p, 30) > 0, "no listening line; stderr:\n%s", p->tail);
}

// SIGTERM, then the exit status must be 0 and the log must end with "stopped".
static void bin_stop_cleanly(Proc *p) {
    ck_assert_int_eq(kill(p->pid, SIGTERM), 0);
    int status = 0;
    ck_assert_msg(proc_wait_exit(p, 30, &status), "no exit within 30 s of SIGTERM:\n%s", p->tail);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                  "metaserve serve ended with status 0x%x; stderr:\n%s", status, p->tail);
    ck_assert_ptr_nonnull(strstr(p->tail, "\"msg\":\"stopped\""));
}

// Waits (DEADLINE_S at most) until the stderr tail contains text; 1 when it did.
static int wait_tail(Proc *p, const char *text) {
    double t0 = now_s();
    pthread_mutex_lock(&p->mu);
    int found;
    while (!(found = strstr(p->tail, text) != NULL) && !p->eof && now_s() - t0 < DEADLINE_S) {
        pthread_mutex_unlock(&p->mu);
        sleep_ms(10);
        pthread_mutex_lock(&p->mu);
    }
    pthread_mutex_unlock(&p->mu);
    return found;
}

// GET path with key; the status (a failed transfer fails the test).
static long bin_get(Proc *p, const char *path, const char *key) {
    HcReq q = {.method = "GET", .path = path, .key = key};
    HcResp r;
    long st = hc_do(&p->c, &r, &q);
    ck_assert_msg(st > 0, "GET %s: %s; stderr:\n%s", path, r.err, p->tail);
    hc_free(&r);
    return st;
}

// Polls GET /v1/models with key until 200 (DEADLINE_S at most); returns the seconds it took.
static double wait_accepted(Proc *p, const char *key) {
    char url[128];
    snprintf(url, sizeof url, "%s/v1/models", p->c.base);
    CURL *h = keepalive_handle();
    ck_assert_ptr_nonnull(h);
    double t0 = now_s();
    int st;
    while ((st = get_with(h, url, key)) != 200) {
        ck_assert_msg(st == 401, "waiting for the new key: %d; stderr:\n%s", st, p->tail);
        ck_assert_msg(now_s() - t0 < DEADLINE_S, "the new key was not accepted after %.0f s:\n%s",
                      DEADLINE_S, p->tail);
        sleep_ms(5);
    }
    double took = now_s() - t0;
    curl_easy_cleanup(h);
    return took;
}

/* ---- rotation under load ---- */

#define N_CLIENTS   4 // clients that rotate, plus one that sends STEADY all along
#define N_ROTATIONS 3
#define STEADY      (N_ROTATIONS + 1) // ROT_KEY index of an admin key in every file
#define PER_PHASE   100               // requests each client sends with each key, at least
#define REC_CAP     400000            // requests a client records at most

static const char *const ROT_KEY[N_ROTATIONS + 2] = {
    "rotation0-0123456789abcdef", "rotation1-0123456789abcdef", "rotation2-0123456789abcdef",
    "rotation3-0123456789abcdef", "steady-admin-0123456789abcdef"};

typedef struct {
    double t0, t1; // before sending, after the reply (now_s)
    int key;       // index into ROT_KEY
    int status;    // HTTP status, -1 for a failed transfer
} Rec;

typedef struct {
    char url[96];
    atomic_int *phase; // the key to send with
    int steady;        // 1: send STEADY instead
    atomic_int *stop;
    Rec *recs;
    size_t n;                            // records (the client's own until it is joined)
    atomic_int full;                     // 1: REC_CAP reached, the client stopped
    atomic_int per_key[N_ROTATIONS + 2]; // requests completed with each key
} LoadClient;

static void *load_client(void *arg) {
    LoadClient *lc = arg;
    CURL *h = keepalive_handle();
    if (!h) return NULL;
    while (!atomic_load(lc->stop) && lc->n < REC_CAP) {
        Rec *r = &lc->recs[lc->n];
        // read before t0: the key is the current one at t0
        r->key = lc->steady ? STEADY : atomic_load(lc->phase);
        r->t0 = now_s();
        r->status = get_with(h, lc->url, ROT_KEY[r->key]);
        r->t1 = now_s();
        lc->n++;
        atomic_fetch_add(&lc->per_key[r->key], 1);
    }
    atomic_store(&lc->full, lc->n == REC_CAP);
    curl_easy_cleanup(h);
    return NULL;
}

// Waits until each of the first n clients has completed PER_PHASE requests with key k.
static void wait_phase_load(LoadClient *lc, int n, int k, Proc *p) {
    double t0 = now_s();
    for (int i = 0; i < n; i++)
        while (atomic_load(&lc[i].per_key[k]) < PER_PHASE) {
            ck_assert_msg(!atomic_load(&lc[i].full), "client %d ran out of records", i);
            ck_assert_msg(now_s() - t0 < DEADLINE_S, "client %d: %d requests with key %d", i,
                          atomic_load(&lc[i].per_key[k]), k);
            ck_assert_msg(kill(p->pid, 0) == 0, "the server is gone:\n%s", p->tail);
            sleep_ms(2);
        }
}

static void key_file_text(char *out, size_t cap, int k) {
    // even rotations plaintext, odd ones as the digest sha256sum prints
    if (k % 2 == 0) {
        snprintf(out, cap, "# key %d\nclient:%s\nadmin:%s\n", k, ROT_KEY[k], ROT_KEY[STEADY]);
    } else {
        char hex[65];
        sha256sum_of(hex, ROT_KEY[k]);
        snprintf(out, cap, "# key %d, as a digest\nadmin:%s\nclient:sha256:%s\n", k,
                 ROT_KEY[STEADY], hex);
    }
}

START_TEST(sighup_rotates_keys_under_load_without_refusing_a_key_valid_when_sent) {
    char dir[128], file[256], var[300], text[256];
    test_root_subdir(dir, sizeof dir, "rot");
    snprintf(file, sizeof file, "%s/api-keys", dir);
    key_file_text(text, sizeof text, 0);
    write_atomic(file, text);
    snprintf(var, sizeof var, "METASERVE_API_KEYS_FILE=%s", file);
    const char *extra[] = {var};
    static Proc p;
    bin_start(&p, dir, extra, 1);
    ck_assert_int_eq(bin_get(&p, "/v1/models", ROT_KEY[0]), 200);

    atomic_int phase = 0, stop = 0;
    static LoadClient lc[N_CLIENTS + 1];
    pthread_t th[N_CLIENTS + 1];
    for (int i = 0; i < N_CLIENTS + 1; i++) {
        memset(&lc[i], 0, sizeof lc[i]);
        snprintf(lc[i].url, sizeof lc[i].url, "%s/v1/models", p.c.base);
        lc[i].phase = &phase;
        lc[i].steady = i == N_CLIENTS;
        lc[i].stop = &stop;
        lc[i].recs = malloc(REC_CAP * sizeof(Rec));
        ck_assert_ptr_nonnull(lc[i].recs);
        ck_assert_int_eq(pthread_create(&th[i], NULL, load_client, &lc[i]), 0);
    }
    double T0[N_ROTATIONS], Tc[N_ROTATIONS];
    for (int r = 0; r < N_ROTATIONS; r++) {
        wait_phase_load(lc, N_CLIENTS, r, &p);
        key_file_text(text, sizeof text, r + 1);
        char tmp[300];
        snprintf(tmp, sizeof tmp, "%s.tmp", file);
        FILE *f = fopen(tmp, "w");
        ck_assert_ptr_nonnull(f);
        fputs(text, f);
        ck_assert_int_eq(fclose(f), 0);
        T0[r] = now_s();
        ck_assert_int_eq(rename(tmp, file), 0);
        ck_assert_int_eq(kill(p.pid, SIGHUP), 0);
        wait_accepted(&p, ROT_KEY[r + 1]);
        Tc[r] = now_s();
        atomic_store(&phase, r + 1);
    }
    wait_phase_load(lc, N_CLIENTS, N_ROTATIONS, &p);
    wait_phase_load(lc + N_CLIENTS, 1, STEADY, &p);
    atomic_store(&stop, 1);
    for (int i = 0; i < N_CLIENTS + 1; i++)
        pthread_join(th[i], NULL);

    // every request against the rule in the header comment
    size_t total = 0, raced = 0, raced_401 = 0;
    for (int i = 0; i < N_CLIENTS + 1; i++)
        for (size_t j = 0; j < lc[i].n; j++) {
            const Rec *q = &lc[i].recs[j];
            int k = q->key;
            total++;
            ck_assert_msg(q->status == 200 || q->status == 401,
                          "client %d request %zu with key %d: status %d", i, j, k, q->status);
            if (k == STEADY) {
                ck_assert_msg(q->status == 200,
                              "request %zu with the key in every file got %d (%.3f s after the "
                              "first rotation began)",
                              j, q->status, q->t0 - T0[0]);
            } else if (k == N_ROTATIONS || q->t1 < T0[k]) {
                ck_assert_msg(q->status == 200,
                              "client %d request %zu: key %d was valid when sent (it ended %.3f s "
                              "before its rotation began) but got %d",
                              i, j, k, k == N_ROTATIONS ? 0.0 : T0[k] - q->t1, q->status);
            } else if (q->t0 > Tc[k]) {
                ck_assert_msg(q->status == 401,
                              "client %d request %zu: key %d was sent %.3f s after its rotation "
                              "was confirmed but got %d",
                              i, j, k, q->t0 - Tc[k], q->status);
            } else {
                raced++;
                raced_401 += q->status == 401;
            }
        }
    fprintf(stderr,
            "rotation under load: %zu requests, %zu raced a swap (%zu of those 401, correctly)\n",
            total, raced, raced_401);
    ck_assert_uint_ge(total, (size_t)N_CLIENTS * PER_PHASE * (N_ROTATIONS + 1) + PER_PHASE);

    // afterwards: every old key is refused, the last one accepted, the process alive
    for (int k = 0; k < N_ROTATIONS; k++)
        ck_assert_int_eq(bin_get(&p, "/v1/models", ROT_KEY[k]), 401);
    ck_assert_int_eq(bin_get(&p, "/v1/models", ROT_KEY[N_ROTATIONS]), 200);
    ck_assert_int_eq(bin_get(&p, "/livez", NULL), 200);
    bin_stop_cleanly(&p);
    for (int i = 0; i < N_CLIENTS + 1; i++)
        free(lc[i].recs);
}
END_TEST

START_TEST(a_malformed_file_keeps_the_keys_and_a_change_without_sighup_is_picked_up) {
    char dir[128], file[256], var[300];
    test_root_subdir(dir, sizeof dir, "bad");
    snprintf(file, sizeof file, "%s/api-keys", dir);
    write_atomic(file, "client:" KEY_A "\n");
    snprintf(var, sizeof var, "METASERVE_API_KEYS_FILE=%s", file);
    const char *extra[] = {var};
    static Proc p;
    bin_start(&p, dir, extra, 1);
    ck_assert_int_eq(bin_get(&p, "/v1/models", KEY_A), 200);

    // SIGHUP reloads, and says so
    write_atomic(file, "client:" KEY_B "\n");
    ck_assert_int_eq(kill(p.pid, SIGHUP), 0);
    ck_assert_msg(wait_tail(&p, "\"msg\":\"api keys reloaded\",\"trigger\":\"SIGHUP\""),
                  "no reload line after SIGHUP:\n%s", p.tail);
    ck_assert_int_eq(bin_get(&p, "/v1/models", KEY_B), 200);
    ck_assert_int_eq(bin_get(&p, "/v1/models", KEY_A), 401);

    // a malformed file: the keys stay, and the one error line names the line and the rule
    write_atomic(file, "# rotation\nclient:" KEY_C "\noperator:" KEY_C "\n");
    ck_assert_int_eq(kill(p.pid, SIGHUP), 0);
    double t0 = now_s();
    pthread_mutex_lock(&p.mu);
    while (p.errors == 0 && now_s() - t0 < DEADLINE_S) {
        pthread_mutex_unlock(&p.mu);
        sleep_ms(10);
        pthread_mutex_lock(&p.mu);
    }
    char first_err[512];
    snprintf(first_err, sizeof first_err, "%s", p.first_err);
    pthread_mutex_unlock(&p.mu);
    ck_assert_msg(first_err[0], "no error line after a malformed file:\n%s", p.tail);
    static const char *const says[] = {"\"msg\":\"api keys not reloaded", "\"trigger\":\"SIGHUP\"",
                                       "line 3: role must be admin"};
    for (size_t i = 0; i < sizeof says / sizeof says[0]; i++)
        ck_assert_msg(strstr(first_err, says[i]), "the error line does not say %s: %s", says[i],
                      first_err);
    ck_assert_msg(!strstr(first_err, "0123456789abcdef"), "the log shows a key: %s", first_err);
    ck_assert_int_eq(bin_get(&p, "/v1/models", KEY_B), 200);
    ck_assert_int_eq(bin_get(&p, "/v1/models", KEY_C), 401);

    // fixed, without a signal: the watcher picks it up (two polls, about 2 s, by design)
    write_atomic(file, "client:" KEY_C "\n");
    double took = wait_accepted(&p, KEY_C);
    fprintf(stderr, "a changed key file was picked up %.2f s after the rename, without SIGHUP\n",
            took);
    ck_assert_msg(wait_tail(&p, "\"msg\":\"api keys reloaded\",\"trigger\":\"file change\""),
                  "no reload line for the file change:\n%s", p.tail);
    ck_assert_int_eq(bin_get(&p, "/v1/models", KEY_B), 401);
    bin_stop_cleanly(&p);
}
END_TEST

START_TEST(sighup_with_keys_from_the_variable_or_no_keys_keeps_serving) {
    char dir[128];
    test_root_subdir(dir, sizeof dir, "env");
    const char *extra[] = {"METASERVE_API_KEYS=client:" KEY_A};
    static Proc p;
    bin_start(&p, dir, extra, 1);
    ck_assert_int_eq(bin_get(&p, "/v1/models", KEY_A), 200);
    ck_assert_int_eq(kill(p.pid, SIGHUP), 0);
    ck_assert_msg(wait_tail(&p, "cannot be reloaded: kept\",\"trigger\":\"SIGHUP\",\"kept\":1"),
                  "no line saying the variable's keys are kept:\n%s", p.tail);
    for (int i = 0; i < 5; i++) // a burst, too
        ck_assert_int_eq(kill(p.pid, SIGHUP), 0);
    ck_assert_int_eq(bin_get(&p, "/v1/models", KEY_A), 200);
    ck_assert_int_eq(bin_get(&p, "/v1/models", KEY_B), 401);
    bin_stop_cleanly(&p);

    // no keys at all: SIGHUP is harmless too
    char dir2[128];
    test_root_subdir(dir2, sizeof dir2, "open");
    bin_start(&p, dir2, NULL, 0);
    ck_assert_int_eq(kill(p.pid, SIGHUP), 0);
    ck_assert_msg(wait_tail(&p, "nothing to reload"), "no line after SIGHUP:\n%s", p.tail);
    ck_assert_int_eq(bin_get(&p, "/v1/models", NULL), 200);
    bin_stop_cleanly(&p);
}
END_TEST

int main(void) {
    curl_global_init(CURL_GLOBAL_DEFAULT);
    Suite *s = suite_create("keys");
    TCase *unit = tcase_create("unit");
    tcase_add_unchecked_fixture(unit, test_root_make, test_root_remove);
    tcase_add_test(unit, sha256_matches_the_fips_180_2_vectors);
    tcase_add_test(unit, sha256_agrees_with_sha256sum_at_the_padding_boundaries_however_split);
    tcase_add_test(unit, entries_parse_plain_keys_and_digests);
    tcase_add_test(unit, malformed_entries_are_refused_with_the_rule_they_break);
    tcase_add_test(unit, key_files_parse_with_comments_and_crlf_and_name_a_malformed_line);
    tcase_add_test(unit, the_configuration_reads_the_key_file_and_names_its_bad_line);
    tcase_add_test(unit, key_sets_match_plain_and_hashed_keys_and_nothing_else);
    suite_add_tcase(s, unit);
    TCase *srv = tcase_create("server");
    tcase_set_timeout(srv, 60);
    tcase_add_unchecked_fixture(srv, test_root_make, test_root_remove);
    tcase_add_test(srv, a_reload_swaps_file_keys_and_keeps_the_variables_keys);
    tcase_add_test(srv, bad_empty_or_missing_files_keep_the_keys_in_force);
    tcase_add_test(srv, an_open_service_becomes_protected_when_keys_are_loaded);
    tcase_add_test(srv, polling_reloads_a_changed_file_on_its_second_sighting);
    tcase_add_test(srv, a_request_taken_in_before_a_reload_finishes_under_the_old_keys);
    tcase_add_test(srv, a_key_in_every_set_is_never_refused_while_sets_are_swapped);
    suite_add_tcase(s, srv);
    TCase *bin = tcase_create("binary");
    tcase_set_timeout(bin, 120);
    tcase_add_unchecked_fixture(bin, test_root_make, test_root_remove);
    tcase_add_test(bin, sighup_rotates_keys_under_load_without_refusing_a_key_valid_when_sent);
    tcase_add_test(bin, a_malformed_file_keeps_the_keys_and_a_change_without_sighup_is_picked_up);
    tcase_add_test(bin, sighup_with_keys_from_the_variable_or_no_keys_keeps_serving);
    suite_add_tcase(s, bin);
    int failed = test_suite_run(s);
    curl_global_cleanup();
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
