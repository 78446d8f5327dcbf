"""The pair's tables in the PostgreSQL store's versioned schema (version 10), on a real server.

A version-9 store is migrated whether or not a pair already made its tables on first use (as
the releases before 10 did); a store a central service leads is migrated by no other opener.
"""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from dirac_like.errors import SchemaTooNew, StoreError
from dirac_like.model import ChangeSet, SiteRecord
from dirac_like.sandbox import checksum
from dirac_like.services.high_availability import Instance, InstanceBoard
from dirac_like.services.leadership import Role
from dirac_like.services.pair_shared import DatabaseAuditLog
from dirac_like.services.shared_sandboxes import PostgresSandboxStore
from dirac_like.store.base import SCHEMA_VERSION
from dirac_like.store.postgres import PostgresStore, migrations
from dirac_like.store.postgres_pair import (
    LEADER_LOCK,
    MIGRATION_LOCK,
    PAIR_MIGRATION,
    PAIR_SCHEMA_VERSION,
    TRY_LEADER_LOCK,
    LeaderFence,
)
from dirac_like.testing import wait_for

PAIR_TABLES = {
    "ha_instances", "ha_files", "ha_audit", "ha_sandboxes", "ha_sandbox_parts",
    "ha_sandbox_grants",
}  # fmt: skip
# What a pair of release 9 made on first use (services/high_availability.py and
# services/shared_sandboxes.py made the same tables, but ha_instances.code_schema, before they
# were in the schema), with a row in each.
PAIR_TABLES_OF_RELEASE_9 = (
    *(statement for statement in PAIR_MIGRATION if "code_schema" not in statement),
    "INSERT INTO ha_instances VALUES ('a', 'tcp://a:7700', 'a', 7, 'leader', 1.0, 2.0)",
    "INSERT INTO ha_files VALUES ('identities', 'registry', 1.0)",
    "INSERT INTO ha_audit (epoch, instance, line) VALUES (1.0, 'a', 'ban S')",
    "INSERT INTO ha_sandboxes VALUES ('abc', 3, 1.0)",
    "INSERT INTO ha_sandbox_parts VALUES ('abc', '', 0, 'xyz', 1.0)",
    "INSERT INTO ha_sandbox_grants VALUES ('abc', 'alice')",
)


def version_9_store(url: str, *statements: str) -> None:
    """A store at schema 9 (its migrations, translated), with ``statements`` run after."""
    with psycopg.connect(url, autocommit=True) as connection, connection.transaction():
        for step in migrations()[:9]:
            for statement in step:
                connection.execute(statement)
        connection.execute("CREATE TABLE schema_version (version BIGINT NOT NULL)")
        connection.execute("INSERT INTO schema_version VALUES (9)")
        connection.execute("INSERT INTO sites VALUES ('S', 1, 'old ban', 1.0, 0, 0, -1)")
        for statement in statements:
            connection.execute(statement)


def tables(url: str) -> set[str]:
    with psycopg.connect(url, autocommit=True) as connection:
        rows = connection.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
        ).fetchall()
    return {row[0] for row in rows}


