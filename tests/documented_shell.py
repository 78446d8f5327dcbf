"""A user's shell for the tests of the documented commands (tests/e2e/test_documented_*.py).

:class:`UserShell` runs commands taken from the documents (tests/doc_commands.py) the way a user
runs them: ``bash -c`` in a work folder holding a copy of the clone's ``etc/`` (the job files,
site files and configuration the documents name) and its ``scripts/``, with ``HOME`` a fresh
folder (so ``~/.dirac-like`` is the test's own), no ``DIRAC_LIKE_*`` variable inherited, and the
``dirac-like`` installed with this Python first on ``PATH``.

The fixed ports and paths the documents name are replaced by the test's own (whole words only,
:func:`doc_commands.substitute`): each port by a free one, each path by a fresh folder. A
``service central`` or ``service web`` written without ``--listen`` listens on the documented
default port (7700, 7780): the shell appends ``--listen`` with the port that stands in for it,
and ``DIRAC_LIKE_SERVER`` names the port standing in for 7700 (the clients' default). Nothing
else in a command is changed.

Long-running commands (:func:`is_daemon`) are started in the background, in a session of their
own, and stopped by their PID (SIGTERM, then SIGKILL) when the shell closes, pass or fail.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from doc_commands import DocCommand, substitute

from dirac_like.processes import ServiceProcess, free_port
from dirac_like.testing import wait_for

REPO = Path(__file__).resolve().parents[1]
COMMAND_TIMEOUT = 120.0
START_TIMEOUT = 60.0
DEFAULT_LISTEN = {("service", "central"): "tcp://127.0.0.1:{}", ("service", "web"): "127.0.0.1:{}"}
DEFAULT_PORT = {("service", "central"): "7700", ("service", "web"): "7780"}


def is_daemon(command: DocCommand) -> bool:
    """Whether the command runs until stopped: written with ``&``, or a service, a pilot, or an
    agent without ``--once``."""
    once = "--once" in command.text.split()
    return (
        command.background
        or command.is_dirac_like("service")
        or command.is_dirac_like("pilot")
        or (command.is_dirac_like("agent") and not once)
    )


def scripts_folder() -> Path:
    """The folder holding the ``dirac-like`` command installed with this Python."""
    for folder in (sysconfig.get_path("scripts"), str(Path(sys.executable).parent)):
        if (Path(folder) / "dirac-like").exists():
            return Path(folder)
    raise AssertionError(f"no dirac-like command installed beside {sys.executable}")


@dataclass
class Daemon:
    """A long-running documented command, started in the background."""

    command: DocCommand
    text: str  # as run
    process: ServiceProcess
    stdout: Path
    stderr: Path

    @property
    def running(self) -> bool:
        return self.process.popen.poll() is None

    def output(self) -> str:
        return self.stdout.read_text(errors="replace") + self.stderr.read_text(errors="replace")


class UserShell:
    def __init__(self, root: Path, ports: tuple[str, ...] = (), paths: tuple[str, ...] = ()):
        """``ports`` and ``paths``: the fixed ones the documents name, each replaced by the
        test's own (a free port; a fresh folder directly in /tmp, enterable by every user: a
        PostgreSQL server started as root runs as ``postgres``)."""
        self.root = root
        self.home = root / "user"  # $HOME
        self.work = root / "work"  # the current folder
        self.home.mkdir(parents=True)
        self.work.mkdir()
        shutil.copytree(REPO / "etc", self.work / "etc")
        (self.work / "scripts").symlink_to(REPO / "scripts")
        self.replacements: dict[str, str] = {port: str(free_port()) for port in ports}
        self._folders: list[Path] = []
        for path in paths:
            folder = Path(tempfile.mkdtemp(prefix="dl-doc-", dir="/tmp"))
            folder.chmod(0o755)
            self._folders.append(folder)
            self.replacements[path] = str(folder)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("DIRAC_LIKE_")}
        self.env["HOME"] = str(self.home)
        self.env["PATH"] = f"{scripts_folder()}{os.pathsep}{self.env.get('PATH', '')}"
        if "7700" in self.replacements:
            self.env["DIRAC_LIKE_SERVER"] = f"tcp://127.0.0.1:{self.replacements['7700']}"
        self.daemons: list[Daemon] = []

    @property
    def dirac_home(self) -> Path:
        return self.home / ".dirac-like"

    def port(self, documented: str) -> str:
        return self.replacements[documented]

    def as_run(self, command: DocCommand) -> str:
        """The command's text with the test's ports and paths (see the module docstring)."""
        text = substitute(command.text, self.replacements)
        for words, listen in DEFAULT_LISTEN.items():
            if command.is_dirac_like(*words) and "--listen" not in text.split():
                port = self.replacements.get(DEFAULT_PORT[words])
                if port is not None:
                    text += f" --listen {listen.format(port)}"
        return text

    def run(
        self, command: DocCommand, returncode: int = 0, env: Mapping[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run the command to its end; assert its exit code."""
        text = self.as_run(command)
        print(f"$ {text}", flush=True)  # shown with a failure
        result = subprocess.run(
            ["bash", "-c", text],
            cwd=self.work,
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
            stdin=subprocess.DEVNULL,
        )
        assert result.returncode == returncode, (
            f"line {command.line}: {command.source!r}\nran {text!r}: exit code "
            f"{result.returncode}, documented {returncode}\n"
            f"stdout: {result.stdout}\nstderr: {result.stderr}"
        )
        return result

    def export(self, command: DocCommand) -> None:
        """``export NAME=VALUE ...``: the variables hold for the commands that follow, as in the
        user's terminal (each command runs in a shell of its own)."""
        words = shlex.split(substitute(command.text, self.replacements))
        assert words[0] == "export", command.text
        for word in words[1:]:
            name, _, value = word.partition("=")
            self.env[name] = value
        print(f"$ {shlex.join(words)}", flush=True)

    def start(
        self,
        command: DocCommand,
        ready: Callable[[Daemon], object],
        env: Mapping[str, str] | None = None,
    ) -> Daemon:
        """Start a long-running command in the background; return once ``ready(daemon)`` is true
        (AssertionError if it ends first or takes longer than START_TIMEOUT)."""
        text = self.as_run(command)
        print(f"$ {text} &", flush=True)
        number = len(self.daemons)
        stdout, stderr = self.root / f"daemon-{number}.out", self.root / f"daemon-{number}.err"
        with stdout.open("wb") as out, stderr.open("wb") as err:
            popen = subprocess.Popen(
                ["bash", "-c", f"exec {text}"],
                cwd=self.work,
                env={**self.env, **(env or {})},
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        daemon = Daemon(command, text, ServiceProcess(popen, "", self.work), stdout, stderr)
        self.daemons.append(daemon)

        def started() -> object:
            assert daemon.running, (
                f"line {command.line}: {text!r} ended (exit code {popen.returncode}):\n"
                f"{daemon.output()}"
            )
            return ready(daemon)

        wait_for(started, f"{text!r} to be ready", timeout=START_TIMEOUT, interval=0.05)
        return daemon

    def stop(self, daemon: Daemon) -> int | None:
        """Stop a daemon by its PID (SIGTERM, then SIGKILL); its exit code."""
        return daemon.process.stop()

    def close(self) -> None:
        for daemon in reversed(self.daemons):
            daemon.process.stop()
        for folder in self._folders:  # and the files the commands made beside it (/tmp/pg.toml)
            shutil.rmtree(folder, ignore_errors=True)
            for beside in folder.parent.glob(f"{folder.name}.*"):
                beside.unlink()


def listening(daemon: Daemon) -> bool:
    """Ready test of a service: it printed where it listens (or, one of a pair, that it stands
    by to serve there)."""
    printed = daemon.stdout.read_text(errors="replace")
    return " listening on " in printed or " standing by to serve on " in printed


@contextmanager
def user_shell(
    root: Path, ports: tuple[str, ...] = (), paths: tuple[str, ...] = ()
) -> Iterator[UserShell]:
    """A :class:`UserShell` whose daemons are stopped by PID when the block ends."""
    shell = UserShell(root, ports, paths)
    try:
        yield shell
    finally:
        shell.close()
