"""The fsync of a batch overlapped with the next batch (services/syncing.py): nothing is
acknowledged before the fsync that covers it has returned, a failed fsync acknowledges nothing
and stops the service, and a kill -9 of a real service in the middle of its batches loses no
acknowledged match."""

from __future__ import annotations

import contextlib
import errno
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq

from dirac_like.client import Client, RetryPolicy
from dirac_like.config import Config, ServiceConfig
from dirac_like.identity import resolve_identity, secure_client_socket
from dirac_like.protocol import Request, SubmitArgs, decode_reply, encode_request, to_wire
from dirac_like.services.central import CentralService
from dirac_like.services.syncing import SyncFailed
from dirac_like.store.sqlite import SqliteStore
from dirac_like.testing import wait_for

JOB = 'Executable = "/bin/true";'
RETRIES = RetryPolicy(timeout=10.0, retries=2, backoff=0.05, max_backoff=0.2)


class GatedStore(SqliteStore):
    """The service's own SQLite store (full, overlap_sync), whose WAL fsync waits for ``gate``
    (then runs for real), or fails with EIO when ``failing``."""

    gate = threading.Event()
    failing = False

    def deferred_sync(self) -> Callable[[], None] | None:
        real = super().deferred_sync()
        assert real is not None, "synchronous=full with defer_sync: the fsync is the caller's"

        def gated() -> None:
            if GatedStore.failing:
                raise OSError(errno.EIO, "Input/output error (injected by the test)")
            GatedStore.gate.wait()
            real()

        return gated


@pytest.fixture
def gated(tmp_path: Path) -> Iterator[CentralService]:
    GatedStore.gate = threading.Event()
    GatedStore.failing = False
    home = tmp_path / "home"
    config = Config(service=ServiceConfig(max_batch=1))  # one request a batch
    service = CentralService(
        config,
        home,
        insecure=True,
        open_store=lambda: GatedStore(home / "jobs.sqlite", "full", defer_sync=True),
    )
    service.bind("inproc://overlapped-sync")
    try:
        yield service
    finally:
        GatedStore.gate.set()
        service.close()


def owners_committed(home: Path) -> list[str]:
    """The owners of the jobs the store holds, read on a connection of its own."""
    with contextlib.closing(sqlite3.connect(home / "jobs.sqlite")) as db:
        return sorted(row[0] for row in db.execute("SELECT owner FROM jobs"))


def submit(socket: zmq.Socket, owner: str) -> None:
    args = to_wire(SubmitArgs([JOB], owner, "users"))
    socket.send(encode_request(Request(f"{owner}-1", "submit", args)))


def test_the_next_batch_is_served_during_the_fsync_and_neither_is_acknowledged_before_it(
    gated: CentralService,
) -> None:
    alice, bob = (gated.context.socket(zmq.DEALER) for _ in range(2))
    for socket in (alice, bob):
        socket.connect("inproc://overlapped-sync")
    submit(alice, "alice")
    submit(bob, "bob")
    wait_for(lambda: gated.socket.get(zmq.EVENTS) & zmq.POLLIN, "the requests", 5)
    served = threading.Thread(target=lambda: [gated.loop() for _ in range(3)])
    served.start()
    try:
        # alice's batch committed, its fsync held at the gate; bob's batch served meanwhile
        wait_for(lambda: owners_committed(gated.home) == ["alice", "bob"], "both commits", 10)
        assert not alice.poll(300) and not bob.poll(0), "acknowledged before the fsync"
        GatedStore.gate.set()
        assert alice.poll(10_000) and decode_reply(alice.recv()).ok
        assert bob.poll(10_000) and decode_reply(bob.recv()).ok
    finally:
        GatedStore.gate.set()
        served.join(30)
        alice.close(0)
        bob.close(0)


def test_a_failed_fsync_acknowledges_nothing_and_stops_the_service(
    gated: CentralService,
) -> None:
    GatedStore.failing = True
    alice = gated.context.socket(zmq.DEALER)
    alice.connect("inproc://overlapped-sync")
    try:
        submit(alice, "alice")
        wait_for(lambda: gated.socket.get(zmq.EVENTS) & zmq.POLLIN, "the requests", 5)
        with pytest.raises(SyncFailed, match="Input/output error"):
            gated.loop()
        assert owners_committed(gated.home) == ["alice"]  # written, never acknowledged
        assert not alice.poll(200)
        gated.held.settle()  # nothing left held: closing sends nothing either
        assert not alice.poll(0)
    finally:
        alice.close(0)


# -- a real service, kill -9 in the middle of its batches ------------------------------------------


def request_job(pilot: str) -> bytes:
    resources = {"site": "LCG.CERN.cern", "cores": 1, "memory_mb": 4000}
    args = {"pilot_id": pilot, "resources": resources}
    return encode_request(Request(uuid.uuid4().hex, "request_job", args))


def test_kill_9_during_overlapped_batches_loses_no_acknowledged_match(start_central: Any) -> None:
    service = start_central()
    with Client(service.endpoint, RETRIES) as client:
        client.submit(['Executable = "/bin/true"; Arguments = "%s"; Parameters = 3000;'], "alice")
    identity = resolve_identity()
    context = zmq.Context()
    sockets = []
    acknowledged: dict[int, str] = {}  # job id -> pilot told to run it
    try:
        for index in range(16):  # requests in flight all the time: batches follow each other
            socket = context.socket(zmq.DEALER)
            socket.setsockopt(zmq.LINGER, 0)
            secure_client_socket(socket, identity)
            socket.connect(service.endpoint)
            socket.send(request_job(f"crash-pilot-{index}"))
            sockets.append(socket)
        poller = zmq.Poller()
        for socket in sockets:
            poller.register(socket, zmq.POLLIN)

        def take(timeout_ms: int, ask_again: bool) -> None:
            for socket, _ in poller.poll(timeout_ms):
                reply = decode_reply(socket.recv())
                pilot = f"crash-pilot-{sockets.index(socket)}"
                assert reply.ok, reply.error
                if reply.result["job"]:
                    acknowledged[reply.result["job"]["job_id"]] = pilot
                if ask_again:
                    socket.send(request_job(pilot))

        wait_for(lambda: take(100, True) or len(acknowledged) >= 400, "400 matches", 120)
        service.kill9()
        while poller.poll(200):  # replies sent before the kill are acknowledged too
            take(0, False)
    finally:
        for socket in sockets:
            socket.close(0)
        context.term()
    restarted = start_central(home=service.home)
    with Client(restarted.endpoint, RETRIES) as client:
        rows = client.status(sorted(acknowledged))
    lost = [(row.job_id, row.status, row.pilot_id) for row in rows
            if row.status != "Matched" or row.pilot_id != acknowledged[row.job_id]]  # fmt: skip
    assert len(rows) == len(acknowledged) >= 400 and not lost, lost[:5]
