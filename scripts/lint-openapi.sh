#!/usr/bin/env bash
# Lints the API contract, api/openapi.yaml, with Redocly CLI (the version pinned by
# tools/openapi-lint/package-lock.json; rules in tools/openapi-lint/redocly.yaml). Exits non-zero
# when the linter reports an error; warnings are printed.
#
#     bash scripts/lint-openapi.sh
#
# Needs Node.js >= 18.17 and npm: when either is missing it installs Debian 12's `nodejs` and
# `npm` packages (as root, or through sudo). The linter is installed with `npm ci` into
# tools/openapi-lint/node_modules, and again only when package-lock.json has changed since.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
TOOLS=tools/openapi-lint
SPEC=api/openapi.yaml

log() { printf 'lint-openapi: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    command -v apt-get >/dev/null 2>&1 || die "node and npm not found, and no apt-get to install them"
    SUDO=()
    if [[ $(id -u) -ne 0 ]]; then
        command -v sudo >/dev/null 2>&1 || die "must run as root (or with sudo) to install nodejs and npm"
        SUDO=(sudo)
    fi
    log "installing nodejs and npm"
    "${SUDO[@]}" apt-get update
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y --no-install-recommends nodejs npm
fi

# Redocly CLI 1.34 supports Node 18.17 and later (Debian 12 ships 18.19+).
node_version=$(node -p 'process.versions.node')
IFS=. read -r major minor _ <<<"$node_version"
if ((major < 18 || (major == 18 && minor < 17))); then
    die "Node.js $node_version is too old: the linter needs 18.17 or later"
fi

# npm ci wipes node_modules and reinstalls; skip it while the installed tree matches the lockfile.
stamp=$TOOLS/node_modules/.metaserve-lock
if [[ ! -x $TOOLS/node_modules/.bin/redocly ]] || ! cmp -s "$TOOLS/package-lock.json" "$stamp"; then
    log "installing the linter (npm ci)"
    npm ci --prefix "$TOOLS" --ignore-scripts --no-audit --no-fund --prefer-offline \
        --loglevel=error
    cp "$TOOLS/package-lock.json" "$stamp"
fi

# No usage reports and no update check: the lint must not depend on anything but the lockfile.
export REDOCLY_TELEMETRY=off REDOCLY_SUPPRESS_UPDATE_NOTICE=true

log "redocly $("$TOOLS/node_modules/.bin/redocly" --version) lint $SPEC"
"$TOOLS/node_modules/.bin/redocly" lint --config "$TOOLS/redocly.yaml" --max-problems 500 "$SPEC"
