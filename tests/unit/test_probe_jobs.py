"""Probe jobs (pure): the job a CE gets, how a probe in flight is judged, what its output and
its fate become; the worker-node checks' output format; the file SE test."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from dirac_like.agents.probe_jobs import (
    Fate,
    InFlight,
    judge,
    probe_description,
    results_of_fate,
    results_of_output,
)
from dirac_like.agents.storage_probe import FileStorage, probe_storage
from dirac_like.description import parse_descriptions
from dirac_like.monitoring import CheckStatus
from dirac_like.probe import MARKER, main, parse_output
from dirac_like.sites import CEConfig

CE = CEConfig("ce1", "local", cores_per_slot=4, memory_mb=2000, required_tags=("gpu",))
PROBE = InFlight("S", "ce1", 7, submitted=100.0)


def test_the_probe_job_targets_its_ce_and_is_a_valid_description() -> None:
    description = probe_description("S", CE, {"SE1": "/data/se1"}, 20, ("--hang", "1"))
    (parsed,) = parse_descriptions(description)
    assert parsed.grid_ces == ("ce1",) and parsed.sites == ("S",)
    assert parsed.priority == 10 and parsed.tags == ("gpu",)
    shell = shlex.split(description["Arguments"])[1]
    assert "--cores 4 --memory 2000 --min-scratch-mb 20 --se SE1=/data/se1 --hang 1" in shell


@pytest.mark.parametrize(
    ("status", "now", "started", "fate"),
    [
        ("Waiting", 105.0, 0.0, Fate.WAIT),
        ("Waiting", 111.0, 0.0, Fate.NOT_STARTED),
        ("Matched", 111.0, 0.0, Fate.NOT_STARTED),
        ("Running", 200.0, 195.0, Fate.WAIT),
        ("Running", 200.0, 150.0, Fate.TIMED_OUT),
        ("Stalled", 200.0, 150.0, Fate.TIMED_OUT),
        ("Done", 500.0, 0.0, Fate.COLLECT),
        ("Failed", 500.0, 0.0, Fate.FAILED),
        ("Killed", 500.0, 0.0, Fate.LOST),
        (None, 500.0, 0.0, Fate.LOST),
    ],
)
def test_a_probe_in_flight_is_judged_by_its_status_and_the_clock(
    status: str | None, now: float, started: float, fate: Fate
) -> None:
    probe = InFlight("S", "ce1", 7, submitted=100.0, started=started)
    assert judge(probe, status, now, start_timeout=10.0, run_timeout=20.0) is fate


def test_the_fates_without_output_are_critical_except_a_lost_probe() -> None:
    def statuses(fate: Fate) -> list[tuple[str, CheckStatus]]:
        return [(r.check, r.status) for r in results_of_fate(PROBE, fate, "boom", (10, 20), 1)]

    assert statuses(Fate.NOT_STARTED) == [("started", CheckStatus.CRITICAL)]
    assert statuses(Fate.TIMED_OUT) == [
        ("started", CheckStatus.OK),
        ("finished", CheckStatus.CRITICAL),
    ]
    assert statuses(Fate.FAILED)[1] == ("finished", CheckStatus.CRITICAL)
    assert statuses(Fate.LOST) == [("started", CheckStatus.UNKNOWN)]


def test_a_probe_output_becomes_results_and_garbage_is_critical() -> None:
    text = (
        "noise\n" + MARKER + '{"checks": [{"check": "cpu", "status": "WARNING", '
        '"message": "2 cores"}]}\n'
    )
    got = results_of_output(PROBE, text, 5.0)
    assert [(r.check, r.status, r.job_id) for r in got] == [
        ("started", CheckStatus.OK, 7),
        ("cpu", CheckStatus.WARNING, 7),
    ]
    for garbage in (
        "",
        MARKER + "{",
        MARKER + '{"checks": [{"check": "x"}]}',
        MARKER + '{"checks": [{"check": "x", "status": "FINE", "message": ""}]}',
    ):
        bad = results_of_output(PROBE, garbage, 5.0)
        assert (bad[-1].check, bad[-1].status) == ("output", CheckStatus.CRITICAL)


def test_the_worker_node_checks_print_one_parsable_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["--cores", "1", "--se", f"SE1={tmp_path}", "--se", "SE2=/nonexistent"]) == 0
    checks = {c["check"]: c for c in parse_output(capsys.readouterr().out)}
    assert checks["scratch"]["status"] == "OK"
    assert checks["se:SE1"]["status"] == "OK"
    assert checks["se:SE2"]["status"] == "CRITICAL"
    assert not list(tmp_path.iterdir())  # the scratch test file is gone


def test_a_file_se_is_written_read_checksummed_and_cleaned(tmp_path: Path) -> None:
    results = probe_storage(FileStorage("SE1", tmp_path), 1.0, "t1")
    assert [(r.check, r.status) for r in results] == [
        ("se-write", CheckStatus.OK),
        ("se-read", CheckStatus.OK),
        ("se-checksum", CheckStatus.OK),
        ("se-delete", CheckStatus.OK),
    ]
    assert not list(tmp_path.rglob("probe-*"))


def test_an_unwritable_se_fails_at_the_write_and_skips_the_rest(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    results = probe_storage(FileStorage("SE1", tmp_path / "file"), 1.0, "t1")
    assert [r.status for r in results] == [CheckStatus.CRITICAL] + [CheckStatus.UNKNOWN] * 3
    assert results[0].message.startswith(("NotADirectoryError", "FileExistsError"))
