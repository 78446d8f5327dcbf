"""The ``dirac-like`` command: run the central service, submit and follow jobs, administer.

One function per command (``cmd_<group>_<command>(args) -> exit code``) and one table,
:data:`COMMANDS`, from (group, command) to it. Exit codes (see :mod:`dirac_like.errors`): 0 ok,
1 refused by the service, 2 usage (bad arguments, unreadable files, bad config), 3 the service is
unreachable.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dirac_like import __version__
from dirac_like.cli_identity import (
    INTERACTIVE,
    add_identity_parser,
    add_init_parser,
    client_for,
    cmd_admin_identity_add,
    cmd_admin_identity_list,
    cmd_admin_identity_revoke,
    cmd_init,
    identity_of,
    identity_options,
    pilot_identity,
    print_hint_unreachable,
    server_for,
)
from dirac_like.client import Client
from dirac_like.config import DEFAULT_SERVER, default_home, load_config
from dirac_like.display import (
    Column,
    count_by,
    format_ids,
    format_percent,
    format_time,
    print_json,
    print_table,
)
from dirac_like.errors import (
    EXIT_OK,
    EXIT_REFUSED,
    EXIT_USAGE,
    DiracLikeError,
    ServiceUnavailable,
)
from dirac_like.protocol import to_wire

Command = Callable[[argparse.Namespace], int]

SUBMIT_TIMEOUT = 120.0  # per try: a 100k-job parametric submission takes a while
FINAL_STATUSES = ("Done", "Failed", "Killed", "Deleted")
WAIT_FIRST_INTERVAL, WAIT_MAX_INTERVAL, WAIT_GROWTH = 0.1, 2.0, 1.5
MAX_OUTPUT_DOWNLOAD = 1024 * 1024 * 1024  # bytes of one output sandbox archive

JOB_COLUMNS: list[Column] = [
    ("job_id", "JobID>"), ("status", "Status"), ("minor_status", "MinorStatus"),
    ("site", "Site"), ("owner", "Owner"), ("group", "Group"), ("job_name", "JobName"),
]


class UsageError(DiracLikeError):
    """A command line the CLI cannot act on (unreadable or malformed input file)."""

    code = "usage"
    exit_code = EXIT_USAGE


# -- helpers -----------------------------------------------------------------------------------


def connect(args: argparse.Namespace) -> Client:
    return client_for(args, INTERACTIVE)


def parse_job_ids(values: list[str]) -> list[int]:
    """Job ids as given on the command line: ``5``, ``5,6`` or ranges ``5-9``."""
    ids: list[int] = []
    for value in values:
        for part in value.split(","):
            ids.extend(_parse_id_part(part.strip()))
    return ids


def _parse_id_part(part: str) -> list[int]:
    first, _, last = part.partition("-")
    try:
        start, end = int(first), int(last or first)
    except ValueError:
        raise UsageError(f"not a job id or range: {part!r}") from None
    if start < 1 or end < start:
        raise UsageError(f"not a job id or range: {part!r}")
    return list(range(start, end + 1))


def read_descriptions(path: Path) -> list[str | dict[str, Any]]:
    """The job descriptions in one file: JSON objects from ``*.json``, else JDL text."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise UsageError(f"cannot read job file {path}: {reason}") from None
    if path.suffix.lower() != ".json":
        return [text]
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"job file {path} is not valid JSON: {exc}") from None
    items = data if isinstance(data, list) else [data]
    if not items or not all(isinstance(item, dict) for item in items):
        raise UsageError(f"job file {path}: expected a JSON object or a list of objects")
    return list(items)


# -- service -----------------------------------------------------------------------------------


def cmd_service_central(args: argparse.Namespace) -> int:
    from dirac_like.logs import setup_logging

    home = Path(args.home) if args.home else default_home()
    config = load_config(Path(args.config) if args.config else None)
    setup_logging("central", home, args.verbose)
    from dirac_like.services.central import run_central

    return run_central(config, home, args.listen, insecure=args.insecure)


