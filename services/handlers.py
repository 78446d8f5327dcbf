"""One handler per operation, and the table that dispatches to them.

A handler takes the state, its checked arguments (the frozen dataclass from the protocol module)
and ``now``; it returns its reply dataclass (``protocol.REPLIES``) or raises a DiracLikeError.
Handlers validate everything before changing anything, and change a job only through the job
book (``state.book``, services/job_book.py): its status through ``set_status``/``reschedule``,
the rest through ``request_kill``, ``report`` and ``heartbeat``.
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from dirac_like import __version__
from dirac_like.accounting import check_usage
from dirac_like.errors import DiracLikeError, IllegalTransition, InvalidArgument
from dirac_like.model import JobRecord, SiteRecord
from dirac_like.monitoring import TargetKind
from dirac_like.protocol import (
    INLINE_REVISION,
    LEASE_REVISION,
    MAX_INLINE_BYTES_PER_REQUEST,
    MAX_JOB_IDS,
    MAX_JOBS_PER_REQUEST,
    MAX_REPORTS_PER_REQUEST,
    PROTOCOL_VERSION,
    BanSiteArgs,
    CommandsReply,
    CoreHold,
    EligibleArgs,
    EligibleReply,
    ErrorInfo,
    HeartbeatArgs,
    HistoryRow,
    JobIdArgs,
    JobIdsArgs,
    JobSummary,
    KillJob,
    KillReply,
    ListJobsArgs,
    MatchedJob,
    NoArgs,
    Op,
    PilotCommand,
    PilotResources,
    PilotTurnArgs,
    PilotTurnReply,
    PingReply,
    ReportOutcome,
    ReportOutcomes,
    RequestJobArgs,
    RequestJobReply,
    RequestJobsArgs,
    RequestJobsReply,
    RescheduleReply,
    SetShareArgs,
    SetShareReply,
    ShareRow,
    SiteArgs,
    SiteReply,
    SiteRow,
    SubmitArgs,
    SubmitReply,
    TaskQueueRow,
    UpdateStatusArgs,
    UpdateStatusesArgs,
    build_trusted,
)
from dirac_like.selection import Selection
from dirac_like.states import (
    ACTIVE_STATUSES,
    FINAL_STATUSES,
    PILOT_REPORTABLE,
    JobStatus,
    check_transition,
    parse_status,
)

from .console_handlers import bulk_batch, bulk_batch_size, console_handlers
from .data_handlers import DATA_HANDLERS
from .identities import IDENTITY_HANDLERS
from .job_handlers import JOB_HANDLERS
from .limits import check_listing_limit
from .monitor_handlers import MONITOR_HANDLERS
from .pilot_handlers import PILOT_HANDLERS
from .sandbox_handlers import SANDBOX_HANDLERS, inline_output_bound, keep_inline_output
from .state import NEVER_RUNNABLE, CentralState, check_name
from .status_handlers import STATUS_HANDLERS

S = JobStatus
RUNNING_AT_MATCH = "Application"  # the minor status of a pilot's Running report
Handler = Callable[[CentralState, Any, float], Any]


def _check_job_ids(job_ids: list[int]) -> None:
    if not job_ids:
        raise InvalidArgument("no job ids given")
    if len(job_ids) > MAX_JOB_IDS:
        raise InvalidArgument(f"{len(job_ids)} job ids in one request (at most {MAX_JOB_IDS})")


# -- users -------------------------------------------------------------------------------------


def ping(state: CentralState, args: NoArgs, now: float) -> PingReply:
    return PingReply(
        service="central",
        version=__version__,
        protocol=PROTOCOL_VERSION,
        time=time.time(),
        jobs=len(state.jobs),
    )


def submit(state: CentralState, args: SubmitArgs, now: float) -> SubmitReply:
    if not args.descriptions:
        raise InvalidArgument("no job description given")
    group = args.group or state.config.jobs.default_group
    job_ids = state.submit(args.descriptions, args.owner, group, now, args.submitter or args.owner)
    return SubmitReply(job_ids, never_runnable_warnings(state, job_ids))


def never_runnable_warnings(state: CentralState, job_ids: list[int]) -> list[str]:
    """One line per distinct reason why some of the new jobs can never run. A big submission
    is acknowledged with its first slice made: the lines count the jobs made so far."""
    made = [state.jobs[job_id] for job_id in job_ids if job_id in state.jobs]
    counts = Counter(job.minor_status for job in made)
    of = f" of the first {len(made)}" if len(made) < len(job_ids) else ""
    return [
        f"{count}{of} job(s): {minor}"
        for minor, count in sorted(counts.items())
        if minor.startswith(NEVER_RUNNABLE)
    ]


def status(state: CentralState, args: JobIdsArgs, now: float) -> list[JobSummary]:
    """Each job (once); a job of a big submission not made yet shows as Received."""
    _check_job_ids(args.job_ids)
    rows = []
    for job_id in dict.fromkeys(args.job_ids):
        submission = None if job_id in state.jobs else state.expansions.to_make(job_id)
        if submission is None:
            rows.append(build_trusted(JobSummary, state.book.job(job_id).summary()))
        else:
            minor = (
                f"Being made: {submission.expanded} of {submission.count} jobs of its submission"
            )
            rows.append(JobSummary(job_id, S.RECEIVED.value, minor, "", "ANY", submission.owner,
                                   submission.group, "", 1, ""))  # fmt: skip
    return rows


def list_jobs(state: CentralState, args: ListJobsArgs, now: float) -> list[JobSummary]:
    check_listing_limit(args.limit)
    if args.older < 0 or args.newer < 0:
        raise InvalidArgument("older and newer must be ages in seconds (>= 0)")
    selection = Selection(
        statuses=frozenset([parse_status(args.status)]) if args.status else frozenset(),
        site=args.site or "",
        owner=args.owner or "",
        group=args.group or "",
        name=args.name or "",
        older=args.older,
        newer=args.newer,
    )
    jobs = state.jobs.values()
    for check in selection.checks(now):
        jobs = filter(check, jobs)  # type: ignore[assignment]
    return [build_trusted(JobSummary, job.summary()) for job in itertools.islice(jobs, args.limit)]


def kill(state: CentralState, args: JobIdsArgs, now: float) -> KillReply:
    _check_job_ids(args.job_ids)
    jobs = state.book.jobs_by_ids(args.job_ids)
    for job in jobs:
        if job.status not in ACTIVE_STATUSES:
            check_transition(job.job_id, job.status, S.KILLED)
    killed, requested = [], []
    for job in jobs:
        if job.status in (S.MATCHED, S.RUNNING, S.COMPLETING):
            # The pilot holds it: the kill goes to the pilot; Killed when it confirms.
            state.book.request_kill(job, "user", now)
            state.push_kill(job)
            requested.append(job.job_id)
        else:
            if job.status is S.STALLED:
                state.push_kill(job)  # its pilot may still be alive, only silent
            state.book.set_status(job, S.KILLED, "Killed by user", "user", now)
            killed.append(job.job_id)
    return KillReply(killed=killed, kill_requested=requested)


def reschedule(state: CentralState, args: JobIdsArgs, now: float) -> RescheduleReply:
    _check_job_ids(args.job_ids)
    jobs = state.book.jobs_by_ids(args.job_ids)
    limit = state.config.jobs.max_reschedules
    for job in jobs:
        check_transition(job.job_id, job.status, S.RESCHEDULED)
        if job.reschedules >= limit:
            raise IllegalTransition(f"job {job.job_id} was already rescheduled {limit} times")
    for job in jobs:
        if job.status in ACTIVE_STATUSES:
            state.push_kill(job)  # its pilot must stop the old attempt
        state.book.reschedule(job, "Rescheduled by user", "user", now, hold=False)
    return RescheduleReply([job.job_id for job in jobs])


def history(state: CentralState, args: JobIdArgs, now: float) -> list[HistoryRow]:
    state.book.job(args.job_id)
    return [HistoryRow(**entry.to_wire()) for entry in state.store_history(args.job_id)]


# -- pilots ------------------------------------------------------------------------------------


def _check_request(pilot_id: str, resources: PilotResources, asks: bool = True) -> None:
    """The pilot's name and site; its cores too when it ``asks`` for jobs."""
    check_name("pilot id", pilot_id)
    check_name("site", resources.site)
    if not asks:
        return
    if resources.cores < 1:
        raise InvalidArgument("resources.cores must be at least 1")
    if resources.total_cores and resources.total_cores < resources.cores:
        raise InvalidArgument("resources.total_cores must not be below resources.cores")


