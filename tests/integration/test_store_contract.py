"""The store contract (dirac_like/store/base.py), run against every Store implementation.

The tests use only the Store interface. What differs per implementation lives in one ``Backend``
entry: how to open a store at a fresh location, and how to stamp a schema version on it (to play a
database written by newer code). PostgreSQL's entry needs the session's server
(tests/postgres_server.py): each location (folder) is a store in a schema of its own.
"""

from __future__ import annotations

import sqlite3
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from postgres_server import PostgresServer

from dirac_like.accounting import JobAccountingRecord, RetentionCutoffs
from dirac_like.errors import JobNotFound, StoreError
from dirac_like.model import (
    BulkActionRecord,
    ChangeSet,
    FileEntry,
    HistoryEntry,
    JobRecord,
    LoadedState,
    PilotRecord,
    Requirements,
    SEStatusRecord,
    SharedHistory,
    SiteRecord,
    StoredReply,
    SubmissionRecord,
    TaskQueueRow,
    TransferRecord,
    UsageRecord,
)
from dirac_like.monitoring import (
    CheckStatus,
    Downtime,
    ProbeResult,
    ResourceStatus,
    StatusRecord,
    TargetKind,
)
from dirac_like.states import JobStatus
from dirac_like.store.base import SCHEMA_VERSION, Store, open_store
from dirac_like.store.memory import MemoryStore

# -- implementations -------------------------------------------------------------------------


@dataclass(frozen=True)
class Backend:
    open: Callable[[Path], Store]  # a store kept under this (fresh or reused) folder
    stamp_schema_version: Callable[[Path, int], None]  # on a closed store
    durable: bool = True  # False: the in-memory test double, nothing survives a reopen


def _sqlite_path(folder: Path) -> Path:
    return folder / "store.sqlite"


def _sqlite_stamp(folder: Path, version: int) -> None:
    with sqlite3.connect(_sqlite_path(folder)) as db:
        db.execute(f"PRAGMA user_version = {version:d}")
    db.close()


def _cannot_stamp(folder: Path, version: int) -> None:
    raise NotImplementedError("the in-memory store has no stored schema")


BACKENDS = {
    "sqlite": Backend(
        open=lambda folder: open_store(f"sqlite://{_sqlite_path(folder)}"),
        stamp_schema_version=_sqlite_stamp,
    ),
    "memory": Backend(
        open=lambda folder: MemoryStore(), stamp_schema_version=_cannot_stamp, durable=False
    ),
}


class Opener:
    """Opens stores at one location and closes every one of them at teardown."""

    def __init__(self, backend: Backend, folder: Path) -> None:
        self.backend = backend
        self.folder = folder
        self.opened: list[Store] = []

    def open(self) -> Store:
        store = self.backend.open(self.folder)
        self.opened.append(store)
        return store

    def reopen(self) -> Store:
        self.close_all()
        return self.open()

    def close_all(self) -> None:
        while self.opened:
            self.opened.pop().close()


def postgres_backend(server: PostgresServer) -> Backend:
    """Each folder a store of its own on ``server``, made the first time the folder is used."""
    urls: dict[Path, str] = {}

    def url(folder: Path) -> str:
        if folder not in urls:
            urls[folder] = server.new_store_url("contract")
        return urls[folder]

    def stamp(folder: Path, version: int) -> None:
        import psycopg

        with psycopg.connect(url(folder), autocommit=True) as connection:
            connection.execute("UPDATE schema_version SET version = %s", (version,))

    return Backend(open=lambda folder: open_store(url(folder)), stamp_schema_version=stamp)


@pytest.fixture(scope="module", params=[*sorted(BACKENDS), "postgresql"])
def backend(request: pytest.FixtureRequest) -> Backend:
    if request.param == "postgresql":
        return postgres_backend(request.getfixturevalue("postgres_server"))
    return BACKENDS[request.param]


@pytest.fixture
def opener(backend: Backend, tmp_path: Path) -> Iterator[Opener]:
    opener = Opener(backend, tmp_path)
    yield opener
    opener.close_all()


@pytest.fixture
def store(opener: Opener) -> Store:
    return opener.open()


@pytest.fixture
def reopen(opener: Opener, store: Store) -> Callable[[], Store]:
    """Close the store(s) open at this location and open it again."""
    if not opener.backend.durable:
        pytest.skip("the in-memory store keeps nothing across a reopen")
    return opener.reopen


# -- helpers ---------------------------------------------------------------------------------

JOB_FIELD_NAMES = tuple(f.name for f in fields(JobRecord))


def job_values(job: JobRecord) -> tuple[Any, ...]:
    return tuple(getattr(job, name) for name in JOB_FIELD_NAMES)


def snapshot(state: LoadedState) -> dict[str, Any]:
    """A LoadedState as plain comparable values, independent of row order."""
    return {
        "jobs": sorted((job_values(job) for job in state.jobs), key=lambda v: v[0]),
        "task_queues": sorted(state.task_queues, key=lambda t: t.task_queue_id),
        "sites": sorted(state.sites, key=lambda s: s.name),
        "shares": dict(state.shares),
        "usage": sorted(state.usage, key=lambda u: (u.group, u.user)),
        "replies": sorted(state.replies, key=lambda r: r.request_id),
        "pilots": sorted(
            ({**pilot.view(), "credential": pilot.credential} for pilot in state.pilots),
            key=lambda v: v["pilot_id"],
        ),
        "next_pilot_number": state.next_pilot_number,
    }


def new_job(job_id: int, **values: Any) -> JobRecord:
    defaults: dict[str, Any] = {
        "owner": "alice",
        "group": "lhcb_user",
        "task_queue_id": 1,
        "priority": 1,
        "status": JobStatus.RECEIVED,
    }
    return JobRecord(job_id=job_id, **{**defaults, **values})


