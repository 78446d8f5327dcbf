"""``dirac-like console`` driven through a pseudo-terminal (pexpect), as an operator types:
completion, a typo's suggestion, the site context, watch, history across sessions, and the same
authorization as the command line."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pexpect
import pytest
from test_cli import REPO, child_env

from dirac_like.client import Client
from dirac_like.identity import save_identity
from dirac_like.processes import ServiceProcess

HELLO = 'Executable = "/bin/echo"; Arguments = "hello";'
CERN = "LCG.CERN.cern"
TIMEOUT = 20


@pytest.fixture
def console(central: ServiceProcess, tmp_path: Path) -> Iterator[pexpect.spawn]:
    """Start (and always stop) ``dirac-like console`` on a pseudo-terminal."""
    spawned: list[pexpect.spawn] = []

    def start() -> pexpect.spawn:
        child = pexpect.spawn(
            sys.executable,
            [
                "-m",
                "dirac_like",
                "console",
                "--server",
                central.endpoint,
                "--home",
                str(tmp_path / "client-home"),
            ],
            cwd=str(REPO),
            env=child_env(TERM="xterm", PROMPT_TOOLKIT_NO_CPR="1", COLUMNS="160", LINES="50"),
            encoding="utf-8",
            timeout=TIMEOUT,
            dimensions=(50, 160),
        )
        spawned.append(child)
        child.expect("Ctrl-D leaves")
        return child

    yield start  # type: ignore[misc]
    for child in spawned:
        if child.isalive():
            child.kill(9)
        child.close(force=True)


def test_the_console_drives_the_grid(
    console: pexpect.spawn, client: Client, tmp_path: Path
) -> None:
    [anywhere, at_cern] = client.submit([HELLO, HELLO + f' Site = "{CERN}";'], owner="")
    shell = console()  # type: ignore[operator]

    shell.send("jbo status 1\r")  # a typo gets a suggestion
    shell.expect("unknown command 'jbo': did you mean 'job'\\?")

    shell.send("job sta\t")  # completes to "job status"
    shell.expect("tus")
    shell.send(f" {at_cern}\r")
    shell.expect(f"{at_cern} +. Waiting")

    shell.send(f"use site {CERN}\r")
    shell.expect(f"context: site {CERN}")
    shell.send("job list --json\r")  # gets --site LCG.CERN.cern from the context
    shell.expect('"job_id": 2')
    shell.expect("dirac-like \\[LCG.CERN.cern\\]>")
    assert '"job_id": 1,' not in shell.before

    shell.send(f"watch -n 0.1 --count 2 job status {at_cern}\r")
    for _ in range(2):
        shell.expect(f"every 0.1 s: job status {at_cern}")
        shell.expect("Waiting")

    shell.send("kill job 1\r")  # not a command: nothing is killed
    shell.expect("unknown command 'kill'")
    shell.expect("dirac-like \\[LCG.CERN.cern\\]>")  # the prompt is up: it reads keys again
    shell.sendcontrol("d")
    shell.expect(pexpect.EOF)
    assert [row.status for row in client.status([anywhere, at_cern])] == ["Waiting"] * 2

    again = console()  # type: ignore[operator]
    again.expect("dirac-like>")
    again.send("\x1b[A")  # Up: the last command of the previous session
    again.send("\r")
    again.expect("unknown command 'kill'")
    history = (tmp_path / "client-home" / "console_history").read_text()
    assert "use site LCG.CERN.cern" in history


def test_the_console_has_the_authorization_of_its_identity(
    console: pexpect.spawn,
    client: Client,
    central: ServiceProcess,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client.submit([HELLO], owner="")  # the admin's job
    user = tmp_path / "bob.identity"
    save_identity(user, client.identity_add("bob", "user", ["physics"]))
    monkeypatch.setenv("DIRAC_LIKE_IDENTITY", str(user))
    shell = console()  # type: ignore[operator]

    shell.send("job kill 1\r")
    shell.expect("job 1 not found")  # another user's job: exactly as if it did not exist
    shell.send("exit\r")
    shell.expect(pexpect.EOF)
