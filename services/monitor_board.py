"""Site and SE monitoring as the central service keeps it: statuses and downtimes in memory,
probe results on their way to the store.

The monitoring agent reports probe results (:meth:`MonitorBoard.report`) and sets statuses its
policy decided (:meth:`MonitorBoard.set_status`); operators declare and cancel downtimes. A site's
status reaches the matcher through the site board: the policy's *Banned* and *Probing* are an
automatic ban there (only probe jobs go to the site), lifted when the policy says *Active* or
*Degraded* again, and never when the ban is an operator's. Everything changed goes into the
journal and is written with the batch.

Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Iterable

from dirac_like.errors import Forbidden, InvalidArgument, NotFound
from dirac_like.model import SEStatusRecord, SiteRecord
from dirac_like.monitoring import (
    Downtime,
    ProbeResult,
    ResourceStatus,
    StatusRecord,
    TargetKind,
    active_downtime,
    check_new_downtime,
)
from dirac_like.storage import SEStatus

from .journal import Journal
from .site_board import SiteBoard

# The policy's statuses under which a site takes probe jobs only.
_CLOSED = frozenset({ResourceStatus.BANNED, ResourceStatus.PROBING})


class MonitorBoard:
    def __init__(
        self,
        sites: SiteBoard,
        journal: Journal,
        statuses: Iterable[StatusRecord] = (),
        downtimes: Iterable[Downtime] = (),
    ) -> None:
        self.sites = sites
        self.journal = journal
        self.statuses: dict[tuple[str, str], StatusRecord] = {
            (record.kind.value, record.target): record for record in statuses
        }
        self.downtimes: dict[int, Downtime] = {d.downtime_id: d for d in downtimes}
        self.known_ses: set[str] = {target for kind, target in self.statuses if kind == "se"}
        self.known_ses.update(d.target for d in self.downtimes.values() if d.kind is TargetKind.SE)
        self.next_downtime_id = max(self.downtimes, default=0) + 1

    # -- probe results ---------------------------------------------------------------------------

    def report(self, results: list[ProbeResult]) -> None:
        """Keep probe results (written with the batch); their targets become known names."""
        for result in results:
            if result.kind is TargetKind.SE:
                self.known_ses.add(result.target)
            else:
                self.sites.see(result.target)
        self.journal.changes.probe_results.extend(results)

    # -- statuses --------------------------------------------------------------------------------

    def status(self, kind: TargetKind, target: str) -> StatusRecord:
        """The status of a target: an operator's ban first, then the policy's, else Active."""
        if kind is TargetKind.SITE:
            ban = self.sites.banned(target)
            if ban is not None and not ban.automatic:
                return StatusRecord(
                    target, kind, ResourceStatus.BANNED, ban.reason, ban.changed, automatic=False
                )
        record = self.statuses.get((kind.value, target))
        return record or StatusRecord(target, kind, ResourceStatus.ACTIVE, "", 0.0, False)

    def set_status(
        self, kind: TargetKind, target: str, status: ResourceStatus, reason: str, now: float
    ) -> StatusRecord:
        """The policy's decision for a target. Refused (Forbidden) for a site an operator banned:
        the policy never lifts, nor rewrites, an operator's ban."""
        self.check_known(kind, target)
        if kind is TargetKind.SITE:
            ban = self.sites.banned(target)
            if ban is not None and not ban.automatic:
                raise Forbidden(
                    f"site {target} was banned by an operator ({ban.reason[:80]!r}): "
                    "the monitoring policy leaves it alone"
                )
            self._apply_to_site(target, status, reason, now)
        record = StatusRecord(target, kind, status, reason[:256], now, automatic=True)
        self.statuses[(kind.value, target)] = record
        self.journal.changes.statuses[(kind.value, target)] = record
        return record

    def _apply_to_site(self, site: str, status: ResourceStatus, reason: str, now: float) -> None:
        closed = status in _CLOSED
        ban = self.sites.banned(site)
        if closed:
            self.sites.set(SiteRecord(site, True, reason[:256], now, automatic=True))
        elif ban is not None:  # an automatic ban (an operator's was refused above)
            self.sites.set(SiteRecord(site, False, "", now))

    def operator_changed_site(self, site: str, now: float) -> None:
        """An operator banned or unbanned ``site``: the policy's status is forgotten (it starts
        again from Active when the operator lifts the ban)."""
        key = (TargetKind.SITE.value, site)
        if key in self.statuses:
            record = StatusRecord(
                site,
                TargetKind.SITE,
                ResourceStatus.ACTIVE,
                "reset by an operator",
                now,
                automatic=False,
            )
            self.statuses[key] = record
            self.journal.changes.statuses[key] = record

    def rows(self) -> list[StatusRecord]:
        """Every site and SE known, sites first, by name."""
        sites = [self.status(TargetKind.SITE, name) for name in sorted(self.sites.seen)]
        ses = [self.status(TargetKind.SE, name) for name in sorted(self.known_ses)]
        return sites + ses

    def se_status(self, se: str) -> SEStatusRecord | None:
        """The policy's status of SE ``se`` as the data side uses it (None: none decided):
        Probing (being tested again) is read only, like Degraded."""
        record = self.statuses.get((TargetKind.SE.value, se))
        if record is None:
            return None
        status = SEStatus.DEGRADED if record.status is ResourceStatus.PROBING else record.status
        return SEStatusRecord(
            se, SEStatus(status.value), f"monitoring: {record.reason}", record.changed
        )

    def check_known(self, kind: TargetKind, target: str) -> None:
        known = self.sites.seen if kind is TargetKind.SITE else self.known_ses
        if target not in known:
            names = ", ".join(sorted(known)[:20]) or "none"
            raise NotFound(f"unknown {kind.value} {target[:64]!r} (known: {names})")

    # -- downtimes -------------------------------------------------------------------------------

    def add_downtime(
        self,
        kind: TargetKind,
        target: str,
        start: float,
        end: float,
        reason: str,
        scheduled: bool,
        now: float,
    ) -> Downtime:
        self.check_known(kind, target)
        downtime = Downtime(
            self.next_downtime_id, target, kind, start, end, reason[:256], scheduled, now
        )
        check_new_downtime(downtime, self.downtimes.values())
        self.next_downtime_id += 1
        self.downtimes[downtime.downtime_id] = downtime
        self.journal.changes.downtimes[downtime.downtime_id] = downtime
        return downtime

    def cancel_downtime(self, downtime_id: int, now: float) -> Downtime:
        downtime = self.downtimes.get(downtime_id)
        if downtime is None:
            raise NotFound(f"no downtime {downtime_id}")
        if downtime.cancelled:
            raise InvalidArgument(f"downtime {downtime_id} was already cancelled")
        if downtime.end <= now:
            raise InvalidArgument(f"downtime {downtime_id} is over: there is nothing to cancel")
        cancelled = Downtime(
            downtime.downtime_id,
            downtime.target,
            downtime.kind,
            downtime.start,
            downtime.end,
            downtime.reason,
            downtime.scheduled,
            downtime.created,
            cancelled=now,
        )
        self.downtimes[downtime_id] = cancelled
        self.journal.changes.downtimes[downtime_id] = cancelled
        return cancelled

    def downtime_now(self, target: str, now: float) -> Downtime | None:
        return active_downtime(self.downtimes.values(), target, now)

    def why_not(self, site: str, now: float) -> str:
        """Why a site takes no pilot or job now because of a downtime ('' if none)."""
        downtime = self.downtime_now(site, now)
        if downtime is None:
            return ""
        kind = "scheduled" if downtime.scheduled else "unscheduled"
        return f"site {site} is in {kind} downtime {downtime.downtime_id}: {downtime.reason}"
