"""Tables at 80 columns keep ids whole and pasteable; job list totals and job summary rows."""

from __future__ import annotations

import io

from hypothesis import given
from hypothesis import strategies as st
from rich.console import Console

from dirac_like.cli.display import Column, print_table
from dirac_like.cli.jobs import status_totals, summary_table

PILOT_COLUMNS: list[Column] = [
    ("pilot_id", "PilotID"),
    ("site", "Site"),
    ("ce", "CE"),
    ("state", "State"),
    ("fabric_ref", "Reference"),
    ("submitted", "Submitted (UTC)"),
    ("jobs", "Jobs"),
    ("reason", "Reason"),
]
NAME = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789.-_", min_size=1, max_size=50)


def rendered(rows: list[dict[str, object]], columns: list[Column], width: int = 80) -> str:
    out = io.StringIO()
    print_table(rows, columns, console=Console(file=out, width=width, highlight=False))
    return out.getvalue()


@given(pilot_id=NAME, site=NAME, ref=NAME, reason=st.text(max_size=200))
def test_ids_stay_whole_at_80_columns(pilot_id: str, site: str, ref: str, reason: str) -> None:
    row = {
        "pilot_id": pilot_id,
        "site": site,
        "ce": "ce01.example.org",
        "state": "Running",
        "fabric_ref": ref,
        "submitted": "2026-12-02T22:00:00Z",
        "jobs": "1-5,7",
        "reason": reason,
    }

    lines = rendered([row], PILOT_COLUMNS).splitlines()

    for value in (pilot_id, site, ref, "Running"):
        assert any(value in line.split() for line in lines), (value, lines)


def test_a_table_that_fits_stays_within_80_columns() -> None:
    row = {
        "job_id": 123456,
        "status": "Running",
        "minor_status": "Application is running with a very long minor status",
        "site": "LCG.CERN.cern",
        "owner": "alice",
        "group": "physics",
        "job_name": "simulation-with-a-long-name",
    }
    columns: list[Column] = [
        ("job_id", "JobID>"),
        ("status", "Status"),
        ("minor_status", "MinorStatus"),
        ("site", "Site"),
        ("owner", "Owner"),
        ("group", "Group"),
        ("job_name", "JobName"),
    ]

    lines = rendered([row], columns).splitlines()

    assert max(len(line) for line in lines) <= 80
    assert "123456" in lines[2].split() and "LCG.CERN.cern" in lines[2].split()


def test_status_totals_follow_the_order_of_the_statuses() -> None:
    rows = [{"status": "Done"}, {"status": "Waiting"}, {"status": "Done"}]
    assert status_totals(rows) == "Waiting 1, Done 2"


def test_summary_table_counts_by_site_and_status_with_a_total_row() -> None:
    rows = [
        {"site": "A", "status": "Done"},
        {"site": "A", "status": "Failed"},
        {"site": "B", "status": "Done"},
    ]

    table = summary_table(rows, "site")

    assert [(r["site"], r["Done"], r["Failed"], r["total"]) for r in table] == [
        ("A", 1, 1, 2),
        ("B", 1, 0, 1),
        ("Total", 2, 1, 3),
    ]
