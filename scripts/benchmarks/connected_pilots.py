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

The crowd is cheap for the machine, so that what is measured beside it is the service: a
process polls only the sockets with a request in flight (a handful once the crowd is up: one
heartbeat every ``heartbeat_interval / count`` seconds), never all of its sockets; the others
are not looked at until their next timer (a push the service sends them waits in their queue
and is read, and ignored, with their next reply). Between timers with nothing in flight it
sleeps; it wakes at most once a ``ROUND`` (10 ms) for its timers, so heartbeats due within one
round leave together (at 10,000 pilots every 30 s: ~3 per round, still spread over the second).
:meth:`Crowd.cpu_seconds` gives the CPU its processes used, to print beside the service's.
"""

from __future__ import annotations

import heapq
import itertools
import multiprocessing
import random
import resource
import time
import uuid
from dataclasses import dataclass
from multiprocessing.synchronize import Event

import msgpack
import psutil  # type: ignore[import-untyped, unused-ignore]  # no stubs installed
import zmq

from dirac_like.identity import Identity, secure_client_socket
from dirac_like.protocol import Request, encode_request

PER_PROCESS = 5_000  # sockets of one load-generator process (2 fds each, under ulimit -n)


@dataclass(frozen=True)
class CrowdSpec:
    endpoint: str
    identity: Identity
    site: str
    heartbeat_interval: float = 30.0
    request_interval: float = 10.0
    # heartbeats carry the watchdog's sample of the payload, as a real pilot's do (the service
    # keeps a usage series of it); False: bare heartbeats (job, attempt, pilot)
    metrics: bool = False


@dataclass
class CrowdReport:
    pilots: int = 0
    running: int = 0  # pilots with a job reported Running
    heartbeats: int = 0  # heartbeats answered
    requests: int = 0  # requests answered, of every kind
    errors: int = 0  # error replies


ROUND = 0.01  # seconds: timers due within one round are sent together (a wake-up per round)


class _Generator:
    """One process's pilots: sockets, a heap of timers, a poll over those awaiting a reply."""

    def __init__(self, spec: CrowdSpec, first: int, count: int) -> None:
        self.spec = spec
        _raise_open_files(2 * count + 256)
        self.context = zmq.Context()
        self.context.set(zmq.MAX_SOCKETS, count + 64)
        self.sockets: list[zmq.Socket] = []
        self.in_flight: dict[zmq.Socket, None] = {}  # sockets awaiting a reply, in order
        self.index: dict[zmq.Socket, int] = {}
        self.pilot_ids = [f"crowd-{first + n}" for n in range(count)]
        self.jobs: list[tuple[int, int] | None] = [None] * count
        self.timers: list[tuple[float, int]] = []
        self.asked = [""] * count  # the op of each pilot's request in flight
        self.ids = itertools.count()
        self.id_prefix = uuid.uuid4().hex[:16]  # request ids unique across processes and runs
        self.report = CrowdReport(pilots=count)
        rng = random.Random(first)
        now = time.monotonic()
        for n in range(count):
            sock = self.context.socket(zmq.DEALER)
            sock.setsockopt(zmq.LINGER, 0)
            secure_client_socket(sock, spec.identity)
            sock.connect(spec.endpoint)
            self.index[sock] = n
            self.sockets.append(sock)
            # connections and first requests spread over a second, as pilots arrive
            heapq.heappush(self.timers, (now + rng.random(), n))
        self.rng = rng
        self.started = time.monotonic()

    def send(self, n: int, op: str, args: dict[str, object]) -> None:
        self.asked[n] = op
        sock = self.sockets[n]
        sock.send(encode_request(Request(f"{self.id_prefix}-{next(self.ids)}", op, args)))
        self.in_flight[sock] = None  # polled until its reply is read

    def on_timer(self, n: int) -> None:
        job = self.jobs[n]
        if job is None:
            resources = {"site": self.spec.site, "cores": 1, "memory_mb": 4000}
            self.send(n, "request_job", {"pilot_id": self.pilot_ids[n], "resources": resources})
        else:
            job_id, attempt = job
            args: dict[str, object] = {
                "job_id": job_id,
                "attempt": attempt,
                "pilot_id": self.pilot_ids[n],
            }
            if self.spec.metrics:
                args["metrics"] = self.sample()
            self.send(n, "heartbeat", args)

    def sample(self) -> dict[str, float]:
        """What a real pilot's watchdog says of a busy payload (agents/pilot.py ``metrics``)."""
        wall = round(time.monotonic() - self.started, 1)
        return {"cpu_seconds": wall, "rss_mb": 512.0, "wall_seconds": wall, "disk_mb": 20.0}

    def on_reply(self, n: int, frame: bytes, now: float) -> None:
        reply = msgpack.unpackb(frame, raw=False)
        if "push" in reply:
            return
        del self.in_flight[self.sockets[n]]  # answered: not polled until its next request
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

    def read_replies(self, events: list[tuple[zmq.Socket, int]]) -> None:
        now = time.monotonic()
        for sock, _ in events:
            while True:
                try:
                    frame = sock.recv(zmq.NOBLOCK)
                except zmq.Again:
                    break
                self.on_reply(self.index[sock], frame, now)

    def run(self, ready: Event, stop: Event, paused: Event, reports: multiprocessing.Queue) -> None:
        reported_ready = False
        while not stop.is_set():
            now = time.monotonic()
            skip = paused.is_set()
            while self.timers and self.timers[0][0] <= now:
                _, n = heapq.heappop(self.timers)
                if skip and self.jobs[n] is not None:  # paused: this heartbeat is skipped
                    heapq.heappush(self.timers, (now + self.spec.heartbeat_interval, n))
                else:
                    self.on_timer(n)
            wait = 0.2 if not self.timers else min(max(ROUND, self.timers[0][0] - now), 0.2)
            if self.in_flight:
                polled = [(sock, zmq.POLLIN) for sock in self.in_flight]
                self.read_replies(zmq.zmq_poll(polled, int(wait * 1000)))
            else:  # nothing in flight: nothing to look at until the next timer
                time.sleep(wait)
            if not reported_ready and self.report.running == self.report.pilots:
                reported_ready = True
                ready.set()
        reports.put(self.report)
        for sock in self.sockets:
            sock.close()
        self.context.term()


