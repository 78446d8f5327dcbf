"""The simulated pilot's state machine, without sockets: typed replies in, typed requests out."""

from __future__ import annotations

import random
from typing import Any

from dirac_like.agents.fabrics.base import PilotState
from dirac_like.agents.fabrics.simulated import _Pilot, _Spec
from dirac_like.protocol import (
    CommandsReply,
    CoreHold,
    ErrorInfo,
    KillJob,
    MatchedJob,
    Op,
    PilotResources,
    PilotTurnArgs,
    PilotTurnReply,
    Reply,
    ReportOutcome,
    RequestJobArgs,
    RequestJobReply,
    StopPilot,
    UpdateStatusArgs,
    to_wire,
)

JOB = {"Executable": "/bin/true", "Arguments": "sleep=100", "JobName": "long", "CPUTime": 60}


def new_pilot(cores: int = 1, turns: bool = False) -> _Pilot:
    """A pilot asking apart (request_job, then Running; ``turns``: in pilot_turns)."""
    spec = _Spec(
        "p1", PilotResources(site="S", cores=cores), idle_timeout=1000.0, max_jobs=0, crash_rate=0.0
    )
    pilot = _Pilot("p1-0", 0, spec, random.Random(1), time_scale=1.0, now=0.0, turns=turns)
    [(op, args)] = pilot.start(0.0)
    assert op == (Op.PILOT_TURN if turns else Op.REQUEST_JOB)
    assert args.resources.total_cores == cores
    return pilot


ASK = RequestJobArgs("p1", PilotResources(site="S"))


def about(job_id: int) -> UpdateStatusArgs:
    """The arguments of a request about ``job_id`` (what a reply is matched to)."""
    return UpdateStatusArgs(job_id, 1, "p1", "Running")


def reply(result: Any) -> Reply:
    return Reply(id="r", ok=True, result=to_wire(result))


def matched(description: dict[str, Any], job_id: int = 7, cores: int = 1) -> RequestJobReply:
    return RequestJobReply(MatchedJob(job_id, 1, "alice", "g", cores, description), "", [])


def running(pilot: _Pilot) -> None:
    [(op, args)] = pilot.on_reply(Op.REQUEST_JOB, ASK, reply(matched(JOB)), 1.0)
    assert (op, args.status) == (Op.UPDATE_STATUS, "Running")
    assert pilot.on_reply(Op.UPDATE_STATUS, about(7), reply(CommandsReply([])), 1.0) == []


def test_a_stop_command_hands_the_running_job_back_then_ends_the_pilot() -> None:
    pilot = new_pilot()
    running(pilot)
    [(op, args)] = pilot.on_reply(
        Op.HEARTBEAT, about(7), reply(CommandsReply([StopPilot("Killed by an admin")])), 2.0
    )
    assert op == Op.UPDATE_STATUS and isinstance(args, UpdateStatusArgs)
    assert (args.job_id, args.status) == (7, "Rescheduled")
    assert args.minor_status == "Pilot stopped (Killed by an admin): job handed back"
    assert pilot.on_reply(Op.UPDATE_STATUS, about(7), reply(CommandsReply([])), 2.5) == []
    assert pilot.ended and pilot.state is PilotState.DONE


def test_a_stop_command_ends_an_idle_pilot_at_once() -> None:
    pilot = new_pilot()
    stop = RequestJobReply(None, "this pilot was killed by an admin", [StopPilot("x")])
    assert pilot.on_reply(Op.REQUEST_JOB, ASK, reply(stop), 1.0) == []
    assert pilot.ended and pilot.state is PilotState.DONE


def test_a_kill_command_for_its_job_reports_it_killed() -> None:
    pilot = new_pilot()
    running(pilot)
    [step] = pilot.on_reply(
        Op.HEARTBEAT, about(7), reply(CommandsReply([KillJob(8), KillJob(7)])), 2.0
    )
    assert step[1].status == "Killed"


def test_a_description_it_cannot_read_fails_the_job() -> None:
    pilot = new_pilot()
    [(op, args)] = pilot.on_reply(Op.REQUEST_JOB, ASK, reply(matched({"Arguments": "x"})), 1.0)
    assert (op, args.status) == (Op.UPDATE_STATUS, "Failed")
    assert args.minor_status.startswith("Pilot could not prepare the job: ")
    assert "Executable" in args.minor_status


def test_a_malformed_reply_abandons_the_job_instead_of_crashing_the_loop() -> None:
    pilot = new_pilot()
    running(pilot)
    bad = Reply(id="r", ok=True, result={"commands": [{"command": "reboot"}]})
    [step] = pilot.on_reply(Op.HEARTBEAT, about(7), bad, 2.0)
    assert step[0] == Op.REQUEST_JOB  # job abandoned, asks again
    assert "unknown command 'reboot'" in "\n".join(pilot.lines)


