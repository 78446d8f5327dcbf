"""Small output sandboxes inlined in the final report (issue 15): the pilot's decision and
packing, the requests it makes of them, its outbox, its fall-back to an upload when the service
will not take one inlined; the service's checks (an inlined output refused leaves its state
unchanged) and its old-pilot/new-pilot answers."""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from test_central_state import HELLO, JOBS, Grid

from dirac_like.agents.job_sandboxes import SandboxLimits, inlines, settled_here, upload_output
from dirac_like.agents.outbox import Outbox, Report
from dirac_like.agents.report_sender import ReportSender, _status_args, requests_of
from dirac_like.config import Config, ConfigError, SandboxesConfig, validate
from dirac_like.description import JobDescription, description_from_stored
from dirac_like.errors import InvalidArgument, ProtocolError, StoreError
from dirac_like.protocol import (
    INLINE_REVISION,
    MAX_INLINE_BYTES_PER_REQUEST,
    JobUsage,
    Op,
    PilotResources,
    PilotTurnArgs,
    PilotTurnReply,
    ReportOutcome,
    UpdateStatusArgs,
    parse_args,
    to_wire,
)
from dirac_like.sandbox import SandboxError, SandboxStore, checksum, pack

SITE = "LCG.CERN.cern"
LIMITS = SandboxLimits()


# -- the pilot: decide, pack --------------------------------------------------------------------


def test_an_output_goes_inline_only_when_both_sides_take_one_that_big() -> None:
    assert inlines(100, 64 * 1024, LIMITS)
    assert inlines(64 * 1024, 64 * 1024, LIMITS)
    assert not inlines(64 * 1024 + 1, 1 << 20, LIMITS)  # over the pilot's own bound
    assert not inlines(100, 0, LIMITS)  # an older service (or one that takes none)
    assert not inlines(100, 99, LIMITS)  # over the service's bound
    assert not inlines(100, 1 << 20, SandboxLimits(max_inline_bytes=0))  # the pilot: never
    assert not inlines(0, 1 << 20, LIMITS)


class CountingClient:
    """Counts uploads; any other call would be an error."""

    def __init__(self) -> None:
        self.uploads: list[bytes] = []

    def upload_sandbox(self, data: bytes, kind: str = "input") -> str:
        assert kind == "output"
        self.uploads.append(data)
        return checksum(data)


def job_folder(tmp_path: Path, stdout: bytes) -> tuple[JobDescription, Path]:
    (tmp_path / "std.out").write_bytes(stdout)
    description = description_from_stored({"Executable": "/bin/echo", "StdOutput": "std.out"})
    return description, tmp_path


def test_a_small_output_is_packed_for_the_report_and_not_uploaded(tmp_path: Path) -> None:
    client = CountingClient()
    description, workdir = job_folder(tmp_path, b"hello\n")
    output = upload_output(client, description, workdir, LIMITS, 64 * 1024)  # type: ignore[arg-type]
    assert client.uploads == []
    assert output.inline == pack([Path("std.out")], workdir)
    assert output.sha256 == checksum(output.inline) and output.size == len(output.inline)


def test_an_output_too_big_to_inline_or_to_an_older_service_is_uploaded(tmp_path: Path) -> None:
    client = CountingClient()
    description, workdir = job_folder(tmp_path, os.urandom(5000))  # incompressible
    big = upload_output(client, description, workdir, LIMITS, 4096)  # type: ignore[arg-type]
    older = upload_output(client, description, workdir, LIMITS)  # type: ignore[arg-type]
    assert big.inline == older.inline == b""
    assert len(client.uploads) == 2 and big.sha256 == older.sha256 == checksum(client.uploads[0])


# -- the pilot: requests, outbox, fall-back -----------------------------------------------------


def inline_report(job_id: int, data: bytes, **fields: Any) -> Report:
    return Report.new(
        job_id=job_id,
        attempt=1,
        pilot_id="p",
        status="Done",
        minor_status="Execution Complete",
        output_sandbox=checksum(data),
        output_inline=Report.encoded(data),
        usage={"exit_code": 0},
        **fields,
    )


