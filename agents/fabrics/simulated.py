"""The ``simulated`` fabric: many pilots inside one process, speaking the real protocol.

Each simulated pilot asks the central service for jobs, heartbeats while the payload "runs"
(nothing runs: the pilot only waits for its end time), then reports Done or Failed and asks
again, until it has been idle too long or has run its maximum number of jobs. Like the real
pilot it does so in one request per turn (``pilot_turn``, issue 15): the end reports go with the
request for the cores they free, and the jobs come back Running (no Running report); with
``turns=False``, or a service that answers ``unknown_op``, it asks (``request_job``), reports
Running and reports the end apart, as pilots did before.
Like the real pilot it packs jobs into its cores: an N-core pilot asks while it has free cores
(saying its free and total cores) and runs several jobs at once, each on the cores its match
granted; told to hold its cores (draining toward a bigger job), it asks for nothing until that
many are free or the hold's time is up. It
is the load generator for benchmarks and the stand-in for a site full of worker nodes in tests.

One background thread with one zmq Poller drives every pilot. A pilot is a small state machine
(:class:`_Pilot`: replies and timers in, the next request out, no sockets, no clock reads); the
thread owns the sockets, a heap of timers and the requests in flight. Pilots share a few DEALER
sockets: the service answers on the socket a request came from, and the reply's request id names
the pilot it is for. A request without a reply is sent again with the same id (the service answers
a retried id with its first reply) as the client's :class:`RetryPolicy` says, and a pilot whose
request it gives up ends Failed.

What a pilot is, comes from its :class:`PilotRequest` (its command is not run):
- ``env["DIRAC_LIKE_SITE"]`` (required), ``env["DIRAC_LIKE_CE"]``, ``cores``, ``memory_mb``;
- ``env["DIRAC_LIKE_IDLE_TIMEOUT"]``: seconds without a job before it stops (default 2, scaled);
- ``env["DIRAC_LIKE_MAX_JOBS"]``: jobs it takes before it stops (default 0: no limit);
- ``env["DIRAC_LIKE_CRASH_RATE"]``: this pilot's crash probability per job (default: the fabric's).

A payload lasts ``sleep=<seconds>`` from the job's Arguments (else 1 s), times ``time_scale``; a
job whose JobName contains "fail" ends Failed, others Done. Commands in a reply are obeyed at once:
``KillJob`` (the job is reported Killed), ``StopPilot`` (its jobs are handed back, reported
Rescheduled, and the pilot ends Done). Pushed frames are dropped: the sockets are shared, so a
push names no pilot, and the service repeats its commands in the replies. Injected failures come
from ``random.Random(seed)``: each pilot draws its own generator from it at submit, so with the
same seed and the same submissions the same pilots crash on the same jobs. A crashing pilot
stops talking in the middle of a job (its jobs are left to the service's stalled-job logic)
and ends Failed; ``site_outage`` makes every submit fail.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import enum
import heapq
import itertools
import logging
import os
import random
import re
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

import zmq

from dirac_like.client import RetryPolicy, connect_servers
from dirac_like.description import description_from_stored
from dirac_like.errors import InvalidArgument, ProtocolError, UnknownOperation
from dirac_like.identity import Identity, resolve_identity, secure_client_socket
from dirac_like.protocol import (
    MAX_JOBS_PER_REQUEST,
    PILOT_REVISION,
    HeartbeatArgs,
    JobUsage,
    KillJob,
    MatchedJob,
    Op,
    PilotResources,
    PilotTurnArgs,
    PilotTurnReply,
    Reply,
    Request,
    RequestJobArgs,
    RequestJobReply,
    StopPilot,
    UpdateStatusArgs,
    decode_push,
    decode_reply,
    encode_request,
    parse_reply,
    to_wire,
)
from dirac_like.states import JobStatus

from .base import (
    OUTPUT_TAIL_BYTES,
    Fabric,
    FabricError,
    PilotRequest,
    PilotState,
    UnknownPilotRef,
)

log = logging.getLogger(__name__)

SOCKETS = 4  # DEALER sockets shared by all the pilots of a fabric
# 5 s without a reply: sent again at once, up to 5 sends in all; then its pilot ends Failed.
RETRIES = RetryPolicy(timeout=5.0, retries=4, backoff=0.0, max_backoff=0.0)
HEARTBEAT_SECONDS = 3.0  # between heartbeats of a running job (scaled)
IDLE_RETRY_SECONDS = 0.5  # between job requests of an idle pilot (scaled)
DEFAULT_PAYLOAD_SECONDS = 1.0
DEFAULT_IDLE_TIMEOUT = "2"
LOG_LINES = 500  # lines of a pilot's log kept for output()
MAX_POLL_MS = 1000
_SLEEP = re.compile(r"(?:^|\s)sleep=(\d+(?:\.\d*)?|\.\d+)(?:\s|$)")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")

Step = tuple[str, Any]  # the next request a pilot sends: (op, its arguments dataclass)


class _JobPhase(enum.Enum):
    STARTING = "starting"  # reporting Running
    RUNNING = "running"  # the payload "runs"; heartbeats
    REPORTING = "reporting"  # reporting the final status (its cores free once that is done)


@dataclass(frozen=True)
class _Spec:
    """A pilot's resources and limits, read from its PilotRequest."""

    pilot_id: str
    resources: PilotResources  # cores: all of them
    idle_timeout: float  # scaled
    max_jobs: int  # 0: no limit
    crash_rate: float


