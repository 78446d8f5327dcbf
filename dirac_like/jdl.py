"""A parser and writer for DIRAC's JDL (the ClassAd subset DIRAC's ``ClassAdLight`` reads).

Syntax accepted by :func:`parse_jdl`::

    [                                   # optional wrapper around the whole document
      Executable = "run.sh";            // strings: double quotes, escapes \\" \\\\ \\n \\t \\r
      Priority = 3;  CPUTime = 1.5e3;   /* integers (64-bit) and floats */
      Debug = TRUE;                     # true / false, any case
      Site = LCG.CERN.cern;             # a bare word is a string
      InputData = %(files)s;            # a bare word with '%' is a Placeholder (parametric jobs)
      InputSandbox = { "a", "b", 3 };   # lists, possibly empty, nested: { {1, 2}, {3} }
      ExecutionEnvironment = { A=1 };   # NAME=value in a list is the string "A=1" (DIRAC's _toJDL)
      Options = [ A = 1; B = "x"; ];    # nested sections become dicts
      Requirements = other.Ram > 2;     # anything else on one line up to ';': an Expression
      Parameters.B = { 1, 2 }           # dotted names; the last ';' may be left out
    ]

A string ends at the end of its line (write ``\\n`` for a newline inside a string). A bare word is
an integer when it looks like one (``-12``), a float when it looks like one (``1.``, ``.5``,
``2e-3``), a boolean for ``true``/``false``, a :class:`Placeholder` when it holds a ``%`` and a
string otherwise. A value that is none of these (a gLite ``Requirements`` expression, say) is kept
verbatim as an :class:`Expression` when it ends on its own line, as DIRAC keeps any text up to the
next ``;``. An attribute given twice keeps its last value, with a warning, as in DIRAC; names are
compared case-insensitively for that, and returned as last written. Integers must fit in 64 bits
(the store's integers) and a document may hold at most ``max_chars`` characters.

Everything here is pure: text in, values out, no I/O.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from dirac_like.errors import InvalidJobDescription

__all__ = [
    "MAX_DESCRIPTION_CHARS",
    "Expression",
    "JdlDocument",
    "JdlWarning",
    "Placeholder",
    "format_jdl",
    "parse_jdl",
]

MAX_DEPTH = 64  # nested lists/sections; deeper input is refused instead of recursing on
MAX_DESCRIPTION_CHARS = 256 * 1024  # a job description's text; a longer one is refused
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1  # what the store's integers hold

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*\Z")
_INT = re.compile(r"[+-]?[0-9]+\Z")
_FLOAT = re.compile(r"[+-]?(?:[0-9]+\.[0-9]*|\.[0-9]+|[0-9]+(?=[eE]))(?:[eE][+-]?[0-9]+)?\Z")
_WORD = re.compile(r"(?:%\([\w.]*\)|[\w.\-+:@$%*~]|/(?![/*]))+")
_SPACE = re.compile(r"[ \t\r\f\v]+")
_PUNCTUATION = frozenset("=;,{}[]")
_ESCAPES = {'"': '"', "\\": "\\", "n": "\n", "t": "\t", "r": "\r"}
_UNESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r"}
_OPENERS, _CLOSERS = "([{", ")]}"

# Token kinds.
WORD = "word"
STRING = "string"
PUNCT = "punct"
END = "end"


@dataclass(frozen=True)
class Placeholder:
    """A bare word holding ``%``: ``%s``, ``%(name)s``, ``file_%n``. In a parametric job it takes
    the parameter's own value (a list stays a list); elsewhere it is the string it spells."""

    text: str


@dataclass(frozen=True)
class Expression:
    """A value kept verbatim: ClassAd text this parser does not interpret (``other.X > 2``)."""

    text: str


