#!/usr/bin/env bash
# ONNX exports against outside tools (run.mjs): installs ONNX Runtime for Node (the version pinned
# by tests/onnx/package-lock.json) into tests/onnx/node_modules with npm ci --ignore-scripts (its
# install script would fetch optional GPU extras from a registry this test must not need; the CPU
# runtime ships inside the package), again only when the lockfile has changed, then runs run.mjs.
# Needs node and npm (scripts/lint-openapi.sh installs Debian's), /usr/bin/python3 with Debian's
# python3-onnx, and curl. Environment: METASERVE_BIN, METASERVE_SRC.
set -euo pipefail

DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
stamp=$DIR/node_modules/.metaserve-lock
if [[ ! -f $DIR/node_modules/onnxruntime-node/package.json ]] || ! cmp -s "$DIR/package-lock.json" "$stamp"; then
    echo "onnx test: installing onnxruntime-node (npm ci)" >&2
    npm ci --prefix "$DIR" --ignore-scripts --no-audit --no-fund --prefer-offline --loglevel=error
    cp "$DIR/package-lock.json" "$stamp"
fi
exec node "$DIR/run.mjs"