def test_requests_hold_at_most_a_mebibyte_of_inlined_outputs() -> None:
    big = os.urandom(60 * 1024)
    made = [inline_report(n, big) for n in range(40)]  # 2.3 MiB inlined
    chunks = list(requests_of(made))
    assert [len(chunk) for chunk in chunks] == [17, 17, 6]
    assert [r.job_id for chunk in chunks for r in chunk] == list(range(40))
    for chunk in chunks:
        assert sum(len(r.inline_bytes()) for r in chunk) <= MAX_INLINE_BYTES_PER_REQUEST
    plain = [Report.new(job_id=n, attempt=1, pilot_id="p", status="Done", minor_status="")
             for n in range(300)]  # fmt: skip
    assert [len(chunk) for chunk in requests_of(plain)] == [256, 44]


def test_an_inlined_output_is_kept_in_the_outbox_and_read_back_with_its_request_id(
    tmp_path: Path,
) -> None:
    data = os.urandom(64 * 1024)
    made = [inline_report(n, data) for n in range(16)]  # one turn of a 16-core pilot
    Outbox(tmp_path).put_many(made)
    [turn_file] = (tmp_path / "outbox").glob("*.json")
    assert turn_file.stat().st_size < 16 * 90 * 1024  # base64: a third more, and no other copy

    again = Outbox(tmp_path).pending()  # a pilot restarted on the workdir
    assert [(r.request_id, r.inline_bytes()) for r in again] == [(r.request_id, data) for r in made]
    assert [_wire(r).output_data for r in again] == [data] * 16


def _wire(report: Report) -> UpdateStatusArgs:
    return _status_args(report)  # what the sender puts on the wire


@dataclass(frozen=True)
class OldUpdateStatusArgs:  # the service's report before inlined outputs
    job_id: int
    attempt: int
    pilot_id: str
    status: str
    minor_status: str = ""
    application_status: str = ""
    output_sandbox: str = ""
    usage: JobUsage | None = None


class OldService:
    """Reads every report with the older service's checker (it refuses the unknown key)."""

    def __init__(self) -> None:
        self.taken: list[UpdateStatusArgs] = []

    def update_statuses(
        self, pilot_id: str, reports: list[UpdateStatusArgs], request_id: str = ""
    ) -> list[ReportOutcome]:
        for report in reports:
            parse_args(OldUpdateStatusArgs, to_wire(report))
        self.taken += reports
        return [ReportOutcome([]) for _ in reports]

    def update_status(
        self,
        job_id: int,
        attempt: int,
        pilot_id: str,
        status: str,
        minor_status: str = "",
        application_status: str = "",
        output_sandbox: str = "",
        usage: JobUsage | None = None,
        request_id: str = "",
        output_data: bytes = b"",
    ) -> list[Any]:
        report = UpdateStatusArgs(
            job_id, attempt, pilot_id, status, minor_status, application_status,
            output_sandbox, usage, output_data,
        )  # fmt: skip
        parse_args(OldUpdateStatusArgs, to_wire(report))
        self.taken.append(report)
        return []


def test_a_report_an_older_service_refuses_for_its_inlined_output_goes_back_to_be_uploaded(
    tmp_path: Path,
) -> None:
    outbox, answered = Outbox(tmp_path), []
    data = b"packed output"
    plain = Report.new(job_id=2, attempt=1, pilot_id="p", status="Done", minor_status="")
    refused = inline_report(1, data)
    outbox.put_many([refused, plain])
    service = OldService()
    sender = ReportSender(lambda: service, outbox, "p", lambda r: answered.append(r.job_id))  # type: ignore[arg-type, return-value]

    assert sender.send([refused, plain])  # refused together, then one by one

    assert [r.job_id for r in service.taken] == [2] and answered == [2]
    [kept] = outbox.pending()
    assert kept.job_id == 1 and kept.request_id != refused.request_id
    assert kept.output_pending and kept.output_sandbox == "" and kept.inline_bytes() == data
    uploaded = outbox.uploaded(kept, checksum(data), "")  # what the pilot's flush does next
    assert uploaded.output_inline == "" and uploaded.output_sandbox == checksum(data)
    assert _wire(uploaded).output_data == b""
    parse_args(OldUpdateStatusArgs, to_wire(_wire(uploaded)))  # the older service reads it


