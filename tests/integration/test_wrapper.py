"""The job wrapper with real processes: outcomes, output files, watchdog kills, kill requests,
process trees that try to survive, and arguments that try to reach a shell.

Limits and intervals are short; nothing sleeps to wait for a condition (``wait_for`` polls with
a deadline). Every process a test starts is killed by PID at teardown, pass or fail.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from dirac_like.agents.watchdog import Limits, Sample
from dirac_like.agents.wrapper import (
    MARKER_VARIABLE,
    PayloadResult,
    PayloadRunner,
    PayloadSpec,
    run_payload,
)
from dirac_like.errors import InvalidArgument
from dirac_like.testing import wait_for

INTERVAL = 0.2
GRACE = 0.5


def alive(process: psutil.Process) -> bool:
    try:
        return bool(process.is_running() and process.status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False


def python(code: str) -> str:
    """Arguments that run ``code`` with this interpreter (the executable is sys.executable)."""
    return shlex.join(["-c", code])


class Payloads:
    """Builds specs in one working directory, runs payloads, and kills leftovers at teardown."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.runners: list[tuple[PayloadRunner, threading.Thread]] = []
        self.tracked: list[psutil.Process] = []

    def spec(self, executable: str, arguments: str = "", **fields: Any) -> PayloadSpec:
        return PayloadSpec(
            job_id=fields.pop("job_id", 42),
            executable=executable,
            workdir=self.workdir,
            arguments=arguments,
            **fields,
        )

    def script(self, name: str, text: str) -> str:
        path = self.workdir / name
        path.write_text(text)
        path.chmod(0o755)
        return name

    def run(self, spec: PayloadSpec, limits: Limits | None = None, **options: Any) -> PayloadResult:
        _runner, thread, box = self.start(spec, limits, **options)
        thread.join(60)
        assert not thread.is_alive(), "the wrapper did not finish"
        return box[0]

    def start(
        self, spec: PayloadSpec, limits: Limits | None = None, **options: Any
    ) -> tuple[PayloadRunner, threading.Thread, list[PayloadResult]]:
        options.setdefault("sample_interval", INTERVAL)
        options.setdefault("kill_grace", GRACE)
        runner = PayloadRunner(spec, limits or Limits(), **options)
        box: list[PayloadResult] = []
        thread = threading.Thread(target=lambda: box.append(runner.run()), daemon=True)
        self.runners.append((runner, thread))
        thread.start()
        assert runner.wait_started(10)
        return runner, thread, box

    def track_pid_file(self, name: str) -> psutil.Process:
        """The process whose PID the payload wrote to ``name`` (waited for), killed at teardown."""
        path = self.workdir / name
        wait_for(
            lambda: path.exists() and path.read_text().strip().isdigit(),
            "the payload to write its pid",
            15,
        )
        process = psutil.Process(int(path.read_text()))
        self.tracked.append(process)
        return process

    def clean_up(self) -> None:
        for runner, thread in self.runners:
            runner.request_kill()
            thread.join(30)
            if thread.is_alive() and runner.pid:  # the wrapper is stuck: kill its group
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(runner.pid, signal.SIGKILL)
        for process in self.tracked:
            if alive(process):
                with contextlib.suppress(psutil.Error):
                    process.kill()


@pytest.fixture
def payloads(tmp_path: Path) -> Iterator[Payloads]:
    workdir = tmp_path / "job"
    workdir.mkdir()
    made = Payloads(workdir)
    try:
        yield made
    finally:
        made.clean_up()


# --------------------------------------------------------------------------------------------
# outcomes


def test_exit_zero_is_done(payloads: Payloads) -> None:
    result = payloads.run(payloads.spec(sys.executable, python("print('all good')")))
    assert (result.status, result.exit_code, result.kill_reason) == ("Done", 0, "")
    assert result.stdout_tail == "all good"
    assert result.wall_seconds >= 0 and result.cpu_seconds >= 0


def test_non_zero_exit_is_failed_with_the_code(payloads: Payloads) -> None:
    result = payloads.run(payloads.spec(sys.executable, python("raise SystemExit(3)")))
    assert (result.status, result.exit_code) == ("Failed", 3)
    assert result.minor_status == "Application exited with code 3"


