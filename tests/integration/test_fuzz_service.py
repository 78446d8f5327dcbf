"""Fuzzing the central service (issue 11): hypothesis sends requests of every operation as every
role — plausible arguments built from the protocol's own argument types, wrong types, garbage
frames, request ids shared across identities — to one real service (in this process: real
SQLite store and sandbox files, the real guard, authorization and handlers;
tests/service_harness.py) and checks after each request:

- the service answers (a reply with the request's id) and never with ``internal``;
- a refused request leaves the store unchanged;
- an operation a role may not run is refused ``forbidden``;
- a user's answers name no other owner's job; no answer to a user, pilot, operator or agent
  carries a secret key; the in-memory indexes still agree (``state.validate``).

The budget is fixed (``FUZZ_EXAMPLES``, derandomized: the same examples in every CI run); set
``DIRAC_LIKE_FUZZ_EXAMPLES`` to run more, with fresh randomness, by hand.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from service_harness import InProcessService

from dirac_like.authz import allowed_roles
from dirac_like.config import Config, StoreConfig
from dirac_like.protocol import ARGUMENTS, PROTOCOL_VERSION, Reply, decode_reply

SITE, OTHER_SITE = "Site.A.org", "Site.B.org"
PILOT_ID = f"{SITE}.ce.1"
HELLO = 'Executable = "/bin/echo";'
FUZZ_EXAMPLES = int(os.environ.get("DIRAC_LIKE_FUZZ_EXAMPLES", "0")) or 300
SECRET_FIELD = "secret_key"

# Values the plausible arguments are drawn from: names and ids the grid really has, and a few
# that are wrong in the ways that matter (another site, another pilot, absurd numbers).
NAMES = st.sampled_from(
    [
        "alice",
        "bob",
        "root",
        "admin",
        "",
        "x" * 80,
        "pilot:x",
        "../etc",
        SITE,
        OTHER_SITE,
        PILOT_ID,
        f"{SITE}.ce.2",
        f"{OTHER_SITE}.ce.1",
        "Running",
        "Done",
        "Waiting",
        "input",
        "output",
        "physics",
        "user",
    ]
)
INTEGERS = st.integers(-2, 12) | st.sampled_from([2**31, 2**63 - 1, -(2**63), 2**64 - 1])
DESCRIPTIONS = st.sampled_from(
    [
        HELLO,
        HELLO + f' Site = "{SITE}";',
        'Executable = "/bin/true"; Parameters = 3;',
        "Executable = ;",
        "[",
        HELLO + ' InputSandbox = {"SB:' + "a" * 64 + '"};',
        'Executable = "/bin/true"; Parameters = 100000000;',
        {"Executable": "/bin/true"},
        {},
    ]
)
SHA256 = st.sampled_from(["a" * 64, "b" * 64, "not-a-hash", ""]) | st.builds(
    lambda data: hashlib.sha256(data).hexdigest(), st.binary(max_size=8)
)


def _strategy(hint: Any, name: str) -> st.SearchStrategy[Any]:
    """Plausible wire values for a field of an argument dataclass."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (types.UnionType, typing.Union):
        return st.one_of(*[_strategy(arg, name) for arg in args])
    if hint is type(None):
        return st.none()
    if dataclasses.is_dataclass(hint):
        return _wire_args(hint)
    if origin is list:
        item = DESCRIPTIONS if name == "descriptions" else _strategy(args[0], name)
        return st.lists(item, max_size=4)
    if origin is dict:
        return st.dictionaries(st.text(max_size=4), WIRE_INTEGERS | st.text(max_size=4), max_size=2)
    if name == "sha256":
        return SHA256
    return {
        int: INTEGERS,
        str: NAMES | st.text(max_size=8),
        bool: st.booleans(),
        float: st.floats(allow_nan=True) | st.integers(-2, 10),
        bytes: st.binary(max_size=16),
    }.get(hint, st.none())


def _wire_args(cls: type) -> st.SearchStrategy[dict[str, Any]]:
    """A wire map for ``cls``: its required fields, and some of those with defaults."""
    hints = typing.get_type_hints(cls)
    required, optional = {}, {}
    for field in dataclasses.fields(cls):
        has_default = (
            field.default is not dataclasses.MISSING
            or field.default_factory is not dataclasses.MISSING
        )
        (optional if has_default else required)[field.name] = _strategy(
            hints[field.name], field.name
        )
    return st.fixed_dictionaries(required, optional=optional)


WIRE_INTEGERS = st.integers(-(2**63), 2**64 - 1)  # what msgpack can carry
ANY_VALUE = st.recursive(
    st.none()
    | st.booleans()
    | WIRE_INTEGERS
    | st.floats()
    | st.text(max_size=8)
    | st.binary(max_size=8),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3)
    ),
    max_leaves=8,
)
OPS = sorted(ARGUMENTS)
ROLES = ["admin", "operator", "alice", "bob", "director", "pilot", "site-pilot", "agent"]
REQUEST_IDS = st.sampled_from(["same-id", "r1", "r2"]) | st.text(min_size=1, max_size=12)


