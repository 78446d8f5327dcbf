#!/usr/bin/env python3
"""Match throughput of the central service, over real sockets, durable.

    python scripts/benchmarks/bench_match.py                 # 10k and 1M waiting jobs
    python scripts/benchmarks/bench_match.py --sizes 10000   # quicker
    python scripts/benchmarks/bench_match.py --store both    # SQLite, then PostgreSQL, compared

For each size: a fresh central service (its own process, SQLite with synchronous=full) is filled
with that many waiting jobs in 500 task queues over 60 sites (parametric bulk submissions), then 64
concurrent pilot clients (DEALER sockets driven from one load-generator process, one request in
flight each) ask for jobs for a fixed time, once each is connected (a ``ping`` first, so that the
CurveZMQ handshakes and the service's ZAP checks are not in the figures; their round trips are
printed apart, and so is each client's first match, one batch that pays the service's warm-up;
``--cold`` counts both in instead). Reported: matches/s, p50/p90/p99/max latency, the CPU time the
service's process spent per match (user + system, all its threads, the connecting pings included:
less sensitive than the rates to other load on the machine), and, in the same run, the
request/reply rate of a bare ZeroMQ echo server driven the same way (the ceiling).

``--store postgresql`` (or ``both``) runs the same on the PostgreSQL store: each fresh service
gets a new database on the server of ``--postgres-url`` (a role that may create databases), or,
without it, on a throw-away server started for the run (scripts/postgres-local.sh, fsync on) and
stopped at its end. With ``both`` the PostgreSQL/SQLite ratios are printed.

Also measured: one 100,000-job parametric submission (jobs stored per second), and the memory of
the central service per waiting job: its resident memory after the restart with the jobs, less
that of a service restarted on an empty store, over the number of jobs.

    python scripts/benchmarks/bench_match.py --sizes 10000 --input-data

also measures, in the same run, data-driven matching: the same task queues, each naming an
``InputData`` file whose replicas are on SEs at the sites it used to name in ``Site`` (60 ``file``
SEs, one per site), instead of the ``Site`` list; and prints the ratio of the two match rates.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import shutil
import statistics
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import msgpack
import psutil  # type: ignore[import-untyped, unused-ignore]  # no stubs installed
import zmq
from scratch import add_keep_option, scratch_folder
from throwaway_postgres import new_database, postgres_server

from dirac_like.client import Client, RetryPolicy
from dirac_like.errors import JobNotFound
from dirac_like.identity import Identity, secure_client_socket
from dirac_like.processes import ServiceProcess
from dirac_like.protocol import FileItem, Op, RegisterArgs, Request, encode_request

SITES = [f"LCG.Site{n:02d}.org" for n in range(60)]
GROUPS = {"lhcb_mc": 50, "lhcb_user": 20, "lhcb_data": 15, "lhcb_calib": 10, "lhcb_test": 5}
TASK_QUEUES = 500
SLOW = RetryPolicy(timeout=600, retries=0)
RUN = uuid.uuid4().hex[:8]  # in the pilot ids: a kept store's pilots of an earlier run hold jobs


def se_name(site: str) -> str:
    return f"SE-{site.split('.')[1]}"


def storage_text() -> str:
    """One ``file`` SE per site (never written to: the catalog alone decides matching)."""
    return "".join(
        f'[storage.{se_name(site)}]\nsite = "{site}"\nbase_path = "/nonexistent/{site}"\n'
        for site in SITES
    )


def config_text(sync: str = "full", store_url: str = "", overlap_sync: bool = True) -> str:
    groups = "\n".join(f"{name} = {share}" for name, share in GROUPS.items())
    url = f'url = "{store_url}"' if store_url else ""
    if not overlap_sync:  # each fsync inside its COMMIT, in the loop (before: in a thread)
        url += "\noverlap_sync = false"
    return (
        storage_text()
        + f"""
