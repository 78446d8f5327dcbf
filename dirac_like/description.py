"""Job descriptions: JDL text or a mapping -> validated :class:`JobDescription` objects, as DIRAC
reads them (the attributes with a meaning and their checks are in :mod:`dirac_like.attributes`,
parametric expansion in :mod:`dirac_like.parametric`).

* Attribute names are matched case-insensitively; those with a meaning are stored with DIRAC's
  spelling. Any other attribute is kept as given (stored with the job, written back by
  :func:`to_jdl`); its name must be a JDL name and its value JDL-expressible, integers 64-bit.
* Attributes the server sets (Owner, OwnerGroup, OwnerDN, VirtualOrganization, JobID, Status,
  Parameter, ParameterNumber, ...) are dropped with a warning, as DIRAC drops them. An attribute
  given twice keeps its last value, with a warning.
* ``NumberOfProcessors = N`` means ``MinNumberOfProcessors = MaxNumberOfProcessors = N`` (and
  overrides them, with a warning); without it the job takes Min (default 1) to Max (default Min)
  cores, in steps of ``SmpGranularity``: the pilot grants as many as it can.
* Without ``Parameters`` a description is one job, nothing substituted; ``Parameters.X`` and the
  like are then ordinary attributes (kept, with a warning), as in DIRAC.
* ``%j`` in any string becomes the job's id once it is known (:func:`with_job_id`), as DIRAC's
  JobDB does.

Warnings come back with the jobs (:class:`ParsedDescriptions`) for the caller to show. The stored
``attributes`` also hold the effective JobType, Priority, CPUTime, processors, StdOutput and
StdError, defaults included, so a stored job does not depend on the limits in force when it is
read back. Lists in ``attributes`` may be shared between the jobs of one expansion: treat them
as read-only.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import gc
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import msgpack

from dirac_like import parametric
from dirac_like.attributes import (
    BY_LOWER,
    BY_NAME,
    CHECKED,
    LIST,
    SPECS,
    STRING,
    DescriptionLimits,
    Spec,
    check,
    describe,
    environment_variables,
    invalid,
    normalize,
)
from dirac_like.errors import InvalidJobDescription
from dirac_like.jdl import (
    _NAME,
    INT64_MAX,
    INT64_MIN,
    MAX_DEPTH,
    MAX_DESCRIPTION_CHARS,
    Expression,
    JdlWarning,
    Placeholder,
    format_jdl,
    parse_jdl,
)
from dirac_like.model import Requirements

__all__ = [
    "DescriptionLimits",
    "JdlWarning",
    "JobDescription",
    "ParsedDescriptions",
    "description_from_stored",
    "parse_descriptions",
    "parse_job_descriptions",
    "payload_environment",
    "to_jdl",
    "with_job_id",
]


@dataclass(frozen=True)
class JobDescription:
    attributes: dict[str, Any]  # what is stored and sent to a pilot (unknown attributes too)
    executable: str
    arguments: str
    job_name: str
    job_group: str
    job_type: str
    log_level: str
    priority: int  # 0..10
    cpu_time: int  # seconds
    sites: tuple[str, ...]  # () = any site
    banned_sites: tuple[str, ...]
    grid_ces: tuple[str, ...]  # () = any CE
    platforms: tuple[str, ...]
    tags: tuple[str, ...]
    number_of_processors: int  # the fewest cores the job runs on
    max_processors: int  # the most it can use (>= number_of_processors)
    smp_granularity: int  # cores beyond the fewest come in steps of this
    max_ram_mb: int  # 0 = not given
    execution_environment: tuple[str, ...]  # NAME=value
    input_sandbox: tuple[str, ...]
    output_sandbox: tuple[str, ...]
    std_input: str  # '' = none
    std_output: str
    std_error: str
    input_data: tuple[str, ...]
    input_data_policy: str
    output_data: tuple[str, ...]
    output_se: tuple[str, ...]
    output_path: str
    holds_job_id: bool  # some string holds %j, to become the job id (with_job_id)

    def requirements(self) -> Requirements:
        """What a pilot must offer; lists sorted and deduplicated so equal needs compare equal."""
        ranged = self.max_processors > self.number_of_processors
        as_given = Requirements(
            sites=self.sites,
            banned_sites=self.banned_sites,
            platforms=self.platforms,
            cores=self.number_of_processors,
            max_ram_mb=self.max_ram_mb,
            cpu_time=self.cpu_time,
            tags=self.tags,
            ces=self.grid_ces,
            max_cores=self.max_processors if ranged else 0,
            core_step=self.smp_granularity if ranged else 1,
        )
        return _canonical_requirements(as_given)


@dataclass(frozen=True)
class ParsedDescriptions:
    """The jobs of one description, and what the user should be told (ignored or overridden
    attributes, placeholders left as written), each warning once."""

    descriptions: list[JobDescription]
    warnings: list[JdlWarning]


@functools.lru_cache(maxsize=1024)
def _canonical_requirements(given: Requirements) -> Requirements:
    """Cached: the jobs of one expansion usually share their requirements."""
    return dataclasses.replace(
        given,
        sites=_sorted(given.sites),
        banned_sites=_sorted(given.banned_sites),
        platforms=_sorted(given.platforms),
        tags=_sorted(given.tags),
        ces=_sorted(given.ces),
    )


def _sorted(items: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(sorted(set(items)))


# Set by the service (DIRAC's credentials, ids, bookkeeping, expansion results): dropped from a
# submission with a warning; kept when a stored job is read back.
_SERVER_SET = {
    name.lower(): name
    for name in (
        "Owner", "OwnerGroup", "OwnerDN", "VirtualOrganization", "VO", "DIRACSetup", "JobID",
        "Status", "MinorStatus", "ApplicationStatus", "JobRequirements", "UserPriority",
        "SubmissionTime", "VerifiedFlag", "Parameter", "ParameterNumber", "ParameterIndex",
    )
}  # fmt: skip
_PROCESSORS = ("NumberOfProcessors", "MinNumberOfProcessors", "MaxNumberOfProcessors")
_ALWAYS_STORED = ("JobType", "Priority", "CPUTime", "StdOutput", "StdError")
DEFAULT_LIMITS = DescriptionLimits()
_UNLIMITED = DescriptionLimits(2**62, 2**62, 2**62, max_input_data=2**62, allowed_job_types=())
NO_LIMITS = _UNLIMITED  # to parse again what was accepted before (a submission resumed)


@dataclass
class _Collected:
    """A description's attributes sorted by what they are."""

    known: dict[str, Any]  # DIRAC spelling -> value as given
    unknown: dict[str, Any]  # name as written -> value as given
    lines: dict[str, int | None]
    groups: dict[str, parametric.ParameterGroup]  # lower-case vector name ("" unnamed)
    bare_strings: bool  # from a mapping: a string that is one placeholder is in value position


