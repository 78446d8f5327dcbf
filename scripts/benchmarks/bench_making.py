#!/usr/bin/env python3
"""The central service's own cost, in process, in CPU seconds of the thread (less sensitive to a
loaded machine than the wall clock): making a big submission, and loading a store at start-up.

    python scripts/benchmarks/bench_making.py submit --jobs 100000
    python scripts/benchmarks/bench_making.py load HOME/jobs.sqlite

``submit``: a ``CentralState`` on a fresh SQLite file (synchronous=full) gets one parametric
submission of ``--jobs`` jobs; every slice is made and committed, as the service loop would.
Printed: CPU seconds to check it whole (parse, prepare), to make the slices, to commit them.

``load``: the store's ``load()`` and the ``CentralState`` built from it, as at a restart: CPU
and wall seconds, and the resident memory it added per job (SQLite's page cache included).
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from pathlib import Path

import psutil  # type: ignore[import-untyped, unused-ignore]  # no stubs installed

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scratch import add_keep_option, scratch_folder

from dirac_like.config import Config
from dirac_like.services.state import CentralState
from dirac_like.store.sqlite import SqliteStore


def commit(state: CentralState, store: SqliteStore) -> None:
    changes = state.take_changes()
    store.commit(changes)
    state.committed(changes)


def submit(jobs: int) -> None:
    folder = scratch_folder("bench-making-")
    store = SqliteStore(folder / "jobs.sqlite", synchronous="full")
    state = CentralState(Config(), store, store.load(), time.time())
    jdl = f'Executable = "/bin/true"; Arguments = "event-%s"; Parameters = {jobs};'
    gc.set_threshold(100_000, 50, 100)  # as the service runs
    started = time.thread_time()
    state.submit([jdl], "bulk", "lhcb_mc", time.time())
    checked = time.thread_time()
    commit(state, store)
    made = committed = 0.0
    while state.expansions.pending:
        before = time.thread_time()
        state.expand_slice(time.time())
        middle = time.thread_time()
        commit(state, store)
        made += middle - before
        committed += time.thread_time() - middle
    total = time.thread_time() - started
    store.close()
    print(
        f"{jobs:,} jobs: check {checked - started:.2f} s, make {made:.2f} s, commit "
        f"{committed:.2f} s (+ first slice): {total:.2f} CPU s, {jobs / total:,.0f} jobs per CPU s"
    )


def load(path: Path) -> None:
    process = psutil.Process()
    gc.set_threshold(100_000, 50, 100)
    store = SqliteStore(path, synchronous="full")
    gc.collect()
    before = process.memory_info().rss
    wall, cpu = time.perf_counter(), time.thread_time()
    state = CentralState(Config(), store, store.load(), time.time())
    gc.collect()
    wall, cpu = time.perf_counter() - wall, time.thread_time() - cpu
    count = len(state.jobs)
    added = (process.memory_info().rss - before) / count
    print(f"{count:,} jobs: load and state {cpu:.2f} CPU s ({wall:.2f} s wall), {added:,.0f} B/job")
    store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_keep_option(parser)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("submit").add_argument("--jobs", type=int, default=100_000)
    commands.add_parser("load").add_argument("store", type=Path)
    args = parser.parse_args()
    if args.command == "submit":
        submit(args.jobs)
    else:
        load(args.store)


if __name__ == "__main__":
    main()
