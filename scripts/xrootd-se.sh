#!/usr/bin/env bash
# Real XRootD storage elements on loopback, for tests, CI and trying the data commands by hand.
#
#   bash scripts/xrootd-se.sh install                     # apt-get install xrootd-server/-client
#   bash scripts/xrootd-se.sh start BASE_DIR NAME[:PORT]... # one xrootd daemon per SE
#   bash scripts/xrootd-se.sh status BASE_DIR             # each SE and its URL; exit 1 if one is down
#   bash scripts/xrootd-se.sh stop BASE_DIR [NAME...]      # stop by the PIDs recorded (all, or some)
#
# Each SE NAME gets its data under BASE_DIR/data/NAME (the SE's root: root://127.0.0.1:PORT//x is
# BASE_DIR/data/NAME/x), its config in BASE_DIR/etc/NAME.cfg, its log in BASE_DIR/log/NAME.log.
# A PORT of 0 or none: a free one. `start` prints one line per SE: "NAME root://127.0.0.1:PORT",
# and records "NAME PORT PID" lines in BASE_DIR/run/ses.pids. Every daemon listens on 127.0.0.1
# only. `stop` signals only the recorded PIDs whose command line names BASE_DIR (never a reused
# PID), SIGTERM then SIGKILL after 10 s. With WATCH_PID=PID in the environment of `start`, a
# watcher stops the SEs it started once that process is gone (they stop by themselves when the
# test session that started them dies).
#
# Each SE computes adler32 checksums (`xrdfs HOST query checksum PATH` answers "adler32 HEX") and
# accepts third-party copies (`xrdcp --tpc only`): the destination pulls from the source itself.
#
# Pitfalls of this machine (see also the reference recipe):
# - xrootd refuses to run as root: started as root, the daemons drop to `nobody` (-R nobody), so
#   their folders are chowned to nobody and BASE_DIR must be enterable by all (mode 755, and so
#   must every folder above it: use a folder directly in /tmp, not pytest's 0700 tmp_path).
# - third-party copy needs `ofs.tpc pgm /usr/bin/xrdcp --server` on the destination; without
#   --server the pull fails with "file exists (destination)" and leaves an empty file behind.
# - xrootd 5.5 has no option to bind one address: it listens on every interface. Each SE admits
#   client hosts named localhost / 127.0.0.1 only (`xrd.allow host`), so nothing off this machine
#   can use it.
#
# Exit codes: 0 ok, 1 failure (the reason on stderr), 2 usage.
set -euo pipefail

PROG=xrootd-se
SELF=$(realpath "$0")
PIDS_FILE=run/ses.pids
START_TIMEOUT_S=20

