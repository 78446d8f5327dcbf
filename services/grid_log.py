"""What the service saw of the grid lately: the CEs directors described, the pilots that asked
for work, and the recent match rate. In memory only (after a restart it fills again within a
director cycle); it feeds ``job why`` (:mod:`dirac_like.why`) and the never-runnable warning at
submission.

Pure: no I/O, ``now`` passed in. Bounded: at most ``MAX_PILOTS`` pilots and ``MAX_CES`` CEs are
kept, the least recently seen going first.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict, deque

from dirac_like.protocol import PilotResources

MAX_PILOTS = 20_000
MAX_CES = 5_000
RATE_BUCKET = 10.0  # seconds per bucket of the match-rate window
RATE_WINDOW = 600.0  # the match rate is averaged over this many seconds


class GridLog:
    def __init__(self, window: float = 3600.0) -> None:
        self.window = window  # "lately"
        self.ces: OrderedDict[tuple[str, str], tuple[PilotResources, float]] = OrderedDict()
        self.pilots: OrderedDict[str, tuple[PilotResources, float]] = OrderedDict()
        self.described: set[tuple[str, str]] = set()  # CEs a director described
        self.directors: dict[str, float] = {}  # site -> last sizing request
        self.last_pilot: dict[str, float] = {}  # site -> last pilot request
        self._matches: deque[list[float]] = deque()  # [bucket start, count]

    def sized(self, resources: PilotResources, now: float) -> None:
        """A director asked how many jobs a pilot of this CE could run: the CE is known."""
        key = (resources.site, resources.ce)
        self._keep(self.ces, key, resources, now, MAX_CES)
        if len(self.described) < MAX_CES:
            self.described.add(key)
        self.directors[resources.site] = now

    def pilot_asked(self, pilot_id: str, resources: PilotResources, now: float) -> None:
        self._keep(self.pilots, pilot_id, resources, now, MAX_PILOTS)
        self.last_pilot[resources.site] = now
        key = (resources.site, resources.ce)
        if key in self.described:
            return
        known = self.ces.get(key)  # no director described it: what its pilots showed at most
        if known is None or _wider(resources, known[0]):
            self._keep(self.ces, key, _widest(known, resources), now, MAX_CES)

    def matched(self, now: float) -> None:
        buckets = self._matches
        if buckets and now - buckets[-1][0] < RATE_BUCKET:
            buckets[-1][1] += 1
        else:
            buckets.append([now, 1])
        while buckets and now - buckets[0][0] > RATE_WINDOW:
            buckets.popleft()

    def match_rate(self, now: float) -> float:
        """Matches per second over the last ``RATE_WINDOW`` seconds."""
        recent = sum(count for start, count in self._matches if now - start <= RATE_WINDOW)
        return recent / RATE_WINDOW

    def known_ces(self) -> list[PilotResources]:
        return [resources for resources, _ in self.ces.values()]

    def recent_pilots(self, now: float) -> list[PilotResources]:
        return [resources for resources, seen in self.pilots.values() if now - seen <= self.window]

    def has_director(self, site: str, now: float) -> bool:
        return now - self.directors.get(site, -1e18) <= self.window

    @staticmethod
    def _keep(
        table: OrderedDict, key: object, resources: PilotResources, now: float, limit: int
    ) -> None:
        table[key] = (resources, now)
        table.move_to_end(key)
        if len(table) > limit:
            table.popitem(last=False)


def _wider(seen: PilotResources, known: PilotResources) -> bool:
    """Whether ``seen`` offers more of something than ``known`` (on the match path: cheap)."""
    return (
        seen.cores > known.cores
        or seen.memory_mb > known.memory_mb
        or (
            known.cpu_time_left != 0
            and (seen.cpu_time_left == 0 or seen.cpu_time_left > known.cpu_time_left)
        )
    )


def _widest(known: tuple[PilotResources, float] | None, seen: PilotResources) -> PilotResources:
    """A CE as its pilots showed it: the most cores, memory and CPU time any offered."""
    if known is None:
        return seen
    old = known[0]
    cpu = (
        0
        if 0 in (old.cpu_time_left, seen.cpu_time_left)
        else max(old.cpu_time_left, seen.cpu_time_left)
    )
    return dataclasses.replace(
        seen,
        cores=max(old.cores, seen.cores),
        memory_mb=max(old.memory_mb, seen.memory_mb),
        cpu_time_left=cpu,
    )
