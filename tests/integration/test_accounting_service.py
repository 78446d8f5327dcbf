"""Accounting with a real central service (its own process, real SQLite): a record per finished
attempt, committed with the final status, neither lost nor doubled across a crash and restart;
then ``dirac-like accounting report`` over that store as a user runs it."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from dirac_like.accounting import (
    Dimension,
    JobAccountingRecord,
    Metric,
    ReportQuery,
    retention_cutoffs,
)
from dirac_like.client import Client, RetryPolicy
from dirac_like.model import ChangeSet
from dirac_like.processes import ServiceProcess, dirac_like_argv
from dirac_like.protocol import JobUsage, PilotResources
from dirac_like.services.accounting_store import AccountingReader
from dirac_like.states import JobStatus
from dirac_like.store.sqlite import SqliteStore

FAST_RETRIES = RetryPolicy(timeout=5.0, retries=2, backoff=0.05, max_backoff=0.2)
CERN = PilotResources(site="LCG.CERN.cern", ce="ce1", cores=4)
USAGE = JobUsage(
    cpu_seconds=90.0,
    wall_seconds=100.0,
    peak_rss_mb=256.0,
    input_bytes=5,
    output_bytes=7,
    exit_code=0,
)


def run_jobs(client: Client, count: int, status: JobStatus, usage: JobUsage) -> list[int]:
    """Submit ``count`` jobs and take them, as pilot p1, to ``status``."""
    job_ids = client.submit(['Executable = "/bin/true";'] * count, owner="alice")
    for _ in job_ids:
        match = client.request_job("p1", CERN).job
        assert match is not None
        client.update_status(match.job_id, match.attempt, "p1", JobStatus.RUNNING, "Application")
        client.update_status(
            match.job_id, match.attempt, "p1", status, "Execution Complete", usage=usage
        )
    return job_ids


def reader(service: ServiceProcess) -> AccountingReader:
    return AccountingReader(service.home / "jobs.sqlite")


def test_records_survive_a_crash_and_a_repeated_report_does_not_double_them(
    start_central: Callable[..., ServiceProcess],
) -> None:
    service = start_central()
    with Client(service.endpoint, FAST_RETRIES) as client:
        done = run_jobs(client, 3, JobStatus.DONE, USAGE)
        failed = run_jobs(client, 1, JobStatus.FAILED, JobUsage(wall_seconds=10.0, exit_code=2))
    service.kill9()  # acknowledged, so durable: nothing may be missing after this

    service = start_central(home=service.home)
    with Client(service.endpoint, FAST_RETRIES) as client:
        # the pilot, unsure its report arrived, sends it again: the job is Done already
        client.update_status(done[0], 1, "p1", JobStatus.DONE, "Execution Complete", usage=USAGE)
        assert client.status([done[0]])[0].status == "Done"
    with reader(service) as accounting:
        records = accounting.jobs()
    assert sorted(record.job_id for record in records) == sorted(done + failed)
    record = next(r for r in records if r.job_id == done[0])
    assert (record.status, record.site, record.ce, record.cores) == ("Done", CERN.site, "ce1", 1)
    assert (record.cpu_seconds, record.wall_seconds, record.peak_rss_mb) == (90.0, 100.0, 256.0)
    assert (record.input_bytes, record.output_bytes, record.exit_code) == (5, 7, 0)


# Nine CLI processes one after the other: 53 s alone, over 90 s at load 22.
@pytest.mark.timeout(300)
def test_report_command_json_csv_and_plots(
    start_central: Callable[..., ServiceProcess], tmp_path: Path
) -> None:
    service = start_central()
    with Client(service.endpoint, FAST_RETRIES) as client:
        run_jobs(client, 2, JobStatus.DONE, USAGE)
        run_jobs(client, 1, JobStatus.FAILED, JobUsage(wall_seconds=10.0, exit_code=2))
    with reader(service) as accounting:  # the same numbers through the query layer
        query = ReportQuery.make(
            Metric.JOBS, Dimension.STATUS, 86400.0, 3600.0, now=accounting.jobs()[0].ended
        )
        assert accounting.report(query).totals == {"Done": 2.0, "Failed": 1.0}

    def report(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*dirac_like_argv("accounting", "report", "--home", str(service.home), *args)],
            capture_output=True,
            text=True,
            timeout=120,
            stdin=subprocess.DEVNULL,
        )

    by_exit = report("--metric", "jobs", "--by", "exit-code", "--since", "1d", "--json")
    assert by_exit.returncode == 0, by_exit.stderr
    assert json.loads(by_exit.stdout)["totals"] == {"0": 2.0, "2": 1.0}
    core_hours = report("--metric", "core-hours", "--by", "user", "--since", "2h", "--csv")
    assert core_hours.returncode == 0, core_hours.stderr
    assert core_hours.stdout.splitlines()[0] == "time,alice"
    png, svg = tmp_path / "jobs.png", tmp_path / "failed.svg"
    for metric, plot in (("jobs", png), ("failed", svg)):
        drawn = report("--metric", metric, "--by", "site", "--plot", str(plot))
        assert drawn.returncode == 0, drawn.stderr
        assert "LCG.CERN.cern" in drawn.stdout
    assert png.read_bytes().startswith(b"\x89PNG")
    assert b"<svg" in svg.read_bytes()[:500]
    bad = report("--metric", "jobs", "--by", "site", "--step", "30m")
    assert bad.returncode != 0 and "whole number of hours" in bad.stderr
    wrong_file = report("--metric", "jobs", "--by", "site", "--plot", str(tmp_path / "x.gif"))
    assert wrong_file.returncode != 0 and ".png or .svg" in wrong_file.stderr
    transfers = report("--metric", "transfers", "--by", "link")
    assert transfers.returncode == 0 and "nothing finished" in " ".join(transfers.stdout.split())
    mixed = report("--metric", "jobs", "--by", "link")
    assert mixed.returncode != 0 and "cannot be reported by link" in mixed.stderr


def test_retention_drops_old_hours_keeps_days_and_reports_keep_their_totals(
    tmp_path: Path,
) -> None:
    day, now = 86400.0, 100 * 86400.0
    ended = [now - 40 * day + 3600.0 * hour for hour in range(30)]  # over two old days
    ended += [now - 3600.0, now - 60.0]  # and two recent jobs
    records = [
        JobAccountingRecord(
            n,
            1,
            "alice",
            "g",
            f"S{n % 2}",
            "ce1",
            "p",
            "Done",
            "",
            0,
            2,
            50.0,
            100.0,
            0.0,
            0,
            0,
            0.0,
            0.0,
            time,
        )
        for n, time in enumerate(ended, start=1)
    ]
    store = SqliteStore(tmp_path / "jobs.sqlite")
    try:
        store.commit(ChangeSet(job_accounting=records))
        query = ReportQuery.make(Metric.CORE_HOURS, Dimension.SITE, 60 * day, day, now)
        hourly = ReportQuery.make(Metric.CORE_HOURS, Dimension.SITE, 60 * day, 3600.0, now)
        with AccountingReader(tmp_path / "jobs.sqlite") as reader:
            before = reader.report(query)
            hourly_before = reader.report(hourly)

        store.commit(ChangeSet(accounting_retention=retention_cutoffs(now, 30 * day, 35 * day)))

        with AccountingReader(tmp_path / "jobs.sqlite") as reader:
            after = reader.report(query)
            hourly_after = reader.report(hourly)
            kept = reader.jobs(limit=100)
            periods = dict(
                reader._rows(
                    "SELECT period, count(*) FROM accounting_buckets "
                    "WHERE dimension = 'site' GROUP BY period",
                    (),
                    "test",
                )
            )
    finally:
        store.close()
    core_hours = round(16 * 2 * 100.0 / 3600, 4)  # 16 jobs a site, 2 cores x 100 s each
    assert after.totals == before.totals == {"S0": core_hours, "S1": core_hours}
    assert after.series == before.series  # a daily step: the same cells
    assert sorted(record.job_id for record in kept) == [31, 32]  # raw: the recent ones only
    # daily buckets for good (2 old days and the recent one, x 2 sites); hourly: 2 recent hours
    assert periods == {3600: 2, 86400: 6}
    assert hourly_after.totals == hourly_before.totals == after.totals  # no day counted twice
