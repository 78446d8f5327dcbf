"""What ``scripts/chaos.py`` reads in a killed pilot's workdir to know which Done it held (the
exact "ran again after Done" check): real files as the pilot's outbox and its exec helper
write them, a real process working in a job folder, and a real exec helper."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import psutil
import pytest

from dirac_like.agents import spawner
from dirac_like.agents.outbox import ENDED_MARK, JOB_FILE, Outbox, Report
from dirac_like.testing import wait_for

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def chaos() -> Iterator[ModuleType]:
    spec = importlib.util.spec_from_file_location("chaos_script", REPO / "scripts" / "chaos.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        del sys.modules[spec.name]


def job_folder(workdir: Path, job_id: int, attempt: int, ended: str | None) -> Path:
    """A job folder as the pilot makes it (``job.json``), with the keeper's mark if ``ended``."""
    folder = workdir / f"job_{job_id}_{attempt}"
    folder.mkdir(parents=True)
    job = {"job_id": job_id, "attempt": attempt, "pilot_id": "p1", "description": {}}
    (folder / JOB_FILE).write_text(json.dumps(job))
    if ended is not None:
        (folder / ENDED_MARK).write_text(f"{ended}\n")
    return folder


def test_the_done_a_workdir_holds_is_its_outbox_and_its_exit_0_marks(
    chaos: ModuleType, tmp_path: Path
) -> None:
    outbox = Outbox(tmp_path)
    for job_id, status in ((1, "Done"), (2, "Failed"), (3, "Rescheduled")):
        outbox.put(
            Report.new(job_id=job_id, attempt=1, pilot_id="p1", status=status, minor_status="")
        )
    (tmp_path / "outbox" / "torn.json").write_text('["not a report"]')
    job_folder(tmp_path, 4, 2, "exit 0")
    job_folder(tmp_path, 5, 1, "exit 3")
    job_folder(tmp_path, 6, 1, "signal 9")
    job_folder(tmp_path, 7, 1, None)  # still running when its pilot died
    assert chaos.done_kept_in(tmp_path) == frozenset({(1, 1), (4, 2)})


def test_the_done_of_a_turns_file_of_reports_is_kept(chaos: ModuleType, tmp_path: Path) -> None:
    """A loop turn's final reports are kept in one outbox file (a list): its Done count."""
    Outbox(tmp_path).put_many(
        [
            Report.new(job_id=job_id, attempt=1, pilot_id="p1", status=status, minor_status="")
            for job_id, status in ((11, "Done"), (12, "Failed"), (13, "Done"))
        ]
    )
    assert chaos.done_kept_in(tmp_path) == frozenset({(11, 1), (13, 1)})


def test_a_mark_written_after_the_first_look_is_found_by_the_second(
    chaos: ModuleType, tmp_path: Path
) -> None:
    """A keeper notes a payload's end up to half a second after its pilot died."""
    folder = job_folder(tmp_path, 8, 1, None)
    assert chaos.done_kept_in(tmp_path) == frozenset()
    (folder / ENDED_MARK).write_text("exit 0\n")
    assert chaos.done_marked_in([folder]) == frozenset({(8, 1)})


def test_a_process_working_in_a_job_folder_is_waited_for(chaos: ModuleType, tmp_path: Path) -> None:
    folder = job_folder(tmp_path, 9, 1, None)
    other = job_folder(tmp_path, 10, 1, None)
    process = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()"],
        cwd=folder,
        stdin=subprocess.PIPE,
    )
    try:
        wait_for(lambda: list(chaos._working_in([folder])) == [process.pid], "the process", 10)
        assert list(chaos._working_in([other])) == []
    finally:
        assert process.stdin is not None
        process.stdin.close()  # it exits
        process.wait(10)
    chaos.wait_gone_from([folder], 10)  # a zombie no longer works there; reaped here anyway
    assert list(chaos._working_in([folder])) == []


def test_a_pilots_exec_helper_is_found_to_be_waited_for(chaos: ModuleType) -> None:
    """The exec helper writes the payloads' end marks (no keeper works in the job folder any
    more): the script waits for a killed pilot's helper, its watchdog and the helper proper."""
    helper = spawner.Spawner()

    def ours() -> list[int]:
        """The found helpers that are this test's: other tests of this process may have a helper
        of their own, listed before or after it (and its proper may not be started yet)."""
        found = []
        for process in chaos.exec_helpers_of(os.getpid()):
            with contextlib.suppress(psutil.Error):
                if helper.pid in (process.pid, process.ppid()):
                    found.append(process.pid)
        return found

    try:
        [watchdog, proper] = wait_for(lambda: len(ours()) == 2 and ours(), "the helper proper")
        assert watchdog == helper.pid
        assert psutil.Process(proper).ppid() == helper.pid
    finally:
        helper.close()
    assert ours() == []
