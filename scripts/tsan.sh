#!/usr/bin/env bash
# The ThreadSanitizer pass: builds metaserve with -DMS_TSAN=ON into ${BUILD_DIR:-build-tsan} and
# runs the server and job-runner suites under it; any TSan report (data race, lock-order
# inversion, unlock of an unheld mutex, ...) fails the test that hit it.
#
#     bash scripts/tsan.sh
#     BUILD_DIR=/tmp/tsan bash scripts/tsan.sh
#     TSAN_TESTS='^test_jobs$' bash scripts/tsan.sh     # another CTest -R regex
#
# Suites (TSAN_TESTS, a CTest -R regex):
#   test_jobs      worker threads, cancel, graceful stop
#   test_serving  the model cache under concurrent gets
#   test_store     four connections claiming jobs, concurrent model writes ("sqlite" case only)
#   test_store_pg, test_api_pg
#                  the same on PostgreSQL (the "postgresql" case: replicas migrating at once,
#                  leases), with the server started by CTest's pg fixture
#   test_api, test_auth, test_fault
#                  the in-process server: libmicrohttpd's thread pool, the job pool, the
#                  registry and the metrics together (test_fault adds storage and allocation
#                  failures)
#   test_shutdown, test_gateway
#                  the real binary (METASERVE_BIN, built here with TSan too), SIGTERM mid-job and
#                  behind nginx: a report makes the server exit 66, which fails the test
# Not here: test_crash (SIGKILL at random points, minutes long), test_load and the "memory" case
# of test_store (they bound peak RSS, which TSan's shadow memory inflates 3-5x; both run in the
# other tiers). The exit code is CTest's: non-zero when any test failed or any report was made.
#
# Compiler: clang (Debian's clang 14, scripts/install-deps.sh), for -fsanitize-ignorelist. The
# numeric kernels are compiled without TSan's memory-access instrumentation: src/nn/mlp.c,
# src/nn/mlp_hvp.c, the inline kernels of src/nn/gemm.h and src/nn/act.h, and src/meta/meta.c
# (forward, backward, Hessian-vector products, the MAML inner loop). Instrumented, they make training about 17x
# slower (2,000 iterations of the test_shutdown config: 8.2 s of CPU instead of 0.5 s), so the
# resume test cannot finish within its deadlines. They hold no state of their own and touch only
# buffers their caller owns (a worker's Trainer and MlpWork, an adaptation's scratch; a cached
# model's parameters are only read), so every shared-state access stays instrumented: jobs/,
# serving/, store/, http/, tasks/ and meta/train.c; malloc/free and every pthread and libc call
# are intercepted everywhere.
#
# The binaries re-exec themselves through /proc/self/exe to set OPENBLAS_CORETYPE (src/nn/blas.c);
# that works under TSan and is left on, so the pass runs the same start-up path as production.
# Suppressions (tests/tsan-suppressions.txt, used when present) are only for races inside
# uninstrumented third-party libraries, one commented entry each; none is needed today.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
BUILD_DIR=${BUILD_DIR:-build-tsan}
TSAN_CC=${TSAN_CC:-clang}
DEFAULT_TESTS='^(test_jobs|test_serving|test_store|test_api|test_auth|test_fault|test_shutdown'
DEFAULT_TESTS+='|test_gateway|test_store_pg|test_api_pg|pg_server_start|pg_server_stop)$'
TSAN_TESTS=${TSAN_TESTS:-$DEFAULT_TESTS}
JOBS=${JOBS:-$(nproc 2>/dev/null || echo 2)}

CC_PATH=$(command -v "$TSAN_CC") || {
    printf 'tsan.sh: %s not found (scripts/install-deps.sh installs clang)\n' "$TSAN_CC" >&2
    exit 2
}

# A build directory configured with another compiler cannot be switched in place.
if [ -f "$BUILD_DIR/CMakeCache.txt" ] &&
    ! grep -q "^CMAKE_C_COMPILER:[A-Z]*=$CC_PATH\$" "$BUILD_DIR/CMakeCache.txt"; then
    printf 'tsan.sh: %s was configured with another compiler; reconfiguring\n' "$BUILD_DIR"
    rm -rf "$BUILD_DIR/CMakeCache.txt" "$BUILD_DIR/CMakeFiles"
