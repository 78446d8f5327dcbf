"""WLCG availability and reliability of a site or SE, from its probe results. Pure.

The definitions (WLCG, as the SAM/ETF dashboards compute them) over a period of ``total`` seconds:

- at each instant a target is **up** (its latest probe result is OK or WARNING), **down**
  (CRITICAL, or in an *unscheduled* downtime), in **scheduled downtime** (declared in advance;
  this overrides its results), or **unknown** (no result yet, its latest result is older than
  ``validity`` seconds, or UNKNOWN);
- ``availability = up / (total - unknown)``: a scheduled downtime counts as down;
- ``reliability = up / (total - unknown - scheduled)``: it does not, so a site is not blamed
  for downtime it announced.

Both are in [0, 1] and reliability >= availability. Either is *undefined* (None) when its
denominator is zero: a period with nothing known, or (reliability) one spent entirely in
scheduled downtime. A target probed through several services (the CEs of a site) is up when any
of them is up (WLCG's OR over the instances of one service type), down when none is up and one
is down, unknown otherwise.
"""

from __future__ import annotations

import bisect
import calendar
import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from dirac_like.monitoring import (
    CheckStatus,
    Downtime,
    ProbeResult,
    TargetKind,
    outcome_of,
    probe_runs,
)

UP, DOWN, UNKNOWN, SCHEDULED = "up", "down", "unknown", "scheduled"
_STATE_OF = {
    CheckStatus.OK: UP,
    CheckStatus.WARNING: UP,
    CheckStatus.CRITICAL: DOWN,
    CheckStatus.UNKNOWN: UNKNOWN,
}


@dataclass(frozen=True)
class Sample:
    """The outcome of one probe run of a target at ``time`` (``service``: which CE)."""

    time: float
    status: CheckStatus
    service: str = ""


def samples_of(runs: Iterable[Sequence[ProbeResult]]) -> list[Sample]:
    """One sample per probe run (its worst check), of the CE it probed."""
    samples = []
    for run in runs:
        outcome = outcome_of(run)
        samples.append(Sample(outcome.time, outcome.status, run[0].ce))
    return samples


@dataclass(frozen=True)
class DowntimeSpan:
    start: float
    end: float
    scheduled: bool


@dataclass(frozen=True)
class Figures:
    start: float
    end: float
    up: float  # seconds
    down: float
    unknown: float
    scheduled: float
    availability: float | None  # None: undefined
    reliability: float | None


def figures(
    samples: Iterable[Sample],
    downtimes: Iterable[DowntimeSpan],
    start: float,
    end: float,
    validity: float,
) -> Figures:
    """Availability and reliability over [start, end). Give the samples from before ``start``
    too (at least the last one): the latest result before the period holds into it."""
    if end <= start or validity <= 0:
        raise ValueError("figures need end > start and a positive validity")
    timelines = _timelines(samples)
    spans = [span for span in downtimes if span.start < end and start < span.end]
    totals = {UP: 0.0, DOWN: 0.0, UNKNOWN: 0.0, SCHEDULED: 0.0}
    cuts = _cuts(timelines, spans, start, end, validity)
    for low, high in itertools.pairwise(cuts):
        middle = (low + high) / 2
        totals[_state(timelines, spans, middle, validity)] += high - low
    known = (end - start) - totals[UNKNOWN]
    return Figures(
        start,
        end,
        totals[UP],
        totals[DOWN],
        totals[UNKNOWN],
        totals[SCHEDULED],
        availability=_ratio(totals[UP], known),
        reliability=_ratio(totals[UP], known - totals[SCHEDULED]),
    )


def _ratio(part: float, whole: float) -> float | None:
    if whole <= 1e-9:
        return None
    return min(1.0, max(0.0, part / whole))


Timeline = tuple[list[float], list[CheckStatus]]


def _timelines(samples: Iterable[Sample]) -> dict[str, Timeline]:
    by_service: dict[str, list[Sample]] = {}
    for sample in samples:
        by_service.setdefault(sample.service, []).append(sample)
    timelines = {}
    for service, items in by_service.items():
        items.sort(key=lambda sample: sample.time)
        timelines[service] = ([s.time for s in items], [s.status for s in items])
    return timelines


def _cuts(
    timelines: dict[str, Timeline],
    spans: list[DowntimeSpan],
    start: float,
    end: float,
    validity: float,
) -> list[float]:
    """Every instant in [start, end] where a state can change."""
    points = {start, end}
    for times, _ in timelines.values():
        points.update(times)
        points.update(time + validity for time in times)
    for span in spans:
        points.update((span.start, span.end))
    return sorted(point for point in points if start <= point <= end)


