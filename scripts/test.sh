#!/usr/bin/env bash
# The test entry point: installs dependencies, builds, and runs the CTest suites.
#
#     bash scripts/test.sh                    # every test
#     TEST_TIER=quick bash scripts/test.sh    # only tests labelled quick (no sanitizer pass)
#     TEST_TIER=slow bash scripts/test.sh     # only tests labelled slow (also: http)
#
# Arguments are passed to scripts/build.sh (CMake configure options). BUILD_DIR selects the build
# directory (default build). The exit code is ctest's: 0 when every selected test passed.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
BUILD_DIR=${BUILD_DIR:-build}
export BUILD_DIR
TEST_TIER=${TEST_TIER:-all}

CTEST_ARGS=(--test-dir "$BUILD_DIR" --output-on-failure --no-tests=error)
case "$TEST_TIER" in
    all | "") ;;
    quick | slow | http) CTEST_ARGS+=(-L "^${TEST_TIER}\$") ;;
    *)
        printf 'test.sh: unknown TEST_TIER "%s" (expected all, quick, slow or http)\n' \
            "$TEST_TIER" >&2
        exit 2
        ;;
esac

bash scripts/install-deps.sh
BUILD_DIR="$BUILD_DIR" bash scripts/build.sh "$@"
# The container image's install steps (deploy/Dockerfile), exercised here so CI runs them too.
bash scripts/install-runtime-deps.sh
bash scripts/install.sh "$BUILD_DIR/install-check" --strip
"$BUILD_DIR/install-check/bin/metaserve" --help >/dev/null

bash scripts/lint-openapi.sh # the API contract must lint clean before any test runs
printf 'test.sh: running tier "%s"\n' "$TEST_TIER"
rc=0
ctest "${CTEST_ARGS[@]}" || rc=$?

# The whole suite once more under AddressSanitizer + UndefinedBehaviorSanitizer (leaks included);
# any report fails the test that hit it. Part of the default tier; TEST_TIER=quick|slow|http skip it.
if [ "$TEST_TIER" = all ] && [ "$rc" -eq 0 ]; then
    SAN_DIR="${BUILD_DIR}-asan"
    BUILD_DIR="$SAN_DIR" bash scripts/build.sh -DMS_SANITIZE=ON "$@"
    printf 'test.sh: running every test under ASan + UBSan (%s)\n' "$SAN_DIR"
    ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
        ctest --test-dir "$SAN_DIR" --output-on-failure --no-tests=error || rc=$?
fi
exit "$rc"
