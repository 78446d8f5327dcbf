"""One handler per operation, and the table that dispatches to them.

A handler takes the state, its checked arguments (the frozen dataclass from the protocol module)
and ``now``; it returns its reply dataclass (``protocol.REPLIES``) or raises a DiracLikeError.
Handlers validate everything before changing anything, and change a job only through the job
book (``state.book``, services/job_book.py): its status through ``set_status``/``reschedule``,
the rest through ``request_kill``, ``report`` and ``heartbeat``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from dirac_like import __version__
from dirac_like.errors import IllegalTransition, InvalidArgument
from dirac_like.model import SiteRecord
from dirac_like.monitoring import TargetKind
from dirac_like.protocol import (
    PROTOCOL_VERSION,
    BanSiteArgs,
    CommandsReply,
    EligibleArgs,
    EligibleReply,
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
    PingReply,
    RequestJobArgs,
    RequestJobReply,
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
    build_trusted,
)
from dirac_like.states import (
    ACTIVE_STATUSES,
    FINAL_STATUSES,
    PILOT_REPORTABLE,
    JobStatus,
    check_transition,
    parse_status,
)

from .identities import IDENTITY_HANDLERS
from .job_handlers import JOB_HANDLERS
from .monitor_handlers import MONITOR_HANDLERS
from .pilot_handlers import PILOT_HANDLERS
from .sandbox_handlers import SANDBOX_HANDLERS
from .state import CentralState, check_name

S = JobStatus
Handler = Callable[[CentralState, Any, float], Any]
MAX_JOB_IDS = 100_000


def _check_job_ids(job_ids: list[int]) -> None:
    if not job_ids:
        raise InvalidArgument("no job ids given")
    if len(job_ids) > MAX_JOB_IDS:
        raise InvalidArgument(f"{len(job_ids)} job ids in one request (at most {MAX_JOB_IDS})")


# -- users -------------------------------------------------------------------------------------


def ping(state: CentralState, args: NoArgs, now: float) -> PingReply:
    return PingReply(service="central", version=__version__, protocol=PROTOCOL_VERSION,
                     time=time.time(), jobs=len(state.jobs))


def submit(state: CentralState, args: SubmitArgs, now: float) -> SubmitReply:
    if not args.descriptions:
        raise InvalidArgument("no job description given")
    group = args.group or state.config.jobs.default_group
    return SubmitReply(state.submit(args.descriptions, args.owner, group, now))


def status(state: CentralState, args: JobIdsArgs, now: float) -> list[JobSummary]:
    _check_job_ids(args.job_ids)
    jobs = state.book.jobs_by_ids(args.job_ids)
    return [build_trusted(JobSummary, job.summary()) for job in jobs]


def list_jobs(state: CentralState, args: ListJobsArgs, now: float) -> list[JobSummary]:
    wanted = parse_status(args.status) if args.status else None
    if args.limit < 1:
        raise InvalidArgument("limit must be at least 1")
    found = []
    for job in state.jobs.values():
        if (
            (wanted is None or job.status is wanted)
            and (args.site is None or job.site == args.site)
            and (args.owner is None or job.owner == args.owner)
            and (args.group is None or job.group == args.group)
        ):
            found.append(build_trusted(JobSummary, job.summary()))
            if len(found) >= args.limit:
                break
    return found


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


def request_job(state: CentralState, args: RequestJobArgs, now: float) -> RequestJobReply:
    check_name("pilot id", args.pilot_id)
    check_name("site", args.resources.site)
    if args.resources.cores < 1:
        raise InvalidArgument("resources.cores must be at least 1")
    job = state.request_job(args.pilot_id, args.resources, now)
    commands = state.pilot_commands(args.pilot_id)
    if job is None:
        reason = (("this pilot was killed by an admin" if commands else "")
                  or state.why_not(args.resources, now) or "no waiting job fits this pilot")
        return RequestJobReply(job=None, reason=reason, commands=commands)
    matched = MatchedJob(job_id=job.job_id, attempt=job.attempt, owner=job.owner,
                         group=job.group, cores=state.book.cores(job),
                         description=state.store_description(job.job_id))
    return RequestJobReply(job=matched, reason="", commands=commands)


def eligible(state: CentralState, args: EligibleArgs, now: float) -> EligibleReply:
    """How many waiting jobs a pilot with these resources could run (a director's sizing)."""
    check_name("site", args.resources.site)
    matchable = state.matchable(args.resources, now)
    count = 0 if matchable is None else state.book.matcher.count_eligible(matchable)
    return EligibleReply(eligible=count, reason=state.why_not(args.resources, now))


def update_status(state: CentralState, args: UpdateStatusArgs, now: float) -> CommandsReply:
    job = state.book.held_job(args.job_id, args.attempt, args.pilot_id)
    new = parse_status(args.status)
    if new not in PILOT_REPORTABLE:
        raise InvalidArgument(f"a pilot cannot report status {new.value}")
    if new is not job.status:
        check_transition(job.job_id, job.status, new)
    if new is S.RESCHEDULED:
        if args.output_sandbox:
            raise InvalidArgument("a job handed back has no output sandbox")
        state.book.reschedule(job, args.minor_status[:256] or "Handed back by its pilot",
                         f"pilot {args.pilot_id}", now)
        return CommandsReply([])  # the pilot no longer holds it
    if args.output_sandbox:
        if new not in FINAL_STATUSES:
            raise InvalidArgument("an output sandbox comes with the job's final status")
        state.sandbox_index.check(args.output_sandbox, "output")
        state.sandbox_index.attach(job.job_id, "output", args.output_sandbox)
    state.book.report(job, new, args.minor_status[:256], args.application_status[:256],
                      f"pilot {args.pilot_id}", now)
    if new in FINAL_STATUSES:
        return CommandsReply([])  # the pilot is done with it: nothing left to tell
    return CommandsReply(state.pending_commands(job))


def heartbeat(state: CentralState, args: HeartbeatArgs, now: float) -> CommandsReply:
    job = state.book.job(args.job_id)
    state.pilots.seen(args.pilot_id, now)
    if job.attempt != args.attempt or job.pilot_id != args.pilot_id:
        # The job was taken away from this pilot (rescheduled, killed): it must stop it.
        return CommandsReply([KillJob(job.job_id)])
    state.book.heartbeat(job, f"pilot {args.pilot_id}", now)
    if args.stdout_tail:
        state.stdout_tails.keep(job.job_id, args.stdout_tail)
    return CommandsReply(state.pending_commands(job))


# -- admin -------------------------------------------------------------------------------------


def sites(state: CentralState, args: NoArgs, now: float) -> list[SiteRow]:
    rows = []
    for name in sorted(state.sites.seen):
        status = state.monitor.status(TargetKind.SITE, name)
        rows.append(SiteRow(
            site=name,
            status=status.status.value,
            reason=status.reason,
            active_jobs=state.book.site_active[name],
            max_running=state.sites.max_running(name),
        ))
    return rows


def ban_site(state: CentralState, args: BanSiteArgs, now: float) -> SiteReply:
    check_name("site", args.site)
    if not args.reason.strip():
        raise InvalidArgument("a ban needs a reason")
    return _set_site(state, SiteRecord(args.site, True, args.reason[:256], now))


def unban_site(state: CentralState, args: SiteArgs, now: float) -> SiteReply:
    check_name("site", args.site)
    return _set_site(state, SiteRecord(args.site, False, "", now))


def _set_site(state: CentralState, record: SiteRecord) -> SiteReply:
    state.sites.set(record)
    state.monitor.operator_changed_site(record.name, record.changed)
    return SiteReply(site=record.name, banned=record.banned, reason=record.reason)


def task_queues(state: CentralState, args: NoArgs, now: float) -> list[TaskQueueRow]:
    rows = []
    for task_queue in state.book.matcher.unique_task_queues():
        top = task_queue.peek()
        rows.append(TaskQueueRow(
            task_queue_id=task_queue.task_queue_id,
            owner=task_queue.owner,
            group=task_queue.group,
            requirements=task_queue.requirements.to_wire(),
            waiting=len(task_queue),
            top_priority=-top[0] if top else None,
        ))
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
    Op.ELIGIBLE: eligible,
    Op.UPDATE_STATUS: update_status,
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
    **JOB_HANDLERS,
    **MONITOR_HANDLERS,
}
