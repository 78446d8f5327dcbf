"""The job book: every job of the central service, its task queue, and the one way it changes.

``JobBook`` holds the job records, the task queues they wait in (through the
:class:`~dirac_like.matching.Matcher`), how many jobs are active per site (the monitoring
agent's probe jobs, group ``probes``, are not counted: a site's limit does not hold them back),
and the deadlines of timed jobs. Every change of a job goes through a method here, and the
status changes through :meth:`JobBook.set_status` alone: it checks the transition against the one
table (:mod:`dirac_like.states`), keeps the task queues, the site counts, the fair-share
accounting and the deadlines in step, and records the change (history row + changed record) in the
:class:`~services.journal.Journal` for the store. What happens when a deadline passes
(:meth:`expire`) is decided here too. :meth:`validate` checks that the indexes agree with the jobs.

Pure: no I/O, ``now`` passed in. Parsing descriptions, sandboxes and pilots are other parts'
business; the caller hands the book what it needs.
"""

from __future__ import annotations

import itertools
import logging
from collections import Counter
from collections.abc import Iterable

import msgpack

from dirac_like.config import JobsConfig
from dirac_like.description import JobDescription, with_job_id
from dirac_like.errors import JobNotFound, StaleAttempt
from dirac_like.matching import Matcher, TaskQueue
from dirac_like.model import HistoryEntry, JobRecord, Requirements, TaskQueueRow
from dirac_like.monitoring import PROBE_GROUP
from dirac_like.protocol import PilotResources
from dirac_like.shares import FairShare
from dirac_like.states import ACTIVE_STATUSES, JobStatus, check_transition

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


def _site_weight(job: JobRecord) -> int:
    """How much a job counts toward its site's limit of active jobs: a probe job nothing."""
    return 0 if job.group == PROBE_GROUP else 1