def pack(description: dict[str, Any]) -> bytes:
    packed: bytes = msgpack.packb(description)
    return packed


def submission(*jobs: JobRecord) -> ChangeSet:
    return ChangeSet(new_jobs=[(job, pack({"Executable": f"job{job.job_id}"})) for job in jobs])


# Every JobRecord field with a value that is not its default.
FULL_JOB_VALUES: dict[str, Any] = {
    "job_id": 42,
    "owner": "amélie",
    "group": "atlas_prod",
    "task_queue_id": 7,
    "priority": -3,
    "status": JobStatus.STALLED,
    "minor_status": "Watchdog: no heartbeat ⏱",
    "application_status": "Event 1234/5000",
    "site": "LCG.CERN.ch",
    "job_name": "simulation-λ",
    "pilot_id": "pilot-0008",
    "attempt": 3,
    "reschedules": 2,
    "submitted": 1_700_000_000.125,
    "updated": 1_700_000_100.5,
    "matched_at": 1_700_000_050.25,
    "deadline": 1_700_000_700.75,
    "heartbeat_at": 1_700_000_090.0625,
    "kill_requested": True,
}

# -- the contract ----------------------------------------------------------------------------


def test_a_new_store_is_empty_and_at_the_current_schema_version(store: Store) -> None:
    assert store.schema_version() == SCHEMA_VERSION
    assert snapshot(store.load()) == snapshot(LoadedState([], [], [], {}, [], []))


def test_every_job_field_round_trips(store: Store) -> None:
    assert set(FULL_JOB_VALUES) == set(JOB_FIELD_NAMES), "give every JobRecord field a value"
    store.commit(submission(JobRecord(**FULL_JOB_VALUES)))

    [job] = store.load().jobs

    assert job_values(job) == tuple(FULL_JOB_VALUES[name] for name in JOB_FIELD_NAMES)
    assert type(job.status) is JobStatus
    assert job.kill_requested is True


def test_task_queues_round_trip(store: Store) -> None:
    requirements = Requirements(
        sites=("LCG.CERN.ch", "LCG.RAL.uk"),
        banned_sites=("LCG.Bad.xx",),
        platforms=("el9",),
        cores=8,
        max_ram_mb=16_000,
        cpu_time=86_400,
        tags=("GPU", "ünïcode"),
    )
    rows = [
        TaskQueueRow(1, "alice", "lhcb_user", Requirements()),
        TaskQueueRow(2, "bob", "atlas", requirements),
    ]
    store.commit(ChangeSet(new_task_queues=rows))

    assert sorted(store.load().task_queues, key=lambda t: t.task_queue_id) == rows


def test_a_new_job_changed_in_the_same_changeset_keeps_its_latest_values(store: Store) -> None:
    same_object = new_job(1)
    other_object = new_job(2)
    changes = submission(same_object, other_object)
    same_object.status = JobStatus.CHECKING  # changed in place after being queued for insert
    changes.changed_jobs[1] = same_object
    changes.changed_jobs[2] = new_job(2, status=JobStatus.WAITING, minor_status="Pilot Agent")

    store.commit(changes)

    jobs = {job.job_id: job for job in store.load().jobs}
    assert jobs[1].status is JobStatus.CHECKING
    assert (jobs[2].status, jobs[2].minor_status) == (JobStatus.WAITING, "Pilot Agent")


def test_later_changes_overwrite_earlier_ones(store: Store) -> None:
    job = new_job(1)
    store.commit(submission(job))
    job.status, job.pilot_id, job.deadline = JobStatus.MATCHED, "pilot-1", 100.0
    store.commit(ChangeSet(changed_jobs={1: job}))
    job.status, job.minor_status, job.heartbeat_at = JobStatus.RUNNING, "Application", 150.0
    job.kill_requested = True
    store.commit(ChangeSet(changed_jobs={1: job}))

    [loaded] = store.load().jobs

    assert job_values(loaded) == job_values(job)


def test_history_is_returned_in_commit_order_per_job(store: Store) -> None:
    def entry(job_id: int, status: str, time: float) -> HistoryEntry:
        return HistoryEntry(job_id, status, "", "", time, "test")

    # Times deliberately out of order: the order is the commit order, not the time.
    store.commit(ChangeSet(history=[entry(1, "Received", 50.0), entry(2, "Received", 1.0)]))
    store.commit(ChangeSet(history=[entry(1, "Checking", 20.0), entry(2, "Checking", 2.0)]))
    store.commit(ChangeSet(history=[entry(1, "Waiting", 30.0), entry(1, "Matched", 10.0)]))

    assert store.history(1) == [
        entry(1, "Received", 50.0),
        entry(1, "Checking", 20.0),
        entry(1, "Waiting", 30.0),
        entry(1, "Matched", 10.0),
    ]
    assert store.history(2) == [entry(2, "Received", 1.0), entry(2, "Checking", 2.0)]


def test_a_run_of_shared_history_is_each_of_its_jobs_first_rows(store: Store) -> None:
    """Jobs made together share their first rows (one run); each job's own rows follow them,
    and a job outside every run (or between two) has only its own."""
    steps = (
        HistoryEntry(0, "Received", "Job accepted", "", 5.0, "JobManager"),
        HistoryEntry(0, "Waiting", "Pilot Agent Submission", "", 5.0, "JobScheduling"),
    )
    later = (HistoryEntry(0, "Waiting", "No CE can run it", "", 6.0, "JobScheduling"),)
    failed = HistoryEntry(3, "Failed", "input data", "", 5.0, "InputData")
    store.commit(
        ChangeSet(
            shared_history=[SharedHistory(1, 3, steps), SharedHistory(7, 7, later)],
            history=[failed],
        )
    )
    store.commit(ChangeSet(history=[HistoryEntry(1, "Matched", "", "", 9.0, "Matcher")]))
    assert store.history(1) == [
        *(entry._replace(job_id=1) for entry in steps),
        HistoryEntry(1, "Matched", "", "", 9.0, "Matcher"),
    ]
    assert store.history(3) == [*(entry._replace(job_id=3) for entry in steps), failed]
    assert store.history(7) == [later[0]._replace(job_id=7)]
    assert store.history(4) == [] and store.history(8) == [] and store.history(0) == []


