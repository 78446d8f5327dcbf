#!/usr/bin/env bash
# A throw-away Slurm cluster on loopback, for tests, CI and trying the slurm fabric by hand.
#
#   bash scripts/slurm-cluster.sh install                  # apt-get install slurm-wlm munge (root)
#   bash scripts/slurm-cluster.sh start BASE_DIR [options] # munged, slurmctld, slurmd(s)
#   source BASE_DIR/env.sh                                 # SLURM_CONF for sbatch, squeue, ...
#   bash scripts/slurm-cluster.sh status BASE_DIR          # daemons and nodes; exit 1 if not up
#   bash scripts/slurm-cluster.sh stop BASE_DIR            # cancel jobs, stop daemons by PID
#
# start options:
#   --nodes N            nodes n1..nN on this machine (default 1: one node "localhost")
#   --cpus N             CPUs each node claims (default: the machine's)
#   --oversubscribe N    jobs per core (OverSubscribe=FORCE:N; default 1: none)
#   --kill-wait S        seconds between scancel's SIGTERM and SIGKILL (default 2)
#   --ctld-port P        slurmctld port (default: a free one); slurmd ports are free ones too
# SLURM_CLUSTER_UTS=always runs the daemons in a UTS namespace named localhost even when the
# hostname resolves to a loopback address (see below).
#
# Everything lives under BASE_DIR: etc/slurm.conf, munge/ (key, socket), state/, spool/, log/
# (daemon logs and log/jobcomp.log, one line per finished job), run/ (PID files). Nothing in
# /etc is changed (except by `install`), every daemon binds 127.0.0.1, and `stop` signals only
# the PIDs recorded in BASE_DIR/run/daemons.pids whose command line names BASE_DIR.
# With WATCH_PID=PID in the environment of `start`, a watcher stops the cluster once that process
# is gone (the cluster stops by itself when the test session that started it dies).
#
# Partitions: "debug" (the default, no time limit) and "short" (MaxTime 10 minutes). The cluster
# enforces partition limits at submission (EnforcePartLimits=ALL): sbatch refuses a job asking for
# more time than its partition allows.
#
# Pitfalls of container-like machines (no systemd, root, a hostname that may not resolve) handled
# here: proctrack/cgroup silently does not run jobs, so proctrack/linuxproc and task/none; the
# daemons bind to whatever `hostname` resolves to, so when it is not a loopback address they run in
# a UTS namespace named "localhost"; no slurmdbd, so no sacct: finished jobs are in `scontrol show
# job` for MinJobAge (300 s) and in log/jobcomp.log.
#
# Exit codes: 0 ok, 1 failure (the reason on stderr), 2 usage.
set -euo pipefail

PROG=slurm-cluster
SELF=$(realpath "$0")
DAEMONS_FILE=run/daemons.pids

