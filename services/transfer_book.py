"""Transfer requests: which replica to make where, leased to transfer agents like jobs to pilots.

A request (``transfer_submit``) asks for a Good replica of an LFN on a destination SE. Its states:
Waiting -> Assigned (leased to an agent, with a source chosen) -> Active (the agent is copying; each
report renews the lease) -> Done (the agent verified size and adler32 at the destination against
the catalog, and the replica is registered in the same batch) or back to Waiting for another
attempt (the agent failed, or its lease ran out: a killed agent), held off with a backoff that
doubles each time, from another source when there is one, until ``max_attempts``: then Failed
with the last reason. Every change is written to the store with the batch, so a request survives a
crash of the service or of the agent; a replica is registered only on a verified Done, and only
once (a repeated Done of the same attempt is answered from the reply cache or refused as stale).

Assignment honours priorities (higher first, then oldest) and the limits of copies at once per
link (source SE -> destination SE) and per SE (as source or destination).

Pure: no I/O, no clock (``now`` is passed in).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from dirac_like.accounting import TransferAccountingRecord, link_label
from dirac_like.config import TransfersConfig
from dirac_like.errors import IllegalTransition, InvalidArgument, NotFound, StaleAttempt
from dirac_like.lfns import check_lfn
from dirac_like.model import FileEntry, TransferRecord

from .catalog import GOOD, Catalog, StorageBoard
from .journal import Journal

log = logging.getLogger(__name__)

WAITING, ASSIGNED, ACTIVE, DONE, FAILED = "Waiting", "Assigned", "Active", "Done", "Failed"
HELD = (ASSIGNED, ACTIVE)
FINAL = (DONE, FAILED)
MAX_ASSIGN = 100


@dataclass(frozen=True)
class Assignment:
    transfer: TransferRecord
    file: FileEntry


class TransferBook:
    def __init__(
        self,
        config: TransfersConfig,
        catalog: Catalog,
        board: StorageBoard,
        journal: Journal,
        loaded: list[TransferRecord],
    ) -> None:
        self.config = config
        self.catalog = catalog
        self.board = board
        self.journal = journal
        self.records = {record.transfer_id: record for record in loaded}
        self.open = {i: r for i, r in self.records.items() if r.status not in FINAL}
        # leased ones (few: the per-SE limits bound them), for the loop's timers
        self.leased = {i: r for i, r in self.open.items() if r.status in HELD}
        self.next_id = max(self.records, default=0) + 1
        # when each leased request's attempt began (for its accounting record; not stored)
        self.lease_started: dict[int, float] = {}
        # for the metrics, since the service started: finished by (status, link), bytes by link
        self.finished: Counter[tuple[str, str]] = Counter()
        self.bytes_done: Counter[str] = Counter()
        # called with (lfn, now) when a request ends (the replication rules listen)
        self.on_final: Callable[[str, float], None] | None = None

    def _changed(self, record: TransferRecord, now: float, moved_bytes: int = 0) -> None:
        """Note the change for the store; a request that becomes final gets its accounting
        record in the same change set (so in the same transaction)."""
        if record.status in FINAL and record.transfer_id in self.open:
            link = link_label(record.source, record.destination)
            self.finished[record.status, link] += 1
            self.bytes_done[link] += moved_bytes
            self.journal.changes.transfer_accounting.append(
                TransferAccountingRecord(
                    record.transfer_id,
                    record.lfn,
                    record.owner,
                    record.source,
                    record.destination,
                    record.status,
                    record.reason,
                    moved_bytes,
                    record.attempt,
                    record.created,
                    self.lease_started.pop(record.transfer_id, 0.0),
                    now,
                )
            )
        record.updated = now
        self.journal.changes.transfers[record.transfer_id] = record
        if record.status in HELD:
            self.leased[record.transfer_id] = record
        else:
            self.leased.pop(record.transfer_id, None)
        if record.status in FINAL:
            self.open.pop(record.transfer_id, None)
            if self.on_final is not None:
                self.on_final(record.lfn, now)

    def get(self, transfer_id: int) -> TransferRecord:
        record = self.records.get(transfer_id)
        if record is None:
            raise NotFound(f"transfer {transfer_id} not found")
        return record

    # -- submission ------------------------------------------------------------------------------

    def submit(
        self, lfns: list[str], destination: str, priority: int, owner: str, now: float
    ) -> list[int]:
        """One request per LFN; every LFN must be in the catalog (else LfnNotFound naming it)."""
        if not lfns:
            raise InvalidArgument("no LFN given")
        if len(lfns) > self.catalog.max_bulk:
            raise InvalidArgument(
                f"{len(lfns)} LFNs in one request (at most {self.catalog.max_bulk})"
            )
        self.board.element(destination)
        if not self.board.writable(destination):
            raise InvalidArgument(
                f"SE {destination} takes no new replicas (status "
                f"{self.board.status(destination).status}, or read only)"
            )
        for lfn in lfns:
            check_lfn(lfn, self.catalog.vos)
            self.catalog.file(lfn)
        return [self._add(lfn, destination, priority, owner, now).transfer_id for lfn in lfns]

    def _add(
        self, lfn: str, destination: str, priority: int, owner: str, now: float
    ) -> TransferRecord:
        record = TransferRecord(
            self.next_id, lfn, destination, priority=priority, owner=owner, created=now
        )
        self.next_id += 1
        self.records[record.transfer_id] = record
        self.open[record.transfer_id] = record
        if self.catalog.replicas(lfn).get(destination) == GOOD:
            record.status, record.reason = DONE, f"already on {destination}"
        self._changed(record, now)
        return record

    # -- leasing to agents -----------------------------------------------------------------------

    def assign(self, agent: str, max_count: int, now: float) -> list[Assignment]:
        """Lease up to ``max_count`` due Waiting requests to ``agent``, within the limits."""
        if not 1 <= max_count <= MAX_ASSIGN:
            raise InvalidArgument(f"max_count must be 1 to {MAX_ASSIGN}")
        links, ses = self._load()
        due = sorted(
            (r for r in self.open.values() if r.status == WAITING and r.deadline <= now),
            key=lambda r: (-r.priority, r.transfer_id),
        )
        assigned: list[Assignment] = []
        for record in due:
            if len(assigned) >= max_count:
                break
            chosen = self._lease(record, agent, links, ses, now)
            if chosen is not None:
                assigned.append(chosen)
        return assigned

    def _load(self) -> tuple[Counter[tuple[str, str]], Counter[str]]:
        links: Counter[tuple[str, str]] = Counter()
        ses: Counter[str] = Counter()
        for record in self.leased.values():
            if record.status in HELD:
                links[record.source, record.destination] += 1
                ses[record.source] += 1
                ses[record.destination] += 1
        return links, ses

    def _lease(
        self,
        record: TransferRecord,
        agent: str,
        links: Counter[tuple[str, str]],
        ses: Counter[str],
        now: float,
    ) -> Assignment | None:
        entry = self.catalog.files([record.lfn]).get(record.lfn)
        if entry is None:
            self._fail(record, f"{record.lfn} is no longer in the catalog", now)
            return None
        if not self.board.writable(record.destination):
            self._hold(record, f"waits: SE {record.destination} takes no new replicas now", now)
            return None
        sources = self.sources(record)
        if not sources:
            if self.catalog.good_replicas(record.lfn):  # on SEs Banned now: wait for them
                self._hold(record, f"waits: no readable SE holds {record.lfn} now", now)
                return None
            self._fail(record, f"no Good replica of {record.lfn} on a readable SE", now)
            return None
        if ses[record.destination] >= self.config.per_se:
            return None
        free = self.board.free_space(record.destination)
        if free is not None and entry.size > free:
            record.attempt += 1  # an attempt that failed at once: retried, then Failed
            self.failed(
                record,
                f"SE {record.destination} is full: {free} bytes free, {entry.size} needed",
                now,
            )
            return None
        for source in sources:
            if (
                links[source, record.destination] < self.config.per_link
                and ses[source] < self.config.per_se
            ):
                links[source, record.destination] += 1
                ses[source] += 1
                ses[record.destination] += 1
                record.status, record.agent, record.source = ASSIGNED, agent, source
                record.attempt += 1
                record.deadline = now + self.config.lease
                self.lease_started[record.transfer_id] = now
                self._changed(record, now)
                log.info(
                    "transfer %d (%s -> %s) leased to agent %s, attempt %d",
                    record.transfer_id,
                    source,
                    record.destination,
                    agent,
                    record.attempt,
                )
                return Assignment(record, entry)
        return None

    def sources(self, record: TransferRecord) -> list[str]:
        """Readable SEs with a Good replica, the ones not yet tried first."""
        good = [
            se
            for se in self.catalog.good_replicas(record.lfn)
            if se != record.destination and self.board.readable(se)
        ]
        tried = set(filter(None, record.tried.split(",")))
        return [se for se in good if se not in tried] + [se for se in good if se in tried]

    # -- reports from agents ---------------------------------------------------------------------

    def held(self, transfer_id: int, attempt: int, agent: str) -> TransferRecord:
        record = self.get(transfer_id)
        if record.status not in HELD or record.attempt != attempt or record.agent != agent:
            raise StaleAttempt(
                f"transfer {transfer_id} attempt {attempt} is not held by agent "
                f"{agent[:64]} (it is {record.status}, attempt {record.attempt})"
            )
        return record

    def renew(self, record: TransferRecord, now: float) -> None:
        record.status = ACTIVE
        record.deadline = now + self.config.lease
        self._changed(record, now)

    def done(self, record: TransferRecord, size: int, adler32: str, now: float) -> None:
        """The agent verified the copy: check it against the catalog, register the replica."""
        entry = self.catalog.file(record.lfn)
        if (size, adler32) != (entry.size, entry.adler32):
            raise IllegalTransition(
                f"transfer {record.transfer_id}: the copy has size {size} and adler32 "
                f"{adler32[:16]}, the catalog says {entry.size} and {entry.adler32}: not Done"
            )
        if record.destination not in self.catalog.replicas(record.lfn):
            self.board.account(record.destination, entry.size)
        self.catalog._set_replica(record.lfn, record.destination, GOOD)
        record.status, record.reason = DONE, f"copied from {record.source}"
        self._changed(record, now, moved_bytes=size)
        log.info("transfer %d done: %s on %s", record.transfer_id, record.lfn, record.destination)

    def failed(self, record: TransferRecord, reason: str, now: float) -> None:
        """The attempt failed: try again later (from another source) or give up."""
        if record.source:
            tried = set(filter(None, record.tried.split(",")))
            record.tried = ",".join(sorted(tried | {record.source}))
        record.reason = reason[:500]
        if record.attempt >= self.config.max_attempts:
            self._fail(record, f"{record.attempt} attempts failed; last: {reason[:400]}", now)
            return
        pause = self.config.retry_backoff * 2 ** (record.attempt - 1)
        record.status, record.agent = WAITING, ""
        record.deadline = now + min(pause, self.config.max_backoff)
        self._changed(record, now)
        log.info(
            "transfer %d attempt %d failed (%s): waits %.0f s",
            record.transfer_id,
            record.attempt,
            reason[:200],
            pause,
        )

    def _hold(self, record: TransferRecord, reason: str, now: float) -> None:
        """The request stays Waiting (an SE it needs is Banned or read only), saying why."""
        if record.reason != reason:
            record.reason = reason
            self._changed(record, now)

    def _fail(self, record: TransferRecord, reason: str, now: float) -> None:
        record.status, record.reason, record.agent = FAILED, reason[:500], ""
        self._changed(record, now)
        log.warning("transfer %d failed: %s", record.transfer_id, reason)

    # -- timers ----------------------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        return min((r.deadline for r in self.leased.values()), default=None)

    def expire(self, now: float) -> int:
        """Leases that ran out (a killed or stuck agent): the attempt has failed."""
        expired = [r for r in self.leased.values() if r.deadline <= now]
        for record in expired:
            self.failed(record, f"agent {record.agent} held it past its lease", now)
        return len(expired)
