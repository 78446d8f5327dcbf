"""Type-check the whole project under its installed module names: ``python3 scripts/typecheck.py``.

``services/`` and ``agents/`` are installed as ``dirac_like.services`` and ``dirac_like.agents``
(``package_dir`` in setup.cfg), a mapping mypy cannot follow in the source tree (an editable
install maps them with an import hook, which mypy does not run). So this builds
``build/typecheck/dirac_like`` as the installed layout, of symbolic links to the sources, and
runs mypy there with the ``[mypy]`` settings of setup.cfg. Extra arguments go to mypy.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TREE = ROOT / "build" / "typecheck"
MAPPED = {"services": ROOT / "services", "agents": ROOT / "agents"}


def build_tree() -> Path:
    """``TREE/dirac_like``: links to every entry of dirac_like/, and to services/ and agents/."""
    package = TREE / "dirac_like"
    if TREE.exists():
        shutil.rmtree(TREE)
    package.mkdir(parents=True)
    for entry in (ROOT / "dirac_like").iterdir():
        if entry.name != "__pycache__":
            (package / entry.name).symlink_to(entry)
    for name, source in MAPPED.items():
        (package / name).symlink_to(source)
    return package


def main() -> int:
    build_tree()
    command = [
        sys.executable,
        "-m",
        "mypy",
        "--config-file",
        str(ROOT / "setup.cfg"),
        "--cache-dir",
        str(ROOT / ".mypy_cache"),
        *sys.argv[1:],
        "dirac_like",
    ]
    return subprocess.run(command, cwd=TREE, check=False).returncode


if __name__ == "__main__":
    raise SystemExit(main())
