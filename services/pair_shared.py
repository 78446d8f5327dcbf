"""What the instances of a pair share besides the store's state (docs/high-availability.md):
the identity registry (table ``ha_files``) and the audit log (table ``ha_audit``). The tables are
the store's (schema version 10, dirac_like/store/postgres_pair.py)."""

from __future__ import annotations

import contextlib
import logging
import socket
from pathlib import Path
from typing import Any

import psycopg

from dirac_like.identity import write_private
from dirac_like.registry import load_registry, registry_path
from dirac_like.store.postgres_pair import LeaderFence, NotLeading

from .audit import AuditLog

log = logging.getLogger(__name__)

REGISTRY_NAME = "identities"  # the identity registry's row in ha_files


class SharedRegistry:
    """The identity registry in table ``ha_files``, so that whoever leads admits the same keys
    (pilot tokens issued by one leader work with the next). The service keeps using its home's
    file; this copies it from the table when an instance takes the lead, and to the table
    (before the batch's commit, on the lock's session) whenever the leader changed it."""

    def __init__(self, home: Path) -> None:
        self.home = home

    def pull(self, connection: psycopg.Connection[Any], now: float) -> None:
        """Make the home's registry file the shared one (or share the home's if none is)."""
        row = connection.execute(
            "SELECT data FROM ha_files WHERE name = %s", (REGISTRY_NAME,)
        ).fetchone()
        if row is not None:
            write_private(registry_path(self.home), bytes(row[0]).decode("utf-8"))
            load_registry(self.home)  # refuse a broken shared registry now, not later
            return
        text = registry_path(self.home).read_text(encoding="utf-8")
        self.push(connection, text, now)

    @staticmethod
    def push(connection: psycopg.Connection[Any], text: str, now: float) -> None:
        connection.execute(
            """INSERT INTO ha_files VALUES (%s, %s, %s) ON CONFLICT (name)
               DO UPDATE SET data = EXCLUDED.data, updated = EXCLUDED.updated""",
            (REGISTRY_NAME, text.encode("utf-8"), now),
        )


class DatabaseAuditLog(AuditLog):
    """The audit log of a pair: each line in table ``ha_audit`` (one log whoever led), and in
    the instance's own file as well (it is there even when the database is not)."""

    def __init__(self, home: Path, url: str, fence: LeaderFence | None = None) -> None:
        super().__init__(home / "logs" / "audit.log")
        self.fence = fence  # a leader's: a line is written only while it leads
        self.connection: psycopg.Connection[Any] | None = None
        try:
            self.connection = psycopg.connect(url, autocommit=True, connect_timeout=10)
        except psycopg.Error as exc:
            log.error("audit log: the database cannot be written (%s): the file only", exc)

    def record(self, line: str, now: float) -> None:
        super().record(line, now)
        if self.connection is None:
            return
        try:
            with self.connection.transaction():
                if self.fence is not None:
                    self.fence.check(self.connection)
                self.connection.execute(
                    "INSERT INTO ha_audit (epoch, instance, line) VALUES (%s, %s, %s)",
                    (now, socket.gethostname(), line),
                )
        except (psycopg.Error, NotLeading) as exc:
            log.error("cannot write the audit log to the database: %s (entry: %s)", exc, line)

    def close(self) -> None:
        super().close()
        if self.connection is not None:
            with contextlib.suppress(psycopg.Error):
                self.connection.close()
