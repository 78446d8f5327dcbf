"""The monitoring agent: probes every CE and SE, keeps site/SE statuses by policy, watches pilots.

One :meth:`Monitor.cycle` is one iteration, ``now`` passed in; :meth:`Monitor.run` drives it with
apscheduler until SIGTERM or SIGINT (as the director does). A cycle:

1. **refresh** — statuses and downtimes from the central service; unreachable: the cycle stops
   here (nothing is judged on what the agent cannot see; the next cycle tries again);
2. **follow** — each probe job in flight is judged (agents/probe_jobs.py): Done → its checks;
   Failed → CRITICAL; not started in ``start_timeout`` → killed, CRITICAL "not started";
   running longer than ``run_timeout`` → killed, CRITICAL "timed out"; lost → UNKNOWN; one
   still waiting when its site enters a downtime is killed without a verdict;
3. **submit** — a probe job to each CE whose last probe is ``probe_interval`` old (none to a
   site in downtime); a submission the service refuses or cannot take is UNKNOWN, never
   CRITICAL: the agent's own failures do not count against a site;
4. **storage** — each SE: write, read back, checksum, delete a test file
   (agents/storage_probe.py);
5. **health** — pilots of a CE failing or aborting above ``pilot_failure_rate``, and stalled jobs
   at a site, become WARNING results named ``health:...`` with the evidence (kept, shown, but
   not fed to the status policy);
6. **report** — the results go to the service (an outbox keeps them while it is unreachable);
7. **decide** — the status policy (dirac_like.monitoring.StatusPolicy) runs over each target's
   probe outcomes; a change is sent to the service (``--dry-run``/``policy.dry_run``: only
   logged), logged, and given to the alert hook (a command run with the event as JSON on
   stdin). A target an operator banned is left alone.

The outcomes the policy looks at are rebuilt from the stored results when the agent starts, so
a restart forgets nothing but the probes in flight (their jobs end or are killed by time).
"""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

from dirac_like.client import Client, RetryPolicy
from dirac_like.config import from_mapping, read_toml
from dirac_like.errors import (
    EXIT_OK,
    ConfigError,
    DiracLikeError,
    NotFound,
    ServiceUnavailable,
)
from dirac_like.home_lock import holding, lock_path
from dirac_like.metrics import MetricsEndpoint, serve_metrics
from dirac_like.monitoring import (
    HEALTH_PREFIX,
    PROBE_GROUP,
    CheckStatus,
    Decision,
    Outcome,
    PolicyConfig,
    ProbeResult,
    ResourceStatus,
    StatusPolicy,
    TargetKind,
    outcome_of,
    probe_runs,
)
from dirac_like.protocol import DowntimeRow, JobSummary, ProbeResultItem, StatusRow
from dirac_like.sites import SiteConfig
from dirac_like.submission import fetch_output

from .agent_metrics import MonitorMetrics
from .probe_jobs import (
    NOT_STARTED_STATUSES,
    PROBE_OUTPUT,
    Fate,
    InFlight,
    judge,
    probe_description,
    results_of_fate,
    results_of_output,
)
from .storage_probe import FileStorage, StorageProbe, probe_storage

log = logging.getLogger(__name__)

MONITOR_RETRIES = RetryPolicy(timeout=5.0, retries=1, backoff=0.2, max_backoff=1.0)
PROBE_OWNER = "monitor"  # without identities (--insecure); else the monitor identity's name
MAX_OUTCOMES = 50  # remembered per target
MAX_OUTPUT_BYTES = 1024 * 1024
MAX_OUTBOX = 10_000  # results kept while the service does not take them (the newest)


@dataclass(frozen=True)
class SEConfig:
    path: str  # a ``file`` SE: its folder, as this host and the worker nodes see it