[service]
max_message_bytes = 67108864
reply_memory = 600.0
[store]
synchronous = "{sync}"
{url}
[jobs]
match_lease = 3600.0
[security]
rate_per_second = 0.0  # one identity drives every pilot here
[shares.groups]
{groups}
"""
    )


def task_queue_jdl(
    index: int, count: int, rng: random.Random, client: Client | None = None
) -> tuple[str, str, str]:
    """One parametric description = one task queue: (jdl, owner, group). With ``client``, the
    sites come from an input file registered (through it) with a replica at each of them."""
    group = list(GROUPS)[index % len(GROUPS)]
    owner = f"user{index % 50:02d}"
    sites = rng.sample(SITES, rng.choice([1, 2, 3, 60]))
    site_list = ", ".join(f'"{s}"' for s in sites)
    where = f"Site = {{ {site_list} }};"
    if client is not None:
        lfn = f"/bench/data/tq{index}.dat"
        files = [FileItem(lfn, 1000, "0a0b0c0d", se_name(site)) for site in sites]
        client.call(Op.CATALOG_REGISTER, RegisterArgs(files))
        where = f'InputData = {{ "LFN:{lfn}" }};'
    jdl = (
        f'Executable = "/bin/true"; Arguments = "%s"; JobGroup = "tq{index}";\n'
        f"CPUTime = {3600 + index}; Priority = {index % 10};\n"
        f"{where}\nParameters = {count};\n"
    )
    return jdl, owner, group


def fill(endpoint: str, waiting: int, data: bool = False) -> float:
    """Submit ``waiting`` jobs in TASK_QUEUES task queues; returns jobs made per second (until
    the last one is made: big submissions are made a slice at a time, oldest first).
    ``data``: each task queue's sites come from the replicas of its InputData."""
    rng = random.Random(42)
    per_queue = [
        waiting // TASK_QUEUES + (1 if i < waiting % TASK_QUEUES else 0) for i in range(TASK_QUEUES)
    ]
    started = time.perf_counter()
    last = 0
    with Client(endpoint, SLOW) as client:
        for index, count in enumerate(per_queue):
            if count:
                jdl, owner, group = task_queue_jdl(index, count, rng, client if data else None)
                last = client.submit([jdl], owner=owner, group=group)[-1]
        wait_made(client, last)
    return waiting / (time.perf_counter() - started)


def wait_made(client: Client, job_id: int) -> None:
    """Until job ``job_id`` is made (a big submission is acknowledged before its last slices of
    jobs are made, services/expansion.py: until then its owner sees it Received, "Being made";
    others, not found)."""
    while True:
        try:
            [row] = client.status([job_id])
            if not row.minor_status.startswith("Being made"):
                return
        except JobNotFound:
            pass
        time.sleep(0.01)


def bulk_rate(endpoint: str, count: int = 100_000) -> float:
    """Jobs made per second by one parametric submission of ``count`` jobs, until the last one
    exists."""
    jdl = f'Executable = "/bin/true"; Arguments = "event-%s"; Parameters = {count};'
    with Client(endpoint, SLOW) as client:
        started = time.perf_counter()
        job_ids = client.submit([jdl], owner="bulk", group="lhcb_mc")
        wait_made(client, job_ids[-1])
        elapsed = time.perf_counter() - started
    assert len(job_ids) == count
    return count / elapsed


def request_frame(op: str, args: dict[str, object]) -> bytes:
    return encode_request(Request(uuid.uuid4().hex, op, args))


def connect(sockets: list[zmq.Socket], poller: zmq.Poller) -> list[float]:
    """One ``ping`` on each socket, all in flight together, until every reply is in: the
    connection made (the CurveZMQ handshake and the service's ZAP check on a secure socket)
    before the measured requests. Returns each socket's first round trip in ms."""
    sent = time.perf_counter()
    for sock in sockets:
        sock.send(request_frame("ping", {}))
    waiting, latencies = set(sockets), []
    while waiting:
        ready = poller.poll(60_000)
        if not ready:
            raise RuntimeError(f"{len(waiting)} clients not connected after 60 s")
        for sock, _ in ready:
            sock.recv()
            waiting.discard(sock)
            latencies.append((time.perf_counter() - sent) * 1000)
    return latencies


CONNECTS: list[float] = []  # the first round trips of the last drive(), in ms
FIRSTS: list[float] = []  # with connect_first: each client's first measured reply, in ms


