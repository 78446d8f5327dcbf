"""The dashboard's view models (services/web/views.py) and plots: pure, no HTTP, no SQL."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dirac_like.authz import Principal, Role
from dirac_like.config import SharesConfig
from dirac_like.errors import Forbidden
from dirac_like.model import SiteRecord, UsageRecord
from dirac_like.protocol import Op
from dirac_like.services.web import plots
from dirac_like.services.web.reader import CountRow, JobQuery, PilotCount, RunningCores
from dirac_like.services.web.views import (
    BadQuery,
    ShareHistory,
    jdl_lines,
    may,
    next_page,
    overview,
    parse_job_query,
    share_rows,
    site_rows,
)

ALICE = Principal("alice", Role.USER, ("users",))
ADMIN = Principal("root", Role.ADMIN)
OPERATOR = Principal("ops", Role.OPERATOR)
DIRECTOR = Principal("dir", Role.DIRECTOR, site="LCG.A.org")


class NoJobs:
    def job_owner(self, job_id: int) -> str | None:
        return None

    def job_pilot(self, job_id: int) -> str | None:
        return None

    def pilot_site(self, pilot_id: str) -> str | None:
        return None


def query(params: dict[str, str], principal: Principal = ALICE) -> JobQuery:
    return parse_job_query(params, principal, NoJobs())


# -- the job search ------------------------------------------------------------------------------


def test_a_users_search_is_narrowed_to_their_own_jobs() -> None:
    assert query({"status": "waiting", "site": "LCG.A.org"}) == JobQuery(
        owner="alice", status="Waiting", site="LCG.A.org", limit=50
    )


def test_a_user_asking_for_another_owners_jobs_is_refused() -> None:
    with pytest.raises(Forbidden):
        query({"owner": "bob"})


def test_an_admin_searches_every_owner() -> None:
    assert query({"owner": "bob", "name": "mc_"}, ADMIN) == JobQuery(owner="bob", name="mc_")
    assert query({}, OPERATOR).owner is None


def test_a_director_may_not_search_jobs() -> None:
    with pytest.raises(Forbidden):
        query({}, DIRECTOR)


@pytest.mark.parametrize(
    "params",
    [
        {"status": "Sleeping"},
        {"limit": "0"},
        {"limit": "100000"},
        {"limit": "-1"},
        {"limit": "1e3"},
        {"before": "x"},
        {"site": "x" * 101},
        {"name": "a\x00b"},
        {"limit": "١٢"},  # digits, but not ASCII ones
    ],
)
def test_bad_values_are_named(params: dict[str, str]) -> None:
    with pytest.raises(BadQuery, match=next(iter(params))):
        query(params)


@given(
    st.dictionaries(
        st.sampled_from(["owner", "status", "site", "group", "name", "limit", "before", "other"]),
        st.text(max_size=120),
    )
)
def test_any_parameters_give_a_query_or_a_clear_refusal(params: dict[str, str]) -> None:
    try:
        result = query(params)
    except (BadQuery, Forbidden):
        return
    assert result.owner == "alice" and 1 <= result.limit <= 500


def test_the_next_page_starts_below_the_last_job_shown() -> None:
    class Row:
        def __init__(self, job_id: int) -> None:
            self.job_id = job_id

    page = JobQuery(owner="alice", status="Done", limit=2)
    assert next_page(page, [Row(9), Row(7)]) == {
        "owner": "alice",
        "status": "Done",
        "before": "7",
        "limit": "2",
    }
    assert next_page(page, [Row(9)]) is None


# -- overview, shares, sites ---------------------------------------------------------------------


def test_the_overview_counts_by_status_in_state_order_and_active_jobs_by_site() -> None:
    counts = [
        CountRow("Done", "A", "g1", 5),
        CountRow("Waiting", "ANY", "g1", 3),
        CountRow("Running", "A", "g2", 2),
        CountRow("Matched", "B", "g1", 4),
        CountRow("Running", "B", "g1", 1),
    ]
    summary = overview(counts)
    assert summary.total == 15
    assert summary.by_status == [("Waiting", 3), ("Matched", 4), ("Running", 3), ("Done", 5)]
    assert summary.active_by_site == [("B", 5), ("A", 2)]
    assert summary.by_group == [("g1", 13), ("g2", 2)]


def test_share_rows_use_the_matchers_rule() -> None:
    """Targets from the configuration with set-share overrides; realised: running cores plus
    decayed usage, as fractions of the whole."""
    config = SharesConfig(half_life=3600.0, groups={"physics": 3.0, "users": 1.0})
    rows = share_rows(
        config,
        {"users": 2.0},
        [UsageRecord("physics", "", 0.0, 1000.0)],
        [RunningCores("physics", "alice", 3), RunningCores("users", "bob", 1)],
        now=1000.0,
    )
    by_group = {row.group: row for row in rows}
    assert math.isclose(by_group["physics"].target, 0.6)
    assert math.isclose(by_group["users"].target, 0.4)
    assert math.isclose(by_group["physics"].realised, 0.75)
    assert by_group["users"].running_cores == 1


def test_share_history_keeps_the_last_samples() -> None:
    history = ShareHistory(size=3)
    for second in range(5):
        history.add(
            float(second),
            share_rows(
                SharesConfig(groups={"a": 1.0}), {}, [], [RunningCores("a", "u", 1)], float(second)
            ),
        )
    assert [t for t, _ in history.series()["a"]] == [2.0, 3.0, 4.0]
    assert history.targets == {"a": 1.0}


def test_site_rows_merge_bans_jobs_and_pilots() -> None:
    sites = site_rows(
        [SiteRecord("B", True, "SE down", 1.0)],
        [
            CountRow("Running", "A", "g", 2),
            CountRow("Done", "A", "g", 7),
            CountRow("Waiting", "ANY", "g", 9),
        ],
        [PilotCount("A", "ce1", "Running", 2), PilotCount("A", "ce2", "Done", 1)],
    )
    assert [(s.name, s.status, s.reason, s.active_jobs, s.done) for s in sites] == [
        ("A", "Active", "", 2, 7),
        ("B", "Banned", "SE down", 0, 0),
    ]
    assert sites[0].pilots == {"Running": 2, "Done": 1} and sites[0].ces == ["ce1", "ce2"]


def test_panels_follow_the_roles_of_the_operations() -> None:
    assert may(OPERATOR, Op.SHARES) and may(ADMIN, Op.SITES)
    assert not may(ALICE, Op.SHARES) and not may(ALICE, Op.SITES)


def test_a_description_reads_back_as_jdl() -> None:
    assert jdl_lines(
        {"Executable": "/bin/echo", "Arguments": 'say "hi"', "Priority": 3, "Site": ["A", "B"]}
    ) == [
        'Executable = "/bin/echo";',
        'Arguments = "say \\"hi\\"";',
        "Priority = 3;",
        'Site = { "A", "B" };',
    ]


# -- plots ---------------------------------------------------------------------------------------


def test_plot_labels_are_escaped_text() -> None:
    svg = plots.bar_chart([("<script>alert(1)</script>", 3), ("$x^2$ & co", 1)], "Jobs")
    assert svg.startswith("<svg") and "<script" not in svg
    assert "&lt;script&gt;" in svg and "$x^2$ &amp; co" in svg


def test_share_timeline_has_a_line_and_a_target_per_group() -> None:
    series = {"physics": [(0.0, 0.5), (60.0, 0.7)], "users": [(0.0, 0.5), (60.0, 0.3)]}
    svg = plots.share_timeline(series, {"physics": 0.6, "users": 0.4}, "Shares", now=60.0)
    for text in ("physics realised", "physics target", "users realised", "users target"):
        assert text in svg


def test_a_site_only_asked_for_by_waiting_jobs_is_not_listed() -> None:
    sites = site_rows(
        [],
        [
            CountRow("Waiting", "LCG.Nowhere.org", "g", 2),
            CountRow("Killed", "LCG.Nowhere.org", "g", 1),
        ],
        [],
    )
    assert sites == []


def test_pilots_add_up_by_site_and_state_over_the_ces() -> None:
    from dirac_like.services.web.views import pilots_by_site

    assert pilots_by_site(
        [
            PilotCount("B", "ce1", "Running", 2),
            PilotCount("A", "ce1", "Done", 1),
            PilotCount("B", "ce2", "Running", 3),
        ]
    ) == [("A", {"Done": 1}), ("B", {"Running": 5})]


@pytest.mark.parametrize(
    ("listen", "expected"),
    [
        ("127.0.0.1:0", ("127.0.0.1", 0)),
        ("http://127.0.0.1:7780/", ("127.0.0.1", 7780)),
        ("[::1]:8080", ("::1", 8080)),
    ],
)
def test_listen_addresses(listen: str, expected: tuple[str, int]) -> None:
    from dirac_like.services.web.server import parse_listen

    assert parse_listen(listen) == expected


@pytest.mark.parametrize("listen", ["7780", "localhost", "127.0.0.1:http", "127.0.0.1:70000"])
def test_a_bad_listen_address_is_named(listen: str) -> None:
    from dirac_like.errors import ConfigError
    from dirac_like.services.web.server import parse_listen

    with pytest.raises(ConfigError, match="--listen"):
        parse_listen(listen)


def test_a_login_link_carries_the_token_quoted() -> None:
    from dirac_like.cli.web import login_url

    assert login_url("http://127.0.0.1:7780/", "dlw1.a+b/c.d") == (
        "http://127.0.0.1:7780/login?token=dlw1.a%2Bb%2Fc.d"
    )


def test_the_monitoring_agents_status_of_a_site_stands() -> None:
    sites = site_rows(
        [SiteRecord("A", True, "probes failing", 1.0)],
        [],
        [],
        {"A": ("Probing", "back from a ban"), "C": ("Degraded", "2 of 3 failed")},
    )
    assert [(s.name, s.status, s.reason) for s in sites] == [
        ("A", "Probing", "back from a ban"),
        ("C", "Degraded", "2 of 3 failed"),
    ]
