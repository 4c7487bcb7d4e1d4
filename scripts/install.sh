#!/usr/bin/env bash
# Installs a built metaserve into PREFIX and checks that the installed binary runs:
#
#     bash scripts/install.sh PREFIX [--strip]
#
#     PREFIX/bin/metaserve                  the binary from ${BUILD_DIR:-build} (run build.sh first)
#     PREFIX/share/metaserve/openapi.yaml   the API contract (the service also serves it)
#
# --strip removes the symbols and debug information from the installed copy (the build directory
# keeps its RelWithDebInfo binary). The container image's build stage runs this script
# (deploy/Dockerfile) and scripts/test.sh runs it on every test run, so CI exercises it.
#
# A relative PREFIX is taken from the current directory; BUILD_DIR, as in build.sh, from the
# repository root.
#
# Afterwards it verifies that `PREFIX/bin/metaserve --help` succeeds (the binary loads its shared
# libraries) and that `PREFIX/bin/metaserve health --port 1` fails (nothing listens on port 1, so
# the container probe cannot report healthy by accident). Exit status 0 when both hold.
set -euo pipefail

caller_dir=$PWD
cd "$(dirname "${BASH_SOURCE[0]}")/.."
BUILD_DIR=${BUILD_DIR:-build}

log() { printf 'install: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

prefix=""
strip=0
for arg in "$@"; do
    case "$arg" in
        --strip) strip=1 ;;
        -h | --help)
            sed -n '2,18p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
            exit 0
            ;;
        -*) die "unknown option '$arg' (expected --strip)" ;;
        *)
            [[ -z "$prefix" ]] || die "more than one PREFIX given ('$prefix', '$arg')"
            prefix=$arg
            ;;
    esac
done
[[ -n "$prefix" ]] || die "usage: bash scripts/install.sh PREFIX [--strip]"
[[ "$prefix" == /* ]] || prefix=$caller_dir/$prefix

binary=$BUILD_DIR/metaserve
[[ -x "$binary" ]] || die "$binary not found: build first (bash scripts/build.sh)"
[[ -f api/openapi.yaml ]] || die "api/openapi.yaml not found"

install -d -m 0755 "$prefix/bin" "$prefix/share/metaserve"
install -m 0755 "$binary" "$prefix/bin/metaserve"
install -m 0644 api/openapi.yaml "$prefix/share/metaserve/openapi.yaml"
if [[ $strip -eq 1 ]]; then
    command -v strip >/dev/null 2>&1 || die "--strip given but no strip(1) (binutils) found"
    strip --strip-all "$prefix/bin/metaserve"
fi
size=$(wc -c <"$prefix/bin/metaserve")
log "installed $prefix/bin/metaserve ($size bytes$([[ $strip -eq 1 ]] && echo ', stripped'))"
log "installed $prefix/share/metaserve/openapi.yaml"

# The checks: the installed copy starts, and the health probe reports failure when nothing listens.
"$prefix/bin/metaserve" --help >/dev/null || die "$prefix/bin/metaserve --help failed"
if "$prefix/bin/metaserve" health --port 1 2>/dev/null; then
    die "$prefix/bin/metaserve health --port 1 succeeded with nothing listening on port 1"
fi
log "checked: --help runs, health fails when nothing listens"
