"""``dirac-like accounting report``: what finished jobs used (and what finished transfers moved),
summed from the accounting buckets.

It reads the central service's store read-only (services/accounting_store.py), beside the live
service: its SQLite file, so on the service's machine as its account (the file is the service's
own, 0600), or its PostgreSQL database, from anywhere the configuration's URL reaches.
``--home`` (or ``--config`` with ``store.url``) says which.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from dirac_like.accounting import HOUR, Dimension, Metric, Report, ReportQuery, parse_duration
from dirac_like.cli.display import Column, print_table
from dirac_like.config import default_home, load_config
from dirac_like.errors import EXIT_OK

# The automatic step: the first that gives at most MAX_AUTO_POINTS bars.
AUTO_STEPS = (HOUR, 6 * HOUR, 24 * HOUR, 7 * 24 * HOUR)
MAX_AUTO_POINTS = 200


def cmd_accounting_report(args: argparse.Namespace) -> int:
    from dirac_like.services.accounting_store import AccountingReader

    since = parse_duration(args.since)
    step = parse_duration(args.step) if args.step else auto_step(since)
    query = ReportQuery.make(args.metric, args.by, since, step, time.time())
    with AccountingReader(store_url(args)) as reader:
        report = reader.report(query)
    if args.plot:
        from dirac_like.accounting_plot import plot_report

        plot_report(report, Path(args.plot))
    if args.json:
        print(_json(report))
    elif args.csv:
        sys.stdout.write(report.to_csv())
    else:
        print_summary(report)
        if args.plot:
            print(f"plot written to {args.plot}")
    return EXIT_OK


def auto_step(since: float) -> float:
    for step in AUTO_STEPS:
        if since / step <= MAX_AUTO_POINTS:
            return step
    return AUTO_STEPS[-1]


def store_url(args: argparse.Namespace) -> str:
    """The URL of the service's store: an SQLite file in its home, or ``store.url``."""
    home = Path(args.home) if args.home else default_home()
    config = load_config(Path(args.config) if args.config else None)
    return config.store_url(home)


def print_summary(report: Report) -> None:
    query = report.query
    title = (
        f"{query.metric.value} by {query.by.value}, {_when(query.start)} to "
        f"{_when(query.end)} UTC, step {query.step // HOUR} h"
    )
    rows: list[dict[str, Any]] = [
        {"label": label, "total": total} for label, total in report.table()
    ]
    columns: list[Column] = [
        ("label", query.by.value.capitalize()),
        ("total", f"{report.unit.capitalize()}>"),
    ]
    print_table(rows, columns, title=title, empty="nothing finished in this range")


def _when(stamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.gmtime(stamp))


def _json(report: Report) -> str:
    import json

    return json.dumps(report.to_json(), indent=2)


def add_accounting_parser(groups: Any) -> None:
    accounting = groups.add_parser(
        "accounting",
        help="what finished jobs used (reports and plots)",
        description="Accounting of finished jobs, read from the central service's store (run "
        "it where the service runs, or where its PostgreSQL store is reachable).",
    )
    commands = accounting.add_subparsers(dest="cli_command", metavar="COMMAND", required=True)
    text = "a metric over time, one series per group, user, site, status, exit code or link"
    report = commands.add_parser("report", help=text, description=f"Report {text}.")
    report.add_argument(
        "--metric",
        required=True,
        choices=[m.value for m in Metric],
        help="what to sum (cpu-efficiency: CPU time / core time granted; transfers and "
        "transfer-bytes: finished transfers, by link, status or user)",
    )
    report.add_argument(
        "--by",
        required=True,
        choices=[d.value for d in Dimension],
        help="one series per value of this (jobs: group, user, site, status, exit-code; "
        "transfers: link, status, user)",
    )
    report.add_argument(
        "--since", default="7d", help="how far back: 30m, 12h, 7d, 2w... (default 7d)"
    )
    report.add_argument(
        "--step",
        help="time step, whole hours: 1h, 6h, 1d, 1w (default: "
        f"the finest giving at most {MAX_AUTO_POINTS} steps)",
    )
    output = report.add_mutually_exclusive_group()
    output.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="the series as JSON"
    )
    output.add_argument("--csv", action="store_true", help="one row per time step, as CSV")
    report.add_argument(
        "--plot", metavar="FILE", help="also draw a stacked plot, FILE.png or FILE.svg"
    )
    report.add_argument(
        "--home",
        metavar="DIR",
        default=argparse.SUPPRESS,
        help="the central service's home (default: $DIRAC_LIKE_HOME or ~/.dirac-like)",
    )
    report.add_argument(
        "--config", metavar="FILE", help="the service's TOML configuration (for store.url)"
    )


ACCOUNTING_COMMANDS = {
    ("accounting", "report"): cmd_accounting_report,
}
