"""One daemon of a kind per home: a second central service on the same home or store, or a
second director of a site on the same home, exits at once naming the first one's PID (issue 11
defect 3: two services on one home ran 349 of 350 jobs twice)."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from dirac_like.errors import AlreadyRunning, ServiceUnavailable
from dirac_like.home_lock import HomeLock, holding, lock_path
from dirac_like.processes import ServiceProcess, dirac_like_argv

SITE = "Site.Lock.org"
SITE_TOML = """\
[ce.ce1]
fabric = "local"
cores_per_slot = 1
max_total = 1
"""


def test_a_second_lock_on_the_same_file_is_refused_naming_the_holder(tmp_path: Path) -> None:
    path = lock_path(tmp_path, "central")
    first = HomeLock(path, "a central service")
    with pytest.raises(AlreadyRunning, match=f"already runs \\(PID {os.getpid()}, lock {path}"):
        HomeLock(path, "a central service")
    first.release()
    HomeLock(path, "a central service").release()  # free again once released
    assert oct(path.stat().st_mode & 0o777) == oct(0o600)


def test_holding_takes_all_locks_or_none(tmp_path: Path) -> None:
    taken = HomeLock(tmp_path / "b.lock", "b")
    both = holding((tmp_path / "a.lock", "a"), (tmp_path / "b.lock", "b"))
    with pytest.raises(AlreadyRunning), both:
        pass
    HomeLock(tmp_path / "a.lock", "a").release()  # "a" was released when "b" failed
    taken.release()


def second_service_refusal(home: Path, config: Path | None = None) -> str:
    with pytest.raises(ServiceUnavailable, match="did not start"):
        ServiceProcess.start_central(home, config, timeout=60)
    return (home / "central.stderr").read_text()


def test_a_second_central_service_on_one_home_exits_naming_the_first(
    tmp_path: Path, start_central: Callable[..., ServiceProcess]
) -> None:
    first = start_central(home=tmp_path / "home")
    stderr = second_service_refusal(tmp_path / "home")
    assert f"a central service on home {tmp_path / 'home'} already runs (PID {first.pid}" in stderr


def test_a_second_central_service_on_one_store_exits(
    tmp_path: Path, start_central: Callable[..., ServiceProcess]
) -> None:
    store = tmp_path / "shared" / "jobs.sqlite"
    store.parent.mkdir()
    config_text = f'[store]\nurl = "{store}"\n'
    first = start_central(config_text=config_text, home=tmp_path / "home-a")
    config = tmp_path / "config-b.toml"
    config.write_text(config_text)
    stderr = second_service_refusal(tmp_path / "home-b", config)
    assert f"a central service on store {store} already runs (PID {first.pid}" in stderr


def test_the_lock_dies_with_its_holder(
    tmp_path: Path, start_central: Callable[..., ServiceProcess]
) -> None:
    first = start_central(home=tmp_path / "home")
    os.kill(first.pid, signal.SIGKILL)
    first.popen.wait(30)
    start_central(home=tmp_path / "home")  # starts: kill -9 left no stale lock behind


def test_a_second_director_of_a_site_on_one_home_exits(
    tmp_path: Path, central: ServiceProcess
) -> None:
    sites = tmp_path / "sites"
    sites.mkdir()
    (sites / f"{SITE}.toml").write_text(SITE_TOML)
    home = tmp_path / "director-home"
    held = HomeLock(lock_path(home, f"director-{SITE}"), "the test")
    try:
        done = subprocess.run(
            dirac_like_argv(
                "agent",
                "director",
                "--site",
                SITE,
                "--sites-dir",
                str(sites),
                "--server",
                central.endpoint,
                "--home",
                str(home),
                "--once",
            ),
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )
    finally:
        held.release()
    assert done.returncode == 1, done.stderr
    assert (
        f"a director of site {SITE} on home {home} already runs (PID {os.getpid()}" in done.stderr
    )
