"""Sandboxes end to end: `job submit` uploads the InputSandbox, a real pilot unpacks it, runs the
job and uploads the output, `job output` brings it back. Hostile archives fail the job, not the
pilot."""

from __future__ import annotations

import io
import json
import os
import subprocess
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from test_pilot import FAST_RETRIES, SHORT_TIMEOUTS, Pilots, wait_status

from dirac_like.client import Client
from dirac_like.processes import ServiceProcess
from dirac_like.testing import run_cli

LIMITS = "[sandboxes]\nmax_input_bytes = 20000\n"


@pytest.fixture
def grid(
    start_central: Callable[..., ServiceProcess], tmp_path: Path
) -> Iterator[tuple[ServiceProcess, Client, Pilots]]:
    service = start_central(config_text=SHORT_TIMEOUTS + LIMITS)
    pilots = Pilots(service.endpoint, tmp_path / "pilots")
    try:
        with Client(service.endpoint, FAST_RETRIES) as client:
            yield service, client, pilots
    finally:
        pilots.stop_all()


def cli(service: ServiceProcess, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return run_cli(service.endpoint, *args, cwd=cwd)


def write_job(folder: Path, payload_bytes: int = 100) -> Path:
    (folder / "data").mkdir(parents=True)
    (folder / "data" / "in.txt").write_text("x" * payload_bytes)
    (folder / "run.sh").write_text("cp data/in.txt result.txt\necho hello from the payload\n")
    jdl = folder / "job.jdl"
    jdl.write_text(
        'Executable = "/bin/sh"; Arguments = "run.sh";\n'
        'InputSandbox = {"run.sh", "data"};\n'
        'OutputSandbox = {"result.txt", "never-made.txt"};\n'
    )
    return jdl


def test_input_and_output_sandboxes_round_trip(
    grid: tuple[ServiceProcess, Client, Pilots], tmp_path: Path
) -> None:
    service, client, pilots = grid
    jdl = write_job(tmp_path / "job")

    submitted = cli(service, "job", "submit", str(jdl), "--json", cwd=tmp_path)
    assert submitted.returncode == 0, submitted.stderr
    [job_id] = json.loads(submitted.stdout)["job_ids"]
    pilots.start("--max-jobs", "1")
    done = wait_status(client, job_id, ("Done", "Failed"), 60)
    fetched = cli(
        service, "job", "output", str(job_id), "--dir", str(tmp_path / "out"), cwd=tmp_path
    )

    assert done.status == "Done", done
    assert "missing output: never-made.txt" in done.application_status
    assert fetched.returncode == 0, fetched.stderr
    folder = tmp_path / "out" / str(job_id)
    assert (folder / "result.txt").read_text() == "x" * 100
    assert (folder / "std.out").read_text() == "hello from the payload\n"
    assert not (folder / "run.sh").exists()  # only what OutputSandbox (and std*) name


def test_an_input_sandbox_over_the_limit_is_refused_and_no_job_is_made(
    grid: tuple[ServiceProcess, Client, Pilots], tmp_path: Path
) -> None:
    service, client, _ = grid
    jdl = write_job(tmp_path / "job", payload_bytes=0)
    (tmp_path / "job" / "data" / "in.txt").write_bytes(bytes(range(256)) * 400)  # incompressible
    (tmp_path / "job" / "data" / "noise.bin").write_bytes(os.urandom(40000))

    submitted = cli(service, "job", "submit", str(jdl), cwd=tmp_path)

    assert submitted.returncode == 1
    assert "size must be 1 to 20000 bytes" in submitted.stderr
    assert client.list_jobs() == []


def test_a_missing_input_file_is_a_usage_error(
    grid: tuple[ServiceProcess, Client, Pilots], tmp_path: Path
) -> None:
    service, client, _ = grid
    jdl = tmp_path / "job.jdl"
    jdl.write_text('Executable = "/bin/true"; InputSandbox = {"nowhere.txt"};')

    submitted = cli(service, "job", "submit", str(jdl), cwd=tmp_path)

    assert submitted.returncode != 0
    assert "nowhere.txt" in submitted.stderr
    assert client.list_jobs() == []


def hostile_archive() -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        info = tarfile.TarInfo("../escaped.txt")
        info.size = 4
        tar.addfile(info, io.BytesIO(b"evil"))
    return buffer.getvalue()


def test_a_hostile_input_sandbox_fails_the_job_and_nothing_escapes(
    grid: tuple[ServiceProcess, Client, Pilots], tmp_path: Path
) -> None:
    _, client, pilots = grid
    sha256 = client.upload_sandbox(hostile_archive())
    [job_id] = client.submit(
        [f'Executable = "/bin/true"; InputSandbox = {{"SB:{sha256}"}};'], "alice"
    )
    _, _workdir = pilots.start("--max-jobs", "1")

    failed = wait_status(client, job_id, ("Done", "Failed"), 60)

    assert failed.status == "Failed"
    assert failed.minor_status.startswith("Input sandbox:")
    assert "escaped" not in {path.name for path in tmp_path.rglob("*")}
