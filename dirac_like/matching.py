"""Task queues and the matcher. Pure: no I/O, no clock; ``now`` comes in.

Waiting jobs are grouped in task queues: one per (owner, group, requirements). Inside a queue the
jobs wait in a heap ordered by (priority desc, job id asc). A pilot asking for work is matched in
three steps, each independent of the number of waiting jobs:

1. the task queues whose static requirements the pilot meets (site, CE, bans, platform, tags,
   required tags, owner group) come from a cache keyed by those pilot properties;
2. among them, the group with the smallest load per share, then its user with the smallest load
   per share (hierarchical fair share, :mod:`dirac_like.shares`);
3. of that user's queues that also fit the pilot's cores, memory and CPU time, the one whose next
   job has the highest priority (then the oldest); its next job is popped in O(log n).

A job with a core range (Min/MaxNumberOfProcessors) fits a pilot with at least its minimum free;
the match grants it as many cores as the pilot has, up to its maximum, in steps of its
granularity (:func:`cores_granted`).
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from dirac_like.model import Requirements
from dirac_like.protocol import PilotResources
from dirac_like.shares import FairShare


class TaskQueue:
    """Waiting jobs with identical owner, group and requirements."""

    __slots__ = ("_heap", "_members", "group", "owner", "requirements", "task_queue_id")

    def __init__(self, task_queue_id: int, owner: str, group: str, requirements: Requirements):
        self.task_queue_id = task_queue_id
        self.owner = owner
        self.group = group
        self.requirements = requirements
        self._heap: list[tuple[int, int]] = []  # (-priority, job_id); may hold removed entries
        self._members: set[int] = set()

    def __len__(self) -> int:
        return len(self._members)

    def push(self, job_id: int, priority: int) -> None:
        if job_id not in self._members:
            self._members.add(job_id)
            heapq.heappush(self._heap, (-priority, job_id))

    def discard(self, job_id: int) -> None:
        """Remove a job (killed while waiting); its heap entry is skipped later."""
        self._members.discard(job_id)

    def __contains__(self, job_id: int) -> bool:
        return job_id in self._members

    def peek(self) -> tuple[int, int] | None:
        """(-priority, job_id) of the next job, or None if empty."""
        heap = self._heap
        while heap and heap[0][1] not in self._members:
            heapq.heappop(heap)
        if not heap:
            self._heap = []  # let go of the space removed entries held
        return heap[0] if heap else None

    def pop(self) -> int:
        top = self.peek()
        assert top is not None, "pop from an empty task queue"
        heapq.heappop(self._heap)
        self._members.discard(top[1])
        return top[1]

    def job_ids(self) -> Iterator[int]:
        return iter(self._members)

    def fits_static(self, pilot: PilotResources) -> bool:
        """Requirements that do not change during a pilot's life."""
        req = self.requirements
        if req.sites and pilot.site not in req.sites:
            return False
        if req.ces and pilot.ce not in req.ces:
            return False
        if pilot.site in req.banned_sites:
            return False
        if req.platforms and pilot.platform not in req.platforms:
            return False
        if req.tags and not set(req.tags) <= set(pilot.tags):
            return False
        if pilot.required_tags and not set(pilot.required_tags) <= set(req.tags):
            return False
        return not pilot.owner_group or pilot.owner_group == self.group

    def fits_capacity(self, pilot: PilotResources) -> bool:
        """Requirements on what the pilot has left: cores, memory, CPU time."""
        req = self.requirements
        if req.cores > pilot.cores:
            return False
        if req.max_ram_mb and req.max_ram_mb > pilot.memory_mb:
            return False
        return not (pilot.cpu_time_left and req.cpu_time > pilot.cpu_time_left)

    def fits(self, pilot: PilotResources) -> bool:
        return self.fits_static(pilot) and self.fits_capacity(pilot)


def _static_key(pilot: PilotResources) -> tuple[object, ...]:
    return (
        pilot.site,
        pilot.ce,
        pilot.platform,
        frozenset(pilot.tags),
        frozenset(pilot.required_tags),
        pilot.owner_group,
    )


