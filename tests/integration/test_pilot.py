"""The pilot as a real subprocess against a real central service on loopback."""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from dirac_like import testing
from dirac_like.agents.pilot import Pilot, PilotConfig
from dirac_like.client import Client, RetryPolicy
from dirac_like.processes import ServiceProcess, free_port
from dirac_like.protocol import JobSummary, KillJob, PilotCommand, PilotResources

log = logging.getLogger(__name__)

FAST_RETRIES = RetryPolicy(timeout=5.0, retries=2, backoff=0.05, max_backoff=0.2)
SHORT_TIMEOUTS = (
    "[jobs]\nstalled_timeout = 3.0\nstalled_to_reschedule = 1.0\nreschedule_holdoff = 0.0\n"
    "match_lease = 5.0\n"
)
FINAL = ("Done", "Failed", "Killed")


class Pilots:
    """Starts pilot subprocesses; stops each by PID, and kills what payloads they left."""

    def __init__(self, endpoint: str, root: Path) -> None:
        self.endpoint = endpoint
        self.root = root
        self.started: list[tuple[subprocess.Popen[bytes], str]] = []

    def start(self, *extra: str, name: str = "") -> tuple[subprocess.Popen[bytes], Path]:
        name = name or f"pilot{len(self.started)}"
        workdir = self.root / name
        workdir.mkdir(parents=True, exist_ok=True)
        command = [
            sys.executable,
            "-m",
            "dirac_like",
            "pilot",
            "--server",
            self.endpoint,
            "--site",
            "Site.Test",
            "--ce",
            "ce1",
            "--workdir",
            str(workdir),
            "--pilot-id",
            name,
            "--heartbeat",
            "0.5",
            "--kill-grace",
            "2",
            "--request-interval",
            "0.5",
            *extra,
        ]
        stderr = open(self.root / f"{name}.stderr", "wb")  # noqa: SIM115 (the child keeps it)
        popen = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=stderr, stderr=stderr, start_new_session=True
        )
        stderr.close()
        self.started.append((popen, name))
        return popen, workdir

    def log_text(self, name: str) -> str:
        return (self.root / f"{name}.stderr").read_text(errors="replace")

    def stop_all(self) -> None:
        for popen, name in self.started:
            if popen.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(popen.pid, signal.SIGTERM)
                try:
                    popen.wait(15)
                except subprocess.TimeoutExpired:
                    os.kill(popen.pid, signal.SIGKILL)
                    popen.wait(5)
            for process in payloads_of(name):
                with contextlib.suppress(psutil.Error):
                    process.kill()


def payloads_of(pilot_id: str, job_id: int | None = None) -> list[psutil.Process]:
    """Live payload processes started by this pilot (found by their environment), in this
    test (another test may run a pilot of the same name at the same time)."""
    found = []
    for process in psutil.process_iter():
        try:
            env = process.environ()
            if env.get("DIRAC_LIKE_PILOT_ID") != pilot_id or not testing.same_home(env):
                continue
            if job_id is not None and env.get("DIRAC_LIKE_JOB_ID") != str(job_id):
                continue
            if process.status() != psutil.STATUS_ZOMBIE:
                found.append(process)
        except psutil.Error:
            continue
    return found


# the one wait_for (dirac_like.testing), polling a little slower (each poll asks the service)
wait_for = functools.partial(testing.wait_for, interval=0.05)


def row(client: Client, job_id: int) -> JobSummary:
    rows = client.status([job_id])
    return rows[0]


def wait_status(
    client: Client, job_id: int, statuses: tuple[str, ...], timeout: float
) -> JobSummary:
    found: JobSummary = wait_for(
        lambda: (r := row(client, job_id)).status in statuses and r,
        f"job {job_id} to reach {statuses}",
        timeout=timeout,
    )
    return found


@pytest.fixture
def grid(
    start_central: Callable[..., ServiceProcess], tmp_path: Path
) -> Iterator[tuple[Client, Pilots]]:
    service = start_central(config_text=SHORT_TIMEOUTS)
    pilots = Pilots(service.endpoint, tmp_path / "pilots")
    try:
        with Client(service.endpoint, FAST_RETRIES) as client:
            yield client, pilots
    finally:
        pilots.stop_all()


