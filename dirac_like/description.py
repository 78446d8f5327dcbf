"""Job descriptions: JDL text or a mapping -> validated :class:`JobDescription` objects.

Attribute names are matched case-insensitively and stored with DIRAC's spelling. A description is
validated once as a template; a parametric description is then expanded into one job per
parameter value by substituting placeholders in the string attributes only.

Parametric jobs (``Parameters`` present):

* ``Parameters = N`` (a count, 1..limits.max_parametric_jobs) makes the sequence
  ``p[0] = ParameterStart``, ``p[i] = p[i-1] * ParameterFactor + ParameterStep``. Defaults:
  start 0, factor 1, and step 1 when no ParameterFactor is given (an arithmetic sequence, so a
  bare ``Parameters = 5`` gives 0..4 and ``ParameterStart = 10`` alone gives 10..14), step 0 when
  a ParameterFactor is given (a geometric sequence). Values are ints when start, step and factor
  are all ints, floats otherwise.
* ``Parameters = { "a", "b" }`` gives the listed values (strings or numbers).
* ``Parameters.NAME`` (with its own ``ParameterStart.NAME`` ...) gives a named vector; every
  vector, named or not, must have the same length, and job ``i`` gets element ``i`` of each.

Placeholders, in every string attribute and string list item of a parametric description:
``%s`` the unnamed parameter value, ``%n`` the job's index (0-based), ``%(NAME)s`` the named
value (NAME case-insensitive), ``%%`` a literal ``%``; any other ``%`` is left as it is. A
description without ``Parameters`` is not substituted at all (``date +%s`` stays as written).
Integer attributes cannot hold placeholders. Each expanded job's attributes lose the
``Parameters*`` entries and gain ``ParameterIndex`` and ``Parameter`` / ``Parameter.NAME``.

Other choices: list attributes take a string or a list of strings (numbers are turned into
strings); items are stripped and empty ones dropped; ``Site = "ANY"`` (or any list holding ANY)
means any site. Integer attributes take an int or a string of digits (DIRAC JDLs often quote
numbers), never a bool or a float. The stored ``attributes`` also hold the effective JobType,
Priority, CPUTime, NumberOfProcessors, StdOutput and StdError, defaults included, so a stored
job does not depend on the limits in force when it is read back. Lists in ``attributes`` may be
shared between the jobs of one expansion: treat them as read-only.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import gc
import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from dirac_like.errors import InvalidJobDescription
from dirac_like.jdl import parse_jdl
from dirac_like.model import Requirements

__all__ = ["DescriptionLimits", "JobDescription", "description_from_stored", "parse_descriptions"]


@dataclass(frozen=True)
class DescriptionLimits:
    max_cpu_time: int = 30 * 24 * 3600  # seconds; CPUTime must be 1..max_cpu_time
    max_processors: int = 1024
    max_parametric_jobs: int = 100_000  # more expanded jobs from one description: error
    default_cpu_time: int = 86_400


@dataclass(frozen=True)
class JobDescription:
    attributes: dict[str, Any]  # canonical names -> values: what is stored and sent to a pilot
    executable: str
    arguments: str
    job_name: str
    job_group: str
    job_type: str
    priority: int  # 0..10
    cpu_time: int  # seconds
    sites: tuple[str, ...]  # () = any site
    banned_sites: tuple[str, ...]
    platforms: tuple[str, ...]
    tags: tuple[str, ...]
    number_of_processors: int
    max_ram_mb: int  # 0 = not given
    input_sandbox: tuple[str, ...]
    output_sandbox: tuple[str, ...]
    std_output: str
    std_error: str
    input_data: tuple[str, ...]
    output_data: tuple[str, ...]
    output_se: tuple[str, ...]

    def requirements(self) -> Requirements:
        """What a pilot must offer; lists sorted and deduplicated so equal needs compare equal."""
        as_given = Requirements(
            sites=self.sites,
            banned_sites=self.banned_sites,
            platforms=self.platforms,
            cores=self.number_of_processors,
            max_ram_mb=self.max_ram_mb,
            cpu_time=self.cpu_time,
            tags=self.tags,
        )
        return _canonical_requirements(as_given)


@functools.lru_cache(maxsize=1024)
def _canonical_requirements(given: Requirements) -> Requirements:
    """Cached: the jobs of one expansion usually share their requirements."""
    return dataclasses.replace(
        given,
        sites=_sorted(given.sites),
        banned_sites=_sorted(given.banned_sites),
        platforms=_sorted(given.platforms),
        tags=_sorted(given.tags),
    )


def _sorted(items: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(sorted(set(items)))


# --- the attributes --------------------------------------------------------------------------

STRING = "string"
INTEGER = "integer"
LIST = "list"


@dataclass(frozen=True)
class _Spec:
    name: str  # DIRAC's spelling
    kind: str
    field: str  # JobDescription field
    default: Any  # field value when the attribute is not given (CPUTime: from the limits)


_SPECS = (
    _Spec("Executable", STRING, "executable", None),
    _Spec("Arguments", STRING, "arguments", ""),
    _Spec("JobName", STRING, "job_name", ""),
    _Spec("JobGroup", STRING, "job_group", ""),
    _Spec("JobType", STRING, "job_type", "User"),
    _Spec("Priority", INTEGER, "priority", 1),
    _Spec("CPUTime", INTEGER, "cpu_time", None),
    _Spec("Site", LIST, "sites", ()),
    _Spec("BannedSites", LIST, "banned_sites", ()),
    _Spec("Platform", LIST, "platforms", ()),
    _Spec("Tags", LIST, "tags", ()),
    _Spec("NumberOfProcessors", INTEGER, "number_of_processors", 1),
    _Spec("MaxRAM", INTEGER, "max_ram_mb", 0),
    _Spec("InputSandbox", LIST, "input_sandbox", ()),
    _Spec("OutputSandbox", LIST, "output_sandbox", ()),
    _Spec("StdOutput", STRING, "std_output", "std.out"),
    _Spec("StdError", STRING, "std_error", "std.err"),
    _Spec("InputData", LIST, "input_data", ()),
    _Spec("OutputData", LIST, "output_data", ()),
    _Spec("OutputSE", LIST, "output_se", ()),
)
_BY_NAME = {spec.name: spec for spec in _SPECS}
_BY_LOWER = {spec.name.lower(): spec for spec in _SPECS}
_BY_LOWER["bannedsite"] = _BY_NAME["BannedSites"]
_BY_LOWER["tag"] = _BY_NAME["Tags"]
# Written to the stored attributes even when not given, with their effective value.
_ALWAYS_STORED = ("JobType", "Priority", "CPUTime", "NumberOfProcessors", "StdOutput", "StdError")

_SERVER_SET = {name.lower(): name for name in ("Owner", "OwnerGroup", "JobID", "Status")}
_PARAMETER_KINDS = {
    name.lower(): name
    for name in ("Parameters", "ParameterStart", "ParameterStep", "ParameterFactor")
}
_PARAMETER_NAME = re.compile(r"[A-Za-z0-9_]+\Z")
_DIGITS = re.compile(r"\s*[+-]?[0-9]{1,18}\s*\Z")
_UNLIMITED = DescriptionLimits(2**62, 2**62, 2**62)


@dataclass
class _Parameter:
    """One parameter vector as written: ``Parameters[.NAME]`` and its start/step/factor."""

    name: str  # NAME as written; "" for the unnamed vector
    given: dict[str, tuple[Any, int | None]]  # "Parameters", "ParameterStart"... -> (value, line)

    def attribute(self, kind: str) -> str:
        return f"{kind}.{self.name}" if self.name else kind


@dataclass
class _Collected:
    attributes: dict[str, Any]  # canonical name -> normalized value
    lines: dict[str, int | None]
    parameters: dict[str, _Parameter]  # lower-case NAME ("" unnamed) -> vector


def _invalid(message: str, attribute: str | None, line: int | None) -> InvalidJobDescription:
    return InvalidJobDescription(message, attribute=attribute, line=line)


# --- public API ------------------------------------------------------------------------------


def parse_descriptions(
    source: str | Mapping[str, Any], limits: DescriptionLimits = DescriptionLimits()
) -> list[JobDescription]:
    """A JDL text or a JSON-style mapping -> one JobDescription, or N for a parametric job.

    Raises :class:`InvalidJobDescription` naming the attribute (and the line, for JDL).
    """
    raw, lines = _read_source(source)
    collected = _collect(raw, lines, stored=False)
    fields = _build_fields(collected, limits)
    if not collected.parameters:
        _check_sites(fields, collected.lines)
        return [_new_job(fields)]
    vectors = _parameter_vectors(collected, limits)
    templates = _templated_attributes(collected, {vector.key for vector in vectors})
    sites_vary = any(template.spec.name in ("Site", "BannedSites") for template in templates)
    if not sites_vary:
        _check_sites(fields, collected.lines)
    with _collector_paused():
        return _expand(fields, vectors, templates, collected.lines if sites_vary else None)


def description_from_stored(attributes: Mapping[str, Any]) -> JobDescription:
    """Rebuild a job from its stored ``attributes``: no expansion, no upper limits on values.

    Accepts the server-set attributes (Owner, OwnerGroup, JobID, Status) and those an expansion
    adds (ParameterIndex, Parameter, Parameter.NAME), but not ``Parameters*``.
    """
    raw, lines = _read_source(attributes)
    collected = _collect(raw, lines, stored=True)
    fields = _build_fields(collected, _UNLIMITED)
    _check_sites(fields, collected.lines)
    return _new_job(fields)


# --- reading and sorting attributes ----------------------------------------------------------


def _read_source(source: Any) -> tuple[dict[str, Any], dict[str, int]]:
    if isinstance(source, str):
        document = parse_jdl(source)
        return document.attributes, document.lines
    if not isinstance(source, Mapping):
        kind = type(source).__name__
        raise _invalid(f"a job description is JDL text or a mapping, not {kind}", None, None)
    for name in source:
        if not isinstance(name, str):
            raise _invalid(f"attribute names must be strings, found {name!r}", None, None)
    if not source:
        raise _invalid("empty job description: no attributes", None, None)
    return dict(source), {}


def _collect(raw: dict[str, Any], lines: dict[str, int], stored: bool) -> _Collected:
    collected = _Collected({}, {}, {})
    seen: dict[str, str] = {}  # lower-case canonical name -> name as written
    for name, value in raw.items():
        line = lines.get(name)
        canonical = _canonical_name(name, line, stored)
        if (first := seen.get(canonical.lower())) is not None:
            raise _invalid(f"{canonical} given twice (as {first} and {name})", name, line)
        seen[canonical.lower()] = name
        if canonical.partition(".")[0] in _PARAMETER_KINDS.values():
            _add_parameter(collected, canonical, value, line)
        else:
            collected.attributes[canonical] = _normalize(canonical, value, line)
            collected.lines[canonical] = line
    return collected


def _canonical_name(name: str, line: int | None, stored: bool) -> str:
    lower = name.lower()
    head = lower.partition(".")[0]
    if lower in _BY_LOWER:
        return _BY_LOWER[lower].name
    server_set = _server_set_name(name)
    if server_set is not None:
        if stored:
            return server_set
        raise _invalid(f"{name} is set by the server and cannot be submitted", name, line)
    if head not in _PARAMETER_KINDS:
        raise _invalid(f"unknown attribute {name}", name, line)
    if stored:
        raise _invalid(f"{name} cannot be in a stored job: stored jobs are expanded", name, line)
    suffix = name[len(head) :]
    if suffix and _PARAMETER_NAME.match(suffix[1:]) is None:
        message = f"invalid parameter name {suffix[1:]!r} in {name}: use letters, digits and _"
        raise _invalid(message, name, line)
    return _PARAMETER_KINDS[head] + suffix


def _server_set_name(name: str) -> str | None:
    """DIRAC's spelling of a server-set attribute (expansion results included), else None."""
    lower = name.lower()
    if lower in _SERVER_SET:
        return _SERVER_SET[lower]
    if lower == "parameterindex":
        return "ParameterIndex"
    if lower == "parameter" or lower.startswith("parameter."):
        return "Parameter" + name[len("parameter") :]
    return None