def test_description_round_trips(store: Store) -> None:
    description = {
        "Executable": "/bin/ëcho",
        "Arguments": "σ → ∞",  # noqa: RUF001 (non-ASCII on purpose)
        "InputSandbox": ["a.txt", "b/ç.py"],
        "Parameters": [1, 2.5, True, None, "x"],
        "Nested": {"list": [{"deep": ["日本語", {"k": []}]}], "empty": {}},
        "CPUTime": 86_400,
    }
    store.commit(ChangeSet(new_jobs=[(new_job(5), pack(description))]))

    assert store.description(5) == description


def test_descriptions_read_in_any_order_are_each_jobs_own_also_after_later_commits(
    store: Store,
) -> None:
    # SQLite and PostgreSQL read the descriptions of the next job ids ahead with one: each
    # read, in any order, twice, and of jobs committed after the read-ahead, is still the job's
    store.commit(submission(*(new_job(job_id) for job_id in (1, 2, 3))))
    assert store.description(1) == {"Executable": "job1"}  # 2 and 3 read ahead
    store.commit(submission(new_job(4)))

    reads = [store.description(job_id) for job_id in (3, 2, 2, 4, 1)]

    assert reads == [{"Executable": f"job{job_id}"} for job_id in (3, 2, 2, 4, 1)]
    with pytest.raises(JobNotFound):
        store.description(5)


def test_unknown_job_has_no_description_and_no_history(store: Store) -> None:
    store.commit(submission(new_job(1)))

    with pytest.raises(JobNotFound, match="job 999 not found"):
        store.description(999)
    assert store.history(999) == []


def test_sites_shares_and_usage_are_upserted(store: Store) -> None:
    store.commit(
        ChangeSet(
            sites={
                "A": SiteRecord("A", True, "downtime", 1.0),
                "B": SiteRecord("B", False, "", 2.0, drained=True, max_running=7),
            },
            shares={"lhcb": 1.0, "atlas": 2.0},
            usage={
                ("lhcb", ""): UsageRecord("lhcb", "", 10.0, 1.0),
                ("lhcb", "alice"): UsageRecord("lhcb", "alice", 5.0, 1.0),
            },
        )
    )
    store.commit(
        ChangeSet(
            sites={"A": SiteRecord("A", False, "back", 3.0), "C": SiteRecord("C", True, "x", 3.0)},
            shares={"atlas": 3.5, "cms": 0.5},
            usage={
                ("lhcb", "alice"): UsageRecord("lhcb", "alice", 7.5, 2.0),
                ("atlas", "alice"): UsageRecord("atlas", "alice", 1.0, 2.0),
            },
        )
    )

    state = snapshot(store.load())
    assert state["sites"] == [
        SiteRecord("A", False, "back", 3.0),
        SiteRecord("B", False, "", 2.0, drained=True, max_running=7),
        SiteRecord("C", True, "x", 3.0),
    ]
    assert all(type(site.banned) is bool for site in state["sites"])
    assert state["shares"] == {"lhcb": 1.0, "atlas": 3.5, "cms": 0.5}
    assert state["usage"] == [
        UsageRecord("atlas", "alice", 1.0, 2.0),
        UsageRecord("lhcb", "", 10.0, 1.0),
        UsageRecord("lhcb", "alice", 7.5, 2.0),
    ]


def test_replies_are_stored_and_only_older_ones_are_forgotten(store: Store) -> None:
    store.commit(
        ChangeSet(
            replies=[
                StoredReply("r10", b"\x81\xa2ok\xc3", 10.0),
                StoredReply("r20", b"twenty", 20.0),
                StoredReply("r30", b"thirty", 30.0),
            ]
        )
    )
    store.commit(ChangeSet(replies=[StoredReply("r30", b"thirty again", 31.0)]))
    assert snapshot(store.load())["replies"] == [
        StoredReply("r10", b"\x81\xa2ok\xc3", 10.0),
        StoredReply("r20", b"twenty", 20.0),
        StoredReply("r30", b"thirty again", 31.0),
    ]

    store.commit(ChangeSet(forget_replies_before=20.0))

    assert snapshot(store.load())["replies"] == [
        StoredReply("r20", b"twenty", 20.0),  # not older than the cut-off: kept
        StoredReply("r30", b"thirty again", 31.0),
    ]


FULL_PILOT = PilotRecord(
    pilot_id="LCG.CERN.ch.ce-1.17",
    site="LCG.CERN.ch",
    ce="ce-1",
    fabric="slurm",
    fabric_ref="4242",
    state="Running",
    reason="started ✓",
    submitted=1_700_000_000.5,
    updated=1_700_000_001.25,
    last_contact=1_700_000_002.125,
    kill_requested=True,
)


def test_pilot_records_round_trip_with_their_jobs_and_output(store: Store) -> None:
    store.commit(
        ChangeSet(
            pilots={FULL_PILOT.pilot_id: FULL_PILOT},
            pilot_jobs=[(FULL_PILOT.pilot_id, 5), (FULL_PILOT.pilot_id, 3)],
            pilot_outputs={FULL_PILOT.pilot_id: "line 1\nline ✓"},
            next_pilot_number=18,
        )
    )
    store.commit(ChangeSet(pilot_jobs=[(FULL_PILOT.pilot_id, 5)]))  # the same pair again

    loaded = store.load()

    [pilot] = loaded.pilots
    assert pilot.view() == {**FULL_PILOT.view(), "jobs": [3, 5]}
    assert pilot.kill_requested is True
    assert loaded.next_pilot_number == 18
    assert store.pilot_output(FULL_PILOT.pilot_id) == "line 1\nline ✓"
    assert store.pilot_output("nobody") is None


