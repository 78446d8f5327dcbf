"""The monitoring commands' pure parts: times and lengths on the command line, the history grid."""

from __future__ import annotations

import argparse

import pytest

from dirac_like.cli.monitoring import history_grid, parse_length, parse_time


def test_lengths_and_times_on_the_command_line() -> None:
    assert parse_length("30d") == 30 * 86400 and parse_length("90s") == 90
    assert parse_time("now", now=1000.0) == 1000.0
    assert parse_time("+2h", now=1000.0) == 1000.0 + 7200
    assert parse_time("-30m", now=1000.0) == 1000.0 - 1800
    assert parse_time("1970-01-01T01:00") == 3600.0  # UTC unless a zone is given
    assert parse_time("1970-01-01T01:00+01:00") == 0.0
    for bad in ("tomorrow", "+2x", "30"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_time(bad) if not bad.isdigit() else parse_length(bad)


def test_the_history_grid_shows_percent_unknown_and_downtime() -> None:
    day = 86400.0
    report = [
        {
            "target": "LCG.CERN.cern",
            "periods": [
                {"start": 0.0, "availability": 1.0, "reliability": 1.0},
                {"start": day, "availability": None, "reliability": None},
                {"start": 2 * day, "availability": 0.0, "reliability": None},
                {"start": 3 * day, "availability": 0.875, "reliability": 0.9},
            ],
        }
    ]
    lines = history_grid(report).splitlines()
    assert lines[0].split() == ["01-01", "01-02", "01-03", "01-04"]
    assert lines[1].split() == ["LCG.CERN.cern", "100%", "--", "DT", "88%"]
    assert history_grid([]) == "No sites or SEs known yet."