# -- jobs --------------------------------------------------------------------------------------


def cmd_job_submit(args: argparse.Namespace) -> int:
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
        job_ids = client.submit(descriptions, owner, args.group, timeout=SUBMIT_TIMEOUT)
    if args.json:
        print_json({"job_ids": job_ids})
    else:
        print(f"Submitted {len(job_ids)} job(s): {format_ids(job_ids)}")
    return EXIT_OK


def cmd_job_status(args: argparse.Namespace) -> int:
    with connect(args) as client:
        rows = to_wire(client.status(parse_job_ids(args.job_ids)))
    _print_jobs(args, rows)
    return EXIT_OK


def cmd_job_list(args: argparse.Namespace) -> int:
    filters = {"status": args.status, "site": args.site, "owner": args.owner,
               "group": args.group, "limit": args.limit}
    with connect(args) as client:
        rows = to_wire(client.list_jobs(**filters))
    _print_jobs(args, rows)
    if len(rows) == args.limit and not args.json:
        print(f"(the first {args.limit} jobs; see --limit)", file=sys.stderr)
    return EXIT_OK


def _print_jobs(args: argparse.Namespace, rows: list[dict[str, Any]]) -> None:
    if args.json:
        print_json(rows)
    else:
        print_table(rows, JOB_COLUMNS, empty="No jobs.")


def cmd_job_kill(args: argparse.Namespace) -> int:
    with connect(args) as client:
        result = to_wire(client.kill(parse_job_ids(args.job_ids)))
    if args.json:
        print_json(result)
        return EXIT_OK
    if result["killed"]:
        print(f"Killed {len(result['killed'])} job(s): {format_ids(result['killed'])}")
    if result["kill_requested"]:
        requested = result["kill_requested"]
        print(f"Kill sent to the pilots of {len(requested)} job(s): {format_ids(requested)}")
    return EXIT_OK


def cmd_job_reschedule(args: argparse.Namespace) -> int:
    with connect(args) as client:
        result = to_wire(client.reschedule(parse_job_ids(args.job_ids)))
    if args.json:
        print_json(result)
    else:
        done = result["rescheduled"]
        print(f"Rescheduled {len(done)} job(s): {format_ids(done)}")
    return EXIT_OK


def cmd_job_logging(args: argparse.Namespace) -> int:
    with connect(args) as client:
        rows = to_wire(client.history(args.job_id))
    if args.json:
        print_json(rows)
        return EXIT_OK
    shown = [{**row, "time": format_time(row["time"])} for row in rows]
    columns: list[Column] = [("status", "Status"), ("minor_status", "MinorStatus"),
                             ("application_status", "ApplicationStatus"),
                             ("time", "Time (UTC)"), ("source", "Source")]
    print_table(shown, columns, empty=f"No history for job {args.job_id}.")
    return EXIT_OK


def cmd_job_wait(args: argparse.Namespace) -> int:
    job_ids = parse_job_ids(args.job_ids)
    deadline = None if args.timeout is None else time.monotonic() + args.timeout
    interval = WAIT_FIRST_INTERVAL
    with connect(args) as client:
        while True:
            rows = to_wire(client.status(job_ids))
            pending = [row for row in rows if row["status"] not in FINAL_STATUSES]
            if not pending or (deadline is not None and time.monotonic() >= deadline):
                break
            pause = interval if deadline is None else min(interval, deadline - time.monotonic())
            time.sleep(max(pause, 0.0))
            interval = min(interval * WAIT_GROWTH, WAIT_MAX_INTERVAL)
    _print_jobs(args, rows)
    if pending:
        print(f"timed out waiting for jobs: {_describe_pending(pending)}", file=sys.stderr)
        return EXIT_REFUSED
    return EXIT_OK


