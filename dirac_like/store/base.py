"""The store interface. SQLite is the embedded default; PostgreSQL can satisfy the same contract.

The contract (tests/integration/test_store_contract.py runs it against every implementation):
- ``commit(changes)`` writes a whole ChangeSet atomically: after a crash either all of it is
  visible to ``load`` or none of it. It returns only once the data is durable.
- ``load()`` returns exactly what was committed: every job with every field, task queues, sites,
  share overrides, usage and remembered replies.
- ``description(job_id)`` returns the job's attribute mapping as submitted (JobNotFound if none);
  ``history(job_id)`` its status history in commit order: the rows of the
  :class:`~dirac_like.model.SharedHistory` run that made it (if any) first, then its own.
- Pilot records load with the jobs matched to them; a pilot's output is read on demand
  (``pilot_output``); forgetting a pilot forgets its jobs list and output too.
- Probe results are appended and read back in time order by ``probe_results``; site/SE statuses
  and downtimes load whole (a later commit of the same key replaces it).
- The replica catalog: ``catalog_files(lfns)`` the stored entries of those LFNs (missing ones
  left out), ``catalog_replicas(lfns)`` their replicas (lfn -> se -> status), ``catalog_folder``
  the entries below a folder in LFN order. SE statuses and transfer requests load with the jobs.
- ``sandbox(job_id, kind)`` is the sha256 of a job's "input" or "output" sandbox (a later
  commit of the same pair replaces it); ``referenced_sandboxes()`` every sha256 a job names.
- ``save_job_snapshot(jobs)`` may keep the jobs as committed so that the next ``load`` reads
  them faster (SQLite: dirac_like/store/sqlite_snapshot.py); ``load`` still returns exactly what
  was committed, later changes included. It relies on what the service always does: a change
  of a job row comes with a history row of that job in the same ChangeSet.
- Accounting records (``changes.job_accounting``) are committed with the statuses they account
  for; ``job_accounting(job_id)`` returns a job's, one per finished attempt. A second record for
  the same (job, attempt) fails the commit (nothing is written).
- One exception to "durable when ``commit`` returns": a store opened with ``defer_sync`` (SQLite
  only, for the central service's loop) returns from ``commit`` once the transaction is written
  and atomic, and makes it durable in :meth:`Store.deferred_sync`'s function, which its caller
  runs (in another thread) before it acknowledges anything it committed.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

from dirac_like.accounting import JobAccountingRecord
from dirac_like.errors import ConfigError
from dirac_like.model import ChangeSet, FileEntry, HistoryEntry, JobRecord, LoadedState
from dirac_like.monitoring import ProbeResult

SCHEMA_VERSION = 11  # dirac_like/store/sqlite.py MIGRATIONS; 10: PostgreSQL's pair tables;
# 11: history rows shared by the jobs made together


class Store(ABC):
    @abstractmethod
    def commit(self, changes: ChangeSet) -> None:
        """Write every change in one transaction; on failure raise StoreError, write nothing."""

    @abstractmethod
    def load(self) -> LoadedState:
        """Everything needed to rebuild the service's in-memory state."""

    @abstractmethod
    def description(self, job_id: int) -> dict[str, Any]:
        """The job's description as stored at submission (JobNotFound if unknown)."""

    @abstractmethod
    def history(self, job_id: int) -> list[HistoryEntry]:
        """The job's status history, oldest first (an empty list for an unknown job)."""

    @abstractmethod
    def pilot_output(self, pilot_id: str) -> str | None:
        """The output a director collected for the pilot (None: none stored)."""

    @abstractmethod
    def sandbox(self, job_id: int, kind: str) -> str | None:
        """The sha256 of the job's ``kind`` ("input"/"output") sandbox, None if it has none."""

    @abstractmethod
    def referenced_sandboxes(self) -> set[str]:
        """Every sandbox sha256 some job refers to (the rest may be collected)."""

    @abstractmethod
    def probe_results(
        self, since: float, target: str = "", limit: int = 100_000
    ) -> list[ProbeResult]:
        """Probe results from ``since`` on (of ``target`` only, if given), oldest first, at most
        ``limit`` (the newest ones when there are more)."""

    @abstractmethod
    def job_accounting(self, job_id: int) -> list[JobAccountingRecord]:
        """The accounting records of the job's finished attempts, oldest first."""

    @abstractmethod
    def catalog_files(self, lfns: list[str]) -> dict[str, FileEntry]:
        """The catalog entries of those of ``lfns`` that are stored."""

    @abstractmethod
    def catalog_replicas(self, lfns: list[str]) -> dict[str, dict[str, str]]:
        """lfn -> se -> replica status, for those of ``lfns`` with stored replicas."""

    def catalog_lookup(self, lfns: list[str]) -> list[tuple[Any, ...]]:
        """One row per replica of each stored file of ``lfns`` (a file without replicas: one row
        with se and status None): (lfn, size, adler32, guid, owner, group, created, se,
        status), by LFN then SE. The fast path of bulk lookups."""
        files = self.catalog_files(lfns)
        replicas = self.catalog_replicas(sorted(files))
        rows: list[tuple[Any, ...]] = []
        for lfn in sorted(files):
            entry = files[lfn]
            head = (lfn, entry.size, entry.adler32, entry.guid, entry.owner, entry.group)
            by_se = sorted(replicas.get(lfn, {}).items())
            rows += [(*head, entry.created, se, status) for se, status in by_se]
            if not by_se:
                rows.append((*head, entry.created, None, None))
        return rows

    @abstractmethod
    def catalog_space(self, ses: list[str]) -> dict[str, int]:
        """se -> bytes of the replicas (Good or Bad) stored on it, for each of ``ses``."""

    @abstractmethod
    def catalog_folder(self, folder: str, limit: int) -> list[FileEntry]:
        """Up to ``limit`` entries whose LFN is below ``folder`` (any depth), in LFN order."""

    def save_job_snapshot(self, jobs: Collection[JobRecord]) -> int:
        """Keep a snapshot of ``jobs`` (every job the store holds, as committed, in any order)
        that the next ``load`` may read instead of the jobs table; returns its size in
        bytes, 0 if this store keeps none (PostgreSQL: its load reads the jobs table whole).
        StoreError if it could not be written (the next load then reads the table)."""
        return 0

    @abstractmethod
    def schema_version(self) -> int:
        """The schema version of the open store."""

    @abstractmethod
    def check_writable(self) -> None:
        """Raise StoreError, naming the reason, if a commit could not be written (a store
        opened read-only, a read-only file or file system). Writes nothing."""

    @abstractmethod
    def close(self) -> None:
        """Release the connection; further calls are errors."""

    def deferred_sync(self) -> Callable[[], None] | None:
        """None (the default): a commit is durable when ``commit`` returns. Otherwise a function
        that makes every commit returned so far durable (it raises OSError if it cannot: then
        nothing committed since the last successful call may be acknowledged); it may run in
        another thread while the store is used, never while it is closed or reopened."""
        return None

    def take_unsynced(self) -> bool:
        """Whether a commit returned since the last call (always False when commits are
        durable when they return): what :meth:`deferred_sync`'s function would have to sync."""
        return False


