"""The fabric contract (agents/fabrics/base.py), run against every Fabric implementation.

The tests use only the Fabric interface. What differs per fabric lives in one ``Harness``: how to
build the fabric, how to write a "pilot" that behaves as a test asks (exit code, output, stay
running until released, ignore SIGTERM, start helper processes), which PIDs that pilot started and
what its output shows. Adding a fabric means adding one Harness to HARNESSES; a fabric without real
processes (simulated) returns no PIDs, so the "no process left" checks hold trivially for it.

Waits poll a condition with a deadline; every process a test starts is gone when it ends, pass or
fail (the fabric is closed, then whatever a pilot recorded is killed by PID).

The slurm harness runs against the session's real Slurm cluster (tests/slurm_cluster.py): it skips
when Slurm is not installed, and fails instead under CI=true.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import psutil
import pytest
from slurm_cluster import SlurmCluster

from dirac_like import testing
from dirac_like.agents.fabrics import (
    FABRICS,
    Fabric,
    FabricError,
    LocalFabric,
    PilotRequest,
    PilotState,
    SlurmFabric,
    UnknownPilotRef,
    make_fabric,
)
from dirac_like.agents.fabrics.simulated import SimulatedFabric
from dirac_like.client import Client, RetryPolicy
from dirac_like.errors import ConfigError
from dirac_like.processes import ServiceProcess
from dirac_like.sites import FABRIC_NAMES
from dirac_like.states import LIVE_PILOT_STATES

DEADLINE = 30.0
GRACE = 1.0  # SIGTERM -> SIGKILL, for pilots that ignore SIGTERM
HELPER = "import time; time.sleep(600)"

# The pilot every harness runs here (for local: with this Python). Arguments: state folder, exit
# code, text to print, filler bytes printed first, hold (1: wait for <state>/release),
# ignore SIGTERM (1/0), helpers ("group", "session", comma separated: child processes that sleep,
# in the pilot's process group or in a session of their own, as a payload would be).
PILOT_SCRIPT = r"""
import json, os, signal, subprocess, sys, time
state, code, text, filler, hold, ignore_term, helpers = sys.argv[1:8]
if ignore_term == "1":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
pids = [os.getpid()]
for kind in filter(None, helpers.split(",")):
    command = [sys.executable, "-c", "import time; time.sleep(600)", state]
    pids.append(subprocess.Popen(command, start_new_session=kind == "session").pid)
with open(os.path.join(state, "pids.tmp"), "w") as out:
    json.dump(pids, out)
os.replace(os.path.join(state, "pids.tmp"), os.path.join(state, "pids"))
sys.stdout.write("x" * int(filler))
print(text, "cwd=" + os.getcwd(), "mark=" + os.environ.get("PILOT_MARK", ""), flush=True)
print("err:" + text, file=sys.stderr, flush=True)
give_up = time.monotonic() + 300
while hold == "1" and not os.path.exists(os.path.join(state, "release")):
    if time.monotonic() > give_up:
        sys.exit(99)
    time.sleep(0.02)
