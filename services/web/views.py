"""What the dashboard's pages show, decided apart from HTTP and SQL (pure: ``now`` passed in).

- :func:`parse_job_query`: a job search from query parameters, every value checked and bounded;
  the principal's own rights applied by :func:`dirac_like.authz.authorize` (LIST_JOBS), exactly
  as for ``dirac-like job list`` (a user's search is narrowed to their own jobs).
- :func:`overview`: jobs by status and by site from the store's counts.
- :func:`share_rows`: each group's target share against what it receives, by the matcher's own
  rule (:class:`dirac_like.shares.FairShare`: running cores plus decayed usage).
- :class:`ShareHistory`: samples of realised shares over time, for the timeline plot.
- :func:`site_rows`: each site's ban status, jobs and pilots.
- :func:`may`: whether a principal's role may run an operation at all (panels and buttons are
  shown only then; the action itself is checked again, with its arguments).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from dirac_like.accounting import link_label
from dirac_like.authz import Ownership, Principal, allowed_roles, authorize
from dirac_like.availability import Figures, TargetFigures, percent
from dirac_like.config import SharesConfig
from dirac_like.model import SiteRecord, UsageRecord
from dirac_like.protocol import ListJobsArgs, Op
from dirac_like.shares import FairShare
from dirac_like.states import ACTIVE_STATUSES, JobStatus, PilotState

from .reader import CountRow, JobQuery, PilotCount, RunningCores

MAX_FILTER_CHARS = 100
DEFAULT_PAGE = 50
MAX_PAGE = 500
STATUS_ORDER = tuple(status.value for status in JobStatus)
PILOT_STATE_ORDER = tuple(state.value for state in PilotState)
SEARCH_FIELDS = ("owner", "status", "site", "group", "name")
UNPLACED = frozenset({"ANY", ""})  # the site of a job no pilot took yet


class BadQuery(ValueError):
    """A query parameter that cannot be used; the message names it."""


def may(principal: Principal, op: str) -> bool:
    return principal.role in allowed_roles(op)


# -- job search ----------------------------------------------------------------------------------


def parse_job_query(
    params: Mapping[str, str], principal: Principal, ownership: Ownership
) -> JobQuery:
    """The search the parameters ask for, as ``principal`` may run it. BadQuery for a value
    that is not one; :class:`dirac_like.errors.Forbidden` for another user's jobs."""
    text = {name: _text(params, name) for name in SEARCH_FIELDS}
    status = text["status"]
    if status is not None:
        status = _status(status)
    asked = ListJobsArgs(
        status=status,
        site=text["site"],
        owner=text["owner"],
        group=text["group"],
        limit=_int(params, "limit", DEFAULT_PAGE, MAX_PAGE),
    )
    allowed: ListJobsArgs = authorize(principal, Op.LIST_JOBS, asked, ownership)
    before = params.get("before") or None
    return JobQuery(
        owner=allowed.owner,
        status=allowed.status,
        site=allowed.site,
        group=allowed.group,
        name=text["name"],
        before=None if before is None else _int(params, "before", 0, 2**62),
        limit=allowed.limit,
    )


def _text(params: Mapping[str, str], name: str) -> str | None:
    value = (params.get(name) or "").strip()
    if len(value) > MAX_FILTER_CHARS:
        raise BadQuery(f"{name}: longer than {MAX_FILTER_CHARS} characters")
    if any(ord(char) < 32 for char in value):
        raise BadQuery(f"{name}: control characters")
    return value or None


def _status(value: str) -> str:
    for status in STATUS_ORDER:
        if status.lower() == value.lower():
            return status
    raise BadQuery(f"status: {value!r} is not a job status ({', '.join(STATUS_ORDER)})")


def _int(params: Mapping[str, str], name: str, default: int, largest: int) -> int:
    raw = params.get(name)
    if not raw:
        return default
    if not raw.isascii() or not raw.isdigit() or len(raw) > 19:
        raise BadQuery(f"{name}: not a whole number")
    value = int(raw)
    if not 1 <= value <= largest:
        raise BadQuery(f"{name}: must be between 1 and {largest}")
    return value


def next_page(query: JobQuery, rows: Sequence[Any]) -> dict[str, str] | None:
    """Parameters of the next (older) page, or None when this one is the last."""
    if len(rows) < query.limit:
        return None
    params = {
        name: value
        for name, value in (
            ("owner", query.owner),
            ("status", query.status),
            ("site", query.site),
            ("group", query.group),
            ("name", query.name),
        )
        if value
    }
    return {**params, "before": str(rows[-1].job_id), "limit": str(query.limit)}


