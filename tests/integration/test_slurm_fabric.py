"""The slurm fabric's own behaviour against the real test cluster (tests/slurm_cluster.py), and
the pilot bootstrap (scripts/pilot-bootstrap.sh), under Slurm and by itself.

The fabric contract (tests/integration/test_fabric_contract.py) covers submit, status, cancel,
output and close; here: what Slurm refuses, Slurm unreachable, jobs cancelled or held outside the
fabric, jobs slurmctld forgot, the time left a pilot reads inside a job, and the bootstrap's setup
failures as pilot states and reasons. Waits poll with a deadline; every fabric is closed (its jobs
cancelled) when its test ends.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
from slurm_cluster import SlurmCluster

from dirac_like import testing
from dirac_like.agents.batch_env import (
    BOOTSTRAP_EXIT_REASONS,
    BOOTSTRAP_SCRIPT,
    bootstrap_command,
)
from dirac_like.agents.fabrics import FabricError, PilotRequest, PilotState, SlurmFabric
from dirac_like.processes import free_port

DEADLINE = 60.0
T = TypeVar("T")


# the one wait_for (dirac_like.testing), with this file's deadline
wait_for = functools.partial(testing.wait_for, timeout=DEADLINE, interval=0.1)


@pytest.fixture
def make_slurm(slurm_cluster: SlurmCluster, tmp_path: Path) -> Iterator[Callable[..., SlurmFabric]]:
    """A factory of SlurmFabrics on the test cluster; all are closed when the test ends."""
    made: list[SlurmFabric] = []

    def make(**options: object) -> SlurmFabric:
        options.setdefault("slurm_conf", slurm_cluster.slurm_conf)
        fabric = SlurmFabric(tmp_path / f"fabric-{len(made)}", **options)  # type: ignore[arg-type]
        made.append(fabric)
        return fabric

    yield make
    for fabric in made:
        fabric.close()


def python_pilot(tmp_path: Path, code: str, pilot_id: str = "p1", **fields: object) -> PilotRequest:
    return PilotRequest(
        pilot_id, [sys.executable, "-c", code], workdir=tmp_path / pilot_id, **fields
    )  # type: ignore[arg-type]


def final_state(fabric: SlurmFabric, ref: str) -> PilotState:
    return wait_for(
        lambda: (state := fabric.status([ref])[ref]).final and state, f"Slurm job {ref} to end"
    )


# -- what sbatch refuses -----------------------------------------------------------------------


def test_a_partition_that_does_not_exist_is_refused_with_slurms_message(
    make_slurm: Callable[..., SlurmFabric], tmp_path: Path
) -> None:
    fabric = make_slurm(partition="no-such-partition")
    with pytest.raises(FabricError, match=r"pilot p1: sbatch refused it: .*[Ii]nvalid partition"):
        fabric.submit(python_pilot(tmp_path, "pass"))


def test_a_time_limit_above_the_partitions_is_refused(
    make_slurm: Callable[..., SlurmFabric], tmp_path: Path
) -> None:
    fabric = make_slurm(partition="short")  # MaxTime 10 minutes
    with pytest.raises(FabricError, match=r"sbatch refused it: .*[Rr]equested time limit"):
        fabric.submit(python_pilot(tmp_path, "pass", wall_seconds=3600))
    ref = fabric.submit(python_pilot(tmp_path, "pass", "p2", wall_seconds=600))  # within it
    assert final_state(fabric, ref) is PilotState.DONE


def test_a_pending_job_that_can_never_start_is_cancelled_and_failed(
    make_slurm: Callable[..., SlurmFabric], slurm_cluster: SlurmCluster, tmp_path: Path
) -> None:
    """On clusters that accept a time limit above the partition's, the job pends for ever
    (PartitionTimeLimit). Made here by lowering a fresh partition's limit under a held job."""
    partition = f"shrinking{os.getpid()}"
    slurm_cluster.run("scontrol", "create", f"PartitionName={partition}", "Nodes=ALL", "MaxTime=10")
    try:
        fabric = make_slurm(partition=partition, sbatch_args=["--hold"])
        ref = fabric.submit(python_pilot(tmp_path, "pass", wall_seconds=300))
        slurm_cluster.run("scontrol", "update", f"PartitionName={partition}", "MaxTime=1")
        slurm_cluster.run("scontrol", "release", ref)
        assert final_state(fabric, ref) is PilotState.FAILED
        assert "PartitionTimeLimit" in fabric.describe(ref)
        squeue = slurm_cluster.run("squeue", "-h", "-t", "all", "-j", ref, "-o", "%T")
        assert squeue.stdout.strip() == "CANCELLED"  # not left pending in Slurm
        assert fabric.status([ref]) == {ref: PilotState.FAILED}  # and it stays Failed
    finally:
        slurm_cluster.run("scontrol", "delete", f"PartitionName={partition}")


