"""One file of job records per pilot turn (issue 15): what a successor needs to report a job
whose payload ended under a pilot that died, written once for the jobs a turn started together
instead of a ``job.json`` in each job's folder (which older pilots wrote: still read)."""

from __future__ import annotations

import json
from pathlib import Path

from dirac_like.agents.job_folders import remove
from dirac_like.agents.outbox import ENDED_MARK, JOB_FILE, JOBS_PREFIX, JobRecords, ended_report


def record(job_id: int) -> dict[str, object]:
    return {"job_id": job_id, "attempt": 1, "pilot_id": "p", "description": {"Executable": "x"}}


def folders(workdir: Path, *job_ids: int) -> list[Path]:
    made = []
    for job_id in job_ids:
        folder = workdir / f"job_{job_id}_1"
        folder.mkdir()
        made.append(folder)
    return made


def test_a_turns_jobs_are_kept_in_one_file_removed_once_every_job_is_over(tmp_path: Path) -> None:
    records = JobRecords(tmp_path)
    one, two = folders(tmp_path, 1, 2)
    records.keep({one.name: record(1), two.name: record(2)})
    [kept] = list(tmp_path.glob(f"{JOBS_PREFIX}*.json"))
    assert set(json.loads(kept.read_text())) == {one.name, two.name}
    assert records.done(one) is None  # job 2 still needs it
    assert records.done(two) == kept  # the caller removes it (after the folder)
    assert records.done(two) is None  # told twice: nothing more


def test_a_successor_reports_an_ended_job_from_its_turns_record(tmp_path: Path) -> None:
    [folder] = folders(tmp_path, 5)
    JobRecords(tmp_path).keep({folder.name: record(5)})
    (folder / ENDED_MARK).write_text("exit 3\n")
    found = JobRecords(tmp_path).read()  # the successor's
    report = ended_report(folder, found.get(folder.name))
    assert report is not None
    assert (report.job_id, report.attempt, report.status) == (5, 1, "Failed")
    assert report.minor_status == "Application exited with code 3"
    assert report.description == {"Executable": "x"}


def test_a_folder_an_older_pilot_made_is_still_reported_from_its_job_json(tmp_path: Path) -> None:
    [folder] = folders(tmp_path, 6)
    (folder / JOB_FILE).write_text(json.dumps(record(6)))
    (folder / ENDED_MARK).write_text("exit 0\n")
    report = ended_report(folder, JobRecords(tmp_path).read().get(folder.name))
    assert report is not None and (report.job_id, report.status) == (6, "Done")


def test_no_record_no_report(tmp_path: Path) -> None:
    [folder] = folders(tmp_path, 7)
    (folder / ENDED_MARK).write_text("exit 0\n")
    assert ended_report(folder, JobRecords(tmp_path).read().get(folder.name)) is None


def test_a_predecessors_file_goes_once_none_of_its_folders_is_left(tmp_path: Path) -> None:
    one, two = folders(tmp_path, 1, 2)
    JobRecords(tmp_path).keep({one.name: record(1), two.name: record(2)})  # a predecessor's
    (tmp_path / f"{JOBS_PREFIX}cut-short.tmp").write_text("{")
    successor = JobRecords(tmp_path)
    remove(one)
    successor.sweep()
    assert len(list(tmp_path.glob(f"{JOBS_PREFIX}*.json"))) == 1  # job 2's folder is there
    assert not list(tmp_path.glob(f"{JOBS_PREFIX}*.tmp"))
    remove(two)
    successor.sweep()
    assert not list(tmp_path.glob(f"{JOBS_PREFIX}*"))


def test_a_files_own_pilot_keeps_it_until_done_even_with_its_folders_gone(tmp_path: Path) -> None:
    records = JobRecords(tmp_path)
    [folder] = folders(tmp_path, 1)
    records.keep({folder.name: record(1)})
    remove(folder)
    records.sweep()  # its own: it goes by done() (after the folder)
    assert len(list(tmp_path.glob(f"{JOBS_PREFIX}*.json"))) == 1


def test_a_folder_is_removed_files_one_by_one_or_whole_with_a_folder_in_it(tmp_path: Path) -> None:
    flat, deep = folders(tmp_path, 1, 2)
    for name in ("std.out", "std.err", ENDED_MARK):
        (flat / name).write_text("x")
        (deep / name).write_text("x")
    (deep / "sub" / "subsub").mkdir(parents=True)
    (deep / "sub" / "subsub" / "f").write_text("x")
    (deep / "link").symlink_to(flat)
    remove(deep)
    assert flat.is_dir() and (flat / "std.out").exists()  # a link into it was not followed
    remove(flat)
    remove(tmp_path / "never-there")
    assert not flat.exists() and not deep.exists()
