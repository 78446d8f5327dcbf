"""A job's sandboxes on the worker node: fetch and unpack the input, pack and upload the output.

- Input: the job's ``InputSandbox`` names the uploaded archive as ``SB:<sha256>`` (``dirac-like
  job submit`` uploads the files and adds it). The archive is downloaded in chunks, checked
  against its sha256 and unpacked with :func:`dirac_like.sandbox.safe_extract` (no path escapes,
  no links, no devices, bounded size). The other entries are the names of the files it holds,
  relative to the job's working folder; one that is not there after unpacking fails the job.
  ``LFN:`` entries (grid files) are fetched with the job's InputData (agents/job_data.py).
- Output: the files ``OutputSandbox`` names, plus StdOutput and StdError, packed from the job's
  working folder and uploaded; a listed file that is missing is reported, not fatal. Nothing to
  pack, nothing uploaded.
"""

from __future__ import annotations

import logging
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from dirac_like.client import Client
from dirac_like.description import JobDescription
from dirac_like.sandbox import SANDBOX_PREFIX, SandboxError, pack, safe_extract
from dirac_like.submission import sandbox_name

log = logging.getLogger(__name__)

GRID_PREFIX = "LFN:"


@dataclass(frozen=True)
class SandboxLimits:
    max_download_bytes: int = 64 * 1024 * 1024  # compressed input archive
    max_unpacked_bytes: int = 1024 * 1024 * 1024  # input archive, unpacked
    max_upload_bytes: int = 64 * 1024 * 1024  # compressed output archive


@dataclass(frozen=True)
class OutputSandbox:
    sha256: str  # '' when there was nothing to upload
    missing: tuple[str, ...]  # listed files the job did not make
    error: str = ""  # why nothing was uploaded, if something should have been
    size: int = 0  # bytes uploaded

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


def upload_output(
    client: Client, description: JobDescription, workdir: Path, limits: SandboxLimits
) -> OutputSandbox:
    """Pack and upload what the job left that its OutputSandbox (and StdOutput, StdError)
    names. SandboxError when it is over the limit or cannot be packed. Nothing is uploaded when
    every file there is empty (a job that printed nothing): the job has no output sandbox."""
    present, missing = _outputs(description, workdir)
    if not any(present.values()):
        return OutputSandbox("", missing)
    data = pack([Path(name) for name in present], workdir)
    if len(data) > limits.max_upload_bytes:
        raise SandboxError(
            f"output sandbox of {len(data)} bytes is over the limit of "
            f"{limits.max_upload_bytes} bytes"
        )
    return OutputSandbox(client.upload_sandbox(data, kind="output"), missing, size=len(data))


def nothing_to_upload(description: JobDescription, workdir: Path) -> OutputSandbox | None:
    """What :func:`upload_output` returns for a job that left nothing to upload (no file, or
    only empty ones), found without a client; None when there is something to upload."""
    present, missing = _outputs(description, workdir)
    return None if any(present.values()) else OutputSandbox("", missing)


def _outputs(description: JobDescription, workdir: Path) -> tuple[dict[str, bool], tuple[str, ...]]:
    """The files the job's output names (OutputSandbox, StdOutput, StdError): those present
    in ``workdir``, each with whether it has something to upload (anything but an empty
    file), and those missing. One ``stat`` per name."""
    wanted = list(description.output_sandbox)
    for name in (description.std_output, description.std_error):
        if name and name not in wanted:
            wanted.append(name)
    present: dict[str, bool] = {}
    missing = []
    for name in wanted:
        try:
            info = os.stat(os.path.join(workdir, name))
        except (OSError, ValueError):
            missing.append(name)
            continue
        present[name] = not stat.S_ISREG(info.st_mode) or info.st_size > 0
    return present, tuple(missing)
