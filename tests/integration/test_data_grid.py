"""Data management against a real central service and real XRootD SEs: put, get, replicate
through the transfer agent (third-party and streamed), faults (corrupted replica, a source that
is gone, an SE that is down, a file left half-written at the destination)."""

from __future__ import annotations

import os
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
from xrootd_ses import XrootdSEs, storage_config

from dirac_like.accounting import ReportQuery, TransferAccountingRecord
from dirac_like.agents.transfer import TransferAgent, TransferAgentConfig
from dirac_like.checksums import adler32_of_file
from dirac_like.client import Client
from dirac_like.data_manager import DataManager
from dirac_like.errors import Forbidden, InvalidArgument, LfnNotFound, StorageUnavailable
from dirac_like.processes import ServiceProcess
from dirac_like.protocol import (
    ListTransfersArgs,
    Op,
    RemoveArgs,
    RuleAddArgs,
    RuleIdArgs,
    SEStatusArgs,
    TransferView,
)
from dirac_like.services.accounting_store import AccountingReader
from dirac_like.storage_access import StorageAccess
from dirac_like.testing import FAST_RETRIES, wait_for


@dataclass
class Grid:
    client: Client
    data: DataManager
    agent: TransferAgent
    ses: XrootdSEs
    folder: str  # this test's LFN folder (the SEs live for the whole session)
    local: Path
    file_se: Path  # the FILE-C SE's folder

    def lfn(self, name: str) -> str:
        return f"{self.folder}/{name}"

    def local_file(self, name: str, size: int) -> Path:
        path = self.local / name
        path.write_bytes(os.urandom(size))
        return path

    def replicas(self, lfn: str) -> dict[str, str]:
        return {r.se: r.status for r in self.data.stat(lfn).replicas}

    def transfer(self, transfer_id: int) -> TransferView:
        (view,) = self.client.call(Op.TRANSFERS, ListTransfersArgs(transfer_ids=[transfer_id]))
        return view  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def service(
    xrootd_ses: XrootdSEs, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ServiceProcess, Path]]:
    """One central service for the module (each test works in its own LFN folder)."""
    folder = tmp_path_factory.mktemp("data-grid")
    config = folder / "central.toml"
    config.write_text(storage_config(xrootd_ses, folder / "file-se"))
    started = ServiceProcess.start_central(folder / "home", config)
    try:
        yield started, folder / "file-se"
    finally:
        started.stop()


