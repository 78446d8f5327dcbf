"""What the current batch changed, and the batches on their way to the store.

Every part of the central state writes what it changes into ``journal.changes`` (a
:class:`~dirac_like.model.ChangeSet`). The service loop takes it once per batch (:meth:`take`),
writes it in one transaction and then calls :meth:`committed`. Until then a taken change set is
*in flight*: reads that go to the store (a job's history, its sandboxes, its description) look here
first, so nothing that was acknowledged in memory is missing from a reply.

Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from dirac_like.model import ChangeSet, FileEntry, HistoryEntry
from dirac_like.monitoring import ProbeResult


class Journal:
    def __init__(self) -> None:
        self.changes = ChangeSet()
        self.in_flight: list[ChangeSet] = []  # taken for the store, not yet committed
        self._spare: ChangeSet | None = None  # an empty set, given back by put_back
        # descriptions of jobs submitted but not yet in the store
        self.new_descriptions: dict[int, dict[str, Any]] = {}

    def take(self) -> ChangeSet:
        """What changed since the last call; it is in flight until :meth:`committed`."""
        changes, self.changes = self.changes, self._spare or ChangeSet()
        self._spare = None
        self.in_flight.append(changes)
        return changes

    def put_back(self, changes: ChangeSet) -> None:
        """``changes``, just taken, is not written now (it holds only what may wait for a later
        commit: services/durability.py): the next batch's changes are added to it."""
        assert self.changes.is_empty(), "put back right after it was taken"
        self._land(changes)
        self.changes, self._spare = changes, self.changes  # a turn that changed nothing: no new set

    def committed(self, changes: ChangeSet) -> None:
        """The store holds ``changes`` now: read them from there from now on."""
        self._land(changes)
        for job, _ in changes.new_jobs:
            self.new_descriptions.pop(job.job_id, None)

    def _uncommitted(self) -> Iterator[ChangeSet]:
        """Change sets not in the store yet, oldest first."""
        yield from self.in_flight
        yield self.changes

    def history(self, job_id: int) -> list[HistoryEntry]:
        """History rows of ``job_id`` not in the store yet, oldest first (the rows of the run
        that made it, if it is not in the store yet, before its own)."""
        shared = [
            entry
            for changes in self._uncommitted()
            for run in changes.shared_history
            if run.holds(job_id)
            for entry in run.of(job_id)
        ]
        return shared + [
            entry
            for changes in self._uncommitted()
            for entry in changes.history
            if entry.job_id == job_id
        ]

    def sandbox(self, job_id: int, kind: str) -> str | None:
        """The newest uncommitted ``kind`` sandbox of ``job_id`` (None: ask the store)."""
        for changes in reversed(list(self._uncommitted())):
            for changed_job, changed_kind, sha256 in reversed(changes.sandboxes):
                if changed_job == job_id and changed_kind == kind:
                    return sha256
        return None

    def sandboxes(self) -> set[str]:
        """Every sandbox an uncommitted change names."""
        return {sha256 for changes in self._uncommitted() for _, _, sha256 in changes.sandboxes}

    def probe_results(self) -> list[ProbeResult]:
        """Probe results not in the store yet, oldest batch first."""
        return [result for changes in self._uncommitted() for result in changes.probe_results]

    # -- the replica catalog ----------------------------------------------------------------------

    def catalog_file(self, lfn: str) -> tuple[bool, FileEntry | None]:
        """(True, the newest uncommitted entry of ``lfn``, None if removed), or (False, None)
        when no uncommitted change names it (ask the store)."""
        for changes in reversed(list(self._uncommitted())):
            if lfn in changes.catalog_files:
                return True, changes.catalog_files[lfn]
        return False, None

    def catalog_pending(self) -> bool:
        """Whether any uncommitted change touches the catalog (else the store is the truth)."""
        return any(
            changes.catalog_files or changes.catalog_replicas for changes in self._uncommitted()
        )

    def replica_changes(self, lfn: str) -> list[dict[str, str | None]]:
        """The uncommitted replica changes of ``lfn``, oldest first (se -> status, None: gone)."""
        return [
            changes.catalog_replicas[lfn]
            for changes in self._uncommitted()
            if lfn in changes.catalog_replicas
        ]

    def files_below(self, prefix: str) -> dict[str, FileEntry | None]:
        """Uncommitted entries whose LFN starts with ``prefix``, newest winning."""
        found: dict[str, FileEntry | None] = {}
        for changes in self._uncommitted():
            for lfn, entry in changes.catalog_files.items():
                if lfn.startswith(prefix):
                    found[lfn] = entry
        return found

    def _land(self, changes: ChangeSet) -> None:
        """``changes`` is no longer in flight (by identity: two change sets may be equal)."""
        self.in_flight = [taken for taken in self.in_flight if taken is not changes]