def _add_parameter(collected: _Collected, canonical: str, value: Any, line: int | None) -> None:
    kind, _, name = canonical.partition(".")
    parameter = collected.parameters.setdefault(name.lower(), _Parameter(name, {}))
    if kind == "Parameters":
        parameter.name = name
    parameter.given[kind] = (value, line)


def _normalize(canonical: str, value: Any, line: int | None) -> Any:
    spec = _BY_NAME.get(canonical)
    if spec is None:  # server-set or expansion attribute of a stored job: kept as it is
        return value
    if spec.kind == STRING:
        return _to_string(canonical, value, line)
    if spec.kind == INTEGER:
        return _to_integer(canonical, value, line)
    items = value if isinstance(value, list | tuple) else [value]
    return _clean_items([_to_string(canonical, item, line) for item in items])


def _to_string(name: str, value: Any, line: int | None) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    expected = "strings" if _BY_NAME[name].kind == LIST else "a string"
    raise _invalid(f"{name} must be {expected}, found {_describe(value)}", name, line)


def _is_integer(value: Any) -> bool:
    if isinstance(value, str):
        return _DIGITS.match(value) is not None
    return isinstance(value, int) and not isinstance(value, bool)


def _to_integer(name: str, value: Any, line: int | None) -> int:
    if not _is_integer(value):
        raise _invalid(f"{name} must be an integer, found {_describe(value)}", name, line)
    return int(value)


