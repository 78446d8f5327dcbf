#!/usr/bin/env bash
# The pilot bootstrap: what a batch system runs on a worker node, before dirac-like is importable.
#
#   pilot-bootstrap.sh [--python PY] [--install-from WHEEL_OR_DIR] [--venv DIR] [--record FILE]
#                      -- PILOT_ARGS...
#
# 1. Finds a Python (3.11 or newer) that can import dirac-like, trying in turn: --python PY, the
#    environment DIR of --venv (default: ./venv), python3 on PATH.
# 2. If none can, and --install-from names a wheel or a source folder: creates the virtual
#    environment DIR (python -m venv, with the first Python 3.11+ found) and pip-installs dirac-like
#    into it. Pilots sharing one DIR (e.g. on a shared file system) take turns with flock(1);
#    pip needs an index or PIP_FIND_LINKS for the dependencies.
# 3. Records what it did in FILE (default ./bootstrap.json; "." is the pilot's working directory,
#    where the batch system starts it), then execs `PYTHON -P -m dirac_like pilot PILOT_ARGS...`.
#
# Progress and errors go to stderr, one line each, prefixed "pilot-bootstrap:". Exit codes of a
# failed setup (agents/batch_env.py has the same table, BOOTSTRAP_EXIT_REASONS):
#   64  no Python 3.11 or newer on the worker node
#   65  creating the virtual environment failed
#   66  installing dirac-like into the environment failed
#   67  dirac-like is not importable (and nothing to install it from)
#   68  bad arguments to the bootstrap script
# Any other code is the pilot's own.
set -uo pipefail

EXIT_NO_PYTHON=64
EXIT_VENV_FAILED=65
EXIT_INSTALL_FAILED=66
EXIT_NOT_IMPORTABLE=67
EXIT_USAGE=68

PYTHON_ARG=""
INSTALL_FROM=""
VENV="$PWD/venv"
RECORD="$PWD/bootstrap.json"
STARTED=$(TZ=UTC printf '%(%Y-%m-%dT%H:%M:%SZ)T' -1)
ACTION=""
CHOSEN=""

say() { echo "pilot-bootstrap: $*" >&2; }

json_str() {  # a JSON string literal for $1
    local s=$1
    s=${s//\\/\\\\}; s=${s//\"/\\\"}; s=${s//$'\n'/\\n}; s=${s//$'\r'/\\r}; s=${s//$'\t'/\\t}
    printf '"%s"' "$s"
}

json_list() {  # a JSON list of strings for "$@"
    local first=1 item
    printf '['
    for item in "$@"; do
        [ "$first" = 1 ] || printf ', '
        json_str "$item"
        first=0
    done
    printf ']'
}

record() {  # $1 status (ok/failed), $2 exit code, $3 reason
    local version=""
    [ -z "$CHOSEN" ] || version=$("$CHOSEN" -c \
        'import importlib.metadata as m; print(m.version("dirac-like"))' 2>/dev/null || echo unknown)
    {
        printf '{\n'
        printf '  "status": %s,\n  "exit_code": %s,\n  "reason": %s,\n' \
            "$(json_str "$1")" "$2" "$(json_str "$3")"
        printf '  "action": %s,\n  "python": %s,\n  "dirac_like_version": %s,\n' \
            "$(json_str "$ACTION")" "$(json_str "$CHOSEN")" "$(json_str "$version")"
        printf '  "venv": %s,\n  "install_from": %s,\n' \
            "$(json_str "$VENV")" "$(json_str "$INSTALL_FROM")"
        printf '  "host": %s,\n  "batch_job_id": %s,\n  "started": %s,\n' \
            "$(json_str "${HOSTNAME:-}")" \
            "$(json_str "${SLURM_JOB_ID:-}")" "$(json_str "$STARTED")"
        printf '  "pilot_args": %s\n}\n' "$(json_list "${PILOT_ARGS[@]}")"
    } 2>/dev/null >"$RECORD" || say "cannot write $RECORD"
}

die() {  # $1 exit code, $2 reason
    say "exit $1: $2"
    record failed "$1" "$2"
    exit "$1"
}

parse_args() {
    while [ $# -gt 0 ]; do
        case $1 in
            --python) [ $# -ge 2 ] || usage_error "--python needs a value"; PYTHON_ARG=$2; shift 2 ;;
            --install-from) [ $# -ge 2 ] || usage_error "--install-from needs a value"
                INSTALL_FROM=$2; shift 2 ;;
            --venv) [ $# -ge 2 ] || usage_error "--venv needs a value"; VENV=$2; shift 2 ;;
            --record) [ $# -ge 2 ] || usage_error "--record needs a value"; RECORD=$2; shift 2 ;;
            --) shift; PILOT_ARGS=("$@"); return 0 ;;
            *) usage_error "unknown argument $1 (pilot arguments go after --)" ;;
        esac
    done
    usage_error "missing -- before the pilot arguments"
}

