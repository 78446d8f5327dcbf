"""The systemd unit templates in etc/systemd/ call commands the CLI accepts."""

from __future__ import annotations

import configparser
import shlex
from pathlib import Path

import pytest

from dirac_like.cli import build_parser

UNITS = sorted((Path(__file__).resolve().parents[2] / "etc" / "systemd").glob("*.service"))


def test_there_are_units_for_the_service_the_director_and_the_monitoring_agent() -> None:
    assert {unit.name for unit in UNITS} == {
        "dirac-like-central.service",
        "dirac-like-director@.service",
        "dirac-like-monitoring.service",
    }


@pytest.mark.parametrize("unit", UNITS, ids=lambda unit: unit.name)
def test_exec_start_parses_with_the_cli(unit: Path) -> None:
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.read(unit)
    command = shlex.split(parser["Service"]["ExecStart"].replace("%i", "LCG.Example.org"))
    assert command[0].endswith("/dirac-like")
    args = build_parser().parse_args(command[1:])  # a wrong flag exits with usage (2)
    assert (args.cli_group, args.cli_command) in {
        ("service", "central"),
        ("agent", "director"),
        ("agent", "monitoring"),
    }
    assert parser["Service"]["KillSignal"] == "SIGTERM"


def test_the_commented_monitoring_config_loads_with_its_defaults() -> None:
    from dirac_like.agents.monitoring import MonitorSettings, load_settings

    path = Path(__file__).resolve().parents[2] / "etc" / "monitoring.toml"
    assert load_settings(path) == MonitorSettings()