def cores_granted(requirements: Requirements, free_cores: int) -> int:
    """The cores a job gets from a pilot with ``free_cores``: its minimum, plus as many steps of
    its granularity as fit below both its maximum and what the pilot has."""
    low = requirements.cores
    high = min(max(requirements.max_cores, low), free_cores)
    if high <= low:
        return low
    step = max(1, requirements.core_step)
    return low + (high - low) // step * step


@dataclass(frozen=True)
class Match:
    job_id: int
    task_queue: TaskQueue
    cores: int = 1  # granted to the job (its task queue's core range, within the pilot's)


class Matcher:
    def __init__(self, shares: FairShare) -> None:
        self.shares = shares
        self.task_queues: dict[int, TaskQueue] = {}
        self._by_identity: dict[tuple[str, str, Requirements], TaskQueue] = {}
        # static pilot key -> group -> user -> task queues it may take jobs from
        self._eligible: dict[tuple[object, ...], dict[str, dict[str, list[TaskQueue]]]] = {}

    # -- task queues -----------------------------------------------------------------------------

    def find(self, owner: str, group: str, requirements: Requirements) -> TaskQueue | None:
        return self._by_identity.get((owner, group, requirements))

    def add_task_queue(self, task_queue: TaskQueue) -> TaskQueue:
        """Register a queue; if one with the same identity exists, that one is returned."""
        identity = (task_queue.owner, task_queue.group, task_queue.requirements)
        existing = self._by_identity.get(identity)
        if existing is not None:
            self.task_queues[task_queue.task_queue_id] = existing
            return existing
        self.task_queues[task_queue.task_queue_id] = task_queue
        self._by_identity[identity] = task_queue
        self._eligible.clear()
        return task_queue

    def drop_empty(self) -> list[int]:
        """Forget task queues with no waiting job; returns their ids."""
        empty = [tq for tq in self._by_identity.values() if not len(tq)]
        for task_queue in empty:
            del self._by_identity[(task_queue.owner, task_queue.group, task_queue.requirements)]
        dropped = {id(tq) for tq in empty}
        gone = [i for i, tq in self.task_queues.items() if id(tq) in dropped]
        for task_queue_id in gone:
            del self.task_queues[task_queue_id]
        if empty:
            self._eligible.clear()
        return gone

    def unique_task_queues(self) -> list[TaskQueue]:
        return list(self._by_identity.values())

    # -- matching --------------------------------------------------------------------------------

    def eligible(self, pilot: PilotResources) -> dict[str, dict[str, list[TaskQueue]]]:
        key = _static_key(pilot)
        tree = self._eligible.get(key)
        if tree is None:
            tree = {}
            for task_queue in self._by_identity.values():
                if task_queue.fits_static(pilot):
                    users = tree.setdefault(task_queue.group, {})
                    users.setdefault(task_queue.owner, []).append(task_queue)
            self._eligible[key] = tree
        return tree

    def match(self, pilot: PilotResources, now: float) -> Match | None:
        """Pop the job that best fits ``pilot`` under fair share, or None."""
        tree = self.eligible(pilot)
        shares = self.shares
        for group in shares.rank_groups(tree, now):
            users = tree[group]
            for user in shares.rank_users(group, users, now):
                task_queue = _best_queue(users[user], pilot)
                if task_queue is not None:
                    cores = cores_granted(task_queue.requirements, pilot.cores)
                    return Match(task_queue.pop(), task_queue, cores)
        return None

    def count_eligible(self, pilot: PilotResources) -> int:
        """How many waiting jobs this pilot could run (what a site director sizes by)."""
        return sum(
            len(tq)
            for users in self.eligible(pilot).values()
            for queues in users.values()
            for tq in queues
            if tq.fits_capacity(pilot)
        )


def _best_queue(queues: Iterable[TaskQueue], pilot: PilotResources) -> TaskQueue | None:
    best, best_top = None, None
    for task_queue in queues:
        top = task_queue.peek()
        if top is None or (best_top is not None and top >= best_top):
            continue
        if task_queue.fits_capacity(pilot):
            best, best_top = task_queue, top
    return best
