"""Identity operations of the central service: issue, list and revoke identities; pilot tokens.

The service generates each new keypair, registers its public key, and replies with the whole
identity file (the secret key included: the reply travels encrypted, and is remembered in
memory only, never stored). Who may call these is :func:`dirac_like.authz.authorize`'s
business: admins; directors for pilot tokens of their own site. A registry change is written to
disk by the service loop before the batch's replies go out.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from dirac_like.authz import Principal, Role
from dirac_like.config import SecurityConfig
from dirac_like.errors import InvalidArgument
from dirac_like.identity import Identity, Keypair
from dirac_like.protocol import (
    IdentityAddArgs,
    IdentityFile,
    IdentityListArgs,
    IdentityRevokeArgs,
    IdentityRevokeReply,
    IdentityView,
    Op,
    PilotTokenArgs,
)
from dirac_like.registry import IdentityRegistry, identity_for, pilot_token_name

from .state import CentralState, check_name

log = logging.getLogger(__name__)

SITE_ROLES = frozenset({Role.DIRECTOR, Role.PILOT})  # roles that act for one site
MAX_GROUPS = 64


class IdentityIssuer:
    """The registry, and what it takes to issue identity files (the service's public key)."""

    def __init__(
        self, registry: IdentityRegistry, service_key: str, config: SecurityConfig
    ) -> None:
        self.registry = registry
        self.service_key = service_key
        self.config = config

    def issue(self, principal: Principal, now: float) -> Identity:
        keypair = Keypair.generate()
        entry = self.registry.add(principal, keypair.public, now)
        log.info(
            "identity %s (%s%s) issued",
            principal.name,
            principal.role.value,
            f", site {principal.site}" if principal.site else "",
        )
        return identity_for(entry, keypair, self.service_key)

    def pilot_token(self, site: str, pilot_id: str, now: float) -> Identity:
        expires = now + self.config.pilot_token_lifetime
        principal = Principal(
            pilot_token_name(site, pilot_id),
            Role.PILOT,
            site=site,
            pilot_id=pilot_id,
            expires=expires,
        )
        keypair = Keypair.generate()
        entry = self.registry.add(principal, keypair.public, now)
        log.info(
            "pilot token for pilot %s of site %s issued, valid %.0f s",
            pilot_id or "(any)",
            site,
            self.config.pilot_token_lifetime,
        )
        return identity_for(entry, keypair, self.service_key)


def _issuer(state: CentralState) -> IdentityIssuer:
    if state.identities is None:
        raise InvalidArgument("this service runs --insecure: it has no identities")
    issuer: IdentityIssuer = state.identities
    return issuer


def principal_from(args: IdentityAddArgs) -> Principal:
    """The principal an ``identity add`` asks for, checked."""
    check_name("identity name", args.name)
    try:
        role = Role(args.role)
    except ValueError:
        roles = ", ".join(role.value for role in Role)
        raise InvalidArgument(f"role {args.role[:20]!r} is not one of {roles}") from None
    if len(args.groups) > MAX_GROUPS:
        raise InvalidArgument(f"at most {MAX_GROUPS} groups")
    for group in args.groups:
        check_name("group", group)
    if args.site:
        check_name("site", args.site)
    if role in SITE_ROLES and not args.site:
        raise InvalidArgument(f"a {role.value} identity acts for one site: give its site")
    if args.name.startswith("pilot:"):
        raise InvalidArgument("names starting with 'pilot:' are for pilot tokens")
    return Principal(args.name, role, tuple(dict.fromkeys(args.groups)), args.site)


def identity_file(identity: Identity) -> IdentityFile:
    return IdentityFile(**identity.to_wire())


def identity_add(state: CentralState, args: IdentityAddArgs, now: float) -> IdentityFile:
    return identity_file(_issuer(state).issue(principal_from(args), now))


def identity_list(state: CentralState, args: IdentityListArgs, now: float) -> list[IdentityView]:
    entries = _issuer(state).registry.entries(pilot_tokens=args.pilot_tokens)
    return [IdentityView(**entry.view(now)) for entry in entries]


def identity_revoke(
    state: CentralState, args: IdentityRevokeArgs, now: float
) -> IdentityRevokeReply:
    revoked = _issuer(state).registry.revoke(args.name, now)
    log.warning("identity %s revoked (%d key(s))", args.name, len(revoked))
    return IdentityRevokeReply(name=args.name, revoked=len(revoked))


def pilot_token(state: CentralState, args: PilotTokenArgs, now: float) -> IdentityFile:
    check_name("site", args.site)
    if args.pilot_id:  # bound to one pilot record: it must be of that site
        pilot = state.pilots.get(args.pilot_id)
        if pilot.site != args.site:
            raise InvalidArgument(f"pilot {args.pilot_id} is not a pilot of site {args.site}")
    return identity_file(_issuer(state).pilot_token(args.site, args.pilot_id, now))


IDENTITY_HANDLERS: dict[str, Callable[[CentralState, Any, float], Any]] = {
    Op.IDENTITY_ADD: identity_add,
    Op.IDENTITY_LIST: identity_list,
    Op.IDENTITY_REVOKE: identity_revoke,
    Op.PILOT_TOKEN: pilot_token,
}
