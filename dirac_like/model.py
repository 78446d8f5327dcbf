"""Records the central service keeps in memory and writes to the store.

``JobRecord`` is mutable on purpose: the service's in-memory index holds one per job and changes it
in place; the store writes the fields below as they are at commit time. Everything else here is
frozen.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

from dirac_like.accounting import (
    JobAccountingRecord,
    PilotAccountingRecord,
    RetentionCutoffs,
    TransferAccountingRecord,
)
from dirac_like.monitoring import Downtime, ProbeResult, StatusRecord
from dirac_like.states import JobStatus, PilotState


@dataclass(slots=True, eq=False)
class JobRecord:
    job_id: int
    owner: str
    group: str
    task_queue_id: int
    priority: int
    status: JobStatus
    minor_status: str = ""
    application_status: str = ""
    site: str = "ANY"
    job_name: str = ""
    pilot_id: str = ""
    attempt: int = 1
    reschedules: int = 0
    submitted: float = 0.0
    updated: float = 0.0
    matched_at: float = 0.0  # when the current attempt was matched (usage is charged from here)
    deadline: float = 0.0  # lease end (Matched), stall limit (Running), hold-off end (Rescheduled)
    heartbeat_at: float = 0.0
    kill_requested: bool = False

    def summary(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "status": self.status.value,
            "minor_status": self.minor_status,
            "application_status": self.application_status,
            "site": self.site,
            "owner": self.owner,
            "group": self.group,
            "job_name": self.job_name,
            "attempt": self.attempt,
            "pilot_id": self.pilot_id,
        }


@dataclass(slots=True, eq=False)
class PilotRecord:
    """One pilot: submitted by a site director (which reports its state from the fabric) or met
    first when it asked for a job. The central service keeps every record; a director keeps
    those of its site while it follows them (agents/director_records.py)."""

    pilot_id: str
    site: str
    ce: str = ""
    fabric: str = ""  # the kind of fabric that runs it (local, simulated, slurm; '' unknown)
    fabric_ref: str = ""  # the fabric's reference (a PID, a Slurm job id)
    state: str = "Submitted"  # a PilotState value
    reason: str = ""  # why it is in this state (a refusal, a cancel, an exit code)
    submitted: float = 0.0
    updated: float = 0.0
    last_contact: float = 0.0  # its last request to the service (0: never)
    kill_requested: bool = False
    # The identity that acts as this pilot (bound at its first request; '' not yet): no other
    # credential of the site may act as it (services/pilots.py, dirac_like/authz.py).
    credential: str = ""
    started: float = 0.0  # when it was first seen running (0: not yet)
    jobs: list[int] = field(default_factory=list)  # every job matched to it (pilot_jobs rows)

    @property
    def pilot_state(self) -> PilotState:
        return PilotState(self.state)

    def view(self) -> dict[str, Any]:
        return {
            "pilot_id": self.pilot_id,
            "site": self.site,
            "ce": self.ce,
            "fabric": self.fabric,
            "fabric_ref": self.fabric_ref,
            "state": self.state,
            "reason": self.reason,
            "submitted": self.submitted,
            "updated": self.updated,
            "last_contact": self.last_contact,
            "kill_requested": self.kill_requested,
            "started": self.started,
            "jobs": list(self.jobs),
        }


@dataclass(frozen=True)
class Requirements:
    """What every job of a task queue needs from a pilot. Part of the task queue's identity."""

    sites: tuple[str, ...] = ()  # empty: any site
    banned_sites: tuple[str, ...] = ()
    platforms: tuple[str, ...] = ()  # empty: any platform
    cores: int = 1
    max_ram_mb: int = 0  # 0: no memory requirement
    cpu_time: int = 0  # seconds per core
    tags: tuple[str, ...] = ()
    ces: tuple[str, ...] = ()  # GridCE: empty: any CE
    max_cores: int = 0  # a core range cores..max_cores (0: exactly cores)
    core_step: int = 1  # cores beyond ``cores`` are granted in steps of this (SmpGranularity)

    def to_wire(self) -> dict[str, Any]:
        return {
            "sites": list(self.sites),
            "banned_sites": list(self.banned_sites),
            "platforms": list(self.platforms),
            "cores": self.cores,
            "max_ram_mb": self.max_ram_mb,
            "cpu_time": self.cpu_time,
            "tags": list(self.tags),
            "ces": list(self.ces),
            "max_cores": self.max_cores,
            "core_step": self.core_step,
        }

    @classmethod
    def from_wire(cls, raw: dict[str, Any]) -> Requirements:
        return cls(
            sites=tuple(raw["sites"]),
            banned_sites=tuple(raw["banned_sites"]),
            platforms=tuple(raw["platforms"]),
            cores=int(raw["cores"]),
            max_ram_mb=int(raw["max_ram_mb"]),
            cpu_time=int(raw["cpu_time"]),
            tags=tuple(raw["tags"]),
            ces=tuple(raw.get("ces", ())),  # task queues stored before GridCE have none
            max_cores=int(raw.get("max_cores", 0)),
            core_step=int(raw.get("core_step", 1)),
        )