# -- overview ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Overview:
    total: int
    by_status: list[tuple[str, int]]  # in the state machine's order, non-zero only
    active_by_site: list[tuple[str, int]]  # jobs a pilot holds, by site, most first
    by_group: list[tuple[str, int]]
    by_site: list[tuple[str, dict[str, int]]]  # site -> status -> jobs (jobs at a site only)


def overview(counts: Iterable[CountRow]) -> Overview:
    by_status: dict[str, int] = {}
    by_site: dict[str, int] = {}
    by_group: dict[str, int] = {}
    site_status: dict[str, dict[str, int]] = {}
    active = {status.value for status in ACTIVE_STATUSES}
    for row in counts:
        if row.site not in UNPLACED:
            per_site = site_status.setdefault(row.site, {})
            per_site[row.status] = per_site.get(row.status, 0) + row.jobs
        by_status[row.status] = by_status.get(row.status, 0) + row.jobs
        by_group[row.group] = by_group.get(row.group, 0) + row.jobs
        if row.status in active:
            by_site[row.site] = by_site.get(row.site, 0) + row.jobs
    ordered = [(status, by_status[status]) for status in STATUS_ORDER if status in by_status]
    return Overview(
        total=sum(by_status.values()),
        by_status=ordered,
        active_by_site=sorted(by_site.items(), key=lambda item: (-item[1], item[0])),
        by_group=sorted(by_group.items()),
        by_site=sorted(site_status.items()),
    )


# -- shares --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ShareRow:
    group: str
    target: float  # fraction of the total share
    realised: float  # fraction of the total load (running cores + decayed usage)
    running_cores: int
    usage_core_seconds: float


def share_rows(
    config: SharesConfig,
    overrides: Mapping[str, float],
    usage: Iterable[UsageRecord],
    running: Iterable[RunningCores],
    now: float,
) -> list[ShareRow]:
    """Every group's target and realised share, as the matcher computes them."""
    fair = FairShare(
        {**config.groups, **overrides}, config.users, config.half_life, config.default_share
    )
    for record in usage:
        fair.restore(record)
    for item in running:
        for key in ((item.group, ""), (item.group, item.owner)):
            # The service writes an account's usage whenever its running cores change, so
            # these cores have run since the stored stamp; an account never stored starts now.
            account = fair.account(*key)
            account.stamp = account.stamp or now
            account.running_cores += item.cores
    return [
        ShareRow(
            str(row["group"]),
            float(row["share_fraction"]),
            float(row["load_fraction"]),
            int(row["running_cores"]),
            float(row["usage_core_seconds"]),
        )
        for row in fair.report(now)
    ]


@dataclass
class ShareHistory:
    """The last ``size`` samples of realised shares: (time, {group: realised fraction})."""

    size: int = 360
    samples: deque[tuple[float, dict[str, float]]] = field(default_factory=deque)
    targets: dict[str, float] = field(default_factory=dict)

    def add(self, now: float, rows: Iterable[ShareRow]) -> None:
        rows = list(rows)
        self.samples.append((now, {row.group: row.realised for row in rows}))
        self.targets = {row.group: row.target for row in rows}
        while len(self.samples) > self.size:
            self.samples.popleft()

    def series(self) -> dict[str, list[tuple[float, float]]]:
        """Per group, its (time, realised share) points (0 where a sample lacks it)."""
        groups = sorted({group for _, shares in self.samples for group in shares})
        return {
            group: [(t, shares.get(group, 0.0)) for t, shares in self.samples] for group in groups
        }


# -- sites ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SiteView:
    name: str
    status: str  # Active, Degraded, Probing or Banned (the monitoring agent's, else the ban's)
    reason: str
    active_jobs: int
    done: int
    failed: int
    pilots: dict[str, int]  # pilot state -> count
    ces: list[str]


def site_rows(
    sites: Iterable[SiteRecord],
    counts: Iterable[CountRow],
    pilots: Iterable[PilotCount],
    statuses: Mapping[str, tuple[str, str]] | None = None,
) -> list[SiteView]:
    """Every site known from bans, pilots, or jobs that ran there (a site only asked for, by
    jobs still waiting, is not listed)."""
    records = {site.name: site for site in sites}
    active = {status.value for status in ACTIVE_STATUSES}
    jobs: dict[str, dict[str, int]] = {}
    for row in counts:
        per_site = jobs.setdefault(row.site, {"active": 0, "Done": 0, "Failed": 0})
        key = "active" if row.status in active else row.status
        if key in per_site:
            per_site[key] += row.jobs
    by_state: dict[str, dict[str, int]] = {}
    ces: dict[str, set[str]] = {}
    for count in pilots:
        states = by_state.setdefault(count.site, {})
        states[count.state] = states.get(count.state, 0) + count.pilots
        ces.setdefault(count.site, set()).add(count.ce)
    ran = {site for site, numbers in jobs.items() if any(numbers.values())}
    statuses = statuses or {}
    names = sorted((set(records) | ran | set(by_state) | set(statuses)) - UNPLACED)
    views = []
    for name in names:
        status, reason = statuses.get(name) or _ban_status(records.get(name))
        numbers = jobs.get(name, {"active": 0, "Done": 0, "Failed": 0})
        views.append(
            SiteView(
                name,
                status,
                reason,
                numbers["active"],
                numbers["Done"],
                numbers["Failed"],
                by_state.get(name, {}),
                sorted(ces.get(name, ())),
            )
        )
    return views


