"""Login tokens for the web dashboard, made from an identity file without any network.

``dirac-like web-login`` makes a short-lived token from the user's own identity file; the
dashboard (which runs beside the central service, in its home) checks it. Nothing secret travels:
the token is a claim (the identity's public key, its name, an expiry, a nonce) with an HMAC whose
key only the two ends can compute — the X25519 shared secret of the identity's CurveZMQ keypair
and the central service's keypair (the identity file carries the service's public key; the
dashboard reads the service's secret key from the home). The same Diffie-Hellman that CurveZMQ
itself is built on, run through SHA-256 with a label of its own so the key serves nothing else.

The dashboard then asks the identity registry for the principal of that public key (so a revoked
or expired identity cannot log in), and refuses a token past its expiry, one issued for longer than
:data:`MAX_LIFETIME`, or one already used (the nonce; see :class:`UsedNonces`).

Token text: ``dlw1.<claim>.<mac>``, both parts base64url without padding; the claim is JSON.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from zmq.utils import z85

from dirac_like.errors import Forbidden
from dirac_like.identity import Identity, is_key

TOKEN_PREFIX = "dlw1"
DEFAULT_LIFETIME = 300.0  # seconds: time enough to open the link
MAX_LIFETIME = 3600.0  # a token claiming longer is refused
MAX_TOKEN_CHARS = 1024
KEY_LABEL = b"dirac-like web-login v1"


class LoginRefused(Forbidden):
    """A login token that cannot be used (malformed, forged, expired, used, or its identity
    unknown or revoked). The message says which, for the log; the page says less."""


@dataclass(frozen=True)
class LoginClaim:
    public_key: str  # z85: the identity's CurveZMQ public key
    name: str  # the identity's name (informative: the registry has the final word)
    issued: float
    expires: float
    nonce: str


def login_key(own_secret_z85: str, their_public_z85: str) -> bytes:
    """The HMAC key both ends derive: SHA-256(label || X25519(own secret, their public))."""
    private = X25519PrivateKey.from_private_bytes(z85.decode(own_secret_z85))
    shared = private.exchange(X25519PublicKey.from_public_bytes(z85.decode(their_public_z85)))
    return hashlib.sha256(KEY_LABEL + shared).digest()


def make_login_token(identity: Identity, now: float, lifetime: float = DEFAULT_LIFETIME) -> str:
    """A token for ``identity``, valid for ``lifetime`` seconds from ``now``."""
    if not 0 < lifetime <= MAX_LIFETIME:
        raise ValueError(f"lifetime must be in (0, {MAX_LIFETIME:g}] seconds")
    claim = {
        "k": identity.public_key,
        "n": identity.name,
        "iat": now,
        "exp": now + lifetime,
        "nonce": secrets.token_hex(12),
    }
    body = json.dumps(claim, separators=(",", ":"), sort_keys=True).encode()
    mac = hmac.new(
        login_key(identity.secret_key, identity.service_key), body, hashlib.sha256
    ).digest()
    return f"{TOKEN_PREFIX}.{_b64(body)}.{_b64(mac)}"


def check_login_token(token: str, service_secret_z85: str, now: float) -> LoginClaim:
    """The claim of a genuine, unexpired token; :class:`LoginRefused` otherwise. (Whether its
    identity is still active, and whether its nonce was used, the caller checks.)"""
    body, mac = _split(token)
    claim = _parse_claim(body)
    expected = hmac.new(
        login_key(service_secret_z85, claim.public_key), body, hashlib.sha256
    ).digest()
    if not hmac.compare_digest(expected, mac):
        raise LoginRefused(f"login token for {claim.name!r}: bad signature")
    if claim.expires <= now:
        raise LoginRefused(f"login token for {claim.name!r}: expired")
    if claim.expires - claim.issued > MAX_LIFETIME or claim.issued > now + 60:
        raise LoginRefused(f"login token for {claim.name!r}: lifetime out of bounds")
    return claim


class UsedNonces:
    """Nonces of tokens already used, each remembered until its token expires: a token logs in
    once. Pure (``now`` passed in); bounded, since every remembered token expires within
    :data:`MAX_LIFETIME`."""

    def __init__(self) -> None:
        self._until: dict[str, float] = {}

    def use(self, claim: LoginClaim, now: float) -> None:
        """Mark the claim's nonce used; LoginRefused if it was already."""
        self._until = {nonce: until for nonce, until in self._until.items() if until > now}
        if claim.nonce in self._until:
            raise LoginRefused(f"login token for {claim.name!r}: already used")
        self._until[claim.nonce] = claim.expires


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _split(token: str) -> tuple[bytes, bytes]:
    token = token.strip()
    parts = token.split(".")
    if len(token) > MAX_TOKEN_CHARS or len(parts) != 3 or parts[0] != TOKEN_PREFIX:
        raise LoginRefused("not a dirac-like login token")
    try:
        return _unb64(parts[1]), _unb64(parts[2])
    except (binascii.Error, ValueError):
        raise LoginRefused("login token: bad encoding") from None


def _parse_claim(body: bytes) -> LoginClaim:
    try:
        raw = json.loads(body)
        claim = LoginClaim(
            str(raw["k"]), str(raw["n"]), float(raw["iat"]), float(raw["exp"]), str(raw["nonce"])
        )
    except (ValueError, KeyError, TypeError):
        raise LoginRefused("login token: bad claim") from None
    if not is_key(claim.public_key):
        raise LoginRefused("login token: bad public key")
    return claim
