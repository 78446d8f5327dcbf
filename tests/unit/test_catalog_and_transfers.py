"""The replica catalog and the transfer book, driven through the handlers with an injected clock
and the in-memory store double (committed after every call, as the service loop does)."""

from __future__ import annotations

from typing import Any

import pytest

from dirac_like.config import Config, DataConfig, TransfersConfig
from dirac_like.errors import (
    IllegalTransition,
    InvalidArgument,
    InvalidLfn,
    LfnNotFound,
    StaleAttempt,
    StorageFull,
    UnknownStorageElement,
)
from dirac_like.protocol import ARGUMENTS, Op, parse_args, to_wire
from dirac_like.services.handlers import HANDLERS
from dirac_like.services.state import CentralState
from dirac_like.storage import StorageElementConfig
from dirac_like.store.memory import MemoryStore

SES = {
    name: StorageElementConfig(name=name, site=site, base_path=f"/se/{name}", tags=tags)
    for name, site, tags in (
        ("CERN-DISK", "CERN", ("disk", "tier1")),
        ("RAL-DISK", "RAL", ("disk", "tier1")),
        ("PIC-DISK", "PIC", ("disk",)),
    )
}
SES["SMALL-DISK"] = StorageElementConfig(  # room for 12 bytes
    name="SMALL-DISK", site="PIC", base_path="/se/SMALL-DISK", tags=("small",), total_space=12
)
TRANSFERS = TransfersConfig(lease=60, max_attempts=3, retry_backoff=10, per_link=1, per_se=2)
CONFIG = Config(data=DataConfig(vos=("lhcb",), transfers=TRANSFERS))
F1 = "/lhcb/user/alice/f1"


class Grid:
    def __init__(self) -> None:
        self.store = MemoryStore()
        self.state = CentralState(CONFIG, self.store, None, 0.0, None, SES)
        self.now = 1000.0

    def call(self, op: str, **args: Any) -> Any:
        try:
            return to_wire(HANDLERS[op](self.state, parse_args(ARGUMENTS[op], args), self.now))
        finally:
            changes = self.state.take_changes()
            self.store.commit(changes)
            self.state.committed(changes)

    def register(
        self, lfn: str = F1, se: str = "CERN-DISK", size: int = 5, adler32: str = "062c0215"
    ) -> Any:
        return self.call(
            Op.CATALOG_REGISTER,
            files=[{"lfn": lfn, "size": size, "adler32": adler32, "se": se}],
            owner="alice",
        )

    def replicas(self, lfn: str = F1) -> dict[str, str]:
        rows = self.call(Op.CATALOG_FILES, lfns=[lfn])["files"]
        return {row["se"]: row["status"] for row in rows[0]["replicas"]} if rows else {}

    def restart(self) -> None:
        self.state = CentralState(CONFIG, self.store, self.store.load(), self.now, None, SES)

    def advance(self, seconds: float) -> None:
        self.now += seconds
        self.state.expire(self.now)
        self.call(Op.SE_LIST)  # commits what expiring changed

    def lease(self, agent: str = "agent1", count: int = 1) -> list[dict[str, Any]]:
        tasks: list[dict[str, Any]] = self.call(Op.TRANSFER_REQUEST, agent=agent, max_count=count)
        return tasks

    def report(self, task: dict[str, Any], status: str, agent: str = "agent1", **more: Any) -> Any:
        return self.call(
            Op.TRANSFER_UPDATE,
            transfer_id=task["transfer_id"],
            attempt=task["attempt"],
            agent=agent,
            status=status,
            **more,
        )


@pytest.fixture
def grid() -> Grid:
    return Grid()


# -- the catalog ---------------------------------------------------------------------------------


