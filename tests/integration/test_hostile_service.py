"""A broken or hostile service: the client refuses a reply of the wrong shape with a clear
ProtocolError (never a KeyError deep in the caller), and drops a push it cannot read. The
"service" is a bare ROUTER socket on loopback, answering in a thread."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import msgpack
import pytest
import zmq

from dirac_like.client import Client, RetryPolicy
from dirac_like.errors import ProtocolError
from dirac_like.protocol import KillJob, PilotCommand, decode_request

ONE_TRY = RetryPolicy(timeout=5.0, retries=0)


class FakeService:
    """Answers each request with ``results[op]`` (after the pushes in ``pushes``)."""

    def __init__(self) -> None:
        self.context = zmq.Context()
        self.socket = self.context.socket(zmq.ROUTER)
        self.socket.setsockopt(zmq.LINGER, 0)
        port = self.socket.bind_to_random_port("tcp://127.0.0.1")
        self.endpoint = f"tcp://127.0.0.1:{port}"
        self.results: dict[str, Any] = {}
        self.pushes: list[Any] = []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        while not self.stopping.is_set():
            if not self.socket.poll(50):
                continue
            envelope, payload = self.socket.recv_multipart()
            request = decode_request(payload)
            for commands in self.pushes:
                frame = {"v": 1, "push": {"commands": commands}}
                self.socket.send_multipart([envelope, msgpack.packb(frame)])
            reply = {"v": 1, "id": request.id, "ok": True, "result": self.results[request.op]}
            self.socket.send_multipart([envelope, msgpack.packb(reply)])

    def close(self) -> None:
        self.stopping.set()
        self.thread.join()
        self.socket.close()
        self.context.term()


@pytest.fixture
def service() -> Iterator[FakeService]:
    fake = FakeService()
    yield fake
    fake.close()


@pytest.mark.parametrize(
    ("op", "call", "result", "problem"),
    [
        ("kill", lambda c: c.kill([1]), {"killed": [1]}, "missing argument 'kill_requested'"),
        ("status", lambda c: c.status([1]), [{"job_id": 1}], r"reply to status\[0\]: missing"),
        ("submit", lambda c: c.submit(["x"], "alice"), {"job_ids": "1"}, "must be a list"),
        (
            "heartbeat",
            lambda c: c.heartbeat(1, 1, "p"),
            {"commands": [{"command": "reboot"}]},
            "unknown command 'reboot'",
        ),
        ("ping", lambda c: c.ping(), None, "reply to ping: must be a map"),
    ],
)
def test_a_malformed_reply_is_a_protocol_error(
    service: FakeService, op: str, call: Any, result: Any, problem: str
) -> None:
    service.results[op] = result
    with (
        Client(service.endpoint, ONE_TRY, insecure=True) as client,
        pytest.raises(ProtocolError, match=problem),
    ):
        call(client)


def test_a_bad_push_is_dropped_and_a_good_one_handed_over(service: FakeService) -> None:
    pushed: list[PilotCommand] = []
    service.pushes = [[{"command": "reboot"}], [{"command": "kill", "job_id": 4}]]
    service.results["heartbeat"] = {"commands": []}
    with Client(service.endpoint, ONE_TRY, insecure=True, on_push=pushed.extend) as client:
        assert client.heartbeat(4, 1, "p") == []
    assert pushed == [KillJob(4)]
