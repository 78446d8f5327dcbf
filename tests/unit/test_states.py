"""The job state machine's transition table."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dirac_like.errors import IllegalTransition, InvalidArgument
from dirac_like.states import (
    FINAL_STATUSES,
    TRANSITIONS,
    JobStatus,
    check_transition,
    parse_status,
)


def test_every_status_has_a_row() -> None:
    assert set(TRANSITIONS) == set(JobStatus)


def test_deleted_is_terminal() -> None:
    assert TRANSITIONS[JobStatus.DELETED] == frozenset()


def test_final_jobs_only_go_to_rescheduled_or_deleted() -> None:
    for status in FINAL_STATUSES - {JobStatus.DELETED}:
        assert TRANSITIONS[status] == {JobStatus.RESCHEDULED, JobStatus.DELETED}


def test_every_status_is_reachable_from_received() -> None:
    seen, todo = {JobStatus.RECEIVED}, [JobStatus.RECEIVED]
    while todo:
        for nxt in TRANSITIONS[todo.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    assert seen == set(JobStatus)


@given(st.sampled_from(list(JobStatus)), st.sampled_from(list(JobStatus)))
def test_check_transition_agrees_with_the_table(old: JobStatus, new: JobStatus) -> None:
    if new in TRANSITIONS[old]:
        check_transition(1, old, new)
    else:
        with pytest.raises(IllegalTransition, match=f"from {old.value} to {new.value}"):
            check_transition(1, old, new)


def test_parse_status_is_case_insensitive_and_refuses_unknown() -> None:
    assert parse_status("running") is JobStatus.RUNNING
    with pytest.raises(InvalidArgument, match="unknown job status"):
        parse_status("Sleeping")
