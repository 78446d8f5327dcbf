"""The ``slurm`` fabric: each pilot a Slurm batch job, through sbatch, squeue, scancel.

A pilot's reference is its Slurm job id. ``submit`` runs one ``sbatch`` whose batch script (given
on stdin) execs the pilot's command; the job asks for the request's cores (``--cpus-per-task`` on
one node), memory (``--mem``, when given) and time limit (``--time``), is named after the pilot id,
starts in the request's working directory (``--chdir``) with the request's environment added to
the director's (``--export=ALL``), is not requeued by Slurm (``--no-requeue``: a lost pilot is the
director's to replace), and writes ``<base_dir>/<job id>.out`` and ``.err``. So ``base_dir`` and
the working directories must be on a file system the worker nodes share with the director.

The partition is the request's ``queue`` (the CE's ``partition``) when it names one, else the
fabric's ``partition``, else the cluster's default.

State: one ``squeue --states=all`` call per 500 references gives every job slurmctld still holds
(pending, running, and ended ones for ``MinJobAge``, 300 s by default; ``scontrol show job`` sees
no more than that). Jobs it no longer lists are looked up in the job-completion log (jobcomp/
filetxt) and with ``sacct`` when the cluster has accounting; ``scontrol show config`` says which,
once per fabric. A job found nowhere is ABORTED (see base.py). Slurm states map onto pilot states
in :func:`pilot_state`; a job pending for a reason that can never clear (e.g. a time limit above
its partition's, on a cluster that does not refuse those at submission) is cancelled and FAILED.
:meth:`SlurmFabric.describe` tells a job's Slurm state, reason and exit code in words (with the
bootstrap's reason for its exit codes).

Failures: sbatch refusing a pilot (bad partition, rejected time limit, too many cores) is a
:class:`FabricError` with Slurm's message; Slurm unreachable (commands missing, slurmctld down, a
command not answering within ``timeout``) is a FabricError saying so, from any method but
``close`` (which logs it). No call waits longer than ``timeout``.

Stopping: ``cancel`` is ``scancel`` (SIGTERM to every process of the job, SIGKILL after the
cluster's ``KillWait``). ``close`` cancels the jobs this object submitted that are still alive and
waits (up to ``timeout``) until Slurm has ended them, when ``cancel_on_close`` (the default, the
contract of base.py); a site director passes ``cancel_on_close=False`` so that its pilots outlive
it, as batch pilots do, and the next director run follows them by their job ids.
"""

from __future__ import annotations

import logging
import os
import re
import shlex
import shutil
import subprocess
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..batch_env import bootstrap_reason
from .base import (
    OUTPUT_TAIL_BYTES,
    Fabric,
    FabricError,
    PilotRequest,
    PilotState,
    UnknownPilotRef,
)

log = logging.getLogger(__name__)

SLURM_TIMEOUT = 30.0  # seconds a Slurm command may take
SQUEUE_CHUNK = 500  # job ids per squeue call
REMEMBERED_JOBS = 10_000  # last-seen jobs kept for describe()
CLOSE_POLL_SECONDS = 0.2
SQUEUE_FORMAT = "JobID:|,State:|,Reason:|,exit_code:|"
_JOB_ID = re.compile(r"[0-9]+")
_NOT_KNOWN = ("Invalid job id", "already completing or completed", "Job has already finished")

WAITING_STATES = frozenset(
    {"PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_FED", "REQUEUE_HOLD", "RESV_DEL_HOLD"}
)
RUNNING_STATES = frozenset(
    {"RUNNING", "COMPLETING", "SUSPENDED", "STOPPED", "SIGNALING", "STAGE_OUT", "RESIZING"}
)
FAILED_STATES = frozenset(
    {
        "FAILED",
        "TIMEOUT",
        "NODE_FAIL",
        "OUT_OF_MEMORY",
        "BOOT_FAIL",
        "DEADLINE",
        "PREEMPTED",
        "SPECIAL_EXIT",
    }
)
# Pending for one of these, a job never starts: the fabric cancels it and calls it FAILED.
HOPELESS_REASONS = frozenset(
    {
        "PartitionTimeLimit",
        "PartitionNodeLimit",
        "BadConstraints",
        "InvalidAccount",
        "InvalidQOS",
        "DependencyNeverSatisfied",
        "QOSMaxWallDurationPerJobLimit",
    }
)


