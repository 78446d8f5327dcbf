#!/usr/bin/env python3
"""`/bin/true` jobs end to end through real local pilots, against the bare spawn rate.

    python scripts/benchmarks/bench_local.py                     # 1,000 jobs, 2 pilots
    python scripts/benchmarks/bench_local.py --jobs 2000 --pilots 2 --cores 8
    python scripts/benchmarks/bench_local.py --executable /bin/echo   # with an output sandbox

First the bare rate, printed as the first line: ``--pilots`` threads each spawning and reaping
``/bin/true`` with ``subprocess.run`` (what it costs this machine to start a process, and nothing
else). Then the real thing: a fresh central service (durable SQLite), the jobs submitted in one
parametric request, and ``--pilots`` real ``dirac-like pilot`` processes of ``--cores`` cores
each; the clock runs from the first job seen Running to the last Done, and the ratio to the bare
rate of the same run is printed. Each job goes through everything a grid job does: match,
Running report, working folder, its own session under its keeper and the watchdog, output
sandbox (std.out, std.err: packed and uploaded when not empty), final report with the exit
code. Afterwards every job is checked: Done, Running in its history, and with an output sandbox
when it printed something.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from scratch import add_keep_option, scratch_folder

from dirac_like.client import Client, RetryPolicy
from dirac_like.processes import ServiceProcess

QUICK = RetryPolicy(timeout=30, retries=2)


def bare_rate(count: int, threads: int) -> float:
    """Spawns of /bin/true per second, ``threads`` at a time."""

    def spawn(n: int) -> None:
        for _ in range(n):
            subprocess.run(["/bin/true"], check=True)

    workers = [threading.Thread(target=spawn, args=(count // threads,)) for _ in range(threads)]
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return (count // threads * threads) / (time.perf_counter() - started)


def start_pilot(endpoint: str, workdir: Path, cores: int, number: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dirac_like",
            "pilot",
            "--server",
            endpoint,
            "--site",
            "BENCH.Local.org",
            "--ce",
            "ce",
            "--cores",
            str(cores),
            "--heartbeat",
            "30",
            "--idle-timeout",
            "0",
            "--request-interval",
            "0.05",
            "--workdir",
            str(workdir),
            "--pilot-id",
            f"bench-{number}",
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def pilot_rate(jobs: int, pilots: int, cores: int, executable: str) -> float:
    home = scratch_folder("bench-local-")
    service = ServiceProcess.start_central(home / "home")
    os.environ["DIRAC_LIKE_IDENTITY"] = str(service.identity_path)  # its admin: ours, pilots'
    started: list[subprocess.Popen[bytes]] = []
    try:
        with Client(service.endpoint, QUICK) as client:
            jdl = f'Executable = "{executable}"; Parameters = {jobs}; CPUTime = 60;'
            client.submit([jdl], owner="bench")
            started = [
                start_pilot(service.endpoint, home / f"pilot{n}", cores, n) for n in range(pilots)
            ]
            first = wait_count(client, ("Running", "Done"), 1)
            last = wait_count(client, ("Done",), jobs)
            failed = client.list_jobs(status="Failed", limit=5)
            if failed:
                raise SystemExit(f"jobs failed, e.g. {failed[0]}")
            check_jobs(client, printed=executable != "/bin/true")
    finally:
        for popen in started:
            os.killpg(popen.pid, signal.SIGTERM)
        for popen in started:
            popen.wait(60)
        service.stop()
    return (jobs - 1) / (last - first)


def wait_count(client: Client, statuses: tuple[str, ...], count: int) -> float:
    """Poll until ``count`` jobs are in ``statuses``; returns when that was seen. (Every 0.1 s:
    each poll lists the jobs, work for the service that the pilots compete with.)"""
    while True:
        seen = sum(len(client.list_jobs(status=status, limit=10**7)) for status in statuses)
        if seen >= count:
            return time.perf_counter()
        time.sleep(0.1)  # a benchmark's poll interval, not a test


def check_jobs(client: Client, printed: bool) -> None:
    """Every job went through Running to Done, with an output sandbox if it printed."""
    for row in client.list_jobs(status="Done", limit=10**7):
        states = [entry.status for entry in client.history(row.job_id)]
        if "Running" not in states:
            raise SystemExit(f"job {row.job_id} was never reported Running: {states}")
        if printed and not client.job_output(row.job_id).sha256:
            raise SystemExit(f"job {row.job_id} printed but has no output sandbox")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--pilots", type=int, default=2)
    parser.add_argument("--cores", type=int, default=1, help="cores (job slots) per pilot")
    parser.add_argument("--executable", default="/bin/true", help="what each job runs")
    add_keep_option(parser)
    args = parser.parse_args()
    bare = bare_rate(max(args.jobs, 1000), args.pilots)
    print(f"bare spawn of /bin/true, {args.pilots} at a time: {bare:,.0f}/s", flush=True)
    through = pilot_rate(args.jobs, args.pilots, args.cores, args.executable)
    print(
        f"{args.jobs} {args.executable} jobs via {args.pilots} local pilot(s) x {args.cores} "
        f"core(s): {through:,.1f} jobs/s = {through / bare:.1%} of the bare spawn rate"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