def _describe(value: Any) -> str:
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, str):
        return f"string {value!r}"
    if isinstance(value, int | float):
        return f"number {value!r}"
    if isinstance(value, list | tuple):
        return "a list"
    return "a section" if isinstance(value, dict) else type(value).__name__


def _clean_items(items: list[str]) -> list[str]:
    return [stripped for item in items if (stripped := item.strip())]


# --- the template's fields -------------------------------------------------------------------


def _build_fields(collected: _Collected, limits: DescriptionLimits) -> dict[str, Any]:
    """JobDescription fields (``attributes`` included) of the validated, unexpanded template."""
    attributes, lines = collected.attributes, collected.lines
    if "Executable" not in attributes:
        raise _invalid("Executable is required", "Executable", None)
    fields = {spec.field: spec.default for spec in _SPECS}
    fields["cpu_time"] = limits.default_cpu_time
    for name, value in attributes.items():
        spec = _BY_NAME.get(name)
        if spec is not None:
            fields[spec.field] = _field_value(spec, value, lines.get(name), limits)
    for name in _ALWAYS_STORED:
        attributes.setdefault(name, fields[_BY_NAME[name].field])
    fields["attributes"] = attributes
    return fields


def _field_value(spec: _Spec, value: Any, line: int | None, limits: DescriptionLimits) -> Any:
    if spec.kind == INTEGER:
        _check_range(spec.name, value, line, limits)
        return value
    if spec.kind == LIST:
        return _list_field(spec, value)
    if spec.name == "Executable" and not value.strip():
        raise _invalid("Executable must not be empty", "Executable", line)
    return value


