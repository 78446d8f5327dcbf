"""Replies held until what they acknowledge is durable, while the loop serves the next batch.

With a store whose commits return before they are synced (:meth:`Store.deferred_sync`: SQLite at
``synchronous = "full"`` with ``[store] overlap_sync``), the loop commits a batch, hands its
replies to :class:`HeldReplies` and goes on with the next batch while a thread of its own runs the
sync (an ``fsync`` of the WAL, during which that thread does not hold the GIL). The replies are
sent once the sync has returned: nothing is acknowledged before it is durable.

The rules (:meth:`HeldReplies.hold`):

- the store syncs inside its commits (no deferred sync): the replies go out at once;
- the batch committed something not yet synced: a sync starts, holding the batch's replies; if
  one is already running, the loop waits for it first (and sends what it held): one sync at a
  time, each covering every commit before it started;
- the batch committed nothing: its replies may still show what an earlier batch committed (a
  status read after a match), so they wait for the sync running, if any, else go out at once.

The loop asks :meth:`HeldReplies.poll` between the requests of the next batch, so a batch's
replies go out as soon as its sync has returned, not only once the next batch is committed.

A sync that fails raises :class:`SyncFailed` in the loop: nothing it held is sent, and the
service stops (fail-stop: after a failed ``fsync`` the kernel may have dropped the pages it could
not write, so no later sync could vouch for them). Restarted, the service serves what the store
holds; clients retry what was not acknowledged with the same request ids.

The thread tells the loop it is done through a pipe whose read end the loop polls with its
sockets (:attr:`HeldReplies.fd`).
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections.abc import Callable

from dirac_like.store import Store

log = logging.getLogger(__name__)

Frames = list[bytes]  # one multipart message to send


class SyncFailed(Exception):
    """The store's sync failed: what it held is not durable and was not acknowledged."""


class SyncThread:
    """Runs one sync at a time in a thread of its own; the read end of a pipe becomes readable
    when it has returned."""

    def __init__(self) -> None:
        self.fd, self._done_fd = os.pipe()
        self._requests: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self.error: BaseException | None = None
        self.returned = False  # the sync started last has returned (set before the pipe's byte)
        self._thread = threading.Thread(target=self._run, name="store-sync", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (sync := self._requests.get()) is not None:
            try:
                sync()
            except BaseException as exc:  # handed to the loop, which stops
                self.error = exc
            self.returned = True
            os.write(self._done_fd, b".")

    def start(self, sync: Callable[[], None]) -> None:
        self.error, self.returned = None, False
        self._requests.put(sync)

    def wait(self) -> None:
        """Until the sync started last has returned (its byte read from the pipe)."""
        os.read(self.fd, 1)

    def close(self) -> None:
        self._requests.put(None)
        self._thread.join(60)
        os.close(self.fd)
        os.close(self._done_fd)


class HeldReplies:
    """The replies of committed batches, sent once the store says they are durable.
    ``store``: the service's store as it is now (it is reopened after a failed commit, with
    :meth:`settle` called first)."""

    def __init__(self, store: Callable[[], Store], send: Callable[[Frames], None]) -> None:
        self._store = store
        self._send = send
        self._thread = SyncThread() if store().deferred_sync() is not None else None
        self._held: list[Frames] | None = None  # None: no sync running

    @property
    def fd(self) -> int | None:
        """Readable when the running sync has returned (None: the store syncs in its commits)."""
        return None if self._thread is None else self._thread.fd

    def hold(self, replies: list[Frames]) -> None:
        """``replies`` to a batch just committed: sent now, or when a sync has returned."""
        store = self._store()
        sync = store.deferred_sync()
        if sync is None or self._thread is None or not store.take_unsynced():
            # nothing new to sync: after the running sync, if any
            if self._held is None:
                self._send_all(replies)
            else:
                self._held.extend(replies)
            return
        self.settle()
        self._held = list(replies)
        self._thread.start(sync)

    def poll(self) -> None:
        """Send what the running sync holds if it has returned (never waits): the loop asks
        between two requests of the next batch, and when the pipe wakes it."""
        if self._held is not None and self._thread is not None and self._thread.returned:
            self._thread.wait()  # its byte is written right after ``returned``
            self._release()

    def settle(self) -> None:
        """Wait for the running sync, if any, and send what it held (SyncFailed if it failed)."""
        if self._held is not None and self._thread is not None:
            self._thread.wait()
            self._release()

    def _release(self) -> None:
        assert self._thread is not None and self._held is not None
        held, self._held = self._held, None
        error = self._thread.error
        if error is not None:
            log.critical(
                "the store's sync failed (%s): %d replies not sent, nothing since the last sync "
                "acknowledged; the service stops",
                error,
                len(held),
            )
            raise SyncFailed(f"the store's sync failed: {error}") from error
        self._send_all(held)

    def _send_all(self, replies: list[Frames]) -> None:
        for frames in replies:
            self._send(frames)

    def close(self) -> None:
        """Settle, then stop the thread."""
        try:
            self.settle()
        finally:
            if self._thread is not None:
                self._thread.close()
                self._thread = None
