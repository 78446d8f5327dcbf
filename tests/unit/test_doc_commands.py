"""The expansion rules of tests/doc_commands.py (the documented commands' notation)."""

from __future__ import annotations

import pytest
from doc_commands import NotationError, documented_commands, expand, split_comment, substitute


def block(*lines: str) -> str:
    return "\n".join(["text", "```sh", *lines, "```", ""])


def texts(markdown: str, section: str | None = None) -> list[str]:
    return [command.text for command in documented_commands(markdown, section)]


def test_alternatives_with_the_whole_command_are_separate_commands() -> None:
    line = "dirac-like job kill 4   |   dirac-like job reschedule 4"

    assert expand(line) == ["dirac-like job kill 4", "dirac-like job reschedule 4"]


def test_an_alternative_without_the_prefix_continues_the_first_ones_group() -> None:
    line = 'dirac-like admin sites | ban-site X --reason "SE down" | site limit X 200'

    assert expand(line) == [
        "dirac-like admin sites",
        'dirac-like admin ban-site X --reason "SE down"',
        "dirac-like admin site limit X 200",
    ]


def test_a_pipe_from_another_program_or_inside_quotes_stays() -> None:
    assert expand("printf x | dd of=f bs=1") == ["printf x | dd of=f bs=1"]
    selection = "dirac-like job reschedule --select 'status=Running|Stalled'"
    assert expand(selection) == [selection]


def test_an_optional_part_gives_the_command_without_and_with_it() -> None:
    assert expand("dirac-like admin identity list [--pilot-tokens]") == [
        "dirac-like admin identity list",
        "dirac-like admin identity list --pilot-tokens",
    ]


def test_choices_inside_an_optional_part_give_one_command_each() -> None:
    assert expand("dirac-like job summary [--by site|owner]") == [
        "dirac-like job summary",
        "dirac-like job summary --by site",
        "dirac-like job summary --by owner",
    ]


def test_brackets_inside_quotes_are_not_optional_parts() -> None:
    line = 'printf \'[store]\\nurl = "%s"\\n\' "$(cat /tmp/pg/url)" > pair.toml'

    assert expand(line) == [line]


def test_an_ellipsis_outside_a_comment_is_refused() -> None:
    with pytest.raises(NotationError):
        expand("dirac-like job status ID...")


def test_an_unclosed_optional_part_is_refused() -> None:
    with pytest.raises(NotationError):
        expand("dirac-like job summary [--by site")


def test_a_comment_is_split_off_but_not_a_hash_inside_quotes() -> None:
    assert split_comment("dirac-like job status 1   # --json for scripts") == (
        "dirac-like job status 1",
        "--json for scripts",
    )
    assert split_comment("echo 'a # b' x") == ("echo 'a # b' x", "")
    assert split_comment("echo a#b") == ("echo a#b", "")


def test_commands_continue_lines_keep_heredocs_and_mark_background() -> None:
    markdown = block(
        "cat > grid.toml <<'EOF'",
        "[data]",
        "# not a comment here",
        "EOF",
        "dirac-like agent director --site S \\",
        "    --once",
        "dirac-like service central --config grid.toml &   # background",
        "#   central service listening on ...",
    )

    commands = documented_commands(markdown)

    assert [command.text for command in commands] == [
        "cat > grid.toml <<'EOF'\n[data]\n# not a comment here\nEOF",
        "dirac-like agent director --site S --once",
        "dirac-like service central --config grid.toml",
    ]
    assert [command.background for command in commands] == [False, False, True]
    assert commands[2].expected == ("central service listening on ...",)
    assert commands[2].line == 9 and commands[2].comment == "background"


def test_a_section_keeps_the_blocks_under_its_heading_only() -> None:
    markdown = "\n".join(
        [
            "## One",
            *block("dirac-like init").splitlines(),
            "### Inside one",
            *block("dirac-like job list").splitlines(),
            "## Two",
            *block("dirac-like job summary").splitlines(),
        ]
    )

    assert texts(markdown, "One") == ["dirac-like init", "dirac-like job list"]
    assert texts(markdown, "Two") == ["dirac-like job summary"]
    assert texts(markdown, "Three") == []


def test_only_sh_blocks_hold_commands() -> None:
    markdown = '```\nExecutable = "/bin/echo";\n```\n' + block("dirac-like init")

    assert texts(markdown) == ["dirac-like init"]


def test_substitution_replaces_whole_ports_and_paths_only() -> None:
    replacements = {"7700": "4242", "/tmp/pg": "/tmp/x", "/tmp/p": "/tmp/y"}

    assert substitute("tcp://127.0.0.1:7700,tcp://h:77001", replacements) == (
        "tcp://127.0.0.1:4242,tcp://h:77001"
    )
    assert substitute("cat /tmp/pg/url > /tmp/pg.toml", replacements) == (
        "cat /tmp/x/url > /tmp/x.toml"
    )
    assert substitute("--workdir /tmp/p /tmp/pgx /a/tmp/p", replacements) == (
        "--workdir /tmp/y /tmp/pgx /a/tmp/p"
    )


def test_words_stop_at_the_first_option() -> None:
    [command] = documented_commands(block("dirac-like job kill --select 'a=b' --dry-run"))

    assert command.words == ["dirac-like", "job", "kill"]
    assert command.is_dirac_like("job", "kill") and not command.is_dirac_like("job", "wait")
