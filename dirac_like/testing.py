"""Support for tests of dirac-like and of code built on it (shipped, like a test double)."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from dirac_like.processes import dirac_like_argv

T = TypeVar("T")


def wait_for(
    condition: Callable[[], T], what: str = "the condition", timeout: float = 30.0,
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


def run_cli(endpoint: str, *args: str, cwd: Path, timeout: float = 60.0
            ) -> subprocess.CompletedProcess[str]:
    """``dirac-like ARGS --server ENDPOINT`` in ``cwd``, as a user runs it (a child process,
    started like every dirac-like child); its output captured as text."""
    return subprocess.run([*dirac_like_argv(*args), "--server", endpoint], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)
