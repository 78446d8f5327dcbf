"""Site and storage monitoring, the pure part: probe results, statuses, the status policy, and
downtimes. No I/O, no clock: ``now`` comes in.

Vocabulary (WLCG's, as SAM/ETF and DIRAC's Resource Status System use it):

- a **probe** is one test run against a target (a site's CE, or a storage element); it reports a
  :class:`ProbeResult` per check: ``OK``, ``WARNING``, ``CRITICAL`` or ``UNKNOWN`` with a message.
  UNKNOWN means "we could not tell" (the monitoring agent itself failed): it never counts against
  a target.
- every site and SE has a **status**: ``Active``, ``Degraded``, ``Probing`` or ``Banned``, set by
  the :class:`StatusPolicy` from its latest probe outcomes, or by an operator (a ban of an
  operator is never lifted by the policy).
- a **downtime** is a period a site or SE is declared down, scheduled (announced in advance: it
  does not count against its reliability) or not.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from dirac_like.errors import InvalidArgument

# The group probe jobs run in: reserved (users may not submit into it), served before every other
# group, not charged to any share, and not held back by a site's limit of running jobs or its ban.
PROBE_GROUP = "probes"


class CheckStatus(StrEnum):
    OK = "OK"
    WARNING = "WARNING"
    CRITICAL = "CRITICAL"
    UNKNOWN = "UNKNOWN"


# Worst first: the outcome of a probe is its worst check (UNKNOWN only when nothing else is known).
SEVERITY = {  # how bad a check status is (a probe run's outcome is its worst)
    CheckStatus.CRITICAL: 3,
    CheckStatus.WARNING: 2,
    CheckStatus.OK: 1,
    CheckStatus.UNKNOWN: 0,
}


class ResourceStatus(StrEnum):
    ACTIVE = "Active"
    DEGRADED = "Degraded"
    PROBING = "Probing"  # back from a ban, being tested: only probe jobs go there
    BANNED = "Banned"


class TargetKind(StrEnum):
    SITE = "site"
    SE = "se"


def parse_check_status(text: str) -> CheckStatus:
    try:
        return CheckStatus(text)
    except ValueError:
        known = ", ".join(status.value for status in CheckStatus)
        raise InvalidArgument(f"unknown check status {text[:32]!r} (known: {known})") from None


def parse_kind(text: str) -> TargetKind:
    try:
        return TargetKind(text)
    except ValueError:
        raise InvalidArgument(f"unknown target kind {text[:32]!r} (site or se)") from None


@dataclass(frozen=True)
class ProbeResult:
    """One check of one probe run against a target (a site, with the CE probed; or an SE)."""

    target: str  # site or SE name
    kind: TargetKind
    check: str  # e.g. "started", "python", "scratch", "se-write"
    status: CheckStatus
    message: str
    time: float
    ce: str = ""  # the CE probed ("" for an SE)
    job_id: int = 0  # the probe job (0: none, e.g. an SE test or a pilot-health finding)


@dataclass(frozen=True)
class Outcome:
    """A probe run summed up: its worst check (the one named in a ban's reason)."""

    time: float
    status: CheckStatus
    check: str
    message: str


# Results whose check starts with this are the agent's findings about pilots and jobs: stored and
# shown, but not probe runs (the policy and the availability figures leave them out).
HEALTH_PREFIX = "health:"


def probe_runs(
    results: Iterable[ProbeResult],
) -> dict[tuple[TargetKind, str], list[list[ProbeResult]]]:
    """The results of probe runs, by target, each run (the checks of one probe: same CE, job
    and time) a list, oldest run first; health findings left out."""
    runs: dict[tuple[Any, ...], list[ProbeResult]] = {}
    for result in results:
        if not result.check.startswith(HEALTH_PREFIX):
            key = (result.time, result.kind, result.target, result.ce, result.job_id)
            runs.setdefault(key, []).append(result)
    by_target: dict[tuple[TargetKind, str], list[list[ProbeResult]]] = {}
    for key in sorted(runs, key=lambda k: (k[0], k[1].value, k[2], k[3], k[4])):
        by_target.setdefault((key[1], key[2]), []).append(runs[key])
    return by_target


def outcome_of(results: Sequence[ProbeResult]) -> Outcome:
    """The worst of a probe run's checks (the first of equally bad ones)."""
    if not results:
        raise ValueError("a probe run has at least one result")
    worst = max(results, key=lambda result: SEVERITY[result.status])
    return Outcome(max(r.time for r in results), worst.status, worst.check, worst.message)


# -- the status policy ---------------------------------------------------------------------------


@dataclass(frozen=True)
class PolicyConfig:
    """How probe outcomes turn into a status (the ``[policy]`` table of the monitoring config)."""

    ban_after: int = 3  # CRITICAL outcomes in a row that ban a target
    recover_after: int = 2  # OK (or WARNING) outcomes in a row that bring a banned one back
    warning_degrades: bool = True  # a WARNING outcome makes an Active target Degraded
    dry_run: bool = False  # log what the policy would do, change nothing

    def check(self) -> None:
        if self.ban_after < 1 or self.recover_after < 1:
            raise InvalidArgument("policy: ban_after and recover_after must be at least 1")


@dataclass(frozen=True)
class Decision:
    status: ResourceStatus
    reason: str


def _tail(outcomes: Sequence[Outcome], statuses: frozenset[CheckStatus]) -> int:
    """How many of the last outcomes in a row have one of ``statuses``."""
    count = 0
    for outcome in reversed(outcomes):
        if outcome.status not in statuses:
            break
        count += 1
    return count


_GOOD = frozenset({CheckStatus.OK, CheckStatus.WARNING})
_BAD = frozenset({CheckStatus.CRITICAL})


class StatusPolicy:
    """Decides a target's next status from its probe outcomes (oldest first). Pure."""

    def __init__(self, config: PolicyConfig) -> None:
        config.check()
        self.config = config

    def decide(self, current: ResourceStatus, outcomes: Iterable[Outcome]) -> Decision | None:
        """The status the target should have now, or None to leave it as it is. UNKNOWN
        outcomes are left out: the agent's own failures never ban a target."""
        known = [outcome for outcome in outcomes if outcome.status is not CheckStatus.UNKNOWN]
        if not known:
            return None
        decision = self._next(current, known)
        if decision is None or decision.status is current:
            return None
        return decision

    def _next(self, current: ResourceStatus, known: list[Outcome]) -> Decision | None:
        config, last = self.config, known[-1]
        failed = _tail(known, _BAD)
        if failed >= config.ban_after:
            return Decision(
                ResourceStatus.BANNED,
                f"auto: probe {last.check} failed {failed} times in a row ({last.message[:120]})",
            )
        if current in (ResourceStatus.BANNED, ResourceStatus.PROBING):
            passed = _tail(known, _GOOD)
            if passed >= config.recover_after:
                return self._healthy(last, f"auto: {passed} good probes in a row")
            if passed >= 1:
                return Decision(
                    ResourceStatus.PROBING,
                    f"auto: {passed} good probe(s), {config.recover_after} needed",
                )
            return None
        return self._healthy(last, "auto: probe ok")

    def _healthy(self, last: Outcome, reason: str) -> Decision:
        if last.status is CheckStatus.CRITICAL:
            return Decision(
                ResourceStatus.DEGRADED, f"auto: probe {last.check} failed ({last.message[:120]})"
            )
        if last.status is CheckStatus.WARNING and self.config.warning_degrades:
            return Decision(
                ResourceStatus.DEGRADED, f"auto: probe {last.check} warned ({last.message[:120]})"
            )
        return Decision(ResourceStatus.ACTIVE, reason)


@dataclass(frozen=True)
class StatusRecord:
    """The current status of a site or SE, as stored."""

    target: str
    kind: TargetKind
    status: ResourceStatus
    reason: str
    changed: float
    automatic: bool  # set by the monitoring policy (False: by an operator, or never set)


# -- downtimes -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Downtime:
    downtime_id: int
    target: str
    kind: TargetKind
    start: float
    end: float
    reason: str
    scheduled: bool  # declared in advance: does not count against reliability
    created: float
    cancelled: float = 0.0  # 0: in force

    def active(self, now: float) -> bool:
        return not self.cancelled and self.start <= now < self.end

    def overlaps(self, start: float, end: float) -> bool:
        return not self.cancelled and self.start < end and start < self.end


def check_new_downtime(new: Downtime, existing: Iterable[Downtime]) -> None:
    """InvalidArgument unless ``new`` is well formed and overlaps no downtime of its target."""
    if new.end <= new.start:
        raise InvalidArgument(f"downtime of {new.target}: the end must be after the start")
    if not new.reason.strip():
        raise InvalidArgument(f"downtime of {new.target}: a downtime needs a reason")
    for other in existing:
        if (
            other.target == new.target
            and other.kind is new.kind
            and other.overlaps(new.start, new.end)
        ):
            raise InvalidArgument(
                f"downtime of {new.target} overlaps its downtime {other.downtime_id} "
                f"({other.reason[:60]!r}); cancel that one first"
            )


def active_downtime(downtimes: Iterable[Downtime], target: str, now: float) -> Downtime | None:
    for downtime in downtimes:
        if downtime.target == target and downtime.active(now):
            return downtime
    return None
