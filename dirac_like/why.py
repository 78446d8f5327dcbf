"""Why a job waits: the answer of ``dirac-like job why``, from the matcher's own rules.

Pure: no I/O, no clock. The service hands in what it knows (:class:`GridView`): the CEs directors
described when they sized their pilots (and the CEs pilots came from), the pilots seen lately, the
state of every site, the matcher itself and the recent match rate. The verdict is one of, in this
order (the first that holds):

- ``not-waiting``: the job is not waiting (it runs, or ended);
- ``held``: it is held back (Rescheduled: back to Waiting at a given time; or its input data
  is not, now, at any site it may run at: a replica lost, its SE banned, a copy on its way);
- ``unknown-grid``: no CE and no pilot is known yet, so nothing can be said;
- ``never``: no known CE can ever run it (``NumberOfProcessors 64 > the largest CE's 8``);
- ``sites``: the CEs that could run it are all at sites that take no job now: in a downtime,
  banned, draining, at their running limit, or with no pilot lately (with when the last one
  came);
- ``no-pilots``: the sites are open but no pilot that fits it came lately;
- ``lost``: pilots that fit it came, but the matcher served others: the job's place (jobs ahead
  of it for such a pilot, by the matcher's fair-share ranking), its group's and user's load per
  share, and the estimated wait at the recent match rate (none ahead: it is first in line and
  waits for a pilot that fits to be free).

Every requirement is checked with the matcher's own predicates
(:data:`dirac_like.matching.REQUIREMENT_CHECKS`), and, like HTCondor's ``-better-analyze``, the
answer counts how many known CEs and recent pilots reject the job by each requirement.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from dirac_like.matching import (
    CAPACITY_CHECKS,
    REQUIREMENT_CHECKS,
    STATIC_CHECKS,
    Matcher,
    TaskQueue,
)
from dirac_like.model import JobRecord, Requirements
from dirac_like.protocol import PilotResources
from dirac_like.states import JobStatus

NOT_WAITING, HELD, UNKNOWN_GRID, NEVER = "not-waiting", "held", "unknown-grid", "never"
SITES, NO_PILOTS, LOST = "sites", "no-pilots", "lost"
VERDICTS = (NOT_WAITING, HELD, UNKNOWN_GRID, NEVER, SITES, NO_PILOTS, LOST)


@dataclass(frozen=True)
class SiteState:
    """What stops a site from taking jobs now (all empty/zero: it takes them)."""

    name: str
    banned: str = ""  # the ban's reason
    draining: bool = False
    limit: int = 0  # active jobs at once (0: none)
    active: int = 0
    last_pilot: float = 0.0  # the last request of any pilot there (0: never)
    downtime: str = ""  # the downtime in force now, as the monitoring board says it

    def blocked(self) -> str:
        """Why no job is matched at this site now ('' if jobs may be)."""
        if self.downtime:
            return self.downtime
        if self.banned:
            return f"{self.name} is banned ({self.banned})"
        if self.draining:
            return f"{self.name} is draining"
        if self.limit and self.active >= self.limit:
            return f"{self.name} is at its limit of {self.limit} running jobs"
        return ""


@dataclass(frozen=True)
class GridView:
    """What the service knows of the grid, as the explanation needs it."""

    ces: list[PilotResources]  # one per known CE: what a fresh pilot there offers
    pilots: list[PilotResources]  # what each recent pilot offered at its last request
    sites: Mapping[str, SiteState]  # every site name met
    known_sites: frozenset[str]
    now: float
    pilot_window: float = 3600.0  # "lately", in seconds
    match_rate: float = 0.0  # matches per second lately, whole service


@dataclass(frozen=True)
class Explanation:
    job_id: int
    status: str
    verdict: str
    reason: str  # one line
    details: list[str] = field(default_factory=list)
    ces_considered: int = 0
    ce_rejections: dict[str, int] = field(default_factory=dict)  # requirement -> CEs
    pilots_considered: int = 0
    pilot_rejections: dict[str, int] = field(default_factory=dict)  # requirement -> pilots
    jobs_ahead: int = -1  # -1: not computed
    estimated_wait: float = -1.0  # seconds; -1: unknown


def explain(
    job: JobRecord,
    task_queue: TaskQueue,
    matcher: Matcher,
    grid: GridView,
    reschedule_at: float = 0.0,
    data_missing: list[str] | None = None,
) -> Explanation:
    """Why ``job`` (waiting in ``task_queue``) has not started. ``data_missing``: why its input
    data is not at any site it may run at now, one line per file (none: it is, or it has none).
    (Jobs have no dependencies on other jobs, parametric siblings included: nothing to wait
    for there.)"""
    base = Explanation(job.job_id, job.status.value, NOT_WAITING, "")
    if job.status is JobStatus.RESCHEDULED:
        return dataclasses.replace(
            base,
            verdict=HELD,
            reason=(
                f"held back: rescheduled ({job.minor_status}); back to Waiting in "
                f"{_duration(reschedule_at - grid.now)}"
            ),
        )
    if job.status is not JobStatus.WAITING:
        return dataclasses.replace(base, reason=f"the job is {job.status.value}, not waiting")
    if data_missing:
        return dataclasses.replace(
            base,
            verdict=HELD,
            details=list(data_missing),
            reason="held back: its input data is not at any site it may run at now: "
            + "; ".join(data_missing[:3])
            + (f" (and {len(data_missing) - 3} more)" if len(data_missing) > 3 else ""),
        )
    ce_rejections, capable = _reject_counts(task_queue, grid.ces)
    pilot_rejections, fitting = _reject_counts(task_queue, grid.pilots)
    base = dataclasses.replace(
        base,
        ces_considered=len(grid.ces),
        ce_rejections=ce_rejections,
        pilots_considered=len(grid.pilots),
        pilot_rejections=pilot_rejections,
    )
    if not grid.ces and not grid.pilots:
        return dataclasses.replace(
            base,
            verdict=UNKNOWN_GRID,
            reason=(
                "no CE and no pilot is known yet: no director has sized pilots and no pilot has "
                "come, so nothing can run it"
            ),
        )
    never = never_reasons(
        task_queue.requirements, task_queue.group, grid.ces or grid.pilots, grid.known_sites
    )
    if never:
        return dataclasses.replace(
            base, verdict=NEVER, reason="no CE can ever run it: " + "; ".join(never), details=never
        )
    return _where(base, job, task_queue, matcher, grid, capable + fitting, fitting)


def _reject_counts(
    task_queue: TaskQueue, offers: Iterable[PilotResources]
) -> tuple[dict[str, int], list[PilotResources]]:
    """How many ``offers`` reject the task queue by each requirement, and those that fit. The
    static requirements are checked once per distinct static offer (10k pilots are a few dozen
    CEs), the capacity ones per offer."""
    req, group = task_queue.requirements, task_queue.group
    counts: dict[str, int] = {}
    fitting = []
    static_of: dict[tuple[object, ...], list[str]] = {}
    for offer in offers:
        key = (
            offer.site,
            offer.ce,
            offer.platform,
            tuple(offer.tags),
            tuple(offer.required_tags),
            offer.owner_group,
        )
        static = static_of.get(key)
        if static is None:
            static = static_of[key] = [
                name for name, check in STATIC_CHECKS if not check(req, group, offer)
            ]
        rejected = static + [
            name for name, check in CAPACITY_CHECKS if not check(req, group, offer)
        ]
        for name in rejected:
            counts[name] = counts.get(name, 0) + 1
        if not rejected:
            fitting.append(offer)
    return counts, fitting


def never_reasons(
    requirements: Requirements, group: str, ces: list[PilotResources], known_sites: frozenset[str]
) -> list[str]:
    """Why no CE in ``ces`` can ever run a job with ``requirements`` ([] if one can): one line
    per requirement that every CE rejects, in the job's own terms."""
    if not ces:
        return []
    probe = TaskQueue(0, "", group, requirements)
    rejected_by_all: set[str] | None = None
    for ce in ces:
        rejected = set(probe.rejections(ce))
        if not rejected:
            return []
        rejected_by_all = rejected if rejected_by_all is None else rejected_by_all & rejected
    lines = [
        _never_line(name, requirements, ces, known_sites)
        for name, _ in REQUIREMENT_CHECKS
        if name in (rejected_by_all or set())
    ]
    return lines or ["no CE meets all of its requirements at once (see the counts)"]


