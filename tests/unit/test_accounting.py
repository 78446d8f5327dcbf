"""Accounting, pure: the record of each finished attempt (made by the job book with the final
status), pilot records, buckets, retention cut-offs and the maths of a report."""

from __future__ import annotations

import csv
import io
import math

import pytest

from dirac_like.accounting import (
    DAY,
    HOUR,
    Dimension,
    JobAccountingRecord,
    Metric,
    ReportQuery,
    Totals,
    bucket_records,
    build_report,
    check_usage,
    parse_duration,
    retention_cutoffs,
    usage_from_heartbeat,
)
from dirac_like.config import JobsConfig, PilotsConfig
from dirac_like.description import parse_descriptions
from dirac_like.errors import InvalidArgument
from dirac_like.model import ChangeSet, JobRecord
from dirac_like.protocol import JobUsage, PilotResources, PilotUpdateItem
from dirac_like.services.job_book import JobBook
from dirac_like.services.journal import Journal
from dirac_like.services.pilots import PilotRegistry
from dirac_like.shares import FairShare
from dirac_like.states import JobStatus

S = JobStatus
CONFIG = JobsConfig(
    match_lease=60,
    stalled_timeout=100,
    stalled_to_reschedule=50,
    max_reschedules=2,
    reschedule_holdoff=10,
    holdoff_factor=3,
)
SITE = "LCG.CERN.cern"
USAGE = JobUsage(
    cpu_seconds=150.0,
    wall_seconds=100.0,
    peak_rss_mb=512.0,
    input_bytes=10,
    output_bytes=20,
    exit_code=0,
)


def new_book() -> JobBook:
    return JobBook(CONFIG, FairShare({}, {}, 86400.0, 1.0), Journal())


def running(book: JobBook, now: float = 0.0, cores: int = 2) -> JobRecord:
    description = parse_descriptions({"Executable": "x", "NumberOfProcessors": cores})[0]
    book.add(description, "alice", "users", now)
    job = book.match("p1", PilotResources(site=SITE, cores=8), now)
    assert job is not None
    book.set_status(job, S.RUNNING, "Application", "pilot", now)
    return job


def records(book: JobBook) -> list[JobAccountingRecord]:
    return book.journal.changes.job_accounting


# -- the job book makes one record per finished attempt ----------------------------------------


def test_a_finished_job_gets_one_record_with_what_its_pilot_measured() -> None:
    book = new_book()
    job = running(book, now=10.0)

    book.report(job, S.DONE, "Execution Complete", "", "pilot p1", 200.0, USAGE)

    [record] = records(book)
    assert (record.job_id, record.attempt, record.status, record.site, record.pilot_id) == (
        job.job_id,
        1,
        "Done",
        SITE,
        "p1",
    )
    assert (record.cores, record.wall_seconds, record.core_seconds) == (2, 100.0, 200.0)
    assert (record.cpu_seconds, record.peak_rss_mb, record.exit_code) == (150.0, 512.0, 0)
    assert (record.input_bytes, record.output_bytes) == (10, 20)
    assert (record.submitted, record.started, record.ended) == (10.0, 10.0, 200.0)
    book.validate()


def test_a_job_deleted_after_it_finished_is_not_counted_again() -> None:
    book = new_book()
    job = running(book)
    book.report(job, S.DONE, "Execution Complete", "", "pilot p1", 5.0, USAGE)

    book.set_status(job, S.DELETED, "Deleted by user", "user", 6.0)
    book.report(job, S.DELETED, "again", "", "user", 7.0)

    assert [record.status for record in records(book)] == ["Done"]


def test_a_rescheduled_job_gets_a_record_per_attempt() -> None:
    book = new_book()
    job = running(book)
    book.report(
        job,
        S.FAILED,
        "Application exited with code 3",
        "",
        "pilot p1",
        5.0,
        JobUsage(wall_seconds=4.0, exit_code=3),
    )

    book.reschedule(job, "Rescheduled by user", "user", 6.0, hold=False)
    again = book.match("p2", PilotResources(site=SITE, cores=8), 7.0)
    assert again is job
    book.set_status(job, S.RUNNING, "Application", "pilot", 7.0)
    book.report(job, S.DONE, "Execution Complete", "", "pilot p2", 9.0, USAGE)

    assert [(r.attempt, r.status, r.exit_code, r.pilot_id) for r in records(book)] == [
        (1, "Failed", 3, "p1"),
        (2, "Done", 0, "p2"),
    ]
    book.validate()


def test_a_job_killed_while_waiting_is_recorded_without_cores_or_time() -> None:
    book = new_book()
    job = book.add(parse_descriptions({"Executable": "x"})[0], "bob", "users", 1.0)

    book.set_status(job, S.KILLED, "Killed by user", "user", 50.0)

    [record] = records(book)
    assert (record.status, record.cores, record.wall_seconds, record.started) == (
        "Killed",
        0,
        0.0,
        0.0,
    )
    assert (record.exit_code, record.pilot_id) == (None, "")