def test_a_pilot_record_is_replaced_whole_and_forgotten_with_its_jobs_and_output(
    store: Store,
) -> None:
    first = PilotRecord("P.1", "A", state="Submitted")
    store.commit(
        ChangeSet(pilots={"P.1": first}, pilot_jobs=[("P.1", 1)], pilot_outputs={"P.1": "out"})
    )
    store.commit(ChangeSet(pilots={"P.1": PilotRecord("P.1", "A", state="Done", reason="ok")}))
    assert [(p.state, p.reason, p.jobs) for p in store.load().pilots] == [("Done", "ok", [1])]

    store.commit(ChangeSet(forget_pilots=["P.1"]))

    assert store.load().pilots == []
    assert store.pilot_output("P.1") is None


def test_sandbox_references_are_kept_per_job_and_kind(store: Store) -> None:
    first, second = "a" * 64, "b" * 64
    store.commit(
        ChangeSet(sandboxes=[(1, "input", first), (2, "input", first), (1, "output", second)])
    )
    store.commit(ChangeSet(sandboxes=[(1, "output", "c" * 64)]))  # a later attempt's output

    assert store.sandbox(1, "input") == first
    assert store.sandbox(1, "output") == "c" * 64
    assert store.sandbox(3, "input") is None
    assert store.referenced_sandboxes() == {first, "c" * 64}


def test_an_empty_changeset_changes_nothing(store: Store) -> None:
    store.commit(ChangeSet())
    store.commit(submission(new_job(1)))
    before = snapshot(store.load())

    store.commit(ChangeSet())

    assert snapshot(store.load()) == before


def probe(target: str, time: float, status: CheckStatus = CheckStatus.OK) -> ProbeResult:
    return ProbeResult(target, TargetKind.SITE, "python", status, "fine", time, "ce1", 7)


def test_probe_results_come_back_in_time_order_per_target_and_newest_within_limit(
    store: Store,
) -> None:
    store.commit(ChangeSet(probe_results=[probe("A", 3.0), probe("B", 1.0)]))
    store.commit(ChangeSet(probe_results=[probe("A", 2.0, CheckStatus.CRITICAL), probe("A", 5.0)]))

    assert [r.time for r in store.probe_results(0.0)] == [1.0, 2.0, 3.0, 5.0]
    assert store.probe_results(2.5, "A") == [probe("A", 3.0), probe("A", 5.0)]
    assert [r.time for r in store.probe_results(0.0, "A", limit=2)] == [3.0, 5.0]
    assert store.probe_results(0.0, "C") == []


def test_statuses_downtimes_and_automatic_bans_round_trip(store: Store) -> None:
    status = StatusRecord("A", TargetKind.SITE, ResourceStatus.BANNED, "auto: x", 4.0, True)
    downtime = Downtime(1, "SE1", TargetKind.SE, 10.0, 20.0, "disk swap", True, 2.0)
    store.commit(
        ChangeSet(
            statuses={("site", "A"): status},
            downtimes={1: downtime},
            sites={"A": SiteRecord("A", True, "auto: x", 4.0, automatic=True)},
        )
    )
    cancelled = Downtime(1, "SE1", TargetKind.SE, 10.0, 20.0, "disk swap", True, 2.0, 5.0)
    store.commit(ChangeSet(downtimes={1: cancelled}))

    loaded = store.load()
    assert loaded.statuses == [status]
    assert loaded.downtimes == [cancelled]
    assert loaded.sites == [SiteRecord("A", True, "auto: x", 4.0, automatic=True)]


def full_changeset() -> ChangeSet:
    job = JobRecord(**FULL_JOB_VALUES)
    return ChangeSet(
        new_task_queues=[TaskQueueRow(7, "amélie", "atlas_prod", Requirements(cores=4))],
        new_jobs=[(job, pack({"Executable": "run.sh", "Tags": ["GPU"]}))],
        history=[HistoryEntry(42, "Received", "", "", 1.0, "JobManager")],
        sites={"A": SiteRecord("A", True, "downtime", 1.0)},
        shares={"atlas_prod": 2.0},
        usage={("atlas_prod", "amélie"): UsageRecord("atlas_prod", "amélie", 3.0, 1.0)},
        replies=[StoredReply("req-1", b"reply", 1.0)],
        pilots={
            "P.1": PilotRecord("P.1", "A", "ce1", "local", "123", "Running", credential="pilot:P.1")
        },
        pilot_jobs=[("P.1", 42)],
        pilot_outputs={"P.1": "pilot says hi"},
        next_pilot_number=2,
        sandboxes=[(42, "input", "a" * 64)],
    )


def test_committed_state_survives_close_and_reopen(
    store: Store, reopen: Callable[[], Store]
) -> None:
    store.commit(full_changeset())
    before = snapshot(store.load())

    reopened = reopen()

    assert snapshot(reopened.load()) == before
    assert reopened.description(42) == {"Executable": "run.sh", "Tags": ["GPU"]}
    assert reopened.history(42) == [HistoryEntry(42, "Received", "", "", 1.0, "JobManager")]
    assert reopened.schema_version() == SCHEMA_VERSION


