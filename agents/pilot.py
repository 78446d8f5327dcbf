"""The pilot: discovers its worker node, pulls jobs that fit it, runs them, reports.

Decisions (when to ask for a job, when to stop) live in :class:`PilotPolicy`: pure, the clock
passed in. :class:`Pilot` is the I/O shell. Its main thread owns the one :class:`Client` (ZeroMQ
sockets are not thread safe) and runs every job from its loop, **without a thread per job**
(issue 15; the stages in agents/job_runs.py): it starts each payload through a
:class:`PayloadRunner` (the exec helper starts the payload and returns), the helper's reader
thread puts the payload's end on the loop's event queue (and wakes the loop through its pipe),
and the loop samples the running payloads for the watchdog every ``sample_interval`` (a job
shorter than that is never sampled). Only blocking steps go to a small pool of worker threads
(:class:`~dirac_like.agents.job_runs.Workers`, a client each): fetching a job's inputs, killing a
payload (SIGTERM, ``kill_grace``, SIGKILL) or what it left running, uploading output data or a
non-empty output sandbox; each posts its result as an event. A :class:`KillJob` command (pushed,
or in a heartbeat/status reply) is applied at once (the loop sends the first SIGTERM to the
payload's group and its known processes, a worker does the rest); the exec helper is started
with the pilot, so the first job does not wait for it;
:class:`StopPilot` stops the pilot as SIGTERM does. A job runs as its stored description says,
read with :func:`description_from_stored` (checked again: a description it cannot read fails
the job).

One iteration of the loop (:meth:`Pilot.step`): take the answers to posted reports (a job whose
Running was taken starts) → handle events (payload ends, inputs fetched, workers' results; the
final reports kept and posted) → sample the payloads due → heartbeat the jobs that are due →
request jobs while cores are free and the policy allows → decide whether to stop → wait
briefly for pushes, events or the next timer. SIGTERM: no new job; the running ones are killed
(SIGTERM, then SIGKILL after ``kill_grace``) and handed back to the task queue (reported
Rescheduled, "Pilot stopped (SIGTERM): job handed back"; the service counts it against the
job's reschedule limit); exit 0.
A payload that dies of SIGTERM/SIGKILL together with its pilot (a batch system signals every
process of its job) is handed back too, never reported Failed.

Reliability (issue 11):

- **Reports survive the pilot.** Every final report goes through the durable outbox in the
  workdir (agents/outbox.py): the reports of one loop turn written together (one file, one
  fsync), then posted without waiting for the reply (issue 15: pipelined); each leaves the
  outbox once the service answered it, and is sent again with the same request id when no
  answer came in time, every ``OUTBOX_RETRY`` seconds while the service is away, and by a pilot
  restarted on the same workdir. Between the payload's end and that turn, the exec helper's
  ``payload_ended`` mark in the job's folder keeps the end (a successor reports from it). An
  output the service could not take waits in the job's folder with its report.
- **One request per turn** (``pilot_turn``): the final reports of the loop turn go with the
  request for jobs, and the service records each job it matches Running in the same commit
  (its lease is then the payload's, not ``match_lease``): the payloads start when the reply
  comes. A turn not answered is sent again (same id) as the next one; the reports of a turn
  with no request (no free core, a back-off) are posted as below.
- **Running is pipelined too** (a service without ``pilot_turn``). The Running reports of one
  match are posted together and the
  loop goes on; each payload starts once the service took its Running (never before: the
  service gives an unstarted match back to the task queue after ``match_lease``, shorter than
  a payload's lease), and a job whose Running is refused is dropped unstarted. To a service
  without ``update_statuses`` everything goes one by one, each reply waited for.
- **The lease.** Each match carries ``lease`` (the service's ``stalled_timeout``). The pilot
  touches ``<workdir>/lease`` on each acknowledged heartbeat; a payload whose pilot has not had
  one acknowledged for ``lease`` seconds is killed by the exec helper
  (agents/payload_keeper.py), even while the pilot is frozen, before the service may
  reschedule the job (it waits ``stalled_to_reschedule`` more); the pilot then hands the job back.
- **Job folders** are removed (by a folder thread, off the loop) once the job's final report was
  answered; those of jobs not Done are kept ``keep_failed_for`` seconds within
  ``keep_failed_max_mb`` (agents/job_folders.py).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import os
import platform
import queue
import re
import secrets
import signal
import socket
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import psutil  # type: ignore[import-untyped, unused-ignore]  # no stubs installed

from dirac_like.client import Client, RetryPolicy
from dirac_like.description import JobDescription, description_from_stored, payload_environment
from dirac_like.errors import (
    EXIT_OK,
    EXIT_UNREACHABLE,
    DiracLikeError,
    InvalidArgument,
    ServiceUnavailable,
    StorageError,
    UnknownOperation,
)
from dirac_like.identity import Identity
from dirac_like.protocol import (
    MAX_JOBS_PER_REQUEST,
    CoreHold,
    JobUsage,
    KillJob,
    MatchedJob,
    PilotCommand,
    PilotResources,
    StopPilot,
)
from dirac_like.states import JobStatus

from .job_data import OutputOwner, fetch_input_data, upload_output_data
from .job_folders import SWEEP_EVERY, JobFolders
from .job_runs import Ended, Fetched, Stage, Workers, due_for_sample, end_needs_worker, needs_inputs
from .job_sandboxes import (
    OutputSandbox,
    SandboxLimits,
    fetch_input,
    settled_here,
    upload_output,
    upload_packed,
)
from .outbox import JobRecords, Outbox, Report, ended_report
from .report_sender import ReportSender
from .watchdog import Limits, Sample, Verdict
from .wrapper import (
    HELPER_LOST,
    MB,
    PayloadResult,
    PayloadRunner,
    PayloadSpec,
    start_exec_helper,
    start_payloads,
    tail_lines,
)

log = logging.getLogger(__name__)

PILOT_RETRIES = RetryPolicy(timeout=3.0, retries=3, backoff=0.2, max_backoff=2.0)
POLL_SLICE = 0.2  # seconds: the longest the loop waits (pushes and worker events wake it)
# The tail of a payload's stdout sent with each heartbeat (what `job peek` shows), as DIRAC's
# watchdog sends it: the last lines, bounded in characters too.
HEARTBEAT_TAIL_LINES, HEARTBEAT_TAIL_CHARS = 40, 4096
STOPPED_BY_SIGNAL = "Pilot stopped ({})"
HANDED_BACK = JobStatus.RESCHEDULED  # the status a pilot reports for a job it gives back
HANDBACK_WAIT = 1.0  # seconds a payload killed by a signal waits to learn if the pilot is too
BATCH_KILL_CODES = frozenset({-signal.SIGTERM, -signal.SIGKILL, -signal.SIGINT})
OUTBOX_RETRY = 2.0  # seconds between two tries to send the reports left in the outbox
LEASE_FILE = "lease"  # in the workdir: touched on each acknowledged heartbeat
LEASE_LOST = "Pilot lost the service (no heartbeat acknowledged within the lease): job handed back"


def hands_back(result: PayloadResult, pilot_stopping: bool) -> bool:
    """Whether a pilot that is being stopped gives this job back to the task queue instead of
    reporting it ended: the pilot killed it on its way out, or (a batch system signals every
    process of its job at once, payloads included) it died of a stop signal meanwhile."""
    if not pilot_stopping:
        return False
    if result.kill_reason == "request":
        return result.minor_status.startswith(STOPPED_BY_SIGNAL.split("{")[0])
    return not result.kill_reason and result.exit_code in BATCH_KILL_CODES


# --------------------------------------------------------------------------------------------
# The worker node


@dataclass(frozen=True)
class WorkerNode:
    """What this host offers, as found by :func:`discover` (flags may override each field)."""

    cores: int
    memory_mb: int
    disk_mb: int
    platform: str


def platform_string() -> str:
    """``Linux_x86_64_glibc-2.36``: system, machine and C library (when one is known)."""
    system, machine = platform.system() or "Unknown", platform.machine() or "unknown"
    libc, version = platform.libc_ver()
    return f"{system}_{machine}_{libc}-{version}" if libc and version else f"{system}_{machine}"


def discover(
    workdir: Path, cores: int = 0, memory_mb: int = 0, disk_mb: int = 0, platform_name: str = ""
) -> WorkerNode:
    """The worker node as psutil sees it; a non-zero argument overrides what is found."""
    workdir.mkdir(parents=True, exist_ok=True)
    return WorkerNode(
        cores=cores or psutil.cpu_count() or 1,
        memory_mb=memory_mb or int(psutil.virtual_memory().total // MB),
        disk_mb=disk_mb or int(psutil.disk_usage(str(workdir)).free // MB),
        platform=platform_name or platform_string(),
    )


def default_pilot_id() -> str:
    """``host-pid-random``, restricted to the characters the service accepts in a name."""
    host = re.sub(r"[^A-Za-z0-9_.@:+-]", "_", socket.gethostname())[:40] or "host"
    return f"{host}-{os.getpid()}-{secrets.token_hex(3)}"


# --------------------------------------------------------------------------------------------
# Configuration and decisions


@dataclass(frozen=True)
class PilotConfig:
    server: str
    site: str
    ce: str = ""
    cores: int = 1
    memory_mb: int = 0
    platform: str = ""
    time_left: float = 0.0  # seconds from the start; 0: no deadline
    max_cpu_time: int = 0  # CPU seconds per core a job may use here (the CE's limit); 0: none
    max_jobs: int = 0  # 0: no limit
    idle_timeout: float = 600.0  # seconds with nothing running and nothing matched; 0: none
    tags: tuple[str, ...] = ()
    required_tags: tuple[str, ...] = ()
    workdir: Path = Path(".")
    pilot_id: str = field(default_factory=default_pilot_id)
    heartbeat_interval: float = 30.0
    sample_interval: float = 2.0  # the pilot samples at most every heartbeat_interval
    kill_grace: float = 5.0  # SIGTERM → SIGKILL of a payload
    drain_margin: float = 60.0  # seconds kept at the end of time_left to kill and report
    request_interval: float = 10.0  # longest pause between requests that found nothing
    first_request_interval: float = 0.5  # the pause grows from this, doubling
    sandbox_limits: SandboxLimits = field(default_factory=SandboxLimits)
    keep_failed_for: float = 86400.0  # seconds the folder of a job not Done is kept
    keep_failed_max_mb: int = 1024  # all kept folders together, the oldest removed first
    identity: Identity | None = None  # None: the one resolve_identity finds (none: plaintext)
    insecure: bool = False  # plaintext, no identity (a service run --insecure)

    def __post_init__(self) -> None:
        if self.cores < 1:
            raise InvalidArgument(f"cores must be at least 1, got {self.cores}")
        for name in (
            "time_left",
            "idle_timeout",
            "kill_grace",
            "drain_margin",
            "memory_mb",
            "max_cpu_time",
            "keep_failed_for",
            "keep_failed_max_mb",
        ):
            if getattr(self, name) < 0:
                raise InvalidArgument(f"{name} must not be negative")
        for name in (
            "heartbeat_interval",
            "sample_interval",
            "request_interval",
            "first_request_interval",
        ):
            if getattr(self, name) <= 0:
                raise InvalidArgument(f"{name} must be positive")
        if self.max_jobs < 0:
            raise InvalidArgument("max_jobs must not be negative")


@dataclass(frozen=True)
class PilotPolicy:
    """When to ask for a job and when to stop. Times are on the caller's clock; ``deadline``
    is absolute (start + time_left), 0 for none."""

    cores: int
    deadline: float = 0.0
    max_jobs: int = 0
    idle_timeout: float = 0.0
    drain_margin: float = 0.0
    max_cpu_time: int = 0  # the CE's CPU limit per core; 0: none

    @classmethod
    def for_config(cls, config: PilotConfig, started: float) -> PilotPolicy:
        deadline = started + config.time_left if config.time_left else 0.0
        return cls(
            config.cores,
            deadline,
            config.max_jobs,
            config.idle_timeout,
            config.drain_margin,
            config.max_cpu_time,
        )

    def payload_deadline(self) -> float:
        """When running payloads must be stopped (0: never), leaving the margin to report."""
        return self.deadline - self.drain_margin if self.deadline else 0.0

    def cpu_time_left(self, now: float) -> int:
        """Seconds a job may still take (what the matcher checks CPUTime against): the wall time
        left and the CE's CPU limit, whichever is shorter; 0: no limit."""
        if not self.deadline:
            return self.max_cpu_time
        wall_left = max(0, int(self.payload_deadline() - now))
        return min(wall_left, self.max_cpu_time) if self.max_cpu_time else wall_left

    def time_fits(self, now: float) -> bool:
        return not self.deadline or self.payload_deadline() - now >= 1

    def free_cores(self, running_cores: list[int]) -> int:
        return max(0, self.cores - sum(running_cores))

    def max_jobs_reached(self, jobs_taken: int) -> bool:
        return bool(self.max_jobs) and jobs_taken >= self.max_jobs

    def idle_expired(self, now: float, idle_since: float | None) -> bool:
        return (
            bool(self.idle_timeout)
            and idle_since is not None
            and now - idle_since >= self.idle_timeout
        )

    def should_request(
        self,
        now: float,
        free_cores: int,
        jobs_taken: int,
        idle_since: float | None,
        draining: bool = False,
    ) -> bool:
        """Ask the service for a job now?"""
        return (
            free_cores >= 1
            and not draining
            and not self.max_jobs_reached(jobs_taken)
            and self.time_fits(now)
            and not self.idle_expired(now, idle_since)
        )

    def stop_reason(
        self,
        now: float,
        running: int,
        jobs_taken: int,
        idle_since: float | None,
        draining: bool = False,
    ) -> str:
        """Why the pilot should exit now ('' to go on); never while a job runs."""
        if running:
            return ""
        if draining:
            return "drained"
        if self.max_jobs_reached(jobs_taken):
            return f"max jobs ({self.max_jobs}) done"
        if not self.time_fits(now):
            return "time left too short for another job"
        if self.idle_expired(now, idle_since):
            return f"idle for {self.idle_timeout:g} s"
        return ""


