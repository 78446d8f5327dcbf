"""The last lines each running job printed, as its pilot sent them with its latest heartbeat.

Kept in memory only (as DIRAC's job monitoring keeps the peek data): a restarted service shows
nothing until the next heartbeat. Bounded: a tail is cut to :data:`MAX_TAIL_CHARS`, and only the
:data:`MAX_JOBS` most recently updated jobs are kept.
"""

from __future__ import annotations

from collections import OrderedDict

MAX_TAIL_CHARS = 4096
MAX_JOBS = 10_000


class StdoutTails:
    def __init__(self, max_jobs: int = MAX_JOBS) -> None:
        self.max_jobs = max_jobs
        self._tails: OrderedDict[int, str] = OrderedDict()

    def keep(self, job_id: int, tail: str) -> None:
        """Remember ``tail`` (its last MAX_TAIL_CHARS characters) as the job's latest."""
        self._tails.pop(job_id, None)
        self._tails[job_id] = tail[-MAX_TAIL_CHARS:]
        while len(self._tails) > self.max_jobs:
            self._tails.popitem(last=False)

    def latest(self, job_id: int) -> str:
        """The job's latest tail, "" if none was received."""
        return self._tails.get(job_id, "")

    def forget(self, job_id: int) -> None:
        self._tails.pop(job_id, None)
