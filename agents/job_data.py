"""A job's grid files on the worker node: its InputData (and ``LFN:`` InputSandbox entries)
before the payload, its OutputData after it.

Before the payload starts, each input LFN is downloaded into the job's working folder with
:meth:`dirac_like.data_manager.DataManager.get`: the best replica (this site's first), checked
against the catalog's size and adler32 (a corrupted replica is skipped for the next one). A file
that cannot be had fails the job before it runs, with the LFN in the reason.

With ``InputDataPolicy = "protocol"`` nothing is downloaded: the payload gets the URL of the best
replica of each file in ``input-data-urls.txt`` (``LFN URL`` per line) and reads it itself.

After a payload that succeeded, each ``OutputData`` file is put on the first of its ``OutputSE``
that takes it and registered as the job owner's; when every OutputSE is down it goes to a
failover SE (one tagged ``failover``) and a transfer request moves it later: the job is not lost
for a storage outage. A file that cannot be stored anywhere fails the job.

A pilot that takes over a job whose payload ended under a predecessor that died (its report
rebuilt from the job's folder) uploads the OutputData with ``resume=True``: a file the
predecessor already registered (same size and adler32 as the local one) is kept as it is, the
rest is uploaded; so the job is never reported Done with its output missing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from dirac_like.checksums import adler32_of_file
from dirac_like.client import Client
from dirac_like.data_manager import Copied, DataManager, se_config
from dirac_like.description import JobDescription
from dirac_like.errors import FileMissing, InvalidArgument, StorageError, StorageUnavailable

log = logging.getLogger(__name__)

LFN_PREFIX = "LFN:"
URLS_FILE = "input-data-urls.txt"


def input_lfns(description: JobDescription) -> list[str]:
    """InputData LFNs, then the ``LFN:`` entries of InputSandbox, each once."""
    named = [
        *description.input_data,
        *(entry for entry in description.input_sandbox if entry.startswith(LFN_PREFIX)),
    ]
    return list(dict.fromkeys(lfn.removeprefix(LFN_PREFIX) for lfn in named))


def fetch_input_data(
    client: Client, description: JobDescription, workdir: Path, site: str
) -> list[str]:
    """Download (or, policy "protocol", locate) the job's input files; returns the LFNs.
    A DiracLikeError names the file that could not be had."""
    lfns = input_lfns(description)
    if not lfns:
        return []
    data = DataManager(client, site=site)
    if description.input_data_policy.lower() == "protocol":
        lines = [f"{lfn} {_best_url(data, lfn)}\n" for lfn in lfns]
        (workdir / URLS_FILE).write_text("".join(lines))
        return lfns
    for lfn in lfns:
        copied = data.get(lfn, workdir)
        log.info("input %s from %s (%d bytes, adler32 checked)", lfn, copied.se, copied.size)
    return lfns


def _best_url(data: DataManager, lfn: str) -> str:
    sources = data.sources(data.stat(lfn))
    if not sources:
        raise StorageUnavailable(f"{lfn} has no Good replica on a readable SE")
    return se_config(data.row(sources[0])).pfn(lfn)


# -- output data ---------------------------------------------------------------------------------

FAILOVER_TAG = "failover"


@dataclass(frozen=True)
class OutputOwner:
    job_id: int
    owner: str


def output_lfns(description: JobDescription) -> list[tuple[str, str]]:
    """(local file, LFN) for each OutputData entry: ``LFN:/vo/...`` (the local file is its base
    name), or a bare file name placed in OutputPath."""
    pairs = []
    for entry in description.output_data:
        if entry.startswith(LFN_PREFIX):
            lfn = entry.removeprefix(LFN_PREFIX)
            pairs.append((lfn.rsplit("/", 1)[-1], lfn))
        elif description.output_path.startswith("/"):
            pairs.append((entry, f"{description.output_path.rstrip('/')}/{entry}"))
        else:
            raise InvalidArgument(f"OutputData {entry!r}: give LFN:/<vo>/... or an OutputPath")
    return pairs


def upload_output_data(
    client: Client,
    description: JobDescription,
    workdir: Path,
    job: OutputOwner,
    site: str,
    resume: bool = False,
) -> list[Copied]:
    """Upload and register each OutputData file on the first OutputSE that takes it; when none
    does, on a failover SE (tag "failover"), with a transfer request to the first OutputSE so
    the file gets there once it is back, as DIRAC's failover requests do. ``resume``: files
    already registered with this content (by a predecessor pilot) are not uploaded again."""
    data = DataManager(client, site=site)
    targets = list(description.output_se)
    if not targets:
        raise InvalidArgument("OutputData without OutputSE: say where the files go")
    copied = []
    for name, lfn in output_lfns(description):
        local = workdir / name
        if not local.is_file():
            raise FileMissing(f"OutputData {name} was not made by the job")
        registered = _already_registered(data, local, lfn, targets, job) if resume else None
        copied.append(registered or _put_somewhere(data, local, lfn, targets, job))
    return copied


def _already_registered(
    data: DataManager, local: Path, lfn: str, targets: list[str], job: OutputOwner
) -> Copied | None:
    """The registered ``lfn`` if it holds ``local``'s bytes (a predecessor uploaded it; if it
    only reached a failover SE, the transfer to the first OutputSE is asked again); None if it
    is not registered. StorageError if another file is registered under that LFN."""
    rows = data.files([lfn]).files
    if not rows:
        return None
    row = rows[0]
    size, adler32 = local.stat().st_size, adler32_of_file(local)
    if (row.size, row.adler32) != (size, adler32):
        raise StorageError(
            f"{lfn} is registered with size {row.size} adler32 {row.adler32}, not the job's "
            f"{local.name} ({size} bytes, adler32 {adler32})"
        )
    ses = [replica.se for replica in row.replicas if replica.status == "Good"]
    if ses and not set(ses) & set(targets):
        data.replicate([lfn], targets[0], job_id=job.job_id)
    log.info("job %s: %s was registered by a previous pilot (on %s)", job.job_id, lfn, ses)
    return Copied(lfn, ses[0] if ses else "", size, adler32)


def _put_somewhere(
    data: DataManager, local: Path, lfn: str, targets: list[str], job: OutputOwner
) -> Copied:
    problems = []
    for se in targets:
        try:
            return data.put(local, lfn, se, job_id=job.job_id)
        except StorageError as exc:
            problems.append(f"{se}: {exc.message}")
    failovers = [
        row.name
        for row in data.storage_elements().values()
        if FAILOVER_TAG in row.tags and row.name not in targets
    ]
    for se in failovers:
        try:
            copied = data.put(local, lfn, se, job_id=job.job_id)
        except StorageError as exc:
            problems.append(f"{se}: {exc.message}")
            continue
        data.replicate([lfn], targets[0], job_id=job.job_id)
        log.warning(
            "job %s: %s went to failover SE %s (%s); a transfer moves it to %s",
            job.job_id,
            lfn,
            se,
            "; ".join(problems),
            targets[0],
        )
        return copied
    raise StorageUnavailable(f"{lfn} could not be stored: {'; '.join(problems)}")
