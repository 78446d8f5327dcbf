"""``dirac-like console``: an interactive console for operators (prompt_toolkit).

Every ``dirac-like`` command runs without the prefix (``job status 5``, ``admin sites``), through
the same parser and the same client as the command line, so with the same identity and the same
authorization by the service. On top of that:

- completion (Tab) of commands, subcommands and options from the parser itself, and of job ids,
  sites, groups and users from the service (fetched at most every ``REFRESH`` seconds);
- history across sessions, in ``<home>/console_history``;
- ``use site X``: a context; commands with a ``--site`` option get ``--site X`` unless given one
  (``use`` shows the context, ``use none`` clears it);
- ``watch [-n S] [--count N] COMMAND``: run a command every S seconds (default 2) until Ctrl-C
  (or N times);
- a typo gets a suggestion (``unknown command 'jbo': did you mean 'job'?``).

On a terminal the prompt is prompt_toolkit's; with stdin not a terminal (a script piped in) the
lines are read plainly, one command each.
"""

from __future__ import annotations

import argparse
import difflib
import shlex
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dirac_like.cli.common import connect
from dirac_like.config import default_home
from dirac_like.errors import EXIT_OK, EXIT_USAGE, DiracLikeError

PROMPT = "dirac-like> "
INTERRUPTED = 130  # the exit code of a command stopped by Ctrl-C
HISTORY_FILE = "console_history"
REFRESH = 10.0  # seconds a list of job ids, sites, groups and users is kept for completion
BUILTINS = {
    "use": "use site X: add --site X to commands that take it (use none: clear)",
    "watch": "watch [-n SECONDS] [--count N] COMMAND: run COMMAND again and again",
    "help": "help: this list (COMMAND --help: a command's options)",
    "exit": "exit: leave the console (or Ctrl-D)",
    "quit": "quit: leave the console",
}
NOT_IN_CONSOLE = {"console"}
GLOBAL_OPTIONS = ("server", "home", "identity")
# Options whose values are completed from the service, by what they name.
VALUE_KINDS = {"--site": "sites", "--group": "groups", "--owner": "users"}


# -- what the parser knows ---------------------------------------------------------------------


def subparsers_of(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:  # argparse keeps its subcommands here and nowhere else
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def options_of(parser: argparse.ArgumentParser) -> list[str]:
    return sorted(
        option
        for action in parser._actions
        for option in action.option_strings
        if option.startswith("--")
    )


@dataclass
class CommandTree:
    """The commands as the parser defines them: groups, their subcommands, each one's options."""

    parser: argparse.ArgumentParser

    def groups(self) -> list[str]:
        return sorted(set(subparsers_of(self.parser)) - NOT_IN_CONSOLE)

    def walk(self, words: list[str]) -> tuple[argparse.ArgumentParser, list[str]]:
        """The deepest parser ``words`` name, and the words past it."""
        parser, rest = self.parser, list(words)
        while rest and rest[0] in subparsers_of(parser):
            parser = subparsers_of(parser)[rest.pop(0)]
        return parser, rest

    def check(self, words: list[str]) -> None:
        """A :class:`ConsoleError` with a suggestion if a command word is not known."""
        parser, known = self.parser, self.groups() + list(BUILTINS)
        for depth, word in enumerate(words):
            children = subparsers_of(parser)
            if not children or word.startswith("-"):
                return
            choices = known if depth == 0 else sorted(children)
            if word not in choices:
                raise ConsoleError(
                    _unknown(
                        word,
                        choices,
                        "command" if depth == 0 else f"{' '.join(words[:depth])} command",
                    )
                )
            if word not in children:
                return
            parser = children[word]


def _unknown(word: str, choices: list[str], what: str) -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.5)
    hint = f": did you mean {close[0]!r}?" if close else f" (known: {', '.join(choices)})"
    return f"unknown {what} {word[:40]!r}{hint}"


class ConsoleError(DiracLikeError):
    code = "usage"
    exit_code = EXIT_USAGE


# -- completion --------------------------------------------------------------------------------


@dataclass
class Lookups:
    """Job ids, sites, groups and users from the service, for completion (refreshed lazily)."""

    fetch: Callable[[], dict[str, list[str]]]
    values: dict[str, list[str]] = field(default_factory=dict)
    fetched_at: float = -1e18

    def get(self, kind: str) -> list[str]:
        if time.monotonic() - self.fetched_at > REFRESH:
            self.fetched_at = time.monotonic()
            try:
                self.values = self.fetch()
            except DiracLikeError:
                self.values = {}  # the service is away: complete what the parser knows
        return self.values.get(kind, [])


