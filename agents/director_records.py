"""A site director's pilot records: kept by the central service, followed here.

The central service holds every pilot record (``dirac-like admin pilots``). A director

- asks the service for the ids of the pilots it is about to submit (:meth:`PilotBook.new_ids`),
- reads its site's live records at the start of each cycle (:meth:`PilotBook.sync`): after a
  restart it adopts them, later it learns which ones an admin asked to kill,
- notes what its fabrics say (:meth:`PilotBook.note`) and sends those updates in one request per
  cycle (:meth:`PilotBook.flush`). Updates the service did not get stay in the outbox and go with
  the next flush, so a service outage delays the records, never loses them. An update the
  service refuses (it forgot the pilot, or the pilot already ended) is dropped with a log line:
  one bad update must not hold back the others.

Locally a record lives while its pilot does and until its final state reached the service.
"""

from __future__ import annotations

import logging
from typing import Any

from dirac_like.client import Client
from dirac_like.errors import DiracLikeError, ServiceUnavailable
from dirac_like.model import PilotRecord
from dirac_like.protocol import PilotUpdateItem, PilotView
from dirac_like.states import LIVE_PILOT_STATES, PilotState

log = logging.getLogger(__name__)

ADOPTED_IN_PROCESS = "Stopped with a previous run of the director"
# The reason of a local pilot an ``agent director --once`` left running: no director follows it,
# it closes its own record when it stops.
LEFT_RUNNING = "Left running by a director run with --once"


class PilotBook:
    def __init__(
        self,
        site: str,
        client: Client,
        in_process_fabrics: frozenset[str],
        managed: frozenset[str] | None = None,
    ) -> None:
        self.site = site
        self.client = client
        self.in_process_fabrics = in_process_fabrics  # their pilots die with the director
        # The fabrics this director runs (None: any): a record of another fabric, or of none (a
        # pilot started by hand), is not this director's and is left alone.
        self.managed = managed
        self.records: dict[str, PilotRecord] = {}
        self.outbox: dict[str, dict[str, Any]] = {}  # pilot id -> update not yet sent

    # -- from the service ------------------------------------------------------------------------

    def sync(self, now: float) -> None:
        """Read the site's live records; raises ServiceUnavailable (the cycle then stops)."""
        rows = self.client.pilots(
            site=self.site, states=sorted(state.value for state in LIVE_PILOT_STATES)
        )
        for row in rows:
            record = self.records.get(row.pilot_id)
            if record is None:
                if self._ours(row):
                    self._adopt(row, now)
            else:
                record.kill_requested = row.kill_requested

    def _ours(self, row: PilotView) -> bool:
        """Whether this director follows a record it did not create in this process."""
        if not row.fabric or row.reason == LEFT_RUNNING:  # by hand, or closes its own record
            return False
        return self.managed is None or row.fabric in self.managed

    def _adopt(self, row: PilotView, now: float) -> None:
        record = PilotRecord(
            row.pilot_id,
            self.site,
            row.ce,
            row.fabric,
            fabric_ref=row.fabric_ref,
            state=row.state,
            reason=row.reason,
            submitted=row.submitted,
            updated=row.updated,
            kill_requested=row.kill_requested,
        )
        self.records[record.pilot_id] = record
        if record.fabric in self.in_process_fabrics:
            # Its fabric lived in the previous director process: it is gone.
            self.note(record, PilotState.ABORTED, now, reason=ADOPTED_IN_PROCESS)
        log.info(
            "site %s: following pilot %s (%s, %s) from the service",
            self.site,
            record.pilot_id,
            record.state,
            record.fabric_ref or "no reference",
        )

    def new_ids(self, ce: str, count: int, fabric: str) -> list[str]:
        """Ids for ``count`` new pilots of ``ce`` (records created Submitted by the service)."""
        return self.client.add_pilots(self.site, ce, count, fabric)

    # -- to the service --------------------------------------------------------------------------

    def add(self, pilot_id: str, ce: str, fabric: str, ref: str, now: float) -> PilotRecord:
        record = PilotRecord(
            pilot_id,
            self.site,
            ce,
            fabric,
            fabric_ref=ref,
            state=PilotState.SUBMITTED.value,
            submitted=now,
            updated=now,
        )
        self.records[pilot_id] = record
        self.outbox[pilot_id] = {"pilot_id": pilot_id, "state": record.state, "fabric_ref": ref}
        return record

    def note(
        self,
        record: PilotRecord,
        state: PilotState,
        now: float,
        reason: str | None = None,
        output: str | None = None,
    ) -> None:
        """Record a state (and why, and the output of an ended pilot) to send to the service."""
        record.state, record.updated = state.value, now
        update = self.outbox.setdefault(record.pilot_id, {"pilot_id": record.pilot_id})
        update["state"] = state.value
        if reason is not None:
            update["reason"] = reason
        if output is not None:
            update["output"] = output

    def refused(self, pilot_id: str, reason: str) -> None:
        """A pilot id the fabric would not take: Aborted at once, no local record kept."""
        self.outbox[pilot_id] = {
            "pilot_id": pilot_id,
            "state": PilotState.ABORTED.value,
            "reason": reason[:500],
        }

    def flush(self, errors: list[str]) -> None:
        """Send the outbox; what the service did not get stays for the next flush."""
        if not self.outbox:
            return
        updates = list(self.outbox.values())
        try:
            self.client.update_pilots([PilotUpdateItem(**update) for update in updates])
        except ServiceUnavailable as exc:
            errors.append(f"pilot updates not sent (kept for later): {exc.message}")
            return
        except DiracLikeError:
            updates = self._send_one_by_one(updates, errors)
        for update in updates:
            if self.outbox.get(update["pilot_id"]) is update:
                del self.outbox[update["pilot_id"]]

    def _send_one_by_one(
        self, updates: list[dict[str, Any]], errors: list[str]
    ) -> list[dict[str, Any]]:
        sent = []
        for update in updates:
            try:
                self.client.update_pilots([PilotUpdateItem(**update)])
            except ServiceUnavailable as exc:
                errors.append(f"pilot updates not sent (kept for later): {exc.message}")
                break
            except DiracLikeError as exc:
                log.error(
                    "site %s: the service refused the update of pilot %s, dropped: %s",
                    self.site,
                    update["pilot_id"],
                    exc.message,
                )
            sent.append(update)
        return sent

    # -- local view ------------------------------------------------------------------------------

    def alive(self) -> list[PilotRecord]:
        return [r for r in self.records.values() if not r.pilot_state.final]

    def counts(self, ce: str) -> tuple[int, int]:
        """(queued, running) pilots of ``ce``."""
        states = [r.pilot_state for r in self.records.values() if r.ce == ce]
        queued = sum(1 for state in states if state in (PilotState.SUBMITTED, PilotState.WAITING))
        return queued, states.count(PilotState.RUNNING)

    def prune(self) -> None:
        """Forget ended pilots whose final state the service has."""
        for pilot_id, record in list(self.records.items()):
            if record.pilot_state.final and pilot_id not in self.outbox:
                del self.records[pilot_id]