def request_job(state: CentralState, args: RequestJobArgs, now: float) -> RequestJobReply:
    _check_request(args.pilot_id, args.resources)
    job = state.request_job(args.pilot_id, args.resources, now, args.credential)
    commands = state.pilot_commands(args.pilot_id)
    if job is None:
        reason = ("this pilot was killed by an admin" if commands else "") or state.why_not(
            args.resources, now
        )
        hold = None if reason else state.book.hold_of(args.pilot_id)
        if hold is not None:  # only a pilot that said its total cores is ever held
            return RequestJobReply(
                job=None,
                commands=commands,
                reason=f"hold {hold.cores} cores for a job of group {hold.group}",
                hold=CoreHold(hold.cores, round(hold.expires - now, 3), hold.group),
            )
        return RequestJobReply(
            job=None,
            reason=reason or "no waiting job fits this pilot",
            commands=commands,
            drain=args.resources.understands_drain and state.sites.draining(args.resources.site),
        )
    matched = MatchedJob(
        job_id=job.job_id,
        attempt=job.attempt,
        owner=job.owner,
        group=job.group,
        cores=state.book.cores(job),
        description=state.store_description(job.job_id),
        # only to a pilot that reads it: an older one's checker refuses the key
        lease=state.config.jobs.stalled_timeout if args.revision >= LEASE_REVISION else 0.0,
        inline_output_bytes=inline_output_bound(state) if args.revision >= INLINE_REVISION else 0,
    )
    return RequestJobReply(job=matched, reason="", commands=commands)


