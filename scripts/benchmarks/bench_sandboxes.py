#!/usr/bin/env python3
"""Sandbox store throughput: files in the home (a lone service) against PostgreSQL (a pair,
services/shared_sandboxes.py), side by side in one run (issue 18, §3).

    python scripts/benchmarks/bench_sandboxes.py                 # 32 MiB archives, 1 MiB chunks
    python scripts/benchmarks/bench_sandboxes.py --size-mib 8 --archives 20 --postgres URL

Each archive (random bytes: archives are compressed already) is uploaded in chunks as the service
receives them (write_chunk, checked and kept at the end), then downloaded in chunks (read_chunk).
Without --postgres a throw-away durable server is started (scripts/postgres-local.sh, DURABLE=1).
PostgreSQL is measured twice: unfenced, and fenced as a pair's leader writes (each write checks
that the leader's session still holds the lock: dirac_like/store/postgres_pair.py LeaderFence).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from scratch import add_keep_option, scratch_folder
from throwaway_postgres import new_database, postgres_server

from dirac_like.sandbox import SandboxStore
from dirac_like.services.shared_sandboxes import PostgresSandboxStore
from dirac_like.store.base import open_store
from dirac_like.store.postgres_pair import LEADER_LOCK, TRY_LEADER_LOCK, LeaderFence

MIB = 1024 * 1024


def measure(store: SandboxStore, archives: list[bytes], chunk: int) -> tuple[float, float]:
    """MiB/s uploading, MiB/s downloading ``archives`` through ``store``."""
    total = sum(len(data) for data in archives) / MIB
    started = time.perf_counter()
    for index, data in enumerate(archives):
        sha256 = hashlib.sha256(data).hexdigest()
        for offset in range(0, len(data), chunk):
            piece = data[offset : offset + chunk]
            store.write_chunk(sha256, len(data), offset, piece, uploader=f"user{index}")
    uploaded = time.perf_counter() - started
    started = time.perf_counter()
    for data in archives:
        sha256 = hashlib.sha256(data).hexdigest()
        read = b"".join(
            store.read_chunk(sha256, offset, chunk)[0] for offset in range(0, len(data), chunk)
        )
        assert read == data
    downloaded = time.perf_counter() - started
    return total / uploaded, total / downloaded


def measure_postgres(
    url: str, archives: list[bytes], chunk: int, limit: int, fenced: bool
) -> tuple[float, float]:
    """``measure`` on a new store at ``url``; ``fenced``: as a leader's (it holds the lock)."""
    import psycopg

    open_store(url).close()  # the sandboxes' tables are the store's schema
    with psycopg.connect(url, autocommit=True) as leader:
        fence = None
        if fenced:
            leader.execute(TRY_LEADER_LOCK, (LEADER_LOCK,))
            fence = LeaderFence(leader.info.backend_pid)
        store = PostgresSandboxStore(url, limit, time.time, fence)
        try:
            return measure(store, archives, chunk)
        finally:
            store.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mib", type=int, default=32)
    parser.add_argument("--archives", type=int, default=4)
    parser.add_argument("--chunk-mib", type=int, default=1)
    parser.add_argument("--postgres", default="", help="a server URL (default: a throw-away one)")
    add_keep_option(parser)
    args = parser.parse_args()
    archives = [os.urandom(args.size_mib * MIB) for _ in range(args.archives)]
    chunk = args.chunk_mib * MIB
    limit = args.size_mib * MIB
    files = measure(SandboxStore(scratch_folder("bench-sandboxes-"), limit), archives, chunk)
    with postgres_server(args.postgres) as url:
        database = measure_postgres(new_database(url), archives, chunk, limit, fenced=False)
        fenced = measure_postgres(new_database(url), archives, chunk, limit, fenced=True)
    print(f"{args.archives} archives of {args.size_mib} MiB in {args.chunk_mib} MiB chunks")
    for name, (up, down) in (("files", files), ("postgresql", database), ("pg fenced", fenced)):
        print(f"{name + ':':12} upload {up:7.1f} MiB/s   download {down:7.1f} MiB/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
