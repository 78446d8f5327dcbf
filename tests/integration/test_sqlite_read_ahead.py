"""The SQLite store's read-ahead of job descriptions (a match reads one per job): bounded, and
never a wrong description, on a real SQLite file."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import msgpack
import pytest

from dirac_like.errors import JobNotFound
from dirac_like.model import ChangeSet, JobRecord
from dirac_like.states import JobStatus
from dirac_like.store import sqlite as sqlite_store
from dirac_like.store.sqlite import SqliteStore


def jobs(*job_ids: int) -> ChangeSet:
    return ChangeSet(
        new_jobs=[
            (
                JobRecord(job_id, "alice", "lhcb_user", 1, 1, JobStatus.WAITING),
                msgpack.packb({"Arguments": str(job_id)}),
            )
            for job_id in job_ids
        ]
    )


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SqliteStore]:
    monkeypatch.setattr(sqlite_store, "DESCRIPTIONS_READ_AHEAD", 4)
    monkeypatch.setattr(sqlite_store, "DESCRIPTIONS_KEPT", 6)
    opened = SqliteStore(tmp_path / "jobs.sqlite")
    yield opened
    opened.close()


def test_the_descriptions_kept_ahead_are_bounded(store: SqliteStore) -> None:
    store.commit(jobs(*range(1, 21)))

    read = [store.description(job_id)["Arguments"] for job_id in (1, 5, 9, 13, 17)]

    assert read == ["1", "5", "9", "13", "17"]
    assert len(store._descriptions) == 6  # 3 read ahead each time, the oldest dropped


def test_a_description_read_ahead_is_read_from_memory_once_then_from_the_file(
    store: SqliteStore,
) -> None:
    store.commit(jobs(1, 2, 3))
    assert store.description(1) == {"Arguments": "1"}
    assert set(store._descriptions) == {2, 3}

    assert store.description(2) == {"Arguments": "2"}
    assert 2 not in store._descriptions  # a match reads a job's description once
    assert store.description(2) == {"Arguments": "2"}  # again: from the file


def test_an_unknown_job_after_the_read_ahead_is_still_not_found(store: SqliteStore) -> None:
    store.commit(jobs(1, 2))
    store.description(1)

    with pytest.raises(JobNotFound, match="job 3 not found"):
        store.description(3)