def assert_failed_commit_left_nothing(
    store: Store, before: dict[str, Any], reopen: Callable[[], Store]
) -> None:
    assert snapshot(store.load()) == before
    assert store.history(42) == []
    with pytest.raises(JobNotFound):
        store.description(42)
    store.commit(submission(new_job(3)))  # the store still works
    after = snapshot(reopen().load())
    assert [job[0] for job in after["jobs"]] == [job[0] for job in before["jobs"]] + [3]
    assert (after["sites"], after["replies"]) == (before["sites"], before["replies"])


def test_a_changeset_that_fails_midway_writes_nothing(
    store: Store, reopen: Callable[[], Store]
) -> None:
    store.commit(submission(new_job(1)))
    before = snapshot(store.load())
    changes = full_changeset()  # a task queue and job 42 go in before the collision
    changes.new_jobs.append((new_job(1, owner="mallory"), pack({})))  # job 1 exists already

    with pytest.raises(StoreError):
        store.commit(changes)

    assert_failed_commit_left_nothing(store, before, reopen)


def test_a_changeset_that_fails_at_its_last_row_writes_nothing(
    store: Store, reopen: Callable[[], Store]
) -> None:
    store.commit(submission(new_job(1)))
    before = snapshot(store.load())
    changes = full_changeset()
    changes.replies.append(StoredReply("req-2", object(), 2.0))  # type: ignore[arg-type]

    with pytest.raises(StoreError):
        store.commit(changes)

    assert_failed_commit_left_nothing(store, before, reopen)


def test_a_change_to_a_job_the_store_does_not_hold_is_refused(
    store: Store, reopen: Callable[[], Store]
) -> None:
    store.commit(submission(new_job(1)))
    before = snapshot(store.load())
    changes = full_changeset()
    changes.changed_jobs[77] = new_job(77, status=JobStatus.RUNNING)

    with pytest.raises(StoreError, match="77"):
        store.commit(changes)

    assert_failed_commit_left_nothing(store, before, reopen)


def test_a_store_from_newer_code_is_refused(backend: Backend, opener: Opener) -> None:
    if not backend.durable:
        pytest.skip("the in-memory store has no stored schema")
    opener.open().commit(submission(new_job(1)))
    opener.close_all()
    backend.stamp_schema_version(opener.folder, SCHEMA_VERSION + 1)

    with pytest.raises(StoreError, match=f"schema version {SCHEMA_VERSION + 1}"):
        opener.open()


def old_database(path: Path, version: int, *rows: str) -> Path:
    """An SQLite store file at schema ``version`` (the migrations up to it), with ``rows``."""
    from dirac_like.store.sqlite import MIGRATIONS

    with sqlite3.connect(path) as db:
        for statements in MIGRATIONS[:version]:
            for statement in statements:
                db.execute(statement)
        for row in rows:
            db.execute(row)
        db.execute(f"PRAGMA user_version = {version:d}")
    db.close()
    return path


def test_a_version_1_database_is_migrated_and_keeps_its_jobs(tmp_path: Path) -> None:
    path = old_database(
        tmp_path / "old.sqlite",
        1,
        "INSERT INTO jobs VALUES (1, 'alice', 'g', 1, 1, 'Waiting', '', '', "
        "'ANY', '', '', 1, 0, 0, 0, 0, 0, 0, 0)",
        "INSERT INTO sites VALUES ('S', 1, 'old ban', 1.0)",
    )
    store = open_store(str(path))
    try:
        loaded = store.load()
        assert store.schema_version() == SCHEMA_VERSION == 11
        # schema 5: a site stored before drains and limits is neither drained nor limited
        assert loaded.sites == [
            SiteRecord("S", True, "old ban", 1.0, drained=False, max_running=-1)
        ]
        assert [job.job_id for job in loaded.jobs] == [1]
        assert loaded.pilots == [] and loaded.next_pilot_number == 1
        store.commit(ChangeSet(pilots={"P.1": PilotRecord("P.1", "A", credential="pilot:x")}))
        assert [(pilot.pilot_id, pilot.credential) for pilot in store.load().pilots] == [
            ("P.1", "pilot:x")
        ]
    finally:
        store.close()


def test_a_version_3_database_gets_pilot_credentials(tmp_path: Path) -> None:
    path = old_database(
        tmp_path / "old.sqlite",
        3,
        "INSERT INTO pilots VALUES ('P.1', 'A', 'ce', '', '', 'Running', '', 0, 0, 0, 0)",
    )
    store = open_store(str(path))
    try:
        [pilot] = store.load().pilots
        assert (pilot.pilot_id, pilot.credential) == ("P.1", "")  # not bound yet
    finally:
        store.close()


def test_a_version_6_database_gets_the_replica_catalog(tmp_path: Path) -> None:
    path = old_database(
        tmp_path / "old.sqlite", 6, "INSERT INTO sites VALUES ('S', 1, 'old ban', 1.0, 0, 0, -1)"
    )
    store = open_store(str(path))
    try:
        loaded = store.load()
        assert store.schema_version() == SCHEMA_VERSION
        assert [site.name for site in loaded.sites] == ["S"]
        assert loaded.se_status == [] and loaded.transfers == [] and loaded.rules == []
        entry = _entry("/lhcb/user/alice/f1")
        store.commit(
            ChangeSet(
                catalog_files={entry.lfn: entry},
                catalog_replicas={entry.lfn: {"CERN-DISK": "Good"}},
            )
        )
        assert store.catalog_files([entry.lfn]) == {entry.lfn: entry}
        assert store.catalog_replicas([entry.lfn]) == {entry.lfn: {"CERN-DISK": "Good"}}
    finally:
        store.close()


