"""Director sizing and CE back-off, as pure state: no fabric, no clock."""

from __future__ import annotations

import dataclasses
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dirac_like.agents.director_sizing import (
    CEDemand,
    CEHealth,
    CycleLimits,
    PilotOutcome,
    plan,
)
from dirac_like.sites import CEConfig, SiteConfig

NOW = 1_000_000.0
OK, FAILED, REFUSED = PilotOutcome.PILOT_OK, PilotOutcome.PILOT_FAILED, PilotOutcome.SUBMIT_FAILED


def demand(
    name: str = "ce",
    eligible: int = 10,
    queued: int = 0,
    running: int = 0,
    max_queued: int = 100,
    max_total: int = 100,
    backoff_until: float = 0.0,
) -> CEDemand:
    return CEDemand(name, eligible, queued, running, max_queued, max_total, backoff_until)


def limits(cap: int = 1000) -> CycleLimits:
    return CycleLimits(max_pilots_per_cycle=cap)


demand_strategy = st.builds(
    CEDemand,
    name=st.just(""),  # replaced by a unique name in ces_strategy
    eligible_slots=st.integers(0, 60),
    queued=st.integers(0, 30),
    running=st.integers(0, 60),
    max_queued=st.integers(0, 30),
    max_total=st.integers(0, 80),
    backoff_until=st.sampled_from([0.0, NOW - 1.0, NOW, NOW + 1.0]),
)
ces_strategy = st.lists(demand_strategy, max_size=6).map(
    lambda found: [dataclasses.replace(ce, name=f"ce{i}") for i, ce in enumerate(found)]
)


# -- plan: properties --------------------------------------------------------------------------


@settings(max_examples=400)
@given(ces=ces_strategy, cap=st.integers(0, 50))
def test_plan_respects_every_limit(ces: list[CEDemand], cap: int) -> None:
    result = plan(ces, limits(cap), NOW)
    assert set(result) == {ce.name for ce in ces}
    for ce in ces:
        n = result[ce.name]
        assert n >= 0
        assert n <= max(ce.eligible_slots - ce.queued, 0)
        assert n <= max(ce.max_queued - ce.queued, 0)
        assert n <= max(ce.max_total - ce.queued - ce.running, 0)
        if ce.backoff_until > NOW:
            assert n == 0
    assert sum(result.values()) <= cap


@settings(max_examples=400)
@given(ces=ces_strategy, cap=st.integers(0, 50))
def test_plan_shares_the_cap_fairly_and_uses_it(ces: list[CEDemand], cap: int) -> None:
    result = plan(ces, limits(cap), NOW)
    wanted = {ce.name: ce.wanted(NOW) for ce in ces}
    # work conserving: the cap is used up unless every CE got what it wanted
    assert sum(result.values()) == min(cap, sum(wanted.values()))
    # max-min fair: a CE gets two more than another only if the other wanted no more
    for a in ces:
        for b in ces:
            if result[a.name] >= result[b.name] + 2:
                assert result[b.name] == wanted[b.name]


@given(ces=ces_strategy, cap=st.integers(0, 50), seed=st.randoms())
def test_plan_does_not_depend_on_input_order(
    ces: list[CEDemand], cap: int, seed: random.Random
) -> None:
    shuffled = list(ces)
    seed.shuffle(shuffled)
    assert plan(shuffled, limits(cap), NOW) == plan(ces, limits(cap), NOW)


@given(ces=ces_strategy, cap=st.integers(0, 50))
def test_no_work_no_pilots(ces: list[CEDemand], cap: int) -> None:
    idle = [CEDemand(ce.name, 0, ce.queued, ce.running, ce.max_queued, ce.max_total) for ce in ces]
    assert set(plan(idle, limits(cap), NOW).values()) <= {0}


# -- plan: examples ----------------------------------------------------------------------------


def test_queued_pilots_cover_waiting_work() -> None:
    assert plan([demand(eligible=5, queued=3)], limits(), NOW) == {"ce": 2}
    assert plan([demand(eligible=2, queued=3)], limits(), NOW) == {"ce": 0}


@pytest.mark.parametrize(
    ("ce", "expected"),
    [
        (demand(eligible=50, queued=2, max_queued=5), 3),
        (demand(eligible=50, queued=2, running=7, max_total=10), 1),
        (demand(eligible=50, running=10, max_total=10), 0),
        (demand(eligible=50, max_queued=0), 0),
    ],
)
def test_each_ce_limit_caps(ce: CEDemand, expected: int) -> None:
    assert plan([ce], limits(), NOW) == {"ce": expected}


def test_backed_off_ce_gets_nothing_until_its_time() -> None:
    ce = demand(backoff_until=NOW + 30)
    assert plan([ce], limits(), NOW) == {"ce": 0}
    assert plan([ce], limits(), NOW + 30) == {"ce": 10}


