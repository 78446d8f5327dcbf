"""The dashboard in a real browser: Debian's headless Chromium, driven through its chromedriver
(selenium), loads each page against a running grid — a central service, a site director with
real local pilots that ran jobs, and ``dirac-like service web`` — and the tests read the DOM
after the page's scripts ran (live updates included) and save a screenshot of each page.

Screenshots go to a temporary folder, or to ``$DIRAC_LIKE_SCREENSHOTS`` when set (that is how
docs/images/dashboard-overview.png is made). Without Chromium the tests skip, saying how to
install it (``bash scripts/chromium.sh install``); under ``CI=true`` they fail instead. The
browser is started by tests/chromium_browser.py.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from chromium_browser import chromium_or_skip, start_browser
from web_grid import WebGrid, start_web_grid

from dirac_like.cli.demo import DIRECTOR_SETTINGS, kill_strays, start_director
from dirac_like.cli.demo_plan import CEPlan, SitePlan, site_toml
from dirac_like.protocol import (
    FileItem,
    Op,
    ProbeResultItem,
    RegisterArgs,
    TransferRequestArgs,
    TransferSubmitArgs,
    TransferUpdateArgs,
)
from dirac_like.testing import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]  # real pilots run jobs first

SITE = "DIRAC.Browser.org"
NOWHERE = "LCG.Nowhere.org"  # no pilot comes from there: jobs for it wait


@dataclass
class BrowserGrid:
    grid: WebGrid
    done: list[int]  # alice's jobs that ran on a pilot to Done (the last one for 2 seconds)
    failed: int  # alice's job whose payload exits 1
    waiting: list[int]  # alice's jobs that stay Waiting (their site has no pilot)


# two file SEs, so that the transfers page has requests (driven by the test as an agent would)
DATA_CONFIG = """
[data]
vos = ["vo"]
[data.transfers]
retry_backoff = 0.0
max_attempts = 1
[storage.DISK-A]
site = "DIRAC.Browser.org"
protocol = "file"
base_path = "{folder}/a"
[storage.DISK-B]
site = "DIRAC.Browser.org"
protocol = "file"
base_path = "{folder}/b"
"""


@pytest.fixture(scope="module")
def browser_grid(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrowserGrid]:
    chromium_or_skip()
    folder = tmp_path_factory.mktemp("browser")
    config = DATA_CONFIG.format(folder=folder)
    for grid in start_web_grid(folder / "home", more_config=config):
        director = start_site(grid)
        try:
            yield run_jobs(grid)
        finally:
            stop(director)
            kill_strays(grid.home)


def start_site(grid: WebGrid) -> subprocess.Popen[bytes]:
    (grid.home / "sites").mkdir()
    plan = SitePlan(SITE, (CEPlan("ce1", cores=1, memory_mb=2000, max_total=2),))
    (grid.home / "sites" / f"{SITE}.toml").write_text(site_toml(plan))
    (grid.home / "director.toml").write_text(DIRECTOR_SETTINGS)
    identity = grid.add_person("director", "director", [], site=SITE)
    return start_director(grid.home, SITE, grid.central.endpoint, identity).popen


def stop(director: subprocess.Popen[bytes]) -> None:
    if director.poll() is None:
        director.send_signal(signal.SIGTERM)
        try:
            director.wait(20)
        except subprocess.TimeoutExpired:
            director.kill()
            director.wait(10)


def run_jobs(grid: WebGrid) -> BrowserGrid:
    quick = {"Executable": "/bin/echo", "Arguments": "hello", "CPUTime": 600}
    with grid.client("alice") as alice:
        sleeper = {"Executable": "/bin/sleep", "Arguments": "2", "JobName": "sleeper"}
        done = alice.submit(
            [*({**quick, "JobName": f"echo-{n}"} for n in range(3)), {**sleeper, "CPUTime": 600}],
            "alice",
            "physics",
        )
        [failed] = alice.submit(
            [{"Executable": "/bin/false", "JobName": "broken", "CPUTime": 600}], "alice", "users"
        )
        waiting = alice.submit(
            [{**quick, "JobName": f"stuck-{n}", "Site": NOWHERE} for n in range(2)],
            "alice",
            "users",
        )
        wait_for(
            lambda: all(row.status in ("Done", "Failed") for row in alice.status([*done, failed])),
            "the jobs to run on the site's pilots",
            timeout=100,
        )
    return BrowserGrid(grid, done, failed, waiting)


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    wanted = os.environ.get("DIRAC_LIKE_SCREENSHOTS")
    folder = Path(wanted) if wanted else tmp_path_factory.mktemp("screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def browser(browser_grid: BrowserGrid, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    scratch = tmp_path_factory.mktemp("chromium")
    driver = start_browser(scratch)
    try:
        driver.set_page_load_timeout(60)
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(scratch, ignore_errors=True)


def open_as(browser: Any, grid: WebGrid, name: str, path: str) -> None:
    """Log in as ``name`` with a fresh login link, landing on ``path``."""
    browser.delete_all_cookies()
    browser.get(grid.login_url(name, path))


def text_of(browser: Any, selector: str) -> str:
    """The rendered text of the first element matching ``selector``, read in one script call
    (live parts of a page are replaced every second: a found element can go stale)."""
    text = browser.execute_script(
        "const found = document.querySelector(arguments[0]);"
        "return found === null ? null : found.innerText;",
        selector,
    )
    assert text is not None, f"nothing matches {selector}"
    return str(text)


def live_updates(browser: Any, element_id: str) -> int:
    value = browser.execute_script(
        "return document.getElementById(arguments[0]).dataset.updates || '0';", element_id
    )
    return int(value)


def test_a_stranger_is_asked_to_log_in(
    browser_grid: BrowserGrid, browser: Any, screenshots: Path
) -> None:
    browser.delete_all_cookies()
    browser.get(browser_grid.grid.url)
    assert browser.current_url.split("?")[0].endswith("/login")
    assert "web-login" in text_of(browser, "main")
    assert "echo-" not in browser.page_source
    browser.save_screenshot(str(screenshots / "login.png"))


def test_overview_shows_the_grid_as_plots_and_updates_itself(
    browser_grid: BrowserGrid, browser: Any, screenshots: Path
) -> None:
    grid = browser_grid.grid
    open_as(browser, grid, "admin", "/")
    wait_for(lambda: live_updates(browser, "overview") >= 1, "the live overview to refresh")
    assert text_of(browser, "#who") == "admin (admin)"
    assert text_of(browser, '[data-status="Done"]') == "4"
    assert text_of(browser, '[data-status="Failed"]') == "1"
    assert text_of(browser, '[data-status="Waiting"]') == "2"
    status_plot = text_of(browser, "#plot-status")
    assert "Jobs by status" in status_plot and "Done" in status_plot
    assert SITE in text_of(browser, "#plot-sites")
    shares = text_of(browser, "#shares")
    assert "physics" in shares and "75%" in shares  # its target: 3 of 4 shares
    assert "physics realised" in text_of(browser, "#plot-shares")
    with grid.client("alice") as alice:  # a change elsewhere shows up without a reload
        alice.kill([browser_grid.waiting[1]])
    wait_for(
        lambda: text_of(browser, '[data-status="Waiting"]') == "1", "the overview to show the kill"
    )
    browser.save_screenshot(str(screenshots / "overview.png"))


def test_job_search_narrows_to_a_status(
    browser_grid: BrowserGrid, browser: Any, screenshots: Path
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    open_as(browser, browser_grid.grid, "alice", "/jobs")
    Select(browser.find_element(By.NAME, "status")).select_by_value("Done")
    browser.find_element(By.CSS_SELECTOR, "#search button").click()
    wait_for(lambda: "status=Done" in browser.current_url, "the search to run")
    rows = browser.find_elements(By.CSS_SELECTOR, "#jobs tbody tr[data-job]")
    assert sorted(int(row.get_attribute("data-job")) for row in rows) == browser_grid.done
    assert all(row.find_elements(By.TAG_NAME, "td")[1].text == "Done" for row in rows)
    assert not browser.find_elements(By.NAME, "owner")  # a user searches their own jobs only
    browser.save_screenshot(str(screenshots / "jobs.png"))


def test_a_job_page_shows_history_jdl_and_output(
    browser_grid: BrowserGrid, browser: Any, screenshots: Path
) -> None:
    job_id = browser_grid.done[0]
    open_as(browser, browser_grid.grid, "alice", f"/jobs/{job_id}")
    history = text_of(browser, "#history")
    for status in ("Received", "Waiting", "Matched", "Running", "Done"):
        assert status in history
    assert f"pilot {SITE}" in history
    assert 'Executable = "/bin/echo";' in text_of(browser, "#jdl")
    assert text_of(browser, "#output").startswith("Output sandbox")
    # the job that ran for 2 s: its heartbeats' samples, kept, as a plot
    open_as(browser, browser_grid.grid, "alice", f"/jobs/{browser_grid.done[-1]}")
    usage = text_of(browser, "#plot-usage")
    assert "Resource usage of attempt 1" in usage and "resident memory (MB)" in usage
    assert "no sample" not in usage
    browser.save_screenshot(str(screenshots / "job.png"))


def test_a_user_kills_a_waiting_job_from_its_page(browser_grid: BrowserGrid, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    job_id = browser_grid.waiting[0]
    open_as(browser, browser_grid.grid, "alice", f"/jobs/{job_id}")
    assert text_of(browser, "#status") == "Waiting"
    why = text_of(browser, "#why")  # asked of the central service, by the matcher's rules
    assert NOWHERE in why and "did not answer" not in why
    browser.execute_script("document.getElementById('kill').click();")  # live part: no stale
    # the new page (after the form's redirect) says what happened; the old one's live part may
    # show Killed before the browser got there
    flash = wait_for(
        lambda: browser.execute_script(
            "const found = document.querySelector('.flash'); return found && found.innerText;"
        ),
        "the page after the kill",
    )
    assert f"killed job(s) {job_id}" in flash
    assert text_of(browser, "#status") == "Killed"
    assert not browser.find_elements(By.ID, "kill")


def test_sites_page_lists_the_site_with_its_pilots_and_availability_and_transfers(
    browser_grid: BrowserGrid, browser: Any, screenshots: Path
) -> None:
    now = time.time()
    with browser_grid.grid.client("admin") as admin:  # what a monitoring agent reports
        admin.probe_report(
            [
                ProbeResultItem(SITE, "site", "started", "OK", "", now - 1, "ce1", 0),
                ProbeResultItem(NOWHERE, "site", "started", "CRITICAL", "not started", now, "", 0),
            ]
        )
    open_as(browser, browser_grid.grid, "ops", "/sites")
    wait_for(lambda: live_updates(browser, "sites-live") >= 1, "the live sites table")
    row = text_of(browser, f'#sites tr[data-site="{SITE}"]')
    assert "Active" in row and "ce1" in row
    assert "Pilots by site and state" in text_of(browser, "#plot-site-pilots")
    for grid in ("#availability-1", "#availability-2"):  # by hour, by day: now is the last cell
        good = cells(browser, f'{grid} tr[data-target="{SITE}"] td.cell')
        bad = cells(browser, f'{grid} tr[data-target="{NOWHERE}"] td.cell')
        assert good[-1] == ("100%", "cell a100") and bad[-1] == ("0%", "cell a0")
        assert good[0] == ("--", "cell unknown")
    browser.save_screenshot(str(screenshots / "sites.png"))
    run_transfers(browser_grid.grid)
    browser.get(browser_grid.grid.url.rstrip("/") + "/transfers")
    wait_for(lambda: live_updates(browser, "transfers-live") >= 1, "the live transfers page")
    link = cells(browser, '#transfer-links tr[data-link="DISK-A -> DISK-B"] td[data-state]')
    assert [text for text, _ in link] == ["0", "0", "0", "1", "1"]  # Waiting ... Done, Failed
    assert "target SE full (test)" in text_of(browser, "#transfer-failures")
    throughput = text_of(browser, "#plot-throughput")
    assert "Throughput by link" in throughput and "DISK-A -> DISK-B" in throughput
    browser.save_screenshot(str(screenshots / "transfers.png"))


def run_transfers(grid: WebGrid) -> None:
    """Two files on DISK-A, each asked for on DISK-B: one copied (Done), one refused (Failed),
    reported as a transfer agent reports them."""
    with grid.client("admin") as admin:
        files = [FileItem(f"/vo/user/alice/t{n}", 4096, "00000001", "DISK-A") for n in range(2)]
        admin.call(Op.CATALOG_REGISTER, RegisterArgs(files, owner="alice"))
        lfns = [item.lfn for item in files]
        admin.call(Op.TRANSFER_SUBMIT, TransferSubmitArgs(lfns, "DISK-B", owner="alice"))
        tasks = admin.call(Op.TRANSFER_REQUEST, TransferRequestArgs("web-agent", 2))
        assert len(tasks) == 2
        for task, status in zip(tasks, ("Done", "Failed"), strict=True):
            update = TransferUpdateArgs(
                task.transfer_id,
                task.attempt,
                "web-agent",
                status,
                task.source,
                "" if status == "Done" else "target SE full (test)",
                4096 if status == "Done" else -1,
                "00000001" if status == "Done" else "",
            )
            admin.call(Op.TRANSFER_UPDATE, update)


def cells(browser: Any, selector: str) -> list[tuple[str, str]]:
    """(text, class) of every element matching ``selector``, read in one script call."""
    found = browser.execute_script(
        "return Array.from(document.querySelectorAll(arguments[0]), "
        "cell => [cell.innerText, cell.className]);",
        selector,
    )
    assert found, f"nothing matches {selector}"
    return [tuple(pair) for pair in found]


def test_accounting_plots_the_finished_jobs_each_sees_their_own(
    browser_grid: BrowserGrid, browser: Any, screenshots: Path
) -> None:
    open_as(browser, browser_grid.grid, "alice", "/accounting")
    mine = text_of(browser, "main")
    assert "Your finished jobs" in mine and "alice" in mine
    assert "Finished jobs by site" not in mine
    open_as(browser, browser_grid.grid, "admin", "/accounting")
    every = text_of(browser, "main")
    assert "Finished jobs by site" in every and SITE in every
    assert "Core-hours by group" in every and "physics" in every
    browser.save_screenshot(str(screenshots / "accounting.png"))
