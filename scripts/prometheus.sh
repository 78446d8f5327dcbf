#!/usr/bin/env bash
# A throw-away Prometheus server on loopback, for tests, CI and trying the metrics by hand.
#
#   bash scripts/prometheus.sh install                      # apt-get install prometheus (root)
#   bash scripts/prometheus.sh start BASE_DIR CONFIG [PORT] # serve on 127.0.0.1:PORT (default 9090)
#   bash scripts/prometheus.sh stop BASE_DIR                # stop it by its recorded PID
#
# `start` runs Debian's prometheus binary with CONFIG (a prometheus.yml: see
# etc/prometheus/prometheus.yml; rule_files in it are read relative to it), its data in
# BASE_DIR/data, its log in BASE_DIR/prometheus.log and its PID in BASE_DIR/prometheus.pid, and
# waits (60 s at most) until it answers /-/ready. Nothing in /etc is used or changed, and this
# server is ours alone (`install` keeps the package from starting Debian's own on :9090). `stop`
# signals only the recorded PID, and only if its command line names BASE_DIR. With WATCH_PID=PID
# in the environment of `start`, a watcher stops the server once that process is gone (it stops by
# itself when the test session that started it dies).
#
# Exit codes: 0 ok, 1 failure (the reason on stderr), 2 usage.
set -euo pipefail

PROG=prometheus.sh
SELF=$(realpath "$0")
say() { echo "$PROG: $*"; }
fail() { echo "$PROG: $*" >&2; exit 1; }
usage() { sed -n '2,7p' "$0" >&2; exit 2; }

install() {
    if command -v prometheus >/dev/null && command -v promtool >/dev/null; then
        say "prometheus is installed ($(command -v prometheus))"
        return
    fi
    [ "$(id -u)" = 0 ] || fail "install needs root (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    # Without systemd the package's postinst starts /etc/init.d/prometheus (a server on :9090
    # that would outlive the run): a policy-rc.d that exits 101 stops that while apt-get runs.
    local made_policy=0 status=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        made_policy=1
    fi
    { apt-get update -qq && apt-get install -y -qq --no-install-recommends prometheus >/dev/null; } \
        || status=$?
    [ "$made_policy" = 0 ] || rm -f /usr/sbin/policy-rc.d
    [ "$status" = 0 ] || fail "apt-get install prometheus failed (exit $status)"
    command -v prometheus >/dev/null || fail "apt-get installed no prometheus binary"
    say "prometheus installed"
}

ready() {  # 0 once http://127.0.0.1:$1/-/ready answers 200
    python3 - "$1" <<'PY'
import sys, urllib.request
try:
    with urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/-/ready", timeout=2) as reply:
        sys.exit(0 if reply.status == 200 else 1)
except OSError:
    sys.exit(1)
PY
}

start() {
    local base=${1:-} config=${2:-} port=${3:-9090}
    [ -n "$base" ] && [ -n "$config" ] || usage
    command -v prometheus >/dev/null || fail "no prometheus binary: run '$0 install' first"
    [ -f "$config" ] || fail "no config file $config"
    mkdir -p "$base/data"
    base=$(cd "$base" && pwd)
    prometheus --config.file="$config" --storage.tsdb.path="$base/data" \
        --web.listen-address="127.0.0.1:$port" --web.enable-lifecycle \
        >"$base/prometheus.log" 2>&1 </dev/null &
    echo $! >"$base/prometheus.pid"
    for _ in $(seq 1 120); do
        if ready "$port"; then
            watch_parent "$base"
            say "prometheus ready on http://127.0.0.1:$port (pid $(cat "$base/prometheus.pid"))"
            return
        fi
        kill -0 "$(cat "$base/prometheus.pid")" 2>/dev/null || {
            tail -20 "$base/prometheus.log" >&2; fail "prometheus exited at start"; }
        sleep 0.5
    done
    stop "$base"
    fail "prometheus did not become ready in 60 s (see $base/prometheus.log)"
}

# With WATCH_PID set: a watcher that stops the server once WATCH_PID is gone (it exits by itself
# once the server is gone; scripts/stop-when-gone.sh).
watch_parent() {
    [ -n "${WATCH_PID:-}" ] || return 0
    bash "$(dirname "$SELF")/stop-when-gone.sh" "$WATCH_PID" "$(cat "$1/prometheus.pid")" -- \
        bash "$SELF" stop "$1"
}

stop() {
    local base=${1:-}
    [ -n "$base" ] || usage
    local pidfile="$base/prometheus.pid"
    [ -f "$pidfile" ] || { say "not running (no $pidfile)"; return; }
    local pid
    pid=$(cat "$pidfile")
    if kill -0 "$pid" 2>/dev/null && grep -q -- "$(basename "$base")" "/proc/$pid/cmdline"; then
        kill "$pid"
        for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
        kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
        say "stopped prometheus (pid $pid)"
    fi
    rm -f "$pidfile"
}

case ${1:-} in
    install) install ;;
    start) shift; start "$@" ;;
    stop) shift; stop "$@" ;;
    *) usage ;;
esac
