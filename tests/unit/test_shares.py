"""Usage accounting: core-seconds, decay with a half-life, persistence records."""

from __future__ import annotations

import math

import pytest

from dirac_like.model import UsageRecord
from dirac_like.monitoring import PROBE_GROUP
from dirac_like.shares import Account, FairShare


def test_running_cores_accumulate_core_seconds() -> None:
    shares = FairShare({}, {}, half_life=1e12)  # practically no decay
    shares.start("g", "u", 4, now=0.0)
    shares.stop("g", "u", 4, now=100.0)
    assert shares.account("g", "").usage == pytest.approx(400.0, rel=1e-6)
    assert shares.account("g", "u").usage == pytest.approx(400.0, rel=1e-6)


def test_usage_halves_after_one_half_life() -> None:
    account = Account(usage=1000.0, stamp=0.0)
    account.advance(3600.0, half_life=3600.0)
    assert account.usage == pytest.approx(500.0)


def test_load_of_steady_running_converges_to_twice_the_running_cores() -> None:
    # running cores + average cores over the recent past -> 2 x cores in the steady state
    shares = FairShare({}, {}, half_life=100.0)
    shares.start("g", "u", 10, now=0.0)
    assert shares.account("g", "").load(10_000.0, 100.0) == pytest.approx(20.0, rel=1e-6)


def test_group_priority_divides_by_share() -> None:
    shares = FairShare({"big": 3.0, "small": 1.0}, {}, half_life=3600.0)
    shares.start("big", "u", 3, now=0.0)
    shares.start("small", "v", 1, now=0.0)
    assert shares.group_priority("big", 0.0) == pytest.approx(shares.group_priority("small", 0.0))


def test_unlisted_group_gets_the_default_share() -> None:
    shares = FairShare({"a": 5.0}, {}, half_life=10.0, default_share=2.0)
    assert shares.group_share("other") == 2.0


def test_dirty_records_round_trip_through_restore() -> None:
    shares = FairShare({}, {}, half_life=50.0)
    shares.start("g", "u", 2, now=0.0)
    shares.stop("g", "u", 2, now=30.0)
    records = shares.take_dirty()
    assert {(r.group, r.user) for r in records} == {("g", ""), ("g", "u")}
    assert shares.take_dirty() == []
    again = FairShare({}, {}, half_life=50.0)
    for record in records:
        again.restore(record)
    expected = 2 * 50 / math.log(2) * (1 - 2 ** (-30 / 50))
    assert again.account("g", "u").usage == pytest.approx(expected)
    assert isinstance(records[0], UsageRecord)


def test_report_gives_share_fractions() -> None:
    shares = FairShare({"a": 3.0, "b": 1.0}, {}, half_life=10.0)
    report = {row["group"]: row for row in shares.report(0.0)}
    assert report["a"]["share_fraction"] == pytest.approx(0.75)
    assert report["b"]["share_fraction"] == pytest.approx(0.25)


def test_report_shows_what_the_matcher_ranks_on() -> None:
    """admin shares: running cores, decayed usage as cores, load and load per share, so that a
    load fraction that disagrees with the running cores can be read (past usage counts)."""
    shares = FairShare({"a": 3, "b": 1}, {}, half_life=100.0)
    shares.start("a", "ann", 8, 0.0)
    shares.stop("a", "ann", 8, 100.0)  # a ran 8 cores for one half-life, then stopped
    shares.start("b", "bob", 2, 100.0)
    rows = {row["group"]: row for row in shares.report(100.0)}
    assert rows["a"]["running_cores"] == 0 and rows["b"]["running_fraction"] == 1.0
    assert rows["a"]["usage_cores"] == pytest.approx(4.0)  # 8 cores, half of it decayed
    assert rows["a"]["load"] == pytest.approx(rows["a"]["usage_cores"])
    assert rows["b"]["load_per_share"] == pytest.approx(2.0)
    assert rows["a"]["load_fraction"] == pytest.approx(4.0 / 6.0)


def test_owed_cores_is_the_gap_to_the_share_of_the_total_load() -> None:
    shares = FairShare({"a": 70, "b": 30}, {}, half_life=86400.0)
    shares.start("a", "ann", 40, 0.0)
    shares.start("b", "bob", 60, 0.0)
    assert shares.owed_cores("a", ["a", "b"], 0.0) == pytest.approx(30.0)
    assert shares.owed_cores("b", ["a", "b"], 0.0) == pytest.approx(-30.0)


def test_owed_cores_leaves_the_probe_group_out() -> None:
    shares = FairShare({"a": 0.7, "b": 0.3}, {}, half_life=86400.0)
    shares.start("a", "ann", 40, 0.0)
    shares.start("b", "bob", 60, 0.0)
    assert shares.owed_cores("a", ["a", "b", PROBE_GROUP], 0.0) == pytest.approx(30.0)
