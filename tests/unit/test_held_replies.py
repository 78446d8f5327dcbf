"""HeldReplies (services/syncing.py): which replies wait for which sync."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import pytest

from dirac_like.services.syncing import HeldReplies, SyncFailed

Held = tuple[HeldReplies, list[list[bytes]]]


class SyncedLater:
    """Stands in for a store whose commits are synced by the caller: ``commit()`` marks one
    commit not yet synced; its sync waits for ``gate`` (or raises ``error``)."""

    def __init__(self) -> None:
        self.unsynced = False
        self.gate = threading.Event()
        self.error: OSError | None = None
        self.syncs = 0

    def commit(self) -> None:
        self.unsynced = True

    def deferred_sync(self) -> Callable[[], None] | None:
        return self._sync

    def take_unsynced(self) -> bool:
        unsynced, self.unsynced = self.unsynced, False
        return unsynced

    def _sync(self) -> None:
        self.gate.wait(30)
        self.syncs += 1
        if self.error is not None:
            raise self.error


class SyncedInCommit(SyncedLater):
    def deferred_sync(self) -> Callable[[], None] | None:
        return None


@pytest.fixture
def store() -> SyncedLater:
    return SyncedLater()


@pytest.fixture
def held(store: SyncedLater) -> Iterator[Held]:
    sent: list[list[bytes]] = []
    replies = HeldReplies(lambda: store, sent.append)  # type: ignore[arg-type, return-value]
    try:
        yield replies, sent
    finally:
        store.gate.set()
        replies.close()


def test_a_committed_batch_waits_for_its_sync(store: SyncedLater, held: Held) -> None:
    replies, sent = held
    store.commit()
    replies.hold([[b"a"]])
    replies.poll()
    assert sent == []
    store.gate.set()
    replies.settle()
    assert sent == [[b"a"]] and store.syncs == 1


def test_a_batch_that_committed_nothing_waits_for_the_sync_running(
    store: SyncedLater, held: Held
) -> None:
    replies, sent = held
    store.commit()
    replies.hold([[b"matched"]])
    replies.hold([[b"status of it"]])  # may show the match: not before it is durable
    assert sent == []
    store.gate.set()
    replies.settle()
    assert sent == [[b"matched"], [b"status of it"]] and store.syncs == 1


def test_with_no_sync_running_a_batch_that_committed_nothing_goes_at_once(
    store: SyncedLater, held: Held
) -> None:
    replies, sent = held
    replies.hold([[b"ping"]])
    assert sent == [[b"ping"]] and store.syncs == 0


def test_a_second_commit_waits_for_the_first_sync_then_starts_its_own(
    store: SyncedLater, held: Held
) -> None:
    replies, sent = held
    store.commit()
    replies.hold([[b"first"]])
    store.gate.set()
    store.commit()
    replies.hold([[b"second"]])  # the first is settled (sent) before the second sync starts
    assert sent == [[b"first"]]
    replies.settle()
    assert sent == [[b"first"], [b"second"]] and store.syncs == 2


def test_a_failed_sync_sends_nothing_it_held(store: SyncedLater, held: Held) -> None:
    replies, sent = held
    store.error = OSError(5, "Input/output error")
    store.commit()
    replies.hold([[b"a"]])
    replies.hold([[b"b"]])
    store.gate.set()
    with pytest.raises(SyncFailed, match="Input/output error"):
        replies.settle()
    assert sent == []


def test_a_store_that_syncs_in_its_commits_gets_no_thread_and_no_wait() -> None:
    store = SyncedInCommit()
    sent: list[list[bytes]] = []
    replies = HeldReplies(lambda: store, sent.append)  # type: ignore[arg-type, return-value]
    store.commit()
    replies.hold([[b"a"]])
    assert replies.fd is None and sent == [[b"a"]]
    replies.close()
