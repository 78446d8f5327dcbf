"""The operators' commands of issue 14: ``job why``, bulk actions with ``--select``, site
operations (``admin site drain|limit|show``) and ``admin pilots --summary``.

A bulk action is always shown first: the count and a sample of the jobs it selects (a user's own
jobs only: the service counts no other). Then ``--dry-run`` stops; above the confirmation cap the
action needs ``--yes`` (or an answer ``yes`` on a terminal); above the admin cap only an admin
passes, with ``--over-admin-cap``. The service acts in batches between its other work; this
command follows it to the end with a progress line.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from typing import Any

from dirac_like.cli.common import UsageError, connect, parse_job_ids, print_result
from dirac_like.cli.display import Column, format_time, print_json, print_table
from dirac_like.client import Client
from dirac_like.errors import EXIT_OK, EXIT_REFUSED
from dirac_like.protocol import to_wire
from dirac_like.selection import FIELDS, parse_selection

Command = Callable[[argparse.Namespace], int]
SAMPLE_COLUMNS: list[Column] = [
    ("job_id", "JobID>"),
    ("status", "Status"),
    ("site", "Site"),
    ("owner", "Owner"),
    ("group", "Group"),
    ("job_name", "JobName"),
]
BULK_POLL = 0.2  # seconds between two looks at a bulk action's progress
MAX_WHY_LINES = 20  # waiting jobs explained under ``job status``
SELECT_HELP = (
    f"act on the jobs this selection matches instead of ids: comma-separated "
    f"field=value with fields {', '.join(FIELDS)} (e.g. "
    f"'status=Waiting,site=LCG.CERN.cern,older=2d,name=mc_*')"
)


# -- job why -----------------------------------------------------------------------------------


def cmd_job_why(args: argparse.Namespace) -> int:
    with connect(args) as client:
        rows = to_wire(client.why(parse_job_ids(args.job_ids)))
    if args.json:
        print_json(rows)
        return EXIT_OK
    for row in rows:
        print_why(row)
    return EXIT_OK


def print_why(row: dict[str, Any]) -> None:
    print(f"Job {row['job_id']} ({row['status']}): {row['reason']}")
    for line in row["details"]:
        print(f"  - {line}")
    for kind, total, rejections in (
        ("CEs", row["ces_considered"], row["ce_rejections"]),
        ("recent pilots", row["pilots_considered"], row["pilot_rejections"]),
    ):
        if total and rejections:
            counts = ", ".join(
                f"{name} {count}"
                for name, count in sorted(rejections.items(), key=lambda item: -item[1])
            )
            print(f"  {kind} rejecting it, of {total}: {counts}")


def print_why_lines(args: argparse.Namespace, rows: list[dict[str, Any]]) -> None:
    """Under ``job status``: one "why" line per waiting job (the first MAX_WHY_LINES)."""
    waiting = [row["job_id"] for row in rows if row["status"] in ("Waiting", "Rescheduled")]
    if not waiting or args.json:
        return
    with connect(args) as client:
        for row in to_wire(client.why(waiting[:MAX_WHY_LINES])):
            print(f"why {row['job_id']}: {row['reason']}")
    if len(waiting) > MAX_WHY_LINES:
        print(f"(why: the first {MAX_WHY_LINES} waiting jobs; see dirac-like job why)")


def with_why_lines(status_command: Command) -> Command:
    def command(args: argparse.Namespace) -> int:
        code = status_command(args)
        if code == EXIT_OK and not args.json:
            with connect(args) as client:
                rows = to_wire(client.status(parse_job_ids(args.job_ids)))
            print_why_lines(args, rows)
        return code

    return command


# -- bulk actions ------------------------------------------------------------------------------


def with_selection(by_ids: Command, action: str) -> Command:
    """``job kill|delete|reschedule``: by ids as before, or ``--select`` in bulk."""

    def command(args: argparse.Namespace) -> int:
        if args.select is None:
            if not args.job_ids:
                raise UsageError(f"give job ids or --select to {action}")
            return by_ids(args)
        if args.job_ids:
            raise UsageError("give job ids or --select, not both")
        return run_bulk(args, action)

    return command


def run_bulk(args: argparse.Namespace, action: str) -> int:
    parse_selection(args.select)  # a typo is refused here, before anything is asked
    with connect(args) as client:
        shown = to_wire(client.select_jobs(args.select, args.sample))
        show_selection(args, action, shown)
        if shown["count"] == 0 or args.dry_run:
            return EXIT_OK if args.dry_run else EXIT_REFUSED
        if not confirmed(args, shown):
            print("Nothing done.", file=sys.stderr)
            return EXIT_REFUSED
        started = to_wire(
            client.bulk(
                action, args.select, shown["count"], yes=True, over_admin_cap=args.over_admin_cap
            )
        )
        status = follow_bulk(client, started["bulk_id"], quiet=args.json)
    print_result(
        args,
        status,
        f"{action.capitalize()}: {status['done']} of {status['count']} "
        f"job(s) done, {status['skipped']} skipped (bulk "
        f"{status['bulk_id']})",
    )
    for line in status["skipped_sample"]:
        print(f"  skipped {line}", file=sys.stderr)
    return EXIT_OK


def show_selection(args: argparse.Namespace, action: str, shown: dict[str, Any]) -> None:
    out = sys.stderr if args.json else sys.stdout
    if shown["note"]:
        print(f"Note: {shown['note']}", file=out)
    print(
        f"{action.capitalize()} would act on {shown['count']} job(s) selected by "
        f"{shown['selection']!r}" + (", for example:" if shown["sample"] else "."),
        file=out,
    )
    if shown["sample"] and not args.json:
        print_table(shown["sample"], SAMPLE_COLUMNS)
    if args.dry_run:
        print("Dry run: nothing done.", file=out)


def confirmed(args: argparse.Namespace, shown: dict[str, Any]) -> bool:
    count = shown["count"]
    if count > shown["admin_above"] and not args.over_admin_cap:
        raise UsageError(
            f"{count} jobs is above the admin cap of {shown['admin_above']}: only "
            "an admin may act on so many at once, with --over-admin-cap"
        )
    if count <= shown["confirm_above"] or args.yes:
        return True
    if not sys.stdin.isatty():
        raise UsageError(
            f"{count} jobs is above the confirmation cap of "
            f"{shown['confirm_above']}: confirm with --yes"
        )
    answer = input(f"Act on {count} jobs? Type yes to go on: ")
    return answer.strip().lower() == "yes"


def follow_bulk(client: Client, bulk_id: int, quiet: bool = False) -> dict[str, Any]:
    """Poll the bulk action to its end, with a progress line on a terminal."""
    live = sys.stderr.isatty() and not quiet
    while True:
        status = to_wire(client.bulk_status(bulk_id))
        if live:
            sys.stderr.write(
                f"\r{status['action']}: {status['done'] + status['skipped']} of {status['count']}"
            )
            sys.stderr.flush()
        if status["finished"]:
            if live:
                sys.stderr.write("\n")
            return status
        time.sleep(BULK_POLL)


def add_bulk_options(parser: argparse.ArgumentParser) -> None:
    """``--select`` and its safety options on ``job kill|delete|reschedule``."""
    parser.add_argument("--select", metavar="SELECTION", help=SELECT_HELP)
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="with --select: show the count and a sample, change nothing",
    )
    parser.add_argument(
        "--yes",
        action="store_true",
        help="with --select: confirm an action above the confirmation cap",
    )
    parser.add_argument(
        "--over-admin-cap",
        action="store_true",
        help="with --select: pass the admin cap (admins only)",
    )
    parser.add_argument(
        "--sample",
        type=int,
        default=10,
        metavar="N",
        help="with --select: show N of the selected jobs (default 10)",
    )


# -- sites and pilots --------------------------------------------------------------------------


def cmd_site_drain(args: argparse.Namespace) -> int:
    with connect(args) as client:
        result = to_wire(client.site_drain(args.site, drain=not args.undo))
    done = "takes jobs again" if args.undo else "drains: no new job; running jobs finish"
    print_result(args, result, f"Site {result['site']} {done} ({result['status']})")
    return EXIT_OK


def cmd_site_limit(args: argparse.Namespace) -> int:
    with connect(args) as client:
        result = to_wire(client.site_limit(args.site, args.limit))
    limit = result["max_running"]
    print_result(
        args,
        result,
        f"Site {result['site']}: at most {limit if limit else 'any number of'} jobs at once",
    )
    return EXIT_OK


def cmd_site_show(args: argparse.Namespace) -> int:
    with connect(args) as client:
        show = to_wire(client.site_show(args.site))
    if args.json:
        print_json(show)
        return EXIT_OK
    reason = f" ({show['reason']})" if show["reason"] else ""
    limit = show["max_running"] or "none"
    print(
        f"Site {show['site']}: {show['status']}{reason}; running limit {limit}; "
        f"{show['active_jobs']} jobs matched or running; {show['waiting_could_run']} waiting "
        "jobs could run here"
    )
    print(
        f"Last pilot: {_when(show['last_pilot'])}; its director last sized pilots: "
        f"{_when(show['director_seen'])}"
    )
    pilots = (
        ", ".join(f"{state} {count}" for state, count in sorted(show["pilots_by_state"].items()))
        or "none"
    )
    print(f"Pilots: {pilots}")
    columns: list[Column] = [
        ("ce", "CE"),
        ("cores", "Cores>"),
        ("memory_mb", "MemoryMB>"),
        ("cpu_time_left", "CPUTime>"),
        ("platform", "Platform"),
        ("tags", "Tags"),
    ]
    print_table(show["ces"], columns, empty="No CE known (no director has sized pilots).")
    return EXIT_OK


def _when(timestamp: float) -> str:
    return format_time(timestamp) if timestamp else "never"


def print_pilot_summary(args: argparse.Namespace) -> int:
    """``admin pilots --summary``: pilots by site and state."""
    with connect(args) as client:
        rows = to_wire(client.pilot_summary())
    if args.json:
        print_json(rows)
        return EXIT_OK
    states = sorted({row["state"] for row in rows})
    table: dict[str, dict[str, Any]] = {}
    for row in rows:
        line = table.setdefault(row["site"], {"site": row["site"], **dict.fromkeys(states, 0)})
        line[row["state"]] = row["count"]
    shown = [{**line, "total": sum(line[state] for state in states)} for line in table.values()]
    columns: list[Column] = [("site", "Site"), *((s, f"{s}>") for s in states), ("total", "Total>")]
    print_table(shown, columns, empty="No pilots.")
    return EXIT_OK


def add_site_parser(commands: Any, both: list[argparse.ArgumentParser]) -> None:
    """``admin site drain|limit|show`` (commands: the admin group's subparsers)."""
    site = commands.add_parser(
        "site", help="drain, limit and show a site", description="Drain, limit and show a site."
    )
    actions = site.add_subparsers(dest="site_command", metavar="ACTION", required=True)
    drain = actions.add_parser(
        "drain",
        parents=both,
        help="no new job at a site; running jobs finish",
        description="Match no new job at a site; jobs "
        "running there finish (pilots asking get no job).",
    )
    drain.add_argument("site", help="the site's name")
    drain.add_argument("--undo", action="store_true", help="stop draining: take jobs again")
    drain.set_defaults(cli_command="site drain")
    limit = actions.add_parser(
        "limit",
        parents=both,
        help="jobs matched or running at once",
        description="Set how many jobs may be matched or running at "
        "a site at once (0: no limit; -1: as configured).",
    )
    limit.add_argument("site", help="the site's name")
    limit.add_argument("limit", type=int, help="the limit (0: none; -1: the configured one)")
    limit.set_defaults(cli_command="site limit")
    show = actions.add_parser(
        "show",
        parents=both,
        help="a site's CEs, pilots, jobs, status",
        description="Show a site: status, CEs, pilots, running jobs and "
        "the waiting jobs it could run.",
    )
    show.add_argument("site", help="the site's name")
    show.set_defaults(cli_command="site show")


def add_why_parser(commands: Any, both: list[argparse.ArgumentParser]) -> None:
    text = (
        "why jobs wait: the matcher's reason (no CE can run it, sites banned or full, "
        "others served first, held back)"
    )
    why = commands.add_parser(
        "why",
        parents=both,
        help=text,
        description=text[0].upper()
        + text[1:]
        + ", with how many CEs and recent pilots reject each "
        "requirement.",
    )
    why.add_argument("job_ids", nargs="+", metavar="ID", help="job ids: 5, 5,6 or 5-9")


OPERATIONS_COMMANDS: dict[tuple[str, str], Command] = {  # the admin ones (job why: in jobs)
    ("admin", "site drain"): cmd_site_drain,
    ("admin", "site limit"): cmd_site_limit,
    ("admin", "site show"): cmd_site_show,
}
