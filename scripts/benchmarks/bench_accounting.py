#!/usr/bin/env python3
"""Accounting reports over many records: how long a report takes, and the cost of writing.

    python scripts/benchmarks/bench_accounting.py                       # 1,000,000 records
    python scripts/benchmarks/bench_accounting.py --records 10000000    # a busy grid's year
    python scripts/benchmarks/bench_accounting.py --dense               # every bucket full
    python scripts/benchmarks/bench_accounting.py --dense --store both  # SQLite and PostgreSQL

A fresh SQLite store (synchronous=normal: this measures SQL, not fsync) gets ``--records`` job
accounting records ending over the last year (``--groups`` groups, ``--users`` users in them,
``--sites`` sites, Done/Failed/Killed, a few exit codes), committed through the store's own path
in change sets of ``--batch`` records, as the service writes them: raw rows plus their sums into
hourly buckets, in the same transaction. Then the retention step runs once (raw records older than
``accounting.raw_retention`` deleted, hourly buckets older than ``accounting.hourly_retention``
folded into daily ones), and each report is timed (best of three; wall clock and this process's
CPU time, SQLite's included: on a shared machine the CPU time is the steadier figure) through
:class:`~services.accounting_store.AccountingReader`, as ``dirac-like accounting report`` runs it.

``--dense`` writes the buckets straight away instead, one for every label of every dimension in
every day of a year and every hour of the last ``hourly_retention``: the most buckets
any number of records can leave (10 million records a year, or a hundred million, leave no more:
a bucket holds sums, not records), so the reports' times are their worst case. Transfer buckets
(by link, status and user: ``--links`` links) are filled the same way.

``--store both`` fills an SQLite file and a PostgreSQL database (``--postgres-url``, else a
throw-away durable server started with scripts/postgres-local.sh) with the same records or
buckets, and times each report on one then the other, side by side in the same run (the ratio
is the figure to compare; the machine's load moves both). ``--store postgresql``: PostgreSQL
alone. The reader is the one ``dirac-like accounting report`` uses on either store.
"""

from __future__ import annotations

import argparse
import os
import random
import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from scratch import add_keep_option, scratch_folder
from throwaway_postgres import new_database, postgres_server

from dirac_like.accounting import DAY, HOUR, JobAccountingRecord, ReportQuery, retention_cutoffs
from dirac_like.config import AccountingConfig
from dirac_like.model import ChangeSet
from dirac_like.services.accounting_store import AccountingReader
from dirac_like.store import Store
from dirac_like.store.postgres import PostgresStore
from dirac_like.store.sqlite import SqliteStore

YEAR = 365 * DAY
REPORTS = [  # (metric, by, since, step)
    ("transfer-bytes", "link", YEAR, DAY),
    ("transfers", "status", 30 * DAY, DAY),
    ("jobs", "site", YEAR, DAY),
    ("core-hours", "group", YEAR, 7 * DAY),
    ("cpu-efficiency", "user", YEAR, DAY),
    ("failed", "exit-code", 30 * DAY, DAY),
    ("wall-hours", "status", 7 * DAY, 3600.0),
    ("jobs", "site", DAY, 3600.0),
]


