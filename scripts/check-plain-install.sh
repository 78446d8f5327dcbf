#!/usr/bin/env bash
# Install dirac-like as a user or a site admin does, NOT editable, and run it.
#
#   bash scripts/check-plain-install.sh [WORK_DIR]
#
# Builds a wheel of this clone, installs it into a fresh virtual environment outside the clone
# (as docs/deploying-a-site.md installs a director host), then runs `dirac-like demo` from the
# clone's root (where a child process could pick up the source tree by accident) and from another
# folder, and checks the wheel's commands start (director, pilot, bootstrap script). An editable
# install hides a package missing from the wheel; this does not. CI runs it (.ci/run). Without
# WORK_DIR it works in a new temporary folder and removes it when it ends.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
if [ $# -ge 1 ]; then
    work=$1
else  # a folder of our own, removed on the way out, pass or fail
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
fi
mkdir -p "$work"
venv=$work/venv
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore

step() { printf '== plain install: %s\n' "$*"; }

step "wheel of $repo"
python3 -m pip wheel -q --no-deps -w "$work/wheels" "$repo"
wheel=$(ls "$work"/wheels/dirac_like-*.whl)

step "fresh virtual environment $venv"
python3 -m venv "$venv"
"$venv/bin/pip" install -q "$wheel"

step "dirac-like demo from the clone's root"
(cd "$repo" && "$venv/bin/dirac-like" demo </dev/null)

step "dirac-like demo from another folder"
mkdir -p "$work/elsewhere"
(cd "$work/elsewhere" && "$venv/bin/dirac-like" demo </dev/null)

step "the director's and the pilot's commands, and the bootstrap script the wheel installs"
(cd "$repo" && "$venv/bin/dirac-like" agent director --help >/dev/null)
(cd "$repo" && "$venv/bin/dirac-like" pilot --help >/dev/null)
bash "$venv/share/dirac-like/pilot-bootstrap.sh" --python "$venv/bin/python" -- --help >/dev/null

step "the web dashboard's command, templates and static files"
(cd "$repo" && "$venv/bin/dirac-like" service web --help >/dev/null)
(cd "$work/elsewhere" && "$venv/bin/python" -P -c '
import sys
from dirac_like.services.web.app import HERE
names = ("templates/base.html", "templates/overview.html", "static/live.js", "static/dashboard.css")
missing = [name for name in names if not (HERE / name).is_file()]
sys.exit(f"not in the wheel: {missing}" if missing else 0)')

step "ok"
