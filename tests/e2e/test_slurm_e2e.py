"""End to end on Slurm: a real central service, a site director with the slurm fabric, pilots as
Slurm jobs on the test cluster (tests/slurm_cluster.py: two nodes on this machine), real payloads.

The pilots run ``python -m dirac_like pilot`` with this interpreter, as the director builds it
(one machine: the worker nodes see the same files). Each test closes its director, whose fabric
cancels the pilots still in Slurm, pass or fail; the central service is stopped by PID by the
start_central fixture.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import psutil
import pytest
from slurm_cluster import SlurmCluster

from dirac_like import testing
from dirac_like.agents.director import Director, DirectorSettings
from dirac_like.agents.fabrics import PilotState, SlurmFabric
from dirac_like.client import Client, RetryPolicy
from dirac_like.processes import ServiceProcess
from dirac_like.protocol import JobSummary, PilotView
from dirac_like.sites import SiteConfig, load_site

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]  # minutes of real processes

SITE = "Slurm.E2E.org"
DEADLINE = 120.0
RETRIES = RetryPolicy(timeout=5.0, retries=2, backoff=0.05, max_backoff=0.2)
FAST_PILOTS = DirectorSettings(
    idle_timeout=2.0,
    drain_margin=10.0,
    pilot_args=("--request-interval", "0.3", "--heartbeat", "1", "--kill-grace", "1"),
)
SITE_TOML = """\
cycle_seconds = 1.0
max_pilots_per_cycle = 6
failure_threshold = 10

[ce.slurm-ce]
fabric = "slurm"
cores_per_slot = 1
max_queued = 4
max_total = 6
max_wall_time = 900
"""
STALLED_FAST = """\
[jobs]
stalled_timeout = 3.0
stalled_to_reschedule = 1.0
reschedule_holdoff = 0.0
match_lease = 10.0
"""
T = TypeVar("T")


# the one wait_for (dirac_like.testing), with this file's deadline
wait_for = functools.partial(testing.wait_for, timeout=DEADLINE, interval=0.3)


@pytest.fixture
def make_director(slurm_cluster: SlurmCluster, tmp_path: Path) -> Iterator[Callable[..., Director]]:
    directors: list[Director] = []

    def make(client: Client, settings: DirectorSettings = FAST_PILOTS) -> Director:
        folder = tmp_path / "sites"
        folder.mkdir(exist_ok=True)
        (folder / f"{SITE}.toml").write_text(SITE_TOML)
        site: SiteConfig = load_site(folder / f"{SITE}.toml")
        fabric = SlurmFabric(
            tmp_path / "slurm-output", slurm_conf=slurm_cluster.slurm_conf, cancel_on_close=True
        )  # a test leaves no pilot in Slurm
        director = Director(
            site, client, {"slurm": fabric}, tmp_path / "director", settings=settings
        )
        directors.append(director)
        return director

    yield make
    for director in directors:
        director.close()


def statuses(client: Client, job_ids: list[int]) -> dict[int, JobSummary]:
    return {row.job_id: row for row in client.status(job_ids)}


def test_fifty_jobs_run_through_slurm_pilots(
    start_central: Callable[..., ServiceProcess],
    make_director: Callable[[Client], Director],
) -> None:
    service = start_central()
    with Client(service.endpoint, RETRIES) as client:
        job_ids = client.submit(
            ['Executable = "/bin/true"; CPUTime = 100; Parameters = 50;'], "alice"
        )
        assert len(job_ids) == 50
        director = make_director(client)

        def all_done_and_pilots_ended() -> bool:
            report = director.cycle()
            assert not report.errors, report.errors
            done = all(row.status == "Done" for row in client.status(job_ids))
            return done and not director.alive()

        wait_for(all_done_and_pilots_ended, "50 jobs Done and every Slurm pilot ended")
        rows = statuses(client, job_ids)
        pilots = client.pilots(site=SITE)
        outputs = {row.pilot_id: client.pilot_output(row.pilot_id) for row in pilots}
    used = {row.pilot_id for row in rows.values()}
    assert len(used) >= 2  # the work was spread over several pilots
    by_id = {row.pilot_id: row for row in pilots}
    assert used <= set(by_id)  # every job ran on a pilot this director submitted to Slurm
    for pilot_id in used:
        assert by_id[pilot_id].state == PilotState.DONE.value
        assert str(by_id[pilot_id].fabric_ref).isdigit()  # a Slurm job id
        # the director read the pilot's Slurm output files back and handed them to the service
        assert outputs[pilot_id].collected
        assert f"pilot {pilot_id}: stopped after" in outputs[pilot_id].output


def running_pilot(director: Director, client: Client, job_id: int) -> str:
    """One director cycle; the pilot running ``job_id``, or ''."""
    director.cycle()
    [row] = client.status([job_id])
    return str(row.pilot_id) if row.status == "Running" else ""


def pilot_process(pilot_id: str) -> psutil.Process | None:
    """The running `dirac_like pilot --pilot-id PILOT_ID` process."""
    for process in psutil.process_iter(["cmdline"]):
        cmdline = process.info["cmdline"] or []
        if "pilot" in cmdline and pilot_id in cmdline and "dirac_like" in cmdline:
            return process
    return None


def finish_elsewhere(director: Director, client: Client, job_id: int, first: str) -> list[str]:
    """Cycle the director until ``job_id`` is final: it must be Done on another pilot than
    ``first``, after going through Rescheduled. Returns the job's status history."""

    def final() -> JobSummary | None:
        director.cycle()
        [row] = client.status([job_id])
        return row if row.status in ("Done", "Failed", "Killed") else None

    row = wait_for(final, f"job {job_id} to end after its pilot {first} was stopped")
    history = [entry.status for entry in client.history(job_id)]
    assert row.status == "Done", (row, history)
    assert row.pilot_id != first
    assert "Rescheduled" in history
    after = history[history.index("Rescheduled") :]
    assert "Running" in after and after[-1] == "Done"
    return history


