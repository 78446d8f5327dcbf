"""Work the service loop does between requests (issue 11 defect 14, issue 14): a big parametric
submission made a slice at a time while other clients are served, and bulk actions, both
carried on after a restart. The service runs in this process on its real SQLite store, driven
one ``loop()`` at a time over ``inproc://``; a restart is the service closed in the middle of
the work and a new one opened on the same home (what was committed is what a ``kill -9`` would
leave: every batch is one transaction)."""

from __future__ import annotations

import gc
import itertools
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq
from test_service_loop import Loop

from dirac_like.config import BulkConfig, Config, LimitsConfig
from dirac_like.protocol import (
    BulkArgs,
    BulkIdArgs,
    JobIdArgs,
    JobIdsArgs,
    Op,
    Reply,
    SubmitArgs,
    decode_reply,
)
from dirac_like.services import central
from dirac_like.states import JobStatus

BIG = 'Executable = "/bin/echo"; Arguments = "%s"; Parameters = 1000; ParameterStart = 1;'
SMALL = 'Executable = "/bin/true";'
CONFIG = Config(limits=LimitsConfig(expand_slice=100), bulk=BulkConfig(batch=10, duty=1.0))


class Service(Loop):
    """A central service in this process on its SQLite store in ``home``, and DEALER sockets
    that talk to it."""

    def __init__(self, home: Path, config: Config = CONFIG) -> None:
        super().__init__(home, None, config)

    @property
    def state(self) -> Any:
        return self.service.state

    def served(self, socket: zmq.Socket, loops: int = 50) -> Reply:
        """Loop until ``socket`` has its reply (the request was sent before)."""
        for _ in range(loops):
            self.service.loop()
            if socket.poll(0):
                return decode_reply(socket.recv())
        raise AssertionError(f"no reply after {loops} loops")

    def finish_background(self, loops: int = 1000) -> int:
        """Loop until no background work is left; how many loops it took."""
        for count in range(1, loops + 1):
            self.service.loop()
            if not self.state.background_pending:
                return count
        raise AssertionError("background work not finished")

    def stored_job_ids(self) -> list[int]:
        return sorted(job.job_id for job in self.service.store.load().jobs)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def service(home: Path) -> Iterator[Service]:
    running = Service(home)
    try:
        yield running
    finally:
        running.close()


def owned_by(service: Service, owner: str) -> list[int]:
    return sorted(job.job_id for job in service.state.jobs.values() if job.owner == owner)


def test_defect_14_a_big_submission_is_made_in_slices_while_others_are_served(
    service: Service,
) -> None:
    alice, bob = service.dealer(), service.dealer()
    service.send(alice, "a1", Op.SUBMIT, SubmitArgs([BIG], "alice", "users"))
    accepted = service.served(alice)
    assert accepted.ok and len(accepted.result["job_ids"]) == 1000
    assert len(owned_by(service, "alice")) < 1000  # acknowledged before all are made
    last = accepted.result["job_ids"][-1]
    service.send(alice, "a2", Op.STATUS, JobIdsArgs([last]))
    [row] = service.served(alice).result  # shown as Received until it is made
    assert (row["job_id"], row["status"], row["owner"]) == (last, "Received", "alice")
    assert row["minor_status"].startswith("Being made:")

    service.send(bob, "b1", Op.SUBMIT, SubmitArgs([SMALL], "bob", "users"))
    answered = service.served(bob)

    assert answered.ok
    [bob_job] = answered.result["job_ids"]
    assert bob_job in service.state.jobs  # bob's job was made...
    assert service.state.expansions.pending  # ...while alice's submission was still expanding
    assert len(owned_by(service, "alice")) < 1000
    service.finish_background()
    assert owned_by(service, "alice") == accepted.result["job_ids"]
    assert service.stored_job_ids() == sorted([*accepted.result["job_ids"], bob_job])
    service.state.validate()


def test_defect_14_an_acknowledged_big_submission_is_whole_after_a_restart(home: Path) -> None:
    first = Service(home)
    try:
        alice = first.dealer()
        first.send(alice, "a1", Op.SUBMIT, SubmitArgs([BIG], "alice", "users"))
        accepted = first.served(alice)
        assert accepted.ok
        made_before = len(first.stored_job_ids())
        assert 0 < made_before < 1000
    finally:
        first.close()  # the rest was never made by this service

    second = Service(home)
    try:
        assert second.state.expansions.pending  # resumed from the stored submission
        second.finish_background()
        assert owned_by(second, "alice") == accepted.result["job_ids"]
        assert second.stored_job_ids() == accepted.result["job_ids"]  # each made once
        assert {second.state.jobs[i].status for i in accepted.result["job_ids"]} == {
            JobStatus.WAITING
        }
        bob = second.dealer()  # new ids come after the reserved range
        second.send(bob, "b1", Op.SUBMIT, SubmitArgs([SMALL], "bob", "users"))
        assert second.served(bob).result["job_ids"] == [max(accepted.result["job_ids"]) + 1]
        second.state.validate()
    finally:
        second.close()