def cmd_job_output(args: argparse.Namespace) -> int:
    from dirac_like.submission import fetch_output

    with connect(args) as client:
        target = fetch_output(client, args.job_id, Path(args.dir), MAX_OUTPUT_DOWNLOAD)
    files = sorted(str(path.relative_to(target)) for path in target.rglob("*") if path.is_file())
    if args.json:
        print_json({"job_id": args.job_id, "folder": str(target), "files": files})
    else:
        print(f"Output sandbox of job {args.job_id} in {target}: {', '.join(files) or 'empty'}")
    return EXIT_OK


def _describe_pending(rows: list[dict[str, Any]]) -> str:
    counts = count_by(rows, "status")
    by_status = ", ".join(f"{status} {n}" for (status,), n in sorted(counts.items()))
    return f"{format_ids(row['job_id'] for row in rows)} ({by_status})"


# -- admin -------------------------------------------------------------------------------------


def cmd_admin_sites(args: argparse.Namespace) -> int:
    with connect(args) as client:
        rows = to_wire(client.sites())
    if args.json:
        print_json(rows)
    else:
        columns: list[Column] = [("site", "Site"), ("status", "Status"),
                                 ("active_jobs", "ActiveJobs>"),
                                 ("max_running", "MaxRunning>"), ("reason", "Reason")]
        print_table(rows, columns, empty="No sites seen yet.")
    return EXIT_OK


def cmd_admin_ban_site(args: argparse.Namespace) -> int:
    with connect(args) as client:
        result = to_wire(client.ban_site(args.site, args.reason))
    _print_result(args, result, f"Site {result['site']} banned: {result['reason']}")
    return EXIT_OK


def cmd_admin_unban_site(args: argparse.Namespace) -> int:
    with connect(args) as client:
        result = to_wire(client.unban_site(args.site))
    _print_result(args, result, f"Site {result['site']} is active again")
    return EXIT_OK


def _print_result(args: argparse.Namespace, result: Any, text: str) -> None:
    if args.json:
        print_json(result)
    else:
        print(text)


def cmd_admin_task_queues(args: argparse.Namespace) -> int:
    with connect(args) as client:
        rows = to_wire(client.task_queues())
    if args.json:
        print_json(rows)
        return EXIT_OK
    shown = [{**row, "requirements": format_requirements(row["requirements"])} for row in rows]
    columns: list[Column] = [("task_queue_id", "TaskQueue>"), ("owner", "Owner"),
                             ("group", "Group"), ("waiting", "Waiting>"),
                             ("top_priority", "TopPriority>"), ("requirements", "Requirements")]
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
    shown = [{**row, "share_fraction": format_percent(row["share_fraction"]),
              "load_fraction": format_percent(row["load_fraction"]),
              "usage_core_seconds": f"{row['usage_core_seconds']:.1f}"} for row in rows]
    columns: list[Column] = [("group", "Group"), ("share", "Share>"),
                             ("share_fraction", "Target>"), ("load_fraction", "Received>"),
                             ("usage_core_seconds", "Usage (core-s)>"),
                             ("running_cores", "RunningCores>")]
    print_table(shown, columns, title=title, empty="No groups.")


def cmd_admin_set_share(args: argparse.Namespace) -> int:
    with connect(args) as client:
        result = to_wire(client.set_share(args.group, args.share))
    _print_result(args, result, f"Group {result['group']} now has share {result['share']:g}")
    return EXIT_OK


def cmd_admin_pilots(args: argparse.Namespace) -> int:
    states = [state.strip() for state in args.state.split(",")] if args.state else []
    with connect(args) as client:
        rows = to_wire(client.pilots(site=args.site, states=states, limit=args.limit))
    if args.json:
        print_json(rows)
        return EXIT_OK
    shown = [{**row, "jobs": format_ids(row["jobs"]) if row["jobs"] else "",
              "submitted": format_time(row["submitted"]),
              "state": row["state"] + (" (kill requested)" if row["kill_requested"] else "")}
             for row in rows]
    columns: list[Column] = [("pilot_id", "PilotID"), ("site", "Site"), ("ce", "CE"),
                             ("state", "State"), ("fabric_ref", "Reference"),
                             ("submitted", "Submitted (UTC)"), ("jobs", "Jobs"),
                             ("reason", "Reason")]
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
        print(f"pilot {result['pilot_id']} is {result['state']}: its output is collected by its "
              "director when it ends", file=sys.stderr)
        return EXIT_REFUSED
    return EXIT_OK


