"""The commands of a Markdown document's ``sh`` blocks, expanded into what a user types (pure).

The end-to-end tests of the documented commands (tests/e2e/test_documented_commands.py and
test_documented_pair.py) take their commands from README.md and docs/*.md through this module,
so a changed document is what gets tested. The documents write some commands in a notation that
is not shell; these are the rules that expand it, and the only ones (anything else is run as
written):

1. A command is a line of an ```` ```sh ```` block; a line ending in ``\\`` continues on the
   next; a here-document (``<<'EOF'`` ... ``EOF``) belongs to its command. ``# ...`` after a
   command is its comment (a ``#`` inside quotes is not); a line that is only a comment is the
   documented output of the command before it (``expected``).
2. Alternatives: ``dirac-like A ... | dirac-like B ...`` (a ``|`` with spaces around it, outside
   quotes, on a line that starts with ``dirac-like``) is several commands, not a pipe. An
   alternative that does not start with ``dirac-like`` continues the first one's command group:
   ``dirac-like admin sites | ban-site X`` is ``dirac-like admin sites`` and
   ``dirac-like admin ban-site X``. (A pipe from another program, ``printf x | dd ...``, stays.)
3. Optional parts: ``[--opt ...]`` (a ``[`` before a ``-``, outside quotes) gives the command
   without it and with it; a word ``a|b|c`` inside it gives one command for each of a, b and c
   (``[--by site|owner]``: none, ``--by site``, ``--by owner``).
4. A command ending in ``&`` runs in the background (``background``).
5. ``...`` outside a comment is not a command: :class:`NotationError`, so that a document using
   a notation these rules do not know fails the test instead of being skipped.

:func:`substitute` replaces whole words only (a port ``7700``, a path ``/tmp/pg`` and what lies
under it), for the fixed ports and paths the documents name.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

FENCE_OPEN = "```sh"
FENCE_CLOSE = "```"
HEREDOC = re.compile(r"<<-?\s*'?\"?(\w+)'?\"?")


class NotationError(ValueError):
    """A documented command in a notation the rules above do not expand."""


@dataclass(frozen=True)
class DocCommand:
    """One command as a user runs it, with where it came from."""

    text: str  # shell text, run with bash -c
    line: int  # its line in the document (1-based)
    source: str  # the documented line, unexpanded
    comment: str = ""  # the comment after it, without '#'
    expected: tuple[str, ...] = ()  # lines of documented output after it, without '# '
    background: bool = False  # written with a trailing '&'

    @property
    def words(self) -> list[str]:
        """Its words up to the first option, a redirection or a shell operator
        (``['dirac-like', 'job', 'submit', 'x.jdl']``)."""
        words: list[str] = []
        for word in self.text.split():
            if word.startswith("-") or word[0] in "<>|&;" or word.startswith("2>"):
                break
            words.append(word)
        return words

    def is_dirac_like(self, *subcommand: str) -> bool:
        """Whether it is ``dirac-like SUBCOMMAND...`` (``is_dirac_like("job", "wait")``)."""
        words = self.text.split()
        return words[: 1 + len(subcommand)] == ["dirac-like", *subcommand]


@dataclass(frozen=True)
class _Line:
    text: str
    number: int


def sh_blocks(markdown: str, section: str | None = None) -> list[list[_Line]]:
    """The lines of each ``sh`` block, in order; only those under the heading ``section`` (any
    level, up to the next heading of the same or a higher level) when it is given."""
    blocks: list[list[_Line]] = []
    current: list[_Line] | None = None
    inside_section = section is None
    section_level = 0
    for number, line in enumerate(markdown.splitlines(), start=1):
        if current is None and line.startswith("#") and section is not None:
            level = len(line) - len(line.lstrip("#"))
            title = line[level:].strip()
            if title == section:
                inside_section, section_level = True, level
            elif inside_section and level <= section_level:
                inside_section = False
            continue
        if current is None:
            if line.strip() == FENCE_OPEN and inside_section:
                current = []
            continue
        if line.strip() == FENCE_CLOSE:
            blocks.append(current)
            current = None
        else:
            current.append(_Line(line, number))
    return blocks


def documented_commands(markdown: str, section: str | None = None) -> list[DocCommand]:
    """Every command of the ``sh`` blocks (under ``section``), expanded by the rules above."""
    commands: list[DocCommand] = []
    for block in sh_blocks(markdown, section):
        commands.extend(block_commands(block))
    return commands


def block_commands(block: list[_Line]) -> list[DocCommand]:
    """The commands of one block, expanded."""
    commands: list[DocCommand] = []
    for logical, number, expected in _logical_lines(block):
        code, comment = split_comment(logical)
        if not code.strip():
            continue
        for text in expand(code.strip()):
            background = text.endswith("&") and not text.endswith("&&")
            if background:
                text = text[:-1].rstrip()
            commands.append(DocCommand(text, number, logical, comment, tuple(expected), background))
    return commands


def _logical_lines(block: list[_Line]) -> Iterator[tuple[str, int, list[str]]]:
    """(command text, first line number, comment-only lines after it) for each command."""
    index = 0
    pending: tuple[str, int, list[str]] | None = None
    while index < len(block):
        line = block[index]
        index += 1
        if line.text.lstrip().startswith("#"):
            if pending is not None:
                pending[2].append(line.text.lstrip()[1:].strip())
            continue
        if pending is not None:
            yield pending
        text, number = line.text, line.number
        while text.endswith("\\") and index < len(block):
            text = text[:-1].rstrip() + " " + block[index].text.strip()
            index += 1
        heredoc = HEREDOC.search(split_comment(text)[0])
        if heredoc:
            body = []
            while index < len(block) and block[index].text.strip() != heredoc.group(1):
                body.append(block[index].text)
                index += 1
            index += 1  # the terminator
            text = "\n".join([text, *body, heredoc.group(1)])
        pending = (text, number, [])
    if pending is not None:
        yield pending


def split_comment(text: str) -> tuple[str, str]:
    """(code, comment) of a shell line: the comment starts at a ``#`` outside quotes that
    begins a word; in a here-document only the first line may have one."""
    first, newline, rest = text.partition("\n")
    quote = ""
    for index, char in enumerate(first):
        if quote:
            if char == quote:
                quote = ""
        elif char in "'\"":
            quote = char
        elif char == "#" and (index == 0 or first[index - 1].isspace()):
            return first[:index].rstrip() + newline + rest, first[index + 1 :].strip()
    return text, ""


def _outside_quotes(text: str) -> Iterator[tuple[int, str]]:
    """(index, char) of the characters of ``text`` that are outside quotes."""
    quote = ""
    for index, char in enumerate(text):
        if quote:
            if char == quote:
                quote = ""
            continue
        if char in "'\"":
            quote = char
            continue
        yield index, char


def expand(code: str) -> list[str]:
    """The commands one documented line stands for (rules 2, 3 and 5)."""
    if "\n" not in code and "..." in "".join(char for _, char in _outside_quotes(code)):
        raise NotationError(f"'...' in a command: {code!r}")
    commands: list[str] = []
    for alternative in split_alternatives(code):
        commands.extend(expand_optional(alternative))
    return commands


def split_alternatives(code: str) -> list[str]:
    """Rule 2: the alternatives of a ``dirac-like`` line (one element if it has none)."""
    if not code.startswith("dirac-like ") or "\n" in code:
        return [code]
    cuts = [
        index
        for index, char in _outside_quotes(code)
        if char == "|" and code[index - 1 : index] == " " and code[index + 1 : index + 2] == " "
    ]
    if not cuts:
        return [code]
    parts = [
        code[start + 1 : end].strip() for start, end in itertools.pairwise([-1, *cuts, len(code)])
    ]
    group = " ".join(parts[0].split()[:2])  # dirac-like GROUP
    return [part if part.startswith("dirac-like ") else f"{group} {part}" for part in parts]


def expand_optional(code: str) -> list[str]:
    """Rule 3: the command without each ``[--opt]`` part, then with each variant of it."""
    span = _optional_span(code)
    if span is None:
        return [code]
    start, end = span
    before, inside, after = code[:start].rstrip(), code[start + 1 : end], code[end + 1 :]
    variants = [""]
    words = inside.split()
    for position, word in enumerate(words):
        if "|" in word and not word.startswith(("'", '"')):
            variants = [
                " ".join([*words[:position], choice, *words[position + 1 :]])
                for choice in word.split("|")
            ]
            break
    else:
        variants = [inside]
    results: list[str] = []
    for variant in ["", *variants]:
        joined = " ".join(part for part in (before, variant, after.strip()) if part)
        results.extend(expand_optional(joined))
    return results


def _optional_span(code: str) -> tuple[int, int] | None:
    """(index of '[', index of its ']') of the first optional part outside quotes."""
    start = None
    for index, char in _outside_quotes(code):
        if start is None:
            if char == "[" and code[index + 1 : index + 2] == "-" and code[index - 1] == " ":
                start = index
        elif char == "]":
            return start, index
    if start is not None:
        raise NotationError(f"'[' without its ']': {code!r}")
    return None


def substitute(text: str, replacements: Mapping[str, str]) -> str:
    """``text`` with each key replaced by its value where it is a whole word: not inside a
    longer number, name or path (``/tmp/pg`` matches ``/tmp/pg/url`` and ``/tmp/pg.toml``,
    not ``/tmp/pgx``; ``7700`` does not match ``77001``)."""
    for old, new in replacements.items():
        pattern = rf"(?<![\w/.-]){re.escape(old)}(?![\w-])"
        text = re.sub(pattern, lambda _, new=new: new, text)
    return text
