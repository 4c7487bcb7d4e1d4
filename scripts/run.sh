#!/usr/bin/env bash
# The "run the service" entry point. The HTTP server is not built yet, so for now this shows the
# numeric core end to end, offline: install dependencies, build, meta-train MAML on the sinusoid
# regression benchmark (examples/sinusoid_quick.json), then evaluate the model on 200 fresh tasks
# after 1 and 10 adaptation steps from 5 and 10 support points.
#
# BUILD_DIR selects the build directory (default build); CONFIG another training config.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
BUILD_DIR=${BUILD_DIR:-build}
CONFIG=${CONFIG:-examples/sinusoid_quick.json}
MODEL="$BUILD_DIR/sinusoid.model.json"

bash scripts/install-deps.sh
BUILD_DIR="$BUILD_DIR" bash scripts/build.sh

printf 'run.sh: meta-training with %s\n' "$CONFIG"
"$BUILD_DIR/metaserve" train --config "$CONFIG" --out "$MODEL"

printf 'run.sh: evaluating %s\n' "$MODEL"
"$BUILD_DIR/metaserve" eval --model "$MODEL" --tasks 200 --k 5,10 --steps 1,10
