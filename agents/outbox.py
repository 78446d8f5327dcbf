"""The pilot's durable outbox: a job's final report survives the pilot (issue 11, defect 9).

A report is written to ``<workdir>/outbox/<request id>.json`` (write, fsync, rename, fsync of
the folder) *before* it is sent, and removed once the service answered it: acknowledged, or
refused for good (a refusal is not retried: the job was taken away, or the report is wrong).
Until then it is sent again, with the SAME request id, so the service answers a repeat with the
reply it gave the first time and never applies a report twice. A pilot restarted on the same
workdir sends what its predecessor left (:meth:`Outbox.pending`).

A report is written as soon as its payload has ended, before the output sandbox is uploaded
(``output_pending``: the description it needs to pack the output is kept with it), so a pilot
killed during the upload leaves a report that its successor completes: it uploads the output
from the job's folder, still there, then sends the report. The completed report (with its output
sandbox) is sent under the same request id; it is written again only when its status differs
from the kept one (a lease kill, a hand-back): otherwise the kept one, completed again after a
crash (the upload of the same bytes gives the same sandbox), says the same.

Files only, no sockets: the pilot (agents/pilot.py) does the sending.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import uuid
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

FOLDER = "outbox"
JOB_FILE = "job.json"  # in a job's folder: its id, attempt, pilot and stored description
ENDED_MARK = "payload_ended"  # written there by the payload keeper when the payload ended


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

    @classmethod
    def new(cls, **fields: Any) -> Report:
        """A report with a request id of its own."""
        return cls(request_id=uuid.uuid4().hex, **fields)


class Outbox:
    def __init__(self, workdir: Path) -> None:
        self.folder = workdir / FOLDER
        self.folder.mkdir(parents=True, exist_ok=True)

    def put(self, report: Report) -> Report:
        """Make ``report`` durable (replacing one with the same request id)."""
        path = self._path(report.request_id)
        temporary = path.with_suffix(".tmp")
        with open(temporary, "w", encoding="utf-8") as file:
            json.dump(asdict(report), file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
        self._sync_folder()
        return report

    def uploaded(self, report: Report, output_sandbox: str, problems: str) -> Report:
        """The output is uploaded (or failed to be): the report as it is to be sent."""
        application = "; ".join(filter(None, [report.application_status, problems]))
        return self.put(
            replace(
                report,
                output_sandbox=output_sandbox,
                output_pending=False,
                description={},
                application_status=application[:256],
            )
        )

    def done(self, report: Report) -> None:
        """The service answered ``report``: forget it. (Not fsync'd: a removal lost in a crash
        only sends the report again, under its request id, and the service answers a repeat
        without applying it twice; issue 15: a folder fsync per job cost the pilot's loop.)"""
        with contextlib.suppress(FileNotFoundError):
            self._path(report.request_id).unlink()

    def pending(self) -> list[Report]:
        """Every report not answered yet, oldest first (an unreadable file is set aside)."""
        found = []
        for path in sorted(self.folder.glob("*.json"), key=_mtime):
            try:
                found.append(Report(**json.loads(path.read_text(encoding="utf-8"))))
            except (OSError, ValueError, TypeError) as exc:
                log.error(
                    "outbox: %s unreadable (%s): set aside as %s.bad", path.name, exc, path.name
                )
                path.replace(path.with_suffix(".bad"))
        return found

    def _path(self, request_id: str) -> Path:
        return self.folder / f"{request_id}.json"

    def _sync_folder(self) -> None:
        descriptor = os.open(self.folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


def ended_report(folder: Path) -> Report | None:
    """The report of a job whose payload ended (the keeper's ``payload_ended`` in its folder)
    but whose pilot died before keeping a report; None if the folder tells no such end."""
    try:
        job = json.loads((folder / JOB_FILE).read_text(encoding="utf-8"))
        how, number = (folder / ENDED_MARK).read_text(encoding="ascii").split()
        value = int(number)
    except (OSError, ValueError):
        return None
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
