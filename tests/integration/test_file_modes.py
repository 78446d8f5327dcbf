"""The central service's files are its own: the home is 0700, every file in it 0600 — the
store and its WAL, sandboxes, logs, the audit log, keys (issue 11 defect 13: they were 0644)."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

from dirac_like.processes import ServiceProcess, dirac_like_argv


def open_to_others(home: Path) -> list[str]:
    """Every file or folder under ``home`` (itself included) that group or others can use."""
    found = []
    for root, folders, files in os.walk(home):
        for path in [Path(root)] + [Path(root) / name for name in folders + files]:
            mode = stat.S_IMODE(path.lstat().st_mode)
            if mode & 0o077:
                found.append(f"{path.relative_to(home.parent)} {oct(mode)}")
    return sorted(set(found))


def test_the_service_home_is_private_whatever_the_umask(tmp_path: Path) -> None:
    previous = os.umask(0o002)  # a permissive shell: the service must not depend on it
    try:
        service = ServiceProcess.start_central(tmp_path / "home")
    finally:
        os.umask(previous)
    try:
        (tmp_path / "payload.sh").write_text("echo hello\n")
        (tmp_path / "job.jdl").write_text(
            'Executable = "payload.sh";\nInputSandbox = { "payload.sh" };\n'
        )
        done = subprocess.run(
            [
                *dirac_like_argv("job", "submit", str(tmp_path / "job.jdl")),
                "--server",
                service.endpoint,
                "--home",
                str(tmp_path / "home"),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )
        assert done.returncode == 0, done.stderr
    finally:
        service.stop()
    home = tmp_path / "home"
    assert [path for path in (home / "sandboxes").rglob("*") if path.is_file()], "no sandbox"
    assert (home / "jobs.sqlite").exists() and (home / "logs").is_dir()
    assert open_to_others(home) == []
