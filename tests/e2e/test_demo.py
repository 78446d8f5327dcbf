"""``dirac-like demo`` end to end: it runs its workload, reports, and leaves nothing behind."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def processes_mentioning(text: str) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["cmdline"]):
        if any(text in part for part in process.info["cmdline"] or []):
            found.append(process)
    return found


def processes_in_session(session: int) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter():
        try:
            if os.getsid(process.pid) == session:
                found.append(process)
        except (ProcessLookupError, PermissionError):
            continue
    return found


def test_demo_runs_the_workload_and_leaves_no_process(tmp_path: Path) -> None:
    scratch = tmp_path / "tmp"  # the demo's temporary home goes here (TMPDIR)
    scratch.mkdir()
    env = {**os.environ, "TMPDIR": str(scratch),
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}

    demo = subprocess.Popen(
        [sys.executable, "-m", "dirac_like", "demo", "--jobs", "20", "--sites", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO,
        stdin=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        stdout, stderr = demo.communicate(timeout=60)
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.communicate()

    assert demo.returncode == 0, stdout + stderr
    assert "Jobs by site and status" in stdout and "Done" in stdout
    assert "DIRAC.Demo-1.org" in stdout and "DIRAC.Demo-2.org" in stdout
    assert "All 20 jobs ended as planned: 17 Done, 2 Failed, 1 Killed." in stdout
    assert "physics" in stdout and "users" in stdout
    assert processes_mentioning(str(scratch)) == []
    assert processes_in_session(demo.pid) == []
    assert list(scratch.iterdir()) == []  # the temporary home is removed after a good run