def _never_line(
    name: str, req: Requirements, ces: list[PilotResources], known_sites: frozenset[str]
) -> str:
    if name == "Site":
        unknown = [site for site in req.sites if site not in known_sites]
        if len(unknown) == len(req.sites):
            return f"Site {', '.join(req.sites)}: no such site"
        return f"Site {', '.join(req.sites)}: no known CE there"
    if name == "NumberOfProcessors":
        return f"NumberOfProcessors {req.cores} > the largest CE's {max(c.cores for c in ces)}"
    if name == "MaxRAM":
        return f"MaxRAM {req.max_ram_mb} MB > the largest CE's {max(c.memory_mb for c in ces)} MB"
    if name == "CPUTime":
        longest = max(c.cpu_time_left for c in ces)
        return f"CPUTime {req.cpu_time} > every CE's max {longest}"
    if name == "Tags":
        offered = {tag for ce in ces for tag in ce.tags}
        missing = [tag for tag in req.tags if tag not in offered] or list(req.tags)
        return f"Tags {', '.join(missing)}: no CE offers {'it' if len(missing) == 1 else 'them'}"
    if name == "Platform":
        return f"Platform {', '.join(req.platforms)}: no CE has it"
    if name == "GridCE":
        return f"GridCE {', '.join(req.ces)}: no such CE"
    if name == "BannedSites":
        return f"BannedSites {', '.join(req.banned_sites)}: every CE is at a site it bans"
    return f"{name}: every CE rejects it"


