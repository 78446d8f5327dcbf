"""Reading a store read-only (dirac_like/store/reading.py) on SQLite and on a real PostgreSQL
(what was tests/integration/test_web_reader.py, now on both stores):
the same records committed to both give the same reports and the same dashboard reads, the
reader cannot write, a reader whose session the server dropped reconnects, and a store that is
missing, too old or unreachable is a StoreError that says which."""

from __future__ import annotations

import random
from pathlib import Path

import psycopg
import pytest
from postgres_server import unreachable_url

from dirac_like.accounting import (
    DAY,
    HOUR,
    JobAccountingRecord,
    ReportQuery,
    TransferAccountingRecord,
    retention_cutoffs,
)
from dirac_like.errors import StoreError
from dirac_like.model import ChangeSet, HistoryEntry, SharedHistory
from dirac_like.monitoring import CheckStatus, ProbeResult, TargetKind
from dirac_like.services.accounting_store import AccountingReader
from dirac_like.services.web.reader import StoreReader
from dirac_like.store.postgres import PostgresStore
from dirac_like.store.reading import open_reading
from dirac_like.store.sqlite import SqliteStore

NOW = 400 * DAY + 5 * HOUR + 17.0  # not on a day's boundary: reports start mid-day
QUERIES = [  # (metric, by, since, step): daily, weekly, hourly and 6-hourly steps
    ("jobs", "site", 60 * DAY, DAY),
    ("core-hours", "group", 60 * DAY, 7 * DAY),
    ("cpu-efficiency", "user", 60 * DAY, DAY),
    ("failed", "exit-code", 10 * DAY, 6 * HOUR),
    ("wall-hours", "status", 3 * DAY, HOUR),
    ("jobs", "site", 60 * DAY, HOUR),  # hours where kept, days before them
    ("transfer-bytes", "link", 60 * DAY, DAY),
    ("transfers", "status", 3 * DAY, 6 * HOUR),
]


def job_records(count: int) -> list[JobAccountingRecord]:
    rng = random.Random(18)
    records = []
    for job_id in range(1, count + 1):
        failed = rng.random() < 0.2
        wall = rng.uniform(60.0, 7200.0)
        cores = rng.choice((1, 4, 8))
        records.append(
            JobAccountingRecord(
                job_id, 1, f"user{rng.randrange(3)}", f"group{rng.randrange(2)}",
                f"LCG.Site{rng.randrange(3)}.org", "ce1", "p",
                "Failed" if failed else "Done", "", rng.choice((2, 137)) if failed else 0,
                cores, wall * cores * rng.uniform(0.3, 1.0), wall, 100.0, 0, 0, 0.0, 0.0,
                NOW - 50 * DAY * rng.random() ** 2,  # more of them recent
            )
        )  # fmt: skip
    return records


def transfer_records(count: int) -> list[TransferAccountingRecord]:
    rng = random.Random(7)
    return [
        TransferAccountingRecord(
            n, f"/vo/f{n}", "alice", f"SE{rng.randrange(2)}", "SE-DEST",
            rng.choice(("Done", "Done", "Failed")), "", rng.randrange(10**9), 1, 0.0, 0.0,
            NOW - 20 * DAY * rng.random(),
        )
        for n in range(1, count + 1)
    ]  # fmt: skip


def probe_results() -> list[ProbeResult]:
    def check(name: str, status: CheckStatus, time: float, ce: str = "ce1") -> ProbeResult:
        return ProbeResult("LCG.A.org", TargetKind.SITE, name, status, "", time, ce, int(time))

    return [
        check("started", CheckStatus.OK, 10.0),
        check("scratch", CheckStatus.CRITICAL, 10.0),
        check("cpu", CheckStatus.WARNING, 10.0),
        check("started", CheckStatus.OK, 20.0),
        check("memory", CheckStatus.WARNING, 20.0),
        check("started", CheckStatus.UNKNOWN, 30.0, ce="ce2"),
        check("health:pilots", CheckStatus.WARNING, 40.0),
        check("started", CheckStatus.OK, 1.0),  # before the range
    ]


SUBMITTED = (
    HistoryEntry(0, "Received", "Job accepted", "", 5.0, "JobManager"),
    HistoryEntry(0, "Waiting", "Pilot Agent Submission", "", 5.0, "JobScheduling"),
)
MATCHED = HistoryEntry(21, "Matched", "Assigned", "", 9.0, "Matcher")