def accounting_record(job_id: int, attempt: int = 1, ended: float = 7200.5) -> JobAccountingRecord:
    return JobAccountingRecord(
        job_id=job_id,
        attempt=attempt,
        owner="amélie",
        group="atlas_prod",
        site="LCG.CERN.ch",
        ce="ce1",
        pilot_id="P.1",
        status="Done",
        minor_status="Execution Complete",
        exit_code=0,
        cores=4,
        cpu_seconds=350.5,
        wall_seconds=100.25,
        peak_rss_mb=512.5,
        input_bytes=10,
        output_bytes=20,
        submitted=1.0,
        started=2.0,
        ended=ended,
    )


def test_accounting_records_are_committed_with_the_final_status(
    store: Store, reopen: Callable[[], Store]
) -> None:
    changes = full_changeset()
    changes.job_accounting = [accounting_record(42), accounting_record(42, attempt=2)]
    store.commit(changes)

    reopened = reopen()
    assert reopened.job_accounting(42) == changes.job_accounting
    assert reopened.job_accounting(41) == []


def test_a_second_accounting_record_of_the_same_attempt_is_refused_whole(
    store: Store, reopen: Callable[[], Store]
) -> None:
    store.commit(submission(new_job(1)))
    store.commit(ChangeSet(job_accounting=[accounting_record(1)]))
    before = snapshot(store.load())
    changes = full_changeset()
    changes.job_accounting = [accounting_record(1, ended=9999.0)]

    with pytest.raises(StoreError):
        store.commit(changes)

    assert [record.ended for record in store.job_accounting(1)] == [7200.5]
    assert_failed_commit_left_nothing(store, before, reopen)


def test_raw_accounting_records_older_than_the_cutoff_are_forgotten(store: Store) -> None:
    store.commit(
        ChangeSet(
            job_accounting=[accounting_record(1, ended=100.0), accounting_record(2, ended=200.0)]
        )
    )

    store.commit(ChangeSet(accounting_retention=RetentionCutoffs(150.0, 0.0)))

    assert store.job_accounting(1) == []
    assert [record.job_id for record in store.job_accounting(2)] == [2]


def test_a_closed_store_refuses_work(store: Store) -> None:
    store.close()

    with pytest.raises(StoreError):
        store.commit(submission(new_job(1)))
    with pytest.raises(StoreError):
        store.load()


def test_open_store_refuses_an_unknown_synchronous_mode(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="synchronous"):
        open_store(str(tmp_path / "store.sqlite"), synchronous="sometimes")


# -- random ChangeSets against a model -------------------------------------------------------

TEXT = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=6)
INTS = st.integers(-(2**31), 2**31 - 1)
FLOATS = st.floats(allow_nan=False, allow_infinity=False)
FIELD_STRATEGIES: dict[str, st.SearchStrategy[Any]] = {
    "int": INTS,
    "str": TEXT,
    "float": FLOATS,
    "bool": st.booleans(),
    "JobStatus": st.sampled_from(JobStatus),
}
JSON_LIKE = st.recursive(
    st.none() | st.booleans() | INTS | FLOATS | TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=8,
)
NAMES = st.sampled_from(["A", "B", "C"])


@st.composite
def job_records(draw: st.DrawFn, job_id: int) -> JobRecord:
    values = {f.name: draw(FIELD_STRATEGIES[str(f.type)]) for f in fields(JobRecord)}
    return JobRecord(**{**values, "job_id": job_id})


@dataclass
class Model:
    """What a store should hold after a sequence of ChangeSets, in plain dicts."""

    jobs: dict[int, tuple[Any, ...]]
    descriptions: dict[int, dict[str, Any]]
    history: dict[int, list[HistoryEntry]]
    task_queues: dict[int, TaskQueueRow]
    sites: dict[str, SiteRecord]
    shares: dict[str, float]
    usage: dict[tuple[str, str], UsageRecord]
    replies: dict[str, StoredReply]

    def apply(self, changes: ChangeSet, descriptions: dict[int, dict[str, Any]]) -> None:
        self.task_queues.update((t.task_queue_id, t) for t in changes.new_task_queues)
        self.jobs.update((job.job_id, job_values(job)) for job, _ in changes.new_jobs)
        self.descriptions.update(descriptions)
        self.jobs.update((job.job_id, job_values(job)) for job in changes.changed_jobs.values())
        for entry in changes.history:
            self.history.setdefault(entry.job_id, []).append(entry)
        self.sites.update(changes.sites)
        self.shares.update(changes.shares)
        self.usage.update(changes.usage)
        self.replies.update((r.request_id, r) for r in changes.replies)
        cut_off = changes.forget_replies_before
        if cut_off is not None:
            self.replies = {k: r for k, r in self.replies.items() if not r.time < cut_off}

    def snapshot(self) -> dict[str, Any]:
        return {
            "jobs": [self.jobs[job_id] for job_id in sorted(self.jobs)],
            "task_queues": [self.task_queues[key] for key in sorted(self.task_queues)],
            "sites": [self.sites[key] for key in sorted(self.sites)],
            "shares": self.shares,
            "usage": [self.usage[key] for key in sorted(self.usage)],
            "replies": [self.replies[key] for key in sorted(self.replies)],
            "pilots": [],  # pilot records have their own contract tests above
            "next_pilot_number": 1,
        }


def draw_job_changes(draw: st.DrawFn, model: Model, changes: ChangeSet) -> dict[int, Any]:
    """New jobs (returning their descriptions) and changes to known or new jobs."""
    descriptions: dict[int, dict[str, Any]] = {}
    next_job = max(model.jobs, default=0) + 1
    for job_id in range(next_job, next_job + draw(st.integers(0, 3))):
        descriptions[job_id] = draw(st.dictionaries(TEXT, JSON_LIKE, max_size=3))
        changes.new_jobs.append((draw(job_records(job_id)), pack(descriptions[job_id])))
    known = sorted(model.jobs) + sorted(descriptions)
    for job_id in draw(st.lists(st.sampled_from(known), max_size=3)) if known else []:
        changes.changed_jobs[job_id] = draw(job_records(job_id))
    for _ in range(draw(st.integers(0, 3))):
        job_id = draw(st.sampled_from(known)) if known else 1
        changes.history.append(HistoryEntry(job_id, draw(TEXT), draw(TEXT), "", draw(FLOATS), "t"))
    return descriptions


