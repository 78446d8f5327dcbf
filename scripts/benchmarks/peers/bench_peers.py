#!/usr/bin/env python3
"""No-op tasks per second of other task systems on this machine, for bench_pilots.py's table.

    python3 -m venv /tmp/peers
    /tmp/peers/bin/pip install -r scripts/benchmarks/peers/requirements.txt
    /tmp/peers/bin/python scripts/benchmarks/peers/bench_peers.py --tasks 20000

Each peer runs locally on this machine's cores, started and warmed up (its workers up, one batch
of tasks run) before the clock starts; then ``--tasks`` tasks that do nothing are submitted at
once and waited for. Printed: one line ``peer <name>: <tasks/s>`` each, or why it was skipped
(not installed) or failed. Nothing here is durable, unlike dirac-like's jobs: these are the
peers' own fastest paths.

Celery runs without a broker server: kombu's in-memory transport (``memory://``), with a real
Celery worker (its consumer, task strategy and a thread pool of one thread per core) started
inside this process by ``celery.contrib.testing.worker.start_worker``, since that transport does
not cross processes; a task counts when the worker signals its success (``task_success``): the
in-memory result backend (``cache+memory://``) keeps only the last 5,000 results, so waiting on
results hung past that. Kombu's
``filesystem://`` transport (which would) was tried and dropped: its producer creates a message
file before writing it and its consumer does not take the lock, so the worker read empty files
and died (``JSONDecodeError``) within the first thousand tasks; it also lists and sorts the whole
folder for every message taken. In production Celery needs RabbitMQ or Redis.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable


def noop(value: int = 0) -> int:
    return value


def ray_rate(tasks: int) -> float:
    import ray

    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    try:
        remote = ray.remote(noop)
        ray.get([remote.remote() for _ in range(1000)])  # warm-up: workers started
        started = time.perf_counter()
        ray.get([remote.remote() for _ in range(tasks)])
        return tasks / (time.perf_counter() - started)
    finally:
        ray.shutdown()


def dask_rate(tasks: int) -> float:
    from dask.distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=os.cpu_count(), threads_per_worker=1, dashboard_address=None)
    with cluster, Client(cluster) as client:
        client.gather(client.map(noop, range(1000), pure=False))
        started = time.perf_counter()
        client.gather(client.map(noop, range(tasks), pure=False))
        return tasks / (time.perf_counter() - started)


def parsl_rate(tasks: int) -> float:
    # Parsl starts its interchange and workers as scripts of its environment: on PATH.
    os.environ["PATH"] = f"{os.path.dirname(sys.executable)}{os.pathsep}{os.environ['PATH']}"
    import parsl
    from parsl.config import Config
    from parsl.executors import HighThroughputExecutor
    from parsl.providers import LocalProvider

    config = Config(
        run_dir=tempfile.mkdtemp(prefix="bench-peers-parsl-"),  # its logs and keys, not here
        executors=[
            HighThroughputExecutor(
                label="local",
                max_workers_per_node=os.cpu_count(),
                provider=LocalProvider(init_blocks=1, max_blocks=1),
            )
        ],
    )
    parsl.load(config)
    try:
        app = parsl.python_app(noop)
        [f.result() for f in [app() for _ in range(1000)]]
        started = time.perf_counter()
        [f.result() for f in [app() for _ in range(tasks)]]
        return tasks / (time.perf_counter() - started)
    finally:
        parsl.dfk().cleanup()
        parsl.clear()


def celery_rate(tasks: int) -> float:
    import threading

    from celery import Celery
    from celery.contrib.testing.worker import start_worker
    from celery.signals import task_success

    app = Celery("bench_peers", broker="memory://")
    app.conf.update(
        task_ignore_result=True,  # the in-memory result backend keeps only 5,000 results
        worker_prefetch_multiplier=64,
        worker_hijack_root_logger=False,
        broker_transport_options={"polling_interval": 0.01},  # an empty queue: look again soon
    )
    task = app.task(name="noop")(noop)
    done, lock, finished = [0], threading.Lock(), threading.Event()
    target = [0]

    def on_success(**_: object) -> None:  # in the worker's thread, after each task returned
        with lock:
            done[0] += 1
            if done[0] >= target[0]:
                finished.set()

    task_success.connect(on_success, weak=False)

    def run(count: int) -> float:
        with lock:
            done[0], target[0] = 0, count
            finished.clear()
        started = time.perf_counter()
        for _ in range(count):
            task.delay()
        if not finished.wait(3600):
            raise TimeoutError(f"only {done[0]} of {count} Celery tasks done")
        return count / (time.perf_counter() - started)

    workers = os.cpu_count() or 1
    with start_worker(app, pool="threads", concurrency=workers, perform_ping_check=False):
        run(1000)  # warm-up
        return run(tasks)


PEERS: dict[str, Callable[[int], float]] = {
    "ray": ray_rate,
    "dask": dask_rate,
    "parsl": parsl_rate,
    "celery": celery_rate,
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--only", nargs="*", default=list(PEERS))
    args = parser.parse_args()
    for name in args.only:
        try:
            rate = PEERS[name](args.tasks)
        except ImportError as exc:
            print(f"peer {name}: skipped (not installed: {exc.name})", flush=True)
            continue
        except Exception as exc:  # a peer that fails to start here is reported, not fatal
            print(f"peer {name}: failed ({type(exc).__name__}: {exc})", flush=True)
            continue
        print(f"peer {name}: {rate:.0f} tasks/s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
