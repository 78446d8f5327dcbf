"""Which of a running job's usage samples are kept, so a long job's series stays small. Pure.

Each heartbeat of a pilot carries its watchdog's latest sample of the payload (CPU seconds,
resident memory). The central service keeps a bounded series of them per job attempt, for the
dashboard's "resource usage over time" plot: the first :data:`POINTS_PER_LEVEL` samples all,
then one at least :data:`BASE_GAP` seconds after the last kept, then one per twice that gap,
and so on, doubling every :data:`POINTS_PER_LEVEL` points, up to :data:`MAX_POINTS` (a job of
ten days at 30 s heartbeats keeps about 240). The final usage, sent with the final status, is
always kept.
"""

from __future__ import annotations

from dataclasses import dataclass

POINTS_PER_LEVEL = 30
BASE_GAP = 30.0  # seconds
MAX_POINTS = 300


@dataclass(slots=True)
class SeriesMark:
    """How much of one attempt's series is kept: the number of points and the last one's time."""

    kept: int = 0
    last: float = float("-inf")


def keep_sample(mark: SeriesMark, now: float) -> bool:
    """Whether a sample taken at ``now`` is kept (and if so, ``mark`` counts it)."""
    if mark.kept >= MAX_POINTS:
        return False
    level = mark.kept // POINTS_PER_LEVEL
    gap = 0.0 if level == 0 else BASE_GAP * 2 ** (level - 1)
    if now - mark.last < gap or now <= mark.last:
        return False
    mark.kept += 1
    mark.last = now
    return True