def test_a_lost_job_is_charged_with_its_last_heartbeat() -> None:
    book = new_book()
    job = running(book, now=0.0, cores=1)
    job.reschedules = CONFIG.max_reschedules  # lost now, it fails
    book.heartbeat(
        job, "pilot p1", 30.0, {"cpu_seconds": 25.0, "rss_mb": 900.0, "wall_seconds": 30.0}
    )
    book.heartbeat(
        job,
        "pilot p1",
        60.0,
        {"cpu_seconds": 55.0, "rss_mb": 300.0, "wall_seconds": 60.0, "disk_mb": 1.0},
    )

    book.expire(200.0)  # Stalled
    book.expire(300.0)  # Failed: its pilot is lost

    [record] = records(book)
    assert (record.status, record.cpu_seconds, record.wall_seconds, record.peak_rss_mb) == (
        "Failed",
        55.0,
        60.0,
        900.0,
    )
    assert not book.last_usage


def test_a_late_done_is_accounted_as_the_attempt_that_ran() -> None:
    """Issue 18: a Done the stall rule had taken away (its pilot came back late) is the record
    of the attempt that ran, on that pilot, site, CE and cores; not of the next attempt."""
    book = new_book()
    job = running(book, now=5.0, cores=2)
    book.placed_ce[job.job_id] = "ce1"
    ran = (job.attempt, job.pilot_id, job.site)
    book.expire(200.0)  # Stalled
    book.expire(300.0)  # Rescheduled: a new attempt, not matched to anyone yet
    assert job.status is S.RESCHEDULED and job.attempt == ran[0] + 1

    late = book.reported_job(job.job_id, ran[0], ran[1], S.DONE)
    book.report(late, S.DONE, "Execution Complete", "", "pilot p1", 310.0, USAGE, "p1")

    [record] = records(book)
    assert (record.attempt, record.pilot_id, record.site, record.ce) == (*ran, "ce1")
    assert (record.status, record.cores, record.started) == ("Done", 2, 5.0)
    assert record.wall_seconds == USAGE.wall_seconds
    book.validate()


def test_a_job_handed_back_is_not_a_finished_job() -> None:
    book = new_book()
    job = running(book)

    book.reschedule(job, "Pilot stopped: job handed back", "pilot p1", 5.0)

    assert records(book) == [] and not book.last_usage


def test_a_stalled_job_past_its_reschedule_limit_fails_with_one_record() -> None:
    book = new_book()
    job = running(book, now=0.0, cores=1)
    job.reschedules = CONFIG.max_reschedules  # already rescheduled as often as allowed

    book.expire(200.0)  # Stalled
    book.expire(300.0)  # Failed: no heartbeat ever, so charged from its match to now

    [record] = records(book)
    assert (record.status, record.wall_seconds, record.exit_code) == ("Failed", 300.0, None)
    assert not book.last_usage
    book.validate()


def test_heartbeat_metrics_that_are_not_numbers_are_ignored() -> None:
    assert usage_from_heartbeat({"cpu_seconds": "lots", "rss_mb": True}) is None
    assert usage_from_heartbeat({"cpu_seconds": math.nan, "wall_seconds": -1}) is None
    assert usage_from_heartbeat({"cpu_seconds": 2}) == JobUsage(cpu_seconds=2.0)


@pytest.mark.parametrize(
    "usage",
    [
        JobUsage(cpu_seconds=-1.0),
        JobUsage(wall_seconds=math.inf),
        JobUsage(peak_rss_mb=math.nan),
        JobUsage(output_bytes=-5),
        JobUsage(exit_code=2**40),
        JobUsage(input_bytes=10**18),
    ],
)
def test_impossible_usage_is_refused(usage: JobUsage) -> None:
    with pytest.raises(InvalidArgument, match="usage"):
        check_usage(usage)


# -- pilots ------------------------------------------------------------------------------------


def test_a_pilot_gets_one_record_when_it_ends() -> None:
    pilots = PilotRegistry(PilotsConfig())
    [pilot_id] = pilots.add("A", "ce1", "local", 1, now=1.0)
    pilots.contact(pilot_id, "A", "ce1", now=5.0)
    pilots.note_job(pilots.get(pilot_id), 7)

    pilots.update([PilotUpdateItem(pilot_id, "Done", reason="exit 0")], now=50.0)
    pilots.update([PilotUpdateItem(pilot_id, "Done", output="bye")], now=60.0)
    changes = ChangeSet()
    pilots.take_changes(changes)

    [record] = changes.pilot_accounting
    assert (record.pilot_id, record.state, record.ce, record.fabric) == (
        pilot_id,
        "Done",
        "ce1",
        "local",
    )
    assert (record.submitted, record.started, record.ended, record.jobs) == (1.0, 5.0, 50.0, 1)
    assert record.wall_seconds == 45.0


# -- buckets and reports -----------------------------------------------------------------------


