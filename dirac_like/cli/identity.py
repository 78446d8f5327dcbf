"""The identity commands of ``dirac-like``: ``init`` and ``admin identity add|list|revoke``,
and how every client command finds its identity (``--identity``, ``--insecure``)."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

from dirac_like.authz import Role
from dirac_like.cli.display import Column, format_time, print_json, print_table
from dirac_like.client import Client, RetryPolicy
from dirac_like.config import DEFAULT_SERVER, default_home
from dirac_like.errors import EXIT_OK, ConfigError
from dirac_like.identity import (
    IDENTITY_VARIABLE,
    Identity,
    identity_path_for,
    load_identity,
    resolve_identity,
    save_identity,
)
from dirac_like.protocol import to_wire

# Interactive commands give up within ~10 s when nobody answers (3 tries of 3 s plus pauses).
INTERACTIVE = RetryPolicy(timeout=3.0, retries=2, backoff=0.2, max_backoff=1.0)


def home_of(args: argparse.Namespace) -> Path:
    return Path(args.home) if getattr(args, "home", None) else default_home()


def identity_of(args: argparse.Namespace) -> Identity | None:
    """The identity a client command uses: ``--identity FILE``, ``$DIRAC_LIKE_IDENTITY``, the
    home's default; None with ``--insecure`` (or when there is none: plaintext)."""
    if getattr(args, "insecure", False):
        return None
    return resolve_identity(getattr(args, "identity", None), home_of(args))


def pilot_identity(args: argparse.Namespace) -> Identity | None:
    """A pilot's identity, found as :func:`identity_of` finds it. The pilot token a director
    handed over in a file is removed once read, and ``$DIRAC_LIKE_IDENTITY`` leaves the
    environment: the payloads the pilot runs inherit neither."""
    if args.insecure:
        return None
    path = identity_path_for(getattr(args, "identity", None), home_of(args))
    os.environ.pop(IDENTITY_VARIABLE, None)
    if path is None:
        return None
    identity = load_identity(path)
    if identity.is_pilot_token():
        path.unlink(missing_ok=True)
    return identity


def server_for(args: argparse.Namespace, identity: Identity | None) -> str:
    """``--server``, ``$DIRAC_LIKE_SERVER``, the identity file's server, the default."""
    return str(
        args.server
        or os.environ.get("DIRAC_LIKE_SERVER")
        or (identity.server if identity else "")
        or DEFAULT_SERVER
    )


def client_for(args: argparse.Namespace, policy: RetryPolicy = INTERACTIVE) -> Client:
    """A client of the service ``args`` name, presenting the identity they name."""
    identity = identity_of(args)
    return Client(server_for(args, identity), policy, identity=identity, insecure=identity is None)


# -- commands ----------------------------------------------------------------------------------


def cmd_init(args: argparse.Namespace) -> int:
    from dirac_like.registry import SERVICE_KEY_FILE, init_home

    home = home_of(args)
    result = init_home(home, time.time())
    if not result.created:
        print(f"{home} is initialized already; its default identity is {result.admin_identity}")
        return EXIT_OK
    print(
        f"Initialized {home}:\n"
        f"  service keys      {home / SERVICE_KEY_FILE} (mode 0600)\n"
        f"  admin identity    {result.admin_identity} (mode 0600; the home's default)\n"
        "Start the service with `dirac-like service central"
        f"{'' if args.home is None else f' --home {home}'}`; issue more identities with "
        "`dirac-like admin identity add`."
    )
    return EXIT_OK