@dataclass
class _Job:
    job_id: int
    attempt: int
    name: str
    duration: float  # scaled
    crashes: bool
    cores: int = 1
    unreadable: str = ""  # why its description could not be read (it is reported Failed)
    ends_at: float = 0.0
    crash_at: float | None = None
    next_heartbeat: float = 0.0
    phase: _JobPhase = _JobPhase.STARTING


class _Pilot:
    """One simulated pilot: replies and timer expiries in, the next requests out.

    Like agents/pilot.py it packs jobs into its free cores: it asks for a job whenever cores are
    free (at once after a match or a job's end, every ``IDLE_RETRY_SECONDS`` after a "no job"),
    and obeys a hold (:class:`~dirac_like.protocol.CoreHold`): no request until that many cores
    are free or the hold's time is up."""

    def __init__(
        self,
        ref: str,
        index: int,
        spec: _Spec,
        rng: random.Random,
        time_scale: float,
        now: float,
        turns: bool = True,
    ) -> None:
        self.ref, self.index, self.spec, self.rng = ref, index, spec, rng
        self.time_scale = time_scale
        self.turns = turns  # pilot_turn (False: request_job, Running and end reports apart)
        self.state = PilotState.SUBMITTED
        self.over = False
        self.jobs: dict[int, _Job] = {}
        self.jobs_taken = 0
        self.asking = False  # a request_job or a pilot_turn asking for jobs in flight
        self.next_ask = 0.0  # no request before this (after a "no job")
        self.hold_cores, self.hold_until = 0, 0.0
        self.idle_until = 0.0
        self.stop_reason = ""  # set by a StopPilot command: ends after handing back its jobs
        self.wake_at: float | None = None  # when on_timer wants to be called
        self.armed: float | None = None  # the wake time the fabric set a timer for
        self.started = now
        self.lines: collections.deque[str] = collections.deque(maxlen=LOG_LINES)

    @property
    def ended(self) -> bool:
        return self.over

    @property
    def free_cores(self) -> int:
        return self.spec.resources.cores - sum(job.cores for job in self.jobs.values())

    def note(self, now: float, text: str) -> None:
        self.lines.append(f"[{now - self.started:9.3f}] {text}")

    def start(self, now: float) -> list[Step]:
        self.state = PilotState.RUNNING
        resources = self.spec.resources
        self.note(
            now,
            f"pilot {self.spec.pilot_id} started at site {resources.site}, "
            f"CE {resources.ce or '-'}, {resources.cores} cores, "
            f"{resources.memory_mb} MB",
        )
        self.idle_until = now + self.spec.idle_timeout
        return self._settle(self._maybe_ask(now), now)

    def end(self, now: float, state: PilotState, why: str) -> None:
        self.state, self.over, self.wake_at, self.jobs = state, True, None, {}
        self.note(now, f"pilot {state}: {why}")

    # -- events ----------------------------------------------------------------------------------

    def on_timer(self, now: float) -> list[Step]:
        steps: list[Step] = []
        ended: list[UpdateStatusArgs] = []
        for job in list(self.jobs.values()):
            if job.phase is not _JobPhase.RUNNING:
                continue
            if job.crash_at is not None and now >= job.crash_at:
                self.end(
                    now, PilotState.FAILED, f"crashed (simulated) while running job {job.job_id}"
                )
                return []
            if now >= job.ends_at:
                ended.append(self._report_end(job, now))
            elif now >= job.next_heartbeat:
                job.next_heartbeat = now + HEARTBEAT_SECONDS * self.time_scale
                wall_time = now - job.ends_at + job.duration
                steps.append(
                    (
                        Op.HEARTBEAT,
                        HeartbeatArgs(
                            job.job_id,
                            job.attempt,
                            self.spec.pilot_id,
                            {"wall_time": round(wall_time, 3)},
                        ),
                    )
                )
        if not self.jobs and not self.asking and now >= self.idle_until:
            self.end(now, PilotState.DONE, f"no job for {self.spec.idle_timeout:g} s")
            return []
        return self._settle(steps + self._maybe_ask(now, ended), now)

    def on_reply(self, op: str, args: Any, reply: Reply, now: float) -> list[Step]:
        if op in (Op.REQUEST_JOB, Op.PILOT_TURN):
            self.asking = False
        if not reply.ok:
            assert reply.error is not None
            if op == Op.PILOT_TURN and reply.error.code == UnknownOperation.code:
                return self._settle(self._no_turns(args, now), now)
            return self._settle(
                self._on_error(op, args, f"{reply.error.code}: {reply.error.message}", now), now
            )
        try:
            result = parse_reply(op, reply.result)
        except ProtocolError as exc:
            return self._settle(self._on_error(op, args, exc.message, now), now)
        stop = next((c for c in result.commands if isinstance(c, StopPilot)), None)
        steps: list[Step] = []
        if stop is not None and not self.stop_reason:
            self.stop_reason = stop.reason or "stop command"
            self.note(now, f"stop command received: {self.stop_reason}")
            steps = [
                self._hand_back(job, now)
                for job in self.jobs.values()
                if job.phase is not _JobPhase.REPORTING
            ]
        if op == Op.REQUEST_JOB:
            steps += self._on_match(result, now)
        elif op == Op.PILOT_TURN:
            steps += self._on_turn(args, result, now)
        else:
            steps += self._on_job_reply(args.job_id, result, now)
        if self.stop_reason and not self.jobs and not self.over:
            self._stop(now)
        return self._settle(steps, now)

    # -- steps -----------------------------------------------------------------------------------

    def _maybe_ask(self, now: float, ended: list[UpdateStatusArgs] | None = None) -> list[Step]:
        """A request for jobs if cores are free and nothing holds the pilot back: a pilot_turn
        carrying the ``ended`` jobs' reports (their cores count as free), else a request_job;
        the reports that cannot go with a request are sent apart."""
        ended = ended or []
        apart: list[Step] = [(Op.UPDATE_STATUS, report) for report in ended]
        free = self.free_cores
        if self.turns:
            free += sum(self.jobs[report.job_id].cores for report in ended)
        if (
            self.asking
            or self.stop_reason
            or self.over
            or free < 1
            or now < self.next_ask
            or (self.spec.max_jobs and self.jobs_taken >= self.spec.max_jobs)
        ):
            return apart
        if free < self.hold_cores and now < self.hold_until:
            return apart
        self.asking, self.hold_cores = True, 0
        resources = dataclasses.replace(
            self.spec.resources, cores=free, total_cores=self.spec.resources.cores
        )
        if not self.turns:
            return [*apart, (Op.REQUEST_JOB, RequestJobArgs(self.spec.pilot_id, resources))]
        count = min(free, MAX_JOBS_PER_REQUEST)
        if self.spec.max_jobs:
            count = min(count, self.spec.max_jobs - self.jobs_taken)
        turn = PilotTurnArgs(self.spec.pilot_id, ended, resources, count, revision=PILOT_REVISION)
        return [(Op.PILOT_TURN, turn)]

    def _settle(self, steps: list[Step], now: float) -> list[Step]:
        """Work out when the pilot next wants its timer, and pass its steps on."""
        if self.over:
            self.wake_at = None
            return steps
        times = [
            min(job.ends_at, job.next_heartbeat, job.crash_at or job.ends_at)
            for job in self.jobs.values()
            if job.phase is _JobPhase.RUNNING
        ]
        if not self.asking and not self.stop_reason:
            if not self.jobs:
                times.append(self.idle_until)
            if self.free_cores >= 1:
                times.append(max(self.next_ask, self.hold_until if self.hold_cores else 0.0))
        self.wake_at = min(times) if times else None
        return steps

    def _on_turn(self, args: PilotTurnArgs, result: PilotTurnReply, now: float) -> list[Step]:
        """A turn answered: the jobs it reported are over (their cores free), the jobs it got
        are Running already: they start at once."""
        reported = False
        for report in args.reports:
            if self.jobs.pop(report.job_id, None) is not None:
                reported = True
                self.note(now, f"job {report.job_id} reported")
        if reported and not self.jobs and not result.jobs:
            self.idle_until = now + self.spec.idle_timeout  # idle from its last job's end
        if not result.jobs:
            return self._on_match(RequestJobReply(None, result.reason, [], result.hold), now)
        steps: list[Step] = []
        for matched in result.jobs:
            steps += self._take(matched, now, running=True)
        return steps + self._maybe_ask(now)

    def _no_turns(self, args: PilotTurnArgs, now: float) -> list[Step]:
        """The service has no pilot_turn: the turn's reports go apart, and the pilot asks with
        request_job from now on."""
        self.note(now, "the service has no pilot_turn: reports and requests apart")
        self.turns = False
        return [(Op.UPDATE_STATUS, report) for report in args.reports] + self._maybe_ask(now)

    def _on_match(self, result: RequestJobReply, now: float) -> list[Step]:
        matched = result.job
        if matched is None:
            if self.stop_reason:
                return []
            if result.hold is not None:
                self.hold_cores = result.hold.cores
                self.hold_until = now + result.hold.seconds
                self.note(
                    now,
                    f"holding for {result.hold.cores} free cores "
                    f"({result.hold.group}), up to {result.hold.seconds:g} s",
                )
            else:
                self.next_ask = now + max(IDLE_RETRY_SECONDS * self.time_scale, 0.01)
            if not self.jobs and now >= self.idle_until:
                self.end(now, PilotState.DONE, f"no job for {self.spec.idle_timeout:g} s")
            return []
        return self._take(matched, now) + self._maybe_ask(now)

    def _take(self, matched: MatchedJob, now: float, running: bool = False) -> list[Step]:
        """A job matched: reported Running (``running``: it is already, started at once)."""
        job = _new_job(matched, self.rng, self.spec.crash_rate, self.time_scale)
        self.jobs[job.job_id] = job
        self.jobs_taken += 1
        self.next_ask = now
        if self.stop_reason:
            return [self._hand_back(job, now)]
        if job.unreadable:
            job.phase = _JobPhase.REPORTING
            why = f"Pilot could not prepare the job: {job.unreadable}"[:250]
            return [(Op.UPDATE_STATUS, self._status_args(job, JobStatus.FAILED, why, now))]
        self.note(
            now,
            f"job {job.job_id} ({job.name}) attempt {job.attempt} matched, "
            f"{job.cores} cores, {job.duration:g} s",
        )
        if running:
            self._begin(job, now)
            return []
        return [(Op.UPDATE_STATUS, self._status_args(job, JobStatus.RUNNING, "Application", now))]

    def _on_job_reply(self, job_id: int, result: Any, now: float) -> list[Step]:
        job = self.jobs.get(job_id)
        if job is None:
            return []
        if job.phase is _JobPhase.REPORTING:
            return self._after_job(job, now)
        if self.stop_reason:
            return []
        if any(isinstance(c, KillJob) and c.job_id == job.job_id for c in result.commands):
            self.note(now, f"job {job.job_id}: kill command received")
            job.phase = _JobPhase.REPORTING
            return [
                (
                    Op.UPDATE_STATUS,
                    self._status_args(job, JobStatus.KILLED, "Killed by the service", now),
                )
            ]
        if job.phase is _JobPhase.STARTING:
            self._begin(job, now)
        return []

    def _begin(self, job: _Job, now: float) -> None:
        job.phase = _JobPhase.RUNNING
        job.ends_at = now + job.duration
        job.next_heartbeat = now + HEARTBEAT_SECONDS * self.time_scale
        if job.crashes:
            job.crash_at = now + job.duration * self.rng.random()

    def _report_end(self, job: _Job, now: float) -> UpdateStatusArgs:
        job.phase = _JobPhase.REPORTING
        failed = "fail" in job.name.lower()
        # what a real pilot measures, simulated: the payload's wall time, 90 % of it on a CPU
        usage = JobUsage(
            cpu_seconds=round(job.duration * 0.9, 3),
            wall_seconds=round(job.duration, 3),
            exit_code=1 if failed else 0,
        )
        if failed:
            return self._status_args(
                job, JobStatus.FAILED, "Application exited with code 1", now, usage
            )
        return self._status_args(job, JobStatus.DONE, "Execution Complete", now, usage)

    def _hand_back(self, job: _Job, now: float) -> Step:
        """Stopped by the service: give the job back to the task queue, as a real pilot does."""
        job.phase = _JobPhase.REPORTING
        return Op.UPDATE_STATUS, self._status_args(
            job, JobStatus.RESCHEDULED, f"Pilot stopped ({self.stop_reason}): job handed back", now
        )

    def _stop(self, now: float) -> None:
        self.end(now, PilotState.DONE, f"stop command from the service: {self.stop_reason}")

    def _after_job(self, job: _Job, now: float) -> list[Step]:
        """A job's final report was answered: its cores are free."""
        self.note(now, f"job {job.job_id} reported")
        del self.jobs[job.job_id]
        if self.jobs or self.stop_reason:
            return self._maybe_ask(now)
        if self.spec.max_jobs and self.jobs_taken >= self.spec.max_jobs:
            self.end(now, PilotState.DONE, f"ran its {self.jobs_taken} jobs")
            return []
        self.idle_until = now + self.spec.idle_timeout
        return self._maybe_ask(now)

    def _on_error(self, op: str, args: Any, message: str, now: float) -> list[Step]:
        if op in (Op.REQUEST_JOB, Op.PILOT_TURN):
            self.end(now, PilotState.FAILED, f"{op} refused: {message}")
            return []
        job = self.jobs.get(args.job_id)
        self.note(now, f"job {args.job_id}: {op} refused ({message}), job abandoned")
        if job is None:
            return []
        steps = self._after_job(job, now)
        if self.stop_reason and not self.jobs and not self.over:
            self._stop(now)
        return steps

    def _status_args(
        self, job: _Job, status: JobStatus, minor: str, now: float, usage: JobUsage | None = None
    ) -> UpdateStatusArgs:
        self.note(now, f"job {job.job_id}: {status} ({minor})")
        return UpdateStatusArgs(
            job.job_id, job.attempt, self.spec.pilot_id, status.value, minor, usage=usage
        )