# --- public API ------------------------------------------------------------------------------


def parse_job_descriptions(
    source: str | Mapping[str, Any], limits: DescriptionLimits = DEFAULT_LIMITS
) -> ParsedDescriptions:
    """A JDL text or a JSON-style mapping -> one JobDescription, or N for a parametric job,
    with the warnings to show. Raises :class:`InvalidJobDescription` naming the attribute (and
    the line, for JDL)."""
    warnings: list[JdlWarning] = []
    collected = _collect(source, warnings, stored=False)
    parametric_job = "" in collected.groups and "Parameters" in collected.groups[""].given
    if not parametric_job:
        _keep_parameter_attributes(collected, warnings)
        jobs = [_single_job(collected, limits, warnings)]
    else:
        with _collector_paused():
            jobs = _expand(collected, limits, warnings)
    return ParsedDescriptions(jobs, _unique(warnings))


def parse_descriptions(
    source: str | Mapping[str, Any], limits: DescriptionLimits = DEFAULT_LIMITS
) -> list[JobDescription]:
    """The jobs of :func:`parse_job_descriptions`, without its warnings."""
    return parse_job_descriptions(source, limits).descriptions


def description_from_stored(attributes: Mapping[str, Any]) -> JobDescription:
    """Rebuild a job from its stored ``attributes``: no expansion, no upper limits on values;
    server-set attributes are kept."""
    warnings: list[JdlWarning] = []
    collected = _collect(attributes, warnings, stored=True)
    return _single_job(collected, _UNLIMITED, warnings)


