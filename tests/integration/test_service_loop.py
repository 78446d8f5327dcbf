"""The central service's loop in this process (issue 11, defects 2, 4 and 5): its store injected
(:class:`~dirac_like.store.memory.FlakyStore`), driven one ``loop()`` at a time over
``inproc://`` with real ZeroMQ sockets, so that the undo, replay and retry paths are tested
directly. The clock is fixed: rate-limit buckets do not refill during a test."""

from __future__ import annotations

import contextlib
import errno
import itertools
import logging
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq

from dirac_like.client import Client, RetryPolicy
from dirac_like.config import Config
from dirac_like.errors import StoreError
from dirac_like.protocol import (
    Op,
    Reply,
    Request,
    SandboxUploadArgs,
    SubmitArgs,
    decode_reply,
    encode_request,
    to_wire,
)
from dirac_like.services.central import CentralService
from dirac_like.store.memory import FlakyStore
from dirac_like.store.sqlite import SqliteStore

JOB = 'Executable = "/bin/true";'
NOW = 1_000_000.0
_endpoints = itertools.count()


class Loop:
    """A service in this process, and DEALER sockets that talk to it over inproc://."""

    def __init__(self, home: Path, store: FlakyStore | None, config: Config | None = None) -> None:
        """``store`` None: the service's own SQLite store in ``home``."""
        self.store = store if store is not None else FlakyStore()  # (unused without one)
        self.service = CentralService(
            config or Config(),
            home,
            clock=lambda: NOW,
            insecure=True,
            open_store=None if store is None else store.open,
        )
        self.endpoint = self.service.bind(f"inproc://central-loop-{next(_endpoints)}")
        self.sockets: list[zmq.Socket] = []

    def dealer(self) -> zmq.Socket:
        socket = self.service.context.socket(zmq.DEALER)
        socket.setsockopt(zmq.LINGER, 0)
        socket.connect(self.endpoint)
        self.sockets.append(socket)
        return socket

    def send(self, socket: zmq.Socket, request_id: str, op: str, args: Any) -> None:
        socket.send(encode_request(Request(request_id, op, to_wire(args))))

    def submit(self, socket: zmq.Socket, request_id: str, owner: str) -> None:
        self.send(socket, request_id, Op.SUBMIT, SubmitArgs([JOB], owner, "users"))

    def serve(self, expected: int) -> None:
        """One loop() that drains ``expected`` requests (all sent before: one batch)."""
        assert self.service.loop() == expected

    def reply(self, socket: zmq.Socket) -> Reply:
        assert socket.poll(5000), "no reply"
        return decode_reply(socket.recv())

    def owners_stored(self) -> list[str]:
        return sorted(job.owner for job in self.store.jobs.values())

    def close(self) -> None:
        for socket in self.sockets:
            socket.close(linger=0)
        self.service.close()


@pytest.fixture
def loop(tmp_path: Path) -> Iterator[Loop]:
    running = Loop(tmp_path / "home", FlakyStore())
    try:
        yield running
    finally:
        running.close()


def test_defect_2_a_request_the_store_cannot_hold_fails_alone_not_its_batch(loop: Loop) -> None:
    loop.store.unstorable_owner = "mallory"
    alice, mallory, bob = loop.dealer(), loop.dealer(), loop.dealer()
    loop.submit(alice, "a1", "alice")
    loop.submit(mallory, "m1", "mallory")
    loop.submit(bob, "b1", "bob")

    loop.serve(3)

    assert loop.reply(alice).ok and loop.reply(bob).ok
    refused = loop.reply(mallory)
    assert not refused.ok and refused.error is not None
    assert refused.error.code == "internal" and not refused.error.retryable
    assert loop.owners_stored() == ["alice", "bob"]
    assert sorted(job.owner for job in loop.service.state.jobs.values()) == ["alice", "bob"]
    loop.service.state.validate()


