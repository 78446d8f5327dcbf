"""The wire: protocol version, operations, message dataclasses and the msgpack codec.

This module imports nothing from the rest of dirac-like except the error hierarchy, which names
the stable error codes. No pickle, ever: frames are msgpack maps of plain types.

Request frame: ``{"v": 1, "id": str, "op": str, "args": {...}}``
Reply frame:   ``{"v": 1, "id": str, "ok": True, "result": ...}``
               ``{"v": 1, "id": str, "ok": False, "error": {"code": str, "message": str}}``
               (the error may carry ``"retryable": True``: nothing was done, send it again with
               the same id)

Every operation's arguments and reply are frozen dataclasses below (:data:`ARGUMENTS`,
:data:`REPLIES`), and so are the commands the service sends pilots (:data:`PilotCommand`). Both
sides build and read them with the same code: :func:`to_wire` turns any of them into plain msgpack
types, :func:`parse_args` and :func:`parse_reply` check a raw msgpack value against its type
(unknown keys, missing keys and wrong types are a :class:`ProtocolError`), and
:func:`encode_command` / :func:`decode_command` handle the tagged command union.

Compatibility (issue 15): ``v`` changes only for a break. Within one ``v`` the checker refuses
unknown keys, so a message grows only in ways an older peer still reads:

- a field added to a request or reply after peers shipped is left off the wire while it has its
  default (:data:`OMIT_AT_DEFAULT`);
- a reply field for pilots is filled only for a pilot that says it reads it: the pilot sends
  ``revision`` (:data:`PILOT_REVISION`, the newest it reads) with ``request_job(s)``, and the
  service fills a field of revision N only for ``revision >= N`` (``MatchedJob.lease``: 1;
  ``MatchedJob.inline_output_bytes``: 2);
- a new operation is called only by peers that know it; a pilot falls back to the older
  operation when a service answers ``unknown_op`` (``request_jobs`` → ``request_job``,
  ``update_statuses`` → ``update_status``, ``pilot_turn`` → ``update_statuses`` and
  ``request_jobs`` with a Running report per match).

A service answers the pilots of the previous revision (one version back) as they expect; tests
in tests/unit/test_pilot_wire_compat.py read its replies with the older pilot's types.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

import msgpack

from dirac_like.errors import (
    MessageTooLarge,
    ProtocolError,
    UnknownOperation,
    UnsupportedVersion,
)

PROTOCOL_VERSION = 1
# The pilot's wire revision (see the module's docstring): 1 reads MatchedJob.lease, 2 reads
# MatchedJob.inline_output_bytes (and then may send UpdateStatusArgs.output_data).
PILOT_REVISION = 2
LEASE_REVISION = 1
INLINE_REVISION = 2
MAX_JOBS_PER_REQUEST = 64  # request_jobs: matches in one request
MAX_REPORTS_PER_REQUEST = 256  # update_statuses: reports in one request
# update_statuses: the output sandboxes inlined in one request's reports, together (a pilot
# sends more in further requests; the service refuses a request over it).
MAX_INLINE_BYTES_PER_REQUEST = 1024 * 1024
DEFAULT_MAX_MESSAGE_BYTES = 16 * 1024 * 1024
MAX_REQUEST_ID_LENGTH = 64
MAX_JOB_IDS = 100_000  # job ids in one request
MAX_ERROR_MESSAGE = 2000  # characters of an error reply's message (it may quote the request)
# A field added to a message after peers shipped: left off the wire while it has its default, so
# an older peer (whose checker refuses unknown keys) reads the message as before.
OMIT_AT_DEFAULT: dict[str, bool] = {"omit_at_default": True}


@dataclass(frozen=True)
class Request:
    id: str
    op: str
    args: dict[str, Any]


@dataclass(frozen=True)
class ErrorInfo:
    code: str
    message: str
    retryable: bool = False  # the request was not done and may be sent again, same id


@dataclass(frozen=True)
class Reply:
    id: str
    ok: bool
    result: Any = None
    error: ErrorInfo | None = None


# --------------------------------------------------------------------------------------------
# Operation arguments


@dataclass(frozen=True)
class NoArgs:
    pass


@dataclass(frozen=True)
class SubmitArgs:
    # Each item is a JDL text or a mapping of DIRAC attribute names (the JSON form).
    descriptions: list[str | dict[str, Any]]
    owner: str
    group: str = ""
    # Who submits (the input sandboxes named must be theirs): set by the service's
    # authorization from the transport, whatever a client sends here.
    submitter: str = ""


@dataclass(frozen=True)
class JobIdsArgs:
    job_ids: list[int]


@dataclass(frozen=True)
class JobIdArgs:
    job_id: int


@dataclass(frozen=True)
class ListJobsArgs:
    status: str | None = None
    site: str | None = None
    owner: str | None = None
    group: str | None = None
    limit: int = 10000
    name: str | None = None  # a shell pattern on the job name (mc_*)
    older: float = 0.0  # submitted at least this many seconds ago (0: any)
    newer: float = 0.0  # submitted at most this many seconds ago (0: any)


@dataclass(frozen=True)
class PilotResources:
    """What a pilot offers; everything but the site is optional."""

    site: str
    ce: str = ""
    platform: str = ""
    cores: int = 1
    memory_mb: int = 0  # 0: unknown, jobs asking for MaxRAM do not match
    cpu_time_left: int = 0  # seconds of CPU per core; 0: unknown, no limit checked
    tags: list[str] = field(default_factory=list)
    required_tags: list[str] = field(default_factory=list)
    owner_group: str = ""  # private pilot: only this group's jobs
    # All the pilot's cores, free or not (``cores`` is the free ones). 0: not said (a pilot older
    # than draining), and such a pilot is never asked to hold cores.
    total_cores: int = field(default=0, metadata=OMIT_AT_DEFAULT)
    # The pilot reads ``RequestJobReply.drain`` (False: a pilot older than site drains, never
    # sent the flag: it idles out).
    understands_drain: bool = field(default=False, metadata=OMIT_AT_DEFAULT)


@dataclass(frozen=True)
class RequestJobArgs:
    pilot_id: str
    resources: PilotResources
    # The identity acting as the pilot, bound to its record: set by the service's authorization
    # from the transport (whatever a pilot sends here is replaced).
    credential: str = ""
    # The newest pilot wire revision the sender reads (0: a pilot older than revisions).
    revision: int = field(default=0, metadata=OMIT_AT_DEFAULT)


@dataclass(frozen=True)
class RequestJobsArgs:
    """Up to ``count`` jobs for the free cores of ``resources`` in one request (issue 15)."""

    pilot_id: str
    resources: PilotResources
    count: int
    credential: str = ""  # as in RequestJobArgs
    revision: int = 0


@dataclass(frozen=True)
class EligibleArgs:
    resources: PilotResources


@dataclass(frozen=True)
class JobUsage:
    """What a job's payload used, as its pilot measured it (sent with the final status, for
    the accounting record). Zero: not measured."""

    cpu_seconds: float = 0.0  # user + system of the payload's whole process tree
    wall_seconds: float = 0.0  # from the payload's start to its end
    peak_rss_mb: float = 0.0  # the highest resident memory of the process tree
    input_bytes: int = 0  # input sandbox downloaded
    output_bytes: int = 0  # output sandbox uploaded (or inlined in the final report)
    exit_code: int | None = None  # None: the payload never started; negative: killed by signal


@dataclass(frozen=True)
class UpdateStatusArgs:
    job_id: int
    attempt: int
    pilot_id: str
    status: str
    minor_status: str = ""
    application_status: str = ""
    output_sandbox: str = ""  # sha256 of the uploaded output sandbox (with a final status)
    usage: JobUsage | None = None  # with a final status: what the payload used
    # The output sandbox itself (its sha256 is ``output_sandbox``), inlined in the final report
    # instead of uploaded first (issue 15): only when the match said the service takes it
    # (``MatchedJob.inline_output_bytes``); stored as an upload is, before the report is
    # acknowledged. Left off the wire when empty: an older service refuses the key.
    output_data: bytes = field(default=b"", metadata=OMIT_AT_DEFAULT)


@dataclass(frozen=True)
class UpdateStatusesArgs:
    """Several status reports of one pilot in one request (issue 15), applied in order, each
    on its own: one refused leaves the others applied. All in one durable commit."""

    pilot_id: str
    reports: list[UpdateStatusArgs]


@dataclass(frozen=True)
class PilotTurnArgs:
    """One pilot turn in one request (issue 15): the pilot's pending status reports, applied
    as ``update_statuses`` applies them (each on its own, a repeat answered without applying it
    twice), then up to ``count`` jobs for the free cores of ``resources``, each recorded Running
    at once ("Application", as the pilot's Running report says): the pilot starts each matched
    payload when the reply comes, which is after the one durable commit of it all. ``count`` 0:
    the reports only."""

    pilot_id: str
    reports: list[UpdateStatusArgs]
    resources: PilotResources
    count: int = 0
    credential: str = ""  # as in RequestJobArgs
    revision: int = 0  # as in RequestJobArgs


@dataclass(frozen=True)
class HeartbeatArgs:
    job_id: int
    attempt: int
    pilot_id: str
    metrics: dict[str, Any] = field(default_factory=dict)
    stdout_tail: str = ""  # the payload's last lines of stdout (bounded; shown by job peek)


@dataclass(frozen=True)
class BanSiteArgs:
    site: str
    reason: str


@dataclass(frozen=True)
class SiteArgs:
    site: str


@dataclass(frozen=True)
class SetShareArgs:
    group: str
    share: float


@dataclass(frozen=True)
class AddPilotsArgs:
    site: str
    ce: str
    count: int
    fabric: str = ""


@dataclass(frozen=True)
class PilotUpdateItem:
    """What a director learned about one pilot (``None``: unchanged)."""

    pilot_id: str
    state: str
    fabric_ref: str | None = None
    reason: str | None = None
    output: str | None = None  # the pilot's output (once it ended)


@dataclass(frozen=True)
class UpdatePilotsArgs:
    updates: list[PilotUpdateItem]


@dataclass(frozen=True)
class ListPilotsArgs:
    site: str | None = None
    states: list[str] = field(default_factory=list)  # empty: every state
    limit: int = 10000


@dataclass(frozen=True)
class PilotIdArgs:
    pilot_id: str


@dataclass(frozen=True)
class PilotStoppedArgs:
    """A pilot says it stopped (``dirac-like pilot`` on its way out), with its exit code."""

    pilot_id: str
    exit_code: int = 0


@dataclass(frozen=True)
class SandboxUploadArgs:
    sha256: str  # of the whole archive
    size: int  # of the whole archive
    offset: int  # where this chunk goes; chunks come in order, a repeated one is fine
    data: bytes
    kind: str = "input"  # "input" or "output": which size limit applies
    # Who will hold the archive once uploaded: set by the service's authorization from the
    # transport (whatever a client sends here is replaced); only admins choose.
    owner: str = ""


@dataclass(frozen=True)
class SandboxDownloadArgs:
    sha256: str
    offset: int = 0
    length: int = 1024 * 1024


@dataclass(frozen=True)
class IdentityAddArgs:
    name: str
    role: str
    groups: list[str] = field(default_factory=list)
    site: str = ""


@dataclass(frozen=True)
class IdentityListArgs:
    pilot_tokens: bool = False  # also list the pilot tokens directors obtained


@dataclass(frozen=True)
class IdentityRevokeArgs:
    name: str


@dataclass(frozen=True)
class PilotTokenArgs:
    site: str
    pilot_id: str = ""  # the pilot record it is for; "": any pilot of the site


# -- operators' console (issue 14): job why, bulk actions, site operations ----------------------


@dataclass(frozen=True)
class SelectArgs:
    selection: str  # dirac_like.selection: status=Waiting,site=X,owner=Y,older=2d,name=mc_*
    sample: int = 10  # how many of the selected jobs to show
    only_owner: str = ""  # set by the authorization check: a user selects only its own jobs


@dataclass(frozen=True)
class BulkArgs:
    action: str  # kill, reschedule or delete
    selection: str
    expected: int  # the count the user was shown: a different count now is refused
    yes: bool = False  # confirmed (needed above the confirmation cap)
    over_admin_cap: bool = False  # needed above the admin cap; only an admin may pass it
    only_owner: str = ""  # set by the authorization check


@dataclass(frozen=True)
class BulkIdArgs:
    bulk_id: int
    only_owner: str = ""  # set by the authorization check


@dataclass(frozen=True)
class SiteDrainArgs:
    site: str
    drain: bool = True  # False: take jobs again


@dataclass(frozen=True)
class SiteLimitArgs:
    site: str
    limit: int  # jobs matched or running at once; 0: no limit; -1: back to the configured one


@dataclass(frozen=True)
class ProbeResultItem:
    """One check of a probe run (see dirac_like.monitoring.ProbeResult)."""

    target: str
    kind: str  # "site" or "se"
    check: str
    status: str  # OK, WARNING, CRITICAL or UNKNOWN
    message: str
    time: float
    ce: str = ""
    job_id: int = 0


@dataclass(frozen=True)
class ProbeReportArgs:
    results: list[ProbeResultItem]


@dataclass(frozen=True)
class ProbeResultsArgs:
    since: float
    target: str = ""  # "": every target
    limit: int = 100_000


@dataclass(frozen=True)
class SetStatusArgs:
    target: str
    kind: str  # "site" or "se"
    status: str  # Active, Degraded, Probing or Banned
    reason: str


@dataclass(frozen=True)
class DowntimeAddArgs:
    target: str
    kind: str  # "site" or "se"
    start: float
    end: float
    reason: str
    scheduled: bool = True


@dataclass(frozen=True)
class DowntimeListArgs:
    include_ended: bool = False  # also ended and cancelled ones


@dataclass(frozen=True)
class DowntimeIdArgs:
    downtime_id: int


# --------------------------------------------------------------------------------------------
# Data management: storage elements, the replica catalog, transfer requests


@dataclass(frozen=True)
class SEStatusArgs:
    se: str
    status: str  # Active, Degraded or Banned
    reason: str = ""


@dataclass(frozen=True)
class FileItem:
    """One file to register with its first (or a further) replica."""

    lfn: str
    size: int
    adler32: str
    se: str
    guid: str = ""  # "": the service makes one


@dataclass(frozen=True)
class RegisterArgs:
    files: list[FileItem]
    owner: str = ""  # set by the service from the caller's identity (admins may give one)
    group: str = ""
    job_id: int = 0  # a pilot registers a job's output data: the job's owner owns it


@dataclass(frozen=True)
class LfnsArgs:
    lfns: list[str]


@dataclass(frozen=True)
class FolderArgs:
    folder: str
    limit: int = 100_000


@dataclass(frozen=True)
class RemoveArgs:
    lfns: list[str]
    se: str = ""  # "": every replica and the file itself


@dataclass(frozen=True)
class ReplicaStatusArgs:
    lfn: str
    se: str
    status: str  # Good or Bad
    reason: str = ""


@dataclass(frozen=True)
class TransferSubmitArgs:
    lfns: list[str]
    destination: str
    priority: int = 0
    owner: str = ""  # set by the service from the caller's identity
    job_id: int = 0  # a pilot asks for a job's output data to be moved (failover)


@dataclass(frozen=True)
class TransferRequestArgs:
    agent: str
    max_count: int = 1


@dataclass(frozen=True)
class TransferUpdateArgs:
    transfer_id: int
    attempt: int
    agent: str
    status: str  # Active (renews the lease), Done or Failed
    source: str = ""
    reason: str = ""
    size: int = -1  # Done: what the agent verified at the destination
    adler32: str = ""


@dataclass(frozen=True)
class RuleAddArgs:
    folder: str
    copies: int
    se_tags: list[str]
    lifetime: float = 0.0  # seconds; 0: for ever
    owner: str = ""  # set by the service from the caller's identity


@dataclass(frozen=True)
class RuleIdArgs:
    rule_id: int


@dataclass(frozen=True)
class ListTransfersArgs:
    status: str | None = None
    owner: str | None = None
    transfer_ids: list[int] = field(default_factory=list)
    limit: int = 10000


# --------------------------------------------------------------------------------------------
# Commands the service sends a pilot: pushed unasked, and repeated in the replies to its
# heartbeats and status reports until it acts. On the wire: a map tagged by ``"command"``.


@dataclass(frozen=True)
class KillJob:
    """Kill the payload of this job (it was killed, rescheduled or taken away)."""

    TAG: ClassVar[str] = "kill"
    job_id: int


@dataclass(frozen=True)
class StopPilot:
    """Stop: take no new job, hand the running ones back, exit."""

    TAG: ClassVar[str] = "stop"
    reason: str = ""


PilotCommand = KillJob | StopPilot
COMMANDS: dict[str, type[KillJob] | type[StopPilot]] = {
    KillJob.TAG: KillJob,
    StopPilot.TAG: StopPilot,
}


# --------------------------------------------------------------------------------------------
# Operation replies (the ``result`` of an ok reply)


@dataclass(frozen=True)
class PingReply:
    service: str
    version: str
    protocol: int
    time: float
    jobs: int


@dataclass(frozen=True)
class SubmitReply:
    job_ids: list[int]
    warnings: list[str] = field(default_factory=list)  # e.g. jobs no known CE can ever run


@dataclass(frozen=True)
class JobSummary:
    """One job as ``status`` and ``list_jobs`` show it."""

    job_id: int
    status: str  # a JobStatus value
    minor_status: str
    application_status: str
    site: str
    owner: str
    group: str
    job_name: str
    attempt: int
    pilot_id: str


@dataclass(frozen=True)
class KillReply:
    killed: list[int]  # at once (they were not running)
    kill_requested: list[int]  # sent to their pilots; Killed when the pilot confirms


@dataclass(frozen=True)
class RescheduleReply:
    rescheduled: list[int]


@dataclass(frozen=True)
class DeleteReply:
    deleted: list[int]  # all or none


@dataclass(frozen=True)
class JobDescriptionReply:
    description: dict[str, Any]  # as stored (canonical DIRAC names, parametric values expanded)


@dataclass(frozen=True)
class PeekReply:
    job_id: int
    status: str  # a JobStatus value
    tail: str  # the last lines of stdout the job's pilot sent


@dataclass(frozen=True)
class PilotStoppedReply:
    closed: bool  # whether the pilot's own report closed its record


@dataclass(frozen=True)
class HistoryRow:
    status: str
    minor_status: str
    application_status: str
    time: float
    source: str


@dataclass(frozen=True)
class MatchedJob:
    job_id: int
    attempt: int
    owner: str
    group: str
    cores: int
    # The job's description as stored (validated at submit; canonical DIRAC attribute names):
    # a pilot reads it with dirac_like.description.description_from_stored, which checks it
    # again, so the pilot runs the typed values of a valid JobDescription.
    description: dict[str, Any]
    # Seconds the payload may run without a heartbeat acknowledged: the pilot kills it after
    # that (agents/payload_keeper.py), before the service may reschedule the job (it waits
    # stalled_to_reschedule more). 0: no lease (a service that does not send one, or a pilot
    # older than LEASE_REVISION, which is not sent one: its checker refuses the key).
    lease: float = field(default=0.0, metadata=OMIT_AT_DEFAULT)
    # The biggest output sandbox (packed bytes) the service takes inlined in the job's final
    # report (``UpdateStatusArgs.output_data``); 0: upload it first (a service that takes none
    # inline, or a pilot older than INLINE_REVISION, which is not sent the key).
    inline_output_bytes: int = field(default=0, metadata=OMIT_AT_DEFAULT)


@dataclass(frozen=True)
class CoreHold:
    """Keep the free cores for a bigger job: ask for no job until ``cores`` are free, or until
    ``seconds`` have passed (then ask as usual). See dirac_like/draining.py."""

    cores: int
    seconds: float
    group: str  # whose job the cores are held for (for the pilot's log)


@dataclass(frozen=True)
class RequestJobReply:
    job: MatchedJob | None  # None: no job, ``reason`` says why
    reason: str
    commands: list[PilotCommand]
    # Only with no job, and only to a pilot that said its total_cores; left off the wire when
    # None, so a pilot older than draining reads the reply.
    hold: CoreHold | None = field(default=None, metadata=OMIT_AT_DEFAULT)
    # The pilot's site is drained by an operator: take no new job, finish the running ones,
    # then exit. Only to a pilot that said it understands (``PilotResources.understands_drain``).
    drain: bool = field(default=False, metadata=OMIT_AT_DEFAULT)


@dataclass(frozen=True)
class RequestJobsReply:
    jobs: list[MatchedJob]  # empty: no job, ``reason`` says why
    reason: str
    commands: list[PilotCommand]
    hold: CoreHold | None = None  # as in RequestJobReply (only with no job)
    drain: bool = field(default=False, metadata=OMIT_AT_DEFAULT)  # as in RequestJobReply


@dataclass(frozen=True)
class ReportOutcome:
    """What became of one report of ``update_statuses``: its commands, or why it was refused
    (``error``: nothing of it was applied; ``retryable``: send it again later)."""

    commands: list[PilotCommand]
    error: ErrorInfo | None = None


@dataclass(frozen=True)
class ReportOutcomes:
    outcomes: list[ReportOutcome]  # one per report, in order


@dataclass(frozen=True)
class PilotTurnReply:
    """What became of a pilot turn: one outcome per report (as ``update_statuses``), the jobs
    matched and already Running for the pilot (start each at once), and as ``request_jobs``
    says them: why no job, the pilot's commands, a hold, a drain."""

    outcomes: list[ReportOutcome]
    jobs: list[MatchedJob]
    reason: str
    commands: list[PilotCommand]
    hold: CoreHold | None = None
    drain: bool = False


@dataclass(frozen=True)
class EligibleReply:
    eligible: int
    reason: str  # why none, when the pilot could run nothing at all (a banned site)


@dataclass(frozen=True)
class CommandsReply:
    """The reply to ``update_status`` and ``heartbeat``: what the pilot must do now."""

    commands: list[PilotCommand]


@dataclass(frozen=True)
class SiteRow:
    site: str
    status: str  # Active, Degraded, Probing (the monitoring policy's), Banned, or Draining
    reason: str
    active_jobs: int
    max_running: int


@dataclass(frozen=True)
class SiteReply:
    site: str
    banned: bool
    reason: str


@dataclass(frozen=True)
class TaskQueueRow:
    task_queue_id: int
    owner: str
    group: str
    requirements: dict[str, Any]
    waiting: int
    top_priority: int | None


@dataclass(frozen=True)
class ShareRow:
    group: str
    share: float
    share_fraction: float
    usage_core_seconds: float
    running_cores: int
    load_fraction: float
    # Added with draining (issue 16); defaults so an older service's rows still read.
    usage_cores: float = 0.0  # the decayed usage as cores (its average over the recent past)
    load: float = 0.0  # running_cores + usage_cores: what the matcher ranks on, per share
    load_per_share: float = 0.0  # the smallest is served first
    running_fraction: float = 0.0  # of all running cores


@dataclass(frozen=True)
class SetShareReply:
    group: str
    share: float


@dataclass(frozen=True)
class AddPilotsReply:
    pilot_ids: list[str]


@dataclass(frozen=True)
class UpdatePilotsReply:
    updated: int


@dataclass(frozen=True)
class PilotView:
    pilot_id: str
    site: str
    ce: str
    fabric: str
    fabric_ref: str
    state: str  # a PilotState value
    reason: str
    submitted: float
    updated: float
    last_contact: float
    kill_requested: bool
    jobs: list[int]
    started: float = 0.0  # when it was first seen running (0: not yet)


@dataclass(frozen=True)
class PilotOutputReply:
    pilot_id: str
    state: str
    collected: bool  # False: its director has not collected it yet
    output: str


@dataclass(frozen=True)
class KillPilotReply:
    pilot_id: str
    rescheduled: list[int]


@dataclass(frozen=True)
class SandboxUploadReply:
    received: int  # bytes received so far
    complete: bool


@dataclass(frozen=True)
class SandboxDownloadReply:
    data: bytes  # empty past the end
    size: int  # of the whole archive


@dataclass(frozen=True)
class JobOutputReply:
    job_id: int
    sha256: str
    status: str


@dataclass(frozen=True)
class IdentityFile:
    """An identity as issued (secret key included); the fields of an identity file."""

    name: str
    role: str
    public_key: str
    secret_key: str
    service_key: str
    format: int  # of the identity file
    groups: list[str] = field(default_factory=list)
    site: str = ""
    pilot_id: str = ""
    expires: float = 0.0
    server: str = ""


@dataclass(frozen=True)
class IdentityView:
    name: str
    role: str
    groups: list[str]
    site: str
    pilot_id: str
    expires: float
    created: float
    revoked: float
    state: str  # active, expired or revoked
    public_key: str


@dataclass(frozen=True)
class IdentityRevokeReply:
    name: str
    revoked: int  # keys revoked


# -- operators' console (issue 14) replies ----------------------------------------------------


@dataclass(frozen=True)
class WhyReply:
    """Why a job waits (dirac_like.why.Explanation on the wire)."""

    job_id: int
    status: str
    verdict: str  # one of dirac_like.why.VERDICTS
    reason: str
    details: list[str]
    ces_considered: int
    ce_rejections: dict[str, int]  # requirement -> how many known CEs reject the job by it
    pilots_considered: int
    pilot_rejections: dict[str, int]  # requirement -> how many recent pilots reject it by it
    jobs_ahead: int  # -1: not computed
    estimated_wait: float  # seconds; -1: unknown


@dataclass(frozen=True)
class SelectionReply:
    selection: str  # as the service applied it (narrowed to the owner for a user)
    count: int
    sample: list[JobSummary]
    note: str  # e.g. "only your jobs are counted"
    confirm_above: int  # a bulk action on more jobs needs --yes
    admin_above: int  # a bulk action on more jobs needs an admin


@dataclass(frozen=True)
class BulkReply:
    bulk_id: int
    count: int  # jobs it will act on, in batches


@dataclass(frozen=True)
class BulkStatusReply:
    bulk_id: int
    action: str
    selection: str
    owner: str
    count: int
    done: int  # acted on
    skipped: int  # could not be (they changed meanwhile)
    finished: bool
    skipped_sample: list[str]  # why some were skipped


@dataclass(frozen=True)
class SiteShowReply:
    site: str
    status: str  # Active, Banned or Draining
    reason: str
    max_running: int
    active_jobs: int
    ces: list[dict[str, Any]]  # what each known CE offers (PilotResources fields)
    pilots_by_state: dict[str, int]
    last_pilot: float  # 0: never
    director_seen: float  # last sizing request of its director; 0: never
    waiting_could_run: int  # waiting jobs a pilot of one of its CEs could run


@dataclass(frozen=True)
class SiteStateReply:
    site: str
    status: str
    max_running: int


@dataclass(frozen=True)
class ServiceInstanceRow:
    """One instance of the central service (docs/high-availability.md)."""

    name: str
    endpoint: str  # where it serves when it leads
    host: str
    pid: int
    role: str  # leader, standby, or silent (not seen alive for a while: dead or cut off)
    since: float  # when it took that role
    seen: float  # when it last noted itself alive
    # the store schema version its code reads and writes (0: not known, an older instance)
    code_schema: int = field(default=0, metadata=OMIT_AT_DEFAULT)


@dataclass(frozen=True)
class ServiceStatusReply:
    store: str  # the store's kind: sqlite, postgresql
    instances: list[ServiceInstanceRow]  # the leader first
    schema: int = field(default=0, metadata=OMIT_AT_DEFAULT)  # the store's schema version


@dataclass(frozen=True)
class PilotSummaryRow:
    site: str
    state: str
    count: int


@dataclass(frozen=True)
class ProbeReportReply:
    stored: int


@dataclass(frozen=True)
class StatusRow:
    """A site's or SE's status: the policy's (or an operator's ban), and its downtime now."""

    target: str
    kind: str
    status: str  # Active, Degraded, Probing or Banned
    reason: str
    changed: float
    automatic: bool  # set by the monitoring policy; False: by an operator (or never set)
    downtime: str  # the downtime in force now ("" if none)


@dataclass(frozen=True)
class DowntimeRow:
    downtime_id: int
    target: str
    kind: str
    start: float
    end: float
    reason: str
    scheduled: bool
    created: float
    cancelled: float  # 0: in force


@dataclass(frozen=True)
class SERow:
    """A storage element as configured, with its current status."""

    name: str
    site: str
    protocol: str
    endpoint: str
    base_path: str
    read: bool
    write: bool
    delete: bool
    total_space: int
    tags: list[str]
    rules: dict[str, Any]
    status: str
    reason: str
    used_space: int = 0  # bytes of its replicas in the catalog (counted when total_space is set)


@dataclass(frozen=True)
class ReplicaRow:
    se: str
    status: str  # Good or Bad


@dataclass(frozen=True)
class FileRow:
    lfn: str
    size: int
    adler32: str
    guid: str
    owner: str
    group: str
    created: float
    replicas: list[ReplicaRow]


@dataclass(frozen=True)
class RegisterReply:
    new_files: int
    new_replicas: int


@dataclass(frozen=True)
class CatalogFilesReply:
    files: list[FileRow]
    missing: list[str]  # LFNs not in the catalog


@dataclass(frozen=True)
class FolderReply:
    folder: str
    folders: list[str]
    files: list[FileRow]


@dataclass(frozen=True)
class RemoveReply:
    removed_replicas: int
    removed_files: list[str]
    missing: list[str]


@dataclass(frozen=True)
class TransferView:
    transfer_id: int
    lfn: str
    destination: str
    status: str  # Waiting, Assigned, Active, Done, Failed
    reason: str
    priority: int
    owner: str
    attempt: int
    source: str
    agent: str
    created: float
    updated: float


@dataclass(frozen=True)
class RuleRow:
    rule_id: int
    folder: str
    copies: int
    se_tags: list[str]
    owner: str
    created: float
    expires: float
    ses: list[str]  # the SEs whose tags match
    state: str  # OK, Replicating, Stuck ("" before the first reconciliation)
    files: int
    satisfied: int
    replicating: int
    missing: int


@dataclass(frozen=True)
class TransferSubmitReply:
    transfer_ids: list[int]


@dataclass(frozen=True)
class TransferTask:
    """A transfer leased to an agent: copy ``lfn`` from ``source`` to ``destination``."""

    transfer_id: int
    attempt: int
    lfn: str
    size: int
    adler32: str
    source: str
    destination: str
    lease: float  # seconds the agent holds it unless it renews


class Op:
    """Operation names, as sent in the ``op`` field."""

    PING = "ping"
    SUBMIT = "submit"
    STATUS = "status"
    LIST_JOBS = "list_jobs"
    KILL = "kill"
    RESCHEDULE = "reschedule"
    HISTORY = "history"
    REQUEST_JOB = "request_job"
    REQUEST_JOBS = "request_jobs"
    ELIGIBLE = "eligible"
    UPDATE_STATUS = "update_status"
    UPDATE_STATUSES = "update_statuses"
    PILOT_TURN = "pilot_turn"
    HEARTBEAT = "heartbeat"
    SITES = "sites"
    BAN_SITE = "ban_site"
    UNBAN_SITE = "unban_site"
    TASK_QUEUES = "task_queues"
    SHARES = "shares"
    SET_SHARE = "set_share"
    ADD_PILOTS = "add_pilots"
    UPDATE_PILOTS = "update_pilots"
    PILOTS = "pilots"
    PILOT_OUTPUT = "pilot_output"
    KILL_PILOT = "kill_pilot"
    SANDBOX_UPLOAD = "sandbox_upload"
    SANDBOX_DOWNLOAD = "sandbox_download"
    JOB_OUTPUT = "job_output"
    IDENTITY_ADD = "identity_add"
    IDENTITY_LIST = "identity_list"
    IDENTITY_REVOKE = "identity_revoke"
    PILOT_TOKEN = "pilot_token"
    SE_LIST = "se_list"
    SE_SET_STATUS = "se_set_status"
    CATALOG_REGISTER = "catalog_register"
    CATALOG_FILES = "catalog_files"
    CATALOG_LIST = "catalog_list"
    CATALOG_REMOVE = "catalog_remove"
    CATALOG_REPLICA_STATUS = "catalog_replica_status"
    TRANSFER_SUBMIT = "transfer_submit"
    TRANSFER_REQUEST = "transfer_request"
    TRANSFER_UPDATE = "transfer_update"
    TRANSFERS = "transfers"
    RULE_ADD = "rule_add"
    RULES = "rules"
    RULE_REMOVE = "rule_remove"
    JOB_DESCRIPTION = "job_description"
    DELETE = "delete"
    PEEK = "peek"
    PILOT_STOPPED = "pilot_stopped"
    # operators' console (issue 14)
    WHY = "why"
    SELECT_JOBS = "select_jobs"
    BULK = "bulk"
    BULK_STATUS = "bulk_status"
    SITE_SHOW = "site_show"
    SITE_DRAIN = "site_drain"
    SITE_LIMIT = "site_limit"
    PILOT_SUMMARY = "pilot_summary"
    PROBE_REPORT = "probe_report"
    PROBE_RESULTS = "probe_results"
    RESOURCE_STATUS = "resource_status"
    SET_STATUS = "set_status"
    DOWNTIME_ADD = "downtime_add"
    DOWNTIME_LIST = "downtime_list"
    DOWNTIME_CANCEL = "downtime_cancel"
    SERVICE_STATUS = "service_status"


ARGUMENTS: dict[str, type] = {
    Op.PING: NoArgs,
    Op.SUBMIT: SubmitArgs,
    Op.STATUS: JobIdsArgs,
    Op.LIST_JOBS: ListJobsArgs,
    Op.KILL: JobIdsArgs,
    Op.RESCHEDULE: JobIdsArgs,
    Op.HISTORY: JobIdArgs,
    Op.REQUEST_JOB: RequestJobArgs,
    Op.REQUEST_JOBS: RequestJobsArgs,
    Op.ELIGIBLE: EligibleArgs,
    Op.UPDATE_STATUS: UpdateStatusArgs,
    Op.UPDATE_STATUSES: UpdateStatusesArgs,
    Op.PILOT_TURN: PilotTurnArgs,
    Op.HEARTBEAT: HeartbeatArgs,
    Op.SITES: NoArgs,
    Op.BAN_SITE: BanSiteArgs,
    Op.UNBAN_SITE: SiteArgs,
    Op.TASK_QUEUES: NoArgs,
    Op.SHARES: NoArgs,
    Op.SET_SHARE: SetShareArgs,
    Op.ADD_PILOTS: AddPilotsArgs,
    Op.UPDATE_PILOTS: UpdatePilotsArgs,
    Op.PILOTS: ListPilotsArgs,
    Op.PILOT_OUTPUT: PilotIdArgs,
    Op.KILL_PILOT: PilotIdArgs,
    Op.SANDBOX_UPLOAD: SandboxUploadArgs,
    Op.SANDBOX_DOWNLOAD: SandboxDownloadArgs,
    Op.JOB_OUTPUT: JobIdArgs,
    Op.IDENTITY_ADD: IdentityAddArgs,
    Op.IDENTITY_LIST: IdentityListArgs,
    Op.IDENTITY_REVOKE: IdentityRevokeArgs,
    Op.PILOT_TOKEN: PilotTokenArgs,
    Op.SE_LIST: NoArgs,
    Op.SE_SET_STATUS: SEStatusArgs,
    Op.CATALOG_REGISTER: RegisterArgs,
    Op.CATALOG_FILES: LfnsArgs,
    Op.CATALOG_LIST: FolderArgs,
    Op.CATALOG_REMOVE: RemoveArgs,
    Op.CATALOG_REPLICA_STATUS: ReplicaStatusArgs,
    Op.TRANSFER_SUBMIT: TransferSubmitArgs,
    Op.TRANSFER_REQUEST: TransferRequestArgs,
    Op.TRANSFER_UPDATE: TransferUpdateArgs,
    Op.TRANSFERS: ListTransfersArgs,
    Op.RULE_ADD: RuleAddArgs,
    Op.RULES: NoArgs,
    Op.RULE_REMOVE: RuleIdArgs,
    Op.JOB_DESCRIPTION: JobIdArgs,
    Op.DELETE: JobIdsArgs,
    Op.PEEK: JobIdArgs,
    Op.PILOT_STOPPED: PilotStoppedArgs,
    # operators' console (issue 14)
    Op.WHY: JobIdsArgs,
    Op.SELECT_JOBS: SelectArgs,
    Op.BULK: BulkArgs,
    Op.BULK_STATUS: BulkIdArgs,
    Op.SITE_SHOW: SiteArgs,
    Op.SITE_DRAIN: SiteDrainArgs,
    Op.SITE_LIMIT: SiteLimitArgs,
    Op.PILOT_SUMMARY: NoArgs,
    Op.PROBE_REPORT: ProbeReportArgs,
    Op.PROBE_RESULTS: ProbeResultsArgs,
    Op.RESOURCE_STATUS: NoArgs,
    Op.SET_STATUS: SetStatusArgs,
    Op.DOWNTIME_ADD: DowntimeAddArgs,
    Op.DOWNTIME_LIST: DowntimeListArgs,
    Op.DOWNTIME_CANCEL: DowntimeIdArgs,
    Op.SERVICE_STATUS: NoArgs,
}

# The result of each operation's ok reply.
REPLIES: dict[str, Any] = {
    Op.PING: PingReply,
    Op.SUBMIT: SubmitReply,
    Op.STATUS: list[JobSummary],
    Op.LIST_JOBS: list[JobSummary],
    Op.KILL: KillReply,
    Op.RESCHEDULE: RescheduleReply,
    Op.HISTORY: list[HistoryRow],
    Op.REQUEST_JOB: RequestJobReply,
    Op.REQUEST_JOBS: RequestJobsReply,
    Op.ELIGIBLE: EligibleReply,
    Op.UPDATE_STATUS: CommandsReply,
    Op.UPDATE_STATUSES: ReportOutcomes,
    Op.PILOT_TURN: PilotTurnReply,
    Op.HEARTBEAT: CommandsReply,
    Op.SITES: list[SiteRow],
    Op.BAN_SITE: SiteReply,
    Op.UNBAN_SITE: SiteReply,
    Op.TASK_QUEUES: list[TaskQueueRow],
    Op.SHARES: list[ShareRow],
    Op.SET_SHARE: SetShareReply,
    Op.ADD_PILOTS: AddPilotsReply,
    Op.UPDATE_PILOTS: UpdatePilotsReply,
    Op.PILOTS: list[PilotView],
    Op.PILOT_OUTPUT: PilotOutputReply,
    Op.KILL_PILOT: KillPilotReply,
    Op.SANDBOX_UPLOAD: SandboxUploadReply,
    Op.SANDBOX_DOWNLOAD: SandboxDownloadReply,
    Op.JOB_OUTPUT: JobOutputReply,
    Op.IDENTITY_ADD: IdentityFile,
    Op.IDENTITY_LIST: list[IdentityView],
    Op.IDENTITY_REVOKE: IdentityRevokeReply,
    Op.PILOT_TOKEN: IdentityFile,
    Op.SE_LIST: list[SERow],
    Op.SE_SET_STATUS: SERow,
    Op.CATALOG_REGISTER: RegisterReply,
    Op.CATALOG_FILES: CatalogFilesReply,
    Op.CATALOG_LIST: FolderReply,
    Op.CATALOG_REMOVE: RemoveReply,
    Op.CATALOG_REPLICA_STATUS: ReplicaRow,
    Op.TRANSFER_SUBMIT: TransferSubmitReply,
    Op.TRANSFER_REQUEST: list[TransferTask],
    Op.TRANSFER_UPDATE: TransferView,
    Op.TRANSFERS: list[TransferView],
    Op.RULE_ADD: RuleRow,
    Op.RULES: list[RuleRow],
    Op.RULE_REMOVE: RuleRow,
    Op.JOB_DESCRIPTION: JobDescriptionReply,
    Op.DELETE: DeleteReply,
    Op.PEEK: PeekReply,
    Op.PILOT_STOPPED: PilotStoppedReply,
    # operators' console (issue 14)
    Op.WHY: list[WhyReply],
    Op.SELECT_JOBS: SelectionReply,
    Op.BULK: BulkReply,
    Op.BULK_STATUS: BulkStatusReply,
    Op.SITE_SHOW: SiteShowReply,
    Op.SITE_DRAIN: SiteStateReply,
    Op.SITE_LIMIT: SiteStateReply,
    Op.PILOT_SUMMARY: list[PilotSummaryRow],
    Op.PROBE_REPORT: ProbeReportReply,
    Op.PROBE_RESULTS: list[ProbeResultItem],
    Op.RESOURCE_STATUS: list[StatusRow],
    Op.SET_STATUS: StatusRow,
    Op.DOWNTIME_ADD: DowntimeRow,
    Op.DOWNTIME_LIST: list[DowntimeRow],
    Op.DOWNTIME_CANCEL: DowntimeRow,
    Op.SERVICE_STATUS: ServiceStatusReply,
}

# Operations that change stored state: their replies are remembered under the request id so a
# retried request gets the first reply instead of acting twice.
MUTATING_OPS = frozenset(
    {
        Op.SUBMIT,
        Op.KILL,
        Op.RESCHEDULE,
        Op.REQUEST_JOB,
        Op.REQUEST_JOBS,
        Op.UPDATE_STATUS,
        Op.UPDATE_STATUSES,
        Op.PILOT_TURN,
        Op.BAN_SITE,
        Op.UNBAN_SITE,
        Op.SET_SHARE,
        Op.ADD_PILOTS,
        Op.UPDATE_PILOTS,
        Op.KILL_PILOT,
        Op.IDENTITY_ADD,
        Op.IDENTITY_REVOKE,
        Op.PILOT_TOKEN,
        Op.SE_SET_STATUS,
        Op.CATALOG_REGISTER,
        Op.CATALOG_REMOVE,
        Op.CATALOG_REPLICA_STATUS,
        Op.TRANSFER_SUBMIT,
        Op.TRANSFER_REQUEST,
        Op.TRANSFER_UPDATE,
        Op.RULE_ADD,
        Op.RULE_REMOVE,
        Op.DELETE,
        Op.PILOT_STOPPED,
        Op.BULK,
        Op.SITE_DRAIN,
        Op.SITE_LIMIT,
        Op.PROBE_REPORT,
        Op.SET_STATUS,
        Op.DOWNTIME_ADD,
        Op.DOWNTIME_CANCEL,
    }
)
# sandbox_upload changes files, not the store: a repeated chunk is written again at its offset,
# which leaves the same bytes, so it needs no remembered reply.
# Of those, replies kept in memory only, not written to the store: after a crash a retried
# request_job gets a fresh match, and the job matched the first time goes back to Waiting when
# its lease expires. Nothing is lost, and the hottest operation writes a third less.
# identity_add and pilot_token reply with a secret key, which is not to be written anywhere:
# after a crash their retry is refused (the name exists) or issues a fresh token.
# transfer_request is like request_job: a lease lost in a crash expires and the request waits again.
# pilot_turn's reply IS stored: its jobs are Running for the pilot at once, so a turn resent
# after a crash must get the same jobs (a fresh match would leave them Running with no payload).
REPLIES_NOT_STORED = frozenset(
    {Op.REQUEST_JOB, Op.REQUEST_JOBS, Op.IDENTITY_ADD, Op.PILOT_TOKEN, Op.TRANSFER_REQUEST}
)
# Of those, replies that carry a secret key: remembered in memory for a short while only
# (service.secret_reply_memory), enough for the retries of a reply lost on the way.
SECRET_REPLIES = frozenset({Op.IDENTITY_ADD, Op.PILOT_TOKEN})


# --------------------------------------------------------------------------------------------
# Codec


def _pack(obj: dict[str, Any]) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


def is_protocol_version(value: Any) -> bool:
    """Whether ``value`` is this side's protocol version: the integer itself, not ``true`` or
    ``1.0`` (which compare equal to 1 in Python)."""
    return type(value) is int and value == PROTOCOL_VERSION


def _unpack_map(data: bytes, max_bytes: int) -> dict[str, Any]:
    if len(data) > max_bytes:
        raise MessageTooLarge(f"message of {len(data)} bytes exceeds the limit of {max_bytes}")
    try:
        obj = msgpack.unpackb(data, raw=False, strict_map_key=True)
    except Exception as exc:  # msgpack raises several unrelated types for garbage
        raise ProtocolError(f"frame is not valid msgpack: {type(exc).__name__}") from None
    if not isinstance(obj, dict):
        raise ProtocolError(f"frame is a msgpack {type(obj).__name__}, not a map")
    version = obj.get("v")
    if not is_protocol_version(version):
        raise UnsupportedVersion(
            f"protocol version {version!r} is not supported (this side speaks {PROTOCOL_VERSION})"
        )
    return obj


def _request_id(obj: dict[str, Any]) -> str:
    request_id = obj.get("id")
    if not isinstance(request_id, str) or not 0 < len(request_id) <= MAX_REQUEST_ID_LENGTH:
        raise ProtocolError(f"'id' must be a string of 1 to {MAX_REQUEST_ID_LENGTH} characters")
    return request_id


def encode_request(request: Request) -> bytes:
    return _pack({"v": PROTOCOL_VERSION, "id": request.id, "op": request.op, "args": request.args})


def decode_request(data: bytes, max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> Request:
    obj = _unpack_map(data, max_bytes)
    request_id = _request_id(obj)
    op, args = obj.get("op"), obj.get("args", {})
    if not isinstance(op, str):
        raise ProtocolError("'op' must be a string")
    if op not in ARGUMENTS:
        raise UnknownOperation(f"unknown operation {op[:64]!r}")
    if not isinstance(args, dict):
        raise ProtocolError("'args' must be a map")
    extra = set(obj) - {"v", "id", "op", "args"}
    if extra:
        raise ProtocolError(f"unknown envelope field(s): {', '.join(sorted(map(str, extra)))}")
    return Request(id=request_id, op=op, args=args)


def peek_request_id(data: bytes, max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> str:
    """The id of a frame that failed to decode, if one can be read, else ''. A frame over
    ``max_bytes`` is not unpacked again just for its id."""
    if len(data) > max_bytes:
        return ""
    try:
        obj = msgpack.unpackb(data, raw=False)
        request_id = obj.get("id") if isinstance(obj, dict) else None
    except Exception:
        return ""
    if isinstance(request_id, str) and len(request_id) <= MAX_REQUEST_ID_LENGTH:
        return request_id
    return ""


def encode_push(commands: list[PilotCommand]) -> bytes:
    """A frame the service sends unasked to a connected pilot: ``{"v", "push": {"commands"}}``.

    The same commands are repeated in the replies to the pilot's heartbeats until it acts, so a
    lost push only delays a command, never loses it.
    """
    return _pack({"v": PROTOCOL_VERSION, "push": {"commands": to_wire(commands)}})


def decode_push(data: bytes) -> list[PilotCommand] | None:
    """The commands of a push frame, or None if ``data`` is not one (a reply); a push frame
    with a malformed or unknown command is a :class:`ProtocolError`."""
    try:
        obj = msgpack.unpackb(data, raw=False)
    except Exception:
        return None
    if not isinstance(obj, dict) or not is_protocol_version(obj.get("v")) or "push" not in obj:
        return None
    push = obj["push"]
    if type(push) is not dict or set(push) != {"commands"}:
        raise ProtocolError("push frame must be a map with 'commands' only")
    return parse_reply_value(list[PilotCommand], push["commands"], "push.commands")


def encode_command(command: PilotCommand) -> dict[str, Any]:
    """A command as a plain map tagged by ``"command"``: ``{"command": "kill", "job_id": 7}``."""
    fields = {name: getattr(command, name) for name in _field_names(type(command))}
    return {"command": command.TAG, **fields}


def decode_command(raw: Any) -> PilotCommand:
    """The command a plain map names; an unknown tag or a bad field is a ProtocolError."""
    command: PilotCommand = parse_reply_value(PilotCommand, raw, "command")
    return command


def to_wire(value: Any) -> Any:
    """Plain msgpack types from any of this module's dataclasses (also in lists), the one
    encoder of both sides; other values are returned as they are."""
    cls = type(value)
    encoder = _ENCODERS.get(cls)
    if encoder is None:
        encoder = _ENCODERS[cls] = _encoder(cls)
    return encoder(value)


def _encoder(cls: type) -> Callable[[Any], Any]:
    """How to encode a value of type ``cls``: built once per type (replies can hold 10**5
    rows)."""
    if cls is list or cls is tuple:
        return lambda items: [to_wire(item) for item in items]
    if cls in COMMANDS.values():
        return encode_command
    if not dataclasses.is_dataclass(cls):
        return lambda value: value
    hints = typing.get_type_hints(cls)
    nested = [name for name in _field_names(cls) if _holds_dataclass(hints[name])]
    omitted = [
        (f.name, f.default) for f in dataclasses.fields(cls) if f.metadata.get("omit_at_default")
    ]
    if not nested and not omitted:
        return lambda value: dict(value.__dict__)  # fields in order, each already plain

    def encode(value: Any) -> dict[str, Any]:
        plain = dict(value.__dict__)
        for name, default in omitted:
            if plain[name] == default:
                del plain[name]
        for name in nested:
            if name in plain:
                plain[name] = to_wire(plain[name])
        return plain

    return encode


def _holds_dataclass(hint: Any) -> bool:
    return dataclasses.is_dataclass(hint) or any(
        _holds_dataclass(arg) for arg in typing.get_args(hint)
    )


_ENCODERS: dict[type, Callable[[Any], Any]] = {}
_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def _field_names(cls: type) -> tuple[str, ...]:
    names = _FIELD_NAMES.get(cls)
    if names is None:
        names = _FIELD_NAMES[cls] = tuple(f.name for f in dataclasses.fields(cls))
    return names


def encode_reply(reply: Reply) -> bytes:
    frame: dict[str, Any] = {"v": PROTOCOL_VERSION, "id": reply.id, "ok": reply.ok}
    if reply.ok:
        frame["result"] = to_wire(reply.result)
    else:
        assert reply.error is not None
        frame["error"] = {"code": reply.error.code, "message": reply.error.message}
        if reply.error.retryable:
            frame["error"]["retryable"] = True
    return _pack(frame)


def encode_ok(request_id: str, result: Any) -> bytes:
    """An ok reply; ``result`` is one of the reply dataclasses (or a list of them)."""
    return encode_reply(Reply(id=request_id, ok=True, result=result))


def encode_error(request_id: str, code: str, message: str, retryable: bool = False) -> bytes:
    """An error reply; a message quoting a huge argument is cut to MAX_ERROR_MESSAGE.
    ``retryable``: nothing was done, the client may send the same request (same id) again."""
    if len(message) > MAX_ERROR_MESSAGE:
        cut = len(message) - MAX_ERROR_MESSAGE
        message = f"{message[:MAX_ERROR_MESSAGE]}... ({cut} more characters)"
    return encode_reply(Reply(id=request_id, ok=False, error=ErrorInfo(code, message, retryable)))


def decode_reply(data: bytes, max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> Reply:
    obj = _unpack_map(data, max_bytes)
    request_id = _request_id(obj)
    ok = obj.get("ok")
    if ok is True:
        return Reply(id=request_id, ok=True, result=obj.get("result"))
    error = obj.get("error")
    if ok is not False or not isinstance(error, dict):
        raise ProtocolError("reply must carry ok=true with a result or ok=false with an error")
    code, message = error.get("code"), error.get("message")
    if not isinstance(code, str) or not isinstance(message, str):
        raise ProtocolError("reply error must have string 'code' and 'message'")
    return Reply(
        id=request_id, ok=False, error=ErrorInfo(code, message, error.get("retryable") is True)
    )


# --------------------------------------------------------------------------------------------
# Argument checking

ArgsT = TypeVar("ArgsT")
Checker = Callable[[Any], Any]


class _BadArgument(Exception):
    """Raised inside the checkers; ``path`` grows as it goes up ('.resources.cores')."""

    def __init__(self, problem: str, path: str = "") -> None:
        self.problem = problem
        self.path = path

    def within(self, step: str) -> _BadArgument:
        self.path = step + self.path
        return self


def parse_args(cls: type[ArgsT], raw: Any, where: str = "args") -> ArgsT:
    """Build the frozen dataclass ``cls`` from a msgpack map, checking every field's type."""
    try:
        built: ArgsT = _checker(cls)(raw)  # type: ignore[arg-type]
    except _BadArgument as exc:
        raise ProtocolError(f"{where}{exc.path}: {exc.problem}") from None
    return built


def parse_reply(op: str, raw: Any) -> Any:
    """Build the reply dataclass of ``op`` (:data:`REPLIES`) from a reply's raw ``result``; a
    wrong shape (a broken or hostile service) is a :class:`ProtocolError`."""
    return parse_reply_value(REPLIES[op], raw, f"reply to {op}")


def parse_reply_value(hint: Any, raw: Any, where: str) -> Any:
    """Check ``raw`` against the type ``hint`` (a dataclass, a list of them, a command...)."""
    try:
        return _checker(hint)(raw)
    except _BadArgument as exc:
        raise ProtocolError(f"{where}{exc.path}: {exc.problem}") from None


@functools.cache
def _checker(hint: Any) -> Checker:
    """A function that checks (and converts) one value of type ``hint``; built once per type."""
    origin = typing.get_origin(hint)
    if hint is Any:
        return lambda value: value
    if hint == PilotCommand:
        return _command_checker
    if origin in (typing.Union, types.UnionType):
        return _union_checker([_checker(option) for option in typing.get_args(hint)])
    if dataclasses.is_dataclass(hint):
        return _dataclass_checker(hint)  # type: ignore[arg-type]
    if origin is list:
        return _list_checker(_checker(typing.get_args(hint)[0]))
    if origin is dict:
        return _map_checker
    return _scalar_checker(hint)


def _union_checker(options: list[Checker]) -> Checker:
    def check(value: Any) -> Any:
        for option in options:
            try:
                return option(value)
            except _BadArgument:
                continue
        raise _BadArgument(f"wrong type ({type(value).__name__})")

    return check


_EXACT_SCALARS = (str, int, bool, float, bytes)


def _dataclass_checker(cls: type) -> Checker:
    hints = typing.get_type_hints(cls)
    fields = [
        (
            f.name,
            _checker(hints[f.name]),
            f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING,
            # a scalar field's value of exactly its type is taken as it is, without a call
            # (replies of 10**5 rows); any other value goes through its checker
            hints[f.name] if hints[f.name] in _EXACT_SCALARS else None,
        )
        for f in dataclasses.fields(cls)
    ]
    names = frozenset(field[0] for field in fields)
    build = _builder(cls)

    def check(raw: Any) -> Any:
        if type(raw) is not dict:
            raise _BadArgument("must be a map")
        if not names.issuperset(raw):
            unknown = sorted(str(key) for key in raw if key not in names)
            raise _BadArgument(f"unknown argument(s) {', '.join(unknown)}")
        values = {}
        for name, check_field, required, exact in fields:
            if name in raw:
                value = raw[name]
                if exact is not None and type(value) is exact:
                    values[name] = value
                    continue
                try:
                    values[name] = check_field(value)
                except _BadArgument as exc:
                    raise exc.within(f".{name}") from None
            elif required:
                raise _BadArgument(f"missing argument '{name}'")
        return build(values)

    return check


MessageT = TypeVar("MessageT")


def build_trusted(cls: type[MessageT], fields: dict[str, Any]) -> MessageT:
    """``cls(**fields)`` for values already of the right types (the service's own records),
    without the cost of a frozen dataclass's __init__: for replies of 10**5 rows."""
    built: MessageT = _builder(typing.cast(Any, cls))(fields)
    return built


@functools.cache
def _builder(cls: Any) -> Callable[[dict[str, Any]], Any]:
    """Makes an instance of ``cls`` from checked field values. A frozen dataclass's __init__
    sets each field through object.__setattr__ (three times slower; replies can hold 10**5
    rows), so a plain one (no __post_init__, no slots) is filled in directly, defaults
    included."""
    if hasattr(cls, "__post_init__") or hasattr(cls, "__slots__"):
        return lambda values: cls(**values)
    defaults = [
        (f.name, f.default, f.default_factory)
        for f in dataclasses.fields(cls)
        if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
    ]

    def build(values: dict[str, Any]) -> Any:
        for name, default, factory in defaults:
            if name not in values:
                values[name] = default if factory is dataclasses.MISSING else factory()
        built = object.__new__(cls)
        built.__dict__.update(values)
        return built

    return build


def _command_checker(raw: Any) -> Any:
    if type(raw) is not dict:
        raise _BadArgument("must be a map")
    tag = raw.get("command")
    cls: Any = COMMANDS.get(tag) if isinstance(tag, str) else None
    if cls is None:
        raise _BadArgument(f"unknown command {str(tag)[:32]!r}")
    try:
        return _checker(cls)({key: value for key, value in raw.items() if key != "command"})
    except _BadArgument as exc:
        raise exc.within(f"({tag})") from None


def _list_checker(item: Checker) -> Checker:
    def check(value: Any) -> Any:
        if type(value) is not list:
            raise _BadArgument("must be a list")
        checked = []
        for index, element in enumerate(value):
            try:
                checked.append(item(element))
            except _BadArgument as exc:
                raise exc.within(f"[{index}]") from None
        return checked

    return check


def _map_checker(value: Any) -> Any:
    if type(value) is not dict or not all(type(key) is str for key in value):
        raise _BadArgument("must be a map with string keys")
    return value


def _scalar_checker(hint: type) -> Checker:
    # msgpack gives exact types, so ``type(v) is`` is enough (and refuses bool for int)
    accepted = (int, float) if hint is float else (hint,)

    def check(value: Any) -> Any:
        if type(value) not in accepted:
            raise _BadArgument(f"must be {hint.__name__}, not {type(value).__name__}")
        return float(value) if hint is float else value

    return check
