"""What every command module of the CLI shares: the global options, argument types, job id
parsing, reading job files, and the usage error."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from dirac_like.cli.display import print_json
from dirac_like.cli.identity import INTERACTIVE, client_for
from dirac_like.client import Client
from dirac_like.config import DEFAULT_SERVER
from dirac_like.errors import EXIT_USAGE, DiracLikeError

IDS_HELP = "job ids: 5, 5,6 or 5-9 (several may be given)"


class UsageError(DiracLikeError):
    """A command line the CLI cannot act on (unreadable or malformed input file)."""

    code = "usage"
    exit_code = EXIT_USAGE


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


def print_result(args: argparse.Namespace, result: Any, text: str) -> None:
    if args.json:
        print_json(result)
    else:
        print(text)


def names(text: str) -> tuple[str, ...]:
    """``a, b,c`` -> ``("a", "b", "c")``."""
    return tuple(name.strip() for name in text.split(",") if name.strip())


# -- argument types ----------------------------------------------------------------------------


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def seconds(text: str) -> float:
    value = _number(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be a number of seconds >= 0, got {text}")
    return value


def positive_seconds(text: str) -> float:
    value = _number(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a number of seconds > 0, got {text}")
    return value


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None


# -- global options ----------------------------------------------------------------------------


def client_options(top_level: bool = False) -> argparse.ArgumentParser:
    """``--server``, ``--home``, ``--identity``, ``--insecure`` and ``--json``: accepted before
    the group (``top_level``: they carry the defaults) and after the subcommand (there they
    default to "not given", so a value given before the group stands)."""
    keep: dict[str, Any] = {} if top_level else {"default": argparse.SUPPRESS}
    options = argparse.ArgumentParser(add_help=False)
    options.add_argument(
        "--server",
        metavar="URL",
        **keep,
        help=f"central service; a pair's two URLs comma-separated (default: "
        f"$DIRAC_LIKE_SERVER, the identity file's server, else {DEFAULT_SERVER})",
    )
    options.add_argument(
        "--home",
        metavar="DIR",
        **keep,
        help="dirac-like home (default: $DIRAC_LIKE_HOME or ~/.dirac-like)",
    )
    options.add_argument(
        "--identity",
        metavar="FILE",
        **keep,
        help="identity file (default: $DIRAC_LIKE_IDENTITY, else the home's default identity)",
    )
    options.add_argument(
        "--insecure",
        action="store_true",
        **keep,
        help="no identity, plaintext (only a service started --insecure answers)",
    )
    options.add_argument(
        "--json", action="store_true", **keep, help="print JSON instead of text (for scripts)"
    )
    return options


def set_client_defaults(parser: argparse.ArgumentParser) -> None:
    """The values of the global options when given nowhere."""
    parser.set_defaults(server=None, home=None, identity=None, insecure=False, json=False)