def test_a_pilot_that_dies_in_slurm_mid_job_its_job_finishes_on_another_pilot(
    start_central: Callable[..., ServiceProcess],
    make_director: Callable[[Client], Director],
) -> None:
    """The pilot process of a Slurm job is SIGKILLed (as when it crashes or its node dies): it
    cannot report, Slurm ends the job and kills what is left of it, the job stalls, is
    Rescheduled, and the director's next pilot runs it to Done."""
    service = start_central(config_text=STALLED_FAST)
    with Client(service.endpoint, RETRIES) as client:
        [job_id] = client.submit(
            ['Executable = "/bin/sleep"; Arguments = "4"; CPUTime = 100;'], "alice"
        )
        director = make_director(client)
        first = wait_for(
            lambda: running_pilot(director, client, job_id), "the job Running on a Slurm pilot"
        )
        process = wait_for(lambda: pilot_process(first), f"the process of pilot {first}")
        process.kill()
        history = finish_elsewhere(director, client, job_id, first)
        states = {row.pilot_id: row.state for row in client.pilots(site=SITE)}
    assert "Stalled" in history  # no heartbeat from the dead pilot
    assert states[first] == PilotState.FAILED.value  # Slurm: the batch script died of SIGKILL


def test_a_pilot_scancelled_mid_job_its_job_finishes_on_another_pilot(
    start_central: Callable[..., ServiceProcess],
    make_director: Callable[[Client], Director],
    slurm_cluster: SlurmCluster,
) -> None:
    """An admin (or preemption) scancels the pilot's Slurm job mid-job: SIGTERM to the pilot
    and to its payload at once, SIGKILL after KillWait. The user's job must not be lost."""
    service = start_central(config_text=STALLED_FAST)
    with Client(service.endpoint, RETRIES) as client:
        [job_id] = client.submit(
            ['Executable = "/bin/sleep"; Arguments = "4"; CPUTime = 100;'], "alice"
        )
        director = make_director(client)
        first = wait_for(
            lambda: running_pilot(director, client, job_id), "the job Running on a Slurm pilot"
        )
        slurm_cluster.run("scancel", director.records[first].fabric_ref)
        finish_elsewhere(director, client, job_id, first)
        states = {row.pilot_id: row.state for row in client.pilots(site=SITE)}
    assert states[first] == PilotState.ABORTED.value  # Slurm: CANCELLED


def test_a_pilot_whose_bootstrap_fails_ends_failed_with_the_reason_and_no_job_is_lost(
    start_central: Callable[..., ServiceProcess],
    make_director: Callable[..., Director],
    tmp_path: Path,
) -> None:
    """The worker node cannot set up dirac-like (here: a bootstrap that exits 67, as the real
    one does when nothing has dirac-like and there is no wheel to install)."""
    broken = tmp_path / "broken-bootstrap.sh"
    broken.write_text(
        "echo 'pilot-bootstrap: exit 67: dirac-like is not importable' >&2\nexit 67\n"
    )
    settings = dataclasses.replace(FAST_PILOTS, bootstrap_script=str(broken))
    service = start_central()
    with Client(service.endpoint, RETRIES) as client:
        [job_id] = client.submit(['Executable = "/bin/true"; CPUTime = 100;'], "alice")
        director = make_director(client, settings)

        def failed_pilot() -> PilotView | None:
            director.cycle()
            rows = [row for row in client.pilots(site=SITE) if row.state == "Failed"]
            return rows[0] if rows else None

        failed = wait_for(failed_pilot, "a pilot to fail in its bootstrap")
        output = client.pilot_output(failed.pilot_id).output
        [row] = client.status([job_id])
    assert "exit code 67: bootstrap: dirac-like is not importable" in failed.reason, failed
    assert "pilot-bootstrap: exit 67" in output
    assert row.status == "Waiting"  # never matched: nothing lost, waiting for a good pilot