def _new_job(matched: MatchedJob, rng: random.Random, crash_rate: float, time_scale: float) -> _Job:
    crashes = rng.random() < crash_rate
    try:
        description = description_from_stored(matched.description)
    except InvalidArgument as exc:
        return _Job(
            matched.job_id,
            matched.attempt,
            "",
            0.0,
            crashes,
            max(1, matched.cores),
            unreadable=exc.message,
        )
    return _Job(
        job_id=matched.job_id,
        attempt=matched.attempt,
        name=description.job_name,
        duration=payload_seconds(description.arguments) * time_scale,
        crashes=crashes,
        cores=max(1, matched.cores),
    )


def payload_seconds(arguments: str) -> float:
    """How long a simulated payload lasts: ``sleep=<seconds>`` in its Arguments, else 1 s."""
    found = _SLEEP.search(arguments)
    return float(found.group(1)) if found else DEFAULT_PAYLOAD_SECONDS


def _is_push(frame: bytes) -> bool:
    try:
        return decode_push(frame) is not None
    except ProtocolError:
        return True


@dataclass
class _InFlight:
    ref: str
    op: str
    args: Any  # the request's arguments (a reply to update_status names its job by them)
    frame: bytes
    socket: int
    deadline: float  # of the reply to the last send; or, waiting to send again, of the pause
    tries: int = 1
    pausing: bool = False  # given up on the last send: sends again at ``deadline``


