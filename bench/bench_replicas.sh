#!/usr/bin/env bash
# bench_replicas.sh: meta-training throughput of one `metaserve serve` replica against two, each
# with one job worker, sharing one PostgreSQL database on this machine. The script starts a
# throw-away PostgreSQL 15 server (tests/pg/pgctl.sh, unix socket only) and turns fsync and
# full_page_writes back on (pgctl.sh turns them off for the tests), so that commits wait for the
# disk as they do in production. For each run it creates a fresh database, starts the replica(s) on loopback
# ports with METASERVE_WORKERS=1 and OPENBLAS_NUM_THREADS=1, submits JOBS identical classic
# sinusoid MAML jobs (README's config with ITERATIONS meta-iterations) round-robin to the
# replicas, and waits until every job has succeeded. The wall time runs from the first job's
# created_at to the last one's finished_at, as the database recorded them.
#
# Runs go in the order 1, 2, 2, 1, ... replicas (ROUNDS of each), so drift in the machine's load
# hits both alike; the figures are sums over the rounds.
#
#   bench/bench_replicas.sh                # the replica comparison
#   bench/bench_replicas.sh --store ARGS   # instead: bench_store on the same kind of server
#                                          # (fsync on), SQLite and PostgreSQL side by side
#
# stdout: one JSON line (case "replica_throughput"), or bench_store's lines. stderr: notes, one
# line per run. Exit status: 0 when every job succeeded, 1 when a run failed, 2 on a setup
# problem. Replicas and the server are stopped and the temporary directory removed on exit.
#
# Environment: BUILD_DIR (default build/ beside bench/), JOBS (8), ITERATIONS (3000), ROUNDS (2),
# RUN_TIMEOUT seconds per run (600), PG_BIN (as pgctl.sh).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
src=$(cd "$here/.." && pwd)
BUILD_DIR=${BUILD_DIR:-$src/build}
JOBS=${JOBS:-8}
ITERATIONS=${ITERATIONS:-3000}
ROUNDS=${ROUNDS:-2}
RUN_TIMEOUT=${RUN_TIMEOUT:-600}
META_BATCH=25
pgctl=$src/tests/pg/pgctl.sh

note() { echo "bench_replicas.sh: $*" >&2; }

mode=replicas
if [[ ${1:-} == --store ]]; then
    mode=store
    shift
