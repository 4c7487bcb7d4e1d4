#!/usr/bin/env bash
# The kill-at-random crash test (tests/crash/crash_test.c): builds metaserve and the driver into
# ${BUILD_DIR:-build-crash}, then kills the real server with SIGKILL KILLS times (default 24)
# during training, uploads and model writes, restarting it on the same SQLite file, and prints
# the summary (where the kills landed, what was verified, the wall time).
#
#     bash scripts/crash-test.sh            # 24 kills, a fresh seed (printed)
#     KILLS=50 SEED=1234 bash scripts/crash-test.sh
#
# SEED replays a schedule (kill delays and upload contents; timing still varies). The working
# directory is kept when a check fails (its path is printed), or always with CRASH_KEEP=1.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
BUILD_DIR=${BUILD_DIR:-build-crash}

cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$BUILD_DIR" -j2 --target metaserve crash_test

export METASERVE_BIN="$BUILD_DIR/metaserve"
export OPENBLAS_NUM_THREADS=1
export CRASH_KILLS=${KILLS:-${CRASH_KILLS:-24}}
if [[ -n "${SEED:-}" ]]; then export CRASH_SEED=$SEED; fi
exec "$BUILD_DIR/tests/crash/crash_test"
