"""The chaos run's invariant checks (dirac_like.chaos_checks): each fires on a seeded bad record
and stays quiet on a good one."""

from __future__ import annotations

import json
import random
from collections import Counter

from dirac_like.chaos_checks import (
    PayloadLog,
    PayloadRun,
    PilotLife,
    check,
    done_for_its_pilot,
    done_kept,
    jobs_not_final,
    kill_plan,
    lost_jobs,
    overlapping_jobs,
    ran_again_after_done,
    read_payload_log,
)


def line(
    event: str, run: str, mono: float, job: int = 7, attempt: int = 1, pilot: str = "p1"
) -> str:
    return json.dumps(
        {
            "event": event,
            "run": run,
            "job": job,
            "attempt": attempt,
            "pilot": pilot,
            "mono": mono,
            "wall": 1.7e9 + mono,
        }
    )


def run(
    job: int, start: float, end: float, ended: bool = True, pilot: str = "p1", name: str = ""
) -> PayloadRun:
    return PayloadRun(name or f"{job}-{start}", job, 1, pilot, start, end, ended)


# -- reading the log -----------------------------------------------------------------------------


def test_runs_are_read_from_start_tick_and_end_lines() -> None:
    log = read_payload_log(
        [
            line("start", "a", 10.0),
            line("tick", "a", 10.1),
            line("end", "a", 10.5),
            line("start", "b", 11.0, attempt=2, pilot="p2"),
            line("tick", "b", 11.3),
        ]
    )
    by_name = {found.run: found for found in log.runs}
    assert by_name["a"] == PayloadRun("a", 7, 1, "p1", 10.0, 10.5, True)
    assert by_name["b"] == PayloadRun("b", 7, 2, "p2", 11.0, 11.3, False)  # killed: last tick
    assert log.bad_lines == 0


def test_a_torn_line_is_counted_not_fatal() -> None:
    log = read_payload_log(
        [
            line("start", "a", 1.0),
            '{"event": "tick", "ru',
            "",
            '{"event": "end"}',
            line("end", "a", 2.0),
        ]
    )
    assert log.bad_lines == 2
    assert [(found.start, found.last_seen, found.ended) for found in log.runs] == [(1.0, 2.0, True)]


def test_lines_of_a_run_whose_start_is_missing_make_no_run() -> None:
    assert read_payload_log([line("tick", "x", 1.0), line("end", "x", 2.0)]).runs == ()


# -- lost, not final -----------------------------------------------------------------------------


def test_an_acknowledged_job_the_service_does_not_know_is_lost() -> None:
    assert lost_jobs([1, 2, 3], {1: "Done", 3: "Done", 4: "Waiting"}) == (2,)
    assert lost_jobs([1, 3], {1: "Done", 3: "Done", 4: "Waiting"}) == ()


def test_only_done_failed_and_killed_are_final() -> None:
    jobs = {1: "Done", 2: "Failed", 3: "Killed", 4: "Running", 5: "Rescheduled", 6: "Waiting"}
    assert jobs_not_final(jobs) == (4, 5, 6)


# -- overlapping ---------------------------------------------------------------------------------


def test_two_runs_of_a_job_alive_at_once_overlap() -> None:
    assert overlapping_jobs([run(7, 0.0, 5.0, ended=False), run(7, 4.0, 6.0)]) == (7,)


def test_runs_one_after_the_other_do_not_overlap() -> None:
    runs = [run(7, 0.0, 1.0), run(7, 1.5, 2.0), run(8, 0.0, 3.0), run(9, 2.0, 3.0)]
    assert overlapping_jobs(runs) == ()


def test_an_overlap_with_an_earlier_long_run_is_found_past_a_short_one() -> None:
    runs = [run(7, 0.0, 10.0), run(7, 1.0, 2.0, name="b"), run(7, 3.0, 4.0, name="c")]
    assert overlapping_jobs(runs) == (7,)


# -- ran again after Done ------------------------------------------------------------------------


def test_a_job_run_again_after_it_ended_under_a_pilot_that_lived_on_is_found() -> None:
    runs = [run(7, 0.0, 1.0, pilot="p1"), run(7, 8.0, 9.0, pilot="p2")]
    lives = [PilotLife("p1", 0.0), PilotLife("p2", 0.0)]
    assert ran_again_after_done(runs, lives) == (7,)


def test_a_job_run_again_after_its_killed_pilot_kept_its_done_is_found() -> None:
    """However soon after the payload's end the pilot died: its workdir held the Done."""
    runs = [run(7, 0.0, 1.0, pilot="p1"), run(7, 8.0, 9.0, pilot="p2")]
    lives = [
        PilotLife("p1", 0.0, killed=1.001, kept_done=frozenset({(7, 1)})),
        PilotLife("p2", 0.0),
    ]
    assert ran_again_after_done(runs, lives) == (7,)


def test_a_pilot_killed_without_the_done_in_its_workdir_held_no_done() -> None:
    """However long after the payload's end it died (the report was never kept), or with the
    Done of another attempt or job kept."""
    runs = [run(7, 0.0, 1.0, pilot="p1"), run(7, 8.0, 9.0, pilot="p2")]
    for kept in (frozenset(), frozenset({(7, 2), (8, 1)})):
        lives = [PilotLife("p1", 0.0, killed=5.0, kept_done=kept), PilotLife("p2", 0.0)]
        assert ran_again_after_done(runs, lives) == ()
        assert not done_for_its_pilot(runs[0], lives)