def record(
    job_id: int,
    ended: float,
    site: str = "A",
    status: str = "Done",
    cores: int = 1,
    cpu: float = 1800.0,
    wall: float = 3600.0,
    exit_code: int | None = 0,
    group: str = "g",
) -> JobAccountingRecord:
    return JobAccountingRecord(
        job_id,
        1,
        "alice",
        group,
        site,
        "",
        "p",
        status,
        "",
        exit_code,
        cores,
        cpu,
        wall,
        0.0,
        0,
        0,
        0.0,
        0.0,
        ended,
    )


def test_records_add_up_in_the_hour_they_ended() -> None:
    buckets = bucket_records(
        [
            record(1, 10.0),
            record(2, 3599.0, cores=4),
            record(3, 3600.0, status="Failed", exit_code=None),
        ]
    )

    by_status = sorted(
        (key.start, key.label, totals.jobs, totals.core_seconds)
        for key, totals in buckets.items()
        if key.dimension == "status"
    )
    assert by_status == [(0.0, "Done", 2, 5 * 3600.0), (3600.0, "Failed", 1, 3600.0)]
    by_exit = {
        (key.start, key.label): totals.failed
        for key, totals in buckets.items()
        if key.dimension == "exit-code"
    }
    assert by_exit == {(0.0, "0"): 0, (3600.0, "none"): 1}
    assert {key.dimension for key in buckets} == {"group", "user", "site", "status", "exit-code"}
    assert all(key.period == HOUR for key in buckets)


def test_a_report_sums_rows_into_steps_and_orders_labels_by_total() -> None:
    query = ReportQuery(Metric.CORE_HOURS, Dimension.SITE, start=0.0, end=3 * HOUR, step=HOUR)
    rows = [
        (0.0, "A", Totals(1, 0, 0.0, 3600.0, 3600.0)),
        (HOUR, "B", Totals(2, 0, 0.0, 7200.0, 4 * 3600.0)),
        (HOUR, "A", Totals(1, 0, 0.0, 3600.0, 3600.0)),
        (99 * HOUR, "C", Totals(1, 0, 0.0, 1.0, 1.0)),
    ]  # outside: ignored

    report = build_report(query, rows)

    assert report.times == [0.0, HOUR, 2 * HOUR]
    assert list(report.series) == ["B", "A"]
    assert report.series == {"B": [0.0, 4.0, 0.0], "A": [1.0, 1.0, 0.0]}
    assert report.totals == {"B": 4.0, "A": 2.0}
    lines = list(csv.reader(io.StringIO(report.to_csv())))
    assert lines[0] == ["time", "B", "A"] and lines[2] == ["1970-01-01T01:00:00Z", "4.0", "1.0"]


def test_cpu_efficiency_is_cpu_over_core_time_of_the_sums() -> None:
    query = ReportQuery.make("cpu-efficiency", "group", DAY, DAY, now=DAY)
    rows = [
        (query.start, "g", Totals(1, 0, 900.0, 1000.0, 1000.0)),
        (query.start, "g", Totals(1, 0, 100.0, 1000.0, 1000.0)),
    ]

    report = build_report(query, rows)

    assert report.totals == {"g": 50.0} and report.unit == "%"


@pytest.mark.parametrize(
    ("metric", "by", "since", "step", "problem"),
    [
        ("jobz", "site", DAY, HOUR, "unknown metric"),
        ("jobs", "planet", DAY, HOUR, "unknown metric"),
        ("jobs", "site", DAY, 1800.0, "whole number of hours"),
        ("jobs", "site", 0.0, HOUR, "since must be positive"),
        ("jobs", "site", 10_000 * DAY, HOUR, "larger --step"),
    ],
)
def test_a_bad_report_query_names_the_problem(
    metric: str, by: str, since: float, step: float, problem: str
) -> None:
    with pytest.raises(InvalidArgument, match=problem):
        ReportQuery.make(metric, by, since, step, now=10 * DAY)


def test_a_query_is_aligned_to_its_step() -> None:
    query = ReportQuery.make("jobs", "site", since=DAY, step=HOUR, now=DAY + 1800.0)
    assert (query.start, query.end) == (0.0, DAY + HOUR)  # the steps holding now-since and now


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90", 90.0), ("30m", 1800.0), ("1h", 3600.0), ("7d", 7 * DAY), ("2w", 14 * DAY)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "7 days", "-1h", "1y", "h"])
def test_a_bad_duration_is_refused(text: str) -> None:
    with pytest.raises(InvalidArgument, match="duration"):
        parse_duration(text)


def test_the_hourly_cutoff_falls_on_a_day_boundary() -> None:
    cutoffs = retention_cutoffs(
        now=100 * DAY + 5000.0, raw_retention=10 * DAY, hourly_retention=30 * DAY
    )
    assert cutoffs.raw_before == 90 * DAY + 5000.0
    assert cutoffs.hourly_before == 70 * DAY
