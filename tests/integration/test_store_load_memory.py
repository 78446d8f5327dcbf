"""What the SQLite store reads back at start-up is shaped for memory (issue 15, target 4: < 1 KB
per waiting job in the service): the jobs' equal strings and times are one object each."""

from __future__ import annotations

from pathlib import Path

from dirac_like.model import ChangeSet, JobRecord
from dirac_like.states import JobStatus
from dirac_like.store.sqlite import SqliteStore


def waiting_job(job_id: int, owner: str, submitted: float) -> JobRecord:
    return JobRecord(job_id, owner, "lhcb_mc", 1, 0, JobStatus.WAITING,
                     "Pilot Agent Submission", site="LCG.Site01.org", submitted=submitted,
                     updated=submitted)  # fmt: skip


def test_jobs_read_back_share_their_equal_strings_and_times(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "jobs.sqlite")
    try:
        jobs = [waiting_job(n, f"user{n % 2}", 1000.5 + n // 3) for n in range(1, 7)]
        store.commit(ChangeSet(new_jobs=[(job, b"\x80") for job in jobs]))
        loaded = sorted(store.load().jobs, key=lambda job: job.job_id)
    finally:
        store.close()

    assert [(j.owner, j.submitted, j.updated) for j in loaded] == [
        (j.owner, j.submitted, j.updated) for j in jobs
    ]
    first, *others = loaded
    for attribute in ("group", "minor_status", "site"):
        assert all(getattr(job, attribute) is getattr(first, attribute) for job in others)
    assert loaded[2].owner is first.owner and loaded[1].owner is not first.owner
    assert loaded[1].submitted is first.submitted is first.updated  # 1000.5, three times
    assert loaded[3].submitted is not first.submitted  # 1001.5
