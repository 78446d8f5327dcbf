"""How the pilot sends its status reports: several in one request when it has several
(``update_statuses``, issue 15), one by one to a service older than that op.

Pipelined (issue 15): :meth:`ReportSender.post` and :meth:`ReportSender.post_running` send a
request without waiting for its reply; :meth:`ReportSender.collect` takes the answers that came
(read by the pilot's next call or wait) and :meth:`ReportSender.expire` gives up on those that
did not come in time: a Running report is posted again under the same request id, final reports
go back to the outbox's flush (sent again under their own ids). A service older than
``update_statuses`` gets everything one by one, each waited for, as before.

One request per turn (``pilot_turn``, issue 15): :meth:`ReportSender.turn` sends the turn's
final reports together with the request for jobs, waited for; the jobs come back Running (start
them at once). A turn not answered after the client's retries is kept and sent again, same
request id and same arguments, as the next turn (the service stored its reply: a resend gets the
same jobs, even after a restart); meanwhile its reports, still in the outbox, go apart with the
outbox's flush (a report applied twice is answered as a no-op). A service without
``pilot_turn`` gets the reports posted and the request sent apart, as before.

Final reports come from the durable outbox (agents/outbox.py) and leave it once answered:
acknowledged, or refused for good; one the service could not take now stays for the next
flush. Running reports are not kept (posted again while unanswered): a job whose Running is
refused is not started. Only the
pilot's main thread uses a :class:`ReportSender` (it owns the client).

A final report may carry its output sandbox inlined (issue 15): a request holds at most
``MAX_INLINE_BYTES_PER_REQUEST`` of them (:func:`requests_of`). One the service refuses for the
inlined output (an older service's checker refuses the key; a service that takes it no more)
goes back to the outbox under a new request id as ``output_pending`` with its bytes: the
pilot's flush uploads them, then sends the report (:meth:`ReportSender._upload_instead`).
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace

from dirac_like.client import Answer, Client
from dirac_like.errors import DiracLikeError, UnknownOperation
from dirac_like.protocol import (
    MAX_INLINE_BYTES_PER_REQUEST,
    MAX_REPORTS_PER_REQUEST,
    PILOT_REVISION,
    JobUsage,
    Op,
    PilotCommand,
    PilotResources,
    PilotTurnArgs,
    PilotTurnReply,
    ReportOutcome,
    UpdateStatusArgs,
    UpdateStatusesArgs,
)
from dirac_like.states import JobStatus

from .outbox import Outbox, Report

log = logging.getLogger(__name__)

# The refusals of a report with an inlined output that say "not inlined" (an older service's
# checker, the size or checksum checks), not "not this report": it is uploaded instead.
INLINE_REFUSALS = frozenset({"bad_request", "bad_sandbox", "too_large"})

Answered = Callable[[Report], None]  # a report the service answered (its folder's turn)


@dataclass(frozen=True)
class RunningOutcome:
    """What the service said to a posted Running report: the job's commands (start it), or None
    when it refused it for good (the job is not this pilot's any more: not to be started)."""

    job_id: int
    commands: list[PilotCommand] | None


@dataclass
class _Posted:
    """A request in flight: final reports of the outbox, or Running reports."""

    sent_at: float
    finals: list[Report] = field(default_factory=list)
    running: list[UpdateStatusArgs] = field(default_factory=list)


@dataclass(frozen=True)
class _Turn:
    """A pilot turn sent and not answered yet: sent again as it is, under its id."""

    request_id: str
    args: PilotTurnArgs
    finals: list[Report]


class ReportSender:
    def __init__(
        self, client: Callable[[], Client], outbox: Outbox, pilot_id: str, answered: Answered
    ) -> None:
        self._client = client  # the pilot's, whichever it is now
        self.outbox = outbox
        self.pilot_id = pilot_id
        self.answered = answered
        self.batches = True  # False once the service said it has no update_statuses
        self._posted: dict[str, _Posted] = {}  # request id -> what it carries
        self.turns = True  # False once the service said it has no pilot_turn
        self._turn: _Turn | None = None  # a turn not answered: the next one sends it again

    # -- one request per turn ----------------------------------------------------------------------

    def turn(
        self, reports: list[Report], resources: PilotResources, count: int, now: float
    ) -> PilotTurnReply | None:
        """These reports of the outbox and a request for ``count`` jobs, in one request waited
        for; the reply (its jobs are Running), or None when none came (the turn is sent again
        by the next call, and ``reports`` are posted apart then) or the turn was refused (its
        reports stay in the outbox). UnknownOperation: the service has no pilot_turn (the
        reports are posted apart; ask as before)."""
        if self._turn is None:
            # The turn carries the first request's worth (count and inlined bytes bounded).
            finals = next(requests_of(reports), [])
            statuses = [_status_args(report) for report in finals]
            args = PilotTurnArgs(self.pilot_id, statuses, resources, count, revision=PILOT_REVISION)
            self._turn = _Turn(uuid.uuid4().hex, args, finals)
            reports = reports[len(finals) :]
        if reports:
            self.post(reports, now)
        turn = self._turn
        try:
            reply = self.client.pilot_turn(turn.args, turn.request_id)
        except UnknownOperation:
            log.info("pilot %s: the service has no pilot_turn: reports and requests apart",
                     self.pilot_id)  # fmt: skip
            self.turns, self._turn = False, None
            self.post(turn.finals, now)
            raise
        except DiracLikeError as exc:
            if exc.retryable:
                log.warning("pilot %s: turn not answered (sent again): %s", self.pilot_id, exc)
                return None
            log.warning("pilot %s: turn refused (reports kept): %s", self.pilot_id, exc)
            self._turn = None
            return None
        self._turn = None
        self._apply_outcomes(turn.finals, reply.outcomes)
        return reply

    def drop_turn(self) -> None:
        """A pilot that will ask for no job (draining, stopping) gives up the turn not answered
        (a job it matched, if the service took it, is left to the service's stalled-job rule;
        its reports go with the outbox's flush)."""
        if self._turn is not None:
            log.warning("pilot %s: turn %s not answered, given up", self.pilot_id,
                        self._turn.request_id)  # fmt: skip
            self._turn = None

    # -- pipelined -------------------------------------------------------------------------------

    def post(self, reports: list[Report], now: float) -> None:
        """Send these reports of the outbox without waiting (one by one, waited for, to an old
        service); what is not answered stays in the outbox."""
        if not self.batches:
            self.send(reports)
            return
        for chunk in requests_of(reports):
            self._post(_batch_id(chunk), _Posted(now, finals=chunk))

    def post_running(self, jobs: list[tuple[int, int]], now: float) -> None:
        """Report these (job id, attempt) Running without waiting (each payload starts when its
        answer comes); :meth:`collect` hands out what the service said of each."""
        reports = [
            UpdateStatusArgs(job_id, attempt, self.pilot_id, JobStatus.RUNNING.value, "Application")
            for job_id, attempt in jobs
        ]
        for start in range(0, len(reports), MAX_REPORTS_PER_REQUEST):
            chunk = reports[start : start + MAX_REPORTS_PER_REQUEST]
            self._post(uuid.uuid4().hex, _Posted(now, running=chunk))

    def in_flight(self) -> set[str]:
        """Request ids of the final reports posted and not answered yet (not those of a turn
        not answered: the outbox's flush sends them apart meanwhile, every few seconds, not
        only when the pilot asks again)."""
        return {report.request_id for posted in self._posted.values() for report in posted.finals}

    def collect(self, answers: list[Answer], now: float) -> list[RunningOutcome]:
        """Apply the answers to posted requests: final reports answered leave the outbox; the
        outcome of each Running report answered is returned."""
        outcomes: list[RunningOutcome] = []
        for answer in answers:
            posted = self._posted.pop(answer.request_id, None)
            if posted is None:
                continue
            if answer.error is None:
                outcomes += self._answered(posted, answer.result.outcomes, answer.request_id, now)
            elif answer.retryable:
                log.info("reports not taken yet (%s): sent again later", answer.error)
                self._park(answer.request_id, posted)
            else:
                outcomes += self._refused_together(posted, answer.error)
        return outcomes

    def expire(self, now: float, timeout: float) -> None:
        """Posted requests not answered within ``timeout``: Running reports posted again (same
        request id), final reports left to the outbox's next flush."""
        for request_id, posted in list(self._posted.items()):
            if now - posted.sent_at < timeout:
                continue
            del self._posted[request_id]
            self.client.forget(request_id)
            if posted.running:
                log.warning("jobs %s: Running not answered yet: sent again",
                            _ids(posted.running))  # fmt: skip
                self._post(request_id, _again(posted, now))

    def _post(self, request_id: str, posted: _Posted) -> None:
        args = [_status_args(report) for report in posted.finals] or posted.running
        self._posted[request_id] = posted
        if not self.client.post(
            Op.UPDATE_STATUSES, UpdateStatusesArgs(self.pilot_id, args), request_id
        ):
            log.warning("jobs %s: reports not posted now (kept)", _ids(args))

    def _park(self, request_id: str, posted: _Posted) -> None:
        """Not taken now (the service was busy): Running reports are posted again by
        :meth:`expire` (not at once: that would keep a busy service busier); final reports
        go back to the outbox's next flush."""
        if posted.running:
            self._posted[request_id] = posted

    def _answered(
        self, posted: _Posted, outcomes: list[ReportOutcome], request_id: str, now: float
    ) -> list[RunningOutcome]:
        if posted.finals:
            self._apply_outcomes(posted.finals, outcomes)
            return []
        retry = [
            report
            for report, outcome in zip(posted.running, outcomes, strict=True)
            if outcome.error is not None and outcome.error.retryable
        ]
        if retry:
            self._park(uuid.uuid4().hex, _Posted(now, running=retry))
        return [
            RunningOutcome(report.job_id, self._running_outcome(report, outcome))
            for report, outcome in zip(posted.running, outcomes, strict=True)
            if outcome.error is None or not outcome.error.retryable
        ]

    def _refused_together(self, posted: _Posted, error: DiracLikeError) -> list[RunningOutcome]:
        """The whole request refused (an old service, a malformed report): one by one, waited
        for, as to a service without ``update_statuses``."""
        if isinstance(error, UnknownOperation):
            self._no_batches()
        else:
            log.warning("jobs refused together, sent one by one: %s", error)
        if posted.finals:
            for report in posted.finals:
                self._send_one(report)
            return []
        return [
            RunningOutcome(report.job_id, self._running_one(report)) for report in posted.running
        ]

    def send(self, reports: list[Report]) -> bool:
        """Send these reports of the outbox; False when the service could not take them all
        now (those not answered stay in the outbox for the next flush)."""
        for chunk in requests_of(reports):
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
                output_data=report.inline_bytes(),
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
            if report.output_inline and exc.code in INLINE_REFUSALS:
                self._upload_instead(report, exc.message)
                return True
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
        return self._apply_outcomes(reports, outcomes)

    def _apply_outcomes(self, reports: list[Report], outcomes: list[ReportOutcome]) -> bool:
        """Each report answered alone: acknowledged or refused for good, it leaves the outbox;
        False if one is to be sent again later (it stays)."""
        kept = False
        for report, outcome in zip(reports, outcomes, strict=True):
            if outcome.error is not None and outcome.error.retryable:
                kept = True
                continue
            if report.output_inline and outcome.error and outcome.error.code in INLINE_REFUSALS:
                self._upload_instead(report, outcome.error.message)
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

    def _upload_instead(self, report: Report, why: str) -> None:
        """The service would not take this report's inlined output: the report goes back to
        the outbox (durably, before the refused one leaves it) under a new request id, its
        output to be uploaded from the bytes it keeps by the pilot's next flush. Its job's
        folder stays (the report is not answered yet)."""
        log.warning("job %s: inlined output refused (%s): it is uploaded instead",
                    report.job_id, why)  # fmt: skip
        again = replace(report, request_id=uuid.uuid4().hex, output_pending=True, output_sandbox="")
        try:
            self.outbox.put(again)
        except OSError as exc:
            log.error("job %s: report not kept in the outbox: %s", report.job_id, exc)
            return  # the refused one stays: sent again (and refused again) by the next flush
        self.outbox.done(report)

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
        report.inline_bytes(),
    )


