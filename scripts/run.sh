#!/usr/bin/env bash
# The "run the service" entry point: installs the dependencies, builds, and starts
# `metaserve serve` in the foreground on port 8080 with the embedded SQLite database
# (./metaserve.db unless METASERVE_DB says otherwise). Every METASERVE_* variable of the README
# applies; Ctrl-C or SIGTERM stops it cleanly (running jobs checkpoint and resume next start).
#
# BUILD_DIR selects the build directory (default build).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
BUILD_DIR=${BUILD_DIR:-build}

bash scripts/install-deps.sh --build # what building needs; the test tools come with scripts/test.sh
BUILD_DIR="$BUILD_DIR" bash scripts/build.sh

export METASERVE_DB=${METASERVE_DB:-metaserve.db}
printf 'run.sh: starting metaserve on port %s (database %s)\n' "${METASERVE_PORT:-8080}" \
    "$METASERVE_DB"
exec "$BUILD_DIR/metaserve" serve
