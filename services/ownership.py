"""What :func:`dirac_like.authz.authorize` needs to know of the central state (its
:class:`~dirac_like.authz.Ownership`): who owns a job, which pilot holds it, where a pilot is."""

from __future__ import annotations

from dirac_like.states import ACTIVE_STATUSES

from .state import CentralState


class StateOwnership:
    """An adapter over :class:`CentralState`; reads only, no copies."""

    def __init__(self, state: CentralState) -> None:
        self.state = state

    def job_owner(self, job_id: int) -> str | None:
        job = self.state.jobs.get(job_id)
        if job is not None:
            return job.owner
        submission = self.state.expansions.to_make(job_id)  # a big submission's, not made yet
        return None if submission is None else submission.owner

    def job_pilot(self, job_id: int) -> str | None:
        job = self.state.jobs.get(job_id)
        return job.pilot_id or None if job is not None else None

    def pilot_site(self, pilot_id: str) -> str | None:
        pilot = self.state.pilots.pilots.get(pilot_id)
        return None if pilot is None else pilot.site

    def pilot_credential(self, pilot_id: str) -> str:
        pilot = self.state.pilots.pilots.get(pilot_id)
        return "" if pilot is None else pilot.credential

    def sandbox_holder(self, sha256: str, name: str) -> bool:
        return self.state.sandbox_index.holds(sha256, name)

    def pilot_input_sandbox(self, sha256: str, credential: str, pilot_id: str) -> bool:
        pilots = self.state.pilots.pilots
        if pilot_id:
            candidates = [pilots[pilot_id]] if pilot_id in pilots else []
        else:  # a credential for any pilot of its site: the pilots bound to it
            candidates = [p for p in pilots.values() if p.credential == credential]
        jobs = self.state.jobs
        for pilot in candidates:
            for job in map(jobs.get, pilot.jobs):
                if (
                    job is not None
                    and job.pilot_id == pilot.pilot_id
                    and job.status in ACTIVE_STATUSES
                    and self.state.sandbox_index.of(job.job_id, "input") == sha256
                ):
                    return True
        return False