def test_a_pilot_killed_before_its_payload_ended_held_no_done() -> None:
    runs = [run(7, 0.0, 3.0, pilot="p1"), run(7, 8.0, 9.0, pilot="p2")]
    lives = [PilotLife("p1", 0.0, killed=2.0), PilotLife("p2", 0.0)]
    assert ran_again_after_done(runs, lives) == ()


def test_a_run_that_never_ended_held_no_done() -> None:
    runs = [run(7, 0.0, 1.0, ended=False, pilot="p1"), run(7, 8.0, 9.0, pilot="p2")]
    assert ran_again_after_done(runs, [PilotLife("p1", 0.0), PilotLife("p2", 0.0)]) == ()


def test_the_pilot_process_is_the_one_alive_when_the_run_started() -> None:
    """p1 was killed and restarted: the run belongs to the second process, which lived on."""
    runs = [run(7, 5.0, 6.0, pilot="p1"), run(7, 8.0, 9.0, pilot="p2")]
    kept = frozenset({(7, 1)})
    lives = [PilotLife("p1", 0.0, killed=4.0, kept_done=kept), PilotLife("p1", 4.1)]
    lives.append(PilotLife("p2", 0.0))
    assert ran_again_after_done(runs, lives) == (7,)
    lives[1] = PilotLife("p1", 4.1, killed=5.5)  # killed mid-run, nothing kept
    assert ran_again_after_done(runs, lives) == ()  # the first life's record is not this run's


def test_the_only_run_of_a_job_never_counts_as_run_again() -> None:
    runs = [run(7, 0.0, 1.0), run(8, 2.0, 3.0)]
    assert ran_again_after_done(runs, [PilotLife("p1", 0.0)]) == ()


def test_a_run_of_an_unrecorded_pilot_never_counts_as_done() -> None:
    assert not done_for_its_pilot(run(7, 0.0, 1.0, pilot="ghost"), [PilotLife("p1", 0.0)])


def test_only_done_reports_are_kept_dones() -> None:
    reports = [
        {"job_id": 7, "attempt": 2, "status": "Done"},
        {"job_id": "8", "attempt": "1", "status": "Done"},  # read back from text
        {"job_id": 9, "attempt": 1, "status": "Failed"},
        {"job_id": 10, "attempt": 1, "status": "Rescheduled"},
        {"job_id": 11, "status": "Done"},  # torn: no attempt
        {"job_id": "x", "attempt": 1, "status": "Done"},
    ]
    assert done_kept(reports) == frozenset({(7, 2), (8, 1)})


# -- all together --------------------------------------------------------------------------------


def test_a_clean_run_breaks_nothing() -> None:
    log = PayloadLog(
        (run(1, 0.0, 1.0), run(2, 0.0, 2.0, pilot="p2"), run(2, 10.0, 11.0, name="again"))
    )
    lives = [PilotLife("p1", 0.0), PilotLife("p2", 0.0, killed=1.5)]  # p2 died mid-run
    report = check([1, 2], {1: "Done", 2: "Done", 3: "Failed"}, log, lives)
    assert report.broken() == []
    counts = report.counts()
    assert counts["acknowledged"] == 2 and counts["jobs_in_service"] == 3
    assert counts["runs"] == 3 and counts["ran_more_than_once"] == 1
    assert counts["statuses"] == {"Done": 2, "Failed": 1}
    assert counts["examples"] == {}


def test_every_broken_invariant_is_named_with_its_jobs() -> None:
    log = PayloadLog(
        (
            run(5, 0.0, 4.0),
            run(5, 3.0, 5.0, pilot="p2"),  # at once
            run(6, 0.0, 1.0),
            run(6, 9.0, 10.0, pilot="p2"),
        ),
        bad_lines=1,
    )
    lives = [PilotLife("p1", 0.0), PilotLife("p2", 0.0)]
    report = check([4, 5, 6, 9], {4: "Running", 5: "Done", 6: "Done"}, log, lives)
    assert report.broken() == ["lost", "not_final", "overlapping", "ran_again_after_done"]
    counts = report.counts()
    assert (
        counts["lost"],
        counts["not_final"],
        counts["overlapping"],
        counts["ran_again_after_done"],
        counts["bad_log_lines"],
    ) == (1, 1, 1, 1, 1)
    assert counts["examples"] == {
        "lost": [9],
        "not_final": [4],
        "overlapping": [5],
        "ran_again_after_done": [6],
    }


# -- the kill plan -------------------------------------------------------------------------------


KINDS = ("service", "pilot", "never")


def test_the_plan_has_every_kind_with_odds_once_and_is_fixed_by_the_seed() -> None:
    plan = kill_plan(random.Random(5), KINDS, (1.0, 9.0, 0.0), 10, 2.0)
    assert len(plan) == 10
    counts = Counter(kind for _, kind in plan)
    assert counts["service"] >= 1 and counts["pilot"] >= 1 and "never" not in counts
    assert all(0.4 <= pause <= 3.6 for pause, _ in plan)
    assert plan == kill_plan(random.Random(5), KINDS, (1.0, 9.0, 0.0), 10, 2.0)
    assert plan != kill_plan(random.Random(6), KINDS, (1.0, 9.0, 0.0), 10, 2.0)


def test_a_plan_shorter_than_the_kinds_takes_what_fits() -> None:
    assert [kind for _, kind in kill_plan(random.Random(1), KINDS, (1, 1, 1), 1, 1.0)] in (
        ["service"],
        ["pilot"],
        ["never"],
    )
    assert kill_plan(random.Random(1), KINDS, (1, 1, 1), 0, 1.0) == []
