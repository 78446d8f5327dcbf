"""``pilot_turn`` (issue 15): a pilot's final reports and its request for jobs in one request,
the jobs matched recorded Running in the same commit. Driven through the handlers with the
in-memory store double (test_central_state.Grid): no sockets."""

from __future__ import annotations

from typing import Any

import pytest
from test_central_state import HELLO, Grid

from dirac_like.errors import InvalidArgument
from dirac_like.protocol import LEASE_REVISION, Op
from dirac_like.services.handlers import RUNNING_AT_MATCH

SITE = "LCG.CERN.cern"


@pytest.fixture
def grid() -> Grid:
    return Grid()


def turn(grid: Grid, reports: list[dict[str, Any]], count: int, cores: int = 1) -> Any:
    return grid.call(
        Op.PILOT_TURN,
        pilot_id="p",
        reports=reports,
        resources={"site": SITE, "cores": cores},
        count=count,
        revision=LEASE_REVISION,
    )


def done(match: dict[str, Any]) -> dict[str, Any]:
    return {
        "job_id": match["job_id"],
        "attempt": match["attempt"],
        "pilot_id": "p",
        "status": "Done",
        "minor_status": "Execution Complete",
    }


def test_a_turn_matches_and_records_each_job_running_at_once(grid: Grid) -> None:
    grid.submit(HELLO, HELLO, HELLO)
    reply = turn(grid, [], count=2, cores=2)
    assert [job["job_id"] for job in reply["jobs"]] == [1, 2]
    assert all(job["lease"] == grid.config.jobs.stalled_timeout for job in reply["jobs"])
    for job_id in (1, 2):
        history = grid.call(Op.HISTORY, job_id=job_id)
        assert [row["status"] for row in history][-2:] == ["Matched", "Running"]
        assert history[-1]["minor_status"] == RUNNING_AT_MATCH
    assert grid.status(3) == "Waiting"


def test_a_turns_reports_are_applied_then_its_cores_matched(grid: Grid) -> None:
    grid.submit(HELLO, HELLO)
    [first] = turn(grid, [], count=1)["jobs"]
    reply = turn(grid, [done(first)], count=1)
    assert reply["outcomes"] == [{"commands": [], "error": None}]
    assert [job["job_id"] for job in reply["jobs"]] == [2]
    assert grid.status(first["job_id"]) == "Done" and grid.status(2) == "Running"


def test_a_report_refused_in_a_turn_leaves_the_others_and_the_match(grid: Grid) -> None:
    grid.submit(HELLO, HELLO)
    [first] = turn(grid, [], count=1)["jobs"]
    stale = {**done(first), "attempt": 99}
    reply = turn(grid, [stale, done(first)], count=1)
    [refused, ok] = reply["outcomes"]
    assert refused["error"]["code"] and ok["error"] is None
    assert grid.status(first["job_id"]) == "Done" and [j["job_id"] for j in reply["jobs"]] == [2]


def test_a_final_report_sent_again_in_a_turn_is_answered_and_changes_nothing(grid: Grid) -> None:
    grid.submit(HELLO)
    [first] = turn(grid, [], count=1)["jobs"]
    turn(grid, [done(first)], count=0)
    history = grid.call(Op.HISTORY, job_id=first["job_id"])
    again = turn(grid, [done(first)], count=0)
    assert again["outcomes"] == [{"commands": [], "error": None}] and again["jobs"] == []
    assert grid.call(Op.HISTORY, job_id=first["job_id"]) == history


def test_a_job_of_a_turn_is_not_given_back_at_the_match_lease(grid: Grid) -> None:
    """Why the payload may start when the reply comes: the job is Running, so only its
    heartbeat lease (stalled_timeout) applies, not match_lease (the concern that made the
    pipelined pilot wait for its Running report before starting a payload)."""
    grid.submit(HELLO)
    [job] = turn(grid, [], count=1)["jobs"]
    grid.advance(grid.config.jobs.match_lease + 1)
    assert grid.status(job["job_id"]) == "Running"


def test_a_pilot_with_no_free_core_may_still_report_in_a_turn(grid: Grid) -> None:
    grid.submit(HELLO)
    [first] = turn(grid, [], count=1)["jobs"]
    reply = turn(grid, [done(first)], count=0, cores=0)
    assert reply["outcomes"] == [{"commands": [], "error": None}] and reply["jobs"] == []
    assert grid.status(first["job_id"]) == "Done"


def test_no_job_says_why(grid: Grid) -> None:
    reply = turn(grid, [], count=1)
    assert reply["jobs"] == [] and reply["reason"]


@pytest.mark.parametrize(
    ("count", "cores", "reports"),
    [(0, 1, []), (65, 1, []), (-1, 1, []), (1, 0, "mine"), (1, 1, "another pilot's")],
)
def test_a_bad_turn_is_refused_and_changes_nothing(
    grid: Grid, count: int, cores: int, reports: Any
) -> None:
    grid.submit(HELLO, HELLO)
    [first] = turn(grid, [], count=1)["jobs"]
    sent = []
    if reports:
        sent = [{**done(first), "pilot_id": "p" if reports == "mine" else "q"}]
    before = grid.snapshot()
    with pytest.raises(InvalidArgument):
        turn(grid, sent, count=count, cores=cores)
    assert grid.snapshot() == before
