"""Child process of test_store_crash.py: commit numbered batches until killed.

    python store_crash_child.py STORE_PATH SYNCHRONOUS JOBS_PER_BATCH

Batch n inserts jobs n*K+1 … n*K+K (Waiting, one history row each), moves the jobs of batch n-1 to
Running (minor status "batch n", one history row each), bans site "site-n", stores reply "req-n"
and sets the usage of group "crash" to n. It prints n on stdout only after commit returned.
"""

from __future__ import annotations

import itertools
import sys

from dirac_like.model import (
    ChangeSet,
    HistoryEntry,
    JobRecord,
    SiteRecord,
    StoredReply,
    UsageRecord,
)
from dirac_like.states import JobStatus
from dirac_like.store.base import open_store


def batch(number: int, size: int, previous: list[JobRecord]) -> tuple[ChangeSet, list[JobRecord]]:
    first = number * size + 1
    jobs = [
        JobRecord(job_id, "crash", "crash", 1, 1, JobStatus.WAITING, submitted=float(number))
        for job_id in range(first, first + size)
    ]
    changes = ChangeSet(
        new_jobs=[(job, b"\x80") for job in jobs],  # b"\x80": msgpack of {}
        history=[
            HistoryEntry(job.job_id, "Waiting", "", "", float(number), "child") for job in jobs
        ],
        sites={f"site-{number}": SiteRecord(f"site-{number}", True, "crash test", float(number))},
        usage={("crash", ""): UsageRecord("crash", "", float(number), float(number))},
        replies=[StoredReply(f"req-{number}", str(number).encode(), float(number))],
    )
    for job in previous:
        job.status, job.minor_status = JobStatus.RUNNING, f"batch {number}"
        changes.changed_jobs[job.job_id] = job
        changes.history.append(
            HistoryEntry(job.job_id, "Running", job.minor_status, "", float(number), "child")
        )
    return changes, jobs


def main() -> None:
    path, synchronous, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
    store = open_store(path, synchronous=synchronous)
    previous: list[JobRecord] = []
    for number in itertools.count():
        changes, previous = batch(number, size, previous)
        store.commit(changes)
        print(number, flush=True)


if __name__ == "__main__":
    main()