def test_death_by_signal_names_the_signal(payloads: Payloads) -> None:
    code = "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)"
    result = payloads.run(payloads.spec(sys.executable, python(code)))
    assert (result.status, result.exit_code) == ("Failed", -signal.SIGSEGV)
    assert result.minor_status == "Application killed by SIGSEGV"


@pytest.mark.parametrize(
    "executable", ["no-such-program-xyz", "./missing.sh", "/nonexistent/bin/tool"]
)
def test_missing_executable_is_failed_without_exception(
    payloads: Payloads, executable: str
) -> None:
    result = payloads.run(payloads.spec(executable, "--flag"))
    assert (result.status, result.exit_code) == ("Failed", None)
    assert result.minor_status == f"Executable not found: {executable}"


def test_unbalanced_quotes_are_failed(payloads: Payloads) -> None:
    result = payloads.run(payloads.spec("echo", "'unterminated"))
    assert result.status == "Failed"
    assert result.minor_status.startswith("Invalid arguments")


def test_outputs_land_in_their_files_and_the_job_id_is_in_the_environment(
    payloads: Payloads,
) -> None:
    code = (
        "import os, sys\n"
        "for i in range(30): print('line', i)\n"
        "print('job', os.environ['DIRAC_LIKE_JOB_ID'], os.environ['EXTRA_SETTING'])\n"
        "print('oops', file=sys.stderr)\n"
    )
    spec = payloads.spec(
        sys.executable,
        python(code),
        job_id=1234,
        stdout="out.log",
        stderr="err.log",
        env={"EXTRA_SETTING": "on"},
    )
    result = payloads.run(spec)
    assert result.status == "Done"
    stdout = (payloads.workdir / "out.log").read_text()
    assert "job 1234 on" in stdout and "oops" not in stdout
    assert (payloads.workdir / "err.log").read_text() == "oops\n"
    tail = result.stdout_tail.splitlines()
    assert len(tail) == 20 and tail[-1] == "job 1234 on" and tail[0] == "line 11"


def test_a_script_shipped_in_the_workdir_runs_by_its_name(payloads: Payloads) -> None:
    name = payloads.script("job.sh", '#!/bin/sh\necho "args: $*"\n')
    (payloads.workdir / name).chmod(0o644)  # lost its exec bit on the way
    result = payloads.run(payloads.spec(name, "one 'two three'"))
    assert result.status == "Done"
    assert result.stdout_tail == "args: one two three"


def test_output_names_must_be_plain_file_names(payloads: Payloads) -> None:
    with pytest.raises(InvalidArgument, match="stdout"):
        payloads.spec("echo", stdout="../../escape.log")


# --------------------------------------------------------------------------------------------
# the watchdog


def test_memory_limit_kills_and_fails(payloads: Payloads) -> None:
    code = "import time\nblock = b'x' * (200 * 1024 * 1024)\ntime.sleep(60)\n"
    result = payloads.run(payloads.spec(sys.executable, python(code)), Limits(max_rss_mb=100))
    assert (result.status, result.kill_reason) == ("Failed", "memory")
    assert result.minor_status.startswith("Watchdog: memory ")
    assert result.minor_status.endswith(" MB > MaxRAM 100 MB")
    assert result.peak_rss_mb > 100


def test_cpu_limit_kills_a_busy_loop(payloads: Payloads) -> None:
    result = payloads.run(
        payloads.spec(sys.executable, python("while True: pass")), Limits(cpu_time=1)
    )
    assert (result.status, result.kill_reason) == ("Failed", "cpu")
    assert result.minor_status.startswith("Watchdog: CPU time ")
    assert result.minor_status.endswith(" s > CPUTime 1 s")
    assert result.cpu_seconds > 1


def test_wall_limit_kills_a_sleeper(payloads: Payloads) -> None:
    result = payloads.run(payloads.spec("sleep", "60"), Limits(wall_time=1))
    assert (result.status, result.kill_reason) == ("Failed", "wall")
    assert result.minor_status.startswith("Watchdog: wall clock ")
    assert result.minor_status.endswith(" s > limit 1 s")
    assert result.exit_code == -signal.SIGTERM


