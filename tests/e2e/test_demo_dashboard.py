"""``dirac-like demo --keep`` brings up the web dashboard: it prints the dashboard's address and
the ``web-login`` commands; the printed command makes a link that logs in and shows the demo's
jobs; Ctrl-C stops everything, the dashboard included."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
from pathlib import Path

import psutil
import pytest
from web_grid import WebSession

from dirac_like.processes import dirac_like_argv
from dirac_like.testing import wait_for

REPO = Path(__file__).resolve().parents[2]
READY = "Press Ctrl-C to stop the grid"

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]  # real pilots run jobs first


def test_demo_keep_prints_a_dashboard_login_that_shows_its_jobs(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "TMPDIR": str(tmp_path),
        "COLUMNS": "100",
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    demo = subprocess.Popen(
        [sys.executable, "-m", "dirac_like", "demo", "--jobs", "9", "--sites", "1", "--keep"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(demo.stdout or ()), daemon=True)
    reader.start()
    try:
        wait_for(
            lambda: any(READY in line for line in lines) or demo.poll() is not None,
            "the demo to keep its grid up",
            timeout=120,
        )
        out = "".join(lines)
        assert demo.poll() is None, out
        url = re.search(r"The web dashboard is at (http://127\.0\.0\.1:\d+/)", out).group(1)
        command = re.search(r"(dirac-like web-login .*)   # the admin", out).group(1)
        login = subprocess.run(
            [*dirac_like_argv(*shlex.split(command)[1:]), "--json"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        link = json.loads(login.stdout)["url"]
        assert link.startswith(url)
        session = WebSession(url)
        assert session.get(link.removeprefix(url.rstrip("/"))).status == 302
        overview = session.get("/fragment/overview").text
        total = re.search(r'id="total-jobs">(\d+)<', overview)
        assert total and int(total.group(1)) >= 9, overview  # the demo's (and any probe jobs)
        assert "physics" in overview and "users" in overview  # the groups' shares
        hog = session.get("/jobs", {"name": "memory-hog"}).text  # one of the demo's jobs
        assert len(re.findall(r'data-job="\d+"', hog)) == 1 and "<td>Failed</td>" in hog
        sites = session.get("/fragment/sites").text  # the demo's monitoring agent probed its site
        assert re.search(r'class="cell a\d+"', sites), sites
        site = re.search(r'<tr data-site="([^"]+)">', sites).group(1)
        accounting = session.get("/accounting").text  # the demo's finished jobs, plotted
        assert "Finished jobs by site" in accounting and f">{site}</text>" in accounting
    finally:
        if demo.poll() is None:
            demo.send_signal(signal.SIGINT)  # Ctrl-C: the demo stops its grid
        try:
            demo.wait(60)
        finally:
            if demo.poll() is None:
                demo.kill()
                demo.wait(10)
        reader.join(10)
        if demo.stdout is not None:
            demo.stdout.close()
    assert demo.returncode == 0, "".join(lines)
    leftovers = [
        p
        for p in psutil.process_iter(["cmdline"])
        if any(str(tmp_path) in word for word in p.info["cmdline"] or [])
    ]
    for process in leftovers:
        with contextlib.suppress(psutil.Error):
            process.kill()
    assert not leftovers