def to_jdl(description: JobDescription) -> str:
    """The job's stored attributes as canonical JDL text (what ``job jdl`` shows): parsing it
    back gives the same description."""
    return format_jdl(description.attributes)


def with_job_id(description: JobDescription, job_id: int) -> JobDescription:
    """The description with ``%j`` replaced by ``job_id`` in every string (DIRAC's JobDB does
    this once the id is known); the same object when there is no ``%j``."""
    if not description.holds_job_id:
        return description
    replaced = {
        name: _replace_job_id(value, str(job_id)) for name, value in description.attributes.items()
    }
    return description_from_stored(replaced)


def payload_environment(description: Mapping[str, Any], cores: int) -> dict[str, str]:
    """The variables a payload gets from its description: ExecutionEnvironment, and
    DIRAC_JOB_PROCESSORS, the cores it was given."""
    entries = description.get("ExecutionEnvironment") or []
    listed = [str(entry) for entry in (entries if isinstance(entries, list) else [entries])]
    return {**environment_variables(listed), "DIRAC_JOB_PROCESSORS": str(cores)}


# --- reading and sorting attributes ----------------------------------------------------------


def _collect(source: Any, warnings: list[JdlWarning], stored: bool) -> _Collected:
    raw, lines, bare_strings = _read_source(source, warnings)
    collected = _Collected({}, {}, {}, {}, bare_strings)
    for name, value in raw.items():
        line = lines.get(name)
        _check_value(name, value, line, 0)
        spec = BY_LOWER.get(name.lower())
        if spec is not None:
            if spec.name in collected.known:
                message = f"{name} is given twice (as {spec.name} too): the last value is used"
                warnings.append(JdlWarning(message, name, line))
            collected.known[spec.name] = value
            collected.lines[spec.name] = line
        elif (server_set := _server_set_name(name)) is not None:
            if stored:
                collected.unknown[server_set] = value
            else:
                message = f"{name} is set by the server: the value given is ignored"
                warnings.append(JdlWarning(message, name, line))
        elif not stored and (kind := parametric.split_kind(name)) is not None:
            _add_parameter(collected, name, kind, value, line)
        else:
            _check_name(name, line)
            collected.unknown[name] = value
            collected.lines[name] = line
    return collected


def _read_source(
    source: Any, warnings: list[JdlWarning]
) -> tuple[dict[str, Any], dict[str, int], bool]:
    if isinstance(source, str):
        document = parse_jdl(source)
        warnings.extend(document.warnings)
        return document.attributes, document.lines, False
    if not isinstance(source, Mapping):
        kind = type(source).__name__
        raise invalid(f"a job description is JDL text or a mapping, not {kind}", None, None)
    if not source:
        raise invalid("empty job description: no attributes", None, None)
    kept: dict[str, Any] = {}
    by_lower: dict[str, str] = {}
    for name, value in source.items():
        if not isinstance(name, str):
            raise invalid(f"attribute names must be strings, found {name!r}", None, None)
        if (first := by_lower.get(name.lower())) is not None:
            message = f"{name} is given twice (first as {first}): the last value is used"
            warnings.append(JdlWarning(message, name, None))
            del kept[first]
        by_lower[name.lower()] = name
        kept[name] = value
    _check_size(kept)
    return kept, {}, True


