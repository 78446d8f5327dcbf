"""The Prometheus metrics of the transfer agent and the monitoring agent.

Each agent keeps them in a registry of its own and serves it with
:func:`dirac_like.metrics.serve_metrics` (``--metrics-listen`` of ``agent transfer``,
``metrics_listen`` of the monitoring agent's ``[monitoring]`` table; port 0: a free one, printed
and logged at start; empty: none). Labels are SE links, outcomes, statuses, kinds and site or SE
names, never user names, LFNs or keys.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

TRANSFER_PREFIX = "dirac_like_transfer_agent"
MONITOR_PREFIX = "dirac_like_monitoring"
TRANSFER_BUCKETS = (0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)
CYCLE_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
STATUSES = ("Active", "Degraded", "Probing", "Banned")


class TransferAgentMetrics:
    """Transfers carried out by one agent: by outcome and link, bytes, time per copy."""

    def __init__(self, agent: str) -> None:
        self.agent = agent
        self.registry = CollectorRegistry()
        self.transfers = Counter(
            f"{TRANSFER_PREFIX}_transfers",
            "Transfers carried out, by outcome (Done, Failed, Lost: leased to another agent) "
            "and link (source SE -> destination SE)",
            ["agent", "outcome", "link"],
            registry=self.registry,
        )
        self.bytes = Counter(
            f"{TRANSFER_PREFIX}_bytes",
            "Bytes copied and verified at the destination, by link",
            ["agent", "link"],
            registry=self.registry,
        )
        self.seconds = Histogram(
            f"{TRANSFER_PREFIX}_transfer_seconds",
            "Time from lease to report of one transfer",
            ["agent"],
            buckets=TRANSFER_BUCKETS,
            registry=self.registry,
        )
        self.unreachable = Counter(
            f"{TRANSFER_PREFIX}_service_unreachable",
            "Requests for work the central service did not answer",
            ["agent"],
            registry=self.registry,
        )

    def observe(self, outcome: str, link: str, size: int, seconds: float) -> None:
        self.transfers.labels(self.agent, outcome, link).inc()
        if outcome == "Done":
            self.bytes.labels(self.agent, link).inc(size)
        self.seconds.labels(self.agent).observe(seconds)


class MonitorMetrics:
    """The monitoring agent's cycles, results and the statuses it sees."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.cycles = Counter(
            f"{MONITOR_PREFIX}_cycles",
            "Cycles, by outcome (ok; unreachable: the central service did not answer)",
            ["outcome"],
            registry=self.registry,
        )
        self.cycle_seconds = Histogram(
            f"{MONITOR_PREFIX}_cycle_seconds",
            "Time one cycle took",
            buckets=CYCLE_BUCKETS,
            registry=self.registry,
        )
        self.results = Counter(
            f"{MONITOR_PREFIX}_probe_results",
            "Probe results and health findings produced",
            registry=self.registry,
        )
        self.changes = Counter(
            f"{MONITOR_PREFIX}_status_changes",
            "Status changes the policy decided (sent, or logged in a dry run)",
            registry=self.registry,
        )
        self.in_flight = Gauge(
            f"{MONITOR_PREFIX}_probes_in_flight",
            "Probe jobs submitted and not yet judged",
            registry=self.registry,
        )
        self.status = Gauge(
            f"{MONITOR_PREFIX}_target_status",
            "1 for the status each site and SE has now (as the agent last read it)",
            ["kind", "target", "status"],
            registry=self.registry,
        )

    def observe(
        self,
        unreachable: bool,
        results: int,
        changes: int,
        in_flight: int,
        statuses: Iterable[tuple[str, str, str]],
        seconds: float,
    ) -> None:
        self.cycles.labels("unreachable" if unreachable else "ok").inc()
        self.cycle_seconds.observe(seconds)
        self.results.inc(results)
        self.changes.inc(changes)
        self.in_flight.set(in_flight)
        for kind, target, now in statuses:
            for status in STATUSES:
                self.status.labels(kind, target, status).set(int(status == now))
