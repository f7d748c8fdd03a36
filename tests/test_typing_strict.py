"""The modules a plugin imports pass ``mypy --strict``, as the plugin template promises.

A plugin author checks their plugin with the template's settings (``strict = true``), with
smm-scheduler found through MYPYPATH (an editable install hides it from mypy); mypy then
checks the core modules the plugin imports under those settings too.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

PLUGIN = """\
from scheduler import plugins
from scheduler.adapter import Adapter, status_error, transport_error
from scheduler.hookspecs import hookimpl
from scheduler.testing import AdapterContract

__all__ = ["Adapter", "AdapterContract", "hookimpl", "plugins", "status_error", "transport_error"]
"""


@pytest.mark.slow
def test_the_modules_plugins_import_pass_mypy_strict(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.mypy]\nstrict = true\n", encoding="utf-8")
    (tmp_path / "acme_plugin.py").write_text(PLUGIN, encoding="utf-8")
    env = {**os.environ, "MYPYPATH": str(REPO)}
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--no-incremental", "acme_plugin.py"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    errors = [line for line in result.stdout.splitlines() if "/scheduler/" in line]
    assert errors == [], result.stdout
    assert result.returncode == 0, result.stdout
