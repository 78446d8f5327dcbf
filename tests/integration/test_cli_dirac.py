"""The commands DIRAC users know, against a real central service: ``job jdl|delete|peek|
summary|output (several)|get-input``, totals in ``job list``, global options on either side of
the command, and the DIRAC-named entry points (``dirac-wms-job-submit`` ...)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from test_cli import HELLO, SITE, finish_as_pilot, json_of, submit
from test_pilot import FAST_RETRIES, SHORT_TIMEOUTS, Pilots, wait_status

from dirac_like.client import Client
from dirac_like.processes import ServiceProcess, dirac_like_argv
from dirac_like.protocol import PilotResources
from dirac_like.sandbox import pack
from dirac_like.testing import run_cli, run_command, wait_for

BIN = Path(sys.executable).parent


@pytest.fixture
def cli(central: ServiceProcess, tmp_path: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """``cli("job", "jdl", "1")``: the CLI, its global options given BEFORE the command."""

    def run(*args: str, cwd: Path = tmp_path) -> subprocess.CompletedProcess[str]:
        home = str(tmp_path / "client-home")
        return run_command(
            dirac_like_argv("--server", central.endpoint, "--home", home, *args), cwd
        )

    return run


@pytest.fixture
def alias(
    central: ServiceProcess, tmp_path: Path
) -> Callable[..., subprocess.CompletedProcess[str]]:
    """``alias("dirac-wms-job-status", "1")``: the installed DIRAC-named entry point."""

    def run(name: str, *args: str, cwd: Path = tmp_path) -> subprocess.CompletedProcess[str]:
        script = BIN / name
        assert script.exists(), f"{name} is not installed next to {sys.executable}"
        home = str(tmp_path / "client-home")
        return run_command([str(script), *args, "--server", central.endpoint, "--home", home], cwd)

    return run


def finish_with_output(client: Client, job_id: int, files: dict[str, str], folder: Path) -> None:
    """Take the job as a pilot would and end it Done with an output sandbox of ``files``."""
    folder.mkdir(parents=True)
    for name, text in files.items():
        (folder / name).write_text(text)
    sha256 = client.upload_sandbox(pack([Path(name) for name in files], folder), kind="output")
    match = client.request_job("pilot-1", PilotResources(site=SITE, cores=8, memory_mb=16000))
    assert match.job.job_id == job_id, match
    client.update_status(job_id, match.job.attempt, "pilot-1", "Running")
    client.update_status(job_id, match.job.attempt, "pilot-1", "Done", output_sandbox=sha256)


# -- job jdl / delete / summary / list ---------------------------------------------------------


def test_jdl_shows_the_stored_description(cli: Any, tmp_path: Path) -> None:
    [job_id] = submit(cli, tmp_path)

    text = cli("job", "jdl", str(job_id))
    as_json = json_of(cli("job", "jdl", str(job_id), "--json"))

    assert text.returncode == 0, text.stderr
    assert 'Executable = "/bin/echo";' in text.stdout and 'JobName = "hello";' in text.stdout
    assert as_json["Executable"] == "/bin/echo" and as_json["Arguments"] == "hello"


def test_delete_and_a_refused_delete_changes_nothing(
    cli: Any, client: Client, tmp_path: Path
) -> None:
    job_ids = submit(cli, tmp_path, text=HELLO + "Parameters = 2;")
    match = client.request_job("pilot-1", PilotResources(site=SITE, cores=8, memory_mb=16000))
    running = match.job.job_id
    [waiting] = set(job_ids) - {running}
    client.update_status(running, match.job.attempt, "pilot-1", "Running")

    deleted = cli("job", "delete", str(waiting))
    refused = cli("job", "delete", str(running))

    assert deleted.returncode == 0 and f"Deleted 1 job(s): {waiting}" in deleted.stdout
    assert refused.returncode == 1 and "kill it first" in refused.stderr
    statuses = {row.job_id: row.status for row in client.status(job_ids)}
    assert statuses == {waiting: "Deleted", running: "Running"}


def test_list_ends_with_totals_by_status(cli: Any, client: Client, tmp_path: Path) -> None:
    job_ids = submit(cli, tmp_path, text=HELLO + "Parameters = 3;")
    finish_as_pilot(client, job_ids[0])

    listing = cli("job", "list")

    assert listing.returncode == 0, listing.stderr
    assert listing.stdout.rstrip().splitlines()[-1] == "Total 3: Waiting 2, Done 1"


def test_summary_by_site_and_by_owner(cli: Any, client: Client, tmp_path: Path) -> None:
    job_ids = submit(cli, tmp_path, "--owner", "alice", text=HELLO + "Parameters = 3;")
    finish_as_pilot(client, job_ids[0])

    by_site = json_of(cli("job", "summary", "--json"))
    by_owner = json_of(cli("job", "summary", "--by", "owner", "--json"))
    table = cli("job", "summary")

    rows = {row["site"]: row for row in by_site}
    assert rows[SITE]["Done"] == 1 and rows["ANY"]["Waiting"] == 2
    assert rows["Total"]["total"] == 3
    assert by_owner[0]["owner"] == "alice" and by_owner[0]["total"] == 3
    assert table.returncode == 0 and "Waiting" in table.stdout and "Total" in table.stdout


# -- job output / get-input --------------------------------------------------------------------


def test_output_of_several_jobs_refuses_to_overwrite(
    cli: Any, client: Client, tmp_path: Path
) -> None:
    first, second = submit(cli, tmp_path), submit(cli, tmp_path)
    finish_with_output(client, first[0], {"a.txt": "one"}, tmp_path / "made1")
    finish_with_output(client, second[0], {"a.txt": "two"}, tmp_path / "made2")
    out = tmp_path / "out"
    ids = [str(first[0]), str(second[0])]

    fetched = cli("job", "output", *ids, "--dir", str(out))
    (out / str(first[0]) / "a.txt").write_text("changed")
    again = cli("job", "output", *ids, "--dir", str(out))
    forced = cli("job", "output", *ids, "--dir", str(out), "--force")

    assert fetched.returncode == 0, fetched.stderr
    assert (out / str(second[0]) / "a.txt").read_text() == "two"
    assert again.returncode == 2 and "--force" in again.stderr
    assert forced.returncode == 0, forced.stderr
    assert (out / str(first[0]) / "a.txt").read_text() == "one"


def test_output_fetches_what_it_can_and_names_the_jobs_it_could_not(
    cli: Any, client: Client, tmp_path: Path
) -> None:
    done, waiting = submit(cli, tmp_path), submit(cli, tmp_path)
    finish_with_output(client, done[0], {"a.txt": "one"}, tmp_path / "made")
    out = tmp_path / "out"

    result = cli("job", "output", str(waiting[0]), str(done[0]), "--dir", str(out))

    assert result.returncode == 1
    assert f"error: job {waiting[0]}:" in result.stderr
    assert (out / str(done[0]) / "a.txt").read_text() == "one"
    assert not (out / str(waiting[0])).exists()


def test_get_input_downloads_the_input_sandbox(cli: Any, tmp_path: Path) -> None:
    folder = tmp_path / "job"
    folder.mkdir()
    (folder / "run.sh").write_text("echo hi\n")
    (folder / "job.jdl").write_text(
        'Executable = "/bin/sh"; Arguments = "run.sh"; InputSandbox = {"run.sh"};'
    )
    [job_id] = json_of(cli("job", "submit", str(folder / "job.jdl"), "--json"))["job_ids"]
    out = tmp_path / "in"

    fetched = cli("job", "get-input", str(job_id), "--dir", str(out))
    again = cli("job", "get-input", str(job_id), "--dir", str(out))

    assert fetched.returncode == 0, fetched.stderr
    assert (out / str(job_id) / "run.sh").read_text() == "echo hi\n"
    assert again.returncode == 2 and "exists" in again.stderr


# -- job peek, with a real pilot ---------------------------------------------------------------


@pytest.fixture
def grid(
    start_central: Callable[..., ServiceProcess], tmp_path: Path
) -> Iterator[tuple[ServiceProcess, Client, Pilots]]:
    service = start_central(config_text=SHORT_TIMEOUTS)
    pilots = Pilots(service.endpoint, tmp_path / "pilots")
    try:
        with Client(service.endpoint, FAST_RETRIES) as client:
            yield service, client, pilots
    finally:
        pilots.stop_all()


def test_peek_shows_the_last_lines_a_running_job_printed(
    grid: tuple[ServiceProcess, Client, Pilots], tmp_path: Path
) -> None:
    service, client, pilots = grid
    code = "import sys, time; [print('line', n, flush=True) for n in range(100)]; time.sleep(60)"
    [job_id] = client.submit(
        [{"Executable": sys.executable, "Arguments": f'-c "{code}"'}], "tester"
    )
    pilots.start("--max-jobs", "1")
    wait_status(client, job_id, ("Running",), 30)

    def peeked() -> Any:
        peek = BIN / "dirac-wms-job-peek"
        result = run_command([str(peek), str(job_id), "--server", service.endpoint], timeout=30)
        return "line 99" in result.stdout and result

    result = wait_for(peeked, "job peek showing line 99", 30)

    lines = result.stdout.splitlines()
    assert lines[-1] == "line 99" and len(lines) == 40  # the last 40 lines, as the pilot sent
    client.kill([job_id])


# -- global options ----------------------------------------------------------------------------


def test_global_options_after_the_command_too(central: ServiceProcess, tmp_path: Path) -> None:
    result = run_cli(
        central.endpoint, "--home", str(tmp_path), "job", "list", "--json", cwd=tmp_path
    )

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []


# -- the DIRAC-named commands ------------------------------------------------------------------


def test_dirac_submit_prints_a_job_id_per_line(alias: Any, tmp_path: Path) -> None:
    jdl = tmp_path / "p.jdl"
    jdl.write_text(HELLO + "Parameters = 2;")
    ids = tmp_path / "ids.txt"

    result = alias("dirac-wms-job-submit", str(jdl), "-f", str(ids))

    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["JobID = 1", "JobID = 2"]
    assert ids.read_text() == "1\n2\n"


def test_dirac_status_kill_delete_reschedule(
    alias: Any, cli: Any, client: Client, tmp_path: Path
) -> None:
    job_ids = submit(cli, tmp_path, text=HELLO + "Parameters = 3;")
    first, second, third = job_ids
    finish_as_pilot(client, first)
    ids_file = tmp_path / "ids"
    ids_file.write_text(f"{second}\n")

    status = alias("dirac-wms-job-status", str(first), "-f", str(ids_file))
    killed = alias("dirac-wms-job-kill", str(second))
    rescheduled = alias("dirac-wms-job-reschedule", str(first))
    deleted = alias("dirac-wms-job-delete", str(third))

    lines = status.stdout.splitlines()
    assert len(lines) == 2, status.stdout
    assert lines[0].startswith(f"JobID={first} Status=Done; MinorStatus=")
    assert lines[0].endswith(f"; Site={SITE};")
    assert lines[1].startswith(f"JobID={second} Status=Waiting; ")
    assert lines[1].endswith(" Site=ANY;")
    assert killed.stdout.strip() == f"Killed jobs {second}"
    assert rescheduled.stdout.strip() == f"Rescheduled job {first}"
    assert deleted.stdout.strip() == f"Deleted jobs {third}"
    statuses = [row.status for row in client.status(job_ids)]
    assert statuses[1:] == ["Killed", "Deleted"] and statuses[0] in ("Rescheduled", "Waiting")


def test_dirac_logging_info_get_jdl_and_get_output(
    alias: Any, cli: Any, client: Client, tmp_path: Path
) -> None:
    [job_id] = submit(cli, tmp_path)
    finish_with_output(client, job_id, {"r.txt": "result"}, tmp_path / "made")

    logging = alias("dirac-wms-job-logging-info", str(job_id))
    jdl = alias("dirac-wms-job-get-jdl", str(job_id))
    output = alias("dirac-wms-job-get-output", str(job_id), "-D", str(tmp_path / "o"))
    again = alias("dirac-wms-job-get-output", str(job_id), "-D", str(tmp_path / "o"))

    assert logging.returncode == 0 and "Running" in logging.stdout and "Done" in logging.stdout
    assert 'Executable = "/bin/echo";' in jdl.stdout
    target = tmp_path / "o" / str(job_id)
    assert output.stdout.strip() == f"Job output sandbox retrieved in {target}/"
    assert (tmp_path / "o" / str(job_id) / "r.txt").read_text() == "result"
    assert again.returncode == 0 and "already retrieved" in again.stdout


def test_dirac_site_mask(alias: Any, client: Client, tmp_path: Path) -> None:
    client.request_job("pilot-1", PilotResources(site=SITE))  # the service now knows the sites
    client.request_job("pilot-2", PilotResources(site="LCG.Other.org"))

    banned = alias("dirac-admin-ban-site", SITE, "storage down")
    mask = alias("dirac-admin-get-site-mask")
    allowed = alias("dirac-admin-allow-site", SITE, "fixed")
    mask_after = alias("dirac-admin-get-site-mask")

    assert banned.returncode == 0 and "storage down" in banned.stdout
    assert mask.stdout.splitlines() == ["LCG.Other.org"]
    assert allowed.returncode == 0, allowed.stderr
    assert mask_after.stdout.splitlines() == ["LCG.Other.org", SITE]
