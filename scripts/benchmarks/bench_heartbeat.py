#!/usr/bin/env python3
"""CPU per heartbeat of the central service's request path, in process (no sockets).

    python scripts/benchmarks/bench_heartbeat.py                      # bare heartbeats
    python scripts/benchmarks/bench_heartbeat.py --metrics            # with a usage sample each
    python scripts/benchmarks/bench_heartbeat.py --per-batch 1 --profile

A real secure :class:`CentralService` on a fresh home (tests/service_harness.py: real SQLite
store at ``synchronous = full`` with the fsync overlapped, real guard, authorization, handlers;
frames handed to it as the socket would, with the pilots' public key), ``--jobs`` jobs matched
to as many pilots and reported Running, then heartbeats of those pilots in batches of
``--per-batch`` (10,000 pilots every 30 s reach the loop a few at a time), each batch decoded,
authenticated, authorized, applied and committed (or not: services/durability.py) as the loop
does, the clock moved on by ``30 / jobs * per-batch`` seconds a batch. ``--metrics``: each
heartbeat carries a watchdog sample as a real pilot's does (the service keeps a usage series).
Reported: heartbeats/s, the process's CPU per heartbeat (all threads: the store's sync thread
too) and the commits the store made. On a shared machine, compare the CPU per heartbeat of
variants run alternately.
"""

from __future__ import annotations

import argparse
import cProfile
import itertools
import pstats
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))
import bench_match
from scratch import add_keep_option, scratch_folder
from service_harness import InProcessService

from dirac_like.config import load_config
from dirac_like.protocol import Request, decode_reply, encode_request
from dirac_like.services.handlers import run_background

SITE = "SIM.A.org"
INTERVAL = 30.0  # the real pilot's heartbeat interval
RESOURCES = {"site": SITE, "cores": 1, "memory_mb": 4000}


class Crowd:
    """``jobs`` pilots, each with a job Running, in one in-process service."""

    def __init__(self, jobs: int, metrics: bool) -> None:
        home = scratch_folder("bench-heartbeat-")
        (home / "bench.toml").write_text(bench_match.config_text("full"))
        self.harness = InProcessService(home / "home", load_config(home / "bench.toml"))
        self.harness.now = time.time()
        admin = self.harness.identity("boss", "admin")
        self.key = self.harness.identity("pilots", "pilot", site=SITE)
        jdl = f'Executable = "/bin/sleep"; Arguments = "%s"; Site = "{SITE}"; Parameters = {jobs};'
        self.harness.ok(admin, "submit", {"descriptions": [jdl], "owner": "u", "group": "g"})
        service = self.harness.service
        while service.state.background_pending:  # made a slice per loop turn
            run_background(service.state, self.harness.now)
            service.commit_and_reply([])
        self.ids = itertools.count()
        self.metrics = metrics
        self.held: list[tuple[str, int, int]] = []  # (pilot, job, attempt)
        for start in range(0, jobs, 256):
            pilots = [f"p{n}" for n in range(start, min(jobs, start + 256))]
            asks = [("request_job", {"pilot_id": p, "resources": RESOURCES}) for p in pilots]
            for pilot, frame in zip(pilots, self.batch(asks), strict=True):
                job = decode_reply(frame).result["job"]
                self.held.append((pilot, job["job_id"], job["attempt"]))
        for start in range(0, jobs, 256):
            self.batch(
                [
                    ("update_status", {**self.job_args(n), "status": "Running"})
                    for n in range(start, min(jobs, start + 256))
                ]
            )
        self.started = self.harness.now

    def job_args(self, n: int) -> dict[str, Any]:
        pilot, job_id, attempt = self.held[n]
        return {"pilot_id": pilot, "job_id": job_id, "attempt": attempt}

    def batch(self, requests: list[tuple[str, dict[str, Any]]]) -> list[bytes]:
        """One loop turn: the batch served, committed (as the loop does when requests wait: the
        fsync overlapped with the next batch)."""
        service = self.harness.service
        frames = [encode_request(Request(f"r{next(self.ids)}", op, a)) for op, a in requests]
        messages = [([b"c%d" % n, frame], self.key) for n, frame in enumerate(frames)]
        pending = service.process_batch(messages)
        service.commit_and_hold(pending)
        return [item.reply for item in pending]

    def heartbeat(self, n: int) -> tuple[str, dict[str, Any]]:
        args = self.job_args(n)
        if self.metrics:
            wall = round(self.harness.now - self.started, 1)
            args["metrics"] = {"cpu_seconds": wall, "rss_mb": 512.0, "wall_seconds": wall}
        return "heartbeat", args

    def beat(self, count: int, per_batch: int) -> None:
        step = INTERVAL / len(self.held) * per_batch
        pilots = itertools.cycle(range(len(self.held)))
        for _ in range(0, count, per_batch):
            self.harness.now += step
            replies = self.batch([self.heartbeat(next(pilots)) for _ in range(per_batch)])
            assert all(decode_reply(frame).ok for frame in replies)
        self.harness.service.held.settle()


def main(args: argparse.Namespace) -> int:
    crowd = Crowd(args.jobs, args.metrics)
    store = crowd.harness.service.store
    commits = [0]
    write = store.commit

    def counted(changes: Any) -> None:
        commits[0] += not changes.is_empty()
        write(changes)

    store.commit = counted  # type: ignore[method-assign]
    crowd.beat(args.heartbeats // 10, args.per_batch)  # warm-up, not counted
    commits[0] = 0
    profile = cProfile.Profile() if args.profile else None
    cpu, wall = time.process_time(), time.perf_counter()
    if profile is not None:
        profile.enable()
    crowd.beat(args.heartbeats, args.per_batch)
    if profile is not None:
        profile.disable()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    print(
        f"{args.heartbeats:,} heartbeats of {args.jobs:,} pilots, {args.per_batch} a batch"
        f"{', with a usage sample each' if args.metrics else ''}: {args.heartbeats / wall:,.0f}/s, "
        f"CPU {cpu / args.heartbeats * 1e6:.1f} us per heartbeat, {commits[0]} commits"
    )
    crowd.harness.close()
    if profile is not None:
        pstats.Stats(profile).sort_stats("tottime").print_stats(30)
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=10_000, help="pilots, each with a job")
    parser.add_argument("--heartbeats", type=int, default=30_000)
    parser.add_argument("--per-batch", type=int, default=2, help="heartbeats per loop turn")
    parser.add_argument("--metrics", action="store_true", help="a usage sample in each")
    parser.add_argument("--profile", action="store_true", help="and a cProfile of it")
    add_keep_option(parser)
    sys.exit(main(parser.parse_args()))
