#!/usr/bin/env python3
"""Jobs per second end to end through the real central service, with simulated pilots.

    python scripts/benchmarks/bench_pilots.py                      # 20,000 jobs, 1,000 pilots
    python scripts/benchmarks/bench_pilots.py --jobs 5000 --pilots 200

A fresh central service (its own process, SQLite synchronous=full) gets one parametric
submission of ``--jobs`` jobs with zero-length payloads; ``--pilots`` simulated pilots (one
thread, real protocol: request_job, Running, Done, each a durable commit) run them. Reported:
jobs/s from the first pilot started to the last job Done, and the CPU seconds the central
service's process spent meanwhile (less sensitive than wall time to other load on the machine).
This is the first figure of issue 3's "1,000 simulated pilots" benchmark; the local-pilot and
kill-latency ones are still to come.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import psutil  # type: ignore[import-untyped, unused-ignore]  # no stubs installed

from dirac_like.agents.fabrics.base import PilotRequest, PilotState
from dirac_like.agents.fabrics.simulated import SimulatedFabric
from dirac_like.client import Client, RetryPolicy
from dirac_like.processes import ServiceProcess

SLOW = RetryPolicy(timeout=600, retries=0)
CONFIG = """
[service]
max_message_bytes = 67108864
[jobs]
match_lease = 600.0
[security]
rate_per_second = 0.0  # every simulated pilot presents the same identity
"""


def done_count(client: Client) -> int:
    return sum(1 for row in client.list_jobs(status="Done", limit=10**7))


def main(jobs: int, pilots: int) -> int:
    home = Path(tempfile.mkdtemp(prefix="bench-pilots-"))
    (home / "bench.toml").write_text(CONFIG)
    service = ServiceProcess.start_central(home / "home", home / "bench.toml")
    fabric = SimulatedFabric(service.endpoint, seed=1, identity=service.identity)
    try:
        with Client(service.endpoint, SLOW, identity=service.identity) as client:
            jdl = f'Executable = "/bin/true"; Arguments = "sleep=0 %s"; Parameters = {jobs};'
            client.submit([jdl], owner="bench", group="bench")
            central = psutil.Process(service.pid)
            cpu_before = sum(central.cpu_times()[:2])
            started = time.perf_counter()
            refs = [
                fabric.submit(
                    PilotRequest(
                        pilot_id=f"sim-{n}",
                        command=[],
                        env={
                            "DIRAC_LIKE_SITE": f"SIM.Site{n % 10}.org",
                            "DIRAC_LIKE_CE": "ce",
                            "DIRAC_LIKE_IDLE_TIMEOUT": "1",
                        },
                    )
                )
                for n in range(pilots)
            ]
            deadline = started + 3600
            while done_count(client) < jobs and time.perf_counter() < deadline:
                time.sleep(0.5)  # a benchmark's progress poll, not a test
            elapsed = time.perf_counter() - started
            cpu = sum(central.cpu_times()[:2]) - cpu_before
            done = done_count(client)
        states = fabric.status(refs)
        failed = sum(1 for state in states.values() if state is PilotState.FAILED)
    finally:
        fabric.close()
        service.stop()
    print(
        f"{done:,} of {jobs:,} jobs Done through {pilots:,} simulated pilots in {elapsed:.1f} s: "
        f"{done / elapsed:,.0f} jobs/s ({failed} pilots failed); central service CPU "
        f"{cpu:.1f} s, {cpu / max(done, 1) * 1e6:.0f} us per job"
    )
    return 0 if done == jobs else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--pilots", type=int, default=1_000)
    args = parser.parse_args()
    raise SystemExit(main(args.jobs, args.pilots))
