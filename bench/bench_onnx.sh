#!/usr/bin/env bash
# The ONNX export route end to end: starts the built `metaserve serve` on a temporary SQLite file
# and a free loopback port, meta-trains a 784-256-256-5 classifier for one iteration (gaussian
# 784-d 5-way: only its size matters here), then times with curl (time_total, median of REPS)
#     GET /v1/models/big/onnx      the ONNX export (~1 MB)
#     GET /v1/models/big/weights   the JSON weights export (~3.7 MB), the same run's reference
#     GET /livez                   the same run's floor (a request that does no work)
# and prints one JSON line with the medians in ms, the bytes, and onnx/weights ratio.
#
#     bash bench/bench_onnx.sh [build-dir]      # default build/; REPS=20
set -euo pipefail

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${1:-$SRC/build}
BIN=$BUILD/metaserve
REPS=${REPS:-20}
tmp=$(mktemp -d)
log=$tmp/server.log
METASERVE_DB=$tmp/bench.db METASERVE_PORT=0 METASERVE_LISTEN=127.0.0.1 "$BIN" serve 2>"$log" &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$tmp"' EXIT

port=
for _ in $(seq 200); do
    port=$(grep -o '"msg":"listening".*"port":[0-9]*' "$log" | grep -o '[0-9]*$' || true)
    [[ -n $port ]] && break
    sleep 0.1
done
[[ -n $port ]] || { echo "bench_onnx: the server did not start" >&2; exit 1; }
base=http://127.0.0.1:$port

job=$(curl -sf -X POST "$base/v1/jobs" -H 'Content-Type: application/json' -d '{"name": "big",
  "architecture": {"sizes": [784, 256, 256, 5], "activation": "relu", "head": "classification"},
  "algorithm": "fomaml", "inner": {"lr": 0.01, "steps": 1}, "outer": {"optimizer": "adam", "lr": 0.001},
  "meta_batch": 1, "iterations": 1, "seed": 1,
  "tasks": {"family": "gaussian", "n_way": 5, "dim": 784, "k_support": 1, "k_query": 1}}' |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
for _ in $(seq 600); do
    state=$(curl -sf "$base/v1/jobs/$job" | python3 -c 'import json,sys; print(json.load(sys.stdin)["state"])')
    [[ $state == succeeded ]] && break
    [[ $state == failed || $state == cancelled ]] && { echo "bench_onnx: job $state" >&2; exit 1; }
    sleep 0.1
done

# median time_total (ms) and size of REPS GETs of a path (after one warm-up that loads the cache)
measure() {
    curl -sf -o /dev/null "$base$1"
    for _ in $(seq "$REPS"); do
        curl -sf -o /dev/null -w '%{time_total} %{size_download}\n' "$base$1"
    done | sort -n | awk '{t[NR] = $1; b = $2} END {printf "%.3f %d\n", 1000 * t[int((NR + 1) / 2)], b}'
}
read -r onnx_ms onnx_b < <(measure /v1/models/big/onnx)
read -r json_ms json_b < <(measure /v1/models/big/weights)
read -r livez_ms _ < <(measure /livez)
printf '{"sizes":"784-256-256-5","reps":%d,"onnx_ms_median":%s,"onnx_bytes":%d,' "$REPS" "$onnx_ms" "$onnx_b"
printf '"weights_ms_median":%s,"weights_bytes":%d,"livez_ms_median":%s,"onnx_vs_weights":%s}\n' \
    "$json_ms" "$json_b" "$livez_ms" "$(awk -v a="$onnx_ms" -v b="$json_ms" 'BEGIN {printf "%.4f", a / b}')"
