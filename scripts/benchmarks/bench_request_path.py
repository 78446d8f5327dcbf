#!/usr/bin/env python3
"""CPU per job of the central service's request path, in process (no sockets, no load generator).

    python scripts/benchmarks/bench_request_path.py                    # pilots with a pilot token
    python scripts/benchmarks/bench_request_path.py --as admin         # as the admin (audited)
    python scripts/benchmarks/bench_request_path.py --as insecure      # no guard at all
    python scripts/benchmarks/bench_request_path.py --profile          # and a cProfile of it

A real secure :class:`CentralService` on a fresh home (tests/service_harness.py: real SQLite store,
real guard, authorization, audit log and handlers; the frames are handed to it as the socket
would, with the client's public key), one parametric submission of ``--jobs`` jobs, then batches
of 64 pilots doing what bench_pilots.py's simulated pilots do — ``request_job``, ``Running``,
``Done`` — each batch decoded, authenticated, authorized, applied and committed in one
transaction. Reported: jobs/s and the process's CPU time per job. On a machine shared with other
work, the CPU time is the figure to compare (run the variants alternately, several times).
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
from scratch import add_keep_option, scratch_folder
from service_harness import InProcessService

from dirac_like.config import load_config
from dirac_like.protocol import Request, decode_reply, encode_request

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


def main(args: argparse.Namespace) -> int:
    run = Run(args.jobs, args.acting_as)
    profile = cProfile.Profile() if args.profile else None
    started, cpu = time.perf_counter(), time.process_time()
    if profile is not None:
        profile.enable()
    done = run.run()
    if profile is not None:
        profile.disable()
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    run.harness.close()
    print(
        f"pilots as {args.acting_as}: {done:,} jobs, {done / elapsed:,.0f} jobs/s, "
        f"{cpu / max(done, 1) * 1e6:.0f} us CPU per job"
    )
    if profile is not None:
        pstats.Stats(profile).sort_stats("tottime").print_stats(30)
    return 0 if done == args.jobs else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=6400)
    parser.add_argument(
        "--as", dest="acting_as", choices=["pilot", "admin", "insecure"], default="pilot"
    )
    parser.add_argument("--profile", action="store_true")
    add_keep_option(parser)
    sys.exit(main(parser.parse_args()))
