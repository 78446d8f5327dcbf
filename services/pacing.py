"""When the service loop may do its next piece of background work (a batch of a bulk action, a
slice of a big submission).

After a piece that took ``t`` seconds (its own work and the commit of its batch), the next one is
not due before ``t * (1 - duty) / duty`` seconds: background work takes at most ``duty`` of the
loop's time, requests that arrive meanwhile are served at once, and the loop sleeps in ``poll``
between pieces instead of spinning on a core. The pacing is work-conserving: after a loop turn
that served no request, the next piece is due at once (an idle service makes a big submission or
a bulk action at full speed; a request arriving meanwhile waits for one piece at most). The time
is a monotonic clock's, passed in.

Pure: no I/O.
"""

from __future__ import annotations


class Pacer:
    def __init__(self, duty: float) -> None:
        self.duty = duty
        self.next_at = 0.0

    def due(self, now: float) -> bool:
        return now >= self.next_at

    def wait(self, now: float) -> float:
        """Seconds until the next piece is due (0: now)."""
        return max(0.0, self.next_at - now)

    def worked(self, started: float, ended: float, contended: bool = True) -> None:
        """A piece ran from ``started`` to ``ended``; ``contended``: the loop turn it ran in
        also served requests (otherwise the next piece is due at once)."""
        took = max(0.0, ended - started) if contended else 0.0
        self.next_at = ended + took * (1.0 - self.duty) / self.duty
