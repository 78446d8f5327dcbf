"""One daemon of a kind per home: an exclusive lock held for the daemon's lifetime.

Two central services on one home (or one store) would both match the same jobs and run them
twice; two directors of one site would both submit pilots for the same demand. A daemon takes
``HOME/locks/NAME.lock`` with ``flock`` when it starts and keeps the file open until it exits; the
kernel releases the lock when the process ends, however it ends (``kill -9`` included), so a stale
lock file never blocks a restart. The holder's PID is written into the file so that the second
daemon's refusal can name it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from dirac_like.errors import AlreadyRunning


class HomeLock:
    """An exclusive, process-lifetime lock on one file; :meth:`release` (or exit) frees it."""

    def __init__(self, path: Path, what: str) -> None:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.path = path
        self._file: IO[str] | None = _acquire(path, what)

    def release(self) -> None:
        if self._file is not None:
            self._file.close()  # closing the descriptor releases the flock
            self._file = None


def _acquire(path: Path, what: str) -> IO[str]:
    file = open(path, "a+")  # noqa: SIM115 (held open for the daemon's lifetime)
    try:
        fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        file.seek(0)
        holder = file.read().strip() or "unknown"
        file.close()
        raise AlreadyRunning(
            f"{what} already runs (PID {holder}, lock {path}); stop it first, or use another home"
        ) from None
    except BaseException:
        file.close()
        raise
    os.chmod(path, 0o600)
    file.seek(0)
    file.truncate()
    file.write(f"{os.getpid()}\n")
    file.flush()
    return file


def lock_path(home: Path, name: str) -> Path:
    """Where the lock of daemon ``name`` (e.g. ``central``, ``director-LCG.CERN.cern``) lives."""
    return home / "locks" / f"{name}.lock"


@contextlib.contextmanager
def holding(*locks: tuple[Path, str]) -> Iterator[list[HomeLock]]:
    """Hold every ``(path, what)`` lock for the ``with`` block, all or none."""
    held: list[HomeLock] = []
    try:
        for path, what in locks:
            held.append(HomeLock(path, what))
        yield held
    finally:
        for lock in reversed(held):
            lock.release()
