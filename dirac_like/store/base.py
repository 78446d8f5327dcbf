"""The store interface. SQLite is the embedded default; PostgreSQL can satisfy the same contract.

The contract (tests/integration/test_store_contract.py runs it against every implementation):
- ``commit(changes)`` writes a whole ChangeSet atomically: after a crash either all of it is
  visible to ``load`` or none of it. It returns only once the data is durable.
- ``load()`` returns exactly what was committed: every job with every field, task queues, sites,
  share overrides, usage and remembered replies.
- ``description(job_id)`` returns the job's attribute mapping as submitted (JobNotFound if none);
  ``history(job_id)`` its status history in commit order.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

from dirac_like.model import ChangeSet, HistoryEntry, LoadedState

SCHEMA_VERSION = 1


class Store(ABC):
    @abstractmethod
    def commit(self, changes: ChangeSet) -> None:
        """Write every change in one transaction; on failure raise StoreError, write nothing."""

    @abstractmethod
    def load(self) -> LoadedState:
        """Everything needed to rebuild the service's in-memory state."""

    @abstractmethod
    def description(self, job_id: int) -> dict[str, Any]:
        """The job's description as stored at submission (JobNotFound if unknown)."""

    @abstractmethod
    def history(self, job_id: int) -> list[HistoryEntry]:
        """The job's status history, oldest first (an empty list for an unknown job)."""

    @abstractmethod
    def schema_version(self) -> int:
        """The schema version of the open store."""

    @abstractmethod
    def close(self) -> None:
        """Release the connection; further calls are errors."""


def open_store(url: str, synchronous: str = "full") -> Store:
    """Open a store from a URL: ``sqlite:///path/to/file`` or a plain file path."""
    from dirac_like.store.sqlite import SqliteStore

    path = url.removeprefix("sqlite://") if url.startswith("sqlite://") else url
    return SqliteStore(Path(path), synchronous=synchronous)
