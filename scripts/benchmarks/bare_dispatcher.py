"""The floor of bench_pilots.py: a bare ZeroMQ + SQLite job dispatcher and its pilots.

What any durable pilot-job service must do per job, and nothing else: a ROUTER socket, one
SQLite file (WAL, synchronous=full, the service's own settings), a queue of waiting job ids in
memory, and per job three requests — match, Running, Done — each a row update, group-committed
per batch of requests read from the socket and replied to only after the commit. No
authentication, no argument checks, no fair share, no history, no reply cache, no metrics.

The pilots are as bare: ``pilots`` of them share four DEALER sockets in one thread, as the
simulated fabric's do, each running its match → Running → Done cycle until no job is left.
"""

from __future__ import annotations

import collections
import multiprocessing
import sqlite3
import time
from multiprocessing.synchronize import Event
from pathlib import Path

import msgpack
import zmq

SOCKETS = 4


def serve(endpoint: str, path: str, jobs: int, ready: Event, stop: Event) -> None:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = FULL")
    db.execute("CREATE TABLE jobs (id INTEGER PRIMARY KEY, status TEXT, pilot TEXT)")
    db.execute("BEGIN")
    db.executemany("INSERT INTO jobs VALUES (?, 'Waiting', '')", ((n,) for n in range(jobs)))
    db.execute("COMMIT")
    waiting = collections.deque(range(jobs))
    context = zmq.Context()
    sock = context.socket(zmq.ROUTER)
    sock.bind(endpoint)
    ready.set()
    while not stop.is_set():
        if not sock.poll(200):
            continue
        replies = []
        db.execute("BEGIN")
        while len(replies) < 1000:
            try:
                route, frame = sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                break
            request = msgpack.unpackb(frame)
            if request["op"] == "match":
                job = waiting.popleft() if waiting else None
                if job is not None:
                    db.execute(
                        "UPDATE jobs SET status = 'Matched', pilot = ? WHERE id = ?",
                        (request["pilot"], job),
                    )
                result = {"id": request["id"], "job": job}
            else:
                db.execute(
                    "UPDATE jobs SET status = ? WHERE id = ?", (request["status"], request["job"])
                )
                result = {"id": request["id"], "ok": True}
            replies.append((route, msgpack.packb(result)))
        db.execute("COMMIT")
        for route, reply in replies:
            sock.send_multipart([route, reply])
    sock.close()
    context.term()
    db.close()


def run_pilots(endpoint: str, pilots: int) -> int:
    """Every pilot cycles match → Running → Done until no job is left; returns the jobs Done."""
    context = zmq.Context()
    sockets = []
    poller = zmq.Poller()
    for _ in range(SOCKETS):
        sock = context.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(endpoint)
        poller.register(sock, zmq.POLLIN)
        sockets.append(sock)
    state: dict[int, tuple[str, int | None]] = {}  # pilot -> (step in flight, job)
    done, active, next_id = 0, pilots, 0

    def send(pilot: int, message: dict) -> None:
        nonlocal next_id
        next_id += 1
        message["id"] = next_id * pilots + pilot  # the reply names its pilot
        sockets[pilot % SOCKETS].send(msgpack.packb(message))

    for pilot in range(pilots):
        state[pilot] = ("match", None)
        send(pilot, {"op": "match", "pilot": f"p{pilot}"})
    while active:
        for sock, _ in poller.poll(1000):
            while True:
                try:
                    reply = msgpack.unpackb(sock.recv(zmq.NOBLOCK))
                except zmq.Again:
                    break
                pilot = reply["id"] % pilots
                step, job = state[pilot]
                if step == "match":
                    if reply["job"] is None:
                        active -= 1
                        continue
                    state[pilot] = ("Running", reply["job"])
                    send(pilot, {"op": "status", "job": reply["job"], "status": "Running"})
                elif step == "Running":
                    state[pilot] = ("Done", job)
                    send(pilot, {"op": "status", "job": job, "status": "Done"})
                else:
                    done += 1
                    state[pilot] = ("match", None)
                    send(pilot, {"op": "match", "pilot": f"p{pilot}"})
    for sock in sockets:
        sock.close()
    context.term()
    return done


def floor_rate(jobs: int, pilots: int, folder: Path) -> float:
    """Jobs/s of the bare dispatcher with ``pilots`` bare pilots, from first match to last Done."""
    from dirac_like.processes import free_port

    endpoint = f"tcp://127.0.0.1:{free_port()}"
    ready, stop = multiprocessing.Event(), multiprocessing.Event()
    server = multiprocessing.Process(
        target=serve, args=(endpoint, str(folder / "bare.sqlite"), jobs, ready, stop)
    )
    server.start()
    try:
        ready.wait(120)
        started = time.perf_counter()
        done = run_pilots(endpoint, pilots)
        elapsed = time.perf_counter() - started
    finally:
        stop.set()
        server.join(30)
        if server.is_alive():
            server.terminate()
    assert done == jobs, (done, jobs)
    return done / elapsed
