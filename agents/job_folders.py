"""Job folders of a pilot: removed once the job is over (issue 11, defect 10).

A job's folder (``<workdir>/job_<id>_<attempt>``) is removed as soon as its final report was
answered by the service (its output sandbox went up before that). The folder of a job that did
not end Done is kept for ``keep_failed_for`` seconds, to look at on the worker node, but the kept
folders together never take more than ``keep_failed_max_mb``: past that the oldest go first.
A sweep (:meth:`JobFolders.sweep`, at start and every ``SWEEP_EVERY`` seconds) applies both
rules, also to what a killed predecessor on the same workdir left behind.

The decision is :func:`folders_to_remove` (pure); :class:`JobFolders` is its file-system shell.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from .outbox import ENDED_MARK, JOB_FILE
from .wrapper import MB, directory_size

log = logging.getLogger(__name__)

SWEEP_EVERY = 60.0  # seconds between two sweeps of a pilot's workdir
PATTERN = "job_*_*"


@dataclass(frozen=True)
class KeptFolder:
    path: Path
    kept_since: float  # its modification time: when the job ended
    size_bytes: int


def folders_to_remove(
    folders: list[KeptFolder], now: float, keep_for: float, max_bytes: int
) -> list[Path]:
    """The folders older than ``keep_for`` seconds, then the oldest ones until the rest fit in
    ``max_bytes``."""
    expired = [folder for folder in folders if now - folder.kept_since > keep_for]
    kept = sorted(
        (folder for folder in folders if folder not in expired),
        key=lambda folder: folder.kept_since,
    )
    total = sum(folder.size_bytes for folder in kept)
    over = []
    for folder in kept:
        if total <= max_bytes:
            break
        over.append(folder)
        total -= folder.size_bytes
    return [folder.path for folder in expired + over]


class JobFolders:
    def __init__(self, workdir: Path, keep_failed_for: float, keep_failed_max_mb: int) -> None:
        self.workdir = workdir
        self.keep_failed_for = keep_failed_for
        self.max_bytes = keep_failed_max_mb * MB

    def finished(self, folder: Path, failed: bool) -> None:
        """The job of ``folder`` is over and reported: remove it, or keep it a while."""
        if not failed or self.keep_failed_for <= 0 or self.max_bytes <= 0:
            remove(folder)
            return
        try:
            for reported in (ENDED_MARK, JOB_FILE):  # not to be reported again by a successor
                (folder / reported).unlink(missing_ok=True)
            os.utime(folder)  # kept from now on
        except OSError:
            return
        log.info("%s kept (the job failed) for %g s at most", folder.name, self.keep_failed_for)

    def sweep(self, now: float, in_use: Collection[Path]) -> list[Path]:
        """Apply the keep rules to every job folder not ``in_use``; returns those removed."""
        folders = []
        for path in self.workdir.glob(PATTERN):
            if path in in_use or not path.is_dir():
                continue
            try:
                folders.append(KeptFolder(path, path.stat().st_mtime, directory_size(path)))
            except OSError:
                continue
        removed = folders_to_remove(folders, now, self.keep_failed_for, self.max_bytes)
        for path in removed:
            remove(path)
        if removed:
            log.info("removed %d old job folder(s) from %s", len(removed), self.workdir)
        return removed


def remove(folder: Path) -> None:
    """Remove a job's folder: its files one by one when it holds files only (the common case:
    ``job.json``, std.out, std.err, the end mark; a third less CPU than ``rmtree``'s descriptor
    walk, issue 15), else ``rmtree``."""
    try:
        names = os.listdir(folder)
        for name in names:
            os.unlink(os.path.join(folder, name))  # a folder in it: IsADirectoryError
        os.rmdir(folder)
    except FileNotFoundError:
        if folder.exists():  # something went meanwhile; rmtree sees what is left
            shutil.rmtree(folder, ignore_errors=True)
    except OSError:
        shutil.rmtree(folder, ignore_errors=True)
