"""A job's sandboxes on the worker node: fetch and unpack the input, pack and upload the output.

- Input: the job's ``InputSandbox`` names the uploaded archive as ``SB:<sha256>`` (``dirac-like
  job submit`` uploads the files and adds it). The archive is downloaded in chunks, checked
  against its sha256 and unpacked with :func:`dirac_like.sandbox.safe_extract` (no path escapes,
  no links, no devices, bounded size). The other entries are the names of the files it holds,
  relative to the job's working folder; one that is not there after unpacking fails the job.
  ``LFN:`` entries (grid files) are fetched with the job's InputData (agents/job_data.py).
- Output: the files ``OutputSandbox`` names, plus StdOutput and StdError, packed from the job's
  working folder and uploaded; a listed file that is missing is reported, not fatal. Nothing to
  pack, nothing uploaded. A small archive (at most the smaller of the service's bound, sent with
  the match, and ``SandboxLimits.max_inline_bytes``) is not uploaded: it goes inlined in the
  job's final report (issue 15: one round trip less), which the service stores as an upload.
"""

from __future__ import annotations

import logging
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from dirac_like.client import Client
from dirac_like.description import JobDescription
from dirac_like.sandbox import SANDBOX_PREFIX, SandboxError, checksum, pack, safe_extract
from dirac_like.submission import sandbox_name

log = logging.getLogger(__name__)

GRID_PREFIX = "LFN:"


@dataclass(frozen=True)
class SandboxLimits:
    max_download_bytes: int = 64 * 1024 * 1024  # compressed input archive
    max_unpacked_bytes: int = 1024 * 1024 * 1024  # input archive, unpacked
    max_upload_bytes: int = 64 * 1024 * 1024  # compressed output archive
    # An output archive this small or smaller goes inlined in the final report when the service
    # takes it (its own bound comes with the match); 0: always uploaded.
    max_inline_bytes: int = 64 * 1024


@dataclass(frozen=True)
class OutputSandbox:
    sha256: str  # '' when there was nothing to upload
    missing: tuple[str, ...]  # listed files the job did not make
    error: str = ""  # why nothing was uploaded, if something should have been
    size: int = 0  # bytes uploaded (or inlined)
    inline: bytes = b""  # the archive itself, to go in the final report instead of uploaded

    def problems(self) -> str:
        """What to tell the job's owner about the output sandbox ('' if all went well)."""
        parts = [self.error] if self.error else []
        if self.missing:
            parts.append("missing output: " + ", ".join(self.missing))
        return "; ".join(parts)


def fetch_input(
    client: Client, description: JobDescription, workdir: Path, limits: SandboxLimits
) -> int:
    """Download and unpack the job's input sandbox into ``workdir``; returns the bytes
    downloaded. SandboxError (or a DiracLikeError from the service) when that cannot be done."""
    entries = description.input_sandbox
    archives = [
        entry[len(SANDBOX_PREFIX) :] for entry in entries if entry.startswith(SANDBOX_PREFIX)
    ]
    downloaded = 0
    for sha256 in archives:
        data = client.download_sandbox(sha256, limits.max_download_bytes)
        downloaded += len(data)
        safe_extract(data, workdir, limits.max_unpacked_bytes)
    for entry in entries:
        if entry.startswith(GRID_PREFIX):
            continue  # a grid file: agents/job_data.py fetches it
        if not entry.startswith(SANDBOX_PREFIX) and not (workdir / sandbox_name(entry)).exists():
            # a local file is in the sandbox under its base name (../x.sh as x.sh)
            raise SandboxError(f"input sandbox file {entry!r} is not in the uploaded sandbox")
    return downloaded


def inlines(size: int, service_bound: int, limits: SandboxLimits) -> bool:
    """Whether an output archive of ``size`` bytes goes inlined in the final report rather than
    uploaded: the service takes inline outputs up to ``service_bound`` (0: none, or a service
    older than that), this pilot up to ``limits.max_inline_bytes``."""
    return 0 < size <= min(service_bound, limits.max_inline_bytes)


def upload_output(
    client: Client,
    description: JobDescription,
    workdir: Path,
    limits: SandboxLimits,
    inline_bound: int = 0,
) -> OutputSandbox:
    """Pack and upload what the job left that its OutputSandbox (and StdOutput, StdError)
    names. SandboxError when it is over the limit or cannot be packed. Nothing is uploaded when
    every file there is empty (a job that printed nothing): the job has no output sandbox. An
    archive small enough (:func:`inlines`; ``inline_bound``: the service's, from the match) is
    not uploaded but returned in ``inline``, with its sha256, for the final report."""
    present, missing = _outputs(description, workdir)
    if not any(present.values()):
        return OutputSandbox("", missing)
    data = pack([Path(name) for name in present], workdir)
    if len(data) > limits.max_upload_bytes:
        raise SandboxError(
            f"output sandbox of {len(data)} bytes is over the limit of "
            f"{limits.max_upload_bytes} bytes"
        )
    if inlines(len(data), inline_bound, limits):
        return OutputSandbox(checksum(data), missing, size=len(data), inline=data)
    return OutputSandbox(client.upload_sandbox(data, kind="output"), missing, size=len(data))


def upload_packed(client: Client, data: bytes) -> OutputSandbox:
    """Upload an output archive packed before (one a service would not take inlined)."""
    return OutputSandbox(client.upload_sandbox(data, kind="output"), (), size=len(data))


def settled_here(
    description: JobDescription,
    workdir: Path,
    limits: SandboxLimits = SandboxLimits(),
    inline_bound: int = 0,
) -> OutputSandbox | None:
    """What :func:`upload_output` would return, found without a client when it can be: no
    output sandbox for a job that left nothing (no file, or only empty ones), or one packed to
    go inlined when it surely fits (regular files of at most the bound's bytes in all, packed
    within it: about a millisecond, the pilot's loop does it); None when an upload may be
    needed (a worker runs :func:`upload_output` then)."""
    present, missing = _outputs(description, workdir)
    if not any(present.values()):
        return OutputSandbox("", missing)
    total = sum(present.values())
    if min(present.values()) < 0 or total > min(inline_bound, limits.max_inline_bytes):
        return None  # a folder (its size is what it holds), or more than may go inlined
    try:
        data = pack([Path(name) for name in present], workdir)
    except (SandboxError, OSError):
        return None  # the worker's upload_output says what went wrong
    if not inlines(len(data), inline_bound, limits):
        return None
    return OutputSandbox(checksum(data), missing, size=len(data), inline=data)


def _outputs(description: JobDescription, workdir: Path) -> tuple[dict[str, int], tuple[str, ...]]:
    """The files the job's output names (OutputSandbox, StdOutput, StdError): those present
    in ``workdir``, each with its size (-1 for what is not a regular file, a folder: something
    to upload whatever it holds; 0 for an empty file: nothing), and those missing. One
    ``stat`` per name."""
    wanted = list(description.output_sandbox)
    for name in (description.std_output, description.std_error):
        if name and name not in wanted:
            wanted.append(name)
    present: dict[str, int] = {}
    missing = []
    for name in wanted:
        try:
            info = os.stat(os.path.join(workdir, name))
        except (OSError, ValueError):
            missing.append(name)
            continue
        present[name] = info.st_size if stat.S_ISREG(info.st_mode) else -1
    return present, tuple(missing)
