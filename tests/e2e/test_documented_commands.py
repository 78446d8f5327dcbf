"""End to end: the command blocks of README.md's "Using it", "Web dashboard" and "Accounting and
metrics", taken from README.md itself and run as a user runs them (tests/documented_shell.py),
against a real central service, real pilots, a real site director and the real dashboard.

The commands are expanded by the rules of tests/doc_commands.py (alternatives, ``[--opt]``
parts) and run in the document's order, each one expected to exit 0, with these rules for what
the document leaves to the reader:

- Long-running commands (``service central``, ``service web``, ``pilot``, ``agent director``)
  start in the background and are stopped by PID at the end; a second ``service central`` (the
  one with its own ``--home`` and ``--listen``) is started, seen listening, and stopped again
  (it must exit 0: "SIGTERM or Ctrl-C stops it cleanly").
- ``job wait`` needs something to run the jobs: the README's ``dirac-like pilot`` command (its
  own block, further down) is started before the first ``job wait``; where the document comes to
  it, it is checked to be running.
- ``admin kill-pilot`` and ``admin pilot-output`` name a director's pilot
  (``SITE.CE.N``): they run once the README's director has started a pilot for a job the test
  submits, with that pilot's id in place of the example's (ids, like ports, are the grid's own);
  ``pilot-output`` once that pilot has ended ("what an ended pilot printed").

Where the document says what a command prints or does, that is asserted (:data:`CHECKS`).
"""

from __future__ import annotations

import json
import re
import subprocess
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from doc_commands import DocCommand, documented_commands
from documented_shell import Daemon, UserShell, listening, user_shell

from dirac_like.client import Client, RetryPolicy
from dirac_like.identity import load_identity
from dirac_like.states import FINAL_STATUSES, JobStatus
from dirac_like.testing import wait_for

README = Path(__file__).resolve().parents[2] / "README.md"
SECTIONS = ("Using it", "Web dashboard", "Accounting and metrics")
PORTS = ("7700", "7780", "7800")  # the central service, the dashboard, the second service
PATHS = ("/srv/dl", "/tmp/p")  # the second service's home, the pilot's workdir
SITE = "DIRAC.Local.org"
DIRECTOR_PILOT = re.compile(r"\bDIRAC\.Local\.org\.[\w-]+\.\d+\b")
# A minute of real processes on a quiet 2-core machine; minutes on a loaded one.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]
RETRIES = RetryPolicy(timeout=10.0, retries=3, backoff=0.05, max_backoff=0.5)

Result = subprocess.CompletedProcess[str]
Check = Callable[[UserShell, Result, DocCommand], None]


def check_init(shell: UserShell, result: Result, command: DocCommand) -> None:
    home = shell.dirac_home
    assert result.stdout.startswith(f"Initialized {home}")
    for path in (home / "keys/service.key", home / "identities/admin.identity"):
        assert path.stat().st_mode & 0o777 == 0o600, path
    assert (home / "identities.json").exists()


def check_identity_add(shell: UserShell, result: Result, command: DocCommand) -> None:
    out = command.text.split("--out ")[1].split()[0]
    assert (shell.work / out).stat().st_mode & 0o777 == 0o600
    assert f"written to {out}" in result.stdout


def check_submit(shell: UserShell, result: Result, command: DocCommand) -> None:
    assert result.stdout.startswith("Submitted 12 jobs: 1..12"), result.stdout


def check_wait(shell: UserShell, result: Result, command: DocCommand) -> None:
    with shell_client(shell) as client:
        statuses = {row.job_id: row.status for row in client.status([1, 2, 3, 4, 5])}
    assert all(JobStatus(status) in FINAL_STATUSES for status in statuses.values()), statuses


def check_output(shell: UserShell, result: Result, command: DocCommand) -> None:
    assert (shell.work / "out/1/std.out").read_text() == "Hello from dirac-like\n"
    for job_id in (2, 3, 4):
        assert (shell.work / f"out/{job_id}/std.out").read_text().startswith("simulating event")


def check_get_input(shell: UserShell, result: Result, command: DocCommand) -> None:
    assert "Hello from dirac-like" in (shell.work / "in/1/hello.sh").read_text()


def check_completion(shell: UserShell, result: Result, command: DocCommand) -> None:
    script = shell.home / ".local/share/bash-completion/completions/dirac-like"
    assert "complete" in script.read_text() and "dirac-like" in script.read_text()
    assert subprocess.run(["bash", "-n", str(script)], check=False).returncode == 0


def check_web_login(shell: UserShell, result: Result, command: DocCommand) -> None:
    [link] = re.findall(r"http://127\.0\.0\.1:\d+/login\?token=\S+", result.stdout)
    assert f":{shell.port('7780')}/" in link
    with urllib.request.urlopen(link, timeout=30) as page:  # the one-time link logs in
        assert page.status == 200


