"""The SQLite store's job snapshot (dirac_like/store/sqlite_snapshot.py) on real store files: a
load from it gives what a load of the jobs table gives (the same records, the same matches after
the restore), changes committed after it are replayed, and every snapshot that cannot be
trusted (corrupt, truncated, of another store, of a store that went another way, too old,
killed while written) means the full read, named in the log."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
from dataclasses import astuple
from pathlib import Path
from typing import Any

import pytest

from dirac_like.config import Config
from dirac_like.model import JobRecord
from dirac_like.protocol import PilotResources
from dirac_like.services.state import CentralState
from dirac_like.states import JobStatus
from dirac_like.store import sqlite_snapshot
from dirac_like.store.job_snapshot import decode
from dirac_like.store.sqlite import SqliteStore
from dirac_like.store.sqlite_snapshot import snapshot_path
from dirac_like.testing import wait_for

NOW = 1_000_000.0
CERN = "LCG.CERN.cern"
JDLS = [
    'Executable = "/bin/true"; Arguments = "%s"; Priority = 3; Parameters = 12;',
    'Executable = "/bin/true"; Arguments = "%s"; Priority = 7; Site = "LCG.CERN.cern"; '
    "Parameters = 9;",
    'Executable = "/bin/true"; JobName = "calib"; Priority = 1; Parameters = 6;',
]


class Service:
    """A service's state on a real store, committed after each step as the loop does."""

    def __init__(self, path: Path) -> None:
        self.store = SqliteStore(path)
        self.state = CentralState(Config(), self.store, self.store.load(), NOW)

    def commit(self) -> None:
        changes = self.state.take_changes()
        self.store.commit(changes)
        self.state.committed(changes)

    def submit(self, jdl: str, owner: str = "alice") -> list[int]:
        job_ids = self.state.submit([jdl], owner, "lhcb_mc", NOW)
        self.commit()
        return job_ids

    def match(self, count: int, pilot: str = "p1") -> list[int]:
        matched = []
        for _ in range(count):
            job = self.state.request_job(pilot, PilotResources(site=CERN), NOW)
            assert job is not None
            matched.append(job.job_id)
        self.commit()
        return matched

    def kill(self, job_ids: list[int]) -> None:
        for job_id in job_ids:
            job = self.state.jobs[job_id]
            self.state.book.set_status(job, JobStatus.KILLED, "Killed by test", "test", NOW)
        self.commit()

    def save_snapshot(self) -> None:
        assert self.store.save_job_snapshot(self.state.jobs.values()) > 0

    def close(self) -> None:
        self.store.close()


def filled(path: Path) -> Service:
    service = Service(path)
    for jdl in JDLS:
        service.submit(jdl)
    service.match(4)
    service.kill([2, 20])
    return service


def rows(jobs: list[JobRecord]) -> list[tuple[Any, ...]]:
    return [astuple(job) for job in sorted(jobs, key=lambda job: job.job_id)]


def every_match(path: Path) -> list[int]:
    """The job ids a restarted service hands out, in order, until none is left for CERN."""
    store = SqliteStore(path)
    try:
        state = CentralState(Config(), store, store.load(), NOW + 10)
        state.validate()
        matched = []
        while (job := state.request_job("p9", PilotResources(site=CERN), NOW + 10)) is not None:
            matched.append(job.job_id)
        return matched
    finally:
        store.close()


def table_read(path: Path) -> tuple[list[tuple[Any, ...]], list[int]]:
    """The jobs and the matches of a load without the snapshot (it is put back after)."""
    snapshot = snapshot_path(path)
    aside = snapshot.with_name("aside")
    had = snapshot.exists()
    if had:
        snapshot.rename(aside)
    try:
        return snapshot_read(path)
    finally:
        if had:
            aside.rename(snapshot)


def snapshot_read(path: Path) -> tuple[list[tuple[Any, ...]], list[int]]:
    """The jobs and the matches of a load (from the snapshot if there is one to use)."""
    store = SqliteStore(path)
    try:
        jobs = rows(store.load().jobs)
    finally:
        store.close()
    return jobs, every_match(path)


def used(caplog: pytest.LogCaptureFixture) -> bool:
    return "jobs read from the snapshot" in caplog.text


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return tmp_path / "jobs.sqlite"


