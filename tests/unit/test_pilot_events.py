"""The pilot runs its jobs from its loop, without a thread per job (issue 15): a payload is
started by the loop, its end comes back as an event, the watchdog's samples are a timer of the
loop, and only what blocks (inputs, kills, uploads) goes to a worker. The payload runner is a
test double here (the real one is tested in tests/integration/test_wrapper.py); no socket is
used."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from dirac_like.agents import pilot as pilot_module
from dirac_like.agents.job_runs import Stage, Workers
from dirac_like.agents.outbox import Report
from dirac_like.agents.pilot import (
    POLL_SLICE,
    STOPPED_BY_SIGNAL,
    Pilot,
    PilotConfig,
    RunningJob,
)
from dirac_like.agents.watchdog import Sample, Verdict
from dirac_like.agents.wrapper import PayloadResult
from dirac_like.protocol import KillJob, MatchedJob
from dirac_like.states import JobStatus
from dirac_like.testing import wait_for

SAMPLE_EVERY = 2.0


class FakeRunner:
    """Stands for a :class:`PayloadRunner`: records what the pilot asks of it."""

    def __init__(self) -> None:
        self.on_end: Callable[[], None] | None = None
        self.exited = False
        self.pid = 4242
        self.kills: list[str] = []
        self.samples = 0
        self.verdict: Verdict | None = None
        self.finished_in: list[str] = []  # the thread each finish ran in
        self.killed_now_in: list[str] = []  # the thread each kill_now ran in
        self.worker_may_finish = threading.Event()  # a kill in a worker takes until this is set
        self.worker_may_finish.set()

    def start(self, on_end: Callable[[], None] | None = None) -> PayloadResult | None:
        if self.kills:
            return PayloadResult(JobStatus.KILLED, self.kills[0], None, 0, 0, 0, "", "request")
        self.on_end = on_end
        return None

    def end(self) -> None:
        """The keeper ended (the exec helper's reader thread calls this)."""
        self.exited = True
        assert self.on_end is not None
        self.on_end()

    def request_kill(self, minor_status: str = "Killed on request") -> None:
        self.kills.append(minor_status)

    def kill_now(self, verdict: Verdict | None = None) -> None:
        self.killed_now_in.append(threading.current_thread().name)

    def left_running(self) -> bool:
        return False

    def sample_now(self) -> tuple[Sample, Verdict | None]:
        self.samples += 1
        return Sample(100.0, 90.0, 1.5, 10.0, 0.1), self.verdict

    def finish(self, verdict: Verdict | None = None, tail: bool = True) -> PayloadResult:
        self.finished_in.append(threading.current_thread().name)
        if verdict is not None:
            result = PayloadResult(JobStatus.FAILED, verdict.minor_status, -15, 0, 0, 0, "", "cpu")
        elif self.kills and not self.exited:  # the tree is killed (the end comes meanwhile)
            result = PayloadResult(JobStatus.KILLED, self.kills[0], -15, 0, 0, 0, "", "request")
        else:
            result = PayloadResult(JobStatus.DONE, "Execution Complete", 0, 0.1, 1.0, 0.2, "")
        if threading.current_thread().name.startswith("job-worker"):
            assert self.worker_may_finish.wait(10)
        return result


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def pilot(tmp_path: Path, clock: Clock, monkeypatch: pytest.MonkeyPatch) -> Iterator[Pilot]:
    made = Pilot(
        PilotConfig(
            server="tcp://127.0.0.1:9",
            site="S",
            cores=4,
            workdir=tmp_path,
            insecure=True,
            idle_timeout=0.0,
            sample_interval=SAMPLE_EVERY,
        ),
        clock=clock,
    )
    made.client.close()
    made.workers = Workers(lambda: None, 4)  # type: ignore[arg-type, return-value]
    posted: list[Report] = []
    made.posted = posted  # type: ignore[attr-defined]
    monkeypatch.setattr(made.reports, "post", lambda reports, now: posted.extend(reports))
    monkeypatch.setattr(made, "_runner", lambda *args, **kwargs: FakeRunner())
    started = made.start_calls = []  # type: ignore[attr-defined, var-annotated]
    monkeypatch.setattr(pilot_module, "start_payloads", lambda starts: started.append(len(starts))
                        or [runner.start(on_end) for runner, on_end in starts])  # fmt: skip
    try:
        yield made
    finally:
        made.workers.close(10)
        made._folder_work.shutdown(wait=True)
        os.close(made._wake_read)
        os.close(made._wake_write)


def taken(pilot: Pilot, job_id: int = 7, **attributes: Any) -> RunningJob:
    """A matched job whose Running the service took: started by the pilot."""
    description = {"Executable": "/bin/true", **attributes}
    job = pilot._prepare(MatchedJob(job_id, 1, "alice", "g", 1, description))
    assert job is not None
    pilot.jobs[job_id] = job
    pilot._start_payloads([job])
    return job


def runner_of(job: RunningJob) -> FakeRunner:
    assert isinstance(job.runner, FakeRunner)
    return job.runner


def reports_of(pilot: Pilot) -> list[tuple[int, str, str]]:
    """The final reports made: posted, or kept for the turn's request (pilot_turn)."""
    pilot._post_unposted()
    posted: list[Report] = pilot.posted  # type: ignore[attr-defined]
    return [(r.job_id, r.status, r.minor_status) for r in posted]


def test_a_job_that_ends_by_itself_is_started_and_finished_by_the_loop_alone(
    pilot: Pilot, monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[str] = []
    start = threading.Thread.start

    def counted(thread: threading.Thread) -> None:
        started.append(thread.name)
        start(thread)

    monkeypatch.setattr(threading.Thread, "start", counted)
    job = taken(pilot)
    runner = runner_of(job)
    assert job.stage is Stage.RUNNING and runner.on_end is not None  # started at once
    runner.end()
    pilot.process_events()
    assert reports_of(pilot) == [(7, "Done", "Execution Complete")]
    assert runner.finished_in == [threading.current_thread().name]  # in the loop
    assert not pilot.jobs
    assert started == []  # no thread for the job, nor a worker


def test_a_kill_command_kills_a_running_payload_in_a_worker_and_its_end_is_reported_once(
    pilot: Pilot,
) -> None:
    job = taken(pilot)
    runner = runner_of(job)
    runner.worker_may_finish.clear()
    pilot.apply_commands([KillJob(7)])
    assert runner.kills == ["Killed on request"] and job.stage is Stage.ENDING
    wait_for(lambda: runner.finished_in, "the worker to kill the payload")
    runner.end()  # the keeper's end arrives while the worker kills: the worker has the job
    pilot.process_events()
    assert reports_of(pilot) == [] and 7 in pilot.jobs
    runner.worker_may_finish.set()
    wait_for(lambda: not pilot.events.empty(), "the worker's result")
    pilot.process_events()
    assert reports_of(pilot) == [(7, "Killed", "Killed on request")]
    assert runner.finished_in == ["job-worker-0"]


def test_a_kill_of_a_payload_that_has_already_ended_leaves_it_to_end_as_it_did(
    pilot: Pilot,
) -> None:
    job = taken(pilot)
    runner = runner_of(job)
    runner.end()  # ended; its end is on the queue
    pilot.apply_commands([KillJob(7)])
    assert job.stage is Stage.RUNNING  # no worker for it
    pilot.process_events()
    assert reports_of(pilot) == [(7, "Done", "Execution Complete")]


def test_the_watchdog_samples_running_payloads_on_the_loops_timer(
    pilot: Pilot, clock: Clock
) -> None:
    job = taken(pilot)
    runner = runner_of(job)
    pilot._next_request = 1e9  # no request due: the loop waits for the sample alone
    pilot.sample_payloads(SAMPLE_EVERY - 0.1)
    assert runner.samples == 0  # a job shorter than the interval is never sampled
    clock.now = SAMPLE_EVERY
    assert pilot._wait_time() == 0.0  # the sample is due: the loop does not wait
    pilot.sample_payloads(clock.now)
    assert runner.samples == 1 and job.sample is not None
    assert pilot.metrics(job)["cpu_seconds"] == 1.5  # what the heartbeat sends
    clock.now = 2 * SAMPLE_EVERY - POLL_SLICE / 2
    assert pilot._wait_time() == pytest.approx(POLL_SLICE / 2)  # until the next sample
    pilot.sample_payloads(clock.now)
    assert runner.samples == 1


def test_a_payload_over_a_limit_is_killed_in_a_worker_with_the_watchdogs_status(
    pilot: Pilot, clock: Clock
) -> None:
    job = taken(pilot)
    runner = runner_of(job)
    runner.verdict = Verdict("cpu", "Watchdog: CPU time 70 s > CPUTime 60 s")
    clock.now = SAMPLE_EVERY
    pilot.sample_payloads(clock.now)
    assert job.stage is Stage.ENDING
    wait_for(lambda: not pilot.events.empty(), "the worker's result")
    pilot.process_events()
    assert reports_of(pilot) == [(7, "Failed", "Watchdog: CPU time 70 s > CPUTime 60 s")]


def test_a_job_with_inputs_fetches_them_in_a_worker_then_starts_from_the_loop(
    pilot: Pilot, monkeypatch: pytest.MonkeyPatch
) -> None:
    fetched_in: list[str] = []

    def fetch(client: Any, job: RunningJob) -> None:
        fetched_in.append(threading.current_thread().name)

    monkeypatch.setattr(pilot, "_fetch", fetch)
    job = taken(pilot, InputData=["/vo/user/a.dat"])
    runner = runner_of(job)
    assert job.stage is Stage.FETCHING and runner.on_end is None  # not started yet
    wait_for(lambda: not pilot.events.empty(), "the inputs to be fetched")
    pilot.process_events()
    assert fetched_in[0].startswith("job-worker")
    assert job.stage is Stage.RUNNING and runner.on_end is not None


def test_a_job_whose_pilot_stops_while_its_inputs_are_fetched_never_starts_and_goes_back(
    pilot: Pilot, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = threading.Event()
    monkeypatch.setattr(pilot, "_fetch", lambda client, job: release.wait(10) and None)
    job = taken(pilot, InputData=["/vo/user/a.dat"])
    pilot.terminate("SIGTERM")
    pilot.kill_all(STOPPED_BY_SIGNAL.format("SIGTERM"))
    release.set()
    wait_for(lambda: not pilot.events.empty(), "the inputs to be fetched")
    pilot.process_events()
    assert runner_of(job).on_end is None  # never started
    assert reports_of(pilot) == [(7, "Rescheduled", "Pilot stopped (SIGTERM): job handed back")]


def test_a_kill_is_signalled_from_the_loop_before_its_worker_runs(
    pilot: Pilot, clock: Clock
) -> None:
    """The first SIGTERM of a kill command and of a watchdog verdict is sent by the loop
    itself (kill_now), then a worker finishes the kill (issue 15: the kill waited for a worker
    to be scheduled)."""
    job = taken(pilot)
    runner = runner_of(job)
    runner.worker_may_finish.clear()
    pilot.apply_commands([KillJob(7)])
    assert runner.killed_now_in == [threading.current_thread().name]
    wait_for(lambda: runner.finished_in, "the worker to finish the kill")
    assert runner.finished_in == ["job-worker-0"]
    runner.worker_may_finish.set()
    wait_for(lambda: not pilot.events.empty(), "the worker's result")
    pilot.process_events()
    assert reports_of(pilot) == [(7, "Killed", "Killed on request")]

    watched = runner_of(taken(pilot, job_id=8))
    watched.verdict = Verdict("cpu", "Watchdog: CPU time 70 s > CPUTime 60 s")
    clock.now = SAMPLE_EVERY
    pilot.sample_payloads(clock.now)
    assert watched.killed_now_in == [threading.current_thread().name]


def test_a_payload_that_ended_by_itself_and_left_processes_is_not_killed_from_the_loop(
    pilot: Pilot, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = taken(pilot)
    runner = runner_of(job)
    monkeypatch.setattr(runner, "left_running", lambda: True)
    runner.end()
    pilot.process_events()  # the clean-up goes to a worker, with no kill started here
    assert runner.killed_now_in == []
    wait_for(lambda: not pilot.events.empty(), "the worker's result")
    pilot.process_events()
    assert reports_of(pilot) == [(7, "Done", "Execution Complete")]


def test_a_turns_jobs_start_together_with_one_record_file(pilot: Pilot, tmp_path: Path) -> None:
    """The jobs of one turn are started with one call (one request to the exec helper) and
    their records kept in one file of the workdir, not a ``job.json`` per folder (issue 15);
    the file goes once every job of the turn was reported and answered."""
    matches = [MatchedJob(job_id, 1, "alice", "g", 1, {"Executable": "/bin/true"})
               for job_id in (1, 2, 3)]  # fmt: skip
    pilot.start_jobs(matches, running=True)
    assert pilot.start_calls == [3]  # type: ignore[attr-defined]
    assert [job.stage for job in pilot.jobs.values()] == [Stage.RUNNING] * 3
    [records] = list(tmp_path.glob("jobs-*.json"))
    assert not list(tmp_path.glob("job_*_1/job.json"))
    for job in list(pilot.jobs.values()):
        runner_of(job).end()
    pilot.process_events()
    pilot._post_unposted()
    posted: list[Report] = pilot.posted  # type: ignore[attr-defined]
    assert sorted(report.job_id for report in posted) == [1, 2, 3]
    for report in posted[:2]:
        pilot._answered(report)
    pilot._folder_work.submit(lambda: None).result(10)
    assert records.exists()  # job 3 is not answered yet
    pilot._answered(posted[2])
    pilot._folder_work.submit(lambda: None).result(10)
    assert not records.exists() and not list(tmp_path.glob("job_*"))
