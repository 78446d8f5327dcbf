"""Time the web dashboard's pages over a big store. Run by hand:

    python scripts/benchmarks/bench_web.py [--jobs 1000000] [--repeat 5] [--store both]

Fills a fresh SQLite store (the central service's schema, written by its own store code) with
N jobs of 100 users in 5 groups at 20 sites in a realistic mix of statuses, one history row
each, then renders each page through the dashboard's WSGI application (Flask's test client: the
whole request — session check, store reads, plots, template — without the network) as the admin
(every job) and as one user (their own), after the dashboard's start-up work (counting every job
and sampling the shares, as ``service web`` does before it listens). "cold": the first render of
each page (a user's own counts are taken then); "warm": the median of ``--repeat`` more (every
job's counts come from the background refresh, a user's are reused for 2 s, plots drawn once per
distinct data). The background work (counting every job, sampling the shares) is timed alone.

``--store both`` fills an SQLite file and a PostgreSQL database (``--postgres-url``, else a
throw-away durable server started with scripts/postgres-local.sh) with the same jobs, and times
each page on one dashboard then the other, side by side in the same run (the ratio is the figure
to compare). ``--store postgresql``: PostgreSQL alone.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import msgpack
from scratch import add_keep_option, scratch_folder
from throwaway_postgres import new_database, postgres_server

from dirac_like.authz import Principal, Role
from dirac_like.config import Config, StoreConfig
from dirac_like.identity import Identity, Keypair, default_identity_path, load_identity
from dirac_like.model import ChangeSet, HistoryEntry, JobRecord, Requirements, TaskQueueRow
from dirac_like.registry import init_home, load_registry, save_registry
from dirac_like.services.web.app import create_app
from dirac_like.services.web.dashboard import Dashboard
from dirac_like.services.web.server import WebOptions, build_dashboard
from dirac_like.states import JobStatus
from dirac_like.store import Store
from dirac_like.store.postgres import PostgresStore
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


def fill(store: Store, count: int, now: float) -> None:
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


@dataclass
class Site:
    """One store's dashboard, with the clients of the admin and of one user logged in."""

    dashboard: Dashboard
    clients: dict[str, Any]


def prepare(name: str, home: Path, url: str, jobs: int, now: float) -> Site:
    admin = load_identity(init_home(home, now).admin_identity)
    user = add_user(home, "user0", now)
    config = replace(Config(), store=StoreConfig(url=url))
    store: Store = (
        PostgresStore(url, synchronous="normal")
        if url
        else SqliteStore(home / "jobs.sqlite", synchronous="normal")
    )
    started = time.perf_counter()
    try:
        fill(store, jobs, now)
    finally:
        store.close()
    print(f"{name}: filled {jobs:,} jobs in {time.perf_counter() - started:.1f} s")
    dashboard = build_dashboard(config, home, None, WebOptions())
    clients = {}
    for who, identity in (("admin", admin), ("user0", user)):
        client = create_app(dashboard).test_client()
        client.get(f"/login?token={make_login_token(identity, time.time())}")
        clients[who] = client
    return Site(dashboard, clients)


def side_by_side(figures: dict[str, tuple[float, ...]]) -> str:
    """'SQLite a / b ms  PostgreSQL c / d ms  ratio' for figures in seconds."""
    text = "".join(
        f"  {name} " + " / ".join(f"{value * 1000:6.0f}" for value in values) + " ms"
        for name, values in figures.items()
    )
    if len(figures) == 2:
        first, second = figures.values()
        text += f"  ratio {second[-1] / first[-1]:5.2f}"
    return text


def background(sites: dict[str, Site]) -> None:
    for what, work in (
        ("start-up (count every job, sample shares)", lambda d: d.warm_up()),
        ("count every job (background)", lambda d: d.reader.job_counts()),
        ("count one user's jobs", lambda d: d.reader.job_counts("user0")),
        ("sample the shares (background)", lambda d: d.sample()),
    ):
        figures = {}
        for name, site in sites.items():
            started = time.perf_counter()
            work(site.dashboard)
            figures[name] = (time.perf_counter() - started,)
        print(f"{what:42}{side_by_side(figures)}")


def pages(sites: dict[str, Site], jobs: int, repeat: int) -> None:
    paths = [
        "/",
        "/fragment/overview",
        "/jobs",
        "/jobs?status=Done&site=LCG.Site3.org",
        "/jobs?name=mc_99999",
        f"/jobs/{jobs // 2}",
        "/sites",
    ]
    print("page (cold / warm)")
    for who in ("admin", "user0"):
        for path in paths:
            if who == "user0" and path in ("/sites", f"/jobs/{jobs // 2}"):
                continue
            figures = {name: timed(site.clients[who], path, repeat) for name, site in sites.items()}
            print(f"{who:6} {path:36}{side_by_side(figures)}")


def load_average() -> str:
    return " ".join(f"{load:.1f}" for load in os.getloadavg())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--store", choices=("sqlite", "postgresql", "both"), default="sqlite")
    parser.add_argument("--postgres-url", default="", help="default: a throw-away server")
    add_keep_option(parser)
    args = parser.parse_args()
    print(f"load average {load_average()}")
    folder = scratch_folder("bench-web-")
    with ExitStack() as stack:
        now = time.time()
        sites = {}
        if args.store in ("sqlite", "both"):
            sites["SQLite"] = prepare("SQLite", folder / "sqlite", "", args.jobs, now)
        if args.store in ("postgresql", "both"):
            server = stack.enter_context(postgres_server(args.postgres_url))
            url = new_database(server, "bench_web")
            sites["PostgreSQL"] = prepare("PostgreSQL", folder / "pg", url, args.jobs, now)
        background(sites)
        pages(sites, args.jobs, args.repeat)
        for site in sites.values():
            site.dashboard.reader.close()
    print(f"load average {load_average()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
