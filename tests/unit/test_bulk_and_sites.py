"""Bulk actions on a selection of jobs, and site operations, through the service's handlers
(in-memory store double, injected clock). Every refusal leaves the jobs as they were."""

from __future__ import annotations

import pytest
from test_central_state import HELLO, JOBS, Grid

from dirac_like.config import BulkConfig, Config
from dirac_like.errors import InvalidArgument
from dirac_like.protocol import Op
from dirac_like.selection import parse_age, parse_selection
from dirac_like.services.console_handlers import _selected
from dirac_like.services.handlers import run_bulk_batch
from dirac_like.services.state import CentralState

CERN = "LCG.CERN.cern"


def grid_with(confirm_above: int = 5, admin_above: int = 20, batch: int = 4) -> Grid:
    return Grid(Config(jobs=JOBS, bulk=BulkConfig(confirm_above, admin_above, batch)))


def statuses(grid: Grid) -> dict[int, str]:
    return {job.job_id: job.status.value for job in grid.state.jobs.values()}


def finish_bulk(grid: Grid) -> list[int]:
    """Run the loop's bulk batches to the end; the size of each batch."""
    sizes = []
    while taken := run_bulk_batch(grid.state, grid.now):
        sizes.append(taken)
        grid.commit()
    return sizes


# -- selections --------------------------------------------------------------------------------


def test_a_selection_reads_every_field() -> None:
    selection = parse_selection(
        "status=Waiting|Stalled, site=X, owner=bob, group=g, older=2d, newer=1w, name=mc_*"
    )
    assert {s.value for s in selection.statuses} == {"Waiting", "Stalled"}
    assert (selection.site, selection.owner, selection.group, selection.name) == (
        "X",
        "bob",
        "g",
        "mc_*",
    )
    assert (selection.older, selection.newer) == (2 * 86400, 7 * 86400)


@pytest.mark.parametrize(
    "text, message",
    [
        ("colour=blue", "selection field 'colour' is unknown: use status, site"),
        ("older=2 days", "age '2 days' is not valid"),
        ("older=-1d", "age '-1d' is not valid"),
        ("status=Sleeping", "unknown job status 'Sleeping'"),
        ("", "empty selection"),
        ("site", "selection item 'site' is not field=value"),
        ("site=A,site=B", "selection field 'site' is given twice"),
    ],
)
def test_a_bad_selection_is_refused_and_nothing_changes(text: str, message: str) -> None:
    grid = grid_with()
    grid.submit(HELLO)
    with pytest.raises(InvalidArgument, match=message):
        grid.call(Op.SELECT_JOBS, selection=text)
    with pytest.raises(InvalidArgument, match=message):
        grid.call(Op.BULK, action="kill", selection=text, expected=1, yes=True)
    assert statuses(grid) == {1: "Waiting"}


def test_ages_in_every_unit() -> None:
    assert [parse_age(a) for a in ("90", "90s", "15m", "6h", "2d", "1w", "1.5h")] == [
        90,
        90,
        900,
        21600,
        172800,
        604800,
        5400,
    ]


# -- counting first ----------------------------------------------------------------------------


def test_select_counts_and_shows_a_sample_by_name_and_age() -> None:
    grid = grid_with()
    grid.submit(*[HELLO + f' JobName = "mc_{n}";' for n in range(3)])
    grid.now += 3 * 86400
    grid.submit(HELLO + ' JobName = "mc_new";', HELLO + ' JobName = "user_1";')

    reply = grid.call(Op.SELECT_JOBS, selection="name=mc_*,older=2d", sample=2)

    assert reply["count"] == 3
    assert [row["job_name"] for row in reply["sample"]] == ["mc_0", "mc_1"]
    assert (reply["confirm_above"], reply["admin_above"]) == (5, 20)


def test_an_empty_selection_is_counted_and_acting_on_it_is_refused() -> None:
    grid = grid_with()
    grid.submit(HELLO)
    reply = grid.call(Op.SELECT_JOBS, selection="site=Nowhere")
    assert reply["count"] == 0 and "no job matches" in reply["note"]
    with pytest.raises(InvalidArgument, match="matches no job: nothing done"):
        grid.call(Op.BULK, action="kill", selection="site=Nowhere", expected=0)


def test_a_user_selecting_others_jobs_counts_and_touches_only_its_own() -> None:
    grid = grid_with()
    grid.submit(HELLO, HELLO, owner="alice")
    grid.submit(HELLO, owner="bob")

    # what the authorization check makes of a user's request: only_owner = the user
    reply = grid.call(Op.SELECT_JOBS, selection="status=Waiting,owner=bob", only_owner="alice")
    assert reply["count"] == 2 and reply["note"] == "only your jobs (owner=alice) are counted"
    assert reply["selection"] == "status=Waiting,owner=alice"
    bulk = grid.call(
        Op.BULK, action="kill", selection="status=Waiting", expected=2, only_owner="alice"
    )
    finish_bulk(grid)

    assert statuses(grid) == {1: "Killed", 2: "Killed", 3: "Waiting"}
    assert grid.call(Op.BULK_STATUS, bulk_id=bulk["bulk_id"])["done"] == 2
    with pytest.raises(InvalidArgument, match="no bulk action"):
        grid.call(Op.BULK_STATUS, bulk_id=bulk["bulk_id"], only_owner="bob")


