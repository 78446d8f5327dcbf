"""Handlers of the operators' console (issue 14): ``job why``, bulk actions on a selection of
jobs, and site operations (drain, limit, show) with a summary of pilots by site and state.

``why`` explains with the matcher's own rules (:mod:`dirac_like.why`) over what the service saw
of the grid lately (:class:`~services.grid_log.GridLog`). A bulk action is checked whole when it
is asked for (the count the user was shown, the confirmation and admin caps) and then carried out
by the service loop a batch at a time (:func:`bulk_batch`), each job through the same handler as
a request naming it by id.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from typing import Any

from dirac_like.errors import DiracLikeError, InvalidArgument
from dirac_like.matching import TaskQueue
from dirac_like.model import JobRecord
from dirac_like.protocol import (
    BulkArgs,
    BulkIdArgs,
    BulkReply,
    BulkStatusReply,
    JobIdsArgs,
    JobSummary,
    NoArgs,
    Op,
    PilotSummaryRow,
    SelectArgs,
    SelectionReply,
    SiteArgs,
    SiteDrainArgs,
    SiteLimitArgs,
    SiteShowReply,
    SiteStateReply,
    WhyReply,
    build_trusted,
    to_wire,
)
from dirac_like.selection import Selection, parse_selection
from dirac_like.states import JobStatus
from dirac_like.why import GridView, SiteState, explain

from .input_data import LFN_PREFIX, data_not_at_eligible_sites
from .state import CentralState, check_name

log = logging.getLogger(__name__)

Handler = Callable[[CentralState, Any, float], Any]
MAX_WHY = 1000  # jobs explained in one request
MAX_SAMPLE = 100


# -- job why -----------------------------------------------------------------------------------


def why(state: CentralState, args: JobIdsArgs, now: float) -> list[WhyReply]:
    if not 1 <= len(args.job_ids) <= MAX_WHY:
        raise InvalidArgument(f"give between 1 and {MAX_WHY} job ids")
    jobs = state.book.jobs_by_ids(args.job_ids)
    grid = grid_view(state, now)
    incoming = _incoming(state)
    return [
        WhyReply(
            **vars_of(
                explain(
                    job,
                    _task_queue(state, job),
                    state.book.matcher,
                    grid,
                    reschedule_at=job.deadline,
                    data_missing=_data_missing(state, job, incoming),
                )
            )
        )
        for job in jobs
    ]


def _data_missing(state: CentralState, job: JobRecord, incoming: dict[str, list[str]]) -> list[str]:
    """Why a waiting job's input data is not at a site it may run at now ([]: it is, or it
    has none). Reads the job's stored description."""
    if job.status is not JobStatus.WAITING:
        return []
    description = state.store_description(job.job_id)
    lfns = [str(lfn).removeprefix(LFN_PREFIX) for lfn in description.get("InputData") or []]
    if not lfns:
        return []
    sites = _task_queue(state, job).requirements.sites
    return data_not_at_eligible_sites(state.catalog, state.storage, lfns, sites, incoming)


def _incoming(state: CentralState) -> dict[str, list[str]]:
    """lfn -> destination SEs of the transfers not finished."""
    found: dict[str, list[str]] = {}
    for record in state.transfers.open.values():
        found.setdefault(record.lfn, []).append(record.destination)
    return found


def vars_of(explanation: Any) -> dict[str, Any]:
    return {name: getattr(explanation, name) for name in WhyReply.__dataclass_fields__}


def grid_view(state: CentralState, now: float) -> GridView:
    log_ = state.grid
    sites = {name: site_state(state, name, now) for name in state.sites.seen | set(log_.last_pilot)}
    return GridView(
        ces=log_.known_ces(),
        pilots=log_.recent_pilots(now),
        sites=sites,
        known_sites=frozenset(sites),
        now=now,
        pilot_window=log_.window,
        match_rate=log_.match_rate(now),
    )


def site_state(state: CentralState, name: str, now: float) -> SiteState:
    ban = state.sites.banned(name)
    return SiteState(
        name,
        banned=ban.reason if ban else "",
        draining=state.sites.draining(name),
        limit=state.sites.max_running(name),
        active=state.book.site_active[name],
        last_pilot=state.grid.last_pilot.get(name, 0.0),
        downtime=state.monitor.why_not(name, now),
    )


def _task_queue(state: CentralState, job: JobRecord) -> TaskQueue:
    live = state.book.matcher.task_queues.get(job.task_queue_id)
    if live is not None:
        return live
    row = state.book.task_queue_rows[job.task_queue_id]  # dropped while empty: a stand-in
    return TaskQueue(row.task_queue_id, row.owner, row.group, row.requirements)


