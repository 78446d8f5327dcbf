"""The pilot's report sender (agents/report_sender.py) against a stub client: several reports
in one request, each answered alone; one by one with a service older than update_statuses."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dirac_like.agents.outbox import Outbox, Report
from dirac_like.agents.report_sender import ReportSender, RunningOutcome
from dirac_like.client import Answer
from dirac_like.errors import ServiceUnavailable, UnknownOperation
from dirac_like.protocol import (
    ErrorInfo,
    Op,
    PilotResources,
    PilotTurnArgs,
    PilotTurnReply,
    ReportOutcome,
    ReportOutcomes,
    UpdateStatusArgs,
    UpdateStatusesArgs,
)


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


# -- pipelined (issue 15) ------------------------------------------------------------------------


class PostingClient:
    """A stub of the client's pipelined side: what was posted, and the answers to hand out."""

    def __init__(self) -> None:
        self.posted: list[tuple[str, list[UpdateStatusArgs]]] = []
        self.forgotten: list[str] = []
        self.singles: list[int] = []

    def post(self, op: str, args: UpdateStatusesArgs, request_id: str) -> bool:
        self.posted.append((request_id, list(args.reports)))
        return True

    def forget(self, request_id: str) -> None:
        self.forgotten.append(request_id)

    def update_status(self, job_id: int, *args: Any, **kwargs: Any) -> list[Any]:
        self.singles.append(job_id)
        return []

    def answer(self, number: int, outcomes: list[ReportOutcome]) -> Answer:
        return Answer(self.posted[number][0], Op.UPDATE_STATUSES, ReportOutcomes(outcomes))


def posting(client: PostingClient, outbox: Outbox, answered: list[int]) -> ReportSender:
    return ReportSender(lambda: client, outbox, "p", lambda r: answered.append(r.job_id))  # type: ignore[arg-type, return-value]


def test_posted_final_reports_leave_the_outbox_when_their_answer_comes(tmp_path: Path) -> None:
    outbox, answered, client = Outbox(tmp_path), [], PostingClient()
    send = posting(client, outbox, answered)
    kept = reports(outbox, 2)
    send.post(kept, now=0.0)
    assert [[r.job_id for r in args] for _, args in client.posted] == [[1, 2]]
    assert send.in_flight() == {report.request_id for report in kept}
    assert answered == [] and len(outbox.pending()) == 2  # nothing waited for, nothing lost
    busy = ErrorInfo("unavailable", "busy", retryable=True)
    send.collect([client.answer(0, [ReportOutcome([]), ReportOutcome([], busy)])], now=0.1)
    assert answered == [1] and [r.job_id for r in outbox.pending()] == [2]
    assert send.in_flight() == set()  # job 2 is the outbox's next flush's


def test_final_reports_not_answered_in_time_go_back_to_the_outbox(tmp_path: Path) -> None:
    outbox, answered, client = Outbox(tmp_path), [], PostingClient()
    send = posting(client, outbox, answered)
    send.post(reports(outbox, 1), now=0.0)
    send.expire(now=1.0, timeout=3.0)
    assert send.in_flight() and client.forgotten == []
    send.expire(now=3.5, timeout=3.0)
    assert send.in_flight() == set() and client.forgotten == [client.posted[0][0]]
    assert len(outbox.pending()) == 1 and answered == []


def test_posted_running_reports_say_taken_or_refused_and_retry_the_busy_ones(
    tmp_path: Path,
) -> None:
    client = PostingClient()
    send = posting(client, Outbox(tmp_path), [])
    send.post_running([(1, 1), (2, 1), (3, 1)], now=0.0)
    busy = ErrorInfo("store_error", "busy", retryable=True)
    refused = ErrorInfo("illegal_transition", "job 3 is Killed")
    said = [ReportOutcome([]), ReportOutcome([], busy), ReportOutcome([], refused)]
    answer = client.answer(0, said)
    outcomes = send.collect([answer], now=0.1)
    assert outcomes == [RunningOutcome(1, []), RunningOutcome(3, None)]
    send.expire(now=1.0, timeout=3.0)
    assert len(client.posted) == 1  # not at once: the service was busy
    send.expire(now=3.2, timeout=3.0)
    assert [[r.job_id for r in args] for _, args in client.posted[1:]] == [[2]]  # sent again
    assert client.posted[1][1][0].status == "Running"


