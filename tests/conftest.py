"""Shared fixtures: a real central service in a child process, on a free loopback port.

The service runs secure, as in production: its home is initialized (service keys, an admin
identity) and ``DIRAC_LIKE_IDENTITY`` names that admin identity for the rest of the test, so
``Client(service.endpoint)`` and every process the test starts present it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import settings
from session_watch import stop_with_session

from dirac_like.client import Client
from dirac_like.processes import ServiceProcess
from dirac_like.testing import FAST_RETRIES

# fixtures: the slurm_cluster fixture (tests/slurm_cluster.py), web_grid (tests/web_grid.py),
# the XRootD storage elements (tests/xrootd_ses.py), a PostgreSQL server (tests/postgres_server.py)
pytest_plugins = ["slurm_cluster", "web_grid", "xrootd_ses", "postgres_server"]

# No per-example time limit: on a loaded 2-core machine it only makes tests flaky (speed targets
# live in scripts/benchmarks/, never in tests).
settings.register_profile("dirac-like", deadline=None)
settings.load_profile("dirac-like")


@pytest.fixture(autouse=True)
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test sees the developer's ~/.dirac-like or identity: ``DIRAC_LIKE_HOME`` is a fresh
    folder, ``DIRAC_LIKE_IDENTITY`` is unset until a test starts a service, and no
    ``DIRAC_LIKE_SERVER`` is inherited (each test names its own service)."""
    monkeypatch.setenv("DIRAC_LIKE_HOME", str(tmp_path / "default-home"))
    monkeypatch.delenv("DIRAC_LIKE_IDENTITY", raising=False)
    monkeypatch.delenv("DIRAC_LIKE_SERVER", raising=False)


@pytest.fixture
def start_central(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., ServiceProcess]]:
    """A factory: ``start_central(config_text=None, home=None, insecure=False)``; every service
    it started is stopped by PID when the test ends, pass or fail, or by a watcher should the
    session be killed first. A secure one's admin identity
    becomes ``$DIRAC_LIKE_IDENTITY``."""
    started: list[ServiceProcess] = []

    def start(
        config_text: str | None = None,
        home: Path | None = None,
        listen: str = "tcp://127.0.0.1:*",
        insecure: bool = False,
    ) -> ServiceProcess:
        home = home or tmp_path / "home"
        config = None
        if config_text is not None:
            config = tmp_path / f"config-{len(started)}.toml"
            config.write_text(config_text)
        service = ServiceProcess.start_central(home, config, listen, insecure=insecure)
        started.append(service)
        stop_with_session(service.pid)  # should the session be killed before the teardown
        if service.identity_path is not None:
            monkeypatch.setenv("DIRAC_LIKE_IDENTITY", str(service.identity_path))
        return service

    yield start
    for service in started:
        service.stop()


@pytest.fixture
def central(start_central: Callable[..., ServiceProcess]) -> ServiceProcess:
    """A running central service with the default configuration."""
    return start_central()


@pytest.fixture
def client(central: ServiceProcess) -> Iterator[Client]:
    with Client(central.endpoint, FAST_RETRIES) as connected:
        yield connected
