"""Time the store on the two loads the central service puts on it. Run by hand:

    PYTHONPATH=. python scripts/benchmarks/bench_store.py [--jobs 100000] [--batches 300]
    PYTHONPATH=. python scripts/benchmarks/bench_store.py --store both   # SQLite and PostgreSQL

1. one ChangeSet of N new jobs with 3 history rows each (a big parametric submission);
2. batches of 64 job updates, each job with 1 history row and 1 reply (pilot status reports);
3. load() of the whole store (service start-up).

Each is run with synchronous=full and synchronous=normal, in a fresh temporary folder (SQLite)
or a fresh database (PostgreSQL: on the server of ``--postgres-url``, else on a throw-away one,
fsync on, started for the run by scripts/postgres-local.sh).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import msgpack
from scratch import add_keep_option, scratch_folder
from throwaway_postgres import new_database, postgres_server

from dirac_like.model import (
    ChangeSet,
    HistoryEntry,
    JobRecord,
    Requirements,
    StoredReply,
    TaskQueueRow,
)
from dirac_like.states import JobStatus
from dirac_like.store.base import Store, open_store

BATCH_SIZE = 64


def make_jobs(count: int, now: float) -> tuple[list[JobRecord], ChangeSet]:
    description = msgpack.packb({"Executable": "/bin/echo", "Arguments": "hello", "CPUTime": 3600})
    jobs = [
        JobRecord(job_id, "alice", "lhcb_user", 1, 5, JobStatus.WAITING, submitted=now, updated=now)
        for job_id in range(1, count + 1)
    ]
    history = [
        HistoryEntry(job.job_id, status, "", "", now, "JobManager")
        for job in jobs
        for status in ("Received", "Checking", "Waiting")
    ]
    changes = ChangeSet(
        new_task_queues=[TaskQueueRow(1, "alice", "lhcb_user", Requirements())],
        new_jobs=[(job, description) for job in jobs],
        history=history,
    )
    return jobs, changes


def update_batch(jobs: list[JobRecord], batch: int, now: float) -> ChangeSet:
    start = (batch * BATCH_SIZE) % len(jobs)
    changes = ChangeSet()
    for job in jobs[start : start + BATCH_SIZE]:
        job.status = JobStatus.RUNNING
        job.minor_status = f"Application (batch {batch})"
        job.heartbeat_at = job.updated = now
        changes.changed_jobs[job.job_id] = job
        changes.history.append(HistoryEntry(job.job_id, "Running", job.minor_status, "", now, "p"))
        reply = msgpack.packb({"v": 1, "ok": True, "result": None})
        changes.replies.append(StoredReply(f"req-{batch}-{job.job_id}", reply, now))
    return changes


def open_bench_store(folder: Path, synchronous: str, postgres_url: str) -> Store:
    """A fresh store: a new database on ``postgres_url`` if given, else an SQLite file."""
    url = new_database(postgres_url) if postgres_url else str(folder / "bench.sqlite")
    return open_store(url, synchronous=synchronous)


def run(synchronous: str, job_count: int, batches: int, postgres_url: str = "") -> None:
    folder = scratch_folder("bench-store-")
    store = open_bench_store(folder, synchronous, postgres_url)
    now = time.time()
    jobs, changes = make_jobs(job_count, now)
    started = time.perf_counter()
    store.commit(changes)
    insert_s = time.perf_counter() - started
    started = time.perf_counter()
    for batch in range(batches):
        store.commit(update_batch(jobs, batch, now))
    update_s = time.perf_counter() - started
    started = time.perf_counter()
    loaded = store.load()
    load_s = time.perf_counter() - started
    store.close()
    updates = batches * BATCH_SIZE
    print(f"{'postgresql' if postgres_url else 'sqlite'}, synchronous={synchronous}")
    print(f"  insert {job_count} jobs + {3 * job_count} history rows: {insert_s:.3f} s")
    print(
        f"  {batches} batches of {BATCH_SIZE} updates (+1 history, +1 reply each): {update_s:.3f} s"
        f" = {updates / update_s:,.0f} job updates/s, {batches / update_s:,.0f} commits/s"
    )
    print(f"  load {len(loaded.jobs)} jobs, {len(loaded.replies)} replies: {load_s:.3f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--batches", type=int, default=300)
    parser.add_argument("--store", choices=["sqlite", "postgresql", "both"], default="sqlite")
    parser.add_argument("--postgres-url", default="", help="default: a throw-away server")
    add_keep_option(parser)
    args = parser.parse_args()
    if args.store in ("sqlite", "both"):
        for synchronous in ("full", "normal"):
            run(synchronous, args.jobs, args.batches)
    if args.store in ("postgresql", "both"):
        with postgres_server(args.postgres_url) as url:
            for synchronous in ("full", "normal"):
                run(synchronous, args.jobs, args.batches, url)


if __name__ == "__main__":
    main()
