"""A real central service driven in this process, request by request, with a clock of its own.

:class:`InProcessService` builds a secure :class:`CentralService` on a fresh home (service keys,
a real SQLite store, real sandbox files) and feeds it request frames as if they had come from
the socket with a given client public key (the ZAP User-Id): each :meth:`call` is one batch —
decoded, authenticated, authorized, applied, committed to the store in one transaction — and
returns the decoded reply. No socket is bound: the replies a batch would send are caught by
:class:`Outbox`. Tests of the security checks use it where a subprocess and CurveZMQ would only
add seconds (those paths have their own tests over the wire in test_security.py).
"""

from __future__ import annotations

import contextlib
import itertools
import sqlite3
from pathlib import Path
from typing import Any

import msgpack

from dirac_like.authz import Principal, Role
from dirac_like.config import Config
from dirac_like.protocol import Reply, Request, decode_reply, encode_request
from dirac_like.registry import init_home
from dirac_like.services.central import CentralService


class Outbox:
    """Stands in for the ROUTER socket when replies are sent: keeps the frames."""

    def __init__(self) -> None:
        self.sent: list[list[bytes]] = []

    def send_multipart(self, frames: list[bytes]) -> None:
        self.sent.append(frames)


class InProcessService:
    def __init__(self, home: Path, config: Config | None = None, now: float = 1_000_000.0) -> None:
        self.now, self.home = now, home
        init_home(home, now)
        self.service = CentralService(config or Config(), home, clock=lambda: self.now)
        self._socket = self.service.socket
        self.outbox = Outbox()
        self.service.socket = self.outbox  # type: ignore[assignment]
        self._ids = itertools.count(1)

    @property
    def state(self) -> Any:
        return self.service.state

    def identity(
        self, name: str, role: str, groups: tuple[str, ...] = (), site: str = "", pilot_id: str = ""
    ) -> str:
        """A new identity in the registry (as ``identity add`` makes it); its public key."""
        issuer = self.service.issuer
        assert issuer is not None
        principal = Principal(name, Role(role), groups, site, pilot_id)
        key = issuer.issue(principal, self.now).public_key
        self.service.commit_and_reply([])
        return key

    def frame(self, key: str, payload: bytes) -> bytes:
        """The raw reply to one raw request frame from the client with public key ``key``."""
        self.outbox.sent.clear()
        pending = self.service.process_batch([([b"client", payload], key)])
        self.service.commit_and_reply(pending)
        return self.outbox.sent[0][-1]  # the reply goes first, then any commands pushed

    def call(
        self, key: str, op: str, args: dict[str, Any] | None = None, request_id: str | None = None
    ) -> Reply:
        request = Request(request_id or f"r{next(self._ids)}", op, args or {})
        return decode_reply(self.frame(key, encode_request(request)))

    def ok(
        self, key: str, op: str, args: dict[str, Any] | None = None, request_id: str | None = None
    ) -> Any:
        """The result of a call that must succeed."""
        reply = self.call(key, op, args, request_id)
        assert reply.ok, f"{op} refused: {reply.error}"
        return reply.result

    def error(
        self, key: str, op: str, args: dict[str, Any] | None = None, request_id: str | None = None
    ) -> tuple[str, str]:
        """(code, message) of a call that must be refused."""
        reply = self.call(key, op, args, request_id)
        assert not reply.ok and reply.error is not None, f"{op} accepted: {reply.result}"
        return reply.error.code, reply.error.message

    def stored(self) -> bytes:
        """Everything the store holds, as bytes to compare before and after a request."""
        with contextlib.closing(sqlite3.connect(self.home / "jobs.sqlite")) as db:
            tables = [
                row[0]
                for row in db.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
                )
            ]
            dump = {
                table: sorted(map(list, db.execute(f"SELECT * FROM {table}")), key=repr)
                for table in tables
            }
        return bytes(msgpack.packb(dump, use_bin_type=True, default=repr))

    def close(self) -> None:
        self.service.socket = self._socket
        self.service.close()
