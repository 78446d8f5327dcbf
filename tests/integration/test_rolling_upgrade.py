"""A rolling upgrade across a schema change (issue 18, "how to upgrade one at a time"): two real
central services on a real PostgreSQL, one of them a release newer than this tree
(newer_release_child.py: this code with one more migration).

The newer instance stands by without touching the schema while the older one leads; it migrates
once it holds the leader lock; an older instance then refuses to lead on the newer schema and
exits, naming both versions (docs/high-availability.md, "Upgrading one instance at a time").
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from dirac_like.client import Client, RetryPolicy
from dirac_like.config import Config, StoreConfig
from dirac_like.errors import EXIT_SCHEMA_TOO_NEW, SchemaTooNew
from dirac_like.identity import load_identity
from dirac_like.service_pair import ServicePair
from dirac_like.services.high_availability import PairedService, PairSettings
from dirac_like.store.base import SCHEMA_VERSION
from dirac_like.store.postgres import PostgresStore
from dirac_like.store.postgres_pair import LEADER_LOCK, TRY_LEADER_LOCK
from dirac_like.testing import wait_for

pytestmark = pytest.mark.timeout(180)

CHILD = Path(__file__).with_name("newer_release_child.py")
MARKER_TABLE = "newer_release_marker"  # made by the newer release's one more migration
NEWER = SCHEMA_VERSION + 1
PATIENT = RetryPolicy(timeout=2.0, retries=15, backoff=0.2, max_backoff=1.0)
OLD, NEW = 0, 1  # the instances: a runs this tree, b the newer release


@pytest.fixture
def pair(tmp_path: Path, postgres_server: Any) -> Iterator[ServicePair]:
    pair = ServicePair(tmp_path / "pair", postgres_server.new_store_url("upgrade"))
    pair.programs[NEW] = [sys.executable, str(CHILD)]
    try:
        yield pair
    finally:
        pair.stop()


def client_of(pair: ServicePair) -> Client:
    return Client(pair.endpoint, PATIENT, identity=load_identity(pair.identity_path))


def schema_of(url: str) -> tuple[int, bool]:
    """The store's schema version, and whether the newer release's table is there."""
    with psycopg.connect(url, autocommit=True) as connection:
        version = connection.execute("SELECT version FROM schema_version").fetchone()
        marker = connection.execute("SELECT to_regclass(%s)", (MARKER_TABLE,)).fetchone()
    assert version is not None and marker is not None
    return int(version[0]), marker[0] is not None


def board(pair: ServicePair) -> tuple[dict[int, tuple[str, int]], int]:
    """From the leader's ``service status``: each instance's (role, code schema version), and
    the store's schema version."""
    with client_of(pair) as client:
        status: Any = client.service_status()
    rows = {
        pair.listens.index(row.endpoint): (row.role, row.code_schema) for row in status.instances
    }
    return rows, status.schema


def test_a_newer_standby_migrates_only_once_it_leads_and_an_older_one_refuses(
    pair: ServicePair,
) -> None:
    pair.start(only=(OLD,))
    assert pair.leader() == OLD
    with client_of(pair) as client:
        acknowledged = client.submit([{"Executable": "/bin/true"}] * 3, owner="admin")

    pair.start(only=(NEW,))  # the newer release, standing by

    def noted_standing_by() -> bool:
        return board(pair)[0].get(NEW, ("", 0))[0] == "standby"

    wait_for(noted_standing_by, "the newer instance noted standing by", timeout=30)
    assert schema_of(pair.store_url) == (SCHEMA_VERSION, False)  # untouched while it waits
    assert board(pair) == ({OLD: ("leader", SCHEMA_VERSION), NEW: ("standby", NEWER)},
                           SCHEMA_VERSION)  # fmt: skip

    assert pair.terminate(OLD) == 0  # the rolling upgrade's step 2
    assert pair.leader(other_than=OLD) == NEW
    assert schema_of(pair.store_url) == (NEWER, True)  # migrated by the new leader
    with client_of(pair) as client:
        assert {row.job_id for row in client.status(acknowledged)} == set(acknowledged)
        assert len(client.submit([{"Executable": "/bin/true"}], owner="admin")) == 1
    assert board(pair)[1] == NEWER

    offset = pair.log_path(OLD).stat().st_size
    pair.start(only=(OLD,))  # not upgraded yet: older than the store
    popen = pair.popens[OLD]
    assert popen is not None
    assert popen.wait(60) == EXIT_SCHEMA_TOO_NEW
    said = pair.log_path(OLD).read_bytes()[offset:].decode()
    assert (
        f"the store's schema version is {NEWER}, newer than this instance's code knows "
        f"({SCHEMA_VERSION})" in said
    )
    assert "listening on" not in said
    assert pair.answering(NEW) and schema_of(pair.store_url) == (NEWER, True)


def test_an_instance_that_wins_the_lock_over_a_schema_migrated_meanwhile_refuses(
    postgres_url: str, tmp_path: Path
) -> None:
    """The race the check under the lock is for, replayed step by step in one process: standing
    by, the instance read its own schema version; then a newer leader migrated the store and
    died; the instance takes the lock and must not lead."""
    PostgresStore(postgres_url).close()
    config = Config(store=StoreConfig(url=postgres_url))
    paired = PairedService(config, tmp_path, PairSettings("old", "tcp://127.0.0.1:0", True))
    store, session = paired._standby_store()
    assert store.schema_version() == SCHEMA_VERSION  # what it read standing by
    with psycopg.connect(postgres_url, autocommit=True) as newer:
        newer.execute("UPDATE schema_version SET version = %s", (NEWER,))
    assert session.try_lock()

    with pytest.raises(
        SchemaTooNew, match=f"version is {NEWER}, newer than .* \\({SCHEMA_VERSION}"
    ):
        paired._lead(session, time.time())

    assert paired.service is None and paired.store is None
    with psycopg.connect(postgres_url, autocommit=True) as other:  # the lock went with it
        assert other.execute(TRY_LEADER_LOCK, (LEADER_LOCK,)).fetchone() == (True,)
        assert other.execute("SELECT count(*) FROM ha_instances").fetchone() == (0,)
