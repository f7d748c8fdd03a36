"""A plugin generated from docs/plugins/template installs, is found, and passes its own tests.

The template is rendered with cookiecutter into a temporary directory, installed with pip into
a fresh virtual environment (tests/venv_support.py), and then, in that environment, the
generated plugin's tests (which run the adapter contract suite) pass and ``smm plugins list``
lists its platform. The generated code is also lint-, format- and type-clean under the
settings of its own pyproject.toml.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import venv_support
from venv_support import SMM, run

from scheduler.testing import AdapterContract

#: Renders the template and installs the plugin into a new virtual environment.
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
TEMPLATE = REPO / "docs" / "plugins" / "template"
NETWORK = "acme_social"
PROJECT = "smm-acme-social"
PACKAGE = "smm_acme_social"


def _cookiecutter(output: Path, *answers: str) -> subprocess.CompletedProcess[str]:
    return run(sys.executable, "-m", "cookiecutter", "--no-input", "-o", output, TEMPLATE, *answers)


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The plugin the template generates for the network ``acme_social``."""
    venv_support.require_module("cookiecutter", "-e '.[dev]'")
    output = tmp_path_factory.mktemp("template")
    result = _cookiecutter(output, f"network={NETWORK}", "author=Anna Example")
    assert result.returncode == 0, result.stdout + result.stderr
    return output / PROJECT


@pytest.fixture(scope="module")
def installed(generated: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtual environment with the generated plugin installed by pip: its python."""
    venv_support.require_setuptools()
    python = venv_support.create(tmp_path_factory.mktemp("template-venv") / "venv")
    venv_support.pip_install(python, generated)
    return python


def test_the_template_renders_every_placeholder(generated: Path) -> None:
    files = sorted(p.relative_to(generated).as_posix() for p in generated.rglob("*") if p.is_file())

    assert files == [
        ".gitignore",
        "README.md",
        "pyproject.toml",
        f"src/{PACKAGE}/__init__.py",
        f"src/{PACKAGE}/adapter.py",
        f"src/{PACKAGE}/py.typed",
        f"tests/test_{NETWORK}.py",
    ]
    for path in generated.rglob("*"):
        if path.is_file():
            text = path.read_text(encoding="utf-8")
            assert not re.search(r"\{\{|\{%|cookiecutter", text), f"{path.name} is not rendered"


def test_every_template_file_is_named_jinja() -> None:
    # Unrendered, they are neither Python nor TOML: ruff, mypy and pytest must not read them.
    project = next(TEMPLATE.glob("{{*"))
    plain = [p.name for p in project.rglob("*") if p.is_file() and p.suffix != ".jinja"]

    assert not plain, f"name them *.jinja (hooks/post_gen_project.py drops the suffix): {plain}"


def test_the_entry_point_names_the_package(generated: Path) -> None:
    pyproject = (generated / "pyproject.toml").read_text(encoding="utf-8")

    assert f'name = "{PROJECT}"' in pyproject
    assert f'[project.entry-points.smm_scheduler]\n{NETWORK} = "{PACKAGE}"' in pyproject


def test_a_name_that_cannot_be_a_platform_is_refused(tmp_path: Path) -> None:
    venv_support.require_module("cookiecutter", "-e '.[dev]'")

    result = _cookiecutter(tmp_path, "network=Acme-Social")

    assert result.returncode != 0
    assert "must start with a lower-case letter" in result.stdout + result.stderr
    assert not any(tmp_path.iterdir())


def test_the_generated_code_passes_ruff(generated: Path) -> None:
    venv_support.require_module("ruff", "-e '.[dev]'")

    check = run(sys.executable, "-m", "ruff", "check", "--no-cache", ".", cwd=generated)
    form = run(sys.executable, "-m", "ruff", "format", "--no-cache", "--check", ".", cwd=generated)

    assert check.returncode == 0, check.stdout + check.stderr
    assert form.returncode == 0, form.stdout + form.stderr


def test_the_generated_code_passes_mypy_strict(generated: Path, tmp_path: Path) -> None:
    venv_support.require_module("mypy", "-e '.[dev]'")

    # The core is found from this checkout; its own errors are not the plugin's.
    result = run(
        sys.executable,
        "-m",
        "mypy",
        "--follow-imports=silent",
        "--cache-dir",
        tmp_path / "mypy",
        "src",
        "tests",
        cwd=generated,
        env_extra={"MYPYPATH": str(REPO)},
    )

    assert result.returncode == 0, result.stdout + result.stderr


def test_the_generated_plugins_own_tests_pass_where_it_is_installed(
    installed: Path, generated: Path
) -> None:
    # From the generated directory, whose src/ is not on the path: the installed copy runs.
    result = run(installed, "-m", "pytest", "-q", "-p", "no:cacheprovider", cwd=generated)

    assert result.returncode == 0, result.stdout + result.stderr
    passed = re.search(r"(\d+) passed", result.stdout)
    assert passed, result.stdout
    contract_tests = [name for name in dir(AdapterContract) if name.startswith("test_")]
    assert int(passed.group(1)) > len(contract_tests), "the contract suite did not run"


def test_smm_plugins_list_there_shows_the_new_platform(installed: Path) -> None:
    result = run(installed, "-c", SMM, "plugins", "list", "--json")

    assert result.returncode == 0, result.stderr
    rows = {row["platform"]: row for row in json.loads(result.stdout)}
    row = rows[NETWORK]
    assert (row["plugin"], row["version"], row["distribution"]) == (NETWORK, "0.1.0", PROJECT)
    assert row["adapter"] == f"{PACKAGE}.adapter.AcmeSocialAdapter"
    assert row["error"] is None
    assert {"mastodon", "sim"} <= set(rows)  # the built-in ones, beside it


def test_the_plugin_is_imported_from_its_installed_copy(installed: Path) -> None:
    result = run(installed, "-c", f"import {PACKAGE}; print({PACKAGE}.__file__)")

    assert result.returncode == 0, result.stderr
    assert Path(result.stdout.strip()).is_relative_to(installed.parent.parent)
