"""The console's decisions without a terminal: completion, typo suggestions, the site context,
watch's options (the terminal itself: tests/integration/test_console.py)."""

from __future__ import annotations

import io

import pytest

from dirac_like.cli.console import (
    CommandTree,
    Console,
    ConsoleError,
    Lookups,
    completions,
    parse_watch,
)
from dirac_like.cli.main import build_parser

TREE = CommandTree(build_parser())
LOOKUPS = Lookups(
    lambda: {
        "jobs": ["5", "17", "170"],
        "sites": ["LCG.CERN.cern", "LCG.RAL.uk"],
        "groups": ["physics"],
        "users": ["alice", "bob"],
    }
)


@pytest.mark.parametrize(
    "line, expected",
    [
        ("", None),  # everything: checked below
        ("jo", ["job"]),
        ("job sta", ["status"]),
        ("job status 1", ["17", "170"]),
        ("job list --st", ["--status"]),
        ("job list --site LCG.R", ["LCG.RAL.uk"]),
        ("job list --owner ", ["alice", "bob"]),
        ("job list --group p", ["physics"]),
        ("admin site show LCG.C", ["LCG.CERN.cern"]),
        ("admin site ", ["drain", "limit", "show"]),
        ("use ", ["site", "none"]),
        ("use site LCG.C", ["LCG.CERN.cern"]),
        ("watch -n 1 job wh", ["why"]),
    ],
)
def test_completion_of_commands_options_ids_sites_and_users(
    line: str, expected: list[str] | None
) -> None:
    found = completions(TREE, LOOKUPS, line)
    if expected is None:
        assert {"job", "admin", "watch", "use"} <= set(found) and "console" not in found
    else:
        assert found == expected


@pytest.mark.parametrize(
    "words, message",
    [
        (["jbo", "status"], "unknown command 'jbo': did you mean 'job'?"),
        (["job", "stauts"], "unknown job command 'stauts': did you mean 'status'?"),
        (["admin", "site", "dran"], "unknown admin site command 'dran': did you mean 'drain'?"),
    ],
)
def test_a_typo_gets_a_suggestion(words: list[str], message: str) -> None:
    with pytest.raises(ConsoleError) as caught:
        TREE.check(words)
    assert caught.value.message == message


def test_the_site_context_is_added_only_where_a_command_takes_site() -> None:
    ran: list[list[str]] = []
    console = Console(
        TREE, lambda argv: ran.append(argv) or 0, ["--server", "tcp://x:1"], out=io.StringIO()
    )
    console.execute("use site LCG.CERN.cern")
    console.execute("job list")
    console.execute("job list --site Other")
    console.execute("job status 5")
    assert ran == [
        ["job", "list", "--site", "LCG.CERN.cern", "--server", "tcp://x:1"],
        ["job", "list", "--site", "Other", "--server", "tcp://x:1"],
        ["job", "status", "5", "--server", "tcp://x:1"],
    ]
    assert console.execute("exit") is False


@pytest.mark.parametrize(
    "words",
    [[], ["-n"], ["-n", "0", "job", "list"], ["-n", "x", "job", "list"], ["--count", "-1", "job"]],
)
def test_watch_refuses_bad_options(words: list[str]) -> None:
    with pytest.raises(ConsoleError, match="watch"):
        parse_watch(words)


def test_watch_reads_interval_and_count() -> None:
    assert parse_watch(["-n", "0.5", "--count", "3", "job", "list"]) == (0.5, 3, ["job", "list"])