def draw_other_changes(draw: st.DrawFn, model: Model, changes: ChangeSet) -> None:
    next_queue = max(model.task_queues, default=0) + 1
    for queue_id in range(next_queue, next_queue + draw(st.integers(0, 2))):
        requirements = Requirements(cores=draw(INTS), tags=tuple(draw(st.lists(TEXT, max_size=2))))
        changes.new_task_queues.append(TaskQueueRow(queue_id, draw(TEXT), draw(TEXT), requirements))
    for name in draw(st.lists(NAMES, max_size=2)):
        changes.sites[name] = SiteRecord(name, draw(st.booleans()), draw(TEXT), draw(FLOATS))
    for name in draw(st.lists(NAMES, max_size=2)):
        changes.shares[name] = draw(FLOATS)
    for key in draw(st.lists(st.tuples(NAMES, st.sampled_from(["", "u"])), max_size=2)):
        changes.usage[key] = UsageRecord(*key, draw(FLOATS), draw(FLOATS))
    for request_id in draw(st.lists(NAMES, max_size=3)):
        time = float(draw(st.integers(0, 10)))
        changes.replies.append(StoredReply(request_id, draw(st.binary(max_size=4)), time))
    if draw(st.booleans()):
        changes.forget_replies_before = float(draw(st.integers(0, 10)))


@st.composite
def changesets(draw: st.DrawFn, model: Model) -> tuple[ChangeSet, dict[int, Any]]:
    """A ChangeSet that fits the model's state, and the descriptions of its new jobs."""
    changes = ChangeSet()
    descriptions = draw_job_changes(draw, model, changes)
    draw_other_changes(draw, model, changes)
    return changes, descriptions


# PostgreSQL makes a store (a schema, migrated) in ~0.5 s on a loaded machine: fewer examples.
@pytest.mark.parametrize("backend", sorted(BACKENDS), indirect=True)
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_random_changesets_leave_the_store_equal_to_a_model(
    backend: Backend, data: st.DataObject
) -> None:
    check_random_changesets(backend, data)


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
@settings(max_examples=12, deadline=None)
@given(data=st.data())
def test_random_changesets_leave_a_postgresql_store_equal_to_a_model(
    backend: Backend, data: st.DataObject
) -> None:
    check_random_changesets(backend, data)


def check_random_changesets(backend: Backend, data: st.DataObject) -> None:
    model = Model({}, {}, {}, {}, {}, {}, {}, {})
    with tempfile.TemporaryDirectory() as folder:
        store = backend.open(Path(folder))
        try:
            for _ in range(data.draw(st.integers(1, 5), label="commits")):
                changes, descriptions = data.draw(changesets(model))
                store.commit(changes)
                model.apply(changes, descriptions)
            assert snapshot(store.load()) == model.snapshot()
            for job_id in model.jobs:
                assert store.description(job_id) == model.descriptions[job_id]
            for job_id, entries in model.history.items():
                assert store.history(job_id) == entries
        finally:
            store.close()


# -- the replica catalog, SE status, transfers ------------------------------------------------


def _entry(lfn: str, size: int = 5) -> FileEntry:
    return FileEntry(lfn, size, "062c0215", "guid-" + lfn[-2:], "alice", "physics", 10.0)


def test_catalog_files_and_replicas_round_trip_and_survive_a_reopen(
    store: Store, opener: Opener
) -> None:
    store.commit(
        ChangeSet(
            catalog_files={"/vo/a/f1": _entry("/vo/a/f1"), "/vo/a/b/f2": _entry("/vo/a/b/f2", 7)},
            catalog_replicas={"/vo/a/f1": {"A": "Good", "B": "Bad"}, "/vo/a/b/f2": {"A": "Good"}},
        )
    )
    if opener.backend.durable:
        store = opener.reopen()
    assert store.catalog_files(["/vo/a/f1", "/vo/nope"]) == {"/vo/a/f1": _entry("/vo/a/f1")}
    assert store.catalog_replicas(["/vo/a/f1"]) == {"/vo/a/f1": {"A": "Good", "B": "Bad"}}
    assert [e.lfn for e in store.catalog_folder("/vo/a", 10)] == ["/vo/a/b/f2", "/vo/a/f1"]
    assert [e.lfn for e in store.catalog_folder("/vo/a/b", 10)] == ["/vo/a/b/f2"]
    head = ("/vo/a/f1", 5, "062c0215", "guid-f1", "alice", "physics", 10.0)
    assert [tuple(row) for row in store.catalog_lookup(["/vo/a/f1", "/vo/nope"])] == [
        (*head, "A", "Good"),
        (*head, "B", "Bad"),
    ]
    assert store.catalog_space(["A", "B", "C"]) == {"A": 12, "B": 5, "C": 0}


def test_removed_files_and_replicas_are_gone_and_a_folder_is_not_a_prefix(store: Store) -> None:
    store.commit(
        ChangeSet(
            catalog_files={"/vo/a/f": _entry("/vo/a/f"), "/vo/ab/f": _entry("/vo/ab/f")},
            catalog_replicas={"/vo/a/f": {"A": "Good", "B": "Good"}},
        )
    )
    store.commit(
        ChangeSet(
            catalog_files={"/vo/a/f": None}, catalog_replicas={"/vo/a/f": {"A": None, "B": None}}
        )
    )
    assert store.catalog_files(["/vo/a/f"]) == {} and store.catalog_replicas(["/vo/a/f"]) == {}
    assert [e.lfn for e in store.catalog_folder("/vo/a", 10)] == []