def cmd_admin_identity_add(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if out.exists():
        raise ConfigError(f"{out} exists: not overwriting an identity file")
    with client_for(args) as client:
        identity = client.identity_add(args.name, args.role, args.group or [], args.site or "")
    save_identity(out, identity)
    if args.json:
        print_json({"name": identity.name, "role": identity.role, "file": str(out)})
    else:
        print(
            f"Identity {identity.name} ({identity.role}) written to {out} (mode 0600). Hand it "
            f"over safely; it is used with --identity {out} or DIRAC_LIKE_IDENTITY={out}."
        )
    return EXIT_OK


def cmd_admin_identity_list(args: argparse.Namespace) -> int:
    with client_for(args) as client:
        rows = to_wire(client.identity_list(pilot_tokens=args.pilot_tokens))
    if args.json:
        print_json(rows)
        return EXIT_OK
    shown = [
        {
            **row,
            "groups": ",".join(row["groups"]),
            "expires": format_time(row["expires"]) if row["expires"] else "never",
            "created": format_time(row["created"]),
        }
        for row in rows
    ]
    columns: list[Column] = [
        ("name", "Name"),
        ("role", "Role"),
        ("groups", "Groups"),
        ("site", "Site"),
        ("state", "State"),
        ("created", "Created (UTC)"),
        ("expires", "Expires (UTC)"),
    ]
    print_table(shown, columns, empty="No identities.")
    return EXIT_OK


def cmd_admin_identity_revoke(args: argparse.Namespace) -> int:
    with client_for(args) as client:
        result = to_wire(client.identity_revoke(args.name))
    if args.json:
        print_json(result)
    else:
        print(
            f"Identity {result['name']} revoked: the service refuses it from now on, on open "
            "connections too"
        )
    return EXIT_OK


# -- parsers -----------------------------------------------------------------------------------


def identity_options() -> argparse.ArgumentParser:
    """``--identity FILE`` and ``--insecure``, for every command that talks to the service."""
    options = argparse.ArgumentParser(add_help=False)
    options.add_argument(
        "--identity",
        metavar="FILE",
        default=argparse.SUPPRESS,
        help="identity file (default: $DIRAC_LIKE_IDENTITY, else the home's default identity)",
    )
    options.add_argument(
        "--insecure",
        action="store_true",
        default=argparse.SUPPRESS,
        help="no identity, plaintext (only a service started --insecure answers)",
    )
    return options


def add_init_parser(groups: Any) -> None:
    text = "create a home's service keys and first admin identity"
    init = groups.add_parser("init", help=text, description=text.capitalize() + ".")
    init.add_argument(
        "--home",
        metavar="DIR",
        default=argparse.SUPPRESS,
        help="the home to initialize (default: $DIRAC_LIKE_HOME or ~/.dirac-like)",
    )
    init.set_defaults(cli_command="")


def add_identity_parser(commands: Any, parents: list[argparse.ArgumentParser]) -> None:
    """``admin identity add|list|revoke`` (commands: the admin group's subparsers)."""
    identity = commands.add_parser(
        "identity",
        help="issue, list and revoke identities",
        description="Issue, list and revoke identities.",
    )
    actions = identity.add_subparsers(dest="identity_command", metavar="ACTION", required=True)
    add = actions.add_parser(
        "add", parents=parents, help="issue an identity file", description="Issue an identity file."
    )
    add.add_argument("name", help="the identity's name (a user's name is the jobs' owner)")
    add.add_argument(
        "--role",
        required=True,
        choices=[role.value for role in Role],
        help="what it may do: user (own jobs), operator, admin, director or "
        "pilot (one site), agent",
    )
    add.add_argument(
        "--group",
        action="append",
        metavar="G",
        help="a group a user may submit into (repeat for more)",
    )
    add.add_argument("--site", help="the site a director or pilot acts for")
    add.add_argument(
        "--out",
        required=True,
        metavar="FILE",
        help="where to write the identity file (not overwritten)",
    )
    add.set_defaults(cli_command="identity add")
    listing = actions.add_parser(
        "list",
        parents=parents,
        help="identities and their state",
        description="List identities and their state.",
    )
    listing.add_argument(
        "--pilot-tokens", action="store_true", help="also the pilot tokens directors obtained"
    )
    listing.set_defaults(cli_command="identity list")
    revoke = actions.add_parser(
        "revoke",
        parents=parents,
        help="refuse an identity from now on (no restart)",
        description="Refuse an identity from now on (no restart).",
    )
    revoke.add_argument("name", help="the identity's name")
    revoke.set_defaults(cli_command="identity revoke")


def print_hint_unreachable() -> None:
    print(
        "hint: is a central service running there? Start one with `dirac-like service "
        "central`, or pass --server / set DIRAC_LIKE_SERVER. If it runs, it may not know this "
        "client's identity (see --identity / DIRAC_LIKE_IDENTITY).",
        file=sys.stderr,
    )
