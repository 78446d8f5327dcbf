"""The Python API to the central service: a DEALER socket with Lazy Pirate retries.

Each method takes plain values, sends the op's arguments dataclass and returns its reply
dataclass (``dirac_like.protocol``); a reply of the wrong shape is a :class:`ProtocolError`.

Each call gets a fresh request id; a retry after a timeout re-sends the SAME id on a fresh socket,
and the service answers a retried id with the reply it gave the first time, so a retried submit
never creates a second job. An error reply marked ``retryable`` (the service did nothing with
the request: ``store_error``, ``rate_limited``, a batch undone) is retried the same way, with the
same id, within the same policy; the last one is raised when the tries run out. Backoff between
tries is capped and jittered.

Every socket is a CurveZMQ client presenting the client's identity (given, else the one
:func:`dirac_like.identity.resolve_identity` finds: ``$DIRAC_LIKE_IDENTITY``, then the home's
default). Without one (``insecure=True``, or none found) it speaks plaintext, which only a
service started with ``--insecure`` answers: a secure service refuses the handshake, and the
client hears nothing until its retries run out.

``server`` may name several instances of the central service, comma-separated
(``tcp://a:7700,tcp://b:7700``: an active-standby pair, docs/high-availability.md). The socket
connects to all of them with ``ZMQ_IMMEDIATE``: a request goes only to an instance that has
completed the handshake, and only the leader listens (the standby binds nothing), so the
existing retries fail over by themselves: a retry (same request id) on a fresh socket reaches
whichever instance leads by then, and that one answers a request the old leader committed with
the reply stored with its batch.
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import zmq

from dirac_like.errors import (
    ConfigError,
    DiracLikeError,
    ProtocolError,
    ServiceUnavailable,
    error_from_wire,
)
from dirac_like.identity import Identity, resolve_identity, secure_client_socket, warn_insecure
from dirac_like.protocol import (
    DEFAULT_MAX_MESSAGE_BYTES,
    PILOT_REVISION,
    AddPilotsArgs,
    AddPilotsReply,
    BanSiteArgs,
    BulkArgs,
    BulkIdArgs,
    BulkReply,
    BulkStatusReply,
    CommandsReply,
    DeleteReply,
    DowntimeAddArgs,
    DowntimeIdArgs,
    DowntimeListArgs,
    DowntimeRow,
    EligibleArgs,
    EligibleReply,
    HeartbeatArgs,
    HistoryRow,
    IdentityAddArgs,
    IdentityFile,
    IdentityListArgs,
    IdentityRevokeArgs,
    IdentityRevokeReply,
    IdentityView,
    JobDescriptionReply,
    JobIdArgs,
    JobIdsArgs,
    JobOutputReply,
    JobSummary,
    JobUsage,
    KillPilotReply,
    KillReply,
    ListJobsArgs,
    ListPilotsArgs,
    NoArgs,
    Op,
    PeekReply,
    PilotCommand,
    PilotIdArgs,
    PilotOutputReply,
    PilotResources,
    PilotStoppedArgs,
    PilotStoppedReply,
    PilotSummaryRow,
    PilotTokenArgs,
    PilotTurnArgs,
    PilotTurnReply,
    PilotUpdateItem,
    PilotView,
    PingReply,
    ProbeReportArgs,
    ProbeReportReply,
    ProbeResultItem,
    ProbeResultsArgs,
    Reply,
    ReportOutcome,
    ReportOutcomes,
    Request,
    RequestJobArgs,
    RequestJobReply,
    RequestJobsArgs,
    RequestJobsReply,
    RescheduleReply,
    SandboxDownloadArgs,
    SandboxDownloadReply,
    SandboxUploadArgs,
    SandboxUploadReply,
    SelectArgs,
    SelectionReply,
    ServiceStatusReply,
    SetShareArgs,
    SetShareReply,
    SetStatusArgs,
    ShareRow,
    SiteArgs,
    SiteDrainArgs,
    SiteLimitArgs,
    SiteReply,
    SiteRow,
    SiteShowReply,
    SiteStateReply,
    StatusRow,
    SubmitArgs,
    SubmitReply,
    TaskQueueRow,
    UpdatePilotsArgs,
    UpdatePilotsReply,
    UpdateStatusArgs,
    UpdateStatusesArgs,
    WhyReply,
    decode_push,
    decode_reply,
    encode_request,
    parse_reply,
    to_wire,
)
from dirac_like.sandbox import SandboxError, checksum

log = logging.getLogger(__name__)

SANDBOX_CHUNK_BYTES = 1024 * 1024


@dataclass(frozen=True)
class RetryPolicy:
    timeout: float = 5.0  # seconds to wait for one reply
    retries: int = 4  # tries after the first one
    backoff: float = 0.2  # first pause between tries
    max_backoff: float = 5.0

    def pause(self, attempt: int, rng: random.Random) -> float:
        """Capped exponential backoff with full jitter, for try number ``attempt`` (1-based)."""
        return rng.uniform(0, min(self.max_backoff, self.backoff * 2 ** (attempt - 1)))

    def next_pause(self, tries: int, rng: random.Random) -> float | None:
        """After ``tries`` sends of one request went unanswered: the pause before sending it
        again (same request id), or None when it is given up. The one retry rule of the client
        and of the simulated fabric's pilots."""
        return self.pause(tries, rng) if tries <= self.retries else None


