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

:meth:`Matcher.match_or_hold` is the same match for a multi-core pilot that may be asked to
drain: when the group owed cores has only jobs bigger than the pilot's free cores, the pilot may
be told to hold its cores for one (a :class:`~dirac_like.draining.Hold`) instead of taking a
smaller job of a group above its share. The policy, its bounds and why: :mod:`dirac_like.draining`.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from operator import itemgetter, neg

from dirac_like.draining import Hold, Holds
from dirac_like.model import Requirements
from dirac_like.monitoring import PROBE_GROUP
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

    def push_many(self, job_ids: Iterable[int], priorities: Iterable[int]) -> None:
        """:meth:`push` of each job, in bulk (a restart restores millions)."""
        members = self._members
        entries = list(zip(map(neg, priorities), job_ids, strict=True))
        if members:
            entries = [entry for entry in entries if entry[1] not in members]
        members.update(map(itemgetter(1), entries))
        self._heap += entries  # a job given twice has two entries: the second one is skipped
        heapq.heapify(self._heap)

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

    def count_before(self, entry: tuple[int, int]) -> int:
        """How many waiting jobs come before ``entry`` = (-priority, job id) in pop order."""
        members = self._members
        return len({item for item in self._heap if item < entry and item[1] in members})

    def job_ids(self) -> Iterator[int]:
        return iter(self._members)

    def fits_static(self, pilot: PilotResources) -> bool:
        """Requirements that do not change during a pilot's life."""
        req, group = self.requirements, self.group
        return all(check(req, group, pilot) for _, check in STATIC_CHECKS)

    def fits_capacity(self, pilot: PilotResources) -> bool:
        """Requirements on what the pilot has left: cores, memory, CPU time."""
        # On the matcher's hot path: the three predicates of CAPACITY_CHECKS, called directly.
        req, group = self.requirements, self.group
        return (
            _cores_ok(req, group, pilot)
            and _memory_ok(req, group, pilot)
            and _cpu_time_ok(req, group, pilot)
        )

    def fits(self, pilot: PilotResources) -> bool:
        return self.fits_static(pilot) and self.fits_capacity(pilot)

    def fits_when_drained(self, pilot: PilotResources) -> bool:
        """Too big for the pilot's free cores, but it would fit once all its cores are free
        (memory and CPU time as they are now)."""
        req = self.requirements
        if not pilot.cores < req.cores <= pilot.total_cores:
            return False
        if req.max_ram_mb and req.max_ram_mb > pilot.memory_mb:
            return False
        return not (pilot.cpu_time_left and req.cpu_time > pilot.cpu_time_left)

    def rejections(self, pilot: PilotResources) -> list[str]:
        """The names of the requirements ``pilot`` does not meet ([] if it fits): the same
        checks as :meth:`fits`, one by one (``dirac-like job why`` counts them)."""
        req, group = self.requirements, self.group
        return [name for name, check in REQUIREMENT_CHECKS if not check(req, group, pilot)]


# -- the requirements, one predicate each --------------------------------------------------------
# (requirements, the task queue's group, pilot) -> whether the pilot meets that requirement. The
# matcher decides with these tables and nothing else; ``job why`` names the ones that fail.

Check = Callable[[Requirements, str, PilotResources], bool]


def _site_ok(req: Requirements, group: str, pilot: PilotResources) -> bool:
    return not req.sites or pilot.site in req.sites


def _ce_ok(req: Requirements, group: str, pilot: PilotResources) -> bool:
    return not req.ces or pilot.ce in req.ces


def _not_banned_by_job(req: Requirements, group: str, pilot: PilotResources) -> bool:
    return pilot.site not in req.banned_sites


def _platform_ok(req: Requirements, group: str, pilot: PilotResources) -> bool:
    return not req.platforms or pilot.platform in req.platforms


def _tags_ok(req: Requirements, group: str, pilot: PilotResources) -> bool:
    return not req.tags or set(req.tags) <= set(pilot.tags)


def _required_tags_ok(req: Requirements, group: str, pilot: PilotResources) -> bool:
    return not pilot.required_tags or set(pilot.required_tags) <= set(req.tags)


def _owner_group_ok(req: Requirements, group: str, pilot: PilotResources) -> bool:
    return not pilot.owner_group or pilot.owner_group == group


def _cores_ok(req: Requirements, group: str, pilot: PilotResources) -> bool:
    return req.cores <= pilot.cores


def _memory_ok(req: Requirements, group: str, pilot: PilotResources) -> bool:
    return not req.max_ram_mb or req.max_ram_mb <= pilot.memory_mb


def _cpu_time_ok(req: Requirements, group: str, pilot: PilotResources) -> bool:
    return not pilot.cpu_time_left or req.cpu_time <= pilot.cpu_time_left


