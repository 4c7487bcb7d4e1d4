#!/usr/bin/env bash
# Configures and builds metaserve with CMake into ${BUILD_DIR:-build} (RelWithDebInfo unless a
# -DCMAKE_BUILD_TYPE=... argument says otherwise). Extra arguments go to the configure step, e.g.
#     bash scripts/build.sh -DMS_SANITIZE=ON
# Does not install packages: run scripts/install-deps.sh first on a fresh machine.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
BUILD_DIR=${BUILD_DIR:-build}
JOBS=$(nproc 2>/dev/null || echo 2)

cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@"
cmake --build "$BUILD_DIR" -j"$JOBS"
