"""The audit log: which requests get a line, what a line holds, and what it never holds."""

from __future__ import annotations

import datetime
import json
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dirac_like.authz import Principal, Role
from dirac_like.errors import Forbidden, InvalidArgument, RateLimited
from dirac_like.protocol import (
    BanSiteArgs,
    JobIdsArgs,
    ListJobsArgs,
    ProbeReportArgs,
    SandboxUploadArgs,
    SetStatusArgs,
    SubmitArgs,
)
from dirac_like.services.audit import MAX_LINE_BYTES, RATE_LIMIT_QUIET, AuditLog, audit_line

NOW = 1_767_607_200.125
ADMIN = Principal("root", Role.ADMIN)
OPERATOR = Principal("ops", Role.OPERATOR)
BOB = Principal("bob", Role.USER, groups=("physics",))


@pytest.fixture
def audit(tmp_path: Path) -> Iterator[AuditLog]:
    with AuditLog.in_home(tmp_path / "home") as opened:
        yield opened


def lines(audit: AuditLog) -> list[dict[str, Any]]:
    return [json.loads(line) for line in audit.path.read_text().splitlines()]


def test_a_refusal_is_one_line_saying_who_what_and_why(audit: AuditLog) -> None:
    error = Forbidden("user bob may not kill job 12: it belongs to alice")
    assert audit.refused(BOB, "kill", JobIdsArgs([12]), error, NOW)
    assert audit.path == audit.path.parent.parent / "logs" / "audit.log"
    assert lines(audit) == [
        {
            "time": "2026-01-05T10:00:00.125Z",
            "epoch": NOW,
            "principal": "bob",
            "role": "user",
            "op": "kill",
            "args": {"job_ids": [12]},
            "outcome": "refused",
            "reason": "[forbidden] user bob may not kill job 12: it belongs to alice",
        }
    ]


def test_admin_and_operator_actions_are_logged_with_their_outcome(audit: AuditLog) -> None:
    assert audit.done(ADMIN, "ban_site", BanSiteArgs("LCG.RAL.uk", "storage down"), NOW)
    failed = InvalidArgument("a ban needs a reason")
    assert audit.done(OPERATOR, "ban_site", BanSiteArgs("LCG.RAL.uk", " "), NOW, failed)
    assert audit.done(ADMIN, "identity_revoke", {"name": "mallory"}, NOW)
    assert [(line["principal"], line["op"], line["outcome"]) for line in lines(audit)] == [
        ("root", "ban_site", "ok"),
        ("ops", "ban_site", "failed"),
        ("root", "identity_revoke", "ok"),
    ]
    assert lines(audit)[1]["reason"] == "[invalid_argument] a ban needs a reason"


def test_the_monitoring_agents_automatic_bans_and_unbans_are_logged(audit: AuditLog) -> None:
    monitor = Principal("sam", Role.MONITOR)
    args = SetStatusArgs("LCG.RAL.uk", "site", "Banned", "auto: probe started failed 3 times")
    assert audit.done(monitor, "set_status", args, NOW)
    assert not audit.done(monitor, "probe_report", ProbeReportArgs([]), NOW)
    (line,) = lines(audit)
    assert (line["principal"], line["op"], line["args"]["status"]) == (
        "sam",
        "set_status",
        "Banned",
    )


def test_reads_and_the_actions_of_other_roles_are_not_logged(audit: AuditLog) -> None:
    assert not audit.done(ADMIN, "list_jobs", ListJobsArgs(), NOW)
    assert not audit.done(OPERATOR, "identity_list", {}, NOW)
    assert not audit.done(BOB, "kill", JobIdsArgs([1]), NOW)
    assert audit.path.read_text() == ""


def test_the_summary_holds_no_secrets_and_no_bulk(audit: AuditLog) -> None:
    upload = SandboxUploadArgs("a" * 64, 10, 0, b"\x00secret bytes", "input")
    audit.refused(BOB, "sandbox_upload", upload, Forbidden("no"), NOW)
    issued = {
        "name": "carol",
        "public_key": "K" * 40,
        "secret_key": "S" * 40,
        "token": "T" * 40,
        "password": "hunter2",
    }
    audit.done(ADMIN, "identity_add", issued, NOW)
    submit = SubmitArgs(['Executable = "/bin/echo"; Arguments = "p4ssw0rd";'] * 3, "root")
    audit.done(ADMIN, "submit", submit, NOW)
    text = audit.path.read_text()
    for secret in ("secret bytes", "S" * 40, "T" * 40, "K" * 40, "hunter2", "p4ssw0rd"):
        assert secret not in text
    upload_line, identity_line, submit_line = lines(audit)
    assert upload_line["args"]["data"] == "<13 bytes>"
    assert identity_line["args"] == {
        "name": "carol",
        "public_key": "<redacted>",
        "secret_key": "<redacted>",
        "token": "<redacted>",
        "password": "<redacted>",
    }
    assert submit_line["args"] == {
        "descriptions": "<3 items>",
        "owner": "root",
        "group": "",
        "submitter": "",
    }


