"""The transfer agent: takes transfer requests from the central service and makes the replicas.

One request at a time per agent process; run several agents for parallel copies (the service
keeps the per-link and per-SE limits, whoever asks). For each request it leases
(``transfer_request``):

1. report Active (the lease is renewed; a stale lease stops here);
2. copy from the source the service chose to the destination: a third-party copy when both
   ends are XRootD (the destination pulls from the source), else streamed through this process
   in chunks (never a whole file in memory). Either way the file lands under a temporary name and
   is renamed into place only when complete. While the copy runs (in a worker thread) the main
   thread renews the lease every third of it;
3. check the destination's own size and adler32 against the catalog's: the check decides, not
   the copy's exit status. A bad copy is deleted;
4. report Done (the service registers the replica in the same transaction) or Failed with the
   reason (the service retries later, from another source when there is one).

Killed at any point (even ``kill -9``), the agent leaves at most a ``.part`` file or an
unregistered copy behind: the lease runs out, the request waits again, and a later attempt
overwrites the copy. Nothing is registered that was not checked.
"""

from __future__ import annotations

import logging
import signal
import socket
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from types import FrameType

from dirac_like.client import Client, RetryPolicy
from dirac_like.data_manager import DataManager
from dirac_like.errors import (
    ChecksumMismatch,
    DiracLikeError,
    IllegalTransition,
    ServiceUnavailable,
    StorageError,
)
from dirac_like.metrics import MetricsEndpoint, serve_metrics
from dirac_like.protocol import Op, TransferRequestArgs, TransferTask, TransferUpdateArgs
from dirac_like.storage_access import StorageAccess, XrootdStorage, third_party_copy

from .agent_metrics import TransferAgentMetrics

log = logging.getLogger(__name__)

TRANSFER_RETRIES = RetryPolicy(timeout=10.0, retries=5, backoff=0.5, max_backoff=5.0)
ACTIVE, DONE, FAILED = "Active", "Done", "Failed"


@dataclass(frozen=True)
class TransferAgentConfig:
    name: str  # the agent's name (its identity's name when the service runs secure)
    idle_interval: float = 5.0  # seconds between requests that found nothing to do
    metrics_listen: str = ""  # HOST:PORT of its /metrics ('' : none; port 0: a free one)


def default_agent_name() -> str:
    return f"transfer-{socket.gethostname()}".replace(".", "-")[:64]


def copy_replica(source: StorageAccess, destination: StorageAccess, lfn: str) -> str:
    """Copy ``lfn``; returns how ("third-party" or "streamed")."""
    if isinstance(source, XrootdStorage) and isinstance(destination, XrootdStorage):
        third_party_copy(source, destination, lfn)
        return "third-party"
    destination.write(lfn, source.read(lfn))
    return "streamed"


class LeaseLost(Exception):
    """The service gave this transfer to someone else (our lease ran out)."""


