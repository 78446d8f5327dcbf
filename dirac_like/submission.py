"""What ``dirac-like job submit`` and ``job output`` do around the service calls: the sandboxes.

Submitting: the files a description's ``InputSandbox`` names (relative to the folder of the job
file; folders are packed with their content) are packed into one tar.gz, uploaded in chunks, and
the description gains the entry ``SB:<sha256>`` naming the archive. ``LFN:`` entries (grid files)
and ``SB:`` entries already there are left as they are. Descriptions that name the same files
share one upload. A JDL text is sent as its attribute mapping once it has to be changed.

Fetching output: ``job output ID`` downloads the archive a pilot uploaded when the job ended,
checks it and unpacks it safely into ``DIR/<job id>/`` (DIRAC's layout).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dirac_like.client import Client
from dirac_like.jdl import parse_jdl
from dirac_like.sandbox import SANDBOX_PREFIX, SandboxError, pack, safe_extract

GRID_PREFIX = "LFN:"
MAX_OUTPUT_BYTES = 1024 * 1024 * 1024  # an output sandbox, unpacked
Description = str | dict[str, Any]


def _attributes(description: Description) -> dict[str, Any]:
    return dict(parse_jdl(description).attributes) if isinstance(description, str) \
        else dict(description)


def _sandbox_key(attributes: dict[str, Any]) -> str | None:
    return next((key for key in attributes if key.lower() == "inputsandbox"), None)


def local_files(attributes: dict[str, Any]) -> list[str]:
    """The InputSandbox entries that are files on this machine (not SB:, not LFN:)."""
    key = _sandbox_key(attributes)
    value = attributes.get(key) if key else None
    entries = value if isinstance(value, list) else ([value] if value else [])
    return [str(entry).strip() for entry in entries
            if not str(entry).startswith((SANDBOX_PREFIX, GRID_PREFIX)) and str(entry).strip()]


def with_input_sandbox(description: Description, folder: Path, client: Client,
                       uploaded: dict[tuple[str, ...], str]) -> Description:
    """The description, its local InputSandbox files uploaded and named by an ``SB:`` entry.
    ``uploaded`` remembers archives already sent in this submission."""
    attributes = _attributes(description)
    files = local_files(attributes)
    if not files:
        return description
    key = tuple(sorted(files))
    if key not in uploaded:
        for name in files:
            if not (folder / name).exists():
                raise SandboxError(f"InputSandbox file {name!r} not found in {folder}")
        uploaded[key] = client.upload_sandbox(pack([Path(name) for name in files], folder))
    sandbox_key = _sandbox_key(attributes) or "InputSandbox"
    value = attributes[sandbox_key]
    entries = list(value) if isinstance(value, list) else [value]
    attributes[sandbox_key] = [*entries, f"{SANDBOX_PREFIX}{uploaded[key]}"]
    return attributes


def fetch_output(client: Client, job_id: int, folder: Path, max_download_bytes: int) -> Path:
    """Download and unpack the job's output sandbox into ``folder/<job_id>``; returns it."""
    where = client.job_output(job_id)
    data = client.download_sandbox(where.sha256, max_download_bytes)
    target = folder / str(job_id)
    safe_extract(data, target, MAX_OUTPUT_BYTES)
    return target