elif (($#)); then
    note "usage: bench_replicas.sh [--store [bench_store arguments]]"
    exit 2
fi
for v in JOBS ITERATIONS ROUNDS RUN_TIMEOUT; do
    if ! [[ ${!v} =~ ^[1-9][0-9]*$ ]]; then
        note "$v must be a positive whole number"
        exit 2
    fi
done
bin=$BUILD_DIR/metaserve
[[ $mode == store ]] && bin=$BUILD_DIR/bench_store
if [[ ! -x $bin ]]; then
    note "no executable $bin: build it first (or set BUILD_DIR)"
    exit 2
fi
for tool in curl psql; do
    if ! command -v "$tool" >/dev/null; then
        note "missing $tool"
        exit 2
    fi
done

# Short: the server's socket path ($tmp/pg/.s.PGSQL.5432) must fit in 107 bytes.
tmp=$(mktemp -d /tmp/bench_rep_XXXXXX)
chmod 755 "$tmp" # under root the server runs as the postgres user
pids=()

stop_replicas() {
    local p
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do
        # an orderly stop (the worker requeues its job) takes well under a second; then insist
        for _ in $(seq 100); do
            kill -0 "$p" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
    pids=()
}

cleanup() {
    stop_replicas
    [[ -d $tmp/pg ]] && bash "$pgctl" stop "$tmp/pg" >/dev/null 2>&1
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

# ---- PostgreSQL with fsync on ----

uri=$(bash "$pgctl" start "$tmp/pg" | tail -n 1)
psql "$uri" -XAtq -v ON_ERROR_STOP=1 -c "ALTER SYSTEM SET fsync = on" \
    -c "ALTER SYSTEM SET full_page_writes = on" >/dev/null
bash "$pgctl" pause "$tmp/pg"
bash "$pgctl" resume "$tmp/pg"
settings=$(psql "$uri" -XAt -F ' ' -c "SELECT current_setting('fsync'),
    current_setting('full_page_writes'), current_setting('synchronous_commit'),
    current_setting('shared_buffers'), current_setting('server_version')")
read -r fsync fpw sync_commit shared_buffers version <<<"$settings"
if [[ $fsync != on || $fpw != on ]]; then
    note "could not turn fsync and full_page_writes on (fsync=$fsync, full_page_writes=$fpw)"
    exit 2
fi
note "PostgreSQL $version in $tmp/pg: fsync=$fsync, full_page_writes=$fpw," \
    "synchronous_commit=$sync_commit, shared_buffers=$shared_buffers"

# The URI of database $1 on the same server.
db_uri() { echo "${uri/\/metaserve\?//$1?}"; }

if [[ $mode == store ]]; then
    psql "$uri" -XAtq -v ON_ERROR_STOP=1 -c "CREATE DATABASE bench_store" >/dev/null
    set +e
    "$bin" --pg "$(db_uri bench_store)" "$@"
    rc=$?
    set -e
    exit $rc
fi

# ---- one run ----

job='{"name":"sine","architecture":{"sizes":[1,40,40,1],"activation":"relu",'
job+='"head":"regression"},"algorithm":"maml","inner":{"lr":0.01,"steps":1},'
job+='"outer":{"optimizer":"adam","lr":0.001},"meta_batch":'$META_BATCH','
job+='"iterations":'$ITERATIONS',"seed":1,'
job+='"tasks":{"family":"sinusoid","k_support":10,"k_query":10}}'

ticks=$(getconf CLK_TCK)
# CPU seconds (utime + stime) of the processes $@ so far.
cpu_of() {
    local p t=0
    for p in "$@"; do
        t=$(awk -v t="$t" -v hz="$ticks" '{ printf "%.3f", t + ($14 + $15) / hz }' "/proc/$p/stat")
    done
    echo "$t"
}

# run N NAME: starts N replicas on database NAME, trains JOBS jobs, stops the replicas; sets
# run_s (wall seconds), run_cpu (replica CPU seconds while training) and run_split (jobs per
# replica).
run() {
    local n=$1 name=$2 dburi ports=() i p log port t0 reply id c0 c1 counts ok bad
    psql "$uri" -XAtq -v ON_ERROR_STOP=1 -c "CREATE DATABASE $name" >/dev/null
    dburi=$(db_uri "$name")
    for ((i = 0; i < n; i++)); do
        log=$tmp/$name-r$i.log
        env -u METASERVE_API_KEYS -u METASERVE_API_KEYS_FILE METASERVE_DB="$dburi" \
            METASERVE_WORKERS=1 METASERVE_REPLICA="bench-r$i" OPENBLAS_NUM_THREADS=1 \
            "$bin" serve --listen 127.0.0.1 --port 0 2>"$log" &
        pids+=($!)
    done
    for ((i = 0; i < n; i++)); do
        log=$tmp/$name-r$i.log
        port=
        for _ in $(seq 300); do
            port=$(sed -n 's/.*"msg":"listening".*"port":\([0-9][0-9]*\).*/\1/p' "$log" | head -n 1)
            [[ -n $port ]] && curl -sf -o /dev/null "http://127.0.0.1:$port/readyz" && break
            port=
            kill -0 "${pids[$i]}" 2>/dev/null || break
            sleep 0.1
        done
        if [[ -z $port ]]; then
            note "replica $i of $name did not become ready:"
            tail -n 20 "$log" >&2
            return 1
        fi
        ports+=("$port")
    done
    c0=$(cpu_of "${pids[@]}")
    for ((i = 0; i < JOBS; i++)); do
        port=${ports[$((i % n))]}
        reply=$(curl -sS -X POST -H 'Content-Type: application/json' --data "$job" \
            "http://127.0.0.1:$port/v1/jobs")
        id=$(sed -n 's/^{"id":"\([0-9a-f]*\)".*/\1/p' <<<"$reply")
        if [[ -z $id ]]; then
            note "POST /v1/jobs failed: $reply"
            return 1
        fi
    done
    t0=$SECONDS
    while :; do
        counts=$(psql "$dburi" -XAt -F ' ' -c "SELECT count(*) FILTER (WHERE state = 'succeeded'),
            count(*) FILTER (WHERE state IN ('failed', 'cancelled')) FROM jobs")
        read -r ok bad <<<"$counts"
        ((ok == JOBS)) && break
        if ((bad > 0)); then
            note "$bad job(s) of $name failed:"
            psql "$dburi" -XAt -c "SELECT id, state, error FROM jobs WHERE state <> 'succeeded'" >&2
            return 1
        fi
        for p in "${pids[@]}"; do
            if ! kill -0 "$p" 2>/dev/null; then
                note "a replica of $name exited; its log:"
                tail -n 20 "$tmp/$name"-r*.log >&2
                return 1
            fi
        done
        if ((SECONDS - t0 > RUN_TIMEOUT)); then
            note "$name: $ok of $JOBS jobs succeeded within $RUN_TIMEOUT s"
            return 1
        fi
        sleep 1 # the wall time comes from the database; polling less leaves the CPU to training
    done
    c1=$(cpu_of "${pids[@]}")
    run_cpu=$(awk -v a="$c0" -v b="$c1" 'BEGIN { printf "%.3f", b - a }')
    run_s=$(psql "$dburi" -XAt -c "SELECT round((max(finished_at) - min(created_at)) / 1000.0, 3)
        FROM jobs")
    run_split=$(psql "$dburi" -XAt -c "SELECT string_agg(c::text, '/' ORDER BY owner)
        FROM (SELECT owner, count(*) AS c FROM jobs GROUP BY owner) o")
    stop_replicas
}

# ---- the rounds: 1, 2, 2, 1, ... replicas ----

declare -A secs=([1]=0 [2]=0) cpu=([1]=0 [2]=0) split=()
tasks=$((JOBS * ITERATIONS * META_BATCH))
note "$JOBS jobs x $ITERATIONS iterations x $META_BATCH tasks = $tasks tasks per run," \
    "$ROUNDS round(s) of each; $(nproc) cores, load average $(cut -d ' ' -f 1-3 /proc/loadavg)"
order=()
for ((r = 0; r < ROUNDS; r++)); do
    if ((r % 2 == 0)); then order+=(1 2); else order+=(2 1); fi
done
k=0
for n in "${order[@]}"; do
    run_s=
    if ! run "$n" "run${k}_r$n"; then
        note "run $k ($n replica(s)) failed"
        exit 1
    fi
    note "run $k: $n replica(s): ${run_s} s, $(awk -v t=$tasks -v s="$run_s" \
        'BEGIN { printf "%.0f", t / s }') tasks/s, replica CPU $run_cpu s, jobs per replica $run_split"
    secs[$n]=$(awk -v a="${secs[$n]}" -v b="$run_s" 'BEGIN { printf "%.3f", a + b }')
    cpu[$n]=$(awk -v a="${cpu[$n]}" -v b="$run_cpu" 'BEGIN { printf "%.3f", a + b }')
    split[$n]="${split[$n]:+${split[$n]},}$run_split"
    k=$((k + 1))
done

awk -v jobs="$JOBS" -v it="$ITERATIONS" -v mb="$META_BATCH" -v rounds="$ROUNDS" \
    -v tasks="$tasks" -v s1="${secs[1]}" -v s2="${secs[2]}" -v c1="${cpu[1]}" -v c2="${cpu[2]}" \
    -v sp="${split[2]}" -v fs="$fsync" -v nc="$(nproc)" 'BEGIN {
    t1 = rounds * tasks / s1; t2 = rounds * tasks / s2
    printf "{\"case\":\"replica_throughput\",\"jobs\":%d,\"iterations\":%d,", jobs, it
    printf "\"meta_batch\":%d,\"rounds\":%d,\"cores\":%d,\"fsync\":\"%s\",", mb, rounds, nc, fs
    printf "\"one_replica_s\":%.3f,\"one_tasks_per_s\":%.0f,\"one_cpu_cores\":%.2f,", s1, t1, c1 / s1
    printf "\"two_replicas_s\":%.3f,\"two_tasks_per_s\":%.0f,\"two_cpu_cores\":%.2f,", s2, t2, c2 / s2
    printf "\"one_tasks_per_cpu_s\":%.0f,\"two_tasks_per_cpu_s\":%.0f,", rounds * tasks / c1, rounds * tasks / c2
    printf "\"two_jobs_per_replica\":\"%s\",\"ratio\":%.3f}\n", sp, t2 / t1
}'
