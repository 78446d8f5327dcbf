"""The central service's decisions, driven through its handlers with an injected clock and the
in-memory store double: no sockets, no sleeps."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from dirac_like.config import Config, JobsConfig, SharesConfig, SiteLimits
from dirac_like.description import description_from_stored
from dirac_like.errors import (
    IllegalTransition,
    InvalidArgument,
    InvalidJobDescription,
    JobNotFound,
    StaleAttempt,
)
from dirac_like.protocol import ARGUMENTS, KillJob, Op, parse_args, to_wire
from dirac_like.services.handlers import HANDLERS
from dirac_like.services.state import CentralState
from dirac_like.states import JobStatus as S
from dirac_like.store.memory import MemoryStore

HELLO = 'Executable = "/bin/echo"; Arguments = "hello";'
JOBS = JobsConfig(
    match_lease=60,
    stalled_timeout=100,
    stalled_to_reschedule=50,
    max_reschedules=2,
    reschedule_holdoff=10,
    holdoff_factor=3,
)


class Grid:
    """The state plus its store, committed after every call as the service loop does."""

    def __init__(self, config: Config | None = None) -> None:
        self.config = config or Config(jobs=JOBS)
        self.store = MemoryStore()
        self.state = CentralState(self.config, self.store)
        self.now = 1000.0

    def call(self, op: str, **args: Any) -> Any:
        try:
            handler_args = parse_args(ARGUMENTS[op], args)
            # The reply as plain msgpack types, as the service encodes it
            return to_wire(HANDLERS[op](self.state, handler_args, self.now))
        finally:
            self.commit()

    def commit(self) -> None:
        changes = self.state.take_changes()
        self.store.commit(changes)
        self.state.committed(changes)

    def advance(self, seconds: float) -> None:
        self.now += seconds
        self.state.expire(self.now)
        self.commit()

    def submit(self, *sources: Any, owner: str = "alice", group: str = "") -> list[int]:
        result = self.call(Op.SUBMIT, descriptions=list(sources), owner=owner, group=group)
        return list(result["job_ids"])

    def pilot(self, pilot_id: str = "p1", site: str = "LCG.CERN.cern", **res: Any) -> Any:
        reply = self.call(Op.REQUEST_JOB, pilot_id=pilot_id, resources={"site": site, **res})
        return reply["job"]

    def report(self, match: dict[str, Any], status: str, pilot_id: str = "p1") -> Any:
        return self.call(
            Op.UPDATE_STATUS,
            job_id=match["job_id"],
            attempt=match["attempt"],
            pilot_id=pilot_id,
            status=status,
        )

    def status(self, job_id: int) -> str:
        return str(self.call(Op.STATUS, job_ids=[job_id])[0]["status"])

    def snapshot(self) -> list[dict[str, Any]]:
        return sorted((j.summary() for j in self.state.jobs.values()), key=lambda j: j["job_id"])


@pytest.fixture
def grid() -> Grid:
    return Grid()


def test_submit_goes_through_received_checking_waiting(grid: Grid) -> None:
    (job_id,) = grid.submit(HELLO)
    history = grid.call(Op.HISTORY, job_id=job_id)
    assert [row["status"] for row in history] == ["Received", "Checking", "Waiting"]
    assert grid.status(job_id) == "Waiting"
    assert grid.state.jobs[job_id].group == "user"  # the configured default group


def test_parametric_submission_makes_one_job_per_parameter(grid: Grid) -> None:
    job_ids = grid.submit('Executable = "x"; Arguments = "%s"; Parameters = {"a", "b", "c"};')
    assert len(job_ids) == 3
    arguments = [grid.store.description(j)["Arguments"] for j in job_ids]
    assert arguments == ["a", "b", "c"]


def test_a_bad_description_in_a_bulk_refuses_all_and_changes_nothing(grid: Grid) -> None:
    grid.submit(HELLO)
    before, commits = grid.snapshot(), grid.store.commits
    with pytest.raises(InvalidJobDescription, match="Priority"):
        grid.submit(HELLO, 'Executable = "x";\nPriority = 99;')
    assert grid.snapshot() == before
    assert len(grid.store.jobs) == 1
    assert grid.store.commits == commits + 1 and grid.store.shared_history[-1].last_job_id == 1


def test_match_leases_the_job_to_one_pilot(grid: Grid) -> None:
    grid.submit(HELLO, HELLO)
    first, second = grid.pilot("p1"), grid.pilot("p2")
    assert first["job_id"] != second["job_id"]
    assert first["description"]["Executable"] == "/bin/echo"
    assert grid.status(first["job_id"]) == "Matched"
    assert grid.pilot("p3") is None


def test_a_match_carries_the_stored_description_a_pilot_reads_typed(grid: Grid) -> None:
    grid.submit(
        'Executable = "/bin/sh"; Arguments = "-c true"; MaxRAM = 2000; CPUTime = 60; '
        'NumberOfProcessors = 2; OutputSandbox = {"a.txt"};'
    )
    description = description_from_stored(grid.pilot(cores=4, memory_mb=4000)["description"])
    assert (description.executable, description.arguments) == ("/bin/sh", "-c true")
    assert (description.max_ram_mb, description.cpu_time) == (2000, 60)
    assert description.number_of_processors == 2
    assert description.output_sandbox == ("a.txt",)


def test_lease_expiry_returns_the_job_and_fences_the_old_pilot(grid: Grid) -> None:
    grid.submit(HELLO)
    match = grid.pilot("p1")
    grid.advance(61)
    assert grid.status(match["job_id"]) == "Waiting"
    with pytest.raises(StaleAttempt):
        grid.report(match, "Running")
    again = grid.pilot("p2")
    assert again["job_id"] == match["job_id"] and again["attempt"] == match["attempt"] + 1


def test_running_job_runs_to_done(grid: Grid) -> None:
    grid.submit(HELLO)
    match = grid.pilot()
    grid.report(match, "Running")
    assert grid.report(match, "Done") == {"commands": []}
    statuses = [row["status"] for row in grid.call(Op.HISTORY, job_id=match["job_id"])]
    assert statuses[-3:] == ["Matched", "Running", "Done"]


def test_a_pilot_cannot_jump_from_matched_to_done(grid: Grid) -> None:
    grid.submit(HELLO)
    match = grid.pilot()
    with pytest.raises(IllegalTransition, match="Matched to Done"):
        grid.report(match, "Done")
    assert grid.status(match["job_id"]) == "Matched"


def test_another_pilot_cannot_report_for_a_job(grid: Grid) -> None:
    grid.submit(HELLO)
    match = grid.pilot("p1")
    with pytest.raises(StaleAttempt, match="pilot"):
        grid.report(match, "Running", pilot_id="intruder")


def test_heartbeats_keep_a_job_running_and_silence_stalls_it(grid: Grid) -> None:
    grid.submit(HELLO)
    match = grid.pilot()
    grid.report(match, "Running")
    for _ in range(5):
        grid.advance(60)
        grid.call(Op.HEARTBEAT, job_id=match["job_id"], attempt=match["attempt"], pilot_id="p1")
    assert grid.status(match["job_id"]) == "Running"
    grid.advance(101)
    assert grid.status(match["job_id"]) == "Stalled"


def test_a_stopped_pilot_hands_its_job_back_within_the_reschedule_limit(grid: Grid) -> None:
    (job_id,) = grid.submit(HELLO)
    for _ in range(2):  # max_reschedules = 2
        match = grid.pilot()
        grid.report(match, "Running")
        assert grid.report(match, "Rescheduled") == {"commands": []}
        assert grid.status(job_id) == "Rescheduled"
        with pytest.raises(StaleAttempt):  # the pilot no longer holds it
            grid.report(match, "Done")
        grid.advance(grid.state.jobs[job_id].deadline - grid.now)
        assert grid.status(job_id) == "Waiting"
    match = grid.pilot()
    grid.report(match, "Running")
    grid.report(match, "Rescheduled")
    assert grid.status(job_id) == "Failed"
    assert "reschedule limit" in grid.state.jobs[job_id].minor_status


def test_a_pilot_cannot_hand_back_a_job_it_does_not_hold(grid: Grid) -> None:
    (job_id,) = grid.submit(HELLO)
    match = grid.pilot("p1")
    grid.report(match, "Running")
    before = grid.snapshot()
    with pytest.raises(StaleAttempt):
        grid.report(match, "Rescheduled", pilot_id="intruder")
    with pytest.raises(InvalidArgument, match="no output sandbox"):
        grid.call(
            Op.UPDATE_STATUS,
            job_id=job_id,
            attempt=match["attempt"],
            pilot_id="p1",
            status="Rescheduled",
            output_sandbox="0" * 64,
        )
    assert grid.snapshot() == before


def test_stalled_job_is_rescheduled_with_growing_holdoff_then_failed(grid: Grid) -> None:
    (job_id,) = grid.submit(HELLO)
    holdoffs = []
    for _ in range(2):  # max_reschedules = 2
        match = grid.pilot()
        grid.report(match, "Running")
        grid.advance(101)  # Stalled
        grid.advance(51)  # Rescheduled
        assert grid.status(job_id) == "Rescheduled"
        holdoffs.append(grid.state.jobs[job_id].deadline - grid.now)
        grid.advance(holdoffs[-1])
        assert grid.status(job_id) == "Waiting"
    assert holdoffs == [pytest.approx(10), pytest.approx(30)]
    match = grid.pilot()
    grid.report(match, "Running")
    grid.advance(101)
    grid.advance(51)
    assert grid.status(job_id) == "Failed"
    assert "reschedule limit" in grid.state.jobs[job_id].minor_status


def stalled_away(grid: Grid, pilot_id: str = "p1") -> dict[str, Any]:
    """A job run by ``pilot_id`` that went silent: Stalled, then Rescheduled (its match)."""
    grid.submit(HELLO)
    match = grid.pilot(pilot_id)
    grid.report(match, "Running", pilot_id=pilot_id)
    grid.advance(101)  # Stalled
    grid.advance(51)  # Rescheduled: a new attempt, not matched yet
    return dict(match)


def test_a_late_done_of_the_attempt_the_stall_rule_took_ends_the_job(grid: Grid) -> None:
    """The pilot died with the Done in its outbox and its successor came back after the stall
    window: while no other pilot has the job, that Done is the job's end (issue 18)."""
    for wait_first in (False, True):  # Rescheduled (hold-off), then Waiting again
        match = stalled_away(grid)
        job_id = match["job_id"]
        if wait_first:
            grid.advance(grid.state.jobs[job_id].deadline - grid.now)
            assert grid.status(job_id) == "Waiting"
        assert grid.report(match, "Done") == {"commands": []}
        job = grid.state.jobs[job_id]
        assert (job.status, job.pilot_id) == (S.DONE, "p1")
        assert grid.pilot("p2") is None  # out of the task queue: never run again
        statuses = [row["status"] for row in grid.call(Op.HISTORY, job_id=job_id)]
        assert statuses[-2:] == (["Waiting", "Done"] if wait_first else ["Rescheduled", "Done"])
        grid.state.book.validate()


