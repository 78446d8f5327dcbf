#!/usr/bin/env python3
"""Operators' commands at scale: ``job why`` and a bulk kill against a concurrent match load.

    python scripts/benchmarks/bench_console.py                    # both parts, full size
    python scripts/benchmarks/bench_console.py --why-jobs 100000 --bulk-jobs 20000   # quicker

1. ``job why``: in-process, the handler the service runs (no sockets): a central state holding
   ``--why-jobs`` waiting jobs (in 500 task queues over 60 sites, as bench_match.py fills them)
   and ``--pilots`` pilots seen lately (and one CE per site), then ``why`` for one job at a time,
   jobs picked at random; reported: p50 / p99 / max milliseconds per call, by verdict.
2. Bulk kill vs matching: a real central service (own process, SQLite synchronous=full, secure)
   holds a pool of waiting jobs to match and ``--bulk-jobs`` others to kill. 64 pilot clients
   ask for jobs (bench_match.py's load generator): first alone (the baseline match rate), then
   while ``dirac-like job kill --select name=victim_*`` (the same select + bulk requests) kills
   the others, then alone again. Reported: the match rates, the ratio during / mean alone, how
   long the kill took, and the slowest match reply while it ran.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_match import (
    SITES,
    SLOW,
    config_text,
    drive,
    fill,
    percentile,
    pilot_frame,
    site_tokens,
    task_queue_jdl,
    wait_made,
)
from scratch import add_keep_option, scratch_folder

from dirac_like.client import Client
from dirac_like.config import Config
from dirac_like.model import ChangeSet
from dirac_like.processes import ServiceProcess
from dirac_like.protocol import JobIdsArgs, PilotResources
from dirac_like.services.console_handlers import why
from dirac_like.services.state import CentralState
from dirac_like.store.memory import MemoryStore

TASK_QUEUES = 500


# -- 1. job why --------------------------------------------------------------------------------


class DescriptionsOnly(MemoryStore):
    """Keeps the job descriptions a commit brings (``job why`` reads a job's, for its input
    data), nothing else: a million job records are not copied."""

    def commit(self, changes: ChangeSet) -> None:
        for job, packed in changes.new_jobs:
            self.descriptions[job.job_id] = packed


def why_state(waiting: int, pilots: int, now: float) -> CentralState:
    store = DescriptionsOnly()
    state = CentralState(Config(), store, now=now)
    rng = random.Random(7)
    per_queue = waiting // TASK_QUEUES
    for index in range(TASK_QUEUES):
        jdl, owner, group = task_queue_jdl(index, per_queue, rng)
        state.submit([jdl], owner, group, now)
        changes = state.take_changes()
        store.commit(changes)  # the descriptions only
        state.committed(changes)
    for site in SITES:
        state.grid.sized(
            PilotResources(site=site, ce="ce1", cores=8, memory_mb=16000, cpu_time_left=172800), now
        )
    for number in range(pilots):
        resources = PilotResources(
            site=SITES[number % len(SITES)],
            ce="ce1",
            cores=rng.choice([1, 1, 2, 8]),
            memory_mb=4000,
            cpu_time_left=rng.randrange(3600, 172800),
        )
        state.grid.pilot_asked(f"pilot-{number}", resources, now - rng.random() * 1800)
    return state


def bench_why(waiting: int, pilots: int, calls: int) -> None:
    now = time.time()
    started = time.perf_counter()
    state = why_state(waiting, pilots, now)
    print(
        f"job why: {len(state.jobs):,} waiting jobs, {pilots:,} pilots seen lately, "
        f"{len(SITES)} CEs (state built in {time.perf_counter() - started:.1f} s)"
    )
    rng = random.Random(11)
    job_ids = list(state.jobs)
    by_verdict: dict[str, list[float]] = defaultdict(list)
    every: list[float] = []
    for _ in range(calls):
        job_id = rng.choice(job_ids)
        begin = time.perf_counter()
        [answer] = why(state, JobIdsArgs([job_id]), now)
        elapsed = (time.perf_counter() - begin) * 1000
        by_verdict[answer.verdict].append(elapsed)
        every.append(elapsed)
    print(
        f"  all {calls} calls: p50 {statistics.median(every):.1f} ms, "
        f"p99 {percentile(every, 0.99):.1f} ms, max {max(every):.1f} ms"
    )
    for verdict, times in sorted(by_verdict.items()):
        print(
            f"  {verdict:>12}: {len(times):4} calls, p50 {statistics.median(times):.1f} ms, "
            f"max {max(times):.1f} ms"
        )


# -- 2. bulk kill vs matching ------------------------------------------------------------------


def start_service(bulk_jobs: int) -> ServiceProcess:
    folder = scratch_folder("bench-console-")
    config = config_text("full") + (
        f"\n[bulk]\nconfirm_above = 100\nadmin_above = {bulk_jobs * 2}\n"
    )
    (folder / "bench.toml").write_text(config)
    service = ServiceProcess.start_central(folder / "home", folder / "bench.toml")
    os.environ["DIRAC_LIKE_IDENTITY"] = str(service.identity_path)
    return service


def kill_in_bulk(endpoint: str, done: dict[str, float]) -> None:
    with Client(endpoint, SLOW) as client:
        started = time.perf_counter()
        shown = client.select_jobs("status=Waiting,name=victim_*")
        bulk = client.bulk("kill", "status=Waiting,name=victim_*", shown.count, yes=True)
        while not client.bulk_status(bulk.bulk_id).finished:
            time.sleep(0.2)
        done["seconds"] = time.perf_counter() - started
        done["killed"] = client.bulk_status(bulk.bulk_id).done


def bench_bulk(pool: int, bulk_jobs: int, seconds: float, clients: int) -> None:
    service = start_service(bulk_jobs)
    try:
        fill(service.endpoint, pool)
        victims = (
            f'Executable = "/bin/true"; JobName = "victim_%n"; Site = "LCG.Nowhere.org";'
            f" Parameters = {bulk_jobs};"
        )
        with Client(service.endpoint, SLOW) as client:
            victim_ids = client.submit([victims], owner="victim", group="lhcb_test", timeout=600)
            wait_made(client, victim_ids[-1])  # made in slices: all of them before measuring
        tokens = site_tokens(service.endpoint)
        count, latencies, elapsed = drive(
            service.endpoint, clients, seconds, pilot_frame, identities=tokens
        )
        base = count / elapsed
        print(
            f"bulk kill: {pool:,} waiting jobs to match, {bulk_jobs:,} to kill, {clients} "
            f"pilot clients"
        )
        print(f"  matching alone: {base:,.0f} matches/s (p99 {percentile(latencies, 0.99):.1f} ms)")
        done: dict[str, float] = {}
        killer = threading.Thread(target=kill_in_bulk, args=(service.endpoint, done))
        killer.start()
        count, latencies, elapsed = drive(
            service.endpoint, clients, seconds, pilot_frame, identities=tokens
        )
        during = count / elapsed
        killer.join()
        slowest, p99 = max(latencies), percentile(latencies, 0.99)
        count, _, elapsed = drive(
            service.endpoint, clients, seconds, pilot_frame, identities=tokens
        )
        after = count / elapsed
        alone = (base + after) / 2  # the load of a shared machine drifts: before and after
        print(f"  matching alone again, after the kill: {after:,.0f} matches/s")
        print(
            f"  matching during the kill: {during:,.0f} matches/s ({during / alone:.0%} of "
            f"the mean alone), p99 {p99:.1f} ms, slowest {slowest:.0f} ms"
        )
        print(
            f"  the bulk kill of {done.get('killed', 0):,.0f} jobs took "
            f"{done.get('seconds', float('nan')):.1f} s (select, start, every batch)"
        )
    finally:
        service.stop()


def main() -> int:
    if not ARGS.skip_why:
        bench_why(ARGS.why_jobs, ARGS.pilots, ARGS.calls)
    if not ARGS.skip_bulk:
        bench_bulk(ARGS.pool, ARGS.bulk_jobs, ARGS.seconds, ARGS.clients)
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--why-jobs", type=int, default=1_000_000)
    parser.add_argument("--pilots", type=int, default=10_000)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--pool", type=int, default=200_000, help="waiting jobs to match")
    parser.add_argument("--bulk-jobs", type=int, default=100_000, help="waiting jobs to kill")
    parser.add_argument(
        "--seconds",
        type=float,
        default=8.0,
        help="match load measured this long, alone and during the kill",
    )
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--skip-why", action="store_true")
    parser.add_argument("--skip-bulk", action="store_true")
    add_keep_option(parser)
    ARGS = parser.parse_args()
    raise SystemExit(main())
