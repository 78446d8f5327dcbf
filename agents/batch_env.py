"""What a pilot learns from the batch system it runs under, and how a director wraps a pilot in
the bootstrap script (``scripts/pilot-bootstrap.sh``).

Time left: under Slurm (``SLURM_JOB_ID`` set) the job's end time comes from ``squeue -h -j ID -o
%e``, or ``scontrol -o show job ID`` (``EndTime=``) when squeue gives nothing usable; the pilot's
time left is that minus now. Outside a batch system, or when Slurm cannot tell (no time limit,
commands missing, controller down), :func:`time_left_from_batch` returns None and the pilot keeps
the ``--time-left`` it was given. Parsing is pure (:func:`parse_slurm_timestamp`,
:func:`end_time_from_scontrol`); only :func:`slurm_end_time` runs commands.

Bootstrap: the script a batch system starts on a worker node, before dirac-like is importable.
It finds or creates a Python with dirac-like, records what it did in ``bootstrap.json`` in its
working directory, and execs ``python -P -m dirac_like pilot ARGS``. When setup fails it exits with
one of the codes of :data:`BOOTSTRAP_EXIT_REASONS` (the script documents the same table).
"""

from __future__ import annotations

import logging
import re
import subprocess
import sys
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path

log = logging.getLogger(__name__)

SLURM_QUERY_TIMEOUT = 10.0  # seconds an squeue/scontrol call may take


def _bootstrap_script() -> Path:
    """scripts/pilot-bootstrap.sh of a source tree (editable install), else where a wheel puts
    it (``<prefix>/share/dirac-like/``, setup.cfg's data_files)."""
    in_tree = Path(__file__).resolve().parents[1] / "scripts" / "pilot-bootstrap.sh"
    installed = Path(sys.prefix) / "share" / "dirac-like" / "pilot-bootstrap.sh"
    return in_tree if in_tree.is_file() or not installed.is_file() else installed


BOOTSTRAP_SCRIPT = _bootstrap_script()  # a batch system's worker nodes must see it at this path

# Exit codes of scripts/pilot-bootstrap.sh (keep in step with its header).
BOOTSTRAP_NO_PYTHON = 64
BOOTSTRAP_VENV_FAILED = 65
BOOTSTRAP_INSTALL_FAILED = 66
BOOTSTRAP_NOT_IMPORTABLE = 67
BOOTSTRAP_USAGE = 68
BOOTSTRAP_EXIT_REASONS: dict[int, str] = {
    BOOTSTRAP_NO_PYTHON: "bootstrap: no Python 3.11 or newer on the worker node",
    BOOTSTRAP_VENV_FAILED: "bootstrap: creating the virtual environment failed",
    BOOTSTRAP_INSTALL_FAILED: "bootstrap: installing dirac-like into the environment failed",
    BOOTSTRAP_NOT_IMPORTABLE: "bootstrap: dirac-like is not importable (and nothing to install "
    "it from)",
    BOOTSTRAP_USAGE: "bootstrap: bad arguments to the bootstrap script",
}

_NO_TIME = frozenset({"", "NONE", "UNKNOWN", "N/A", "UNLIMITED", "INVALID"})
_END_TIME = re.compile(r"(?:^|\s)EndTime=(\S+)")


# -- time left -----------------------------------------------------------------------------------


def time_left_from_batch(environ: Mapping[str, str], now: float) -> float | None:
    """Seconds until the batch system ends this job (never negative); None when not under a
    batch system or it cannot tell."""
    job_id = environ.get("SLURM_JOB_ID", "")
    if not job_id:
        return None
    if not job_id.isdigit():
        log.warning("SLURM_JOB_ID=%r is not a job id; time left unknown", job_id)
        return None
    end = slurm_end_time(job_id, environ)
    return None if end is None else max(0.0, end - now)


