"""Grid files for users and jobs: put, get, replicate, remove, look up (DIRAC's DataManager).

:class:`DataManager` joins the central service's replica catalog (through a
:class:`~dirac_like.client.Client`) and the storage elements themselves
(:mod:`dirac_like.storage_access`). The SEs' configuration and status come from the service
(``se_list``), so every client sees the same SEs.

- ``put``: stream a local file to an SE (adler32 computed on the way), check the SE's own size and
  adler32 of the new file against the local ones, then register it; a registration refused
  removes the file again, so no unregistered copy is left behind.
- ``get``: try the Good replicas on readable SEs, this site's first; each is streamed into a
  temporary file and checked (size and adler32 against the catalog) before it is renamed into
  place. A corrupted replica is reported Bad (when the caller may) and the next one is tried.
- ``replicate``: transfer requests for the transfer agents (``dirac-like agent transfer``).
- ``remove``: forget the replicas in the catalog (where the service checks the caller may), then
  delete the physical copies.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from dirac_like.checksums import CHUNK_BYTES, Adler32, file_chunks
from dirac_like.client import Client
from dirac_like.errors import (
    ChecksumMismatch,
    DiracLikeError,
    FileMissing,
    Forbidden,
    InvalidArgument,
    LfnNotFound,
    StorageError,
    StorageFull,
    StorageUnavailable,
)
from dirac_like.lfns import check_lfn
from dirac_like.protocol import (
    CatalogFilesReply,
    FileItem,
    FileRow,
    FolderArgs,
    FolderReply,
    LfnsArgs,
    NoArgs,
    Op,
    RegisterArgs,
    RegisterReply,
    RemoveArgs,
    RemoveReply,
    ReplicaStatusArgs,
    SERow,
    TransferSubmitArgs,
    TransferSubmitReply,
)
from dirac_like.storage import SEStatus, StorageElementConfig
from dirac_like.storage_access import StorageAccess, open_storage, part_name

log = logging.getLogger(__name__)

Progress = Callable[[int], None]  # called with the bytes of each chunk as it passes


@dataclass(frozen=True)
class Copied:
    """Where a file went (or came from), and what was checked."""

    lfn: str
    se: str
    size: int
    adler32: str
    path: Path | None = None  # get: the local file


def se_config(row: SERow) -> StorageElementConfig:
    """The configuration of an SE as the service described it."""
    return StorageElementConfig(
        name=row.name,
        site=row.site,
        protocol=row.protocol,
        endpoint=row.endpoint,
        base_path=row.base_path,
        read=row.read,
        write=row.write,
        delete=row.delete,
        total_space=row.total_space,
        tags=tuple(row.tags),
        rules=dict(row.rules),
    )


def _counted(chunks: Iterable[bytes], progress: Progress | None) -> Iterator[bytes]:
    for chunk in chunks:
        if progress is not None:
            progress(len(chunk))
        yield chunk


class DataManager:
    def __init__(self, client: Client, site: str = "", chunk_bytes: int = CHUNK_BYTES) -> None:
        self.client = client
        self.site = site  # replicas at this site are read first
        self.chunk_bytes = chunk_bytes
        self._ses: dict[str, SERow] | None = None
        self._access: dict[str, StorageAccess] = {}

    # -- storage elements ------------------------------------------------------------------------

    def storage_elements(self) -> dict[str, SERow]:
        if self._ses is None:
            rows: list[SERow] = self.client.call(Op.SE_LIST, NoArgs())
            self._ses = {row.name: row for row in rows}
        return self._ses

    def refresh(self) -> None:
        """Ask the service for the SEs' status again at the next use (a long-lived agent)."""
        self._ses = None

    def row(self, se: str) -> SERow:
        row = self.storage_elements().get(se)
        if row is None:
            known = ", ".join(sorted(self.storage_elements())) or "none"
            raise InvalidArgument(f"unknown SE {se!r} (known: {known})")
        return row

    def access(self, se: str) -> StorageAccess:
        if se not in self._access:
            self._access[se] = open_storage(se_config(self.row(se)))
        return self._access[se]

    def writable(self, se: str) -> StorageAccess:
        row = self.row(se)
        if row.status != SEStatus.ACTIVE or not row.write:
            why = row.status if row.status != SEStatus.ACTIVE else "read only"
            raise StorageUnavailable(f"SE {se} takes no new files ({why} {row.reason})".strip())
        return self.access(se)

    def readable(self, se: str) -> bool:
        row = self.storage_elements().get(se)
        return row is not None and row.read and row.status != SEStatus.BANNED

    # -- the catalog -----------------------------------------------------------------------------

    def files(self, lfns: list[str]) -> CatalogFilesReply:
        reply: CatalogFilesReply = self.client.call(Op.CATALOG_FILES, LfnsArgs(lfns))
        return reply

    def stat(self, lfn: str) -> FileRow:
        reply = self.files([lfn])
        if not reply.files:
            raise LfnNotFound(f"{lfn} is not in the catalog")
        return reply.files[0]

    def listing(self, folder: str) -> FolderReply:
        reply: FolderReply = self.client.call(Op.CATALOG_LIST, FolderArgs(folder))
        return reply

    def register(self, items: list[FileItem], job_id: int = 0) -> RegisterReply:
        reply: RegisterReply = self.client.call(
            Op.CATALOG_REGISTER, RegisterArgs(items, job_id=job_id)
        )
        return reply

    # -- put -------------------------------------------------------------------------------------

    def put(
        self, local: Path, lfn: str, se: str, progress: Progress | None = None, job_id: int = 0
    ) -> Copied:
        """Copy ``local`` to ``se`` as ``lfn``, check it there, register it (as the output of
        job ``job_id``, for a pilot)."""
        check_lfn(lfn)
        if self.files([lfn]).files:
            raise InvalidArgument(
                f"{lfn} is already in the catalog: remove it first, or replicate it to another SE"
            )
        storage = self.writable(se)
        self._check_room(se, local.stat().st_size)
        chunks = file_chunks(local, self.chunk_bytes)
        written = storage.write(lfn, _counted(chunks, progress))
        try:
            self._check_copy(storage, lfn, written.size, written.adler32)
            self.register([FileItem(lfn, written.size, written.adler32, se)], job_id)
        except BaseException:
            with contextlib.suppress(DiracLikeError):
                storage.remove(lfn)
            raise
        log.info("put %s on %s (%d bytes, adler32 %s)", lfn, se, written.size, written.adler32)
        return Copied(lfn, se, written.size, written.adler32)

    def _check_room(self, se: str, size: int) -> None:
        """StorageFull, before any byte is written, if ``size`` bytes do not fit on ``se``
        (the service checks again when the file is registered)."""
        row = self.row(se)
        if row.total_space and row.used_space + size > row.total_space:
            raise StorageFull(
                f"SE {se} is full: {row.used_space} of {row.total_space} bytes used, "
                f"{size} more do not fit"
            )

    def _check_copy(self, storage: StorageAccess, lfn: str, size: int, adler32: str) -> None:
        """The SE's own size and adler32 of ``lfn`` are the expected ones."""
        there = storage.info(lfn)
        if (there.size, there.adler32) != (size, adler32):
            raise ChecksumMismatch(
                f"{lfn} on {storage.name}: size {there.size} adler32 "
                f"{there.adler32}, expected {size} and {adler32}"
            )

    # -- get -------------------------------------------------------------------------------------

    def sources(self, row: FileRow) -> list[str]:
        """Good replicas on readable SEs, this site's first."""
        good = [r.se for r in row.replicas if r.status == "Good" and self.readable(r.se)]
        return sorted(good, key=lambda se: (self.storage_elements()[se].site != self.site, se))

    def get(self, lfn: str, folder: Path, progress: Progress | None = None) -> Copied:
        """Download ``lfn`` into ``folder`` (under its own name), checked against the catalog."""
        row = self.stat(lfn)
        sources = self.sources(row)
        if not sources:
            raise StorageUnavailable(f"{lfn} has no Good replica on a readable SE")
        problems = []
        for se in sources:
            try:
                return self._get_from(row, se, folder, progress)
            except ChecksumMismatch as exc:
                problems.append(str(exc))
                self._report_bad(lfn, se, str(exc))
            except StorageError as exc:
                problems.append(str(exc))
        raise StorageError(f"no replica of {lfn} could be read: {'; '.join(problems)}")

    def _get_from(self, row: FileRow, se: str, folder: Path, progress: Progress | None) -> Copied:
        target = folder / row.lfn.rsplit("/", 1)[1]
        temporary = folder / part_name(target.name)
        folder.mkdir(parents=True, exist_ok=True)
        running = Adler32()
        try:
            with open(temporary, "wb") as file:
                for chunk in _counted(self.access(se).read(row.lfn, self.chunk_bytes), progress):
                    running.update(chunk)
                    file.write(chunk)
            if (running.size, running.hex) != (row.size, row.adler32):
                raise ChecksumMismatch(
                    f"replica of {row.lfn} on {se} has size {running.size} "
                    f"adler32 {running.hex}, the catalog says {row.size} "
                    f"and {row.adler32}"
                )
            temporary.replace(target)
        finally:
            with contextlib.suppress(FileNotFoundError):
                temporary.unlink()
        return Copied(row.lfn, se, running.size, running.hex, target)

    def _report_bad(self, lfn: str, se: str, reason: str) -> None:
        """Report a replica Bad in the catalog (any reader may: users, pilots, agents,
        operators); a replication rule then makes it again from another replica."""
        log.warning("%s", reason)
        with contextlib.suppress(Forbidden):
            self.client.call(
                Op.CATALOG_REPLICA_STATUS, ReplicaStatusArgs(lfn, se, "Bad", reason[:200])
            )

    # -- replicate and remove --------------------------------------------------------------------

    def replicate(
        self, lfns: list[str], destination: str, priority: int = 0, job_id: int = 0
    ) -> list[int]:
        self.row(destination)
        reply: TransferSubmitReply = self.client.call(
            Op.TRANSFER_SUBMIT, TransferSubmitArgs(lfns, destination, priority, job_id=job_id)
        )
        return reply.transfer_ids

    def remove(self, lfns: list[str], se: str = "") -> RemoveReply:
        """Forget the replicas (on ``se`` only, when given) in the catalog, then delete their
        physical copies. The catalog goes first because it is where the service checks that
        the caller may remove these files (the SEs themselves check nothing); a copy that cannot
        be deleted (its SE is down) is named in the error, left behind unregistered."""
        found = self.files(lfns)
        reply: RemoveReply = self.client.call(Op.CATALOG_REMOVE, RemoveArgs(lfns, se))
        problems = []
        for row in found.files:
            for replica in row.replicas:
                if se and replica.se != se:
                    continue
                try:
                    self.access(replica.se).remove(row.lfn)
                except FileMissing:
                    pass
                except StorageError as exc:
                    problems.append(str(exc))
        if problems:
            raise StorageError(
                f"{reply.removed_replicas} replica(s) removed from the catalog; "
                f"copies left on their SE: {'; '.join(problems)}"
            )
        return reply
