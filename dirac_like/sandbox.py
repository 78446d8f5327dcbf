"""Sandboxes: tar.gz archives of a job's input or output files, stored by their sha256.

- :func:`pack` builds the archive of some files below a base folder; :func:`checksum` names it.
- :func:`safe_extract` unpacks an archive that may be hostile. It accepts regular files and
  directories only: ANY link (symbolic or hard, wherever it points), device, FIFO or other member
  type is refused, as are absolute names, ``..`` components, duplicate names, more than
  ``max_files`` members and more than ``max_bytes`` unpacked. Sizes are counted on the bytes
  actually written (headers are only trusted to refuse early), and the decompressed stream itself
  is capped, so a small gzip of many zeros cannot fill memory or disk. Data left after the end of
  the archive (a header that lies about its member's size) is refused too. Everything is unpacked
  into a fresh folder beside ``dest`` and moved in only when the whole archive passed, so a
  refusal leaves ``dest`` as it was. Python's ``tarfile`` extraction filters are not used: every
  member is checked and written here.
- :class:`SandboxStore` keeps archives as files named by their sha256 (write to a temporary file,
  then rename), verifies the checksum on every read, and collects unreferenced old blobs. Each
  archive has *holders*: the identities it was granted to (``<sha256>.grants/`` beside it, one
  empty file per holder). An uploader becomes a holder only by sending the bytes: the same
  content uploaded by two users is stored once, and knowing a sha256 is no way in.

Pure local files: no network, no clock (the caller passes ``now``).
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import hashlib
import io
import logging
import lzma
import os
import shutil
import tarfile
import tempfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from dirac_like.errors import InvalidArgument, NotFound
from dirac_like.files import fsync_folder, write_atomic

log = logging.getLogger(__name__)

_CHUNK = 1024 * 1024
_HEADER_ALLOWANCE = 4096  # decompressed bytes allowed per member for headers and padding
_SHA256_HEX = frozenset("0123456789abcdef")
SANDBOX_PREFIX = "SB:"  # a job's InputSandbox entry naming an uploaded archive: SB:<sha256>
TEMPORARY_PREFIX = ".tmp-"  # an archive being written (collected if a crash left it)
GRANTS_SUFFIX = ".grants"  # beside an archive: a folder of its holders


class SandboxError(InvalidArgument):
    """A sandbox that is refused: too big, malicious, corrupt or naming a missing file."""

    code = "bad_sandbox"


class SandboxNotFound(NotFound):
    code = "sandbox_not_found"


def checksum(data: bytes) -> str:
    """The sha256 of ``data`` in hex: a sandbox's name."""
    return hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------------------------
# pack


