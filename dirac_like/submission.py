"""What ``dirac-like job submit`` and ``job output`` do around the service calls: validation,
warnings and the sandboxes.

Submitting is two steps, so that nothing is uploaded for a refused job:

1. :func:`prepare_submission` reads every job file, validates every description (the jobs it
   expands to included) and finds the local files their ``InputSandbox`` names: any path the user
   can read, relative to the job file's folder or absolute (``../x.sh``, ``/data/cfg``), stored
   under its base name as DIRAC does. A missing or unreadable file, or two files with the same
   base name, are errors naming the job file, the attribute and the line. Warnings (ignored or
   overridden attributes) come back to be shown.
2. :func:`upload_sandboxes` packs each description's files into one tar.gz, uploads it (equal
   file sets once) and names it in the description with an ``SB:<sha256>`` entry. A JDL text
   stays text, the entry written into its InputSandbox list in place, so the service's errors
   keep the file's line numbers. ``LFN:`` entries (grid files) and ``SB:`` entries are left as
   they are.

Fetching output: ``job output ID`` downloads the archive a pilot uploaded when the job ended,
checks it and unpacks it safely into ``DIR/<job id>/`` (DIRAC's layout).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from dirac_like.client import Client
from dirac_like.description import DescriptionLimits, parse_job_descriptions
from dirac_like.errors import InvalidJobDescription
from dirac_like.jdl import JdlWarning, Placeholder, parse_jdl
from dirac_like.sandbox import SANDBOX_PREFIX, pack_named, safe_extract

GRID_PREFIX = "LFN:"
MAX_OUTPUT_BYTES = 1024 * 1024 * 1024  # an output sandbox, unpacked
Description = str | dict[str, Any]


@dataclass
class PreparedJob:
    """One description of a job file, validated, with its local sandbox files."""

    path: Path  # the job file
    source: Description  # as read: JDL text or a mapping
    files: dict[str, Path] = field(default_factory=dict)  # base name -> local path
    warnings: list[JdlWarning] = field(default_factory=list)
    jobs: int = 1  # how many jobs it expands to


def sandbox_name(entry: str) -> str:
    """The name an InputSandbox entry has in the sandbox: its base name."""
    return PurePosixPath(entry.replace(os.sep, "/")).name


def local_entries(input_sandbox: Any) -> list[str]:
    """The InputSandbox entries that are files on this machine (not SB:, not LFN:)."""
    entries = input_sandbox if isinstance(input_sandbox, list | tuple) else [input_sandbox]
    return [
        entry.strip()
        for entry in entries
        if isinstance(entry, str)
        and entry.strip()
        and not entry.strip().startswith((SANDBOX_PREFIX, GRID_PREFIX))
    ]


# --- step 1: validate everything -------------------------------------------------------------


# The service applies its own limits (CPU time, job types, number of jobs, ...), which the client
# does not know: here everything else is checked, with limits no service is below.
CLIENT_LIMITS = DescriptionLimits(
    max_cpu_time=2**62,
    max_processors=2**31,
    max_parametric_jobs=1_000_000,
    max_input_data=2**31,
    allowed_job_types=(),
)


def prepare_submission(
    sources: list[tuple[Path, Description]], limits: DescriptionLimits = CLIENT_LIMITS
) -> list[PreparedJob]:
    """Validate every description and find its sandbox files; the first error is raised
    (naming the job file) before anything is uploaded."""
    return [prepare_job(path, source, limits) for path, source in sources]


def prepare_job(path: Path, source: Description, limits: DescriptionLimits) -> PreparedJob:
    try:
        parsed = parse_job_descriptions(source, limits)
        lines = parse_jdl(source).lines if isinstance(source, str) else {}
        line = next((line for name, line in lines.items() if name.lower() == "inputsandbox"), None)
        entries: dict[str, None] = {}
        for description in parsed.descriptions:
            entries.update(dict.fromkeys(local_entries(list(description.input_sandbox))))
        files = _local_files(list(entries), path.parent, line)
    except InvalidJobDescription as error:
        raise error.in_file(str(path)) from None
    return PreparedJob(path, source, files, parsed.warnings, len(parsed.descriptions))


def _local_files(entries: list[str], folder: Path, line: int | None) -> dict[str, Path]:
    files: dict[str, Path] = {}
    given: dict[str, str] = {}
    for entry in entries:
        name = sandbox_name(entry)
        if name in ("", ".", ".."):
            raise _sandbox_error(f"InputSandbox entry {entry!r} names no file", line)
        local = Path(entry).expanduser()
        local = local if local.is_absolute() else folder / local
        if not local.exists():
            raise _sandbox_error(
                f"InputSandbox file {entry!r} not found (looked for {local})", line
            )
        if not os.access(local, os.R_OK) or (local.is_dir() and not os.access(local, os.X_OK)):
            raise _sandbox_error(f"InputSandbox file {entry!r} cannot be read", line)
        if name in files and files[name].resolve() != local.resolve():
            message = (
                f"InputSandbox files {given[name]!r} and {entry!r} have the same name "
                f"{name!r} in the sandbox: rename one"
            )
            raise _sandbox_error(message, line)
        files[name], given[name] = local, entry
    return files


def _sandbox_error(message: str, line: int | None) -> InvalidJobDescription:
    return InvalidJobDescription(message, attribute="InputSandbox", line=line)


# --- step 2: upload --------------------------------------------------------------------------


def upload_sandboxes(prepared: list[PreparedJob], client: Client) -> list[Description]:
    """The descriptions to submit, each naming its uploaded sandbox (equal file sets are
    uploaded once)."""
    uploaded: dict[tuple[tuple[str, str], ...], str] = {}
    result = []
    for job in prepared:
        if not job.files:
            result.append(job.source)
            continue
        key = tuple(sorted((name, str(path.resolve())) for name, path in job.files.items()))
        if key not in uploaded:
            uploaded[key] = client.upload_sandbox(pack_named(job.files))
        result.append(with_sandbox_entry(job.source, f"{SANDBOX_PREFIX}{uploaded[key]}"))
    return result


def with_sandbox_entry(source: Description, entry: str) -> Description:
    """``source`` with ``entry`` added to its InputSandbox; JDL text keeps its line numbers."""
    if not isinstance(source, str):
        attributes = dict(source)
        key = next((name for name in attributes if name.lower() == "inputsandbox"), "InputSandbox")
        value = attributes.get(key)
        listed = list(value) if isinstance(value, list | tuple) else ([value] if value else [])
        attributes[key] = [*listed, entry]
        return attributes
    document = parse_jdl(source)
    name = next(name for name in document.attributes if name.lower() == "inputsandbox")
    start, end = document.spans[name]
    value = document.attributes[name]
    quoted = _quoted(entry)
    if isinstance(value, list):
        old = source[start:end]
        new = old[:-1].rstrip() + (", " if value else " ") + quoted + " }"
    elif isinstance(value, Placeholder):
        new = "{ " + value.text + ", " + quoted + " }"
    else:
        items = [item.strip() for item in str(value).split(",") if item.strip()]
        new = "{ " + ", ".join(_quoted(item) for item in [*items, entry]) + " }"
    newlines = source.count("\n", start, end) - new.count("\n")  # keep the lines below
    return source[:start] + new + "\n" * newlines + source[end:]


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


# --- compatibility ---------------------------------------------------------------------------


def with_input_sandbox(
    description: Description, folder: Path, client: Client, uploaded: dict[tuple[str, ...], str]
) -> Description:
    """One description, validated, its local InputSandbox files uploaded and named by an
    ``SB:`` entry (the older one-at-a-time interface; ``uploaded`` is not used)."""
    job = prepare_job(folder / "job", description, CLIENT_LIMITS)
    return upload_sandboxes([job], client)[0]


def fetch_output(client: Client, job_id: int, folder: Path, max_download_bytes: int) -> Path:
    """Download and unpack the job's output sandbox into ``folder/<job_id>``; returns it."""
    where = client.job_output(job_id)
    data = client.download_sandbox(where.sha256, max_download_bytes)
    target = folder / str(job_id)
    safe_extract(data, target, MAX_OUTPUT_BYTES)
    return target
