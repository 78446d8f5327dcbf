#!/usr/bin/env python3
"""Accounting reports over many records: how long a report takes, and the cost of writing.

    python scripts/benchmarks/bench_accounting.py                       # 1,000,000 records
    python scripts/benchmarks/bench_accounting.py --records 10000000    # a busy grid's year
    python scripts/benchmarks/bench_accounting.py --dense               # every bucket full

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
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import time
from pathlib import Path

from scratch import add_keep_option, scratch_folder

from dirac_like.accounting import DAY, HOUR, JobAccountingRecord, ReportQuery, retention_cutoffs
from dirac_like.config import AccountingConfig
from dirac_like.model import ChangeSet
from dirac_like.services.accounting_store import AccountingReader
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


def fill(path: Path, args: argparse.Namespace, now: float) -> None:
    store = SqliteStore(path, synchronous="normal")
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


def fill_dense(path: Path, args: argparse.Namespace, now: float) -> None:
    """Every bucket a year can hold, for the labels of ``args``, written directly."""
    SqliteStore(path, synchronous="normal").close()  # the schema
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
    started = time.perf_counter()
    with sqlite3.connect(path) as db:
        db.executemany(
            "INSERT INTO accounting_buckets VALUES (?, ?, ?, ?, 10, 1, 3000.0, 4000.0, 5000.0)",
            (
                (dimension, float(start), period, f"{dimension}-{number}")
                for dimension, count in labels.items()
                for number in range(count)
                for start, period in starts
            ),
        )
        transfer_labels = {"link": args.links, "status": 2, "user": args.users}
        db.executemany(
            "INSERT INTO transfer_buckets VALUES (?, ?, ?, ?, 10, 1, 10000000000, 900.0)",
            (
                (dimension, float(start), period, f"{dimension}-{number}")
                for dimension, count in transfer_labels.items()
                for number in range(count)
                for start, period in starts
            ),
        )
    print(f"dense buckets written in {time.perf_counter() - started:.1f} s")


def time_reports(path: Path, now: float) -> None:
    with AccountingReader(path) as reader:
        rows = reader._rows(
            "SELECT period, count(*) FROM accounting_buckets GROUP BY period "
            "UNION ALL SELECT -period, count(*) FROM transfer_buckets GROUP BY period",
            (),
            "bucket counts",
        )
        print(
            "buckets (transfers: -): "
            + ", ".join(f"{count:,} of {period // 3600} h" for period, count in rows)
        )
        for metric, by, since, step in REPORTS:
            query = ReportQuery.make(metric, by, since, step, now)
            best = cpu = float("inf")
            for _ in range(3):
                started, cpu_started = time.perf_counter(), time.process_time()
                report = reader.report(query)
                best = min(best, time.perf_counter() - started)
                cpu = min(cpu, time.process_time() - cpu_started)
            print(
                f"  {metric:>14} by {by:<9} over {since / DAY:>4.0f} d, step "
                f"{step / 3600:>4.0f} h: {best * 1000:7.1f} ms, CPU {cpu * 1000:7.1f} ms "
                f"({len(report.series)} series x {len(report.times)} steps)"
            )


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
    add_keep_option(parser)
    args = parser.parse_args()
    now = time.time()
    folder = scratch_folder("bench-accounting-")
    path = folder / "jobs.sqlite"
    if args.dense:
        fill_dense(path, args, now)
    else:
        fill(path, args, now)
    time_reports(path, now)


if __name__ == "__main__":
    main()
