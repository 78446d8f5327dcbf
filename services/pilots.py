"""Pilot records in the central service: what each pilot is, where, in which state, which jobs.

Site directors create records (:meth:`PilotRegistry.add`: the service numbers them, so a pilot id
is unique across directors and restarts) and report what their fabric says
(:meth:`PilotRegistry.update`, with the pilot's output once it ended). A pilot's own requests
(:meth:`PilotRegistry.contact`) mark it Running and record the jobs matched to it; a pilot the
service never heard of (started by hand, ``dirac-like pilot`` without a director) gets a record on
its first request, and closes it when it says it stopped (:meth:`PilotRegistry.stopped`; so do
``local`` pilots). An admin can ask for a pilot to be killed (:meth:`PilotRegistry.kill`): the
pilot is told to stop and its director cancels it.

A pilot that reaches a final state gets its accounting record
(:class:`~dirac_like.accounting.PilotAccountingRecord`), handed to the store with that state.
Ended pilots are forgotten ``retention`` seconds after their last update. ``last_contact`` is kept
in memory only (written with the record's next change): it is for people, nothing depends on it.

Pure: no I/O, ``now`` passed in. Changes are collected and handed to the ChangeSet by
:meth:`take_changes`.
"""

from __future__ import annotations

from collections.abc import Iterable

from dirac_like.accounting import PilotAccountingRecord
from dirac_like.config import PilotsConfig
from dirac_like.errors import InvalidArgument, PilotNotFound
from dirac_like.model import ChangeSet, PilotRecord
from dirac_like.protocol import PilotUpdateItem
from dirac_like.states import PilotState, parse_pilot_state

MAX_NEW_PILOTS = 1000  # pilot ids handed out by one add()
MAX_REASON = 512
# Fabrics whose pilots close their own record when they stop ("": started by hand).
SELF_CLOSING_FABRICS = frozenset({"", "local"})


