"""The central service's Prometheus metrics.

Two kinds, kept apart so that a scrape never touches the live state from the HTTP thread:

- **Events** the service loop observes as they happen: request latency by operation (whose count
  is the requests by operation) and refusals by operation, in :class:`RequestTimes` (a bucket
  index found with ``bisect`` and an integer added, a third of a microsecond: prometheus-client's
  own Histogram.observe takes two locks and costs ~3 us, 10 % of a job's whole cost on the
  service, three requests a job); batch size and commit time (once a batch) in prometheus-client's
  Histogram and Counter.
- **State** (jobs by status, site and group; waiting jobs by task queue; pilots by site and state;
  fair-share usage vs target; site bans; submissions, matches and transitions): the loop takes a
  :class:`StateSnapshot` at most every ``metrics.refresh`` seconds (:func:`take_snapshot`, pure,
  O(task queues + pilots + groups), the job counts being kept up to date by the job book), and
  the scrape reads the latest snapshot (:class:`StateCollector`). A scrape costs the same with
  10 000 pilots or 10 million jobs.

Labels are statuses, sites, CEs, groups, states and operation names, never user names, pilot ids
or keys. An operation name a client made up is counted as ``unknown``, so a hostile client cannot
grow the label set.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client import Counter as CounterMetric
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from dirac_like.accounting import link_label
from dirac_like.config import MetricsConfig
from dirac_like.protocol import ARGUMENTS

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from .state import CentralState

PREFIX = "dirac_like"
MAX_TASK_QUEUES = 200  # the largest task queues get a series each; the rest are summed
CONNECTED_SECONDS = 300.0  # a pilot heard from this recently is connected
LATENCY_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
)
COMMIT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 512, 1000)


@dataclass(frozen=True)
class StateSnapshot:
    """What the state looked like at ``time`` (a scrape reads it; nothing here is live)."""

    time: float = 0.0
    jobs: dict[tuple[str, str, str], int] = field(default_factory=dict)  # (status, site, group)
    waiting: list[tuple[str, str, int]] = field(default_factory=list)  # (task queue, group, n)
    pilots: dict[tuple[str, str], int] = field(default_factory=dict)  # (site, state)
    connected: dict[str, int] = field(default_factory=dict)  # site -> pilots heard recently
    shares: list[tuple[str, float, float, float, int]] = field(default_factory=list)
    banned: dict[str, bool] = field(default_factory=dict)
    submitted: int = 0
    matched: int = 0
    entered: dict[str, int] = field(default_factory=dict)  # status -> transitions into it
    transfers_open: dict[str, int] = field(default_factory=dict)  # status -> requests
    transfers_leased: dict[str, int] = field(default_factory=dict)  # link -> leased requests
    transfers_finished: dict[tuple[str, str], int] = field(default_factory=dict)  # status, link
    transfer_bytes: dict[str, int] = field(default_factory=dict)  # link -> bytes verified


def take_snapshot(state: CentralState, now: float) -> StateSnapshot:
    """The numbers the state collector shows, copied out of ``state`` (call from the loop)."""
    book = state.book
    queues = sorted(
        (
            (len(queue), queue.task_queue_id, queue.group)
            for queue in book.matcher.unique_task_queues()
            if len(queue)
        ),
        reverse=True,
    )
    waiting = [
        (str(task_queue), group, count) for count, task_queue, group in queues[:MAX_TASK_QUEUES]
    ]
    if len(queues) > MAX_TASK_QUEUES:
        waiting.append(("other", "", sum(count for count, _, _ in queues[MAX_TASK_QUEUES:])))
    pilots: Counter[tuple[str, str]] = Counter()
    connected: Counter[str] = Counter()
    for pilot in state.pilots.pilots.values():
        pilots[(pilot.site, pilot.state)] += 1
        if pilot.last_contact >= now - CONNECTED_SECONDS:
            connected[pilot.site] += 1
    shares = [
        (
            str(row["group"]),
            float(row["share_fraction"]),
            float(row["load_fraction"]),
            float(row["usage_core_seconds"]),
            int(row["running_cores"]),
        )
        for row in state.shares.report(now)
    ]
    banned = {
        name: bool(state.sites.records.get(name) and state.sites.records[name].banned)
        for name in state.sites.seen
    }
    jobs = {
        (str(status), site, group): count
        for (status, site, group), count in book.tally.items()
        if count
    }
    transfers = state.transfers
    leased: Counter[str] = Counter()
    open_states: Counter[str] = Counter()
    for record in transfers.leased.values():
        leased[link_label(record.source, record.destination)] += 1
        open_states[record.status] += 1
    open_states["Waiting"] = len(transfers.open) - len(transfers.leased)
    return StateSnapshot(
        transfers_open=dict(open_states),
        transfers_leased=dict(leased),
        transfers_finished=dict(transfers.finished),
        transfer_bytes=dict(transfers.bytes_done),
        time=now,
        jobs=jobs,
        waiting=waiting,
        pilots=dict(pilots),
        connected=dict(connected),
        shares=shares,
        banned=banned,
        submitted=book.submitted_count,
        matched=book.matched_count,
        entered={str(status): count for status, count in book.entered.items()},
    )


class StateCollector(Collector):
    """Turns the latest :class:`StateSnapshot` into metric families (runs in the HTTP thread)."""

    def __init__(self) -> None:
        self.snapshot = StateSnapshot()  # replaced whole by the loop: reading it is safe

    def collect(self) -> Iterator[Metric]:
        snap = self.snapshot
        yield _gauge(
            "jobs",
            "Jobs by status, site and group",
            ["status", "site", "group"],
            ((list(key), count) for key, count in snap.jobs.items()),
        )
        yield _gauge(
            "task_queue_waiting_jobs",
            f"Waiting jobs per task queue (the largest "
            f"{MAX_TASK_QUEUES}; the rest as task_queue=other)",
            ["task_queue", "group"],
            (([queue, group], count) for queue, group, count in snap.waiting),
        )
        yield _gauge(
            "pilots",
            "Pilot records by site and state",
            ["site", "state"],
            ((list(key), count) for key, count in snap.pilots.items()),
        )
        yield _gauge(
            "connected_pilots",
            f"Pilots heard from in the last {CONNECTED_SECONDS:g} s",
            ["site"],
            (([site], count) for site, count in snap.connected.items()),
        )
        yield from _share_families(snap)
        yield _gauge(
            "site_banned",
            "1 if the site is banned",
            ["site"],
            (([site], int(banned)) for site, banned in snap.banned.items()),
        )
        yield _counter(
            "jobs_submitted", "Jobs submitted since the service started", [], [([], snap.submitted)]
        )
        yield _counter(
            "matches", "Jobs matched to pilots since the service started", [], [([], snap.matched)]
        )
        yield _counter(
            "job_transitions",
            "Job status changes since the service started, by the status entered",
            ["status"],
            (([status], count) for status, count in snap.entered.items()),
        )
        yield from _transfer_families(snap)
        yield _gauge(
            "snapshot_timestamp_seconds",
            "When these state numbers were taken",
            [],
            [([], snap.time)],
        )


def _transfer_families(snap: StateSnapshot) -> Iterator[Metric]:
    yield _gauge(
        "transfers",
        "Transfer requests not finished, by status (Waiting, Assigned, Active)",
        ["status"],
        (([status], count) for status, count in snap.transfers_open.items()),
    )
    yield _gauge(
        "transfers_leased",
        "Transfer requests leased to agents, by link (source SE -> destination SE)",
        ["link"],
        (([link], count) for link, count in snap.transfers_leased.items()),
    )
    yield _counter(
        "transfers_finished",
        "Transfer requests finished since the service started, by status and link",
        ["status", "link"],
        ((list(key), count) for key, count in snap.transfers_finished.items()),
    )
    yield _counter(
        "transfer_bytes",
        "Bytes of finished transfers, verified at the destination, by link",
        ["link"],
        (([link], count) for link, count in snap.transfer_bytes.items()),
    )


def _share_families(snap: StateSnapshot) -> Iterator[Metric]:
    target = GaugeMetricFamily(
        f"{PREFIX}_share_target_ratio",
        "The group's configured share of the grid (0-1)",
        labels=["group"],
    )
    realised = GaugeMetricFamily(
        f"{PREFIX}_share_usage_ratio",
        "The group's part of the decayed usage and running cores (0-1)",
        labels=["group"],
    )
    usage = GaugeMetricFamily(
        f"{PREFIX}_share_usage_core_seconds", "The group's decayed usage", labels=["group"]
    )
    running = GaugeMetricFamily(
        f"{PREFIX}_running_cores", "Cores the group's jobs hold", labels=["group"]
    )
    for group, share, load, used, cores in snap.shares:
        target.add_metric([group], share)
        realised.add_metric([group], load)
        usage.add_metric([group], used)
        running.add_metric([group], cores)
    yield from (target, realised, usage, running)


Samples = Iterator[tuple[list[str], float]] | list[tuple[list[str], float]]
_Family = TypeVar("_Family", GaugeMetricFamily, CounterMetricFamily)


def _gauge(name: str, text: str, labels: list[str], samples: Samples) -> GaugeMetricFamily:
    return _filled(GaugeMetricFamily(f"{PREFIX}_{name}", text, labels=labels), samples)


def _counter(name: str, text: str, labels: list[str], samples: Samples) -> CounterMetricFamily:
    return _filled(CounterMetricFamily(f"{PREFIX}_{name}", text, labels=labels), samples)


def _filled(family: _Family, samples: Samples) -> _Family:
    for values, value in samples:
        family.add_metric(values, value)
    return family


class RequestTimes(Collector):
    """Request latency histograms by operation, and refusals: counted by the loop, exposed by
    the scrape (which copies each list of counts whole before it reads it)."""

    def __init__(self, operations: list[str], bounds: tuple[float, ...] = LATENCY_BUCKETS) -> None:
        self.bounds = bounds
        self.counts = {op: [0] * (len(bounds) + 1) for op in operations}  # the last: +Inf
        self.sums = dict.fromkeys(operations, 0.0)
        self.refused = dict.fromkeys(operations, 0)

    def observe(self, op: str, seconds: float, ok: bool) -> None:
        if op not in self.sums:
            op = "unknown"
        self.counts[op][bisect_left(self.bounds, seconds)] += 1
        self.sums[op] += seconds
        if not ok:
            self.refused[op] += 1

    def collect(self) -> Iterator[Metric]:
        latency = HistogramMetricFamily(
            f"{PREFIX}_request_seconds", "Time to handle one request, by operation", labels=["op"]
        )
        refused = CounterMetricFamily(
            f"{PREFIX}_refused_requests",
            "Requests refused (an error reply), by operation",
            labels=["op"],
        )
        for op, counts in self.counts.items():
            cumulative, total = [], 0
            for bound, count in zip((*map(str, self.bounds), "+Inf"), list(counts), strict=True):
                total += count
                cumulative.append((bound, total))
            latency.add_metric([op], cumulative, sum_value=self.sums[op])
            refused.add_metric([op], self.refused[op])
        yield latency
        yield refused


class ServiceMetrics:
    """The central service's registry: events observed by the loop, state by snapshot."""

    def __init__(self, config: MetricsConfig) -> None:
        self.config = config
        self.registry = CollectorRegistry()
        self.requests = RequestTimes([*ARGUMENTS, "unknown"])
        self.registry.register(self.requests)
        self.batch_size = Histogram(
            f"{PREFIX}_batch_requests",
            "Requests per batch (one commit)",
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.commit_seconds = Histogram(
            f"{PREFIX}_commit_seconds",
            "Time to write one batch to the store",
            buckets=COMMIT_BUCKETS,
            registry=self.registry,
        )
        self.commit_failures = CounterMetric(
            f"{PREFIX}_commit_failures",
            "Batches the store refused (undone)",
            registry=self.registry,
        )
        self.state = StateCollector()
        self.registry.register(self.state)
        self._next_refresh = 0.0

    def observe_request(self, op: str, seconds: float, ok: bool) -> None:
        self.requests.observe(op, seconds, ok)

    def observe_commit(self, seconds: float, requests: int) -> None:
        self.commit_seconds.observe(seconds)
        self.batch_size.observe(requests)

    def refresh(self, state: CentralState, now: float, force: bool = False) -> None:
        """Take a new snapshot if the last one is ``metrics.refresh`` seconds old."""
        if force or now >= self._next_refresh:
            self._next_refresh = now + self.config.refresh
            self.state.snapshot = take_snapshot(state, now)
