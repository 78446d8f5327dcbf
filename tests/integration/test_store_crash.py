"""A writer killed with SIGKILL loses no commit it reported and leaves no commit half-written.

The child (store_crash_child.py) commits numbered batches in a loop and prints each number once
``commit`` has returned. We kill it while it writes, open the store and check: every batch is
either entirely there or entirely absent, the batches present are 0…last with no gap, and last is
the last number the child printed (or the one after, committed but not yet printed).
"""

from __future__ import annotations

import os
import random
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dirac_like.states import JobStatus
from dirac_like.store.base import Store, open_store

ROOT = Path(__file__).resolve().parents[2]
CHILD = Path(__file__).with_name("store_crash_child.py")
JOBS_PER_BATCH = 50
BATCHES_BEFORE_KILL = 20
KILL_JITTER_S = 0.02  # kill at a random moment after that, not just after a print
ROUNDS = 4
DEADLINE_S = 60.0


@pytest.mark.parametrize("synchronous", ["full", "normal"])
def test_a_killed_writer_keeps_every_reported_batch_and_no_partial_one(
    tmp_path: Path, synchronous: str
) -> None:
    for round_number in range(ROUNDS):
        path = tmp_path / f"store{round_number}.sqlite"

        reported = run_child_and_kill_it(path, synchronous)

        store = open_store(str(path))
        try:
            check_batches(store, reported)
        finally:
            store.close()


def run_child_and_kill_it(path: Path, synchronous: str) -> int:
    """Start the child, kill it after some batches; the last batch number it printed."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    command = [sys.executable, str(CHILD), str(path), synchronous, str(JOBS_PER_BATCH)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, env=env)
    assert process.stdout is not None
    try:
        output = read_lines(process, BATCHES_BEFORE_KILL)
        output += read_for(process, random.uniform(0.0, KILL_JITTER_S))
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=DEADLINE_S)
        output += process.stdout.read()  # what it printed before the signal landed
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
        process.wait()
        process.stdout.close()
    assert process.returncode == -signal.SIGKILL
    numbers = [int(line) for line in output.split(b"\n")[:-1]]  # complete lines only
    assert numbers == list(range(len(numbers)))
    return numbers[-1]


def read_lines(process: subprocess.Popen[bytes], count: int) -> bytes:
    """Read the child's stdout until it holds ``count`` lines, within DEADLINE_S."""
    assert process.stdout is not None
    descriptor = process.stdout.fileno()
    deadline = time.monotonic() + DEADLINE_S
    output = b""
    with selectors.DefaultSelector() as selector:
        selector.register(descriptor, selectors.EVENT_READ)
        while output.count(b"\n") < count:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"the child printed only {output!r} in {DEADLINE_S} s"
            if selector.select(remaining):
                chunk = os.read(descriptor, 65536)
                assert chunk, f"the child exited ({process.wait()}) after printing {output!r}"
                output += chunk
    return output


def read_for(process: subprocess.Popen[bytes], seconds: float) -> bytes:
    """Read the child's stdout for ``seconds``; the child must not stop meanwhile."""
    assert process.stdout is not None
    descriptor = process.stdout.fileno()
    end = time.monotonic() + seconds
    output = b""
    with selectors.DefaultSelector() as selector:
        selector.register(descriptor, selectors.EVENT_READ)
        while (remaining := end - time.monotonic()) > 0:
            if selector.select(remaining):
                chunk = os.read(descriptor, 65536)
                assert chunk, f"the child exited ({process.wait()}) after printing {output!r}"
                output += chunk
    return output


def check_batches(store: Store, reported: int) -> None:
    state = store.load()
    present = sorted(int(site.name.removeprefix("site-")) for site in state.sites)
    last = present[-1]
    assert present == list(range(last + 1)), "a gap: a batch is missing before the last one"
    assert reported <= last <= reported + 1
    assert sorted(reply.request_id for reply in state.replies) == sorted(
        f"req-{number}" for number in range(last + 1)
    )
    assert [(u.group, u.user, u.usage) for u in state.usage] == [("crash", "", float(last))]
    assert sorted(job.job_id for job in state.jobs) == list(
        range(1, (last + 1) * JOBS_PER_BATCH + 1)
    )
    for job in state.jobs:
        number = (job.job_id - 1) // JOBS_PER_BATCH
        if number < last:  # batch number + 1 moved it to Running
            expected = (JobStatus.RUNNING, f"batch {number + 1}", ["Waiting", "Running"])
        else:
            expected = (JobStatus.WAITING, "", ["Waiting"])
        history = [entry.status for entry in store.history(job.job_id)]
        assert (job.status, job.minor_status, history) == expected, f"job {job.job_id}"