def drive(
    endpoint: str,
    clients: int,
    seconds: float,
    make_frame,
    limit: int = 10**12,
    identities: list[Identity] | None = None,
    connect_first: bool = False,
) -> tuple[int, list[float], float]:
    """``clients`` DEALER sockets (CurveZMQ clients when ``identities`` are given: socket i
    presents identities[i % len]), with ``connect_first`` connected before the measured requests
    (one ``ping`` each: :func:`connect`, their round trips in CONNECTS), then one request in
    flight each, for ``seconds`` or until ``limit`` replies. Returns (replies, latencies in ms,
    elapsed seconds); with ``connect_first`` each client's first reply is in FIRSTS instead of
    the latencies (the first matches after the clients connected come in one batch that pays
    the service's warm-up: measured apart, as the connecting is)."""
    context = zmq.Context()
    sockets, sent_at = [], {}
    poller = zmq.Poller()
    for index in range(clients):
        sock = context.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        if identities:
            secure_client_socket(sock, identities[index % len(identities)])
        sock.connect(endpoint)
        poller.register(sock, zmq.POLLIN)
        sockets.append(sock)
    CONNECTS[:] = connect(sockets, poller) if connect_first else []
    position = {sock: index for index, sock in enumerate(sockets)}
    latencies: list[float] = []
    count, unanswered = 0, set(sockets) if connect_first else set()
    FIRSTS.clear()
    for index, sock in enumerate(sockets):
        sent_at[sock] = time.perf_counter()
        sock.send(make_frame(index))
    started = time.perf_counter()
    end = started + seconds
    while time.perf_counter() < end and count < limit:
        for sock, _ in poller.poll(1000):
            sock.recv()
            now = time.perf_counter()
            count += 1
            first = sock in unanswered
            unanswered.discard(sock)
            (FIRSTS if first else latencies).append((now - sent_at[sock]) * 1000)
            index = position[sock]
            sent_at[sock] = now
            sock.send(make_frame(index))
    elapsed = time.perf_counter() - started
    for sock in sockets:
        sock.close()
    context.term()
    return count, latencies, elapsed


def site_tokens(endpoint: str) -> list[Identity]:
    """A pilot token per site, in the order of SITES (pilot_frame's site for a socket)."""
    with Client(endpoint, SLOW) as admin:
        return [admin.pilot_token(site) for site in SITES]


def pilot_frame(index: int) -> bytes:
    site = SITES[index % len(SITES)]
    return request_frame(
        "request_job",
        {
            "pilot_id": f"bench-pilot-{RUN}-{index}",
            "resources": {"site": site, "cores": 1, "memory_mb": 4000, "cpu_time_left": 86400 * 2},
        },
    )


def echo_server(endpoint: str, ready: multiprocessing.synchronize.Event, stop_after: float) -> None:
    context = zmq.Context()
    sock = context.socket(zmq.ROUTER)
    sock.bind(endpoint)
    ready.set()
    deadline = time.monotonic() + stop_after
    while time.monotonic() < deadline:
        if sock.poll(200):
            while True:
                try:
                    identity, payload = sock.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                request = msgpack.unpackb(payload, raw=False)
                reply = msgpack.packb({"v": 1, "id": request["id"], "ok": True, "result": None})
                sock.send_multipart([identity, reply])
    sock.close()
    context.term()


def echo_rate(clients: int, seconds: float) -> float:
    from dirac_like.processes import free_port

    endpoint = f"tcp://127.0.0.1:{free_port()}"
    ready = multiprocessing.Event()
    server = multiprocessing.Process(target=echo_server, args=(endpoint, ready, seconds + 30))
    server.start()
    try:
        ready.wait(30)
        count, _, elapsed = drive(
            endpoint, clients, seconds, lambda i: request_frame("ping", {}), connect_first=True
        )
    finally:
        server.terminate()
        server.join(10)
    return count / elapsed


def batches(service: ServiceProcess) -> tuple[float, float]:
    """(batches committed, requests in them) so far, from the service's /metrics (0, 0: none)."""
    if not service.metrics_url:
        return 0.0, 0.0
    with urllib.request.urlopen(service.metrics_url, timeout=30) as response:
        text = response.read().decode()
    found = dict.fromkeys(("dirac_like_batch_requests_count", "dirac_like_batch_requests_sum"), 0.0)
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in found:
            found[name] = float(value)
    return found["dirac_like_batch_requests_count"], found["dirac_like_batch_requests_sum"]


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def fresh_service(home: Path | None = None) -> ServiceProcess:
    """A central service on a free port; a fresh home (and a fresh PostgreSQL database if the
    run is on PostgreSQL) unless one is given (a restart)."""
    if home is None:
        home = scratch_folder("bench-match-")
        store_url = new_database(POSTGRES_URL) if POSTGRES_URL else ""
        (home / "bench.toml").write_text(
            config_text(ARGS.synchronous, store_url, not ARGS.no_overlap_sync)
        )
    service = ServiceProcess.start_central(home / "home", home / "bench.toml", timeout=1800)
    os.environ["DIRAC_LIKE_IDENTITY"] = str(service.identity_path)  # its admin, for the clients
    return service


