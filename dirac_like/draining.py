"""Holds: draining a multi-core pilot toward the job of the group owed cores. Pure: ``now`` in.

The problem. A pilot of N cores runs several jobs at once in its free cores. When the group owed
cores (the first in the fair-share ranking) has only jobs of k cores and the pilot has fewer than
k free, the matcher falls through to the next group, whose 1-core job refills the free core the
moment it frees: the pilot never reaches k free cores, and the multi-core group never gets its
share (measured: 38% of the core-time for a 70% share, for ever).

What others do. HTCondor's ``condor_defrag`` daemon drains whole partitionable machines so that
big slots can form, bounded by how many machines drain at once and per hour, and it stops
draining a machine as soon as enough cores are free; the cores idle while it drains are its
price. The LHC experiments' multi-core pilots (CMS glideinWMS partitionable glideins, ATLAS and
LHCb multi-core pilots) take the whole node and schedule single- and multi-core payloads inside
it, draining internally toward a multi-core payload rather than asking the batch system.

The policy here, the pilot-side version of the same idea, decided by the central service (which
alone sees the shares):

1. A pilot is asked to *hold* its free cores when the first group in the ranking that has a job
   this pilot could ever run (all its cores, ``total_cores``, enough; memory and CPU time as now)
   has no job that fits the free cores, while a lower group has one that does, and
   - that group is owed at least the job's cores beyond what holds already drain for it (so
     holds stop once enough are under way, and none start at the balance point, where a small
     deficit would make pilots drain back and forth),
   - the group that would get the smaller job is above its share,
   - the site keeps at most ``max_idle_fraction`` of its pilots' cores in holds, counting each
     hold at its worst case (the cores it needs, less one),
   - the pilot is not cooling down from a hold that expired.
2. A hold is for ``cores`` free cores and lasts at most ``hold_seconds``. The pilot asks for no
   job until that many are free or the time is up. When it asks with enough free, the hold ends
   and its held group is matched first; when it asks after the time is up, the hold ends and the
   pilot is not held again for another ``hold_seconds`` (so no pilot idles more than half its
   time); when its group stops being owed the cores, or has no such job left, the hold ends and
   the pilot is matched as usual.
3. A pilot that never said its total cores (older than draining), or whose total is below the
   job's cores, is never held: no pilot holds cores for a job it can never run.

The price is the cores idle while a pilot drains; docs/performance.md ("Scheduling") measures it.
"""

from __future__ import annotations

import heapq
from collections import OrderedDict
from dataclasses import dataclass

from dirac_like.config import DrainConfig

PILOT_MEMORY = 2 * 86400.0  # a pilot not heard of this long no longer counts in its site's cores


@dataclass(frozen=True)
class Hold:
    """A pilot keeping its free cores for a job of ``group`` needing ``cores``."""

    pilot_id: str
    site: str
    group: str
    cores: int
    started: float
    expires: float


@dataclass
class _PilotSeen:
    site: str
    total_cores: int
    seen: float


