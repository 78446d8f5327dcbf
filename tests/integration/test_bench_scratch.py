"""scripts/benchmarks/scratch.py: a benchmark's scratch folders are removed when the run ends —
done, failed, Ctrl-C, SIGTERM — and kept with --keep. Each case runs a tiny benchmark-like
script in a child process that makes a folder, names it, then ends the way the case says."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "scripts" / "benchmarks"
SCRIPT = textwrap.dedent(
    f"""
    import argparse, sys
    sys.path.insert(0, {str(BENCHMARKS)!r})
    from scratch import add_keep_option, scratch_folder
    parser = argparse.ArgumentParser()
    parser.add_argument("ending")
    add_keep_option(parser)
    args = parser.parse_args()
    folder = scratch_folder("bench-scratch-test-")
    (folder / "data").write_text("made by the run")
    print(folder, flush=True)
    if args.ending == "fails":
        raise RuntimeError("the benchmark failed")
    if args.ending == "waits":
        sys.stdin.read()
    """
)


def run(*args: str, signal_to_send: int | None = None) -> tuple[Path, int, str]:
    """The folder the run made, its exit status and its stderr."""
    with subprocess.Popen(
        [sys.executable, "-c", SCRIPT, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as child:
        assert child.stdout is not None
        folder = Path(child.stdout.readline().strip())
        if signal_to_send is not None:
            assert (folder / "data").is_file()  # the run is under way, its folder full
            child.send_signal(signal_to_send)
        _, stderr = child.communicate(timeout=30)
    return folder, child.returncode, stderr


@pytest.mark.parametrize("ending", ["ends", "fails"])
def test_a_run_that_ends_or_fails_removes_its_folder(ending: str) -> None:
    folder, status, _ = run(ending)
    assert status == (0 if ending == "ends" else 1)
    assert not folder.exists()


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_a_run_stopped_by_ctrl_c_or_sigterm_removes_its_folder(stop: int) -> None:
    folder, status, _ = run("waits", signal_to_send=stop)
    assert status != 0
    assert not folder.exists()


def test_keep_keeps_the_folder_and_names_it() -> None:
    folder, status, stderr = run("fails", "--keep")
    try:
        assert status == 1
        assert (folder / "data").read_text() == "made by the run"
        assert f"kept {folder}" in stderr
    finally:
        shutil.rmtree(folder, ignore_errors=True)
