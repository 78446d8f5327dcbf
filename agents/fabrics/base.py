"""The fabric interface: where a site director's pilots run.

A fabric takes a :class:`PilotRequest` (the argv of a pilot and the resources it needs), starts it
somewhere and hands back a reference, a string that means something only to that fabric (a local
process, a simulated pilot, a Slurm job id). The director keeps the reference with the pilot record
and later asks for the pilot's state, its output, or cancels it.

Contract, shared by every implementation and checked by tests/integration/test_fabric_contract.py:

- ``submit`` returns once the fabric has accepted the pilot; a pilot it cannot accept raises
  :class:`FabricError` (the director backs the CE off on it).
- ``status`` maps every reference asked about to a :class:`PilotState`, in one call. A reference
  the fabric does not know (never its own, or forgotten: a local pilot does not outlive its fabric
  object) is ``ABORTED``, not an error: one stale reference must not hide the others' states, and
  for the director "the fabric has no such pilot any more" is what Aborted means.
- ``cancel`` stops a pilot and everything it started; afterwards its state is ``ABORTED`` (unless it
  had already ended, then it keeps its final state). Cancelling an unknown or ended pilot is a
  no-op.
- ``output`` returns the tail of what the pilot printed (stdout, then stderr), even after it ended;
  a reference with no output anywhere raises :class:`UnknownPilotRef`.
- ``close`` cancels every pilot still alive, so a stopped director leaves nothing behind.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from dirac_like.errors import DiracLikeError, NotFound
from dirac_like.states import PilotState

__all__ = [
    "OUTPUT_TAIL_BYTES",
    "Fabric",
    "FabricError",
    "PilotRequest",
    "PilotState",
    "UnknownPilotRef",
]

OUTPUT_TAIL_BYTES = 64 * 1024  # what output() returns at most, per stream


@dataclass(frozen=True)
class PilotRequest:
    """One pilot to start."""

    pilot_id: str  # the central service's id of the pilot record
    command: list[str]  # the full argv of the pilot (a bootstrap script, or dirac-like pilot ...)
    env: dict[str, str] = field(default_factory=dict)  # added to the fabric's own environment
    cores: int = 1
    memory_mb: int = 0  # 0: no memory request
    wall_seconds: int = 86400  # the batch system's time limit
    workdir: Path = Path(".")  # where the pilot starts (created if missing)
    queue: str = ""  # the batch queue (a Slurm partition); "": the fabric's default


class FabricError(DiracLikeError):
    """The fabric cannot take a pilot (or cannot be reached); the director backs the CE off."""

    code = "fabric_error"
    retryable = True


class UnknownPilotRef(NotFound):
    """A fabric reference the fabric knows nothing about."""

    code = "pilot_ref_not_found"


class Fabric(ABC):
    """Start, watch and stop pilots on one kind of resource."""

    name = "abstract"

    @abstractmethod
    def submit(self, request: PilotRequest) -> str:
        """Start a pilot; returns the fabric's reference for it. Raises FabricError."""

    @abstractmethod
    def status(self, refs: list[str]) -> dict[str, PilotState]:
        """The state of each pilot in ``refs`` (unknown references: ABORTED)."""

    @abstractmethod
    def cancel(self, ref: str) -> None:
        """Stop the pilot and everything it started."""

    @abstractmethod
    def output(self, ref: str, max_bytes: int = OUTPUT_TAIL_BYTES) -> str:
        """The last ``max_bytes`` of the pilot's stdout, then of its stderr."""

    @abstractmethod
    def close(self) -> None:
        """Cancel every pilot still alive and release the fabric's resources."""

    def detach(self) -> None:
        """Release the fabric, leaving its pilots running where the fabric can (``agent director
        --once``); by default the same as :meth:`close`."""
        self.close()

    def describe(self, ref: str) -> str:
        """Why the pilot ``ref`` is in the state :meth:`status` last gave, in words (e.g. a
        batch system's state, reason and exit code); "" when the fabric cannot tell more."""
        return ""

    def __enter__(self) -> Fabric:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
