#!/usr/bin/env python3
"""What starting one payload under its keeper costs the pilot's machine (issue 15's lever).

    python scripts/benchmarks/bench_keeper.py --jobs 200
    python scripts/benchmarks/bench_keeper.py --jobs 300 --threads 8   # 8 payloads at a time

Runs ``/bin/true`` ``--jobs`` times, one after the other, through the job wrapper
(agents/wrapper.py: keeper, watchdog, output files), and prints the wall time and the CPU
(this process, its children and the exec helper, if there is one) per job, after the same for
bare ``subprocess.run`` of ``/bin/true`` (the floor). Run it with another checkout's Python to
compare keepers (the one per job before issue 15, the exec helper after).
"""

from __future__ import annotations

import argparse
import subprocess
import threading
import time

import psutil
from scratch import add_keep_option, scratch_folder

from dirac_like.agents.watchdog import Limits
from dirac_like.agents.wrapper import PayloadSpec, run_payload


def cpu_seconds() -> float:
    """CPU of this process and every descendant, ended (waited for) or alive: a live one's
    own and that of the children it waited for (the exec helper's keepers and payloads; before
    issue 15's second round they were left out, which undercounted the helper's jobs)."""
    me = psutil.Process()
    times = me.cpu_times()
    total = times.user + times.system + times.children_user + times.children_system
    for child in me.children(recursive=True):
        try:
            child_times = child.cpu_times()
        except psutil.Error:
            continue
        total += child_times.user + child_times.system
        total += child_times.children_user + child_times.children_system
    return total


def measure(label: str, jobs: int, run_one: object, threads: int = 1) -> None:
    """``jobs`` calls of ``run_one(n)``, ``threads`` at a time; wall and CPU per job."""
    assert callable(run_one)
    run_one(-1)  # warm up (starts the exec helper, if any)
    cpu, wall = cpu_seconds(), time.perf_counter()
    workers = [
        threading.Thread(target=lambda k: [run_one(n) for n in range(k, jobs, threads)], args=(k,))
        for k in range(threads)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    wall, cpu = time.perf_counter() - wall, cpu_seconds() - cpu
    print(f"{label}: {wall / jobs * 1000:.1f} ms wall, {cpu / jobs * 1000:.1f} ms CPU per job")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1, help="payloads at a time")
    add_keep_option(parser)
    args = parser.parse_args()
    folder = scratch_folder("bench-keeper-")

    def through_wrapper(number: int) -> None:
        workdir = folder / f"job_{number}"  # its own folder: its own std.out and std.err
        workdir.mkdir(exist_ok=True)
        run_payload(PayloadSpec(job_id=1, executable="/bin/true", workdir=workdir), Limits())

    def bare(number: int) -> None:
        subprocess.run(["/bin/true"], check=True)

    measure("bare subprocess.run(/bin/true)", args.jobs, bare, args.threads)
    measure("/bin/true via the wrapper", args.jobs, through_wrapper, args.threads)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
