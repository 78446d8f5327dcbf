"""Handlers of the sandbox operations: archives uploaded and downloaded in chunks.

The archives live in a :class:`dirac_like.sandbox.SandboxStore` in the service's home, named by
their sha256. An upload is complete (checked and stored durably) when its last chunk is
acknowledged; a job may name it from then on (``InputSandbox = {"SB:<sha256>"}``, or a pilot's
final ``update_status`` with ``output_sandbox``). Archives no job names are deleted after
``sandboxes.collect_after`` seconds.

A small output sandbox (at most ``sandboxes.max_inline_output_bytes``, which the service tells
pilots with their matches) may instead come inlined in the job's final report (issue 15: one
round trip less): :func:`keep_inline_output` checks it as an upload is checked (size limits, its
bytes against the sha256 the report names) and stores it the same way (the same store, fsync'd,
held by the uploading pilot's credential), before the report is applied and committed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dirac_like.errors import InvalidArgument, NotFound, StoreError
from dirac_like.protocol import (
    JobIdArgs,
    JobOutputReply,
    Op,
    SandboxDownloadArgs,
    SandboxDownloadReply,
    SandboxUploadArgs,
    SandboxUploadReply,
)
from dirac_like.sandbox import SandboxError, SandboxStore, checksum, is_sha256
from dirac_like.states import FINAL_STATUSES

from .state import CentralState

KINDS = ("input", "output")


def _store(state: CentralState) -> SandboxStore:
    if state.sandboxes is None:
        raise InvalidArgument("this service keeps no sandboxes")
    return state.sandboxes


def sandbox_upload(state: CentralState, args: SandboxUploadArgs, now: float) -> SandboxUploadReply:
    config = state.config.sandboxes
    if args.kind not in KINDS:
        raise InvalidArgument(f"kind must be one of {', '.join(KINDS)}, not {args.kind[:20]!r}")
    limit = config.max_input_bytes if args.kind == "input" else config.max_output_bytes
    if not 0 < args.size <= limit:
        raise SandboxError(
            f"{args.kind} sandbox of {args.size} bytes: the size must be 1 to {limit} bytes"
        )
    if len(args.data) > config.max_chunk_bytes:
        raise InvalidArgument(
            f"chunk of {len(args.data)} bytes is over the limit of {config.max_chunk_bytes} bytes"
        )
    received = _store(state).write_chunk(
        args.sha256, args.size, args.offset, args.data, limit, uploader=args.owner
    )
    return SandboxUploadReply(received=received, complete=received == args.size)


def inline_output_bound(state: CentralState) -> int:
    """The biggest output sandbox (packed bytes) this service takes inlined in a final report
    (0: none; a service that keeps no sandboxes takes none)."""
    if state.sandboxes is None:
        return 0
    config = state.config.sandboxes
    return min(config.max_inline_output_bytes, config.max_output_bytes)


def keep_inline_output(state: CentralState, sha256: str, data: bytes, uploader: str | None) -> None:
    """Store an output sandbox inlined in a final report as an upload of it would be: the same
    limits, its bytes checked against ``sha256``, the same store (durable when this returns),
    held by ``uploader`` (None: a service running insecure). SandboxError when refused (nothing
    stored); a retryable StoreError when the files cannot be written now."""
    store = _store(state)
    limit = inline_output_bound(state)
    if not 0 < len(data) <= limit:
        raise SandboxError(
            f"inlined output sandbox of {len(data)} bytes: the size must be 1 to {limit} bytes "
            "(upload a bigger one)"
        )
    if not is_sha256(sha256) or checksum(data) != sha256:
        raise SandboxError(
            f"inlined output sandbox: its bytes have sha256 {checksum(data)}, "
            f"not the {sha256[:64]!r} the report names"
        )
    try:  # as the one chunk of an upload (sandbox_upload): checked again, kept, granted
        store.write_chunk(sha256, len(data), 0, data, limit, uploader=uploader or "")
    except OSError as exc:  # nothing applied yet: the pilot sends the report again
        raise StoreError(
            f"the service could not write the inlined output sandbox: {exc.strerror or exc}; "
            "please retry later"
        ) from None


def sandbox_download(
    state: CentralState, args: SandboxDownloadArgs, now: float
) -> SandboxDownloadReply:
    config = state.config
    length = min(
        args.length, config.sandboxes.max_chunk_bytes, config.service.max_message_bytes // 2
    )
    data, size = _store(state).read_chunk(args.sha256, args.offset, length)
    return SandboxDownloadReply(data=data, size=size)


def job_output(state: CentralState, args: JobIdArgs, now: float) -> JobOutputReply:
    job = state.book.job(args.job_id)
    sha256 = state.sandbox_index.of(job.job_id, "output")
    if sha256 is None:
        raise NotFound(
            f"job {job.job_id} has no output sandbox (status {job.status.value}: "
            + (
                "it printed nothing, or its pilot could not upload it: see its application status)"
                if job.status in FINAL_STATUSES
                else "a pilot uploads it when the job ends)"
            )
        )
    return JobOutputReply(job_id=job.job_id, sha256=sha256, status=job.status.value)


SANDBOX_HANDLERS: dict[str, Callable[[CentralState, Any, float], Any]] = {
    Op.SANDBOX_UPLOAD: sandbox_upload,
    Op.SANDBOX_DOWNLOAD: sandbox_download,
    Op.JOB_OUTPUT: job_output,
}
