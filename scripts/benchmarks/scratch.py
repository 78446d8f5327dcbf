"""Scratch folders of a benchmark run, removed when the run ends.

``scratch_folder(prefix)`` makes a folder in the temp dir; every folder made is removed when the
run ends — done, failed, interrupted by Ctrl-C, or stopped by SIGTERM (a ``timeout``: turned into
SystemExit, so the benchmark's own ``finally`` blocks stop its servers first) — unless the run was
given ``--keep`` (``add_keep_option``), which names the folders kept on stderr instead. SIGKILL
leaves them behind: nothing can run then.
"""

from __future__ import annotations

import argparse
import atexit
import os
import shutil
import signal
import sys
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any


class Scratch:
    """The folders made by this run and whether to keep them."""

    def __init__(self) -> None:
        self.folders: list[Path] = []
        self.keep = False
        self.owner = 0  # the process that made them: a forked child never removes them

    def folder(self, prefix: str) -> Path:
        if not self.folders:
            self.arm()
        made = Path(tempfile.mkdtemp(prefix=prefix))
        self.folders.append(made)
        return made

    def arm(self) -> None:
        self.owner = os.getpid()
        atexit.register(self.clean)
        in_main_thread = threading.current_thread() is threading.main_thread()
        if in_main_thread and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
            signal.signal(signal.SIGTERM, exit_on_sigterm)

    def clean(self) -> None:
        if os.getpid() != self.owner:
            return
        for made in self.folders:
            if self.keep:
                print(f"kept {made}", file=sys.stderr)
            else:
                shutil.rmtree(made, ignore_errors=True)
        self.folders.clear()


def exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


SCRATCH = Scratch()


def scratch_folder(prefix: str) -> Path:
    """A new folder in the temp dir, removed when the run ends (unless ``--keep``)."""
    return SCRATCH.folder(prefix)


class KeepAction(argparse.Action):
    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        SCRATCH.keep = True
        setattr(namespace, self.dest, True)


def add_keep_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--keep",
        action=KeepAction,
        nargs=0,
        default=False,
        help="keep the run's scratch folders in the temp dir (named on stderr at the end)",
    )
