"""The payload keeper (agents/payload_keeper.py) run directly: a child subreaper between the
pilot and its payload (issue 11, defect 8)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from dirac_like.agents import payload_keeper, spawner
from dirac_like.agents.outbox import JOB_FILE, ended_report
from dirac_like.agents.watchdog import Limits
from dirac_like.agents.wrapper import PayloadResult, PayloadRunner, PayloadSpec
from dirac_like.testing import wait_for

KEEPER = [sys.executable, "-I", "-S", payload_keeper.__file__]


def keep(
    folder: Path, *payload: str, parent: int | None = None, lease: float = 0.0
) -> subprocess.CompletedProcess[str]:
    lease_file = folder / "lease"
    lease_file.touch()
    return subprocess.run(
        [*KEEPER, str(parent or os.getpid()), str(lease_file), str(lease), *payload],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_payloads_status_passes_through_and_its_end_is_noted(tmp_path: Path) -> None:
    assert keep(tmp_path, "sh", "-c", "exit 3").returncode == 3
    assert (tmp_path / payload_keeper.ENDED_MARK).read_text() == "exit 3\n"
    assert keep(tmp_path, "sh", "-c", "kill -TERM $$").returncode == -15
    assert (tmp_path / payload_keeper.ENDED_MARK).read_text() == "signal 15\n"
    assert keep(tmp_path, "/no/such/program").returncode == 127


def test_what_the_payload_leaves_running_is_killed_with_it(tmp_path: Path) -> None:
    done = keep(tmp_path, "sh", "-c", "(trap '' TERM; exec sleep 60) & echo $! > left.pid")
    assert done.returncode == 0
    left = int((tmp_path / "left.pid").read_text())
    assert not psutil.pid_exists(left) or psutil.Process(left).status() == psutil.STATUS_ZOMBIE


def test_a_keeper_whose_pilot_died_while_it_started_runs_nothing(tmp_path: Path) -> None:
    done = keep(tmp_path, "sh", "-c", "touch ran", parent=1)  # not its parent: "died"
    assert done.returncode == 1
    assert not (tmp_path / "ran").exists()


def test_the_lease_end_kills_the_payload_and_says_so(tmp_path: Path) -> None:
    lease_file = tmp_path / "lease"
    lease_file.touch()
    os.utime(lease_file, (1.0, 1.0))  # last renewed long ago
    done = subprocess.run(
        [*KEEPER, str(os.getpid()), str(lease_file), "1", "sleep", "60"],
        cwd=tmp_path,
        timeout=60,
        check=False,
    )
    assert done.returncode == payload_keeper.LEASE_EXIT
    assert (tmp_path / payload_keeper.LEASE_MARK).exists()


def test_a_successor_pilot_reports_an_end_the_keeper_noted(tmp_path: Path) -> None:
    (tmp_path / JOB_FILE).write_text(
        '{"job_id": 7, "attempt": 2, "pilot_id": "p1", "description": {"Executable": "x"}}'
    )
    assert ended_report(tmp_path) is None  # the payload has not ended
    (tmp_path / payload_keeper.ENDED_MARK).write_text("exit 0\n")
    report = ended_report(tmp_path)
    assert report is not None
    assert (report.job_id, report.attempt, report.pilot_id, report.status) == (7, 2, "p1", "Done")
    assert report.output_pending and not report.failed


def test_a_payload_outlives_the_thread_that_started_it(tmp_path: Path) -> None:
    """Regression (issue 15): a parent-death signal follows the parent *thread*. Keepers were
    started by the pilot's worker threads, so a keeper whose starting thread ended took it for
    the pilot's death and killed its payload (seen once in CI: "Application killed by SIGKILL"
    for a job that exits 3). Keepers are now forked by the exec helper, whatever thread asks."""
    ended: list[tuple[int, float]] = []
    done = threading.Event()

    def on_end(status: int, cpu: float) -> None:
        ended.append((status, cpu))
        done.set()

    def start() -> None:
        with open(tmp_path / "out", "wb") as out, open(os.devnull, "rb") as null:
            spawner.shared().spawn(
                ["sh", "-c", "touch started; sleep 1; exit 3"],
                tmp_path,
                dict(os.environ),
                (null.fileno(), out.fileno(), out.fileno()),
                on_end,
            )
        # The keeper armed its parent-death signal before it started the payload: this thread
        # ends while the payload runs (with keepers started from here, it was killed: exit 1).
        wait_for(lambda: (tmp_path / "started").exists(), "the payload to start", timeout=30)

    starter = threading.Thread(target=start)
    starter.start()
    starter.join()
    assert done.wait(30)
    [(status, _)] = ended
    assert os.waitstatus_to_exitcode(status) == 3
    assert (tmp_path / payload_keeper.ENDED_MARK).read_text() == "exit 3\n"


def test_the_payload_gets_fresh_signal_dispositions(tmp_path: Path) -> None:
    """Python ignores SIGPIPE, the exec helper SIGINT: a payload must not inherit that."""
    script = "grep -E '^Sig(Ign|Blk)' /proc/self/status"
    assert keep(tmp_path, "sh", "-c", f"{script} > status").returncode == 0
    masks = dict(line.split(":") for line in (tmp_path / "status").read_text().splitlines())
    assert int(masks["SigIgn"], 16) == 0
    assert int(masks["SigBlk"], 16) == 0


def test_a_dead_exec_helper_ends_its_payloads_and_is_reported(tmp_path: Path) -> None:
    helper = spawner.Spawner()
    ended: list[int] = []
    try:
        with open(tmp_path / "out", "wb") as out, open(os.devnull, "rb") as null:
            keeper = helper.spawn(
                ["sh", "-c", "echo $$ > payload.pid; exec sleep 60"],
                tmp_path,
                dict(os.environ),
                (null.fileno(), out.fileno(), out.fileno()),
                lambda status, cpu: ended.append(status),
            )
        payload = int(
            wait_for(
                lambda: (
                    (tmp_path / "payload.pid").read_text().strip()
                    if (tmp_path / "payload.pid").exists()
                    else ""
                ),
                "the payload",
                timeout=30,
            )
        )
        os.kill(helper.pid, signal.SIGKILL)
        assert wait_for(lambda: ended, "the keeper reported lost", timeout=30) == [
            spawner.LOST_STATUS
        ]
        wait_for(lambda: gone(payload), "the payload to die with its keeper", timeout=30)
        wait_for(lambda: gone(keeper), "the keeper to end (its parent died)", timeout=30)
        assert not helper.alive
    finally:
        helper.close()


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


# --------------------------------------------------------------------------------------------
# The exec helper proper: payloads started with posix_spawn, kept in one loop (issue 15)


class Ends:
    """on_end callbacks of one test: each payload's wait status and CPU, by PID."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.ended: dict[int, tuple[int, float]] = {}
        self.marked: dict[int, str] = {}  # the end mark as it was when the end was reported

    def start(
        self, helper: spawner.Spawner, script: str, folder: Path | None = None, **lease: object
    ) -> int:
        where = folder or self.folder
        where.mkdir(exist_ok=True)
        pid = 0

        def on_end(status: int, cpu: float) -> None:
            mark = where / payload_keeper.ENDED_MARK
            self.marked[pid] = mark.read_text() if mark.exists() else ""
            self.ended[pid] = (status, cpu)

        with open(where / "out", "wb") as out, open(os.devnull, "rb") as null:
            pid = helper.spawn(
                ["sh", "-c", script],
                where,
                dict(os.environ),
                (null.fileno(), out.fileno(), out.fileno()),
                on_end,
                **lease,  # type: ignore[arg-type]
            )
        return pid

    def wait(self, pid: int) -> tuple[int, float]:
        return wait_for(lambda: self.ended.get(pid), f"payload {pid} to end", timeout=30)


