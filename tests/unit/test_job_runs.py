"""The decisions of the event-driven job path (agents/job_runs.py) and its small worker pool;
the output check made without a client; the process environment kept decoded."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import pytest

from dirac_like.agents import wrapper
from dirac_like.agents.job_runs import (
    Stage,
    Workers,
    due_for_sample,
    end_needs_worker,
    needs_inputs,
)
from dirac_like.agents.job_sandboxes import OutputSandbox, settled_here
from dirac_like.agents.wrapper import PayloadResult
from dirac_like.description import description_from_stored
from dirac_like.states import JobStatus
from dirac_like.testing import wait_for


def described(**attributes: Any) -> Any:
    return description_from_stored({"Executable": "/bin/true", **attributes})


def ended(status: JobStatus = JobStatus.DONE, code: int | None = 0) -> PayloadResult:
    return PayloadResult(status, "", code, 0.0, 0.0, 0.0, "")


@pytest.mark.parametrize(
    ("attributes", "expected"),
    [
        ({}, False),
        ({"InputSandbox": ["SB:" + "0" * 64]}, True),
        ({"InputSandbox": ["LFN:/vo/user/a.dat"]}, True),
        ({"InputData": ["/vo/user/a.dat"]}, True),
    ],
)
def test_only_a_job_with_inputs_needs_a_worker_before_it_starts(
    attributes: dict[str, Any], expected: bool
) -> None:
    assert needs_inputs(described(**attributes)) is expected


def test_what_is_left_after_a_payload_needs_a_worker_only_when_it_blocks() -> None:
    plain = described()
    with_data = described(OutputData=["out.dat"], OutputSE=["SE-A"])
    assert not end_needs_worker(ended(), plain, has_output=False)  # the common case
    assert end_needs_worker(ended(), plain, has_output=True)  # an upload
    assert end_needs_worker(ended(), with_data, has_output=False)  # output data of a Done job
    failed = ended(JobStatus.FAILED, 3)
    assert not end_needs_worker(failed, with_data, has_output=False)  # no output data to keep
    never = ended(JobStatus.FAILED, None)  # never started: nothing to upload at all
    assert not end_needs_worker(never, with_data, has_output=True)


def test_only_running_payloads_due_are_sampled() -> None:
    jobs = [
        (1, Stage.RUNNING, 10.0),
        (2, Stage.RUNNING, 12.0),  # not yet
        (3, Stage.FETCHING, 0.0),  # not started
        (4, Stage.ENDING, 0.0),  # a worker kills it
        (5, Stage.WAITING, 0.0),
    ]
    assert due_for_sample(jobs, 10.0) == [1]
    assert due_for_sample(jobs, 12.0) == [1, 2]


class StubClient:
    def __init__(self) -> None:
        self.closed = False

    def close(self) -> None:
        self.closed = True


def stub_workers(size: int, clients: list[StubClient] | None = None) -> Workers:
    def make() -> Any:
        client = StubClient()
        if clients is not None:
            clients.append(client)
        return client

    return Workers(make, size)


def test_workers_reuse_their_threads_and_each_has_its_own_client() -> None:
    clients: list[StubClient] = []
    workers = stub_workers(4, clients)
    seen: list[tuple[str, Any]] = []

    def task(client: Any, done: threading.Event) -> None:
        seen.append((threading.current_thread().name, client))
        done.set()

    for _ in range(20):  # one after the other: the same thread takes each
        done = threading.Event()
        workers.submit(lambda client, done=done: task(client, done))  # type: ignore[misc]
        assert done.wait(10)
        wait_for(lambda: workers._idle == 1, "the worker to be idle again", 10)
    assert len({name for name, _ in seen}) == 1 and len(clients) == 1
    assert all(client is clients[0] for _, client in seen)
    workers.close(10)
    assert clients[0].closed


def test_workers_start_at_most_size_threads_and_queue_the_rest() -> None:
    workers = stub_workers(2)
    release = threading.Event()
    started: list[str] = []

    def task(client: Any) -> None:
        started.append(threading.current_thread().name)
        release.wait(10)

    for _ in range(5):
        workers.submit(task)
    wait_for(lambda: len(started) == 2, "two tasks to run")
    assert len(workers._threads) == 2  # the other three wait for a free worker
    release.set()
    wait_for(lambda: len(started) == 5, "every task to run")
    workers.close(10)
    assert not any(thread.is_alive() for thread in workers._threads)


def test_a_failing_task_does_not_stop_its_worker() -> None:
    workers = stub_workers(1)
    ran = threading.Event()

    def failing(client: Any) -> None:
        raise RuntimeError("a bug")

    workers.submit(failing)
    workers.submit(lambda client: ran.set())
    assert ran.wait(10)
    workers.close(10)


def test_the_output_check_without_a_client(tmp_path: Path) -> None:
    description = described(StdOutput="std.out", StdError="std.err", OutputSandbox=["a.txt"])
    (tmp_path / "std.out").write_bytes(b"")
    (tmp_path / "std.err").write_bytes(b"")
    assert settled_here(description, tmp_path) == OutputSandbox("", ("a.txt",))
    (tmp_path / "a.txt").mkdir()  # a folder is something to upload
    assert settled_here(description, tmp_path) is None
    (tmp_path / "a.txt").rmdir()
    (tmp_path / "std.out").write_bytes(b"hello\n")
    assert settled_here(description, tmp_path) is None


def test_the_process_environment_is_decoded_again_when_it_changes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("NOTHREADS_TEST", "one")
    first = wrapper._process_environment()
    assert first["NOTHREADS_TEST"] == "one"
    assert wrapper._process_environment() is first  # unchanged: not decoded again
    monkeypatch.setenv("NOTHREADS_TEST", "two")
    assert wrapper._process_environment()["NOTHREADS_TEST"] == "two"
    monkeypatch.delenv("NOTHREADS_TEST")
    assert "NOTHREADS_TEST" not in wrapper._process_environment()
    assert wrapper._process_environment() == dict(os.environ)