def _check_size(attributes: dict[str, Any]) -> None:
    try:
        size = len(msgpack.packb(attributes, use_bin_type=True, default=repr))
    except (TypeError, ValueError, OverflowError):
        return  # _check_value names the attribute that cannot be stored
    if size > MAX_DESCRIPTION_CHARS:
        raise invalid(
            f"job description of {size} bytes is larger than the limit of {MAX_DESCRIPTION_CHARS}",
            None,
            None,
        )


def _check_value(name: str, value: Any, line: int | None, depth: int) -> None:
    """Only what JDL can write and the store can keep: 64-bit integers, finite floats."""
    if depth > MAX_DEPTH:
        raise invalid(
            f"{name}: lists and sections nested deeper than {MAX_DEPTH} levels", name, line
        )
    if isinstance(value, bool | str | Placeholder | Expression):
        return
    if isinstance(value, int):
        if not INT64_MIN <= value <= INT64_MAX:
            raise invalid(
                f"integer {value} is out of range: integers must fit in 64 bits", name, line
            )
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise invalid(f"number {value!r} is out of range", name, line)
    elif isinstance(value, list | tuple):
        for item in value:
            _check_value(name, item, line, depth + 1)
    elif isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str) or _NAME.match(key) is None:
                raise invalid(f"{name}: {key!r} is not a valid attribute name", name, line)
            _check_value(name, item, line, depth + 1)
    else:
        raise invalid(f"{name} cannot hold {describe(value)}", name, line)


def _check_name(name: str, line: int | None) -> None:
    if _NAME.match(name) is None:
        message = f"{name!r} is not a valid attribute name (letters, digits, _ and dots)"
        raise invalid(message, name, line)


def _server_set_name(name: str) -> str | None:
    lower = name.lower()
    if lower in _SERVER_SET:
        return _SERVER_SET[lower]
    if lower.startswith("parameter."):
        return "Parameter" + name[len("parameter") :]
    return None


def _add_parameter(
    collected: _Collected, name: str, kind: tuple[str, str], value: Any, line: int | None
) -> None:
    kind_name, vector = kind
    if vector and _NAME.match(vector) is None:
        raise invalid(f"invalid parameter name {vector!r} in {name}", name, line)
    group = collected.groups.setdefault(vector.lower(), parametric.ParameterGroup(vector))
    group.given[kind_name] = (value, line)
    collected.lines[group.attribute(kind_name)] = line


def _keep_parameter_attributes(collected: _Collected, warnings: list[JdlWarning]) -> None:
    """Without ``Parameters`` there is no expansion: DIRAC keeps the rest as they are."""
    for group in collected.groups.values():
        for kind, (value, line) in group.given.items():
            name = group.attribute(kind)
            message = f"{name} has no effect without Parameters: kept as an ordinary attribute"
            warnings.append(JdlWarning(message, name, line))
            collected.unknown[name] = value
    collected.groups.clear()


# --- one job ---------------------------------------------------------------------------------


def _single_job(
    collected: _Collected, limits: DescriptionLimits, warnings: list[JdlWarning]
) -> JobDescription:
    attributes = {name: _plain(value) for name, value in collected.known.items()}
    attributes.update((name, _plain(value)) for name, value in collected.unknown.items())
    fields = _fields(attributes, collected.lines, limits, warnings)
    return _new_job(fields)


def _plain(value: Any) -> Any:
    """A value as stored, with no expansion: placeholders are the strings they spell, and so
    are expressions (kept as text: nothing here evaluates them)."""
    if isinstance(value, Placeholder | Expression):
        return value.text
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {name: _plain(item) for name, item in value.items()}
    return value


