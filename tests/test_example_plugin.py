"""A plugin written only from docs/plugins is discovered and used with no change to the core.

The tutorial's example package (docs/plugins/example, distribution ``smm-ntfy``) is installed
with pip into a fresh virtual environment, as a user would install a third-party plugin;
``smm plugins list`` run there lists its platform, and its own tests, which run the public
adapter contract suite, pass there.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import venv_support
from venv_support import SMM, run

from scheduler.testing import AdapterContract

#: Installs the example plugin into a new virtual environment and runs its tests.
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "docs" / "plugins" / "example"


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A new virtual environment (tests/venv_support.py) with the example installed by pip:
    (its python, the copy of the example that was installed)."""
    venv_support.require_setuptools()
    root = tmp_path_factory.mktemp("example-plugin")
    # pip builds in the source tree: build from a copy, leaving docs/ untouched.
    source = shutil.copytree(
        EXAMPLE,
        root / "smm-ntfy",
        ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__", ".pytest_cache"),
    )
    python = venv_support.create(root / "venv")
    venv_support.pip_install(python, source)
    return python, source


def test_smm_plugins_list_in_that_environment_lists_the_example_platform(
    installed: tuple[Path, Path],
) -> None:
    python, _source = installed

    result = run(python, "-c", SMM, "plugins", "list", "--json")

    assert result.returncode == 0, result.stderr
    rows = {row["platform"]: row for row in json.loads(result.stdout)}
    ntfy = rows["ntfy"]
    assert (ntfy["plugin"], ntfy["version"], ntfy["distribution"]) == ("ntfy", "0.1.0", "smm-ntfy")
    assert ntfy["adapter"] == "smm_ntfy.adapter.NtfyAdapter"
    assert ntfy["capabilities"]["text_limit"] == 4096
    assert ntfy["capabilities"]["text_counting"] == "utf8_bytes"
    assert {"mastodon", "webhook", "sim"} <= set(rows)  # the built-in ones, beside it


def test_the_example_is_imported_from_its_installed_copy(installed: tuple[Path, Path]) -> None:
    python, _source = installed

    result = run(python, "-c", "import smm_ntfy; print(smm_ntfy.__file__)")

    assert result.returncode == 0, result.stderr
    assert Path(result.stdout.strip()).is_relative_to(python.parent.parent)


def test_the_example_plugins_own_tests_pass_in_that_environment(
    installed: tuple[Path, Path],
) -> None:
    python, source = installed

    result = run(python, "-m", "pytest", "-q", "-p", "no:cacheprovider", cwd=source)

    assert result.returncode == 0, result.stdout + result.stderr
    passed = re.search(r"(\d+) passed", result.stdout)
    assert passed, result.stdout
    contract_tests = [name for name in dir(AdapterContract) if name.startswith("test_")]
    assert int(passed.group(1)) > len(contract_tests), "the contract suite did not run"
