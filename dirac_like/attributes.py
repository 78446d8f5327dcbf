"""The attributes of a job description that have a meaning: DIRAC's names, kinds, defaults, and
the checks on their values (facts from DIRAC's ``JobModel``, ``JobManifest`` and ``JDL.py``).

Kinds: a *string* takes a string or a number (made a string), or a one-item list (DIRAC's docs
write ``OutputPath = {"/myjobs/output"}``); an *integer* takes an int or a quoted one (``"3600"``),
never a bool or a float; a *list* takes a list of strings/numbers or one string, which is split
at commas as DIRAC's ``getListFromExpression`` does (items stripped, empty ones dropped).

Checks beyond the kind, with DIRAC's outcome (its JobManager validates every job with its
JobDescriptionModel before storing any): CPUTime, Priority, NumberOfProcessors,
Min/MaxNumberOfProcessors, SmpGranularity and MaxRAM out of range are refused; JobType must be
allowed; LogLevel is one of DIRAC's levels (any case); StdOutput/StdError/StdInput are plain
file names; InputData entries are LFNs (``/vo/f`` becomes ``LFN:/vo/f``, no ``//``, at most
``max_input_data``); ``LFN:`` entries of InputSandbox start ``LFN:/``; ExecutionEnvironment
entries are ``NAME=value``.

Pure: values in, values out; warnings are appended to the list the caller passes.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dirac_like.errors import InvalidJobDescription
from dirac_like.jdl import Expression, JdlWarning, Placeholder

STRING = "string"
INTEGER = "integer"
LIST = "list"

MAX_RAM_MB = 2**40  # a petabyte: more than any node; keeps the value a 64-bit integer
LOG_LEVELS = ("DEBUG", "VERBOSE", "INFO", "WARN", "WARNING", "NOTICE", "ERROR", "FATAL", "ALWAYS")
# DIRAC's default AllowedJobTypes plus the data-processing types of its default configuration.
DEFAULT_JOB_TYPES = (
    "User", "Test", "Hospital",
    "MCSimulation", "MCReconstruction", "DataReconstruction", "DataStripping", "MCStripping",
    "Merge",
)  # fmt: skip


@dataclass(frozen=True)
class DescriptionLimits:
    max_cpu_time: int = 30 * 24 * 3600  # seconds; CPUTime must be 1..max_cpu_time
    max_processors: int = 1024
    max_parametric_jobs: int = 100_000  # more expanded jobs from one description: error
    # how an error names that limit (the service lowers it to what is left of a request's)
    parametric_limit_name: str = "per description"
    default_cpu_time: int = 86_400
    max_input_data: int = 500  # InputData files per job (DIRAC's MaxInputData)
    allowed_job_types: tuple[str, ...] = DEFAULT_JOB_TYPES  # () = any name


@dataclass(frozen=True)
class Spec:
    name: str  # DIRAC's spelling
    kind: str
    field: str  # JobDescription field ('' for the processor attributes, combined later)
    default: Any  # field value when the attribute is not given (CPUTime: from the limits)


SPECS = (
    Spec("Executable", STRING, "executable", None),
    Spec("Arguments", STRING, "arguments", ""),
    Spec("JobName", STRING, "job_name", ""),
    Spec("JobGroup", STRING, "job_group", ""),
    Spec("JobType", STRING, "job_type", "User"),
    Spec("LogLevel", STRING, "log_level", "INFO"),
    Spec("Priority", INTEGER, "priority", 1),
    Spec("CPUTime", INTEGER, "cpu_time", None),
    Spec("Site", LIST, "sites", ()),
    Spec("BannedSites", LIST, "banned_sites", ()),
    Spec("GridCE", LIST, "grid_ces", ()),
    Spec("Platform", LIST, "platforms", ()),
    Spec("Tags", LIST, "tags", ()),
    Spec("NumberOfProcessors", INTEGER, "", None),
    Spec("MinNumberOfProcessors", INTEGER, "", None),
    Spec("MaxNumberOfProcessors", INTEGER, "", None),
    Spec("SmpGranularity", INTEGER, "smp_granularity", 1),
    Spec("MaxRAM", INTEGER, "max_ram_mb", 0),
    Spec("ExecutionEnvironment", LIST, "execution_environment", ()),
    Spec("InputSandbox", LIST, "input_sandbox", ()),
    Spec("OutputSandbox", LIST, "output_sandbox", ()),
    Spec("StdInput", STRING, "std_input", ""),
    Spec("StdOutput", STRING, "std_output", "std.out"),
    Spec("StdError", STRING, "std_error", "std.err"),
    Spec("InputData", LIST, "input_data", ()),
    Spec("InputDataPolicy", STRING, "input_data_policy", ""),
    Spec("OutputData", LIST, "output_data", ()),
    Spec("OutputSE", LIST, "output_se", ()),
    Spec("OutputPath", STRING, "output_path", ""),
)
BY_NAME = {spec.name: spec for spec in SPECS}
BY_LOWER = {spec.name.lower(): spec for spec in SPECS}
BY_LOWER["bannedsite"] = BY_NAME["BannedSites"]
BY_LOWER["tag"] = BY_NAME["Tags"]

_ENVIRONMENT_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_DIGITS = re.compile(r"\s*[+-]?[0-9]{1,18}\s*\Z")


def invalid(message: str, attribute: str | None, line: int | None) -> InvalidJobDescription:
    return InvalidJobDescription(message, attribute=attribute, line=line)


def describe(value: Any) -> str:
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, str):
        return f"string {value!r}"
    if isinstance(value, int | float):
        return f"number {value!r}"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, Expression):
        return f"expression {value.text!r}"
    return "a section" if isinstance(value, dict) else type(value).__name__


# --- kinds -----------------------------------------------------------------------------------


def normalize(spec: Spec, value: Any, line: int | None) -> Any:
    """The value in its kind: str, int, or list of str (see the module docstring)."""
    if isinstance(value, Placeholder):
        value = value.text
    if spec.kind == STRING:
        if isinstance(value, list | tuple) and len(value) == 1:
            value = value[0]
        return to_string(spec.name, value, line)
    if spec.kind == INTEGER:
        return to_integer(spec.name, value, line)
    if type(value) is list and all(type(item) is str for item in value):
        return [stripped for item in value if (stripped := item.strip())]  # fast: all strings
    if isinstance(value, str):
        items: list[Any] = value.split(",")
    else:
        items = list(value) if isinstance(value, list | tuple) else [value]
    strings = [to_string(spec.name, item, line, "strings") for item in items]
    return [stripped for item in strings if (stripped := item.strip())]


def to_string(name: str, value: Any, line: int | None, expected: str = "a string") -> str:
    if isinstance(value, Placeholder):
        return value.text
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    raise invalid(f"{name} must be {expected}, found {describe(value)}", name, line)


def is_integer(value: Any) -> bool:
    if isinstance(value, str):
        return _DIGITS.match(value) is not None
    return isinstance(value, int) and not isinstance(value, bool)


def to_integer(name: str, value: Any, line: int | None) -> int:
    if not is_integer(value):
        raise invalid(f"{name} must be an integer, found {describe(value)}", name, line)
    return int(value)


# --- checks beyond the kind ------------------------------------------------------------------

Check = Callable[[Any, int | None, DescriptionLimits, list[JdlWarning]], Any]


def check(
    spec: Spec, value: Any, line: int | None, limits: DescriptionLimits, warnings: list[JdlWarning]
) -> Any:
    """The normalized ``value`` after the attribute's own checks (maybe changed:
    upper-cased, LFN-prefixed)."""
    checker = _CHECKS.get(spec.name)
    return value if checker is None else checker(value, line, limits, warnings)


def _cpu_time(
    value: int, line: int | None, limits: DescriptionLimits, warnings: list[JdlWarning]
) -> int:
    return _in_range("CPUTime", 1, limits.max_cpu_time)(value, line, limits, warnings)


def _in_range(name: str, low: int, high: int | None) -> Check:
    def within(value: int, line: int | None, limits: DescriptionLimits, _: list[JdlWarning]) -> int:
        top = limits.max_processors if high is None else high
        if not low <= value <= top:
            raise invalid(f"{name} must be between {low} and {top}, found {value}", name, line)
        return value

    return within


def _executable(value: str, line: int | None, *_: Any) -> str:
    if not value.strip():
        raise invalid("Executable must not be empty", "Executable", line)
    return value


def _job_type(value: str, line: int | None, limits: DescriptionLimits, *_: Any) -> str:
    allowed = limits.allowed_job_types
    if allowed and value not in allowed:
        raise invalid(
            f"JobType {value!r} is not allowed (allowed: {', '.join(allowed)})", "JobType", line
        )
    return value


def _log_level(value: str, line: int | None, *_: Any) -> str:
    level = value.strip().upper()
    if level not in LOG_LEVELS:
        raise invalid(f"LogLevel {value!r} is not one of {', '.join(LOG_LEVELS)}", "LogLevel", line)
    return level


def _file_name(name: str, optional: bool = False) -> Check:
    def plain(value: str, line: int | None, *_: Any) -> str:
        if optional and value == "":
            return value
        if not value or "/" in value or value in (".", "..") or "\0" in value:
            raise invalid(f"{name} must be a plain file name, found {value!r}", name, line)
        return value

    return plain


def _input_data(
    value: list[str], line: int | None, limits: DescriptionLimits, *_: Any
) -> list[str]:
    lfns = [f"LFN:{item}" if item.startswith("/") else item for item in value]
    for lfn in lfns:
        if not lfn.startswith("LFN:/") or "//" in lfn:
            raise invalid(
                f"InputData entries must be LFNs (LFN:/vo/path, no '//'), found {lfn!r}",
                "InputData",
                line,
            )
    if len(lfns) > limits.max_input_data:
        raise invalid(
            f"InputData names {len(lfns)} files, more than the limit of {limits.max_input_data}",
            "InputData",
            line,
        )
    return lfns


def _input_sandbox(value: list[str], line: int | None, *_: Any) -> list[str]:
    for entry in value:
        if entry.startswith("LFN:") and not entry.startswith("LFN:/"):
            raise invalid(
                f"InputSandbox grid files must start with LFN:/, found {entry!r}",
                "InputSandbox",
                line,
            )
    return value


def _environment(value: list[str], line: int | None, *_: Any) -> list[str]:
    for entry in value:
        name, equals, _rest = entry.partition("=")
        if not equals or _ENVIRONMENT_NAME.match(name.strip()) is None:
            raise invalid(
                f"ExecutionEnvironment entries must be NAME=value, found {entry!r}",
                "ExecutionEnvironment",
                line,
            )
    return value


def environment_variables(entries: list[str] | tuple[str, ...]) -> dict[str, str]:
    """ExecutionEnvironment entries (``NAME=value``) as a mapping; a later NAME wins."""
    pairs = (entry.partition("=") for entry in entries)
    return {name.strip(): value.strip() for name, _, value in pairs}


_CHECKS: dict[str, Check] = {
    "Executable": _executable,
    "JobType": _job_type,
    "LogLevel": _log_level,
    "Priority": _in_range("Priority", 0, 10),
    "CPUTime": _cpu_time,
    "NumberOfProcessors": _in_range("NumberOfProcessors", 1, None),
    "MinNumberOfProcessors": _in_range("MinNumberOfProcessors", 1, None),
    "MaxNumberOfProcessors": _in_range("MaxNumberOfProcessors", 1, None),
    "SmpGranularity": _in_range("SmpGranularity", 1, None),
    "MaxRAM": _in_range("MaxRAM", 1, MAX_RAM_MB),
    "StdInput": _file_name("StdInput", optional=True),
    "StdOutput": _file_name("StdOutput"),
    "StdError": _file_name("StdError"),
    "InputData": _input_data,
    "InputSandbox": _input_sandbox,
    "ExecutionEnvironment": _environment,
}
CHECKED = frozenset(_CHECKS)  # the attributes with checks beyond their kind
