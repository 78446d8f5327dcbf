#!/usr/bin/env python3
"""Multiply the waiting jobs of a stopped service's SQLite store, in SQL, for scale runs.

    python scripts/benchmarks/grow_store.py HOME/jobs.sqlite --times 10

Filling 10M waiting jobs through the service takes as long as the service takes to make them
(minutes on a quiet machine, the better part of an hour on a loaded one). For what is measured
*after* the fill (memory per waiting job, restart, matching at that size), the store only has to
hold the jobs: this copies each Waiting job ``times - 1`` times (its row, description and
history, with new job ids after the last one; same owner, group and task queue), in one
transaction per copy, so that a store filled through the service with N jobs holds N * times.
The service must be stopped. The bulk submission rate is measured through the service
(bench_match.py, bench_expansion.py), never with this.
"""

from __future__ import annotations

import argparse
import sqlite3
import time
from pathlib import Path

COPY_JOBS = """INSERT INTO jobs SELECT job_id + :offset, owner, grp, task_queue_id, priority,
    status, minor_status, application_status, site, job_name, pilot_id, attempt, reschedules,
    submitted, updated, matched_at, deadline, heartbeat_at, kill_requested
    FROM jobs WHERE status = 'Waiting' AND job_id <= :last"""
COPY_DESCRIPTIONS = """INSERT INTO descriptions SELECT d.job_id + :offset, d.description
    FROM descriptions d JOIN jobs j ON j.job_id = d.job_id
    WHERE j.status = 'Waiting' AND j.job_id <= :last"""
COPY_HISTORY = """INSERT INTO history (job_id, status, minor_status, application_status, time,
    source) SELECT h.job_id + :offset, h.status, h.minor_status, h.application_status, h.time,
    h.source FROM history h JOIN jobs j ON j.job_id = h.job_id
    WHERE j.status = 'Waiting' AND j.job_id <= :last ORDER BY h.id"""
COPY_SHARED_HISTORY = """INSERT INTO shared_history (first_job_id, last_job_id, status,
    minor_status, application_status, time, source) SELECT first_job_id + :offset,
    min(last_job_id, :last) + :offset, status, minor_status, application_status, time, source
    FROM shared_history WHERE first_job_id <= :last ORDER BY id"""


def grow(path: Path, times: int) -> None:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA cache_size = -262144")
    (last,) = db.execute("SELECT max(job_id) FROM jobs").fetchone()
    (waiting,) = db.execute("SELECT count(*) FROM jobs WHERE status = 'Waiting'").fetchone()
    print(f"{path}: {waiting:,} waiting jobs of ids up to {last:,}; copying them {times - 1} times")
    for copy in range(1, times):
        started = time.perf_counter()
        db.execute("BEGIN IMMEDIATE")
        for statement in (COPY_JOBS, COPY_DESCRIPTIONS, COPY_HISTORY, COPY_SHARED_HISTORY):
            db.execute(statement, {"offset": copy * last, "last": last})
        db.execute("COMMIT")
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        print(f"  copy {copy}: {time.perf_counter() - started:.1f} s", flush=True)
    (total,) = db.execute("SELECT count(*) FROM jobs WHERE status = 'Waiting'").fetchone()
    print(f"{total:,} waiting jobs now")
    db.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("store", type=Path)
    parser.add_argument("--times", type=int, default=10)
    args = parser.parse_args()
    grow(args.store, args.times)


if __name__ == "__main__":
    main()
