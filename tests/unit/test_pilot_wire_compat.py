"""An old pilot works with a new service for one version (issue 15): the service's replies to a
pilot that sends no ``revision`` are read by that pilot's own checker, which refuses unknown
keys. The older pilot's reply types are written out here as it shipped them (before
``MatchedJob.lease``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from test_central_state import HELLO, Grid

from dirac_like.errors import ProtocolError
from dirac_like.protocol import (
    LEASE_REVISION,
    PILOT_REVISION,
    Op,
    PilotCommand,
    parse_reply_value,
)


@dataclass(frozen=True)
class OldMatchedJob:  # the pilot's MatchedJob before the lease
    job_id: int
    attempt: int
    owner: str
    group: str
    cores: int
    description: dict[str, Any]


@dataclass(frozen=True)
class OldRequestJobReply:
    job: OldMatchedJob | None
    reason: str
    commands: list[PilotCommand]


SITE = "LCG.CERN.cern"


@pytest.fixture
def grid(tmp_path: Path) -> Grid:
    return Grid()


def test_a_pilot_that_sends_no_revision_reads_the_new_services_match(grid: Grid) -> None:
    grid.submit(HELLO)
    raw = grid.call(Op.REQUEST_JOB, pilot_id="old", resources={"site": SITE})  # as it sent it
    reply = parse_reply_value(OldRequestJobReply, raw, "result")
    assert reply.job is not None and reply.job.job_id == 1
    assert "lease" not in raw["job"]  # the field it does not know is left off


def test_a_pilot_of_the_lease_revision_gets_its_lease(grid: Grid) -> None:
    grid.submit(HELLO)
    raw = grid.call(
        Op.REQUEST_JOB, pilot_id="new", resources={"site": SITE}, revision=PILOT_REVISION
    )
    assert PILOT_REVISION >= LEASE_REVISION
    assert raw["job"]["lease"] == grid.config.jobs.stalled_timeout
    with pytest.raises(ProtocolError):  # why the old pilot is not sent it
        parse_reply_value(OldRequestJobReply, raw, "result")


def test_request_jobs_gives_a_job_per_free_core_and_a_reason_when_none(grid: Grid) -> None:
    grid.submit(HELLO, HELLO, HELLO)
    raw = grid.call(
        Op.REQUEST_JOBS, pilot_id="p", resources={"site": SITE, "cores": 2}, count=8, revision=1
    )
    assert [job["job_id"] for job in raw["jobs"]] == [1, 2]  # two free cores, two jobs
    raw = grid.call(Op.REQUEST_JOBS, pilot_id="p", resources={"site": SITE, "cores": 4}, count=4)
    assert [job["job_id"] for job in raw["jobs"]] == [3]
    raw = grid.call(Op.REQUEST_JOBS, pilot_id="p", resources={"site": SITE, "cores": 4}, count=4)
    assert raw["jobs"] == [] and raw["reason"]


def test_update_statuses_applies_each_report_alone(grid: Grid) -> None:
    grid.submit(HELLO, HELLO)
    first, second = (grid.pilot("p", site=SITE) for _ in range(2))
    reports = [
        {
            "job_id": first["job_id"],
            "attempt": first["attempt"],
            "pilot_id": "p",
            "status": "Running",
        },
        {"job_id": second["job_id"], "attempt": 99, "pilot_id": "p", "status": "Running"},
    ]
    raw = grid.call(Op.UPDATE_STATUSES, pilot_id="p", reports=reports)
    [ok, refused] = raw["outcomes"]
    assert ok.get("error") is None and refused["error"]["code"]
    statuses = {row["job_id"]: row["status"] for row in grid.call(Op.STATUS, job_ids=[1, 2])}
    assert statuses == {first["job_id"]: "Running", second["job_id"]: "Matched"}
