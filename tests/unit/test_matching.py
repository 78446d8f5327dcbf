"""The matcher and fair share, as pure state: no sockets, no clock."""

from __future__ import annotations

from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from dirac_like.matching import Matcher, TaskQueue, cores_granted
from dirac_like.model import Requirements
from dirac_like.protocol import PilotResources
from dirac_like.shares import FairShare

SITES = ["LCG.CERN.cern", "LCG.RAL.uk", "LCG.CNAF.it", "DIRAC.Local.org"]
PLATFORMS = ["Linux_x86_64_glibc-2.36", "Linux_aarch64_glibc-2.36"]
TAGS = ["GPU", "SSD", "Big"]
CES = ["ce1.example.org", "ce2.example.org"]


def make_matcher(groups: dict[str, float] | None = None, half_life: float = 3600.0) -> Matcher:
    return Matcher(FairShare(groups or {}, {}, half_life))


def reference_fits(req: Requirements, group: str, pilot: PilotResources) -> bool:
    """Eligibility written out independently of TaskQueue.fits, from the rules in DESIGN.md."""
    checks = [
        not req.sites or pilot.site in req.sites,
        not req.ces or pilot.ce in req.ces,
        pilot.site not in req.banned_sites,
        not req.platforms or pilot.platform in req.platforms,
        req.cores <= pilot.cores,
        req.max_ram_mb == 0 or req.max_ram_mb <= pilot.memory_mb,
        pilot.cpu_time_left == 0 or req.cpu_time <= pilot.cpu_time_left,
        all(tag in pilot.tags for tag in req.tags),
        all(tag in req.tags for tag in pilot.required_tags),
        pilot.owner_group in ("", group),
    ]
    return all(checks)


requirements_strategy = st.builds(
    Requirements,
    sites=st.lists(st.sampled_from(SITES), max_size=2, unique=True).map(lambda s: tuple(sorted(s))),
    banned_sites=st.lists(st.sampled_from(SITES), max_size=1).map(tuple),
    platforms=st.lists(st.sampled_from(PLATFORMS), max_size=1).map(tuple),
    cores=st.integers(1, 8),
    max_ram_mb=st.sampled_from([0, 2000, 8000]),
    cpu_time=st.sampled_from([100, 3600, 86400]),
    tags=st.lists(st.sampled_from(TAGS), max_size=2, unique=True).map(lambda t: tuple(sorted(t))),
    ces=st.lists(st.sampled_from(CES), max_size=1).map(tuple),
)

pilot_strategy = st.builds(
    PilotResources,
    site=st.sampled_from(SITES),
    ce=st.sampled_from(CES),
    platform=st.sampled_from(PLATFORMS),
    cores=st.integers(1, 8),
    memory_mb=st.sampled_from([0, 4000, 16000]),
    cpu_time_left=st.sampled_from([0, 1000, 100000]),
    tags=st.lists(st.sampled_from(TAGS), max_size=3, unique=True),
    required_tags=st.lists(st.sampled_from(TAGS), max_size=1),
    owner_group=st.sampled_from(["", "prod"]),
)

queue_strategy = st.tuples(
    st.sampled_from(["alice", "bob"]),
    st.sampled_from(["prod", "user"]),
    requirements_strategy,
    st.lists(st.integers(0, 10), min_size=0, max_size=5),  # priorities of its jobs
)


@settings(max_examples=300, deadline=None)
@given(st.lists(queue_strategy, max_size=8), st.lists(pilot_strategy, min_size=1, max_size=30))
def test_match_is_eligible_unique_and_complete(queues, pilots) -> None:
    matcher = make_matcher({"prod": 3, "user": 1})
    owner_of: dict[int, tuple[Requirements, str]] = {}
    job_id = 0
    for index, (owner, group, requirements, priorities) in enumerate(queues):
        task_queue = matcher.add_task_queue(TaskQueue(index + 1, owner, group, requirements))
        for priority in priorities:
            job_id += 1
            task_queue.push(job_id, priority)
            owner_of[job_id] = (requirements, group)
    matched: set[int] = set()
    for now, pilot in enumerate(pilots):
        match = matcher.match(pilot, float(now))
        waiting = [j for j in owner_of if j not in matched]
        if match is None:
            # Complete: no waiting job this pilot could have run was left behind.
            assert not any(reference_fits(*owner_of[j], pilot) for j in waiting)
            continue
        assert match.job_id not in matched, "the same job went to two pilots"
        requirements, group = owner_of[match.job_id]
        assert reference_fits(requirements, group, pilot), "an ineligible match"
        matched.add(match.job_id)
        matcher.shares.start(group, match.task_queue.owner, requirements.cores, float(now))