def test_defect_2_a_request_failing_inside_the_service_is_undone_alone(
    loop: Loop, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dirac_like.services import handlers

    real_submit = handlers.HANDLERS[Op.SUBMIT]

    def half_done(state: Any, args: SubmitArgs, now: float) -> Any:
        reply = real_submit(state, args, now)  # it changed the state, then fails: a bug
        if args.owner == "buggy":
            raise RuntimeError("a bug after the change")
        return reply

    monkeypatch.setitem(handlers.HANDLERS, Op.SUBMIT, half_done)
    alice, buggy = loop.dealer(), loop.dealer()
    loop.submit(alice, "a1", "alice")
    loop.submit(buggy, "x1", "buggy")

    loop.serve(2)

    assert loop.reply(alice).ok
    failed = loop.reply(buggy)
    assert failed.error is not None and failed.error.code == "internal"
    assert loop.owners_stored() == ["alice"]
    assert [job.owner for job in loop.service.state.jobs.values()] == ["alice"]


def test_defect_2_a_sandbox_file_error_is_a_store_error_for_that_request_only(
    loop: Loop, monkeypatch: pytest.MonkeyPatch
) -> None:
    def disk_full(*args: Any, **kwargs: Any) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    assert loop.service.sandboxes is not None
    monkeypatch.setattr(loop.service.sandboxes, "write_chunk", disk_full)
    uploader, alice = loop.dealer(), loop.dealer()
    loop.send(uploader, "u1", Op.SANDBOX_UPLOAD, SandboxUploadArgs("a" * 64, 4, 0, b"data"))
    loop.submit(alice, "a1", "alice")

    loop.serve(2)

    failed = loop.reply(uploader)
    assert failed.error is not None
    assert (failed.error.code, failed.error.retryable) == ("store_error", True)
    assert "No space left on device" in failed.error.message
    assert loop.reply(alice).ok and loop.owners_stored() == ["alice"]
    assert loop.store.opens == 1  # the store was fine: not reopened


def test_defect_4_a_failed_commit_undoes_the_batch_retryably_and_reopens_the_store(
    loop: Loop,
) -> None:
    loop.store.fail_commits = 1
    alice, bob = loop.dealer(), loop.dealer()
    loop.submit(alice, "a1", "alice")
    loop.submit(bob, "b1", "bob")

    loop.serve(2)

    for socket in (alice, bob):
        undone = loop.reply(socket)
        assert undone.error is not None
        assert (undone.error.code, undone.error.retryable) == ("store_error", True)
    assert loop.store.opens == 2 and loop.owners_stored() == []
    assert not loop.service.state.jobs

    loop.submit(alice, "a1", "alice")  # the clients' retries, same ids
    loop.submit(bob, "b1", "bob")
    loop.serve(2)

    assert loop.reply(alice).ok and loop.reply(bob).ok
    assert loop.owners_stored() == ["alice", "bob"]


def test_defect_4_a_store_that_cannot_be_reopened_refuses_retryably_until_it_can(
    loop: Loop,
) -> None:
    loop.store.fail_commits = 1
    loop.store.openable = False
    alice = loop.dealer()
    loop.submit(alice, "a1", "alice")
    loop.serve(1)
    assert loop.reply(alice).error.code == "store_error"  # type: ignore[union-attr]

    loop.submit(alice, "a1", "alice")
    loop.service.loop()
    refused = loop.reply(alice)
    assert refused.error is not None and refused.error.retryable

    loop.store.openable = True
    loop.submit(alice, "a1", "alice")
    loop.serve(1)
    assert loop.reply(alice).ok and loop.owners_stored() == ["alice"]


def test_defect_4_a_store_that_is_not_writable_is_refused_at_start(tmp_path: Path) -> None:
    store = FlakyStore()
    store.writable = False
    with pytest.raises(StoreError, match="not writable"):
        CentralService(Config(), tmp_path / "home", insecure=True, open_store=store.open)


@contextlib.contextmanager
def immutable(path: Path) -> Iterator[None]:
    """``path`` read-only even for root (chattr +i), for the duration."""
    chattr = shutil.which("chattr") or "chattr"  # missing: a clear failure below
    try:
        done = subprocess.run([chattr, "+i", str(path)], capture_output=True, text=True)
    except FileNotFoundError:
        done = subprocess.CompletedProcess([chattr], 127, "", "chattr not installed")
    if done.returncode != 0:
        if os.environ.get("CI") == "true":  # scripts/reliability-tools.sh install gives chattr
            pytest.fail(f"chattr +i failed: {done.stderr.strip()}")
        pytest.skip(f"chattr +i does not work here: {done.stderr.strip()}")
    try:
        yield
    finally:
        subprocess.run([chattr, "-i", str(path)], check=True)


def test_defect_4_a_read_only_sqlite_store_is_refused_at_start_with_a_clear_message(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    path = Path(Config().store_url(home).removeprefix("sqlite://"))
    SqliteStore(path).close()
    with immutable(path), pytest.raises(StoreError, match=r"is not writable .*read-only store"):
        CentralService(Config(), home, insecure=True)


def test_the_client_retries_a_retryable_error_with_the_same_request_id(loop: Loop) -> None:
    loop.store.fail_commits = 2
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            loop.service.loop()

    server = threading.Thread(target=serve)
    server.start()
    try:
        policy = RetryPolicy(timeout=5.0, retries=3, backoff=0.01, max_backoff=0.02)
        with Client(loop.endpoint, policy, context=loop.service.context, insecure=True) as client:
            job_ids = client.submit([JOB], "alice", "users")
    finally:
        stop.set()
        server.join()
    assert len(job_ids) == 1 and loop.owners_stored() == ["alice"]
    assert loop.store.opens == 3  # reopened after each failed commit


def test_defect_5_undecodable_frames_are_held_back_per_connection_before_decoding(
    loop: Loop, caplog: pytest.LogCaptureFixture
) -> None:
    burst = int(Config().service.bad_frame_burst)
    flooder, alice = loop.dealer(), loop.dealer()
    garbage = b"\xc1" + b"A" * 100_000  # not msgpack; a log must not quote it whole
    for _ in range(burst + 10):
        flooder.send(garbage)
    loop.submit(alice, "a1", "alice")

    with caplog.at_level(logging.WARNING):
        while loop.service.loop():
            pass

    codes = [loop.reply(flooder).error.code for _ in range(burst + 10)]  # type: ignore[union-attr]
    assert codes == ["bad_request"] * burst + ["rate_limited"] * 10
    assert loop.reply(alice).ok
    lines = [record.getMessage() for record in caplog.records]
    assert 1 <= len(lines) <= 2, lines
    assert all(len(line) < 400 for line in lines), lines
