"""The job snapshot's codec (dirac_like/store/job_snapshot.py): what it encodes decodes to equal
records, and every damaged or hostile snapshot is refused as a whole (SnapshotUnusable), never
turned into a wrong record."""

from __future__ import annotations

import hashlib
from dataclasses import astuple
from typing import Any

import msgpack
import pytest

from dirac_like.matching import TaskQueue
from dirac_like.model import JobRecord, Requirements
from dirac_like.states import JobStatus
from dirac_like.store import job_snapshot
from dirac_like.store.job_snapshot import (
    MAGIC,
    SnapshotStamp,
    SnapshotUnusable,
    decode,
    encode,
)

S = JobStatus
STAMP = SnapshotStamp(store_id=7, schema=10, history_id=123, history_mark=b"\x01" * 32)


def some_jobs(count: int = 40) -> list[JobRecord]:
    statuses = [S.WAITING, S.MATCHED, S.RUNNING, S.DONE, S.KILLED, S.RESCHEDULED]
    return [
        JobRecord(
            job_id=10 + 3 * n,
            owner=f"user{n % 3}",
            group="lhcb_mc" if n % 2 else "lhcb_user",
            task_queue_id=1 + n % 4,
            priority=n % 5,
            status=statuses[n % len(statuses)],
            minor_status="Pilot Agent Submission" if n % 2 else "Assigned to pilot p1",
            application_status="" if n % 3 else "step 2 of 3",
            site="ANY" if n % 2 else "LCG.CERN.cern",
            job_name=f"mc_{n}",
            pilot_id="" if n % 2 else f"pilot-{n}",
            attempt=1 + n % 2,
            reschedules=n % 2,
            submitted=1000.25 + n // 10,
            updated=1000.5 + n,
            matched_at=0.0 if n % 2 else 1001.75,
            deadline=0.0 if n % 2 else 5000.0 + n,
            heartbeat_at=0.0,
            kill_requested=n % 7 == 0,
        )
        for n in range(count)
    ]


def decoded(data: bytes) -> tuple[SnapshotStamp, list[JobRecord]]:
    stamp, count, records = decode(data)
    jobs = list(records)
    assert len(jobs) == count
    return stamp, jobs


def rewritten(data: bytes, change: Any) -> bytes:
    """The snapshot with its document changed by ``change`` and a digest that matches: what
    someone who meant harm could write."""
    document = msgpack.unpackb(data[len(MAGIC) + 32 :], raw=False)
    change(document)
    body = msgpack.packb(document, use_bin_type=True)
    return MAGIC + hashlib.sha256(body).digest() + body


def test_jobs_come_back_equal_with_their_stamp() -> None:
    jobs = some_jobs()
    stamp, back = decoded(encode(jobs, STAMP))
    assert stamp == STAMP
    assert [astuple(job) for job in back] == [astuple(job) for job in jobs]
    assert all(type(job.status) is JobStatus for job in back)
    assert all(type(job.submitted) is float for job in back)


def test_no_jobs_come_back_as_none() -> None:
    stamp, back = decoded(encode([], STAMP))
    assert (stamp, back) == (STAMP, [])


def test_columns_with_many_distinct_values_hold_the_values(monkeypatch: Any) -> None:
    monkeypatch.setattr(job_snapshot, "MAX_DISTINCT", 4)  # every column has more: raw arrays
    jobs = some_jobs()
    data = encode(jobs, STAMP)
    document = msgpack.unpackb(data[len(MAGIC) + 32 :], raw=False)
    columns = dict(zip(job_snapshot.FIELDS, document["columns"], strict=True))
    assert columns["updated"][:2] == [None, "d"] and columns["priority"][:2] == [None, "q"]
    assert len(columns["job_name"][0]) == len(jobs)  # strings: always codes into the values
    assert [astuple(job) for job in decoded(data)[1]] == [astuple(job) for job in jobs]


def test_a_snapshot_with_its_last_bytes_cut_is_refused() -> None:
    data = encode(some_jobs(), STAMP)
    for cut in (1, 100, len(data) - 40, len(data) - 1):
        with pytest.raises(SnapshotUnusable, match=r"digest|format"):
            decode(data[:-cut])


def test_a_snapshot_with_one_byte_changed_is_refused() -> None:
    data = bytearray(encode(some_jobs(), STAMP))
    data[len(data) // 2] ^= 0x40
    with pytest.raises(SnapshotUnusable, match="digest"):
        decode(bytes(data))


def test_other_bytes_are_refused() -> None:
    for data in (b"", b"SQLite format 3\x00" + bytes(100), MAGIC + bytes(32)):
        with pytest.raises(SnapshotUnusable):
            decode(data)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda d: d["columns"][5][0].__setitem__(0, "Sleeping"), "unknown status"),
        (lambda d: d["columns"][1].__setitem__(0, ["a", 3, "c"]), "not a string"),
        (lambda d: d["columns"][0].__setitem__(2, d["columns"][0][2][::-1]), "increasing"),
        (lambda d: d["columns"][2].__setitem__(0, ["only"]), "beyond its values"),
        (lambda d: d["columns"][3].__setitem__(2, b"\x00"), "another number of jobs"),
        (lambda d: d["columns"][13].__setitem__(0, ["1000", "x"]), "submitted"),
        (lambda d: d["columns"][18].__setitem__(0, [0, 1]), "not a bool"),
        (lambda d: d["columns"].pop(), "not one column a field"),
        (lambda d: d.__setitem__("count", -1), "another number of jobs|malformed"),
        (lambda d: d.__setitem__("byteorder", "middle"), "byte order"),
        (lambda d: d.__setitem__("history_id", "123"), "not an integer"),
        (lambda d: d.pop("store_id"), "KeyError"),
        (lambda d: d["columns"][4].__setitem__(1, "f"), "column priority"),
    ],
)
def test_a_hostile_snapshot_is_refused_as_a_whole(change: Any, message: str) -> None:
    with pytest.raises(SnapshotUnusable, match=message):
        decode(rewritten(encode(some_jobs(), STAMP), change))


def test_a_document_that_is_not_a_map_is_refused() -> None:
    body = msgpack.packb([1, 2, 3])
    with pytest.raises(SnapshotUnusable, match="not a map"):
        decode(MAGIC + hashlib.sha256(body).digest() + body)


def test_push_many_pops_in_the_order_pushing_one_by_one_does() -> None:
    jobs = [(job_id, (job_id * 7) % 5) for job_id in range(1, 60)]
    one_by_one = TaskQueue(1, "alice", "g", Requirements())
    in_bulk = TaskQueue(1, "alice", "g", Requirements())
    for job_id, priority in jobs:
        one_by_one.push(job_id, priority)
    in_bulk.push(3, 1)  # already there: pushed again in bulk, still once
    in_bulk.push_many([job_id for job_id, _ in jobs], [priority for _, priority in jobs])
    assert len(in_bulk) == len(one_by_one) == len(jobs)
    assert [in_bulk.pop() for _ in jobs] == [one_by_one.pop() for _ in jobs]
    assert in_bulk.peek() is None