def test_a_late_done_is_refused_once_another_pilot_has_the_job(grid: Grid) -> None:
    match = stalled_away(grid)
    grid.advance(grid.state.jobs[match["job_id"]].deadline - grid.now)
    again = grid.pilot("p2")
    assert again is not None and again["job_id"] == match["job_id"]
    before = grid.snapshot()
    with pytest.raises(StaleAttempt):  # Matched to p2: p2 may be starting it
        grid.report(match, "Done")
    grid.report(again, "Running", pilot_id="p2")
    with pytest.raises(StaleAttempt):
        grid.report(match, "Done")
    assert grid.snapshot()[0]["status"] == "Running" and before[0]["status"] == "Matched"


def test_only_a_late_done_of_that_pilot_and_attempt_is_taken(grid: Grid) -> None:
    match = stalled_away(grid)
    before = grid.snapshot()
    with pytest.raises(StaleAttempt):
        grid.report(match, "Failed")  # only the job's success ends it: a failure is retried
    with pytest.raises(StaleAttempt):
        grid.report(match, "Done", pilot_id="intruder")
    with pytest.raises(StaleAttempt):
        grid.report({**match, "attempt": match["attempt"] + 1}, "Done")
    assert grid.snapshot() == before


def test_a_late_done_of_a_job_handed_back_or_lease_expired_is_refused(grid: Grid) -> None:
    """Only the stall rule's take-away: a pilot that handed a job back, or never started it,
    has no Done of it."""
    (job_id,) = grid.submit(HELLO)
    match = grid.pilot()
    grid.report(match, "Running")
    grid.report(match, "Rescheduled")
    with pytest.raises(StaleAttempt):
        grid.report(match, "Done")
    grid.advance(grid.state.jobs[job_id].deadline - grid.now)
    unstarted = grid.pilot()
    grid.advance(61)  # the match lease expired: Waiting again
    with pytest.raises(StaleAttempt):
        grid.report(unstarted, "Done")
    assert grid.status(job_id) == "Waiting"


