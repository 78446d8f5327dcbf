"""Debian's headless Chromium for the dashboard's browser tests, driven through its chromedriver
(selenium), which is given both paths so nothing is downloaded at run time.

``start_browser`` starts chromedriver in a session of its own (Chromium and its helpers start in
that session's process group): should this process die before ``driver.quit()`` (a test session
killed by SIGKILL or by CI's timeout), a watcher kills that process group, whose ID is
chromedriver's PID (tests/session_watch.py). ``chromium_or_skip`` skips the tests without
Chromium, saying how to install it (``bash scripts/chromium.sh install``); under ``CI=true`` they
fail instead.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest
from session_watch import stop_with_session

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
    stop_with_session(driver_pid(driver), group=True, stop=signal.SIGKILL)
    return driver


def driver_pid(driver: Any) -> int:
    """The PID of chromedriver (its process group's ID too)."""
    pid: int = driver.service.process.pid
    return pid
