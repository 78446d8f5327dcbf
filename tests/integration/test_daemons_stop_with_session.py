"""Daemons the test fixtures start stop by themselves when the test session dies without stopping
them (killed by SIGKILL, or by CI's timeout): each fixture's start helper runs here in a
throw-away parent process, the test kills that parent with SIGKILL and waits (with a deadline)
until every daemon it started is gone. The daemons' scripts arm scripts/stop-when-gone.sh with
``WATCH_PID``; Chromium's helper and the central service's fixtures arm it through
tests/session_watch.py.

Each test stops what is left by its recorded PIDs when it fails, never by name.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from chromium_browser import chromium_or_skip
from postgres_server import require_postgres
from slurm_cluster import slurm_installed, stop_cluster
from xrootd_ses import XrootdSEs, require_xrootd, stop_ses

from dirac_like.testing import wait_for

TESTS = Path(__file__).resolve().parents[1]
REPO = TESTS.parent
WATCHER = REPO / "scripts" / "stop-when-gone.sh"
STOP_DEADLINE = 60.0  # the watcher looks every second; Slurm's stop may take ~10 s on a loaded box


def running(pid: int) -> bool:
    """Alive and not a zombie (an orphan's zombie may wait for its new parent to reap it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def all_gone(pids: list[int]) -> Callable[[], bool]:
    return lambda: not any(running(pid) for pid in pids)


class Parent:
    """A throw-away Python process that runs ``code`` (with tests/ importable), which prints one
    JSON line, then waits until it is killed."""

    def __init__(self, code: str) -> None:
        wrapper = f"import json, sys\n{textwrap.dedent(code)}\nsys.stdin.read()\n"
        self.popen = subprocess.Popen(
            [sys.executable, "-c", wrapper],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), str(REPO)])},
            text=True,
        )

    def started(self) -> dict[str, str]:
        assert self.popen.stdout is not None
        line = self.popen.stdout.readline()
        assert line, f"the parent exited before it started its daemons ({self.popen.wait()})"
        started: dict[str, str] = json.loads(line)
        return started

    def kill9(self) -> None:
        self.popen.kill()  # SIGKILL: no finally, no atexit, no fixture teardown
        self.popen.wait(10)  # reaped: a zombie still answers kill -0

    def close(self) -> None:
        if self.popen.poll() is None:
            self.kill9()
        for stream in (self.popen.stdin, self.popen.stdout):
            if stream is not None:
                stream.close()


@pytest.fixture
def parent() -> Iterator[Callable[[str], Parent]]:
    made: list[Parent] = []

    def start(code: str) -> Parent:
        made.append(Parent(code))
        return made[-1]

    yield start
    for each in made:
        each.close()


def recorded_pids(path: Path, column: int) -> list[int]:
    """The PIDs in column ``column`` of a script's PID file."""
    return [int(line.split()[column]) for line in path.read_text().splitlines() if line.strip()]


def test_slurm_daemons_stop_once_the_session_is_killed(
    parent: Callable[[str], Parent],
) -> None:
    if not slurm_installed():
        pytest.skip("Slurm is not installed: bash scripts/slurm-cluster.sh install")
    session = parent(
        "from slurm_cluster import start_cluster\n"
        "print(json.dumps({'base': str(start_cluster(nodes=1).base)}), flush=True)"
    )
    base = Path(session.started()["base"])
    try:
        daemons = recorded_pids(base / "run" / "daemons.pids", 1)
        assert len(daemons) == 3 and all(map(running, daemons))  # munged, slurmctld, slurmd
        session.kill9()
        wait_for(all_gone(daemons), "the Slurm daemons to stop", timeout=STOP_DEADLINE)
    finally:
        stop_cluster(base)


def test_xrootd_ses_stop_once_the_session_is_killed(parent: Callable[[str], Parent]) -> None:
    require_xrootd()
    session = parent(
        "from xrootd_ses import start_ses\n"
        "print(json.dumps({'base': str(start_ses('XRD-K1', 'XRD-K2').base)}), flush=True)"
    )
    ses = XrootdSEs(Path(session.started()["base"]))
    try:
        daemons = recorded_pids(ses.base / "run" / "ses.pids", 2)
        assert len(daemons) == 2 and all(map(running, daemons))
        session.kill9()
        wait_for(all_gone(daemons), "the XRootD SEs to stop", timeout=STOP_DEADLINE)
    finally:
        stop_ses(ses)


