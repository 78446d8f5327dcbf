"""Sandboxes: pack and extract round trips, hostile archives refused, the content-addressed store.

Hostile archives are built here with tarfile; each one must be refused with a SandboxError and
leave the destination folder exactly as it was (empty) with nothing left beside it.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import tarfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from dirac_like.errors import InvalidArgument, NotFound, error_from_wire
from dirac_like.sandbox import (
    SandboxError,
    SandboxNotFound,
    SandboxStore,
    checksum,
    pack,
    safe_extract,
)

MB = 1024 * 1024


def write(path: Path, content: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, str):
        content = content.encode()
    path.write_bytes(content)
    return path


def archive(*members: tuple[tarfile.TarInfo, bytes | None], compress: bool = True) -> bytes:
    """A tar (gzip'd by default) of the given members, written as tarfile writes them."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz" if compress else "w") as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buffer.getvalue()


def member(
    name: str, data: bytes = b"", kind: bytes = tarfile.REGTYPE, linkname: str = ""
) -> tuple[tarfile.TarInfo, bytes | None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    info.mode = 0o644
    if kind == tarfile.REGTYPE:
        info.size = len(data)
        return info, data
    return info, None


@pytest.fixture
def dest(tmp_path: Path) -> Path:
    folder = tmp_path / "unpack" / "job"
    folder.mkdir(parents=True)
    return folder


def assert_refused(
    data: bytes, dest: Path, match: str, max_bytes: int = 10 * MB, max_files: int = 10000
) -> None:
    with pytest.raises(SandboxError, match=match):
        safe_extract(data, dest, max_bytes, max_files)
    assert list(dest.iterdir()) == []
    assert sorted(p.name for p in dest.parent.iterdir()) == [dest.name]  # no staging left


# --------------------------------------------------------------------------------------------
# pack / extract


def test_round_trip_keeps_names_contents_and_modes(tmp_path: Path, dest: Path) -> None:
    base = tmp_path / "src"
    write(base / "job.sh", "#!/bin/sh\necho hi\n").chmod(0o755)
    write(base / "data" / "input.txt", "numbers\n")
    write(base / "data" / "deep" / "blob.bin", bytes(range(256)) * 100)
    data = pack([Path("job.sh"), base / "data"], base)
    safe_extract(data, dest, max_bytes=MB)
    assert (dest / "job.sh").read_text() == "#!/bin/sh\necho hi\n"
    assert os.access(dest / "job.sh", os.X_OK)
    assert (dest / "data" / "input.txt").read_text() == "numbers\n"
    assert (dest / "data" / "deep" / "blob.bin").read_bytes() == bytes(range(256)) * 100


def test_pack_is_deterministic_so_the_checksum_names_the_content(tmp_path: Path) -> None:
    base = tmp_path / "src"
    write(base / "a.txt", "a")
    write(base / "b.txt", "b")
    first = pack([Path("a.txt"), Path("b.txt")], base)
    assert pack([Path("a.txt"), Path("b.txt"), Path("a.txt")], base) == first
    assert checksum(first) == hashlib.sha256(first).hexdigest()


def test_extract_into_a_missing_folder_creates_it(tmp_path: Path) -> None:
    base = tmp_path / "src"
    write(base / "x.txt", "x")
    target = tmp_path / "new" / "job"
    safe_extract(pack([Path("x.txt")], base), target, max_bytes=MB)
    assert (target / "x.txt").read_text() == "x"


def test_extract_merges_into_an_existing_folder_but_never_overwrites(
    tmp_path: Path, dest: Path
) -> None:
    base = tmp_path / "src"
    write(base / "x.txt", "x")
    write(dest / "already.txt", "mine")
    safe_extract(pack([Path("x.txt")], base), dest, max_bytes=MB)
    assert sorted(p.name for p in dest.iterdir()) == ["already.txt", "x.txt"]
    with pytest.raises(SandboxError, match=r"'x\.txt' already exists"):
        safe_extract(pack([Path("x.txt")], base), dest, max_bytes=MB)


def test_pack_names_a_missing_file(tmp_path: Path) -> None:
    write(tmp_path / "present.txt", "here")
    with pytest.raises(SandboxError, match=r"not found: missing\.dat"):
        pack([Path("present.txt"), Path("missing.dat")], tmp_path)


def test_pack_refuses_a_file_outside_base_and_a_link_out(tmp_path: Path) -> None:
    base = tmp_path / "src"
    write(base / "in.txt", "in")
    outside = write(tmp_path / "secret.txt", "secret")
    with pytest.raises(SandboxError, match="not inside"):
        pack([outside], base)
    (base / "link").symlink_to(outside)
    with pytest.raises(SandboxError, match="not inside"):
        pack([Path("link")], base)


def test_pack_follows_a_link_that_stays_inside(tmp_path: Path, dest: Path) -> None:
    base = tmp_path / "src"
    write(base / "real.txt", "real")
    (base / "alias.txt").symlink_to("real.txt")
    safe_extract(pack([Path("alias.txt")], base), dest, max_bytes=MB)
    assert not (dest / "alias.txt").is_symlink()
    assert (dest / "alias.txt").read_text() == "real"


def test_an_empty_archive_extracts_to_nothing(tmp_path: Path, dest: Path) -> None:
    safe_extract(pack([], tmp_path), dest, max_bytes=MB)
    assert list(dest.iterdir()) == []


# --------------------------------------------------------------------------------------------
# hostile archives


def test_refuses_dot_dot_escape(dest: Path) -> None:
    assert_refused(archive(member("../x", b"evil")), dest, r"'../x' escapes")
    assert not (dest.parent / "x").exists()


def test_refuses_dot_dot_in_the_middle(dest: Path) -> None:
    assert_refused(
        archive(member("ok.txt", b"fine"), member("a/../../x", b"evil")),
        dest,
        r"'a/../../x' escapes",
    )


def test_refuses_absolute_path(dest: Path) -> None:
    assert_refused(archive(member("/etc/x", b"evil")), dest, r"'/etc/x' has an absolute")


def test_refuses_symlink_to_etc_passwd(dest: Path) -> None:
    data = archive(member("passwd", kind=tarfile.SYMTYPE, linkname="/etc/passwd"))
    assert_refused(data, dest, r"'passwd' is a symbolic link \(to '/etc/passwd'\)")


def test_refuses_every_link_even_one_pointing_inside(dest: Path) -> None:
    data = archive(member("a.txt", b"a"), member("b.txt", kind=tarfile.SYMTYPE, linkname="a.txt"))
    assert_refused(data, dest, r"'b.txt' is a symbolic link")


def test_refuses_hardlink_out(dest: Path) -> None:
    data = archive(member("shadow", kind=tarfile.LNKTYPE, linkname="../../../etc/shadow"))
    assert_refused(data, dest, r"'shadow' is a hard link")


def test_refuses_character_device(dest: Path) -> None:
    info, _ = member("null", kind=tarfile.CHRTYPE)
    info.devmajor, info.devminor = 1, 3
    assert_refused(archive((info, None)), dest, r"'null' is a device file")


def test_refuses_block_device(dest: Path) -> None:
    assert_refused(archive(member("sda", kind=tarfile.BLKTYPE)), dest, r"'sda' is a device")


def test_refuses_fifo(dest: Path) -> None:
    assert_refused(archive(member("pipe", kind=tarfile.FIFOTYPE)), dest, r"'pipe' is a FIFO")


def test_refuses_a_gzip_bomb_before_inflating_it(dest: Path) -> None:
    zeros = bytes(64 * MB)
    data = archive(member("zeros.bin", zeros))
    assert len(data) < MB  # small on the wire
    assert_refused(
        data, dest, r"'zeros.bin' takes the sandbox over its size limit", max_bytes=10 * MB
    )


def test_counts_the_total_over_many_members(dest: Path) -> None:
    members = [member(f"part{i}.bin", bytes(MB)) for i in range(5)]
    assert_refused(
        archive(*members), dest, r"'part3.bin' takes the sandbox over", max_bytes=int(3.5 * MB)
    )


def test_refuses_too_many_members(dest: Path) -> None:
    members = [member(f"f{i}", b"x") for i in range(30)]
    assert_refused(archive(*members), dest, "more than 20 members", max_files=20)


def test_refuses_a_header_claiming_small_with_big_data_behind(dest: Path) -> None:
    """A 1 KB header size followed by many MB of data: tarfile alone would stop silently."""
    info, _ = member("small.txt")
    info.size = 1024
    lying = info.tobuf(tarfile.USTAR_FORMAT) + b"A" * 1024 + b"B" * (8 * MB)
    assert_refused(gzip.compress(lying), dest, "data after its last member")


def test_refuses_a_header_claiming_big_with_little_data(dest: Path) -> None:
    info, _ = member("big.txt")
    info.size = 5 * MB
    header = info.tobuf(tarfile.USTAR_FORMAT)
    assert_refused(gzip.compress(header + b"x" * 1000), dest, "not a valid archive")


def test_refuses_garbage_and_truncated_gzip(dest: Path) -> None:
    assert_refused(b"this is not an archive at all" * 50, dest, "not a valid archive")
    good = archive(member("a.txt", b"a" * 10000))
    assert_refused(good[: len(good) // 2], dest, "not a valid archive")


def test_refuses_duplicate_member(dest: Path) -> None:
    data = archive(member("a.txt", b"first"), member("a.txt", b"second"))
    assert_refused(data, dest, "'a.txt' appears twice")


def test_refuses_file_where_a_folder_is_needed(dest: Path) -> None:
    data = archive(member("a", b"file"), member("a/b.txt", b"below a file"))
    assert_refused(data, dest, "'a/b.txt' cannot be unpacked")


def test_uncompressed_tar_is_accepted(dest: Path) -> None:
    safe_extract(archive(member("plain.txt", b"plain"), compress=False), dest, MB)
    assert (dest / "plain.txt").read_bytes() == b"plain"


def test_setuid_bits_are_dropped(dest: Path) -> None:
    info, data = member("tool", b"#!/bin/sh\n")
    info.mode = 0o6777
    safe_extract(archive((info, data)), dest, MB)
    mode = (dest / "tool").stat().st_mode
    assert mode & 0o7000 == 0  # no setuid, setgid or sticky bit
    assert mode & 0o700 == 0o700 and not mode & 0o022


# --------------------------------------------------------------------------------------------
# store


@pytest.fixture
def store(tmp_path: Path) -> SandboxStore:
    return SandboxStore(tmp_path / "sandboxes", max_bytes=MB)


def test_store_put_get_has(store: SandboxStore) -> None:
    data = b"some archive bytes"
    name = store.put(data)
    assert name == checksum(data)
    assert store.has(name)
    assert store.get(name) == data
    assert store.put(data) == name  # the same bytes again: one copy
    assert not store.has(checksum(b"other"))
    assert not store.has("../../etc/passwd")


def test_store_refuses_over_the_size_limit(store: SandboxStore) -> None:
    with pytest.raises(SandboxError, match="over the limit"):
        store.put(b"x" * (MB + 1))
    assert [p for p in store.root.rglob("*") if p.is_file()] == []


def test_store_missing_is_not_found(store: SandboxStore) -> None:
    with pytest.raises(SandboxNotFound) as caught:
        store.get(checksum(b"never stored"))
    assert isinstance(caught.value, NotFound)
    assert caught.value.code == "sandbox_not_found"


def test_store_rejects_names_that_are_not_checksums(store: SandboxStore) -> None:
    for bad in ("../../etc/passwd", "ab", "Z" * 64, ""):
        with pytest.raises(SandboxError, match="not a sandbox checksum"):
            store.get(bad)


def test_store_detects_corruption_and_drops_the_blob(store: SandboxStore) -> None:
    data = b"precious bytes" * 100
    name = store.put(data)
    path = store.root / name[:2] / name
    path.write_bytes(data[:-1] + b"!")
    with pytest.raises(SandboxError, match="corrupt"):
        store.get(name)
    assert not store.has(name)
    assert store.put(data) == name and store.get(name) == data  # a new upload repairs it


def test_store_collects_only_old_unreferenced_blobs(store: SandboxStore) -> None:
    old_kept, old_dropped, young = store.put(b"kept"), store.put(b"dropped"), store.put(b"new")
    now = 1_000_000.0
    for name, mtime in ((old_kept, now - 7200), (old_dropped, now - 7200), (young, now - 60)):
        os.utime(store.root / name[:2] / name, (mtime, mtime))
    stale_temp = store.root / old_kept[:2] / ".tmp-crashed"
    stale_temp.write_bytes(b"half")
    os.utime(stale_temp, (now - 7200, now - 7200))
    assert store.collect({old_kept}, older_than=3600, now=now) == [old_dropped]
    assert store.has(old_kept) and store.has(young) and not store.has(old_dropped)
    assert not stale_temp.exists()
    assert store.collect({old_kept}, older_than=3600, now=now) == []


def test_errors_have_stable_codes_and_come_back_from_the_wire() -> None:
    assert SandboxError.code == "bad_sandbox" and issubclass(SandboxError, InvalidArgument)
    assert type(error_from_wire("bad_sandbox", "x")) is SandboxError
    assert type(error_from_wire("sandbox_not_found", "x")) is SandboxNotFound


def test_hostile_cases_reuse_the_same_destination(dest: Path) -> None:
    """Refusals one after another leave nothing that makes the next good extract fail."""
    hostile: list[Callable[[], bytes]] = [
        lambda: archive(member("../x", b"e")),
        lambda: archive(member("l", kind=tarfile.SYMTYPE, linkname="/etc/passwd")),
        lambda: archive(member("big", bytes(3 * MB))),
    ]
    for build in hostile:
        with pytest.raises(SandboxError):
            safe_extract(build(), dest, max_bytes=MB)
    safe_extract(archive(member("good.txt", b"good")), dest, max_bytes=MB)
    assert [p.name for p in dest.iterdir()] == ["good.txt"]


# -- holders (issue 11, defect 12) -------------------------------------------------------------


def test_an_uploader_holds_an_archive_only_by_sending_its_bytes(tmp_path: Path) -> None:
    store = SandboxStore(tmp_path / "sb", 1000)
    data = b"the same content"
    sha256 = checksum(data)
    assert store.write_chunk(sha256, len(data), 0, data, uploader="alice") == len(data)
    assert store.granted(sha256, "alice") and not store.granted(sha256, "bob")
    # bob claims it by its hash: not complete until his bytes came, and checked
    assert store.write_chunk(sha256, len(data), 0, data[:5], uploader="bob") == 5
    assert not store.granted(sha256, "bob")
    with pytest.raises(SandboxError, match="upload it again"):
        store.write_chunk(sha256, len(data), 5, b"X" * (len(data) - 5), uploader="bob")
    assert not store.granted(sha256, "bob")
    assert store.write_chunk(sha256, len(data), 0, data, uploader="bob") == len(data)
    assert store.granted(sha256, "bob")
    assert [p.name for p in (tmp_path / "sb").rglob(sha256)] == [sha256]  # one copy
    assert store.write_chunk(sha256, len(data), 0, data[:1], uploader="alice") == len(data)


def test_collecting_an_archive_drops_its_holders(tmp_path: Path) -> None:
    store = SandboxStore(tmp_path / "sb", 1000)
    sha256 = store.put(b"old")
    store.grant(sha256, "..")  # any name, even a path's
    assert store.granted(sha256, "..")
    assert store.collect(set(), older_than=0.0, now=time.time() + 10) == [sha256]
    assert not store.granted(sha256, "..")
    assert not list((tmp_path / "sb").rglob("*.grants"))
