#!/usr/bin/env python3
"""Fair share as realised by a real central service with simulated pilots (issue 16).

    python scripts/benchmarks/bench_shares.py                    # every scenario (~10 min)
    python scripts/benchmarks/bench_shares.py --only multicore-4 --seconds 60
    python scripts/benchmarks/bench_shares.py --list

Each scenario starts a fresh central service (its own process, SQLite synchronous=normal) with
its shares in the config, submits enough jobs of each group that none runs dry, and lets
simulated pilots (agents/fabrics/simulated.py: real protocol, packing jobs into their cores,
obeying holds) run them for ``--seconds`` after a warm-up. Then it reads every job's Matched
and end times from the store's history and prints, per group (or user): the configured share,
the realised share by match count and by core-time, the largest error of the core-time share
over sliding windows (and of the count share over 500-match windows), and the core
utilisation (cores matched to a job over cores the pilots have; the cores idle while pilots
drain for a bigger job are counted idle). Job lengths and hold times are scaled down (jobs of
seconds, holds of ten seconds) so that a scenario takes a minute.
"""

from __future__ import annotations

import argparse
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path

from scratch import add_keep_option, scratch_folder

from dirac_like.agents.fabrics.base import PilotRequest
from dirac_like.agents.fabrics.simulated import SimulatedFabric
from dirac_like.client import Client, RetryPolicy
from dirac_like.processes import ServiceProcess

SLOW = RetryPolicy(timeout=600, retries=0)
SITE = "SIM.Bench.org"
COUNT_WINDOW = 500  # matches
TIME_WINDOW = 10.0  # seconds of core-time


@dataclass(frozen=True)
class Work:
    """One kind of job a group (and user) submits."""

    group: str
    user: str
    cores: int
    seconds: float


@dataclass
class Scenario:
    name: str
    groups: dict[str, float]
    work: list[Work]
    pilots: int = 50
    pilot_cores: int = 4
    users: dict[str, dict[str, float]] = field(default_factory=dict)
    half_life: float = 86400.0
    hold_seconds: float = 10.0
    late: set[str] = field(default_factory=set)  # groups that submit only after the warm-up
    by_user: bool = False  # report users within the one group, not groups

    @property
    def cores(self) -> int:
        return self.pilots * self.pilot_cores


def scenarios() -> dict[str, Scenario]:
    all_of = [
        Scenario(
            "equal-70-30", {"A": 70, "B": 30}, [Work("A", "ann", 1, 2.0), Work("B", "bob", 1, 2.0)]
        ),
        Scenario(
            "equal-50-30-20",
            {"A": 50, "B": 30, "C": 20},
            [Work("A", "ann", 1, 2.0), Work("B", "bob", 1, 2.0), Work("C", "cid", 1, 2.0)],
        ),
        Scenario(
            "skew-10x", {"A": 70, "B": 30}, [Work("A", "ann", 1, 5.0), Work("B", "bob", 1, 0.5)]
        ),
        Scenario(
            "users-75-25",
            {"A": 1},
            [Work("A", "ann", 1, 2.0), Work("A", "bob", 1, 2.0)],
            users={"A": {"ann": 3, "bob": 1}},
            by_user=True,
        ),
        Scenario(
            "late-group",
            {"A": 70, "B": 30},
            [Work("A", "ann", 1, 2.0), Work("B", "bob", 1, 2.0)],
            late={"B"},
        ),
        Scenario(
            "late-group-short-half-life",
            {"A": 70, "B": 30},
            [Work("A", "ann", 1, 2.0), Work("B", "bob", 1, 2.0)],
            late={"B"},
            half_life=20.0,
        ),
        Scenario(
            "multicore-4", {"A": 70, "B": 30}, [Work("A", "ann", 4, 2.0), Work("B", "bob", 1, 2.0)]
        ),
        Scenario(
            "multicore-4-no-draining",
            {"A": 70, "B": 30},
            [Work("A", "ann", 4, 2.0), Work("B", "bob", 1, 2.0)],
            hold_seconds=0.0,
        ),
        Scenario(
            "multicore-8",
            {"A": 70, "B": 30},
            [Work("A", "ann", 8, 2.0), Work("B", "bob", 1, 2.0)],
            pilots=25,
            pilot_cores=8,
        ),
        # the price of draining grows with the length of the small jobs it waits for
        Scenario(
            "multicore-4-long-small-jobs",
            {"A": 70, "B": 30},
            [Work("A", "ann", 4, 2.0), Work("B", "bob", 1, 8.0)],
        ),
    ]
    return {scenario.name: scenario for scenario in all_of}


