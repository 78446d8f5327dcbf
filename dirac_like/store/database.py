"""What the SQL stores' statements are run through."""

from __future__ import annotations

from typing import Any, Protocol


class Database(Protocol):
    """An sqlite3 connection, or the PostgreSQL store's translator (dirac_like/store/postgres.py),
    which runs SQLite's statements in PostgreSQL's dialect."""

    def execute(self, sql: str, parameters: Any = (), /) -> Any: ...

    def executemany(self, sql: str, rows: Any, /) -> Any: ...
