"""Prometheus metrics: the central service's and a director's /metrics, scraped over HTTP, and by
a real Prometheus server (Debian's, started by scripts/prometheus.sh) with the shipped alert
rules; no identity or secret in any of it."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_server import start_prometheus, stop_prometheus

from dirac_like.agents.director import Director, DirectorSettings
from dirac_like.agents.fabrics import OUTPUT_TAIL_BYTES, Fabric, FabricError, PilotRequest
from dirac_like.agents.fabrics import PilotState as FabricPilotState
from dirac_like.agents.monitoring import Monitor, MonitorSettings
from dirac_like.agents.transfer import TransferAgent, TransferAgentConfig
from dirac_like.client import Client, RetryPolicy
from dirac_like.identity import load_identity
from dirac_like.processes import ServiceProcess
from dirac_like.protocol import ARGUMENTS, PilotResources
from dirac_like.sites import load_site
from dirac_like.testing import wait_for

ROOT = Path(__file__).resolve().parents[2]
FAST_RETRIES = RetryPolicy(timeout=5.0, retries=2, backoff=0.05, max_backoff=0.2)
FAST_SNAPSHOTS = "[metrics]\nrefresh = 0.1\n"
SITE = "Site.Metrics.org"
SITE_TOML = """\
cycle_seconds = 1.0
failure_threshold = 1
backoff_seconds = 600.0

[ce.ce1]
fabric = "local"
cores_per_slot = 1
max_total = 3
max_wall_time = 200000
"""


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as reply:
        text: str = reply.read().decode()
        return text


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of the series ``name{labels}`` in a scrape (None: absent)."""
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            found = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0]))
            if all(found.get(key) == value for key, value in labels.items()):
                return float(line.rsplit(" ", 1)[-1])
    return None


class ClosedQueue(Fabric):
    """A CE that refuses every pilot: the director backs it off (a gauge says so)."""

    name = "local"

    def submit(self, request: PilotRequest) -> str:
        raise FabricError(f"pilot {request.pilot_id}: queue closed (test)")

    def status(self, refs: list[str]) -> dict[str, FabricPilotState]:
        return {ref: FabricPilotState.ABORTED for ref in refs}

    def cancel(self, ref: str) -> None:
        pass

    def output(self, ref: str, max_bytes: int = OUTPUT_TAIL_BYTES) -> str:
        return ""

    def close(self) -> None:
        pass


@contextlib.contextmanager
def closed_queue_director(tmp_path: Path, endpoint: str) -> Iterator[Director]:
    sites = tmp_path / "sites"
    sites.mkdir()
    (sites / f"{SITE}.toml").write_text(SITE_TOML)
    with Client(endpoint, FAST_RETRIES) as client:
        director = Director(
            load_site(sites / f"{SITE}.toml"),
            client,
            {"local": ClosedQueue()},
            tmp_path / "director",
            settings=DirectorSettings(),
        )
        try:
            yield director
        finally:
            director.close()


def grid_with_work(start_central: Callable[..., ServiceProcess]) -> ServiceProcess:
    """A service with 3 waiting jobs of alice and one matched to pilot p-secret-77."""
    service = start_central(FAST_SNAPSHOTS)
    with Client(service.endpoint, FAST_RETRIES) as client:
        client.submit(['Executable = "/bin/true";'] * 4, owner="alice-in-metrics")
        assert client.request_job("p-secret-77", PilotResources(site="LCG.CERN.cern")).job
    return service


def test_the_central_metrics_show_jobs_pilots_and_requests(
    start_central: Callable[..., ServiceProcess],
) -> None:
    service = grid_with_work(start_central)
    assert service.metrics_url.startswith("http://127.0.0.1:")

    text = wait_for(
        lambda: (lambda t: t if sample(t, "dirac_like_matches_total") else "")(
            scrape(service.metrics_url)
        ),
        "a snapshot after the match",
    )

    assert sample(text, "dirac_like_jobs", status="Waiting", site="ANY", group="user") == 3
    assert sample(text, "dirac_like_jobs", status="Matched", site="LCG.CERN.cern") == 1
    assert sample(text, "dirac_like_jobs_submitted_total") == 4
    assert sample(text, "dirac_like_pilots", site="LCG.CERN.cern", state="Running") == 1
    assert sample(text, "dirac_like_connected_pilots", site="LCG.CERN.cern") == 1
    assert sample(text, "dirac_like_share_target_ratio", group="user") == 1
    assert sample(text, "dirac_like_request_seconds_count", op="submit") == 1
    assert sample(text, "dirac_like_request_seconds_count", op="request_job") == 1
    assert (sample(text, "dirac_like_commit_seconds_count") or 0) >= 2


