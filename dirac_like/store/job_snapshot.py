"""A compact snapshot of the jobs table, so that a restart need not read the whole table.

Reading 10M job rows back from SQLite at start-up costs minutes (docs/performance.md, issue 15
target 4b): the rows are scattered over a file that also holds every description and history
row, and each becomes a record through Python code. The snapshot holds the same records, column
by column, in one file read sequentially and decoded in bulk: each column is an ``array`` of
codes into the column's few distinct values (owners, groups, sites, task queues, times of a
slice...), or the values themselves when there are too many distinct ones.

This module is the codec alone, pure: :func:`encode` and :func:`decode`. The SQLite store writes
the file (at a clean shutdown of the service, atomically) and decides whether it may be used
(dirac_like/store/sqlite_snapshot.py): a snapshot is only ever a faster way to read what the
store holds; whatever doubt there is about it means the full read.

The file: ``MAGIC`` (8 bytes), the SHA-256 of the rest (32 bytes), then one msgpack map: the
:class:`SnapshotStamp` fields, ``byteorder``, ``count`` and ``columns`` (one per field of
:class:`~dirac_like.model.JobRecord`, in order: ``[values or None, typecode, codes]``).
:func:`decode` checks everything before it makes a record: the digest, every type, every code
within its values, job ids strictly increasing, statuses known; anything else is
:class:`SnapshotUnusable`, never a wrong record.
"""

from __future__ import annotations

import hashlib
import sys
from array import array
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, fields
from itertools import repeat
from operator import attrgetter, lt
from typing import Any

import msgpack

from dirac_like.model import JobRecord
from dirac_like.states import JobStatus

MAGIC = b"DLJOBS\x01\n"  # the format's version is its last byte but one
DIGEST_BYTES = 32
MAX_DISTINCT = 1 << 16  # more distinct values than this: the column holds the values themselves

FIELDS = tuple(f.name for f in fields(JobRecord))
STRING_FIELDS = frozenset(
    {"owner", "group", "minor_status", "application_status", "site", "job_name", "pilot_id"}
)
INT_FIELDS = frozenset({"job_id", "task_queue_id", "priority", "attempt", "reschedules"})
FLOAT_FIELDS = frozenset({"submitted", "updated", "matched_at", "deadline", "heartbeat_at"})
if set(FIELDS) != STRING_FIELDS | INT_FIELDS | FLOAT_FIELDS | {"status", "kill_requested"}:
    raise RuntimeError("JobRecord fields changed: say here how the snapshot holds each")
_STATUS_BY_VALUE = {status.value: status for status in JobStatus}


class SnapshotUnusable(Exception):
    """The snapshot cannot be used (corrupt, truncated, another format or another store): the
    store is read whole instead."""


@dataclass(frozen=True)
class SnapshotStamp:
    """Which state of which store a snapshot holds.

    ``store_id``: a random number the store keeps (a snapshot of another store is refused);
    ``schema``: the store's schema version; ``history_id``: the id of the last history row when
    it was written (every change of a job row writes a history row in the same transaction, so
    the jobs changed since are those of the history rows after it); ``history_mark``: a digest
    of the last history rows up to that one (a store that went another way since, e.g. restored
    from a copy, has other rows there); ``shared_history_id``: the id of the last run of shared
    submission history (jobs made together write one run, no history row of their own: the jobs
    made since are those of the runs after it)."""

    store_id: int
    schema: int
    history_id: int
    history_mark: bytes
    shared_history_id: int = 0


def encode(jobs: Sequence[JobRecord], stamp: SnapshotStamp) -> bytes:
    """The snapshot of ``jobs`` (in increasing job id order) as of ``stamp``."""
    columns = [_encode_column(name, list(map(attrgetter(name), jobs))) for name in FIELDS]
    body = msgpack.packb(
        {
            "store_id": stamp.store_id,
            "schema": stamp.schema,
            "history_id": stamp.history_id,
            "history_mark": stamp.history_mark,
            "shared_history_id": stamp.shared_history_id,
            "byteorder": sys.byteorder,
            "count": len(jobs),
            "columns": columns,
        },
        use_bin_type=True,
    )
    return MAGIC + hashlib.sha256(body).digest() + body


def _encode_column(name: str, values: list[Any]) -> list[Any]:
    """[distinct values, typecode, codes], or [None, typecode, the values] for the job ids and
    for numbers with too many distinct values (strings always get codes: job names may all
    differ)."""
    if name == "job_id":
        return [None, "q", array("q", values).tobytes()]
    distinct = dict.fromkeys(values)
    if len(distinct) > MAX_DISTINCT and (name in INT_FIELDS or name in FLOAT_FIELDS):
        typecode = "d" if name in FLOAT_FIELDS else "q"
        return [None, typecode, array(typecode, values).tobytes()]
    index = {value: number for number, value in enumerate(distinct)}
    typecode = "B" if len(index) <= 256 else "H" if len(index) <= 65536 else "I"
    if len(index) == 1:  # the same value for every job: code 0 for each
        codes = bytes(len(values))
    else:
        codes = array(typecode, map(index.__getitem__, values)).tobytes()
    if name == "status":
        return [[status.value for status in index], typecode, codes]
    return [list(index), typecode, codes]


