"""ZAP (ZeroMQ Authentication Protocol, RFC 27) for the central service's CURVE handshakes.

libzmq asks the handler bound at ``inproc://zeromq.zap.01`` about every CURVE handshake; the
service answers in its own loop (no thread), admitting only public keys its identity registry
holds, active and unexpired. An admitted connection carries the client's z85 public key as its
User-Id on every frame, which the service looks up again for each request. A refused handshake
gets no session: the client hears nothing at all.

:func:`zap_reply` is the decision, pure; :class:`ZapHandler` is the socket around it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import zmq
from zmq.utils import z85

log = logging.getLogger(__name__)

ZAP_ENDPOINT = "inproc://zeromq.zap.01"
ZAP_VERSION = b"1.0"
DOMAIN = b"dirac-like"
CURVE_KEY_BYTES = 32
REFUSAL_LOG_INTERVAL = 60.0  # seconds between log lines about the same refused key


def zap_reply(request: list[bytes], admits: Callable[[str], bool]) -> tuple[list[bytes], str]:
    """The reply frames to a ZAP request, and the client key ('' if none could be read).

    Request: version, request id, domain, address, routing id, mechanism, credentials...
    Reply: version, request id, status code, status text, user id, metadata."""
    if len(request) < 6:
        return _reply(request[1] if len(request) > 1 else b"", b"400", b"bad ZAP request"), ""
    version, request_id, _domain, _address, _routing, mechanism = request[:6]
    credentials = request[6:]
    if version != ZAP_VERSION:
        return _reply(request_id, b"400", b"unsupported ZAP version"), ""
    if mechanism != b"CURVE" or len(credentials) != 1 or len(credentials[0]) != CURVE_KEY_BYTES:
        return _reply(request_id, b"400", b"CURVE required"), ""
    key = z85.encode(credentials[0]).decode("ascii")
    if not admits(key):
        return _reply(request_id, b"400", b"unknown, revoked or expired key"), key
    return _reply(request_id, b"200", b"OK", key.encode("ascii")), key


def _reply(request_id: bytes, code: bytes, text: bytes, user_id: bytes = b"") -> list[bytes]:
    return [ZAP_VERSION, request_id, code, text, user_id, b""]


class ZapHandler:
    """The REP socket libzmq sends ZAP requests to, in the service's context."""

    def __init__(
        self, context: zmq.Context, admits: Callable[[str], bool], clock: Callable[[], float]
    ) -> None:
        self.admits = admits
        self.clock = clock
        self.socket = context.socket(zmq.REP)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.bind(ZAP_ENDPOINT)
        self._logged: dict[str, float] = {}  # refused key -> when it was last logged

    def answer_all(self) -> int:
        """Answer every ZAP request waiting; returns how many."""
        answered = 0
        while True:
            try:
                request = self.socket.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return answered
            reply, key = zap_reply(request, self.admits)
            if reply[2] != b"200":
                self._log_refusal(request, key, reply[3])
            self.socket.send_multipart(reply)
            answered += 1

    def _log_refusal(self, request: list[bytes], key: str, why: bytes) -> None:
        """One line per refused key per minute (a refused client keeps reconnecting)."""
        now = self.clock()
        if now - self._logged.get(key, -REFUSAL_LOG_INTERVAL) < REFUSAL_LOG_INTERVAL:
            return
        if len(self._logged) > 10_000:
            self._logged.clear()
        self._logged[key] = now
        address = request[3].decode("ascii", "replace") if len(request) > 3 else "?"
        log.warning(
            "handshake refused from %s (key %s): %s",
            address,
            key or "-",
            why.decode("ascii", "replace"),
        )

    def close(self) -> None:
        self.socket.close(linger=0)
