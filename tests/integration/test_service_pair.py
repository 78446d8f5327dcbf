"""Issue 18's faults on a real pair: two central services (processes) on a real PostgreSQL.

The kill -9 of the leader under load, with real pilots, is tests/e2e/test_failover_chaos.py.
"""

from __future__ import annotations

import json
import signal
import threading
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from dirac_like.client import Client, RetryPolicy
from dirac_like.errors import DiracLikeError
from dirac_like.identity import load_identity
from dirac_like.service_pair import ServicePair
from dirac_like.store.base import SCHEMA_VERSION
from dirac_like.testing import run_cli, wait_for

pytestmark = pytest.mark.timeout(180)

PATIENT = RetryPolicy(timeout=2.0, retries=15, backoff=0.2, max_backoff=1.0)
JOB = {"Executable": "/bin/true", "CPUTime": 60}


@pytest.fixture(scope="module")
def started_pair(
    tmp_path_factory: pytest.TempPathFactory, postgres_server: Any
) -> Iterator[ServicePair]:
    """One pair for the module (starting two services costs seconds): the first test sees it
    just started, each later one after :func:`pair` restarted what an earlier test stopped."""
    pair = ServicePair(tmp_path_factory.mktemp("pair"), postgres_server.new_store_url("pair"))
    try:
        pair.start()
        yield pair
    finally:
        pair.stop()


@pytest.fixture
def pair(started_pair: ServicePair) -> ServicePair:
    started_pair.start()  # an instance an earlier test stopped comes back, standing by
    return started_pair


@pytest.fixture
def postgres_url(started_pair: ServicePair) -> str:
    """The pair's store (not a new one)."""
    return started_pair.store_url


def client_of(pair: ServicePair, policy: RetryPolicy = PATIENT) -> Client:
    return Client(pair.endpoint, policy, identity=load_identity(pair.identity_path))


def leaders(pair: ServicePair) -> list[int]:
    return [index for index in range(2) if pair.answering(index)]


def lock_holders(url: str) -> list[int]:
    """The backend PIDs holding the pair's advisory lock."""
    with psycopg.connect(url, autocommit=True) as connection:
        rows = connection.execute(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted "
            "AND classid = %s AND objid = hashtext(current_schema())::oid",
            (0x646C6861,),
        ).fetchall()
    return [int(row[0]) for row in rows]


class Submitter(threading.Thread):
    """Submits one job at a time through both URLs until stopped; keeps what was acknowledged."""

    def __init__(self, pair: ServicePair) -> None:
        super().__init__(daemon=True)
        self.pair = pair
        self.acknowledged: list[int] = []
        self.errors: list[str] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        with client_of(self.pair) as client:
            while not self.stopping.is_set():
                try:
                    self.acknowledged.extend(client.submit([JOB], owner="admin"))
                except DiracLikeError as exc:  # unacknowledged: nothing to check
                    self.errors.append(str(exc))

    def stop(self) -> None:
        self.stopping.set()
        self.join(60)


@pytest.fixture
def submitter(pair: ServicePair) -> Iterator[Submitter]:
    submitter = Submitter(pair)
    submitter.start()
    try:
        yield submitter
    finally:
        submitter.stop()


def all_exist(pair: ServicePair, job_ids: list[int]) -> set[int]:
    with client_of(pair) as client:
        return {row.job_id for row in client.status(job_ids)}


def test_both_started_at_once_exactly_one_leads(pair: ServicePair, postgres_url: str) -> None:
    """The first test of the module: the pair was just started, both at once."""
    leader = pair.leader()
    assert leaders(pair) == [leader]
    assert len(lock_holders(postgres_url)) == 1
    with client_of(pair) as client:
        # on a new store the standby notes itself once the leader made the tables (0.5 s)
        status: Any = wait_for(
            lambda: (reply := client.service_status()).instances[1:] and reply,
            "the standby noted in the service status",
        )
    assert status.store == "postgresql" and status.schema == SCHEMA_VERSION
    assert [row.role for row in status.instances] == ["leader", "standby"]
    assert [row.code_schema for row in status.instances] == [SCHEMA_VERSION] * 2
    assert status.instances[0].endpoint == pair.listens[leader]


def test_admin_service_status_names_the_leader(pair: ServicePair) -> None:
    leader = pair.leader()
    done = run_cli(
        pair.endpoint, "admin", "service", "status", "--json",
        "--identity", str(pair.identity_path), cwd=pair.folder,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    first = json.loads(done.stdout)["instances"][0]
    assert first["role"] == "leader" and first["endpoint"] == pair.listens[leader]
    assert first["code_schema"] == SCHEMA_VERSION
    table = run_cli(
        pair.endpoint, "admin", "service", "status",
        "--identity", str(pair.identity_path), cwd=pair.folder,
    )  # fmt: skip
    assert table.returncode == 0, table.stderr
    head, columns, _rule, leading, *_ = table.stdout.splitlines()
    assert head == f"store: postgresql (schema {SCHEMA_VERSION})"
    assert columns.split()[-1] == "Schema" and leading.split()[-1] == str(SCHEMA_VERSION)


def test_a_leader_stopped_with_sigterm_hands_over_at_once(pair: ServicePair) -> None:
    """The rolling upgrade's step: ``systemctl stop`` of the leader."""
    old = pair.leader()
    popen = pair.popens[old]
    assert popen is not None
    popen.send_signal(signal.SIGTERM)
    assert popen.wait(30) == 0
    assert pair.leader(timeout=10.0, other_than=old) != old


def test_admin_actions_are_audited_in_the_database(pair: ServicePair, postgres_url: str) -> None:
    with client_of(pair) as client:
        client.ban_site("LCG.Audited.org", "disk failure")
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        lines = [row[0] for row in connection.execute("SELECT line FROM ha_audit").fetchall()]
    assert any("ban_site" in line and "LCG.Audited.org" in line for line in lines), lines


def test_the_leader_whose_session_is_terminated_stops_and_the_standby_leads(
    pair: ServicePair, postgres_url: str, submitter: Submitter
) -> None:
    old = pair.leader()
    wait_for(lambda: len(submitter.acknowledged) >= 5, "submissions before the fault")
    (holder,) = lock_holders(postgres_url)
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        connection.execute("SELECT pg_terminate_backend(%s)", (holder,))
    new = pair.leader(timeout=10.0, other_than=old)
    assert not pair.answering(old)  # it stopped serving: nothing listens there now
    assert pair.running(old)  # ... yet it lives, standing by
    count = len(submitter.acknowledged)
    wait_for(lambda: len(submitter.acknowledged) > count + 5, "submissions after the fault")
    submitter.stop()
    assert all_exist(pair, submitter.acknowledged) == set(submitter.acknowledged)
    assert leaders(pair) == [new]


def test_postgres_restarted_under_load_loses_nothing_acknowledged(
    pair: ServicePair, postgres_server: Any, submitter: Submitter
) -> None:
    wait_for(lambda: len(submitter.acknowledged) >= 5, "submissions before the restart")
    postgres_server.restart()
    count = len(submitter.acknowledged)
    wait_for(lambda: len(submitter.acknowledged) > count + 5, "submissions after the restart", 60.0)
    submitter.stop()
    assert all_exist(pair, submitter.acknowledged) == set(submitter.acknowledged)
    assert len(leaders(pair)) == 1
    assert pair.running(0) and pair.running(1)  # both recovered: one leads, one stands by
