"""An active-standby pair of central services on one PostgreSQL store (the I/O shell).

Every central service on a PostgreSQL store runs here (:func:`run_paired`). The decisions are
:class:`services.leadership.Leadership`'s; this module runs them:

- **standing by**: the instance opens the store and, every ``retry_interval`` seconds, tries
  ``pg_try_advisory_lock(LEADER_LOCK)`` on the store's own session. It binds nothing: clients
  (which connect to every URL of ``--server URL1,URL2`` with ZMQ_IMMEDIATE) send only to the
  instance that listens, the leader. It notes itself in table ``ha_instances``.
- **leading**: once the lock is taken on the session the store commits on, the instance loads
  the whole state from the store, takes the shared identity registry from table ``ha_files``,
  binds its endpoint and serves like a lone central service.
- **fencing**: the store commits only on the session that took the lock. The lock lives as long
  as that session: a session the server terminated, lost in a server restart or cut off by the
  network cannot commit (the commit fails on it), and the store may not open another one (its
  ``on_connect`` hook, :meth:`LockSession.on_connect`, refuses any session after the first);
  every commit also checks first that the session is still open (:class:`FencedStore`).
  Either way the leader stops at once: no reply
  of the batch is sent, the endpoint is unbound, and the instance stands by again. An idle
  leader probes its session every ``probe_interval`` seconds, so it stops within that even
  when nothing is committed.
- **the same answers**: replies are stored with the batch that made them (as on SQLite), so a
  request answered by the old leader and resent (same id) to the new one gets the same reply.
- **one at a time across a schema change**: an instance opens the store without migrating it.
  Standing by it only reads the schema version (and notes itself in the columns of that version),
  whatever it is; it migrates the schema once it holds the lock, on the lock's session, before
  it loads anything: an old leader, fenced by the lock, can never commit to a migrated schema.
  An instance whose code is older than the store's schema never leads on it: it refuses with
  :class:`SchemaTooNew` (naming both versions) and exits (EXIT_SCHEMA_TOO_NEW), whether it sees
  that standing by or once it holds the lock (the lock is released with its session).

The pair's tables (``ha_instances``, ``ha_files`` and ``ha_audit`` of services/pair_shared.py,
the sandboxes' of services/shared_sandboxes.py) are part of the store's versioned schema since
version 10 (dirac_like/store/postgres_pair.py).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from types import FrameType
from typing import Any

import psycopg
import zmq

from dirac_like.accounting import JobAccountingRecord
from dirac_like.config import Config
from dirac_like.errors import DiracLikeError, SchemaTooNew, StoreError
from dirac_like.model import ChangeSet, FileEntry, HistoryEntry, LoadedState
from dirac_like.monitoring import ProbeResult
from dirac_like.protocol import ServiceInstanceRow, ServiceStatusReply
from dirac_like.sandbox import SandboxStore
from dirac_like.store import Store
from dirac_like.store.postgres import PostgresStore, code_schema_version
from dirac_like.store.postgres_pair import (
    LEADER_LOCK,
    PAIR_SCHEMA_VERSION,
    TRY_LEADER_LOCK,
    LeaderFence,
)

from .audit import AuditLog
from .central import CentralService
from .leadership import (
    Leadership,
    LeadershipConfig,
    Role,
    SchemaStep,
    Step,
    mark_silent,
    schema_step,
)
from .pair_shared import DatabaseAuditLog, SharedRegistry
from .shared_sandboxes import PostgresSandboxStore

log = logging.getLogger(__name__)

NOTE_SECONDS = 2.0  # how often an instance notes itself alive in ha_instances
IDLE_SLEEP_SECONDS = 0.1  # a standby's longest sleep (it notices a stop request within it)
# Keepalives on the lock's session: the server frees the lock within about 5 + 3 * 1 s of the
# leader's host vanishing (no RST), and the leader sees a vanished server as fast.
SESSION_SETTINGS = (
    "SET tcp_keepalives_idle = 5",
    "SET tcp_keepalives_interval = 1",
    "SET tcp_keepalives_count = 3",
)


class LeadershipLost(Exception):
    """The leader's session is gone or replaced: it must stop serving at once. Deliberately no
    DiracLikeError, so that nothing on the way turns it into a reply."""


def is_postgres_url(url: str) -> bool:
    return url.startswith(("postgresql://", "postgres://"))


class LockSession:
    """The store's session, which takes and holds the leader's lock. Given to the store as its
    ``on_connect`` hook, it sees the store's first session, and refuses any later one (a
    reconnection after that session broke): the store then cannot commit on a session that
    does not hold the lock."""

    def __init__(self) -> None:
        self._connection: psycopg.Connection[Any] | None = None

    def on_connect(self, connection: psycopg.Connection[Any]) -> None:
        if self._connection is not None:
            raise StoreError("the session holding the leader's lock is gone: no other is used")
        for statement in SESSION_SETTINGS:
            connection.execute(statement)
        self._connection = connection

    @property
    def connection(self) -> psycopg.Connection[Any]:
        if self._connection is None:
            raise LeadershipLost("the store has no session")
        return self._connection

    def try_lock(self) -> bool:
        """Take the lock if it is free (it is kept until this session ends)."""
        row = self.connection.execute(TRY_LEADER_LOCK, (LEADER_LOCK,)).fetchone()
        return bool(row is not None and row[0])

    def check(self) -> None:
        """LeadershipLost unless the session holding the lock is still open."""
        if self.connection.broken or self.connection.closed:
            raise LeadershipLost("the session holding the lock is gone")

    def probe(self) -> None:
        """A round trip on the session; LeadershipLost if it is gone."""
        self.check()
        try:
            self.connection.execute("SELECT 1")
        except psycopg.Error as exc:
            raise LeadershipLost(f"the session holding the lock is gone: {exc}") from None


class FencedStore(Store):
    """The leader's store: commits only on the session that holds the lock."""

    def __init__(self, inner: Store, session: LockSession) -> None:
        self.inner = inner
        self.session = session

    def commit(self, changes: ChangeSet) -> None:
        self.session.check()
        self.inner.commit(changes)

    def load(self) -> LoadedState:
        return self.inner.load()

    def description(self, job_id: int) -> dict[str, Any]:
        return self.inner.description(job_id)

    def history(self, job_id: int) -> list[HistoryEntry]:
        return self.inner.history(job_id)

    def pilot_output(self, pilot_id: str) -> str | None:
        return self.inner.pilot_output(pilot_id)

    def sandbox(self, job_id: int, kind: str) -> str | None:
        return self.inner.sandbox(job_id, kind)

    def referenced_sandboxes(self) -> set[str]:
        return self.inner.referenced_sandboxes()

    def probe_results(
        self, since: float, target: str = "", limit: int = 100_000
    ) -> list[ProbeResult]:
        return self.inner.probe_results(since, target, limit)

    def job_accounting(self, job_id: int) -> list[JobAccountingRecord]:
        return self.inner.job_accounting(job_id)

    def catalog_files(self, lfns: list[str]) -> dict[str, FileEntry]:
        return self.inner.catalog_files(lfns)

    def catalog_replicas(self, lfns: list[str]) -> dict[str, dict[str, str]]:
        return self.inner.catalog_replicas(lfns)

    def catalog_folder(self, folder: str, limit: int) -> list[FileEntry]:
        return self.inner.catalog_folder(folder, limit)

    def catalog_lookup(self, lfns: list[str]) -> list[tuple[Any, ...]]:
        return self.inner.catalog_lookup(lfns)

    def catalog_space(self, ses: list[str]) -> dict[str, int]:
        return self.inner.catalog_space(ses)

    def schema_version(self) -> int:
        return self.inner.schema_version()

    def check_writable(self) -> None:
        self.inner.check_writable()

    def close(self) -> None:
        self.inner.close()


