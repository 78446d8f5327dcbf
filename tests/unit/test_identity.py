"""Identities without sockets: identity files, the registry, init, the ZAP decision, which
identity a client uses."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from zmq.utils import z85

from dirac_like.authz import Principal, Role
from dirac_like.config import SecurityConfig
from dirac_like.errors import ConfigError, Forbidden, InvalidArgument, NotFound
from dirac_like.identity import (
    Identity,
    Keypair,
    load_identity,
    resolve_identity,
    save_identity,
    set_default_identity,
)
from dirac_like.protocol import IdentityAddArgs
from dirac_like.registry import (
    IdentityRegistry,
    RegistryEntry,
    identity_for,
    init_home,
    load_registry,
)
from dirac_like.services.identities import IdentityIssuer, principal_from
from dirac_like.services.zap import zap_reply

NOW = 1_000_000.0
ADMIN = Principal("admin", Role.ADMIN)
ALICE = Principal("alice", Role.USER, groups=("physics",))


def key() -> str:
    return Keypair.generate().public


def registry_with(*principals: Principal) -> tuple[IdentityRegistry, dict[str, str]]:
    registry = IdentityRegistry()
    keys = {}
    for principal in principals:
        keys[principal.name] = key()
        registry.add(principal, keys[principal.name], NOW)
    return registry, keys


def token(site: str, pilot_id: str, expires: float) -> Principal:
    return Principal(f"pilot:{pilot_id}", Role.PILOT, site=site, pilot_id=pilot_id, expires=expires)


# -- the registry ------------------------------------------------------------------------------


def test_lookup_gives_the_principal_of_a_registered_key() -> None:
    registry, keys = registry_with(ADMIN, ALICE)
    assert registry.lookup(keys["alice"], NOW) == ALICE
    assert registry.admits(keys["alice"], NOW)


def test_an_unknown_key_is_refused() -> None:
    registry, _ = registry_with(ADMIN)
    with pytest.raises(Forbidden, match="unknown identity"):
        registry.lookup(key(), NOW)
    assert not registry.admits(key(), NOW)


def test_a_revoked_identity_is_refused_and_stays_listed() -> None:
    registry, keys = registry_with(ADMIN, ALICE)
    registry.revoke("alice", NOW + 1)
    with pytest.raises(Forbidden, match="alice was revoked"):
        registry.lookup(keys["alice"], NOW + 2)
    assert not registry.admits(keys["alice"], NOW + 2)
    [entry] = [e for e in registry.entries() if e.principal.name == "alice"]
    assert entry.view(NOW + 2)["state"] == "revoked"


def test_an_expired_pilot_token_is_refused_from_its_expiry_on() -> None:
    registry, keys = registry_with(ADMIN, token("A.site", "A.site.ce.1", NOW + 10))
    assert registry.lookup(keys["pilot:A.site.ce.1"], NOW + 9.9).site == "A.site"
    with pytest.raises(Forbidden, match="expired"):
        registry.lookup(keys["pilot:A.site.ce.1"], NOW + 10)
    assert not registry.admits(keys["pilot:A.site.ce.1"], NOW + 10)


def test_a_name_held_by_an_active_identity_is_refused() -> None:
    registry, _ = registry_with(ADMIN, ALICE)
    with pytest.raises(InvalidArgument, match="alice exists"):
        registry.add(ALICE, key(), NOW)


def test_a_revoked_name_can_be_issued_again_with_a_new_key() -> None:
    registry, old = registry_with(ADMIN, ALICE)
    registry.revoke("alice", NOW)
    new = key()
    registry.add(ALICE, new, NOW + 1)
    assert registry.lookup(new, NOW + 2) == ALICE
    assert not registry.admits(old["alice"], NOW + 2)


def test_a_new_token_for_the_same_pilot_replaces_the_old_one() -> None:
    registry, keys = registry_with(ADMIN, token("A", "A.ce.1", NOW + 100))
    fresh = key()
    registry.add(token("A", "A.ce.1", NOW + 200), fresh, NOW + 1)
    assert registry.admits(fresh, NOW + 2)
    assert not registry.admits(keys["pilot:A.ce.1"], NOW + 2)


def test_the_last_active_admin_cannot_be_revoked() -> None:
    registry, _ = registry_with(ADMIN, ALICE)
    with pytest.raises(InvalidArgument, match="last active admin"):
        registry.revoke("admin", NOW)
    registry.add(Principal("root", Role.ADMIN), key(), NOW)
    registry.revoke("admin", NOW)  # another admin remains


def test_revoking_an_unknown_name_is_not_found() -> None:
    registry, _ = registry_with(ADMIN)
    with pytest.raises(NotFound):
        registry.revoke("nobody", NOW)


def test_expired_pilot_tokens_are_purged_after_the_grace_only() -> None:
    registry, keys = registry_with(ADMIN, ALICE, token("A", "A.ce.1", NOW + 10))
    registry.saved()
    assert registry.purge(NOW + 10 + 99, after=100) == 0
    assert not registry.dirty
    assert registry.purge(NOW + 10 + 100, after=100) == 1
    assert registry.dirty
    assert keys["pilot:A.ce.1"] not in registry.by_key
    assert {e.principal.name for e in registry.entries(pilot_tokens=True)} == {"admin", "alice"}


def test_pilot_tokens_are_listed_only_when_asked() -> None:
    registry, _ = registry_with(ADMIN, token("A", "A.ce.1", NOW + 10))
    assert [e.principal.name for e in registry.entries()] == ["admin"]
    assert len(registry.entries(pilot_tokens=True)) == 2


def test_the_registry_round_trips_through_json() -> None:
    registry, _ = registry_with(ADMIN, ALICE, token("A", "A.ce.1", NOW + 10))
    registry.revoke("alice", NOW + 1)
    again = IdentityRegistry.from_json(registry.to_json(), "test")
    assert again.by_key == registry.by_key


def test_a_registry_entry_with_a_bad_key_is_a_config_error() -> None:
    data = RegistryEntry(ALICE, key()).to_json()
    data["public_key"] = "short"
    with pytest.raises(ConfigError, match="bad public key"):
        RegistryEntry.from_json(data)


# -- identity files ----------------------------------------------------------------------------


def make_identity(name: str = "alice", **fields: object) -> Identity:
    client, service = Keypair.generate(), Keypair.generate()
    values: dict[str, object] = {
        "name": name,
        "role": "user",
        "public_key": client.public,
        "secret_key": client.secret,
        "service_key": service.public,
    }
    values.update(fields)
    return Identity(**values)  # type: ignore[arg-type]


def test_an_identity_file_is_private_and_round_trips(tmp_path: Path) -> None:
    identity = make_identity(groups=("a", "b"), server="tcp://host:1")
    path = tmp_path / "sub" / "alice.identity"
    save_identity(path, identity)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_identity(path) == identity


def test_an_identity_file_that_is_not_one_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "x.identity"
    path.write_text("{not json")
    with pytest.raises(ConfigError, match=str(path)):
        load_identity(path)
    path.write_text(json.dumps({"name": "x", "role": "user"}))
    with pytest.raises(ConfigError, match="not an identity file"):
        load_identity(path)
    with pytest.raises(ConfigError, match="cannot read"):
        load_identity(tmp_path / "missing.identity")


def test_a_bad_key_in_an_identity_is_refused() -> None:
    with pytest.raises(ConfigError, match="service_key"):
        make_identity(service_key="not a key")


def test_which_identity_a_client_uses(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    files = {}
    for name in ("explicit", "environment", "default"):
        files[name] = tmp_path / f"{name}.identity"
        save_identity(files[name], make_identity(name))
    monkeypatch.delenv("DIRAC_LIKE_IDENTITY", raising=False)
    assert resolve_identity(None, home) is None  # nothing anywhere: plaintext
    set_default_identity(home, files["default"])
    assert resolve_identity(None, home).name == "default"  # type: ignore[union-attr]
    monkeypatch.setenv("DIRAC_LIKE_IDENTITY", str(files["environment"]))
    assert resolve_identity(None, home).name == "environment"  # type: ignore[union-attr]
    assert resolve_identity(files["explicit"], home).name == "explicit"  # type: ignore[union-attr]


# -- init --------------------------------------------------------------------------------------


def test_init_makes_private_keys_registry_and_a_default_admin(tmp_path: Path) -> None:
    home = tmp_path / "home"
    result = init_home(home, NOW)
    assert result.created
    for path in (
        home / "keys" / "service.key",
        home / "identities.json",
        result.admin_identity,
        home / "default-identity",
    ):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    for folder in (home / "keys", home / "identities"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder
    admin = load_identity(result.admin_identity)
    assert (admin.name, admin.role) == ("admin", "admin")
    assert load_registry(home).lookup(admin.public_key, NOW).role is Role.ADMIN
    assert resolve_identity(None, home) == admin


def test_init_of_an_initialized_home_changes_nothing(tmp_path: Path) -> None:
    first = init_home(tmp_path, NOW)
    before = {path: path.read_bytes() for path in tmp_path.rglob("*") if path.is_file()}
    again = init_home(tmp_path, NOW + 1)
    assert not again.created and again.admin_identity == first.admin_identity
    assert {path: path.read_bytes() for path in tmp_path.rglob("*") if path.is_file()} == before


def test_init_refuses_a_half_initialized_home(tmp_path: Path) -> None:
    init_home(tmp_path, NOW)
    (tmp_path / "default-identity").unlink()
    with pytest.raises(ConfigError, match="partly initialized"):
        init_home(tmp_path, NOW)


# -- issuing -----------------------------------------------------------------------------------


def test_issued_identities_carry_the_principal_and_the_service_key() -> None:
    registry, _ = registry_with(ADMIN)
    service = Keypair.generate()
    issuer = IdentityIssuer(registry, service.public, SecurityConfig(pilot_token_lifetime=60.0))
    alice = issuer.issue(ALICE, NOW)
    assert (alice.name, alice.groups, alice.service_key) == ("alice", ("physics",), service.public)
    assert registry.lookup(alice.public_key, NOW) == ALICE
    pilot = issuer.pilot_token("A", "A.ce.7", NOW)
    assert pilot.is_pilot_token() and pilot.expires == NOW + 60.0
    assert registry.lookup(pilot.public_key, NOW).pilot_id == "A.ce.7"
    site_wide = issuer.pilot_token("A", "", NOW)
    assert registry.lookup(site_wide.public_key, NOW).site == "A"


def test_identity_for_keeps_the_secret_with_the_right_public_key() -> None:
    keypair = Keypair.generate()
    entry = RegistryEntry(ALICE, keypair.public)
    identity = identity_for(entry, keypair, Keypair.generate().public)
    assert (identity.public_key, identity.secret_key) == (keypair.public, keypair.secret)


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (IdentityAddArgs("bob", "wizard"), "not one of"),
        (IdentityAddArgs("bad name", "user"), "not valid"),
        (IdentityAddArgs("d", "director"), "give its site"),
        (IdentityAddArgs("pilot:x", "user"), "pilot tokens"),
        (IdentityAddArgs("bob", "user", ["no spaces"]), "not valid"),
    ],
)
def test_an_identity_request_is_checked(args: IdentityAddArgs, problem: str) -> None:
    with pytest.raises(InvalidArgument, match=problem):
        principal_from(args)


def test_an_identity_request_gives_its_principal() -> None:
    args = IdentityAddArgs("dir", "director", ["g", "g"], "A.site")
    assert principal_from(args) == Principal("dir", Role.DIRECTOR, ("g",), "A.site")


# -- the ZAP decision --------------------------------------------------------------------------


def zap_request(mechanism: bytes, *credentials: bytes) -> list[bytes]:
    return [b"1.0", b"7", b"dirac-like", b"127.0.0.1", b"", mechanism, *credentials]


def test_zap_admits_a_known_key_with_it_as_the_user_id() -> None:
    keypair = Keypair.generate()
    raw = z85.decode(keypair.public)
    reply, key_seen = zap_reply(zap_request(b"CURVE", raw), lambda k: k == keypair.public)
    assert reply == [b"1.0", b"7", b"200", b"OK", keypair.public.encode(), b""]
    assert key_seen == keypair.public


def test_zap_refuses_an_unknown_key() -> None:
    raw = bytes(32)
    reply, _ = zap_reply(zap_request(b"CURVE", raw), lambda k: False)
    assert reply[2] == b"400" and reply[4] == b""


@pytest.mark.parametrize(
    "request_frames",
    [
        zap_request(b"NULL"),
        zap_request(b"PLAIN", b"user", b"password"),
        zap_request(b"CURVE", b"short"),
        [b"1.0", b"7"],
        [b"9.9", b"7", b"d", b"a", b"", b"CURVE", bytes(32)],
        [],
    ],
)
def test_zap_refuses_anything_but_curve(request_frames: list[bytes]) -> None:
    reply, _ = zap_reply(request_frames, lambda k: True)
    assert reply[2] == b"400"


@given(st.lists(st.binary(max_size=40), max_size=9))
def test_zap_answers_any_frames_without_raising(frames: list[bytes]) -> None:
    reply, _ = zap_reply(frames, lambda k: False)
    assert len(reply) == 6 and reply[2] == b"400"