def test_disk_limit_kills_a_writer(payloads: Payloads) -> None:
    code = (
        "import time\nwith open('big.dat', 'wb') as f: f.write(b'z' * (3 * 1024 * 1024))\n"
        "time.sleep(60)\n"
    )
    result = payloads.run(payloads.spec(sys.executable, python(code)), Limits(max_disk_mb=1))
    assert (result.status, result.kill_reason) == ("Failed", "disk")
    assert result.minor_status.endswith(" MB > limit 1 MB")


def test_pilot_deadline_kills(payloads: Payloads) -> None:
    limits = Limits(pilot_deadline=time.time() + 0.5)
    result = payloads.run(payloads.spec("sleep", "60"), limits)
    assert (result.status, result.minor_status) == ("Failed", "Watchdog: pilot time left exhausted")
    assert result.kill_reason == "time_left"


# --------------------------------------------------------------------------------------------
# process trees


def test_grandchild_ignoring_term_is_killed(payloads: Payloads) -> None:
    name = payloads.script(
        "spawn.sh",
        ("#!/bin/sh\nsh -c 'trap \"\" TERM; echo $$ > grandchild.pid; exec sleep 60' &\nwait\n"),
    )
    runner, thread, box = payloads.start(payloads.spec(name))
    grandchild = payloads.track_pid_file("grandchild.pid")
    assert alive(grandchild)
    runner.request_kill()
    thread.join(30)
    assert box[0].status == "Killed"
    assert not alive(grandchild)
    assert not alive_in_group(runner)


def test_grandchild_that_left_the_tree_and_the_group_is_killed(payloads: Payloads) -> None:
    """setsid + double fork, ignoring SIGTERM: it left the group and the tree (issue 11 defect
    8: the exec helper, a child subreaper, adopts it; the wrapper samples it), and it is
    killed."""
    code = (
        "import os, signal, time\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        "    if os.fork() == 0:\n"
        "        signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "        open('escaped.tmp', 'w').write(str(os.getpid()))\n"
        "        os.rename('escaped.tmp', 'escaped.pid')\n"
        "        time.sleep(60)\n"
        "    os._exit(0)\n"
        "os.wait()\n"
        "time.sleep(60)\n"
    )
    runner, thread, box = payloads.start(payloads.spec(sys.executable, python(code)))
    escaped = payloads.track_pid_file("escaped.pid")
    assert MARKER_VARIABLE in escaped.environ()
    assert _pgid(escaped.pid) != runner.pid
    wait_for(  # adopted by the exec helper, sampled with the payload's tree
        lambda: escaped.pid in runner.processes(), "the helper to adopt the daemon", timeout=10
    )
    runner.request_kill()
    thread.join(30)
    assert box[0].status == "Killed"
    assert not alive(escaped)


def test_leftovers_of_a_payload_that_exits_are_killed(payloads: Payloads) -> None:
    name = payloads.script(
        "leave.sh", ("#!/bin/sh\n(trap '' TERM; exec sleep 60) &\necho $! > left.pid\nexit 0\n")
    )
    _runner, thread, box = payloads.start(payloads.spec(name))
    thread.join(30)
    assert box[0].status == "Done"
    left = int((payloads.workdir / "left.pid").read_text())
    assert not psutil.pid_exists(left) or not alive(psutil.Process(left))


def alive_in_group(runner: PayloadRunner) -> bool:
    assert runner.pid is not None
    return any(alive(p) for p in psutil.process_iter() if _pgid(p.pid) == runner.pid)


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except OSError:
        return None


# --------------------------------------------------------------------------------------------
# kill requests


def test_kill_request_from_another_thread_is_prompt(payloads: Payloads) -> None:
    runner, thread, box = payloads.start(payloads.spec("sleep", "60"), sample_interval=5.0)
    requested = time.monotonic()
    runner.request_kill("Killed by the owner")
    thread.join(30)
    took = time.monotonic() - requested
    result = box[0]
    assert (result.status, result.minor_status) == ("Killed", "Killed by the owner")
    assert result.kill_reason == "request"
    assert took < 3.0  # sanity only; the wrapper acts on the request at once


