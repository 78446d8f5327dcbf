"""The sandbox index over real archive files and a stand-in for the store's sandbox rows."""

from __future__ import annotations

from pathlib import Path

import pytest

from dirac_like.description import parse_descriptions
from dirac_like.errors import InvalidArgument
from dirac_like.sandbox import SandboxStore
from dirac_like.services.journal import Journal
from dirac_like.services.sandbox_index import SandboxIndex


class StoredRows:
    """The store's (job, kind) -> sha256 rows."""

    def __init__(self) -> None:
        self.rows: dict[tuple[int, str], str] = {}

    def sandbox(self, job_id: int, kind: str) -> str | None:
        return self.rows.get((job_id, kind))

    def referenced_sandboxes(self) -> set[str]:
        return set(self.rows.values())


@pytest.fixture
def files(tmp_path: Path) -> SandboxStore:
    return SandboxStore(tmp_path / "sandboxes", 1 << 20)


def test_a_job_names_only_a_complete_upload(files: SandboxStore) -> None:
    index = SandboxIndex(files, StoredRows(), Journal(), 60.0)
    sha256 = files.put(b"archive")
    described = parse_descriptions({"Executable": "x", "InputSandbox": [f"SB:{sha256}", "a"]})
    assert index.input_of(described[0]) == sha256
    assert index.input_of(parse_descriptions({"Executable": "x"})[0]) == ""
    with pytest.raises(InvalidArgument, match="was not uploaded"):
        index.check("c" * 64, "input")
    with pytest.raises(InvalidArgument, match="not a sandbox checksum"):
        index.check("nope", "output")
    two = parse_descriptions({"Executable": "x", "InputSandbox": [f"SB:{sha256}"] * 2})
    with pytest.raises(InvalidArgument, match="more than one"):
        index.input_of(two[0])


def test_a_service_without_sandboxes_refuses_them() -> None:
    index = SandboxIndex(None, StoredRows(), Journal(), 60.0)
    with pytest.raises(InvalidArgument, match="keeps no sandboxes"):
        index.check("a" * 64, "input")
    assert index.collect(1e12) == []


def test_pending_rows_come_before_the_stores(files: SandboxStore) -> None:
    stored, journal = StoredRows(), Journal()
    stored.rows[(1, "output")] = "a" * 64
    index = SandboxIndex(files, stored, journal, 60.0)
    assert index.of(1, "output") == "a" * 64
    index.attach(1, "output", "b" * 64)
    assert index.of(1, "output") == "b" * 64
    assert index.of(2, "output") is None


def test_collect_keeps_archives_named_in_the_store_or_on_their_way(files: SandboxStore) -> None:
    stored, journal = StoredRows(), Journal()
    index = SandboxIndex(files, stored, journal, 60.0)
    in_store, pending, orphan = files.put(b"one"), files.put(b"two"), files.put(b"three")
    stored.rows[(1, "input")] = in_store
    index.attach(2, "input", pending)
    journal.take()  # in flight: not committed yet, still referenced
    now = files.root.stat().st_mtime + 3600
    assert index.collect(now) == [orphan]
    assert files.has(in_store) and files.has(pending) and not files.has(orphan)
