"""The per-identity submission limits (services/limits.py) and their configuration."""

from __future__ import annotations

from pathlib import Path

import pytest

from dirac_like.config import LimitsConfig, load_config
from dirac_like.description import DescriptionLimits, parse_descriptions
from dirac_like.errors import ConfigError, InvalidJobDescription, LimitExceeded
from dirac_like.services.limits import SubmissionLimits

LIMITS = SubmissionLimits(
    LimitsConfig(
        max_jobs_per_request=100, max_waiting_jobs_per_user=500, max_description_bytes=1000
    ),
    DescriptionLimits(max_parametric_jobs=60),
)


def test_the_expansion_is_bounded_by_what_is_left_of_the_request_before_it_expands() -> None:
    assert LIMITS.for_next_description(0).max_parametric_jobs == 60  # the tighter one
    left = LIMITS.for_next_description(70)
    assert left.max_parametric_jobs == 30
    with pytest.raises(InvalidJobDescription, match=r"limits\.max_jobs_per_request"):
        parse_descriptions('Executable = "x"; Parameters = 31;', left)
    assert len(parse_descriptions('Executable = "x"; Parameters = 30;', left)) == 30
    with pytest.raises(LimitExceeded, match="at least 101 jobs"):
        LIMITS.for_next_description(100)


def test_requests_waiting_jobs_and_description_sizes() -> None:
    LIMITS.check_request(100)
    with pytest.raises(LimitExceeded, match=r"limits\.max_jobs_per_request"):
        LIMITS.check_request(101)
    LIMITS.check_waiting("alice", 400, 100)
    with pytest.raises(LimitExceeded, match="alice has 401 waiting jobs: 100 more"):
        LIMITS.check_waiting("alice", 401, 100)
    LIMITS.check_size(0, 1000)
    with pytest.raises(LimitExceeded, match="job 3 of the request has a description of 1001"):
        LIMITS.check_size(2, 1001)


def test_limits_are_configured_and_checked(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[limits]\nmax_jobs_per_request = 5\n")
    assert load_config(path).limits.max_jobs_per_request == 5
    path.write_text("[limits]\nmax_waiting_jobs_per_user = 0\n")
    with pytest.raises(ConfigError, match="limits"):
        load_config(path)