def _ban_status(record: SiteRecord | None) -> tuple[str, str]:
    if record is not None and record.banned:
        return "Banned", record.reason
    return "Active", ""


def pilots_by_site(pilots: Iterable[PilotCount]) -> list[tuple[str, dict[str, int]]]:
    """Pilots by site and state (the CEs added up), sites by name."""
    by_site: dict[str, dict[str, int]] = {}
    for count in pilots:
        states = by_site.setdefault(count.site, {})
        states[count.state] = states.get(count.state, 0) + count.pilots
    return sorted(by_site.items())


# -- a job ---------------------------------------------------------------------------------------


def jdl_lines(description: Mapping[str, Any]) -> list[str]:
    """A stored description as DIRAC JDL lines (``Attribute = value;``)."""
    return [f"{name} = {_jdl_value(value)};" for name, value in description.items()]


def _jdl_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "{ " + ", ".join(_jdl_value(item) for item in value) + " }"
    if isinstance(value, dict):
        return "[ " + " ".join(f"{k} = {_jdl_value(v)};" for k, v in value.items()) + " ]"
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'


# -- availability grid ---------------------------------------------------------------------------

AVAILABILITY_LEVELS = ((0.99, "a100"), (0.90, "a90"), (0.75, "a75"), (0.50, "a50"), (0.0, "a0"))


@dataclass(frozen=True)
class GridCell:
    text: str  # "97%", "--" (nothing known), "DT" (scheduled downtime all along)
    level: str  # a CSS class: a100, a90, a75, a50, a0, unknown, downtime
    title: str  # the cell's tooltip: period, availability, reliability, probes


@dataclass(frozen=True)
class GridRow:
    target: str
    kind: str
    status: str
    cells: list[GridCell]


@dataclass(frozen=True)
class AvailabilityGrid:
    title: str
    columns: list[str]  # one label per period
    rows: list[GridRow]


def availability_grid(
    targets: Sequence[TargetFigures], title: str, hourly: bool
) -> AvailabilityGrid:
    """A target x period grid of WLCG availability, coloured as the SAM dashboards colour it."""
    label = "%H:00" if hourly else "%m-%d"
    columns = []
    if targets:
        columns = [_utc(window.start, label) for window in targets[0].periods]
    rows = [
        GridRow(
            target.target,
            target.kind,
            target.status,
            [_cell(window, target.probes_in(window), hourly) for window in target.periods],
        )
        for target in targets
    ]
    return AvailabilityGrid(title, columns, rows)


def _cell(window: Figures, probes: int, hourly: bool) -> GridCell:
    when = _utc(window.start, "%Y-%m-%d %H:00" if hourly else "%Y-%m-%d")
    title = (
        f"{when} UTC: availability {percent(window.availability)}, reliability "
        f"{percent(window.reliability)}, {probes} probe(s)"
    )
    if window.availability is None:
        return GridCell("--", "unknown", title)
    if window.reliability is None:
        return GridCell("DT", "downtime", title)
    level = next(name for low, name in AVAILABILITY_LEVELS if window.availability >= low)
    return GridCell(f"{window.availability * 100:.0f}%", level, title)


def _utc(stamp: float, form: str) -> str:
    return datetime.fromtimestamp(stamp, UTC).strftime(form)


# -- transfers -----------------------------------------------------------------------------------

TRANSFER_STATES = ("Waiting", "Assigned", "Active", "Done", "Failed")


@dataclass(frozen=True)
class TransferLink:
    name: str  # "SOURCE -> DESTINATION" ("none -> ..." before a source was chosen)
    states: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.states.values())


def transfer_links(counts: Iterable[tuple[str, str, str, int]]) -> list[TransferLink]:
    """Transfer requests by link (source, destination) and state, busiest link first."""
    links: dict[str, dict[str, int]] = {}
    for source, destination, state, number in counts:
        states = links.setdefault(link_label(source, destination), {})
        states[state] = states.get(state, 0) + number
    views = [TransferLink(name, states) for name, states in links.items()]
    return sorted(views, key=lambda link: (-link.total, link.name))