@dataclass(frozen=True)
class Instance:
    """This instance, as ``ha_instances`` names it."""

    name: str
    endpoint: str
    host: str
    pid: int
    code_schema: int  # the schema version its code reads and writes


# ha_instances' columns before schema 10 (when the pair made the table itself), then since. A
# release that changes the table adds its columns by version here: a standby newer than the
# store notes itself in the columns the store has.
BOARD_COLUMNS_BEFORE_10 = ("name", "endpoint", "host", "pid", "role", "since", "seen")
BOARD_COLUMNS = (*BOARD_COLUMNS_BEFORE_10, "code_schema")


class InstanceBoard:
    """Table ``ha_instances``: each instance's role, since when, when it was last seen, and the
    schema version its code knows. Written in the columns of the stored schema's version (a
    standby newer than the store notes itself in the older table's columns); never written on
    a schema newer than this code knows."""

    def __init__(self, instance: Instance) -> None:
        self.instance = instance

    def note(
        self,
        connection: psycopg.Connection[Any],
        role: Role,
        since: float,
        now: float,
        stored_schema: int,
    ) -> None:
        me = self.instance
        row = {**asdict(me), "role": str(role), "since": since, "seen": now}
        columns: tuple[str, ...] = BOARD_COLUMNS
        if stored_schema < PAIR_SCHEMA_VERSION:
            if not _table_exists(connection, "ha_instances"):
                return  # a store no pair has used yet: its leader makes the table
            columns = BOARD_COLUMNS_BEFORE_10
        if role is Role.LEADER:  # whoever led before does not any more
            connection.execute(
                "UPDATE ha_instances SET role = 'standby' WHERE role = 'leader' AND name <> %s",
                (me.name,),
            )
        updates = ", ".join(f"{column} = EXCLUDED.{column}" for column in columns[1:])
        connection.execute(
            f"""INSERT INTO ha_instances ({", ".join(columns)})
                VALUES ({", ".join(["%s"] * len(columns))})
                ON CONFLICT (name) DO UPDATE SET {updates}""",
            [row[column] for column in columns],
        )

    def rows(self, connection: psycopg.Connection[Any]) -> list[ServiceInstanceRow]:
        found = connection.execute(
            f"SELECT {', '.join(BOARD_COLUMNS)} FROM ha_instances ORDER BY role <> 'leader', name"
        ).fetchall()
        return [ServiceInstanceRow(*row) for row in found]


