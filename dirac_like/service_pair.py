"""Two central services on one PostgreSQL store, as child processes (tests, chaos, trying it).

Each instance has a home of its own, copies of one initialized home (the same service keys and
first admin; the identity registry is then shared through the store), and a fixed loopback port;
both run ``dirac-like service central`` on the same config (``store.url`` a PostgreSQL URL). Their
clients name both: :attr:`ServicePair.endpoint` is ``URL_A,URL_B``. Stopping is by PID.

:meth:`ServicePair.kill_leader` is the fault of issue 18: ``kill -9`` of whichever instance leads,
then the time until the other one answers as leader (the failover time) is measured and kept.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from dirac_like.client import Client, RetryPolicy
from dirac_like.errors import DiracLikeError, ServiceUnavailable
from dirac_like.identity import Identity, load_identity
from dirac_like.processes import dirac_like_argv, free_port
from dirac_like.registry import init_home

PROBE_POLICY = RetryPolicy(timeout=0.3, retries=0)  # one short try: is this one leading?
FAILOVER_DEADLINE = 60.0  # seconds a failover may take before the pair is declared broken
NAMES = ("a", "b")


class ServicePair:
    def __init__(self, folder: Path, store_url: str, extra_config: str = "") -> None:
        self.folder = folder
        self.store_url = store_url
        folder.mkdir(parents=True, exist_ok=True)
        self.homes = [folder / f"home-{name}" for name in NAMES]
        self.config = folder / "pair.toml"
        self.config.write_text(
            f'{extra_config}\n[store]\nurl = {_toml_string(store_url)}\n\n[metrics]\nlisten = ""\n'
        )
        self.listens = [f"tcp://127.0.0.1:{free_port()}" for _ in NAMES]
        self.popens: list[subprocess.Popen[bytes] | None] = [None, None]
        # each instance's program (``dirac-like``; a test may run another release's)
        self.programs = [dirac_like_argv() for _ in NAMES]
        self.failovers: list[float] = []  # seconds from each kill_leader to the next leader

    @property
    def endpoint(self) -> str:
        """What clients name: both instances."""
        return ",".join(self.listens)

    @property
    def home(self) -> Path:
        return self.homes[0]

    @property
    def identity_path(self) -> Path:
        """The first admin's identity (the same in both homes)."""
        return init_home(self.homes[0], time.time()).admin_identity

    # -- processes -------------------------------------------------------------------------------

    def start(self, timeout: float = 60.0, only: tuple[int, ...] = (0, 1)) -> None:
        """Start every instance not running (of ``only``; the homes are made the first time),
        and wait until each one stands by or leads."""
        if not self.homes[1].exists():
            init_home(self.homes[0], time.time())
            shutil.copytree(self.homes[0], self.homes[1], symlinks=True)
        started = [index for index in only if not self.running(index)]
        offsets = {index: self.start_instance(index) for index in started}
        deadline = time.monotonic() + timeout
        for index, offset in offsets.items():
            while not self._up(index, offset):
                if time.monotonic() > deadline or not self.running(index):
                    raise ServiceUnavailable(
                        f"instance {NAMES[index]} of the pair did not start; see "
                        f"{self.log_path(index)}"
                    )
                time.sleep(0.05)

    def log_path(self, index: int) -> Path:
        return self.folder / f"instance-{NAMES[index]}.log"

    def _up(self, index: int, offset: int) -> bool:
        with open(self.log_path(index), "rb") as log:
            log.seek(offset)
            said = log.read()
        return b"standing by to serve" in said

    def start_instance(self, index: int) -> int:
        """Start instance ``index``; returns where its new lines begin in its log."""
        home = self.homes[index]
        command = [
            *self.programs[index], "service", "central", "--home", str(home),
            "--config", str(self.config), "--listen", self.listens[index],
        ]  # fmt: skip
        with open(self.log_path(index), "ab") as log:
            offset = log.tell()
            self.popens[index] = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True
            )
        return offset

    def running(self, index: int) -> bool:
        popen = self.popens[index]
        return popen is not None and popen.poll() is None

    def terminate(self, index: int, grace: float = 15.0) -> int:
        """SIGTERM to instance ``index`` (``kill -9`` after ``grace`` seconds); its exit code."""
        popen = self.popens[index]
        if popen is None:
            raise ValueError(f"instance {NAMES[index]} was not started")
        popen.send_signal(signal.SIGTERM)
        try:
            return popen.wait(grace)
        except subprocess.TimeoutExpired:
            self.kill9(index)
            return -signal.SIGKILL

    def kill9(self, index: int) -> None:
        popen = self.popens[index]
        if popen is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(popen.pid, signal.SIGKILL)
            popen.wait(10)
        self.popens[index] = None

    def stop(self, grace: float = 15.0) -> None:
        """SIGTERM to both, then SIGKILL to what is left after ``grace`` seconds."""
        for popen in self.popens:
            if popen is not None and popen.poll() is None:
                popen.send_signal(signal.SIGTERM)
        for index, popen in enumerate(self.popens):
            if popen is None:
                continue
            try:
                popen.wait(grace)
            except subprocess.TimeoutExpired:
                self.kill9(index)
            self.popens[index] = None

    # -- leadership ------------------------------------------------------------------------------

    def answering(self, index: int) -> bool:
        """Whether instance ``index`` answers on its own endpoint (only a leader listens)."""
        with Client(self.listens[index], PROBE_POLICY, identity=self._identity()) as client:
            try:
                client.service_status()
            except (ServiceUnavailable, DiracLikeError):
                return False
        return True

    def leader(self, timeout: float = FAILOVER_DEADLINE, other_than: int | None = None) -> int:
        """The index of the instance that answers, waiting up to ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for index in range(len(NAMES)):
                if index != other_than and self.answering(index):
                    return index
        raise ServiceUnavailable(f"no instance of the pair led within {timeout:.0f} s")

    def kill_leader(self) -> float:
        """``kill -9`` of the leader; returns (and keeps) the seconds until the other leads.
        The killed instance is not restarted (:meth:`start` does)."""
        index = self.leader()
        killed = time.monotonic()
        self.kill9(index)
        self.leader(other_than=index)
        seconds = time.monotonic() - killed
        self.failovers.append(seconds)
        return seconds

    def _identity(self) -> Identity:
        return load_identity(self.identity_path)


def _toml_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
