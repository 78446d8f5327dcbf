"""Real XRootD storage elements for the tests (a pytest plugin, loaded by tests/conftest.py).

The session-scoped fixture ``xrootd_ses`` starts two SEs, ``XRD-A`` and ``XRD-B``, with
``scripts/xrootd-se.sh`` the first time a test asks for them (each an ``xrootd`` daemon on a free
loopback port, adler32 checksums, third-party copy), in a folder made directly in /tmp (the
daemons run as ``nobody`` and must enter it). It stops them by the PIDs the script recorded when
the session ends, pass or fail; should the session die before that, the script's watcher stops
them (``WATCH_PID``). ``start_xrootd_se`` starts one more SE for a single test (one it
may stop halfway, for an SE that goes down) and stops it when the test ends.

Without xrootd installed the tests that use them skip, saying how to install it; under ``CI=true``
they fail instead (CI must run them).
"""

from __future__ import annotations

import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "xrootd-se.sh"
COMMANDS = ("xrootd", "xrdcp", "xrdfs")
SCRIPT_TIMEOUT = 120.0
_numbers = itertools.count(1)


@dataclass
class XrootdSEs:
    """Running SEs under one base folder: name -> ``root://127.0.0.1:PORT``."""

    base: Path
    urls: dict[str, str] = field(default_factory=dict)

    def data(self, name: str) -> Path:
        """The folder SE ``name`` serves (``root://host//x`` is ``data(name) / "x"``)."""
        return self.base / "data" / name

    def plant(self, path: Path, data: bytes) -> None:
        """Put a file straight into an SE's folder (as the daemon's user, so it may replace
        it): a leftover or a corrupted copy, for a test."""
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        if os.geteuid() == 0:
            nobody = pwd.getpwnam("nobody")
            for made in (path, *path.parents):
                if made == self.base:
                    break
                os.chown(made, nobody.pw_uid, nobody.pw_gid)

    def start(self, *names: str) -> None:
        started = _script("start", str(self.base), *names)
        if started.returncode != 0:
            pytest.fail(
                f"XRootD SEs {names} did not start:\n{started.stdout}{started.stderr}",
                pytrace=False,
            )
        for line in started.stdout.splitlines():
            name, url = line.split()
            self.urls[name] = url

    def stop(self, *names: str) -> None:
        """Stop the SEs named (all when none), by their recorded PIDs."""
        stopped = _script("stop", str(self.base), *names)
        assert stopped.returncode == 0, f"stopping XRootD SEs failed: {stopped.stderr}"
        for name in names or list(self.urls):
            self.urls.pop(name, None)


def storage_config(ses: XrootdSEs, files: Path) -> str:
    """A service config with data management on: SEs XRD-A and XRD-B of ``ses`` (at sites SITE-A
    and SITE-B) and a file SE, FILE-C (SITE-C), in ``files``."""
    return f"""
[data]
vos = ["vo"]
[data.transfers]
lease = 30.0
retry_backoff = 0.0
max_attempts = 3
[storage.XRD-A]
site = "SITE-A"
protocol = "xroot"
endpoint = "{ses.urls["XRD-A"]}"
base_path = "/grid"
tags = ["disk"]
[storage.XRD-B]
site = "SITE-B"
protocol = "xroot"
endpoint = "{ses.urls["XRD-B"]}"
base_path = "/grid"
tags = ["disk"]
[storage.FILE-C]
site = "SITE-C"
protocol = "file"
base_path = "{files}"
"""


def xrootd_installed() -> bool:
    return all(shutil.which(name) for name in COMMANDS)


def _script(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=SCRIPT_TIMEOUT,
        check=False,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "WATCH_PID": str(os.getpid())},  # they stop once this process is gone
    )


def require_xrootd() -> None:
    if xrootd_installed():
        return
    message = (
        "XRootD is not installed (xrootd, xrdcp, xrdfs): run "
        "`bash scripts/xrootd-se.sh install` as root to enable the XRootD tests"
    )
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true: {message}", pytrace=False)
    pytest.skip(message)


def start_ses(*names: str) -> XrootdSEs:
    """SEs ``names`` running in a new folder, stopped by the script's watcher once this process
    is gone (the caller stops them with ``stop_ses``)."""
    ses = XrootdSEs(Path(tempfile.mkdtemp(prefix="dirac-like-xrootd-")))
    try:
        ses.start(*names)
    except BaseException:
        stop_ses(ses)
        raise
    return ses


def stop_ses(ses: XrootdSEs) -> None:
    """Stop every SE under ``ses.base`` by its recorded PID and remove the folder."""
    ses.stop()
    shutil.rmtree(ses.base, ignore_errors=True)


@pytest.fixture(scope="session")
def xrootd_ses() -> Iterator[XrootdSEs]:
    """Two running XRootD SEs, XRD-A and XRD-B, for the whole session."""
    require_xrootd()
    ses = start_ses("XRD-A", "XRD-B")
    try:
        yield ses
    finally:
        stop_ses(ses)


@pytest.fixture
def start_xrootd_se() -> Iterator[Callable[[], tuple[str, XrootdSEs]]]:
    """A factory: ``name, ses = start_xrootd_se()`` starts one more SE for this test only."""
    require_xrootd()
    started: list[XrootdSEs] = []

    def start() -> tuple[str, XrootdSEs]:
        name = f"XRD-T{next(_numbers)}"
        started.append(start_ses(name))
        return name, started[-1]

    yield start
    for ses in started:
        stop_ses(ses)
