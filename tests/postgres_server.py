"""A real PostgreSQL server for the tests (a pytest plugin, loaded by tests/conftest.py).

The session-scoped fixture ``postgres_server`` starts one throw-away server with
``scripts/postgres-local.sh`` the first time a test asks for it (on a free loopback port, in a
folder made directly in /tmp: the server runs as the ``postgres`` user and must enter it). It is
stopped by its PID when the session ends, pass or fail; should the session die before that, the
script's watcher stops it (``WATCH_PID``). ``postgres_url`` gives each test a store of its own:
a new schema of the server's database, named in the URL (``options=-csearch_path=NAME``), as
isolated as a database of its own (nothing a store does names a schema) but made in milliseconds
where CREATE DATABASE takes 0.3 to 0.7 s on a loaded 2-core machine.

Without PostgreSQL installed (or without psycopg) the tests that use it skip, saying how to
install it; under ``CI=true`` they fail instead (CI must run them).
"""

from __future__ import annotations

import itertools
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "postgres-local.sh"
SCRIPT_TIMEOUT = 120.0
_numbers = itertools.count(1)


@dataclass
class PostgresServer:
    """A running server: its folder and the URL of its main database (role ``dirac``)."""

    base: Path
    url: str

    def schema_url(self, name: str) -> str:
        """The URL of the server's database with ``name`` as the only schema searched."""
        return urlunsplit(urlsplit(self.url)._replace(query=f"options=-csearch_path%3D{name}"))

    def new_store_url(self, prefix: str = "test") -> str:
        """Create an empty schema; returns the URL of a store kept in it."""
        import psycopg

        name = f"{prefix}_{os.getpid()}_{next(_numbers)}"
        with psycopg.connect(self.url, autocommit=True) as connection:
            connection.execute(f"CREATE SCHEMA {name}")
        return self.schema_url(name)

    def start(self) -> None:
        """Start the server (again, on its data and port, if it was stopped)."""
        started = _script("start", str(self.base), env={"WATCH_PID": str(os.getpid())})
        if started.returncode != 0:
            pytest.fail(f"PostgreSQL did not start:\n{started.stderr}", pytrace=False)
        self.url = started.stdout.strip()

    def stop(self) -> None:
        """Stop the server by the PID in its postmaster.pid (its data is kept)."""
        stopped = _script("stop", str(self.base))
        assert stopped.returncode == 0, f"stopping PostgreSQL failed: {stopped.stderr}"

    def restart(self) -> None:
        self.stop()
        self.start()


def unreachable_url(password: str = "secret-word") -> str:
    """The URL of a PostgreSQL server that is not there: a loopback port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    return f"postgresql://dirac:{password}@127.0.0.1:{port}/dirac"


def postgres_installed() -> bool:
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return False
    return any(Path("/usr/lib/postgresql").glob("*/bin/initdb")) or bool(shutil.which("initdb"))


def _script(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=SCRIPT_TIMEOUT,
        check=False,
        stdin=subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
    )


def require_postgres() -> None:
    if postgres_installed():
        return
    message = (
        "PostgreSQL or psycopg is not installed: run `bash scripts/postgres-local.sh install` "
        "as root and `pip install -e '.[test]'` to enable the PostgreSQL tests"
    )
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true: {message}", pytrace=False)
    pytest.skip(message)


def start_server() -> PostgresServer:
    """A new server in a folder of its own (the caller stops it and removes the folder)."""
    server = PostgresServer(Path(tempfile.mkdtemp(prefix="dirac-like-pg-")), url="")
    server.base.chmod(0o755)
    server.start()
    return server


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One running PostgreSQL server for the whole session."""
    require_postgres()
    server = start_server()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.base, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """The URL of a new, empty store for this test (a schema of its own)."""
    return postgres_server.new_store_url()