def request_jobs(state: CentralState, args: RequestJobsArgs, now: float) -> RequestJobsReply:
    """Up to ``count`` matches for the pilot's free cores (and memory), one after the other as
    ``request_job`` makes them; the hold and the reason only when none came."""
    if not 1 <= args.count <= MAX_JOBS_PER_REQUEST:
        raise InvalidArgument(f"count must be 1 to {MAX_JOBS_PER_REQUEST}, got {args.count}")
    resources = args.resources
    jobs: list[MatchedJob] = []
    commands: list[PilotCommand] = []
    while len(jobs) < args.count and resources.cores >= 1:
        one = RequestJobArgs(args.pilot_id, resources, args.credential, args.revision)
        reply = request_job(state, one, now)
        commands.extend(command for command in reply.commands if command not in commands)
        if reply.job is None:
            if jobs:
                break
            return RequestJobsReply([], reply.reason, commands, reply.hold, reply.drain)
        jobs.append(reply.job)
        resources = dataclasses.replace(
            resources,
            cores=resources.cores - reply.job.cores,
            memory_mb=_memory_left(resources.memory_mb, reply.job.description),
        )
    return RequestJobsReply(jobs, "", commands)


def _memory_left(memory_mb: int, description: dict[str, Any]) -> int:
    """The pilot's free memory once this job has its MaxRAM (0: unknown stays unknown)."""
    if not memory_mb:
        return 0
    return max(1, memory_mb - int(description.get("MaxRAM") or 0))


def eligible(state: CentralState, args: EligibleArgs, now: float) -> EligibleReply:
    """How many waiting jobs a pilot with these resources could run (a director's sizing)."""
    check_name("site", args.resources.site)
    state.grid.sized(args.resources, now)  # the CE is known (job why)
    matchable = state.matchable(args.resources, now)
    count = 0 if matchable is None else state.book.matcher.count_eligible(matchable)
    return EligibleReply(eligible=count, reason=state.why_not(args.resources, now))


