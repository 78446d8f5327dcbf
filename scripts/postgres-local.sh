#!/usr/bin/env bash
# A throw-away PostgreSQL server on loopback, for tests, CI, benchmarks and trying the PostgreSQL
# store by hand (docs/postgresql.md).
#
#   bash scripts/postgres-local.sh install              # apt-get install postgresql (Debian's)
#   bash scripts/postgres-local.sh start DIR [PORT]     # initdb in DIR (once), start; prints the URL
#   bash scripts/postgres-local.sh url DIR              # the URL of the server in DIR
#   bash scripts/postgres-local.sh stop DIR             # stop it by the PID in its postmaster.pid
#
# `start` makes DIR/data (the cluster), DIR/sock (its Unix socket), DIR/server.log, a role and a
# database both named `dirac` (password `dirac`) and writes the URL,
# postgresql://dirac:dirac@127.0.0.1:PORT/dirac, to DIR/url. The role may create databases (the
# tests make one per test). PORT 0 or none: a free one. The server listens on 127.0.0.1 only.
# `start` on a DIR whose server was stopped starts it again with its data and port (a restart).
# With WATCH_PID=PID in the environment, a watcher stops the server once that process is gone
# (the server stops by itself when the test session that started it dies).
#
# The server is tuned for throw-away use: fsync off, synchronous_commit off (a server crash may
# lose the last commits; a clean stop or restart loses nothing), unless DURABLE=1 is in the
# environment at its first start (the benchmarks: fsync on, as SQLite's synchronous=full). Never
# use it for real data: docs/postgresql.md says how to configure a real one.
#
# Pitfalls (see also the reference recipe):
# - initdb and postgres refuse to run as root: started as root, they run as the `postgres` user
#   (runuser), DIR is chowned to it and every folder above DIR must be enterable by it (use a
#   folder directly in /tmp, not pytest's 0700 tmp_path).
# - installing the package would create and start a cluster on :5432 through invoke-rc.d: a
#   policy-rc.d that exits 101 prevents that start while apt-get runs.
#
# Exit codes: 0 ok, 1 failure (the reason on stderr), 2 usage.
set -euo pipefail

PROG=postgres-local
SELF=$(realpath "$0")  # `start` changes folder: the watcher needs a path that stays true
START_TIMEOUT_S=60
STOP_TIMEOUT_S=20

