#!/usr/bin/env bash
# bench_http.sh: predict throughput of a `metaserve serve` process under wrk, against the same
# server answering GET /livez (a constant reply: the ceiling). The script starts the server on a
# loopback port with a temporary database, trains the classic sinusoid MAML model through the API
# (POST /v1/jobs, 2000 meta-iterations) and waits for it, then runs wrk with 32 keep-alive
# connections on 2 threads: POST /v1/models/sine/predict with 10 rows (bench/wrk/predict.lua) and
# GET /livez (bench/wrk/livez.lua), 10 s each, in two rounds of 5 s in the order predict, livez,
# livez, predict, so that drift in the machine's load hits both alike.
#
# stdout: one JSON line (case "wrk_throughput"). stderr: wrk's own reports and notes.
# Exit status: 0 when both runs finished without a failed request, 1 otherwise, 2 on a setup
# problem. The server is stopped on exit, whatever happens (trap).
#
# Environment: BUILD_DIR (default build/ beside bench/), DURATION seconds per endpoint (10),
# CONNECTIONS (32), THREADS wrk threads (2), HTTP_THREADS server threads (2). wrk and curl are
# installed with apt-get when missing and the script runs as root.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BUILD_DIR=${BUILD_DIR:-$here/../build}
DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-32}
THREADS=${THREADS:-2}
HTTP_THREADS=${HTTP_THREADS:-2}
ROUNDS=2

note() { echo "bench_http.sh: $*" >&2; }

bin=$BUILD_DIR/metaserve
if [[ ! -x $bin ]]; then
    note "no executable $bin: build the metaserve target first (or set BUILD_DIR)"
    exit 2
fi
if ! [[ $DURATION =~ ^[0-9]+$ && $DURATION -ge $ROUNDS ]]; then
    note "DURATION must be a whole number of seconds >= $ROUNDS"
    exit 2
fi

# wrk and curl come from Debian packages of the same names.
missing=()
for tool in wrk curl; do
    command -v "$tool" >/dev/null || missing+=("$tool")
