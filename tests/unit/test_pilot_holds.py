"""The real pilot obeys a hold (draining toward a bigger job): no request until enough cores are
free or the hold's time is up. Its client is a stub; no socket is used."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from dirac_like.agents.pilot import POLL_SLICE, Pilot, PilotConfig
from dirac_like.errors import UnknownOperation
from dirac_like.protocol import (
    CoreHold,
    PilotResources,
    PilotTurnArgs,
    PilotTurnReply,
    RequestJobReply,
    RequestJobsReply,
)

HELD = RequestJobReply(None, "hold", [], hold=CoreHold(4, 30.0, "multi"))
NOTHING = RequestJobReply(None, "no waiting job fits this pilot", [])


class StubClient:
    def __init__(self) -> None:
        self.asked: list[PilotResources] = []
        self.replies: list[RequestJobReply] = []

        self.old_service = False  # a service without request_jobs
        self.turns = True  # False: a service without pilot_turn
        self.counts: list[int] = []

    def request_job(self, pilot_id: str, resources: PilotResources) -> RequestJobReply:
        self.asked.append(resources)
        return self.replies.pop(0)

    def request_jobs(
        self, pilot_id: str, resources: PilotResources, count: int
    ) -> RequestJobsReply:
        if self.old_service:
            raise UnknownOperation("unknown operation 'request_jobs'")
        self.counts.append(count)
        one = self.request_job(pilot_id, resources)
        return RequestJobsReply([], one.reason, one.commands, one.hold)

    def pilot_turn(self, args: PilotTurnArgs, request_id: str) -> PilotTurnReply:
        if self.old_service or not self.turns:
            raise UnknownOperation("unknown operation 'pilot_turn'")
        reply = self.request_jobs(args.pilot_id, args.resources, args.count)
        return PilotTurnReply([], reply.jobs, reply.reason, reply.commands, reply.hold)


@pytest.fixture
def pilot(tmp_path: Path) -> Iterator[Pilot]:
    made = Pilot(
        PilotConfig(
            server="tcp://127.0.0.1:9",
            site="S",
            cores=4,
            workdir=tmp_path,
            insecure=True,
            idle_timeout=0.0,
        ),
        clock=lambda: 0.0,
    )
    made.client.close()
    made.client = StubClient()  # type: ignore[assignment]
    try:
        yield made
    finally:
        os.close(made._wake_read)
        os.close(made._wake_write)


def test_held_pilot_waits_for_enough_free_cores(
    pilot: Pilot, monkeypatch: pytest.MonkeyPatch
) -> None:
    stub: StubClient = pilot.client  # type: ignore[assignment]
    free = [1]
    monkeypatch.setattr(pilot, "_free_cores", lambda: free[0])
    stub.replies = [HELD, NOTHING]
    pilot.request_jobs(1.0)
    assert [(r.cores, r.total_cores) for r in stub.asked] == [(1, 4)]
    pilot.request_jobs(5.0)
    free[0] = 3
    pilot.request_jobs(6.0)
    assert len(stub.asked) == 1  # held: 3 free of the 4 it holds for
    free[0] = 4
    pilot.request_jobs(7.0)
    assert [r.cores for r in stub.asked] == [1, 4]


def test_held_pilot_asks_again_when_the_hold_ends(
    pilot: Pilot, monkeypatch: pytest.MonkeyPatch
) -> None:
    stub: StubClient = pilot.client  # type: ignore[assignment]
    monkeypatch.setattr(pilot, "_free_cores", lambda: 1)
    stub.replies = [HELD, NOTHING]
    pilot.request_jobs(1.0)
    pilot.request_jobs(30.0)
    assert len(stub.asked) == 1
    pilot.request_jobs(31.0)  # 1 + 30 s: the hold is over
    assert len(stub.asked) == 2


def test_a_pilot_asks_for_a_job_per_free_core_in_one_request(
    pilot: Pilot, monkeypatch: pytest.MonkeyPatch
) -> None:
    stub: StubClient = pilot.client  # type: ignore[assignment]
    monkeypatch.setattr(pilot, "_free_cores", lambda: 3)
    stub.replies = [NOTHING]
    pilot.request_jobs(1.0)
    assert stub.counts == [3]
    assert [r.cores for r in stub.asked] == [3]


def test_a_pilot_falls_back_to_request_job_with_a_service_older_than_request_jobs(
    pilot: Pilot, monkeypatch: pytest.MonkeyPatch
) -> None:
    stub: StubClient = pilot.client  # type: ignore[assignment]
    stub.old_service = True
    monkeypatch.setattr(pilot, "_free_cores", lambda: 3)
    stub.replies = [NOTHING, NOTHING]
    pilot.request_jobs(1.0)
    assert stub.counts == [] and len(stub.asked) == 1  # asked with request_job instead
    pilot.request_jobs(10.0)
    assert len(stub.asked) == 2 and not pilot.reports.batches  # and goes on without asking


def test_a_pilot_asks_with_request_jobs_when_the_service_has_no_pilot_turn(
    pilot: Pilot, monkeypatch: pytest.MonkeyPatch
) -> None:
    stub: StubClient = pilot.client  # type: ignore[assignment]
    stub.turns = False
    monkeypatch.setattr(pilot, "_free_cores", lambda: 3)
    stub.replies = [NOTHING, NOTHING]
    pilot.request_jobs(1.0)
    assert stub.counts == [3] and not pilot.reports.turns  # asked with request_jobs instead
    pilot.request_jobs(10.0)
    assert stub.counts == [3, 3]  # and goes on without trying pilot_turn


def test_a_pilot_whose_cores_are_all_busy_waits_instead_of_spinning(
    pilot: Pilot, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 15: a request time long past made the loop's wait 0 while no core was free to
    ask for (the pilot spun: 29% of a core on a loaded machine with its one core busy)."""
    pilot._next_request = -100.0  # long past: the request was due, but no core is free
    monkeypatch.setattr(pilot, "_free_cores", lambda: 0)
    assert pilot._wait_time() == POLL_SLICE
    monkeypatch.setattr(pilot, "_free_cores", lambda: 1)
    assert pilot._wait_time() == 0.0  # a free core and a request due: at once
    pilot._hold_cores, pilot._hold_until = 4, 5.0  # held for a bigger job until t = 5
    assert pilot._wait_time() == POLL_SLICE
