"""Durable files: an atomic write, and the folder fsync that makes a rename survive a crash.

After a crash, a file written with :func:`write_atomic` is either the old one or the new one,
whole: the bytes go to a temporary file in the same folder, are fsynced, renamed over the target,
and the folder is fsynced (:func:`fsync_folder`) so the rename itself is on disk.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def write_atomic(
    path: Path, data: bytes, mode: int | None = None, temporary_prefix: str = ""
) -> None:
    """Replace ``path`` with ``data`` atomically and durably. ``mode``: its permissions (None:
    those of a new temporary file, 0600); ``temporary_prefix``: how the temporary file's name
    starts (default ``.NAME.``), for a caller that cleans up what a crash left."""
    prefix = temporary_prefix or f".{path.name}."
    handle, temporary = tempfile.mkstemp(prefix=prefix, dir=path.parent)
    try:
        if mode is not None:
            os.fchmod(handle, mode)
        with os.fdopen(handle, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    fsync_folder(path.parent)


def fsync_folder(folder: Path) -> None:
    """Make the entries of ``folder`` (a rename, a new file) durable."""
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
