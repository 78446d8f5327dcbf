"""Accounting: the record of every finished job and pilot, the buckets they add up into, and the
maths of a report. Pure: no I/O, ``now`` passed in (the SQL is services/accounting_store.py and
the store's own commit).

- A :class:`JobAccountingRecord` is made by the job book when a job first reaches a final status
  (Done, Failed, Killed, Deleted) of an attempt, and written in the same transaction as that
  status: it is never lost and never doubled (``(job_id, attempt)`` is its key; a rescheduled job
  runs a new attempt and gets a new record).
- A :class:`PilotAccountingRecord` is made when a pilot record reaches a final state.
- Every job record also adds into hourly buckets in that same transaction, so a report never
  scans raw records: it sums buckets. A report shows one metric by ONE dimension (group, user,
  site, status or exit code), so each record adds into one bucket per dimension
  (:class:`BucketKey`: dimension, hour, label), not into one bucket of all five: the number of
  buckets grows with the labels of each dimension (a few hundred an hour), not with their
  product, and a year's report reads tens of thousands of rows. A job's whole usage counts in the
  hour it ended (as DIRAC's accounting does by default).
- Retention (:func:`retention_cutoffs`): raw records are deleted after ``raw_retention``; hourly
  buckets older than ``hourly_retention`` are folded into daily ones; daily buckets stay.
- A report (:func:`build_report`) takes summed rows ``(start, label, totals)`` and turns them into
  one series per label on a regular time axis, for a metric.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, NamedTuple

from dirac_like.errors import InvalidArgument
from dirac_like.protocol import JobUsage

HOUR = 3600
DAY = 86400
NO_EXIT_CODE = "none"  # the exit-code label of a job whose payload never ran


class JobAccountingRecord(NamedTuple):
    """One attempt of one job, from its match to its final status (a tuple: one is made per
    finished job on the service's hot path, and it is a table row as it is)."""

    job_id: int
    attempt: int
    owner: str
    group: str
    site: str  # where it ran ('ANY'/'Multiple'/a requested site if it never ran)
    ce: str
    pilot_id: str
    status: str  # the final status: Done, Failed, Killed or Deleted
    minor_status: str
    exit_code: int | None  # None: the payload never ran (or its pilot was lost)
    cores: int
    cpu_seconds: float
    wall_seconds: float
    peak_rss_mb: float
    input_bytes: int
    output_bytes: int
    submitted: float
    started: float  # when this attempt was matched; 0: it never was
    ended: float

    @property
    def core_seconds(self) -> float:
        return self.cores * self.wall_seconds


class TransferAccountingRecord(NamedTuple):
    """One transfer request that reached a final state (Done or Failed), made by the transfer
    book into the same change set as that state (never lost, never doubled: ``transfer_id`` is
    its key)."""

    transfer_id: int
    lfn: str
    owner: str
    source: str  # the SE of the last attempt ('' : none was leased)
    destination: str
    status: str  # Done or Failed
    reason: str
    bytes: int  # verified at the destination (0 for a failed transfer)
    attempts: int
    created: float
    started: float  # when the last attempt was leased (0: not known, e.g. across a restart)
    ended: float

    @property
    def link(self) -> str:
        return link_label(self.source, self.destination)

    @property
    def seconds(self) -> float:
        return max(0.0, self.ended - self.started) if self.started else 0.0


def link_label(source: str, destination: str) -> str:
    return f"{source or 'none'} -> {destination}"


class PilotAccountingRecord(NamedTuple):
    pilot_id: str
    site: str
    ce: str
    fabric: str
    state: str  # the final pilot state: Done, Failed or Aborted
    reason: str
    submitted: float
    started: float  # when it first ran (0: never seen running)
    ended: float
    jobs: int  # jobs matched to it

    @property
    def wall_seconds(self) -> float:
        return self.ended - self.started if self.started else 0.0


def job_record(
    job: Any,
    status: str,
    minor: str,
    cores: int,
    usage: JobUsage | None,
    held: bool,
    now: float,
    ce: str = "",
) -> JobAccountingRecord:
    """The record of ``job`` (a :class:`~dirac_like.model.JobRecord`) ending in ``status`` now.
    ``held``: a pilot held the attempt (it was matched); without the pilot's own measurement the
    wall time is then the time since the match."""
    usage = usage or NO_USAGE
    started = job.matched_at if held else 0.0
    wall = usage.wall_seconds or (max(0.0, now - started) if held else 0.0)
    return JobAccountingRecord(  # positional: this runs once per finished job
        job.job_id,
        job.attempt,
        job.owner,
        job.group,
        job.site,
        ce,
        job.pilot_id if held else "",
        status,
        minor,
        usage.exit_code,
        cores if held else 0,
        usage.cpu_seconds,
        wall,
        usage.peak_rss_mb,
        usage.input_bytes,
        usage.output_bytes,
        job.submitted,
        started,
        now,
    )


NO_USAGE = JobUsage()
MAX_USAGE_NUMBER = 1e15  # seconds, MB or bytes: far beyond anything real


def check_usage(usage: JobUsage) -> None:
    """InvalidArgument unless every number is finite, not negative and not absurdly large."""
    values = (
        usage.cpu_seconds,
        usage.wall_seconds,
        usage.peak_rss_mb,
        usage.input_bytes,
        usage.output_bytes,
    )
    top = MAX_USAGE_NUMBER  # NaN fails every comparison, inf is too large
    if (
        0 <= values[0] <= top
        and 0 <= values[1] <= top
        and 0 <= values[2] <= top
        and 0 <= values[3] <= top
        and 0 <= values[4] <= top
    ):
        if usage.exit_code is None or -(2**31) <= usage.exit_code < 2**31:
            return
        raise InvalidArgument(f"usage.exit_code {usage.exit_code} is out of range")
    for name, value in zip(USAGE_NUMBERS, values, strict=True):
        if not 0 <= value <= MAX_USAGE_NUMBER:
            raise InvalidArgument(f"usage.{name} must be a finite number >= 0, not {value!r}")


USAGE_NUMBERS = ("cpu_seconds", "wall_seconds", "peak_rss_mb", "input_bytes", "output_bytes")


def usage_from_heartbeat(metrics: Mapping[str, Any]) -> JobUsage | None:
    """What a heartbeat's free-form ``metrics`` say the payload used so far (None: nothing)."""

    def number(key: str) -> float:
        value = metrics.get(key)
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            return 0.0
        return float(value) if math.isfinite(value) and 0 <= value <= MAX_USAGE_NUMBER else 0.0

    cpu, wall, rss = number("cpu_seconds"), number("wall_seconds"), number("rss_mb")
    if not (cpu or wall or rss):
        return None
    return JobUsage(cpu_seconds=cpu, wall_seconds=wall, peak_rss_mb=rss)


def later_usage(old: JobUsage | None, new: JobUsage) -> JobUsage:
    """The newer heartbeat's usage, with the peak memory of both."""
    if old is None or old.peak_rss_mb <= new.peak_rss_mb:
        return new
    return JobUsage(new.cpu_seconds, new.wall_seconds, old.peak_rss_mb)


# -- buckets -------------------------------------------------------------------------------------


class BucketKey(NamedTuple):
    """Which bucket: the dimension (a :class:`Dimension` value), its start and length, and the
    label (the group, user, site, status or exit code)."""

    dimension: str
    start: float
    period: int
    label: str


@dataclass(slots=True)
class Totals:
    """What a bucket (or a sum of buckets) holds."""

    jobs: int = 0
    failed: int = 0
    cpu_seconds: float = 0.0
    wall_seconds: float = 0.0
    core_seconds: float = 0.0

    def add(self, other: Totals) -> None:
        self.jobs += other.jobs
        self.failed += other.failed
        self.cpu_seconds += other.cpu_seconds
        self.wall_seconds += other.wall_seconds
        self.core_seconds += other.core_seconds

    def as_row(self) -> tuple[int, int, float, float, float]:
        return (self.jobs, self.failed, self.cpu_seconds, self.wall_seconds, self.core_seconds)


def exit_code_label(exit_code: int | None) -> str:
    return NO_EXIT_CODE if exit_code is None else str(exit_code)


def bucket_start(time: float, period: int) -> float:
    return float(math.floor(time / period) * period)


def bucket_records(
    records: Iterable[JobAccountingRecord], period: int = HOUR
) -> dict[BucketKey, Totals]:
    """The records summed per dimension, label and bucket of ``period`` seconds (by the time each
    ended)."""
    combined: dict[tuple[Any, ...], Totals] = {}
    for record in records:  # first by all labels at once: a batch has few distinct ones
        key = (
            bucket_start(record.ended, period),
            record.group,
            record.owner,
            record.site,
            record.status,
            exit_code_label(record.exit_code),
        )
        totals = combined.get(key)
        if totals is None:
            totals = combined[key] = Totals()
        totals.jobs += 1
        totals.failed += record.status == "Failed"
        totals.cpu_seconds += record.cpu_seconds
        totals.wall_seconds += record.wall_seconds
        totals.core_seconds += record.cores * record.wall_seconds
    buckets: dict[BucketKey, Totals] = {}
    for (start, *labels), totals in combined.items():
        for dimension, label in zip(DIMENSION_NAMES, map(str, labels), strict=True):
            bucket_key = BucketKey(dimension, start, period, label)
            bucket = buckets.get(bucket_key)
            if bucket is None:
                buckets[bucket_key] = Totals(*totals.as_row())
            else:
                bucket.add(totals)
    return buckets


def bucket_transfers(
    records: Iterable[TransferAccountingRecord], period: int = HOUR
) -> dict[BucketKey, list[float]]:
    """Transfer records summed per dimension (:data:`TRANSFER_DIMENSIONS`), label and bucket:
    ``[transfers, failed, bytes, seconds]`` (the columns of ``transfer_buckets``)."""
    buckets: dict[BucketKey, list[float]] = {}
    for record in records:
        start = bucket_start(record.ended, period)
        numbers = (1, int(record.status == "Failed"), record.bytes, record.seconds)
        for dimension, label in zip(
            TRANSFER_DIMENSIONS, (record.link, record.status, record.owner), strict=True
        ):
            key = BucketKey(dimension, start, period, label)
            sums = buckets.setdefault(key, [0, 0, 0, 0.0])
            for index, value in enumerate(numbers):
                sums[index] += value
    return buckets


# -- retention -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RetentionCutoffs:
    raw_before: float  # raw job and pilot records that ended before this are deleted
    hourly_before: float  # hourly buckets that start before this are folded into daily ones


def retention_cutoffs(
    now: float, raw_retention: float, hourly_retention: float
) -> RetentionCutoffs:
    """Cut-offs for ``now``; the hourly one on a day boundary, so a day is never split between
    hourly and daily buckets."""
    return RetentionCutoffs(
        raw_before=now - raw_retention, hourly_before=bucket_start(now - hourly_retention, DAY)
    )


# -- reports -------------------------------------------------------------------------------------


class Metric(StrEnum):
    JOBS = "jobs"
    CORE_HOURS = "core-hours"
    CPU_EFFICIENCY = "cpu-efficiency"
    FAILED = "failed"
    WALL_HOURS = "wall-hours"
    TRANSFERS = "transfers"  # finished transfer requests
    TRANSFER_BYTES = "transfer-bytes"  # bytes verified at their destination


class Dimension(StrEnum):
    GROUP = "group"
    USER = "user"
    SITE = "site"
    STATUS = "status"
    EXIT_CODE = "exit-code"
    LINK = "link"  # transfers: source SE -> destination SE


# the dimensions of job buckets, in the order bucket_records takes a record's labels
DIMENSION_NAMES = ("group", "user", "site", "status", "exit-code")
# the dimensions of transfer buckets, in the order bucket_transfers takes them
TRANSFER_DIMENSIONS = ("link", "status", "user")
TRANSFER_METRICS = frozenset({Metric.TRANSFERS, Metric.TRANSFER_BYTES})

UNITS = {
    Metric.JOBS: "jobs",
    Metric.CORE_HOURS: "core-hours",
    Metric.CPU_EFFICIENCY: "%",
    Metric.FAILED: "jobs",
    Metric.WALL_HOURS: "hours",
    Metric.TRANSFERS: "transfers",
    Metric.TRANSFER_BYTES: "bytes",
}


def metric_value(metric: Metric, totals: Totals) -> float:
    """The value of ``metric`` over summed ``totals`` (of transfers: transfers, failed, bytes,
    seconds in the first four places)."""
    if metric is Metric.TRANSFERS:
        return float(totals.jobs)
    if metric is Metric.TRANSFER_BYTES:
        return float(totals.cpu_seconds)
    if metric is Metric.JOBS:
        return float(totals.jobs)
    if metric is Metric.FAILED:
        return float(totals.failed)
    if metric is Metric.CORE_HOURS:
        return totals.core_seconds / HOUR
    if metric is Metric.WALL_HOURS:
        return totals.wall_seconds / HOUR
    # CPU efficiency: CPU time over the core time granted, in percent
    return 100.0 * totals.cpu_seconds / totals.core_seconds if totals.core_seconds else 0.0


@dataclass(frozen=True)
class ReportQuery:
    metric: Metric
    by: Dimension
    start: float  # aligned down to ``step``
    end: float  # exclusive, aligned up to ``step``
    step: int  # seconds, a whole number of hours

    @classmethod
    def make(cls, metric: str, by: str, since: float, step: float, now: float) -> ReportQuery:
        """A query of the last ``since`` seconds up to ``now``, in steps of ``step`` seconds;
        InvalidArgument naming what is wrong."""
        try:
            checked_metric, checked_by = Metric(metric), Dimension(by)
        except ValueError:
            raise InvalidArgument(
                f"unknown metric {metric!r} or dimension {by!r} (metrics: "
                f"{', '.join(Metric)}; by: {', '.join(Dimension)})"
            ) from None
        dimensions = TRANSFER_DIMENSIONS if checked_metric in TRANSFER_METRICS else DIMENSION_NAMES
        if checked_by.value not in dimensions:
            raise InvalidArgument(
                f"{metric} cannot be reported by {by}: jobs by {', '.join(DIMENSION_NAMES)}; "
                f"transfers by {', '.join(TRANSFER_DIMENSIONS)}"
            )
        if step < HOUR or step % HOUR:
            raise InvalidArgument(f"step must be a whole number of hours, not {step:g} s")
        if since <= 0:
            raise InvalidArgument("since must be positive")
        if since / step > MAX_POINTS:
            raise InvalidArgument(
                f"{since / step:.0f} time steps: at most {MAX_POINTS} (use a larger --step)"
            )
        step = int(step)
        return cls(
            checked_metric,
            checked_by,
            bucket_start(now - since, step),
            bucket_start(now, step) + step,
            step,
        )


MAX_POINTS = 10_000


@dataclass
class Report:
    """One series per label (a group, a site...) on the time axis ``times`` (bucket starts)."""

    query: ReportQuery
    times: list[float]
    series: dict[str, list[float]] = field(default_factory=dict)
    totals: dict[str, float] = field(default_factory=dict)  # the metric over the whole range

    @property
    def unit(self) -> str:
        return UNITS[self.query.metric]

    def to_json(self) -> dict[str, Any]:
        query = self.query
        return {
            "metric": query.metric.value,
            "by": query.by.value,
            "unit": self.unit,
            "start": query.start,
            "end": query.end,
            "step": query.step,
            "times": self.times,
            "series": self.series,
            "totals": self.totals,
        }

    def to_csv(self) -> str:
        """One row per time step, one column per label."""
        out = io.StringIO()
        writer = csv.writer(out)
        labels = list(self.series)
        writer.writerow(["time", *labels])
        for index, time in enumerate(self.times):
            writer.writerow([_iso(time), *(_round(self.series[label][index]) for label in labels)])
        return out.getvalue()

    def table(self) -> list[tuple[str, float]]:
        """(label, total) pairs, largest first."""
        return sorted(self.totals.items(), key=lambda item: (-item[1], item[0]))


def build_report(query: ReportQuery, rows: Iterable[tuple[float, str, Totals]]) -> Report:
    """The report from summed rows ``(bucket start, label, totals)`` (see :func:`report_of`)."""
    return report_of(query, ((start, label, totals.as_row()) for start, label, totals in rows))


Sums = tuple[float, float, float, float, float]  # a Totals as a row: jobs, failed, cpu, wall, core

# each metric of a cell's sums (the same arithmetic as metric_value, without making a Totals
# per cell: a year by user is 73,000 cells)
CELL_VALUES: dict[Metric, Any] = {
    Metric.JOBS: lambda jobs, failed, cpu, wall, core: float(jobs),
    Metric.FAILED: lambda jobs, failed, cpu, wall, core: float(failed),
    Metric.CORE_HOURS: lambda jobs, failed, cpu, wall, core: core / HOUR,
    Metric.WALL_HOURS: lambda jobs, failed, cpu, wall, core: wall / HOUR,
    Metric.CPU_EFFICIENCY: lambda jobs, failed, cpu, wall, core: (
        100.0 * cpu / core if core else 0.0
    ),
    Metric.TRANSFERS: lambda jobs, failed, cpu, wall, core: float(jobs),
    Metric.TRANSFER_BYTES: lambda jobs, failed, cpu, wall, core: float(cpu),
}


def report_of(query: ReportQuery, rows: Iterable[tuple[float, str, Sums]]) -> Report:
    """The report from summed rows ``(bucket start, label, sums)``: each row lands in the step
    holding its start (a daily bucket in a finer step lands in the step of its first hour).
    Plain lists and tuples inside: a year by user is some 10**5 rows."""
    start, step = query.start, query.step
    count = int((query.end - start) // step)
    times = [start + index * step for index in range(count)]
    cells: dict[str, dict[int, Any]] = {}
    for begin, label, sums in rows:
        index = int((begin - start) // step)
        if not 0 <= index < count:
            continue
        by_step = cells.get(label)
        if by_step is None:
            by_step = cells[label] = {}
        cell = by_step.get(index)
        if cell is None:
            by_step[index] = sums  # most cells get one row: no list made
        else:
            by_step[index] = tuple(map(sum, zip(cell, sums, strict=True)))
    value = CELL_VALUES[query.metric]
    overall = {
        label: value(*map(sum, zip(*by_step.values(), strict=True)))
        for label, by_step in cells.items()
    }
    report = Report(query, times)
    for label in sorted(cells, key=lambda label: (-overall[label], label)):
        values = [0.0] * count
        for index, cell in cells[label].items():
            values[index] = round(value(*cell), 4)
        report.series[label] = values
        report.totals[label] = _round(overall[label])
    return report


def report_json(report: Report) -> str:
    return json.dumps(report.to_json(), indent=1)


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": HOUR, "d": DAY, "w": 7 * DAY}


def parse_duration(text: str) -> float:
    """``90``, ``30m``, ``1h``, ``7d``, ``2w`` in seconds; InvalidArgument otherwise."""
    match = _DURATION.match(text)
    if not match:
        raise InvalidArgument(f"{text[:40]!r} is not a duration like 30m, 1h, 7d or 2w")
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def _round(value: float) -> float:
    return round(value, 4)


def _iso(time: float) -> str:
    return datetime.fromtimestamp(time, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
