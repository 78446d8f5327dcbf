"""The SQLite store's tables of work in progress (schema 8): bulk actions, with the job ids each
was decided on (written once, as a blob of 64-bit integers), and big submissions being expanded
in slices. Used by :mod:`dirac_like.store.sqlite`."""

from __future__ import annotations

from array import array
from dataclasses import astuple
from typing import Any

import msgpack

from dirac_like.model import BulkActionRecord, ChangeSet, SubmissionRecord
from dirac_like.store.database import Database

MIGRATION = (
    """CREATE TABLE bulk_actions (
        bulk_id INTEGER PRIMARY KEY, action TEXT NOT NULL, selection TEXT NOT NULL,
        owner TEXT NOT NULL, count INTEGER NOT NULL, position INTEGER NOT NULL,
        done INTEGER NOT NULL, skipped INTEGER NOT NULL, skipped_sample BLOB NOT NULL,
        started REAL NOT NULL)""",
    "CREATE TABLE bulk_job_ids (bulk_id INTEGER PRIMARY KEY, job_ids BLOB NOT NULL)",
    """CREATE TABLE submissions (
        first_job_id INTEGER PRIMARY KEY, owner TEXT NOT NULL, grp TEXT NOT NULL,
        submitter TEXT NOT NULL, sources BLOB NOT NULL, count INTEGER NOT NULL,
        expanded INTEGER NOT NULL, submitted REAL NOT NULL)""",
)
UPSERT_BULK = "INSERT OR REPLACE INTO bulk_actions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
DELETE_BULK = "DELETE FROM bulk_actions WHERE bulk_id = ?"
INSERT_BULK_IDS = "INSERT OR REPLACE INTO bulk_job_ids VALUES (?, ?)"
DELETE_BULK_IDS = "DELETE FROM bulk_job_ids WHERE bulk_id = ?"
SELECT_BULK = """SELECT a.*, i.job_ids FROM bulk_actions a
    LEFT JOIN bulk_job_ids i ON i.bulk_id = a.bulk_id ORDER BY a.bulk_id"""
UPSERT_SUBMISSION = "INSERT OR REPLACE INTO submissions VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
DELETE_SUBMISSION = "DELETE FROM submissions WHERE first_job_id = ?"
SELECT_SUBMISSIONS = "SELECT * FROM submissions ORDER BY first_job_id"


def write_work(db: Database, changes: ChangeSet) -> None:
    """The bulk actions and submissions this change set touched."""
    if changes.bulk_job_ids:
        db.executemany(
            INSERT_BULK_IDS,
            [(i, array("q", ids).tobytes()) for i, ids in changes.bulk_job_ids.items()],
        )
    if changes.bulk_actions:
        gone = [(i,) for i, bulk in changes.bulk_actions.items() if bulk is None]
        db.executemany(DELETE_BULK, gone)
        db.executemany(DELETE_BULK_IDS, gone)
        db.executemany(
            UPSERT_BULK, [_bulk_row(b) for b in changes.bulk_actions.values() if b is not None]
        )
    if changes.submissions:
        items = changes.submissions.items()
        db.executemany(DELETE_SUBMISSION, [(i,) for i, s in items if s is None])
        db.executemany(UPSERT_SUBMISSION, [_submission_row(s) for _, s in items if s is not None])


def load_bulk_actions(db: Database) -> list[tuple[BulkActionRecord, list[int]]]:
    loaded = []
    for row in db.execute(SELECT_BULK):
        bulk_id, action, selection, owner, count, position, done, skipped = row[:8]
        sample, started, job_ids = row[8:]
        ids = array("q")
        ids.frombytes(job_ids or b"")
        record = BulkActionRecord(bulk_id, action, selection, owner, count, position, done,
                                  skipped, tuple(msgpack.unpackb(sample)), started)  # fmt: skip
        loaded.append((record, ids.tolist()))
    return loaded


def load_submissions(db: Database) -> list[SubmissionRecord]:
    return [
        SubmissionRecord(first, owner, group, submitter, tuple(msgpack.unpackb(sources)), *rest)
        for first, owner, group, submitter, sources, *rest in db.execute(SELECT_SUBMISSIONS)
    ]


def _bulk_row(bulk: BulkActionRecord) -> tuple[Any, ...]:
    fields = astuple(bulk)
    return (*fields[:8], msgpack.packb(list(bulk.skipped_sample)), bulk.started)


def _submission_row(submission: SubmissionRecord) -> tuple[Any, ...]:
    s = submission
    sources = msgpack.packb(list(s.sources))
    return (s.first_job_id, s.owner, s.group, s.submitter, sources, s.count, s.expanded,
            s.submitted)  # fmt: skip
