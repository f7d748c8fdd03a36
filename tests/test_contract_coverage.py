"""Coverage by construction: every registered network runs the adapter contract suite.

A new network's plugin is caught here until its tests subclass ``AdapterContract`` for its
adapter (``scheduler.testing``), as every built-in network's tests do.
"""

from __future__ import annotations

import ast
from pathlib import Path

from scheduler import plugins

TESTS = Path(__file__).resolve().parent


def contract_adapters() -> dict[str, str]:
    """Adapter class name -> the test file whose ``AdapterContract`` subclass runs it."""
    found: dict[str, str] = {}
    for path in sorted(TESTS.glob("test_*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in ast.walk(tree):
            if not isinstance(node, ast.ClassDef):
                continue
            if not any(isinstance(b, ast.Name) and b.id == "AdapterContract" for b in node.bases):
                continue
            for stmt in node.body:
                target = stmt.targets[0] if isinstance(stmt, ast.Assign) else None
                if (
                    isinstance(target, ast.Name)
                    and target.id == "adapter_class"
                    and isinstance(stmt.value, ast.Name)
                ):
                    found[stmt.value.id] = path.name
    return found


def test_every_registered_platform_runs_the_contract_suite() -> None:
    covered = contract_adapters()
    registered = {name: info.adapter.__name__ for name, info in plugins.platforms().items()}
    assert registered, "no platform registered: are the plugins installed?"
    missing = {name: cls for name, cls in registered.items() if cls not in covered}
    assert missing == {}, "subclass scheduler.testing.AdapterContract for these adapters"


def test_the_scan_finds_contract_subclasses() -> None:
    """The check above can fail: it sees the suites that exist, and only those."""
    covered = contract_adapters()
    assert covered["VKAdapter"] == "test_vk.py"
    assert "NoSuchAdapter" not in covered