# -- Slurm unreachable -------------------------------------------------------------------------


def dead_cluster_conf(cluster: SlurmCluster, folder: Path, *extra: str) -> Path:
    """The cluster's configuration with slurmctld on a port nothing listens on."""
    text = cluster.slurm_conf.read_text()
    lines = [
        f"SlurmctldPort={free_port()}" if line.startswith("SlurmctldPort=") else line
        for line in text.splitlines()
    ]
    path = folder / "dead-slurm.conf"
    path.write_text("\n".join([*lines, *extra]) + "\n")
    return path


def test_slurmctld_unreachable_is_a_fabric_error_within_the_timeout(
    make_slurm: Callable[..., SlurmFabric], slurm_cluster: SlurmCluster, tmp_path: Path
) -> None:
    """Slurm's clients retry a dead controller for 10-20 s; the fabric gives up at its timeout."""
    fabric = make_slurm(slurm_conf=dead_cluster_conf(slurm_cluster, tmp_path), timeout=2.0)
    calls: list[Callable[[], object]] = [
        lambda: fabric.submit(python_pilot(tmp_path, "pass")),
        lambda: fabric.status(["1"]),
        lambda: fabric.cancel("1"),
    ]
    for call in calls:
        started = time.monotonic()
        with pytest.raises(FabricError, match=r"Slurm unreachable: .* did not answer within 2 s"):
            call()
        assert time.monotonic() - started < 5.0


def test_slurmctld_refusing_connections_is_a_fabric_error_with_slurms_message(
    make_slurm: Callable[..., SlurmFabric], slurm_cluster: SlurmCluster, tmp_path: Path
) -> None:
    conf = dead_cluster_conf(slurm_cluster, tmp_path, "MessageTimeout=1")
    fabric = make_slurm(slurm_conf=conf, timeout=10.0)
    with pytest.raises(FabricError, match="Unable to contact slurm controller"):
        fabric.submit(python_pilot(tmp_path, "pass"))
    with pytest.raises(FabricError, match=r"squeue failed: .*Unable to contact slurm controller"):
        fabric.status(["1"])


def test_slurm_commands_missing_is_a_fabric_error(
    make_slurm: Callable[..., SlurmFabric], tmp_path: Path
) -> None:
    empty = tmp_path / "no-slurm-here"
    empty.mkdir()
    fabric = make_slurm(bin_dir=empty)
    with pytest.raises(FabricError, match="sbatch not found"):
        fabric.submit(python_pilot(tmp_path, "pass"))
    with pytest.raises(FabricError, match="squeue not found"):
        fabric.status(["1"])
    assert fabric.status(["not-a-job-id"]) == {"not-a-job-id": PilotState.ABORTED}  # no call


# -- states and output -------------------------------------------------------------------------


def test_a_job_scancelled_outside_the_fabric_is_aborted(
    make_slurm: Callable[..., SlurmFabric], slurm_cluster: SlurmCluster, tmp_path: Path
) -> None:
    fabric = make_slurm()
    ref = fabric.submit(
        python_pilot(tmp_path, "import time; print('up', flush=True); time.sleep(300)")
    )
    wait_for(lambda: "up" in fabric.output(ref), "the pilot to start")
    slurm_cluster.run("scancel", ref)
    assert final_state(fabric, ref) is PilotState.ABORTED
    assert "CANCELLED" in fabric.describe(ref)


def test_the_job_gets_the_requested_resources_name_and_environment(
    make_slurm: Callable[..., SlurmFabric], tmp_path: Path
) -> None:
    code = (
        "import os; print(*(os.environ.get(k) for k in ('SLURM_JOB_NAME', "
        "'SLURM_CPUS_PER_TASK', 'SLURM_MEM_PER_NODE', 'MARK')), os.getcwd())"
    )
    request = python_pilot(
        tmp_path, code, "Site.ce.1", cores=2, memory_mb=100, env={"MARK": "a,b c"}
    )
    fabric = make_slurm()
    ref = fabric.submit(request)
    assert final_state(fabric, ref) is PilotState.DONE
    assert fabric.output(ref).split() == ["Site.ce.1", "2", "100", "a,b", "c", str(request.workdir)]


