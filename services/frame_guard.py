"""Frames that are not valid requests: held back per connection, logged in bounded summaries.

A connection (the ZAP User-Id of a secure client, else ZeroMQ's routing id) may send
``bad_frames_per_second`` undecodable frames per second on average (bursts of
``bad_frame_burst``). Past that, every frame of that connection is refused *before it is
decoded* with a retryable ``rate_limited`` reply, until its bucket refills: a flood of garbage
costs the service a bucket look-up per frame, not a decode and a log line.

Log lines are bounded: a refusal is logged with the frame's size and a short, escaped prefix
(never a whole value), and at most ``LOG_EVERY`` seconds apart per connection; the frames refused
in between are counted in the next line.

Pure: no I/O but the logger; ``now`` passed in.
"""

from __future__ import annotations

import logging
from collections import OrderedDict

from dirac_like.config import ServiceConfig
from dirac_like.errors import RateLimited
from dirac_like.ratelimit import RateLimiter

log = logging.getLogger(__name__)

LOG_EVERY = 10.0  # seconds between two log lines about one connection's bad frames
PREFIX_BYTES = 32  # of a refused frame, shown escaped in the log
MAX_CONNECTIONS = 10_000  # connections whose log pacing is remembered


def connection_key(envelope: list[bytes], user_id: str) -> str:
    """Who sent a frame: the client's public key when secure, else its routing id."""
    if user_id:
        return f"key:{user_id[:40]}"
    return f"route:{envelope[0].hex()[:40]}" if envelope else "route:?"


def summary(payload: bytes) -> str:
    """A bounded description of a frame: its size and an escaped prefix."""
    prefix = repr(payload[:PREFIX_BYTES])
    more = "..." if len(payload) > PREFIX_BYTES else ""
    return f"{len(payload)} bytes {prefix}{more}"


def bounded(text: str, limit: int = 300) -> str:
    """``text`` for a log line: at most ``limit`` characters (an error may quote a value)."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text) - limit} more)"


class FrameGuard:
    def __init__(self, config: ServiceConfig) -> None:
        self.limiter = RateLimiter(config.bad_frames_per_second, config.bad_frame_burst)
        self._log_due: OrderedDict[str, tuple[float, int]] = OrderedDict()  # next line, unsaid

    def admit(self, connection: str, now: float) -> None:
        """Before decoding: raise RateLimited if ``connection`` sent too many bad frames (a
        connection that never sent one costs a dictionary look-up)."""
        if connection not in self.limiter:
            return
        tokens = self.limiter.tokens(connection, now)
        if tokens < 1.0:
            self._note(connection, now, "frame refused unread (too many bad frames)")
            wait = (1.0 - tokens) / self.limiter.rate_per_second
            raise RateLimited(
                f"too many undecodable frames from this connection: retry in {wait:.2f} s"
            )

    def bad_frame(self, connection: str, payload: bytes, why: str, now: float) -> None:
        """A frame of ``connection`` could not be decoded: take a token, log (paced)."""
        self.limiter.take(connection, now)
        self._note(connection, now, f"refused frame of {summary(payload)}: {bounded(why, 200)}")

    def _note(self, connection: str, now: float, line: str) -> None:
        due, unsaid = self._log_due.get(connection, (0.0, 0))
        if now < due:
            self._log_due[connection] = (due, unsaid + 1)
            return
        also = f" ({unsaid} more refused since the last line)" if unsaid else ""
        log.warning("%s: %s%s", connection, line, also)
        self._log_due[connection] = (now + LOG_EVERY, 0)
        self._log_due.move_to_end(connection)
        while len(self._log_due) > MAX_CONNECTIONS:
            self._log_due.popitem(last=False)
