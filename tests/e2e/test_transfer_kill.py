"""The transfer agent and the central service killed with SIGKILL in the middle of a real
third-party copy between two XRootD SEs: no request is lost, no replica is registered twice or
unchecked, and the copy is finished by a later attempt."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from xrootd_ses import XrootdSEs, storage_config

from dirac_like.agents.transfer import TransferAgent, TransferAgentConfig
from dirac_like.client import Client
from dirac_like.data_manager import DataManager
from dirac_like.processes import ServiceProcess, dirac_like_argv, free_port
from dirac_like.protocol import ListTransfersArgs, Op, TransferView
from dirac_like.testing import FAST_RETRIES, wait_for

pytestmark = pytest.mark.slow


def view(client: Client, transfer_id: int) -> TransferView:
    (row,) = client.call(Op.TRANSFERS, ListTransfersArgs(transfer_ids=[transfer_id]))
    return row  # type: ignore[no-any-return]


@pytest.fixture
def start_agent() -> Iterator[Callable[[str, str], subprocess.Popen[bytes]]]:
    """``start_agent(endpoint, name)``: a ``dirac-like agent transfer`` process, killed by PID
    when the test ends."""
    started: list[subprocess.Popen[bytes]] = []

    def start(endpoint: str, name: str) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(
            dirac_like_argv(
                "agent", "transfer", "--server", endpoint, "--name", name, "--idle-interval", "0.2"
            ),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait(10)


def put_and_replicate(client: Client, folder: Path, lfn: str) -> tuple[bytes, int]:
    content = os.urandom(4_000_000)
    local = folder / "payload"
    local.write_bytes(content)
    data = DataManager(client)
    data.put(local, lfn, "XRD-A")
    (transfer_id,) = data.replicate([lfn], "XRD-B")
    return content, transfer_id


def replicas(client: Client, lfn: str) -> dict[str, str]:
    return {r.se: r.status for r in DataManager(client).stat(lfn).replicas}


def test_an_agent_killed_mid_copy_loses_nothing_and_registers_once(
    start_central: Callable[..., ServiceProcess],
    xrootd_ses: XrootdSEs,
    start_agent: Callable[[str, str], subprocess.Popen[bytes]],
    tmp_path: Path,
) -> None:
    config = storage_config(xrootd_ses, tmp_path / "c").replace("lease = 30.0", "lease = 3.0")
    service = start_central(config)
    lfn = "/vo/user/tests/kill-agent/f.dat"
    with Client(service.endpoint, FAST_RETRIES) as client:
        content, transfer_id = put_and_replicate(client, tmp_path, lfn)
        agent = start_agent(service.endpoint, "doomed")
        wait_for(lambda: view(client, transfer_id).status == "Active", "the agent copying")
        os.kill(agent.pid, signal.SIGKILL)
        assert view(client, transfer_id).status == "Active"  # killed mid-copy, not after
        assert replicas(client, lfn) == {"XRD-A": "Good"}
        wait_for(
            lambda: view(client, transfer_id).status == "Waiting", "the lease to expire", timeout=20
        )
        survivor = TransferAgent(client, TransferAgentConfig("survivor"))
        assert wait_for(lambda: survivor.run_once(), "the survivor to take the request")
        done = view(client, transfer_id)
        assert (done.status, done.attempt, done.agent) == ("Done", 2, "survivor")
        assert replicas(client, lfn) == {"XRD-A": "Good", "XRD-B": "Good"}
    copy = xrootd_ses.data("XRD-B") / "grid" / lfn.lstrip("/")
    assert copy.read_bytes() == content


def test_the_service_killed_mid_copy_loses_no_request_and_registers_once(
    start_central: Callable[..., ServiceProcess],
    xrootd_ses: XrootdSEs,
    start_agent: Callable[[str, str], subprocess.Popen[bytes]],
    tmp_path: Path,
) -> None:
    config = storage_config(xrootd_ses, tmp_path / "c")
    listen = f"tcp://127.0.0.1:{free_port()}"
    home = tmp_path / "home"
    service = start_central(config, home=home, listen=listen)
    lfn = "/vo/user/tests/kill-service/f.dat"
    with Client(service.endpoint, FAST_RETRIES) as client:
        content, transfer_id = put_and_replicate(client, tmp_path, lfn)
    start_agent(service.endpoint, "steady")
    with Client(service.endpoint, FAST_RETRIES) as client:
        wait_for(lambda: view(client, transfer_id).status == "Active", "the agent copying")
    service.kill9()
    restarted = start_central(config, home=home, listen=listen)
    with Client(restarted.endpoint, FAST_RETRIES) as client:
        wait_for(
            lambda: view(client, transfer_id).status == "Done",
            "the copy to be reported",
            timeout=60,
        )
        assert view(client, transfer_id).attempt == 1
        assert replicas(client, lfn) == {"XRD-A": "Good", "XRD-B": "Good"}
    copy = xrootd_ses.data("XRD-B") / "grid" / lfn.lstrip("/")
    assert copy.read_bytes() == content
