"""Pilot records and sandboxes in the central service, through its handlers with the in-memory
store double and an injected clock (sandboxes in a real folder: they are files)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from test_central_state import HELLO, JOBS, Grid

from dirac_like.config import Config, PilotsConfig
from dirac_like.errors import InvalidArgument, NotFound, PilotNotFound
from dirac_like.protocol import KillJob, Op, StopPilot
from dirac_like.sandbox import SandboxError, SandboxStore, checksum
from dirac_like.services.state import CentralState

SITE = "LCG.CERN.cern"


@pytest.fixture
def grid(tmp_path: Path) -> Grid:
    grid = Grid(Config(jobs=JOBS, pilots=PilotsConfig(retention=1000, max_output_bytes=10)))
    grid.state.sandboxes = SandboxStore(tmp_path / "sandboxes", 1 << 20)
    return grid


def add(grid: Grid, count: int = 1, ce: str = "ce1") -> list[str]:
    return list(
        grid.call(Op.ADD_PILOTS, site=SITE, ce=ce, count=count, fabric="local")["pilot_ids"]
    )


def pilots(grid: Grid, **filters: Any) -> dict[str, dict[str, Any]]:
    return {row["pilot_id"]: row for row in grid.call(Op.PILOTS, **filters)}


@pytest.mark.parametrize("count", [0, 1001])
def test_a_refused_add_pilots_does_not_make_its_site_seen(grid: Grid, count: int) -> None:
    # found by test_hostile_input's fuzzing: the site was listed although nothing was added
    with pytest.raises(InvalidArgument, match="count must be"):
        grid.call(Op.ADD_PILOTS, site="New.Site.org", ce="ce1", count=count)
    assert grid.call(Op.SITES) == []


def test_added_pilots_get_unique_numbered_ids_that_survive_a_restart(grid: Grid) -> None:
    first = add(grid, 2)
    restarted = CentralState(grid.config, grid.store, grid.store.load(), grid.now)
    grid.state = restarted

    second = add(grid, 1, ce="ce2")

    assert first == [f"{SITE}.ce1.1", f"{SITE}.ce1.2"]
    assert second == [f"{SITE}.ce2.3"]
    rows = pilots(grid, site=SITE)
    assert {row["state"] for row in rows.values()} == {"Submitted"}
    assert rows[first[0]]["fabric"] == "local"


def test_director_updates_states_refs_and_output(grid: Grid) -> None:
    [pilot_id] = add(grid)
    grid.call(
        Op.UPDATE_PILOTS, updates=[{"pilot_id": pilot_id, "state": "Waiting", "fabric_ref": "4711"}]
    )
    grid.now += 5
    grid.call(
        Op.UPDATE_PILOTS,
        updates=[
            {
                "pilot_id": pilot_id,
                "state": "Done",
                "reason": "exit code 0",
                "output": "x" * 30 + "END",
            }
        ],
    )

    row = pilots(grid)[pilot_id]
    assert (row["state"], row["fabric_ref"], row["reason"]) == ("Done", "4711", "exit code 0")
    output = grid.call(Op.PILOT_OUTPUT, pilot_id=pilot_id)
    assert output["collected"] and output["output"] == "x" * 7 + "END"  # the tail, 10 bytes


def test_an_update_batch_with_one_unknown_pilot_changes_nothing(grid: Grid) -> None:
    [pilot_id] = add(grid)
    with pytest.raises(PilotNotFound):
        grid.call(
            Op.UPDATE_PILOTS,
            updates=[
                {"pilot_id": pilot_id, "state": "Running"},
                {"pilot_id": "ghost", "state": "Running"},
            ],
        )
    assert pilots(grid)[pilot_id]["state"] == "Submitted"


def test_an_ended_pilot_cannot_come_back_and_unknown_states_are_refused(grid: Grid) -> None:
    [pilot_id] = add(grid)
    grid.call(Op.UPDATE_PILOTS, updates=[{"pilot_id": pilot_id, "state": "Failed"}])
    with pytest.raises(InvalidArgument, match="already ended Failed"):
        grid.call(Op.UPDATE_PILOTS, updates=[{"pilot_id": pilot_id, "state": "Running"}])
    with pytest.raises(InvalidArgument, match="unknown pilot state"):
        grid.call(Op.UPDATE_PILOTS, updates=[{"pilot_id": pilot_id, "state": "Flying"}])
    assert pilots(grid)[pilot_id]["state"] == "Failed"


def test_a_pilots_requests_mark_it_running_and_record_its_jobs(grid: Grid) -> None:
    [pilot_id] = add(grid)
    job_ids = grid.submit(HELLO, HELLO)

    grid.pilot(pilot_id, site=SITE)
    grid.pilot(pilot_id, site=SITE)
    grid.pilot("by-hand-1", site="LCG.Other.org")  # never added: gets a record

    rows = pilots(grid)
    assert rows[pilot_id]["state"] == "Running"
    assert rows[pilot_id]["jobs"] == job_ids
    assert rows[pilot_id]["last_contact"] == grid.now
    assert rows["by-hand-1"]["site"] == "LCG.Other.org" and rows["by-hand-1"]["jobs"] == []
    restarted = CentralState(grid.config, grid.store, grid.store.load(), grid.now)
    assert restarted.pilots.get(pilot_id).jobs == job_ids


def test_killing_a_pilot_reschedules_its_jobs_and_tells_it_to_stop(grid: Grid) -> None:
    [pilot_id] = add(grid)
    [job_id, other] = grid.submit(HELLO, HELLO)
    job = grid.pilot(pilot_id, site=SITE)
    grid.call(
        Op.UPDATE_STATUS, job_id=job_id, attempt=job["attempt"], pilot_id=pilot_id, status="Running"
    )
    grid.state.take_pushes()

    result = grid.call(Op.KILL_PILOT, pilot_id=pilot_id)

    assert result["rescheduled"] == [job_id]
    [status] = grid.call(Op.STATUS, job_ids=[job_id])
    assert status["status"] == "Waiting"
    history = [(row["status"], row["minor_status"]) for row in grid.call(Op.HISTORY, job_id=job_id)]
    assert ("Rescheduled", f"Pilot {pilot_id} killed by an admin") in history
    reply = grid.call(Op.REQUEST_JOB, pilot_id=pilot_id, resources={"site": SITE})
    assert reply["job"] is None and reply["commands"] == [
        {"command": "stop", "reason": "Killed by an admin"}
    ]
    assert "killed by an admin" in reply["reason"]
    assert pilots(grid)[pilot_id]["kill_requested"] is True
    assert grid.pilot("p2", site=SITE)["job_id"] in (job_id, other)  # others still get work


def test_kill_pilot_pushes_kill_and_stop_at_once(grid: Grid) -> None:
    [pilot_id] = add(grid)
    [job_id] = grid.submit(HELLO)
    grid.pilot(pilot_id, site=SITE)
    grid.state.take_pushes()

    grid.call(Op.KILL_PILOT, pilot_id=pilot_id)

    pushes = grid.state.take_pushes()
    assert (pilot_id, KillJob(job_id)) in pushes
    assert (pilot_id, StopPilot("Killed by an admin")) in pushes


def test_killing_an_unknown_or_ended_pilot_is_refused(grid: Grid) -> None:
    [pilot_id] = add(grid)
    grid.call(Op.UPDATE_PILOTS, updates=[{"pilot_id": pilot_id, "state": "Done"}])
    with pytest.raises(PilotNotFound):
        grid.call(Op.KILL_PILOT, pilot_id="nobody")
    with pytest.raises(InvalidArgument, match="already ended"):
        grid.call(Op.KILL_PILOT, pilot_id=pilot_id)


def test_ended_pilots_are_forgotten_after_the_retention(grid: Grid) -> None:
    [ended, alive] = add(grid, 2)
    grid.call(Op.UPDATE_PILOTS, updates=[{"pilot_id": ended, "state": "Done", "output": "o"}])

    grid.now += 1001
    grid.state.clean_up(grid.now)
    grid.commit()

    assert set(pilots(grid)) == {alive}
    assert grid.store.pilot_output(ended) is None


def test_listing_filters_by_site_and_state(grid: Grid) -> None:
    [first, second] = add(grid, 2)
    grid.call(Op.UPDATE_PILOTS, updates=[{"pilot_id": first, "state": "Running"}])
    grid.pilot("elsewhere", site="LCG.Other.org")

    assert set(pilots(grid, site=SITE, states=["running"])) == {first}
    assert set(pilots(grid, states=["Submitted"])) == {second}
    assert set(pilots(grid, site="LCG.Other.org")) == {"elsewhere"}


# -- sandboxes ---------------------------------------------------------------------------------


def upload(grid: Grid, data: bytes, chunk: int = 4, kind: str = "input") -> str:
    sha256, offset = checksum(data), 0
    while True:
        result = grid.call(
            Op.SANDBOX_UPLOAD,
            sha256=sha256,
            size=len(data),
            offset=offset,
            data=data[offset : offset + chunk],
            kind=kind,
        )
        if result["complete"]:
            return sha256
        offset = result["received"]


def test_a_job_names_an_uploaded_sandbox_and_the_pilot_downloads_it(grid: Grid) -> None:
    sha256 = upload(grid, b"0123456789abcdef")
    [job_id] = grid.submit(HELLO + f' InputSandbox = {{"SB:{sha256}", "data.txt"}};')

    job = grid.pilot("p1", site=SITE)
    data = grid.call(Op.SANDBOX_DOWNLOAD, sha256=sha256, offset=10, length=100)

    assert f"SB:{sha256}" in job["description"]["InputSandbox"]
    assert data == {"data": b"abcdef", "size": 16}
    assert grid.store.sandbox(job_id, "input") == sha256


def test_a_job_naming_a_sandbox_never_uploaded_is_refused(grid: Grid) -> None:
    with pytest.raises(InvalidArgument, match="was not uploaded"):
        grid.submit(HELLO + f' InputSandbox = {{"SB:{"0" * 64}"}};')
    with pytest.raises(InvalidArgument, match="not a sandbox checksum"):
        grid.submit(HELLO + ' InputSandbox = {"SB:../../etc/passwd"};')
    assert grid.state.jobs == {}


def test_an_upload_over_the_limit_or_out_of_order_is_refused(grid: Grid) -> None:
    grid.state.sandboxes = SandboxStore(grid.state.sandboxes.root, 8)  # type: ignore[union-attr]
    with pytest.raises(SandboxError, match="size must be 1 to 8"):
        upload(grid, b"x" * 9)
    with pytest.raises(SandboxError, match="does not follow"):
        grid.call(Op.SANDBOX_UPLOAD, sha256="a" * 64, size=8, offset=4, data=b"late")


def test_an_upload_whose_bytes_do_not_match_is_refused_and_not_stored(grid: Grid) -> None:
    with pytest.raises(SandboxError, match="upload it again"):
        grid.call(Op.SANDBOX_UPLOAD, sha256="b" * 64, size=4, offset=0, data=b"abcd")
    assert not grid.state.sandboxes.has("b" * 64)  # type: ignore[union-attr]


def test_the_output_sandbox_comes_with_the_final_status(grid: Grid) -> None:
    [job_id] = grid.submit(HELLO)
    job = grid.pilot("p1", site=SITE)
    report = {"job_id": job_id, "attempt": job["attempt"], "pilot_id": "p1"}
    grid.call(Op.UPDATE_STATUS, **report, status="Running")
    with pytest.raises(NotFound, match="no output sandbox"):
        grid.call(Op.JOB_OUTPUT, job_id=job_id)
    sha256 = upload(grid, b"output archive", kind="output")
    with pytest.raises(InvalidArgument, match="final status"):
        grid.call(Op.UPDATE_STATUS, **report, status="Running", output_sandbox=sha256)

    grid.call(Op.UPDATE_STATUS, **report, status="Done", output_sandbox=sha256)

    assert grid.call(Op.JOB_OUTPUT, job_id=job_id)["sha256"] == sha256


def test_unreferenced_sandboxes_are_collected_referenced_ones_kept(grid: Grid) -> None:
    kept = upload(grid, b"kept by a job")
    grid.submit(HELLO + f' InputSandbox = {{"SB:{kept}"}};')
    orphan = upload(grid, b"never named")

    grid.now += 10**10  # far beyond collect_after, in the files' own (wall clock) terms
    grid.state.clean_up(grid.now)

    store = grid.state.sandboxes
    assert store is not None and store.has(kept) and not store.has(orphan)


@pytest.mark.parametrize("op", [Op.LIST_JOBS, Op.PILOTS, Op.PROBE_RESULTS, Op.TRANSFERS])
@pytest.mark.parametrize("limit", [0, 2**63, 10_000_001])
def test_a_listing_limit_out_of_range_is_refused_before_any_work(
    grid: Grid, op: Op, limit: int
) -> None:
    # found by test_fuzz_service: list_jobs with limit 2**63 failed inside the service (islice)
    since = {"since": 0.0} if op == Op.PROBE_RESULTS else {}
    with pytest.raises(InvalidArgument, match="limit must be 1 to 10000000"):
        grid.call(op, limit=limit, **since)