def test_cap_is_dealt_one_per_ce_in_turn() -> None:
    ces = [demand("a", eligible=10), demand("b", eligible=2), demand("c", eligible=10)]
    assert plan(ces, limits(7), NOW) == {"a": 3, "b": 2, "c": 2}
    assert plan(ces, limits(4), NOW) == {"a": 2, "b": 1, "c": 1}


def test_leftover_pilot_goes_round_the_ces_from_cycle_to_cycle() -> None:
    queued = {"a": 0, "b": 0, "c": 0}
    for _ in range(3):
        ces = [demand(name, eligible=20, queued=n) for name, n in queued.items()]
        for name, n in plan(ces, limits(1), NOW).items():
            queued[name] += n
    assert queued == {"a": 1, "b": 1, "c": 1}


def test_demand_from_site_config() -> None:
    ce = CEConfig("ce1", "local", 4, max_queued=3, max_total=5)
    site = SiteConfig("DIRAC.Test.org", (ce,), max_pilots_per_cycle=2)
    assert plan(
        [CEDemand.for_ce(ce, 10, queued=1, running=1)], CycleLimits.for_site(site), NOW
    ) == {"ce1": 2}


# -- CE health ---------------------------------------------------------------------------------


def health(threshold: int = 3, backoff: float = 60.0, cap: float = 1000.0) -> CEHealth:
    return CEHealth(threshold, backoff, cap)


def test_backs_off_after_threshold_consecutive_failures() -> None:
    ce = health()
    assert ce.record(FAILED, NOW) is None
    assert ce.record(REFUSED, NOW + 1) is None
    assert not ce.backed_off(NOW + 2)
    assert ce.record(FAILED, NOW + 2) == 60.0
    assert ce.backed_off(NOW + 61) and not ce.backed_off(NOW + 62)


def test_success_in_between_breaks_the_run() -> None:
    ce = health()
    for outcome in (FAILED, FAILED, OK, FAILED, FAILED):
        assert ce.record(outcome, NOW) is None
    assert not ce.backed_off(NOW)


def test_backoff_doubles_on_repeat_up_to_the_cap() -> None:
    ce = health(threshold=2, backoff=100.0, cap=500.0)
    now = NOW
    lengths = []
    ce.record(FAILED, now)
    for _ in range(5):
        length = ce.record(FAILED, now)  # the first failure after each back-off ends
        assert length is not None
        lengths.append(length)
        now = ce.backoff_until
    assert lengths == [100.0, 200.0, 400.0, 500.0, 500.0]


def test_failures_during_a_backoff_do_not_extend_it() -> None:
    ce = health(threshold=1, backoff=60.0)
    assert ce.record(FAILED, NOW) == 60.0
    assert ce.record(FAILED, NOW + 10) is None
    assert ce.backoff_until == NOW + 60.0


def test_success_resets_the_doubling_but_not_a_running_backoff() -> None:
    ce = health(threshold=2, backoff=10.0)
    ce.record(FAILED, NOW)
    ce.record(FAILED, NOW)
    assert ce.record(FAILED, NOW + 10) == 20.0
    ce.record(OK, NOW + 11)
    assert ce.backed_off(NOW + 11)  # runs its course
    assert ce.record(FAILED, NOW + 40) is None  # a fresh run of failures is needed
    assert ce.record(FAILED, NOW + 41) == 10.0  # at the first length again


def test_health_from_site_config() -> None:
    site = SiteConfig("S", failure_threshold=1, backoff_seconds=5.0, max_backoff_seconds=7.0)
    ce = CEHealth.for_site(site)
    assert ce.record(REFUSED, NOW) == 5.0


def test_bad_health_settings() -> None:
    with pytest.raises(ValueError):
        CEHealth(0, 10.0, 100.0)
    with pytest.raises(ValueError):
        CEHealth(1, 10.0, 5.0)


@settings(max_examples=300)
@given(
    threshold=st.integers(1, 4),
    outcomes=st.lists(
        st.tuples(st.sampled_from(list(PilotOutcome)), st.floats(0.0, 200.0)), max_size=60
    ),
)
def test_health_against_a_reference(
    threshold: int, outcomes: list[tuple[PilotOutcome, float]]
) -> None:
    """Back-offs start only after `threshold` failures in a row, never while one runs, and their
    lengths go 50, 100, 200, 400, 400 ... between two successes."""
    ce = health(threshold=threshold, backoff=50.0, cap=400.0)
    now, run, lengths_since_success = NOW, 0, 0
    for outcome, step in outcomes:
        now += step
        was_backed_off = ce.backed_off(now)
        length = ce.record(outcome, now)
        if outcome is OK:
            run, lengths_since_success = 0, 0
            assert length is None
            continue
        run += 1
        starts = run >= threshold and not was_backed_off
        assert (length is not None) == starts
        if length is not None:
            assert length == min(50.0 * 2**lengths_since_success, 400.0)
            assert ce.backoff_until == now + length
            lengths_since_success += 1
