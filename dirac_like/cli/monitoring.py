"""Monitoring commands: ``admin site-status``, ``admin downtime add|list|cancel``,
``admin availability`` and ``agent monitoring`` (the agent itself is imported by its command).

Times on the command line: ``now``, ISO 8601 (``2026-12-03T10:00``, UTC unless it names a zone),
or relative to now: ``+2h``, ``-30m``, ``+1d``. Lengths (``--since``): ``30d``, ``12h``, ``45m``,
``90s``.
"""

from __future__ import annotations

import argparse
import re
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dirac_like.availability import PERIODS, Figures, percent, target_figures
from dirac_like.cli.common import UsageError, connect, print_result
from dirac_like.cli.display import Column, format_time, print_json, print_table
from dirac_like.cli.identity import identity_of, identity_options, server_for
from dirac_like.client import Client
from dirac_like.config import default_home
from dirac_like.errors import EXIT_OK
from dirac_like.logs import setup_logging
from dirac_like.monitoring import CheckStatus, Downtime, ProbeResult, TargetKind
from dirac_like.protocol import DowntimeRow, ProbeResultItem, to_wire

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_LENGTH = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")


def parse_length(text: str) -> float:
    """``30d``, ``12h``, ``45m``, ``90s``, ``2w`` -> seconds."""
    match = _LENGTH.fullmatch(text.strip())
    if not match:
        raise argparse.ArgumentTypeError(f"not a length of time: {text!r} (e.g. 30d, 12h, 45m)")
    return float(match.group(1)) * _UNITS[match.group(2)]


def parse_time(text: str, now: float | None = None) -> float:
    """``now``, ``+2h`` / ``-30m`` (from now) or ISO 8601 (UTC unless a zone is given)."""
    now = time.time() if now is None else now
    text = text.strip()
    if text == "now":
        return now
    if text[:1] in "+-" and _LENGTH.fullmatch(text[1:]):
        sign = 1 if text[0] == "+" else -1
        return now + sign * parse_length(text[1:])
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a time: {text!r} (now, +2h, -30m or 2026-12-03T10:00)"
        ) from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


# -- statuses and downtimes --------------------------------------------------------------------


def cmd_admin_site_status(args: argparse.Namespace) -> int:
    with connect(args) as client:
        rows = to_wire(client.resource_status())
    if args.json:
        print_json(rows)
        return EXIT_OK
    for row in rows:
        row["set_by"] = "policy" if row["automatic"] else ("operator" if row["reason"] else "")
        row["since"] = _short_time(row["changed"]) if row["changed"] else ""
        row["name"] = row["target"]
    columns: list[Column] = [
        ("name", "Name"),
        ("kind", "Kind"),
        ("status", "Status"),
        ("set_by", "SetBy"),
        ("since", "Since"),
        ("reason", "Reason"),
        ("downtime", "Downtime"),
    ]
    print_table(rows, columns, empty="No sites or SEs known yet.")
    return EXIT_OK


def cmd_admin_downtime_add(args: argparse.Namespace) -> int:
    with connect(args) as client:
        row = client.downtime_add(
            args.target,
            args.kind,
            args.start,
            args.end,
            args.reason,
            scheduled=not args.unscheduled,
        )
    kind = "scheduled" if row.scheduled else "unscheduled"
    print_result(
        args,
        to_wire(row),
        f"Downtime {row.downtime_id} of {row.kind} {row.target} "
        f"({kind}): {format_time(row.start)} to {format_time(row.end)}",
    )
    return EXIT_OK


def cmd_admin_downtime_list(args: argparse.Namespace) -> int:
    with connect(args) as client:
        rows = client.downtime_list(include_ended=args.all)
    if args.json:
        print_json(to_wire(rows))
        return EXIT_OK
    print_table(
        [_downtime_cells(row) for row in rows],
        [
            ("downtime_id", "Id>"),
            ("name", "Name"),
            ("kind", "Kind"),
            ("type", "Type"),
            ("start", "Start"),
            ("end", "End"),
            ("state", "State"),
            ("reason", "Reason"),
        ],
        empty="No downtimes.",
    )
    return EXIT_OK


def _downtime_cells(row: DowntimeRow) -> dict[str, Any]:
    now = time.time()
    state = (
        "cancelled"
        if row.cancelled
        else "ended"
        if row.end <= now
        else "in force"
        if row.start <= now
        else "announced"
    )
    return {
        **to_wire(row),
        "name": row.target,
        "type": "scheduled" if row.scheduled else "unscheduled",
        "start": _short_time(row.start),
        "end": _short_time(row.end),
        "state": state,
    }


