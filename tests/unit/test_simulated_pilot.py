"""The simulated pilot's state machine, without sockets: typed replies in, typed requests out."""

from __future__ import annotations

import random
from typing import Any

from dirac_like.agents.fabrics.base import PilotState
from dirac_like.agents.fabrics.simulated import _Pilot, _Spec
from dirac_like.protocol import (
    CommandsReply,
    KillJob,
    MatchedJob,
    Op,
    PilotResources,
    Reply,
    RequestJobReply,
    StopPilot,
    UpdateStatusArgs,
    to_wire,
)

JOB = {"Executable": "/bin/true", "Arguments": "sleep=100", "JobName": "long", "CPUTime": 60}


def new_pilot() -> _Pilot:
    spec = _Spec("p1", PilotResources(site="S"), idle_timeout=1000.0, max_jobs=0, crash_rate=0.0)
    pilot = _Pilot("p1-0", 0, spec, random.Random(1), time_scale=1.0, now=0.0)
    assert pilot.start(0.0)[0] == Op.REQUEST_JOB
    return pilot


def reply(result: Any) -> Reply:
    return Reply(id="r", ok=True, result=to_wire(result))


def matched(description: dict[str, Any]) -> RequestJobReply:
    return RequestJobReply(MatchedJob(7, 1, "alice", "g", 1, description), "", [])


def running(pilot: _Pilot) -> None:
    op, args = pilot.on_reply(Op.REQUEST_JOB, reply(matched(JOB)), 1.0)
    assert (op, args.status) == (Op.UPDATE_STATUS, "Running")
    assert pilot.on_reply(Op.UPDATE_STATUS, reply(CommandsReply([])), 1.0) is None


def test_a_stop_command_hands_the_running_job_back_then_ends_the_pilot() -> None:
    pilot = new_pilot()
    running(pilot)
    step = pilot.on_reply(Op.HEARTBEAT, reply(CommandsReply([StopPilot("Killed by an admin")])),
                          2.0)
    assert step is not None
    op, args = step
    assert op == Op.UPDATE_STATUS and isinstance(args, UpdateStatusArgs)
    assert (args.job_id, args.status) == (7, "Rescheduled")
    assert args.minor_status == "Pilot stopped (Killed by an admin): job handed back"
    assert pilot.on_reply(Op.UPDATE_STATUS, reply(CommandsReply([])), 2.5) is None
    assert pilot.ended and pilot.state is PilotState.DONE


def test_a_stop_command_ends_an_idle_pilot_at_once() -> None:
    pilot = new_pilot()
    stop = RequestJobReply(None, "this pilot was killed by an admin", [StopPilot("x")])
    assert pilot.on_reply(Op.REQUEST_JOB, reply(stop), 1.0) is None
    assert pilot.ended and pilot.state is PilotState.DONE


def test_a_kill_command_for_its_job_reports_it_killed() -> None:
    pilot = new_pilot()
    running(pilot)
    step = pilot.on_reply(Op.HEARTBEAT, reply(CommandsReply([KillJob(8), KillJob(7)])), 2.0)
    assert step is not None and step[1].status == "Killed"


def test_a_description_it_cannot_read_fails_the_job() -> None:
    pilot = new_pilot()
    step = pilot.on_reply(Op.REQUEST_JOB, reply(matched({"Arguments": "x"})), 1.0)
    assert step is not None
    op, args = step
    assert (op, args.status) == (Op.UPDATE_STATUS, "Failed")
    assert args.minor_status.startswith("Pilot could not prepare the job: ")
    assert "Executable" in args.minor_status


def test_a_malformed_reply_abandons_the_job_instead_of_crashing_the_loop() -> None:
    pilot = new_pilot()
    running(pilot)
    bad = Reply(id="r", ok=True, result={"commands": [{"command": "reboot"}]})
    step = pilot.on_reply(Op.HEARTBEAT, bad, 2.0)
    assert step is not None and step[0] == Op.REQUEST_JOB  # job abandoned, asks again
    assert "unknown command 'reboot'" in "\n".join(pilot.lines)