def test_parametric_jobs_all_done_and_the_pilot_stops_when_idle(
    grid: tuple[Client, Pilots],
) -> None:
    client, pilots = grid
    ids = client.submit(
        ['Executable = "/bin/echo"; Arguments = "hello %n"; Parameters = 5;'], "alice"
    )
    popen, workdir = pilots.start("--cores", "2", "--idle-timeout", "2")
    for job_id in ids:
        assert wait_status(client, job_id, FINAL, 30).status == "Done"
    assert popen.wait(30) == 0  # idle timeout
    assert all("hello" in testing.job_output_text(client, job_id) for job_id in ids)
    # issue 11 defect 10: each job's folder was removed once its output was uploaded
    assert list(workdir.glob("job_*")) == []


def test_failed_exit_code_and_missing_executable(grid: tuple[Client, Pilots]) -> None:
    client, pilots = grid
    exits, missing = client.submit(
        [
            'Executable = "/bin/sh"; Arguments = "-c \'exit 3\'";',
            'Executable = "/no/such/program";',
        ],
        "alice",
    )
    pilots.start()
    failed = wait_status(client, exits, FINAL, 30)
    assert (failed.status, failed.minor_status) == ("Failed", "Application exited with code 3")
    not_found = wait_status(client, missing, FINAL, 30)
    assert not_found.status == "Failed"
    assert "Executable not found" in not_found.minor_status


def test_max_ram_exceeded_is_failed_by_the_watchdog(grid: tuple[Client, Pilots]) -> None:
    client, pilots = grid
    script = "b = b'x' * (300 * 1024 * 1024); import time; time.sleep(60)"
    [job_id] = client.submit(
        [f'Executable = "{sys.executable}"; Arguments = "-c \\"{script}\\""; MaxRAM = 100;'],
        "alice",
    )
    pilots.start()
    final = wait_status(client, job_id, FINAL, 40)
    assert final.status == "Failed"
    assert final.minor_status.startswith("Watchdog: memory"), final


def test_kill_reaches_the_payload_at_once(grid: tuple[Client, Pilots]) -> None:
    client, pilots = grid
    [job_id] = client.submit(['Executable = "/bin/sleep"; Arguments = "60";'], "alice")
    pilots.start(name="killer")
    wait_status(client, job_id, ("Running",), 30)
    [payload] = wait_for(
        lambda: [p for p in payloads_of("killer", job_id) if p.name() == "sleep"],
        "the payload process",
        timeout=10,
    )
    started = time.monotonic()
    client.kill([job_id])
    wait_for(
        lambda: not payload.is_running() or payload.status() == psutil.STATUS_ZOMBIE,
        "the payload to go",
        timeout=10,
    )
    latency = time.monotonic() - started
    log.warning("kill latency (kill call → payload gone): %.3f s", latency)
    print(f"kill latency: {latency:.3f} s")
    assert latency < 3.0
    assert wait_status(client, job_id, FINAL, 10).status == "Killed"


def test_pilot_killed_mid_job_the_job_is_rescheduled_and_done_elsewhere(
    grid: tuple[Client, Pilots],
) -> None:
    client, pilots = grid
    # it prints: a job that prints nothing has no output sandbox
    [job_id] = client.submit(
        ['Executable = "/bin/sh"; Arguments = "-c \'sleep 3; echo done\'";'], "alice"
    )
    first, _ = pilots.start(name="lost")
    wait_status(client, job_id, ("Running",), 30)
    os.kill(first.pid, signal.SIGKILL)
    first.wait(10)
    wait_status(client, job_id, ("Stalled",), 15)
    pilots.start(name="second")
    final = wait_status(client, job_id, FINAL, 40)
    assert final.status == "Done", final
    statuses = [entry.status for entry in client.history(job_id)]
    assert "Rescheduled" in statuses
    assert client.job_output(job_id).sha256  # attempt 2, elsewhere, uploaded its output


def test_a_payload_dies_with_its_pilot_even_after_kill_9(grid: tuple[Client, Pilots]) -> None:
    client, pilots = grid
    [job_id] = client.submit(['Executable = "/bin/sleep"; Arguments = "300";'], "alice")
    pilot, _ = pilots.start(name="doomed")
    wait_status(client, job_id, ("Running",), 30)
    # Running is reported as the payload starts: it may take a moment to appear.
    wait_for(lambda: payloads_of("doomed", job_id), "the payload to start", timeout=10)

    os.kill(pilot.pid, signal.SIGKILL)
    pilot.wait(10)

    wait_for(
        lambda: not payloads_of("doomed", job_id), "the payload to die with its pilot", timeout=10
    )