def _where(
    base: Explanation,
    job: JobRecord,
    task_queue: TaskQueue,
    matcher: Matcher,
    grid: GridView,
    capable: list[PilotResources],
    fitting: list[PilotResources],
) -> Explanation:
    """The job could run somewhere: which sites block it, or whom it lost to."""
    sites = sorted({offer.site for offer in capable})
    blocked = [_site_block(grid, site) for site in sites]
    open_sites = [site for site, why in zip(sites, blocked, strict=True) if not why]
    details = [why for why in blocked if why]
    if not open_sites:
        return dataclasses.replace(
            base,
            verdict=SITES,
            details=details,
            reason=("every site that could run it takes no job now: " + "; ".join(details)),
        )
    fitting_open = [pilot for pilot in fitting if pilot.site in open_sites]
    if not fitting_open:
        return dataclasses.replace(
            base,
            verdict=NO_PILOTS,
            details=details,
            reason=(
                f"no pilot that fits it came lately to {', '.join(open_sites)} (the sites that "
                "could run it); directors there will send some for it"
            ),
        )
    return _lost(base, job, task_queue, matcher, grid, fitting_open[0], details)


def _site_block(grid: GridView, site: str) -> str:
    state = grid.sites.get(site, SiteState(site))
    blocked = state.blocked()
    if blocked:
        return blocked
    if not state.last_pilot:
        return f"{site} has had no pilot yet"
    if grid.now - state.last_pilot > grid.pilot_window:
        return f"{site} has had no pilot for {_duration(grid.now - state.last_pilot)}"
    return ""


def _lost(
    base: Explanation,
    job: JobRecord,
    task_queue: TaskQueue,
    matcher: Matcher,
    grid: GridView,
    pilot: PilotResources,
    details: list[str],
) -> Explanation:
    """Pilots that fit came: the job's place in the matcher's order for such a pilot (the
    groups and users that have waiting jobs this pilot could take, ranked as the matcher ranks
    them now)."""
    shares, now = matcher.shares, grid.now
    tree = {
        group: {
            user: [q for q in queues if len(q) and q.fits_capacity(pilot)]
            for user, queues in users.items()
        }
        for group, users in matcher.eligible(pilot).items()
    }
    tree = {
        group: {user: queues for user, queues in users.items() if queues}
        for group, users in tree.items()
    }
    groups = [group for group in shares.rank_groups(tree, now) if tree[group]]
    users = shares.rank_users(job.group, tree[job.group], now)
    ahead = sum(
        len(queue)
        for group in groups[: groups.index(job.group)]
        for queues in tree[group].values()
        for queue in queues
    )
    ahead += sum(
        len(queue) for user in users[: users.index(job.owner)] for queue in tree[job.group][user]
    )
    ahead += sum(
        queue.count_before((-job.priority, job.job_id)) for queue in tree[job.group][job.owner]
    )
    lines = [
        f"group {job.group}: place {groups.index(job.group) + 1} of {len(groups)} with jobs "
        f"waiting, by load per share ({shares.group_priority(job.group, now):.3g} cores per "
        "unit of share)",
        f"user {job.owner}: place {users.index(job.owner) + 1} of {len(users)} in {job.group} "
        f"({shares.user_priority(job.group, job.owner, now):.3g} cores per unit of share)",
        f"task queue {task_queue.task_queue_id}: {len(task_queue)} waiting",
    ]
    wait = ahead / grid.match_rate if grid.match_rate > 0 else -1.0
    estimate = f"; about {_duration(wait)} at the recent rate" if wait >= 0 else ""
    reason = (
        f"pilots that fit it came, but others were served first: {ahead} jobs ahead of it{estimate}"
        if ahead
        else "it is first in line: the next pilot that fits takes it (pilots that fit came "
        "lately and are busy)"
    )
    return dataclasses.replace(
        base,
        verdict=LOST,
        details=lines + details,
        jobs_ahead=ahead,
        estimated_wait=wait,
        reason=reason,
    )


def _duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"
