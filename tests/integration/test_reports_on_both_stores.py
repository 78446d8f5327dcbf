"""``dirac-like accounting report`` and the web dashboard on each store the central service runs
on: its SQLite file, and PostgreSQL (one instance of a pair, on a real server). The same grid on
both: a central service, jobs submitted, two run to the end by a pilot (one Done with an output
sandbox, one Failed), a site banned; then every page and report read from that store, each
asserting what it shows. A database that does not answer is a clear error, never a traceback."""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from postgres_server import unreachable_url
from web_grid import WebGrid, WebSession, start_web_grid

from dirac_like.processes import ServiceProcess, dirac_like_argv
from dirac_like.protocol import JobUsage, PilotResources
from dirac_like.registry import init_home, registry_path
from dirac_like.states import JobStatus
from dirac_like.testing import wait_for

CERN = PilotResources(site="LCG.CERN.cern", ce="ce1", cores=4)
USAGE = JobUsage(cpu_seconds=1800.0, wall_seconds=3600.0, peak_rss_mb=256.0, exit_code=0)
FAILED = JobUsage(cpu_seconds=5.0, wall_seconds=10.0, exit_code=3)
BANNED = "LCG.Banned.org"
ELSEWHERE = {"Executable": "/bin/true", "Site": ["LCG.Elsewhere.org"]}


@dataclass
class Grid:
    web: WebGrid
    store: str  # "sqlite" or "postgresql"
    alice: list[int]  # waiting, of the physics group
    bob: list[int]  # waiting, of the users group
    done: int  # alice's, Done at CERN with an output sandbox
    failed: int  # bob's, Failed at CERN with exit code 3
    output: bytes  # the done job's output sandbox

    @property
    def config(self) -> Path:
        return self.web.home / "central.toml"


def output_archive() -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        data = b"the payload's answer: 42\n"
        info = tarfile.TarInfo("std.out")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def grid(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Grid]:
    """The grid on one store; the jobs left waiting ask for a site no pilot comes from."""
    store_url = ""
    if request.param == "postgresql":
        store_url = request.getfixturevalue("postgres_server").new_store_url("reports")
    home = tmp_path_factory.mktemp(f"reports-{request.param}") / "home"
    for web in start_web_grid(home, store_url=store_url):
        with web.client("alice") as alice, web.client("bob") as bob:
            waiting_alice = alice.submit(
                [{**ELSEWHERE, "JobName": f"alice-mc-{n}"} for n in range(3)], "alice", "physics"
            )
            waiting_bob = bob.submit([{**ELSEWHERE, "JobName": "bob-x"}], "bob")
            [done] = alice.submit([{"Executable": "/bin/true", "JobName": "Alice-Done"}],
                                  "alice", "physics")  # fmt: skip
            [failed] = bob.submit([{"Executable": "/bin/false", "JobName": "bob-fails"}], "bob")
        output = output_archive()
        with web.client("admin") as admin:  # as the pilot of both finished jobs
            sha256 = admin.upload_sandbox(output, kind="output")
            for _ in range(2):
                match = admin.request_job("p1", CERN).job
                assert match is not None and match.job_id in (done, failed)
                admin.update_status(match.job_id, match.attempt, "p1", JobStatus.RUNNING)
                if match.job_id == done:
                    status, usage, sandbox = JobStatus.DONE, USAGE, sha256
                else:
                    status, usage, sandbox = JobStatus.FAILED, FAILED, ""
                admin.update_status(
                    match.job_id, match.attempt, "p1", status, "Execution Complete",
                    output_sandbox=sandbox, usage=usage,
                )  # fmt: skip
            admin.ban_site(BANNED, "cooling failure")
        yield Grid(web, request.param, waiting_alice, waiting_bob, done, failed, output)


def job_ids_listed(text: str) -> set[int]:
    return {int(job_id) for job_id in re.findall(r'data-job="(\d+)"', text)}


# -- the dashboard -------------------------------------------------------------------------------


