"""WLCG availability and reliability: hand-computed figures and hypothesis properties."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dirac_like.availability import (
    DowntimeSpan,
    Sample,
    figures,
    per_period,
    percent,
    period_starts,
)
from dirac_like.monitoring import CheckStatus

OK, WARN, CRIT, UNK = (
    CheckStatus.OK,
    CheckStatus.WARNING,
    CheckStatus.CRITICAL,
    CheckStatus.UNKNOWN,
)


def test_scripted_sequence_matches_hand_computed_figures() -> None:
    # 0-20 up, 20-40 down, 40-50 up, 50-60 scheduled downtime, 60-70 up, 70-80 unknown (the
    # result of 40 is older than the validity of 30 s), 80-100 up.
    samples = [Sample(0, OK), Sample(20, CRIT), Sample(40, OK), Sample(80, WARN)]
    result = figures(samples, [DowntimeSpan(50, 60, scheduled=True)], 0, 100, validity=30)
    assert (result.up, result.down, result.unknown, result.scheduled) == (60, 20, 10, 10)
    assert result.availability == pytest.approx(60 / 90)
    assert result.reliability == pytest.approx(60 / 80)


def test_unscheduled_downtime_counts_against_both() -> None:
    samples = [Sample(0, OK)]
    result = figures(samples, [DowntimeSpan(25, 50, scheduled=False)], 0, 100, validity=1000)
    assert (result.up, result.down) == (75, 25)
    assert result.availability == result.reliability == pytest.approx(0.75)


def test_a_scheduled_downtime_does_not_lower_reliability() -> None:
    samples = [Sample(float(t), OK) for t in range(0, 100, 10)]
    plain = figures(samples, [], 0, 100, validity=15)
    declared = figures(samples, [DowntimeSpan(30, 70, scheduled=True)], 0, 100, validity=15)
    assert plain.reliability == declared.reliability == 1.0
    assert declared.availability == pytest.approx(0.6)


def test_a_period_only_in_downtime_has_undefined_reliability() -> None:
    result = figures([Sample(0, OK)], [DowntimeSpan(0, 100, scheduled=True)], 0, 100, 1000)
    assert result.reliability is None
    assert result.availability == 0.0
    assert percent(result.reliability) == "n/a"


def test_nothing_known_is_undefined() -> None:
    result = figures([], [], 0, 100, validity=10)
    assert result.availability is None and result.reliability is None
    assert result.unknown == 100


def test_a_site_is_up_when_any_of_its_ces_is_up() -> None:
    samples = [Sample(0, CRIT, "ce1"), Sample(0, OK, "ce2"), Sample(50, CRIT, "ce2")]
    result = figures(samples, [], 0, 100, validity=1000)
    assert (result.up, result.down) == (50, 50)


def test_the_result_before_the_period_holds_into_it() -> None:
    result = figures([Sample(-5, CRIT)], [], 0, 10, validity=10)
    assert (result.down, result.unknown) == (5, 5)
    assert result.availability == 0.0


def test_unknown_results_do_not_count() -> None:
    result = figures([Sample(0, OK), Sample(50, UNK)], [], 0, 100, validity=1000)
    assert result.availability == result.reliability == 1.0


def test_days_weeks_and_months_start_on_utc_boundaries() -> None:
    since = datetime(2026, 1, 30, 15, tzinfo=UTC).timestamp()
    until = datetime(2026, 3, 2, tzinfo=UTC).timestamp()
    months = [
        datetime.fromtimestamp(t, UTC).date().isoformat()
        for t in period_starts(since, until, "month")
    ]
    assert months == ["2026-01-01", "2026-02-01", "2026-03-01"]
    weeks = period_starts(since, until, "week")
    assert datetime.fromtimestamp(weeks[0], UTC).date().isoformat() == "2026-01-26"  # a Monday
    assert len(period_starts(since, until, "day")) == 31


def test_per_period_cuts_each_window_to_the_asked_range() -> None:
    day = 86400.0
    start = datetime(2026, 1, 1, tzinfo=UTC).timestamp()
    samples = [Sample(start, OK), Sample(start + day, CRIT)]
    rows = per_period(samples, [], start + day / 2, start + 2 * day, "day", validity=2 * day)
    assert [(row.start, row.end) for row in rows] == [
        (start + day / 2, start + day),
        (start + day, start + 2 * day),
    ]
    assert [row.availability for row in rows] == [1.0, 0.0]


def test_unknown_period_name_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown period"):
        period_starts(0, 10, "year")


statuses = st.sampled_from(list(CheckStatus))
sample_lists = st.lists(
    st.builds(Sample, st.floats(-50, 150), statuses, st.sampled_from(["", "ce1", "ce2"])),
    max_size=20,
)
downtime_lists = st.lists(
    st.tuples(st.floats(-50, 150), st.floats(0.5, 80), st.booleans()).map(
        lambda t: DowntimeSpan(t[0], t[0] + t[1], t[2])
    ),
    max_size=4,
)


@given(sample_lists, downtime_lists, st.floats(1, 200))
def test_figures_are_fractions_and_reliability_is_at_least_availability(
    samples: list[Sample], downtimes: list[DowntimeSpan], validity: float
) -> None:
    result = figures(samples, downtimes, 0, 100, validity)
    assert result.up + result.down + result.unknown + result.scheduled == pytest.approx(100)
    for value in (result.availability, result.reliability):
        assert value is None or 0.0 <= value <= 1.0
    if result.availability is not None and result.reliability is not None:
        assert result.reliability >= result.availability - 1e-9


@given(sample_lists, st.floats(1, 200))
def test_without_scheduled_downtime_reliability_equals_availability(
    samples: list[Sample], validity: float
) -> None:
    result = figures(samples, [], 0, 100, validity)
    assert result.reliability == result.availability


@given(sample_lists, st.floats(1, 200))
def test_a_period_spent_in_scheduled_downtime_has_undefined_reliability(
    samples: list[Sample], validity: float
) -> None:
    result = figures(samples, [DowntimeSpan(-1, 101, True)], 0, 100, validity)
    assert result.reliability is None
    assert result.availability == 0.0
