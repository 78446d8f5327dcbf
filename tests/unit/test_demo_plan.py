"""The demo's pure parts: its plan, the files it writes, and its decisions while it runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dirac_like.agents.director import load_settings
from dirac_like.cli.demo import DIRECTOR_SETTINGS, mentions
from dirac_like.cli.demo_plan import (
    MIN_JOBS,
    VICTIM,
    DemoPlan,
    Expectation,
    all_ended,
    outcome_problems,
    plan_demo,
    site_rows,
    site_toml,
    status_line,
    victims_to_kill,
)
from dirac_like.description import JobDescription, parse_descriptions
from dirac_like.sites import SiteConfig, load_site
from dirac_like.states import JobStatus

PYTHON = "/usr/bin/python3"


def expanded(plan: DemoPlan) -> list[JobDescription]:
    """The jobs the service makes of the plan's submissions (parametric ones expanded)."""
    return [
        job
        for item in plan.submissions
        for description in item.descriptions
        for job in parse_descriptions(description)
    ]


def row(
    job_id: int,
    name: str,
    status: str,
    minor: str = "",
    site: str = "DIRAC.Demo-1.org",
    pilot: str = "p1",
) -> dict[str, Any]:
    return {
        "job_id": job_id,
        "job_name": name,
        "status": status,
        "minor_status": minor,
        "site": site,
        "pilot_id": pilot,
        "owner": "alice",
        "group": "physics",
    }


def rows_as_planned(plan: DemoPlan) -> list[dict[str, Any]]:
    return [
        row(n, name, expectation.status, f"because: {expectation.minor}")
        for n, (name, expectation) in enumerate(plan.expected.items(), start=1)
    ]


@pytest.mark.parametrize("jobs", [MIN_JOBS, 20, 60, 101])
def test_the_plan_has_as_many_jobs_as_asked_each_named_once(jobs: int) -> None:
    plan = plan_demo(jobs, 3, PYTHON)
    names = [job.job_name for job in expanded(plan)]
    assert len(names) == jobs == plan.total
    assert sorted(names) == sorted(plan.expected)  # so outcomes can be checked by name
    assert plan.planned_counts() == {"Done": jobs - 4, "Failed": 3, "Killed": 1}


def test_the_workload_has_every_kind_of_job() -> None:
    plan = plan_demo(20, 2, PYTHON)
    jobs = {job.job_name: job for job in expanded(plan)}
    assert {item.group for item in plan.submissions} == {"physics", "users"}
    assert dict(plan.shares) == {"physics": 70.0, "users": 30.0}
    assert jobs["reconstruction-2cores"].number_of_processors == 2
    assert jobs["memory-hog"].max_ram_mb == 100
    assert "300 * 2**20" in jobs["memory-hog"].arguments  # far over its MaxRAM
    assert jobs[VICTIM].executable == "/bin/sleep"  # runs until its owner kills it
    assert sum(name.startswith("simulation_") for name in jobs) > 1  # the parametric job
    assert all(job.executable in (PYTHON, "/bin/sleep") for job in jobs.values())
    assert plan.expected["memory-hog"] == Expectation(JobStatus.FAILED, "Watchdog: memory")
    assert plan.expected[VICTIM].status == "Killed"


def load_sites(plan: DemoPlan, folder: Path) -> list[SiteConfig]:
    folder.mkdir()
    sites = []
    for site in plan.sites:
        path = folder / f"{site.name}.toml"
        path.write_text(site_toml(site))
        sites.append(load_site(path))
    return sites


def test_site_files_are_valid_and_every_job_fits_some_ce(tmp_path: Path) -> None:
    plan = plan_demo(60, 3, PYTHON)
    sites = load_sites(plan, tmp_path / "sites")
    assert [site.name for site in sites] == [f"DIRAC.Demo-{n}.org" for n in (1, 2, 3)]
    ces = [ce for site in sites for ce in site.ces]
    assert all(ce.fabric == "local" for ce in ces)
    assert sum(ce.max_total for ce in ces) <= 10  # modest on a 2-core machine
    for job in expanded(plan):
        assert any(
            job.number_of_processors <= ce.cores_per_slot
            and job.max_ram_mb <= ce.memory_mb
            and job.cpu_time <= ce.max_wall_time
            for ce in ces
        ), job.job_name


