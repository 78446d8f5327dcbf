"""The watchdog's decisions, as pure state: samples in, verdicts out, no processes, no clock."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dirac_like.agents.watchdog import (
    Limits,
    Peaks,
    Sample,
    Verdict,
    Watchdog,
    wall_limit_for,
)
from dirac_like.errors import InvalidArgument

STARTED = 1_700_000_000.0
DIMENSIONS = ("memory", "disk", "cpu", "wall", "time_left")


def sample(
    wall: float = 10.0,
    cpu: float = 5.0,
    rss: float = 100.0,
    disk: float = 10.0,
    started: float = STARTED,
) -> Sample:
    return Sample(now=started + wall, started=started, cpu_seconds=cpu, rss_mb=rss, disk_mb=disk)


# --------------------------------------------------------------------------------------------
# the minor statuses, exactly


@pytest.mark.parametrize(
    ("limits", "over", "expected"),
    [
        (Limits(max_rss_mb=2048), sample(rss=2150.4), "Watchdog: memory 2150 MB > MaxRAM 2048 MB"),
        (Limits(cpu_time=3600), sample(cpu=3700.9), "Watchdog: CPU time 3700 s > CPUTime 3600 s"),
        (Limits(wall_time=5400), sample(wall=6000), "Watchdog: wall clock 6000 s > limit 5400 s"),
        (Limits(max_disk_mb=5000), sample(disk=5200), "Watchdog: disk 5200 MB > limit 5000 MB"),
        (
            Limits(pilot_deadline=STARTED + 50),
            sample(wall=50),
            "Watchdog: pilot time left exhausted",
        ),
    ],
)
def test_minor_status_wording(limits: Limits, over: Sample, expected: str) -> None:
    verdict = Watchdog(limits).check(over)
    assert verdict is not None
    assert verdict.minor_status == expected


def test_a_value_just_over_an_integer_limit_does_not_read_as_equal() -> None:
    verdict = Watchdog(Limits(max_rss_mb=2048)).check(sample(rss=2048.25))
    assert verdict == Verdict("memory", "Watchdog: memory 2048.25 MB > MaxRAM 2048 MB")


def test_a_fractional_wall_limit_is_shown_as_it_is() -> None:
    limits = Limits.for_job(cpu_time=3601)  # wall limit 6001.5
    verdict = Watchdog(limits).check(sample(wall=7000, cpu=1))
    assert verdict is not None
    assert verdict.minor_status == "Watchdog: wall clock 7000 s > limit 6001.5 s"


def test_values_at_their_limit_are_within_it() -> None:
    limits = Limits(cpu_time=100, wall_time=200, max_rss_mb=300, max_disk_mb=400)
    assert Watchdog(limits).check(sample(cpu=100, wall=200, rss=300, disk=400)) is None


def test_memory_wins_when_several_limits_are_over() -> None:
    limits = Limits(
        cpu_time=10, wall_time=10, max_rss_mb=10, max_disk_mb=10, pilot_deadline=STARTED + 1
    )
    verdict = Watchdog(limits).check(sample(cpu=99, wall=99, rss=99, disk=99))
    assert verdict is not None and verdict.reason == "memory"


def test_zero_means_no_limit() -> None:
    huge = sample(wall=1e9, cpu=1e9, rss=1e9, disk=1e9)
    assert Watchdog(Limits()).check(huge) is None


# --------------------------------------------------------------------------------------------
# the wall limit derived from CPUTime, and limits validation


def test_wall_limit_is_one_and_a_half_cpu_time_plus_ten_minutes() -> None:
    assert wall_limit_for(3600) == 3600 * 1.5 + 600
    assert wall_limit_for(3600, cores=8) == wall_limit_for(3600)  # never tighter for more cores
    assert wall_limit_for(0) == 0  # no CPU limit: no wall limit either


def test_limits_for_job_derives_the_wall_limit() -> None:
    limits = Limits.for_job(cpu_time=3600, max_ram_mb=2048, pilot_deadline=STARTED + 10)
    assert limits == Limits(
        cpu_time=3600, wall_time=6000, max_rss_mb=2048, pilot_deadline=STARTED + 10
    )


@pytest.mark.parametrize(
    "field", ["cpu_time", "wall_time", "max_rss_mb", "max_disk_mb", "pilot_deadline"]
)
def test_negative_limits_are_refused(field: str) -> None:
    with pytest.raises(InvalidArgument, match=field):
        Limits(**{field: -1})


def test_bad_wall_limit_arguments_are_refused() -> None:
    with pytest.raises(InvalidArgument):
        wall_limit_for(-5)
    with pytest.raises(InvalidArgument):
        wall_limit_for(100, cores=0)


# --------------------------------------------------------------------------------------------
# peaks


def test_peaks_keep_the_highest_values_seen() -> None:
    watchdog = Watchdog(Limits())
    assert watchdog.peaks == Peaks()
    watchdog.check(sample(wall=10, cpu=5, rss=500, disk=20))
    watchdog.check(sample(wall=20, cpu=4, rss=300, disk=90))  # a child exited: CPU dropped
    assert watchdog.peaks == Peaks(cpu_seconds=5, rss_mb=500, disk_mb=90, wall_seconds=20)


def test_peaks_include_the_sample_that_was_over() -> None:
    watchdog = Watchdog(Limits(max_rss_mb=100))
    assert watchdog.check(sample(rss=150)) is not None
    assert watchdog.peaks.rss_mb == 150


# --------------------------------------------------------------------------------------------
# properties: under every limit, never a verdict; over any one, always one


limit_values = st.integers(min_value=0, max_value=10**7)


@st.composite
def limits_and_sample_under(draw: st.DrawFn) -> tuple[Limits, Sample]:
    """Limits (each maybe 0 = none) and a sample with every value at most its limit."""
    cpu_time, wall_time, rss, disk = (draw(limit_values) for _ in range(4))
    started = float(draw(st.integers(0, 2 * 10**9)))

    def under(limit: int) -> float:
        return float(draw(st.integers(0, limit if limit else 10**9)))

    wall = under(wall_time)
    has_deadline = draw(st.booleans())
    deadline = started + wall + draw(st.integers(1, 10**6)) if has_deadline else 0.0
    limits = Limits(
        cpu_time=cpu_time,
        wall_time=wall_time,
        max_rss_mb=rss,
        max_disk_mb=disk,
        pilot_deadline=deadline,
    )
    return limits, Sample(
        now=started + wall,
        started=started,
        cpu_seconds=under(cpu_time),
        rss_mb=under(rss),
        disk_mb=under(disk),
    )


@given(limits_and_sample_under())
def test_never_a_verdict_when_every_value_is_under_its_limit(case: tuple[Limits, Sample]) -> None:
    limits, within = case
    assert Watchdog(limits).check(within) is None


def push_over(limits: Limits, within: Sample, dimension: str, excess: int) -> tuple[Limits, Sample]:
    """Make ``dimension`` exceed its limit by ``excess`` (setting a limit if there was none)."""
    if dimension == "memory":
        limit = limits.max_rss_mb or within.rss_mb or 1
        return replace(limits, max_rss_mb=limit), replace(within, rss_mb=limit + excess)
    if dimension == "disk":
        limit = limits.max_disk_mb or within.disk_mb or 1
        return replace(limits, max_disk_mb=limit), replace(within, disk_mb=limit + excess)
    if dimension == "cpu":
        limit = limits.cpu_time or within.cpu_seconds or 1
        return replace(limits, cpu_time=limit), replace(within, cpu_seconds=limit + excess)
    if dimension == "wall":
        limit = limits.wall_time or within.wall_seconds or 1
        over = replace(within, now=within.started + limit + excess)
        return replace(limits, wall_time=limit), over
    now = max(within.now, 1.0)  # at the deadline itself time left is exhausted too
    return replace(limits, pilot_deadline=max(now - excess + 1, 1.0)), replace(within, now=now)


@given(limits_and_sample_under(), st.sampled_from(DIMENSIONS), st.integers(1, 10**6))
def test_always_a_verdict_when_one_value_is_over(
    case: tuple[Limits, Sample], dimension: str, excess: int
) -> None:
    limits, over = push_over(*case, dimension, excess)
    verdict = Watchdog(limits).check(over)
    assert verdict is not None
    assert verdict.reason == dimension  # the others are still within their limits
    assert verdict.minor_status.startswith("Watchdog: ")


@given(
    limits_and_sample_under(),
    st.lists(st.sampled_from(DIMENSIONS), min_size=1, unique=True),
    st.integers(1, 1000),
)
def test_always_a_verdict_when_several_values_are_over(
    case: tuple[Limits, Sample], dimensions: list[str], excess: int
) -> None:
    limits, over = case
    for dimension in dimensions:
        limits, over = push_over(limits, over, dimension, excess)
    verdict = Watchdog(limits).check(over)
    assert verdict is not None
    assert verdict.reason in dimensions


def test_cpu_time_is_per_core_as_the_matcher_reads_it() -> None:
    limits = Limits.for_job(cpu_time=3600, cores=4)
    assert limits.cpu_time == 4 * 3600
    assert limits.wall_time == wall_limit_for(3600)
