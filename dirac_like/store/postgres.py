"""The PostgreSQL store (psycopg 3): the SQLite store's contract on a database server.

Chosen by a store URL ``postgresql://user:password@host:port/database`` (``store.url`` in the
central service's configuration; docs/postgresql.md). SQLite stays the embedded default.

One connection in autocommit mode; every ``commit`` is one transaction (``BEGIN`` … ``COMMIT``)
holding the whole ChangeSet, the same group commit as SQLite's, sent pipelined (one round trip).
``load`` reads every table in one REPEATABLE READ READ ONLY transaction (one snapshot). With
synchronous=full the session's ``synchronous_commit`` is on: a commit is on the server's disk
when it returns; with normal it is off.

The tables, columns and statements are SQLite's (dirac_like/store/sqlite.py), written once in
SQLite's dialect: :func:`to_postgres` translates each statement the first time it runs (``?``
placeholders, ``INSERT OR REPLACE``/``OR IGNORE`` as ``ON CONFLICT`` on the table's primary key,
the column types) so the two stores cannot drift apart. The rows of one statement run as one
statement over arrays (:func:`bulk_statement`); large plain inserts (a bulk submission's jobs,
descriptions, history) go through ``COPY``. Booleans are stored as integers, as in SQLite.
Descriptions are read ahead and kept (they never change once stored).

The schema version is the one row of table ``schema_version``; the SQLite migrations, translated,
and PostgreSQL's own steps (the pair's tables, dirac_like/store/postgres_pair.py) take a database
from version n to n + 1, all in one transaction under an advisory lock (two services opening a new
database at once migrate it once). A migration also takes the pair's leader lock, in the
transaction: a store a central service leads is never migrated under it (the leader migrates it
itself, holding that lock: ``PostgresStore(..., migrate=False)``, then ``migrate()``). A database
written by newer code is refused (SchemaTooNew).

When the server goes away (restart, network) the statement under way fails with StoreError; the
next call reconnects (one attempt, ``CONNECT_TIMEOUT_S``), so a failed commit followed by the
central service's reopen, or a later read, finds the server again once it is back. A commit is
never retried here: its requests are retried by their clients with the same request ids.

The store is not thread-safe: use it from one thread at a time.
"""

from __future__ import annotations

import functools
import logging
import re
import sqlite3
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from dirac_like.errors import SchemaTooNew, StoreError, UnstorableValue
from dirac_like.model import ChangeSet, LoadedState
from dirac_like.store.base import SCHEMA_VERSION
from dirac_like.store.postgres_pair import (
    LEADER_LOCK,
    MIGRATION_LOCK,
    POSTGRES_ONLY_STEPS,
    TRY_LEADER_LOCK_IN_TRANSACTION,
)
from dirac_like.store.sqlite import (
    MIGRATIONS,
    SYNCHRONOUS_MODES,
    StatementStore,
    load_state,
    write_changes,
)

try:
    import psycopg
    from psycopg.adapt import Dumper
except ImportError:  # pragma: no cover - the message below says how to install it
    psycopg = None  # type: ignore[assignment]
    Dumper = object  # type: ignore[assignment,misc]

log = logging.getLogger(__name__)

OnConnect = Callable[["psycopg.Connection[Any]"], None]

CONNECT_TIMEOUT_S = 10
INT8_OID = 20  # PostgreSQL's type id of bigint (psycopg.postgres.types["int8"].oid)
# rows: fewer go through a pipelined executemany (in the batch's one round trip); COPY leaves the
# pipeline and costs round trips of its own, and pays off for large inserts only
COPY_THRESHOLD = 100
# A description read from the server brings the next ones with it (a task queue's jobs have
# consecutive ids and are matched in id order: a match need not wait for the server each time);
# descriptions never change once stored, so the ones read stay valid.
DESCRIPTIONS_READ_AHEAD = 256
DESCRIPTIONS_KEPT = 65_536
SELECT_DESCRIPTIONS_FROM = """SELECT job_id, description FROM descriptions WHERE job_id >= %s
    ORDER BY job_id LIMIT %s"""