class PilotRegistry:
    def __init__(
        self, config: PilotsConfig, loaded: Iterable[PilotRecord] = (), next_number: int = 1
    ) -> None:
        self.config = config
        self.pilots: dict[str, PilotRecord] = {pilot.pilot_id: pilot for pilot in loaded}
        self.next_number = next_number
        self._dirty: dict[str, PilotRecord] = {}
        self._new_jobs: list[tuple[str, int]] = []
        self._outputs: dict[str, str] = {}
        self._forgotten: list[str] = []
        self._accounting: list[PilotAccountingRecord] = []
        self._number_changed = False

    # -- directors -------------------------------------------------------------------------------

    def add(self, site: str, ce: str, fabric: str, count: int, now: float) -> list[str]:
        """``count`` new Submitted records ``SITE.CE.N``; returns their ids."""
        if not 1 <= count <= MAX_NEW_PILOTS:
            raise InvalidArgument(f"count must be 1 to {MAX_NEW_PILOTS}, not {count}")
        ids = [f"{site}.{ce}.{self.next_number + n}" for n in range(count)]
        if len(ids[-1]) > 64:
            raise InvalidArgument(
                f"pilot id {ids[-1]!r} would be longer than 64 characters: "
                "use a shorter site or CE name"
            )
        self.next_number += count
        self._number_changed = True
        for pilot_id in ids:
            pilot = PilotRecord(pilot_id, site, ce, fabric, submitted=now, updated=now)
            self.pilots[pilot_id] = pilot
            self._dirty[pilot_id] = pilot
        return ids

    def update(self, updates: list[PilotUpdateItem], now: float) -> None:
        """Apply every update, or none: an unknown pilot or a state after an end is refused."""
        checked = [
            (self.get(update.pilot_id), self._checked_state(update), update) for update in updates
        ]
        for pilot, state, update in checked:
            ends = state.final and not PilotState(pilot.state).final
            if state is PilotState.RUNNING and not pilot.started:
                pilot.started = now
            pilot.state, pilot.updated = state.value, now
            if update.fabric_ref is not None:
                pilot.fabric_ref = update.fabric_ref[:256]
            if update.reason is not None:
                pilot.reason = update.reason[:MAX_REASON]
            if update.output is not None:
                self._outputs[pilot.pilot_id] = _tail(update.output, self.config.max_output_bytes)
            self._dirty[pilot.pilot_id] = pilot
            if ends:
                self._accounting.append(_accounting_record(pilot, now))

    def _checked_state(self, update: PilotUpdateItem) -> PilotState:
        pilot, state = self.pilots[update.pilot_id], parse_pilot_state(update.state)
        old = PilotState(pilot.state)
        if old.final and state is not old:
            raise InvalidArgument(
                f"pilot {pilot.pilot_id} already ended {old}: it cannot become {state}"
            )
        return state

    # -- pilots themselves -----------------------------------------------------------------------

    def contact(
        self, pilot_id: str, site: str, ce: str, now: float, credential: str = ""
    ) -> PilotRecord:
        """The pilot asked something: it runs. A pilot met for the first time gets a record.
        ``credential`` (the identity that asked, '' when unknown) is bound to the record if it
        has none yet (authorization checked it may act as this pilot)."""
        pilot = self.pilots.get(pilot_id)
        if pilot is None:
            pilot = PilotRecord(
                pilot_id,
                site,
                ce,
                state=PilotState.RUNNING.value,
                submitted=now,
                updated=now,
                credential=credential,
                started=now,
            )
            self.pilots[pilot_id] = pilot
            self._dirty[pilot_id] = pilot
        elif pilot.state in (PilotState.SUBMITTED, PilotState.WAITING):
            pilot.state, pilot.updated = PilotState.RUNNING.value, now
            pilot.started = pilot.started or now
            self._dirty[pilot_id] = pilot
        if credential and pilot.credential != credential:
            pilot.credential = credential
            self._dirty[pilot_id] = pilot
        pilot.last_contact = now
        return pilot

    def seen(self, pilot_id: str, now: float) -> None:
        """A heartbeat from a known pilot (an unknown one gets its record at its next match)."""
        pilot = self.pilots.get(pilot_id)
        if pilot is not None:
            pilot.last_contact = now

    def stopped(self, pilot_id: str, exit_code: int, now: float) -> bool:
        """The pilot says it stopped. Its record is closed (Done, or Failed for a non-zero exit
        code) if no director follows its process: started by hand (no fabric), or a ``local``
        process whose exit code is this one (a director following it reports the same state),
        unless an admin killed it (its director reports it Aborted).
        Returns whether the record was closed by this call."""
        pilot = self.get(pilot_id)
        if (
            PilotState(pilot.state).final
            or pilot.fabric not in SELF_CLOSING_FABRICS
            or (pilot.fabric and pilot.kill_requested)
        ):  # its director cancels it
            return False
        pilot.state = (PilotState.DONE if exit_code == 0 else PilotState.FAILED).value
        pilot.updated, pilot.last_contact = now, now
        pilot.reason = "Stopped" if exit_code == 0 else f"Stopped with exit code {exit_code}"
        self._dirty[pilot_id] = pilot
        self._accounting.append(_accounting_record(pilot, now))
        return True

    def note_job(self, pilot: PilotRecord, job_id: int) -> None:
        pilot.jobs.append(job_id)
        self._new_jobs.append((pilot.pilot_id, job_id))

    # -- admins ----------------------------------------------------------------------------------

    def get(self, pilot_id: str) -> PilotRecord:
        pilot = self.pilots.get(pilot_id)
        if pilot is None:
            raise PilotNotFound(f"pilot {pilot_id[:80]!r} not found")
        return pilot

    def kill(self, pilot_id: str, now: float) -> PilotRecord:
        """Mark a live pilot to be killed (its director cancels it, the pilot is told to stop)."""
        pilot = self.get(pilot_id)
        if PilotState(pilot.state).final:
            raise InvalidArgument(f"pilot {pilot_id} already ended {pilot.state}")
        pilot.kill_requested, pilot.updated = True, now
        pilot.reason = "Kill requested by an admin"
        self._dirty[pilot_id] = pilot
        return pilot

    def select(
        self, site: str | None = None, states: Iterable[str] = (), limit: int = 10000
    ) -> list[PilotRecord]:
        """Records of ``site`` (all sites if None) in ``states`` (all if empty), oldest first."""
        wanted = {parse_pilot_state(state).value for state in states}
        found = []
        for pilot in self.pilots.values():
            if (site is None or pilot.site == site) and (not wanted or pilot.state in wanted):
                found.append(pilot)
                if len(found) >= limit:
                    break
        return found

    # -- housekeeping ----------------------------------------------------------------------------

    def forget_ended(self, now: float) -> int:
        """Forget the pilots that ended more than ``retention`` seconds ago; returns how many."""
        cutoff = now - self.config.retention
        old = [
            pilot_id
            for pilot_id, pilot in self.pilots.items()
            if pilot.updated < cutoff and PilotState(pilot.state).final
        ]
        for pilot_id in old:
            del self.pilots[pilot_id]
            self._dirty.pop(pilot_id, None)
            self._outputs.pop(pilot_id, None)
        self._forgotten.extend(old)
        return len(old)

    def take_changes(self, changes: ChangeSet) -> None:
        """Move what changed since the last call into ``changes``."""
        changes.pilots.update(self._dirty)
        changes.pilot_jobs.extend(self._new_jobs)
        changes.pilot_outputs.update(self._outputs)
        changes.forget_pilots.extend(self._forgotten)
        changes.pilot_accounting.extend(self._accounting)
        self._accounting = []
        if self._number_changed:
            changes.next_pilot_number = self.next_number
        self._dirty, self._new_jobs, self._outputs, self._forgotten = {}, [], {}, []
        self._number_changed = False


def _tail(text: str, max_bytes: int) -> str:
    data = text.encode("utf-8", errors="replace")
    if len(data) <= max_bytes:
        return text
    return data[len(data) - max_bytes :].decode("utf-8", errors="ignore")


def _accounting_record(pilot: PilotRecord, now: float) -> PilotAccountingRecord:
    return PilotAccountingRecord(
        pilot_id=pilot.pilot_id,
        site=pilot.site,
        ce=pilot.ce,
        fabric=pilot.fabric,
        state=pilot.state,
        reason=pilot.reason,
        submitted=pilot.submitted,
        started=pilot.started,
        ended=now,
        jobs=len(pilot.jobs),
    )