class TransferAgent:
    def __init__(
        self, client: Client, config: TransferAgentConfig, data: DataManager | None = None
    ) -> None:
        self.client = client
        self.config = config
        self.data = data or DataManager(client)
        self.stopping = threading.Event()
        self._worker = ThreadPoolExecutor(1, thread_name_prefix="copy")
        self.metrics = TransferAgentMetrics(config.name)
        self.metrics_endpoint: MetricsEndpoint | None = None

    def serve_metrics(self) -> str:
        """Open /metrics on ``metrics_listen`` ('' there: not at all); returns its URL."""
        if not self.config.metrics_listen or self.metrics_endpoint is not None:
            return self.metrics_endpoint.url if self.metrics_endpoint else ""
        self.metrics_endpoint = serve_metrics(
            self.config.metrics_listen, self.metrics.registry, "--metrics-listen"
        )
        log.info("transfer agent %s: metrics on %s", self.config.name, self.metrics_endpoint.url)
        return self.metrics_endpoint.url

    # -- one step --------------------------------------------------------------------------------

    def run_once(self) -> int:
        """Lease at most one request and carry it out; returns how many were handled."""
        tasks: list[TransferTask] = self.client.call(
            Op.TRANSFER_REQUEST, TransferRequestArgs(self.config.name, 1)
        )
        if tasks:
            self.data.refresh()  # SE statuses as they are now, not as when the agent started
        for task in tasks:
            started = time.monotonic()
            outcome = self.execute(task)
            link = f"{task.source} -> {task.destination}"
            self.metrics.observe(outcome, link, task.size, time.monotonic() - started)
        return len(tasks)

    def execute(self, task: TransferTask) -> str:
        """Carry out one leased transfer; returns the status reported (or "Lost")."""
        where = f"transfer {task.transfer_id} ({task.lfn} {task.source} -> {task.destination})"
        try:
            self._report(task, ACTIVE)
            how = self._copy_renewing(task)
            self._verify(task)
            self._report(task, DONE, size=task.size, adler32=task.adler32)
            log.info("%s done (%s copy, checked)", where, how)
            return DONE
        except LeaseLost as exc:
            log.warning("%s: %s; left to its new holder", where, exc)
            return "Lost"
        except (StorageError, DiracLikeError) as exc:
            if isinstance(exc, ServiceUnavailable):
                raise
            log.warning("%s failed: %s", where, exc)
            try:
                self._report(task, FAILED, reason=str(exc)[:500] or type(exc).__name__)
            except LeaseLost:
                return "Lost"
            return FAILED

    def _copy_renewing(self, task: TransferTask) -> str:
        """The copy runs in the worker thread; this thread renews the lease meanwhile."""
        source = self.data.access(task.source)
        destination = self.data.writable(task.destination)
        future: Future[str] = self._worker.submit(copy_replica, source, destination, task.lfn)
        renew_every = max(task.lease / 3, 0.5)
        while True:
            try:
                return future.result(timeout=renew_every)
            except TimeoutError:
                self._report(task, ACTIVE)

    def _verify(self, task: TransferTask) -> None:
        """The destination's own size and adler32 are the catalog's, else the copy goes."""
        destination = self.data.access(task.destination)
        there = destination.info(task.lfn)
        if (there.size, there.adler32) != (task.size, task.adler32):
            destination.remove(task.lfn)
            raise ChecksumMismatch(
                f"copy on {task.destination} has size {there.size} adler32 "
                f"{there.adler32}, the catalog says {task.size} and "
                f"{task.adler32} (copy deleted)"
            )

    def _report(
        self, task: TransferTask, status: str, reason: str = "", size: int = -1, adler32: str = ""
    ) -> None:
        try:
            self.client.call(
                Op.TRANSFER_UPDATE,
                TransferUpdateArgs(
                    task.transfer_id,
                    task.attempt,
                    self.config.name,
                    status,
                    task.source,
                    reason,
                    size,
                    adler32,
                ),
            )
        except IllegalTransition as exc:  # StaleAttempt included: not ours any more
            raise LeaseLost(exc.message) from None

    # -- the loop --------------------------------------------------------------------------------

    def run(self) -> int:
        """Until SIGTERM/SIGINT (the transfer under way is finished first). Returns 0."""
        log.info("transfer agent %s started", self.config.name)
        while not self.stopping.is_set():
            try:
                busy = self.run_once()
            except ServiceUnavailable as exc:
                log.warning("transfer agent %s: %s", self.config.name, exc.message)
                self.metrics.unreachable.labels(self.config.name).inc()
                busy = 0
            if not busy:
                self.stopping.wait(self.config.idle_interval)
        self._worker.shutdown(wait=True)
        if self.metrics_endpoint is not None:
            self.metrics_endpoint.close()
        log.info("transfer agent %s stopped", self.config.name)
        return 0

    def install_signal_handlers(self) -> None:
        def on_signal(signum: int, frame: FrameType | None) -> None:
            log.info("%s: stopping after the current transfer", signal.Signals(signum).name)
            self.stopping.set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
