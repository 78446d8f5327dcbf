"""When the service loop may do its next piece of background work (a batch of a bulk action, a
slice of a big submission).

Requests come first, and background work is paced by the time requests actually take, not by
their presence. After a piece that took ``t`` seconds (its own work, the commit of its batch and
the replies), the loop owes requests ``t * (1 - duty) / duty`` seconds: the next piece waits
while requests are waiting and the loop spends that much time serving them. A loop turn that
finds no request waiting pays the rest of the debt at once (the pacing is work-conserving: an
idle service, or one asked now and then, makes a big submission or a bulk action at full
speed). While requests are owed time the loop waits up to ``GRACE_SECONDS`` for one before it
calls itself idle, and that wait counts as the requests' time: clients that keep requests coming
(pilots asking again as soon as they are answered) keep the loop to themselves for their share,
while one asking every few milliseconds does not hold a piece back. So background work takes at
most ``duty`` of the loop's time while requests keep it busy, and a request never waits for more
than one piece.

The times are a monotonic clock's, passed in. Pure: no I/O.
"""

from __future__ import annotations

GRACE_SECONDS = 0.005  # how long the loop waits for a request before it makes the next piece


class Pacer:
    def __init__(self, duty: float) -> None:
        self.duty = duty
        self.owed = 0.0  # seconds of request service owed before the next piece

    def wait(self) -> float:
        """How long the loop may wait for a request before a piece (0: none is owed)."""
        return GRACE_SECONDS if self.owed > 0.0 else 0.0

    def due(self, contended: bool = True) -> bool:
        """Whether a piece may run in this loop turn; ``contended``: the turn serves requests
        (otherwise nobody is waiting: a piece is due at once)."""
        if not contended:
            self.owed = 0.0
        return self.owed <= 0.0

    def turned(self, started: float, ended: float, contended: bool, piece: float | None) -> None:
        """A loop turn ran from ``started`` (its poll) to ``ended``; ``contended``: it served
        requests; ``piece``: when the piece of background work it ran started (None: none)."""
        if piece is not None:
            took = max(0.0, ended - piece)
            self.owed = took * (1.0 - self.duty) / self.duty
        elif contended:
            self.owed -= max(0.0, ended - started)
        else:
            self.owed = 0.0
