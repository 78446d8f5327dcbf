"""Storage elements as configured, and the LFN -> PFN mapping (pure: no I/O).

An SE is a place that holds files: a POSIX folder (``protocol = "file"``, the embedded default) or
an XRootD server (``protocol = "xroot"``). Its physical file name (PFN) for an LFN is its base URL
followed by the LFN, except where a per-SE rule maps an LFN folder elsewhere::

    [storage.CERN-DISK]
    site = "CERN"
    protocol = "xroot"
    endpoint = "root://127.0.0.1:1094"
    base_path = "/grid"
    tags = ["disk", "tier1"]
    rules = { "/lhcb/user" = "/users" }   # /lhcb/user/a/f -> root://127.0.0.1:1094//grid/users/a/f

Every mapping is checked both ways (:meth:`StorageElementConfig.pfn` maps back with
:meth:`StorageElementConfig.lfn` and must give the LFN again), so two rules that would make two
LFNs share a PFN are caught at once instead of overwriting a file.

Without any ``[storage]`` table the service has one ``file`` SE, ``LOCAL-DISK``, in its home
(:func:`default_storage`), so a laptop and ``dirac-like demo`` need nothing installed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from dirac_like.errors import ConfigError, InvalidArgument
from dirac_like.lfns import check_lfn

PROTOCOLS = ("file", "xroot")
DEFAULT_SE = "LOCAL-DISK"


class SEStatus(StrEnum):
    ACTIVE = "Active"  # read, write, delete as configured
    DEGRADED = "Degraded"  # read only: no new replicas are placed here
    BANNED = "Banned"  # nothing: neither read nor written


@dataclass(frozen=True)
class StorageElementConfig:
    name: str = ""  # filled from the table's key
    site: str = ""
    protocol: str = "file"
    endpoint: str = ""  # xroot: root://host:port; file: unused
    base_path: str = ""  # file: an absolute folder; xroot: a path on the server ("/" for all)
    read: bool = True
    write: bool = True
    delete: bool = True
    total_space: int = 0  # bytes; 0: not limited
    tags: tuple[str, ...] = ()
    rules: Mapping[str, str] = field(default_factory=dict)  # LFN folder -> path under base

    @property
    def base_url(self) -> str:
        base = self.base_path.rstrip("/")
        if self.protocol == "xroot":
            return f"{self.endpoint.rstrip('/')}/{base}"
        return f"file://{base}"

    def path(self, lfn: str) -> str:
        """The path of ``lfn`` below the base path (starts with /), rules applied."""
        for folder in sorted(self.rules, key=len, reverse=True):
            if lfn.startswith(folder.rstrip("/") + "/"):
                return self.rules[folder].rstrip("/") + lfn[len(folder.rstrip("/")) :]
        return lfn

    def lfn(self, path: str) -> str:
        """The LFN whose :meth:`path` is ``path`` (the inverse mapping)."""
        for folder, target in sorted(
            self.rules.items(), key=lambda rule: len(rule[1]), reverse=True
        ):
            if path.startswith(target.rstrip("/") + "/"):
                return folder.rstrip("/") + path[len(target.rstrip("/")) :]
        return path

    def pfn(self, lfn: str) -> str:
        """The physical file name of ``lfn`` here, checked to map back to ``lfn``."""
        path = self.path(lfn)
        if self.lfn(path) != lfn:
            raise InvalidArgument(
                f"SE {self.name}: LFN {lfn} maps to {path}, which maps back "
                f"to {self.lfn(path)}: fix the SE's rules"
            )
        return self.base_url + path

    def local_path(self, lfn: str) -> Path:
        """A ``file`` SE's file for ``lfn``."""
        return Path(self.base_path) / self.pfn(lfn)[len(self.base_url) + 1 :]


def check_storage(elements: Mapping[str, StorageElementConfig]) -> dict[str, StorageElementConfig]:
    """The SEs of a config, named and validated (ConfigError naming the key)."""
    checked = {}
    for name, element in elements.items():
        where = f"storage.{name}"
        if element.protocol not in PROTOCOLS:
            raise ConfigError(f"{where}.protocol: one of {', '.join(PROTOCOLS)}")
        if element.protocol == "xroot" and not element.endpoint.startswith("root://"):
            raise ConfigError(f"{where}.endpoint: an xroot SE needs root://host:port")
        if not element.base_path.startswith("/"):
            raise ConfigError(f"{where}.base_path: an absolute path")
        if element.total_space < 0:
            raise ConfigError(f"{where}.total_space: not negative")
        for folder, target in element.rules.items():
            if not (folder.startswith("/") and target.startswith("/")):
                raise ConfigError(f"{where}.rules: {folder!r} = {target!r}: both absolute paths")
            check_lfn(folder.rstrip("/") + "/x")
        checked[name] = StorageElementConfig(**{**element.__dict__, "name": name})
    return checked


def default_storage(home: Path) -> dict[str, StorageElementConfig]:
    """The embedded default: one ``file`` SE in the service's home."""
    folder = home / "storage" / DEFAULT_SE
    return {
        DEFAULT_SE: StorageElementConfig(
            name=DEFAULT_SE, protocol="file", base_path=str(folder), tags=("disk",)
        )
    }
