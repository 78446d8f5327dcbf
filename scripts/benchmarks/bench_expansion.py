#!/usr/bin/env python3
"""A big parametric submission against another client's requests (issue 11, defect 14).

    python scripts/benchmarks/bench_expansion.py                      # slices of 5,000 (default)
    python scripts/benchmarks/bench_expansion.py --expand-slice 0     # made whole, as before

A real central service (own process, SQLite synchronous=full, secure). Client B pings it with
one request in flight all along; client A submits one parametric description of ``--jobs`` jobs
and then asks for the status of the last one until it is made. Reported: when A's submission was
acknowledged and when its last job was made (and the jobs made per second), the service's CPU
seconds meanwhile (jobs made per CPU second: less sensitive to a loaded machine than the wall
clock), and B's pings while the submission was being made: how many were answered, how long
they waited (the slowest is how long the service loop was held: the check of the whole
submission before it is acknowledged; then one slice at most, issue 11 defect 14).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from pathlib import Path

import psutil  # type: ignore[import-untyped, unused-ignore]  # no stubs installed

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_match import SLOW, config_text, percentile, wait_made
from scratch import add_keep_option, scratch_folder

from dirac_like.client import Client
from dirac_like.processes import ServiceProcess

BEFORE_SECONDS = 3.0  # pings alone, before the submission


def start_service(expand_slice: int) -> ServiceProcess:
    folder = scratch_folder("bench-expansion-")
    config = config_text("full") + f"\n[limits]\nexpand_slice = {expand_slice}\n"
    (folder / "bench.toml").write_text(config)
    service = ServiceProcess.start_central(folder / "home", folder / "bench.toml")
    os.environ["DIRAC_LIKE_IDENTITY"] = str(service.identity_path)
    return service


def ping_all_along(endpoint: str, stop: threading.Event, pings: list[tuple[float, float]]) -> None:
    """(sent at, latency) of each ping, one in flight, until ``stop``."""
    with Client(endpoint, SLOW) as client:
        while not stop.is_set():
            sent = time.perf_counter()
            client.ping()
            pings.append((sent, time.perf_counter() - sent))


def run(jobs: int, expand_slice: int, pingers: int) -> None:
    service = start_service(expand_slice)
    try:
        stop, pings = threading.Event(), []  # type: ignore[var-annotated]
        threads = [
            threading.Thread(target=ping_all_along, args=(service.endpoint, stop, pings))
            for _ in range(pingers)
        ]
        for thread in threads:
            thread.start()
        time.sleep(BEFORE_SECONDS)
        jdl = f'Executable = "/bin/true"; Arguments = "%s"; Parameters = {jobs};'
        process = psutil.Process(service.pid)
        with Client(service.endpoint, SLOW) as client:
            cpu_before = sum(process.cpu_times()[:2])
            started = time.perf_counter()
            job_ids = client.submit([jdl], owner="alice", group="users", timeout=600)
            acknowledged = time.perf_counter() - started
            wait_made(client, job_ids[-1])
            all_made = time.perf_counter() - started
            cpu = sum(process.cpu_times()[:2]) - cpu_before
        stop.set()
        for thread in threads:
            thread.join()
        during = [lat for sent, lat in pings if started <= sent <= started + all_made]
        before = [lat for sent, lat in pings if sent < started]
        print(f"expand_slice={expand_slice}, {jobs:,} jobs")
        print(
            f"  acknowledged after {acknowledged:.2f} s; last job made after {all_made:.2f} s: "
            f"{jobs / all_made:,.0f} jobs/s made; service CPU {cpu:.2f} s: "
            f"{jobs / cpu:,.0f} jobs per CPU second; load average {os.getloadavg()[0]:.2f}"
        )
        if not pingers:
            return
        alone = len(before) / (started - min(sent for sent, _ in pings))
        print(
            f"  pings before ({pingers} client(s)): {len(before)}, {alone:,.0f}/s, median "
            f"{statistics.median(before) * 1000:.1f} ms"
        )
        if during:
            print(
                f"  pings during: {len(during)}, {len(during) / all_made:,.0f}/s "
                f"({len(during) / all_made / alone:.0%} of before), median "
                f"{statistics.median(during) * 1000:.1f} ms, p99 "
                f"{percentile(during, 0.99) * 1000:.1f} ms, max {max(during) * 1000:.1f} ms"
            )
        else:
            print("  pings during: none answered")
    finally:
        service.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--expand-slice", type=int, default=5_000)
    parser.add_argument(
        "--pingers", type=int, default=1, help="clients pinging all along, one ping in flight each"
    )
    add_keep_option(parser)
    args = parser.parse_args()
    run(args.jobs, args.expand_slice, args.pingers)


if __name__ == "__main__":
    main()