def read_pid(path: Path) -> int:
    text = wait_for(
        lambda: path.read_text().strip() if path.exists() else "", f"{path.name}", timeout=30
    )
    return int(text)


# A daemon that double-forks, in the payload's session; one that also calls setsid (it leaves
# the session and the group: only its environment says whose it is). Both ignore SIGTERM.
DAEMON = "(trap '' TERM; (trap '' TERM; exec sleep 60) & echo $! > {name}) &"
SETSID_DAEMON = (
    "setsid sh -c \"trap '' TERM; sh -c 'trap \\\"\\\" TERM; exec sleep 60' &"
    ' echo \\$! > {name}" &'
)


@pytest.fixture
def helper() -> Iterator[spawner.Spawner]:
    made = spawner.Spawner()
    try:
        yield made
    finally:
        made.close()


def test_the_helpers_payload_gets_fresh_dispositions_and_a_session_of_its_own(
    helper: spawner.Spawner, tmp_path: Path
) -> None:
    """posix_spawn with glibc's own signal set would leave its signals 32 and 33 ignored."""
    ends = Ends(tmp_path)
    masks_now = "grep -E '^Sig(Ign|Blk)' /proc/self/status > status.tmp; mv status.tmp status"
    pid = ends.start(helper, masks_now + "; sleep 60")
    wait_for(lambda: (tmp_path / "status").exists(), "the payload's signal masks")
    assert os.getsid(pid) == pid and os.getpgid(pid) == pid
    os.killpg(pid, signal.SIGTERM)  # as the wrapper kills a payload
    status, _ = ends.wait(pid)
    assert os.waitstatus_to_exitcode(status) == -signal.SIGTERM
    assert ends.marked[pid] == "signal 15\n"  # noted before the end was reported
    masks = dict(line.split(":") for line in (tmp_path / "status").read_text().splitlines())
    assert int(masks["SigIgn"], 16) == 0
    assert int(masks["SigBlk"], 16) == 0


