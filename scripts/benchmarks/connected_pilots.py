"""A crowd of connected pilots for the benchmarks: each its own CurveZMQ connection.

Imported by bench_connected.py and bench_kill.py. :class:`Crowd` starts ``processes`` load
generator processes (a process holds at most a few thousand sockets: two file descriptors each),
which together open ``count`` DEALER sockets to the central service, one per pilot, each
presenting the identity given (a pilot token of ``site``). Every pilot speaks the real protocol,
frame by frame: ``request_job`` until it gets a job (every ``request_interval`` seconds while
there is none, as a real idle pilot does at its longest pause), reports it Running, then sends a
``heartbeat`` for it every ``heartbeat_interval`` seconds (the real pilot's default: 30 s), the
first ones spread evenly over one interval. It never finishes its job: the crowd is connected,
alive and quiet, the background the other figures are measured against.
"""

from __future__ import annotations

import heapq
import multiprocessing
import random
import time
import uuid
from dataclasses import dataclass
from multiprocessing.synchronize import Event

import msgpack
import zmq

from dirac_like.identity import Identity, secure_client_socket
from dirac_like.protocol import Request, encode_request

PER_PROCESS = 4_000  # sockets of one load-generator process (2 fds each, under ulimit -n)


@dataclass(frozen=True)
class CrowdSpec:
    endpoint: str
    identity: Identity
    site: str
    heartbeat_interval: float = 30.0
    request_interval: float = 10.0


@dataclass
class CrowdReport:
    pilots: int = 0
    running: int = 0  # pilots with a job reported Running
    heartbeats: int = 0  # heartbeats answered
    requests: int = 0  # requests answered, of every kind
    errors: int = 0  # error replies


def _frame(op: str, args: dict[str, object]) -> bytes:
    return encode_request(Request(uuid.uuid4().hex, op, args))


class _Generator:
    """One process's pilots: sockets, a heap of timers, one poller."""

    def __init__(self, spec: CrowdSpec, first: int, count: int) -> None:
        self.spec = spec
        self.context = zmq.Context()
        self.context.set(zmq.MAX_SOCKETS, count + 64)
        self.sockets: list[zmq.Socket] = []
        self.poller = zmq.Poller()
        self.index: dict[zmq.Socket, int] = {}
        self.pilot_ids = [f"crowd-{first + n}" for n in range(count)]
        self.jobs: list[tuple[int, int] | None] = [None] * count
        self.timers: list[tuple[float, int]] = []
        self.asked = [""] * count  # the op of each pilot's request in flight
        self.report = CrowdReport(pilots=count)
        rng = random.Random(first)
        now = time.monotonic()
        for n in range(count):
            sock = self.context.socket(zmq.DEALER)
            sock.setsockopt(zmq.LINGER, 0)
            secure_client_socket(sock, spec.identity)
            sock.connect(spec.endpoint)
            self.poller.register(sock, zmq.POLLIN)
            self.index[sock] = n
            self.sockets.append(sock)
            # connections and first requests spread over a second, as pilots arrive
            heapq.heappush(self.timers, (now + rng.random(), n))
        self.rng = rng

    def send(self, n: int, op: str, args: dict[str, object]) -> None:
        self.asked[n] = op
        self.sockets[n].send(_frame(op, args))

    def on_timer(self, n: int) -> None:
        job = self.jobs[n]
        if job is None:
            resources = {"site": self.spec.site, "cores": 1, "memory_mb": 4000}
            self.send(n, "request_job", {"pilot_id": self.pilot_ids[n], "resources": resources})
        else:
            job_id, attempt = job
            args = {"job_id": job_id, "attempt": attempt, "pilot_id": self.pilot_ids[n]}
            self.send(n, "heartbeat", args)

    def on_reply(self, n: int, frame: bytes, now: float) -> None:
        reply = msgpack.unpackb(frame, raw=False)
        if "push" in reply:
            return
        self.report.requests += 1
        op = self.asked[n]
        if not reply.get("ok"):
            self.report.errors += 1
            heapq.heappush(self.timers, (now + self.spec.request_interval, n))
        elif op == "request_job":
            matched = reply["result"].get("job")
            if matched is None:
                heapq.heappush(self.timers, (now + self.spec.request_interval, n))
                return
            self.jobs[n] = (matched["job_id"], matched["attempt"])
            args = {"job_id": matched["job_id"], "attempt": matched["attempt"]}
            self.send(
                n, "update_status", {**args, "pilot_id": self.pilot_ids[n], "status": "Running"}
            )
        elif op == "update_status":
            self.report.running += 1
            first = self.spec.heartbeat_interval * self.rng.random()  # spread over one interval
            heapq.heappush(self.timers, (now + first, n))
        else:
            self.report.heartbeats += 1
            heapq.heappush(self.timers, (now + self.spec.heartbeat_interval, n))

    def run(self, ready: Event, stop: Event, reports: multiprocessing.Queue) -> None:
        reported_ready = False
        while not stop.is_set():
            now = time.monotonic()
            while self.timers and self.timers[0][0] <= now:
                _, n = heapq.heappop(self.timers)
                self.on_timer(n)
            wait = 200.0 if not self.timers else max(0.0, (self.timers[0][0] - now) * 1000)
            for sock, _ in self.poller.poll(min(wait, 200.0)):
                now = time.monotonic()
                while True:
                    try:
                        frame = sock.recv(zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    self.on_reply(self.index[sock], frame, now)
            if not reported_ready and self.report.running == self.report.pilots:
                reported_ready = True
                ready.set()
        reports.put(self.report)
        for sock in self.sockets:
            sock.close()
        self.context.term()


def _generate(
    spec: CrowdSpec,
    first: int,
    count: int,
    ready: Event,
    stop: Event,
    reports: multiprocessing.Queue,
) -> None:
    _Generator(spec, first, count).run(ready, stop, reports)


class Crowd:
    """``count`` connected pilots in background processes; :meth:`wait_running` until each
    has its job Running, :meth:`stop` for the totals."""

    def __init__(self, spec: CrowdSpec, count: int) -> None:
        self.stop_event = multiprocessing.Event()
        self.reports: multiprocessing.Queue = multiprocessing.Queue()
        self.readies: list[Event] = []
        self.processes: list[multiprocessing.Process] = []
        for first in range(0, count, PER_PROCESS):
            ready = multiprocessing.Event()
            size = min(PER_PROCESS, count - first)
            process = multiprocessing.Process(
                target=_generate,
                args=(spec, first, size, ready, self.stop_event, self.reports),
                daemon=True,
            )
            process.start()
            self.readies.append(ready)
            self.processes.append(process)

    def wait_running(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        return all(ready.wait(max(0.0, deadline - time.monotonic())) for ready in self.readies)

    def stop(self) -> CrowdReport:
        self.stop_event.set()
        total = CrowdReport()
        for _ in self.processes:
            part = self.reports.get(timeout=120)
            total.pilots += part.pilots
            total.running += part.running
            total.heartbeats += part.heartbeats
            total.requests += part.requests
            total.errors += part.errors
        for process in self.processes:
            process.join(60)
            if process.is_alive():
                process.terminate()
        return total