def make_records(
    count: int, start_id: int, now: float, rng: random.Random, args: argparse.Namespace
) -> list[JobAccountingRecord]:
    records = []
    for offset in range(count):
        ended = now - YEAR * rng.random()
        group = rng.randrange(args.groups)
        user = group * 1000 + rng.randrange(max(1, args.users // args.groups))
        failed = rng.random() < 0.1
        wall = rng.uniform(60.0, 20000.0)
        cores = rng.choice((1, 1, 1, 4, 8))
        records.append(
            JobAccountingRecord(
                job_id=start_id + offset,
                attempt=1,
                owner=f"user{user}",
                group=f"group{group}",
                site=f"LCG.Site{rng.randrange(args.sites)}.org",
                ce="ce1",
                pilot_id="p",
                status="Failed" if failed else rng.choice(("Done", "Done", "Done", "Killed")),
                minor_status="",
                exit_code=rng.choice((1, 2, 137)) if failed else 0,
                cores=cores,
                cpu_seconds=wall * cores * rng.uniform(0.5, 1.0),
                wall_seconds=wall,
                peak_rss_mb=rng.uniform(100.0, 4000.0),
                input_bytes=0,
                output_bytes=0,
                submitted=ended - wall - 60.0,
                started=ended - wall,
                ended=ended,
            )
        )
    return records


def open_store(where: str | Path) -> Store:
    """The store at ``where`` (an SQLite file, or a PostgreSQL URL), synchronous=normal."""
    if isinstance(where, Path):
        return SqliteStore(where, synchronous="normal")
    return PostgresStore(where, synchronous="normal")


def fill(where: str | Path, args: argparse.Namespace, now: float) -> None:
    store = open_store(where)
    rng = random.Random(7)
    written, started = 0, time.perf_counter()
    try:
        while written < args.records:
            count = min(args.batch, args.records - written)
            records = make_records(count, written + 1, now, rng, args)
            store.commit(ChangeSet(job_accounting=records))
            written += count
        took = time.perf_counter() - started
        print(
            f"wrote {written:,} records in {took:.1f} s ({written / took:,.0f} records/s, "
            f"record making included)"
        )
        config = AccountingConfig()
        started = time.perf_counter()
        store.commit(
            ChangeSet(
                accounting_retention=retention_cutoffs(
                    now, config.raw_retention, config.hourly_retention
                )
            )
        )
        print(
            f"retention (raw > {config.raw_retention / DAY:g} d deleted, hourly > "
            f"{config.hourly_retention / DAY:g} d folded into daily): "
            f"{time.perf_counter() - started:.1f} s"
        )
    finally:
        store.close()


def fill_dense(where: str | Path, args: argparse.Namespace, now: float) -> None:
    """Every bucket a year can hold, for the labels of ``args``, written directly."""
    open_store(where).close()  # the schema
    config = AccountingConfig()
    cut = retention_cutoffs(now, config.raw_retention, config.hourly_retention).hourly_before
    starts = [(t, DAY) for t in range(int(now - YEAR) // DAY * DAY, int(now), DAY)]
    starts += [(t, HOUR) for t in range(int(cut), int(now), HOUR)]
    labels = {
        "group": args.groups,
        "user": args.users,
        "site": args.sites,
        "status": 4,
        "exit-code": 20,
    }
    transfer_labels = {"link": args.links, "status": 2, "user": args.users}

    def buckets(counts: dict[str, int], sums: tuple[Any, ...]) -> Iterator[tuple[Any, ...]]:
        for dimension, count in counts.items():
            for number in range(count):
                label = f"{dimension}-{number}"
                for start, period in starts:
                    yield (dimension, float(start), period, label, *sums)

    started = time.perf_counter()
    for table, rows in (
        ("accounting_buckets", buckets(labels, (10, 1, 3000.0, 4000.0, 5000.0))),
        ("transfer_buckets", buckets(transfer_labels, (10, 1, 10_000_000_000, 900.0))),
    ):
        insert_rows(where, table, rows)
    print(f"dense buckets written in {time.perf_counter() - started:.1f} s")


def insert_rows(where: str | Path, table: str, rows: Iterable[tuple[Any, ...]]) -> None:
    if isinstance(where, Path):
        with sqlite3.connect(where) as db:
            columns = len(db.execute(f"SELECT * FROM {table} LIMIT 0").description)
            marks = ", ".join("?" * columns)
            db.executemany(f"INSERT INTO {table} VALUES ({marks})", rows)
        return
    import psycopg

    with (
        psycopg.connect(where) as connection,
        connection.cursor() as cursor,
        cursor.copy(f"COPY {table} FROM STDIN") as copy,
    ):
        for row in rows:
            copy.write_row(row)


def bucket_counts(reader: AccountingReader) -> str:
    rows = reader._rows(
        "SELECT period, count(*) FROM accounting_buckets GROUP BY period "
        "UNION ALL SELECT -period, count(*) FROM transfer_buckets GROUP BY period",
        (),
        "bucket counts",
    )
    return ", ".join(f"{count:,} of {period // 3600} h" for period, count in rows)


def time_report(reader: AccountingReader, query: ReportQuery) -> tuple[float, float, Any]:
    """The best of three: (wall seconds, this process's CPU seconds, the report)."""
    best = cpu = float("inf")
    for _ in range(3):
        started, cpu_started = time.perf_counter(), time.process_time()
        report = reader.report(query)
        best = min(best, time.perf_counter() - started)
        cpu = min(cpu, time.process_time() - cpu_started)
    return best, cpu, report


def time_reports(stores: dict[str, str | Path], now: float) -> None:
    """Each report on each store in turn (side by side: the same load for both)."""
    with ExitStack() as stack:
        readers = {
            name: stack.enter_context(AccountingReader(where)) for name, where in stores.items()
        }
        for name, reader in readers.items():
            print(f"{name} buckets (transfers: -): {bucket_counts(reader)}")
        for metric, by, since, step in REPORTS:
            query = ReportQuery.make(metric, by, since, step, now)
            figures = {name: time_report(reader, query) for name, reader in readers.items()}
            shape = next(iter(figures.values()))[2]
            line = (
                f"  {metric:>14} by {by:<9} over {since / DAY:>4.0f} d, step "
                f"{step / 3600:>4.0f} h ({len(shape.series)} x {len(shape.times)}):"
            )
            for name, (best, cpu, _) in figures.items():
                line += f"  {name} {best * 1000:7.1f} ms (CPU {cpu * 1000:6.1f})"
            if len(figures) == 2:
                (first, *_), (second, *_) = figures.values()
                line += f"  ratio {second / first:5.2f}"
            print(line)


@contextmanager
def stores_of(args: argparse.Namespace, folder: Path) -> Iterator[dict[str, str | Path]]:
    stores: dict[str, str | Path] = {}
    if args.store in ("sqlite", "both"):
        stores["SQLite"] = folder / "jobs.sqlite"
    if args.store in ("postgresql", "both"):
        with postgres_server(args.postgres_url) as url:
            stores["PostgreSQL"] = new_database(url, "bench_accounting")
            yield stores
            return
    yield stores


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--groups", type=int, default=10)
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--sites", type=int, default=50)
    parser.add_argument("--links", type=int, default=100)
    parser.add_argument("--dense", action="store_true", help="every bucket full (see above)")
    parser.add_argument("--store", choices=("sqlite", "postgresql", "both"), default="sqlite")
    parser.add_argument(
        "--postgres-url", default="", help="a server whose role may create databases "
        "(default: a throw-away one)"
    )  # fmt: skip
    add_keep_option(parser)
    args = parser.parse_args()
    now = time.time()
    print(f"load average {' '.join(f'{load:.1f}' for load in os.getloadavg())}")
    folder = scratch_folder("bench-accounting-")
    with stores_of(args, folder) as stores:
        for name, where in stores.items():
            print(f"{name}:")
            if args.dense:
                fill_dense(where, args, now)
            else:
                fill(where, args, now)
        time_reports(stores, now)
    print(f"load average {' '.join(f'{load:.1f}' for load in os.getloadavg())}")


if __name__ == "__main__":
    main()
