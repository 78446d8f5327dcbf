"""One request per pilot turn (``pilot_turn``, issue 15), over the real wire: a real central
service and a real pilot on loopback. Every job matched, Running in its history (once), final;
nothing lost when the service restarts between turns or a turn's reply is lost and the turn is
sent again; an old pilot (request_jobs / update_statuses, or one by one) served by this service;
this pilot served by a service without pilot_turn (it answers unknown_op)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from test_pilot import FAST_RETRIES, Pilots, wait_for, wait_status

from dirac_like import protocol
from dirac_like.agents.pilot import Pilot, PilotConfig
from dirac_like.client import Client
from dirac_like.config import Config
from dirac_like.processes import ServiceProcess, free_port
from dirac_like.protocol import Op, PilotResources, PilotTurnArgs, UpdateStatusArgs
from dirac_like.services.central import CentralService
from dirac_like.services.handlers import RUNNING_AT_MATCH

FINAL = ("Done", "Failed", "Killed")
TRUE = 'Executable = "/bin/true";'
SITE = "Site.Test"


def in_process_pilot(server: str, workdir: Path, insecure: bool = False) -> Pilot:
    config = PilotConfig(
        server=server,
        site=SITE,
        cores=2,
        workdir=workdir,
        idle_timeout=1.0,
        heartbeat_interval=5.0,
        request_interval=0.2,
        first_request_interval=0.1,
        pilot_id="turner",
        insecure=insecure,
    )
    return Pilot(config, FAST_RETRIES)


def spy_ops(pilot: Pilot) -> list[str]:
    """The ops the pilot's client sends (called and posted), in order."""
    sent: list[str] = []
    client = pilot.client
    call, post = client.call, client.post

    def spied_call(op: str, args: Any, timeout: float | None = None, request_id: str = "") -> Any:
        sent.append(op if op != Op.UPDATE_STATUSES else f"{op}:{_statuses(args)}")
        return call(op, args, timeout, request_id)

    def spied_post(op: str, args: Any, request_id: str) -> bool:
        sent.append(op if op != Op.UPDATE_STATUSES else f"{op}:{_statuses(args)}")
        return post(op, args, request_id)

    client.call, client.post = spied_call, spied_post  # type: ignore[method-assign]
    return sent


def _statuses(args: Any) -> str:
    return ",".join(sorted({report.status for report in args.reports}))


def assert_ran_once_each(client: Client, job_ids: list[int]) -> None:
    """Each job Done at its first attempt, Running once in its history (as the turn said)."""
    for job_id in job_ids:
        final = wait_status(client, job_id, FINAL, 60)
        assert (final.status, final.attempt) == ("Done", 1)
        history = client.history(job_id)
        running = [entry for entry in history if entry.status == "Running"]
        assert len(running) == 1, [entry.status for entry in history]
        assert "Rescheduled" not in [entry.status for entry in history]


def test_a_pilot_runs_every_job_with_one_request_per_turn(
    central: ServiceProcess, client: Client, tmp_path: Path
) -> None:
    job_ids = client.submit([TRUE] * 6, "alice")
    pilot = in_process_pilot(central.endpoint, tmp_path / "pilot")
    sent = spy_ops(pilot)
    assert pilot.run() == 0
    assert_ran_once_each(client, job_ids)
    assert all(
        entry.minor_status == RUNNING_AT_MATCH
        for job_id in job_ids
        for entry in client.history(job_id)
        if entry.status == "Running"
    )
    assert Op.PILOT_TURN in sent
    apart = [op for op in sent if op.startswith((Op.REQUEST_JOB, Op.UPDATE_STATUS))]
    assert not any("Running" in op or op.startswith(Op.REQUEST_JOB) for op in apart), sent
    # the final reports go with the next request; posted apart only when none is due
    assert sent.count(f"{Op.UPDATE_STATUSES}:Done") < len(job_ids) // 2, sent


@pytest.mark.parametrize("batches", [True, False], ids=["request_jobs", "one-by-one"])
def test_an_old_pilot_runs_every_job_against_this_service(
    central: ServiceProcess, client: Client, tmp_path: Path, batches: bool
) -> None:
    job_ids = client.submit([TRUE] * 4, "alice")
    pilot = in_process_pilot(central.endpoint, tmp_path / "pilot")
    pilot.reports.turns = False  # a pilot older than pilot_turn
    pilot.reports.batches = batches  # False: older than request_jobs / update_statuses too
    sent = spy_ops(pilot)
    assert pilot.run() == 0
    assert_ran_once_each(client, job_ids)
    assert Op.PILOT_TURN not in sent
    assert (Op.REQUEST_JOBS if batches else Op.REQUEST_JOB) in sent


