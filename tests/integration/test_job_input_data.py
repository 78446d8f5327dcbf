"""Jobs that read and write grid files: a real pilot downloads a job's InputData (checksum
checked) before the payload starts, or gives it the URLs (InputDataPolicy = protocol); a job whose
input cannot be had fails before it runs, naming the file. OutputData goes to its OutputSE and is
registered as the job owner's; with the OutputSE down, to a failover SE plus a transfer request."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from test_pilot import (
    FAST_RETRIES,
    FINAL,
    SHORT_TIMEOUTS,
    Pilots,
    payloads_of,
    wait_for,
    wait_status,
)

from dirac_like.client import Client
from dirac_like.data_manager import DataManager
from dirac_like.errors import StorageFull
from dirac_like.processes import ServiceProcess, free_port
from dirac_like.protocol import ListTransfersArgs, Op

LFN = "/vo/user/tests/jobs/input.dat"


@pytest.fixture
def grid(
    start_central: Callable[..., ServiceProcess], tmp_path: Path
) -> Iterator[tuple[Client, Pilots, Path]]:
    disk = tmp_path / "site-disk"
    service = start_central(
        config_text=SHORT_TIMEOUTS
        + f"""
[storage.TEST-DISK]
site = "Site.Test"
base_path = "{disk}"
[storage.FAILOVER-DISK]
base_path = "{tmp_path / "failover"}"
tags = ["failover"]
[storage.SMALL-DISK]
base_path = "{tmp_path / "small"}"
total_space = 100
[storage.DOWN-SE]
protocol = "xroot"
endpoint = "root://127.0.0.1:{free_port()}"
base_path = "/grid"
"""
    )
    pilots = Pilots(service.endpoint, tmp_path / "pilots")
    try:
        with Client(service.endpoint, FAST_RETRIES) as client:
            local = tmp_path / "input.dat"
            local.write_bytes(b"grid data\n" * 1000)
            DataManager(client).put(local, LFN, "TEST-DISK")
            yield client, pilots, disk
    finally:
        pilots.stop_all()


def test_the_pilot_downloads_input_data_before_the_payload_runs(
    grid: tuple[Client, Pilots, Path],
) -> None:
    client, pilots, _ = grid
    reads, urls = client.submit(
        [
            f'Executable = "/bin/sh"; Arguments = "-c \'test $(wc -c < input.dat) = 10000\'"; '
            f'InputData = {{"LFN:{LFN}"}};',
            f'Executable = "/bin/sh"; Arguments = "-c \'grep -q file:// input-data-urls.txt && '
            f'test ! -e input.dat\'"; InputData = {{"{LFN}"}}; InputDataPolicy = "protocol";',
        ],
        "alice",
    )
    pilots.start("--idle-timeout", "3")
    assert wait_status(client, reads, FINAL, 30).status == "Done"
    assert wait_status(client, urls, FINAL, 30).status == "Done"


def test_a_corrupted_only_replica_fails_the_job_before_it_runs(
    grid: tuple[Client, Pilots, Path],
) -> None:
    client, pilots, disk = grid
    (disk / LFN.lstrip("/")).write_bytes(b"tampered\n")
    (job_id,) = client.submit([f'Executable = "/bin/true"; InputData = {{"{LFN}"}};'], "alice")
    pilots.start("--idle-timeout", "3")
    failed = wait_status(client, job_id, FINAL, 30)
    assert failed.status == "Failed"
    assert failed.minor_status.startswith("Input data:") and "adler32" in failed.minor_status


def test_output_data_is_uploaded_and_registered_as_the_job_owners(
    grid: tuple[Client, Pilots, Path],
) -> None:
    client, pilots, disk = grid
    lfn = "/vo/user/alice/results/out.dat"
    (job_id,) = client.submit(
        [
            f'Executable = "/bin/sh"; Arguments = "-c \'echo result > out.dat\'"; '
            f'OutputData = {{"LFN:{lfn}"}}; OutputSE = "TEST-DISK";'
        ],
        "alice",
    )
    pilots.start("--idle-timeout", "3")
    assert wait_status(client, job_id, FINAL, 30).status == "Done"
    row = DataManager(client).stat(lfn)
    assert row.owner == "alice" and [r.se for r in row.replicas] == ["TEST-DISK"]
    assert (disk / lfn.lstrip("/")).read_text() == "result\n"


def test_output_data_goes_to_a_failover_se_with_a_transfer_when_the_output_se_is_down(
    grid: tuple[Client, Pilots, Path],
) -> None:
    client, pilots, _ = grid
    lfn = "/vo/user/alice/results/failover.dat"
    (job_id,) = client.submit(
        [
            f'Executable = "/bin/sh"; Arguments = "-c \'echo saved > failover.dat\'"; '
            f'OutputData = {{"LFN:{lfn}"}}; OutputSE = "DOWN-SE";'
        ],
        "alice",
    )
    pilots.start("--idle-timeout", "3")
    ended = wait_status(client, job_id, FINAL, 30)
    assert ended.status == "Done", ended.minor_status
    assert [r.se for r in DataManager(client).stat(lfn).replicas] == ["FAILOVER-DISK"]
    (transfer,) = client.call(Op.TRANSFERS, ListTransfersArgs())
    assert (transfer.lfn, transfer.destination, transfer.status) == (lfn, "DOWN-SE", "Waiting")


def test_defect_a_a_successor_pilot_uploads_the_output_data_of_a_job_its_predecessor_ended(
    start_central: Callable[..., ServiceProcess], tmp_path: Path
) -> None:
    """The pilot dies after the payload ended, before it uploaded the OutputData: the pilot
    that takes over its folder uploads and registers it before it reports the job Done."""
    disk = tmp_path / "site-disk"
    # the default (long) stalled timeout: the job must not stall while its pilot is stopped
    service = start_central(config_text=f'[storage.TEST-DISK]\nbase_path = "{disk}"\n')
    pilots = Pilots(service.endpoint, tmp_path / "pilots")
    lfn = "/vo/user/alice/results/orphan.dat"
    try:
        with Client(service.endpoint, FAST_RETRIES) as client:
            (job_id,) = client.submit(
                [
                    'Executable = "/bin/sh"; Arguments = "-c \'sleep 1; echo kept > orphan.dat\'"; '
                    f'OutputData = {{"LFN:{lfn}"}}; OutputSE = "TEST-DISK";'
                ],
                "alice",
            )
            pilot, workdir = pilots.start(name="abrupt")
            wait_status(client, job_id, ("Running",), 30)
            wait_for(lambda: payloads_of("abrupt", job_id), "the payload to start", timeout=30)
            os.kill(pilot.pid, signal.SIGSTOP)  # it can neither upload nor report now
            ended = workdir / f"job_{job_id}_1" / "payload_ended"
            wait_for(ended.exists, "the payload keeper to note the end", timeout=30)
            os.kill(pilot.pid, signal.SIGKILL)
            pilot.wait(10)
            assert not DataManager(client).files([lfn]).files  # nothing went up before the kill

            pilots.start("--idle-timeout", "3", name="abrupt")  # its successor, same folder
            final = wait_status(client, job_id, FINAL, 60)
            assert final.status == "Done", final.minor_status
            row = DataManager(client).stat(lfn)
            assert row.owner == "alice" and [r.se for r in row.replicas] == ["TEST-DISK"]
            assert (disk / lfn.lstrip("/")).read_text() == "kept\n"
    finally:
        pilots.stop_all()


def test_a_full_se_refuses_a_put_and_a_jobs_output_data_goes_to_the_failover_se(
    grid: tuple[Client, Pilots, Path], tmp_path: Path
) -> None:
    client, pilots, _ = grid
    local = tmp_path / "big.dat"
    local.write_bytes(b"x" * 1000)
    with pytest.raises(StorageFull, match="SE SMALL-DISK is full: 0 of 100 bytes used"):
        DataManager(client).put(local, "/vo/user/alice/big.dat", "SMALL-DISK")
    assert not (tmp_path / "small").exists()  # refused before any byte was written
    lfn = "/vo/user/alice/results/big.dat"
    (job_id,) = client.submit(
        [
            'Executable = "/bin/sh"; Arguments = "-c \'head -c 1000 /dev/zero > big.dat\'"; '
            f'OutputData = {{"LFN:{lfn}"}}; OutputSE = "SMALL-DISK";'
        ],
        "alice",
    )
    pilots.start("--idle-timeout", "3")
    assert wait_status(client, job_id, FINAL, 30).status == "Done"
    assert [r.se for r in DataManager(client).stat(lfn).replicas] == ["FAILOVER-DISK"]
