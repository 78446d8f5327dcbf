"""DIRAC's command names, as thin aliases over the same client calls: ``dirac-wms-job-submit``,
``-status``, ``-get-output``, ``-kill``, ``-delete``, ``-reschedule``, ``-logging-info``,
``-get-jdl``, ``-peek``, ``dirac-admin-ban-site``, ``-allow-site``, ``-get-site-mask``.

They take DIRAC's main flags (``-f/--File`` of job ids, ``-D/--Dir``) and print what DIRAC's
scripts print where scripts parse it (``JobID = N`` per submitted job, ``JobID=N Status=...;``,
one site per line). The global options of ``dirac-like`` (``--server``, ``--identity``, ...)
work here too. Errors and exit codes are ``dirac-like``'s (0 ok, 1 refused, 2 usage,
3 unreachable).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dirac_like.cli import admin
from dirac_like.cli.common import (
    IDS_HELP,
    UsageError,
    client_options,
    connect,
    parse_job_ids,
    set_client_defaults,
)
from dirac_like.cli.data import DATA_ALIASES
from dirac_like.cli.display import Column, format_time, print_json, print_table
from dirac_like.cli.job_files import describe_as_jdl, fetch_outputs
from dirac_like.cli.jobs import submit_jobs
from dirac_like.cli.main import Command, run
from dirac_like.errors import EXIT_OK
from dirac_like.protocol import to_wire

# name -> (what it does, how its arguments are declared, what it runs)
Alias = tuple[str, Callable[[argparse.ArgumentParser], None], Command]


def _job_ids(args: argparse.Namespace) -> list[int]:
    """The ids given as arguments, and those in ``--File`` (one per line or space)."""
    values = list(args.job_ids)
    if getattr(args, "file", None):
        try:
            values += Path(args.file).read_text(encoding="utf-8").split()
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"cannot read job ids from {args.file}: {exc}") from None
    if not values:
        raise UsageError("no job ids given")
    return parse_job_ids(values)


def _ids_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("job_ids", nargs="*", metavar="JobID", help=IDS_HELP)
    parser.add_argument(
        "-f", "--File", dest="file", metavar="FILE", help="also the job ids in FILE (one per line)"
    )


def _one_id(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("job_ids", nargs="+", metavar="JobID", help=IDS_HELP)


# -- the commands ------------------------------------------------------------------------------


def _submit_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", metavar="JDL", help="path of a JDL (or .json) file")
    parser.add_argument(
        "-f",
        "--File",
        dest="id_file",
        metavar="FILE",
        help="append the job ids to FILE, one per line",
    )
    parser.add_argument("--group", default="", help="group (default: the service's default)")
    parser.set_defaults(owner=None)


def submit(args: argparse.Namespace) -> int:
    job_ids = submit_jobs(args)
    if args.id_file:
        with open(args.id_file, "a", encoding="utf-8") as handle:
            handle.writelines(f"{job_id}\n" for job_id in job_ids)
    if args.json:
        print_json({"job_ids": job_ids})
    else:
        for job_id in job_ids:
            print(f"JobID = {job_id}")
    return EXIT_OK


def status(args: argparse.Namespace) -> int:
    with connect(args) as client:
        rows = to_wire(client.status(_job_ids(args)))
    if args.json:
        print_json(rows)
        return EXIT_OK
    for row in rows:
        print(
            f"JobID={row['job_id']} Status={row['status']}; "
            f"MinorStatus={row['minor_status']}; Site={row['site']};"
        )
    return EXIT_OK


def _output_arguments(parser: argparse.ArgumentParser) -> None:
    _ids_arguments(parser)
    parser.add_argument(
        "-D",
        "--Dir",
        dest="dir",
        default=".",
        metavar="DIR",
        help="store the output in DIR/<JobID>/ (default: .)",
    )


def get_output(args: argparse.Namespace) -> int:
    folder = Path(args.dir)
    todo = []
    for job_id in _job_ids(args):
        if (folder / str(job_id)).exists():  # as DIRAC: what is there is not fetched again
            print(
                f"Output for job {job_id} already retrieved, remove the output directory "
                "to redownload"
            )
        else:
            todo.append(job_id)
    with connect(args) as client:
        fetched, refused = fetch_outputs(client, todo, folder, force=False)
    for _job_id, target, _files in fetched:
        print(f"Job output sandbox retrieved in {target}/")
    for job_id, exc in refused:
        print(f"ERROR {job_id}: {exc.message}")  # as DIRAC's script prints them
    return max((exc.exit_code for _, exc in refused), default=EXIT_OK)


def kill(args: argparse.Namespace) -> int:
    with connect(args) as client:
        result = to_wire(client.kill(_job_ids(args)))
    done = [*result["killed"], *result["kill_requested"]]
    _say(args, result, f"Killed jobs {','.join(map(str, done))}")
    return EXIT_OK


def delete(args: argparse.Namespace) -> int:
    with connect(args) as client:
        result = to_wire(client.delete(_job_ids(args)))
    _say(args, result, f"Deleted jobs {','.join(map(str, result['deleted']))}")
    return EXIT_OK


def reschedule(args: argparse.Namespace) -> int:
    with connect(args) as client:
        result = to_wire(client.reschedule(_job_ids(args)))
    _say(args, result, f"Rescheduled job {','.join(map(str, result['rescheduled']))}")
    return EXIT_OK


def logging_info(args: argparse.Namespace) -> int:
    columns: list[Column] = [
        ("status", "Status"),
        ("minor_status", "MinorStatus"),
        ("application_status", "ApplicationStatus"),
        ("time", "DateTime (UTC)"),
        ("source", "Source"),
    ]
    with connect(args) as client:
        histories = {job_id: to_wire(client.history(job_id)) for job_id in _job_ids(args)}
    if args.json:
        print_json({str(job_id): rows for job_id, rows in histories.items()})
        return EXIT_OK
    for job_id, rows in histories.items():
        shown = [{**row, "time": format_time(row["time"])} for row in rows]
        print_table(
            shown,
            columns,
            title=f"Job {job_id}" if len(histories) > 1 else None,
            empty=f"No history for job {job_id}.",
        )
    return EXIT_OK


def get_jdl(args: argparse.Namespace) -> int:
    with connect(args) as client:
        descriptions = {job_id: client.job_description(job_id) for job_id in _job_ids(args)}
    if args.json:
        print_json({str(job_id): value for job_id, value in descriptions.items()})
    else:
        sys.stdout.write("".join(describe_as_jdl(value) for value in descriptions.values()))
    return EXIT_OK


def peek(args: argparse.Namespace) -> int:
    with connect(args) as client:
        tails = [to_wire(client.peek(job_id)) for job_id in _job_ids(args)]
    if args.json:
        print_json(tails)
        return EXIT_OK
    for result in tails:
        tail = (
            result["tail"]
            or f"(job {result['job_id']}, {result['status']}: no output "
            "received from its pilot yet)"
        )
        print(tail.rstrip("\n"))
    return EXIT_OK


def _site_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("site", metavar="Site", help="name of the site, e.g. LCG.CERN.cern")
    parser.add_argument("comment", metavar="Comment", help="reason of the action")
    parser.add_argument(
        "-E",
        "--email",
        metavar="BOOL",
        help="accepted for DIRAC's scripts; dirac-like sends no mail",
    )


def ban_site(args: argparse.Namespace) -> int:
    return admin.ban_site(args, args.site, args.comment)


def allow_site(args: argparse.Namespace) -> int:
    return admin.allow_site(args, args.site)


def get_site_mask(args: argparse.Namespace) -> int:
    with connect(args) as client:
        active = [row["site"] for row in to_wire(client.sites()) if row["status"] == "Active"]
    _say(args, active, "\n".join(active) if active else "")
    return EXIT_OK


def _say(args: argparse.Namespace, result: Any, text: str) -> None:
    if args.json:
        print_json(result)
    elif text:
        print(text)


def _none(parser: argparse.ArgumentParser) -> None:
    """No arguments."""


ALIASES: dict[str, Alias] = {
    "dirac-wms-job-submit": (
        "Submit jobs (JDL files); prints JobID = N per job.",
        _submit_arguments,
        submit,
    ),
    "dirac-wms-job-status": ("Retrieve the status of jobs.", _ids_arguments, status),
    "dirac-wms-job-get-output": (
        "Retrieve the output sandbox of jobs into DIR/<JobID>/.",
        _output_arguments,
        get_output,
    ),
    "dirac-wms-job-kill": ("Kill jobs.", _ids_arguments, kill),
    "dirac-wms-job-delete": (
        "Delete jobs (running ones must be killed first).",
        _ids_arguments,
        delete,
    ),
    "dirac-wms-job-reschedule": ("Reschedule jobs.", _ids_arguments, reschedule),
    "dirac-wms-job-logging-info": (
        "Retrieve the history of transitions of jobs.",
        _one_id,
        logging_info,
    ),
    "dirac-wms-job-get-jdl": ("Retrieve the stored JDL of jobs.", _one_id, get_jdl),
    "dirac-wms-job-peek": (
        "Print the last lines of stdout of running jobs (as their pilots last sent them).",
        _one_id,
        peek,
    ),
    "dirac-admin-ban-site": (
        "Remove a site from the site mask (no jobs are matched to it).",
        _site_arguments,
        ban_site,
    ),
    "dirac-admin-allow-site": ("Put a site back in the site mask.", _site_arguments, allow_site),
    "dirac-admin-get-site-mask": (
        "Print the sites in the mask (active), one per line.",
        _none,
        get_site_mask,
    ),
    **DATA_ALIASES,
}


def build_alias_parser(name: str) -> argparse.ArgumentParser:
    text, arguments, _ = ALIASES[name]
    parser = argparse.ArgumentParser(
        prog=name,
        parents=[client_options(top_level=True)],
        description=f"{text} The DIRAC-named alias of a dirac-like command.",
    )
    set_client_defaults(parser)
    arguments(parser)
    parser.set_defaults(cli_group="dirac", cli_command=name)
    return parser


def run_alias(name: str, argv: list[str] | None = None) -> int:
    return run(build_alias_parser(name), {("dirac", name): ALIASES[name][2]}, argv)


def _entry(name: str) -> Callable[[], int]:
    def main() -> int:
        return run_alias(name)

    main.__name__ = main.__qualname__ = name.replace("-", "_")
    return main


# The console_scripts of setup.cfg (``dirac-wms-job-submit = dirac_like.cli.dirac:job_submit``).
job_submit = _entry("dirac-wms-job-submit")
job_status = _entry("dirac-wms-job-status")
job_get_output = _entry("dirac-wms-job-get-output")
job_kill = _entry("dirac-wms-job-kill")
job_delete = _entry("dirac-wms-job-delete")
job_reschedule = _entry("dirac-wms-job-reschedule")
job_logging_info = _entry("dirac-wms-job-logging-info")
job_get_jdl = _entry("dirac-wms-job-get-jdl")
job_peek = _entry("dirac-wms-job-peek")
admin_ban_site = _entry("dirac-admin-ban-site")
admin_allow_site = _entry("dirac-admin-allow-site")
admin_get_site_mask = _entry("dirac-admin-get-site-mask")

__all__ = ["ALIASES", "build_alias_parser", "run_alias"]
dms_add_file = _entry("dirac-dms-add-file")
dms_get_file = _entry("dirac-dms-get-file")
dms_lfn_replicas = _entry("dirac-dms-lfn-replicas")
dms_replicate_lfn = _entry("dirac-dms-replicate-lfn")
dms_remove_files = _entry("dirac-dms-remove-files")
