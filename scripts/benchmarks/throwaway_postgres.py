"""A PostgreSQL server for the benchmarks (imported by bench_match.py and bench_store.py).

``postgres_server(url)`` yields the URL of a server whose role may create databases: ``url``
itself if given, else a throw-away server started with scripts/postgres-local.sh (DURABLE=1:
fsync on, as SQLite's synchronous=full) in a temporary folder, stopped by its PID and removed at
the end. ``new_database(url)`` makes an empty database there and returns its URL.
"""

from __future__ import annotations

import itertools
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from scratch import scratch_folder

SCRIPT = Path(__file__).resolve().parents[1] / "postgres-local.sh"
_numbers = itertools.count(1)


@contextmanager
def postgres_server(url: str = "") -> Iterator[str]:
    if url:
        yield url
        return
    base = scratch_folder("bench-pg-")
    base.chmod(0o755)
    script = ["bash", str(SCRIPT)]
    environment = {**os.environ, "DURABLE": "1", "WATCH_PID": str(os.getpid())}
    try:
        started = subprocess.run(
            [*script, "start", str(base)], capture_output=True, text=True, env=environment
        )
        if started.returncode != 0:
            raise SystemExit(f"PostgreSQL did not start: {started.stderr}")
        yield started.stdout.strip()
    finally:
        subprocess.run([*script, "stop", str(base)], capture_output=True, check=False)


def new_database(url: str, prefix: str = "bench") -> str:
    import psycopg

    name = f"{prefix}_{os.getpid()}_{next(_numbers)}"
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(f"CREATE DATABASE {name}")
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))
