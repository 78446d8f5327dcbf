"""``dirac-like job ...``: submit, follow, inspect and control jobs."""

from __future__ import annotations

import argparse
import getpass
import sys
import time
from pathlib import Path
from typing import Any

from dirac_like.cli.common import (
    IDS_HELP,
    UsageError,
    connect,
    parse_job_ids,
    positive_int,
    read_descriptions,
    seconds,
)
from dirac_like.cli.display import (
    Column,
    count_by,
    format_ids,
    format_time,
    print_json,
    print_table,
)
from dirac_like.cli.job_files import describe_as_jdl, fetch_input, fetch_outputs
from dirac_like.cli.operations import (
    add_bulk_options,
    add_why_parser,
    cmd_job_why,
    print_why_lines,
    with_selection,
)
from dirac_like.errors import EXIT_OK, EXIT_REFUSED, InvalidArgument
from dirac_like.protocol import to_wire
from dirac_like.selection import parse_age
from dirac_like.states import FINAL_STATUSES, JobStatus

SUBMIT_TIMEOUT = 120.0  # per try: a 100k-job parametric submission takes a while
WAIT_FIRST_INTERVAL, WAIT_MAX_INTERVAL, WAIT_GROWTH = 0.1, 2.0, 1.5

JOB_COLUMNS: list[Column] = [
    ("job_id", "JobID>"),
    ("status", "Status"),
    ("minor_status", "MinorStatus"),
    ("site", "Site"),
    ("owner", "Owner"),
    ("group", "Group"),
    ("job_name", "JobName"),
]
STATUS_NAMES = [status.value for status in JobStatus]
SUMMARY_KEYS = {"site": "Site", "owner": "Owner", "group": "Group"}
SORT_KEYS = {
    "id": "job_id",
    "status": "status",
    "site": "site",
    "owner": "owner",
    "group": "group",
    "name": "job_name",
}


def submit_jobs(args: argparse.Namespace) -> list[int]:
    """Read the job files ``args.files``, upload their input sandboxes, submit; the job ids."""
    from dirac_like.submission import prepare_submission, upload_sandboxes

    read = [(Path(name), item) for name in args.files for item in read_descriptions(Path(name))]
    prepared = prepare_submission(read)  # every description valid before anything is uploaded
    for job in prepared:
        for warning in job.warnings:
            print(f"warning: {job.path}: {warning}", file=sys.stderr)
    with connect(args) as client:
        # Secure, the service makes the submitter the owner (an admin may name another one).
        owner = args.owner or ("" if client.identity else getpass.getuser())
        client.ping()  # fail fast when nobody listens, before the long submit timeout
        descriptions = upload_sandboxes(prepared, client)
        reply = client.submit_reply(descriptions, owner, args.group, timeout=SUBMIT_TIMEOUT)
    for never in reply.warnings:  # jobs no known CE can ever run (they wait, in case)
        print(f"warning: {never}", file=sys.stderr)
    return reply.job_ids


def cmd_job_submit(args: argparse.Namespace) -> int:
    job_ids = submit_jobs(args)
    if args.json:
        print_json({"job_ids": job_ids})
    else:
        print(
            f"Submitted {len(job_ids)} job{'s' if len(job_ids) != 1 else ''}: "
            f"{format_id_range(job_ids)}"
        )
    return EXIT_OK


def format_id_range(job_ids: list[int]) -> str:
    """``17..116`` for consecutive ids (a parametric submission), else the ids as listed."""
    if len(job_ids) > 1 and job_ids == list(range(job_ids[0], job_ids[0] + len(job_ids))):
        return f"{job_ids[0]}..{job_ids[-1]}"
    return format_ids(job_ids)


def cmd_job_status(args: argparse.Namespace) -> int:
    with connect(args) as client:
        rows = to_wire(client.status(parse_job_ids(args.job_ids)))
    print_jobs(args, rows)
    print_why_lines(args, rows)  # a "why" line for each waiting job
    return EXIT_OK


def cmd_job_list(args: argparse.Namespace) -> int:
    filters = {
        "status": args.status,
        "site": args.site,
        "owner": args.owner,
        "group": args.group,
        "limit": args.limit,
        "name": args.name,
        "older": args.older,
        "newer": args.newer,
    }
    with connect(args) as client:
        rows = to_wire(client.list_jobs(**filters))
    rows = sort_rows(rows, args.sort, args.reverse)
    print_jobs(args, rows)
    if not args.json and rows:
        print(f"Total {len(rows)}: {status_totals(rows)}")
    if len(rows) == args.limit and not args.json:
        print(f"(the first {args.limit} jobs; see --limit)", file=sys.stderr)
    return EXIT_OK