say() { echo "$PROG: $*"; }
fail() { echo "$PROG: error: $*" >&2; exit 1; }
usage() {
    sed -n '3,7p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

# -- install -----------------------------------------------------------------------------------

have_slurm() {
    command -v slurmctld && command -v slurmd && command -v munged && command -v sbatch
} >/dev/null 2>&1

cmd_install() {
    if have_slurm; then
        say "Slurm and munge are installed"
        return 0
    fi
    [ "$(id -u)" = 0 ] || fail "installing needs root: sudo bash $0 install"
    command -v apt-get >/dev/null || fail "no apt-get: install slurm-wlm and munge by hand"
    # Without systemd, the packages' postinst would start the daemons through invoke-rc.d;
    # a policy-rc.d that exits 101 stops that (many container images ship one already).
    local created_policy=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        created_policy=1
    fi
    local status=0
    {
        DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
                slurm-wlm munge >/dev/null
    } || status=$?
    [ "$created_policy" = 0 ] || rm -f /usr/sbin/policy-rc.d
    [ "$status" = 0 ] || fail "apt-get install slurm-wlm munge failed (exit $status)"
    have_slurm || fail "installed, but slurmctld/slurmd/munged/sbatch are not on PATH"
    say "installed slurm-wlm and munge"
}

# -- helpers -----------------------------------------------------------------------------------

# The PIDs this script started, as "name pid" lines, whose process still names BASE_DIR.
recorded_alive() {
    local base=$1 name pid
    [ -e "$base/$DAEMONS_FILE" ] || return 0
    while read -r name pid; do
        if ours "$pid" "$base"; then echo "$name $pid"; fi
    done <"$base/$DAEMONS_FILE"
}

# True when PID is alive and its command line mentions BASE_DIR (so never a reused PID).
ours() {
    local pid=$1 base=$2
    [ -r "/proc/$pid/cmdline" ] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$base/"
}

free_ports() {  # N free TCP ports on 127.0.0.1, one per line
    python3 - "$1" <<'EOF'
import socket, sys
sockets = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in sockets:
    s.bind(("127.0.0.1", 0))
print("\n".join(str(s.getsockname()[1]) for s in sockets))
EOF
}

wait_pidfile() {  # $1 pid file: wait up to 10 s for a daemon to write it
    local i
    for i in $(seq 1 100); do
        [ -s "$1" ] && return 0
        sleep 0.1
    done
    return 1
}

record_daemon() {  # $1 base $2 name $3 pid file
    wait_pidfile "$1/$3" || fail "$2 did not start (no $3); see $1/log/"
    echo "$2 $(cat "$1/$3")" >>"$1/$DAEMONS_FILE"
}

# -- start -------------------------------------------------------------------------------------

cmd_start() {
    local base=$1; shift
    local nodes=1 cpus="" oversubscribe=1 kill_wait=2 ctld_port=""
    while [ $# -gt 0 ]; do
        case $1 in
            --nodes) nodes=${2:?}; shift 2 ;;
            --cpus) cpus=${2:?}; shift 2 ;;
            --oversubscribe) oversubscribe=${2:?}; shift 2 ;;
            --kill-wait) kill_wait=${2:?}; shift 2 ;;
            --ctld-port) ctld_port=${2:?}; shift 2 ;;
            *) usage ;;
        esac
    done
    for value in "$nodes" "$oversubscribe" "$kill_wait" ${cpus:+"$cpus"} ${ctld_port:+"$ctld_port"}; do
        [[ $value =~ ^[1-9][0-9]*$ ]] || fail "not a positive number: $value"
    done
    have_slurm || fail "Slurm is not installed; run: bash $0 install"
    if [ -n "$(recorded_alive "$base")" ]; then
        say "already running under $base (stop it first to change its options)"
        return 0
    fi
    local started
    started=$(date +%s.%N)
    STARTING_BASE=$base
    trap on_start_exit EXIT
    prepare_base "$base"
    start_munge "$base"
    write_config "$base" "$nodes" "$cpus" "$oversubscribe" "$kill_wait" "$ctld_port"
    start_slurm "$base" "$nodes"
    wait_idle "$base" "$nodes" || fail "the cluster did not come up"
    watch_parent "$base"
    trap - EXIT
    say "$nodes node(s) idle in $(awk -v a="$started" -v b="$(date +%s.%N)" \
        'BEGIN{printf "%.1f", b-a}') s; source $base/env.sh"
}

# With WATCH_PID set: a watcher that stops the cluster once WATCH_PID is gone (it exits by itself
# once the daemons are gone; scripts/stop-when-gone.sh).
watch_parent() {
    [ -n "${WATCH_PID:-}" ] || return 0
    local pids
    pids=$(recorded_alive "$1" | awk '{print $2}' | paste -sd,)
    bash "$(dirname "$SELF")/stop-when-gone.sh" "$WATCH_PID" "$pids" -- bash "$SELF" stop "$1"
}

on_start_exit() {  # a failed start leaves no daemon behind
    local status=$?
    if [ "$status" != 0 ]; then
        echo "$PROG: start failed, stopping what was started" >&2
        stop_daemons "$STARTING_BASE"
    fi
    exit "$status"
}

