"""The payload keeper (agents/payload_keeper.py) run directly: a child subreaper between the
pilot and its payload (issue 11, defect 8)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import psutil

from dirac_like.agents import payload_keeper, spawner
from dirac_like.agents.outbox import JOB_FILE, ended_report
from dirac_like.testing import wait_for

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


def test_a_payload_outlives_the_thread_that_started_it(tmp_path: Path) -> None:
    """Regression (issue 15): a parent-death signal follows the parent *thread*. Keepers were
    started by the pilot's worker threads, so a keeper whose starting thread ended took it for
    the pilot's death and killed its payload (seen once in CI: "Application killed by SIGKILL"
    for a job that exits 3). Keepers are now forked by the exec helper, whatever thread asks."""
    ended: list[tuple[int, float]] = []
    done = threading.Event()

    def on_end(status: int, cpu: float) -> None:
        ended.append((status, cpu))
        done.set()

    def start() -> None:
        with open(tmp_path / "out", "wb") as out, open(os.devnull, "rb") as null:
            spawner.shared().spawn(
                ["sh", "-c", "touch started; sleep 1; exit 3"],
                tmp_path,
                dict(os.environ),
                (null.fileno(), out.fileno(), out.fileno()),
                on_end,
            )
        # The keeper armed its parent-death signal before it started the payload: this thread
        # ends while the payload runs (with keepers started from here, it was killed: exit 1).
        wait_for(lambda: (tmp_path / "started").exists(), "the payload to start", timeout=30)

    starter = threading.Thread(target=start)
    starter.start()
    starter.join()
    assert done.wait(30)
    [(status, _)] = ended
    assert os.waitstatus_to_exitcode(status) == 3
    assert (tmp_path / payload_keeper.ENDED_MARK).read_text() == "exit 3\n"


def test_the_payload_gets_fresh_signal_dispositions(tmp_path: Path) -> None:
    """Python ignores SIGPIPE, the exec helper SIGINT: a payload must not inherit that."""
    script = "grep -E '^Sig(Ign|Blk)' /proc/self/status"
    assert keep(tmp_path, "sh", "-c", f"{script} > status").returncode == 0
    masks = dict(line.split(":") for line in (tmp_path / "status").read_text().splitlines())
    assert int(masks["SigIgn"], 16) == 0
    assert int(masks["SigBlk"], 16) == 0


def test_a_dead_exec_helper_ends_its_payloads_and_is_reported(tmp_path: Path) -> None:
    helper = spawner.Spawner()
    ended: list[int] = []
    try:
        with open(tmp_path / "out", "wb") as out, open(os.devnull, "rb") as null:
            keeper = helper.spawn(
                ["sh", "-c", "echo $$ > payload.pid; exec sleep 60"],
                tmp_path,
                dict(os.environ),
                (null.fileno(), out.fileno(), out.fileno()),
                lambda status, cpu: ended.append(status),
            )
        payload = int(
            wait_for(
                lambda: (
                    (tmp_path / "payload.pid").read_text().strip()
                    if (tmp_path / "payload.pid").exists()
                    else ""
                ),
                "the payload",
                timeout=30,
            )
        )
        os.kill(helper.pid, signal.SIGKILL)
        assert wait_for(lambda: ended, "the keeper reported lost", timeout=30) == [
            spawner.LOST_STATUS
        ]
        wait_for(lambda: gone(payload), "the payload to die with its keeper", timeout=30)
        wait_for(lambda: gone(keeper), "the keeper to end (its parent died)", timeout=30)
        assert not helper.alive
    finally:
        helper.close()


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True
