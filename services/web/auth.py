"""Who is looking: login tokens in, principals out, from the central service's own registry.

:class:`Gate` checks a login token (:mod:`dirac_like.web_login`) against the service's keys and
the identity registry, and answers for every later request which principal a session's public
key stands for *now*: the registry is read again whenever the central service rewrote it, so a
revoked or expired identity is logged out at its next click.

The registry is the file in the home, or, for a pair on PostgreSQL, the shared one in the
store (:class:`StoredRegistry`, row ``identities`` of table ``ha_files``, which the leader
writes whenever it changes it: services/pair_shared.py). A dashboard beside the standby
then admits whom the leader on the other host admits, and no one it revoked; the home's file
there is only brought up to date when that instance takes the lead.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Any

from dirac_like.authz import Principal, Role
from dirac_like.errors import Forbidden
from dirac_like.registry import IdentityRegistry, load_registry, registry_path
from dirac_like.store.reading import StoreReading
from dirac_like.web_login import LoginClaim, LoginRefused, UsedNonces, check_login_token

log = logging.getLogger(__name__)

# Roles that may open the dashboard: people and monitoring agents, not directors or pilots.
WEB_ROLES = frozenset({Role.ADMIN, Role.OPERATOR, Role.USER, Role.AGENT})
# The shared registry's row in a pair's table ha_files (services/pair_shared.py's
# REGISTRY_NAME; tests/integration/test_reports_on_both_stores.py fails if they disagree).
SHARED_REGISTRY_ROW = "identities"


class StoredRegistry:
    """A pair's shared identity registry, read from its store (read-only)."""

    def __init__(self, reading: StoreReading) -> None:
        self.reading = reading
        self.name = f"the identity registry in {reading.name}"

    def read_if_changed(self, stamp: Any) -> tuple[Any, IdentityRegistry | None] | None:
        """(its stamp, the registry or None if its stamp is still ``stamp``); None when the
        store has none (no instance of a pair led on it yet)."""
        with self.reading.read(snapshot=False) as db:  # a row read twice: the later is newer
            (table,) = db.execute("SELECT to_regclass('ha_files')").fetchone()
            if table is None:
                return None
            row = db.execute(
                "SELECT updated FROM ha_files WHERE name = ?", (SHARED_REGISTRY_ROW,)
            ).fetchone()
            if row is None:
                return None
            if row[0] == stamp:
                return stamp, None
            (data,) = db.execute(
                "SELECT data FROM ha_files WHERE name = ?", (SHARED_REGISTRY_ROW,)
            ).fetchone()
        return row[0], IdentityRegistry.from_json(bytes(data).decode("utf-8"), self.name)


class Gate:
    """``stored``: the pair's shared registry (a PostgreSQL store), read before the home's."""

    def __init__(
        self, home: Path, service_secret: str, stored: StoredRegistry | None = None
    ) -> None:
        self.home = home
        self.stored = stored
        self._service_secret = service_secret
        self._lock = threading.Lock()
        self._nonces = UsedNonces()
        self._registry: IdentityRegistry | None = None
        self._stamp: Any = None

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
        if self.stored is not None:
            with self._lock:
                stamp = self._stamp
            found = self.stored.read_if_changed(stamp)
            if found is not None:
                new_stamp, registry = found
                with self._lock:
                    if registry is not None:
                        self._registry, self._stamp = registry, new_stamp
                    if self._registry is not None:
                        return self._registry
        info = os.stat(registry_path(self.home))
        stamp = (info.st_mtime_ns, info.st_size, info.st_ino)
        with self._lock:
            if self._registry is None or stamp != self._stamp:
                self._registry, self._stamp = load_registry(self.home), stamp
            return self._registry