@pytest.fixture
def older_service(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A service of the release before pilot_turn, in this process: it answers unknown_op."""
    monkeypatch.delitem(protocol.ARGUMENTS, Op.PILOT_TURN)  # how the service knows an op
    service = CentralService(Config(), tmp_path / "old-home", insecure=True)
    endpoint = service.bind("tcp://127.0.0.1:*")
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            service.loop()

    server = threading.Thread(target=serve, name="older-service")
    server.start()
    try:
        yield endpoint
    finally:
        stop.set()
        server.join(30)
        service.close()


def test_this_pilot_falls_back_with_a_service_that_has_no_pilot_turn(
    older_service: str, tmp_path: Path
) -> None:
    with Client(older_service, FAST_RETRIES, insecure=True) as client:
        job_ids = client.submit([TRUE] * 4, "alice")
        pilot = in_process_pilot(older_service, tmp_path / "pilot", insecure=True)
        sent = spy_ops(pilot)
        assert pilot.run() == 0
        assert_ran_once_each(client, job_ids)
    assert sent.count(Op.PILOT_TURN) == 1 and not pilot.reports.turns  # tried once
    assert sent.index(Op.PILOT_TURN) < sent.index(Op.REQUEST_JOBS)


def turn_args(count: int, reports: list[UpdateStatusArgs] | None = None) -> PilotTurnArgs:
    resources = PilotResources(site=SITE, cores=2, total_cores=2)
    return PilotTurnArgs("p-restart", reports or [], resources, count, revision=1)


def test_a_turn_sent_again_after_a_lost_reply_and_a_restart_gets_the_same_answer(
    start_central: Callable[..., ServiceProcess], tmp_path: Path
) -> None:
    listen = f"tcp://127.0.0.1:{free_port()}"
    service = start_central(home=tmp_path / "home", listen=listen)
    with Client(service.endpoint, FAST_RETRIES) as client:
        job_ids = client.submit([TRUE] * 3, "alice")
        first = client.pilot_turn(turn_args(2), "turn-1")
        assert client.pilot_turn(turn_args(2), "turn-1") == first  # the reply was lost
    matched = [job.job_id for job in first.jobs]
    assert len(matched) == 2
    service.stop()
    service = start_central(home=tmp_path / "home", listen=listen)
    with Client(service.endpoint, FAST_RETRIES) as client:
        assert client.pilot_turn(turn_args(2), "turn-1").jobs == first.jobs  # stored with it
        assert [row.status for row in client.status(job_ids)] == ["Running", "Running", "Waiting"]
        ended = [
            UpdateStatusArgs(job.job_id, job.attempt, "p-restart", "Done") for job in first.jobs
        ]
        second = client.pilot_turn(turn_args(2, ended), "turn-2")
        assert [outcome.error for outcome in second.outcomes] == [None, None]
        assert [job.job_id for job in second.jobs] == [job_ids[2]]
    service.stop()
    service = start_central(home=tmp_path / "home", listen=listen)
    with Client(service.endpoint, FAST_RETRIES) as client:
        assert client.pilot_turn(turn_args(2, ended), "turn-2") == second
        for job_id in matched:
            statuses = [entry.status for entry in client.history(job_id)]
            assert statuses.count("Running") == 1 and statuses.count("Done") == 1, statuses


def test_a_real_pilot_loses_nothing_when_the_service_restarts_between_turns(
    start_central: Callable[..., ServiceProcess], tmp_path: Path
) -> None:
    listen = f"tcp://127.0.0.1:{free_port()}"
    service = start_central(home=tmp_path / "home", listen=listen)
    pilots = Pilots(service.endpoint, tmp_path / "pilots")
    try:
        with Client(service.endpoint, FAST_RETRIES) as client:
            job_ids = client.submit(['Executable = "/bin/sleep"; Arguments = "0.3";'] * 8, "alice")
            pilots.start("--cores", "2", "--idle-timeout", "3", name="restarted")
            wait_for(
                lambda: any(row.status == "Done" for row in client.status(job_ids)),
                "a first job Done",
            )
        service.stop()
        service = start_central(home=tmp_path / "home", listen=listen)
        with Client(service.endpoint, FAST_RETRIES) as client:
            assert_ran_once_each(client, job_ids)
    finally:
        pilots.stop_all()
