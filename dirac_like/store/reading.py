"""Reading a central service's store from another process, read-only: what ``dirac-like
accounting report`` and the web dashboard read, on SQLite or PostgreSQL alike.

:func:`open_reading` takes the store URL the service runs on (``store.url``: an SQLite file, or
``postgresql://...``) and gives a :class:`StoreReading`, whose :meth:`~StoreReading.read` is one
read-only transaction (one committed state) with a :class:`~dirac_like.store.database.Database`
that runs the SQLite store's dialect on either: on PostgreSQL through the store's own
:class:`~dirac_like.store.postgres.Translator` (the same translation as the service's statements:
no second copy of the SQL).

- SQLite: a connection per read, ``mode=ro`` and ``PRAGMA query_only`` (in WAL mode, readers
  never block the service's writer, nor it them).
- PostgreSQL: one session per thread, kept between reads, ``default_transaction_read_only`` on;
  a read is ``BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY`` … ``COMMIT``, or, for reads of
  one statement each (``read(snapshot=False)``: every read of the dashboard and the reports), no
  BEGIN or COMMIT at all: a statement is its own read-only transaction, one round trip to the
  server instead of three. A session that broke (the server restarted) is replaced before the
  next read; a read that finds its session dead (at its BEGIN, or its one statement) reconnects
  once and goes on (nothing was read yet, and nothing is written). ``sum()`` of integers comes
  back as an integer (PostgreSQL's numeric), as SQLite gives it.

Every failure is a :class:`~dirac_like.errors.StoreError` naming the store (a PostgreSQL URL
without its password) and why: a missing file, a server that does not answer, a schema too old.
"""

from __future__ import annotations

import sqlite3
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from dirac_like.errors import StoreError
from dirac_like.store.base import is_postgres_url, store_file
from dirac_like.store.database import Database

try:
    from psycopg.adapt import Loader
except ImportError:  # pragma: no cover - PostgresReading says how to install psycopg
    Loader = object  # type: ignore[assignment,misc]

BUSY_TIMEOUT_S = 5.0
BEGIN_READ = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"


class StoreReading(ABC):
    """Read-only transactions on a central service's store (thread-safe)."""

    name: str  # what messages name: the file, or the URL without its password

    @abstractmethod
    @contextmanager
    def read(self, snapshot: bool = True) -> Iterator[Database]:
        """One read-only transaction: every statement in it sees the same committed state
        (``snapshot=False``: each statement its own state, for reads of one statement: cheaper
        on PostgreSQL). StoreError if the store cannot be reached or a statement fails."""

    @abstractmethod
    def schema_version(self) -> int:
        """The store's schema version (StoreError if it cannot be read)."""

    def check(self, needed: int, what: str) -> None:
        """StoreError unless the store is reachable and at ``needed`` or later (``what``: what
        needs it, for the message)."""
        version = self.schema_version()
        if version < needed:
            raise StoreError(
                f"store {self.name} (schema {version}) has no {what} yet, or not its latest "
                "form: start the central service on it once"
            )

    @abstractmethod
    def close(self) -> None:
        """Release what is kept open (PostgreSQL sessions); reads may reopen."""


def open_reading(store: str | Path) -> StoreReading:
    """The reading of the store ``store`` names: a store URL (``sqlite:///file``, a plain file
    path, ``postgresql://...``) or a file's Path."""
    if isinstance(store, str) and is_postgres_url(store):
        return PostgresReading(store)
    return SqliteReading(store if isinstance(store, Path) else store_file(store))


