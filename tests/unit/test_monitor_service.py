"""The central service's side of monitoring, through its handlers with the in-memory store:
probe results, statuses set by the policy (never over an operator's ban), downtimes, and probe
jobs (first served, charged to nobody, not held back by a ban or a site's limit)."""

from __future__ import annotations

import re

import pytest
from test_central_state import HELLO, JOBS, Grid

from dirac_like.config import Config, SiteLimits
from dirac_like.errors import Forbidden, InvalidArgument, NotFound
from dirac_like.monitoring import PROBE_GROUP
from dirac_like.protocol import Op
from dirac_like.services.state import CentralState

SITE = "LCG.CERN.cern"


@pytest.fixture
def grid() -> Grid:
    grid = Grid(Config(jobs=JOBS, sites={SITE: SiteLimits(max_running=1)}))
    grid.state.sites.see(SITE)
    return grid


def result(status: str = "OK", time: float = 900.0, target: str = SITE) -> dict[str, object]:
    return {
        "target": target,
        "kind": "site",
        "check": "python",
        "status": status,
        "message": "m",
        "time": time,
        "ce": "ce1",
        "job_id": 0,
    }


def test_probe_results_are_stored_and_read_back_in_time_order(grid: Grid) -> None:
    grid.call(Op.PROBE_REPORT, results=[result("OK", 950.0), result("CRITICAL", 900.0)])
    rows = grid.call(Op.PROBE_RESULTS, since=0.0)
    assert [(r["status"], r["time"]) for r in rows] == [("CRITICAL", 900.0), ("OK", 950.0)]
    assert len(grid.store.results) == 2


def test_a_report_with_one_bad_result_stores_none(grid: Grid) -> None:
    with pytest.raises(InvalidArgument, match="unknown check status"):
        grid.call(Op.PROBE_REPORT, results=[result("OK"), result("FINE")])
    assert grid.call(Op.PROBE_RESULTS, since=0.0) == []


def test_an_automatic_ban_takes_only_probe_jobs_and_its_lifting_reopens_the_site(
    grid: Grid,
) -> None:
    (user_job,) = grid.submit(HELLO)
    grid.call(
        Op.SET_STATUS,
        target=SITE,
        kind="site",
        status="Banned",
        reason="auto: probe python failed 3 times",
    )
    assert grid.state.sites.banned(SITE).automatic
    assert grid.pilot("p1") is None
    (probe,) = grid.submit(HELLO, owner="sam", group=PROBE_GROUP)
    assert grid.pilot("p2")["job_id"] == probe
    row = grid.call(Op.SITES)[0]
    assert (row["status"], row["reason"]) == ("Banned", "auto: probe python failed 3 times")

    grid.call(Op.SET_STATUS, target=SITE, kind="site", status="Active", reason="auto: ok")
    assert grid.pilot("p3")["job_id"] == user_job


def test_the_policy_never_lifts_an_operators_ban(grid: Grid) -> None:
    grid.call(Op.BAN_SITE, site=SITE, reason="disk swap")
    before = grid.call(Op.RESOURCE_STATUS)
    with pytest.raises(Forbidden, match="banned by an operator"):
        grid.call(Op.SET_STATUS, target=SITE, kind="site", status="Active", reason="auto: ok")
    assert grid.call(Op.RESOURCE_STATUS) == before
    assert before[0]["status"] == "Banned" and not before[0]["automatic"]


def test_an_operator_unban_resets_the_policys_status(grid: Grid) -> None:
    grid.call(Op.SET_STATUS, target=SITE, kind="site", status="Banned", reason="auto: x")
    grid.call(Op.UNBAN_SITE, site=SITE)
    row = grid.call(Op.RESOURCE_STATUS)[0]
    assert row["status"] == "Active" and grid.state.sites.banned(SITE) is None


def test_set_status_of_an_unknown_site_is_refused(grid: Grid) -> None:
    with pytest.raises(NotFound, match=re.escape("unknown site 'LCG.Nowhere.xx'")):
        grid.call(
            Op.SET_STATUS, target="LCG.Nowhere.xx", kind="site", status="Banned", reason="auto: x"
        )


