#!/usr/bin/env bash
# Finds and stops what a run left running: the processes that carry the run's mark.
#
#   export DIRAC_LIKE_RUN_MARK=SOMETHING_UNIQUE   # at the start of the run (.ci/run does)
#   bash scripts/leftovers.sh                     # at its end: exit 1 if anything was left
#
# Every process the run starts inherits DIRAC_LIKE_RUN_MARK, daemons included (they keep the
# environment they were started with, whoever adopts them), so at the end of the run any process
# other than the caller whose environment holds the same mark was left behind. Those still there
# after GRACE_S seconds (a watcher or a daemon on its way out goes by itself) are named on stderr
# and stopped by PID: SIGTERM, SIGKILL after STOP_S seconds. A process that cleared its
# environment (env -i, sudo) escapes this check.
#
# Exit codes: 0 nothing was left, 1 something was left (and has been stopped), 2 usage.
set -euo pipefail

PROG=leftovers
GRACE_S=${LEFTOVERS_GRACE_S:-10}  # the tests shorten it
STOP_S=10

usage() {
    sed -n '4,5p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

# "PID command line" of the live processes carrying the mark, except this script's own
# processes and its caller
marked() {
    python3 - "$DIRAC_LIKE_RUN_MARK" "$$" "$PPID" <<'EOF'
import os, sys
from pathlib import Path

mark = f"DIRAC_LIKE_RUN_MARK={sys.argv[1]}".encode()
skip = {int(sys.argv[2]), int(sys.argv[3]), os.getpid(), os.getppid()}
for proc in Path("/proc").iterdir():
    if not proc.name.isdigit() or int(proc.name) in skip:
        continue
    try:
        if mark not in (proc / "environ").read_bytes().split(b"\0"):
            continue
        if (proc / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
            continue
        command = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:  # gone meanwhile
        continue
    print(proc.name, command[:300])
EOF
}

wait_gone() {  # SECONDS: 0 once nothing carries the mark, 1 if something still does then
    local i
    for i in $(seq 1 $(($1 * 5))); do
        [ -z "$(marked)" ] && return 0
        sleep 0.2
    done
    return 1
}

main() {
    [ $# = 0 ] || usage
    [ -n "${DIRAC_LIKE_RUN_MARK:-}" ] || usage
    wait_gone "$GRACE_S" && return 0
    local left pid  # read once: a pipeline's own processes carry the mark too
    left=$(marked)
    [ -n "$left" ] || return 0  # gone meanwhile
    echo "$PROG: still running, started by this run (stopping them by PID):" >&2
    sed "s/^/$PROG:   /" <<<"$left" >&2
    for pid in $(cut -d' ' -f1 <<<"$left"); do kill -TERM "$pid" 2>/dev/null || true; done
    if ! wait_gone "$STOP_S"; then
        left=$(marked)
        for pid in $(cut -d' ' -f1 <<<"$left"); do kill -KILL "$pid" 2>/dev/null || true; done
    fi
    return 1
}

main "$@"
