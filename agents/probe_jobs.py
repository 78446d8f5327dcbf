"""Probe jobs: what the monitoring agent submits to a CE, and what it makes of the job's fate.

Pure: :func:`probe_description` builds the job, :func:`judge` decides from the job's status and
the clock what a probe in flight has come to, :func:`results_of_output` turns the checks the
probe printed (dirac_like/probe.py) into results. The agent (agents/monitoring.py) does the I/O.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from enum import Enum
from typing import Any

from dirac_like.errors import InvalidArgument
from dirac_like.monitoring import CheckStatus, ProbeResult, TargetKind, parse_check_status
from dirac_like.probe import parse_output
from dirac_like.sites import CEConfig

PROBE_OUTPUT = "probe.out"
PROBE_PRIORITY = 10  # the highest DIRAC Priority
PROBE_CPU_TIME = 300  # seconds: a probe asks for little, so it fits any CE


def probe_description(
    site: str,
    ce: CEConfig,
    ses: dict[str, str],
    min_scratch_mb: int,
    extra_arguments: tuple[str, ...] = (),
) -> dict[str, Any]:
    """The probe job of one CE (the JSON form of a JDL): targeted at the CE, highest priority,
    it runs ``python -m dirac_like.probe`` with the pilot's Python."""
    command = [
        "-P",
        "-m",
        "dirac_like.probe",
        "--cores",
        str(ce.cores_per_slot),
        "--memory",
        str(ce.memory_mb),
        "--min-scratch-mb",
        str(min_scratch_mb),
    ]
    for name, path in sorted(ses.items()):
        command += ["--se", f"{name}={path}"]
    command += list(extra_arguments)
    shell = 'exec "${DIRAC_LIKE_PYTHON:-python3}" ' + shlex.join(command)
    return {
        "JobName": f"probe-{site}-{ce.name}",
        "Executable": "/bin/sh",
        "Arguments": shlex.join(["-c", shell]),
        "Site": site,
        "GridCE": [ce.name],
        "Priority": PROBE_PRIORITY,
        "CPUTime": PROBE_CPU_TIME,
        "NumberOfProcessors": 1,
        "StdOutput": PROBE_OUTPUT,
        "StdError": "probe.err",
        "OutputSandbox": [PROBE_OUTPUT, "probe.err"],
        "Tags": list(ce.required_tags),  # a CE that takes only tagged jobs takes its probe
    }


@dataclass
class InFlight:
    """A probe job submitted and not judged yet."""

    site: str
    ce: str
    job_id: int
    submitted: float
    started: float = 0.0  # when the agent first saw it running (0: not yet)


class Fate(Enum):
    WAIT = "wait"
    COLLECT = "collect"  # Done: read its output
    FAILED = "failed"  # the payload failed: CRITICAL
    NOT_STARTED = "not started"  # kill it: CRITICAL
    TIMED_OUT = "timed out"  # kill it: CRITICAL
    LOST = "lost"  # killed or deleted by someone else, or gone: UNKNOWN


NOT_STARTED_STATUSES = frozenset({"Received", "Checking", "Waiting", "Matched", "Rescheduled"})
_RUNNING = frozenset({"Running", "Completing", "Stalled"})


def judge(
    probe: InFlight, status: str | None, now: float, start_timeout: float, run_timeout: float
) -> Fate:
    """What a probe in flight has come to, from its job's status (None: no such job)."""
    if status == "Done":
        return Fate.COLLECT
    if status == "Failed":
        return Fate.FAILED
    if status in _RUNNING:
        if probe.started and now - probe.started > run_timeout:
            return Fate.TIMED_OUT
        return Fate.WAIT
    if status in NOT_STARTED_STATUSES:
        return Fate.NOT_STARTED if now - probe.submitted > start_timeout else Fate.WAIT
    return Fate.LOST


def result(
    probe: InFlight, check: str, status: CheckStatus, message: str, now: float
) -> ProbeResult:
    return ProbeResult(
        probe.site, TargetKind.SITE, check, status, message[:1000], now, probe.ce, probe.job_id
    )


def results_of_output(probe: InFlight, output: str, now: float) -> list[ProbeResult]:
    """The checks a finished probe printed, after "started" OK; CRITICAL "output" if it printed
    none that can be read."""
    started = result(probe, "started", CheckStatus.OK, "the pilot ran the probe", now)
    try:
        checks = parse_output(output)
        parsed = [
            result(probe, c["check"], parse_check_status(c["status"]), c["message"], now)
            for c in checks
        ]
    except (ValueError, KeyError, TypeError, InvalidArgument) as exc:
        return [
            started,
            result(probe, "output", CheckStatus.CRITICAL, f"no readable probe result: {exc}", now),
        ]
    return [started, *parsed]


def results_of_fate(
    probe: InFlight, fate: Fate, minor_status: str, timeouts: tuple[float, float], now: float
) -> list[ProbeResult]:
    """The results of a probe that ended without output to read."""
    start_timeout, run_timeout = timeouts
    if fate is Fate.NOT_STARTED:
        return [
            result(
                probe,
                "started",
                CheckStatus.CRITICAL,
                f"not started: no pilot ran it within {start_timeout:g} s",
                now,
            )
        ]
    started = result(probe, "started", CheckStatus.OK, "the pilot ran the probe", now)
    if fate is Fate.TIMED_OUT:
        return [
            started,
            result(
                probe,
                "finished",
                CheckStatus.CRITICAL,
                f"timed out: still running after {run_timeout:g} s",
                now,
            ),
        ]
    if fate is Fate.FAILED:
        return [
            started,
            result(
                probe,
                "finished",
                CheckStatus.CRITICAL,
                f"the probe job failed: {minor_status}",
                now,
            ),
        ]
    return [
        result(
            probe,
            "started",
            CheckStatus.UNKNOWN,
            f"the probe job was lost ({minor_status or 'no such job'})",
            now,
        )
    ]