# -- bulk actions ------------------------------------------------------------------------------


def _selection(text: str, only_owner: str) -> tuple[Selection, str]:
    """The parsed selection, narrowed to ``only_owner``, and a note saying so."""
    selection = parse_selection(text)
    if not only_owner:
        return selection, ""
    note = (
        f"only your jobs (owner={only_owner}) are counted" if selection.owner != only_owner else ""
    )
    return selection.for_owner(only_owner), note


def _selected(state: CentralState, selection: Selection, now: float) -> list[JobRecord]:
    """The jobs a selection matches, in job id order. Waiting jobs only: looked up in the task
    queues of the owner and group selected (the matcher's own index), not in every job."""
    if selection.statuses != {JobStatus.WAITING}:
        return selection.select(state.jobs.values(), now)
    job_ids: list[int] = []
    for queue in state.book.matcher.task_queues.values():
        if (selection.owner or queue.owner) == queue.owner and (
            selection.group or queue.group
        ) == queue.group:
            job_ids.extend(queue.job_ids())
    jobs = state.jobs
    return selection.select((jobs[job_id] for job_id in sorted(job_ids)), now)


def _described(text: str, only_owner: str) -> str:
    """The selection as applied: a user's is narrowed to its own jobs (owner=that user)."""
    if not only_owner:
        return text
    items = [item.strip() for item in text.split(",") if item.strip()]
    kept = [item for item in items if item.partition("=")[0].strip().lower() != "owner"]
    return ",".join([*kept, f"owner={only_owner}"])


def select_jobs(state: CentralState, args: SelectArgs, now: float) -> SelectionReply:
    selection, note = _selection(args.selection, args.only_owner)
    if not 0 <= args.sample <= MAX_SAMPLE:
        raise InvalidArgument(f"sample must be 0 to {MAX_SAMPLE}")
    jobs = _selected(state, selection, now)
    if not jobs:
        note = "; ".join(filter(None, [note, "no job matches this selection"]))
    config = state.config.bulk
    return SelectionReply(
        selection=_described(args.selection, args.only_owner),
        count=len(jobs),
        sample=[build_trusted(JobSummary, job.summary()) for job in jobs[: args.sample]],
        note=note,
        confirm_above=config.confirm_above,
        admin_above=config.admin_above,
    )


def bulk(state: CentralState, args: BulkArgs, now: float, actions: dict[str, Handler]) -> BulkReply:
    if args.action not in actions:
        raise InvalidArgument(
            f"bulk action {args.action[:20]!r} is unknown: use {', '.join(sorted(actions))}"
        )
    selection, _ = _selection(args.selection, args.only_owner)
    jobs = _selected(state, selection, now)
    _check_caps(state, args, len(jobs))
    described = _described(args.selection, args.only_owner)
    action = state.bulk.start(
        args.action, described, args.only_owner, [job.job_id for job in jobs], now
    )
    log.info(
        "bulk %d: %s of %d jobs selected by %r (owner %s)",
        action.bulk_id,
        args.action,
        len(jobs),
        described,
        args.only_owner or "any",
    )
    return BulkReply(action.bulk_id, len(jobs))


def _check_caps(state: CentralState, args: BulkArgs, count: int) -> None:
    config = state.config.bulk
    if count == 0:
        raise InvalidArgument("the selection matches no job: nothing done")
    if count != args.expected:
        raise InvalidArgument(
            f"the selection now matches {count} jobs, not the {args.expected} "
            "you were shown: nothing done, look again"
        )
    if count > config.admin_above and not args.over_admin_cap:
        raise InvalidArgument(
            f"{count} jobs is above the admin cap of {config.admin_above}: "
            "only an admin may act on so many at once (--over-admin-cap)"
        )
    if count > config.confirm_above and not args.yes:
        raise InvalidArgument(
            f"{count} jobs is above the confirmation cap of "
            f"{config.confirm_above}: confirm with --yes"
        )


def bulk_status(state: CentralState, args: BulkIdArgs, now: float) -> BulkStatusReply:
    action = state.bulk.get(args.bulk_id, args.only_owner)
    return BulkStatusReply(
        action.bulk_id,
        action.action,
        action.selection,
        action.owner,
        action.count,
        action.done,
        action.skipped,
        action.finished,
        list(action.skipped_sample),
    )


