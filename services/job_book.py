"""The job book: every job of the central service, its task queue, and the one way it changes.

``JobBook`` holds the job records, the task queues they wait in (through the
:class:`~dirac_like.matching.Matcher`), how many jobs are active per site (the monitoring
agent's probe jobs, group ``probes``, are not counted: a site's limit does not hold them back),
and the deadlines of timed jobs. Every change of a job goes through a method here, and the
status changes through :meth:`JobBook.set_status` alone: it checks the transition against the one
table (:mod:`dirac_like.states`), keeps the task queues, the site counts, the fair-share
accounting and the deadlines in step, and records the change (history row + changed record) in the
:class:`~services.journal.Journal` for the store. When an attempt first reaches a final
status it also writes the attempt's accounting record (:mod:`dirac_like.accounting`) into the
same change set, so the record is committed with the status, never without it and never twice.
The counts the metrics endpoint shows (jobs by status, site and group; submissions, matches,
transitions) are kept here too, as the jobs change. What happens when a deadline passes
(:meth:`expire`) is decided here too. :meth:`validate` checks that the indexes agree with the jobs.

Pure: no I/O, ``now`` passed in. Parsing descriptions, sandboxes and pilots are other parts'
business; the caller hands the book what it needs.
"""

from __future__ import annotations

import itertools
import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from operator import attrgetter
from typing import Any

import msgpack

from dirac_like.accounting import job_record, later_usage, usage_from_heartbeat
from dirac_like.config import DrainConfig, JobsConfig
from dirac_like.description import JobDescription, with_job_id
from dirac_like.draining import Hold, Holds
from dirac_like.errors import JobNotFound, StaleAttempt, job_not_found_message
from dirac_like.matching import Match, Matcher, TaskQueue
from dirac_like.model import HistoryEntry, JobRecord, Requirements, SharedHistory, TaskQueueRow
from dirac_like.monitoring import PROBE_GROUP
from dirac_like.protocol import JobUsage, PilotResources
from dirac_like.shares import FairShare
from dirac_like.states import ACTIVE_STATUSES, FINAL_STATUSES, JobStatus, check_transition
from dirac_like.usage_series import SeriesMark, keep_sample

from .deadlines import Deadlines
from .journal import Journal

log = logging.getLogger(__name__)

S = JobStatus
# What a submitted job goes through at once: (status, minor status, source).
SUBMISSION_PATH = (
    (S.RECEIVED, "Job accepted", "JobManager"),
    (S.CHECKING, "JobSanity", "JobSanity"),
    (S.WAITING, "Pilot Agent Submission", "JobScheduling"),
)
for _earlier, _later in itertools.pairwise(SUBMISSION_PATH):
    check_transition(0, _earlier[0], _later[0])  # the path follows the one transition table
_PATH_VALUES = tuple((status.value, minor, source) for status, minor, source in SUBMISSION_PATH)


def submission_entries(minor: str, now: float) -> tuple[HistoryEntry, ...]:
    """The history rows of SUBMISSION_PATH at ``now``, the last with ``minor`` (job id 0)."""
    (first, second, last) = _PATH_VALUES
    return (
        HistoryEntry(0, first[0], first[1], "", now, first[2]),
        HistoryEntry(0, second[0], second[1], "", now, second[2]),
        HistoryEntry(0, last[0], minor, "", now, last[2]),
    )


def _note_submission_path(
    runs: list[SharedHistory], first_job_id: int, count: int, minor: str, now: float
) -> None:
    """Jobs ``first_job_id`` on (``count``) went along SUBMISSION_PATH at ``now`` (their Waiting
    step with ``minor``): the last run grows by them if it ends just before them with the same
    rows, else a run starts (a bulk submission's slice of 5,000 jobs is one run, or a few)."""
    last_job_id = first_job_id + count - 1
    if runs:
        run = runs[-1]
        last = run.entries[-1]
        if run.last_job_id == first_job_id - 1 and last.time == now and last.minor_status == minor:
            runs[-1] = run._replace(last_job_id=last_job_id)
            return
    runs.append(SharedHistory(first_job_id, last_job_id, submission_entries(minor, now)))