def _fields(
    attributes: dict[str, Any],
    lines: Mapping[str, int | None],
    limits: DescriptionLimits,
    warnings: list[JdlWarning],
    need_executable: bool = True,
    check_sites: bool = True,
) -> dict[str, Any]:
    """JobDescription fields (``attributes``, checked in place, included)."""
    if need_executable and "Executable" not in attributes:
        raise invalid("Executable is required", "Executable", None)
    fields = {spec.field: spec.default for spec in SPECS if spec.field}
    fields["cpu_time"] = limits.default_cpu_time
    for name in list(attributes):
        spec = BY_NAME.get(name)
        if spec is not None:
            _set_known(
                spec, attributes[name], lines.get(name), attributes, fields, limits, warnings
            )
    _set_processors(attributes, lines, fields, warnings)
    for name in _ALWAYS_STORED:
        attributes.setdefault(name, fields[BY_NAME[name].field])
    if check_sites:
        _check_sites(fields, lines)
    fields["attributes"] = attributes
    fields["holds_job_id"] = _holds_job_id(attributes)
    return fields


def _set_known(
    spec: Spec,
    value: Any,
    line: int | None,
    attributes: dict[str, Any],
    fields: dict[str, Any],
    limits: DescriptionLimits,
    warnings: list[JdlWarning],
) -> None:
    if type(value) is str and spec.kind == STRING and spec.name not in CHECKED:
        attributes[spec.name] = fields[spec.field] = value  # the common case, made fast
        return
    stored = check(spec, normalize(spec, value, line), line, limits, warnings)
    attributes[spec.name] = stored
    if not spec.field:
        return
    if spec.kind == LIST:
        any_site = spec.name == "Site" and any(item.upper() == "ANY" for item in stored)
        fields[spec.field] = () if any_site else tuple(stored)
    else:
        fields[spec.field] = stored


def _set_processors(
    attributes: dict[str, Any],
    lines: Mapping[str, int | None],
    fields: dict[str, Any],
    warnings: list[JdlWarning],
) -> None:
    exact = attributes.get("NumberOfProcessors")
    if exact is not None:
        for name in _PROCESSORS[1:]:
            if attributes.pop(name, None) is not None:
                message = f"{name} is ignored: NumberOfProcessors is given"
                warnings.append(JdlWarning(message, name, lines.get(name)))
        low = high = exact
    else:
        low = attributes.get("MinNumberOfProcessors", 1)
        high = attributes.get("MaxNumberOfProcessors", low)
        if high < low:
            message = (
                f"MaxNumberOfProcessors ({high}) is smaller than MinNumberOfProcessors ({low})"
            )
            raise invalid(message, "MaxNumberOfProcessors", lines.get("MaxNumberOfProcessors"))
        if low == high and "MinNumberOfProcessors" not in attributes:
            attributes.pop("MaxNumberOfProcessors", None)
            attributes["NumberOfProcessors"] = low
    fields["number_of_processors"], fields["max_processors"] = low, high


def _check_sites(fields: dict[str, Any], lines: Mapping[str, int | None]) -> None:
    sites = fields["sites"]
    if sites and set(sites) <= set(fields["banned_sites"]):
        message = "every site in Site is banned by BannedSites: no site could run the job"
        raise invalid(message, "Site", lines.get("Site"))


def _new_job(fields: dict[str, Any]) -> JobDescription:
    """A JobDescription from complete, validated fields, without running __init__ (fast)."""
    job: JobDescription = object.__new__(JobDescription)
    job.__dict__.update(fields)
    return job


# --- parametric expansion --------------------------------------------------------------------


def _expand(
    collected: _Collected, limits: DescriptionLimits, warnings: list[JdlWarning]
) -> list[JobDescription]:
    vectors = parametric.vectors(collected.groups, limits, warnings)
    expansion = _Expansion(collected, vectors, limits, warnings)
    jobs = []
    for number, row in enumerate(parametric.rows(vectors)):
        try:
            jobs.append(expansion.job(number, row))
        except InvalidJobDescription as error:
            raise invalid(
                f"{error.detail}, in the job with ParameterNumber {number}",
                error.attribute,
                error.line,
            ) from None
    return jobs