class Holds:
    """The holds in force, the pilots' cores per site, and the pilots cooling down."""

    def __init__(self, config: DrainConfig) -> None:
        self.config = config
        self.holds: dict[str, Hold] = {}
        self.cooling: dict[str, float] = {}  # pilot id -> when it may be held again
        self._pilots: OrderedDict[str, _PilotSeen] = OrderedDict()  # oldest sighting first
        self._site_cores: dict[str, int] = {}
        self._held_worst: dict[str, int] = {}  # site -> sum of (hold cores - 1)
        self._pending: dict[str, int] = {}  # group -> cores its holds drain for it
        self._expiries: list[tuple[float, str]] = []  # (expires, pilot id); may hold stale ones

    @property
    def enabled(self) -> bool:
        return self.config.hold_seconds > 0

    # -- pilots ----------------------------------------------------------------------------------

    def see(self, pilot_id: str, site: str, total_cores: int, now: float) -> None:
        """A pilot asked for work: count its cores at its site (and forget long-silent ones)."""
        old = self._pilots.pop(pilot_id, None)
        if old is not None:
            self._site_cores[old.site] -= old.total_cores
        self._pilots[pilot_id] = _PilotSeen(site, total_cores, now)
        self._site_cores[site] = self._site_cores.get(site, 0) + total_cores
        while self._pilots:
            oldest_id, oldest = next(iter(self._pilots.items()))
            if now - oldest.seen <= PILOT_MEMORY:
                break
            self.forget(oldest_id, now)

    def forget(self, pilot_id: str, now: float) -> None:
        """A pilot is gone: its cores, hold and cool-down go."""
        self.release(pilot_id)
        self.cooling.pop(pilot_id, None)
        seen = self._pilots.pop(pilot_id, None)
        if seen is not None:
            self._site_cores[seen.site] -= seen.total_cores
            if not self._site_cores[seen.site]:
                del self._site_cores[seen.site]

    def site_cores(self, site: str) -> int:
        return self._site_cores.get(site, 0)

    def pending(self, group: str) -> int:
        """Cores the holds in force drain for ``group``."""
        return self._pending.get(group, 0)

    # -- holds -----------------------------------------------------------------------------------

    def current(self, pilot_id: str, now: float) -> Hold | None:
        """The pilot's hold, if one is in force (every expired hold ends first)."""
        self.expire(now)
        return self.holds.get(pilot_id)

    def expire(self, now: float) -> None:
        """End every hold whose time is up; its pilot cools down for ``hold_seconds``."""
        expiries = self._expiries
        while expiries and expiries[0][0] <= now:
            expires, pilot_id = heapq.heappop(expiries)
            hold = self.holds.get(pilot_id)
            if hold is not None and hold.expires == expires:
                self.release(pilot_id)
                self.cooling[pilot_id] = expires + self.config.hold_seconds

    def may_hold(self, pilot_id: str, site: str, cores: int, now: float) -> bool:
        """Whether a new hold of ``cores`` for this pilot stays within the bounds."""
        if not self.enabled or pilot_id in self.holds:
            return False
        until = self.cooling.get(pilot_id)
        if until is not None:
            if now < until:
                return False
            del self.cooling[pilot_id]
        worst = self._held_worst.get(site, 0) + cores - 1
        return worst <= self.config.max_idle_fraction * self.site_cores(site)

    def start(self, pilot_id: str, site: str, group: str, cores: int, now: float) -> Hold:
        hold = Hold(pilot_id, site, group, cores, now, now + self.config.hold_seconds)
        self.holds[pilot_id] = hold
        heapq.heappush(self._expiries, (hold.expires, pilot_id))
        self._held_worst[site] = self._held_worst.get(site, 0) + cores - 1
        self._pending[group] = self._pending.get(group, 0) + cores
        return hold

    def release(self, pilot_id: str) -> Hold | None:
        """End the pilot's hold (fulfilled, no longer wanted, or expired)."""
        hold = self.holds.pop(pilot_id, None)
        if hold is not None:
            _take(self._held_worst, hold.site, hold.cores - 1)
            _take(self._pending, hold.group, hold.cores)
        return hold

    def validate(self) -> None:
        """The running sums agree with the holds (tests call this)."""
        worst: dict[str, int] = {}
        pending: dict[str, int] = {}
        for hold in self.holds.values():
            worst[hold.site] = worst.get(hold.site, 0) + hold.cores - 1
            pending[hold.group] = pending.get(hold.group, 0) + hold.cores
        assert {k: v for k, v in self._held_worst.items() if v} == {
            k: v for k, v in worst.items() if v
        }, (self._held_worst, worst)
        assert self._pending == pending, (self._pending, pending)


def _take(counts: dict[str, int], key: str, amount: int) -> None:
    left = counts.get(key, 0) - amount
    if left:
        counts[key] = left
    else:
        counts.pop(key, None)