@pytest.fixture
def grid(
    service: tuple[ServiceProcess, Path],
    xrootd_ses: XrootdSEs,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> Iterator[Grid]:
    central, file_se = service
    local = tmp_path / "local"
    local.mkdir()
    with Client(central.endpoint, FAST_RETRIES, identity=central.identity) as client:
        data = DataManager(client, site="SITE-A", chunk_bytes=256 * 1024)
        agent = TransferAgent(client, TransferAgentConfig("agent-1"), DataManager(client))
        yield Grid(
            client, data, agent, xrootd_ses, f"/vo/user/tests/{request.node.name}", local, file_se
        )
        _drain_transfers(client)


def transfer_records(central: ServiceProcess, transfer_id: int) -> list[TransferAccountingRecord]:
    """The accounting records of one transfer, read from the service's store (read-only)."""
    with AccountingReader(central.home / "jobs.sqlite") as reader:
        return [r for r in reader.transfers(limit=100_000) if r.transfer_id == transfer_id]


def _drain_transfers(client: Client) -> None:
    """Fail what a test left waiting, so that the next test's agent does not take it."""
    for view in client.call(Op.TRANSFERS, ListTransfersArgs(status="Waiting")):
        client.call(Op.CATALOG_REMOVE, RemoveArgs([view.lfn]))


# -- put, get, ls ----------------------------------------------------------------------------


def test_put_then_get_a_file_through_real_xrootd(grid: Grid, tmp_path: Path) -> None:
    local = grid.local_file("in.dat", 1_500_000)
    put = grid.data.put(local, grid.lfn("in.dat"), "XRD-A")
    assert (put.size, put.adler32) == (1_500_000, adler32_of_file(local))
    stored = grid.ses.data("XRD-A") / "grid" / grid.lfn("in.dat").lstrip("/")
    assert stored.read_bytes() == local.read_bytes()
    got = grid.data.get(grid.lfn("in.dat"), tmp_path / "out")
    assert got.path is not None and got.path.read_bytes() == local.read_bytes()
    listing = grid.data.listing(grid.folder)
    assert [row.lfn for row in listing.files] == [grid.lfn("in.dat")]


def test_putting_an_lfn_already_in_the_catalog_is_refused(grid: Grid) -> None:
    local = grid.local_file("f", 10)
    grid.data.put(local, grid.lfn("f"), "XRD-A")
    with pytest.raises(InvalidArgument, match="already in the catalog"):
        grid.data.put(local, grid.lfn("f"), "XRD-B")
    assert grid.replicas(grid.lfn("f")) == {"XRD-A": "Good"}


def test_get_of_an_unknown_lfn_is_a_clear_error(grid: Grid, tmp_path: Path) -> None:
    with pytest.raises(LfnNotFound, match="ghost"):
        grid.data.get(grid.lfn("ghost"), tmp_path)


def test_put_to_a_banned_se_is_refused_and_nothing_is_written(grid: Grid) -> None:
    grid.client.call(Op.SE_SET_STATUS, SEStatusArgs("XRD-B", "Banned", "maintenance"))
    data = DataManager(grid.client)
    with pytest.raises(StorageUnavailable, match="Banned"):
        data.put(grid.local_file("f", 10), grid.lfn("f"), "XRD-B")
    assert not (grid.ses.data("XRD-B") / "grid" / grid.lfn("f").lstrip("/")).exists()
    grid.client.call(Op.SE_SET_STATUS, SEStatusArgs("XRD-B", "Active"))


# -- faults on read --------------------------------------------------------------------------


def test_a_corrupted_replica_is_marked_bad_and_another_is_read(grid: Grid, tmp_path: Path) -> None:
    local = grid.local_file("c.dat", 200_000)
    lfn = grid.lfn("c.dat")
    grid.data.put(local, lfn, "XRD-A")
    (transfer_id,) = grid.data.replicate([lfn], "XRD-B")
    assert grid.agent.run_once() == 1
    # corrupt the copy the reader prefers (its own site's, XRD-A)
    stored = grid.ses.data("XRD-A") / "grid" / lfn.lstrip("/")
    data = bytearray(stored.read_bytes())
    data[1000] ^= 0xFF
    stored.write_bytes(bytes(data))
    got = grid.data.get(lfn, tmp_path / "out")
    assert got.se == "XRD-B" and got.path is not None
    assert got.path.read_bytes() == local.read_bytes()
    assert grid.replicas(lfn) == {"XRD-A": "Bad", "XRD-B": "Good"}
    assert grid.transfer(transfer_id).status == "Done"


def test_defect_c_a_replica_a_user_finds_corrupted_is_marked_bad_and_made_again_by_its_rule(
    grid: Grid, service: tuple[ServiceProcess, Path], tmp_path: Path
) -> None:
    local = grid.local_file("r.dat", 300_000)
    lfn = grid.lfn("r.dat")
    grid.data.put(local, lfn, "XRD-A")
    grid.data.replicate([lfn], "XRD-B")
    assert grid.agent.run_once() == 1
    rule = grid.client.call(Op.RULE_ADD, RuleAddArgs(grid.folder, 2, ["disk"]))
    try:
        stored = grid.ses.data("XRD-A") / "grid" / lfn.lstrip("/")
        grid.ses.plant(stored, b"bit rot" + stored.read_bytes()[7:])  # same size
        reader = grid.client.identity_add(f"reader{os.getpid()}", "user", ["physics"])
        with Client(service[0].endpoint, FAST_RETRIES, identity=reader) as client:
            got = DataManager(client, site="SITE-A").get(lfn, tmp_path / "out")
        assert got.se == "XRD-B" and got.path is not None
        assert got.path.read_bytes() == local.read_bytes()
        assert grid.replicas(lfn) == {"XRD-A": "Bad", "XRD-B": "Good"}

        def remade() -> bool:  # the rule's next pass (within seconds) asks for a new copy
            grid.agent.run_once()
            return grid.replicas(lfn) == {"XRD-A": "Good", "XRD-B": "Good"}

        wait_for(remade, "the rule to make the bad replica again", timeout=30, interval=0.5)
        assert stored.read_bytes() == local.read_bytes()
    finally:
        grid.client.call(Op.RULE_REMOVE, RuleIdArgs(rule.rule_id))


# -- the transfer agent ----------------------------------------------------------------------


def test_replication_between_xrootd_ses_is_third_party_and_registered_once(
    grid: Grid, service: tuple[ServiceProcess, Path]
) -> None:
    local = grid.local_file("t.dat", 3_000_000)
    lfn = grid.lfn("t.dat")
    grid.data.put(local, lfn, "XRD-A")
    (transfer_id,) = grid.data.replicate([lfn], "XRD-B")
    assert grid.agent.run_once() == 1
    assert grid.transfer(transfer_id).status == "Done"
    assert grid.replicas(lfn) == {"XRD-A": "Good", "XRD-B": "Good"}
    stored = grid.ses.data("XRD-B") / "grid" / lfn.lstrip("/")
    assert stored.read_bytes() == local.read_bytes()
    assert grid.agent.run_once() == 0  # nothing left, nothing done twice
    # accounted once, with the final state, and counted by the agent and the service
    [record] = transfer_records(service[0], transfer_id)
    assert (record.status, record.link, record.bytes) == ("Done", "XRD-A -> XRD-B", 3_000_000)
    query = ReportQuery.make("transfer-bytes", "link", 86400.0, 3600.0, time.time())
    with AccountingReader(service[0].home / "jobs.sqlite") as accounting:
        assert accounting.report(query).totals["XRD-A -> XRD-B"] >= 3_000_000
    assert record.ended >= record.started > 0 and record.attempts == 1
    agent_bytes = grid.agent.metrics.bytes.labels("agent-1", "XRD-A -> XRD-B")._value.get()
    assert agent_bytes >= 3_000_000
    assert (
        "dirac_like_transfer_bytes_total"
        in urllib.request.urlopen(service[0].metrics_url, timeout=10).read().decode()
    )


def test_replication_to_a_file_se_is_streamed_and_checked(grid: Grid, tmp_path: Path) -> None:
    local = grid.local_file("s.dat", 700_000)
    lfn = grid.lfn("s.dat")
    grid.data.put(local, lfn, "XRD-A")
    (transfer_id,) = grid.data.replicate([lfn], "FILE-C")
    assert grid.agent.run_once() == 1
    assert grid.transfer(transfer_id).status == "Done"
    copy = grid.file_se / lfn.lstrip("/")
    assert copy.read_bytes() == local.read_bytes()


def test_a_source_that_disappeared_is_retried_from_another_replica(grid: Grid) -> None:
    lfn = grid.lfn("gone.dat")
    local = grid.local_file("gone.dat", 100_000)
    grid.data.put(local, lfn, "XRD-A")
    grid.data.replicate([lfn], "XRD-B")
    grid.agent.run_once()
    (stored_a := grid.ses.data("XRD-A") / "grid" / lfn.lstrip("/")).unlink()
    assert not stored_a.exists()
    (transfer_id,) = grid.data.replicate([lfn], "FILE-C")
    # the first attempt may pick either source; the one on XRD-A is gone
    for _ in range(2):
        grid.agent.run_once()
        if grid.transfer(transfer_id).status == "Done":
            break
    view = grid.transfer(transfer_id)
    assert view.status == "Done" and view.source == "XRD-B"


class ShrinkingSource:
    """A real SE's access whose file is cut short on the SE's disk once the first chunk of the
    first read went through: a source that disappears mid-transfer."""

    def __init__(self, real: StorageAccess, path: Path, cut: list[str]) -> None:
        self.real, self.path, self.cut = real, path, cut

    def read(self, lfn: str, chunk_bytes: int = 0) -> Iterator[bytes]:
        chunks = self.real.read(lfn, 64 * 1024)
        yield next(chunks)
        if not self.cut:
            self.cut.append(self.real.name)
            os.truncate(self.path, 100_000)
        yield from chunks

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


def test_a_source_that_disappears_mid_transfer_is_not_registered_and_retried_elsewhere(
    grid: Grid, monkeypatch: pytest.MonkeyPatch
) -> None:
    lfn = grid.lfn("shrinks.dat")
    local = grid.local_file("shrinks.dat", 1_000_000)
    grid.data.put(local, lfn, "XRD-A")
    grid.data.replicate([lfn], "FILE-C")
    assert grid.agent.run_once() == 1
    paths = {
        "XRD-A": grid.ses.data("XRD-A") / "grid" / lfn.lstrip("/"),
        "FILE-C": grid.file_se / lfn.lstrip("/"),
    }
    cut: list[str] = []
    access = grid.agent.data.access
    monkeypatch.setattr(
        grid.agent.data,
        "access",
        lambda se: ShrinkingSource(access(se), paths[se], cut) if se in paths else access(se),
    )
    (transfer_id,) = grid.data.replicate([lfn], "XRD-B")
    grid.agent.run_once()
    first = grid.transfer(transfer_id)
    assert first.status == "Waiting" and "the catalog says" in first.reason, first.reason
    assert grid.replicas(lfn).get("XRD-B") is None  # the short copy was not registered
    assert not (grid.ses.data("XRD-B") / "grid" / lfn.lstrip("/")).exists()  # and deleted
    grid.agent.run_once()
    done = grid.transfer(transfer_id)
    assert done.status == "Done" and done.source != cut[0]
    assert (grid.ses.data("XRD-B") / "grid" / lfn.lstrip("/")).read_bytes() == local.read_bytes()


def test_a_half_written_file_at_the_destination_is_replaced_not_registered(grid: Grid) -> None:
    lfn = grid.lfn("half.dat")
    local = grid.local_file("half.dat", 500_000)
    grid.data.put(local, lfn, "XRD-A")
    target = grid.ses.data("XRD-B") / "grid" / lfn.lstrip("/")
    grid.ses.plant(target, local.read_bytes()[:1234])  # what a killed writer could leave
    (transfer_id,) = grid.data.replicate([lfn], "XRD-B")
    grid.agent.run_once()
    assert grid.transfer(transfer_id).status == "Done"
    assert target.read_bytes() == local.read_bytes()


def test_a_transfer_from_an_se_that_is_down_fails_with_its_reason_and_it_is_used_once_back(
    grid: Grid, service: tuple[ServiceProcess, Path]
) -> None:
    lfn = grid.lfn("down.dat")
    grid.data.put(grid.local_file("down.dat", 1000), lfn, "XRD-A")
    (transfer_id,) = grid.data.replicate([lfn], "FILE-C")
    port = urlparse(grid.ses.urls["XRD-A"]).port
    grid.ses.stop("XRD-A")
    try:
        for _ in range(3):
            grid.agent.run_once()
        view = grid.transfer(transfer_id)
        assert view.status == "Failed" and "does not answer" in view.reason
        assert grid.replicas(lfn) == {"XRD-A": "Good"}
        [record] = transfer_records(service[0], transfer_id)
        assert (record.status, record.bytes, record.attempts) == ("Failed", 0, 3)
        assert "does not answer" in record.reason
    finally:
        grid.ses.start(f"XRD-A:{port}")  # where the service's configuration says it is
    # the same process reaches it again at once (the XRootD client would refuse it for 30 min)
    (again,) = grid.data.replicate([lfn], "FILE-C")
    grid.agent.run_once()
    assert grid.transfer(again).status == "Done"


# -- users ----------------------------------------------------------------------------------


def test_a_user_cannot_remove_or_overwrite_another_users_file(
    grid: Grid, service: tuple[ServiceProcess, Path]
) -> None:
    lfn = "/vo/user/bob/precious.dat"
    local = grid.local_file("precious.dat", 1000)
    grid.data.put(local, lfn, "XRD-A")
    mallory = grid.client.identity_add(f"mallory{os.getpid()}", "user", ["physics"])
    with Client(service[0].endpoint, FAST_RETRIES, identity=mallory) as client:
        data = DataManager(client)
        with pytest.raises(Forbidden, match="users write only under"):
            data.remove([lfn])
        with pytest.raises(InvalidArgument, match="already in the catalog"):
            data.put(grid.local_file("evil", 10), lfn, "XRD-B")
        with pytest.raises(Forbidden):
            data.put(grid.local_file("evil", 10), "/vo/user/bob/new.dat", "XRD-B")
    stored = grid.ses.data("XRD-A") / "grid" / lfn.lstrip("/")
    assert stored.read_bytes() == local.read_bytes()
    assert grid.replicas(lfn) == {"XRD-A": "Good"}
    assert not (grid.ses.data("XRD-B") / "grid" / "vo/user/bob/new.dat").exists()
    grid.data.remove([lfn])


def test_a_copy_from_a_corrupted_source_is_deleted_and_never_registered(grid: Grid) -> None:
    lfn = grid.lfn("rotten.dat")
    grid.data.put(grid.local_file("rotten.dat", 50_000), lfn, "XRD-A")
    stored = grid.ses.data("XRD-A") / "grid" / lfn.lstrip("/")
    grid.ses.plant(stored, b"bit rot" + stored.read_bytes()[7:])  # same size, other adler32
    (transfer_id,) = grid.data.replicate([lfn], "FILE-C")
    grid.agent.run_once()
    view = grid.transfer(transfer_id)
    assert view.status == "Waiting" and "the catalog says" in view.reason
    assert grid.replicas(lfn) == {"XRD-A": "Good"}
    assert not (grid.file_se / lfn.lstrip("/")).exists()  # the bad copy was deleted
