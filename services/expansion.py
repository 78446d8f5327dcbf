"""Big submissions expanded in slices (issue 11, defect 14), so that other requests are served
between the slices.

A submission of more than ``limits.expand_slice`` jobs is checked whole when it arrives (parsed,
expanded, every limit, every description's size, its input sandboxes), as any other; then its
job ids are reserved (``first .. first + count - 1``), the submission itself is recorded as one
:class:`~dirac_like.model.SubmissionRecord` (its sources as given, small) and its first slice of
jobs is made, and the reply is sent once that batch is committed. The other slices are made by
the service loop, one per paced piece of background work (services/pacing.py), each committed
with the record's progress in the same transaction.

Why acknowledge at once and not after the last slice: a submission acknowledged only at the end
would have committed its first slices before the client knows of them; after a crash the
client's retry would make those jobs again (or the service would have to recognise a half-made
submission by its request id). Recorded whole at the acknowledgement instead, an acknowledged
submission is never lost nor made twice: after a crash the service parses the stored sources
again (the expansion is deterministic; no limit is applied again, the submission was accepted)
and makes the jobs from the stored progress on, with the ids the client was given. Meanwhile a
job id of the range not made yet is not found by most requests (it exists a moment
later, and ``job status`` shows it Received, "being made"), and the owner's waiting-job limit
counts the jobs still to make.

Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from dirac_like.description import JobDescription
from dirac_like.model import Requirements, SubmissionRecord

from .journal import Journal


@dataclass
class PreparedJobs:
    """The jobs of a submission, checked and ready to be made: one list per part, item i of
    each for job i (no object per job: a bulk submission has hundreds of thousands)."""

    descriptions: list[JobDescription]
    packed: list[bytes]  # each one's stored description
    sandboxes: list[str]  # sha256 of each one's input sandbox ('' if none)
    failures: list[str]  # why each fails at once (input data not in the catalog), '' if not
    requirements: list[Requirements]  # the same object for the jobs that need the same

    def __len__(self) -> int:
        return len(self.descriptions)

    def part(self, start: int, end: int) -> PreparedJobs:
        """Jobs ``start`` to ``end - 1``."""
        return PreparedJobs(
            self.descriptions[start:end],
            self.packed[start:end],
            self.sandboxes[start:end],
            self.failures[start:end],
            self.requirements[start:end],
        )


class SharedRequirements:
    """The requirements of many jobs, one object per distinct requirements: the jobs of a
    parametric submission share one or a few, so this is cheaper than
    ``JobDescription.requirements`` for each, and the caller can look their task queue up once
    per distinct object (``is``)."""

    def __init__(self) -> None:
        self.known: dict[tuple[object, ...], Requirements] = {}

    def of(self, d: JobDescription) -> Requirements:
        key = (d.sites, d.banned_sites, d.platforms, d.tags, d.grid_ces, d.number_of_processors,
               d.max_processors, d.smp_granularity, d.max_ram_mb, d.cpu_time)  # fmt: skip
        found = self.known.get(key)
        if found is None:
            found = self.known[key] = d.requirements()
        return found


@dataclass
class Expansion:
    record: SubmissionRecord
    jobs: PreparedJobs  # all of the submission's jobs, in order

    @property
    def left(self) -> int:
        return self.record.count - self.record.expanded


class ExpansionBook:
    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self.expansions: dict[int, Expansion] = {}  # by first job id, oldest first

    def start(self, record: SubmissionRecord, jobs: PreparedJobs) -> None:
        """A submission accepted whole, to be expanded from ``record.expanded`` on."""
        self.expansions[record.first_job_id] = Expansion(record, jobs)
        self.journal.changes.submissions[record.first_job_id] = record

    @property
    def pending(self) -> bool:
        return bool(self.expansions)

    @property
    def end_job_id(self) -> int:
        """One past the last job id reserved (0: none)."""
        return max((e.record.first_job_id + e.record.count for e in self.expansions.values()),
                   default=0)  # fmt: skip

    def still_to_make(self, owner: str) -> int:
        """Jobs of ``owner`` accepted but not made yet (they count as waiting)."""
        return sum(e.left for e in self.expansions.values() if e.record.owner == owner)

    def to_make(self, job_id: int) -> SubmissionRecord | None:
        """The submission whose job ``job_id`` is reserved and not made yet (None: none)."""
        for first, expansion in self.expansions.items():
            if expansion.record.expanded <= job_id - first < expansion.record.count:
                return expansion.record
        return None

    def next_slice(self, size: int) -> tuple[SubmissionRecord, PreparedJobs] | None:
        """The oldest submission in progress and its next ``size`` jobs, marked made (the
        caller makes them in the same batch): (the record before, the jobs)."""
        for first, expansion in self.expansions.items():
            before = expansion.record
            end = min(before.count, before.expanded + size)
            expansion.record = replace(before, expanded=end)
            done = end >= before.count
            self.journal.changes.submissions[first] = None if done else expansion.record
            if done:
                del self.expansions[first]
            return before, expansion.jobs.part(before.expanded, end)
        return None
