"""The checks every request of a secure service passes, in order, and what they leave behind.

1. **who** — the principal of the request's public key (its ZAP User-Id), looked up in the
   identity registry for this very request: revoked or expired is refused even on a connection
   admitted before;
2. **how often** — the per-identity rate limit (dirac_like/ratelimit.py);
3. **what** — :func:`dirac_like.authz.authorize`, whose arguments the handler gets.

A refusal is a Forbidden (RateLimited; or, for what is someone else's, exactly the NotFound a
missing job or sandbox gets) error reply, a log line and an audit line
(services/audit.py); the requests admins and operators run are audited once they ran.
"""

from __future__ import annotations

import logging
from typing import Any

from dirac_like.authz import Ownership, Principal, authorize
from dirac_like.errors import DiracLikeError, Forbidden, NotFound, RateLimited
from dirac_like.protocol import Request
from dirac_like.ratelimit import RateLimiter

from .audit import AuditLog
from .identities import IdentityIssuer

log = logging.getLogger(__name__)


class Guard:
    def __init__(self, issuer: IdentityIssuer, limiter: RateLimiter, audit: AuditLog) -> None:
        self.issuer = issuer  # its registry is replaced when the service rebuilds its state
        self.limiter = limiter
        self.audit = audit

    def principal(self, user_id: str, request: Request, now: float) -> Principal:
        """Who sent ``request``; Forbidden if the key is unknown, revoked or expired."""
        registry = self.issuer.registry
        try:
            return registry.lookup(user_id, now)
        except Forbidden as exc:
            entry = registry.by_key.get(user_id)
            who = entry.principal if entry is not None else None
            self._refused(who, request, request.args, exc, now, f"key {user_id}")
            raise

    def admit(
        self, principal: Principal, request: Request, args: Any, ownership: Ownership, now: float
    ) -> Any:
        """The arguments to run ``request`` with, once the rate limit and the authorization
        check let it through (else RateLimited, Forbidden, or a NotFound: someone else's job
        or sandbox, answered as one that does not exist)."""
        try:
            self.limiter.check(principal.name, now)
            return authorize(principal, request.op, args, ownership)
        except (Forbidden, RateLimited, NotFound) as exc:
            self._refused(principal, request, args, exc, now, principal.name)
            raise

    def done(
        self,
        principal: Principal,
        request: Request,
        args: Any,
        now: float,
        error: DiracLikeError | None = None,
    ) -> None:
        """``request`` ran (``error``: its handler refused it)."""
        self.audit.done(principal, request.op, args, now, error)

    def _refused(
        self,
        principal: Principal | None,
        request: Request,
        args: Any,
        error: DiracLikeError,
        now: float,
        who: str,
    ) -> None:
        if principal is None or self.audit.refused(principal, request.op, args, error, now):
            log.warning(
                "request %s (%s) of %s refused: [%s] %s",
                request.id,
                request.op,
                who,
                error.code,
                error.message,
            )

    def close(self) -> None:
        self.audit.close()
