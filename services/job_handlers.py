"""Handlers of the job commands DIRAC users know beyond submit/status/kill: a job's stored
description (``dirac-wms-job-get-jdl``), delete (``dirac-wms-job-delete``) and peek
(``dirac-wms-job-peek``: the last lines of stdout its pilot sent with its latest heartbeat)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dirac_like.errors import IllegalTransition, InvalidArgument
from dirac_like.protocol import (
    MAX_JOB_IDS,
    DeleteReply,
    JobDescriptionReply,
    JobIdArgs,
    JobIdsArgs,
    Op,
    PeekReply,
)
from dirac_like.states import ACTIVE_STATUSES, JobStatus, check_transition

from .state import CentralState


def job_description(state: CentralState, args: JobIdArgs, now: float) -> JobDescriptionReply:
    """The job's description as stored at submission (parametric values expanded)."""
    state.book.job(args.job_id)
    return JobDescriptionReply(state.store_description(args.job_id))


def delete(state: CentralState, args: JobIdsArgs, now: float) -> DeleteReply:
    """Mark jobs Deleted; all or none (a job a pilot holds must be killed first)."""
    if not args.job_ids or len(args.job_ids) > MAX_JOB_IDS:
        raise InvalidArgument(f"give between 1 and {MAX_JOB_IDS} job ids")
    jobs = state.book.jobs_by_ids(args.job_ids)
    for job in jobs:
        if job.status in ACTIVE_STATUSES:
            raise IllegalTransition(
                f"job {job.job_id} is {job.status.value}: kill it first "
                "(a job a pilot holds is not deleted)"
            )
        check_transition(job.job_id, job.status, JobStatus.DELETED)
    for job in jobs:
        state.book.set_status(job, JobStatus.DELETED, "Deleted by user", "user", now)
        state.stdout_tails.forget(job.job_id)
    return DeleteReply([job.job_id for job in jobs])


def peek(state: CentralState, args: JobIdArgs, now: float) -> PeekReply:
    """The last lines of the job's stdout its pilot sent, with the job's status."""
    job = state.book.job(args.job_id)
    return PeekReply(job.job_id, job.status.value, state.stdout_tails.latest(job.job_id))


JOB_HANDLERS: dict[str, Callable[[CentralState, Any, float], Any]] = {
    Op.JOB_DESCRIPTION: job_description,
    Op.DELETE: delete,
    Op.PEEK: peek,
}
