"""The ``dirac-like`` command: the parser and the dispatch.

One function per command (``cmd_<group>_<command>(args) -> exit code``), in a module per topic
(:mod:`~dirac_like.cli.jobs`, :mod:`~dirac_like.cli.admin`, :mod:`~dirac_like.cli.agents`,
:mod:`~dirac_like.cli.service`), and one table, :data:`COMMANDS`, from (group, command) to it.
Exit codes (see :mod:`dirac_like.errors`): 0 ok, 1 refused by the service, 2 usage (bad
arguments, unreadable files, bad config), 3 the service is unreachable.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import Any

from dirac_like import __version__
from dirac_like.cli.accounting import ACCOUNTING_COMMANDS, add_accounting_parser
from dirac_like.cli.admin import ADMIN_COMMANDS, add_admin_parser
from dirac_like.cli.agents import AGENT_COMMANDS, add_agent_parser, add_pilot_parser
from dirac_like.cli.common import client_options, set_client_defaults
from dirac_like.cli.console import CONSOLE_COMMANDS, add_console_parser
from dirac_like.cli.data import DATA_COMMANDS, add_data_parser
from dirac_like.cli.identity import add_init_parser, cmd_init, print_hint_unreachable
from dirac_like.cli.jobs import JOB_COMMANDS, add_job_parser
from dirac_like.cli.monitoring import MONITORING_COMMANDS
from dirac_like.cli.service import SERVICE_COMMANDS, add_demo_parser, add_service_parser
from dirac_like.cli.web import WEB_COMMANDS, add_web_login_parser
from dirac_like.errors import EXIT_OK, EXIT_USAGE, DiracLikeError, ServiceUnavailable

Command = Callable[[argparse.Namespace], int]

COMMANDS: dict[tuple[str, str], Command] = {
    ("init", ""): cmd_init,
    **SERVICE_COMMANDS,
    **JOB_COMMANDS,
    **ADMIN_COMMANDS,
    **AGENT_COMMANDS,
    **CONSOLE_COMMANDS,
    **MONITORING_COMMANDS,
    **ACCOUNTING_COMMANDS,
    **WEB_COMMANDS,
    **DATA_COMMANDS,
}

COMPLETIONS = "~/.local/share/bash-completion/completions"
INSTALL_COMPLETION = (
    f"mkdir -p {COMPLETIONS} && dirac-like completion bash > {COMPLETIONS}/dirac-like"
)
COMPLETION_HINT = f"shell completion (bash; also zsh, tcsh):\n  {INSTALL_COMPLETION}"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dirac-like",
        parents=[client_options(top_level=True)],
        description="A pilot workload framework in the style of DIRAC. The options below may "
        "also be given after the command.",
        epilog=COMPLETION_HINT,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    set_client_defaults(parser)
    parser.add_argument("--version", action="version", version=f"dirac-like {__version__}")
    groups = parser.add_subparsers(dest="cli_group", metavar="GROUP", required=True)
    both = [client_options()]
    add_init_parser(groups)
    add_service_parser(groups)
    add_job_parser(groups, both)
    add_admin_parser(groups, both)
    add_console_parser(groups, both)
    add_accounting_parser(groups)
    add_data_parser(groups, both)
    add_demo_parser(groups)
    add_pilot_parser(groups)
    add_agent_parser(groups)
    add_web_login_parser(groups, both)
    _add_completion_parser(groups)
    return parser


def _add_completion_parser(groups: Any) -> None:
    text = "print a shell completion script for dirac-like"
    completion = groups.add_parser(
        "completion",
        help=text,
        description=f"{text.capitalize()}. For bash, install it with: {INSTALL_COMPLETION}",
    )
    completion.add_argument("shell", choices=["bash", "zsh", "tcsh"], help="the shell")
    completion.set_defaults(cli_command="")


def cmd_completion(args: argparse.Namespace) -> int:
    import shtab

    sys.stdout.write(shtab.complete(build_parser(), shell=args.shell))
    return EXIT_OK


COMMANDS[("completion", "")] = cmd_completion


def run(
    parser: argparse.ArgumentParser,
    commands: dict[tuple[str, str], Command],
    argv: list[str] | None,
) -> int:
    """Parse ``argv`` with ``parser`` and run the command it names; errors become exit codes."""
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    try:
        return commands[(args.cli_group, args.cli_command)](args)
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


def main(argv: list[str] | None = None) -> int:
    return run(build_parser(), COMMANDS, argv)
