"""Where the dashboard reads a job's output sandbox: where the central service keeps it.

A lone service on SQLite keeps sandboxes as files in its home
(:class:`dirac_like.sandbox.SandboxStore`); a pair on PostgreSQL keeps them in its database
(:class:`services.shared_sandboxes.PostgresSandboxStore`), so a dashboard beside either instance
serves what a pilot uploaded to whichever led. The dashboard only reads: the database's is
opened on a read-only session, for one download at a time (:func:`open_sandboxes` … ``close``).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from dirac_like.errors import StoreError
from dirac_like.sandbox import SandboxStore
from dirac_like.store.base import is_postgres_url
from dirac_like.store.postgres import redact


class FileSandboxes(SandboxStore):
    """The sandboxes in the service's home (nothing to close)."""

    def close(self) -> None:
        pass


def open_sandboxes(home: Path, store_url: str, max_bytes: int) -> Any:
    """The sandbox store of the service whose home and store these are (a ``SandboxStore``
    with ``close``); StoreError if its database cannot be reached."""
    if not is_postgres_url(store_url):
        return FileSandboxes(home / "sandboxes", max_bytes)
    return _database_sandboxes(store_url, max_bytes)


def _database_sandboxes(url: str, max_bytes: int) -> SandboxStore:
    import psycopg

    from ..shared_sandboxes import PostgresSandboxStore

    try:
        store = PostgresSandboxStore(url, max_bytes, time.time)  # no fence: it only reads
    except psycopg.Error as exc:
        raise StoreError(f"cannot connect to store {redact(url)}: {exc}") from None
    try:
        store.connection.execute("SET default_transaction_read_only = on")
    except psycopg.Error as exc:
        store.close()
        raise StoreError(f"cannot read the sandboxes in {redact(url)}: {exc}") from exc
    return store