@dataclass(frozen=True)
class JdlWarning:
    """Something accepted but worth telling the user: an ignored or overridden attribute."""

    message: str
    attribute: str | None = None
    line: int | None = None

    def __str__(self) -> str:
        where = [f"attribute {self.attribute}"] if self.attribute is not None else []
        if self.line is not None:
            where.append(f"line {self.line}")
        return f"{self.message} ({', '.join(where)})" if where else self.message


@dataclass(frozen=True)
class JdlDocument:
    """A parsed JDL document: attribute values, the 1-based line each attribute starts on,
    warnings (attributes given twice), and where each top-level value is in the text."""

    attributes: dict[str, Any]
    lines: dict[str, int]
    warnings: list[JdlWarning] = field(default_factory=list)
    spans: dict[str, tuple[int, int]] = field(default_factory=dict)  # value's [start, end) offsets


@dataclass(frozen=True, slots=True)
class Token:
    kind: str
    text: str  # a word or punctuation as written; the decoded value of a string
    line: int
    start: int = 0  # offset in the text

    def describe(self) -> str:
        if self.kind == END:
            return "end of input"
        if self.kind == STRING:
            return f"string {_quote(self.text)}"
        return repr(self.text)


# --- tokenizer -------------------------------------------------------------------------------


class _LexError(Exception):
    """A tokenizer error; the parser turns it into InvalidJobDescription naming the attribute."""

    def __init__(self, message: str, line: int) -> None:
        super().__init__(message)
        self.message = message
        self.line = line


class _OutOfRange(InvalidJobDescription):
    """A value that is well formed but beyond what is stored: never kept as an Expression."""


