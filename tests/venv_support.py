"""Throwaway virtual environments for tests that install something, built offline and fast.

A new environment gets no pip and no packages of its own: a ``.pth`` file makes it see this
environment's site directories, so the project's dependencies come from here and nothing is
downloaded. That is ``site.addsitedir`` rather than ``--system-site-packages``, which would
reach the base interpreter's packages rather than those of the virtual environment running the
tests; ``addsitedir`` also runs this environment's own ``.pth`` files, so an editable install of
the project works there too. Packages are installed into it by this environment's pip
(``pip --python``), without build isolation and without an index.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import subprocess
import sys
import sysconfig
import venv
from collections.abc import Mapping
from pathlib import Path

import pytest

#: ``smm``, as its console script runs it.
SMM = "from scheduler.cli import main; main()"

#: PEP 639 license expressions and wheels without the ``wheel`` package need it.
SETUPTOOLS_NEEDED = 77


def cannot_build(reason: str) -> None:
    """Skip, or fail on CI: there the proof must run, never pass by skipping."""
    if os.environ.get("CI"):
        pytest.fail(reason, pytrace=False)
    pytest.skip(f"{reason} (with CI set, this is an error)")


def require_module(module: str, install: str) -> None:
    """Skip (fail on CI) unless ``module`` can be imported here."""
    if importlib.util.find_spec(module) is None:
        cannot_build(f"needs {module} in the test environment: pip install {install}")


def require_setuptools() -> None:
    """Skip (fail on CI) unless setuptools can build the packages offline."""
    try:
        major = int(importlib.metadata.version("setuptools").split(".")[0])
    except (importlib.metadata.PackageNotFoundError, ValueError):
        major = 0
    if major < SETUPTOOLS_NEEDED:
        cannot_build(
            f"building packages offline needs setuptools>={SETUPTOOLS_NEEDED} "
            "in the test environment: pip install 'setuptools>=77'"
        )


def run(
    *args: str | Path,
    cwd: Path | None = None,
    env_extra: Mapping[str, str] | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """Run a command with this environment's variables, less the project's and PYTHONPATH,
    plus ``env_extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMM_")}
    env.pop("PYTHONPATH", None)
    env.update(env_extra or {})
    return subprocess.run(
        [str(a) for a in args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=timeout,
        check=False,
    )


def create(env_dir: Path) -> Path:
    """A new virtual environment that sees this one's packages; returns its python."""
    venv.EnvBuilder(with_pip=False, symlinks=os.name != "nt").create(env_dir)
    python = env_dir / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    purelib = run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])")
    here = sorted({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]})
    (Path(purelib.stdout.strip()) / "_smm_test_parent.pth").write_text(
        "import site; " + "; ".join(f"site.addsitedir({d!r})" for d in here) + "\n",
        encoding="utf-8",
    )
    return python


def pip_install(python: Path, *targets: str | Path) -> None:
    """Install ``targets`` (directories or wheels) into the environment of ``python``."""
    result = run(
        sys.executable,
        "-m",
        "pip",
        "--python",
        python,
        "install",
        "--quiet",
        "--no-deps",
        "--no-build-isolation",
        "--no-index",
        *targets,
    )
    assert result.returncode == 0, f"pip install failed:\n{result.stdout}\n{result.stderr}"


def scripts(python: Path) -> Path:
    """The directory of the environment's console scripts."""
    return python.parent