done
if ((${#missing[@]})); then
    if [[ $EUID -ne 0 ]]; then
        note "missing ${missing[*]}: install with apt-get (as root)"
        exit 2
    fi
    note "installing ${missing[*]}"
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
fi

tmp=$(mktemp -d /tmp/bench_http_sh_XXXXXX)
log=$tmp/server.log
server_pid=

stop_server() {
    [[ -n $server_pid ]] || return 0
    kill -TERM "$server_pid" 2>/dev/null || true
    # an orderly stop takes well under a second here; then insist
    for _ in $(seq 100); do
        kill -0 "$server_pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=
}

cleanup() {
    stop_server
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

# The server's own lines (not its access log), for a failure report.
server_notes() { grep -v '"msg":"request"' "$log" | tail -n 20 >&2 || true; }

# Open mode (no API keys, whatever the environment says), 1 job worker (the default; it only
# trains the model, then idles), logs to $log.
env -u METASERVE_API_KEYS -u METASERVE_API_KEYS_FILE "$bin" serve --listen 127.0.0.1 --port 0 \
    --db "$tmp/bench.db" --workers 1 --http-threads "$HTTP_THREADS" 2>"$log" &
server_pid=$!
port=
for _ in $(seq 100); do
    port=$(sed -n 's/.*"msg":"listening".*"port":\([0-9][0-9]*\).*/\1/p' "$log" | head -n 1)
    [[ -n $port ]] && break
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.1
done
if [[ -z $port ]]; then
    note "the server did not start:"
    server_notes
    exit 2
fi
base=http://127.0.0.1:$port
note "server pid $server_pid on $base, $HTTP_THREADS HTTP threads; log $log (removed at exit)"

# Train the classic sinusoid MAML net (train_config_defaults, as bench_http trains in-process).
job='{"name":"sine","architecture":{"sizes":[1,40,40,1],"activation":"relu",'
job+='"head":"regression"},"algorithm":"maml","inner":{"lr":0.01,"steps":1},'
job+='"outer":{"optimizer":"adam","lr":0.001},"meta_batch":25,"iterations":2000,"seed":1,'
job+='"tasks":{"family":"sinusoid","k_support":10,"k_query":10}}'
reply=$(curl -sS -X POST -H 'Content-Type: application/json' --data "$job" "$base/v1/jobs")
id=$(sed -n 's/^{"id":"\([0-9a-f]*\)".*/\1/p' <<<"$reply")
if [[ -z $id ]]; then
    note "POST /v1/jobs failed: $reply"
    exit 2
fi
state=
t0=$SECONDS
while ((SECONDS - t0 < 300)); do
    state=$(curl -sS "$base/v1/jobs/$id" | sed -n 's/.*"state":"\([a-z]*\)".*/\1/p')
    [[ $state == succeeded || $state == failed || $state == cancelled ]] && break
    sleep 0.5
done
if [[ $state != succeeded ]]; then
    note "training job $id ended as '${state:-unknown}'"
    server_notes
    exit 2
fi
note "trained sine@1 through the API in $((SECONDS - t0)) s (job $id)"

# Server CPU seconds so far (utime + stime of /proc/PID/stat; the name field holds no spaces).
ticks=$(getconf CLK_TCK)
server_cpu() { awk -v t="$ticks" '{ printf "%.3f", ($14 + $15) / t }' "/proc/$server_pid/stat"; }

# One wrk run: wrk_run NAME SCRIPT URL SECONDS; adds to the totals of NAME.
declare -A requests=() errors=() seconds=() cpu=()
wrk_run() {
    local name=$1 script=$2 url=$3 secs=$4 out c0 c1 line
    c0=$(server_cpu)
    out=$(wrk -t "$THREADS" -c "$CONNECTIONS" -d "${secs}s" --latency -s "$script" "$url")
    c1=$(server_cpu)
    printf '%s\n' "$out" >&2
    line=$(sed -n 's/^wrk_result //p' <<<"$out")
    if [[ -z $line ]]; then
        note "$name: no result line from wrk"
        exit 1
    fi
    field() { sed -n "s/.*\"$1\":\([0-9.]*\).*/\1/p" <<<"$line"; }
    requests[$name]=$((${requests[$name]:-0} + $(field requests)))
    errors[$name]=$((${errors[$name]:-0} + $(field errors)))
    seconds[$name]=$(awk -v a="${seconds[$name]:-0}" -v b="$(field duration_s)" \
        'BEGIN { printf "%.3f", a + b }')
    cpu[$name]=$(awk -v a="${cpu[$name]:-0}" -v b="$c0" -v c="$c1" \
        'BEGIN { printf "%.3f", a + c - b }')
}

predict_url=$base/v1/models/sine/predict
livez_url=$base/livez
reply=$(curl -sS -X POST -H 'Content-Type: application/json' \
    --data '{"x":[[-4.5],[0.5]]}' "$predict_url")
if [[ $reply != *'"y":[['* ]]; then
    note "predict does not answer as expected: $reply"
    exit 1
fi
note "warm-up: 2 s of each endpoint (not counted)"
wrk -t "$THREADS" -c "$CONNECTIONS" -d 2s -s "$here/wrk/predict.lua" "$predict_url" >/dev/null
wrk -t "$THREADS" -c "$CONNECTIONS" -d 2s -s "$here/wrk/livez.lua" "$livez_url" >/dev/null
round_s=$((DURATION / ROUNDS))
note "$CONNECTIONS connections, $THREADS wrk threads, ${round_s} s x $ROUNDS rounds per endpoint;" \
    "wrk and the server share the machine's $(nproc) cores, so both rates are lower than with" \
    "the client elsewhere, but the ratio compares like with like"
for ((r = 0; r < ROUNDS; r++)); do
    if ((r % 2 == 0)); then
        wrk_run predict "$here/wrk/predict.lua" "$predict_url" "$round_s"
        wrk_run livez "$here/wrk/livez.lua" "$livez_url" "$round_s"
    else
        wrk_run livez "$here/wrk/livez.lua" "$livez_url" "$round_s"
        wrk_run predict "$here/wrk/predict.lua" "$predict_url" "$round_s"
    fi
done

# wrk -v prints "wrk VERSION [epoll] ..." and the usage, and exits 1
wrk_version=$( (wrk -v 2>&1 || true) | awk 'NR == 1 { print $2 }')
awk -v v="$wrk_version" -v c="$CONNECTIONS" -v t="$THREADS" -v h="$HTTP_THREADS" \
    -v pr="${requests[predict]}" -v pe="${errors[predict]}" -v ps="${seconds[predict]}" \
    -v pc="${cpu[predict]}" -v lr="${requests[livez]}" -v le="${errors[livez]}" \
    -v ls="${seconds[livez]}" -v lc="${cpu[livez]}" 'BEGIN {
    printf "{\"case\":\"wrk_throughput\",\"tool\":\"wrk %s\",\"connections\":%d,", v, c
    printf "\"threads\":%d,\"http_threads\":%d,\"rows\":10,", t, h
    printf "\"predict_seconds\":%.2f,\"predict_rps\":%.0f,\"predict_requests\":%d,", ps, pr / ps, pr
    printf "\"predict_errors\":%d,\"predict_server_cpu_cores\":%.2f,", pe, pc / ps
    printf "\"livez_seconds\":%.2f,\"livez_rps\":%.0f,\"livez_requests\":%d,", ls, lr / ls, lr
    printf "\"livez_errors\":%d,\"livez_server_cpu_cores\":%.2f,", le, lc / ls
    printf "\"ratio\":%.3f}\n", (pr / ps) / (lr / ls)
}'
failed=$((errors[predict] + errors[livez]))
if ((failed > 0)); then
    note "$failed failed requests"
    exit 1
fi
