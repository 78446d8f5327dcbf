"""The ``local`` fabric: each pilot a process on this host, in its own session.

A pilot's reference is the name of its folder under ``base_dir``, which holds its ``stdout`` and
``stderr``; the folder stays after the pilot ends, so its output can be read later (also by a new
LocalFabric on the same folder). The process itself is known only to the LocalFabric object that
started it: a pilot does not outlive its fabric (``close`` stops them all), and another object asked
about it answers ABORTED (see base.py).

The pilot's ``cores``, ``memory_mb`` and ``wall_seconds`` are not enforced here; the pilot is told
its limits on its command line and keeps to them itself.

Stopping a pilot: SIGTERM to its process group, then, once every process of the pilot is gone or
after ``grace`` seconds, SIGKILL to whatever is left. "Every process of the pilot" is its process
group plus its descendants (a job wrapper runs payloads in sessions of their own), as seen just
before each signal; a process that left the tree before that (a double-forked daemon) escapes, and
so does what a pilot that ended by itself left behind (the pilot cleans up its own payloads).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import psutil  # type: ignore[import-untyped, unused-ignore]  # no stubs installed

from .base import (
    OUTPUT_TAIL_BYTES,
    Fabric,
    FabricError,
    PilotRequest,
    PilotState,
    UnknownPilotRef,
)

log = logging.getLogger(__name__)

POLL_SECONDS = 0.02  # how often a stop checks whether the pilot's processes are gone
KILL_WAIT_SECONDS = 5.0  # how long SIGKILLed processes are given to disappear
_REF = re.compile(r"[A-Za-z0-9._-]+")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


@dataclass
class _LocalPilot:
    pilot_id: str
    popen: subprocess.Popen[bytes]
    cancelled: bool = False

    @property
    def pid(self) -> int:
        return self.popen.pid  # also its process group id (start_new_session)


class LocalFabric(Fabric):
    name = "local"

    def __init__(self, base_dir: Path, grace: float = 30.0) -> None:
        self.base_dir = Path(base_dir)
        self.grace = grace
        self._pilots: dict[str, _LocalPilot] = {}
        self._lock = threading.Lock()  # the director may ask from its scheduler's thread
        self._closed = False
        self.base_dir.mkdir(parents=True, exist_ok=True)

    # -- the interface -------------------------------------------------------------------------

    def submit(self, request: PilotRequest) -> str:
        if not request.command:
            raise FabricError(f"pilot {request.pilot_id}: empty command")
        with self._lock:
            if self._closed:
                raise FabricError(f"pilot {request.pilot_id}: the local fabric is closed")
        folder = self._new_folder(request.pilot_id)
        try:
            request.workdir.mkdir(parents=True, exist_ok=True)
            popen = _start(request, folder)
        except OSError as exc:
            raise FabricError(
                f"pilot {request.pilot_id}: cannot start {request.command[0]!r}: "
                f"{exc.strerror or exc}"
            ) from None
        pilot = _LocalPilot(request.pilot_id, popen)
        with self._lock:
            closed = self._closed
            if not closed:
                self._pilots[folder.name] = pilot
        if closed:
            self._stop([pilot])
            raise FabricError(f"pilot {request.pilot_id}: the local fabric is closed")
        log.info("pilot %s started as %s (pid %d)", request.pilot_id, folder.name, popen.pid)
        return folder.name

    def status(self, refs: list[str]) -> dict[str, PilotState]:
        with self._lock:
            pilots = {ref: self._pilots.get(ref) for ref in refs}
        return {ref: _state(pilot) for ref, pilot in pilots.items()}

    def cancel(self, ref: str) -> None:
        with self._lock:
            pilot = self._pilots.get(ref)
        if pilot is not None:
            self._stop([pilot])

    def output(self, ref: str, max_bytes: int = OUTPUT_TAIL_BYTES) -> str:
        folder = self.base_dir / ref
        if not _REF.fullmatch(ref) or ref in (".", "..") or not folder.is_dir():
            raise UnknownPilotRef(f"no local pilot {ref!r} under {self.base_dir}")
        stdout = _tail(folder / "stdout", max_bytes)
        stderr = _tail(folder / "stderr", max_bytes)
        if not stderr:
            return stdout
        separator = "" if not stdout or stdout.endswith("\n") else "\n"
        return f"{stdout}{separator}--- stderr ---\n{stderr}"

    def close(self) -> None:
        with self._lock:
            self._closed = True
            pilots = list(self._pilots.values())
        self._stop(pilots)
        for pilot in pilots:
            pilot.popen.poll()  # reap the ones that had ended unnoticed

    def detach(self) -> None:
        """Forget the pilots without stopping them: each runs on in its own session and closes
        its own record with the central service when it stops."""
        with self._lock:
            self._closed = True
            pilots, self._pilots = list(self._pilots.values()), {}
        for pilot in pilots:
            log.info("pilot %s (pid %d) left running", pilot.pilot_id, pilot.pid)

    # -- stopping ------------------------------------------------------------------------------

    def _stop(self, pilots: list[_LocalPilot]) -> None:
        """SIGTERM, wait up to ``grace`` for every process of the pilots to go, then SIGKILL."""
        running = [pilot for pilot in pilots if pilot.popen.poll() is None]
        if not running:
            return
        groups = {pilot.pid for pilot in running}
        tracked = _processes_of(groups, [])  # before the signal: payloads in other sessions
        for pilot in running:
            pilot.cancelled = True
            log.info("pilot %s: SIGTERM to process group %d", pilot.pilot_id, pilot.pid)
            _signal_group(pilot, signal.SIGTERM)
        if not _wait_tree_gone(groups, tracked, running, time.monotonic() + self.grace):
            self._kill(running, tracked + _processes_of(groups, tracked))

    def _kill(self, running: list[_LocalPilot], tracked: list[psutil.Process]) -> None:
        for pilot in running:
            if pilot.popen.poll() is None:
                log.warning(
                    "pilot %s: alive %.1f s after SIGTERM, SIGKILL to process group %d",
                    pilot.pilot_id,
                    self.grace,
                    pilot.pid,
                )
            _signal_group(pilot, signal.SIGKILL)
        leftovers = [process for process in tracked if _alive(process)]
        if leftovers:
            log.warning(
                "pilots %s: SIGKILL to processes %s left after SIGTERM",
                ", ".join(pilot.pilot_id for pilot in running),
                [process.pid for process in leftovers],
            )
        for process in leftovers:
            _kill(process)
        if not _wait_gone(tracked, running, time.monotonic() + KILL_WAIT_SECONDS):
            log.error("processes %s survived SIGKILL", [p.pid for p in tracked if _alive(p)])

    def _new_folder(self, pilot_id: str) -> Path:
        prefix = _UNSAFE.sub("_", pilot_id)[:64] + "-"
        try:
            return Path(tempfile.mkdtemp(prefix=prefix, dir=self.base_dir))
        except OSError as exc:
            raise FabricError(
                f"pilot {pilot_id}: cannot create its folder in {self.base_dir}: {exc.strerror}"
            ) from None


def _start(request: PilotRequest, folder: Path) -> subprocess.Popen[bytes]:
    with open(folder / "stdout", "wb") as stdout, open(folder / "stderr", "wb") as stderr:
        return subprocess.Popen(
            request.command,
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            cwd=request.workdir,
            env={**os.environ, **request.env},
            start_new_session=True,
        )


def _state(pilot: _LocalPilot | None) -> PilotState:
    if pilot is None:
        return PilotState.ABORTED
    code = pilot.popen.poll()
    if code is None:
        return PilotState.RUNNING
    if pilot.cancelled:
        return PilotState.ABORTED
    return PilotState.DONE if code == 0 else PilotState.FAILED


def _signal_group(pilot: _LocalPilot, signum: int) -> None:
    # Only while the leader is unreaped: its pid, the group id, cannot have been reused.
    if pilot.popen.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pilot.pid, signum)


def _processes_of(groups: set[int], known: Iterable[psutil.Process]) -> list[psutil.Process]:
    """Live members of the process ``groups``, with the descendants of those and of ``known``
    (this catches payloads that a pilot started in sessions of their own)."""
    found: dict[int, psutil.Process] = {}
    for process in psutil.process_iter():
        try:
            if os.getpgid(process.pid) in groups:
                found[process.pid] = process
        except OSError:
            continue
    for root in [*found.values(), *known]:
        try:
            for child in root.children(recursive=True):
                found.setdefault(child.pid, child)
        except psutil.Error:
            continue
    return [process for process in found.values() if _alive(process)]


def _alive(process: psutil.Process) -> bool:
    """Running and not a zombie (an orphan's zombie may wait long for its new parent to reap it)."""
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _kill(process: psutil.Process) -> None:
    with contextlib.suppress(psutil.Error):
        process.kill()  # psutil checks the pid still names the same process


def _wait_tree_gone(
    groups: set[int], tracked: list[psutil.Process], pilots: list[_LocalPilot], deadline: float
) -> bool:
    """Wait until ``tracked`` and whatever joined the ``groups`` since are gone (``tracked``
    grows with the latecomers); False at the deadline."""
    while _wait_gone(tracked, pilots, deadline):
        latecomers = _processes_of(groups, tracked)
        if not latecomers:
            return True
        tracked += latecomers
    return False


def _wait_gone(processes: list[psutil.Process], pilots: list[_LocalPilot], deadline: float) -> bool:
    """Wait until none of ``processes`` is alive (reaping the pilots); False at the deadline."""
    while True:
        for pilot in pilots:
            pilot.popen.poll()
        if not any(_alive(process) for process in processes):
            return True
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        time.sleep(min(POLL_SECONDS, left))


def _tail(path: Path, max_bytes: int) -> str:
    try:
        with open(path, "rb") as stream:
            size = stream.seek(0, os.SEEK_END)
            stream.seek(max(size - max_bytes, 0))
            return stream.read(max_bytes).decode("utf-8", errors="replace")
    except FileNotFoundError:
        return ""
