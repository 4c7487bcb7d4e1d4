#!/usr/bin/env bash
# A throw-away PostgreSQL 15 server for the tests: initdb into DIR, listening on a unix socket
# in DIR only (no TCP port to collide with), trust authentication for the local user, and one
# database named metaserve. pg_ctl refuses to run as root, so as root the server runs as the
# postgres system user (created by Debian's postgresql package).
#
#   tests/pg/pgctl.sh start DIR   # prints the URI (also in DIR/uri): postgresql:///metaserve?host=DIR&...
#   tests/pg/pgctl.sh stop DIR    # fast shutdown, then removes DIR
#   tests/pg/pgctl.sh pause DIR   # fast shutdown, keeps the data (restart with resume)
#   tests/pg/pgctl.sh resume DIR
#
# fsync is off: the tests crash replicas and stop the server, never the machine, and the page
# cache keeps what a stopped server wrote.
set -euo pipefail
cmd=${1:?usage: pgctl.sh start|stop|pause|resume DIR}
dir=${2:?usage: pgctl.sh start|stop|pause|resume DIR}
bin=${PG_BIN:-/usr/lib/postgresql/15/bin}
port=${PG_PORT:-5432}
as=()
user=$(id -un)
if [ "$(id -u)" = 0 ]; then
    as=(runuser -u postgres --)
    user=postgres
fi
pgctl() { "${as[@]}" "$bin/pg_ctl" -D "$dir/data" -w -t 60 "$@" >"$dir/pg_ctl.out" 2>&1; }

case "$cmd" in
start)
    if [ -f "$dir/data/postmaster.pid" ]; then pgctl stop -m immediate || true; fi
    rm -rf "$dir"
    mkdir -p "$dir"
    [ "$user" = postgres ] && chown postgres "$dir"
    "${as[@]}" "$bin/initdb" -D "$dir/data" -U "$user" --auth=trust -E UTF8 --locale=C.UTF-8 \
        >"$dir/initdb.out" 2>&1 || { cat "$dir/initdb.out" >&2; exit 1; }
    cat >>"$dir/data/postgresql.conf" <<CONF
listen_addresses = ''
unix_socket_directories = '$dir'
port = $port
fsync = off
full_page_writes = off
max_connections = 200
shared_buffers = 64MB
log_min_messages = warning
CONF
    pgctl -l "$dir/server.log" start || { cat "$dir/pg_ctl.out" "$dir/server.log" >&2; exit 1; }
    "${as[@]}" "$bin/createdb" -h "$dir" -p "$port" -U "$user" metaserve
    echo "postgresql:///metaserve?host=$dir&port=$port&user=$user" | tee "$dir/uri"
    ;;
pause) pgctl stop -m fast ;;
resume) pgctl -l "$dir/server.log" start ;;
stop)
    if [ -f "$dir/data/postmaster.pid" ]; then pgctl stop -m fast || pgctl stop -m immediate || true; fi
    rm -rf "$dir"
    ;;
*) echo "pgctl.sh: unknown command $cmd" >&2; exit 2 ;;
esac