def test_register_then_read_a_file_and_its_replicas_back_from_the_store(grid: Grid) -> None:
    assert grid.register() == {"new_files": 1, "new_replicas": 1}
    assert grid.register(se="RAL-DISK") == {"new_files": 0, "new_replicas": 1}
    grid.restart()
    (row,) = grid.call(Op.CATALOG_FILES, lfns=[F1])["files"]
    assert (row["size"], row["adler32"], row["owner"]) == (5, "062c0215", "alice")
    assert grid.replicas() == {"CERN-DISK": "Good", "RAL-DISK": "Good"}


def test_bulk_registration_in_one_call_and_one_commit(grid: Grid) -> None:
    files = [
        {"lfn": f"/lhcb/user/alice/bulk/f{i}", "size": i, "adler32": "1", "se": "CERN-DISK"}
        for i in range(2000)
    ]
    commits = grid.store.commits
    assert grid.call(Op.CATALOG_REGISTER, files=files, owner="alice")["new_files"] == 2000
    assert grid.store.commits == commits + 1
    assert len(grid.store.files) == 2000


@pytest.mark.parametrize("lfn", ["/lhcb/user/alice/../bob/f", "/lhcb//f", "/atlas/f/g"])
def test_a_bad_lfn_in_a_bulk_registration_refuses_all_of_it(grid: Grid, lfn: str) -> None:
    files = [
        {"lfn": F1, "size": 5, "adler32": "1", "se": "CERN-DISK"},
        {"lfn": lfn, "size": 5, "adler32": "1", "se": "CERN-DISK"},
    ]
    with pytest.raises(InvalidLfn):
        grid.call(Op.CATALOG_REGISTER, files=files, owner="alice")
    assert grid.store.files == {} and grid.store.replicas == {}


def test_registering_on_an_unknown_se_is_refused(grid: Grid) -> None:
    with pytest.raises(UnknownStorageElement, match="NOWHERE"):
        grid.register(se="NOWHERE")
    assert grid.store.files == {}


def test_a_replica_with_another_checksum_than_the_file_is_refused(grid: Grid) -> None:
    grid.register()
    with pytest.raises(InvalidArgument, match="registered with size 5"):
        grid.register(se="RAL-DISK", adler32="ffffffff")
    assert grid.replicas() == {"CERN-DISK": "Good"}


def test_listing_a_folder_shows_subfolders_and_files_even_before_commit(grid: Grid) -> None:
    grid.register("/lhcb/user/alice/a/f")
    grid.register("/lhcb/user/alice/top")
    listing = grid.call(Op.CATALOG_LIST, folder="/lhcb/user/alice")
    assert listing["folders"] == ["/lhcb/user/alice/a"]
    assert [row["lfn"] for row in listing["files"]] == ["/lhcb/user/alice/top"]


def test_removing_the_last_replica_removes_the_file(grid: Grid) -> None:
    grid.register()
    grid.register(se="RAL-DISK")
    reply = grid.call(Op.CATALOG_REMOVE, lfns=[F1], se="CERN-DISK")
    assert (reply["removed_replicas"], reply["removed_files"]) == (1, [])
    reply = grid.call(Op.CATALOG_REMOVE, lfns=[F1, "/lhcb/user/alice/nope"], se="RAL-DISK")
    assert reply["removed_files"] == [F1] and reply["missing"] == ["/lhcb/user/alice/nope"]
    assert grid.store.files == {} and grid.store.replicas == {}


def test_se_status_is_durable_and_a_banned_se_takes_no_registration(grid: Grid) -> None:
    grid.call(Op.SE_SET_STATUS, se="RAL-DISK", status="Banned", reason="disk failure")
    grid.restart()
    rows = {row["name"]: row for row in grid.call(Op.SE_LIST)}
    assert (rows["RAL-DISK"]["status"], rows["RAL-DISK"]["reason"]) == ("Banned", "disk failure")
    with pytest.raises(InvalidArgument, match="Banned"):
        grid.register(se="RAL-DISK")
    with pytest.raises(InvalidArgument, match="Active, Degraded, Banned"):
        grid.call(Op.SE_SET_STATUS, se="RAL-DISK", status="Broken")


# -- transfers -----------------------------------------------------------------------------------