def sort_rows(rows: list[dict[str, Any]], key: str, reverse: bool = False) -> list[dict[str, Any]]:
    """Rows sorted by ``key`` (one of SORT_KEYS), then by job id."""
    field = SORT_KEYS[key]
    return sorted(rows, key=lambda row: (row[field], row["job_id"]), reverse=reverse)


def status_totals(rows: list[dict[str, Any]]) -> str:
    """``Done 3, Running 1``: how many rows have each status, in the order of the statuses."""
    counts = count_by(rows, "status")
    order = {status.value: index for index, status in enumerate(JobStatus)}
    shown = sorted(counts.items(), key=lambda item: order.get(item[0][0], len(order)))
    return ", ".join(f"{status} {count}" for (status,), count in shown)


def print_jobs(args: argparse.Namespace, rows: list[dict[str, Any]]) -> None:
    if args.json:
        print_json(rows)
    else:
        print_table(rows, JOB_COLUMNS, empty="No jobs.")


def cmd_job_summary(args: argparse.Namespace) -> int:
    with connect(args) as client:
        rows = to_wire(client.list_jobs(owner=args.owner, group=args.group, limit=args.limit))
    key = args.by
    table = summary_table(rows, key)
    if args.json:
        print_json(table)
        return EXIT_OK
    statuses = [status.value for status in JobStatus if any(row[status.value] for row in table)]
    columns: list[Column] = [
        (key, SUMMARY_KEYS[key]),
        *((s, f"{s}>") for s in statuses),
        ("total", "Total>"),
    ]
    print_table(table, columns, empty="No jobs.")
    return EXIT_OK


