"""Fabrics: where a site director's pilots run (see base.py for the interface and its contract).

``FABRICS`` names every implementation; a site file's ``fabric = "..."`` picks one through
:func:`make_fabric`. The ``simulated`` and ``slurm`` fabrics named in dirac_like.sites are added
here when they exist.
"""

from __future__ import annotations

import inspect
from typing import Any

from dirac_like.errors import ConfigError

from .base import (
    OUTPUT_TAIL_BYTES,
    Fabric,
    FabricError,
    PilotRequest,
    PilotState,
    UnknownPilotRef,
)
from .local import LocalFabric
from .simulated import SimulatedFabric

__all__ = [
    "FABRICS",
    "OUTPUT_TAIL_BYTES",
    "Fabric",
    "FabricError",
    "LocalFabric",
    "PilotRequest",
    "PilotState",
    "UnknownPilotRef",
    "make_fabric",
]

FABRICS: dict[str, type[Fabric]] = {
    "local": LocalFabric,
    "simulated": SimulatedFabric,
}


def make_fabric(name: str, **options: Any) -> Fabric:
    """A new fabric of the kind ``name``, built with ``options`` (e.g. ``base_dir``)."""
    try:
        cls = FABRICS[name]
    except KeyError:
        known = ", ".join(sorted(FABRICS))
        raise ConfigError(f"unknown fabric {name!r} (available: {known})") from None
    try:
        inspect.signature(cls).bind(**options)
    except TypeError as exc:
        raise ConfigError(f"fabric {name!r}: {exc}") from None
    return cls(**options)