def open_store(url: str, synchronous: str = "full", defer_sync: bool = False) -> Store:
    """Open a store from a URL: ``sqlite:///path/to/file`` or a plain file path (SQLite), or
    ``postgresql://user:password@host:port/database`` (PostgreSQL, dirac_like/store/postgres.py).
    ``defer_sync``: an SQLite store at ``synchronous = "full"`` leaves the fsync of each commit to
    its caller (:meth:`Store.deferred_sync`); PostgreSQL commits synchronously whatever it says.
    """
    if is_postgres_url(url):
        from dirac_like.store.postgres import PostgresStore

        return PostgresStore(url, synchronous=synchronous)
    from dirac_like.store.sqlite import SqliteStore

    return SqliteStore(store_file(url), synchronous=synchronous, defer_sync=defer_sync)


def is_postgres_url(url: str) -> bool:
    return url.startswith(("postgresql://", "postgres://"))


def store_file(url: str) -> Path:
    """The file of an SQLite store URL (``sqlite:///path/to/file`` or a plain file path)."""
    if is_postgres_url(url):
        raise ConfigError(
            f"store.url names a PostgreSQL store ({url.split('@')[-1]}): this reads an SQLite "
            "store file and cannot work on PostgreSQL"
        )
    return Path(url.removeprefix("sqlite://") if url.startswith("sqlite://") else url)
