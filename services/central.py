"""The central service: one ROUTER socket, one loop, group commit.

One iteration (:meth:`CentralService.loop`): poll until a request arrives or the next deadline →
drain a batch of requests → apply each to the in-memory state → expire due deadlines → one paced
piece of background work (a slice of a big submission or a batch of a bulk action) → write
everything the batch changed to the store in ONE transaction (and a changed identity registry to
its file, first) → send the replies. Nothing is acknowledged before it is durable. A batch that
changed nothing that must be durable (heartbeats: a lease is kept in memory, a usage sample may
wait for the next commit; services/durability.py) writes nothing and syncs nothing.

On SQLite at ``synchronous = "full"`` (with ``[store] overlap_sync``, the default) the commit
returns once the WAL is written, and its fsync runs in a thread of its own while the loop serves
the next batch (requests waiting) or waits for it (none waiting); the batch's replies and pushes
are held until it has returned (services/syncing.py). A failed fsync stops the service, nothing
it covered acknowledged.

When a batch cannot be committed, one request never fails another:

- the store itself failed (disk full, I/O error, a read-only file: :class:`StoreError`): the
  in-memory state is rebuilt from the store, which is reopened, and every request of the batch
  gets a ``store_error`` marked retryable: clients send it again with the same request id;
- a request failed inside the service (a bug) or made a change the store cannot hold
  (:class:`UnstorableValue`): the state is rebuilt from the store and the batch's requests are
  served again one by one, each committed alone (:meth:`CentralService._replay`); the request at
  fault gets ``internal`` (not retryable), the others their normal replies.

Handlers check before they change, so a refused request (any DiracLikeError) changes nothing and
needs no undo. An ``OSError`` from the sandbox files (disk full, a missing file) is a
``store_error`` for that request alone.

Security (unless started ``--insecure``): the ROUTER is a CurveZMQ server; a ZAP handler,
answered in this same loop (services/zap.py), admits only the public keys of the identity
registry. Each request's principal is looked up in the registry by the ZAP User-Id of its frame,
request by request, so a revoke or an expiry holds at once on open connections too; then the
per-identity rate limit and :func:`dirac_like.authz.authorize` decide (services/guard.py), and
the arguments authorize returns are the ones the handler gets. Refusals and admin actions go to
the audit log.

(Writing the batch in a second thread while the loop serves the next was measured slower on two
cores: the GIL hand-offs cost more than the overlap gains. Only the fsync, which holds no GIL,
runs beside the loop. See docs/performance.md.)
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import signal
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import zmq

from dirac_like.authz import Principal
from dirac_like.config import Config
from dirac_like.errors import (
    DiracLikeError,
    Forbidden,
    InternalError,
    ProtocolError,
    RateLimited,
    StoreError,
    UnstorableValue,
)
from dirac_like.home_lock import holding, lock_path
from dirac_like.identity import Keypair
from dirac_like.metrics import MetricsEndpoint, serve_metrics
from dirac_like.protocol import (
    ARGUMENTS,
    MUTATING_OPS,
    REPLIES_NOT_STORED,
    SECRET_REPLIES,
    Op,
    Request,
    decode_request,
    encode_error,
    encode_ok,
    encode_push,
    parse_args,
    peek_request_id,
)
from dirac_like.ratelimit import RateLimiter
from dirac_like.registry import init_home, load_registry, load_service_keys, save_registry
from dirac_like.sandbox import SandboxStore
from dirac_like.store import Store
from dirac_like.store import open_store as default_store
from dirac_like.store.base import is_postgres_url, store_file

from .audit import AuditLog
from .durability import commit_due
from .frame_guard import FrameGuard, bounded, connection_key
from .guard import Guard
from .handlers import HANDLERS, run_background
from .identities import IdentityIssuer
from .metrics import ServiceMetrics
from .ownership import StateOwnership
from .pacing import Pacer
from .replies import reply_key
from .sandbox_handlers import SANDBOX_HANDLERS
from .state import CentralState
from .status_handlers import ServiceView, SingleInstance
from .syncing import Frames, HeldReplies, SyncFailed
from .zap import DOMAIN, ZapHandler

log = logging.getLogger(__name__)

FREEZE_AFTER_NEW_JOBS = 10_000
MAX_POLL_SECONDS = 0.5  # wake up at least this often to notice a stop request
MAX_ROUTES = 200_000  # pilots remembered for pushes (the least recently heard are forgotten)
PILOT_OPS = frozenset(
    {
        Op.REQUEST_JOB,
        Op.REQUEST_JOBS,
        Op.UPDATE_STATUS,
        Op.UPDATE_STATUSES,
        Op.PILOT_TURN,
        Op.HEARTBEAT,
    }
)
PURGE_SECONDS = 300.0  # how often expired pilot tokens are looked for
Message = tuple[list[bytes], str]  # the frames of one request, and its User-Id ('' if insecure)


@dataclass
class Pending:
    """A request read in this batch and the reply to send once the batch is durable."""

    envelope: list[bytes]
    reply: bytes
    request_id: str


class CentralService:
    """The loop and its sockets. ``open_store`` (default: the configured SQLite store) is called
    at start and again after a failed commit: tests inject a store double through it."""

    def __init__(
        self,
        config: Config,
        home: Path,
        clock: Callable[[], float] = time.time,
        insecure: bool = False,
        open_store: Callable[[], Store] | None = None,
        service_view: ServiceView | None = None,
    ) -> None:
        self.config = config
        self.home = home
        self.clock = clock
        home.mkdir(parents=True, exist_ok=True)
        keys = None if insecure else load_service_keys(home)
        self.issuer = (
            None
            if keys is None
            else IdentityIssuer(load_registry(home), keys.public, config.security)
        )
        self.guard = (
            None
            if self.issuer is None
            else Guard(self.issuer, RateLimiter.from_config(config.security), self._audit_log())
        )
        self._open_store = open_store or (
            lambda: default_store(
                config.store_url(home), config.store.synchronous, config.store.overlap_sync
            )
        )
        self.store: Store = self._open_store()
        try:
            self.store.check_writable()
        except StoreError:
            self.store.close()
            raise
        sandbox_limit = max(config.sandboxes.max_input_bytes, config.sandboxes.max_output_bytes)
        self.sandboxes = self._sandbox_store(sandbox_limit)
        self.service_view = service_view or SingleInstance(clock(), lambda: self.endpoint)
        self.endpoint = ""
        self.state = self._load_state()
        self.metrics = ServiceMetrics(config.metrics)
        self.metrics_endpoint: MetricsEndpoint | None = None
        self.context = zmq.Context()
        self.socket = self.context.socket(zmq.ROUTER)
        self.socket.setsockopt(zmq.LINGER, 1000)
        # Far larger frames are dropped by ZeroMQ itself (the connection is closed); up to twice
        # the limit the sender gets a clear too_large error reply.
        self.socket.setsockopt(zmq.MAXMSGSIZE, 2 * config.service.max_message_bytes)
        self.zap = None if keys is None else self._secure_socket(keys)
        self.poller = zmq.Poller()
        self.poller.register(self.socket, zmq.POLLIN)
        if self.zap is not None:
            self.poller.register(self.zap.socket, zmq.POLLIN)
        self.held = HeldReplies(lambda: self.store, self._send)  # until durable
        if self.held.fd is not None:
            self.poller.register(self.held.fd, zmq.POLLIN)
        self.frames = FrameGuard(config.service)
        self.routes: OrderedDict[str, list[bytes]] = OrderedDict()  # pilot id -> envelope
        self.endpoint = ""
        self.stopping = False
        self._poisoned = False
        self._new_since_freeze = 0  # jobs made since the last gc.freeze
        self._broken: StoreError | None = None  # the store could not be reopened: retry
        self._next_purge = clock() + PURGE_SECONDS
        self.pacer = Pacer(config.bulk.duty)

    def _audit_log(self) -> AuditLog:
        """Where admin actions and refusals are recorded: a file in the home."""
        return AuditLog.in_home(self.home)

    def _sandbox_store(self, max_bytes: int) -> SandboxStore:
        """Where the sandboxes are kept: files in the home."""
        return SandboxStore(self.home / "sandboxes", max_bytes)

    def _secure_socket(self, keys: Keypair) -> ZapHandler:
        """CurveZMQ server, with the ZAP handler bound BEFORE the socket can take a connection
        (libzmq admits every key when no handler is bound)."""
        zap = ZapHandler(self.context, self._admits, self.clock)
        self.socket.curve_server = True
        self.socket.curve_secretkey = keys.secret.encode("ascii")
        self.socket.curve_publickey = keys.public.encode("ascii")
        self.socket.zap_domain = DOMAIN
        return zap

    def _admits(self, public_key: str) -> bool:
        return self.issuer is not None and self.issuer.registry.admits(public_key, self.clock())

    def _load_state(self) -> CentralState:
        started = time.perf_counter()
        state = CentralState(
            self.config,
            self.store,
            self.store.load(),
            self.clock(),
            self.sandboxes,
            self.config.storage_elements(self.home),
        )
        state.identities = self.issuer
        state.service_view = self.service_view
        log.info("state loaded in %.2f s", time.perf_counter() - started)
        return state

    # -- life cycle ------------------------------------------------------------------------------

    def bind(self, url: str | None = None) -> str:
        """Listen on ``url`` (default from config); returns the endpoint actually bound."""
        self.socket.bind(url or self.config.service.listen)
        self.endpoint = self.socket.getsockopt_string(zmq.LAST_ENDPOINT)
        if self.issuer is None:
            log.warning(
                "!!! central service on %s runs INSECURE (--insecure): plaintext, no "
                "authentication, every client may do anything. Loopback or a trusted "
                "network only. !!!",
                self.endpoint,
            )
        else:
            log.info(
                "central service listening on %s (CurveZMQ, public key %s, %d identities)",
                self.endpoint,
                self.issuer.service_key,
                len(self.issuer.registry.by_key),
            )
        return self.endpoint

    def serve_metrics(self, listen: str | None = None) -> str:
        """Open /metrics on ``listen`` (default ``metrics.listen``; '' there: not at all);
        returns its URL ('' when not opened)."""
        listen = self.config.metrics.listen if listen is None else listen
        if not listen:
            return ""
        self.metrics.refresh(self.state, self.clock(), force=True)
        self.metrics_endpoint = serve_metrics(listen, self.metrics.registry)
        return self.metrics_endpoint.url

    def run(self) -> None:
        """Serve until :meth:`stop` (or SIGTERM/SIGINT when installed), then close (also when
        the loop raises: a failed fsync, :class:`~services.syncing.SyncFailed`)."""
        try:
            while not self.stopping:
                self.loop()
        except SyncFailed:
            self._poisoned = True  # what the store holds is not known durable: no job snapshot
            raise
        finally:
            self.close()

    def install_signal_handlers(self) -> None:
        def on_signal(signum: int, frame: FrameType | None) -> None:
            log.info("signal %d: finishing the current batch and stopping", signum)
            self.stopping = True

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)

    def stop(self) -> None:
        self.stopping = True

    def close(self) -> None:
        try:
            self._write_waiting()
            self.held.close()  # the replies of the last batch, once it is durable
        finally:
            self._close()

    def _write_waiting(self) -> None:
        """At a stop asked for (SIGTERM, :meth:`stop`): what waited for a later commit (usage
        samples) is written now. Not after an error, nor by a leader that stepped down (it
        writes nothing more: the new leader serves)."""
        journal = self.state.journal
        if (
            not self.stopping
            or self._broken is not None
            or self._poisoned
            or journal.changes.is_empty()
        ):
            return
        try:
            self._commit(0, flush=True)
            self.held.hold([])  # its sync, before the store is closed
        except (DiracLikeError, OSError) as exc:
            log.warning("the last seconds' usage samples not written at the stop: %s", exc)

    def _close(self) -> None:
        if self.metrics_endpoint is not None:
            self.metrics_endpoint.close()
        self.socket.close()
        if self.zap is not None:
            self.zap.close()
        if self.guard is not None:
            self.guard.close()
        self.context.term()
        self._save_job_snapshot()
        self.store.close()
        log.info("central service stopped")

    def _save_job_snapshot(self) -> None:
        """At a clean stop, every change committed: the job snapshot the next start reads
        instead of the whole jobs table (dirac_like/store/sqlite_snapshot.py). Not when the
        store failed or a batch is left uncommitted: the next start reads the table then."""
        journal = self.state.journal
        pending = journal.in_flight or journal.changes.new_jobs or journal.changes.changed_jobs
        if self._broken is not None or self._poisoned or pending:
            log.info("no job snapshot written: the store is behind the memory")
            return
        started = time.perf_counter()
        try:
            size = self.store.save_job_snapshot(self.state.jobs.values())
        except StoreError as exc:
            log.warning("job snapshot not written (the next start reads the jobs table): %s", exc)
            return
        if size:
            log.info(
                "job snapshot of %d jobs saved in %.2f s (%d bytes)",
                len(self.state.jobs),
                time.perf_counter() - started,
                size,
            )

    # -- one iteration ---------------------------------------------------------------------------

    def loop(self) -> int:
        """Wait for work, then serve one batch. Returns the number of requests served."""
        messages: list[Message] = []
        pending: list[Pending] = []
        turn_started = time.monotonic()  # the wait in poll counts as the requests' time
        ready = dict(self.poller.poll(self._poll_timeout_ms()))
        if self.held.fd in ready:  # the last batch is durable: its replies
            self.held.poll()
        if self.zap is not None and self.zap.socket in ready:
            self.zap.answer_all()
        if self._broken is not None and not self._recover(self._broken, reopen=True):
            refused = self._refusals(self._drain() if self.socket in ready else [], self._broken)
            for item in refused:
                self.socket.send_multipart([*item.envelope, item.reply])
            return 0
        if self.socket in ready:
            messages = self._drain()
            pending = self.process_batch(messages)
        self.state.expire(self.clock())
        background = self._background(len(pending))
        self.purge_identities(self.clock())
        self.commit_and_hold(pending, messages)
        if not self._requests_waiting():  # nothing to serve during the fsync: wait for it
            self.held.settle()
        self.pacer.turned(turn_started, time.monotonic(), bool(messages), background)
        self.metrics.refresh(self.state, self.clock())
        return len(pending)

    def _requests_waiting(self) -> bool:
        events: int = self.socket.getsockopt(zmq.EVENTS)  # type: ignore[assignment]
        return bool(events & zmq.POLLIN)

    def _background(self, served: int) -> float | None:
        """One piece of background work if one is due (a slice of a big submission, else a
        batch of a bulk action); when it started (None: none ran)."""
        if not self.state.background_pending or not self.pacer.due(contended=served > 0):
            return None
        started = time.monotonic()
        run_background(self.state, self.clock(), served)
        return started

    def _refusals(self, messages: list[Message], error: StoreError) -> list[Pending]:
        """The store cannot be opened: every request gets a retryable ``store_error``."""
        pending = [
            Pending(frames[:-1], b"", peek_request_id(frames[-1]) or "unknown")
            for frames, _ in messages
        ]
        return self._undone(pending, error, retryable=True)

    def _poll_timeout_ms(self) -> int:
        deadline = self.state.next_deadline()
        wait = MAX_POLL_SECONDS if deadline is None else deadline - self.clock()
        if self.state.background_pending:  # serve what comes soon, else the next piece
            wait = min(wait, self.pacer.wait())
        return int(max(0.0, min(wait, MAX_POLL_SECONDS)) * 1000)

    def _drain(self) -> list[Message]:
        messages: list[Message] = []
        secure = self.issuer is not None
        for _ in range(self.config.service.max_batch):
            try:
                messages.append(
                    self._receive_secure()
                    if secure
                    else (self.socket.recv_multipart(zmq.NOBLOCK), "")
                )
            except zmq.Again:
                break
        return messages

    def _receive_secure(self) -> Message:
        """One request, with the User-Id libzmq attached to it (the client's public key, read
        from the last frame). The ROUTER's routing frame comes as bytes, the others as frames
        (a multipart message arrives whole): 2 µs a request, against 9 µs for every frame as a
        frame made bytes after (docs/performance.md, "Match latency tail")."""
        frames = [self.socket.recv(zmq.NOBLOCK)]
        while True:
            frame = self.socket.recv(zmq.NOBLOCK, copy=False)
            if not frame.more:
                return [*frames, frame.bytes], str(frame.get("User-Id"))
            frames.append(frame.bytes)

    def process_batch(self, messages: list[Message]) -> list[Pending]:
        now = self.clock()
        pending = []
        for frames, user_id in messages:
            envelope, payload = frames[:-1], frames[-1]
            reply, request_id = self.handle(payload, now, envelope, user_id)
            pending.append(Pending(envelope, reply, request_id))
            self.held.poll()  # the last batch durable meanwhile: its replies go now
        return pending

    def handle(
        self, payload: bytes, now: float, envelope: list[bytes] | None = None, user_id: str = ""
    ) -> tuple[bytes, str]:
        """The reply to one frame from the client with public key ``user_id`` (never
        raises)."""
        connection = connection_key(envelope or [], user_id)
        try:
            self.frames.admit(connection, now)
        except RateLimited as exc:  # not decoded: the reply names no request
            return encode_error("unknown", exc.code, exc.message, True), "unknown"
        try:
            request = decode_request(payload, self.config.service.max_message_bytes)
        except ProtocolError as exc:
            request_id = peek_request_id(payload) or "unknown"
            self.frames.bad_frame(connection, payload, f"[{exc.code}] {exc}", now)
            self.metrics.observe_request("unknown", 0.0, ok=False)
            return encode_error(request_id, exc.code, exc.message), request_id
        try:
            principal = None if self.guard is None else self.guard.principal(user_id, request, now)
        except Forbidden as exc:
            self.metrics.observe_request(request.op, 0.0, ok=False)
            return encode_error(request.id, exc.code, exc.message), request.id
        return self.dispatch(request, now, envelope, principal), request.id

    def dispatch(
        self,
        request: Request,
        now: float,
        envelope: list[bytes] | None = None,
        principal: Principal | None = None,
    ) -> bytes:
        """The reply to one decoded request (timed and counted for the metrics)."""
        started = time.perf_counter()
        reply, ok = self._dispatch(request, now, envelope, principal)
        self.metrics.observe_request(request.op, time.perf_counter() - started, ok)
        return reply

    def _dispatch(
        self,
        request: Request,
        now: float,
        envelope: list[bytes] | None,
        principal: Principal | None,
    ) -> tuple[bytes, bool]:
        """Authorize, then answer a retry from the reply cache, else run. The cache is keyed by
        (principal, request id) and asked only after authorization: a request id is no
        capability to another identity's reply."""
        try:
            args: Any = parse_args(ARGUMENTS[request.op], request.args)
            if principal is not None and self.guard is not None:
                args = self.guard.admit(principal, request, args, StateOwnership(self.state), now)
        except (Forbidden, RateLimited) as exc:  # logged and audited by the guard
            return encode_error(request.id, exc.code, exc.message, exc.retryable), False
        except DiracLikeError as exc:
            log.warning(
                "request %s (%s) refused: [%s] %s",
                request.id,
                request.op,
                exc.code,
                bounded(exc.message),
            )
            return encode_error(request.id, exc.code, exc.message), False
        mutating = request.op in MUTATING_OPS
        key = reply_key(principal.name if principal is not None else "", request.id)
        if mutating:
            remembered = self.state.replies.remembered(key)
            if remembered is not None:
                log.info("request %s (%s) retried: same reply again", request.id, request.op)
                return remembered, True
        reply, ok = self._run(request, args, now, envelope, principal)
        if mutating and ok:  # refusals are not remembered: a retry is checked again
            durable = request.op not in REPLIES_NOT_STORED
            self.state.replies.remember(
                key, reply, now, durable, secret=request.op in SECRET_REPLIES
            )
        return reply, ok

    def _run(
        self,
        request: Request,
        args: Any,
        now: float,
        envelope: list[bytes] | None,
        principal: Principal | None,
    ) -> tuple[bytes, bool]:
        """The handler's reply (or error reply), and whether it is a success; audited."""
        error: DiracLikeError | None = None
        try:
            if envelope is not None and request.op in PILOT_OPS:
                self._remember_route(args.pilot_id, envelope)
            reply = encode_ok(request.id, HANDLERS[request.op](self.state, args, now))
        except DiracLikeError as exc:
            log.warning(
                "request %s (%s) refused: [%s] %s",
                request.id,
                request.op,
                exc.code,
                bounded(exc.message),
            )
            error = exc
            reply = encode_error(request.id, exc.code, exc.message, exc.retryable)
        except OSError as exc:  # the sandbox files (disk full, a file gone): this request only
            log.error("request %s (%s): %s", request.id, request.op, exc)
            if request.op not in SANDBOX_HANDLERS:  # it may have changed part of the state
                self._poisoned = True
            error = StoreError(
                f"the service could not read or write a file: "
                f"{exc.strerror or exc}; please retry later"
            )
            reply = encode_error(request.id, error.code, error.message, True)
        except Exception:
            log.exception("request %s (%s) failed inside the service", request.id, request.op)
            self._poisoned = True  # it may have changed part of the state: rebuild after
            error = InternalError("internal error, request undone")
            reply = encode_error(request.id, error.code, error.message)
        if principal is not None and self.guard is not None:
            self.guard.done(principal, request, args, now, error)
        return reply, error is None

    def purge_identities(self, now: float) -> None:
        """Now and then, forget pilot tokens long expired."""
        if self.issuer is None or now < self._next_purge:
            return
        self._next_purge = now + PURGE_SECONDS
        purged = self.issuer.registry.purge(now, self.config.security.purge_expired_after)
        if purged:
            log.info("%d expired pilot token(s) forgotten", purged)

    def commit_and_reply(
        self, pending: list[Pending], messages: list[Message] | None = None
    ) -> None:
        """Make the batch durable, then send its replies (see the module docstring for what
        happens when it cannot be). ``messages``: the batch's requests, to serve them again one
        by one if one of them is at fault."""
        self.commit_and_hold(pending, messages)
        self.held.settle()

    def commit_and_hold(
        self, pending: list[Pending], messages: list[Message] | None = None
    ) -> None:
        """Commit the batch; its replies and pushes go out once it is durable (at once when
        the commit is; else when the sync started for it has returned)."""
        pending = self._durable(pending, messages)
        replies = [[*item.envelope, item.reply] for item in pending]
        self.held.hold(replies + self._pushes())

    def _send(self, frames: Frames) -> None:
        self.socket.send_multipart(frames)

    def _durable(
        self, pending: list[Pending], messages: list[Message] | None = None
    ) -> list[Pending]:
        """Commit; the replies to send (``pending``, or errors for what was undone)."""
        try:
            self._commit(len(pending))
            return pending
        except (UnstorableValue, InternalError) as exc:  # a request at fault
            if self._recover(exc) and messages is not None and len(messages) > 1:
                return self._replay(messages)
            return self._undone(pending, exc, retryable=self._broken is not None)
        except StoreError as exc:  # the store failed: all undone, all may retry
            self.metrics.commit_failures.inc()
            self._recover(exc, reopen=True)
            return self._undone(pending, exc, retryable=True)

    def _commit(self, requests: int, flush: bool = False) -> None:
        """Write what the state changed since the last commit, in one transaction; nothing
        when it changed nothing that must be durable now (services/durability.py: a batch of
        heartbeats), unless ``flush``."""
        changes = self.state.take_changes()
        self._new_since_freeze += len(changes.new_jobs)
        if self._new_since_freeze >= FREEZE_AFTER_NEW_JOBS:
            # Bulk submissions (made 5,000 jobs a slice): their records live long, keep them
            # out of collections.
            gc.freeze()
            self._new_since_freeze = 0
        if self._poisoned:
            raise InternalError("a request failed inside the service")
        self._save_identities()
        if not flush and not commit_due(changes, self.clock()):
            self.state.put_back(changes)  # no transaction, no sync: the replies go at once
            return
        started = time.perf_counter()
        self.store.commit(changes)
        self.metrics.observe_commit(time.perf_counter() - started, requests)
        self.state.committed(changes)

    def _replay(self, messages: list[Message]) -> list[Pending]:
        """Serve the requests of a batch that failed again, each alone and committed alone, on
        the state rebuilt from the store: only the request at fault fails."""
        log.warning("serving the %d requests of the undone batch one by one", len(messages))
        replies = []
        for message in messages:
            if self._broken is not None:
                replies.extend(self._refusals([message], self._broken))
                continue
            pending = self._durable(self.process_batch([message]))
            replies.extend(pending)
        return replies

    # -- commands pushed to connected pilots -----------------------------------------------------

    def _remember_route(self, pilot_id: str, envelope: list[bytes]) -> None:
        """Where the last request of ``pilot_id`` came from: pushes go back that way."""
        routes = self.routes
        routes[pilot_id] = envelope
        routes.move_to_end(pilot_id)
        if len(routes) > MAX_ROUTES:
            routes.popitem(last=False)

    def _pushes(self) -> list[Frames]:
        """The commands decided in this (committed) batch, to the pilots concerned."""
        pushes = []
        for pilot_id, command in self.state.take_pushes():
            envelope = self.routes.get(pilot_id)
            if envelope is None:
                continue  # never heard from it: the next heartbeat reply carries the command
            log.info("pushing %s to pilot %s", command, pilot_id)
            pushes.append([*envelope, encode_push([command])])
        return pushes

    def _save_identities(self) -> None:
        """Write the identity registry if the batch changed it: before the store commit, before
        any reply, so an issued or revoked identity is durable when it is acknowledged."""
        if self.issuer is None or not self.issuer.registry.dirty:
            return
        try:
            save_registry(self.home, self.issuer.registry)
        except OSError as exc:
            raise StoreError(f"cannot write the identity registry: {exc.strerror}") from None

    def _recover(self, error: DiracLikeError, reopen: bool = False) -> bool:
        """:meth:`_rebuild`; False (and the next loop tries again) if the store cannot be
        opened or read now."""
        try:
            self._rebuild(error, reopen or self._broken is not None)
        except StoreError as exc:
            log.error("store unavailable, requests refused until it can be reopened: %s", exc)
            self._broken = exc
            return False
        self._broken = None
        return True

    def _rebuild(self, error: DiracLikeError, reopen: bool = False) -> None:
        """Forget what was not committed: the state (and the identity registry) again from
        disk; with ``reopen``, on a store opened anew (one that failed may stay broken, e.g. a
        connection opened read-only)."""
        log.error(
            "batch not committed (%s): rebuilding state%s",
            error,
            " on the store reopened" if reopen else "",
        )
        self._poisoned = False
        self.state.take_pushes()  # commands decided by what is undone are not sent
        if reopen:
            self._reopen_store()
        if self.issuer is not None:
            self.issuer.registry = load_registry(self.home)
        self.state = self._load_state()

    def _reopen_store(self) -> None:
        self.held.settle()  # the sync running uses the store's files
        with contextlib.suppress(DiracLikeError, OSError):
            self.store.close()
        self.store = self._open_store()
        self.store.check_writable()

    @staticmethod
    def _undone(pending: list[Pending], error: DiracLikeError, retryable: bool) -> list[Pending]:
        """Every reply of ``pending`` becomes ``error`` (the requests were undone)."""
        text = f"not done{', please retry' if retryable else ''}: {error.message}"
        return [
            Pending(
                p.envelope, encode_error(p.request_id, error.code, text, retryable), p.request_id
            )
            for p in pending
        ]


