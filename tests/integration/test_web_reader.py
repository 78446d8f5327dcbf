"""The dashboard's reader on a real SQLite store: probe runs summed up by SQLite, usage samples."""

from __future__ import annotations

from pathlib import Path

from dirac_like.model import ChangeSet
from dirac_like.monitoring import CheckStatus, ProbeResult, TargetKind
from dirac_like.services.web.reader import StoreReader
from dirac_like.store.sqlite import SqliteStore

S = TargetKind.SITE


def test_each_probe_run_is_its_worst_check_and_health_findings_are_left_out(
    tmp_path: Path,
) -> None:
    def check(name: str, status: CheckStatus, time: float, ce: str = "ce1") -> ProbeResult:
        return ProbeResult("LCG.A.org", S, name, status, "", time, ce, int(time))

    results = [
        check("started", CheckStatus.OK, 10.0),
        check("scratch", CheckStatus.CRITICAL, 10.0),
        check("cpu", CheckStatus.WARNING, 10.0),
        check("started", CheckStatus.OK, 20.0),
        check("memory", CheckStatus.WARNING, 20.0),
        check("started", CheckStatus.UNKNOWN, 30.0, ce="ce2"),
        check("health:pilots", CheckStatus.WARNING, 40.0),
        check("started", CheckStatus.OK, 1.0),  # before the range
    ]
    store = SqliteStore(tmp_path / "jobs.sqlite")
    try:
        store.commit(ChangeSet(probe_results=results, usage_samples=[(7, 1, 5.0, 1.5, 100.0)]))
    finally:
        store.close()
    reader = StoreReader(tmp_path / "jobs.sqlite")
    runs = reader.probe_outcomes(since=5.0)
    assert [(run.time, run.ce, run.status) for run in runs] == [
        (10.0, "ce1", CheckStatus.CRITICAL),
        (20.0, "ce1", CheckStatus.WARNING),
        (30.0, "ce2", CheckStatus.UNKNOWN),
    ]
    assert [run.time for run in reader.probe_outcomes(since=5.0, limit=2)] == [20.0, 30.0]
    assert reader.usage_samples(7, 1) == [(5.0, 1.5, 100.0)]
    assert reader.usage_samples(7, 2) == []
