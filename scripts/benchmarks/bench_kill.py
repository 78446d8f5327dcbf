#!/usr/bin/env python3
"""Kill latency: from `kill` acknowledged by the central service to the job reported Killed.

    python scripts/benchmarks/bench_kill.py              # 50 kills
    python scripts/benchmarks/bench_kill.py --kills 200
    python scripts/benchmarks/bench_kill.py --kills 100 --connected 1000   # 1,000 more pilots

A fresh central service and one real pilot process (`dirac-like pilot`, 4 cores, local) that runs
`sleep 600` payloads. Each round submits a job, waits until it is Running, kills it, and times
until its status is Killed — which the pilot reports only after the payload's process group is
gone. The service pushes the kill to the pilot's connection at once; heartbeats are set to 30 s,
so a kill that waited for a heartbeat would show. With 100 kills the p99 is the slowest one:
a second line gives the first kill (the pilot's first job) apart and the others' figures.

With ``--connected N``, N more pilots are connected first (connected_pilots.py: one CurveZMQ
connection each, a long job each at a site of their own, a heartbeat every 30 s), so the kill
is pushed to its pilot among N + 1 routes.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

from connected_pilots import Crowd, CrowdSpec
from scratch import add_keep_option, scratch_folder

from dirac_like.client import Client, RetryPolicy
from dirac_like.processes import ServiceProcess

QUICK = RetryPolicy(timeout=10, retries=2)
SITE, CROWD_SITE = "BENCH.Local.org", "BENCH.Crowd.org"
JOB = f'Executable = "/bin/sleep"; Arguments = "600"; CPUTime = 3600; Site = "{SITE}";'


def wait_status(client: Client, job_id: int, wanted: str, timeout: float = 60.0) -> float:
    """Poll (every 2 ms) until the job has ``wanted``; returns when it was seen."""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        if client.status([job_id])[0].status == wanted:
            return time.perf_counter()
        time.sleep(0.002)  # a benchmark's poll interval, not a test
    raise TimeoutError(f"job {job_id} never became {wanted}")


def connect_crowd(service: ServiceProcess, count: int) -> Crowd:
    with Client(service.endpoint, QUICK) as admin:
        jdl = f'Executable = "/bin/sleep"; Arguments = "86400 %s"; Site = "{CROWD_SITE}";'
        admin.submit([f"{jdl} Parameters = {count};"], owner="crowd")
        token = admin.pilot_token(CROWD_SITE)
    crowd = Crowd(CrowdSpec(service.endpoint, token, CROWD_SITE), count)
    if not crowd.wait_running(600):
        crowd.stop()
        raise TimeoutError("the connected pilots did not get their jobs Running in time")
    return crowd


def run_kills(
    home: Path, kills: int, connected: int, pilot_command: list[str]
) -> list[tuple[int, float, float]]:
    """The benchmark's rounds, the pilot started with ``pilot_command`` and the pilot's
    arguments: (job, kill acknowledged, job seen Killed) per kill, on ``time.time()``'s clock."""
    service = ServiceProcess.start_central(home / "home")
    os.environ["DIRAC_LIKE_IDENTITY"] = str(service.identity_path)  # its admin: ours, pilots'
    crowd = connect_crowd(service, connected) if connected else None
    pilot = subprocess.Popen(
        [
            *pilot_command,
            *("--server", service.endpoint, "--site", SITE, "--ce", "ce", "--cores", "4"),
            *("--heartbeat", "30", "--idle-timeout", "0", "--request-interval", "0.2"),
            *("--workdir", str(home / "pilot")),
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    rounds = []
    try:
        with Client(service.endpoint, QUICK) as client:
            for _ in range(kills):
                (job_id,) = client.submit([JOB], owner="bench")
                wait_status(client, job_id, "Running")
                client.kill([job_id])
                acknowledged, wall = time.perf_counter(), time.time()
                seen = wait_status(client, job_id, "Killed") - acknowledged + wall
                rounds.append((job_id, wall, seen))
    finally:
        os.killpg(pilot.pid, signal.SIGTERM)
        pilot.wait(60)
        if crowd is not None:
            report = crowd.stop()
            print(
                f"{report.running:,} other pilots connected, {report.heartbeats:,} heartbeats "
                f"answered meanwhile, {report.errors} error replies"
            )
        service.stop()
    return rounds


def main(kills: int, connected: int) -> int:
    home = scratch_folder("bench-kill-")
    pilot = [sys.executable, "-m", "dirac_like", "pilot"]
    latencies = [
        seen - acknowledged for _, acknowledged, seen in run_kills(home, kills, connected, pilot)
    ]
    print(f"{len(latencies)} kills of a running payload: {_percentiles(latencies)}")
    if len(latencies) > 1:  # the pilot's first job pays its start-up (helper, caches) too
        print(
            f"the first kill {latencies[0] * 1000:.0f} ms; the {len(latencies) - 1} others: "
            f"{_percentiles(latencies[1:])}"
        )
    return 0


def _percentiles(latencies: list[float]) -> str:
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
    p50 = statistics.median(latencies)
    return f"p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, max {ordered[-1] * 1000:.0f} ms"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kills", type=int, default=50)
    parser.add_argument("--connected", type=int, default=0, help="other pilots connected")
    add_keep_option(parser)
    args = parser.parse_args()
    raise SystemExit(main(args.kills, args.connected))
