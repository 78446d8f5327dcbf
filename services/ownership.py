"""What :func:`dirac_like.authz.authorize` needs to know of the central state (its
:class:`~dirac_like.authz.Ownership`): who owns a job, which pilot holds it, where a pilot is."""

from __future__ import annotations

from .state import CentralState


class StateOwnership:
    """An adapter over :class:`CentralState`; reads only, no copies."""

    def __init__(self, state: CentralState) -> None:
        self.state = state

    def job_owner(self, job_id: int) -> str | None:
        job = self.state.jobs.get(job_id)
        return None if job is None else job.owner

    def job_pilot(self, job_id: int) -> str | None:
        job = self.state.jobs.get(job_id)
        return job.pilot_id or None if job is not None else None

    def pilot_site(self, pilot_id: str) -> str | None:
        pilot = self.state.pilots.pilots.get(pilot_id)
        return None if pilot is None else pilot.site

    def pilot_credential(self, pilot_id: str) -> str:
        pilot = self.state.pilots.pilots.get(pilot_id)
        return "" if pilot is None else pilot.credential