def _list_field(spec: _Spec, items: list[str]) -> tuple[str, ...]:
    if spec.name == "Site" and any(item.upper() == "ANY" for item in items):
        return ()
    return tuple(items)


MAX_RAM_MB = 2**40  # a petabyte: more than any node; keeps the value a 64-bit integer


def _check_range(name: str, value: int, line: int | None, limits: DescriptionLimits) -> None:
    low, high = {
        "Priority": (0, 10),
        "CPUTime": (1, limits.max_cpu_time),
        "NumberOfProcessors": (1, limits.max_processors),
        "MaxRAM": (1, MAX_RAM_MB),
    }[name]
    if value < low or (high is not None and value > high):
        bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise _invalid(f"{name} must be {bounds}, found {value}", name, line)


def _check_sites(fields: dict[str, Any], lines: Mapping[str, int | None]) -> None:
    sites = fields["sites"]
    if sites and set(sites) <= set(fields["banned_sites"]):
        message = "every site in Site is banned by BannedSites: no site could run the job"
        raise _invalid(message, "Site", lines.get("Site"))


def _new_job(fields: dict[str, Any]) -> JobDescription:
    """A JobDescription from complete, validated fields, without running __init__ (fast)."""
    job: JobDescription = object.__new__(JobDescription)
    job.__dict__.update(fields)
    return job


