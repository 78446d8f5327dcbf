"""The central service: one ROUTER socket, one loop, group commit.

One iteration (:meth:`CentralService.loop`): poll until a request arrives or the next deadline →
drain a batch of requests → apply each to the in-memory state → expire due deadlines → write
everything the batch changed to the store in ONE transaction → send the replies. Nothing is
acknowledged before it is durable. If the store fails, or a handler fails unexpectedly, the
whole batch is answered with an error, the in-memory state is rebuilt from the store, and the
loop goes on: clients retry with the same request ids.

(Writing the batch in a second thread while the loop serves the next was measured slower on two
cores: the GIL hand-offs cost more than the overlap gains. See docs/performance.md.)
"""

from __future__ import annotations

import gc
import logging
import signal
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import zmq

from dirac_like.config import Config
from dirac_like.errors import DiracLikeError, InternalError, ProtocolError, StoreError
from dirac_like.protocol import (
    ARGUMENTS,
    MUTATING_OPS,
    REPLIES_NOT_STORED,
    Op,
    Request,
    decode_request,
    encode_error,
    encode_ok,
    encode_push,
    parse_args,
    peek_request_id,
)
from dirac_like.sandbox import SandboxStore
from dirac_like.store import Store, open_store

from .handlers import HANDLERS
from .state import CentralState

log = logging.getLogger(__name__)

FREEZE_AFTER_NEW_JOBS = 10_000
MAX_POLL_SECONDS = 0.5  # wake up at least this often to notice a stop request
MAX_ROUTES = 200_000  # pilots remembered for pushes (the least recently heard are forgotten)
PILOT_OPS = frozenset({Op.REQUEST_JOB, Op.UPDATE_STATUS, Op.HEARTBEAT})


@dataclass
class Pending:
    """A request read in this batch and the reply to send once the batch is durable."""

    envelope: list[bytes]
    reply: bytes
    request_id: str


