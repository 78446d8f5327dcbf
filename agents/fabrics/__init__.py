"""Fabrics: where a site director's pilots run (see base.py for the interface and its contract).

``FABRICS`` names every implementation; a site file's ``fabric = "..."`` picks one through
:func:`make_fabric`: ``local`` (processes on this host), ``simulated`` (pilots inside this
process, for load tests) and ``slurm`` (Slurm batch jobs).
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
from .slurm import SlurmFabric

__all__ = [
    "FABRICS",
    "OUTPUT_TAIL_BYTES",
    "Fabric",
    "FabricError",
    "LocalFabric",
    "PilotRequest",
    "PilotState",
    "SlurmFabric",
    "UnknownPilotRef",
    "make_fabric",
]

FABRICS: dict[str, type[Fabric]] = {
    "local": LocalFabric,
    "simulated": SimulatedFabric,
    "slurm": SlurmFabric,
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
