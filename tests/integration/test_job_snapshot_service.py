"""A real central service restarted from its job snapshot serves as one restarted from the jobs
table: the same jobs, the same matches in the same order; after a crash (SIGKILL) the snapshot
of the last clean stop is brought up to date from the store's history."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from dirac_like.client import Client
from dirac_like.processes import ServiceProcess
from dirac_like.protocol import PilotResources
from dirac_like.testing import FAST_RETRIES

CERN = PilotResources(site="LCG.CERN.cern")
JDLS = [
    'Executable = "/bin/true"; Arguments = "%s"; Priority = 2; Parameters = 8;',
    'Executable = "/bin/true"; Arguments = "%s"; Priority = 5; Site = "LCG.CERN.cern"; '
    "Parameters = 6;",
]
SNAPSHOT = "jobs.sqlite.jobs-snapshot"


def every_match(service: ServiceProcess, pilot: str) -> list[int]:
    """The jobs handed out to one pilot, in order, until none is left for it."""
    matched = []
    with Client(service.endpoint, FAST_RETRIES) as client:
        while (reply := client.request_job(pilot, CERN)).job is not None:
            matched.append(reply.job.job_id)
    return matched


def statuses(service: ServiceProcess, job_ids: list[int]) -> dict[int, str]:
    with Client(service.endpoint, FAST_RETRIES) as client:
        return {row.job_id: row.status for row in client.status(job_ids)}


def test_a_restart_from_the_snapshot_matches_as_one_from_the_table(
    start_central: Callable[..., ServiceProcess], tmp_path: Path
) -> None:
    service = start_central(home=tmp_path / "home")
    with Client(service.endpoint, FAST_RETRIES) as client:
        job_ids = [job_id for jdl in JDLS for job_id in client.submit([jdl], owner="alice")]
        client.request_job("p1", CERN)
        client.kill([job_ids[3]])
    assert service.stop() == 0
    assert (service.home / SNAPSHOT).exists()
    assert "job snapshot of 14 jobs saved" in service.stderr_text()
    shutil.copytree(service.home, tmp_path / "copy")
    (tmp_path / "copy" / SNAPSHOT).unlink()  # the copy reads the jobs table

    from_snapshot = start_central(home=service.home)
    assert "jobs read from the snapshot" in from_snapshot.stderr_text()
    from_table = start_central(home=tmp_path / "copy")
    assert "jobs read from the snapshot" not in from_table.stderr_text()
    assert statuses(from_snapshot, job_ids) == statuses(from_table, job_ids)
    matched = every_match(from_snapshot, "p2")
    assert matched == every_match(from_table, "p2")
    assert len(matched) == 14 - 2  # all but the one matched and the one killed before


def test_after_a_crash_the_snapshot_is_brought_up_to_date(
    start_central: Callable[..., ServiceProcess], tmp_path: Path
) -> None:
    service = start_central(home=tmp_path / "home")
    with Client(service.endpoint, FAST_RETRIES) as client:
        job_ids = client.submit([JDLS[0]], owner="alice")
    assert service.stop() == 0
    service = start_central(home=service.home)
    with Client(service.endpoint, FAST_RETRIES) as client:
        matched = client.request_job("p1", CERN).job
        client.kill(job_ids[5:7])
        new_ids = client.submit([JDLS[1]], owner="bob")
    service.kill9()  # no clean stop: the snapshot is the one of the first stop
    shutil.copytree(service.home, tmp_path / "copy")
    (tmp_path / "copy" / SNAPSHOT).unlink()  # the copy reads the jobs table
    service = start_central(home=service.home)
    # 1 match, 2 kills, 6 new jobs (3 rows each: Received, Checking, Waiting)
    assert "14 jobs, 21 history rows after it replayed" in service.stderr_text()
    assert matched is not None
    every = statuses(service, job_ids + new_ids)
    assert every[matched.job_id] == "Matched"
    assert [every[job_id] for job_id in job_ids[5:7]] == ["Killed", "Killed"]
    from_table = start_central(home=tmp_path / "copy")
    assert every == statuses(from_table, job_ids + new_ids)
    left = every_match(service, "p2")
    assert left == every_match(from_table, "p2")
    assert sorted(left) == sorted(set(job_ids + new_ids) - {matched.job_id, *job_ids[5:7]})
