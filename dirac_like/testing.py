"""Support for tests of dirac-like and of code built on it (shipped, like a test double)."""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from dirac_like.client import RetryPolicy
from dirac_like.processes import dirac_like_argv
from dirac_like.sandbox import safe_extract

if TYPE_CHECKING:
    from dirac_like.client import Client

T = TypeVar("T")

# A client's retries for a service on loopback: a request that gets no answer fails in seconds.
FAST_RETRIES = RetryPolicy(timeout=5.0, retries=2, backoff=0.05, max_backoff=0.2)


def wait_for(
    condition: Callable[[], T],
    what: str = "the condition",
    timeout: float = 30.0,
    interval: float = 0.02,
) -> T:
    """Poll ``condition`` until it returns something true and return that; AssertionError naming
    ``what`` after ``timeout`` seconds. Waiting on a condition with a deadline, never a sleep."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def same_home(environ: Mapping[str, str]) -> bool:
    """Whether a process with this environment was started from this test: it has this
    process's ``DIRAC_LIKE_HOME``, or none. Tests running side by side (pytest-xdist workers,
    other checkouts) each have their own home and may reuse pilot ids like ``pilot0``."""
    here = os.environ.get("DIRAC_LIKE_HOME")
    return environ.get("DIRAC_LIKE_HOME", here) == here


def run_command(
    argv: Sequence[str], cwd: Path | None = None, timeout: float = 60.0
) -> subprocess.CompletedProcess[str]:
    """``argv`` as a user runs it in ``cwd``: no stdin, its output captured as text."""
    return subprocess.run(
        list(argv),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def run_cli(
    endpoint: str, *args: str, cwd: Path, timeout: float = 60.0
) -> subprocess.CompletedProcess[str]:
    """``dirac-like ARGS --server ENDPOINT`` in ``cwd``, as a user runs it (a child process,
    started like every dirac-like child); its output captured as text."""
    return run_command([*dirac_like_argv(*args), "--server", endpoint], cwd, timeout)


def job_output_text(client: Client, job_id: int, name: str = "std.out") -> str:
    """The file ``name`` of a job's output sandbox, as the service holds it (the pilot removed
    the job's folder once the sandbox went up)."""
    sha256 = client.job_output(job_id).sha256
    data = client.download_sandbox(sha256, 64 * 1024 * 1024)
    with tempfile.TemporaryDirectory() as folder:
        safe_extract(data, Path(folder), 64 * 1024 * 1024)
        return (Path(folder) / name).read_text()
