"""The pure parts of issue 11's reliability fixes: which job folders go (defect 10), the outbox's
files (defect 9), the per-connection hold-back of undecodable frames (defect 5), the retryable
mark on the wire, and the store errors that blame one request (defect 2)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from dirac_like.agents.job_folders import KeptFolder, folders_to_remove
from dirac_like.agents.outbox import Outbox, Report
from dirac_like.config import ServiceConfig
from dirac_like.errors import RateLimited, StoreError, UnstorableValue, error_from_wire
from dirac_like.model import ChangeSet
from dirac_like.protocol import decode_reply, encode_error
from dirac_like.services.frame_guard import FrameGuard, bounded, summary
from dirac_like.store.memory import FlakyStore

MB = 1024 * 1024


def kept(name: str, since: float, size_mb: int) -> KeptFolder:
    return KeptFolder(Path(name), since, size_mb * MB)


def test_defect_10_folders_older_than_the_keep_time_go() -> None:
    folders = [kept("old", 0.0, 1), kept("new", 900.0, 1)]
    assert folders_to_remove(folders, 1000.0, keep_for=500.0, max_bytes=100 * MB) == [Path("old")]


def test_defect_10_past_the_disk_cap_the_oldest_kept_folders_go_first() -> None:
    folders = [kept("b", 20.0, 40), kept("a", 10.0, 40), kept("c", 30.0, 40)]
    removed = folders_to_remove(folders, 40.0, keep_for=1000.0, max_bytes=90 * MB)
    assert removed == [Path("a")]
    assert folders_to_remove(folders, 40.0, keep_for=1000.0, max_bytes=10 * MB) == [
        Path("a"),
        Path("b"),
        Path("c"),
    ]


def test_defect_9_the_outbox_keeps_a_report_until_it_is_answered(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path)
    report = outbox.put(
        Report.new(
            job_id=7,
            attempt=1,
            pilot_id="p1",
            status="Done",
            minor_status="Execution Complete",
            output_pending=True,
            description={"Executable": "/bin/true"},
        )
    )
    assert Outbox(tmp_path).pending() == [report]  # what a restarted pilot finds

    sent = outbox.uploaded(report, "ab" * 32, "")
    assert Outbox(tmp_path).pending() == [sent]
    assert (sent.request_id, sent.output_sandbox, sent.output_pending, sent.description) == (
        report.request_id,
        "ab" * 32,
        False,
        {},
    )  # same request id: the service dedups

    outbox.done(sent)
    assert Outbox(tmp_path).pending() == []


def test_defect_9_an_unreadable_outbox_file_is_set_aside(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path)
    (outbox.folder / "broken.json").write_text("{not json")
    assert outbox.pending() == []
    assert (outbox.folder / "broken.bad").exists()


def test_defect_5_a_connection_past_its_bad_frames_is_refused_before_decoding(
    caplog: pytest.LogCaptureFixture,
) -> None:
    guard = FrameGuard(ServiceConfig(bad_frames_per_second=1.0, bad_frame_burst=3.0))
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            guard.admit("route:aa", 0.0)
            guard.bad_frame("route:aa", b"\xc1" * 10_000, "[bad_request] not msgpack", 0.0)
        with pytest.raises(RateLimited, match="undecodable"):
            guard.admit("route:aa", 0.0)
        guard.admit("route:bb", 0.0)  # another connection is not held back
        guard.admit("route:aa", 1.5)  # refilled
    lines = [record.getMessage() for record in caplog.records]
    assert len(lines) == 1 and len(lines[0]) < 300, lines  # paced, and bounded


def test_defect_5_log_summaries_are_bounded() -> None:
    assert len(summary(b"x" * 1_000_000)) < 100
    assert len(bounded("y" * 10_000)) < 350 and bounded("short") == "short"


def test_a_retryable_error_is_marked_on_the_wire() -> None:
    reply = decode_reply(encode_error("r1", "store_error", "disk full", retryable=True))
    assert reply.error is not None and reply.error.retryable
    plain = decode_reply(encode_error("r2", "invalid_argument", "no"))
    assert plain.error is not None and not plain.error.retryable


def test_defect_2_a_value_the_store_cannot_hold_blames_the_request_not_the_store() -> None:
    assert issubclass(UnstorableValue, StoreError) and not UnstorableValue.retryable
    assert StoreError.retryable
    assert error_from_wire("internal", "x").code == "internal"
    store = FlakyStore()
    store.unstorable_owner = "mallory"
    store.commit(ChangeSet())
    store.fail_commits = 1
    with pytest.raises(StoreError):
        store.commit(ChangeSet())
    store.commit(ChangeSet())


def test_a_turns_reports_share_one_file_removed_once_all_are_answered(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path)
    made = [
        Report.new(job_id=n, attempt=1, pilot_id="p1", status="Done", minor_status="")
        for n in (1, 2, 3)
    ]
    outbox.put_many(made)
    assert len(list(outbox.folder.glob("*.json"))) == 1  # one file, one fsync
    assert Outbox(tmp_path).pending() == made  # what a restarted pilot finds
    outbox.done(made[0])
    outbox.done(made[2])
    assert outbox.pending() == [made[1]]
    assert len(Outbox(tmp_path).pending()) == 3  # a successor sends all again: same ids
    outbox.done(made[1])
    assert list(outbox.folder.glob("*")) == []


def test_a_report_kept_alone_replaces_its_copy_in_a_turns_file(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path)
    first, second = (
        Report.new(job_id=n, attempt=1, pilot_id="p1", status="Done", minor_status="")
        for n in (1, 2)
    )
    outbox.put_many([first, second])
    newer = outbox.uploaded(first, "ab" * 32, "")
    assert sorted(Outbox(tmp_path).pending(), key=lambda r: r.job_id) == [newer, second]
    outbox.done(second)
    assert list(outbox.folder.glob("turn-*")) == []  # nothing of it left to answer
    assert Outbox(tmp_path).pending() == [newer]
