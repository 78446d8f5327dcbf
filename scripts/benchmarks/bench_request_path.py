#!/usr/bin/env python3
"""CPU per job of the central service's request path, in process (no sockets, no load generator).

    python scripts/benchmarks/bench_request_path.py                    # pilots with a pilot token
    python scripts/benchmarks/bench_request_path.py --as admin         # as the admin (audited)
    python scripts/benchmarks/bench_request_path.py --as insecure      # no guard at all
    python scripts/benchmarks/bench_request_path.py --profile          # and a cProfile of it
    python scripts/benchmarks/bench_request_path.py --match --jobs 20000   # matching only

A real secure :class:`CentralService` on a fresh home (tests/service_harness.py: real SQLite store,
real guard, authorization, audit log and handlers; the frames are handed to it as the socket
would, with the client's public key), one parametric submission of ``--jobs`` jobs, then batches
of 64 pilots doing what bench_pilots.py's simulated pilots do — ``request_job``, ``Running``,
``Done`` — each batch decoded, authenticated, authorized, applied and committed in one
transaction. Reported: jobs/s and the process's CPU time per job. On a machine shared with other
work, the CPU time is the figure to compare (run the variants alternately, several times).

``--match``: bench_match.py's pool instead (``--jobs`` waiting jobs in its 500 task queues over
60 sites, 5 groups with shares, 50 users), and batches of 64 ``request_job`` of pilots with a
pilot token of their site, until half the pool is matched: the CPU per match. With
``--overlap on`` each batch is served while the fsync of the one before runs in the service's
sync thread (as its loop does when requests are waiting); ``off``: the fsync inside each commit
(``[store] overlap_sync = false``).
"""

from __future__ import annotations

import argparse
import cProfile
import itertools
import pstats
import random
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
BATCH = 64
RESOURCES = {"site": SITE, "cores": 1, "memory_mb": 4000, "cpu_time_left": 172800}


class Run:
    def __init__(self, jobs: int, acting_as: str) -> None:
        home = scratch_folder("bench-request-path-")
        (home / "bench.toml").write_text("[security]\nrate_per_second = 0.0\n")
        self.harness = InProcessService(home / "home", load_config(home / "bench.toml"))
        self.harness.now = time.time()
        admin = self.harness.identity("boss", "admin")
        self.key = (
            admin if acting_as == "admin" else self.harness.identity("pilots", "pilot", site=SITE)
        )
        jdl = f'Executable = "/bin/true"; Arguments = "x %s"; Site = "{SITE}"; Parameters = {jobs};'
        self.harness.ok(admin, "submit", {"descriptions": [jdl], "owner": "u", "group": "g"})
        service = self.harness.service
        while service.state.background_pending:  # the service's loop makes it a slice per turn
            run_background(service.state, self.harness.now)
            service.commit_and_reply([])
        if acting_as == "insecure":
            self.harness.service.guard = None
        self.ids = itertools.count()
        self.jobs = jobs

    def batch(self, requests: list[tuple[str, dict[str, Any]]]) -> list[bytes]:
        service = self.harness.service
        frames = [encode_request(Request(f"r{next(self.ids)}", op, a)) for op, a in requests]
        messages = [([b"c%d" % n, frame], self.key) for n, frame in enumerate(frames)]
        pending = service.process_batch(messages)
        service.commit_and_reply(pending)
        return [item.reply for item in pending]

    def run(self) -> int:
        done = 0
        while done < self.jobs:
            asks = [
                ("request_job", {"pilot_id": f"p{n}", "resources": RESOURCES}) for n in range(BATCH)
            ]
            matched = []
            for n, frame in enumerate(self.batch(asks)):
                reply = decode_reply(frame)
                job = reply.result.get("job") if reply.ok else None
                if job:
                    matched.append((f"p{n}", job["job_id"], job["attempt"]))
            if not matched:
                break
            for status in ("Running", "Done"):
                self.batch(
                    [
                        (
                            "update_status",
                            {"pilot_id": p, "job_id": j, "attempt": a, "status": status},
                        )
                        for p, j, a in matched
                    ]
                )
            done += len(matched)
        return done


class MatchRun:
    """bench_match.py's pool, in process; request_job only."""

    def __init__(self, jobs: int, overlap: bool) -> None:
        home = scratch_folder("bench-request-path-")
        (home / "bench.toml").write_text(bench_match.config_text(overlap_sync=overlap))
        self.overlap = overlap
        self.harness = InProcessService(home / "home", load_config(home / "bench.toml"))
        self.harness.now = time.time()
        admin = self.harness.identity("boss", "admin")
        rng = random.Random(42)
        queues = bench_match.TASK_QUEUES
        for index in range(queues):
            count = jobs // queues + (1 if index < jobs % queues else 0)
            jdl, owner, group = bench_match.task_queue_jdl(index, count, rng)
            self.harness.ok(
                admin, "submit", {"descriptions": [jdl], "owner": owner, "group": group}
            )
        self.keys = [
            self.harness.identity(f"pilots{n}", "pilot", site=site)
            for n, site in enumerate(bench_match.SITES)
        ]
        self.ids = itertools.count()
        self.jobs = jobs

    def run(self) -> int:
        service, sites = self.harness.service, bench_match.SITES
        matched = 0
        while matched < self.jobs // 2:
            messages = []
            for n in range(BATCH):
                resources = {**RESOURCES, "site": sites[n % len(sites)]}
                args = {"pilot_id": f"p{n}", "resources": resources}
                frame = encode_request(Request(f"r{next(self.ids)}", "request_job", args))
                messages.append(([b"c%d" % n, frame], self.keys[n % len(sites)]))
            pending = service.process_batch(messages)
            if self.overlap:  # replied once durable, while the next batch is served
                service.commit_and_hold(pending)
            else:
                service.commit_and_reply(pending)
            found = sum(1 for item in pending if decode_reply(item.reply).result.get("job"))
            if not found:
                break
            matched += found
        return matched


def main(args: argparse.Namespace) -> int:
    run: Run | MatchRun = (
        MatchRun(args.jobs, args.overlap == "on") if args.match else Run(args.jobs, args.acting_as)
    )
    profile = cProfile.Profile() if args.profile else None
    started, cpu = time.perf_counter(), time.process_time()
    if profile is not None:
        profile.enable()
    done = run.run()
    run.harness.service.held.settle()
    if profile is not None:
        profile.disable()
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    run.harness.close()
    what = "matching" if args.match else f"pilots as {args.acting_as}"
    print(
        f"{what}: {done:,} jobs, {done / elapsed:,.0f} jobs/s, "
        f"{cpu / max(done, 1) * 1e6:.0f} us CPU per job"
    )
    if profile is not None:
        pstats.Stats(profile).sort_stats(args.sort).print_stats(args.lines)
    return 0 if done >= (args.jobs // 2 if args.match else args.jobs) else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=6400)
    parser.add_argument(
        "--as", dest="acting_as", choices=["pilot", "admin", "insecure"], default="pilot"
    )
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--match", action="store_true", help="bench_match.py's pool, matching")
    parser.add_argument(
        "--overlap",
        choices=["on", "off"],
        default="on",
        help="--match: each batch served during the fsync of the one before (on), or not",
    )
    parser.add_argument("--sort", default="tottime", help="cProfile order: tottime, cumulative")
    parser.add_argument("--lines", type=int, default=30, help="cProfile lines shown")
    add_keep_option(parser)
    sys.exit(main(parser.parse_args()))