def test_overview_counts_every_job_from_the_store(grid: Grid) -> None:
    admin = grid.web.session("admin")
    assert admin.get("/").status == 200
    total = len(grid.alice) + len(grid.bob) + 2

    def every_job_counted() -> bool:  # every job's counts are refreshed in the background
        overview = admin.get("/fragment/overview").text
        return re.search(r'id="total-jobs">(\d+)<', overview).group(1) == str(total)

    wait_for(every_job_counted, "the overview to count every job", timeout=30.0, interval=0.2)
    alice = grid.web.session("alice").get("/fragment/overview").text
    assert re.search(r'id="total-jobs">(\d+)<', alice).group(1) == str(len(grid.alice) + 1)


def test_job_search_filters_in_the_store(grid: Grid) -> None:
    ops = grid.web.session("ops")
    everything = {*grid.alice, *grid.bob, grid.done, grid.failed}
    assert job_ids_listed(ops.get("/jobs").text) == everything
    assert job_ids_listed(ops.get("/jobs", {"owner": "bob"}).text) == {*grid.bob, grid.failed}
    assert job_ids_listed(ops.get("/jobs", {"status": "Done"}).text) == {grid.done}
    assert job_ids_listed(ops.get("/jobs", {"group": "physics"}).text) == {
        *grid.alice,
        grid.done,
    }
    # a part of the name, whatever its case (SQLite's LIKE and PostgreSQL's alike)
    assert job_ids_listed(ops.get("/jobs", {"name": "ALICE-"}).text) == {*grid.alice, grid.done}
    assert job_ids_listed(ops.get("/jobs", {"name": "100%_"}).text) == set()
    newest = max(everything)
    assert job_ids_listed(ops.get("/jobs", {"before": str(newest)}).text) == everything - {newest}


def test_job_page_shows_history_jdl_and_serves_the_output_sandbox(grid: Grid) -> None:
    alice = grid.web.session("alice")
    page = alice.get(f"/jobs/{grid.done}")
    assert page.status == 200
    main = page.text.split("<main>")[-1]
    assert "Alice-Done" in main and "LCG.CERN.cern" in main
    for status in ("Waiting", "Matched", "Running", "Done"):
        assert status in main, status
    assert "Execution Complete" in main and "/bin/true" in main  # history and JDL
    assert f"/jobs/{grid.done}/output" in main
    download = alice.get(f"/jobs/{grid.done}/output")
    assert download.status == 200 and download.headers["Content-Type"] == "application/gzip"
    assert download.headers["Content-Disposition"].endswith(f'job-{grid.done}-output.tar.gz"')
    assert download.body == grid.output
    with tarfile.open(fileobj=io.BytesIO(download.body)) as tar:
        assert tar.extractfile("std.out").read() == b"the payload's answer: 42\n"
    waiting = alice.get(f"/jobs/{grid.alice[0]}").text
    assert f"/jobs/{grid.alice[0]}/output" not in waiting
    assert alice.get(f"/jobs/{grid.alice[0]}/output").status == 404
    assert alice.get(f"/jobs/{grid.failed}").status == 404  # bob's


def test_accounting_plots_show_the_finished_jobs(grid: Grid) -> None:
    ops = grid.web.session("ops").get("/accounting")
    assert ops.status == 200
    main = ops.text.split("<main>")[-1]
    for title in ("Core-hours by group", "Finished jobs by site", "Failed jobs by exit code"):
        assert title in main, title
    # the plots' legends: the groups and the site that used core-hours, the failure's code
    assert "physics" in main and "users" in main and "LCG.CERN.cern" in main
    assert re.search(r">3<", main), "the exit code of the failed job"
    mine = grid.web.session("alice").get("/accounting").text.split("<main>")[-1]
    assert "Your core-hours" in mine and "alice" in mine and "bob" not in mine


def test_sites_page_shows_bans_and_where_jobs_ran(grid: Grid) -> None:
    page = grid.web.session("ops").get("/sites")
    assert page.status == 200
    main = page.text.split("<main>")[-1]
    assert BANNED in main and "cooling failure" in main
    assert "LCG.CERN.cern" in main
    assert grid.web.session("alice").get("/sites").status == 403