sys.exit(int(code))
"""


@dataclass(frozen=True)
class Behaviour:
    """What a test pilot does."""

    exit_code: int = 0
    text: str = "hello"
    filler: int = 0  # bytes of "x" printed before the text
    hold: bool = False  # keep running until released
    ignore_term: bool = False
    helpers: tuple[str, ...] = ()  # "group" / "session" child processes


class Harness(ABC):
    """One fabric implementation, as the contract tests drive it."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.states = folder / "pilot-states"
        self.states.mkdir(parents=True)

    @classmethod
    def build(cls, folder: Path, request: pytest.FixtureRequest) -> Harness:
        """The harness for one test (``request`` gives access to other fixtures)."""
        return cls(folder)

    @abstractmethod
    def make_fabric(self) -> Fabric:
        """A fresh fabric whose SIGTERM grace period is about GRACE."""

    @abstractmethod
    def request(self, pilot_id: str, behaviour: Behaviour) -> PilotRequest:
        """A request for a pilot that behaves so (state kept under self.states / pilot_id)."""

    @abstractmethod
    def unstartable(self, pilot_id: str) -> PilotRequest:
        """A request this fabric must refuse at submit with FabricError."""

    @abstractmethod
    def printed(self, request: PilotRequest, behaviour: Behaviour) -> list[str]:
        """What the output of the pilot started by ``request`` must show, once it has ended."""

    def release(self, pilot_id: str) -> None:
        (self.states / pilot_id / "release").touch()

    def pids(self, pilot_id: str) -> list[int]:
        """The PIDs of the pilot and its helpers, once it has recorded them."""
        path = self.states / pilot_id / "pids"
        wait_for(path.exists, f"pilot {pilot_id} to record its PIDs")
        pids: list[int] = json.loads(path.read_text())
        return pids

    def cleanup(self) -> None:
        """Release every pilot and kill whatever they recorded that is still alive."""
        for state in self.states.iterdir():
            (state / "release").touch()
            path = state / "pids"
            for pid in json.loads(path.read_text()) if path.exists() else []:
                kill_if_ours(pid, str(state))


class LocalHarness(Harness):
    def make_fabric(self) -> Fabric:
        return LocalFabric(self.folder / "fabric", grace=GRACE)

    def request(self, pilot_id: str, behaviour: Behaviour) -> PilotRequest:
        state = self.states / pilot_id
        state.mkdir()
        flags = [
            str(behaviour.exit_code),
            behaviour.text,
            str(behaviour.filler),
            "1" if behaviour.hold else "0",
            "1" if behaviour.ignore_term else "0",
            ",".join(behaviour.helpers),
        ]
        return PilotRequest(
            pilot_id=pilot_id,
            command=[sys.executable, "-c", PILOT_SCRIPT, str(state), *flags],
            env={"PILOT_MARK": f"mark-{pilot_id}"},
            workdir=self.folder / "work" / pilot_id,
        )

    def unstartable(self, pilot_id: str) -> PilotRequest:
        return PilotRequest(pilot_id, [str(self.folder / "no-such-pilot")], workdir=self.folder)

    def printed(self, request: PilotRequest, behaviour: Behaviour) -> list[str]:
        return [
            behaviour.text,
            f"err:{behaviour.text}",  # stdout and stderr
            f"mark={request.env['PILOT_MARK']}",  # the request's environment reached it
            f"cwd={request.workdir}",
        ]  # and it started in its working directory


