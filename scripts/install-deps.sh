#!/usr/bin/env bash
# Installs the Debian 12 (bookworm) packages metaserve needs to build, test and run: the C
# toolchain and CMake, OpenBLAS, cJSON, libmicrohttpd, SQLite, Check (unit tests), libcurl
# (HTTP tests), nginx (gateway test), clang with its libFuzzer runtime (fuzz targets) and
# Python 3 with requests, numpy and pytest (the Python client and its tests), Chromium (the
# dashboard's browser test, headless), and for the ONNX export protobuf-c with its compiler, the
# onnx.proto of libonnx-dev and python3-onnx (its checker).
# Meant for a fresh machine, as root or through sudo.
#
# Idempotent: when every package is already installed it changes nothing and needs neither root
# nor the network. Set METASERVE_DEPS_FORCE=1 to run apt-get update and install anyway.
#
# --build installs only what building needs (the container image's build stage): the toolchain,
# the libraries' headers, Check and libcurl (the test and benchmark binaries build too), and
# protobuf-c with the onnx.proto; not the servers, browsers and Python tools the tests drive.
set -euo pipefail

# what `scripts/build.sh` needs
BUILD_PACKAGES=(
    build-essential
    cmake
    pkg-config
    libopenblas-dev
    libcjson-dev
    libmicrohttpd-dev
    libsqlite3-dev
    libpq-dev
    libxxhash-dev
    check
    libcurl4-openssl-dev
    ca-certificates
    libprotobuf-c-dev
    protobuf-c-compiler
    libonnx-dev
)
# and what the tests run
PACKAGES=(
    "${BUILD_PACKAGES[@]}"
    postgresql-15
    curl
    nginx
    git
    clang
    libclang-rt-14-dev
    python3
    python3-venv
    python3-pip
    python3-setuptools
    python3-wheel
    python3-requests
    python3-numpy
    python3-pytest
    python3-onnx
    chromium
    python3-torch
)

for arg in "$@"; do
    case "$arg" in
        --build) PACKAGES=("${BUILD_PACKAGES[@]}") ;;
        *)
            printf 'install-deps: unknown argument "%s" (expected --build)\n' "$arg" >&2
            exit 2
            ;;
    esac
done

log() { printf 'install-deps: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

if ! command -v apt-get >/dev/null 2>&1 || ! command -v dpkg-query >/dev/null 2>&1; then
    die "apt-get and dpkg-query not found; this script supports Debian 12 (bookworm) only"
fi

# Packages not yet in state "install ok installed".
missing=()
for pkg in "${PACKAGES[@]}"; do
    status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
    if [[ "$status" != "install ok installed" ]]; then
        missing+=("$pkg")
    fi
done

if [[ ${#missing[@]} -eq 0 && "${METASERVE_DEPS_FORCE:-0}" != "1" ]]; then
    log "all ${#PACKAGES[@]} packages already installed"
    exit 0
fi

SUDO=()
if [[ $(id -u) -ne 0 ]]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO=(sudo)
    else
        die "must run as root (or with sudo available) to install: ${missing[*]:-${PACKAGES[*]}}"
    fi
fi

if [[ ${#missing[@]} -gt 0 ]]; then
    log "installing: ${missing[*]}"
else
    log "METASERVE_DEPS_FORCE=1: updating the package index and re-running the install"
fi

"${SUDO[@]}" apt-get update
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y --no-install-recommends "${PACKAGES[@]}"
log "done"