SUBMISSION_STEPS = [
    ("Received", "Job accepted", "JobManager"),
    ("Checking", "JobSanity", "JobSanity"),
    ("Waiting", "Pilot Agent Submission", "JobScheduling"),
]


def stored_history_runs(home: Path) -> list[tuple[int, int]]:
    """(first, last) job id of each stored run of shared history, one per run."""
    with sqlite3.connect(home / "jobs.sqlite") as db:
        rows = db.execute("SELECT DISTINCT first_job_id, last_job_id FROM shared_history")
        runs = sorted(rows.fetchall())
    db.close()
    return runs


def test_each_job_of_a_big_submission_resumed_after_a_restart_has_its_steps_once(
    home: Path,
) -> None:
    """The submission steps of jobs made in slices are written once per run of jobs made
    together: after a restart in the middle of the making, every job (made before it, or
    after) still reads Received, Checking, Waiting once, and the runs cover each job once."""
    first = Service(home)
    try:
        alice = first.dealer()
        first.send(alice, "a1", Op.SUBMIT, SubmitArgs([BIG], "alice", "users"))
        job_ids = first.served(alice).result["job_ids"]
        made_before = len(first.stored_job_ids())
        assert 0 < made_before < 1000
    finally:
        first.close()

    second = Service(home)
    try:
        second.finish_background()
        before_restart, after_restart = job_ids[0], job_ids[-1]
        reader = second.dealer()
        for job_id in (
            before_restart,
            job_ids[made_before - 1],
            job_ids[made_before],
            after_restart,
        ):
            second.send(reader, f"h{job_id}", Op.HISTORY, JobIdArgs(job_id))
            rows = second.served(reader).result
            assert [(r["status"], r["minor_status"], r["source"]) for r in rows] == SUBMISSION_STEPS
        runs = stored_history_runs(home)
        covered = [job_id for start, end in runs for job_id in range(start, end + 1)]
        assert covered == job_ids  # each job in one run, none twice
        assert len(runs) <= 1000 // 100 + 1  # a run per slice, not a row per job
    finally:
        second.close()


def test_a_refused_big_submission_leaves_the_store_unchanged(service: Service, home: Path) -> None:
    """Job 700 of 1,000 is refused at the check, before anything is made or recorded: no job,
    no history, no submission record, no id reserved."""
    values = ", ".join(["1"] * 700 + ["99"] + ["1"] * 299)
    bad = f'Executable = "x"; Arguments = "%s"; Priority = %s; Parameters = {{{values}}};'
    alice = service.dealer()
    service.send(alice, "a0", Op.SUBMIT, SubmitArgs([SMALL], "alice", "users"))
    [kept] = service.served(alice).result["job_ids"]
    runs = stored_history_runs(home)

    service.send(alice, "a1", Op.SUBMIT, SubmitArgs([bad], "alice", "users"))
    refused = service.served(alice)

    assert refused.error is not None and "ParameterNumber 700" in refused.error.message
    assert not service.state.background_pending
    loaded = service.service.store.load()
    assert [job.job_id for job in loaded.jobs] == [kept] and loaded.submissions == []
    assert stored_history_runs(home) == runs == [(kept, kept)]
    service.send(alice, "a2", Op.SUBMIT, SubmitArgs([SMALL], "alice", "users"))
    assert service.served(alice).result["job_ids"] == [kept + 1]


def test_the_jobs_of_a_big_submission_not_made_yet_count_as_waiting_for_the_limit(
    home: Path,
) -> None:
    limited = Config(limits=LimitsConfig(expand_slice=100, max_waiting_jobs_per_user=1500))
    service = Service(home, limited)
    try:
        alice = service.dealer()
        service.send(alice, "a1", Op.SUBMIT, SubmitArgs([BIG], "alice", "users"))
        assert service.served(alice).ok
        service.send(alice, "a2", Op.SUBMIT, SubmitArgs([BIG], "alice", "users"))
        refused = service.served(alice)
        assert refused.error is not None and "max_waiting_jobs_per_user" in refused.error.message
    finally:
        service.close()


