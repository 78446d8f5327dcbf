"""``dirac-like service central`` and ``dirac-like demo``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from dirac_like.cli.common import positive_int
from dirac_like.cli.web import add_web_service_parser
from dirac_like.config import default_home, load_config
from dirac_like.logs import setup_logging


def cmd_service_central(args: argparse.Namespace) -> int:
    # Imported here, not at the top: every other command starts faster without the service.
    from dirac_like.services.central import run_central

    home = Path(args.home) if args.home else default_home()
    config = load_config(Path(args.config) if args.config else None)
    setup_logging("central", home, args.verbose)
    return run_central(config, home, args.listen, insecure=args.insecure)


def cmd_demo(args: argparse.Namespace) -> int:
    from dirac_like.cli.demo import run_demo  # rich's progress display: loaded when used

    return run_demo(jobs=args.jobs, sites=args.sites, keep=args.keep)


def add_service_parser(groups: Any) -> None:
    service = groups.add_parser(
        "service",
        help="run a dirac-like daemon in the foreground",
        description="Run a dirac-like daemon in the foreground.",
    )
    daemons = service.add_subparsers(dest="cli_command", metavar="DAEMON", required=True)
    text = "the central service (jobs, matcher, shares, sandboxes)"
    central = daemons.add_parser("central", help=text, description=f"Run {text}.")
    central.add_argument(
        "--home",
        metavar="DIR",
        default=argparse.SUPPRESS,
        help="state folder (default: $DIRAC_LIKE_HOME or ~/.dirac-like)",
    )
    central.add_argument(
        "--listen",
        metavar="URL",
        help="ZeroMQ endpoint to bind (default: service.listen in the config)",
    )
    central.add_argument("--config", metavar="FILE", help="TOML configuration file")
    central.add_argument(
        "--insecure",
        action="store_true",
        default=argparse.SUPPRESS,
        help="plaintext, no authentication, anyone may do anything (trusted "
        "networks only; default: CurveZMQ with the home's keys, which "
        "are created on first start)",
    )
    central.add_argument("--verbose", action="store_true", help="log at DEBUG level")
    add_web_service_parser(daemons)


def add_demo_parser(groups: Any) -> None:
    text = "a small grid on this machine: service, directors, pilots, a mixed workload"
    demo = groups.add_parser("demo", help=text, description=f"Run {text}.")
    demo.add_argument(
        "--jobs", type=positive_int, default=60, help="jobs to run (default 60, at least 7)"
    )
    demo.add_argument(
        "--sites",
        type=positive_int,
        default=3,
        help="sites, each with a director and local pilots (default 3)",
    )
    demo.add_argument(
        "--keep",
        action="store_true",
        help="keep the grid (service and directors) up after the workload, until Ctrl-C",
    )
    demo.set_defaults(cli_command="")


SERVICE_COMMANDS = {
    ("service", "central"): cmd_service_central,
    ("demo", ""): cmd_demo,
}
