"""The typed wire: every op has its arguments, reply, handler and authz rule; replies are checked
on the client's side as arguments are on the service's; the pilot command union round-trips."""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dirac_like.authz import RULES
from dirac_like.errors import ProtocolError
from dirac_like.protocol import (
    ARGUMENTS,
    REPLIES,
    CommandsReply,
    JobSummary,
    KillJob,
    KillReply,
    MatchedJob,
    Op,
    PilotCommand,
    RequestJobReply,
    StopPilot,
    decode_command,
    decode_push,
    decode_reply,
    encode_command,
    encode_ok,
    encode_push,
    parse_reply,
    to_wire,
)
from dirac_like.services.handlers import HANDLERS

OPS = sorted(value for name, value in vars(Op).items() if name.isupper())
SUMMARY = {
    "job_id": 1,
    "status": "Done",
    "minor_status": "",
    "application_status": "",
    "site": "S",
    "owner": "alice",
    "group": "g",
    "job_name": "",
    "attempt": 1,
    "pilot_id": "p1",
}


def test_every_op_has_arguments_a_reply_a_handler_and_an_authz_rule() -> None:
    assert len(OPS) == 40 + 8 + 14 + 1 + 3  # + console (14), data (17), HA (18), batches, turn (15)
    for table in (ARGUMENTS, REPLIES, HANDLERS, RULES):
        assert sorted(table) == OPS


@pytest.mark.parametrize("command", [KillJob(7), StopPilot("Killed by an admin"), StopPilot()])
def test_a_command_round_trips(command: PilotCommand) -> None:
    assert decode_command(encode_command(command)) == command
    assert decode_push(encode_push([command])) == [command]


def test_commands_are_tagged_maps_on_the_wire() -> None:
    assert encode_command(KillJob(7)) == {"command": "kill", "job_id": 7}
    assert to_wire(CommandsReply([StopPilot("x")])) == {
        "commands": [{"command": "stop", "reason": "x"}]
    }


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ({"command": "drain"}, "unknown command 'drain'"),
        ({"job_id": 7}, "unknown command"),
        ({"command": "kill"}, "missing argument 'job_id'"),
        ({"command": "kill", "job_id": "7"}, "must be int"),
        ({"command": "stop", "reason": "x", "extra": 1}, "unknown argument"),
        (["kill", 7], "must be a map"),
    ],
)
def test_a_bad_command_is_a_protocol_error(raw: Any, problem: str) -> None:
    with pytest.raises(ProtocolError, match=problem):
        decode_command(raw)


def test_a_push_with_a_bad_command_is_a_protocol_error_and_a_reply_is_no_push() -> None:
    import msgpack

    frame = msgpack.packb({"v": 1, "push": {"commands": [{"command": "reboot"}]}})
    with pytest.raises(ProtocolError, match=r"push\.commands\[0\]: unknown command 'reboot'"):
        decode_push(frame)
    assert decode_push(encode_ok("1", CommandsReply([KillJob(1)]))) is None


def test_replies_round_trip_through_the_wire_form() -> None:
    description = {"Executable": "/bin/echo", "InputSandbox": ["SB:ab"], "CPUTime": 60}
    reply = RequestJobReply(MatchedJob(3, 2, "alice", "g", 4, description), "", [KillJob(9)])
    assert parse_reply(Op.REQUEST_JOB, to_wire(reply)) == reply
    assert parse_reply(Op.KILL, {"killed": [1], "kill_requested": []}) == KillReply([1], [])
    assert parse_reply(Op.STATUS, [SUMMARY]) == [JobSummary(**SUMMARY)]


@pytest.mark.parametrize(
    ("op", "raw", "problem"),
    [
        (Op.KILL, {"killed": [1]}, "reply to kill: missing argument 'kill_requested'"),
        (Op.KILL, {"killed": ["1"], "kill_requested": []}, r"reply to kill\.killed\[0\]"),
        (Op.SUBMIT, [1, 2], "reply to submit: must be a map"),
        (Op.STATUS, {"job_id": 1}, "reply to status: must be a list"),
        (Op.STATUS, [{**SUMMARY, "status": None}], r"reply to status\[0\]\.status"),
        (
            Op.REQUEST_JOB,
            {"job": None, "reason": "", "commands": [{"command": "x"}]},
            r"reply to request_job\.commands\[0\]: unknown command",
        ),
        (
            Op.REQUEST_JOB,
            {"job": {"job_id": 1}, "reason": "", "commands": []},
            r"reply to request_job\.job: wrong type",
        ),
        (Op.PING, None, "reply to ping: must be a map"),
        (Op.HEARTBEAT, {"commands": [], "surprise": 1}, "unknown argument"),
    ],
)
def test_a_malformed_reply_is_a_protocol_error(op: str, raw: Any, problem: str) -> None:
    with pytest.raises(ProtocolError, match=problem):
        parse_reply(op, raw)


def _values(hint: Any) -> st.SearchStrategy[Any]:
    """Values of a reply type as msgpack can carry them (Any: a plain scalar)."""
    if hint is Any:
        return st.none() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=8)
    if hint == PilotCommand:
        return st.builds(KillJob, st.integers(0, 2**63 - 1)) | st.builds(StopPilot, st.text())
    if dataclasses.is_dataclass(hint):
        hints = typing.get_type_hints(hint)
        fields = {f.name: _values(hints[f.name]) for f in dataclasses.fields(hint)}
        return st.builds(hint, **fields)
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is list:
        return st.lists(_values(args[0]), max_size=3)
    if origin is dict:
        return st.dictionaries(st.text(max_size=8), _values(args[1]), max_size=3)
    if origin in (typing.Union, types.UnionType):
        return st.one_of(*(_values(arg) for arg in args))
    scalars: dict[Any, st.SearchStrategy[Any]] = {
        int: st.integers(-(2**63), 2**63 - 1),
        float: st.floats(allow_nan=False),
        str: st.text(max_size=20),
        bool: st.booleans(),
        bytes: st.binary(max_size=20),
        type(None): st.none(),
    }
    return scalars[hint]


@pytest.mark.parametrize("op", OPS)
def test_every_reply_type_round_trips_through_msgpack(op: str) -> None:
    @settings(max_examples=25, deadline=None)
    @given(reply=_values(REPLIES[op]))
    def round_trip(reply: Any) -> None:
        frame = decode_reply(encode_ok("r1", reply))
        assert parse_reply(op, frame.result) == reply

    round_trip()
