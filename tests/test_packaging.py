"""``python -m build`` makes a wheel and an sdist that install and run.

The project is built offline (no build isolation) from a copy of the checkout, sdist first and
the wheel from the sdist, as ``python -m build`` does, so a file missing from the sdist fails
here too. The wheel must hold the core, every built-in plugin, the database migrations and the
entry points; installed into a fresh virtual environment (tests/venv_support.py), its ``smm``
reports its version, lists the built-in networks and creates a database.
"""

from __future__ import annotations

import json
import shutil
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest
import venv_support
from venv_support import run

from scheduler import __version__

#: Builds the sdist and wheel and installs them into a new virtual environment.
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
PLUGINS = sorted(p.name for p in (REPO / "plugins").iterdir() if (p / "__init__.py").is_file())
MIGRATIONS = REPO / "scheduler" / "db" / "migrations"
#: What a checkout holds that a build must not see.
NOT_BUILT = (
    ".git",
    ".venv",
    "*.egg-info",
    "__pycache__",
    ".*_cache",
    ".hypothesis",
    "build",
    "dist",
    "site",
)


@dataclass(frozen=True)
class Built:
    wheel: Path
    sdist: Path
    python: Path  # of a fresh virtual environment with the wheel installed


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    venv_support.require_module("build", "-e '.[dev]'")
    venv_support.require_setuptools()
    root = tmp_path_factory.mktemp("packaging")
    # Built from a copy: the build writes its egg-info beside the sources.
    source = shutil.copytree(REPO, root / "source", ignore=shutil.ignore_patterns(*NOT_BUILT))
    dist = root / "dist"
    result = run(sys.executable, "-m", "build", "--no-isolation", "--outdir", dist, source)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (wheel,) = dist.glob("*.whl")
    (sdist,) = dist.glob("*.tar.gz")
    python = venv_support.create(root / "venv")
    venv_support.pip_install(python, wheel)
    return Built(wheel, sdist, python)


def _wheel_names(built: Built) -> set[str]:
    with zipfile.ZipFile(built.wheel) as wheel:
        return set(wheel.namelist())


def _dist_info(built: Built, name: str) -> str:
    with zipfile.ZipFile(built.wheel) as wheel:
        (path,) = [n for n in wheel.namelist() if n.endswith(f".dist-info/{name}")]
        return wheel.read(path).decode("utf-8")


def test_the_build_is_named_for_the_version(built: Built) -> None:
    assert built.wheel.name == f"smm_scheduler-{__version__}-py3-none-any.whl"
    assert built.sdist.name == f"smm_scheduler-{__version__}.tar.gz"


def test_the_wheel_holds_the_core_and_every_built_in_plugin(built: Built) -> None:
    names = _wheel_names(built)

    assert {"scheduler/__init__.py", "scheduler/cli/__init__.py", "scheduler/py.typed"} <= names
    missing = [p for p in PLUGINS if f"{p}/__init__.py" not in names]
    assert not missing, f"plugins missing from the wheel: {missing}"


def test_the_wheel_holds_the_migrations(built: Built) -> None:
    names = _wheel_names(built)
    versions = sorted(p.name for p in (MIGRATIONS / "versions").glob("*.py"))
    expected = {"env.py", "script.py.mako", *(f"versions/{v}" for v in versions)}

    missing = sorted(e for e in expected if f"scheduler/db/migrations/{e}" not in names)

    assert versions, "no migration found in the checkout"
    assert not missing, f"migration files missing from the wheel: {missing}"


def test_the_wheel_holds_the_web_apps_templates_and_stylesheet(built: Built) -> None:
    names = _wheel_names(built)
    web = REPO / "scheduler" / "web"
    expected = [
        str(p.relative_to(REPO))
        for p in [*(web / "templates").glob("*.html"), *(web / "static").iterdir()]
    ]
    assert expected
    assert sorted(e for e in expected if e not in names) == []


def test_the_wheel_declares_the_entry_points(built: Built) -> None:
    entry_points = _dist_info(built, "entry_points.txt")

    assert "[console_scripts]\nsmm = scheduler.cli:main" in entry_points
    group = entry_points.split("[smm_scheduler]", 1)[1].split("\n[", 1)[0]
    declared = {line.split("=")[1].strip() for line in group.splitlines() if "=" in line}
    assert declared == set(PLUGINS)


def test_the_sdist_holds_the_sources_and_the_license(built: Built) -> None:
    with tarfile.open(built.sdist) as sdist:
        names = {n.split("/", 1)[1] for n in sdist.getnames() if "/" in n}

    assert {"pyproject.toml", "README.md", "LICENSE", "scheduler/__init__.py"} <= names
    assert {f"plugins/{p}/__init__.py" for p in PLUGINS} <= names


def test_the_installed_smm_reports_its_version(built: Built) -> None:
    smm = venv_support.scripts(built.python) / "smm"

    result = run(smm, "--version")

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"smm-scheduler, version {__version__}"


def test_the_installed_copy_runs_not_the_checkout(built: Built, tmp_path: Path) -> None:
    code = "import scheduler, smm_sim; print(scheduler.__file__); print(smm_sim.__file__)"

    # Away from the checkout, which ``python -c`` would put first on the path.
    result = run(built.python, "-c", code, cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    env_dir = built.python.parent.parent
    for path in result.stdout.split():
        assert Path(path).is_relative_to(env_dir), path


def test_the_installed_smm_lists_the_built_in_networks(built: Built) -> None:
    smm = venv_support.scripts(built.python) / "smm"

    result = run(smm, "plugins", "list", "--json")

    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert {row["plugin"] for row in rows} >= {p.removeprefix("smm_") for p in PLUGINS}
    assert all(row["error"] is None for row in rows), rows
    assert {row["distribution"] for row in rows} == {"smm-scheduler"}


def test_the_installed_smm_creates_a_database_with_its_migrations(
    built: Built, tmp_path: Path
) -> None:
    smm = venv_support.scripts(built.python) / "smm"

    # No config of this machine's user: only the packaged files are at work.
    where = {"XDG_CONFIG_HOME": str(tmp_path), "XDG_DATA_HOME": str(tmp_path)}

    result = run(
        smm, "--db", f"sqlite:///{tmp_path / 'smm.db'}", "init", cwd=tmp_path, env_extra=where
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "ready (schema" in result.stdout


def test_the_installed_smm_runs_the_demo_from_its_shipped_examples(
    built: Built, tmp_path: Path
) -> None:
    smm = venv_support.scripts(built.python) / "smm"
    where = {"XDG_CONFIG_HOME": str(tmp_path), "XDG_DATA_HOME": str(tmp_path)}

    result = run(
        smm, "demo", "--days", "7", "--dir", str(tmp_path / "demo"), cwd=tmp_path, env_extra=where
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "example plan: 20 posts" in result.stdout
    assert "share/smm-scheduler/example.toml" in result.stdout  # not the checkout's config/
    assert (tmp_path / "demo" / "report.html").is_file()
