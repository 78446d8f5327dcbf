"""Fencing (issue 18): a leader whose database session is gone cannot commit, not even on a
session the store opens anew; the lock is free for the other instance."""

from __future__ import annotations

import psycopg
import pytest

from dirac_like.errors import StoreError
from dirac_like.model import ChangeSet
from dirac_like.services.high_availability import FencedStore, LeadershipLost, LockSession
from dirac_like.store.postgres import PostgresStore


def share_change(group: str) -> ChangeSet:
    changes = ChangeSet()
    changes.shares[group] = 2.0
    return changes


def test_a_leader_whose_session_was_terminated_cannot_commit(postgres_url: str) -> None:
    lock = LockSession()
    leader = FencedStore(PostgresStore(postgres_url, on_connect=lock.on_connect), lock)
    other_lock = LockSession()
    other = PostgresStore(postgres_url, on_connect=other_lock.on_connect)
    try:
        assert lock.try_lock() and not other_lock.try_lock()
        leader.commit(share_change("before"))
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (lock.connection.info.backend_pid,))
        for _ in range(2):  # the second time the store would reconnect: refused as well
            with pytest.raises((StoreError, LeadershipLost)):
                leader.commit(share_change("after"))
        assert other_lock.try_lock()  # the lock went with the session
        assert other.load().shares == {"before": 2.0}
    finally:
        leader.close()
        other.close()