@dataclass(frozen=True)
class MonitorSettings:
    """The ``[monitoring]`` table of the agent's config file (etc/monitoring.toml)."""

    cycle_seconds: float = 300.0
    probe_interval: float = 900.0  # seconds between two probes of one CE
    start_timeout: float = 1800.0  # a probe not started by then: CRITICAL "not started"
    run_timeout: float = 600.0  # a probe running longer: killed, CRITICAL "timed out"
    history_seconds: float = 7 * 86400.0  # results read back at start-up
    min_scratch_mb: int = 10
    pilot_failure_rate: float = 0.5  # failed+aborted / ended pilots of a CE that warns
    pilot_window: float = 3600.0  # seconds of ended pilots looked at
    min_pilots: int = 3  # ended pilots needed before a rate means anything
    alert_timeout: float = 10.0  # seconds the alert command may take
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    se: Mapping[str, SEConfig] = field(default_factory=dict)
    sites: tuple[str, ...] = ()  # sites to probe; (): every site in the sites folder
    alert_command: tuple[str, ...] = ()  # run with each status change as JSON on stdin
    probe_arguments: tuple[str, ...] = ()  # more arguments for dirac_like.probe
    metrics_listen: str = "127.0.0.1:0"  # HOST:PORT of its /metrics ('' : none; 0: a free port)


_LIST_KEYS = ("sites", "alert_command", "probe_arguments")


def load_settings(path: Path | None, dry_run: bool = False) -> MonitorSettings:
    """The ``[monitoring]`` table of a TOML file; ConfigError naming a wrong key."""
    raw = read_toml(path) if path is not None else {}
    unknown = sorted(set(raw) - {"monitoring"})
    if unknown:
        raise ConfigError(f"{path}: {unknown[0]}: unknown key (only a [monitoring] table)")
    table = dict(raw.get("monitoring", {}))
    lists = {key: _strings(table.pop(key, []), f"{path}: monitoring.{key}") for key in _LIST_KEYS}
    if dry_run:
        table["policy"] = {**table.get("policy", {}), "dry_run": True}
    try:
        settings = from_mapping(MonitorSettings, table, "monitoring")
        settings.policy.check()
    except DiracLikeError as exc:
        raise ConfigError(f"{path}: {exc.message}") from None
    settings = MonitorSettings(**{**settings.__dict__, **lists})
    _check(settings, path)
    return settings


