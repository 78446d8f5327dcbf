"""What only the PostgreSQL store has to survive (the shared contract is test_store_contract.py):
the server restarting under it, several services opening one database, a server that is not
there, a read-only database. Each test has a store of its own on the session's server
(tests/postgres_server.py); the restart tests restart that server."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import msgpack
import psycopg
import pytest
from postgres_server import PostgresServer

from dirac_like.client import Client, RetryPolicy
from dirac_like.errors import JobNotFound, StoreError, UnstorableValue
from dirac_like.model import ChangeSet, HistoryEntry, JobRecord, StoredReply
from dirac_like.processes import ServiceProcess
from dirac_like.states import JobStatus
from dirac_like.store.base import SCHEMA_VERSION, open_store
from dirac_like.store.postgres import COPY_THRESHOLD, PostgresStore

# Tries that outlast a server restart (a few seconds on a loaded machine).
PATIENT = RetryPolicy(timeout=5.0, retries=30, backoff=0.2, max_backoff=1.0)
HELLO = 'Executable = "/bin/echo"; Arguments = "hello";'


@pytest.fixture
def open_postgres(postgres_url: str) -> Iterator[Callable[..., PostgresStore]]:
    """Opens stores on this test's URL (or another); closes them all at teardown."""
    opened: list[PostgresStore] = []

    def open_(url: str = postgres_url) -> PostgresStore:
        store = open_store(url)
        assert isinstance(store, PostgresStore)
        opened.append(store)
        return store

    yield open_
    for store in opened:
        store.close()


def new_job(job_id: int) -> ChangeSet:
    job = JobRecord(job_id, "alice", "user", 1, 1, JobStatus.WAITING, submitted=1.0, updated=1.0)
    reply = StoredReply(f"req-{job_id}", msgpack.packb({"ok": True}), 1.0)
    return ChangeSet(new_jobs=[(job, msgpack.packb({}))], replies=[reply])


def test_a_server_restart_fails_the_commit_under_way_and_the_next_one_reconnects(
    postgres_server: PostgresServer, open_postgres: Callable[..., PostgresStore]
) -> None:
    store = open_postgres()
    store.commit(new_job(1))

    postgres_server.restart()

    with pytest.raises(StoreError, match="commit failed and was rolled back"):
        store.commit(new_job(2))  # its connection died with the old server
    store.commit(new_job(2))  # sent again, as the service's clients do: a new connection
    state = open_postgres().load()
    assert [job.job_id for job in state.jobs] == [1, 2]
    assert [reply.request_id for reply in state.replies] == ["req-1", "req-2"]


def test_a_central_service_on_postgresql_loses_nothing_acknowledged_across_a_server_restart(
    postgres_server: PostgresServer,
    postgres_url: str,
    start_central: Callable[..., ServiceProcess],
    open_postgres: Callable[..., PostgresStore],
) -> None:
    service = start_central(config_text=f'[store]\nurl = "{postgres_url}"\n')
    acknowledged: list[int] = []
    with Client(service.endpoint, PATIENT) as client:
        acknowledged += client.submit([HELLO] * 3, owner="")

        postgres_server.restart()  # the service's connection dies; it must reopen the store

        for _ in range(3):  # the first commit fails: its requests are retried, then answered
            acknowledged += client.submit([HELLO] * 2, owner="")
        statuses = client.status(acknowledged)

    assert len(set(acknowledged)) == 9
    assert {row.status for row in statuses} <= {"Received", "Checking", "Waiting"}
    stored = {job.job_id for job in open_postgres().load().jobs}
    assert stored == set(acknowledged)


def test_services_opening_a_new_database_at_once_migrate_it_once(
    postgres_url: str, open_postgres: Callable[..., PostgresStore]
) -> None:
    opened: list[PostgresStore | BaseException] = []

    def open_one() -> None:
        try:
            opened.append(open_postgres())
        except BaseException as exc:
            opened.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert all(isinstance(store, PostgresStore) for store in opened), opened
    with psycopg.connect(postgres_url) as connection:
        assert connection.execute("SELECT version FROM schema_version").fetchall() == [
            (SCHEMA_VERSION,)
        ]