class JobBook:
    def __init__(self, config: JobsConfig, shares: FairShare, journal: Journal) -> None:
        self.config = config
        self.shares = shares
        self.journal = journal
        self.matcher = Matcher(shares)
        self.deadlines = Deadlines()
        self.jobs: dict[int, JobRecord] = {}
        self.task_queue_rows: dict[int, TaskQueueRow] = {}
        # cores granted at the match to active jobs with a core range (not stored: after a
        # restart their task queue's minimum is counted)
        self.granted_cores: dict[int, int] = {}
        self.site_active: Counter[str] = Counter()
        self.next_job_id = 1
        self.next_task_queue_id = 1

    # -- start-up --------------------------------------------------------------------------------

    def restore(self, task_queues: Iterable[TaskQueueRow], jobs: Iterable[JobRecord],
                now: float) -> None:
        """Rebuild the indexes from stored rows (the shares' usage must be restored first)."""
        for row in task_queues:
            self._register_task_queue(row)
        self.next_task_queue_id = max(self.task_queue_rows, default=0) + 1
        for job in sorted(jobs, key=lambda j: j.job_id):
            self._restore_job(job, now)
        self.next_job_id = max(self.jobs, default=0) + 1

    def _restore_job(self, job: JobRecord, now: float) -> None:
        self.jobs[job.job_id] = job
        if job.status is S.WAITING:
            self._queue(job).push(job.job_id, job.priority)
        elif job.status in ACTIVE_STATUSES:
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
            raise JobNotFound(f"job {job_id} not found")
        return job

    def jobs_by_ids(self, job_ids: list[int]) -> list[JobRecord]:
        """All the jobs, or JobNotFound naming the first unknown id (then nothing is touched)."""
        return [self.job(job_id) for job_id in job_ids]

    def held_job(self, job_id: int, attempt: int, pilot_id: str) -> JobRecord:
        """The job, if this pilot holds this attempt of it; else StaleAttempt."""
        job = self.job(job_id)
        if job.attempt != attempt or job.pilot_id != pilot_id:
            raise StaleAttempt(
                f"job {job_id}: attempt {attempt} by pilot {pilot_id!r} is not current "
                f"(current attempt {job.attempt}, pilot {job.pilot_id or 'none'!r})"
            )
        return job

    def cores(self, job: JobRecord) -> int:
        """The cores granted at the job's match (its task queue's minimum before one)."""
        granted = self.granted_cores.get(job.job_id)
        return granted or self.task_queue_rows[job.task_queue_id].requirements.cores

    # -- new jobs --------------------------------------------------------------------------------

    def add(self, description: JobDescription, owner: str, group: str, now: float) -> JobRecord:
        """A new job, straight to Waiting along SUBMISSION_PATH (bulk submissions take this
        path by the hundred thousand, so it writes the three history rows directly)."""
        job_id = self.next_job_id
        self.next_job_id += 1
        description = with_job_id(description, job_id)  # %j, as DIRAC's JobDB replaces it
        task_queue = self._task_queue_for(owner, group, description.requirements())
        job = JobRecord(
            job_id=job_id,
            owner=owner,
            group=group,
            task_queue_id=task_queue.task_queue_id,
            priority=description.priority,
            status=S.WAITING,
            minor_status=SUBMISSION_PATH[-1][1],
            job_name=description.job_name,
            submitted=now,
            updated=now,
        )
        job.site = self._requested_site(job)
        self.jobs[job_id] = job
        changes = self.journal.changes
        changes.new_jobs.append((job, msgpack.packb(description.attributes, use_bin_type=True)))
        self.journal.new_descriptions[job_id] = description.attributes
        changes.history.extend(
            HistoryEntry(job_id, status.value, minor, "", now, source)
            for status, minor, source in SUBMISSION_PATH
        )
        task_queue.push(job_id, job.priority)
        return job

    def _task_queue_for(self, owner: str, group: str, requirements: Requirements) -> TaskQueue:
        task_queue = self.matcher.find(owner, group, requirements)
        if task_queue is not None:
            return task_queue
        row = TaskQueueRow(self.next_task_queue_id, owner, group, requirements)
        self.next_task_queue_id += 1
        self.journal.changes.new_task_queues.append(row)
        return self._register_task_queue(row)

    def _requested_site(self, job: JobRecord) -> str:
        sites = self.task_queue_rows[job.task_queue_id].requirements.sites
        return sites[0] if len(sites) == 1 else ("Multiple" if sites else "ANY")

    # -- the one transition path -----------------------------------------------------------------

    def set_status(
        self, job: JobRecord, status: JobStatus, minor: str, source: str, now: float
    ) -> None:
        """The one way a job changes status: checked, stamped, kept in history, side effects."""
        old = job.status
        check_transition(job.job_id, old, status)
        if old is S.WAITING:
            self._queue(job).discard(job.job_id)
        if old in ACTIVE_STATUSES and status not in ACTIVE_STATUSES:
            self.site_active[job.site] -= _site_weight(job)
            self.shares.stop(job.group, job.owner, self.cores(job), now)
            self.granted_cores.pop(job.job_id, None)
        job.status, job.minor_status, job.updated = status, minor, now
        self._enter(job, old, now)
        self.record(job, source, now)

    def _enter(self, job: JobRecord, old: JobStatus, now: float) -> None:
        status = job.status
        if status is S.WAITING:
            if old is S.MATCHED:
                job.attempt += 1  # the lease is void: a late start from that pilot is refused
            job.pilot_id, job.site = "", self._requested_site(job)
            self._queue(job).push(job.job_id, job.priority)
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
        its last sign of life."""
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

    def report(self, job: JobRecord, status: JobStatus, minor: str, application: str,
               source: str, now: float) -> None:
        """A pilot reports the job's status (the same one again, or a new one)."""
        job.application_status = application or job.application_status
        if status is job.status:
            job.minor_status, job.updated, job.heartbeat_at = minor, now, now
            self.record(job, source, now)
        else:
            self.set_status(job, status, minor, source, now)

    def heartbeat(self, job: JobRecord, source: str, now: float) -> None:
        """The pilot holding ``job`` is alive: push its stall deadline back (a Stalled job whose
        heartbeats resumed runs again)."""
        if job.status in (S.RUNNING, S.COMPLETING):
            self._beat(job, now)
        else:
            job.heartbeat_at = now
            if job.status is S.STALLED:
                self.set_status(job, S.RUNNING, "Heartbeats resumed", source, now)

    # -- matching and deadlines ------------------------------------------------------------------

    def match(self, pilot_id: str, resources: PilotResources, now: float) -> JobRecord | None:
        """The best waiting job for this pilot, now Matched to it; None if none fits."""
        match = self.matcher.match(resources, now)
        if match is None:
            return None
        job = self.jobs[match.job_id]
        job.pilot_id, job.site = pilot_id, resources.site
        if match.cores != match.task_queue.requirements.cores:
            self.granted_cores[job.job_id] = match.cores
        self.set_status(job, S.MATCHED, f"Assigned to pilot {pilot_id}", "Matcher", now)
        log.debug("job %d matched to pilot %s at %s", job.job_id, pilot_id, resources.site)
        return job

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
                self.reschedule(job, "Job stalled: pilot lost", "StalledJobs", now)
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
        for key, account in self.shares.accounts.items():
            assert account.running_cores == running[key], (key, account.running_cores)
