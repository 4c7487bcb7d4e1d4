/*
 * The replay driver linked with each fuzz target outside libFuzzer: feeds every file named on the
 * command line, and every file of every directory named (in name order, skipping dot files), to
 * LLVMFuzzerTestOneInput once. This is how the seed corpus and every saved crash input run as
 * ordinary regression tests in every build (gcc, ASan+UBSan, clang). A target's checks abort on
 * failure; this driver fails when a path cannot be read or when no input was found at all (an
 * empty corpus would otherwise pass silently).
 *
 * Allocations are capped at FUZZ_ALLOC_CAP_MB (as -malloc_limit_mb caps them under libFuzzer):
 * no input here is above 64 KiB and every reader allocates a small multiple of its input, so a
 * larger request is an amplification bug; refused, it turns into a 503 that the target's checks
 * report. The cap is a malloc wrapper in a plain build, and ASan's max_allocation_size_mb in a
 * sanitized one (FUZZ_REPLAY_ALLOC = 1 plain, 2 ASan, 0 none, e.g. under TSan).
 */
#define _DEFAULT_SOURCE
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_ALLOC_CAP_MB 64

#if FUZZ_REPLAY_ALLOC == 1
void *__libc_malloc(size_t n);
// Replaces malloc for the whole process (glibc: calloc, realloc and free are separate entry points
// that accept what __libc_malloc returns).
void *malloc(size_t n) {
    return n > ((size_t)FUZZ_ALLOC_CAP_MB << 20) ? NULL : __libc_malloc(n);
}
#elif FUZZ_REPLAY_ALLOC == 2
const char *__asan_default_options(void);
const char *__asan_default_options(void) {
    return "allocator_may_return_null=1:max_allocation_size_mb=64";
}
#endif

// Runs the target on the file at path; 0 on success, -1 when it cannot be read.
static int run_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        return -1;
    }
    size_t cap = 4096, n = 0;
    uint8_t *buf = malloc(cap);
    size_t got;
    while (buf && (got = fread(buf + n, 1, cap - n, f)) > 0) {
        n += got;
        if (n == cap) {
            uint8_t *bigger = realloc(buf, cap * 2);
            if (!bigger) free(buf);
            buf = bigger;
            cap *= 2;
        }
    }
    int bad = !buf || ferror(f);
    fclose(f);
    if (bad) {
        fprintf(stderr, "%s: cannot read\n", path);
        free(buf);
        return -1;
    }
    // an exact-size copy, so that ASan catches a read past the input
    uint8_t *exact = malloc(n ? n : 1);
    if (!exact) {
        free(buf);
        return -1;
    }
    memcpy(exact, buf, n);
    free(buf);
    LLVMFuzzerTestOneInput(exact, n);
    free(exact);
    return 0;
}

static int skip_dots(const struct dirent *e) {
    return e->d_name[0] != '.';
}

int main(int argc, char **argv) {
    long files = 0;
    int failed = 0;
    for (int a = 1; a < argc; a++) {
        struct stat st;
        if (stat(argv[a], &st) != 0) {
            perror(argv[a]);
            failed = 1;
            continue;
        }
        if (!S_ISDIR(st.st_mode)) {
            failed |= run_file(argv[a]) != 0;
            files++;
            continue;
        }
        struct dirent **names;
        int n = scandir(argv[a], &names, skip_dots, alphasort);
        if (n < 0) {
            perror(argv[a]);
            failed = 1;
            continue;
        }
        for (int i = 0; i < n; i++) {
            char path[4096];
            snprintf(path, sizeof path, "%s/%s", argv[a], names[i]->d_name);
            if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
                failed |= run_file(path) != 0;
                files++;
            }
            free(names[i]);
        }
        free(names);
    }
    printf("replayed %ld inputs\n", files);
    if (files == 0) {
        fprintf(stderr, "no inputs found\n");
        return 1;
    }
    return failed;
}
