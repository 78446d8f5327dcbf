#!/usr/bin/env python3
"""Restart of the central service on a kept store: how long until it serves, and its CPU.

    # once: a home with 1M waiting jobs (bench_match.py keeps it with --pools; grow_store.py
    # multiplies it for 10M), then, with each checkout's venv, from /tmp:
    python scripts/benchmarks/bench_restart.py POOL/waiting-1000000 --rounds 2
    python scripts/benchmarks/bench_restart.py POOL/waiting-1000000 --without-snapshot

``POOL/waiting-N`` is a folder holding ``home/`` (the service's home, its store in it) and
``bench.toml``, as ``bench_match.py --pools POOL`` leaves it. Each round starts a central
service on it (its own process, as in production), waits until it listens, reads its CPU time
(user + system: less sensitive than the wall clock to other load on the machine) and resident
memory, asks how many jobs wait in its task queues (the same in every round: nothing is
matched), then stops it with SIGTERM and times the stop (a clean stop writes the job snapshot,
dirac_like/store/sqlite_snapshot.py, that the next start reads instead of the jobs table).
``--without-snapshot`` removes the snapshot before each start: the full read of the jobs table.
Code without the snapshot (an older checkout run with its own venv) reads the table anyway.
The store is kept as it is (only the snapshot file beside it changes).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import psutil  # type: ignore[import-untyped, unused-ignore]  # no stubs installed

from dirac_like.client import Client, RetryPolicy
from dirac_like.processes import ServiceProcess

SLOW = RetryPolicy(timeout=600, retries=0)
SNAPSHOT_SUFFIX = ".jobs-snapshot"


def one_round(pool: Path, without_snapshot: bool) -> dict[str, float]:
    store = pool / "home" / "jobs.sqlite"
    snapshot = store.with_name(store.name + SNAPSHOT_SUFFIX)
    if without_snapshot:
        snapshot.unlink(missing_ok=True)
    log = pool / "home" / "central.stderr"
    logged = log.stat().st_size if log.exists() else 0
    load = os.getloadavg()[0]
    started = time.perf_counter()
    service = ServiceProcess.start_central(pool / "home", pool / "bench.toml", timeout=3600)
    restart = time.perf_counter() - started
    try:
        process = psutil.Process(service.pid)
        cpu = sum(process.cpu_times()[:2])
        rss = process.memory_info().rss
        os.environ["DIRAC_LIKE_IDENTITY"] = str(service.identity_path)
        with Client(service.endpoint, SLOW) as client:
            waiting = sum(queue.waiting for queue in client.task_queues())
    finally:
        stopping = time.perf_counter()
        service.stop(grace=3600)
        stop = time.perf_counter() - stopping
    with open(log, "rb") as file:
        file.seek(logged)
        read_snapshot = b"jobs read from the snapshot" in file.read()
    return {
        "snapshot": float(read_snapshot),
        "restart": restart,
        "cpu": cpu,
        "rss": rss,
        "waiting": waiting,
        "stop": stop,
        "written": snapshot.stat().st_size if snapshot.exists() else 0,
        "load": load,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("pool", type=Path, help="a folder with home/ and bench.toml")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--without-snapshot", action="store_true")
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]}, {args.pool}")
    for number in range(1, args.rounds + 1):
        row = one_round(args.pool, args.without_snapshot)
        source = "the job snapshot" if row["snapshot"] else "the jobs table"
        print(
            f"round {number}: {row['waiting']:,.0f} waiting, jobs from {source}: restart "
            f"{row['restart']:.1f} s (CPU {row['cpu']:.1f} s), "
            f"{row['rss'] / 2**20:,.0f} MiB resident; stop {row['stop']:.1f} s "
            f"(snapshot after it: {row['written'] / 2**20:,.1f} MiB) "
            f"(load average {row['load']:.2f})",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
