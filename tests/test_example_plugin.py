"""A plugin written only from docs/plugins is discovered and used with no change to the core.

The tutorial's example package (docs/plugins/example, distribution ``smm-ntfy``) is installed
with pip into a fresh virtual environment, as a user would install a third-party plugin;
``smm plugins list`` run there lists its platform, and its own tests, which run the public
adapter contract suite, pass there.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

from scheduler.testing import AdapterContract

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "docs" / "plugins" / "example"
#: The example's pyproject.toml asks for it (PEP 639 license, wheels without ``wheel``).
SETUPTOOLS_NEEDED = 77

#: ``smm``, as its console script runs it.
SMM = """
from scheduler.cli import main
main()
"""


def _setuptools_major() -> int:
    try:
        return int(importlib.metadata.version("setuptools").split(".")[0])
    except (importlib.metadata.PackageNotFoundError, ValueError):
        return 0


def _cannot_build(reason: str) -> None:
    # On CI the proof must run, never pass by skipping.
    if os.environ.get("CI"):
        pytest.fail(reason, pytrace=False)
    pytest.skip(f"{reason} (with CI set, this is an error)")


def _run(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMM_")}
    env.pop("PYTHONPATH", None)
    return subprocess.run(
        [str(a) for a in args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A new virtual environment with the example installed by pip: (its python, the copy
    of the example that was installed).

    The environment sees this one's site directory, so the project and its dependencies come
    from here and nothing is downloaded. It is added with ``site.addsitedir`` in a .pth file
    rather than ``--system-site-packages``, which would reach the base interpreter's packages
    rather than those of a virtual environment running the tests; ``addsitedir`` also runs
    this directory's own .pth files, so an editable install of the project works there too.
    """
    if _setuptools_major() < SETUPTOOLS_NEEDED:
        _cannot_build(
            f"installing docs/plugins/example offline needs setuptools>={SETUPTOOLS_NEEDED} "
            "in the test environment: pip install 'setuptools>=77'"
        )
    root = tmp_path_factory.mktemp("example-plugin")
    # pip builds in the source tree: build from a copy, leaving docs/ untouched.
    source = shutil.copytree(
        EXAMPLE,
        root / "smm-ntfy",
        ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__", ".pytest_cache"),
    )
    env_dir = root / "venv"
    venv.EnvBuilder(with_pip=False, symlinks=os.name != "nt").create(env_dir)
    python = env_dir / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    purelib = _run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])")
    here = sorted({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]})
    (Path(purelib.stdout.strip()) / "_smm_test_parent.pth").write_text(
        "import site; " + "; ".join(f"site.addsitedir({d!r})" for d in here) + "\n",
        encoding="utf-8",
    )
    pip = _run(
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
        source,
    )
    assert pip.returncode == 0, f"pip install failed:\n{pip.stdout}\n{pip.stderr}"
    return python, source


def test_smm_plugins_list_in_that_environment_lists_the_example_platform(
    installed: tuple[Path, Path],
) -> None:
    python, _source = installed

    result = _run(python, "-c", SMM, "plugins", "list", "--json")

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

    result = _run(python, "-c", "import smm_ntfy; print(smm_ntfy.__file__)")

    assert result.returncode == 0, result.stderr
    assert Path(result.stdout.strip()).is_relative_to(python.parent.parent)


def test_the_example_plugins_own_tests_pass_in_that_environment(
    installed: tuple[Path, Path],
) -> None:
    python, source = installed

    result = _run(python, "-m", "pytest", "-q", "-p", "no:cacheprovider", cwd=source)

    assert result.returncode == 0, result.stdout + result.stderr
    passed = re.search(r"(\d+) passed", result.stdout)
    assert passed, result.stdout
    contract_tests = [name for name in dir(AdapterContract) if name.startswith("test_")]
    assert int(passed.group(1)) > len(contract_tests), "the contract suite did not run"
