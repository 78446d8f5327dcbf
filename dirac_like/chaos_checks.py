"""The invariants a chaos run checks (``scripts/chaos.py``, issue 11), and its kill plan: pure
functions over what the run recorded — the payloads' append-only log, the pilots' kills, the
acknowledged job ids and the service's job list. No I/O here: the script reads the files and the
CLI's JSON.

The payload log holds one JSON object per line, written by each payload run (one process of one
attempt of one job on one pilot)::

    {"event": "start" | "tick" | "end", "run": "<unique per run>", "job": 12, "attempt": 1,
     "pilot": "chaos-2", "mono": 8123.25, "wall": 1764700000.5}

``mono`` is ``time.monotonic()`` (one clock for every process of the machine): a run lasts from
its ``start`` to its last line (a run killed by SIGKILL writes no ``end``; its ticks bound it).

The invariants (issue 11, "Done when"):

- **lost**: an acknowledged job the service does not know;
- **not final**: a job still not Done/Failed/Killed when the run's deadline came;
- **overlapping**: a job two of whose runs were alive at the same moment;
- **ran again after Done**: a job run again after one of its runs ended Done for its pilot: the
  pilot process that ran it lived on to the end of the chaos run (it saw the payload exit), or
  was killed with the job's Done kept in its workdir (a report in its outbox, or the payload
  keeper's ``payload_ended`` mark of exit 0: what a pilot restarted there reports). That pilot
  held the job's Done report, so a second run means the report was lost or came too late (issue
  11, defect 9: "a payload that finished but whose Done report was not yet acknowledged is run
  again after the pilot dies"). Exact, not timed: the chaos script reads the killed pilot's
  workdir once its processes are gone (:attr:`PilotLife.kept_done`).
"""

from __future__ import annotations

import contextlib
import json
import random
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

FINAL_STATUSES = frozenset({"Done", "Failed", "Killed"})


@dataclass(frozen=True)
class PayloadRun:
    """One run of a payload, as its lines in the payload log tell it."""

    run: str
    job_id: int
    attempt: int
    pilot_id: str
    start: float  # monotonic seconds
    last_seen: float  # its end, or its last tick when it never ended
    ended: bool

    def overlaps(self, other: PayloadRun) -> bool:
        return self.start < other.last_seen and other.start < self.last_seen


@dataclass(frozen=True)
class PilotLife:
    """One incarnation of a pilot process: its pilot id, when it started and died (monotonic
    seconds; ``killed`` is None while it lives or when it was stopped at the end), and the jobs
    whose Done its workdir held when it died: (job id, attempt) pairs."""

    pilot_id: str
    started: float
    killed: float | None = None
    kept_done: frozenset[tuple[int, int]] = frozenset()

    def ran(self, run: PayloadRun) -> bool:
        """Whether this process started ``run`` (its pilot id, alive at the run's start)."""
        return (
            self.pilot_id == run.pilot_id
            and self.started <= run.start
            and (self.killed is None or self.killed > run.start)
        )


@dataclass(frozen=True)
class PayloadLog:
    """The runs found in a payload log, and how many of its lines could not be read."""

    runs: tuple[PayloadRun, ...]
    bad_lines: int = 0


@dataclass(frozen=True)
class ChaosReport:
    """The counts a chaos run prints, and the job ids behind each."""

    acknowledged: int
    jobs_in_service: int
    runs: int
    lost: tuple[int, ...]
    not_final: tuple[int, ...]
    overlapping: tuple[int, ...]
    ran_again_after_done: tuple[int, ...]
    ran_more_than_once: int = 0
    bad_log_lines: int = 0
    statuses: Mapping[str, int] = field(default_factory=dict)

    def broken(self) -> list[str]:
        """The names of the invariants this run broke (empty: all held)."""
        named = [
            ("lost", self.lost),
            ("not_final", self.not_final),
            ("overlapping", self.overlapping),
            ("ran_again_after_done", self.ran_again_after_done),
        ]
        return [name for name, ids in named if ids]

    def counts(self) -> dict[str, object]:
        """Everything as plain numbers (and the first job ids of each broken invariant)."""
        return {
            "acknowledged": self.acknowledged,
            "jobs_in_service": self.jobs_in_service,
            "runs": self.runs,
            "ran_more_than_once": self.ran_more_than_once,
            "lost": len(self.lost),
            "not_final": len(self.not_final),
            "overlapping": len(self.overlapping),
            "ran_again_after_done": len(self.ran_again_after_done),
            "bad_log_lines": self.bad_log_lines,
            "statuses": dict(self.statuses),
            "examples": {name: list(getattr(self, name)[:10]) for name in self.broken()},
        }


