"""``dirac-like admin site-status|downtime|availability`` against a real central service."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from dirac_like.client import Client
from dirac_like.processes import ServiceProcess
from dirac_like.protocol import ProbeResultItem
from dirac_like.testing import run_cli

SITE = "LCG.Cli.org"


# Twelve CLI processes one after the other (~0.4 s of CPU each to start): over 90 s when CI's
# machine is loaded (seen at load 18).
@pytest.mark.timeout(300)
def test_operators_declare_list_and_cancel_downtimes_and_read_figures(
    tmp_path: Path, central: ServiceProcess, client: Client
) -> None:
    now = time.time()
    client.probe_report(
        [  # two probe runs an hour apart: OK, then CRITICAL
            ProbeResultItem(SITE, "site", "python", "OK", "fine", now - 7200, "ce1", 1),
            ProbeResultItem(SITE, "site", "python", "CRITICAL", "broken", now - 3600, "ce1", 2),
        ]
    )

    def cli(*args: str) -> tuple[int, str, str]:
        done = run_cli(central.endpoint, *args, cwd=tmp_path)
        return done.returncode, done.stdout, done.stderr

    code, out, _ = cli(
        "admin",
        "downtime",
        "add",
        SITE,
        "--from",
        "+1h",
        "--to",
        "+2h",
        "--reason",
        "kernel upgrade",
        "--json",
    )
    assert code == 0 and json.loads(out)["scheduled"] is True
    code, _, err = cli(
        "admin", "downtime", "add", SITE, "--from", "+90m", "--to", "+3h", "--reason", "again"
    )
    assert code == 1 and "overlaps its downtime 1" in err
    code, _, err = cli(
        "admin", "downtime", "add", SITE, "--from", "+5h", "--to", "+4h", "--reason", "backwards"
    )
    assert code == 1 and "end must be after the start" in err
    code, _, err = cli("admin", "downtime", "add", "LCG.Nowhere.xx", "--to", "+1h", "--reason", "x")
    assert code == 1 and "unknown site 'LCG.Nowhere.xx'" in err
    code, out, _ = cli("admin", "downtime", "list")
    assert code == 0 and SITE in out and "announced" in out

    code, out, _ = cli(
        "admin", "availability", "--site", SITE, "--since", "3h", "--validity", "1h", "--json"
    )
    assert code == 0
    (report,) = json.loads(out)
    whole = report["periods"]
    up = sum(p["up_seconds"] for p in whole)
    down = sum(p["down_seconds"] for p in whole)
    assert abs(up - 3600) < 5 and abs(down - 3600) < 5  # the last hour: CRITICAL
    code, out, _ = cli("admin", "availability", "--history")
    assert code == 0 and SITE in out and "%" in out
    code, out, _ = cli("admin", "site-status")
    assert code == 0 and SITE in out and "Active" in out

    code, out, _ = cli("admin", "downtime", "cancel", "1")
    assert code == 0 and "cancelled" in out
    code, _, err = cli("admin", "downtime", "cancel", "1")
    assert code == 1 and "already cancelled" in err
