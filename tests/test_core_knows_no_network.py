"""Import directions: the core knows no network (docs/design.md, invariant 5), built-in
networks load like anyone's, and inside the core the flow runs one way (docs/design.md#data-flow):
plan -> queue -> dispatch -> outcomes -> metrics -> ER."""

from __future__ import annotations

import ast
import importlib.metadata
import tomllib
from pathlib import Path

import pytest

from scheduler import plugins

REPO = Path(__file__).resolve().parent.parent
CORE = REPO / "scheduler"
PLUGIN_PACKAGES = {p.name for p in (REPO / "plugins").iterdir() if p.name.startswith("smm_")}


def imported_modules(path: Path, *, full: bool = False) -> set[str]:
    """The modules ``path`` imports (top-level packages, or ``full`` dotted names), also
    inside functions and through ``importlib.import_module("...")``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names |= {f"{node.module}.{a.name}" for a in node.names}
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            names.add(str(node.args[0].value))
    return names if full else {n.split(".")[0] for n in names}


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


#: Part of the core -> the parts it must not import: the flow runs one way.
INNER_DIRECTIONS = {
    "scheduler/plan": ("scheduler.daemon", "scheduler.er"),
    "scheduler/queue.py": ("scheduler.plan", "scheduler.daemon", "scheduler.er"),
    "scheduler/daemon": ("scheduler.er", "scheduler.plan"),
}


def offenders_of(part: str, banned: tuple[str, ...]) -> dict[str, list[str]]:
    root = REPO / part
    paths = [root] if root.is_file() else sorted(root.rglob("*.py"))
    found = {}
    for path in paths:
        bad = sorted(
            m for m in imported_modules(path, full=True) if any(_within(m, b) for b in banned)
        )
        if bad:
            found[str(path.relative_to(REPO))] = bad
    return found


@pytest.mark.parametrize("part", sorted(INNER_DIRECTIONS))
def test_the_core_imports_only_downstream(part: str) -> None:
    """The plan knows neither the daemon nor the ER loop; the queue knows neither the plan,
    the daemon nor the ER loop; the daemon knows neither the ER loop (its jobs come through
    the register_jobs hook) nor the plan."""
    assert offenders_of(part, INNER_DIRECTIONS[part]) == {}


def test_the_direction_check_sees_an_import_inside_a_function(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text(
        "import importlib\n"
        "def f():\n    from scheduler.er import jobs\n"
        "    importlib.import_module('scheduler.daemon.store')\n",
        encoding="utf-8",
    )
    names = imported_modules(module, full=True)
    assert "scheduler.er.jobs" in names
    assert "scheduler.daemon.store" in names
    assert not _within("scheduler.errors", "scheduler.er")


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