def check_plot(shell: UserShell, result: Result, command: DocCommand) -> None:
    plot = shell.work / command.text.split("--plot ")[1].split()[0]
    assert f"plot written to {plot.name}" in result.stdout, result.stdout
    if plot.suffix == ".png":
        assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    else:
        assert "<svg" in plot.read_text()


def stdout_has(*texts: str) -> Check:
    def check(shell: UserShell, result: Result, command: DocCommand) -> None:
        for text in texts:
            assert text in result.stdout, f"{text!r} not in {result.stdout!r}"

    return check


# The documented effect of each command, by its words (the longest match wins).
CHECKS: dict[tuple[str, ...], Check] = {
    ("init",): check_init,
    ("admin", "identity", "add"): check_identity_add,
    ("admin", "identity", "list"): stdout_has("alice", "dir-cern"),
    ("admin", "identity", "revoke"): stdout_has("revoked"),
    ("job", "submit"): check_submit,
    ("job", "status"): stdout_has("JobID", "hello", "simulation_0", "simulation_1"),
    ("job", "summary"): stdout_has("Total"),
    ("job", "logging"): stdout_has("Received", "Waiting"),
    ("job", "jdl"): stdout_has('JobName = "hello"', "InputSandbox"),
    ("job", "kill"): stdout_has("Killed 1 job(s): 4"),
    ("job", "reschedule"): stdout_has("Rescheduled 1 job(s): 4"),
    ("job", "delete"): stdout_has("Deleted 1 job(s): 6"),
    ("job", "wait"): check_wait,
    ("admin", "ban-site"): stdout_has("banned"),
    ("admin", "set-share"): stdout_has("share 70"),
    ("admin", "shares"): stdout_has("Share"),
    ("job", "output"): check_output,
    ("job", "get-input"): check_get_input,
    ("admin", "pilots"): stdout_has(SITE),
    ("job", "why"): stdout_has("Job 7"),
    ("admin", "site", "drain"): stdout_has("drains"),
    ("admin", "site", "limit"): stdout_has("at most 200"),
    ("admin", "site", "show"): stdout_has("Site LCG.RAL.uk", "running limit 200"),
    ("admin", "kill-pilot"): stdout_has("told to stop"),
    ("admin", "pilot-output"): stdout_has("dirac_like"),
    ("completion",): check_completion,
    ("web-login",): check_web_login,
}


def check(shell: UserShell, command: DocCommand, result: Result) -> None:
    """What the document says the command prints or does (:data:`CHECKS`)."""
    if "--dry-run" in command.text.split():
        assert "Dry run: nothing done." in result.stdout, result.stdout
        return
    if "--plot" in command.text.split():
        check_plot(shell, result, command)
    if "--json" in command.text.split():
        json.loads(result.stdout)
    words = tuple(command.words[1:])
    for length in range(len(words), 0, -1):
        found = CHECKS.get(words[:length])
        if found is not None:
            found(shell, result, command)
            return


def shell_client(shell: UserShell) -> Client:
    identity = load_identity(shell.dirac_home / "identities/admin.identity")
    return Client(shell.env["DIRAC_LIKE_SERVER"], RETRIES, identity=identity)


def running_pilots(shell: UserShell) -> list[str]:
    with shell_client(shell) as client:
        return [row.pilot_id for row in client.pilots(site=SITE, states=["Running"])]


