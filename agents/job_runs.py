"""The pilot's jobs run from its loop, without a thread per job (issue 15).

A job goes through these stages (:class:`Stage`), each step taken by the pilot's loop
(agents/pilot.py) when an event arrives on its queue:

- **waiting**: matched, its Running posted; the payload starts once the service took it;
- **fetching**: a job with an input sandbox or input data fetches them in a :class:`Workers`
  thread (blocking work), which then posts :class:`Fetched`;
- **running**: the payload started from the loop (:meth:`PayloadRunner.start`: the exec helper
  starts the payload); the helper's reader thread posts :class:`Ended` when it has ended.
  The loop samples each running payload every ``sample_interval`` (a timer over the running
  jobs, :func:`due_for_sample`: a job shorter than that is never sampled) and hands the sample
  to the watchdog;
- **ending**: what may block goes to a worker, which posts the job's final result: killing a
  payload (the watchdog's verdict, a kill command, the pilot stopping: SIGTERM, ``kill_grace``,
  SIGKILL; the loop sends the first SIGTERM itself, :meth:`PayloadRunner.kill_now`, before
  the worker runs), killing what a payload left running, uploading the output data or a
  non-empty output sandbox.

The common case — a payload that needs no inputs, ends by itself, leaves nothing running and
nothing to upload — never leaves the loop: no thread is started, woken or joined for it.

:class:`Workers` is a small pool of daemon threads (at most one per core: a job has at most one
blocking step at a time, so a kill never waits behind another job's download), each with a
:class:`~dirac_like.client.Client` of its own (ZeroMQ sockets are not thread safe), kept for the
pilot's life instead of one per job.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from dirac_like.client import Client
from dirac_like.description import JobDescription
from dirac_like.states import JobStatus

from .job_data import input_lfns
from .wrapper import PayloadResult

log = logging.getLogger(__name__)

Task = Callable[[Client], None]


class Stage(enum.Enum):
    WAITING = "waiting"  # for the service to take its Running
    FETCHING = "fetching"  # its inputs, in a worker
    RUNNING = "running"  # the payload runs; the loop samples it
    ENDING = "ending"  # a worker kills, cleans up or uploads; it posts the result


@dataclass(frozen=True)
class Fetched:
    """A worker fetched the job's inputs; ``failure``: the job's result if that failed."""

    job_id: int
    failure: PayloadResult | None = None


@dataclass(frozen=True)
class Ended:
    """The job's payload has ended (posted by the exec helper's reader thread)."""

    job_id: int


def needs_inputs(description: JobDescription) -> bool:
    """Whether the job has something to fetch before its payload starts: an input sandbox
    (downloaded, or files checked in its folder) or input data (grid files)."""
    return bool(description.input_sandbox) or bool(input_lfns(description))


def end_needs_worker(result: PayloadResult, description: JobDescription, has_output: bool) -> bool:
    """After a payload that ended by itself, leaving nothing running: whether what is left
    blocks (a worker does it) — the output data of a job Done, or an output sandbox with
    something in it (``has_output``). A payload that never started has nothing to upload."""
    if result.exit_code is None:
        return False
    if result.status is JobStatus.DONE and description.output_data:
        return True
    return has_output


def due_for_sample(jobs: Iterable[tuple[int, Stage, float]], now: float) -> list[int]:
    """The jobs (id, stage, time of their next sample) whose payload is due a sample now."""
    return [job_id for job_id, stage, due in jobs if stage is Stage.RUNNING and due <= now]


class Workers:
    """Daemon threads for a job's blocking steps, started as needed up to ``size`` and kept;
    each task gets the thread's own client. (Daemon threads: a pilot that exits does not wait
    for a download it has given up on, as before with a thread per job.)"""

    def __init__(self, make_client: Callable[[], Client], size: int) -> None:
        self._make_client = make_client
        self._size = max(1, size)
        self._tasks: queue.SimpleQueue[Task | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._idle = 0

    def submit(self, task: Task) -> None:
        """Run ``task`` in a worker (a new one if none is idle and there are fewer than
        ``size``; else the next one free)."""
        with self._lock:
            if self._idle:
                self._idle -= 1
            elif len(self._threads) < self._size:
                thread = threading.Thread(
                    target=self._work, name=f"job-worker-{len(self._threads)}", daemon=True
                )
                self._threads.append(thread)
                thread.start()
        self._tasks.put(task)

    def close(self, timeout: float) -> None:
        """Let each worker finish its task and stop (each closes its client); waits up to
        ``timeout`` seconds in all."""
        with self._lock:
            threads = list(self._threads)
        for _ in threads:
            self._tasks.put(None)
        deadline = time.monotonic() + timeout
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def _work(self) -> None:
        client = self._make_client()
        try:
            while True:
                task = self._tasks.get()
                if task is None:
                    return
                try:
                    task(client)
                except Exception:  # the task posts the job's result itself; this is a bug
                    log.exception("a job worker's task failed")
                with self._lock:
                    self._idle += 1
        finally:
            with contextlib.suppress(Exception):
                client.close()