def cmd_admin_kill_pilot(args: argparse.Namespace) -> int:
    with connect(args) as client:
        result = to_wire(client.kill_pilot(args.pilot_id))
    moved = result["rescheduled"]
    _print_result(args, result, f"Pilot {result['pilot_id']} told to stop and cancelled by its "
                  f"director; {len(moved)} job(s) rescheduled" +
                  (f": {format_ids(moved)}" if moved else ""))
    return EXIT_OK


# -- demo --------------------------------------------------------------------------------------


def cmd_demo(args: argparse.Namespace) -> int:
    from dirac_like.demo import run_demo

    return run_demo(jobs=args.jobs, sites=args.sites, keep=args.keep)


# -- pilot -------------------------------------------------------------------------------------


def cmd_pilot(args: argparse.Namespace) -> int:
    import importlib

    from dirac_like.logs import setup_logging

    # The core does not depend on agents/ (installed as dirac_like.agents): imported by name.
    pilots = importlib.import_module("dirac_like.agents.pilot")
    batch_env = importlib.import_module("dirac_like.agents.batch_env")
    setup_logging(verbose=args.verbose)
    workdir = Path(args.workdir or ".").resolve()
    node = pilots.discover(workdir, cores=args.cores or 0, memory_mb=args.memory or 0,
                           platform_name=args.platform)
    from_batch = batch_env.time_left_from_batch(os.environ, time.time())
    time_left = batch_env.effective_time_left(args.time_left, from_batch)
    identity = pilot_identity(args)
    config = pilots.PilotConfig(
        server=server_for(args, identity), site=args.site, ce=args.ce, cores=node.cores,
        memory_mb=node.memory_mb, platform=node.platform, time_left=time_left,
        max_cpu_time=int(args.cpu_time),
        max_jobs=args.max_jobs, idle_timeout=args.idle_timeout, tags=_names(args.tags),
        required_tags=_names(args.required_tags), workdir=workdir,
        pilot_id=args.pilot_id or pilots.default_pilot_id(), heartbeat_interval=args.heartbeat,
        kill_grace=args.kill_grace, drain_margin=args.drain_margin,
        request_interval=args.request_interval, identity=identity, insecure=identity is None,
    )
    pilot = pilots.Pilot(config)
    pilot.install_signal_handlers()
    code: int = pilot.run()
    return code


# -- agents ------------------------------------------------------------------------------------


def cmd_agent_director(args: argparse.Namespace) -> int:
    import importlib

    from dirac_like.logs import setup_logging
    from dirac_like.sites import load_site

    directors = importlib.import_module("dirac_like.agents.director")  # see cmd_pilot
    home = Path(args.home) if args.home else default_home()
    sites_dir = Path(args.sites_dir) if args.sites_dir else _default_sites_dir()
    site = load_site(directors.site_file(args.site, sites_dir))
    settings = directors.load_settings(Path(args.config) if args.config else None)
    setup_logging(f"director-{site.name}", home, args.verbose)
    identity = identity_of(args)
    with Client(server_for(args, identity), directors.DIRECTOR_RETRIES, identity=identity,
                insecure=identity is None) as client:
        director = directors.build_director(site, client, home, settings)
        code: int = director.run_once() if args.once else director.run()
    return code


def _default_sites_dir() -> Path:
    local = Path("etc/sites")
    return local if local.is_dir() else default_home() / "sites"


def _names(text: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in text.split(",") if name.strip())