fi
mkdir -p "$BUILD_DIR"
# The numeric kernels left uninstrumented (see above), clang only: TSAN_CC=gcc instruments
# everything, and test_shutdown then runs out of its deadlines. The list is written only when it
# changes, so that an unchanged list does not rebuild them.
CFLAGS_TSAN=
if "$CC_PATH" --version | grep -q clang; then
    IGNORELIST=$(cd "$BUILD_DIR" && pwd)/tsan-ignorelist.txt
    IGNORE_TEXT='src:*/src/nn/mlp.c
src:*/src/nn/mlp_hvp.c
src:*/src/nn/gemm.h
src:*/src/nn/act.h
src:*/src/meta/meta.c'
    if [ ! -f "$IGNORELIST" ] || [ "$(cat "$IGNORELIST")" != "$IGNORE_TEXT" ]; then
        printf '%s\n' "$IGNORE_TEXT" >"$IGNORELIST"
    fi
    CFLAGS_TSAN="-fsanitize-ignorelist=$IGNORELIST"
fi

cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER="$CC_PATH" \
    -DMS_TSAN=ON -DMS_SANITIZE=OFF -DMS_FUZZ=OFF \
    -DCMAKE_C_FLAGS="$CFLAGS_TSAN"
if [ "$TSAN_TESTS" = "$DEFAULT_TESTS" ]; then
    targets=(metaserve test_jobs test_serving test_store test_api test_auth test_shutdown)
    # test_store_pg and test_api_pg run the executables above
    [ ! -f tests/fault/CMakeLists.txt ] || targets+=(test_fault)
    cmake --build "$BUILD_DIR" -j"$JOBS" --target "${targets[@]}"
else
    cmake --build "$BUILD_DIR" -j"$JOBS"
fi

# halt_on_error: the first report ends the process with exitcode 66, which fails the Check test
# (its forked child exits early) or the server under test_shutdown (non-zero exit status).
# Options already in TSAN_OPTIONS come last and so take precedence.
TSAN_OPTIONS="halt_on_error=1:exitcode=66:second_deadlock_stack=1${TSAN_OPTIONS:+:$TSAN_OPTIONS}"
if [ -s "$ROOT/tests/tsan-suppressions.txt" ]; then
    TSAN_OPTIONS="$TSAN_OPTIONS:suppressions=$ROOT/tests/tsan-suppressions.txt"
fi
export TSAN_OPTIONS
# Check's per-test time limits, and the job deadlines of test_shutdown, which scale with the same
# variable, absorb TSan's slower locking and training (not a timing test: the limits only turn a
# hang into a failure, and a busy shared machine must not turn slowness into one).
export CK_TIMEOUT_MULTIPLIER=${CK_TIMEOUT_MULTIPLIER:-4}

# TSan of clang 14 / gcc 12 cannot map its shadow memory under the 32-bit mmap randomisation of
# some newer kernels ("FATAL: ThreadSanitizer: unexpected memory mapping"); the tests then run with
# address-space randomisation off for their process tree.
RUN=()
if "$BUILD_DIR/metaserve" --help 2>&1 >/dev/null | grep -q 'unexpected memory mapping'; then
    printf 'tsan.sh: this kernel randomises mmap beyond what TSan maps; running under setarch -R\n'
    RUN=(setarch "$(uname -m)" -R)
fi

printf 'tsan.sh: running %s under ThreadSanitizer (%s)\n' "$TSAN_TESTS" "$BUILD_DIR"
start=$(date +%s)
rc=0
CTEST=("${RUN[@]}" ctest --test-dir "$BUILD_DIR" --output-on-failure)
selected=$("${CTEST[@]}" -N -R "$TSAN_TESTS" | sed -n 's/^ *Test *#[0-9]*: //p')
if [ -z "$selected" ]; then
    printf 'tsan.sh: no test matches %s\n' "$TSAN_TESTS" >&2
    exit 2
fi
if printf '%s\n' "$selected" | grep -qx test_store; then
    CK_RUN_CASE=sqlite "${CTEST[@]}" -R '^test_store$' || rc=$?
fi
if printf '%s\n' "$selected" | grep -qx test_store_pg; then
    CK_RUN_CASE=postgresql "${CTEST[@]}" -R '^test_store_pg$' || rc=$?
fi
if printf '%s\n' "$selected" | grep -qvxE 'test_store|test_store_pg'; then
    "${CTEST[@]}" -R "$TSAN_TESTS" -E '^test_store(_pg)?$' -j2 || rc=$?
fi
printf 'tsan.sh: %d s, ctest exit %d\n' "$(($(date +%s) - start))" "$rc"
exit "$rc"
