"""The dashboard's reads: the central service's store (SQLite or PostgreSQL), read-only.

Every read is one statement, one read-only transaction of :mod:`dirac_like.store.reading`
(SQLite: a connection of its own, ``mode=ro`` and ``PRAGMA query_only``; PostgreSQL: a read-only
session, the store's own translation of these statements), so it sees one committed state and
this process cannot write the store by mistake. The central service commits before it answers,
so what a page shows was acknowledged; readers never block the service's writer. All values
reach SQL as parameters, never as text.

Pure results: small frozen rows (:mod:`services.web.views` turns them into pages).
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack

from dirac_like.errors import StoreError
from dirac_like.model import HistoryEntry, SiteRecord, TransferRecord, UsageRecord
from dirac_like.monitoring import (
    HEALTH_PREFIX,
    SEVERITY,
    CheckStatus,
    Downtime,
    ProbeResult,
    TargetKind,
)
from dirac_like.states import ACTIVE_STATUSES
from dirac_like.store.database import Database
from dirac_like.store.reading import open_reading
from dirac_like.store.sqlite import SELECT_HISTORY, SELECT_SHARED_HISTORY, TRANSFER_FIELDS

MAX_PROBE_RUNS = 500_000  # a fortnight of 300 CEs and SEs probed every 10 minutes
_RANK = " ".join(f"WHEN '{status.value}' THEN {rank}" for status, rank in SEVERITY.items())
_STATUS = " ".join(f"WHEN {rank} THEN '{status.value}'" for status, rank in SEVERITY.items())
SELECT_PROBE_OUTCOMES = f"""SELECT * FROM (SELECT target, kind, ce, job_id, time,
    CASE max(CASE status {_RANK} END) {_STATUS} END FROM probe_results
    WHERE time >= ? AND check_name NOT LIKE ? GROUP BY time, kind, target, ce, job_id
    ORDER BY time DESC LIMIT ?) AS runs ORDER BY time"""
JOB_COLUMNS = (
    "job_id",
    "owner",
    "grp",
    "status",
    "minor_status",
    "application_status",
    "site",
    "job_name",
    "pilot_id",
    "attempt",
    "reschedules",
    "submitted",
    "updated",
    "priority",
)


@dataclass(frozen=True)
class CountRow:
    status: str
    site: str
    group: str
    jobs: int


@dataclass(frozen=True)
class JobRow:
    job_id: int
    owner: str
    group: str
    status: str
    minor_status: str
    application_status: str
    site: str
    job_name: str
    pilot_id: str
    attempt: int
    reschedules: int
    submitted: float
    updated: float
    priority: int


@dataclass(frozen=True)
class JobQuery:
    """A job search; None (or empty) fields do not filter. ``name`` matches a part of the
    job name. ``before``: only jobs with a smaller id (the next page)."""

    owner: str | None = None
    status: str | None = None
    site: str | None = None
    group: str | None = None
    name: str | None = None
    before: int | None = None
    limit: int = 50


@dataclass(frozen=True)
class PilotCount:
    site: str
    ce: str
    state: str
    pilots: int


@dataclass(frozen=True)
class RunningCores:
    group: str
    owner: str
    cores: int


class StoreReader:
    """``store``: the store's URL (``store.url``: an SQLite file or ``postgresql://...``) or
    its file's Path."""

    def __init__(self, store: str | Path) -> None:
        self.reading = open_reading(store)

    def _read(self) -> AbstractContextManager[Database]:
        return self.reading.read(snapshot=False)  # every read here is one statement

    def check(self) -> None:
        """StoreError unless the store is there (reachable) with the jobs' tables."""
        self.reading.check(1, "jobs")

    def close(self) -> None:
        self.reading.close()

    # -- jobs ------------------------------------------------------------------------------------

    def job_counts(self, owner: str | None = None) -> list[CountRow]:
        """Jobs by (status, site, group): all jobs, or ``owner``'s."""
        where, values = ("WHERE owner = ?", (owner,)) if owner is not None else ("", ())
        sql = f"SELECT status, site, grp, count(*) FROM jobs {where} GROUP BY status, site, grp"
        with self._read() as db:
            return [CountRow(*row) for row in db.execute(sql, values)]

    def search(self, query: JobQuery) -> list[JobRow]:
        """Jobs matching ``query``, newest first, at most ``query.limit``."""
        clauses, values = _job_filters(query)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        sql = f"SELECT {', '.join(JOB_COLUMNS)} FROM jobs {where} ORDER BY job_id DESC LIMIT ?"
        with self._read() as db:
            return [JobRow(*row) for row in db.execute(sql, (*values, query.limit))]

    def job(self, job_id: int) -> JobRow | None:
        sql = f"SELECT {', '.join(JOB_COLUMNS)} FROM jobs WHERE job_id = ?"
        with self._read() as db:
            row = db.execute(sql, (job_id,)).fetchone()
        return None if row is None else JobRow(*row)

    def job_owner(self, job_id: int) -> str | None:
        with self._read() as db:
            row = db.execute("SELECT owner FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
        return None if row is None else str(row[0])

    def job_pilot(self, job_id: int) -> str | None:
        with self._read() as db:
            row = db.execute("SELECT pilot_id FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
        return str(row[0]) if row and row[0] else None

    def history(self, job_id: int) -> list[HistoryEntry]:
        """The rows of the run that made the job (SharedHistory), then its own."""
        with self._read() as db:
            shared = db.execute(SELECT_SHARED_HISTORY, (job_id, job_id)).fetchall()
            own = db.execute(SELECT_HISTORY, (job_id,)).fetchall()
        return [HistoryEntry(job_id, *row) for row in shared] + [HistoryEntry(*row) for row in own]

    def description(self, job_id: int) -> dict[str, Any] | None:
        with self._read() as db:
            row = db.execute(
                "SELECT description FROM descriptions WHERE job_id = ?", (job_id,)
            ).fetchone()
        if row is None:
            return None
        try:
            description: dict[str, Any] = msgpack.unpackb(row[0], raw=False)
        except ValueError as exc:
            raise StoreError(f"job {job_id}: stored description is not msgpack: {exc}") from exc
        return description

    def output_sandbox(self, job_id: int) -> str | None:
        with self._read() as db:
            row = db.execute(
                "SELECT sha256 FROM sandboxes WHERE job_id = ? AND kind = 'output'", (job_id,)
            ).fetchone()
        return None if row is None else str(row[0])

    # -- sites, pilots, shares -------------------------------------------------------------------

    def sites(self) -> list[SiteRecord]:
        with self._read() as db:
            rows = db.execute("SELECT name, banned, reason, changed FROM sites ORDER BY name")
            return [
                SiteRecord(name, bool(banned), reason, changed)
                for name, banned, reason, changed in rows
            ]

    def site_statuses(self) -> dict[str, tuple[str, str]]:
        """The monitoring agent's status of each site: site -> (status, reason)."""
        with self._read() as db:
            rows = db.execute(
                "SELECT target, status, reason FROM resource_status WHERE kind = 'site'"
            )
            return {target: (status, reason) for target, status, reason in rows}

    def resource_statuses(self) -> dict[tuple[str, str], str]:
        """The monitoring agent's status of every site and SE: (kind, target) -> status."""
        with self._read() as db:
            rows = db.execute("SELECT kind, target, status FROM resource_status")
            return {(kind, target): status for kind, target, status in rows}

    def probe_outcomes(self, since: float, limit: int = MAX_PROBE_RUNS) -> list[ProbeResult]:
        """One result per probe run from ``since`` on (the newest ``limit``), oldest first: the
        run's worst check, as :func:`dirac_like.monitoring.outcome_of` takes it, summed up by
        the database (a run has ten checks or so); health findings left out."""
        with self._read() as db:
            return [
                ProbeResult(target, TargetKind(kind), "run", CheckStatus(status), "", time, ce, job)
                for target, kind, ce, job, time, status in db.execute(
                    SELECT_PROBE_OUTCOMES, (since, HEALTH_PREFIX + "%", limit)
                )
            ]

    def downtimes(self, since: float) -> list[Downtime]:
        """Downtimes that end after ``since`` (cancelled ones too: they count until cancelled)."""
        sql = (
            "SELECT downtime_id, target, kind, start, end_time, reason, scheduled, created, "
            "cancelled FROM downtimes WHERE end_time >= ? ORDER BY downtime_id"
        )
        with self._read() as db:
            return [
                Downtime(i, t, TargetKind(k), start, end, reason, bool(sched), created, cancelled)
                for i, t, k, start, end, reason, sched, created, cancelled in db.execute(
                    sql, (since,)
                )
            ]

    def usage_samples(self, job_id: int, attempt: int) -> list[tuple[float, float, float]]:
        """The kept usage samples of one attempt of a job: (time, cpu seconds, rss MB)."""
        sql = (
            "SELECT time, cpu_seconds, rss_mb FROM usage_samples WHERE job_id = ? AND "
            "attempt = ? ORDER BY time"
        )
        with self._read() as db:
            return [tuple(row) for row in db.execute(sql, (job_id, attempt))]

    def transfer_counts(self) -> list[tuple[str, str, str, int]]:
        """Transfer requests by (source, destination, status)."""
        sql = (
            "SELECT source, destination, status, count(*) FROM transfers "
            "GROUP BY source, destination, status"
        )
        with self._read() as db:
            return [tuple(row) for row in db.execute(sql)]

    def failed_transfers(self, limit: int = 50) -> list[TransferRecord]:
        """The latest Failed transfer requests, newest first (with their reasons)."""
        sql = (
            f"SELECT {', '.join(TRANSFER_FIELDS)} FROM transfers WHERE status = 'Failed' "
            "ORDER BY updated DESC LIMIT ?"
        )
        with self._read() as db:
            return [TransferRecord(*row) for row in db.execute(sql, (limit,))]

    def pilot_counts(self) -> list[PilotCount]:
        sql = "SELECT site, ce, state, count(*) FROM pilots GROUP BY site, ce, state"
        with self._read() as db:
            return [PilotCount(*row) for row in db.execute(sql)]

    def pilot_site(self, pilot_id: str) -> str | None:
        with self._read() as db:
            row = db.execute("SELECT site FROM pilots WHERE pilot_id = ?", (pilot_id,)).fetchone()
        return None if row is None else str(row[0])

    def pilot_credential(self, pilot_id: str) -> str:
        with self._read() as db:
            row = db.execute(
                "SELECT credential FROM pilots WHERE pilot_id = ?", (pilot_id,)
            ).fetchone()
        return "" if row is None else str(row[0])

    def sandbox_holder(self, sha256: str, name: str) -> bool:
        """The dashboard authorizes no sandbox by its hash (a job's output goes by the job)."""
        return False

    def pilot_input_sandbox(self, sha256: str, credential: str, pilot_id: str) -> bool:
        return False  # the dashboard acts for people, never as a pilot

    def share_overrides(self) -> dict[str, float]:
        """Group shares set with set-share (they override the configuration)."""
        with self._read() as db:
            return {grp: float(share) for grp, share in db.execute("SELECT grp, share FROM shares")}

    def usage(self) -> list[UsageRecord]:
        with self._read() as db:
            rows = db.execute("SELECT grp, user_name, usage, stamp FROM usage")
            return [UsageRecord(*row) for row in rows]

    def running_cores(self) -> list[RunningCores]:
        """Cores held by active jobs (matched to a pilot, running, ...), by group and owner:
        each at its task queue's minimum (a job granted more of a core range counts its
        minimum; the store does not keep the grant)."""
        marks = ", ".join("?" * len(ACTIVE_STATUSES))
        sql = (
            f"SELECT j.grp, j.owner, t.requirements, count(*) FROM jobs j JOIN task_queues t "
            f"ON t.task_queue_id = j.task_queue_id WHERE j.status IN ({marks}) "
            "GROUP BY j.grp, j.owner, t.task_queue_id"  # t's key: its requirements are one
        )
        totals: dict[tuple[str, str], int] = {}
        with self._read() as db:
            for group, owner, requirements, jobs in db.execute(
                sql, tuple(s.value for s in ACTIVE_STATUSES)
            ):
                cores = int(msgpack.unpackb(requirements, raw=False).get("cores", 1))
                totals[(group, owner)] = totals.get((group, owner), 0) + cores * jobs
        return [RunningCores(g, o, c) for (g, o), c in sorted(totals.items())]


def _job_filters(query: JobQuery) -> tuple[list[str], list[Any]]:
    clauses: list[str] = []
    values: list[Any] = []
    for column, value in (
        ("owner", query.owner),
        ("status", query.status),
        ("site", query.site),
        ("grp", query.group),
    ):
        if value:
            clauses.append(f"{column} = ?")
            values.append(value)
    if query.name:
        # lower(): SQLite's LIKE ignores the case of ASCII letters, PostgreSQL's does not
        clauses.append("lower(job_name) LIKE lower(?) ESCAPE '\\'")
        values.append("%" + _escape_like(query.name) + "%")
    if query.before is not None:
        clauses.append("job_id < ?")
        values.append(query.before)
    return clauses, values


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
