#!/usr/bin/env bash
# Builds the container image from deploy/Dockerfile and runs it, without a Docker engine or a
# registry: buildah builds it (chroot isolation), and the image's root filesystem is run with
# chroot(1) as the image's user, with the image's own Env, Entrypoint, Cmd and WorkingDir.
#
#     sudo bash scripts/image-test.sh
#
#   1. installs buildah, debootstrap, curl and python3 with apt-get when missing, and makes the
#      base images debian:bookworm and debian:bookworm-slim locally (tests/image/make-base.sh:
#      debootstrap, cached in METASERVE_IMAGE_CACHE, default /var/cache/metaserve-image);
#   2. `buildah bud --isolation chroot --format docker --layers --no-cache` of deploy/Dockerfile
#      from the repository root (docker format: the OCI format drops HEALTHCHECK);
#   3. checks the image's config (USER 10001, one VOLUME holding METASERVE_DB, HEALTHCHECK,
#      STOPSIGNAL SIGTERM), then `buildah from` + `buildah mount`, /proc mounted and a volume
#      directory owned by 10001 bind-mounted at the image's VOLUME, and runs the service with
#      `chroot --userspec`. Checks: every shared library resolves in the image; the service
#      runs as UID/GID 10001 in the image's root and WorkingDir; the HEALTHCHECK command exits
#      0 (and fails once the service is gone); a train -> adapt -> predict journey with curl
#      from outside, the adapted predictions closer to the truth than the meta-parameters';
#      SIGTERM during training drains and exits 0; a restart on the same volume resumes the
#      interrupted job from its checkpoint and finishes it;
#   4. prints the size of each layer metaserve adds and the total on the local base: the
#      uncompressed tar, the file content (what `docker images` reports) and gzip (what a pull
#      transfers); the content must stay within IMAGE_TEST_MAX_MB (default 200);
#   5. removes the working container, the mounts, the built image and the build's intermediate
#      images; the base images and their cache stay. Logs are kept (path printed) on failure.
#
# IMAGE_TEST_KEEP=1 keeps the image (IMAGE_TEST_TAG, default localhost/metaserve:image-test);
# IMAGE_TEST_SKIP_BUILD=1 runs steps 3 and 4 against that kept image.
#
# The service gets a free port as METASERVE_PORT (the one Env override: this machine's network
# is shared, a container's is not). Runs as root. Prints "N passed, M failed"; the exit status is
# non-zero on any failure. Wall time on an idle 2-core machine: about 3 minutes with the base
# cached, 2.5 of them the build stage (apt-get of the toolchain, then the full build), up to 6
# when other work loads the machine; the first run adds about 2 minutes (apt-get of buildah and
# debootstrap, then the debootstrap).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
IMAGE=${IMAGE_TEST_TAG:-localhost/metaserve:image-test}
KEEP=${IMAGE_TEST_KEEP:-0}
SKIP_BUILD=${IMAGE_TEST_SKIP_BUILD:-0} # 1: check the image already tagged $IMAGE (kept)
[[ $SKIP_BUILD == 1 ]] && KEEP=1
TRAIN_ITERATIONS=${IMAGE_TEST_ITERATIONS:-1000} # the journey's job (README's is 5,000)
LONG_ITERATIONS=12000                           # the job interrupted by SIGTERM
STOP_AFTER=3000                                 # ... once it has passed this iteration