# synchronous=full: a commit is on the server's disk when it returns; normal: it may be lost if
# the server (not the service) crashes right after (PostgreSQL's synchronous_commit).
SYNCHRONOUS_COMMIT = {"full": "on", "normal": "off"}
INSTALL_HINT = "pip install 'dirac-like[postgres]' (psycopg 3)"

# SQLite column types as PostgreSQL's: 64-bit integers and floats, bytes.
_TYPES = (
    (re.compile(r"\b(\w+) INTEGER PRIMARY KEY\b"), r"\1 BIGINT PRIMARY KEY"),
    (re.compile(r"\bINTEGER\b"), "BIGINT"),
    (re.compile(r"\bREAL\b"), "DOUBLE PRECISION"),
    (re.compile(r"\bBLOB\b"), "BYTEA"),
    (re.compile(r"\s*WITHOUT ROWID"), ""),
)
# Rows of these tables are inserted without their id: SQLite numbers them (rowid), PostgreSQL
# from an identity column.
_NUMBERED = {"history": "id", "probe_results": "id", "shared_history": "id"}
_INSERT = re.compile(
    r"^INSERT(?: OR (?P<conflict>REPLACE|IGNORE))? INTO (?P<table>\w+)\s*(?P<columns>\([^)]*\))?"
    r"\s*(?P<rest>VALUES.*|SELECT.*)$",
    re.DOTALL,
)
# (the value may hold calls and brackets, one level deep: CAST((a - b) / c AS INTEGER))
_CAST_TO_INTEGER = re.compile(r"CAST\((?P<value>(?:[^()]|\([^()]*\))*) AS INTEGER\)")


def migrations() -> list[list[str]]:
    """SQLite's MIGRATIONS in PostgreSQL's dialect, each step followed by PostgreSQL's own
    statements of that step: ``[n]`` takes a database from n to n + 1."""
    translated = []
    for number, statements in enumerate(MIGRATIONS):
        step = []
        for statement in statements:
            for pattern, replacement in _TYPES:
                statement = pattern.sub(replacement, statement)
            for table, column in _NUMBERED.items():
                statement = statement.replace(
                    f"CREATE TABLE {table} (\n            {column} BIGINT PRIMARY KEY",
                    f"CREATE TABLE {table} (\n            {column} BIGINT GENERATED BY DEFAULT "
                    "AS IDENTITY PRIMARY KEY",
                )
            if statement.lstrip().startswith("INSERT"):  # data moved by a migration
                statement = to_postgres(statement)
            step.append(statement)
        translated.append([*step, *POSTGRES_ONLY_STEPS.get(number, ())])
    return translated


@dataclass(frozen=True)
class Table:
    columns: list[str]  # in order
    key: list[str]  # the primary key
    types: dict[str, str]  # column -> its SQLite type (INTEGER, REAL, TEXT, BLOB)


@functools.cache
def _tables() -> dict[str, Table]:
    """Every table of the SQLite schema, from that schema itself."""
    db = sqlite3.connect(":memory:")
    try:
        for statements in MIGRATIONS:
            for statement in statements:
                db.execute(statement)
        names = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        tables = {}
        for name in names:
            info = db.execute(f"PRAGMA table_info({name})").fetchall()
            key = [row[1] for row in sorted(info, key=lambda row: row[5]) if row[5]]
            tables[name] = Table([row[1] for row in info], key, {row[1]: row[2] for row in info})
        return tables
    finally:
        db.close()