# -- caps and the count shown ------------------------------------------------------------------


def test_a_count_that_changed_since_it_was_shown_is_refused() -> None:
    grid = grid_with()
    grid.submit(HELLO, HELLO)
    with pytest.raises(InvalidArgument, match="now matches 2 jobs, not the 1 you were shown"):
        grid.call(Op.BULK, action="kill", selection="status=Waiting", expected=1)
    assert set(statuses(grid).values()) == {"Waiting"}


def test_above_the_confirmation_cap_a_yes_is_needed() -> None:
    grid = grid_with()
    grid.submit(*[HELLO] * 6)
    with pytest.raises(InvalidArgument, match="above the confirmation cap of 5: confirm"):
        grid.call(Op.BULK, action="kill", selection="status=Waiting", expected=6)
    assert set(statuses(grid).values()) == {"Waiting"}
    grid.call(Op.BULK, action="kill", selection="status=Waiting", expected=6, yes=True)
    finish_bulk(grid)
    assert set(statuses(grid).values()) == {"Killed"}


def test_above_the_admin_cap_only_an_admin_passes() -> None:
    grid = grid_with()
    grid.submit(*[HELLO] * 21)
    with pytest.raises(InvalidArgument, match="above the admin cap of 20: only an admin"):
        grid.call(Op.BULK, action="kill", selection="status=Waiting", expected=21, yes=True)
    assert set(statuses(grid).values()) == {"Waiting"}
    grid.call(
        Op.BULK,
        action="kill",
        selection="status=Waiting",
        expected=21,
        yes=True,
        over_admin_cap=True,
    )
    assert finish_bulk(grid) == [4, 4, 4, 4, 4, 1]  # bounded batches, one per loop
    assert set(statuses(grid).values()) == {"Killed"}


def test_an_unknown_bulk_action_is_refused() -> None:
    grid = grid_with()
    grid.submit(HELLO)
    with pytest.raises(InvalidArgument, match="bulk action 'explode' is unknown"):
        grid.call(Op.BULK, action="explode", selection="status=Waiting", expected=1)


def test_jobs_that_changed_meanwhile_are_skipped_with_the_reason() -> None:
    grid = grid_with()
    grid.submit(HELLO, HELLO)
    bulk = grid.call(Op.BULK, action="delete", selection="status=Waiting", expected=2)
    grid.pilot("p1")  # job 1 is matched before the bulk action reaches it

    finish_bulk(grid)

    reply = grid.call(Op.BULK_STATUS, bulk_id=bulk["bulk_id"])
    assert (reply["done"], reply["skipped"], reply["finished"]) == (1, 1, True)
    assert "job 1 is Matched: kill it first" in reply["skipped_sample"][0]
    assert statuses(grid) == {1: "Matched", 2: "Deleted"}


def test_reschedule_in_bulk_sends_running_jobs_back_to_waiting() -> None:
    grid = grid_with()
    grid.submit(HELLO, HELLO)
    match = grid.pilot("p1")
    grid.report(match, "Running")
    grid.call(Op.BULK, action="reschedule", selection="status=Running", expected=1)
    finish_bulk(grid)
    assert statuses(grid) == {1: "Waiting", 2: "Waiting"}
    grid.state.validate()


def test_the_service_has_background_work_while_a_bulk_action_goes_on() -> None:
    grid = grid_with()
    grid.submit(*[HELLO] * 6)
    grid.call(Op.BULK, action="kill", selection="status=Waiting", expected=6, yes=True)
    assert grid.state.background_pending
    finish_bulk(grid)
    assert not grid.state.background_pending


# -- sites -------------------------------------------------------------------------------------


def test_a_drained_site_gets_no_new_job_and_its_running_jobs_go_on() -> None:
    grid = grid_with()
    grid.submit(HELLO, HELLO)
    running = grid.pilot("p1", site=CERN)
    grid.report(running, "Running")

    reply = grid.call(Op.SITE_DRAIN, site=CERN)

    assert reply["status"] == "Draining"
    answer = grid.call(Op.REQUEST_JOB, pilot_id="p2", resources={"site": CERN})
    assert answer["job"] is None
    assert answer["reason"] == f"site {CERN} is draining: it takes no new job"
    assert "drain" not in answer  # a pilot older than the flag never sees it: it idles out
    told = grid.call(
        Op.REQUEST_JOB, pilot_id="p3", resources={"site": CERN, "understands_drain": True}
    )
    assert told["job"] is None and told["drain"] is True  # stop taking jobs, finish, exit
    assert grid.report(running, "Done")["commands"] == []  # its running job finished normally
    grid.call(Op.SITE_DRAIN, site=CERN, drain=False)
    assert grid.pilot("p2", site=CERN) is not None
    again = grid.call(
        Op.REQUEST_JOB, pilot_id="p3", resources={"site": CERN, "understands_drain": True}
    )
    assert "drain" not in again  # no longer draining


