"""How a director starts batch pilots: the bootstrap wrapper, the partition, its settings file."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from dirac_like.agents.batch_env import BOOTSTRAP_SCRIPT
from dirac_like.agents.director import Director, DirectorSettings, load_settings, make_fabrics
from dirac_like.agents.fabrics import LocalFabric, SlurmFabric
from dirac_like.client import Client
from dirac_like.errors import ConfigError
from dirac_like.sites import CEConfig, SiteConfig

SITE = SiteConfig(
    "LCG.Batch.org",
    (
        CEConfig(
            "slurm-ce",
            "slurm",
            cores_per_slot=4,
            memory_mb=8000,
            max_wall_time=3600,
            partition="grid",
            max_cpu_time=1800,
            platform="Linux_x86_64_glibc-2.36",
        ),
        CEConfig("local-ce", "local", cores_per_slot=1),
    ),
)


@pytest.fixture
def client() -> Iterator[Client]:
    with Client("tcp://127.0.0.1:9") as unused:  # never called: nothing here talks to it
        yield unused


def director(tmp_path: Path, client: Client, settings: DirectorSettings) -> Director:
    fabrics = {"slurm": SlurmFabric(tmp_path / "slurm"), "local": LocalFabric(tmp_path / "local")}
    return Director(SITE, client, fabrics, tmp_path / "home", settings=settings)


def test_a_slurm_pilot_runs_through_the_bootstrap_in_the_ces_partition(
    tmp_path: Path, client: Client
) -> None:
    built = director(tmp_path, client, DirectorSettings())
    request = built.pilot_request(SITE.ces[0], "pilot-1")
    assert request.command[:2] == ["/bin/bash", str(BOOTSTRAP_SCRIPT)]
    assert request.command[2:4] == ["--python", sys.executable]
    separator = request.command.index("--")
    pilot_args = request.command[separator + 1 :]
    assert pilot_args[:2] == ["--server", "tcp://127.0.0.1:9"]
    assert pilot_args[pilot_args.index("--cores") :][:2] == ["--cores", "4"]
    assert (request.queue, request.cores, request.memory_mb, request.wall_seconds) == (
        "grid",
        4,
        8000,
        3600,
    )


def test_the_bootstrap_gets_the_settings_python_wheel_and_environment(
    tmp_path: Path, client: Client
) -> None:
    settings = DirectorSettings(
        bootstrap_script="/shared/pilot-bootstrap.sh",
        bootstrap_python="/opt/py/bin/python3",
        bootstrap_install_from="/shared/dirac_like.whl",
        bootstrap_venv="/shared/venv",
    )
    command = director(tmp_path, client, settings).pilot_request(SITE.ces[0], "p").command
    separator = command.index("--")
    assert command[:separator] == [
        "/bin/bash",
        "/shared/pilot-bootstrap.sh",
        "--python",
        "/opt/py/bin/python3",
        "--install-from",
        "/shared/dirac_like.whl",
        "--venv",
        "/shared/venv",
    ]


def test_a_local_pilot_is_started_directly(tmp_path: Path, client: Client) -> None:
    request = director(tmp_path, client, DirectorSettings()).pilot_request(SITE.ces[1], "p")
    assert request.command[:5] == [sys.executable, "-P", "-m", "dirac_like", "pilot"]
    assert request.queue == ""


def test_the_settings_file_names_the_bootstrap_and_slurm(tmp_path: Path) -> None:
    path = tmp_path / "director.toml"
    path.write_text(
        '[director]\nbootstrap_install_from = "/w.whl"\nslurm_conf = "/etc/s.conf"\n'
        "slurm_timeout = 5.0\n"
    )
    settings = load_settings(path)
    assert (settings.bootstrap_install_from, settings.slurm_conf, settings.slurm_timeout) == (
        "/w.whl",
        "/etc/s.conf",
        5.0,
    )
    path.write_text("[director]\nslurm_timeout = 0\n")
    with pytest.raises(ConfigError, match="slurm_timeout must be positive"):
        load_settings(path)


def test_the_slurm_fabric_of_a_director_lets_its_pilots_outlive_it(tmp_path: Path) -> None:
    settings = DirectorSettings(slurm_conf="/etc/slurm-test.conf", slurm_timeout=7.0)
    fabrics = make_fabrics(["slurm"], "tcp://127.0.0.1:9", tmp_path, settings)
    slurm = fabrics["slurm"]
    assert isinstance(slurm, SlurmFabric)
    assert not slurm.settings.cancel_on_close
    assert slurm.settings.slurm_conf == Path("/etc/slurm-test.conf")
    assert slurm.settings.timeout == 7.0
    assert slurm.settings.base_dir == tmp_path / "fabric" / "slurm"


def test_the_pilot_offers_the_ces_cpu_limit_and_platform(tmp_path: Path, client: Client) -> None:
    command = director(tmp_path, client, DirectorSettings()).pilot_request(SITE.ces[0], "p").command
    assert command[command.index("--cpu-time") + 1] == "1800"
    assert command[command.index("--platform") + 1] == "Linux_x86_64_glibc-2.36"