say() { echo "$PROG: $*" >&2; }
fail() { echo "$PROG: error: $*" >&2; exit 1; }
usage() {
    sed -n '5,8p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

pg_bin() {
    local found
    found=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
    [ -n "$found" ] && [ -x "$found/initdb" ] && echo "$found"
}

cmd_install() {
    if pg_bin >/dev/null; then
        say "postgresql is installed ($(pg_bin))"
        return 0
    fi
    [ "$(id -u)" = 0 ] || fail "installing needs root: sudo bash $0 install"
    command -v apt-get >/dev/null || fail "no apt-get: install PostgreSQL (initdb, pg_ctl) by hand"
    export DEBIAN_FRONTEND=noninteractive
    local made_policy=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then  # keep the package from starting cluster main on :5432
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        made_policy=1
    fi
    apt-get update -q >/dev/null
    apt-get install -y -q --no-install-recommends postgresql >/dev/null
    [ "$made_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d
    pg_bin >/dev/null || fail "initdb is still missing after apt-get install"
    say "postgresql installed ($(pg_bin))"
}

# Run a server program as the user that owns the cluster: `postgres` when we are root.
as_owner() {
    if [ "$(id -u)" = 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

server_pid() {  # the postmaster's PID if it runs from DIR/data, else nothing
    local pidfile="$1/data/postmaster.pid" pid
    [ -f "$pidfile" ] || return 0
    pid=$(head -1 "$pidfile")
    # only a live process whose command line names this data folder (never a reused PID)
    if [ -n "$pid" ] && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "$1/data"; then
        echo "$pid"
    fi
}

cmd_start() {
    local dir port bin
    [ $# -ge 1 ] || usage
    dir=$(realpath -m "$1")
    port=${2:-0}
    bin=$(pg_bin) || fail "PostgreSQL is not installed: run \`bash $0 install\` as root"
    [ -z "$(server_pid "$dir")" ] || fail "a server already runs from $dir (PID $(server_pid "$dir"))"
    cd /  # the postgres user may not be able to enter the current folder
    if [ -f "$dir/data/PG_VERSION" ]; then  # started before: start it again, data and port kept
        as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t "$START_TIMEOUT_S" start \
            >/dev/null || fail "the server did not start: $(tail -5 "$dir/server.log")"
        watch_server "$dir"
        cat "$dir/url"
        return 0
    fi
    [ "$port" = 0 ] && port=$(free_port)
    rm -rf "$dir/data" "$dir/sock"
    mkdir -p "$dir/sock"
    if [ "$(id -u)" = 0 ]; then
        chown -R postgres:postgres "$dir"
        chmod 755 "$dir"
        runuser -u postgres -- test -w "$dir" \
            || fail "the postgres user cannot write $dir: use a folder every user can enter (in /tmp)"
    fi
    as_owner "$bin/initdb" -D "$dir/data" -U postgres -E UTF8 --locale=C.UTF-8 \
        --auth-local=trust --auth-host=scram-sha-256 --no-sync >"$dir/initdb.log" 2>&1 \
        || fail "initdb failed: $(tail -5 "$dir/initdb.log")"
    cat >>"$dir/data/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir/sock'
max_connections = 200
EOF
    if [ "${DURABLE:-0}" != 1 ]; then
        cat >>"$dir/data/postgresql.conf" <<EOF
# throw-away server: durability traded for speed (a clean stop loses nothing)
fsync = off
synchronous_commit = off
full_page_writes = off
EOF
    fi
    as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t "$START_TIMEOUT_S" start \
        >/dev/null || fail "the server did not start: $(tail -5 "$dir/server.log")"
    as_owner psql -q -h "$dir/sock" -p "$port" -U postgres -d postgres -v ON_ERROR_STOP=1 \
        -c "CREATE ROLE dirac LOGIN CREATEDB PASSWORD 'dirac'" \
        -c "CREATE DATABASE dirac OWNER dirac" >/dev/null \
        || fail "cannot create the role and database"
    echo "postgresql://dirac:dirac@127.0.0.1:$port/dirac" >"$dir/url"
    watch_server "$dir"
    cat "$dir/url"
}

# With WATCH_PID set: a watcher that stops the server in $1 once WATCH_PID is gone (it exits by
# itself once the server is gone; scripts/stop-when-gone.sh).
watch_server() {
    [ -n "${WATCH_PID:-}" ] || return 0
    bash "$(dirname "$SELF")/stop-when-gone.sh" "$WATCH_PID" "$(server_pid "$1")" -- \
        bash "$SELF" stop "$1"
}

cmd_stop() {
    local dir pid
    [ $# -ge 1 ] || usage
    dir=$(realpath -m "$1")
    pid=$(server_pid "$dir")
    if [ -z "$pid" ]; then
        say "no server runs from $dir"
        return 0
    fi
    kill -INT "$pid" 2>/dev/null || true  # SIGINT: PostgreSQL's "fast" shutdown
    for _ in $(seq 1 $((STOP_TIMEOUT_S * 10))); do
        kill -0 "$pid" 2>/dev/null || { say "stopped (PID $pid)"; return 0; }
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    say "killed (PID $pid): it did not stop within ${STOP_TIMEOUT_S}s"
}

cmd_url() {
    [ $# -ge 1 ] || usage
    cat "$(realpath -m "$1")/url"
}

cmd_pid() {
    [ $# -ge 1 ] || usage
    server_pid "$(realpath -m "$1")"
}

command=${1:-}
[ $# -gt 0 ] && shift
case "$command" in
    install) cmd_install ;;
    start) cmd_start "$@" ;;
    stop) cmd_stop "$@" ;;
    url) cmd_url "$@" ;;
    pid) cmd_pid "$@" ;;
    *) usage ;;
esac
