#!/usr/bin/env bash
# Runs the dashboard's browser test (test_browser.mjs) in headless Chromium: installs
# puppeteer-core into tests/browser/node_modules with `npm ci` (again only when package-lock.json
# has changed since; puppeteer-core downloads no browser) and uses Debian's chromium
# (scripts/install-deps.sh installs it; CHROMIUM overrides the path).
#
#     METASERVE_BIN=build/metaserve bash tests/browser/run.sh
#
# Environment as test_browser.mjs documents it (METASERVE_ARTEFACTS: where the screenshots go;
# METASERVE_UPDATE_DOCS_IMG=1: also into docs/img/).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"
log() { printf 'browser-test: %s\n' "$*" >&2; }

CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
[[ -x $CHROMIUM ]] || { log "error: $CHROMIUM not found (scripts/install-deps.sh installs chromium)"; exit 1; }
command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 ||
    { log "error: node and npm not found (scripts/lint-openapi.sh installs them)"; exit 1; }

stamp=node_modules/.metaserve-lock
if [[ ! -d node_modules/puppeteer-core ]] || ! cmp -s package-lock.json "$stamp"; then
    log "installing puppeteer-core (npm ci)"
    npm ci --ignore-scripts --no-audit --no-fund --prefer-offline --loglevel=error
    cp package-lock.json "$stamp"
fi

export CHROMIUM METASERVE_SRC=${METASERVE_SRC:-$(cd ../.. && pwd)}
exec node test_browser.mjs
