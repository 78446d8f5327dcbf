"""``dirac-like demo`` end to end: a central service, one site director per site and real local
pilots run the planned workload; the demo reports it and leaves nothing behind."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

REPO = Path(__file__).resolve().parents[2]
DEADLINE = 150.0  # the demo itself gives up after 90 s + 1 s per job

pytestmark = pytest.mark.slow


def processes_mentioning(text: str) -> list[psutil.Process]:
    """Processes with ``text`` in their command line or working folder."""
    found = []
    for process in psutil.process_iter(["cmdline", "cwd"]):
        words = [*(process.info["cmdline"] or []), process.info["cwd"] or ""]
        if any(text in word for word in words):
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


def describe(process: psutil.Process) -> str:
    try:
        return f"{process.pid} {' '.join(process.cmdline())}"
    except psutil.Error:
        return f"{process.pid} (gone)"


def line_of(job_name: str, stdout: str) -> str:
    """The row of the "Notable jobs" table for ``job_name``."""
    rows = [line for line in stdout.splitlines() if re.search(rf"\d+\s+{job_name}\s", line)]
    assert len(rows) == 1, (job_name, stdout)
    return rows[0]


def run_demo(scratch: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "TMPDIR": str(scratch),
        "COLUMNS": "200",
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    demo = subprocess.Popen(
        [sys.executable, "-m", "dirac_like", "demo", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        stdout, stderr = demo.communicate(timeout=DEADLINE)
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.communicate()
    leftovers = processes_mentioning(str(scratch)) + processes_in_session(demo.pid)
    described = [describe(process) for process in leftovers]
    for process in leftovers:  # not to disturb other tests; the assertion fails anyway
        with contextlib.suppress(psutil.Error):
            process.kill()
    assert not leftovers, described
    return subprocess.CompletedProcess(demo.args, demo.returncode, stdout, stderr)


def test_demo_runs_the_workload_on_real_pilots_and_leaves_no_process(tmp_path: Path) -> None:
    scratch = tmp_path / "tmp"  # the demo's temporary home goes here (TMPDIR)
    scratch.mkdir()
    demo = run_demo(scratch, "--jobs", "20", "--sites", "2")
    out = demo.stdout
    assert demo.returncode == 0, out + demo.stderr
    assert "All 20 jobs ended as planned: 16 Done, 3 Failed, 1 Killed." in out
    assert "2 site director(s), pilots on the local fabric" in out
    assert "Jobs by site and status" in out
    assert re.search(r"DIRAC\.Demo-1\.org(\s+\d+){5}", out)  # Done Failed Killed Total Pilots
    assert re.search(r"DIRAC\.Demo-2\.org(\s+\d+){5}", out)
    assert re.search(r"physics\s+70\.0%", out) and re.search(r"users\s+30\.0%", out)
    # the watchdog killed the job over its MaxRAM, and said why
    assert re.search(
        r"Failed\s+Watchdog: memory [\d.]+ MB > MaxRAM 100 MB", line_of("memory-hog", out)
    )
    # its owner killed the sleeping job while it ran on a pilot of one of the directors
    assert re.search(
        r"carol killed job \d+ \(analysis-forgotten\) while it ran on pilot "
        r"DIRAC\.Demo-[12]\.org\.(cpu|multicore)\.\d+",
        out,
    )
    assert re.search(r"Killed\s+Killed on request", line_of("analysis-forgotten", out))
    assert re.search(r"Failed\s+Application exited with code 1", line_of("calibration-broken", out))
    assert re.search(r"Failed\s+Application exited with code 2", line_of("analysis-broken", out))
    # the 2-core job ran on the only 2-core CE, at the first site
    assert re.search(
        r"Done\s+Execution Complete\s+DIRAC\.Demo-1\.org", line_of("reconstruction-2cores", out)
    )
    # data on the file SEs: the input file replicated by the transfer agent, read by a job;
    # the output file uploaded and registered by the writer's pilot
    assert re.search(r"Done\s+Execution Complete", line_of("data-reader", out))
    assert re.search(r"Done\s+Execution Complete", line_of("data-writer", out))
    assert re.search(
        r"/demo/user/bob/input/events\.txt\s+\d+\s+[0-9a-f]{8}\s+"
        r"DEMO-DISK-1 \(Good\), DEMO-DISK-2 \(Good\)",
        out,
    )
    assert re.search(r"/demo/user/bob/output/histogram\.txt\s+\d+\s+[0-9a-f]{8}\s+DEMO-DISK-2", out)
    assert re.search(
        r"1\s+/demo/user/bob/input/events\.txt\s+DEMO-DISK-1\s+DEMO-DISK-2\s+Done", out
    )
    assert "data:" not in out
    assert "warning" not in out and "Traceback" not in demo.stderr
    assert list(scratch.iterdir()) == []  # the temporary home is removed after a good run
