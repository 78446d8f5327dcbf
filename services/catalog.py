"""The replica catalog and the storage elements' status, as the central service keeps them.

The catalog is a namespace of LFNs (first folder: the VO), each with size, adler32, GUID, owner,
group and creation time, and its replicas: (LFN, SE, status), status ``Good`` or ``Bad`` (a copy
found corrupted or lost). It lives in the store, not in memory (it can hold millions of files):
reads go to the store with the batch's uncommitted changes first (the
:class:`~services.journal.Journal`), writes go into the batch's change set and are durable in the
same transaction as everything else the batch did, before any reply.

:class:`StorageBoard` holds the configured SEs and the status an admin (or an agent) gave each:
Active, Degraded (read only) or Banned (neither read nor written).

Every operation checks all of its input before it changes anything: a refused request leaves the
catalog as it was.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from dirac_like.checksums import normalize_adler32
from dirac_like.errors import InvalidArgument, LfnNotFound, StorageFull, UnknownStorageElement
from dirac_like.lfns import check_folder, check_lfn
from dirac_like.model import FileEntry, SEStatusRecord
from dirac_like.protocol import FileItem
from dirac_like.storage import SEStatus, StorageElementConfig

from .journal import Journal

log = logging.getLogger(__name__)

GOOD, BAD = "Good", "Bad"
REPLICA_STATUSES = (GOOD, BAD)


class StoredCatalog(Protocol):
    def catalog_files(self, lfns: list[str]) -> dict[str, FileEntry]: ...

    def catalog_replicas(self, lfns: list[str]) -> dict[str, dict[str, str]]: ...

    def catalog_folder(self, folder: str, limit: int) -> list[FileEntry]: ...

    def catalog_space(self, ses: list[str]) -> dict[str, int]: ...

    def catalog_lookup(self, lfns: list[str]) -> list[tuple[Any, ...]]: ...


# The monitoring policy's status of an SE (None: it has none), as an SE status.
PolicyStatus = Callable[[str], SEStatusRecord | None]


@dataclass(frozen=True)
class Registered:
    new_files: int
    new_replicas: int


class StorageBoard:
    """The SEs of the configuration, their current status, and the space used on those with a
    ``total_space`` (bytes of their replicas in the catalog: read from the store at start, then
    kept up to date as replicas are added and removed)."""

    def __init__(
        self,
        elements: dict[str, StorageElementConfig],
        journal: Journal,
        loaded: Iterable[SEStatusRecord] = (),
        used: dict[str, int] | None = None,
        policy: PolicyStatus | None = None,
    ) -> None:
        self.elements = elements
        self.journal = journal
        self.policy = policy
        self.records = {record.se: record for record in loaded if record.se in elements}
        self.used = {name: (used or {}).get(name, 0) for name in self.limited()}

    def limited(self) -> list[str]:
        """The SEs whose space is limited (a total_space is configured)."""
        return sorted(name for name, element in self.elements.items() if element.total_space)

    def free_space(self, name: str) -> int | None:
        """Bytes still free on ``name`` (None: not limited)."""
        total = self.element(name).total_space
        return total - self.used.get(name, 0) if total else None

    def check_room(self, name: str, size: int) -> None:
        """StorageFull unless ``size`` more bytes fit on ``name``."""
        free = self.free_space(name)
        if free is not None and size > free:
            total = self.elements[name].total_space
            raise StorageFull(
                f"SE {name} is full: {self.used.get(name, 0)} of {total} bytes used, "
                f"{size} more do not fit"
            )

    def account(self, name: str, delta: int) -> None:
        """A replica of ``delta`` bytes was added (or removed, negative) on ``name``."""
        if name in self.used:
            self.used[name] = max(0, self.used[name] + delta)

    def element(self, name: str) -> StorageElementConfig:
        element = self.elements.get(name)
        if element is None:
            known = ", ".join(sorted(self.elements)) or "none"
            raise UnknownStorageElement(f"unknown SE {name[:64]!r} (known: {known})")
        return element

    def status(self, name: str) -> SEStatusRecord:
        """The one status that governs ``name`` (reads, writes, transfers, matching): an
        operator's (``data se-status``) when it is not Active, else the monitoring policy's
        (``admin set-status --kind se``, or the monitoring agent from its SE probes), else
        Active."""
        self.element(name)
        own = self.records.get(name)
        if own is not None and own.status != SEStatus.ACTIVE:
            return own
        decided = self.policy(name) if self.policy is not None else None
        if decided is not None and decided.status != SEStatus.ACTIVE:
            return decided
        return own or SEStatusRecord(name, SEStatus.ACTIVE, "", 0.0)

    def set_status(self, name: str, status: str, reason: str, now: float) -> SEStatusRecord:
        self.element(name)
        try:
            value = SEStatus(status)
        except ValueError:
            raise InvalidArgument(
                f"SE status must be one of "
                f"{', '.join(s.value for s in SEStatus)}, not {status[:20]!r}"
            ) from None
        record = SEStatusRecord(name, value.value, reason[:256], now)
        self.records[name] = record
        self.journal.changes.se_status[name] = record
        log.info("SE %s is now %s (%s)", name, value.value, reason[:256])
        return record

    def readable(self, name: str) -> bool:
        element = self.elements.get(name)
        return element is not None and element.read and self.status(name).status != SEStatus.BANNED

    def writable(self, name: str) -> bool:
        element = self.elements.get(name)
        return element is not None and element.write and self.status(name).status == SEStatus.ACTIVE


class Catalog:
    def __init__(
        self,
        stored: StoredCatalog,
        journal: Journal,
        board: StorageBoard,
        vos: tuple[str, ...],
        max_bulk: int,
    ) -> None:
        self.stored = stored
        self.journal = journal
        self.board = board
        self.vos = vos
        self.max_bulk = max_bulk

    # -- reading ---------------------------------------------------------------------------------

    def files(self, lfns: list[str]) -> dict[str, FileEntry]:
        """The entries of those ``lfns`` in the catalog, uncommitted changes first."""
        found: dict[str, FileEntry] = {}
        ask = []
        for lfn in lfns:
            pending, entry = self.journal.catalog_file(lfn)
            if not pending:
                ask.append(lfn)
            elif entry is not None:
                found[lfn] = entry
        found.update(self.stored.catalog_files(ask) if ask else {})
        return found

    def file(self, lfn: str) -> FileEntry:
        entry = self.files([lfn]).get(lfn)
        if entry is None:
            raise LfnNotFound(f"{lfn[:200]} is not in the catalog")
        return entry

    def replicas(self, lfn: str) -> dict[str, str]:
        """se -> status of every replica of ``lfn``."""
        return self.replicas_of([lfn])[lfn]

    def replicas_of(self, lfns: list[str]) -> dict[str, dict[str, str]]:
        """lfn -> se -> status, for each of ``lfns`` (an empty map: none), pending changes
        applied."""
        stored = self.stored.catalog_replicas(lfns)
        found = {}
        for lfn in lfns:
            replicas = stored.get(lfn, {})
            for changes in self.journal.replica_changes(lfn):
                for se, status in changes.items():
                    if status is None:
                        replicas.pop(se, None)
                    else:
                        replicas[se] = status
            found[lfn] = replicas
        return found

    def good_replicas(self, lfn: str) -> list[str]:
        return sorted(se for se, status in self.replicas(lfn).items() if status == GOOD)

    def folder(self, folder: str, limit: int) -> tuple[list[str], list[FileEntry]]:
        """The subfolders and the files directly in ``folder``."""
        check_folder(folder, self.vos)
        prefix = folder.rstrip("/") + "/"
        entries = {entry.lfn: entry for entry in self.stored.catalog_folder(folder, limit)}
        for lfn, pending in self.journal.files_below(prefix).items():
            if pending is None:
                entries.pop(lfn, None)
            else:
                entries[lfn] = pending
        folders, files = set(), []
        for lfn in sorted(entries):
            head, _, rest = lfn[len(prefix) :].partition("/")
            if rest:
                folders.add(prefix + head)
            else:
                files.append(entries[lfn])
        return sorted(folders), files

    # -- writing ---------------------------------------------------------------------------------

    def register(self, items: list[FileItem], owner: str, group: str, now: float) -> Registered:
        """Add files (new LFNs) and replicas (on SEs); everything is checked first."""
        self._check_count(len(items))
        wanted = self._checked_items(items)
        known = self.files(sorted(wanted))
        for lfn, item in wanted.items():
            entry = known.get(lfn)
            if entry is not None and (entry.size, entry.adler32) != (item.size, item.adler32):
                raise InvalidArgument(
                    f"{lfn} is registered with size {entry.size} and adler32 "
                    f"{entry.adler32}, not {item.size} and {item.adler32}"
                )
        adding = [
            item
            for item in items
            if known.get(item.lfn) is None or item.se not in self.replicas(item.lfn)
        ]
        self._check_room(adding)
        new_files = 0
        for lfn, item in wanted.items():
            if lfn not in known:
                self.journal.changes.catalog_files[lfn] = FileEntry(
                    lfn, item.size, item.adler32, item.guid or str(uuid.uuid4()), owner, group, now
                )
                new_files += 1
        new_replicas = 0
        for item in items:
            if known.get(item.lfn) is None or self.replicas(item.lfn).get(item.se) != GOOD:
                new_replicas += 1
            self._set_replica(item.lfn, item.se, GOOD)
        for item in adding:
            self.board.account(item.se, item.size)
        return Registered(new_files, new_replicas)

    def _check_room(self, adding: list[FileItem]) -> None:
        """StorageFull (changing nothing) if the new replicas do not fit on their SEs."""
        wanted: dict[str, int] = {}
        for item in adding:
            wanted[item.se] = wanted.get(item.se, 0) + item.size
        for se, size in sorted(wanted.items()):
            self.board.check_room(se, size)

    def _check_count(self, count: int) -> None:
        if count == 0:
            raise InvalidArgument("no files given")
        if count > self.max_bulk:
            raise InvalidArgument(f"{count} files in one request (at most {self.max_bulk})")

    def _checked_items(self, items: list[FileItem]) -> dict[str, FileItem]:
        """Each item checked; one item per LFN (repeats must agree)."""
        wanted: dict[str, FileItem] = {}
        for item in items:
            check_lfn(item.lfn, self.vos)
            self.board.element(item.se)
            if self.board.status(item.se).status == SEStatus.BANNED:
                raise InvalidArgument(f"SE {item.se} is Banned: no replica is registered there")
            if item.size < 0:
                raise InvalidArgument(f"{item.lfn}: size must not be negative")
            checked = _with_adler32(item)
            first = wanted.setdefault(item.lfn, checked)
            if (first.size, first.adler32) != (checked.size, checked.adler32):
                raise InvalidArgument(f"{item.lfn} is given twice with different size/adler32")
        return wanted

    def _set_replica(self, lfn: str, se: str, status: str | None) -> None:
        self.journal.changes.catalog_replicas.setdefault(lfn, {})[se] = status

    def remove(self, lfns: list[str], se: str) -> tuple[int, list[str], list[str]]:
        """Forget the replica on ``se`` of each LFN (every replica and the file when ``se`` is
        empty; a file whose last replica goes is forgotten too). Returns (replicas removed,
        files removed, LFNs not in the catalog)."""
        self._check_count(len(lfns))
        for lfn in lfns:
            check_lfn(lfn, self.vos)
        if se:
            self.board.element(se)
        known = self.files(lfns)
        removed, gone = 0, []
        for lfn in dict.fromkeys(lfns):
            if lfn not in known:
                continue
            replicas = self.replicas(lfn)
            dropping = [se] if se else list(replicas)
            for name in dropping:
                if name in replicas:
                    self._set_replica(lfn, name, None)
                    self.board.account(name, -known[lfn].size)
                    removed += 1
            if set(dropping) >= set(replicas):
                self.journal.changes.catalog_files[lfn] = None
                gone.append(lfn)
        return removed, gone, [lfn for lfn in lfns if lfn not in known]

    def set_replica_status(self, lfn: str, se: str, status: str) -> None:
        if status not in REPLICA_STATUSES:
            raise InvalidArgument(f"replica status must be Good or Bad, not {status[:20]!r}")
        check_lfn(lfn, self.vos)
        if se not in self.replicas(lfn):
            raise LfnNotFound(f"{lfn[:200]} has no replica on SE {se[:64]}")
        self._set_replica(lfn, se, status)
        log.info("replica of %s on %s marked %s", lfn, se, status)


def _with_adler32(item: FileItem) -> FileItem:
    """The item with its adler32 written as 8 lowercase hex digits."""
    try:
        value = normalize_adler32(item.adler32)
    except ValueError:
        raise InvalidArgument(
            f"{item.lfn}: adler32 {item.adler32[:20]!r} is not 8 hex digits"
        ) from None
    return FileItem(item.lfn, item.size, value, item.se, item.guid)
