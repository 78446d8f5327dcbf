"""Identities on the client side: the identity file, CurveZMQ keys, and which identity to use.

An identity file (JSON, mode 0600) is what a user, admin, director, agent or pilot presents to
the central service: who it is (name, role, groups, site; the service's registry has the final
word on those), its own CurveZMQ keypair and the service's public key, and optionally the
service's endpoint. ``dirac-like init`` writes the first one (an admin) into the service's home;
``dirac-like admin identity add`` issues others; a director obtains a short-lived one for each
pilot it submits (a *pilot token*).

Which identity a client command uses: ``--identity FILE``, else ``$DIRAC_LIKE_IDENTITY``, else
the home's default (the file named in ``HOME/default-identity``), else none (plaintext, which
only a service started with ``--insecure`` answers).
"""

from __future__ import annotations

import json
import logging
import os
import stat
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import zmq
from zmq.utils import z85

from dirac_like.config import default_home
from dirac_like.errors import ConfigError
from dirac_like.files import write_atomic

log = logging.getLogger(__name__)

IDENTITY_VARIABLE = "DIRAC_LIKE_IDENTITY"
DEFAULT_IDENTITY_FILE = "default-identity"  # in the home: the path of the default identity
IDENTITY_FORMAT = 1
KEY_LENGTH = 40  # z85 text of a 32-byte Curve25519 key


@dataclass(frozen=True)
class Keypair:
    public: str  # z85
    secret: str  # z85

    @classmethod
    def generate(cls) -> Keypair:
        public, secret = zmq.curve_keypair()
        return cls(public.decode("ascii"), secret.decode("ascii"))


@dataclass(frozen=True)
class Identity:
    """The contents of an identity file."""

    name: str
    role: str
    public_key: str
    secret_key: str
    service_key: str  # the central service's public key
    groups: tuple[str, ...] = ()
    site: str = ""
    pilot_id: str = ""
    expires: float = 0.0  # epoch seconds; 0: does not expire
    server: str = ""  # the service's endpoint, when known
    format: int = field(default=IDENTITY_FORMAT)

    def __post_init__(self) -> None:
        for name in ("public_key", "secret_key", "service_key"):
            if not is_key(getattr(self, name)):
                raise ConfigError(f"identity {self.name!r}: {name} is not a z85 CurveZMQ key")

    def to_wire(self) -> dict[str, Any]:
        data = asdict(self)
        data["groups"] = list(self.groups)
        return data

    @classmethod
    def from_wire(cls, data: Any, where: str = "identity") -> Identity:
        if not isinstance(data, dict):
            raise ConfigError(f"{where}: expected a JSON object")
        try:
            groups = tuple(str(group) for group in data.get("groups", ()))
            values = {**data, "groups": groups, "expires": float(data.get("expires", 0.0))}
            identity = cls(**values)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{where}: not an identity file ({exc})") from None
        if identity.format != IDENTITY_FORMAT:
            raise ConfigError(f"{where}: identity format {identity.format!r} is not supported")
        return identity

    def is_pilot_token(self) -> bool:
        """A short-lived credential a director obtained for one pilot."""
        return self.role == "pilot" and self.expires > 0


def is_key(text: Any) -> bool:
    if not isinstance(text, str) or len(text) != KEY_LENGTH:
        return False
    try:
        z85.decode(text)
    except (ValueError, KeyError):
        return False
    return True


# -- files -------------------------------------------------------------------------------------


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically, readable by its owner only (0600), and fsync it
    and its folder: after a crash the file is either the old one or the new one, whole."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, text.encode("utf-8"), mode=0o600)


def save_identity(path: Path, identity: Identity) -> None:
    write_private(path, json.dumps(identity.to_wire(), indent=2) + "\n")


def load_identity(path: Path) -> Identity:
    """The identity in ``path``; ConfigError naming the file if it cannot be used."""
    try:
        text = path.read_text(encoding="utf-8")
        mode = path.stat().st_mode
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError(f"cannot read identity file {path}: {reason}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning(
            "identity file %s can be read by others (mode %o): chmod 600 it",
            path,
            stat.S_IMODE(mode),
        )
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"identity file {path} is not valid JSON: {exc}") from None
    return Identity.from_wire(data, f"identity file {path}")


def default_identity_path(home: Path) -> Path | None:
    """The home's default identity file (named in ``HOME/default-identity``), if it has one."""
    pointer = home / DEFAULT_IDENTITY_FILE
    try:
        named = pointer.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError):
        raise ConfigError(f"cannot read {pointer}") from None
    return home / named if named else None


def set_default_identity(home: Path, identity_path: Path) -> None:
    """Make ``identity_path`` the home's default identity (stored relative to the home when it
    lies inside it, so the home can be moved)."""
    try:
        named = str(identity_path.relative_to(home))
    except ValueError:
        named = str(identity_path.resolve())
    write_private(home / DEFAULT_IDENTITY_FILE, named + "\n")


def identity_path_for(explicit: str | Path | None = None, home: Path | None = None) -> Path | None:
    """Which identity file to use: ``explicit``, else ``$DIRAC_LIKE_IDENTITY``, else the home's
    default (``home`` or ``$DIRAC_LIKE_HOME``); None when there is none."""
    if explicit:
        return Path(explicit)
    from_environment = os.environ.get(IDENTITY_VARIABLE)
    if from_environment:
        return Path(from_environment)
    return default_identity_path(home or default_home())


def resolve_identity(
    explicit: str | Path | None = None, home: Path | None = None
) -> Identity | None:
    """The identity to use (see :func:`identity_path_for`), loaded; None when there is none.
    A file that is named but missing or unusable is a ConfigError."""
    path = identity_path_for(explicit, home)
    return None if path is None else load_identity(path)


# -- sockets -----------------------------------------------------------------------------------


def secure_client_socket(socket: zmq.Socket, identity: Identity) -> None:
    """Make ``socket`` a CurveZMQ client presenting ``identity`` (before it connects)."""
    socket.curve_secretkey = identity.secret_key.encode("ascii")
    socket.curve_publickey = identity.public_key.encode("ascii")
    socket.curve_serverkey = identity.service_key.encode("ascii")


def warn_insecure(what: str) -> None:
    log.warning(
        "!!! %s: INSECURE, no identity: plaintext, unauthenticated. Only a service "
        "started with --insecure answers. !!!",
        what,
    )
