"""The status policy, probe outcomes and downtime checks (pure)."""

from __future__ import annotations

import pytest

from dirac_like.errors import InvalidArgument
from dirac_like.monitoring import (
    CheckStatus,
    Downtime,
    Outcome,
    PolicyConfig,
    ProbeResult,
    ResourceStatus,
    StatusPolicy,
    TargetKind,
    active_downtime,
    check_new_downtime,
    outcome_of,
    parse_check_status,
)

OK, WARN, CRIT, UNK = (
    CheckStatus.OK,
    CheckStatus.WARNING,
    CheckStatus.CRITICAL,
    CheckStatus.UNKNOWN,
)
ACTIVE, DEGRADED, PROBING, BANNED = (
    ResourceStatus.ACTIVE,
    ResourceStatus.DEGRADED,
    ResourceStatus.PROBING,
    ResourceStatus.BANNED,
)


def outcomes(*statuses: CheckStatus) -> list[Outcome]:
    return [Outcome(float(i), status, "python", "msg") for i, status in enumerate(statuses)]


POLICY = StatusPolicy(PolicyConfig(ban_after=3, recover_after=2))


def test_three_critical_in_a_row_ban_with_the_check_named() -> None:
    decision = POLICY.decide(ACTIVE, outcomes(OK, CRIT, CRIT, CRIT))
    assert decision is not None and decision.status is BANNED
    assert decision.reason.startswith("auto: probe python failed 3 times")


def test_fewer_critical_degrade_but_do_not_ban() -> None:
    decision = POLICY.decide(ACTIVE, outcomes(CRIT, CRIT))
    assert decision is not None and decision.status is DEGRADED


def test_unknown_outcomes_neither_ban_nor_break_a_run() -> None:
    assert POLICY.decide(ACTIVE, outcomes(UNK, UNK, UNK, UNK)) is None
    decision = POLICY.decide(ACTIVE, outcomes(CRIT, UNK, CRIT, UNK, CRIT))
    assert decision is not None and decision.status is BANNED


def test_a_banned_target_probes_then_returns_after_enough_good_outcomes() -> None:
    assert POLICY.decide(BANNED, outcomes(CRIT, CRIT, CRIT)) is None
    probing = POLICY.decide(BANNED, outcomes(CRIT, CRIT, CRIT, OK))
    assert probing is not None and probing.status is PROBING
    back = POLICY.decide(PROBING, outcomes(CRIT, CRIT, CRIT, OK, OK))
    assert back is not None and back.status is ACTIVE


def test_a_probing_target_that_fails_again_stays_probing_until_banned() -> None:
    assert POLICY.decide(PROBING, outcomes(OK, CRIT)) is None
    again = POLICY.decide(PROBING, outcomes(OK, CRIT, CRIT, CRIT))
    assert again is not None and again.status is BANNED


def test_a_warning_degrades_and_an_ok_restores() -> None:
    degraded = POLICY.decide(ACTIVE, outcomes(OK, WARN))
    assert degraded is not None and degraded.status is DEGRADED
    active = POLICY.decide(DEGRADED, outcomes(WARN, OK))
    assert active is not None and active.status is ACTIVE
    lenient = StatusPolicy(PolicyConfig(warning_degrades=False))
    assert lenient.decide(ACTIVE, outcomes(WARN)) is None


def test_no_decision_when_the_status_stays() -> None:
    assert POLICY.decide(ACTIVE, outcomes(OK, OK)) is None


def test_policy_refuses_nonsense_thresholds() -> None:
    with pytest.raises(InvalidArgument, match="ban_after"):
        StatusPolicy(PolicyConfig(ban_after=0))


def test_a_probe_run_is_as_bad_as_its_worst_check() -> None:
    run = [
        ProbeResult("S", TargetKind.SITE, "python", OK, "", 5.0),
        ProbeResult("S", TargetKind.SITE, "scratch", CRIT, "disk full", 6.0),
        ProbeResult("S", TargetKind.SITE, "memory", WARN, "", 6.0),
    ]
    assert outcome_of(run) == Outcome(6.0, CRIT, "scratch", "disk full")


def test_unknown_check_status_is_refused() -> None:
    with pytest.raises(InvalidArgument, match="unknown check status"):
        parse_check_status("FINE")


def downtime(start: float, end: float, target: str = "S", cancelled: float = 0.0) -> Downtime:
    return Downtime(1, target, TargetKind.SITE, start, end, "upgrade", True, 0.0, cancelled)


def test_downtime_with_end_before_start_is_refused() -> None:
    with pytest.raises(InvalidArgument, match="end must be after the start"):
        check_new_downtime(downtime(10, 5), [])


def test_downtime_overlapping_another_of_the_same_target_is_refused() -> None:
    with pytest.raises(InvalidArgument, match="overlaps its downtime 1"):
        check_new_downtime(downtime(5, 15), [downtime(10, 20)])
    check_new_downtime(downtime(5, 15), [downtime(10, 20, target="T")])
    check_new_downtime(downtime(5, 15), [downtime(10, 20, cancelled=1.0)])
    check_new_downtime(downtime(20, 30), [downtime(10, 20)])


def test_active_downtime_is_the_one_in_force_now() -> None:
    downtimes = [downtime(10, 20), downtime(30, 40, cancelled=1.0)]
    assert active_downtime(downtimes, "S", 15) == downtimes[0]
    assert active_downtime(downtimes, "S", 20) is None
    assert active_downtime(downtimes, "S", 35) is None
