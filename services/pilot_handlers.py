"""Handlers of the pilot-record operations (directors and admins; see services/pilots.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dirac_like.errors import InvalidArgument
from dirac_like.protocol import (
    AddPilotsArgs,
    AddPilotsReply,
    KillPilotReply,
    ListPilotsArgs,
    Op,
    PilotIdArgs,
    PilotOutputReply,
    PilotStoppedArgs,
    PilotStoppedReply,
    PilotView,
    UpdatePilotsArgs,
    UpdatePilotsReply,
)

from .limits import check_listing_limit
from .state import CentralState, check_name

MAX_UPDATES = 10_000


def add_pilots(state: CentralState, args: AddPilotsArgs, now: float) -> AddPilotsReply:
    check_name("site", args.site)
    check_name("ce", args.ce)
    if args.fabric:
        check_name("fabric", args.fabric)
    pilot_ids = state.pilots.add(args.site, args.ce, args.fabric, args.count, now)
    state.sites.see(args.site)  # only once the pilots are added: a refusal changes nothing
    return AddPilotsReply(pilot_ids)


def update_pilots(state: CentralState, args: UpdatePilotsArgs, now: float) -> UpdatePilotsReply:
    if len(args.updates) > MAX_UPDATES:
        raise InvalidArgument(f"{len(args.updates)} updates in one request (at most {MAX_UPDATES})")
    state.pilots.update(args.updates, now)
    return UpdatePilotsReply(len(args.updates))


def pilots(state: CentralState, args: ListPilotsArgs, now: float) -> list[PilotView]:
    check_listing_limit(args.limit)
    selected = state.pilots.select(args.site, args.states, args.limit)
    return [PilotView(**pilot.view()) for pilot in selected]


def pilot_output(state: CentralState, args: PilotIdArgs, now: float) -> PilotOutputReply:
    pilot = state.pilots.get(args.pilot_id)
    output = state.stored.pilot_output(pilot.pilot_id)
    return PilotOutputReply(
        pilot_id=pilot.pilot_id,
        state=pilot.state,
        collected=output is not None,
        output=output or "",
    )


def kill_pilot(state: CentralState, args: PilotIdArgs, now: float) -> KillPilotReply:
    rescheduled = state.kill_pilot(args.pilot_id, now)
    return KillPilotReply(pilot_id=args.pilot_id, rescheduled=rescheduled)


def pilot_stopped(state: CentralState, args: PilotStoppedArgs, now: float) -> PilotStoppedReply:
    """A pilot on its way out: its record is closed unless a director follows it; its cores no
    longer count at its site, and its hold (if any) ends."""
    state.book.holds.forget(args.pilot_id, now)
    return PilotStoppedReply(closed=state.pilots.stopped(args.pilot_id, args.exit_code, now))


PILOT_HANDLERS: dict[str, Callable[[CentralState, Any, float], Any]] = {
    Op.ADD_PILOTS: add_pilots,
    Op.UPDATE_PILOTS: update_pilots,
    Op.PILOTS: pilots,
    Op.PILOT_OUTPUT: pilot_output,
    Op.KILL_PILOT: kill_pilot,
    Op.PILOT_STOPPED: pilot_stopped,
}
