"""The slurm fabric's and the batch environment's decisions, without Slurm: sbatch argv, state
mapping, parsing squeue / scontrol / jobcomp / sacct output, time left, the bootstrap table."""

from __future__ import annotations

import dataclasses
import re
import shlex
import subprocess
from datetime import datetime
from pathlib import Path

import pytest

from dirac_like.agents import batch_env
from dirac_like.agents.batch_env import (
    BOOTSTRAP_EXIT_REASONS,
    BOOTSTRAP_SCRIPT,
    bootstrap_command,
    bootstrap_reason,
    effective_time_left,
    end_time_from_scontrol,
    parse_slurm_timestamp,
    time_left_from_batch,
)
from dirac_like.agents.fabrics import PilotRequest, PilotState
from dirac_like.agents.fabrics.slurm import (
    SlurmJob,
    SlurmSettings,
    batch_script,
    describe,
    exit_status,
    output_text,
    parse_config,
    parse_exit_code,
    parse_job_id,
    parse_jobcomp,
    parse_sacct,
    parse_squeue,
    pilot_state,
    sbatch_argv,
    slurm_message,
    slurm_time,
)

REPO = Path(__file__).resolve().parents[2]
BOOTSTRAP_SH = REPO / "scripts" / "pilot-bootstrap.sh"


def request(**changes: object) -> PilotRequest:
    base = PilotRequest(
        "Site.ce.7",
        ["python3", "-m", "dirac_like", "pilot", "--x", "a b"],
        env={"A": "1"},
        cores=4,
        memory_mb=0,
        wall_seconds=3600,
        workdir=Path("/work/p7"),
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


# -- sbatch ------------------------------------------------------------------------------------


def test_sbatch_argv_asks_for_the_requested_resources() -> None:
    argv = sbatch_argv(request(memory_mb=8000), SlurmSettings(Path("/out"), partition="grid"))
    assert argv[0] == "sbatch"
    assert "--parsable" in argv
    for wanted in (
        "--job-name=Site.ce.7",
        "--output=/out/%j.out",
        "--error=/out/%j.err",
        "--chdir=/work/p7",
        "--nodes=1",
        "--ntasks=1",
        "--cpus-per-task=4",
        "--mem=8000M",
        "--time=0-01:00:00",
        "--partition=grid",
        "--export=ALL",
        "--no-requeue",
    ):
        assert wanted in argv


def test_sbatch_argv_leaves_out_what_is_not_asked() -> None:
    argv = sbatch_argv(request(), SlurmSettings(Path("/out")))
    assert not any(arg.startswith(("--mem", "--partition")) for arg in argv)


def test_sbatch_argv_makes_relative_paths_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    argv = sbatch_argv(request(workdir=Path("w")), SlurmSettings(Path("out")))
    assert f"--chdir={tmp_path / 'w'}" in argv
    assert f"--output={tmp_path / 'out' / '%j.out'}" in argv


def test_sbatch_argv_adds_the_site_options_and_command_path() -> None:
    settings = SlurmSettings(Path("/out"), sbatch_args=("--account=grid", "--qos=pilot"))
    argv = sbatch_argv(request(), settings, "/opt/slurm/bin/sbatch")
    assert argv[0] == "/opt/slurm/bin/sbatch"
    assert argv[-2:] == ["--account=grid", "--qos=pilot"]


def test_request_queue_overrides_the_fabric_partition() -> None:
    @dataclasses.dataclass(frozen=True)
    class QueuedRequest(PilotRequest):  # the field proposed for PilotRequest
        queue: str = ""

    queued = QueuedRequest("p", ["x"], queue="long")
    assert "--partition=long" in sbatch_argv(queued, SlurmSettings(Path("/o"), partition="grid"))


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (1, "0-00:00:01"),
        (59, "0-00:00:59"),
        (60, "0-00:01:00"),
        (3661, "0-01:01:01"),
        (86400, "1-00:00:00"),
        (172800 + 3600 + 5, "2-01:00:05"),
    ],
)
def test_slurm_time(seconds: int, text: str) -> None:
    assert slurm_time(seconds) == text


@pytest.mark.parametrize("seconds", [0, -5])
def test_slurm_time_refuses_no_time(seconds: int) -> None:
    with pytest.raises(ValueError, match="at least 1 second"):
        slurm_time(seconds)