prepare_base() {
    local base=$1 dir
    mkdir -p "$base"
    # munged refuses a socket below a folder that not everyone may enter
    dir=$(dirname "$base")
    while [ "$dir" != / ]; do
        [ "$(( 0$(stat -c %a "$dir") & 1 ))" = 1 ] || fail "munged needs every folder above \
BASE_DIR to be enterable by all (chmod o+x $dir), or a BASE_DIR elsewhere (e.g. mktemp -d)"
        dir=$(dirname "$dir")
    done
    [ ${#base} -le 80 ] || fail "BASE_DIR is too long for the munge socket path (max 80 chars)"
    rm -rf "${base:?}"/{etc,munge,state,spool,log,run}
    mkdir -p "$base"/{etc,munge,state,spool,log,run}
    # munged: the socket folder must be a+x and not group/other-writable
    chmod 755 "$base" "$base/munge"
    : >"$base/$DAEMONS_FILE"
}

start_munge() {
    local base=$1
    dd if=/dev/urandom of="$base/munge/munge.key" bs=1024 count=1 status=none
    chmod 400 "$base/munge/munge.key"
    munged --key-file="$base/munge/munge.key" --socket="$base/munge/munge.socket" \
        --pid-file="$base/run/munged.pid" --log-file="$base/log/munged.log" \
        --seed-file="$base/munge/munged.seed"
    record_daemon "$base" munged run/munged.pid
    munge -S "$base/munge/munge.socket" -n | unmunge -S "$base/munge/munge.socket" >/dev/null ||
        fail "munge self-test failed; see $base/log/munged.log"
}

write_config() {
    local base=$1 nodes=$2 cpus=$3 oversubscribe=$4 kill_wait=$5 ctld_port=$6
    local hardware real_cpus memory ports node_lines="" i
    hardware=$(slurmd -C | head -1)
    real_cpus=$(sed -n 's/.*CPUs=\([0-9]*\).*/\1/p' <<<"$hardware")
    memory=$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$hardware")
    cpus=${cpus:-$real_cpus}
    mapfile -t ports < <(free_ports $((nodes + 1)))
    ctld_port=${ctld_port:-${ports[0]}}
    if [ "$nodes" = 1 ]; then
        node_lines="NodeName=localhost NodeHostname=localhost NodeAddr=127.0.0.1 Port=${ports[1]} CPUs=$cpus RealMemory=$memory State=UNKNOWN"
    else
        for i in $(seq 1 "$nodes"); do
            node_lines+="NodeName=n$i NodeHostname=localhost NodeAddr=127.0.0.1 Port=${ports[$i]} CPUs=$cpus RealMemory=$((memory / nodes)) State=UNKNOWN"$'\n'
        done
    fi
    local share=""
    [ "$oversubscribe" = 1 ] || share=" OverSubscribe=FORCE:$oversubscribe"
    cat >"$base/etc/slurm.conf" <<EOF
# Written by scripts/slurm-cluster.sh; a throw-away cluster on 127.0.0.1.
ClusterName=dirac-like-test
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=${ports[1]}
CommunicationParameters=NoCtldInAddrAny,NoInAddrAny
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$base/munge/munge.socket
StateSaveLocation=$base/state
SlurmdSpoolDir=$base/spool/%n
SlurmctldPidFile=$base/run/slurmctld.pid
SlurmdPidFile=$base/run/slurmd-%n.pid
SlurmctldLogFile=$base/log/slurmctld.log
SlurmdLogFile=$base/log/slurmd-%n.log
SlurmctldDebug=info
SlurmdDebug=info
# proctrack/cgroup does not run jobs on machines without a usable freezer cgroup
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$base/log/jobcomp.log
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0
MailProg=/bin/true
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
ReturnToService=2
EnforcePartLimits=ALL
MinJobAge=300
KillWait=$kill_wait
SlurmdParameters=config_overrides
$node_lines
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP$share
PartitionName=short Nodes=ALL MaxTime=10 State=UP$share
EOF
    echo "export SLURM_CONF=$base/etc/slurm.conf" >"$base/env.sh"
}

start_slurm() {
    local base=$1 nodes=$2 conf=$1/etc/slurm.conf node
    local wrap=() first_v4
    first_v4=$(getent ahostsv4 "$(hostname)" 2>/dev/null | awk 'NR==1{print $1}' || true)
    if [ "${SLURM_CLUSTER_UTS:-auto}" = always ] || [[ $first_v4 != 127.* ]]; then
        # the daemons bind to what `hostname` resolves to: make it "localhost" for them
        # shellcheck disable=SC2016  # $0 and $@ are sh's, not this script's
        wrap=(unshare --uts sh -c 'hostname localhost && exec "$0" "$@"')
        say "daemons run in a UTS namespace named localhost (hostname '$(hostname)' resolves to '${first_v4:-nothing}')"
    fi
    "${wrap[@]}" slurmctld -i -f "$conf"
    record_daemon "$base" slurmctld run/slurmctld.pid
    for node in $(node_names "$nodes"); do
        mkdir -p "$base/spool/$node"
        "${wrap[@]}" slurmd -f "$conf" -N "$node"
        record_daemon "$base" "slurmd-$node" "run/slurmd-$node.pid"
    done
}

node_names() {
    if [ "$1" = 1 ]; then echo localhost; else seq -f 'n%g' 1 "$1"; fi
}

wait_idle() {  # every node idle within 60 s, every daemon still alive meanwhile
    local base=$1 nodes=$2 states="" deadline=$((SECONDS + 60)) expected
    expected=$(wc -l <"$base/$DAEMONS_FILE")
    while [ "$SECONDS" -lt "$deadline" ]; do
        if [ "$(recorded_alive "$base" | wc -l)" != "$expected" ]; then
            echo "$PROG: a daemon died while starting; logs:" >&2
            tail -n 5 "$base"/log/*.log >&2 || true
            return 1
        fi
        states=$(SLURM_CONF=$base/etc/slurm.conf timeout 5 sinfo -h -N -o '%N %T' 2>/dev/null |
            sort -u | awk '{print $2}' | sort | uniq -c | awk '{print $1 "x" $2}' | tr '\n' ' ')
        [ "$states" = "${nodes}xidle " ] && return 0
        sleep 0.2
    done
    echo "$PROG: nodes not idle after 60 s (states: ${states:-none}); logs:" >&2
    tail -n 20 "$base"/log/*.log >&2 || true
    return 1
}

# -- stop and status ---------------------------------------------------------------------------

cmd_stop() {
    local base=$1
    if [ -z "$(recorded_alive "$base")" ]; then
        say "not running under $base"
        return 0
    fi
    cancel_jobs "$base"
    stop_daemons "$base"
    say "stopped"
}

cancel_jobs() {  # so that slurmd leaves no slurmstepd (and no job) behind
    local base=$1 i
    export SLURM_CONF=$base/etc/slurm.conf
    timeout 10 scontrol ping >/dev/null 2>&1 || return 0
    timeout 10 squeue -h -o %i 2>/dev/null | xargs -r timeout 10 scancel --full --quiet || true
    for i in $(seq 1 100); do
        [ -z "$(timeout 10 squeue -h -t R,CG,S -o %i 2>/dev/null)" ] && return 0
        sleep 0.2
    done
    echo "$PROG: warning: jobs still running after 20 s" >&2
}

stop_daemons() {  # SIGTERM in reverse start order, SIGKILL after 10 s
    local base=$1 name pid i
    recorded_alive "$base" | tac | while read -r name pid; do
        kill -TERM "$pid" 2>/dev/null || continue
        for i in $(seq 1 50); do
            ours "$pid" "$base" || break
            sleep 0.2
        done
        if ours "$pid" "$base"; then
            echo "$PROG: $name ($pid) ignored SIGTERM, SIGKILL" >&2
            kill -KILL "$pid" 2>/dev/null || true
        fi
    done
}

cmd_status() {
    local base=$1 alive
    [ -e "$base/$DAEMONS_FILE" ] || { say "no cluster under $base"; return 1; }
    alive=$(recorded_alive "$base")
    local expected
    expected=$(wc -l <"$base/$DAEMONS_FILE")
    echo "${alive:-no daemon alive}" | sed "s/^/$PROG: /"
    if [ -z "$alive" ] || [ "$(echo "$alive" | wc -l)" != "$expected" ]; then
        say "not running (daemons alive: $(echo -n "$alive" | grep -c . || true) of $expected)"
        return 1
    fi
    SLURM_CONF=$base/etc/slurm.conf timeout 10 sinfo -N -o '%N %P %T %c' ||
        { say "slurmctld does not answer"; return 1; }
    echo "export SLURM_CONF=$base/etc/slurm.conf"
}

# -- main --------------------------------------------------------------------------------------

main() {
    local command=${1:-}
    [ $# -gt 0 ] && shift
    case $command in
        install) [ $# = 0 ] || usage; cmd_install ;;
        start | stop | status)
            [ $# -ge 1 ] || usage
            local base
            base=$(realpath -m -- "$1"); shift
            [ "$base" != / ] || fail "BASE_DIR must not be /"
            [ "$command" = start ] || [ $# = 0 ] || usage
            "cmd_$command" "$base" "$@"
            ;;
        *) usage ;;
    esac
}

main "$@"
