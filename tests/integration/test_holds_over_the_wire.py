"""Holds over the real wire: a multi-core pilot told to drain toward a bigger job, an old pilot
that never says its total cores reading its replies as before (issue 16)."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import msgpack
import zmq

from dirac_like.client import Client, RetryPolicy
from dirac_like.identity import resolve_identity, secure_client_socket
from dirac_like.processes import ServiceProcess
from dirac_like.protocol import (
    Op,
    PilotResources,
    Request,
    RequestJobReply,
    encode_request,
    parse_reply,
)

RETRIES = RetryPolicy(timeout=10.0, retries=2, backoff=0.05, max_backoff=0.2)
SITE = "LCG.CERN.cern"
CONFIG = """
[shares.groups]
multi = 70
single = 30
[shares.drain]
hold_seconds = 300.0
max_idle_fraction = 1.0
"""


def fill(client: Client) -> None:
    """single runs 8 one-core jobs (above its 30%); multi waits with 4-core jobs."""
    client.submit(['Executable = "/bin/true"; Parameters = 20;'], owner="bob", group="single")
    for n in range(8):
        assert client.request_job(f"busy-{n}", PilotResources(site=SITE)).job is not None
    client.submit(
        ['Executable = "/bin/true"; NumberOfProcessors = 4; Parameters = 5;'],
        owner="ann",
        group="multi",
    )


def old_pilot_request(endpoint: str, resources: dict[str, object]) -> RequestJobReply:
    """A request_job as a pilot older than draining sends it, its reply read by the strict
    checker (unknown keys refused) as that pilot would."""
    context = zmq.Context()
    socket = context.socket(zmq.DEALER)
    try:
        socket.setsockopt(zmq.LINGER, 0)
        identity = resolve_identity()
        assert identity is not None
        secure_client_socket(socket, identity)
        socket.connect(endpoint)
        args = {"pilot_id": "old-pilot", "resources": resources}
        socket.send(encode_request(Request(uuid.uuid4().hex, Op.REQUEST_JOB, args)))
        assert socket.poll(10_000), "no reply from the service"
        reply = msgpack.unpackb(socket.recv(), raw=False)
        assert reply["ok"], reply
        assert "hold" not in reply["result"]
        result: RequestJobReply = parse_reply(Op.REQUEST_JOB, reply["result"])
        return result
    finally:
        socket.close()
        context.term()


def test_multi_core_pilot_holds_and_gets_the_big_job_once_drained(
    start_central: Callable[..., ServiceProcess],
) -> None:
    service = start_central(CONFIG)
    with Client(service.endpoint, RETRIES) as client:
        fill(client)
        held = client.request_job("p1", PilotResources(site=SITE, cores=2, total_cores=4))
        assert held.job is None and held.hold is not None
        assert (held.hold.cores, held.hold.group) == (4, "multi")
        assert 0 < held.hold.seconds <= 300.0
        still = client.request_job("p1", PilotResources(site=SITE, cores=3, total_cores=4))
        assert still.job is None and still.hold is not None
        drained = client.request_job("p1", PilotResources(site=SITE, cores=4, total_cores=4))
        assert drained.job is not None and (drained.job.group, drained.job.cores) == ("multi", 4)


def test_an_old_pilot_is_never_held_and_reads_its_reply(
    start_central: Callable[..., ServiceProcess],
) -> None:
    service = start_central(CONFIG)
    with Client(service.endpoint, RETRIES) as client:
        fill(client)
    reply = old_pilot_request(service.endpoint, {"site": SITE, "cores": 2})
    assert reply.job is not None and reply.job.group == "single" and reply.hold is None


def test_a_pilot_too_small_for_the_big_job_is_never_held(
    start_central: Callable[..., ServiceProcess],
) -> None:
    service = start_central(CONFIG)
    with Client(service.endpoint, RETRIES) as client:
        fill(client)
        reply = client.request_job("p2", PilotResources(site=SITE, cores=1, total_cores=2))
        assert reply.job is not None and reply.job.group == "single" and reply.hold is None