def test_a_load_from_the_snapshot_equals_the_table_read(
    store_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    service = filled(store_path)
    service.save_snapshot()
    service.close()
    expected = table_read(store_path)
    caplog.set_level(logging.INFO)
    caplog.clear()
    assert snapshot_read(store_path) == expected
    assert used(caplog) and "0 history rows after it replayed" in caplog.text
    assert len(expected[1]) == 12 + 9 + 6 - 4 - 2  # every waiting job matched, in the same order


def test_changes_committed_after_the_snapshot_are_replayed(
    store_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    service = filled(store_path)
    service.save_snapshot()
    service.match(3, pilot="p2")  # a crash after these: the snapshot is older than the store
    service.kill([25])
    service.submit('Executable = "/bin/true"; Priority = 9; Parameters = 4;', owner="bob")
    service.close()
    expected = table_read(store_path)
    caplog.set_level(logging.INFO)
    caplog.clear()
    assert snapshot_read(store_path) == expected
    assert used(caplog)
    assert expected[1][:4] == [28, 29, 30, 31]  # bob's new jobs, priority 9, come first


def test_a_missing_snapshot_means_the_table_read(
    store_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    filled(store_path).close()
    caplog.set_level(logging.INFO)
    assert snapshot_read(store_path) == table_read(store_path)
    assert not used(caplog) and "not used" not in caplog.text


def damaged(store_path: Path, damage: Any, caplog: pytest.LogCaptureFixture, why: str) -> None:
    """Damage the snapshot; the load is then the table read, and the log says why."""
    service = filled(store_path)
    service.save_snapshot()
    service.close()
    expected = table_read(store_path)
    damage(snapshot_path(store_path))
    caplog.set_level(logging.INFO)
    caplog.clear()
    assert snapshot_read(store_path) == expected
    assert not used(caplog)
    assert "not used" in caplog.text and why in caplog.text


def test_a_corrupt_snapshot_means_the_table_read(
    store_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def flip(path: Path) -> None:
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0x01
        path.write_bytes(bytes(data))

    damaged(store_path, flip, caplog, "digest")


def test_a_truncated_snapshot_means_the_table_read(
    store_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def cut(path: Path) -> None:
        path.write_bytes(path.read_bytes()[:-100])

    damaged(store_path, cut, caplog, "digest")


def test_hostile_bytes_in_place_of_the_snapshot_mean_the_table_read(
    store_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    damaged(store_path, lambda path: path.write_bytes(os.urandom(5000)), caplog, "format")


def refused_beside(source: Path, target: Path, caplog: pytest.LogCaptureFixture, why: str) -> None:
    """The snapshot of ``source`` put beside ``target`` is refused: the table is read."""
    shutil.copy(snapshot_path(source), snapshot_path(target))
    caplog.set_level(logging.INFO)
    caplog.clear()
    assert snapshot_read(target) == table_read(target)
    assert why in caplog.text and not used(caplog)


def test_a_snapshot_of_another_store_is_not_used(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    first, second = tmp_path / "a" / "jobs.sqlite", tmp_path / "b" / "jobs.sqlite"
    for path in (first, second):  # the same jobs, made the same way
        service = filled(path)
        service.save_snapshot()
        service.close()
    refused_beside(first, second, caplog, "written from another store")


def filled_and_copied(tmp_path: Path) -> tuple[Path, Path]:
    """A filled store with its snapshot (the store's id is made with the first one), and a
    copy of its folder."""
    path, copy = tmp_path / "jobs.sqlite", tmp_path / "copy" / "jobs.sqlite"
    service = filled(path)
    service.save_snapshot()
    service.close()
    shutil.copytree(path.parent, copy.parent, ignore=shutil.ignore_patterns("copy"))
    return path, copy


def test_a_snapshot_newer_than_the_store_is_not_used(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The store put back from a copy taken before the snapshot was written."""
    path, copy = filled_and_copied(tmp_path)
    service = Service(path)
    service.match(2)
    service.save_snapshot()
    service.close()
    refused_beside(path, copy, caplog, "history is not the one")


def test_a_snapshot_of_a_store_that_went_another_way_is_not_used(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Two copies of a store, each changed as much, differently: the snapshot of one names a
    history row the other also has, with other contents."""
    path, copy = filled_and_copied(tmp_path)
    service, other = Service(path), Service(copy)
    service.kill([5, 6])
    service.save_snapshot()
    other.kill([7, 8])
    for each in (service, other):
        each.close()
    refused_beside(path, copy, caplog, "history is not the one")


def test_too_many_changes_after_the_snapshot_mean_the_table_read(
    store_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_snapshot, "REPLAY_LIMIT", 3)
    service = filled(store_path)
    service.save_snapshot()
    service.match(8)  # 8 history rows: more than max(3, 27 jobs // 4)
    service.close()
    caplog.set_level(logging.INFO)
    caplog.clear()
    assert snapshot_read(store_path) == table_read(store_path)
    assert "more than 6 history rows after it" in caplog.text and not used(caplog)


WRITER = """
import sys
from pathlib import Path
from dirac_like.model import JobRecord
from dirac_like.states import JobStatus
from dirac_like.store.job_snapshot import SnapshotStamp
from dirac_like.store.sqlite_snapshot import write_snapshot

jobs = [JobRecord(n, "alice", "g", 1, 0, JobStatus.WAITING, job_name=f"job {n}")
        for n in range(1, 200_001)]
while True:
    write_snapshot(Path(sys.argv[1]), jobs, SnapshotStamp(1, 10, 5, b""))
"""


def test_a_writer_killed_while_writing_leaves_the_previous_snapshot_whole(
    store_path: Path,
) -> None:
    service = filled(store_path)
    service.save_snapshot()
    service.close()
    snapshot = snapshot_path(store_path)
    previous = snapshot.read_bytes()
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(snapshot)])
    try:
        wait_for(lambda: list(store_path.parent.glob("*.tmp")), "the writer's temporary file")
    finally:
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait(10)
    written = snapshot.read_bytes()
    assert written == previous or decode(written)[1] == 200_000  # the old one, or a whole new one
    # what a writer killed while writing leaves (the kill above may have come between two
    # writes), cleared by the next save
    snapshot.with_name(f"{snapshot.name}.999999.tmp").write_bytes(previous[:100])
    service = Service(store_path)
    service.save_snapshot()
    service.close()
    assert not list(store_path.parent.glob("*.tmp"))
    assert snapshot_read(store_path) == table_read(store_path)


def test_a_snapshot_that_still_holds_the_store_is_not_written_again(store_path: Path) -> None:
    service = filled(store_path)
    service.save_snapshot()
    service.close()
    snapshot = snapshot_path(store_path)
    written = snapshot.stat().st_mtime_ns
    service = Service(store_path)  # loaded from it; nothing changes before the stop
    service.save_snapshot()
    assert snapshot.stat().st_mtime_ns == written
    service.kill([7])
    service.save_snapshot()
    service.close()
    assert snapshot.stat().st_mtime_ns != written
    assert snapshot_read(store_path) == table_read(store_path)
