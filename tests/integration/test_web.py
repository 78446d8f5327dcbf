"""The web dashboard over HTTP, against a real central service and ``dirac-like service web``:
who sees what (nothing to a stranger, no other user's job to a user, everything to an admin),
kill through the service's own checks, one-time login links, revoked identities logged out, and
fuzzed query parameters (no server error, everything escaped)."""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from web_grid import WebGrid, WebSession

NASTY_NAME = '<img src=x onerror="alert(1)">'
PAGES = (
    "/",
    "/jobs",
    "/sites",
    "/accounting",
    "/transfers",
    "/fragment/overview",
    "/fragment/sites",
    "/fragment/transfers",
)


@pytest.fixture(scope="module")
def jobs(web_grid: WebGrid) -> Iterator[dict[str, list[int]]]:
    """Waiting jobs of alice (one with a hostile name) and of bob."""
    with web_grid.client("alice") as alice, web_grid.client("bob") as bob:
        yield {
            "alice": alice.submit(
                [
                    {"Executable": "/bin/true", "JobName": "alice-mc"},
                    {"Executable": "/bin/true", "JobName": NASTY_NAME},
                    {"Executable": "/bin/true", "JobName": "alice-victim"},
                ],
                "alice",
                "physics",
            ),
            "bob": bob.submit(
                [{"Executable": "/bin/true", "JobName": "bob-secret"}] * 2, "bob", "users"
            ),
        }


def job_ids_listed(text: str) -> set[int]:
    return {int(job_id) for job_id in re.findall(r'data-job="(\d+)"', text)}