def test_a_transfer_for_a_file_not_in_the_catalog_is_refused(grid: Grid) -> None:
    with pytest.raises(LfnNotFound, match="/lhcb/user/alice/ghost"):
        grid.call(Op.TRANSFER_SUBMIT, lfns=["/lhcb/user/alice/ghost"], destination="RAL-DISK")
    assert grid.store.transfers == {}


def test_leased_then_done_registers_the_replica_once(grid: Grid) -> None:
    grid.register()
    (transfer_id,) = grid.call(
        Op.TRANSFER_SUBMIT, lfns=[F1], destination="RAL-DISK", owner="alice"
    )["transfer_ids"]
    (task,) = grid.lease()
    assert (task["source"], task["size"], task["adler32"]) == ("CERN-DISK", 5, "062c0215")
    assert grid.report(task, "Active")["status"] == "Active"
    assert grid.replicas() == {"CERN-DISK": "Good"}  # nothing before the verified Done
    assert grid.report(task, "Done", size=5, adler32="062c0215")["status"] == "Done"
    assert grid.replicas() == {"CERN-DISK": "Good", "RAL-DISK": "Good"}
    with pytest.raises(StaleAttempt):
        grid.report(task, "Done", size=5, adler32="062c0215")
    assert grid.store.transfers[transfer_id].status == "Done"
    # its accounting record came with the Done, once (a repeat was refused: none more)
    record = grid.store.transfer_accounting[transfer_id]
    assert (record.status, record.link, record.bytes, record.attempts) == (
        "Done",
        "CERN-DISK -> RAL-DISK",
        5,
        1,
    )
    assert grid.state.transfers.finished == {("Done", "CERN-DISK -> RAL-DISK"): 1}
    assert grid.state.transfers.bytes_done == {"CERN-DISK -> RAL-DISK": 5}


def test_a_done_whose_checksum_differs_from_the_catalog_is_refused(grid: Grid) -> None:
    grid.register()
    grid.call(Op.TRANSFER_SUBMIT, lfns=[F1], destination="RAL-DISK")
    (task,) = grid.lease()
    with pytest.raises(IllegalTransition, match="not Done"):
        grid.report(task, "Done", size=5, adler32="00000001")
    assert "RAL-DISK" not in grid.replicas()


def test_a_failed_attempt_retries_from_another_source_after_a_backoff(grid: Grid) -> None:
    grid.register()
    grid.register(se="PIC-DISK")
    grid.call(Op.TRANSFER_SUBMIT, lfns=[F1], destination="RAL-DISK")
    (first,) = grid.lease()
    grid.report(first, "Failed", source=first["source"], reason="checksum mismatch")
    assert grid.lease() == []  # held off
    grid.advance(10)
    (second,) = grid.lease()
    assert second["attempt"] == 2 and second["source"] != first["source"]


def test_a_request_fails_with_its_reason_after_max_attempts(grid: Grid) -> None:
    grid.register()
    (transfer_id,) = grid.call(Op.TRANSFER_SUBMIT, lfns=[F1], destination="RAL-DISK")[
        "transfer_ids"
    ]
    for _ in range(3):
        grid.advance(100)
        (task,) = grid.lease()
        grid.report(task, "Failed", reason="source disappeared")
    (view,) = grid.call(Op.TRANSFERS, transfer_ids=[transfer_id])
    assert view["status"] == "Failed" and "source disappeared" in view["reason"]
    record = grid.store.transfer_accounting[transfer_id]
    assert (record.status, record.bytes, record.attempts) == ("Failed", 0, 3)
    assert "source disappeared" in record.reason