def effective_time_left(given: float, from_batch: float | None) -> float:
    """The time left a pilot should use: the shorter of ``given`` (0: none) and what the batch
    system says. Never 0 when the batch system named an end (0 means "no deadline" to a pilot)."""
    if from_batch is None:
        return given
    from_batch = max(from_batch, 1.0)
    return min(given, from_batch) if given > 0 else from_batch


def slurm_end_time(
    job_id: str, environ: Mapping[str, str], timeout: float = SLURM_QUERY_TIMEOUT
) -> float | None:
    """The end time (epoch seconds) of Slurm job ``job_id``, or None."""
    text = _run(["squeue", "-h", "-j", job_id, "-o", "%e"], environ, timeout)
    end = parse_slurm_timestamp(text.strip()) if text is not None else None
    if end is not None:
        return end
    text = _run(["scontrol", "-o", "show", "job", job_id], environ, timeout)
    return end_time_from_scontrol(text) if text is not None else None


def parse_slurm_timestamp(text: str) -> float | None:
    """``2024-05-01T12:00:00`` (Slurm prints local time) as epoch seconds; None for NONE,
    Unknown, N/A, UNLIMITED or anything else that is not a timestamp."""
    if text.upper() in _NO_TIME:
        return None
    try:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S").timestamp()
    except ValueError:
        return None


def end_time_from_scontrol(text: str) -> float | None:
    """The ``EndTime=`` of ``scontrol show job`` output, as epoch seconds, or None."""
    found = _END_TIME.search(text)
    return parse_slurm_timestamp(found.group(1)) if found else None


def _run(argv: list[str], environ: Mapping[str, str], timeout: float) -> str | None:
    """stdout of a successful command; None (logged) when it fails, is missing or times out."""
    try:
        done = subprocess.run(
            argv,
            env=dict(environ),
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.warning("%s: %s; time left unknown", argv[0], exc)
        return None
    if done.returncode != 0:
        log.warning(
            "%s failed (exit %d): %s", " ".join(argv), done.returncode, done.stderr.strip()[-500:]
        )
        return None
    return done.stdout


# -- bootstrap -----------------------------------------------------------------------------------


def bootstrap_command(
    pilot_argv: Sequence[str],
    *,
    python: str | None = None,
    install_from: str | Path | None = None,
    venv: str | Path | None = None,
    script: str | Path = BOOTSTRAP_SCRIPT,
) -> list[str]:
    """The pilot argv the director builds (``[python, "-P", "-m", "dirac_like", "pilot", ARGS...]``
    or
    ``["dirac-like", "pilot", ARGS...]``) wrapped in the bootstrap script: ``bash SCRIPT [--python
    P] [--install-from SRC] [--venv DIR] -- ARGS...``. ``python`` is a Python to try first;
    ``install_from`` a wheel or source folder to install when no Python has dirac-like; ``venv``
    where to create that environment (default: ``venv`` in the pilot's working directory)."""
    arguments = _pilot_arguments(pilot_argv)
    command = ["/bin/bash", str(script)]
    if python:
        command += ["--python", python]
    if install_from:
        command += ["--install-from", str(install_from)]
    if venv:
        command += ["--venv", str(venv)]
    return [*command, "--", *arguments]


def bootstrap_reason(exit_code: int | None) -> str:
    """What a pilot's exit code says about its bootstrap ("" when it is not a bootstrap code)."""
    return BOOTSTRAP_EXIT_REASONS.get(exit_code, "") if exit_code is not None else ""


def _pilot_arguments(pilot_argv: Sequence[str]) -> list[str]:
    argv = [argument for argument in pilot_argv[:2] if argument != "-P"] + list(pilot_argv[2:])
    if argv[1:4] == ["-m", "dirac_like", "pilot"]:
        return argv[4:]
    if len(argv) >= 2 and Path(argv[0]).name == "dirac-like" and argv[1] == "pilot":
        return argv[2:]
    raise ValueError(
        f"not a pilot command (expected PYTHON -m dirac_like pilot ... or "
        f"dirac-like pilot ...): {argv[:4]!r}"
    )