def update_status(state: CentralState, args: UpdateStatusArgs, now: float) -> CommandsReply:
    new = parse_status(args.status)
    job = state.book.reported_job(args.job_id, args.attempt, args.pilot_id, new)
    if new not in PILOT_REPORTABLE:
        raise InvalidArgument(f"a pilot cannot report status {new.value}")
    if args.output_data and not args.output_sandbox:
        raise InvalidArgument("an inlined output sandbox comes with its sha256 (output_sandbox)")
    if job.status in FINAL_STATUSES:
        _check_repeated_final(state, job, new, args.output_sandbox)
        return CommandsReply([])  # the same final report again: nothing changes
    if new is not job.status:
        check_transition(job.job_id, job.status, new)
    if args.usage is not None:
        if new not in FINAL_STATUSES:
            raise InvalidArgument("usage comes with the job's final status")
        check_usage(args.usage)
    if new is S.RESCHEDULED:
        if args.output_sandbox:
            raise InvalidArgument("a job handed back has no output sandbox")
        state.book.reschedule(
            job,
            args.minor_status[:256] or "Handed back by its pilot",
            f"pilot {args.pilot_id}",
            now,
        )
        return CommandsReply([])  # the pilot no longer holds it
    if args.output_sandbox:
        _take_output(state, job, new, args)
    state.book.report(
        job,
        new,
        args.minor_status[:256],
        args.application_status[:256],
        f"pilot {args.pilot_id}",
        now,
        args.usage,
        args.pilot_id,
    )
    if new in FINAL_STATUSES:
        return CommandsReply([])  # the pilot is done with it: nothing left to tell
    return CommandsReply(state.pending_commands(job))


def _take_output(
    state: CentralState, job: JobRecord, new: JobStatus, args: UpdateStatusArgs
) -> None:
    """The job's final report names its output sandbox: uploaded by this pilot, or inlined in
    the report (stored here as an upload is, before anything of the report is applied)."""
    if new not in FINAL_STATUSES:
        raise InvalidArgument("an output sandbox comes with the job's final status")
    pilot = state.pilots.pilots.get(args.pilot_id)
    uploader = (pilot.credential if pilot else "") if state.secure else None
    if args.output_data:
        keep_inline_output(state, args.output_sandbox, args.output_data, uploader)
    state.sandbox_index.check(args.output_sandbox, "output", uploader)
    state.sandbox_index.attach(job.job_id, "output", args.output_sandbox)
    state.sandbox_index.grant(args.output_sandbox, job.owner)


def update_statuses(state: CentralState, args: UpdateStatusesArgs, now: float) -> ReportOutcomes:
    """Each report as ``update_status`` applies it; a refused one is said in its outcome and
    leaves the others applied (they share the request's one durable commit)."""
    if not 1 <= len(args.reports) <= MAX_REPORTS_PER_REQUEST:
        raise InvalidArgument(f"1 to {MAX_REPORTS_PER_REQUEST} reports per request")
    if any(report.pilot_id != args.pilot_id for report in args.reports):
        raise InvalidArgument(f"every report must be of pilot {args.pilot_id}")
    _check_inlined(args.reports)
    return ReportOutcomes(_apply_reports(state, args.reports, now))


def _check_inlined(reports: list[UpdateStatusArgs]) -> None:
    """At most ``MAX_INLINE_BYTES_PER_REQUEST`` of output sandboxes inlined in one request."""
    inlined = sum(len(report.output_data) for report in reports)
    if inlined > MAX_INLINE_BYTES_PER_REQUEST:
        raise InvalidArgument(
            f"{inlined} bytes of output sandboxes inlined in one request: at most "
            f"{MAX_INLINE_BYTES_PER_REQUEST} (send the rest in another)"
        )


def _apply_reports(
    state: CentralState, reports: list[UpdateStatusArgs], now: float
) -> list[ReportOutcome]:
    outcomes = []
    for report in reports:
        try:
            outcomes.append(ReportOutcome(update_status(state, report, now).commands))
        except DiracLikeError as exc:
            outcomes.append(ReportOutcome([], ErrorInfo(exc.code, exc.message, exc.retryable)))
    return outcomes