def test_a_killed_agents_lease_expires_and_the_request_survives_a_restart(grid: Grid) -> None:
    grid.register()
    grid.call(Op.TRANSFER_SUBMIT, lfns=[F1], destination="RAL-DISK")
    (task,) = grid.lease("doomed")
    grid.restart()  # the service went down and came back: the lease is in the store
    grid.advance(61)
    with pytest.raises(StaleAttempt):
        grid.report(task, "Done", agent="doomed", size=5, adler32="062c0215")
    grid.advance(10)
    (again,) = grid.lease("agent2")
    assert again["attempt"] == 2
    grid.report(again, "Done", agent="agent2", size=5, adler32="062c0215")
    assert grid.replicas() == {"CERN-DISK": "Good", "RAL-DISK": "Good"}


def test_per_link_and_per_se_limits_and_priorities(grid: Grid) -> None:
    for i in range(4):
        grid.register(f"/lhcb/user/alice/l{i}")
    grid.call(
        Op.TRANSFER_SUBMIT,
        lfns=["/lhcb/user/alice/l0", "/lhcb/user/alice/l1"],
        destination="RAL-DISK",
    )
    grid.call(Op.TRANSFER_SUBMIT, lfns=["/lhcb/user/alice/l2"], destination="RAL-DISK", priority=5)
    grid.call(Op.TRANSFER_SUBMIT, lfns=["/lhcb/user/alice/l3"], destination="PIC-DISK")
    tasks = grid.lease(count=10)
    # one per link (CERN->RAL, CERN->PIC): the high-priority one first; CERN at its 2 per SE
    assert [t["lfn"] for t in tasks] == ["/lhcb/user/alice/l2", "/lhcb/user/alice/l3"]
    grid.report(tasks[0], "Done", size=5, adler32="062c0215")
    assert [t["lfn"] for t in grid.lease(count=10)] == ["/lhcb/user/alice/l0"]


def test_a_replica_already_on_the_destination_is_done_at_once(grid: Grid) -> None:
    grid.register()
    grid.register(se="RAL-DISK")
    (transfer_id,) = grid.call(Op.TRANSFER_SUBMIT, lfns=[F1], destination="RAL-DISK")[
        "transfer_ids"
    ]
    assert grid.state.transfers.get(transfer_id).status == "Done"
    assert grid.lease() == []


def test_a_file_removed_while_waiting_fails_its_transfer(grid: Grid) -> None:
    grid.register()
    (transfer_id,) = grid.call(Op.TRANSFER_SUBMIT, lfns=[F1], destination="RAL-DISK")[
        "transfer_ids"
    ]
    grid.call(Op.CATALOG_REMOVE, lfns=[F1])
    assert grid.lease() == []
    assert "no longer in the catalog" in grid.state.transfers.get(transfer_id).reason


# -- jobs with input data ------------------------------------------------------------------------


def submit(grid: Grid, jdl: str) -> int:
    (job_id,) = grid.call(Op.SUBMIT, descriptions=[jdl], owner="alice")["job_ids"]
    return int(job_id)


def job(grid: Grid, job_id: int) -> dict[str, Any]:
    (row,) = grid.call(Op.STATUS, job_ids=[job_id])
    return dict(row)


def match(grid: Grid, site: str) -> int | None:
    reply = grid.call(Op.REQUEST_JOB, pilot_id=f"pilot-{site}", resources={"site": site})
    return None if reply["job"] is None else int(reply["job"]["job_id"])


def test_a_job_whose_input_data_is_not_in_the_catalog_fails_at_once_naming_it(grid: Grid) -> None:
    job_id = submit(grid, 'Executable = "/bin/true"; InputData = {"LFN:/lhcb/user/alice/x"};')
    row = job(grid, job_id)
    assert row["status"] == "Failed"
    assert row["minor_status"] == "Input data not in the catalog: /lhcb/user/alice/x"
    assert match(grid, "CERN") is None


def test_a_job_with_input_data_matches_only_where_a_replica_is(grid: Grid) -> None:
    grid.register()  # on CERN-DISK
    job_id = submit(grid, f'Executable = "/bin/true"; InputData = {{"LFN:{F1}"}};')
    assert job(grid, job_id)["status"] == "Waiting"
    assert match(grid, "RAL") is None
    assert match(grid, "CERN") == job_id


