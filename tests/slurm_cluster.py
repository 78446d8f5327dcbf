"""A real Slurm cluster for the tests (a pytest plugin, loaded by tests/conftest.py).

The session-scoped fixture ``slurm_cluster`` starts one with ``scripts/slurm-cluster.sh`` the
first time a test asks for it: two nodes on this machine, four jobs per core, KillWait 2 s, in a
folder made directly in the temp dir (munged wants every folder above its socket enterable by all,
which pytest's tmp_path is not). It stops it by the PIDs the script recorded when the session
ends, pass or fail; should the session die before that, the script's watcher stops it
(``WATCH_PID``). Without Slurm installed the tests that use it skip, saying how to install it;
under ``CI=true`` they fail instead (CI must run them).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "slurm-cluster.sh"
NODES = 2
START_TIMEOUT = 120.0
COMMANDS = ("sbatch", "squeue", "scancel", "scontrol", "slurmctld", "slurmd", "munged")


@dataclass(frozen=True)
class SlurmCluster:
    """A running test cluster."""

    base: Path
    nodes: int

    @property
    def slurm_conf(self) -> Path:
        return self.base / "etc" / "slurm.conf"

    @property
    def jobcomp(self) -> Path:
        return self.base / "log" / "jobcomp.log"

    def env(self) -> dict[str, str]:
        """This process's environment with SLURM_CONF pointing at the cluster."""
        return {**os.environ, "SLURM_CONF": str(self.slurm_conf)}

    def run(self, *argv: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        """A Slurm command against the cluster (check=True)."""
        return subprocess.run(
            list(argv),
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=True,
            stdin=subprocess.DEVNULL,
        )


def slurm_installed() -> bool:
    return all(shutil.which(name) for name in COMMANDS)


def _script(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT,
        check=False,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "WATCH_PID": str(os.getpid())},  # it stops once this process is gone
    )


def start_cluster(nodes: int = NODES) -> SlurmCluster:
    """A new cluster in a folder of its own, stopped by the script's watcher once this process is
    gone (the caller stops it with ``stop_cluster``)."""
    base = Path(tempfile.mkdtemp(prefix="dirac-like-slurm-"))
    started = _script(
        "start", str(base), "--nodes", str(nodes), "--oversubscribe", "4", "--kill-wait", "2"
    )
    if started.returncode != 0:
        stop_cluster(base)
        pytest.fail(
            f"the Slurm test cluster did not start:\n{started.stdout}{started.stderr}",
            pytrace=False,
        )
    return SlurmCluster(base, nodes)


def stop_cluster(base: Path) -> None:
    """Stop the cluster under ``base`` by its recorded PIDs and remove its folder."""
    stopped = _script("stop", str(base))
    assert stopped.returncode == 0, f"stopping the Slurm cluster failed: {stopped.stderr}"
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[SlurmCluster]:
    if not slurm_installed():
        message = (
            "Slurm is not installed (sbatch, slurmctld, slurmd, munged): "
            "run `bash scripts/slurm-cluster.sh install` as root to enable the Slurm tests"
        )
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true: {message}", pytrace=False)
        pytest.skip(message)
    cluster = start_cluster()
    try:
        yield cluster
    finally:
        stop_cluster(cluster.base)