@dataclass(frozen=True)
class Answer:
    """The reply to a request sent with :meth:`Client.post`: its reply dataclass, or the error
    the service replied with (``error.retryable``: it did nothing with the request)."""

    request_id: str
    op: str
    result: Any = None
    error: DiracLikeError | None = None
    retryable: bool = False  # with an error: the service did nothing, post it again later


def _answer(op: str, reply: Reply) -> Answer:
    if not reply.ok:
        assert reply.error is not None
        error = error_from_wire(reply.error.code, reply.error.message)
        return Answer(reply.id, op, error=error, retryable=reply.error.retryable)
    try:
        return Answer(reply.id, op, result=parse_reply(op, reply.result))
    except ProtocolError as exc:
        return Answer(reply.id, op, error=exc)


def server_urls(server: str) -> list[str]:
    """The endpoints of ``server`` (one URL, or several comma-separated); ConfigError if one
    is empty or not a ZeroMQ endpoint."""
    urls = [url.strip() for url in server.split(",")]
    for url in urls:
        if "://" not in url or not url.split("://", 1)[1]:
            raise ConfigError(
                f"server {server!r}: {url!r} is not a ZeroMQ endpoint (like tcp://host:7700; "
                "several are comma-separated)"
            )
    return urls


def connect_servers(socket: zmq.Socket, server: str) -> None:
    """Connect ``socket`` to every endpoint of ``server``; with several, messages go only to
    the ones connected (``ZMQ_IMMEDIATE``): a send waits rather than queue for an instance that
    is down or standing by."""
    urls = server_urls(server)
    if len(urls) > 1:
        socket.setsockopt(zmq.IMMEDIATE, 1)
    for url in urls:
        socket.connect(url)


class Client:
    def __init__(
        self,
        server: str,
        policy: RetryPolicy | None = None,
        context: zmq.Context | None = None,
        on_push: Callable[[list[PilotCommand]], None] | None = None,
        identity: Identity | None = None,
        insecure: bool = False,
    ) -> None:
        server_urls(server)  # a clear error now rather than a zmq error at the first call
        self.server = server
        self.on_push = on_push  # called with the commands the service pushes unasked
        self.identity = None if insecure else identity or resolve_identity()
        if self.identity is None:
            warn_insecure(f"client of {server}")
        self.policy = policy or RetryPolicy()
        self._own_context = context is None
        self.context = context or zmq.Context()
        self._socket: zmq.Socket | None = None
        self._rng = random.Random()
        self._posted: dict[str, str] = {}  # request id -> op, sent by post() and not answered
        self._answers: list[Answer] = []  # their replies, for take_answers()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._drop_socket()
        if self._own_context:
            self.context.term()

    def _connect(self) -> zmq.Socket:
        if self._socket is None:
            socket = self.context.socket(zmq.DEALER)
            socket.setsockopt(zmq.LINGER, 0)
            if self.identity is not None:
                secure_client_socket(socket, self.identity)
            connect_servers(socket, self.server)
            self._socket = socket
        return self._socket

    def _drop_socket(self) -> None:
        if self._socket is not None:
            self._socket.close(linger=0)
            self._socket = None

    # -- the call --------------------------------------------------------------------------------

    def call(self, op: str, args: Any, timeout: float | None = None, request_id: str = "") -> Any:
        """Send one request (``args``: the op's arguments dataclass); return its reply dataclass
        (``protocol.REPLIES``), or raise the error the service replied with. A reply of the
        wrong shape is a :class:`ProtocolError`."""
        return parse_reply(op, self._exchange(op, to_wire(args), timeout, request_id))

    def _exchange(
        self, op: str, args: dict[str, Any], timeout: float | None, request_id: str = ""
    ) -> Any:
        """Send the request, retrying as the policy says; the raw result of an ok reply.
        ``request_id``: the caller's (a report kept in an outbox is sent again with its id)."""
        request_id = request_id or uuid.uuid4().hex
        frame = encode_request(Request(id=request_id, op=op, args=args))
        tries = 0
        pause: float | None = 0.0
        while pause is not None:
            time.sleep(pause)
            tries += 1
            socket = self._connect()
            wait = timeout or self.policy.timeout
            sent = self._send(socket, frame, wait)
            reply = self._await_reply(socket, request_id, wait) if sent else None
            if reply is not None and reply.ok:
                return reply.result
            if reply is not None:
                assert reply.error is not None
                error = error_from_wire(reply.error.code, reply.error.message)
                pause = self.policy.next_pause(tries, self._rng) if reply.error.retryable else None
                if pause is None:
                    raise error
                log.info(
                    "%s not done by %s (try %d: [%s] %s), retrying",
                    op,
                    self.server,
                    tries,
                    error.code,
                    error.message[:200],
                )
                continue  # same socket, same request id: the service did nothing with it
            log.info("no reply to %s from %s (try %d), retrying", op, self.server, tries)
            self._drop_socket()  # Lazy Pirate: a fresh socket drops anything queued on the old
            pause = self.policy.next_pause(tries, self._rng)
        raise ServiceUnavailable(
            f"no reply from the central service at {self.server} "
            f"after {self.policy.retries + 1} tries; {self._why_no_reply()}"
        )

    @staticmethod
    def _send(socket: zmq.Socket, frame: bytes, timeout: float) -> bool:
        """Send ``frame`` once the socket can take it (at once with one server; with several,
        once one of them is connected); False if none is within ``timeout`` seconds."""
        if not socket.poll(int(timeout * 1000) + 1, zmq.POLLOUT):
            return False
        try:
            socket.send(frame, zmq.NOBLOCK)
        except zmq.Again:
            return False
        return True

    def _why_no_reply(self) -> str:
        if self.identity is None:
            return (
                "is it running? This client has no identity (plaintext): a service not "
                "started with --insecure does not answer it; pass --identity FILE or set "
                "DIRAC_LIKE_IDENTITY"
            )
        return (
            f"is it running? If it is, authentication may have failed: the service "
            f"answers no client whose key it does not know (identity {self.identity.name} "
            "unknown, revoked or expired there, or issued by another service)"
        )

    def _await_reply(self, socket: zmq.Socket, request_id: str, timeout: float) -> Any:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            if not socket.poll(int(left * 1000) + 1, zmq.POLLIN):
                continue
            reply = self._read_frame(socket.recv())
            if reply is not None and reply.id == request_id:
                return reply
        return None

    def _read_frame(self, frame: bytes) -> Reply | None:
        """A push goes to ``on_push``, the reply to a posted request to the answers; any other
        reply is returned (None for those two, and for an unreadable frame)."""
        try:
            if self._took_push(frame):
                return None
            reply = decode_reply(frame, 4 * DEFAULT_MAX_MESSAGE_BYTES)
        except ProtocolError as exc:
            log.warning("unreadable reply from %s: %s", self.server, exc)
            return None
        op = self._posted.pop(reply.id, None)
        if op is None:
            return reply
        self._answers.append(_answer(op, reply))
        return None

    # -- pipelined requests (issue 15) ------------------------------------------------------------

    def post(self, op: str, args: Any, request_id: str) -> bool:
        """Send one request without waiting for its reply (False if it could not be sent now);
        its reply is read with the others' (any call, :meth:`poll_pushes`) and handed out by
        :meth:`take_answers`. No retry here: the caller posts it again, under the same
        ``request_id``, when no answer came in time (the service answers a repeat with its first
        reply); a socket dropped by a call's retry loses what was in flight on it."""
        frame = encode_request(Request(id=request_id, op=op, args=to_wire(args)))
        self._posted[request_id] = op
        try:
            socket = self._connect()
            if self._send(socket, frame, 0.0):
                return True
        except zmq.ZMQError as exc:
            log.info("%s not posted to %s: %s", op, self.server, exc)
        del self._posted[request_id]
        return False

    def take_answers(self) -> list[Answer]:
        """The replies to posted requests that arrived since the last call, in arrival order."""
        answers, self._answers = self._answers, []
        return answers

    def forget(self, request_id: str) -> None:
        """No answer is awaited any more for this posted request (its reply, if it comes, is
        dropped like a late reply)."""
        self._posted.pop(request_id, None)

    def poll_pushes(self, timeout: float, wake_fd: int | None = None) -> None:
        """Wait up to ``timeout`` seconds for commands the service pushes unasked and hand them
        to ``on_push``; returns as soon as the frames waiting have been read, or when
        ``wake_fd`` (a pipe the caller's other threads write to) becomes readable. Late replies
        to requests given up on are dropped. (The service pushes only to a socket it has heard
        from, i.e. after at least one pilot request on this client.)"""
        socket = self._connect()
        poller = zmq.Poller()
        poller.register(socket, zmq.POLLIN)
        if wake_fd is not None:
            poller.register(wake_fd, zmq.POLLIN)
        wait_ms = max(0, int(timeout * 1000))
        while True:
            ready = dict(poller.poll(wait_ms))
            if socket not in ready:
                return
            wait_ms = 0  # something arrived: read what is there, then return
            self._read_frame(socket.recv())

    def _took_push(self, frame: bytes) -> bool:
        """Hand a push frame's commands to ``on_push``; False if ``frame`` is not a push."""
        pushed = decode_push(frame)
        if pushed is None:
            return False
        if self.on_push is not None:
            self.on_push(pushed)
        return True

    # -- operations ------------------------------------------------------------------------------

    def ping(self) -> PingReply:
        reply: PingReply = self.call(Op.PING, NoArgs())
        return reply

    def submit(
        self,
        descriptions: list[str | dict[str, Any]],
        owner: str,
        group: str = "",
        timeout: float | None = None,
    ) -> list[int]:
        return self.submit_reply(descriptions, owner, group, timeout).job_ids

    def submit_reply(
        self,
        descriptions: list[str | dict[str, Any]],
        owner: str,
        group: str = "",
        timeout: float | None = None,
    ) -> SubmitReply:
        """The job ids and the service's warnings (jobs no known CE can ever run)."""
        reply: SubmitReply = self.call(Op.SUBMIT, SubmitArgs(descriptions, owner, group), timeout)
        return reply

    def status(self, job_ids: list[int]) -> list[JobSummary]:
        rows: list[JobSummary] = self.call(Op.STATUS, JobIdsArgs(job_ids))
        return rows

    def list_jobs(
        self,
        status: str | None = None,
        site: str | None = None,
        owner: str | None = None,
        group: str | None = None,
        limit: int = 10000,
        name: str | None = None,
        older: float = 0.0,
        newer: float = 0.0,
    ) -> list[JobSummary]:
        rows: list[JobSummary] = self.call(
            Op.LIST_JOBS, ListJobsArgs(status, site, owner, group, limit, name, older, newer)
        )
        return rows

    def kill(self, job_ids: list[int]) -> KillReply:
        reply: KillReply = self.call(Op.KILL, JobIdsArgs(job_ids))
        return reply

    def reschedule(self, job_ids: list[int]) -> RescheduleReply:
        reply: RescheduleReply = self.call(Op.RESCHEDULE, JobIdsArgs(job_ids))
        return reply

    def delete(self, job_ids: list[int]) -> DeleteReply:
        """Mark jobs Deleted (all or none)."""
        reply: DeleteReply = self.call(Op.DELETE, JobIdsArgs(job_ids))
        return reply

    def job_description(self, job_id: int) -> dict[str, Any]:
        """The job's description as the service stored it (parametric values expanded)."""
        reply: JobDescriptionReply = self.call(Op.JOB_DESCRIPTION, JobIdArgs(job_id))
        return reply.description

    def peek(self, job_id: int) -> PeekReply:
        """The last lines of stdout the job's pilot sent."""
        reply: PeekReply = self.call(Op.PEEK, JobIdArgs(job_id))
        return reply

    def history(self, job_id: int) -> list[HistoryRow]:
        rows: list[HistoryRow] = self.call(Op.HISTORY, JobIdArgs(job_id))
        return rows

    def request_job(self, pilot_id: str, resources: PilotResources) -> RequestJobReply:
        args = RequestJobArgs(pilot_id, resources, revision=PILOT_REVISION)
        reply: RequestJobReply = self.call(Op.REQUEST_JOB, args)
        return reply

    def request_jobs(
        self, pilot_id: str, resources: PilotResources, count: int
    ) -> RequestJobsReply:
        """Up to ``count`` jobs in one request (UnknownOperation from a service older than it:
        use :meth:`request_job`)."""
        args = RequestJobsArgs(pilot_id, resources, count, revision=PILOT_REVISION)
        reply: RequestJobsReply = self.call(Op.REQUEST_JOBS, args)
        return reply

    def update_statuses(
        self, pilot_id: str, reports: list[UpdateStatusArgs], request_id: str = ""
    ) -> list[ReportOutcome]:
        """Several reports in one request; one outcome per report, in order (UnknownOperation
        from a service older than it: use :meth:`update_status`)."""
        reply: ReportOutcomes = self.call(
            Op.UPDATE_STATUSES, UpdateStatusesArgs(pilot_id, reports), request_id=request_id
        )
        return reply.outcomes

    def pilot_turn(self, args: PilotTurnArgs, request_id: str) -> PilotTurnReply:
        """A pilot's reports and its request for jobs in one request (the jobs come back
        Running: start them at once); sent again under ``request_id`` until answered
        (UnknownOperation from a service older than it: use :meth:`update_statuses` and
        :meth:`request_jobs`)."""
        reply: PilotTurnReply = self.call(Op.PILOT_TURN, args, request_id=request_id)
        return reply

    def eligible(self, resources: PilotResources) -> int:
        """How many waiting jobs a pilot with ``resources`` could run now."""
        reply: EligibleReply = self.call(Op.ELIGIBLE, EligibleArgs(resources))
        return reply.eligible

    def update_status(
        self,
        job_id: int,
        attempt: int,
        pilot_id: str,
        status: str,  # a JobStatus (a str enum) or its value
        minor_status: str = "",
        application_status: str = "",
        output_sandbox: str = "",
        usage: JobUsage | None = None,  # with a final status: what the payload used
        request_id: str = "",
        output_data: bytes = b"",  # the output sandbox inlined (its sha256: output_sandbox)
    ) -> list[PilotCommand]:
        """``request_id``: to send a report again with the id it was first sent with."""
        args = UpdateStatusArgs(
            job_id,
            attempt,
            pilot_id,
            str(status),
            minor_status,
            application_status,
            output_sandbox,
            usage,
            output_data,
        )
        reply: CommandsReply = self.call(Op.UPDATE_STATUS, args, request_id=request_id)
        return reply.commands

    def heartbeat(
        self,
        job_id: int,
        attempt: int,
        pilot_id: str,
        metrics: dict[str, Any] | None = None,
        stdout_tail: str = "",
    ) -> list[PilotCommand]:
        args = HeartbeatArgs(job_id, attempt, pilot_id, metrics or {}, stdout_tail)
        reply: CommandsReply = self.call(Op.HEARTBEAT, args)
        return reply.commands

    def sites(self) -> list[SiteRow]:
        rows: list[SiteRow] = self.call(Op.SITES, NoArgs())
        return rows

    def ban_site(self, site: str, reason: str) -> SiteReply:
        reply: SiteReply = self.call(Op.BAN_SITE, BanSiteArgs(site, reason))
        return reply

    def unban_site(self, site: str) -> SiteReply:
        reply: SiteReply = self.call(Op.UNBAN_SITE, SiteArgs(site))
        return reply

    # -- monitoring ------------------------------------------------------------------------------

    def probe_report(self, results: list[ProbeResultItem]) -> int:
        reply: ProbeReportReply = self.call(Op.PROBE_REPORT, ProbeReportArgs(results))
        return reply.stored

    def probe_results(
        self, since: float, target: str = "", limit: int = 100_000
    ) -> list[ProbeResultItem]:
        rows: list[ProbeResultItem] = self.call(
            Op.PROBE_RESULTS, ProbeResultsArgs(since, target, limit)
        )
        return rows

    def resource_status(self) -> list[StatusRow]:
        rows: list[StatusRow] = self.call(Op.RESOURCE_STATUS, NoArgs())
        return rows

    def set_status(self, target: str, kind: str, status: str, reason: str) -> StatusRow:
        row: StatusRow = self.call(Op.SET_STATUS, SetStatusArgs(target, kind, status, reason))
        return row

    def downtime_add(
        self, target: str, kind: str, start: float, end: float, reason: str, scheduled: bool = True
    ) -> DowntimeRow:
        args = DowntimeAddArgs(target, kind, start, end, reason, scheduled)
        row: DowntimeRow = self.call(Op.DOWNTIME_ADD, args)
        return row

    def downtime_list(self, include_ended: bool = False) -> list[DowntimeRow]:
        rows: list[DowntimeRow] = self.call(Op.DOWNTIME_LIST, DowntimeListArgs(include_ended))
        return rows

    def downtime_cancel(self, downtime_id: int) -> DowntimeRow:
        row: DowntimeRow = self.call(Op.DOWNTIME_CANCEL, DowntimeIdArgs(downtime_id))
        return row

    def task_queues(self) -> list[TaskQueueRow]:
        rows: list[TaskQueueRow] = self.call(Op.TASK_QUEUES, NoArgs())
        return rows

    def shares(self) -> list[ShareRow]:
        rows: list[ShareRow] = self.call(Op.SHARES, NoArgs())
        return rows

    def set_share(self, group: str, share: float) -> SetShareReply:
        reply: SetShareReply = self.call(Op.SET_SHARE, SetShareArgs(group, share))
        return reply

    # -- pilot records ---------------------------------------------------------------------------

    def add_pilots(self, site: str, ce: str, count: int, fabric: str = "") -> list[str]:
        """New pilot records (Submitted); returns the ids the service gave them."""
        reply: AddPilotsReply = self.call(Op.ADD_PILOTS, AddPilotsArgs(site, ce, count, fabric))
        return reply.pilot_ids

    def update_pilots(self, updates: list[PilotUpdateItem]) -> int:
        """Report pilot states. All or nothing."""
        reply: UpdatePilotsReply = self.call(Op.UPDATE_PILOTS, UpdatePilotsArgs(updates))
        return reply.updated

    def pilots(
        self, site: str | None = None, states: list[str] | None = None, limit: int = 10000
    ) -> list[PilotView]:
        rows: list[PilotView] = self.call(Op.PILOTS, ListPilotsArgs(site, states or [], limit))
        return rows

    def pilot_output(self, pilot_id: str) -> PilotOutputReply:
        reply: PilotOutputReply = self.call(Op.PILOT_OUTPUT, PilotIdArgs(pilot_id))
        return reply

    def pilot_stopped(self, pilot_id: str, exit_code: int) -> bool:
        """Tell the service this pilot stopped; whether its record was closed by it."""
        reply: PilotStoppedReply = self.call(
            Op.PILOT_STOPPED, PilotStoppedArgs(pilot_id, exit_code)
        )
        return reply.closed

    def kill_pilot(self, pilot_id: str) -> KillPilotReply:
        reply: KillPilotReply = self.call(Op.KILL_PILOT, PilotIdArgs(pilot_id))
        return reply

    # -- sandboxes -------------------------------------------------------------------------------

    def upload_sandbox(
        self, data: bytes, kind: str = "input", chunk_bytes: int = SANDBOX_CHUNK_BYTES
    ) -> str:
        """Upload an archive in chunks; returns its sha256 (name it as ``SB:<sha256>``)."""
        sha256 = checksum(data)
        offset = 0
        while True:
            args = SandboxUploadArgs(
                sha256, len(data), offset, data[offset : offset + chunk_bytes], kind
            )
            reply: SandboxUploadReply = self.call(Op.SANDBOX_UPLOAD, args)
            if reply.complete:
                return sha256
            offset = reply.received

    def download_sandbox(
        self, sha256: str, max_bytes: int, chunk_bytes: int = SANDBOX_CHUNK_BYTES
    ) -> bytes:
        """The archive ``sha256``, checked; SandboxError if it is over ``max_bytes`` or its
        bytes do not match its name."""
        parts: list[bytes] = []
        offset, size = 0, None
        while size is None or offset < size:
            args = SandboxDownloadArgs(sha256, offset, chunk_bytes)
            reply: SandboxDownloadReply = self.call(Op.SANDBOX_DOWNLOAD, args)
            size = reply.size
            if size > max_bytes:
                raise SandboxError(
                    f"sandbox {sha256} of {size} bytes is over the limit of {max_bytes} bytes"
                )
            if not reply.data:
                break
            parts.append(reply.data)
            offset += len(reply.data)
        data = b"".join(parts)
        if checksum(data) != sha256:
            raise SandboxError(f"sandbox {sha256}: the downloaded bytes do not match its sha256")
        return data

    def job_output(self, job_id: int) -> JobOutputReply:
        """Where the job's output sandbox is (its sha256)."""
        reply: JobOutputReply = self.call(Op.JOB_OUTPUT, JobIdArgs(job_id))
        return reply

    # -- identities ------------------------------------------------------------------------------

    def identity_add(
        self, name: str, role: str, groups: list[str] | None = None, site: str = ""
    ) -> Identity:
        """Issue a new identity (admins); the returned one carries its secret key: save it
        with :func:`dirac_like.identity.save_identity` and hand it over safely."""
        args = IdentityAddArgs(name, role, groups or [], site)
        return self._identity(self.call(Op.IDENTITY_ADD, args))

    def identity_list(self, pilot_tokens: bool = False) -> list[IdentityView]:
        rows: list[IdentityView] = self.call(Op.IDENTITY_LIST, IdentityListArgs(pilot_tokens))
        return rows

    def identity_revoke(self, name: str) -> IdentityRevokeReply:
        reply: IdentityRevokeReply = self.call(Op.IDENTITY_REVOKE, IdentityRevokeArgs(name))
        return reply

    def pilot_token(self, site: str, pilot_id: str = "") -> Identity:
        """A short-lived identity for a pilot of ``site`` (``pilot_id``: that pilot record
        only; '': any pilot of the site)."""
        return self._identity(self.call(Op.PILOT_TOKEN, PilotTokenArgs(site, pilot_id)))

    # -- the operators' console (issue 14) ------------------------------------------------------

    def why(self, job_ids: list[int]) -> list[WhyReply]:
        """Why each job waits, from the matcher's own rules."""
        rows: list[WhyReply] = self.call(Op.WHY, JobIdsArgs(job_ids))
        return rows

    def select_jobs(self, selection: str, sample: int = 10) -> SelectionReply:
        """How many jobs ``selection`` matches (only one's own for a user), and a sample."""
        reply: SelectionReply = self.call(Op.SELECT_JOBS, SelectArgs(selection, sample))
        return reply

    def bulk(
        self,
        action: str,
        selection: str,
        expected: int,
        yes: bool = False,
        over_admin_cap: bool = False,
    ) -> BulkReply:
        """Start ``action`` on the ``expected`` jobs of ``selection`` (done in batches)."""
        reply: BulkReply = self.call(
            Op.BULK, BulkArgs(action, selection, expected, yes, over_admin_cap)
        )
        return reply

    def bulk_status(self, bulk_id: int) -> BulkStatusReply:
        reply: BulkStatusReply = self.call(Op.BULK_STATUS, BulkIdArgs(bulk_id))
        return reply

    def site_show(self, site: str) -> SiteShowReply:
        reply: SiteShowReply = self.call(Op.SITE_SHOW, SiteArgs(site))
        return reply

    def site_drain(self, site: str, drain: bool = True) -> SiteStateReply:
        reply: SiteStateReply = self.call(Op.SITE_DRAIN, SiteDrainArgs(site, drain))
        return reply

    def site_limit(self, site: str, limit: int) -> SiteStateReply:
        reply: SiteStateReply = self.call(Op.SITE_LIMIT, SiteLimitArgs(site, limit))
        return reply

    def service_status(self) -> ServiceStatusReply:
        """Which instance of the central service leads, since when, and who stands by."""
        reply: ServiceStatusReply = self.call(Op.SERVICE_STATUS, NoArgs())
        return reply

    def pilot_summary(self) -> list[PilotSummaryRow]:
        rows: list[PilotSummaryRow] = self.call(Op.PILOT_SUMMARY, NoArgs())
        return rows

    def _identity(self, issued_file: IdentityFile) -> Identity:
        try:
            issued = Identity.from_wire(to_wire(issued_file), "identity from the service")
        except ConfigError as exc:
            raise ProtocolError(str(exc)) from None
        return replace(issued, server=issued.server or self.server)