def test_input_data_on_two_sites_allows_both_and_a_site_asked_for_narrows_it(grid: Grid) -> None:
    grid.register()
    grid.register(se="RAL-DISK")
    job_id = submit(grid, f'Executable = "/bin/true"; InputData = {{"{F1}"}}; Site = "RAL";')
    assert match(grid, "CERN") is None
    assert match(grid, "RAL") == job_id
    other = submit(grid, f'Executable = "/bin/true"; InputData = {{"{F1}"}}; Site = "PIC";')
    assert "no single site" in job(grid, other)["minor_status"]


# -- replication rules ---------------------------------------------------------------------------


def rule_state(grid: Grid) -> dict[str, Any]:
    (row,) = grid.call(Op.RULES)
    return dict(row)


def test_a_rule_asks_for_the_missing_copies_and_is_ok_once_they_are_made(grid: Grid) -> None:
    grid.register("/lhcb/user/alice/run/a")
    grid.register("/lhcb/user/alice/run/b")
    grid.call(
        Op.RULE_ADD, folder="/lhcb/user/alice/run", copies=2, se_tags=["tier1"], owner="alice"
    )
    grid.advance(1)
    state = rule_state(grid)
    assert (state["state"], state["files"], state["replicating"]) == ("Replicating", 2, 2)
    assert state["ses"] == ["CERN-DISK", "RAL-DISK"]
    grid.advance(30)  # a pass while they are on their way asks for nothing more
    made = []
    while tasks := grid.lease(count=10):  # one at a time: per_link is 1 here
        made += [(t["lfn"], t["destination"]) for t in tasks]
        for task in tasks:
            grid.report(task, "Done", size=5, adler32="062c0215")
    assert sorted(made) == [
        ("/lhcb/user/alice/run/a", "RAL-DISK"),
        ("/lhcb/user/alice/run/b", "RAL-DISK"),
    ]
    grid.advance(30)
    assert rule_state(grid)["state"] == "OK"


def test_a_bad_replica_is_made_again_by_the_next_pass(grid: Grid) -> None:
    grid.register()
    grid.register(se="RAL-DISK")
    grid.call(Op.RULE_ADD, folder="/lhcb/user/alice", copies=2, se_tags=["tier1"])
    grid.advance(1)
    assert rule_state(grid)["state"] == "OK"
    grid.call(Op.CATALOG_REPLICA_STATUS, lfn=F1, se="RAL-DISK", status="Bad")
    grid.advance(30)
    (task,) = grid.lease()
    assert (task["source"], task["destination"]) == ("CERN-DISK", "RAL-DISK")
    grid.report(task, "Done", size=5, adler32="062c0215")
    assert grid.replicas() == {"CERN-DISK": "Good", "RAL-DISK": "Good"}


def test_a_rule_no_se_can_satisfy_is_stuck_and_rules_survive_a_restart(grid: Grid) -> None:
    grid.register()
    grid.call(Op.RULE_ADD, folder="/lhcb/user/alice", copies=3, se_tags=["tier1"])
    grid.restart()
    grid.advance(1)
    state = rule_state(grid)
    assert (state["state"], state["missing"]) == ("Replicating", 1)
    (task,) = grid.lease()
    grid.report(task, "Done", size=5, adler32="062c0215")
    grid.advance(30)
    assert (rule_state(grid)["state"], rule_state(grid)["missing"]) == ("Stuck", 1)


def test_a_rule_without_tags_or_on_a_bad_folder_is_refused(grid: Grid) -> None:
    with pytest.raises(InvalidArgument, match="tag"):
        grid.call(Op.RULE_ADD, folder="/lhcb/user/alice", copies=2, se_tags=[])
    with pytest.raises(InvalidLfn):
        grid.call(Op.RULE_ADD, folder="/lhcb/../x", copies=2, se_tags=["disk"])
    assert grid.store.rules == {}


# -- job why: input data not at any site the job may run at ---------------------------------------