def test_se_status_and_transfers_load_with_the_state(store: Store) -> None:
    transfer = TransferRecord(
        3,
        "/vo/a/f",
        "B",
        status="Assigned",
        attempt=1,
        source="A",
        agent="t1",
        tried="C",
        created=1.0,
        updated=2.0,
        deadline=60.0,
    )
    store.commit(
        ChangeSet(
            se_status={"B": SEStatusRecord("B", "Banned", "down", 5.0)}, transfers={3: transfer}
        )
    )
    loaded = store.load()
    assert loaded.se_status == [SEStatusRecord("B", "Banned", "down", 5.0)]
    (back,) = loaded.transfers
    assert back.view() == transfer.view() and (back.tried, back.deadline) == ("C", 60.0)


def test_bulk_actions_and_submissions_in_progress_load_and_are_forgotten(store: Store) -> None:
    bulk = BulkActionRecord(4, "kill", "status=Waiting", "", 3, 0, 0, 0, (), 10.0)
    submission = SubmissionRecord(
        100, "alice", "users", "alice", ('Executable = "/bin/true";', {"Executable": "x"}),
        5000, 200, 11.0,
    )  # fmt: skip
    store.commit(
        ChangeSet(
            bulk_actions={4: bulk},
            bulk_job_ids={4: [7, 2**40, 9]},
            submissions={100: submission},
        )
    )
    later = BulkActionRecord(4, "kill", "status=Waiting", "", 3, 2, 1, 1, ("job 2: gone",), 10.0)
    store.commit(ChangeSet(bulk_actions={4: later}, submissions={100: None}))
    loaded = store.load()
    assert loaded.bulk_actions == [(later, [7, 2**40, 9])]
    assert loaded.submissions == []
    store.commit(ChangeSet(bulk_actions={4: None}, submissions={100: submission}))
    loaded = store.load()
    assert loaded.bulk_actions == [] and loaded.submissions == [submission]


def test_a_version_7_database_gets_the_tables_of_work_in_progress(tmp_path: Path) -> None:
    path = old_database(
        tmp_path / "old.sqlite", 7, "INSERT INTO sites VALUES ('S', 1, 'b', 1.0, 0, 0, -1)"
    )
    store = open_store(str(path))
    try:
        loaded = store.load()
        assert store.schema_version() == SCHEMA_VERSION == 11
        assert [site.name for site in loaded.sites] == ["S"]
        assert loaded.bulk_actions == [] and loaded.submissions == []
    finally:
        store.close()


def test_a_version_8_database_gets_daily_buckets_of_its_hours_and_transfer_accounting(
    tmp_path: Path,
) -> None:
    path = old_database(
        tmp_path / "old.sqlite",
        8,
        "INSERT INTO accounting_buckets VALUES ('site', 3600.0, 3600, 'S', 1, 0, 5.0, 9.0, 9.0)",
        "INSERT INTO accounting_buckets VALUES ('site', 7200.0, 3600, 'S', 2, 1, 5.0, 9.0, 9.0)",
    )
    open_store(str(path)).close()
    with sqlite3.connect(path) as db:
        rows = db.execute(
            "SELECT start, period, jobs, failed FROM accounting_buckets ORDER BY period, start"
        ).fetchall()
        assert rows == [(3600.0, 3600, 1, 0), (7200.0, 3600, 2, 1), (0.0, 86400, 3, 1)]
        assert db.execute("SELECT count(*) FROM transfer_accounting").fetchone() == (0,)


def test_a_version_9_sqlite_database_is_at_10_without_the_pair_tables(tmp_path: Path) -> None:
    """Step 9 -> 10 is PostgreSQL's only (a pair's tables): SQLite's is empty."""
    path = old_database(
        tmp_path / "old.sqlite", 9, "INSERT INTO sites VALUES ('S', 1, 'b', 1.0, 0, 0, -1)"
    )
    store = open_store(str(path))
    try:
        assert store.schema_version() == SCHEMA_VERSION == 11
        assert [site.name for site in store.load().sites] == ["S"]
    finally:
        store.close()
    with sqlite3.connect(path) as db:
        names = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
    db.close()
    assert not {name for name in names if name.startswith("ha_")}


def test_jobs_load_the_same_after_a_job_snapshot_and_later_changes(
    store: Store, reopen: Callable[[], Store]
) -> None:
    """A store that keeps a job snapshot (SQLite) loads from it the jobs as committed, those
    changed after it too; one that keeps none (PostgreSQL) loads them from its table."""
    first = JobRecord(**FULL_JOB_VALUES)
    second = new_job(50, status=JobStatus.WAITING)
    task_queues = [TaskQueueRow(n, "alice", "lhcb_user", Requirements()) for n in (1, 7)]
    store.commit(
        ChangeSet(new_task_queues=task_queues, new_jobs=submission(first, second).new_jobs)
    )
    store.save_job_snapshot([second, first])  # in any order
    changed = JobRecord(**{**FULL_JOB_VALUES, "status": JobStatus.RUNNING, "attempt": 4})
    third = new_job(60, status=JobStatus.WAITING, priority=9)
    store.commit(  # as the service writes them: each job's change with its history row
        ChangeSet(
            changed_jobs={42: changed},
            new_jobs=submission(third).new_jobs,
            history=[
                HistoryEntry(42, "Running", "", "", 2.0, "JobAgent"),
                HistoryEntry(60, "Waiting", "", "", 2.0, "JobScheduling"),
            ],
        )
    )
    expected = [job_values(job) for job in (changed, second, third)]
    assert snapshot(store.load())["jobs"] == expected
    assert snapshot(reopen().load())["jobs"] == expected