def test_batch_script_execs_the_command_quoted() -> None:
    script = batch_script(["/usr/bin/python3", "-c", "print('a b'); x=$HOME"])
    lines = script.splitlines()
    assert lines[0] == "#!/bin/sh"
    assert lines[1].startswith("exec ")
    assert shlex.split(lines[1])[1:] == ["/usr/bin/python3", "-c", "print('a b'); x=$HOME"]


def test_batch_script_runs_in_sh(tmp_path: Path) -> None:
    path = tmp_path / "job.sh"
    path.write_text(batch_script(["printf", "%s|", "a b", "$HOME", "it's"]))
    done = subprocess.run(["sh", str(path)], capture_output=True, text=True, check=True)
    assert done.stdout == "a b|$HOME|it's|"


@pytest.mark.parametrize(("stdout", "job_id"), [("42\n", "42"), ("42;cluster\n", "42")])
def test_parse_job_id(stdout: str, job_id: str) -> None:
    assert parse_job_id(stdout) == job_id


@pytest.mark.parametrize("stdout", ["", "Submitted batch job 42", "abc;x"])
def test_parse_job_id_refuses_other_output(stdout: str) -> None:
    with pytest.raises(ValueError, match="no job id"):
        parse_job_id(stdout)


def test_slurm_message_keeps_slurms_words_on_one_line() -> None:
    stderr = (
        "sbatch: error: invalid partition specified: nosuch\n"
        "sbatch: error: Batch job submission failed: Invalid partition name specified\n"
    )
    assert slurm_message(stderr) == (
        "invalid partition specified: nosuch; Batch job submission "
        "failed: Invalid partition name specified"
    )
    assert slurm_message("") == "no message"
    assert slurm_message("squeue: fatal: Could not establish a configuration source") == (
        "Could not establish a configuration source"
    )


# -- states ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("slurm", "pilot"),
    [
        ("PENDING", PilotState.WAITING),
        ("CONFIGURING", PilotState.WAITING),
        ("REQUEUED", PilotState.WAITING),
        ("RUNNING", PilotState.RUNNING),
        ("COMPLETING", PilotState.RUNNING),
        ("SUSPENDED", PilotState.RUNNING),
        ("COMPLETED", PilotState.DONE),
        ("FAILED", PilotState.FAILED),
        ("TIMEOUT", PilotState.FAILED),
        ("NODE_FAIL", PilotState.FAILED),
        ("OUT_OF_MEMORY", PilotState.FAILED),
        ("BOOT_FAIL", PilotState.FAILED),
        ("PREEMPTED", PilotState.FAILED),
        ("CANCELLED", PilotState.ABORTED),
        ("CANCELLED by 0", PilotState.ABORTED),
        ("REVOKED", PilotState.ABORTED),
        ("COMPLETED+", PilotState.DONE),
        ("NEW_STATE_FROM_SLURM_30", PilotState.ABORTED),
        ("", PilotState.ABORTED),
    ],
)
def test_pilot_state(slurm: str, pilot: PilotState) -> None:
    assert pilot_state(slurm) is pilot


@pytest.mark.parametrize(
    ("state", "reason", "hopeless"),
    [
        ("PENDING", "PartitionTimeLimit", True),
        ("PENDING", "BadConstraints", True),
        ("PENDING", "Resources", False),
        ("PENDING", "Priority", False),
        ("RUNNING", "PartitionTimeLimit", False),
    ],
)
def test_hopeless_pending_reasons(state: str, reason: str, hopeless: bool) -> None:
    assert SlurmJob("1", state, reason).hopeless is hopeless


# -- parsing -----------------------------------------------------------------------------------


def test_parse_squeue() -> None:
    text = (
        "2|FAILED|NonZeroExitCode|768|\n"
        "1|RUNNING|None|0|\n"
        "3|PENDING|Resources|0|\n"
        "4|CANCELLED|None|15|\n"
        "5_1|RUNNING|None|0|\n"  # an array task: not a pilot
        "garbage\n"
    )
    jobs = parse_squeue(text)
    assert jobs == {
        "2": SlurmJob("2", "FAILED", "NonZeroExitCode", 3, 0),
        "1": SlurmJob("1", "RUNNING", "", None, 0),
        "3": SlurmJob("3", "PENDING", "Resources", None, 0),
        "4": SlurmJob("4", "CANCELLED", "", None, 15),
    }
    assert jobs["2"].pilot_state is PilotState.FAILED


