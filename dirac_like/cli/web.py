"""``dirac-like service web`` (the dashboard daemon) and ``dirac-like web-login``."""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

from dirac_like.cli.common import positive_seconds
from dirac_like.cli.display import print_json
from dirac_like.cli.identity import home_of, identity_of
from dirac_like.config import load_config
from dirac_like.errors import EXIT_OK, ConfigError
from dirac_like.logs import setup_logging
from dirac_like.web_login import DEFAULT_LIFETIME, MAX_LIFETIME, make_login_token

WEB_VARIABLE = "DIRAC_LIKE_WEB"
DEFAULT_WEB = "http://127.0.0.1:7780/"


def cmd_service_web(args: argparse.Namespace) -> int:
    # Imported here: the web framework and matplotlib load only for this command.
    from dirac_like.identity import resolve_identity
    from dirac_like.services.web.server import WebOptions, run_web

    home = Path(args.home) if args.home else home_of(args)
    config = load_config(Path(args.config) if args.config else None)
    setup_logging("web", home, args.verbose)
    identity = None if args.read_only else resolve_identity(args.identity, home)
    options = WebOptions(
        listen=args.listen,
        server=args.server or "",
        refresh_seconds=args.refresh,
        sample_seconds=args.sample_seconds,
    )
    return run_web(config, home, identity, options)


def login_url(base: str, token: str) -> str:
    """The dashboard's login link for ``token`` (``base``: the dashboard's address)."""
    return f"{base.rstrip('/')}/login?token={quote(token, safe='')}"


def cmd_web_login(args: argparse.Namespace) -> int:
    identity = identity_of(args)
    if identity is None:
        raise ConfigError(
            "web-login needs your identity file (--identity FILE or $DIRAC_LIKE_IDENTITY)"
        )
    if args.lifetime > MAX_LIFETIME:
        raise ConfigError(f"--lifetime: at most {MAX_LIFETIME:g} seconds")
    now = time.time()
    token = make_login_token(identity, now, args.lifetime)
    url = login_url(args.url or os.environ.get(WEB_VARIABLE) or DEFAULT_WEB, token)
    if args.json:
        print_json(
            {"name": identity.name, "url": url, "token": token, "expires": now + args.lifetime}
        )
        return EXIT_OK
    print(
        f"Log in to the dashboard as {identity.name} within {args.lifetime / 60:g} min "
        f"(the link works once):\n  {url}"
    )
    return EXIT_OK


def add_web_service_parser(daemons: Any) -> None:
    """``service web``, under the ``service`` group's subparsers."""
    text = "the web dashboard (jobs, sites, shares; beside the central service, on its home)"
    web = daemons.add_parser("web", help=text, description=f"Run {text}.")
    web.add_argument(
        "--home",
        metavar="DIR",
        default=argparse.SUPPRESS,
        help="the central service's home (default: $DIRAC_LIKE_HOME or ~/.dirac-like)",
    )
    web.add_argument(
        "--config",
        metavar="FILE",
        help="the central service's TOML configuration (its store.url: SQLite file or PostgreSQL)",
    )
    web.add_argument(
        "--listen",
        metavar="HOST:PORT",
        default="127.0.0.1:7780",
        help="where to serve HTTP (default 127.0.0.1:7780; port 0: a free one)",
    )
    web.add_argument(
        "--server",
        metavar="URL",
        default=argparse.SUPPRESS,
        help="the central service, for kill and reschedule (default: the "
        "identity file's server, else service.listen in the config)",
    )
    web.add_argument(
        "--identity",
        metavar="FILE",
        default=argparse.SUPPRESS,
        help="the dashboard's own identity, for kill and reschedule (default: "
        "$DIRAC_LIKE_IDENTITY, else the home's default identity)",
    )
    web.add_argument(
        "--read-only",
        action="store_true",
        help="no identity: no kill or reschedule from the dashboard",
    )
    web.add_argument(
        "--refresh",
        type=positive_seconds,
        default=5.0,
        metavar="SECONDS",
        help="how often the live parts of a page refresh (default 5)",
    )
    web.add_argument(
        "--sample-seconds",
        type=positive_seconds,
        default=10.0,
        metavar="SECONDS",
        help="how often the realised shares are sampled (default 10)",
    )
    web.add_argument("--verbose", action="store_true", help="log at DEBUG level")


def add_web_login_parser(groups: Any, parents: list[argparse.ArgumentParser]) -> None:
    text = "print a one-time link that logs you in to the web dashboard"
    login = groups.add_parser(
        "web-login",
        parents=parents,
        help=text,
        description=f"{text.capitalize()} (made from your identity file, no network needed).",
    )
    login.add_argument(
        "--url", metavar="URL", help=f"the dashboard (default: ${WEB_VARIABLE}, else {DEFAULT_WEB})"
    )
    login.add_argument(
        "--lifetime",
        type=positive_seconds,
        default=DEFAULT_LIFETIME,
        metavar="SECONDS",
        help=f"how long the link is valid (default {DEFAULT_LIFETIME:g}, at most {MAX_LIFETIME:g})",
    )
    login.set_defaults(cli_command="")


WEB_COMMANDS = {
    ("service", "web"): cmd_service_web,
    ("web-login", ""): cmd_web_login,
}
