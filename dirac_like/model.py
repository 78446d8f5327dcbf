"""Records the central service keeps in memory and writes to the store.

``JobRecord`` is mutable on purpose: the service's in-memory index holds one per job and changes it
in place; the store writes the fields below as they are at commit time. Everything else here is
frozen.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

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


@dataclass(frozen=True)
class SiteRecord:
    name: str
    banned: bool
    reason: str
    changed: float
    automatic: bool = False  # banned by the monitoring policy (which may lift only its own bans)


@dataclass(frozen=True)
class UsageRecord:
    """Decayed usage in core-seconds of a group (user == "") or of a user within a group."""

    group: str
    user: str
    usage: float
    stamp: float


@dataclass(frozen=True)
class StoredReply:
    request_id: str
    reply: bytes
    time: float


@dataclass
class ChangeSet:
    """Everything one batch of requests changed; the store writes it in ONE transaction."""

    new_task_queues: list[TaskQueueRow] = field(default_factory=list)
    new_jobs: list[tuple[JobRecord, bytes]] = field(default_factory=list)  # (job, packed JDL)
    changed_jobs: dict[int, JobRecord] = field(default_factory=dict)
    history: list[HistoryEntry] = field(default_factory=list)
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

    def is_empty(self) -> bool:
        return not (
            self.new_task_queues
            or self.new_jobs
            or self.changed_jobs
            or self.history
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
