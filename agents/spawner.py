"""The pilot's end of the exec helper (agents/payload_keeper.py ``serve``): starts payloads
without a Python start-up, or even a Python fork, per job.

One helper per pilot process, started on first use (:func:`shared`; a pilot uses it at its own
start, so no job waits for it), by whichever thread: it lives until this process closes its end of
the channel (it exits, or dies), not until that thread ends. :meth:`Spawner.spawn` is thread-safe:
it sends the request with the payload's stdin, stdout and stderr, and returns the payload's PID
(its session and process group id: the helper starts it with ``posix_spawn``);
:meth:`Spawner.spawn_many` starts several payloads with one request and one reply (a pilot's turn
starts its jobs together: issue 15, one message instead of one per job). A reader thread hands each
payload's end (wait status, CPU seconds of the payload and of what of it the helper reaped) to the
callback given with it, and keeps the orphans the helper adopted for each payload
(:meth:`Spawner.adopted`: the wrapper samples them with the payload's tree). If the helper dies
(its two processes: the watchdog, whose PID is :attr:`Spawner.pid`, kills what the helper proper
had, and the other way round), every payload it had is reported ended (killed: SIGKILL) and the
next spawn starts a new helper; a spawn the helper died under raises :class:`HelperLost` (the pilot
hands that job back). The helper ignores the stop signals (it starts with them blocked, so one sent
before its Python is up does not kill it): the pilot decides, and its exit ends the helper."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .payload_keeper import MAX_BATCH

log = logging.getLogger(__name__)

KEEPER_SCRIPT = Path(__file__).with_name("payload_keeper.py")
MAX_MESSAGE = 1 << 20  # bytes of one request (argv and environment)
LOST_STATUS = signal.SIGKILL  # the wait status of a payload whose helper died under it
OnEnd = Callable[[int, float], None]  # (wait status, CPU seconds)
HELPER_DIED = "the exec helper died"
# Blocked from the helper's first instruction until it ignores them (a batch system's scancel
# signals every process of the job, the helper too, maybe before its Python is up).
STOP_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1})


class SpawnError(OSError):
    """The helper could not start the payload (no such program, the folder is gone, ...)."""


class HelperLost(SpawnError):
    """The exec helper died (or was gone) before it started the payload: the pilot's fault,
    not the job's."""


@dataclass(frozen=True)
class SpawnRequest:
    """One payload to start: ``argv`` in ``cwd`` with ``env`` and ``stdio`` (its stdin, stdout,
    stderr: descriptors, the caller's to close); ``on_end`` is called once, from another thread,
    when it has ended and nothing of it is left; killed when ``lease_file`` is older than
    ``lease`` seconds (0: no lease)."""

    argv: Sequence[str]
    cwd: Path
    env: Mapping[str, str]
    stdio: tuple[int, int, int]
    on_end: OnEnd
    lease_file: str = "-"
    lease: float = 0.0

    def message(self) -> dict[str, object]:
        return {
            "argv": list(self.argv),
            "cwd": str(self.cwd),
            "env": dict(self.env),
            "lease_file": self.lease_file,
            "lease": self.lease,
        }


@dataclass
class _Call:
    on_end: OnEnd
    done: threading.Event = field(default_factory=threading.Event)
    pid: int = 0
    error: str = ""


