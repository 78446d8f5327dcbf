"""The central service over real ZeroMQ on loopback, in its own process, with a real SQLite file."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import msgpack
import pytest
import zmq

from dirac_like.client import Client, RetryPolicy
from dirac_like.errors import (
    IllegalTransition,
    InvalidJobDescription,
    JobNotFound,
    ServiceUnavailable,
)
from dirac_like.identity import resolve_identity, secure_client_socket
from dirac_like.processes import ServiceProcess
from dirac_like.protocol import (
    PROTOCOL_VERSION,
    JobSummary,
    KillJob,
    KillReply,
    PilotCommand,
    PilotResources,
    Request,
    decode_reply,
    encode_request,
)

FAST_RETRIES = RetryPolicy(timeout=5.0, retries=2, backoff=0.05, max_backoff=0.2)

HELLO = 'Executable = "/bin/echo"; Arguments = "hello";'
CERN = PilotResources(site="LCG.CERN.cern", cores=8, memory_mb=16000)


class RawPeer:
    """A bare DEALER socket, to send frames the real client never would."""

    def __init__(self, endpoint: str) -> None:
        self.context = zmq.Context()
        self.socket = self.context.socket(zmq.DEALER)
        self.socket.setsockopt(zmq.LINGER, 0)
        identity = resolve_identity()  # the service's admin ($DIRAC_LIKE_IDENTITY, conftest)
        assert identity is not None
        secure_client_socket(self.socket, identity)
        self.socket.connect(endpoint)

    def exchange(self, *frames: bytes, timeout: float = 10.0) -> dict[str, Any]:
        self.socket.send_multipart(list(frames))
        assert self.socket.poll(int(timeout * 1000)), "no reply from the service"
        reply: dict[str, Any] = msgpack.unpackb(self.socket.recv(), raw=False)
        return reply

    def request(self, op: str, args: dict[str, Any], request_id: str | None = None) -> Any:
        frame = encode_request(Request(request_id or uuid.uuid4().hex, op, args))
        return self.exchange(frame)

    def close(self) -> None:
        self.socket.close()
        self.context.term()


@pytest.fixture
def raw(central: ServiceProcess) -> Iterator[RawPeer]:
    peer = RawPeer(central.endpoint)
    yield peer
    peer.close()


def stored_view(client: Client) -> list[JobSummary]:
    return client.list_jobs()


def assert_refused(reply: dict[str, Any], code: str) -> None:
    assert reply["ok"] is False, reply
    assert reply["error"]["code"] == code, reply
    assert reply["error"]["message"]


# -- the operations over the wire ------------------------------------------------------------


def test_submit_match_run_done_over_the_socket(client: Client) -> None:
    (job_id,) = client.submit([HELLO], owner="alice")
    match = client.request_job("pilot-1", CERN).job
    assert match.job_id == job_id and match.description["Arguments"] == "hello"
    client.update_status(job_id, match.attempt, "pilot-1", "Running")
    client.update_status(job_id, match.attempt, "pilot-1", "Done", "Execution complete")
    (row,) = client.status([job_id])
    assert (row.status, row.site, row.owner) == ("Done", "LCG.CERN.cern", "alice")
    statuses = [entry.status for entry in client.history(job_id)]
    assert statuses == ["Received", "Checking", "Waiting", "Matched", "Running", "Done"]


def test_admin_operations_over_the_socket(client: Client) -> None:
    client.submit([HELLO], owner="alice", group="physics")
    client.ban_site("LCG.RAL.uk", "storage down")
    sites = {row.site: row for row in client.sites()}
    assert sites["LCG.RAL.uk"].status == "Banned"
    assert client.request_job("p", PilotResources(site="LCG.RAL.uk")).job is None
    client.unban_site("LCG.RAL.uk")
    (queue,) = client.task_queues()
    assert (queue.owner, queue.group, queue.waiting) == ("alice", "physics", 1)
    client.set_share("physics", 5)
    shares = {row.group: row for row in client.shares()}
    assert shares["physics"].share == 5


def test_a_retried_submit_creates_no_second_job(raw: RawPeer, client: Client) -> None:
    args = {"descriptions": [HELLO], "owner": "alice", "group": ""}
    first = raw.request("submit", args, request_id="retry-me")
    second = raw.request("submit", args, request_id="retry-me")
    assert first == second and first["ok"]
    assert len(client.list_jobs()) == 1


def test_a_retried_match_returns_the_same_job(raw: RawPeer, client: Client) -> None:
    client.submit([HELLO, HELLO], owner="alice")
    args = {"pilot_id": "p1", "resources": {"site": "S"}}
    first = raw.request("request_job", args, request_id="match-1")
    second = raw.request("request_job", args, request_id="match-1")
    assert first["result"]["job"]["job_id"] == second["result"]["job"]["job_id"]
    assert len(client.list_jobs(status="Waiting")) == 1


def test_state_survives_a_clean_restart(start_central: Any, tmp_path: Any) -> None:
    from dirac_like.processes import free_port

    listen = f"tcp://127.0.0.1:{free_port()}"
    service = start_central(listen=listen)
    with Client(service.endpoint, FAST_RETRIES) as client:
        job_ids = client.submit([HELLO] * 3, owner="alice")
        client.request_job("p1", CERN)
    assert service.stop() == 0
    service = start_central(home=service.home, listen=listen)
    with Client(service.endpoint, FAST_RETRIES) as client:
        statuses = sorted(row.status for row in client.status(job_ids))
    assert statuses == ["Matched", "Waiting", "Waiting"]


# -- bad input: one named test per case, each followed by a check that nothing changed --------


@pytest.fixture
def before(client: Client) -> list[JobSummary]:
    client.submit([HELLO, HELLO], owner="alice")
    return stored_view(client)


def still_serving_and_unchanged(client: Client, before: list[JobSummary]) -> None:
    assert client.ping().service == "central"
    assert stored_view(client) == before


def test_garbage_frame_gets_bad_request(raw: RawPeer, client: Client, before: Any) -> None:
    assert_refused(raw.exchange(b"\xc1\xff\x00 definitely not msgpack"), "bad_request")
    still_serving_and_unchanged(client, before)


def test_msgpack_that_is_not_a_map_gets_bad_request(
    raw: RawPeer, client: Client, before: Any
) -> None:
    assert_refused(raw.exchange(msgpack.packb([1, 2, 3])), "bad_request")
    still_serving_and_unchanged(client, before)


def test_raw_garbage_on_the_port_does_not_disturb_the_service(
    central: ServiceProcess, client: Client, before: Any
) -> None:
    host, port = central.endpoint.removeprefix("tcp://").rsplit(":", 1)
    for junk in (b"GET / HTTP/1.1\r\n\r\n", bytes(range(256)) * 64, b"\xff" * 10 + b"\x7f"):
        with socket.create_connection((host, int(port)), timeout=5) as sock:
            sock.sendall(junk)
    still_serving_and_unchanged(client, before)


def test_unknown_op_gets_unknown_op(raw: RawPeer, client: Client, before: Any) -> None:
    assert_refused(raw.request("format_disk", {}), "unknown_op")
    still_serving_and_unchanged(client, before)


def test_wrong_argument_type_gets_bad_request(raw: RawPeer, client: Client, before: Any) -> None:
    reply = raw.request("kill", {"job_ids": ["1; DROP TABLE jobs"]})
    assert_refused(reply, "bad_request")
    assert "job_ids[0]" in reply["error"]["message"]
    still_serving_and_unchanged(client, before)


def test_unknown_argument_gets_bad_request(raw: RawPeer, client: Client, before: Any) -> None:
    assert_refused(raw.request("status", {"job_ids": [1], "as_admin": True}), "bad_request")
    still_serving_and_unchanged(client, before)


def test_missing_argument_gets_bad_request(raw: RawPeer, client: Client, before: Any) -> None:
    assert_refused(raw.request("submit", {"owner": "alice"}), "bad_request")
    still_serving_and_unchanged(client, before)


def test_wrong_protocol_version_gets_bad_version(raw: RawPeer, client: Client, before: Any) -> None:
    frame = msgpack.packb({"v": PROTOCOL_VERSION + 41, "id": "x", "op": "ping", "args": {}})
    assert_refused(raw.exchange(frame), "bad_version")
    still_serving_and_unchanged(client, before)


def test_oversized_message_gets_too_large(start_central: Any) -> None:
    service = start_central("[service]\nmax_message_bytes = 4096\n")
    peer = RawPeer(service.endpoint)
    try:
        big = {"descriptions": ["#" * 5000 + "\n" + HELLO], "owner": "alice", "group": ""}
        assert_refused(peer.request("submit", big), "too_large")
        with Client(service.endpoint, FAST_RETRIES) as client:
            assert client.list_jobs() == []
            assert client.ping().service == "central"
    finally:
        peer.close()


def test_invalid_jdl_names_attribute_and_line(client: Client, before: Any) -> None:
    with pytest.raises(InvalidJobDescription) as refused:
        client.submit(['Executable = "x";\nPriority = "high";'], owner="alice")
    assert "Priority" in str(refused.value) and "line 2" in str(refused.value)
    still_serving_and_unchanged(client, before)


def test_unknown_job_id_gets_job_not_found(client: Client, before: Any) -> None:
    with pytest.raises(JobNotFound, match="424242"):
        client.kill([1, 424242])
    still_serving_and_unchanged(client, before)


def test_illegal_transition_is_refused(client: Client, before: Any) -> None:
    match = client.request_job("p1", CERN).job
    after_match = stored_view(client)
    with pytest.raises(IllegalTransition, match="Matched to Done"):
        client.update_status(match.job_id, match.attempt, "p1", "Done")
    still_serving_and_unchanged(client, after_match)


def test_deeply_nested_args_get_bad_request(raw: RawPeer, client: Client, before: Any) -> None:
    # msgpack's own packer refuses such depth, so the frame is written byte by byte.
    envelope = b"".join(
        msgpack.packb(x) for x in ("v", PROTOCOL_VERSION, "id", "deep", "op", "ping", "args")
    )
    frame = b"\x84" + envelope + b"\x91" * 100_000 + b"\x01"
    reply = raw.exchange(frame)
    assert reply["ok"] is False
    still_serving_and_unchanged(client, before)


# -- crash: kill -9 at any moment loses no acknowledged job -----------------------------------


def run_until_unavailable(action: Any, acknowledged: list[Any], stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            acknowledged.append(action())
        except ServiceUnavailable:
            return


def test_kill_9_loses_no_acknowledged_job_and_leaves_none_half_matched(start_central: Any) -> None:
    from dirac_like.processes import free_port

    listen = f"tcp://127.0.0.1:{free_port()}"
    service = start_central(listen=listen)
    quick = type(FAST_RETRIES)(timeout=1.0, retries=0)
    submitted: list[list[int]] = []
    matched: list[dict[str, Any]] = []
    stop = threading.Event()
    with Client(service.endpoint, FAST_RETRIES) as setup:
        setup.submit([HELLO] * 200, owner="alice")
    submitter = Client(service.endpoint, quick)
    pilot = Client(service.endpoint, quick)
    threads = [
        threading.Thread(
            target=run_until_unavailable,
            args=(lambda: submitter.submit([HELLO] * 5, owner="bob"), submitted, stop),
        ),
        threading.Thread(
            target=run_until_unavailable,
            args=(lambda: pilot.request_job("p-crash", CERN).job, matched, stop),
        ),
    ]
    try:
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 60
        while (len(submitted) < 20 or len(matched) < 20) and time.monotonic() < deadline:
            time.sleep(0.01)  # polling a condition with a deadline
        assert len(submitted) >= 20 and len(matched) >= 20, "load did not get going"
        service.kill9()
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
        submitter.close()
        pilot.close()
    service = start_central(home=service.home, listen=listen)
    with Client(service.endpoint, FAST_RETRIES) as client:
        acknowledged = [job_id for batch in submitted for job_id in batch]
        assert len(client.status(acknowledged)) == len(acknowledged)
        matched_ids = [m.job_id for m in matched if m]
        rows = client.status(matched_ids)
        assert all(row.status == "Matched" and row.pilot_id == "p-crash" for row in rows)
        jobs = client.list_jobs()
        waiting = sum(1 for row in jobs if row.status == "Waiting")
        assert waiting == sum(queue.waiting for queue in client.task_queues())
        assert {row.status for row in jobs} <= {"Waiting", "Matched"}


def test_unreachable_service_is_reported(tmp_path: Any) -> None:
    from dirac_like.processes import free_port

    policy = RetryPolicy(timeout=0.3, retries=1, backoff=0.01)
    with (
        Client(f"tcp://127.0.0.1:{free_port()}", policy) as client,
        pytest.raises(ServiceUnavailable, match="no reply"),
    ):
        client.ping()


def test_decode_reply_round_trip_of_an_error() -> None:
    from dirac_like.protocol import encode_error

    reply = decode_reply(encode_error("abc", "job_not_found", "job 5 not found"))
    assert reply.error is not None and reply.error.code == "job_not_found"


# -- kill pushed to the connected pilot at once ------------------------------------------------


def test_kill_is_pushed_to_the_connected_pilot_without_waiting_for_a_heartbeat(
    raw: RawPeer, client: Client
) -> None:
    from dirac_like.protocol import decode_push

    (job_id,) = client.submit([HELLO], owner="alice")
    match = raw.request("request_job", {"pilot_id": "p-push", "resources": {"site": "S"}})
    attempt = match["result"]["job"]["attempt"]
    raw.request(
        "update_status",
        {"job_id": job_id, "attempt": attempt, "pilot_id": "p-push", "status": "Running"},
    )
    assert client.kill([job_id]) == KillReply(killed=[], kill_requested=[job_id])
    assert raw.socket.poll(5000), "no push reached the pilot"
    assert decode_push(raw.socket.recv()) == [KillJob(job_id)]
    done = raw.request(
        "update_status",
        {"job_id": job_id, "attempt": attempt, "pilot_id": "p-push", "status": "Killed"},
    )
    assert done["ok"] and done["result"] == {"commands": []}
    assert client.status([job_id])[0].status == "Killed"


def test_reschedule_of_a_running_job_pushes_a_kill_to_its_old_pilot(
    raw: RawPeer, client: Client
) -> None:
    from dirac_like.protocol import decode_push

    (job_id,) = client.submit([HELLO], owner="alice")
    match = raw.request("request_job", {"pilot_id": "p-old", "resources": {"site": "S"}})
    attempt = match["result"]["job"]["attempt"]
    raw.request(
        "update_status",
        {"job_id": job_id, "attempt": attempt, "pilot_id": "p-old", "status": "Running"},
    )
    client.reschedule([job_id])
    assert raw.socket.poll(5000), "no push reached the old pilot"
    assert decode_push(raw.socket.recv()) == [KillJob(job_id)]


def test_a_client_hands_pushes_to_its_callback(central: ServiceProcess, client: Client) -> None:
    pushed: list[list[PilotCommand]] = []
    (job_id,) = client.submit([HELLO], owner="alice")
    with Client(central.endpoint, FAST_RETRIES, on_push=pushed.append) as pilot:
        match = pilot.request_job("p-cb", CERN).job
        pilot.update_status(job_id, match.attempt, "p-cb", "Running")
        client.kill([job_id])
        # the push waits in the pilot's socket; the next call reads past it to its reply
        commands = pilot.heartbeat(job_id, match.attempt, "p-cb")
    assert pushed == [[KillJob(job_id)]]
    assert commands == [KillJob(job_id)]
