"""Sandboxes in PostgreSQL, where both instances of a pair reach them (issue 18, §3).

A lone service keeps its sandboxes as files in its home (:class:`dirac_like.sandbox.SandboxStore`).
A pair cannot: a pilot that uploaded its output sandbox to the old leader names it in its Done
report to the new one, which must find it (else the report is refused and the job runs again).
So a pair keeps them in its database, with the same interface and the same rules:

- ``ha_sandbox_parts (sha256, uploader, start, data)``: an archive in pieces as they were
  uploaded (one row per chunk; a stored archive's rows have uploader ''), read back by the
  pieces a download's range overlaps. The column's storage is EXTERNAL (archives are compressed
  already): PostgreSQL then reads a slice of a long value without the whole of it.
- ``ha_sandboxes (sha256, size, written)``: the archives complete, checked and stored;
- ``ha_sandbox_grants (sha256, holder)``: who may read and name an archive.

The tables are the store's (schema version 10, dirac_like/store/postgres_pair.py): a store opened
(migrated) first has them.

Each chunk is written in one transaction of its own connection (not the batch's: archives are
named by their sha256, so a chunk written by an instance that has just lost the lead harms
nothing), fenced by the leader's lock (:class:`LeaderFence`): a write of an instance that has
lost the lead is refused once the lock changed hands, so none lands on a schema its next leader
migrated. docs/high-availability.md has the figures that chose this over large objects or an SE.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg

from dirac_like.errors import InvalidArgument
from dirac_like.sandbox import SandboxError, SandboxNotFound, SandboxStore, checksum, is_sha256
from dirac_like.store.postgres_pair import LeaderFence, NotLeading

log = logging.getLogger(__name__)

STORED = ""  # the uploader of a stored archive's parts


class PostgresSandboxStore(SandboxStore):
    """:class:`SandboxStore`'s interface over tables of the pair's database."""

    def __init__(
        self, url: str, max_bytes: int, clock: Any, fence: LeaderFence | None = None
    ) -> None:
        """``fence``: a leader's (every write checks it still leads); None: not fenced."""
        if max_bytes <= 0:
            raise InvalidArgument("sandbox store max_bytes must be positive")
        self.max_bytes = max_bytes
        self.clock = clock
        self.fence = fence
        self.connection = psycopg.connect(url, autocommit=True, connect_timeout=10)

    def close(self) -> None:
        self.connection.close()

    def _execute(self, sql: str, parameters: Any = ()) -> psycopg.Cursor[Any]:
        try:
            return self.connection.execute(sql, parameters)
        except psycopg.Error as exc:  # a file error's kind: the service answers store_error
            raise OSError(f"sandbox database: {exc}") from None

    @contextmanager
    def _writing(self) -> Iterator[psycopg.Connection[Any]]:
        """A transaction to write in, fenced; its failure an OSError (as a file's would be)."""
        try:
            with self.connection.transaction():
                if self.fence is not None:
                    self.fence.check(self.connection)
                yield self.connection
        except (psycopg.Error, NotLeading) as exc:
            raise OSError(f"sandbox database: {exc}") from None

    # -- whole archives --------------------------------------------------------------------------

    def put(self, data: bytes) -> str:
        if len(data) > self.max_bytes:
            raise SandboxError(
                f"sandbox of {len(data)} bytes is over the limit of {self.max_bytes} bytes"
            )
        sha256 = checksum(data)
        if data:
            self.write_chunk(sha256, len(data), 0, data)
        return sha256

    def get(self, sha256: str) -> bytes:
        size = self._size(sha256)
        data, _ = self.read_chunk(sha256, 0, max(1, size))
        if checksum(data) != sha256:
            raise SandboxError(f"sandbox {sha256} is corrupt (checksum mismatch)")
        return data

    def has(self, sha256: str) -> bool:
        return is_sha256(sha256) and self._stored_size(sha256) is not None

    def _stored_size(self, sha256: str) -> int | None:
        row = self._execute("SELECT size FROM ha_sandboxes WHERE sha256 = %s", (sha256,))
        found = row.fetchone()
        return None if found is None else int(found[0])

    def _size(self, sha256: str) -> int:
        _check_name(sha256)
        size = self._stored_size(sha256)
        if size is None:
            raise SandboxNotFound(f"sandbox {sha256} not found")
        return size

    # -- in pieces -------------------------------------------------------------------------------

    def write_chunk(
        self,
        sha256: str,
        size: int,
        offset: int,
        data: bytes,
        max_bytes: int | None = None,
        uploader: str = "",
    ) -> int:
        _check_name(sha256)
        limit = self.max_bytes if max_bytes is None else min(max_bytes, self.max_bytes)
        if not 0 < size <= limit:
            raise SandboxError(f"sandbox of {size} bytes: the size must be 1 to {limit} bytes")
        if self.has(sha256) and (not uploader or self.granted(sha256, uploader)):
            return size
        who = _uploader_key(uploader)
        have = self._received(sha256, who)
        if not 0 <= offset <= have or offset + len(data) > size or not data:
            raise SandboxError(
                f"sandbox {sha256}: chunk of {len(data)} bytes at offset {offset} "
                f"does not follow the {have} bytes received (size {size})"
            )
        received = self._add_part(sha256, who, offset, data)
        if received == size:
            self._check_and_keep(sha256, who, size)
            if uploader:
                self.grant(sha256, uploader)
        return received

    def _received(self, sha256: str, who: str) -> int:
        row = self._execute(
            "SELECT coalesce(max(start + length(data)), 0) FROM ha_sandbox_parts "
            "WHERE sha256 = %s AND uploader = %s",
            (sha256, who),
        ).fetchone()
        return int(row[0]) if row else 0

    def _add_part(self, sha256: str, who: str, offset: int, data: bytes) -> int:
        """Write ``data`` at ``offset`` (what was after it is dropped: a retry writes again)."""
        with self._writing() as connection:
            connection.execute(
                "DELETE FROM ha_sandbox_parts WHERE sha256 = %s AND uploader = %s "
                "AND start + length(data) > %s",
                (sha256, who, offset),
            )
            connection.execute(
                "INSERT INTO ha_sandbox_parts VALUES (%s, %s, %s, %s, %s)",
                (sha256, who, offset, data, self.clock()),
            )
        return offset + len(data)

    def _check_and_keep(self, sha256: str, who: str, size: int) -> None:
        digest = hashlib.sha256()
        for (part,) in self._execute(
            "SELECT data FROM ha_sandbox_parts WHERE sha256 = %s AND uploader = %s ORDER BY start",
            (sha256, who),
        ).fetchall():
            digest.update(part)
        if digest.hexdigest() != sha256:
            with self._writing() as connection:
                connection.execute(
                    "DELETE FROM ha_sandbox_parts WHERE sha256 = %s AND uploader = %s",
                    (sha256, who),
                )
            raise SandboxError(
                f"sandbox {sha256}: the uploaded bytes have sha256 "
                f"{digest.hexdigest()}; upload it again"
            )
        with self._writing() as connection:
            self._keep(connection, sha256, who, size)

    def _keep(self, connection: psycopg.Connection[Any], sha256: str, who: str, size: int) -> None:
        """The checked upload becomes the stored archive (or goes, if one is stored already)."""
        taken = connection.execute(
            "INSERT INTO ha_sandboxes VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
            (sha256, size, self.clock()),
        ).rowcount
        if taken:
            connection.execute(
                "UPDATE ha_sandbox_parts SET uploader = %s WHERE sha256 = %s AND uploader = %s",
                (STORED, sha256, who),
            )
        else:
            connection.execute(
                "DELETE FROM ha_sandbox_parts WHERE sha256 = %s AND uploader = %s", (sha256, who)
            )

    def read_chunk(self, sha256: str, offset: int, length: int) -> tuple[bytes, int]:
        if offset < 0 or length < 1:
            raise SandboxError("offset must be >= 0 and length >= 1")
        size = self._size(sha256)
        end = min(size, offset + length)
        rows = self._execute(
            "SELECT start, substring(data FROM greatest(1, %s - start + 1)::int "
            "FOR (%s - greatest(start, %s))::int) FROM ha_sandbox_parts "
            "WHERE sha256 = %s AND uploader = %s AND start < %s AND start + length(data) > %s "
            "ORDER BY start",
            (offset, end, offset, sha256, STORED, end, offset),
        ).fetchall()
        return b"".join(bytes(piece) for _, piece in rows), size

    # -- holders ---------------------------------------------------------------------------------

    def grant(self, sha256: str, holder: str) -> None:
        with self._writing() as connection:
            connection.execute(
                "INSERT INTO ha_sandbox_grants VALUES (%s, %s) ON CONFLICT DO NOTHING",
                (sha256, holder),
            )

    def granted(self, sha256: str, holder: str) -> bool:
        if not self.has(sha256):
            return False
        row = self._execute(
            "SELECT 1 FROM ha_sandbox_grants WHERE sha256 = %s AND holder = %s", (sha256, holder)
        ).fetchone()
        return row is not None

    def collect(self, referenced: set[str], older_than: float, now: float) -> list[str]:
        cutoff = now - older_than
        old = [
            sha256
            for (sha256,) in self._execute(
                "SELECT sha256 FROM ha_sandboxes WHERE written < %s", (cutoff,)
            ).fetchall()
            if sha256 not in referenced
        ]
        with self._writing() as connection:
            connection.execute(
                "DELETE FROM ha_sandbox_parts WHERE uploader <> %s AND written < %s",
                (STORED, cutoff),
            )
            for table in ("ha_sandbox_parts", "ha_sandbox_grants", "ha_sandboxes"):
                connection.execute(f"DELETE FROM {table} WHERE sha256 = ANY(%s)", (old,))
        if old:
            log.info("collected %d unreferenced sandboxes", len(old))
        return sorted(old)


def _check_name(sha256: str) -> None:
    if not is_sha256(sha256):
        raise SandboxError(f"not a sandbox checksum: {sha256[:80]!r}")


def _uploader_key(uploader: str) -> str:
    """A partial upload's key: each uploader its own ('-' when none is named)."""
    return hashlib.sha256(uploader.encode()).hexdigest()[:16] if uploader else "-"