def csrf_of(text: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', text)
    assert match, "no form token on the page"
    return match.group(1)


def status_of(web_grid: WebGrid, job_id: int) -> str:
    with web_grid.client("admin") as admin:
        return admin.status([job_id])[0].status


def test_a_stranger_gets_nothing(web_grid: WebGrid, jobs: dict[str, list[int]]) -> None:
    stranger = WebSession(web_grid.url)
    job_id = jobs["bob"][0]
    for path in (*PAGES, f"/jobs/{job_id}", f"/jobs/{job_id}/output"):
        page = stranger.get(path)
        if path.startswith("/fragment/"):
            assert page.status == 401, path
        else:
            assert page.status == 302 and page.headers["Location"].startswith("/login"), path
        assert "bob-secret" not in page.text
    assert stranger.post(f"/jobs/{job_id}/kill", {"csrf": "x"}).status == 401
    forged = stranger.get("/login", {"token": "dlw1.e30.AAAA"})
    assert forged.status == 403 and "not valid" in forged.text
    assert stranger.get("/").status == 302  # still not logged in
    assert status_of(web_grid, job_id) == "Waiting"


def test_a_user_sees_none_of_another_users_jobs(
    web_grid: WebGrid, jobs: dict[str, list[int]]
) -> None:
    alice = web_grid.session("alice")
    listed = job_ids_listed(alice.get("/jobs").text)
    assert set(jobs["alice"]) <= listed and not listed & set(jobs["bob"])
    for params in ({"owner": "bob"}, {"group": "users", "owner": "bob"}):
        assert alice.get("/jobs", params).status == 403
    assert not job_ids_listed(alice.get("/jobs", {"name": "bob"}).text)
    overview = alice.get("/fragment/overview").text
    assert re.search(r'id="total-jobs">(\d+)<', overview).group(1) == str(len(jobs["alice"]))
    bobs = jobs["bob"][0]
    for path in (f"/jobs/{bobs}", f"/fragment/jobs/{bobs}", f"/jobs/{bobs}/output"):
        page = alice.get(path)
        assert page.status == 404 and "bob" not in page.text.split("<main>")[-1], path
    assert alice.get("/sites").status == 403  # sites are for operators, as in the CLI
    csrf = csrf_of(alice.get("/jobs").text)
    assert alice.post(f"/jobs/{bobs}/kill", {"csrf": csrf}).status == 404
    assert status_of(web_grid, bobs) == "Waiting"


def test_an_admin_and_an_operator_see_every_job(
    web_grid: WebGrid, jobs: dict[str, list[int]]
) -> None:
    every = {*jobs["alice"], *jobs["bob"]}
    for name in ("admin", "ops"):
        session = web_grid.session(name)
        assert every <= job_ids_listed(session.get("/jobs").text)
        assert job_ids_listed(session.get("/jobs", {"owner": "bob"}).text) == set(jobs["bob"])
        page = session.get(f"/jobs/{jobs['bob'][0]}")
        assert page.status == 200 and "bob-secret" in page.text
        assert session.get("/sites").status == 200


def test_accounting_transfers_availability_and_why_show_each_what_they_may(
    web_grid: WebGrid, jobs: dict[str, list[int]]
) -> None:
    with web_grid.client("bob") as bob:  # a finished job of bob's: an accounting record
        bob.kill(bob.submit([{"Executable": "/bin/true"}], "bob", "users"))
    alice, ops = web_grid.session("alice"), web_grid.session("ops")
    mine = alice.get("/accounting")
    assert mine.status == 200 and "Your finished jobs" in mine.text
    assert "bob" not in mine.text.split("<main>")[-1]  # not even in a plot's legend
    every = ops.get("/accounting").text
    assert "Finished jobs by site" in every and "Bytes transferred by link" in every
    assert alice.get("/transfers").status == 403  # transfers name every user's files
    transfers = ops.get("/transfers").text
    assert 'id="transfer-links"' in transfers and "no transfer requested yet" in transfers
    sites = ops.get("/fragment/sites").text
    assert 'id="availability-1"' in sites and 'id="availability-2"' in sites
    waiting = alice.get(f"/jobs/{jobs['alice'][0]}").text
    assert 'id="why"' in waiting and 'id="plot-usage"' in waiting
    assert "no sample from the watchdog yet" in waiting


def test_job_names_are_escaped(web_grid: WebGrid, jobs: dict[str, list[int]]) -> None:
    alice = web_grid.session("alice")
    for path in ("/jobs", f"/jobs/{jobs['alice'][1]}"):
        text = alice.get(path).text
        assert NASTY_NAME not in text and "&lt;img src=x onerror=" in text


def test_a_user_kills_their_job_through_the_service(
    web_grid: WebGrid, jobs: dict[str, list[int]]
) -> None:
    alice = web_grid.session("alice")
    victim = jobs["alice"][2]
    page = alice.get(f"/jobs/{victim}")
    assert 'id="kill"' in page.text
    done = alice.post(f"/jobs/{victim}/kill", {"csrf": csrf_of(page.text)})
    assert done.status == 302 and done.headers["Location"].endswith(f"/jobs/{victim}")
    assert status_of(web_grid, victim) == "Killed"
    after = alice.get(f"/jobs/{victim}").text
    assert "killed job(s)" in after and 'id="kill"' not in after


def test_an_operator_sees_a_job_but_may_not_kill_it(
    web_grid: WebGrid, jobs: dict[str, list[int]]
) -> None:
    ops = web_grid.session("ops")
    job_id = jobs["bob"][1]
    page = ops.get(f"/jobs/{job_id}")
    assert page.status == 200 and 'id="kill"' not in page.text
    refused = ops.post(f"/jobs/{job_id}/kill", {"csrf": csrf_of(page.text)})
    assert refused.status == 403 and "may not kill" in refused.text
    assert status_of(web_grid, job_id) == "Waiting"


def test_a_kill_without_the_forms_token_changes_nothing(
    web_grid: WebGrid, jobs: dict[str, list[int]]
) -> None:
    alice = web_grid.session("alice")
    job_id = jobs["alice"][0]
    assert alice.post(f"/jobs/{job_id}/kill", {"csrf": "guessed"}).status == 403
    assert alice.post(f"/jobs/{job_id}/kill", {}).status == 403
    assert status_of(web_grid, job_id) == "Waiting"


def test_a_login_link_logs_in_once(web_grid: WebGrid) -> None:
    token = web_grid.token("bob")
    first, second = WebSession(web_grid.url), WebSession(web_grid.url)
    assert first.get("/login", {"token": token, "next": "/jobs"}).headers["Location"] == "/jobs"
    assert second.get("/login", {"token": token}).status == 403
    assert first.get("/jobs").status == 200


def test_a_login_does_not_redirect_elsewhere(web_grid: WebGrid) -> None:
    for target in ("https://example.org/", "//example.org/x", "/\\example.org"):
        page = WebSession(web_grid.url).get(
            "/login", {"token": web_grid.token("bob"), "next": target}
        )
        assert page.headers["Location"] == "/", target


def test_a_revoked_identity_is_logged_out_at_its_next_click(web_grid: WebGrid) -> None:
    web_grid.add_person("carol", "user", ["users"])
    carol = web_grid.session("carol")
    assert carol.get("/jobs").status == 200
    with web_grid.client("admin") as admin:
        admin.identity_revoke("carol")
    assert carol.get("/jobs").status == 302
    assert carol.get("/fragment/overview").status == 401


FUZZ_MARK = "<x-fuzz>"
fuzz_values = st.one_of(
    st.text(max_size=40),
    st.text(max_size=20).map(lambda t: FUZZ_MARK + t),
    st.sampled_from(
        [
            "' OR 1=1 --",
            "%",
            "_",
            "\\",
            "Done",
            "1",
            "0",
            "-5",
            "99999999999999999999",
            "\x00",
            "%(x)s",
        ]
    ),
)


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    path=st.sampled_from(
        [
            "/jobs",
            "/",
            "/sites",
            "/fragment/overview",
            "/jobs/1",
            "/accounting",
            "/transfers",
            "/login",
        ]
    ),
    params=st.dictionaries(
        st.sampled_from(
            ["owner", "status", "site", "group", "name", "limit", "before", "next", "token", "x"]
        ),
        fuzz_values,
        max_size=4,
    ),
)
def test_fuzzed_query_parameters_never_break_a_page(
    web_grid: WebGrid, admin_session: WebSession, path: str, params: dict[str, str]
) -> None:
    page = admin_session.get(path, params)
    assert page.status in (200, 302, 400, 403, 404), (path, params, page.text[-300:])
    assert FUZZ_MARK not in page.text
    if page.status == 302:
        assert urllib.parse.urlsplit(page.headers["Location"]).netloc in ("", "127.0.0.1")


@pytest.fixture(scope="module")
def admin_session(web_grid: WebGrid) -> WebSession:
    return web_grid.session("admin")
