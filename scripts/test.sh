#!/usr/bin/env bash
# The test entry point: installs dependencies, builds, and runs the CTest suites.
#
#     bash scripts/test.sh                    # every test
#     TEST_TIER=quick bash scripts/test.sh    # only tests labelled quick
#     TEST_TIER=slow bash scripts/test.sh     # only tests labelled slow (also: http)
#
# Arguments are passed to scripts/build.sh (CMake configure options). BUILD_DIR selects the build
# directory (default build). The exit code is ctest's: 0 when every selected test passed.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
BUILD_DIR=${BUILD_DIR:-build}
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
BUILD_DIR="$BUILD_DIR" bash scripts/install.sh "$BUILD_DIR/install-check" --strip
"$BUILD_DIR/install-check/bin/metaserve" --help >/dev/null

bash scripts/lint-openapi.sh # the API contract must lint clean before any test runs
printf 'test.sh: running tier "%s"\n' "$TEST_TIER"
rc=0
ctest "${CTEST_ARGS[@]}" || rc=$?
exit "$rc"