@dataclass(frozen=True)
class SlurmSettings:
    """How a SlurmFabric reaches its cluster (the keyword arguments of SlurmFabric)."""

    base_dir: Path  # pilots' output files; shared with the worker nodes
    partition: str = ""  # "": the cluster's default (a request's queue wins)
    slurm_conf: Path | None = None  # exported as SLURM_CONF to the commands; None: theirs
    bin_dir: Path | None = None  # where sbatch, squeue, ... are; None: on PATH
    timeout: float = SLURM_TIMEOUT
    jobcomp_file: Path | None = None  # None: found through `scontrol show config`
    sbatch_args: tuple[str, ...] = ()  # more sbatch options, e.g. ("--account=grid",)
    cancel_on_close: bool = True


@dataclass(frozen=True)
class SlurmJob:
    """One job as Slurm reports it."""

    job_id: str
    state: str  # Slurm's state name, e.g. "COMPLETED"
    reason: str = ""  # why it is pending, or why it ended
    exit_code: int | None = None  # None: not ended, or unknown
    signal: int = 0  # the signal that ended it, 0: none

    @property
    def pilot_state(self) -> PilotState:
        return pilot_state(self.state)

    @property
    def hopeless(self) -> bool:
        return self.state == "PENDING" and self.reason in HOPELESS_REASONS


# -- decisions (pure) ----------------------------------------------------------------------------


def pilot_state(slurm_state: str) -> PilotState:
    """The pilot state of a job in Slurm state ``slurm_state`` (unknown states: ABORTED)."""
    state = slurm_state.split()[0].rstrip("+") if slurm_state.strip() else ""
    if state in WAITING_STATES:
        return PilotState.WAITING
    if state in RUNNING_STATES:
        return PilotState.RUNNING
    if state == "COMPLETED":
        return PilotState.DONE
    if state in FAILED_STATES:
        return PilotState.FAILED
    return PilotState.ABORTED  # CANCELLED, REVOKED, and anything this code does not know


def slurm_time(seconds: int) -> str:
    """``seconds`` as sbatch's ``--time`` (days-hours:minutes:seconds; Slurm rounds up to whole
    minutes)."""
    if seconds < 1:
        raise ValueError(f"a time limit must be at least 1 second, got {seconds}")
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{days}-{hours:02d}:{minutes:02d}:{secs:02d}"


def request_partition(request: PilotRequest, default: str) -> str:
    """The partition for ``request``: its ``queue`` (the CE's partition) if it has one."""
    return request.queue or default


def sbatch_argv(
    request: PilotRequest, settings: SlurmSettings, sbatch: str = "sbatch"
) -> list[str]:
    """The sbatch command line for ``request`` (its batch script goes on stdin)."""
    output = Path(os.path.abspath(settings.base_dir))
    argv = [
        sbatch,
        "--parsable",
        f"--job-name={request.pilot_id}",
        f"--output={output / '%j.out'}",
        f"--error={output / '%j.err'}",
        f"--chdir={os.path.abspath(request.workdir)}",
        "--nodes=1",
        "--ntasks=1",
        f"--cpus-per-task={request.cores}",
        f"--time={slurm_time(request.wall_seconds)}",
        "--export=ALL",
        "--no-requeue",
    ]
    if request.memory_mb:
        argv.append(f"--mem={request.memory_mb}M")
    partition = request_partition(request, settings.partition)
    if partition:
        argv.append(f"--partition={partition}")
    return argv + list(settings.sbatch_args)


def batch_script(command: Sequence[str]) -> str:
    """The batch script that runs ``command`` as the job's main process."""
    return f"#!/bin/sh\nexec {shlex.join(command)}\n"


def parse_job_id(stdout: str) -> str:
    """The job id in ``sbatch --parsable`` output (``ID`` or ``ID;CLUSTER``)."""
    job_id = stdout.strip().split(";")[0]
    if not _JOB_ID.fullmatch(job_id):
        raise ValueError(f"no job id in sbatch output {stdout.strip()[:200]!r}")
    return job_id