def fetch_lookups(args: argparse.Namespace) -> dict[str, list[str]]:
    with connect(args) as client:
        jobs = client.list_jobs(limit=2000)
        sites = [row.site for row in client.sites()] if _may(client.sites) else []
    return {
        "jobs": sorted({str(job.job_id) for job in jobs}, key=int),
        "sites": sorted(set(sites) | {job.site for job in jobs} - {"ANY", "Multiple"}),
        "groups": sorted({job.group for job in jobs}),
        "users": sorted({job.owner for job in jobs}),
    }


def _may(call: Callable[[], Any]) -> bool:
    """Whether this identity may make the call (a user may not list sites)."""
    try:
        call()
    except DiracLikeError:
        return False
    return True


def completions(tree: CommandTree, lookups: Lookups, before: str) -> list[str]:
    """The words that may come at the end of the line ``before`` (the cursor's left)."""
    words = before.split()
    current = "" if not words or before.endswith(" ") else words.pop()
    if words and words[0] == "watch":
        words = words[1:]
        while len(words) >= 2 and words[0] in ("-n", "--count"):
            words = words[2:]
    if words and words[0] == "use":
        return _starting(["site", "none"] if len(words) == 1 else lookups.get("sites"), current)
    if not words:
        return _starting(tree.groups() + list(BUILTINS), current)
    parser, rest = tree.walk(words)
    children = subparsers_of(parser)
    if children and not rest:
        return _starting(sorted(children), current)
    if current.startswith("-"):
        return _starting(options_of(parser), current)
    if words[-1] in VALUE_KINDS:
        return _starting(lookups.get(VALUE_KINDS[words[-1]]), current)
    if any(action.dest in ("job_ids", "job_id") for action in parser._actions):
        return _starting(lookups.get("jobs"), current)
    if any(action.dest == "site" and not action.option_strings for action in parser._actions):
        return _starting(lookups.get("sites"), current)
    return []


def _starting(words: Iterable[str], prefix: str) -> list[str]:
    return [word for word in words if word.startswith(prefix)]


# -- running a line ----------------------------------------------------------------------------


@dataclass
class Console:
    tree: CommandTree
    run_argv: Callable[[list[str]], int]  # runs one dirac-like command line, returns its code
    global_argv: list[str]  # --server/--home/--identity/--insecure the console was started with
    site: str = ""  # the context of ``use site X``
    out: Any = sys.stdout

    def execute(self, line: str) -> bool:
        """Run one line; False when the console should end."""
        try:
            words = shlex.split(line)
        except ValueError as exc:
            self.say(f"error: {exc}")
            return True
        if not words:
            return True
        if words[0] in ("exit", "quit"):
            return False
        try:
            self.dispatch(words)
        except DiracLikeError as exc:
            self.say(f"error: {exc.message}")
        return True

    def dispatch(self, words: list[str]) -> None:
        if words[0] == "help":
            self.help()
        elif words[0] == "use":
            self.use(words[1:])
        elif words[0] == "watch":
            self.watch(words[1:])
        else:
            self.run(words)

    def run(self, words: list[str]) -> int:
        self.tree.check(words)
        if words[0] in NOT_IN_CONSOLE:
            raise ConsoleError(f"{words[0]!r} does not run inside the console")
        parser, _ = self.tree.walk(words)
        argv = list(words)
        if self.site and "--site" in options_of(parser) and "--site" not in argv:
            argv += ["--site", self.site]
        code = self.run_argv(argv + self.global_argv)
        if code == INTERRUPTED:  # Ctrl-C inside the command: stop a watch too
            raise KeyboardInterrupt
        return code

    def use(self, words: list[str]) -> None:
        if not words:
            self.say(f"context: site {self.site}" if self.site else "no context (use site X)")
        elif words == ["none"]:
            self.site = ""
            self.say("context cleared")
        elif len(words) == 2 and words[0] == "site":
            self.site = words[1]
            self.say(f"context: site {self.site} (commands with --site get it)")
        else:
            raise ConsoleError("use site SITE, or use none")

    def watch(self, words: list[str]) -> None:
        interval, count, command = parse_watch(words)
        self.tree.check(command)
        for round_ in _rounds(count):
            if round_:
                time.sleep(interval)
            self.out.write("\x1b[2J\x1b[H" if self.out.isatty() else "")
            self.say(f"every {interval:g} s: {' '.join(command)}   (Ctrl-C stops)")
            self.run(command)

    def help(self) -> None:
        self.say(
            "Commands (as dirac-like takes them, without the prefix): "
            + ", ".join(self.tree.groups())
        )
        for text in BUILTINS.values():
            self.say(f"  {text}")

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)