def test_a_late_done_is_refused_after_a_restart(grid: Grid) -> None:
    """Which attempt the stall rule took is not stored: a restarted service (a new leader)
    refuses the late report as any stale one."""
    match = stalled_away(grid)
    grid.state = CentralState(grid.config, grid.store, grid.store.load(), grid.now)
    with pytest.raises(StaleAttempt):
        grid.report(match, "Done")
    assert grid.status(match["job_id"]) == "Rescheduled"


def test_killing_a_waiting_job_is_immediate(grid: Grid) -> None:
    (job_id,) = grid.submit(HELLO)
    assert grid.call(Op.KILL, job_ids=[job_id]) == {"killed": [job_id], "kill_requested": []}
    assert grid.status(job_id) == "Killed"
    assert grid.pilot() is None


def test_killing_a_running_job_goes_to_its_pilot(grid: Grid) -> None:
    (job_id,) = grid.submit(HELLO)
    match = grid.pilot()
    grid.report(match, "Running")
    assert grid.call(Op.KILL, job_ids=[job_id])["kill_requested"] == [job_id]
    assert grid.state.take_pushes() == [("p1", KillJob(job_id))]
    commands = grid.call(Op.HEARTBEAT, job_id=job_id, attempt=match["attempt"], pilot_id="p1")
    assert commands == {"commands": [{"command": "kill", "job_id": job_id}]}
    assert grid.report(match, "Killed") == {"commands": []}
    assert grid.status(job_id) == "Killed"


