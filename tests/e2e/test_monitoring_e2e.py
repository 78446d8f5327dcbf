"""The monitoring agent end to end: a central service, two site directors and the agent, each a
``dirac-like`` process, with real local pilots. A healthy site stays Active; a site whose pilots
exit at once is Banned by the agent within the configured number of probes (and its failing
pilots are reported), a job for it waits, and once its director is repaired the site returns to
Active and the job runs there; a scheduled downtime of the healthy site lowers its availability,
not its reliability. The agent stops cleanly on SIGTERM."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from dirac_like import testing
from dirac_like.cli.monitoring import availability_report
from dirac_like.client import Client, RetryPolicy
from dirac_like.identity import save_identity
from dirac_like.processes import ServiceProcess, dirac_like_argv
from dirac_like.protocol import ProbeResultItem

T = TypeVar("T")

pytestmark = pytest.mark.slow

GOOD, BAD = "LCG.Good.org", "LCG.Bad.org"
DEADLINE = 90.0
RETRIES = RetryPolicy(timeout=10.0, retries=2, backoff=0.1, max_backoff=0.5)
SITE_TOML = """\
cycle_seconds = 0.5
failure_threshold = 1000  # the CE keeps getting pilots: the monitoring agent is the judge

[ce.ce1]
fabric = "local"
cores_per_slot = 1
max_total = 2
"""
DIRECTOR_TOML = """\
[director]
idle_timeout = 2.0
local_grace = 2.0
pilot_args = ["--request-interval", "0.3", "--heartbeat", "0.5"%s]
"""
MONITORING_TOML = """\
[monitoring]
cycle_seconds = 0.5
probe_interval = 1.0
start_timeout = 4.0
run_timeout = 30.0
min_pilots = 2

