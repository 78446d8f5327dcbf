"""The one atomic write: whole old or whole new file, permissions, nothing left behind."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from dirac_like.files import fsync_folder, write_atomic


def test_write_replaces_the_file_whole_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "registry.json"
    target.write_text("old")
    write_atomic(target, b"new", mode=0o600)
    assert target.read_bytes() == b"new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert os.listdir(tmp_path) == ["registry.json"]
    fsync_folder(tmp_path)


def test_a_failed_write_keeps_the_old_file_and_removes_the_temporary(tmp_path: Path) -> None:
    target = tmp_path / "keys.json"
    target.write_text("old")
    with pytest.raises(TypeError):
        write_atomic(target, "not bytes", temporary_prefix=".tmp-")  # type: ignore[arg-type]
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["keys.json"]