class ReadmeSession:
    """Runs the README's commands in order, with the rules of the module docstring."""

    def __init__(self, shell: UserShell, commands: list[DocCommand]) -> None:
        self.shell, self.commands = shell, commands
        self.central: Daemon | None = None
        self.pilot: Daemon | None = None
        self.director_pilot = ""
        self.director_lines: list[DocCommand] = []  # kill-pilot, pilot-output: deferred
        self.ran: list[DocCommand] = []

    def run_all(self) -> None:
        for command in self.commands:
            if DIRECTOR_PILOT.search(command.text):
                self.director_lines.append(command)
            elif command.is_dirac_like("service", "central"):
                self.start_central(command)
            elif command.is_dirac_like("service", "web"):
                self.shell.start(command, listening)
                self.ran.append(command)
            elif command.is_dirac_like("pilot"):
                self.start_pilot(command)
            elif command.is_dirac_like("agent", "director"):
                self.run_director(command)
            else:
                self.run(command)

    def run(self, command: DocCommand) -> Result:
        if command.is_dirac_like("job", "wait") and self.pilot is None:
            self.start_pilot(self.documented("pilot"))
        result = self.shell.run(command)
        check(self.shell, command, result)
        self.ran.append(command)
        return result

    def documented(self, *words: str) -> DocCommand:
        return next(command for command in self.commands if command.is_dirac_like(*words))

    def start_central(self, command: DocCommand) -> None:
        daemon = self.shell.start(command, listening)
        self.ran.append(command)
        if self.central is None:
            self.central = daemon
            return
        assert self.shell.stop(daemon) == 0, daemon.output()  # a second one: stops cleanly
        assert (Path(self.shell.as_run(command).split("--home ")[1].split()[0]) / "keys").exists()

    def start_pilot(self, command: DocCommand) -> None:
        if self.pilot is None:
            self.pilot = self.shell.start(command, lambda _: running_pilots(self.shell))
        assert self.pilot.running, self.pilot.output()
        self.ran.append(command)

    def run_director(self, command: DocCommand) -> None:
        """The director runs a job the test submits with a pilot of its own; then the deferred
        ``kill-pilot`` and ``pilot-output`` lines run on that pilot."""
        if self.pilot is not None:  # the pilot started by hand would take the job
            self.shell.stop(self.pilot)
        submitted = self.shell.run(DocCommand("dirac-like job submit etc/jobs/hello.jdl", 0, ""))
        job_id = int(submitted.stdout.split("Submitted 1 job: ")[1].split()[0])
        director = self.shell.start(command, lambda _: self.director_pilots())
        self.ran.append(command)
        with shell_client(self.shell) as client:
            wait_for(
                lambda: client.status([job_id])[0].status == JobStatus.DONE,
                f"job {job_id} to be done by the director's pilot",
            )
        [self.director_pilot, *_] = self.director_pilots()
        for line in sorted(self.director_lines, key=lambda c: "pilot-output" in c.text):
            if "pilot-output" in line.text:
                wait_for(self.pilot_ended, f"pilot {self.director_pilot} to end", timeout=60)
            self.run(self.with_director_pilot(line))
        assert director.running, director.output()

    def director_pilots(self) -> list[str]:
        return [pilot for pilot in running_pilots(self.shell) if DIRECTOR_PILOT.fullmatch(pilot)]

    def pilot_ended(self) -> bool:
        with shell_client(self.shell) as client:
            return client.pilot_output(self.director_pilot).collected

    def with_director_pilot(self, command: DocCommand) -> DocCommand:
        text = DIRECTOR_PILOT.sub(self.director_pilot, command.text)
        return DocCommand(text, command.line, command.source, command.comment)


def test_readme_commands_run_as_documented(tmp_path: Path) -> None:
    readme = README.read_text()
    commands = [command for section in SECTIONS for command in documented_commands(readme, section)]
    with user_shell(tmp_path, PORTS, PATHS) as shell:
        session = ReadmeSession(shell, commands)
        session.run_all()
        assert session.director_pilot, "the director started no pilot"
        ran = {(command.line, command.source) for command in session.ran}
        assert ran == {(command.line, command.source) for command in commands}
        for daemon in shell.daemons:
            assert "Traceback" not in daemon.stderr.read_text(), daemon.output()


def test_monitoring_commands_run_as_documented(tmp_path: Path) -> None:
    """docs/monitoring.md's blocks (accounting reports, the dashboard), in order, by the rules
    of the README's; the reports read the home of a central service the test starts first with
    the README's own commands (``/srv/dirac`` stands for that home), ``/srv/dl`` is a fresh one;
    that service is stopped when the dashboard block starts its own, on the same port."""
    commands = documented_commands((README.parent / "docs/monitoring.md").read_text())
    readme = documented_commands(README.read_text(), "Using it")
    with user_shell(tmp_path, PORTS, ("/srv/dl",)) as shell:
        shell.replacements["/srv/dirac"] = str(shell.dirac_home)
        shell.run(next(command for command in readme if command.is_dirac_like("init")))
        first = shell.start(
            next(c for c in readme if c.text == "dirac-like service central"), listening
        )
        for command in commands:
            if command.is_dirac_like("service", "central"):
                assert shell.stop(first) == 0, first.output()
            if command.is_dirac_like("service"):
                shell.start(command, listening)
            else:
                check(shell, command, shell.run(command))
        for daemon in shell.daemons:
            assert "Traceback" not in daemon.stderr.read_text(), daemon.output()


OPERATIONS_SECTIONS = ("2. Sites: ban, drain, limit, show", "5. The console")


def test_operations_site_and_console_commands_run_as_documented(tmp_path: Path) -> None:
    """docs/operations.md's sections on sites and the console, in order, on a service started
    with the README's own commands: each exits 0, and the site shown last is back to what the
    undo lines say (active, no limit). (Its other sections name jobs a grid has made: ids 1234
    and 17..116, mc.jdl, jobs two days old; not run.)"""
    text = (README.parent / "docs/operations.md").read_text()
    commands = [c for section in OPERATIONS_SECTIONS for c in documented_commands(text, section)]
    readme = documented_commands(README.read_text(), "Using it")
    with user_shell(tmp_path, PORTS) as shell:
        shell.run(next(command for command in readme if command.is_dirac_like("init")))
        shell.start(next(c for c in readme if c.text == "dirac-like service central"), listening)
        shown = [shell.run(command).stdout for command in commands]
    [last_show] = [out for c, out in zip(commands, shown, strict=True) if "site show" in c.text]
    assert last_show.startswith("Site LCG.RAL.uk: Active; running limit none"), last_show
    assert any(c.is_dirac_like("console") for c in commands)
