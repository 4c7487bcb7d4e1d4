#!/usr/bin/env bash
# Integration test of deploy/nginx.conf: the real nginx in front of the real `metaserve serve`,
# both on loopback ports, driven with curl. The deploy config is rewritten into a temporary
# directory with sed (listen address, upstream server, pid file, logs, temp paths); everything
# else (routing, headers, limits, buffering) is exercised exactly as deployed.
#
# Checks: prefix routing and nginx's own routes, X-Request-ID both ways (exactly one header, the
# same id in the service's access log), Authorization reaching the service (401/403/202), the
# body limit (2 MB passes, 70 MB gets 413), a train -> adapt -> predict journey whose adapted
# predictions beat the meta-parameters', and job events (Server-Sent Events) passed on as they are
# sent: the first progress event reaches the client while the job is still running.
#
# Environment: METASERVE_BIN (the binary), METASERVE_SRC (the source tree), NGINX (default
# /usr/sbin/nginx; scripts/install-deps.sh installs it). Needs curl and awk. About 10-20 s.
# Prints "N passed, M failed"; the exit status is non-zero on any failure.
set -euo pipefail

SRC=${METASERVE_SRC:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
BIN=${METASERVE_BIN:-$SRC/build/metaserve}
NGINX=${NGINX:-/usr/sbin/nginx}
CONF=$SRC/deploy/nginx.conf

die() {
    printf 'test_gateway: %s\n' "$*" >&2
    exit 1
}

[[ -x $NGINX ]] || die "nginx not found at $NGINX (install it: bash scripts/install-deps.sh)"
command -v curl >/dev/null 2>&1 || die "curl not found (install it: bash scripts/install-deps.sh)"
[[ -x $BIN ]] || die "metaserve binary not found at $BIN (set METASERVE_BIN)"
[[ -f $CONF ]] || die "$CONF not found (set METASERVE_SRC)"

TMP=$(mktemp -d "${TMPDIR:-/tmp}/test_gateway.XXXXXX")
SVC_PID=""
NGX_PID=""
EV_PID=""

cleanup() {
    local pid
    [[ -n $EV_PID ]] && kill "$EV_PID" 2>/dev/null
    for pid in "$NGX_PID" "$SVC_PID"; do
        if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid" 2>/dev/null || true
            # SIGTERM drains the service; give it a few seconds, then insist
            for _ in $(seq 50); do
                kill -0 "$pid" 2>/dev/null || break
                sleep 0.1
            done
            kill -KILL "$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
        fi
    done
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

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
# expect NAME GOT WANT
expect() {
    if [[ $2 == "$3" ]]; then ok "$1"; else bad "$1" "got '$2', want '$3'"; fi
}

# ---- the body limit: nginx's client_max_body_size must equal the service's default ----

SERVICE_DEFAULT_MAX_BODY=67108864 # METASERVE_MAX_BODY_BYTES default (README, Configuration)
limit=$(sed -n 's/^ *client_max_body_size \([0-9]*\)\([kKmMgG]\?\);.*/\1 \2/p' "$CONF" | head -n 1)
[[ -n $limit ]] || die "no client_max_body_size in $CONF"
read -r num unit <<<"$limit"
case ${unit,,} in
    k) MAX_BODY=$((num * 1024)) ;;
    m) MAX_BODY=$((num * 1024 * 1024)) ;;
    g) MAX_BODY=$((num * 1024 * 1024 * 1024)) ;;
    *) MAX_BODY=$num ;;
esac
expect "nginx client_max_body_size equals the service's default body limit" \
    "$MAX_BODY" "$SERVICE_DEFAULT_MAX_BODY"

# ---- the service, on an ephemeral loopback port ----

ADMIN_KEY=gw-admin-key-0123456789abcdef
CLIENT_KEY=gw-client-key-0123456789abcdef
SVC_LOG=$TMP/service.log

METASERVE_PORT=0 METASERVE_LISTEN=127.0.0.1 METASERVE_DB=$TMP/metaserve.db \
    METASERVE_API_KEYS="admin:$ADMIN_KEY,client:$CLIENT_KEY" \
    METASERVE_MAX_BODY_BYTES=$MAX_BODY METASERVE_WORKERS=1 OPENBLAS_NUM_THREADS=1 \
    "$BIN" serve 2>"$SVC_LOG" &
SVC_PID=$!

