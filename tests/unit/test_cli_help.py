"""Every command's ``--help`` runs, says what the command does and describes every argument;
the DIRAC-named aliases too; the shell completion script is generated."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

import pytest

from dirac_like.cli import build_parser, main
from dirac_like.cli.dirac import ALIASES, build_alias_parser, run_alias


def commands(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """Every (sub)command's words and parser, the top level included."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from commands(child, (*path, name))


ALL = list(commands(build_parser()))


def undocumented(parser: argparse.ArgumentParser) -> list[str]:
    return [
        action.dest
        for action in parser._actions
        if not isinstance(action, argparse._SubParsersAction)
        and action.help != argparse.SUPPRESS
        and not (action.help or "").strip()
    ]


def test_the_walk_finds_every_command() -> None:
    paths = {" ".join(path) for path, _ in ALL}
    assert {
        "job submit",
        "job peek",
        "job summary",
        "admin identity add",
        "agent director",
        "pilot",
        "completion",
    } <= paths


@pytest.mark.parametrize(("path", "parser"), ALL, ids=[" ".join(p) or "dirac-like" for p, _ in ALL])
def test_every_help(
    path: tuple[str, ...], parser: argparse.ArgumentParser, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*path, "--help"]) == 0
    shown = capsys.readouterr().out
    assert shown.startswith("usage: dirac-like")
    assert parser.description and parser.description.split()[0] in shown
    assert undocumented(parser) == []


@pytest.mark.parametrize("name", sorted(ALIASES))
def test_every_dirac_alias_help(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_alias(name, ["--help"]) == 0
    shown = capsys.readouterr().out
    assert shown.startswith(f"usage: {name}") and ALIASES[name][0].split()[0] in shown
    assert undocumented(build_alias_parser(name)) == []


@pytest.mark.parametrize("shell", ["bash", "zsh"])
def test_completion_script(shell: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["completion", shell]) == 0
    script = capsys.readouterr().out
    assert "dirac-like" in script and "get-input" in script and "--server" in script


def test_global_options_before_or_after_the_command() -> None:
    parser = build_parser()
    before = parser.parse_args(["--server", "tcp://a:1", "--json", "job", "status", "5"])
    after = parser.parse_args(["job", "status", "5", "--server", "tcp://a:1", "--json"])
    neither = parser.parse_args(["job", "status", "5"])

    assert (before.server, before.json) == (after.server, after.json) == ("tcp://a:1", True)
    assert (neither.server, neither.json, neither.home, neither.insecure) == (
        None,
        False,
        None,
        False,
    )