say() { echo "$PROG: $*"; }
fail() { echo "$PROG: error: $*" >&2; exit 1; }
usage() {
    sed -n '3,6p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

# -- install -----------------------------------------------------------------------------------

have_xrootd() {
    command -v xrootd && command -v xrdcp && command -v xrdfs
} >/dev/null 2>&1

cmd_install() {
    if have_xrootd; then
        say "xrootd-server and xrootd-client are installed"
        return 0
    fi
    [ "$(id -u)" = 0 ] || fail "installing needs root: sudo bash $0 install"
    command -v apt-get >/dev/null || fail "no apt-get: install xrootd-server and xrootd-client by hand"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null
    # Without systemd the packages start no daemon: the SEs are started by `start` only.
    apt-get install -y -q --no-install-recommends xrootd-server xrootd-client >/dev/null
    have_xrootd || fail "xrootd is still missing after apt-get install"
    say "installed $(xrootd -v 2>&1 | head -1)"
}

# -- helpers -----------------------------------------------------------------------------------

# True when PID is alive and its command line mentions BASE_DIR (so never a reused PID).
ours() {
    local pid=$1 base=$2
    [ -r "/proc/$pid/cmdline" ] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$base/"
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

listening() {  # true when something accepts TCP connections on 127.0.0.1:PORT
    python3 -c 'import socket, sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1).close()' \
        "$1" 2>/dev/null
}

write_config() {  # BASE NAME PORT
    local base=$1 name=$2 port=$3
    cat >"$base/etc/$name.cfg" <<CFG
# SE $name (written by scripts/xrootd-se.sh)
all.role server
all.export /
oss.localroot $base/data/$name
all.adminpath $base/run/$name
all.pidpath $base/run/$name
xrd.port $port
xrd.allow host localhost
xrd.allow host 127.0.0.1
xrootd.chksum adler32
ofs.tpc pgm /usr/bin/xrdcp --server
CFG
}

start_one() {  # BASE NAME PORT
    local base=$1 name=$2 port=$3 pid_file pid i
    mkdir -p "$base/data/$name" "$base/run/$name"
    write_config "$base" "$name" "$port"
    local drop=()
    if [ "$(id -u)" = 0 ]; then
        chown -R nobody:nogroup "$base/data/$name" "$base/run/$name" "$base/log"
        drop=(-R nobody)
    fi
    xrootd -b -l "$base/log/$name.log" -c "$base/etc/$name.cfg" -n "$name" "${drop[@]}" \
        || fail "xrootd for SE $name did not start (see $base/log/)"
    pid_file="$base/run/$name/$name/xrootd.pid"
    for i in $(seq 1 $((START_TIMEOUT_S * 10))); do
        if [ -s "$pid_file" ] && listening "$port"; then
            pid=$(cat "$pid_file")
            echo "$name $port $pid" >>"$base/$PIDS_FILE"
            echo "$name root://127.0.0.1:$port"
            return 0
        fi
        sleep 0.1
    done
    fail "SE $name did not listen on port $port within ${START_TIMEOUT_S} s (see $base/log/$name.log)"
}

cmd_start() {
    local base=${1:?BASE_DIR}
    shift
    [ $# -gt 0 ] || usage
    have_xrootd || fail "xrootd is not installed: run 'bash $0 install' as root"
    mkdir -p "$base/etc" "$base/run" "$base/log" "$base/data"
    base=$(cd "$base" && pwd)
    chmod 755 "$base" "$base/data" "$base/run" "$base/log"
    if [ "$(id -u)" = 0 ]; then  # the daemons run as nobody: every folder above must let it in
        local up=$base
        while [ "$up" != / ]; do
            up=$(dirname "$up")
            [ "$(( 0$(stat -c %a "$up") & 1 ))" = 1 ] ||
                fail "$up is not enterable by others (mode $(stat -c %a "$up")): the SEs run as nobody; use a folder whose parents are mode 755 (e.g. one made directly in /tmp)"
        done
    fi
    local spec name port names=()
    for spec in "$@"; do
        name=${spec%%:*}
        port=${spec#*:}
        [ "$port" = "$spec" ] && port=0
        [[ $name =~ ^[A-Za-z0-9_-]+$ ]] || fail "SE name '$name': letters, digits, _ and - only"
        [[ $port =~ ^[0-9]+$ ]] || fail "SE $name: port '$port' is not a number"
        [ "$port" = 0 ] && port=$(free_port)
        if [ -e "$base/$PIDS_FILE" ] && grep -q "^$name " "$base/$PIDS_FILE"; then
            fail "SE $name is already recorded in $base/$PIDS_FILE: stop it first"
        fi
        start_one "$base" "$name" "$port"
        names+=("$name")
    done
    watch_parent "$base" "${names[@]}"
}

# With WATCH_PID set: a watcher that stops the SEs named once WATCH_PID is gone (it exits by
# itself once they are gone; scripts/stop-when-gone.sh).
watch_parent() {  # BASE NAME...
    [ -n "${WATCH_PID:-}" ] || return 0
    local base=$1 pids
    shift
    pids=$(recorded_alive "$base" | awk -v names=" $* " 'index(names, " " $1 " ") {print $3}' |
        paste -sd,)
    bash "$(dirname "$SELF")/stop-when-gone.sh" "$WATCH_PID" "$pids" -- \
        bash "$SELF" stop "$base" "$@"
}

recorded_alive() {  # "NAME PORT PID" of recorded SEs whose process is still ours
    local base=$1 name port pid
    [ -e "$base/$PIDS_FILE" ] || return 0
    while read -r name port pid; do
        ours "$pid" "$base" && echo "$name $port $pid"
    done <"$base/$PIDS_FILE"
}

cmd_stop() {
    local base=${1:?BASE_DIR}
    shift
    [ -d "$base" ] || { say "no SEs under $base"; return 0; }
    base=$(cd "$base" && pwd)
    [ -e "$base/$PIDS_FILE" ] || { say "no SEs recorded under $base"; return 0; }
    local name port pid i wanted=" $* "
    while read -r name port pid; do
        [ $# -gt 0 ] && [[ $wanted != *" $name "* ]] && continue
        if ours "$pid" "$base"; then
            kill -TERM "$pid" 2>/dev/null || true
            for i in $(seq 1 100); do
                ours "$pid" "$base" || break
                sleep 0.1
            done
            if ours "$pid" "$base"; then
                echo "$PROG: SE $name ($pid) ignored SIGTERM, SIGKILL" >&2
                kill -KILL "$pid" 2>/dev/null || true
            fi
        fi
        sed -i "/^$name /d" "$base/$PIDS_FILE"
        say "stopped SE $name"
    done < <(cat "$base/$PIDS_FILE")
}

cmd_status() {
    local base=${1:?BASE_DIR} alive expected
    [ -e "$base/$PIDS_FILE" ] || { say "no SEs under $base"; return 1; }
    alive=$(recorded_alive "$base")
    expected=$(grep -c . "$base/$PIDS_FILE" || true)
    echo "$alive" | while read -r name port pid; do
        [ -n "$name" ] && echo "$name root://127.0.0.1:$port (pid $pid)"
    done
    [ "$(echo -n "$alive" | grep -c . || true)" = "$expected" ] ||
        { say "not all SEs are running ($expected recorded)"; return 1; }
}

# -- main --------------------------------------------------------------------------------------

case ${1:-} in
install) cmd_install ;;
start) shift; cmd_start "$@" ;;
stop) shift; cmd_stop "$@" ;;
status) shift; cmd_status "$@" ;;
*) usage ;;
esac
