"""The per-request checks of a secure service (services/guard.py) and the ownership adapter,
without sockets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dirac_like.authz import Principal, Role
from dirac_like.config import Config, SecurityConfig
from dirac_like.errors import Forbidden, RateLimited
from dirac_like.identity import Keypair
from dirac_like.protocol import PilotResources, Request, SubmitArgs
from dirac_like.ratelimit import RateLimiter
from dirac_like.registry import IdentityRegistry
from dirac_like.services.audit import AuditLog
from dirac_like.services.guard import Guard
from dirac_like.services.identities import IdentityIssuer
from dirac_like.services.ownership import StateOwnership
from dirac_like.services.state import CentralState
from dirac_like.store.memory import MemoryStore

NOW = 1_000_000.0
ALICE = Principal("alice", Role.USER, groups=("physics",))
HELLO = 'Executable = "/bin/true";'


@pytest.fixture
def state() -> CentralState:
    store = MemoryStore()
    return CentralState(Config(), store, store.load(), NOW)


def make_guard(tmp_path: Path, rate: float = 0.0) -> tuple[Guard, dict[str, str]]:
    registry = IdentityRegistry()
    keys = {"admin": Keypair.generate().public, "alice": Keypair.generate().public}
    registry.add(Principal("admin", Role.ADMIN), keys["admin"], NOW)
    registry.add(ALICE, keys["alice"], NOW)
    issuer = IdentityIssuer(registry, Keypair.generate().public, SecurityConfig())
    limiter = RateLimiter(rate, 2) if rate else RateLimiter(0, 1)
    return Guard(issuer, limiter, AuditLog(tmp_path / "audit.log")), keys


def audit_lines(tmp_path: Path) -> list[dict[str, object]]:
    path = tmp_path / "audit.log"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def submit(owner: str = "bob") -> tuple[Request, SubmitArgs]:
    raw = {"descriptions": [HELLO], "owner": owner, "group": ""}
    return Request("r1", "submit", raw), SubmitArgs([HELLO], owner, "")


def test_the_principal_is_the_registrys(tmp_path: Path) -> None:
    guard, keys = make_guard(tmp_path)
    request, _ = submit()
    assert guard.principal(keys["alice"], request, NOW) == ALICE


def test_a_revoked_key_is_refused_and_audited(tmp_path: Path) -> None:
    guard, keys = make_guard(tmp_path)
    guard.issuer.registry.revoke("alice", NOW)
    request, _ = submit()
    with pytest.raises(Forbidden, match="revoked"):
        guard.principal(keys["alice"], request, NOW)
    [line] = audit_lines(tmp_path)
    assert (line["principal"], line["outcome"]) == ("alice", "refused")


def test_admit_returns_the_arguments_authorize_decides(tmp_path: Path, state: CentralState) -> None:
    guard, _ = make_guard(tmp_path)
    request, args = submit(owner="bob")
    admitted = guard.admit(ALICE, request, args, StateOwnership(state), NOW)
    assert (admitted.owner, admitted.group) == ("alice", "physics")  # not bob


def test_a_forbidden_request_is_audited(tmp_path: Path, state: CentralState) -> None:
    guard, _ = make_guard(tmp_path)
    request = Request("r2", "ban_site", {"site": "X", "reason": "r"})
    with pytest.raises(Forbidden):
        guard.admit(ALICE, request, request.args, StateOwnership(state), NOW)
    assert audit_lines(tmp_path)[0]["op"] == "ban_site"


def test_the_rate_limit_applies_per_identity(tmp_path: Path, state: CentralState) -> None:
    guard, _ = make_guard(tmp_path, rate=1.0)  # bursts of 2
    request, args = submit()
    ownership = StateOwnership(state)
    guard.admit(ALICE, request, args, ownership, NOW)
    guard.admit(ALICE, request, args, ownership, NOW)
    with pytest.raises(RateLimited):
        guard.admit(ALICE, request, args, ownership, NOW)
    admin = Principal("admin", Role.ADMIN)
    guard.admit(admin, request, args, ownership, NOW)  # another identity, another bucket


def test_ownership_reads_jobs_and_pilots(state: CentralState) -> None:
    [job_id] = state.submit([HELLO], "alice", "physics", NOW)
    [pilot_id] = state.pilots.add("Site.A", "ce", "local", 1, NOW)
    ownership = StateOwnership(state)
    assert ownership.job_owner(job_id) == "alice"
    assert ownership.job_owner(job_id + 1) is None
    assert ownership.job_pilot(job_id) is None  # not matched yet
    assert ownership.pilot_site(pilot_id) == "Site.A"
    assert ownership.pilot_site("nope") is None
    job = state.request_job(pilot_id, PilotResources(site="Site.A"), NOW)
    assert job is not None and ownership.job_pilot(job_id) == pilot_id
