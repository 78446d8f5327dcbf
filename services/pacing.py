"""When the service loop may do its next piece of background work (a batch of a bulk action, a
slice of a big submission).

Requests come first, and background work is paced by the time requests actually take, not by
their presence. After a piece that took ``t`` seconds (its own work, the commit of its batch and
the replies), the loop owes requests ``t * (1 - duty) / duty`` seconds: the next piece waits
while requests are waiting and the loop spends that much time serving them. A loop turn that
finds no request waiting pays the rest of the debt at once (the pacing is work-conserving: an
idle service, or one whose clients are few and quick, makes a big submission or a bulk action at
full speed). So background work takes at most ``duty`` of the loop's time while requests keep
it busy, and a request never waits for more than one piece: the loop polls without waiting while
background work is pending, and serves whatever arrived before the next piece.

The times are a monotonic clock's, passed in. Pure: no I/O.
"""

from __future__ import annotations


class Pacer:
    def __init__(self, duty: float) -> None:
        self.duty = duty
        self.owed = 0.0  # seconds of request service owed before the next piece

    def due(self, contended: bool = True) -> bool:
        """Whether a piece may run in this loop turn; ``contended``: the turn serves requests
        (otherwise nobody is waiting: a piece is due at once)."""
        if not contended:
            self.owed = 0.0
        return self.owed <= 0.0

    def turned(self, started: float, ended: float, contended: bool, piece: float | None) -> None:
        """A loop turn ran from ``started`` to ``ended``; ``contended``: it served requests;
        ``piece``: when the piece of background work it ran started (None: none ran)."""
        if piece is not None:
            took = max(0.0, ended - piece)
            self.owed = took * (1.0 - self.duty) / self.duty
        elif contended:
            self.owed -= max(0.0, ended - started)
        else:
            self.owed = 0.0
