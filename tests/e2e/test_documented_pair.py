"""End to end: the PostgreSQL blocks of the documents, taken from them and run as written
(tests/documented_shell.py): docs/postgresql.md's (a throw-away server by
scripts/postgres-local.sh, a central service on it, the server stopped), then README.md's
"High availability" (the server started again, two central services on it, and ``admin service
status`` through both, which must show one leader and one standby).

``/tmp/pg`` and the ports 7700, 7701 and 7702 are the test's own; ``sudo X`` runs as ``X`` (CI
runs as root; the install step is a no-op once .ci/run installed PostgreSQL); ``export`` lines
hold for the commands after them; a service written in the foreground (no ``&``) is stopped, as
with Ctrl-C, before the next line is typed, and must exit 0; the ``&`` ones run in the
background and are stopped by PID at the end, then the PostgreSQL server by the PID in its
postmaster.pid, pass or fail. (A module of its own: a PostgreSQL server costs seconds to make,
and xdist gives each module to one worker.)"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import pytest
from doc_commands import DocCommand, documented_commands
from documented_shell import UserShell, is_daemon, listening, user_shell
from postgres_server import PostgresServer, require_postgres

from dirac_like.testing import wait_for

REPO = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


def leading(shell: UserShell) -> bool:
    """Whether one of the running services leads: it printed that it listens (an instance of a
    pair first says it stands by; it takes the lead within a second or so, the document's "who
    leads" needs one)."""
    running = [daemon for daemon in shell.daemons if daemon.running]
    return any(" listening on " in daemon.stdout.read_text() for daemon in running)


def run_block(shell: UserShell, commands: list[DocCommand]) -> str:
    """Run the commands in order by the rules above; the output of the last one."""
    last = ""
    for command in commands:
        if command.text.startswith("sudo "):
            command = replace(command, text=command.text.removeprefix("sudo "))
        if command.text.startswith("export "):
            shell.export(command)
        elif is_daemon(command):
            daemon = shell.start(command, listening)
            if not command.background:  # Ctrl-C before the next line
                wait_for(lambda: leading(shell), "the service to lead")
                assert shell.stop(daemon) == 0, daemon.output()
        else:  # the watcher stops the server should this test's process die first
            if any(daemon.running for daemon in shell.daemons):
                wait_for(lambda: leading(shell), "one of the services to lead")
            last = shell.run(command, env={"WATCH_PID": str(os.getpid())}).stdout
    return last


@contextmanager
def postgres_shell(root: Path) -> Iterator[UserShell]:
    """A user shell whose ``/tmp/pg`` server is stopped by its PID at the end, after the
    shell's services, pass or fail."""
    require_postgres()
    with user_shell(root, ("7700", "7701", "7702"), ("/tmp/pg",)) as shell:
        server = PostgresServer(Path(shell.replacements["/tmp/pg"]), url="")
        try:
            yield shell
        finally:
            for daemon in shell.daemons:
                shell.stop(daemon)
            if (server.base / "data/postmaster.pid").exists():
                server.stop()


def test_postgresql_commands_run_as_documented(tmp_path: Path) -> None:
    commands = documented_commands((REPO / "docs/postgresql.md").read_text())
    with postgres_shell(tmp_path) as shell:
        run_block(shell, commands)
        folder = Path(shell.replacements["/tmp/pg"])
        assert (folder / "url").read_text().startswith("postgresql://dirac:dirac@127.0.0.1:")
        assert not (folder / "data/postmaster.pid").exists()  # the last line stopped it
        assert (shell.dirac_home / "keys").exists()  # the service ran on the user's home...
        assert not (shell.dirac_home / "jobs.sqlite").exists()  # ...with its store on PostgreSQL


def roles(status: str) -> dict[str, str]:
    """{instance: role} from the table ``admin service status`` prints (an instance is named
    HOST/ENDPOINT; the first two columns, as the other cells may be wrapped onto more lines
    when the output is not a terminal)."""
    rows = [line.split() for line in status.splitlines() if "/tcp://" in line]
    return {row[0]: row[1] for row in rows}


def test_readme_pair_commands_run_as_documented(tmp_path: Path) -> None:
    """Every command of the block runs; ``admin service status`` must show one leader and one
    standby; it is run again until it does (each instance notes itself every 2 s), at most
    30 s."""
    commands = documented_commands((REPO / "README.md").read_text(), "High availability")
    [status] = [
        command for command in commands if command.is_dirac_like("admin", "service", "status")
    ]
    with postgres_shell(tmp_path) as shell:
        run_block(shell, commands)

        seen: list[str] = []

        def both_seen() -> str:
            seen.append(shell.run(status).stdout)
            return seen[-1] if sorted(roles(seen[-1]).values()) == ["leader", "standby"] else ""

        try:
            printed = wait_for(both_seen, "one leader and one standby", timeout=30, interval=0.5)
        except AssertionError as timed_out:
            outputs = "\n".join(daemon.output()[-2000:] for daemon in shell.daemons)
            raise AssertionError(f"{timed_out}; it printed:\n{seen[-1]}\n{outputs}") from None
        ports = sorted([shell.port("7701"), shell.port("7702")])
    assert printed.startswith("store: postgresql"), printed
    endpoints = sorted(name.split("/", 1)[1] for name in roles(printed))
    assert endpoints == [f"tcp://127.0.0.1:{port}" for port in ports], printed
