"""Reading the accounting the central service writes into its store (the SQL side).

The central service writes the records and buckets in its own commits (dirac_like/store/sqlite.py,
in the same transaction as the final statuses). Readers here read the same store READ-ONLY, in
their own connection (:mod:`dirac_like.store.reading`: an SQLite file, or a PostgreSQL store
through the store's own translation of these statements), so a report, the ``dirac-like
accounting`` command or the web dashboard can run beside a live service (SQLite's WAL: readers
never block its writer, nor it them; PostgreSQL: a read-only snapshot).

- :meth:`AccountingReader.report` sums buckets (never raw records) into a
  :class:`~dirac_like.accounting.Report`: a year of hourly and daily buckets answers in well under a
  second (scripts/bench_accounting.py).
- :meth:`AccountingReader.jobs` / :meth:`AccountingReader.pilots` list raw records (kept for
  ``accounting.raw_retention``), newest first, filtered, bounded by ``limit``.

Every value goes to the database as a parameter; the only names put into SQL text come from a fixed
table here (:data:`JOB_FILTER_COLUMNS`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dirac_like.accounting import (
    DAY,
    HOUR,
    TRANSFER_METRICS,
    JobAccountingRecord,
    PilotAccountingRecord,
    Report,
    ReportQuery,
    TransferAccountingRecord,
    report_of,
)
from dirac_like.errors import InvalidArgument, StoreError
from dirac_like.store.reading import StoreReading, open_reading
from dirac_like.store.sqlite import JOB_ACCOUNTING_COLUMNS

# What a listing of raw job records may be filtered on (name -> column).
JOB_FILTER_COLUMNS = {
    "owner": "owner",
    "group": "grp",
    "site": "site",
    "status": "status",
    "job_id": "job_id",
}
MAX_LISTED = 100_000
ACCOUNTING_SCHEMA = 9  # 6: accounting; 9: transfers, and daily buckets of every day

# Daily buckets exist for every day, hourly ones for the last ``hourly_retention``: a report in
# whole days reads the daily ones only; a finer one reads the hourly ones, and the daily ones of
# the days before the first hourly day (those whose hours are gone).
_STEP = "? + CAST((start - ?) / ? AS INTEGER) * ? AS step_start, label"
_DAYS = f"period = {DAY}"
_HOURS = f"""(period = {HOUR} OR (period = {DAY} AND start < coalesce((SELECT
    CAST(min(start) / {DAY} AS INTEGER) * {DAY}.0 FROM {{table}} WHERE dimension = ? AND
    period = {HOUR}), 1e18)))"""
_JOB_SUMS = "sum(jobs), sum(failed), sum(cpu_seconds), sum(wall_seconds), sum(core_seconds)"
# transfer buckets hold (transfers, failed, bytes, seconds): summed into the first four places of
# the sums, where the transfer metrics read them
_TRANSFER_SUMS = "sum(transfers), sum(failed), sum(bytes), sum(seconds), 0"


def report_sql(table: str, sums: str, periods: str) -> str:
    return (
        f"SELECT {_STEP}, {sums} FROM {table} WHERE dimension = ? AND start >= ? AND start < ? "
        f"AND {periods.format(table=table)} GROUP BY step_start, label"
    )


def daily_sql(table: str, columns: str) -> str:
    """A report in steps of one day: one daily bucket per label and step, nothing to group."""
    return (
        f"SELECT start, label, {columns} FROM {table} WHERE dimension = ? AND start >= ? "
        f"AND start < ? AND {_DAYS}"
    )


DAILY_SQL = {
    False: daily_sql("accounting_buckets", "jobs, failed, cpu_seconds, wall_seconds, core_seconds"),
    True: daily_sql("transfer_buckets", "transfers, failed, bytes, seconds, 0"),
}
REPORT_SQL = {  # (transfers?, whole days?) -> SQL
    (False, True): report_sql("accounting_buckets", _JOB_SUMS, _DAYS),
    (False, False): report_sql("accounting_buckets", _JOB_SUMS, _HOURS),
    (True, True): report_sql("transfer_buckets", _TRANSFER_SUMS, _DAYS),
    (True, False): report_sql("transfer_buckets", _TRANSFER_SUMS, _HOURS),
}
_PILOT_COLUMNS = ", ".join(PilotAccountingRecord._fields)
_TRANSFER_COLUMNS = ", ".join(TransferAccountingRecord._fields)


class AccountingReader:
    """Read-only queries over a central service's store (a context manager): ``store`` is its
    URL (``store.url``: an SQLite file or ``postgresql://...``) or its file's Path. StoreError
    at once if the store is missing, unreachable or older than the accounting."""

    def __init__(self, store: str | Path) -> None:
        self._store: StoreReading = open_reading(store)
        self.name = self._store.name
        try:
            self._store.check(ACCOUNTING_SCHEMA, "accounting")
        except BaseException:
            self._store.close()
            raise

    def __enter__(self) -> AccountingReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._store.close()

    # -- reports ---------------------------------------------------------------------------------

    def report(self, query: ReportQuery) -> Report:
        """The report of ``query``, from the hourly and daily buckets."""
        parameters: tuple[Any, ...] = (
            query.start,
            query.start,
            query.step,
            query.step,
            query.by.value,
            query.start,
            query.end,
        )
        transfers = query.metric in TRANSFER_METRICS
        days = query.step % DAY == 0 and query.start % DAY == 0
        if query.step == DAY:
            sql, parameters = DAILY_SQL[transfers], (query.by.value, query.start, query.end)
        elif days:
            sql, parameters = REPORT_SQL[transfers, True], parameters
        else:  # the dimension again, for the first day with hourly buckets
            sql, parameters = REPORT_SQL[transfers, False], (*parameters, query.by.value)
        rows = self._rows(sql, parameters, "the accounting report")
        return report_of(query, ((row[0], str(row[1]), row[2:]) for row in rows))

    # -- raw records -----------------------------------------------------------------------------

    def jobs(
        self,
        since: float = 0.0,
        until: float = float("inf"),
        filters: Mapping[str, Any] | None = None,
        limit: int = 1000,
    ) -> list[JobAccountingRecord]:
        """Job records that ended in [since, until), newest first; ``filters`` by
        :data:`JOB_FILTER_COLUMNS` name (owner, group, site, status, job_id)."""
        conditions = ["ended >= ?", "ended < ?"]
        parameters: list[Any] = [since, until]
        for name, value in (filters or {}).items():
            column = JOB_FILTER_COLUMNS.get(name)
            if column is None:
                raise InvalidArgument(
                    f"cannot filter job records on {name!r} (only {', '.join(JOB_FILTER_COLUMNS)})"
                )
            conditions.append(f"{column} = ?")
            parameters.append(value)
        sql = (
            f"SELECT {', '.join(JOB_ACCOUNTING_COLUMNS)} FROM job_accounting WHERE "
            f"{' AND '.join(conditions)} ORDER BY ended DESC LIMIT ?"
        )
        rows = self._rows(sql, (*parameters, _limit(limit)), "job accounting records")
        return [JobAccountingRecord(*row[:-1]) for row in rows]

    def pilots(
        self,
        since: float = 0.0,
        until: float = float("inf"),
        site: str | None = None,
        limit: int = 1000,
    ) -> list[PilotAccountingRecord]:
        """Pilot records that ended in [since, until) (at ``site``), newest first."""
        condition = "ended >= ? AND ended < ?"
        parameters: list[Any] = [since, until]
        if site is not None:
            condition += " AND site = ?"
            parameters.append(site)
        sql = (
            f"SELECT {_PILOT_COLUMNS} FROM pilot_accounting WHERE {condition} "
            "ORDER BY ended DESC LIMIT ?"
        )
        rows = self._rows(sql, (*parameters, _limit(limit)), "pilot accounting records")
        return [PilotAccountingRecord(*row) for row in rows]

    def transfers(
        self,
        since: float = 0.0,
        until: float = float("inf"),
        status: str | None = None,
        limit: int = 1000,
    ) -> list[TransferAccountingRecord]:
        """Transfer records that ended in [since, until) (with ``status``), newest first."""
        condition = "ended >= ? AND ended < ?"
        parameters: list[Any] = [since, until]
        if status is not None:
            condition += " AND status = ?"
            parameters.append(status)
        sql = (
            f"SELECT {_TRANSFER_COLUMNS} FROM transfer_accounting WHERE {condition} "
            "ORDER BY ended DESC LIMIT ?"
        )
        rows = self._rows(sql, (*parameters, _limit(limit)), "transfer accounting records")
        return [TransferAccountingRecord(*row) for row in rows]

    def _rows(self, sql: str, parameters: tuple[Any, ...], what: str) -> list[Any]:
        try:
            with self._store.read(snapshot=False) as db:  # one statement
                rows: list[Any] = db.execute(sql, parameters).fetchall()
                return rows
        except StoreError as exc:
            raise StoreError(f"cannot read {what}: {exc.message}") from exc


def _limit(limit: int) -> int:
    if not 1 <= limit <= MAX_LISTED:
        raise InvalidArgument(f"limit must be 1 to {MAX_LISTED}, not {limit}")
    return limit