def test_director_settings_make_fast_pilots_that_leave_when_idle(tmp_path: Path) -> None:
    path = tmp_path / "director.toml"
    path.write_text(DIRECTOR_SETTINGS)
    settings = load_settings(path)
    assert 0 < settings.idle_timeout <= 5
    args = settings.pilot_args
    # The pilot samples its payloads every min(2 s, heartbeat): the watchdog acts within 0.5 s.
    assert float(args[args.index("--heartbeat") + 1]) <= 0.5
    assert float(args[args.index("--request-interval") + 1]) <= 0.5


def test_the_victim_is_killed_once_when_it_runs() -> None:
    waiting = [row(1, VICTIM, "Waiting"), row(2, "analysis-1", "Running")]
    assert victims_to_kill(waiting, VICTIM, set()) == []
    running = [row(1, VICTIM, "Running"), row(2, "analysis-1", "Running")]
    assert victims_to_kill(running, VICTIM, set()) == [1]
    assert victims_to_kill(running, VICTIM, {1}) == []


def test_all_ended_needs_every_job_listed_and_final() -> None:
    assert all_ended([row(1, "a", "Done"), row(2, "b", "Killed")], 2)
    assert not all_ended([row(1, "a", "Done")], 2)
    assert not all_ended([row(1, "a", "Done"), row(2, "b", "Running")], 2)
    assert (
        status_line([row(1, "a", "Done"), row(2, "b", "Running"), row(3, "c", "Done")])
        == "Done 2  Running 1"
    )


def test_outcome_as_planned_has_no_problem() -> None:
    plan = plan_demo(MIN_JOBS, 1, PYTHON)
    history = [{"status": "Running"}, {"status": "Killed"}]
    assert outcome_problems(rows_as_planned(plan), plan, history) == []


def test_each_job_not_as_planned_is_named() -> None:
    plan = plan_demo(MIN_JOBS, 1, PYTHON)
    rows = rows_as_planned(plan)
    hog = next(r for r in rows if r["job_name"] == "memory-hog")
    hog.update(status="Done", minor_status="Execution Complete")
    rows = [r for r in rows if r["job_name"] != "analysis-1"] + [row(99, "stranger", "Done")]
    problems = outcome_problems(rows, plan, [{"status": "Killed"}])
    assert problems == [  # in the plan's order, then the strangers, then the victim
        "job 'analysis-1': not found (planned Done (Execution Complete))",
        f"job {hog['job_id']} memory-hog: planned Failed (Watchdog: memory), got Done "
        "(Execution Complete)",
        "job 99 stranger: not in the plan",
        f"job {VICTIM}: killed before it ran on a pilot",
    ]


def test_site_rows_count_statuses_and_the_pilots_of_each_site() -> None:
    rows = [
        row(1, "a", "Done"),
        row(2, "b", "Failed"),
        row(3, "c", "Done"),
        row(4, "d", "Done", site="DIRAC.Demo-2.org"),
    ]
    pilots = [
        {"site": "DIRAC.Demo-1.org"},
        {"site": "DIRAC.Demo-1.org"},
        {"site": "DIRAC.Demo-2.org"},
        {"site": "DIRAC.Demo-3.org"},
    ]
    table, statuses = site_rows(rows, pilots)
    assert statuses == ["Done", "Failed"]
    assert table == [
        {"site": "DIRAC.Demo-1.org", "Done": 2, "Failed": 1, "total": 3, "pilots": 2},
        {"site": "DIRAC.Demo-2.org", "Done": 1, "Failed": 0, "total": 1, "pilots": 1},
        {"site": "DIRAC.Demo-3.org", "Done": 0, "Failed": 0, "total": 0, "pilots": 1},
    ]


def test_mentions_the_home_or_what_is_under_it() -> None:
    home = Path("/tmp/dirac-like-demo-abc")
    assert mentions("/tmp/dirac-like-demo-abc", home)
    assert mentions("/tmp/dirac-like-demo-abc/pilots/p1", home)
    assert not mentions("/tmp/dirac-like-demo-abcd", home)