def pilot_turn(state: CentralState, args: PilotTurnArgs, now: float) -> PilotTurnReply:
    """A pilot's reports, then its request (see :class:`PilotTurnArgs`): each job matched is
    reported Running for the pilot at once, so it is Running in the same commit as its match
    (its lease is the payload's, ``stalled_timeout``, not ``match_lease``) and the pilot may
    start it when the reply comes. Everything is checked before anything changes."""
    if not 0 <= args.count <= MAX_JOBS_PER_REQUEST:
        raise InvalidArgument(f"count must be 0 to {MAX_JOBS_PER_REQUEST}, got {args.count}")
    if len(args.reports) > MAX_REPORTS_PER_REQUEST:
        raise InvalidArgument(f"at most {MAX_REPORTS_PER_REQUEST} reports per turn")
    if not args.reports and not args.count:
        raise InvalidArgument("a turn with no report and no job asked for")
    if any(report.pilot_id != args.pilot_id for report in args.reports):
        raise InvalidArgument(f"every report must be of pilot {args.pilot_id}")
    _check_inlined(args.reports)
    _check_request(args.pilot_id, args.resources, asks=args.count > 0)
    outcomes = _apply_reports(state, args.reports, now)
    if not args.count:
        return PilotTurnReply(outcomes, [], "", state.pilot_commands(args.pilot_id))
    asked = RequestJobsArgs(
        args.pilot_id, args.resources, args.count, args.credential, args.revision
    )
    matched = request_jobs(state, asked, now)
    commands = list(matched.commands)
    for job in matched.jobs:
        running = UpdateStatusArgs(
            job.job_id, job.attempt, args.pilot_id, S.RUNNING.value, RUNNING_AT_MATCH
        )
        for command in update_status(state, running, now).commands:
            if command not in commands:
                commands.append(command)
    return PilotTurnReply(
        outcomes, matched.jobs, matched.reason, commands, matched.hold, matched.drain
    )


def _check_repeated_final(
    state: CentralState, job: JobRecord, new: JobStatus, output_sandbox: str
) -> None:
    """Final states are final: a report on a final job is the same report again (same status,
    same output sandbox: an idempotent no-op), or it is refused."""
    attached = state.sandbox_index.of(job.job_id, "output") or ""
    if new is not job.status or output_sandbox != attached:
        raise IllegalTransition(
            f"job {job.job_id} is {job.status.value} (final"
            f"{', output SB:' + attached[:12] if attached else ', no output sandbox'}): a report "
            f"of {new.value}{' with output SB:' + output_sandbox[:12] if output_sandbox else ''}"
            " would change it"
        )


def heartbeat(state: CentralState, args: HeartbeatArgs, now: float) -> CommandsReply:
    job = state.book.job(args.job_id)
    state.pilots.seen(args.pilot_id, now)
    if job.attempt != args.attempt or job.pilot_id != args.pilot_id:
        # The job was taken away from this pilot (rescheduled, killed): it must stop it.
        return CommandsReply([KillJob(job.job_id)])
    state.book.heartbeat(job, f"pilot {args.pilot_id}", now, args.metrics)
    if args.stdout_tail:
        state.stdout_tails.keep(job.job_id, args.stdout_tail)
    return CommandsReply(state.pending_commands(job))


# -- admin -------------------------------------------------------------------------------------


def sites(state: CentralState, args: NoArgs, now: float) -> list[SiteRow]:
    rows = []
    for name in sorted(state.sites.seen):
        status = state.monitor.status(TargetKind.SITE, name)
        record = state.sites.records.get(name)
        rows.append(
            SiteRow(
                site=name,
                status=(
                    "Draining"
                    if record and record.drained and not record.banned
                    else status.status.value
                ),
                reason=status.reason,
                active_jobs=state.book.site_active[name],
                max_running=state.sites.max_running(name),
            )
        )
    return rows