class _Expansion:
    """One job per parameter value; only the attributes holding placeholders are recomputed
    (all of them when the processor attributes vary, as they depend on each other)."""

    def __init__(
        self,
        collected: _Collected,
        vectors: list[parametric.Vector],
        limits: DescriptionLimits,
        warnings: list[JdlWarning],
    ) -> None:
        self.vectors, self.lines = vectors, collected.lines
        self.limits, self.warnings = limits, warnings
        given = {**collected.known, **collected.unknown}
        if "Executable" not in given:
            raise invalid("Executable is required", "Executable", None)
        keys = {vector.key for vector in vectors}
        self.renders = {
            name: parametric.Compiler(
                keys, collected.bare_strings, name, self.lines.get(name), warnings
            ).compile(value)
            for name, value in given.items()
            if parametric.has_placeholder(value)
        }
        self.template = {
            name: _plain(value) for name, value in given.items() if name not in self.renders
        }
        self.varying = [BY_NAME[name] for name in self.renders if name in BY_NAME]
        self.steps = [  # (name, render, spec or None, a string with no check beyond its kind)
            (
                name,
                render,
                spec,
                spec is not None and spec.kind == STRING and spec.name not in CHECKED,
            )
            for name, render in self.renders.items()
            for spec in [BY_NAME.get(name)]
        ]
        self.sites_vary = any(spec.name in ("Site", "BannedSites") for spec in self.varying)
        # %j in a templated attribute's own text, or in a parameter value: checked per job
        self.may_hold_job_id = _holds_job_id([given[name] for name in self.renders]) or any(
            _holds_job_id(vector.values) for vector in vectors
        )
        self.base: dict[str, Any] | None = None
        if not any(spec.name in _PROCESSORS for spec in self.varying):
            self.base = _fields(
                dict(self.template),
                self.lines,
                limits,
                warnings,
                need_executable=False,
                check_sites=not self.sites_vary,
            )

    def job(self, number: int, row: parametric.Row) -> JobDescription:
        """Job ``number`` of the expansion: its fields made straight into its own ``__dict__``
        from the checked template's (one copy of them per job)."""
        base = self.base
        attributes = (self.template if base is None else base["attributes"]).copy()
        texts, values = row
        for vector in self.vectors:
            value = values[vector.key]  # Parameter[.X]: the text of a scalar, a list as it is
            attributes[vector.attribute] = value if isinstance(value, list) else texts[vector.key]
        attributes["ParameterNumber"] = number
        if base is None:
            attributes.update((name, render(row)) for name, render, _, _ in self.steps)
            return _new_job(_fields(attributes, self.lines, self.limits, self.warnings))
        job: JobDescription = object.__new__(JobDescription)
        fields = job.__dict__
        fields.update(base)
        fields["attributes"] = attributes
        for name, render, spec, plain_string in self.steps:
            value = render(row)
            if spec is None:
                attributes[name] = value
            elif plain_string and type(value) is str:
                attributes[name] = fields[spec.field] = value
            else:
                _set_known(
                    spec,
                    value,
                    self.lines.get(name),
                    attributes,
                    fields,
                    self.limits,
                    self.warnings,
                )
        if self.sites_vary:
            _check_sites(fields, self.lines)
        if self.may_hold_job_id:
            fields["holds_job_id"] = _holds_job_id(attributes)
        return job


def _holds_job_id(value: Any) -> bool:
    if isinstance(value, str | Placeholder):
        return "%j" in (value if isinstance(value, str) else value.text)
    if isinstance(value, list):  # (numbers, as a parameter sequence's, skipped at once)
        return any(_holds_job_id(item) for item in value if type(item) not in _NUMBERS)
    if isinstance(value, dict):
        return any(_holds_job_id(item) for item in value.values())
    return False


_NUMBERS = frozenset({int, float, bool})


def _replace_job_id(value: Any, job_id: str) -> Any:
    if isinstance(value, str):
        return value.replace("%j", job_id)
    if isinstance(value, list):
        return [_replace_job_id(item, job_id) for item in value]
    if isinstance(value, dict):
        return {name: _replace_job_id(item, job_id) for name, item in value.items()}
    return value


def _unique(warnings: list[JdlWarning]) -> list[JdlWarning]:
    return list(dict.fromkeys(warnings))


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
