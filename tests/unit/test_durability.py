"""What a batch must commit now and what may wait (services/durability.py), the journal that
keeps what waits, and the lease a heartbeat renews without a write."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from dirac_like.model import ChangeSet
from dirac_like.services.durability import MAX_WAIT_SECONDS, commit_due
from dirac_like.services.journal import Journal


def sample(time: float, job_id: int = 1) -> tuple[int, int, float, float, float]:
    return (job_id, 1, time, 2.0, 100.0)


def something(field: dataclasses.Field[Any]) -> Any:
    """A non-empty value for a ChangeSet field, whatever its type."""
    default = field.default_factory() if callable(field.default_factory) else field.default
    if isinstance(default, list):
        return [object()]
    if isinstance(default, dict):
        return {"key": object()}
    return 1.0  # Optional fields: anything but None


def test_an_empty_change_set_is_not_committed() -> None:
    assert not commit_due(ChangeSet(), now=100.0)


def test_young_usage_samples_wait_for_a_later_commit() -> None:
    changes = ChangeSet(usage_samples=[sample(95.0), sample(99.0, job_id=2)])
    assert not commit_due(changes, now=100.0)


def test_usage_samples_wait_no_longer_than_the_bound() -> None:
    changes = ChangeSet(usage_samples=[sample(100.0 - MAX_WAIT_SECONDS), sample(99.0)])
    assert commit_due(changes, now=100.0)


def test_too_many_usage_samples_are_committed_young() -> None:
    changes = ChangeSet(usage_samples=[sample(99.0, job_id=n) for n in range(3)])
    assert not commit_due(changes, now=100.0, max_waiting=4)
    assert commit_due(changes, now=100.0, max_waiting=3)


@pytest.mark.parametrize(
    "field",
    [f for f in dataclasses.fields(ChangeSet) if f.name != "usage_samples"],
    ids=lambda f: f.name,
)
def test_every_other_change_is_committed_at_once(field: dataclasses.Field[Any]) -> None:
    """A job's status, a match, a remembered reply, a pilot record...: each a promise made by
    the batch's replies, written before they go (with young samples or without)."""
    alone = ChangeSet(**{field.name: something(field)})
    assert commit_due(alone, now=100.0)
    with_samples = ChangeSet(**{field.name: something(field)}, usage_samples=[sample(99.0)])
    assert commit_due(with_samples, now=100.0)
    assert not alone.is_empty()


def test_changes_put_back_are_taken_again_with_the_next_batchs() -> None:
    journal = Journal()
    journal.changes.usage_samples.append(sample(1.0))
    first = journal.take()
    journal.put_back(first)
    assert journal.in_flight == []  # nothing in flight: the store was not asked
    journal.changes.usage_samples.append(sample(2.0))
    journal.changes.changed_jobs[7] = object()  # type: ignore[assignment]
    taken = journal.take()
    assert taken.usage_samples == [sample(1.0), sample(2.0)]
    assert list(taken.changed_jobs) == [7]
    assert journal.changes.is_empty() and journal.changes is not taken


def test_the_change_set_put_back_is_the_one_taken_not_an_equal_one_in_flight() -> None:
    """A set being synced and the set put back may be equal (both empty): the one put back
    leaves the in-flight list, the one being synced stays in it until committed."""
    journal = Journal()
    syncing = journal.take()
    taken = journal.take()
    assert syncing == taken and syncing is not taken
    journal.put_back(taken)
    assert len(journal.in_flight) == 1 and journal.in_flight[0] is syncing
    journal.committed(syncing)
    assert journal.in_flight == []


def test_a_heartbeat_writes_nothing_and_a_restart_gives_a_full_window_from_then() -> None:
    """The lease rule without a write: heartbeats renew the lease in memory only; the job as
    stored (its last write: Running at 5) restored at 130 gets a window from 130, later than
    the one the last heartbeat (at 90) was given, and the stall rule then takes the job."""
    from test_job_book import CONFIG, matched, new_book

    from dirac_like.states import JobStatus

    book = new_book()
    job = matched(book)
    book.report(job, JobStatus.RUNNING, "", "", "pilot p1", 5.0)
    stored = dataclasses.replace(job)  # the row as the batch's commit wrote it
    book.journal.take()
    for now in (84.0, 87.0, 90.0):
        book.heartbeat(job, "pilot p1", now, {"cpu_seconds": now})
    assert job.deadline == 90.0 + CONFIG.stalled_timeout
    beats = book.journal.take()
    assert len(beats.usage_samples) == 3 and beats.nothing_but_usage_samples()
    assert not commit_due(beats, now=90.0)  # samples alone, young: nothing to write
    restarted = new_book()
    restarted.restore(list(book.task_queue_rows.values()), [stored], now=130.0)
    again = restarted.jobs[job.job_id]
    assert restarted.expire(130.0 + CONFIG.stalled_timeout - 1) == 0
    assert again.status is JobStatus.RUNNING
    restarted.expire(130.0 + CONFIG.stalled_timeout)
    assert again.status is JobStatus.STALLED
    restarted.expire(130.0 + CONFIG.stalled_timeout + CONFIG.stalled_to_reschedule)
    assert again.status is JobStatus.RESCHEDULED