def stored_version(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as connection:
        row = connection.execute("SELECT version FROM schema_version").fetchone()
    assert row is not None
    return int(row[0])


def test_a_new_store_has_the_pair_tables_at_the_current_version(postgres_url: str) -> None:
    PostgresStore(postgres_url).close()

    assert tables(postgres_url) >= PAIR_TABLES
    assert stored_version(postgres_url) == SCHEMA_VERSION == PAIR_SCHEMA_VERSION + 1 == 11


def test_a_version_9_store_without_the_pair_tables_is_migrated(postgres_url: str) -> None:
    version_9_store(postgres_url)
    assert not PAIR_TABLES & tables(postgres_url)

    store = PostgresStore(postgres_url)
    try:
        assert store.schema_version() == SCHEMA_VERSION
        assert [site.name for site in store.load().sites] == ["S"]
    finally:
        store.close()
    assert tables(postgres_url) >= PAIR_TABLES


def test_a_version_9_store_whose_pair_made_its_tables_keeps_their_rows(postgres_url: str) -> None:
    version_9_store(postgres_url, *PAIR_TABLES_OF_RELEASE_9)

    PostgresStore(postgres_url).close()

    assert stored_version(postgres_url) == SCHEMA_VERSION
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        instance = connection.execute("SELECT name, role, code_schema FROM ha_instances")
        assert instance.fetchall() == [("a", "leader", 0)]  # an instance of before: not known
        assert connection.execute("SELECT line FROM ha_audit").fetchall() == [("ban S",)]
        assert connection.execute("SELECT count(*) FROM ha_files").fetchone() == (1,)
        parts = connection.execute("SELECT data FROM ha_sandbox_parts").fetchall()
        assert [bytes(part) for (part,) in parts] == [b"xyz"]
        assert connection.execute("SELECT holder FROM ha_sandbox_grants").fetchall() == [("alice",)]


def test_a_store_a_central_service_leads_is_not_migrated_by_another(postgres_url: str) -> None:
    version_9_store(postgres_url)
    with psycopg.connect(postgres_url, autocommit=True) as leader:
        assert leader.execute(TRY_LEADER_LOCK, (LEADER_LOCK,)).fetchone() == (True,)

        with pytest.raises(StoreError, match=r"schema version 9 .* a central service leads it"):
            PostgresStore(postgres_url)

        assert stored_version(postgres_url) == 9
        assert not PAIR_TABLES & tables(postgres_url)


def test_opened_without_migrating_a_store_stays_until_migrated(postgres_url: str) -> None:
    """A standby's store: the leader lock is held by its own session when it migrates."""
    version_9_store(postgres_url)

    store = PostgresStore(postgres_url, migrate=False)
    try:
        assert (store.schema_version(), store.code_version) == (9, SCHEMA_VERSION)
        assert not PAIR_TABLES & tables(postgres_url)
        connection = store._db.connection  # the store's session takes the lock, as a leader's
        assert connection.execute(TRY_LEADER_LOCK, (LEADER_LOCK,)).fetchone() == (True,)
        store.migrate()
        assert store.schema_version() == SCHEMA_VERSION
        store.commit(ChangeSet(sites={"T": SiteRecord("T", False, "", 2.0)}))
        assert [site.name for site in store.load().sites] == ["S", "T"]
    finally:
        store.close()


def test_a_store_newer_than_the_code_is_refused_unmigrated(postgres_url: str) -> None:
    PostgresStore(postgres_url).close()
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        connection.execute("UPDATE schema_version SET version = %s", (SCHEMA_VERSION + 1,))

    newer = rf"schema version {SCHEMA_VERSION + 1}, newer than this code knows \({SCHEMA_VERSION}\)"
    with pytest.raises(SchemaTooNew, match=newer):
        PostgresStore(postgres_url)
    store = PostgresStore(postgres_url, migrate=False)  # what a standby does: it only reads
    try:
        assert store.schema_version() == SCHEMA_VERSION + 1
        with pytest.raises(SchemaTooNew):
            store.migrate()
    finally:
        store.close()


def test_a_leaders_writes_beside_its_session_are_refused_once_it_lost_the_lock(
    postgres_url: str, tmp_path: Path
) -> None:
    """Sandboxes and audit lines go on connections of their own: the fence refuses them once
    the leader's session is gone, so none lands on a schema migrated by the next leader."""
    PostgresStore(postgres_url).close()
    leader = psycopg.connect(postgres_url, autocommit=True)
    assert leader.execute(TRY_LEADER_LOCK, (LEADER_LOCK,)).fetchone() == (True,)
    fence = LeaderFence(leader.info.backend_pid)
    sandboxes = PostgresSandboxStore(postgres_url, 1 << 20, lambda: 1000.0, fence)
    audit = DatabaseAuditLog(tmp_path, postgres_url, fence)
    try:
        written = sandboxes.put(b"while leading")
        audit.record("ban S", 1000.0)
        backend = leader.info.backend_pid
        leader.close()  # the lock goes with the session, once its backend has ended
        wait_for(lambda: backend_gone(postgres_url, backend), "the leader's backend to end")

        with pytest.raises(OSError, match="no longer holds the leader lock"):
            sandboxes.put(b"after the lead was lost")
        audit.record("ban T", 1001.0)  # in the instance's file only
    finally:
        sandboxes.close()
        audit.close()

    reader = PostgresSandboxStore(postgres_url, 1 << 20, lambda: 1000.0)
    try:
        assert reader.get(written) == b"while leading"
        assert not reader.has(checksum(b"after the lead was lost"))
    finally:
        reader.close()
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        assert connection.execute("SELECT line FROM ha_audit").fetchall() == [("ban S",)]
    assert "ban T" in (tmp_path / "logs" / "audit.log").read_text()


def backend_gone(url: str, pid: int) -> bool:
    """Whether the server backend ``pid`` has ended (a closed client's backend ends a moment
    later, and its advisory locks with it)."""
    with psycopg.connect(url, autocommit=True) as connection:
        found = connection.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,))
        return found.fetchone() is None


def test_a_fenced_write_under_way_holds_a_migration_off(postgres_url: str) -> None:
    PostgresStore(postgres_url).close()
    with (
        psycopg.connect(postgres_url, autocommit=True) as leader,
        psycopg.connect(postgres_url, autocommit=True) as writer,
        psycopg.connect(postgres_url, autocommit=True) as migrator,
    ):
        assert leader.execute(TRY_LEADER_LOCK, (LEADER_LOCK,)).fetchone() == (True,)
        with writer.transaction():
            LeaderFence(leader.info.backend_pid).check(writer)
            with migrator.transaction():
                taken = migrator.execute("SELECT pg_try_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
                assert taken.fetchone() == (False,)
        with migrator.transaction():  # the write committed: a migration may run
            taken = migrator.execute("SELECT pg_try_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
            assert taken.fetchone() == (True,)


def test_a_standby_newer_than_the_store_notes_itself_in_the_columns_the_store_has(
    postgres_url: str,
) -> None:
    """Upgrading from release 9: the newer standby notes itself in release 9's ha_instances
    (no code_schema column), and on a store no pair has used yet, not at all."""
    version_9_store(postgres_url)
    board = InstanceBoard(Instance("b", "tcp://b:7700", "b", 8, SCHEMA_VERSION))
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        board.note(connection, Role.STANDBY, 1.0, 2.0, stored_schema=9)  # no table: nothing
        assert "ha_instances" not in tables(postgres_url)
        for statement in PAIR_TABLES_OF_RELEASE_9:
            connection.execute(statement)

        board.note(connection, Role.STANDBY, 1.0, 3.0, stored_schema=9)

        rows = connection.execute("SELECT name, role, seen FROM ha_instances ORDER BY name")
        assert rows.fetchall() == [("a", "leader", 2.0), ("b", "standby", 3.0)]
        assert stored_version(postgres_url) == 9
