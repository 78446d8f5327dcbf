"""The payload keeper (agents/payload_keeper.py) run directly: a child subreaper between the
pilot and its payload (issue 11, defect 8)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psutil

from dirac_like.agents import payload_keeper
from dirac_like.agents.outbox import JOB_FILE, ended_report

KEEPER = [sys.executable, "-I", "-S", payload_keeper.__file__]


def keep(
    folder: Path, *payload: str, parent: int | None = None, lease: float = 0.0
) -> subprocess.CompletedProcess[str]:
    lease_file = folder / "lease"
    lease_file.touch()
    return subprocess.run(
        [*KEEPER, str(parent or os.getpid()), str(lease_file), str(lease), *payload],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_payloads_status_passes_through_and_its_end_is_noted(tmp_path: Path) -> None:
    assert keep(tmp_path, "sh", "-c", "exit 3").returncode == 3
    assert (tmp_path / payload_keeper.ENDED_MARK).read_text() == "exit 3\n"
    assert keep(tmp_path, "sh", "-c", "kill -TERM $$").returncode == -15
    assert (tmp_path / payload_keeper.ENDED_MARK).read_text() == "signal 15\n"
    assert keep(tmp_path, "/no/such/program").returncode == 127


def test_what_the_payload_leaves_running_is_killed_with_it(tmp_path: Path) -> None:
    done = keep(tmp_path, "sh", "-c", "(trap '' TERM; exec sleep 60) & echo $! > left.pid")
    assert done.returncode == 0
    left = int((tmp_path / "left.pid").read_text())
    assert not psutil.pid_exists(left) or psutil.Process(left).status() == psutil.STATUS_ZOMBIE


def test_a_keeper_whose_pilot_died_while_it_started_runs_nothing(tmp_path: Path) -> None:
    done = keep(tmp_path, "sh", "-c", "touch ran", parent=1)  # not its parent: "died"
    assert done.returncode == 1
    assert not (tmp_path / "ran").exists()


def test_the_lease_end_kills_the_payload_and_says_so(tmp_path: Path) -> None:
    lease_file = tmp_path / "lease"
    lease_file.touch()
    os.utime(lease_file, (1.0, 1.0))  # last renewed long ago
    done = subprocess.run(
        [*KEEPER, str(os.getpid()), str(lease_file), "1", "sleep", "60"],
        cwd=tmp_path,
        timeout=60,
        check=False,
    )
    assert done.returncode == payload_keeper.LEASE_EXIT
    assert (tmp_path / payload_keeper.LEASE_MARK).exists()


def test_a_successor_pilot_reports_an_end_the_keeper_noted(tmp_path: Path) -> None:
    (tmp_path / JOB_FILE).write_text(
        '{"job_id": 7, "attempt": 2, "pilot_id": "p1", "description": {"Executable": "x"}}'
    )
    assert ended_report(tmp_path) is None  # the payload has not ended
    (tmp_path / payload_keeper.ENDED_MARK).write_text("exit 0\n")
    report = ended_report(tmp_path)
    assert report is not None
    assert (report.job_id, report.attempt, report.pilot_id, report.status) == (7, 2, "p1", "Done")
    assert report.output_pending and not report.failed
