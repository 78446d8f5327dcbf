#!/usr/bin/env python3
"""Chaos run (issue 11): ``kill -9`` the central service and pilots under load, then check that no
acknowledged job was lost, every job is final, and no job ran twice at once or ran again after a
run that finished while its pilot was alive.

    python scripts/chaos.py                             # 100 kills, 1000 jobs, 4 pilots
    python scripts/chaos.py --kills 10 --jobs 100 --seed 7 --json
    python scripts/chaos.py --postgres-local --kills 50 --weights 1,0,0,0,0   # issue 18

With ``--postgres URL`` (or ``--postgres-local``: a throw-away server started for the run with
scripts/postgres-local.sh) the central service is an active-standby pair on that PostgreSQL
(:class:`dirac_like.service_pair.ServicePair`, in a schema of its own): every client names both
instances, a ``service`` kill is a ``kill -9`` of whichever instance leads, the killed one comes
back as the standby, and the time until the other one leads (the failover time) is reported
(p50, p99, max).

A real central service (secure, its own home, a fixed loopback port) and real pilots (``dirac-like
pilot`` processes, each with its own workdir) run short real payloads: a Python script that
appends ``start``, ``tick`` (every 0.1 s) and ``end`` lines (job id, attempt, pilot id, monotonic
and wall time) to one append-only log outside the pilots' folders. Jobs are submitted in batches
with ``dirac-like job submit --json`` all through the chaos; every acknowledged job id is kept.
Meanwhile, N times at random moments, one of:

- ``service``: ``kill -9`` of the central service, restarted after a random downtime (up to
  ``--max-downtime``) on the same home and port;
- ``service-and-pilot``: ``kill -9`` of the central service, then, while it is down, of a pilot
  whose payload finished meanwhile (it holds a Done report it could not send yet);
- ``pilot``: ``kill -9`` of a random pilot;
- ``pilot-after-finish``: ``kill -9`` of a pilot 0.05-0.2 s after one of its payloads finished
  (its Done report on the way);
- ``pilot-long-payload``: ``kill -9`` of a pilot while a long payload of it has > 6.5 s to go
  (longer than the service takes to reschedule the job: a payload that outlives its pilot then
  overlaps the next attempt).

A killed pilot is restarted at once on the same workdir with the same pilot id (as a worker node
would restart it). After the last kill and the last submission, the run waits (``--drain-timeout``)
until every job is final, stops everything it started (by PID), and checks the records
(:mod:`dirac_like.chaos_checks`). Exit status: 0 every invariant held, 1 one was broken (the counts
say which), 3 the grid could not be started. The run's folder (payload log, kills, pilot logs,
service home) is kept when something was broken, or with ``--keep``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import random
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from dirac_like.agents.outbox import ENDED_MARK, FOLDER, JobRecords, ended_report
from dirac_like.chaos_checks import (
    ChaosReport,
    PilotLife,
    check,
    done_kept,
    kill_plan,
    read_payload_log,
)
from dirac_like.errors import ServiceUnavailable
from dirac_like.processes import ServiceProcess, dirac_like_argv, free_port
from dirac_like.service_pair import ServicePair

REPO = Path(__file__).resolve().parents[1]

SITE = "Chaos.Local.org"
CLI_TIMEOUT = 30.0  # a CLI call that takes longer is stopped (its submission unacknowledged)
AIM_WAIT = 5.0  # seconds an aimed kill waits for its moment before it takes any pilot
AIM_AFTER_END = 0.1  # s: a service-and-pilot kill takes a pilot whose payload ended this long ago
GONE_WAIT = 5.0  # s: the longest wait for a killed pilot's keepers and payloads to be gone
KINDS = ("service", "service-and-pilot", "pilot", "pilot-after-finish", "pilot-long-payload")

SERVICE_CONFIG = """\
[jobs]
match_lease = 5.0
stalled_timeout = 3.0
stalled_to_reschedule = 1.0
reschedule_holdoff = 0.5
holdoff_factor = 1.0
max_reschedules = 20
"""

# The payload does its work in a child process, as a shell script running an application would:
# the child, not the process the pilot started, writes the log lines.
PAYLOAD = """\
import json, os, sys, time
log, duration = sys.argv[1], float(sys.argv[2])
child = os.fork()
if child:
    sys.exit(os.waitstatus_to_exitcode(os.waitpid(child, 0)[1]))