class SqliteReading(StoreReading):
    """An SQLite store file, opened read-only for each read."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.name = str(self.path)

    @contextmanager
    def read(self, snapshot: bool = True) -> Iterator[Database]:
        if not self.path.exists():
            raise StoreError(f"no store {self.path}: is this the central service's home?")
        try:
            db = sqlite3.connect(
                f"{self.path.resolve().as_uri()}?mode=ro",
                uri=True,
                timeout=BUSY_TIMEOUT_S,
                isolation_level=None,
                check_same_thread=False,
            )
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open store {self.path} read-only: {exc}") from exc
        try:
            db.execute("PRAGMA query_only = 1")
            db.execute("BEGIN")
            yield db
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read store {self.path}: {exc}") from exc
        finally:
            db.close()

    def schema_version(self) -> int:
        with self.read() as db:
            return int(db.execute("PRAGMA user_version").fetchone()[0])

    def close(self) -> None:
        pass  # nothing is kept open between reads


class PostgresReading(StoreReading):
    """A PostgreSQL store, read on one read-only session per thread."""

    def __init__(self, url: str) -> None:
        from dirac_like.store.postgres import redact

        self.url = url
        self.name = redact(url)
        self._local = threading.local()
        self._lock = threading.Lock()
        self._opened: list[Any] = []  # every thread's Translator, to close

    @contextmanager
    def read(self, snapshot: bool = True) -> Iterator[Database]:
        translator = self._translator()  # StoreError if psycopg is missing or no server answers
        import psycopg

        if not snapshot:
            try:
                yield _EachStatementAlone(translator)
            except psycopg.Error as exc:
                raise StoreError(f"cannot read store {self.name}: {_first_line(exc)}") from exc
            return
        try:
            _begin(translator)
            translator.in_transaction = True  # no silent reconnection in the middle of a read
            try:
                yield translator
                translator.connection.execute("COMMIT")
            except BaseException:
                if not (translator.connection.closed or translator.connection.broken):
                    translator.connection.execute("ROLLBACK")
                raise
            finally:
                translator.in_transaction = False
        except psycopg.Error as exc:
            raise StoreError(f"cannot read store {self.name}: {_first_line(exc)}") from exc

    def schema_version(self) -> int:
        with self.read(snapshot=False) as db:
            (table,) = db.execute("SELECT to_regclass('schema_version')").fetchone()
            if table is None:
                return 0
            row = db.execute("SELECT version FROM schema_version").fetchone()
            return 0 if row is None else int(row[0])

    def _translator(self) -> Any:
        """This thread's Translator (connected on first use: StoreError if the server does
        not answer)."""
        translator = getattr(self._local, "translator", None)
        if translator is None:
            from dirac_like.store.postgres import Translator

            translator = Translator(self.url, on_connect=_read_only_session)
            self._local.translator = translator
            with self._lock:
                self._opened.append(translator)
        return translator

    def close(self) -> None:
        with self._lock:
            opened, self._opened = self._opened, []
        for translator in opened:
            translator.connection.close()
        self._local = threading.local()


class _EachStatementAlone:
    """The Translator's statements, each its own read-only transaction (the session is in
    autocommit mode); one found its session dead is run again on a new one."""

    def __init__(self, translator: Any) -> None:
        self.translator = translator

    def execute(self, sql: str, parameters: Any = ()) -> Any:
        import psycopg

        try:
            return self.translator.execute(sql, parameters)
        except psycopg.OperationalError:
            if not self.translator.connection.broken:
                raise
            return self.translator.execute(sql, parameters)  # reconnects first

    def executemany(self, sql: str, rows: Any) -> Any:
        raise StoreError("a store opened for reading runs no executemany")


def _begin(translator: Any) -> None:
    """BEGIN the read; on a session found dead (the server restarted since the last read), once
    more on a new one."""
    import psycopg

    try:
        translator.usable().execute(BEGIN_READ)
    except psycopg.OperationalError:
        if not translator.connection.broken:
            raise
        translator.usable().execute(BEGIN_READ)  # reconnects first (StoreError if it cannot)


def _read_only_session(connection: Any) -> None:
    """The reader's session writes nothing, and reads PostgreSQL's numeric (what ``sum`` of
    integers gives) as Python's int or float, as SQLite gives the same sums."""
    connection.execute("SET default_transaction_read_only = on")
    connection.adapters.register_loader("numeric", _NumericLoader)


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


class _NumericLoader(Loader):
    """numeric (text format) as int when whole, else float."""

    def load(self, data: Any) -> int | float:
        text = bytes(data)
        try:
            return int(text)
        except ValueError:
            return float(text)
