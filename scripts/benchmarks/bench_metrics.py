"""Time a scrape of the central service's /metrics with many pilots connected. Run by hand:

    python scripts/benchmarks/bench_metrics.py [--pilots 10000] [--jobs 20000] [--scrapes 50]

A real central service (its own process, insecure, loopback) gets ``--jobs`` waiting jobs of 50
users in 5 groups, then ``--pilots`` distinct pilots at 100 sites each ask for a job
(``request_job``: each leaves a pilot record, heard from just now, so all of them count as
connected, and most are matched a job); then /metrics is fetched ``--scrapes`` times over HTTP,
as Prometheus does, and the median, p99 and largest times are printed with the scrape's size.
The service takes its state snapshot in its own loop (``[metrics] refresh``), so a scrape only
turns the latest snapshot into text.

On a shared machine wall-clock times follow the load; the CPU time of one scrape's text is
printed too, measured in this process on a snapshot of the same shape (every status at every
site for every group, the 200 largest task queues, every site's pilots in every state, every
operation's latency histogram).
"""

from __future__ import annotations

import argparse
import statistics
import time
import urllib.request

from scratch import add_keep_option, scratch_folder

from dirac_like.client import Client, RetryPolicy
from dirac_like.processes import ServiceProcess
from dirac_like.protocol import PilotResources

POLICY = RetryPolicy(timeout=30.0, retries=3, backoff=0.1, max_backoff=1.0)
CONFIG = "[metrics]\nrefresh = 1.0\n[shares.groups]\n" + "".join(
    f"group{n} = {10 * (n + 1)}\n" for n in range(5)
)


def fill(endpoint: str, jobs: int, pilots: int) -> None:
    started = time.perf_counter()
    with Client(endpoint, POLICY) as client:
        per_user = jobs // 50
        for user in range(50):
            client.submit(
                [{"Executable": "/bin/true", "JobName": f"j{user}"}] * per_user,
                owner=f"user{user}",
                group=f"group{user % 5}",
            )
        for number in range(pilots):
            client.request_job(f"pilot-{number}", PilotResources(site=f"Site{number % 100}.org"))
    print(f"{jobs:,} jobs and {pilots:,} pilots in {time.perf_counter() - started:.1f} s")


def scrape(url: str) -> tuple[float, int]:
    started = time.perf_counter()
    with urllib.request.urlopen(url, timeout=30) as reply:
        size = len(reply.read())
    return time.perf_counter() - started, size


def scrape_cpu(sites: int, repeat: int = 20) -> tuple[float, int]:
    """CPU seconds to render one scrape of a snapshot of this shape (best of ``repeat``)."""
    from prometheus_client import generate_latest

    from dirac_like.config import MetricsConfig
    from dirac_like.services.metrics import ServiceMetrics, StateSnapshot
    from dirac_like.states import JobStatus, PilotState

    metrics = ServiceMetrics(MetricsConfig())
    names = [f"Site{n}.org" for n in range(sites)]
    metrics.state.snapshot = StateSnapshot(
        time=time.time(),
        jobs={
            (s.value, site, f"group{g}"): 7 for s in JobStatus for site in names for g in range(5)
        },
        waiting=[(str(n), f"group{n % 5}", 100) for n in range(200)],
        pilots={(site, state.value): 100 for site in names for state in PilotState},
        connected=dict.fromkeys(names, 100),
        shares=[(f"group{g}", 0.2, 0.2, 1e6, 100) for g in range(5)],
        banned=dict.fromkeys(names, False),
    )
    for op in list(metrics.requests.sums):
        metrics.observe_request(op, 0.001, True)
    best, size = float("inf"), 0
    for _ in range(repeat):
        started = time.process_time()
        size = len(generate_latest(metrics.registry))
        best = min(best, time.process_time() - started)
    return best, size


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pilots", type=int, default=10_000)
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--scrapes", type=int, default=50)
    parser.add_argument("--cpu-only", action="store_true", help="only the in-process CPU time")
    add_keep_option(parser)
    args = parser.parse_args()
    cpu, size = scrape_cpu(100)
    print(f"one scrape's text, 100 sites: {cpu * 1000:.1f} ms CPU ({size:,} bytes)")
    if args.cpu_only:
        return
    folder = scratch_folder("bench-metrics-")
    config = folder / "central.toml"
    config.write_text(CONFIG)
    service = ServiceProcess.start_central(folder / "home", config, insecure=True)
    try:
        fill(service.endpoint, args.jobs, args.pilots)
        time.sleep(2.0)  # a benchmark, not a test: let the next snapshot see every pilot
        scrape(service.metrics_url)  # the first one
        times, size = [], 0
        for _ in range(args.scrapes):
            took, size = scrape(service.metrics_url)
            times.append(took)
        times.sort()
        p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
        print(
            f"/metrics with {args.pilots:,} pilots connected: median "
            f"{statistics.median(times) * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms, max "
            f"{times[-1] * 1000:.1f} ms ({size:,} bytes, {args.scrapes} scrapes)"
        )
    finally:
        service.stop()


if __name__ == "__main__":
    main()