def summary_table(rows: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    """One row per value of ``key`` (site, owner or group): the count of jobs in each status,
    the total, and a last row "Total" over all."""
    counts = count_by(rows, key, "status")
    table: dict[str, dict[str, Any]] = {}
    for (value, status), count in sorted(counts.items(), key=lambda item: str(item[0][0])):
        row = table.setdefault(str(value), {key: str(value), **dict.fromkeys(STATUS_NAMES, 0)})
        row[status] += count
    result = [{**row, "total": sum(row[s.value] for s in JobStatus)} for row in table.values()]
    if result:
        total = {key: "Total", **{s.value: sum(r[s.value] for r in result) for s in JobStatus}}
        result.append({**total, "total": len(rows)})
    return result


def cmd_job_kill(args: argparse.Namespace) -> int:
    with connect(args) as client:
        result = to_wire(client.kill(parse_job_ids(args.job_ids)))
    _print_acted(
        args, result, ("killed", "Killed"), ("kill_requested", "Kill sent to the pilots of")
    )
    return EXIT_OK


def cmd_job_delete(args: argparse.Namespace) -> int:
    with connect(args) as client:
        result = to_wire(client.delete(parse_job_ids(args.job_ids)))
    _print_acted(args, result, ("deleted", "Deleted"))
    return EXIT_OK


def cmd_job_reschedule(args: argparse.Namespace) -> int:
    with connect(args) as client:
        result = to_wire(client.reschedule(parse_job_ids(args.job_ids)))
    _print_acted(args, result, ("rescheduled", "Rescheduled"))
    return EXIT_OK


def _print_acted(args: argparse.Namespace, result: dict[str, Any], *lines: tuple[str, str]) -> None:
    """The service's answer to kill/delete/reschedule: as JSON with ``--json``, else one line
    ``WHAT N job(s): IDS`` per ``(key, WHAT)`` whose job list is not empty (always, if only one)."""
    if args.json:
        print_json(result)
        return
    for key, what in lines:
        job_ids = result[key]
        if job_ids or len(lines) == 1:
            print(f"{what} {len(job_ids)} job(s): {format_ids(job_ids)}")


def cmd_job_logging(args: argparse.Namespace) -> int:
    with connect(args) as client:
        rows = to_wire(client.history(args.job_id))
    if args.json:
        print_json(rows)
        return EXIT_OK
    shown = [{**row, "time": format_time(row["time"])} for row in rows]
    columns: list[Column] = [
        ("status", "Status"),
        ("minor_status", "MinorStatus"),
        ("application_status", "ApplicationStatus"),
        ("time", "Time (UTC)"),
        ("source", "Source"),
    ]
    print_table(shown, columns, empty=f"No history for job {args.job_id}.")
    return EXIT_OK


def cmd_job_wait(args: argparse.Namespace) -> int:
    job_ids = parse_job_ids(args.job_ids)
    deadline = None if args.timeout is None else time.monotonic() + args.timeout
    interval = WAIT_FIRST_INTERVAL
    live = sys.stderr.isatty() and not args.json  # a progress line, rewritten in place
    with connect(args) as client:
        while True:
            rows = to_wire(client.status(job_ids))
            pending = [row for row in rows if JobStatus(row["status"]) not in FINAL_STATUSES]
            if live:
                sys.stderr.write(
                    f"\r\x1b[Kwaiting for {len(pending)} of {len(rows)} job(s): "
                    f"{status_totals(rows)}"
                )
                sys.stderr.flush()
            if not pending or (deadline is not None and time.monotonic() >= deadline):
                break
            pause = interval if deadline is None else min(interval, deadline - time.monotonic())
            time.sleep(max(pause, 0.0))
            interval = min(interval * WAIT_GROWTH, WAIT_MAX_INTERVAL)
    if live:
        sys.stderr.write("\n")
    print_jobs(args, rows)
    if pending:
        print(f"timed out waiting for jobs: {_describe_pending(pending)}", file=sys.stderr)
        return EXIT_REFUSED
    return EXIT_OK


def _describe_pending(rows: list[dict[str, Any]]) -> str:
    return f"{format_ids(row['job_id'] for row in rows)} ({status_totals(rows)})"


def cmd_job_output(args: argparse.Namespace) -> int:
    job_ids = parse_job_ids(args.job_ids)
    with connect(args) as client:
        fetched, refused = fetch_outputs(client, job_ids, Path(args.dir), force=args.force)
    if args.json:
        print_json(
            [
                {"job_id": job_id, "folder": str(target), "files": files}
                for job_id, target, files in fetched
            ]
        )
    else:
        for job_id, target, files in fetched:
            print(f"Output sandbox of job {job_id} in {target}: {', '.join(files) or 'empty'}")
    for job_id, exc in refused:
        print(f"error: job {job_id}: {exc.message}", file=sys.stderr)
    return max((exc.exit_code for _, exc in refused), default=EXIT_OK)


def cmd_job_get_input(args: argparse.Namespace) -> int:
    with connect(args) as client:
        target, files = fetch_input(client, args.job_id, Path(args.dir), force=args.force)
    if args.json:
        print_json({"job_id": args.job_id, "folder": str(target), "files": files})
    elif files:
        print(f"Input sandbox of job {args.job_id} in {target}: {', '.join(files)}")
    else:
        print(f"Job {args.job_id} has no input sandbox")
    return EXIT_OK


def cmd_job_jdl(args: argparse.Namespace) -> int:
    with connect(args) as client:
        description = client.job_description(args.job_id)
    if args.json:
        print_json(description)
    else:
        sys.stdout.write(describe_as_jdl(description))
    return EXIT_OK


def cmd_job_peek(args: argparse.Namespace) -> int:
    with connect(args) as client:
        result = to_wire(client.peek(args.job_id))
    if args.json:
        print_json(result)
        return EXIT_OK
    if not result["tail"]:
        print(
            f"job {args.job_id} ({result['status']}): no output received from its pilot yet",
            file=sys.stderr,
        )
        return EXIT_OK
    sys.stdout.write(result["tail"] if result["tail"].endswith("\n") else result["tail"] + "\n")
    return EXIT_OK


# -- the parser --------------------------------------------------------------------------------


def _ids_command(
    commands: Any, name: str, both: list[argparse.ArgumentParser], text: str, optional: bool = False
) -> argparse.ArgumentParser:
    parser = commands.add_parser(name, parents=both, help=text, description=text)
    parser.add_argument("job_ids", nargs="*" if optional else "+", metavar="ID", help=IDS_HELP)
    return parser


def _id_command(
    commands: Any, name: str, both: list[argparse.ArgumentParser], text: str
) -> argparse.ArgumentParser:
    parser = commands.add_parser(name, parents=both, help=text, description=text)
    parser.add_argument("job_id", type=positive_int, metavar="ID", help="the job id")
    return parser


def add_job_parser(groups: Any, both: list[argparse.ArgumentParser]) -> None:
    job = groups.add_parser(
        "job",
        help="submit, follow and control jobs",
        description="Submit, follow and control jobs.",
    )
    commands = job.add_subparsers(dest="cli_command", metavar="COMMAND", required=True)
    _add_submit(commands, both)
    _ids_command(commands, "status", both, "show the status of jobs")
    _add_list(commands, both)
    _add_summary(commands, both)
    for name, text in (
        ("kill", "kill jobs (running ones are killed by their pilot)"),
        ("delete", "delete jobs that are not running (kill running ones first)"),
        ("reschedule", "send jobs back to Waiting for another try"),
    ):
        add_bulk_options(_ids_command(commands, name, both, text, optional=True))
    add_why_parser(commands, both)
    _id_command(commands, "logging", both, "show the status history of one job")
    _id_command(
        commands,
        "jdl",
        both,
        "show a job's stored description (expanded, as the service keeps it) as JDL",
    )
    _id_command(
        commands,
        "peek",
        both,
        "show the last lines a running job printed (sent by its pilot with each heartbeat)",
    )
    wait = _ids_command(
        commands, "wait", both, "wait until jobs are Done, Failed, Killed or Deleted"
    )
    wait.add_argument(
        "--timeout",
        type=seconds,
        metavar="S",
        help="give up after S seconds (exit 1); default: wait forever",
    )
    output = _ids_command(
        commands, "output", both, "download finished jobs' output sandboxes into DIR/<ID>/"
    )
    _add_fetch_options(output)
    get_input = _id_command(
        commands, "get-input", both, "download a job's input sandbox into DIR/<ID>/"
    )
    _add_fetch_options(get_input)


def _add_fetch_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dir", default=".", help="unpack into DIR/<ID>/ (default: .)")
    parser.add_argument(
        "--force",
        action="store_true",
        help="replace a DIR/<ID>/ folder that exists (default: refuse)",
    )


def _add_submit(commands: Any, both: list[argparse.ArgumentParser]) -> None:
    text = "submit JDL or JSON job files (their InputSandbox files are uploaded first)"
    submit = commands.add_parser("submit", parents=both, help=text, description=text)
    submit.add_argument(
        "files",
        nargs="+",
        metavar="FILE",
        help="JDL file, or .json file with an object or a list of objects",
    )
    submit.add_argument(
        "--owner",
        help="owner of the jobs (admins only; default: the "
        "identity's name, or your user name with --insecure)",
    )
    submit.add_argument("--group", default="", help="group (default: the service's default)")


def age(text: str) -> float:
    try:
        return parse_age(text)
    except InvalidArgument as exc:
        raise argparse.ArgumentTypeError(exc.message) from None


def _add_list(commands: Any, both: list[argparse.ArgumentParser]) -> None:
    text = "list jobs, with filters; ends with the totals by status"
    listing = commands.add_parser("list", parents=both, help=text, description=text)
    for option in ("status", "site", "owner", "group"):
        listing.add_argument(f"--{option}", help=f"only jobs with this {option}")
    listing.add_argument(
        "--limit", type=positive_int, default=1000, help="at most this many jobs (default 1000)"
    )
    listing.add_argument("--name", help="only jobs whose name matches this pattern (mc_*)")
    listing.add_argument(
        "--older",
        type=age,
        default=0.0,
        metavar="AGE",
        help="only jobs submitted at least AGE ago (90s, 15m, 6h, 2d, 1w)",
    )
    listing.add_argument(
        "--newer", type=age, default=0.0, metavar="AGE", help="only jobs submitted at most AGE ago"
    )
    listing.add_argument(
        "--sort", default="id", choices=list(SORT_KEYS), help="order of the rows (default: id)"
    )
    listing.add_argument("--reverse", action="store_true", help="in descending order")


def _add_summary(commands: Any, both: list[argparse.ArgumentParser]) -> None:
    text = "count jobs by status and site (or owner, or group)"
    summary = commands.add_parser("summary", parents=both, help=text, description=text)
    summary.add_argument(
        "--by",
        choices=sorted(SUMMARY_KEYS),
        default="site",
        help="the rows of the table (default: site)",
    )
    summary.add_argument("--owner", help="only this owner's jobs")
    summary.add_argument("--group", help="only this group's jobs")
    summary.add_argument(
        "--limit",
        type=positive_int,
        default=100_000,
        help="count at most this many jobs (default 100000)",
    )


JOB_COMMANDS = {
    ("job", "submit"): cmd_job_submit,
    ("job", "status"): cmd_job_status,
    ("job", "list"): cmd_job_list,
    ("job", "summary"): cmd_job_summary,
    ("job", "kill"): with_selection(cmd_job_kill, "kill"),
    ("job", "delete"): with_selection(cmd_job_delete, "delete"),
    ("job", "reschedule"): with_selection(cmd_job_reschedule, "reschedule"),
    ("job", "logging"): cmd_job_logging,
    ("job", "jdl"): cmd_job_jdl,
    ("job", "peek"): cmd_job_peek,
    ("job", "wait"): cmd_job_wait,
    ("job", "output"): cmd_job_output,
    ("job", "get-input"): cmd_job_get_input,
    ("job", "why"): cmd_job_why,
}

__all__ = ["JOB_COMMANDS", "UsageError", "add_job_parser", "submit_jobs"]
