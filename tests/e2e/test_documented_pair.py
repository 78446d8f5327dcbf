"""End to end: README.md's "High availability" block, taken from README.md and run as written
(tests/documented_shell.py): a throw-away PostgreSQL server by scripts/postgres-local.sh, two
central services on it, and ``admin service status`` through both, which must show one leader
and one standby. ``/tmp/pg`` and the ports 7701 and 7702 are the test's own; ``export`` lines
hold for the commands after them; the ``&`` commands run in the background and are stopped by
PID, then the PostgreSQL server by the PID in its postmaster.pid, pass or fail. (Its own module:
starting a PostgreSQL server costs seconds, and xdist gives each module to one worker.)"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from doc_commands import DocCommand, documented_commands
from documented_shell import UserShell, is_daemon, listening, user_shell
from postgres_server import PostgresServer, require_postgres

README = Path(__file__).resolve().parents[2] / "README.md"
pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


def run_pair_block(shell: UserShell, commands: list[DocCommand]) -> str:
    """Run the block in order; the output of its last command."""
    last = ""
    for command in commands:
        if command.text.startswith("export "):
            shell.export(command)
        elif is_daemon(command):
            shell.start(command, listening)
        else:  # the watcher stops the server should this test's process die first
            last = shell.run(command, env={"WATCH_PID": str(os.getpid())}).stdout
    return last


def test_readme_pair_commands_run_as_documented(tmp_path: Path) -> None:
    require_postgres()
    commands = documented_commands(README.read_text(), "High availability")
    assert commands[-1].is_dirac_like("admin", "service", "status"), commands[-1]
    with user_shell(tmp_path, ("7701", "7702"), ("/tmp/pg",)) as shell:
        server = PostgresServer(Path(shell.replacements["/tmp/pg"]), url="")
        try:
            printed = run_pair_block(shell, commands)
        finally:
            for daemon in shell.daemons:
                shell.stop(daemon)
            if (server.base / "url").exists():
                server.stop()
    assert printed.startswith("store: postgresql"), printed
    rows = [line.split() for line in printed.splitlines() if "tcp://" in line]
    roles = {row[3]: row[1] for row in rows}  # endpoint: role
    ports = [shell.port("7701"), shell.port("7702")]
    assert sorted(roles.values()) == ["leader", "standby"], printed
    assert sorted(roles) == [f"tcp://127.0.0.1:{port}" for port in sorted(ports)], printed
