"""The job state machine (DIRAC's statuses, the one table of allowed transitions) and the pilot
states."""

from __future__ import annotations

from enum import StrEnum

from dirac_like.errors import IllegalTransition, InvalidArgument


class JobStatus(StrEnum):
    RECEIVED = "Received"
    CHECKING = "Checking"
    WAITING = "Waiting"
    MATCHED = "Matched"
    RUNNING = "Running"
    COMPLETING = "Completing"
    DONE = "Done"
    FAILED = "Failed"
    KILLED = "Killed"
    STALLED = "Stalled"
    RESCHEDULED = "Rescheduled"
    DELETED = "Deleted"

    def __str__(self) -> str:
        return self.value


S = JobStatus

# The only place that says which status may follow which.
TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    S.RECEIVED: frozenset({S.CHECKING, S.FAILED, S.KILLED, S.DELETED}),
    S.CHECKING: frozenset({S.WAITING, S.FAILED, S.KILLED, S.DELETED}),
    # Waiting, Rescheduled -> Done: the late Done of an attempt the stall rule took away while its
    # payload had ended, no later attempt matched yet (services/job_book.py, reported_job).
    S.WAITING: frozenset({S.MATCHED, S.DONE, S.FAILED, S.KILLED, S.DELETED}),
    # Matched -> Waiting: the match lease expired before the pilot started the job.
    S.MATCHED: frozenset({S.RUNNING, S.WAITING, S.STALLED, S.RESCHEDULED, S.FAILED, S.KILLED}),
    S.RUNNING: frozenset({S.COMPLETING, S.DONE, S.FAILED, S.KILLED, S.STALLED, S.RESCHEDULED}),
    S.COMPLETING: frozenset({S.DONE, S.FAILED, S.KILLED, S.STALLED, S.RESCHEDULED}),
    # Stalled -> Running: the pilot's heartbeats came back.
    S.STALLED: frozenset({S.RUNNING, S.COMPLETING, S.DONE, S.FAILED, S.KILLED, S.RESCHEDULED}),
    S.RESCHEDULED: frozenset({S.WAITING, S.DONE, S.FAILED, S.KILLED, S.DELETED}),
    S.DONE: frozenset({S.RESCHEDULED, S.DELETED}),
    S.FAILED: frozenset({S.RESCHEDULED, S.DELETED}),
    S.KILLED: frozenset({S.RESCHEDULED, S.DELETED}),
    S.DELETED: frozenset(),
}

FINAL_STATUSES = frozenset({S.DONE, S.FAILED, S.KILLED, S.DELETED})
# Statuses in which a pilot holds the job (it uses cores at a site).
ACTIVE_STATUSES = frozenset({S.MATCHED, S.RUNNING, S.COMPLETING, S.STALLED})
# What a pilot may report with update_status.
# Rescheduled: a pilot stopped by its batch system (or an admin) hands its jobs back.
PILOT_REPORTABLE = frozenset({S.RUNNING, S.COMPLETING, S.DONE, S.FAILED, S.KILLED, S.RESCHEDULED})


_BY_NAME = {status.value.lower(): status for status in JobStatus}


def parse_status(name: str) -> JobStatus:
    """The status called ``name`` (case-insensitive), or InvalidArgument."""
    status = _BY_NAME.get(name.lower())
    if status is not None:
        return status
    known = ", ".join(s.value for s in JobStatus)
    raise InvalidArgument(f"unknown job status {name[:40]!r} (known: {known})")


def can_move(old: JobStatus, new: JobStatus) -> bool:
    return new in TRANSITIONS[old]


def check_transition(job_id: int, old: JobStatus, new: JobStatus) -> None:
    if new not in TRANSITIONS[old]:
        raise IllegalTransition(f"job {job_id}: cannot go from {old.value} to {new.value}")


class PilotState(StrEnum):
    """Pilot states as the central service records them (DIRAC's names)."""

    SUBMITTED = "Submitted"  # handed to the fabric, not seen in its queue yet
    WAITING = "Waiting"  # queued in the batch system
    RUNNING = "Running"
    DONE = "Done"  # ended with exit code 0
    FAILED = "Failed"  # ended with another exit code, or killed by something else than cancel
    ABORTED = "Aborted"  # cancelled, or lost by the fabric

    def __str__(self) -> str:
        return self.value

    @property
    def final(self) -> bool:
        return self in (PilotState.DONE, PilotState.FAILED, PilotState.ABORTED)


LIVE_PILOT_STATES = frozenset(state for state in PilotState if not state.final)


def parse_pilot_state(name: str) -> PilotState:
    """The pilot state called ``name`` (case-insensitive), or InvalidArgument."""
    for state in PilotState:
        if state.value.lower() == name.lower():
            return state
    known = ", ".join(s.value for s in PilotState)
    raise InvalidArgument(f"unknown pilot state {name[:40]!r} (known: {known})")