def parse_watch(words: list[str]) -> tuple[float, int, list[str]]:
    """``[-n S] [--count N] COMMAND...`` -> (interval, count (0: forever), command)."""
    interval, count, rest = 2.0, 0, list(words)
    try:
        while rest and rest[0] in ("-n", "--count"):
            option, value = rest.pop(0), rest.pop(0)
            if option == "-n":
                interval = float(value)
            else:
                count = int(value)
    except (IndexError, ValueError):
        raise ConsoleError("watch [-n SECONDS] [--count N] COMMAND") from None
    if not rest or interval <= 0 or count < 0:
        raise ConsoleError("watch [-n SECONDS] [--count N] COMMAND (SECONDS > 0)")
    return interval, count, rest


def _rounds(count: int) -> Iterator[int]:
    round_ = 0
    while not count or round_ < count:
        yield round_
        round_ += 1


# -- the command -------------------------------------------------------------------------------


def global_argv(args: argparse.Namespace) -> list[str]:
    argv = [
        item
        for name in GLOBAL_OPTIONS
        if getattr(args, name, None)
        for item in (f"--{name}", str(getattr(args, name)))
    ]
    return argv + (["--insecure"] if getattr(args, "insecure", False) else [])


def cmd_console(args: argparse.Namespace) -> int:
    from dirac_like.cli.main import COMMANDS, build_parser, run

    parser = build_parser()
    console = Console(
        CommandTree(parser), lambda argv: run(parser, COMMANDS, argv), global_argv(args)
    )
    if args.site:
        console.site = args.site
    if not sys.stdin.isatty():
        for line in sys.stdin:
            if not console.execute(line):
                break
        return EXIT_OK
    return interactive(
        console,
        Lookups(lambda: fetch_lookups(args)),
        Path(args.home or default_home()) / HISTORY_FILE,
    )


def interactive(console: Console, lookups: Lookups, history: Path) -> int:
    from prompt_toolkit import PromptSession
    from prompt_toolkit.completion import Completer, Completion, ThreadedCompleter
    from prompt_toolkit.history import FileHistory

    class ConsoleCompleter(Completer):
        def get_completions(self, document: Any, complete_event: Any) -> Iterator[Completion]:
            before = document.text_before_cursor
            current = "" if before.endswith(" ") or not before else before.split()[-1]
            for word in completions(console.tree, lookups, before):
                yield Completion(word, start_position=-len(current))

    history.parent.mkdir(parents=True, exist_ok=True)
    session: PromptSession[str] = PromptSession(
        history=FileHistory(str(history)),
        completer=ThreadedCompleter(ConsoleCompleter()),
        complete_while_typing=False,
    )
    console.say(
        "dirac-like console: commands without the dirac-like prefix; Tab completes; "
        "help; Ctrl-D leaves."
    )
    while True:
        try:
            line = session.prompt(_prompt(console))
        except KeyboardInterrupt:
            continue  # a fresh line, as a shell does
        except EOFError:
            return EXIT_OK
        try:
            if not console.execute(line):
                return EXIT_OK
        except KeyboardInterrupt:  # stops a watch or a long command
            console.say("")


def _prompt(console: Console) -> str:
    return f"dirac-like [{console.site}]> " if console.site else PROMPT


def add_console_parser(groups: Any, both: list[argparse.ArgumentParser]) -> None:
    text = "an interactive console: every command without the prefix, completion, history"
    console = groups.add_parser(
        "console",
        parents=both,
        help=text,
        description=text[0].upper() + text[1:] + ", watch, use site.",
    )
    console.add_argument("--site", help="start with the context 'use site SITE'")
    console.set_defaults(cli_command="")


CONSOLE_COMMANDS = {("console", ""): cmd_console}
