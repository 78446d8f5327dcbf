"""Real pilots against a real central service (issue 11, defects 8, 9 and 10): payloads never
outlive or overlap their pilot, final reports survive the pilot (and the service), and job
folders do not pile up."""

from __future__ import annotations

import contextlib
import json
import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from test_pilot import FAST_RETRIES, SHORT_TIMEOUTS, Pilots, payloads_of, wait_for, wait_status

from dirac_like.agents import spawner
from dirac_like.agents.pilot import Pilot, PilotConfig
from dirac_like.client import Client
from dirac_like.processes import ServiceProcess

FINAL = ("Done", "Failed", "Killed")
# A payload that works in a background child, as a shell script running an application does.
BACKGROUND = 'Executable = "/bin/sh"; Arguments = "-c \'sleep 300 & sleep 300\'";'


@pytest.fixture
def pilots(tmp_path: Path) -> Iterator[Callable[[str], Pilots]]:
    made: list[Pilots] = []

    def make(endpoint: str) -> Pilots:
        made.append(Pilots(endpoint, tmp_path / "pilots"))
        return made[-1]

    try:
        yield make
    finally:
        for each in made:
            each.stop_all()


def test_defect_8_a_payloads_background_child_dies_with_its_kill_9d_pilot(
    start_central: Callable[..., ServiceProcess], pilots: Callable[[str], Pilots]
) -> None:
    service = start_central(config_text=SHORT_TIMEOUTS)
    started = pilots(service.endpoint)
    with Client(service.endpoint, FAST_RETRIES) as client:
        [job_id] = client.submit([BACKGROUND], "alice")
        pilot, _ = started.start(name="doomed")
        wait_status(client, job_id, ("Running",), 30)
        wait_for(
            lambda: len(payloads_of("doomed", job_id)) >= 3,
            "the payload and its background child",
            timeout=10,
        )  # keeper, sh, 2 x sleep

        os.kill(pilot.pid, signal.SIGKILL)
        pilot.wait(10)

        wait_for(
            lambda: not payloads_of("doomed", job_id),
            "every process of the payload to die with its pilot",
            timeout=10,
        )


def test_defect_8_a_frozen_pilots_payload_is_killed_at_its_lease_before_the_job_moves(
    start_central: Callable[..., ServiceProcess], pilots: Callable[[str], Pilots]
) -> None:
    # stalled_timeout 3 s (the lease), stalled_to_reschedule 1 s (the margin)
    service = start_central(config_text=SHORT_TIMEOUTS)
    started = pilots(service.endpoint)
    with Client(service.endpoint, FAST_RETRIES) as client:
        [job_id] = client.submit([BACKGROUND], "alice")
        pilot, _ = started.start(name="frozen")
        wait_status(client, job_id, ("Running",), 30)
        wait_for(lambda: len(payloads_of("frozen", job_id)) >= 3, "the payload", timeout=10)

        os.kill(pilot.pid, signal.SIGSTOP)
        try:
            wait_for(
                lambda: not payloads_of("frozen", job_id),
                "the payload to be killed at the end of its lease",
                timeout=10,
            )
            statuses = [entry.status for entry in client.history(job_id)]
            assert "Rescheduled" not in statuses, statuses  # killed before the job moved on
            assert client.status([job_id])[0].attempt == 1
        finally:
            os.kill(pilot.pid, signal.SIGCONT)
        wait_for(
            lambda: "Rescheduled" in [e.status for e in client.history(job_id)],
            "the job to be rescheduled",
            timeout=20,
        )


def outbox_reports(workdir: Path) -> list[dict[str, object]]:
    reports = []
    for path in (workdir / "outbox").glob("*.json"):
        with contextlib.suppress(OSError, ValueError):
            kept = json.loads(path.read_text())  # one report, or a turn's list of them
            reports += kept if isinstance(kept, list) else [kept]
    return reports


def test_defect_9_a_done_report_survives_its_pilot_and_the_service(
    start_central: Callable[..., ServiceProcess], pilots: Callable[[str], Pilots], tmp_path: Path
) -> None:
    service = start_central()  # a lease (stalled_timeout) far longer than this test
    endpoint = service.endpoint
    started = pilots(endpoint)
    with Client(endpoint, FAST_RETRIES) as client:
        [job_id] = client.submit(
            ['Executable = "/bin/sh"; Arguments = "-c \'sleep 1; echo done\'";'], "alice"
        )
        pilot, workdir = started.start(name="keeper")
        wait_status(client, job_id, ("Running",), 30)
    service.kill9()  # the Done report cannot be acknowledged now

    # The payload's end is durable first in its keeper's mark, then in the outbox (issue 15:
    # the pilot writes a turn's reports together; here it is still trying to upload the output)
    ended = workdir / f"job_{job_id}_1" / "payload_ended"
    wait_for(ended.exists, "the payload's end noted in its folder", timeout=30)
    os.kill(pilot.pid, signal.SIGKILL)  # the end is on disk only (maybe mid-upload)
    pilot.wait(10)

    service = start_central(home=service.home, listen=endpoint)
    started.start(name="keeper")  # the same pilot id on the same workdir
    with Client(endpoint, FAST_RETRIES) as client:
        final = wait_status(client, job_id, FINAL, 60)
        assert (final.status, final.attempt) == ("Done", 1)
        statuses = [entry.status for entry in client.history(job_id)]
        assert statuses.count("Running") == 1 and "Rescheduled" not in statuses, statuses
        assert client.job_output(job_id).sha256  # the output went up before the report
    wait_for(lambda: not outbox_reports(workdir), "the outbox to be emptied", timeout=10)


