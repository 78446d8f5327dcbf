"""The job book alone: the one transition path, the Running deadline rule, pilot reports and
deadlines, without handlers, store or sockets."""

from __future__ import annotations

import dataclasses

import pytest

from dirac_like.config import JobsConfig
from dirac_like.description import parse_descriptions
from dirac_like.errors import IllegalTransition, JobNotFound, StaleAttempt
from dirac_like.model import JobRecord
from dirac_like.protocol import PilotResources
from dirac_like.services.job_book import JobBook
from dirac_like.services.journal import Journal
from dirac_like.shares import FairShare
from dirac_like.states import JobStatus

S = JobStatus
CONFIG = JobsConfig(
    match_lease=60,
    stalled_timeout=100,
    stalled_to_reschedule=50,
    max_reschedules=1,
    reschedule_holdoff=10,
    holdoff_factor=3,
)
SITE = "LCG.CERN.cern"


def new_book() -> JobBook:
    return JobBook(CONFIG, FairShare({}, {}, 86400.0, 1.0), Journal())


def add(book: JobBook, now: float = 0.0, cores: int = 1) -> JobRecord:
    description = parse_descriptions({"Executable": "x", "NumberOfProcessors": cores})[0]
    return book.add(description, "alice", "users", now)


def matched(book: JobBook, now: float = 0.0) -> JobRecord:
    add(book, now)
    job = book.match("p1", PilotResources(site=SITE), now)
    assert job is not None
    return job


def test_a_new_job_waits_in_its_task_queue_with_its_submission_history() -> None:
    book = new_book()
    job = add(book, now=5.0)
    assert job.status is S.WAITING and job.site == "ANY"
    assert [entry.status for entry in book.journal.history(job.job_id)] == [
        "Received",
        "Checking",
        "Waiting",
    ]
    assert book.journal.new_descriptions[job.job_id]["Executable"] == "x"
    assert len(book.journal.changes.new_task_queues) == 1
    assert add(book).task_queue_id == job.task_queue_id  # same requirements: same queue
    book.validate()


def test_jobs_made_together_share_one_run_of_submission_history() -> None:
    """Three history rows per job are written once per run of consecutive jobs made at the same
    time with the same Waiting minor status; each job still reads its own three rows."""
    book = new_book()
    first, second = add(book, now=5.0), add(book, now=5.0)
    description = parse_descriptions({"Executable": "x"})[0]
    never = book.add(description, "alice", "users", 5.0, minor="No CE can run it: x")
    later = add(book, now=6.0)
    runs = book.journal.changes.shared_history
    assert [(run.first_job_id, run.last_job_id) for run in runs] == [
        (first.job_id, second.job_id),
        (never.job_id, never.job_id),
        (later.job_id, later.job_id),
    ]
    assert book.journal.changes.history == []
    assert [(e.job_id, e.status, e.minor_status, e.time) for e in book.journal.history(2)] == [
        (2, "Received", "Job accepted", 5.0),
        (2, "Checking", "JobSanity", 5.0),
        (2, "Waiting", "Pilot Agent Submission", 5.0),
    ]
    assert book.journal.history(never.job_id)[-1].minor_status == "No CE can run it: x"
    assert [e.time for e in book.journal.history(later.job_id)] == [6.0] * 3


def test_matching_takes_the_job_out_of_its_queue_and_counts_it_at_the_site() -> None:
    book = new_book()
    job = matched(book, now=10.0)
    assert (job.status, job.pilot_id, job.site) == (S.MATCHED, "p1", SITE)
    assert job.deadline == 10.0 + CONFIG.match_lease
    assert book.site_active[SITE] == 1
    assert book.shares.account("users", "alice").running_cores == 1
    assert book.match("p2", PilotResources(site=SITE), 10.0) is None
    book.validate()


def test_an_illegal_transition_is_refused_and_changes_nothing() -> None:
    book = new_book()
    job = add(book)
    book.journal.take()
    with pytest.raises(IllegalTransition):
        book.set_status(job, S.COMPLETING, "no", "test", 1.0)
    assert job.status is S.WAITING
    assert book.journal.changes.is_empty()
    book.validate()


def test_the_running_deadline_follows_the_last_sign_of_life() -> None:
    book = new_book()
    job = matched(book)
    book.report(job, S.RUNNING, "started", "app", "pilot p1", 20.0)
    assert (job.heartbeat_at, job.deadline) == (20.0, 20.0 + CONFIG.stalled_timeout)
    book.heartbeat(job, "pilot p1", 70.0)
    assert (job.heartbeat_at, job.deadline) == (70.0, 70.0 + CONFIG.stalled_timeout)
    assert book.expire(169.0) == 0
    assert book.expire(170.0) == 1
    assert job.status is S.STALLED


def test_heartbeats_bring_a_stalled_job_back_to_running() -> None:
    book = new_book()
    job = matched(book)
    book.report(job, S.RUNNING, "", "", "pilot p1", 0.0)
    book.expire(CONFIG.stalled_timeout)
    assert job.status is S.STALLED
    book.heartbeat(job, "pilot p1", 120.0)
    assert job.status is S.RUNNING and job.deadline == 120.0 + CONFIG.stalled_timeout
    assert book.journal.changes.history[-1].minor_status == "Heartbeats resumed"
    book.validate()


