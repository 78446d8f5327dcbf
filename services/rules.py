"""Replication rules (after Rucio): keep N Good replicas of every file below a folder on SEs
that carry given tags.

Reconciliation is level-triggered: every ``RECONCILE_SECONDS`` (and when asked) each rule looks
at what is, not at what happened: for every file below its folder it counts the Good replicas on
matching SEs and the transfers already on their way there, and asks for transfers to matching
writable SEs that lack a Good copy until the count is reached. A replica marked Bad (found
corrupted or missing on read) does not count, so it is made again from another replica by the
same pass. A rule's state: OK (every file has its copies), Replicating (transfers are on their
way), Stuck (copies missing and nothing on its way: no matching SE can take one, or the
transfers failed). An expired rule is removed.

Passes are incremental: a pass scans only the rules whose folder saw a change since the last one
(a file or replica registered or removed there, a replica reported Bad, a transfer of one of its
files ended: :meth:`RuleBook.touched`, which also brings the next pass forward to within
``TOUCH_DELAY``), and every rule once every ``FULL_PASS_SECONDS`` (SE status changes, expired
rules, anything not signalled). A quiet rule over millions of files costs nothing between full
passes; a busy one is still scanned whole.

Pure: reads the catalog and the transfer book, changes through them and the journal.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass

from dirac_like.errors import InvalidArgument, NotFound
from dirac_like.lfns import check_folder
from dirac_like.model import FileEntry, RuleRecord

from .catalog import GOOD, Catalog, StorageBoard
from .journal import Journal
from .transfer_book import FINAL, TransferBook

log = logging.getLogger(__name__)

RECONCILE_SECONDS = 30.0
FULL_PASS_SECONDS = 600.0  # every rule is scanned at least this often
TOUCH_DELAY = 2.0  # a change brings the next pass this close (changes in between coalesce)
MAX_FILES_PER_RULE = 1_000_000
OK, REPLICATING, STUCK = "OK", "Replicating", "Stuck"


@dataclass(frozen=True)
class RuleState:
    rule: RuleRecord
    state: str
    files: int
    satisfied: int  # files with all their copies
    replicating: int  # transfers on their way
    missing: int  # copies missing with nothing on its way


class RuleBook:
    def __init__(
        self,
        catalog: Catalog,
        board: StorageBoard,
        transfers: TransferBook,
        journal: Journal,
        loaded: list[RuleRecord],
    ) -> None:
        self.catalog = catalog
        self.board = board
        self.transfers = transfers
        self.journal = journal
        self.rules = {rule.rule_id: rule for rule in loaded}
        self.next_id = max(self.rules, default=0) + 1
        self.next_pass = 0.0
        self.next_full = 0.0  # the first pass scans every rule
        self.dirty: set[int] = set()  # rules to scan at the next pass
        self.states: dict[int, RuleState] = {}
        transfers.on_final = self.touched

    def add(
        self, folder: str, copies: int, tags: list[str], lifetime: float, owner: str, now: float
    ) -> RuleRecord:
        check_folder(folder, self.catalog.vos)
        if not 1 <= copies <= 10:
            raise InvalidArgument("copies must be 1 to 10")
        if lifetime < 0:
            raise InvalidArgument("lifetime must not be negative")
        wanted = sorted({tag.strip() for tag in tags if tag.strip()})
        if not wanted:
            raise InvalidArgument("a rule needs at least one SE tag")
        rule = RuleRecord(
            self.next_id,
            folder.rstrip("/") or "/",
            copies,
            ",".join(wanted),
            owner,
            now,
            now + lifetime if lifetime else 0.0,
        )
        self.next_id += 1
        self.rules[rule.rule_id] = rule
        self.journal.changes.rules[rule.rule_id] = rule
        self.dirty.add(rule.rule_id)
        self.next_pass = now  # reconcile at the next timer
        return rule

    def touched(self, lfn: str, now: float) -> None:
        """Something changed about ``lfn``: the rules over it are scanned at the next pass,
        which comes within TOUCH_DELAY."""
        for rule in self.rules.values():
            if lfn.startswith(rule.folder.rstrip("/") + "/") and rule.rule_id not in self.dirty:
                self.dirty.add(rule.rule_id)
                self.next_pass = min(self.next_pass, now + TOUCH_DELAY)

    def touched_all(self, now: float) -> None:
        """Every rule at the next pass (an SE changed status)."""
        self.dirty.update(self.rules)
        self.next_pass = min(self.next_pass, now + TOUCH_DELAY)

    def remove(self, rule_id: int) -> RuleRecord:
        rule = self.rules.pop(rule_id, None)
        if rule is None:
            raise NotFound(f"rule {rule_id} not found")
        self.journal.changes.rules[rule_id] = None
        self.states.pop(rule_id, None)
        return rule

    def matching_ses(self, rule: RuleRecord) -> list[str]:
        return sorted(
            name
            for name, element in self.board.elements.items()
            if rule.tag_set <= set(element.tags)
        )

    # -- reconciliation --------------------------------------------------------------------------

    def due(self, now: float) -> bool:
        return bool(self.rules) and now >= self.next_pass

    def reconcile(self, now: float) -> int:
        """One pass over the rules that changed (every rule when a full pass is due); returns
        the transfers asked for."""
        self.next_pass = now + RECONCILE_SECONDS
        if now >= self.next_full:
            self.next_full = now + FULL_PASS_SECONDS
            self.dirty.update(self.rules)
        for rule in [r for r in self.rules.values() if r.expires and r.expires <= now]:
            log.info("rule %d on %s expired", rule.rule_id, rule.folder)
            self.remove(rule.rule_id)
        scanned = [rule for rule in self.rules.values() if rule.rule_id in self.dirty]
        self.dirty.clear()
        if not scanned:
            return 0
        on_the_way = self._open_transfers()
        asked = 0
        for rule in scanned:
            state, made = self._reconcile_rule(rule, on_the_way, now)
            self.states[rule.rule_id] = state
            asked += made
        return asked

    def _open_transfers(self) -> dict[str, set[str]]:
        """lfn -> destinations of its transfers not yet Done or Failed."""
        open_by_lfn: dict[str, set[str]] = defaultdict(set)
        for record in self.transfers.open.values():
            if record.status not in FINAL:
                open_by_lfn[record.lfn].add(record.destination)
        return open_by_lfn

    def _reconcile_rule(
        self, rule: RuleRecord, on_the_way: dict[str, set[str]], now: float
    ) -> tuple[RuleState, int]:
        ses = self.matching_ses(rule)
        writable = [se for se in ses if self.board.writable(se)]
        _, entries = self._files(rule)
        replicas = self.catalog.replicas_of([entry.lfn for entry in entries])
        satisfied = replicating = missing = asked = 0
        for entry in entries:
            good = {
                se for se, status in replicas[entry.lfn].items() if status == GOOD and se in ses
            }
            coming = on_the_way[entry.lfn] & set(ses)
            short = rule.copies - len(good) - len(coming)
            replicating += len(coming)
            targets = [se for se in writable if se not in good and se not in coming][
                : max(short, 0)
            ]
            for se in targets:
                self.transfers._add(entry.lfn, se, 0, rule.owner, now)
                on_the_way[entry.lfn].add(se)
            asked += len(targets)
            replicating += len(targets)
            missing += max(short - len(targets), 0)
            satisfied += len(good) >= rule.copies
        state = OK if satisfied == len(entries) else REPLICATING if replicating else STUCK
        return RuleState(rule, state, len(entries), satisfied, replicating, missing), asked

    def _files(self, rule: RuleRecord) -> tuple[list[str], list[FileEntry]]:
        entries = self.catalog.stored.catalog_folder(rule.folder, MAX_FILES_PER_RULE)
        pending = self.journal.files_below(rule.folder.rstrip("/") + "/")
        by_lfn = {entry.lfn: entry for entry in entries}
        for lfn, entry in pending.items():
            if entry is None:
                by_lfn.pop(lfn, None)
            else:
                by_lfn[lfn] = entry
        return sorted(by_lfn), [by_lfn[lfn] for lfn in sorted(by_lfn)]
