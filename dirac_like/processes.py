"""Start and stop dirac-like daemons as child processes (used by the demo, tests, benchmarks).

A daemon is started with ``python -P -m dirac_like ...`` (:func:`dirac_like_argv`) in its own
process group; it prints one line
``... listening on ENDPOINT`` on stdout, which :meth:`ServiceProcess.start` waits for (with a
deadline). Stopping is by PID: SIGTERM, then SIGKILL after a grace period.

A central service runs secure unless asked otherwise: :meth:`ServiceProcess.start_central`
initializes its home first (service keys, a first admin identity) and exposes that identity
(``identity_path``, ``identity``) for the clients of whoever started it.
"""

from __future__ import annotations

import os
import selectors
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from dirac_like.errors import ServiceUnavailable
from dirac_like.identity import Identity, load_identity
from dirac_like.registry import init_home


def dirac_like_argv(*args: str, python: str | None = None) -> list[str]:
    """The command line of a dirac-like child process: ``PYTHON -P -m dirac_like ARGS...``.

    ``-P`` keeps the current folder off ``sys.path``: a child started from a clone of the
    repository imports the installed dirac-like, never the source tree beside it (where
    ``dirac_like.services`` and ``dirac_like.agents`` do not exist)."""
    return [python or sys.executable, "-P", "-m", "dirac_like", *args]


class ServiceProcess:
    def __init__(
        self,
        popen: subprocess.Popen[bytes],
        endpoint: str,
        home: Path,
        identity_path: Path | None = None,
        metrics_url: str = "",
    ) -> None:
        self.popen = popen
        self.endpoint = endpoint
        self.metrics_url = metrics_url  # its /metrics ('' when it opened none)
        self.home = home
        self.identity_path = identity_path  # the home's admin identity; None: --insecure

    @property
    def identity(self) -> Identity | None:
        """The admin identity of the service's home (None when it runs --insecure)."""
        return None if self.identity_path is None else load_identity(self.identity_path)

    @property
    def pid(self) -> int:
        return self.popen.pid

    @classmethod
    def start_central(
        cls,
        home: Path,
        config: Path | None = None,
        listen: str = "tcp://127.0.0.1:*",
        timeout: float = 60.0,
        insecure: bool = False,
    ) -> ServiceProcess:
        """Start a central service on a free loopback port and wait until it listens; its home
        is initialized first (kept as it is when it was already)."""
        home.mkdir(mode=0o700, parents=True, exist_ok=True)
        identity_path = None if insecure else init_home(home, time.time()).admin_identity
        command = dirac_like_argv("service", "central", "--home", str(home), "--listen", listen)
        if config is not None:
            command += ["--config", str(config)]
        if insecure:
            command.append("--insecure")
        stderr = os.fdopen(
            os.open(home / "central.stderr", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab"
        )
        popen = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=stderr,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        stderr.close()
        try:
            lines = _wait_for_endpoint(popen, timeout)
        except BaseException:
            _terminate(popen, 5.0)
            raise
        metrics = [line for line in lines if " metrics on " in line]
        return cls(
            popen,
            lines[-1].rsplit(" ", 1)[-1],
            home,
            identity_path,
            metrics[0].rsplit(" ", 1)[-1] if metrics else "",
        )

    @classmethod
    def start_web(
        cls,
        home: Path,
        server: str,
        identity: Path | None,
        config: Path | None = None,
        listen: str = "127.0.0.1:0",
        extra: tuple[str, ...] = (),
        timeout: float = 60.0,
    ) -> ServiceProcess:
        """Start the web dashboard on the home of a running central service (``server``), on a
        free loopback port, and wait until it listens; its ``endpoint`` is its http:// URL.
        ``identity``: the dashboard's own (for kill and reschedule); None: read-only."""
        command = dirac_like_argv(
            "service", "web", "--home", str(home), "--listen", listen, "--server", server, *extra
        )
        command += ["--identity", str(identity)] if identity else ["--read-only"]
        if config is not None:
            command += ["--config", str(config)]
        stderr = os.fdopen(
            os.open(home / "web.stderr", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab"
        )
        popen = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=stderr,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        stderr.close()
        try:
            lines = _wait_for_endpoint(popen, timeout, "web dashboard")
        except BaseException:
            _terminate(popen, 5.0)
            raise
        return cls(popen, lines[-1].rsplit(" ", 1)[-1], home, identity)

    def stop(self, grace: float = 15.0) -> int | None:
        """SIGTERM, wait up to ``grace`` seconds, then SIGKILL. Returns the exit code."""
        return _terminate(self.popen, grace)

    def kill9(self) -> None:
        """Kill the process at once (SIGKILL), as a crash would."""
        if self.popen.poll() is None:
            os.kill(self.popen.pid, signal.SIGKILL)
        self.popen.wait(10)
        if self.popen.stdout:
            self.popen.stdout.close()

    def stderr_text(self) -> str:
        path = self.home / "central.stderr"
        return path.read_text(errors="replace") if path.exists() else ""


def _wait_for_endpoint(
    popen: subprocess.Popen[bytes], timeout: float, what: str = "central service"
) -> list[str]:
    """The process's lines on stdout up to the one saying where it listens (the last)."""
    assert popen.stdout is not None
    deadline = time.monotonic() + timeout
    buffer = b""
    with selectors.DefaultSelector() as selector:
        selector.register(popen.stdout, selectors.EVENT_READ)
        while b" listening on " not in buffer or not buffer.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or popen.poll() is not None:
                raise ServiceUnavailable(
                    f"{what} did not start (exit code {popen.poll()}); see its stderr"
                )
            if selector.select(min(left, 0.5)):
                chunk = os.read(popen.stdout.fileno(), 4096)
                if not chunk:
                    continue
                buffer += chunk
    lines = buffer.decode().splitlines()
    last = next(index for index, line in enumerate(lines) if " listening on " in line)
    return lines[: last + 1]


def _terminate(popen: subprocess.Popen[bytes], grace: float) -> int | None:
    if popen.poll() is None:
        popen.send_signal(signal.SIGTERM)
        try:
            popen.wait(grace)
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait(10)
    if popen.stdout:
        popen.stdout.close()
    return popen.returncode


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port
