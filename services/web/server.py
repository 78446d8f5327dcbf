"""``dirac-like service web``: the dashboard as a daemon (waitress, a production WSGI server).

It runs beside the central service, on its home: it reads the store read-only (the SQLite file,
or the PostgreSQL database of a pair: ``store.url``), the identity registry and the service's keys
(to check login tokens), and sends kill and reschedule to the
central service over ZeroMQ with an identity of its own (``--identity``; without one it is
read-only). One line ``dirac-like web listening on http://HOST:PORT/`` on stdout says where it
listens (port 0: a free one). A sampler thread records the realised shares every
``--sample-seconds`` for the timeline plot. SIGTERM or Ctrl-C: stop serving, exit 0.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from waitress.server import create_server

from dirac_like.client import Client, RetryPolicy
from dirac_like.config import Config
from dirac_like.errors import ConfigError, DiracLikeError
from dirac_like.identity import Identity
from dirac_like.protocol import WhyReply
from dirac_like.registry import load_service_keys
from dirac_like.store.base import is_postgres_url

from .accounting_panels import AccountingPlots
from .app import create_app
from .auth import Gate, StoredRegistry
from .dashboard import AccountingSource, Dashboard, WebSettings

log = logging.getLogger(__name__)

DEFAULT_LISTEN = "127.0.0.1:7780"
ACTION_POLICY = RetryPolicy(timeout=5.0, retries=2, backoff=0.1, max_backoff=1.0)
SERVER_THREADS = 4


@dataclass(frozen=True)
class WebOptions:
    listen: str = DEFAULT_LISTEN
    server: str = ""  # the central service's endpoint ('' : the identity's, else the config's)
    refresh_seconds: float = 5.0
    sample_seconds: float = 10.0


class CentralActions:
    """Kill and reschedule through the central service, with the dashboard's identity."""

    def __init__(self, server: str, identity: Identity) -> None:
        self.server = server
        self.identity = identity

    def kill(self, job_ids: list[int]) -> str:
        with Client(self.server, ACTION_POLICY, identity=self.identity) as client:
            reply = client.kill(job_ids)
        if reply.killed:
            return f"killed job(s) {', '.join(map(str, reply.killed))}"
        if reply.kill_requested:
            return f"kill sent to the pilot of job(s) {', '.join(map(str, reply.kill_requested))}"
        return "nothing to kill: the job has ended"

    def why(self, job_id: int) -> WhyReply:
        with Client(self.server, ACTION_POLICY, identity=self.identity) as client:
            [reply] = client.why([job_id])
        return reply

    def reschedule(self, job_ids: list[int]) -> str:
        with Client(self.server, ACTION_POLICY, identity=self.identity) as client:
            reply = client.reschedule(job_ids)
        if reply.rescheduled:
            return f"rescheduled job(s) {', '.join(map(str, reply.rescheduled))}"
        return "nothing rescheduled"


def parse_listen(listen: str) -> tuple[str, int]:
    """``HOST:PORT`` (or ``http://HOST:PORT``) as (host, port); ConfigError if it is not one."""
    host, _, port = listen.removeprefix("http://").rstrip("/").rpartition(":")
    if not host or not port.isdigit() or int(port) > 65535:
        raise ConfigError(f"--listen {listen!r}: expected HOST:PORT, e.g. 127.0.0.1:0")
    return host.strip("[]"), int(port)


def build_dashboard(
    config: Config,
    home: Path,
    identity: Identity | None,
    options: WebOptions,
    accounting: AccountingSource | None = None,
) -> Dashboard:
    keys = load_service_keys(home)
    settings = WebSettings(
        home=home,
        store_url=config.store_url(home),
        shares=config.shares,
        refresh_seconds=options.refresh_seconds,
        sandbox_max_bytes=config.sandboxes.max_output_bytes,
    )
    actions = None
    if identity is not None:
        server = options.server or identity.server or config.service.listen
        actions = CentralActions(server, identity)
    gate = Gate(home, keys.secret)
    dashboard = Dashboard(settings, gate, actions, accounting)
    if is_postgres_url(settings.store_url):  # a pair: whom the leader admits, wherever it runs
        gate.stored = StoredRegistry(dashboard.reader.reading)
    dashboard.reader.check()  # StoreError: no store file, no database server answering
    if accounting is None:
        dashboard.accounting = AccountingPlots(settings.store_url, dashboard.reader)
    return dashboard


def run_web(config: Config, home: Path, identity: Identity | None, options: WebOptions) -> int:
    dashboard = build_dashboard(config, home, identity, options)
    host, port = parse_listen(options.listen)
    dashboard.warm_up()  # a million jobs take a second or two to count: not on a page's time
    server = create_server(
        create_app(dashboard), host=host, port=port, threads=SERVER_THREADS, ident="dirac-like"
    )
    stop = threading.Event()
    sampler = threading.Thread(
        target=_sample, args=(dashboard, options, stop), daemon=True, name="dashboard-refresh"
    )
    sampler.start()
    if identity is None:
        log.warning("no identity: the dashboard is read-only (kill and reschedule disabled)")
    print(f"dirac-like web listening on http://{host}:{server.effective_port}/", flush=True)
    log.info("web dashboard on http://%s:%s/ for the home %s", host, server.effective_port, home)
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        server.run()  # returns when SIGTERM or Ctrl-C interrupts it
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        stop.set()
        server.close()
        sampler.join(5.0)
    log.info("web dashboard stopped")
    return 0


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _sample(dashboard: Dashboard, options: WebOptions, stop: threading.Event) -> None:
    """Every refresh period, count the jobs again (while someone looks at them: see
    :meth:`Dashboard.refresh_counts`); every sample period, record the realised shares. A
    count that took long is not repeated sooner than 4 times its own duration, so a big store
    costs the machine at most a fifth of a core."""
    next_sample = 0.0
    while not stop.is_set():
        started = time.monotonic()
        try:
            if started >= next_sample:
                dashboard.sample()
                next_sample = started + options.sample_seconds
            dashboard.refresh_counts()
        except DiracLikeError as exc:
            log.warning("dashboard refresh skipped: %s", exc.message)
        took = time.monotonic() - started
        stop.wait(max(0.1, options.refresh_seconds - took, 4 * took))