COMMANDS: dict[tuple[str, str], Command] = {
    ("init", ""): cmd_init,
    ("service", "central"): cmd_service_central,
    ("job", "submit"): cmd_job_submit,
    ("job", "status"): cmd_job_status,
    ("job", "list"): cmd_job_list,
    ("job", "kill"): cmd_job_kill,
    ("job", "reschedule"): cmd_job_reschedule,
    ("job", "logging"): cmd_job_logging,
    ("job", "wait"): cmd_job_wait,
    ("job", "output"): cmd_job_output,
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
    ("demo", ""): cmd_demo,
    ("pilot", ""): cmd_pilot,
    ("agent", "director"): cmd_agent_director,
}


# -- the parser --------------------------------------------------------------------------------


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _seconds(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be a number of seconds >= 0, got {text}")
    return value


def _common_parents() -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
    """Options every client command takes (after the subcommand), and --json."""
    common = argparse.ArgumentParser(add_help=False, parents=[identity_options()])
    common.add_argument("--server", metavar="URL",
                        help=f"central service (default: $DIRAC_LIKE_SERVER or {DEFAULT_SERVER})")
    common.add_argument("--home", metavar="DIR",
                        help="dirac-like home (default: $DIRAC_LIKE_HOME or ~/.dirac-like)")
    as_json = argparse.ArgumentParser(add_help=False)
    as_json.add_argument("--json", action="store_true", help="print JSON instead of a table")
    return common, as_json


def _add_service_parser(groups: Any) -> None:
    service = groups.add_parser("service", help="run a dirac-like daemon in the foreground")
    daemons = service.add_subparsers(dest="cli_command", metavar="DAEMON", required=True)
    central = daemons.add_parser("central", help="the central service (jobs, matcher, shares)")
    central.add_argument("--home", metavar="DIR",
                         help="state folder (default: $DIRAC_LIKE_HOME or ~/.dirac-like)")
    central.add_argument("--listen", metavar="URL",
                         help="ZeroMQ endpoint to bind (default: service.listen in the config)")
    central.add_argument("--config", metavar="FILE", help="TOML configuration file")
    central.add_argument("--insecure", action="store_true",
                         help="plaintext, no authentication, anyone may do anything (trusted "
                              "networks only; default: CurveZMQ with the home's keys, which "
                              "are created on first start)")
    central.add_argument("--verbose", action="store_true", help="log at DEBUG level")


def _add_job_parser(groups: Any, common: argparse.ArgumentParser,
                    as_json: argparse.ArgumentParser) -> None:
    job = groups.add_parser("job", help="submit, follow and control jobs")
    commands = job.add_subparsers(dest="cli_command", metavar="COMMAND", required=True)
    both = [common, as_json]
    submit = commands.add_parser("submit", parents=both, help="submit JDL or JSON job files")
    submit.add_argument("files", nargs="+", metavar="FILE",
                        help="JDL file, or .json file with an object or a list of objects")
    submit.add_argument("--owner", help="owner of the jobs (admins only; default: the "
                        "identity's name, or your user name with --insecure)")
    submit.add_argument("--group", default="", help="group (default: the service's default)")
    status = commands.add_parser("status", parents=both, help="status of jobs")
    status.add_argument("job_ids", nargs="+", metavar="ID", help="job ids (5, 5,6 or 5-9)")
    listing = commands.add_parser("list", parents=both, help="list jobs, with filters")
    for option in ("status", "site", "owner", "group"):
        listing.add_argument(f"--{option}", help=f"only jobs with this {option}")
    listing.add_argument("--limit", type=_positive_int, default=1000,
                         help="at most this many jobs (default 1000)")
    for name, text in (("kill", "kill jobs"), ("reschedule", "send jobs back to Waiting")):
        parser = commands.add_parser(name, parents=both, help=text)
        parser.add_argument("job_ids", nargs="+", metavar="ID", help="job ids (5, 5,6 or 5-9)")
    logging = commands.add_parser("logging", parents=both, help="status history of one job")
    logging.add_argument("job_id", type=_positive_int, metavar="ID")
    wait = commands.add_parser("wait", parents=both,
                               help="wait until jobs are Done, Failed, Killed or Deleted")
    wait.add_argument("job_ids", nargs="+", metavar="ID", help="job ids (5, 5,6 or 5-9)")
    wait.add_argument("--timeout", type=_seconds, metavar="S",
                      help="give up after S seconds (exit 1); default: wait forever")
    output = commands.add_parser("output", parents=both,
                                 help="download a finished job's output sandbox")
    output.add_argument("job_id", type=_positive_int, metavar="ID")
    output.add_argument("--dir", default=".", help="unpack into DIR/<ID>/ (default: .)")


def _add_admin_parser(groups: Any, common: argparse.ArgumentParser,
                      as_json: argparse.ArgumentParser) -> None:
    admin = groups.add_parser("admin", help="sites, pilots, task queues and shares")
    commands = admin.add_subparsers(dest="cli_command", metavar="COMMAND", required=True)
    both = [common, as_json]
    commands.add_parser("sites", parents=both, help="sites seen and their ban status")
    ban = commands.add_parser("ban-site", parents=both, help="stop matching jobs to a site")
    ban.add_argument("site")
    ban.add_argument("--reason", required=True, help="why (shown in admin sites)")
    unban = commands.add_parser("unban-site", parents=both, help="lift a site ban")
    unban.add_argument("site")
    commands.add_parser("task-queues", parents=both, help="waiting jobs by task queue")
    commands.add_parser("shares", parents=both, help="group shares and the usage received")
    set_share = commands.add_parser("set-share", parents=both, help="set a group's share")
    set_share.add_argument("group")
    set_share.add_argument("share", type=float, help="relative weight, e.g. 70")
    pilots = commands.add_parser("pilots", parents=both, help="pilot records, newest last")
    pilots.add_argument("--site", help="only this site's pilots")
    pilots.add_argument("--state", help="only pilots in these states (e.g. Running,Waiting)")
    pilots.add_argument("--limit", type=_positive_int, default=1000,
                        help="at most this many pilots (default 1000)")
    pilot_output = commands.add_parser("pilot-output", parents=both,
                                       help="what an ended pilot printed")
    pilot_output.add_argument("pilot_id", metavar="PILOT_ID")
    kill_pilot = commands.add_parser("kill-pilot", parents=both,
                                     help="stop a pilot; its jobs go back to Waiting")
    kill_pilot.add_argument("pilot_id", metavar="PILOT_ID")
    add_identity_parser(commands, both)


def _add_demo_parser(groups: Any) -> None:
    demo = groups.add_parser("demo", help="a small grid on this machine: service, directors, "
                             "pilots, a mixed workload")
    demo.add_argument("--jobs", type=_positive_int, default=60,
                      help="jobs to run (default 60, at least 7)")
    demo.add_argument("--sites", type=_positive_int, default=3,
                      help="sites, each with a director and local pilots (default 3)")
    demo.add_argument("--keep", action="store_true",
                      help="keep the grid (service and directors) up after the workload, "
                           "until Ctrl-C")
    demo.set_defaults(cli_command="")


def _positive_seconds(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a number of seconds > 0, got {text}")
    return value


def _add_pilot_parser(groups: Any) -> None:
    pilot = groups.add_parser("pilot", parents=[identity_options()],
                              help="run a pilot: pull jobs that fit this node, run them")
    pilot.add_argument("--server", metavar="URL",
                       help=f"central service (default: $DIRAC_LIKE_SERVER or {DEFAULT_SERVER})")
    pilot.add_argument("--site", required=True, help="the site this pilot runs at")
    pilot.add_argument("--ce", default="", help="the computing element")
    pilot.add_argument("--cores", type=_positive_int, help="cores to use (default: all)")
    pilot.add_argument("--memory", type=_positive_int, metavar="MB",
                       help="memory to offer in MB (default: the node's)")
    pilot.add_argument("--time-left", type=_seconds, default=0.0, metavar="S",
                       help="seconds this pilot may run (default 0: no limit)")
    pilot.add_argument("--cpu-time", type=_seconds, default=0.0, metavar="S",
                       help="CPU seconds per core a job may use here (the CE's limit; 0: none)")
    pilot.add_argument("--platform", default="", metavar="P",
                       help="the platform offered (default: this node's, e.g. "
                            "Linux_x86_64_glibc-2.36)")
    pilot.add_argument("--max-jobs", type=int, default=0, metavar="N",
                       help="stop after N jobs (default 0: no limit)")
    pilot.add_argument("--idle-timeout", type=_seconds, default=600.0, metavar="S",
                       help="stop after S seconds with nothing to run (default 600; 0: never)")
    pilot.add_argument("--tags", default="", metavar="T,...", help="tags this node offers")
    pilot.add_argument("--required-tags", default="", metavar="T,...",
                       help="only run jobs carrying these tags")
    pilot.add_argument("--workdir", metavar="DIR",
                       help="where job working folders go (default: the current folder)")
    pilot.add_argument("--pilot-id", metavar="ID", help="default: host-pid-random")
    pilot.add_argument("--heartbeat", type=_positive_seconds, default=30.0, metavar="S",
                       help="seconds between heartbeats of a running job (default 30)")
    pilot.add_argument("--kill-grace", type=_seconds, default=5.0, metavar="S",
                       help="seconds between SIGTERM and SIGKILL of a payload (default 5)")
    pilot.add_argument("--drain-margin", type=_seconds, default=60.0, metavar="S",
                       help="seconds of --time-left kept to stop and report (default 60)")
    pilot.add_argument("--request-interval", type=_positive_seconds, default=10.0, metavar="S",
                       help="longest pause between job requests that found none (default 10)")
    pilot.add_argument("--verbose", action="store_true", help="log at DEBUG level")
    pilot.set_defaults(cli_command="")


def _add_agent_parser(groups: Any) -> None:
    agent = groups.add_parser("agent", help="run a site agent in the foreground")
    agents = agent.add_subparsers(dest="cli_command", metavar="AGENT", required=True)
    director = agents.add_parser("director", parents=[identity_options()],
                                 help="keep pilots on a site's CEs while there is work")
    director.add_argument("--site", required=True, help="the site (file SITE.toml in --sites-dir)")
    director.add_argument("--config", metavar="FILE",
                          help="TOML file with a [director] table (idle_timeout, drain_margin, "
                               "local_grace, pilot_args)")
    director.add_argument("--sites-dir", metavar="DIR",
                          help="site files (default: etc/sites if it exists, else "
                               "$DIRAC_LIKE_HOME/sites)")
    director.add_argument("--server", metavar="URL",
                          help=f"central service (default: $DIRAC_LIKE_SERVER or {DEFAULT_SERVER})")
    director.add_argument("--home", metavar="DIR",
                          help="state, logs and pilot output (default: $DIRAC_LIKE_HOME or "
                               "~/.dirac-like)")
    director.add_argument("--once", action="store_true",
                          help="run one cycle and exit (pilots on the local fabric stop with it)")
    director.add_argument("--verbose", action="store_true", help="log at DEBUG level")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dirac-like", description="A pilot workload framework in the style of DIRAC."
    )
    parser.add_argument("--version", action="version", version=f"dirac-like {__version__}")
    groups = parser.add_subparsers(dest="cli_group", metavar="GROUP", required=True)
    common, as_json = _common_parents()
    add_init_parser(groups)
    _add_service_parser(groups)
    _add_job_parser(groups, common, as_json)
    _add_admin_parser(groups, common, as_json)
    _add_demo_parser(groups)
    _add_pilot_parser(groups)
    _add_agent_parser(groups)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    try:
        return COMMANDS[(args.cli_group, args.cli_command)](args)
    except DiracLikeError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        if isinstance(exc, ServiceUnavailable):
            print_hint_unreachable()
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (``| head``): not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK

