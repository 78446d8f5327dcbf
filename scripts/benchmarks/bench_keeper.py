#!/usr/bin/env python3
"""What starting one payload under its keeper costs the pilot's machine (issue 15's lever).

    python scripts/benchmarks/bench_keeper.py --jobs 200

Runs ``/bin/true`` ``--jobs`` times, one after the other, through the job wrapper
(agents/wrapper.py: keeper, watchdog, output files), and prints the wall time and the CPU
(this process, its children and the exec helper, if there is one) per job, after the same for
bare ``subprocess.run`` of ``/bin/true`` (the floor). Run it with another checkout's Python to
compare keepers (the one per job before issue 15, the exec helper after).
"""

from __future__ import annotations

import argparse
import subprocess
import time

import psutil
from scratch import add_keep_option, scratch_folder

from dirac_like.agents.watchdog import Limits
from dirac_like.agents.wrapper import PayloadSpec, run_payload


def cpu_seconds() -> float:
    """CPU of this process and every descendant, ended (waited for) or alive."""
    me = psutil.Process()
    times = me.cpu_times()
    total = times.user + times.system + times.children_user + times.children_system
    for child in me.children(recursive=True):
        try:
            child_times = child.cpu_times()
        except psutil.Error:
            continue
        total += child_times.user + child_times.system
    return total


def measure(label: str, jobs: int, run_one: object) -> None:
    assert callable(run_one)
    run_one()  # warm up (starts the exec helper, if any)
    cpu, wall = cpu_seconds(), time.perf_counter()
    for _ in range(jobs):
        run_one()
    wall, cpu = time.perf_counter() - wall, cpu_seconds() - cpu
    print(f"{label}: {wall / jobs * 1000:.1f} ms wall, {cpu / jobs * 1000:.1f} ms CPU per job")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=200)
    add_keep_option(parser)
    args = parser.parse_args()
    folder = scratch_folder("bench-keeper-")
    spec = PayloadSpec(job_id=1, executable="/bin/true", workdir=folder)
    measure("bare subprocess.run(/bin/true)", args.jobs, lambda: subprocess.run(["/bin/true"]))
    measure("/bin/true via the wrapper", args.jobs, lambda: run_payload(spec, Limits()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