def _state(
    timelines: dict[str, Timeline], spans: list[DowntimeSpan], moment: float, validity: float
) -> str:
    declared = [span for span in spans if span.start <= moment < span.end]
    if any(span.scheduled for span in declared):
        return SCHEDULED
    if declared:
        return DOWN
    states = {_service_state(timeline, moment, validity) for timeline in timelines.values()}
    for state in (UP, DOWN):
        if state in states:
            return state
    return UNKNOWN


def _service_state(timeline: Timeline, moment: float, validity: float) -> str:
    times, statuses = timeline
    index = bisect.bisect_right(times, moment) - 1
    if index < 0 or moment >= times[index] + validity:
        return UNKNOWN
    return _STATE_OF[statuses[index]]


# -- periods --------------------------------------------------------------------------------------

PERIODS = ("hour", "day", "week", "month")


def period_starts(since: float, until: float, period: str) -> list[float]:
    """The UTC starts of the days / weeks (Monday) / months that meet [since, until)."""
    if period not in PERIODS:
        raise ValueError(f"unknown period {period!r} (known: {', '.join(PERIODS)})")
    moment = datetime.fromtimestamp(since, UTC).replace(minute=0, second=0, microsecond=0)
    if period != "hour":
        moment = moment.replace(hour=0)
    if period == "week":
        moment -= timedelta(days=moment.weekday())
    elif period == "month":
        moment = moment.replace(day=1)
    starts = []
    while moment.timestamp() < until:
        starts.append(moment.timestamp())
        moment = _next(moment, period)
    return starts


def _next(moment: datetime, period: str) -> datetime:
    if period == "hour":
        return moment + timedelta(hours=1)
    if period == "day":
        return moment + timedelta(days=1)
    if period == "week":
        return moment + timedelta(weeks=1)
    days = calendar.monthrange(moment.year, moment.month)[1]
    return moment + timedelta(days=days)


def per_period(
    samples: Sequence[Sample],
    downtimes: Sequence[DowntimeSpan],
    since: float,
    until: float,
    period: str,
    validity: float,
) -> list[Figures]:
    """Figures of each day / week / month meeting [since, until), each cut to that window."""
    starts = period_starts(since, until, period)
    rows = []
    for index, first in enumerate(starts):
        last = (
            starts[index + 1]
            if index + 1 < len(starts)
            else _next(datetime.fromtimestamp(first, UTC), period).timestamp()
        )
        low, high = max(first, since), min(last, until)
        if high > low:
            rows.append(figures(samples, downtimes, low, high, validity))
    return rows


def percent(value: float | None) -> str:
    """A figure as the dashboards show it: '97.5%', or 'n/a' when undefined."""
    return "n/a" if value is None else f"{value * 100:.1f}%"


# -- every target at once -------------------------------------------------------------------------


@dataclass(frozen=True)
class TargetFigures:
    """A site's or SE's figures: one per period (or one for the whole range)."""

    target: str
    kind: str  # "site" or "se"
    status: str  # its status now (Active when none was ever set)
    samples: list[Sample]
    periods: list[Figures]

    def probes_in(self, window: Figures) -> int:
        return sum(1 for sample in self.samples if window.start <= sample.time < window.end)


def target_figures(
    results: Iterable[ProbeResult],
    downtimes: Iterable[Downtime],
    statuses: dict[tuple[str, str], str],
    since: float,
    until: float,
    period: str | None,
    validity: float,
    only: str | None = None,
) -> list[TargetFigures]:
    """The figures of every target that has a probe result or a status (``statuses``: (kind,
    target) -> status), sites first, by name; per ``period`` (None: [since, until) as one).
    Give the results from ``since - validity`` on (the latest before the range holds into it);
    health findings are left out."""
    runs = probe_runs(results)
    targets = set(runs) | {(TargetKind(kind), name) for kind, name in statuses}
    if only:
        targets = {target for target in targets if target[1] == only}
    spans_of: dict[tuple[str, str], list[DowntimeSpan]] = {}
    for downtime in downtimes:
        spans_of.setdefault((downtime.kind.value, downtime.target), []).append(
            DowntimeSpan(downtime.start, downtime.cancelled or downtime.end, downtime.scheduled)
        )
    report = []
    for kind, name in sorted(targets, key=lambda t: (t[0].value != "site", t[1])):
        spans = spans_of.get((kind.value, name), [])
        samples = samples_of(runs.get((kind, name), []))
        rows = (
            per_period(samples, spans, since, until, period, validity)
            if period
            else [figures(samples, spans, since, until, validity)]
        )
        status = statuses.get((kind.value, name), "Active")
        report.append(TargetFigures(name, kind.value, status, samples, rows))
    return report