@dataclass(frozen=True)
class TaskQueueRow:
    task_queue_id: int
    owner: str
    group: str
    requirements: Requirements


class HistoryEntry(NamedTuple):
    """One row of a job's status history (a tuple: cheap to make by the hundred thousand)."""

    job_id: int
    status: str
    minor_status: str
    application_status: str
    time: float
    source: str

    def to_wire(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "minor_status": self.minor_status,
            "application_status": self.application_status,
            "time": self.time,
            "source": self.source,
        }


class SharedHistory(NamedTuple):
    """History rows that the jobs ``first_job_id .. last_job_id`` share but for their job id:
    the steps of jobs made together (Received, Checking, Waiting at the same time, the same
    minor statuses), written once for the run instead of three rows per job. A job's history is
    the entries of the run that holds it (each job is in one run at most: it is made once), then
    its own rows; the stores read it so (``Store.history``)."""

    first_job_id: int
    last_job_id: int
    entries: tuple[HistoryEntry, ...]  # their job id is not used (0)

    def holds(self, job_id: int) -> bool:
        return self.first_job_id <= job_id <= self.last_job_id

    def of(self, job_id: int) -> list[HistoryEntry]:
        """The entries as ``job_id``'s own."""
        return [entry._replace(job_id=job_id) for entry in self.entries]


@dataclass(frozen=True)
class SiteRecord:
    name: str
    banned: bool
    reason: str
    changed: float
    automatic: bool = False  # banned by the monitoring policy (which may lift only its own bans)
    drained: bool = False  # an admin drains it: no new match, running jobs finish
    max_running: int = -1  # set by an admin (0: no limit); -1: as configured


@dataclass(frozen=True)
class UsageRecord:
    """Decayed usage in core-seconds of a group (user == "") or of a user within a group."""

    group: str
    user: str
    usage: float
    stamp: float


@dataclass(frozen=True)
class StoredReply:
    request_id: str  # the key: "principal/request id" (services/replies.py reply_key)
    reply: bytes
    time: float


@dataclass(frozen=True)
class FileEntry:
    """A logical file in the replica catalog (its replicas are rows of their own)."""

    lfn: str
    size: int
    adler32: str
    guid: str
    owner: str
    group: str
    created: float


@dataclass(frozen=True)
class SEStatusRecord:
    """An SE's status as set by an admin (or a monitoring agent): Active, Degraded, Banned."""

    se: str
    status: str
    reason: str
    changed: float


@dataclass(frozen=True)
class RuleRecord:
    """Keep ``copies`` Good replicas of every file below ``folder`` on SEs with all ``tags``."""

    rule_id: int
    folder: str
    copies: int
    tags: str  # comma-separated
    owner: str
    created: float
    expires: float  # 0: never

    @property
    def tag_set(self) -> frozenset[str]:
        return frozenset(filter(None, self.tags.split(",")))


@dataclass(slots=True, eq=False)
class TransferRecord:
    """A request to put a replica of ``lfn`` on ``destination``; changed in place, like jobs."""

    transfer_id: int
    lfn: str
    destination: str
    status: str = "Waiting"  # Waiting, Assigned, Active, Done, Failed
    reason: str = ""
    priority: int = 0
    owner: str = ""
    attempt: int = 0  # 0: never leased; each lease makes a new attempt
    source: str = ""  # the source of the current (or last) attempt
    agent: str = ""
    tried: str = ""  # sources that failed, comma-separated (tried again only when all have)
    created: float = 0.0
    updated: float = 0.0
    deadline: float = 0.0  # lease end (Assigned, Active) or hold-off end (Waiting)

    def view(self) -> dict[str, Any]:
        return {
            "transfer_id": self.transfer_id,
            "lfn": self.lfn,
            "destination": self.destination,
            "status": self.status,
            "reason": self.reason,
            "priority": self.priority,
            "owner": self.owner,
            "attempt": self.attempt,
            "source": self.source,
            "agent": self.agent,
            "created": self.created,
            "updated": self.updated,
        }


@dataclass(frozen=True)
class BulkActionRecord:
    """How far a bulk action got (services/bulk.py); its job ids are stored once, apart."""

    bulk_id: int
    action: str
    selection: str
    owner: str  # "": any owner (an admin's selection)
    count: int
    position: int  # job ids taken so far (the next batch starts there)
    done: int
    skipped: int
    skipped_sample: tuple[str, ...]
    started: float


@dataclass(frozen=True)
class SubmissionRecord:
    """A big submission acknowledged whole and expanded in slices (services/expansion.py):
    its jobs are ``first_job_id .. first_job_id + count - 1``; those from ``expanded`` on are
    still to be made, from ``sources`` parsed again (the parse is deterministic)."""

    first_job_id: int
    owner: str
    group: str
    submitter: str
    sources: tuple[Any, ...]  # JDL texts or mappings, as submitted
    count: int
    expanded: int
    submitted: float