def _raise_open_files(needed: int) -> None:
    """Two file descriptors a socket: lift the soft limit toward the hard one if need be."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        limit = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))


def _generate(
    spec: CrowdSpec,
    first: int,
    count: int,
    ready: Event,
    stop: Event,
    paused: Event,
    reports: multiprocessing.Queue,
) -> None:
    _Generator(spec, first, count).run(ready, stop, paused, reports)


class Crowd:
    """``count`` connected pilots in background processes; :meth:`wait_running` until each
    has its job Running, :meth:`stop` for the totals. :meth:`pause` makes every pilot skip
    its heartbeats (connected, silent) until :meth:`resume`: each skipped one is due again an
    interval later, so the heartbeats stay spread when they resume."""

    def __init__(self, spec: CrowdSpec, count: int) -> None:
        self.stop_event = multiprocessing.Event()
        self.paused = multiprocessing.Event()
        self.reports: multiprocessing.Queue = multiprocessing.Queue()
        self.readies: list[Event] = []
        self.processes: list[multiprocessing.Process] = []
        for first in range(0, count, PER_PROCESS):
            ready = multiprocessing.Event()
            size = min(PER_PROCESS, count - first)
            process = multiprocessing.Process(
                target=_generate,
                args=(spec, first, size, ready, self.stop_event, self.paused, self.reports),
                daemon=True,
            )
            process.start()
            self.readies.append(ready)
            self.processes.append(process)

    def wait_running(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        return all(ready.wait(max(0.0, deadline - time.monotonic())) for ready in self.readies)

    def pause(self) -> None:
        self.paused.set()

    def resume(self) -> None:
        self.paused.clear()

    def cpu_seconds(self) -> float:
        """CPU (user + system) its processes have used so far."""
        total = 0.0
        for process in self.processes:
            times = psutil.Process(process.pid).cpu_times()
            total += times.user + times.system
        return total

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