@pytest.fixture
def stores(tmp_path: Path, postgres_url: str) -> dict[str, str | Path]:
    """The same records committed to an SQLite file and a PostgreSQL store, hourly buckets
    older than 10 days folded into days: name -> what the readers take."""
    changes = [
        ChangeSet(
            job_accounting=job_records(400),
            transfer_accounting=transfer_records(60),
            probe_results=probe_results(),
        ),
        ChangeSet(accounting_retention=retention_cutoffs(NOW, 30 * DAY, 10 * DAY)),
        # after the retention step (which drops samples older than its cutoff)
        ChangeSet(usage_samples=[(7, 1, 5.0, 1.5, 100.0), (7, 1, 65.0, 30.5, 180.0)]),
        # jobs 20..29 made together (one run of shared history), then job 21 matched
        ChangeSet(shared_history=[SharedHistory(20, 29, SUBMITTED)]),
        ChangeSet(history=[MATCHED]),
    ]
    sqlite_path = tmp_path / "jobs.sqlite"
    for store in (SqliteStore(sqlite_path), PostgresStore(postgres_url)):
        try:
            for change in changes:
                store.commit(change)
        finally:
            store.close()
    return {"sqlite": sqlite_path, "postgresql": postgres_url}


def test_reports_are_the_same_on_sqlite_and_postgresql(stores: dict[str, str | Path]) -> None:
    reports = {}
    for name, store in stores.items():
        with AccountingReader(store) as reader:
            reports[name] = [
                reader.report(ReportQuery.make(metric, by, since, step, NOW))
                for metric, by, since, step in QUERIES
            ]
            reports[name + " raw"] = [reader.jobs(since=NOW - 20 * DAY, limit=50)]
    for sqlite, postgresql, query in zip(
        reports["sqlite"], reports["postgresql"], QUERIES, strict=True
    ):
        assert sqlite.totals, f"{query}: nothing to compare"
        assert (postgresql.times, postgresql.series, postgresql.totals) == (
            sqlite.times,
            sqlite.series,
            sqlite.totals,
        ), query
    assert reports["sqlite raw"] == reports["postgresql raw"]


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_dashboard_reads_sum_probe_runs_and_usage_samples(
    stores: dict[str, str | Path], kind: str
) -> None:
    reader = StoreReader(stores[kind])
    try:
        runs = reader.probe_outcomes(since=5.0)
        assert [(run.time, run.ce, run.status) for run in runs] == [
            (10.0, "ce1", CheckStatus.CRITICAL),
            (20.0, "ce1", CheckStatus.WARNING),
            (30.0, "ce2", CheckStatus.UNKNOWN),
        ]
        assert [run.time for run in reader.probe_outcomes(since=5.0, limit=2)] == [20.0, 30.0]
        assert reader.usage_samples(7, 1) == [(5.0, 1.5, 100.0), (65.0, 30.5, 180.0)]
        assert reader.usage_samples(7, 2) == []
    finally:
        reader.close()


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_the_dashboard_reads_a_jobs_history_with_the_run_that_made_it(
    stores: dict[str, str | Path], kind: str
) -> None:
    reader = StoreReader(stores[kind])
    try:
        assert reader.history(21) == [entry._replace(job_id=21) for entry in SUBMITTED] + [MATCHED]
        assert reader.history(29) == [entry._replace(job_id=29) for entry in SUBMITTED]
        assert reader.history(30) == [] and reader.history(19) == []
    finally:
        reader.close()


def test_the_postgresql_reader_cannot_write(postgres_url: str) -> None:
    PostgresStore(postgres_url).close()  # the schema
    reading = open_reading(postgres_url)
    try:
        with pytest.raises(StoreError, match="read-only transaction"), reading.read() as db:
            db.execute("UPDATE schema_version SET version = 99")
        assert reading.schema_version() != 99
    finally:
        reading.close()


@pytest.mark.parametrize("snapshot", [True, False], ids=["transaction", "one-statement"])
def test_a_reader_whose_session_was_dropped_reconnects(postgres_url: str, snapshot: bool) -> None:
    PostgresStore(postgres_url).close()
    reading = open_reading(postgres_url)
    try:
        with reading.read(snapshot) as db:
            (pid,) = db.execute("SELECT pg_backend_pid()").fetchone()
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        with reading.read(snapshot) as db:  # the dead session found: a new one, no error
            (new_pid,) = db.execute("SELECT pg_backend_pid()").fetchone()
            assert db.execute("SHOW transaction_read_only").fetchone() == ("on",)
        assert new_pid != pid
    finally:
        reading.close()


def test_an_unreachable_missing_or_old_store_is_a_clear_error(
    tmp_path: Path, postgres_url: str
) -> None:
    dead = unreachable_url("secret-word")
    with pytest.raises(StoreError, match=r"cannot connect to store postgresql://dirac:\*\*\*@"):
        AccountingReader(dead)
    with pytest.raises(StoreError, match="cannot connect") as refused:
        StoreReader(dead).check()
    assert "secret-word" not in refused.value.message
    with pytest.raises(StoreError, match=r"no store .*missing\.sqlite"):
        AccountingReader(tmp_path / "missing.sqlite")
    with pytest.raises(StoreError, match=r"\(schema 0\) has no accounting yet"):
        AccountingReader(postgres_url)  # an empty database: no service ever ran on it
