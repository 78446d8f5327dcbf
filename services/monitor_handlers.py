"""Handlers of the monitoring operations: probe results, site/SE statuses, downtimes.

The monitoring agent reports results and sets the statuses its policy decided; operators
declare and cancel downtimes and read everything (services/monitor_board.py holds the state).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from dirac_like.errors import InvalidArgument
from dirac_like.monitoring import (
    Downtime,
    ProbeResult,
    ResourceStatus,
    StatusRecord,
    TargetKind,
    parse_check_status,
    parse_kind,
)
from dirac_like.protocol import (
    DowntimeAddArgs,
    DowntimeIdArgs,
    DowntimeListArgs,
    DowntimeRow,
    NoArgs,
    Op,
    ProbeReportArgs,
    ProbeReportReply,
    ProbeResultItem,
    ProbeResultsArgs,
    SetStatusArgs,
    StatusRow,
)

from .limits import check_listing_limit
from .state import CentralState, check_name

MAX_RESULTS_PER_REPORT = 10_000
MAX_MESSAGE = 1000  # characters of a check's message kept


def _result(item: ProbeResultItem) -> ProbeResult:
    check_name("target", item.target)
    check_name("check", item.check)
    if item.ce:
        check_name("ce", item.ce)
    if not math.isfinite(item.time):
        raise InvalidArgument("a probe result's time must be a finite number")
    return ProbeResult(
        item.target,
        parse_kind(item.kind),
        item.check,
        parse_check_status(item.status),
        item.message[:MAX_MESSAGE],
        item.time,
        item.ce,
        item.job_id,
    )


def probe_report(state: CentralState, args: ProbeReportArgs, now: float) -> ProbeReportReply:
    if len(args.results) > MAX_RESULTS_PER_REPORT:
        raise InvalidArgument(
            f"{len(args.results)} results in one report (at most {MAX_RESULTS_PER_REPORT})"
        )
    results = [_result(item) for item in args.results]  # all checked before any is kept
    state.monitor.report(results)
    return ProbeReportReply(stored=len(results))


def probe_results(state: CentralState, args: ProbeResultsArgs, now: float) -> list[ProbeResultItem]:
    check_listing_limit(args.limit)
    stored = state.stored_probe_results(args.since, args.target, args.limit)
    return [
        ProbeResultItem(
            r.target, r.kind.value, r.check, r.status.value, r.message, r.time, r.ce, r.job_id
        )
        for r in stored
    ]


def _status_row(state: CentralState, record: StatusRecord, now: float) -> StatusRow:
    downtime = state.monitor.downtime_now(record.target, now)
    return StatusRow(
        record.target,
        record.kind.value,
        record.status.value,
        record.reason,
        record.changed,
        record.automatic,
        downtime=f"{downtime.downtime_id}: {downtime.reason}" if downtime else "",
    )


def resource_status(state: CentralState, args: NoArgs, now: float) -> list[StatusRow]:
    return [_status_row(state, record, now) for record in state.monitor.rows()]


def set_status(state: CentralState, args: SetStatusArgs, now: float) -> StatusRow:
    kind = parse_kind(args.kind)
    try:
        status = ResourceStatus(args.status)
    except ValueError:
        known = ", ".join(s.value for s in ResourceStatus)
        raise InvalidArgument(f"unknown status {args.status[:32]!r} (known: {known})") from None
    if not args.reason.strip():
        raise InvalidArgument("a status change needs a reason")
    record = state.monitor.set_status(kind, args.target, status, args.reason, now)
    if kind is TargetKind.SE:
        state.rules.touched_all(now)  # the SE's data status follows: rules look again
    return _status_row(state, record, now)


def _downtime_row(downtime: Downtime) -> DowntimeRow:
    return DowntimeRow(
        downtime.downtime_id,
        downtime.target,
        downtime.kind.value,
        downtime.start,
        downtime.end,
        downtime.reason,
        downtime.scheduled,
        downtime.created,
        downtime.cancelled,
    )


def downtime_add(state: CentralState, args: DowntimeAddArgs, now: float) -> DowntimeRow:
    kind = parse_kind(args.kind)
    if not (math.isfinite(args.start) and math.isfinite(args.end)):
        raise InvalidArgument("a downtime's start and end must be finite times")
    downtime = state.monitor.add_downtime(
        kind, args.target, args.start, args.end, args.reason, args.scheduled, now
    )
    return _downtime_row(downtime)


def downtime_list(state: CentralState, args: DowntimeListArgs, now: float) -> list[DowntimeRow]:
    downtimes = sorted(state.monitor.downtimes.values(), key=lambda d: (d.start, d.downtime_id))
    return [
        _downtime_row(d)
        for d in downtimes
        if args.include_ended or (not d.cancelled and d.end > now)
    ]


def downtime_cancel(state: CentralState, args: DowntimeIdArgs, now: float) -> DowntimeRow:
    return _downtime_row(state.monitor.cancel_downtime(args.downtime_id, now))


MONITOR_HANDLERS: dict[str, Callable[[CentralState, Any, float], Any]] = {
    Op.PROBE_REPORT: probe_report,
    Op.PROBE_RESULTS: probe_results,
    Op.RESOURCE_STATUS: resource_status,
    Op.SET_STATUS: set_status,
    Op.DOWNTIME_ADD: downtime_add,
    Op.DOWNTIME_LIST: downtime_list,
    Op.DOWNTIME_CANCEL: downtime_cancel,
}