def requests_of(reports: list[Report]) -> Iterator[list[Report]]:
    """The reports in requests of at most ``MAX_REPORTS_PER_REQUEST`` reports and
    ``MAX_INLINE_BYTES_PER_REQUEST`` bytes of inlined outputs (in order; a report is never
    split, and each request holds at least one)."""
    chunk: list[Report] = []
    inlined = 0
    for report in reports:
        size = len(report.output_inline) * 3 // 4  # base64: the bytes it decodes to, about
        if chunk and (
            len(chunk) == MAX_REPORTS_PER_REQUEST or inlined + size > MAX_INLINE_BYTES_PER_REQUEST
        ):
            yield chunk
            chunk, inlined = [], 0
        chunk.append(report)
        inlined += size
    if chunk:
        yield chunk


def _again(posted: _Posted, now: float) -> _Posted:
    """The same request, posted again now."""
    return _Posted(now, posted.finals, posted.running)


def _batch_id(reports: list[Report]) -> str:
    """The same reports sent again go under the same request id (the service answers a repeat
    with its first reply)."""
    return hashlib.sha256(" ".join(r.request_id for r in reports).encode()).hexdigest()[:32]


def _ids(reports: list[UpdateStatusArgs] | list[Report]) -> str:
    return ",".join(str(report.job_id) for report in reports)