def run_central(
    config: Config, home: Path, listen: str | None = None, insecure: bool = False
) -> int:
    """Run the central service in the foreground until SIGTERM/SIGINT; returns the exit code.
    A home without keys is initialized first (see :func:`dirac_like.registry.init_home`). The
    home and the store are locked for the service's lifetime: a second central service on either
    exits at once with :class:`AlreadyRunning`, naming the first one's PID.

    On a PostgreSQL store the service is one instance of an active-standby pair
    (services/high_availability.py): only the home is locked here, the store's advisory lock
    says which instance leads."""
    locks = [(lock_path(home, "central"), f"a central service on home {home}")]
    url = config.store_url(home)
    if is_postgres_url(url):  # a database server is shared: no file to lock
        with holding(*locks):
            return _serve_paired(config, home, listen, insecure)
    store = store_file(url)
    locks.append((store.with_name(store.name + ".lock"), f"a central service on store {store}"))
    with holding(*locks):
        return _serve(config, home, listen, insecure)


def _serve_paired(config: Config, home: Path, listen: str | None, insecure: bool) -> int:
    from .high_availability import run_paired  # psycopg: imported only for PostgreSQL

    _prepare_home(home, insecure)
    return run_paired(config, home, listen, insecure)


def _prepare_home(home: Path, insecure: bool) -> None:
    # The store, its WAL, sandboxes and logs name users and hold their files: the service's
    # files are its own (0600, folders 0700), whatever the umask of the shell that started it.
    os.umask(0o077)
    home.chmod(0o700)
    if not insecure:
        initialized = init_home(home, time.time())
        if initialized.created:
            log.warning(
                "new home %s: service keys made; the first admin identity is %s",
                home,
                initialized.admin_identity,
            )


def _serve(config: Config, home: Path, listen: str | None, insecure: bool) -> int:
    _prepare_home(home, insecure)
    # Millions of long-lived job records: collect young objects less often, and keep what was
    # loaded at start-up out of every later collection.
    gc.set_threshold(100_000, 50, 100)
    service = CentralService(config, home, insecure=insecure)
    gc.collect()
    gc.freeze()
    service.install_signal_handlers()
    endpoint = service.bind(listen)
    metrics_url = service.serve_metrics()
    # Lines on stdout that scripts and tests wait for (the ports may have been chosen by the OS):
    # the metrics URL first (if any), then the service's endpoint, last.
    if metrics_url:
        print(f"central service metrics on {metrics_url}", flush=True)
    print(f"central service listening on {endpoint}", flush=True)
    service.run()
    return 0
