"""The monitoring agent against a real central service, with a real director and local pilots
where a probe must run: its checks, a probe that hangs, a site whose director is down, the
service restarting under the agent, the dry run and the alert hook."""

from __future__ import annotations

import dataclasses
import json
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from dirac_like import testing
from dirac_like.agents.director import Director, DirectorSettings
from dirac_like.agents.fabrics import LocalFabric
from dirac_like.agents.monitoring import Monitor, MonitorSettings, SEConfig, load_settings
from dirac_like.client import Client, RetryPolicy
from dirac_like.errors import ConfigError
from dirac_like.monitoring import PolicyConfig
from dirac_like.processes import ServiceProcess, free_port
from dirac_like.protocol import PilotResources, ProbeResultItem
from dirac_like.sites import SiteConfig, load_site

SITE = "Site.Monitor.org"
QUICK = RetryPolicy(timeout=2.0, retries=0, backoff=0.05, max_backoff=0.1)
FAST_PILOTS = DirectorSettings(
    idle_timeout=1.0, local_grace=5.0, pilot_args=("--request-interval", "0.3", "--heartbeat", "1")
)
SITE_TOML = """\
cycle_seconds = 1.0

[ce.ce1]
fabric = "local"
cores_per_slot = 1
max_total = 2
"""
SETTINGS = MonitorSettings(
    cycle_seconds=1.0,
    probe_interval=0.5,
    start_timeout=60.0,
    run_timeout=60.0,
    policy=PolicyConfig(ban_after=2, recover_after=2),
)


@pytest.fixture
def site(tmp_path: Path) -> SiteConfig:
    folder = tmp_path / "sites"
    folder.mkdir()
    (folder / f"{SITE}.toml").write_text(SITE_TOML)
    return load_site(folder / f"{SITE}.toml")


@pytest.fixture
def director(tmp_path: Path, client: Client, site: SiteConfig) -> Iterator[Director]:
    home = tmp_path / "director"
    fabric = LocalFabric(home / "fabric" / "local", grace=5.0)
    director = Director(site, client, {"local": fabric}, home, settings=FAST_PILOTS)
    try:
        yield director
    finally:
        director.close()


def monitor(
    tmp_path: Path, client: Client, site: SiteConfig, settings: MonitorSettings = SETTINGS
) -> Monitor:
    home = tmp_path / "monitor"
    home.mkdir(exist_ok=True)
    return Monitor(settings, {site.name: site}, client, home)


def results(client: Client, check: str = "") -> list[ProbeResultItem]:
    return [r for r in client.probe_results(0.0) if not check or r.check == check]


def status_of(client: Client, target: str = SITE) -> str:
    return next((row.status for row in client.resource_status() if row.target == target), "Active")


def run_until(
    condition: Callable[[], object], what: str, *steps: Callable[[], object], timeout: float = 60.0
) -> None:
    def step() -> object:
        for action in steps:
            action()
        return condition()

    testing.wait_for(step, what, timeout, interval=0.2)


def test_a_probe_runs_on_a_real_pilot_and_reports_every_check(
    tmp_path: Path, client: Client, site: SiteConfig, director: Director
) -> None:
    storage = tmp_path / "se-disk"
    storage.mkdir()
    settings = dataclasses.replace(SETTINGS, se={"DISK-SE": SEConfig(str(storage))})
    agent = monitor(tmp_path, client, site, settings)
    run_until(
        lambda: results(client, "dirac-like"),
        "a probe's checks reported",
        director.cycle,
        agent.cycle,
    )
    by_check = {r.check: r for r in results(client) if r.target == SITE}
    assert {"started", "python", "dirac-like", "scratch", "cpu", "memory", "se:DISK-SE"} <= set(
        by_check
    )
    assert all(r.status == "OK" for r in by_check.values()), by_check
    assert by_check["started"].job_id > 0 and by_check["started"].ce == "ce1"
    se_checks = [r for r in results(client) if r.target == "DISK-SE"]
    assert [r.check for r in se_checks[:4]] == ["se-write", "se-read", "se-checksum", "se-delete"]
    assert all(r.status == "OK" for r in se_checks)
    assert not list(storage.rglob("probe-*"))  # the test file was deleted
    assert status_of(client) == "Active"


def test_a_probe_that_hangs_is_killed_and_critical_timed_out(
    tmp_path: Path, client: Client, site: SiteConfig, director: Director
) -> None:
    settings = dataclasses.replace(SETTINGS, run_timeout=1.0, probe_arguments=("--hang", "300"))
    agent = monitor(tmp_path, client, site, settings)
    run_until(
        lambda: results(client, "finished"), "the hanging probe judged", director.cycle, agent.cycle
    )
    finished = results(client, "finished")[0]
    assert finished.status == "CRITICAL" and finished.message.startswith("timed out")
    run_until(
        lambda: client.status([finished.job_id])[0].status == "Killed",
        "the hanging probe killed",
        director.cycle,
    )