class SimulatedHarness(Harness):
    """A simulated pilot is told what to do through the central service: each gets a site of its
    own and one job there (JobName = the text to show) and stops after that job. Hold: the job
    lasts long, release kills it. Exit code other than 0: the pilot crashes mid-job (Failed)."""

    def __init__(self, folder: Path) -> None:
        super().__init__(folder)
        self._service: ServiceProcess | None = None
        self._client: Client | None = None
        self._jobs: dict[str, int] = {}

    @property
    def client(self) -> Client:
        if self._client is None:
            self._service = ServiceProcess.start_central(self.folder / "home")
            self._client = Client(
                self._service.endpoint,
                RetryPolicy(timeout=5.0, retries=2),
                identity=self._service.identity,
            )
        return self._client

    def make_fabric(self) -> Fabric:
        return SimulatedFabric(
            self.client.server,
            time_scale=0.1,  # heartbeats every 0.3 s
            identity=self.client.identity,
        )

    def request(self, pilot_id: str, behaviour: Behaviour) -> PilotRequest:
        (self.states / pilot_id).mkdir()
        site = f"Contract{len(self._jobs)}.test"
        sleep = 3000 if behaviour.hold else 0.05
        jdl = (
            f'Executable = "x"; JobName = "{behaviour.text}"; Site = "{site}"; '
            f'Arguments = "sleep={sleep}";'
        )
        self._jobs[pilot_id] = self.client.submit([jdl], owner="contract")[0]
        env = {
            "DIRAC_LIKE_SITE": site,
            "DIRAC_LIKE_MAX_JOBS": "1",
            "DIRAC_LIKE_IDLE_TIMEOUT": "600",
            "DIRAC_LIKE_CRASH_RATE": "0" if behaviour.exit_code == 0 else "1",
        }
        return PilotRequest(pilot_id, ["simulated-pilot"], env=env)

    def unstartable(self, pilot_id: str) -> PilotRequest:
        return PilotRequest(pilot_id, ["simulated-pilot"])  # no DIRAC_LIKE_SITE

    def release(self, pilot_id: str) -> None:
        # The pilot is RUNNING before its job is matched: killing a job still Waiting would leave
        # the pilot idle (DIRAC_LIKE_IDLE_TIMEOUT) instead of ending after its one job.
        job_id = self._jobs[pilot_id]
        wait_for(
            lambda: self.client.status([job_id])[0].status == "Running",
            f"job {job_id} Running on pilot {pilot_id}",
        )
        self.client.kill([job_id])

    def pids(self, pilot_id: str) -> list[int]:
        return []

    def printed(self, request: PilotRequest, behaviour: Behaviour) -> list[str]:
        return [
            f"({behaviour.text})",
            f"pilot {request.pilot_id} started at site {request.env['DIRAC_LIKE_SITE']}",
            "Done (Execution Complete)",
        ]

    def cleanup(self) -> None:
        if self._client is not None:
            self._client.close()
        if self._service is not None:
            self._service.stop()


class SlurmHarness(LocalHarness):
    """Pilots are Slurm jobs on the test cluster (same machine, so the local harness's pilot
    script, state folders and PID checks apply). Its KillWait is 2 s (GRACE: about 1 s)."""

    def __init__(self, folder: Path, cluster: SlurmCluster) -> None:
        super().__init__(folder)
        self.cluster = cluster

    @classmethod
    def build(cls, folder: Path, request: pytest.FixtureRequest) -> Harness:
        return cls(folder, request.getfixturevalue("slurm_cluster"))

    def make_fabric(self) -> Fabric:
        return SlurmFabric(self.folder / "fabric", slurm_conf=self.cluster.slurm_conf)

    def unstartable(self, pilot_id: str) -> PilotRequest:
        return PilotRequest(pilot_id, ["/bin/true"], cores=1000, workdir=self.folder)  # sbatch


HARNESSES: dict[str, type[Harness]] = {
    "local": LocalHarness,
    "simulated": SimulatedHarness,
    "slurm": SlurmHarness,
}


# -- helpers -----------------------------------------------------------------------------------

T = TypeVar("T")


# the one wait_for (dirac_like.testing), with this file's deadline
wait_for = functools.partial(testing.wait_for, timeout=DEADLINE)


def wait_state(
    fabric: Fabric, ref: str, wanted: PilotState, allowed: frozenset[PilotState]
) -> None:
    """Poll until ``ref`` is ``wanted``; every state seen on the way must be in ``allowed``."""
    seen: list[PilotState] = []

    def reached() -> bool:
        state = fabric.status([ref])[ref]
        seen.append(state)
        assert state in allowed | {wanted}, f"{ref}: unexpected {state} (seen {seen[-5:]})"
        return state == wanted

    wait_for(reached, f"{ref} to be {wanted} (last seen {seen[-1:]})")


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def kill_if_ours(pid: int, marker: str) -> None:
    try:
        process = psutil.Process(pid)
        if any(marker in part for part in process.cmdline()):
            process.kill()
    except psutil.Error:
        pass


# -- fixtures ----------------------------------------------------------------------------------


@pytest.fixture(params=sorted(HARNESSES))
def harness(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Harness]:
    built = HARNESSES[request.param].build(tmp_path, request)
    try:
        yield built
    finally:
        built.cleanup()


@pytest.fixture
def fabric(harness: Harness) -> Iterator[Fabric]:
    built = harness.make_fabric()
    try:
        yield built
    finally:
        built.close()


