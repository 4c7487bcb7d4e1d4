#!/usr/bin/env bash
# The Python client's suite: installs clients/python into a virtual environment (Debian's python3,
# with its system packages: requests, numpy, pytest; no network) and runs tests/python with pytest
# against the real binary (METASERVE_BIN). VENV selects the environment's directory.
set -euo pipefail

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
export METASERVE_BIN=${METASERVE_BIN:-$SRC/build/metaserve}
VENV=${VENV:-$(dirname "$METASERVE_BIN")/pyclient-venv}
PY=/usr/bin/python3 # Debian's, whose dist-packages scripts/install-deps.sh fills

rm -rf "$VENV"
"$PY" -m venv --system-site-packages "$VENV"
"$VENV/bin/pip" install --quiet --no-build-isolation --no-index "$SRC/clients/python"
cd "$SRC/tests/python"
exec "$VENV/bin/python" -m pytest -q -p no:cacheprovider "$@"
