"""Support for tests of dirac-like and of code built on it (shipped, like a test double)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

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