def test_probe_jobs_are_charged_to_nobody_and_pass_a_site_at_its_limit(grid: Grid) -> None:
    grid.submit(HELLO, HELLO)
    (probe,) = grid.submit(HELLO, owner="sam", group=PROBE_GROUP)
    assert grid.pilot("p1")["job_id"] == probe  # the probe group is served first
    assert grid.pilot("p2")["job_id"] != probe
    (probe2,) = grid.submit(HELLO, owner="sam", group=PROBE_GROUP)
    assert grid.pilot("p3")["job_id"] == probe2  # the site is at its limit of 1 user job
    assert grid.pilot("p4") is None
    shares = {row["group"]: row for row in grid.call(Op.SHARES)}
    assert PROBE_GROUP not in shares or shares[PROBE_GROUP]["running_cores"] == 0


def test_downtime_with_end_before_start_is_refused_and_nothing_stored(grid: Grid) -> None:
    with pytest.raises(InvalidArgument, match="end must be after the start"):
        grid.call(
            Op.DOWNTIME_ADD, target=SITE, kind="site", start=2000.0, end=1500.0, reason="upgrade"
        )
    assert grid.call(Op.DOWNTIME_LIST) == [] and grid.store.downtimes == {}


def test_downtime_overlapping_another_is_refused(grid: Grid) -> None:
    grid.call(Op.DOWNTIME_ADD, target=SITE, kind="site", start=2000.0, end=3000.0, reason="upgrade")
    with pytest.raises(InvalidArgument, match="overlaps its downtime 1"):
        grid.call(
            Op.DOWNTIME_ADD, target=SITE, kind="site", start=2500.0, end=3500.0, reason="again"
        )
    assert len(grid.call(Op.DOWNTIME_LIST)) == 1


def test_downtime_of_an_unknown_site_is_refused(grid: Grid) -> None:
    with pytest.raises(NotFound, match=re.escape("unknown site 'LCG.Nowhere.xx'")):
        grid.call(
            Op.DOWNTIME_ADD, target="LCG.Nowhere.xx", kind="site", start=1.0, end=2.0, reason="x"
        )


def test_a_site_in_downtime_gets_no_pilots_nor_jobs_until_it_ends_or_is_cancelled(
    grid: Grid,
) -> None:
    grid.submit(HELLO)
    added = grid.call(
        Op.DOWNTIME_ADD,
        target=SITE,
        kind="site",
        start=grid.now - 1,
        end=grid.now + 100,
        reason="upgrade",
    )
    eligible = grid.call(Op.ELIGIBLE, resources={"site": SITE})
    assert eligible["eligible"] == 0 and "scheduled downtime 1: upgrade" in eligible["reason"]
    assert grid.pilot("p1") is None
    grid.call(Op.DOWNTIME_CANCEL, downtime_id=added["downtime_id"])
    assert grid.call(Op.ELIGIBLE, resources={"site": SITE})["eligible"] == 1
    with pytest.raises(InvalidArgument, match="already cancelled"):
        grid.call(Op.DOWNTIME_CANCEL, downtime_id=added["downtime_id"])


def test_statuses_and_downtimes_survive_a_restart(grid: Grid) -> None:
    grid.call(Op.SET_STATUS, target=SITE, kind="site", status="Probing", reason="auto: 1 ok")
    grid.call(
        Op.DOWNTIME_ADD,
        target=SITE,
        kind="site",
        start=5000.0,
        end=6000.0,
        reason="upgrade",
        scheduled=False,
    )
    rebuilt = CentralState(grid.config, grid.store, grid.store.load(), grid.now)
    assert [r.status.value for r in rebuilt.monitor.rows()] == ["Probing"]
    assert rebuilt.sites.banned(SITE) is not None  # probing: probe jobs only
    assert rebuilt.monitor.why_not(SITE, 5500.0).startswith(f"site {SITE} is in unscheduled")
