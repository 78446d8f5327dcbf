"""The dashboard's accounting page: the accounting reports a principal may see, as plots.

:class:`AccountingPlots` is the dashboard's :class:`~services.web.dashboard.AccountingSource`:
it reads the central service's store (SQLite or PostgreSQL) read-only through
:class:`~services.accounting_store.AccountingReader` (reports from buckets, never raw records)
and draws each report with :func:`services.web.plots.time_bars`.

Who sees what follows :func:`dirac_like.authz.authorize` for LIST_JOBS, as the job pages do: a
principal whose listing is narrowed to their own jobs (a user) sees only their own label of the
``user`` dimension (their jobs, core-hours and CPU efficiency); one who may list every job (an
admin, an operator) sees the grid by group, site and exit code. Plots are reused for a minute
(the buckets are hourly).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

from dirac_like.accounting import DAY, HOUR, Report, ReportQuery
from dirac_like.authz import Ownership, Principal, authorize
from dirac_like.protocol import ListJobsArgs, Op

from ..accounting_store import AccountingReader
from . import plots

CACHE_SECONDS = 60.0
CACHE_MAX = 256


@dataclass(frozen=True)
class Panel:
    metric: str
    by: str
    title: str


GRID_PANELS = (
    Panel("core-hours", "group", "Core-hours by group"),
    Panel("jobs", "site", "Finished jobs by site"),
    Panel("failed", "exit-code", "Failed jobs by exit code"),
    Panel("cpu-efficiency", "group", "CPU efficiency by group (%)"),
    Panel("transfer-bytes", "link", "Bytes transferred by link"),
    Panel("transfers", "status", "Finished transfers by status"),
)
OWN_PANELS = (
    Panel("jobs", "user", "Your finished jobs"),
    Panel("core-hours", "user", "Your core-hours"),
    Panel("cpu-efficiency", "user", "Your CPU efficiency (%)"),
)


class AccountingPlots:
    """Plots of the last ``since`` seconds in steps of ``step`` seconds."""

    def __init__(
        self,
        store: str | Path,
        ownership: Ownership,
        since: float = 7 * DAY,
        step: int = 6 * HOUR,
    ) -> None:
        self.store = store  # the store's URL, or its file's Path
        self.ownership = ownership
        self.since = since
        self.step = step
        self._lock = threading.Lock()
        self._cache: dict[tuple[str | None, int], list[tuple[str, str]]] = {}

    def plots(self, principal: Principal, now: float) -> list[tuple[str, str]]:
        allowed: ListJobsArgs = authorize(principal, Op.LIST_JOBS, ListJobsArgs(), self.ownership)
        owner = allowed.owner  # None: every record; else only this user's
        key = (owner, int(now // CACHE_SECONDS))
        with self._lock:
            cached = self._cache.get(key)
        if cached is not None:
            return cached
        drawn = self._draw(owner, now)
        with self._lock:
            if len(self._cache) > CACHE_MAX:
                self._cache.clear()
            self._cache[key] = drawn
        return drawn

    def _draw(self, owner: str | None, now: float) -> list[tuple[str, str]]:
        panels = GRID_PANELS if owner is None else OWN_PANELS
        drawn = []
        with AccountingReader(self.store) as reader:
            for panel in panels:
                query = ReportQuery.make(panel.metric, panel.by, self.since, self.step, now)
                report = reader.report(query)
                if owner is not None:
                    report = only_label(report, owner)
                title = f"{panel.title}, last {self.since / DAY:g} days"
                drawn.append((title, draw(report, title)))
        return drawn


def only_label(report: Report, label: str) -> Report:
    """``report`` with the series of ``label`` only (a user's own)."""
    narrowed = Report(report.query, report.times)
    if label in report.series:
        narrowed.series[label] = report.series[label]
        narrowed.totals[label] = report.totals[label]
    return narrowed


def draw(report: Report, title: str) -> str:
    lines = report.query.metric.value == "cpu-efficiency"
    return plots.time_bars(report.times, report.series, title, report.unit, lines=lines)
