"""Sites as the central service sees them: bans, limits of active jobs, and every name met.

An admin bans a site (with a reason) or lifts the ban, drains it (no new match; running jobs
finish) or sets its limit of jobs matched or running at once (:meth:`SiteBoard.change`: written to
the store with the batch); without such a limit, the configuration's applies.
:meth:`SiteBoard.why_not` says why a pilot at a site gets no job right now. Every site name met
(configured, banned, asked for pilots, or named by a pilot) is listed by ``dirac-like admin
sites``.

Pure: no I/O. How many jobs are active at a site is counted by the job book and passed in.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

from dirac_like.config import SiteLimits
from dirac_like.model import SiteRecord

from .journal import Journal


class SiteBoard:
    def __init__(
        self, limits: Mapping[str, SiteLimits], journal: Journal, loaded: Iterable[SiteRecord] = ()
    ) -> None:
        self.limits = limits
        self.journal = journal
        self.records: dict[str, SiteRecord] = {site.name: site for site in loaded}
        self.seen: set[str] = set(limits) | set(self.records)

    def see(self, name: str) -> None:
        """Remember that site ``name`` exists (a director or a pilot named it)."""
        self.seen.add(name)

    def set(self, record: SiteRecord) -> None:
        """Ban a site or lift its ban (``record.banned``), for good (written to the store)."""
        self.records[record.name] = record
        self.seen.add(record.name)
        self.journal.changes.sites[record.name] = record

    def record(self, name: str) -> SiteRecord:
        """The site's stored record (an unbanned, undrained one if it has none)."""
        return self.records.get(name) or SiteRecord(name, False, "", 0.0)

    def change(self, name: str, now: float, **fields: Any) -> SiteRecord:
        """Change some fields of the site's record (the others kept) and store it."""
        record = dataclasses.replace(self.record(name), changed=now, **fields)
        self.set(record)
        return record

    def draining(self, name: str) -> bool:
        record = self.records.get(name)
        return record is not None and record.drained

    def banned(self, name: str) -> SiteRecord | None:
        """The ban of site ``name``, or None if it is not banned."""
        record = self.records.get(name)
        return record if record is not None and record.banned else None

    def max_running(self, name: str) -> int:
        """How many jobs may be active at site ``name`` at once (0: no limit)."""
        record = self.records.get(name)
        if record is not None and record.max_running >= 0:
            return record.max_running
        limit = self.limits.get(name)
        return limit.max_running if limit else 0

    def why_not(self, name: str, active: int) -> str:
        """Why a pilot at site ``name`` (with ``active`` jobs there) gets nothing right now, or
        '' if it may be matched."""
        ban = self.banned(name)
        if ban is not None:
            return f"site {name} is banned: {ban.reason}"
        if self.draining(name):
            return f"site {name} is draining: it takes no new job"
        limit = self.max_running(name)
        if limit and active >= limit:
            return f"site {name} has reached its limit of {limit} jobs"
        return ""
