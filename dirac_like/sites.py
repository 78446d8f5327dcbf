"""Site configuration: one TOML file per site in ``etc/sites/``, named after the site.

``etc/sites/LCG.Example.org.toml`` describes the site ``LCG.Example.org``: its director's settings
at the top level and one ``[ce.NAME]`` table per computing element (CE)::

    max_pilots_per_cycle = 20

    [ce.ce01-example-org]
    fabric = "slurm"
    cores_per_slot = 8
    partition = "grid"

Files are loaded once into the frozen dataclasses below with :func:`dirac_like.config.from_mapping`,
so a wrong key is an error naming it. Every error also names the file, e.g.
``etc/sites/X.toml: ce.CERN-CE-1.fabric: unknown fabric 'pbs' (known: local, simulated, slurm)``.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dirac_like.config import from_mapping
from dirac_like.errors import ConfigError
from dirac_like.protocol import PilotResources

# The fabrics a CE may name. The implementations live in dirac_like.agents.fabrics, which the
# core library does not import; a name listed here that is not implemented yet is refused there.
FABRIC_NAMES = ("local", "simulated", "slurm")

_CE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_CE_REQUIRED = ("fabric", "cores_per_slot")
_DUPLICATE_TABLE = re.compile(r"Cannot declare \('ce', '([^']*)'\) twice")


class SiteConfigError(ConfigError):
    """A site file that cannot be used; the message names the file and the key."""


@dataclass(frozen=True)
class CEConfig:
    """One computing element: a queue of a batch system (or this host) where pilots run."""

    name: str
    fabric: str  # one of FABRIC_NAMES
    cores_per_slot: int  # cores a pilot gets (>= 1)
    memory_mb: int = 0  # memory a pilot gets; 0: unknown, jobs asking for MaxRAM do not match
    max_cpu_time: int = 0  # CPU seconds per core a pilot may use; 0: no limit known
    max_wall_time: int = 172800  # wall-clock seconds a pilot may live (the batch time limit)
    platform: str = ""  # e.g. Linux_x86_64_glibc-2.36; "": any
    tags: tuple[str, ...] = ()  # offered to jobs (a job's Tags must all be here)
    required_tags: tuple[str, ...] = ()  # only jobs carrying all of these run here
    max_queued: int = 10  # pilots submitted to the batch system but not running yet
    max_total: int = 100  # pilots alive (queued + running) at once
    partition: str = ""  # slurm only; "": the cluster's default partition

    def resources(self, site: str) -> PilotResources:
        """What a pilot on this CE offers to the matcher."""
        return PilotResources(
            site=site,
            ce=self.name,
            platform=self.platform,
            cores=self.cores_per_slot,
            memory_mb=self.memory_mb,
            cpu_time_left=self.max_cpu_time,
            tags=list(self.tags),
            required_tags=list(self.required_tags),
        )


@dataclass(frozen=True)
class SiteConfig:
    """A site: its CEs and how its director paces itself."""

    name: str
    ces: tuple[CEConfig, ...] = ()
    max_pilots_per_cycle: int = 20  # pilots submitted per director cycle, all CEs together
    cycle_seconds: float = 60.0  # time between two director cycles
    backoff_seconds: float = 300.0  # first back-off of a CE after failure_threshold failures
    max_backoff_seconds: float = 3600.0  # cap of a back-off that doubles on each repeat
    failure_threshold: int = 3  # consecutive pilot failures that back a CE off

    def ce(self, name: str) -> CEConfig:
        for ce in self.ces:
            if ce.name == name:
                return ce
        known = ", ".join(ce.name for ce in self.ces)
        raise SiteConfigError(f"site {self.name}: unknown CE {name!r} (known: {known})")


def load_sites(folder: Path) -> dict[str, SiteConfig]:
    """Every ``*.toml`` in ``folder``, by site name (the file name without ``.toml``)."""
    if not folder.is_dir():
        raise SiteConfigError(f"site folder {folder} does not exist")
    return {path.stem: load_site(path) for path in sorted(folder.glob("*.toml"))}


def load_site(path: Path) -> SiteConfig:
    """The site described by ``path``; its name is the file name without ``.toml``."""
    try:
        raw = tomllib.loads(path.read_text())
    except OSError as exc:
        raise SiteConfigError(f"cannot read site file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        duplicate = _DUPLICATE_TABLE.search(str(exc))
        if duplicate:
            raise SiteConfigError(f"{path}: ce.{duplicate.group(1)}: duplicate CE name") from None
        raise SiteConfigError(f"{path}: not valid TOML: {exc}") from None
    try:
        return _site(path.stem, raw)
    except ConfigError as exc:
        raise SiteConfigError(f"{path}: {exc.message}") from None


def _site(name: str, raw: dict[str, Any]) -> SiteConfig:
    raw = dict(raw)
    for key in ("name", "ces"):  # filled in by the loader, not by the file
        if key in raw:
            raise ConfigError(f"{key}: unknown key")
    ce_tables = raw.pop("ce", None)
    site = from_mapping(SiteConfig, {**raw, "name": name}, "")
    site = dataclasses.replace(site, ces=_ces(ce_tables))
    _check_site(site)
    return site


def _ces(tables: Any) -> tuple[CEConfig, ...]:
    if tables is None or tables == {}:
        raise ConfigError("ce: no CE defined (add a [ce.NAME] table)")
    if not isinstance(tables, dict):
        raise ConfigError("ce: expected a table of CEs, one [ce.NAME] table each")
    ces: list[CEConfig] = []
    seen: dict[str, str] = {}
    for name, table in tables.items():
        first = seen.setdefault(name.lower(), name)
        if first != name:
            raise ConfigError(f"ce.{name}: duplicate CE name (same as {first!r}, case aside)")
        ces.append(_ce(name, table))
    return tuple(ces)


def _ce(name: str, raw: Any) -> CEConfig:
    where = f"ce.{name}"
    if not _CE_NAME.fullmatch(name):
        raise ConfigError(f"{where}: a CE name is letters, digits, '.', '_' and '-'")
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a table")
    if "name" in raw:
        raise ConfigError(f"{where}.name: unknown key (the CE name is the table name)")
    for key in _CE_REQUIRED:
        if key not in raw:
            raise ConfigError(f"{where}.{key}: missing (every CE needs {key})")
    plain = {key: value for key, value in raw.items() if key not in ("tags", "required_tags")}
    ce = from_mapping(CEConfig, {**plain, "name": name}, where)
    ce = dataclasses.replace(
        ce,
        tags=_string_list(raw.get("tags", []), f"{where}.tags"),
        required_tags=_string_list(raw.get("required_tags", []), f"{where}.required_tags"),
    )
    _check_ce(ce, where)
    return ce


def _string_list(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ConfigError(f"{where}: expected a list of strings, got {value!r}")
    return tuple(value)


def _check_ce(ce: CEConfig, where: str) -> None:
    if ce.fabric not in FABRIC_NAMES:
        known = ", ".join(FABRIC_NAMES)
        raise ConfigError(f"{where}.fabric: unknown fabric {ce.fabric!r} (known: {known})")
    if ce.cores_per_slot < 1:
        raise ConfigError(f"{where}.cores_per_slot: must be at least 1, got {ce.cores_per_slot}")
    for key in ("memory_mb", "max_cpu_time", "max_queued", "max_total"):
        if getattr(ce, key) < 0:
            raise ConfigError(f"{where}.{key}: must not be negative")
    if ce.max_wall_time < 1:
        raise ConfigError(f"{where}.max_wall_time: must be at least 1 second")
    if ce.partition and ce.fabric != "slurm":
        raise ConfigError(f"{where}.partition: only for the slurm fabric, not {ce.fabric!r}")


def _check_site(site: SiteConfig) -> None:
    if site.max_pilots_per_cycle < 1:
        raise ConfigError("max_pilots_per_cycle: must be at least 1")
    if site.failure_threshold < 1:
        raise ConfigError("failure_threshold: must be at least 1")
    if site.cycle_seconds <= 0:
        raise ConfigError("cycle_seconds: must be positive")
    if site.backoff_seconds <= 0:
        raise ConfigError("backoff_seconds: must be positive")
    if site.max_backoff_seconds < site.backoff_seconds:
        raise ConfigError("max_backoff_seconds: must be at least backoff_seconds")