@functools.cache
def to_postgres(sql: str) -> str:
    """One of the SQLite store's statements in PostgreSQL's dialect."""
    sql = sql.replace("%", "%%")
    match = _INSERT.match(sql.strip())
    if match and match["conflict"]:
        table = match["table"]
        columns, key = _insert_columns(match), _tables()[table].key
        head = f"INSERT INTO {table} {match['columns'] or ''} {match['rest']}"
        if match["conflict"] == "IGNORE":
            sql = f"{head} ON CONFLICT DO NOTHING"
        else:
            updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in columns if c not in key)
            sql = f"{head} ON CONFLICT ({', '.join(key)}) DO UPDATE SET {updates}"
    # SQLite's CAST to INTEGER truncates; PostgreSQL's rounds.
    sql = _CAST_TO_INTEGER.sub(lambda m: f"floor({m['value']})", sql)
    # the totals added ON CONFLICT name the stored row (PostgreSQL: by its table)
    if match and re.search(r"ON CONFLICT .* DO UPDATE SET (\w+) = \1 \+", sql, re.DOTALL):
        table = match["table"]
        sql = re.sub(r"= (\w+) \+ excluded", rf"= {table}.\1 + excluded", sql)
    return sql.replace("?", "%s")


def _insert_columns(match: re.Match[str]) -> list[str]:
    """The columns an INSERT matched by _INSERT names (all of its table's if it names none)."""
    if match["columns"]:
        return [name.strip() for name in match["columns"].strip("()").split(",")]
    return _tables()[match["table"]].columns


@dataclass(frozen=True)
class BulkStatement:
    """One statement doing what ``executemany(sql, rows)`` does, over one array per column
    (``unnest``): one statement to plan and run instead of one per row."""

    sql: str
    types: tuple[str, ...]  # the SQLite type of each position in a row
    key: tuple[int, ...]  # the positions of the table's key: rows repeating one go row by row
    every_row_counts: bool = False  # the statement fails unless every row changes one row

    def arrays(self, rows: list[Any]) -> list[list[Any]] | None:
        """The rows as arrays, one per column; None if they do not fit (a key repeated, a value
        not of its column's type: then the rows go one by one, as in SQLite)."""
        if self.key and len({tuple(row[i] for i in self.key) for row in rows}) < len(rows):
            return None
        arrays: list[list[Any]] = []
        for position, kind in enumerate(self.types):
            normal = _NORMAL[kind]
            try:
                arrays.append([normal(row[position]) for row in rows])
            except _Mixed:
                return None
        return arrays


class _Mixed(Exception):
    """A value that does not fit one array of its column's type."""


