#!/usr/bin/env python3
"""`/bin/true` jobs end to end through real local pilots, against the bare spawn rate.

    python scripts/benchmarks/bench_local.py                     # 1,000 jobs, 2 pilots
    python scripts/benchmarks/bench_local.py --jobs 2000 --pilots 2 --cores 8
    python scripts/benchmarks/bench_local.py --executable /bin/echo   # with an output sandbox

First the bare rate, printed as the first line: ``--pilots`` threads each spawning and reaping
``/bin/true`` with ``subprocess.run`` (what it costs this machine to start a process, and nothing
else). Then the real thing: a fresh central service (durable SQLite), the jobs submitted in one
parametric request, and ``--pilots`` real ``dirac-like pilot`` processes of ``--cores`` cores
each; the clock runs from the first job seen Running to the last Done, and the ratio to the bare
rate of the same run is printed. Each job goes through everything a grid job does: match,
Running report, working folder, its own session under the exec helper and the watchdog, output
sandbox (std.out, std.err: packed and uploaded when not empty), final report with the exit
code. Afterwards every job is checked: Done, Running in its history, and with an output sandbox
when it printed something.

Then the CPU each part used per job (load-independent, unlike the rates on a shared machine):
the bare spawn (this process and its children), the pilots' own processes, their exec helpers
(the watchdog and the helper proper under it) with every payload they reaped, and the central
service.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import psutil  # type: ignore[import-untyped, unused-ignore]  # no stubs installed
from scratch import add_keep_option, scratch_folder

from dirac_like.client import Client, RetryPolicy
from dirac_like.processes import ServiceProcess

QUICK = RetryPolicy(timeout=30, retries=2)


@dataclass
class CpuUse:
    """CPU seconds used over the run by each part."""

    pilots: float = 0.0  # the pilot processes themselves (all their threads)
    helpers: float = 0.0  # exec helpers, with the keepers and payloads they reaped
    service: float = 0.0

    def per_job(self, jobs: int) -> str:
        parts = {"pilots": self.pilots, "helpers+keepers+payloads": self.helpers,
                 "service": self.service}  # fmt: skip
        return ", ".join(f"{name} {1000 * value / jobs:.2f}" for name, value in parts.items())


def cpu_seconds(process: psutil.Process, children: bool) -> float:
    try:
        times = process.cpu_times()
    except psutil.Error:
        return 0.0
    own = times.user + times.system
    return own + (times.children_user + times.children_system if children else 0.0)


def bare_rate(count: int, threads: int) -> float:
    """Spawns of /bin/true per second, ``threads`` at a time."""

    def spawn(n: int) -> None:
        for _ in range(n):
            subprocess.run(["/bin/true"], check=True)

    workers = [threading.Thread(target=spawn, args=(count // threads,)) for _ in range(threads)]
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return (count // threads * threads) / (time.perf_counter() - started)


def start_pilot(endpoint: str, workdir: Path, cores: int, number: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dirac_like",
            "pilot",
            "--server",
            endpoint,
            "--site",
            "BENCH.Local.org",
            "--ce",
            "ce",
            "--cores",
            str(cores),
            "--heartbeat",
            "30",
            "--idle-timeout",
            "0",
            "--request-interval",
            "0.05",
            "--workdir",
            str(workdir),
            "--pilot-id",
            f"bench-{number}",
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def bare_cpu_per_spawn(count: int) -> float:
    """CPU seconds of one ``subprocess.run`` of /bin/true (parent and child), one at a time."""
    before = os.times()
    for _ in range(count):
        subprocess.run(["/bin/true"], check=True)
    after = os.times()
    used = sum(getattr(after, n) - getattr(before, n) for n in ("user", "system",
               "children_user", "children_system"))  # fmt: skip
    return used / count


def measure_cpu(service_pid: int, pilots: list[subprocess.Popen[bytes]]) -> CpuUse:
    """What the service, the pilots and their helpers used so far (before they are stopped)."""
    use = CpuUse(service=cpu_seconds(psutil.Process(service_pid), children=False))
    for popen in pilots:
        pilot = psutil.Process(popen.pid)
        use.pilots += cpu_seconds(pilot, children=False)
        for helper in pilot.children():  # the exec helper's watchdog, and the helper under it
            use.helpers += cpu_seconds(helper, children=True)
            for proper in helper.children():
                use.helpers += cpu_seconds(proper, children=True)
    return use


def pilot_rate(
    jobs: int, pilots: int, cores: int, executable: str, cpu: CpuUse | None = None
) -> float:
    home = scratch_folder("bench-local-")
    service = ServiceProcess.start_central(home / "home")
    os.environ["DIRAC_LIKE_IDENTITY"] = str(service.identity_path)  # its admin: ours, pilots'
    started: list[subprocess.Popen[bytes]] = []
    try:
        with Client(service.endpoint, QUICK) as client:
            jdl = f'Executable = "{executable}"; Parameters = {jobs}; CPUTime = 60;'
            client.submit([jdl], owner="bench")
            started = [
                start_pilot(service.endpoint, home / f"pilot{n}", cores, n) for n in range(pilots)
            ]
            first = wait_count(client, ("Running", "Done"), 1)
            at_first = measure_cpu(service.popen.pid, started)
            last = wait_count(client, ("Done",), jobs)
            at_last = measure_cpu(service.popen.pid, started)
            failed = client.list_jobs(status="Failed", limit=5)
            if failed:
                raise SystemExit(f"jobs failed, e.g. {failed[0]}")
            check_jobs(client, printed=executable != "/bin/true")
            print_requests(service.metrics_url)
            if cpu is not None:  # from the first job Running to the last Done
                cpu.pilots = at_last.pilots - at_first.pilots
                cpu.helpers = at_last.helpers - at_first.helpers
                cpu.service = at_last.service - at_first.service
    finally:
        for popen in started:
            os.killpg(popen.pid, signal.SIGTERM)
        for popen in started:
            popen.wait(60)
        service.stop()
    return (jobs - 1) / (last - first)


def print_requests(metrics_url: str) -> None:
    """How many requests of the pilots' kinds the service served (its /metrics): with
    ``--executable /bin/echo``, no ``sandbox_upload`` once outputs go inlined (issue 15)."""
    if not metrics_url:
        return
    with urllib.request.urlopen(metrics_url, timeout=10) as reply:
        text = reply.read().decode()
    counts = dict(re.findall(r'^dirac_like_request_seconds_count\{op="(\w+)"\} (\S+)$', text, re.M))
    shown = ("request_jobs", "update_statuses", "sandbox_upload", "heartbeat")
    print("requests served: " + ", ".join(f"{op} {float(counts.get(op, 0)):,.0f}" for op in shown))


def wait_count(client: Client, statuses: tuple[str, ...], count: int) -> float:
    """Poll until ``count`` jobs are in ``statuses``; returns when that was seen. (Every 0.1 s:
    each poll lists the jobs, work for the service that the pilots compete with.)"""
    while True:
        seen = sum(len(client.list_jobs(status=status, limit=10**7)) for status in statuses)
        if seen >= count:
            return time.perf_counter()
        time.sleep(0.1)  # a benchmark's poll interval, not a test


def check_jobs(client: Client, printed: bool) -> None:
    """Every job went through Running to Done, with an output sandbox if it printed."""
    for row in client.list_jobs(status="Done", limit=10**7):
        states = [entry.status for entry in client.history(row.job_id)]
        if "Running" not in states:
            raise SystemExit(f"job {row.job_id} was never reported Running: {states}")
        if printed and not client.job_output(row.job_id).sha256:
            raise SystemExit(f"job {row.job_id} printed but has no output sandbox")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--pilots", type=int, default=2)
    parser.add_argument("--cores", type=int, default=1, help="cores (job slots) per pilot")
    parser.add_argument("--executable", default="/bin/true", help="what each job runs")
    add_keep_option(parser)
    args = parser.parse_args()
    bare = bare_rate(max(args.jobs, 1000), args.pilots)
    print(f"bare spawn of /bin/true, {args.pilots} at a time: {bare:,.0f}/s", flush=True)
    cpu = CpuUse()
    through = pilot_rate(args.jobs, args.pilots, args.cores, args.executable, cpu)
    print(
        f"{args.jobs} {args.executable} jobs via {args.pilots} local pilot(s) x {args.cores} "
        f"core(s): {through:,.1f} jobs/s = {through / bare:.1%} of the bare spawn rate"
    )
    spawn_ms = 1000 * bare_cpu_per_spawn(300)
    total_ms = 1000 * (cpu.pilots + cpu.helpers + cpu.service) / args.jobs  # (jobs - 1, roughly)
    print(f"CPU ms per job: bare spawn {spawn_ms:.2f}; {cpu.per_job(args.jobs)}; "
          f"in all {total_ms:.2f} = {total_ms / spawn_ms:.1f}x the bare spawn")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
