"""Who leads an active-standby pair of central services: the decisions, without I/O.

Two (or more) central services share one PostgreSQL store. The one that holds the store's
advisory lock, on the very session that commits its batches, leads: it binds its endpoint and
serves. The others stand by: they bind nothing and try the lock again every ``retry_interval``
seconds. A leader checks its session every ``probe_interval`` seconds when it has nothing to
commit; when the session is gone (the server restarted, the session was terminated, the network
between them failed) the leader stops serving at once and stands by like the others: its lock
went with its session, and another instance may hold it already. It tries the lock again only
after ``rejoin_delay`` seconds, giving the standby the first chance.

:class:`Leadership` is the state machine: events in (:meth:`lock_taken`, :meth:`lock_busy`,
:meth:`session_ok`, :meth:`session_lost`), what to do next out (:meth:`due`); ``now`` is passed
in. The shell (services/high_availability.py) runs the SQL and the sockets.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
from dataclasses import dataclass

from dirac_like.protocol import ServiceInstanceRow

log = logging.getLogger(__name__)


class Role(enum.StrEnum):
    STANDBY = "standby"
    LEADER = "leader"


class Step(enum.StrEnum):
    """What the shell should do now."""

    TRY_LOCK = "try_lock"  # standby: try to take the lock (and note this instance as standing by)
    PROBE = "probe"  # leader: check the session still lives
    WAIT = "wait"  # nothing yet


@dataclass(frozen=True)
class LeadershipConfig:
    retry_interval: float = 0.5  # seconds between a standby's tries of the lock
    probe_interval: float = 0.5  # seconds between a leader's checks of its idle session
    # seconds a leader that lost its session waits before it tries the lock again: the standby
    # gets the first chance (a leader cut off from the database may flap)
    rejoin_delay: float = 2.0


class Leadership:
    def __init__(self, config: LeadershipConfig, now: float) -> None:
        self.config = config
        self.role = Role.STANDBY
        self.since = now  # when the current role began
        self.terms = 0  # how many times this instance took the lead
        self.last_loss = ""  # why it last stopped leading
        self._next = now  # when the next TRY_LOCK or PROBE is due

    @property
    def leading(self) -> bool:
        return self.role is Role.LEADER

    def due(self, now: float) -> Step:
        if now < self._next:
            return Step.WAIT
        return Step.PROBE if self.leading else Step.TRY_LOCK

    def next_deadline(self) -> float:
        return self._next

    def lock_taken(self, now: float) -> None:
        """The lock is ours, on the session that will commit: lead (after loading the state)."""
        if self.leading:
            raise RuntimeError("lock taken while leading already")
        self.role, self.since = Role.LEADER, now
        self.terms += 1
        self._next = now + self.config.probe_interval

    def lock_busy(self, now: float) -> None:
        """Another instance holds the lock (or the store cannot be reached): stand by."""
        if self.leading:
            raise RuntimeError("a leader does not try the lock")
        self._next = now + self.config.retry_interval

    def session_ok(self, now: float) -> None:
        """The leader's session answered (a probe, or a batch committed)."""
        if self.leading:
            self._next = now + self.config.probe_interval

    def session_lost(self, now: float, why: str) -> None:
        """The leader's session is gone (or may be): stop serving, stand by, and try the lock
        again after ``rejoin_delay`` (if nobody took it by then, this instance may lead again)."""
        if self.leading:
            log.error("leadership lost after %.1f s: %s", now - self.since, why)
        self.role, self.since, self.last_loss = Role.STANDBY, now, why
        self._next = now + self.config.rejoin_delay


class SchemaStep(enum.StrEnum):
    """What an instance does with the store's schema (a rolling upgrade, one at a time)."""

    SERVE = "serve"  # the schema is this code's
    MIGRATE = "migrate"  # older: migrated by whoever holds the lock, before it serves
    REFUSE = "refuse"  # newer than this code knows: never lead on it (upgrade this instance)


def schema_step(stored: int, known: int) -> SchemaStep:
    """``stored``: the store's schema version; ``known``: this code's."""
    if stored > known:
        return SchemaStep.REFUSE
    return SchemaStep.MIGRATE if stored < known else SchemaStep.SERVE


SILENT_AFTER_SECONDS = 10.0  # an instance that has not noted itself alive this long is "silent"


def mark_silent(
    rows: list[ServiceInstanceRow], now: float, after: float = SILENT_AFTER_SECONDS
) -> list[ServiceInstanceRow]:
    """The instances' rows for ``service status``, each not seen for ``after`` seconds shown
    with role ``silent`` (a dead or cut-off instance, not a standby ready to take over)."""
    return [
        dataclasses.replace(row, role="silent") if now - row.seen > after else row for row in rows
    ]
