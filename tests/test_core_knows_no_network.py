"""DESIGN.md invariant 5: the core knows no network; built-in networks load like anyone's."""

from __future__ import annotations

import ast
import importlib.metadata
import tomllib
from pathlib import Path

from scheduler import plugins

REPO = Path(__file__).resolve().parent.parent
CORE = REPO / "scheduler"
PLUGIN_PACKAGES = {p.name for p in (REPO / "plugins").iterdir() if p.name.startswith("smm_")}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            names.add(str(node.args[0].value).split(".")[0])
    return names


def test_no_core_module_imports_a_network_plugin() -> None:
    offenders = {
        str(path.relative_to(REPO)): sorted(imported_modules(path) & PLUGIN_PACKAGES)
        for path in CORE.rglob("*.py")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_every_built_in_network_is_an_entry_point_like_a_third_partys() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    declared = set(pyproject["project"]["entry-points"]["smm_scheduler"].values())
    assert declared == PLUGIN_PACKAGES
    installed = {ep.value for ep in importlib.metadata.entry_points(group="smm_scheduler")}
    assert installed >= PLUGIN_PACKAGES


def test_the_plugin_manager_registers_no_network_by_name() -> None:
    # Only core features are registered directly; every network comes through entry points.
    assert all(name.startswith("scheduler.") for name in plugins.BUILTIN_PLUGINS)
