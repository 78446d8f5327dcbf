"""The site director against a real central service, with real local pilots."""

from __future__ import annotations

import functools
import subprocess
import sys
from pathlib import Path
from typing import TypeVar

import psutil
import pytest

from dirac_like import testing
from dirac_like.agents.director import Director, DirectorSettings
from dirac_like.agents.fabrics import (
    OUTPUT_TAIL_BYTES,
    Fabric,
    FabricError,
    LocalFabric,
    PilotRequest,
    PilotState,
)
from dirac_like.client import Client, RetryPolicy
from dirac_like.processes import ServiceProcess, free_port
from dirac_like.protocol import PilotView
from dirac_like.sites import SiteConfig, load_site

SITE = "Site.Director.org"
NO_RETRIES = RetryPolicy(timeout=0.3, retries=0, backoff=0.05, max_backoff=0.1)
DEADLINE = 90.0
FAST_PILOTS = DirectorSettings(
    idle_timeout=1.0, local_grace=5.0, pilot_args=("--request-interval", "0.3", "--heartbeat", "1")
)
SITE_TOML = """\
cycle_seconds = 1.0
failure_threshold = 2
backoff_seconds = 100.0
max_backoff_seconds = 400.0

[ce.ce1]
fabric = "local"
cores_per_slot = 1
max_total = 3
max_wall_time = 200000  # above a job's default CPUTime (86400), which pilots check
"""

T = TypeVar("T")


# the one wait_for (dirac_like.testing), with this file's deadline
wait_for = functools.partial(testing.wait_for, timeout=DEADLINE)


def write_site(folder: Path, text: str = SITE_TOML, name: str = SITE) -> SiteConfig:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.toml"
    path.write_text(text)
    return load_site(path)


class RefusingFabric(Fabric):
    """A fabric that refuses every pilot."""

    name = "local"

    def __init__(self) -> None:
        self.tries = 0

    def submit(self, request: PilotRequest) -> str:
        self.tries += 1
        raise FabricError(f"pilot {request.pilot_id}: queue closed (test)")

    def status(self, refs: list[str]) -> dict[str, PilotState]:
        return {ref: PilotState.ABORTED for ref in refs}

    def cancel(self, ref: str) -> None:
        pass

    def output(self, ref: str, max_bytes: int = OUTPUT_TAIL_BYTES) -> str:
        return ""

    def close(self) -> None:
        pass


def local_director(tmp_path: Path, client: Client, site: SiteConfig) -> Director:
    home = tmp_path / "director"
    fabric = LocalFabric(home / "fabric" / "local", grace=5.0)
    return Director(site, client, {"local": fabric}, home, settings=FAST_PILOTS)


def test_local_pilots_run_all_jobs_within_max_total(tmp_path: Path, client: Client) -> None:
    site = write_site(tmp_path / "sites")
    jdl = 'Executable = "/bin/echo"; Arguments = "x %n"; Parameters = 6;'
    job_ids = client.submit([jdl], "alice")
    assert len(job_ids) == 6
    director = local_director(tmp_path, client, site)
    most_alive = 0
    try:

        def finished() -> bool:
            nonlocal most_alive
            report = director.cycle()
            assert not report.errors, report.errors
            alive = len(director.alive())
            most_alive = max(most_alive, alive)
            assert alive <= 3
            done = all(row.status == "Done" for row in client.status(job_ids))
            return done and not director.alive() and not director.book.outbox

        wait_for(finished, "6 jobs Done and every pilot ended")
    finally:
        director.close()
    assert most_alive == 3
    pilots = client.pilots(site=SITE)
    assert pilots and all(row.pilot_id.startswith(f"{SITE}.ce1.") for row in pilots)
    assert {row.state for row in pilots} == {"Done"}
    assert sorted(job for row in pilots for job in row.jobs) == job_ids
    assert all(row.fabric == "local" and row.fabric_ref for row in pilots)
    output = client.pilot_output(pilots[0].pilot_id)
    assert output.collected and "pilot" in output.output.lower()


def test_no_waiting_jobs_no_pilot(tmp_path: Path, client: Client) -> None:
    director = local_director(tmp_path, client, write_site(tmp_path / "sites"))
    try:
        report = director.cycle()
    finally:
        director.close()
    assert report.submitted == 0
    assert report.ce("ce1").eligible == 0
    assert not report.errors
    assert not director.records


def test_refusing_fabric_backs_the_ce_off(tmp_path: Path, client: Client) -> None:
    client.submit(['Executable = "/bin/true";'], "alice")
    fabric = RefusingFabric()
    now = [1000.0]
    director = Director(
        write_site(tmp_path / "sites"),
        client,
        {"local": fabric},
        tmp_path / "director",
        clock=lambda: now[0],
    )
    try:
        first = director.cycle()  # failure 1 of failure_threshold 2
        second = director.cycle(now[0] + 1)  # failure 2: backed off for 100 s
        assert (first.submitted, second.submitted) == (0, 0)
        assert fabric.tries == 2
        assert "queue closed" in first.errors[0]
        assert second.ce("ce1").backoff_until == pytest.approx(1101.0)
        for later in (now[0] + 2, now[0] + 50, now[0] + 100):
            report = director.cycle(later)
            assert report.submitted == 0 and report.ce("ce1").backed_off(later)
        assert fabric.tries == 2  # nothing tried while backed off
        director.cycle(now[0] + 102)  # the back-off is over: tried again, refused again
        assert fabric.tries == 3
    finally:
        director.close()