SVC_PORT=""
for _ in $(seq 100); do
    SVC_PORT=$(sed -n 's/.*"msg":"listening".*"port":\([0-9][0-9]*\).*/\1/p' "$SVC_LOG" | head -n 1)
    [[ -n $SVC_PORT ]] && break
    kill -0 "$SVC_PID" 2>/dev/null || break
    sleep 0.1
done
if [[ -z $SVC_PORT ]]; then
    cat "$SVC_LOG" >&2
    die "the service did not log its port"
fi

# ---- nginx, with the deploy config rewritten for loopback ports and the temp dir ----

NGX_DIR=$TMP/nginx
mkdir -p "$NGX_DIR"

# A port nothing answers on (connection refused through bash's /dev/tcp).
port_free() {
    ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

USER_LINE=""
[[ $(id -u) -eq 0 ]] && USER_LINE="user root;" # workers must reach the 0700 temp dir

write_conf() { # write_conf PORT
    sed -e "s|^\( *\)listen 80;|\1listen 127.0.0.1:$1;|" \
        -e "s|server metaserve:8080;|server 127.0.0.1:$SVC_PORT;|" \
        -e "s|^pid .*;|pid $NGX_DIR/nginx.pid;|" \
        -e "s|^error_log .*;|error_log $NGX_DIR/error.log info;|" \
        -e "s|access_log /dev/stdout |access_log $NGX_DIR/access.log |" \
        -e "s|^http {|http {\n    client_body_temp_path $NGX_DIR/body;\n    proxy_temp_path $NGX_DIR/proxy;\n    fastcgi_temp_path $NGX_DIR/fastcgi;\n    uwsgi_temp_path $NGX_DIR/uwsgi;\n    scgi_temp_path $NGX_DIR/scgi;|" \
        "$CONF" >"$NGX_DIR/nginx.conf"
    [[ -n $USER_LINE ]] && sed -i "1i $USER_LINE" "$NGX_DIR/nginx.conf"
    # every rewrite must have matched: a drifted deploy config fails here, not mysteriously later
    local want
    for want in "listen 127.0.0.1:$1;" "server 127.0.0.1:$SVC_PORT;" "pid $NGX_DIR/nginx.pid;" \
        "error_log $NGX_DIR/error.log" "access_log $NGX_DIR/access.log" "proxy_temp_path"; do
        grep -qF "$want" "$NGX_DIR/nginx.conf" || die "rewriting $CONF: no '$want' in the copy"
    done
}

GW=""
for _ in $(seq 10); do
    port=$((20000 + RANDOM % 40000))
    port_free "$port" || continue
    write_conf "$port"
    "$NGINX" -t -q -p "$NGX_DIR" -e "$NGX_DIR/error.log" -c "$NGX_DIR/nginx.conf" ||
        die "nginx -t rejected the rewritten config ($NGX_DIR/nginx.conf)"
    "$NGINX" -p "$NGX_DIR" -e "$NGX_DIR/error.log" -c "$NGX_DIR/nginx.conf" -g 'daemon off;' &
    NGX_PID=$!
    for _ in $(seq 50); do
        kill -0 "$NGX_PID" 2>/dev/null || break
        if [[ $(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/healthz") == 200 ]]; then
            GW=http://127.0.0.1:$port
            break
        fi
        sleep 0.1
    done
    [[ -n $GW ]] && break
    # lost a race for the port (or nginx failed): stop it and try another port
    kill -TERM "$NGX_PID" 2>/dev/null || true
    wait "$NGX_PID" 2>/dev/null || true
    NGX_PID=""
done
if [[ -z $GW ]]; then
    cat "$NGX_DIR/error.log" >&2 || true
    die "nginx did not start on a loopback port"
fi
printf 'gateway %s -> service 127.0.0.1:%s\n' "$GW" "$SVC_PORT"

# ---- helpers ----

BODY=$TMP/body
HDRS=$TMP/headers

# req CURL_ARGS... : one request; body in $BODY, headers in $HDRS; prints the status (000 when
# the transfer failed before a status line).
req() {
    local code
    code=$(curl -sS -o "$BODY" -D "$HDRS" -w '%{http_code}' --max-time 60 "$@" 2>"$TMP/curl.err") ||
        true
    printf '%s' "${code:-000}"
}
auth() { printf 'Authorization: Bearer %s' "$1"; }

# Values of a response header of the final response in $HDRS (one per line, CR stripped).
header_values() {
    awk -v name="$1" '
        /^HTTP\// { n = 0; delete v; next }   # a new response block (after 100 Continue)
        { sub(/\r$/, "") }
        tolower(substr($0, 1, length(name) + 1)) == tolower(name) ":" {
            s = substr($0, length(name) + 2); sub(/^[ \t]+/, "", s); v[n++] = s
        }
        END { for (i = 0; i < n; i++) print v[i] }' "$HDRS"
}

# in_log FILE STRING : the string shows up in the file within 3 s (access lines are written when
# a request completes, which may be just after the client has its response).
in_log() {
    for _ in $(seq 30); do
        grep -qF "$2" "$1" && return 0
        sleep 0.1
    done
    return 1
}

json_str() { # json_str KEY < json : the first string value of KEY
    grep -o "\"$1\":\"[^\"]*\"" | head -n 1 | sed 's/.*:"\(.*\)"/\1/'
}

# ---- routing ----

expect "GET /healthz is answered by nginx" "$(req "$GW/healthz")" 200
expect "GET /metaserve/livez reaches the service" "$(req "$GW/metaserve/livez")" 200
expect "GET /metaserve/livez body" "$(tr -d ' \n' <"$BODY")" '{"status":"ok"}'
expect "GET /metaserve/v1/models with the client key" \
    "$(req -H "$(auth "$CLIENT_KEY")" "$GW/metaserve/v1/models")" 200
outside_id=gw-outside-$RANDOM$RANDOM-$$
expect "a path outside the prefix is a 404 from nginx" \
    "$(req -H "$(auth "$CLIENT_KEY")" -H "X-Request-ID: $outside_id" "$GW/v1/models")" 404
expect "nginx's own 404 carries exactly one X-Request-ID" "$(header_values X-Request-ID | wc -l)" 1
expect "nginx's own 404 returns the client's X-Request-ID" \
    "$(header_values X-Request-ID | head -n 1)" "$outside_id"
sleep 0.3
if grep -qF "$outside_id" "$SVC_LOG"; then
    bad "the 404 outside the prefix never reached the service" "the service logged $outside_id"
else
    ok "the 404 outside the prefix never reached the service"
fi

# ---- request ids ----

sent_id=gw-test-$RANDOM$RANDOM-$$
req -H "X-Request-ID: $sent_id" "$GW/metaserve/livez" >/dev/null
expect "a client X-Request-ID comes back as exactly one header" "$(header_values X-Request-ID | wc -l)" 1
expect "a client X-Request-ID comes back unchanged" "$(header_values X-Request-ID | head -n 1)" "$sent_id"
if in_log "$SVC_LOG" "\"request_id\":\"$sent_id\""; then
    ok "a client X-Request-ID is in the service's access log"
else
    bad "a client X-Request-ID is in the service's access log" "no request_id $sent_id"
fi

req -H "$(auth "$CLIENT_KEY")" "$GW/metaserve/v1/models" >/dev/null
expect "without a client id the response has exactly one X-Request-ID" \
    "$(header_values X-Request-ID | wc -l)" 1
gen_id=$(header_values X-Request-ID | head -n 1)
if [[ $gen_id =~ ^[0-9a-f]{32}$ ]]; then
    ok "without a client id nginx makes one (32 hex digits)"
else
    bad "without a client id nginx makes one (32 hex digits)" "got '$gen_id'"
fi
if [[ -n $gen_id ]] && in_log "$SVC_LOG" "\"request_id\":\"$gen_id\""; then
    ok "the id nginx made is the one the service logged"
else
    bad "the id nginx made is the one the service logged" "no request_id '$gen_id'"
fi
if [[ -n $gen_id ]] && in_log "$NGX_DIR/access.log" "\"request_id\":\"$gen_id\""; then
    ok "the id nginx made is in nginx's JSON access log"
else
    bad "the id nginx made is in nginx's JSON access log" "no request_id '$gen_id'"
fi

# A malformed id is replaced by the service; the client must get the id the service logged.
req -H 'X-Request-ID: not a valid id!' "$GW/metaserve/livez" >/dev/null
expect "a malformed client id still gives exactly one X-Request-ID" \
    "$(header_values X-Request-ID | wc -l)" 1
bad_id=$(header_values X-Request-ID | head -n 1)
if [[ -n $bad_id ]] && in_log "$SVC_LOG" "\"request_id\":\"$bad_id\""; then
    ok "a malformed client id: the client gets the id the service logged"
else
    bad "a malformed client id: the client gets the id the service logged" "got '$bad_id'"
fi

# ---- Authorization reaches the service ----

JOB='{"name": "sine",
  "architecture": {"sizes": [1, 40, 40, 1], "activation": "relu", "head": "regression"},
  "algorithm": "maml", "inner": {"lr": 0.01, "steps": 1},
  "outer": {"optimizer": "adam", "lr": 0.001},
  "meta_batch": 25, "iterations": 2000, "seed": 1,
  "tasks": {"family": "sinusoid", "k_support": 10, "k_query": 10}}'
JSON='Content-Type: application/json'

expect "no key: 401" "$(req -H "$JSON" -d "$JOB" "$GW/metaserve/v1/jobs")" 401
expect "client key on an admin route: 403" \
    "$(req -H "$(auth "$CLIENT_KEY")" -H "$JSON" -d "$JOB" "$GW/metaserve/v1/jobs")" 403
expect "admin key: 202" \
    "$(req -H "$(auth "$ADMIN_KEY")" -H "$JSON" -d "$JOB" "$GW/metaserve/v1/jobs")" 202
job_id=$(json_str id <"$BODY")
location=$(header_values Location | head -n 1)
expect "Location gets the /metaserve prefix back" "$location" "/metaserve/v1/jobs/$job_id"

# ---- body size ----

# ~2 MB task collection: 5,500 tasks of 20 points of a sinusoid
awk 'BEGIN {
    printf "{\"name\":\"gw-upload\",\"kind\":\"tasks\",\"tasks\":["
    for (t = 0; t < 5500; t++) {
        a = 0.1 + (t % 49) / 10; p = (t % 31) / 10
        xs = ""; ys = ""
        for (i = 0; i < 20; i++) {
            x = -5 + i / 2 + (t % 7) / 100
            xs = xs (i ? "," : "") sprintf("[%.4f]", x)
            ys = ys (i ? "," : "") sprintf("[%.4f]", a * sin(x - p))
        }
        printf "%s{\"x\":[%s],\"y\":[%s]}", (t ? "," : ""), xs, ys
    }
    printf "]}"
}' >"$TMP/upload.json"
upload_bytes=$(wc -c <"$TMP/upload.json")
if ((upload_bytes > 2000000 && upload_bytes < MAX_BODY)); then
    ok "the upload is ~2 MB ($upload_bytes bytes)"
else
    bad "the upload is ~2 MB" "$upload_bytes bytes"
fi
expect "a ~2 MB dataset upload passes: 201" \
    "$(req -H "$(auth "$ADMIN_KEY")" -H "$JSON" --data-binary "@$TMP/upload.json" \
        "$GW/metaserve/v1/datasets")" 201
expect "the upload arrived whole" "$(grep -o '"n_tasks":[0-9]*' "$BODY")" '"n_tasks":5500'

# 70 MB of JSON-looking bytes, over the 64 MiB limit
{
    printf '{"name":"too-big","kind":"tasks","tasks":[['
    head -c $((70 * 1024 * 1024)) /dev/zero | tr '\0' '1'
    printf ']]}'
} >"$TMP/big.json"
expect "a 70 MB body is refused: 413" \
    "$(req -H "$(auth "$ADMIN_KEY")" -H "$JSON" --data-binary "@$TMP/big.json" \
        "$GW/metaserve/v1/datasets")" 413
expect "the 413 carries exactly one X-Request-ID" "$(header_values X-Request-ID | wc -l)" 1
rm -f "$TMP/big.json"

# ---- the journey: train, adapt, predict ----

state=""
for _ in $(seq 300); do
    req -H "$(auth "$CLIENT_KEY")" "$GW/metaserve/v1/jobs/$job_id" >/dev/null
    state=$(json_str state <"$BODY")
    [[ $state == succeeded || $state == failed || $state == cancelled ]] && break
    sleep 0.1
done
expect "the training job succeeds" "$state" succeeded

# y = 2 sin(x - 0.5): 10 support points on [-4.5, 4.5], 20 query points between them
truth() { awk -v x="$1" 'BEGIN { printf "%.6f", 2 * sin(x - 0.5) }'; }
sx="" sy=""
for i in $(seq 0 9); do
    x=$(awk -v i="$i" 'BEGIN { printf "%.2f", -4.5 + i }')
    sx+="${sx:+,}[$x]"
    sy+="${sy:+,}[$(truth "$x")]"
done
qx="" qy=()
for i in $(seq 0 19); do
    x=$(awk -v i="$i" 'BEGIN { printf "%.2f", -4.75 + i / 2 }')
    qx+="${qx:+,}[$x]"
    qy+=("$(truth "$x")")
done

expect "adapt on 10 points: 201" \
    "$(req -H "$(auth "$CLIENT_KEY")" -H "$JSON" \
        -d "{\"support\":{\"x\":[$sx],\"y\":[$sy]},\"steps\":10}" \
        "$GW/metaserve/v1/models/sine/adapt")" 201
adapt_id=$(json_str id <"$BODY")

# the predicted column of a {"y": [[v], ...]} reply, one value per line
predictions() {
    grep -oE '"y":\[(\[[^]]*\],?)*\]' "$BODY" | sed 's/^"y"://' | tr -d '[]' | tr ',' '\n'
}
# mse FILE : mean squared error of the predictions in FILE against qy
mse() {
    paste -d' ' "$1" <(printf '%s\n' "${qy[@]}") |
        awk 'NF == 2 { d = $1 - $2; s += d * d; n++ } END { if (n == 20) printf "%.6f", s / n; else print "bad" }'
}

expect "predict with the adaptation: 200" \
    "$(req -H "$(auth "$CLIENT_KEY")" -H "$JSON" -d "{\"x\":[$qx]}" \
        "$GW/metaserve/v1/adaptations/$adapt_id/predict")" 200
predictions >"$TMP/adapted.txt"
expect "predict with the meta-parameters: 200" \
    "$(req -H "$(auth "$CLIENT_KEY")" -H "$JSON" -d "{\"x\":[$qx]}" \
        "$GW/metaserve/v1/models/sine/predict")" 200
predictions >"$TMP/meta.txt"
mse_adapted=$(mse "$TMP/adapted.txt")
mse_meta=$(mse "$TMP/meta.txt")
printf 'query MSE on 20 points: meta-parameters %s, adapted %s\n' "$mse_meta" "$mse_adapted"
if [[ $mse_adapted != bad && $mse_meta != bad ]] &&
    awk -v a="$mse_adapted" -v m="$mse_meta" 'BEGIN { exit !(a < m) }'; then
    ok "the adapted MSE is lower than the meta-parameters' MSE"
else
    bad "the adapted MSE is lower than the meta-parameters' MSE" \
        "adapted $mse_adapted, meta $mse_meta"
fi

# ---- live job events, unbuffered through nginx ----

# ~100,000 tasks: several seconds of training, cancelled once the check is made
EV_JOB=${JOB/\"iterations\": 2000/\"iterations\": 20000}
EV_JOB=${EV_JOB/\"meta_batch\": 25/\"meta_batch\": 5}
expect "a long job for the event stream: 202" \
    "$(req -H "$(auth "$ADMIN_KEY")" -H "$JSON" -d "$EV_JOB" "$GW/metaserve/v1/jobs")" 202
ev_job=$(json_str id <"$BODY")
EVENTS=$TMP/events
curl -sSN --max-time 120 -D "$TMP/events.headers" -H "$(auth "$CLIENT_KEY")" \
    "$GW/metaserve/v1/jobs/$ev_job/events?interval_ms=100" >"$EVENTS" 2>"$TMP/events.err" &
EV_PID=$!
for _ in $(seq 600); do
    grep -q '^event: progress' "$EVENTS" && break
    kill -0 "$EV_PID" 2>/dev/null || break
    sleep 0.1
done
# what the job is doing once the client holds its first progress event
req -H "$(auth "$CLIENT_KEY")" "$GW/metaserve/v1/jobs/$ev_job" >/dev/null
ev_state=$(json_str state <"$BODY")
if grep -q '^event: progress' "$EVENTS" && [[ $ev_state == running ]]; then
    ok "the first progress event arrives through nginx while the job still runs"
else
    bad "the first progress event arrives through nginx while the job still runs" \
        "job $ev_state; events so far: $(head -c 300 "$EVENTS")"
fi
expect "the event stream's content type" \
    "$(HDRS=$TMP/events.headers header_values Content-Type | head -n 1)" text/event-stream
expect "cancel the long job: 200" \
    "$(req -X POST -H "$(auth "$ADMIN_KEY")" "$GW/metaserve/v1/jobs/$ev_job/cancel")" 200
ev_rc=0
wait "$EV_PID" || ev_rc=$?
EV_PID=""
expect "the stream ends by itself after the job (curl exit status)" "$ev_rc" 0
expect "the last event is done" "$(grep '^event: ' "$EVENTS" | tail -n 1)" "event: done"

printf '%d passed, %d failed\n' "$PASSED" "$FAILED"
((FAILED == 0))
