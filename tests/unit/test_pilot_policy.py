"""The pilot's pure decisions: when to ask for a job, when to stop, how cores are packed."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dirac_like.agents.pilot import (
    PilotConfig,
    PilotPolicy,
    discover,
    hands_back,
    platform_string,
)
from dirac_like.agents.wrapper import PayloadResult
from dirac_like.errors import InvalidArgument

START = 1000.0


def policy(**overrides: float) -> PilotPolicy:
    values = {
        "cores": 4,
        "deadline": 0.0,
        "max_jobs": 0,
        "idle_timeout": 0.0,
        "drain_margin": 0.0,
        **overrides,
    }
    return PilotPolicy(
        int(values["cores"]),
        values["deadline"],
        int(values["max_jobs"]),
        values["idle_timeout"],
        values["drain_margin"],
    )


def test_requests_while_a_core_is_free() -> None:
    assert policy().should_request(START, free_cores=1, jobs_taken=0, idle_since=START)
    assert not policy().should_request(START, free_cores=0, jobs_taken=0, idle_since=None)


def test_draining_takes_no_new_job_and_stops_once_nothing_runs() -> None:
    assert not policy().should_request(START, 4, 0, START, draining=True)
    assert (
        policy().stop_reason(START, running=1, jobs_taken=1, idle_since=None, draining=True) == ""
    )
    assert policy().stop_reason(START, 0, 1, START, draining=True) == "drained"


def test_max_jobs_counts_jobs_taken() -> None:
    limited = policy(max_jobs=2)
    assert limited.should_request(START, 4, 1, None)
    assert not limited.should_request(START, 4, 2, None)
    assert limited.stop_reason(START, running=1, jobs_taken=2, idle_since=None) == ""
    assert limited.stop_reason(START, 0, 2, START) == "max jobs (2) done"
    assert policy(max_jobs=0).should_request(START, 4, 10_000, None)  # 0: no limit


def test_idle_timeout_only_when_nothing_runs_and_nothing_matched() -> None:
    idle = policy(idle_timeout=30)
    assert idle.stop_reason(START + 29.9, 0, 0, START) == ""
    assert idle.stop_reason(START + 30, 0, 0, START) == "idle for 30 s"
    assert not idle.should_request(START + 30, 4, 0, START)
    assert idle.stop_reason(START + 999, 0, 3, None) == ""  # busy: idle_since is None
    assert policy(idle_timeout=0).stop_reason(START + 1e9, 0, 0, START) == ""


def test_cpu_time_left_is_what_remains_before_the_margin() -> None:
    timed = policy(deadline=START + 3600, drain_margin=60)
    assert timed.cpu_time_left(START) == 3540
    assert timed.payload_deadline() == START + 3540
    assert timed.cpu_time_left(START + 3539) == 1
    assert timed.should_request(START + 3539, 4, 0, None)
    assert timed.cpu_time_left(START + 3540) == 0
    assert not timed.should_request(START + 3540, 4, 0, None)
    assert timed.stop_reason(START + 3540, 0, 0, None) == "time left too short for another job"
    assert timed.stop_reason(START + 3540, 1, 0, None) == ""  # the running job finishes first


def test_no_deadline_means_no_cpu_time_limit_sent() -> None:
    assert policy().cpu_time_left(START + 1e9) == 0
    assert policy().payload_deadline() == 0.0


def test_from_config_deadline_is_start_plus_time_left() -> None:
    config = PilotConfig(
        server="tcp://x:1",
        site="S",
        cores=8,
        time_left=600,
        drain_margin=30,
        max_jobs=3,
        idle_timeout=5,
        pilot_id="p",
    )
    made = PilotPolicy.for_config(config, START)
    assert made == PilotPolicy(8, START + 600, 3, 5, 30)
    assert (
        PilotPolicy.for_config(PilotConfig(server="s", site="S", pilot_id="p"), START).deadline
        == 0.0
    )


def test_multi_core_jobs_are_packed_into_the_cores() -> None:
    four = policy(cores=4)
    assert four.free_cores([]) == 4
    assert four.free_cores([4]) == 0  # a NumberOfProcessors = 4 job fills a 4-core pilot
    assert not four.should_request(START, four.free_cores([4]), 1, None)
    assert four.free_cores([2, 1]) == 1
    assert four.should_request(START, four.free_cores([2, 1]), 2, None)
    assert four.free_cores([4, 1]) == 0  # never negative


@given(
    cores=st.integers(1, 64),
    running=st.lists(st.integers(1, 8), max_size=10),
    jobs_taken=st.integers(0, 100),
    max_jobs=st.integers(0, 100),
    elapsed=st.floats(0, 1e5),
    idle_timeout=st.floats(0, 1e4),
    draining=st.booleans(),
)
def test_never_requests_and_stops_at_once(
    cores: int,
    running: list[int],
    jobs_taken: int,
    max_jobs: int,
    elapsed: float,
    idle_timeout: float,
    draining: bool,
) -> None:
    decide = PilotPolicy(cores, START + 3600, max_jobs, idle_timeout, 60)
    now = START + elapsed
    free = decide.free_cores(running)
    idle_since = None if running else START
    wants = decide.should_request(now, free, jobs_taken, idle_since, draining)
    stops = decide.stop_reason(now, len(running), jobs_taken, idle_since, draining)
    assert not (wants and stops)
    assert 0 <= free <= cores
    if running:
        assert stops == ""


def test_config_refuses_nonsense() -> None:
    with pytest.raises(InvalidArgument):
        PilotConfig(server="s", site="S", cores=0, pilot_id="p")
    with pytest.raises(InvalidArgument):
        PilotConfig(server="s", site="S", heartbeat_interval=0, pilot_id="p")
    with pytest.raises(InvalidArgument):
        PilotConfig(server="s", site="S", max_jobs=-1, pilot_id="p")


def test_discover_finds_the_node_and_flags_override(tmp_path: Path) -> None:
    found = discover(tmp_path)
    assert found.cores >= 1 and found.memory_mb > 0 and found.disk_mb > 0
    assert found.platform == platform_string()
    assert found.platform.startswith("Linux_")
    forced = discover(tmp_path, cores=3, memory_mb=2048, platform_name="Linux_x86_64_glibc-2.17")
    assert (forced.cores, forced.memory_mb, forced.platform) == (3, 2048, "Linux_x86_64_glibc-2.17")


def result(status: str, minor: str, exit_code: int | None, kill_reason: str = "") -> PayloadResult:
    return PayloadResult(status, minor, exit_code, 0.0, 0.0, 0.0, "", kill_reason)


def test_a_stopping_pilot_hands_back_the_jobs_it_killed_on_its_way_out() -> None:
    killed = result("Killed", "Pilot stopped (SIGTERM)", -15, "request")
    assert hands_back(killed, pilot_stopping=True)


def test_a_stopping_pilot_hands_back_payloads_the_batch_system_killed_with_it() -> None:
    for code in (-15, -9, -2):
        assert hands_back(result("Failed", "Application killed by signal", code), True)
        assert not hands_back(result("Failed", "Application killed by signal", code), False)


def test_owner_kills_watchdog_kills_and_real_endings_are_never_handed_back() -> None:
    assert not hands_back(result("Killed", "Killed on request", -15, "request"), True)
    assert not hands_back(result("Failed", "Watchdog: memory", -9, "memory"), True)
    assert not hands_back(result("Done", "Execution Complete", 0), True)
    assert not hands_back(result("Failed", "Application exited with code 1", 1), True)
    assert not hands_back(result("Failed", "Application killed by SIGSEGV", -11), True)


def test_the_ces_cpu_limit_caps_what_the_pilot_offers() -> None:
    capped = PilotPolicy(4, deadline=START + 3600, drain_margin=60, max_cpu_time=300)
    assert capped.cpu_time_left(START) == 300
    assert capped.cpu_time_left(START + 3400) == 140  # the wall time left is shorter now
    assert PilotPolicy(4, max_cpu_time=300).cpu_time_left(START) == 300  # no deadline
    assert PilotPolicy(4, deadline=START + 3600).cpu_time_left(START) == 3600