class SimulatedFabric(Fabric):
    name = "simulated"

    def __init__(
        self,
        server: str,
        seed: int = 0,
        crash_rate: float = 0.0,
        site_outage: bool = False,
        time_scale: float = 1.0,
        max_pilots: int = 10_000,
        identity: Identity | None = None,
        turns: bool = True,
    ) -> None:
        if not 0.0 <= crash_rate <= 1.0 or time_scale <= 0 or max_pilots < 1:
            raise FabricError(
                "simulated fabric: need 0 <= crash_rate <= 1, time_scale > 0, max_pilots >= 1"
            )
        self.server, self.crash_rate, self.site_outage = server, crash_rate, site_outage
        self.time_scale, self.max_pilots = time_scale, max_pilots
        self.turns = turns  # one pilot_turn per turn (False: as pilots before it, apart)
        # What its pilots present (a pilot token of their site, from the director); None: the
        # one resolve_identity finds, else plaintext.
        self.identity = identity or resolve_identity()
        self._rng = random.Random(seed)
        self._retry_rng = random.Random(seed)  # the retry pauses' jitter
        self._pilots: dict[str, _Pilot] = {}
        self._alive = 0
        self._in_flight: dict[str, _InFlight] = {}
        self._timers: list[tuple[float, int, str, str]] = []  # (when, seq, "pilot"|"request", key)
        self._new: list[_Pilot] = []
        self._seq = itertools.count()  # orders timers due at the same time
        self._submitted = itertools.count()  # numbers the pilots (their refs, their sockets)
        self._lock = threading.Lock()
        self._closed = self._stopping = False
        self._context = zmq.Context()
        self._sockets = [self._connect() for _ in range(SOCKETS)]
        self._wake_read, self._wake_write = os.pipe()
        os.set_blocking(self._wake_read, False)
        os.set_blocking(self._wake_write, False)
        self._thread = threading.Thread(target=self._run, name="simulated-fabric", daemon=True)
        self._thread.start()

    def _connect(self) -> zmq.Socket:
        socket = self._context.socket(zmq.DEALER)
        socket.setsockopt(zmq.LINGER, 0)
        socket.setsockopt(zmq.SNDHWM, 0)
        socket.setsockopt(zmq.RCVHWM, 0)
        if self.identity is not None:
            secure_client_socket(socket, self.identity)
        connect_servers(socket, self.server)
        return socket

    # -- the interface -------------------------------------------------------------------------

    def submit(self, request: PilotRequest) -> str:
        if self.site_outage:
            raise FabricError(f"pilot {request.pilot_id}: site outage (simulated)")
        spec = self._spec(request)
        with self._lock:
            if self._closed:
                raise FabricError(f"pilot {request.pilot_id}: the simulated fabric is closed")
            if self._alive >= self.max_pilots:
                raise FabricError(
                    f"pilot {request.pilot_id}: the simulated fabric already runs "
                    f"{self.max_pilots} pilots"
                )
            index = next(self._submitted)
            ref = f"{_UNSAFE.sub('_', request.pilot_id)[:64]}-{index}"
            rng = random.Random(self._rng.getrandbits(64))
            pilot = _Pilot(ref, index, spec, rng, self.time_scale, time.monotonic(), self.turns)
            self._pilots[ref] = pilot
            self._new.append(pilot)
            self._alive += 1
        self._wake()
        log.info("pilot %s submitted as %s", request.pilot_id, ref)
        return ref

    def status(self, refs: list[str]) -> dict[str, PilotState]:
        with self._lock:
            found = {ref: self._pilots.get(ref) for ref in refs}
            return {
                ref: pilot.state if pilot else PilotState.ABORTED for ref, pilot in found.items()
            }

    def cancel(self, ref: str) -> None:
        with self._lock:
            pilot = self._pilots.get(ref)
            if pilot is not None and not pilot.ended:
                self._end(pilot, time.monotonic(), PilotState.ABORTED, "cancelled")

    def output(self, ref: str, max_bytes: int = OUTPUT_TAIL_BYTES) -> str:
        with self._lock:
            pilot = self._pilots.get(ref)
            if pilot is None:
                raise UnknownPilotRef(f"no simulated pilot {ref!r}")
            text = "\n".join(pilot.lines) + "\n"
        data = text.encode()
        return data[-max_bytes:].decode("utf-8", errors="replace")

    def close(self) -> None:
        with self._lock:
            if self._stopping:
                return
            self._closed = True
            now = time.monotonic()
            for pilot in self._pilots.values():
                if not pilot.ended:
                    self._end(pilot, now, PilotState.ABORTED, "fabric closed")
            self._stopping = True
        self._wake()
        self._thread.join()
        for socket in self._sockets:
            socket.close(linger=0)
        self._context.term()
        os.close(self._wake_read)
        os.close(self._wake_write)

    # -- submit helpers ------------------------------------------------------------------------

    def _spec(self, request: PilotRequest) -> _Spec:
        env = request.env
        site = env.get("DIRAC_LIKE_SITE", "")
        if not site:
            raise FabricError(f"pilot {request.pilot_id}: no DIRAC_LIKE_SITE in its environment")
        try:
            idle = float(env.get("DIRAC_LIKE_IDLE_TIMEOUT", DEFAULT_IDLE_TIMEOUT))
            max_jobs = int(env.get("DIRAC_LIKE_MAX_JOBS", "0"))
            crash_rate = float(env.get("DIRAC_LIKE_CRASH_RATE", self.crash_rate))
        except ValueError as exc:
            raise FabricError(f"pilot {request.pilot_id}: bad environment: {exc}") from None
        if idle < 0 or max_jobs < 0 or not 0 <= crash_rate <= 1 or request.cores < 1:
            raise FabricError(
                f"pilot {request.pilot_id}: idle timeout, max jobs, cores or "
                "crash rate out of range"
            )
        resources = PilotResources(
            site=site,
            ce=env.get("DIRAC_LIKE_CE", ""),
            cores=request.cores,
            memory_mb=request.memory_mb,
        )
        return _Spec(request.pilot_id, resources, idle * self.time_scale, max_jobs, crash_rate)

    def _wake(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self._wake_write, b"x")

    # -- the loop (its own thread; state changes under the lock) -------------------------------

    def _run(self) -> None:
        poller = zmq.Poller()
        poller.register(self._wake_read, zmq.POLLIN)
        for socket in self._sockets:
            poller.register(socket, zmq.POLLIN)
        try:
            while not self._stopping:
                events = dict(poller.poll(self._poll_timeout_ms()))
                with self._lock:
                    self.loop(events, time.monotonic())
        except Exception:
            log.exception("simulated fabric: the loop failed, its pilots are lost")
            with self._lock:
                self._closed = True
                for pilot in self._pilots.values():
                    if not pilot.ended:
                        self._end(pilot, time.monotonic(), PilotState.FAILED, "fabric loop failed")

    def loop(self, events: dict[Any, int], now: float) -> None:
        """One iteration: start new pilots, take replies, act on due timers."""
        if self._wake_read in events:
            with contextlib.suppress(BlockingIOError):
                os.read(self._wake_read, 4096)
        self.process_new(now)
        for index, socket in enumerate(self._sockets):
            if socket in events:
                self.process_replies(index, now)
        self.expire_timers(now)

    def process_new(self, now: float) -> None:
        new, self._new = self._new, []
        for pilot in new:
            if not pilot.ended:
                self._follow(pilot, pilot.start(now), now)

    def process_replies(self, index: int, now: float) -> None:
        socket = self._sockets[index]
        while True:
            try:
                frame = socket.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                reply = decode_reply(frame)
            except ProtocolError as exc:
                if not _is_push(frame):
                    log.warning("simulated fabric: unreadable reply: %s", exc)
                continue
            flight = self._in_flight.pop(reply.id, None)
            pilot = self._pilots.get(flight.ref) if flight else None
            if flight is None or pilot is None or pilot.ended:
                continue  # a late duplicate, or its pilot was cancelled
            self._follow(pilot, pilot.on_reply(flight.op, flight.args, reply, now), now)

    def expire_timers(self, now: float) -> None:
        while self._timers and self._timers[0][0] <= now:
            _, _, kind, key = heapq.heappop(self._timers)
            if kind == "request":
                self._resend(key, now)
                continue
            pilot = self._pilots.get(key)
            if pilot and not pilot.ended and pilot.wake_at is not None and pilot.wake_at <= now:
                pilot.armed = None
                self._follow(pilot, pilot.on_timer(now), now)

    # -- loop helpers --------------------------------------------------------------------------

    def _follow(self, pilot: _Pilot, steps: list[Step], now: float) -> None:
        if pilot.ended:
            self._alive -= 1
            log.info("pilot %s (%s) ended %s", pilot.spec.pilot_id, pilot.ref, pilot.state)
            return
        for step in steps:
            self._send(pilot, step, now)
        if pilot.wake_at is not None and pilot.wake_at != pilot.armed:
            pilot.armed = pilot.wake_at
            self._arm(pilot.wake_at, "pilot", pilot.ref)

    def _send(self, pilot: _Pilot, step: Step, now: float) -> None:
        op, args = step
        request_id = uuid.uuid4().hex
        frame = encode_request(Request(id=request_id, op=op, args=to_wire(args)))
        index = pilot.index % SOCKETS
        flight = _InFlight(pilot.ref, op, args, frame, index, now + RETRIES.timeout)
        self._in_flight[request_id] = flight
        _send_or_drop(self._sockets[index], frame)
        self._arm(flight.deadline, "request", request_id)

    def _resend(self, request_id: str, now: float) -> None:
        flight = self._in_flight.get(request_id)
        if flight is None or flight.deadline > now:
            return
        pilot = self._pilots.get(flight.ref)
        pause = None if flight.pausing else RETRIES.next_pause(flight.tries, self._retry_rng)
        if pilot is None or pilot.ended or (pause is None and not flight.pausing):
            del self._in_flight[request_id]
            if pilot is not None and not pilot.ended:
                self._end(
                    pilot,
                    now,
                    PilotState.FAILED,
                    f"no reply to {flight.op} after {flight.tries} tries",
                )
            return
        if pause:  # wait before sending it again
            flight.pausing, flight.deadline = True, now + pause
        else:
            log.info("pilot %s: no reply to %s, sending it again", pilot.spec.pilot_id, flight.op)
            flight.pausing, flight.tries = False, flight.tries + 1
            flight.deadline = now + RETRIES.timeout
            _send_or_drop(self._sockets[flight.socket], flight.frame)
        self._arm(flight.deadline, "request", request_id)

    def _end(self, pilot: _Pilot, now: float, state: PilotState, why: str) -> None:
        pilot.end(now, state, why)
        self._alive -= 1
        log.info("pilot %s (%s) ended %s: %s", pilot.spec.pilot_id, pilot.ref, state, why)

    def _arm(self, when: float, kind: str, key: str) -> None:
        heapq.heappush(self._timers, (when, next(self._seq), kind, key))

    def _poll_timeout_ms(self) -> int:
        with self._lock:
            if self._new:
                return 0
            if not self._timers:
                return MAX_POLL_MS
            left = self._timers[0][0] - time.monotonic()
        return max(0, min(MAX_POLL_MS, int(left * 1000) + 1))


def _send_or_drop(socket: zmq.Socket, frame: bytes) -> None:
    """Send without waiting; with several servers and none connected (a failover under way)
    the frame is dropped: the request's timer sends it again, as for a lost reply."""
    try:
        socket.send(frame, zmq.NOBLOCK)
    except zmq.Again:
        log.info("no central service connected: request dropped, to be sent again")