@dataclass
class ChangeSet:
    """Everything one batch of requests changed; the store writes it in ONE transaction."""

    new_task_queues: list[TaskQueueRow] = field(default_factory=list)
    new_jobs: list[tuple[JobRecord, bytes]] = field(default_factory=list)  # (job, packed JDL)
    changed_jobs: dict[int, JobRecord] = field(default_factory=dict)
    history: list[HistoryEntry] = field(default_factory=list)
    # runs of new jobs sharing their first history rows (written before ``history``)
    shared_history: list[SharedHistory] = field(default_factory=list)
    sites: dict[str, SiteRecord] = field(default_factory=dict)
    shares: dict[str, float] = field(default_factory=dict)
    usage: dict[tuple[str, str], UsageRecord] = field(default_factory=dict)
    replies: list[StoredReply] = field(default_factory=list)
    forget_replies_before: float | None = None
    pilots: dict[str, PilotRecord] = field(default_factory=dict)  # written whole (not .jobs)
    pilot_jobs: list[tuple[str, int]] = field(default_factory=list)  # (pilot id, job id)
    pilot_outputs: dict[str, str] = field(default_factory=dict)
    forget_pilots: list[str] = field(default_factory=list)  # with their jobs and output
    next_pilot_number: int | None = None
    sandboxes: list[tuple[int, str, str]] = field(default_factory=list)  # (job, kind, sha256)
    probe_results: list[ProbeResult] = field(default_factory=list)
    statuses: dict[tuple[str, str], StatusRecord] = field(default_factory=dict)  # (kind, target)
    downtimes: dict[int, Downtime] = field(default_factory=dict)  # new or cancelled
    # accounting: a record per job attempt and per pilot that ended (dirac_like/accounting.py)
    job_accounting: list[JobAccountingRecord] = field(default_factory=list)
    pilot_accounting: list[PilotAccountingRecord] = field(default_factory=list)
    accounting_retention: RetentionCutoffs | None = None
    transfer_accounting: list[TransferAccountingRecord] = field(default_factory=list)
    # kept usage samples of running jobs: (job id, attempt, time, cpu seconds, rss MB)
    usage_samples: list[tuple[int, int, float, float, float]] = field(default_factory=list)
    # the replica catalog: lfn -> entry (None: removed); lfn -> se -> status (None: removed)
    catalog_files: dict[str, FileEntry | None] = field(default_factory=dict)
    catalog_replicas: dict[str, dict[str, str | None]] = field(default_factory=dict)
    se_status: dict[str, SEStatusRecord] = field(default_factory=dict)
    transfers: dict[int, TransferRecord] = field(default_factory=dict)
    rules: dict[int, RuleRecord | None] = field(default_factory=dict)  # None: removed
    # bulk actions: progress (None: forgotten), and the job ids of new ones (written once)
    bulk_actions: dict[int, BulkActionRecord | None] = field(default_factory=dict)
    bulk_job_ids: dict[int, list[int]] = field(default_factory=dict)
    # submissions expanded in slices, by first job id (None: fully expanded, forgotten)
    submissions: dict[int, SubmissionRecord | None] = field(default_factory=dict)

    def is_empty(self) -> bool:
        return not self.usage_samples and self.nothing_but_usage_samples()

    def nothing_but_usage_samples(self) -> bool:
        """Whether every field but ``usage_samples`` is empty (services/durability.py: those
        may wait for a later commit)."""
        return not (
            self.new_task_queues
            or self.new_jobs
            or self.changed_jobs
            or self.history
            or self.shared_history
            or self.sites
            or self.shares
            or self.usage
            or self.replies
            or self.forget_replies_before is not None
            or self.pilots
            or self.pilot_jobs
            or self.pilot_outputs
            or self.forget_pilots
            or self.next_pilot_number is not None
            or self.sandboxes
            or self.probe_results
            or self.statuses
            or self.downtimes
            or self.job_accounting
            or self.pilot_accounting
            or self.accounting_retention is not None
            or self.transfer_accounting
            or self.catalog_files
            or self.catalog_replicas
            or self.se_status
            or self.transfers
            or self.rules
            or self.bulk_actions
            or self.bulk_job_ids
            or self.submissions
        )


@dataclass
class LoadedState:
    """What the service rebuilds its memory from at start-up."""

    jobs: list[JobRecord]
    task_queues: list[TaskQueueRow]
    sites: list[SiteRecord]
    shares: dict[str, float]
    usage: list[UsageRecord]
    replies: list[StoredReply]
    pilots: list[PilotRecord] = field(default_factory=list)  # with their jobs
    next_pilot_number: int = 1
    statuses: list[StatusRecord] = field(default_factory=list)  # of sites and SEs
    downtimes: list[Downtime] = field(default_factory=list)
    se_status: list[SEStatusRecord] = field(default_factory=list)
    transfers: list[TransferRecord] = field(default_factory=list)
    rules: list[RuleRecord] = field(default_factory=list)
    bulk_actions: list[tuple[BulkActionRecord, list[int]]] = field(default_factory=list)
    submissions: list[SubmissionRecord] = field(default_factory=list)