def test_a_multi_core_pilot_packs_jobs_into_its_free_cores() -> None:
    pilot = new_pilot(cores=4)
    steps = pilot.on_reply(Op.REQUEST_JOB, ASK, reply(matched(JOB, 7, cores=2)), 1.0)
    [(_, running_args), (op, ask)] = steps
    assert running_args.status == "Running"
    assert op == Op.REQUEST_JOB and (ask.resources.cores, ask.resources.total_cores) == (2, 4)
    steps = pilot.on_reply(Op.REQUEST_JOB, ASK, reply(matched(JOB, 8, cores=1)), 1.5)
    assert [step[0] for step in steps] == [Op.UPDATE_STATUS, Op.REQUEST_JOB]
    assert steps[1][1].resources.cores == 1
    assert sorted(pilot.jobs) == [7, 8]


def test_a_held_pilot_asks_again_only_with_enough_free_cores_or_when_the_hold_ends() -> None:
    pilot = new_pilot(cores=4)
    pilot.on_reply(Op.REQUEST_JOB, ASK, reply(matched(JOB, 7, cores=3)), 1.0)
    pilot.on_reply(Op.UPDATE_STATUS, about(7), reply(CommandsReply([])), 1.0)
    hold = RequestJobReply(None, "hold", [], hold=CoreHold(4, 50.0, "multi"))
    assert pilot.on_reply(Op.REQUEST_JOB, ASK, reply(hold), 1.0) == []
    assert pilot.wake_at is not None and pilot.wake_at <= 51.0
    assert all(op != Op.REQUEST_JOB for op, _ in pilot.on_timer(20.0))  # 1 free of 4: waits
    steps = pilot.on_timer(51.0)  # the hold is over: asks with its 1 free core
    assert any(op == Op.REQUEST_JOB and args.resources.cores == 1 for op, args in steps)


# -- one request per turn (pilot_turn) ---------------------------------------------------------


SHORT = {**JOB, "Arguments": "sleep=1"}


def turned(*jobs: MatchedJob, reason: str = "") -> Reply:
    return reply(PilotTurnReply([], list(jobs), reason, []))


def test_a_turns_jobs_start_at_once_and_their_end_goes_with_the_next_request() -> None:
    pilot = new_pilot(cores=2, turns=True)
    ask = PilotTurnArgs("p1", [], PilotResources(site="S", cores=2), 2)
    steps = pilot.on_reply(Op.PILOT_TURN, ask, turned(MatchedJob(7, 1, "a", "g", 1, SHORT)), 1.0)
    [(op, again)] = steps  # no Running report: it asks for its other core at once
    assert op == Op.PILOT_TURN and (again.count, again.reports) == (1, [])
    assert pilot.on_reply(Op.PILOT_TURN, again, turned(reason="none"), 1.0) == []
    [(op, turn)] = pilot.on_timer(2.0)  # job 7 ended: its report rides the request
    assert op == Op.PILOT_TURN and turn.count == 2
    assert [(r.job_id, r.status) for r in turn.reports] == [(7, "Done")]
    answer = PilotTurnReply([ReportOutcome([])], [MatchedJob(8, 1, "a", "g", 1, SHORT)], "", [])
    pilot.on_reply(Op.PILOT_TURN, turn, reply(answer), 2.0)
    assert sorted(pilot.jobs) == [8]  # 7 reported, 8 running


def test_a_pilot_reports_apart_while_its_turn_is_in_flight() -> None:
    pilot = new_pilot(cores=2, turns=True)
    ask = PilotTurnArgs("p1", [], PilotResources(site="S", cores=2), 2)
    [(op, _)] = pilot.on_reply(
        Op.PILOT_TURN, ask, turned(MatchedJob(7, 1, "a", "g", 1, SHORT)), 1.0
    )
    assert op == Op.PILOT_TURN  # in flight, not answered yet
    [(op, report)] = pilot.on_timer(2.0)
    assert (op, report.job_id, report.status) == (Op.UPDATE_STATUS, 7, "Done")


def test_a_pilot_with_every_core_busy_asks_again_with_its_first_end() -> None:
    pilot = new_pilot(cores=2, turns=True)
    ask = PilotTurnArgs("p1", [], PilotResources(site="S", cores=2), 2)
    both = turned(MatchedJob(7, 1, "a", "g", 1, SHORT), MatchedJob(8, 1, "a", "g", 1, JOB))
    assert pilot.on_reply(Op.PILOT_TURN, ask, both, 1.0) == []  # both cores busy
    [(op, turn)] = pilot.on_timer(2.0)
    assert op == Op.PILOT_TURN and [r.job_id for r in turn.reports] == [7] and turn.count == 1


def test_a_pilot_falls_back_to_request_job_when_the_service_has_no_pilot_turn() -> None:
    pilot = new_pilot(turns=True)
    ask = PilotTurnArgs("p1", [], PilotResources(site="S"), 1)
    unknown = Reply("r", False, error=ErrorInfo("unknown_op", "unknown operation 'pilot_turn'"))
    [(op, _)] = pilot.on_reply(Op.PILOT_TURN, ask, unknown, 1.0)
    assert op == Op.REQUEST_JOB and not pilot.turns
    running(pilot)  # and then as before: Running reported apart
