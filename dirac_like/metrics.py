"""The Prometheus ``/metrics`` endpoint every dirac-like daemon can open (prometheus-client's own
HTTP server, in its own thread).

Each daemon keeps its metrics in a :class:`~prometheus_client.CollectorRegistry` of its own (not
the library's global one: several daemons may live in one test process) and opens it with
:func:`serve_metrics` on ``host:port`` (loopback by default; port 0: a free port, which the
returned endpoint's ``url`` says). The daemon prints and logs that URL when it starts.

What goes into metrics: counts and timings by operation, status, site, CE, group and state. Never
user names, pilot ids, keys or tokens (tests/integration/test_metrics.py checks a scrape).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from threading import Thread
from typing import Any

from prometheus_client import CollectorRegistry, disable_created_metrics, start_http_server

from dirac_like.config import parse_listen
from dirac_like.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass
class MetricsEndpoint:
    """A running /metrics HTTP server."""

    host: str
    port: int
    _server: Any
    _thread: Thread

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)


def serve_metrics(
    listen: str, registry: CollectorRegistry, where: str = "metrics.listen"
) -> MetricsEndpoint:
    """Serve ``registry`` on ``listen`` (``host:port``); ConfigError if it cannot bind."""
    host, port = parse_listen(listen, where)
    disable_created_metrics()  # no *_created series beside every counter (process-wide)
    try:
        server, thread = start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        raise ConfigError(f"{where}: cannot listen on {listen}: {exc.strerror}") from None
    endpoint = MetricsEndpoint(host, server.server_port, server, thread)
    log.info("metrics on %s", endpoint.url)
    return endpoint
