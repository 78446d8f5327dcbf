"""Children are started so that they import the installed dirac-like, never a source tree that
happens to be in their current folder (the demo run from a clone's root died of this)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from dirac_like.processes import dirac_like_argv


def decoy_source_tree(folder: Path) -> Path:
    """A ``dirac_like`` package in ``folder`` that fails loudly when imported."""
    package = folder / "dirac_like"
    package.mkdir()
    (package / "__init__.py").write_text("raise ImportError('imported the decoy source tree')\n")
    return folder


def run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, cwd=cwd, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL
    )


def test_a_plain_python_m_child_picks_up_the_decoy(tmp_path: Path) -> None:
    # the hazard the test below guards against: ``python -m`` puts the current folder first
    done = run([sys.executable, "-m", "dirac_like", "--version"], decoy_source_tree(tmp_path))
    assert done.returncode != 0
    assert "imported the decoy source tree" in done.stderr


def test_a_dirac_like_child_ignores_a_source_tree_in_its_folder(tmp_path: Path) -> None:
    done = run(dirac_like_argv("--version"), decoy_source_tree(tmp_path))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("dirac-like ")
