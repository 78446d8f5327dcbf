"""Who may do what: the roles, the authenticated principal, and the one authorization check.

The principal of a request comes from the transport (the ZAP User-Id of its CurveZMQ connection,
looked up in the service's identity registry), never from a field the client fills in.
:func:`authorize` is the single place that decides whether a principal may run an operation with
given arguments: a table op -> allowed roles, plus ownership (a user's own jobs, a pilot's own
jobs and site, a director's own site). It is pure: what it needs of the state comes through
:class:`Ownership`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol


class Role(StrEnum):
    ADMIN = "admin"  # everything
    OPERATOR = "operator"  # sites, pilots, shares; sees all jobs
    USER = "user"  # member of groups, owns jobs
    DIRECTOR = "director"  # registers and manages the pilots of its own site
    PILOT = "pilot"  # requests jobs for its site, reports on the jobs matched to it
    AGENT = "agent"  # monitoring and transfer agents


@dataclass(frozen=True)
class Principal:
    """An authenticated identity, as the service's registry knows it."""

    name: str  # unique; a user's name is the owner of their jobs
    role: Role
    groups: tuple[str, ...] = ()  # users: the groups they may submit into
    site: str = ""  # directors and pilots: the site they act for
    pilot_id: str = ""  # pilots: the pilot record the token was issued for ("" = any of the site)
    expires: float = 0.0  # epoch seconds; 0: does not expire


class Ownership(Protocol):
    """What :func:`authorize` needs to know about stored objects."""

    def job_owner(self, job_id: int) -> str | None: ...  # None: no such job

    def job_pilot(self, job_id: int) -> str | None: ...  # the pilot the job is matched to

    def pilot_site(self, pilot_id: str) -> str | None: ...  # None: no such pilot


def authorize(principal: Principal, op: str, args: Any, ownership: Ownership) -> Any:
    """Raise :class:`dirac_like.errors.Forbidden` unless ``principal`` may run ``op`` with
    ``args``; return the arguments to run it with (e.g. a submit's owner set to the principal,
    a user's job listing narrowed to their own jobs)."""
    raise NotImplementedError  # filled in by the authorization work (issue 5)