def test_kill_with_an_unknown_id_kills_nothing(grid: Grid) -> None:
    (job_id,) = grid.submit(HELLO)
    with pytest.raises(JobNotFound, match="999"):
        grid.call(Op.KILL, job_ids=[job_id, 999])
    assert grid.status(job_id) == "Waiting"


def test_killing_a_done_job_is_refused(grid: Grid) -> None:
    (job_id,) = grid.submit(HELLO)
    match = grid.pilot()
    grid.report(match, "Running")
    grid.report(match, "Done")
    with pytest.raises(IllegalTransition):
        grid.call(Op.KILL, job_ids=[job_id])


def test_reschedule_sends_a_finished_job_back_and_tells_the_old_pilot(grid: Grid) -> None:
    (job_id,) = grid.submit(HELLO)
    match = grid.pilot()
    grid.report(match, "Running")
    grid.call(Op.RESCHEDULE, job_ids=[job_id])
    assert grid.status(job_id) == "Waiting"
    stale = grid.call(Op.HEARTBEAT, job_id=job_id, attempt=match["attempt"], pilot_id="p1")
    assert stale["commands"] == [{"command": "kill", "job_id": job_id}]
    assert grid.pilot("p2")["attempt"] == match["attempt"] + 1


def test_reschedule_limit_is_refused(grid: Grid) -> None:
    (job_id,) = grid.submit(HELLO)
    for _ in range(2):
        grid.pilot()
        grid.call(Op.RESCHEDULE, job_ids=[job_id])
    grid.pilot()
    with pytest.raises(IllegalTransition, match="already rescheduled 2 times"):
        grid.call(Op.RESCHEDULE, job_ids=[job_id])
    assert grid.status(job_id) == "Matched"


def test_banned_site_gets_no_job_and_is_told_why(grid: Grid) -> None:
    grid.submit(HELLO)
    grid.call(Op.BAN_SITE, site="LCG.CERN.cern", reason="downtime")
    reply = grid.call(Op.REQUEST_JOB, pilot_id="p1", resources={"site": "LCG.CERN.cern"})
    assert reply == {
        "job": None,
        "reason": "site LCG.CERN.cern is banned: downtime",
        "commands": [],
    }
    grid.call(Op.UNBAN_SITE, site="LCG.CERN.cern")
    assert grid.pilot() is not None


def test_site_running_limit_is_honoured() -> None:
    grid = Grid(Config(jobs=JOBS, sites={"LCG.CERN.cern": SiteLimits(max_running=2)}))
    grid.submit(*[HELLO] * 5)
    assert [grid.pilot(f"p{i}") is not None for i in range(3)] == [True, True, False]
    assert grid.pilot("p9", site="LCG.RAL.uk") is not None


def test_job_with_site_requirement_only_matches_there(grid: Grid) -> None:
    grid.submit('Executable = "x"; Site = "LCG.RAL.uk";')
    assert grid.pilot(site="LCG.CERN.cern") is None
    assert grid.pilot(site="LCG.RAL.uk") is not None