def test_the_helper_reports_the_end_after_the_mark_with_the_payloads_cpu(
    helper: spawner.Spawner, tmp_path: Path
) -> None:
    ends = Ends(tmp_path)
    pid = ends.start(helper, "i=0; while [ $i -lt 30000 ]; do i=$((i+1)); done; exit 4")
    status, cpu = ends.wait(pid)
    assert os.waitstatus_to_exitcode(status) == 4
    assert ends.marked[pid] == "exit 4\n"
    assert cpu > 0


def test_the_helper_kills_a_payloads_daemons_and_only_that_payloads(
    helper: spawner.Spawner, tmp_path: Path
) -> None:
    """Orphans re-parented to the helper are told apart: by session (a double fork), by the
    environment's tag (setsid as well); another payload's daemons live on with it."""
    ends = Ends(tmp_path)
    other = tmp_path / "other"
    keep = ends.start(helper, DAEMON.format(name="theirs.pid") + " sleep 60", folder=other)
    theirs = read_pid(other / "theirs.pid")
    script = DAEMON.format(name="daemon.pid") + SETSID_DAEMON.format(name="setsid.pid")
    pid = ends.start(helper, script + " wait")
    daemon, setsid_daemon = read_pid(tmp_path / "daemon.pid"), read_pid(tmp_path / "setsid.pid")
    assert os.getsid(setsid_daemon) != pid
    status, _ = ends.wait(pid)
    assert os.waitstatus_to_exitcode(status) == 0
    assert gone(daemon) and gone(setsid_daemon)
    assert not gone(theirs) and keep not in ends.ended
    os.killpg(keep, signal.SIGKILL)
    ends.wait(keep)
    assert gone(theirs)


def test_the_helper_ends_a_payload_at_its_lease_with_its_daemons(
    helper: spawner.Spawner, tmp_path: Path
) -> None:
    lease_file = tmp_path / "lease"
    lease_file.touch()
    ends = Ends(tmp_path)
    pid = ends.start(
        helper,
        SETSID_DAEMON.format(name="setsid.pid") + " trap '' TERM; sleep 60",
        lease_file=str(lease_file),
        lease=1.0,
    )
    daemon = read_pid(tmp_path / "setsid.pid")
    assert pid not in ends.ended
    os.utime(lease_file, (1.0, 1.0))  # the pilot stopped renewing it
    status, _ = ends.wait(pid)
    assert os.waitstatus_to_exitcode(status) == payload_keeper.LEASE_EXIT
    assert (tmp_path / payload_keeper.LEASE_MARK).exists()
    assert not (tmp_path / payload_keeper.ENDED_MARK).exists()  # not an end to report
    assert gone(pid) and gone(daemon)


def test_a_killed_helper_takes_its_payloads_and_their_daemons(
    helper: spawner.Spawner, tmp_path: Path
) -> None:
    """kill -9 of the helper proper: what it had is re-parented to its watchdog, which kills
    it all; the pilot sees the helper lost."""
    ends = Ends(tmp_path)
    pid = ends.start(helper, SETSID_DAEMON.format(name="setsid.pid") + " exec sleep 60")
    daemon = read_pid(tmp_path / "setsid.pid")
    [proper] = psutil.Process(helper.pid).children()
    proper.kill()
    assert ends.wait(pid)[0] == spawner.LOST_STATUS
    wait_for(lambda: gone(pid) and gone(daemon), "the payload and its daemon to die", timeout=30)
    assert not helper.alive