def test_a_report_without_inlined_output_reads_as_before() -> None:
    plain = Report.new(job_id=1, attempt=1, pilot_id="p", status="Done", minor_status="")
    assert "output_data" not in to_wire(_wire(plain))
    with pytest.raises(ProtocolError, match="output_data"):  # why an older service needs that
        parse_args(OldUpdateStatusArgs, to_wire(_wire(inline_report(1, b"x"))))


# -- the service --------------------------------------------------------------------------------


@pytest.fixture
def grid(tmp_path: Path) -> Grid:
    made = Grid(Config(jobs=JOBS))
    made.state.sandboxes = SandboxStore(tmp_path / "sandboxes", 1 << 26)
    return made


def matched(grid: Grid, revision: int = INLINE_REVISION) -> dict[str, Any]:
    grid.submit(HELLO)
    reply = grid.call(Op.REQUEST_JOB, pilot_id="p1", resources={"site": SITE}, revision=revision)
    job = reply["job"]
    grid.call(
        Op.UPDATE_STATUS,
        job_id=job["job_id"],
        attempt=job["attempt"],
        pilot_id="p1",
        status="Running",
    )
    return dict(job)


def final(grid: Grid, job: dict[str, Any], data: bytes, sha256: str = "") -> Any:
    return grid.call(
        Op.UPDATE_STATUS,
        job_id=job["job_id"],
        attempt=job["attempt"],
        pilot_id="p1",
        status="Done",
        output_sandbox=sha256 or checksum(data),
        output_data=data,
    )


def test_the_service_tells_a_new_pilot_its_bound_and_an_old_one_nothing(grid: Grid) -> None:
    assert matched(grid)["inline_output_bytes"] == 64 * 1024
    assert "inline_output_bytes" not in matched(grid, revision=1)  # its checker refuses it
    assert "inline_output_bytes" not in matched(Grid(Config(jobs=JOBS)))  # keeps no sandboxes


def test_an_inlined_output_is_stored_as_an_upload_and_is_the_jobs_output(grid: Grid) -> None:
    job = matched(grid)
    data = b"\x1f\x8b packed bytes"
    final(grid, job, data)
    reply = grid.call(Op.JOB_OUTPUT, job_id=job["job_id"])
    assert reply["sha256"] == checksum(data) and reply["status"] == "Done"
    assert grid.state.sandboxes.get(checksum(data)) == data  # type: ignore[union-attr]
    assert grid.state.sandboxes.granted(checksum(data), "alice")  # type: ignore[union-attr]
    final(grid, job, data)  # the same report again (a repeat after a lost answer): a no-op
    assert grid.status(job["job_id"]) == "Done"


@pytest.mark.parametrize(
    ("data", "sha256", "refusal"),
    [
        (b"x" * (64 * 1024 + 1), "", "size must be 1 to 65536"),
        (b"the bytes", checksum(b"other bytes"), "not the"),
        (b"the bytes", "not-a-checksum", "not the 'not-a-checksum'"),
    ],
    ids=["too big", "bad checksum", "not a checksum"],
)
def test_a_refused_inlined_output_leaves_the_job_and_the_store_unchanged(
    grid: Grid, data: bytes, sha256: str, refusal: str
) -> None:
    job = matched(grid)
    before = grid.snapshot()
    with pytest.raises(SandboxError, match=refusal):
        final(grid, job, data, sha256)
    assert grid.snapshot() == before and grid.status(job["job_id"]) == "Running"
    assert not grid.state.sandboxes.has(checksum(data))  # type: ignore[union-attr]
    assert list(grid.state.sandboxes.root.glob("*/*")) == []  # type: ignore[union-attr]


def test_inlined_bytes_without_a_checksum_or_on_a_handback_are_refused(grid: Grid) -> None:
    job = matched(grid)
    before = grid.snapshot()
    for status in ("Done", "Rescheduled"):
        with pytest.raises(InvalidArgument, match="comes with its sha256"):
            grid.call(
                Op.UPDATE_STATUS,
                job_id=job["job_id"],
                attempt=job["attempt"],
                pilot_id="p1",
                status=status,
                output_data=b"data",
            )
    assert grid.snapshot() == before


