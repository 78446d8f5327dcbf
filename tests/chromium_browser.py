"""Debian's headless Chromium for the dashboard's browser tests, driven through its chromedriver
(selenium), which is given both paths so nothing is downloaded at run time.

``start_browser`` starts chromedriver in a session of its own (Chromium and its helpers start in
that session's process group) and has scripts/stop-when-gone.sh watch this process: should it die
before ``driver.quit()`` (a test session killed by SIGKILL or by CI's timeout), the watcher kills
that process group, whose ID is chromedriver's PID. ``chromium_or_skip`` skips the tests without
Chromium, saying how to install it (``bash scripts/chromium.sh install``); under ``CI=true`` they
fail instead.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
WATCHER = REPO / "scripts" / "stop-when-gone.sh"
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
CHROME_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--metrics-recording-only",
    "--mute-audio",
    "--hide-scrollbars",
    "--window-size=1280,860",
)


def chromium_or_skip() -> None:
    if os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK):
        return
    message = "no chromium/chromedriver: bash scripts/chromium.sh install"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true: {message}", pytrace=False)
    pytest.skip(message)


def start_browser(scratch: Path) -> Any:
    """A selenium driver of a new headless Chromium whose profile, config and cache are under
    ``scratch``; the caller quits it (``driver.quit()``)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*CHROME_FLAGS, f"--user-data-dir={scratch / 'profile'}"):
        options.add_argument(flag)
    # Chromium's crash handler writes under $HOME/.config and .cache even with a profile folder.
    env = {
        **os.environ,
        "XDG_CONFIG_HOME": str(scratch / "config"),
        "XDG_CACHE_HOME": str(scratch / "cache"),
    }
    service = Service(
        CHROMEDRIVER,
        env=env,
        log_output=str(scratch / "chromedriver.log"),
        popen_kw={"start_new_session": True},
    )
    driver = webdriver.Chrome(service=service, options=options)
    watch_group(driver_pid(driver))
    return driver


def driver_pid(driver: Any) -> int:
    """The PID of chromedriver (its process group's ID too)."""
    pid: int = driver.service.process.pid
    return pid


def watch_group(group: int) -> None:
    """Kill process group ``group`` once this process is gone, unless its leader ended first."""
    kill_group = ["kill", "-KILL", "--", f"-{group}"]
    subprocess.run(
        ["bash", str(WATCHER), str(os.getpid()), str(group), "--", *kill_group],
        check=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )
