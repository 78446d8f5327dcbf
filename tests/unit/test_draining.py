"""Holds (draining a multi-core pilot toward a bigger job), as pure state: dirac_like/draining.py
and Matcher.match_or_hold."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from dirac_like.config import DrainConfig
from dirac_like.draining import PILOT_MEMORY, Hold, Holds
from dirac_like.matching import Match, Matcher, TaskQueue
from dirac_like.model import Requirements
from dirac_like.protocol import CoreHold, Op, PilotResources, RequestJobReply, parse_reply, to_wire
from dirac_like.shares import FairShare

SITE = "LCG.CERN.cern"
HOLD = 600.0


def setup(holds: DrainConfig | None = None) -> tuple[Matcher, Holds]:
    matcher = Matcher(FairShare({"multi": 70, "single": 30}, {}, 86400.0))
    big = matcher.add_task_queue(TaskQueue(1, "ann", "multi", Requirements(cores=4)))
    small = matcher.add_task_queue(TaskQueue(2, "bob", "single", Requirements(cores=1)))
    for job_id in range(1, 101):
        big.push(job_id, 0)
        small.push(1000 + job_id, 0)
    return matcher, Holds(holds or DrainConfig(HOLD, 0.5))


def pilot(free: int, total: int = 4, memory_mb: int = 0) -> PilotResources:
    return PilotResources(site=SITE, cores=free, total_cores=total, memory_mb=memory_mb)


def ask(
    matcher: Matcher, holds: Holds, pilot_id: str, resources: PilotResources, now: float
) -> Match | Hold | None:
    holds.see(pilot_id, resources.site, resources.total_cores, now)
    found = matcher.match_or_hold(pilot_id, resources, holds, now)
    holds.validate()
    return found


def fill_with_single(matcher: Matcher, cores: int, now: float) -> None:
    """The single-core group runs ``cores`` cores (above its 30% share)."""
    for _ in range(cores):
        matcher.shares.start("single", "bob", 1, now)


def test_owed_group_with_only_bigger_jobs_makes_the_pilot_hold() -> None:
    matcher, holds = setup()
    fill_with_single(matcher, 20, 0.0)
    for n in range(4):  # other pilots of the site, so its idle bound allows a hold
        holds.see(f"other{n}", SITE, 4, 0.0)
    found = ask(matcher, holds, "p1", pilot(free=1), 0.0)
    assert isinstance(found, Hold)
    assert (found.group, found.cores, found.expires) == ("multi", 4, HOLD)


def test_held_pilot_gets_no_small_job_until_enough_cores_are_free() -> None:
    matcher, holds = setup()
    fill_with_single(matcher, 20, 0.0)
    for n in range(4):
        holds.see(f"other{n}", SITE, 4, 0.0)
    assert isinstance(ask(matcher, holds, "p1", pilot(free=1), 0.0), Hold)
    assert isinstance(ask(matcher, holds, "p1", pilot(free=3), 10.0), Hold)
    found = ask(matcher, holds, "p1", pilot(free=4), 20.0)
    assert isinstance(found, Match) and found.task_queue.group == "multi"
    assert "p1" not in holds.holds


def test_pilot_too_small_for_the_big_job_never_holds() -> None:
    matcher, holds = setup()
    fill_with_single(matcher, 20, 0.0)
    found = ask(matcher, holds, "p1", pilot(free=1, total=2), 0.0)
    assert isinstance(found, Match) and found.task_queue.group == "single"
    assert not holds.holds


def test_pilot_without_its_total_cores_never_holds() -> None:
    matcher, holds = setup()
    fill_with_single(matcher, 20, 0.0)
    found = ask(matcher, holds, "p1", PilotResources(site=SITE, cores=1), 0.0)
    assert isinstance(found, Match) and found.task_queue.group == "single"


def test_no_hold_when_the_big_group_is_not_owed_its_cores() -> None:
    matcher, holds = setup()
    matcher.shares.start("multi", "ann", 28, 0.0)
    matcher.shares.start("single", "bob", 12, 0.0)  # 70/30 exactly
    found = ask(matcher, holds, "p1", pilot(free=1), 0.0)
    assert isinstance(found, Match)
    assert not holds.holds


def test_hold_expires_and_the_pilot_cools_down() -> None:
    matcher, holds = setup()
    fill_with_single(matcher, 20, 0.0)
    for n in range(4):
        holds.see(f"other{n}", SITE, 4, 0.0)
    assert isinstance(ask(matcher, holds, "p1", pilot(free=1), 0.0), Hold)
    found = ask(matcher, holds, "p1", pilot(free=2), HOLD)
    assert isinstance(found, Match) and found.task_queue.group == "single"
    assert holds.cooling["p1"] == 2 * HOLD
    assert isinstance(ask(matcher, holds, "p1", pilot(free=1), 2 * HOLD), Hold)


def test_site_idle_bound_limits_the_holds() -> None:
    matcher, holds = setup(DrainConfig(HOLD, 0.1))
    fill_with_single(matcher, 200, 0.0)
    for n in range(20):  # with the 10 asking: 120 cores, at most 12 held idle, a hold counts 3
        holds.see(f"other{n}", SITE, 4, 0.0)
    for n in range(10):
        holds.see(f"p{n}", SITE, 4, 0.0)
    found = [ask(matcher, holds, f"p{n}", pilot(free=1), 0.0) for n in range(10)]
    assert sum(isinstance(f, Hold) for f in found) == 4


def test_holds_stop_once_they_drain_what_the_group_is_owed() -> None:
    matcher, holds = setup(DrainConfig(HOLD, 1.0))
    fill_with_single(matcher, 10, 0.0)  # multi owed 7 cores: one 4-core hold, not two
    found = [ask(matcher, holds, f"p{n}", pilot(free=1), 0.0) for n in range(3)]
    assert [isinstance(f, Hold) for f in found] == [True, False, False]


def test_hold_ends_when_its_group_has_no_such_job_left() -> None:
    matcher, holds = setup()
    fill_with_single(matcher, 20, 0.0)
    for n in range(4):
        holds.see(f"other{n}", SITE, 4, 0.0)
    assert isinstance(ask(matcher, holds, "p1", pilot(free=1), 0.0), Hold)
    big = matcher.task_queues[1]
    while len(big):
        big.pop()
    found = ask(matcher, holds, "p1", pilot(free=1), 1.0)
    assert isinstance(found, Match) and found.task_queue.group == "single"


def test_disabled_draining_never_holds() -> None:
    matcher, holds = setup(DrainConfig(0.0, 1.0))
    fill_with_single(matcher, 20, 0.0)
    found = ask(matcher, holds, "p1", pilot(free=1), 0.0)
    assert isinstance(found, Match)


def test_silent_pilots_leave_their_site_count() -> None:
    holds = Holds(DrainConfig())
    holds.see("old", SITE, 8, 0.0)
    holds.see("new", SITE, 4, PILOT_MEMORY + 1)
    assert holds.site_cores(SITE) == 4


# -- properties --------------------------------------------------------------------------------

request_strategy = st.tuples(
    st.integers(0, 5),  # which pilot
    st.integers(0, 8),  # free cores
    st.floats(0, 400),  # seconds since the last request
)


@settings(max_examples=100, deadline=None)
@given(
    totals=st.lists(st.sampled_from([1, 2, 4, 8]), min_size=6, max_size=6),
    big_cores=st.sampled_from([2, 4, 8]),
    single_running=st.integers(0, 40),
    requests=st.lists(request_strategy, min_size=1, max_size=60),
)
def test_holds_are_for_runnable_jobs_and_always_end(
    totals: list[int], big_cores: int, single_running: int, requests: list[tuple[int, int, float]]
) -> None:
    """No pilot holds cores for a job it can never run; every hold ends by its expiry, and
    a pilot whose hold expired is not held again before its cool-down is over."""
    matcher = Matcher(FairShare({"multi": 70, "single": 30}, {}, 86400.0))
    big = matcher.add_task_queue(TaskQueue(1, "ann", "multi", Requirements(cores=big_cores)))
    small = matcher.add_task_queue(TaskQueue(2, "bob", "single", Requirements(cores=1)))
    for job_id in range(1, 200):
        big.push(job_id, 0)
        small.push(1000 + job_id, 0)
    fill_with_single(matcher, single_running, 0.0)
    holds = Holds(DrainConfig(HOLD, 0.5))
    now, cool_until = 0.0, {}
    for which, free, step in requests:
        now += step
        pilot_id, total = f"p{which}", totals[which]
        before = holds.holds.get(pilot_id)
        if before is not None and now >= before.expires:  # it expires now: cool-down follows
            cool_until[pilot_id] = before.expires + HOLD
        found = ask(matcher, holds, pilot_id, pilot(min(free, total) or 1, total), now)
        for hold in holds.holds.values():
            assert hold.cores <= totals[int(hold.pilot_id[1:])]  # never for a job too big
            assert hold.expires - hold.started <= HOLD + 1e-6
            assert now < hold.expires  # a hold in force has not expired
        if isinstance(found, Hold) and found is not before:
            assert found.cores == big_cores <= total
            assert now >= cool_until.get(pilot_id, 0.0)
    # every hold ends: asking after its expiry never gets it back
    for pilot_id, hold in list(holds.holds.items()):
        total = totals[int(pilot_id[1:])]
        after = ask(matcher, holds, pilot_id, pilot(1, total), hold.expires)
        assert not isinstance(after, Hold)


# -- the wire ----------------------------------------------------------------------------------


def test_reply_without_a_hold_reads_as_before_draining() -> None:
    """An old pilot's checker refuses unknown keys: a reply with no hold must not carry one."""
    reply = RequestJobReply(job=None, reason="no waiting job fits this pilot", commands=[])
    assert to_wire(reply) == {
        "job": None,
        "reason": "no waiting job fits this pilot",
        "commands": [],
    }
    assert "total_cores" not in to_wire(PilotResources(site=SITE))


