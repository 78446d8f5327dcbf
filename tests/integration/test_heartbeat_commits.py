"""Heartbeats over the real wire commit nothing (services/durability.py), and the lease they
renew in memory still holds across a restart: a real central service in its own process, a real
SQLite store read beside it."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

from dirac_like.client import Client, RetryPolicy
from dirac_like.processes import ServiceProcess, free_port
from dirac_like.protocol import JobUsage, PilotResources
from dirac_like.testing import wait_for

FAST = RetryPolicy(timeout=10.0, retries=2, backoff=0.05, max_backoff=0.2)
SITE = "LCG.CERN.cern"
SLEEPER = 'Executable = "/bin/sleep"; Arguments = "600";'
METRICS = {"cpu_seconds": 1.5, "rss_mb": 120.0, "wall_seconds": 2.0}


def running_job(client: Client, pilot_id: str) -> tuple[int, int]:
    """A job matched to ``pilot_id`` and reported Running: (job id, attempt)."""
    client.submit([SLEEPER], owner="alice")
    match = client.request_job(pilot_id, PilotResources(site=SITE))
    assert match.job is not None
    client.update_status(match.job.job_id, match.job.attempt, pilot_id, "Running")
    return match.job.job_id, match.job.attempt


def store_version(reader: sqlite3.Connection) -> tuple[int, int]:
    """(PRAGMA data_version, usage sample rows): the first changes when another connection
    commits."""
    version = reader.execute("PRAGMA data_version").fetchone()[0]
    samples = reader.execute("SELECT count(*) FROM usage_samples").fetchone()[0]
    return version, samples


def test_heartbeats_with_usage_samples_commit_nothing_until_a_report_does(
    start_central: Callable[..., ServiceProcess],
) -> None:
    service = start_central()
    with Client(service.endpoint, FAST) as client:
        job_id, attempt = running_job(client, "p-beat")
        reader = sqlite3.connect(service.home / "jobs.sqlite")
        try:
            before = store_version(reader)
            for second in range(1, 6):  # each would have been a commit (a usage sample kept)
                metrics = {**METRICS, "cpu_seconds": float(second)}
                assert client.heartbeat(job_id, attempt, "p-beat", metrics) == []
            assert store_version(reader) == before, "a heartbeat committed"
            usage = JobUsage(cpu_seconds=6.0, wall_seconds=7.0, peak_rss_mb=130.0)
            client.update_status(job_id, attempt, "p-beat", "Done", usage=usage)
            version, samples = store_version(reader)
            assert version != before[0]
            assert samples >= before[1] + 5  # the waiting samples went with the report's commit
        finally:
            reader.close()


def test_the_samples_waiting_are_written_at_a_clean_stop(
    start_central: Callable[..., ServiceProcess],
) -> None:
    service = start_central()
    with Client(service.endpoint, FAST) as client:
        job_id, attempt = running_job(client, "p-stop")
        for second in range(1, 4):
            client.heartbeat(job_id, attempt, "p-stop", {**METRICS, "cpu_seconds": float(second)})
    assert service.stop() == 0
    with sqlite3.connect(service.home / "jobs.sqlite") as reader:
        rows = reader.execute(
            "SELECT cpu_seconds FROM usage_samples WHERE job_id = ? ORDER BY time", (job_id,)
        ).fetchall()
    assert [row[0] for row in rows] == [1.0, 2.0, 3.0]


def test_a_silent_pilots_job_is_declared_stalled_then_rescheduled_after_a_restart(
    start_central: Callable[..., ServiceProcess], tmp_path: Path
) -> None:
    """The lease a heartbeat renews is not written: a restarted service gives the job a full
    stalled window from the restart (so no lease acknowledged before it is cut short), and the
    pilot, silent since, still loses the job by the stall rule."""
    config = "[jobs]\nstalled_timeout = 2.0\nstalled_to_reschedule = 1.0\nreschedule_holdoff = 0\n"
    listen = f"tcp://127.0.0.1:{free_port()}"
    service = start_central(config_text=config, listen=listen)
    with Client(service.endpoint, FAST) as client:
        job_id, attempt = running_job(client, "p-silent")
        client.heartbeat(job_id, attempt, "p-silent", METRICS)
        last_ack = time.time()
    service.kill9()  # a crash: nothing written at a stop
    restarted = time.time()
    service = start_central(config_text=config, home=service.home, listen=listen)
    with Client(service.endpoint, FAST) as client:
        wait_for(
            lambda: client.status([job_id])[0].status == "Waiting",
            "the silent pilot's job to be rescheduled",
            timeout=60,
        )
        history = client.history(job_id)
    statuses = [row.status for row in history]
    assert statuses[-3:] == ["Stalled", "Rescheduled", "Waiting"], statuses
    stalled = history[-3]
    # not before a full window from the restart, nor from the last heartbeat acknowledged
    assert stalled.time >= restarted + 2.0 > last_ack + 2.0
    assert history[-2].time >= stalled.time + 1.0
    assert "pilot lost" in history[-2].minor_status