def _table_exists(connection: psycopg.Connection[Any], table: str) -> bool:
    row = connection.execute("SELECT to_regclass(%s) IS NOT NULL", (table,)).fetchone()
    return bool(row and row[0])


class PairView:
    """What ``service_status`` answers on a paired service: the board, read on the session."""

    def __init__(self, board: InstanceBoard, session: LockSession, store: Store) -> None:
        self.board = board
        self.session = session
        self.store = store

    def status(self, now: float) -> ServiceStatusReply:
        try:
            rows = self.board.rows(self.session.connection)
        except psycopg.Error as exc:
            raise StoreError(f"cannot read the service instances: {exc}") from None
        rows = mark_silent(rows, now)
        return ServiceStatusReply("postgresql", rows, schema=self.store.schema_version())


class PairedCentralService(CentralService):
    """A central service leading a pair: the identity registry is also written to the store."""

    def __init__(self, *args: Any, session: LockSession, shared: SharedRegistry, **kw: Any):
        self.session = session
        self.shared = shared
        # what it writes on other connections is refused once its session lost the lock
        self.fence = LeaderFence(session.connection.info.backend_pid)
        super().__init__(*args, **kw)

    def _audit_log(self) -> AuditLog:
        return DatabaseAuditLog(self.home, self.config.store_url(self.home), self.fence)

    def _sandbox_store(self, max_bytes: int) -> SandboxStore:
        """In the database: the next leader finds what a pilot uploaded to this one."""
        url = self.config.store_url(self.home)
        return PostgresSandboxStore(url, max_bytes, self.clock, self.fence)

    def close(self) -> None:
        super().close()
        if isinstance(self.sandboxes, PostgresSandboxStore):
            with contextlib.suppress(psycopg.Error):
                self.sandboxes.close()

    def _save_identities(self) -> None:
        if self.issuer is None or not self.issuer.registry.dirty:
            return
        text = self.issuer.registry.to_json()
        self.session.check()
        try:
            self.shared.push(self.session.connection, text, self.clock())
        except psycopg.Error as exc:
            raise StoreError(f"cannot write the shared identity registry: {exc}") from None
        super()._save_identities()


@dataclass(frozen=True)
class PairSettings:
    name: str  # this instance's name in ha_instances
    listen: str  # where it binds when it leads
    insecure: bool = False
    leadership: LeadershipConfig = field(default_factory=LeadershipConfig)