def slurm_message(stderr: str) -> str:
    """A Slurm command's error output on one line, without the ``sbatch: error:`` prefixes."""
    lines = [re.sub(r"^\w+: (error|fatal): ", "", line.strip()) for line in stderr.splitlines()]
    return "; ".join(line for line in lines if line)[-1000:] or "no message"


def exit_status(wait_status: int) -> tuple[int | None, int]:
    """(exit code, signal) from a wait status (squeue's exit_code field)."""
    signal = wait_status & 0x7F
    return (None, signal) if signal else (wait_status >> 8, 0)


def parse_squeue(text: str) -> dict[str, SlurmJob]:
    """Jobs from ``squeue -h -O`` with :data:`SQUEUE_FORMAT`; other lines are skipped."""
    jobs: dict[str, SlurmJob] = {}
    for line in text.splitlines():
        fields = [field.strip() for field in line.split("|")]
        if len(fields) < 4 or not _JOB_ID.fullmatch(fields[0]) or not fields[1]:
            continue  # array and heterogeneous job ids (123_4, 123+0) are not pilots
        code, signal = exit_status(int(fields[3])) if fields[3].isdigit() else (None, 0)
        if pilot_state(fields[1]) in (PilotState.WAITING, PilotState.RUNNING):
            code, signal = None, 0
        reason = "" if fields[2] == "None" else fields[2]
        jobs[fields[0]] = SlurmJob(fields[0], fields[1], reason, code, signal)
    return jobs


def parse_exit_code(text: str) -> tuple[int | None, int]:
    """(exit code, signal) from Slurm's ``CODE:SIGNAL`` (scontrol, jobcomp, sacct)."""
    code, _, signal = text.partition(":")
    if not code.isdigit():
        return None, 0
    signal_number = int(signal) if signal.isdigit() else 0
    return (None, signal_number) if signal_number else (int(code), 0)


def parse_jobcomp(text: str, wanted: Iterable[str]) -> dict[str, SlurmJob]:
    """The ``wanted`` jobs in a jobcomp/filetxt log (a job's last line wins: requeues)."""
    wanted = set(wanted)
    jobs: dict[str, SlurmJob] = {}
    for line in text.splitlines():
        job_id = re.search(r"(?:^|\s)JobId=(\d+)", line)
        state = re.search(r"\sJobState=(\S+)", line)
        if not job_id or not state or job_id.group(1) not in wanted:
            continue
        exit_code = re.search(r"\sExitCode=(\S+)", line)
        code, signal = parse_exit_code(exit_code.group(1) if exit_code else "")
        jobs[job_id.group(1)] = SlurmJob(job_id.group(1), state.group(1), "", code, signal)
    return jobs


def parse_sacct(text: str) -> dict[str, SlurmJob]:
    """Jobs from ``sacct -n -X -P -o JobID,State,ExitCode`` (``CANCELLED by 0`` is CANCELLED)."""
    jobs: dict[str, SlurmJob] = {}
    for line in text.splitlines():
        fields = line.strip().split("|")
        if len(fields) < 3 or not _JOB_ID.fullmatch(fields[0]) or not fields[1].strip():
            continue
        state = fields[1].split()[0]
        code, signal = parse_exit_code(fields[2])
        jobs[fields[0]] = SlurmJob(fields[0], state, "", code, signal)
    return jobs


def parse_config(text: str) -> dict[str, str]:
    """``scontrol show config`` as a mapping (``Key = Value`` lines)."""
    config: dict[str, str] = {}
    for line in text.splitlines():
        key, separator, value = line.partition("=")
        if separator and key.strip() and " " not in key.strip():
            config[key.strip()] = value.strip()
    return config