def _normal(accepts: tuple[type, ...], convert: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def normal(value: Any) -> Any:
        if value is None:
            return None
        if not isinstance(value, accepts):
            raise _Mixed
        return convert(value)

    return normal


# Values as one array of each SQLite column type holds them (booleans as integers, integers in a
# REAL column as floats, str enumerations as their text: what SQLite stores).
_NORMAL = {
    "INTEGER": _normal((int,), int),
    "REAL": _normal((float, int), float),
    "TEXT": _normal((str,), str.__str__),
    "BLOB": _normal((bytes,), bytes),
}
_COPY_TYPES = {"INTEGER": "int8", "REAL": "float8", "TEXT": "text", "BLOB": "bytea"}
_ARRAY_TYPES = {"INTEGER": "bigint[]", "REAL": "float8[]", "TEXT": "text[]", "BLOB": "bytea[]"}
_UPDATE = re.compile(r"^UPDATE (?P<table>\w+) SET (?P<sets>.*) WHERE (?P<key>\w+) = \?$", re.DOTALL)
_VALUES = re.compile(r"VALUES \((?:%s,\s*)*%s\)")


def _unnest(table: Table, columns: list[str]) -> str:
    arrays = ", ".join(f"%b::{_ARRAY_TYPES[table.types[column]]}" for column in columns)
    return f"unnest({arrays})"


@functools.cache
def bulk_statement(sql: str) -> BulkStatement | None:
    """The BulkStatement of an ``INSERT … VALUES`` or an ``UPDATE … WHERE key = ?`` of the
    SQLite store, None for any other."""
    sql = sql.strip()
    update = _UPDATE.match(sql)
    if update:
        name, key = update["table"], update["key"]
        sets = [part.split("=") for part in update["sets"].split(",")]
        if any(len(part) != 2 or part[1].strip() != "?" for part in sets):
            return None
        table = _tables()[name]
        columns = [column.strip() for column, _ in sets] + [key]
        assignments = ", ".join(f"{column} = v.{column}" for column in columns[:-1])
        # Every row must update one: else the statement fails, naming the missing keys (and the
        # batch is undone), so its row count is known without waiting for the server's reply.
        bulk = f"""WITH v AS (SELECT * FROM {_unnest(table, columns)} AS v({", ".join(columns)})),
            u AS (UPDATE {name} SET {assignments} FROM v WHERE {name}.{key} = v.{key}
                  RETURNING {name}.{key})
            SELECT (CASE WHEN count(u.{key}) = count(*) THEN '0'
                ELSE 'rows not in table {name}: '
                    || string_agg(v.{key}::text, ', ') FILTER (WHERE u.{key} IS NULL) END)::int
            FROM v LEFT JOIN u ON u.{key} = v.{key}"""
        types = tuple(table.types[column] for column in columns)
        return BulkStatement(bulk, types, (len(columns) - 1,), every_row_counts=True)
    insert = _INSERT.match(sql)
    translated = to_postgres(sql)
    if not insert or not insert["rest"].startswith("VALUES") or not _VALUES.search(translated):
        return None
    table, columns = _tables()[insert["table"]], _insert_columns(insert)
    names = ", ".join(columns)  # in the arrays' order: history keeps commit order
    rows = (
        f"SELECT {names} FROM {_unnest(table, columns)} WITH ORDINALITY AS v({names}, n) ORDER BY n"
    )
    bulk = _VALUES.sub(rows, translated, count=1)
    key = tuple(columns.index(c) for c in table.key) if set(table.key) <= set(columns) else ()
    return BulkStatement(bulk, tuple(table.types[column] for column in columns), key)


@functools.cache
def copy_statement(sql: str) -> str | None:
    """``COPY … FROM STDIN`` doing what a plain ``INSERT … VALUES`` of ``sql`` does, or None."""
    match = _INSERT.match(sql.strip())
    if not match or match["conflict"] or not re.fullmatch(r"VALUES \([?, ]*\)", match["rest"]):
        return None
    return f"COPY {match['table']} {match['columns'] or ''} FROM STDIN"


class _BoolAsInt(Dumper):
    """Python booleans as integers 0/1, as the SQLite store keeps them."""

    oid = INT8_OID

    def dump(self, obj: bool) -> bytes:
        return b"1" if obj else b"0"


class Translator:
    """Runs the SQLite store's statements on a psycopg connection, in PostgreSQL's dialect (the
    ``Database`` the shared write and read functions of dirac_like/store/sqlite.py expect).

    A connection that broke (the server restarted, the network failed) is replaced by a new one
    before the next statement that does not belong to a transaction under way.

    A pipelined transaction (every commit) sends its statements without waiting for each reply:
    one round trip for the whole batch, the replies read at the end (or when a result is needed:
    a row count, a fetch). COPY cannot run in a pipeline: the pipeline is left for it (the
    statements queued so far are synced first) and entered again after."""

    def __init__(
        self, url: str, synchronous_commit: str = "on", on_connect: OnConnect | None = None
    ) -> None:
        self.url = url
        self.synchronous_commit = synchronous_commit
        self.on_connect = on_connect
        self.connection = self.connect()
        self.in_transaction = False
        self._pipeline: psycopg.Pipeline | None = None
        self._in_pipeline = ExitStack()  # leaving it leaves pipeline mode

    def execute(self, sql: str, parameters: Any = ()) -> psycopg.Cursor[Any]:
        return self.usable().execute(to_postgres(sql), parameters)

    def executemany(self, sql: str, rows: Any) -> Counted:
        rows = list(rows)
        copy = copy_statement(sql)
        cursor = self.usable().cursor()
        if copy is not None and len(rows) >= COPY_THRESHOLD:
            pipelined = self._pipeline is not None
            self._leave_pipeline()
            self._copy(cursor, copy, sql, rows)
            if pipelined:
                self._enter_pipeline()
            return Counted(cursor, None)
        bulk = bulk_statement(sql) if rows else None
        arrays = bulk.arrays(rows) if bulk is not None else None
        if bulk is not None and arrays is not None:
            cursor.execute(bulk.sql, arrays)
            if bulk.every_row_counts:
                return Counted(cursor, None, known=len(rows))
        else:
            cursor.executemany(to_postgres(sql), rows)
        return Counted(cursor, self._pipeline)

    @staticmethod
    def _copy(cursor: psycopg.Cursor[Any], copy: str, sql: str, rows: list[Any]) -> None:
        """COPY the rows in: binary (no text to escape and parse) when every value fits its
        column's type, else as text (which then fails or converts, as an INSERT would)."""
        bulk = bulk_statement(sql)
        arrays = bulk.arrays(rows) if bulk is not None else None
        if bulk is not None and arrays is not None:
            with cursor.copy(f"{copy} (FORMAT BINARY)") as writing:
                writing.set_types([_COPY_TYPES[kind] for kind in bulk.types])
                for row in zip(*arrays, strict=True):
                    writing.write_row(row)
            return
        with cursor.copy(copy) as writing:
            for row in rows:
                writing.write_row(row)

    def _enter_pipeline(self) -> None:
        self._pipeline = self._in_pipeline.enter_context(self.connection.pipeline())

    def _leave_pipeline(self, error: BaseException | None = None) -> None:
        """Leave pipeline mode: sync, raising the first error of a queued statement (unless
        leaving because of ``error``)."""
        if self._pipeline is not None:
            self._pipeline = None
            self._in_pipeline.__exit__(type(error) if error else None, error, None)

    def usable(self) -> psycopg.Connection[Any]:
        if self.connection.broken and not self.in_transaction:
            log.warning("store %s: connection lost, reconnecting", redact(self.url))
            self.connection = self.connect()
        return self.connection

    def connect(self) -> psycopg.Connection[Any]:
        connection = connect(self.url)
        try:
            connection.execute(f"SET synchronous_commit = {self.synchronous_commit}")
            if self.on_connect is not None:
                self.on_connect(connection)
        except psycopg.Error as exc:
            connection.close()
            raise StoreError(f"cannot set up store {redact(self.url)}: {exc}") from exc
        except BaseException:
            connection.close()
            raise
        return connection

    @contextmanager
    def transaction(self, begin: str, pipelined: bool = False) -> Iterator[Translator]:
        """``begin`` … COMMIT, or ROLLBACK if anything (COMMIT included) raises."""
        connection = self.usable()
        self.in_transaction = True
        try:
            if pipelined:
                self._enter_pipeline()
            connection.execute(begin)
            yield self
            connection.execute("COMMIT")
            self._leave_pipeline()
        except BaseException as exc:
            self._leave_pipeline(exc)
            idle = psycopg.pq.TransactionStatus.IDLE
            alive = not (connection.closed or connection.broken)
            if alive and connection.info.transaction_status != idle:
                connection.execute("ROLLBACK")
            raise
        finally:
            self.in_transaction = False


class Counted:
    """A cursor of ``executemany`` whose row count, in a pipeline, is read once its replies are
    in (the pipeline is synced on demand), unless it is ``known`` (a statement that fails
    unless every row counts: no need to wait)."""

    def __init__(
        self,
        cursor: psycopg.Cursor[Any],
        pipeline: psycopg.Pipeline | None,
        known: int | None = None,
    ) -> None:
        self.cursor = cursor
        self.pipeline = pipeline
        self.known = known

    @property
    def rowcount(self) -> int:
        if self.known is not None:
            return self.known
        if self.pipeline is not None:
            self.pipeline.sync()
        return self.cursor.rowcount


def connect(url: str) -> psycopg.Connection[Any]:
    """An autocommit connection to ``url``, booleans kept as integers (StoreError if none)."""
    if psycopg is None:
        raise StoreError(
            f"store {redact(url)} is PostgreSQL but psycopg is missing: {INSTALL_HINT}"
        )
    try:
        connection = psycopg.connect(url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S)
    except psycopg.Error as exc:
        raise StoreError(f"cannot connect to store {redact(url)}: {exc}") from exc
    connection.adapters.register_dumper(bool, _BoolAsInt)
    return connection


def redact(url: str) -> str:
    """The URL without its password (for messages and logs)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def code_schema_version() -> int:
    """The schema version this code reads and writes."""
    return SCHEMA_VERSION


class PostgresStore(StatementStore):
    _db: Translator
    db_errors: tuple[type[Exception], ...] = (psycopg.Error,) if psycopg else ()

    def __init__(
        self,
        url: str,
        synchronous: str = "full",
        on_connect: OnConnect | None = None,
        migrate: bool = True,
    ) -> None:
        """``on_connect(connection)``, if given, runs on every new session (the first and each
        reconnection) before it is used; raising (StoreError) refuses that session, so nothing
        is committed on it: a hook for a session-bound lock, e.g. an advisory lock fencing a
        leader (docs/high-availability.md). ``migrate=False`` opens the store as it is, at
        whatever version (a standby of a pair: its leader migrates, :meth:`migrate`); nothing
        but ``schema_version`` and ``migrate`` may be used until it is at ``code_version``."""
        if synchronous not in SYNCHRONOUS_MODES:
            raise ValueError(f"synchronous must be one of {SYNCHRONOUS_MODES}, not {synchronous!r}")
        self.url = url
        self.path = redact(url)  # what messages name (the SQLite store names its file)
        self._db = Translator(url, SYNCHRONOUS_COMMIT[synchronous], on_connect)
        self._descriptions: OrderedDict[int, bytes] = OrderedDict()  # read ahead, oldest first
        try:
            if migrate:
                self.migrate()
            stored = self.schema_version()
        except BaseException:
            self._db.connection.close()
            raise
        log.info("opened store %s (schema %d, this code's %d)", self.path, stored,
                 SCHEMA_VERSION)  # fmt: skip

    @property
    def code_version(self) -> int:
        """The schema version this code reads and writes (``schema_version`` is the stored)."""
        return code_schema_version()

    def migrate(self) -> None:
        """Bring the schema to ``code_version``; a store already there is only read (so a store
        on a read-only server opens, and ``check_writable`` says why it cannot serve).
        SchemaTooNew for a store newer than this code; StoreError if a central service leads
        the store (holds the pair's lock on another session): only its next leader migrates."""
        try:
            stored = self._stored_version()
            if stored == SCHEMA_VERSION:
                return
            self._refuse_newer(stored or 0)
            with self._db.transaction("BEGIN") as db:  # under the lock: another may migrate too
                db.execute("SELECT pg_advisory_xact_lock(?)", (MIGRATION_LOCK,))
                db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
                version = self._stored_version()
                if version is None:
                    db.execute("INSERT INTO schema_version VALUES (0)")
                    version = 0
                self._refuse_newer(version)
                if version < SCHEMA_VERSION:
                    self._take_leader_lock(version)
                for statements in migrations()[version:]:
                    for statement in statements:
                        db.connection.execute(statement)
                if version < SCHEMA_VERSION:
                    db.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION,))
                    log.info("store %s: schema migrated from %d to %d", self.path, version,
                             SCHEMA_VERSION)  # fmt: skip
        except psycopg.Error as exc:
            raise StoreError(f"cannot open store {self.path}: {exc}") from exc

    def _take_leader_lock(self, stored: int) -> None:
        """The pair's leader lock for this transaction (at once if this session holds it: a
        leader migrating), or StoreError: a central service leads the store, on its schema."""
        connection = self._db.connection
        row = connection.execute(TRY_LEADER_LOCK_IN_TRANSACTION, (LEADER_LOCK,)).fetchone()
        if not (row and row[0]):
            raise StoreError(
                f"store {self.path} has schema version {stored} and this code's is "
                f"{SCHEMA_VERSION}, but a central service leads it: it is migrated by the "
                "instance that leads it next (docs/high-availability.md, upgrading)"
            )

    def _refuse_newer(self, version: int) -> None:
        if version > SCHEMA_VERSION:
            raise SchemaTooNew.of(self.path, version, SCHEMA_VERSION)

    def _stored_version(self) -> int | None:
        """The version in table schema_version; None if there is no such table or row."""
        (table,) = self._db.execute("SELECT to_regclass('schema_version')").fetchone() or (None,)
        if table is None:
            return None
        row = self._db.execute("SELECT version FROM schema_version").fetchone()
        return None if row is None else int(row[0])

    # -- writing -----------------------------------------------------------------------------

    def commit(self, changes: ChangeSet) -> None:
        if changes.is_empty():
            return
        try:
            with self._db.transaction("BEGIN", pipelined=True) as db:
                write_changes(db, changes)
        except (psycopg.IntegrityError, psycopg.DataError, *_BAD_VALUE_ERRORS) as exc:
            log.error("store %s: a change it cannot hold, rolled back: %s", self.path, exc)
            raise UnstorableValue(f"a value the store cannot hold, rolled back: {exc}") from exc
        except psycopg.ProgrammingError as exc:
            if exc.sqlstate is not None:  # the server refused a statement: a bug, not a value
                raise StoreError(f"commit failed and was rolled back: {exc}") from exc
            log.error("store %s: a value it cannot send, rolled back: %s", self.path, exc)
            raise UnstorableValue(f"a value the store cannot hold, rolled back: {exc}") from exc
        except UnstorableValue:
            raise
        except (StoreError, psycopg.Error) as exc:
            log.error("store %s: commit failed, rolled back: %s", self.path, exc)
            raise StoreError(f"commit failed and was rolled back: {exc}") from exc

    def check_writable(self) -> None:
        """Try a write (the schema version, set to what it is) in a transaction rolled back."""
        try:
            connection = self._db.usable()
            connection.execute("BEGIN")
            try:
                connection.execute("UPDATE schema_version SET version = version")
            finally:
                if not connection.broken:
                    connection.execute("ROLLBACK")
        except psycopg.Error as exc:
            raise StoreError(
                f"store {self.path} is not writable ({exc}): a service cannot run on a "
                "read-only database (a standby server, default_transaction_read_only)"
            ) from None

    # -- reading -----------------------------------------------------------------------------

    def load(self) -> LoadedState:
        try:
            with self._db.transaction("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY") as db:
                return load_state(db)
        except psycopg.Error as exc:
            raise StoreError(f"cannot load store {self.path}: {exc}") from exc

    def _description_blob(self, job_id: int) -> bytes | None:
        """From the descriptions read ahead, else from the server with the next ones."""
        blob = self._descriptions.get(job_id)
        if blob is not None:
            return blob
        connection = self._db.usable()
        rows = connection.execute(SELECT_DESCRIPTIONS_FROM, (job_id, DESCRIPTIONS_READ_AHEAD))
        for stored_id, stored in rows:
            self._descriptions[stored_id] = stored
        while len(self._descriptions) > DESCRIPTIONS_KEPT:
            self._descriptions.popitem(last=False)
        return self._descriptions.get(job_id)

    def schema_version(self) -> int:
        try:
            return self._stored_version() or 0
        except psycopg.Error as exc:
            raise StoreError(f"cannot read schema version of {self.path}: {exc}") from exc

    def close(self) -> None:
        self._db.connection.close()


# What a bad value in a ChangeSet raises on its way into PostgreSQL (besides psycopg's errors).
_BAD_VALUE_ERRORS = (OverflowError, TypeError, ValueError)