F2 = "/lhcb/user/alice/f2"
DATA_JOB = f'Executable = "/bin/true"; InputData = {{"LFN:{F1}"}};'


def why(grid: Grid, job_id: int) -> dict[str, Any]:
    (answer,) = grid.call(Op.WHY, job_ids=[job_id])
    return dict(answer)


DATA_CASES = [
    # (name, files registered (lfn, se), the job, what happens after submission, verdict, reason)
    ("its data is in place", [(F1, "CERN-DISK")], DATA_JOB, [], "unknown-grid", "no CE"),
    ("no input data", [], 'Executable = "/bin/true";', [], "unknown-grid", "no CE"),
    (
        "the SE of its only replica was banned",
        [(F1, "CERN-DISK")],
        DATA_JOB,
        [(Op.SE_SET_STATUS, {"se": "CERN-DISK", "status": "Banned", "reason": "disk failure"})],
        "held",
        f"{F1}: no Good replica on a readable SE at CERN now",
    ),
    (
        "its replica was removed and a copy is on its way",
        [(F1, "CERN-DISK"), (F1, "RAL-DISK")],
        f'Executable = "/bin/true"; InputData = {{"{F1}"}}; Site = "CERN";',
        [
            (Op.CATALOG_REMOVE, {"lfns": [F1], "se": "CERN-DISK"}),
            (Op.TRANSFER_SUBMIT, {"lfns": [F1], "destination": "CERN-DISK"}),
        ],
        "held",
        "(a transfer to CERN-DISK is on its way)",
    ),
    (
        "one of two files lost its replica where the job may run",
        [(F1, "CERN-DISK"), (F2, "CERN-DISK"), (F2, "RAL-DISK")],
        f'Executable = "/bin/true"; InputData = {{"{F1}", "{F2}"}};',
        [(Op.CATALOG_REMOVE, {"lfns": [F2], "se": "CERN-DISK"})],
        "held",
        f"{F2}: no Good replica on a readable SE at CERN now",
    ),
]


@pytest.mark.parametrize(
    ("name", "files", "jdl", "after", "verdict", "reason"),
    DATA_CASES,
    ids=[case[0] for case in DATA_CASES],
)
def test_why_says_when_a_jobs_input_data_is_not_where_it_may_run(
    grid: Grid,
    name: str,
    files: list[tuple[str, str]],
    jdl: str,
    after: list[tuple[str, dict[str, Any]]],
    verdict: str,
    reason: str,
) -> None:
    for lfn, se in files:
        grid.register(lfn, se)
    job_id = submit(grid, jdl)
    assert job(grid, job_id)["status"] == "Waiting"
    for op, args in after:
        grid.call(op, **args)

    answer = why(grid, job_id)

    assert answer["verdict"] == verdict, answer
    assert reason in answer["reason"], answer


def test_a_full_se_refuses_a_registration_whole_and_counts_removals(grid: Grid) -> None:
    grid.register("/lhcb/user/alice/a", se="SMALL-DISK", size=5)
    grid.register("/lhcb/user/alice/b", se="SMALL-DISK", size=5)
    with pytest.raises(StorageFull, match="SE SMALL-DISK is full: 10 of 12 bytes used"):
        grid.register("/lhcb/user/alice/c", se="SMALL-DISK", size=5)
    assert grid.replicas("/lhcb/user/alice/c") == {}  # nothing registered
    (row,) = [r for r in grid.call(Op.SE_LIST) if r["name"] == "SMALL-DISK"]
    assert (row["used_space"], row["total_space"]) == (10, 12)
    grid.call(Op.CATALOG_REMOVE, lfns=["/lhcb/user/alice/a"], se="")
    grid.register("/lhcb/user/alice/c", se="SMALL-DISK", size=5)  # room again
    grid.restart()  # the space used is read back from the store
    with pytest.raises(StorageFull):
        grid.register("/lhcb/user/alice/d", se="SMALL-DISK", size=5)


