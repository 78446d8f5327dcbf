"""``job why``: a table of crafted grids and jobs, each with the reason the service must give.

Each case builds a grid through the service's own handlers (directors sizing their CEs, pilots
asking for work, bans, drains, limits, other users' jobs), submits the job in question, and asks
``why``. The explanation comes from the matcher's predicates; these cases pin down the verdict,
the one-line reason and the per-requirement counts (as HTCondor's -better-analyze gives them).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from test_central_state import HELLO, Grid

from dirac_like.errors import JobNotFound
from dirac_like.matching import REQUIREMENT_CHECKS, STATIC_CHECKS, TaskQueue
from dirac_like.model import Requirements
from dirac_like.protocol import Op, PilotResources

CERN, RAL = "LCG.CERN.cern", "LCG.RAL.uk"
BIG_CE = {
    "site": CERN,
    "ce": "ce-big",
    "cores": 8,
    "memory_mb": 32000,
    "cpu_time_left": 172800,
    "tags": ["SSD"],
}
SMALL_CE = {"site": RAL, "ce": "ce-small", "cores": 4, "memory_mb": 8000, "cpu_time_left": 86400}


def sized(*ces: dict[str, Any]) -> Callable[[Grid], None]:
    """Directors size pilots for these CEs (the CEs become known)."""

    def step(grid: Grid) -> None:
        for ce in ces:
            grid.call(Op.ELIGIBLE, resources=ce)

    return step


def pilot(pilot_id: str, **resources: Any) -> Callable[[Grid], None]:
    return lambda grid: grid.pilot(pilot_id, **{**BIG_CE, **resources})


def call(op: str, **args: Any) -> Callable[[Grid], None]:
    return lambda grid: grid.call(op, **args)


def later(seconds: float) -> Callable[[Grid], None]:
    return lambda grid: grid.advance(seconds)


def submitted(jdl: str, owner: str = "alice", group: str = "") -> Callable[[Grid], None]:
    return lambda grid: grid.submit(jdl, owner=owner, group=group) and None


def running_at_cern(grid: Grid) -> None:
    """Another user's job matched at CERN (it counts against CERN's limit)."""
    grid.submit(HELLO, owner="bob")
    grid.pilot("p-run", **BIG_CE)


@dataclass
class Case:
    name: str
    grid: list[Callable[[Grid], None]]
    jdl: str
    verdict: str
    reason: str  # a part of the one-line reason
    counts: dict[str, int] = field(default_factory=dict)  # expected ce_rejections
    after: list[Callable[[Grid, int], None]] = field(default_factory=list)


def rescheduled_by_its_pilot(grid: Grid, job_id: int) -> None:
    match = grid.pilot("p-hold", **BIG_CE)
    assert match["job_id"] == job_id
    grid.report(match, "Rescheduled", pilot_id="p-hold")


def running(grid: Grid, job_id: int) -> None:
    match = grid.pilot("p-runs", **BIG_CE)
    grid.report(match, "Running", pilot_id="p-runs")


CASES = [
    Case("nothing known yet", [], HELLO, "unknown-grid", "no CE and no pilot is known yet"),
    Case(
        "more cores than any CE",
        [sized(BIG_CE, SMALL_CE)],
        HELLO + " NumberOfProcessors = 64;",
        "never",
        "NumberOfProcessors 64 > the largest CE's 8",
        {"NumberOfProcessors": 2},
    ),
    Case(
        "a tag no CE offers",
        [sized(BIG_CE, SMALL_CE)],
        HELLO + ' Tags = {"GPU"};',
        "never",
        "Tags GPU: no CE offers it",
        {"Tags": 2},
    ),
    Case(
        "more CPU time than any CE",
        [sized(BIG_CE, SMALL_CE)],
        HELLO + " CPUTime = 400000;",
        "never",
        "CPUTime 400000 > every CE's max 172800",
        {"CPUTime": 2},
    ),
    Case(
        "a site that does not exist",
        [sized(BIG_CE)],
        HELLO + ' Site = "LCG.Nowhere.org";',
        "never",
        "Site LCG.Nowhere.org: no such site",
        {"Site": 1},
    ),
    Case(
        "more memory than any CE",
        [sized(SMALL_CE)],
        HELLO + " MaxRAM = 16000;",
        "never",
        "MaxRAM 16000 MB > the largest CE's 8000 MB",
        {"MaxRAM": 1},
    ),
    Case(
        "the only capable site is banned",
        [sized(BIG_CE, SMALL_CE), pilot("p1"), call(Op.BAN_SITE, site=CERN, reason="disk full")],
        HELLO + " NumberOfProcessors = 8;",
        "sites",
        f"{CERN} is banned (disk full)",
        {"NumberOfProcessors": 1},
    ),
    Case(
        "the only capable site is in a downtime",
        [
            sized(BIG_CE),
            pilot("p1"),
            call(
                Op.DOWNTIME_ADD, target=CERN, kind="site", start=0.0, end=1e12, reason="new cooling"
            ),
        ],
        HELLO,
        "sites",
        f"site {CERN} is in scheduled downtime 1: new cooling",
    ),
    Case(
        "the only capable site drains",
        [sized(BIG_CE), pilot("p1"), call(Op.SITE_DRAIN, site=CERN)],
        HELLO,
        "sites",
        f"{CERN} is draining",
    ),
    Case(
        "the only capable site is at its limit",
        [sized(BIG_CE), call(Op.SITE_LIMIT, site=CERN, limit=1), running_at_cern],
        HELLO,
        "sites",
        f"{CERN} is at its limit of 1 running jobs",
    ),
    Case(
        "no pilot ever came to the capable site",
        [sized(BIG_CE)],
        HELLO,
        "sites",
        f"{CERN} has had no pilot yet",
    ),
    Case(
        "the last pilot came long ago",
        [sized(BIG_CE), pilot("p1"), later(7200)],
        HELLO,
        "sites",
        f"{CERN} has had no pilot for 2.0 h",
    ),
    Case(
        "pilots came but none had the cores free",
        [sized(BIG_CE), pilot("p1", cores=1), pilot("p2", cores=2)],
        HELLO + " NumberOfProcessors = 4;",
        "no-pilots",
        f"no pilot that fits it came lately to {CERN}",
    ),
    Case(
        "it lost to a group served first",
        [
            sized(BIG_CE),
            pilot("p1"),
            submitted(HELLO, owner="bob", group="atlas"),
            submitted(HELLO, owner="bob", group="atlas"),
        ],
        HELLO,
        "lost",
        "2 jobs ahead of it",
    ),
    Case(
        "first in line while the pilots that fit are busy",
        [
            sized(BIG_CE),
            pilot("p1"),
            submitted(HELLO, owner="bob", group="atlas"),
            lambda grid: grid.pilot("p2", **BIG_CE) and None,
        ],  # atlas's job: matched, queue empty
        HELLO,
        "lost",
        "it is first in line",
    ),
    Case(
        "held back after its pilot handed it back",
        [sized(BIG_CE)],
        HELLO,
        "held",
        "back to Waiting in 10 s",
        after=[rescheduled_by_its_pilot],
    ),
    Case(
        "running, not waiting",
        [sized(BIG_CE)],
        HELLO,
        "not-waiting",
        "the job is Running, not waiting",
        after=[running],
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_why_gives_the_matchers_reason(case: Case) -> None:
    grid = Grid()
    for step in case.grid:
        step(grid)
    [job_id] = grid.submit(case.jdl, owner="alice", group="physics")
    for step_after in case.after:
        step_after(grid, job_id)

    [answer] = grid.call(Op.WHY, job_ids=[job_id])

    assert (answer["verdict"], answer["job_id"]) == (case.verdict, job_id), answer
    assert case.reason in answer["reason"], answer
    if case.counts:
        assert answer["ce_rejections"] == case.counts
    grid.state.validate()


def test_a_never_runnable_job_says_so_at_submission() -> None:
    grid = Grid()
    sized(BIG_CE)(grid)
    reply = grid.call(
        Op.SUBMIT, descriptions=[HELLO + " NumberOfProcessors = 64;", HELLO], owner="alice"
    )

    never, fine = reply["job_ids"]
    assert reply["warnings"] == [
        "1 job(s): No CE can run it: NumberOfProcessors 64 > the largest CE's 8"
    ]
    statuses = {row["job_id"]: row for row in grid.call(Op.STATUS, job_ids=[never, fine])}
    assert statuses[never]["status"] == "Waiting"  # it runs if such a CE comes
    assert statuses[never]["minor_status"].startswith("No CE can run it")
    assert statuses[fine]["minor_status"] == "Pilot Agent Submission"


def test_why_counts_each_recent_pilot_by_the_requirement_it_fails() -> None:
    grid = Grid()
    for number, cores in enumerate([1, 2, 8]):
        grid.pilot(f"p{number}", **{**BIG_CE, "cores": cores, "tags": []})
    [job_id] = grid.submit(HELLO + ' NumberOfProcessors = 4; Tags = {"SSD"};')

    [answer] = grid.call(Op.WHY, job_ids=[job_id])

    assert answer["pilots_considered"] == 3
    assert answer["pilot_rejections"] == {"NumberOfProcessors": 2, "Tags": 3}


def test_why_of_an_unknown_job_is_refused_and_names_it() -> None:
    grid = Grid()
    with pytest.raises(JobNotFound, match="job 42 not found"):
        grid.call(Op.WHY, job_ids=[42])


def test_the_lost_job_counts_the_jobs_the_matcher_serves_first() -> None:
    grid = Grid()
    grid.pilot("p1", **BIG_CE)
    ahead = grid.submit(HELLO, HELLO, HELLO, owner="alice", group="physics")
    [mine] = grid.submit(HELLO, owner="alice", group="physics")

    [answer] = grid.call(Op.WHY, job_ids=[mine])
    assert (answer["verdict"], answer["jobs_ahead"]) == ("lost", 3)
    # and the matcher does serve those three first
    served = [grid.pilot(f"q{n}", **BIG_CE)["job_id"] for n in range(3)]
    assert served == ahead


def test_every_requirement_has_a_predicate_the_matcher_uses() -> None:
    names = [name for name, _ in REQUIREMENT_CHECKS]
    assert len(names) == len(set(names)) == 10
    queue = TaskQueue(1, "alice", "g", Requirements(cores=4, tags=("GPU",)))
    small = PilotResources(site=CERN, cores=2)
    assert queue.rejections(small) == ["Tags", "NumberOfProcessors"]
    assert not queue.fits(small)
    assert queue.fits_static(small) == all(
        check(queue.requirements, "g", small) for _, check in STATIC_CHECKS
    )