def test_output_and_state_outlive_the_fabric_object(
    make_slurm: Callable[..., SlurmFabric], tmp_path: Path
) -> None:
    """A restarted director follows its Slurm pilots by job id (unlike local ones)."""
    first = make_slurm(cancel_on_close=False)
    ref = first.submit(
        python_pilot(
            tmp_path,
            "import sys; print('to-stdout'); print('to-stderr', file=sys.stderr); sys.exit(3)",
        )
    )
    first.close()
    second = SlurmFabric(first.settings.base_dir, slurm_conf=first.settings.slurm_conf)
    try:
        assert final_state(second, ref) is PilotState.FAILED
        text = second.output(ref)
        assert "to-stdout" in text and "--- stderr ---\nto-stderr" in text
        assert "exit code 3" in second.describe(ref)
    finally:
        second.close()


def test_jobs_slurmctld_forgot_are_read_from_the_jobcomp_log(
    make_slurm: Callable[..., SlurmFabric], slurm_cluster: SlurmCluster, tmp_path: Path
) -> None:
    """Past MinJobAge squeue no longer lists a job: its end is in the job-completion log, which
    the fabric finds through `scontrol show config` or is told."""
    lines = [
        "JobId=987001 UserId=root(0) Name=x JobState=COMPLETED Partition=debug ExitCode=0:0",
        "JobId=987002 UserId=root(0) Name=y JobState=TIMEOUT Partition=debug ExitCode=0:15",
    ]
    with open(slurm_cluster.jobcomp, "a") as log:  # the cluster's own log
        log.write(lines[0] + "\n")
    told = tmp_path / "jobcomp.txt"
    told.write_text(lines[1] + "\n")
    found = make_slurm().status(["987001", "987003"])
    assert found == {"987001": PilotState.DONE, "987003": PilotState.ABORTED}
    assert make_slurm(jobcomp_file=told).status(["987002"]) == {"987002": PilotState.FAILED}


# -- the time left a pilot reads ---------------------------------------------------------------


def test_time_left_from_batch_inside_a_real_slurm_job(
    make_slurm: Callable[..., SlurmFabric], tmp_path: Path
) -> None:
    code = (
        "import os, time; from dirac_like.agents.batch_env import time_left_from_batch; "
        "print('LEFT', time_left_from_batch(os.environ, time.time()))"
    )
    fabric = make_slurm()
    ref = fabric.submit(python_pilot(tmp_path, code, wall_seconds=300))
    assert final_state(fabric, ref) is PilotState.DONE
    left = float(fabric.output(ref).split("LEFT")[1].split()[0])
    assert 240.0 < left <= 300.0


# -- the bootstrap -----------------------------------------------------------------------------


def python_without_dirac_like(folder: Path) -> Path:
    """A folder for PATH whose python3 is this Python without site-packages (so without
    dirac-like), and which still creates working virtual environments."""
    folder.mkdir(parents=True, exist_ok=True)
    wrapper = folder / "python3"
    wrapper.write_text(f'#!/bin/sh\nexec {sys.executable} -S "$@"\n')
    wrapper.chmod(0o755)
    return folder


