"""``scripts/chaos.py`` end to end, the short version (issue 11): 10 kills (of the central service
and of real pilots) while 100 jobs are submitted and run, then the invariants.

The run happens once for the module; each invariant is its own test (the two that issue 11's
defects 8 and 9 broke were strict xfails until those were fixed)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import psutil
import pytest

REPO = Path(__file__).resolve().parents[2]
DEADLINE = 420.0  # the run takes about 50 s on 2 cores; minutes beside other xdist workers
# Seeded; every kind of kill at least once; more long payloads and aimed kills than the default,
# and 3 cores per pilot (a rescheduled job finds a free slot at once), so that the defects below
# show in a run this short (3 service-and-pilot and 3 pilot-long-payload kills).
COMMAND = [
    "--kills",
    "10",
    "--jobs",
    "100",
    "--pilots",
    "4",
    "--cores",
    "3",
    "--seed",
    "1",
    "--long-fraction",
    "0.2",
    "--weights",
    "2,3,1,1,3",
    "--drain-timeout",
    "90",
    "--json",
]

pytestmark = [pytest.mark.slow, pytest.mark.timeout(540)]  # minutes of real processes


def processes_mentioning(text: str) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["cmdline"]):
        if any(text in word for word in process.info["cmdline"] or []):
            found.append(process)
    return found


@pytest.fixture(scope="module")
def chaos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The short chaos run's exit status, counts and leftover processes."""
    folder = tmp_path_factory.mktemp("chaos") / "run"
    env = {**os.environ}
    env.pop("DIRAC_LIKE_IDENTITY", None)  # the run makes its own service and identity
    run = subprocess.Popen(
        [sys.executable, str(REPO / "scripts" / "chaos.py"), *COMMAND, "--folder", str(folder)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        stdout, stderr = run.communicate(timeout=DEADLINE)
    finally:
        if run.poll() is None:  # it stops what it started on SIGTERM
            os.kill(run.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                run.communicate(timeout=60)
            if run.poll() is None:
                run.kill()
                run.communicate()
    leftovers = processes_mentioning(str(folder))
    described = [" ".join(process.cmdline()) for process in leftovers if process.is_running()]
    for process in leftovers:  # not to disturb other tests; test_leaves_no_process fails
        with contextlib.suppress(psutil.Error):
            process.kill()
    lines = stdout.strip().splitlines()
    assert lines, f"no output; exit {run.returncode}; stderr: {stderr[-3000:]}"
    return {
        "code": run.returncode,
        "counts": json.loads(lines[-1]),
        "stderr": stderr,
        "leftovers": described,
    }


def test_the_run_kills_submits_and_reports(chaos: dict[str, Any]) -> None:
    counts = chaos["counts"]
    assert sum(counts["kills"].values()) == 10
    assert counts["kills"]["service"] + counts["kills"]["service-and-pilot"] >= 1
    assert counts["acknowledged"] == 100
    assert counts["jobs_in_service"] >= 100
    assert counts["runs"] >= 100
    assert counts["ran_more_than_once"] >= 1  # the pilot kills hit running jobs
    assert counts["bad_log_lines"] == 0
    assert chaos["code"] == (1 if counts["broken"] else 0), chaos["stderr"][-3000:]


def test_the_run_leaves_no_process(chaos: dict[str, Any]) -> None:
    assert chaos["leftovers"] == []
    assert "Traceback" not in chaos["stderr"]


def test_no_acknowledged_job_is_lost(chaos: dict[str, Any]) -> None:
    assert chaos["counts"]["lost"] == 0, chaos["counts"]


def test_every_job_ends_final(chaos: dict[str, Any]) -> None:
    assert chaos["counts"]["not_final"] == 0, chaos["counts"]


def test_no_job_runs_twice_at_once(chaos: dict[str, Any]) -> None:
    """Issue 11 defect 8: no payload process outlives its kill -9'd pilot."""
    assert chaos["counts"]["overlapping"] == 0, chaos["counts"]


def test_no_job_runs_again_after_its_pilot_had_it_done(chaos: dict[str, Any]) -> None:
    """Issue 11 defect 9: a Done report survives its pilot (the outbox)."""
    assert chaos["counts"]["ran_again_after_done"] == 0, chaos["counts"]


def test_every_invariant_holds(chaos: dict[str, Any]) -> None:
    assert chaos["code"] == 0 and chaos["counts"]["broken"] == [], chaos["counts"]