def bulk_batch_size(state: CentralState, served: int) -> int:
    """How many jobs of a bulk action this loop acts on: a whole batch when the service is
    idle, else ``busy_share`` per request it served (at least one)."""
    config = state.config.bulk
    if not served:
        return config.batch
    return max(1, min(config.batch, int(served * config.busy_share)))


def bulk_batch(state: CentralState, actions: dict[str, Handler], now: float, size: int = 0) -> int:
    """Act on one batch (``size`` jobs; 0: a whole batch) of the oldest bulk action in
    progress; returns how many jobs it took."""
    batch = state.bulk.next_batch(size or state.config.bulk.batch)
    if batch is None:
        return 0
    action, job_ids = batch
    handler = actions[action.action]
    for job_id in job_ids:
        try:
            handler(state, JobIdsArgs([job_id]), now)
        except DiracLikeError as exc:  # it changed since it was selected: left as it is
            action.skip(job_id, exc.message)
        else:
            action.done += 1
    state.bulk.saved(action)  # its progress, committed with the jobs it changed
    if action.finished:
        log.info(
            "bulk %d finished: %s of %d jobs, %d skipped",
            action.bulk_id,
            action.action,
            action.done,
            action.skipped,
        )
    return len(job_ids)


# -- sites and pilots --------------------------------------------------------------------------


def site_show(state: CentralState, args: SiteArgs, now: float) -> SiteShowReply:
    check_name("site", args.site)
    if args.site not in state.sites.seen and args.site not in state.grid.last_pilot:
        raise InvalidArgument(f"no site {args.site!r} is known: see dirac-like admin sites")
    record, ces = (
        state.sites.record(args.site),
        [ce for ce in state.grid.known_ces() if ce.site == args.site],
    )
    states = Counter(pilot.state for pilot in state.pilots.select(site=args.site, limit=10**9))
    status = "Banned" if record.banned else "Draining" if record.drained else "Active"
    return SiteShowReply(
        site=args.site,
        status=status,
        reason=record.reason,
        max_running=state.sites.max_running(args.site),
        active_jobs=state.book.site_active[args.site],
        ces=[to_wire(ce) for ce in ces],
        pilots_by_state=dict(states),
        last_pilot=state.grid.last_pilot.get(args.site, 0.0),
        director_seen=state.grid.directors.get(args.site, 0.0),
        waiting_could_run=_could_run(state, ces),
    )


def _could_run(state: CentralState, ces: list[Any]) -> int:
    """Waiting jobs a pilot of one of these CEs could run (each job counted once)."""
    queues: dict[int, TaskQueue] = {}
    for ce in ces:
        for users in state.book.matcher.eligible(ce).values():
            for task_queues in users.values():
                queues.update((id(q), q) for q in task_queues if q.fits_capacity(ce))
    return sum(len(queue) for queue in queues.values())


def site_drain(state: CentralState, args: SiteDrainArgs, now: float) -> SiteStateReply:
    check_name("site", args.site)
    record = state.sites.change(args.site, now, drained=args.drain)
    log.info("site %s %s", args.site, "draining" if args.drain else "no longer draining")
    return _site_state_reply(state, record.name)


def site_limit(state: CentralState, args: SiteLimitArgs, now: float) -> SiteStateReply:
    check_name("site", args.site)
    if not -1 <= args.limit <= 10**7:
        raise InvalidArgument("limit must be a number of jobs (0: no limit; -1: as configured)")
    state.sites.change(args.site, now, max_running=args.limit)
    return _site_state_reply(state, args.site)


def _site_state_reply(state: CentralState, site: str) -> SiteStateReply:
    record = state.sites.record(site)
    status = "Banned" if record.banned else "Draining" if record.drained else "Active"
    return SiteStateReply(site, status, state.sites.max_running(site))


def pilot_summary(state: CentralState, args: NoArgs, now: float) -> list[PilotSummaryRow]:
    counts = Counter((pilot.site, pilot.state) for pilot in state.pilots.pilots.values())
    return [
        PilotSummaryRow(site, pilot_state, count)
        for (site, pilot_state), count in sorted(counts.items())
    ]


def console_handlers(actions: dict[str, Handler]) -> dict[str, Handler]:
    """The handlers of this module, bulk actions done with ``actions``."""
    return {
        Op.WHY: why,
        Op.SELECT_JOBS: select_jobs,
        Op.BULK: lambda state, args, now: bulk(state, args, now, actions),
        Op.BULK_STATUS: bulk_status,
        Op.SITE_SHOW: site_show,
        Op.SITE_DRAIN: site_drain,
        Op.SITE_LIMIT: site_limit,
        Op.PILOT_SUMMARY: pilot_summary,
    }