def test_prometheus_stops_once_the_session_is_killed(
    parent: Callable[[str], Parent], tmp_path: Path
) -> None:
    if shutil.which("prometheus") is None and os.environ.get("CI") != "true":
        pytest.skip("no prometheus binary (bash scripts/prometheus.sh install)")
    base = tmp_path / "prometheus"
    base.mkdir()
    (base / "prometheus.yml").write_text("global:\n  scrape_interval: 1m\n")
    session = parent(
        "from pathlib import Path\n"
        "from prometheus_server import start_prometheus\n"
        f"base = Path({str(base)!r})\n"
        "print(json.dumps({'port': start_prometheus(base, base / 'prometheus.yml')}), flush=True)"
    )
    session.started()
    try:
        server = int((base / "prometheus.pid").read_text())
        assert running(server)
        session.kill9()
        wait_for(all_gone([server]), "Prometheus to stop", timeout=STOP_DEADLINE)
    finally:
        from prometheus_server import stop_prometheus

        stop_prometheus(base)


def process_group(group: int) -> list[int]:
    """The PIDs of the running processes in process group ``group``."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[2]) == group:
            members.append(int(stat.parent.name))
    return members


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def test_chromium_stops_once_the_session_is_killed(
    parent: Callable[[str], Parent], tmp_path: Path
) -> None:
    chromium_or_skip()
    session = parent(
        "from pathlib import Path\n"
        "from chromium_browser import driver_pid, start_browser\n"
        f"driver = start_browser(Path({str(tmp_path)!r}))\n"
        "print(json.dumps({'driver': driver_pid(driver)}), flush=True)"
    )
    group = int(session.started()["driver"])
    browser = process_group(group)
    try:
        assert group in browser
        assert any("--headless" in command_line(pid) for pid in browser), browser  # Chromium too
        session.kill9()
        wait_for(all_gone(browser), "chromedriver and Chromium to stop", timeout=STOP_DEADLINE)
    finally:
        for pid in process_group(group):
            os.kill(pid, signal.SIGKILL)


def test_postgres_stops_once_the_session_is_killed(parent: Callable[[str], Parent]) -> None:
    require_postgres()
    session = parent(
        "from postgres_server import start_server\n"
        "print(json.dumps({'base': str(start_server().base)}), flush=True)"
    )
    base = Path(session.started()["base"])
    try:
        server = int((base / "data" / "postmaster.pid").read_text().split()[0])
        assert running(server)
        session.kill9()
        wait_for(all_gone([server]), "PostgreSQL to stop", timeout=STOP_DEADLINE)
    finally:
        subprocess.run(
            ["bash", str(REPO / "scripts" / "postgres-local.sh"), "stop", str(base)],
            capture_output=True,
            timeout=60,
            check=False,
        )
        shutil.rmtree(base, ignore_errors=True)


def test_a_central_service_stops_once_the_session_is_killed(
    parent: Callable[[str], Parent], tmp_path: Path
) -> None:
    """As the start_central and web_grid fixtures arm it (tests/session_watch.py)."""
    session = parent(
        "from pathlib import Path\n"
        "from dirac_like.processes import ServiceProcess\n"
        "from session_watch import stop_with_session\n"
        f"service = ServiceProcess.start_central(Path({str(tmp_path / 'home')!r}))\n"
        "stop_with_session(service.pid)\n"
        "print(json.dumps({'pid': service.pid}), flush=True)"
    )
    service = int(session.started()["pid"])
    try:
        assert running(service)
        session.kill9()
        wait_for(all_gone([service]), "the central service to stop", timeout=STOP_DEADLINE)
    finally:
        if running(service):
            os.kill(service, signal.SIGKILL)


def test_the_watcher_leaves_daemons_alone_while_their_session_lives(tmp_path: Path) -> None:
    """The normal path: the session stops its daemon itself; the watcher neither touched it
    before nor outlives it."""
    session = subprocess.Popen(["sleep", "600"])
    daemon = subprocess.Popen(["sleep", "600"])
    marker = tmp_path / "stopped"
    try:
        subprocess.run(
            ["bash", str(WATCHER), str(session.pid), str(daemon.pid), "--", "touch", str(marker)],
            check=True,
            timeout=30,
        )
        watchers = wait_for(lambda: watchers_of(session.pid), "the watcher to start", timeout=10)
        assert daemon.poll() is None and not marker.exists()
        daemon.kill()
        daemon.wait(10)
        wait_for(all_gone(watchers), "the watcher to exit with its daemon", timeout=STOP_DEADLINE)
        assert not marker.exists()  # the stop command ran not: the session still lives
    finally:
        for child in (session, daemon):
            child.kill()
            child.wait(10)


def watchers_of(session: int) -> list[int]:
    """The watchers of stop-when-gone.sh that watch PID ``session``."""
    wanted = f"stop-when-gone.sh --watch {session} "
    return [
        int(path.name)
        for path in Path("/proc").glob("[0-9]*")
        if wanted in command_line(int(path.name))
    ]