def test_a_dashboard_beside_the_standby_admits_whom_the_leader_admits(
    grid: Grid, tmp_path: Path
) -> None:
    """A pair's registry is shared through the store: a dashboard on the other host's home
    (copied once, when the pair was set up) logs in a person the leader added since, and logs
    them out once the leader revoked them."""
    if grid.store != "postgresql":
        pytest.skip("only a pair (on PostgreSQL) has a second host's home")
    standby_home = tmp_path / "host-b"
    standby_home.mkdir(mode=0o700)
    shutil.copytree(grid.web.home / "keys", standby_home / "keys")
    shutil.copy2(registry_path(grid.web.home), registry_path(standby_home))
    web = ServiceProcess.start_web(standby_home, grid.web.central.endpoint, None, grid.config)
    try:
        grid.web.add_person("carol", "user", ["users"])  # by the leader, after the copy
        carol = WebSession(web.endpoint)
        assert carol.get("/login", {"token": grid.web.token("carol")}).status == 302
        assert job_ids_listed(carol.get("/jobs").text) == set()  # in, and none of hers
        with grid.web.client("admin") as admin:
            admin.identity_revoke("carol")
        assert carol.get("/jobs").status == 302  # out at the next click
        assert "carol" not in registry_path(standby_home).read_text()  # not from the file
    finally:
        web.stop()


# -- dirac-like accounting report ----------------------------------------------------------------


def report(grid: Grid, *args: str) -> subprocess.CompletedProcess[str]:
    command = ["accounting", "report", "--home", str(grid.web.home), "--config", str(grid.config)]
    return subprocess.run(
        dirac_like_argv(*command, *args),
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


def test_accounting_report_jobs_and_core_hours_by_group_and_site(
    grid: Grid, tmp_path: Path
) -> None:
    by_group = report(grid, "--metric", "core-hours", "--by", "group", "--since", "1d", "--json")
    assert by_group.returncode == 0, by_group.stderr
    # 1 core x 3600 s for the Done job (physics), 1 core x 10 s for the Failed one (users)
    assert json.loads(by_group.stdout)["totals"] == {"physics": 1.0, "users": round(10 / 3600, 4)}
    plot = tmp_path / "jobs.png"
    by_site = report(grid, "--metric", "jobs", "--by", "site", "--since", "2h", "--csv",
                     "--plot", str(plot))  # fmt: skip
    assert by_site.returncode == 0, by_site.stderr
    lines = by_site.stdout.splitlines()
    assert lines[0] == "time,LCG.CERN.cern"
    assert sum(float(line.split(",")[1]) for line in lines[1:]) == 2.0
    assert plot.read_bytes().startswith(b"\x89PNG") and plot.stat().st_size > 5000


# -- a database that does not answer -------------------------------------------------------------


def test_report_and_dashboard_on_an_unreachable_database_say_so(tmp_path: Path) -> None:
    url = unreachable_url("secret-word")
    config = tmp_path / "dead.toml"
    config.write_text(f'[store]\nurl = "{url}"\n')
    home = tmp_path / "home"
    refused = subprocess.run(
        dirac_like_argv("accounting", "report", "--metric", "jobs", "--by", "site",
                        "--home", str(home), "--config", str(config)),
        capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert refused.returncode != 0
    assert "cannot connect to store postgresql://dirac:***@127.0.0.1" in refused.stderr
    assert "secret-word" not in refused.stderr and "Traceback" not in refused.stderr
    home.mkdir(mode=0o700)
    init_home(home, time.time())  # the dashboard needs the service's keys before the store
    web = subprocess.run(
        dirac_like_argv("service", "web", "--home", str(home), "--config", str(config),
                        "--listen", "127.0.0.1:0"),
        capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert web.returncode != 0
    assert "cannot connect to store postgresql://dirac:***@127.0.0.1" in web.stderr
    assert "secret-word" not in web.stderr and "Traceback" not in web.stderr
