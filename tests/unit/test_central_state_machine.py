"""Random sequences of operations against the central state, with its invariants checked after
every step (hypothesis stateful testing): waiting jobs are exactly the task queues' contents,
site and share counters agree with the jobs, no job is held by two pilots."""

from __future__ import annotations

from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from dirac_like.config import Config, JobsConfig, SiteLimits
from dirac_like.errors import DiracLikeError
from dirac_like.protocol import ARGUMENTS, Op, parse_args, to_wire
from dirac_like.services.handlers import HANDLERS
from dirac_like.services.state import CentralState
from dirac_like.states import ACTIVE_STATUSES
from dirac_like.store.memory import MemoryStore

SITES = ["A", "B", "C"]
JDLS = [
    'Executable = "x";',
    'Executable = "x"; NumberOfProcessors = 2;',
    'Executable = "x"; Site = "B"; Priority = 7;',
    'Executable = "x"; Tags = "GPU";',
    'Executable = "x"; Parameters = 3;',
]
CONFIG = Config(
    jobs=JobsConfig(
        match_lease=20,
        stalled_timeout=30,
        stalled_to_reschedule=10,
        max_reschedules=2,
        reschedule_holdoff=5,
        holdoff_factor=2,
    ),
    sites={"C": SiteLimits(max_running=2)},
)


class CentralStateMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.store = MemoryStore()
        self.state = CentralState(CONFIG, self.store)
        self.now = 0.0
        self.held: dict[int, tuple[str, int]] = {}  # job -> (pilot, attempt) as pilots see it
        self.pilots = 0

    def call(self, op: str, **args: Any) -> Any:
        try:
            return to_wire(HANDLERS[op](self.state, parse_args(ARGUMENTS[op], args), self.now))
        except DiracLikeError:
            return None
        finally:
            changes = self.state.take_changes()
            self.store.commit(changes)
            self.state.committed(changes)

    @rule(
        jdl=st.sampled_from(JDLS),
        owner=st.sampled_from(["ann", "bob"]),
        group=st.sampled_from(["mc", "user"]),
    )
    def submit(self, jdl: str, owner: str, group: str) -> None:
        self.call(Op.SUBMIT, descriptions=[jdl], owner=owner, group=group)

    @rule(site=st.sampled_from(SITES), cores=st.integers(1, 4), gpu=st.booleans())
    def pilot_asks(self, site: str, cores: int, gpu: bool) -> None:
        self.pilots += 1
        pilot = f"p{self.pilots}"
        resources = {"site": site, "cores": cores, "tags": ["GPU"] if gpu else []}
        reply = self.call(Op.REQUEST_JOB, pilot_id=pilot, resources=resources)
        if reply and reply["job"]:
            job = reply["job"]
            assert (
                job["job_id"] not in self.held
                or self.state.jobs[job["job_id"]].attempt != self.held[job["job_id"]][1]
            ), "a job went to a second pilot while held"
            self.held[job["job_id"]] = (pilot, job["attempt"])

    @precondition(lambda self: bool(self.held))
    @rule(data=st.data(), status=st.sampled_from(["Running", "Done", "Failed", "Killed"]))
    def pilot_reports(self, data: st.DataObject, status: str) -> None:
        job_id = data.draw(st.sampled_from(sorted(self.held)))
        pilot, attempt = self.held[job_id]
        self.call(Op.UPDATE_STATUS, job_id=job_id, attempt=attempt, pilot_id=pilot, status=status)

    @precondition(lambda self: bool(self.held))
    @rule(data=st.data())
    def pilot_heartbeats(self, data: st.DataObject) -> None:
        job_id = data.draw(st.sampled_from(sorted(self.held)))
        pilot, attempt = self.held[job_id]
        self.call(Op.HEARTBEAT, job_id=job_id, attempt=attempt, pilot_id=pilot)

    @precondition(lambda self: bool(self.state.jobs))
    @rule(data=st.data(), op=st.sampled_from([Op.KILL, Op.RESCHEDULE]))
    def user_acts(self, data: st.DataObject, op: str) -> None:
        job_id = data.draw(st.sampled_from(sorted(self.state.jobs)))
        self.call(op, job_ids=[job_id])

    @rule(site=st.sampled_from(SITES), banned=st.booleans())
    def admin_bans(self, site: str, banned: bool) -> None:
        if banned:
            self.call(Op.BAN_SITE, site=site, reason="test")
        else:
            self.call(Op.UNBAN_SITE, site=site)

    @rule(seconds=st.sampled_from([1.0, 6.0, 15.0, 40.0]))
    def time_passes(self, seconds: float) -> None:
        self.now += seconds
        self.state.expire(self.now)
        changes = self.state.take_changes()
        self.store.commit(changes)
        self.state.committed(changes)

    @invariant()
    def indexes_agree_with_jobs(self) -> None:
        self.state.validate()

    @invariant()
    def banned_and_full_sites_get_nothing_new(self) -> None:
        limit = CONFIG.sites["C"].max_running
        assert (
            sum(
                1 for j in self.state.jobs.values() if j.site == "C" and j.status in ACTIVE_STATUSES
            )
            <= limit
        )

    @invariant()
    def a_restart_rebuilds_the_same_jobs(self) -> None:
        if self.now % 40 != 0:  # now and then, not every step
            return
        rebuilt = CentralState(CONFIG, self.store, self.store.load(), self.now)
        rebuilt.validate()
        assert {j: r.summary() for j, r in rebuilt.jobs.items()} == {
            j: r.summary() for j, r in self.state.jobs.items()
        }


CentralStateMachine.TestCase.settings = settings(
    max_examples=60, stateful_step_count=40, deadline=None
)
TestCentralState = CentralStateMachine.TestCase
