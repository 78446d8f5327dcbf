"""The pilot: discovers its worker node, pulls jobs that fit it, runs them, reports.

Decisions (when to ask for a job, when to stop) live in :class:`PilotPolicy`: pure, the clock
passed in. :class:`Pilot` is the I/O shell. Its main thread owns the one :class:`Client` (ZeroMQ
sockets are not thread safe) and is the only one that talks to the service: each job's payload
runs in a worker thread through a :class:`PayloadRunner`, and the workers put events (a sample
taken, the payload finished) on a queue that the main thread drains between short polls of the
socket for pushed commands. A :class:`KillJob` command (pushed, or in a heartbeat/status reply)
is applied at once with :meth:`PayloadRunner.request_kill`; :class:`StopPilot` stops the pilot as
SIGTERM does. A job runs as its stored description says, read with
:func:`description_from_stored` (checked again: a description it cannot read fails the job).

One iteration of the loop (:meth:`Pilot.step`): handle worker events → heartbeat the jobs that
are due → request jobs while cores are free and the policy allows → decide whether to stop →
wait briefly for pushes. SIGTERM: no new job; the running ones are killed (SIGTERM, then SIGKILL
after ``kill_grace``) and handed back to the task queue (reported Rescheduled, "Pilot stopped
(SIGTERM): job handed back"; the service counts it against the job's reschedule limit); exit 0.
A payload that dies of SIGTERM/SIGKILL together with its pilot (a batch system signals every
process of its job) is handed back too, never reported Failed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import platform
import queue
import re
import secrets
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
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
)
from dirac_like.identity import Identity
from dirac_like.protocol import (
    KillJob,
    MatchedJob,
    PilotCommand,
    PilotResources,
    StopPilot,
)
from dirac_like.states import JobStatus

from .job_sandboxes import OutputSandbox, SandboxLimits, fetch_input, upload_output
from .watchdog import Limits, Sample
from .wrapper import MB, PayloadResult, PayloadRunner, PayloadSpec, tail_lines

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


def discover(workdir: Path, cores: int = 0, memory_mb: int = 0, disk_mb: int = 0,
             platform_name: str = "") -> WorkerNode:
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
    identity: Identity | None = None  # None: the one resolve_identity finds (none: plaintext)
    insecure: bool = False  # plaintext, no identity (a service run --insecure)

    def __post_init__(self) -> None:
        if self.cores < 1:
            raise InvalidArgument(f"cores must be at least 1, got {self.cores}")
        for name in ("time_left", "idle_timeout", "kill_grace", "drain_margin", "memory_mb",
                     "max_cpu_time"):
            if getattr(self, name) < 0:
                raise InvalidArgument(f"{name} must not be negative")
        for name in ("heartbeat_interval", "sample_interval", "request_interval",
                     "first_request_interval"):
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
        return cls(config.cores, deadline, config.max_jobs, config.idle_timeout,
                   config.drain_margin, config.max_cpu_time)

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
        return bool(self.idle_timeout) and idle_since is not None and \
            now - idle_since >= self.idle_timeout

    def should_request(self, now: float, free_cores: int, jobs_taken: int,
                       idle_since: float | None, draining: bool = False) -> bool:
        """Ask the service for a job now?"""
        return (free_cores >= 1 and not draining and not self.max_jobs_reached(jobs_taken)
                and self.time_fits(now) and not self.idle_expired(now, idle_since))

    def stop_reason(self, now: float, running: int, jobs_taken: int,
                    idle_since: float | None, draining: bool = False) -> str:
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


@dataclass(frozen=True)
class _Finished:
    job_id: int
    result: PayloadResult
    output: OutputSandbox = NO_OUTPUT


@dataclass(frozen=True)
class _Sampled:
    job_id: int
    sample: Sample


class Pilot:
    """Runs jobs until the policy says stop. :meth:`run` in the main thread."""

    def __init__(self, config: PilotConfig, policy: RetryPolicy | None = None,
                 clock: Any = time.monotonic) -> None:
        self.config = config
        self.clock = clock
        self.client = Client(config.server, policy or PILOT_RETRIES, on_push=self.apply_commands,
                             identity=config.identity, insecure=config.insecure)
        self.jobs: dict[int, RunningJob] = {}
        self.events: queue.Queue[_Finished | _Sampled] = queue.Queue()
        self.jobs_taken = 0
        self.draining = False
        self.stop_signal = ""
        self._started = clock()
        self.policy = PilotPolicy.for_config(config, self._started)
        self._idle_since: float | None = self._started
        self._next_request = self._started
        self._request_pause = config.first_request_interval
        self._wall_offset = time.time() - self._started  # the watchdog's clock is time.time()
        # Worker threads write a byte here after queueing an event: the loop wakes at once.
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
        log.info("pilot %s: site %s, CE %s, %d core(s), %d MB, platform %s, server %s",
                 config.pilot_id, config.site, config.ce, config.cores, config.memory_mb,
                 config.platform, config.server)
        try:
            try:
                self.client.ping()
            except ServiceUnavailable as exc:
                log.error("pilot %s: %s", config.pilot_id, exc)
                return EXIT_UNREACHABLE
            while not self.step():
                pass
        finally:
            self._abandon()
            self.client.close()
            os.close(self._wake_read)
            os.close(self._wake_write)
        log.info("pilot %s: stopped after %d job(s)", config.pilot_id, self.jobs_taken)
        return EXIT_OK

    def step(self) -> bool:
        """One iteration; True when the pilot should exit."""
        self.process_events()
        now = self.clock()
        if self.stop_signal:
            self.kill_all(STOPPED_BY_SIGNAL.format(self.stop_signal))
        self.send_heartbeats(now)
        self.request_jobs(now)
        reason = self.policy.stop_reason(self.clock(), len(self.jobs), self.jobs_taken,
                                         self._idle_since, self.draining)
        if reason:
            log.info("pilot %s: stopping: %s", self.config.pilot_id, reason)
            return True
        if self.events.empty():
            self.client.poll_pushes(self._wait_time(), self._wake_read)
            self._drain_wake_pipe()
        return False

    def _wait_time(self) -> float:
        """Until the next request or heartbeat is due (worker events wake the loop at once)."""
        due = [self._next_request, *(job.next_heartbeat for job in self.jobs.values())]
        return max(0.0, min(POLL_SLICE, min(due) - self.clock()))

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
                    log.info("pilot %s: stop command from the service: %s",
                             self.config.pilot_id, command.reason)
                self.terminate((command.reason or "stop command")[:100])
            elif isinstance(command, KillJob):
                job = self.jobs.get(command.job_id)
                if job is not None:
                    log.info("job %s: kill command from the service", command.job_id)
                    job.runner.request_kill("Killed on request")

    def kill_all(self, minor_status: str) -> None:
        for job in self.jobs.values():
            job.runner.request_kill(minor_status)

    # -- requests --------------------------------------------------------------------------------

    def request_jobs(self, now: float) -> None:
        """Ask for jobs while cores are free and the policy allows; back off when none came."""
        while now >= self._next_request and self.policy.should_request(
                now, self._free_cores(), self.jobs_taken, self._idle_since, self.draining):
            match = self._request_one(now)
            if match is None:
                self._next_request = now + self._request_pause
                self._request_pause = min(self._request_pause * 2, self.config.request_interval)
                return
            self._request_pause = self.config.first_request_interval
            self._idle_since = None
            self.jobs_taken += 1
            self.start_job(match)
            now = self.clock()
            if not self.jobs:  # it could not be started
                self._idle_since = now

    def _free_cores(self) -> int:
        return self.policy.free_cores([job.cores for job in self.jobs.values()])

    def resources(self, now: float) -> PilotResources:
        config = self.config
        free_memory = config.memory_mb - sum(job.memory_mb for job in self.jobs.values())
        return PilotResources(
            site=config.site, ce=config.ce, platform=config.platform,
            cores=self._free_cores(), memory_mb=max(1, free_memory) if config.memory_mb else 0,
            cpu_time_left=self.policy.cpu_time_left(now),
            tags=list(config.tags), required_tags=list(config.required_tags),
        )

    def _request_one(self, now: float) -> MatchedJob | None:
        try:
            reply = self.client.request_job(self.config.pilot_id, self.resources(now))
        except DiracLikeError as exc:
            log.warning("pilot %s: request_job failed: %s", self.config.pilot_id, exc)
            return None
        self.apply_commands(reply.commands)
        if reply.job is None:
            log.debug("pilot %s: no job: %s", self.config.pilot_id, reply.reason)
        return reply.job

    # -- one job ---------------------------------------------------------------------------------

    def start_job(self, match: MatchedJob) -> None:
        """Report the matched job Running and start its payload in a worker thread."""
        job_id, attempt = match.job_id, match.attempt
        workdir = self.config.workdir / f"job_{job_id}_{attempt}"
        cores = max(1, match.cores)  # granted by the match (within a core range)
        try:
            description = description_from_stored(match.description)
            workdir.mkdir(parents=True, exist_ok=True)
            runner = self._runner(job_id, description, workdir, cores)
        except (OSError, InvalidArgument) as exc:
            log.error("job %s: cannot prepare the payload: %s", job_id, exc)
            self._report(job_id, attempt, JobStatus.FAILED,
                         f"Pilot could not prepare the job: {exc}")
            return
        job = RunningJob(job_id, attempt, cores, description.max_ram_mb, workdir,
                         runner, self.clock() + self.config.heartbeat_interval, description)
        try:
            commands = self.client.update_status(job_id, attempt, self.config.pilot_id,
                                                 JobStatus.RUNNING, "Application")
        except DiracLikeError as exc:
            log.warning("job %s: not started, the service refused Running: %s", job_id, exc)
            return
        self.jobs[job_id] = job
        self.apply_commands(commands)
        threading.Thread(target=self._run_payload, args=(job,), name=f"job-{job_id}",
                         daemon=True).start()
        log.info("job %s: attempt %s started in %s (%d core(s))", job_id, attempt, workdir,
                 job.cores)

    def _runner(self, job_id: int, description: JobDescription, workdir: Path, cores: int
                ) -> PayloadRunner:
        config = self.config
        spec = PayloadSpec(
            job_id=job_id, executable=description.executable, workdir=workdir,
            arguments=description.arguments,
            env={**payload_environment(description.attributes, cores),  # ExecutionEnvironment
                 "DIRAC_LIKE_PILOT_ID": config.pilot_id, "DIRAC_LIKE_SITE": config.site,
                 "DIRAC_LIKE_CE": config.ce,
                 # the Python this pilot runs (with dirac-like): what probe jobs test
                 "DIRAC_LIKE_PYTHON": sys.executable},
            stdout=description.std_output or "std.out",
            stderr=description.std_error or "std.err",
            stdin=description.std_input,
        )
        deadline = self.policy.payload_deadline()
        limits = Limits.for_job(
            cpu_time=description.cpu_time,
            max_ram_mb=description.max_ram_mb,
            pilot_deadline=deadline + self._wall_offset if deadline else 0.0,
            cores=cores,
        )
        return PayloadRunner(
            spec, limits, on_sample=lambda sample: self._on_sample(job_id, sample),
            sample_interval=min(config.sample_interval, config.heartbeat_interval),
            kill_grace=config.kill_grace,
        )

    def _on_sample(self, job_id: int, sample: Sample) -> list[str]:
        """In the worker thread: hand the sample to the main thread (kills come from there)."""
        self.events.put(_Sampled(job_id, sample))
        self._wake()
        return []

    def _run_payload(self, job: RunningJob) -> None:
        """In the worker thread: input sandbox, payload, output sandbox; the result goes to the
        main thread. Sandboxes travel on a client of this thread's own."""
        output = NO_OUTPUT
        try:
            with Client(self.config.server, self.client.policy, context=self.client.context,
                        identity=self.client.identity,
                        insecure=self.client.identity is None) as client:
                result = self._fetch_and_run(client, job)
                if result.exit_code is not None:
                    output = self._upload_output(client, job)
        except Exception as exc:  # a bug in the wrapper must not lose the job's report
            log.exception("job %s: the wrapper failed", job.job_id)
            result = _not_run(f"Pilot error: {exc}")
        self.events.put(_Finished(job.job_id, result, output))
        self._wake()

    def _fetch_and_run(self, client: Client, job: RunningJob) -> PayloadResult:
        try:
            fetch_input(client, job.description, job.workdir, self.config.sandbox_limits)
        except DiracLikeError as exc:
            log.warning("job %s: input sandbox: %s", job.job_id, exc.message)
            return _not_run(f"Input sandbox: {exc.message}")
        return job.runner.run()

    def _upload_output(self, client: Client, job: RunningJob) -> OutputSandbox:
        try:
            output = upload_output(client, job.description, job.workdir,
                                   self.config.sandbox_limits)
        except DiracLikeError as exc:
            log.warning("job %s: output sandbox not uploaded: %s", job.job_id, exc.message)
            return OutputSandbox("", (), f"output sandbox not uploaded: {exc.message}")
        return output

    # -- events and reports ----------------------------------------------------------------------

    def process_events(self) -> None:
        while True:
            try:
                event = self.events.get_nowait()
            except queue.Empty:
                return
            job = self.jobs.get(event.job_id)
            if job is None:
                continue
            if isinstance(event, _Sampled):
                job.sample = event.sample
            else:
                self.finish(job, event.result, event.output)

    def finish(self, job: RunningJob, result: PayloadResult,
               output: OutputSandbox = NO_OUTPUT) -> None:
        del self.jobs[job.job_id]
        if not self.jobs:
            self._idle_since = self.clock()
        log.info("job %s: %s (%s), %.1f s CPU, %.0f MB peak", job.job_id, result.status,
                 result.minor_status, result.cpu_seconds, result.peak_rss_mb)
        if hands_back(result, self._stopping_soon(result)):
            log.info("job %s: handed back for rescheduling (pilot stopped: %s)", job.job_id,
                     self.stop_signal)
            self._report(job.job_id, job.attempt, HANDED_BACK,
                         f"{STOPPED_BY_SIGNAL.format(self.stop_signal)}: job handed back")
            return
        application = "" if result.exit_code is None else f"Exit code {result.exit_code}"
        problems = output.problems()
        if problems:
            application = "; ".join(filter(None, [application, problems]))
        self._report(job.job_id, job.attempt, result.status, result.minor_status, application,
                     output.sha256)

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

    def _report(self, job_id: int, attempt: int, status: JobStatus, minor: str,
                application: str = "", output_sandbox: str = "") -> None:
        try:
            self.client.update_status(job_id, attempt, self.config.pilot_id, status, minor,
                                      application[:256], output_sandbox)
        except DiracLikeError as exc:
            log.warning("job %s: final status %s not accepted: %s", job_id, status, exc)

    def send_heartbeats(self, now: float) -> None:
        for job in list(self.jobs.values()):
            if now < job.next_heartbeat:
                continue
            job.next_heartbeat = now + self.config.heartbeat_interval
            try:
                commands = self.client.heartbeat(job.job_id, job.attempt, self.config.pilot_id,
                                                 self.metrics(job), self.stdout_tail(job))
            except DiracLikeError as exc:
                log.warning("job %s: heartbeat failed: %s", job.job_id, exc)
                continue
            self.apply_commands(commands)

    def metrics(self, job: RunningJob) -> dict[str, Any]:
        sample = job.sample
        if sample is None:
            return {}
        return {"cpu_seconds": round(sample.cpu_seconds, 2), "rss_mb": round(sample.rss_mb, 1),
                "wall_seconds": round(sample.wall_seconds, 1),
                "disk_mb": round(sample.disk_mb, 1)}

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
            try:
                event = self.events.get(timeout=0.1)
            except queue.Empty:
                continue
            self.events.put(event)
            self.process_events()


def _not_run(minor_status: str) -> PayloadResult:
    return PayloadResult(JobStatus.FAILED, minor_status[:250], None, 0.0, 0.0, 0.0, "")