def ban_site(state: CentralState, args: BanSiteArgs, now: float) -> SiteReply:
    check_name("site", args.site)
    if not args.reason.strip():
        raise InvalidArgument("a ban needs a reason")
    return _set_site(
        state,
        state.sites.change(args.site, now, banned=True, reason=args.reason[:256], automatic=False),
    )


def unban_site(state: CentralState, args: SiteArgs, now: float) -> SiteReply:
    check_name("site", args.site)
    return _set_site(
        state, state.sites.change(args.site, now, banned=False, reason="", automatic=False)
    )


def _set_site(state: CentralState, record: SiteRecord) -> SiteReply:
    state.sites.set(record)
    state.monitor.operator_changed_site(record.name, record.changed)
    return SiteReply(site=record.name, banned=record.banned, reason=record.reason)


def task_queues(state: CentralState, args: NoArgs, now: float) -> list[TaskQueueRow]:
    rows = []
    for task_queue in state.book.matcher.unique_task_queues():
        top = task_queue.peek()
        rows.append(
            TaskQueueRow(
                task_queue_id=task_queue.task_queue_id,
                owner=task_queue.owner,
                group=task_queue.group,
                requirements=task_queue.requirements.to_wire(),
                waiting=len(task_queue),
                top_priority=-top[0] if top else None,
            )
        )
    return sorted(rows, key=lambda row: row.task_queue_id)


def shares(state: CentralState, args: NoArgs, now: float) -> list[ShareRow]:
    return [ShareRow(**row) for row in state.shares.report(now)]  # type: ignore[arg-type]


def set_share(state: CentralState, args: SetShareArgs, now: float) -> SetShareReply:
    check_name("group", args.group)
    if not 0 < args.share < 1e9:
        raise InvalidArgument("share must be a positive number")
    state.shares.set_group_share(args.group, args.share)
    state.journal.changes.shares[args.group] = args.share
    return SetShareReply(group=args.group, share=args.share)


HANDLERS: dict[str, Handler] = {
    Op.PING: ping,
    Op.SUBMIT: submit,
    Op.STATUS: status,
    Op.LIST_JOBS: list_jobs,
    Op.KILL: kill,
    Op.RESCHEDULE: reschedule,
    Op.HISTORY: history,
    Op.REQUEST_JOB: request_job,
    Op.REQUEST_JOBS: request_jobs,
    Op.ELIGIBLE: eligible,
    Op.UPDATE_STATUS: update_status,
    Op.UPDATE_STATUSES: update_statuses,
    Op.PILOT_TURN: pilot_turn,
    Op.HEARTBEAT: heartbeat,
    Op.SITES: sites,
    Op.BAN_SITE: ban_site,
    Op.UNBAN_SITE: unban_site,
    Op.TASK_QUEUES: task_queues,
    Op.SHARES: shares,
    Op.SET_SHARE: set_share,
    **PILOT_HANDLERS,
    **SANDBOX_HANDLERS,
    **IDENTITY_HANDLERS,
    **DATA_HANDLERS,
    **JOB_HANDLERS,
    **MONITOR_HANDLERS,
    **STATUS_HANDLERS,
}
# What a bulk action does to one job: the same handler as for one job named by id.
BULK_ACTIONS: dict[str, Handler] = {
    "kill": kill,
    "reschedule": reschedule,
    "delete": JOB_HANDLERS[Op.DELETE],
}
HANDLERS.update(console_handlers(BULK_ACTIONS))


def run_bulk_batch(state: CentralState, now: float, served: int = 0) -> int:
    """One batch of the oldest bulk action in progress (the service loop calls this after
    serving ``served`` requests: the busier, the smaller the batch)."""
    return bulk_batch(state, BULK_ACTIONS, now, bulk_batch_size(state, served))


def run_background(state: CentralState, now: float, served: int = 0) -> int:
    """One piece of background work: the next slice of a big submission in progress, else a
    batch of a bulk action; how many jobs it made or acted on."""
    return state.expand_slice(now) or run_bulk_batch(state, now, served)
