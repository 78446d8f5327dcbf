"""The wire codec and argument checking, pure."""

from __future__ import annotations

import contextlib
from typing import Any

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dirac_like.errors import (
    DiracLikeError,
    InternalError,
    JobNotFound,
    MessageTooLarge,
    ProtocolError,
    StaleAttempt,
    UnknownOperation,
    UnsupportedVersion,
    error_from_wire,
)
from dirac_like.protocol import (
    ARGUMENTS,
    PROTOCOL_VERSION,
    KillJob,
    Reply,
    Request,
    RequestJobArgs,
    StopPilot,
    SubmitArgs,
    decode_push,
    decode_reply,
    decode_request,
    encode_error,
    encode_ok,
    encode_request,
    parse_args,
    peek_request_id,
)

plain = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
    | st.binary(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
request_ids = st.text(min_size=1, max_size=64)


@given(request_ids, st.sampled_from(sorted(ARGUMENTS)), st.dictionaries(st.text(), plain))
def test_request_round_trip(request_id: str, op: str, args: dict[str, Any]) -> None:
    request = Request(request_id, op, args)
    assert decode_request(encode_request(request)) == request


@given(request_ids, plain)
def test_ok_reply_round_trip(request_id: str, result: Any) -> None:
    assert decode_reply(encode_ok(request_id, result)) == Reply(request_id, True, result)


@given(st.binary(max_size=200))
def test_any_bytes_decode_or_raise_protocol_error(data: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        decode_request(data)  # any other exception fails the test


def test_unknown_op_is_its_own_error() -> None:
    frame = msgpack.packb({"v": PROTOCOL_VERSION, "id": "1", "op": "rm -rf", "args": {}})
    with pytest.raises(UnknownOperation):
        decode_request(frame)


def test_version_is_checked() -> None:
    frame = msgpack.packb({"v": 99, "id": "1", "op": "ping", "args": {}})
    with pytest.raises(UnsupportedVersion, match="99"):
        decode_request(frame)


@pytest.mark.parametrize("version", [True, 1.0, "1", [1]])
def test_protocol_version_true_or_1_0_is_refused(version: Any) -> None:
    """Issue 11, defect 15: only the integer 1 is version 1 (``true == 1.0 == 1`` in Python)."""
    frame = msgpack.packb({"v": version, "id": "1", "op": "ping", "args": {}})
    with pytest.raises(UnsupportedVersion, match="not supported"):
        decode_request(frame)
    reply = msgpack.packb({"v": version, "id": "1", "ok": True, "result": None})
    with pytest.raises(UnsupportedVersion):
        decode_reply(reply)
    assert decode_push(msgpack.packb({"v": version, "push": {"commands": []}})) is None


def test_size_limit_is_checked_before_decoding() -> None:
    frame = encode_request(Request("1", "ping", {"pad": "x" * 2000}))
    with pytest.raises(MessageTooLarge):
        decode_request(frame, max_bytes=1000)


@pytest.mark.parametrize("request_id", ["", "x" * 65, 7, None])
def test_request_id_must_be_a_short_string(request_id: Any) -> None:
    frame = msgpack.packb({"v": PROTOCOL_VERSION, "id": request_id, "op": "ping", "args": {}})
    with pytest.raises(ProtocolError, match="'id'"):
        decode_request(frame)


def test_peek_request_id_of_a_refused_frame() -> None:
    frame = msgpack.packb({"v": 5, "id": "abc", "op": "ping"})
    assert peek_request_id(frame) == "abc"
    assert peek_request_id(b"\xc1garbage") == ""


def test_parse_args_builds_nested_dataclasses() -> None:
    args = parse_args(RequestJobArgs, {"pilot_id": "p", "resources": {"site": "S", "cores": 4}})
    assert args.resources.cores == 4 and args.resources.tags == []


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"pilot_id": "p"}, "missing argument 'resources'"),
        ({"pilot_id": "p", "resources": {"site": "S", "cores": "4"}}, "resources.cores"),
        ({"pilot_id": "p", "resources": {"site": "S", "cores": True}}, "must be int, not bool"),
        ({"pilot_id": "p", "resources": {"site": "S", "tags": ["a", 1]}}, "tags[1]"),
        ({"pilot_id": "p", "resources": {"site": "S"}, "admin": True}, "unknown argument(s) admin"),
        ({"pilot_id": "p", "resources": []}, "resources: must be a map"),
    ],
)
def test_parse_args_names_the_bad_field(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(ProtocolError) as refused:
        parse_args(RequestJobArgs, raw)
    assert message in str(refused.value)


def test_submit_accepts_jdl_text_and_json_mappings() -> None:
    args = parse_args(SubmitArgs, {"descriptions": ["A = 1;", {"Executable": "x"}], "owner": "u"})
    assert args.group == "" and len(args.descriptions) == 2


def test_float_fields_accept_integers() -> None:
    from dirac_like.protocol import SetShareArgs

    assert parse_args(SetShareArgs, {"group": "g", "share": 3}).share == 3.0


@pytest.mark.parametrize("cls", [JobNotFound, StaleAttempt, InternalError, MessageTooLarge])
def test_errors_come_back_as_the_same_class(cls: type[DiracLikeError]) -> None:
    reply = decode_reply(encode_error("1", cls.code, "boom"))
    assert reply.error is not None
    rebuilt = error_from_wire(reply.error.code, reply.error.message)
    assert type(rebuilt) is cls and rebuilt.message == "boom"


def test_unknown_error_code_becomes_internal_error() -> None:
    assert isinstance(error_from_wire("from_the_future", "x"), InternalError)


def test_push_frames_round_trip_and_are_not_replies() -> None:
    from dirac_like.protocol import decode_push, encode_push

    frame = encode_push([KillJob(7), StopPilot("Killed by an admin")])
    assert decode_push(frame) == [KillJob(7), StopPilot("Killed by an admin")]
    assert decode_push(encode_ok("1", {"commands": []})) is None
    assert decode_push(b"\xc1 garbage") is None
    with pytest.raises(ProtocolError):
        decode_reply(frame)
