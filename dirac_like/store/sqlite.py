"""The embedded store: one SQLite file in WAL mode, one transaction per ChangeSet.

Every commit is ``BEGIN IMMEDIATE`` … ``COMMIT`` on a connection in autocommit mode
(``isolation_level=None``), so the transaction boundaries are exactly the ones written here. With
``synchronous=full`` a commit is on disk when ``commit`` returns; with ``normal`` it survives a
crash of the process but the last commits may be lost on a power cut. With ``synchronous=full``
and ``defer_sync`` (the central service's loop), ``COMMIT`` runs at ``synchronous = NORMAL`` (the
WAL is written, not fsynced) and the fsync of the WAL is :class:`WalSync`, which the caller runs
before it acknowledges the commit, overlapped with its next batch (docs/performance.md,
"Per-batch request path").

The schema is versioned with ``PRAGMA user_version``: ``MIGRATIONS[n]`` takes a database from
version n to n + 1 and they run in order, in one transaction, when the store is opened. A database
written by newer code is refused rather than guessed at.

``load`` reads the jobs from the job snapshot written at the service's last clean stop when it
is provably this store's, brought up to date from the history rows after it; else from the jobs
table (dirac_like/store/sqlite_snapshot.py).

Ordering of what ``load`` returns: jobs by job id, task queues by id, sites by name, usage by
(group, user), replies by (time, request id). History rows keep commit order (rowid order; history
rows are never deleted, so rowids only grow).

The store is not thread-safe: use it from one thread at a time (it may be opened in one thread and
used in another).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import astuple, fields
from operator import attrgetter
from pathlib import Path
from typing import Any

import msgpack

from dirac_like.accounting import (
    DAY,
    HOUR,
    JobAccountingRecord,
    bucket_records,
    bucket_transfers,
)
from dirac_like.errors import JobNotFound, SchemaTooNew, StoreError, UnstorableValue
from dirac_like.model import (
    ChangeSet,
    FileEntry,
    HistoryEntry,
    JobRecord,
    LoadedState,
    PilotRecord,
    Requirements,
    RuleRecord,
    SEStatusRecord,
    SharedHistory,
    SiteRecord,
    StoredReply,
    TaskQueueRow,
    TransferRecord,
    UsageRecord,
)
from dirac_like.monitoring import (
    CheckStatus,
    Downtime,
    ProbeResult,
    ResourceStatus,
    StatusRecord,
    TargetKind,
)
from dirac_like.states import JobStatus
from dirac_like.store.base import SCHEMA_VERSION, Store
from dirac_like.store.database import Database
from dirac_like.store.sqlite_snapshot import (
    KeptSnapshot,
    current_stamp,
    read_snapshot_jobs,
    remove_leftovers,
    snapshot_path,
    store_id,
    write_snapshot,
)
from dirac_like.store.sqlite_work import MIGRATION as WORK_MIGRATION
from dirac_like.store.sqlite_work import load_bulk_actions, load_submissions, write_work

log = logging.getLogger(__name__)

SYNCHRONOUS_MODES = ("full", "normal")
CACHE_KIB = 512 * 1024  # page cache of up to 512 MiB
CHECKPOINT_SECONDS = 0.5
BUSY_TIMEOUT_S = 10.0

# The job_accounting columns; the record's fields are the same but ``grp`` (``group``) and
# ``core_seconds`` (a property).
JOB_ACCOUNTING_COLUMNS = (
    *("grp" if name == "group" else name for name in JobAccountingRecord._fields),
    "core_seconds",
)

# JobRecord fields in column order of the jobs table (the column for ``group`` is ``grp``).
JOB_FIELDS = (
    "job_id", "owner", "group", "task_queue_id", "priority", "status", "minor_status",
    "application_status", "site", "job_name", "pilot_id", "attempt", "reschedules", "submitted",
    "updated", "matched_at", "deadline", "heartbeat_at", "kill_requested",
)  # fmt: skip
if tuple(f.name for f in fields(JobRecord)) != JOB_FIELDS:
    raise RuntimeError("JobRecord fields changed: update JOB_FIELDS, the SQL and add a migration")

PILOT_FIELDS = (
    "pilot_id", "site", "ce", "fabric", "fabric_ref", "state", "reason", "submitted", "updated",
    "last_contact", "kill_requested", "credential", "started",
)  # fmt: skip
HISTORY_FIELDS = ("job_id", "status", "minor_status", "application_status", "time", "source")

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    # 0 -> 1: the first schema.
    (
        """CREATE TABLE jobs (
            job_id INTEGER PRIMARY KEY, owner TEXT NOT NULL, grp TEXT NOT NULL,
            task_queue_id INTEGER NOT NULL, priority INTEGER NOT NULL, status TEXT NOT NULL,
            minor_status TEXT NOT NULL, application_status TEXT NOT NULL, site TEXT NOT NULL,
            job_name TEXT NOT NULL, pilot_id TEXT NOT NULL, attempt INTEGER NOT NULL,
            reschedules INTEGER NOT NULL, submitted REAL NOT NULL, updated REAL NOT NULL,
            matched_at REAL NOT NULL, deadline REAL NOT NULL, heartbeat_at REAL NOT NULL,
            kill_requested INTEGER NOT NULL)""",
        # Apart from the jobs, so that a job's row stays small: every status change rewrites it.
        "CREATE TABLE descriptions (job_id INTEGER PRIMARY KEY, description BLOB NOT NULL)",
        """CREATE TABLE task_queues (
            task_queue_id INTEGER PRIMARY KEY, owner TEXT NOT NULL, grp TEXT NOT NULL,
            requirements BLOB NOT NULL)""",
        """CREATE TABLE history (
            id INTEGER PRIMARY KEY, job_id INTEGER NOT NULL, status TEXT NOT NULL,
            minor_status TEXT NOT NULL, application_status TEXT NOT NULL, time REAL NOT NULL,
            source TEXT NOT NULL)""",
        "CREATE INDEX history_by_job ON history (job_id)",
        """CREATE TABLE sites (
            name TEXT PRIMARY KEY, banned INTEGER NOT NULL, reason TEXT NOT NULL,
            changed REAL NOT NULL)""",
        "CREATE TABLE shares (grp TEXT PRIMARY KEY, share REAL NOT NULL)",
        """CREATE TABLE usage (
            grp TEXT NOT NULL, user_name TEXT NOT NULL, usage REAL NOT NULL, stamp REAL NOT NULL,
            PRIMARY KEY (grp, user_name))""",
        """CREATE TABLE replies (
            request_id TEXT PRIMARY KEY, reply BLOB NOT NULL, time REAL NOT NULL)""",
        "CREATE INDEX replies_by_time ON replies (time)",
    ),
    # 1 -> 2: pilot records (with the jobs matched to each and their output) and sandboxes.
    (
        """CREATE TABLE pilots (
            pilot_id TEXT PRIMARY KEY, site TEXT NOT NULL, ce TEXT NOT NULL, fabric TEXT NOT NULL,
            fabric_ref TEXT NOT NULL, state TEXT NOT NULL, reason TEXT NOT NULL,
            submitted REAL NOT NULL, updated REAL NOT NULL, last_contact REAL NOT NULL,
            kill_requested INTEGER NOT NULL)""",
        """CREATE TABLE pilot_jobs (
            pilot_id TEXT NOT NULL, job_id INTEGER NOT NULL, PRIMARY KEY (pilot_id, job_id))
            WITHOUT ROWID""",
        "CREATE TABLE pilot_outputs (pilot_id TEXT PRIMARY KEY, output TEXT NOT NULL)",
        "CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL)",
        """CREATE TABLE sandboxes (
            job_id INTEGER NOT NULL, kind TEXT NOT NULL, sha256 TEXT NOT NULL,
            PRIMARY KEY (job_id, kind)) WITHOUT ROWID""",
    ),
    # 2 -> 3: monitoring: who banned a site, probe results, site/SE statuses, downtimes.
    (
        "ALTER TABLE sites ADD COLUMN automatic INTEGER NOT NULL DEFAULT 0",
        """CREATE TABLE probe_results (
            id INTEGER PRIMARY KEY, target TEXT NOT NULL, kind TEXT NOT NULL, check_name TEXT
            NOT NULL, status TEXT NOT NULL, message TEXT NOT NULL, time REAL NOT NULL,
            ce TEXT NOT NULL, job_id INTEGER NOT NULL)""",
        "CREATE INDEX probe_results_by_time ON probe_results (time)",
        "CREATE INDEX probe_results_by_target ON probe_results (target, time)",
        """CREATE TABLE resource_status (
            kind TEXT NOT NULL, target TEXT NOT NULL, status TEXT NOT NULL, reason TEXT NOT NULL,
            changed REAL NOT NULL, automatic INTEGER NOT NULL, PRIMARY KEY (kind, target))""",
        """CREATE TABLE downtimes (
            downtime_id INTEGER PRIMARY KEY, target TEXT NOT NULL, kind TEXT NOT NULL,
            start REAL NOT NULL, end_time REAL NOT NULL, reason TEXT NOT NULL,
            scheduled INTEGER NOT NULL, created REAL NOT NULL, cancelled REAL NOT NULL)""",
    ),
    # 3 -> 4: the identity each pilot record is bound to.
    ("ALTER TABLE pilots ADD COLUMN credential TEXT NOT NULL DEFAULT ''",),
    # 4 -> 5: a site may be draining, and an admin may set its running limit (-1: as configured).
    (
        "ALTER TABLE sites ADD COLUMN drained INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE sites ADD COLUMN max_running INTEGER NOT NULL DEFAULT -1",
    ),
    # 5 -> 6: accounting (dirac_like/accounting.py): a record per finished job attempt and per
    # finished pilot, and the hourly/daily buckets reports read; when a pilot started.
    (
        "ALTER TABLE pilots ADD COLUMN started REAL NOT NULL DEFAULT 0",
        """CREATE TABLE job_accounting (
            job_id INTEGER NOT NULL, attempt INTEGER NOT NULL, owner TEXT NOT NULL,
            grp TEXT NOT NULL, site TEXT NOT NULL, ce TEXT NOT NULL, pilot_id TEXT NOT NULL,
            status TEXT NOT NULL, minor_status TEXT NOT NULL, exit_code INTEGER,
            cores INTEGER NOT NULL, cpu_seconds REAL NOT NULL, wall_seconds REAL NOT NULL,
            core_seconds REAL NOT NULL, peak_rss_mb REAL NOT NULL, input_bytes INTEGER NOT NULL,
            output_bytes INTEGER NOT NULL, submitted REAL NOT NULL, started REAL NOT NULL,
            ended REAL NOT NULL, PRIMARY KEY (job_id, attempt)) WITHOUT ROWID""",
        "CREATE INDEX job_accounting_by_end ON job_accounting (ended)",
        """CREATE TABLE pilot_accounting (
            pilot_id TEXT PRIMARY KEY, site TEXT NOT NULL, ce TEXT NOT NULL, fabric TEXT NOT NULL,
            state TEXT NOT NULL, reason TEXT NOT NULL, submitted REAL NOT NULL,
            started REAL NOT NULL, ended REAL NOT NULL, jobs INTEGER NOT NULL)""",
        "CREATE INDEX pilot_accounting_by_end ON pilot_accounting (ended)",
        # one row per dimension (group, user, site, status, exit-code), bucket and label
        """CREATE TABLE accounting_buckets (
            dimension TEXT NOT NULL, start REAL NOT NULL, period INTEGER NOT NULL,
            label TEXT NOT NULL, jobs INTEGER NOT NULL, failed INTEGER NOT NULL,
            cpu_seconds REAL NOT NULL, wall_seconds REAL NOT NULL, core_seconds REAL NOT NULL,
            PRIMARY KEY (dimension, start, period, label)) WITHOUT ROWID""",
    ),
    # 6 -> 7: the replica catalog (files, replicas), SE statuses, transfer requests and
    # replication rules (issue 17, data management).
    (
        """CREATE TABLE catalog_files (
            lfn TEXT PRIMARY KEY, size INTEGER NOT NULL, adler32 TEXT NOT NULL,
            guid TEXT NOT NULL, owner TEXT NOT NULL, grp TEXT NOT NULL, created REAL NOT NULL)
            WITHOUT ROWID""",
        """CREATE TABLE catalog_replicas (
            lfn TEXT NOT NULL, se TEXT NOT NULL, status TEXT NOT NULL, PRIMARY KEY (lfn, se))
            WITHOUT ROWID""",
        """CREATE TABLE se_status (
            se TEXT PRIMARY KEY, status TEXT NOT NULL, reason TEXT NOT NULL,
            changed REAL NOT NULL)""",
        """CREATE TABLE transfers (
            transfer_id INTEGER PRIMARY KEY, lfn TEXT NOT NULL, destination TEXT NOT NULL,
            status TEXT NOT NULL, reason TEXT NOT NULL, priority INTEGER NOT NULL,
            owner TEXT NOT NULL, attempt INTEGER NOT NULL, source TEXT NOT NULL,
            agent TEXT NOT NULL, tried TEXT NOT NULL, created REAL NOT NULL,
            updated REAL NOT NULL, deadline REAL NOT NULL)""",
        """CREATE TABLE replication_rules (
            rule_id INTEGER PRIMARY KEY, folder TEXT NOT NULL, copies INTEGER NOT NULL,
            tags TEXT NOT NULL, owner TEXT NOT NULL, created REAL NOT NULL,
            expires REAL NOT NULL)""",
    ),
    # 8: work in progress (bulk actions, big submissions expanded in slices)
    WORK_MIGRATION,
    # 8 -> 9: accounting of finished transfers (records and hourly/daily buckets by link,
    # status, user), and the kept usage samples of jobs (dirac_like/usage_series.py).
    (
        """CREATE TABLE transfer_accounting (
            transfer_id INTEGER PRIMARY KEY, lfn TEXT NOT NULL, owner TEXT NOT NULL,
            source TEXT NOT NULL, destination TEXT NOT NULL, status TEXT NOT NULL,
            reason TEXT NOT NULL, bytes INTEGER NOT NULL, attempts INTEGER NOT NULL,
            created REAL NOT NULL, started REAL NOT NULL, ended REAL NOT NULL)""",
        "CREATE INDEX transfer_accounting_by_end ON transfer_accounting (ended)",
        """CREATE TABLE transfer_buckets (
            dimension TEXT NOT NULL, start REAL NOT NULL, period INTEGER NOT NULL,
            label TEXT NOT NULL, transfers INTEGER NOT NULL, failed INTEGER NOT NULL,
            bytes INTEGER NOT NULL, seconds REAL NOT NULL,
            PRIMARY KEY (dimension, start, period, label)) WITHOUT ROWID""",
        """CREATE TABLE usage_samples (
            job_id INTEGER NOT NULL, attempt INTEGER NOT NULL, time REAL NOT NULL,
            cpu_seconds REAL NOT NULL, rss_mb REAL NOT NULL,
            PRIMARY KEY (job_id, attempt, time)) WITHOUT ROWID""",
        "CREATE INDEX usage_samples_by_time ON usage_samples (time)",
        # daily buckets are now kept for every day (beside the hourly ones of recent days), so
        # a report in whole days reads only those: the hourly buckets kept so far get theirs
        f"""INSERT INTO accounting_buckets
            SELECT dimension, CAST(start / {DAY} AS INTEGER) * {DAY}.0 AS day, {DAY}, label,
                sum(jobs), sum(failed), sum(cpu_seconds), sum(wall_seconds), sum(core_seconds)
            FROM accounting_buckets WHERE period = {HOUR} GROUP BY dimension, day, label
            ON CONFLICT (dimension, start, period, label) DO UPDATE SET jobs = jobs + excluded.jobs,
            failed = failed + excluded.failed,
            cpu_seconds = cpu_seconds + excluded.cpu_seconds,
            wall_seconds = wall_seconds + excluded.wall_seconds,
            core_seconds = core_seconds + excluded.core_seconds""",
    ),
    # 9 -> 10: the tables of a pair of central services, on PostgreSQL only (nothing here:
    # a service on SQLite is alone; dirac_like/store/postgres_pair.py says why).
    (),
    # 10 -> 11: history rows shared by a run of jobs made together (their submission steps,
    # once per run instead of three rows per job: dirac_like/model.py SharedHistory). The runs
    # of one table never overlap; a job's is the one with the greatest first job id up to it.
    (
        """CREATE TABLE shared_history (
            id INTEGER PRIMARY KEY, first_job_id INTEGER NOT NULL, last_job_id INTEGER NOT NULL,
            status TEXT NOT NULL, minor_status TEXT NOT NULL, application_status TEXT NOT NULL,
            time REAL NOT NULL, source TEXT NOT NULL)""",
        "CREATE INDEX shared_history_by_first_job ON shared_history (first_job_id)",
    ),
)
if len(MIGRATIONS) != SCHEMA_VERSION:
    raise RuntimeError("SCHEMA_VERSION and MIGRATIONS disagree")

INSERT_TASK_QUEUE = "INSERT INTO task_queues VALUES (?, ?, ?, ?)"
INSERT_JOB = "INSERT INTO jobs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
INSERT_DESCRIPTION = "INSERT INTO descriptions VALUES (?, ?)"
UPDATE_JOB = """UPDATE jobs SET owner = ?, grp = ?, task_queue_id = ?, priority = ?, status = ?,
    minor_status = ?, application_status = ?, site = ?, job_name = ?, pilot_id = ?, attempt = ?,
    reschedules = ?, submitted = ?, updated = ?, matched_at = ?, deadline = ?, heartbeat_at = ?,
    kill_requested = ? WHERE job_id = ?"""
INSERT_HISTORY = """INSERT INTO history
    (job_id, status, minor_status, application_status, time, source) VALUES (?, ?, ?, ?, ?, ?)"""
INSERT_SHARED_HISTORY = """INSERT INTO shared_history (first_job_id, last_job_id, status,
    minor_status, application_status, time, source) VALUES (?, ?, ?, ?, ?, ?, ?)"""
UPSERT_SITE = """INSERT INTO sites VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET
    banned = excluded.banned, reason = excluded.reason, changed = excluded.changed,
    automatic = excluded.automatic, drained = excluded.drained,
    max_running = excluded.max_running"""
INSERT_PROBE_RESULT = """INSERT INTO probe_results
    (target, kind, check_name, status, message, time, ce, job_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"""
UPSERT_STATUS = "INSERT OR REPLACE INTO resource_status VALUES (?, ?, ?, ?, ?, ?)"
UPSERT_DOWNTIME = "INSERT OR REPLACE INTO downtimes VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
UPSERT_SHARE = """INSERT INTO shares VALUES (?, ?)
    ON CONFLICT (grp) DO UPDATE SET share = excluded.share"""
UPSERT_USAGE = """INSERT INTO usage VALUES (?, ?, ?, ?) ON CONFLICT (grp, user_name)
    DO UPDATE SET usage = excluded.usage, stamp = excluded.stamp"""
UPSERT_REPLY = "INSERT OR REPLACE INTO replies VALUES (?, ?, ?)"
DELETE_REPLIES_BEFORE = "DELETE FROM replies WHERE time < ?"
UPSERT_PILOT = f"""INSERT OR REPLACE INTO pilots ({", ".join(PILOT_FIELDS)})
    VALUES ({", ".join("?" * len(PILOT_FIELDS))})"""
INSERT_PILOT_JOB = "INSERT OR IGNORE INTO pilot_jobs VALUES (?, ?)"
UPSERT_PILOT_OUTPUT = "INSERT OR REPLACE INTO pilot_outputs VALUES (?, ?)"
DELETE_PILOT = (
    "DELETE FROM pilots WHERE pilot_id = ?",
    "DELETE FROM pilot_jobs WHERE pilot_id = ?",
    "DELETE FROM pilot_outputs WHERE pilot_id = ?",
)
UPSERT_COUNTER = "INSERT OR REPLACE INTO counters VALUES (?, ?)"
UPSERT_SANDBOX = "INSERT OR REPLACE INTO sandboxes VALUES (?, ?, ?)"

SELECT_JOBS = """SELECT job_id, owner, grp, task_queue_id, priority, status, minor_status,
    application_status, site, job_name, pilot_id, attempt, reschedules, submitted, updated,
    matched_at, deadline, heartbeat_at, kill_requested FROM jobs ORDER BY job_id"""
SELECT_JOBS_CHANGED_SINCE = SELECT_JOBS.replace(
    "ORDER BY", "WHERE job_id IN (SELECT job_id FROM history WHERE id > ?) ORDER BY"
)
SELECT_JOBS_IN_RANGE = SELECT_JOBS.replace("ORDER BY", "WHERE job_id BETWEEN ? AND ? ORDER BY")
SELECT_TASK_QUEUES = "SELECT * FROM task_queues ORDER BY task_queue_id"
SELECT_SITES = """SELECT name, banned, reason, changed, automatic, drained, max_running
    FROM sites ORDER BY name"""
SELECT_STATUSES = """SELECT target, kind, status, reason, changed, automatic FROM resource_status
    ORDER BY kind, target"""
SELECT_DOWNTIMES = """SELECT downtime_id, target, kind, start, end_time, reason, scheduled, created,
    cancelled FROM downtimes ORDER BY downtime_id"""
PROBE_FIELDS = "target, kind, check_name, status, message, time, ce, job_id"
SELECT_PROBE_RESULTS = f"""SELECT {PROBE_FIELDS} FROM (SELECT {PROBE_FIELDS}, id FROM probe_results
    WHERE time >= ? ORDER BY time DESC, id DESC LIMIT ?) AS newest ORDER BY time, id"""
SELECT_TARGET_PROBE_RESULTS = f"""SELECT {PROBE_FIELDS} FROM (SELECT {PROBE_FIELDS}, id
    FROM probe_results WHERE target = ? AND time >= ? ORDER BY time DESC, id DESC LIMIT ?) AS newest
    ORDER BY time, id"""
SELECT_SHARES = "SELECT grp, share FROM shares ORDER BY grp"
SELECT_USAGE = "SELECT grp, user_name, usage, stamp FROM usage ORDER BY grp, user_name"
SELECT_REPLIES = "SELECT request_id, reply, time FROM replies ORDER BY time, request_id"
SELECT_DESCRIPTION = "SELECT description FROM descriptions WHERE job_id = ?"
# A match reads its job's description; the jobs of a task queue were mostly made together
# (consecutive ids) and are matched in id order, so the SQLite store reads the next ones with it
# (one statement instead of one per match) and keeps the last DESCRIPTIONS_KEPT read: a
# description never changes once stored, so the ones read stay valid.
DESCRIPTIONS_READ_AHEAD = 32
DESCRIPTIONS_KEPT = 32_768
SELECT_DESCRIPTIONS_AHEAD = (
    "SELECT job_id, description FROM descriptions WHERE job_id >= ? ORDER BY job_id LIMIT ?"
)
SELECT_PILOTS = f"SELECT {', '.join(PILOT_FIELDS)} FROM pilots ORDER BY submitted, pilot_id"
SELECT_PILOT_JOBS = "SELECT pilot_id, job_id FROM pilot_jobs ORDER BY pilot_id, job_id"
SELECT_PILOT_OUTPUT = "SELECT output FROM pilot_outputs WHERE pilot_id = ?"
SELECT_NEXT_PILOT_NUMBER = "SELECT value FROM counters WHERE name = 'next_pilot_number'"
SELECT_SANDBOX = "SELECT sha256 FROM sandboxes WHERE job_id = ? AND kind = ?"
SELECT_SANDBOXES = "SELECT DISTINCT sha256 FROM sandboxes"
TRANSFER_FIELDS = (
    "transfer_id", "lfn", "destination", "status", "reason", "priority", "owner", "attempt",
    "source", "agent", "tried", "created", "updated", "deadline",
)  # fmt: skip
if tuple(f.name for f in fields(TransferRecord)) != TRANSFER_FIELDS:
    raise RuntimeError("TransferRecord fields changed: update TRANSFER_FIELDS and add a migration")
UPSERT_CATALOG_FILE = "INSERT OR REPLACE INTO catalog_files VALUES (?, ?, ?, ?, ?, ?, ?)"
DELETE_CATALOG_FILE = "DELETE FROM catalog_files WHERE lfn = ?"
UPSERT_REPLICA = "INSERT OR REPLACE INTO catalog_replicas VALUES (?, ?, ?)"
DELETE_REPLICA = "DELETE FROM catalog_replicas WHERE lfn = ? AND se = ?"
UPSERT_SE_STATUS = "INSERT OR REPLACE INTO se_status VALUES (?, ?, ?, ?)"
_TRANSFER_MARKS = ", ".join("?" * len(TRANSFER_FIELDS))
UPSERT_TRANSFER = f"INSERT OR REPLACE INTO transfers VALUES ({_TRANSFER_MARKS})"
SELECT_CATALOG_FILES = "SELECT * FROM catalog_files WHERE lfn IN ({marks})"
SELECT_REPLICAS_OF = """SELECT lfn, se, status FROM catalog_replicas WHERE lfn IN ({marks})
    ORDER BY lfn, se"""
SELECT_LOOKUP = """SELECT f.lfn, f.size, f.adler32, f.guid, f.owner, f.grp, f.created, r.se,
    r.status FROM catalog_files f LEFT JOIN catalog_replicas r ON r.lfn = f.lfn
    WHERE f.lfn IN ({marks}) ORDER BY f.lfn, r.se"""
SELECT_SPACE = """SELECT r.se, SUM(f.size) FROM catalog_replicas r JOIN catalog_files f
    ON f.lfn = r.lfn WHERE r.se IN ({marks}) GROUP BY r.se"""
LOOKUP_CHUNK = 500  # LFNs per IN (...) query (SQLite allows 32766 parameters)
# Below FOLDER: every LFN between 'FOLDER/' and 'FOLDER0' ('0' sorts right after '/').
SELECT_FOLDER = """SELECT * FROM catalog_files WHERE lfn > ? AND lfn < ? ORDER BY lfn LIMIT ?"""
SELECT_RULES = "SELECT * FROM replication_rules ORDER BY rule_id"
UPSERT_RULE = "INSERT OR REPLACE INTO replication_rules VALUES (?, ?, ?, ?, ?, ?, ?)"
DELETE_RULE = "DELETE FROM replication_rules WHERE rule_id = ?"
SELECT_SE_STATUS = "SELECT se, status, reason, changed FROM se_status ORDER BY se"
SELECT_TRANSFERS = f"SELECT {', '.join(TRANSFER_FIELDS)} FROM transfers ORDER BY transfer_id"
SELECT_HISTORY = f"SELECT {', '.join(HISTORY_FIELDS)} FROM history WHERE job_id = ? ORDER BY id"
# The rows of the run holding a job (runs do not overlap: the last one starting at or before it).
SELECT_SHARED_HISTORY = """SELECT status, minor_status, application_status, time, source
    FROM shared_history WHERE first_job_id = (SELECT max(first_job_id) FROM shared_history
    WHERE first_job_id <= ?) AND last_job_id >= ? ORDER BY id"""

# A duplicate (job, attempt) is an error (the batch is undone): it would count twice in buckets.
INSERT_JOB_ACCOUNTING = f"""INSERT INTO job_accounting ({", ".join(JOB_ACCOUNTING_COLUMNS)})
    VALUES ({", ".join("?" * len(JOB_ACCOUNTING_COLUMNS))})"""
# A pilot id met again after its record was forgotten (a pilot started by hand): the first stays.
INSERT_PILOT_ACCOUNTING = "INSERT OR IGNORE INTO pilot_accounting VALUES (?,?,?,?,?,?,?,?,?,?)"
_ADD_TOTALS = """DO UPDATE SET jobs = jobs + excluded.jobs, failed = failed + excluded.failed,
    cpu_seconds = cpu_seconds + excluded.cpu_seconds,
    wall_seconds = wall_seconds + excluded.wall_seconds,
    core_seconds = core_seconds + excluded.core_seconds"""
_BUCKET_KEY = "(dimension, start, period, label)"
ADD_TO_BUCKET = f"""INSERT INTO accounting_buckets VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT {_BUCKET_KEY} {_ADD_TOTALS}"""
DELETE_JOB_ACCOUNTING_BEFORE = "DELETE FROM job_accounting WHERE ended < ?"
DELETE_PILOT_ACCOUNTING_BEFORE = "DELETE FROM pilot_accounting WHERE ended < ?"
DELETE_HOURLY_BEFORE = f"DELETE FROM accounting_buckets WHERE period = {HOUR} AND start < ?"
# A transfer is final once: a second record of it is an error (the batch is undone).
INSERT_TRANSFER_ACCOUNTING = "INSERT INTO transfer_accounting VALUES (?,?,?,?,?,?,?,?,?,?,?,?)"
ADD_TO_TRANSFER_BUCKET = f"""INSERT INTO transfer_buckets VALUES (?, ?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT {_BUCKET_KEY} DO UPDATE SET transfers = transfers + excluded.transfers,
    failed = failed + excluded.failed, bytes = bytes + excluded.bytes,
    seconds = seconds + excluded.seconds"""
DELETE_TRANSFER_ACCOUNTING_BEFORE = "DELETE FROM transfer_accounting WHERE ended < ?"
DELETE_HOURLY_TRANSFERS_BEFORE = f"DELETE FROM transfer_buckets WHERE period = {HOUR} AND start < ?"
INSERT_USAGE_SAMPLE = "INSERT OR IGNORE INTO usage_samples VALUES (?, ?, ?, ?, ?)"
DELETE_USAGE_SAMPLES_BEFORE = "DELETE FROM usage_samples WHERE time < ?"
SELECT_JOB_ACCOUNTING = f"""SELECT {", ".join(JOB_ACCOUNTING_COLUMNS)} FROM job_accounting
    WHERE job_id = ? ORDER BY attempt"""

_job_values = attrgetter(*JOB_FIELDS)
_job_update_values = attrgetter(*JOB_FIELDS[1:], "job_id")
_history_values = attrgetter(*HISTORY_FIELDS)
_pilot_values = attrgetter(*PILOT_FIELDS)
_transfer_values = attrgetter(*TRANSFER_FIELDS)
_STATUS_BY_VALUE = {status.value: status for status in JobStatus}


# What a bad value in a ChangeSet raises on its way into SQLite (besides sqlite3.Error).
_BAD_VALUE_ERRORS = (OverflowError, TypeError, ValueError)


class StatementStore(Store):
    """The reads every SQL store makes the same way: the statements above, run through ``_db``
    (the SQLite connection, or the PostgreSQL store's translator). A failure of the database
    (one of ``db_errors``) is a StoreError naming what could not be read."""

    _db: Database
    db_errors: tuple[type[Exception], ...] = (sqlite3.Error,)

    def description(self, job_id: int) -> dict[str, Any]:
        try:
            blob = self._description_blob(job_id)
        except self.db_errors as exc:
            raise StoreError(f"cannot read job {job_id}: {exc}") from exc
        if blob is None:
            raise JobNotFound(f"job {job_id} not found")
        try:
            description: dict[str, Any] = msgpack.unpackb(blob, raw=False)
        except ValueError as exc:  # every msgpack decoding error is a ValueError
            raise StoreError(f"job {job_id}: stored description is not msgpack: {exc}") from exc
        return description

    def _description_blob(self, job_id: int) -> bytes | None:
        row = self._db.execute(SELECT_DESCRIPTION, (job_id,)).fetchone()
        return None if row is None else bytes(row[0])

    def history(self, job_id: int) -> list[HistoryEntry]:
        try:
            shared = self._db.execute(SELECT_SHARED_HISTORY, (job_id, job_id)).fetchall()
            own = self._db.execute(SELECT_HISTORY, (job_id,)).fetchall()
        except self.db_errors as exc:
            raise StoreError(f"cannot read history of job {job_id}: {exc}") from exc
        return [HistoryEntry(job_id, *row) for row in shared] + [HistoryEntry(*row) for row in own]

    def pilot_output(self, pilot_id: str) -> str | None:
        row = self._read(SELECT_PILOT_OUTPUT, (pilot_id,), f"the output of pilot {pilot_id}")
        return None if row is None else str(row[0])

    def sandbox(self, job_id: int, kind: str) -> str | None:
        row = self._read(SELECT_SANDBOX, (job_id, kind), f"the {kind} sandbox of job {job_id}")
        return None if row is None else str(row[0])

    def job_accounting(self, job_id: int) -> list[JobAccountingRecord]:
        try:
            rows = self._db.execute(SELECT_JOB_ACCOUNTING, (job_id,)).fetchall()
        except self.db_errors as exc:
            raise StoreError(f"cannot read the accounting of job {job_id}: {exc}") from exc
        return [JobAccountingRecord(*row[:-1]) for row in rows]

    def referenced_sandboxes(self) -> set[str]:
        try:
            return {sha256 for (sha256,) in self._db.execute(SELECT_SANDBOXES)}
        except self.db_errors as exc:
            raise StoreError(f"cannot read the sandbox references: {exc}") from exc

    def _read(self, sql: str, parameters: tuple[Any, ...], what: str) -> tuple[Any, ...] | None:
        try:
            row: tuple[Any, ...] | None = self._db.execute(sql, parameters).fetchone()
        except self.db_errors as exc:
            raise StoreError(f"cannot read {what}: {exc}") from exc
        return row

    def probe_results(
        self, since: float, target: str = "", limit: int = 100_000
    ) -> list[ProbeResult]:
        parameters: tuple[Any, ...] = (since, limit)
        sql = SELECT_PROBE_RESULTS
        if target:
            sql, parameters = SELECT_TARGET_PROBE_RESULTS, (target, since, limit)
        errors: tuple[type[Exception], ...] = (*self.db_errors, ValueError)
        try:
            return [_probe_from_row(*row) for row in self._db.execute(sql, parameters)]
        except errors as exc:
            raise StoreError(f"cannot read probe results: {exc}") from exc

    def catalog_files(self, lfns: list[str]) -> dict[str, FileEntry]:
        try:
            return {
                row[0]: FileEntry(*row)
                for chunk in _chunks(lfns)
                for row in self._db.execute(
                    SELECT_CATALOG_FILES.format(marks=", ".join("?" * len(chunk))), chunk
                )
            }
        except self.db_errors as exc:
            raise StoreError(f"cannot read the catalog: {exc}") from exc

    def catalog_replicas(self, lfns: list[str]) -> dict[str, dict[str, str]]:
        found: dict[str, dict[str, str]] = {}
        try:
            for chunk in _chunks(lfns):
                sql = SELECT_REPLICAS_OF.format(marks=", ".join("?" * len(chunk)))
                for lfn, se, status in self._db.execute(sql, chunk):
                    found.setdefault(lfn, {})[se] = status
        except self.db_errors as exc:
            raise StoreError(f"cannot read the catalog: {exc}") from exc
        return found

    def catalog_lookup(self, lfns: list[str]) -> list[tuple[Any, ...]]:
        rows: list[tuple[Any, ...]] = []
        try:
            for chunk in _chunks(sorted(set(lfns))):
                sql = SELECT_LOOKUP.format(marks=", ".join("?" * len(chunk)))
                rows += self._db.execute(sql, chunk).fetchall()
        except self.db_errors as exc:
            raise StoreError(f"cannot read the catalog: {exc}") from exc
        return rows

    def catalog_space(self, ses: list[str]) -> dict[str, int]:
        used = dict.fromkeys(ses, 0)
        if not ses:
            return used
        try:
            sql = SELECT_SPACE.format(marks=", ".join("?" * len(ses)))
            used.update({se: int(total) for se, total in self._db.execute(sql, ses)})
        except self.db_errors as exc:
            raise StoreError(f"cannot read the catalog: {exc}") from exc
        return used

    def catalog_folder(self, folder: str, limit: int) -> list[FileEntry]:
        base = folder.rstrip("/")
        try:
            rows = self._db.execute(SELECT_FOLDER, (base + "/", base + "0", limit))
            return [FileEntry(*row) for row in rows]
        except self.db_errors as exc:
            raise StoreError(f"cannot list {folder} in the catalog: {exc}") from exc


class SqliteStore(StatementStore):
    _db: sqlite3.Connection

    def __init__(self, path: Path, synchronous: str = "full", defer_sync: bool = False) -> None:
        if synchronous not in SYNCHRONOUS_MODES:
            raise ValueError(f"synchronous must be one of {SYNCHRONOUS_MODES}, not {synchronous!r}")
        self.path = Path(path)
        # full + defer_sync: COMMIT writes the WAL without fsync; WalSync is the fsync
        self._wal_sync = WalSync(self.path) if defer_sync and synchronous == "full" else None
        self._unsynced = False
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(
            self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
        )
        try:
            self._configure(synchronous)
            self._migrate()
        except sqlite3.Error as exc:
            self._db.close()
            raise StoreError(f"cannot open store {self.path}: {exc}") from exc
        except BaseException:
            self._db.close()
            raise
        log.info("opened store %s (schema %d, synchronous=%s)", self.path, SCHEMA_VERSION,
                 synchronous)  # fmt: skip
        self._checkpointer = Checkpointer(self.path)
        self._descriptions: OrderedDict[int, bytes] = OrderedDict()  # read ahead, oldest first
        self._snapshot_kept: KeptSnapshot | None = None  # the job snapshot read or written last

    def _description_blob(self, job_id: int) -> bytes | None:
        """From the descriptions read ahead, else read with the next ones."""
        blob = self._descriptions.pop(job_id, None)
        if blob is not None:  # a job is matched once in the common case: no need to keep it
            return blob
        descriptions = self._descriptions
        rows = self._db.execute(SELECT_DESCRIPTIONS_AHEAD, (job_id, DESCRIPTIONS_READ_AHEAD))
        for stored_id, stored in rows:
            if stored_id == job_id:
                blob = bytes(stored)
            else:
                descriptions[stored_id] = bytes(stored)
        while len(descriptions) > DESCRIPTIONS_KEPT:
            descriptions.popitem(last=False)
        return blob

    def _configure(self, synchronous: str) -> None:
        mode = self._db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode != "wal":
            log.warning("store %s: journal mode is %s, not wal", self.path, mode)
            self._wal_sync = None  # no WAL to sync: every COMMIT syncs
        if self._wal_sync is not None:
            synchronous = "normal"  # and the WAL's fsync is WalSync, before any acknowledgement
        self._db.execute(f"PRAGMA synchronous = {synchronous.upper()}")  # validated above
        # Keep the hot part of a million-job database in memory (negative: KiB).
        self._db.execute(f"PRAGMA cache_size = -{CACHE_KIB:d}")
        # Checkpoints run in the Checkpointer's thread, not inside the writer's commits.
        self._db.execute("PRAGMA wal_autocheckpoint = 0")

    def _migrate(self) -> None:
        with self._transaction():
            version = self.schema_version()
            if version > SCHEMA_VERSION:
                raise SchemaTooNew.of(self.path, version, SCHEMA_VERSION)
            for statements in MIGRATIONS[version:]:
                for statement in statements:
                    self._db.execute(statement)
            if version < SCHEMA_VERSION:
                self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION:d}")
                log.info("store %s: schema migrated from %d to %d", self.path, version,
                         SCHEMA_VERSION)  # fmt: skip

    @contextmanager
    def _transaction(self, mode: str = "IMMEDIATE") -> Iterator[sqlite3.Connection]:
        """BEGIN … COMMIT, or ROLLBACK if anything (COMMIT included) raises."""
        self._db.execute(f"BEGIN {mode}")
        try:
            yield self._db
            self._db.execute("COMMIT")
        except BaseException:
            if self._db.in_transaction:  # SQLite may have rolled back already (e.g. disk full)
                self._db.execute("ROLLBACK")
            raise

    # -- writing -----------------------------------------------------------------------------

    def commit(self, changes: ChangeSet) -> None:
        if changes.is_empty():
            return
        try:
            with self._transaction() as db:
                write_changes(db, changes)
            self._unsynced = True
        except (sqlite3.IntegrityError, *_BAD_VALUE_ERRORS) as exc:
            log.error("store %s: a change it cannot hold, rolled back: %s", self.path, exc)
            raise UnstorableValue(f"a value the store cannot hold, rolled back: {exc}") from exc
        except UnstorableValue:
            raise
        except (StoreError, sqlite3.Error) as exc:
            log.error("store %s: commit failed, rolled back: %s", self.path, exc)
            raise StoreError(f"commit failed and was rolled back: {exc}") from exc

    def check_writable(self) -> None:
        """Try a write (the schema version, set to what it is) in a transaction rolled back."""
        db = self._db
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                db.execute(f"PRAGMA user_version = {self.schema_version():d}")
            finally:
                if db.in_transaction:
                    db.execute("ROLLBACK")
        except sqlite3.Error as exc:
            raise StoreError(
                f"store {self.path} is not writable ({exc}): check its file, its folder (the "
                "WAL is written beside it) and the file system; a service cannot run on a "
                "read-only store"
            ) from None

    # -- reading -----------------------------------------------------------------------------

    def load(self) -> LoadedState:
        """Every table, in one read transaction; the jobs from the job snapshot when it is
        sound (dirac_like/store/sqlite_snapshot.py), else from the jobs table."""
        try:
            with self._transaction("DEFERRED") as db:  # one snapshot for all tables
                jobs, self._snapshot_kept = read_snapshot_jobs(
                    db, snapshot_path(self.path), SCHEMA_VERSION, self._jobs_changed_since
                )
                return load_state(db, jobs)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot load store {self.path}: {exc}") from exc

    def _jobs_changed_since(self, history_id: int, made: list[tuple[int, int]]) -> list[JobRecord]:
        """The job rows named by history rows after ``history_id`` or made in ``made`` (ranges
        of job ids; a job in both is read once)."""
        values = _SharedValues()
        jobs = {job.job_id: job for job in map(values.job, self._db.execute(
            SELECT_JOBS_CHANGED_SINCE, (history_id,)))}  # fmt: skip
        for first, last in made:
            for job in map(values.job, self._db.execute(SELECT_JOBS_IN_RANGE, (first, last))):
                jobs[job.job_id] = job
        return [jobs[job_id] for job_id in sorted(jobs)]

    def save_job_snapshot(self, jobs: Collection[JobRecord]) -> int:
        """Write the job snapshot of ``jobs``: every job the store holds, as it holds them
        (every change committed), in any order. Returns its size in bytes. Not
        written again when the one read at load or written last still holds the store's jobs
        (no job changed since: a restart with nothing done)."""
        path = snapshot_path(self.path)
        try:
            remove_leftovers(path)
            with self._transaction() as db:
                the_store_id = store_id(db, create=True)
                assert the_store_id is not None
                stamp = current_stamp(db, SCHEMA_VERSION, the_store_id)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot stamp a job snapshot of {self.path}: {exc}") from exc
        except OSError as exc:
            raise StoreError(f"cannot clear the snapshot's leftovers: {exc}") from exc
        if self._snapshot_kept is not None and self._snapshot_kept.still(path, stamp):
            log.info("job snapshot %s still holds the store's jobs: not written again", path)
            return self._snapshot_kept.size
        try:
            in_order = sorted(jobs, key=attrgetter("job_id"))
            self._snapshot_kept = write_snapshot(path, in_order, stamp)
        except OSError as exc:
            raise StoreError(f"cannot write the job snapshot of {self.path}: {exc}") from exc
        return self._snapshot_kept.size

    def schema_version(self) -> int:
        try:
            version: int = self._db.execute("PRAGMA user_version").fetchone()[0]
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read schema version of {self.path}: {exc}") from exc
        return version

    def deferred_sync(self) -> Callable[[], None] | None:
        return self._wal_sync

    def take_unsynced(self) -> bool:
        unsynced, self._unsynced = self._unsynced and self._wal_sync is not None, False
        return unsynced

    def close(self) -> None:
        self._checkpointer.stop()
        self._db.close()
        if self._wal_sync is not None:
            self._wal_sync.close()


class WalSync:
    """The fsync of a store's WAL file: what ``COMMIT`` at ``synchronous = FULL`` adds to one at
    NORMAL. Every commit whose ``COMMIT`` returned before a call is durable when the call returns
    (its frames, and the WAL header, are in the file the call syncs). Safe to call from another
    thread: it touches no connection, only its own descriptor of the file.

    The WAL could be another file than the one opened (SQLite deletes it when the last connection
    closes; the store keeps two open, so not while it is open): the inode is checked before each
    fsync, and a new file is opened (and its folder synced, so that its name is durable too). An
    error is raised, never retried: after a failed fsync the kernel may have dropped the pages it
    could not write, so a retry that succeeds proves nothing (the service stops instead)."""

    def __init__(self, database: Path) -> None:
        self.path = database.with_name(database.name + "-wal")
        self._fd: int | None = None
        self._inode = -1

    def __call__(self) -> None:
        inode = os.stat(self.path).st_ino
        if self._fd is None or inode != self._inode:
            self.close()
            self._fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
            self._inode = os.fstat(self._fd).st_ino
            folder = os.open(self.path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                os.fsync(folder)
            finally:
                os.close(folder)
        os.fsync(self._fd)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class Checkpointer:
    """Copies the WAL back into the database file from its own thread and connection.

    A checkpoint writes pages at random places in a large file and syncs it; done inside a commit
    (SQLite's default) it stalls the writer. In WAL mode a PASSIVE checkpoint can run beside the
    writer, and sqlite3 releases the GIL while it works.
    """

    def __init__(self, path: Path, interval: float = CHECKPOINT_SECONDS) -> None:
        self._db = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, check_same_thread=False)
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="checkpointer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.checkpoint("PASSIVE")
        self.checkpoint("TRUNCATE")  # at close: leave a short WAL behind
        self._db.close()

    def checkpoint(self, mode: str) -> None:
        try:
            self._db.execute(f"PRAGMA wal_checkpoint({mode})").fetchone()
        except sqlite3.Error as exc:  # busy or failing: the next round tries again
            log.warning("checkpoint (%s) failed: %s", mode, exc)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(60)


def write_changes(db: Database, changes: ChangeSet) -> None:
    """Every statement of one ChangeSet: task queues, new jobs, job changes, history, sites,
    shares, usage, replies, then forgetting old replies (a reply older than the cut-off that this
    same ChangeSet stores is forgotten too)."""
    if changes.new_task_queues:
        db.executemany(INSERT_TASK_QUEUE, map(_task_queue_row, changes.new_task_queues))
    if changes.new_jobs:
        db.executemany(INSERT_JOB, [_job_values(job) for job, _ in changes.new_jobs])
        db.executemany(INSERT_DESCRIPTION, [(job.job_id, blob) for job, blob in changes.new_jobs])
    if changes.changed_jobs:
        _update_jobs(db, changes)
    if changes.shared_history:
        db.executemany(INSERT_SHARED_HISTORY, _shared_history_rows(changes.shared_history))
    if changes.history:
        db.executemany(INSERT_HISTORY, map(_history_values, changes.history))
    if changes.sites:
        db.executemany(UPSERT_SITE, map(_site_row, changes.sites.values()))
    if changes.shares:
        db.executemany(UPSERT_SHARE, changes.shares.items())
    if changes.usage:
        db.executemany(UPSERT_USAGE, map(_usage_row, changes.usage.values()))
    if changes.replies:
        db.executemany(UPSERT_REPLY, map(_reply_row, changes.replies))
    if changes.forget_replies_before is not None:
        db.execute(DELETE_REPLIES_BEFORE, (changes.forget_replies_before,))
    _write_pilots(db, changes)
    if changes.sandboxes:
        db.executemany(UPSERT_SANDBOX, changes.sandboxes)
    _write_monitoring(db, changes)
    _write_accounting(db, changes)
    _write_data(db, changes)
    write_work(db, changes)


def _write_monitoring(db: Database, changes: ChangeSet) -> None:
    if changes.probe_results:
        db.executemany(
            INSERT_PROBE_RESULT,
            [
                (r.target, r.kind.value, r.check, r.status.value, r.message, r.time, r.ce, r.job_id)
                for r in changes.probe_results
            ],
        )
    if changes.statuses:
        db.executemany(
            UPSERT_STATUS,
            [
                (r.kind.value, r.target, r.status.value, r.reason, r.changed, r.automatic)
                for r in changes.statuses.values()
            ],
        )
    if changes.downtimes:
        db.executemany(
            UPSERT_DOWNTIME,
            [
                (
                    d.downtime_id,
                    d.target,
                    d.kind.value,
                    d.start,
                    d.end,
                    d.reason,
                    d.scheduled,
                    d.created,
                    d.cancelled,
                )
                for d in changes.downtimes.values()
            ],
        )


def _write_accounting(db: Database, changes: ChangeSet) -> None:
    """The batch's accounting records, their sums into the hourly and daily buckets, and
    retention (old raw records and old hourly buckets deleted: the daily ones stay)."""
    if changes.job_accounting:
        db.executemany(INSERT_JOB_ACCOUNTING, map(_job_accounting_row, changes.job_accounting))
        for period in (HOUR, DAY):  # hourly for recent days, daily for good
            buckets = bucket_records(changes.job_accounting, period)
            db.executemany(ADD_TO_BUCKET, [(*key, *sums.as_row()) for key, sums in buckets.items()])
    if changes.pilot_accounting:
        db.executemany(INSERT_PILOT_ACCOUNTING, changes.pilot_accounting)
    if changes.transfer_accounting:
        db.executemany(INSERT_TRANSFER_ACCOUNTING, changes.transfer_accounting)
        for period in (HOUR, DAY):
            sums = bucket_transfers(changes.transfer_accounting, period)
            db.executemany(ADD_TO_TRANSFER_BUCKET, [(*key, *row) for key, row in sums.items()])
    if changes.usage_samples:
        db.executemany(INSERT_USAGE_SAMPLE, changes.usage_samples)
    cutoffs = changes.accounting_retention
    if cutoffs is not None:
        for delete in (
            DELETE_JOB_ACCOUNTING_BEFORE,
            DELETE_PILOT_ACCOUNTING_BEFORE,
            DELETE_TRANSFER_ACCOUNTING_BEFORE,
            DELETE_USAGE_SAMPLES_BEFORE,
        ):
            db.execute(delete, (cutoffs.raw_before,))
        db.execute(DELETE_HOURLY_BEFORE, (cutoffs.hourly_before,))
        db.execute(DELETE_HOURLY_TRANSFERS_BEFORE, (cutoffs.hourly_before,))


def _job_accounting_row(record: JobAccountingRecord) -> tuple[Any, ...]:
    return (*record, record.core_seconds)


def _write_data(db: Database, changes: ChangeSet) -> None:
    """The catalog (files, then replicas), SE statuses and transfer requests."""
    files = changes.catalog_files
    if files:
        db.executemany(
            DELETE_CATALOG_FILE, [(lfn,) for lfn, entry in files.items() if entry is None]
        )
        db.executemany(
            UPSERT_CATALOG_FILE, [_file_row(entry) for entry in files.values() if entry is not None]
        )
    if changes.catalog_replicas:
        replicas = [
            (lfn, se, status)
            for lfn, by_se in changes.catalog_replicas.items()
            for se, status in by_se.items()
        ]
        db.executemany(
            DELETE_REPLICA, [(lfn, se) for lfn, se, status in replicas if status is None]
        )
        db.executemany(UPSERT_REPLICA, [row for row in replicas if row[2] is not None])
    if changes.se_status:
        db.executemany(
            UPSERT_SE_STATUS,
            [(r.se, r.status, r.reason, r.changed) for r in changes.se_status.values()],
        )
    if changes.transfers:
        db.executemany(UPSERT_TRANSFER, map(_transfer_values, changes.transfers.values()))
    if changes.rules:
        db.executemany(DELETE_RULE, [(i,) for i, rule in changes.rules.items() if rule is None])
        db.executemany(
            UPSERT_RULE, [astuple(rule) for rule in changes.rules.values() if rule is not None]
        )


def _chunks(items: list[str]) -> list[list[str]]:
    return [items[i : i + LOOKUP_CHUNK] for i in range(0, len(items), LOOKUP_CHUNK)]


def _file_row(entry: FileEntry) -> tuple[Any, ...]:
    return (
        entry.lfn,
        entry.size,
        entry.adler32,
        entry.guid,
        entry.owner,
        entry.group,
        entry.created,
    )


def _write_pilots(db: Database, changes: ChangeSet) -> None:
    if changes.pilots:
        db.executemany(UPSERT_PILOT, map(_pilot_values, changes.pilots.values()))
    if changes.pilot_jobs:
        db.executemany(INSERT_PILOT_JOB, changes.pilot_jobs)
    if changes.pilot_outputs:
        db.executemany(UPSERT_PILOT_OUTPUT, changes.pilot_outputs.items())
    for statement in DELETE_PILOT if changes.forget_pilots else ():
        db.executemany(statement, [(pilot_id,) for pilot_id in changes.forget_pilots])
    if changes.next_pilot_number is not None:
        db.execute(UPSERT_COUNTER, ("next_pilot_number", changes.next_pilot_number))


def _update_jobs(db: Database, changes: ChangeSet) -> None:
    """Write the current fields of every changed job; a job the store does not hold is an error.

    A job inserted by this same ChangeSet was written with its current fields already, unless the
    changed record is a different object, which then wins.
    """
    inserted = {job.job_id: job for job, _ in changes.new_jobs}
    rows = [
        _job_update_values(job)
        for job_id, job in changes.changed_jobs.items()
        if inserted.get(job_id) is not job
    ]
    if not rows:
        return
    cursor = db.executemany(UPDATE_JOB, rows)
    if cursor.rowcount != len(rows):
        stored = {row[0] for row in db.execute("SELECT job_id FROM jobs")}
        missing = sorted(row[-1] for row in rows if row[-1] not in stored)
        raise UnstorableValue(f"changed jobs not in the store: {missing[:10]}")


def _shared_history_rows(runs: list[SharedHistory]) -> list[tuple[Any, ...]]:
    return [
        (run.first_job_id, run.last_job_id, *_history_values(entry)[1:])
        for run in runs
        for entry in run.entries
    ]


def _task_queue_row(task_queue: TaskQueueRow) -> tuple[Any, ...]:
    requirements = msgpack.packb(task_queue.requirements.to_wire())
    return (task_queue.task_queue_id, task_queue.owner, task_queue.group, requirements)


def _site_row(site: SiteRecord) -> tuple[Any, ...]:
    return (
        site.name,
        site.banned,
        site.reason,
        site.changed,
        site.automatic,
        site.drained,
        site.max_running,
    )


def _probe_from_row(
    target: str, kind: str, check: str, status: str, message: str, time: float, ce: str, job_id: int
) -> ProbeResult:
    return ProbeResult(
        target, TargetKind(kind), check, CheckStatus(status), message, time, ce, job_id
    )


def _status_from_row(
    target: str, kind: str, status: str, reason: str, changed: float, automatic: int
) -> StatusRecord:
    return StatusRecord(
        target, TargetKind(kind), ResourceStatus(status), reason, changed, bool(automatic)
    )


def _downtime_from_row(
    downtime_id: int,
    target: str,
    kind: str,
    start: float,
    end: float,
    reason: str,
    scheduled: int,
    created: float,
    cancelled: float,
) -> Downtime:
    return Downtime(
        downtime_id,
        target,
        TargetKind(kind),
        start,
        end,
        reason,
        bool(scheduled),
        created,
        cancelled,
    )


def _usage_row(usage: UsageRecord) -> tuple[Any, ...]:
    return (usage.group, usage.user, usage.usage, usage.stamp)


def _reply_row(reply: StoredReply) -> tuple[Any, ...]:
    return (reply.request_id, reply.reply, reply.time)


def load_state(db: Database, jobs: list[JobRecord] | None = None) -> LoadedState:
    """Every table ``load`` returns, read through ``db`` (a connection, or anything with the
    same ``execute``: the PostgreSQL store passes its dialect translator); ``jobs``: the jobs,
    if the caller read them already (from a job snapshot)."""
    return LoadedState(
        jobs=list(map(_SharedValues().job, db.execute(SELECT_JOBS))) if jobs is None else jobs,
        task_queues=[_task_queue_from_row(*r) for r in db.execute(SELECT_TASK_QUEUES)],
        sites=[
            SiteRecord(
                name,
                bool(banned),
                reason,
                changed,
                bool(automatic),
                bool(drained),
                limit,
            )
            for name, banned, reason, changed, automatic, drained, limit in db.execute(SELECT_SITES)
        ],
        shares=dict(db.execute(SELECT_SHARES).fetchall()),
        usage=[UsageRecord(*row) for row in db.execute(SELECT_USAGE)],
        replies=[StoredReply(*row) for row in db.execute(SELECT_REPLIES)],
        pilots=_load_pilots(db),
        next_pilot_number=_next_pilot_number(db),
        statuses=[_status_from_row(*row) for row in db.execute(SELECT_STATUSES)],
        downtimes=[_downtime_from_row(*row) for row in db.execute(SELECT_DOWNTIMES)],
        se_status=[SEStatusRecord(*row) for row in db.execute(SELECT_SE_STATUS)],
        transfers=[TransferRecord(*row) for row in db.execute(SELECT_TRANSFERS)],
        rules=[RuleRecord(*row) for row in db.execute(SELECT_RULES)],
        bulk_actions=load_bulk_actions(db),
        submissions=load_submissions(db),
    )


def _load_pilots(db: Database) -> list[PilotRecord]:
    pilots = {row[0]: PilotRecord(*row) for row in db.execute(SELECT_PILOTS)}
    for pilot_id, job_id in db.execute(SELECT_PILOT_JOBS):
        pilot = pilots.get(pilot_id)
        if pilot is not None:
            pilot.jobs.append(job_id)
    for pilot in pilots.values():
        pilot.kill_requested = bool(pilot.kill_requested)
    return list(pilots.values())


def _next_pilot_number(db: Database) -> int:
    row = db.execute(SELECT_NEXT_PILOT_NUMBER).fetchone()
    return int(row[0]) if row else 1


class _SharedValues:
    """The jobs read back, with their equal strings and times as one object each: millions of
    jobs have a few owners, groups, sites and minor statuses, and the waiting ones were made a
    slice at a time (their times repeat). A job's memory in the service is then mostly its
    record (docs/performance.md, issue 15)."""

    def __init__(self) -> None:
        self.strings: dict[str, str] = {}
        self.times: dict[float, float] = {}

    def job(self, row: tuple[Any, ...]) -> JobRecord:
        (job_id, owner, group, task_queue_id, priority, status, minor, application, site, name,
         pilot, attempt, reschedules, *times, kill) = row  # fmt: skip
        text, time = self.strings.setdefault, self.times.setdefault
        submitted, updated, matched_at, deadline, heartbeat_at = times
        try:
            known = _STATUS_BY_VALUE[status]
        except KeyError:
            raise StoreError(f"job {job_id} has an unknown status {status!r}") from None
        return JobRecord(
            job_id, text(owner, owner), text(group, group), task_queue_id, priority, known,
            text(minor, minor), text(application, application), text(site, site),
            text(name, name), text(pilot, pilot), attempt, reschedules,
            time(submitted, submitted), time(updated, updated), time(matched_at, matched_at),
            time(deadline, deadline), time(heartbeat_at, heartbeat_at), bool(kill),
        )  # fmt: skip


def _task_queue_from_row(
    task_queue_id: int, owner: str, group: str, requirements: bytes
) -> TaskQueueRow:
    wire = msgpack.unpackb(requirements, raw=False)
    return TaskQueueRow(task_queue_id, owner, group, Requirements.from_wire(wire))