def fake_wheel(folder: Path) -> Path:
    """A dirac-like wheel whose pilot prints its arguments (installs offline in a second)."""
    path = folder / "dirac_like-0.0.1-py3-none-any.whl"
    files = {
        "dirac_like/__init__.py": "",
        "dirac_like/__main__.py": "import sys\nprint('FAKE-PILOT', *sys.argv[1:])\n",
        "dirac_like/agents/__init__.py": "",
        "dirac_like/agents/pilot.py": "",
        "dirac_like-0.0.1.dist-info/METADATA": "Metadata-Version: 2.1\nName: dirac-like\n"
        "Version: 0.0.1\n",
        "dirac_like-0.0.1.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: test\n"
        "Root-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = "".join(f"{name},,\n" for name in files) + "dirac_like-0.0.1.dist-info/RECORD,,\n"
    with zipfile.ZipFile(path, "w") as wheel:
        for name, text in {**files, "dirac_like-0.0.1.dist-info/RECORD": record}.items():
            wheel.writestr(name, text)
    return path


def bootstrap(*args: str, cwd: Path, path: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": path or os.environ["PATH"]}
    cwd.mkdir(parents=True, exist_ok=True)
    return subprocess.run(
        ["/bin/bash", str(BOOTSTRAP_SCRIPT), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def pilot_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "dirac_like", "pilot", *args]


def test_bootstrap_finds_dirac_like_and_execs_the_pilot(tmp_path: Path) -> None:
    done = bootstrap(
        *bootstrap_command(pilot_argv("--help"), python=sys.executable)[2:], cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert "usage: dirac-like pilot" in done.stdout
    record = json.loads((tmp_path / "bootstrap.json").read_text())
    assert record["status"] == "ok" and record["action"] == "found"
    assert record["python"] == os.path.realpath(sys.executable) or record["python"] == (
        sys.executable
    )
    assert record["pilot_args"] == ["--help"]


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["--bogus", "--", "--help"], 68),
        (["--help"], 68),  # no "--"
        (["--", "--help"], 67),  # no dirac-like, nothing to install from
        (["--install-from", "/no/such/wheel.whl", "--", "--help"], 66),
    ],
)
def test_bootstrap_setup_failures_exit_with_their_codes(
    tmp_path: Path, args: list[str], code: int
) -> None:
    path = f"{python_without_dirac_like(tmp_path / 'bin')}:/usr/bin:/bin"
    done = bootstrap(*args, cwd=tmp_path / "work", path=path)
    assert done.returncode == code, done.stderr
    assert f"pilot-bootstrap: exit {code}: " in done.stderr
    record = json.loads((tmp_path / "work" / "bootstrap.json").read_text())
    assert (record["status"], record["exit_code"]) == ("failed", code)
    short = BOOTSTRAP_EXIT_REASONS[code].removeprefix("bootstrap: ").split(" (")[0]
    assert record["reason"].startswith(short)


def test_bootstrap_without_python_exits_64(tmp_path: Path) -> None:
    done = bootstrap("--python", "/no/python3", "--", "--help", cwd=tmp_path, path=str(tmp_path))
    assert done.returncode == 64
    assert "no Python 3.11 or newer" in done.stderr


def test_bootstrap_venv_that_cannot_be_created_exits_65(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    path = f"{python_without_dirac_like(tmp_path / 'bin')}:/usr/bin:/bin"
    done = bootstrap(
        "--venv",
        str(blocker / "venv"),
        "--install-from",
        str(tmp_path),
        "--",
        "--help",
        cwd=tmp_path / "work",
        path=path,
    )
    assert done.returncode == 65, done.stderr
    assert "pilot-bootstrap: exit 65: creating the virtual environment failed" in done.stderr


def test_bootstrap_under_slurm_creates_the_environment_and_runs_the_pilot(
    make_slurm: Callable[..., SlurmFabric], tmp_path: Path
) -> None:
    wheel = fake_wheel(tmp_path)
    workdir = tmp_path / "p1"
    command = bootstrap_command(
        pilot_argv("--site", "S", "--ce", "c"), install_from=wheel, venv=workdir / "venv"
    )
    path = f"{python_without_dirac_like(tmp_path / 'bin')}:/usr/bin:/bin"
    fabric = make_slurm()
    ref = fabric.submit(PilotRequest("p1", command, env={"PATH": path}, workdir=workdir))
    assert final_state(fabric, ref) is PilotState.DONE, fabric.output(ref)
    assert "FAKE-PILOT pilot --site S --ce c" in fabric.output(ref)
    record = json.loads((workdir / "bootstrap.json").read_text())
    assert (record["action"], record["batch_job_id"]) == ("created", ref)
    assert record["dirac_like_version"] == "0.0.1"


def test_a_pilot_that_dies_in_its_bootstrap_fails_with_the_reason(
    make_slurm: Callable[..., SlurmFabric], tmp_path: Path
) -> None:
    path = f"{python_without_dirac_like(tmp_path / 'bin')}:/usr/bin:/bin"
    fabric = make_slurm()
    request = PilotRequest(
        "p1",
        bootstrap_command(pilot_argv("--site", "S")),
        env={"PATH": path},
        workdir=tmp_path / "p1",
    )
    ref = fabric.submit(request)
    assert final_state(fabric, ref) is PilotState.FAILED
    assert fabric.describe(ref).endswith(f"exit code 67: {BOOTSTRAP_EXIT_REASONS[67]}")
    assert "pilot-bootstrap: exit 67: dirac-like is not importable" in fabric.output(ref)