def test_a_running_report_not_answered_in_time_is_posted_again_under_its_id(
    tmp_path: Path,
) -> None:
    client = PostingClient()
    send = posting(client, Outbox(tmp_path), [])
    send.post_running([(1, 1)], now=0.0)
    send.expire(now=5.0, timeout=3.0)
    assert [request_id for request_id, _ in client.posted] == [client.posted[0][0]] * 2
    assert send.collect([client.answer(1, [ReportOutcome([])])], now=5.1) == [RunningOutcome(1, [])]


def test_a_service_without_update_statuses_gets_posted_reports_one_by_one(
    tmp_path: Path,
) -> None:
    outbox, answered, client = Outbox(tmp_path), [], PostingClient()
    send = posting(client, outbox, answered)
    send.post(reports(outbox, 2), now=0.0)
    unknown = UnknownOperation("unknown operation 'update_statuses'")
    send.collect([Answer(client.posted[0][0], Op.UPDATE_STATUSES, error=unknown)], now=0.1)
    assert client.singles == [1, 2] and not send.batches and outbox.pending() == []
    send.post(reports(outbox, 1), now=0.2)  # and every later one too
    assert len(client.posted) == 1 and client.singles == [1, 2, 1]


# -- one request per turn (pilot_turn) -----------------------------------------------------------


class TurnClient(PostingClient):
    """A stub that answers pilot_turn with ``answers`` in turn (an exception is raised)."""

    def __init__(self, *answers: PilotTurnReply | Exception) -> None:
        super().__init__()
        self.answers = list(answers)
        self.turns: list[tuple[str, PilotTurnArgs]] = []

    def pilot_turn(self, args: PilotTurnArgs, request_id: str) -> PilotTurnReply:
        self.turns.append((request_id, args))
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


CORES = PilotResources(site="S", cores=2)


def test_a_turn_carries_the_reports_and_takes_them_out_of_the_outbox(tmp_path: Path) -> None:
    outbox, answered = Outbox(tmp_path), []
    got = PilotTurnReply([ReportOutcome([]), ReportOutcome([])], [], "none", [])
    client = TurnClient(got)
    reply = sender(client, outbox, answered).turn(reports(outbox, 2), CORES, 2, 0.0)  # type: ignore[arg-type]
    assert reply == got and answered == [1, 2] and outbox.pending() == []
    [(_, args)] = client.turns
    assert [report.job_id for report in args.reports] == [1, 2] and args.count == 2
    assert client.posted == []  # nothing apart


def test_a_turn_not_answered_is_sent_again_as_it_was_and_its_reports_flushed_meanwhile(
    tmp_path: Path,
) -> None:
    outbox, answered = Outbox(tmp_path), []
    got = PilotTurnReply([ReportOutcome([])], [], "none", [])
    client = TurnClient(ServiceUnavailable("no reply"), got)
    send = sender(client, outbox, answered)  # type: ignore[arg-type]
    [first, later] = reports(outbox, 2)
    assert send.turn([first], CORES, 2, 0.0) is None
    assert answered == [] and send.in_flight() == set()  # the flush may send it apart
    assert send.turn([later], CORES, 1, 5.0) == got
    [(first_id, first_args), (again_id, again_args)] = client.turns
    assert (again_id, again_args) == (first_id, first_args)  # the same turn again
    assert [[r.job_id for r in reports] for _, reports in client.posted] == [[2]]  # apart
    assert answered == [1]


def test_a_service_without_pilot_turn_gets_the_reports_apart(tmp_path: Path) -> None:
    outbox, answered = Outbox(tmp_path), []
    client = TurnClient(UnknownOperation("unknown operation 'pilot_turn'"))
    send = sender(client, outbox, answered)  # type: ignore[arg-type]
    with pytest.raises(UnknownOperation):
        send.turn(reports(outbox, 2), CORES, 2, 0.0)
    assert not send.turns and [[r.job_id for r in reports] for _, reports in client.posted] == [
        [1, 2]
    ]
