"""Replies remembered so that a retried request gets the same answer (idempotent retries).

The service loop asks :meth:`ReplyCache.remembered` before it runs a mutating request and
:meth:`ReplyCache.remember` after it succeeded. A durable reply is also written to the store (in
the batch's change set), so a retry after a restart still gets it. Replies are forgotten
``reply_memory`` seconds after they were made, in chunks of at least a minute.

Pure: no I/O, ``now`` passed in.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

from dirac_like.model import StoredReply

from .journal import Journal

FORGET_CHUNK_SECONDS = 60.0


class ReplyCache:
    def __init__(self, reply_memory: float, journal: Journal,
                 loaded: Iterable[StoredReply] = ()) -> None:
        self.reply_memory = reply_memory
        self.journal = journal
        self.replies: dict[str, StoredReply] = {}
        self._order: deque[StoredReply] = deque()  # oldest first
        for reply in sorted(loaded, key=lambda r: r.time):
            self._keep(reply)

    def __len__(self) -> int:
        return len(self.replies)

    def remembered(self, request_id: str) -> bytes | None:
        stored = self.replies.get(request_id)
        return stored.reply if stored is not None else None

    def remember(self, request_id: str, reply: bytes, now: float, durable: bool) -> None:
        """Answer a retry of ``request_id`` with ``reply``; across restarts too if ``durable``."""
        stored = StoredReply(request_id, reply, now)
        self._keep(stored)
        if durable:
            self.journal.changes.replies.append(stored)

    def _keep(self, stored: StoredReply) -> None:
        self.replies[stored.request_id] = stored
        self._order.append(stored)

    def forget_old(self, now: float) -> None:
        """Forget the replies older than ``reply_memory`` (here and, with the batch, stored)."""
        cutoff = now - self.reply_memory
        order = self._order
        if not order or order[0].time >= cutoff - FORGET_CHUNK_SECONDS:
            return
        while order and order[0].time < cutoff:
            stored = order.popleft()
            if self.replies.get(stored.request_id) is stored:
                del self.replies[stored.request_id]
        self.journal.changes.forget_replies_before = cutoff