class CentralService:
    def __init__(
        self, config: Config, home: Path, clock: Callable[[], float] = time.time
    ) -> None:
        self.config = config
        self.home = home
        self.clock = clock
        home.mkdir(parents=True, exist_ok=True)
        self.store: Store = open_store(config.store_url(home), config.store.synchronous)
        sandbox_limit = max(config.sandboxes.max_input_bytes, config.sandboxes.max_output_bytes)
        self.sandboxes = SandboxStore(home / "sandboxes", sandbox_limit)
        self.state = self._load_state()
        self.context = zmq.Context()
        self.socket = self.context.socket(zmq.ROUTER)
        self.socket.setsockopt(zmq.LINGER, 1000)
        # Far larger frames are dropped by ZeroMQ itself (the connection is closed); up to twice
        # the limit the sender gets a clear too_large error reply.
        self.socket.setsockopt(zmq.MAXMSGSIZE, 2 * config.service.max_message_bytes)
        self.routes: OrderedDict[str, list[bytes]] = OrderedDict()  # pilot id -> envelope
        self.endpoint = ""
        self.stopping = False
        self._poisoned = False

    def _load_state(self) -> CentralState:
        started = time.perf_counter()
        state = CentralState(self.config, self.store, self.store.load(), self.clock(),
                             self.sandboxes)
        log.info("state loaded in %.2f s", time.perf_counter() - started)
        return state

    # -- life cycle ------------------------------------------------------------------------------

    def bind(self, url: str | None = None) -> str:
        """Listen on ``url`` (default from config); returns the endpoint actually bound."""
        self.socket.bind(url or self.config.service.listen)
        self.endpoint = self.socket.getsockopt_string(zmq.LAST_ENDPOINT)
        log.info("central service listening on %s", self.endpoint)
        return self.endpoint

    def run(self) -> None:
        """Serve until :meth:`stop` (or SIGTERM/SIGINT when installed), then close."""
        while not self.stopping:
            self.loop()
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
        self.socket.close()
        self.context.term()
        self.store.close()
        log.info("central service stopped")

    # -- one iteration ---------------------------------------------------------------------------

    def loop(self) -> int:
        """Wait for work, then serve one batch. Returns the number of requests served."""
        pending = []
        if self.socket.poll(self._poll_timeout_ms(), zmq.POLLIN):
            pending = self.process_batch(self._drain())
        self.state.expire(self.clock())
        self.commit_and_reply(pending)
        return len(pending)

    def _poll_timeout_ms(self) -> int:
        deadline = self.state.next_deadline()
        wait = MAX_POLL_SECONDS if deadline is None else deadline - self.clock()
        return int(max(0.0, min(wait, MAX_POLL_SECONDS)) * 1000)

    def _drain(self) -> list[list[bytes]]:
        frames = []
        for _ in range(self.config.service.max_batch):
            try:
                frames.append(self.socket.recv_multipart(zmq.NOBLOCK))
            except zmq.Again:
                break
        return frames

    def process_batch(self, messages: list[list[bytes]]) -> list[Pending]:
        now = self.clock()
        pending = []
        for frames in messages:
            envelope, payload = frames[:-1], frames[-1]
            reply, request_id = self.handle(payload, now, envelope)
            pending.append(Pending(envelope, reply, request_id))
        return pending

    def handle(self, payload: bytes, now: float, envelope: list[bytes] | None = None
               ) -> tuple[bytes, str]:
        """The reply to one frame (never raises)."""
        try:
            request = decode_request(payload, self.config.service.max_message_bytes)
        except ProtocolError as exc:
            request_id = peek_request_id(payload) or "unknown"
            log.warning("refused frame of %d bytes: [%s] %s", len(payload), exc.code, exc)
            return encode_error(request_id, exc.code, exc.message), request_id
        return self.dispatch(request, now, envelope), request.id

    def dispatch(self, request: Request, now: float, envelope: list[bytes] | None = None
                 ) -> bytes:
        mutating = request.op in MUTATING_OPS
        if mutating:
            remembered = self.state.remembered_reply(request.id)
            if remembered is not None:
                log.info("request %s (%s) retried: same reply again", request.id, request.op)
                return remembered
        try:
            args: Any = parse_args(ARGUMENTS[request.op], request.args)
            if envelope is not None and request.op in PILOT_OPS:
                self._remember_route(args.pilot_id, envelope)
            reply = encode_ok(request.id, HANDLERS[request.op](self.state, args, now))
        except DiracLikeError as exc:
            log.warning("request %s (%s) refused: [%s] %s", request.id, request.op, exc.code, exc)
            return encode_error(request.id, exc.code, exc.message)
        except Exception:
            log.exception("request %s (%s) failed inside the service", request.id, request.op)
            self._poisoned = True  # it may have changed part of the state: rebuild after
            return encode_error(request.id, InternalError.code, "internal error, request undone")
        if mutating:
            durable = request.op not in REPLIES_NOT_STORED
            self.state.remember_reply(request.id, reply, now, durable)
        return reply

    def commit_and_reply(self, pending: list[Pending]) -> None:
        changes = self.state.take_changes()
        if len(changes.new_jobs) >= FREEZE_AFTER_NEW_JOBS:
            gc.freeze()  # a bulk submission: its records live long, keep them out of collections
        try:
            if self._poisoned:
                raise InternalError("a request failed inside the service")
            self.store.commit(changes)
            self.state.committed(changes)
        except (StoreError, InternalError) as exc:
            pending = self._undo(pending, exc)
        for item in pending:
            self.socket.send_multipart([*item.envelope, item.reply])
        self._push_commands()

    # -- commands pushed to connected pilots -----------------------------------------------------

    def _remember_route(self, pilot_id: str, envelope: list[bytes]) -> None:
        """Where the last request of ``pilot_id`` came from: pushes go back that way."""
        routes = self.routes
        routes[pilot_id] = envelope
        routes.move_to_end(pilot_id)
        if len(routes) > MAX_ROUTES:
            routes.popitem(last=False)

    def _push_commands(self) -> None:
        """Send the commands decided in this (committed) batch to the pilots concerned."""
        for pilot_id, command in self.state.take_pushes():
            envelope = self.routes.get(pilot_id)
            if envelope is None:
                continue  # never heard from it: the next heartbeat reply carries the command
            target = f" of job {command['job_id']}" if "job_id" in command else ""
            log.info("pushing %s%s to pilot %s", command["command"], target, pilot_id)
            self.socket.send_multipart([*envelope, encode_push([command])])

    def _undo(self, pending: list[Pending], error: DiracLikeError) -> list[Pending]:
        """Rebuild the state from the store; every reply of the batch becomes an error."""
        log.error("batch of %d requests not committed (%s): rebuilding state", len(pending), error)
        self._poisoned = False
        self.state = self._load_state()
        undone = f"not done, please retry: {error.message}"
        return [
            Pending(p.envelope, encode_error(p.request_id, error.code, undone), p.request_id)
            for p in pending
        ]


def run_central(config: Config, home: Path, listen: str | None = None) -> int:
    """Run the central service in the foreground until SIGTERM/SIGINT; returns the exit code."""
    # Millions of long-lived job records: collect young objects less often, and keep what was
    # loaded at start-up out of every later collection.
    gc.set_threshold(100_000, 50, 100)
    service = CentralService(config, home)
    gc.collect()
    gc.freeze()
    service.install_signal_handlers()
    endpoint = service.bind(listen)
    # A line on stdout that scripts and tests wait for (the port may have been chosen by the OS).
    print(f"central service listening on {endpoint}", flush=True)
    service.run()
    return 0
