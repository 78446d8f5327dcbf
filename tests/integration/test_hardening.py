"""Issue 11's security defects, one named regression test each, on a real central service
driven in this process (tests/service_harness.py: real SQLite store, real sandbox files, the
real guard and authorization; no socket). Each test fails on the code before its fix.

Defects 11 and 15 have theirs in test_security.py (over the wire) and test_protocol.py."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from service_harness import InProcessService

from dirac_like.config import Config, LimitsConfig, ServiceConfig

HELLO = 'Executable = "/bin/echo"; Arguments = "hello";'
SITE = "Site.A.org"


@pytest.fixture
def grid(tmp_path: Path) -> Iterator[InProcessService]:
    service = InProcessService(tmp_path / "home")
    try:
        yield service
    finally:
        service.close()


def admin_key(grid: InProcessService) -> str:
    issuer = grid.service.issuer
    assert issuer is not None
    [entry] = [e for e in issuer.registry.by_key.values() if e.principal.name == "admin"]
    return str(entry.public_key)


# -- defect 1: the reply cache ------------------------------------------------------------------


def test_a_request_id_is_no_key_to_another_identitys_reply(grid: InProcessService) -> None:
    """An admin's new identity (secret key inside), a director's pilot token, a user's job
    ids: another identity sending the same request id gets none of them."""
    admin = admin_key(grid)
    alice = grid.identity("alice", "user", ("physics",))
    bob = grid.identity("bob", "user", ("physics",))
    director = grid.identity("director", "director", site=SITE)
    issued = grid.ok(admin, "identity_add", {"name": "carol", "role": "user"}, "id-1")
    token = grid.ok(director, "pilot_token", {"site": SITE}, "id-2")
    alices_jobs = grid.ok(alice, "submit", {"descriptions": [HELLO], "owner": ""}, "id-3")

    assert (
        grid.error(alice, "identity_add", {"name": "carol", "role": "user"}, "id-1")[0]
        == "forbidden"
    )
    assert grid.error(alice, "pilot_token", {"site": SITE}, "id-2")[0] == "forbidden"
    bobs_jobs = grid.ok(bob, "submit", {"descriptions": [HELLO], "owner": ""}, "id-3")
    assert bobs_jobs != alices_jobs  # a new submission of bob's own, not alice's reply
    assert (
        grid.ok(alice, "submit", {"descriptions": [HELLO], "owner": ""}, "id-3") == alices_jobs
    )  # her own retry still gets her first reply
    assert issued["secret_key"] and token["secret_key"]


def test_a_reply_with_a_secret_is_forgotten_soon_and_never_stored(tmp_path: Path) -> None:
    config = Config(service=ServiceConfig(secret_reply_memory=30.0))
    grid = InProcessService(tmp_path / "home", config)
    try:
        admin = admin_key(grid)
        first = grid.ok(admin, "identity_add", {"name": "carol", "role": "user"}, "add-carol")
        grid.now += 10
        again = grid.ok(admin, "identity_add", {"name": "carol", "role": "user"}, "add-carol")
        assert again == first  # a retry soon after gets the same reply
        assert first["secret_key"].encode() not in grid.stored()
        grid.now += 31
        grid.service.state.expire(grid.now)
        code, message = grid.error(
            admin, "identity_add", {"name": "carol", "role": "user"}, "add-carol"
        )
        assert code == "invalid_argument" and "carol" in message  # no secret handed out again
    finally:
        grid.close()


def test_a_refused_request_leaves_the_store_unchanged(grid: InProcessService) -> None:
    alice = grid.identity("alice", "user", ("physics",))
    before = grid.stored()
    assert grid.error(alice, "ban_site", {"site": SITE, "reason": "x"})[0] == "forbidden"
    assert grid.error(alice, "submit", {"descriptions": ["Executable = ;"], "owner": ""})
    assert grid.stored() == before


def submit_args(*descriptions: Any) -> dict[str, Any]:
    return {"descriptions": list(descriptions), "owner": ""}


# -- defect 6: final states are final ---------------------------------------------------------

PILOT_ID = f"{SITE}.ce.1"
RESOURCES = {"site": SITE, "ce": "ce", "cores": 1}


def upload(grid: InProcessService, key: str, data: bytes, kind: str) -> str:
    sha256 = hashlib.sha256(data).hexdigest()
    result = grid.ok(
        key,
        "sandbox_upload",
        {"sha256": sha256, "size": len(data), "offset": 0, "data": data, "kind": kind},
    )
    assert result["complete"]
    return sha256


def matched_job(
    grid: InProcessService, pilot: str, owner: str, pilot_id: str = PILOT_ID
) -> dict[str, Any]:
    grid.ok(owner, "submit", submit_args(HELLO + f' Site = "{SITE}";'))
    job = grid.ok(pilot, "request_job", {"pilot_id": pilot_id, "resources": RESOURCES})["job"]
    assert job is not None
    return dict(job)


def report(
    grid: InProcessService,
    pilot: str,
    job: dict[str, Any],
    status: str,
    output: str = "",
    pilot_id: str = PILOT_ID,
) -> Any:
    return grid.call(
        pilot,
        "update_status",
        {
            "job_id": job["job_id"],
            "attempt": job["attempt"],
            "pilot_id": pilot_id,
            "status": status,
            "output_sandbox": output,
        },
    )


def test_a_final_job_cannot_be_rewritten(grid: InProcessService) -> None:
    """A pilot re-reporting Done with another output sandbox was accepted: now the same report
    again is a no-op, any other report is refused, and neither changes the store."""
    alice = grid.identity("alice", "user", ("physics",))
    pilot = grid.identity(f"pilot:{PILOT_ID}", "pilot", site=SITE, pilot_id=PILOT_ID)
    job = matched_job(grid, pilot, alice)
    first = upload(grid, pilot, b"first output", "output")
    second = upload(grid, pilot, b"another output", "output")
    assert report(grid, pilot, job, "Running").ok
    assert report(grid, pilot, job, "Done", first).ok
    history = grid.ok(alice, "history", {"job_id": job["job_id"]})
    again = report(grid, pilot, job, "Done", first)
    assert again.ok and again.result == {"commands": []}
    assert grid.ok(alice, "history", {"job_id": job["job_id"]}) == history  # a no-op
    before = grid.stored()
    for status, output in (("Done", second), ("Done", ""), ("Failed", first), ("Killed", "")):
        refused = report(grid, pilot, job, status, output)
        assert not refused.ok and refused.error is not None
        assert refused.error.code == "illegal_transition"
    assert grid.stored() == before
    assert grid.ok(alice, "job_output", {"job_id": job["job_id"]})["sha256"] == first


# -- defect 7: a pilot credential acts as one pilot only ------------------------------------


def test_a_site_wide_pilot_credential_cannot_act_as_another_pilot(tmp_path: Path) -> None:
    """Two credentials for any pilot of one site (the simulated fabric's kind): the first
    request binds a pilot record to the credential that made it; the other credential can then
    neither ask for jobs nor report nor heartbeat as that pilot, also after a restart."""
    home = tmp_path / "home"
    grid = InProcessService(home)
    try:
        alice = grid.identity("alice", "user", ("physics",))
        mine = grid.identity("fabric-1", "pilot", site=SITE)
        other = grid.identity("fabric-2", "pilot", site=SITE)
        job = matched_job(grid, mine, alice)
        assert report(grid, mine, job, "Running").ok
        keys = (alice, mine, other)
    finally:
        grid.close()
    grid = InProcessService(home, now=grid.now + 1)  # the binding is in the store
    try:
        alice, mine, other = keys
        before = grid.stored()
        refusals = [
            grid.call(other, "request_job", {"pilot_id": PILOT_ID, "resources": RESOURCES}),
            report(grid, other, job, "Done"),
            grid.call(
                other,
                "heartbeat",
                {"job_id": job["job_id"], "attempt": job["attempt"], "pilot_id": PILOT_ID},
            ),
            grid.call(other, "pilot_stopped", {"pilot_id": PILOT_ID}),
        ]
        for refused in refusals:
            assert refused.error is not None and refused.error.code == "forbidden", refused
            assert "another credential acts as that pilot" in refused.error.message
        assert grid.stored() == before
        assert report(grid, mine, job, "Done").ok  # its own credential still does
        other_pilot = matched_job(grid, other, alice, pilot_id=f"{SITE}.ce.2")
        assert other_pilot["job_id"] != job["job_id"]  # a pilot id of its own is fine
    finally:
        grid.close()


# -- defect 14: per-identity limits -----------------------------------------------------------


def test_one_small_request_cannot_make_unbounded_work(tmp_path: Path) -> None:
    """A 231-byte request made 500,000 jobs; an 8 KB JDL 100,000 jobs of 8 KB each. Now jobs
    per request, waiting jobs per user and bytes per description are limited (config), the
    refusal says which limit, and nothing of a refused request is stored."""
    limits = LimitsConfig(
        max_jobs_per_request=50, max_waiting_jobs_per_user=80, max_description_bytes=2048
    )
    grid = InProcessService(tmp_path / "home", Config(limits=limits))
    try:
        alice = grid.identity("alice", "user", ("physics",))
        bob = grid.identity("bob", "user", ("physics",))
        before = grid.stored()
        code, message = grid.error(
            alice, "submit", submit_args('Executable = "/bin/true"; Parameters = 500000;')
        )
        assert "limits.max_jobs_per_request" in message and "500000" in message
        code, message = grid.error(alice, "submit", submit_args(*[HELLO] * 51))
        assert code == "limit_exceeded" and "limits.max_jobs_per_request" in message
        big = 'Executable = "/bin/true"; Arguments = "%s ' + "x" * 2100 + '"; Parameters = 3;'
        code, message = grid.error(alice, "submit", submit_args(big))
        assert code == "limit_exceeded" and "limits.max_description_bytes" in message
        assert grid.stored() == before

        assert (
            len(
                grid.ok(alice, "submit", submit_args('Executable = "/bin/true"; Parameters = 50;'))[
                    "job_ids"
                ]
            )
            == 50
        )
        assert len(grid.ok(alice, "submit", submit_args(*[HELLO] * 30))["job_ids"]) == 30
        before = grid.stored()
        code, message = grid.error(alice, "submit", submit_args(HELLO))
        assert code == "limit_exceeded" and "limits.max_waiting_jobs_per_user" in message
        assert "alice has 80 waiting jobs" in message
        assert grid.stored() == before
        assert grid.ok(bob, "submit", submit_args(HELLO))  # per user: bob is not held back
        grid.state.validate()
    finally:
        grid.close()


# -- defect 12: sandboxes are bound to their holders ------------------------------------------


def test_a_sandbox_hash_is_no_capability(grid: InProcessService) -> None:
    """Knowing a sandbox's sha256 let anyone download it or name it in a job. Now: its
    uploaders, the owner of the job whose output it is, and the pilots running the owner's
    jobs; the same content from two users is stored once."""
    alice = grid.identity("alice", "user", ("physics",))
    bob = grid.identity("bob", "user", ("physics",))
    pilot = grid.identity(f"pilot:{PILOT_ID}", "pilot", site=SITE, pilot_id=PILOT_ID)
    other_id = f"{SITE}.ce.2"
    other_pilot = grid.identity(f"pilot:{other_id}", "pilot", site=SITE, pilot_id=other_id)
    data = b"alice's input archive"
    sha256 = upload(grid, alice, data, "input")
    missing = hashlib.sha256(b"never uploaded").hexdigest()

    def download(key: str, name: str) -> Any:
        return grid.call(key, "sandbox_download", {"sha256": name})

    def refusal(reply: Any, name: str) -> tuple[str, str]:
        assert not reply.ok
        return reply.error.code, reply.error.message.replace(name, "X")

    assert download(alice, sha256).ok
    assert refusal(download(bob, sha256), sha256) == refusal(download(bob, missing), missing)
    assert refusal(download(bob, sha256), sha256)[0] == "sandbox_not_found"
    named = HELLO + f' InputSandbox = {{"SB:{sha256}"}}; Site = "{SITE}";'
    before = grid.stored()
    code, message = grid.error(bob, "submit", submit_args(named))
    code_missing, message_missing = grid.error(
        bob, "submit", submit_args(named.replace(sha256, missing))
    )
    assert (code, message.replace(sha256, "X")) == (
        code_missing,
        message_missing.replace(missing, "X"),
    )
    assert "was not uploaded" in message and grid.stored() == before

    # bob uploads the same bytes: stored once, and he holds it too
    assert upload(grid, bob, data, "input") == sha256
    blobs = [p for p in (grid.home / "sandboxes").rglob(sha256) if p.is_file()]
    assert len(blobs) == 1
    assert download(bob, sha256).ok

    # the pilot running alice's job reads its input; another pilot does not
    grid.ok(alice, "submit", submit_args(named))
    job = grid.ok(pilot, "request_job", {"pilot_id": PILOT_ID, "resources": RESOURCES})["job"]
    assert job is not None and job["owner"] == "alice"
    assert download(pilot, sha256).ok
    assert refusal(download(other_pilot, sha256), sha256)[0] == "sandbox_not_found"

    # its output: uploaded by the pilot, named only by it, then alice's (not bob's)
    output = upload(grid, pilot, b"alice's output", "output")
    assert upload(grid, other_pilot, b"other output", "output")
    assert not report(grid, other_pilot, job, "Done", output).ok
    assert report(grid, pilot, job, "Running").ok
    assert report(grid, pilot, job, "Done", output).ok
    assert download(alice, output).ok
    assert refusal(download(bob, output), output)[0] == "sandbox_not_found"


# -- found by the fuzzing test ------------------------------------------------------------------


def test_a_job_named_twice_in_one_request_is_acted_on_once(grid: InProcessService) -> None:
    """``delete [2, 2]`` deleted job 2, then failed on the second 2 (Deleted -> Deleted) and
    was answered as refused with the deletion committed: a refusal that changed the store."""
    alice = grid.identity("alice", "user", ("physics",))
    first, second = grid.ok(alice, "submit", submit_args(HELLO, HELLO))["job_ids"]
    assert grid.ok(alice, "kill", {"job_ids": [first, first]})["killed"] == [first]
    assert grid.ok(alice, "delete", {"job_ids": [second, first, second]})["deleted"] == [
        second,
        first,
    ]
    assert [row["job_id"] for row in grid.ok(alice, "status", {"job_ids": [first, first]})] == [
        first
    ]
    grid.state.validate()
