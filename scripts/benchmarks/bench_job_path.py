#!/usr/bin/env python3
"""The pilot's own CPU per job on its job path, in process, without a service.

    cd /tmp && python scripts/benchmarks/bench_job_path.py                 # 800 jobs, 8 at a time
    cd /tmp && python scripts/benchmarks/bench_job_path.py --jobs 2000 --slots 16

A real :class:`Pilot` (its client never connected) runs ``--jobs`` jobs, ``--slots`` at a time,
through everything it does for a job between the service's answers: the job's folder and
``job.json`` (or its turn's records), the payload runner, the start through the exec helper
(its keeper and payload), the end, the output check and the final report made (not sent: no
service here; the reports
are dropped, and the job folders are removed by this script, outside the clock). The CPU of this
process (every thread: the loop, the exec helper's reader, workers) per job is printed; the exec
helper, the keepers and the payloads are other processes and not counted. It is
``bench_local.py``'s "pilots" figure without the requests, reports and outbox.

It runs the pilot of the checkout it imports (run it from ``/tmp`` with a venv per checkout to
compare two): a pilot that starts a thread per job (``_start_thread``) or runs them from its
loop (``_start_payload``), or starts a batch's jobs together (``_start_payloads``).
"""

from __future__ import annotations

import argparse
import queue
import shutil
import time
from pathlib import Path
from typing import Any

from scratch import add_keep_option, scratch_folder

from dirac_like.agents import pilot as pilot_module
from dirac_like.agents.pilot import Pilot, PilotConfig
from dirac_like.protocol import MatchedJob


def run_batch(pilot: Pilot, first_id: int, slots: int, description: dict[str, Any]) -> list[Path]:
    """Start ``slots`` jobs and handle their events until every one is finished."""
    jobs = []
    for job_id in range(first_id, first_id + slots):
        job = pilot._prepare(MatchedJob(job_id, 1, "bench", "bench", 1, dict(description)))
        assert job is not None
        pilot.jobs[job_id] = job
        jobs.append(job)
    start_all = getattr(pilot, "_start_payloads", None)  # the batch together (one request)
    if start_all is not None:
        jobs = pilot._keep_records(jobs)  # type: ignore[attr-defined, unused-ignore]
        start_all(jobs)
    else:
        start = getattr(pilot, "_start_payload", None) or getattr(pilot, "_start_thread")  # noqa: B009
        for job in jobs:
            start(job)
    while pilot.jobs:
        event = pilot.events.get(timeout=60)
        pilot.events.put(event)
        handle_events(pilot)
        pilot._unsent = []  # made, not sent: there is no service
    return [job.workdir for job in jobs]


def handle_events(pilot: Pilot) -> None:
    """:meth:`Pilot.process_events` without sending the reports."""
    while True:
        try:
            event = pilot.events.get_nowait()
        except queue.Empty:
            return
        job = pilot.jobs.get(event.job_id)
        if job is None:
            continue
        kind = type(event).__name__
        if kind == "Ended":
            pilot._payload_ended(job)  # type: ignore[attr-defined, unused-ignore]
        elif kind == "Fetched":
            batch = hasattr(pilot, "_start_payloads")
            pilot._launch([job] if batch else job)  # type: ignore[attr-defined, arg-type, unused-ignore]
        elif kind == "_Sampled":
            job.sample = event.sample  # type: ignore[union-attr, unused-ignore]
        else:
            pilot.finish(job, event.result, event.output)  # type: ignore[union-attr]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=800)
    parser.add_argument("--slots", type=int, default=8, help="jobs at a time")
    parser.add_argument(
        "--executable",
        default="/bin/true",
        help="one that prints nothing (no service to upload to)",
    )
    add_keep_option(parser)
    options = parser.parse_args()
    workdir = scratch_folder("bench-job-path-")
    pilot = Pilot(
        PilotConfig(
            server="tcp://127.0.0.1:9",  # never connected
            site="BENCH.Local.org",
            cores=options.slots,
            workdir=workdir,
            insecure=True,
            idle_timeout=0.0,
        )
    )
    description = {"Executable": options.executable, "CPUTime": 60}
    for folder in run_batch(pilot, 1, options.slots, description):  # the exec helper starts
        shutil.rmtree(folder, ignore_errors=True)
    batches = max(1, options.jobs // options.slots)
    cleaning = 0.0
    cpu_before, wall_before = time.process_time(), time.perf_counter()
    for batch in range(batches):
        folders = run_batch(pilot, 100 + batch * options.slots, options.slots, description)
        clean_from = time.process_time()
        for folder in folders:
            shutil.rmtree(folder, ignore_errors=True)
        cleaning += time.process_time() - clean_from
    cpu = time.process_time() - cpu_before - cleaning
    wall = time.perf_counter() - wall_before
    jobs = batches * options.slots
    print(
        f"{jobs} {options.executable} jobs, {options.slots} at a time, pilot of "
        f"{Path(pilot_module.__file__).parent.parent}: pilot CPU {1000 * cpu / jobs:.2f} ms per "
        f"job (wall {1000 * wall / jobs:.2f} ms per job)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
