"""``dirac-like admin ...``: sites, pilots, task queues, shares and identities."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from dirac_like.cli.common import connect, positive_int, print_result
from dirac_like.cli.display import (
    Column,
    format_ids,
    format_percent,
    format_time,
    print_json,
    print_table,
)
from dirac_like.cli.identity import (
    add_identity_parser,
    cmd_admin_identity_add,
    cmd_admin_identity_list,
    cmd_admin_identity_revoke,
)
from dirac_like.cli.monitoring import add_monitoring_admin_parsers
from dirac_like.cli.operations import (
    OPERATIONS_COMMANDS,
    add_site_parser,
    print_pilot_summary,
)
from dirac_like.errors import EXIT_OK, EXIT_REFUSED
from dirac_like.protocol import to_wire


def cmd_admin_sites(args: argparse.Namespace) -> int:
    with connect(args) as client:
        rows = to_wire(client.sites())
    if args.json:
        print_json(rows)
    else:
        columns: list[Column] = [
            ("site", "Site"),
            ("status", "Status"),
            ("active_jobs", "ActiveJobs>"),
            ("max_running", "MaxRunning>"),
            ("reason", "Reason"),
        ]
        print_table(rows, columns, empty="No sites seen yet.")
    return EXIT_OK


def cmd_admin_ban_site(args: argparse.Namespace) -> int:
    return ban_site(args, args.site, args.reason)


def cmd_admin_unban_site(args: argparse.Namespace) -> int:
    return allow_site(args, args.site)


def ban_site(args: argparse.Namespace, site: str, reason: str) -> int:
    """Ban ``site`` and say so (``admin ban-site`` and ``dirac-admin-ban-site``)."""
    with connect(args) as client:
        result = to_wire(client.ban_site(site, reason))
    print_result(args, result, f"Site {result['site']} banned: {result['reason']}")
    return EXIT_OK


def allow_site(args: argparse.Namespace, site: str) -> int:
    """Lift the ban of ``site`` and say so (``admin unban-site``, ``dirac-admin-allow-site``)."""
    with connect(args) as client:
        result = to_wire(client.unban_site(site))
    print_result(args, result, f"Site {result['site']} is active again")
    return EXIT_OK


def cmd_admin_task_queues(args: argparse.Namespace) -> int:
    with connect(args) as client:
        rows = to_wire(client.task_queues())
    if args.json:
        print_json(rows)
        return EXIT_OK
    shown = [{**row, "requirements": format_requirements(row["requirements"])} for row in rows]
    columns: list[Column] = [
        ("task_queue_id", "TaskQueue>"),
        ("owner", "Owner"),
        ("group", "Group"),
        ("waiting", "Waiting>"),
        ("top_priority", "TopPriority>"),
        ("requirements", "Requirements"),
    ]
    print_table(shown, columns, empty="No task queues.")
    return EXIT_OK


def format_requirements(requirements: dict[str, Any]) -> str:
    """The requirements a task queue lists, e.g. ``cores=4 sites=LCG.CERN.cern``."""
    parts = [f"cores={requirements.get('cores', 1)}"]
    for key, value in requirements.items():
        if key != "cores" and value:
            shown = ",".join(map(str, value)) if isinstance(value, list) else value
            parts.append(f"{key}={shown}")
    return " ".join(parts)


def cmd_admin_shares(args: argparse.Namespace) -> int:
    with connect(args) as client:
        rows = to_wire(client.shares())
    if args.json:
        print_json(rows)
    else:
        print_shares(rows)
    return EXIT_OK


def print_shares(rows: list[dict[str, Any]], title: str | None = None) -> None:
    """What the matcher ranks on, per group: the load (running cores plus the decayed usage as
    cores) per unit of share; the smallest is served first. "Received" is the group's part of
    all loads, "Running" its part of the cores running now."""
    shown = [
        {
            **row,
            "share_fraction": format_percent(row["share_fraction"]),
            "load_fraction": format_percent(row["load_fraction"]),
            "running_fraction": format_percent(row.get("running_fraction", 0.0)),
            "usage_cores": f"{row.get('usage_cores', 0.0):.2f}",
            "load": f"{row.get('load', 0.0):.2f}",
            "load_per_share": f"{row.get('load_per_share', 0.0):.4g}",
            "usage_core_seconds": f"{row['usage_core_seconds']:.1f}",
        }
        for row in rows
    ]
    columns: list[Column] = [
        ("group", "Group"),
        ("share", "Share>"),
        ("share_fraction", "Target>"),
        ("running_cores", "RunningCores>"),
        ("running_fraction", "Running>"),
        ("usage_core_seconds", "Usage (core-s)>"),
        ("usage_cores", "Usage (cores)>"),
        ("load", "Load (cores)>"),
        ("load_per_share", "Load/Share>"),
        ("load_fraction", "Received>"),
    ]
    print_table(shown, columns, title=title, empty="No groups.")


def cmd_admin_set_share(args: argparse.Namespace) -> int:
    with connect(args) as client:
        result = to_wire(client.set_share(args.group, args.share))
    print_result(args, result, f"Group {result['group']} now has share {result['share']:g}")
    return EXIT_OK


def cmd_admin_pilots(args: argparse.Namespace) -> int:
    if args.summary:
        return print_pilot_summary(args)
    states = [state.strip() for state in args.state.split(",")] if args.state else []
    with connect(args) as client:
        rows = to_wire(client.pilots(site=args.site, states=states, limit=args.limit))
    if args.json:
        print_json(rows)
        return EXIT_OK
    shown = [
        {
            **row,
            "jobs": format_ids(row["jobs"]) if row["jobs"] else "",
            "submitted": format_time(row["submitted"]),
            "state": row["state"] + (" (kill requested)" if row["kill_requested"] else ""),
        }
        for row in rows
    ]
    columns: list[Column] = [
        ("pilot_id", "PilotID"),
        ("site", "Site"),
        ("ce", "CE"),
        ("state", "State"),
        ("fabric_ref", "Reference"),
        ("submitted", "Submitted (UTC)"),
        ("jobs", "Jobs"),
        ("reason", "Reason"),
    ]
    print_table(shown, columns, empty="No pilots.")
    return EXIT_OK


def cmd_admin_pilot_output(args: argparse.Namespace) -> int:
    with connect(args) as client:
        result = to_wire(client.pilot_output(args.pilot_id))
    if args.json:
        print_json(result)
    elif result["collected"]:
        sys.stdout.write(result["output"])
    else:
        print(
            f"pilot {result['pilot_id']} is {result['state']}: its output is collected by its "
            "director when it ends",
            file=sys.stderr,
        )
        return EXIT_REFUSED
    return EXIT_OK


def cmd_admin_kill_pilot(args: argparse.Namespace) -> int:
    with connect(args) as client:
        result = to_wire(client.kill_pilot(args.pilot_id))
    moved = result["rescheduled"]
    print_result(
        args,
        result,
        f"Pilot {result['pilot_id']} told to stop and cancelled by its "
        f"director; {len(moved)} job(s) rescheduled" + (f": {format_ids(moved)}" if moved else ""),
    )
    return EXIT_OK


def cmd_admin_service_status(args: argparse.Namespace) -> int:
    """Which instance of the central service leads, since when, and who stands by."""
    with connect(args) as client:
        reply = to_wire(client.service_status())
    if args.json:
        print_json(reply)
        return EXIT_OK
    rows = [
        {**row, "since": format_time(row["since"]), "seen": format_time(row["seen"]),
         "code_schema": row.get("code_schema") or "-"}
        for row in reply["instances"]
    ]  # fmt: skip
    columns: list[Column] = [
        ("name", "Instance"),
        ("role", "Role"),
        ("since", "Since"),
        ("endpoint", "Endpoint"),
        ("host", "Host"),
        ("pid", "PID>"),
        ("seen", "LastSeen"),
        ("code_schema", "Schema>"),
    ]
    schema = f" (schema {reply['schema']})" if reply.get("schema") else ""
    print(f"store: {reply['store']}{schema}")
    print_table(rows, columns, empty="No instance known.")
    return EXIT_OK


def _add_service_parser(commands: Any, both: list[argparse.ArgumentParser]) -> None:
    """``admin service status``."""
    service = commands.add_parser(
        "service",
        help="the central service's instances",
        description="The central service's instances (an active-standby pair on PostgreSQL).",
    )
    actions = service.add_subparsers(dest="service_command", metavar="ACTION", required=True)
    status = actions.add_parser(
        "status",
        parents=both,
        help="which instance leads, since when, who stands by",
        description="Which instance of the central service leads, since when, who stands by.",
    )
    status.set_defaults(cli_command="service status")


# -- the parser --------------------------------------------------------------------------------


def _command(
    commands: Any, name: str, both: list[argparse.ArgumentParser], text: str
) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = commands.add_parser(
        name, parents=both, help=text, description=text[0].upper() + text[1:]
    )
    return parser


def add_admin_parser(groups: Any, both: list[argparse.ArgumentParser]) -> None:
    admin = groups.add_parser(
        "admin",
        help="sites, pilots, task queues and shares",
        description="Administer sites, pilots, task queues, shares and "
        "identities (admins and operators).",
    )
    commands = admin.add_subparsers(dest="cli_command", metavar="COMMAND", required=True)
    _command(commands, "sites", both, "sites seen and their ban status")
    ban = _command(commands, "ban-site", both, "stop matching jobs to a site")
    ban.add_argument("site", help="the site's name, e.g. LCG.CERN.cern")
    ban.add_argument("--reason", required=True, help="why (shown in admin sites)")
    unban = _command(commands, "unban-site", both, "lift a site ban")
    unban.add_argument("site", help="the site's name, e.g. LCG.CERN.cern")
    _command(commands, "task-queues", both, "waiting jobs by task queue")
    _command(commands, "shares", both, "group shares and the usage received")
    set_share = _command(commands, "set-share", both, "set a group's share")
    set_share.add_argument("group", help="the group")
    set_share.add_argument("share", type=float, help="relative weight, e.g. 70")
    pilots = _command(commands, "pilots", both, "pilot records, newest last")
    pilots.add_argument("--site", help="only this site's pilots")
    pilots.add_argument("--state", help="only pilots in these states (e.g. Running,Waiting)")
    pilots.add_argument(
        "--limit", type=positive_int, default=1000, help="at most this many pilots (default 1000)"
    )
    pilots.add_argument(
        "--summary",
        action="store_true",
        help="count pilots by site and state instead of listing them",
    )
    pilot_output = _command(commands, "pilot-output", both, "what an ended pilot printed")
    pilot_output.add_argument("pilot_id", metavar="PILOT_ID", help="the pilot's id")
    kill_pilot = _command(commands, "kill-pilot", both, "stop a pilot; its jobs go back to Waiting")
    kill_pilot.add_argument("pilot_id", metavar="PILOT_ID", help="the pilot's id")
    add_identity_parser(commands, both)
    _add_service_parser(commands, both)
    add_site_parser(commands, both)
    add_monitoring_admin_parsers(commands, both)


ADMIN_COMMANDS = {
    ("admin", "sites"): cmd_admin_sites,
    ("admin", "ban-site"): cmd_admin_ban_site,
    ("admin", "unban-site"): cmd_admin_unban_site,
    ("admin", "task-queues"): cmd_admin_task_queues,
    ("admin", "shares"): cmd_admin_shares,
    ("admin", "set-share"): cmd_admin_set_share,
    ("admin", "pilots"): cmd_admin_pilots,
    ("admin", "pilot-output"): cmd_admin_pilot_output,
    ("admin", "kill-pilot"): cmd_admin_kill_pilot,
    ("admin", "identity add"): cmd_admin_identity_add,
    ("admin", "identity list"): cmd_admin_identity_list,
    ("admin", "identity revoke"): cmd_admin_identity_revoke,
    ("admin", "service status"): cmd_admin_service_status,
    **OPERATIONS_COMMANDS,
}