def test_a_server_that_is_not_there_is_a_store_error_that_hides_the_password() -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    with pytest.raises(StoreError, match=f"cannot connect to store .*127.0.0.1:{port}") as caught:
        open_store(f"postgresql://dirac:s3cret@127.0.0.1:{port}/dirac")

    assert "s3cret" not in str(caught.value)


def test_a_read_only_database_opens_but_is_not_writable(
    postgres_url: str, open_postgres: Callable[..., PostgresStore]
) -> None:
    open_postgres().commit(new_job(1))
    read_only = postgres_url + "%20-cdefault_transaction_read_only%3Don"

    store = open_postgres(read_only)

    assert [job.job_id for job in store.load().jobs] == [1]
    with pytest.raises(StoreError, match="not writable"):
        store.check_writable()
    with pytest.raises(StoreError, match="read-only"):
        store.commit(new_job(2))
    assert [job.job_id for job in open_postgres().load().jobs] == [1]


def test_a_large_batch_goes_in_by_copy_whole_or_not_at_all(
    open_postgres: Callable[..., PostgresStore],
) -> None:
    store = open_postgres()
    odd = 'tab\there, newline\nthere, back\\slash, "quotes", \\N'
    batch = ChangeSet()
    for job_id in range(1, COPY_THRESHOLD * 3):
        job = JobRecord(job_id, odd, "user", 1, 1, JobStatus.WAITING, kill_requested=True)
        batch.new_jobs.append((job, msgpack.packb({"Arguments": odd})))
        batch.history.append(HistoryEntry(job_id, "Received", odd, "", 1.0, "JobManager"))
    store.commit(batch)
    duplicate = ChangeSet(new_jobs=[*new_job(100).new_jobs] * COPY_THRESHOLD)

    with pytest.raises(UnstorableValue):
        store.commit(duplicate)

    state = open_postgres().load()
    assert [job.job_id for job in state.jobs] == list(range(1, COPY_THRESHOLD * 3))
    assert {(job.owner, job.kill_requested) for job in state.jobs} == {(odd, True)}
    assert store.description(5) == {"Arguments": odd}
    assert store.history(5) == [HistoryEntry(5, "Received", odd, "", 1.0, "JobManager")]


def test_a_session_refused_by_on_connect_commits_nothing_even_after_a_reconnect(
    postgres_server: PostgresServer, postgres_url: str, open_postgres: Callable[..., PostgresStore]
) -> None:
    allowed = [True]

    def fence(connection: psycopg.Connection[Any]) -> None:
        if not allowed[0]:
            raise StoreError("this instance lost its lock")

    store = PostgresStore(postgres_url, on_connect=fence)
    try:
        store.commit(new_job(1))
        allowed[0] = False
        postgres_server.restart()

        for _ in range(2):  # the old session is gone; a new one is refused
            with pytest.raises(StoreError):
                store.commit(new_job(2))
    finally:
        store.close()
    assert [job.job_id for job in open_postgres().load().jobs] == [1]


def test_descriptions_read_ahead_are_the_stored_ones_and_later_jobs_are_found(
    open_postgres: Callable[..., PostgresStore],
) -> None:
    store = open_postgres()
    for job_id in (1, 2, 3):
        changes = new_job(job_id)
        changes.new_jobs = [
            (job, msgpack.packb({"Arguments": str(job_id)})) for job, _ in changes.new_jobs
        ]
        store.commit(changes)

    assert store.description(1) == {"Arguments": "1"}  # reads 2 and 3 ahead
    store.commit(new_job(4))  # after the read-ahead

    assert [store.description(job_id) for job_id in (3, 2)] == [
        {"Arguments": "3"},
        {"Arguments": "2"},
    ]
    assert store.description(4) == {}
    with pytest.raises(JobNotFound):
        store.description(5)
