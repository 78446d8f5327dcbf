"""Deadlines: due jobs in deadline order; stale entries dropped, pushed-back ones filed again."""

from __future__ import annotations

from dirac_like.model import JobRecord
from dirac_like.services.deadlines import Deadlines
from dirac_like.states import JobStatus

S = JobStatus


def job(job_id: int, status: JobStatus, deadline: float) -> JobRecord:
    return JobRecord(job_id, "alice", "users", 1, 0, status, deadline=deadline)


def test_due_jobs_come_in_deadline_order_and_only_once_passed() -> None:
    deadlines = Deadlines()
    jobs = {1: job(1, S.MATCHED, 30.0), 2: job(2, S.RUNNING, 10.0), 3: job(3, S.STALLED, 50.0)}
    for record in jobs.values():
        deadlines.arm(record)
    assert deadlines.next() == 10.0
    assert [j.job_id for j in deadlines.due(30.0, jobs)] == [2, 1]
    assert deadlines.next() == 50.0
    assert list(deadlines.due(49.0, jobs)) == []


def test_untimed_statuses_are_not_filed() -> None:
    deadlines = Deadlines()
    deadlines.arm(job(1, S.WAITING, 5.0))
    deadlines.arm(job(2, S.DONE, 5.0))
    assert len(deadlines) == 0 and deadlines.next() is None


def test_a_job_that_moved_on_or_was_forgotten_is_not_due() -> None:
    deadlines = Deadlines()
    moved, retried = job(1, S.MATCHED, 5.0), job(2, S.MATCHED, 5.0)
    for record in (moved, retried, job(3, S.MATCHED, 5.0)):
        deadlines.arm(record)
    moved.status = S.RUNNING
    retried.attempt = 2
    assert list(deadlines.due(10.0, {1: moved, 2: retried})) == []
    assert len(deadlines) == 0


def test_a_deadline_pushed_back_is_filed_again() -> None:
    deadlines = Deadlines()
    running = job(1, S.RUNNING, 10.0)
    deadlines.arm(running)
    running.deadline = 40.0  # a heartbeat
    assert list(deadlines.due(20.0, {1: running})) == []
    assert deadlines.next() == 40.0
    assert list(deadlines.due(40.0, {1: running})) == [running]
