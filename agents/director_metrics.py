"""A site director's Prometheus metrics, taken from each cycle's :class:`CycleReport`.

Labels: site, CE and outcome, never pilot ids. Served by :func:`dirac_like.metrics.serve_metrics`
on the ``[director] metrics_listen`` address (port 0: a free one, logged at start).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

if TYPE_CHECKING:
    from .director import CycleReport

PREFIX = "dirac_like_director"
CYCLE_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class DirectorMetrics:
    def __init__(self, site: str) -> None:
        self.site = site
        self.registry = CollectorRegistry()
        registry = self.registry
        self.cycles = Counter(
            f"{PREFIX}_cycles",
            "Cycles, by outcome (ok, unreachable: the central service did not answer)",
            ["site", "outcome"],
            registry=registry,
        )
        self.cycle_seconds = Histogram(
            f"{PREFIX}_cycle_seconds",
            "Time one cycle took",
            ["site"],
            buckets=CYCLE_BUCKETS,
            registry=registry,
        )
        self.errors = Counter(
            f"{PREFIX}_errors",
            "Errors met in cycles (fabric, service)",
            ["site"],
            registry=registry,
        )
        self.submitted = Counter(
            f"{PREFIX}_pilots_submitted", "Pilots submitted", ["site", "ce"], registry=registry
        )
        self.pilots = Gauge(
            f"{PREFIX}_pilots",
            "The director's live pilots by CE and state (queued, running)",
            ["site", "ce", "state"],
            registry=registry,
        )
        self.eligible = Gauge(
            f"{PREFIX}_eligible_jobs",
            "Waiting jobs a pilot of the CE could run, at the last cycle",
            ["site", "ce"],
            registry=registry,
        )
        self.backed_off = Gauge(
            f"{PREFIX}_ce_backed_off",
            "1 while the CE is backed off after failures",
            ["site", "ce"],
            registry=registry,
        )

    def observe(self, report: CycleReport, seconds: float) -> None:
        site = self.site
        self.cycles.labels(site, "unreachable" if report.unreachable else "ok").inc()
        self.cycle_seconds.labels(site).observe(seconds)
        if report.errors:
            self.errors.labels(site).inc(len(report.errors))
        for ce in report.ces:
            self.submitted.labels(site, ce.ce).inc(ce.submitted)
            self.pilots.labels(site, ce.ce, "queued").set(ce.queued)
            self.pilots.labels(site, ce.ce, "running").set(ce.running)
            if ce.eligible >= 0:
                self.eligible.labels(site, ce.ce).set(ce.eligible)
            self.backed_off.labels(site, ce.ce).set(int(ce.backed_off(report.now)))