parts = os.path.basename(os.getcwd()).split("_")  # the pilot's job_<id>_<attempt> folder
attempt = int(parts[-1]) if len(parts) == 3 and parts[-1].isdigit() else 0
start = time.monotonic()
base = {"run": os.urandom(8).hex(), "job": int(os.environ["DIRAC_LIKE_JOB_ID"]),
        "attempt": attempt, "pilot": os.environ.get("DIRAC_LIKE_PILOT_ID", ""),
        "pid": os.getpid(), "until": start + duration}
out = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
def write(event):
    line = dict(base, event=event, mono=time.monotonic(), wall=time.time())
    os.write(out, (json.dumps(line) + "\\n").encode())
write("start")
while time.monotonic() < start + duration:
    time.sleep(min(0.1, max(0.0, start + duration - time.monotonic())))
    write("tick")
write("end")
"""


@dataclass(frozen=True)
class Settings:
    kills: int
    jobs: int
    pilots: int
    cores: int
    seed: int
    kill_interval: float
    max_downtime: float
    weights: tuple[float, ...]  # of KINDS
    long_fraction: float
    batch: int
    drain_timeout: float
    folder: Path
    postgres: str = ""  # a PostgreSQL store URL: run the service as a pair on it


# -- the grid --------------------------------------------------------------------------------------


class Service:
    """The central service on a fixed port; killed with SIGKILL, restarted on the same home."""

    def __init__(self, folder: Path) -> None:
        self.home = folder / "home"
        self.config = folder / "central.toml"
        self.config.write_text(SERVICE_CONFIG)
        self.listen = f"tcp://127.0.0.1:{free_port()}"
        self.process: ServiceProcess | None = None

    @property
    def endpoint(self) -> str:
        return self.listen

    @property
    def identity_path(self) -> Path:
        assert self.process is not None and self.process.identity_path is not None
        return self.process.identity_path

    def start(self, tries: int = 5) -> None:
        for left in reversed(range(tries)):
            try:
                self.process = ServiceProcess.start_central(self.home, self.config, self.listen)
                return
            except ServiceUnavailable:
                if not left:
                    raise
                time.sleep(0.5)  # the port may still be held for a moment after a kill

    def kill9(self) -> None:
        if self.process is not None:
            self.process.kill9()
            self.process = None

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None


class Pair:
    """An active-standby pair (issue 18) where a lone :class:`Service` would be: ``kill9`` kills
    whichever instance leads and waits for the other to lead (the failover time is kept);
    ``start`` brings the killed one back as the standby."""

    def __init__(self, folder: Path, store_url: str) -> None:
        self.pair = ServicePair(folder / "pair", store_url, SERVICE_CONFIG)
        self.home = self.pair.home

    @property
    def endpoint(self) -> str:
        return self.pair.endpoint

    @property
    def identity_path(self) -> Path:
        return self.pair.identity_path

    @property
    def failovers(self) -> list[float]:
        return self.pair.failovers

    def start(self) -> None:
        self.pair.start()

    def kill9(self) -> None:
        self.pair.kill_leader()

    def stop(self) -> None:
        self.pair.stop()


@dataclass
class PilotSlot:
    """One pilot id and its workdir; each (re)start is a new process, a new :class:`PilotLife`."""

    pilot_id: str
    workdir: Path
    logs: Path
    lives: list[PilotLife] = field(default_factory=list)
    popen: subprocess.Popen[bytes] | None = None
    watchers: list[threading.Thread] = field(default_factory=list)  # see _end_life

    def start(self, endpoint: str, env: dict[str, str], cores: int) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        command = dirac_like_argv(
            "pilot",
            "--server",
            endpoint,
            "--site",
            SITE,
            "--ce",
            "ce",
            "--cores",
            str(cores),
            "--workdir",
            str(self.workdir),
            "--pilot-id",
            self.pilot_id,
            "--heartbeat",
            "0.5",
            "--request-interval",
            "0.2",
            "--idle-timeout",
            "0",
            "--kill-grace",
            "1",
        )
        with open(self.log_path(len(self.lives)), "wb") as log_file:
            self.popen = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=log_file,
                env=env,
                start_new_session=True,
            )
        self.lives.append(PilotLife(self.pilot_id, time.monotonic()))

    def log_path(self, life: int) -> Path:
        return self.logs / f"{self.pilot_id}.{life}.log"

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def kill9(self) -> None:
        """``kill -9`` of the pilot; its life ends with the Done reports its workdir holds (see
        :meth:`_end_life`)."""
        assert self.popen is not None
        helpers = exec_helpers_of(self.popen.pid)
        killed = time.monotonic()  # before the signal: the process is surely alive until then
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.popen.pid, signal.SIGKILL)
        self.popen.wait(10)
        self._end_life(killed, helpers)

    def ended(self) -> None:
        """The process exited by itself: its life ends now."""
        if self.lives and self.lives[-1].killed is None:
            self._end_life(time.monotonic())

    def _end_life(self, when: float, helpers: tuple[psutil.Process, ...] = ()) -> None:
        """End the current life with the Done reports its workdir holds now (its outbox, and
        the payloads' end marks), and, in a thread, those its exec helper notes once the pilot
        is dead (a payload on its way out has half a second): the thread reads the job folders
        of the dead pilot again once no process works in them and its exec ``helpers`` (they
        write the marks) have ended. The pilot is restarted meanwhile;
        its successor, still starting, does not answer for those folders that fast (a Python
        start-up is a second or more)."""
        index, life = len(self.lives) - 1, self.lives[-1]
        folders = sorted(self.workdir.glob("job_*_*"))
        self.lives[index] = PilotLife(self.pilot_id, life.started, when, done_kept_in(self.workdir))

        def read_again() -> None:
            deadline = time.monotonic() + GONE_WAIT
            wait_gone_from(folders, GONE_WAIT)
            psutil.wait_procs(helpers, timeout=max(0.0, deadline - time.monotonic()))
            later = self.lives[index]
            kept = later.kept_done | done_marked_in(folders)
            self.lives[index] = PilotLife(self.pilot_id, later.started, later.killed, kept)

        watcher = threading.Thread(target=read_again, name=f"end-{self.pilot_id}", daemon=True)
        watcher.start()
        self.watchers.append(watcher)

    def stop(self, grace: float = 15.0) -> None:
        if self.popen is None or self.popen.poll() is not None:
            return
        self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(grace)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(10)


def exec_helpers_of(pilot: int) -> tuple[psutil.Process, ...]:
    """A pilot's exec helper processes (agents/spawner.py: the watchdog and the helper proper
    under it), which note its payloads' ends."""
    helpers: list[psutil.Process] = []
    with contextlib.suppress(psutil.Error):
        for child in psutil.Process(pilot).children():
            if any("payload_keeper" in part for part in child.cmdline()):
                helpers += [child, *child.children()]
    return tuple(helpers)