def test_a_killed_watchdog_takes_the_helpers_payloads_and_their_daemons(
    helper: spawner.Spawner, tmp_path: Path
) -> None:
    ends = Ends(tmp_path)
    pid = ends.start(helper, SETSID_DAEMON.format(name="setsid.pid") + " exec sleep 60")
    daemon = read_pid(tmp_path / "setsid.pid")
    os.kill(helper.pid, signal.SIGKILL)
    assert ends.wait(pid)[0] == spawner.LOST_STATUS
    wait_for(lambda: gone(pid) and gone(daemon), "the payload and its daemon to die", timeout=30)


def test_a_helper_whose_pilot_stopped_reading_still_ends_leases(tmp_path: Path) -> None:
    """More ends than the channel's queue holds (net.unix.max_dgram_qlen, 10 here) while the
    pilot is frozen: the helper must not block on sending them, its leases go on."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    lease_file = tmp_path / "lease"
    lease_file.touch()
    try:
        helper = spawner._start_helper(theirs.fileno())
    finally:
        theirs.close()
    try:
        with open(os.devnull, "rb") as null, open(tmp_path / "out", "wb") as out:
            stdio = [null.fileno(), out.fileno(), out.fileno()]
            for number in range(40):
                request = {"id": number, "argv": ["true"], "cwd": str(tmp_path),
                           "env": dict(os.environ), "lease_file": "-", "lease": 0.0}  # fmt: skip
                socket.send_fds(ours, [json.dumps(request).encode()], stdio)
            request = {"id": 99, "argv": ["sh", "-c", "echo $$ > leased.pid; exec sleep 60"],
                       "cwd": str(tmp_path), "env": dict(os.environ),
                       "lease_file": str(lease_file), "lease": 1.0}  # fmt: skip
            socket.send_fds(ours, [json.dumps(request).encode()], stdio)
        leased = read_pid(tmp_path / "leased.pid")
        os.utime(lease_file, (1.0, 1.0))
        wait_for(lambda: (tmp_path / payload_keeper.LEASE_MARK).exists(), "the lease's end")
        wait_for(lambda: gone(leased), "the leased payload to die", timeout=30)
    finally:
        ours.close()
        os.waitpid(helper, 0)


def test_a_program_missing_from_the_payloads_path_is_refused(
    helper: spawner.Spawner, tmp_path: Path
) -> None:
    with open(os.devnull, "rb") as null, pytest.raises(spawner.SpawnError, match="No such file"):
        helper.spawn(
            ["no-such-program-here"],
            tmp_path,
            {"PATH": str(tmp_path)},
            (null.fileno(), null.fileno(), null.fileno()),
            lambda status, cpu: None,
        )
    assert helper.alive


def test_without_glibcs_spawn_functions_a_payload_is_forked_with_the_same_state(
    tmp_path: Path,
) -> None:
    """The helper's fallback where the C library lacks the file actions it uses (glibc before
    2.34): the same session, folder, stdio, dispositions and mask, and no descriptor leaked.
    Run from a process started as the pilot starts its helper (``os.posix_spawn``: glibc's
    signals 32 and 33 ignored, SIGPIPE too, one descriptor more)."""
    script = "grep -E '^Sig(Ign|Blk)' /proc/self/status; ls /proc/$$/fd; pwd"
    code = (
        "import os, sys\n"
        f"sys.path.insert(0, {os.path.dirname(payload_keeper.__file__)!r})\n"
        "import payload_keeper\n"
        "leaked = os.open(os.devnull, os.O_RDONLY)\n"
        "os.set_inheritable(leaked, True)\n"
        "pid = payload_keeper.fork_exec(b'/bin/sh', [b'sh', b'-c', sys.argv[1].encode()],"
        " [b'PATH=/usr/bin:/bin'], [0, 1, 2], os.fsencode(sys.argv[2]))\n"
        "sys.exit(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))\n"
    )
    with open(tmp_path / "out", "wb") as out:
        pid = os.posix_spawn(
            sys.executable,
            [sys.executable, "-I", "-S", "-c", code, script, str(tmp_path)],
            os.environ,
            file_actions=[(os.POSIX_SPAWN_DUP2, out.fileno(), 1)],
        )
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, (tmp_path / "out").read_text()
    blocked, ignored, *descriptors, where = (tmp_path / "out").read_text().splitlines()
    assert (blocked.split(), ignored.split()) == (["SigBlk:", "0" * 16], ["SigIgn:", "0" * 16])
    assert descriptors == ["0", "1", "2"]  # the shell's: nothing leaked
    assert where == str(tmp_path)


def test_with_both_helper_processes_gone_the_wrapper_kills_the_payload(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Neither the helper nor its watchdog left to kill (stopped, then killed together): the
    pilot sees its helper lost, and the wrapper kills what is left of the payload."""
    helper = spawner.Spawner()
    monkeypatch.setattr(spawner, "shared", lambda: helper)
    spec = PayloadSpec(
        job_id=1,
        executable="/bin/sh",
        arguments="-c 'echo $$ > payload.pid; exec sleep 60'",
        workdir=tmp_path,
    )
    runner = PayloadRunner(spec, Limits(), kill_grace=0.5)
    results: list[PayloadResult] = []
    thread = threading.Thread(target=lambda: results.append(runner.run()))
    thread.start()
    try:
        payload = read_pid(tmp_path / "payload.pid")
        watchdog = psutil.Process(helper.pid)
        both = [watchdog, *watchdog.children()]
        for process in both:
            process.suspend()  # neither can act on the other's death now
        for process in both:
            process.kill()
        thread.join(30)
        [result] = results
        assert result.exit_code == -signal.SIGKILL
        wait_for(lambda: gone(payload), "the payload to be killed by the wrapper", timeout=30)
    finally:
        helper.close()
        thread.join(30)


