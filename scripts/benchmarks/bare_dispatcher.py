"""The floor of bench_pilots.py: a bare ZeroMQ + SQLite job dispatcher and its pilots.

What any durable pilot-job service must do per job, and nothing else: a ROUTER socket, one
SQLite file (WAL, synchronous=full, the service's own settings), a queue of waiting job ids in
memory, and per job three requests — match, Running, Done — each a row update, group-committed
per batch of requests read from the socket and replied to only after the commit. No
authentication, no argument checks, no fair share, no history, no reply cache, no metrics.

The pilots are as bare: ``pilots`` of them share four DEALER sockets in one thread, as the
simulated fabric's do, each running its match → Running → Done cycle until no job is left.
With ``turns`` (the shape of ``pilot_turn``, issue 15) each pilot sends one request per job
instead: the last job's Done and the next match (recorded Running) in one.
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
            if request["op"] == "turn":
                result = turn(db, waiting, request)
            elif request["op"] == "match":
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


def turn(db: sqlite3.Connection, waiting: collections.deque[int], request: dict) -> dict:
    """The last job Done (if any) and the next one matched and Running, in one request."""
    if request["done"] is not None:
        db.execute("UPDATE jobs SET status = 'Done' WHERE id = ?", (request["done"],))
    job = waiting.popleft() if waiting else None
    if job is not None:
        db.execute(
            "UPDATE jobs SET status = 'Running', pilot = ? WHERE id = ?", (request["pilot"], job)
        )
    return {"id": request["id"], "job": job}


Step = tuple[str, int | None]  # a bare pilot's step in flight, and its job


def next_request(
    state: Step, reply: dict, pilot: int, turns: bool
) -> tuple[Step, dict | None, int]:
    """A bare pilot's next request after ``reply``: its new state, the request (None: no job is
    left) and the jobs it finished (0 or 1)."""
    step, job = state
    if turns:  # the job "ran": its Done goes with the next request
        finished = int(job is not None)
        if reply["job"] is None:
            return state, None, finished
        return (
            ("match", reply["job"]),
            {"op": "turn", "pilot": f"p{pilot}", "done": reply["job"]},
            finished,
        )
    if step == "match":
        if reply["job"] is None:
            return state, None, 0
        return (
            ("Running", reply["job"]),
            {"op": "status", "job": reply["job"], "status": "Running"},
            0,
        )
    if step == "Running":
        return ("Done", job), {"op": "status", "job": job, "status": "Done"}, 0
    return ("match", None), {"op": "match", "pilot": f"p{pilot}"}, 1


def run_pilots(endpoint: str, pilots: int, turns: bool = False) -> int:
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
    state: dict[int, Step] = {}  # pilot -> (step in flight, job)
    done, active, next_id = 0, pilots, 0

    def send(pilot: int, message: dict) -> None:
        nonlocal next_id
        next_id += 1
        message["id"] = next_id * pilots + pilot  # the reply names its pilot
        sockets[pilot % SOCKETS].send(msgpack.packb(message))

    for pilot in range(pilots):
        state[pilot] = ("match", None)
        if turns:
            send(pilot, {"op": "turn", "pilot": f"p{pilot}", "done": None})
        else:
            send(pilot, {"op": "match", "pilot": f"p{pilot}"})
    while active:
        for sock, _ in poller.poll(1000):
            while True:
                try:
                    reply = msgpack.unpackb(sock.recv(zmq.NOBLOCK))
                except zmq.Again:
                    break
                pilot = reply["id"] % pilots
                state[pilot], message, finished = next_request(state[pilot], reply, pilot, turns)
                done += finished
                if message is None:
                    active -= 1
                else:
                    send(pilot, message)
    for sock in sockets:
        sock.close()
    context.term()
    return done


def floor_rate(jobs: int, pilots: int, folder: Path, turns: bool = False) -> float:
    """Jobs/s of the bare dispatcher with ``pilots`` bare pilots, from first match to last Done
    (``turns``: one request per job, as ``pilot_turn``)."""
    from dirac_like.processes import free_port

    endpoint = f"tcp://127.0.0.1:{free_port()}"
    ready, stop = multiprocessing.Event(), multiprocessing.Event()
    server = multiprocessing.Process(
        target=serve,
        args=(endpoint, str(folder / f"bare{'-turns' if turns else ''}.sqlite"), jobs, ready, stop),
    )
    server.start()
    try:
        ready.wait(120)
        started = time.perf_counter()
        done = run_pilots(endpoint, pilots, turns)
        elapsed = time.perf_counter() - started
    finally:
        stop.set()
        server.join(30)
        if server.is_alive():
            server.terminate()
    assert done == jobs, (done, jobs)
    return done / elapsed
