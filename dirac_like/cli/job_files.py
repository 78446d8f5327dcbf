"""The files of jobs the CLI fetches: output and input sandboxes into ``DIR/<ID>/``, and a
stored description shown as JDL."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from dirac_like.client import Client
from dirac_like.description import description_from_stored, to_jdl
from dirac_like.errors import (
    ConfigError,
    DiracLikeError,
    InvalidJobDescription,
    ServiceUnavailable,
)
from dirac_like.sandbox import safe_extract
from dirac_like.submission import MAX_OUTPUT_BYTES, SANDBOX_PREFIX, fetch_output

MAX_DOWNLOAD = 1024 * 1024 * 1024  # bytes of one sandbox archive

# A fetched sandbox: the job id, the folder it was unpacked into, the files there.
Fetched = tuple[int, Path, list[str]]


def describe_as_jdl(description: dict[str, Any]) -> str:
    """A stored job description as JDL text (what ``job jdl`` prints); as JSON if a value has
    no JDL form."""
    try:
        return to_jdl(description_from_stored(description))
    except (InvalidJobDescription, TypeError, ValueError):
        return json.dumps(description, indent=2) + "\n"


def _targets(job_ids: list[int], folder: Path, force: bool) -> list[Path]:
    """``folder/<id>`` for each job; refuses before anything is downloaded if one exists and
    ``force`` is not given."""
    targets = [folder / str(job_id) for job_id in job_ids]
    existing = [str(target) for target in targets if target.exists()]
    if existing and not force:
        raise ConfigError(
            f"{', '.join(existing)} exists: not overwriting (use --force to replace it)"
        )
    return targets


def _replace(target: Path) -> None:
    if target.is_dir() and not target.is_symlink():
        shutil.rmtree(target)
    elif target.exists() or target.is_symlink():
        target.unlink()


def _files_in(target: Path) -> list[str]:
    return sorted(str(path.relative_to(target)) for path in target.rglob("*") if path.is_file())


def fetch_outputs(
    client: Client, job_ids: list[int], folder: Path, force: bool
) -> tuple[list[Fetched], list[tuple[int, DiracLikeError]]]:
    """Download and unpack each job's output sandbox into ``folder/<id>/``: the jobs fetched,
    and the refusals of the others (a job not ended, not yours, without output), in order."""
    fetched, refused = [], []
    for job_id, target in zip(job_ids, _targets(job_ids, folder, force), strict=True):
        try:
            client.job_output(job_id)  # refused (not ended, not yours) before anything goes
            _replace(target)
            fetch_output(client, job_id, folder, MAX_DOWNLOAD)
        except ServiceUnavailable:
            raise
        except DiracLikeError as exc:
            refused.append((job_id, exc))
            continue
        fetched.append((job_id, target, _files_in(target)))
    return fetched, refused


def input_sandboxes(description: dict[str, Any]) -> list[str]:
    """The sha256 of each uploaded input sandbox a stored description names (``SB:`` entries)."""
    key = next((key for key in description if key.lower() == "inputsandbox"), None)
    value = description.get(key) if key else None
    entries = value if isinstance(value, list) else ([value] if value else [])
    return [
        str(entry)[len(SANDBOX_PREFIX) :]
        for entry in entries
        if str(entry).startswith(SANDBOX_PREFIX)
    ]


def fetch_input(client: Client, job_id: int, folder: Path, force: bool) -> tuple[Path, list[str]]:
    """Download and unpack the job's input sandboxes into ``folder/<id>/``."""
    (target,) = _targets([job_id], folder, force)
    sandboxes = input_sandboxes(client.job_description(job_id))
    if not sandboxes:
        return target, []
    archives = [client.download_sandbox(sha256, MAX_DOWNLOAD) for sha256 in sandboxes]
    _replace(target)
    for data in archives:
        safe_extract(data, target, MAX_OUTPUT_BYTES)
    return target, _files_in(target)
