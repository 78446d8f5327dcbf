"""The central service's in-memory state and every decision it makes. No sockets, no clock.

``CentralState`` holds all jobs, the task queues (through the matcher), sites, shares and usage.
Each operation changes it in place and records what it changed in ``self.changes``; the service
loop writes those changes in one transaction per batch (:meth:`take_changes`) and only then sends
the replies. Operations check everything before they change anything, so a refused request leaves
the state exactly as it was.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import re
from collections import Counter, deque
from typing import TYPE_CHECKING, Any, Protocol

import msgpack

from dirac_like.config import Config
from dirac_like.description import DescriptionLimits, JobDescription, parse_descriptions
from dirac_like.errors import InvalidArgument, JobNotFound, StaleAttempt
from dirac_like.matching import Matcher, TaskQueue
from dirac_like.model import (
    ChangeSet,
    HistoryEntry,
    JobRecord,
    LoadedState,
    Requirements,
    SiteRecord,
    StoredReply,
    TaskQueueRow,
)
from dirac_like.protocol import PilotResources
from dirac_like.sandbox import SandboxStore, is_sha256
from dirac_like.shares import FairShare
from dirac_like.states import ACTIVE_STATUSES, JobStatus, check_transition

from .pilots import PilotRegistry
from .stdout_tails import StdoutTails

if TYPE_CHECKING:
    from .identities import IdentityIssuer

log = logging.getLogger(__name__)

S = JobStatus
NAME_PATTERN = re.compile(r"^[A-Za-z0-9_.@:+-]{1,64}$")
TIMED_STATUSES = frozenset({S.MATCHED, S.RUNNING, S.COMPLETING, S.STALLED, S.RESCHEDULED})
CLEANUP_SECONDS = 300.0  # how often empty task queues, old pilots and sandboxes are forgotten
SANDBOX_PREFIX = "SB:"  # an InputSandbox entry naming an uploaded archive: SB:<sha256>
STOP_PILOT = {"command": "stop", "reason": "Killed by an admin"}
# What a submitted job goes through at once: (status, minor status, source).
SUBMISSION_PATH = (
    (S.RECEIVED, "Job accepted", "JobManager"),
    (S.CHECKING, "JobSanity", "JobSanity"),
    (S.WAITING, "Pilot Agent Submission", "JobScheduling"),
)
for _earlier, _later in itertools.pairwise(SUBMISSION_PATH):
    check_transition(0, _earlier[0], _later[0])  # the path follows the one transition table


def check_name(kind: str, value: str) -> str:
    if not NAME_PATTERN.match(value):
        raise InvalidArgument(
            f"{kind} {value[:70]!r} is not valid: 1 to 64 letters, digits or _ . @ : + -"
        )
    return value


class StoredJobs(Protocol):
    """What the state reads back from the store: the parts it does not keep in memory."""

    def description(self, job_id: int) -> dict[str, Any]: ...

    def history(self, job_id: int) -> list[HistoryEntry]: ...

    def pilot_output(self, pilot_id: str) -> str | None: ...

    def sandbox(self, job_id: int, kind: str) -> str | None: ...

    def referenced_sandboxes(self) -> set[str]: ...


class CentralState:
    def __init__(
        self,
        config: Config,
        stored: StoredJobs,
        loaded: LoadedState | None = None,
        now: float = 0.0,
        sandboxes: SandboxStore | None = None,
    ):
        self.config = config
        self.stored = stored
        self.sandboxes = sandboxes  # None: sandboxes are refused
        self.stdout_tails = StdoutTails()  # what running jobs printed last (job peek)
        # descriptions of jobs submitted in the current batch, not yet in the store
        self._new_descriptions: dict[int, dict[str, Any]] = {}
        self.limits = DescriptionLimits(
            max_cpu_time=config.jobs.max_cpu_time,
            max_parametric_jobs=config.jobs.max_parametric_jobs,
        )
        self.shares = FairShare(
            config.shares.groups,
            config.shares.users,
            config.shares.half_life,
            config.shares.default_share,
        )
        self.matcher = Matcher(self.shares)
        self.jobs: dict[int, JobRecord] = {}
        self.task_queue_rows: dict[int, TaskQueueRow] = {}
        self.sites: dict[str, SiteRecord] = {}
        self.sites_seen: set[str] = set(config.sites)
        self.site_active: Counter[str] = Counter()
        self.replies: dict[str, StoredReply] = {}
        self._reply_order: deque[StoredReply] = deque()
        self._timers: list[tuple[float, int, int, str]] = []  # (deadline, job, attempt, status)
        self.changes = ChangeSet()
        self.in_flight: list[ChangeSet] = []  # taken for the store, not yet committed
        self.pushes: list[tuple[str, dict[str, Any]]] = []  # (pilot id, command) to send now
        self.pilots = PilotRegistry(config.pilots)
        self.identities: IdentityIssuer | None = None  # set by a service that runs secure
        self._next_cleanup = now + CLEANUP_SECONDS
        self.next_job_id = 1
        self.next_task_queue_id = 1
        if loaded is not None:
            self._restore(loaded, now)

    # -- start-up --------------------------------------------------------------------------------

    def _restore(self, loaded: LoadedState, now: float) -> None:
        for row in loaded.task_queues:
            self._register_task_queue(row)
        self.next_task_queue_id = max(self.task_queue_rows, default=0) + 1
        for record in loaded.usage:
            self.shares.restore(record)
        for group, share in loaded.shares.items():
            self.shares.set_group_share(group, share)
        self.sites = {site.name: site for site in loaded.sites}
        self.sites_seen.update(self.sites)
        self.pilots = PilotRegistry(self.config.pilots, loaded.pilots, loaded.next_pilot_number)
        for job in sorted(loaded.jobs, key=lambda j: j.job_id):
            self._restore_job(job, now)
        self.next_job_id = max(self.jobs, default=0) + 1
        for reply in sorted(loaded.replies, key=lambda r: r.time):
            self._keep_reply(reply)
        self.shares.dirty.clear()
        log.info("restored %d jobs in %d task queues", len(self.jobs), len(self.task_queue_rows))

    def _restore_job(self, job: JobRecord, now: float) -> None:
        self.jobs[job.job_id] = job
        if job.status is S.WAITING:
            self._queue(job).push(job.job_id, job.priority)
        elif job.status in ACTIVE_STATUSES:
            self.site_active[job.site] += 1
            account = self.shares.account(job.group, job.owner)
            account.advance(job.matched_at, self.shares.half_life)
            self.shares.start(job.group, job.owner, self.cores(job), job.matched_at)
            if job.status in (S.RUNNING, S.COMPLETING):
                # The service was down: give the pilot a full stalled window to reach us again.
                job.heartbeat_at = max(job.heartbeat_at, now)
                job.deadline = job.heartbeat_at + self.config.jobs.stalled_timeout
        if job.status in TIMED_STATUSES:
            self._arm(job)

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

    def cores(self, job: JobRecord) -> int:
        return self.task_queue_rows[job.task_queue_id].requirements.cores

    # -- the batch -------------------------------------------------------------------------------

    def take_changes(self) -> ChangeSet:
        """What changed since the last call; it is in flight until :meth:`committed`."""
        changes = self.changes
        for record in self.shares.take_dirty():
            changes.usage[(record.group, record.user)] = record
        self.pilots.take_changes(changes)
        self.changes = ChangeSet()
        self.in_flight.append(changes)
        return changes

    def committed(self, changes: ChangeSet) -> None:
        """The store holds ``changes`` now: read them from there from now on."""
        self.in_flight.remove(changes)
        for job, _ in changes.new_jobs:
            self._new_descriptions.pop(job.job_id, None)

    def store_description(self, job_id: int) -> dict[str, Any]:
        pending = self._new_descriptions.get(job_id)
        return pending if pending is not None else self.stored.description(job_id)

    def store_history(self, job_id: int) -> list[HistoryEntry]:
        """Committed history, then what is on its way to the store."""
        pending = [
            entry
            for changes in [*self.in_flight, self.changes]
            for entry in changes.history
            if entry.job_id == job_id
        ]
        return self.stored.history(job_id) + pending

    def job(self, job_id: int) -> JobRecord:
        job = self.jobs.get(job_id)
        if job is None:
            raise JobNotFound(f"job {job_id} not found")
        return job

    def jobs_by_ids(self, job_ids: list[int]) -> list[JobRecord]:
        """All the jobs, or JobNotFound naming the first unknown id (then nothing is touched)."""
        return [self.job(job_id) for job_id in job_ids]

    # -- status changes --------------------------------------------------------------------------

    def set_status(
        self, job: JobRecord, status: JobStatus, minor: str, source: str, now: float
    ) -> None:
        """The one way a job changes status: checked, stamped, kept in history, side effects."""
        old = job.status
        check_transition(job.job_id, old, status)
        if old is S.WAITING:
            self._queue(job).discard(job.job_id)
        if old in ACTIVE_STATUSES and status not in ACTIVE_STATUSES:
            self.site_active[job.site] -= 1
            self.shares.stop(job.group, job.owner, self.cores(job), now)
        job.status, job.minor_status, job.updated = status, minor, now
        self._enter(job, old, now)
        self.record(job, source, now)

    def _enter(self, job: JobRecord, old: JobStatus, now: float) -> None:
        status, jobs_config = job.status, self.config.jobs
        if status is S.WAITING:
            if old is S.MATCHED:
                job.attempt += 1  # the lease is void: a late start from that pilot is refused
            job.pilot_id, job.site = "", self._requested_site(job)
            self._queue(job).push(job.job_id, job.priority)
        elif status is S.MATCHED:
            job.matched_at, job.deadline = now, now + jobs_config.match_lease
            self.site_active[job.site] += 1
            self.shares.start(job.group, job.owner, self.cores(job), now)
        elif status in (S.RUNNING, S.COMPLETING):
            job.heartbeat_at = now
            job.deadline = now + jobs_config.stalled_timeout
        elif status is S.STALLED:
            job.deadline = now + jobs_config.stalled_to_reschedule
        elif status is S.RESCHEDULED:
            job.attempt += 1
            job.reschedules += 1
            job.kill_requested = False
            job.deadline = now + self._holdoff(job)
        if status in TIMED_STATUSES:
            self._arm(job)

    def _requested_site(self, job: JobRecord) -> str:
        sites = self.task_queue_rows[job.task_queue_id].requirements.sites
        return sites[0] if len(sites) == 1 else ("Multiple" if sites else "ANY")

    def _holdoff(self, job: JobRecord) -> float:
        jobs_config = self.config.jobs
        return jobs_config.reschedule_holdoff * jobs_config.holdoff_factor ** (job.reschedules - 1)

    def record(self, job: JobRecord, source: str, now: float) -> None:
        """Keep the job's current status in its history and mark it for writing."""
        self.changes.history.append(
            HistoryEntry(
                job.job_id, job.status.value, job.minor_status, job.application_status, now, source
            )
        )
        self.changes.changed_jobs[job.job_id] = job

    def reschedule(
        self, job: JobRecord, minor: str, source: str, now: float, hold: bool = True
    ) -> None:
        """Send a job back to Waiting (after a growing hold-off if ``hold``), or to Failed once
        it used up its reschedules."""
        if job.reschedules >= self.config.jobs.max_reschedules:
            limit = self.config.jobs.max_reschedules
            minor = f"{minor}; reached reschedule limit {limit}"
            self.set_status(job, S.FAILED, minor, source, now)
            return
        self.set_status(job, S.RESCHEDULED, minor, source, now)
        if not hold or job.deadline <= now:
            self.set_status(job, S.WAITING, "Pilot Agent Submission", "JobScheduling", now)

    # -- timers ----------------------------------------------------------------------------------

    def _arm(self, job: JobRecord) -> None:
        entry = (job.deadline, job.job_id, job.attempt, job.status.value)
        heapq.heappush(self._timers, entry)

    def next_deadline(self) -> float | None:
        return self._timers[0][0] if self._timers else None

    def expire(self, now: float) -> int:
        """Act on every deadline that has passed; returns how many jobs changed."""
        acted = 0
        while self._timers and self._timers[0][0] <= now:
            _, job_id, attempt, status = heapq.heappop(self._timers)
            job = self.jobs.get(job_id)
            if job is None or job.attempt != attempt or job.status.value != status:
                continue  # the job moved on since this timer was set
            if job.deadline > now:
                self._arm(job)  # pushed back (heartbeats) since
                continue
            self._on_deadline(job, now)
            acted += 1
        self._forget_old_replies(now)
        if now >= self._next_cleanup:
            self._next_cleanup = now + CLEANUP_SECONDS
            self.clean_up(now)
        return acted

    def clean_up(self, now: float) -> None:
        """Forget empty task queues and old ended pilots; delete unreferenced sandboxes."""
        dropped = self.matcher.drop_empty()
        if dropped:
            log.info("dropped %d empty task queues", len(dropped))
        forgotten = self.pilots.forget_ended(now)
        if forgotten:
            log.info("forgot %d pilots that ended long ago", forgotten)
        if self.sandboxes is not None:
            referenced = self.stored.referenced_sandboxes() | {
                sha256 for changes in [*self.in_flight, self.changes]
                for _, _, sha256 in changes.sandboxes
            }
            self.sandboxes.collect(referenced, self.config.sandboxes.collect_after, now)

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

    # -- remembered replies (idempotent retries) -------------------------------------------------

    def remembered_reply(self, request_id: str) -> bytes | None:
        stored = self.replies.get(request_id)
        return stored.reply if stored is not None else None

    def remember_reply(self, request_id: str, reply: bytes, now: float, durable: bool) -> None:
        """Answer a retry of ``request_id`` with ``reply``; across restarts too if ``durable``."""
        stored = StoredReply(request_id, reply, now)
        self._keep_reply(stored)
        if durable:
            self.changes.replies.append(stored)

    def _keep_reply(self, stored: StoredReply) -> None:
        self.replies[stored.request_id] = stored
        self._reply_order.append(stored)

    def _forget_old_replies(self, now: float) -> None:
        cutoff = now - self.config.service.reply_memory
        order = self._reply_order
        if not order or order[0].time >= cutoff - 60:
            return  # forget in chunks of at least a minute
        while order and order[0].time < cutoff:
            stored = order.popleft()
            if self.replies.get(stored.request_id) is stored:
                del self.replies[stored.request_id]
        self.changes.forget_replies_before = cutoff

    # -- submission ------------------------------------------------------------------------------

    def submit(
        self, sources: list[str | dict[str, Any]], owner: str, group: str, now: float
    ) -> list[int]:
        check_name("owner", owner)
        check_name("group", group)
        descriptions: list[JobDescription] = []
        for source in sources:  # parse everything first: a bad one refuses the whole request
            descriptions.extend(parse_descriptions(source, self.limits))
        sandboxes = [self._input_sandbox(description) for description in descriptions]
        job_ids = []
        for description, sandbox in zip(descriptions, sandboxes, strict=True):
            job_ids.append(self._add_job(description, owner, group, now))
            if sandbox:
                self.changes.sandboxes.append((job_ids[-1], "input", sandbox))
        if job_ids:
            log.info("%s/%s submitted jobs %d..%d", owner, group, job_ids[0], job_ids[-1])
        return job_ids

    def _input_sandbox(self, description: JobDescription) -> str:
        """The sha256 of the uploaded archive the job's InputSandbox names ('' if none)."""
        named = [entry[len(SANDBOX_PREFIX):] for entry in description.input_sandbox
                 if entry.startswith(SANDBOX_PREFIX)]
        if not named:
            return ""
        if len(named) > 1:
            raise InvalidArgument("InputSandbox names more than one SB: archive")
        self.check_sandbox(named[0], "input")
        return named[0]

    def check_sandbox(self, sha256: str, kind: str) -> None:
        """The archive ``sha256`` was uploaded completely (else InvalidArgument)."""
        if self.sandboxes is None:
            raise InvalidArgument("this service keeps no sandboxes")
        if not is_sha256(sha256):
            raise InvalidArgument(f"{kind} sandbox: not a sandbox checksum: {sha256[:80]!r}")
        if not self.sandboxes.has(sha256):
            raise InvalidArgument(f"{kind} sandbox SB:{sha256[:64]} was not uploaded (upload it "
                                  "first, then name it)")

    def sandbox_of(self, job_id: int, kind: str) -> str | None:
        """The sha256 of a job's ``kind`` sandbox, pending changes first."""
        for changes in [self.changes, *reversed(self.in_flight)]:
            for changed_job, changed_kind, sha256 in reversed(changes.sandboxes):
                if changed_job == job_id and changed_kind == kind:
                    return sha256
        return self.stored.sandbox(job_id, kind)

    def _add_job(self, description: JobDescription, owner: str, group: str, now: float) -> int:
        """A new job, straight to Waiting along SUBMISSION_PATH (bulk submissions take this
        path by the hundred thousand, so it writes the three history rows directly)."""
        task_queue = self._task_queue_for(owner, group, description.requirements())
        job_id = self.next_job_id
        self.next_job_id += 1
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
        packed = msgpack.packb(description.attributes, use_bin_type=True)
        self.changes.new_jobs.append((job, packed))
        self._new_descriptions[job_id] = description.attributes
        self.changes.history.extend(
            HistoryEntry(job_id, status.value, minor, "", now, source)
            for status, minor, source in SUBMISSION_PATH
        )
        task_queue.push(job_id, job.priority)
        return job_id

    def _task_queue_for(self, owner: str, group: str, requirements: Requirements) -> TaskQueue:
        task_queue = self.matcher.find(owner, group, requirements)
        if task_queue is not None:
            return task_queue
        row = TaskQueueRow(self.next_task_queue_id, owner, group, requirements)
        self.next_task_queue_id += 1
        self.changes.new_task_queues.append(row)
        return self._register_task_queue(row)

    # -- matching --------------------------------------------------------------------------------

    def why_not(self, resources: PilotResources) -> str:
        """Why a pilot at this site gets nothing right now, or '' if it may be matched."""
        site = self.sites.get(resources.site)
        if site is not None and site.banned:
            return f"site {resources.site} is banned: {site.reason}"
        limit = self.config.sites.get(resources.site)
        if limit and limit.max_running and self.site_active[resources.site] >= limit.max_running:
            return f"site {resources.site} has reached its limit of {limit.max_running} jobs"
        return ""

    def request_job(
        self, pilot_id: str, resources: PilotResources, now: float
    ) -> JobRecord | None:
        self.sites_seen.add(resources.site)
        pilot = self.pilots.contact(pilot_id, resources.site, resources.ce, now)
        if pilot.kill_requested or self.why_not(resources):
            return None
        match = self.matcher.match(resources, now)
        if match is None:
            return None
        job = self.jobs[match.job_id]
        job.pilot_id, job.site = pilot_id, resources.site
        self.pilots.note_job(pilot, job.job_id)
        self.set_status(job, S.MATCHED, f"Assigned to pilot {pilot_id}", "Matcher", now)
        log.debug("job %d matched to pilot %s at %s", job.job_id, pilot_id, resources.site)
        return job

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
                active_sites[job.site] += 1
                running[(job.group, "")] += self.cores(job)
                running[(job.group, job.owner)] += self.cores(job)
        assert +self.site_active == active_sites, (self.site_active, active_sites)
        for key, account in self.shares.accounts.items():
            assert account.running_cores == running[key], (key, account.running_cores)

    # -- reports from pilots ---------------------------------------------------------------------

    def held_job(self, job_id: int, attempt: int, pilot_id: str) -> JobRecord:
        """The job, if this pilot holds this attempt of it; else StaleAttempt."""
        job = self.job(job_id)
        if job.attempt != attempt or job.pilot_id != pilot_id:
            raise StaleAttempt(
                f"job {job_id}: attempt {attempt} by pilot {pilot_id!r} is not current "
                f"(current attempt {job.attempt}, pilot {job.pilot_id or 'none'!r})"
            )
        return job

    def push_kill(self, job: JobRecord) -> None:
        """Tell the pilot holding ``job`` to kill it, at once (heartbeat replies repeat it)."""
        self.pushes.append((job.pilot_id, {"command": "kill", "job_id": job.job_id}))

    def take_pushes(self) -> list[tuple[str, dict[str, Any]]]:
        pushes, self.pushes = self.pushes, []
        return pushes

    def pending_commands(self, job: JobRecord) -> list[dict[str, Any]]:
        commands = []
        if job.kill_requested or job.status in (S.KILLED, S.DONE, S.FAILED, S.DELETED):
            commands.append({"command": "kill", "job_id": job.job_id})
        commands.extend(self.pilot_commands(job.pilot_id))
        return commands

    def pilot_commands(self, pilot_id: str) -> list[dict[str, Any]]:
        """What a pilot must do whatever job it asks about: stop, if an admin killed it."""
        pilot = self.pilots.pilots.get(pilot_id)
        return [STOP_PILOT] if pilot is not None and pilot.kill_requested else []

    def kill_pilot(self, pilot_id: str, now: float) -> list[int]:
        """An admin kills a pilot: its jobs are rescheduled (the pilot is told to kill them), it
        is told to stop, and its director cancels it. Returns the rescheduled jobs."""
        pilot = self.pilots.kill(pilot_id, now)
        held = [job for job in map(self.jobs.get, pilot.jobs)
                if job is not None and job.pilot_id == pilot_id and job.status in ACTIVE_STATUSES]
        for job in held:
            self.push_kill(job)
            self.reschedule(job, f"Pilot {pilot_id} killed by an admin", "admin", now, hold=False)
        self.pushes.append((pilot_id, STOP_PILOT))
        return [job.job_id for job in held]
