#!/usr/bin/env bash
# Builds the libFuzzer targets of tests/fuzz with clang (-DMS_FUZZ=ON, into build-fuzz/) and runs
# each for FUZZ_SECONDS (default 60), two at a time, on a scratch copy of its seed corpus (the
# repository's corpus is never written). Prints per target the inputs executed and exec/s, and
# exits non-zero when any target crashed, leaked, timed out or ran out of memory, naming the saved
# input. Replay a saved input with: build-fuzz/tests/fuzz/fuzz_replay_<target> <input>.
#
# Environment: FUZZ_SECONDS (per target), FUZZ_TARGETS (space-separated subset), FUZZ_JOBS
# (targets at once, default 2), BUILD_DIR (default build-fuzz), FUZZ_OUT (where logs, corpora and
# crash inputs go; default a new directory under ${TMPDIR:-/tmp}, kept and printed at the end).
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD_DIR=${BUILD_DIR:-$ROOT/build-fuzz}
FUZZ_SECONDS=${FUZZ_SECONDS:-60}
FUZZ_JOBS=${FUZZ_JOBS:-2}
FUZZ_TARGETS=${FUZZ_TARGETS:-"json config dataset adapt predict blob oip safetensors dataset_st"}
FUZZ_OUT=${FUZZ_OUT:-$(mktemp -d "${TMPDIR:-/tmp}/metaserve-fuzz.XXXXXX")}

# -max_len per target: large enough for a few dozen rows of a support set or dataset, small enough
# that the fuzzer explores structure rather than length. The blob decoder needs only a header and
# a short payload.
max_len() {
    case $1 in
    json) echo 4096 ;;
    config) echo 2048 ;;
    dataset | adapt | predict | safetensors | dataset_st) echo 8192 ;;
    oip) echo 8192 ;;
    blob) echo 512 ;;
    *) echo 4096 ;;
    esac
}

command -v clang >/dev/null || { echo "fuzz.sh: clang is required (Debian: clang, libclang-rt-14-dev)" >&2; exit 2; }
CC=clang cmake -S "$ROOT" -B "$BUILD_DIR" -DMS_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >"$FUZZ_OUT/configure.log" 2>&1 ||
    { cat "$FUZZ_OUT/configure.log" >&2; exit 2; }
cmake --build "$BUILD_DIR" --target fuzz_targets -j2 >"$FUZZ_OUT/build.log" 2>&1 ||
    { tail -50 "$FUZZ_OUT/build.log" >&2; exit 2; }

run_one() {
    local t=$1 bin=$BUILD_DIR/tests/fuzz/fuzz_$t dir=$FUZZ_OUT/$t
    mkdir -p "$dir/corpus" "$dir/artifacts"
    cp "$ROOT/tests/fuzz/corpus/$t/"* "$dir/corpus/" 2>/dev/null
    cp "$ROOT/tests/fuzz/regressions/$t/"* "$dir/corpus/" 2>/dev/null
    local dict=()
    [ -f "$ROOT/tests/fuzz/$t.dict" ] && dict=(-dict="$ROOT/tests/fuzz/$t.dict")
    # -timeout: one input taking 10 s is a hang (a body is parsed in well under a millisecond);
    # -malloc_limit_mb: one allocation above 64 MiB from an input of at most 8 KiB is an
    # amplification bug (replay_main.c applies the same cap to the replay tests)
    OPENBLAS_NUM_THREADS=1 ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
        "$bin" -max_total_time="$FUZZ_SECONDS" -max_len="$(max_len "$t")" -rss_limit_mb=2048 -malloc_limit_mb=64 \
        -timeout=10 -print_final_stats=1 "${dict[@]}" -artifact_prefix="$dir/artifacts/" \
        "$dir/corpus" >"$dir/log" 2>&1
    echo $? >"$dir/rc"
}

echo "fuzzing ${FUZZ_SECONDS}s per target, $FUZZ_JOBS at a time, output in $FUZZ_OUT"
running=0
for t in $FUZZ_TARGETS; do
    [ -x "$BUILD_DIR/tests/fuzz/fuzz_$t" ] || { echo "fuzz.sh: no target fuzz_$t" >&2; exit 2; }
    run_one "$t" &
    running=$((running + 1))
    if [ "$running" -ge "$FUZZ_JOBS" ]; then
        wait -n
        running=$((running - 1))
    fi
done
wait

status=0
for t in $FUZZ_TARGETS; do
    dir=$FUZZ_OUT/$t
    rc=$(cat "$dir/rc" 2>/dev/null || echo 99)
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$dir/log" | tail -1)
    speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$dir/log" | tail -1)
    corpus=$(find "$dir/corpus" -type f | wc -l)
    if [ "$rc" = 0 ]; then
        printf '%-8s ok      %12s execs %8s exec/s  corpus %d\n' "$t" "${execs:-?}" "${speed:-?}" "$corpus"
    else
        status=1
        crash=$(find "$dir/artifacts" -type f | head -1)
        kind=$(grep -m1 -oE 'fuzz check failed:.*|ERROR: [A-Za-z]+Sanitizer.*|runtime error:.*|ERROR: libFuzzer:.*' "$dir/log")
        printf '%-8s FAILED  %12s execs (exit %s) %s\n' "$t" "${execs:-?}" "$rc" "$kind"
        echo "         input: ${crash:-none saved}   log: $dir/log"
        echo "         replay: $BUILD_DIR/tests/fuzz/fuzz_replay_$t ${crash:-<input>}"
    fi
done
exit $status