def submit_running(fabric: Fabric, harness: Harness, pilot_id: str, behaviour: Behaviour) -> str:
    ref = fabric.submit(harness.request(pilot_id, behaviour))
    wait_state(fabric, ref, PilotState.RUNNING, LIVE_PILOT_STATES)
    return ref


# -- the contract ------------------------------------------------------------------------------


def test_exit_zero_runs_then_is_done(fabric: Fabric, harness: Harness) -> None:
    ref = submit_running(fabric, harness, "p1", Behaviour(hold=True))
    harness.release("p1")
    wait_state(fabric, ref, PilotState.DONE, {PilotState.RUNNING})
    assert fabric.status([ref]) == {ref: PilotState.DONE}  # final states stay


@pytest.mark.parametrize("code", [1, 3])
def test_nonzero_exit_is_failed(fabric: Fabric, harness: Harness, code: int) -> None:
    ref = fabric.submit(harness.request("p1", Behaviour(exit_code=code)))
    wait_state(fabric, ref, PilotState.FAILED, LIVE_PILOT_STATES)


def test_status_answers_for_every_ref_in_one_call(fabric: Fabric, harness: Harness) -> None:
    done = fabric.submit(harness.request("ok", Behaviour()))
    failed = fabric.submit(harness.request("bad", Behaviour(exit_code=1)))
    held = submit_running(fabric, harness, "held", Behaviour(hold=True))
    wanted = {
        done: PilotState.DONE,
        failed: PilotState.FAILED,
        held: PilotState.RUNNING,
        "no-such-ref": PilotState.ABORTED,
    }
    wait_for(lambda: fabric.status(list(wanted)) == wanted, f"states {wanted}")


def test_each_submission_gets_its_own_ref(fabric: Fabric, harness: Harness) -> None:
    first = fabric.submit(harness.request("again", Behaviour()))
    (harness.states / "again").rename(harness.states / "again-1")
    second = fabric.submit(harness.request("again", Behaviour()))
    assert first != second


@pytest.mark.parametrize("helpers", [("group",), ("group", "session")], ids=["group", "session"])
def test_cancel_aborts_and_leaves_no_process(
    fabric: Fabric, harness: Harness, helpers: tuple[str, ...]
) -> None:
    ref = submit_running(fabric, harness, "p1", Behaviour(hold=True, helpers=helpers))
    pids = harness.pids("p1")
    fabric.cancel(ref)
    wait_state(fabric, ref, PilotState.ABORTED, {PilotState.RUNNING})
    wait_for(lambda: not any(alive(pid) for pid in pids), f"PIDs {pids} to be gone")


def test_cancel_kills_a_pilot_that_ignores_sigterm(fabric: Fabric, harness: Harness) -> None:
    behaviour = Behaviour(hold=True, ignore_term=True, helpers=("group",))
    ref = submit_running(fabric, harness, "stubborn", behaviour)
    pids = harness.pids("stubborn")
    fabric.cancel(ref)
    wait_state(fabric, ref, PilotState.ABORTED, {PilotState.RUNNING})
    wait_for(lambda: not any(alive(pid) for pid in pids), f"PIDs {pids} to be gone")


def test_cancel_of_an_ended_pilot_keeps_its_state(fabric: Fabric, harness: Harness) -> None:
    ref = fabric.submit(harness.request("p1", Behaviour(exit_code=2)))
    wait_state(fabric, ref, PilotState.FAILED, LIVE_PILOT_STATES)
    fabric.cancel(ref)
    assert fabric.status([ref]) == {ref: PilotState.FAILED}


def test_output_returns_what_the_pilot_printed(fabric: Fabric, harness: Harness) -> None:
    request = harness.request("p1", Behaviour(text="hello-from-p1"))
    ref = fabric.submit(request)
    wait_state(fabric, ref, PilotState.DONE, LIVE_PILOT_STATES)
    text = fabric.output(ref)
    for wanted in harness.printed(request, Behaviour(text="hello-from-p1")):
        assert wanted in text


