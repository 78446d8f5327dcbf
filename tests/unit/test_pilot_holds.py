"""The real pilot obeys a hold (draining toward a bigger job): no request until enough cores are
free or the hold's time is up. Its client is a stub; no socket is used."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from dirac_like.agents.pilot import Pilot, PilotConfig
from dirac_like.protocol import CoreHold, PilotResources, RequestJobReply

HELD = RequestJobReply(None, "hold", [], hold=CoreHold(4, 30.0, "multi"))
NOTHING = RequestJobReply(None, "no waiting job fits this pilot", [])


class StubClient:
    def __init__(self) -> None:
        self.asked: list[PilotResources] = []
        self.replies: list[RequestJobReply] = []

    def request_job(self, pilot_id: str, resources: PilotResources) -> RequestJobReply:
        self.asked.append(resources)
        return self.replies.pop(0)


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
