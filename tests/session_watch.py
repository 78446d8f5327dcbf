"""Processes a test starts that must not outlive the test session, even a killed one.

``stop_with_session(pid)`` has scripts/stop-when-gone.sh watch this process: should it die while
``pid`` still runs (a session killed by SIGKILL or by CI's timeout: no fixture teardown runs), the
watcher sends ``pid`` SIGTERM; ``stop_with_session(pid, group=True)`` signals its process group
(whose ID is ``pid``) instead. The watcher exits by itself once ``pid`` ends. The daemon scripts
(Slurm, XRootD, PostgreSQL, Prometheus) arm the same watcher themselves when given WATCH_PID.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

WATCHER = Path(__file__).resolve().parents[1] / "scripts" / "stop-when-gone.sh"


def stop_with_session(pid: int, group: bool = False, stop: int = signal.SIGTERM) -> None:
    target = f"-{pid}" if group else str(pid)
    subprocess.run(
        ["bash", str(WATCHER), str(os.getpid()), str(pid), "--", "kill", f"-{stop}", "--", target],
        check=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )
