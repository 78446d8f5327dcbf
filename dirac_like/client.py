"""The Python API to the central service: a DEALER socket with Lazy Pirate retries.

Each call gets a fresh request id; a retry after a timeout re-sends the SAME id on a fresh socket,
and the service answers a retried id with the reply it gave the first time, so a retried submit
never creates a second job. Backoff between tries is capped and jittered.

Every socket is a CurveZMQ client presenting the client's identity (given, else the one
:func:`dirac_like.identity.resolve_identity` finds: ``$DIRAC_LIKE_IDENTITY``, then the home's
default). Without one (``insecure=True``, or none found) it speaks plaintext, which only a
service started with ``--insecure`` answers: a secure service refuses the handshake, and the
client hears nothing until its retries run out.
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

import zmq

from dirac_like.errors import ProtocolError, ServiceUnavailable, error_from_wire
from dirac_like.identity import Identity, resolve_identity, secure_client_socket, warn_insecure
from dirac_like.protocol import (
    DEFAULT_MAX_MESSAGE_BYTES,
    Op,
    PilotResources,
    Request,
    decode_push,
    decode_reply,
    encode_request,
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


class Client:
    def __init__(
        self,
        server: str,
        policy: RetryPolicy | None = None,
        context: zmq.Context | None = None,
        on_push: Callable[[list[dict[str, Any]]], None] | None = None,
        identity: Identity | None = None,
        insecure: bool = False,
    ) -> None:
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
            socket.connect(self.server)
            self._socket = socket
        return self._socket

    def _drop_socket(self) -> None:
        if self._socket is not None:
            self._socket.close(linger=0)
            self._socket = None

    # -- the call --------------------------------------------------------------------------------

    def call(self, op: str, args: dict[str, Any], timeout: float | None = None) -> Any:
        """Send one request; return its result or raise the error the service replied with."""
        request_id = uuid.uuid4().hex
        frame = encode_request(Request(id=request_id, op=op, args=args))
        for attempt in range(1, self.policy.retries + 2):
            socket = self._connect()
            socket.send(frame)
            reply = self._await_reply(socket, request_id, timeout or self.policy.timeout)
            if reply is not None:
                if reply.ok:
                    return reply.result
                assert reply.error is not None
                raise error_from_wire(reply.error.code, reply.error.message)
            log.info("no reply to %s from %s (try %d), retrying", op, self.server, attempt)
            self._drop_socket()  # Lazy Pirate: a fresh socket drops anything queued on the old
            if attempt <= self.policy.retries:
                time.sleep(self.policy.pause(attempt, self._rng))
        raise ServiceUnavailable(
            f"no reply from the central service at {self.server} "
            f"after {self.policy.retries + 1} tries; {self._why_no_reply()}"
        )

    def _why_no_reply(self) -> str:
        if self.identity is None:
            return ("is it running? This client has no identity (plaintext): a service not "
                    "started with --insecure does not answer it; pass --identity FILE or set "
                    "DIRAC_LIKE_IDENTITY")
        return (f"is it running? If it is, authentication may have failed: the service "
                f"answers no client whose key it does not know (identity {self.identity.name} "
                "unknown, revoked or expired there, or issued by another service)")

    def _await_reply(self, socket: zmq.Socket, request_id: str, timeout: float) -> Any:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            if not socket.poll(int(left * 1000) + 1, zmq.POLLIN):
                continue
            frame = socket.recv()
            pushed = decode_push(frame)
            if pushed is not None:
                if self.on_push is not None:
                    self.on_push(pushed)
                continue
            try:
                reply = decode_reply(frame, 4 * DEFAULT_MAX_MESSAGE_BYTES)
            except ProtocolError as exc:
                log.warning("unreadable reply from %s: %s", self.server, exc)
                continue
            if reply.id == request_id:
                return reply
        return None

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
            pushed = decode_push(socket.recv())
            if pushed is not None and self.on_push is not None:
                self.on_push(pushed)

    # -- operations ------------------------------------------------------------------------------

    def ping(self) -> dict[str, Any]:
        result: dict[str, Any] = self.call(Op.PING, {})
        return result

    def submit(
        self,
        descriptions: list[str | dict[str, Any]],
        owner: str,
        group: str = "",
        timeout: float | None = None,
    ) -> list[int]:
        args = {"descriptions": descriptions, "owner": owner, "group": group}
        job_ids: list[int] = self.call(Op.SUBMIT, args, timeout)["job_ids"]
        return job_ids

    def status(self, job_ids: list[int]) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = self.call(Op.STATUS, {"job_ids": job_ids})
        return rows

    def list_jobs(self, **filters: Any) -> list[dict[str, Any]]:
        args = {key: value for key, value in filters.items() if value is not None}
        rows: list[dict[str, Any]] = self.call(Op.LIST_JOBS, args)
        return rows

    def kill(self, job_ids: list[int]) -> dict[str, list[int]]:
        result: dict[str, list[int]] = self.call(Op.KILL, {"job_ids": job_ids})
        return result

    def reschedule(self, job_ids: list[int]) -> dict[str, list[int]]:
        result: dict[str, list[int]] = self.call(Op.RESCHEDULE, {"job_ids": job_ids})
        return result

    def delete(self, job_ids: list[int]) -> dict[str, list[int]]:
        """Mark jobs Deleted: {"deleted": [ids]} (all or none)."""
        result: dict[str, list[int]] = self.call(Op.DELETE, {"job_ids": job_ids})
        return result

    def job_description(self, job_id: int) -> dict[str, Any]:
        """The job's description as the service stored it (parametric values expanded)."""
        description: dict[str, Any] = self.call(Op.JOB_DESCRIPTION,
                                                {"job_id": job_id})["description"]
        return description

    def peek(self, job_id: int) -> dict[str, Any]:
        """The last lines of stdout the job's pilot sent: {"job_id", "status", "tail"}."""
        result: dict[str, Any] = self.call(Op.PEEK, {"job_id": job_id})
        return result

    def history(self, job_id: int) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = self.call(Op.HISTORY, {"job_id": job_id})
        return rows

    def request_job(self, pilot_id: str, resources: PilotResources) -> dict[str, Any]:
        args = {"pilot_id": pilot_id, "resources": asdict(resources)}
        result: dict[str, Any] = self.call(Op.REQUEST_JOB, args)
        return result

    def eligible(self, resources: PilotResources) -> int:
        """How many waiting jobs a pilot with ``resources`` could run now."""
        result: dict[str, Any] = self.call(Op.ELIGIBLE, {"resources": asdict(resources)})
        count: int = result["eligible"]
        return count

    def update_status(
        self,
        job_id: int,
        attempt: int,
        pilot_id: str,
        status: str,
        minor_status: str = "",
        application_status: str = "",
        output_sandbox: str = "",
    ) -> list[dict[str, Any]]:
        args = {
            "job_id": job_id,
            "attempt": attempt,
            "pilot_id": pilot_id,
            "status": status,
            "minor_status": minor_status,
            "application_status": application_status,
        }
        if output_sandbox:
            args["output_sandbox"] = output_sandbox
        commands: list[dict[str, Any]] = self.call(Op.UPDATE_STATUS, args)["commands"]
        return commands

    def heartbeat(
        self, job_id: int, attempt: int, pilot_id: str, metrics: dict[str, Any] | None = None,
        stdout_tail: str = "",
    ) -> list[dict[str, Any]]:
        args = {"job_id": job_id, "attempt": attempt, "pilot_id": pilot_id,
                "metrics": metrics or {}, "stdout_tail": stdout_tail}
        commands: list[dict[str, Any]] = self.call(Op.HEARTBEAT, args)["commands"]
        return commands

    def sites(self) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = self.call(Op.SITES, {})
        return rows

    def ban_site(self, site: str, reason: str) -> dict[str, Any]:
        result: dict[str, Any] = self.call(Op.BAN_SITE, {"site": site, "reason": reason})
        return result

    def unban_site(self, site: str) -> dict[str, Any]:
        result: dict[str, Any] = self.call(Op.UNBAN_SITE, {"site": site})
        return result

    def task_queues(self) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = self.call(Op.TASK_QUEUES, {})
        return rows

    def shares(self) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = self.call(Op.SHARES, {})
        return rows

    def set_share(self, group: str, share: float) -> dict[str, Any]:
        result: dict[str, Any] = self.call(Op.SET_SHARE, {"group": group, "share": share})
        return result

    # -- pilot records ---------------------------------------------------------------------------

    def add_pilots(self, site: str, ce: str, count: int, fabric: str = "") -> list[str]:
        """New pilot records (Submitted); returns the ids the service gave them."""
        args = {"site": site, "ce": ce, "count": count, "fabric": fabric}
        pilot_ids: list[str] = self.call(Op.ADD_PILOTS, args)["pilot_ids"]
        return pilot_ids

    def update_pilots(self, updates: list[dict[str, Any]]) -> int:
        """Report pilot states: each update has pilot_id, state and optionally fabric_ref,
        reason, output. All or nothing."""
        updated: int = self.call(Op.UPDATE_PILOTS, {"updates": updates})["updated"]
        return updated

    def pilots(self, site: str | None = None, states: list[str] | None = None,
               limit: int = 10000) -> list[dict[str, Any]]:
        args: dict[str, Any] = {"states": states or [], "limit": limit}
        if site is not None:
            args["site"] = site
        rows: list[dict[str, Any]] = self.call(Op.PILOTS, args)
        return rows

    def pilot_output(self, pilot_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self.call(Op.PILOT_OUTPUT, {"pilot_id": pilot_id})
        return result

    def pilot_stopped(self, pilot_id: str, exit_code: int) -> bool:
        """Tell the service this pilot stopped; whether its record was closed by it."""
        result: dict[str, Any] = self.call(Op.PILOT_STOPPED,
                                           {"pilot_id": pilot_id, "exit_code": exit_code})
        return bool(result["closed"])

    def kill_pilot(self, pilot_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self.call(Op.KILL_PILOT, {"pilot_id": pilot_id})
        return result

    # -- sandboxes -------------------------------------------------------------------------------

    def upload_sandbox(self, data: bytes, kind: str = "input",
                       chunk_bytes: int = SANDBOX_CHUNK_BYTES) -> str:
        """Upload an archive in chunks; returns its sha256 (name it as ``SB:<sha256>``)."""
        sha256 = checksum(data)
        offset = 0
        while True:
            args = {"sha256": sha256, "size": len(data), "offset": offset, "kind": kind,
                    "data": data[offset:offset + chunk_bytes]}
            result = self.call(Op.SANDBOX_UPLOAD, args)
            if result["complete"]:
                return sha256
            offset = int(result["received"])

    def download_sandbox(self, sha256: str, max_bytes: int,
                         chunk_bytes: int = SANDBOX_CHUNK_BYTES) -> bytes:
        """The archive ``sha256``, checked; SandboxError if it is over ``max_bytes`` or its
        bytes do not match its name."""
        parts: list[bytes] = []
        offset, size = 0, None
        while size is None or offset < size:
            args = {"sha256": sha256, "offset": offset, "length": chunk_bytes}
            result = self.call(Op.SANDBOX_DOWNLOAD, args)
            size = int(result["size"])
            if size > max_bytes:
                raise SandboxError(f"sandbox {sha256} of {size} bytes is over the limit of "
                                   f"{max_bytes} bytes")
            if not result["data"]:
                break
            parts.append(result["data"])
            offset += len(result["data"])
        data = b"".join(parts)
        if checksum(data) != sha256:
            raise SandboxError(f"sandbox {sha256}: the downloaded bytes do not match its sha256")
        return data

    def job_output(self, job_id: int) -> dict[str, Any]:
        """Where the job's output sandbox is: {"job_id", "sha256", "status"}."""
        result: dict[str, Any] = self.call(Op.JOB_OUTPUT, {"job_id": job_id})
        return result

    # -- identities ------------------------------------------------------------------------------

    def identity_add(self, name: str, role: str, groups: list[str] | None = None,
                     site: str = "") -> Identity:
        """Issue a new identity (admins); the returned one carries its secret key: save it
        with :func:`dirac_like.identity.save_identity` and hand it over safely."""
        args = {"name": name, "role": role, "groups": groups or [], "site": site}
        return self._identity(self.call(Op.IDENTITY_ADD, args))

    def identity_list(self, pilot_tokens: bool = False) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = self.call(Op.IDENTITY_LIST, {"pilot_tokens": pilot_tokens})
        return rows

    def identity_revoke(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self.call(Op.IDENTITY_REVOKE, {"name": name})
        return result

    def pilot_token(self, site: str, pilot_id: str = "") -> Identity:
        """A short-lived identity for a pilot of ``site`` (``pilot_id``: that pilot record
        only; '': any pilot of the site)."""
        return self._identity(self.call(Op.PILOT_TOKEN, {"site": site, "pilot_id": pilot_id}))

    def _identity(self, result: Any) -> Identity:
        issued = Identity.from_wire(result, "identity from the service")
        return replace(issued, server=issued.server or self.server)
