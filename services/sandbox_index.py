"""Which sandbox archive each job names, and the collection of archives no job names.

A job names an uploaded input archive in its description (``InputSandbox = {"SB:<sha256>"}``)
and gets an output archive with its pilot's final report. On a secure service an archive is
named only by one of its holders (dirac_like/sandbox.py): a job's input by its owner, an output
by the pilot that uploaded it, which then passes to the job's owner.

:class:`SandboxIndex` checks that a named archive was uploaded completely (and is held),
records the (job, kind, archive) rows in the batch's change set, answers which archive a job
has, and deletes the archives no job names (:meth:`SandboxIndex.collect`, after
``collect_after`` seconds).

This is a thin I/O shell, not a decision part: it asks the sandbox files
(:class:`dirac_like.sandbox.SandboxStore`) and the store, with the not-yet-committed rows of the
:class:`~services.journal.Journal` first.
"""

from __future__ import annotations

import logging
from typing import Protocol

from dirac_like.description import JobDescription
from dirac_like.errors import InvalidArgument
from dirac_like.sandbox import SANDBOX_PREFIX, SandboxStore, is_sha256

from .journal import Journal

log = logging.getLogger(__name__)


class StoredSandboxes(Protocol):
    """What the index reads from the store."""

    def sandbox(self, job_id: int, kind: str) -> str | None: ...

    def referenced_sandboxes(self) -> set[str]: ...


class SandboxIndex:
    def __init__(
        self,
        files: SandboxStore | None,
        stored: StoredSandboxes,
        journal: Journal,
        collect_after: float,
    ) -> None:
        self.files = files  # None: sandboxes are refused
        self.stored = stored
        self.journal = journal
        self.collect_after = collect_after

    def check(self, sha256: str, kind: str, holder: str | None = None) -> None:
        """The archive ``sha256`` was uploaded completely, and ``holder`` holds it (None: anyone
        may name it, a service running insecure); else InvalidArgument, the same for an archive
        that is not ``holder``'s as for one never uploaded."""
        if self.files is None:
            raise InvalidArgument("this service keeps no sandboxes")
        if not is_sha256(sha256):
            raise InvalidArgument(f"{kind} sandbox: not a sandbox checksum: {sha256[:80]!r}")
        if not (self.files.has(sha256) if holder is None else self.files.granted(sha256, holder)):
            raise InvalidArgument(
                f"{kind} sandbox SB:{sha256[:64]} was not uploaded (upload it first, then name it)"
            )

    def holds(self, sha256: str, holder: str) -> bool:
        """Whether ``holder`` holds the stored archive ``sha256``."""
        return self.files is not None and is_sha256(sha256) and self.files.granted(sha256, holder)

    def grant(self, sha256: str, holder: str) -> None:
        """``holder`` may read archive ``sha256`` (stored) from now on."""
        if self.files is not None:
            self.files.grant(sha256, holder)

    def input_of(
        self, description: JobDescription, holder: str | None = None, check: bool = True
    ) -> str:
        """The sha256 of the uploaded archive the job's InputSandbox names ('' if none),
        checked (held by ``holder``, the job's owner, unless None) unless not ``check``."""
        named = [
            entry[len(SANDBOX_PREFIX) :]
            for entry in description.input_sandbox
            if entry.startswith(SANDBOX_PREFIX)
        ]
        if not named:
            return ""
        if len(named) > 1:
            raise InvalidArgument("InputSandbox names more than one SB: archive")
        if check:
            self.check(named[0], "input", holder)
        return named[0]

    def attach(self, job_id: int, kind: str, sha256: str) -> None:
        """Job ``job_id`` names archive ``sha256`` as its ``kind`` sandbox (checked before)."""
        self.journal.changes.sandboxes.append((job_id, kind, sha256))

    def of(self, job_id: int, kind: str) -> str | None:
        """The sha256 of a job's ``kind`` sandbox, pending changes first."""
        pending = self.journal.sandbox(job_id, kind)
        return pending if pending is not None else self.stored.sandbox(job_id, kind)

    def collect(self, now: float) -> list[str]:
        """Delete the archives no job names that are older than ``collect_after``."""
        if self.files is None:
            return []
        referenced = self.stored.referenced_sandboxes() | self.journal.sandboxes()
        return self.files.collect(referenced, self.collect_after, now)
