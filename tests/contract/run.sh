#!/usr/bin/env bash
# Runs one contract test (tests/contract/types.mjs or prism.mjs) after making sure the npm tools
# of tools/contract are installed (scripts/contract-tools.sh).
#     METASERVE_BIN=build/metaserve bash tests/contract/run.sh types.mjs
set -euo pipefail
SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
export METASERVE_SRC=$SRC METASERVE_BIN=${METASERVE_BIN:-$SRC/build/metaserve}
bash "$SRC/scripts/contract-tools.sh"
exec node "$SRC/tests/contract/$1"
