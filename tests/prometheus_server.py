"""A real Prometheus server for the tests (Debian's, started by scripts/prometheus.sh).

``start_prometheus`` starts one on a free loopback port with a given config and waits until it
answers; the caller stops it with ``stop_prometheus`` (by its recorded PID). Should the test
session die first, the script's watcher stops it (``WATCH_PID``).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from dirac_like.processes import free_port

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "prometheus.sh"


def start_prometheus(base: Path, config: Path) -> int:
    """Start a server with its data and log in ``base``; returns its port."""
    port = free_port()
    started = subprocess.run(
        ["bash", str(SCRIPT), "start", str(base), str(config), str(port)],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "WATCH_PID": str(os.getpid())},  # it stops once this process is gone
    )
    if started.returncode != 0:
        stop_prometheus(base)
        raise AssertionError(f"Prometheus did not start:\n{started.stdout}{started.stderr}")
    return port


def stop_prometheus(base: Path) -> None:
    """Stop the server whose PID is recorded in ``base``."""
    subprocess.run(
        ["bash", str(SCRIPT), "stop", str(base)],
        capture_output=True,
        timeout=60,
        check=False,
        stdin=subprocess.DEVNULL,
    )