def test_defect_10_a_failed_jobs_folder_is_kept_a_while_a_done_ones_removed(
    start_central: Callable[..., ServiceProcess], pilots: Callable[[str], Pilots]
) -> None:
    service = start_central()
    started = pilots(service.endpoint)
    with Client(service.endpoint, FAST_RETRIES) as client:
        done, failed = client.submit(
            ['Executable = "/bin/true";', 'Executable = "/bin/false";'], "alice"
        )
        popen, workdir = started.start("--idle-timeout", "1", name="tidy")
        assert wait_status(client, done, FINAL, 30).status == "Done"
        assert wait_status(client, failed, FINAL, 30).status == "Failed"
        assert popen.wait(30) == 0
    assert [path.name for path in workdir.glob("job_*")] == [f"job_{failed}_1"]
    assert not outbox_reports(workdir)


def test_defect_9_a_pilot_killed_the_moment_its_payload_ended_leaves_the_end_to_report(
    start_central: Callable[..., ServiceProcess], pilots: Callable[[str], Pilots]
) -> None:
    service = start_central()
    started = pilots(service.endpoint)
    with Client(service.endpoint, FAST_RETRIES) as client:
        [job_id] = client.submit(['Executable = "/bin/sh"; Arguments = "-c \'sleep 2\'";'], "alice")
        pilot, workdir = started.start(name="abrupt")
        wait_status(client, job_id, ("Running",), 30)
        # Running is reported before the payload starts: stop the pilot only once it runs
        wait_for(lambda: payloads_of("abrupt", job_id), "the payload to start", timeout=30)
        os.kill(pilot.pid, signal.SIGSTOP)  # the pilot can neither keep nor send a report now
        ended = workdir / f"job_{job_id}_1" / "payload_ended"
        wait_for(ended.exists, "the payload keeper to note the end", timeout=30)
        os.kill(pilot.pid, signal.SIGKILL)
        pilot.wait(10)

        started.start(name="abrupt")  # its successor on the same workdir
        final = wait_status(client, job_id, FINAL, 60)
        assert (final.status, final.attempt) == ("Done", 1)
        assert [e.status for e in client.history(job_id)].count("Running") == 1


def test_a_job_whose_start_the_exec_helper_died_under_is_handed_back_not_failed(
    central: ServiceProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression (CI, Slurm e2e): scancel signals every process of the pilot's batch job, the
    exec helper too; one that died as the pilot started a payload failed the user's job
    ("Cannot start /bin/sleep: the exec helper died"). The pilot's failure is not the job's:
    the job is handed back (Rescheduled) to run elsewhere."""
    helper = spawner.Spawner()
    os.kill(helper.pid, signal.SIGKILL)
    wait_for(lambda: not helper.alive, "the pilot to see its exec helper gone")
    monkeypatch.setattr(spawner, "shared", lambda: helper)
    config = PilotConfig(
        server=central.endpoint,
        site="Site.Test",
        workdir=tmp_path,
        max_jobs=1,
        heartbeat_interval=0.5,
        request_interval=0.5,
        pilot_id="p-helper-lost",
    )
    with Client(central.endpoint, FAST_RETRIES) as client:
        [job_id] = client.submit(['Executable = "/bin/true";'], "alice")
        try:
            assert Pilot(config, FAST_RETRIES).run() == 0
        finally:
            helper.close()
        history = client.history(job_id)
    statuses = [entry.status for entry in history]
    assert "Failed" not in statuses, statuses
    [handed_back] = [entry for entry in history if entry.status == "Rescheduled"]
    assert "exec helper lost, job handed back" in handed_back.minor_status


def test_an_exec_helper_signalled_before_its_python_is_up_keeps_serving(tmp_path: Path) -> None:
    """The helper starts with the stop signals blocked: a SIGTERM sent at once (scancel) is
    dropped when it ignores them, instead of killing it during its start-up."""
    helper = spawner.Spawner()
    try:
        os.kill(helper.pid, signal.SIGTERM)
        os.kill(helper.pid, signal.SIGINT)
        ended: list[int] = []
        with open(tmp_path / "out", "wb") as out, open(os.devnull, "rb") as null:
            helper.spawn(
                ["sh", "-c", "exit 3"],
                tmp_path,
                dict(os.environ),
                (null.fileno(), out.fileno(), out.fileno()),
                lambda status, cpu: ended.append(status),
            )
        [status] = wait_for(lambda: ended, "the payload's end")
        assert os.waitstatus_to_exitcode(status) == 3
        assert helper.alive
    finally:
        helper.close()