def _strings(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ConfigError(f"{where}: expected a list of strings")
    return tuple(value)


def _check(settings: MonitorSettings, path: Path | None) -> None:
    for key in (
        "cycle_seconds",
        "probe_interval",
        "start_timeout",
        "run_timeout",
        "pilot_window",
        "alert_timeout",
    ):
        if getattr(settings, key) <= 0:
            raise ConfigError(f"{path}: monitoring.{key}: must be positive")


@dataclass
class CycleReport:
    now: float
    results: int = 0  # results produced this cycle
    changes: list[str] = field(default_factory=list)  # "target: old -> new"
    unreachable: bool = False


class Monitor:
    """The agent. Not thread safe: one cycle at a time (the runner sees to it)."""

    def __init__(
        self,
        settings: MonitorSettings,
        sites: Mapping[str, SiteConfig],
        client: Client,
        home: Path,
        storages: Iterable[StorageProbe] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.sites = dict(sites)
        self.client = client
        self.home = Path(home)
        self.clock = clock
        self.policy = StatusPolicy(settings.policy)
        self.storages = (
            list(storages)
            if storages is not None
            else [FileStorage(name, Path(se.path)) for name, se in sorted(settings.se.items())]
        )
        self.in_flight: dict[tuple[str, str], InFlight] = {}
        self.last_probe: dict[tuple[str, str], float] = {}  # (site, ce) or (SE, "") -> time
        self.last_health: dict[tuple[str, str], float] = {}
        self.outbox: list[ProbeResult] = []
        self.outcomes: dict[tuple[TargetKind, str], list[Outcome]] = {}
        self.statuses: dict[tuple[str, str], StatusRow] = {}
        self.downtimes: list[DowntimeRow] = []
        self.loaded_history = False
        self._lock = threading.Lock()
        self.metrics = MonitorMetrics()
        self.metrics_endpoint: MetricsEndpoint | None = None

    # -- one cycle -------------------------------------------------------------------------------

    def cycle(self, now: float | None = None) -> CycleReport:
        """One iteration (see the module docstring). Never raises for a service failure."""
        now = self.clock() if now is None else now
        report = CycleReport(now)
        with self._lock:
            try:
                self.refresh(now)
            except ServiceUnavailable as exc:
                log.error("central service unreachable, nothing judged this cycle: %s", exc.message)
                report.unreachable = True
                return report
            produced: list[ProbeResult] = []
            for step in (self.follow, self.submit_due, self.probe_storages, self.watch_health):
                try:
                    produced += step(now)
                except ServiceUnavailable as exc:
                    log.error("central service unreachable mid-cycle: %s", exc.message)
                    report.unreachable = True
                    break
            report.results = len(produced)
            self.remember(produced)
            self.outbox.extend(produced)
            if self.send_outbox():
                report.changes = self.decide(now)
        log.info(
            "monitoring cycle: %d result(s), %d in flight, changes: %s",
            report.results,
            len(self.in_flight),
            ", ".join(report.changes) or "none",
        )
        return report

    def refresh(self, now: float) -> None:
        """Statuses and downtimes now; at the first success also the stored results."""
        statuses = self.client.resource_status()
        self.downtimes = self.client.downtime_list()
        self.statuses = {(row.kind, row.target): row for row in statuses}
        if not self.loaded_history:
            since = now - self.settings.history_seconds
            self.load_history(self.client.probe_results(since))
            self.loaded_history = True

    def load_history(self, items: Iterable[ProbeResultItem]) -> None:
        results = [
            ProbeResult(
                i.target,
                TargetKind(i.kind),
                i.check,
                CheckStatus(i.status),
                i.message,
                i.time,
                i.ce,
                i.job_id,
            )
            for i in items
        ]
        self.remember(results)
        log.info(
            "rebuilt the probe history of %d target(s) from %d stored result(s)",
            len(self.outcomes),
            len(results),
        )

    def in_downtime(self, target: str, now: float) -> bool:
        return any(
            d.target == target and not d.cancelled and d.start <= now < d.end
            for d in self.downtimes
        )

    # -- probes of CEs ---------------------------------------------------------------------------

    def follow(self, now: float) -> list[ProbeResult]:
        """Judge every probe in flight; the results of those that came to an end."""
        if not self.in_flight:
            return []
        jobs = self._jobs([probe.job_id for probe in self.in_flight.values()])
        produced: list[ProbeResult] = []
        for key, probe in list(self.in_flight.items()):
            row = jobs.get(probe.job_id)
            status = row.status if row else None
            if status in NOT_STARTED_STATUSES and self.in_downtime(probe.site, now):
                self._kill(probe)  # the downtime keeps pilots away: no verdict on the site
                del self.in_flight[key]
                continue
            if status in ("Running", "Completing") and not probe.started:
                probe.started = now
            fate = judge(probe, status, now, self.settings.start_timeout, self.settings.run_timeout)
            if fate is not Fate.WAIT:
                produced += self._ended(probe, fate, row.minor_status if row else "", now)
                del self.in_flight[key]  # only now: an unreachable service leaves it in flight
        return produced

    def _jobs(self, job_ids: list[int]) -> dict[int, JobSummary]:
        """The probe jobs that still exist, by id (one deleted makes the others asked alone)."""
        try:
            return {row.job_id: row for row in self.client.status(job_ids)}
        except NotFound:
            found = {}
            for job_id in job_ids:
                with contextlib.suppress(NotFound):
                    found[job_id] = self.client.status([job_id])[0]
            return found

    def _ended(self, probe: InFlight, fate: Fate, minor: str, now: float) -> list[ProbeResult]:
        if fate in (Fate.NOT_STARTED, Fate.TIMED_OUT):
            self._kill(probe)
        if fate is Fate.COLLECT:
            return results_of_output(probe, self._output(probe), now)
        timeouts = (self.settings.start_timeout, self.settings.run_timeout)
        return results_of_fate(probe, fate, minor, timeouts, now)

    def _kill(self, probe: InFlight) -> None:
        try:
            self.client.kill([probe.job_id])
        except DiracLikeError as exc:
            log.warning(
                "probe job %d (%s %s): could not kill it: %s",
                probe.job_id,
                probe.site,
                probe.ce,
                exc.message,
            )

    def _output(self, probe: InFlight) -> str:
        """What the probe printed ('' if its output cannot be had: judged as no output)."""
        with tempfile.TemporaryDirectory(prefix="probe-", dir=self.home) as folder:
            try:
                target = fetch_output(self.client, probe.job_id, Path(folder), MAX_OUTPUT_BYTES)
                return (target / PROBE_OUTPUT).read_text(errors="replace")
            except ServiceUnavailable:
                raise  # the agent's trouble, not the site's: judged again next cycle
            except (DiracLikeError, OSError) as exc:
                log.warning("probe job %d: no output: %s", probe.job_id, exc)
                return ""

    def submit_due(self, now: float) -> list[ProbeResult]:
        """A probe to every CE whose turn it is; UNKNOWN for the ones that could not be sent."""
        produced: list[ProbeResult] = []
        ses = {storage.name: str(getattr(storage, "root", "")) for storage in self.storages}
        ses = {name: path for name, path in ses.items() if path}
        for site in self.probed_sites():
            if self.in_downtime(site.name, now):
                continue
            for ce in site.ces:
                key = (site.name, ce.name)
                if (
                    key in self.in_flight
                    or now < self.last_probe.get(key, -1e18) + self.settings.probe_interval
                ):
                    continue
                self.last_probe[key] = now
                description = probe_description(
                    site.name, ce, ses, self.settings.min_scratch_mb, self.settings.probe_arguments
                )
                produced += self._submit(site.name, ce.name, description, now)
        return produced

    def probed_sites(self) -> list[SiteConfig]:
        wanted = self.settings.sites or tuple(sorted(self.sites))
        return [self.sites[name] for name in wanted if name in self.sites]

    def _submit(
        self, site: str, ce: str, description: dict[str, Any], now: float
    ) -> list[ProbeResult]:
        try:
            (job_id,) = self.client.submit([description], owner=PROBE_OWNER, group=PROBE_GROUP)
        except DiracLikeError as exc:
            log.error("probe of %s %s: could not submit it: %s", site, ce, exc.message)
            message = f"the monitoring agent could not submit the probe: {exc.message}"
            return [
                ProbeResult(
                    site, TargetKind.SITE, "submit", CheckStatus.UNKNOWN, message[:1000], now, ce
                )
            ]
        self.in_flight[(site, ce)] = InFlight(site, ce, job_id, now)
        log.info("probe job %d submitted to %s %s", job_id, site, ce)
        return []

    # -- storage elements ------------------------------------------------------------------------

    def probe_storages(self, now: float) -> list[ProbeResult]:
        produced: list[ProbeResult] = []
        for storage in self.storages:
            key = (storage.name, "")
            if (
                self.in_downtime(storage.name, now)
                or now < self.last_probe.get(key, -1e18) + self.settings.probe_interval
            ):
                continue
            self.last_probe[key] = now
            produced += probe_storage(storage, now, f"{int(now * 1000)}")
        return produced

    # -- pilot and job health --------------------------------------------------------------------

    def watch_health(self, now: float) -> list[ProbeResult]:
        produced: list[ProbeResult] = []
        for site in self.probed_sites():
            produced += self._pilot_health(site, now) + self._stalled_jobs(site.name, now)
        return produced

    def _due_health(self, key: tuple[str, str], now: float) -> bool:
        if now < self.last_health.get(key, -1e18) + self.settings.probe_interval:
            return False
        self.last_health[key] = now
        return True

    def _pilot_health(self, site: SiteConfig, now: float) -> list[ProbeResult]:
        since = now - self.settings.pilot_window
        ended = [
            p
            for p in self.client.pilots(site.name, ["Done", "Failed", "Aborted"])
            if p.updated >= since
        ]
        produced = []
        for ce in site.ces:
            mine = [p for p in ended if p.ce == ce.name]
            bad = [p for p in mine if p.state in ("Failed", "Aborted")]
            if (
                len(mine) < self.settings.min_pilots
                or len(bad) / len(mine) < self.settings.pilot_failure_rate
            ):
                continue
            if not self._due_health((site.name, ce.name), now):
                continue
            example = f"e.g. pilot {bad[-1].pilot_id}: {bad[-1].reason or bad[-1].state}"
            message = (
                f"{len(bad)} of {len(mine)} pilots failed or aborted in the last "
                f"{self.settings.pilot_window:g} s ({example})"
            )
            produced.append(
                ProbeResult(
                    site.name,
                    TargetKind.SITE,
                    HEALTH_PREFIX + "pilots",
                    CheckStatus.WARNING,
                    message[:1000],
                    now,
                    ce.name,
                )
            )
        return produced

    def _stalled_jobs(self, site: str, now: float) -> list[ProbeResult]:
        stalled = self.client.list_jobs(status="Stalled", site=site, limit=100)
        if not stalled or not self._due_health((site, "stalled"), now):
            return []
        ids = ", ".join(str(row.job_id) for row in stalled[:10])
        message = f"{len(stalled)} stalled job(s) at {site}: {ids}"
        return [
            ProbeResult(
                site,
                TargetKind.SITE,
                HEALTH_PREFIX + "stalled-jobs",
                CheckStatus.WARNING,
                message,
                now,
            )
        ]

    # -- results, policy, alerts -----------------------------------------------------------------

    def remember(self, results: Iterable[ProbeResult]) -> None:
        """Keep each target's probe outcomes (health findings aside), the newest
        MAX_OUTCOMES."""
        for target, runs in probe_runs(results).items():
            outcomes = self.outcomes.setdefault(target, [])
            outcomes.extend(outcome_of(run) for run in runs)
            outcomes.sort(key=lambda outcome: outcome.time)
            del outcomes[:-MAX_OUTCOMES]

    def send_outbox(self) -> bool:
        """Report what waits; False if the service did not take it (kept for the next cycle)."""
        if not self.outbox:
            return True
        items = [
            ProbeResultItem(
                r.target, r.kind.value, r.check, r.status.value, r.message, r.time, r.ce, r.job_id
            )
            for r in self.outbox
        ]
        try:
            self.client.probe_report(items)
        except DiracLikeError as exc:
            log.error(
                "could not report %d result(s), kept for the next cycle: %s",
                len(items),
                exc.message,
            )
            del self.outbox[:-MAX_OUTBOX]
            return False
        self.outbox.clear()
        return True

    def decide(self, now: float) -> list[str]:
        changes = []
        for (kind, target), outcomes in sorted(self.outcomes.items()):
            current = self.statuses.get((kind.value, target))
            if current is not None and current.status == "Banned" and not current.automatic:
                continue  # an operator's ban: the policy leaves it alone
            if self.in_downtime(target, now):
                continue
            old = ResourceStatus(current.status) if current else ResourceStatus.ACTIVE
            decision = self.policy.decide(old, outcomes)
            if decision is not None and self.apply(kind, target, old, decision, now):
                changes.append(f"{target}: {old.value} -> {decision.status.value}")
        return changes

    def apply(
        self, kind: TargetKind, target: str, old: ResourceStatus, decision: Decision, now: float
    ) -> bool:
        dry_run = self.settings.policy.dry_run
        if not dry_run:
            try:
                row = self.client.set_status(
                    target, kind.value, decision.status.value, decision.reason
                )
            except DiracLikeError as exc:  # e.g. Forbidden: an operator banned it meanwhile
                log.warning(
                    "%s %s: status %s refused: %s",
                    kind.value,
                    target,
                    decision.status.value,
                    exc.message,
                )
                return False
            self.statuses[(kind.value, target)] = row
        log.warning(
            "%s%s %s: %s -> %s (%s)",
            "dry run: would set " if dry_run else "",
            kind.value,
            target,
            old.value,
            decision.status.value,
            decision.reason,
        )
        self.alert(
            {
                "event": "status_change",
                "kind": kind.value,
                "target": target,
                "old": old.value,
                "new": decision.status.value,
                "reason": decision.reason,
                "time": now,
                "dry_run": dry_run,
            }
        )
        return True

    def alert(self, event: dict[str, Any]) -> None:
        """Run the alert command with ``event`` as JSON on stdin (its failure is logged)."""
        command = self.settings.alert_command
        if not command:
            return
        try:
            done = subprocess.run(
                list(command),
                input=json.dumps(event),
                text=True,
                capture_output=True,
                timeout=self.settings.alert_timeout,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            log.error("alert command %s failed: %s", command[0], exc)
            return
        if done.returncode != 0:
            log.error(
                "alert command %s exited %d: %s",
                command[0],
                done.returncode,
                done.stderr.strip()[:200],
            )

    # -- running ---------------------------------------------------------------------------------

    def run(self) -> int:
        """Cycles every ``cycle_seconds`` until SIGTERM or SIGINT; the cycle under way is
        finished first. Returns 0."""
        with holding((lock_path(self.home, "monitoring"), f"a monitoring agent on {self.home}")):
            self.serve_metrics()
            try:
                return self._run_cycles()
            finally:
                if self.metrics_endpoint is not None:
                    self.metrics_endpoint.close()

    def serve_metrics(self) -> str:
        """Open /metrics on ``metrics_listen`` ('' there: not at all); returns its URL."""
        if not self.settings.metrics_listen or self.metrics_endpoint is not None:
            return self.metrics_endpoint.url if self.metrics_endpoint else ""
        self.metrics_endpoint = serve_metrics(
            self.settings.metrics_listen, self.metrics.registry, "monitoring.metrics_listen"
        )
        print(f"monitoring agent metrics on {self.metrics_endpoint.url}", flush=True)
        log.info("monitoring agent metrics on %s", self.metrics_endpoint.url)
        return self.metrics_endpoint.url

    def observe(self, report: CycleReport, seconds: float) -> None:
        """The cycle's figures into the metrics."""
        self.metrics.observe(
            report.unreachable,
            report.results,
            len(report.changes),
            len(self.in_flight),
            [(row.kind, row.target, row.status) for row in self.statuses.values()],
            seconds,
        )

    def _run_cycles(self) -> int:
        from apscheduler.executors.pool import ThreadPoolExecutor
        from apscheduler.schedulers.blocking import BlockingScheduler

        scheduler = BlockingScheduler(executors={"default": ThreadPoolExecutor(1)}, timezone=UTC)
        scheduler.add_job(
            self._tick,
            "interval",
            seconds=self.settings.cycle_seconds,
            max_instances=1,
            coalesce=True,
            next_run_time=datetime.now(UTC),
        )

        def on_signal(signum: int, frame: FrameType | None) -> None:
            log.info("%s received, stopping after the current cycle", signal.Signals(signum).name)
            with contextlib.suppress(Exception):
                scheduler.shutdown(wait=False)

        previous = {
            signum: signal.signal(signum, on_signal) for signum in (signal.SIGTERM, signal.SIGINT)
        }
        log.info(
            "monitoring agent started, a cycle every %g s%s",
            self.settings.cycle_seconds,
            " (dry run: statuses are not changed)" if self.settings.policy.dry_run else "",
        )
        try:
            scheduler.start()
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            with self._lock:  # let a cycle under way finish
                pass
        log.info("monitoring agent stopped")
        return EXIT_OK

    def _tick(self) -> None:
        try:
            started = time.monotonic()
            report = self.cycle()
            self.observe(report, time.monotonic() - started)
        except Exception:  # a daemon survives its own bugs; the next cycle tries again
            log.exception("monitoring cycle failed")