def wait_gone_from(folders: list[Path], timeout: float) -> None:
    """Wait until no live process works in one of ``folders`` (a killed pilot's payload keepers
    and payloads work in its job folders; they are in sessions of their own), or ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(_working_in(folders)):
        time.sleep(0.01)


def _working_in(folders: list[Path]) -> Iterator[int]:
    """The PIDs of the processes whose working folder is one of ``folders`` (or inside one; a
    zombie has none)."""
    names = {str(folder.resolve()) for folder in folders}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                cwd = os.readlink(f"/proc/{entry.name}/cwd")
                if cwd in names or any(cwd.startswith(f"{name}/") for name in names):
                    yield int(entry.name)


def done_kept_in(workdir: Path) -> frozenset[tuple[int, int]]:
    """The (job, attempt) pairs whose Done a pilot's workdir holds, as a pilot restarted there
    finds them (agents/outbox.py): a report in its outbox, or a job folder with the payload
    keeper's ``payload_ended`` mark of an exit 0. An outbox file holds one report, or a list
    of them (one loop turn's final reports)."""
    reports: list[dict[str, object]] = []
    for path in (workdir / FOLDER).glob("*.json"):
        with contextlib.suppress(OSError, ValueError):
            kept = json.loads(path.read_text(encoding="utf-8"))
            for report in kept if isinstance(kept, list) else [kept]:
                reports.extend([report] if isinstance(report, dict) else [])
    return done_kept(reports) | done_marked_in(sorted(workdir.glob("job_*_*")))


def done_marked_in(folders: list[Path]) -> frozenset[tuple[int, int]]:
    """The (job, attempt) pairs of the job folders whose ``payload_ended`` says exit 0."""
    reports: list[dict[str, object]] = []
    records: dict[Path, dict[str, dict[str, Any]]] = {}  # a workdir's job records, by folder
    for folder in folders:
        if (folder / ENDED_MARK).exists():
            if folder.parent not in records:
                records[folder.parent] = JobRecords(folder.parent).read()
            ended = ended_report(folder, records[folder.parent].get(folder.name))
            if ended is not None:
                reports.append(
                    {"job_id": ended.job_id, "attempt": ended.attempt, "status": ended.status}
                )
    return done_kept(reports)


class PayloadWatch:
    """Follows the payload log as it grows: which runs are alive, which just finished."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.running: dict[str, tuple[str, float, float]] = {}  # run -> pilot, start, until
        self.finished: list[tuple[str, float, float]] = []  # pilot, start, end; newest last

    def poll(self) -> None:
        if not self.path.exists():
            return
        with open(self.path, "rb") as log:
            log.seek(self.offset)
            data = log.read()
        complete = data[: data.rfind(b"\n") + 1]
        self.offset += len(complete)
        for line in complete.decode(errors="replace").splitlines():
            with contextlib.suppress(ValueError, KeyError, TypeError):
                self._note(json.loads(line))

    def _note(self, record: dict[str, Any]) -> None:
        run, event = str(record["run"]), record["event"]
        if event == "start":
            self.running[run] = (
                str(record["pilot"]),
                float(record["mono"]),
                float(record["until"]),
            )
        elif event == "end":
            pilot, start, _ = self.running.pop(run, ("", 0.0, 0.0))
            self.finished.append((pilot, start, float(record["mono"])))
            del self.finished[:-100]


# -- submissions -----------------------------------------------------------------------------------


class Submitter(threading.Thread):
    """Submits ``--jobs`` jobs in batches, paced over the chaos, and records every acknowledged
    job id (in memory and in ``acknowledged.txt``)."""

    def __init__(
        self, settings: Settings, env: dict[str, str], rng: random.Random, pace: float
    ) -> None:
        super().__init__(name="submitter", daemon=True)
        self.settings, self.env, self.rng, self.pace = settings, env, rng, pace
        self.acknowledged: list[int] = []
        self.failures = 0
        self.stopping = threading.Event()
        self.folder = settings.folder / "jobs"
        self.folder.mkdir()

    def run(self) -> None:
        batches = 0
        while len(self.acknowledged) < self.settings.jobs and not self.stopping.is_set():
            size = min(self.settings.batch, self.settings.jobs - len(self.acknowledged))
            path = self.folder / f"batch-{batches}.json"
            path.write_text(json.dumps([self.description() for _ in range(size)]))
            batches += 1
            job_ids = submit(path, self.env)
            if job_ids is None:
                self.failures += 1
            else:
                self.acknowledged.extend(job_ids)
                with open(self.settings.folder / "acknowledged.txt", "a") as record:
                    record.write("".join(f"{job_id}\n" for job_id in job_ids))
            self.stopping.wait(self.pace)

    def description(self) -> dict[str, Any]:
        long = self.rng.random() < self.settings.long_fraction
        duration = self.rng.uniform(8.0, 12.0) if long else self.rng.uniform(0.2, 2.0)
        folder = self.settings.folder
        arguments = [
            "-I",
            "-S",
            str(folder / "payload.py"),
            str(folder / "payloads.log"),
            f"{duration:.2f}",
        ]
        return {
            "Executable": sys.executable,
            "Arguments": shlex.join(arguments),
            "CPUTime": 600,
            "JobName": "long" if long else "short",
        }


def submit(path: Path, env: dict[str, str]) -> list[int] | None:
    """The job ids the service acknowledged for this file, or None (refused, unreachable, or
    no answer in time: then the jobs may exist but were never acknowledged)."""
    try:
        done = subprocess.run(
            dirac_like_argv("job", "submit", str(path), "--json"),
            env=env,
            capture_output=True,
            text=True,
            timeout=CLI_TIMEOUT,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        return None
    if done.returncode != 0:
        return None
    return [int(job_id) for job_id in json.loads(done.stdout)["job_ids"]]


def service_jobs(env: dict[str, str]) -> dict[int, str]:
    """Every job the service knows: id -> status (``dirac-like job list --json``)."""
    done = subprocess.run(
        dirac_like_argv("job", "list", "--json", "--limit", "10000000"),
        env=env,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT,
        stdin=subprocess.DEVNULL,
        check=True,
    )
    return {int(row["job_id"]): str(row["status"]) for row in json.loads(done.stdout)}


# -- the run ---------------------------------------------------------------------------------------


class Chaos:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.rng = random.Random(settings.seed + 2)
        folder = settings.folder
        (folder / "payload.py").write_text(PAYLOAD)
        (folder / "pilot-logs").mkdir()
        self.events = open(folder / "kills.log", "a")  # noqa: SIM115 (closed in close())
        self.service = Pair(folder, settings.postgres) if settings.postgres else Service(folder)
        self.env: dict[str, str] = {}
        token = secrets.token_hex(3)
        self.slots = [
            PilotSlot(
                f"chaos-{token}-{index}", folder / "pilots" / str(index), folder / "pilot-logs"
            )
            for index in range(settings.pilots)
        ]
        self.watch = PayloadWatch(folder / "payloads.log")
        self.kills_done: dict[str, int] = dict.fromkeys(KINDS, 0)
        self.submitter: Submitter | None = None
        self.submit_failures = 0

    def run(self) -> ChaosReport:
        settings = self.settings
        self.service.start()
        self.env = {
            **os.environ,
            "DIRAC_LIKE_HOME": str(self.service.home),
            "DIRAC_LIKE_SERVER": self.service.endpoint,
            "DIRAC_LIKE_IDENTITY": str(self.service.identity_path),
        }
        for slot in self.slots:
            slot.start(self.service.endpoint, self.env, settings.cores)
        batches = max(1, -(-settings.jobs // settings.batch))
        pace = settings.kills * settings.kill_interval / batches
        submitter = Submitter(settings, self.env, random.Random(settings.seed + 1), pace)
        submitter.start()
        self.submitter = submitter
        try:
            plan = kill_plan(
                random.Random(settings.seed),
                KINDS,
                settings.weights,
                settings.kills,
                settings.kill_interval,
            )
            for delay, kind in plan:
                self.pause(delay)
                self.kill(kind)
            while submitter.is_alive():
                self.pause(0.5)
            jobs = self.drain()
        finally:
            submitter.stopping.set()
        self.close()
        for slot in self.slots:
            for watcher in slot.watchers:
                watcher.join(GONE_WAIT + 5)
        log = read_payload_log((settings.folder / "payloads.log").read_text().splitlines())
        self.submit_failures = submitter.failures
        lives = [life for slot in self.slots for life in slot.lives]
        return check(submitter.acknowledged, jobs, log, lives)

    def pause(self, seconds: float) -> None:
        """Wait, restarting pilots that died and following the payload log meanwhile."""
        deadline = time.monotonic() + seconds
        while True:
            self.keep_pilots()
            self.watch.poll()
            left = deadline - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(0.01, left))

    def keep_pilots(self) -> None:
        for slot in self.slots:
            if not slot.alive():
                slot.ended()
                slot.start(self.service.endpoint, self.env, self.settings.cores)

    def kill(self, kind: str) -> None:
        if kind == "service":
            self.service.kill9()
            self.note(kind, "central")
            self.pause(self.rng.uniform(0.0, self.settings.max_downtime))
            self.service.start()
        elif kind == "service-and-pilot":
            self.service.kill9()
            self.note(kind, "central")
            since = time.monotonic()
            slot = self.aim(lambda: self.finished_pilot(since))
            if slot is None:
                kind = "service"  # no payload finished in time: a plain service kill
            else:
                self.kill_pilot(slot, kind)
            self.service.start()
        else:
            slot = self.aim(lambda: self.target(kind))
            if slot is None:
                slot, kind = self.any_pilot(), "pilot"  # its moment did not come in time
            self.kill_pilot(slot, kind)
        self.kills_done[kind] += 1

    def kill_pilot(self, slot: PilotSlot, kind: str) -> None:
        """``kill -9`` of this pilot, restarted at once on its workdir with its pilot id."""
        if slot.alive():
            slot.kill9()
            self.note(kind, slot.pilot_id)
        else:
            slot.ended()
        slot.start(self.service.endpoint, self.env, self.settings.cores)

    def aim(self, target: Callable[[], PilotSlot | None]) -> PilotSlot | None:
        """The live pilot ``target`` names, waiting up to AIM_WAIT seconds for its moment
        (None when it did not come)."""
        deadline = time.monotonic() + AIM_WAIT
        while time.monotonic() < deadline:
            slot = target()
            if slot is not None and slot.alive():
                return slot
            self.pause(0.01)
        return None

    def started_by(self, pilot_id: str, start: float) -> PilotSlot | None:
        """The slot whose current pilot process started the run of ``pilot_id`` that started
        at ``start`` (None for a run of an earlier, killed process: its payload outlived it)."""
        for slot in self.slots:
            if slot.pilot_id == pilot_id and slot.lives and slot.lives[-1].started <= start:
                return slot
        return None

    def any_pilot(self) -> PilotSlot:
        return self.rng.choice([slot for slot in self.slots if slot.alive()] or self.slots)

    def target(self, kind: str) -> PilotSlot | None:
        now = time.monotonic()
        if kind == "pilot-after-finish":  # its Done report on the way
            for pilot, start, end in reversed(self.watch.finished):
                slot = self.started_by(pilot, start)
                if now - end < 0.05 and slot is not None:
                    self.pause(max(0.0, end + self.rng.uniform(0.05, 0.2) - time.monotonic()))
                    return slot
        elif kind == "pilot-long-payload":  # its payload outlives it if nothing stops it
            for pilot, start, until in self.watch.running.values():
                slot = self.started_by(pilot, start)
                if until - now > 6.5 and slot is not None:
                    return slot
        return None

    def finished_pilot(self, since: float) -> PilotSlot | None:
        """A pilot whose payload finished after ``since`` (while the service is down) at least
        AIM_AFTER_END ago: it holds a Done report it could not send."""
        now = time.monotonic()
        for pilot, start, end in reversed(self.watch.finished):
            slot = self.started_by(pilot, start)
            if end > since and now - end >= AIM_AFTER_END and slot is not None:
                return slot
        return None

    def note(self, kind: str, target: str) -> None:
        self.events.write(f"{time.monotonic():.3f} {time.time():.3f} {kind} {target}\n")
        self.events.flush()

    def drain(self) -> dict[int, str]:
        """Wait until every job the service knows is final (or the deadline); its job list."""
        deadline = time.monotonic() + self.settings.drain_timeout
        while True:
            try:
                jobs = service_jobs(self.env)
            except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
                if time.monotonic() > deadline:
                    raise
                self.pause(1.0)
                continue
            pending = [
                job_id
                for job_id, status in jobs.items()
                if status not in ("Done", "Failed", "Killed")
            ]
            if not pending or time.monotonic() > deadline:
                return jobs
            self.pause(1.0)

    def close(self) -> None:
        """Stop every process this run started, by PID (also payloads left behind)."""
        if self.submitter is not None:
            self.submitter.stopping.set()
            self.submitter.join(CLI_TIMEOUT + 5)
        for slot in self.slots:
            with contextlib.suppress(Exception):
                slot.stop()
        for process in self.leftover_payloads():
            with contextlib.suppress(psutil.Error):
                process.kill()
        self.service.stop()
        self.events.close()

    def leftover_payloads(self) -> Iterator[psutil.Process]:
        ours = {slot.pilot_id for slot in self.slots}
        for process in psutil.process_iter():
            with contextlib.suppress(psutil.Error):
                if process.environ().get("DIRAC_LIKE_PILOT_ID") in ours:
                    yield process


# -- the command -----------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kills", type=int, default=100, help="kills (default 100)")
    parser.add_argument("--jobs", type=int, default=1000, help="jobs to submit (default 1000)")
    parser.add_argument("--pilots", type=int, default=4, help="pilots at once (default 4)")
    parser.add_argument("--cores", type=int, default=2, help="cores per pilot (default 2)")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: random)")
    parser.add_argument(
        "--kill-interval",
        type=float,
        default=2.0,
        metavar="S",
        help="mean seconds between kills (default 2)",
    )
    parser.add_argument(
        "--max-downtime",
        type=float,
        default=1.0,
        metavar="S",
        help="longest pause before a killed service restarts (default 1)",
    )
    parser.add_argument(
        "--weights",
        default="3,1,2,2,2",
        metavar="W,...",
        help="relative odds of the kinds of kill: "
        + ", ".join(KINDS)
        + " (default 3,1,2,2,2; 0,0,1,0,0: random pilot kills only); "
        "each kind with odds > 0 comes at least once when --kills allows",
    )
    parser.add_argument(
        "--long-fraction",
        type=float,
        default=0.1,
        help="jobs whose payload runs 8-12 s instead of 0.2-2 s (default 0.1)",
    )
    parser.add_argument("--batch", type=int, default=5, help="jobs per submission (default 5)")
    parser.add_argument(
        "--drain-timeout",
        type=float,
        default=180.0,
        metavar="S",
        help="longest wait for every job to be final (default 180)",
    )
    parser.add_argument(
        "--folder",
        type=Path,
        help="keep the run's files here (default: a "
        "temporary folder, removed when every invariant held)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the run's folder")
    store = parser.add_mutually_exclusive_group()
    store.add_argument(
        "--postgres",
        metavar="URL",
        default="",
        help="run the central service as an active-standby pair on this PostgreSQL database "
        "(in a new schema of it)",
    )
    store.add_argument(
        "--postgres-local",
        action="store_true",
        help="the same on a throw-away PostgreSQL started for the run (scripts/postgres-local.sh)",
    )
    parser.add_argument("--json", action="store_true", help="print the counts as JSON")
    args = parser.parse_args(argv)
    weights = tuple(float(weight) for weight in args.weights.split(","))
    if len(weights) != len(KINDS) or min(weights) < 0 or not sum(weights):
        parser.error(f"--weights takes {len(KINDS)} numbers >= 0, not all 0")
    if min(args.kills, args.jobs - 1, args.pilots - 1, args.cores - 1, args.batch - 1) < 0:
        parser.error("--kills must be >= 0; --jobs, --pilots, --cores and --batch >= 1")
    if args.folder is not None and args.folder.is_dir() and any(args.folder.iterdir()):
        parser.error(f"--folder {args.folder} is not empty")
    args.weights = weights
    return args


def settings_of(args: argparse.Namespace, folder: Path) -> Settings:
    return Settings(
        kills=args.kills,
        jobs=args.jobs,
        pilots=args.pilots,
        cores=args.cores,
        seed=args.seed,
        kill_interval=args.kill_interval,
        max_downtime=args.max_downtime,
        weights=args.weights,
        long_fraction=args.long_fraction,
        batch=args.batch,
        drain_timeout=args.drain_timeout,
        folder=folder,
        postgres=args.postgres,
    )


def print_report(report: ChaosReport, chaos: Chaos, seconds: float, as_json: bool) -> None:
    counts = {
        **report.counts(),
        "kills": chaos.kills_done,
        "seed": chaos.settings.seed,
        "submit_failures": chaos.submit_failures,
        "seconds": round(seconds, 1),
        "failover_seconds": failover_figures(getattr(chaos.service, "failovers", [])),
        "broken": report.broken(),
        "folder": str(chaos.settings.folder),
    }
    (chaos.settings.folder / "report.json").write_text(json.dumps(counts, indent=1))
    if as_json:
        print(json.dumps(counts))
        return
    print(
        f"chaos: {sum(chaos.kills_done.values())} kills {chaos.kills_done}, seed "
        f"{chaos.settings.seed}, {seconds:.0f} s"
    )
    print(
        f"jobs: {report.acknowledged} acknowledged, {report.jobs_in_service} in the service "
        f"{dict(report.statuses)}, {report.runs} payload runs, {report.ran_more_than_once} "
        f"jobs ran more than once, {chaos.submit_failures} submissions unacknowledged"
    )
    if isinstance(chaos.service, Pair):
        figures = counts["failover_seconds"]
        print(
            f"failovers: {figures['count']}, p50 {figures['p50']} s, p99 {figures['p99']} s, "
            f"max {figures['max']} s (kill -9 of the leader until the standby answers as leader)"
        )
    for name in ("lost", "not_final", "overlapping", "ran_again_after_done"):
        ids = getattr(report, name)
        print(f"{name}: {len(ids)}" + (f" (e.g. jobs {list(ids[:10])})" if ids else ""))
    print(
        "every invariant held"
        if not report.broken()
        else f"BROKEN: {', '.join(report.broken())}; the run's files: {chaos.settings.folder}"
    )


def failover_figures(seconds: list[float]) -> dict[str, float]:
    """Count, p50, p99 and max of the failover times (nearest-rank percentiles)."""
    if not seconds:
        return {"count": 0, "p50": 0.0, "p99": 0.0, "max": 0.0}
    ordered = sorted(seconds)

    def rank(fraction: float) -> float:
        return round(ordered[max(0, math.ceil(fraction * len(ordered)) - 1)], 2)

    return {"count": len(ordered), "p50": rank(0.5), "p99": rank(0.99), "max": rank(1.0)}


@contextlib.contextmanager
def postgres_store(args: argparse.Namespace) -> Iterator[str]:
    """The store URL of the run: a new schema of ``--postgres``, or of a throw-away server
    (``--postgres-local``, stopped at the end); '' for the lone service on SQLite."""
    if not args.postgres and not args.postgres_local:
        yield ""
        return
    import psycopg  # the postgres extra

    server = Path(tempfile.mkdtemp(prefix="dirac-like-chaos-pg-")) if args.postgres_local else None
    try:
        url = start_local_postgres(server) if server is not None else args.postgres
        schema = f"chaos_{secrets.token_hex(4)}"
        with psycopg.connect(url, autocommit=True) as connection:
            connection.execute(f"CREATE SCHEMA {schema}")
        yield f"{url}{'&' if '?' in url else '?'}options=-csearch_path%3D{schema}"
    finally:
        if server is not None:
            script = REPO / "scripts" / "postgres-local.sh"
            subprocess.run(["bash", str(script), "stop", str(server)], check=False, timeout=60)
            shutil.rmtree(server, ignore_errors=True)


def start_local_postgres(folder: Path) -> str:
    folder.chmod(0o755)  # the server runs as the postgres user: it must enter the folder
    script = REPO / "scripts" / "postgres-local.sh"
    started = subprocess.run(
        ["bash", str(script), "start", str(folder)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "WATCH_PID": str(os.getpid())},
    )
    if started.returncode != 0:
        raise ServiceUnavailable(f"PostgreSQL did not start: {started.stderr.strip()}")
    return started.stdout.strip()


def stop_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(f"chaos: stopped by signal {signum}")  # the finally blocks stop the grid


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, stop_on_sigterm)
    if args.seed is None:
        args.seed = random.randrange(2**31)
    folder = args.folder or Path(tempfile.mkdtemp(prefix="dirac-like-chaos-"))
    folder.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with contextlib.ExitStack() as stack:
        try:
            store_url = stack.enter_context(postgres_store(args))
        except ServiceUnavailable as exc:
            print(f"chaos: {exc}", file=sys.stderr)
            return 3
        args.postgres = store_url
        chaos = Chaos(settings_of(args, folder))
        try:
            report = chaos.run()
        except ServiceUnavailable as exc:
            print(
                f"chaos: the central service did not (re)start: {exc}; see {folder}",
                file=sys.stderr,
            )
            return 3
        finally:
            chaos.close()
    print_report(report, chaos, time.monotonic() - started, args.json)
    if not report.broken() and not args.keep and args.folder is None:
        shutil.rmtree(folder, ignore_errors=True)
    return 1 if report.broken() else 0


if __name__ == "__main__":
    raise SystemExit(main())