def test_priority_orders_a_users_own_jobs_then_submission_order() -> None:
    matcher = make_matcher()
    low = matcher.add_task_queue(TaskQueue(1, "alice", "user", Requirements(tags=())))
    high = matcher.add_task_queue(TaskQueue(2, "alice", "user", Requirements(cores=1, cpu_time=5)))
    low.push(1, 1)
    high.push(2, 5)
    high.push(3, 5)
    low.push(4, 9)
    pilot = PilotResources(site="LCG.CERN.cern", cores=4)
    order = [matcher.match(pilot, 0.0) for _ in range(4)]
    assert [m.job_id for m in order if m] == [4, 2, 3, 1]


def test_removed_job_is_never_matched() -> None:
    matcher = make_matcher()
    task_queue = matcher.add_task_queue(TaskQueue(1, "alice", "user", Requirements()))
    for job_id in (1, 2, 3):
        task_queue.push(job_id, 1)
    task_queue.discard(1)
    pilot = PilotResources(site="X")
    assert [matcher.match(pilot, 0.0).job_id for _ in range(2)] == [2, 3]  # type: ignore[union-attr]
    assert matcher.match(pilot, 0.0) is None


def test_required_tag_admits_only_jobs_with_that_tag() -> None:
    matcher = make_matcher()
    plain = matcher.add_task_queue(TaskQueue(1, "a", "g", Requirements()))
    gpu = matcher.add_task_queue(TaskQueue(2, "a", "g", Requirements(tags=("GPU",))))
    plain.push(1, 10)
    gpu.push(2, 1)
    pilot = PilotResources(site="X", tags=["GPU"], required_tags=["GPU"])
    assert matcher.match(pilot, 0.0).job_id == 2  # type: ignore[union-attr]
    assert matcher.match(pilot, 0.0) is None


def test_private_pilot_takes_only_its_groups_jobs() -> None:
    matcher = make_matcher()
    matcher.add_task_queue(TaskQueue(1, "a", "user", Requirements())).push(1, 10)
    matcher.add_task_queue(TaskQueue(2, "b", "prod", Requirements())).push(2, 1)
    match = matcher.match(PilotResources(site="X", owner_group="prod"), 0.0)
    assert match is not None and match.job_id == 2


def test_count_eligible_counts_only_what_fits() -> None:
    matcher = make_matcher()
    small = matcher.add_task_queue(TaskQueue(1, "a", "g", Requirements(cores=1)))
    big = matcher.add_task_queue(TaskQueue(2, "a", "g", Requirements(cores=8)))
    elsewhere = matcher.add_task_queue(TaskQueue(3, "a", "g", Requirements(sites=("Y",))))
    for job_id in range(10):
        (small, big, elsewhere)[job_id % 3].push(job_id, 1)
    assert matcher.count_eligible(PilotResources(site="X", cores=4)) == len(small)
    assert matcher.count_eligible(PilotResources(site="X", cores=8)) == len(small) + len(big)


def test_same_identity_gives_the_same_task_queue() -> None:
    matcher = make_matcher()
    first = matcher.add_task_queue(TaskQueue(1, "a", "g", Requirements(tags=("A", "B"))))
    again = matcher.add_task_queue(TaskQueue(7, "a", "g", Requirements(tags=("A", "B"))))
    assert again is first
    assert matcher.task_queues[7] is first


def test_drop_empty_forgets_only_empty_queues() -> None:
    matcher = make_matcher()
    full = matcher.add_task_queue(TaskQueue(1, "a", "g", Requirements()))
    matcher.add_task_queue(TaskQueue(2, "a", "g", Requirements(cores=2)))
    full.push(1, 1)
    assert matcher.drop_empty() == [2]
    assert list(matcher.task_queues) == [1]


# -- fair share ---------------------------------------------------------------------------------


def fill(
    matcher: Matcher, owner: str, group: str, first_id: int, count: int, cores: int = 1
) -> TaskQueue:
    task_queue = matcher.add_task_queue(
        TaskQueue(first_id, owner, group, Requirements(cores=cores, cpu_time=first_id))
    )
    for job_id in range(first_id, first_id + count):
        task_queue.push(job_id, 1)
    return task_queue


def test_realized_shares_within_two_percent_after_2000_equal_matches() -> None:
    shares = {"lhcb_mc": 60.0, "lhcb_user": 25.0, "lhcb_calib": 15.0}
    matcher = make_matcher(shares)
    groups_of = {}
    for index, group in enumerate(shares):
        task_queue = fill(matcher, f"user{index}", group, (index + 1) * 100_000, 5000)
        groups_of[task_queue.task_queue_id] = group
    pilot = PilotResources(site="LCG.CERN.cern", cores=1)
    counts: Counter[str] = Counter()
    for step in range(2000):
        match = matcher.match(pilot, float(step))
        assert match is not None
        group = match.task_queue.group
        counts[group] += 1
        matcher.shares.start(group, match.task_queue.owner, 1, float(step))
    total = sum(shares.values())
    for group, share in shares.items():
        assert abs(counts[group] / 2000 - share / total) < 0.02, (group, counts)


