"""Bulk actions in progress: which jobs are left to act on, and how far each action got.

A bulk action (``job kill --select ...``) is decided at once (its jobs are the selection's
matches when it is accepted, in job id order) and carried out by the service loop a batch at a
time (:meth:`BulkBook.next_batch`), between two batches of requests: the service never waits for
more than one batch of a bulk action. Kept in memory only: an action a restart interrupted is
not resumed (the audit log and the service log name it, and its status says it is gone).

Pure: no I/O.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from dirac_like.errors import InvalidArgument

MAX_SKIPPED_SAMPLE = 10
MAX_FINISHED_KEPT = 100


@dataclass
class BulkAction:
    bulk_id: int
    action: str
    selection: str
    owner: str  # "": any owner (an admin's selection)
    count: int
    left: deque[int]
    done: int = 0
    skipped: int = 0
    skipped_sample: list[str] = field(default_factory=list)

    @property
    def finished(self) -> bool:
        return not self.left

    def skip(self, job_id: int, why: str) -> None:
        self.skipped += 1
        if len(self.skipped_sample) < MAX_SKIPPED_SAMPLE:
            self.skipped_sample.append(f"job {job_id}: {why}")


class BulkBook:
    def __init__(self) -> None:
        self.actions: dict[int, BulkAction] = {}
        self.next_id = 1

    def start(self, action: str, selection: str, owner: str, job_ids: list[int]) -> BulkAction:
        bulk = BulkAction(self.next_id, action, selection, owner, len(job_ids), deque(job_ids))
        self.actions[bulk.bulk_id] = bulk
        self.next_id += 1
        finished = [b for b in self.actions.values() if b.finished]
        for old in finished[:-MAX_FINISHED_KEPT]:
            del self.actions[old.bulk_id]
        return bulk

    def get(self, bulk_id: int, owner: str = "") -> BulkAction:
        bulk = self.actions.get(bulk_id)
        if bulk is None or (owner and bulk.owner != owner):
            raise InvalidArgument(f"no bulk action {bulk_id} (it may predate a restart)")
        return bulk

    @property
    def pending(self) -> bool:
        return any(not bulk.finished for bulk in self.actions.values())

    def next_batch(self, size: int) -> tuple[BulkAction, list[int]] | None:
        """The oldest unfinished action and up to ``size`` of its job ids (taken off it)."""
        for bulk in self.actions.values():
            if bulk.left:
                take = min(size, len(bulk.left))
                return bulk, [bulk.left.popleft() for _ in range(take)]
        return None