def test_reply_with_a_hold_round_trips() -> None:
    reply = RequestJobReply(
        job=None, reason="hold", commands=[], hold=CoreHold(cores=4, seconds=12.5, group="multi")
    )
    assert parse_reply(Op.REQUEST_JOB, to_wire(reply)) == reply


def test_drained_cores_go_to_a_job_as_big_as_held_for() -> None:
    matcher, holds = setup()
    small_multi = matcher.add_task_queue(TaskQueue(3, "ann", "multi", Requirements(cores=1)))
    fill_with_single(matcher, 20, 0.0)
    for n in range(4):
        holds.see(f"other{n}", SITE, 4, 0.0)
    assert isinstance(ask(matcher, holds, "p1", pilot(free=1), 0.0), Hold)
    small_multi.push(5000, 9)  # a 1-core job of the same group, higher priority, arrives
    found = ask(matcher, holds, "p1", pilot(free=4), 5.0)
    assert isinstance(found, Match) and found.cores == 4


def test_a_stopped_pilot_leaves_its_site_and_its_hold() -> None:
    matcher, holds = setup()
    fill_with_single(matcher, 20, 0.0)
    for n in range(4):
        holds.see(f"other{n}", SITE, 4, 0.0)
    assert isinstance(ask(matcher, holds, "p1", pilot(free=1), 0.0), Hold)
    holds.forget("p1", 1.0)
    holds.validate()
    assert "p1" not in holds.holds and holds.site_cores(SITE) == 16
    assert holds.pending("multi") == 0
