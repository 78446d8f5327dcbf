"""The journal (what a batch changed, and batches in flight) and the reply cache."""

from __future__ import annotations

from dirac_like.model import HistoryEntry, JobRecord, StoredReply
from dirac_like.services.journal import Journal
from dirac_like.services.replies import ReplyCache, reply_key
from dirac_like.states import JobStatus


def entry(job_id: int, status: str) -> HistoryEntry:
    return HistoryEntry(job_id, status, "", "", 0.0, "test")


def test_in_flight_changes_are_read_until_committed() -> None:
    journal = Journal()
    journal.changes.history.append(entry(1, "Received"))
    journal.changes.sandboxes.append((1, "input", "a" * 64))
    first = journal.take()
    journal.changes.history.append(entry(1, "Waiting"))
    journal.changes.sandboxes.append((1, "input", "b" * 64))
    assert [e.status for e in journal.history(1)] == ["Received", "Waiting"]
    assert journal.history(2) == []
    assert journal.sandbox(1, "input") == "b" * 64  # the newest first
    assert journal.sandbox(1, "output") is None
    assert journal.sandboxes() == {"a" * 64, "b" * 64}
    journal.committed(first)
    assert [e.status for e in journal.history(1)] == ["Waiting"]
    assert journal.sandboxes() == {"b" * 64}


def test_a_new_jobs_description_is_pending_until_its_batch_is_committed() -> None:
    journal = Journal()
    job = JobRecord(7, "alice", "users", 1, 0, JobStatus.WAITING)
    journal.changes.new_jobs.append((job, b""))
    journal.new_descriptions[7] = {"Executable": "x"}
    changes = journal.take()
    assert 7 in journal.new_descriptions
    journal.committed(changes)
    assert 7 not in journal.new_descriptions


def test_a_reply_is_remembered_and_only_a_durable_one_is_stored() -> None:
    journal = Journal()
    replies = ReplyCache(600.0, journal)
    replies.remember("r1", b"one", 10.0, durable=True)
    replies.remember("r2", b"two", 10.0, durable=False)
    assert replies.remembered("r1") == b"one" and replies.remembered("r2") == b"two"
    assert replies.remembered("r3") is None
    assert [stored.request_id for stored in journal.changes.replies] == ["r1"]


def test_old_replies_are_forgotten_in_chunks_here_and_in_the_store() -> None:
    journal = Journal()
    replies = ReplyCache(600.0, journal, [StoredReply("old", b"x", 0.0)])
    replies.remember("new", b"y", 630.0, durable=True)
    replies.forget_old(630.0)  # "old" is only 30 s past: wait for a chunk of a minute
    assert replies.remembered("old") == b"x"
    assert journal.changes.forget_replies_before is None
    replies.forget_old(700.0)
    assert replies.remembered("old") is None and replies.remembered("new") == b"y"
    assert journal.changes.forget_replies_before == 100.0


def test_replies_are_keyed_by_principal_and_request_id() -> None:
    replies = ReplyCache(600.0, Journal())
    replies.remember(reply_key("alice", "r1"), b"alice's", 10.0, durable=True)
    assert replies.remembered(reply_key("bob", "r1")) is None
    assert replies.remembered(reply_key("alice", "r1")) == b"alice's"


def test_a_secret_reply_is_kept_in_memory_only_and_briefly() -> None:
    journal = Journal()
    replies = ReplyCache(600.0, journal, secret_memory=60.0)
    replies.remember("admin/r1", b"secret", 10.0, durable=False, secret=True)
    replies.forget_old(69.0)
    assert replies.remembered("admin/r1") == b"secret"
    replies.forget_old(71.0)
    assert replies.remembered("admin/r1") is None
    assert journal.changes.replies == []