def _short_time(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%m-%dT%H:%MZ")


def cmd_admin_downtime_cancel(args: argparse.Namespace) -> int:
    with connect(args) as client:
        row = client.downtime_cancel(args.downtime_id)
    print_result(args, to_wire(row), f"Downtime {row.downtime_id} of {row.target} cancelled")
    return EXIT_OK


# -- availability and reliability --------------------------------------------------------------


def cmd_admin_availability(args: argparse.Namespace) -> int:
    until = time.time()
    since = until - args.since
    with connect(args) as client:
        report = availability_report(client, since, until, args.period, args.validity, args.site)
    if args.json:
        print_json(report)
    elif args.history:
        print(history_grid(report))
    else:
        print_availability(report, args.period)
    return EXIT_OK


def availability_report(
    client: Client,
    since: float,
    until: float,
    period: str | None,
    validity: float,
    only: str | None = None,
) -> list[dict[str, Any]]:
    """Per target and period (None: the whole of [since, until) as one): the WLCG figures
    (see dirac_like.availability)."""
    results = [_result(item) for item in client.probe_results(since - validity, only or "")]
    downtimes = [_downtime(item) for item in client.downtime_list(include_ended=True)]
    statuses = {(row.kind, row.target): row.status for row in client.resource_status()}
    targets = target_figures(results, downtimes, statuses, since, until, period, validity, only)
    if only and not targets:
        raise UsageError(f"unknown site or SE {only!r}: no status and no probe result")
    return [
        {
            "target": target.target,
            "kind": target.kind,
            "status": target.status,
            "periods": [_figures(row, target.probes_in(row)) for row in target.periods],
        }
        for target in targets
    ]


def _result(item: ProbeResultItem) -> ProbeResult:
    return ProbeResult(
        item.target,
        TargetKind(item.kind),
        item.check,
        CheckStatus(item.status),
        item.message,
        item.time,
        item.ce,
        item.job_id,
    )


def _downtime(row: DowntimeRow) -> Downtime:
    return Downtime(
        row.downtime_id,
        row.target,
        TargetKind(row.kind),
        row.start,
        row.end,
        row.reason,
        row.scheduled,
        row.created,
        row.cancelled,
    )


def _figures(row: Figures, probes: int) -> dict[str, Any]:
    return {
        "start": row.start,
        "end": row.end,
        "probes": probes,
        "availability": row.availability,
        "reliability": row.reliability,
        "up_seconds": row.up,
        "down_seconds": row.down,
        "unknown_seconds": row.unknown,
        "scheduled_downtime_seconds": row.scheduled,
    }


def print_availability(report: Sequence[dict[str, Any]], period: str) -> None:
    rows = []
    for target in report:
        for window in target["periods"]:
            rows.append(
                {
                    "name": target["target"],
                    "kind": target["kind"],
                    "status": target["status"],
                    "period": _period_name(window["start"], period),
                    "availability": percent(window["availability"]),
                    "reliability": percent(window["reliability"]),
                    "downtime": f"{window['scheduled_downtime_seconds'] / 3600:.1f}h",
                }
            )
    print_table(
        rows,
        [
            ("name", "Name"),
            ("kind", "Kind"),
            ("status", "Status"),
            ("period", "Period"),
            ("availability", "Availability>"),
            ("reliability", "Reliability>"),
            ("downtime", "SchedDowntime>"),
        ],
        empty="No sites or SEs known yet.",
    )


def _period_name(start: float, period: str) -> str:
    moment = datetime.fromtimestamp(start, UTC)
    if period == "month":
        return moment.strftime("%Y-%m")
    if period == "week":
        return moment.strftime("%G-W%V")
    return moment.strftime("%Y-%m-%d")


def history_grid(report: Sequence[dict[str, Any]]) -> str:
    """A target x period grid of availability, as the SAM dashboards show it: a percentage
    per cell, '--' when undefined, 'DT' for a period spent in scheduled downtime."""
    if not report:
        return "No sites or SEs known yet."
    starts = [window["start"] for window in report[0]["periods"]]
    width = max(len(target["target"]) for target in report)
    header = (
        " " * width
        + " "
        + " ".join(datetime.fromtimestamp(start, UTC).strftime("%m-%d") for start in starts)
    )
    lines = [header]
    for target in report:
        cells = [_cell(window) for window in target["periods"]]
        lines.append(f"{target['target']:<{width}} " + " ".join(f"{c:>5}" for c in cells))
    lines.append("(availability per UTC day; -- unknown, DT scheduled downtime)")
    return "\n".join(lines)


def _cell(window: dict[str, Any]) -> str:
    if window["availability"] is None:
        return "--"
    if window["reliability"] is None:
        return "DT"
    return f"{window['availability'] * 100:.0f}%"


# -- the agent ---------------------------------------------------------------------------------


def cmd_agent_monitoring(args: argparse.Namespace) -> int:
    from dirac_like.agents import monitoring
    from dirac_like.sites import load_sites

    home = Path(args.home) if args.home else default_home()
    settings = monitoring.load_settings(
        Path(args.config) if args.config else None, dry_run=args.dry_run
    )
    sites_dir = Path(args.sites_dir) if args.sites_dir else _default_sites_dir()
    sites = load_sites(sites_dir)
    setup_logging("monitoring", home, args.verbose)
    identity = identity_of(args)
    with Client(
        server_for(args, identity),
        monitoring.MONITOR_RETRIES,
        identity=identity,
        insecure=identity is None,
    ) as client:
        agent = monitoring.Monitor(settings, sites, client, home)
        if args.once:
            agent.cycle()
            return EXIT_OK
        return agent.run()


def _default_sites_dir() -> Path:
    local = Path("etc/sites")
    return local if local.is_dir() else default_home() / "sites"


# -- the parsers -------------------------------------------------------------------------------


def _command(
    commands: Any, name: str, parents: list[argparse.ArgumentParser], text: str
) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = commands.add_parser(
        name, parents=parents, help=text, description=text[0].upper() + text[1:]
    )
    return parser


def add_monitoring_admin_parsers(commands: Any, both: list[argparse.ArgumentParser]) -> None:
    """``admin site-status``, ``admin downtime ...`` and ``admin availability`` (commands:
    the admin group's subparsers)."""
    _command(
        commands,
        "site-status",
        both,
        "status of every site and SE (Active, Degraded, "
        "Probing, Banned), who set it, and downtimes in force",
    )
    downtime = commands.add_parser(
        "downtime",
        help="declare, list and cancel downtimes",
        description="Declare, list and cancel downtimes.",
    )
    actions = downtime.add_subparsers(dest="downtime_command", metavar="ACTION", required=True)
    add = _command(actions, "add", both, "declare a downtime of a site or SE")
    add.add_argument("target", metavar="SITE|SE", help="the site's or SE's name")
    add.add_argument(
        "--se",
        dest="kind",
        action="store_const",
        const="se",
        default="site",
        help="the name is an SE's (default: a site's)",
    )
    add.add_argument(
        "--from",
        dest="start",
        type=parse_time,
        default="now",
        metavar="TIME",
        help="start (default now; +2h, 2026-12-03T10:00)",
    )
    add.add_argument(
        "--to", dest="end", type=parse_time, required=True, metavar="TIME", help="end (+4h, ISO)"
    )
    add.add_argument("--reason", required=True, help="why (shown to users and operators)")
    add.add_argument(
        "--unscheduled",
        action="store_true",
        help="not announced in advance: counts against reliability",
    )
    add.set_defaults(cli_command="downtime add")
    listing = _command(actions, "list", both, "downtimes in force or announced")
    listing.add_argument("--all", action="store_true", help="also ended and cancelled ones")
    listing.set_defaults(cli_command="downtime list")
    cancel = _command(actions, "cancel", both, "cancel a downtime (it ends now)")
    cancel.add_argument("downtime_id", type=int, metavar="ID", help="the downtime's id")
    cancel.set_defaults(cli_command="downtime cancel")
    availability = _command(
        commands, "availability", both, "WLCG availability and reliability of sites and SEs"
    )
    availability.add_argument("--site", help="only this site (or SE)")
    availability.add_argument(
        "--since",
        type=parse_length,
        default=parse_length("30d"),
        metavar="LENGTH",
        help="how far back (default 30d)",
    )
    availability.add_argument(
        "--period",
        choices=PERIODS,
        default="day",
        help="figures per day, week or month (default day)",
    )
    availability.add_argument(
        "--validity",
        type=parse_length,
        default=parse_length("1h"),
        metavar="LENGTH",
        help="how long a probe result holds (default 1h; give at least the agent's probe_interval)",
    )
    availability.add_argument(
        "--history", action="store_true", help="a site x day grid, as the SAM dashboards show it"
    )


def add_monitoring_agent_parser(agents: Any) -> None:
    """``agent monitoring`` (agents: the agent group's subparsers)."""
    text = "probe every CE and SE, keep site statuses by policy, watch pilots"
    agent = agents.add_parser(
        "monitoring",
        parents=[identity_options()],
        help=text,
        description=text[0].upper() + text[1:],
    )
    agent.add_argument(
        "--config",
        metavar="FILE",
        help="TOML file with a [monitoring] table (see etc/monitoring.toml)",
    )
    agent.add_argument(
        "--sites-dir",
        metavar="DIR",
        help="site files (default: etc/sites if it exists, else $DIRAC_LIKE_HOME/sites)",
    )
    agent.add_argument(
        "--server",
        metavar="URL",
        default=argparse.SUPPRESS,
        help="central service (default: $DIRAC_LIKE_SERVER)",
    )
    agent.add_argument(
        "--home",
        metavar="DIR",
        default=argparse.SUPPRESS,
        help="state and logs (default: $DIRAC_LIKE_HOME or ~/.dirac-like)",
    )
    agent.add_argument(
        "--dry-run",
        action="store_true",
        help="log the status changes the policy would make; make none",
    )
    agent.add_argument("--once", action="store_true", help="run one cycle and exit")
    agent.add_argument("--verbose", action="store_true", help="log at DEBUG level")


MONITORING_COMMANDS = {
    ("admin", "site-status"): cmd_admin_site_status,
    ("admin", "downtime add"): cmd_admin_downtime_add,
    ("admin", "downtime list"): cmd_admin_downtime_list,
    ("admin", "downtime cancel"): cmd_admin_downtime_cancel,
    ("admin", "availability"): cmd_admin_availability,
    ("agent", "monitoring"): cmd_agent_monitoring,
}