log() { printf 'image-test: %s\n' "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}
[[ $(id -u) -eq 0 ]] || die "must run as root (buildah's storage, mounts, chroot)"

T0=$SECONDS
phase_start=$SECONDS
declare -a TIMINGS=()
phase_done() { # phase_done NAME
    TIMINGS+=("$(printf '%-34s %4d s' "$1" $((SECONDS - phase_start)))")
    phase_start=$SECONDS
}

# ---- tools and the base images ----

need=()
command -v buildah >/dev/null 2>&1 || need+=(buildah)
command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v python3 >/dev/null 2>&1 || need+=(python3)
if [[ ${#need[@]} -gt 0 ]]; then
    log "installing ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" \
        >/dev/null
fi
bash tests/image/make-base.sh
phase_done "tools and base images"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/image-test.XXXXXX")
CTR=""
MNT=""
SVC_PID=""
MOUNTS=()

PASSED=0
FAILED=0
ok() {
    PASSED=$((PASSED + 1))
    printf 'ok   %s\n' "$1"
}
bad() {
    FAILED=$((FAILED + 1))
    printf 'FAIL %s: %s\n' "$1" "$2"
}
expect() { # expect NAME GOT WANT
    if [[ $2 == "$3" ]]; then ok "$1"; else bad "$1" "got '$2', want '$3'"; fi
}

stop_service() { # SIGTERM, then SIGKILL after 30 s (the compose file's stop_grace_period)
    [[ -n $SVC_PID ]] || return 0
    if kill -0 "$SVC_PID" 2>/dev/null; then
        kill -TERM "$SVC_PID" 2>/dev/null || true
        for _ in $(seq 300); do
            kill -0 "$SVC_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$SVC_PID" 2>/dev/null || true
    fi
    wait "$SVC_PID" 2>/dev/null || true
    SVC_PID=""
}

cleanup() {
    local i
    stop_service
    for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do
        umount "${MOUNTS[i]}" 2>/dev/null || umount -l "${MOUNTS[i]}" 2>/dev/null ||
            log "could not unmount ${MOUNTS[i]}"
    done
    if [[ -n $CTR ]]; then
        buildah umount "$CTR" >/dev/null 2>&1 || true
        buildah rm "$CTR" >/dev/null 2>&1 || log "could not remove the working container $CTR"
    fi
    if [[ $KEEP != 1 ]] && buildah inspect --type image "$IMAGE" >/dev/null 2>&1; then
        buildah rmi "$IMAGE" >/dev/null 2>&1 || log "could not remove $IMAGE"
    fi
    if [[ -f $WORK/images-before ]]; then
        local keep_id="" id
        [[ $KEEP == 1 ]] && keep_id=$(buildah inspect --type image --format '{{.FromImageID}}' \
            "$IMAGE" 2>/dev/null || true)
        # the image IDs this run added (a kept image excepted); -f: intermediates have children
        for id in $(buildah images -a -q --no-trunc | sort -u |
            comm -13 "$WORK/images-before" - ); do
            [[ $id == "$keep_id" || $id == "sha256:$keep_id" ]] && continue
            buildah rmi -f "$id" >/dev/null 2>&1 || true
        done
    fi
    if [[ $FAILED -eq 0 ]]; then
        rm -rf "$WORK"
    else
        log "logs kept in $WORK (build.log, service.log)"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

finish() {
    printf '\nwall time:\n'
    printf '  %s\n' "${TIMINGS[@]}"
    printf '  %-34s %4d s\n' total $((SECONDS - T0))
    printf '%d passed, %d failed\n' "$PASSED" "$FAILED"
    exit $((FAILED > 0))
}

# ---- 1. build ----

# Each line of the build log is prefixed with the seconds since the build started.
stamp() {
    local t0=$SECONDS line
    while IFS= read -r line; do printf '%5d %s\n' $((SECONDS - t0)) "$line"; done
}

# --layers: one layer per instruction, as docker build makes them (without it buildah squashes
# each stage into one); --no-cache: every step really runs. The images the build leaves behind
# (build stage, intermediate layers) are the ones not in images-before, removed at the end.
build_image() {
    local rc=0
    buildah images -a -q --no-trunc | sort -u >"$WORK/images-before"
    log "building deploy/Dockerfile as $IMAGE (log: $WORK/build.log)"
    buildah bud --isolation chroot --format docker --pull=never --layers --no-cache \
        -f deploy/Dockerfile -t "$IMAGE" . 2>&1 | stamp >"$WORK/build.log" || rc=$?
    if [[ $rc -ne 0 ]]; then
        tail -n 40 "$WORK/build.log"
        bad "deploy/Dockerfile builds" "buildah bud failed (last lines above)"
        return 1
    fi
    ok "deploy/Dockerfile builds (buildah bud --isolation chroot --format docker)"
    # Where the build's time went: the second at which each stage's steps started.
    printf 'build steps (seconds from the start):\n'
    grep -E '^ *[0-9]+ \[[0-9]+/[0-9]+\] STEP [0-9]+/[0-9]+: (FROM|RUN|COPY)' "$WORK/build.log" |
        cut -c 1-100 | sed 's/^/  /'
}

if [[ $SKIP_BUILD == 1 ]]; then
    buildah inspect --type image "$IMAGE" >/dev/null 2>&1 ||
        die "IMAGE_TEST_SKIP_BUILD=1 but there is no image $IMAGE (build with IMAGE_TEST_KEEP=1)"
    log "IMAGE_TEST_SKIP_BUILD=1: checking the existing $IMAGE"
elif ! build_image; then
    phase_done "build"
    finish
fi
phase_done "build"

# ---- 2. the image's config ----

cfg() { buildah inspect --type image --format "$1" "$IMAGE"; }
mapfile -t IMG_ENV < <(cfg '{{range .Docker.Config.Env}}{{println .}}{{end}}')
mapfile -t ENTRYPOINT < <(cfg '{{range .Docker.Config.Entrypoint}}{{println .}}{{end}}')
mapfile -t CMD < <(cfg '{{range .Docker.Config.Cmd}}{{println .}}{{end}}')
mapfile -t HEALTH < <(cfg \
    '{{with .Docker.Config.Healthcheck}}{{range .Test}}{{println .}}{{end}}{{end}}')
# shellcheck disable=SC2016 # a Go template, not a shell expansion
mapfile -t VOLUMES < <(cfg '{{range $path, $_ := .Docker.Config.Volumes}}{{println $path}}{{end}}')
WORKDIR=$(cfg '{{.Docker.Config.WorkingDir}}')
IMG_USER=$(cfg '{{.Docker.Config.User}}')
STOP_SIGNAL=$(cfg '{{.Docker.Config.StopSignal}}')

env_value() { # env_value NAME : the image's value of NAME
    local kv
    for kv in "${IMG_ENV[@]}"; do
        [[ $kv == "$1="* ]] && printf '%s' "${kv#*=}" && return 0
    done
    return 1
}
DB=$(env_value METASERVE_DB || true)
expect "the image's USER is 10001" "${IMG_USER%%:*}" 10001
expect "the image's stop signal is SIGTERM" "$STOP_SIGNAL" SIGTERM
expect "the image declares one volume" "${#VOLUMES[@]}" 1
VOLUME=${VOLUMES[0]:-/var/lib/metaserve}
expect "METASERVE_DB is on the volume" "$(dirname "${DB:-unset}")" "$VOLUME"
case "${HEALTH[0]:-}" in
    CMD) HEALTH_CMD=("${HEALTH[@]:1}") ;;
    CMD-SHELL) HEALTH_CMD=(/bin/sh -c "${HEALTH[*]:1}") ;;
    *) HEALTH_CMD=() ;;
esac
if [[ ${#HEALTH_CMD[@]} -gt 0 ]]; then
    ok "the image has a HEALTHCHECK (${HEALTH_CMD[*]})"
else
    bad "the image has a HEALTHCHECK" "none in the image's config"
fi
if [[ ${#ENTRYPOINT[@]} -eq 0 && ${#CMD[@]} -eq 0 ]]; then
    bad "the image has an entrypoint" "neither Entrypoint nor Cmd set"
    finish
fi
printf 'image config: user %s, workdir %s, entrypoint %s, cmd %s, volume %s\n' \
    "$IMG_USER" "$WORKDIR" "${ENTRYPOINT[*]}" "${CMD[*]}" "$VOLUME"

# ---- 3. the image's root filesystem, run as the image's user ----

CTR=$(buildah from --pull=never --name "metaserve-image-test-$$" "$IMAGE")
MNT=$(buildah mount "$CTR")
mount -t proc proc "$MNT/proc"
MOUNTS+=("$MNT/proc")
VOLDIR=$WORK/volume
install -d -o 10001 -g 10001 -m 0750 "$VOLDIR"
mkdir -p "$MNT$VOLUME"
mount --bind "$VOLDIR" "$MNT$VOLUME"
MOUNTS+=("$MNT$VOLUME")

# USER as docker resolves it: "uid[:gid]"; without a gid, the user's primary group in the
# image's /etc/passwd (0 when it has no entry).
RUN_UID=${IMG_USER%%:*}
if [[ $IMG_USER == *:* ]]; then
    RUN_GID=${IMG_USER#*:}
else
    RUN_GID=$(awk -F: -v u="$RUN_UID" '$1 == u || $3 == u { print $4; exit }' "$MNT/etc/passwd")
    RUN_GID=${RUN_GID:-0}
fi

# Every shared library the binary needs resolves inside the image (ldd, from the image's libc).
missing_libs=$(chroot "$MNT" ldd "${ENTRYPOINT[0]:-${CMD[0]}}" 2>&1 | grep 'not found' || true)
if [[ -z $missing_libs ]]; then
    ok "every shared library of ${ENTRYPOINT[0]:-${CMD[0]}} is in the image"
else
    bad "every shared library of the binary is in the image" "$(echo "$missing_libs" | xargs)"
fi

SVC_LOG=$WORK/service.log
# A port below the ephemeral range (32768+, where outgoing connections would block a bind) that
# no socket uses; sets PORT, BASE and IN_IMAGE.
pick_port() {
    local p
    for _ in $(seq 50); do
        p=$((20000 + RANDOM % 12000))
        if command -v ss >/dev/null 2>&1; then
            [[ -z $(ss -Htan "sport = :$p") ]] || continue
        else
            ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || continue
        fi
        PORT=$p
        BASE=http://127.0.0.1:$PORT
        # "${IN_IMAGE[@]}" CMD... runs CMD inside the image's root as the image's user, in its
        # WorkingDir, with its Env (plus METASERVE_PORT). env and chroot exec: $! is CMD's pid.
        IN_IMAGE=(env -i "${IMG_ENV[@]}" "METASERVE_PORT=$PORT"
            chroot --userspec="$RUN_UID:$RUN_GID" "$MNT" /usr/bin/env --chdir="${WORKDIR:-/}")
        return 0
    done
    die "no free port found"
}
pick_port
health() { # health : the HEALTHCHECK command's exit status, with its 3 s timeout
    local rc=0
    timeout 3 "${IN_IMAGE[@]}" "${HEALTH_CMD[@]}" >/dev/null 2>&1 || rc=$?
    printf '%s' "$rc"
}

# start_service : starts it and waits for /readyz; 0 when ready. A port taken meanwhile by
# another process on this shared machine is not the image's fault: another port, up to 3 times.
start_service() {
    local lines
    for _ in 1 2 3; do
        printf -- '---- start on port %s\n' "$PORT" >>"$SVC_LOG"
        lines=$(wc -l <"$SVC_LOG")
        "${IN_IMAGE[@]}" "${ENTRYPOINT[@]}" "${CMD[@]}" >>"$SVC_LOG" 2>&1 &
        SVC_PID=$!
        for _ in $(seq 300); do
            [[ $(curl -s -o /dev/null -w '%{http_code}' "$BASE/readyz") == 200 ]] && return 0
            kill -0 "$SVC_PID" 2>/dev/null || break
            sleep 0.1
        done
        stop_service
        tail -n +$((lines + 1)) "$SVC_LOG" | grep -q 'Address already in use' || break
        pick_port
    done
    tail -n 20 "$SVC_LOG"
    return 1
}

# stop_service_term : SIGTERM, wait up to 30 s; STOP_STATUS is the exit status ("timeout" when it
# was still running, then killed). Not in a $(...) subshell: only this shell can wait for it.
STOP_STATUS=""
stop_service_term() {
    STOP_STATUS=0
    kill -TERM "$SVC_PID"
    for _ in $(seq 300); do
        kill -0 "$SVC_PID" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$SVC_PID" 2>/dev/null; then
        STOP_STATUS=timeout
        stop_service
        return
    fi
    wait "$SVC_PID" || STOP_STATUS=$?
    SVC_PID=""
}

BODY=$WORK/body
req() { # req CURL_ARGS... : prints the status (000: no response); the body is in $BODY
    local code
    code=$(curl -sS -o "$BODY" -w '%{http_code}' --max-time 60 "$@" 2>>"$WORK/curl.err") || true
    printf '%s' "${code:-000}"
}
json_str() { grep -o "\"$1\":\"[^\"]*\"" "$BODY" | head -n 1 | sed 's/.*:"\(.*\)"/\1/'; }
json_num() { grep -o "\"$1\":[0-9.eE+-]*" "$BODY" | head -n 1 | sed 's/.*://'; }
JSON='Content-Type: application/json'
job_config() { # job_config NAME ITERATIONS SEED : the README's sine job
    printf '{"name":"%s",' "$1"
    printf '"architecture":{"sizes":[1,40,40,1],"activation":"relu","head":"regression"},'
    printf '"algorithm":"maml","inner":{"lr":0.01,"steps":1},'
    printf '"outer":{"optimizer":"adam","lr":0.001},'
    printf '"meta_batch":25,"iterations":%s,"seed":%s,' "$2" "$3"
    printf '"tasks":{"family":"sinusoid","k_support":10,"k_query":10}}'
}
wait_job() { # wait_job ID SECONDS : prints the final state (or the last one seen)
    local state=""
    for _ in $(seq $(($2 * 10))); do
        req "$BASE/v1/jobs/$1" >/dev/null
        state=$(json_str state)
        [[ $state == succeeded || $state == failed || $state == cancelled ]] && break
        sleep 0.1
    done
    printf '%s' "$state"
}

phase_done "image config, container, mounts"
if ! start_service; then
    bad "the service starts from the image's Entrypoint/Cmd" "no 200 from /readyz within 30 s"
    finish
fi
ok "the service starts from the image's Entrypoint/Cmd and answers /readyz on port $PORT"

ids=$(awk '/^Uid:|^Gid:/ { printf "%s %s %s %s %s ", $1, $2, $3, $4, $5 }' "/proc/$SVC_PID/status")
expect "the service runs as UID and GID 10001 (/proc/<pid>/status)" "$ids" \
    "Uid: 10001 10001 10001 10001 Gid: 10001 10001 10001 10001 "
expect "the service's root is the image's filesystem" "$(readlink "/proc/$SVC_PID/root")" "$MNT"
expect "the service runs in the image's WorkingDir" "$(readlink "/proc/$SVC_PID/cwd")" \
    "$MNT${WORKDIR:-/}"
if [[ ${#HEALTH_CMD[@]} -gt 0 ]]; then
    expect "the HEALTHCHECK command exits 0 while the service runs" "$(health)" 0
fi

# The journey: train (short), adapt to y = 2 sin(x - 0.5) from 10 points, predict.
expect "POST /v1/jobs: 202" \
    "$(req -H "$JSON" -d "$(job_config sine "$TRAIN_ITERATIONS" 1)" "$BASE/v1/jobs")" 202
job=$(json_str id)
expect "the $TRAIN_ITERATIONS-iteration job succeeds" "$(wait_job "$job" 120)" succeeded
support='{"support":{"x":[[-4.5],[-3.5],[-2.5],[-1.5],[-0.5],[0.5],[1.5],[2.5],[3.5],[4.5]],'
support+='"y":[[1.918],[1.514],[-0.282],[-1.819],[-1.683],[0.0],[1.683],[1.819],[0.282],[-1.514]]},'
support+='"steps":10}'
expect "POST /v1/models/sine/adapt: 201" \
    "$(req -H "$JSON" -d "$support" "$BASE/v1/models/sine/adapt")" 201
adaptation=$(json_str id)
query='{"x":[[0.0],[1.5],[3.0]]}'
truth="-0.959 1.683 1.197" # 2 sin(x - 0.5) at 0, 1.5, 3
predictions() { grep -o '"y":\[.*\]' "$BODY" | grep -o '[-0-9.eE+]\+' | xargs; }
mse() { # mse "P1 P2 P3" : mean squared error against the truth
    awk -v p="$1" -v t="$truth" 'BEGIN { n = split(p, a, " "); split(t, b, " ");
        if (n != 3) { print "bad"; exit } for (i = 1; i <= 3; i++) s += (a[i] - b[i]) ^ 2;
        printf "%.4f", s / 3 }'
}
expect "POST /v1/adaptations/<id>/predict: 200" \
    "$(req -H "$JSON" -d "$query" "$BASE/v1/adaptations/$adaptation/predict")" 200
adapted=$(predictions)
expect "POST /v1/models/sine/predict: 200" \
    "$(req -H "$JSON" -d "$query" "$BASE/v1/models/sine/predict")" 200
meta=$(predictions)
mse_adapted=$(mse "$adapted")
mse_meta=$(mse "$meta")
printf 'at x = 0, 1.5, 3 (truth %s): adapted [%s] MSE %s; meta-parameters [%s] MSE %s\n' \
    "$truth" "$adapted" "$mse_adapted" "$meta" "$mse_meta"
if [[ $mse_adapted != bad && $mse_meta != bad ]] &&
    awk -v a="$mse_adapted" -v m="$mse_meta" 'BEGIN { exit !(a < m) }'; then
    ok "the adapted prediction is closer to the truth than the meta-parameters'"
else
    bad "the adapted prediction is closer to the truth" "adapted $mse_adapted, meta $mse_meta"
fi
expect "the database is on the volume, owned by 10001" \
    "$(stat -c %u "$VOLDIR/$(basename "$DB")" 2>/dev/null)" 10001

# SIGTERM while a job trains: the service drains, checkpoints the job and exits 0.
expect "POST /v1/jobs (the $LONG_ITERATIONS-iteration job): 202" \
    "$(req -H "$JSON" -d "$(job_config long "$LONG_ITERATIONS" 2)" "$BASE/v1/jobs")" 202
long=$(json_str id)
before=0
for _ in $(seq 600); do
    req "$BASE/v1/jobs/$long" >/dev/null
    before=$(json_num iteration)
    [[ $(json_str state) == running && ${before:-0} -ge $STOP_AFTER ]] && break
    sleep 0.1
done
printf 'SIGTERM at iteration %s of %s\n' "$before" "$LONG_ITERATIONS"
if [[ ${before:-0} -ge $STOP_AFTER && ${before:-0} -lt $LONG_ITERATIONS ]]; then
    ok "the long job is mid-training when SIGTERM is sent"
else
    bad "the long job is mid-training when SIGTERM is sent" "iteration ${before:-none}"
fi
stop_service_term
expect "SIGTERM: the service drains and exits 0" "$STOP_STATUS" 0
expect "the log has draining and stopped" \
    "$(grep -c -e '"msg":"draining"' -e '"msg":"stopped"' "$SVC_LOG")" 2
if [[ ${#HEALTH_CMD[@]} -gt 0 ]]; then
    rc=$(health)
    if [[ $rc -ne 0 ]]; then
        ok "the HEALTHCHECK command fails once the service is gone (status $rc)"
    else
        bad "the HEALTHCHECK command fails once the service is gone" "it exited 0"
    fi
fi

# Restart on the same volume: the job resumes from its checkpoint and finishes.
if start_service; then
    ok "the service starts again on the same volume"
    # The lowest iteration reported over 2 s (progress is written once a second): a job started
    # over from 0 would report one below $before (at this job's ~1,000 iterations/s).
    after=""
    for _ in $(seq 20); do
        req "$BASE/v1/jobs/$long" >/dev/null
        i=$(json_num iteration)
        [[ -z $after || ${i:-0} -lt $after ]] && after=${i:-0}
        [[ $(json_str state) == succeeded ]] && break
        sleep 0.1
    done
    printf 'after the restart the job reports iteration %s at the lowest\n' "$after"
    if [[ ${after:-0} -ge ${before:-1} ]]; then
        ok "the job resumes from its checkpoint (iteration $after >= $before), not from 0"
    else
        bad "the job resumes from its checkpoint" "iteration ${after:-none} < $before"
    fi
    expect "the resumed job finishes" "$(wait_job "$long" 180)" succeeded
    expect "it wrote model long, version 1" \
        "$(grep -o '"model":{[^}]*}' "$BODY")" '"model":{"name":"long","version":1}'
    expect "the first model survived the restart: GET /v1/models/sine 200" \
        "$(req "$BASE/v1/models/sine")" 200
    stop_service_term
    expect "SIGTERM again: exits 0" "$STOP_STATUS" 0
else
    bad "the service starts again on the same volume" "no 200 from /readyz within 30 s"
fi
phase_done "run checks"

# ---- 4. size ----

# Per layer, three measures (MB = 10^6 bytes):
#   tar      the uncompressed layer tar (the layer sizes in buildah's manifest);
#   content  the bytes of its files (symlinks by their target's length, hard links once,
#            directories not counted): what `docker images` and `docker image inspect --format
#            '{{.Size}}'` add up over the layers with the overlay2 driver; the tars are ~4%
#            larger, from tar headers and padding;
#   gzip     the compressed layer a registry stores and a pull transfers.
SLIM=docker.io/library/debian:bookworm-slim
MAX_MB=${IMAGE_TEST_MAX_MB:-200} # the files' budget: the build stage's toolchain would break it

mb() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1e6 }'; }
sum() { awk '{ s += $1 } END { print s + 0 }'; }
layer_sizes() { # layer_sizes MANIFEST_FILE : one size per layer, in order
    sed 's/.*"layers":\[//' "$1" | grep -o '"size":[0-9]*' | sed 's/.*://'
}
layer_digests() { # layer_digests MANIFEST_FILE : one digest's hex per layer, in order
    sed 's/.*"layers":\[//' "$1" | grep -o '"digest":"sha256:[0-9a-f]*"' | sed 's/.*://; s/"//'
}
layer_content() { # layer_content TAR... : one content size per layer tar
    python3 -c '
import sys, tarfile
for path in sys.argv[1:]:
    n = 0
    with tarfile.open(path) as t:
        for m in t:
            n += m.size if m.isreg() else len(m.linkname) if m.issym() else 0
    print(n)' "$@"
}
layer_history() { # layer_history IMAGE : the instruction that made each layer
    buildah inspect --type image --format \
        '{{range .Docker.History}}{{if not .EmptyLayer}}{{println .CreatedBy}}{{end}}{{end}}' "$1" |
        sed -e 's|^/bin/sh -c ||' -e 's|^#(nop) ||' -e 's|file:[0-9a-f]* |file |' \
            -e 's|dir:[0-9a-f]* |dir |' -e 's/  */ /g'
}

size_rc=0
nb=$(buildah inspect --type image --format '{{len .Docker.RootFS.DiffIDs}}' "$SLIM")
buildah push --quiet --disable-compression "$IMAGE" "dir:$WORK/tar" >/dev/null || size_rc=$?
buildah push --quiet --compression-format gzip "$IMAGE" "dir:$WORK/gz" >/dev/null || size_rc=$?
if [[ $size_rc -eq 0 ]]; then
    mapfile -t tar < <(layer_sizes "$WORK/tar/manifest.json")
    mapfile -t gz < <(layer_sizes "$WORK/gz/manifest.json")
    mapfile -t blobs < <(layer_digests "$WORK/tar/manifest.json" | sed "s|^|$WORK/tar/|")
    mapfile -t content < <(layer_content "${blobs[@]}")
    mapfile -t what < <(layer_history "$IMAGE")
    rm -rf "$WORK/tar" "$WORK/gz"
    slice_sum() { # slice_sum ARRAY FROM COUNT
        local -n values=$1
        printf '%s\n' "${values[@]:$2:$3}" | sum
    }
    row() { # row LABEL FROM COUNT : tar, content and gzip MB of layers FROM..FROM+COUNT-1
        printf '  %-52s %9s %9s %9s\n' "$1" "$(mb "$(slice_sum tar "$2" "$3")")" \
            "$(mb "$(slice_sum content "$2" "$3")")" "$(mb "$(slice_sum gz "$2" "$3")")"
    }
    n=${#tar[@]}
    printf '\nimage size, MB (10^6 bytes)\n'
    printf '  %-52s %9s %9s %9s\n' "" tar content gzip
    row "debian:bookworm-slim (local debootstrap)" 0 "$nb"
    for ((i = nb; i < n; i++)); do
        row "+ ${what[i]:0:50}" "$i" 1
    done
    row "added by metaserve" "$nb" $((n - nb))
    row "total" 0 "$n"
    total_content=$(printf '%s\n' "${content[@]}" | sum)
    if [[ ${#gz[@]} -eq $n && ${#content[@]} -eq $n && $total_content -gt 0 &&
        $total_content -le $((MAX_MB * 1000000)) ]]; then
        ok "the image's content is within ${MAX_MB} MB ($(mb "$total_content") MB)"
    else
        bad "the image's content is within ${MAX_MB} MB" \
            "$(mb "$total_content") MB (${#tar[@]} layers, ${#gz[@]} compressed)"
    fi
else
    bad "the image's layers can be exported for measuring" "buildah push failed ($size_rc)"
fi
phase_done "size"

finish
