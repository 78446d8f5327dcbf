"""Login tokens for the dashboard (dirac_like/web_login.py): made from an identity file, checked
with the service's keys; forged, expired, over-long, reused and malformed tokens are refused."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dirac_like.identity import Identity, Keypair
from dirac_like.web_login import (
    MAX_LIFETIME,
    LoginRefused,
    UsedNonces,
    check_login_token,
    make_login_token,
)

NOW = 1_800_000_000.0
SERVICE = Keypair.generate()
OTHER_SERVICE = Keypair.generate()


def identity_of(name: str, service: Keypair = SERVICE) -> Identity:
    keys = Keypair.generate()
    return Identity(name, "user", keys.public, keys.secret, service.public, ("users",))


ALICE = identity_of("alice")


def test_a_token_made_from_an_identity_file_is_accepted_by_the_service_keys() -> None:
    claim = check_login_token(make_login_token(ALICE, NOW), SERVICE.secret, NOW + 1)
    assert (claim.public_key, claim.name) == (ALICE.public_key, "alice")


def test_a_token_for_another_service_is_refused() -> None:
    token = make_login_token(identity_of("alice", OTHER_SERVICE), NOW)
    with pytest.raises(LoginRefused, match="bad signature"):
        check_login_token(token, SERVICE.secret, NOW)


def test_a_token_claiming_another_identity_key_is_refused() -> None:
    """Swapping in someone else's public key breaks the signature: the key is part of it."""
    prefix, _claim, mac = make_login_token(ALICE, NOW).split(".")
    bob = identity_of("bob")
    _, bob_claim, _ = make_login_token(bob, NOW).split(".")
    with pytest.raises(LoginRefused, match="bad signature"):
        check_login_token(f"{prefix}.{bob_claim}.{mac}", SERVICE.secret, NOW)


def test_an_expired_token_is_refused() -> None:
    token = make_login_token(ALICE, NOW, lifetime=60)
    with pytest.raises(LoginRefused, match="expired"):
        check_login_token(token, SERVICE.secret, NOW + 61)


def test_a_lifetime_over_the_maximum_cannot_be_made() -> None:
    with pytest.raises(ValueError):
        make_login_token(ALICE, NOW, lifetime=MAX_LIFETIME + 1)


def test_a_token_logs_in_once() -> None:
    claim = check_login_token(make_login_token(ALICE, NOW), SERVICE.secret, NOW)
    used = UsedNonces()
    used.use(claim, NOW)
    with pytest.raises(LoginRefused, match="already used"):
        used.use(claim, NOW + 1)


def test_used_nonces_are_forgotten_once_their_token_expired() -> None:
    used = UsedNonces()
    for number in range(50):
        token = make_login_token(ALICE, NOW + number, lifetime=10)
        used.use(check_login_token(token, SERVICE.secret, NOW + number), NOW + number)
    assert len(used._until) <= 11


@given(st.text(max_size=300))
def test_any_text_is_refused_cleanly(text: str) -> None:
    with pytest.raises(LoginRefused):
        check_login_token(text, SERVICE.secret, NOW)


@given(st.binary(max_size=200), st.binary(max_size=40))
def test_well_formed_garbage_is_refused_cleanly(claim: bytes, mac: bytes) -> None:
    import base64

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).decode().rstrip("=")

    with pytest.raises(LoginRefused):
        check_login_token(f"dlw1.{b64(claim)}.{b64(mac)}", SERVICE.secret, NOW)