# --- parameter vectors -----------------------------------------------------------------------

_VALUE_KEY = " value"  # mapping keys for %s and %n: a space never occurs in a parameter name
_INDEX_KEY = " index"


@dataclass(frozen=True)
class _Vector:
    key: str  # key in the substitution mapping
    attribute: str  # attribute of an expanded job holding the value: Parameter[.NAME]
    values: list[Any]


def _parameter_vectors(collected: _Collected, limits: DescriptionLimits) -> list[_Vector]:
    parameters = list(collected.parameters.values())
    vectors = [_vector(parameter, limits) for parameter in parameters]
    expected = len(vectors[0].values)
    for vector, parameter in zip(vectors, parameters, strict=True):
        if len(vector.values) != expected:
            name = parameter.attribute("Parameters")
            message = (
                f"{name} has {len(vector.values)} values but "
                f"{parameters[0].attribute('Parameters')} has {expected}: all parameter "
                "vectors must have the same length"
            )
            raise _invalid(message, name, parameter.given["Parameters"][1])
    return vectors


def _vector(parameter: _Parameter, limits: DescriptionLimits) -> _Vector:
    name = parameter.attribute("Parameters")
    if "Parameters" not in parameter.given:
        kind = next(iter(parameter.given))
        attribute, line = parameter.attribute(kind), parameter.given[kind][1]
        raise _invalid(f"{attribute} is given without {name}", attribute, line)
    value, line = parameter.given["Parameters"]
    if isinstance(value, list | tuple):
        values = _listed_values(parameter, list(value), line, limits)
    elif _is_integer(value):
        values = _sequence(parameter, _to_count(name, int(value), line, limits))
    else:
        message = f"{name} must be a count or a list of values, found {_describe(value)}"
        raise _invalid(message, name, line)
    key = parameter.name.lower() if parameter.name else _VALUE_KEY
    return _Vector(key, parameter.attribute("Parameter"), values)


def _listed_values(
    parameter: _Parameter, values: list[Any], line: int | None, limits: DescriptionLimits
) -> list[Any]:
    name = parameter.attribute("Parameters")
    for kind in ("ParameterStart", "ParameterStep", "ParameterFactor"):
        if kind in parameter.given:
            attribute = parameter.attribute(kind)
            message = f"{attribute} only applies when {name} is a count"
            raise _invalid(message, attribute, parameter.given[kind][1])
    _to_count(name, len(values), line, limits)
    for item in values:
        if isinstance(item, bool) or not isinstance(item, str | int | float):
            message = f"{name} values must be strings or numbers, found {_describe(item)}"
            raise _invalid(message, name, line)
    return values


def _to_count(name: str, count: int, line: int | None, limits: DescriptionLimits) -> int:
    if count < 1:
        raise _invalid(f"{name} must give at least one value, found {count}", name, line)
    if count > limits.max_parametric_jobs:
        message = (
            f"{name} would make {count} jobs, more than the limit of "
            f"{limits.max_parametric_jobs} per description"
        )
        raise _invalid(message, name, line)
    return count


def _sequence(parameter: _Parameter, count: int) -> list[Any]:
    """``p[0] = start, p[i] = p[i-1] * factor + step`` (defaults in the module docstring)."""
    start = _number(parameter, "ParameterStart", 0)
    factor = _number(parameter, "ParameterFactor", 1)
    step = _number(parameter, "ParameterStep", 0 if "ParameterFactor" in parameter.given else 1)
    if isinstance(start, int) and any(isinstance(number, float) for number in (step, factor)):
        start = float(start)
    values = [start]
    value, limit = start, 2**63
    for _ in range(count - 1):
        value = value * factor + step
        if not -limit < value < limit:  # also catches inf and nan
            name = parameter.attribute("Parameters")
            message = f"{name}: the parameter values grow beyond {limit}"
            raise _invalid(message, name, parameter.given["Parameters"][1])
        values.append(value)
    return values


