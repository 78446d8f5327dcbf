"""Configuration files: defaults, the shipped example, and errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from dirac_like.config import Config, load_config

REPO = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def test_no_file_gives_the_defaults() -> None:
    assert load_config(None) == Config()


def test_the_shipped_commented_file_is_the_defaults() -> None:
    assert load_config(REPO / "etc" / "dirac-like.toml") == Config()


def test_values_override_the_defaults(tmp_path: Path) -> None:
    config = load_config(
        write(
            tmp_path,
            """
[jobs]
match_lease = 60
[shares.groups]
lhcb_mc = 70
[shares.users.lhcb_user]
alice = 2
[sites."LCG.CERN.cern"]
max_running = 5000
""",
        )
    )
    assert config.jobs.match_lease == 60.0 and isinstance(config.jobs.match_lease, float)
    assert config.shares.groups["lhcb_mc"] == 70.0
    assert config.shares.users["lhcb_user"]["alice"] == 2.0
    assert config.sites["LCG.CERN.cern"].max_running == 5000


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[jobs]\nmatch_lase = 5\n", "jobs.match_lase: unknown key"),
        ("[servce]\nlisten = 'x'\n", "servce: unknown key"),
        ("[sites.X]\nmax_runing = 1\n", "sites.X.max_runing: unknown key"),
        ("[jobs]\nmax_reschedules = 'three'\n", "jobs.max_reschedules: expected int"),
        ("[jobs]\nmax_reschedules = true\n", "jobs.max_reschedules: expected int"),
        ("[shares.groups]\nmc = -1\n", "shares.groups.mc: must be positive"),
        ("[store]\nsynchronous = 'off'\n", "store.synchronous"),
        ("[jobs]\nmatch_lease = 0\n", "jobs.match_lease: must be positive"),
        ("jobs = 3\n", "jobs: expected a table"),
        ("[jobs\n", "not valid TOML"),
    ],
)
def test_a_wrong_config_names_the_key(tmp_path: Path, text: str, message: str) -> None:
    from dirac_like.errors import ConfigError

    with pytest.raises(ConfigError) as refused:
        load_config(write(tmp_path, text))
    assert message in str(refused.value)


def test_a_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    from dirac_like.errors import ConfigError

    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "nope.toml")
