"""Small outputs inlined in the final report (issue 15), with a real service and real pilots:
`/bin/echo hello` gets its output sandbox with no upload request made (counted by the service's
/metrics), a service that takes none inline gets it uploaded as before, and a report with its
inlined output survives a service outage and its pilot's crash, sent again from the outbox."""

from __future__ import annotations

import base64
import os
import signal
from collections.abc import Callable
from pathlib import Path

import pytest
from test_metrics import sample, scrape
from test_pilot import FAST_RETRIES, Pilots, wait_for, wait_status
from test_pilot_reliability import outbox_reports

from dirac_like.client import Client
from dirac_like.processes import ServiceProcess
from dirac_like.sandbox import checksum, safe_extract
from dirac_like.testing import run_cli

HELLO = 'Executable = "/bin/echo"; Arguments = "hello";'


def requests_of(service: ServiceProcess, op: str) -> float:
    """How many ``op`` requests the service served (its /metrics)."""
    return sample(scrape(service.metrics_url), "dirac_like_request_seconds_count", op=op) or 0.0


@pytest.mark.parametrize("inline_bound", [65536, 0], ids=["inlined", "service-takes-none"])
def test_echo_hello_has_its_output_and_no_upload_when_inlined(
    start_central: Callable[..., ServiceProcess],
    tmp_path: Path,
    inline_bound: int,
) -> None:
    service = start_central(config_text=f"[sandboxes]\nmax_inline_output_bytes = {inline_bound}\n")
    pilots = Pilots(service.endpoint, tmp_path / "pilots")
    try:
        with Client(service.endpoint, FAST_RETRIES) as client:
            [job_id] = client.submit([HELLO], "alice")
            pilots.start("--max-jobs", "1")
            done = wait_status(client, job_id, ("Done", "Failed"), 60)
    finally:
        pilots.stop_all()
    fetched = run_cli(
        service.endpoint, "job", "output", str(job_id), "--dir", str(tmp_path / "out"), cwd=tmp_path
    )

    assert done.status == "Done", done
    assert fetched.returncode == 0, fetched.stderr
    assert (tmp_path / "out" / str(job_id) / "std.out").read_text() == "hello\n"
    assert requests_of(service, "update_statuses") >= 1  # the final report went
    assert requests_of(service, "sandbox_upload") == (0 if inline_bound else 1)


def test_an_inlined_report_survives_a_service_outage_and_its_pilots_crash(
    start_central: Callable[..., ServiceProcess], tmp_path: Path
) -> None:
    service = start_central()  # a lease (stalled_timeout) far longer than this test
    started = Pilots(service.endpoint, tmp_path / "pilots")
    try:
        _outage_and_crash(start_central, service, started, tmp_path)
    finally:
        started.stop_all()


def _outage_and_crash(
    start_central: Callable[..., ServiceProcess],
    service: ServiceProcess,
    started: Pilots,
    tmp_path: Path,
) -> None:
    endpoint = service.endpoint
    with Client(endpoint, FAST_RETRIES) as client:
        [job_id] = client.submit(
            ['Executable = "/bin/sh"; Arguments = "-c \'sleep 1; echo inlined\'";'], "alice"
        )
        pilot, workdir = started.start(name="outage")
        wait_status(client, job_id, ("Running",), 30)
    service.kill9()  # the Done report cannot be acknowledged now

    # No upload to wait for: the report, its output inlined, goes to the outbox at once.
    kept = wait_for(
        lambda: [r for r in outbox_reports(workdir) if r.get("output_inline")],
        "the report with its inlined output in the outbox",
        timeout=30,
    )
    [report] = kept
    data = base64.b64decode(str(report["output_inline"]))
    assert report["output_sandbox"] == checksum(data) and report["status"] == "Done"
    os.kill(pilot.pid, signal.SIGKILL)  # the report is on disk only
    pilot.wait(10)

    service = start_central(home=service.home, listen=endpoint)
    started.start(name="outage")  # the same pilot id on the same workdir
    with Client(endpoint, FAST_RETRIES) as client:
        final = wait_status(client, job_id, ("Done", "Failed", "Killed"), 60)
        assert (final.status, final.attempt) == ("Done", 1)
        assert client.job_output(job_id).sha256 == checksum(data)
        fetched = client.download_sandbox(checksum(data), 1 << 20)
    safe_extract(fetched, tmp_path / "out", 1 << 20)
    assert (tmp_path / "out" / "std.out").read_text() == "inlined\n"
    assert requests_of(service, "sandbox_upload") == 0
    wait_for(lambda: not outbox_reports(workdir), "the outbox to be emptied", timeout=10)