def test_a_batch_of_payloads_starts_with_one_request_each_refused_alone(
    helper: spawner.Spawner, tmp_path: Path
) -> None:
    """A pilot's turn starts its jobs together (issue 15): one request for several payloads;
    one that cannot start is refused by itself, the others run, each end comes back to its
    own callback with its own status and its end mark in its own folder."""
    ended: dict[str, int] = {}
    requests = []
    with open(os.devnull, "rb") as null:
        for name, argv in (
            ("ok", ["sh", "-c", "exit 0"]),
            ("missing", ["/no/such/program"]),
            ("three", ["sh", "-c", "exit 3"]),
        ):
            folder = tmp_path / name
            folder.mkdir()

            def on_end(status: int, cpu: float, name: str = name) -> None:
                ended[name] = status

            requests.append(
                spawner.SpawnRequest(argv, folder, dict(os.environ), (null.fileno(),) * 3, on_end)
            )
        outcomes = helper.spawn_many(requests)
    assert isinstance(outcomes[0], int)
    assert isinstance(outcomes[1], spawner.SpawnError) and "no/such" in str(outcomes[1])
    assert isinstance(outcomes[2], int)
    wait_for(lambda: len(ended) == 2, "both payloads to end", timeout=30)
    assert {name: os.waitstatus_to_exitcode(status) for name, status in ended.items()} == {
        "ok": 0,
        "three": 3,
    }
    assert (tmp_path / "three" / payload_keeper.ENDED_MARK).read_text() == "exit 3\n"
    assert not (tmp_path / "missing" / payload_keeper.ENDED_MARK).exists()


def test_more_payloads_than_one_request_holds_all_start(
    helper: spawner.Spawner, tmp_path: Path
) -> None:
    """Past ``MAX_BATCH`` payloads the batch goes in several requests: every one starts."""
    count = payload_keeper.MAX_BATCH + 3
    ended: list[int] = []
    with open(os.devnull, "rb") as null:
        request = spawner.SpawnRequest(
            ["true"], tmp_path, dict(os.environ), (null.fileno(),) * 3,
            lambda status, cpu: ended.append(status),
        )  # fmt: skip
        outcomes = helper.spawn_many([request] * count)
    assert all(isinstance(outcome, int) for outcome in outcomes)
    assert len(set(outcomes)) == count
    wait_for(lambda: len(ended) == count, "every payload to end", timeout=30)
    assert set(ended) == {0}


def test_runners_started_together_each_end_as_their_own(tmp_path: Path) -> None:
    """:func:`start_payloads`: a runner that cannot start (its folder is gone) gets its failure,
    the others run to their own results."""
    from dirac_like.agents.wrapper import start_payloads

    runners = []
    for job_id, script in ((1, "exit 0"), (2, "exit 0"), (3, "exit 4")):
        folder = tmp_path / f"job_{job_id}"
        if job_id != 2:
            folder.mkdir()
        spec = PayloadSpec(job_id, "/bin/sh", folder, arguments=f"-c '{script}'")
        runners.append(PayloadRunner(spec, Limits()))
    results = start_payloads([(runner, None) for runner in runners])
    assert results[0] is None and results[2] is None
    assert results[1] is not None and "Working directory not found" in results[1].minor_status
    done = [runner.finish() for runner in (runners[0], runners[2])]
    assert [(result.status.value, result.exit_code) for result in done] == [
        ("Done", 0),
        ("Failed", 4),
    ]
