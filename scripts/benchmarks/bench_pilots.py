#!/usr/bin/env python3
"""Jobs per second end to end through the real central service, with simulated pilots.

    python scripts/benchmarks/bench_pilots.py                      # 20,000 jobs, 1,000 pilots
    python scripts/benchmarks/bench_pilots.py --jobs 5000 --pilots 200
    python scripts/benchmarks/bench_pilots.py --peers-python /tmp/peers/bin/python   # with peers
    python scripts/benchmarks/bench_pilots.py --apart   # pilots as before pilot_turn

A fresh central service (its own process, SQLite synchronous=full) gets one parametric
submission of ``--jobs`` jobs with zero-length payloads; ``--pilots`` simulated pilots (one
thread, real protocol: one ``pilot_turn`` per job, its end report with the next request, the
match recorded Running in the same durable commit; with ``--apart``, as pilots before it:
request_job, Running, Done, each a durable commit; a pilot token of their site, as a director
hands out) run them. Reported:
jobs/s from the first pilot started to the last job Done, and the CPU seconds the central
service's process spent meanwhile (less sensitive than wall time to other load on the machine).

First lines, in the same run: the floor, a bare ZeroMQ + SQLite dispatcher doing the same three
durable updates per job for as many bare pilots (bare_dispatcher.py); the same floor in the
shape of ``pilot_turn`` (one request per job: the last Done and the next match); and, with
``--peers-python`` (a Python with scripts/benchmarks/peers/requirements.txt installed), the
no-op tasks per second of Ray, Dask, Parsl and Celery (peers/bench_peers.py). The last line
gives the ratios to them.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import time
from pathlib import Path

import psutil  # type: ignore[import-untyped, unused-ignore]  # no stubs installed
from bare_dispatcher import floor_rate
from scratch import add_keep_option, scratch_folder

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


SITE = "SIM.Site0.org"


def done_count(client: Client) -> int:
    """Jobs Done so far (a count in the service, not a listing of every job)."""
    return client.select_jobs("status=Done", sample=0).count


PEERS = Path(__file__).resolve().parent / "peers" / "bench_peers.py"


def peer_rates(python: str, tasks: int, names: list[str]) -> dict[str, float]:
    """Tasks/s of each peer that ran (peers/bench_peers.py in the peers' own environment)."""
    command = [python, str(PEERS), "--tasks", str(tasks), "--only", *names]
    run = subprocess.run(command, capture_output=True, text=True, timeout=1800)
    rates = {}
    for line in run.stdout.splitlines():
        print(line, flush=True)
        found = re.match(r"peer (\w+): (\d+) tasks/s", line)
        if found:
            rates[found.group(1)] = float(found.group(2))
    return rates


def main(jobs: int, pilots: int, peers_python: str, peers: list[str], apart: bool = False) -> int:
    home = scratch_folder("bench-pilots-")
    floor = floor_rate(jobs, pilots, home)
    print(f"floor: bare ZeroMQ + SQLite dispatcher, {pilots:,} bare pilots: {floor:,.0f} jobs/s")
    turn_floor = floor_rate(jobs, pilots, home, turns=True)
    print(f"floor in turns: the same, one request per job: {turn_floor:,.0f} jobs/s")
    rates = peer_rates(peers_python, jobs, peers) if peers_python else {}
    (home / "bench.toml").write_text(CONFIG)
    service = ServiceProcess.start_central(home / "home", home / "bench.toml")
    with Client(service.endpoint, SLOW, identity=service.identity) as client:
        token = client.pilot_token(SITE)  # what a site director hands its pilots
    fabric = SimulatedFabric(service.endpoint, seed=1, identity=token, turns=not apart)
    try:
        with Client(service.endpoint, SLOW, identity=service.identity) as client:
            jdl = f'Executable = "/bin/true"; Arguments = "sleep=0 %s"; Parameters = {jobs};'
            client.submit([jdl], owner="bench", group="bench")
            central = psutil.Process(service.pid)
            cpu_before = sum(central.cpu_times()[:2])
            generator = psutil.Process()  # the simulated pilots' thread (and the progress poll)
            generator_before = sum(generator.cpu_times()[:2])
            started = time.perf_counter()
            refs = [
                fabric.submit(
                    PilotRequest(
                        pilot_id=f"sim-{n}",
                        command=[],
                        env={
                            "DIRAC_LIKE_SITE": SITE,
                            "DIRAC_LIKE_CE": f"ce{n % 10}",
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
            generator_cpu = sum(generator.cpu_times()[:2]) - generator_before
            done = done_count(client)
        states = fabric.status(refs)
        failed = sum(1 for state in states.values() if state is PilotState.FAILED)
    finally:
        fabric.close()
        service.stop()
    print(
        f"{done:,} of {jobs:,} jobs Done through {pilots:,} simulated pilots in {elapsed:.1f} s: "
        f"{done / elapsed:,.0f} jobs/s ({failed} pilots failed); central service CPU "
        f"{cpu:.1f} s, {cpu / max(done, 1) * 1e6:.0f} us per job; simulated pilots' process CPU "
        f"{generator_cpu:.1f} s"
    )
    rate = done / elapsed
    ratios = [f"{rate / floor:.2f}x the bare floor", f"{rate / turn_floor:.2f}x the floor in turns"]
    ratios += [f"{rate / value:.2f}x {name}" for name, value in rates.items()]
    print(f"ratios: {', '.join(ratios)}")
    return 0 if done == jobs else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--pilots", type=int, default=1_000)
    parser.add_argument("--peers-python", default="", help="a Python with the peers installed")
    parser.add_argument("--peers", nargs="+", default=["ray", "dask", "parsl", "celery"])
    parser.add_argument(
        "--apart", action="store_true", help="pilots as before pilot_turn: 3 requests a job"
    )
    add_keep_option(parser)
    args = parser.parse_args()
    raise SystemExit(main(args.jobs, args.pilots, args.peers_python, args.peers, args.apart))