def test_a_request_over_the_inline_budget_is_refused_whole(grid: Grid) -> None:
    job = matched(grid)
    data = os.urandom(60 * 1024)
    report = {
        "job_id": job["job_id"],
        "attempt": job["attempt"],
        "pilot_id": "p1",
        "status": "Done",
        "output_sandbox": checksum(data),
        "output_data": data,
    }
    with pytest.raises(InvalidArgument, match="bytes of output sandboxes inlined"):
        grid.call(Op.UPDATE_STATUSES, pilot_id="p1", reports=[report] * 18)
    assert grid.status(job["job_id"]) == "Running"


def test_an_unwritable_store_is_a_retryable_refusal_that_applies_nothing(
    grid: Grid, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = matched(grid)

    def full(*args: Any, **kwargs: Any) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(grid.state.sandboxes, "write_chunk", full)
    with pytest.raises(StoreError, match="No space left") as refused:
        final(grid, job, b"data")
    assert refused.value.retryable and grid.status(job["job_id"]) == "Running"


def test_the_inline_bound_is_checked_in_the_config() -> None:
    with pytest.raises(ConfigError, match="max_inline_output_bytes"):
        validate(Config(sandboxes=SandboxesConfig(max_inline_output_bytes=2 << 20)))
    with pytest.raises(ConfigError, match="max_inline_output_bytes"):
        validate(Config(sandboxes=SandboxesConfig(max_inline_output_bytes=-1)))


def test_base64_in_the_outbox_is_what_the_report_decodes() -> None:
    data = os.urandom(100)
    assert Report.encoded(data) == base64.b64encode(data).decode()
    assert Report.encoded(b"") == ""


def test_a_pilot_turn_carries_at_most_a_mebibyte_of_inlined_outputs(tmp_path: Path) -> None:
    """The turn takes the first request's worth of reports; the rest are posted apart."""

    class Client:
        def __init__(self) -> None:
            self.turns: list[PilotTurnArgs] = []
            self.posted: list[list[int]] = []

        def pilot_turn(self, args: PilotTurnArgs, request_id: str) -> PilotTurnReply:
            self.turns.append(args)
            return PilotTurnReply([ReportOutcome([]) for _ in args.reports], [], "none", [])

        def post(self, op: str, args: Any, request_id: str) -> bool:
            self.posted.append([report.job_id for report in args.reports])
            return True

    outbox, client = Outbox(tmp_path), Client()
    big = os.urandom(60 * 1024)
    made = [outbox.put(inline_report(n, big)) for n in range(40)]  # 2.3 MiB inlined
    send = ReportSender(lambda: client, outbox, "p", lambda report: None)  # type: ignore[arg-type, return-value]
    send.turn(made, PilotResources(site="S", cores=1), 1, 0.0)
    [args] = client.turns
    assert [report.job_id for report in args.reports] == list(range(17))
    assert sum(len(report.output_data) for report in args.reports) <= MAX_INLINE_BYTES_PER_REQUEST
    assert client.posted == [list(range(17, 34)), list(range(34, 40))]


def test_the_loop_packs_a_small_output_itself_and_leaves_the_rest_to_a_worker(
    tmp_path: Path,
) -> None:
    """settled_here: no client, so only what surely fits (the worker uploads the rest)."""
    (tmp_path / "small").mkdir()
    description, workdir = job_folder(tmp_path / "small", b"hello\n")
    output = settled_here(description, workdir, LIMITS, 64 * 1024)
    assert output is not None and output.inline == pack([Path("std.out")], workdir)
    assert output.sha256 == checksum(output.inline)
    assert settled_here(description, workdir, LIMITS, 0) is None  # an older service
    assert settled_here(description, workdir, SandboxLimits(max_inline_bytes=0), 1 << 16) is None
    (tmp_path / "big").mkdir()
    description, workdir = job_folder(tmp_path / "big", os.urandom(5000))
    assert settled_here(description, workdir, LIMITS, 4096) is None  # over the bound: upload