def test_service_unreachable_is_an_error_not_an_exception(tmp_path: Path) -> None:
    site = write_site(tmp_path / "sites")
    with Client(f"tcp://127.0.0.1:{free_port()}", NO_RETRIES) as nobody:
        director = local_director(tmp_path, nobody, site)
        try:
            report = director.cycle()
            again = director.cycle()
        finally:
            director.close()
    assert report.unreachable and again.unreachable
    assert report.submitted == 0
    assert "unreachable" in report.errors[0]


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "dirac_like", "agent", "director", *args]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=60)


def test_cli_once_and_unknown_site(tmp_path: Path, central: ServiceProcess) -> None:
    sites = tmp_path / "sites"
    write_site(sites)
    home = tmp_path / "cli-home"
    common = ["--sites-dir", str(sites), "--server", central.endpoint, "--home", str(home)]
    done = run_cli("--site", SITE, *common, "--once", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "ce1: eligible 0, submitted 0" in done.stderr
    assert (home / "logs" / f"director-{SITE}.log").exists()
    unknown = run_cli("--site", "No.Such.org", *common, "--once", cwd=tmp_path)
    assert unknown.returncode == 2
    assert "unknown site 'No.Such.org'" in unknown.stderr
    assert SITE in unknown.stderr  # the sites that do exist are named


def processes_of(pilot_id: str) -> list[psutil.Process]:
    """Live processes of a pilot: the pilot (its command line) and its payloads (environment),
    started from this test (another test's service may hand out the same pilot ids)."""
    found = []
    for process in psutil.process_iter():
        try:
            env = process.environ()
            mine = testing.same_home(env) and (
                pilot_id in process.cmdline() or env.get("DIRAC_LIKE_PILOT_ID") == pilot_id
            )
            if mine and process.status() != psutil.STATUS_ZOMBIE:
                found.append(process)
        except psutil.Error:
            continue
    return found


def test_an_admin_kills_a_pilot_its_job_moves_and_the_director_cancels_it(
    tmp_path: Path, client: Client
) -> None:
    [job_id] = client.submit(['Executable = "/bin/sleep"; Arguments = "120";'], "alice")
    director = local_director(tmp_path, client, write_site(tmp_path / "sites"))
    try:

        def running() -> str:
            director.cycle()
            [row] = client.status([job_id])
            return str(row.pilot_id) if row.status == "Running" else ""

        pilot_id = wait_for(running, "the sleep job Running on a local pilot")
        result = client.kill_pilot(pilot_id)

        def cancelled() -> PilotView | None:
            director.cycle()
            [row] = client.pilots(site=SITE, states=["Aborted"]) or [None]
            return row if row and not director.book.outbox else None

        aborted = wait_for(cancelled, "the killed pilot Aborted in the service")
        [job] = client.status([job_id])
    finally:
        director.close()
    assert result.rescheduled == [job_id]
    assert aborted.pilot_id == pilot_id and aborted.kill_requested
    assert aborted.reason == "Killed by an admin"
    assert job.pilot_id != pilot_id  # waiting again, or already on another pilot
    assert processes_of(pilot_id) == []  # the pilot and its sleep payload are gone


def test_a_refused_pilot_is_recorded_aborted_with_the_fabric_message(
    tmp_path: Path, client: Client
) -> None:
    client.submit(['Executable = "/bin/true";'], "alice")
    director = Director(
        write_site(tmp_path / "sites"), client, {"local": RefusingFabric()}, tmp_path / "director"
    )
    try:
        director.cycle()
    finally:
        director.close()
    [row] = client.pilots(site=SITE)
    assert row.state == "Aborted"
    assert "queue closed (test)" in row.reason


def test_a_restarted_director_marks_its_old_local_pilots_aborted(
    tmp_path: Path, client: Client
) -> None:
    client.submit(['Executable = "/bin/sleep"; Arguments = "120";'], "alice")
    site = write_site(tmp_path / "sites")
    first = local_director(tmp_path, client, site)
    first.cycle()
    [pilot_id] = first.records
    first.book.outbox.clear()  # as if it died before reporting anything more
    for fabric in first.fabrics.values():
        fabric.close()

    second = local_director(tmp_path / "again", client, site)
    try:
        second.cycle()
    finally:
        second.close()
    [row] = [row for row in client.pilots(site=SITE) if row.pilot_id == pilot_id]
    assert row.state == "Aborted"
    assert row.reason == "Stopped with a previous run of the director"