def test_the_metrics_hold_no_identity_and_no_secret(
    start_central: Callable[..., ServiceProcess],
) -> None:
    service = grid_with_work(start_central)
    with Client(service.endpoint, FAST_RETRIES) as client:
        client.identity_add("bob-the-user", "user", ["user"])  # a second identity exists too
    text = wait_for(
        lambda: (lambda t: t if sample(t, "dirac_like_matches_total") else "")(
            scrape(service.metrics_url)
        ),
        "a snapshot after the match",
    )

    admin = load_identity(service.home / "identities" / "admin.identity")
    registry = json.loads((service.home / "identities.json").read_text())
    secrets = {
        admin.secret_key,
        admin.public_key,
        admin.service_key,
        "alice-in-metrics",
        "p-secret-77",
        "bob-the-user",
        "admin",
        *(entry["public_key"] for entry in registry["identities"]),
    }
    for secret in secrets:
        assert secret not in text, f"{secret!r} is in the metrics"
    ops = set(re.findall(r'op="([^"]*)"', text))
    assert ops <= {*ARGUMENTS, "unknown"}


@pytest.mark.skipif(
    shutil.which("prometheus") is None and os.environ.get("CI") != "true",
    reason="no prometheus binary (bash scripts/prometheus.sh install)",
)
def test_prometheus_scrapes_every_daemon_and_loads_the_alert_rules(
    start_central: Callable[..., ServiceProcess],
    tmp_path: Path,
) -> None:
    """The service, a director, a transfer agent and a monitoring agent, one Prometheus."""
    service = grid_with_work(start_central)
    with (
        closed_queue_director(tmp_path, service.endpoint) as director,
        Client(service.endpoint, FAST_RETRIES) as client,
    ):
        director.cycle()  # refused by the closed queue: the CE is backed off
        transfer_agent = TransferAgent(
            client, TransferAgentConfig("metrics-agent", metrics_listen="127.0.0.1:0")
        )
        (tmp_path / "monitor").mkdir()
        monitor = Monitor(MonitorSettings(), {}, client, tmp_path / "monitor")
        try:
            urls = [
                service.metrics_url,
                director.serve_metrics(),
                transfer_agent.serve_metrics(),
                monitor.serve_metrics(),
            ]
            monitor._tick()  # one cycle (no site to probe): counted in its metrics
            scrape_with_prometheus(tmp_path, *urls)
        finally:
            for endpoint in (transfer_agent.metrics_endpoint, monitor.metrics_endpoint):
                if endpoint is not None:
                    endpoint.close()


def scrape_with_prometheus(tmp_path: Path, *urls: str) -> None:
    base = tmp_path / "prometheus"
    base.mkdir()
    shutil.copy(ROOT / "etc" / "prometheus" / "alerts.yml", base / "alerts.yml")
    config = base / "prometheus.yml"
    config.write_text(_scrape_config(*urls))
    port = start_prometheus(base, config)
    try:

        def query(expression: str) -> list[dict[str, Any]]:
            url = (
                f"http://127.0.0.1:{port}/api/v1/query?"
                f"{urllib.parse.urlencode({'query': expression})}"
            )
            result: list[dict[str, Any]] = json.loads(scrape(url))["data"]["result"]
            return result

        def value(expression: str) -> float | None:
            result = query(expression)
            return float(result[0]["value"][1]) if result else None

        wait_for(
            lambda: value('sum(dirac_like_jobs{status="Waiting"})') == 3,
            "Prometheus to hold the service's waiting jobs",
            timeout=60,
        )
        wait_for(
            lambda: value(f'dirac_like_director_ce_backed_off{{site="{SITE}"}}') == 1,
            "Prometheus to hold the director's backed-off CE",
            timeout=60,
        )
        wait_for(
            lambda: value('dirac_like_monitoring_cycles_total{outcome="ok"}') == 1,
            "Prometheus to hold the monitoring agent's cycle",
            timeout=60,
        )
        wait_for(  # every target scraped (each at its own offset in the interval)
            lambda: {row["metric"]["job"] for row in query("up == 1")} == set(JOBS[: len(urls)]),
            "Prometheus to have scraped every daemon",
            timeout=60,
        )
        rules = json.loads(scrape(f"http://127.0.0.1:{port}/api/v1/rules"))["data"]["groups"]
        names = {rule["name"] for group in rules for rule in group["rules"]}
        assert {
            "DiracLikeCentralDown",
            "DiracLikeNoMatchesWhileJobsWait",
            "DiracLikeSiteFailing",
            "DiracLikeSlowCommits",
        } <= names
    finally:
        stop_prometheus(base)


JOBS = (
    "dirac-like-central",
    "dirac-like-director",
    "dirac-like-transfer-agent",
    "dirac-like-monitoring",
)


def _scrape_config(*urls: str) -> str:
    """The shipped config's job names, each scraping one of ``urls`` every second."""
    jobs = "".join(
        f"""  - job_name: {job}
    static_configs: [{{targets: ["{urllib.parse.urlsplit(url).netloc}"]}}]
"""
        for job, url in zip(JOBS, urls, strict=False)
    )
    return f"""\
global: {{scrape_interval: 1s, evaluation_interval: 1s}}
rule_files: [alerts.yml]
scrape_configs:
{jobs}"""