def test_kill_command_returned_by_on_sample(payloads: Payloads) -> None:
    seen: list[Sample] = []

    def heartbeat(sample: Sample) -> list[str]:
        seen.append(sample)
        return ["kill"] if len(seen) >= 3 else []

    result = payloads.run(payloads.spec("sleep", "60"), on_sample=heartbeat)
    assert result.status == "Killed"
    assert len(seen) == 3
    assert seen[0].wall_seconds < seen[1].wall_seconds < seen[2].wall_seconds
    assert all(s.rss_mb > 0 for s in seen)


def test_a_failing_on_sample_does_not_disturb_the_payload(payloads: Payloads) -> None:
    def broken(sample: Sample) -> list[str]:
        raise RuntimeError("heartbeat lost")

    result = payloads.run(
        payloads.spec(sys.executable, python("import time; time.sleep(0.7)")), on_sample=broken
    )
    assert result.status == "Done"


def test_kill_requested_before_start_starts_nothing(payloads: Payloads) -> None:
    runner = PayloadRunner(payloads.spec("sleep", "60"), Limits())
    runner.request_kill()
    result = runner.run()
    assert (result.status, result.exit_code, runner.pid) == ("Killed", None, None)


# --------------------------------------------------------------------------------------------
# no shell


def test_arguments_are_not_given_to_a_shell(payloads: Payloads, tmp_path: Path) -> None:
    target = tmp_path / "x"
    result = run_payload(
        payloads.spec("echo", f'"; touch {target}"'), Limits(), sample_interval=INTERVAL
    )
    assert result.status == "Done"
    assert result.stdout_tail == f"; touch {target}"
    assert not target.exists()
    result = run_payload(
        payloads.spec("echo", f"; touch {target}"), Limits(), sample_interval=INTERVAL
    )
    assert not target.exists()


def test_shell_only_when_the_job_asks_for_it(payloads: Payloads, tmp_path: Path) -> None:
    target = tmp_path / "made-by-shell"
    result = run_payload(
        payloads.spec("echo", f"hi; touch {target}", shell=True), Limits(), sample_interval=INTERVAL
    )
    assert result.status == "Done"
    assert target.exists()


# --------------------------------------------------------------------------------------------
# started from a loop (the pilot's way: no thread waits on the payload)


def test_start_returns_while_the_payload_runs_and_its_end_is_called_back(
    payloads: Payloads,
) -> None:
    runner = PayloadRunner(payloads.spec(sys.executable, python("print('from a loop')")), Limits())
    ended = threading.Event()
    assert runner.start(on_end=ended.set) is None
    assert ended.wait(30), "the keeper's end was not called back"
    assert runner.exited and not runner.left_running()
    result = runner.finish(tail=False)
    assert (result.status, result.exit_code, result.stdout_tail) == ("Done", 0, "")
    assert (payloads.workdir / "std.out").read_text() == "from a loop\n"


def test_a_payload_started_from_a_loop_is_sampled_and_killed_on_request(
    payloads: Payloads,
) -> None:
    runner = PayloadRunner(
        payloads.spec(sys.executable, python("import time; time.sleep(60)")),
        Limits(),
        kill_grace=GRACE,
    )
    ended = threading.Event()
    try:
        assert runner.start(on_end=ended.set) is None
        samples = [runner.sample_now() for _ in range(1)]
        wait_for(
            lambda: samples.append(runner.sample_now()) or samples[-1][0].rss_mb > 0,
            "a sample of the payload (its tree, the keeper left out)",
        )
        assert all(verdict is None for _, verdict in samples)
        assert not runner.exited
        runner.request_kill("Killed on request")
        result = runner.finish()
    finally:
        if not runner.exited and runner.pid:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(runner.pid, signal.SIGKILL)
    assert (result.status, result.minor_status, result.kill_reason) == (
        "Killed",
        "Killed on request",
        "request",
    )
    assert ended.wait(10)


# --------------------------------------------------------------------------------------------
# the order of a kill (issue 15: a kill once waited for a scan of every process on the node)


class KillSteps:
    """Records, in order, the wrapper's signals to the payload's group ("group") and its scans
    of the node's processes ("scan"), and the PIDs whose environment was read."""

    def __init__(self, runner: PayloadRunner, monkeypatch: pytest.MonkeyPatch) -> None:
        self.steps: list[str] = []
        self.environ_read: list[int] = []
        killpg, discover, environ = os.killpg, runner._discover, psutil.Process.environ

        def signal_group(group: int, signum: int) -> None:
            if group == runner.pid and signum != 0:
                self.steps.append("group")
            killpg(group, signum)

        def scan() -> None:
            self.steps.append("scan")
            discover()

        def read_environ(process: psutil.Process) -> dict[str, str]:
            self.environ_read.append(process.pid)
            return environ(process)

        monkeypatch.setattr(os, "killpg", signal_group)
        monkeypatch.setattr(runner, "_discover", scan)
        monkeypatch.setattr(psutil.Process, "environ", read_environ)


