"""How the pilot sends its status reports: several in one request when it has several
(``update_statuses``, issue 15), one by one to a service older than that op.

Final reports come from the durable outbox (agents/outbox.py) and leave it once answered:
acknowledged, or refused for good; one the service could not take now stays for the next
flush. Running reports are not kept: a job whose Running is not taken is not started. Only the
pilot's main thread uses a :class:`ReportSender` (it owns the client).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable

from dirac_like.client import Client
from dirac_like.errors import DiracLikeError, UnknownOperation
from dirac_like.protocol import (
    MAX_REPORTS_PER_REQUEST,
    JobUsage,
    PilotCommand,
    ReportOutcome,
    UpdateStatusArgs,
)
from dirac_like.states import JobStatus

from .outbox import Outbox, Report

log = logging.getLogger(__name__)

Answered = Callable[[Report], None]  # a report the service answered (its folder's turn)


class ReportSender:
    def __init__(
        self, client: Callable[[], Client], outbox: Outbox, pilot_id: str, answered: Answered
    ) -> None:
        self._client = client  # the pilot's, whichever it is now
        self.outbox = outbox
        self.pilot_id = pilot_id
        self.answered = answered
        self.batches = True  # False once the service said it has no update_statuses

    def send(self, reports: list[Report]) -> bool:
        """Send these reports of the outbox; False when the service could not take them all
        now (those not answered stay in the outbox for the next flush)."""
        for start in range(0, len(reports), MAX_REPORTS_PER_REQUEST):
            chunk = reports[start : start + MAX_REPORTS_PER_REQUEST]
            sent = self._send_batch(chunk) if len(chunk) > 1 and self.batches else None
            if sent is None:
                sent = all(self._send_one(report) for report in chunk)
            if not sent:
                return False
        return True

    def running(self, jobs: list[tuple[int, int]]) -> list[list[PilotCommand] | None]:
        """Report these (job id, attempt) Running; per job, its commands, or None when the
        service did not take it (the job is not to be started)."""
        reports = [
            UpdateStatusArgs(job_id, attempt, self.pilot_id, JobStatus.RUNNING.value, "Application")
            for job_id, attempt in jobs
        ]
        if len(reports) > 1 and self.batches:
            try:
                outcomes = self.client.update_statuses(self.pilot_id, reports)
            except UnknownOperation:
                self._no_batches()
            except DiracLikeError as exc:
                log.warning("jobs %s: not started, Running not taken: %s", _ids(reports), exc)
                return [None] * len(reports)
            else:
                return [self._running_outcome(r, o) for r, o in zip(reports, outcomes, strict=True)]
        return [self._running_one(report) for report in reports]

    @property
    def client(self) -> Client:
        return self._client()

    # -- one by one, or in one request -----------------------------------------------------------

    def _send_one(self, report: Report) -> bool:
        try:
            self.client.update_status(
                report.job_id,
                report.attempt,
                report.pilot_id,
                report.status,
                report.minor_status,
                report.application_status,
                report.output_sandbox,
                JobUsage(**report.usage) if report.usage else None,
                request_id=report.request_id,
            )
        except DiracLikeError as exc:
            if exc.retryable:
                log.warning(
                    "job %s: status %s not sent yet (kept, sent again): %s",
                    report.job_id,
                    report.status,
                    exc,
                )
                return False
            log.warning("job %s: status %s not accepted: %s", report.job_id, report.status, exc)
        self._done(report)
        return True

    def _send_batch(self, reports: list[Report]) -> bool | None:
        """True: answered (each report acknowledged or refused alone); False: the service is
        away (all kept); None: send them one by one (an old service, or the batch refused)."""
        try:
            outcomes = self.client.update_statuses(
                self.pilot_id, [_status_args(report) for report in reports], _batch_id(reports)
            )
        except UnknownOperation:
            self._no_batches()
            return None
        except DiracLikeError as exc:
            if exc.retryable:
                log.warning("jobs %s: reports not sent yet (kept): %s", _ids(reports), exc)
                return False
            log.warning(
                "jobs %s: reports refused together, sent one by one: %s", _ids(reports), exc
            )
            return None
        kept = False
        for report, outcome in zip(reports, outcomes, strict=True):
            if outcome.error is not None and outcome.error.retryable:
                kept = True
                continue
            if outcome.error is not None:
                log.warning(
                    "job %s: status %s not accepted: %s",
                    report.job_id,
                    report.status,
                    outcome.error.message,
                )
            self._done(report)
        return not kept

    def _running_one(self, report: UpdateStatusArgs) -> list[PilotCommand] | None:
        try:
            return self.client.update_status(
                report.job_id, report.attempt, self.pilot_id, report.status, report.minor_status
            )
        except DiracLikeError as exc:
            log.warning("job %s: not started, the service refused Running: %s", report.job_id, exc)
            return None

    def _running_outcome(
        self, report: UpdateStatusArgs, outcome: ReportOutcome
    ) -> list[PilotCommand] | None:
        if outcome.error is None:
            return outcome.commands
        log.warning(
            "job %s: not started, the service refused Running: %s",
            report.job_id,
            outcome.error.message,
        )
        return None

    def _done(self, report: Report) -> None:
        self.outbox.done(report)
        self.answered(report)

    def _no_batches(self) -> None:
        log.info(
            "pilot %s: the service has no update_statuses: one report a request", self.pilot_id
        )
        self.batches = False


def _status_args(report: Report) -> UpdateStatusArgs:
    return UpdateStatusArgs(
        report.job_id,
        report.attempt,
        report.pilot_id,
        report.status,
        report.minor_status,
        report.application_status,
        report.output_sandbox,
        JobUsage(**report.usage) if report.usage else None,
    )


def _batch_id(reports: list[Report]) -> str:
    """The same reports sent again go under the same request id (the service answers a repeat
    with its first reply)."""
    return hashlib.sha256(" ".join(r.request_id for r in reports).encode()).hexdigest()[:32]


def _ids(reports: list[UpdateStatusArgs] | list[Report]) -> str:
    return ",".join(str(report.job_id) for report in reports)
