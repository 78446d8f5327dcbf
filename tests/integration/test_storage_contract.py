"""One contract for every kind of storage element, run against a file SE and a real XRootD SE;
then third-party copy between two XRootD SEs, and an SE that is down."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from xrootd_ses import XrootdSEs

from dirac_like.checksums import adler32_of_file, file_chunks
from dirac_like.errors import FileMissing, StorageError, StorageUnavailable
from dirac_like.storage import StorageElementConfig
from dirac_like.storage_access import (
    StorageAccess,
    XrootdStorage,
    open_storage,
    third_party_copy,
)

PAYLOAD = os.urandom(300_000) * 3  # several 256 KiB chunks


def xroot_config(name: str, url: str) -> StorageElementConfig:
    return StorageElementConfig(name=name, protocol="xroot", endpoint=url, base_path="/grid")


@pytest.fixture(params=["file", "xroot"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> StorageAccess:
    if request.param == "file":
        return open_storage(StorageElementConfig(name="F", base_path=str(tmp_path / "se")))
    ses: XrootdSEs = request.getfixturevalue("xrootd_ses")
    return open_storage(xroot_config("XRD-A", ses.urls["XRD-A"]))


@pytest.fixture
def lfn(request: pytest.FixtureRequest) -> str:
    return f"/vo/contract/{request.node.name.replace('[', '-').rstrip(']')}/f.dat"


def test_write_then_read_gives_the_same_bytes_size_and_adler32(
    storage: StorageAccess, lfn: str, tmp_path: Path
) -> None:
    local = tmp_path / "in"
    local.write_bytes(PAYLOAD)
    written = storage.write(lfn, file_chunks(local, 256 * 1024))
    assert (written.size, written.adler32) == (len(PAYLOAD), adler32_of_file(local))
    assert storage.info(lfn) == written
    assert b"".join(storage.read(lfn, 100_000)) == PAYLOAD
    storage.remove(lfn)


def test_a_missing_file_is_file_missing_and_remove_says_it_was_not_there(
    storage: StorageAccess, lfn: str
) -> None:
    with pytest.raises(FileMissing):
        storage.size(lfn)
    with pytest.raises(FileMissing):
        storage.adler32(lfn)
    assert not storage.exists(lfn)
    assert storage.remove(lfn) is False


def test_a_write_that_fails_halfway_leaves_the_old_file_whole_and_no_part_file(
    storage: StorageAccess, lfn: str
) -> None:
    storage.write(lfn, [b"old content"])

    def broken() -> Iterator[bytes]:
        yield b"new half"
        raise OSError("the source went away")

    with pytest.raises(OSError, match="went away"):
        storage.write(lfn, broken())
    assert b"".join(storage.read(lfn)) == b"old content"
    storage.remove(lfn)


def test_third_party_copy_between_two_xrootd_ses(xrootd_ses: XrootdSEs) -> None:
    a = XrootdStorage(xroot_config("XRD-A", xrootd_ses.urls["XRD-A"]))
    b = XrootdStorage(xroot_config("XRD-B", xrootd_ses.urls["XRD-B"]))
    lfn = "/vo/contract/tpc/f.dat"
    written = a.write(lfn, [PAYLOAD])
    third_party_copy(a, b, lfn)
    assert b.info(lfn) == written
    folder = xrootd_ses.data("XRD-B") / "grid" / "vo" / "contract" / "tpc"
    assert sorted(p.name for p in folder.iterdir()) == ["f.dat"]  # no .part file left


def test_third_party_copy_of_a_missing_source_fails_and_leaves_nothing(
    xrootd_ses: XrootdSEs,
) -> None:
    a = XrootdStorage(xroot_config("XRD-A", xrootd_ses.urls["XRD-A"]))
    b = XrootdStorage(xroot_config("XRD-B", xrootd_ses.urls["XRD-B"]))
    with pytest.raises(StorageError):
        third_party_copy(a, b, "/vo/contract/tpc-missing/f.dat")
    assert not b.exists("/vo/contract/tpc-missing/f.dat")


def test_an_se_that_is_down_is_unavailable_not_missing(
    start_xrootd_se: Callable[[], tuple[str, XrootdSEs]],
) -> None:
    name, ses = start_xrootd_se()
    storage = XrootdStorage(xroot_config(name, ses.urls[name]))
    storage.write("/vo/down/f", [b"x"])
    ses.stop(name)
    with pytest.raises(StorageUnavailable):
        storage.size("/vo/down/f")
    with pytest.raises(StorageUnavailable):
        storage.write("/vo/down/g", [b"y"])