@pytest.mark.parametrize(
    ("status", "result"), [(0, (0, 0)), (768, (3, 0)), (9, (None, 9)), (65 << 8, (65, 0))]
)
def test_exit_status(status: int, result: tuple[int | None, int]) -> None:
    assert exit_status(status) == result


@pytest.mark.parametrize(
    ("text", "result"),
    [("3:0", (3, 0)), ("0:15", (None, 15)), ("0:0", (0, 0)), ("", (None, 0)), ("x:y", (None, 0))],
)
def test_parse_exit_code(text: str, result: tuple[int | None, int]) -> None:
    assert parse_exit_code(text) == result


JOBCOMP = (
    "JobId=2 UserId=root(0) GroupId=root(0) Name=p2 JobState=FAILED Partition=debug "
    "TimeLimit=UNLIMITED StartTime=2026-11-25T11:08:32 NodeList=n1 DerivedExitCode=0:0 "
    "ExitCode=3:0 \n"
    "JobId=1 UserId=root(0) GroupId=root(0) Name=p1 JobState=CANCELLED Partition=debug "
    "ExitCode=0:15 \n"
    "JobId=7 UserId=root(0) GroupId=root(0) Name=p7 JobState=NODE_FAIL ExitCode=0:0 \n"
    "JobId=7 UserId=root(0) GroupId=root(0) Name=p7 JobState=COMPLETED ExitCode=0:0 \n"
    "JobId=12 Name=other JobState=COMPLETED ExitCode=0:0 \n"
)


def test_parse_jobcomp_finds_the_wanted_jobs_last_line_wins() -> None:
    jobs = parse_jobcomp(JOBCOMP, ["1", "2", "7", "99"])
    assert jobs == {
        "2": SlurmJob("2", "FAILED", "", 3, 0),
        "1": SlurmJob("1", "CANCELLED", "", None, 15),
        "7": SlurmJob("7", "COMPLETED", "", 0, 0),
    }


def test_parse_sacct() -> None:
    text = "12|CANCELLED by 0|0:15\n13|COMPLETED|0:0\n14|FAILED|65:0\n14.batch|FAILED|65:0\n"
    jobs = parse_sacct(text)
    assert set(jobs) == {"12", "13", "14"}
    assert jobs["12"].pilot_state is PilotState.ABORTED
    assert jobs["13"].pilot_state is PilotState.DONE
    assert jobs["14"].exit_code == 65


def test_parse_config() -> None:
    text = (
        "Configuration data as of 2026-11-25T11:00:00\n"
        "AccountingStorageType   = accounting_storage/none\n"
        "JobCompLoc              = /tmp/x/log/jobcomp.log\n"
        "JobCompType             = jobcomp/filetxt\n"
        "SLURM_CONF              = /tmp/x/etc/slurm.conf\n"
    )
    config = parse_config(text)
    assert config["JobCompType"] == "jobcomp/filetxt"
    assert config["JobCompLoc"] == "/tmp/x/log/jobcomp.log"
    assert config["AccountingStorageType"] == "accounting_storage/none"


def test_describe_names_state_reason_exit_code_and_bootstrap_reason() -> None:
    failed = SlurmJob("5", "FAILED", "NonZeroExitCode", 65, 0)
    assert describe(failed, "5") == (
        "Slurm job 5: FAILED (NonZeroExitCode), exit code 65: " + BOOTSTRAP_EXIT_REASONS[65]
    )
    assert describe(SlurmJob("6", "CANCELLED", "", None, 15), "6") == (
        "Slurm job 6: CANCELLED, killed by signal 15"
    )
    assert "not known to Slurm" in describe(None, "7")


def test_output_text() -> None:
    assert output_text("out\n", "") == "out\n"
    assert output_text("out", "err\n") == "out\n--- stderr ---\nerr\n"
    assert output_text("", "err") == "--- stderr ---\nerr"


# -- time left ---------------------------------------------------------------------------------


def test_parse_slurm_timestamp_is_local_time() -> None:
    assert (
        parse_slurm_timestamp("2026-11-25T11:08:32")
        == datetime(2026, 11, 25, 11, 8, 32).timestamp()
    )


@pytest.mark.parametrize("text", ["NONE", "Unknown", "N/A", "", "UNLIMITED", "tomorrow"])
def test_parse_slurm_timestamp_without_a_time(text: str) -> None:
    assert parse_slurm_timestamp(text) is None


