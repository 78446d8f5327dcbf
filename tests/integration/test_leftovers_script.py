"""scripts/leftovers.sh: what a run left running (a process carrying the run's mark in its
environment) is named, stopped by PID, and fails the check; what goes by itself does not."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "leftovers.sh"


@pytest.fixture
def mark(tmp_path: Path) -> str:
    return f"leftovers-test-{os.getpid()}-{tmp_path.name}"


@pytest.fixture
def started() -> Iterator[list[subprocess.Popen[bytes]]]:
    children: list[subprocess.Popen[bytes]] = []
    yield children
    for child in children:
        if child.poll() is None:
            child.kill()
        child.wait(10)


def start(mark: str, *argv: str) -> subprocess.Popen[bytes]:
    """``argv`` in a session of its own (as a daemon), carrying ``mark``."""
    return subprocess.Popen(
        list(argv),
        env={**os.environ, "DIRAC_LIKE_RUN_MARK": mark},
        start_new_session=True,
        stdin=subprocess.DEVNULL,
    )


def check(mark: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT)],
        env={**os.environ, "DIRAC_LIKE_RUN_MARK": mark, "LEFTOVERS_GRACE_S": "2"},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_left_daemon_is_named_stopped_and_fails_the_check(
    mark: str, started: list[subprocess.Popen[bytes]]
) -> None:
    started.append(start(mark, "sleep", "600"))
    other = start(f"{mark}-another-run", "sleep", "600")
    started.append(other)
    result = check(mark)
    assert result.returncode == 1
    assert f"{started[0].pid} sleep 600" in result.stderr
    assert started[0].wait(10) is not None  # stopped (it was its child: reaped here)
    assert other.poll() is None  # another run's process is left alone


def test_nothing_left_passes(mark: str, started: list[subprocess.Popen[bytes]]) -> None:
    started.append(start(mark, "sleep", "0.5"))  # on its way out: goes by itself within grace
    result = check(mark)
    assert (result.returncode, result.stderr) == (0, "")