def test_a_transfer_to_a_full_se_is_retried_then_failed_with_the_reason(grid: Grid) -> None:
    grid.register("/lhcb/user/alice/big", size=20)
    (transfer_id,) = grid.call(
        Op.TRANSFER_SUBMIT, lfns=["/lhcb/user/alice/big"], destination="SMALL-DISK"
    )["transfer_ids"]
    for _ in range(3):
        assert grid.lease() == []  # never handed to an agent
        grid.advance(100)
    (view,) = grid.call(Op.TRANSFERS, transfer_ids=[transfer_id])
    assert view["status"] == "Failed" and view["attempt"] == 3
    assert "SE SMALL-DISK is full: 12 bytes free, 20 needed" in view["reason"]
    assert "SMALL-DISK" not in grid.replicas("/lhcb/user/alice/big")


def test_defect_b_a_monitoring_ban_of_an_se_governs_its_data_status_and_stops_transfers(
    grid: Grid,
) -> None:
    grid.register()
    grid.register("/lhcb/user/alice/f2", se="PIC-DISK")
    to_ral, from_pic = (
        grid.call(Op.TRANSFER_SUBMIT, lfns=[lfn], destination=se)["transfer_ids"][0]
        for lfn, se in ((F1, "RAL-DISK"), ("/lhcb/user/alice/f2", "CERN-DISK"))
    )
    for se in ("RAL-DISK", "PIC-DISK"):
        grid.call(Op.SET_STATUS, kind="se", target=se, status="Banned", reason="probes fail")
    rows = {row["name"]: row for row in grid.call(Op.SE_LIST)}
    assert (rows["RAL-DISK"]["status"], rows["RAL-DISK"]["reason"]) == (
        "Banned",
        "monitoring: probes fail",
    )
    assert grid.lease(count=2) == []  # neither to nor from a banned SE
    views = {v["transfer_id"]: v for v in grid.call(Op.TRANSFERS)}
    assert views[to_ral]["status"] == views[from_pic]["status"] == "Waiting"
    assert "RAL-DISK takes no new replicas" in views[to_ral]["reason"]
    with pytest.raises(InvalidArgument, match="RAL-DISK takes no new replicas"):
        grid.call(Op.TRANSFER_SUBMIT, lfns=[F1], destination="RAL-DISK")
    for se in ("RAL-DISK", "PIC-DISK"):
        grid.call(Op.SET_STATUS, kind="se", target=se, status="Active", reason="probes pass")
    assert {task["transfer_id"] for task in grid.lease(count=2)} == {to_ral, from_pic}


def test_defect_d_rules_scan_only_folders_that_changed_and_all_of_them_now_and_then(
    grid: Grid, monkeypatch: pytest.MonkeyPatch
) -> None:
    grid.register()
    grid.register(se="RAL-DISK")
    grid.call(Op.RULE_ADD, folder="/lhcb/user/alice", copies=2, se_tags=["tier1"])
    grid.advance(1)
    assert rule_state(grid)["state"] == "OK"
    scans: list[str] = []
    scan = grid.store.catalog_folder

    def counted(folder: str, limit: int) -> Any:
        scans.append(folder)
        return scan(folder, limit)

    monkeypatch.setattr(grid.store, "catalog_folder", counted)
    grid.advance(30)
    grid.advance(30)
    assert scans == []  # a quiet rule is not scanned
    grid.call(
        Op.CATALOG_REPLICA_STATUS, lfn=F1, se="RAL-DISK", status="Bad", reason="adler32 on read"
    )
    grid.advance(2)  # a change brings the pass forward
    assert scans == ["/lhcb/user/alice"]
    (task,) = grid.lease()
    assert task["destination"] == "RAL-DISK"
    grid.report(task, "Done", size=5, adler32="062c0215")
    grid.advance(2)  # the transfer's end is a change too
    assert rule_state(grid)["state"] == "OK" and len(scans) == 2
    grid.advance(600)  # and every rule is scanned at least every FULL_PASS_SECONDS
    assert len(scans) == 3
