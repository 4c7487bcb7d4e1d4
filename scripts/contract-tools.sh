#!/usr/bin/env bash
# Installs the contract tests' npm tools (tools/contract: openapi-typescript, typescript, Prism,
# the versions pinned by its package-lock.json) with `npm ci --ignore-scripts`, and again only
# when package-lock.json has changed since. tests/contract/run.sh calls it before each contract
# test; scripts/test.sh calls it once before ctest. Concurrent calls wait for each other (flock).
# Needs node and npm (scripts/lint-openapi.sh installs them).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
TOOLS=tools/contract
log() { printf 'contract-tools: %s\n' "$*" >&2; }

command -v npm >/dev/null 2>&1 || { log "error: npm not found (scripts/lint-openapi.sh installs it)"; exit 1; }
exec 9>"$TOOLS/.install.lock"
flock 9
stamp=$TOOLS/node_modules/.metaserve-lock
if [[ ! -x $TOOLS/node_modules/.bin/tsc || ! -x $TOOLS/node_modules/.bin/prism ]] ||
    ! cmp -s "$TOOLS/package-lock.json" "$stamp"; then
    log "installing the contract tools (npm ci)"
    npm ci --prefix "$TOOLS" --ignore-scripts --no-audit --no-fund --prefer-offline --loglevel=error
    cp "$TOOLS/package-lock.json" "$stamp"
fi
