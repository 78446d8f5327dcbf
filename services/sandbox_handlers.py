"""Handlers of the sandbox operations: archives uploaded and downloaded in chunks.

The archives live in a :class:`dirac_like.sandbox.SandboxStore` in the service's home, named by
their sha256. An upload is complete (checked and stored durably) when its last chunk is
acknowledged; a job may name it from then on (``InputSandbox = {"SB:<sha256>"}``, or a pilot's
final ``update_status`` with ``output_sandbox``). Archives no job names are deleted after
``sandboxes.collect_after`` seconds.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dirac_like.errors import InvalidArgument, NotFound
from dirac_like.protocol import (
    JobIdArgs,
    JobOutputReply,
    Op,
    SandboxDownloadArgs,
    SandboxDownloadReply,
    SandboxUploadArgs,
    SandboxUploadReply,
)
from dirac_like.sandbox import SandboxError, SandboxStore
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
