"""Shared fixtures: a real central service in a child process, on a free loopback port."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from dirac_like.client import Client, RetryPolicy
from dirac_like.processes import ServiceProcess

pytest_plugins = ["slurm_cluster"]  # the slurm_cluster fixture (tests/slurm_cluster.py)

# No per-example time limit: on a loaded 2-core machine it only makes tests flaky (speed targets
# live in scripts/benchmarks/, never in tests).
settings.register_profile("dirac-like", deadline=None)
settings.load_profile("dirac-like")

FAST_RETRIES = RetryPolicy(timeout=5.0, retries=2, backoff=0.05, max_backoff=0.2)


@pytest.fixture
def start_central(tmp_path: Path) -> Iterator[Callable[..., ServiceProcess]]:
    """A factory: ``start_central(config_text=None, home=None)``; every service it started is
    stopped by PID when the test ends, pass or fail."""
    started: list[ServiceProcess] = []

    def start(
        config_text: str | None = None, home: Path | None = None, listen: str = "tcp://127.0.0.1:*"
    ) -> ServiceProcess:
        home = home or tmp_path / "home"
        config = None
        if config_text is not None:
            config = tmp_path / f"config-{len(started)}.toml"
            config.write_text(config_text)
        service = ServiceProcess.start_central(home, config, listen)
        started.append(service)
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