def test_long_strings_lists_and_nesting_are_cut_and_a_line_stays_bounded(audit: AuditLog) -> None:
    audit.refused(BOB, "status", JobIdsArgs(list(range(100_000))), Forbidden("no"), NOW)
    audit.refused(BOB, "ban_site", BanSiteArgs("S", "x" * 1_000_000), Forbidden("no"), NOW)
    deep: Any = "bottom"
    for _ in range(500):
        deep = {"k": [deep]}
    wide = {f"field{n}": "y" * 190 for n in range(10)}
    audit.done(ADMIN, "identity_add", {"deep": deep, "wide": wide}, NOW)
    many, long, nested = lines(audit)
    assert many["args"]["job_ids"] == [*range(10), "... 99990 more"]
    assert long["args"]["reason"] == "x" * 200 + "...(1000000 chars)"
    assert nested["args"]["deep"] == {"k": ["<dict>"]}
    for line in audit.path.read_text().splitlines():
        assert len(line) <= MAX_LINE_BYTES


def test_a_name_with_a_newline_cannot_forge_a_line(audit: AuditLog) -> None:
    forger = Principal('eve\n{"principal": "root"}', Role.USER)
    audit.refused(forger, "kill\n", JobIdsArgs([1]), Forbidden("no\nreally"), NOW)
    (line,) = lines(audit)
    assert line["principal"].startswith("eve\n")


def test_rate_limit_refusals_are_thinned_out_per_identity(audit: AuditLog) -> None:
    limited = RateLimited("bob sends more than 200 requests per second")
    written = [audit.refused(BOB, "ping", {}, limited, NOW + n * 0.01) for n in range(100)]
    assert written == [True] + [False] * 99
    assert audit.refused(OPERATOR, "ping", {}, limited, NOW)  # another identity: its own line
    assert audit.refused(BOB, "ping", {}, limited, NOW + RATE_LIMIT_QUIET)
    assert audit.refused(BOB, "kill", JobIdsArgs([1]), Forbidden("no"), NOW + 61)  # always
    reasons = [line["reason"] for line in lines(audit)]
    assert reasons[2].endswith("(99 more refusals not logged)")
    assert len(reasons) == 4


def test_lines_are_appended_across_restarts_to_a_private_file(tmp_path: Path) -> None:
    for number in range(2):
        with AuditLog.in_home(tmp_path) as audit:
            audit.done(ADMIN, "set_share", {"group": "g", "share": number}, NOW)
    assert [line["args"]["share"] for line in lines(audit)] == [0, 1]
    assert stat.S_IMODE(audit.path.stat().st_mode) == 0o600


def test_a_users_bulk_action_is_audited_with_its_selection_and_count(audit: AuditLog) -> None:
    from dirac_like.protocol import BulkArgs

    refused = InvalidArgument("the selection now matches 3 jobs, not the 2 you were shown")
    assert audit.done(
        BOB, "bulk", BulkArgs("kill", "status=Waiting", 2, only_owner="bob"), NOW, refused
    )
    [line] = lines(audit)
    assert (line["principal"], line["op"], line["outcome"]) == ("bob", "bulk", "failed")
    assert line["args"]["selection"] == "status=Waiting" and line["args"]["expected"] == 2


@pytest.mark.parametrize(
    "now", [0.0, 1767607200.123, 1767607199.9999996, 1044053435.4369994, 1331364263.0699995]
)
def test_audit_time_is_the_datetime_rounding_to_the_millisecond(now: float) -> None:
    """The time of a line (formatted once per second, then the milliseconds) is exactly what
    datetime.fromtimestamp gives, at the rounding edges too."""
    moment = datetime.datetime.fromtimestamp(now, datetime.UTC)
    expected = moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    line = json.loads(audit_line(Principal("root", Role.ADMIN), "kill", {}, now, "ok"))
    assert line["time"] == expected
