"""Replies remembered so that a retried request gets the same answer (idempotent retries).

A reply is remembered under its :func:`reply_key`: the principal that sent the request AND the
request id, never the id alone, so one identity sending another's request id gets nothing of
the other's (it is simply a new request of its own). The service loop authorizes a request
first, and only then asks :meth:`ReplyCache.remembered` (before it runs a mutating request) and
:meth:`ReplyCache.remember` (after it succeeded). A durable reply is also written to the store
(in the batch's change set), so a retry after a restart still gets it; replies are forgotten
``reply_memory`` seconds after they were made, in chunks of at least a minute.

A reply that carries a secret (a new identity's secret key, a pilot token) is never written to
the store and is kept in memory only ``secret_memory`` seconds: long enough for a client's
retries of a lost reply, no longer.

Pure: no I/O, ``now`` passed in.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

from dirac_like.model import StoredReply

from .journal import Journal

FORGET_CHUNK_SECONDS = 60.0
KEY_SEPARATOR = "/"  # not in any principal name (services/state.py NAME_PATTERN)


def reply_key(principal: str, request_id: str) -> str:
    """Where the reply to ``request_id`` from ``principal`` is remembered ('' when the
    service runs insecure and knows no principal)."""
    return f"{principal}{KEY_SEPARATOR}{request_id}"


class ReplyCache:
    def __init__(
        self,
        reply_memory: float,
        journal: Journal,
        loaded: Iterable[StoredReply] = (),
        secret_memory: float = 60.0,
    ) -> None:
        self.reply_memory = reply_memory
        self.secret_memory = secret_memory
        self.journal = journal
        self.replies: dict[str, StoredReply] = {}
        self._order: deque[StoredReply] = deque()  # oldest first
        self._secrets: dict[str, StoredReply] = {}
        self._secret_order: deque[StoredReply] = deque()
        for reply in sorted(loaded, key=lambda r: r.time):
            self._keep(reply)

    def __len__(self) -> int:
        return len(self.replies) + len(self._secrets)

    def remembered(self, key: str) -> bytes | None:
        """The reply remembered under ``key`` (see :func:`reply_key`), or None."""
        stored = self.replies.get(key) or self._secrets.get(key)
        return stored.reply if stored is not None else None

    def remember(
        self, key: str, reply: bytes, now: float, durable: bool, secret: bool = False
    ) -> None:
        """Answer a retry under ``key`` with ``reply``; across restarts too if ``durable``; for
        ``secret_memory`` seconds only, and never stored, if it carries a ``secret``."""
        stored = StoredReply(key, reply, now)
        if secret:
            self._secrets[key] = stored
            self._secret_order.append(stored)
            return
        self._keep(stored)
        if durable:
            self.journal.changes.replies.append(stored)

    def _keep(self, stored: StoredReply) -> None:
        self.replies[stored.request_id] = stored
        self._order.append(stored)

    def forget_old(self, now: float) -> None:
        """Forget the replies older than ``reply_memory`` (here and, with the batch, stored),
        and the secret ones older than ``secret_memory``."""
        _forget(self._secrets, self._secret_order, now - self.secret_memory)
        cutoff = now - self.reply_memory
        if not self._order or self._order[0].time >= cutoff - FORGET_CHUNK_SECONDS:
            return
        _forget(self.replies, self._order, cutoff)
        self.journal.changes.forget_replies_before = cutoff


def _forget(replies: dict[str, StoredReply], order: deque[StoredReply], cutoff: float) -> None:
    while order and order[0].time < cutoff:
        stored = order.popleft()
        if replies.get(stored.request_id) is stored:
            del replies[stored.request_id]
