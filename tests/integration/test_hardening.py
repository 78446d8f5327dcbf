"""Issue 11's security defects, one named regression test each, on a real central service
driven in this process (tests/service_harness.py: real SQLite store, real sandbox files, the
real guard and authorization; no socket). Each test fails on the code before its fix.

Defects 11 and 15 have theirs in test_security.py (over the wire) and test_protocol.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from service_harness import InProcessService

from dirac_like.config import Config, JobsConfig, ServiceConfig

HELLO = 'Executable = "/bin/echo"; Arguments = "hello";'
SITE = "Site.A.org"


@pytest.fixture
def grid(tmp_path: Path) -> Iterator[InProcessService]:
    service = InProcessService(tmp_path / "home")
    try:
        yield service
    finally:
        service.close()


def admin_key(grid: InProcessService) -> str:
    issuer = grid.service.issuer
    assert issuer is not None
    [entry] = [e for e in issuer.registry.by_key.values() if e.principal.name == "admin"]
    return str(entry.public_key)


# -- defect 1: the reply cache ------------------------------------------------------------------


def test_a_request_id_is_no_key_to_another_identitys_reply(grid: InProcessService) -> None:
    """An admin's new identity (secret key inside), a director's pilot token, a user's job
    ids: another identity sending the same request id gets none of them."""
    admin = admin_key(grid)
    alice = grid.identity("alice", "user", ("physics",))
    bob = grid.identity("bob", "user", ("physics",))
    director = grid.identity("director", "director", site=SITE)
    issued = grid.ok(admin, "identity_add", {"name": "carol", "role": "user"}, "id-1")
    token = grid.ok(director, "pilot_token", {"site": SITE}, "id-2")
    alices_jobs = grid.ok(alice, "submit", {"descriptions": [HELLO], "owner": ""}, "id-3")

    assert grid.error(alice, "identity_add", {"name": "carol", "role": "user"},
                      "id-1")[0] == "forbidden"
    assert grid.error(alice, "pilot_token", {"site": SITE}, "id-2")[0] == "forbidden"
    bobs_jobs = grid.ok(bob, "submit", {"descriptions": [HELLO], "owner": ""}, "id-3")
    assert bobs_jobs != alices_jobs  # a new submission of bob's own, not alice's reply
    assert grid.ok(alice, "submit", {"descriptions": [HELLO], "owner": ""},
                   "id-3") == alices_jobs  # her own retry still gets her first reply
    assert issued["secret_key"] and token["secret_key"]


def test_a_reply_with_a_secret_is_forgotten_soon_and_never_stored(tmp_path: Path) -> None:
    config = Config(service=ServiceConfig(secret_reply_memory=30.0))
    grid = InProcessService(tmp_path / "home", config)
    try:
        admin = admin_key(grid)
        first = grid.ok(admin, "identity_add", {"name": "carol", "role": "user"}, "add-carol")
        grid.now += 10
        again = grid.ok(admin, "identity_add", {"name": "carol", "role": "user"}, "add-carol")
        assert again == first  # a retry soon after gets the same reply
        assert first["secret_key"].encode() not in grid.stored()
        grid.now += 31
        grid.service.state.expire(grid.now)
        code, message = grid.error(admin, "identity_add", {"name": "carol", "role": "user"},
                                   "add-carol")
        assert code == "invalid_argument" and "carol" in message  # no secret handed out again
    finally:
        grid.close()


def test_a_refused_request_leaves_the_store_unchanged(grid: InProcessService) -> None:
    alice = grid.identity("alice", "user", ("physics",))
    before = grid.stored()
    assert grid.error(alice, "ban_site", {"site": SITE, "reason": "x"})[0] == "forbidden"
    assert grid.error(alice, "submit", {"descriptions": ["Executable = ;"], "owner": ""})
    assert grid.stored() == before


def submit_args(*descriptions: Any) -> dict[str, Any]:
    return {"descriptions": list(descriptions), "owner": ""}
