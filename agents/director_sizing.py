"""How many pilots a site director submits to each CE this cycle, and when a CE is backed off.

Pure decisions, no I/O: the director gathers the numbers (waiting work from the central service,
its pilots' states from the fabric), calls :func:`plan`, submits what it says, and feeds every
pilot outcome to the CE's :class:`CEHealth`. ``now`` is always passed in.

Sizing, per CE::

    wanted = min(eligible_slots - queued,            # work not yet covered by a queued pilot
                 max_queued - queued,                 # room in the batch queue
                 max_total - (queued + running))      # room under the CE's pilot cap
    wanted = max(wanted, 0), and 0 while the CE is backed off

Then the site's ``max_pilots_per_cycle`` is shared by max-min fairness ("water filling"): pilots
are dealt out one per CE in turn, so no CE gets two more than another unless the other wanted no
more. The order of each round is fewest queued pilots first, then CE name: it only matters for
the last, partial round, and since a CE that got a pilot has one more queued next cycle, the
leftover pilot goes round the CEs from cycle to cycle instead of always to the same one.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

from dirac_like.sites import CEConfig, SiteConfig


@dataclass(frozen=True)
class CEDemand:
    """One CE as the director sees it at the start of a cycle."""

    name: str
    eligible_slots: int  # pilots of this CE that the waiting work could fill
    queued: int  # pilots submitted to the fabric, not running yet
    running: int  # pilots running
    max_queued: int
    max_total: int
    backoff_until: float = 0.0  # no pilot before this time (see CEHealth)

    @classmethod
    def for_ce(
        cls,
        ce: CEConfig,
        eligible_slots: int,
        queued: int,
        running: int,
        backoff_until: float = 0.0,
    ) -> CEDemand:
        return cls(
            ce.name, eligible_slots, queued, running, ce.max_queued, ce.max_total, backoff_until
        )

    def wanted(self, now: float) -> int:
        """Pilots this CE should get this cycle, before the site-wide cap."""
        if now < self.backoff_until:
            return 0
        alive = self.queued + self.running
        room = min(
            self.eligible_slots - self.queued,
            self.max_queued - self.queued,
            self.max_total - alive,
        )
        return max(room, 0)


@dataclass(frozen=True)
class CycleLimits:
    """Site-wide limits of one director cycle."""

    max_pilots_per_cycle: int

    @classmethod
    def for_site(cls, site: SiteConfig) -> CycleLimits:
        return cls(site.max_pilots_per_cycle)


def plan(ces: Iterable[CEDemand], site_limits: CycleLimits, now: float) -> dict[str, int]:
    """Pilots to submit per CE name this cycle (every CE given appears, possibly with 0)."""
    demands = list(ces)
    wanted = {demand.name: demand.wanted(now) for demand in demands}
    cap = max(site_limits.max_pilots_per_cycle, 0)
    if sum(wanted.values()) <= cap:
        return wanted
    order = [d.name for d in sorted(demands, key=lambda d: (d.queued, d.name))]
    return _share(wanted, order, cap)


def _share(wanted: dict[str, int], order: list[str], cap: int) -> dict[str, int]:
    """Deal ``cap`` pilots one per CE in turn (in ``order``) until each has what it wants.

    Whole rounds are computed at once: ``level`` is what every still-hungry CE has been given.
    """
    level, left = 0, cap
    hungry = [name for name in order if wanted[name] > 0]
    while hungry:
        rounds = min(min(wanted[name] for name in hungry) - level, left // len(hungry))
        if rounds == 0:
            break
        level += rounds
        left -= rounds * len(hungry)
        hungry = [name for name in hungry if wanted[name] > level]
    shares = {name: min(want, level) for name, want in wanted.items()}
    for name in hungry[:left]:
        shares[name] += 1
    return shares


# --------------------------------------------------------------------------------------------
# CE health: back-off after repeated failures


class PilotOutcome(enum.Enum):
    SUBMIT_FAILED = "submit-failed"  # the fabric refused the pilot (FabricError)
    PILOT_FAILED = "pilot-failed"  # the pilot ended Failed or Aborted without being cancelled
    PILOT_OK = "pilot-ok"  # the pilot ended Done

    @property
    def failed(self) -> bool:
        return self is not PilotOutcome.PILOT_OK


class CEHealth:
    """Consecutive failures of one CE, and the back-off they cause.

    - ``failure_threshold`` consecutive failures back the CE off for ``backoff_seconds``.
    - Once backed off, the CE is on probation: the next failure after the back-off ends (with no
      success in between) backs it off again, each time twice as long, up to ``max_backoff``.
    - Failures reported while a back-off is running (pilots submitted before it) are counted but
      neither extend nor double it.
    - A success resets the failure count and the doubling; a back-off already running ends at
      its time (the director does not submit early on the word of one old pilot).
    """

    def __init__(self, failure_threshold: int, backoff_seconds: float, max_backoff: float):
        if failure_threshold < 1 or backoff_seconds <= 0 or max_backoff < backoff_seconds:
            raise ValueError("need failure_threshold >= 1, 0 < backoff_seconds <= max_backoff")
        self.failure_threshold = failure_threshold
        self.backoff_seconds = backoff_seconds
        self.max_backoff = max_backoff
        self.consecutive_failures = 0
        self.backoffs = 0  # back-offs since the last success
        self.backoff_until = 0.0

    @classmethod
    def for_site(cls, site: SiteConfig) -> CEHealth:
        return cls(site.failure_threshold, site.backoff_seconds, site.max_backoff_seconds)

    def record(self, outcome: PilotOutcome, now: float) -> float | None:
        """Count one outcome; returns the back-off length in seconds when this one starts one."""
        if not outcome.failed:
            self.consecutive_failures = 0
            self.backoffs = 0
            return None
        self.consecutive_failures += 1
        if self.backed_off(now) or self.consecutive_failures < self.failure_threshold:
            return None
        doublings = min(self.backoffs, 64)  # past the cap anyway; keeps 2**n finite
        length = min(self.backoff_seconds * 2.0**doublings, self.max_backoff)
        self.backoffs += 1
        self.backoff_until = now + length
        return length

    def backed_off(self, now: float) -> bool:
        return now < self.backoff_until
