#!/usr/bin/env bash
# Installs the Debian 12 (bookworm) packages the built `metaserve` binary needs at run time, and
# nothing else: no compiler, no headers, no test libraries. The container image's runtime stage
# runs it (deploy/Dockerfile); scripts/test.sh runs it too, so CI exercises the same script.
#
#     bash scripts/install-runtime-deps.sh            # install what is missing
#     bash scripts/install-runtime-deps.sh --clean    # and then empty apt's caches (images)
#
# One package per shared library that `ldd metaserve` lists outside libc:
#     libopenblas.so.0   libopenblas0-pthread (the pthread build; OPENBLAS_NUM_THREADS=1 anyway)
#     libcjson.so.1      libcjson1
#     libmicrohttpd.so.12 libmicrohttpd12
#     libsqlite3.so.0    libsqlite3-0
#     libpq.so.5         libpq5 (the PostgreSQL client library)
#     libxxhash.so.0     libxxhash0 (the blob checksum, XXH3)
#     libprotobuf-c.so.1 libprotobuf-c1 (the ONNX export's encoder)
# plus ca-certificates (the trust store, for operators' tools in the image).
#
# Idempotent: when every package is already installed it installs nothing and needs neither root
# nor the network (apt-get update runs only when something is missing). --clean then still runs
# `apt-get clean` and removes /var/lib/apt/lists/*, which needs root.
set -euo pipefail

PACKAGES=(
    libopenblas0-pthread
    libcjson1
    libmicrohttpd12
    libsqlite3-0
    libpq5
    libxxhash0
    libprotobuf-c1
    ca-certificates
)

log() { printf 'install-runtime-deps: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

clean=0
for arg in "$@"; do
    case "$arg" in
        --clean) clean=1 ;;
        -h | --help)
            sed -n '2,10p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
            exit 0
            ;;
        *) die "unknown argument '$arg' (expected --clean)" ;;
    esac
done

if ! command -v apt-get >/dev/null 2>&1 || ! command -v dpkg-query >/dev/null 2>&1; then
    die "apt-get and dpkg-query not found; this script supports Debian 12 (bookworm) only"
fi

missing=()
for pkg in "${PACKAGES[@]}"; do
    status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
    if [[ "$status" != "install ok installed" ]]; then
        missing+=("$pkg")
    fi
done

if [[ ${#missing[@]} -eq 0 && $clean -eq 0 ]]; then
    log "all ${#PACKAGES[@]} runtime packages already installed"
    exit 0
fi

SUDO=()
if [[ $(id -u) -ne 0 ]]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO=(sudo)
    else
        die "must run as root (or with sudo available) to install: ${missing[*]:-nothing; --clean needs root}"
    fi
fi

if [[ ${#missing[@]} -gt 0 ]]; then
    log "installing: ${missing[*]}"
    "${SUDO[@]}" apt-get update
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y --no-install-recommends "${PACKAGES[@]}"
else
    log "all ${#PACKAGES[@]} runtime packages already installed"
fi

if [[ $clean -eq 1 ]]; then
    log "removing apt's package cache and lists (--clean)"
    "${SUDO[@]}" apt-get clean
    "${SUDO[@]}" rm -rf /var/lib/apt/lists/*
fi
log "done"
