#!/usr/bin/env bash
# Stops throw-away daemons once the process that wanted them is gone (a test session killed by
# SIGKILL or by CI's timeout has no chance to stop them itself).
#
#   bash scripts/stop-when-gone.sh WATCH_PID PID[,PID...] -- STOP_COMMAND [ARG...]
#
# Starts a watcher in a session of its own (so that a signal to the caller's process group does
# not take it along) and returns at once. Every second the watcher looks at WATCH_PID and at the
# daemons' PIDs: once none of the daemons runs it exits (they were stopped the normal way); once
# WATCH_PID is gone it runs STOP_COMMAND once and exits. A process counts as gone once it has
# exited, is a zombie, or its PID was reused by a newer process (start times are compared).
# STOP_COMMAND is a daemon script's own stop verb, which signals only the PIDs it recorded, or a
# kill of the daemon's PID (never pkill/killall). Used by scripts/postgres-local.sh,
# scripts/slurm-cluster.sh, scripts/xrootd-se.sh and scripts/prometheus.sh when WATCH_PID is in
# their environment, and by the tests' fixtures through tests/session_watch.py (the central
# service, the dashboard, Chromium).
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

any_alive() {  # true while one of the PID:START pairs (comma-separated) still runs
    local pair
    for pair in ${1//,/ }; do
        start_time "${pair%:*}"
        [ "$BORN" = "${pair#*:}" ] && return 0
    done
    return 1
}

with_start_times() {  # PID,PID... -> PID:START,PID:START... of those running now
    local pid pairs=""
    for pid in ${1//,/ }; do
        start_time "$pid"
        [ -z "$BORN" ] || pairs+="${pairs:+,}$pid:$BORN"
    done
    echo "$pairs"
}

watch() {  # WATCH_PID WATCH_START PID:START,... STOP_COMMAND...
    local watched=$1 born=$2 daemons=$3
    shift 3
    while any_alive "$daemons"; do
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
    local watched=$1 daemons
    daemons=$(with_start_times "$2")  # a daemon's PID reused later is not that daemon
    shift 3
    [ -n "$daemons" ] || return 0  # nothing to watch over
    start_time "$watched"
    if [ -z "$BORN" ]; then  # already gone: stop at once
        "$@"
        return
    fi
    setsid bash "$0" --watch "$watched" "$BORN" "$daemons" "$@" </dev/null >/dev/null 2>&1 &
}

main "$@"