# --------------------------------------------------------------------------------------------
# The shell


NO_OUTPUT = OutputSandbox("", ())


@dataclass
class RunningJob:
    job_id: int
    attempt: int
    cores: int
    memory_mb: int
    workdir: Path
    runner: PayloadRunner
    next_heartbeat: float
    description: JobDescription
    sample: Sample | None = None
    stored_description: dict[str, Any] = field(default_factory=dict)
    input_bytes: int = 0  # input sandbox downloaded (set by the worker that fetched it)
    owner: str = ""
    inline_output_bytes: int = 0  # the service takes an output this small inlined (the match)
    stage: Stage = Stage.WAITING  # what the loop does with it next (agents/job_runs.py)
    next_sample: float = 0.0  # when the loop samples its payload next (stage RUNNING)


@dataclass(frozen=True)
class _Finished:
    job_id: int
    result: PayloadResult
    output: OutputSandbox | None = NO_OUTPUT  # None: not uploaded yet (the service was away)


class Pilot:
    """Runs jobs until the policy says stop. :meth:`run` in the main thread."""

    def __init__(
        self, config: PilotConfig, policy: RetryPolicy | None = None, clock: Any = time.monotonic
    ) -> None:
        self.config = config
        self.clock = clock
        self.client = Client(
            config.server,
            policy or PILOT_RETRIES,
            on_push=self.apply_commands,
            identity=config.identity,
            insecure=config.insecure,
        )
        self.jobs: dict[int, RunningJob] = {}
        self.events: queue.Queue[_Finished | Fetched | Ended] = queue.Queue()
        self.jobs_taken = 0
        self.draining = False
        self.stop_signal = ""
        self._started = clock()
        self.policy = PilotPolicy.for_config(config, self._started)
        self._idle_since: float | None = self._started
        self._next_request = self._started
        self._request_pause = config.first_request_interval
        # A hold from the service (draining toward a bigger job): no request until this many
        # cores are free or the time is up.
        self._hold_cores, self._hold_until = 0, 0.0
        self._wall_offset = time.time() - self._started  # the watchdog's clock is time.time()
        config.workdir.mkdir(parents=True, exist_ok=True)
        self.outbox = Outbox(config.workdir)
        self.reports = ReportSender(
            lambda: self.client, self.outbox, config.pilot_id, self._answered
        )
        self._unsent: list[Report] = []  # made this turn: kept in the outbox, then sent
        self._unposted: list[Report] = []  # kept in the outbox, for this turn's request
        self._turn_commands: list[PilotCommand] = []  # of a turn's reply, until its jobs start
        self._awaiting_running: set[int] = set()  # jobs whose Running is in flight (not started)
        self.folders = JobFolders(config.workdir, config.keep_failed_for, config.keep_failed_max_mb)
        self.records = JobRecords(config.workdir)  # a turn's jobs, for a successor
        self._folder_work = ThreadPoolExecutor(1, thread_name_prefix="folders")
        # A job's blocking steps (inputs, kills, uploads): at most one per job at a time.
        self.workers = Workers(self._worker_client, config.cores)
        self._sample_every = min(config.sample_interval, config.heartbeat_interval)
        self.lease_file = config.workdir / LEASE_FILE
        self._next_flush = self._started
        self._next_sweep = self._started
        # Workers and the exec helper's reader write a byte here after queueing an event: the
        # loop wakes at once.
        self._wake_read, self._wake_write = os.pipe()
        os.set_blocking(self._wake_read, False)
        os.set_blocking(self._wake_write, False)

    # -- control (any thread or a signal handler) ----------------------------------------------

    def drain(self) -> None:
        """Take no new job; exit when the running ones are done."""
        self.draining = True

    def terminate(self, why: str = "SIGTERM") -> None:
        """Take no new job, kill the running ones (handed back to the task queue), exit."""
        self.stop_signal = why
        self.draining = True

    def install_signal_handlers(self) -> None:
        def on_signal(signum: int, frame: FrameType | None) -> None:
            self.terminate(signal.Signals(signum).name)

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGUSR1, lambda signum, frame: self.drain())

    # -- the loop --------------------------------------------------------------------------------

    def run(self) -> int:
        """0 when the pilot stopped normally, 3 when the service cannot be reached at start."""
        config = self.config
        log.info(
            "pilot %s: site %s, CE %s, %d core(s), %d MB, platform %s, server %s",
            config.pilot_id,
            config.site,
            config.ce,
            config.cores,
            config.memory_mb,
            config.platform,
            config.server,
        )
        try:
            try:
                self.client.ping()
            except ServiceUnavailable as exc:
                log.error("pilot %s: %s", config.pilot_id, exc)
                return EXIT_UNREACHABLE
            start_exec_helper()  # up before the first job: its start is not waited for
            self.recover_ended()
            self.sweep_folders(self.clock())
            while not self.step():
                pass
        finally:
            self._abandon()
            self.reports.drop_turn()
            self._post_unposted()
            self.flush_outbox(self.clock(), force=True)
            self._wait_answers()
            self.workers.close(self.client.policy.timeout)
            self._folder_work.shutdown(wait=True)
            self.client.close()
            os.close(self._wake_read)
            os.close(self._wake_write)
        log.info("pilot %s: stopped after %d job(s)", config.pilot_id, self.jobs_taken)
        return EXIT_OK

    def step(self) -> bool:
        """One iteration; True when the pilot should exit."""
        self.process_answers()
        self.process_events()
        now = self.clock()
        self.sample_payloads(now)
        self.flush_outbox(now)
        self.sweep_folders(now)
        if self.stop_signal:
            self.kill_all(STOPPED_BY_SIGNAL.format(self.stop_signal))
        self.send_heartbeats(now)
        self.request_jobs(now)
        self._post_unposted()  # no request took them this turn
        reason = self.policy.stop_reason(
            self.clock(), len(self.jobs), self.jobs_taken, self._idle_since, self.draining
        )
        if reason:
            log.info("pilot %s: stopping: %s", self.config.pilot_id, reason)
            return True
        if self.events.empty():
            self.client.poll_pushes(self._wait_time(), self._wake_read)
            self._drain_wake_pipe()
        return False

    def _wait_time(self) -> float:
        """Until the next heartbeat or payload sample is due, or the next request if a core is
        free for one (up to ``POLL_SLICE``). Payload ends, worker events and replies wake the
        loop at once, so a core freed meanwhile is not waited for. (A request time long past
        with every core busy made this 0: the loop spun, a core's worth of CPU while the
        pilot's cores were full; issue 15.)"""
        due = [job.next_heartbeat for job in self.jobs.values()]
        due += [job.next_sample for job in self.jobs.values() if job.stage is Stage.RUNNING]
        if self._free_cores() and not self.draining:
            due.append(max(self._next_request, self._hold_until if self._hold_cores else 0.0))
        until = min(due) - self.clock() if due else POLL_SLICE
        return max(0.0, min(POLL_SLICE, until))

    def _wake(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self._wake_write, b"!")

    def _drain_wake_pipe(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            while os.read(self._wake_read, 4096):
                pass

    # -- commands --------------------------------------------------------------------------------

    def apply_commands(self, commands: list[PilotCommand]) -> None:
        """Act on commands from the service (pushed or in a reply)."""
        for command in commands:
            if isinstance(command, StopPilot):
                if not self.stop_signal:
                    log.info(
                        "pilot %s: stop command from the service: %s",
                        self.config.pilot_id,
                        command.reason,
                    )
                self.terminate((command.reason or "stop command")[:100])
            elif isinstance(command, KillJob):
                job = self.jobs.get(command.job_id)
                if job is not None:
                    log.info("job %s: kill command from the service", command.job_id)
                    self._kill(job, "Killed on request")

    def kill_all(self, minor_status: str) -> None:
        for job in list(self.jobs.values()):
            self._kill(job, minor_status)

    def _kill(self, job: RunningJob, minor_status: str) -> None:
        """Kill the job's payload (it ends Killed with ``minor_status``): a running one in a
        worker (SIGTERM, ``kill_grace``, SIGKILL); one not started yet never starts; one that
        already ended (its end on the queue) or is ending is left to end as it does."""
        job.runner.request_kill(minor_status)
        if job.stage is Stage.RUNNING and not job.runner.exited:
            self._end_in_worker(job, kill=True)

    # -- requests --------------------------------------------------------------------------------

    def request_jobs(self, now: float) -> None:
        """Ask for jobs while cores are free and the policy allows; back off when none came,
        and hold (ask nothing) while the service said to keep the cores for a bigger job."""
        while (
            now >= self._next_request
            and not self._held(now)
            and self.policy.should_request(
                now, self._free_cores(), self.jobs_taken, self._idle_since, self.draining
            )
        ):
            matches, running = self._request_some(now)
            if not matches and self._hold_cores:
                return  # asked again as soon as enough cores are free, or when the hold ends
            if not matches:  # paused from now: the request itself may have waited long
                self._next_request = self.clock() + self._request_pause
                self._request_pause = min(self._request_pause * 2, self.config.request_interval)
                return
            self._request_pause = self.config.first_request_interval
            self._idle_since = None
            self.jobs_taken += len(matches)
            self.start_jobs(matches, running)
            now = self.clock()
            if not self.jobs:  # none could be started
                self._idle_since = now

    def _free_cores(self) -> int:
        return self.policy.free_cores([job.cores for job in self.jobs.values()])

    def _held(self, now: float) -> bool:
        if self._hold_cores and (self._free_cores() >= self._hold_cores or now >= self._hold_until):
            self._hold_cores = 0
        return bool(self._hold_cores)

    def resources(self, now: float) -> PilotResources:
        config = self.config
        free_memory = config.memory_mb - sum(job.memory_mb for job in self.jobs.values())
        return PilotResources(
            site=config.site,
            ce=config.ce,
            platform=config.platform,
            cores=self._free_cores(),
            memory_mb=max(1, free_memory) if config.memory_mb else 0,
            cpu_time_left=self.policy.cpu_time_left(now),
            tags=list(config.tags),
            required_tags=list(config.required_tags),
            total_cores=config.cores,
            understands_drain=True,
        )

    def _request_some(self, now: float) -> tuple[list[MatchedJob], bool]:
        """A job for each free core (at most), with this turn's final reports in one request
        (``pilot_turn``: the jobs come back Running, the bool), else in one request
        (``request_jobs``), or one job from a service that has neither."""
        count = min(self._free_cores(), MAX_JOBS_PER_REQUEST)
        if self.policy.max_jobs:
            count = min(count, self.policy.max_jobs - self.jobs_taken)
        if self.reports.turns:
            unposted, self._unposted = self._unposted, []
            try:
                turn = self.reports.turn(unposted, self.resources(now), count, now)
            except UnknownOperation:
                pass  # asked as before, below
            else:
                if turn is None:
                    return [], False
                self._note_no_job(now, turn.hold, turn.reason, turn.drain)
                if not turn.jobs:
                    self.apply_commands(turn.commands)
                self._turn_commands = turn.commands  # else applied once its jobs are known
                return turn.jobs, True
        return self._request_apart(now, count), False

    def _request_apart(self, now: float, count: int) -> list[MatchedJob]:
        """Jobs asked for without the reports (a service older than ``pilot_turn``)."""
        if count > 1 and self.reports.batches:
            try:
                reply = self.client.request_jobs(self.config.pilot_id, self.resources(now), count)
            except UnknownOperation:
                log.info("pilot %s: the service has no request_jobs", self.config.pilot_id)
                self.reports.batches = False
            except DiracLikeError as exc:
                log.warning("pilot %s: request_jobs failed: %s", self.config.pilot_id, exc)
                return []
            else:
                self.apply_commands(reply.commands)
                self._note_no_job(now, reply.hold, reply.reason, reply.drain)
                return reply.jobs
        match = self._request_one(now)
        return [] if match is None else [match]

    def _request_one(self, now: float) -> MatchedJob | None:
        try:
            reply = self.client.request_job(self.config.pilot_id, self.resources(now))
        except DiracLikeError as exc:
            log.warning("pilot %s: request_job failed: %s", self.config.pilot_id, exc)
            return None
        self.apply_commands(reply.commands)
        if reply.job is None:
            self._note_no_job(now, reply.hold, reply.reason, reply.drain)
        return reply.job

    def _note_no_job(self, now: float, hold: CoreHold | None, reason: str, drain: bool) -> None:
        """A reply without a job: the site drained (take no new job), cores held, or why not."""
        if drain and not self.draining:
            log.info("pilot %s: %s: taking no new job, finishing the running ones",
                     self.config.pilot_id, reason)  # fmt: skip
            self.drain()
        if hold is not None:
            self._hold_cores, self._hold_until = hold.cores, now + hold.seconds
            log.info(
                "pilot %s: holding %d cores for a job of group %s, up to %.0f s",
                self.config.pilot_id,
                hold.cores,
                hold.group,
                hold.seconds,
            )
        elif reason:
            log.debug("pilot %s: no job: %s", self.config.pilot_id, reason)

    # -- one job ---------------------------------------------------------------------------------

    def start_jobs(self, matches: list[MatchedJob], running: bool = False) -> None:
        """Start the jobs of a turn at once (``running``: the service has them Running since
        the commit its reply followed), else report the matched jobs Running, in one request
        posted without waiting (the loop goes on meanwhile); each job's payload starts once the
        service took its Running (:meth:`process_answers`: never a payload of a job the service
        does not have Running, whose match it may give back to the task queue). To a service
        without ``update_statuses``: one by one, each reply waited for."""
        prepared = self._keep_records([job for job in map(self._prepare, matches) if job])
        if running:
            self._start_at_once(prepared)
            return
        if not self.reports.batches:
            self._start_when_taken(prepared)
            return
        if prepared:
            self.reports.post_running([(job.job_id, job.attempt) for job in prepared], self.clock())
        for job in prepared:
            self.jobs[job.job_id] = job  # its cores are taken from now on
            self._awaiting_running.add(job.job_id)
        self._send_reports()  # of the jobs that could not be prepared

    def _start_payloads(self, jobs: list[RunningJob]) -> None:
        """The service took these jobs' Running: start their payloads from this loop, together
        (one request to the exec helper), or first fetch a job's inputs in a worker
        (:class:`Fetched` then starts it)."""
        ready = []
        for job in jobs:
            if needs_inputs(job.description):
                job.stage = Stage.FETCHING
                self.workers.submit(functools.partial(self._fetch_inputs, job=job))
            else:
                ready.append(job)
        if ready:
            self._launch(ready)

    def _start_at_once(self, prepared: list[RunningJob]) -> None:
        """The jobs of a turn: Running at the service already, with their lease."""
        if prepared:
            self.renew_lease()
        for job in prepared:
            self.jobs[job.job_id] = job
        commands, self._turn_commands = self._turn_commands, []
        self.apply_commands(commands)  # a kill of one of them finds it
        self._start_payloads(prepared)
        self._send_reports()  # of the jobs that could not be prepared

    def _start_when_taken(self, prepared: list[RunningJob]) -> None:
        """Report Running and wait for the reply, then start the jobs the service took."""
        outcomes = self.reports.running([(job.job_id, job.attempt) for job in prepared])
        started = [
            (job, commands)
            for job, commands in zip(prepared, outcomes, strict=True)
            if commands is not None
        ]
        if started:
            self.renew_lease()
        for job, _ in started:
            self.jobs[job.job_id] = job
        for _, commands in started:
            self.apply_commands(commands)  # a kill of one of them finds it
        self._start_payloads([job for job, _ in started])
        self._send_reports()  # of the jobs that could not be prepared

    def _prepare(self, match: MatchedJob) -> RunningJob | None:
        """The job's folder and payload runner; None if it cannot be prepared (then it is
        reported Failed)."""
        job_id, attempt = match.job_id, match.attempt
        workdir = self.config.workdir / f"job_{job_id}_{attempt}"
        cores = max(1, match.cores)  # granted by the match (within a core range)
        try:
            description = description_from_stored(match.description)
            workdir.mkdir(parents=True, exist_ok=True)
            runner = self._runner(job_id, description, workdir, cores, match.lease)
        except (OSError, InvalidArgument) as exc:
            log.error("job %s: cannot prepare the payload: %s", job_id, exc)
            self._report(
                job_id, attempt, JobStatus.FAILED, f"Pilot could not prepare the job: {exc}"
            )
            return None
        job = RunningJob(
            job_id,
            attempt,
            cores,
            description.max_ram_mb,
            workdir,
            runner,
            self.clock() + self.config.heartbeat_interval,
            description,
            owner=match.owner,
            inline_output_bytes=match.inline_output_bytes,
        )
        job.stored_description = match.description
        return job

    def _keep_records(self, prepared: list[RunningJob]) -> list[RunningJob]:
        """The records a successor needs for these jobs, one file for the turn (before any
        payload starts: :class:`JobRecords`); if it cannot be written, none of them starts
        (each is reported Failed)."""
        try:
            self.records.keep(
                {
                    job.workdir.name: {
                        "job_id": job.job_id,
                        "attempt": job.attempt,
                        "pilot_id": self.config.pilot_id,
                        "description": job.stored_description,
                    }
                    for job in prepared
                }
            )
        except OSError as exc:
            log.error("jobs %s: cannot prepare the payloads: %s",
                      ",".join(str(job.job_id) for job in prepared), exc)  # fmt: skip
            for job in prepared:
                self._report(job.job_id, job.attempt, JobStatus.FAILED,
                             f"Pilot could not prepare the job: {exc}")  # fmt: skip
                self._folder_work.submit(self.folders.finished, job.workdir, True)
            return []
        return prepared

    def _folder_done(self, folder: Path, failed: bool) -> None:
        """The job of ``folder`` is over and reported: its folder goes (or is kept a while) in
        the folder thread, then its turn's records once every job in them is over."""
        records = self.records.done(folder)
        self._folder_work.submit(self._finish_folder, folder, failed, records)

    def _finish_folder(self, folder: Path, failed: bool, records: Path | None) -> None:
        """In the folder thread: see :meth:`_folder_done`."""
        self.folders.finished(folder, failed)
        if records is not None:
            with contextlib.suppress(OSError):
                records.unlink()

    def _runner(
        self,
        job_id: int,
        description: JobDescription,
        workdir: Path,
        cores: int,
        lease: float = 0.0,
    ) -> PayloadRunner:
        config = self.config
        spec = PayloadSpec(
            job_id=job_id,
            executable=description.executable,
            workdir=workdir,
            arguments=description.arguments,
            env={
                **payload_environment(description.attributes, cores),  # ExecutionEnvironment
                "DIRAC_LIKE_PILOT_ID": config.pilot_id,
                "DIRAC_LIKE_SITE": config.site,
                "DIRAC_LIKE_CE": config.ce,
                # the Python this pilot runs (with dirac-like): what probe jobs test
                "DIRAC_LIKE_PYTHON": sys.executable,
            },
            stdout=description.std_output or "std.out",
            stderr=description.std_error or "std.err",
            stdin=description.std_input,
            lease_file=self.lease_file,
            lease=lease,
        )
        deadline = self.policy.payload_deadline()
        limits = Limits.for_job(
            cpu_time=description.cpu_time,
            max_ram_mb=description.max_ram_mb,
            pilot_deadline=deadline + self._wall_offset if deadline else 0.0,
            cores=cores,
        )
        return PayloadRunner(
            spec, limits, sample_interval=self._sample_every, kill_grace=config.kill_grace
        )

    def _worker_client(self) -> Client:
        """A worker's own client (ZeroMQ sockets are not thread safe), on this pilot's context."""
        return Client(
            self.config.server,
            self.client.policy,
            context=self.client.context,
            identity=self.client.identity,
            insecure=self.client.identity is None,
        )

    def _post(self, event: _Finished | Fetched | Ended) -> None:
        """From a worker or the exec helper's reader thread: an event for the loop."""
        self.events.put(event)
        self._wake()

    def _fetch_inputs(self, client: Client, job: RunningJob) -> None:
        """In a worker: the job's input sandbox and input data; the loop then starts it."""
        try:
            failure = self._fetch(client, job)
        except Exception as exc:  # a bug here must not lose the job's report
            log.exception("job %s: fetching the inputs failed", job.job_id)
            failure = _not_run(f"Pilot error: {exc}")
        self._post(Fetched(job.job_id, failure))

    def _fetch(self, client: Client, job: RunningJob) -> PayloadResult | None:
        try:
            job.input_bytes = fetch_input(
                client, job.description, job.workdir, self.config.sandbox_limits
            )
        except DiracLikeError as exc:
            log.warning("job %s: input sandbox: %s", job.job_id, exc.message)
            return _not_run(f"Input sandbox: {exc.message}")
        try:
            fetch_input_data(client, job.description, job.workdir, self.config.site)
        except DiracLikeError as exc:
            log.warning("job %s: input data: %s", job.job_id, exc.message)
            return _not_run(f"Input data: {exc.message}")
        return None

    def _launch(self, jobs: list[RunningJob]) -> None:
        """Start the payloads (the exec helper starts them, one request for them all; each
        end comes back as :class:`Ended`); one that cannot start (or was killed meanwhile) is
        finished here."""
        starts = [(job.runner, functools.partial(self._post, Ended(job.job_id))) for job in jobs]
        try:
            results = start_payloads(starts)
        except Exception as exc:  # a bug in the wrapper must not lose the jobs' reports
            log.exception("jobs %s: the wrapper failed", ",".join(str(j.job_id) for j in jobs))
            results = [_not_run(f"Pilot error: {exc}")] * len(jobs)
        next_sample = self.clock() + self._sample_every
        for job, not_started in zip(jobs, results, strict=True):
            if not_started is not None:
                self.finish(job, not_started)
                continue
            job.stage = Stage.RUNNING
            job.next_sample = next_sample
            log.debug(  # its end is logged at info, with its pid (issue 15: a line less per job)
                "job %s: attempt %s started in %s (%d core(s)), pid %s",
                job.job_id,
                job.attempt,
                job.workdir,
                job.cores,
                job.runner.pid,
            )

    def sample_payloads(self, now: float) -> None:
        """The watchdog's timer: sample each running payload due (a job shorter than
        ``sample_interval`` is never sampled); one over a limit is killed in a worker."""
        due = due_for_sample(((j.job_id, j.stage, j.next_sample) for j in self.jobs.values()), now)
        for job_id in due:
            job = self.jobs[job_id]
            job.next_sample = now + self._sample_every
            if job.runner.exited:
                continue  # its end is on the queue
            try:
                job.sample, verdict = job.runner.sample_now()
            except Exception:
                log.exception("job %s: sampling failed; the payload goes on", job_id)
                verdict = None
            if verdict:
                self._end_in_worker(job, verdict, kill=True)

    def _payload_ended(self, job: RunningJob) -> None:
        """The job's payload has ended. The common case ends here, in the loop: nothing left
        running, nothing to upload; the rest goes to a worker."""
        if job.stage is not Stage.RUNNING:
            return  # a worker is ending it (killed): it posts the result
        try:
            if job.runner.left_running():
                self._end_in_worker(job)
                return
            result = job.runner.finish(tail=False)
            inlined = result.exit_code is not None and not job.description.output_data
            output = settled_here(  # a small output goes inlined from here: no worker, no upload
                job.description,
                job.workdir,
                self.config.sandbox_limits,
                job.inline_output_bytes if inlined else 0,
            )
        except Exception as exc:  # a bug in the wrapper must not lose the job's report
            log.exception("job %s: the wrapper failed", job.job_id)
            self.finish(job, _not_run(f"Pilot error: {exc}"))
            return
        if end_needs_worker(result, job.description, output is None):
            self._end_in_worker(job, result=result)
        else:
            self.finish(job, result, output or NO_OUTPUT)

    def _end_in_worker(
        self,
        job: RunningJob,
        verdict: Verdict | None = None,
        result: PayloadResult | None = None,
        kill: bool = False,
    ) -> None:
        """Hand the job's end to a worker: the kill (``verdict``, or a kill requested) or the
        clean-up of what the payload left, unless ``result`` is known; then its output data
        and output sandbox. The worker posts :class:`_Finished`. A kill (``kill``) is started
        here first: the payload has its SIGTERM before the worker runs (issue 15: a kill waited
        for a worker thread to be scheduled, and that on a scan of every process on the node)."""
        job.stage = Stage.ENDING
        if kill:
            try:
                job.runner.kill_now(verdict)
            except Exception:  # the worker kills it all the same
                log.exception("job %s: the kill's first signal failed", job.job_id)
        self.workers.submit(lambda client: self._end(client, job, verdict, result))

    def _end(
        self,
        client: Client,
        job: RunningJob,
        verdict: Verdict | None,
        result: PayloadResult | None,
    ) -> None:
        """In a worker: see :meth:`_end_in_worker`."""
        output: OutputSandbox | None = NO_OUTPUT
        try:
            if result is None:
                result = job.runner.finish(verdict, tail=False)
            result = self._upload_output_data(client, job, result)
            if result.exit_code is not None:
                output = self._upload_output(client, job)
        except Exception as exc:  # a bug in the wrapper must not lose the job's report
            log.exception("job %s: the wrapper failed", job.job_id)
            result = _not_run(f"Pilot error: {exc}")
        self._post(_Finished(job.job_id, result, output))

    def _upload_output_data(
        self, client: Client, job: RunningJob, result: PayloadResult
    ) -> PayloadResult:
        """The OutputData of a job Done, uploaded and registered; Failed if they cannot be."""
        if result.status is not JobStatus.DONE or not job.description.output_data:
            return result
        try:
            upload_output_data(
                client,
                job.description,
                job.workdir,
                OutputOwner(job.job_id, job.owner),
                self.config.site,
            )
        except DiracLikeError as exc:
            log.warning("job %s: output data: %s", job.job_id, exc.message)
            return dataclasses.replace(
                result, status=JobStatus.FAILED, minor_status=f"Output data: {exc.message}"[:250]
            )
        return result

    def _upload_output(self, client: Client, job: RunningJob) -> OutputSandbox | None:
        """The output sandbox uploaded, or small enough to go inlined in the final report (or
        what went wrong); None if the service could not take it now: the outbox uploads it
        later."""
        try:
            output = upload_output(
                client,
                job.description,
                job.workdir,
                self.config.sandbox_limits,
                job.inline_output_bytes,
            )
        except DiracLikeError as exc:
            if exc.retryable:
                log.warning("job %s: output sandbox not uploaded yet: %s", job.job_id, exc.message)
                return None
            log.warning("job %s: output sandbox not uploaded: %s", job.job_id, exc.message)
            return OutputSandbox("", (), f"output sandbox not uploaded: {exc.message}")
        return output

    # -- events and reports ----------------------------------------------------------------------

    def process_events(self) -> None:
        """Take the events (payload ends, inputs fetched, workers' results); the final
        reports they make go in one request."""
        while True:
            try:
                event = self.events.get_nowait()
            except queue.Empty:
                self._send_reports(post=False)  # with this turn's request, if one goes
                return
            job = self.jobs.get(event.job_id)
            if job is None:
                continue
            if isinstance(event, Ended):
                self._payload_ended(job)
            elif isinstance(event, Fetched):
                if event.failure is None:
                    self._launch([job])
                else:
                    self.finish(job, event.failure)
            else:
                self.finish(job, event.result, event.output)

    def finish(
        self, job: RunningJob, result: PayloadResult, output: OutputSandbox | None = NO_OUTPUT
    ) -> None:
        del self.jobs[job.job_id]
        if not self.jobs:
            self._idle_since = self.clock()
        log.info(
            "job %s: attempt %s, pid %s: %s (%s), %.1f s CPU, %.0f MB peak",
            job.job_id,
            job.attempt,
            job.runner.pid,
            result.status,
            result.minor_status,
            result.cpu_seconds,
            result.peak_rss_mb,
        )
        if result.kill_reason == "lease":
            log.warning("job %s: %s", job.job_id, LEASE_LOST)
            self._hand_back(job, LEASE_LOST)
            return
        if result.kill_reason == HELPER_LOST:
            log.warning("job %s: %s", job.job_id, result.minor_status)
            why = STOPPED_BY_SIGNAL.format(self.stop_signal) if self.stop_signal else "Pilot error"
            self._hand_back(job, f"{why}: exec helper lost, job handed back")
            return
        if hands_back(result, self._stopping_soon(result)):
            stopped = STOPPED_BY_SIGNAL.format(self.stop_signal)
            log.info("job %s: handed back for rescheduling (%s)", job.job_id, stopped)
            self._hand_back(job, f"{stopped}: job handed back")
            return
        usage = _usage(job, result, output.size if output else 0)
        if output is None:
            self._keep_until_uploaded(job, result, usage)
            return
        application = "; ".join(filter(None, [_application(result), output.problems()]))
        self._report(
            job.job_id,
            job.attempt,
            result.status,
            result.minor_status,
            application,
            output.sha256,
            workdir=job.workdir,
            usage=usage,
            inline=output.inline,
        )

    def _keep_until_uploaded(self, job: RunningJob, result: PayloadResult, usage: JobUsage) -> None:
        """The service could not take the output now: the report waits in the outbox, and
        :meth:`flush_outbox` uploads the output from the job's folder, then sends it."""
        log.info("job %s: report kept in the outbox until its output is uploaded", job.job_id)
        report = Report.new(
            job_id=job.job_id,
            attempt=job.attempt,
            pilot_id=self.config.pilot_id,
            status=result.status.value,
            minor_status=result.minor_status[:256],
            application_status=_application(result),
            workdir=str(job.workdir),
            output_pending=True,
            description=job.stored_description,
            failed=result.status is not JobStatus.DONE,
            usage=asdict(usage),
        )
        try:
            self.outbox.put(report)
        except OSError as exc:
            log.error("job %s: report not kept in the outbox: %s", job.job_id, exc)

    def _hand_back(self, job: RunningJob, minor_status: str) -> None:
        """Give the job back to the task queue (Rescheduled): it did not fail, this pilot did."""
        self._report(job.job_id, job.attempt, HANDED_BACK, minor_status, workdir=job.workdir)

    def _stopping_soon(self, result: PayloadResult) -> bool:
        """Whether this pilot is being stopped. A payload that died of a stop signal nobody
        here sent may have got it with the pilot (scancel signals the whole batch job): wait a
        moment for the pilot's own signal before calling the job Failed."""
        if result.kill_reason or result.exit_code not in BATCH_KILL_CODES:
            return bool(self.stop_signal)
        deadline = time.monotonic() + HANDBACK_WAIT
        while not self.stop_signal and time.monotonic() < deadline:
            time.sleep(0.02)  # the signal handler runs in this (main) thread meanwhile
        return bool(self.stop_signal)

    def _report(
        self,
        job_id: int,
        attempt: int,
        status: JobStatus,
        minor: str,
        application: str = "",
        output_sandbox: str = "",
        workdir: Path | None = None,
        usage: JobUsage | None = None,
        inline: bytes = b"",
    ) -> None:
        """A final report, kept in the outbox and sent by :meth:`_send_reports` with the
        others of this turn (``inline``: its output sandbox, not uploaded)."""
        self._unsent.append(
            Report.new(
                job_id=job_id,
                attempt=attempt,
                pilot_id=self.config.pilot_id,
                status=status.value,
                minor_status=minor[:256],
                application_status=application[:256],
                output_sandbox=output_sandbox,
                workdir=str(workdir or ""),
                failed=status is not JobStatus.DONE,
                usage=dict(vars(usage)) if usage else {},  # flat: asdict's deep copy costs
                output_inline=Report.encoded(inline),
            )
        )

    def _send_reports(self, post: bool = True) -> None:
        """Keep the reports made this turn in the outbox (one file, one fsync), then post them
        (pipelined: answered in a later turn; what the service cannot take now stays in the
        outbox for :meth:`flush_outbox`), or (``post`` False) leave them to this turn's
        request (:meth:`_request_some`), else to :meth:`_post_unposted`."""
        made, self._unsent = self._unsent, []
        if made:
            try:
                self.outbox.put_many(made)
            except OSError as exc:
                log.error("jobs %s: reports not kept in the outbox (sent once): %s",
                          ",".join(str(r.job_id) for r in made), exc)  # fmt: skip
            self._unposted += made
        if post:
            self._post_unposted()

    def _post_unposted(self) -> None:
        made, self._unposted = self._unposted, []
        if made:
            self.reports.post(made, self.clock())

    def process_answers(self) -> None:
        """Take the answers to posted reports: a job whose Running was taken starts (its
        commands applied, the lease renewed first), one refused is dropped unstarted; Running
        reports not answered in time are posted again."""
        now = self.clock()
        outcomes = self.reports.collect(self.client.take_answers(), now)
        if any(outcome.commands is not None for outcome in outcomes):
            self.renew_lease()
        taken = []
        for outcome in outcomes:
            self._awaiting_running.discard(outcome.job_id)
            job = self.jobs.get(outcome.job_id)
            if job is None:
                continue
            if outcome.commands is None:
                self._not_taken(job)
            else:
                taken.append((job, outcome.commands))
        self._start_payloads([job for job, _ in taken])  # together: one request to the helper
        for _, commands in taken:
            self.apply_commands(commands)
        self.reports.expire(now, self.client.policy.timeout)

    def _not_taken(self, job: RunningJob) -> None:
        """The service refused the job's Running (killed, or taken away meanwhile): it is not
        started, and nothing is reported."""
        del self.jobs[job.job_id]
        if not self.jobs:
            self._idle_since = self.clock()
        self._folder_done(job.workdir, True)

    def _wait_answers(self) -> None:
        """On the way out: wait (bounded) for the answers to the final reports in flight, so
        that a pilot that stops leaves nothing unanswered it could have had answered."""
        deadline = self.clock() + self.client.policy.timeout * 2
        while self.reports.in_flight() and self.clock() < deadline:
            self.client.poll_pushes(0.05)
            self.process_answers()

    def _answered(self, report: Report) -> None:
        """The service answered ``report`` (it left the outbox): its folder can go (removed by
        the folder thread, off this loop: a folder left by a pilot that exits first is removed
        by its successor's sweep)."""
        if report.workdir:
            self._folder_done(Path(report.workdir), report.failed)

    def flush_outbox(self, now: float, force: bool = False) -> None:
        """Send again the reports the service has not answered (also those a predecessor on this
        workdir left), completing a pending output sandbox first."""
        if now < self._next_flush and not force:
            return
        self._next_flush = now + OUTBOX_RETRY
        ready = []
        if self.draining:
            self.reports.drop_turn()  # it asks for no more jobs
        posted = self.reports.in_flight() | {report.request_id for report in self._unposted}
        for report in self.outbox.pending():
            if report.job_id in self.jobs or report.request_id in posted:
                continue  # its job is still here (its end on its way), or it is posted
            if report.output_pending:
                completed = self._complete(report)
                if completed is None:
                    break  # the service is not there: try again later
                report = completed
            ready.append(report)
        if ready:
            self.reports.post(ready, now)

    def _complete(self, report: Report) -> Report | None:
        """Upload the output of a report kept before its output went up (the service was
        away, or the pilot died, or it would not take the output inlined); None if the service
        cannot take it now."""
        workdir = Path(report.workdir)
        if report.data_pending:
            data_done = self._complete_output_data(report)
            if data_done is None:
                return None
            report = data_done
        try:
            if report.output_inline:
                output = upload_packed(self.client, report.inline_bytes())
            else:
                description = description_from_stored(report.description)
                output = upload_output(
                    self.client, description, workdir, self.config.sandbox_limits
                )
        except DiracLikeError as exc:
            if exc.retryable:
                return None
            log.warning("job %s: output sandbox not uploaded: %s", report.job_id, exc)
            output = OutputSandbox("", (), f"output sandbox not uploaded: {exc}")
        except OSError as exc:
            log.warning(
                "job %s: output sandbox left by a previous pilot not uploaded: %s",
                report.job_id,
                exc,
            )
            output = OutputSandbox("", (), f"output sandbox not uploaded: {exc}")
        return self.outbox.uploaded(report, output.sha256, output.problems())

    def _complete_output_data(self, report: Report) -> Report | None:
        """The OutputData of a job whose payload ended Done under a predecessor that died
        (maybe before it uploaded them): uploaded and registered now (what the predecessor
        registered is kept), or the job Failed with the reason: never Done with its output
        missing. None if the service cannot be reached now."""
        try:
            description = description_from_stored(report.description)
            upload_output_data(
                self.client,
                description,
                Path(report.workdir),
                OutputOwner(report.job_id, ""),
                self.config.site,
                resume=True,
            )
        except (DiracLikeError, OSError) as exc:
            if (
                isinstance(exc, DiracLikeError)
                and exc.retryable
                and not isinstance(exc, StorageError)
            ):
                return None
            message = exc.message if isinstance(exc, DiracLikeError) else str(exc)
            log.warning("job %s: output data left by a previous pilot: %s", report.job_id, message)
            report = dataclasses.replace(
                report,
                status=JobStatus.FAILED.value,
                minor_status=f"Output data: {message}"[:250],
                failed=True,
            )
        return self.outbox.put(dataclasses.replace(report, data_pending=False))

    def recover_ended(self) -> None:
        """Report the jobs whose payload ended under a predecessor on this workdir that died
        before it could keep the report (the exec helper noted the end in the job's folder)."""
        reported = {Path(report.workdir) for report in self.outbox.pending()}
        records = self.records.read()
        for folder in sorted(self.config.workdir.glob("job_*_*")):
            if folder in reported:
                continue
            report = ended_report(folder, records.get(folder.name))
            if report is not None:
                log.info(
                    "job %s: its payload ended under a previous pilot (%s): reporting it",
                    report.job_id,
                    report.minor_status,
                )
                self.outbox.put(report)

    def sweep_folders(self, now: float) -> None:
        if now < self._next_sweep:
            return
        self._next_sweep = now + SWEEP_EVERY
        in_use = {job.workdir for job in self.jobs.values()}
        in_use.update(Path(report.workdir) for report in self.outbox.pending())
        self.folders.sweep(time.time(), in_use)
        self.records.sweep()

    def renew_lease(self) -> None:
        """The service acknowledged this pilot: its payloads' lease starts again."""
        try:
            self.lease_file.touch()
        except OSError as exc:
            log.warning("pilot %s: lease file not renewed: %s", self.config.pilot_id, exc)

    def send_heartbeats(self, now: float) -> None:
        for job in list(self.jobs.values()):
            if now < job.next_heartbeat:
                continue
            job.next_heartbeat = now + self.config.heartbeat_interval
            try:
                commands = self.client.heartbeat(
                    job.job_id,
                    job.attempt,
                    self.config.pilot_id,
                    self.metrics(job),
                    self.stdout_tail(job),
                )
            except DiracLikeError as exc:
                log.warning("job %s: heartbeat failed: %s", job.job_id, exc)
                continue
            self.renew_lease()
            self.apply_commands(commands)

    def metrics(self, job: RunningJob) -> dict[str, Any]:
        sample = job.sample
        if sample is None:
            return {}
        return {
            "cpu_seconds": round(sample.cpu_seconds, 2),
            "rss_mb": round(sample.rss_mb, 1),
            "wall_seconds": round(sample.wall_seconds, 1),
            "disk_mb": round(sample.disk_mb, 1),
        }

    def stdout_tail(self, job: RunningJob) -> str:
        """The last lines the payload printed (bounded), sent with the heartbeat."""
        tail = tail_lines(job.workdir / job.runner.spec.stdout, HEARTBEAT_TAIL_LINES)
        return tail[-HEARTBEAT_TAIL_CHARS:]

    def _abandon(self) -> None:
        """On the way out (also after an error): no payload outlives the pilot unreported."""
        if not self.jobs:
            return
        self.kill_all(STOPPED_BY_SIGNAL.format(self.stop_signal or "error"))
        deadline = self.clock() + self.config.kill_grace + 15.0
        while self.jobs and self.clock() < deadline:
            self.process_answers()  # a job taken meanwhile starts, sees its kill, is handed back
            try:
                event = self.events.get(timeout=0.1)
            except queue.Empty:
                self.client.poll_pushes(0.0)
                continue
            self.events.put(event)
            self.process_events()
            self._post_unposted()


def _application(result: PayloadResult) -> str:
    return "" if result.exit_code is None else f"Exit code {result.exit_code}"


def _not_run(minor_status: str) -> PayloadResult:
    return PayloadResult(JobStatus.FAILED, minor_status[:250], None, 0.0, 0.0, 0.0, "")


def _usage(job: RunningJob, result: PayloadResult, output_bytes: int) -> JobUsage:
    """What the payload used, for its accounting record (sent with the final status)."""
    return JobUsage(
        cpu_seconds=round(result.cpu_seconds, 3),
        wall_seconds=round(result.wall_seconds, 3),
        peak_rss_mb=round(result.peak_rss_mb, 1),
        input_bytes=job.input_bytes,
        output_bytes=output_bytes,
        exit_code=result.exit_code,
    )
