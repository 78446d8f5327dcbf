"""``dirac-like data ...``: grid files on storage elements, and the replica catalog.

put / get / ls / replicas / replicate / rm / stat over :class:`dirac_like.data_manager.DataManager`,
plus ``ses`` (the storage elements and their status), ``se-status`` (set it), ``transfers``,
and replication rules (``rule add|rm``, ``rules``).
Every command takes ``--json``; those naming LFNs also read them from ``--from-file FILE`` (one
per line; for ``put``: ``LOCAL LFN`` per line). Transfers show a progress bar on a terminal.

DIRAC's names are aliases (``dirac-dms-add-file``, ``-get-file``, ``-lfn-replicas``,
``-replicate-lfn``, ``-remove-files``: :data:`DATA_ALIASES`).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from dirac_like.cli.common import UsageError, connect, names, positive_int, seconds
from dirac_like.cli.display import Column, format_time, print_json, print_table
from dirac_like.client import Client
from dirac_like.data_manager import Copied, DataManager, Progress
from dirac_like.errors import EXIT_OK, EXIT_REFUSED, DiracLikeError
from dirac_like.protocol import (
    ListTransfersArgs,
    NoArgs,
    Op,
    RuleAddArgs,
    RuleIdArgs,
    SEStatusArgs,
    to_wire,
)

SITE_VARIABLE = "DIRAC_LIKE_SITE"  # where this client runs: replicas there are read first
FILE_COLUMNS: list[Column] = [
    ("lfn", "LFN"),
    ("size", "Size>"),
    ("adler32", "Adler32"),
    ("owner", "Owner"),
    ("replicas", "Replicas"),
]
SE_COLUMNS: list[Column] = [
    ("name", "SE"),
    ("site", "Site"),
    ("protocol", "Protocol"),
    ("status", "Status"),
    ("access", "Access"),
    ("url", "URL"),
    ("tags", "Tags"),
    ("space", "Used / total"),
]
TRANSFER_COLUMNS: list[Column] = [
    ("transfer_id", "ID>"),
    ("lfn", "LFN"),
    ("source", "Source"),
    ("destination", "Destination"),
    ("status", "Status"),
    ("attempt", "Try>"),
    ("reason", "Reason"),
]


@contextlib.contextmanager
def data_manager(args: argparse.Namespace) -> Iterator[DataManager]:
    site = getattr(args, "site", None) or os.environ.get(SITE_VARIABLE, "")
    with connect(args) as client:
        yield DataManager(client, site=site)


def lfns_of(args: argparse.Namespace) -> list[str]:
    """The LFNs given as arguments, then those of ``--from-file``."""
    lfns = list(getattr(args, "lfns", []))
    if getattr(args, "from_file", None):
        lfns += _lines(args.from_file)
    if not lfns:
        raise UsageError("no LFN given (as arguments or with --from-file)")
    return lfns


def _lines(name: str) -> list[str]:
    try:
        text = Path(name).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read {name}: {exc}") from None
    return [
        line.strip()
        for line in text.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]


@contextlib.contextmanager
def progress_bar(args: argparse.Namespace, what: str, total: int) -> Iterator[Progress | None]:
    """A rich progress bar on a terminal (not with --json); None elsewhere."""
    if args.json or not sys.stderr.isatty():
        yield None
        return
    from rich.progress import DownloadColumn, TransferSpeedColumn
    from rich.progress import Progress as Bar

    with Bar(
        *Bar.get_default_columns(), DownloadColumn(), TransferSpeedColumn(), transient=True
    ) as bar:
        task = bar.add_task(what, total=total)
        yield lambda done: bar.advance(task, done)


def _copied(copied: Copied) -> dict[str, Any]:
    return {
        "lfn": copied.lfn,
        "se": copied.se,
        "size": copied.size,
        "adler32": copied.adler32,
        **({"path": str(copied.path)} if copied.path else {}),
    }


def _report(
    args: argparse.Namespace,
    done: list[dict[str, Any]],
    failed: list[tuple[str, DiracLikeError]],
    text: str,
) -> int:
    if args.json:
        print_json({"done": done, "failed": {name: exc.message for name, exc in failed}})
    else:
        for row in done:
            print(text.format(**row))
        for name, exc in failed:
            print(f"error: {name}: {exc.message}", file=sys.stderr)
    return max((exc.exit_code for _, exc in failed), default=EXIT_OK)


# -- the commands ------------------------------------------------------------------------------


def cmd_data_put(args: argparse.Namespace) -> int:
    pairs = [(args.local, args.lfn)] if args.local else []
    for line in _lines(args.from_file) if args.from_file else []:
        local, _, lfn = line.partition(" ")
        pairs.append((local, lfn.strip()))
    if not pairs:
        raise UsageError("give LOCAL LFN, or --from-file with 'LOCAL LFN' lines")
    done, failed = [], []
    with data_manager(args) as data:
        for local, lfn in pairs:
            path = Path(local)
            if not path.is_file():
                raise UsageError(f"{local}: no such file")
            try:
                with progress_bar(args, f"put {path.name}", path.stat().st_size) as progress:
                    done.append(_copied(data.put(path, lfn, args.se, progress)))
            except DiracLikeError as exc:
                failed.append((lfn, exc))
    return _report(args, done, failed, "{lfn}: on {se} ({size} bytes, adler32 {adler32})")


def cmd_data_get(args: argparse.Namespace) -> int:
    done, failed = [], []
    folder = Path(args.dir)
    with data_manager(args) as data:
        for lfn in lfns_of(args):
            try:
                size = data.stat(lfn).size
                with progress_bar(args, f"get {lfn.rsplit('/', 1)[-1]}", size) as progress:
                    done.append(_copied(data.get(lfn, folder, progress)))
            except DiracLikeError as exc:
                failed.append((lfn, exc))
    return _report(args, done, failed, "{path}: from {se} ({size} bytes, adler32 checked)")


def cmd_data_ls(args: argparse.Namespace) -> int:
    with data_manager(args) as data:
        listing = to_wire(data.listing(args.folder))
    if args.json:
        print_json(listing)
        return EXIT_OK
    if not args.long:
        for name in [*listing["folders"], *(row["lfn"] for row in listing["files"])]:
            print(name.rsplit("/", 1)[-1] + ("/" if name in listing["folders"] else ""))
        return EXIT_OK
    rows = [
        {"lfn": f + "/", "size": "", "adler32": "", "owner": "", "replicas": ""}
        for f in listing["folders"]
    ] + [_file_row(row) for row in listing["files"]]
    print_table(rows, FILE_COLUMNS, empty=f"{args.folder} is empty")
    return EXIT_OK


def _file_row(row: dict[str, Any]) -> dict[str, Any]:
    replicas = ",".join(
        r["se"] + ("" if r["status"] == "Good" else f"({r['status']})") for r in row["replicas"]
    )
    return {**row, "replicas": replicas, "created": format_time(row["created"])}


def cmd_data_replicas(args: argparse.Namespace) -> int:
    with data_manager(args) as data:
        reply = to_wire(data.files(lfns_of(args)))
    if args.json:
        print_json(reply)
    else:
        for row in reply["files"]:
            print(row["lfn"])
            for replica in row["replicas"]:
                print(f"  {replica['se']}  {replica['status']}")
    return _missing(reply["missing"])


def _missing(missing: list[str]) -> int:
    for lfn in missing:
        print(f"error: {lfn}: not in the catalog", file=sys.stderr)
    return EXIT_REFUSED if missing else EXIT_OK


def cmd_data_stat(args: argparse.Namespace) -> int:
    with data_manager(args) as data:
        reply = to_wire(data.files(lfns_of(args)))
    if args.json:
        print_json(reply)
    else:
        print_table(
            [_file_row(row) for row in reply["files"]],
            [*FILE_COLUMNS, ("guid", "GUID"), ("created", "Created")],
        )
    return _missing(reply["missing"])


def cmd_data_replicate(args: argparse.Namespace) -> int:
    with data_manager(args) as data:
        ids = data.replicate(lfns_of(args), args.se, args.priority)
    if args.json:
        print_json({"transfer_ids": ids})
    else:
        print(
            f"{len(ids)} transfer request(s) to {args.se}: {', '.join(map(str, ids))} "
            "(a transfer agent carries them out: dirac-like data transfers)"
        )
    return EXIT_OK


def cmd_data_rm(args: argparse.Namespace) -> int:
    with data_manager(args) as data:
        reply = to_wire(data.remove(lfns_of(args), args.se or ""))
    if args.json:
        print_json(reply)
    else:
        where = f" on {args.se}" if args.se else ""
        print(
            f"removed {reply['removed_replicas']} replica(s){where}; files gone from the "
            f"catalog: {len(reply['removed_files'])}"
        )
    return _missing(reply["missing"])


def cmd_data_ses(args: argparse.Namespace) -> int:
    with connect(args) as client:
        rows = to_wire(client.call(Op.SE_LIST, NoArgs()))
    if args.json:
        print_json(rows)
        return EXIT_OK
    shown = [
        {
            **row,
            "access": "".join(
                flag for flag, key in (("r", "read"), ("w", "write"), ("d", "delete")) if row[key]
            ),
            "url": row["endpoint"] + row["base_path"]
            if row["protocol"] == "xroot"
            else row["base_path"],
            "tags": ",".join(row["tags"]),
            "space": f"{row['used_space']} / {row['total_space']} B" if row["total_space"] else "-",
        }
        for row in rows
    ]
    print_table(shown, SE_COLUMNS, empty="No storage elements.")
    return EXIT_OK


def cmd_data_se_status(args: argparse.Namespace) -> int:
    with connect(args) as client:
        row = to_wire(
            client.call(Op.SE_SET_STATUS, SEStatusArgs(args.se, args.status, args.reason))
        )
    if args.json:
        print_json(row)
    else:
        print(f"SE {row['name']} is {row['status']}")
    return EXIT_OK


def cmd_data_transfers(args: argparse.Namespace) -> int:
    with connect(args) as client:
        rows = to_wire(transfers(client, args.status, args.limit))
    if args.json:
        print_json(rows)
    else:
        print_table(rows, TRANSFER_COLUMNS, empty="No transfers.")
    return EXIT_OK


RULE_COLUMNS: list[Column] = [
    ("rule_id", "Rule>"),
    ("folder", "Folder"),
    ("copies", "Copies>"),
    ("tags", "SE tags"),
    ("state", "State"),
    ("files", "Files>"),
    ("satisfied", "OK>"),
    ("replicating", "Coming>"),
    ("missing", "Missing>"),
]


def cmd_data_rule(args: argparse.Namespace) -> int:
    with connect(args) as client:
        if args.rule_action == "add":
            row = to_wire(
                client.call(
                    Op.RULE_ADD,
                    RuleAddArgs(args.folder, args.copies, list(names(args.se_tags)), args.lifetime),
                )
            )
            text = (
                f"rule {row['rule_id']}: {row['copies']} copies of {row['folder']} on SEs "
                f"tagged {','.join(row['se_tags'])} ({', '.join(row['ses']) or 'none yet'})"
            )
        else:
            row = to_wire(client.call(Op.RULE_REMOVE, RuleIdArgs(args.rule_id)))
            text = f"rule {row['rule_id']} on {row['folder']} removed"
    if args.json:
        print_json(row)
    else:
        print(text)
    return EXIT_OK


def cmd_data_rules(args: argparse.Namespace) -> int:
    with connect(args) as client:
        rows = to_wire(client.call(Op.RULES, NoArgs()))
    if args.json:
        print_json(rows)
    else:
        shown = [
            {**row, "tags": ",".join(row["se_tags"]), "state": row["state"] or "(new)"}
            for row in rows
        ]
        print_table(shown, RULE_COLUMNS, empty="No replication rules.")
    return EXIT_OK


def transfers(client: Client, status: str | None, limit: int) -> Any:
    return client.call(Op.TRANSFERS, ListTransfersArgs(status=status, limit=limit))


# -- the parsers -------------------------------------------------------------------------------


def _from_file(parser: argparse.ArgumentParser, what: str = "LFNs, one per line") -> None:
    parser.add_argument("--from-file", metavar="FILE", help=f"also the {what} in FILE")


def _lfns(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("lfns", nargs="*", metavar="LFN", help="logical file name(s)")
    _from_file(parser)


def _site(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--site", help=f"read replicas at this site first (default: ${SITE_VARIABLE})"
    )


def add_data_parser(groups: Any, both: list[argparse.ArgumentParser]) -> None:
    data = groups.add_parser(
        "data",
        help="grid files: put, get, replicate, list, remove",
        description="Grid files on storage elements, and the replica catalog.",
    )
    commands = data.add_subparsers(dest="cli_command", metavar="COMMAND", required=True)

    def command(name: str, text: str) -> argparse.ArgumentParser:
        return commands.add_parser(
            name, parents=both, help=text, description=text[0].upper() + text[1:] + "."
        )

    put = command("put", "copy a local file to an SE and register it")
    add_put_arguments(put)
    get = command("get", "download files (best replica, checksum verified)")
    add_get_arguments(get)
    ls = command("ls", "list a catalog folder")
    ls.add_argument("folder", metavar="DIR", help="the catalog folder, e.g. /vo/user/alice")
    ls.add_argument("-l", "--long", action="store_true", help="sizes, checksums, replicas")
    _lfns(command("replicas", "show the replicas of files"))
    _lfns(command("stat", "show the catalog entry of files"))
    add_replicate_arguments(command("replicate", "ask for replicas on another SE"))
    add_rm_arguments(command("rm", "delete files (or their replica on one SE)"))
    command("ses", "list the storage elements and their status")
    status = command("se-status", "set an SE's status (operators)")
    status.add_argument("se", metavar="SE", help="the storage element")
    status.add_argument(
        "status",
        choices=["Active", "Degraded", "Banned"],
        help="Degraded: read only; Banned: neither read nor written",
    )
    status.add_argument("--reason", default="", help="why (shown with the status)")
    listing = command("transfers", "list transfer requests")
    listing.add_argument(
        "--status",
        choices=["Waiting", "Assigned", "Active", "Done", "Failed"],
        help="only those in this state",
    )
    listing.add_argument(
        "--limit", type=positive_int, default=1000, help="at most this many (default 1000)"
    )
    add_rule_parser(command("rule", "add or remove a replication rule"), both)
    command("rules", "list replication rules: OK, Replicating or Stuck, with counts")


def add_rule_parser(rule: argparse.ArgumentParser, both: list[argparse.ArgumentParser]) -> None:
    actions = rule.add_subparsers(dest="rule_action", metavar="ACTION", required=True)
    add = actions.add_parser(
        "add",
        parents=both,
        help="keep N copies of every file below DIR",
        description="Keep N Good replicas of every file below DIR on SEs "
        "carrying all the tags given.",
    )
    add.add_argument("folder", metavar="DIR", help="the catalog folder")
    add.add_argument("--copies", type=positive_int, required=True, help="replicas to keep")
    add.add_argument(
        "--se-tags",
        required=True,
        metavar="T,...",
        help="an SE counts when it carries all these tags",
    )
    add.add_argument(
        "--lifetime",
        type=seconds,
        default=0.0,
        metavar="S",
        help="remove the rule after S seconds (default 0: never)",
    )
    remove = actions.add_parser(
        "rm",
        parents=both,
        help="remove a rule (replicas stay)",
        description="Remove a rule (the replicas it made stay).",
    )
    remove.add_argument("rule_id", type=int, metavar="RULE", help="the rule's number")


def add_put_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("local", nargs="?", metavar="LOCAL", help="the local file")
    parser.add_argument("lfn", nargs="?", metavar="LFN", help="its logical file name")
    parser.add_argument("--se", required=True, help="the storage element")
    _from_file(parser, "'LOCAL LFN' pairs, one per line")


def add_get_arguments(parser: argparse.ArgumentParser) -> None:
    _lfns(parser)
    parser.add_argument("--dir", default=".", metavar="D", help="where to put them (default .)")
    _site(parser)


def add_replicate_arguments(parser: argparse.ArgumentParser) -> None:
    _lfns(parser)
    parser.add_argument("--se", required=True, help="the destination SE")
    parser.add_argument("--priority", type=int, default=0, help="higher goes first")


def add_rm_arguments(parser: argparse.ArgumentParser) -> None:
    _lfns(parser)
    parser.add_argument("--se", help="only the replica on this SE")


DATA_COMMANDS = {
    ("data", "put"): cmd_data_put,
    ("data", "get"): cmd_data_get,
    ("data", "ls"): cmd_data_ls,
    ("data", "replicas"): cmd_data_replicas,
    ("data", "stat"): cmd_data_stat,
    ("data", "replicate"): cmd_data_replicate,
    ("data", "rm"): cmd_data_rm,
    ("data", "ses"): cmd_data_ses,
    ("data", "se-status"): cmd_data_se_status,
    ("data", "transfers"): cmd_data_transfers,
    ("data", "rule"): cmd_data_rule,
    ("data", "rules"): cmd_data_rules,
}


# -- DIRAC's names -----------------------------------------------------------------------------


def _add_file_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("lfn", metavar="LFN", help="the logical file name")
    parser.add_argument("local", metavar="Path", help="the local file")
    parser.add_argument("se", metavar="SE", help="the storage element")
    parser.set_defaults(from_file=None)


def _get_file_arguments(parser: argparse.ArgumentParser) -> None:
    _lfns(parser)
    parser.add_argument(
        "-D",
        "--Dir",
        dest="dir",
        default=".",
        metavar="DIR",
        help="where to put the files (default: .)",
    )
    parser.set_defaults(site=None)


def _replicate_lfn_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("lfns", nargs=1, metavar="LFN", help="the logical file name")
    parser.add_argument("se", metavar="Dest", help="the destination SE")
    parser.set_defaults(from_file=None, priority=0)


def _remove_files_arguments(parser: argparse.ArgumentParser) -> None:
    _lfns(parser)
    parser.set_defaults(se=None)


# name -> (what it does, how its arguments are declared, what it runs), as cli/dirac.py's
DATA_ALIASES = {
    "dirac-dms-add-file": (
        "Upload a file to an SE and register it: LFN Path SE.",
        _add_file_arguments,
        cmd_data_put,
    ),
    "dirac-dms-get-file": (
        "Download files (best replica, checksum verified).",
        _get_file_arguments,
        cmd_data_get,
    ),
    "dirac-dms-lfn-replicas": ("Show the replicas of files.", _lfns, cmd_data_replicas),
    "dirac-dms-replicate-lfn": (
        "Ask for a replica of a file on another SE: LFN Dest.",
        _replicate_lfn_arguments,
        cmd_data_replicate,
    ),
    "dirac-dms-remove-files": (
        "Delete files: every replica, and their catalog entries.",
        _remove_files_arguments,
        cmd_data_rm,
    ),
}