def decode(data: bytes) -> tuple[SnapshotStamp, int, Iterator[JobRecord]]:
    """(stamp, number of jobs, the jobs in increasing id order), or SnapshotUnusable. Every
    check is made before the first record is: the records come lazily."""
    if len(data) < len(MAGIC) + DIGEST_BYTES or not data.startswith(MAGIC):
        raise SnapshotUnusable("not a job snapshot of this format")
    body = memoryview(data)[len(MAGIC) + DIGEST_BYTES :]
    if hashlib.sha256(body).digest() != data[len(MAGIC) : len(MAGIC) + DIGEST_BYTES]:
        raise SnapshotUnusable("its digest does not match its content (corrupt or truncated)")
    try:
        document = msgpack.unpackb(body, raw=False, strict_map_key=True)
        return _decoded(document)
    except SnapshotUnusable:
        raise
    except (ValueError, TypeError, KeyError, IndexError, OverflowError) as exc:
        raise SnapshotUnusable(f"malformed: {type(exc).__name__}: {exc}") from None


def _decoded(document: Any) -> tuple[SnapshotStamp, int, Iterator[JobRecord]]:
    _require(isinstance(document, dict), "not a map")
    stamp = SnapshotStamp(
        _integer(document["store_id"]),
        _integer(document["schema"]),
        _integer(document["history_id"]),
        document["history_mark"],
        _integer(document["shared_history_id"]),
    )
    _require(isinstance(stamp.history_mark, bytes), "history_mark is not bytes")
    _require(document["byteorder"] == sys.byteorder, "written with another byte order")
    count = _integer(document["count"])
    columns = document["columns"]
    _require(isinstance(columns, list) and len(columns) == len(FIELDS), "not one column a field")
    iterators = [_column(name, column, count) for name, column in zip(FIELDS, columns, strict=True)]
    return stamp, count, map(JobRecord, *iterators)


def _column(name: str, column: Any, count: int) -> Iterable[Any]:
    _require(isinstance(column, list) and len(column) == 3, f"column {name} is malformed")
    values, typecode, raw = column
    _require(typecode in ("B", "H", "I", "q", "d") and isinstance(raw, bytes), f"column {name}")
    codes = array(typecode)
    _require(len(raw) == count * codes.itemsize, f"column {name} holds another number of jobs")
    codes.frombytes(raw)
    if name == "job_id":
        _require(values is None and typecode == "q", "job ids are not stored as themselves")
        _require(all(map(lt, codes, codes[1:])), "job ids are not strictly increasing")
        _require(not codes or codes[0] > 0, "a job id is not positive")
        return codes
    if values is None:
        expected = "d" if name in FLOAT_FIELDS else "q"
        _require(typecode == expected and name not in STRING_FIELDS, f"column {name}: values")
        return codes
    _require(isinstance(values, list) and typecode in "BHI", f"column {name}: values")
    _require(_codes_within(codes, raw, len(values)), f"column {name}: a code beyond its values")
    checked = [_checked_value(name, value) for value in values]
    if len(checked) == 1:  # the same value for every job (a store of waiting jobs: most columns)
        return repeat(checked[0], count)
    return map(checked.__getitem__, codes)


def _codes_within(codes: array[int], raw: bytes, size: int) -> bool:
    if not codes:
        return True
    if codes.typecode == "B":  # one byte per code: no byte left once the valid ones are removed
        return size >= 256 or not raw.translate(None, bytes(range(size)))
    return max(codes) < size


def _checked_value(name: str, value: Any) -> Any:
    if name in STRING_FIELDS:
        _require(isinstance(value, str), f"{name} {value!r} is not a string")
    elif name in INT_FIELDS:
        return _integer(value)
    elif name in FLOAT_FIELDS:
        _require(isinstance(value, (int, float)) and not isinstance(value, bool), f"{name}")
        return float(value)
    elif name == "status":
        status = _STATUS_BY_VALUE.get(value) if isinstance(value, str) else None
        _require(status is not None, f"unknown status {value!r}")
        return status
    else:  # kill_requested
        _require(isinstance(value, bool), f"{name} {value!r} is not a bool")
    return value


def _integer(value: Any) -> int:
    _require(type(value) is int, f"{value!r} is not an integer")
    return int(value)


def _require(condition: bool, what: str) -> None:
    if not condition:
        raise SnapshotUnusable(f"malformed: {what}")