class PairedService:
    """One instance of the pair: stands by, leads, stands by again, until stopped."""

    def __init__(
        self,
        config: Config,
        home: Path,
        settings: PairSettings,
        clock: Callable[[], float] = time.time,
        open_store: Callable[[LockSession], PostgresStore] | None = None,
    ) -> None:
        self.config = config
        self.home = home
        self.settings = settings
        self.clock = clock
        self._open_store = open_store or self._open_postgres
        self.leadership = Leadership(settings.leadership, clock())
        instance = Instance(
            settings.name, settings.listen, socket.gethostname(), os.getpid(), code_schema_version()
        )
        self.board = InstanceBoard(instance)
        self.shared = SharedRegistry(home)
        # the standby's store, opened as it is (the leader's is the service's, migrated)
        self.store: PostgresStore | None = None
        self.session: LockSession | None = None
        self.service: PairedCentralService | None = None
        self.listen = settings.listen  # where it binds (a picked port, once picked, kept)
        self.stopping = False
        self._next_note = 0.0

    # -- life cycle ------------------------------------------------------------------------------

    def install_signal_handlers(self) -> None:
        def on_signal(signum: int, frame: FrameType | None) -> None:
            log.info("signal %d: stopping (the lock is released with the session)", signum)
            self.stop()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)

    def stop(self) -> None:
        self.stopping = True
        if self.service is not None:
            self.service.stop()

    def run(self) -> None:
        """Until stopped; SchemaTooNew if the store's schema is newer than this code knows."""
        print(f"central service standing by to serve on {self.settings.listen}", flush=True)
        try:
            while not self.stopping:
                self.step()
        finally:
            self._close()

    def step(self) -> None:
        """One iteration: try the lock, probe, serve a batch, or wait."""
        now = self.clock()
        due = self.leadership.due(now)
        if due is Step.TRY_LOCK:
            self._try_lead(now)
        elif due is Step.PROBE:
            self._guarded(self._probe)
        if self.service is not None:
            self._guarded(self.service.loop)
        else:
            pause = self.leadership.next_deadline() - self.clock()
            time.sleep(min(IDLE_SLEEP_SECONDS, max(0.0, pause)))

    def _close(self) -> None:
        if self.service is not None:
            self.service.close()  # closes the store: the session, and the lock, end
            self.service = None
        self._drop_store()

    # -- standing by -----------------------------------------------------------------------------

    def _try_lead(self, now: float) -> None:
        """Note this instance, try the lock, lead if taken. The schema is only read here, and
        SchemaTooNew raised (before anything is written) if it is newer than this code's."""
        try:
            store, session = self._standby_store()
            stored = store.schema_version()
        except (StoreError, psycopg.Error, LeadershipLost) as exc:
            self._unreachable(exc)
            return
        self._refuse_if_newer(store, stored)
        try:
            self._note(session.connection, now, stored)
            taken = session.try_lock()
        except (StoreError, psycopg.Error, LeadershipLost) as exc:
            self._unreachable(exc)
            return
        if not taken:
            self.leadership.lock_busy(now)
            return
        self._lead(session, now)

    def _unreachable(self, exc: Exception) -> None:
        log.warning("standing by: the store cannot be reached now: %s", exc)
        self._drop_store()
        self.leadership.lock_busy(self.clock())

    def _refuse_if_newer(self, store: PostgresStore, stored: int) -> None:
        """SchemaTooNew, with the store closed (its session, and any lock, end), if the store's
        schema is newer than this code's: this instance must never lead on it."""
        if schema_step(stored, store.code_version) is not SchemaStep.REFUSE:
            return
        with contextlib.suppress(DiracLikeError, psycopg.Error, OSError):
            store.close()
        self.store = self.session = None
        refused = SchemaTooNew(
            f"this instance refuses to lead: the store's schema version is {stored}, newer "
            f"than this instance's code knows ({store.code_version}); it stops (upgrade it "
            "and start it again: docs/high-availability.md, upgrading one at a time)"
        )
        log.error("%s", refused.message)
        raise refused

    def _open_postgres(self, session: LockSession) -> PostgresStore:
        url, synchronous = self.config.store_url(self.home), self.config.store.synchronous
        return PostgresStore(url, synchronous, on_connect=session.on_connect, migrate=False)

    def _standby_store(self) -> tuple[PostgresStore, LockSession]:
        """The store, opened as it is (never migrated while standing by), and its session."""
        if self.store is None or self.session is None:
            session = LockSession()
            self.store = self._open_store(session)
            self.session = session
        self.session.check()  # a broken session is no place for the lock: drop it
        return self.store, self.session

    def _note(
        self, connection: psycopg.Connection[Any], now: float, stored: int, force: bool = False
    ) -> None:
        if force or now >= self._next_note:
            role, since = self.leadership.role, self.leadership.since
            self.board.note(connection, role, since, now, stored)
            self._next_note = now + NOTE_SECONDS

    def _drop_store(self) -> None:
        if self.store is not None:
            with contextlib.suppress(DiracLikeError, psycopg.Error, OSError):
                self.store.close()
        self.store = self.session = None

    # -- leading ---------------------------------------------------------------------------------

    def _lead(self, session: LockSession, now: float) -> None:
        """The lock is ours: load the state, bind, serve (or stand by again if that fails)."""
        store, self.store, self.session = self.store, None, None
        assert store is not None
        self.leadership.lock_taken(now)
        log.info("leading now (term %d): loading the state", self.leadership.terms)
        try:
            self._migrate(store)
            self._note(session.connection, now, store.code_version, force=True)
            if not self.settings.insecure:  # an insecure pair has no registry
                self.shared.pull(session.connection, now)
            self.service = self._build_service(store, session)
            endpoint = self.service.bind(self.listen)
            metrics_url = self.service.serve_metrics()
        except SchemaTooNew:
            with contextlib.suppress(DiracLikeError, psycopg.Error, OSError):
                store.close()
            raise
        except (DiracLikeError, psycopg.Error, OSError, zmq.ZMQError, LeadershipLost) as exc:
            log.error("could not take the lead: %s", exc)
            self._step_down(f"could not take the lead: {exc}", store)
            return
        if endpoint != self.listen:  # a port the system picked: the same one next time
            self.listen = endpoint
            self.board.instance = replace(self.board.instance, endpoint=endpoint)
        if metrics_url:
            print(f"central service metrics on {metrics_url}", flush=True)
        print(f"central service listening on {endpoint}", flush=True)  # as a lone one says

    def _migrate(self, store: PostgresStore) -> None:
        """Holding the lock (on the store's session): refuse a newer schema (it may have been
        migrated since this instance last read it), bring an older one to this code's. No other
        instance commits meanwhile, and the old leader, fenced, never will."""
        stored = store.schema_version()
        self._refuse_if_newer(store, stored)
        if schema_step(stored, store.code_version) is SchemaStep.MIGRATE:
            log.warning("migrating the store's schema from version %d to %d under the lock",
                        stored, store.code_version)  # fmt: skip
            store.migrate()

    def _build_service(self, store: PostgresStore, session: LockSession) -> PairedCentralService:
        opened = [False]

        def open_fenced() -> Store:  # the first time the locked store; after a failure: none
            if opened[0]:
                raise LeadershipLost("the store failed: the lock must be won again")
            opened[0] = True
            return FencedStore(store, session)

        service = PairedCentralService(
            self.config,
            self.home,
            clock=self.clock,
            insecure=self.settings.insecure,
            open_store=open_fenced,
            session=session,
            shared=self.shared,
            service_view=PairView(self.board, session, store),
        )
        if self.stopping:
            service.stop()
        return service

    def _probe(self) -> None:
        assert self.service is not None
        session = self.service.session
        session.probe()
        now = self.clock()
        self.leadership.session_ok(now)
        try:
            self._note(session.connection, now, code_schema_version())
        except psycopg.Error as exc:
            raise LeadershipLost(f"the session holding the lock is gone: {exc}") from None

    def _guarded(self, action: Callable[[], object]) -> None:
        try:
            action()
        except LeadershipLost as exc:
            self._step_down(str(exc))

    def _step_down(self, why: str, store: Store | None = None) -> None:
        """Stop serving at once: nothing more is sent, the endpoint is unbound; stand by."""
        self.leadership.session_lost(self.clock(), why)
        service, self.service = self.service, None
        if service is not None:
            service.socket.setsockopt(zmq.LINGER, 0)  # replies still queued are dropped
            with contextlib.suppress(DiracLikeError, psycopg.Error, OSError):
                service.close()
        elif store is not None:
            with contextlib.suppress(DiracLikeError, psycopg.Error, OSError):
                store.close()
        log.warning("standing by again: %s", why)


def run_paired(
    config: Config, home: Path, listen: str | None, insecure: bool, name: str = ""
) -> int:
    """Run one instance of a pair in the foreground until SIGTERM/SIGINT."""
    listen = listen or config.service.listen
    if "*" in listen:
        log.warning(
            "listening on %s: a port the system picks, kept for later terms; the clients of a "
            "pair need fixed endpoints to name",
            listen,
        )
    settings = PairSettings(name or f"{socket.gethostname()}/{listen}", listen, insecure)
    paired = PairedService(config, home, settings)
    paired.install_signal_handlers()
    paired.run()
    return 0