def test_output_is_the_tail(fabric: Fabric, harness: Harness) -> None:
    ref = fabric.submit(harness.request("p1", Behaviour(text="THE-END", filler=300_000)))
    wait_state(fabric, ref, PilotState.DONE, LIVE_PILOT_STATES)
    text = fabric.output(ref, max_bytes=4096)
    assert "THE-END" in text
    assert len(text) < 3 * 4096


def test_output_while_running(fabric: Fabric, harness: Harness) -> None:
    ref = submit_running(fabric, harness, "p1", Behaviour(text="early", hold=True))
    wait_for(lambda: "early" in fabric.output(ref), "the running pilot's output")


def test_unknown_ref(fabric: Fabric) -> None:
    """Decision: status says ABORTED (the fabric has no such pilot), cancel does nothing, output
    raises UnknownPilotRef."""
    assert fabric.status(["no-such-ref"]) == {"no-such-ref": PilotState.ABORTED}
    fabric.cancel("no-such-ref")
    for ref in ("no-such-ref", "../etc", ".."):
        with pytest.raises(UnknownPilotRef):
            fabric.output(ref)


def test_a_pilot_that_cannot_start_is_a_fabric_error(fabric: Fabric, harness: Harness) -> None:
    with pytest.raises(FabricError, match="unstartable"):
        fabric.submit(harness.unstartable("unstartable"))


def test_close_leaves_no_process_alive(harness: Harness) -> None:
    fabric = harness.make_fabric()
    try:
        refs, pids = [], []
        for n, helpers in enumerate([(), ("group",), ("group", "session")]):
            pilot_id = f"p{n}"
            refs.append(
                submit_running(fabric, harness, pilot_id, Behaviour(hold=True, helpers=helpers))
            )
            pids += harness.pids(pilot_id)
        stubborn = Behaviour(hold=True, ignore_term=True, helpers=("group",))
        refs.append(submit_running(fabric, harness, "stubborn", stubborn))
        pids += harness.pids("stubborn")
    finally:
        fabric.close()
    wait_for(lambda: not any(alive(pid) for pid in pids), f"PIDs {pids} to be gone")
    assert set(fabric.status(refs).values()) == {PilotState.ABORTED}
    with pytest.raises(FabricError):
        fabric.submit(harness.request("late", Behaviour()))


# -- the registry ------------------------------------------------------------------------------


def test_every_fabric_is_one_a_site_may_name() -> None:
    assert set(FABRICS) <= set(FABRIC_NAMES)
    assert set(FABRICS) <= set(HARNESSES)  # and each runs through this contract


def test_make_fabric(tmp_path: Path) -> None:
    with make_fabric("local", base_dir=tmp_path) as fabric:
        assert isinstance(fabric, LocalFabric)
    with pytest.raises(ConfigError, match="unknown fabric 'pbs'"):
        make_fabric("pbs")
    with pytest.raises(ConfigError, match="fabric 'local'"):
        make_fabric("local", base_dir=tmp_path, queue="x")


# -- local fabric specifics --------------------------------------------------------------------


def test_local_output_outlives_the_fabric(tmp_path: Path) -> None:
    harness = LocalHarness(tmp_path)
    with harness.make_fabric() as first:
        ref = first.submit(harness.request("p1", Behaviour(text="kept")))
        wait_state(first, ref, PilotState.DONE, LIVE_PILOT_STATES)
    with harness.make_fabric() as second:
        assert "kept" in second.output(ref)
        assert second.status([ref]) == {ref: PilotState.ABORTED}  # not its process


def test_local_pilot_runs_in_its_own_session(tmp_path: Path) -> None:
    harness = LocalHarness(tmp_path)
    try:
        with harness.make_fabric() as fabric:
            submit_running(fabric, harness, "p1", Behaviour(hold=True))
            pid = harness.pids("p1")[0]
            assert os.getsid(pid) == pid != os.getsid(0)
    finally:
        harness.cleanup()
