"""The SQLite store's job snapshot: written beside the store file, used at load when it is sound.

The service writes it at a clean shutdown (:meth:`SqliteStore.save_job_snapshot`), once every
change is committed: the jobs it holds in memory are then exactly the store's job rows (but for
the last heartbeat time of a Matched job, which the store only writes with the job's next change:
the snapshot holds the newer one). ``load`` reads the jobs from it instead of the jobs table when

- the file is there and decodes (:mod:`dirac_like.store.job_snapshot` checks its digest and
  every value);
- it was written from this store (its ``store_id``, a random number the store keeps in
  ``counters``) at this schema version;
- the store's history row it names is still there, and the last history rows up to it are the
  same (``history_mark``): the store did not go another way since (restored from a copy);
- at most :data:`REPLAY_LIMIT` (or a quarter of the jobs) history rows came after it. The jobs
  those rows name (a crash after the snapshot: every change of a job row writes a history row in
  the same transaction) are read again from the jobs table, by key, and replace their snapshot
  records or join them; so are the jobs of the runs of shared submission history written after
  it (jobs made together write one run, not a history row each: ``shared_history_id``), by
  ranges of ids. (Job rows are never deleted: a Deleted job keeps its row. A deletion
  would have to come with a history row, and the replay drop the job.)

Otherwise the jobs table is read whole, as without a snapshot, and the log says why. The file is
written to a temporary name, synced, then renamed over the old one (and the folder synced): a
crash while writing leaves the previous snapshot or none, never half of one.
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
from bisect import bisect_left
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from operator import attrgetter
from pathlib import Path

from dirac_like.model import JobRecord
from dirac_like.store.database import Database
from dirac_like.store.job_snapshot import SnapshotStamp, SnapshotUnusable, decode, encode

log = logging.getLogger(__name__)

SUFFIX = ".jobs-snapshot"
# read_jobs(history_id, made): the job rows changed after a history row or made in id ranges
ReadJobs = Callable[[int, list[tuple[int, int]]], list[JobRecord]]
REPLAY_LIMIT = 200_000  # history rows after the snapshot read again by key, at most (or n / 4)
MARK_ROWS = 8  # the last history rows the mark is made of

SELECT_STORE_ID = "SELECT value FROM counters WHERE name = 'store_id'"
INSERT_STORE_ID = "INSERT OR IGNORE INTO counters VALUES ('store_id', ?)"
SELECT_LAST_HISTORY_ID = "SELECT coalesce(max(id), 0) FROM history"
SELECT_MARK_ROWS = """SELECT id, job_id, status, minor_status, application_status, time, source
    FROM history WHERE id > ? AND id <= ? ORDER BY id"""
SELECT_CHANGED_SINCE = "SELECT count(*) FROM (SELECT 1 FROM history WHERE id > ? LIMIT ?)"
SELECT_LAST_SHARED_ID = "SELECT coalesce(max(id), 0) FROM shared_history"
SELECT_SHARED_SINCE = "SELECT first_job_id, last_job_id FROM shared_history WHERE id > ? LIMIT ?"
SELECT_TASK_QUEUE_IDS = "SELECT task_queue_id FROM task_queues"


def snapshot_path(store_path: Path) -> Path:
    return store_path.with_name(store_path.name + SUFFIX)


def store_id(db: Database, create: bool = False) -> int | None:
    """The store's random id (made now if ``create`` and there is none; the caller is in a
    write transaction then)."""
    row = db.execute(SELECT_STORE_ID).fetchone()
    if row is None and create:
        db.execute(INSERT_STORE_ID, (secrets.randbits(62) + 1,))
        row = db.execute(SELECT_STORE_ID).fetchone()
    return None if row is None else int(row[0])


def history_mark(db: Database, history_id: int) -> bytes:
    """A digest of the history rows up to ``history_id`` (the last MARK_ROWS of them)."""
    rows = db.execute(SELECT_MARK_ROWS, (history_id - MARK_ROWS, history_id)).fetchall()
    return hashlib.sha256(repr(rows).encode()).digest()


def current_stamp(db: Database, schema: int, the_store_id: int) -> SnapshotStamp:
    history_id = int(db.execute(SELECT_LAST_HISTORY_ID).fetchone()[0])
    shared_id = int(db.execute(SELECT_LAST_SHARED_ID).fetchone()[0])
    return SnapshotStamp(the_store_id, schema, history_id, history_mark(db, history_id), shared_id)


def made_since(db: Database, shared_history_id: int, limit: int) -> list[tuple[int, int]]:
    """The (first, last) job ids of the runs of shared history after ``shared_history_id``:
    the jobs made together since (at most ``limit`` runs read)."""
    return [
        (int(a), int(b)) for a, b in db.execute(SELECT_SHARED_SINCE, (shared_history_id, limit))
    ]


def remove_leftovers(path: Path) -> None:
    """The temporary files of writers killed while writing the snapshot at ``path``."""
    for left in path.parent.glob(f"{path.name}.*.tmp"):
        left.unlink(missing_ok=True)


def write_snapshot(path: Path, jobs: Sequence[JobRecord], stamp: SnapshotStamp) -> KeptSnapshot:
    """Write the snapshot of ``jobs`` atomically (temporary file, fsync, rename, fsync of the
    folder)."""
    data = encode(jobs, stamp)
    temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        with open(temporary, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)
    return KeptSnapshot.of(path, stamp)


@dataclass(frozen=True)
class KeptSnapshot:
    """A snapshot file as it was written or read, and the store state it holds: while the store
    is still there (no job changed since), writing it again would write the same."""

    stamp: SnapshotStamp
    size: int
    modified_ns: int

    @classmethod
    def of(cls, path: Path, stamp: SnapshotStamp) -> KeptSnapshot:
        status = path.stat()
        return cls(stamp, status.st_size, status.st_mtime_ns)

    def still(self, path: Path, stamp: SnapshotStamp) -> bool:
        """Whether ``path`` is still this file and ``stamp`` the store state it holds."""
        try:
            return self == KeptSnapshot.of(path, stamp)
        except OSError:
            return False


def read_snapshot_jobs(
    db: Database,
    path: Path,
    schema: int,
    read_jobs: ReadJobs,
) -> tuple[list[JobRecord] | None, KeptSnapshot | None]:
    """The store's jobs from the snapshot at ``path`` brought up to date, or None (the jobs
    table is to be read whole; the log says why); and the snapshot, if it holds the store's
    jobs as they are (nothing was replayed). ``db`` is in the load's read transaction;
    ``read_jobs(history_id, ranges)`` reads the job rows named by history rows after that id
    and those with ids in ``ranges`` (first, last)."""
    try:
        kept = KeptSnapshot.of(path, SnapshotStamp(0, 0, 0, b""))
        data = path.read_bytes()
    except FileNotFoundError:
        return None, None
    except OSError as exc:
        log.warning("job snapshot %s cannot be read (%s): reading the jobs table", path, exc)
        return None, None
    try:
        stamp, count, records = decode(data)
        del data
        _check_stamp(db, stamp, schema)
        replay = _rows_to_replay(db, stamp.history_id, count)
        made = _made_to_replay(db, stamp.shared_history_id, count - replay)
        replay += sum(last - first + 1 for first, last in made)
        jobs = list(records)
        _check_task_queues(db, jobs)
    except SnapshotUnusable as exc:
        log.warning("job snapshot %s not used (%s): reading the jobs table", path, exc)
        return None, None
    if replay:
        _replace(jobs, read_jobs(stamp.history_id, made))
    log.info(
        "jobs read from the snapshot %s: %d jobs, %d history rows after it replayed",
        path,
        len(jobs),
        replay,
    )
    return jobs, None if replay else replace(kept, stamp=stamp)


def _check_stamp(db: Database, stamp: SnapshotStamp, schema: int) -> None:
    if stamp.schema != schema:
        raise SnapshotUnusable(f"written at schema {stamp.schema}, the store is at {schema}")
    if stamp.store_id != store_id(db):
        raise SnapshotUnusable("written from another store")
    if history_mark(db, stamp.history_id) != stamp.history_mark:
        raise SnapshotUnusable("the store's history is not the one it was written after")


def _rows_to_replay(db: Database, history_id: int, count: int) -> int:
    limit = max(REPLAY_LIMIT, count // 4)
    rows = int(db.execute(SELECT_CHANGED_SINCE, (history_id, limit + 1)).fetchone()[0])
    if rows > limit:
        raise SnapshotUnusable(f"more than {limit} history rows after it")
    return rows


def _made_to_replay(db: Database, shared_history_id: int, count: int) -> list[tuple[int, int]]:
    limit = max(REPLAY_LIMIT, count // 4)
    made = made_since(db, shared_history_id, limit + 1)
    if sum(last - first + 1 for first, last in made) > limit:
        raise SnapshotUnusable(f"more than {limit} jobs made after it")
    return made


def _check_task_queues(db: Database, jobs: list[JobRecord]) -> None:
    known = {row[0] for row in db.execute(SELECT_TASK_QUEUE_IDS)}
    named = set(map(attrgetter("task_queue_id"), jobs))
    if not named <= known:
        raise SnapshotUnusable(f"jobs in unknown task queues {sorted(named - known)[:5]}")


def _replace(jobs: list[JobRecord], changed: list[JobRecord]) -> None:
    """Put the records read again in place of their snapshot ones (new ones in id order)."""
    added = []
    key = attrgetter("job_id")
    for job in changed:
        at = bisect_left(jobs, job.job_id, key=key)
        if at < len(jobs) and jobs[at].job_id == job.job_id:
            jobs[at] = job
        else:
            added.append(job)
    if added:
        jobs += added
        jobs.sort(key=key)