class Spawner:
    """One exec helper and its channel. Use :func:`shared` rather than building one."""

    def __init__(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self.pid = _start_helper(theirs.fileno())
        finally:
            theirs.close()
        self.owner = os.getpid()
        self._link = ours
        self._lock = threading.Lock()  # one request on the wire at a time
        self._calls: dict[int, _Call] = {}  # request id -> call, until its PID is known
        self._running: dict[int, OnEnd] = {}  # payload PID -> its callback
        self._adopted: dict[int, list[tuple[int, int]]] = {}  # payload PID -> (orphan, parent)
        self._next_id = 0
        self.alive = True
        threading.Thread(target=self._read, name="spawner", daemon=True).start()

    def spawn(
        self,
        argv: Sequence[str],
        cwd: Path,
        env: Mapping[str, str],
        stdio: tuple[int, int, int],
        on_end: OnEnd,
        lease_file: str = "-",
        lease: float = 0.0,
    ) -> int:
        """Start ``argv``; returns its PID (its session and group id). ``on_end`` is called
        once, from another thread, when the payload has ended and nothing of it is left."""
        request = SpawnRequest(argv, cwd, env, stdio, on_end, lease_file, lease)
        outcome = self.spawn_many([request])[0]
        if isinstance(outcome, SpawnError):
            raise outcome
        return outcome

    def spawn_many(self, requests: Sequence[SpawnRequest]) -> list[int | SpawnError]:
        """Start these payloads with one request to the helper per ``MAX_BATCH`` (and one
        reply); for each, its PID or why it did not start (:class:`HelperLost`: the helper
        died, or was gone, before it started it)."""
        calls: list[_Call | SpawnError] = []
        for first in range(0, len(requests), MAX_BATCH):
            calls += self._send_batch(requests[first : first + MAX_BATCH])
        outcomes: list[int | SpawnError] = []
        for call in calls:
            if isinstance(call, SpawnError):
                outcomes.append(call)
                continue
            call.done.wait()
            if call.error == HELPER_DIED:
                outcomes.append(HelperLost(call.error))
            elif call.error:
                outcomes.append(SpawnError(call.error))
            else:
                outcomes.append(call.pid)
        return outcomes

    def _send_batch(self, requests: Sequence[SpawnRequest]) -> list[_Call | SpawnError]:
        """These requests (and their descriptors) in as few packets as ``MAX_MESSAGE`` allows
        (a list; one request alone as it is); one too large for a packet is refused."""
        found: list[_Call | SpawnError] = []
        with self._lock:
            if not self.alive:
                return [HelperLost("the exec helper is gone") for _ in requests]
            packet: list[tuple[int, str, tuple[int, int, int]]] = []  # (id, JSON, stdio)
            size = 1
            for request in requests:
                message = request.message()
                self._next_id += 1
                message["id"] = self._next_id
                text = json.dumps(message)
                if len(text) > MAX_MESSAGE - 2:
                    found.append(SpawnError("the payload's command and environment are too large"))
                    continue
                if size + len(text) + 1 > MAX_MESSAGE:
                    self._send_packet(packet)
                    packet, size = [], 1
                call = _Call(request.on_end)
                self._calls[self._next_id] = call
                found.append(call)
                packet.append((self._next_id, text, request.stdio))
                size += len(text) + 1
            self._send_packet(packet)
        return found

    def _send_packet(self, packet: list[tuple[int, str, tuple[int, int, int]]]) -> None:
        """Send one packet (the lock held); if the helper is gone, its calls are answered
        so (each one waiting for its reply is told the helper died)."""
        if not packet:
            return
        text = packet[0][1] if len(packet) == 1 else "[" + ",".join(t for _, t, _ in packet) + "]"
        try:
            socket.send_fds(self._link, [text.encode()], [fd for _, _, fds in packet for fd in fds])
        except OSError as exc:
            log.warning("the exec helper is gone: %s", exc)
            for request_id, _, _ in packet:
                call = self._calls.pop(request_id)
                call.error = HELPER_DIED
                call.done.set()

    def close(self) -> None:
        """End the helper (it kills its payloads, if any) and wait for it."""
        with contextlib.suppress(OSError):  # the helper is gone already
            self._link.shutdown(socket.SHUT_RDWR)  # wakes the reader; close alone would not
        self._link.close()
        with contextlib.suppress(ChildProcessError):  # reaped already
            os.waitpid(self.pid, 0)

    def _read(self) -> None:
        while True:
            try:
                message = self._link.recv(MAX_MESSAGE)
            except OSError:
                message = b""
            if not message:
                self._lost()
                return
            replies = json.loads(message)  # one turn of the helper's loop: a list, or one
            for reply in replies if isinstance(replies, list) else [replies]:
                self._take(reply)

    def _take(self, reply: dict[str, Any]) -> None:
        if "ended" in reply:
            self._ended(int(reply["ended"]), int(reply["status"]), float(reply["cpu"]))
        elif "adopted" in reply:
            with self._lock:
                self._adopted.setdefault(int(reply["adopted"]), []).append(
                    (int(reply["pid"]), int(reply["parent"]))
                )
        else:
            self._answered(reply)

    def _answered(self, reply: dict[str, object]) -> None:
        with self._lock:
            call = self._calls.pop(int(str(reply["id"])))
            if "pid" in reply:
                call.pid = int(str(reply["pid"]))
                self._running[call.pid] = call.on_end
            call.error = str(reply.get("error", ""))
        call.done.set()

    def _ended(self, pid: int, status: int, cpu: float) -> None:
        with self._lock:
            on_end = self._running.pop(pid)
            self._adopted.pop(pid, None)
        on_end(status, cpu)

    def adopted(self, pid: int) -> list[tuple[int, int]]:
        """The orphans of payload ``pid`` the helper adopted (a process it started and
        abandoned, now the helper's child): (PID, the helper's PID, their parent while they
        live)."""
        with self._lock:
            return list(self._adopted.get(pid, ()))

    def _lost(self) -> None:
        """The helper is gone: nothing waits for a reply that will never come."""
        with self._lock:
            self.alive = False
            calls, self._calls = list(self._calls.values()), {}
            running, self._running = list(self._running.values()), {}
        if calls or running:
            log.error("the exec helper died: %d payload(s) lost", len(running))
        for call in calls:
            call.error = HELPER_DIED
            call.done.set()
        for on_end in running:
            on_end(LOST_STATUS, 0.0)


def _start_helper(channel: int) -> int:
    """Start ``payload_keeper.py serve CHANNEL`` in its own session (a signal to the pilot's
    group is the pilot's to handle), stdin from /dev/null, the stop signals blocked; its PID."""
    os.set_inheritable(channel, True)
    return os.posix_spawn(
        sys.executable,
        [sys.executable, "-I", "-S", str(KEEPER_SCRIPT), "serve", str(channel)],
        os.environ,
        file_actions=[(os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0)],
        setsid=True,
        setsigmask=STOP_SIGNALS,
    )


_shared: Spawner | None = None
_shared_lock = threading.Lock()


def shared() -> Spawner:
    """This process's exec helper, started on first use (and again if it died, or in a child
    process forked from this one)."""
    global _shared
    with _shared_lock:
        if _shared is None or not _shared.alive or _shared.owner != os.getpid():
            _shared = Spawner()
        return _shared