def test_a_site_whose_director_is_down_is_critical_not_started_then_banned(
    tmp_path: Path, client: Client, site: SiteConfig
) -> None:
    events = tmp_path / "alerts.jsonl"
    hook = (
        sys.executable,
        "-c",
        f"import sys; open({str(events)!r}, 'a').write(sys.stdin.read() + '\\n')",
    )
    settings = dataclasses.replace(SETTINGS, start_timeout=0.5, alert_command=hook)
    agent = monitor(tmp_path, client, site, settings)
    run_until(lambda: status_of(client) == "Banned", "the site banned", agent.cycle)
    started = results(client, "started")
    assert len(started) == 2 and all(r.status == "CRITICAL" for r in started)
    assert started[0].message.startswith("not started")
    row = next(row for row in client.resource_status() if row.target == SITE)
    assert row.automatic and row.reason.startswith("auto: probe started failed 2 times")
    changes = [json.loads(line) for line in events.read_text().splitlines()]
    assert [(e["target"], e["old"], e["new"]) for e in changes] == [
        (SITE, "Active", "Degraded"),
        (SITE, "Degraded", "Banned"),
    ]
    assert client.status([started[0].job_id])[0].status == "Killed"


def test_dry_run_changes_no_status_but_says_what_it_would_do(
    tmp_path: Path, client: Client, site: SiteConfig, caplog: pytest.LogCaptureFixture
) -> None:
    settings = dataclasses.replace(
        SETTINGS, start_timeout=0.5, policy=PolicyConfig(ban_after=2, dry_run=True)
    )
    agent = monitor(tmp_path, client, site, settings)
    run_until(lambda: len(results(client, "started")) >= 2, "two failed probes", agent.cycle)
    agent.cycle()
    assert status_of(client) == "Active"
    assert f"dry run: would set site {SITE}: Active -> Banned" in caplog.text


def test_the_agent_failing_to_submit_is_unknown_and_bans_nothing(
    tmp_path: Path, start_central: Callable[..., ServiceProcess], site: SiteConfig
) -> None:
    # A service that refuses the probe job (its CPU time is over the service's limit): the
    # agent's own trouble, not the site's.
    service = start_central("[jobs]\nmax_cpu_time = 100\n")
    with Client(service.endpoint, QUICK) as client:
        settings = dataclasses.replace(SETTINGS, policy=PolicyConfig(ban_after=1))
        agent = monitor(tmp_path, client, site, settings)
        agent.cycle(2.0)
        agent.cycle(3.0)
        submits = results(client, "submit")
        assert [r.status for r in submits] == ["UNKNOWN", "UNKNOWN"]
        assert "could not submit the probe" in submits[0].message
        assert "CPUTime" in submits[0].message
        assert status_of(client) == "Active"


def test_the_central_service_restarting_under_the_agent(
    tmp_path: Path, start_central: Callable[..., ServiceProcess], site: SiteConfig
) -> None:
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    home = tmp_path / "central"
    service = start_central(home=home, listen=endpoint)
    with Client(endpoint, QUICK) as client:
        agent = monitor(tmp_path, client, site, dataclasses.replace(SETTINGS, start_timeout=5.0))
        assert not agent.cycle(2.0).unreachable
        (probe,) = agent.in_flight.values()
        service.stop()
        assert agent.cycle(3.0).unreachable  # no crash, nothing judged, the probe kept
        assert list(agent.in_flight.values()) == [probe]
        start_central(home=home, listen=endpoint)
        report = agent.cycle(10.0)  # the probe was not started within 5 s
        assert not report.unreachable
        (started,) = results(client, "started")
        assert (started.job_id, started.status) == (probe.job_id, "CRITICAL")
        assert status_of(client) == "Degraded"


def test_stalled_jobs_are_a_warning_and_a_probe_killed_by_someone_else_unknown(
    tmp_path: Path, start_central: Callable[..., ServiceProcess], site: SiteConfig
) -> None:
    service = start_central("[jobs]\nstalled_timeout = 0.5\n")
    with Client(service.endpoint, QUICK) as client:
        (job_id,) = client.submit(['Executable = "/bin/true";'], "alice")
        resources = PilotResources(site=SITE, ce="ce1", cpu_time_left=10**6)
        job = client.request_job("lost-pilot", resources).job
        assert job is not None and job.job_id == job_id
        client.update_status(job_id, job.attempt, "lost-pilot", "Running")
        testing.wait_for(lambda: client.status([job_id])[0].status == "Stalled", "the job Stalled")
        agent = monitor(tmp_path, client, site)
        agent.cycle()
        (stalled,) = results(client, "health:stalled-jobs")
        assert (
            stalled.status == "WARNING"
            and f"1 stalled job(s) at {SITE}: {job_id}" in stalled.message
        )
        (probe,) = agent.in_flight.values()
        client.kill([probe.job_id])
        client.delete([probe.job_id])
        agent.cycle()  # a probe job gone: UNKNOWN, and the agent goes on
        (lost,) = results(client, "started")
        assert (lost.job_id, lost.status) == (probe.job_id, "UNKNOWN")


def test_settings_with_a_wrong_key_are_refused_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "monitoring.toml"
    path.write_text("[monitoring]\ncycle_seconds = 5\n[monitoring.policy]\nban_afterr = 3\n")
    with pytest.raises(ConfigError, match=re.escape("monitoring.policy.ban_afterr: unknown key")):
        load_settings(path)
    path.write_text("[monitoring]\nalert_command = 'mail'\n")
    with pytest.raises(ConfigError, match="alert_command: expected a list of strings"):
        load_settings(path)
