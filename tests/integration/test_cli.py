"""The ``dirac-like`` command as users run it: a subprocess against a real central service."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from dirac_like.cli.identity import INTERACTIVE
from dirac_like.client import Client
from dirac_like.processes import ServiceProcess
from dirac_like.protocol import PilotResources

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "etc" / "jobs"
HELLO = 'JobName = "hello"; Executable = "/bin/echo"; Arguments = "hello";'
SITE = "LCG.Test.org"


def child_env(**extra: str) -> dict[str, str]:
    """This environment with the repository importable and no DIRAC_LIKE_SERVER, plus extra."""
    env = {key: value for key, value in os.environ.items() if key != "DIRAC_LIKE_SERVER"}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
    return {**env, **extra}


def run_cli(
    *args: str, server: str, home: Path, timeout: float = 30.0
) -> subprocess.CompletedProcess[str]:
    env = child_env()
    command = [sys.executable, "-m", "dirac_like", *args, "--server", server, "--home", str(home)]
    return subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=REPO,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture
def cli(central: ServiceProcess, tmp_path: Path) -> Any:
    """``cli("job", "status", "1")``: run the CLI against the test's central service."""

    def run(*args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        return run_cli(
            *args, server=central.endpoint, home=tmp_path / "client-home", timeout=timeout
        )

    return run


def json_of(result: subprocess.CompletedProcess[str]) -> Any:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def submit(cli: Any, tmp_path: Path, *extra: str, text: str = HELLO) -> list[int]:
    path = tmp_path / f"job-{time.monotonic_ns()}.jdl"
    path.write_text(text)
    job_ids: list[int] = json_of(cli("job", "submit", str(path), "--json", *extra))["job_ids"]
    return job_ids


def finish_as_pilot(client: Client, job_id: int, status: str = "Done") -> None:
    """Take the job as a fake pilot would: match it, run it, report ``status``."""
    match = client.request_job("pilot-1", PilotResources(site=SITE, cores=8, memory_mb=16000))
    job = match.job
    assert job is not None and job.job_id == job_id, match
    client.update_status(job_id, job.attempt, "pilot-1", "Running")
    client.update_status(job_id, job.attempt, "pilot-1", status)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


# -- job submit --------------------------------------------------------------------------------


def test_submit_jdl_and_json_files(cli: Any, tmp_path: Path) -> None:
    jdl = tmp_path / "hello.jdl"
    jdl.write_text(HELLO)
    many = tmp_path / "many.json"
    many.write_text(json.dumps([{"Executable": "/bin/true"}, {"Executable": "/bin/false"}]))
    one = tmp_path / "one.json"
    one.write_text(json.dumps({"Executable": "/bin/date", "NumberOfProcessors": 2}))

    job_ids = json_of(cli("job", "submit", str(jdl), str(many), str(one), "--json"))["job_ids"]

    assert len(job_ids) == 4 and all(type(job_id) is int for job_id in job_ids)


def test_submit_the_example_job_files(cli: Any) -> None:
    files = [str(EXAMPLES / name) for name in ("hello.jdl", "parametric.jdl", "multicore.json")]

    result = cli("job", "submit", *files)

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Submitted 12 jobs: 1..12")


def test_submit_with_owner_and_group(cli: Any, tmp_path: Path) -> None:
    [job_id] = submit(cli, tmp_path, "--owner", "alice", "--group", "physics")

    [row] = json_of(cli("job", "status", str(job_id), "--json"))

    assert (row["owner"], row["group"]) == ("alice", "physics")


def test_submit_refused_description_exits_1(cli: Any, tmp_path: Path) -> None:
    path = tmp_path / "bad.jdl"
    path.write_text('Executable = "/bin/echo"; Colour = "blue";\nMaxRAM = "lots";')

    result = cli("job", "submit", str(path))

    assert result.returncode == 1  # an unknown attribute (Colour) is kept, a bad value refused
    assert result.stderr.startswith("error:") and "MaxRAM" in result.stderr
    assert "line 2" in result.stderr and str(path) in result.stderr


# -- job status / list -------------------------------------------------------------------------


def test_status_json_and_table(cli: Any, tmp_path: Path) -> None:
    job_ids = submit(cli, tmp_path)

    [row] = json_of(cli("job", "status", str(job_ids[0]), "--json"))
    table = cli("job", "status", str(job_ids[0]))

    assert {"job_id", "status", "minor_status", "site", "owner", "group"} <= set(row)
    assert row["job_id"] == job_ids[0] and row["status"] == "Waiting"
    assert table.returncode == 0 and "Waiting" in table.stdout and "hello" in table.stdout


def test_list_with_filters(cli: Any, tmp_path: Path) -> None:
    alice = submit(cli, tmp_path, "--owner", "alice", "--group", "physics")
    submit(cli, tmp_path, "--owner", "bob", "--group", "users")
    submit(cli, tmp_path, "--owner", "bob", "--group", "users")

    by_owner = json_of(cli("job", "list", "--owner", "alice", "--json"))
    by_group = json_of(cli("job", "list", "--group", "users", "--status", "Waiting", "--json"))
    limited = json_of(cli("job", "list", "--limit", "1", "--json"))
    nothing = json_of(cli("job", "list", "--site", "LCG.Nowhere.org", "--json"))

    assert [row["job_id"] for row in by_owner] == alice
    assert len(by_group) == 2 and {row["owner"] for row in by_group} == {"bob"}
    assert len(limited) == 1
    assert nothing == []


# -- job kill / reschedule / logging / wait ----------------------------------------------------


def test_kill(cli: Any, tmp_path: Path) -> None:
    [job_id] = submit(cli, tmp_path)

    result = cli("job", "kill", str(job_id))
    [row] = json_of(cli("job", "status", str(job_id), "--json"))

    assert result.returncode == 0 and "Killed 1 job(s)" in result.stdout
    assert row["status"] == "Killed"


def test_reschedule_a_done_job(cli: Any, client: Client, tmp_path: Path) -> None:
    [job_id] = submit(cli, tmp_path)
    finish_as_pilot(client, job_id, "Done")

    result = cli("job", "reschedule", str(job_id))
    [row] = json_of(cli("job", "status", str(job_id), "--json"))

    assert result.returncode == 0, result.stderr
    assert "Rescheduled 1 job(s)" in result.stdout
    assert row["status"] == "Waiting" and row["attempt"] == 2


def test_logging(cli: Any, tmp_path: Path) -> None:
    [job_id] = submit(cli, tmp_path)

    history = json_of(cli("job", "logging", str(job_id), "--json"))
    table = cli("job", "logging", str(job_id))

    assert [entry["status"] for entry in history] == ["Received", "Checking", "Waiting"]
    assert {"status", "minor_status", "time", "source"} <= set(history[0])
    assert table.returncode == 0 and "Checking" in table.stdout
    assert time.strftime("%Y-%m-%dT", time.gmtime(history[0]["time"])) in table.stdout


def test_wait_returns_once_jobs_are_final(cli: Any, client: Client, tmp_path: Path) -> None:
    done, killed = submit(cli, tmp_path, text=HELLO), submit(cli, tmp_path, text=HELLO)
    finish_as_pilot(client, done[0], "Done")
    client.kill(killed)

    result = cli("job", "wait", str(done[0]), str(killed[0]), "--json", "--timeout", "20")

    assert result.returncode == 0, result.stderr
    assert {row["status"] for row in json.loads(result.stdout)} == {"Done", "Killed"}


def test_wait_times_out_on_a_waiting_job(cli: Any, tmp_path: Path) -> None:
    [job_id] = submit(cli, tmp_path)

    started = time.monotonic()
    result = cli("job", "wait", str(job_id), "--timeout", "1")

    assert result.returncode == 1
    assert "timed out waiting for jobs: " in result.stderr and str(job_id) in result.stderr
    assert time.monotonic() - started < 15


# -- admin -------------------------------------------------------------------------------------


def test_sites_ban_and_unban(cli: Any, client: Client) -> None:
    client.request_job("pilot-1", PilotResources(site=SITE))  # the service now knows the site

    banned = cli("admin", "ban-site", SITE, "--reason", "scheduled downtime")
    while_banned = json_of(cli("admin", "sites", "--json"))
    table = cli("admin", "sites")
    unbanned = cli("admin", "unban-site", SITE)
    after = json_of(cli("admin", "sites", "--json"))

    assert banned.returncode == 0 and unbanned.returncode == 0
    assert [(r["site"], r["status"], r["reason"]) for r in while_banned] == [
        (SITE, "Banned", "scheduled downtime")
    ]
    assert "Banned" in table.stdout and SITE in table.stdout
    assert [(r["site"], r["status"]) for r in after] == [(SITE, "Active")]


def test_ban_site_needs_a_reason(cli: Any) -> None:
    assert cli("admin", "ban-site", SITE).returncode == 2


def test_task_queues(cli: Any, tmp_path: Path) -> None:
    submit(cli, tmp_path, text=HELLO)
    submit(cli, tmp_path, text=HELLO)
    submit(cli, tmp_path, text='Executable = "/bin/echo"; NumberOfProcessors = 4;')

    rows = json_of(cli("admin", "task-queues", "--json"))
    table = cli("admin", "task-queues")

    assert sorted(row["waiting"] for row in rows) == [1, 2]
    assert sorted(row["requirements"]["cores"] for row in rows) == [1, 4]
    assert "cores=4" in table.stdout


def test_shares_and_set_share(cli: Any) -> None:
    result = cli("admin", "set-share", "physics", "70")
    cli("admin", "set-share", "users", "30")

    rows = {row["group"]: row for row in json_of(cli("admin", "shares", "--json"))}
    table = cli("admin", "shares")

    assert result.returncode == 0 and "physics" in result.stdout
    assert rows["physics"]["share"] == 70 and rows["users"]["share"] == 30
    assert rows["physics"]["share_fraction"] == pytest.approx(0.7)
    assert "physics" in table.stdout and "70.0%" in table.stdout


# -- exit codes --------------------------------------------------------------------------------


def test_refused_request_exits_1(cli: Any) -> None:
    result = cli("job", "status", "999999")

    assert result.returncode == 1
    assert result.stderr.startswith("error:") and "999999" in result.stderr
    assert result.stdout == ""


def test_missing_file_exits_2_and_sends_nothing(cli: Any, tmp_path: Path) -> None:
    good = tmp_path / "good.jdl"
    good.write_text(HELLO)

    result = cli("job", "submit", str(good), str(tmp_path / "missing.jdl"))

    assert result.returncode == 2
    assert "missing.jdl" in result.stderr
    assert json_of(cli("job", "list", "--json")) == []


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", "[]", '"a string"'])
def test_bad_json_file_exits_2(cli: Any, tmp_path: Path, content: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)

    result = cli("job", "submit", str(path))

    assert result.returncode == 2
    assert "bad.json" in result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["job", "frobnicate"],
        ["job", "status"],
        ["job", "status", "five"],
        ["nothing"],
        ["job", "list", "--limit", "0"],
        ["admin", "set-share", "physics", "lots"],
    ],
)
def test_bad_usage_exits_2(cli: Any, args: list[str]) -> None:
    result = cli(*args)

    assert result.returncode == 2
    assert result.stderr


