"""The pilot's report sender (agents/report_sender.py) against a stub client: several reports
in one request, each answered alone; one by one with a service older than update_statuses."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dirac_like.agents.outbox import Outbox, Report
from dirac_like.agents.report_sender import ReportSender
from dirac_like.errors import ServiceUnavailable, UnknownOperation
from dirac_like.protocol import ErrorInfo, ReportOutcome, UpdateStatusArgs


class StubClient:
    def __init__(self, outcomes: list[ReportOutcome] | Exception) -> None:
        self.outcomes = outcomes
        self.batches: list[list[int]] = []
        self.singles: list[int] = []

    def update_statuses(
        self, pilot_id: str, reports: list[UpdateStatusArgs], request_id: str = ""
    ) -> list[ReportOutcome]:
        if isinstance(self.outcomes, Exception):
            raise self.outcomes
        self.batches.append([report.job_id for report in reports])
        return self.outcomes

    def update_status(self, job_id: int, *args: Any, **kwargs: Any) -> list[Any]:
        self.singles.append(job_id)
        return []


def reports(outbox: Outbox, count: int) -> list[Report]:
    return [
        outbox.put(Report.new(job_id=n, attempt=1, pilot_id="p", status="Done", minor_status=""))
        for n in range(1, count + 1)
    ]


def sender(client: StubClient, outbox: Outbox, answered: list[int]) -> ReportSender:
    return ReportSender(lambda: client, outbox, "p", lambda r: answered.append(r.job_id))  # type: ignore[arg-type, return-value]


def test_a_batch_is_answered_report_by_report(tmp_path: Path) -> None:
    outbox, answered = Outbox(tmp_path), []
    busy = ErrorInfo("unavailable", "busy", retryable=True)
    refused = ErrorInfo("illegal_transition", "job 3 is Killed")
    client = StubClient([ReportOutcome([]), ReportOutcome([], busy), ReportOutcome([], refused)])
    assert not sender(client, outbox, answered).send(reports(outbox, 3))
    assert client.batches == [[1, 2, 3]] and client.singles == []
    assert answered == [1, 3]  # acknowledged, and refused for good
    assert [report.job_id for report in outbox.pending()] == [2]  # sent again later


def test_a_service_without_update_statuses_gets_them_one_by_one(tmp_path: Path) -> None:
    outbox, answered = Outbox(tmp_path), []
    client = StubClient(UnknownOperation("unknown operation 'update_statuses'"))
    send = sender(client, outbox, answered)
    assert send.send(reports(outbox, 2))
    assert client.singles == [1, 2] and not send.batches and outbox.pending() == []


def test_a_service_away_keeps_the_whole_batch(tmp_path: Path) -> None:
    outbox, answered = Outbox(tmp_path), []
    client = StubClient(ServiceUnavailable("no reply"))
    assert not sender(client, outbox, answered).send(reports(outbox, 2))
    assert answered == [] and len(outbox.pending()) == 2