def _number(parameter: _Parameter, kind: str, default: int) -> int | float:
    if kind not in parameter.given:
        return default
    value, line = parameter.given[kind]
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        name = parameter.attribute(kind)
        raise _invalid(f"{name} must be a number, found {_describe(value)}", name, line)
    return value


# --- placeholders and expansion --------------------------------------------------------------

_PLACEHOLDER = re.compile(r"%(?:\(([^)]*)\)s|([sn%]))?")


@dataclass(frozen=True)
class _Template:
    """A string attribute, or a list attribute, holding placeholders."""

    spec: _Spec
    parts: tuple[tuple[str | None, str], ...]  # (%-format or None when no '%', item as given)
    line: int | None


def _templated_attributes(collected: _Collected, keys: set[str]) -> list[_Template]:
    templates = []
    for name, value in collected.attributes.items():
        spec = _BY_NAME.get(name)
        if spec is None or spec.kind == INTEGER:
            continue
        items = value if spec.kind == LIST else [value]
        if any("%" in item for item in items):
            line = collected.lines.get(name)
            parts = tuple(
                (_compile(item, keys, name, line) if "%" in item else None, item) for item in items
            )
            templates.append(_Template(spec, parts, line))
    return templates


def _compile(text: str, keys: set[str], attribute: str, line: int | None) -> str:
    """``text`` as a %-format string over the substitution mapping; checks placeholder names."""

    def replace(match: re.Match[str]) -> str:
        named, code = match.group(1), match.group(2)
        if named is not None:
            if named.lower() not in keys:
                message = f"{attribute} uses %({named})s but there is no Parameters.{named}"
                raise _invalid(message, attribute, line)
            return f"%({named.lower()})s"
        if code == "s":
            if _VALUE_KEY not in keys:
                message = f"{attribute} uses %s but there is no unnamed Parameters"
                raise _invalid(message, attribute, line)
            return f"%({_VALUE_KEY})s"
        return f"%({_INDEX_KEY})s" if code == "n" else "%%"

    return _PLACEHOLDER.sub(replace, text)


def _expand(
    fields: dict[str, Any],
    vectors: list[_Vector],
    templates: list[_Template],
    site_lines: dict[str, int | None] | None,
) -> list[JobDescription]:
    """One job per parameter index; only templated attributes are recomputed per job.

    ``site_lines``: the attribute lines when Site or BannedSites vary, to check them per job.
    """
    base_attributes: dict[str, Any] = fields["attributes"]
    columns = [(vector.key, vector.attribute, vector.values) for vector in vectors]
    mapping: dict[str, Any] = {}  # reused: a job's strings are formatted before the next job
    jobs = []
    new = object.__new__
    for index in range(len(vectors[0].values)):
        mapping[_INDEX_KEY] = index
        attributes = base_attributes.copy()
        attributes["ParameterIndex"] = index
        for key, attribute, values in columns:
            mapping[key] = attributes[attribute] = values[index]
        job = new(JobDescription)
        job_fields = job.__dict__  # filled directly: no __init__, no re-validation
        job_fields.update(fields)
        job_fields["attributes"] = attributes
        for template in templates:
            _substitute(template, mapping, attributes, job_fields)
        if site_lines is not None:
            _check_sites(job_fields, site_lines)
        jobs.append(job)
    return jobs


def _substitute(
    template: _Template, mapping: dict[str, Any], attributes: dict[str, Any], fields: Any
) -> None:
    spec = template.spec
    if spec.kind == STRING:
        text = (template.parts[0][0] or "") % mapping
        if spec.name == "Executable" and not text.strip():
            index = mapping[_INDEX_KEY]
            message = f"Executable is empty for parameter index {index}"
            raise _invalid(message, spec.name, template.line)
        attributes[spec.name] = fields[spec.field] = text
        return
    items = []
    for fmt, item in template.parts:
        if fmt is None:
            items.append(item)
        elif text := (fmt % mapping).strip():
            items.append(text)
    attributes[spec.name] = items
    fields[spec.field] = _list_field(spec, items)


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while building many acyclic objects.

    An expansion allocates a few containers per job; with the collector on, 100,000 jobs trigger
    repeated full collections over every live object (most of the cost, and more the bigger the
    service's heap). Nothing built here forms a cycle, so nothing is lost by deferring.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
