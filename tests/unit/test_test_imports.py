"""The test files import each other and the helper modules in tests/ by plain module name, from
their own folder or from tests/ (the folders pytest puts on sys.path: there is no
tests/__init__.py), so that every test file runs alone (``pytest tests/integration/test_x.py``,
from any folder) and under xdist. ``tests.x`` would import a second copy of a module, and only
when the current folder is the repository's root; a plain name from another tier's folder is
found only when that folder's tests are collected too."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def imported_modules(path: Path) -> Iterator[str]:
    """The top-level names of the absolute imports in ``path``."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module.split(".")[0]
        elif isinstance(node, ast.Import):
            yield from (alias.name.split(".")[0] for alias in node.names)


def local_modules(folder: Path) -> set[str]:
    return {path.stem for path in folder.glob("*.py")}


def test_no_test_module_is_imported_through_the_tests_package() -> None:
    offenders = [
        str(path.relative_to(TESTS))
        for path in TESTS.rglob("*.py")
        if "tests" in imported_modules(path)
    ]
    assert offenders == []


def test_test_modules_import_only_from_their_own_folder_or_tests() -> None:
    everywhere = {path.stem for path in TESTS.rglob("*.py")}
    offenders = []
    for path in TESTS.rglob("*.py"):
        reachable = local_modules(path.parent) | local_modules(TESTS)
        for module in imported_modules(path):
            if module in everywhere and module not in reachable:
                offenders.append(f"{path.relative_to(TESTS)} imports {module}")
    assert offenders == []


def test_no_two_test_files_share_a_name() -> None:
    names = [path.name for path in TESTS.rglob("*.py") if path.name != "__init__.py"]
    assert sorted({name for name in names if names.count(name) > 1}) == []