def filled_home(waiting: int, data: bool) -> tuple[Path, float]:
    """The folder of a home filled with ``waiting`` jobs (its service stopped once they are
    all made), and the fill rate. With ``--pools DIR`` the filled home is moved to
    DIR/waiting-N and used again by later runs (fill rate 0: not filled in this run)."""
    kept = Path(ARGS.pools) / f"waiting-{waiting}{'-data' if data else ''}" if ARGS.pools else None
    if kept is not None and (kept / "filled").exists():
        return kept, 0.0
    service = fresh_service()
    try:
        fill_rate = fill(service.endpoint, waiting, data)
    finally:
        service.stop(grace=600)
    folder = service.home.parent
    if kept is not None:
        kept.parent.mkdir(parents=True, exist_ok=True)
        folder = Path(shutil.move(folder, kept))
        (kept / "filled").write_text(f"{fill_rate:.0f}\n")
    return folder, fill_rate


def measure(waiting: int, clients: int, seconds: float, data: bool = False) -> dict[str, float]:
    folder, fill_rate = filled_home(waiting, data)
    # Restarted after the fill, so the matching is measured in the steady state, not while the
    # store still digests the fill; this also times rebuilding the state from the store.
    started = time.perf_counter()
    service = fresh_service(folder)
    restart = time.perf_counter() - started
    try:
        process = psutil.Process(service.pid)
        restart_cpu = sum(process.cpu_times()[:2])  # less sensitive to a loaded machine
        resident = process.memory_info().rss
        with Client(service.endpoint, SLOW) as client:
            waiting = sum(q.waiting for q in client.task_queues())  # a kept store: fewer left
        # The same number of matches at every size (at most half the pool, so the rate is
        # measured at about this many waiting jobs).
        tokens = site_tokens(service.endpoint)
        cpu = sum(process.cpu_times()[:2])
        batches_before = batches(service)
        count, latencies, elapsed = drive(
            service.endpoint,
            clients,
            seconds,
            pilot_frame,
            limit=min(ARGS.matches, waiting // 2),
            identities=tokens,
            connect_first=not ARGS.cold,
        )
        cpu = sum(process.cpu_times()[:2]) - cpu
        batches_after = batches(service)
        committed = batches_after[0] - batches_before[0]
        mean_batch = (batches_after[1] - batches_before[1]) / committed if committed else 0.0
        with Client(service.endpoint, SLOW) as client:
            left = sum(q.waiting for q in client.task_queues())
        # Every reply in flight when the generator stopped may still have matched a job.
        assert waiting - count - clients <= left <= waiting - count, (left, waiting, count)
        bulk = bulk_rate(service.endpoint) if ARGS.bulk_into_pool else 0.0
    finally:
        service.stop(grace=600)
    return {
        "bulk": bulk,
        "waiting": waiting,
        "fill": fill_rate,
        "restart": restart,
        "restart_cpu": restart_cpu,
        "rss": resident,
        "rate": count / elapsed,
        "matches": count,
        "p50": statistics.median(latencies),
        "p90": percentile(latencies, 0.90),
        "p99": percentile(latencies, 0.99),
        "max": max(latencies),
        "connect_p50": statistics.median(CONNECTS) if CONNECTS else 0.0,
        "connect_max": max(CONNECTS, default=0.0),
        "first_p50": statistics.median(FIRSTS) if FIRSTS else 0.0,
        "first_max": max(FIRSTS, default=0.0),
        "cpu_per_match": cpu / max(count, 1),
        "load": os.getloadavg()[0],
        "batch": mean_batch,
    }


def measure_bulk() -> float:
    service = fresh_service()
    try:
        return bulk_rate(service.endpoint)
    finally:
        service.stop()


def empty_rss() -> int:
    """Resident bytes of a central service restarted on an empty store."""
    service = fresh_service()
    try:
        service.stop()
        service = fresh_service(service.home.parent)
        return int(psutil.Process(service.pid).memory_info().rss)
    finally:
        service.stop()


def run_store(store: str, ceiling: float) -> dict[str, float]:
    """Every size and the bulk submission on one store; returns the figures to compare."""
    print(f"== store: {store}")
    baseline = empty_rss()
    print(f"central service restarted on an empty store: {baseline / 2**20:,.0f} MiB resident")
    results = [measure(size, ARGS.clients, ARGS.seconds) for size in ARGS.sizes]
    for row in results:
        per_job = (row["rss"] - baseline) / row["waiting"]
        filled = f"filled at {row['fill']:,.0f} jobs/s" if row["fill"] else "kept store"
        print(
            f"{row['waiting']:>9,} waiting ({filled}, "
            f"restart with them {row['restart']:.1f} s (CPU {row['restart_cpu']:.1f} s), "
            f"{row['rss'] / 2**20:,.0f} MiB resident: "
            f"{per_job:,.0f} bytes per waiting job): "
            f"{row['rate']:,.0f} matches/s over {row['matches']:,.0f} matches, "
            f"p50 {row['p50']:.2f} ms, p90 {row['p90']:.2f} ms, p99 {row['p99']:.2f} ms, "
            f"max {row['max']:.2f} ms, "
            + (
                f"(connecting first: p50 {row['connect_p50']:.0f} ms, "
                f"max {row['connect_max']:.0f} ms; each client's first match: "
                f"p50 {row['first_p50']:.0f} ms, max {row['first_max']:.0f} ms), "
                if row["connect_max"]
                else ""
            )
            + f"service CPU {row['cpu_per_match'] * 1e6:.0f} us per match, "
            f"{row['batch']:.1f} requests per batch"
            + (f"; then 100,000 more jobs made at {row['bulk']:,.0f} jobs/s" if row["bulk"] else "")
            + f" (load average {row['load']:.2f})"
        )
    if len(results) > 1:
        ratio = results[-1]["rate"] / results[0]["rate"]
        print(f"rate at {results[-1]['waiting']:,} / at {results[0]['waiting']:,}: {ratio:.2f}")
    if ARGS.input_data:
        for row in results:
            data = measure(int(row["waiting"]), ARGS.clients, ARGS.seconds, data=True)
            print(
                f"{data['waiting']:>9,} waiting with InputData (filled at {data['fill']:,.0f} "
                f"jobs/s): {data['rate']:,.0f} matches/s, p50 {data['p50']:.2f} ms, p99 "
                f"{data['p99']:.2f} ms; data-driven / Site-driven: {data['rate'] / row['rate']:.2f}"
            )
    bulk = 0.0
    if not ARGS.no_bulk:
        bulk = measure_bulk()
        print(f"one parametric submission of 100,000 jobs: {bulk:,.0f} jobs/s made")
    return {"rate": results[-1]["rate"], "bulk": bulk, "waiting": results[-1]["waiting"]}


def main() -> int:
    global POSTGRES_URL
    print(
        f"python {sys.version.split()[0]}, pyzmq {zmq.__version__}, libzmq {zmq.zmq_version()}, "
        f"synchronous={ARGS.synchronous}"
        + (", fsync inside each commit (no overlap)" if ARGS.no_overlap_sync else "")
    )
    ceiling = echo_rate(ARGS.clients, ARGS.seconds)
    print(f"bare ZeroMQ echo, {ARGS.clients} clients: {ceiling:,.0f} req/s (the ceiling)")
    figures = {}
    if ARGS.store in ("sqlite", "both"):
        figures["sqlite"] = run_store("sqlite", ceiling)
    if ARGS.store in ("postgresql", "both"):
        with postgres_server(ARGS.postgres_url) as url:
            POSTGRES_URL = url
            try:
                figures["postgresql"] = run_store("postgresql", ceiling)
            finally:
                POSTGRES_URL = ""
    if len(figures) == 2:
        sqlite, postgres = figures["sqlite"], figures["postgresql"]
        bulk_ratio = postgres["bulk"] / sqlite["bulk"] if sqlite["bulk"] else float("nan")
        print(
            f"PostgreSQL / SQLite: match rate at {postgres['waiting']:,.0f} waiting "
            f"{postgres['rate'] / sqlite['rate']:.2f}, bulk submission {bulk_ratio:.2f}"
        )
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 1_000_000])
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--matches", type=int, default=5_000, help="matches measured per size")
    parser.add_argument("--synchronous", choices=["full", "normal"], default="full")
    parser.add_argument(
        "--no-overlap-sync",
        action="store_true",
        help="[store] overlap_sync = false: each fsync inside its commit, in the service's loop",
    )
    parser.add_argument("--store", choices=["sqlite", "postgresql", "both"], default="sqlite")
    parser.add_argument(
        "--postgres-url", default="", help="a server to use (default: a throw-away one)"
    )
    parser.add_argument(
        "--input-data", action="store_true", help="also match jobs sent where their InputData is"
    )
    parser.add_argument("--no-bulk", action="store_true", help="skip the bulk submission figure")
    parser.add_argument(
        "--cold",
        action="store_true",
        help="measure from the connection (no ping first): each client's first request then "
        "waits for the CurveZMQ handshake and the ZAP check (before 2026-12-03's fifth session)",
    )
    parser.add_argument(
        "--pools",
        default="",
        help="a folder where each size's filled SQLite home is kept and used again by later runs",
    )
    parser.add_argument(
        "--bulk-into-pool",
        action="store_true",
        help="also time 100,000 jobs made by a service holding each size (after its matching)",
    )
    add_keep_option(parser)
    ARGS = parser.parse_args()
    POSTGRES_URL = ""
    raise SystemExit(main())