# "Quickly": the CLI gives up after the interactive retry policy's few short tries (3 of 3 s), not
# the client's default (5 of 5 s); a hang fails by run_cli's timeout. No wall-clock bound: on a
# loaded machine Python's start alone may take seconds (timed tests are flaky).
GAVE_UP_QUICKLY = f"after {INTERACTIVE.retries + 1} tries"


def test_unreachable_server_exits_3_quickly(tmp_path: Path) -> None:
    server = f"tcp://127.0.0.1:{free_port()}"

    result = run_cli("job", "status", "1", server=server, home=tmp_path, timeout=60)

    assert result.returncode == 3
    assert server in result.stderr and "dirac-like service central" in result.stderr
    assert GAVE_UP_QUICKLY in result.stderr


def test_submit_to_unreachable_server_exits_3_quickly(tmp_path: Path) -> None:
    path = tmp_path / "hello.jdl"
    path.write_text(HELLO)
    server = f"tcp://127.0.0.1:{free_port()}"

    result = run_cli("job", "submit", str(path), server=server, home=tmp_path, timeout=60)

    assert result.returncode == 3
    assert GAVE_UP_QUICKLY in result.stderr


def test_server_from_the_environment(central: ServiceProcess, tmp_path: Path) -> None:
    env = child_env(DIRAC_LIKE_SERVER=central.endpoint)

    result = subprocess.run(
        [sys.executable, "-m", "dirac_like", "admin", "shares", "--json"],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
        cwd=REPO,
        stdin=subprocess.DEVNULL,
    )

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []
