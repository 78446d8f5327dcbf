"""The layers, checked over the import graph of the sources (every import statement, at any
depth, and ``importlib.import_module("...")`` / ``__import__("...")`` with a literal name):

- the core (``dirac_like`` outside ``dirac_like.cli``) imports neither ``dirac_like.services``
  nor ``dirac_like.agents``;
- the agents do not import the service, nor the service the agents;
- nothing below the top layer (``dirac_like.cli`` and ``dirac_like.__main__``) imports it.

Modules are named as installed: ``services/x.py`` is ``dirac_like.services.x`` (setup.cfg's
``package_dir``), which import-linter cannot see in an editable install.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = {
    "dirac_like": ROOT / "dirac_like",
    "dirac_like.services": ROOT / "services",
    "dirac_like.agents": ROOT / "agents",
}
CLI, SERVICES, AGENTS = "dirac_like.cli", "dirac_like.services", "dirac_like.agents"


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def layer_of(module: str) -> str:
    if module == "dirac_like.__main__":  # ``python -m dirac_like``: the command line
        return CLI
    for layer in (CLI, SERVICES, AGENTS):
        if _within(module, layer):
            return layer
    return "core"


# The layers each layer may not import.
FORBIDDEN = {
    "core": (SERVICES, AGENTS, CLI),
    SERVICES: (AGENTS, CLI),
    AGENTS: (SERVICES, CLI),
    CLI: (),
}


def modules() -> Iterator[tuple[str, Path]]:
    for package, folder in PACKAGES.items():
        for path in sorted(folder.rglob("*.py")):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            name = ".".join([package, *parts])
            if (
                package == "dirac_like"
                and layer_of(name) != "core"
                and name != package
                and not _within(name, CLI)
            ):
                continue  # a folder of dirac_like/ that is installed from elsewhere
            yield name, path


def imported_names(module: str, path: Path) -> Iterator[tuple[str, int]]:
    """Every module name ``path`` imports, with its line (relative imports resolved)."""
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            yield from ((alias.name, node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(module, is_package, node.module or "", node.level)
            yield base, node.lineno
            yield from ((f"{base}.{alias.name}", node.lineno) for alias in node.names)
        elif isinstance(node, ast.Call) and _is_dynamic_import(node):
            yield node.args[0].value, node.lineno  # type: ignore[attr-defined]


def _resolve(module: str, is_package: bool, name: str, level: int) -> str:
    if level == 0:
        return name
    parts = module.split(".")
    base = parts if is_package else parts[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join([*base, name] if name else base)


def _is_dynamic_import(node: ast.Call) -> bool:
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
    return (
        name in ("import_module", "__import__")
        and bool(node.args)
        and isinstance(node.args[0], ast.Constant)
        and isinstance(node.args[0].value, str)
    )


def violations() -> list[str]:
    found = []
    for module, path in modules():
        forbidden = FORBIDDEN[layer_of(module)]
        for name, line in imported_names(module, path):
            if any(_within(name, layer) for layer in forbidden):
                found.append(
                    f"{path.relative_to(ROOT)}:{line}: {module} ({layer_of(module)}) imports {name}"
                )
    return sorted(set(found))


def test_the_layers_import_only_downwards() -> None:
    assert violations() == []


def test_the_cli_composes_the_service_and_the_agents() -> None:
    """The top layer imports both, normally (so the check above sees real edges)."""
    names = {
        name
        for module, path in modules()
        if _within(module, CLI)
        for name, _ in imported_names(module, path)
    }
    assert any(_within(name, SERVICES) for name in names)
    assert any(_within(name, AGENTS) for name in names)


@pytest.mark.parametrize(
    ("source", "module", "expected"),
    [
        ("from dirac_like.services import central", "dirac_like.x", "dirac_like.services.central"),
        (
            "import importlib\nimportlib.import_module('dirac_like.agents.pilot')",
            "dirac_like.x",
            "dirac_like.agents.pilot",
        ),
        ("from ..agents import pilot", "dirac_like.services.x", "dirac_like.agents.pilot"),
    ],
)
def test_the_check_sees_every_kind_of_import(
    tmp_path: Path, source: str, module: str, expected: str
) -> None:
    path = tmp_path / "x.py"
    path.write_text(source)
    assert expected in {name for name, _ in imported_names(module, path)}