class _Tokenizer:
    """Splits JDL text into tokens, skipping white space and comments."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.line = 1

    def next_token(self) -> Token:
        """The next token; an END token once the text is used up."""
        self._skip_blanks()
        if self.pos >= len(self.text):
            return Token(END, "", self.line, self.pos)
        return self._read_token()

    def _skip_blanks(self) -> None:
        text = self.text
        while self.pos < len(text):
            char = text[self.pos]
            if char == "\n":
                self.line += 1
                self.pos += 1
            elif (space := _SPACE.match(text, self.pos)) is not None:
                self.pos = space.end()
            elif char == "#" or text.startswith("//", self.pos):
                end = text.find("\n", self.pos)
                self.pos = len(text) if end < 0 else end
            elif text.startswith("/*", self.pos):
                self._skip_block_comment()
            else:
                return

    def _skip_block_comment(self) -> None:
        end = self.text.find("*/", self.pos + 2)
        if end < 0:
            raise _LexError(
                "unterminated comment: expected '*/' before the end of input", self.line
            )
        self.line += self.text.count("\n", self.pos, end)
        self.pos = end + 2

    def _read_token(self) -> Token:
        char, start = self.text[self.pos], self.pos
        if char in _PUNCTUATION:
            self.pos += 1
            return Token(PUNCT, char, self.line, start)
        if char == '"':
            return self._string()
        word = _WORD.match(self.text, self.pos)
        if word is None:
            raise _LexError(f"unexpected character {char!r}", self.line)
        self.pos = word.end()
        return Token(WORD, word.group(), self.line, start)

    def _string(self) -> Token:
        text, start_line, start = self.text, self.line, self.pos
        chars: list[str] = []
        pos = self.pos + 1
        while pos < len(text) and text[pos] not in '"\n':
            if text[pos] == "\\" and pos + 1 < len(text) and text[pos + 1] in _ESCAPES:
                chars.append(_ESCAPES[text[pos + 1]])
                pos += 2
            else:
                chars.append(text[pos])
                pos += 1
        if pos >= len(text) or text[pos] != '"':
            raise _LexError(
                "unterminated string: expected a closing '\"' on the same line", start_line
            )
        self.pos = pos + 1
        return Token(STRING, "".join(chars), start_line, start)

    def raw_value(self, start: int, line: int) -> str | None:
        """The text from ``start`` (on ``line``; blanks skipped) to the next ``;`` (or the ``]``
        closing the section) outside quotes and brackets, when it stays on one line and does not
        start as a list, section or string; the tokenizer then stands before that ``;``/``]``."""
        text = self.text
        while start < len(text) and text[start].isspace():
            line += text[start] == "\n"
            start += 1
        if start < len(text) and text[start] in '{["':
            return None  # lists, sections and strings must be well formed
        pos, depth, quoted = start, 0, False
        while pos < len(text):
            char = text[pos]
            if char == "\n":
                return None
            if quoted:
                quoted = char != '"' or text[pos - 1] == "\\"
            elif char == '"':
                quoted = True
            elif char in _OPENERS:
                depth += 1
            elif char in _CLOSERS and depth > 0:
                depth -= 1
            elif depth == 0 and char in ";]":
                break
            pos += 1
        raw = text[start:pos].strip()
        if quoted or depth or not raw:
            return None
        self.pos, self.line = pos, line
        return raw


def tokenize(text: str) -> list[Token]:
    """All tokens of ``text``, ending with one END token."""
    tokenizer = _Tokenizer(text)
    try:
        tokens = [tokenizer.next_token()]
        while tokens[-1].kind != END:
            tokens.append(tokenizer.next_token())
    except _LexError as error:
        raise InvalidJobDescription(error.message, line=error.line) from None
    return tokens


# --- parser ----------------------------------------------------------------------------------


class _Parser:
    """Recursive descent with one token of look-ahead.

    ``attribute`` is the top-level attribute being read, so that every error (including those of
    the tokenizer) can name it.
    """

    def __init__(self, text: str) -> None:
        self.tokenizer = _Tokenizer(text)
        self.attribute: str | None = None
        self.warnings: list[JdlWarning] = []
        self.spans: dict[str, tuple[int, int]] = {}
        self.last_end = 0  # where the last token taken ends
        self.current = self.pull()

    def pull(self) -> Token:
        try:
            return self.tokenizer.next_token()
        except _LexError as error:
            raise InvalidJobDescription(
                error.message, attribute=self.attribute, line=error.line
            ) from None

    def advance(self) -> Token:
        token = self.current
        if token.kind != END:
            self.last_end = self.tokenizer.pos
            self.current = self.pull()
        return token

    def fail(self, message: str, line: int | None = None) -> InvalidJobDescription:
        where = self.current.line if line is None else line
        return InvalidJobDescription(message, attribute=self.attribute, line=where)

    def out_of_range(self, message: str, line: int | None = None) -> InvalidJobDescription:
        where = self.current.line if line is None else line
        return _OutOfRange(message, attribute=self.attribute, line=where)

    def is_punct(self, char: str) -> bool:
        return self.current.kind == PUNCT and self.current.text == char

    def document(self) -> JdlDocument:
        attributes: dict[str, Any] = {}
        lines: dict[str, int] = {}
        if self.is_punct("["):
            opening = self.advance()
            self.statements(attributes, lines, "]", opening.line, depth=0)
            self.advance()
        else:
            self.statements(attributes, lines, None, 1, depth=0)
        if self.current.kind != END:
            raise self.fail(f"expected end of input, found {self.current.describe()}")
        if not attributes:
            raise InvalidJobDescription("empty job description: no attributes", line=1)
        return JdlDocument(attributes, lines, self.warnings, self.spans)

    def statements(
        self,
        into: dict[str, Any],
        lines: dict[str, int],
        close: str | None,
        start: int,
        depth: int,
    ) -> None:
        """``Name = value;`` statements up to ``close`` (``None``: end of input), not consumed.

        ``depth`` 0 means the document's own attributes, more means a nested section.
        """
        seen: dict[str, tuple[str, int]] = {}  # lower-case name -> (name as written, line)
        top = depth == 0
        while not self.at_close(close, start):
            name = self.name()
            if top:
                self.attribute = name.text
            if (first := seen.get(name.text.lower())) is not None:
                self.warn_duplicate(name, first)
                del into[first[0]]
                lines.pop(first[0], None)
                if top:
                    del self.spans[first[0]]
            seen[name.text.lower()] = (name.text, name.line)
            into[name.text], span = self.assigned_value(name, close, depth)
            lines[name.text] = name.line
            if top:
                self.spans[name.text] = span
            if top:
                self.attribute = None
            if self.is_punct(";"):
                self.advance()

    def warn_duplicate(self, name: Token, first: tuple[str, int]) -> None:
        message = (
            f"{name.text} is given twice (first as {first[0]} on line {first[1]}): "
            "the last value is used"
        )
        self.warnings.append(JdlWarning(message, self.attribute, name.line))

    def assigned_value(
        self, name: Token, close: str | None, depth: int
    ) -> tuple[Any, tuple[int, int]]:
        """``= value`` after ``name`` and where the value is; a value this parser cannot read
        becomes an Expression when it ends on its line (DIRAC keeps such text), else the parse
        error stands."""
        if not self.is_punct("="):
            self.expect("=", f"after the attribute name {name.text}")
        value_start = self.current.start + 1
        try:
            self.advance()
            first = self.current.start
            value = self.value(depth)
            if self.is_punct(";") or self.at_end_of(close):
                return value, (first, self.last_end)
            error = self.fail(
                f"expected ';' after the value of {name.text}, found {self.current.describe()}"
            )
        except _OutOfRange:
            raise
        except InvalidJobDescription as caught:
            error = caught
        line = name.line + self.tokenizer.text.count("\n", name.start, value_start)
        raw = self.tokenizer.raw_value(value_start, line)
        if raw is None:
            raise error
        begin = self.tokenizer.text.find(raw, value_start)
        self.current = self.pull()
        return Expression(raw), (begin, begin + len(raw))

    def at_end_of(self, close: str | None) -> bool:
        if close is None:
            return self.current.kind == END
        return self.is_punct(close)

    def at_close(self, close: str | None, start: int) -> bool:
        if close is None:
            return self.current.kind == END
        if self.current.kind == END:
            raise self.fail(
                f"unterminated section: expected ']' for the '[' on line {start}", start
            )
        return self.is_punct(close)

    def name(self) -> Token:
        token = self.current
        if token.kind != WORD or _NAME.match(token.text) is None:
            raise self.fail(f"expected an attribute name, found {token.describe()}")
        return self.advance()

    def expect(self, char: str, context: str) -> Token:
        if not self.is_punct(char):
            raise self.fail(f"expected {char!r} {context}, found {self.current.describe()}")
        return self.advance()

    def value(self, depth: int) -> Any:
        token = self.current
        if depth >= MAX_DEPTH:
            raise self.out_of_range(f"lists and sections nested deeper than {MAX_DEPTH} levels")
        if token.kind == STRING:
            return self.advance().text
        if token.kind == WORD:
            return self.word_value(self.advance())
        if self.is_punct("{"):
            return self.list_value(depth + 1)
        if self.is_punct("["):
            return self.section_value(depth + 1)
        raise self.fail(f"expected a value, found {token.describe()}")

    def word_value(self, token: Token) -> Any:
        text = token.text
        if _INT.match(text):
            return self.integer(text, token.line)
        if _FLOAT.match(text):
            number = float(text)
            if not math.isfinite(number):
                raise self.out_of_range(f"number {text} is out of range", token.line)
            return number
        lowered = text.lower()
        if lowered in ("true", "false"):
            return lowered == "true"
        return Placeholder(text) if "%" in text else text

    def integer(self, text: str, line: int) -> int:
        if len(text) > 25:
            raise self.out_of_range(
                f"integer with {len(text)} digits is too long (64 bits at most)", line
            )
        number = int(text)
        if not INT64_MIN <= number <= INT64_MAX:
            raise self.out_of_range(
                f"integer {text} is out of range: integers must fit in 64 bits "
                f"({INT64_MIN}..{INT64_MAX})",
                line,
            )
        return number

    def list_value(self, depth: int) -> list[Any]:
        opening = self.advance()
        items: list[Any] = []
        if self.is_punct("}"):
            self.advance()
            return items
        while True:
            self.check_unterminated_list(opening)
            items.append(self.list_item(depth))
            self.check_unterminated_list(opening)
            separator = self.advance()
            if separator.kind == PUNCT and separator.text == "}":
                return items
            if separator.kind != PUNCT or separator.text != ",":
                raise self.fail(
                    f"expected ',' or '}}' in the list, found {separator.describe()}",
                    separator.line,
                )

    def list_item(self, depth: int) -> Any:
        """A value, or ``NAME=value`` written bare, as DIRAC's _toJDL writes an
        ExecutionEnvironment: ``{ MYVAR1=3, MYVAR2=test }`` holds the strings ``"MYVAR1=3"``..."""
        first = self.current
        value = self.value(depth)
        if first.kind != WORD or not self.is_punct("="):
            return value
        self.advance()
        assigned = self.current
        if assigned.kind not in (WORD, STRING):
            raise self.fail(f"expected a value after '{first.text}=', found {assigned.describe()}")
        return f"{first.text}={self.advance().text}"

    def check_unterminated_list(self, opening: Token) -> None:
        if self.current.kind == END:
            raise self.fail(
                f"unterminated list: expected '}}' for the '{{' on line {opening.line}",
                opening.line,
            )

    def section_value(self, depth: int) -> dict[str, Any]:
        opening = self.advance()
        section: dict[str, Any] = {}
        self.statements(section, {}, "]", opening.line, depth)
        self.advance()
        return section


def parse_jdl(text: str, max_chars: int = MAX_DESCRIPTION_CHARS) -> JdlDocument:
    """Parse a JDL document; raise :class:`InvalidJobDescription` saying what and where."""
    if not isinstance(text, str):
        raise InvalidJobDescription(f"JDL must be text, not {type(text).__name__}")
    if len(text) > max_chars:
        raise InvalidJobDescription(
            f"job description of {len(text)} characters is longer than the limit of {max_chars}"
        )
    return _Parser(text).document()


# --- writer ----------------------------------------------------------------------------------


def format_jdl(attributes: dict[str, Any]) -> str:
    """Write ``attributes`` as a JDL document inside a ``[ ]`` wrapper.

    Values may be str, int, float (finite), bool, Placeholder, Expression, lists/tuples of values
    and dicts (written as nested sections). ``parse_jdl(format_jdl(d)).attributes == d`` holds for
    such values when the names are valid and do not repeat case-insensitively, integers fit in 64
    bits and expressions are single-line ClassAd text; tuples come back as lists. Raises
    ``ValueError`` for an invalid name or a non-finite float, ``TypeError`` for other values.
    """
    body = _format_statements(attributes, indent=1)
    return "[\n" + body + "]\n"


def _format_statements(attributes: dict[str, Any], indent: int) -> str:
    pad = "    " * indent
    lines = []
    for name, value in attributes.items():
        if not isinstance(name, str) or _NAME.match(name) is None:
            raise ValueError(f"not a valid JDL attribute name: {name!r}")
        lines.append(f"{pad}{name} = {_format_value(value, indent)};\n")
    return "".join(lines)


def _format_value(value: Any, indent: int) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"JDL cannot express the float {value!r}")
        return repr(value)
    if isinstance(value, str):
        return _quote(value)
    if isinstance(value, Placeholder | Expression):
        return value.text
    if isinstance(value, list | tuple):
        if not value:
            return "{}"
        return "{ " + ", ".join(_format_value(item, indent) for item in value) + " }"
    if isinstance(value, dict):
        if not value:
            return "[]"
        return "[\n" + _format_statements(value, indent + 1) + "    " * indent + "]"
    raise TypeError(f"JDL cannot express a value of type {type(value).__name__}")


def _quote(text: str) -> str:
    return '"' + "".join(_UNESCAPES.get(char, char) for char in text) + '"'