STATIC_CHECKS: tuple[tuple[str, Check], ...] = (
    ("Site", _site_ok),
    ("GridCE", _ce_ok),
    ("BannedSites", _not_banned_by_job),
    ("Platform", _platform_ok),
    ("Tags", _tags_ok),
    ("RequiredTag", _required_tags_ok),
    ("OwnerGroup", _owner_group_ok),
)
CAPACITY_CHECKS: tuple[tuple[str, Check], ...] = (
    ("NumberOfProcessors", _cores_ok),
    ("MaxRAM", _memory_ok),
    ("CPUTime", _cpu_time_ok),
)
REQUIREMENT_CHECKS = STATIC_CHECKS + CAPACITY_CHECKS


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

    def match_or_hold(
        self, pilot_id: str, pilot: PilotResources, holds: Holds, now: float
    ) -> Match | Hold | None:
        """:meth:`match`, or a hold when the pilot should drain toward the job of the group
        owed cores (:mod:`dirac_like.draining`). ``holds`` is updated."""
        tree = self.eligible(pilot)
        hold = holds.current(pilot_id, now)
        if hold is not None:
            if pilot.cores < hold.cores and self._still_owed(hold, tree, pilot, holds, now):
                return hold
            holds.release(pilot_id)
            if hold.group in tree:  # drained: the cores go to a job as big as held for
                found = self._match_group(tree, hold.group, pilot, now, min_cores=hold.cores)
                if found is not None:
                    return found
        if not holds.enabled or pilot.total_cores <= pilot.cores:
            return self.match(pilot, now)
        return self._match_or_start_hold(pilot_id, pilot, tree, holds, now)

    def _match_or_start_hold(
        self,
        pilot_id: str,
        pilot: PilotResources,
        tree: dict[str, dict[str, list[TaskQueue]]],
        holds: Holds,
        now: float,
    ) -> Match | Hold | None:
        owed: tuple[str, int] | None = None  # the first group with only too-big jobs
        for group in self.shares.rank_groups(tree, now):
            found = self._match_group(tree, group, pilot, now, pop=owed is None)
            if found is not None and owed is None:
                return found
            if found is not None and owed is not None:
                if self._should_hold(pilot_id, pilot.site, owed, group, tree, holds, now):
                    return holds.start(pilot_id, pilot.site, *owed, now)
                return self._match_group(tree, group, pilot, now)
            if owed is None and group != PROBE_GROUP:  # site tests are never drained for
                cores = _drain_cores(tree[group], pilot)
                if cores:
                    owed = (group, cores)
        return None

    def _should_hold(
        self,
        pilot_id: str,
        site: str,
        owed: tuple[str, int],
        instead: str,
        tree: dict[str, dict[str, list[TaskQueue]]],
        holds: Holds,
        now: float,
    ) -> bool:
        """Hold for the owed group's job rather than match ``instead``'s smaller one?"""
        group, cores = owed
        owed_cores = self.shares.owed_cores(group, tree, now) - holds.pending(group)
        return (
            owed_cores >= cores
            and self.shares.owed_cores(instead, tree, now) < 0
            and holds.may_hold(pilot_id, site, cores, now)
        )

    def _still_owed(
        self,
        hold: Hold,
        tree: dict[str, dict[str, list[TaskQueue]]],
        pilot: PilotResources,
        holds: Holds,
        now: float,
    ) -> bool:
        """A hold stays while its group still has such a job and is still owed its cores."""
        users = tree.get(hold.group)
        if not users or not any(
            tq.fits_when_drained(pilot) and tq.requirements.cores <= hold.cores
            for queues in users.values()
            for tq in queues
            if len(tq)
        ):
            return False
        others = holds.pending(hold.group) - hold.cores
        return self.shares.owed_cores(hold.group, tree, now) - others >= hold.cores

    def _match_group(
        self,
        tree: dict[str, dict[str, list[TaskQueue]]],
        group: str,
        pilot: PilotResources,
        now: float,
        pop: bool = True,
        min_cores: int = 1,
    ) -> Match | None:
        """The best job of ``group`` that fits now, of at least ``min_cores`` (popped only if
        ``pop``: else a probe)."""
        users = tree[group]
        for user in self.shares.rank_users(group, users, now):
            queues = users[user]
            if min_cores > 1:
                queues = [tq for tq in queues if tq.requirements.cores >= min_cores]
            task_queue = _best_queue(queues, pilot)
            if task_queue is not None:
                cores = cores_granted(task_queue.requirements, pilot.cores)
                job_id = task_queue.pop() if pop else -1
                return Match(job_id, task_queue, cores)
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


def _drain_cores(users: dict[str, list[TaskQueue]], pilot: PilotResources) -> int:
    """The fewest cores among the group's waiting jobs that fit once the pilot drains; 0 if
    none does (then the pilot never holds for this group)."""
    cores = [
        tq.requirements.cores
        for queues in users.values()
        for tq in queues
        if len(tq) and tq.fits_when_drained(pilot)
    ]
    return min(cores, default=0)


def _best_queue(queues: Iterable[TaskQueue], pilot: PilotResources) -> TaskQueue | None:
    best, best_top = None, None
    for task_queue in queues:
        top = task_queue.peek()
        if top is None or (best_top is not None and top >= best_top):
            continue
        if task_queue.fits_capacity(pilot):
            best, best_top = task_queue, top
    return best