def pack(files: list[Path], base: Path) -> bytes:
    """A tar.gz of ``files`` (relative to ``base``, or absolute below it), named relative to
    ``base``. A listed folder is packed with its content. Symbolic links are followed when they
    stay below ``base`` and refused otherwise (the archive never holds a link)."""
    base_resolved = base.resolve()
    buffer = io.BytesIO()
    added: set[str] = set()
    with (
        gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as compressed,
        tarfile.open(fileobj=compressed, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        for listed in files:
            path = listed if listed.is_absolute() else base / listed
            if not path.exists():
                raise SandboxError(f"sandbox file not found: {listed}")
            for member in _walk(path, set()):
                _add(tar, member, _inside(member, base, base_resolved), added)
    return buffer.getvalue()


def pack_named(files: dict[str, Path]) -> bytes:
    """A tar.gz holding each local path (file or folder, anywhere) under its given top name:
    ``{"run.sh": Path("../tools/run.sh")}`` puts ``run.sh`` in the archive. Links inside a
    listed folder must stay inside it."""
    buffer = io.BytesIO()
    added: set[str] = set()
    with (
        gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as compressed,
        tarfile.open(fileobj=compressed, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        for name, path in sorted(files.items()):
            if not path.exists():
                raise SandboxError(f"sandbox file not found: {path}")
            top = path.resolve()
            for member in _walk(path, set()):
                inside = _inside(member, path, top) if member != path else ""
                _add(tar, member, f"{name}/{inside}" if inside else name, added)
    return buffer.getvalue()


def _walk(path: Path, seen: set[Path]) -> Iterator[Path]:
    """``path`` and, for a folder, everything below it (each real folder once: no link loops)."""
    yield path
    if path.is_dir() and path.resolve() not in seen:
        seen.add(path.resolve())
        for child in sorted(path.iterdir()):
            yield from _walk(child, seen)


def _inside(path: Path, base: Path, base_resolved: Path) -> str:
    """``path``'s name in the archive, checking that it (and what it links to) is below base."""
    try:
        name = path.absolute().relative_to(base.absolute()).as_posix()
        path.resolve().relative_to(base_resolved)
    except ValueError:
        raise SandboxError(f"sandbox file {path} is not inside {base}") from None
    if name in ("", ".") or ".." in name.split("/"):
        raise SandboxError(f"sandbox file {path} is not inside {base}")
    return name


def _add(tar: tarfile.TarFile, path: Path, name: str, added: set[str]) -> None:
    if name in added:
        return
    added.add(name)
    info = tar.gettarinfo(str(path.resolve()), arcname=name)
    if not (info.isreg() or info.isdir()):
        raise SandboxError(f"sandbox file {path} is not a regular file or folder")
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mode &= 0o755
    if info.isdir():
        tar.addfile(info)
        return
    with open(path, "rb") as handle:
        tar.addfile(info, handle)


# --------------------------------------------------------------------------------------------
# extract


def safe_extract(data: bytes, dest: Path, max_bytes: int, max_files: int = 10000) -> None:
    """Unpack the archive ``data`` into ``dest`` (created if missing; merged into if it exists)
    or raise :class:`SandboxError` naming the refused member and leave ``dest`` untouched."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.extract-", dir=dest.parent))
    try:
        limit = max_bytes + (max_files + 1) * _HEADER_ALLOWANCE
        with tempfile.SpooledTemporaryFile(max_size=8 * _CHUNK, dir=str(dest.parent)) as spool:
            _extract_tar(_Inflated(data, spool, limit), staging, max_bytes, max_files)
        _move_into(staging, dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _decompressing(data: bytes) -> io.BufferedIOBase:
    """A reader of ``data`` decompressed (gzip, bzip2 or xz, by its magic bytes) or as is."""
    raw = io.BytesIO(data)
    if data[:2] == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=raw)
    if data[:3] == b"BZh":
        return bz2.BZ2File(raw)
    if data[:6] == b"\xfd7zXZ\x00":
        return lzma.LZMAFile(raw)
    return raw


class _Inflated(io.RawIOBase):
    """The decompressed tar stream as a seekable file for :mod:`tarfile`.

    Decompressed only as far as it is read, into a spooled temporary file, and never beyond
    ``limit`` bytes: a member's size is checked from its header before its data is inflated.
    """

    def __init__(self, data: bytes, spool: IO[bytes], limit: int) -> None:
        super().__init__()
        self._source = _decompressing(data)
        self._spool = spool
        self._limit = limit
        self._end = 0  # bytes inflated so far
        self._eof = False
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        self._fill(self._position + len(view))
        self._spool.seek(self._position)
        data = self._spool.read(max(0, min(len(view), self._end - self._position)))
        view[: len(data)] = data
        self._position += len(data)
        return len(data)

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        if whence == os.SEEK_END:
            self._fill(self._limit + 1)
            offset += self._end
        elif whence == os.SEEK_CUR:
            offset += self._position
        self._position = max(0, offset)
        return self._position

    def tell(self) -> int:
        return self._position

    def _fill(self, upto: int) -> None:
        if self._eof or upto <= self._end:
            return
        self._spool.seek(self._end)
        try:
            while self._end < upto:
                chunk = self._source.read(_CHUNK)
                if not chunk:
                    self._eof = True
                    return
                self._end += len(chunk)
                if self._end > self._limit:
                    raise SandboxError(f"sandbox unpacks to more than {self._limit} bytes")
                self._spool.write(chunk)
        except (OSError, EOFError, lzma.LZMAError, zlib.error) as exc:
            raise SandboxError(f"sandbox is not a valid archive: {exc}") from None


def _extract_tar(raw: _Inflated, staging: Path, max_bytes: int, max_files: int) -> None:
    written = 0
    count = 0
    try:
        with tarfile.open(fileobj=raw, mode="r:") as tar:
            while (member := tar.next()) is not None:
                count += 1
                if count > max_files:
                    raise SandboxError(f"sandbox has more than {max_files} members")
                target = staging / _checked_name(member)
                try:
                    written += _unpack_member(tar, member, target, max_bytes - written)
                except OSError as exc:
                    raise SandboxError(
                        f"sandbox member {member.name!r} cannot be unpacked: {exc.strerror}"
                    ) from None
            _check_trailer(raw, tar.offset)
    except tarfile.TarError as exc:
        raise SandboxError(f"sandbox is not a valid archive: {exc}") from None


def _checked_name(member: tarfile.TarInfo) -> str:
    """The member's relative path, or SandboxError when its name or type is refused."""
    name = member.name
    kind = _refused_kind(member)
    if kind:
        raise SandboxError(f"sandbox member {name!r} is {kind}: refused")
    if name.startswith("/") or "\\" in name or "\0" in name:
        raise SandboxError(f"sandbox member {name!r} has an absolute or unsafe name: refused")
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise SandboxError(f"sandbox member {name!r} escapes the sandbox (..): refused")
    if not parts:
        raise SandboxError(f"sandbox member {name!r} has an empty name: refused")
    return "/".join(parts)


def _refused_kind(member: tarfile.TarInfo) -> str:
    if member.issym():
        return f"a symbolic link (to {member.linkname!r})"
    if member.islnk():
        return f"a hard link (to {member.linkname!r})"
    if member.ischr() or member.isblk():
        return "a device file"
    if member.isfifo():
        return "a FIFO"
    if not (member.isreg() or member.isdir()):
        return f"of an unsupported type ({member.type!r})"
    return ""


def _unpack_member(tar: tarfile.TarFile, member: tarfile.TarInfo, target: Path, budget: int) -> int:
    """Create a folder or write a regular file, counting its bytes against ``budget``; returns
    the bytes written."""
    if member.isdir():
        target.mkdir(parents=True, exist_ok=True)
        target.chmod((member.mode & 0o755) | 0o700)
        return 0
    if member.size > budget:
        raise SandboxError(
            f"sandbox member {member.name!r} takes the sandbox over its size "
            f"limit ({member.size} bytes)"
        )
    source = tar.extractfile(member)
    assert source is not None  # a regular file
    target.parent.mkdir(parents=True, exist_ok=True)
    mode = (member.mode & 0o755) | 0o600
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    except FileExistsError:
        raise SandboxError(f"sandbox member {member.name!r} appears twice: refused") from None
    written = 0
    with source, open(fd, "wb") as out:
        while chunk := source.read(_CHUNK):
            written += len(chunk)
            if written > budget:
                raise SandboxError(
                    f"sandbox member {member.name!r} takes the sandbox over its size limit"
                )
            out.write(chunk)
    with contextlib.suppress(OSError, OverflowError):
        os.utime(target, (member.mtime, member.mtime))
    return written


def _check_trailer(raw: _Inflated, end: int) -> None:
    """After the last member only zero blocks may follow."""
    raw.seek(end)
    while chunk := raw.read(_CHUNK):
        if chunk.count(0) != len(chunk):
            raise SandboxError(
                "sandbox has data after its last member (a header lies about its size): refused"
            )


def _move_into(staging: Path, dest: Path) -> None:
    if not dest.exists():
        staging.rename(dest)
        return
    if not dest.is_dir():
        raise SandboxError(f"sandbox destination {dest} is not a folder")
    entries = sorted(staging.iterdir())
    for entry in entries:
        if (dest / entry.name).exists() or (dest / entry.name).is_symlink():
            raise SandboxError(f"sandbox member {entry.name!r} already exists in {dest}")
    for entry in entries:
        entry.rename(dest / entry.name)


# --------------------------------------------------------------------------------------------
# store


class SandboxStore:
    """Sandboxes as files ``root/ab/abcdef...`` named by their sha256."""

    def __init__(self, root: Path, max_bytes: int) -> None:
        if max_bytes <= 0:
            raise InvalidArgument("sandbox store max_bytes must be positive")
        self.root = root
        self.max_bytes = max_bytes
        root.mkdir(parents=True, exist_ok=True)

    def put(self, data: bytes) -> str:
        """Store ``data``; returns its sha256. Storing the same bytes twice keeps one copy."""
        if len(data) > self.max_bytes:
            raise SandboxError(
                f"sandbox of {len(data)} bytes is over the limit of {self.max_bytes} bytes"
            )
        sha256 = checksum(data)
        path = self._path(sha256)
        if path.is_file() and path.stat().st_size == len(data):
            path.touch()  # fresh again: not collected as old while it is being reused
            return sha256
        path.parent.mkdir(exist_ok=True)
        write_atomic(path, data, temporary_prefix=TEMPORARY_PREFIX)
        return sha256

    def get(self, sha256: str) -> bytes:
        """The sandbox's bytes, checked against its name; a corrupt blob is removed."""
        path = self._path(sha256)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise SandboxNotFound(f"sandbox {sha256} not found") from None
        if checksum(data) != sha256:
            log.error("sandbox %s is corrupt (checksum mismatch); removing it", sha256)
            with contextlib.suppress(OSError):
                path.unlink()
            raise SandboxError(f"sandbox {sha256} is corrupt (checksum mismatch)")
        return data

    def has(self, sha256: str) -> bool:
        return is_sha256(sha256) and self._path(sha256).is_file()

    # -- in pieces (uploads and downloads over the network) -------------------------------------

    def write_chunk(
        self,
        sha256: str,
        size: int,
        offset: int,
        data: bytes,
        max_bytes: int | None = None,
        uploader: str = "",
    ) -> int:
        """Add ``data`` at ``offset`` to ``uploader``'s partial upload of archive ``sha256`` of
        ``size`` bytes; returns the bytes received so far (``size`` once it is complete, checked
        and stored, and ``uploader`` holds it). Chunks come in order; a chunk sent again (a
        retry) is written again. An archive already stored is complete at once for one of its
        holders (or when no uploader is named); anyone else sends its bytes, which are checked
        and then dropped for the copy already kept."""
        path = self._path(sha256)
        limit = self.max_bytes if max_bytes is None else min(max_bytes, self.max_bytes)
        if not 0 < size <= limit:
            raise SandboxError(f"sandbox of {size} bytes: the size must be 1 to {limit} bytes")
        if path.is_file() and (not uploader or self.granted(sha256, uploader)):
            return size
        partial = self._partial(sha256, uploader)
        have = partial.stat().st_size if partial.exists() else 0
        if not 0 <= offset <= have or offset + len(data) > size or not data:
            raise SandboxError(
                f"sandbox {sha256}: chunk of {len(data)} bytes at offset {offset} "
                f"does not follow the {have} bytes received (size {size})"
            )
        with open(partial, "r+b" if partial.exists() else "wb") as out:
            out.seek(offset)
            out.write(data)
            out.truncate()
            received = out.tell()
            if received == size:
                out.flush()
                os.fsync(out.fileno())
        if received == size:
            self._complete(sha256, partial)
            if uploader:
                self.grant(sha256, uploader)
        return received

    # -- holders ---------------------------------------------------------------------------------

    def grant(self, sha256: str, holder: str) -> None:
        """``holder`` may read archive ``sha256`` and name it in its jobs from now on."""
        marker = self._grant_path(sha256, holder)
        if marker.exists():
            return
        marker.parent.mkdir(exist_ok=True)
        marker.touch()
        fsync_folder(marker.parent)

    def granted(self, sha256: str, holder: str) -> bool:
        """Whether ``holder`` holds the stored archive ``sha256``."""
        return (
            is_sha256(sha256)
            and self._path(sha256).is_file()
            and self._grant_path(sha256, holder).exists()
        )

    def _grant_path(self, sha256: str, holder: str) -> Path:
        # Hashed: a holder's name may be anything (even "..") and 200 characters long.
        name = hashlib.sha256(holder.encode()).hexdigest()[:32]
        return self._path(sha256).with_name(sha256 + GRANTS_SUFFIX) / name

    def _complete(self, sha256: str, partial: Path) -> None:
        digest = hashlib.sha256()
        with open(partial, "rb") as archive:
            for block in iter(lambda: archive.read(_CHUNK), b""):
                digest.update(block)
        if digest.hexdigest() != sha256:
            partial.unlink()
            raise SandboxError(
                f"sandbox {sha256}: the uploaded bytes have sha256 "
                f"{digest.hexdigest()}; upload it again"
            )
        path = self._path(sha256)
        if path.is_file():  # the same bytes as the copy kept: one copy is enough
            partial.unlink()
            return
        path.parent.mkdir(exist_ok=True)
        os.replace(partial, path)
        fsync_folder(path.parent)

    def read_chunk(self, sha256: str, offset: int, length: int) -> tuple[bytes, int]:
        """``length`` bytes of archive ``sha256`` from ``offset``, and the archive's size (the
        reader checks the sha256 of the whole)."""
        if offset < 0 or length < 1:
            raise SandboxError("offset must be >= 0 and length >= 1")
        try:
            with open(self._path(sha256), "rb") as archive:
                size = os.fstat(archive.fileno()).st_size
                archive.seek(offset)
                return archive.read(length), size
        except FileNotFoundError:
            raise SandboxNotFound(f"sandbox {sha256} not found") from None

    def _partial(self, sha256: str, uploader: str = "") -> Path:
        """Where ``uploader``'s upload of ``sha256`` grows (each uploader its own)."""
        folder = self.root / ".partial"
        folder.mkdir(exist_ok=True)
        who = hashlib.sha256(uploader.encode()).hexdigest()[:16] if uploader else ""
        return folder / (f"{sha256}.{who}" if who else sha256)

    def collect(self, referenced: set[str], older_than: float, now: float) -> list[str]:
        """Delete the blobs not in ``referenced`` last written more than ``older_than`` seconds
        before ``now`` (and temporary files as old); returns the deleted sha256s, sorted."""
        cutoff = now - older_than
        deleted = []
        for partial in (self.root / ".partial").glob("*"):
            with contextlib.suppress(FileNotFoundError):
                if partial.stat().st_mtime < cutoff:
                    partial.unlink()
        for folder in self.root.iterdir():
            if not folder.is_dir() or len(folder.name) != 2:
                continue
            for path in folder.iterdir():
                name = path.name
                if name.endswith(GRANTS_SUFFIX):
                    if not path.with_name(name[: -len(GRANTS_SUFFIX)]).exists():
                        shutil.rmtree(path, ignore_errors=True)  # its archive went
                    continue
                if name in referenced or not (is_sha256(name) or name.startswith(TEMPORARY_PREFIX)):
                    continue
                with contextlib.suppress(FileNotFoundError):
                    if path.stat().st_mtime < cutoff:
                        path.unlink()
                        if is_sha256(name):
                            shutil.rmtree(path.with_name(name + GRANTS_SUFFIX), ignore_errors=True)
                            deleted.append(name)
        if deleted:
            log.info("collected %d unreferenced sandboxes", len(deleted))
        return sorted(deleted)

    def _path(self, sha256: str) -> Path:
        if not is_sha256(sha256):
            raise SandboxError(f"not a sandbox checksum: {sha256[:80]!r}")
        return self.root / sha256[:2] / sha256


def is_sha256(text: str) -> bool:
    return len(text) == 64 and set(text) <= _SHA256_HEX