def simulate_slots(
    durations: dict[str, float], shares: dict[str, float], slots: int, horizon: float
) -> dict[str, float]:
    """A pool of single-core slots; each free slot asks for a job, jobs run their duration.
    Returns the core-seconds each group consumed over the second half of the horizon."""
    matcher = make_matcher(shares, half_life=horizon / 4)
    for index, group in enumerate(durations):
        fill(matcher, f"owner-{group}", group, (index + 1) * 1_000_000, 100_000)
    running: list[tuple[float, str, str]] = []  # (end, group, owner)
    consumed: Counter[str] = Counter()
    now, step = 0.0, 1.0
    pilot = PilotResources(site="S", cores=1)
    while now < horizon:
        for end, group, owner in [r for r in running if r[0] <= now]:
            running.remove((end, group, owner))
            matcher.shares.stop(group, owner, 1, now)
        while len(running) < slots:
            match = matcher.match(pilot, now)
            assert match is not None
            group, owner = match.task_queue.group, match.task_queue.owner
            matcher.shares.start(group, owner, 1, now)
            running.append((now + durations[group], group, owner))
        if now >= horizon / 2:
            for _, group, _ in running:
                consumed[group] += step
        now += step
    return consumed


def test_core_time_shares_within_five_percent_when_one_groups_jobs_are_ten_times_longer() -> None:
    shares = {"long": 50.0, "short": 50.0}
    consumed = simulate_slots({"long": 200.0, "short": 20.0}, shares, slots=100, horizon=8000.0)
    total = sum(consumed.values())
    for group in shares:
        assert abs(consumed[group] / total - 0.5) < 0.05, consumed


def test_core_time_follows_unequal_shares_with_unequal_lengths() -> None:
    shares = {"long": 75.0, "short": 25.0}
    consumed = simulate_slots({"long": 300.0, "short": 30.0}, shares, slots=100, horizon=12000.0)
    total = sum(consumed.values())
    assert abs(consumed["long"] / total - 0.75) < 0.05, consumed


def test_users_split_their_groups_share() -> None:
    matcher = Matcher(FairShare({"g": 1.0}, {"g": {"alice": 3.0}}, 3600.0))
    fill(matcher, "alice", "g", 1_000, 500)
    fill(matcher, "bob", "g", 2_000, 500)
    counts: Counter[str] = Counter()
    for step in range(400):
        match = matcher.match(PilotResources(site="S"), float(step))
        assert match is not None
        counts[match.task_queue.owner] += 1
        matcher.shares.start("g", match.task_queue.owner, 1, float(step))
    assert counts == Counter({"alice": 300, "bob": 100})


# --- GridCE and core ranges ---------------------------------------------------------------------


def test_grid_ce_admits_only_pilots_of_those_ces() -> None:
    matcher = make_matcher()
    queue = matcher.add_task_queue(TaskQueue(1, "u", "g", Requirements(ces=("ce1",))))
    queue.push(1, 1)
    assert matcher.match(PilotResources(site="S", ce="ce2"), 0.0) is None
    assert matcher.count_eligible(PilotResources(site="S", ce="ce2")) == 0
    match = matcher.match(PilotResources(site="S", ce="ce1"), 0.0)
    assert match is not None and match.job_id == 1


def test_core_range_grants_what_the_pilot_has_in_granularity_steps() -> None:
    ranged = Requirements(cores=2, max_cores=8, core_step=2)
    assert [cores_granted(ranged, free) for free in (2, 3, 4, 5, 7, 8, 64)] == [2, 2, 4, 4, 6, 8, 8]
    assert cores_granted(Requirements(cores=3), 16) == 3  # no range: exactly its cores
    assert cores_granted(Requirements(cores=1, max_cores=4), 3) == 3


def test_matched_job_carries_its_granted_cores_and_needs_only_its_minimum() -> None:
    matcher = make_matcher()
    queue = matcher.add_task_queue(
        TaskQueue(1, "u", "g", Requirements(cores=2, max_cores=8, core_step=2))
    )
    queue.push(1, 1)
    queue.push(2, 1)
    assert matcher.match(PilotResources(site="S", cores=1), 0.0) is None
    first = matcher.match(PilotResources(site="S", cores=7), 0.0)
    assert first is not None and first.cores == 6
    second = matcher.match(PilotResources(site="S", cores=2), 0.0)
    assert second is not None and second.cores == 2


@given(requirements_strategy, st.integers(1, 8), st.integers(1, 3), st.integers(1, 64))
def test_granted_cores_stay_in_range_steps_and_pilot(
    base: Requirements, extra: int, step: int, free: int
) -> None:
    requirements = Requirements(cores=base.cores, max_cores=base.cores + extra, core_step=step)
    granted = cores_granted(requirements, free)
    assert base.cores <= granted <= base.cores + extra
    assert (granted - base.cores) % step == 0
    if free >= base.cores:
        assert granted <= free
        assert granted + step > min(free, base.cores + extra)  # as many steps as fit
