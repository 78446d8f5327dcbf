"""Parametric jobs with DIRAC's semantics (facts from DIRAC's ``ParametricJob.py``).

A description is parametric when it has ``Parameters`` (the unnamed vector). Its length N is the
count ``Parameters = N`` or the length of the list ``Parameters = { ... }``. Every vector has N
values:

* the unnamed vector: the listed values, or ``p[0] = start``, ``p[i] = p[i-1] * factor + step``
  from ``ParameterStart`` / ``ParameterStep`` / ``ParameterFactor`` with DIRAC's defaults start 1,
  step 0, factor 1 (so ``Parameters = 3; ParameterStart = 5;`` gives 5, 5, 5); values are floats
  as soon as step or factor is a float;
* a named vector X: the list ``Parameters.X = { ... }`` (it must be a list, of length N), or a
  sequence from ``ParameterStart.X`` / ``ParameterStep.X`` / ``ParameterFactor.X`` of length N.

Placeholders, replaced in every string of the description (any attribute, nested values too):
``%n`` the job's number zero-padded to the width of N-1, ``%s`` the unnamed vector's value,
``%(X)s`` vector X's value (X case-insensitive). A bare placeholder in value position
(``InputData = %(files)s;``, or a JSON string that is exactly one placeholder) takes the value
itself, so a list stays a list, and a list item that is such a placeholder is replaced by the
list's items. ``%(Y)s`` with no vector Y is left as written (with a warning), as DIRAC leaves it,
and so is every other ``%`` (``%j`` is the job id, replaced by the service once it is known).

Each job gains ``Parameter`` (``Parameter.X``) holding its value, a string for a scalar as DIRAC
writes it, and ``ParameterNumber``. Refused as DIRAC refuses: a count or list giving no job, a
``Parameters.X`` that is not a list, vectors of different lengths, a start/step/factor that is
not a number. Pure: no I/O.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dirac_like.attributes import DescriptionLimits, describe, invalid, is_integer
from dirac_like.jdl import INT64_MAX, INT64_MIN, Expression, JdlWarning, Placeholder

KINDS = ("Parameters", "ParameterStart", "ParameterStep", "ParameterFactor")
KIND_BY_LOWER = {kind.lower(): kind for kind in KINDS}
_DEFAULTS = {"ParameterStart": 1, "ParameterStep": 0, "ParameterFactor": 1}
_NUMBER = re.compile(r"\s*[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?\s*\Z")
_PLACEHOLDER = re.compile(r"%(?:\(([^)]*)\)s|([ns]))")
INDEX_KEY = " number"  # keys of the substitution mapping: a space is never in a vector name
UNNAMED_KEY = " unnamed"


@dataclass
class ParameterGroup:
    """One vector as written: ``Parameters[.X]`` and its start/step/factor."""

    name: str  # X as written; "" for the unnamed vector
    given: dict[str, tuple[Any, int | None]] = field(default_factory=dict)  # kind -> value, line

    def attribute(self, kind: str) -> str:
        return f"{kind}.{self.name}" if self.name else kind


@dataclass(frozen=True)
class Vector:
    key: str  # key in the substitution mapping
    attribute: str  # the attribute of an expanded job holding the value: Parameter[.X]
    values: list[Any]


def split_kind(name: str) -> tuple[str, str] | None:
    """(kind, vector name) for a parameter attribute name, else None."""
    head, dot, rest = name.partition(".")
    kind = KIND_BY_LOWER.get(head.lower())
    if kind is None or (dot and not rest):
        return None
    return kind, rest


# --- vectors ---------------------------------------------------------------------------------


def vectors(
    groups: dict[str, ParameterGroup], limits: DescriptionLimits, warnings: list[JdlWarning]
) -> list[Vector]:
    """Every vector of a parametric description (``groups[""]`` holds ``Parameters``)."""
    unnamed = groups[""]
    count = _count(unnamed, limits)
    result = [_vector(unnamed, count, warnings)]
    for key, group in groups.items():
        if key:
            result.append(_vector(group, count, warnings))
    return result


def _count(unnamed: ParameterGroup, limits: DescriptionLimits) -> int:
    value, line = unnamed.given["Parameters"]
    if isinstance(value, list):
        count = len(value)
    elif is_integer(value):
        count = int(value)
    else:
        message = f"Parameters must be a count or a list of values, found {describe(value)}"
        raise invalid(message, "Parameters", line)
    if count < 1:
        raise invalid(f"Parameters must give at least one job, found {count}", "Parameters", line)
    if count > limits.max_parametric_jobs:
        message = (
            f"Parameters would make {count} jobs, more than the limit of "
            f"{limits.max_parametric_jobs} {limits.parametric_limit_name}"
        )
        raise invalid(message, "Parameters", line)
    return count


def _vector(group: ParameterGroup, count: int, warnings: list[JdlWarning]) -> Vector:
    key = group.name.lower() if group.name else UNNAMED_KEY
    attribute = group.attribute("Parameter")
    if "Parameters" not in group.given:
        return Vector(key, attribute, _sequence(group, count))
    value, line = group.given["Parameters"]
    name = group.attribute("Parameters")
    if group.name and not isinstance(value, list):
        message = f"{name} must be a list of values (the number of jobs is set by Parameters)"
        raise invalid(message, name, line)
    if not isinstance(value, list):
        return Vector(key, attribute, _sequence(group, count))
    if len(value) != count:
        message = (
            f"{name} has {len(value)} values but Parameters gives {count} jobs: every "
            "parameter vector must have the same length"
        )
        raise invalid(message, name, line)
    for kind in KINDS[1:]:
        if kind in group.given:
            message = f"{group.attribute(kind)} is ignored: {name} lists its values"
            warnings.append(JdlWarning(message, group.attribute(kind), group.given[kind][1]))
    return Vector(key, attribute, [_plain(item) for item in value])


def _plain(value: Any) -> Any:
    if isinstance(value, Placeholder):
        return value.text
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value


def _sequence(group: ParameterGroup, count: int) -> list[Any]:
    start, step, factor = (_number(group, kind) for kind in KINDS[1:])
    first = start * type(factor)(1) + type(step)(0)  # DIRAC: the first value has their type
    values = [first]
    value = first
    for _ in range(count - 1):
        value = value * factor + step
        if not (math.isfinite(value) and INT64_MIN <= value <= INT64_MAX):
            name = group.attribute("ParameterStart")
            message = f"the values of {group.attribute('Parameter')} grow beyond 64 bits"
            raise invalid(message, name, group.given.get("ParameterStart", (0, None))[1])
        values.append(value)
    return values


def _number(group: ParameterGroup, kind: str) -> int | float:
    if kind not in group.given:
        return _DEFAULTS[kind]
    value, line = group.given[kind]
    if isinstance(value, str) and _NUMBER.match(value):
        value = int(value) if is_integer(value) else float(value)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        name = group.attribute(kind)
        raise invalid(f"{name} must be a number, found {describe(value)}", name, line)
    return value


# --- templates -------------------------------------------------------------------------------

Row = tuple[dict[str, str], dict[str, Any]]  # (texts, values) of one job
Render = Callable[[Row], Any]


def has_placeholder(value: Any) -> bool:
    if isinstance(value, str):
        return "%" in value
    if isinstance(value, Placeholder):
        return True
    if isinstance(value, list):
        return any(has_placeholder(item) for item in value)
    if isinstance(value, dict):
        return any(has_placeholder(item) for item in value.values())
    return False


class Compiler:
    """Turns a value holding placeholders into a function of one job's row."""

    def __init__(
        self,
        keys: set[str],
        bare_strings: bool,
        attribute: str,
        line: int | None,
        warnings: list[JdlWarning],
    ) -> None:
        self.keys = keys
        self.bare_strings = bare_strings  # JSON: a string that is one placeholder is bare
        self.attribute, self.line, self.warnings = attribute, line, warnings

    def compile(self, value: Any) -> Render:
        if isinstance(value, Placeholder) or (self.bare_strings and isinstance(value, str)):
            text = value.text if isinstance(value, Placeholder) else value
            exact = self.exact_key(text)
            if exact is not None:
                return lambda row: row[1][exact]
        if isinstance(value, Placeholder | str):
            text = value.text if isinstance(value, Placeholder) else value
            if "%" not in text:
                return lambda row: text
            template = self.format_string(text)
            return lambda row: template % row[0]
        if isinstance(value, list):
            return self.compile_list(value)
        if isinstance(value, dict):
            parts = {name: self.compile(item) for name, item in value.items()}
            return lambda row: {name: part(row) for name, part in parts.items()}
        constant = value.text if isinstance(value, Expression) else value
        return lambda row: constant

    def compile_list(self, items: list[Any]) -> Render:
        parts = [(self.spliced(item), self.compile(item)) for item in items]

        def render(row: Row) -> list[Any]:
            result: list[Any] = []
            for spliced, part in parts:
                value = part(row)
                if spliced and isinstance(value, list):
                    result.extend(value)
                else:
                    result.append(value)
            return result

        return render

    def spliced(self, item: Any) -> bool:
        bare = isinstance(item, Placeholder) or (self.bare_strings and isinstance(item, str))
        text = item.text if isinstance(item, Placeholder) else item
        return bare and self.exact_key(text) is not None

    def exact_key(self, text: str) -> str | None:
        match = _PLACEHOLDER.fullmatch(text)
        if match is None:
            return None
        key = self.key(match)
        return key if key != INDEX_KEY else None

    def key(self, match: re.Match[str]) -> str | None:
        named, code = match.group(1), match.group(2)
        if named is not None:
            return named.lower() if named.lower() in self.keys else None
        if code == "n":
            return INDEX_KEY
        return UNNAMED_KEY

    def format_string(self, text: str) -> str:
        """``text`` as a %-format over a row's texts; unknown placeholders stay as written."""
        pieces, last = [], 0
        for match in _PLACEHOLDER.finditer(text):
            pieces.append(text[last : match.start()].replace("%", "%%"))
            key = self.key(match)
            if key is None:
                self.warn_unknown(match.group(0))
                pieces.append(match.group(0).replace("%", "%%"))
            else:
                pieces.append(f"%({key})s")
            last = match.end()
        pieces.append(text[last:].replace("%", "%%"))
        return "".join(pieces)

    def warn_unknown(self, placeholder: str) -> None:
        name = placeholder[2:-2]
        message = (
            f"{self.attribute} uses {placeholder} but there is no Parameters.{name} or "
            f"ParameterStart.{name}: left as written"
        )
        self.warnings.append(JdlWarning(message, self.attribute, self.line))


def rows(vector_list: list[Vector]) -> list[Row]:
    """The substitution row of every job: texts for formats, values for bare placeholders."""
    count = len(vector_list[0].values)
    width = len(str(count - 1))
    result = []
    for number in range(count):
        texts = {INDEX_KEY: str(number).zfill(width)}
        values: dict[str, Any] = {}
        for vector in vector_list:
            value = vector.values[number]
            values[vector.key] = value
            kind = type(value)
            texts[vector.key] = (
                value
                if kind is str
                else str(value)
                if kind is int or kind is float
                else text_of(value)
            )
        result.append((texts, values))
    return result


def text_of(value: Any) -> str:
    """A parameter value as DIRAC writes it into a string."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "{" + ",".join(text_of(item) for item in value) + "}"
    return str(value)


def parameter_value(value: Any) -> Any:
    """What ``Parameter[.X]`` holds: a scalar as DIRAC's string, a list as it is."""
    return value if isinstance(value, list) else text_of(value)
