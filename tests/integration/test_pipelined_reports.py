"""Pipelined reports (issue 15): the pilot sends its reports without waiting for their commit,
keeps the final ones in its outbox until they are answered, and a pilot killed -9 with reports
in flight loses none (its successor sends them again under the same ids)."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from test_pilot import FAST_RETRIES, Pilots, wait_for, wait_status
from test_pilot_reliability import outbox_reports

from dirac_like.client import Client
from dirac_like.processes import ServiceProcess
from dirac_like.protocol import NoArgs, Op, PingReply

FINAL = ("Done", "Failed", "Killed")


@pytest.fixture
def pilots(tmp_path: Path) -> Iterator[Pilots]:
    made: list[Pilots] = []
    try:
        yield made.append(Pilots("", tmp_path / "pilots")) or made[0]  # type: ignore[func-returns-value]
    finally:
        for each in made:
            each.stop_all()


def test_posted_requests_are_answered_among_the_others(client: Client) -> None:
    assert client.post(Op.PING, NoArgs(), "posted-1")
    assert client.post(Op.PING, NoArgs(), "posted-2")
    client.ping()  # a call meanwhile: the posted ones' replies are kept, not dropped

    def answered() -> list[str]:
        client.poll_pushes(0.05)
        taken.extend(client.take_answers())
        return [answer.request_id for answer in taken]

    taken: list = []  # type: ignore[type-arg]
    assert sorted(wait_for(lambda: len(answered()) == 2 and answered(), "two answers")) == [
        "posted-1",
        "posted-2",
    ]
    assert all(isinstance(answer.result, PingReply) and answer.error is None for answer in taken)


def test_a_pilot_killed_with_final_reports_in_flight_loses_none(
    start_central: Callable[..., ServiceProcess], pilots: Pilots
) -> None:
    service = start_central()
    pilots.endpoint = service.endpoint
    with Client(service.endpoint, FAST_RETRIES) as client:
        jobs = client.submit(['Executable = "/bin/sh"; Arguments = "-c \'sleep 2\'";'] * 3, "alice")
        pilot, workdir = pilots.start("--cores", "3", "--heartbeat", "60", name="inflight")
        for job_id in jobs:
            wait_status(client, job_id, ("Running",), 30)
    os.kill(service.pid, signal.SIGSTOP)  # the reports are posted, and not answered
    try:

        def done_reports() -> int:
            return sum(report["status"] == "Done" for report in outbox_reports(workdir))

        wait_for(lambda: done_reports() == 3, "three Done reports kept and posted", timeout=30)
        os.kill(pilot.pid, signal.SIGKILL)
        pilot.wait(10)
    finally:
        os.kill(service.pid, signal.SIGCONT)
    pilots.start("--cores", "3", name="inflight")  # its successor on the same workdir
    with Client(service.endpoint, FAST_RETRIES) as client:
        for job_id in jobs:
            final = wait_status(client, job_id, FINAL, 60)
            assert (final.status, final.attempt) == ("Done", 1)
            statuses = [entry.status for entry in client.history(job_id)]
            assert statuses.count("Running") == 1 and "Rescheduled" not in statuses, statuses
    wait_for(lambda: not outbox_reports(workdir), "the outbox to be emptied", timeout=30)
