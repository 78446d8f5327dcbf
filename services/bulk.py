"""Bulk actions in progress: which jobs are left to act on, and how far each action got.

A bulk action (``job kill --select ...``) is decided at once (its jobs are the selection's
matches when it is accepted, in job id order) and carried out by the service loop a batch at a
time (:meth:`BulkBook.next_batch`), between two batches of requests: the service never waits for
more than one batch of a bulk action, and the loop paces the batches (services/pacing.py) so
that it sleeps in between rather than spinning.

Durable: an action's job ids are written once with the batch that accepts it, and its progress
(how many ids were taken, done, skipped) with every batch that acts on it, in the same
transaction as the jobs it changed. After a restart the action goes on from where the last
committed batch left it: no job is acted on twice, none is forgotten.

Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from dirac_like.errors import InvalidArgument
from dirac_like.model import BulkActionRecord

from .journal import Journal

MAX_SKIPPED_SAMPLE = 10
MAX_FINISHED_KEPT = 100


@dataclass
class BulkAction:
    bulk_id: int
    action: str
    selection: str
    owner: str  # "": any owner (an admin's selection)
    count: int
    job_ids: list[int]
    started: float = 0.0
    position: int = 0  # job ids taken so far
    done: int = 0
    skipped: int = 0
    skipped_sample: list[str] = field(default_factory=list)

    @property
    def finished(self) -> bool:
        return self.position >= len(self.job_ids)

    def skip(self, job_id: int, why: str) -> None:
        self.skipped += 1
        if len(self.skipped_sample) < MAX_SKIPPED_SAMPLE:
            self.skipped_sample.append(f"job {job_id}: {why}")

    def record(self) -> BulkActionRecord:
        return BulkActionRecord(
            self.bulk_id,
            self.action,
            self.selection,
            self.owner,
            self.count,
            self.position,
            self.done,
            self.skipped,
            tuple(self.skipped_sample),
            self.started,
        )

    @classmethod
    def restored(cls, record: BulkActionRecord, job_ids: list[int]) -> BulkAction:
        r = record
        return cls(r.bulk_id, r.action, r.selection, r.owner, r.count, job_ids, r.started,
                   r.position, r.done, r.skipped, list(r.skipped_sample))  # fmt: skip


class BulkBook:
    def __init__(
        self, journal: Journal, loaded: Iterable[tuple[BulkActionRecord, list[int]]] = ()
    ) -> None:
        self.journal = journal
        self.actions: dict[int, BulkAction] = {}
        for record, job_ids in loaded:
            self.actions[record.bulk_id] = BulkAction.restored(record, job_ids)
        self.next_id = max(self.actions, default=0) + 1

    def start(
        self, action: str, selection: str, owner: str, job_ids: list[int], now: float = 0.0
    ) -> BulkAction:
        bulk = BulkAction(self.next_id, action, selection, owner, len(job_ids), job_ids, now)
        self.actions[bulk.bulk_id] = bulk
        self.next_id += 1
        self.journal.changes.bulk_job_ids[bulk.bulk_id] = job_ids
        self.saved(bulk)
        finished = [b for b in self.actions.values() if b.finished]
        for old in finished[:-MAX_FINISHED_KEPT]:
            del self.actions[old.bulk_id]
            self.journal.changes.bulk_actions[old.bulk_id] = None
        return bulk

    def saved(self, bulk: BulkAction) -> None:
        """Write the action's progress with the current batch."""
        self.journal.changes.bulk_actions[bulk.bulk_id] = bulk.record()

    def get(self, bulk_id: int, owner: str = "") -> BulkAction:
        bulk = self.actions.get(bulk_id)
        if bulk is None or (owner and bulk.owner != owner):
            raise InvalidArgument(f"no bulk action {bulk_id} (only the last {MAX_FINISHED_KEPT} "
                                  "finished ones are kept)")  # fmt: skip
        return bulk

    @property
    def pending(self) -> bool:
        return any(not bulk.finished for bulk in self.actions.values())

    def next_batch(self, size: int) -> tuple[BulkAction, list[int]] | None:
        """The oldest unfinished action and up to ``size`` of its job ids (taken off it; the
        caller acts on them and then calls :meth:`saved`)."""
        for bulk in self.actions.values():
            if not bulk.finished:
                taken = bulk.job_ids[bulk.position : bulk.position + size]
                bulk.position += len(taken)
                return bulk, taken
        return None