def _requested_site(requirements: Requirements) -> str:
    """The site a job shows while it waits: the one it asks for, else Multiple or ANY."""
    sites = requirements.sites
    return sites[0] if len(sites) == 1 else ("Multiple" if sites else "ANY")


_JOB_ID = attrgetter("job_id")
_PRIORITY = attrgetter("priority")
_OWNER = attrgetter("owner")
_TALLY_KEY = attrgetter("status", "site", "group")

# Where a job may be after the stall rule took an attempt away, before another pilot has it.
NOT_STARTED_AGAIN = frozenset({S.RESCHEDULED, S.WAITING})


@dataclass(frozen=True)
class LostAttempt:
    """An attempt the stall rule took from its pilot: enough to take its late Done
    (:meth:`JobBook.reported_job`) and to account for it as the attempt that ran."""

    attempt: int
    pilot_id: str
    site: str
    ce: str
    cores: int
    matched_at: float


def pack_description(description: JobDescription) -> bytes:
    """A job's description as the store keeps it."""
    return bytes(msgpack.packb(description.attributes, use_bin_type=True))


def _site_weight(job: JobRecord) -> int:
    """How much a job counts toward its site's limit of active jobs: a probe job nothing."""
    return 0 if job.group == PROBE_GROUP else 1


class JobBook:
    def __init__(
        self,
        config: JobsConfig,
        shares: FairShare,
        journal: Journal,
        drain: DrainConfig | None = None,
    ) -> None:
        self.config = config
        self.shares = shares
        self.journal = journal
        self.matcher = Matcher(shares)
        # multi-core pilots told to keep their free cores for a bigger job (not stored: after a
        # restart no pilot holds, and the next requests start holds again as needed)
        self.holds = Holds(drain or DrainConfig())
        self.deadlines = Deadlines()
        self.jobs: dict[int, JobRecord] = {}
        self.task_queue_rows: dict[int, TaskQueueRow] = {}
        # cores granted at the match to active jobs with a core range (not stored: after a
        # restart their task queue's minimum is counted)
        self.granted_cores: dict[int, int] = {}
        # the CE of each active job's pilot, for its accounting record (not stored: after a
        # restart the service fills it in from the pilot records)
        self.placed_ce: dict[int, str] = {}
        self.site_active: Counter[str] = Counter()
        self.waiting_by_owner: Counter[str] = Counter()  # jobs in Waiting, per owner
        # what the pilots' heartbeats last said the active jobs used (for a job that ends
        # without its pilot's final report: lost, killed while stalled)
        self.last_usage: dict[int, JobUsage] = {}
        # how much of each active job's usage series is kept (dirac_like/usage_series.py)
        self.sample_marks: dict[int, SeriesMark] = {}
        # the attempt (and its pilot) the stall rule took from each job not matched again since:
        # that attempt's late Done is the job's end (see :meth:`reported_job`). Not stored: after
        # a restart or a failover such a late report is refused as stale, as any other.
        self.lost_attempts: dict[int, LostAttempt] = {}
        # for the metrics: jobs by (status, site, group) now, and counts since start-up
        self.tally: Counter[tuple[JobStatus, str, str]] = Counter()
        self.entered: Counter[JobStatus] = Counter()  # transitions into each status
        self.submitted_count = 0
        self.matched_count = 0
        self.next_job_id = 1
        self.next_task_queue_id = 1

    # -- start-up --------------------------------------------------------------------------------

    def restore(
        self, task_queues: Iterable[TaskQueueRow], jobs: Iterable[JobRecord], now: float
    ) -> None:
        """Rebuild the indexes from stored rows (the shares' usage must be restored first)."""
        for row in task_queues:
            self._register_task_queue(row)
        self.next_task_queue_id = max(self.task_queue_rows, default=0) + 1
        ordered = sorted(jobs, key=_JOB_ID)
        self.jobs.update(zip(map(_JOB_ID, ordered), ordered, strict=True))
        self.tally.update(map(_TALLY_KEY, ordered))
        # Millions of waiting jobs at a restart: into their task queues in bulk, the others one
        # by one (what each needs depends on its status).
        waiting: dict[int, list[JobRecord]] = {}
        for job in ordered:
            if job.status is S.WAITING:
                waiting.setdefault(job.task_queue_id, []).append(job)
            else:
                self._restore_job(job, now)
        for queued in waiting.values():
            self._queue(queued[0]).push_many(map(_JOB_ID, queued), map(_PRIORITY, queued))
            self.waiting_by_owner.update(map(_OWNER, queued))
        self.next_job_id = ordered[-1].job_id + 1 if ordered else 1

    def _restore_job(self, job: JobRecord, now: float) -> None:
        """A job not Waiting, its record and tally already in place."""
        if job.status in ACTIVE_STATUSES:
            self.site_active[job.site] += _site_weight(job)
            account = self.shares.account(job.group, job.owner)
            account.advance(job.matched_at, self.shares.half_life)
            self.shares.start(job.group, job.owner, self.cores(job), job.matched_at)
            if job.status in (S.RUNNING, S.COMPLETING):
                # The service was down: give the pilot a full stalled window to reach us again.
                self._beat(job, max(job.heartbeat_at, now))
        self.deadlines.arm(job)

    def _register_task_queue(self, row: TaskQueueRow) -> TaskQueue:
        self.task_queue_rows[row.task_queue_id] = row
        return self.matcher.add_task_queue(
            TaskQueue(row.task_queue_id, row.owner, row.group, row.requirements)
        )

    def _queue(self, job: JobRecord) -> TaskQueue:
        """The live task queue for a job (re-created if it was dropped while empty)."""
        task_queue = self.matcher.task_queues.get(job.task_queue_id)
        if task_queue is None:
            task_queue = self._register_task_queue(self.task_queue_rows[job.task_queue_id])
        return task_queue

    # -- reading ---------------------------------------------------------------------------------

    def job(self, job_id: int) -> JobRecord:
        job = self.jobs.get(job_id)
        if job is None:
            raise JobNotFound(job_not_found_message(job_id))
        return job

    def jobs_by_ids(self, job_ids: list[int]) -> list[JobRecord]:
        """All the jobs, each once (in the order first named), or JobNotFound naming the first
        unknown id (then nothing is touched). Once: a job named twice in one kill or delete
        must not be acted on twice (the second change would fail halfway through)."""
        return [self.job(job_id) for job_id in dict.fromkeys(job_ids)]

    def held_job(self, job_id: int, attempt: int, pilot_id: str) -> JobRecord:
        """The job, if this pilot holds this attempt of it; else StaleAttempt. (No pilot holds a
        Rescheduled job: it keeps its last pilot's id until it waits again, not its attempt.)"""
        job = self.job(job_id)
        if job.attempt != attempt or job.pilot_id != pilot_id or job.status in NOT_STARTED_AGAIN:
            raise StaleAttempt(
                f"job {job_id}: attempt {attempt} by pilot {pilot_id!r} is not current "
                f"(current attempt {job.attempt}, pilot {job.pilot_id or 'none'!r}, "
                f"{job.status.value})"
            )
        return job

    def reported_job(
        self, job_id: int, attempt: int, pilot_id: str, status: JobStatus
    ) -> JobRecord:
        """The job a pilot reports ``status`` of: one it holds (:meth:`held_job`), or one whose
        attempt the stall rule took away from this pilot while its payload had in fact ended
        (the pilot died with the Done report in its outbox and came back after the job's stall
        window): that attempt's Done is the job's end as long as no other pilot has the job
        (Rescheduled, or Waiting again). Else StaleAttempt."""
        try:
            return self.held_job(job_id, attempt, pilot_id)
        except StaleAttempt:
            job = self.jobs[job_id]
            late_done = (
                status is S.DONE
                and (lost := self.lost_attempts.get(job_id)) is not None
                and (lost.attempt, lost.pilot_id) == (attempt, pilot_id)
                and job.status in NOT_STARTED_AGAIN
            )
            if not late_done:
                raise
            return job

    def cores(self, job: JobRecord) -> int:
        """The cores granted at the job's match (its task queue's minimum before one)."""
        granted = self.granted_cores.get(job.job_id)
        return granted or self.task_queue_rows[job.task_queue_id].requirements.cores

    # -- new jobs --------------------------------------------------------------------------------

    def add(
        self,
        description: JobDescription,
        owner: str,
        group: str,
        now: float,
        packed: bytes | None = None,
        minor: str = "",
        job_id: int = 0,
        task_queue: TaskQueue | None = None,
    ) -> JobRecord:
        """A new job, straight to Waiting along SUBMISSION_PATH. ``packed``:
        :func:`pack_description` of ``description``, if the caller has it; ``minor``: its minor
        status in Waiting, if not the usual one (no known CE can run it); ``job_id``: one
        :meth:`reserve` gave (0: the next one); ``task_queue``: :meth:`task_queue_for` its
        requirements, if the caller has it."""
        if not job_id:
            job_id = self.reserve(1)
        if description.holds_job_id:
            description, packed = with_job_id(description, job_id), None  # %j, as DIRAC's JobDB
            task_queue = None  # its requirements may hold the job id too
        if task_queue is None:
            task_queue = self.task_queue_for(owner, group, description.requirements())
        blob = packed or pack_description(description)
        return self.add_run([description], [blob], owner, group, now, task_queue, minor, job_id)[0]

    def add_run(
        self,
        descriptions: Sequence[JobDescription],
        packed: Sequence[bytes],
        owner: str,
        group: str,
        now: float,
        task_queue: TaskQueue,
        minor: str,
        first_job_id: int,
    ) -> list[JobRecord]:
        """New jobs ``first_job_id`` on (reserved), one per description (``packed``: each one's
        :func:`pack_description`), all of ``task_queue`` with the same minor status in Waiting
        and none holding ``%j``: what :meth:`add` does for each, with what they share done once
        (bulk submissions take this path by the hundred thousand; their three history rows are
        one :class:`~dirac_like.model.SharedHistory` per run)."""
        minor = minor or SUBMISSION_PATH[-1][1]
        site = _requested_site(task_queue.requirements)
        queue_id, waiting = task_queue.task_queue_id, S.WAITING
        jobs, push = self.jobs, task_queue.push
        new_jobs, new_descriptions = self.journal.changes.new_jobs, self.journal.new_descriptions
        made = []
        for job_id, description, blob in zip(
            itertools.count(first_job_id), descriptions, packed, strict=False
        ):
            priority = description.priority
            job = JobRecord(job_id, owner, group, queue_id, priority, waiting, minor, "", site,
                            description.job_name, "", 1, 0, now, now)  # fmt: skip
            jobs[job_id] = job
            new_jobs.append((job, blob))
            new_descriptions[job_id] = description.attributes
            push(job_id, priority)
            made.append(job)
        count = len(made)
        self.tally[(waiting, site, group)] += count
        self.submitted_count += count
        self.waiting_by_owner[owner] += count
        _note_submission_path(self.journal.changes.shared_history, first_job_id, count, minor, now)
        return made

    def reserve(self, count: int) -> int:
        """The first of ``count`` consecutive job ids kept for jobs made later."""
        first = self.next_job_id
        self.next_job_id += count
        return first

    def task_queue_for(self, owner: str, group: str, requirements: Requirements) -> TaskQueue:
        """The live task queue of jobs with these owner, group and requirements (made if
        there is none)."""
        task_queue = self.matcher.find(owner, group, requirements)
        if task_queue is not None:
            return task_queue
        row = TaskQueueRow(self.next_task_queue_id, owner, group, requirements)
        self.next_task_queue_id += 1
        self.journal.changes.new_task_queues.append(row)
        return self._register_task_queue(row)

    # -- the one transition path -----------------------------------------------------------------

    def set_status(
        self,
        job: JobRecord,
        status: JobStatus,
        minor: str,
        source: str,
        now: float,
        usage: JobUsage | None = None,
    ) -> None:
        """The one way a job changes status: checked, stamped, kept in history, side effects.
        ``usage``: what the payload used, as its pilot reported with a final status."""
        old = job.status
        check_transition(job.job_id, old, status)
        if status in FINAL_STATUSES and old not in FINAL_STATUSES:
            self._account(job, status, minor, usage, now)
        self.tally[(old, job.site, job.group)] -= 1
        self.entered[status] += 1
        if old is S.WAITING:
            self._queue(job).discard(job.job_id)
            self.waiting_by_owner[job.owner] -= 1
        if old in ACTIVE_STATUSES and status not in ACTIVE_STATUSES:
            self.site_active[job.site] -= _site_weight(job)
            self.shares.stop(job.group, job.owner, self.cores(job), now)
            self.granted_cores.pop(job.job_id, None)
            self.last_usage.pop(job.job_id, None)
            self.sample_marks.pop(job.job_id, None)
            self.placed_ce.pop(job.job_id, None)
        if status not in NOT_STARTED_AGAIN:
            self.lost_attempts.pop(job.job_id, None)  # matched again, or over
        job.status, job.minor_status, job.updated = status, minor, now
        self._enter(job, old, now)
        self.tally[(status, job.site, job.group)] += 1
        self.record(job, source, now)

    def _account(
        self, job: JobRecord, status: JobStatus, minor: str, usage: JobUsage | None, now: float
    ) -> None:
        """The accounting record of the attempt that ends now (before its cores are released);
        a late Done is that of the attempt the stall rule took (where and how it ran)."""
        held = job.status in ACTIVE_STATUSES
        usage = usage or self.last_usage.get(job.job_id)
        cores = self.cores(job) if held else 0
        ce = self.placed_ce.get(job.job_id, "") if held else ""
        ran = job
        lost = self.lost_attempts.get(job.job_id)
        if not held and status is S.DONE and lost is not None:
            held, cores, ce = True, lost.cores, lost.ce
            ran = replace(
                job,
                attempt=lost.attempt,
                pilot_id=lost.pilot_id,
                site=lost.site,
                matched_at=lost.matched_at,
            )
        self.journal.changes.job_accounting.append(
            job_record(ran, status.value, minor, cores, usage, held, now, ce)
        )
        if held and usage is not None and (usage.cpu_seconds or usage.peak_rss_mb):
            self.journal.changes.usage_samples.append(
                (job.job_id, ran.attempt, now, usage.cpu_seconds, usage.peak_rss_mb)
            )

    def _enter(self, job: JobRecord, old: JobStatus, now: float) -> None:
        status = job.status
        if status is S.WAITING:
            if old is S.MATCHED:
                job.attempt += 1  # the lease is void: a late start from that pilot is refused
            requirements = self.task_queue_rows[job.task_queue_id].requirements
            job.pilot_id, job.site = "", _requested_site(requirements)
            self._queue(job).push(job.job_id, job.priority)
            self.waiting_by_owner[job.owner] += 1
        elif status is S.MATCHED:
            job.matched_at, job.deadline = now, now + self.config.match_lease
            self.site_active[job.site] += _site_weight(job)
            self.shares.start(job.group, job.owner, self.cores(job), now)
        elif status in (S.RUNNING, S.COMPLETING):
            self._beat(job, now)
        elif status is S.STALLED:
            job.deadline = now + self.config.stalled_to_reschedule
        elif status is S.RESCHEDULED:
            job.attempt += 1
            job.reschedules += 1
            job.kill_requested = False
            job.deadline = now + self._holdoff(job)
        self.deadlines.arm(job)

    def _beat(self, job: JobRecord, now: float) -> None:
        """The Running deadline rule: a running job is Stalled ``stalled_timeout`` seconds after
        its last sign of life, and rescheduled ``stalled_to_reschedule`` seconds later. The lease
        rule (issue 11): a match tells the pilot ``stalled_timeout`` as its lease, and the
        pilot's payload keeper kills a payload whose pilot had no heartbeat acknowledged for
        that long; the service waits the lease plus ``stalled_to_reschedule`` (the margin), so
        two attempts of a job never run at once."""
        job.heartbeat_at = now
        job.deadline = now + self.config.stalled_timeout

    def _holdoff(self, job: JobRecord) -> float:
        return self.config.reschedule_holdoff * self.config.holdoff_factor ** (job.reschedules - 1)

    def record(self, job: JobRecord, source: str, now: float) -> None:
        """Keep the job's current status in its history and mark it for writing."""
        self.journal.changes.history.append(
            HistoryEntry(
                job.job_id, job.status.value, job.minor_status, job.application_status, now, source
            )
        )
        self.journal.changes.changed_jobs[job.job_id] = job

    def reschedule(
        self, job: JobRecord, minor: str, source: str, now: float, hold: bool = True
    ) -> None:
        """Send a job back to Waiting (after a growing hold-off if ``hold``), or to Failed once
        it used up its reschedules."""
        if job.reschedules >= self.config.max_reschedules:
            minor = f"{minor}; reached reschedule limit {self.config.max_reschedules}"
            self.set_status(job, S.FAILED, minor, source, now)
            return
        self.set_status(job, S.RESCHEDULED, minor, source, now)
        if not hold or job.deadline <= now:
            self.set_status(job, S.WAITING, "Pilot Agent Submission", "JobScheduling", now)

    # -- changes that keep the status ------------------------------------------------------------

    def request_kill(self, job: JobRecord, source: str, now: float) -> None:
        """A pilot holds ``job``: mark it to be killed (it becomes Killed when the pilot says)."""
        job.kill_requested, job.minor_status, job.updated = True, "Kill requested", now
        self.record(job, source, now)

    def report(
        self,
        job: JobRecord,
        status: JobStatus,
        minor: str,
        application: str,
        source: str,
        now: float,
        usage: JobUsage | None = None,
        pilot_id: str = "",
    ) -> None:
        """A pilot reports the job's status (the same one again, or a new one; ``usage`` with a
        final one). ``pilot_id``: the reporting pilot, the job's pilot from now on (another
        only for a late Done, :meth:`reported_job`)."""
        if pilot_id and pilot_id != job.pilot_id:
            log.info(
                "job %d: Done reported late by pilot %s (its attempt was rescheduled, not matched "
                "again): the job's end",
                job.job_id,
                pilot_id,
            )
            job.pilot_id = pilot_id
        job.application_status = application or job.application_status
        if status is job.status:
            job.minor_status, job.updated, job.heartbeat_at = minor, now, now
            self.record(job, source, now)
        else:
            self.set_status(job, status, minor, source, now, usage)

    def heartbeat(
        self, job: JobRecord, source: str, now: float, metrics: dict[str, Any] | None = None
    ) -> None:
        """The pilot holding ``job`` is alive: push its stall deadline back (a Stalled job whose
        heartbeats resumed runs again). ``metrics``: what it says the payload used so far."""
        usage = usage_from_heartbeat(metrics) if metrics else None
        if usage is not None and job.status in ACTIVE_STATUSES:
            self.last_usage[job.job_id] = later_usage(self.last_usage.get(job.job_id), usage)
            mark = self.sample_marks.setdefault(job.job_id, SeriesMark())
            if keep_sample(mark, now):
                self.journal.changes.usage_samples.append(
                    (job.job_id, job.attempt, now, usage.cpu_seconds, usage.peak_rss_mb)
                )
        if job.status in (S.RUNNING, S.COMPLETING):
            self._beat(job, now)
        else:
            job.heartbeat_at = now
            if job.status is S.STALLED:
                self.set_status(job, S.RUNNING, "Heartbeats resumed", source, now)

    # -- matching and deadlines ------------------------------------------------------------------

    def match(self, pilot_id: str, resources: PilotResources, now: float) -> JobRecord | None:
        """The best waiting job for this pilot, now Matched to it; None if none fits or the
        pilot is to hold its cores for a bigger job (:meth:`hold_of` says)."""
        match: Match | Hold | None
        if resources.total_cores > 1:  # a multi-core pilot that knows about holds
            self.holds.see(pilot_id, resources.site, resources.total_cores, now)
            match = self.matcher.match_or_hold(pilot_id, resources, self.holds, now)
        else:
            match = self.matcher.match(resources, now)
        if match is None or isinstance(match, Hold):
            return None
        job = self.jobs[match.job_id]
        self.tally[(S.WAITING, job.site, job.group)] -= 1
        job.pilot_id, job.site = pilot_id, resources.site
        self.tally[(S.WAITING, job.site, job.group)] += 1
        self.matched_count += 1
        if resources.ce:
            self.placed_ce[job.job_id] = resources.ce
        if match.cores != match.task_queue.requirements.cores:
            self.granted_cores[job.job_id] = match.cores
        self.set_status(job, S.MATCHED, f"Assigned to pilot {pilot_id}", "Matcher", now)
        log.debug("job %d matched to pilot %s at %s", job.job_id, pilot_id, resources.site)
        return job

    def hold_of(self, pilot_id: str) -> Hold | None:
        """The hold this pilot is under, if any (after :meth:`match` returned None)."""
        return self.holds.holds.get(pilot_id)

    def next_deadline(self) -> float | None:
        return self.deadlines.next()

    def expire(self, now: float) -> int:
        """Act on every deadline that has passed; returns how many jobs changed."""
        acted = 0
        for job in self.deadlines.due(now, self.jobs):
            self._on_deadline(job, now)
            acted += 1
        return acted

    def _on_deadline(self, job: JobRecord, now: float) -> None:
        status = job.status
        if status is S.MATCHED:
            if job.kill_requested:
                self.set_status(job, S.KILLED, "Killed before it started", "JobMonitor", now)
            else:
                log.info("job %d: match lease expired, back to Waiting", job.job_id)
                self.set_status(job, S.WAITING, "Match lease expired", "JobMonitor", now)
        elif status in (S.RUNNING, S.COMPLETING):
            log.warning("job %d: no heartbeat from pilot %s, Stalled", job.job_id, job.pilot_id)
            self.set_status(job, S.STALLED, "Job stalled: pilot not running", "StalledJobs", now)
        elif status is S.STALLED:
            if job.kill_requested:
                self.set_status(job, S.KILLED, "Killed: pilot lost", "StalledJobs", now)
            else:
                lost = LostAttempt(
                    job.attempt,
                    job.pilot_id,
                    job.site,
                    self.placed_ce.get(job.job_id, ""),
                    self.cores(job),
                    job.matched_at,
                )
                self.reschedule(job, "Job stalled: pilot lost", "StalledJobs", now)
                if job.status in NOT_STARTED_AGAIN:
                    self.lost_attempts[job.job_id] = lost
        elif status is S.RESCHEDULED:
            self.set_status(job, S.WAITING, "Pilot Agent Submission", "JobScheduling", now)

    # -- invariants ------------------------------------------------------------------------------

    def validate(self) -> None:
        """Check that the indexes agree with the jobs (tests call this after every step)."""
        active_sites: Counter[str] = Counter()
        running: Counter[tuple[str, str]] = Counter()
        for job in self.jobs.values():
            in_queue = job.job_id in self._queue(job)
            assert in_queue == (job.status is S.WAITING), f"job {job.job_id} {job.status} queue"
            if job.status in ACTIVE_STATUSES:
                assert job.pilot_id, f"job {job.job_id} is {job.status} without a pilot"
                active_sites[job.site] += _site_weight(job)
                charged = 0 if job.group == PROBE_GROUP else self.cores(job)
                running[(job.group, "")] += charged
                running[(job.group, job.owner)] += charged
        assert +self.site_active == active_sites, (self.site_active, active_sites)
        waiting = Counter(job.owner for job in self.jobs.values() if job.status is S.WAITING)
        assert +self.waiting_by_owner == waiting, (self.waiting_by_owner, waiting)
        tally = Counter((job.status, job.site, job.group) for job in self.jobs.values())
        nonzero = {key: count for key, count in self.tally.items() if count}
        assert nonzero == tally, (nonzero, tally)
        for key, account in self.shares.accounts.items():
            assert account.running_cores == running[key], (key, account.running_cores)
        self.holds.validate()