def describe(job: SlurmJob | None, job_id: str) -> str:
    """A job's Slurm state in words, for the director's log and status."""
    if job is None:
        return f"Slurm job {job_id}: not known to Slurm (any more)"
    text = f"Slurm job {job_id}: {job.state}"
    if job.reason:
        text += f" ({job.reason})"
    if job.exit_code:
        text += f", exit code {job.exit_code}"
        why = bootstrap_reason(job.exit_code)
        text += f": {why}" if why else ""
    if job.signal:
        text += f", killed by signal {job.signal}"
    return text


def output_text(stdout: str, stderr: str) -> str:
    """A pilot's output as the fabrics show it: stdout, then stderr under a marker."""
    if not stderr:
        return stdout
    separator = "" if not stdout or stdout.endswith("\n") else "\n"
    return f"{stdout}{separator}--- stderr ---\n{stderr}"


# -- the shell -----------------------------------------------------------------------------------


class SlurmFabric(Fabric):
    name = "slurm"

    def __init__(
        self,
        base_dir: Path,
        partition: str = "",
        slurm_conf: Path | None = None,
        bin_dir: Path | None = None,
        timeout: float = SLURM_TIMEOUT,
        jobcomp_file: Path | None = None,
        sbatch_args: Sequence[str] = (),
        cancel_on_close: bool = True,
    ) -> None:
        self.settings = SlurmSettings(
            Path(base_dir),
            partition,
            None if slurm_conf is None else Path(slurm_conf),
            None if bin_dir is None else Path(bin_dir),
            timeout,
            None if jobcomp_file is None else Path(jobcomp_file),
            tuple(sbatch_args),
            cancel_on_close,
        )
        self._lock = threading.Lock()  # the director may ask from its scheduler's thread
        self._submitted: set[str] = set()  # alive as far as this object knows (for close)
        self._seen: dict[str, SlurmJob] = {}  # the last state of each job asked about
        self._given_up: set[str] = set()  # hopeless pending jobs cancelled: FAILED for good
        self._config: dict[str, str] | None = None  # scontrol show config, once
        self._closed = False
        self.settings.base_dir.mkdir(parents=True, exist_ok=True)

    # -- the interface -----------------------------------------------------------------------

    def submit(self, request: PilotRequest) -> str:
        what = f"pilot {request.pilot_id}"
        if not request.command:
            raise FabricError(f"{what}: empty command")
        if self.closed:
            raise FabricError(f"{what}: the slurm fabric is closed")
        try:
            argv = sbatch_argv(request, self.settings, self._command("sbatch"))
            request.workdir.mkdir(parents=True, exist_ok=True)
        except (ValueError, OSError) as exc:
            raise FabricError(f"{what}: {exc}") from None
        done = self._run(argv, what, batch_script(request.command), request.env)
        if done.returncode != 0:
            raise FabricError(f"{what}: sbatch refused it: {slurm_message(done.stderr)}")
        try:
            job_id = parse_job_id(done.stdout)
        except ValueError as exc:
            raise FabricError(f"{what}: {exc}") from None
        self._accept(job_id, what)
        self._touch_output(job_id)
        log.info("%s submitted as Slurm job %s", what, job_id)
        return job_id

    def status(self, refs: list[str]) -> dict[str, PilotState]:
        ids = sorted({ref for ref in refs if _JOB_ID.fullmatch(ref)}, key=int)
        jobs = self._query(ids) if ids else {}
        self._give_up([job for job in jobs.values() if job.hopeless])
        with self._lock:
            self._remember(jobs)
            given_up = set(self._given_up)
        states = {ref: PilotState.ABORTED for ref in refs}
        for job_id, job in jobs.items():
            if job_id in states:
                states[job_id] = PilotState.FAILED if job_id in given_up else job.pilot_state
        return states

    def cancel(self, ref: str) -> None:
        if _JOB_ID.fullmatch(ref):
            self._scancel([ref])

    def output(self, ref: str, max_bytes: int = OUTPUT_TAIL_BYTES) -> str:
        paths = [self.settings.base_dir / f"{ref}.{kind}" for kind in ("out", "err")]
        if not _JOB_ID.fullmatch(ref) or not any(path.exists() for path in paths):
            raise UnknownPilotRef(f"no output of Slurm job {ref!r} in {self.settings.base_dir}")
        return output_text(*(_tail(path, max_bytes) for path in paths))

    def close(self) -> None:
        with self._lock:
            self._closed = True
            alive = sorted(self._submitted, key=int)
        if not self.settings.cancel_on_close or not alive:
            return
        try:
            self._scancel(alive)
            self._wait_ended(alive, time.monotonic() + self.settings.timeout)
        except FabricError as exc:
            log.error("slurm fabric: cannot cancel jobs %s on close: %s", alive, exc.message)

    # -- more than the interface -------------------------------------------------------------

    @property
    def closed(self) -> bool:
        with self._lock:
            return self._closed

    def describe(self, ref: str) -> str:
        """The Slurm state, reason and exit code of ``ref`` as last seen by :meth:`status`."""
        with self._lock:
            return describe(self._seen.get(ref), ref)

    # -- Slurm commands ----------------------------------------------------------------------

    def _query(self, ids: list[str]) -> dict[str, SlurmJob]:
        jobs: dict[str, SlurmJob] = {}
        for start in range(0, len(ids), SQUEUE_CHUNK):
            jobs.update(self._squeue(ids[start : start + SQUEUE_CHUNK]))
        missing = [job_id for job_id in ids if job_id not in jobs]
        if missing:
            jobs.update(self._ended_elsewhere(missing))
        return jobs

    def _squeue(self, ids: list[str]) -> dict[str, SlurmJob]:
        argv = [
            self._command("squeue"),
            "-h",
            "--states=all",
            "-j",
            ",".join(ids),
            "-O",
            SQUEUE_FORMAT,
        ]
        done = self._run(argv, "squeue")
        if done.returncode != 0 and not _not_known(done.stderr):
            raise FabricError(f"squeue failed: {slurm_message(done.stderr)}")
        return parse_squeue(done.stdout)

    def _ended_elsewhere(self, ids: list[str]) -> dict[str, SlurmJob]:
        """Jobs slurmctld forgot: from the jobcomp log, then sacct, when the cluster has them."""
        config = self._cluster_config()
        jobs: dict[str, SlurmJob] = {}
        jobcomp = self.settings.jobcomp_file
        if jobcomp is None and config.get("JobCompType") == "jobcomp/filetxt":
            jobcomp = Path(config.get("JobCompLoc", ""))
        if jobcomp is not None:
            jobs.update(_read_jobcomp(jobcomp, ids))
        missing = [job_id for job_id in ids if job_id not in jobs]
        if missing and config.get("AccountingStorageType") == "accounting_storage/slurmdbd":
            jobs.update(self._sacct(missing))
        return jobs

    def _sacct(self, ids: list[str]) -> dict[str, SlurmJob]:
        argv = [
            self._command("sacct"),
            "-n",
            "-X",
            "-P",
            "-j",
            ",".join(ids),
            "-o",
            "JobID,State,ExitCode",
        ]
        done = self._run(argv, "sacct")
        if done.returncode != 0:
            log.warning("sacct failed: %s", slurm_message(done.stderr))
            return {}
        return parse_sacct(done.stdout)

    def _cluster_config(self) -> dict[str, str]:
        with self._lock:
            if self._config is not None:
                return self._config
        done = self._run([self._command("scontrol"), "show", "config"], "scontrol show config")
        if done.returncode != 0:
            log.warning("scontrol show config failed: %s", slurm_message(done.stderr))
            return {}
        config = parse_config(done.stdout)
        with self._lock:
            self._config = config
        return config

    def _scancel(self, ids: list[str]) -> None:
        done = self._run([self._command("scancel"), *ids], "scancel")
        if done.returncode != 0 and not _not_known(done.stderr):
            raise FabricError(f"scancel {' '.join(ids)} failed: {slurm_message(done.stderr)}")
        log.info("Slurm jobs %s cancelled", ", ".join(ids))

    def _give_up(self, jobs: list[SlurmJob]) -> None:
        """Cancel jobs that can never start; they stay FAILED."""
        with self._lock:
            fresh = [job for job in jobs if job.job_id not in self._given_up]
        for job in fresh:
            log.warning(
                "Slurm job %s can never start (pending: %s): cancelling it, pilot Failed",
                job.job_id,
                job.reason,
            )
        if fresh:
            self._scancel([job.job_id for job in fresh])
            with self._lock:
                self._given_up.update(job.job_id for job in fresh)

    def _wait_ended(self, ids: list[str], deadline: float) -> None:
        while True:
            states = self.status(ids)
            if all(state.final for state in states.values()):
                return
            if time.monotonic() > deadline:
                log.warning(
                    "slurm fabric: jobs %s not ended %.0f s after scancel",
                    ids,
                    self.settings.timeout,
                )
                return
            time.sleep(CLOSE_POLL_SECONDS)

    def _run(
        self,
        argv: list[str],
        what: str,
        script: str | None = None,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run a Slurm command; FabricError when it is missing or does not answer in time."""
        environ = {**os.environ, **(env or {})}
        if self.settings.slurm_conf is not None:
            environ["SLURM_CONF"] = str(self.settings.slurm_conf)
        try:
            return subprocess.run(
                argv,
                input=script,
                stdin=None if script is not None else subprocess.DEVNULL,
                capture_output=True,
                text=True,
                env=environ,
                timeout=self.settings.timeout,
                check=False,
            )
        except FileNotFoundError:
            raise FabricError(
                f"{what}: Slurm unreachable: {argv[0]} not found (is the Slurm "
                "client installed, and on PATH?)"
            ) from None
        except subprocess.TimeoutExpired:
            raise FabricError(
                f"{what}: Slurm unreachable: {Path(argv[0]).name} did not answer "
                f"within {self.settings.timeout:g} s (is slurmctld up?)"
            ) from None
        except OSError as exc:
            raise FabricError(f"{what}: cannot run {argv[0]}: {exc.strerror or exc}") from None

    def _command(self, name: str) -> str:
        """The path of a Slurm command (found on this process's PATH, not on the PATH a
        request's environment may set for its pilot)."""
        if self.settings.bin_dir is not None:
            return str(self.settings.bin_dir / name)
        return shutil.which(name) or name

    # -- bookkeeping -------------------------------------------------------------------------

    def _accept(self, job_id: str, what: str) -> None:
        with self._lock:
            closed = self._closed
            if not closed:
                self._submitted.add(job_id)
        if closed:  # closed while sbatch ran: this job must not outlive the fabric either
            if self.settings.cancel_on_close:
                self._scancel([job_id])
            raise FabricError(f"{what}: the slurm fabric is closed")

    def _touch_output(self, job_id: str) -> None:
        """Create the job's output files (slurmd appends or truncates them when the job
        starts), so that output() knows the pilot before it runs."""
        for kind in ("out", "err"):
            try:
                with open(self.settings.base_dir / f"{job_id}.{kind}", "ab"):
                    pass
            except OSError as exc:
                log.warning("Slurm job %s: cannot create its .%s file: %s", job_id, kind, exc)

    def _remember(self, jobs: dict[str, SlurmJob]) -> None:
        """Keep the last state of each job (bounded); forget ended ones for close()."""
        for job_id, job in jobs.items():
            self._seen.pop(job_id, None)
            self._seen[job_id] = job
            if job.pilot_state.final:
                self._submitted.discard(job_id)
        while len(self._seen) > REMEMBERED_JOBS:
            del self._seen[next(iter(self._seen))]


def _not_known(stderr: str) -> bool:
    """Slurm's answer for job ids it does not know, or jobs already ended: not a failure."""
    return any(marker in stderr for marker in _NOT_KNOWN)


def _read_jobcomp(path: Path, ids: list[str]) -> dict[str, SlurmJob]:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:  # e.g. the log lives on the controller host only
        log.debug("jobcomp log %s unreadable: %s", path, exc)
        return {}
    return parse_jobcomp(text, ids)


def _tail(path: Path, max_bytes: int) -> str:
    try:
        with open(path, "rb") as stream:
            size = stream.seek(0, os.SEEK_END)
            stream.seek(max(size - max_bytes, 0))
            return stream.read(max_bytes).decode("utf-8", errors="replace")
    except FileNotFoundError:
        return ""
