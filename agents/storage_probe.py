"""Tests of a storage element: write a test file, read it back, compare checksums, delete it.

The monitoring agent talks to an SE only through :class:`StorageProbe` (four calls), so any
storage backend can be tested by giving it an adapter. :class:`FileStorage` is the one for a
``file`` SE: a folder on this host (the embedded default of the data-management design).
"""

from __future__ import annotations

import hashlib
import os
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from dirac_like.monitoring import CheckStatus, ProbeResult, TargetKind

TEST_FILE_BYTES = 64 * 1024


class StorageProbe(Protocol):
    """What the agent needs of an SE: each call raises OSError (or any Exception) on failure."""

    @property
    def name(self) -> str: ...

    def write(self, path: str, data: bytes) -> None: ...

    def read(self, path: str) -> bytes: ...

    def checksum(self, path: str) -> str: ...  # adler32, 8 hex digits, as the SE computes it

    def delete(self, path: str) -> None: ...


def adler32(data: bytes) -> str:
    return f"{zlib.adler32(data) & 0xFFFFFFFF:08x}"


@dataclass(frozen=True)
class FileStorage:
    """A ``file`` SE: paths inside ``root``; writes go to a temporary name, then a rename."""

    name: str
    root: Path

    def _path(self, path: str) -> Path:
        target = (self.root / path).resolve()
        if not target.is_relative_to(self.root.resolve()):
            raise OSError(f"{path!r} is outside SE {self.name}")
        return target

    def write(self, path: str, data: bytes) -> None:
        target = self._path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".part")
        partial.write_bytes(data)
        os.replace(partial, target)

    def read(self, path: str) -> bytes:
        return self._path(path).read_bytes()

    def checksum(self, path: str) -> str:
        return adler32(self.read(path))

    def delete(self, path: str) -> None:
        self._path(path).unlink()


def probe_storage(storage: StorageProbe, now: float, token: str) -> list[ProbeResult]:
    """Write, read back, checksum and delete one test file; a result per step. A step that
    fails makes it CRITICAL and the later steps are not tried (UNKNOWN: nothing to tell)."""
    data = hashlib.sha256(token.encode()).digest() * (TEST_FILE_BYTES // 32)
    path = f"dirac-like-monitoring/probe-{token}"
    steps = [
        ("se-write", lambda: storage.write(path, data), "wrote"),
        ("se-read", lambda: _same(storage.read(path), data), "read back"),
        ("se-checksum", lambda: _same(storage.checksum(path), adler32(data)), "adler32 matches"),
        ("se-delete", lambda: storage.delete(path), "deleted"),
    ]
    results: list[ProbeResult] = []
    failed = False
    for check, step, done in steps:
        if failed:
            status, message = CheckStatus.UNKNOWN, "not tried: an earlier step failed"
        else:
            status, message = _try(step, done, len(data))
            failed = status is CheckStatus.CRITICAL
        results.append(ProbeResult(storage.name, TargetKind.SE, check, status, message, now))
    return results


def _same(got: object, expected: object) -> None:
    if got != expected:
        raise ValueError("the SE returned something else than what was written")


def _try(step: Callable[[], object], done: str, size: int) -> tuple[CheckStatus, str]:
    try:
        step()
    except Exception as exc:  # any failure of the SE is the answer
        return CheckStatus.CRITICAL, f"{type(exc).__name__}: {exc}"[:500]
    return CheckStatus.OK, f"{done} ({size} bytes)"