def read_payload_log(lines: Iterable[str]) -> PayloadLog:
    """Group the payload log's lines into runs. A line that is not a complete record (a torn
    write) is counted, not fatal."""
    starts: dict[str, tuple[int, int, str, float]] = {}  # run -> job, attempt, pilot, start
    last: dict[str, float] = {}
    ended: set[str] = set()
    bad = 0
    for line in lines:
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            run, event, mono = str(record["run"]), str(record["event"]), float(record["mono"])
            if event == "start":
                starts[run] = (
                    int(record["job"]),
                    int(record["attempt"]),
                    str(record["pilot"]),
                    mono,
                )
        except (ValueError, KeyError, TypeError):
            bad += 1
            continue
        last[run] = max(last.get(run, mono), mono)
        if event == "end":
            ended.add(run)
    runs = tuple(
        PayloadRun(run, job_id, attempt, pilot_id, start, last[run], run in ended)
        for run, (job_id, attempt, pilot_id, start) in starts.items()
    )
    return PayloadLog(runs, bad)


def lost_jobs(acknowledged: Iterable[int], service_jobs: Mapping[int, str]) -> tuple[int, ...]:
    """Acknowledged job ids the service does not know (``service_jobs``: id -> status)."""
    return tuple(sorted(set(acknowledged) - set(service_jobs)))


def jobs_not_final(service_jobs: Mapping[int, str]) -> tuple[int, ...]:
    return tuple(
        sorted(job_id for job_id, status in service_jobs.items() if status not in FINAL_STATUSES)
    )


def overlapping_jobs(runs: Iterable[PayloadRun]) -> tuple[int, ...]:
    """Jobs two of whose runs were alive at the same moment."""
    found = []
    for job_id, job_runs in sorted(_by_job(runs).items()):
        ordered = sorted(job_runs, key=lambda run: run.start)
        latest_end = ordered[0].last_seen
        for run in ordered[1:]:
            if run.start < latest_end:
                found.append(job_id)
                break
            latest_end = max(latest_end, run.last_seen)
    return tuple(found)


def ran_again_after_done(runs: Iterable[PayloadRun], lives: Sequence[PilotLife]) -> tuple[int, ...]:
    """Jobs that started a run after another run of theirs ended Done for its pilot (see
    :func:`done_for_its_pilot`)."""
    found = []
    for job_id, job_runs in sorted(_by_job(runs).items()):
        done_at = [run.last_seen for run in job_runs if done_for_its_pilot(run, lives)]
        if done_at and any(run.start > min(done_at) for run in job_runs):
            found.append(job_id)
    return tuple(found)


def done_for_its_pilot(run: PayloadRun, lives: Sequence[PilotLife]) -> bool:
    """Whether the pilot process that started ``run`` holds its Done: it lived on (never killed)
    and the run ended, or it was killed with the run's job and attempt in its ``kept_done``. A
    run whose pilot process was not recorded never counts."""
    for life in lives:
        if life.ran(run):
            if life.killed is None:
                return run.ended
            return (run.job_id, run.attempt) in life.kept_done
    return False


def done_kept(reports: Iterable[Mapping[str, object]]) -> frozenset[tuple[int, int]]:
    """The (job id, attempt) pairs of the Done reports among ``reports`` (the outbox's JSON
    objects, or what the payload keeper's marks make: ``job_id``, ``attempt``, ``status``)."""
    kept = set()
    for report in reports:
        if report.get("status") == "Done":
            with contextlib.suppress(KeyError, TypeError, ValueError):
                kept.add((int(str(report["job_id"])), int(str(report["attempt"]))))
    return frozenset(kept)


def check(
    acknowledged: Iterable[int],
    service_jobs: Mapping[int, str],
    log: PayloadLog,
    lives: Sequence[PilotLife],
) -> ChaosReport:
    """Every invariant over one chaos run's records."""
    acknowledged = set(acknowledged)
    statuses: dict[str, int] = defaultdict(int)
    for status in service_jobs.values():
        statuses[status] += 1
    by_job = _by_job(log.runs)
    return ChaosReport(
        acknowledged=len(acknowledged),
        jobs_in_service=len(service_jobs),
        runs=len(log.runs),
        lost=lost_jobs(acknowledged, service_jobs),
        not_final=jobs_not_final(service_jobs),
        overlapping=overlapping_jobs(log.runs),
        ran_again_after_done=ran_again_after_done(log.runs, lives),
        ran_more_than_once=sum(1 for job_runs in by_job.values() if len(job_runs) > 1),
        bad_log_lines=log.bad_lines,
        statuses=dict(sorted(statuses.items())),
    )


def _by_job(runs: Iterable[PayloadRun]) -> dict[int, list[PayloadRun]]:
    grouped: dict[int, list[PayloadRun]] = defaultdict(list)
    for run in runs:
        grouped[run.job_id].append(run)
    return grouped


def kill_plan(
    rng: random.Random,
    kinds: Sequence[str],
    weights: Sequence[float],
    kills: int,
    mean_interval: float,
) -> list[tuple[float, str]]:
    """(seconds to wait, kind of kill) for each of ``kills`` kills, fixed by ``rng``'s seed: each
    kind with odds > 0 once (as many as fit), the others drawn by the odds, in random order; the
    pauses 0.2 to 1.8 times ``mean_interval``."""
    wanted = [kind for kind, weight in zip(kinds, weights, strict=True) if weight > 0]
    chosen = wanted[:kills] + rng.choices(kinds, weights, k=max(0, kills - len(wanted)))
    rng.shuffle(chosen)
    return [(rng.uniform(0.2, 1.8) * mean_interval, kind) for kind in chosen]
