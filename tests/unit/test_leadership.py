"""The pair's leadership decisions (services/leadership.py) and the client's server lists."""

from __future__ import annotations

import pytest
import zmq

from dirac_like.client import Client, connect_servers, server_urls
from dirac_like.errors import ConfigError
from dirac_like.protocol import ServiceInstanceRow
from dirac_like.services.leadership import (
    Leadership,
    LeadershipConfig,
    Role,
    SchemaStep,
    Step,
    mark_silent,
    schema_step,
)

CONFIG = LeadershipConfig(retry_interval=0.5, probe_interval=0.25, rejoin_delay=2.0)


def test_a_new_instance_stands_by_and_tries_the_lock_at_once() -> None:
    leadership = Leadership(CONFIG, now=100.0)
    assert leadership.role is Role.STANDBY
    assert leadership.due(100.0) is Step.TRY_LOCK


def test_a_busy_lock_is_tried_again_after_the_retry_interval() -> None:
    leadership = Leadership(CONFIG, now=100.0)
    leadership.lock_busy(100.0)
    assert leadership.due(100.4) is Step.WAIT
    assert leadership.due(100.5) is Step.TRY_LOCK
    assert leadership.next_deadline() == 100.5


def test_the_lock_taken_makes_a_leader_that_probes_its_session() -> None:
    leadership = Leadership(CONFIG, now=100.0)
    leadership.lock_taken(101.0)
    assert leadership.leading and leadership.since == 101.0 and leadership.terms == 1
    assert leadership.due(101.2) is Step.WAIT
    assert leadership.due(101.25) is Step.PROBE
    leadership.session_ok(101.3)
    assert leadership.due(101.5) is Step.WAIT


def test_a_lost_session_makes_the_leader_stand_by_and_let_the_standby_try_first() -> None:
    leadership = Leadership(CONFIG, now=100.0)
    leadership.lock_taken(100.0)
    leadership.session_lost(105.0, "terminated")
    assert leadership.role is Role.STANDBY and leadership.since == 105.0
    assert leadership.last_loss == "terminated"
    assert leadership.due(106.9) is Step.WAIT  # the standby, trying every 0.5 s, comes first
    assert leadership.due(107.0) is Step.TRY_LOCK
    leadership.lock_taken(107.0)
    assert leadership.terms == 2


def test_a_leader_neither_takes_nor_tries_the_lock_again() -> None:
    leadership = Leadership(CONFIG, now=100.0)
    leadership.lock_taken(100.0)
    with pytest.raises(RuntimeError):
        leadership.lock_taken(101.0)
    with pytest.raises(RuntimeError):
        leadership.lock_busy(101.0)


def test_server_urls_split_a_comma_separated_list() -> None:
    assert server_urls("tcp://a:1") == ["tcp://a:1"]
    assert server_urls("tcp://a:1, tcp://b:2") == ["tcp://a:1", "tcp://b:2"]


@pytest.mark.parametrize("bad", ["", "tcp://a:1,", "a:1", "tcp://a:1,,tcp://b:2", "tcp://"])
def test_a_malformed_server_list_is_a_clear_error(bad: str) -> None:
    with pytest.raises(ConfigError, match="not a ZeroMQ endpoint"):
        server_urls(bad)
    with pytest.raises(ConfigError):
        Client(bad, insecure=True)


def test_several_servers_send_only_to_connected_ones() -> None:
    context = zmq.Context()
    try:
        one, two = context.socket(zmq.DEALER), context.socket(zmq.DEALER)
        connect_servers(one, "tcp://127.0.0.1:1")
        connect_servers(two, "tcp://127.0.0.1:1,tcp://127.0.0.1:2")
        assert one.getsockopt(zmq.IMMEDIATE) == 0
        assert two.getsockopt(zmq.IMMEDIATE) == 1
        assert not two.poll(50, zmq.POLLOUT)  # nobody listens: nothing may be sent
        one.close(0)
        two.close(0)
    finally:
        context.term()


class SessionDouble:
    """A psycopg connection as LockSession uses it (statements noted, no server)."""

    def __init__(self) -> None:
        self.broken = self.closed = False
        self.statements: list[str] = []

    def execute(self, sql: str, parameters: object = ()) -> SessionDouble:
        self.statements.append(sql)
        return self

    def fetchone(self) -> tuple[bool]:
        return (True,)


def test_the_lock_session_is_the_store_s_first_session_and_refuses_any_other() -> None:
    from dirac_like.errors import StoreError
    from dirac_like.services.high_availability import LockSession

    lock, first = LockSession(), SessionDouble()
    lock.on_connect(first)  # type: ignore[arg-type]
    assert any("tcp_keepalives_idle" in sql for sql in first.statements)
    assert lock.try_lock()
    with pytest.raises(StoreError, match="no other is used"):
        lock.on_connect(SessionDouble())  # type: ignore[arg-type]
    assert lock.connection is first


def test_a_broken_lock_session_is_leadership_lost() -> None:
    from dirac_like.services.high_availability import LeadershipLost, LockSession

    lock, session = LockSession(), SessionDouble()
    lock.on_connect(session)  # type: ignore[arg-type]
    lock.check()
    session.broken = True
    with pytest.raises(LeadershipLost):
        lock.check()
    with pytest.raises(LeadershipLost):
        lock.probe()


def test_an_instance_not_seen_for_a_while_shows_as_silent_not_standby() -> None:
    rows = [
        ServiceInstanceRow("a", "tcp://a", "a", 1, "leader", 100.0, 200.0),
        ServiceInstanceRow("b", "tcp://b", "b", 2, "standby", 100.0, 199.0),
        ServiceInstanceRow("c", "tcp://c", "c", 3, "standby", 100.0, 150.0),  # killed at 150
    ]
    assert [row.role for row in mark_silent(rows, now=200.5)] == ["leader", "standby", "silent"]
    assert mark_silent(rows, now=200.5)[2].seen == 150.0  # when it was last seen stays shown


def test_an_instance_serves_its_own_schema_migrates_an_older_and_refuses_a_newer() -> None:
    assert schema_step(stored=10, known=10) is SchemaStep.SERVE
    assert schema_step(stored=9, known=10) is SchemaStep.MIGRATE
    assert schema_step(stored=0, known=10) is SchemaStep.MIGRATE  # a new, empty database
    assert schema_step(stored=11, known=10) is SchemaStep.REFUSE