def config_text(scenario: Scenario) -> str:
    lines = [
        "[service]",
        "max_message_bytes = 67108864",
        "[store]",
        'synchronous = "normal"',
        "[jobs]",
        "match_lease = 600.0",
        "[security]",
        "rate_per_second = 0.0",
        "[shares]",
        f"half_life = {scenario.half_life}",
        "[shares.groups]",
        *(f"{g} = {s}" for g, s in scenario.groups.items()),
        "[shares.drain]",
        f"hold_seconds = {scenario.hold_seconds}",
    ]
    for group, users in scenario.users.items():
        lines += [f"[shares.users.{group}]", *(f"{u} = {s}" for u, s in users.items())]
    return "\n".join(lines) + "\n"


def submit(client: Client, scenario: Scenario, works: list[Work], seconds: float) -> None:
    """Enough jobs of each kind that none runs dry within ``seconds`` (even given all cores)."""
    for work in works:
        count = int(scenario.cores / work.cores * seconds / work.seconds * 1.2) + 10
        jdl = (
            f'Executable = "/bin/true"; Arguments = "sleep={work.seconds} %s"; '
            f'JobName = "{work.group}-{work.user}-{work.cores}c-%s"; '
            f"NumberOfProcessors = {work.cores}; Parameters = {count};"
        )
        client.submit([jdl], owner=work.user, group=work.group)


@dataclass(frozen=True)
class Run:
    """One job's run: who, how many cores, from its match to its end (or the window's end)."""

    key: str  # group, or user within the group
    cores: int
    start: float
    end: float


def read_runs(store: Path, by_user: bool, stop: float) -> list[Run]:
    db = sqlite3.connect(f"file:{store}?mode=ro", uri=True)
    try:
        rows = db.execute(
            "SELECT j.job_id, j.grp, j.owner, j.job_name, h.status, h.time FROM jobs j "
            "JOIN history h ON h.job_id = j.job_id "
            "WHERE h.status IN ('Matched', 'Done', 'Failed', 'Waiting') ORDER BY h.id"
        ).fetchall()
    finally:
        db.close()
    started: dict[int, tuple[str, int, float]] = {}
    runs = []
    for job_id, group, owner, name, status, when in rows:
        if status == "Matched":
            cores = int(name.split("-")[2].rstrip("c"))
            started[job_id] = (owner if by_user else group, cores, when)
        elif job_id in started and status != "Waiting":
            key, cores, begin = started.pop(job_id)
            runs.append(Run(key, cores, begin, when))
    runs.extend(Run(key, cores, begin, stop) for key, cores, begin in started.values())
    return sorted(runs, key=lambda run: run.start)


def core_seconds(runs: list[Run], key: str | None, begin: float, end: float) -> float:
    return sum(
        run.cores * max(0.0, min(run.end, end) - max(run.start, begin))
        for run in runs
        if key is None or run.key == key
    )


def targets(scenario: Scenario) -> dict[str, float]:
    shares = scenario.users[next(iter(scenario.users))] if scenario.by_user else scenario.groups
    total = sum(shares.values())
    return {key: share / total for key, share in shares.items()}


def report(scenario: Scenario, runs: list[Run], begin: float, end: float) -> None:
    target = targets(scenario)
    matched = [run for run in runs if begin <= run.start < end]
    used = core_seconds(runs, None, begin, end) or 1.0
    print(
        f"\n== {scenario.name}: {scenario.pilots} pilots x {scenario.pilot_cores} cores, "
        f"{len(matched)} matches in {end - begin:.0f} s, half-life {scenario.half_life:g} s, "
        f"hold {scenario.hold_seconds:g} s"
    )
    print(
        f"   {'':4} {'share':>7} {'by count':>9} {'core-time':>10} "
        f"{'max err (' + str(int(TIME_WINDOW)) + ' s)':>14} {'max err (500)':>14}"
    )
    equal_jobs = len({(work.cores, work.seconds) for work in scenario.work}) == 1
    for key, share in target.items():
        count = sum(run.key == key for run in matched) / max(1, len(matched))
        cores = core_seconds(runs, key, begin, end) / used
        # by count the share is a target only when every job is the same size and length
        count_error = (
            f"{count_window_error(matched, key, share):13.1f}pp" if equal_jobs else f"{'-':>15}"
        )
        print(
            f"   {key:4} {share:7.1%} {count:9.1%} {cores:10.1%} "
            f"{window_error(runs, key, share, begin, end):13.1f}pp {count_error}"
        )
    utilisation = core_seconds(runs, None, begin, end) / (scenario.cores * (end - begin))
    print(f"   core utilisation {utilisation:.1%} (cores matched to a job / cores of the pilots)")


