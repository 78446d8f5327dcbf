"""DIRAC JDLs through the real CLI, service and pilot: sandbox paths as DIRAC takes them, nothing
uploaded for a refused job, line numbers kept, warnings on stderr, and the honoured attributes
reaching the payload (ExecutionEnvironment, DIRAC_JOB_PROCESSORS, StdInput, GridCE, %j)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from test_pilot import FAST_RETRIES, SHORT_TIMEOUTS, Pilots, wait_status

from dirac_like.client import Client
from dirac_like.processes import ServiceProcess
from dirac_like.testing import run_cli


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


def submit(service: ServiceProcess, jdl: Path, cwd: Path) -> list[int]:
    submitted = run_cli(service.endpoint, "job", "submit", str(jdl), "--json", cwd=cwd)
    assert submitted.returncode == 0, submitted.stderr
    job_ids: list[int] = json.loads(submitted.stdout)["job_ids"]
    return job_ids


def stored_sandboxes(service: ServiceProcess) -> list[Path]:
    folder = service.home / "sandboxes"
    return [path for path in folder.rglob("*") if path.is_file()] if folder.exists() else []


def output_of(service: ServiceProcess, job_id: int, tmp_path: Path) -> Path:
    fetched = run_cli(
        service.endpoint, "job", "output", str(job_id), "--dir", str(tmp_path / "out"), cwd=tmp_path
    )
    assert fetched.returncode == 0, fetched.stderr
    return tmp_path / "out" / str(job_id)


def test_sandbox_paths_anywhere_arrive_under_their_base_names(
    grid: tuple[ServiceProcess, Client, Pilots], tmp_path: Path
) -> None:
    service, client, pilots = grid
    (tmp_path / "tools").mkdir()
    (tmp_path / "tools" / "run.sh").write_text(
        'cat data.txt; echo "$MY_VAR $DIRAC_JOB_PROCESSORS"\nread line; echo "stdin: $line"\n'
    )
    elsewhere = tmp_path / "elsewhere" / "data.txt"
    elsewhere.parent.mkdir()
    elsewhere.write_text("data from an absolute path\n")
    (tmp_path / "jobs").mkdir()
    (tmp_path / "jobs" / "in.txt").write_text("from StdInput\n")
    jdl = tmp_path / "jobs" / "job.jdl"
    jdl.write_text(
        '[\n  Executable = "/bin/sh";\n  Arguments = "run.sh";\n'
        f'  InputSandbox = {{ "../tools/run.sh", "{elsewhere}", "in.txt" }};\n'
        '  StdInput = "in.txt";\n  ExecutionEnvironment = { "MY_VAR=hello" };\n'
        "  MinNumberOfProcessors = 1;\n  MaxNumberOfProcessors = 2;\n"
        '  Owner = "someone-else";\n]\n'
    )

    submitted = run_cli(service.endpoint, "job", "submit", str(jdl), "--json", cwd=tmp_path)
    assert submitted.returncode == 0, submitted.stderr
    assert "Owner is set by the server" in submitted.stderr and "line 9" in submitted.stderr
    [job_id] = json.loads(submitted.stdout)["job_ids"]
    pilots.start("--max-jobs", "1", "--cores", "2")
    done = wait_status(client, job_id, ("Done", "Failed"), 60)

    assert done.status == "Done", done
    output = (output_of(service, job_id, tmp_path) / "std.out").read_text()
    assert output == "data from an absolute path\nhello 2\nstdin: from StdInput\n"


def test_two_sandbox_files_with_one_name_are_refused_before_any_upload(
    grid: tuple[ServiceProcess, Client, Pilots], tmp_path: Path
) -> None:
    service, client, _ = grid
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "run.sh").write_text("true\n")
    jdl = tmp_path / "job.jdl"
    jdl.write_text('Executable = "/bin/sh";\nInputSandbox = { "a/run.sh", "b/run.sh" };\n')

    refused = run_cli(service.endpoint, "job", "submit", str(jdl), cwd=tmp_path)

    assert refused.returncode != 0
    assert "'a/run.sh' and 'b/run.sh' have the same name 'run.sh'" in refused.stderr
    assert f"{jdl}" in refused.stderr and "line 2" in refused.stderr
    assert client.list_jobs() == []
    assert not stored_sandboxes(service)  # nothing uploaded


def test_an_invalid_description_anywhere_uploads_nothing(
    grid: tuple[ServiceProcess, Client, Pilots], tmp_path: Path
) -> None:
    service, client, _ = grid
    (tmp_path / "run.sh").write_text("true\n")
    good = tmp_path / "good.jdl"
    good.write_text('Executable = "/bin/sh"; InputSandbox = { "run.sh" };\n')
    bad = tmp_path / "bad.jdl"
    bad.write_text('Executable = "/bin/sh";\nInputSandbox = { "run.sh" };\nMaxRAM = "lots";\n')

    refused = run_cli(service.endpoint, "job", "submit", str(good), str(bad), cwd=tmp_path)

    assert refused.returncode != 0
    assert f"{bad}: MaxRAM must be an integer" in refused.stderr
    assert "attribute MaxRAM, line 3" in refused.stderr
    assert client.list_jobs() == []
    assert not stored_sandboxes(service)


def test_service_refusal_after_the_upload_keeps_the_line(
    grid: tuple[ServiceProcess, Client, Pilots], tmp_path: Path
) -> None:
    service, client, _ = grid
    (tmp_path / "run.sh").write_text("true\n")
    jdl = tmp_path / "job.jdl"
    # the client does not know the service's job types: the service refuses, at line 4
    jdl.write_text(
        'Executable = "/bin/sh";\nInputSandbox = {\n  "run.sh" };\nJobType = "NoSuchType";\n'
    )

    refused = run_cli(service.endpoint, "job", "submit", str(jdl), cwd=tmp_path)

    assert refused.returncode != 0
    assert "attribute JobType, line 4" in refused.stderr
    assert client.list_jobs() == []


def test_grid_ce_and_job_id_placeholder(
    grid: tuple[ServiceProcess, Client, Pilots], tmp_path: Path
) -> None:
    service, client, pilots = grid
    pinned = tmp_path / "pinned.jdl"
    pinned.write_text('Executable = "/bin/echo"; Arguments = "job %j";\nGridCE = "ce2";\n')
    anywhere = tmp_path / "anywhere.jdl"
    anywhere.write_text('Executable = "/bin/true";\n')
    [pinned_id] = submit(service, pinned, tmp_path)  # first: a pilot on ce1 would take it first
    [plain_id] = submit(service, anywhere, tmp_path)
    pilots.start("--max-jobs", "1")  # on ce1
    assert wait_status(client, plain_id, ("Done", "Failed"), 60).status == "Done"
    assert wait_status(client, pinned_id, ("Waiting",), 5).status == "Waiting"

    pilots.start("--max-jobs", "1", "--ce", "ce2", name="on-ce2")
    done = wait_status(client, pinned_id, ("Done", "Failed"), 60)

    assert done.status == "Done" and done.pilot_id == "on-ce2", done
    assert (output_of(service, pinned_id, tmp_path) / "std.out").read_text() == f"job {pinned_id}\n"