def test_drain_limit_and_ban_survive_a_restart_together() -> None:
    grid = grid_with()
    grid.call(Op.SITE_DRAIN, site=CERN)
    grid.call(Op.SITE_LIMIT, site=CERN, limit=3)
    grid.call(Op.BAN_SITE, site=CERN, reason="network")
    grid.call(Op.UNBAN_SITE, site=CERN)  # lifting the ban keeps the drain and the limit

    grid.state = CentralState(grid.config, grid.store, grid.store.load(), grid.now)

    [row] = grid.call(Op.SITES)
    assert (row["status"], row["max_running"]) == ("Draining", 3)


def test_a_site_limit_stops_matching_at_the_limit_and_minus_one_restores_the_config() -> None:
    grid = grid_with()
    grid.submit(HELLO, HELLO)
    grid.call(Op.SITE_LIMIT, site=CERN, limit=1)
    assert grid.pilot("p1", site=CERN) is not None
    assert grid.pilot("p2", site=CERN) is None
    grid.call(Op.SITE_LIMIT, site=CERN, limit=-1)
    assert grid.pilot("p2", site=CERN) is not None


@pytest.mark.parametrize("limit", [-2, 10**8])
def test_a_bad_site_limit_is_refused(limit: int) -> None:
    grid = grid_with()
    with pytest.raises(InvalidArgument, match="limit must be"):
        grid.call(Op.SITE_LIMIT, site=CERN, limit=limit)
    assert grid.call(Op.SITES) == []


def test_site_show_gives_ces_pilots_and_the_waiting_jobs_it_could_run() -> None:
    grid = grid_with()
    grid.call(Op.ELIGIBLE, resources={"site": CERN, "ce": "ce1", "cores": 4})
    grid.submit(HELLO, HELLO, HELLO + " NumberOfProcessors = 8;")
    grid.call(Op.ADD_PILOTS, site=CERN, ce="ce1", count=2)
    grid.pilot("p1", site=CERN, ce="ce1", cores=4)

    show = grid.call(Op.SITE_SHOW, site=CERN)

    assert [ce["ce"] for ce in show["ces"]] == ["ce1"]
    assert show["pilots_by_state"] == {"Submitted": 2, "Running": 1}
    assert (show["waiting_could_run"], show["active_jobs"]) == (1, 1)
    assert show["last_pilot"] == grid.now and show["director_seen"] == grid.now
    summary = grid.call(Op.PILOT_SUMMARY)
    assert {(r["site"], r["state"]): r["count"] for r in summary} == {
        (CERN, "Submitted"): 2,
        (CERN, "Running"): 1,
    }


def test_site_show_of_an_unknown_site_is_refused() -> None:
    grid = grid_with()
    with pytest.raises(InvalidArgument, match="no site 'Nowhere' is known"):
        grid.call(Op.SITE_SHOW, site="Nowhere")


def test_a_busy_service_takes_small_bulk_batches() -> None:
    grid = grid_with(batch=100)
    grid.submit(*[HELLO] * 30)
    grid.call(
        Op.BULK,
        action="kill",
        selection="status=Waiting",
        expected=30,
        yes=True,
        over_admin_cap=True,
    )
    assert run_bulk_batch(grid.state, grid.now, served=20) == 2  # busy_share 0.1 per request
    assert run_bulk_batch(grid.state, grid.now, served=1) == 1  # always some progress
    assert run_bulk_batch(grid.state, grid.now, served=0) == 27  # idle: the rest, in one batch


@pytest.mark.parametrize(
    "text",
    [
        "status=Waiting",
        "status=Waiting,owner=bob",
        "status=Waiting,group=g2,name=mc_*",
        "status=Waiting,owner=alice,group=g1",
        "status=Waiting,owner=nobody",
    ],
)
def test_waiting_jobs_are_selected_from_the_task_queues_as_a_scan_would(text: str) -> None:
    grid = grid_with()
    mc = 'Executable = "/bin/true"; JobName = "mc_1";'
    grid.submit(HELLO, mc, HELLO, owner="alice", group="g1")
    grid.submit(mc, HELLO, owner="bob", group="g2")
    grid.submit(HELLO, 'Executable = "/bin/x"; CPUTime = 100;', owner="bob", group="g1")
    grid.pilot("p1")  # one job matched: no longer waiting
    grid.call(Op.KILL, job_ids=[5])
    selection = parse_selection(text)

    selected = _selected(grid.state, selection, grid.now)

    assert selected == selection.select(grid.state.jobs.values(), grid.now)
