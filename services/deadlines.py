"""When each timed job must be looked at again: match leases, stall limits, hold-offs.

A job in a timed status (Matched, Running, Completing, Stalled, Rescheduled) has a ``deadline``.
:meth:`Deadlines.arm` files it in a heap under (deadline, job, attempt, status); :meth:`due` hands
back the jobs whose deadline passed and that are still in the attempt and status they were filed
under. Entries that went stale (the job moved on) are dropped; a job whose deadline was pushed back
since (heartbeats) is filed again. What to *do* with a due job is the job book's decision.

Pure: no I/O, ``now`` passed in.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator, Mapping

from dirac_like.model import JobRecord
from dirac_like.states import JobStatus

S = JobStatus
TIMED_STATUSES = frozenset({S.MATCHED, S.RUNNING, S.COMPLETING, S.STALLED, S.RESCHEDULED})


class Deadlines:
    def __init__(self) -> None:
        self._heap: list[tuple[float, int, int, str]] = []  # (deadline, job, attempt, status)

    def __len__(self) -> int:
        return len(self._heap)

    def arm(self, job: JobRecord) -> None:
        """Look at ``job`` again at its ``deadline`` (if its status is a timed one)."""
        if job.status in TIMED_STATUSES:
            heapq.heappush(self._heap, (job.deadline, job.job_id, job.attempt, job.status.value))

    def next(self) -> float | None:
        """The earliest deadline filed (it may have gone stale), or None."""
        return self._heap[0][0] if self._heap else None

    def due(self, now: float, jobs: Mapping[int, JobRecord]) -> Iterator[JobRecord]:
        """The jobs whose deadline passed by ``now``, still as they were when filed."""
        heap = self._heap
        while heap and heap[0][0] <= now:
            _, job_id, attempt, status = heapq.heappop(heap)
            job = jobs.get(job_id)
            if job is None or job.attempt != attempt or job.status.value != status:
                continue  # the job moved on since this deadline was filed
            if job.deadline > now:
                self.arm(job)  # pushed back (heartbeats) since
                continue
            yield job