def test_end_time_from_scontrol() -> None:
    text = (
        "JobId=9 JobName=p RunTime=00:00:01 TimeLimit=00:05:00 TimeMin=N/A "
        "SubmitTime=2026-11-25T11:00:00 StartTime=2026-11-25T11:00:01 "
        "EndTime=2026-11-25T11:05:01 Deadline=N/A"
    )
    assert end_time_from_scontrol(text) == datetime(2026, 11, 25, 11, 5, 1).timestamp()
    assert end_time_from_scontrol("JobId=9 EndTime=Unknown") is None
    assert end_time_from_scontrol("no such thing") is None


def test_time_left_outside_a_batch_system_is_none() -> None:
    assert time_left_from_batch({"PATH": "/usr/bin"}, 1000.0) is None
    assert time_left_from_batch({"SLURM_JOB_ID": "not-a-number"}, 1000.0) is None


def test_time_left_from_slurm_end_time(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[str] = []

    def end_time(job_id: str, environ: object) -> float:
        asked.append(job_id)
        return 5000.0

    monkeypatch.setattr(batch_env, "slurm_end_time", end_time)
    assert time_left_from_batch({"SLURM_JOB_ID": "42"}, 1000.0) == 4000.0
    assert time_left_from_batch({"SLURM_JOB_ID": "42"}, 6000.0) == 0.0  # past: none left
    assert asked == ["42", "42"]


def test_time_left_when_slurm_cannot_tell(tmp_path: Path) -> None:
    environ = {"SLURM_JOB_ID": "42", "PATH": str(tmp_path)}  # no squeue, no scontrol
    assert time_left_from_batch(environ, 1000.0) is None


@pytest.mark.parametrize(
    ("given", "batch", "used"),
    [
        (3600.0, None, 3600.0),
        (0.0, None, 0.0),
        (3600.0, 600.0, 600.0),
        (600.0, 3600.0, 600.0),
        (0.0, 900.0, 900.0),
        (0.0, 0.0, 1.0),
        (3600.0, 0.0, 1.0),
    ],
)
def test_effective_time_left(given: float, batch: float | None, used: float) -> None:
    assert effective_time_left(given, batch) == used


# -- bootstrap ---------------------------------------------------------------------------------


def test_bootstrap_exit_reasons_are_the_scripts() -> None:
    """The Python table and the script's header name the same codes."""
    header = BOOTSTRAP_SH.read_text().split("set -uo pipefail")[0]
    documented = {int(code): text for code, text in re.findall(r"#   (\d\d)  (.+)", header)}
    assert set(documented) == set(BOOTSTRAP_EXIT_REASONS) == {64, 65, 66, 67, 68}
    for code, text in documented.items():
        assert text.split(" (")[0] in BOOTSTRAP_EXIT_REASONS[code]


def test_bootstrap_reason() -> None:
    assert bootstrap_reason(65) == BOOTSTRAP_EXIT_REASONS[65]
    assert bootstrap_reason(1) == ""
    assert bootstrap_reason(None) == ""


def test_bootstrap_command_wraps_the_directors_pilot_argv() -> None:
    argv = ["/usr/bin/python3", "-m", "dirac_like", "pilot", "--site", "S", "--ce", "c"]
    assert bootstrap_command(argv) == [
        "/bin/bash",
        str(BOOTSTRAP_SCRIPT),
        "--",
        "--site",
        "S",
        "--ce",
        "c",
    ]
    wrapped = bootstrap_command(
        argv,
        python="/usr/bin/python3",
        install_from="/w/dl.whl",
        venv="/shared/venv",
        script="/opt/boot.sh",
    )
    assert wrapped == [
        "/bin/bash",
        "/opt/boot.sh",
        "--python",
        "/usr/bin/python3",
        "--install-from",
        "/w/dl.whl",
        "--venv",
        "/shared/venv",
        "--",
        "--site",
        "S",
        "--ce",
        "c",
    ]


def test_bootstrap_command_takes_the_console_script_form() -> None:
    assert bootstrap_command(["/usr/local/bin/dirac-like", "pilot", "--site", "S"])[-3:] == [
        "--",
        "--site",
        "S",
    ]


def test_bootstrap_command_refuses_what_is_not_a_pilot() -> None:
    with pytest.raises(ValueError, match="not a pilot command"):
        bootstrap_command(["python3", "-m", "dirac_like", "demo"])


def test_bootstrap_script_is_in_the_repository() -> None:
    assert BOOTSTRAP_SCRIPT == BOOTSTRAP_SH
    assert BOOTSTRAP_SCRIPT.is_file()
