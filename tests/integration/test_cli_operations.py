"""The operators' commands (issue 14) as users run them: ``job why``, ``--select`` bulk actions,
``admin site ...`` and ``admin pilots --summary``, a subprocess against a real secure service
(the test's identity is its admin)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from test_cli import HELLO, json_of, run_cli, submit

from dirac_like.client import Client
from dirac_like.identity import save_identity
from dirac_like.processes import ServiceProcess
from dirac_like.protocol import PilotResources

CERN = "LCG.CERN.cern"
BIG = PilotResources(site=CERN, ce="ce1", cores=8, memory_mb=16000, cpu_time_left=172800)
CONFIG = """
[bulk]
confirm_above = 3
admin_above = 5
batch = 2
"""


@pytest.fixture
def central(start_central: Any) -> ServiceProcess:
    service: ServiceProcess = start_central(CONFIG)
    return service


@pytest.fixture
def cli(central: ServiceProcess, tmp_path: Path) -> Any:
    """``cli("job", "why", "1")``: run the CLI against the test's central service."""
    return lambda *args: run_cli(*args, server=central.endpoint, home=tmp_path / "client-home")


def statuses(client: Client, job_ids: list[int]) -> list[str]:
    return [row.status for row in client.status(job_ids)]


def test_why_explains_a_never_runnable_job_and_submit_warns(
    cli: Any, client: Client, tmp_path: Path
) -> None:
    client.eligible(BIG)  # a director sized pilots for CERN's ce1
    path = tmp_path / "big.jdl"
    path.write_text(HELLO + " NumberOfProcessors = 64;")

    submitted = cli("job", "submit", str(path))
    assert submitted.returncode == 0, submitted.stderr
    assert (
        "warning: 1 job(s): No CE can run it: NumberOfProcessors 64 > the largest CE's 8"
        in submitted.stderr
    )
    why = cli("job", "why", "1")
    assert why.returncode == 0, why.stderr
    assert "Job 1 (Waiting): no CE can ever run it: NumberOfProcessors 64" in why.stdout
    assert "CEs rejecting it, of 1: NumberOfProcessors 1" in why.stdout
    status = cli("job", "status", "1")
    assert "why 1: no CE can ever run it" in status.stdout
    [answer] = json_of(cli("job", "why", "1", "--json"))
    assert answer["verdict"] == "never"
    unknown = cli("job", "why", "99")
    assert unknown.returncode == 1 and "job 99 not found" in unknown.stderr


def test_bulk_kill_counts_first_then_needs_yes_then_acts(
    cli: Any, client: Client, tmp_path: Path
) -> None:
    job_ids = submit(cli, tmp_path, text=HELLO + ' Parameters = 4; JobName = "mc_%n";')

    dry = cli("job", "kill", "--select", "status=Waiting,name=mc_*", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "Kill would act on 4 job(s)" in dry.stdout and "Dry run: nothing done." in dry.stdout
    refused = cli("job", "kill", "--select", "status=Waiting,name=mc_*")
    assert refused.returncode == 2
    assert "above the confirmation cap of 3: confirm with --yes" in refused.stderr
    assert set(statuses(client, job_ids)) == {"Waiting"}

    done = cli("job", "kill", "--select", "status=Waiting,name=mc_*", "--yes")

    assert done.returncode == 0, done.stderr
    assert "Kill: 4 of 4 job(s) done, 0 skipped" in done.stdout
    assert set(statuses(client, job_ids)) == {"Killed"}


def test_bulk_above_the_admin_cap_needs_the_admins_flag_and_is_audited(
    cli: Any, client: Client, central: ServiceProcess, tmp_path: Path
) -> None:
    job_ids = submit(cli, tmp_path, text=HELLO + " Parameters = 6;")
    refused = cli("job", "delete", "--select", "status=Waiting", "--yes")
    assert refused.returncode == 2 and "above the admin cap of 5" in refused.stderr
    assert set(statuses(client, job_ids)) == {"Waiting"}

    done = cli("job", "delete", "--select", "status=Waiting", "--yes", "--over-admin-cap")

    assert done.returncode == 0, done.stderr
    assert set(statuses(client, job_ids)) == {"Deleted"}
    audit = [
        json.loads(line) for line in (central.home / "logs" / "audit.log").read_text().splitlines()
    ]
    [bulk] = [line for line in audit if line["op"] == "bulk"]
    assert bulk["args"]["selection"] == "status=Waiting" and bulk["args"]["expected"] == 6


def test_bad_or_empty_selections_change_nothing(cli: Any, client: Client, tmp_path: Path) -> None:
    job_ids = submit(cli, tmp_path)
    for selection, message in (
        ("colour=red", "selection field 'colour' is unknown"),
        ("older=yesterday", "age 'yesterday' is not valid"),
    ):
        result = cli("job", "kill", "--select", selection, "--yes")
        assert result.returncode == 1 and message in result.stderr
    empty = cli("job", "kill", "--select", "site=Nowhere")
    assert empty.returncode == 1
    assert "Kill would act on 0 job(s)" in empty.stdout
    assert "no job matches this selection" in empty.stdout
    assert statuses(client, job_ids) == ["Waiting"]


def test_site_drain_limit_show_and_pilot_summary(cli: Any, client: Client, tmp_path: Path) -> None:
    client.eligible(BIG)
    client.add_pilots(CERN, "ce1", 2)
    submit(cli, tmp_path)
    assert cli("admin", "site", "drain", CERN).returncode == 0
    assert client.request_job("p1", BIG).job is None
    assert cli("admin", "site", "limit", CERN, "4").returncode == 0

    show = cli("admin", "site", "show", CERN)

    assert show.returncode == 0, show.stderr
    assert f"Site {CERN}: Draining; running limit 4" in show.stdout
    assert "1 waiting jobs could run here" in show.stdout and "ce1" in show.stdout
    summary = json_of(cli("admin", "pilots", "--summary", "--json"))
    assert {(row["state"], row["count"]) for row in summary} == {("Submitted", 2), ("Running", 1)}
    assert cli("admin", "site", "drain", CERN, "--undo").returncode == 0
    assert client.request_job("p1", BIG).job is not None


def test_job_list_filters_by_name_and_sorts(cli: Any, tmp_path: Path) -> None:
    submit(cli, tmp_path, text=HELLO + ' Parameters = 3; JobName = "mc_%n";')
    submit(cli, tmp_path, text=HELLO + ' JobName = "user_job";')
    rows = json_of(cli("job", "list", "--name", "mc_*", "--sort", "id", "--reverse", "--json"))
    assert [row["job_id"] for row in rows] == [3, 2, 1]
    assert json_of(cli("job", "list", "--older", "1d", "--json")) == []
    bad = cli("job", "list", "--older", "soon")
    assert bad.returncode == 2 and "age 'soon' is not valid" in bad.stderr


def test_a_user_selecting_everyones_jobs_counts_and_kills_only_its_own(
    cli: Any, client: Client, tmp_path: Path
) -> None:
    others = client.submit([HELLO, HELLO], owner="")  # the admin's
    bob = tmp_path / "bob.identity"
    save_identity(bob, client.identity_add("bob", "user", ["physics"]))
    own = submit(cli, tmp_path, "--identity", str(bob))

    result = cli("job", "kill", "--select", "status=Waiting", "--identity", str(bob))

    assert result.returncode == 0, result.stderr
    assert "Note: only your jobs (owner=bob) are counted" in result.stdout
    assert "Kill would act on 1 job(s)" in result.stdout
    assert statuses(client, own) == ["Killed"]
    assert statuses(client, others) == ["Waiting", "Waiting"]