[monitoring.policy]
ban_after = 2
recover_after = 2
"""


class Grid:
    """The processes of the test, stopped by PID at the end whatever happens."""

    def __init__(self, folder: Path, endpoint: str) -> None:
        self.folder = folder
        self.endpoint = endpoint
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, identity: Path, *args: str) -> subprocess.Popen[bytes]:
        command = [
            *dirac_like_argv("agent", *args),
            "--server",
            self.endpoint,
            "--home",
            str(self.folder / name),
            "--identity",
            str(identity),
        ]
        with open(self.folder / f"{name}.log", "ab") as log:
            popen = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                cwd=self.folder,
                start_new_session=True,
            )
        self.processes[name] = popen
        return popen

    def stop(self, name: str, timeout: float = 30.0) -> int:
        popen = self.processes.pop(name)
        popen.send_signal(signal.SIGTERM)
        try:
            return popen.wait(timeout)
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait(10)
            raise

    def stop_all(self) -> None:
        for name in list(self.processes):
            with contextlib.suppress(subprocess.TimeoutExpired):  # killed by stop() then
                self.stop(name)


@pytest.fixture
def grid(tmp_path: Path, central: ServiceProcess) -> Iterator[Grid]:
    grid = Grid(tmp_path, central.endpoint)
    try:
        yield grid
    finally:
        grid.stop_all()


def status_of(client: Client, site: str) -> str:
    return next((r.status for r in client.resource_status() if r.target == site), "Active")


def health_warnings(client: Client) -> list[ProbeResultItem]:
    return [
        r
        for r in client.probe_results(0.0, BAD)
        if r.check == "health:pilots" and r.status == "WARNING"
    ]


def ok_probes_since(client: Client, since: float) -> list[ProbeResultItem]:
    return [r for r in client.probe_results(since, GOOD) if r.check == "dirac-like"]


def wait_while_alive(condition: Callable[[], T], what: str, grid: Grid) -> T:
    """What ``condition`` returns once true (polled), failing at once if a grid process died."""

    def check() -> T:
        dead = [name for name, popen in grid.processes.items() if popen.poll() is not None]
        assert not dead, f"stopped by itself: {dead}; see the logs in {grid.folder}"
        return condition()

    return testing.wait_for(check, what, DEADLINE, interval=0.2)


def test_a_failing_ce_is_banned_jobs_stop_going_there_and_it_returns_when_repaired(
    tmp_path: Path, central: ServiceProcess, grid: Grid
) -> None:
    sites = tmp_path / "sites"
    sites.mkdir()
    for site in (GOOD, BAD):
        (sites / f"{site}.toml").write_text(SITE_TOML)
    good_pilots, bad_pilots = tmp_path / "director.toml", tmp_path / "broken-director.toml"
    good_pilots.write_text(DIRECTOR_TOML % "")
    bad_pilots.write_text(DIRECTOR_TOML % ', "--no-such-option"')  # its pilots exit at once
    (tmp_path / "monitoring.toml").write_text(MONITORING_TOML)
    with Client(central.endpoint, RETRIES, identity=central.identity) as admin:
        identities = {}
        for name, role, site in (
            ("good", "director", GOOD),
            ("bad", "director", BAD),
            ("sam", "monitor", ""),
        ):
            identities[name] = tmp_path / f"{name}.identity"
            save_identity(identities[name], admin.identity_add(name, role, site=site))

        directors = ("director", "--sites-dir", str(sites), "--site")
        grid.start("good", identities["good"], *directors, GOOD, "--config", str(good_pilots))
        grid.start("bad", identities["bad"], *directors, BAD, "--config", str(bad_pilots))
        grid.start(
            "monitoring",
            identities["sam"],
            "monitoring",
            "--sites-dir",
            str(sites),
            "--config",
            str(tmp_path / "monitoring.toml"),
        )

        wait_while_alive(lambda: status_of(admin, BAD) == "Banned", "the failing site banned", grid)
        failed = [r for r in admin.probe_results(0.0, BAD) if r.check == "started"]
        assert len(failed) == 2 and all(r.message.startswith("not started") for r in failed)
        wait_while_alive(lambda: health_warnings(admin), "a warning about the failing pilots", grid)
        assert "pilots failed or aborted" in health_warnings(admin)[0].message
        good = wait_while_alive(  # the good site's probe may come after the bad one's ban
            lambda: [r for r in admin.probe_results(0.0, GOOD) if r.check == "dirac-like"],
            "a probe of the good site",
            grid,
        )
        assert all(r.status == "OK" for r in good)
        assert status_of(admin, GOOD) == "Active"

        (job_id,) = admin.submit([f'Executable = "/bin/true"; Site = "{BAD}";'], "alice", "users")
        grid.stop("bad")  # repaired: its pilots start again
        grid.start("bad", identities["bad"], *directors, BAD, "--config", str(good_pilots))
        begin = time.time()
        intervention = admin.downtime_add(GOOD, "site", begin, begin + 3, "planned, e2e")
        wait_while_alive(
            lambda: status_of(admin, BAD) == "Active", "the repaired site Active", grid
        )
        back = next(r for r in admin.resource_status() if r.target == BAD)
        wait_while_alive(lambda: admin.status([job_id])[0].status == "Done", "the job Done", grid)
        matched = next(row.time for row in admin.history(job_id) if row.status == "Matched")
        assert matched >= back.changed  # no job went there while it was Banned or Probing
        assert [r.status for r in admin.probe_results(0.0, GOOD) if r.check == "started"]
        assert status_of(admin, GOOD) == "Active"

        wait_while_alive(
            lambda: ok_probes_since(admin, intervention.end), "a probe after the downtime", grid
        )
        (report,) = availability_report(admin, begin - 5, time.time(), None, 10.0, GOOD)
        (figures,) = report["periods"]
        up, down = figures["up_seconds"], figures["down_seconds"]
        scheduled = figures["scheduled_downtime_seconds"]
        assert scheduled == pytest.approx(3.0)
        # The announced downtime does not count against reliability, only against availability.
        # (On a loaded machine a probe of the good site may time out: a CRITICAL result is then
        # honestly "down", so the figures are checked against their definitions.)
        assert figures["reliability"] == pytest.approx(up / (up + down))
        assert figures["availability"] == pytest.approx(up / (up + down + scheduled))
        assert figures["reliability"] > figures["availability"]
        # Any CRITICAL since the start: one before the window lasts into it (its validity).
        critical = [r for r in admin.probe_results(0.0, GOOD) if r.status == "CRITICAL"]
        if not critical:
            assert down == 0.0 and figures["reliability"] == 1.0
        assert grid.stop("monitoring") == 0  # SIGTERM: the cycle under way ends, exit 0
