#!/usr/bin/env bash
# Stops throw-away daemons once the process that wanted them is gone (a test session killed by
# SIGKILL or by CI's timeout has no chance to stop them itself).
#
#   bash scripts/stop-when-gone.sh WATCH_PID PID[,PID...] -- STOP_COMMAND [ARG...]
#
# Starts a watcher in a session of its own (so that a signal to the caller's process group does
# not take it along) and returns at once. Every second the watcher looks at WATCH_PID and at the
# daemons' PIDs: once none of the PIDs runs it exits (the daemons were stopped the normal way);
# once WATCH_PID is gone (exited, a zombie, or its PID reused by a newer process) it runs
# STOP_COMMAND once and exits. STOP_COMMAND is the daemon script's own stop verb, which signals
# only the PIDs it recorded (never pkill/killall). Used by scripts/postgres-local.sh,
# scripts/slurm-cluster.sh, scripts/xrootd-se.sh and scripts/prometheus.sh when WATCH_PID is in
# their environment, and by the tests' Chromium (tests/chromium_browser.py).
#
# Exit codes: 0 the watcher started, 2 usage.
set -euo pipefail

CHECK_INTERVAL_S=1

usage() {
    sed -n '5p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

# Sets BORN to PID's start time (field 22 of /proc/PID/stat, clock ticks after boot), or to
# nothing when PID is gone or a zombie. No subshell: the watcher checks every second, for hours.
start_time() {
    BORN=""
    local stat
    { read -r stat <"/proc/$1/stat"; } 2>/dev/null || return 0
    stat=${stat##*) }  # the fields after "(comm)", whose name may hold spaces or parentheses
    # shellcheck disable=SC2086  # split on purpose
    set -- $stat
    [ "$1" = Z ] || BORN=${20}
}

any_alive() {  # true while one of the comma-separated PIDs runs (zombies do not count)
    local pid
    for pid in ${1//,/ }; do
        start_time "$pid"
        [ -n "$BORN" ] && return 0
    done
    return 1
}

watch() {  # WATCH_PID WATCH_START PIDS STOP_COMMAND...
    local watched=$1 born=$2 pids=$3
    shift 3
    while any_alive "$pids"; do
        start_time "$watched"
        if [ "$BORN" != "$born" ]; then
            "$@"
            return
        fi
        sleep "$CHECK_INTERVAL_S"
    done
}

main() {
    if [ "${1:-}" = --watch ]; then
        shift
        watch "$@"
        return
    fi
    [ $# -ge 4 ] && [ "$3" = -- ] || usage
    [[ $1 =~ ^[1-9][0-9]*$ ]] && [[ $2 =~ ^[1-9][0-9]*(,[1-9][0-9]*)*$ ]] || usage
    local watched=$1 pids=$2
    shift 3
    start_time "$watched"
    if [ -z "$BORN" ]; then  # already gone: stop at once
        "$@"
        return
    fi
    setsid bash "$0" --watch "$watched" "$BORN" "$pids" "$@" </dev/null >/dev/null 2>&1 &
}

main "$@"