def window_error(runs: list[Run], key: str, share: float, begin: float, end: float) -> float:
    """The largest |core-time share - target| over sliding windows, in percentage points."""
    worst, start = 0.0, begin
    while start + TIME_WINDOW <= end:
        total = core_seconds(runs, None, start, start + TIME_WINDOW)
        if total:
            mine = core_seconds(runs, key, start, start + TIME_WINDOW)
            worst = max(worst, abs(mine / total - share))
        start += TIME_WINDOW / 5
    return 100 * worst


def count_window_error(matched: list[Run], key: str, share: float) -> float:
    worst = 0.0
    for first in range(0, len(matched) - COUNT_WINDOW + 1, COUNT_WINDOW // 5):
        window = matched[first : first + COUNT_WINDOW]
        worst = max(worst, abs(sum(run.key == key for run in window) / COUNT_WINDOW - share))
    return 100 * worst


def time_to_share(runs: list[Run], key: str, share: float, begin: float, end: float) -> float:
    """Seconds from ``begin`` until the key's core-time share over a 5 s window is within 2 pp."""
    start = begin
    while start + 5.0 <= end:
        total = core_seconds(runs, None, start, start + 5.0)
        if total and abs(core_seconds(runs, key, start, start + 5.0) / total - share) <= 0.02:
            return start + 5.0 - begin
        start += 0.5
    return float("nan")


def run(scenario: Scenario, seconds: float, warmup: float) -> None:
    home = scratch_folder("bench-shares-")
    (home / "bench.toml").write_text(config_text(scenario))
    service = ServiceProcess.start_central(home / "home", home / "bench.toml")
    fabric = SimulatedFabric(service.endpoint, seed=1, identity=service.identity)
    try:
        with Client(service.endpoint, SLOW, identity=service.identity) as client:
            early = [w for w in scenario.work if w.group not in scenario.late]
            submit(client, scenario, early, warmup + seconds)
            for n in range(scenario.pilots):
                fabric.submit(
                    PilotRequest(
                        pilot_id=f"sim-{n}",
                        command=[],
                        cores=scenario.pilot_cores,
                        env={
                            "DIRAC_LIKE_SITE": SITE,
                            "DIRAC_LIKE_CE": "ce",
                            "DIRAC_LIKE_IDLE_TIMEOUT": "600",
                        },
                    )
                )
            time.sleep(warmup)  # a benchmark's schedule, not a test
            begin = time.time()
            late = [w for w in scenario.work if w.group in scenario.late]
            submit(client, scenario, late, seconds)
            time.sleep(seconds)
            end = time.time()
            matcher_view = client.shares()
    finally:
        fabric.close()
        service.stop()
    runs = read_runs(home / "home" / "jobs.sqlite", scenario.by_user, end)
    report(scenario, runs, begin, end)
    for key in scenario.late:
        share = targets(scenario)[key]
        print(
            f"   late group {key}: within 2 pp of its share (5 s windows) after "
            f"{time_to_share(runs, key, share, begin, end):.1f} s"
        )
    for row in matcher_view:  # what `admin shares` showed at the end of the run
        print(
            f"   service: {row.group} running {row.running_cores} cores, "
            f"load {row.load:.1f}, load/share {row.load_per_share:.3f}"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", action="append", help="scenario name (repeatable)")
    parser.add_argument("--seconds", type=float, default=60.0, help="measured, per scenario")
    parser.add_argument("--warmup", type=float, default=10.0)
    parser.add_argument("--list", action="store_true")
    add_keep_option(parser)
    args = parser.parse_args()
    chosen = scenarios()
    if args.list:
        print("\n".join(chosen))
        return 0
    for name in args.only or list(chosen):
        run(chosen[name], args.seconds, args.warmup)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
