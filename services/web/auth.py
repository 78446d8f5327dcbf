"""Who is looking: login tokens in, principals out, from the central service's own registry.

:class:`Gate` checks a login token (:mod:`dirac_like.web_login`) against the service's keys and
the identity registry in the home, and answers for every later request which principal a
session's public key stands for *now*: the registry file is read again whenever the central
service rewrote it, so a revoked or expired identity is logged out at its next click.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

from dirac_like.authz import Principal, Role
from dirac_like.errors import Forbidden
from dirac_like.registry import IdentityRegistry, load_registry, registry_path
from dirac_like.web_login import LoginClaim, LoginRefused, UsedNonces, check_login_token

log = logging.getLogger(__name__)

# Roles that may open the dashboard: people and monitoring agents, not directors or pilots.
WEB_ROLES = frozenset({Role.ADMIN, Role.OPERATOR, Role.USER, Role.AGENT})


class Gate:
    def __init__(self, home: Path, service_secret: str) -> None:
        self.home = home
        self._service_secret = service_secret
        self._lock = threading.Lock()
        self._nonces = UsedNonces()
        self._registry: IdentityRegistry | None = None
        self._stamp: tuple[int, int, int] | None = None

    def login(self, token: str, now: float) -> LoginClaim:
        """The claim of a token that may log in now (once); LoginRefused otherwise."""
        claim = check_login_token(token, self._service_secret, now)
        principal = self.principal(claim.public_key, now)
        with self._lock:
            self._nonces.use(claim, now)
        log.info("web login: %s (%s)", principal.name, principal.role.value)
        return claim

    def principal(self, public_key: str, now: float) -> Principal:
        """Who ``public_key`` is now; Forbidden (LoginRefused) if unknown, revoked, expired, or
        of a role that has no dashboard."""
        try:
            principal = self._current_registry().lookup(public_key, now)
        except Forbidden as exc:
            raise LoginRefused(exc.message) from None
        if principal.role not in WEB_ROLES:
            raise LoginRefused(f"{principal.role.value} {principal.name} has no dashboard")
        return principal

    def _current_registry(self) -> IdentityRegistry:
        info = os.stat(registry_path(self.home))
        stamp = (info.st_mtime_ns, info.st_size, info.st_ino)
        with self._lock:
            if self._registry is None or stamp != self._stamp:
                self._registry, self._stamp = load_registry(self.home), stamp
            return self._registry
