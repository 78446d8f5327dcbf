"""The checks a probe job runs on a worker node: ``python -m dirac_like.probe --cores N ...``.

The monitoring agent submits it (agents/monitoring.py) to every CE; the pilot runs it like any
payload, with the pilot's own Python (``$DIRAC_LIKE_PYTHON``). It prints one line
``DIRAC_LIKE_PROBE {"checks": [...]}`` with one ``{"check", "status", "message"}`` per check,
and exits 0: the verdict is in the checks, not in the exit code. The pilot having started the
job at all is the first check ("started"); the others:

- ``python``: the interpreter runs (its version);
- ``dirac-like``: the package imports (its version);
- ``scratch``: the working folder takes a 1 MiB write, reads it back, and has ``--min-scratch-mb``
  free (CRITICAL below);
- ``cpu`` / ``memory``: the node has the cores and memory the CE advertises (WARNING below);
- ``se:NAME``: each ``--se NAME=PATH`` (a ``file`` storage element as the node mounts it) is a
  writable folder (CRITICAL otherwise).

``--hang SECONDS`` sleeps first: how tests make a probe that hangs.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path

MARKER = "DIRAC_LIKE_PROBE "
SCRATCH_BYTES = 1024 * 1024

Check = dict[str, str]


def _check(name: str, status: str, message: str) -> Check:
    return {"check": name, "status": status, "message": message}


def check_python() -> Check:
    return _check("python", "OK", f"Python {platform.python_version()} at {sys.executable}")


def check_dirac_like() -> Check:
    import dirac_like

    return _check("dirac-like", "OK", f"dirac-like {dirac_like.__version__}")


def check_scratch(folder: Path, min_free_mb: int) -> Check:
    probe = folder / ".dirac-like-probe"
    data = os.urandom(SCRATCH_BYTES)
    try:
        probe.write_bytes(data)
        same = probe.read_bytes() == data
        probe.unlink()
        free_mb = shutil.disk_usage(folder).free // (1024 * 1024)
    except OSError as exc:
        return _check("scratch", "CRITICAL", f"scratch {folder}: {exc.strerror or exc}")
    if not same:
        return _check("scratch", "CRITICAL", f"scratch {folder}: read back other bytes")
    if free_mb < min_free_mb:
        return _check(
            "scratch", "CRITICAL", f"scratch {folder}: {free_mb} MiB free, {min_free_mb} MiB needed"
        )
    return _check("scratch", "OK", f"scratch {folder}: {free_mb} MiB free")


def check_cpu(advertised: int) -> Check:
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if (usable or 0) < advertised:
        return _check("cpu", "WARNING", f"{usable} usable core(s), the CE advertises {advertised}")
    return _check("cpu", "OK", f"{usable} usable core(s) for {advertised} advertised")


def check_memory(advertised_mb: int) -> Check:
    import psutil  # type: ignore[import-untyped, unused-ignore]

    total_mb = psutil.virtual_memory().total // (1024 * 1024)
    if advertised_mb and total_mb < advertised_mb:
        return _check(
            "memory",
            "WARNING",
            f"{total_mb} MiB on the node, the CE advertises {advertised_mb} MiB",
        )
    return _check("memory", "OK", f"{total_mb} MiB on the node")


def check_se(name: str, path: Path) -> Check:
    if not path.is_dir():
        return _check(f"se:{name}", "CRITICAL", f"SE {name}: {path} is not a folder here")
    if not os.access(path, os.W_OK | os.X_OK):
        return _check(f"se:{name}", "CRITICAL", f"SE {name}: {path} is not writable")
    return _check(f"se:{name}", "OK", f"SE {name}: {path} reachable")


def run_checks(args: argparse.Namespace) -> list[Check]:
    checks: list[Callable[[], Check]] = [
        check_python,
        check_dirac_like,
        lambda: check_scratch(Path.cwd(), args.min_scratch_mb),
        lambda: check_cpu(args.cores),
        lambda: check_memory(args.memory),
    ]
    for item in args.se:
        name, _, path = item.partition("=")
        checks.append(functools.partial(check_se, name, Path(path)))
    results = []
    for check in checks:
        try:
            results.append(check())
        except Exception as exc:  # a check that breaks is an answer too
            results.append(
                _check(
                    getattr(check, "__name__", "check"), "CRITICAL", f"{type(exc).__name__}: {exc}"
                )
            )
    return results


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m dirac_like.probe", description="checks of a worker node (a probe job)"
    )
    parser.add_argument("--cores", type=int, default=1, help="cores the CE advertises")
    parser.add_argument("--memory", type=int, default=0, help="MiB the CE advertises (0: any)")
    parser.add_argument("--min-scratch-mb", type=int, default=10)
    parser.add_argument("--se", action="append", default=[], metavar="NAME=PATH")
    parser.add_argument("--hang", type=float, default=0.0, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.hang:
        time.sleep(args.hang)
    print(MARKER + json.dumps({"checks": run_checks(args)}), flush=True)
    return 0


def parse_output(text: str) -> list[Check]:
    """The checks a probe printed (ValueError if it printed none, or garbage)."""
    for line in reversed(text.splitlines()):
        if line.startswith(MARKER):
            checks = json.loads(line[len(MARKER) :])["checks"]
            if not isinstance(checks, list) or not all(
                isinstance(c, dict) and {"check", "status", "message"} <= set(c) for c in checks
            ):
                raise ValueError("probe output: malformed checks")
            return [{key: str(c[key]) for key in ("check", "status", "message")} for c in checks]
    raise ValueError("probe output: no result line")


if __name__ == "__main__":
    sys.exit(main())
