#!/usr/bin/env python3
"""Where a kill's time goes: bench_kill.py's rounds, each stage of each kill timestamped.

    python scripts/benchmarks/kill_stages.py --kills 100
    python scripts/benchmarks/kill_stages.py --kills 100 --connected 1000

The pilot runs under this script (``--as-pilot LOG``, then the pilot's arguments): the functions
of its kill path are wrapped to append ``time.time()``, the stage and the job to LOG; the
benchmark writes the same clock when the service has acknowledged the kill and when it sees the
job Killed. Printed: p50, p90 and p99 of each stage (from the stage before it, for the kills
that went through both) and the slowest kills stage by stage. A function the code measured does
not have is skipped (``kill_now`` before issue 15's kill latency work), so this measures the
code of whichever venv runs it (run it from /tmp: pilots import from the cwd).
"""

from __future__ import annotations

import argparse
import collections
import functools
import itertools
import runpy
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench_kill import run_kills
from scratch import add_keep_option, scratch_folder

# (class path, method, stage, before or after the call, the job(s) from the arguments)
Probe = tuple[str, str, str, bool, Callable[..., object]]


def _job_ids(owner: object, items: Any, *args: object, **kwargs: object) -> str:
    """The jobs of a method's first argument, a list of commands or reports."""
    return ",".join(str(getattr(item, "job_id", "")) for item in items)


def _job(owner: object, job: Any, *args: object, **kwargs: object) -> object:
    """The job id of a method's first argument, a job."""
    return job.job_id


def _runner_job(runner: Any, *args: object, **kwargs: object) -> object:
    """The job id of a PayloadRunner's method."""
    return runner.spec.job_id


PILOT, RUNNER = "agents.pilot.Pilot", "agents.wrapper.PayloadRunner"
PROBES: list[Probe] = [
    (PILOT, "apply_commands", "push read", False, _job_ids),
    (PILOT, "_end_in_worker", "the loop takes the kill", False, _job),
    (RUNNER, "kill_now", "SIGTERM from the loop", True, _runner_job),
    (RUNNER, "_kill_tree", "worker kills", False, _runner_job),
    (RUNNER, "_discover", "scan done", True, _runner_job),
    (RUNNER, "_ended", "helper reported the end", False, _runner_job),
    (PILOT, "finish", "the loop has the result", False, _job),
    ("agents.outbox.Outbox", "put_many", "kept in the outbox", True, _job_ids),
    ("agents.report_sender.ReportSender", "_apply_outcomes", "answered", False, _job_ids),
]
STAGES = ["acknowledged", *(probe[2] for probe in PROBES), "seen Killed"]


def run_pilot_with_probes(log_path: str, pilot_args: list[str]) -> None:
    """In the pilot's process: wrap the probes' methods, then run ``dirac_like pilot``."""
    log = open(log_path, "a", buffering=1)  # noqa: SIM115 (open for the process's life)
    lock = threading.Lock()

    def wrapped(
        method: Callable[..., Any], stage: str, after: bool, job: Callable[..., object]
    ) -> Callable[..., Any]:
        @functools.wraps(method)
        def probe(*args: Any, **kwargs: Any) -> Any:
            if not after:
                note(stage, job(*args, **kwargs))
            result = method(*args, **kwargs)
            if after:
                note(stage, job(*args, **kwargs))
            return result

        return probe

    def note(stage: str, jobs: object) -> None:
        with lock:
            log.write(f"{time.time():.6f}\t{stage}\t{jobs}\n")

    for class_path, name, stage, after, job in PROBES:
        module_name, class_name = class_path.rsplit(".", 1)
        module = __import__(f"dirac_like.{module_name}", fromlist=[class_name])
        owner = getattr(module, class_name)
        if hasattr(owner, name):
            setattr(owner, name, wrapped(getattr(owner, name), stage, after, job))
    sys.argv = ["dirac_like", "pilot", *pilot_args]
    runpy.run_module("dirac_like", run_name="__main__")


def measure(kills: int, connected: int) -> tuple[list[tuple[int, float, float]], Path]:
    """The rounds of bench_kill.py with the pilot under the probes: (job, acknowledged, seen
    Killed) per kill, and the probes' log."""
    home = scratch_folder("kill-stages-")
    log_path = home / "stages.log"
    pilot = [sys.executable, __file__, "--as-pilot", str(log_path)]
    return run_kills(home, kills, connected, pilot), log_path


def report(rounds: list[tuple[int, float, float]], log_path: Path) -> None:
    times: dict[int, dict[str, float]] = collections.defaultdict(dict)
    for line in log_path.read_text().splitlines():
        when, stage, jobs = line.split("\t")
        for job in filter(str.isdigit, jobs.split(",")):
            times[int(job)].setdefault(stage, float(when))  # the first time a stage is seen
    deltas: dict[str, list[float]] = collections.defaultdict(list)
    for job, acknowledged, seen in rounds:
        seen_at = {**times[job], "acknowledged": acknowledged, "seen Killed": seen}
        went = [stage for stage in STAGES if stage in seen_at]
        for before, stage in itertools.pairwise(went):
            deltas[f"{before} → {stage}"].append((seen_at[stage] - seen_at[before]) * 1000)
    print(f"{'stage (ms)':58s} {'kills':>5s} {'p50':>7s} {'p90':>7s} {'p99':>7s}")
    for name, values in deltas.items():
        print(
            f"{name:58s} {len(values):5d} {statistics.median(values):7.2f} "
            f"{_quantile(values, 0.9):7.2f} {_quantile(values, 0.99):7.2f}"
        )
    totals = [(seen - acknowledged) * 1000 for _, acknowledged, seen in rounds]
    print(
        f"{'acknowledged → seen Killed, in all':58s} {len(totals):5d} "
        f"{statistics.median(totals):7.2f} {_quantile(totals, 0.9):7.2f} "
        f"{_quantile(totals, 0.99):7.2f}"
    )
    print("the slowest kills (ms from the acknowledgement):")
    for job, acknowledged, seen in sorted(rounds, key=lambda r: r[1] - r[2])[:3]:
        seen_at = {**times[job], "seen Killed": seen}
        steps = ", ".join(
            f"{stage} {(seen_at[stage] - acknowledged) * 1000:.1f}"
            for stage in STAGES
            if stage in seen_at
        )
        print(f"  job {job}: {steps}")


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--as-pilot":
        run_pilot_with_probes(sys.argv[2], sys.argv[3:])
        raise SystemExit(0)
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kills", type=int, default=50)
    parser.add_argument("--connected", type=int, default=0, help="other pilots connected")
    add_keep_option(parser)
    args = parser.parse_args()
    report(*measure(args.kills, args.connected))
