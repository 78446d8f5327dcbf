"""The pilot's durable outbox: a job's final report survives the pilot (issue 11, defect 9).

A report is written to ``<workdir>/outbox/<request id>.json`` (write, fsync, rename, fsync of
the folder) *before* it is sent, and removed once the service answered it: acknowledged, or
refused for good (a refusal is not retried: the job was taken away, or the report is wrong).
Until then it is sent again, with the SAME request id, so the service answers a repeat with the
reply it gave the first time and never applies a report twice. A pilot restarted on the same
workdir sends what its predecessor left (:meth:`Outbox.pending`).

The final reports of one turn of the pilot's loop are written together, in one file with one
fsync (issue 15: two fsyncs per job were most of the loop once the round trips were batched),
and sent without waiting for the reply (pipelined): the file goes once every report in it was
answered. Between the payload's end and that turn the job's end is kept by the payload keeper's
``payload_ended`` mark in the job's folder (fsync'd; the job's record is in its turn's
``jobs-*.json``, below): a pilot killed in between leaves it for its successor
(:func:`ended_report`), which uploads the output from the job's folder, still there, then sends
the report (``output_pending``: the description it needs to pack the output is kept with it).

A small output sandbox inlined in its final report (issue 15) is kept in the report, base64 in
the JSON (``output_inline``: at most ``SandboxLimits.max_inline_bytes``, 64 KiB, a third more
once encoded), so the report is sent again with its output after a crash or an outage, from the
outbox alone. One the service will not take inlined (an older service) goes back as
``output_pending``: uploaded from those bytes, then reported under a new request id.

What a successor needs to report such a job (its id, attempt, pilot and stored description)
is kept for the jobs a turn starts together in one file of the workdir, ``jobs-<id>.json``, by
folder name (:class:`JobRecords`; issue 15: one file per turn instead of a ``job.json`` in each
job's folder, which older pilots wrote and :func:`ended_report` still reads). It is written
(not fsync'd, as ``job.json`` was not) before the payloads start, and goes once every job in it
was reported and answered.

Files only, no sockets: the pilot (agents/pilot.py) does the sending.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

FOLDER = "outbox"
JOB_FILE = "job.json"  # in a job's folder (older pilots): its id, attempt, pilot, description
JOBS_PREFIX = "jobs-"  # in the workdir: the same for every job a turn started (JobRecords)
ENDED_MARK = "payload_ended"  # written there by the payload keeper when the payload ended
BATCH_PREFIX = "turn-"  # a file of several reports (one loop turn's final reports)


@dataclass(frozen=True)
class Report:
    """One status report of a job, as the pilot sends it with ``update_status``."""

    request_id: str
    job_id: int
    attempt: int
    pilot_id: str
    status: str
    minor_status: str
    application_status: str = ""
    output_sandbox: str = ""
    output_pending: bool = False  # the output sandbox is still to be uploaded
    workdir: str = ""  # the job's folder (for a pending output, and its clean-up)
    description: dict[str, Any] = field(default_factory=dict)  # while output_pending
    failed: bool = False  # the job did not end Done: its folder is kept a while
    usage: dict[str, Any] = field(default_factory=dict)  # a JobUsage's fields (final reports)
    data_pending: bool = False  # Done, but its OutputData may not be uploaded yet
    output_inline: str = ""  # the output sandbox inlined in the report (base64; issue 15)

    @classmethod
    def new(cls, **fields: Any) -> Report:
        """A report with a request id of its own."""
        return cls(request_id=uuid.uuid4().hex, **fields)

    @staticmethod
    def encoded(inline: bytes) -> str:
        """An inlined output sandbox as the report keeps it (JSON: base64)."""
        return base64.b64encode(inline).decode("ascii") if inline else ""

    def inline_bytes(self) -> bytes:
        """The output sandbox inlined in this report (empty: none)."""
        return base64.b64decode(self.output_inline) if self.output_inline else b""


class Outbox:
    """The reports not answered yet, in files under ``<workdir>/outbox``: one report per file
    (:meth:`put`, named by its request id), or the final reports of one loop turn of the pilot
    in one file with one fsync (:meth:`put_many`, issue 15). A file is removed once every report
    in it was answered (:meth:`done`)."""

    def __init__(self, workdir: Path) -> None:
        self.folder = workdir / FOLDER
        self.folder.mkdir(parents=True, exist_ok=True)
        self._file_of: dict[str, Path] = {}  # request id -> the file that holds it now
        self._left: dict[Path, set[str]] = {}  # a file -> its reports not answered yet

    def put(self, report: Report) -> Report:
        """Make ``report`` durable (replacing one with the same request id)."""
        self._write(self._path(report.request_id), [report])
        return report

    def put_many(self, reports: list[Report]) -> None:
        """Make these reports durable together: one file, one fsync (each report keeps its own
        request id; one already kept alone is replaced)."""
        if len(reports) == 1:
            self.put(reports[0])
        elif reports:
            self._write(self.folder / f"{BATCH_PREFIX}{uuid.uuid4().hex}.json", reports)

    def uploaded(self, report: Report, output_sandbox: str, problems: str) -> Report:
        """The output is uploaded (or failed to be): the report as it is to be sent."""
        application = "; ".join(filter(None, [report.application_status, problems]))
        return self.put(
            replace(
                report,
                output_sandbox=output_sandbox,
                output_pending=False,
                output_inline="",
                description={},
                application_status=application[:256],
            )
        )

    def done(self, report: Report) -> None:
        """The service answered ``report``: forget it, and remove its file once every report
        in it was answered. (Not fsync'd: a removal lost in a crash only sends the report
        again, under its request id, and the service answers a repeat without applying it
        twice; issue 15: a folder fsync per job cost the pilot's loop.)"""
        path = self._file_of.pop(report.request_id, None) or self._path(report.request_id)
        left = self._left.get(path)
        if left is not None:
            left.discard(report.request_id)
            if left:
                return
            del self._left[path]
        with contextlib.suppress(FileNotFoundError):
            path.unlink()

    def pending(self) -> list[Report]:
        """Every report not answered yet, oldest file first (an unreadable file is set aside).
        A report kept alone wins over its copy in a turn's file (it is the newer one)."""
        found: dict[str, Report] = {}
        for path in sorted(self.folder.glob("*.json"), key=_mtime):
            for report in self._read(path):
                request_id = report.request_id
                alone = path.name == f"{request_id}.json"
                kept_in = self._file_of.get(request_id)
                if alone or request_id not in found:
                    found[request_id] = report
                    self._file_of[request_id] = path
                    if alone and kept_in is not None and kept_in != path:
                        self._forget_in(kept_in, request_id)  # an older copy
                elif kept_in is not None and kept_in != path:
                    self._forget_in(path, request_id)  # an older copy of one kept alone
        return list(found.values())

    def _read(self, path: Path) -> list[Report]:
        """The reports of one file still to be answered (as far as this outbox knows: a file
        left by a predecessor is all to be answered)."""
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            reports = [Report(**item) for item in (data if isinstance(data, list) else [data])]
        except FileNotFoundError:
            return []  # answered meanwhile
        except (OSError, ValueError, TypeError) as exc:
            log.error("outbox: %s unreadable (%s): set aside as %s.bad", path.name, exc, path.name)
            path.replace(path.with_suffix(".bad"))
            return []
        if len(reports) > 1 and path not in self._left:
            self._left[path] = {report.request_id for report in reports}
        left = self._left.get(path)
        return [report for report in reports if left is None or report.request_id in left]

    def _write(self, path: Path, reports: list[Report]) -> None:
        """Write, fsync, rename, fsync the folder; then note which file holds each report."""
        temporary = path.with_suffix(".tmp")
        with open(temporary, "w", encoding="utf-8") as file:
            items = [vars(report) for report in reports]  # flat: asdict deep-copies (issue 15)
            # dumps, not dump: json.dump encodes in Python, chunk by chunk (a fifth of the
            # pilot's loop with a turn of reports; issue 15); dumps is the C encoder
            file.write(json.dumps(items[0] if len(items) == 1 else items))
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
        self._sync_folder()
        for report in reports:
            previous = self._file_of.get(report.request_id)
            if previous is not None and previous != path:
                self._forget_in(previous, report.request_id)
            self._file_of[report.request_id] = path
        if len(reports) > 1:
            self._left[path] = {report.request_id for report in reports}

    def _forget_in(self, path: Path, request_id: str) -> None:
        """``request_id`` is kept in another file now: the old one goes once nothing is left."""
        left = self._left.get(path)
        if left is None:
            return
        left.discard(request_id)
        if not left:
            del self._left[path]
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def _path(self, request_id: str) -> Path:
        return self.folder / f"{request_id}.json"

    def _sync_folder(self) -> None:
        descriptor = os.open(self.folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


class JobRecords:
    """The records of the jobs each turn of the pilot started (id, attempt, pilot, stored
    description, by folder name): one file per turn in the workdir, written before the payloads
    start; removed once each of its jobs is over (:meth:`done`, then the caller removes the file
    returned), or, for a predecessor's file, once none of its folders is left (:meth:`sweep`)."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self._file_of: dict[str, Path] = {}  # folder name -> its turn's file
        self._left: dict[Path, set[str]] = {}  # a file -> its folders not over yet

    def keep(self, records: dict[str, dict[str, Any]]) -> None:
        """Write these records (folder name -> record) in one file (write, rename)."""
        if not records:
            return
        path = self.workdir / f"{JOBS_PREFIX}{uuid.uuid4().hex}.json"
        temporary = path.with_suffix(".tmp")
        with open(temporary, "w", encoding="utf-8") as file:
            file.write(json.dumps(records))  # the C encoder (json.dump's is Python)
        os.replace(temporary, path)
        self._left[path] = set(records)
        for name in records:
            self._file_of[name] = path

    def done(self, folder: Path) -> Path | None:
        """The job of ``folder`` is over (reported and answered, or never started): its file,
        if nothing else in it is left (the caller removes it, after the folder)."""
        path = self._file_of.pop(folder.name, None)
        left = self._left.get(path) if path is not None else None
        if left is None:
            return None
        left.discard(folder.name)
        if left:
            return None
        del self._left[path]  # type: ignore[arg-type]
        return path

    def read(self) -> dict[str, dict[str, Any]]:
        """Every record in the workdir's files (a predecessor's too), by folder name."""
        found: dict[str, dict[str, Any]] = {}
        for path in self.workdir.glob(f"{JOBS_PREFIX}*.json"):
            try:
                found.update(json.loads(path.read_text(encoding="utf-8")))
            except (OSError, ValueError, TypeError) as exc:
                log.warning("job records %s unreadable: %s", path.name, exc)
        return found

    def sweep(self) -> None:
        """Remove the files not this pilot's (a predecessor's) none of whose folders is left,
        and what a write cut short left (the loop, which writes them, runs this)."""
        for leftover in self.workdir.glob(f"{JOBS_PREFIX}*.tmp"):
            leftover.unlink(missing_ok=True)
        for path in self.workdir.glob(f"{JOBS_PREFIX}*.json"):
            if path in self._left:
                continue
            try:
                names = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if not any((self.workdir / str(name)).exists() for name in names):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()


def ended_report(folder: Path, job: dict[str, Any] | None = None) -> Report | None:
    """The report of a job whose payload ended (the keeper's ``payload_ended`` in its folder)
    but whose pilot died before keeping a report; None if the folder tells no such end. ``job``:
    its record (:class:`JobRecords`), else read from the folder's ``job.json`` (older pilots)."""
    try:
        if job is None:
            job = json.loads((folder / JOB_FILE).read_text(encoding="utf-8"))
        how, number = (folder / ENDED_MARK).read_text(encoding="ascii").split()
        value = int(number)
    except (OSError, ValueError):
        return None
    assert job is not None
    if how == "exit" and value == 0:
        status, minor = "Done", "Execution Complete"
    elif how == "exit":
        status, minor = "Failed", f"Application exited with code {value}"
    else:
        status, minor = "Failed", f"Application killed by signal {value}"
    code = value if how == "exit" else -value
    return Report.new(
        job_id=int(job["job_id"]),
        attempt=int(job["attempt"]),
        pilot_id=str(job["pilot_id"]),
        status=status,
        minor_status=minor,
        application_status=f"Exit code {code}",
        output_pending=True,
        workdir=str(folder),
        description=dict(job["description"]),
        failed=status != "Done",
        data_pending=status == "Done" and _names_output_data(job["description"]),
    )


def _names_output_data(description: dict[str, Any]) -> bool:
    return any(key.lower() == "outputdata" and value for key, value in description.items())


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0
