/*
 * The temporary directory of a test executable: made once by the unchecked fixture (in Check's
 * runner process) and removed by it at the end, so that it goes even when a test fails in its
 * forked child. Each test makes its own directories under it.
 *
 * Define TEST_ROOT_NAME (e.g. "ms_api") before including: the root is /tmp/<name>_XXXXXX.
 * Use: tcase_add_unchecked_fixture(tc, test_root_make, test_root_remove), and test_suite_run
 * from main.
 */
#ifndef METASERVE_TESTS_TESTROOT_H
#define METASERVE_TESTS_TESTROOT_H

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef TEST_ROOT_NAME
#error "define TEST_ROOT_NAME before including testroot.h"
#endif

static char test_root[64]; // the root directory, set by test_root_make

static inline void test_root_make(void) {
    snprintf(test_root, sizeof test_root, "/tmp/%s_XXXXXX", TEST_ROOT_NAME);
    if (!mkdtemp(test_root)) {
        perror("mkdtemp");
        exit(EXIT_FAILURE);
    }
}

// Removes the root and all below it (made writable first: a test may have made files read-only).
static inline void test_root_remove(void) {
    char cmd[192];
    snprintf(cmd, sizeof cmd, "chmod -R u+w '%s'; rm -rf '%s'", test_root, test_root);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", test_root);
}

// Makes a fresh directory <root>/<name>_XXXXXX and writes its path to dir (n bytes).
static inline void test_root_subdir(char *dir, size_t n, const char *name) {
    int len = snprintf(dir, n, "%s/%s_XXXXXX", test_root, name);
    ck_assert_msg(len > 0 && (size_t)len < n, "directory name too long");
    ck_assert_ptr_nonnull(mkdtemp(dir));
}

// Runs every test of s (CK_NORMAL output; forking as CK_FORK says), frees s; returns how many
// failed.
static inline int test_suite_run(Suite *s) {
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed;
}

#endif