def test_four_core_job_fills_a_four_core_pilot(grid: tuple[Client, Pilots]) -> None:
    client, pilots = grid
    [wide] = client.submit(
        ['Executable = "/bin/sleep"; Arguments = "60"; NumberOfProcessors = 4;'], "alice"
    )
    pilots.start("--cores", "4", name="wide")
    wait_status(client, wide, ("Running",), 30)
    [narrow] = client.submit(['Executable = "/bin/echo"; Arguments = "narrow";'], "alice")
    # The pilot keeps polling (every 0.5 s at most) but has no free core: nothing matches.
    window_end = time.monotonic() + 3.0
    while time.monotonic() < window_end:
        assert row(client, narrow).status == "Waiting"
        time.sleep(0.1)
    client.kill([wide])
    assert wait_status(client, wide, FINAL, 15).status == "Killed"
    assert wait_status(client, narrow, FINAL, 30).status == "Done"


def test_sigterm_kills_the_running_job_hands_it_back_and_exits_zero(
    grid: tuple[Client, Pilots],
) -> None:
    client, pilots = grid
    [job_id] = client.submit(['Executable = "/bin/sleep"; Arguments = "60";'], "alice")
    popen, _ = pilots.start(name="terminated")
    wait_status(client, job_id, ("Running",), 30)
    os.kill(popen.pid, signal.SIGTERM)
    assert popen.wait(20) == 0
    assert not payloads_of("terminated")
    statuses = [entry.status for entry in client.history(job_id)]
    assert "Rescheduled" in statuses, statuses  # handed back, not lost
    rescheduled = next(e for e in client.history(job_id) if e.status == "Rescheduled")
    assert "Pilot stopped (SIGTERM): job handed back" in rescheduled.minor_status
    assert row(client, job_id).status in ("Rescheduled", "Waiting")


def test_service_unreachable_at_start_exits_3(tmp_path: Path) -> None:
    config = PilotConfig(
        server=f"tcp://127.0.0.1:{free_port()}", site="Site.Test", workdir=tmp_path
    )
    pilot = Pilot(config, RetryPolicy(timeout=0.2, retries=1, backoff=0.01, max_backoff=0.01))
    assert pilot.run() == 3


def test_poll_pushes_hands_a_pushed_kill_to_on_push(central: ServiceProcess) -> None:
    pushed: list[PilotCommand] = []
    with (
        Client(central.endpoint, FAST_RETRIES) as user,
        Client(central.endpoint, FAST_RETRIES, on_push=pushed.extend) as pilot,
    ):
        [job_id] = user.submit(['Executable = "/bin/true";'], "alice")
        match = pilot.request_job("p1", PilotResources(site="Site.Test")).job
        assert match.job_id == job_id
        pilot.update_status(job_id, match.attempt, "p1", "Running")
        user.kill([job_id])
        wait_for(lambda: pilot.poll_pushes(0.1) or pushed, "the pushed kill", timeout=10)
        assert pushed == [KillJob(job_id)]


def test_a_pilot_takes_no_job_above_its_ces_cpu_limit(grid: tuple[Client, Pilots]) -> None:
    client, pilots = grid
    [long_job, short_job] = client.submit(
        ['Executable = "/bin/true"; CPUTime = 600;', 'Executable = "/bin/true"; CPUTime = 100;'],
        "alice",
    )
    popen, _ = pilots.start(
        "--cpu-time", "300", "--max-jobs", "1", "--idle-timeout", "2", name="capped"
    )
    assert popen.wait(30) == 0
    assert row(client, short_job).status == "Done"
    assert row(client, long_job).status == "Waiting"


def test_a_drained_sites_pilot_finishes_its_job_takes_no_other_and_exits(
    grid: tuple[Client, Pilots],
) -> None:
    client, pilots = grid
    [running] = client.submit(['Executable = "/bin/sleep"; Arguments = "2";'], "alice")
    popen, _ = pilots.start("--cores", "1", "--idle-timeout", "600", name="drained")
    wait_status(client, running, ("Running",), 30)

    client.site_drain("Site.Test")
    [waiting] = client.submit(['Executable = "/bin/true";'], "alice")

    assert wait_status(client, running, FINAL, 30).status == "Done"
    assert popen.wait(30) == 0  # told to stop taking jobs: it does not wait 600 s idle
    assert "taking no new job" in pilots.log_text("drained")
    assert row(client, waiting).status == "Waiting"