def test_a_report_of_the_same_status_keeps_it_and_records_the_minor_status() -> None:
    book = new_book()
    job = matched(book)
    book.report(job, S.RUNNING, "started", "", "pilot p1", 1.0)
    book.report(job, S.RUNNING, "step 2", "", "pilot p1", 2.0)
    assert (job.status, job.minor_status, job.application_status) == (S.RUNNING, "step 2", "")
    assert book.journal.changes.history[-1][1:4] == ("Running", "step 2", "")


def test_a_kill_request_keeps_the_status_and_voids_the_match_at_its_deadline() -> None:
    book = new_book()
    job = matched(book)
    book.request_kill(job, "user", 1.0)
    assert (job.status, job.kill_requested, job.minor_status) == (S.MATCHED, True, "Kill requested")
    book.expire(CONFIG.match_lease)
    assert job.status is S.KILLED
    assert book.site_active[SITE] == 0
    assert book.shares.account("users", "alice").running_cores == 0
    book.validate()


def test_reschedule_holds_off_then_fails_past_the_limit() -> None:
    book = new_book()
    job = matched(book)
    book.reschedule(job, "lost", "test", 0.0)
    assert (job.status, job.attempt, job.deadline) == (S.RESCHEDULED, 2, 10.0)
    book.expire(10.0)
    assert job.status is S.WAITING
    job = book.match("p2", PilotResources(site=SITE), 11.0)
    assert job is not None
    book.reschedule(job, "lost", "test", 12.0)
    assert job.status is S.FAILED and "reschedule limit 1" in job.minor_status
    book.validate()


def test_held_job_refuses_an_old_attempt_or_another_pilot() -> None:
    book = new_book()
    job = matched(book)
    assert book.held_job(job.job_id, 1, "p1") is job
    with pytest.raises(StaleAttempt):
        book.held_job(job.job_id, 1, "p2")
    with pytest.raises(StaleAttempt):
        book.held_job(job.job_id, 2, "p1")
    with pytest.raises(JobNotFound):
        book.held_job(99, 1, "p1")


def test_restore_rebuilds_queues_counts_and_gives_running_jobs_a_full_window() -> None:
    book = new_book()
    running = matched(book)
    waiting = add(book)
    book.report(running, S.RUNNING, "", "", "pilot p1", 5.0)
    rows = list(book.task_queue_rows.values())
    restored = new_book()
    restored.restore(rows, [waiting, running], now=500.0)
    assert restored.site_active[SITE] == 1
    assert running.deadline == 500.0 + CONFIG.stalled_timeout
    assert restored.next_job_id == 3 and restored.next_task_queue_id == 2
    restored.validate()


def test_restore_in_bulk_gives_the_matches_of_the_book_it_was_stored_from() -> None:
    """Many waiting jobs in several task queues, given in any order: each task queue's heap is
    built in bulk, and the jobs come out in the order the first book hands them out."""
    book = new_book()
    for n in range(60):
        attributes = {"Executable": "x", "Priority": (n * 7) % 5, "NumberOfProcessors": n % 3 + 1}
        book.add(parse_descriptions(attributes)[0], f"user{n % 2}", "users", 0.0)
    book.set_status(book.jobs[9], S.KILLED, "killed", "test", 0.0)
    rows = list(book.task_queue_rows.values())
    jobs = [dataclasses.replace(job) for job in book.jobs.values()]  # as stored: copies
    restored = new_book()
    restored.restore(rows, jobs[::-1], now=1.0)
    restored.validate()
    assert restored.next_job_id == 61
    pilot = PilotResources(site=SITE, cores=3)
    first = [job.job_id for job in iter(lambda: book.match("p1", pilot, 2.0), None)]
    again = [job.job_id for job in iter(lambda: restored.match("p1", pilot, 2.0), None)]
    assert again == first and len(first) == 59


def test_only_the_job_book_assigns_job_record_fields() -> None:
    """Handlers and the rest of the service change jobs through the book, never by hand (a
    field of JobRecord assigned on a variable whose name says job, outside job_book.py)."""
    import ast
    import dataclasses
    from pathlib import Path

    import dirac_like.services as services

    fields = {field.name for field in dataclasses.fields(JobRecord)}
    offenders = []
    for path in Path(services.__path__[0]).glob("*.py"):
        if path.name == "job_book.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets = (
                node.targets
                if isinstance(node, ast.Assign)
                else [node.target]
                if isinstance(node, ast.AugAssign | ast.AnnAssign)
                else []
            )
            for target in targets:
                for item in target.elts if isinstance(target, ast.Tuple) else [target]:
                    if (
                        isinstance(item, ast.Attribute)
                        and item.attr in fields
                        and isinstance(item.value, ast.Name)
                        and "job" in item.value.id
                    ):
                        offenders.append(f"{path.name}:{node.lineno}")
    assert offenders == []
