"""Issue 13's later parts, pure: the kept usage series of a job, transfer buckets and reports,
the availability grid of every target, the transfers by link, the accounting page's panels."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_accounting import CONFIG

from dirac_like.accounting import (
    HOUR,
    Dimension,
    Metric,
    Report,
    ReportQuery,
    Totals,
    TransferAccountingRecord,
    bucket_transfers,
    build_report,
)
from dirac_like.authz import Principal, Role
from dirac_like.availability import target_figures
from dirac_like.description import parse_descriptions
from dirac_like.errors import InvalidArgument
from dirac_like.monitoring import CheckStatus, Downtime, ProbeResult, TargetKind
from dirac_like.protocol import JobUsage, PilotResources
from dirac_like.services.job_book import JobBook
from dirac_like.services.journal import Journal
from dirac_like.services.web import plots
from dirac_like.services.web.accounting_panels import only_label
from dirac_like.services.web.views import availability_grid, transfer_links
from dirac_like.shares import FairShare
from dirac_like.states import JobStatus
from dirac_like.usage_series import MAX_POINTS, POINTS_PER_LEVEL, SeriesMark, keep_sample

# -- the usage series -----------------------------------------------------------------------------


def test_every_early_sample_is_kept_then_fewer_and_never_more_than_the_bound() -> None:
    mark = SeriesMark()
    kept = [t for t in range(0, 30 * 86400, 30) if keep_sample(mark, float(t))]
    assert kept[:POINTS_PER_LEVEL] == list(range(0, 30 * POINTS_PER_LEVEL, 30))
    assert len(kept) == MAX_POINTS  # a month of 30 s heartbeats: capped
    gaps = [b - a for a, b in itertools.pairwise(kept)]
    assert gaps == sorted(gaps)  # thinner and thinner, never denser


@given(st.lists(st.floats(0, 1e7, allow_nan=False), max_size=2000))
def test_the_series_is_bounded_and_in_time_order_whatever_the_heartbeats(
    times: list[float],
) -> None:
    mark = SeriesMark()
    kept = [t for t in times if keep_sample(mark, t)]
    assert len(kept) <= MAX_POINTS
    assert kept == sorted(set(kept))


def test_heartbeats_and_the_final_report_leave_usage_samples_in_the_change_set() -> None:
    book = JobBook(CONFIG, FairShare({}, {}, 86400.0, 1.0), Journal())
    book.add(parse_descriptions({"Executable": "x"})[0], "alice", "users", 0.0)
    job = book.match("p1", PilotResources(site="S", cores=1), 0.0)
    assert job is not None
    book.set_status(job, JobStatus.RUNNING, "Application", "pilot", 1.0)
    book.heartbeat(job, "pilot", 10.0, {"cpu_seconds": 5.0, "rss_mb": 100.0})
    book.heartbeat(job, "pilot", 20.0, {"cpu_seconds": 9.0, "rss_mb": 120.0})
    book.heartbeat(job, "pilot", 20.0, {"cpu_seconds": 9.5})  # same instant: not kept again
    book.report(job, JobStatus.DONE, "", "", "pilot", 30.0, JobUsage(12.0, 29.0, 130.0))
    assert book.journal.changes.usage_samples == [
        (job.job_id, 1, 10.0, 5.0, 100.0),
        (job.job_id, 1, 20.0, 9.0, 120.0),
        (job.job_id, 1, 30.0, 12.0, 130.0),
    ]
    assert job.job_id not in book.sample_marks  # forgotten once it ended


# -- transfer accounting --------------------------------------------------------------------------


def transfer(
    number: int, status: str, size: int, ended: float, source: str = "A"
) -> TransferAccountingRecord:
    return TransferAccountingRecord(
        number, f"/vo/f{number}", "alice", source, "B", status, "", size, 1, 0.0, ended - 10, ended
    )


def test_transfers_add_into_buckets_by_link_status_and_user() -> None:
    buckets = bucket_transfers(
        [
            transfer(1, "Done", 100, 15.0),
            transfer(2, "Failed", 0, 20.0),
            transfer(3, "Done", 5, 4000),
        ]
    )
    by_key = {(key.dimension, key.start, key.label): sums for key, sums in buckets.items()}
    assert by_key[("link", 0.0, "A -> B")] == [2, 1, 100, 20.0]
    assert by_key[("status", 0.0, "Done")] == [1, 0, 100, 10.0]
    assert by_key[("user", 3600.0, "alice")] == [1, 0, 5, 10.0]


def test_a_transfer_report_sums_bytes_and_counts_by_link() -> None:
    query = ReportQuery(Metric.TRANSFER_BYTES, Dimension.LINK, 0.0, 2 * HOUR, HOUR)
    rows = [(0.0, "A -> B", Totals(2, 1, 100.0, 20.0, 0.0)), (3600.0, "C -> B", Totals(1, 0, 7))]
    report = build_report(query, rows)
    assert report.unit == "bytes"
    assert report.series == {"A -> B": [100.0, 0.0], "C -> B": [0.0, 7.0]}
    count = build_report(ReportQuery(Metric.TRANSFERS, Dimension.LINK, 0.0, 2 * HOUR, HOUR), rows)
    assert count.totals == {"A -> B": 2.0, "C -> B": 1.0}


@pytest.mark.parametrize(
    ("metric", "by"),
    [("transfers", "site"), ("transfer-bytes", "exit-code"), ("jobs", "link")],
)
def test_a_metric_by_a_dimension_it_does_not_have_is_refused(metric: str, by: str) -> None:
    with pytest.raises(InvalidArgument, match="cannot be reported by"):
        ReportQuery.make(metric, by, 86400, HOUR, now=86400.0)


# -- availability grid ----------------------------------------------------------------------------

DAY = 86400.0


def result(target: str, status: CheckStatus, time: float, kind: TargetKind = TargetKind.SITE) -> (
    ProbeResult
):  # fmt: skip
    return ProbeResult(
        target, kind, "started", status, "", time, "ce1" if kind.value == "site" else ""
    )


def test_the_grid_has_a_row_per_target_and_a_coloured_cell_per_day() -> None:
    results = [
        result("LCG.A.org", CheckStatus.OK, 0.0),
        result("LCG.A.org", CheckStatus.OK, 3000.0),
        result("LCG.B.org", CheckStatus.CRITICAL, 0.0),
        result("DISK-1", CheckStatus.OK, 0.0, TargetKind.SE),
    ]
    downtime = Downtime(1, "LCG.A.org", TargetKind.SITE, DAY, 2 * DAY, "fw", True, 0.0)
    statuses = {("site", "LCG.B.org"): "Banned", ("site", "LCG.C.org"): "Active"}
    targets = target_figures(results, [downtime], statuses, 0.0, 3 * DAY, "day", 3600.0)
    grid = availability_grid(targets, "days", hourly=False)
    assert grid.columns == ["01-01", "01-02", "01-03"]
    rows = {row.target: row for row in grid.rows}
    assert [row.target for row in grid.rows] == ["LCG.A.org", "LCG.B.org", "LCG.C.org", "DISK-1"]
    assert [cell.text for cell in rows["LCG.A.org"].cells] == ["100%", "DT", "--"]
    assert [cell.level for cell in rows["LCG.A.org"].cells] == ["a100", "downtime", "unknown"]
    assert rows["LCG.B.org"].cells[0].level == "a0" and rows["LCG.B.org"].status == "Banned"
    assert rows["LCG.C.org"].cells[0].text == "--"  # a status and no probe yet
    assert "2 probe(s)" in rows["LCG.A.org"].cells[0].title


def test_the_hourly_grid_labels_its_columns_by_hour() -> None:
    targets = target_figures(
        [result("S", CheckStatus.WARNING, 0.0)], [], {}, 0.0, 3 * HOUR, "hour", 3600.0
    )
    grid = availability_grid(targets, "hours", hourly=True)
    assert grid.columns == ["00:00", "01:00", "02:00"]
    assert [cell.text for cell in grid.rows[0].cells] == ["100%", "--", "--"]


# -- transfers by link, accounting panels ---------------------------------------------------------


def test_transfers_are_shown_by_link_busiest_first() -> None:
    links = transfer_links(
        [
            ("A", "B", "Done", 3),
            ("A", "B", "Failed", 1),
            ("", "C", "Waiting", 9),
            ("B", "C", "Done", 1),
        ]
    )
    assert [(link.name, link.total) for link in links] == [
        ("none -> C", 9),
        ("A -> B", 4),
        ("B -> C", 1),
    ]
    assert links[1].states == {"Done": 3, "Failed": 1}


def test_a_user_sees_only_their_own_series() -> None:
    query = ReportQuery.make("jobs", "user", 2 * HOUR, HOUR, now=HOUR)
    report = Report(query, [0.0, 3600.0], {"alice": [1, 2], "bob": [5, 5]}, {"alice": 3, "bob": 10})
    mine = only_label(report, "alice")
    assert mine.series == {"alice": [1, 2]} and mine.totals == {"alice": 3}
    assert only_label(report, "carol").series == {}
    assert Principal("alice", Role.USER).name == "alice"


def test_time_plots_escape_their_labels_and_say_when_empty() -> None:
    svg = plots.time_bars([0.0, 3600.0], {"<b>&": [1.0, 2.0]}, "t", "jobs")
    assert "<b>&" not in svg and "&lt;b&gt;&amp;" in svg
    assert "no data in this range" in plots.time_bars([], {}, "t", "jobs")
    assert "no sample from the watchdog yet" in plots.usage_timeline([], "usage", 0.0)
    assert "CPU seconds" in plots.usage_timeline([(0.0, 1.0, 50.0), (60.0, 30.0, 80.0)], "u", 0.0)
