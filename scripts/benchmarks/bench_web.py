"""Time the web dashboard's pages over a big store. Run by hand:

    python scripts/benchmarks/bench_web.py [--jobs 1000000] [--repeat 5]

Fills a fresh SQLite store (the central service's schema, written by its own store code) with
N jobs of 100 users in 5 groups at 20 sites in a realistic mix of statuses, one history row
each, then renders each page through the dashboard's WSGI application (Flask's test client: the
whole request — session check, store reads, plots, template — without the network) as the admin
(every job) and as one user (their own), after the dashboard's start-up work (counting every job
and sampling the shares, as ``service web`` does before it listens). "cold": the first render of
each page (a user's own counts are taken then); "warm": the median of ``--repeat`` more (every
job's counts come from the background refresh, a user's are reused for 2 s, plots drawn once per
distinct data). The background work (counting every job, sampling the shares) is timed alone.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

import msgpack
from scratch import add_keep_option, scratch_folder

from dirac_like.authz import Principal, Role
from dirac_like.config import Config
from dirac_like.identity import Identity, Keypair, default_identity_path, load_identity
from dirac_like.model import ChangeSet, HistoryEntry, JobRecord, Requirements, TaskQueueRow
from dirac_like.registry import init_home, load_registry, save_registry
from dirac_like.services.web.app import create_app
from dirac_like.services.web.server import WebOptions, build_dashboard
from dirac_like.states import JobStatus
from dirac_like.store.sqlite import SqliteStore
from dirac_like.web_login import make_login_token

CHUNK = 100_000
MIX = (
    (JobStatus.DONE, 60),
    (JobStatus.FAILED, 8),
    (JobStatus.KILLED, 2),
    (JobStatus.WAITING, 20),
    (JobStatus.RUNNING, 9),
    (JobStatus.MATCHED, 1),
)
STATUSES = [status for status, weight in MIX for _ in range(weight)]


def fill(store: SqliteStore, count: int, now: float) -> None:
    description = msgpack.packb({"Executable": "/bin/echo", "Arguments": "hello", "CPUTime": 3600})
    groups = [f"group{g}" for g in range(5)]
    store.commit(
        ChangeSet(
            new_task_queues=[
                TaskQueueRow(g + 1, f"user{g}", groups[g], Requirements(cores=1 + g % 2))
                for g in range(5)
            ]
        )
    )
    for start in range(1, count + 1, CHUNK):
        jobs = []
        for job_id in range(start, min(start + CHUNK, count + 1)):
            status = STATUSES[job_id % len(STATUSES)]
            placed = status not in (JobStatus.WAITING,)
            jobs.append(
                JobRecord(
                    job_id,
                    f"user{job_id % 100}",
                    groups[job_id % 5],
                    job_id % 5 + 1,
                    5,
                    status,
                    site=f"LCG.Site{job_id % 20}.org" if placed else "ANY",
                    job_name=f"mc_{job_id}",
                    submitted=now - 3600,
                    updated=now,
                )
            )
        store.commit(
            ChangeSet(
                new_jobs=[(job, description) for job in jobs],
                history=[
                    HistoryEntry(job.job_id, job.status.value, "", "", now, "bench") for job in jobs
                ],
            )
        )


def add_user(home: Path, name: str, now: float) -> Identity:
    registry = load_registry(home)
    keys = Keypair.generate()
    registry.add(Principal(name, Role.USER, ("group0",)), keys.public, now)
    save_registry(home, registry)
    service = load_identity(default_identity_path(home) or Path()).service_key
    return Identity(name, "user", keys.public, keys.secret, service, ("group0",))


def timed(client: Any, path: str, repeat: int) -> tuple[float, float]:
    def once() -> float:
        started = time.perf_counter()
        response = client.get(path)
        elapsed = time.perf_counter() - started
        assert response.status_code == 200, (path, response.status_code)
        return elapsed

    cold = once()
    return cold, statistics.median(once() for _ in range(repeat))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    add_keep_option(parser)
    args = parser.parse_args()
    folder = scratch_folder("bench-web-")
    home = folder / "home"
    now = time.time()
    admin = load_identity(init_home(home, now).admin_identity)
    user = add_user(home, "user0", now)
    store = SqliteStore(home / "jobs.sqlite", synchronous="normal")
    started = time.perf_counter()
    fill(store, args.jobs, now)
    store.close()
    print(f"filled {args.jobs:,} jobs in {time.perf_counter() - started:.1f} s")
    dashboard = build_dashboard(Config(), home, None, WebOptions())
    for what, work in (
        ("start-up (count every job, sample shares)", dashboard.warm_up),
        ("count every job (background)", lambda: dashboard.reader.job_counts()),
        ("count one user's jobs", lambda: dashboard.reader.job_counts("user0")),
        ("sample the shares (background)", dashboard.sample),
    ):
        started = time.perf_counter()
        work()
        print(f"{what:40} {(time.perf_counter() - started) * 1000:7.0f} ms")
    pages = [
        "/",
        "/fragment/overview",
        "/jobs",
        "/jobs?status=Done&site=LCG.Site3.org",
        "/jobs?name=mc_99999",
        f"/jobs/{args.jobs // 2}",
        "/sites",
    ]
    for who, identity in (("admin", admin), ("user0", user)):
        client = create_app(dashboard).test_client()
        client.get(f"/login?token={make_login_token(identity, time.time())}")
        for path in pages:
            if who == "user0" and path in ("/sites", f"/jobs/{args.jobs // 2}"):
                continue
            cold, warm = timed(client, path, args.repeat)
            print(f"{who:6} {path:40} cold {cold * 1000:7.0f} ms   warm {warm * 1000:7.0f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