usage_error() {
    PILOT_ARGS=()
    die "$EXIT_USAGE" "bad arguments to the bootstrap script: $1"
}

modern() {  # $1 runs and is Python 3.11 or newer
    [ -n "$1" ] && command -v "$1" >/dev/null 2>&1 &&
        "$1" -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1
}

has_dirac_like() {  # $1 is a modern Python that imports the pilot (and so its dependencies)
    modern "$1" && "$1" -P -c 'import dirac_like.agents.pilot' >/dev/null 2>&1
}

interpreter() {  # the real executable behind $1 (not a pyenv shim or a PATH name)
    "$1" -c 'import sys; print(sys.executable)'
}

find_existing() {  # sets CHOSEN to the first candidate Python with dirac-like
    local candidate
    for candidate in "$PYTHON_ARG" "$VENV/bin/python" python3; do
        if has_dirac_like "$candidate"; then
            CHOSEN=$(interpreter "$candidate")
            return 0
        fi
    done
    return 1
}

base_python() {  # the Python to create the environment with
    local candidate
    for candidate in "$PYTHON_ARG" python3; do
        if modern "$candidate"; then interpreter "$candidate"; return 0; fi
    done
    return 1
}

create_environment() {  # $1 base Python; under flock when available
    local base=$1
    mkdir -p "$(dirname "$VENV")" 2>/dev/null
    if command -v flock >/dev/null 2>&1 && { exec 9>>"$VENV.lock"; } 2>/dev/null; then
        flock 9
    fi
    if has_dirac_like "$VENV/bin/python"; then  # another pilot made it while this one waited
        return 0
    fi
    say "creating $VENV with $base"
    "$base" -m venv "$VENV" >&2 || die "$EXIT_VENV_FAILED" \
        "creating the virtual environment failed: $base -m venv $VENV"
    say "installing dirac-like from $INSTALL_FROM"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "$INSTALL_FROM" >&2 ||
        die "$EXIT_INSTALL_FAILED" \
            "installing dirac-like into the environment failed: pip install $INSTALL_FROM"
}

main() {
    parse_args "$@"
    if find_existing; then
        ACTION=found
        say "using $CHOSEN"
    else
        local base
        base=$(base_python) || die "$EXIT_NO_PYTHON" \
            "no Python 3.11 or newer on the worker node (tried: ${PYTHON_ARG:+$PYTHON_ARG, }python3 on PATH=$PATH)"
        [ -n "$INSTALL_FROM" ] || die "$EXIT_NOT_IMPORTABLE" \
            "dirac-like is not importable (tried: ${PYTHON_ARG:+$PYTHON_ARG, }$VENV, python3) and nothing to install it from (--install-from)"
        create_environment "$base"
        has_dirac_like "$VENV/bin/python" || die "$EXIT_NOT_IMPORTABLE" \
            "dirac-like is not importable from $VENV after installing $INSTALL_FROM"
        CHOSEN=$VENV/bin/python
        ACTION=created
    fi
    record ok 0 ""
    # -P: the job's working folder (perhaps a clone of the repository) stays off sys.path
    exec "$CHOSEN" -P -m dirac_like pilot "${PILOT_ARGS[@]}"
}

PILOT_ARGS=()
main "$@"
