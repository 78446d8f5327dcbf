"""Pilot records a director does not follow: a pilot started by hand closes its record when it
stops and no director touches it; ``agent director --once`` leaves its local pilots running, and
they close their own records."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from test_director import SITE, processes_of, write_site

from dirac_like.agents.director import Director, DirectorSettings
from dirac_like.agents.director_records import LEFT_RUNNING
from dirac_like.agents.fabrics import LocalFabric
from dirac_like.client import Client
from dirac_like.processes import ServiceProcess
from dirac_like.testing import run_cli, wait_for

DIRECTOR_TOML = """\
[director]
idle_timeout = 2.0
pilot_args = ["--request-interval", "0.3", "--heartbeat", "1"]
"""


def record(client: Client, pilot_id: str) -> dict[str, Any] | None:
    return next((row for row in client.pilots(site=SITE) if row.pilot_id == pilot_id), None)


def test_a_pilot_started_by_hand_closes_its_record_and_no_director_takes_it(
    central: ServiceProcess, client: Client, tmp_path: Path
) -> None:
    [job_id] = client.submit(['Executable = "/bin/true";'], "alice")
    (tmp_path / "work").mkdir()
    pilot = run_cli(
        central.endpoint,
        *("pilot", "--site", SITE, "--pilot-id", "by-hand-1", "--max-jobs", "1"),
        *("--request-interval", "0.3", "--workdir", str(tmp_path / "work")),
        cwd=tmp_path,
    )
    director = Director(
        write_site(tmp_path / "sites"),
        client,
        {"local": LocalFabric(tmp_path / "fabric")},
        tmp_path / "director",
        settings=DirectorSettings(idle_timeout=1.0),
    )
    try:
        report = director.cycle()
    finally:
        director.close()

    assert pilot.returncode == 0, pilot.stderr
    assert client.status([job_id])[0].status == "Done"
    row = record(client, "by-hand-1")
    assert row is not None and (row.state, row.reason) == ("Done", "Stopped")
    assert "by-hand-1" not in director.book.records
    assert not [error for error in report.errors if "by-hand-1" in error]


def test_director_once_leaves_its_local_pilots_running(
    central: ServiceProcess, client: Client, tmp_path: Path
) -> None:
    client.submit(['Executable = "/bin/sleep"; Arguments = "2";'], "alice")
    write_site(tmp_path / "sites")
    config = tmp_path / "director.toml"
    config.write_text(DIRECTOR_TOML)

    once = run_cli(
        central.endpoint,
        *("agent", "director", "--site", SITE, "--sites-dir", str(tmp_path / "sites")),
        *("--config", str(config), "--once", "--home", str(tmp_path / "home")),
        cwd=tmp_path,
    )

    assert once.returncode == 0, once.stderr
    [row] = client.pilots(site=SITE)
    pilot_id = row.pilot_id
    try:
        assert processes_of(pilot_id), "the pilot stopped with director --once"
        assert row.reason == LEFT_RUNNING or row.state in ("Done",)
        ended = wait_for(
            lambda: (r := record(client, pilot_id)) and r.state == "Done" and r,
            "the pilot closing its own record",
            60,
        )
        assert ended.reason == "Stopped"
    finally:
        for process in processes_of(pilot_id):
            process.kill()