def started_sleeper(payloads: Payloads) -> PayloadRunner:
    runner = PayloadRunner(payloads.spec("/bin/sleep", "60"), Limits(), kill_grace=GRACE)
    assert runner.start() is None
    return runner


def kill_by_pid(runner: PayloadRunner) -> None:
    if not runner.exited and runner.pid:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(runner.pid, signal.SIGKILL)


def killed_on_request(
    payloads: Payloads, monkeypatch: pytest.MonkeyPatch
) -> tuple[PayloadResult, KillSteps]:
    """A sleeper killed on request (as a worker does it), with the steps of the kill."""
    runner = started_sleeper(payloads)
    try:
        steps = KillSteps(runner, monkeypatch)
        runner.request_kill()
        return runner.finish(tail=False), steps
    finally:
        kill_by_pid(runner)


def test_a_kill_signals_the_group_before_it_scans_the_nodes_processes(
    payloads: Payloads, monkeypatch: pytest.MonkeyPatch
) -> None:
    result, steps = killed_on_request(payloads, monkeypatch)
    assert result.status == "Killed"
    assert steps.steps[:2] == ["group", "scan"]


def test_kill_now_signals_at_once_and_finish_does_the_rest_with_its_outcome(
    payloads: Payloads, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pilot's loop calls kill_now (no scan, no wait), a worker then finish: the payload,
    dead by the SIGTERM before finish runs, is still reported Killed (not "killed by
    SIGTERM"), and the group is not signalled twice."""
    runner = started_sleeper(payloads)
    try:
        steps = KillSteps(runner, monkeypatch)
        runner.request_kill("Killed on request")
        runner.kill_now()
        assert steps.steps == ["group"]
        wait_for(lambda: runner.exited, "the payload to end by the SIGTERM", 15)
        result = runner.finish(tail=False)
    finally:
        kill_by_pid(runner)
    assert (result.status, result.minor_status, result.kill_reason) == (
        "Killed",
        "Killed on request",
        "request",
    )
    assert steps.steps == ["group", "scan"]


def test_kill_now_with_nothing_to_kill_for_signals_nothing(
    payloads: Payloads, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner = started_sleeper(payloads)
    try:
        steps = KillSteps(runner, monkeypatch)
        runner.kill_now()  # no kill requested, no verdict
        assert steps.steps == [] and not runner.exited
    finally:
        runner.request_kill()
        runner.finish(tail=False)
        kill_by_pid(runner)


def test_the_marker_is_looked_for_only_in_processes_younger_than_the_payload(
    payloads: Payloads, monkeypatch: pytest.MonkeyPatch
) -> None:
    _result, steps = killed_on_request(payloads, monkeypatch)
    older = psutil.Process(os.getppid())  # this test's parent: started before the payload
    assert older.pid not in steps.environ_read


def test_descendants_are_the_whole_tree_as_psutil_sees_it(payloads: Payloads) -> None:
    from dirac_like.agents.wrapper import descendants

    name = payloads.script(
        "tree.sh", "#!/bin/sh\nsleep 60 &\n(sleep 60 & wait) &\necho go > ready\nwait\n"
    )  # below the script: a sleep, a subshell (a builtin wait: never exec'd) and its sleep
    runner = PayloadRunner(payloads.spec(name), Limits(), kill_grace=GRACE)
    try:
        assert runner.start() is None
        wait_for(lambda: (payloads.workdir / "ready").exists(), "the tree to be started", 15)
        root = psutil.Process(runner.pid)
        wait_for(lambda: len(root.children(recursive=True)) == 3, "the three below it", 15)
        assert {p.pid for p in descendants(root)} == {p.pid for p in root.children(recursive=True)}
    finally:
        runner.request_kill()
        runner.finish(tail=False)
        kill_by_pid(runner)