def test_set_share_changes_who_is_served_first() -> None:
    grid = Grid(Config(jobs=JOBS, shares=SharesConfig(groups={"a": 1.0, "b": 1.0})))
    grid.submit(*[HELLO] * 40, owner="u1", group="a")
    grid.submit(*[HELLO] * 40, owner="u2", group="b")
    grid.call(Op.SET_SHARE, group="a", share=3.0)
    groups = [grid.state.jobs[grid.pilot(f"p{i}")["job_id"]].group for i in range(40)]
    assert groups.count("a") == 30


def test_restart_rebuilds_the_same_state(grid: Grid) -> None:
    ids = grid.submit(*[HELLO] * 6)
    grid.submit('Executable = "y"; Site = "LCG.RAL.uk"; Priority = 7;', owner="bob")
    running = grid.pilot("p1")
    grid.report(running, "Running")
    matched = grid.pilot("p2")
    grid.call(Op.KILL, job_ids=[ids[-1]])
    grid.call(Op.BAN_SITE, site="BAD.site", reason="broken")
    rebuilt = CentralState(grid.config, grid.store, grid.store.load(), grid.now)
    assert (
        sorted((j.summary() for j in rebuilt.jobs.values()), key=lambda j: j["job_id"])
        == grid.snapshot()
    )
    assert rebuilt.jobs[matched["job_id"]].deadline == grid.state.jobs[matched["job_id"]].deadline
    assert rebuilt.why_not(dataclasses.replace(_pilot("BAD.site")), grid.now) != ""
    waiting_before = {
        tq.task_queue_id: sorted(tq.job_ids())
        for tq in grid.state.book.matcher.unique_task_queues()
    }
    waiting_after = {
        tq.task_queue_id: sorted(tq.job_ids()) for tq in rebuilt.book.matcher.unique_task_queues()
    }
    assert waiting_after == waiting_before
    assert rebuilt.book.next_job_id == grid.state.book.next_job_id


def _pilot(site: str) -> Any:
    from dirac_like.protocol import PilotResources

    return PilotResources(site=site)


def test_remembered_replies_survive_a_restart(grid: Grid) -> None:
    grid.state.replies.remember("req-1", b"reply", grid.now, durable=True)
    grid.state.replies.remember("req-2", b"match", grid.now, durable=False)
    grid.commit()
    assert grid.state.replies.remembered("req-2") == b"match"
    rebuilt = CentralState(grid.config, grid.store, grid.store.load(), grid.now)
    assert rebuilt.replies.remembered("req-1") == b"reply"
    assert rebuilt.replies.remembered("req-2") is None


def test_old_replies_are_forgotten(grid: Grid) -> None:
    grid.state.replies.remember("req-1", b"reply", grid.now, durable=True)
    grid.commit()
    grid.advance(grid.config.service.reply_memory + 120)
    assert grid.state.replies.remembered("req-1") is None
    assert "req-1" not in grid.store.replies


def test_empty_task_queues_are_forgotten_and_come_back_when_needed(grid: Grid) -> None:
    (job_id,) = grid.submit('Executable = "x"; Site = "LCG.RAL.uk";')
    match = grid.pilot(site="LCG.RAL.uk")
    grid.report(match, "Running")
    for _ in range(7):  # past the cleanup time, heartbeating all along
        grid.advance(50)
        grid.call(Op.HEARTBEAT, job_id=job_id, attempt=match["attempt"], pilot_id="p1")
    assert grid.status(job_id) == "Running"
    assert grid.call(Op.TASK_QUEUES) == []
    grid.call(Op.RESCHEDULE, job_ids=[job_id])
    (queue,) = grid.call(Op.TASK_QUEUES)
    assert queue["waiting"] == 1 and queue["requirements"]["sites"] == ["LCG.RAL.uk"]
    assert grid.pilot("p2", site="LCG.RAL.uk")["job_id"] == job_id


def test_eligible_counts_what_a_pilot_could_run(grid: Grid) -> None:
    grid.submit(
        HELLO,
        HELLO,
        'Executable = "x"; NumberOfProcessors = 4;',
        'Executable = "x"; Site = "LCG.RAL.uk";',
    )
    one_core = {"site": "LCG.CERN.cern", "cores": 1}
    assert grid.call(Op.ELIGIBLE, resources=one_core)["eligible"] == 2
    assert grid.call(Op.ELIGIBLE, resources={**one_core, "cores": 4})["eligible"] == 3
    grid.call(Op.BAN_SITE, site="LCG.CERN.cern", reason="down")
    banned = grid.call(Op.ELIGIBLE, resources=one_core)
    assert banned["eligible"] == 0 and "banned" in banned["reason"]