@st.composite
def requests(draw: st.DrawFn) -> tuple[str, bytes, str]:
    """(who, frame, op): a request of any operation as any role; now and then a frame that is
    not a valid request at all (then op is '')."""
    who = draw(st.sampled_from(ROLES))
    op = draw(st.sampled_from([*OPS, "format_disk"]))
    kind = draw(st.sampled_from(["plausible"] * 6 + ["any", "garbage", "envelope"]))
    if kind == "garbage":
        return who, draw(st.binary(max_size=40)), ""
    args: Any = draw(
        _wire_args(ARGUMENTS[op]) if op in ARGUMENTS and kind == "plausible" else ANY_VALUE
    )
    frame: dict[str, Any] = {"v": PROTOCOL_VERSION, "id": draw(REQUEST_IDS), "op": op, "args": args}
    if kind == "envelope":
        frame[draw(st.sampled_from(["v", "id", "op", "extra"]))] = draw(ANY_VALUE)
        op = ""
    return who, msgpack.packb(frame, use_bin_type=True), op


@pytest.fixture(scope="module")
def grid(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[InProcessService, dict[str, str]]]:
    """One service for every example, with an identity per role, some jobs of alice and bob,
    and a job matched to the pilot."""
    config = Config(store=StoreConfig(synchronous="normal"))  # no fsync per example
    service = InProcessService(Path(tmp_path_factory.mktemp("fuzz")) / "home", config)
    try:
        keys = _identities(service)
        for owner in ("alice", "bob"):
            service.ok(
                keys[owner],
                "submit",
                {"descriptions": [HELLO, HELLO + f' Site = "{SITE}";'], "owner": ""},
            )
        service.ok(
            keys["pilot"],
            "request_job",
            {"pilot_id": PILOT_ID, "resources": {"site": SITE, "ce": "ce"}},
        )
        yield service, keys
    finally:
        service.close()


def _identities(service: InProcessService) -> dict[str, str]:
    issuer = service.service.issuer
    assert issuer is not None
    [admin] = [e.public_key for e in issuer.registry.by_key.values() if e.principal.name == "admin"]
    return {
        "admin": admin,
        "operator": service.identity("olga", "operator"),
        "alice": service.identity("alice", "user", ("physics",)),
        "bob": service.identity("bob", "user", ("physics",)),
        "director": service.identity("director", "director", site=SITE),
        "pilot": service.identity(f"pilot:{PILOT_ID}", "pilot", site=SITE, pilot_id=PILOT_ID),
        "site-pilot": service.identity("site-pilot", "pilot", site=SITE),
        "agent": service.identity("monitor", "agent"),
    }


ROLE_OF = {
    "admin": "admin",
    "operator": "operator",
    "alice": "user",
    "bob": "user",
    "director": "director",
    "pilot": "pilot",
    "site-pilot": "pilot",
    "agent": "agent",
}


@settings(
    max_examples=FUZZ_EXAMPLES,
    derandomize="DIRAC_LIKE_FUZZ_EXAMPLES" not in os.environ,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(request=requests())
def test_every_operation_as_every_role(
    grid: tuple[InProcessService, dict[str, str]], request: tuple[str, bytes, str]
) -> None:
    service, keys = grid
    who, frame, op = request
    before = service.stored()
    reply = decode_reply(service.frame(keys[who], frame))
    assert reply.ok or reply.error is not None
    event(f"{op}: {'ok' if reply.ok else reply.error.code if reply.error else '?'}")
    if not reply.ok:
        assert reply.error is not None and reply.error.code != "internal", reply.error
        assert service.stored() == before, f"refused {op} changed the store: {reply.error}"
    role = ROLE_OF[who]
    if op in ARGUMENTS and role != "admin" and role not in allowed_roles(op):
        assert not reply.ok and reply.error is not None
        # (arguments of the wrong shape are refused before anyone is asked who may run them)
        assert reply.error.code in ("forbidden", "bad_request"), reply.error
    if reply.ok:
        _check_result(who, role, reply)
    service.state.validate()


def _check_result(who: str, role: str, reply: Reply) -> None:
    for value in _walk(reply.result):
        if role == "user" and "owner" in value and "job_id" in value:
            assert value["owner"] == who, f"{who} was told of {value['owner']}'s job"
        if role not in ("admin", "director"):
            assert SECRET_FIELD not in value, f"{who} got a secret key"


def _walk(value: Any) -> Iterator[dict[str, Any]]:
    """Every map inside a reply's result."""
    if isinstance(value, dict):
        yield value
        for item in value.values():
            yield from _walk(item)
    elif isinstance(value, list):
        for item in value:
            yield from _walk(item)


def test_list_jobs_with_a_limit_beyond_a_machine_integer(
    grid: tuple[InProcessService, dict[str, str]],
) -> None:
    """A limit msgpack carries but Python's islice does not (2**64 - 1, found by the fuzzer) is
    refused as an invalid argument instead of failing inside the service."""
    service, keys = grid
    code, message = service.error(keys["admin"], "list_jobs", {"limit": 2**64 - 1})
    assert code == "invalid_argument" and "limit must be 1 to" in message