def test_a_bulk_action_goes_on_after_a_restart_and_acts_on_each_job_once(home: Path) -> None:
    first = Service(home)
    try:
        alice = first.dealer()
        first.send(alice, "a1", Op.SUBMIT, SubmitArgs([SMALL] * 50, "alice", "users"))
        job_ids = first.served(alice).result["job_ids"]
        first.send(alice, "k1", Op.BULK, BulkArgs("kill", "status=Waiting", 50, yes=True))
        started = first.served(alice)
        assert started.ok
        bulk_id = started.result["bulk_id"]
        first.service.loop()  # one more batch, then the service stops
        killed_before = sum(j.status is JobStatus.KILLED for j in first.state.jobs.values())
        assert 0 < killed_before < 50
    finally:
        first.close()

    second = Service(home)
    try:
        assert second.state.bulk.pending
        second.finish_background()
        assert {second.state.jobs[i].status for i in job_ids} == {JobStatus.KILLED}
        alice = second.dealer()
        second.send(alice, "s1", Op.BULK_STATUS, BulkIdArgs(bulk_id))
        status = second.served(alice).result
        assert (status["done"], status["skipped"], status["finished"]) == (50, 0, True)
        second.send(alice, "st", Op.STATUS, JobIdsArgs(job_ids[:1]))
        assert second.served(alice).result[0]["status"] == "Killed"
    finally:
        second.close()


def test_between_two_batches_requests_waiting_are_served_first_and_an_idle_turn_goes_on(
    home: Path,
) -> None:
    # A duty so small that the requests are owed the loop for a long while after a batch
    paced = Config(bulk=BulkConfig(batch=10, duty=1e-6))
    service = Service(home, paced)
    try:
        alice = service.dealer()
        service.send(alice, "a1", Op.SUBMIT, SubmitArgs([SMALL] * 30, "alice", "users"))
        service.served(alice)
        service.send(alice, "k1", Op.BULK, BulkArgs("kill", "status=Waiting", 30, yes=True))
        bulk_id = service.served(alice).result["bulk_id"]
        taken = service.state.bulk.get(bulk_id).position
        assert taken > 0  # a first batch ran in the loop that accepted the action

        service.send(alice, "p1", Op.STATUS, JobIdsArgs([1]))
        assert service.served(alice).ok  # a request waiting is served...
        assert service.state.bulk.get(bulk_id).position == taken  # ...and no batch is taken
        assert service.service.loop() == 0  # nobody waiting: the next batch at once
        assert service.state.bulk.get(bulk_id).position > taken
    finally:
        service.close()


def test_defect_14_a_request_sent_during_a_big_submission_waits_for_one_slice_at_most(
    home: Path,
) -> None:
    sliced = Config(limits=LimitsConfig(expand_slice=100))  # the default duty (0.2)
    service = Service(home, sliced)
    try:
        alice, bob = service.dealer(), service.dealer()
        service.send(alice, "a1", Op.SUBMIT, SubmitArgs([BIG], "alice", "users"))
        accepted = service.served(alice).result["job_ids"]
        made_while_waiting = []
        for turn in itertools.count():
            if not service.state.expansions.pending:
                break
            before = len(owned_by(service, "alice"))
            service.send(bob, f"b{turn}", Op.STATUS, JobIdsArgs([accepted[-1]]))
            assert service.service.loop() == 1  # served in the next loop turn...
            assert bob.poll(0) and decode_reply(bob.recv()).ok
            made_while_waiting.append(len(owned_by(service, "alice")) - before)
            service.service.loop()  # ...and a turn with nobody waiting makes the next slice
        assert max(made_while_waiting) <= 100  # bob waited for one slice at most
        assert len(made_while_waiting) <= 9  # an idle turn made a slice each time
        assert owned_by(service, "alice") == accepted
        service.state.validate()
    finally:
        service.close()


def test_an_idle_service_makes_a_slice_of_a_big_submission_every_loop_turn(home: Path) -> None:
    idle = Service(home, Config(limits=LimitsConfig(expand_slice=100)))  # default duty (0.2)
    try:
        alice = idle.dealer()
        idle.send(alice, "a1", Op.SUBMIT, SubmitArgs([BIG], "alice", "users"))
        assert idle.served(alice).ok
        [expansion] = idle.state.expansions.expansions.values()
        slices_left = -(-expansion.left // 100)
        assert slices_left > 1
        assert idle.finish_background() == slices_left  # one per turn, no pause in between
    finally:
        idle.close()


def test_the_jobs_of_a_big_submission_made_in_slices_are_frozen_out_of_collections(
    home: Path,
) -> None:
    """Slices (here 100 jobs) are each below FREEZE_AFTER_NEW_JOBS: the count is kept across
    commits, so a big submission's long-lived records still leave the garbage collector's
    generations (they did not when the check was per commit)."""
    sliced = Service(home, Config(limits=LimitsConfig(expand_slice=100), bulk=BulkConfig(duty=1.0)))
    try:
        alice = sliced.dealer()
        sliced.send(alice, "a1", Op.SUBMIT, SubmitArgs([BIG], "alice", "users"))
        assert sliced.served(alice).ok
        frozen = gc.get_freeze_count()
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(central, "FREEZE_AFTER_NEW_JOBS", 500)
            sliced.finish_background()
        assert len(owned_by(sliced, "alice")) == 1000
        assert gc.get_freeze_count() > frozen
    finally:
        sliced.close()
