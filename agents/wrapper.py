"""The job wrapper: runs one payload under the watchdog (the I/O shell around :mod:`watchdog`).

The payload runs in its own session and process group, in its working directory, with stdout
and stderr going to files there and ``DIRAC_LIKE_JOB_ID`` (plus the caller's additions) in its
environment. It is started by the process's exec helper (agents/spawner.py,
agents/payload_keeper.py): a child subreaper that adopts whatever the payload abandons and kills
the whole tree when the payload exits, when the pilot dies (``kill -9`` included) or when the
lease runs out (``PayloadSpec.lease_file`` older than ``lease`` seconds: the pilot is frozen or
lost the service); a lease kill ends the job Killed with ``kill_reason`` "lease". The helper
reports each payload's end (wait status and CPU); the thread that called
:meth:`PayloadRunner.run` is not the payload's parent, so its end does not touch the payload.

Two ways to run one: :meth:`PayloadRunner.run` blocks its thread until the end (tests,
``run_payload``); the pilot instead calls :meth:`~PayloadRunner.start` from its loop (it returns
once the helper started the payload; ``on_end`` is called from the helper's reader thread when
it ends), :meth:`~PayloadRunner.sample_now` on its own timer, and :meth:`~PayloadRunner.finish`
for the result (at once for a payload that ended by itself and left nothing running; a kill,
which waits ``kill_grace``, in a worker thread).

The payload's arguments are split with :func:`shlex.split` and passed as argv: no shell
unless the job asked for one (``shell=True``: ``/bin/sh -c "executable arguments"``).

While it runs, :meth:`PayloadRunner.run` samples the whole process tree with psutil every
``sample_interval`` seconds (CPU user + system, RSS, and the working directory's size on disk;
the payload itself is remembered at its start, so a payload that outlives a lost exec helper is
still killed), hands each sample to the :class:`~dirac_like.agents.watchdog.Watchdog` and to
``on_sample``. Between samples it waits on one event, set when the payload exits or when a kill
is requested, so either is acted on at once.

Killing: SIGTERM to the process group and to every process of the payload, ``kill_grace``
seconds to go, then SIGKILL to the group and to every survivor. The processes of the payload are
those seen in any sample (the payload itself among them), signalled first, plus, looked for at
kill time and signalled next: the tree under the payload, the members of its process group, and
any process whose environment carries this run's ``DIRAC_LIKE_PAYLOAD_MARKER`` (so a grandchild
that left the tree and the group, e.g. with setsid and a double fork, is still found; only the
processes started since the payload are read for it). A process is identified by PID and start
time, so a reused PID is never signalled. After a payload that exits by itself, what it left
running in its tree or group is killed the same way (the environment scan only runs when
something is left).

Outcome: exit 0 → Done; a non-zero exit → Failed ("Application exited with code N"); killed by
the watchdog → Failed with the watchdog's minor status; killed on request → Killed. A payload
that cannot be started (missing executable, bad arguments) is Failed; no exception escapes.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import shlex
import shutil
import signal
import stat
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil  # type: ignore[import-untyped, unused-ignore]  # no stubs installed

from dirac_like.errors import InvalidArgument
from dirac_like.states import JobStatus

from . import spawner
from .payload_keeper import LEASE_EXIT, LEASE_MARK
from .watchdog import Limits, Sample, Verdict, Watchdog

log = logging.getLogger(__name__)

STDOUT_TAIL_LINES = 20
MB = 1024 * 1024
_TAIL_READ_BYTES = 64 * 1024
MARKER_VARIABLE = "DIRAC_LIKE_PAYLOAD_MARKER"  # unique per run: finds escaped processes
_GONE_POLL = 0.02  # seconds between checks while waiting for killed processes to go
_KILL_WAIT = 10.0  # seconds to wait for processes to go after SIGKILL
HELPER_LOST = "helper"  # kill_reason of a payload whose start the exec helper died under
LEASE_MINOR_STATUS = "Payload killed: no heartbeat acknowledged within the lease"


@dataclass(frozen=True)
class PayloadSpec:
    """What to run. ``stdout``/``stderr`` are file names in ``workdir`` (they may be equal)."""

    job_id: int
    executable: str
    workdir: Path
    arguments: str = ""
    env: Mapping[str, str] = field(default_factory=dict)  # added to the pilot's environment
    stdout: str = "std.out"
    stderr: str = "std.err"
    shell: bool = False
    stdin: str = ""  # a file name in ``workdir`` (StdInput); '' for none
    # The payload is killed when this file (the pilot touches it on each acknowledged heartbeat)
    # is older than ``lease`` seconds; None or 0: no lease.
    lease_file: Path | None = None
    lease: float = 0.0

    def __post_init__(self) -> None:
        for name in ("stdout", "stderr", "stdin"):
            value = getattr(self, name)
            if name == "stdin" and not value:
                continue
            if not value or "/" in value or value in (".", "..") or "\0" in value:
                raise InvalidArgument(f"{name} must be a plain file name, got {value!r}")


@dataclass(frozen=True)
class PayloadResult:
    status: JobStatus  # DONE, FAILED or KILLED
    minor_status: str
    exit_code: int | None  # None when the payload never started; negative: killed by signal
    cpu_seconds: float
    peak_rss_mb: float
    wall_seconds: float
    stdout_tail: str
    # "" | "request" | the watchdog's reason ("memory", "time_left", ...) | "lease" |
    # HELPER_LOST (the pilot's exec helper died before it started the payload)
    kill_reason: str = ""


class PayloadRunner:
    """Runs one payload: :meth:`run` in one thread, :meth:`request_kill` from any other."""

    def __init__(
        self,
        spec: PayloadSpec,
        limits: Limits,
        on_sample: Callable[[Sample], list[str]] | None = None,
        sample_interval: float = 2.0,
        kill_grace: float = 5.0,
    ) -> None:
        if sample_interval <= 0 or kill_grace < 0:
            raise InvalidArgument("sample_interval must be positive and kill_grace >= 0")
        self.spec = spec
        self.watchdog = Watchdog(limits)
        self.on_sample = on_sample
        self.sample_interval = sample_interval
        self.kill_grace = kill_grace
        self._wake = threading.Event()  # set once, on exit or on a kill request
        self._exited = threading.Event()
        self._started = threading.Event()
        self._kill_status = ""
        self._outcome: tuple[JobStatus, str, str] | None = None  # of a kill started (kill_now)
        self._signalled: list[psutil.Process] | None = None  # SIGTERM sent by kill_now
        self._spawner: spawner.Spawner | None = None  # the exec helper that started it
        self._pid: int | None = None  # the payload's (its session and process group too)
        self._returncode: int | None = None
        self._rusage_cpu = 0.0
        self._started_at = 0.0  # time.time() at start: Sample.now/started are on this clock
        self._started_monotonic = 0.0
        self._ended_monotonic = 0.0
        self._tree: dict[int, psutil.Process] = {}
        self._pidfd: int | None = None  # the payload's, until it is looked up (_look_up_root)
        self._root_created: float | None = None  # the payload's start time, as psutil gives it
        self._on_end: Callable[[], None] | None = None
        self._marker = f"{spec.job_id}-{secrets.token_hex(8)}"

    @property
    def pid(self) -> int | None:
        """The payload's PID (also its process group id), once started."""
        return self._pid

    def wait_started(self, timeout: float | None = None) -> bool:
        """Wait until the payload has been started (or failed to start)."""
        return self._started.wait(timeout)

    def request_kill(self, minor_status: str = "Killed on request") -> None:
        """Kill the payload (thread-safe, returns at once); it ends Killed with this status."""
        if not self._kill_status:
            self._kill_status = minor_status
        self._wake.set()

    def run(self) -> PayloadResult:
        """Start the payload, watch it until it ends, clean up its tree; never raises for a
        payload that fails to start. (Blocks this thread: the pilot uses :meth:`start`,
        :meth:`sample_now` and :meth:`finish` from its loop instead.)"""
        not_started = self.start()
        if not_started is not None:
            return not_started
        return self.finish(self._watch())

    def start(self, on_end: Callable[[], None] | None = None) -> PayloadResult | None:
        """Start the payload and return at once: None once it runs (``on_end`` is then called
        once, from the exec helper's reader thread, when the payload has ended), or the result
        of a payload that did not start (killed before, or a start failure). Never raises for a
        payload that fails to start. (:func:`start_payloads` starts several at once.)"""
        return start_payloads([(self, on_end)])[0]

    @property
    def exited(self) -> bool:
        """Whether the payload has ended (its end reported by the exec helper)."""
        return self._exited.is_set()

    def sample_now(self) -> tuple[Sample, Verdict | None]:
        """One sample of the running payload and the watchdog's verdict on it (the pilot's
        loop calls this every ``sample_interval`` instead of :meth:`run`'s own timer)."""
        now = time.monotonic()
        sample = self._sample(self._started_at + (now - self._started_monotonic))
        verdict = self.watchdog.check(sample)
        if verdict and not self._exited.is_set():
            log.warning("job %s: %s", self.spec.job_id, verdict.minor_status)
        return sample, verdict

    def left_running(self) -> bool:
        """After the payload ended: whether anything of the payload is still running (then
        :meth:`finish` kills it, which takes up to ``kill_grace`` and more)."""
        return bool(self._alive() or self._group_alive())

    def finish(self, verdict: Verdict | None = None, tail: bool = True) -> PayloadResult:
        """The payload's result once it has started: the tree killed first if ``verdict`` says
        so or a kill was requested (while it still runs), else what it left running cleaned
        up; waits for the payload's end. Returns at once for a payload that ended by itself and
        left nothing running (see :meth:`left_running`); else it may block for
        ``kill_grace`` and more. ``tail``: with the last lines of its stdout (the pilot, which
        does not use them, saves reading the file)."""
        outcome = self._outcome or self._kill_outcome(verdict)
        if outcome:
            self._kill_tree(outcome[1])
        else:
            self._clean_up_leftovers()
        self._exited.wait()
        return self._result(outcome, tail)

    def kill_now(self, verdict: Verdict | None = None) -> None:
        """Start the kill from the calling thread, at once: its outcome decided (``verdict``'s,
        else the kill requested) and SIGTERM sent to the process group and to every process of
        the payload known. :meth:`finish`, called next (in a thread that may wait), looks for
        the others, signals them and does the rest. Nothing when the payload has ended or was
        never started, or when there is nothing to kill it for. (The pilot's loop calls this
        before it hands the kill to a worker, so the payload is signalled without waiting for
        a worker thread to run: issue 15.)"""
        if self._outcome is not None or self._pid is None:
            return
        self._outcome = self._kill_outcome(verdict)
        if self._outcome is not None:
            self._signalled = self._signal_known(signal.SIGTERM)

    def _kill_outcome(self, verdict: Verdict | None) -> tuple[JobStatus, str, str] | None:
        """(status, minor status, kill reason) of a kill of the payload now, if it is to be
        killed: it still runs, and ``verdict`` says so or a kill was requested."""
        if self._exited.is_set():
            return None
        if verdict:
            return (JobStatus.FAILED, verdict.minor_status, verdict.reason)
        if self._kill_status:
            return (JobStatus.KILLED, self._kill_status, "request")
        return None

    # ----------------------------------------------------------------------------------------
    # start

    def _request(self) -> spawner.SpawnRequest:
        """What to ask the exec helper for (its stdio opened here: the caller closes them);
        :class:`_StartFailure` if the payload cannot be started."""
        spec = self.spec
        if not spec.workdir.is_dir():
            raise _StartFailure(f"Working directory not found: {spec.workdir}")
        argv = self._argv()
        env = {
            **_process_environment(),
            **spec.env,
            "DIRAC_LIKE_JOB_ID": str(spec.job_id),
            MARKER_VARIABLE: self._marker,
        }
        _check_environment(argv, env)
        stdin = self._open_input()
        try:
            stdout, stderr = self._open_outputs()
        except BaseException:
            os.close(stdin)
            raise
        lease = spec.lease if spec.lease_file is not None else 0.0
        self._started_at, self._started_monotonic = time.time(), time.monotonic()
        return spawner.SpawnRequest(
            argv,
            spec.workdir,
            env,
            (stdin, stdout, stderr),
            self._ended,
            str(spec.lease_file or "-"),
            lease,
        )

    def _spawned(
        self, helper: spawner.Spawner | None, outcome: int | OSError, argv: Sequence[str]
    ) -> None:
        """The exec helper's answer to :meth:`_request`: the payload's PID, or why it did not
        start (:class:`_StartFailure`)."""
        if isinstance(outcome, spawner.HelperLost):
            raise _StartFailure(f"Not started: {outcome}", HELPER_LOST)
        if isinstance(outcome, OSError):
            reason = outcome.strerror or outcome
            raise _StartFailure(f"Cannot start {self.spec.executable}: {reason}")
        self._spawner, self._pid = helper, outcome
        self._keep_root()
        if log.isEnabledFor(logging.DEBUG):  # the pilot logs each job's start (and its PID)
            log.debug("job %s: started pid %s: %s", self.spec.job_id, self._pid, shlex.join(argv))

    def _keep_root(self) -> None:
        """A handle on the payload (a pidfd: one system call), so that it is looked up with
        psutil only when a sample or a kill needs it (:meth:`_look_up_root`; issue 15: a psutil
        lookup per start cost the pilot's loop), and a PID reused later is never taken for it.
        Where there are no pidfds, it is looked up now (a payload gone already is not: its end
        is on its way)."""
        assert self._pid is not None
        try:
            self._pidfd = os.pidfd_open(self._pid)
        except ProcessLookupError:
            return  # ended and reaped already: its end is on its way
        except (OSError, AttributeError):  # no pidfds here (Linux < 5.3)
            with contextlib.suppress(psutil.Error):
                self._remember_root(psutil.Process(self._pid))

    def _look_up_root(self) -> None:
        """The payload, remembered as a psutil process (then its pidfd is closed): the first
        time a sample, a kill or the check for leftovers needs it. Nothing if it is gone (the
        exec helper reaped it). The payload itself is then killed if it outlives a lost
        helper."""
        pidfd, self._pidfd = self._pidfd, None
        if pidfd is None:
            return
        try:
            if _still_there(pidfd):
                with contextlib.suppress(psutil.Error):
                    process = psutil.Process(self._root_pid())
                    if _still_there(pidfd):  # the same process: it lived on since the lookup
                        self._remember_root(process)
        finally:
            os.close(pidfd)

    def _remember_root(self, root: psutil.Process) -> None:
        """The payload remembered, and its start time: only processes started since can carry
        its marker (:meth:`_may_carry_marker`)."""
        self._root_created = root.create_time()
        self._remember([root])

    def _root(self) -> psutil.Process | None:
        """The payload as remembered (a PID reused later is never taken for it); None once it
        has ended."""
        if self._exited.is_set():
            return None
        self._look_up_root()
        return self._tree.get(self._root_pid())

    def _argv(self) -> list[str]:
        spec = self.spec
        if not spec.executable:
            raise _StartFailure("Executable not found: (empty)")
        if spec.shell:
            return ["/bin/sh", "-c", f"{spec.executable} {spec.arguments}".strip()]
        try:
            arguments = shlex.split(spec.arguments) if spec.arguments else []
        except ValueError as exc:
            raise _StartFailure(f"Invalid arguments: {exc}") from exc
        executable = spec.executable
        shipped = spec.workdir / executable
        if "/" not in executable and shipped.is_file():
            executable = f"./{executable}"  # shipped in the sandbox: run it from the workdir
            if not os.access(shipped, os.X_OK):  # as DIRAC does for a script without +x
                with contextlib.suppress(OSError):
                    shipped.chmod(shipped.stat().st_mode | stat.S_IXUSR)
        _check_runnable(executable, spec.workdir)
        return [executable, *arguments]

    def _open_input(self) -> int:
        """The payload's standard input: its StdInput file, or /dev/null (a descriptor: the
        pilot opens two or three per job, and a file object costs more than the open)."""
        if not self.spec.stdin:
            return os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        try:
            return os.open(self.spec.workdir / self.spec.stdin, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            raise _StartFailure(
                f"StdInput file {self.spec.stdin} cannot be read: {exc.strerror}"
            ) from exc

    def _open_outputs(self) -> tuple[int, int]:
        """The payload's stdout and stderr files, created empty (descriptors, as ``open(...,
        "wb")`` opens them; closed in :meth:`_start`)."""
        spec = self.spec
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC
        try:
            stdout = os.open(spec.workdir / spec.stdout, flags, 0o666)
            if spec.stderr == spec.stdout:
                return stdout, stdout
            try:
                stderr = os.open(spec.workdir / spec.stderr, flags, 0o666)
            except OSError:
                os.close(stdout)
                raise
        except OSError as exc:
            raise _StartFailure(
                f"Cannot open output files in {spec.workdir}: {exc.strerror}"
            ) from exc
        return stdout, stderr

    def _ended(self, status: int, cpu_seconds: float) -> None:
        """The payload has ended (called from the exec helper's reader thread)."""
        self._returncode = os.waitstatus_to_exitcode(status)
        # CPU of the payload and every descendant reaped, even short-lived ones. (Not
        # ru_maxrss: it counts the helper's own pages shared with the child right after fork.)
        self._rusage_cpu = cpu_seconds
        self._ended_monotonic = time.monotonic()
        self._exited.set()
        self._wake.set()
        if self._on_end is not None:
            self._on_end()

    # ----------------------------------------------------------------------------------------
    # watch

    def _watch(self) -> Verdict | None:
        """Sample until the payload exits, a limit is exceeded or a kill is requested."""
        next_sample = self._started_monotonic + self.sample_interval
        while not self._wake.is_set():
            now = time.monotonic()
            if now >= next_sample:
                sample, verdict = self.sample_now()
                if verdict:
                    return verdict
                self._call_on_sample(sample)
                next_sample = now + self.sample_interval
            self._wake.wait(max(0.0, next_sample - time.monotonic()))
        return None

    def _call_on_sample(self, sample: Sample) -> None:
        if self.on_sample is None:
            return
        try:
            commands = self.on_sample(sample)
        except Exception:
            log.exception("job %s: on_sample failed; the payload goes on", self.spec.job_id)
            return
        if "kill" in commands:
            log.info("job %s: kill command received", self.spec.job_id)
            self.request_kill()

    def _sample(self, now: float) -> Sample:
        processes = self._snapshot()
        cpu = rss = 0.0
        for process in processes:
            try:
                with process.oneshot():
                    times = process.cpu_times()
                    rss += process.memory_info().rss
                cpu += times.user + times.system + times.children_user + times.children_system
            except psutil.Error:
                continue
        disk = directory_size(self.spec.workdir)
        return Sample(
            now=now, started=self._started_at, cpu_seconds=cpu, rss_mb=rss / MB, disk_mb=disk / MB
        )

    def _snapshot(self) -> list[psutil.Process]:
        """The payload's process tree now (root and all descendants), remembered for killing.

        Empty once the root has been reaped: its PID may then belong to a stranger."""
        root = self._root()
        if root is None:
            return []
        children = descendants(root) + self._adopted()
        self._remember(children)
        return [root, *children]

    def _adopted(self) -> list[psutil.Process]:
        """What the payload started and abandoned (re-parented to the exec helper, which said
        so), with everything under it."""
        found = []
        if self._spawner is None:
            return []
        for pid, parent in self._spawner.adopted(self._root_pid()):
            with contextlib.suppress(psutil.Error):
                orphan = psutil.Process(pid)
                if orphan.ppid() == parent:  # still the helper's: not a reused PID
                    found += [orphan, *descendants(orphan)]
        return found

    def processes(self) -> list[int]:
        """The PIDs of the payload's processes now, as sampled (none once it has ended)."""
        return [process.pid for process in self._snapshot()]

    def _remember(self, processes: Iterable[psutil.Process]) -> None:
        for process in processes:
            if self._tree.get(process.pid) != process:  # new, or the PID was reused
                self._tree[process.pid] = process

    def _root_pid(self) -> int:
        assert self._pid is not None
        return self._pid

    # ----------------------------------------------------------------------------------------
    # kill

    def _kill_tree(self, why: str) -> None:
        log.info("job %s: killing the payload tree (%s)", self.spec.job_id, why)
        if self._signalled is None:
            self._signal_all(signal.SIGTERM)
        else:  # the group and the processes known had it from kill_now: the others now
            self._signal_found(signal.SIGTERM, self._signalled)
        if self._wait_gone(self.kill_grace):
            return
        log.info(
            "job %s: still running %.1f s after SIGTERM: SIGKILL", self.spec.job_id, self.kill_grace
        )
        self._signal_all(signal.SIGKILL)
        if not self._wait_gone(_KILL_WAIT):
            log.error(
                "job %s: processes survived SIGKILL: %s",
                self.spec.job_id,
                sorted(p.pid for p in self._alive()),
            )

    def _clean_up_leftovers(self) -> None:
        """After the payload exited by itself: kill what it left running (cheap when none)."""
        if self._alive() or self._group_alive():
            self._kill_tree("processes left running after the payload exited")

    def _signal_all(self, signum: int) -> None:
        """Signal the process group and every process of the payload known, at once; then
        look for the others (:meth:`_discover`: a scan of the node's processes, which took tens
        of milliseconds on a busy node and once delayed every kill by as much; issue 15) and
        signal those found."""
        self._signal_found(signum, self._signal_known(signum))

    def _signal_found(self, signum: int, signalled: list[psutil.Process]) -> None:
        """Look for the payload's processes (:meth:`_discover`) and signal those alive that are
        not in ``signalled``."""
        self._discover()
        for process in self._alive():
            if process not in signalled:
                with contextlib.suppress(psutil.Error):
                    process.send_signal(signum)

    def _signal_known(self, signum: int) -> list[psutil.Process]:
        """The process group and the processes remembered (still alive) signalled; those. The
        payload is looked up first (:meth:`_root`), while it surely lives: its start time
        bounds the scan that follows."""
        self._root()
        # ProcessLookupError: the group is empty now; the survivors are signalled one by one.
        if self._group_is_ours():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._root_pid(), signum)
        alive = self._alive()
        for process in alive:
            with contextlib.suppress(psutil.Error):
                process.send_signal(signum)
        return alive

    def _discover(self) -> None:
        """Remember every process of the payload: its tree now, the members of its process
        group, and any process carrying the payload's marker in its environment (one that left
        both the tree and the group, e.g. a daemon that double-forked and called setsid). Only
        a process started no earlier than the payload can carry its marker: the environment
        (slow to read: it takes the process's memory lock) is read of those only."""
        self._snapshot()
        group = self._root_pid() if self._group_is_ours() else -1
        me = os.getpid()
        for process in psutil.process_iter():
            if process.pid in (me, 1) or self._tree.get(process.pid) == process:
                continue
            try:
                if os.getpgid(process.pid) == group or (
                    self._may_carry_marker(process)
                    and process.environ().get(MARKER_VARIABLE) == self._marker
                ):
                    self._remember([process])
            except (psutil.Error, OSError):
                continue  # gone, or not ours to look at

    def _may_carry_marker(self, process: psutil.Process) -> bool:
        """Whether ``process`` was started no earlier than the payload (both start times are
        psutil's, on the same clock and with the same rounding); True when the payload's is not
        known."""
        return self._root_created is None or process.create_time() >= self._root_created

    def _group_is_ours(self) -> bool:
        """Whether the payload's process group id still names its group: the payload (the
        group's leader) is not reaped yet, or a process of the payload still in the group is
        alive (the kernel reuses no id a group still has). Once the group is empty its id may
        be a new process's, whose group must never be signalled."""
        if not self._exited.is_set():
            return True
        group = self._root_pid()
        for process in self._alive():
            with contextlib.suppress(OSError):
                if os.getpgid(process.pid) == group:
                    return True
        return False

    def _group_alive(self) -> bool:
        if not self._group_is_ours():
            return False
        try:
            os.killpg(self._root_pid(), 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return False  # the group id now belongs to someone else's processes
        return True

    def _wait_gone(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self._alive() or not self._exited.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self._exited.wait(min(_GONE_POLL, left))
        return True

    def _alive(self) -> list[psutil.Process]:
        self._look_up_root()
        alive = []
        # The payload itself too: reported ended while it lives when its exec helper was lost
        # (a psutil.Process is known by its start time too: a reused PID is not taken for it).
        for process in self._tree.values():
            try:
                if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                    alive.append(process)
            except psutil.Error:
                continue
        return alive

    # ----------------------------------------------------------------------------------------
    # result

    def _result(self, outcome: tuple[JobStatus, str, str] | None, tail: bool) -> PayloadResult:
        """``outcome``: (status, minor status, kill reason) when the wrapper killed the tree."""
        self._look_up_root()  # (closes the payload's pidfd, if still open)
        code = self._returncode
        assert code is not None
        if outcome:
            status, minor, reason = outcome
        elif code == LEASE_EXIT and (self.spec.workdir / LEASE_MARK).exists():
            status, minor, reason = JobStatus.KILLED, LEASE_MINOR_STATUS, "lease"
        elif code == 0:
            status, minor, reason = JobStatus.DONE, "Execution Complete", ""
        elif code < 0:
            status, minor = JobStatus.FAILED, f"Application killed by {_signal_name(-code)}"
            reason = ""
        else:
            status, minor, reason = JobStatus.FAILED, f"Application exited with code {code}", ""
        peaks = self.watchdog.peaks
        log.debug("job %s: %s (%s)", self.spec.job_id, status, minor)
        return PayloadResult(
            status=status,
            minor_status=minor,
            exit_code=code,
            cpu_seconds=max(peaks.cpu_seconds, self._rusage_cpu),
            peak_rss_mb=peaks.rss_mb,
            wall_seconds=self._ended_monotonic - self._started_monotonic,
            stdout_tail=tail_lines(self.spec.workdir / self.spec.stdout) if tail else "",
            kill_reason=reason,
        )

    def _start_failed(self, failure: _StartFailure) -> PayloadResult:
        log.warning("job %s: %s", self.spec.job_id, failure.message)
        return self._not_started(JobStatus.FAILED, failure.message, failure.kill_reason)

    def _not_started(self, status: JobStatus, minor: str, kill_reason: str = "") -> PayloadResult:
        return PayloadResult(
            status=status,
            minor_status=minor,
            exit_code=None,
            cpu_seconds=0.0,
            peak_rss_mb=0.0,
            wall_seconds=0.0,
            stdout_tail="",
            kill_reason="request" if status is JobStatus.KILLED else kill_reason,
        )


def start_payloads(
    starts: Sequence[tuple[PayloadRunner, Callable[[], None] | None]],
) -> list[PayloadResult | None]:
    """Start these payloads (each runner with its ``on_end``, as :meth:`PayloadRunner.start`)
    with one request to the exec helper (issue 15: a pilot's turn starts its jobs together,
    one message and one reply instead of one each per job); for each, None once it runs or the
    result of a payload that did not start. Never raises for a payload that fails to start."""
    results: list[PayloadResult | None] = [None] * len(starts)
    asked: list[tuple[int, spawner.SpawnRequest]] = []
    helper: spawner.Spawner | None = None
    outcomes: list[int | OSError] = []
    try:
        for index, (runner, on_end) in enumerate(starts):
            runner._on_end = on_end
            if runner._kill_status:
                results[index] = runner._not_started(JobStatus.KILLED, runner._kill_status)
                continue
            try:
                asked.append((index, runner._request()))
            except _StartFailure as exc:
                results[index] = runner._start_failed(exc)
        try:
            if asked:
                helper = spawner.shared()
                outcomes += helper.spawn_many([request for _, request in asked])
        except OSError as exc:  # no helper could be started
            outcomes = [exc] * len(asked)
    finally:  # (also when a bug raised: no descriptor is left open)
        for _, request in asked:
            for descriptor in set(request.stdio):
                os.close(descriptor)
    for (index, request), outcome in zip(asked, outcomes, strict=True):
        runner = starts[index][0]
        try:
            runner._spawned(helper, outcome, request.argv)
        except _StartFailure as exc:
            results[index] = runner._start_failed(exc)
    for runner, _ in starts:
        runner._started.set()
    return results


def _still_there(pidfd: int) -> bool:
    """Whether the process of ``pidfd`` has not been reaped yet (a zombie counts)."""
    try:
        signal.pidfd_send_signal(pidfd, 0)
    except ProcessLookupError:
        return False
    return True


class _StartFailure(Exception):
    def __init__(self, message: str, kill_reason: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.kill_reason = kill_reason  # HELPER_LOST: not the job's fault


_environment: tuple[dict[bytes, bytes], dict[str, str]] = ({}, {})


# The kernel lists each thread's children (/proc/PID/task/TID/children, Linux 3.5 with
# CONFIG_PROC_CHILDREN): a tree is read in a file per process of it, where psutil's children()
# reads the stat of every process on the node (~5 ms of CPU with 130 processes, at every sample
# and kill; issue 15).
_CHILDREN_LISTS = os.path.exists(f"/proc/self/task/{os.getpid()}/children")


def descendants(process: psutil.Process) -> list[psutil.Process]:
    """Every live process below ``process`` (children, theirs, ...), from the kernel's lists
    of children; from psutil's scan where the kernel has none."""
    if not _CHILDREN_LISTS:
        try:
            return list(process.children(recursive=True))
        except psutil.Error:
            return []
    found: list[psutil.Process] = []
    stack, seen = [process.pid], {process.pid}
    while stack:
        for pid in _children_of(stack.pop()):
            if pid in seen:  # a PID reused while the tree was read
                continue
            seen.add(pid)
            with contextlib.suppress(psutil.Error):
                found.append(psutil.Process(pid))
                stack.append(pid)
    return found


def _children_of(pid: int) -> list[int]:
    """The PIDs of the children of every thread of ``pid`` (none if it is gone)."""
    children: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return children
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/children", "rb") as listed:
                children += [int(child) for child in listed.read().split()]
        except (OSError, ValueError):
            continue
    return children


def _process_environment() -> dict[str, str]:
    """``dict(os.environ)``, decoded again only when the environment changed: decoding it item
    by item was a quarter of a payload's start (issue 15). CPython keeps the raw environment
    in ``os.environ._data``; comparing it with the copy kept is one C-level dict comparison."""
    global _environment
    raw = getattr(os.environ, "_data", None)
    if not isinstance(raw, dict):
        return dict(os.environ)
    kept, decoded = _environment
    if raw != kept:
        decoded = dict(os.environ)
        _environment = (dict(raw), decoded)
    return decoded


def _check_environment(argv: list[str], env: Mapping[str, str]) -> None:
    """Refuse what exec would: a NUL byte in the command or the environment, a variable name
    with '=' in it."""
    for text in [*argv, *env, *env.values()]:
        if "\0" in text:
            raise _StartFailure(f"Cannot start {argv[0]}: embedded null byte")
    for name in env:
        if not name or "=" in name:
            raise _StartFailure(f"Cannot start {argv[0]}: illegal environment variable name")


def _check_runnable(executable: str, workdir: Path) -> None:
    """Refuse what the payload's exec would fail on (with a clearer message than exec's)."""
    if "/" in executable:
        path = os.path.join(workdir, executable)
        try:
            mode = os.stat(path).st_mode
        except (OSError, ValueError):
            raise _StartFailure(f"Executable not found: {executable}") from None
        if stat.S_ISDIR(mode) or not os.access(path, os.X_OK):
            raise _StartFailure(f"Executable not permitted: {executable}")
    elif shutil.which(executable) is None:
        raise _StartFailure(f"Executable not found: {executable}")


def start_exec_helper() -> None:
    """Start this process's exec helper now rather than at the first payload's start, which
    then waited for its Python to come up (0.1 to 0.4 s on a busy node; a kill of that first
    job waited as long: the loop reads no kill while it waits for a start). A helper that
    cannot be started now is tried again at the first start, as before."""
    try:
        spawner.shared()
    except OSError as exc:
        log.warning("the exec helper did not start (tried again at the first payload): %s", exc)


def run_payload(
    spec: PayloadSpec,
    limits: Limits,
    on_sample: Callable[[Sample], list[str]] | None = None,
    sample_interval: float = 2.0,
    kill_grace: float = 5.0,
) -> PayloadResult:
    """Run one payload to its end. To kill it from another thread, use :class:`PayloadRunner`
    directly and call its :meth:`~PayloadRunner.request_kill`."""
    return PayloadRunner(spec, limits, on_sample, sample_interval, kill_grace).run()


def directory_size(root: Path) -> int:
    """Bytes on disk under ``root`` (st_blocks x 512, each inode once, links not followed)."""
    total = 0
    seen: set[tuple[int, int]] = set()
    pending = [root]
    while pending:
        try:
            entries = list(os.scandir(pending.pop()))
        except OSError:
            continue
        for entry in entries:
            try:
                info = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if (info.st_dev, info.st_ino) in seen:
                continue
            seen.add((info.st_dev, info.st_ino))
            total += info.st_blocks * 512
            if stat.S_ISDIR(info.st_mode):
                pending.append(Path(entry.path))
    return total


def tail_lines(path: Path, count: int = STDOUT_TAIL_LINES) -> str:
    """The last ``count`` lines of a text file ("" if it cannot be read); reads at most 64 KB."""
    try:
        with open(path, "rb") as handle:
            size = handle.seek(0, os.SEEK_END)
            handle.seek(max(0, size - _TAIL_READ_BYTES))
            data = handle.read()
    except OSError:
        return ""
    lines = data.decode(errors="replace").splitlines()
    return "\n".join(lines[-count:])


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"
